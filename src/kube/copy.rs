//! Copy an old node's custom properties onto the node that replaces it
//! (aks-engine's `preserveNodesProperties`): every label and annotation of the
//! old node whose key the new node lacks, with the old node's name replaced by
//! the new one in the values; the new node's taints replaced by the old node's.
//! Keys that the kubelet, the cloud provider, the network plugin or aksup
//! manage are never copied ([`is_managed_key`]). The new node is kept cordoned,
//! and pods that landed on it are evicted, until the copy is done; it records
//! which node it replaced ([`keys::REPLACED_NODE`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Taint};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::cordon::{self, CordonOutcome, UncordonOutcome};
use super::drain::{self, DrainOptions, PodRef};
use super::events::{NodeEvent, NodeEvents};
use super::retry::{self, RetryPolicy};
use super::{Error, NodeName, Result, keys};

/// Label and annotation keys never copied: they describe the machine, not the
/// operator's intent, and the kubelet / cloud provider / CSI drivers / network
/// plugin write the right value for the new node themselves.
pub const MANAGED_KEYS: &[&str] = &[
    // kubelet: identity and platform of the machine
    "kubernetes.io/hostname",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
    // cloud provider: VM size and placement
    "node.kubernetes.io/instance-type",
    "beta.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    // node lifecycle controller and attach/detach controller
    "node.alpha.kubernetes.io/ttl",
    "volumes.kubernetes.io/controller-managed-attach-detach",
    // CSI: per-node driver ids
    "csi.volume.kubernetes.io/nodeid",
    // kubeadm-style CRI socket
    "kubeadm.alpha.kubernetes.io/cri-socket",
    // kubectl's record of the last apply belongs to that object, not to a new one
    "kubectl.kubernetes.io/last-applied-configuration",
];

/// Key prefixes never copied (same reasons as [`MANAGED_KEYS`]).
pub const MANAGED_KEY_PREFIXES: &[&str] = &[
    // CSI drivers' topology labels (topology.disk.csi.azure.com/zone, ...)
    "topology.",
    // network plugins keep per-node addresses and state in annotations
    "projectcalico.org/",
    "flannel.alpha.coreos.com/",
    "io.cilium.",
    "network.cilium.io/",
    // aksup's own marks (cordoned, replaced-node)
    keys::AKSUP_PREFIX,
];

/// Taint keys never copied: the node lifecycle controller, the cloud provider
/// and the autoscaler set and clear them (an old node being drained carries
/// `node.kubernetes.io/unschedulable`, which must not follow it).
pub const MANAGED_TAINT_PREFIXES: &[&str] = &[
    "node.kubernetes.io/",
    "node.cloudprovider.kubernetes.io/",
    "ToBeDeletedByClusterAutoscaler",
    "DeletionCandidateOfClusterAutoscaler",
];

/// True for a label or annotation key that must never be copied.
pub fn is_managed_key(key: &str) -> bool {
    MANAGED_KEYS.contains(&key)
        || MANAGED_KEY_PREFIXES
            .iter()
            .any(|prefix| key.starts_with(prefix))
}

fn is_managed_taint(key: &str) -> bool {
    MANAGED_TAINT_PREFIXES
        .iter()
        .any(|prefix| key.starts_with(prefix))
}

/// What will be written on the new node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CopyPlan {
    /// Labels to add (keys the new node lacks), values with the name replaced.
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The complete new taint list: the new node's managed taints, then the
    /// old node's others.
    pub taints: Vec<Taint>,
    /// Keys of the old node left out because they are managed.
    pub excluded: Vec<String>,
}

