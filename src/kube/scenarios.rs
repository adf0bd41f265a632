//! End-to-end scenarios of the node operations, generic over a
//! [`kube::Client`], so the same checks run against the simulator's Kubernetes
//! API and against a real API server (kube-apiserver + controllers + kwok).
//! Each scenario sets up what it needs through the API, runs the operation,
//! checks the outcome and the cluster state, and cleans up; it returns an
//! error describing the first mismatch. Not part of the supported API.
//!
//! Requirements on the cluster: the named nodes exist; for the drain
//! scenarios the disruption controller keeps PodDisruptionBudget status
//! current (the simulator computes it; a real cluster runs
//! kube-controller-manager).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::copy::{CopyOptions, copy_properties};
use super::cordon::{CordonOutcome, UncordonOutcome, cordon, uncordon};
use super::drain::{DrainOptions, DrainResult, DrainTimeoutPolicy, drain};
use super::events::{NodeEvent, RecordedEvents, Severity, SkipReason};
use super::lock::{LockHolder, LockOptions, UpgradeLock, break_lock};
use super::ready::wait_ready;
use super::retry::RetryPolicy;
use super::{Error, NodeName, keys};

async fn node_state(client: &kube::Client, node: &NodeName) -> anyhow::Result<Node> {
    Api::<Node>::all(client.clone())
        .get(node.as_str())
        .await
        .with_context(|| format!("read node {node}"))
}

fn unschedulable(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
}

/// cordon → cordon again (no change) → uncordon: the node ends schedulable and unmarked.
pub async fn cordon_round_trip(client: &kube::Client, node: &NodeName) -> anyhow::Result<()> {
    let (policy, events) = (RetryPolicy::default(), RecordedEvents::default());
    ensure!(
        cordon(client, node, &policy, &events).await? == CordonOutcome::Cordoned,
        "first cordon must patch"
    );
    let cordoned = node_state(client, node).await?;
    ensure!(
        unschedulable(&cordoned),
        "node not unschedulable after cordon"
    );
    let again = cordon(client, node, &policy, &events).await?;
    ensure!(
        again == CordonOutcome::AlreadyCordoned { by_aksup: true },
        "second cordon: {again:?}"
    );
    ensure!(
        uncordon(client, node, &policy, &events).await? == UncordonOutcome::Uncordoned,
        "uncordon"
    );
    let after = node_state(client, node).await?;
    ensure!(
        !unschedulable(&after),
        "node still unschedulable after uncordon"
    );
    let marked = after
        .metadata
        .annotations
        .unwrap_or_default()
        .contains_key(keys::CORDONED_BY_AKSUP);
    ensure!(!marked, "aksup's cordon mark left on the node");
    Ok(())
}

/// A node the operator cordoned before the run stays cordoned.
pub async fn preexisting_cordon_kept(client: &kube::Client, node: &NodeName) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let set = |value: bool| json!({"spec": {"unschedulable": value}});
    nodes
        .patch(
            node.as_str(),
            &PatchParams::default(),
            &Patch::Merge(&set(true)),
        )
        .await?;
    let (policy, events) = (RetryPolicy::default(), RecordedEvents::default());
    let outcome = cordon(client, node, &policy, &events).await?;
    ensure!(
        outcome == CordonOutcome::AlreadyCordoned { by_aksup: false },
        "cordon: {outcome:?}"
    );
    let outcome = uncordon(client, node, &policy, &events).await?;
    ensure!(
        outcome == UncordonOutcome::KeptCordoned,
        "uncordon: {outcome:?}"
    );
    ensure!(
        unschedulable(&node_state(client, node).await?),
        "the operator's cordon was removed"
    );
    nodes
        .patch(
            node.as_str(),
            &PatchParams::default(),
            &Patch::Merge(&set(false)),
        )
        .await?;
    Ok(())
}

/// Two runs: the second is refused naming the first; after release it succeeds.
pub async fn lock_contention(client: &kube::Client) -> anyhow::Result<()> {
    let options = LockOptions::default();
    let events = Arc::new(RecordedEvents::default());
    break_lock(client, &options, events.as_ref()).await?;
    let mut first_holder = LockHolder::current("1.30.4");
    first_holder.identity.push_str("-first");
    let first = UpgradeLock::acquire(
        client,
        first_holder.clone(),
        options.clone(),
        events.clone(),
    )
    .await?;
    let mut second_holder = LockHolder::current("1.30.4");
    second_holder.identity.push_str("-second");
    match UpgradeLock::acquire(
        client,
        second_holder.clone(),
        options.clone(),
        events.clone(),
    )
    .await
    {
        Err(Error::LockHeld { holder }) => ensure!(
            holder.identity == first_holder.identity,
            "refusal names {holder}"
        ),
        other => anyhow::bail!("second run was not refused: {other:?}"),
    }
    first.release().await?;
    let second = UpgradeLock::acquire(client, second_holder, options, events).await?;
    second.release().await?;
    Ok(())
}

