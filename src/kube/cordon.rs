//! Cordon and uncordon, idempotent: the node is read first and patched only
//! when it must change. A node aksup cordons carries the annotation
//! [`keys::CORDONED_BY_AKSUP`]; uncordon clears only such nodes, so a node the
//! operator cordoned before the run stays cordoned. Patches carry the node's
//! `resourceVersion`, so a concurrent change answers 409 and the whole
//! read-check-patch is repeated (by status, in [`retry`]).

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::events::{NodeEvent, NodeEvents};
use super::retry::{self, RetryPolicy};
use super::{Error, NodeName, Result, keys};

/// What [`cordon`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CordonOutcome {
    /// aksup made the node unschedulable (and marked it as its own doing).
    Cordoned,
    /// The node was unschedulable already; `by_aksup` when aksup's mark is on it
    /// (a previous run), false when the operator cordoned it.
    AlreadyCordoned { by_aksup: bool },
    /// The node does not exist: nothing to cordon.
    NodeNotFound,
}

/// What [`uncordon`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UncordonOutcome {
    Uncordoned,
    /// The node was schedulable already.
    AlreadySchedulable,
    /// The node was cordoned, but not by aksup: left cordoned.
    KeptCordoned,
    NodeNotFound,
}

pub(crate) fn is_unschedulable(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|spec| spec.unschedulable)
        .unwrap_or(false)
}

pub(crate) fn has_annotation(node: &Node, key: &str) -> bool {
    node.metadata
        .annotations
        .as_ref()
        .is_some_and(|annotations| annotations.contains_key(key))
}

/// The merge patch that cordons a node read at `resource_version`.
pub fn cordon_patch(resource_version: Option<&str>) -> serde_json::Value {
    json!({
        "metadata": {
            "resourceVersion": resource_version,
            "annotations": { keys::CORDONED_BY_AKSUP: "true" },
        },
        "spec": { "unschedulable": true },
    })
}

/// The merge patch that uncordons a node read at `resource_version` and
/// removes aksup's mark.
pub fn uncordon_patch(resource_version: Option<&str>) -> serde_json::Value {
    json!({
        "metadata": {
            "resourceVersion": resource_version,
            "annotations": { keys::CORDONED_BY_AKSUP: null },
        },
        "spec": { "unschedulable": false },
    })
}

/// Makes `node` unschedulable unless it is already.
#[tracing::instrument(skip_all, fields(node = %node))]
pub async fn cordon(
    client: &kube::Client,
    node: &NodeName,
    policy: &RetryPolicy,
    events: &dyn NodeEvents,
) -> Result<CordonOutcome> {
    let nodes: Api<Node> = Api::all(client.clone());
    let outcome = retry::retry(policy, events, &format!("cordon {node}"), || async {
        let Some(current) = nodes.get_opt(node.as_str()).await? else {
            return Ok(CordonOutcome::NodeNotFound);
        };
        if is_unschedulable(&current) {
            return Ok(CordonOutcome::AlreadyCordoned {
                by_aksup: has_annotation(&current, keys::CORDONED_BY_AKSUP),
            });
        }
        let patch = cordon_patch(current.metadata.resource_version.as_deref());
        match nodes
            .patch(
                node.as_str(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(CordonOutcome::Cordoned),
            Err(err) if retry::is_not_found(&err) => Ok(CordonOutcome::NodeNotFound),
            Err(err) => Err(err),
        }
    })
    .await
    .map_err(|source| Error::Cordon {
        node: node.clone(),
        source: Box::new(source),
    })?;
    events.on_event(match outcome {
        CordonOutcome::Cordoned => NodeEvent::Cordoned { node: node.clone() },
        CordonOutcome::AlreadyCordoned { by_aksup } => NodeEvent::AlreadyCordoned {
            node: node.clone(),
            by_aksup,
        },
        CordonOutcome::NodeNotFound => NodeEvent::NodeNotFound { node: node.clone() },
    });
    Ok(outcome)
}

/// Makes `node` schedulable again, but only if aksup cordoned it.
#[tracing::instrument(skip_all, fields(node = %node))]
pub async fn uncordon(
    client: &kube::Client,
    node: &NodeName,
    policy: &RetryPolicy,
    events: &dyn NodeEvents,
) -> Result<UncordonOutcome> {
    let nodes: Api<Node> = Api::all(client.clone());
    let outcome = retry::retry(policy, events, &format!("uncordon {node}"), || async {
        let Some(current) = nodes.get_opt(node.as_str()).await? else {
            return Ok(UncordonOutcome::NodeNotFound);
        };
        let marked = has_annotation(&current, keys::CORDONED_BY_AKSUP);
        let outcome = match (is_unschedulable(&current), marked) {
            (true, false) => return Ok(UncordonOutcome::KeptCordoned),
            (false, false) => return Ok(UncordonOutcome::AlreadySchedulable),
            // A stale mark on a schedulable node is cleared with the same patch.
            (false, true) => UncordonOutcome::AlreadySchedulable,
            (true, true) => UncordonOutcome::Uncordoned,
        };
        let patch = uncordon_patch(current.metadata.resource_version.as_deref());
        match nodes
            .patch(
                node.as_str(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(outcome),
            Err(err) if retry::is_not_found(&err) => Ok(UncordonOutcome::NodeNotFound),
            Err(err) => Err(err),
        }
    })
    .await
    .map_err(|source| Error::Uncordon {
        node: node.clone(),
        source: Box::new(source),
    })?;
    match outcome {
        UncordonOutcome::Uncordoned => {
            events.on_event(NodeEvent::Uncordoned { node: node.clone() })
        }
        UncordonOutcome::KeptCordoned => {
            events.on_event(NodeEvent::KeptCordoned { node: node.clone() })
        }
        UncordonOutcome::NodeNotFound => {
            events.on_event(NodeEvent::NodeNotFound { node: node.clone() })
        }
        UncordonOutcome::AlreadySchedulable => {}
    }
    Ok(outcome)
}
