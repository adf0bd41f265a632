use std::collections::BTreeMap;

use super::*;
use crate::upgrade::state::{ClusterState, DrainBlocker};

const SUFFIX: &str = "38062788";

fn v(text: &str) -> Version {
    Version::parse(text).unwrap()
}

fn vm(kind: &PoolKind, index: usize, version: &str) -> VmState {
    let name = kind.vm_name(SUFFIX, index);
    VmState {
        node: Some(NodeState::ready_at(name.node_name(), &v(version))),
        name,
        index,
        tag_version: Some(v(version)),
        provisioning: Provisioning::Succeeded,
        run: None,
    }
}

fn pool(kind: PoolKind, count: usize, version: &str) -> PoolState {
    PoolState {
        vms: (0..count).map(|i| vm(&kind, i, version)).collect(),
        kind,
        count,
        orphan_nodes: Vec::new(),
    }
}

fn agent(name: &str, position: usize) -> PoolKind {
    PoolKind::Agent {
        name: name.into(),
        position,
        windows: false,
    }
}

/// 3 masters and pools `linuxpool` (3) and `batch` (2), all on 1.33.10.
fn cluster() -> ClusterState {
    ClusterState {
        suffix: SUFFIX.into(),
        pools: vec![
            pool(PoolKind::Master, 3, "1.33.10"),
            pool(agent("linuxpool", 0), 3, "1.33.10"),
            pool(agent("batch", 1), 2, "1.33.10"),
        ],
        missing_images: Vec::new(),
        drain_blockers: BTreeMap::new(),
    }
}

fn goal() -> Goal {
    Goal::new(v("1.34.4"))
}

fn describe(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .map(|s| match &s.action {
            Action::ReplaceAgent {
                replacement: Some(r),
                ..
            } => format!("{} {} -> {r}", s.action.verb(), s.action.subject()),
            _ => format!("{} {}", s.action.verb(), s.action.subject()),
        })
        .collect()
}

fn run_to_end(state: &ClusterState, goal: &Goal) -> ClusterState {
    let mut state = state.clone();
    for step in plan(&state, goal).steps {
        simulate(&mut state, &step.action, goal);
    }
    state
}

fn indexes(state: &ClusterState, pool: &str) -> Vec<usize> {
    state
        .pools
        .iter()
        .find(|p| p.kind.pool_name() == pool)
        .unwrap()
        .vms
        .iter()
        .map(|vm| vm.index)
        .collect()
}

/// The safety invariants of ARCHITECTURE.md that a state alone can show.
fn assert_invariants(state: &ClusterState, goal: &Goal, context: &str) {
    let masters = state.masters().unwrap();
    let missing = (0..masters.count)
        .filter(|i| masters.vm_at(*i).is_none())
        .count();
    assert!(missing <= 1, "{context}: {missing} masters missing");
    for pool in state.pools.iter().filter(|p| p.kind != PoolKind::Master) {
        let ready = pool.vms.iter().filter(|vm| vm.node_ready()).count();
        assert!(
            ready >= pool.count,
            "{context}: pool {} has {ready} Ready nodes of {}",
            pool.kind.pool_name(),
            pool.count
        );
    }
    let _ = goal;
}

#[test]
fn the_walk_of_three_masters_and_two_pools_follows_aks_engine() {
    let plan = plan(&cluster(), &goal());
    assert_eq!(plan.refusal, None);
    assert_eq!(
        describe(&plan.steps),
        [
            "replace master k8s-master-38062788-0",
            "replace master k8s-master-38062788-1",
            "replace master k8s-master-38062788-2",
            "create surge vm k8s-linuxpool-38062788-3",
            "replace agent k8s-linuxpool-38062788-0 -> k8s-linuxpool-38062788-3",
            "create surge vm k8s-linuxpool-38062788-0",
            "replace agent k8s-linuxpool-38062788-1 -> k8s-linuxpool-38062788-0",
            "create surge vm k8s-linuxpool-38062788-1",
            "replace agent k8s-linuxpool-38062788-2 -> k8s-linuxpool-38062788-1",
            "create surge vm k8s-batch-38062788-2",
            "replace agent k8s-batch-38062788-0 -> k8s-batch-38062788-2",
            "create surge vm k8s-batch-38062788-0",
            "replace agent k8s-batch-38062788-1 -> k8s-batch-38062788-0",
        ]
    );
    assert!(
        plan.steps[8]
            .reason
            .contains("last old VM is not recreated"),
        "{}",
        plan.steps[8].reason
    );
    let end = run_to_end(&cluster(), &goal());
    assert_eq!(indexes(&end, "master"), [0, 1, 2]);
    assert_eq!(
        indexes(&end, "linuxpool"),
        [0, 1, 3],
        "counts and indexes as aks-engine leaves them"
    );
    assert_eq!(indexes(&end, "batch"), [0, 2]);
    assert!(
        end.pools
            .iter()
            .flat_map(|p| &p.vms)
            .all(|vm| vm.version() == Some(&v("1.34.4")))
    );
    assert_eq!(next_step(&end, &goal()), Decision::Done);
}