/// Copies `old`'s custom labels, annotations and taints to `new` with the
/// name substituted; managed keys are not copied; the replaced node is recorded.
pub async fn copy_with_name_substitution(
    client: &kube::Client,
    old: &NodeName,
    new: &NodeName,
) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let marker = json!({
        "metadata": {
            "labels": {"scenario.aksup.io/team": "payments", "scenario.aksup.io/peer": format!("{old}.internal")},
            "annotations": {"scenario.aksup.io/owner": format!("ops@{old}"), "node.alpha.kubernetes.io/ttl": "15"},
        },
        "spec": {"taints": [{"key": "scenario.aksup.io/dedicated", "value": old.as_str(), "effect": "NoSchedule"}]},
    });
    nodes
        .patch(
            old.as_str(),
            &PatchParams::default(),
            &Patch::Merge(&marker),
        )
        .await?;
    let before = node_state(client, new).await?;
    let events = RecordedEvents::default();
    let options = CopyOptions {
        drain: DrainOptions::default().with_timeout(Duration::from_secs(120)),
        ..CopyOptions::default()
    };
    copy_properties(client, old, new, &options, &events).await?;
    let after = node_state(client, new).await?;
    let labels = after.metadata.labels.clone().unwrap_or_default();
    let annotations = after.metadata.annotations.clone().unwrap_or_default();
    let expect = |map: &BTreeMap<String, String>, key: &str, value: &str| {
        ensure!(
            map.get(key).map(String::as_str) == Some(value),
            "{key} is {:?}, expected {value:?}",
            map.get(key)
        );
        Ok(())
    };
    expect(&labels, "scenario.aksup.io/team", "payments")?;
    expect(
        &labels,
        "scenario.aksup.io/peer",
        &format!("{new}.internal"),
    )?;
    expect(
        &annotations,
        "scenario.aksup.io/owner",
        &format!("ops@{new}"),
    )?;
    expect(&annotations, keys::REPLACED_NODE, old.as_str())?;
    let hostname = before
        .metadata
        .labels
        .unwrap_or_default()
        .get("kubernetes.io/hostname")
        .cloned();
    ensure!(
        labels.get("kubernetes.io/hostname") == hostname.as_ref(),
        "hostname label changed"
    );
    let ttl_before = before
        .metadata
        .annotations
        .unwrap_or_default()
        .get("node.alpha.kubernetes.io/ttl")
        .cloned();
    ensure!(
        annotations.get("node.alpha.kubernetes.io/ttl") == ttl_before.as_ref(),
        "managed ttl annotation copied"
    );
    let taints = after
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    ensure!(
        taints
            .iter()
            .any(|t| t.key == "scenario.aksup.io/dedicated"
                && t.value.as_deref() == Some(new.as_str())),
        "taint not copied with the new name: {taints:?}"
    );
    ensure!(
        !unschedulable(&after),
        "new node left cordoned after the copy"
    );
    Ok(())
}

/// Creates the pod `<app>-<index>` labelled `app=<app>`, bound to `node`
/// (replicated: it names a ReplicaSet as its controller).
async fn create_pod(
    client: &kube::Client,
    node: &NodeName,
    namespace: &str,
    app: &str,
    index: usize,
) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": format!("{app}-{index}"), "labels": {"app": app},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-rs"),
                                 "uid": "00000000-0000-0000-0000-000000000001", "controller": true}]},
        "spec": {"nodeName": node.as_str(), "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
    }))?;
    pods.create(&PostParams::default(), &pod)
        .await
        .with_context(|| format!("create pod {app}-{index}"))?;
    Ok(())
}

