//! The simulated Kubernetes API server and its controllers.
//!
//! [`KubeSim`] keeps the cluster's objects (nodes, pods, workloads, PDBs,
//! leases, events) and serves them as the Kubernetes REST API through
//! [`KubeSim::router`]. Controllers (scheduler, ReplicaSet, StatefulSet,
//! DaemonSet, disruption, kubelet pod lifecycle, node lifecycle) run in the
//! virtual time of the simulator's [`Clock`]. The ARM side drives it through
//! `register_node`, `set_node_ready` and `vm_deleted`.
//!
//! See docs/simulator.md (Kubernetes API) for what is served and how it differs
//! from a real API server.

mod api;
mod controllers;
mod names;
mod node;
pub mod patch;
pub mod pdb;
mod resources;
mod scenario;
pub mod selector;
mod store;
mod table;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::sim::clock::Clock;

pub use scenario::{Budget, Scenario, Workload};

/// Errors of the simulated Kubernetes side.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the scenario is not valid JSON in the documented format (see docs/simulator.md (Kubernetes API))"
    )]
    ScenarioParse(#[source] serde_json::Error),
    #[error("the scenario is invalid: {0}")]
    InvalidScenario(String),
    #[error(
        "the scenario's {kind} {namespace}/{name} already exists in the cluster: remove it from the scenario or rename it"
    )]
    AlreadyExists {
        kind: &'static str,
        namespace: String,
        name: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Options of the simulated Kubernetes side. Durations are virtual.
#[derive(Clone)]
pub struct KubeSimOptions {
    /// Bearer tokens accepted by the API (secrets: never printed).
    pub bearer_tokens: Vec<String>,
    /// From a missing replica until its owner creates a replacement.
    pub recreate_delay: Duration,
    /// From a pod being bound to a Ready node until it is Running and Ready.
    pub pod_start_delay: Duration,
    /// From a VM deletion until its node's pods are marked for deletion
    /// (the default `tolerationSeconds` of the unreachable taint).
    pub lost_pod_eviction_delay: Duration,
    /// The API server version when no master node is registered.
    pub server_version: String,
}

impl std::fmt::Debug for KubeSimOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSimOptions")
            .field(
                "bearer_tokens",
                &format_args!("[{} redacted]", self.bearer_tokens.len()),
            )
            .field("recreate_delay", &self.recreate_delay)
            .field("pod_start_delay", &self.pod_start_delay)
            .field("lost_pod_eviction_delay", &self.lost_pod_eviction_delay)
            .field("server_version", &self.server_version)
            .finish()
    }
}

impl Default for KubeSimOptions {
    fn default() -> Self {
        Self {
            bearer_tokens: Vec::new(),
            recreate_delay: Duration::from_secs(2),
            pod_start_delay: Duration::from_secs(10),
            lost_pod_eviction_delay: Duration::from_secs(300),
            server_version: "v1.24.17".to_string(),
        }
    }
}

/// The role of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum NodeRole {
    Master,
    Agent,
}

/// What a booting kubelet registers.
#[derive(Clone, Debug)]
pub struct NodeRegistration {
    pub name: String,
    /// e.g. "v1.24.17"
    pub kubelet_version: String,
    pub role: NodeRole,
    /// "linux" or "windows"
    pub os: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<k8s_openapi::api::core::v1::Taint>,
    pub pool: String,
    pub vm_size: String,
    pub internal_ip: String,
}

/// The simulated Kubernetes API server and controllers. Cheap to clone.
#[derive(Clone)]
pub struct KubeSim {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for KubeSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSim").finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    world: Mutex<World>,
    wake: tokio::sync::Notify,
    ticker: AtomicBool,
}

