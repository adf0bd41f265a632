//! End-to-end: the real upgrade engine against the simulator over HTTPS —
//! happy paths, with the safety invariants checked after every step.

mod upgrade_e2e;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use upgrade_e2e::{TARGET, start};

const FLAGS: &[&str] = &["--allow-unreplicated-pods"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_master_one_pool_upgrades() {
    let h = start("single-master-aad", |_| {}).await;
    let (result, checker) = h.run(TARGET, FLAGS).await;
    let summary = result.unwrap_or_else(|e| panic!("{}", upgrade_e2e::chain(&e)));
    checker.assert_clean();
    let model = h.assert_model_written(TARGET);
    h.assert_upgraded(TARGET, &model, false);
    // 1 master + a 2-VM pool: replace the master; surge at 2, replace 0,
    // recreate 0, replace 1 (not recreated).
    assert_eq!(summary.steps_done, checker.steps().len());
    let suffix = h.suffix();
    assert_eq!(
        checker.steps(),
        vec![
            format!("replace master k8s-master-{suffix}-0"),
            format!("create surge vm k8s-linuxpool-{suffix}-2"),
            format!("replace agent k8s-linuxpool-{suffix}-0"),
            format!("create surge vm k8s-linuxpool-{suffix}-0"),
            format!("replace agent k8s-linuxpool-{suffix}-1"),
        ]
    );
    let transcript = checker.transcript();
    assert!(
        !transcript.contains(&h.sim.endpoints.client_secret),
        "secret in events"
    );
}

fn vm_ids(h: &upgrade_e2e::Harness) -> BTreeMap<String, String> {
    h.world()
        .lock()
        .virtual_machines
        .values()
        .map(|vm| (vm.name.clone(), vm.vm_id.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_masters_two_pools_upgrade_and_carry_labels_and_taints() {
    let h = start("three-masters-two-pools", |_| {}).await;
    // The operator's own labels on every agent node and a taint on one.
    let nodes: Api<Node> = Api::all(h.kube_client().await);
    let agents: Vec<String> = h
        .end_state()
        .nodes
        .into_iter()
        .filter(|(_, n)| n.labels.get("kubernetes.io/role").map(String::as_str) == Some("agent"))
        .map(|(name, _)| name)
        .collect();
    assert_eq!(agents.len(), 5);
    let marks_before: Vec<String> = (0..agents.len()).map(|i| format!("mark-{i}")).collect();
    for (name, mark) in agents.iter().zip(&marks_before) {
        let mut patch = json!({"metadata": {"labels": {"e2e.aksup.io/mark": mark}}});
        if name.contains("linuxpool") && name.ends_with("-0") {
            patch["spec"] = json!({"taints": [{"key": "e2e.aksup.io/dedicated", "value": "yes", "effect": "PreferNoSchedule"}]});
        }
        nodes
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patch node");
    }
    let (result, checker) = h.run(TARGET, FLAGS).await;
    result.unwrap_or_else(|e| panic!("{}", upgrade_e2e::chain(&e)));
    checker.assert_clean();
    let model = h.assert_model_written(TARGET);
    h.assert_upgraded(TARGET, &model, false);
    let end = h.end_state();
    // Every old agent's label lives on in exactly one replacement.
    let mut marks: Vec<String> = end
        .nodes
        .values()
        .filter_map(|n| n.labels.get("e2e.aksup.io/mark").cloned())
        .collect();
    marks.sort();
    assert_eq!(marks, marks_before, "custom labels carried over");
    let tainted: Vec<&String> = end
        .nodes
        .iter()
        .filter(|(_, n)| {
            n.taints
                .iter()
                .any(|t| t == "e2e.aksup.io/dedicated=yes:PreferNoSchedule")
        })
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        tainted.len(),
        1,
        "the taint carried over to one replacement: {tainted:?}"
    );
    // Pool labels from the apimodel are on the new nodes too.
    for (name, node) in &end.nodes {
        if name.contains("-batch-") {
            assert_eq!(
                node.labels.get("workload").map(String::as_str),
                Some("batch"),
                "{name}"
            );
        }
    }
    // 3 masters + (3-VM pool: 6 steps) + (2-VM pool: 4 steps).
    assert_eq!(checker.steps().len(), 13, "{:?}", checker.steps());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_pool_keeps_its_naming_and_tags() {
    let h = start("windows-pool", |_| {}).await;
    let suffix = h.suffix();
    let (result, checker) = h.run(TARGET, FLAGS).await;
    result.unwrap_or_else(|e| panic!("{}", upgrade_e2e::chain(&e)));
    checker.assert_clean();
    let model = h.assert_model_written(TARGET);
    h.assert_upgraded(TARGET, &model, false);
    let end = h.end_state();
    let windows: Vec<(&String, &upgrade_e2e::VmState)> = end
        .vms
        .iter()
        .filter(|(_, vm)| vm.pool == "winpool")
        .collect();
    let names: Vec<&String> = windows.iter().map(|(n, _)| *n).collect();
    let prefix = &suffix[..4];
    assert_eq!(
        names,
        vec![&format!("{prefix}k8s010"), &format!("{prefix}k8s012")]
    );
    for (name, vm) in windows {
        assert_eq!(vm.tags.get("poolName").map(String::as_str), Some("winpool"));
        assert_eq!(vm.tags.get("resourceNameSuffix"), Some(&suffix));
        assert_eq!(
            vm.tags.get("aksEngineVersion").cloned(),
            Some(format!("aksup-{}", env!("CARGO_PKG_VERSION")))
        );
        assert!(
            vm.tags.contains_key("creationSource"),
            "{name}: {:?}",
            vm.tags
        );
        let node = &end.nodes[name];
        assert_eq!(
            node.labels.get("kubernetes.io/os").map(String::as_str),
            Some("windows")
        );
    }
    let vm = h
        .world()
        .lock()
        .vm(&format!("{prefix}k8s012"))
        .cloned()
        .expect("the new VM");
    assert!(vm.is_windows());
    assert_eq!(vm.computer_name, format!("{prefix}k8s012"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_only_leaves_the_agents_alone() {
    let h = start("single-master-aad", |_| {}).await;
    let before = vm_ids(&h);
    let (result, checker) = h
        .run(
            TARGET,
            &["--allow-unreplicated-pods", "--control-plane-only"],
        )
        .await;
    result.unwrap_or_else(|e| panic!("{}", upgrade_e2e::chain(&e)));
    checker.assert_clean();
    let model = h.assert_model_written(TARGET);
    h.assert_upgraded(TARGET, &model, true);
    let suffix = h.suffix();
    assert_eq!(
        checker.steps(),
        vec![format!("replace master k8s-master-{suffix}-0")]
    );
    let after = vm_ids(&h);
    for (name, id) in &before {
        if name.contains("linuxpool") {
            assert_eq!(after.get(name), Some(id), "{name} untouched");
            assert_eq!(h.end_state().vms[name].orchestrator, "Kubernetes:1.33.10");
        } else {
            assert_ne!(after.get(name), Some(id), "{name} replaced");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_repaves_every_node_at_the_same_version() {
    let h = start("single-master-aad", |_| {}).await;
    let before = vm_ids(&h);
    let (result, checker) = h
        .run("1.33.10", &["--allow-unreplicated-pods", "--force"])
        .await;
    result.unwrap_or_else(|e| panic!("{}", upgrade_e2e::chain(&e)));
    checker.assert_clean();
    let model = h.assert_model_written("1.33.10");
    h.assert_upgraded("1.33.10", &model, false);
    assert_eq!(checker.steps().len(), 5, "{:?}", checker.steps());
    let after = vm_ids(&h);
    for (name, id) in &after {
        assert_ne!(before.get(name), Some(id), "{name} was re-paved");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_the_operator_cordoned_stays_cordoned() {
    let h = start("single-master-aad", |_| {}).await;
    let suffix = h.suffix();
    let master = format!("k8s-master-{suffix}-0");
    let nodes: Api<Node> = Api::all(h.kube_client().await);
    nodes
        .patch(
            &master,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"unschedulable": true}})),
        )
        .await
        .expect("cordon");
    let checker = h.checker();
    checker
        .operator_cordoned
        .lock()
        .expect("lock")
        .insert(master.clone());
    let mut engine = h
        .engine(
            TARGET,
            &["--allow-unreplicated-pods", "--control-plane-only"],
            checker.clone(),
            aksup::upgrade::engine::StopFlag::default(),
        )
        .await;
    engine
        .run()
        .await
        .unwrap_or_else(|e| panic!("{}", upgrade_e2e::chain(&e)));
    checker.assert_clean();
    let end = h.end_state();
    assert_eq!(end.nodes[&master].kubelet, format!("v{TARGET}"));
    assert!(end.nodes[&master].ready);
    assert!(
        end.nodes[&master].unschedulable,
        "the operator's cordon was lifted"
    );
}
