//! Helpers of the end-to-end upgrade tests: a simulator on port 0, the real
//! engine built the way the CLI builds it, and a `Reporter` that checks the
//! safety invariants of ARCHITECTURE.md against the simulator's state after
//! every step (and just before every VM deletion).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aksup::cli::execute;
use aksup::cli::upgrade::{self, UpgradeArgs};
use aksup::model::ApiModel;
use aksup::report::{Event, Reporter};
use aksup::sim::kube::KubeSim;
use aksup::sim::{SimOptions, Simulator, World};
use aksup::upgrade::engine::{self, Engine, StopFlag, Summary, UpgradeOptions};
use clap::Parser;
use serde_json::Value;

/// Virtual seconds per real second in these tests.
pub const TIME_SCALE: f64 = 3000.0;
pub const TARGET: &str = "1.34.4";

#[derive(Parser)]
struct Cmd {
    #[command(flatten)]
    args: UpgradeArgs,
}

pub fn apimodel(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/apimodels")
        .join(format!("{name}.json"))
}

/// A running simulator and the files of its cluster.
pub struct Harness {
    pub sim: Simulator,
    pub dir: tempfile::TempDir,
    /// The simulator's apimodel copy (what the engine reads and writes back).
    pub model_path: PathBuf,
    pub initial_model: Vec<u8>,
    /// Etcd disks at start: name → creation time.
    pub etcd_disks: BTreeMap<String, String>,
}

/// Starts a simulator seeded from `testdata/apimodels/<name>.json`.
pub async fn start(name: &str, configure: impl FnOnce(&mut SimOptions)) -> Harness {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut options = SimOptions::new(ApiModel::load(&apimodel(name)).expect("a test apimodel"));
    options.time_scale = TIME_SCALE;
    options.state_dir = Some(dir.path().join("sim"));
    configure(&mut options);
    let sim = Simulator::start(options)
        .await
        .expect("the simulator starts");
    let model_path = sim
        .endpoints
        .api_model_file
        .clone()
        .expect("an apimodel copy");
    let initial_model = std::fs::read(&model_path).expect("the apimodel copy");
    let etcd_disks = etcd_disks(sim.world());
    Harness {
        sim,
        dir,
        model_path,
        initial_model,
        etcd_disks,
    }
}

pub fn etcd_disks(world: &World) -> BTreeMap<String, String> {
    world
        .lock()
        .disks
        .values()
        .filter(|d| d.name.ends_with("-etcddisk"))
        .map(|d| (d.name.clone(), d.time_created.clone()))
        .collect()
}