/// Waits (at most a minute) until the pod has left phase Pending: an API
/// server evicts a Pending pod without consulting its budgets. A server that
/// reports no phase (the in-process fake) counts as started.
async fn wait_started(client: &kube::Client, namespace: &str, name: &str) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let pod = pods
            .get(name)
            .await
            .with_context(|| format!("read pod {name}"))?;
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if phase != Some("Pending") {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "pod {name} still Pending after a minute"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates the pod `<app>-0` on `node` and a budget `<app>-pdb` that keeps
/// `min_available` pods of the app.
async fn budgeted_workload(
    client: &kube::Client,
    node: &NodeName,
    namespace: &str,
    app: &str,
    min_available: i32,
) -> anyhow::Result<()> {
    create_pod(client, node, namespace, app, 0).await?;
    wait_started(client, namespace, &format!("{app}-0")).await?;
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), namespace);
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": format!("{app}-pdb")},
        "spec": {"selector": {"matchLabels": {"app": app}}, "minAvailable": min_available},
    }))?;
    pdbs.create(&PostParams::default(), &pdb)
        .await
        .context("create the budget")?;
    Ok(())
}

/// One pod on `node` and a budget that allows no disruption of it.
async fn blocked_workload(
    client: &kube::Client,
    node: &NodeName,
    namespace: &str,
    app: &str,
) -> anyhow::Result<()> {
    budgeted_workload(client, node, namespace, app, 1).await
}

async fn remove_workload(client: &kube::Client, namespace: &str, app: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for index in 0..2 {
        let _ = pods
            .delete(
                &format!("{app}-{index}"),
                &DeleteParams::default().grace_period(0),
            )
            .await;
    }
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), namespace);
    let _ = pdbs
        .delete(&format!("{app}-pdb"), &DeleteParams::default())
        .await;
}

/// A budget that allows no disruption blocks the drain; under the `Fail`
/// policy the drain times out naming the pod and the budget, and deletes nothing.
pub async fn drain_timeout_fail(
    client: &kube::Client,
    node: &NodeName,
    namespace: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    blocked_workload(client, node, namespace, "blocked").await?;
    let events = RecordedEvents::default();
    let options = DrainOptions::default().with_timeout(timeout);
    let outcome = drain(client, node, &options, &events).await;
    let still_there = Api::<Pod>::namespaced(client.clone(), namespace)
        .get_opt("blocked-0")
        .await?
        .is_some();
    remove_workload(client, namespace, "blocked").await;
    match &outcome {
        Err(error @ Error::DrainTimedOut { result, .. }) => {
            let message = error.to_string();
            let blocked = result
                .remaining
                .iter()
                .find(|b| b.pod.name == "blocked-0")
                .context("pod not reported")?;
            let pdb = blocked
                .pdbs
                .iter()
                .find(|p| p.name == "blocked-pdb")
                .with_context(|| format!("budget not reported: {blocked}"))?;
            ensure!(
                (
                    pdb.disruptions_allowed,
                    pdb.current_healthy,
                    pdb.desired_healthy
                ) == (0, 1, 1),
                "budget status reported as {pdb}, expected 0 allowed, 1 healthy of 1 desired"
            );
            for name in ["blocked-0", "blocked-pdb", "disruptionsAllowed 0"] {
                ensure!(
                    message.contains(name),
                    "the error does not name {name}: {message}"
                );
            }
        }
        other => anyhow::bail!("drain did not time out: {other:?}"),
    }
    ensure!(
        still_there,
        "the blocked pod was deleted under the Fail policy"
    );
    ensure!(
        events
            .take()
            .iter()
            .any(|e| matches!(e, NodeEvent::DrainBlocked { .. })),
        "no DrainBlocked event"
    );
    Ok(())
}

/// Same budget, `ForceDelete` policy: the pod is deleted and the result says
/// the budget was bypassed.
pub async fn drain_timeout_force_delete(
    client: &kube::Client,
    node: &NodeName,
    namespace: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    blocked_workload(client, node, namespace, "forced").await?;
    let events = RecordedEvents::default();
    let options = DrainOptions::default()
        .with_timeout(timeout)
        .with_timeout_policy(DrainTimeoutPolicy::ForceDelete);
    let outcome = drain(client, node, &options, &events).await;
    let left = Api::<Pod>::namespaced(client.clone(), namespace)
        .get_opt("forced-0")
        .await?;
    remove_workload(client, namespace, "forced").await;
    let result = outcome?;
    ensure!(
        left.is_none_or(|pod| pod.metadata.deletion_timestamp.is_some()),
        "forced-0 neither deleted nor terminating after the force-delete"
    );
    ensure!(
        result.pdbs_bypassed,
        "result does not say the budget was bypassed"
    );
    ensure!(
        result.force_deleted.iter().any(|p| p.name == "forced-0"),
        "pod not force-deleted"
    );
    ensure!(
        events
            .take()
            .iter()
            .any(|e| matches!(e, NodeEvent::PdbBypassed { pods, .. }
                if e.severity() == Severity::Warning
                    && pods.iter().any(|b| b.pod.name == "forced-0"
                        && b.pdbs.iter().any(|p| p.name == "forced-pdb")))),
        "no warning-level PdbBypassed event naming forced-0 and forced-pdb"
    );
    Ok(())
}