/// Computes the copy from `old` to `new` (pure).
pub fn plan_copy(old: &Node, new: &Node) -> CopyPlan {
    let old_name = old.metadata.name.as_deref().unwrap_or_default();
    let new_name = new.metadata.name.as_deref().unwrap_or_default();
    let rename = |value: &str| {
        if old_name.is_empty() {
            value.to_owned()
        } else {
            value.replace(old_name, new_name)
        }
    };
    let mut plan = CopyPlan::default();
    let mut copy = |from: Option<&BTreeMap<String, String>>,
                    to: Option<&BTreeMap<String, String>>,
                    into: &mut BTreeMap<String, String>| {
        for (key, value) in from.into_iter().flatten() {
            if is_managed_key(key) {
                plan.excluded.push(key.clone());
            } else if !to.is_some_and(|existing| existing.contains_key(key)) {
                into.insert(key.clone(), rename(value));
            }
        }
    };
    let mut labels = BTreeMap::new();
    let mut annotations = BTreeMap::new();
    copy(
        old.metadata.labels.as_ref(),
        new.metadata.labels.as_ref(),
        &mut labels,
    );
    copy(
        old.metadata.annotations.as_ref(),
        new.metadata.annotations.as_ref(),
        &mut annotations,
    );
    plan.labels = labels;
    plan.annotations = annotations;
    plan.excluded.sort();
    plan.excluded.dedup();
    let taints_of = |node: &Node| {
        node.spec
            .as_ref()
            .and_then(|spec| spec.taints.clone())
            .unwrap_or_default()
    };
    plan.taints = taints_of(new)
        .into_iter()
        .filter(|taint| is_managed_taint(&taint.key))
        .chain(
            taints_of(old)
                .into_iter()
                .filter(|taint| !is_managed_taint(&taint.key))
                .map(|mut taint| {
                    taint.value = taint.value.as_deref().map(&rename);
                    taint
                }),
        )
        .collect();
    plan
}

/// Options of [`copy_properties`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOptions {
    /// The pool's `preserveNodesProperties` (default true). When false only the
    /// replaced-node record is written.
    pub preserve: bool,
    /// How pods that landed on the new node are evicted.
    pub drain: DrainOptions,
    pub retry: RetryPolicy,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            preserve: true,
            drain: DrainOptions::default(),
            retry: RetryPolicy::default(),
        }
    }
}

impl CopyOptions {
    /// Options for a node of `pool`: its `preserveNodesProperties` (default
    /// true), and the run's drain options for pods that landed on the new node.
    pub fn for_pool(pool: &crate::model::AgentPoolProfile, drain: DrainOptions) -> Self {
        Self {
            preserve: pool.preserve_nodes_properties(),
            retry: drain.retry.clone(),
            drain,
        }
    }
}

/// What [`copy_properties`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyResult {
    pub from: NodeName,
    pub to: NodeName,
    /// False when `preserveNodesProperties` was off.
    pub preserved: bool,
    /// True when a previous run had completed this copy: nothing was done.
    pub already_done: bool,
    pub plan: CopyPlan,
    /// Pods that had landed on the new node and were evicted before the copy.
    pub evicted_from_new: Vec<PodRef>,
    pub uncordon: UncordonOutcome,
}

