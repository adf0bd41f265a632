//! End-to-end: the upgrade engine against a misbehaving stamp and cluster —
//! throttling, transient errors, failed deployments, nodes never Ready,
//! blocking PodDisruptionBudgets, the single-master API outage, a second run,
//! Ctrl-C. Invariants are checked after every step.

mod upgrade_e2e;

use std::sync::Arc;
use std::time::Duration;

use aksup::report::Event;
use aksup::sim::faults::{Fault, FaultSpec, RequestMatcher};
use aksup::sim::kube::Scenario;
use aksup::upgrade::engine::{Error, StopFlag};
use aksup::upgrade::plan::Refusal;
use upgrade_e2e::{Harness, TARGET, chain, start};

const FLAGS: &[&str] = &["--allow-unreplicated-pods"];
const MODEL: &str = "single-master-aad";

fn add_fault(h: &Harness, fault: Fault, times: Option<u64>) {
    h.world().lock().faults.add(FaultSpec { fault, times });
}

fn fired(h: &Harness) -> u64 {
    h.world()
        .lock()
        .faults
        .entries()
        .iter()
        .map(|e| e.fired)
        .sum()
}

async fn assert_succeeds(h: &Harness, extra: &[&str]) -> Arc<upgrade_e2e::Checker> {
    let (result, checker) = h.run(TARGET, extra).await;
    result.unwrap_or_else(|e| panic!("{}\n{}", chain(&e), checker.transcript()));
    checker.assert_clean();
    let model = h.assert_model_written(TARGET);
    h.assert_upgraded(TARGET, &model, false);
    checker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_storms_and_transient_errors_are_ridden_out() {
    let h = start(MODEL, |_| {}).await;
    // A read budget per virtual minute, every 4th write throttled, and 5xx bursts.
    add_fault(
        &h,
        Fault::Throttle {
            every_nth: None,
            budget: Some(20),
            window_seconds: Some(60),
            retry_after_seconds: None,
            matcher: RequestMatcher {
                method: Some("GET".into()),
                path_contains: None,
            },
        },
        None,
    );
    add_fault(
        &h,
        Fault::Throttle {
            every_nth: Some(4),
            budget: None,
            window_seconds: None,
            retry_after_seconds: Some(1),
            matcher: RequestMatcher {
                method: Some("PUT".into()),
                path_contains: None,
            },
        },
        None,
    );
    add_fault(
        &h,
        Fault::Transient {
            status: 503,
            every_nth: Some(3),
            matcher: RequestMatcher::default(),
        },
        Some(15),
    );
    add_fault(
        &h,
        Fault::Transient {
            status: 500,
            every_nth: Some(5),
            matcher: RequestMatcher {
                method: Some("DELETE".into()),
                path_contains: None,
            },
        },
        Some(5),
    );
    assert_succeeds(&h, FLAGS).await;
    assert!(fired(&h) >= 10, "the faults fired {} time(s)", fired(&h));
    let statuses: Vec<u16> = h
        .world()
        .requests()
        .records()
        .iter()
        .map(|r| r.status)
        .collect();
    assert!(statuses.contains(&429) && statuses.contains(&503) && statuses.contains(&500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_deployment_stops_with_a_clear_message_and_a_rerun_succeeds() {
    let h = start(MODEL, |_| {}).await;
    let suffix = h.suffix();
    add_fault(
        &h,
        Fault::DeploymentFails {
            deployment: "aksup-linuxpool-2*".into(),
            code: Some("AllocationFailed".into()),
            message: Some("Allocation failed. Not enough capacity for the VM size.".into()),
        },
        Some(1),
    );
    let (result, checker) = h.run(TARGET, FLAGS).await;
    let err = result.expect_err("the deployment fails");
    let message = chain(&err);
    assert!(matches!(err, Error::Arm { .. }), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(
        message.contains(&format!("k8s-linuxpool-{suffix}-2")),
        "names the VM: {message}"
    );
    assert!(
        message.contains("AllocationFailed"),
        "innermost code: {message}"
    );
    assert!(
        message.contains("Not enough capacity"),
        "innermost message: {message}"
    );
    assert!(!err.is_refusal());
    checker.assert_clean();
    h.assert_model_unchanged();
    // The fault is spent: the re-run deletes the Failed VM and finishes.
    let checker = assert_succeeds(&h, FLAGS).await;
    assert!(
        checker
            .steps()
            .iter()
            .any(|s| s.starts_with("delete failed vm")),
        "{:?}",
        checker.steps()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_never_ready_gets_its_new_vm_deleted_and_a_clear_error() {
    let h = start(MODEL, |_| {}).await;
    let suffix = h.suffix();
    let surge = format!("k8s-linuxpool-{suffix}-2");
    add_fault(
        &h,
        Fault::NodeNeverReady {
            node: surge.clone(),
        },
        None,
    );
    let (result, checker) = h
        .run_with(TARGET, FLAGS, |o| o.vm_timeout = Duration::from_secs(3))
        .await;
    let err = result.expect_err("the node never becomes Ready");
    let message = chain(&err);
    match &err {
        Error::NotReady { node, deleted, .. } => {
            assert_eq!(node.as_str(), surge);
            assert!(deleted, "{message}");
        }
        other => panic!("expected NotReady, got {}", chain(other)),
    }
    assert!(
        message.contains(&surge) && message.contains("was deleted"),
        "{message}"
    );
    assert!(
        err.hints().join(" ").contains("kubelet"),
        "{:?}",
        err.hints()
    );
    assert!(
        h.world().lock().vm(&surge).is_none(),
        "the new VM was deleted"
    );
    assert!(
        h.kube()
            .objects("nodes")
            .iter()
            .all(|n| n["metadata"]["name"] != surge.as_str())
    );
    checker.assert_clean();
    h.assert_model_unchanged();
    h.world().lock().faults.clear();
    assert_succeeds(&h, FLAGS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_that_never_allows_a_disruption_refuses_before_anything_is_deleted() {
    // minAvailable = replicas: satisfied, yet no eviction can ever pass it.
    let scenario = Scenario::from_json(
        r#"{"namespaces": ["shop"],
            "deployments": [{"namespace": "shop", "name": "web", "replicas": 2,
                             "nodeSelector": {"kubernetes.io/os": "linux"}}],
            "podDisruptionBudgets": [{"namespace": "shop", "name": "web-pdb",
                                      "selector": {"app": "web"}, "minAvailable": 2}]}"#,
    )
    .expect("a scenario");
    let h = start(MODEL, |o| o.scenario = Some(scenario)).await;
    // Wait until both pods are Ready, so that the budget is satisfied (and stuck).
    let client = h.kube_client().await;
    let pdbs: kube::Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
        kube::Api::namespaced(client, "shop");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let healthy = pdbs
            .get("web-pdb")
            .await
            .ok()
            .and_then(|pdb| pdb.status)
            .map(|status| {
                (
                    status.current_healthy.unwrap_or(0),
                    status.desired_healthy.unwrap_or(0),
                )
            });
        if matches!(healthy, Some((2, 2))) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "web-pdb never became satisfied: {healthy:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = h.end_state();
    let mutations = h.mutations();
    // A short drain timeout bounds the test should the gate ever fail to stop the run.
    let (result, checker) = h
        .run_with(TARGET, FLAGS, |o| o.drain.timeout = Duration::from_secs(2))
        .await;
    let err = result.expect_err("the budget refuses the run");
    let message = chain(&err);
    assert!(err.is_refusal(), "a refusal, exit 1: {message}");
    assert!(
        matches!(&err, Error::Refused(Refusal::PdbBlocks { .. })),
        "{message}"
    );
    assert!(message.contains("shop/web-"), "names the pod: {message}");
    assert!(message.contains("web-pdb"), "names the PDB: {message}");
    assert_eq!(
        h.mutations(),
        mutations,
        "nothing was changed, not even a master"
    );
    assert_eq!(h.end_state().vms.len(), before.vms.len());
    assert!(checker.steps().is_empty(), "no step ran");
    assert!(
        checker.violations().is_empty(),
        "{:?}",
        checker.violations()
    );
    h.assert_model_unchanged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_pdb_stops_the_run_before_the_vm_is_deleted_and_names_pod_and_pdb() {
    // The budget allows one disruption, but the API refuses every eviction of
    // web's pods (the simulator's evictionBlocked fault): the drain times out.
    let scenario = Scenario::from_json(
        r#"{"namespaces": ["shop"],
            "deployments": [{"namespace": "shop", "name": "web", "replicas": 2,
                             "nodeSelector": {"kubernetes.io/os": "linux"}}],
            "podDisruptionBudgets": [{"namespace": "shop", "name": "web-pdb",
                                      "selector": {"app": "web"}, "minAvailable": 1}]}"#,
    )
    .expect("a scenario");
    let h = start(MODEL, |o| {
        o.scenario = Some(scenario);
        o.faults = vec![FaultSpec {
            fault: Fault::EvictionBlocked {
                namespace: "shop".into(),
                pod_prefix: "web-".into(),
            },
            times: None,
        }];
    })
    .await;
    let suffix = h.suffix();
    let before = h.end_state();
    let (result, checker) = h
        .run_with(TARGET, FLAGS, |o| o.drain.timeout = Duration::from_secs(2))
        .await;
    let err = result.expect_err("the drain is blocked");
    let message = chain(&err);
    let Error::DrainIncomplete { node, .. } = &err else {
        panic!("expected DrainIncomplete, got {message}");
    };
    assert!(message.contains("shop/web-"), "names the pod: {message}");
    assert!(message.contains("web-pdb"), "names the PDB: {message}");
    // The blocked node's VM, and every agent VM, are untouched.
    let after = h.end_state();
    for (name, vm) in &before.vms {
        if vm.pool != "master" {
            assert!(after.vms.contains_key(name), "{name} was deleted");
        }
    }
    assert!(after.vms.contains_key(node.as_str()), "{node} deleted");
    let blocked: Vec<Event> = checker
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::DrainBlocked { .. }))
        .collect();
    let blocked = serde_json::to_string(&blocked).unwrap_or_default();
    assert!(
        blocked.contains("web-pdb") && blocked.contains("shop"),
        "{blocked}"
    );
    assert!(
        !h.world()
            .requests()
            .records()
            .iter()
            .any(|r| r.method == "DELETE" && r.path.contains(&format!("k8s-linuxpool-{suffix}"))),
        "no agent resource deleted"
    );
    checker.assert_clean();
    h.assert_model_unchanged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_single_master_api_outage_is_waited_out() {
    let h = start(MODEL, |o| {
        o.faults = vec![FaultSpec {
            fault: Fault::KubeUnreachableWithoutMaster {},
            times: None,
        }];
    })
    .await;
    // Samples the simulator's API reachability when the new master is deployed.
    struct Outage {
        inner: Arc<upgrade_e2e::Checker>,
        world: aksup::sim::World,
        seen: std::sync::Mutex<Vec<bool>>,
    }
    impl aksup::report::Reporter for Outage {
        fn report(&self, event: &Event) {
            if let Event::Progress { message, .. } = event
                && message.starts_with("deploying aksup-master-")
            {
                let down = self.world.lock().kube_unreachable;
                self.seen.lock().expect("lock").push(down);
            }
            self.inner.report(event);
        }
    }
    let checker = h.checker();
    let outage = Arc::new(Outage {
        inner: checker.clone(),
        world: h.world().clone(),
        seen: std::sync::Mutex::new(Vec::new()),
    });
    let mut engine = h
        .engine(TARGET, FLAGS, outage.clone(), StopFlag::default())
        .await;
    engine
        .run()
        .await
        .unwrap_or_else(|e| panic!("{}\n{}", chain(&e), checker.transcript()));
    checker.assert_clean();
    let model = h.assert_model_written(TARGET);
    h.assert_upgraded(TARGET, &model, false);
    assert_eq!(
        *outage.seen.lock().expect("lock"),
        vec![true],
        "the API was down while the master was replaced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_second_run_is_refused_and_names_the_holder() {
    let h = start(MODEL, |_| {}).await;
    let first = h.checker();
    let stop = StopFlag::default();
    let mut engine = h.engine(TARGET, FLAGS, first.clone(), stop.clone()).await;
    let run = tokio::spawn(async move { engine.run().await });
    // Wait until the first run holds the lock and works.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !first
        .events()
        .iter()
        .any(|e| matches!(e, Event::StepStarted { .. }))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first run never started a step"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (second, checker) = h.run(TARGET, FLAGS).await;
    let err = second.expect_err("the second run is refused");
    let message = chain(&err);
    assert!(err.is_refusal(), "{message}");
    assert!(
        message.contains("pid") && message.contains(&std::process::id().to_string()),
        "names the holder: {message}"
    );
    assert!(
        err.hints().join(" ").contains("--break-lock"),
        "{:?}",
        err.hints()
    );
    assert!(checker.steps().is_empty(), "the second run did nothing");
    run.await
        .expect("the first run")
        .unwrap_or_else(|e| panic!("the first run: {}", chain(&e)));
    first.assert_clean();
    let model = h.assert_model_written(TARGET);
    h.assert_upgraded(TARGET, &model, false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_at_a_safe_point_and_a_rerun_finishes() {
    let h = start(MODEL, |_| {}).await;
    let checker = h.checker();
    let stop = StopFlag::default();
    // Ctrl-C arrives while the second step runs (what watch_interrupts does on SIGINT).
    struct CtrlC {
        inner: Arc<upgrade_e2e::Checker>,
        stop: StopFlag,
    }
    impl aksup::report::Reporter for CtrlC {
        fn report(&self, event: &Event) {
            if matches!(event, Event::StepStarted { number: 2, .. }) {
                self.stop.request();
            }
            self.inner.report(event);
        }
    }
    let reporter = Arc::new(CtrlC {
        inner: checker.clone(),
        stop: stop.clone(),
    });
    let mut engine = h.engine(TARGET, FLAGS, reporter, stop).await;
    let err = engine.run().await.expect_err("stopped");
    // The step in flight finished; nothing started after it.
    assert!(
        matches!(err, Error::Interrupted { steps: 2 }),
        "{}",
        chain(&err)
    );
    assert!(
        err.to_string()
            .contains("run the same command again to resume"),
        "{err}"
    );
    assert_eq!(checker.steps().len(), 2);
    checker.assert_clean();
    h.assert_model_unchanged();
    // The lock was released: a re-run needs no --break-lock.
    let rerun = assert_succeeds(&h, FLAGS).await;
    let mut steps = checker.steps();
    steps.extend(rerun.steps());
    assert_eq!(steps.len(), 5, "{steps:?}");
}

/// A single-master run killed after its master VM was deleted: the API is down
/// until the master is back, so the re-run recreates the master without
/// waiting for nodes or the lock, then takes the lock and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_master_killed_while_its_master_is_gone_resumes() {
    let h = start(MODEL, |o| {
        o.faults = vec![FaultSpec {
            fault: Fault::KubeUnreachableWithoutMaster {},
            times: None,
        }];
    })
    .await;
    let checker = h.checker();
    // A short lease: the killed run cannot release it (its API is gone), so the
    // re-run takes it over once it expires, as after any kill.
    let short_lease = |o: &mut aksup::upgrade::engine::UpgradeOptions| {
        o.lock.lease_duration = Duration::from_secs(2);
        o.lock.renew_interval = Duration::from_millis(500);
    };
    let mut engine = h
        .engine_with(
            TARGET,
            FLAGS,
            checker.clone(),
            StopFlag::default(),
            short_lease,
        )
        .await;
    let world = h.world().clone();
    tokio::select! {
        result = engine.run() => panic!("the run ended before the kill: {:?}", result.map(|s| s.steps_done).map_err(|e| chain(&e))),
        () = async {
            // The master VM's DELETE was accepted.
            while upgrade_e2e::mutations(&world) < 1 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        } => {}
    }
    drop(engine);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (result, rerun) = h
        .run_with(TARGET, FLAGS, |o| {
            short_lease(o);
            o.vm_timeout = Duration::from_secs(5);
        })
        .await;
    result.unwrap_or_else(|e| panic!("the re-run: {}", chain(&e)));
    rerun.assert_clean();
    let model = h.assert_model_written(TARGET);
    h.assert_upgraded(TARGET, &model, false);
}
