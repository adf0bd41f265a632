//! PLACEHOLDER for the simulator's Kubernetes side (built by sim-kube).
//!
//! Only the interface the ARM side codes against, with trivial bodies. The real
//! file replaces this one at merge.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sim::clock::Clock;

/// Errors of the Kubernetes side.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid scenario: {0}")]
    Scenario(String),
}

/// Options of the Kubernetes side.
#[derive(Clone, Debug, Default)]
pub struct KubeSimOptions {
    /// Bearer tokens the Kubernetes API accepts.
    pub bearer_tokens: Vec<String>,
}

/// Role of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeRole {
    Master,
    Agent,
}

/// A node that a booted VM registers.
#[derive(Clone, Debug)]
pub struct NodeRegistration {
    pub name: String,
    pub kubelet_version: String,
    pub role: NodeRole,
    /// `linux` or `windows`.
    pub os: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<k8s_openapi::api::core::v1::Taint>,
    pub pool: String,
    pub vm_size: String,
    pub internal_ip: String,
}

/// Workloads to create in the cluster.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Scenario {
    #[serde(flatten)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl Scenario {
    pub fn from_json(text: &str) -> Result<Self, Error> {
        serde_json::from_str(text).map_err(|err| Error::Scenario(err.to_string()))
    }

    pub fn default_scenario() -> Self {
        Self::default()
    }
}

/// The simulated Kubernetes API. Cheap to clone.
#[derive(Clone, Debug)]
pub struct KubeSim {
    _clock: Clock,
}

impl KubeSim {
    pub fn new(clock: Clock, _options: KubeSimOptions) -> Self {
        Self { _clock: clock }
    }

    /// The Kubernetes REST API.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
    }

    /// Creates (or replaces) a Node, NotReady.
    pub fn register_node(&self, _node: NodeRegistration) {}

    pub fn set_node_ready(&self, _name: &str, _ready: bool) {}

    /// The VM behind a node was deleted: Node NotReady, its pods lost (the Node stays).
    pub fn vm_deleted(&self, _name: &str) {}

    /// The API answers 503 / drops connections while set.
    pub fn set_unreachable(&self, _unreachable: bool) {}

    pub fn block_evictions(&self, _namespace: &str, _pod_name_prefix: &str) {}

    /// Creates the scenario's workloads.
    pub fn apply_scenario(&self, _scenario: &Scenario) -> Result<(), Error> {
        Ok(())
    }

    /// The Kubernetes side of `/_sim/state`.
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}