/// A budget blocks the drain until a replacement pod runs elsewhere (as when
/// the replacement node becomes Ready); then the eviction goes through. The
/// drain reports the block first and completes without bypassing anything.
pub async fn drain_blocked_then_unblocked(
    client: &kube::Client,
    node: &NodeName,
    other_node: &NodeName,
    namespace: &str,
    unblock_after: Duration,
) -> anyhow::Result<()> {
    budgeted_workload(client, node, namespace, "surge", 1).await?;
    let events = RecordedEvents::default();
    let options = DrainOptions::default().with_timeout(unblock_after * 10);
    let replacement = async {
        tokio::time::sleep(unblock_after).await;
        create_pod(client, other_node, namespace, "surge", 1).await
    };
    let (outcome, created) = tokio::join!(drain(client, node, &options, &events), replacement);
    remove_workload(client, namespace, "surge").await;
    created?;
    let result = outcome?;
    ensure!(
        result.completed(),
        "drain did not complete cleanly: {result:?}"
    );
    ensure!(
        result.evicted.iter().any(|p| p.name == "surge-0"),
        "surge-0 not evicted"
    );
    let events = events.take();
    let blocked = events
        .iter()
        .position(|e| matches!(e, NodeEvent::DrainBlocked { .. }));
    let gone = events
        .iter()
        .position(|e| matches!(e, NodeEvent::PodGone { pod, .. } if pod.name == "surge-0"));
    ensure!(
        matches!((blocked, gone), (Some(b), Some(g)) if b < g),
        "expected a block, then the pod gone: {events:?}"
    );
    Ok(())
}

/// Drain options for the scenarios: the given timeout, fast polling and backoff.
fn quick_drain(timeout: Duration) -> DrainOptions {
    DrainOptions {
        poll_interval: Duration::from_millis(100),
        eviction_backoff: (Duration::from_millis(100), Duration::from_millis(500)),
        ..DrainOptions::default().with_timeout(timeout)
    }
}

/// Creates a pod from `metadata` and `spec` (bound to `node`); when `phase`
/// is given and the server dropped the status on create (as a real API
/// server does), sets it through the `status` subresource.
async fn create_raw_pod(
    client: &kube::Client,
    node: &NodeName,
    namespace: &str,
    metadata: serde_json::Value,
    mut spec: serde_json::Value,
    phase: Option<&str>,
) -> anyhow::Result<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    spec["nodeName"] = json!(node.as_str());
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "app", "image": "registry.k8s.io/pause:3.10"}]);
    }
    let mut body = json!({"metadata": metadata, "spec": spec});
    if let Some(phase) = phase {
        body["status"] = json!({"phase": phase});
    }
    let name = body["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let pod: Pod = serde_json::from_value(body)?;
    let created = pods
        .create(&PostParams::default(), &pod)
        .await
        .with_context(|| format!("create pod {name}"))?;
    let Some(phase) = phase else {
        return Ok(created);
    };
    let current = created.status.as_ref().and_then(|s| s.phase.as_deref());
    if current == Some(phase) {
        return Ok(created);
    }
    pods.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"phase": phase}})),
    )
    .await
    .with_context(|| format!("set the phase of pod {name}"))
}

fn replica_set_owner(name: &str) -> serde_json::Value {
    json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name,
            "uid": "00000000-0000-0000-0000-000000000002", "controller": true}])
}

async fn delete_pods_now(client: &kube::Client, namespace: &str, names: &[&str]) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for name in names {
        let _ = pods
            .delete(name, &DeleteParams::default().grace_period(0))
            .await;
    }
}

