//! The upgrade lock (a Lease): acquire, renew, refuse, take over, lose, break
//! and release, as request sequences under paused time.

mod kube_common;

use std::sync::Arc;
use std::time::Duration;

use aksup::kube::events::NodeEvent;
use aksup::kube::lock::{self, LockHolder, LockOptions, UpgradeLock};
use aksup::kube::{Error, RecordedEvents};
use k8s_openapi::jiff::Timestamp;
use kube_common::*;
use serde_json::{Value, json};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/aksup-upgrade-lock";

fn holder(host: &str, identity: &str) -> LockHolder {
    LockHolder {
        identity: identity.into(),
        host: host.into(),
        pid: 4242,
        aksup_version: "0.1.0".into(),
        target: "1.30.4".into(),
        started: "2026-11-22T03:00:00Z".into(),
    }
}

fn lease(holder: &LockHolder, renewed: &str, transitions: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "aksup-upgrade-lock", "namespace": "kube-system", "resourceVersion": "5", "uid": "lease-uid",
            "annotations": {"aksup.io/lock-host": holder.host, "aksup.io/lock-pid": holder.pid.to_string(),
                "aksup.io/lock-version": holder.aksup_version, "aksup.io/lock-target": holder.target,
                "aksup.io/lock-started": holder.started}},
        "spec": {"holderIdentity": holder.identity, "leaseDurationSeconds": 60, "acquireTime": renewed,
                 "renewTime": renewed, "leaseTransitions": transitions},
    })
}

fn now() -> String {
    Timestamp::now().to_string()
}

#[tokio::test(start_paused = true)]
async fn acquire_creates_the_lease_renews_it_and_releases_it() {
    let (client, handle) = mock_client();
    let events = Arc::new(RecordedEvents::default());
    let me = holder("host-a", "host-a/4242/00000001");
    let script = vec![
        Exchange::fail("GET", LEASE, 404, "NotFound", "not found"),
        Exchange::new("POST", LEASES, 201, lease(&me, &now(), 0)),
        // renewal after 20 s
        Exchange::ok("GET", LEASE, lease(&me, &now(), 0)),
        Exchange::ok("PUT", LEASE, lease(&me, &now(), 0)),
        // release
        Exchange::ok("GET", LEASE, lease(&me, &now(), 0)),
        Exchange::ok("DELETE", LEASE, success()),
    ];
    let operation = async {
        let lock =
            UpgradeLock::acquire(&client, me.clone(), LockOptions::default(), events.clone())
                .await?;
        tokio::time::sleep(Duration::from_secs(25)).await;
        lock.check()?;
        lock.release().await
    };
    let (outcome, recorded) = run(handle, script, operation).await;
    outcome.unwrap();
    let created = &recorded[1].body;
    assert_eq!(created["spec"]["holderIdentity"], "host-a/4242/00000001");
    assert_eq!(created["spec"]["leaseDurationSeconds"], 60);
    assert_eq!(created["spec"]["leaseTransitions"], 0);
    assert_eq!(
        created["metadata"]["annotations"],
        json!({"aksup.io/lock-host": "host-a", "aksup.io/lock-pid": "4242", "aksup.io/lock-started": "2026-11-22T03:00:00Z",
               "aksup.io/lock-target": "1.30.4", "aksup.io/lock-version": "0.1.0"})
    );
    let renewed = &recorded[3].body;
    assert_eq!(renewed["metadata"]["resourceVersion"], "5");
    assert_eq!(renewed["spec"]["holderIdentity"], "host-a/4242/00000001");
    assert_eq!(
        recorded[5].body["preconditions"],
        json!({"uid": "lease-uid", "resourceVersion": "5"})
    );
    let events = events.take();
    assert!(matches!(events[0], NodeEvent::LockAcquired { .. }));
    assert!(matches!(events[1], NodeEvent::LockRenewed { .. }));
    assert!(matches!(events[2], NodeEvent::LockReleased { .. }));
}

#[tokio::test(start_paused = true)]
async fn a_second_run_refuses_and_names_the_holder() {
    let (client, handle) = mock_client();
    let other = holder("host-b", "host-b/77/0000abcd");
    let script = vec![Exchange::ok("GET", LEASE, lease(&other, &now(), 3))];
    let acquire = UpgradeLock::acquire(
        &client,
        holder("host-a", "host-a/1/1"),
        LockOptions::default(),
        Arc::new(RecordedEvents::default()),
    );
    let (outcome, _) = run(handle, script, acquire).await;
    let err = outcome.unwrap_err();
    let Error::LockHeld { holder: held } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(**held, other);
    let message = err.to_string();
    assert!(
        message.contains("aksup 0.1.0 on host host-b (pid 4242), upgrading to 1.30.4, started 2026-11-22T03:00:00Z"),
        "{message}"
    );
    assert!(message.contains("--break-lock"), "{message}");
}

#[tokio::test(start_paused = true)]
async fn an_expired_lease_is_taken_over() {
    let (client, handle) = mock_client();
    let events = Arc::new(RecordedEvents::default());
    let dead = holder("host-b", "host-b/77/0000abcd");
    let me = holder("host-a", "host-a/1/1");
    let script = vec![
        Exchange::ok("GET", LEASE, lease(&dead, "2026-01-01T00:00:00Z", 3)),
        Exchange::ok("PUT", LEASE, lease(&me, &now(), 4)),
        Exchange::ok("GET", LEASE, lease(&me, &now(), 4)),
        Exchange::ok("DELETE", LEASE, success()),
    ];
    let operation = async {
        let lock =
            UpgradeLock::acquire(&client, me.clone(), LockOptions::default(), events.clone())
                .await?;
        lock.release().await
    };
    let (outcome, recorded) = run(handle, script, operation).await;
    outcome.unwrap();
    let taken = &recorded[1].body;
    assert_eq!(taken["spec"]["holderIdentity"], "host-a/1/1");
    assert_eq!(taken["spec"]["leaseTransitions"], 4);
    assert_eq!(
        taken["metadata"]["resourceVersion"], "5",
        "optimistic concurrency against a racing run"
    );
    assert_eq!(
        taken["metadata"]["annotations"]["aksup.io/lock-host"],
        "host-a"
    );
    assert_eq!(
        events.take()[0],
        NodeEvent::LockTakenOver { previous: dead }
    );
}

