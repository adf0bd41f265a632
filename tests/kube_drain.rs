//! Drain: the kubectl filters over pod fixtures, and request-sequence tests
//! of eviction bodies, 429 / 404 handling, re-listing, PDB reports and the
//! timeout policies (paused tokio time).

mod kube_common;

use std::time::Duration;

use aksup::kube::drain::{self, DrainOptions, DrainTimeoutPolicy, EvictWarning, PodAction};
use aksup::kube::events::{NodeEvent, SkipReason};
use aksup::kube::{BlockingPdb, Error, NodeName, RecordedEvents};
use k8s_openapi::api::core::v1::Pod;
use kube_common::*;
use serde_json::{Value, json};

const NODE: &str = "k8s-agent-0";
const PODS: &str = "/api/v1/pods";

fn list(pods: Vec<Value>) -> Exchange {
    Exchange::ok("GET", PODS, pod_list(pods))
        .with_query("fieldSelector=spec.nodeName%3Dk8s-agent-0")
}

fn evict(name: &str, status: u16) -> Exchange {
    let path = format!("/api/v1/namespaces/default/pods/{name}/eviction");
    match status {
        201 => Exchange::new("POST", path, 201, success()),
        429 => Exchange::fail(
            "POST",
            path,
            429,
            "TooManyRequests",
            "Cannot evict pod as it would violate the pod's disruption budget.",
        ),
        _ => Exchange::fail("POST", path, status, "Error", "error"),
    }
}

fn pdbs() -> Exchange {
    Exchange::ok(
        "GET",
        "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
        pdb_list(vec![
            pdb("default", "web-pdb", "web", 0, 2, 2),
            pdb("default", "db-pdb", "db", 1, 3, 2),
        ]),
    )
}

fn options() -> DrainOptions {
    DrainOptions::default().with_timeout(Duration::from_secs(600))
}

async fn drain_with(
    script: Vec<Exchange>,
    options: DrainOptions,
) -> (
    aksup::kube::Result<drain::DrainResult>,
    Vec<Recorded>,
    Vec<NodeEvent>,
) {
    let (client, handle) = mock_client();
    let events = RecordedEvents::default();
    let node = NodeName::new(NODE);
    let (result, recorded) = run(
        handle,
        script,
        drain::drain(&client, &node, &options, &events),
    )
    .await;
    (result, recorded, events.take())
}

fn fixture(value: Value) -> Pod {
    serde_json::from_value(value).unwrap()
}

// ---- filters: one test per kubectl rule ----

fn classify(pod: Value, allow: bool, daemon_set_exists: bool) -> PodAction {
    drain::classify(&fixture(pod), allow, &|_, _| daemon_set_exists)
}

#[test]
fn filter_mirror_pods_are_skipped() {
    let mut pod = pod("kube-system", "kube-apiserver-k8s-master-0", "u", NODE);
    pod["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "abc"});
    pod["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "v1", "kind": "Node", "name": NODE, "uid": "n", "controller": true}]);
    assert_eq!(
        classify(pod, false, true),
        PodAction::Skip(SkipReason::MirrorPod)
    );
}

fn daemon_set_pod() -> Value {
    let mut pod = pod("kube-system", "kube-proxy-abcde", "u", NODE);
    pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "kube-proxy", "uid": "d", "controller": true}]);
    pod
}

#[test]
fn filter_daemon_set_pods_are_skipped_while_their_daemon_set_exists() {
    assert_eq!(
        classify(daemon_set_pod(), false, true),
        PodAction::Skip(SkipReason::DaemonSet {
            daemon_set: "kube-proxy".into()
        })
    );
}

#[test]
fn filter_orphaned_daemon_set_pods_are_refused_unless_allowed() {
    let PodAction::Refuse(why) = classify(daemon_set_pod(), false, false) else {
        panic!("not refused")
    };
    assert!(
        why.contains("DaemonSet kube-proxy no longer exists"),
        "{why}"
    );
    assert_eq!(
        classify(daemon_set_pod(), true, false),
        PodAction::Evict {
            warnings: vec![EvictWarning::OrphanedDaemonSet {
                daemon_set: "kube-proxy".into()
            }]
        }
    );
}

