//! The simulated stamp's state: ARM resources, operations, identity, faults.
//!
//! [`World`] is a cheap handle (Arc inside) shared by the ARM listener, the
//! background tasks that move long-running operations forward in virtual time,
//! and tests. Resource maps are keyed by lowercase name (ARM names are
//! case-insensitive) and ordered, so dumps are deterministic.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::Value;

use super::clock::Clock;
use super::faults::Faults;
use super::kube::KubeSim;
use super::requests::RequestLog;

/// Realistic durations of the stamp, in virtual time. See `docs/simulator.md`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timings {
    /// A deployment goes from `Accepted` to `Running`.
    pub deployment_start: Duration,
    /// A VM is created (provisioning state `Creating` → `Succeeded`).
    pub vm_create: Duration,
    /// A created VM boots until its kubelet registers the Node (NotReady).
    pub vm_boot: Duration,
    /// A registered Node becomes Ready.
    pub node_ready: Duration,
    /// A VM is deleted.
    pub vm_delete: Duration,
    /// A NIC is created or deleted.
    pub nic: Duration,
    /// A managed disk is deleted.
    pub disk_delete: Duration,
    /// A pod terminates after an eviction or delete (passed to the Kubernetes side).
    pub pod_termination: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            deployment_start: Duration::from_secs(5),
            vm_create: Duration::from_secs(240),
            vm_boot: Duration::from_secs(120),
            node_ready: Duration::from_secs(20),
            vm_delete: Duration::from_secs(60),
            nic: Duration::from_secs(10),
            disk_delete: Duration::from_secs(10),
            pod_termination: Duration::from_secs(30),
        }
    }
}

/// The lifetime of access tokens unless [`crate::sim::SimOptions::token_lifetime`] says otherwise.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3599);

/// An api-version profile of Azure Stack Hub.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum Profile {
    /// `2020-09-01-hybrid`: the newest; a stamp on it also serves the older versions.
    #[default]
    #[serde(rename = "2020-09-01-hybrid")]
    Hybrid20200901,
    /// `2019-03-01-hybrid`: an older stamp.
    #[serde(rename = "2019-03-01-hybrid")]
    Hybrid20190301,
}

impl Profile {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "2020-09-01-hybrid" => Some(Self::Hybrid20200901),
            "2019-03-01-hybrid" => Some(Self::Hybrid20190301),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Hybrid20200901 => "2020-09-01-hybrid",
            Self::Hybrid20190301 => "2019-03-01-hybrid",
        }
    }
}

/// Which service principal may get tokens, and the tokens issued.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub tenant_id: String,
    pub client_id: String,
    #[serde(skip)]
    pub client_secret: String,
    /// DER of the service principal's registered certificate.
    #[serde(skip)]
    pub certificate_der: Vec<u8>,
    /// SubjectPublicKeyInfo DER of that certificate's key.
    #[serde(skip)]
    pub public_key_der: Vec<u8>,
    /// The token audience (`serviceManagementEndpoint`).
    pub audience: String,
}

/// An access token handed out by a token endpoint.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub client_id: String,
    pub expires: Instant,
}