impl Harness {
    /// The flags a user would pass against the stamp, pointing at the simulator.
    pub fn args(&self, target: &str, extra: &[&str]) -> UpgradeArgs {
        let e = &self.sim.endpoints;
        let ca = e.ca_file.clone().expect("a CA file");
        let mut argv: Vec<String> = [
            "upgrade",
            "--api-model",
            &self.model_path.display().to_string(),
            "--upgrade-version",
            target,
            "--resource-group",
            &e.resource_group,
            "--location",
            &e.location,
            "--subscription-id",
            &e.subscription_id,
            "--client-id",
            &e.client_id,
            "--client-secret",
            &e.client_secret,
            "--auth-method",
            "client_secret",
            "--azure-env",
            "AzureStackCloud",
            "--ca-file",
            &ca.display().to_string(),
            "--no-progress",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        argv.extend(extra.iter().map(|s| (*s).to_owned()));
        Cmd::try_parse_from(argv).expect("valid flags").args
    }

    /// The engine as `aksup upgrade` builds it (same clients, same options).
    pub async fn engine(
        &self,
        target: &str,
        extra: &[&str],
        reporter: Arc<dyn Reporter>,
        stop: StopFlag,
    ) -> Engine {
        self.engine_with(target, extra, reporter, stop, |_| {})
            .await
    }

    /// [`Harness::engine`] with the options adjusted (e.g. real-time timeouts
    /// shorter than the flags' whole minutes).
    pub async fn engine_with(
        &self,
        target: &str,
        extra: &[&str],
        reporter: Arc<dyn Reporter>,
        stop: StopFlag,
        tweak: impl FnOnce(&mut UpgradeOptions),
    ) -> Engine {
        let args = self.args(target, extra);
        let checked = upgrade::check(&args).expect("the request passes the offline checks");
        let mut http = aksup::arm::HttpOptions::from_process_env(args.ca_file.clone());
        http.retry.time_scale = TIME_SCALE;
        let arm = execute::arm_client(&checked, &args, http)
            .await
            .expect("an ARM client");
        let kube = execute::kube_client(&checked, &args)
            .await
            .expect("a Kubernetes client");
        let mut options = execute::upgrade_options(&checked, &args);
        options.lro_interval = Duration::from_millis(20);
        // Real-time polling knobs, scaled down with the simulator's clock.
        options.drain.poll_interval = Duration::from_millis(20);
        options.drain.eviction_backoff = (Duration::from_millis(20), Duration::from_millis(200));
        tweak(&mut options);
        Engine::new(arm, kube, checked.model.clone(), options, reporter, stop)
    }

    pub async fn kube_client(&self) -> kube::Client {
        let args = self.args(TARGET, &[]);
        let checked = upgrade::check(&args).expect("checked");
        execute::kube_client(&checked, &args)
            .await
            .expect("a client")
    }

    pub fn checker(&self) -> Arc<Checker> {
        Arc::new(Checker::new(self))
    }

    /// One full run with invariant checks; returns the result and the checker.
    pub async fn run(
        &self,
        target: &str,
        extra: &[&str],
    ) -> (engine::Result<Summary>, Arc<Checker>) {
        self.run_with(target, extra, |_| {}).await
    }

    pub async fn run_with(
        &self,
        target: &str,
        extra: &[&str],
        tweak: impl FnOnce(&mut UpgradeOptions),
    ) -> (engine::Result<Summary>, Arc<Checker>) {
        let checker = self.checker();
        let mut engine = self
            .engine_with(target, extra, checker.clone(), StopFlag::default(), tweak)
            .await;
        let result = engine.run().await;
        (result, checker)
    }

    pub fn world(&self) -> &World {
        self.sim.world()
    }

    pub fn kube(&self) -> &KubeSim {
        self.sim.kube()
    }

    /// What converged runs must agree on.
    pub fn end_state(&self) -> EndState {
        end_state(self.world(), self.kube())
    }

    pub fn suffix(&self) -> String {
        self.world().lock().cluster.suffix.clone()
    }

    /// Asserts the final state of a successful upgrade to `target`.
    pub fn assert_upgraded(&self, target: &str, model: &ApiModel, control_plane_only: bool) {
        let state = self.end_state();
        let view = model.view();
        let suffix = self.suffix();
        let tag = format!("Kubernetes:{target}");
        // Masters: same indexes, upgraded.
        let masters = view
            .properties
            .master_profile
            .as_ref()
            .map_or(1, |m| m.count());
        let expected: BTreeSet<String> = (0..masters)
            .map(|i| format!("k8s-master-{suffix}-{i}"))
            .collect();
        let found: BTreeSet<String> = state
            .vms
            .iter()
            .filter(|(_, vm)| vm.pool == "master")
            .map(|(name, _)| name.clone())
            .collect();
        assert_eq!(found, expected, "master VMs");
        for (position, pool) in view.properties.agent_pool_profiles.iter().enumerate() {
            let count = pool.count();
            let indexes: Vec<usize> = if control_plane_only {
                (0..count).collect()
            } else {
                // aks-engine: surge at `count`, the last old index not recreated.
                (0..count.saturating_sub(1)).chain([count]).collect()
            };
            let expected: BTreeSet<String> = indexes
                .iter()
                .map(|i| {
                    if pool.is_windows() {
                        format!("{}k8s{position:02}{i}", &suffix[..4])
                    } else {
                        format!("k8s-{}-{suffix}-{i}", pool.name)
                    }
                })
                .collect();
            let found: BTreeSet<String> = state
                .vms
                .iter()
                .filter(|(_, vm)| vm.pool == pool.name)
                .map(|(name, _)| name.clone())
                .collect();
            assert_eq!(found, expected, "VMs of pool {}", pool.name);
        }
        for (name, vm) in &state.vms {
            let upgraded = !control_plane_only || vm.pool == "master";
            if upgraded {
                assert_eq!(vm.orchestrator, tag, "tag of {name}");
            }
            assert_eq!(vm.provisioning_state, "Succeeded", "{name}");
            let node = state
                .nodes
                .get(&name.to_ascii_lowercase())
                .unwrap_or_else(|| panic!("the node of {name}: {:?}", state.nodes.keys()));
            assert!(node.ready, "{name} Ready");
            assert!(!node.unschedulable, "{name} left cordoned");
            if upgraded {
                assert_eq!(node.kubelet, format!("v{target}"), "kubelet of {name}");
            }
        }
        assert_eq!(
            state.nodes.len(),
            state.vms.len(),
            "one node per VM: {:?}",
            state.nodes.keys()
        );
        // Etcd disks: the same disks.
        assert_eq!(etcd_disks(self.world()), self.etcd_disks, "etcd disks");
        self.assert_no_etcd_disk_deleted();
    }

    pub fn assert_no_etcd_disk_deleted(&self) {
        let deletes: Vec<String> = self
            .world()
            .requests()
            .records()
            .into_iter()
            .filter(|r| r.method == "DELETE" && r.path.to_ascii_lowercase().contains("etcddisk"))
            .map(|r| r.path)
            .collect();
        assert!(deletes.is_empty(), "etcd disks deleted: {deletes:?}");
    }

    /// The apimodel was written back: version, release, the Azure Stack
    /// adjustments, backup kept.
    pub fn assert_model_written(&self, target: &str) -> ApiModel {
        // The adjustments the CLI computes from the model as it was.
        let backup = backup_path(&self.model_path);
        let adjustments = std::fs::read(&backup).ok().map(|_| {
            let mut args = self.args(target, &["--force"]);
            args.api_model = Some(backup.clone());
            upgrade::check(&args).expect("checked").adjustments
        });
        let model = ApiModel::load(&self.model_path).expect("the written apimodel parses");
        for adjustment in adjustments.into_iter().flatten() {
            assert_eq!(
                model.raw().pointer(&adjustment.pointer),
                Some(&adjustment.to),
                "adjustment {} ({})",
                adjustment.pointer,
                adjustment.reason
            );
        }
        model.validate().expect("the written apimodel is valid");
        assert_eq!(model.view().orchestrator_version(), target);
        let release = model
            .raw()
            .pointer("/properties/orchestratorProfile/orchestratorRelease")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let v = semver::Version::parse(target).expect("a version");
        assert_eq!(release, Some(format!("{}.{}", v.major, v.minor)));
        assert_eq!(
            std::fs::read(&backup).expect("the backup exists"),
            self.initial_model,
            "the backup is the previous file"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&self.model_path)
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "apimodel mode");
        }
        model
    }

    pub fn assert_model_unchanged(&self) {
        assert_eq!(
            std::fs::read(&self.model_path).expect("the apimodel"),
            self.initial_model,
            "the apimodel must be left unchanged"
        );
    }

    /// Mutating ARM requests seen so far (deployments, deletes).
    pub fn mutations(&self) -> usize {
        mutations(self.world())
    }
}

