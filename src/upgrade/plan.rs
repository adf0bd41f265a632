//! The planner: a pure function from the observed [`ClusterState`] and the
//! [`Goal`] to the next step, and — by simulating each step's effect — to the
//! whole ordered plan that `--dry-run` and `aksup plan` show.
//!
//! The engine executes one step, observes the world again and asks for the next
//! step. A re-run after a kill is therefore the same code path as a normal run:
//! the world (VM tags and provisioning states, node readiness and aksup's node
//! annotations) is the only progress record.
//!
//! Order: the control plane first (a missing master index is recreated before
//! anything else; one master at a time, only while every other master is
//! present and Ready), then the agent pools in apimodel order, VMs by index,
//! with aks-engine's surge pattern (one extra VM first; each old VM's
//! properties go to the newest new node before the old one is drained and
//! deleted; the last old VM is not recreated).

use semver::Version;
use serde::Serialize;

use super::state::{ClusterState, NodeState, PoolState, Provisioning, VmState};
use crate::names::{NodeName, PoolKind, VmName};

/// What the run wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goal {
    pub target: Version,
    /// `--force`: re-pave every VM not created by this run (`Some(run id)`).
    pub force_run: Option<String>,
    pub control_plane_only: bool,
    /// Extra agent VMs created before old ones are removed (aks-engine: 1).
    pub surge: usize,
}

impl Goal {
    pub fn new(target: Version) -> Self {
        Self {
            target,
            force_run: None,
            control_plane_only: false,
            surge: 1,
        }
    }

    /// True when `vm` needs no more work for this goal.
    pub fn is_upgraded(&self, vm: &VmState) -> bool {
        if vm.provisioning == Provisioning::Failed {
            return false;
        }
        match &self.force_run {
            Some(run) => vm.run.as_deref() == Some(run.as_str()),
            None => vm.version() == Some(&self.target),
        }
    }
}

/// One step of the walk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum Action {
    /// Deploy the master at a missing index (etcd disk attached), wait Ready.
    #[serde(rename_all = "camelCase")]
    RecreateMaster { index: usize, vm: VmName },
    /// Cordon, drain, delete VM, NIC and OS disk (never the etcd disk), deploy at
    /// the same index with the etcd disk attached, wait Ready, uncordon.
    #[serde(rename_all = "camelCase")]
    ReplaceMaster { index: usize, vm: VmName },
    /// Wait until the node of an upgraded VM is Ready at the target version.
    #[serde(rename_all = "camelCase")]
    WaitReady {
        pool: String,
        index: usize,
        vm: VmName,
    },
    /// Uncordon a node aksup cordoned whose work is finished.
    #[serde(rename_all = "camelCase")]
    Uncordon { node: NodeName },
    /// Delete a VM in `Failed` provisioning state (with its NIC and OS disk); it is recreated next.
    #[serde(rename_all = "camelCase")]
    DeleteFailedVm {
        pool: String,
        index: usize,
        vm: VmName,
    },
    /// Delete a Node object whose VM is gone.
    #[serde(rename_all = "camelCase")]
    DeleteOrphanNode { node: NodeName },
    /// Deploy an agent VM at the lowest free index and wait Ready.
    #[serde(rename_all = "camelCase")]
    CreateAgent {
        pool: String,
        index: usize,
        vm: VmName,
        surge: bool,
    },
    /// Copy the old node's properties to its replacement, cordon and drain the
    /// old node, delete its VM, NIC, OS disk and Node object.
    #[serde(rename_all = "camelCase")]
    ReplaceAgent {
        pool: String,
        index: usize,
        vm: VmName,
        node: NodeName,
        replacement: Option<NodeName>,
    },
}