#[test]
fn filter_empty_dir_pods_are_evicted_with_a_warning() {
    let mut pod = pod("default", "cache-1", "u", NODE);
    pod["spec"]["volumes"] =
        json!([{"name": "scratch", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}]);
    assert_eq!(
        classify(pod, false, true),
        PodAction::Evict {
            warnings: vec![EvictWarning::EmptyDir {
                volumes: vec!["scratch".into()]
            }]
        }
    );
}

#[test]
fn filter_unreplicated_pods_are_refused_unless_allowed() {
    let mut pod = pod("default", "bare", "u", NODE);
    pod["metadata"]["ownerReferences"] = Value::Null;
    let PodAction::Refuse(why) = classify(pod.clone(), false, true) else {
        panic!("not refused")
    };
    assert!(why.contains("--allow-unreplicated-pods"), "{why}");
    assert_eq!(
        classify(pod.clone(), true, true),
        PodAction::Evict {
            warnings: vec![EvictWarning::Unreplicated]
        }
    );
    // An owner that is not the controller does not count.
    pod["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "x"}]);
    assert!(matches!(classify(pod, false, true), PodAction::Refuse(_)));
}

#[test]
fn filter_finished_pods_are_deleted() {
    for phase in ["Succeeded", "Failed"] {
        let mut pod = pod("default", "job-1", "u", NODE);
        pod["status"]["phase"] = json!(phase);
        assert_eq!(
            classify(pod.clone(), false, true),
            PodAction::DeleteFinished
        );
        // Even without a controller: nothing is lost by deleting a finished pod.
        pod["metadata"]["ownerReferences"] = Value::Null;
        assert_eq!(classify(pod, false, true), PodAction::DeleteFinished);
    }
}

#[test]
fn filter_terminating_pods_are_waited_for_and_replicated_pods_evicted() {
    let mut terminating = pod("default", "web-1", "u", NODE);
    terminating["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    assert_eq!(
        classify(terminating, false, true),
        PodAction::WaitTerminating
    );
    assert_eq!(
        classify(pod("default", "web-1", "u", NODE), false, true),
        PodAction::Evict { warnings: vec![] }
    );
}

// ---- request sequences ----

#[tokio::test(start_paused = true)]
async fn eviction_body_without_grace_period() {
    let script = vec![
        list(vec![pod("default", "web-1", "u1", NODE)]),
        evict("web-1", 201),
        list(vec![]),
    ];
    let (result, recorded, _) = drain_with(script, options()).await;
    assert_eq!(result.unwrap().evicted.len(), 1);
    assert_eq!(
        recorded[1].body,
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web-1", "namespace": "default"}})
    );
}

#[tokio::test(start_paused = true)]
async fn eviction_body_with_grace_period_override() {
    let script = vec![
        list(vec![pod("default", "web-1", "u1", NODE)]),
        evict("web-1", 201),
        list(vec![]),
    ];
    let (result, recorded, _) = drain_with(script, options().with_grace_period(Some(30))).await;
    assert!(result.unwrap().completed());
    assert_eq!(
        recorded[1].body,
        json!({"apiVersion": "policy/v1", "kind": "Eviction",
               "deleteOptions": {"gracePeriodSeconds": 30},
               "metadata": {"name": "web-1", "namespace": "default"}})
    );
}

#[tokio::test(start_paused = true)]
async fn eviction_404_counts_as_gone() {
    let script = vec![
        list(vec![pod("default", "web-1", "u1", NODE)]),
        evict("web-1", 404),
        list(vec![]),
    ];
    let (result, _, events) = drain_with(script, options()).await;
    assert!(result.unwrap().completed());
    assert!(
        events
            .iter()
            .any(|e| matches!(e, NodeEvent::PodGone { pod, .. } if pod.name == "web-1"))
    );
}

fn web_pdb() -> BlockingPdb {
    BlockingPdb {
        namespace: "default".into(),
        name: "web-pdb".into(),
        disruptions_allowed: 0,
        current_healthy: 2,
        desired_healthy: 2,
        expected_pods: 2,
    }
}

#[tokio::test(start_paused = true)]
async fn eviction_429_is_retried_and_the_blocking_pdb_reported() {
    let web = pod("default", "web-1", "u1", NODE);
    let script = vec![
        list(vec![web.clone()]),
        evict("web-1", 429),
        pdbs(),
        list(vec![web]),
        evict("web-1", 201),
        list(vec![]),
    ];
    let start = tokio::time::Instant::now();
    let (result, _, events) = drain_with(script, options()).await;
    let result = result.unwrap();
    assert!(result.completed());
    assert_eq!(result.evicted.len(), 1);
    // One backoff (1 s) after the refusal, one poll (2 s) after the eviction.
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    let blocked = events
        .iter()
        .find_map(|e| match e {
            NodeEvent::DrainBlocked { blocked, .. } => Some(blocked.clone()),
            _ => None,
        })
        .expect("a DrainBlocked event");
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0].pod.name, "web-1");
    assert_eq!(blocked[0].pdbs, vec![web_pdb()]);
    assert_eq!(
        blocked[0].to_string(),
        "default/web-1: Cannot evict pod as it would violate the pod's disruption budget.; PodDisruptionBudget default/web-pdb (disruptionsAllowed 0, healthy 2 of 2 desired, 2 expected)"
    );
}