/// `kubectl drain`'s pod rules. On `node` (which holds no other pods that a
/// drain would refuse) the scenario creates: a mirror pod (skipped), a pod of
/// a DaemonSet that no longer exists and a bare pod (both refuse the drain
/// unless unreplicated pods are allowed, then evicted with a warning), a
/// replicated pod with an emptyDir volume (evicted, listed in a warning) and
/// a finished bare pod (deleted, never refused). A first drain without the
/// flag must refuse naming both pods and evict nothing; a second one with the
/// flag completes. Returns the second drain's result for tier-specific checks
/// (DaemonSet pods of existing DaemonSets skipped).
pub async fn drain_pod_rules(
    client: &kube::Client,
    node: &NodeName,
    namespace: &str,
) -> anyhow::Result<DrainResult> {
    let app = |name: &str| json!({"name": name, "labels": {"app": "rules"}});
    let mut mirror = app("rules-mirror");
    mirror["annotations"] = json!({"kubernetes.io/config.mirror": "0123456789abcdef"});
    mirror["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "Node", "name": node.as_str(),
                                        "uid": "00000000-0000-0000-0000-000000000003", "controller": true}]);
    let mut orphan = app("rules-orphan");
    orphan["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "rules-gone",
                                        "uid": "00000000-0000-0000-0000-000000000004", "controller": true}]);
    let bare = app("rules-bare");
    let mut scratch = app("rules-scratch");
    scratch["ownerReferences"] = replica_set_owner("rules-rs");
    let done = app("rules-done");
    let scratch_spec = json!({"volumes": [{"name": "cache", "emptyDir": {}}],
        "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                        "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]}]});
    let names = [
        "rules-mirror",
        "rules-orphan",
        "rules-bare",
        "rules-scratch",
        "rules-done",
    ];
    let outcome = async {
        for (metadata, spec, phase) in [
            (mirror, json!({}), None),
            (orphan, json!({}), None),
            (bare, json!({}), None),
            (scratch, scratch_spec, None),
            (done, json!({"restartPolicy": "Never"}), Some("Succeeded")),
        ] {
            create_raw_pod(client, node, namespace, metadata, spec, phase).await?;
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let events = RecordedEvents::default();
        let refused = drain(client, node, &quick_drain(Duration::from_secs(60)), &events).await;
        match &refused {
            Err(error @ Error::DrainRefused { refused, .. }) => {
                let mut named: Vec<&str> = refused.iter().map(|(p, _)| p.name.as_str()).collect();
                named.sort_unstable();
                ensure!(
                    named == ["rules-bare", "rules-orphan"],
                    "refusal names {named:?}, expected rules-bare and rules-orphan"
                );
                let message = error.to_string();
                ensure!(
                    message.contains("rules-gone") && message.contains("--allow-unreplicated-pods"),
                    "refusal does not name the vanished DaemonSet and the flag: {message}"
                );
            }
            other => anyhow::bail!("drain without --allow-unreplicated-pods was not refused: {other:?}"),
        }
        for name in names {
            let pod = pods.get_opt(name).await?;
            ensure!(
                pod.is_some_and(|p| p.metadata.deletion_timestamp.is_none()),
                "the refused drain touched {name}"
            );
        }
        let options = quick_drain(Duration::from_secs(60)).with_allow_unreplicated(true);
        let result = drain(client, node, &options, &events).await?;
        let names_of = |pods: &[super::drain::PodRef]| {
            let mut names: Vec<String> = pods.iter().map(|p| p.name.clone()).collect();
            names.sort_unstable();
            names
        };
        ensure!(result.completed(), "drain with the flag did not complete: {result:?}");
        ensure!(
            result.skipped.iter().any(|(p, reason)| p.name == "rules-mirror" && *reason == SkipReason::MirrorPod),
            "mirror pod not skipped: {:?}",
            result.skipped
        );
        ensure!(
            names_of(&result.evicted_with_empty_dir) == ["rules-scratch"],
            "emptyDir evictions: {:?}",
            result.evicted_with_empty_dir
        );
        ensure!(
            names_of(&result.evicted_unreplicated) == ["rules-bare", "rules-orphan"],
            "unreplicated evictions: {:?}",
            result.evicted_unreplicated
        );
        ensure!(
            names_of(&result.deleted_finished) == ["rules-done"],
            "finished pods deleted: {:?}",
            result.deleted_finished
        );
        ensure!(
            !result.evicted.iter().any(|p| p.name == "rules-done" || p.name == "rules-mirror"),
            "finished or mirror pod evicted: {:?}",
            result.evicted
        );
        for name in ["rules-orphan", "rules-bare", "rules-scratch", "rules-done"] {
            ensure!(pods.get_opt(name).await?.is_none(), "{name} still exists after the drain");
        }
        ensure!(pods.get_opt("rules-mirror").await?.is_some(), "the mirror pod was removed");
        let events = events.take();
        ensure!(
            events.iter().any(|e| matches!(e, NodeEvent::EmptyDirPodsEvicted { pods, .. }
                if e.severity() == Severity::Warning && pods.iter().any(|p| p.name == "rules-scratch"))),
            "no warning listing the emptyDir pod"
        );
        ensure!(
            events.iter().any(|e| matches!(e, NodeEvent::OrphanedDaemonSetPodEvicted { daemon_set, .. } if daemon_set == "rules-gone"))
                && events.iter().any(|e| matches!(e, NodeEvent::UnreplicatedPodEvicted { pod, .. } if pod.name == "rules-bare")),
            "no warnings for the unreplicated pods"
        );
        Ok(result)
    }
    .await;
    delete_pods_now(client, namespace, &names).await;
    outcome
}

