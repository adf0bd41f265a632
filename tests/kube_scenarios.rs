//! The shared end-to-end scenarios (`aksup::kube::scenarios`), run here against
//! an in-process stateful fake of the Kubernetes API. The simulator and the
//! real-API-server tiers run the same functions.

mod kube_common;

use std::time::Duration;

use aksup::kube::{NodeName, scenarios};
use kube_common::fake::FakeCluster;
use serde_json::json;

fn cluster() -> FakeCluster {
    let cluster = FakeCluster::default();
    for name in ["k8s-agent-0", "k8s-agent-5"] {
        cluster.insert(
            "nodes",
            json!({"apiVersion": "v1", "kind": "Node",
                   "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name},
                                "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
                   "spec": {}}),
        );
    }
    cluster
}

#[tokio::test(start_paused = true)]
async fn scenario_cordon_round_trip() {
    let cluster = cluster();
    scenarios::cordon_round_trip(&cluster.client(), &NodeName::new("k8s-agent-0"))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn scenario_preexisting_cordon_kept() {
    let cluster = cluster();
    scenarios::preexisting_cordon_kept(&cluster.client(), &NodeName::new("k8s-agent-0"))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn scenario_lock_contention() {
    let cluster = cluster();
    scenarios::lock_contention(&cluster.client()).await.unwrap();
    assert!(
        cluster
            .get("leases", "kube-system", "aksup-upgrade-lock")
            .is_none(),
        "lease released"
    );
}

#[tokio::test(start_paused = true)]
async fn scenario_copy_with_name_substitution() {
    let cluster = cluster();
    let (old, new) = (NodeName::new("k8s-agent-0"), NodeName::new("k8s-agent-5"));
    scenarios::copy_with_name_substitution(&cluster.client(), &old, &new)
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn scenario_drain_timeout_fail() {
    let cluster = cluster();
    let node = NodeName::new("k8s-agent-0");
    scenarios::drain_timeout_fail(&cluster.client(), &node, "default", Duration::from_secs(30))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn scenario_drain_timeout_force_delete() {
    let cluster = cluster();
    let node = NodeName::new("k8s-agent-0");
    scenarios::drain_timeout_force_delete(
        &cluster.client(),
        &node,
        "default",
        Duration::from_secs(30),
    )
    .await
    .unwrap();
}

#[tokio::test(start_paused = true)]
async fn scenario_drain_blocked_then_unblocked() {
    let cluster = cluster();
    let (node, other) = (NodeName::new("k8s-agent-0"), NodeName::new("k8s-agent-5"));
    scenarios::drain_blocked_then_unblocked(
        &cluster.client(),
        &node,
        &other,
        "default",
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    assert!(cluster.get("pods", "default", "surge-0").is_none());
}

#[tokio::test(start_paused = true)]
async fn scenario_lock_expired_taken_over() {
    let cluster = cluster();
    scenarios::lock_expired_taken_over(&cluster.client())
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn scenario_lock_break() {
    let cluster = cluster();
    scenarios::lock_break(&cluster.client()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn scenario_drain_pod_rules() {
    let cluster = cluster();
    let result =
        scenarios::drain_pod_rules(&cluster.client(), &NodeName::new("k8s-agent-0"), "default")
            .await
            .unwrap();
    assert_eq!(result.evicted.len(), 3, "{result:?}");
}

#[tokio::test(start_paused = true)]
async fn scenario_copy_evicts_landed_pods() {
    let cluster = cluster();
    let (old, new) = (NodeName::new("k8s-agent-0"), NodeName::new("k8s-agent-5"));
    scenarios::copy_evicts_landed_pods(&cluster.client(), &old, &new, "default")
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn scenario_copy_not_preserved() {
    let cluster = cluster();
    let (old, new) = (NodeName::new("k8s-agent-0"), NodeName::new("k8s-agent-5"));
    scenarios::copy_not_preserved(&cluster.client(), &old, &new)
        .await
        .unwrap();
}