impl Action {
    /// A short verb for tables and progress bars.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::RecreateMaster { .. } => "recreate master",
            Action::ReplaceMaster { .. } => "replace master",
            Action::WaitReady { .. } => "wait ready",
            Action::Uncordon { .. } => "uncordon",
            Action::DeleteFailedVm { .. } => "delete failed vm",
            Action::DeleteOrphanNode { .. } => "delete node",
            Action::CreateAgent { surge: true, .. } => "create surge vm",
            Action::CreateAgent { .. } => "create vm",
            Action::ReplaceAgent { .. } => "replace agent",
        }
    }

    /// The VM or node the step is about.
    pub fn subject(&self) -> String {
        match self {
            Action::RecreateMaster { vm, .. }
            | Action::ReplaceMaster { vm, .. }
            | Action::WaitReady { vm, .. }
            | Action::DeleteFailedVm { vm, .. }
            | Action::CreateAgent { vm, .. }
            | Action::ReplaceAgent { vm, .. } => vm.to_string(),
            Action::Uncordon { node } | Action::DeleteOrphanNode { node } => node.to_string(),
        }
    }
}

/// A step with the reason it is needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    #[serde(flatten)]
    pub action: Action,
    pub reason: String,
}

/// Why the planner will not go on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "gate", rename_all = "camelCase")]
pub enum Refusal {
    #[error("too many upgraded nodes are not ready: {} upgraded masters are NotReady ({}); fix them before going on", nodes.len(), names(nodes))]
    UpgradedMastersNotReady { nodes: Vec<String> },
    #[error(
        "master {waiting} cannot be replaced while master {unhealthy} is {state}: replacing another master now could lose etcd quorum; bring {unhealthy} back first"
    )]
    MasterQuorum {
        waiting: String,
        unhealthy: String,
        state: String,
    },
    #[error("the stamp offers none of these images the new VMs need: {}; add them to the Azure Stack Hub marketplace first", images.join(", "))]
    MissingImages { images: Vec<String> },
    #[error("the api model has no control-plane pool")]
    NoMasters,
    #[error(
        "PodDisruptionBudgets allow no disruption on nodes that must be drained, and never will by themselves: {}; scale the workloads up or relax the budgets first (nothing was changed)",
        blockers.join("; ")
    )]
    PdbBlocks { blockers: Vec<String> },
}

fn names(nodes: &[String]) -> String {
    nodes.join(", ")
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Done,
    Next(Step),
    Refuse(Refusal),
}

/// The whole plan, for showing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Set when the walk would stop at a gate after `steps`.
    pub refusal: Option<Refusal>,
    pub warnings: Vec<String>,
}

/// Decides the next step from the observed state.
pub fn next_step(state: &ClusterState, goal: &Goal) -> Decision {
    if !state.missing_images.is_empty() {
        return Decision::Refuse(Refusal::MissingImages {
            images: state
                .missing_images
                .iter()
                .map(|i| format!("{}:{}:{}:{}", i.publisher, i.offer, i.sku, i.version))
                .collect(),
        });
    }
    let Some(masters) = state.masters() else {
        return Decision::Refuse(Refusal::NoMasters);
    };
    let permanent = permanent_blockers(state, goal);
    if !permanent.is_empty() {
        return Decision::Refuse(Refusal::PdbBlocks {
            blockers: permanent,
        });
    }
    if let Some(decision) = next_master_step(masters, &state.suffix, goal) {
        return decision;
    }
    if goal.control_plane_only {
        return Decision::Done;
    }
    for pool in state
        .pools
        .iter()
        .filter(|pool| pool.kind != PoolKind::Master)
    {
        if let Some(step) = next_agent_step(pool, &state.suffix, goal) {
            return Decision::Next(step);
        }
    }
    Decision::Done
}

fn step(action: Action, reason: impl Into<String>) -> Step {
    Step {
        action,
        reason: reason.into(),
    }
}