/// The grace-period override reaches the API server: a pod whose own grace
/// period is an hour is evicted with `grace_seconds`; while it terminates its
/// `deletionGracePeriodSeconds` must be the override. Needs a server that
/// keeps terminating pods for their grace period (not the in-process fake).
pub async fn drain_grace_period_override(
    client: &kube::Client,
    node: &NodeName,
    namespace: &str,
    grace_seconds: i64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut metadata = json!({"name": "graceful-0", "labels": {"app": "graceful"}});
    metadata["ownerReferences"] = replica_set_owner("graceful-rs");
    create_raw_pod(
        client,
        node,
        namespace,
        metadata,
        json!({"terminationGracePeriodSeconds": 3600}),
        None,
    )
    .await?;
    wait_started(client, namespace, "graceful-0").await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let events = RecordedEvents::default();
    let options = quick_drain(timeout).with_grace_period(Some(grace_seconds));
    let observe = async {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            match pods.get_opt("graceful-0").await? {
                Some(pod) if pod.metadata.deletion_timestamp.is_some() => {
                    return Ok(pod.metadata.deletion_grace_period_seconds);
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                None => anyhow::bail!("graceful-0 vanished without being seen terminating"),
            }
        }
        anyhow::bail!("graceful-0 never started terminating")
    };
    let (outcome, seen) = tokio::join!(drain(client, node, &options, &events), observe);
    delete_pods_now(client, namespace, &["graceful-0"]).await;
    let seen = seen?;
    ensure!(
        seen == Some(grace_seconds),
        "deletionGracePeriodSeconds of the evicted pod is {seen:?}, expected the override {grace_seconds}"
    );
    let result = outcome?;
    ensure!(
        result.evicted.iter().any(|p| p.name == "graceful-0") && result.completed(),
        "graceful-0 not evicted: {result:?}"
    );
    Ok(())
}

/// Creates the lock's Lease as another run `identity` on `host` left it,
/// last renewed `age` ago.
async fn foreign_lease(
    client: &kube::Client,
    options: &LockOptions,
    identity: &str,
    host: &str,
    age: std::time::Duration,
) -> anyhow::Result<()> {
    let renewed =
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::try_from(age)?;
    let text = renewed.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    let leases: Api<Lease> = Api::namespaced(client.clone(), &options.namespace);
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": options.name, "annotations": {"aksup.io/lock-host": host, "aksup.io/lock-pid": "4242"}},
        "spec": {"holderIdentity": identity, "leaseDurationSeconds": 60,
                 "acquireTime": text, "renewTime": text},
    }))?;
    leases
        .create(&PostParams::default(), &lease)
        .await
        .context("create the other run's lease")?;
    Ok(())
}