#[tokio::test(start_paused = true)]
async fn a_race_on_create_is_retried_and_then_refused() {
    let (client, handle) = mock_client();
    let other = holder("host-b", "host-b/77/2");
    let script = vec![
        Exchange::fail("GET", LEASE, 404, "NotFound", "not found"),
        Exchange::fail("POST", LEASES, 409, "AlreadyExists", "already exists"),
        Exchange::ok("GET", LEASE, lease(&other, &now(), 0)),
    ];
    let acquire = UpgradeLock::acquire(
        &client,
        holder("host-a", "a"),
        LockOptions::default(),
        Arc::new(RecordedEvents::default()),
    );
    let (outcome, _) = run(handle, script, acquire).await;
    assert!(matches!(outcome.unwrap_err(), Error::LockHeld { .. }));
}

#[tokio::test(start_paused = true)]
async fn a_lost_lease_is_detected_by_the_renewal() {
    let (client, handle) = mock_client();
    let events = Arc::new(RecordedEvents::default());
    let me = holder("host-a", "host-a/1/1");
    let thief = holder("host-c", "host-c/9/9");
    let script = vec![
        Exchange::fail("GET", LEASE, 404, "NotFound", "not found"),
        Exchange::new("POST", LEASES, 201, lease(&me, &now(), 0)),
        Exchange::ok("GET", LEASE, lease(&thief, &now(), 1)),
        // release finds the lease is not ours: nothing deleted
        Exchange::ok("GET", LEASE, lease(&thief, &now(), 1)),
    ];
    let operation = async {
        let lock =
            UpgradeLock::acquire(&client, me.clone(), LockOptions::default(), events.clone())
                .await?;
        tokio::time::sleep(Duration::from_secs(21)).await;
        let lost = lock.check();
        lock.release().await?;
        lost
    };
    let (outcome, _) = run(handle, script, operation).await;
    let err = outcome.unwrap_err();
    assert!(
        matches!(&err, Error::LockLost { holder: Some(h) } if **h == thief),
        "{err:?}"
    );
    assert!(events.take().contains(&NodeEvent::LockLost {
        holder: Some(thief)
    }));
}

#[tokio::test(start_paused = true)]
async fn break_lock_deletes_whoever_holds_it() {
    let (client, handle) = mock_client();
    let events = RecordedEvents::default();
    let stale = holder("host-b", "host-b/77/1");
    let script = vec![
        Exchange::ok("GET", LEASE, lease(&stale, &now(), 2)),
        Exchange::ok("DELETE", LEASE, success()),
    ];
    let options = LockOptions::default();
    let (outcome, _) = run(handle, script, lock::break_lock(&client, &options, &events)).await;
    assert_eq!(outcome.unwrap(), Some(stale.clone()));
    assert_eq!(
        events.take(),
        vec![NodeEvent::LockBroken {
            previous: Some(stale)
        }]
    );

    let (client, handle) = mock_client();
    let script = vec![Exchange::fail("GET", LEASE, 404, "NotFound", "not found")];
    let (outcome, _) = run(handle, script, lock::break_lock(&client, &options, &events)).await;
    assert_eq!(outcome.unwrap(), None);
}

#[test]
fn expiry_is_renew_time_plus_duration() {
    let me = holder("h", "id");
    let lease_at = |renewed: &str| -> k8s_openapi::api::coordination::v1::Lease {
        serde_json::from_value(lease(&me, renewed, 0)).unwrap()
    };
    let now: Timestamp = "2026-11-22T03:00:00Z".parse().unwrap();
    assert!(!lock::is_free_or_expired(
        &lease_at("2026-11-22T02:59:30Z"),
        now
    ));
    assert!(lock::is_free_or_expired(
        &lease_at("2026-11-22T02:58:59Z"),
        now
    ));
    let mut free = lease(&me, "2026-11-22T02:59:30Z", 0);
    free["spec"]["holderIdentity"] = json!("");
    assert!(lock::is_free_or_expired(
        &serde_json::from_value(free).unwrap(),
        now
    ));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_handle_stops_renewing_and_releases() {
    let (client, handle) = mock_client();
    let events = Arc::new(RecordedEvents::default());
    let me = holder("host-a", "host-a/1/drop");
    let script = vec![
        Exchange::fail("GET", LEASE, 404, "NotFound", "not found"),
        Exchange::new("POST", LEASES, 201, lease(&me, &now(), 0)),
        Exchange::ok("GET", LEASE, lease(&me, &now(), 0)),
        Exchange::ok("DELETE", LEASE, success()),
    ];
    let server = serve(handle, script);
    let lock = UpgradeLock::acquire(&client, me.clone(), LockOptions::default(), events.clone())
        .await
        .unwrap();
    drop(lock);
    // The release runs in the background; no renewal happens afterwards.
    let recorded = server.await.unwrap();
    assert_eq!(recorded[3].method, "DELETE");
    tokio::time::sleep(Duration::from_secs(120)).await;
    let events = events.take();
    assert!(
        matches!(events.last(), Some(NodeEvent::LockReleased { .. })),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, NodeEvent::LockRenewed { .. }))
    );
}