fn next_master_step(masters: &PoolState, suffix: &str, goal: &Goal) -> Option<Decision> {
    let upgraded_not_ready: Vec<String> = masters
        .vms
        .iter()
        .filter(|vm| goal.is_upgraded(vm) && !vm.node_ready())
        .map(|vm| vm.name.to_string())
        .collect();
    if upgraded_not_ready.len() >= 2 {
        return Some(Decision::Refuse(Refusal::UpgradedMastersNotReady {
            nodes: upgraded_not_ready,
        }));
    }
    // 1. A missing master index is recreated before anything else.
    if let Some(index) = (0..masters.count).find(|index| masters.vm_at(*index).is_none()) {
        let vm = PoolKind::Master.vm_name(suffix, index);
        return Some(Decision::Next(step(
            Action::RecreateMaster { index, vm },
            format!(
                "master index {index} has no VM (a previous run stopped between delete and create); etcd quorum needs it back first"
            ),
        )));
    }
    // 2. An upgraded master whose node is not Ready yet: wait for it.
    if let Some(vm) = masters
        .vms
        .iter()
        .find(|vm| goal.is_upgraded(vm) && !vm.node_ready())
    {
        return Some(Decision::Next(step(
            Action::WaitReady {
                pool: PoolKind::Master.pool_name().into(),
                index: vm.index,
                vm: vm.name.clone(),
            },
            format!(
                "{} runs {} but its node is not Ready yet",
                vm.name, goal.target
            ),
        )));
    }
    // 3. An upgraded master aksup cordoned: uncordon it.
    if let Some(node) = masters
        .vms
        .iter()
        .filter(|vm| goal.is_upgraded(vm))
        .filter_map(|vm| vm.node.as_ref())
        .find(|node| node.unschedulable && node.cordoned_by_aksup)
    {
        return Some(Decision::Next(step(
            Action::Uncordon {
                node: node.name.clone(),
            },
            format!("{} is upgraded and Ready; aksup cordoned it", node.name),
        )));
    }
    // 4. The next old master, only while every other master is present and Ready.
    let old = masters.vms.iter().find(|vm| !goal.is_upgraded(vm))?;
    if let Some(other) = masters
        .vms
        .iter()
        .find(|vm| vm.index != old.index && !vm.node_ready())
    {
        let state = match &other.node {
            None => "without a node".to_owned(),
            Some(_) => "NotReady".to_owned(),
        };
        return Some(Decision::Refuse(Refusal::MasterQuorum {
            waiting: old.name.to_string(),
            unhealthy: other.name.to_string(),
            state,
        }));
    }
    Some(Decision::Next(step(
        Action::ReplaceMaster {
            index: old.index,
            vm: old.name.clone(),
        },
        old_reason(old, goal),
    )))
}

fn old_reason(vm: &VmState, goal: &Goal) -> String {
    if vm.provisioning == Provisioning::Failed {
        return format!("{} is in Failed provisioning state", vm.name);
    }
    match (vm.version(), &goal.force_run) {
        (Some(version), Some(_)) if *version == goal.target => {
            format!("{} is on {} already; --force re-paves it", vm.name, version)
        }
        (Some(version), _) => format!("{} runs {}, target {}", vm.name, version, goal.target),
        (None, _) => format!("{} has no orchestrator tag and no node version", vm.name),
    }
}