/// A lease left by a run that stopped renewing it is taken over, and the
/// takeover names the previous holder.
pub async fn lock_expired_taken_over(client: &kube::Client) -> anyhow::Result<()> {
    let options = LockOptions::default();
    let events = Arc::new(RecordedEvents::default());
    break_lock(client, &options, events.as_ref()).await?;
    foreign_lease(
        client,
        &options,
        "dead-host/4242/0badc0de",
        "dead-host",
        Duration::from_secs(3600),
    )
    .await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &options.namespace);
    let holder = LockHolder::current("1.30.4");
    let lock = UpgradeLock::acquire(client, holder.clone(), options.clone(), events.clone())
        .await
        .context("the expired lease was not taken over")?;
    let stored = leases.get(&options.name).await?;
    let identity = stored.spec.as_ref().and_then(|s| s.holder_identity.clone());
    lock.release().await?;
    ensure!(
        identity.as_deref() == Some(holder.identity.as_str()),
        "lease holder after the takeover is {identity:?}"
    );
    ensure!(
        events
            .take()
            .iter()
            .any(|e| matches!(e, NodeEvent::LockTakenOver { previous }
            if previous.identity == "dead-host/4242/0badc0de" && previous.host == "dead-host")),
        "no LockTakenOver event naming the previous holder"
    );
    ensure!(
        leases.get_opt(&options.name).await?.is_none(),
        "lease left after release"
    );
    Ok(())
}

/// A live lock held by another run: refused; `break_lock` removes it and
/// names the holder it removed; then the lock can be taken.
pub async fn lock_break(client: &kube::Client) -> anyhow::Result<()> {
    let options = LockOptions::default();
    let events = Arc::new(RecordedEvents::default());
    break_lock(client, &options, events.as_ref()).await?;
    // Another run renewed the lock a moment ago (it may have died since).
    let other = "other-host/4242/1ive1ock";
    foreign_lease(
        client,
        &options,
        other,
        "other-host",
        Duration::from_secs(1),
    )
    .await?;
    let mut mine = LockHolder::current("1.30.4");
    mine.identity.push_str("-mine");
    match UpgradeLock::acquire(client, mine.clone(), options.clone(), events.clone()).await {
        Err(error @ Error::LockHeld { .. }) => {
            let message = error.to_string();
            ensure!(
                message.contains(other) && message.contains("--break-lock"),
                "refusal does not name the holder and --break-lock: {message}"
            );
        }
        other => anyhow::bail!("a live lock was not refused: {other:?}"),
    }
    let broken = break_lock(client, &options, events.as_ref()).await?;
    ensure!(
        broken.as_ref().map(|h| h.identity.as_str()) == Some(other),
        "break_lock reports {broken:?}"
    );
    let lock = UpgradeLock::acquire(client, mine, options, events.clone()).await?;
    lock.release().await?;
    ensure!(
        events.take().iter().any(
            |e| matches!(e, NodeEvent::LockBroken { previous: Some(p) } if p.identity == other)
        ),
        "no LockBroken event naming the holder"
    );
    Ok(())
}

/// `wait_ready` succeeds for a node that registers (and turns Ready with the
/// expected kubelet) only after the wait started; `register` makes that happen.
pub async fn wait_ready_late_node(
    client: &kube::Client,
    node: &NodeName,
    version: &str,
    timeout: Duration,
    register: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    ensure!(
        Api::<Node>::all(client.clone())
            .get_opt(node.as_str())
            .await?
            .is_none(),
        "{node} exists before the wait"
    );
    let events = RecordedEvents::default();
    let (outcome, registered) = tokio::join!(
        wait_ready(client, node, version, timeout, &events),
        register
    );
    registered?;
    let ready = outcome?;
    ensure!(
        super::ready::same_version(&ready.kubelet_version, version),
        "ready at {}",
        ready.kubelet_version
    );
    let events = events.take();
    ensure!(
        matches!(events.first(), Some(NodeEvent::WaitingReady { .. }))
            && matches!(events.last(), Some(NodeEvent::NodeReady { .. })),
        "events: {events:?}"
    );
    Ok(())
}

/// `wait_ready` for `node` that does not become Ready at `version` in time:
/// the error reports the node's last kubelet version and conditions.
/// `expect_ready` says what the last Ready condition status must be.
pub async fn wait_ready_timeout_reports_conditions(
    client: &kube::Client,
    node: &NodeName,
    version: &str,
    timeout: Duration,
    expect_ready: &str,
) -> anyhow::Result<()> {
    let events = RecordedEvents::default();
    match &wait_ready(client, node, version, timeout, &events).await {
        Err(error @ Error::NotReady { last, .. }) => {
            let message = error.to_string();
            let last = last.as_ref().context("no last status reported")?;
            let ready = last
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .context("no Ready condition reported")?;
            ensure!(
                ready.status == expect_ready,
                "last Ready is {}",
                ready.status
            );
            ensure!(
                message.contains(&format!("Ready={expect_ready}")) && message.contains(version),
                "the error does not report the conditions: {message}"
            );
            Ok(())
        }
        other => anyhow::bail!("wait_ready did not time out: {other:?}"),
    }
}