/// Everything the simulated cluster knows.
pub(crate) struct World {
    pub store: store::Store,
    pub clock: Clock,
    pub options: KubeSimOptions,
    pub unreachable: bool,
    /// (namespace, pod name prefix) whose evictions are refused.
    pub blocked_evictions: BTreeSet<(String, String)>,
    /// Nodes whose VM is gone, with the time it went.
    pub lost_nodes: BTreeMap<String, SystemTime>,
    /// Lost nodes whose pods were already marked for deletion.
    pub lost_handled: BTreeSet<String>,
    /// Pod uid → when it becomes Running and Ready.
    pub starts: BTreeMap<String, SystemTime>,
    /// Pod uid → when a terminating pod is gone.
    pub terminations: BTreeMap<String, SystemTime>,
    /// Owner key → since when it misses replicas.
    pub shortfalls: BTreeMap<String, SystemTime>,
    /// Node name → role, for masters (server version).
    pub roles: BTreeMap<String, NodeRole>,
    pub sequence: u64,
}

impl World {
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    pub fn now_text(&self) -> String {
        store::format_time(self.now())
    }

    /// The version /version reports: the oldest kubelet among live masters.
    pub fn server_version(&self) -> String {
        let nodes = resources::get("nodes");
        let mut versions: Vec<(semver::Version, String)> = self
            .roles
            .iter()
            .filter(|(name, role)| {
                **role == NodeRole::Master && !self.lost_nodes.contains_key(*name)
            })
            .filter_map(|(name, _)| self.store.get(nodes, "", name))
            .map(|n| store::str_at(n, "/status/nodeInfo/kubeletVersion").to_string())
            .filter_map(|v| {
                semver::Version::parse(v.trim_start_matches('v'))
                    .ok()
                    .map(|p| (p, v))
            })
            .collect();
        versions.sort();
        versions
            .into_iter()
            .next()
            .map(|(_, v)| v)
            .unwrap_or_else(|| self.options.server_version.clone())
    }
}

impl KubeSim {
    /// A cluster with the system namespaces and no nodes.
    pub fn new(clock: Clock, options: KubeSimOptions) -> Self {
        let mut world = World {
            store: store::Store::new(),
            clock,
            options,
            unreachable: false,
            blocked_evictions: BTreeSet::new(),
            lost_nodes: BTreeMap::new(),
            lost_handled: BTreeSet::new(),
            starts: BTreeMap::new(),
            terminations: BTreeMap::new(),
            shortfalls: BTreeMap::new(),
            roles: BTreeMap::new(),
            sequence: 0,
        };
        let now = world.now();
        for ns in ["default", "kube-node-lease", "kube-public", "kube-system"] {
            ensure_namespace(&mut world.store, ns, now);
        }
        let sim = Self {
            shared: Arc::new(Shared {
                world: Mutex::new(world),
                wake: tokio::sync::Notify::new(),
                ticker: AtomicBool::new(false),
            }),
        };
        sim.start_ticker();
        sim
    }