#[tokio::test(start_paused = true)]
async fn pods_are_relisted_and_waited_for_until_gone_or_replaced() {
    let first = pod("default", "web-1", "u1", NODE);
    let late = pod("default", "api-1", "u2", NODE);
    let recreated = pod("default", "web-1", "u3", NODE);
    let script = vec![
        list(vec![first.clone()]),
        evict("web-1", 201),
        // web-1 still terminating (same UID): not evicted again; api-1 arrived late.
        list(vec![late.clone(), first]),
        evict("api-1", 201),
        // web-1 came back under a new UID: a new pod, evicted again.
        list(vec![late, recreated]),
        evict("web-1", 201),
        list(vec![]),
    ];
    let (result, _, events) = drain_with(script, options()).await;
    let result = result.unwrap();
    let evicted: Vec<String> = result
        .evicted
        .iter()
        .map(|p| format!("{}@{}", p.name, p.uid))
        .collect();
    assert_eq!(evicted, ["web-1@u1", "api-1@u2", "web-1@u3"]);
    let gone: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            NodeEvent::PodGone { pod, .. } => Some(format!("{}@{}", pod.name, pod.uid)),
            _ => None,
        })
        .collect();
    assert_eq!(gone, ["web-1@u1", "api-1@u2", "web-1@u3"]);
}

#[tokio::test(start_paused = true)]
async fn finished_pods_are_deleted_with_a_uid_precondition() {
    let mut job = pod("default", "job-1", "u9", NODE);
    job["status"]["phase"] = json!("Succeeded");
    let script = vec![
        list(vec![job]),
        Exchange::ok("DELETE", "/api/v1/namespaces/default/pods/job-1", success()),
        list(vec![]),
    ];
    let (result, recorded, _) = drain_with(script, options()).await;
    assert_eq!(result.unwrap().deleted_finished.len(), 1);
    assert_eq!(recorded[1].body["preconditions"], json!({"uid": "u9"}));
}