#[test]
fn every_step_boundary_converges_to_the_same_end_state() {
    let start = cluster();
    let goal = goal();
    let expected = run_to_end(&start, &goal);
    let steps = plan(&start, &goal).steps;
    let mut state = start.clone();
    for (k, step) in steps.iter().enumerate() {
        assert_invariants(&state, &goal, &format!("before step {k}"));
        assert_eq!(
            run_to_end(&state, &goal),
            expected,
            "resuming before step {k} ({})",
            step.action.verb()
        );
        simulate(&mut state, &step.action, &goal);
    }
    assert_eq!(state, expected);
}

#[test]
fn a_kill_between_master_delete_and_create_recreates_that_index_first() {
    let mut state = cluster();
    let goal = goal();
    // Master 0 done; master 1 deleted (its Node object stays, cordoned by aksup) and then the run died.
    simulate(
        &mut state,
        &Action::ReplaceMaster {
            index: 0,
            vm: PoolKind::Master.vm_name(SUFFIX, 0),
        },
        &goal,
    );
    let masters = state.pool_mut(&PoolKind::Master).unwrap();
    masters.vms.retain(|vm| vm.index != 1);
    let steps = plan(&state, &goal).steps;
    assert_eq!(
        describe(&steps[..2]),
        [
            "recreate master k8s-master-38062788-1",
            "replace master k8s-master-38062788-2"
        ],
        "the missing index comes back before another master is touched (aks-engine #1733)"
    );
    assert_eq!(run_to_end(&state, &goal), run_to_end(&cluster(), &goal));
}

#[test]
fn a_recreated_master_that_aksup_cordoned_is_uncordoned() {
    let mut state = cluster();
    let goal = goal();
    let masters = state.pool_mut(&PoolKind::Master).unwrap();
    let master = &mut masters.vms[0];
    master.tag_version = Some(v("1.34.4"));
    let node = master.node.as_mut().unwrap();
    node.kubelet_version = Some(v("1.34.4"));
    node.unschedulable = true;
    node.cordoned_by_aksup = true;
    let first = plan(&state, &goal).steps.remove(0);
    assert_eq!(
        first.action,
        Action::Uncordon {
            node: NodeName::new("k8s-master-38062788-0")
        }
    );
}

#[test]
fn a_kill_inside_an_agent_replacement_resumes_with_the_same_pair() {
    let goal = goal();
    let mut state = cluster();
    for step in plan(&state, &goal).steps.iter().take(4) {
        simulate(&mut state, &step.action, &goal);
    }
    // Next: replace linuxpool-0 by linuxpool-3. The run copied the properties
    // (annotation set), deleted the VM, and died before deleting the Node object.
    let linux = state.pool_mut(&agent("linuxpool", 0)).unwrap();
    let surge = linux.vms.iter_mut().find(|vm| vm.index == 3).unwrap();
    surge.node.as_mut().unwrap().replaced_node = Some(NodeName::new("k8s-linuxpool-38062788-0"));
    let old = linux.vms.iter().position(|vm| vm.index == 0).unwrap();
    let removed = linux.vms.remove(old);
    linux.orphan_nodes.push(removed.node.unwrap());
    let steps = plan(&state, &goal).steps;
    assert_eq!(
        describe(&steps[..3]),
        [
            "delete node k8s-linuxpool-38062788-0",
            "create surge vm k8s-linuxpool-38062788-0",
            "replace agent k8s-linuxpool-38062788-1 -> k8s-linuxpool-38062788-0",
        ]
    );
    assert_eq!(run_to_end(&state, &goal), run_to_end(&cluster(), &goal));

    // Killed after the copy but before the old VM was deleted: the same pair again.
    let mut state = cluster();
    for step in plan(&state, &goal).steps.iter().take(4) {
        simulate(&mut state, &step.action, &goal);
    }
    let linux = state.pool_mut(&agent("linuxpool", 0)).unwrap();
    let surge = linux.vms.iter_mut().find(|vm| vm.index == 3).unwrap();
    let node = surge.node.as_mut().unwrap();
    node.replaced_node = Some(NodeName::new("k8s-linuxpool-38062788-0"));
    node.unschedulable = true;
    node.cordoned_by_aksup = true;
    let next = plan(&state, &goal).steps.remove(0);
    assert_eq!(
        describe(&[next]),
        ["replace agent k8s-linuxpool-38062788-0 -> k8s-linuxpool-38062788-3"]
    );
}

