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
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::copy::{CopyOptions, copy_properties};
use super::cordon::{CordonOutcome, UncordonOutcome, cordon, uncordon};
use super::drain::{DrainOptions, DrainTimeoutPolicy, drain};
use super::events::{NodeEvent, RecordedEvents};
use super::lock::{LockHolder, LockOptions, UpgradeLock, break_lock};
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
    match outcome {
        Err(Error::DrainTimedOut { result, .. }) => {
            let blocked = result
                .remaining
                .iter()
                .find(|b| b.pod.name == "blocked-0")
                .context("pod not reported")?;
            ensure!(
                blocked.pdbs.iter().any(|p| p.name == "blocked-pdb"),
                "budget not reported: {blocked}"
            );
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
    remove_workload(client, namespace, "forced").await;
    let result = outcome?;
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
            .any(|e| matches!(e, NodeEvent::PdbBypassed { .. })),
        "no PdbBypassed event"
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