#[tokio::test(start_paused = true)]
async fn unreplicated_pods_refuse_the_drain_before_any_eviction() {
    let mut bare = pod("default", "bare", "u", NODE);
    bare["metadata"]["ownerReferences"] = Value::Null;
    let script = vec![list(vec![pod("default", "web-1", "u1", NODE), bare])];
    let (result, recorded, _) = drain_with(script, options()).await;
    assert_eq!(recorded.len(), 1, "nothing evicted");
    let err = result.unwrap_err();
    assert!(matches!(err, Error::DrainRefused { .. }));
    assert!(
        err.to_string()
            .contains("default/bare (no controller would recreate it"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn allowed_unreplicated_and_empty_dir_pods_are_evicted_with_warnings() {
    let mut bare = pod("default", "bare", "u", NODE);
    bare["metadata"]["ownerReferences"] = Value::Null;
    let mut cache = pod("default", "cache-1", "c", NODE);
    cache["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
    let script = vec![
        list(vec![bare, cache]),
        evict("bare", 201),
        evict("cache-1", 201),
        list(vec![]),
    ];
    let (result, _, events) = drain_with(script, options().with_allow_unreplicated(true)).await;
    let result = result.unwrap();
    assert_eq!(result.evicted_unreplicated[0].name, "bare");
    assert_eq!(result.evicted_with_empty_dir[0].name, "cache-1");
    assert!(
        events.iter().any(
            |e| matches!(e, NodeEvent::UnreplicatedPodEvicted { pod, .. } if pod.name == "bare")
        )
    );
    assert!(events.iter().any(
        |e| matches!(e, NodeEvent::EmptyDirPodsEvicted { pods, .. } if pods.len() == 1 && pods[0].name == "cache-1")
    ));
}

#[tokio::test(start_paused = true)]
async fn daemon_set_pods_are_skipped_and_a_missing_daemon_set_refuses() {
    let mut daemon = daemon_set_pod();
    daemon["metadata"]["namespace"] = json!("kube-system");
    let mut mirror = pod("kube-system", "etcd-k8s-agent-0", "m", NODE);
    mirror["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "x"});
    let ds_path = "/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy";
    let script = vec![
        list(vec![daemon.clone(), mirror.clone()]),
        Exchange::ok(
            "GET",
            ds_path,
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "kube-proxy", "namespace": "kube-system"}}),
        ),
    ];
    let (result, _, events) = drain_with(script, options()).await;
    let result = result.unwrap();
    assert_eq!(result.skipped.len(), 2);
    assert!(result.evicted.is_empty());
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, NodeEvent::PodSkipped { .. }))
            .count(),
        2
    );

    let script = vec![
        list(vec![daemon]),
        Exchange::fail("GET", ds_path, 404, "NotFound", "not found"),
    ];
    let (result, _, _) = drain_with(script, options()).await;
    let err = result.unwrap_err();
    assert!(
        err.to_string()
            .contains("DaemonSet kube-proxy no longer exists"),
        "{err}"
    );
}

fn blocked_rounds(rounds: usize) -> Vec<Exchange> {
    let web = pod("default", "web-1", "u1", NODE);
    let mut script = Vec::new();
    for _ in 0..rounds {
        script.extend([list(vec![web.clone()]), evict("web-1", 429), pdbs()]);
    }
    script.push(list(vec![web]));
    script
}

fn timeout_options(policy: DrainTimeoutPolicy) -> DrainOptions {
    DrainOptions {
        eviction_backoff: (Duration::from_secs(10), Duration::from_secs(10)),
        ..DrainOptions::default()
    }
    .with_timeout(Duration::from_secs(25))
    .with_timeout_policy(policy)
}

#[tokio::test(start_paused = true)]
async fn drain_timeout_fails_and_names_the_blocking_budget() {
    // Rounds at 0 s, 10 s, 20 s; the listing at 25 s hits the deadline.
    let start = tokio::time::Instant::now();
    let (result, recorded, events) =
        drain_with(blocked_rounds(3), timeout_options(DrainTimeoutPolicy::Fail)).await;
    assert_eq!(start.elapsed(), Duration::from_secs(25));
    assert!(
        recorded.iter().all(|r| r.method != "DELETE"),
        "nothing deleted"
    );
    let Error::DrainTimedOut {
        result, timeout, ..
    } = result.unwrap_err()
    else {
        panic!("not a timeout")
    };
    assert_eq!(timeout, Duration::from_secs(25));
    assert_eq!(result.remaining.len(), 1);
    assert_eq!(result.remaining[0].pdbs, vec![web_pdb()]);
    assert!(!result.pdbs_bypassed);
    let blocked_events = events
        .iter()
        .filter(|e| matches!(e, NodeEvent::DrainBlocked { .. }))
        .count();
    assert_eq!(blocked_events, 3);
    let err = Error::DrainTimedOut {
        node: NodeName::new(NODE),
        timeout,
        result,
    };
    let message = err.to_string();
    assert!(
        message.contains("node k8s-agent-0 was not drained within 25s: 1 pod(s) remain"),
        "{message}"
    );
    assert!(
        message.contains("PodDisruptionBudget default/web-pdb (disruptionsAllowed 0"),
        "{message}"
    );
    assert!(message.contains("the VM was left untouched"), "{message}");
}