#[test]
fn two_upgraded_masters_not_ready_stop_the_run() {
    let mut state = cluster();
    let goal = goal();
    let masters = state.pool_mut(&PoolKind::Master).unwrap();
    for vm in masters.vms.iter_mut().take(2) {
        vm.tag_version = Some(v("1.34.4"));
        vm.node.as_mut().unwrap().ready = false;
    }
    let plan = plan(&state, &goal);
    assert!(plan.steps.is_empty());
    assert!(
        matches!(plan.refusal, Some(Refusal::UpgradedMastersNotReady { ref nodes }) if nodes.len() == 2)
    );
    assert!(
        plan.refusal
            .unwrap()
            .to_string()
            .starts_with("too many upgraded nodes are not ready")
    );
}

#[test]
fn an_old_master_waits_while_another_master_is_not_ready() {
    let mut state = cluster();
    state.pool_mut(&PoolKind::Master).unwrap().vms[2]
        .node
        .as_mut()
        .unwrap()
        .ready = false;
    let decision = next_step(&state, &goal());
    match decision {
        Decision::Refuse(Refusal::MasterQuorum {
            waiting, unhealthy, ..
        }) => {
            assert_eq!(waiting, "k8s-master-38062788-0");
            assert_eq!(unhealthy, "k8s-master-38062788-2");
        }
        other => panic!("expected a quorum refusal, got {other:?}"),
    }
}

#[test]
fn missing_images_stop_before_anything_is_touched() {
    let mut state = cluster();
    state
        .missing_images
        .push(crate::template::UBUNTU_2204.owned());
    let plan = plan(&state, &goal());
    assert!(plan.steps.is_empty());
    let refusal = plan.refusal.unwrap().to_string();
    assert!(
        refusal.contains("aks-engine-azurestack-ubuntu-2204"),
        "{refusal}"
    );
}

#[test]
fn control_plane_only_stops_after_the_masters() {
    let mut goal = goal();
    goal.control_plane_only = true;
    let steps = plan(&cluster(), &goal).steps;
    assert_eq!(steps.len(), 3);
    assert!(
        steps
            .iter()
            .all(|s| matches!(s.action, Action::ReplaceMaster { .. }))
    );
}

#[test]
fn force_re_paves_nodes_already_on_the_target_once() {
    let mut state = cluster();
    for pool in &mut state.pools {
        for vm in &mut pool.vms {
            vm.tag_version = Some(v("1.34.4"));
        }
    }
    let plain = goal();
    assert!(
        plan(&state, &plain).steps.is_empty(),
        "without --force nothing to do"
    );
    let mut forced = goal();
    forced.force_run = Some("run-1".into());
    let steps = plan(&state, &forced).steps;
    assert_eq!(steps.len(), 13);
    assert!(
        steps[0].reason.contains("--force re-paves it"),
        "{}",
        steps[0].reason
    );
    let end = run_to_end(&state, &forced);
    assert_eq!(next_step(&end, &forced), Decision::Done);
    assert!(
        end.pools
            .iter()
            .flat_map(|p| &p.vms)
            .all(|vm| vm.run.as_deref() == Some("run-1"))
    );
}

#[test]
fn a_failed_agent_is_deleted_and_recreated_at_its_index() {
    let mut state = cluster();
    let goal = goal();
    simulate_all_masters(&mut state, &goal);
    let linux = state.pool_mut(&agent("linuxpool", 0)).unwrap();
    linux.vms[1].provisioning = Provisioning::Failed;
    let steps = plan(&state, &goal).steps;
    assert_eq!(
        describe(&steps[..3]),
        [
            "delete failed vm k8s-linuxpool-38062788-1",
            "delete node k8s-linuxpool-38062788-1",
            "create vm k8s-linuxpool-38062788-1",
        ]
    );
}

