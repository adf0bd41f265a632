//! The node operations (`aksup::kube`) end to end against the simulator's
//! Kubernetes API, served over TLS at 100× virtual time. The shared scenarios
//! of `aksup::kube::scenarios` run here as they run against the in-process fake
//! (tests/kube_scenarios.rs) and the real API server tier; the tests that need
//! controllers (replacements scheduled on a node that turns Ready, a kubelet
//! that registers late, pods that land on a new node) drive the simulator.

#[path = "simkube_support/mod.rs"]
mod support;

#[path = "kube_sim/helpers.rs"]
mod helpers;

use std::time::Duration;

use aksup::kube::events::SkipReason;
use aksup::kube::{
    CordonOutcome, DrainOptions, NodeEvent, NodeName, cordon_and_drain, replaced_node_of, scenarios,
};
use futures::StreamExt;
use helpers::{Recorder, agent_name, client, cluster, pods_named};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{EvictParams, PostParams};
use serde_json::json;
use support::{agent, wait_for};

// ---- the shared scenarios ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_cordon_round_trip() {
    let c = cluster(2, "").await;
    scenarios::cordon_round_trip(&client(&c).await, &agent_name(0))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_preexisting_cordon_kept() {
    let c = cluster(2, "").await;
    scenarios::preexisting_cordon_kept(&client(&c).await, &agent_name(0))
        .await
        .unwrap();
    let node = c
        .sim
        .objects("nodes")
        .into_iter()
        .find(|n| n["metadata"]["name"] == agent_name(0).as_str())
        .unwrap();
    assert_ne!(
        node["spec"]["unschedulable"],
        json!(true),
        "scenario cleans up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_lock_contention() {
    let c = cluster(1, "").await;
    scenarios::lock_contention(&client(&c).await).await.unwrap();
    assert!(
        c.sim
            .objects("leases.coordination.k8s.io")
            .iter()
            .all(|l| l["metadata"]["name"] != "aksup-upgrade-lock")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_lock_expired_taken_over() {
    let c = cluster(1, "").await;
    scenarios::lock_expired_taken_over(&client(&c).await)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_lock_break() {
    let c = cluster(1, "").await;
    scenarios::lock_break(&client(&c).await).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_copy_with_name_substitution_records_the_replaced_node() {
    let c = cluster(2, "").await;
    let client = client(&c).await;
    let (old, new) = (agent_name(0), agent_name(1));
    scenarios::copy_with_name_substitution(&client, &old, &new)
        .await
        .unwrap();
    assert_eq!(
        replaced_node_of(&client, &new).await.unwrap(),
        Some(old.clone())
    );
    // Labels the kubelet manages keep the new node's own values.
    let node: Node = Api::all(client).get(new.as_str()).await.unwrap();
    let labels = node.metadata.labels.unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], new.as_str());
    assert_eq!(labels["node.kubernetes.io/instance-type"], "Standard_D2_v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_drain_timeout_fail() {
    let c = cluster(2, "").await;
    scenarios::drain_timeout_fail(
        &client(&c).await,
        &agent_name(0),
        "default",
        Duration::from_secs(2),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_drain_timeout_force_delete() {
    let c = cluster(2, "").await;
    scenarios::drain_timeout_force_delete(
        &client(&c).await,
        &agent_name(0),
        "default",
        Duration::from_secs(2),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_drain_blocked_then_unblocked() {
    let c = cluster(2, "").await;
    scenarios::drain_blocked_then_unblocked(
        &client(&c).await,
        &agent_name(0),
        &agent_name(1),
        "default",
        Duration::from_secs(1),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_drain_pod_rules_skip_daemonset_pods() {
    let c = cluster(2, "").await;
    let node = agent_name(0);
    wait_for("kube-proxy on agent 0", Duration::from_secs(30), || {
        pods_named(&c, "kube-system", "kube-proxy-")
            .iter()
            .any(|(_, on, ready, _)| *ready && on == node.as_str())
    })
    .await;
    let proxy = pods_named(&c, "kube-system", "kube-proxy-")
        .into_iter()
        .find(|(_, on, _, _)| on == node.as_str())
        .expect("kube-proxy on the node")
        .0;
    let result = scenarios::drain_pod_rules(&client(&c).await, &node, "default")
        .await
        .unwrap();
    assert!(
        result.skipped.iter().any(|(pod, reason)| pod.name == proxy
            && *reason
                == SkipReason::DaemonSet {
                    daemon_set: "kube-proxy".to_owned()
                }),
        "{:?}",
        result.skipped
    );
    assert!(c.pod("kube-system", &proxy).is_some(), "DaemonSet pod kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_drain_grace_period_override_is_honoured() {
    let c = cluster(2, "").await;
    // 120 virtual seconds = 1.2 s here; the pod's own 3600 s would outlast the timeout.
    scenarios::drain_grace_period_override(
        &client(&c).await,
        &agent_name(0),
        "default",
        120,
        Duration::from_secs(20),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_wait_ready_late_node() {
    let c = cluster(1, "").await;
    let late = NodeName::new("k8s-agentpool-12345678-7");
    let sim = c.sim.clone();
    let name = late.clone();
    let register = async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut registration = agent(name.as_str(), 7);
        registration.kubelet_version = "v1.25.16".to_owned();
        sim.register_node(registration);
        // Registered NotReady first; Ready a little later.
        tokio::time::sleep(Duration::from_millis(300)).await;
        sim.set_node_ready(name.as_str(), true);
        Ok(())
    };
    scenarios::wait_ready_late_node(
        &client(&c).await,
        &late,
        "1.25.16",
        Duration::from_secs(20),
        register,
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_wait_ready_timeout_reports_last_conditions() {
    let c = cluster(2, "").await;
    // Ready but at the old kubelet version.
    scenarios::wait_ready_timeout_reports_conditions(
        &client(&c).await,
        &agent_name(0),
        "1.25.16",
        Duration::from_secs(3),
        "True",
    )
    .await
    .unwrap();
    // At the right version but NotReady.
    c.sim.set_node_ready(agent_name(1).as_str(), false);
    scenarios::wait_ready_timeout_reports_conditions(
        &client(&c).await,
        &agent_name(1),
        "1.24.17",
        Duration::from_secs(3),
        "False",
    )
    .await
    .unwrap();
    let error = aksup::kube::wait_ready(
        &client(&c).await,
        &agent_name(1),
        "1.24.17",
        Duration::from_secs(3),
        &aksup::kube::NoEvents,
    )
    .await
    .unwrap_err();
    assert!(
        error.to_string().contains("KubeletNotReady"),
        "reason not reported: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_copy_evicts_landed_pods() {
    let c = cluster(2, "").await;
    scenarios::copy_evicts_landed_pods(
        &client(&c).await,
        &agent_name(0),
        &agent_name(1),
        "default",
    )
    .await
    .unwrap();
}

// ---- behaviours that need the simulator's controllers -------------------------

/// Two replicas of `web` on agent 0 (agent 1 is NotReady), a budget that keeps
/// one: the drain evicts one pod, whose replacement cannot start anywhere, so
/// the second eviction is refused and the block is reported with the budget's
/// counts. When agent 1 turns Ready the replacement starts there, the budget
/// allows a disruption, and the drain completes without bypassing anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_drain_blocked_by_pdb_unblocks_when_replacements_are_ready_elsewhere() {
    let c = cluster(2, "").await;
    let (node, other) = (agent_name(0), agent_name(1));
    c.sim.set_node_ready(other.as_str(), false);
    c.sim
        .apply_scenario(
            &aksup::sim::kube::Scenario::from_json(
                r#"{"namespaces": ["shop"],
                    "deployments": [{"namespace": "shop", "name": "web", "replicas": 2}],
                    "podDisruptionBudgets": [{"namespace": "shop", "name": "web", "selector": {"app": "web"}, "minAvailable": 1}]}"#,
            )
            .unwrap(),
        )
        .unwrap();
    wait_for(
        "two web pods Ready on agent 0",
        Duration::from_secs(30),
        || {
            let web = pods_named(&c, "shop", "web-");
            web.len() == 2
                && web
                    .iter()
                    .all(|(_, on, ready, _)| *ready && on == node.as_str())
        },
    )
    .await;

    let client = client(&c).await;
    let events = Recorder::default();
    let options = DrainOptions {
        poll_interval: Duration::from_millis(100),
        eviction_backoff: (Duration::from_millis(100), Duration::from_millis(400)),
        ..DrainOptions::default().with_timeout(Duration::from_secs(60))
    };
    let drain = tokio::spawn({
        let (client, node, events) = (client.clone(), node.clone(), events.clone());
        async move { cordon_and_drain(&client, &node, &options, &events).await }
    });
    let blocked = events
        .wait_for("DrainBlocked", |e| {
            matches!(e, NodeEvent::DrainBlocked { .. })
        })
        .await;
    let NodeEvent::DrainBlocked { blocked, .. } = blocked else {
        unreachable!()
    };
    assert_eq!(blocked.len(), 1, "{blocked:?}");
    assert!(blocked[0].pod.name.starts_with("web-"), "{blocked:?}");
    assert!(
        blocked[0].reason.contains("disruption budget"),
        "{}",
        blocked[0].reason
    );
    let pdb = &blocked[0].pdbs[..];
    assert_eq!(pdb.len(), 1, "{pdb:?}");
    assert_eq!(
        (
            pdb[0].name.as_str(),
            pdb[0].disruptions_allowed,
            pdb[0].current_healthy,
            pdb[0].desired_healthy
        ),
        ("web", 0, 1, 1),
        "{}",
        pdb[0]
    );
    assert!(!drain.is_finished(), "the drain waits while blocked");
    // The replacement has nowhere to go yet.
    assert!(
        pods_named(&c, "shop", "web-")
            .iter()
            .all(|(_, on, _, _)| on != other.as_str())
    );

    // A pod that arrives on the node while the drain runs is handled too.
    let late: Pod = serde_json::from_value(json!({
        "metadata": {"name": "late-0", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "late-rs", "uid": "u", "controller": true}]},
        "spec": {"nodeName": node.as_str(), "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), "shop")
        .create(&PostParams::default(), &late)
        .await
        .unwrap();

    c.sim.set_node_ready(other.as_str(), true);
    let outcome = tokio::time::timeout(Duration::from_secs(60), drain)
        .await
        .expect("drain finished")
        .unwrap()
        .unwrap();
    assert_eq!(outcome.cordon, CordonOutcome::Cordoned);
    let result = outcome.drain.unwrap();
    assert!(result.completed(), "{result:?}");
    let mut evicted: Vec<&str> = result.evicted.iter().map(|p| p.name.as_str()).collect();
    evicted.sort_unstable();
    assert_eq!(evicted.len(), 3, "{result:?}");
    assert!(
        evicted[0] == "late-0" && evicted[1..].iter().all(|n| n.starts_with("web-")),
        "{evicted:?}"
    );
    assert!(c.pod("shop", "late-0").is_none(), "late arrival gone");
    assert!(result.force_deleted.is_empty() && !result.pdbs_bypassed);
    let web = pods_named(&c, "shop", "web-");
    assert!(
        web.iter()
            .filter(|(_, _, _, terminating)| !terminating)
            .all(|(_, on, _, _)| on == other.as_str()),
        "{web:?}"
    );
}

/// While properties are copied the new node stays unschedulable: a watch on
/// it sees the copied label appear only while it is cordoned, and the
/// uncordon last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_copy_keeps_new_node_unschedulable_until_done() {
    let c = cluster(2, "").await;
    let client = client(&c).await;
    let (old, new) = (agent_name(0), agent_name(1));
    let nodes: Api<Node> = Api::all(client.clone());
    let (started, watching) = tokio::sync::oneshot::channel();
    let states = tokio::spawn({
        let nodes = nodes.clone();
        let new = new.clone();
        let mut started = Some(started);
        async move {
            let stream = kube::runtime::watcher::watch_object(nodes, new.as_str());
            futures::pin_mut!(stream);
            let mut states = Vec::new();
            while let Some(Ok(Some(node))) = stream.next().await {
                let unschedulable = node
                    .spec
                    .as_ref()
                    .and_then(|s| s.unschedulable)
                    .unwrap_or(false);
                let copied = node
                    .metadata
                    .labels
                    .unwrap_or_default()
                    .contains_key("scenario.aksup.io/landed");
                states.push((unschedulable, copied));
                if let Some(started) = started.take() {
                    let _ = started.send(());
                }
                if copied && !unschedulable {
                    break;
                }
            }
            states
        }
    });
    // The copy starts once the watch has seen the node as it is.
    tokio::time::timeout(Duration::from_secs(30), watching)
        .await
        .expect("the watch started")
        .unwrap();
    scenarios::copy_evicts_landed_pods(&client, &old, &new, "default")
        .await
        .unwrap();
    let states = tokio::time::timeout(Duration::from_secs(30), states)
        .await
        .expect("watch saw the end of the copy")
        .unwrap();
    assert_eq!(states.first(), Some(&(false, false)), "{states:?}");
    let first_copied = states.iter().position(|(_, copied)| *copied).unwrap();
    assert!(
        states[first_copied].0,
        "label copied while schedulable: {states:?}"
    );
    assert!(
        states[..first_copied].iter().any(|(u, _)| *u),
        "never cordoned before the copy: {states:?}"
    );
    assert_eq!(states.last(), Some(&(false, true)), "{states:?}");
}

/// kube-rs 5's `Api::evict` loses the grace period (its body says
/// `delete_options`): the simulator, like a real server, ignores it and the
/// pod terminates with its own grace period — why aksup sends the body itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_kube_rs_evict_loses_the_grace_period() {
    let c = cluster(1, "").await;
    let pods: Api<Pod> = Api::namespaced(client(&c).await, "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "plain", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "plain-rs", "uid": "u", "controller": true}]},
        "spec": {"nodeName": agent_name(0).as_str(), "terminationGracePeriodSeconds": 3600,
                 "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_for("plain Running", Duration::from_secs(30), || {
        c.pod("default", "plain")
            .is_some_and(|p| p["status"]["phase"] == "Running")
    })
    .await;
    let params = EvictParams {
        delete_options: Some(kube::api::DeleteParams::default().grace_period(5)),
        ..EvictParams::default()
    };
    pods.evict("plain", &params).await.unwrap();
    let after = c.pod("default", "plain").unwrap();
    assert_eq!(after["metadata"]["deletionGracePeriodSeconds"], json!(3600));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_copy_not_preserved() {
    let c = cluster(2, "").await;
    scenarios::copy_not_preserved(&client(&c).await, &agent_name(0), &agent_name(1))
        .await
        .unwrap();
}

/// The VM is recreated under the same name at the new version: the node is
/// Ready at the old kubelet first, then re-registers NotReady at the new one,
/// then turns Ready. `wait_ready` must not accept the old kubelet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_wait_ready_ignores_the_old_kubelet_of_a_recreated_vm() {
    let c = cluster(1, "").await;
    let node = agent_name(0);
    let recreated = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reimage = {
        let (sim, name, recreated) = (c.sim.clone(), node.clone(), recreated.clone());
        async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut registration = agent(name.as_str(), 0);
            registration.kubelet_version = "v1.25.16".to_owned();
            sim.register_node(registration);
            tokio::time::sleep(Duration::from_millis(300)).await;
            recreated.store(true, std::sync::atomic::Ordering::SeqCst);
            sim.set_node_ready(name.as_str(), true);
        }
    };
    let client = client(&c).await;
    let (ready, ()) = tokio::join!(
        aksup::kube::wait_ready(
            &client,
            &node,
            "v1.25.16",
            Duration::from_secs(20),
            &aksup::kube::NoEvents
        ),
        reimage
    );
    let ready = ready.unwrap();
    assert_eq!(ready.kubelet_version, "v1.25.16");
    assert!(
        recreated.load(std::sync::atomic::Ordering::SeqCst),
        "returned before the new kubelet was Ready"
    );
}

/// Connecting as aks-engine does, from the apimodel alone: the whole simulator
/// writes an apimodel copy whose `certificateProfile` and master FQDN point at
/// its Kubernetes listener; aksup builds the client certificate configuration
/// in memory and the shared cordon scenario runs through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_connect_from_the_apimodel_with_the_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let model = aksup::model::ApiModel::load(
        &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/sim/linux-3-masters.json"),
    )
    .unwrap();
    let mut options = aksup::sim::SimOptions::new(model);
    options.time_scale = 1000.0;
    options.state_dir = Some(dir.path().to_owned());
    let sim = aksup::sim::Simulator::start(options).await.unwrap();
    let copy = aksup::model::ApiModel::load(&dir.path().join("apimodel.json")).unwrap();
    let access = aksup::kube::ClusterAccess::ApiModel(aksup::kube::ApiModelAccess::default());
    let client = aksup::kube::connect(&access, Some(copy.view()))
        .await
        .unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    let mut agent = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while agent.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no agent node registered"
        );
        agent = nodes
            .list(&kube::api::ListParams::default().labels("kubernetes.io/role=agent"))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .min();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    scenarios::cordon_round_trip(&client, &NodeName::new(agent.unwrap()))
        .await
        .unwrap();
    sim.shutdown().await;
}
