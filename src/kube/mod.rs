//! Node operations on the Kubernetes API: connecting, cordon / uncordon, drain
//! with `kubectl drain` rules and PodDisruptionBudget reporting, waiting for a
//! node to be Ready, copying an old node's properties onto its replacement, and
//! the upgrade lock.
//!
//! Every operation returns a result object and reports progress through a
//! [`NodeEvents`] callback; nothing here prints. Retries are decided in one
//! place, [`retry`], from the HTTP status only. See `docs/draining.md`.

pub mod connect;
pub mod copy;
pub mod cordon;
pub mod drain;
mod error;
pub mod events;
pub mod lock;
pub mod ready;
pub mod retry;
#[doc(hidden)]
pub mod scenarios;
pub mod selector;

pub use connect::{
    ApiModelAccess, ClusterAccess, client_from_config, config_from_apimodel, connect,
};
pub use copy::{CopyOptions, CopyPlan, CopyResult, copy_properties, plan_copy, replaced_node_of};
pub use cordon::{CordonOutcome, UncordonOutcome, cordon, uncordon};
pub use drain::{
    BlockedPod, BlockingPdb, CordonDrainResult, DrainOptions, DrainResult, DrainTimeoutPolicy,
    PodAction, PodRef, cordon_and_drain, drain,
};
pub use error::Error;
pub use events::{NoEvents, NodeEvent, NodeEvents, RecordedEvents, Severity};
pub use lock::{LockHolder, LockOptions, UpgradeLock, break_lock};
pub use ready::{ConditionReport, NodeStatusReport, ReadyResult, wait_ready};
pub use retry::RetryPolicy;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Annotations and labels aksup itself writes on nodes.
pub mod keys {
    /// Set on a node aksup cordoned; aksup uncordons only nodes carrying it.
    pub const CORDONED_BY_AKSUP: &str = "aksup.io/cordoned";
    /// Set on a new node: the name of the node it replaced (used to resume).
    pub const REPLACED_NODE: &str = "aksup.io/replaced-node";
    /// Prefix of every key aksup manages; never copied between nodes.
    pub const AKSUP_PREFIX: &str = "aksup.io/";
}

/// Node names are shared with the rest of aksup (one lowercasing rule, in `names`).
pub use crate::names::NodeName;

#[cfg(test)]
mod tests {
    use super::NodeName;

    #[test]
    fn node_name_from_vm_name_lowercases_once() {
        let name = NodeName::from_vm_name("K8S-Agentpool1-12345678-0");
        assert_eq!(name.as_str(), "k8s-agentpool1-12345678-0");
        assert_eq!(name.to_string(), "k8s-agentpool1-12345678-0");
        assert_eq!(NodeName::new("Mixed").as_str(), "Mixed");
    }
}