/// Copies `old`'s properties to `new` and records that `new` replaced `old`.
/// Idempotent: a copy a previous run completed (recorded and uncordoned) is
/// left alone; one interrupted before the uncordon is finished; the node is
/// patched only when something changes.
#[tracing::instrument(skip_all, fields(from = %old, to = %new))]
pub async fn copy_properties(
    client: &kube::Client,
    old: &NodeName,
    new: &NodeName,
    options: &CopyOptions,
    events: &dyn NodeEvents,
) -> Result<CopyResult> {
    let nodes: Api<Node> = Api::all(client.clone());
    let current = nodes
        .get_opt(new.as_str())
        .await
        .map_err(|source| Error::GetNode {
            node: new.clone(),
            source: Box::new(source),
        })?
        .ok_or_else(|| Error::NodeNotFound { node: new.clone() })?;
    if recorded_replacement(&current) == Some(old.as_str()) && !cordon::is_unschedulable(&current) {
        // A previous run finished this copy (the record is written with the
        // copy, the uncordon comes last): do not cordon or evict again.
        events.on_event(NodeEvent::PropertiesAlreadyCopied {
            from: old.clone(),
            to: new.clone(),
        });
        return Ok(CopyResult {
            from: old.clone(),
            to: new.clone(),
            preserved: options.preserve,
            already_done: true,
            plan: CopyPlan::default(),
            evicted_from_new: Vec::new(),
            uncordon: UncordonOutcome::AlreadySchedulable,
        });
    }
    if cordon::cordon(client, new, &options.retry, events).await? == CordonOutcome::NodeNotFound {
        return Err(Error::NodeNotFound { node: new.clone() });
    }
    let drained = drain::drain(client, new, &options.drain, events).await?;
    let old_node = nodes
        .get_opt(old.as_str())
        .await
        .map_err(|source| Error::GetNode {
            node: old.clone(),
            source: Box::new(source),
        })?
        .ok_or_else(|| Error::NodeNotFound { node: old.clone() })?;
    let plan = retry::retry(
        &options.retry,
        events,
        &format!("copy properties to {new}"),
        || async {
            let new_node = nodes.get(new.as_str()).await?;
            let plan = if options.preserve {
                plan_copy(&old_node, &new_node)
            } else {
                CopyPlan::default()
            };
            let current_taints = new_node
                .spec
                .as_ref()
                .and_then(|spec| spec.taints.clone())
                .unwrap_or_default();
            let unchanged = plan.labels.is_empty()
                && plan.annotations.is_empty()
                && (!options.preserve || current_taints == plan.taints)
                && recorded_replacement(&new_node) == Some(old.as_str());
            if !unchanged {
                let patch = copy_patch(
                    &plan,
                    old,
                    new_node.metadata.resource_version.as_deref(),
                    options.preserve,
                );
                nodes
                    .patch(new.as_str(), &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            Ok(plan)
        },
    )
    .await
    .map_err(|source| Error::CopyProperties {
        from: old.clone(),
        to: new.clone(),
        source: Box::new(source),
    })?;
    if options.preserve {
        events.on_event(NodeEvent::PropertiesCopied {
            from: old.clone(),
            to: new.clone(),
            labels: plan.labels.len(),
            annotations: plan.annotations.len(),
            taints: plan.taints.len(),
        });
    } else {
        events.on_event(NodeEvent::PropertiesNotPreserved {
            from: old.clone(),
            to: new.clone(),
        });
    }
    let uncordon = cordon::uncordon(client, new, &options.retry, events).await?;
    Ok(CopyResult {
        from: old.clone(),
        to: new.clone(),
        preserved: options.preserve,
        already_done: false,
        plan,
        evicted_from_new: drained.evicted,
        uncordon,
    })
}

/// The merge patch applying `plan` to the new node read at `resource_version`.
pub fn copy_patch(
    plan: &CopyPlan,
    old: &NodeName,
    resource_version: Option<&str>,
    preserve: bool,
) -> serde_json::Value {
    let mut annotations: serde_json::Map<String, serde_json::Value> = plan
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    annotations.insert(keys::REPLACED_NODE.to_owned(), json!(old.as_str()));
    let mut patch = json!({
        "metadata": {
            "resourceVersion": resource_version,
            "annotations": annotations,
        }
    });
    if preserve {
        patch["metadata"]["labels"] = json!(plan.labels);
        patch["spec"] = json!({ "taints": plan.taints });
    }
    patch
}

/// The node that `node` replaced, as recorded by [`copy_properties`]
/// ([`keys::REPLACED_NODE`]); `None` when not recorded or the node is gone.
pub async fn replaced_node_of(client: &kube::Client, node: &NodeName) -> Result<Option<NodeName>> {
    let nodes: Api<Node> = Api::all(client.clone());
    let found = nodes
        .get_opt(node.as_str())
        .await
        .map_err(|source| Error::GetNode {
            node: node.clone(),
            source: Box::new(source),
        })?;
    Ok(found
        .and_then(|n| n.metadata.annotations)
        .and_then(|mut annotations| annotations.remove(keys::REPLACED_NODE))
        .filter(|name| !name.is_empty())
        .map(NodeName::new))
}

fn recorded_replacement(node: &Node) -> Option<&str> {
    node.metadata
        .annotations
        .as_ref()?
        .get(keys::REPLACED_NODE)
        .map(String::as_str)
}