/// How a VM's image is referenced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", untagged)]
pub enum ImageRef {
    Marketplace {
        publisher: String,
        offer: String,
        sku: String,
        version: String,
    },
    Id {
        id: String,
    },
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OsDisk {
    pub name: String,
    pub os_type: String,
    pub create_option: String,
    pub caching: String,
    pub disk_size_gb: i64,
    pub storage_account_type: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataDisk {
    pub lun: i64,
    pub name: String,
    pub create_option: String,
    pub caching: String,
    pub disk_size_gb: i64,
    pub storage_account_type: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Extension {
    pub name: String,
    pub publisher: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub type_handler_version: String,
    pub auto_upgrade_minor_version: bool,
    pub settings: Value,
    /// Never returned by ARM.
    #[serde(skip)]
    pub protected_settings: Value,
    pub provisioning_state: String,
}

/// What the VM's kubelet is doing, for `/_sim/state` and tests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "phase", content = "detail")]
pub enum Boot {
    /// Created by seeding: the node exists and is Ready.
    Seeded,
    /// Waiting for provisioning or booting.
    Pending,
    /// The Node registered and is not Ready yet (or never will be).
    Registered,
    Ready,
    /// The kubelet never starts: why.
    Failed(String),
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMachine {
    pub name: String,
    pub vm_id: String,
    pub location: String,
    pub tags: BTreeMap<String, String>,
    pub vm_size: String,
    /// Availability set name.
    pub availability_set: Option<String>,
    pub image: ImageRef,
    pub os_disk: OsDisk,
    pub data_disks: Vec<DataDisk>,
    /// NIC names.
    pub network_interfaces: Vec<String>,
    pub computer_name: String,
    pub admin_username: String,
    /// Base64 customData. Never returned by ARM nor dumped.
    #[serde(skip)]
    pub custom_data: Option<String>,
    #[serde(skip)]
    pub os_profile_extra: Value,
    pub provisioning_state: String,
    /// `running`, `starting`, `stopped`, `deallocated`.
    pub power_state: String,
    pub extensions: Vec<Extension>,
    pub time_created: String,
    /// The deployment that created it (none when seeded).
    pub deployment: Option<String>,
    pub node_name: Option<String>,
    pub boot: Boot,
    /// Incarnation: a VM deleted and recreated under the same name gets a new one.
    pub incarnation: u64,
}

impl VirtualMachine {
    pub fn is_windows(&self) -> bool {
        self.os_disk.os_type.eq_ignore_ascii_case("windows")
    }

    pub fn pool(&self) -> Option<&str> {
        self.tags.get("poolName").map(String::as_str)
    }

    pub fn is_master(&self) -> bool {
        self.pool()
            .is_some_and(|p| p.eq_ignore_ascii_case("master"))
            || self.name.contains("-master-")
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInterface {
    pub name: String,
    pub location: String,
    pub tags: BTreeMap<String, String>,
    pub private_ip_address: String,
    /// `Static` or `Dynamic`.
    pub private_ip_allocation_method: String,
    pub subnet_id: String,
    pub ip_forwarding: bool,
    /// The VM using it.
    pub virtual_machine: Option<String>,
    pub provisioning_state: String,
    pub incarnation: u64,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedDisk {
    pub name: String,
    pub location: String,
    pub tags: BTreeMap<String, String>,
    pub disk_size_gb: i64,
    pub sku: String,
    pub os_type: Option<String>,
    pub create_option: String,
    pub image: Option<ImageRef>,
    /// VM name when attached.
    pub managed_by: Option<String>,
    pub provisioning_state: String,
    pub time_created: String,
    pub incarnation: u64,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AvailabilitySet {
    pub name: String,
    pub location: String,
    pub tags: BTreeMap<String, String>,
    pub platform_fault_domain_count: i64,
    pub platform_update_domain_count: i64,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentOperation {
    pub operation_id: String,
    pub provisioning_operation: String,
    pub provisioning_state: String,
    pub timestamp: String,
    pub duration: String,
    pub status_code: String,
    pub status_message: Value,
    pub resource_id: String,
    pub resource_type: String,
    pub resource_name: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub name: String,
    pub mode: String,
    #[serde(skip)]
    pub template: Value,
    #[serde(skip)]
    pub parameters: Value,
    pub template_hash: String,
    pub provisioning_state: String,
    pub correlation_id: String,
    pub timestamp: String,
    #[serde(skip)]
    pub started: Duration,
    pub duration: String,
    pub error: Option<Value>,
    pub output_resources: Vec<String>,
    pub operations: Vec<DeploymentOperation>,
    /// The long-running operation tracking it.
    pub operation_id: String,
    pub incarnation: u64,
}

/// What a long-running operation acts on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum OperationKind {
    VmDelete,
    NicDelete,
    DiskDelete,
    Deployment,
}

impl OperationKind {
    /// The resource provider whose `locations/{loc}/operations` serves it.
    pub fn provider(&self) -> &'static str {
        match self {
            Self::VmDelete | Self::DiskDelete => "Microsoft.Compute",
            Self::NicDelete => "Microsoft.Network",
            Self::Deployment => "Microsoft.Resources",
        }
    }
}

/// A long-running operation (ARM RPC): its status steps InProgress → terminal.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AsyncOperation {
    pub id: String,
    pub kind: OperationKind,
    /// The resource name (VM, NIC, disk, deployment).
    pub resource: String,
    /// `InProgress`, `Succeeded`, `Failed`, `Canceled`.
    pub status: String,
    pub start_time: String,
    pub end_time: Option<String>,
    pub error: Option<Value>,
}

/// The cluster the world was seeded from.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfo {
    pub dns_prefix: String,
    pub suffix: String,
    pub orchestrator_version: String,
    pub master_count: usize,
    pub vnet_subnet_id: String,
}

/// Everything the stamp holds.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub subscription_id: String,
    pub resource_group: String,
    pub location: String,
    pub profile: Profile,
    pub page_size: usize,
    pub identity: Identity,
    /// How long issued access tokens stay valid (real time).
    #[serde(skip)]
    pub token_lifetime: Duration,
    #[serde(skip)]
    pub tokens: HashMap<String, IssuedToken>,
    pub cluster: ClusterInfo,
    pub virtual_machines: BTreeMap<String, VirtualMachine>,
    pub network_interfaces: BTreeMap<String, NetworkInterface>,
    pub disks: BTreeMap<String, ManagedDisk>,
    pub availability_sets: BTreeMap<String, AvailabilitySet>,
    pub deployments: BTreeMap<String, Deployment>,
    pub operations: BTreeMap<String, AsyncOperation>,
    pub faults: Faults,
    #[serde(skip)]
    pub next_incarnation: u64,
    /// True while the Kubernetes API is made unreachable.
    pub kube_unreachable: bool,
}

impl State {
    pub fn new(
        subscription_id: String,
        resource_group: String,
        location: String,
        identity: Identity,
    ) -> Self {
        Self {
            subscription_id,
            resource_group,
            location,
            profile: Profile::default(),
            page_size: 50,
            identity,
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            tokens: HashMap::new(),
            cluster: ClusterInfo::default(),
            virtual_machines: BTreeMap::new(),
            network_interfaces: BTreeMap::new(),
            disks: BTreeMap::new(),
            availability_sets: BTreeMap::new(),
            deployments: BTreeMap::new(),
            operations: BTreeMap::new(),
            faults: Faults::default(),
            next_incarnation: 0,
            kube_unreachable: false,
        }
    }

    pub fn incarnation(&mut self) -> u64 {
        self.next_incarnation += 1;
        self.next_incarnation
    }

    pub fn vm(&self, name: &str) -> Option<&VirtualMachine> {
        self.virtual_machines.get(&name.to_ascii_lowercase())
    }

    pub fn vm_mut(&mut self, name: &str) -> Option<&mut VirtualMachine> {
        self.virtual_machines.get_mut(&name.to_ascii_lowercase())
    }

    pub fn nic(&self, name: &str) -> Option<&NetworkInterface> {
        self.network_interfaces.get(&name.to_ascii_lowercase())
    }

    pub fn disk(&self, name: &str) -> Option<&ManagedDisk> {
        self.disks.get(&name.to_ascii_lowercase())
    }

    pub fn rg_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}",
            self.subscription_id, self.resource_group
        )
    }

    pub fn resource_id(&self, provider_type: &str, name: &str) -> String {
        format!("{}/providers/{}/{}", self.rg_id(), provider_type, name)
    }
}

/// The shared world. Cheap to clone.
#[derive(Clone)]
pub struct World {
    state: Arc<Mutex<State>>,
    clock: Clock,
    kube: KubeSim,
    timings: Arc<Timings>,
    requests: RequestLog,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World").finish_non_exhaustive()
    }
}