fn next_agent_step(pool: &PoolState, suffix: &str, goal: &Goal) -> Option<Step> {
    let pool_name = pool.kind.pool_name().to_owned();
    // Node objects whose VM is gone (a run stopped between deleting the VM and the node).
    if let Some(orphan) = pool.orphan_nodes.first() {
        return Some(step(
            Action::DeleteOrphanNode {
                node: orphan.name.clone(),
            },
            format!("node {} has no VM any more", orphan.name),
        ));
    }
    if let Some(vm) = pool
        .vms
        .iter()
        .find(|vm| vm.provisioning == Provisioning::Failed)
    {
        return Some(step(
            Action::DeleteFailedVm {
                pool: pool_name,
                index: vm.index,
                vm: vm.name.clone(),
            },
            format!(
                "{} is in Failed provisioning state; it is deleted and recreated",
                vm.name
            ),
        ));
    }
    if let Some(vm) = pool
        .vms
        .iter()
        .find(|vm| goal.is_upgraded(vm) && !vm.node_ready())
    {
        return Some(step(
            Action::WaitReady {
                pool: pool_name,
                index: vm.index,
                vm: vm.name.clone(),
            },
            format!(
                "{} runs {} but its node is not Ready yet",
                vm.name, goal.target
            ),
        ));
    }
    let old: Vec<&VmState> = pool.vms.iter().filter(|vm| !goal.is_upgraded(vm)).collect();
    let exists = |node: &NodeName| old.iter().any(|vm| &vm.node_name() == node);
    if let Some(node) = pool
        .vms
        .iter()
        .filter(|vm| goal.is_upgraded(vm))
        .filter_map(|vm| vm.node.as_ref())
        .find(|node| {
            node.unschedulable
                && node.cordoned_by_aksup
                && !node.replaced_node.as_ref().is_some_and(exists)
        })
    {
        return Some(step(
            Action::Uncordon {
                node: node.name.clone(),
            },
            format!("{} is upgraded and Ready; aksup cordoned it", node.name),
        ));
    }
    let needed = if old.is_empty() {
        pool.count
    } else {
        pool.count + goal.surge
    };
    if pool.vms.len() < needed {
        let index = pool.lowest_free_index();
        // Beyond the pool's count it is the surge VM; below it, a freed index refilled.
        let surge = pool.vms.len() >= pool.count;
        let reason = if surge {
            format!(
                "pool {} has {} VMs of {}: one more before an old VM is removed",
                pool.kind.pool_name(),
                pool.vms.len(),
                pool.count
            )
        } else {
            format!(
                "pool {} has {} VMs of {}",
                pool.kind.pool_name(),
                pool.vms.len(),
                pool.count
            )
        };
        return Some(step(
            Action::CreateAgent {
                pool: pool_name,
                index,
                vm: pool.kind.vm_name(suffix, index),
                surge,
            },
            reason,
        ));
    }
    let first_old = *old.first()?;
    // Resume: a new node already carries the name of the old node it replaces.
    let (target, replacement) = pool
        .vms
        .iter()
        .filter(|vm| goal.is_upgraded(vm))
        .filter_map(|vm| vm.node.as_ref())
        .find_map(|node| {
            let replaced = node.replaced_node.as_ref()?;
            old.iter()
                .find(|vm| &vm.node_name() == replaced)
                .map(|vm| (*vm, Some(node.name.clone())))
        })
        .unwrap_or_else(|| {
            (
                first_old,
                fresh_node(pool, goal).map(|node| node.name.clone()),
            )
        });
    let mut reason = old_reason(target, goal);
    if old.len() == 1 {
        reason.push_str("; the last old VM is not recreated (the surge VM takes its place)");
    }
    Some(step(
        Action::ReplaceAgent {
            pool: pool_name,
            index: target.index,
            vm: target.name.clone(),
            node: target.node_name(),
            replacement,
        },
        reason,
    ))
}

/// The newest upgraded, Ready node that has not taken another node's place yet.
fn fresh_node<'a>(pool: &'a PoolState, goal: &Goal) -> Option<&'a NodeState> {
    pool.vms
        .iter()
        .rev()
        .filter(|vm| goal.is_upgraded(vm))
        .filter_map(|vm| vm.node.as_ref())
        .find(|node| node.ready && node.replaced_node.is_none())
}