fn simulate_all_masters(state: &mut ClusterState, goal: &Goal) {
    for index in 0..3 {
        simulate(
            state,
            &Action::ReplaceMaster {
                index,
                vm: PoolKind::Master.vm_name(SUFFIX, index),
            },
            goal,
        );
    }
}

#[test]
fn an_upgraded_node_not_ready_is_waited_for() {
    let mut state = cluster();
    let goal = goal();
    simulate_all_masters(&mut state, &goal);
    // The surge VM of a killed run exists at the target but its node never registered.
    state
        .pool_mut(&agent("linuxpool", 0))
        .unwrap()
        .vms
        .push(VmState {
            node: None,
            ..vm(&agent("linuxpool", 0), 3, "1.34.4")
        });
    let first = plan(&state, &goal).steps.remove(0);
    assert!(
        matches!(first.action, Action::WaitReady { index: 3, .. }),
        "{first:?}"
    );
}

#[test]
fn a_missing_agent_below_the_count_is_recreated_when_the_pool_is_done() {
    let mut state = cluster();
    let goal = goal();
    let end = run_to_end(&state, &goal);
    state = end.clone();
    state.pool_mut(&agent("batch", 1)).unwrap().vms.remove(0);
    let steps = plan(&state, &goal).steps;
    assert_eq!(describe(&steps), ["create vm k8s-batch-38062788-0"]);
}

fn blocker(pod: &str, allowed: i32, current: i32, desired: i32) -> DrainBlocker {
    DrainBlocker {
        pod: pod.into(),
        pdb: "web".into(),
        disruptions_allowed: allowed,
        current_healthy: current,
        desired_healthy: desired,
    }
}

#[test]
fn a_budget_waiting_for_pods_is_a_warning() {
    let mut state = cluster();
    // 1 of 2 healthy: the budget allows more once the pod is Ready.
    state.drain_blockers.insert(
        NodeName::new("k8s-linuxpool-38062788-0"),
        vec![blocker("default/web-1", 0, 1, 2)],
    );
    let plan = plan(&state, &goal());
    assert_eq!(plan.refusal, None);
    assert_eq!(plan.warnings.len(), 1);
    assert!(
        plan.warnings[0].contains("default/web-1 (PDB web: disruptionsAllowed 0, healthy 1/2)")
    );
    assert!(gates(&state, &goal())[2].passed);
}

#[test]
fn a_budget_that_can_never_allow_a_disruption_stops_the_run_before_anything() {
    let mut state = cluster();
    state.drain_blockers.insert(
        NodeName::new("k8s-batch-38062788-1"),
        vec![blocker("shop/web-1", 0, 2, 2)],
    );
    let plan = plan(&state, &goal());
    assert!(
        plan.steps.is_empty(),
        "not even the masters: {:?}",
        plan.steps
    );
    let refusal = plan.refusal.unwrap().to_string();
    assert!(
        refusal.contains("k8s-batch-38062788-1: shop/web-1 (PDB web"),
        "{refusal}"
    );
    assert!(!gates(&state, &goal())[2].passed);
    // A node the walk will not drain does not count.
    let mut goal = goal();
    goal.control_plane_only = true;
    assert!(next_step(&state, &goal) != Decision::Refuse(Refusal::NoMasters));
    assert_eq!(crate::upgrade::plan::plan(&state, &goal).refusal, None);
}

#[test]
fn gates_report_masters_images_and_budgets() {
    let mut state = cluster();
    let all = gates(&state, &goal());
    assert!(all.iter().all(|g| g.passed), "{all:?}");
    assert_eq!(all[0].detail, "all 3 masters present and Ready");
    state.pool_mut(&PoolKind::Master).unwrap().vms.remove(1);
    state
        .missing_images
        .push(crate::template::UBUNTU_2204.owned());
    state.drain_blockers.insert(
        NodeName::new("k8s-linuxpool-38062788-0"),
        vec![blocker("default/web-1", 0, 2, 2)],
    );
    let all = gates(&state, &goal());
    assert!(
        all[0].passed && all[0].detail.contains("recreated first"),
        "{:?}",
        all[0]
    );
    assert!(!all[1].passed && all[1].detail.contains("ubuntu-2204"));
    assert!(!all[2].passed && all[2].detail.contains("k8s-linuxpool-38062788-0"));
}