#[tokio::test(start_paused = true)]
async fn drain_timeout_force_delete_bypasses_budgets_loudly() {
    let mut script = blocked_rounds(3);
    script.push(Exchange::ok(
        "DELETE",
        "/api/v1/namespaces/default/pods/web-1",
        success(),
    ));
    let options = timeout_options(DrainTimeoutPolicy::ForceDelete).with_grace_period(Some(5));
    let (result, recorded, events) = drain_with(script, options).await;
    let result = result.unwrap();
    assert!(result.pdbs_bypassed);
    assert!(!result.completed());
    assert_eq!(result.force_deleted[0].name, "web-1");
    let delete = recorded.last().unwrap();
    assert_eq!(delete.body["gracePeriodSeconds"], json!(5));
    assert_eq!(delete.body["preconditions"], json!({"uid": "u1"}));
    let bypassed = events
        .iter()
        .find_map(|e| match e {
            NodeEvent::PdbBypassed { pods, .. } => Some(pods.clone()),
            _ => None,
        })
        .expect("a PdbBypassed event");
    assert_eq!(bypassed[0].pdbs, vec![web_pdb()]);
}

#[test]
fn default_timeouts_follow_aks_engine() {
    assert_eq!(
        DrainOptions::for_cluster(false).timeout,
        Duration::from_secs(20 * 60)
    );
    assert_eq!(
        DrainOptions::for_cluster(true).timeout,
        Duration::from_secs(60 * 60)
    );
    assert_eq!(
        DrainOptions::default().timeout_policy,
        DrainTimeoutPolicy::Fail
    );
}

#[tokio::test(start_paused = true)]
async fn cordon_and_drain_cordons_first_and_skips_a_missing_node() {
    let node_path = "/api/v1/nodes/k8s-agent-0";
    let script = vec![
        Exchange::ok("GET", node_path, node(NODE, false, json!({}))),
        Exchange::ok("PATCH", node_path, node(NODE, true, json!({}))),
        list(vec![pod("default", "web-1", "u1", NODE)]),
        evict("web-1", 201),
        list(vec![]),
    ];
    let (client, handle) = mock_client();
    let (events, name) = (RecordedEvents::default(), NodeName::new(NODE));
    let (outcome, _) = run(
        handle,
        script,
        drain::cordon_and_drain(&client, &name, &options(), &events),
    )
    .await;
    let outcome = outcome.unwrap();
    assert_eq!(outcome.cordon, aksup::kube::CordonOutcome::Cordoned);
    assert_eq!(outcome.drain.unwrap().evicted.len(), 1);

    let script = vec![Exchange::fail(
        "GET",
        node_path,
        404,
        "NotFound",
        "not found",
    )];
    let (client, handle) = mock_client();
    let (outcome, _) = run(
        handle,
        script,
        drain::cordon_and_drain(&client, &name, &options(), &events),
    )
    .await;
    assert_eq!(outcome.unwrap().drain, None);
}

#[tokio::test(start_paused = true)]
async fn a_server_error_on_eviction_is_retried_and_reported() {
    let web = pod("default", "web-1", "u1", NODE);
    let script = vec![
        list(vec![web.clone()]),
        Exchange::fail(
            "POST",
            "/api/v1/namespaces/default/pods/web-1/eviction",
            500,
            "InternalError",
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
        ),
        pdbs(),
        list(vec![web]),
        evict("web-1", 201),
        list(vec![]),
    ];
    let (result, _, events) = drain_with(script, options()).await;
    assert!(result.unwrap().completed());
    assert!(
        events
            .iter()
            .any(|e| matches!(e, NodeEvent::DrainBlocked { blocked, .. }
        if blocked[0].reason.contains("more than one PodDisruptionBudget")))
    );
}

#[tokio::test(start_paused = true)]
async fn a_forbidden_eviction_stops_the_drain_with_the_pod_named() {
    let script = vec![
        list(vec![pod("default", "web-1", "u1", NODE)]),
        evict("web-1", 403),
    ];
    let (result, _, _) = drain_with(script, options()).await;
    let err = result.unwrap_err();
    assert!(
        matches!(&err, Error::Evict { pod, .. } if pod.name == "web-1"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "cannot evict pod default/web-1 from node k8s-agent-0"
    );
}

#[test]
fn timeout_policy_names_round_trip() {
    for name in DrainTimeoutPolicy::NAMES {
        let policy: DrainTimeoutPolicy = name.parse().unwrap();
        assert_eq!(policy.to_string(), name);
    }
    let err = "delete".parse::<DrainTimeoutPolicy>().unwrap_err();
    assert_eq!(
        err,
        "unknown drain timeout policy \"delete\": use fail or force-delete"
    );
}