pub fn mutations(world: &World) -> usize {
    let total: u64 = world
        .requests()
        .counts()
        .iter()
        .filter(|(endpoint, _)| {
            let (method, path) = endpoint.split_once(' ').unwrap_or_default();
            matches!(method, "PUT" | "DELETE" | "PATCH") && path.starts_with("/subscriptions/")
        })
        .map(|(_, n)| n)
        .sum();
    usize::try_from(total).unwrap_or(usize::MAX)
}

pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".bak");
    PathBuf::from(name)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmState {
    pub pool: String,
    pub orchestrator: String,
    pub provisioning_state: String,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    pub ready: bool,
    pub kubelet: String,
    pub unschedulable: bool,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<String>,
}

/// The state converged runs must agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndState {
    pub vms: BTreeMap<String, VmState>,
    pub nodes: BTreeMap<String, NodeState>,
    pub nics: BTreeSet<String>,
    pub disks: BTreeSet<String>,
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

pub fn node_ready(node: &Value) -> bool {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| str_at(c, "/type") == "Ready" && str_at(c, "/status") == "True")
}

pub fn end_state(world: &World, kube: &KubeSim) -> EndState {
    let (vms, nics, disks) = {
        let state = world.lock();
        let vms = state
            .virtual_machines
            .values()
            .map(|vm| {
                (
                    vm.name.clone(),
                    VmState {
                        pool: vm.tags.get("poolName").cloned().unwrap_or_default(),
                        orchestrator: vm.tags.get("orchestrator").cloned().unwrap_or_default(),
                        provisioning_state: vm.provisioning_state.clone(),
                        tags: vm.tags.clone(),
                    },
                )
            })
            .collect();
        let nics = state.network_interfaces.keys().cloned().collect();
        // OS disk names carry a random part: compare by owner.
        let disks = state
            .disks
            .values()
            .map(|d| {
                if d.name.contains("_OsDisk_") {
                    format!("osdisk of {}", d.managed_by.clone().unwrap_or_default())
                } else {
                    d.name.clone()
                }
            })
            .collect();
        (vms, nics, disks)
    };
    let nodes = kube
        .objects("nodes")
        .iter()
        .map(|n| {
            let labels: BTreeMap<String, String> = n
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            let mut taints: Vec<String> = n
                .pointer("/spec/taints")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|t| {
                    format!(
                        "{}={}:{}",
                        str_at(t, "/key"),
                        str_at(t, "/value"),
                        str_at(t, "/effect")
                    )
                })
                .collect();
            taints.sort();
            (
                str_at(n, "/metadata/name").to_owned(),
                NodeState {
                    ready: node_ready(n),
                    kubelet: str_at(n, "/status/nodeInfo/kubeletVersion").to_owned(),
                    unschedulable: n
                        .pointer("/spec/unschedulable")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    labels,
                    taints,
                },
            )
        })
        .collect();
    EndState {
        vms,
        nodes,
        nics,
        disks,
    }
}