/// Applies the expected effect of a successful step to a state copy.
pub fn simulate(state: &mut ClusterState, action: &Action, goal: &Goal) {
    let target = goal.target.clone();
    let new_vm = |name: &VmName, index: usize, node: Option<NodeState>| VmState {
        name: name.clone(),
        index,
        tag_version: Some(target.clone()),
        provisioning: Provisioning::Succeeded,
        run: goal.force_run.clone(),
        node: Some(match node {
            Some(mut node) => {
                node.ready = true;
                node.kubelet_version = Some(target.clone());
                node
            }
            None => NodeState::ready_at(name.node_name(), &target),
        }),
    };
    match action {
        Action::RecreateMaster { index, vm } | Action::ReplaceMaster { index, vm } => {
            if let Some(pool) = state.pool_mut(&PoolKind::Master) {
                let old_node = pool.vm_at(*index).and_then(|old| old.node.clone());
                pool.vms.retain(|v| v.index != *index);
                let mut created = new_vm(vm, *index, old_node);
                if matches!(action, Action::ReplaceMaster { .. })
                    && let Some(node) = created.node.as_mut()
                {
                    node.unschedulable = false;
                    node.cordoned_by_aksup = false;
                }
                pool.vms.push(created);
                pool.sort();
            }
        }
        Action::WaitReady { vm, .. } => {
            for pool in &mut state.pools {
                if let Some(found) = pool.vms.iter_mut().find(|v| &v.name == vm) {
                    let node = found
                        .node
                        .get_or_insert_with(|| NodeState::ready_at(vm.node_name(), &target));
                    node.ready = true;
                    node.kubelet_version = Some(target.clone());
                }
            }
        }
        Action::Uncordon { node } => {
            for pool in &mut state.pools {
                for found in pool
                    .vms
                    .iter_mut()
                    .filter_map(|v| v.node.as_mut())
                    .filter(|n| &n.name == node)
                {
                    found.unschedulable = false;
                    found.cordoned_by_aksup = false;
                }
            }
        }
        Action::DeleteFailedVm { vm, .. } => {
            for pool in &mut state.pools {
                if let Some(position) = pool.vms.iter().position(|v| &v.name == vm) {
                    let removed = pool.vms.remove(position);
                    if let Some(node) = removed.node {
                        pool.orphan_nodes.push(node);
                    }
                    pool.sort();
                }
            }
        }
        Action::DeleteOrphanNode { node } => {
            for pool in &mut state.pools {
                pool.orphan_nodes.retain(|n| &n.name != node);
            }
        }
        Action::CreateAgent { index, vm, .. } => {
            if let Some(pool) = state
                .pools
                .iter_mut()
                .find(|p| p.kind.pool_name() == action_pool(action))
            {
                pool.vms.push(new_vm(vm, *index, None));
                pool.sort();
            }
        }
        Action::ReplaceAgent {
            vm,
            node,
            replacement,
            ..
        } => {
            if let Some(pool) = state
                .pools
                .iter_mut()
                .find(|p| p.kind.pool_name() == action_pool(action))
            {
                if let Some(new_node) = replacement.as_ref().and_then(|name| {
                    pool.vms
                        .iter_mut()
                        .filter_map(|v| v.node.as_mut())
                        .find(|n| &n.name == name)
                }) {
                    new_node.replaced_node = Some(node.clone());
                }
                pool.vms.retain(|v| &v.name != vm);
            }
        }
    }
}

fn action_pool(action: &Action) -> &str {
    match action {
        Action::WaitReady { pool, .. }
        | Action::DeleteFailedVm { pool, .. }
        | Action::CreateAgent { pool, .. }
        | Action::ReplaceAgent { pool, .. } => pool,
        _ => PoolKind::Master.pool_name(),
    }
}

/// Budgets that block, for good, the drain of a node the walk will drain
/// (`node: pod (PDB …)`), sorted.
fn permanent_blockers(state: &ClusterState, goal: &Goal) -> Vec<String> {
    let drained: std::collections::BTreeSet<NodeName> = state
        .pools
        .iter()
        .filter(|pool| !goal.control_plane_only || pool.kind == PoolKind::Master)
        .flat_map(|pool| &pool.vms)
        .filter(|vm| !goal.is_upgraded(vm))
        .map(VmState::node_name)
        .collect();
    state
        .drain_blockers
        .iter()
        .filter(|(node, _)| drained.contains(*node))
        .flat_map(|(node, blockers)| {
            blockers
                .iter()
                .filter(|b| b.is_permanent())
                .map(move |b| format!("{node}: {b}"))
        })
        .collect()
}