impl World {
    pub fn new(state: State, clock: Clock, kube: KubeSim, timings: Timings) -> Self {
        Self {
            state: Arc::new(Mutex::new(state)),
            clock,
            kube,
            timings: Arc::new(timings),
            requests: RequestLog::default(),
        }
    }

    /// Locks the state. Never hold the guard across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn kube(&self) -> &KubeSim {
        &self.kube
    }

    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    pub fn requests(&self) -> &RequestLog {
        &self.requests
    }

    /// The current virtual time, formatted as ARM does.
    pub fn now(&self) -> String {
        super::util::rfc3339(self.clock.now())
    }

    pub fn now_system(&self) -> SystemTime {
        self.clock.now()
    }

    /// `duration` stretched by the slow-operation faults for `operation`.
    pub fn duration_of(&self, operation: &str, duration: Duration) -> Duration {
        let factor = self.lock().faults.slowdown(operation);
        duration.mul_f64(factor)
    }

    /// The whole world as JSON (no secrets): ARM side, Kubernetes side, clock.
    pub fn snapshot(&self) -> Value {
        let arm = serde_json::to_value(&*self.lock()).unwrap_or(Value::Null);
        serde_json::json!({
            "clock": {
                "scale": self.clock.scale(),
                "virtualElapsedSeconds": self.clock.elapsed().as_secs_f64(),
                "virtualNow": self.now(),
            },
            "timings": serde_json::to_value(&*self.timings).unwrap_or(Value::Null),
            "arm": arm,
            "kubernetes": self.kube.snapshot(),
            "requests": self.requests.counts(),
        })
    }

    /// Re-evaluates whether the Kubernetes API must be unreachable (the
    /// `kubeUnreachableWithoutMaster` fault) and tells the Kubernetes side.
    pub fn update_kube_reachability(&self) {
        let change = {
            let mut state = self.lock();
            let unreachable = state.faults.kube_unreachable_without_master()
                && !state.virtual_machines.values().any(|vm| {
                    vm.is_master()
                        && matches!(vm.boot, Boot::Ready | Boot::Seeded)
                        && vm.provisioning_state != "Deleting"
                });
            if unreachable != state.kube_unreachable {
                state.kube_unreachable = unreachable;
                Some(unreachable)
            } else {
                None
            }
        };
        if let Some(unreachable) = change {
            self.kube.set_unreachable(unreachable);
        }
    }
}