/// A `Reporter` that keeps every event and checks the invariants.
pub struct Checker {
    world: World,
    kube: KubeSim,
    etcd_disks: BTreeMap<String, String>,
    masters: Vec<String>,
    /// Nodes the operator cordoned before the run: never uncordoned.
    pub operator_cordoned: Mutex<BTreeSet<String>>,
    pub events: Mutex<Vec<Event>>,
    pub violations: Mutex<Vec<String>>,
    /// Ask this flag to stop once this many steps finished.
    stop_after: Mutex<Option<(usize, StopFlag)>>,
    pub checks: Mutex<usize>,
}

impl Checker {
    fn new(h: &Harness) -> Self {
        let suffix = h.suffix();
        let count = h.world().lock().cluster.master_count;
        Self {
            world: h.world().clone(),
            kube: h.kube().clone(),
            etcd_disks: h.etcd_disks.clone(),
            masters: (0..count)
                .map(|i| format!("k8s-master-{suffix}-{i}"))
                .collect(),
            operator_cordoned: Mutex::new(BTreeSet::new()),
            events: Mutex::new(Vec::new()),
            violations: Mutex::new(Vec::new()),
            stop_after: Mutex::new(None),
            checks: Mutex::new(0),
        }
    }

    pub fn stop_after(&self, steps: usize, flag: StopFlag) {
        *self.stop_after.lock().expect("lock") = Some((steps, flag));
    }

    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().expect("lock").clone()
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("lock").clone()
    }

    /// Steps that finished successfully, as "verb subject".
    pub fn steps(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter_map(|e| match e {
                Event::StepFinished {
                    action,
                    subject,
                    outcome: aksup::report::Outcome::Success,
                    ..
                } => Some(format!("{action} {subject}")),
                _ => None,
            })
            .collect()
    }

    /// All events as JSON lines (for secret checks and diagnostics).
    pub fn transcript(&self) -> String {
        self.events()
            .iter()
            .map(|e| serde_json::to_string(e).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn assert_clean(&self) {
        let violations = self.violations();
        assert!(
            violations.is_empty(),
            "invariants violated:\n{}",
            violations.join("\n")
        );
        assert!(
            *self.checks.lock().expect("lock") > 0,
            "no step was checked"
        );
    }

    fn violation(&self, text: String) {
        self.violations.lock().expect("lock").push(text);
    }

    /// Invariants 1, 4, 5 after a step.
    fn after_step(&self, number: usize, subject: &str) {
        *self.checks.lock().expect("lock") += 1;
        let nodes: BTreeMap<String, Value> = self
            .kube
            .objects("nodes")
            .into_iter()
            .map(|n| (str_at(&n, "/metadata/name").to_owned(), n))
            .collect();
        let (vm_names, disks) = {
            let state = self.world.lock();
            (
                state
                    .virtual_machines
                    .values()
                    .filter(|vm| vm.provisioning_state == "Succeeded")
                    .map(|vm| vm.name.clone())
                    .collect::<BTreeSet<_>>(),
                state
                    .disks
                    .values()
                    .map(|d| (d.name.clone(), d.time_created.clone()))
                    .collect::<BTreeMap<_, _>>(),
            )
        };
        // 1: at most one master slot missing or NotReady at any step boundary.
        let down: Vec<&String> = self
            .masters
            .iter()
            .filter(|m| {
                !vm_names.contains(*m)
                    || !nodes.get(&m.to_ascii_lowercase()).is_some_and(node_ready)
            })
            .collect();
        if down.len() > 1 {
            self.violation(format!(
                "after step {number} ({subject}): masters down: {down:?}"
            ));
        }
        // 4: etcd disks never lost or replaced.
        for (disk, created) in &self.etcd_disks {
            if disks.get(disk) != Some(created) {
                self.violation(format!(
                    "after step {number} ({subject}): etcd disk {disk} lost or replaced"
                ));
            }
        }
        // 5: operator-cordoned nodes stay cordoned while they exist.
        for name in self.operator_cordoned.lock().expect("lock").iter() {
            if let Some(node) = nodes.get(name)
                && !node
                    .pointer("/spec/unschedulable")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            {
                self.violation(format!(
                    "after step {number} ({subject}): {name} was uncordoned"
                ));
            }
        }
    }

    /// Invariants 2 and 3 just before a VM is deleted: its node has no
    /// evictable pods left, and no budget is below its minimum.
    fn before_delete(&self, vm: &str) {
        *self.checks.lock().expect("lock") += 1;
        let node = vm.to_ascii_lowercase();
        for pod in self.kube.objects("pods") {
            if str_at(&pod, "/spec/nodeName") != node {
                continue;
            }
            let daemon = pod
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|o| str_at(o, "/kind") == "DaemonSet");
            let mirror = pod
                .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
                .is_some();
            let finished = matches!(str_at(&pod, "/status/phase"), "Succeeded" | "Failed");
            if !daemon && !mirror && !finished {
                self.violation(format!(
                    "VM {vm} deleted while pod {}/{} was still on its node",
                    str_at(&pod, "/metadata/namespace"),
                    str_at(&pod, "/metadata/name")
                ));
            }
        }
        for pdb in self.kube.objects("poddisruptionbudgets.policy") {
            let healthy = pdb
                .pointer("/status/currentHealthy")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let desired = pdb
                .pointer("/status/desiredHealthy")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if healthy < desired {
                self.violation(format!(
                    "before deleting {vm}: PDB {}/{} below its minimum ({healthy} < {desired})",
                    str_at(&pdb, "/metadata/namespace"),
                    str_at(&pdb, "/metadata/name")
                ));
            }
        }
    }
}

impl Reporter for Checker {
    fn report(&self, event: &Event) {
        self.events.lock().expect("lock").push(event.clone());
        match event {
            Event::StepFinished {
                number, subject, ..
            } => {
                self.after_step(*number, subject);
                if let Some((k, flag)) = self.stop_after.lock().expect("lock").as_ref()
                    && *number >= *k
                {
                    flag.request();
                }
            }
            Event::Progress { subject, message } if message == "deleting the VM" => {
                self.before_delete(subject);
            }
            _ => {}
        }
    }
}

/// The message of an error with all its sources, one line.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