/// A preflight gate and its result, for showing in a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GateResult {
    pub gate: String,
    pub passed: bool,
    pub detail: String,
}

/// The preflight gates of a plan with their results: masters present and
/// Ready, marketplace images available, drains not blocked by
/// PodDisruptionBudgets now (a warning: the drain waits for them).
pub fn gates(state: &ClusterState, goal: &Goal) -> Vec<GateResult> {
    let mut out = Vec::new();
    if let Some(masters) = state.masters() {
        let missing: Vec<usize> = (0..masters.count)
            .filter(|i| masters.vm_at(*i).is_none())
            .collect();
        let not_ready: Vec<String> = masters
            .vms
            .iter()
            .filter(|vm| !vm.node_ready())
            .map(|vm| vm.name.to_string())
            .collect();
        let upgraded_not_ready = masters
            .vms
            .iter()
            .filter(|vm| goal.is_upgraded(vm) && !vm.node_ready())
            .count();
        let (passed, detail) = match (missing.as_slice(), not_ready.is_empty()) {
            ([], true) => (
                true,
                format!("all {} masters present and Ready", masters.count),
            ),
            ([index], _) if upgraded_not_ready < 2 => (
                true,
                format!("master index {index} is missing: it is recreated first"),
            ),
            _ if upgraded_not_ready >= 2 => (
                false,
                format!("{upgraded_not_ready} upgraded masters are NotReady"),
            ),
            (missing, _) if missing.len() > 1 => (
                false,
                format!("{} master indexes are missing", missing.len()),
            ),
            _ => (false, format!("not Ready: {}", not_ready.join(", "))),
        };
        out.push(GateResult {
            gate: "masters".into(),
            passed,
            detail,
        });
    }
    out.push(GateResult {
        gate: "images".into(),
        passed: state.missing_images.is_empty(),
        detail: if state.missing_images.is_empty() {
            "the marketplace images the new VMs need exist".into()
        } else {
            format!(
                "missing: {}",
                state
                    .missing_images
                    .iter()
                    .map(|i| format!("{}:{}:{}:{}", i.publisher, i.offer, i.sku, i.version))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
    });
    let permanent = permanent_blockers(state, goal);
    out.push(GateResult {
        gate: "disruption budgets".into(),
        passed: permanent.is_empty(),
        detail: if !permanent.is_empty() {
            format!("never allow a disruption: {}", permanent.join("; "))
        } else if state.drain_blockers.is_empty() {
            "no PodDisruptionBudget blocks a drain now".into()
        } else {
            format!(
                "drains would wait on {} node(s) now (the budgets allow more as pods become Ready): {}",
                state.drain_blockers.len(),
                state.drain_blockers.keys().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            )
        },
    });
    out
}

/// The most steps a plan may have before the planner is considered stuck (a bug).
const MAX_STEPS: usize = 100_000;

/// The whole plan: the steps the engine would take, in order, if each succeeded.
pub fn plan(state: &ClusterState, goal: &Goal) -> Plan {
    let mut simulated = state.clone();
    let mut steps = Vec::new();
    let mut refusal = None;
    while steps.len() < MAX_STEPS {
        match next_step(&simulated, goal) {
            Decision::Done => break,
            Decision::Refuse(why) => {
                refusal = Some(why);
                break;
            }
            Decision::Next(next) => {
                simulate(&mut simulated, &next.action, goal);
                steps.push(next);
            }
        }
    }
    let warnings = state
        .drain_blockers
        .iter()
        .map(|(node, pods)| {
            let pods: Vec<String> = pods.iter().map(ToString::to_string).collect();
            format!("draining {node} is blocked now: {}", pods.join("; "))
        })
        .collect();
    Plan {
        steps,
        refusal,
        warnings,
    }
}

#[cfg(test)]
mod tests;