    /// Locks the world and brings the controllers up to the current virtual time.
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        let mut world = self.shared.world.lock().unwrap_or_else(|e| e.into_inner());
        world.reconcile();
        world
    }

    /// Wakes the controller loop after a change.
    pub(crate) fn changed(&self) {
        self.shared.wake.notify_one();
    }

    /// Starts the background controller loop when a tokio runtime is present
    /// (it is needed only to push changes to open watches in time; every
    /// request also runs the controllers first).
    fn start_ticker(&self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.shared.ticker.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak: Weak<Shared> = Arc::downgrade(&self.shared);
        handle.spawn(async move {
            loop {
                let wait = {
                    let Some(shared) = weak.upgrade() else { return };
                    let mut world = shared.world.lock().unwrap_or_else(|e| e.into_inner());
                    world.reconcile();
                    let now = world.now();
                    world
                        .next_due()
                        .map(|due| {
                            world
                                .clock
                                .real(due.duration_since(now).unwrap_or_default())
                        })
                        .unwrap_or(Duration::from_secs(1))
                        .clamp(Duration::from_millis(1), Duration::from_secs(1))
                };
                let Some(shared) = weak.upgrade() else { return };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shared.wake.notified() => {}
                }
            }
        });
    }

    /// The Kubernetes REST API. Requests need a bearer token from the options
    /// or a verified client certificate (`sim::tls::ClientCertVerified`).
    pub fn router(&self) -> axum::Router {
        self.start_ticker();
        api::router(self.clone())
    }

    /// Creates the Node a booting kubelet registers (NotReady). If the Node
    /// exists (the VM was recreated under the same name), its spec
    /// (unschedulable, taints) and labels are kept, the registration's labels
    /// are added, and its status is replaced; pods bound to it restart.
    pub fn register_node(&self, registration: NodeRegistration) {
        let mut world = self.world();
        world.register_node(&registration);
        world.reconcile();
        drop(world);
        self.changed();
    }

    /// Marks a node Ready or NotReady (the kubelet's status report).
    pub fn set_node_ready(&self, name: &str, ready: bool) {
        let mut world = self.world();
        world.set_node_ready(name, ready);
        world.reconcile();
        drop(world);
        self.changed();
    }

    /// The node's VM is gone: the Node becomes Unknown (unreachable), its pods
    /// stop being ready and, after `lost_pod_eviction_delay`, are marked for
    /// deletion (they stay Terminating until the Node object is deleted).
    pub fn vm_deleted(&self, name: &str) {
        let mut world = self.world();
        world.vm_deleted(name);
        world.reconcile();
        drop(world);
        self.changed();
    }

    /// While set, every request is answered 503.
    pub fn set_unreachable(&self, unreachable: bool) {
        self.world().unreachable = unreachable;
    }

    /// A fault: evictions of pods in `namespace` whose name starts with
    /// `pod_name_prefix` are refused with 429 forever.
    pub fn block_evictions(&self, namespace: &str, pod_name_prefix: &str) {
        self.world()
            .blocked_evictions
            .insert((namespace.to_string(), pod_name_prefix.to_string()));
    }

    /// Creates the scenario's namespaces, workloads and budgets. Pods appear
    /// as the controllers schedule them.
    pub fn apply_scenario(&self, scenario: &Scenario) -> Result<()> {
        scenario.validate()?;
        let mut world = self.world();
        world.apply_scenario(scenario)?;
        world.reconcile();
        drop(world);
        self.changed();
        Ok(())
    }

    /// The Kubernetes world for `/_sim/state`: every object by resource, sorted.
    pub fn snapshot(&self) -> Value {
        let world = self.world();
        let mut out = serde_json::Map::new();
        out.insert(
            "resourceVersion".into(),
            json!(world.store.resource_version().to_string()),
        );
        out.insert("serverVersion".into(), json!(world.server_version()));
        out.insert("unreachable".into(), json!(world.unreachable));
        out.insert(
            "blockedEvictions".into(),
            json!(
                world
                    .blocked_evictions
                    .iter()
                    .map(|(ns, prefix)| json!({"namespace": ns, "podNamePrefix": prefix}))
                    .collect::<Vec<_>>()
            ),
        );
        out.insert(
            "lostNodes".into(),
            json!(world.lost_nodes.keys().collect::<Vec<_>>()),
        );
        for r in resources::RESOURCES {
            let items: Vec<Value> = world.store.list(r, None).into_iter().cloned().collect();
            out.insert(r.id().to_string(), json!(items));
        }
        Value::Object(out)
    }

    /// The current objects of a resource (`plural` or `plural.group`), for tests.
    pub fn objects(&self, resource_id: &str) -> Vec<Value> {
        let world = self.world();
        resources::RESOURCES
            .iter()
            .find(|r| r.id() == resource_id)
            .map(|r| world.store.list(r, None).into_iter().cloned().collect())
            .unwrap_or_default()
    }
}

fn ensure_namespace(store: &mut store::Store, name: &str, now: SystemTime) {
    let namespaces = resources::get("namespaces");
    if store.get(namespaces, "", name).is_none() {
        let object = json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"}
        });
        // Creation cannot fail: the name is set and not yet taken.
        let _ = store.create(namespaces, object, now);
    }
}
