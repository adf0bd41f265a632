//! What the world looks like: the cluster's VMs (from ARM) joined with their
//! nodes (from Kubernetes), per pool and index. Built by `observe`; read by
//! the pure planner.

use std::collections::BTreeMap;

use semver::Version;
use serde::Serialize;

use crate::names::{NodeName, PoolKind, VmName};
use crate::template::MarketplaceImage;

/// ARM provisioning state of a VM, reduced to what the planner decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Provisioning {
    Succeeded,
    Failed,
    /// Creating, Updating, Deleting, …: an operation is running.
    InProgress,
}

impl Provisioning {
    /// From ARM's `provisioningState` (case-insensitive).
    pub fn from_arm(state: &str) -> Self {
        match state.to_ascii_lowercase().as_str() {
            "succeeded" => Provisioning::Succeeded,
            "failed" | "canceled" | "cancelled" => Provisioning::Failed,
            _ => Provisioning::InProgress,
        }
    }
}

/// A node as the Kubernetes API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeState {
    pub name: NodeName,
    pub ready: bool,
    pub kubelet_version: Option<Version>,
    pub unschedulable: bool,
    /// aksup cordoned it (annotation `aksup.io/cordoned`): aksup may uncordon it.
    pub cordoned_by_aksup: bool,
    /// The node this one replaced (annotation `aksup.io/replaced-node`).
    pub replaced_node: Option<NodeName>,
}

impl NodeState {
    /// A Ready, schedulable node at `version` (for simulations and tests).
    pub fn ready_at(name: NodeName, version: &Version) -> Self {
        Self {
            name,
            ready: true,
            kubelet_version: Some(version.clone()),
            unschedulable: false,
            cordoned_by_aksup: false,
            replaced_node: None,
        }
    }
}

/// A VM of the cluster and its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VmState {
    pub name: VmName,
    pub index: usize,
    /// From the `orchestrator` tag (`Kubernetes:<version>`).
    pub tag_version: Option<Version>,
    pub provisioning: Provisioning,
    /// The `aksupRun` tag: which forced run created it.
    pub run: Option<String>,
    pub node: Option<NodeState>,
}

impl VmState {
    /// The VM's version: the tag, else the node's kubelet version.
    pub fn version(&self) -> Option<&Version> {
        self.tag_version.as_ref().or_else(|| {
            self.node
                .as_ref()
                .and_then(|node| node.kubelet_version.as_ref())
        })
    }

    pub fn node_ready(&self) -> bool {
        self.node.as_ref().is_some_and(|node| node.ready)
    }

    pub fn node_name(&self) -> NodeName {
        self.node
            .as_ref()
            .map_or_else(|| self.name.node_name(), |node| node.name.clone())
    }
}

/// One pool: the apimodel's count and the VMs found, sorted by index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolState {
    pub kind: PoolKind,
    /// `count` in the apimodel.
    pub count: usize,
    pub vms: Vec<VmState>,
    /// Nodes named like this pool's VMs whose VM is gone.
    pub orphan_nodes: Vec<NodeState>,
}

impl PoolState {
    pub fn vm_at(&self, index: usize) -> Option<&VmState> {
        self.vms.iter().find(|vm| vm.index == index)
    }

    /// The lowest index no VM uses.
    pub fn lowest_free_index(&self) -> usize {
        (0..)
            .find(|index| self.vm_at(*index).is_none())
            .unwrap_or(0)
    }

    pub(crate) fn sort(&mut self) {
        self.vms.sort_by_key(|vm| vm.index);
        self.orphan_nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }
}

/// A pod whose PodDisruptionBudget allows no disruption now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrainBlocker {
    /// `namespace/name`.
    pub pod: String,
    pub pdb: String,
    pub disruptions_allowed: i32,
    pub current_healthy: i32,
    pub desired_healthy: i32,
}

impl DrainBlocker {
    /// The budget is satisfied and still allows no disruption (as `minAvailable`
    /// equal to the replicas, or `maxUnavailable: 0`): no eviction can ever
    /// pass it, however long the drain waits.
    pub fn is_permanent(&self) -> bool {
        self.disruptions_allowed <= 0 && self.current_healthy >= self.desired_healthy
    }
}

impl std::fmt::Display for DrainBlocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (PDB {}: disruptionsAllowed {}, healthy {}/{})",
            self.pod,
            self.pdb,
            self.disruptions_allowed,
            self.current_healthy,
            self.desired_healthy
        )
    }
}

/// The observed cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterState {
    /// The 8-digit name suffix.
    pub suffix: String,
    /// The control plane first, then the agent pools in apimodel order.
    pub pools: Vec<PoolState>,
    /// Marketplace images the new VMs need that the stamp does not offer.
    pub missing_images: Vec<MarketplaceImage>,
    /// Per node, the pods a drain could not evict now, with their PDB.
    pub drain_blockers: BTreeMap<NodeName, Vec<DrainBlocker>>,
}

impl ClusterState {
    pub fn masters(&self) -> Option<&PoolState> {
        self.pools.iter().find(|pool| pool.kind == PoolKind::Master)
    }

    pub fn pool_mut(&mut self, kind: &PoolKind) -> Option<&mut PoolState> {
        self.pools.iter_mut().find(|pool| &pool.kind == kind)
    }
}