/// A pod that landed on the new node before the copy is evicted while the
/// new node is cordoned; the copy is written before the uncordon.
pub async fn copy_evicts_landed_pods(
    client: &kube::Client,
    old: &NodeName,
    new: &NodeName,
    namespace: &str,
) -> anyhow::Result<()> {
    let mut metadata = json!({"name": "landed-0", "labels": {"app": "landed"}});
    metadata["ownerReferences"] = replica_set_owner("landed-rs");
    create_raw_pod(client, new, namespace, metadata, json!({}), None).await?;
    wait_started(client, namespace, "landed-0").await?;
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(
            old.as_str(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"scenario.aksup.io/landed": "yes"}}})),
        )
        .await?;
    let events = RecordedEvents::default();
    let options = CopyOptions {
        drain: quick_drain(Duration::from_secs(60)),
        ..CopyOptions::default()
    };
    let outcome = copy_properties(client, old, new, &options, &events).await;
    let left = Api::<Pod>::namespaced(client.clone(), namespace)
        .get_opt("landed-0")
        .await?;
    delete_pods_now(client, namespace, &["landed-0"]).await;
    let result = outcome?;
    ensure!(
        left.is_none(),
        "landed-0 still on the new node after the copy"
    );
    ensure!(
        result.evicted_from_new.iter().any(|p| p.name == "landed-0"),
        "landed-0 not reported evicted: {result:?}"
    );
    let events = events.take();
    let at = |what: &str, test: &dyn Fn(&NodeEvent) -> bool| {
        events
            .iter()
            .position(test)
            .with_context(|| format!("no {what} event: {events:?}"))
    };
    let cordoned = at(
        "Cordoned(new)",
        &|e| matches!(e, NodeEvent::Cordoned { node } if node == new),
    )?;
    let evicted = at(
        "EvictionRequested(landed-0)",
        &|e| matches!(e, NodeEvent::EvictionRequested { pod, .. } if pod.name == "landed-0"),
    )?;
    let copied = at("PropertiesCopied", &|e| {
        matches!(e, NodeEvent::PropertiesCopied { .. })
    })?;
    let uncordoned = at(
        "Uncordoned(new)",
        &|e| matches!(e, NodeEvent::Uncordoned { node } if node == new),
    )?;
    ensure!(
        cordoned < evicted && evicted < copied && copied < uncordoned,
        "order: cordon {cordoned}, evict {evicted}, copy {copied}, uncordon {uncordoned}"
    );
    let after = node_state(client, new).await?;
    ensure!(!unschedulable(&after), "new node left cordoned");
    ensure!(
        after
            .metadata
            .labels
            .unwrap_or_default()
            .get("scenario.aksup.io/landed")
            .map(String::as_str)
            == Some("yes"),
        "label not copied"
    );
    Ok(())
}

/// `preserveNodesProperties: false`: nothing is copied, but the replaced node
/// is still recorded on the new node and the new node ends schedulable.
pub async fn copy_not_preserved(
    client: &kube::Client,
    old: &NodeName,
    new: &NodeName,
) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(
            old.as_str(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"scenario.aksup.io/kept-away": "yes"}}})),
        )
        .await?;
    let events = RecordedEvents::default();
    let options = CopyOptions {
        preserve: false,
        drain: quick_drain(Duration::from_secs(60)),
        ..CopyOptions::default()
    };
    let result = copy_properties(client, old, new, &options, &events).await?;
    ensure!(!result.preserved, "result says preserved");
    let after = node_state(client, new).await?;
    ensure!(!unschedulable(&after), "new node left cordoned");
    ensure!(
        !after
            .metadata
            .labels
            .unwrap_or_default()
            .contains_key("scenario.aksup.io/kept-away"),
        "a label was copied with preserveNodesProperties false"
    );
    ensure!(
        after
            .metadata
            .annotations
            .unwrap_or_default()
            .get(keys::REPLACED_NODE)
            .map(String::as_str)
            == Some(old.as_str()),
        "replaced node not recorded"
    );
    ensure!(
        events
            .take()
            .iter()
            .any(|e| matches!(e, NodeEvent::PropertiesNotPreserved { .. })),
        "no PropertiesNotPreserved event"
    );
    Ok(())
}
