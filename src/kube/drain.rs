//! Drain a node with `kubectl drain` rules, PodDisruptionBudget-aware eviction
//! and a per-node total timeout. The operation returns a [`DrainResult`] and
//! reports progress as [`NodeEvent`]s; it never prints.
//!
//! Each round re-lists the node's pods (so pods that arrive late are handled),
//! classifies them with [`classify`], evicts what must go through `policy/v1`
//! Eviction (429 = a budget refuses: retried with backoff), deletes finished
//! pods, and waits until every pod asked to leave is gone from the node (no
//! longer listed, or listed with a new UID). When evictions are refused the
//! blocking pods and their budgets are reported.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{Eviction, PodDisruptionBudget};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ObjectMeta};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams, Preconditions};
use tokio::time::Instant;

use super::events::{NodeEvent, NodeEvents, SkipReason};
use super::retry::{self, Backoff, RetryPolicy};
use super::{Error, NodeName, Result, selector};

/// Default per-node drain timeout (aks-engine's effective `--cordon-drain-timeout`).
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// Default per-node drain timeout on Azure Stack Hub (as aks-engine).
pub const AZURE_STACK_DRAIN_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// The annotation the kubelet puts on the API mirror of a static pod.
pub const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// What to do when the drain timeout expires with pods left on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DrainTimeoutPolicy {
    /// Fail the step; the VM is left untouched (`--drain-timeout-policy fail`).
    #[default]
    Fail,
    /// Delete the remaining pods, bypassing their PodDisruptionBudgets
    /// (`--drain-timeout-policy force-delete`). The result says so.
    ForceDelete,
}

impl DrainTimeoutPolicy {
    /// The names the command line uses: `fail`, `force-delete`.
    pub const NAMES: [&'static str; 2] = ["fail", "force-delete"];

    pub fn name(self) -> &'static str {
        match self {
            Self::Fail => "fail",
            Self::ForceDelete => "force-delete",
        }
    }
}

impl std::fmt::Display for DrainTimeoutPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DrainTimeoutPolicy {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        match text {
            "fail" => Ok(Self::Fail),
            "force-delete" => Ok(Self::ForceDelete),
            other => Err(format!(
                "unknown drain timeout policy {other:?}: use fail or force-delete"
            )),
        }
    }
}

/// Options of [`drain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainOptions {
    /// Total time for the whole node (`--cordon-drain-timeout`).
    pub timeout: Duration,
    pub timeout_policy: DrainTimeoutPolicy,
    /// Evict pods with no controller and pods of a DaemonSet that no longer
    /// exists (`--allow-unreplicated-pods`); refused otherwise.
    pub allow_unreplicated: bool,
    /// Override of the pods' termination grace period, in seconds (`--grace-period`).
    pub grace_period: Option<i64>,
    /// First and largest delay between attempts when evictions are refused (429).
    pub eviction_backoff: (Duration, Duration),
    /// Delay between checks while waiting for evicted pods to be gone.
    pub poll_interval: Duration,
    /// Retries of single API calls (list, get, delete).
    pub retry: RetryPolicy,
}

impl Default for DrainOptions {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_DRAIN_TIMEOUT,
            timeout_policy: DrainTimeoutPolicy::Fail,
            allow_unreplicated: false,
            grace_period: None,
            eviction_backoff: (Duration::from_secs(1), Duration::from_secs(10)),
            poll_interval: Duration::from_secs(2),
            retry: RetryPolicy::default(),
        }
    }
}

impl DrainOptions {
    /// Defaults for a cluster: the timeout is 60 min on Azure Stack Hub, else 20 min.
    pub fn for_cluster(azure_stack: bool) -> Self {
        let timeout = if azure_stack {
            AZURE_STACK_DRAIN_TIMEOUT
        } else {
            DEFAULT_DRAIN_TIMEOUT
        };
        Self {
            timeout,
            ..Self::default()
        }
    }

    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    #[must_use]
    pub fn with_timeout_policy(mut self, policy: DrainTimeoutPolicy) -> Self {
        self.timeout_policy = policy;
        self
    }

    #[must_use]
    pub fn with_allow_unreplicated(mut self, allow: bool) -> Self {
        self.allow_unreplicated = allow;
        self
    }

    #[must_use]
    pub fn with_grace_period(mut self, seconds: Option<i64>) -> Self {
        self.grace_period = seconds;
        self
    }
}

/// A pod, by namespace, name and UID. Displays as `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl PodRef {
    pub fn of(pod: &Pod) -> Self {
        Self {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        }
    }

    fn key(&self) -> (String, String) {
        (self.namespace.clone(), self.name.clone())
    }
}

impl std::fmt::Display for PodRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A PodDisruptionBudget that covers a blocked pod, with its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockingPdb {
    pub namespace: String,
    pub name: String,
    pub disruptions_allowed: i32,
    pub current_healthy: i32,
    pub desired_healthy: i32,
    pub expected_pods: i32,
}

impl std::fmt::Display for BlockingPdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PodDisruptionBudget {}/{} (disruptionsAllowed {}, healthy {} of {} desired, {} expected)",
            self.namespace,
            self.name,
            self.disruptions_allowed,
            self.current_healthy,
            self.desired_healthy,
            self.expected_pods
        )
    }
}

/// A pod still on the node: why, and the budgets that cover it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedPod {
    pub pod: PodRef,
    /// What holds it: the API server's refusal message, or the wait for termination.
    pub reason: String,
    pub pdbs: Vec<BlockingPdb>,
}

impl std::fmt::Display for BlockedPod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.pod, self.reason)?;
        for pdb in &self.pdbs {
            write!(f, "; {pdb}")?;
        }
        Ok(())
    }
}

/// Why a pod is evicted although kubectl would hesitate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvictWarning {
    /// The pod uses emptyDir volumes: their data is lost (the VM is destroyed anyway).
    EmptyDir { volumes: Vec<String> },
    /// No controller will recreate the pod (allowed by `--allow-unreplicated-pods`).
    Unreplicated,
    /// Its DaemonSet no longer exists (allowed by `--allow-unreplicated-pods`).
    OrphanedDaemonSet { daemon_set: String },
}

/// The drain rule that applies to one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodAction {
    Skip(SkipReason),
    Evict {
        warnings: Vec<EvictWarning>,
    },
    /// A finished pod (phase Succeeded or Failed): deleted, no budget involved.
    DeleteFinished,
    /// Already terminating: waited for, not evicted again.
    WaitTerminating,
    /// The drain must not proceed: the reason says why and what to do.
    Refuse(String),
}

/// Applies `kubectl drain`'s rules to one pod. `daemon_set_exists(namespace,
/// name)` answers whether the pod's DaemonSet still exists.
pub fn classify(
    pod: &Pod,
    allow_unreplicated: bool,
    daemon_set_exists: &dyn Fn(&str, &str) -> bool,
) -> PodAction {
    let annotations = pod.metadata.annotations.as_ref();
    if annotations.is_some_and(|a| a.contains_key(MIRROR_POD_ANNOTATION)) {
        return PodAction::Skip(SkipReason::MirrorPod);
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return PodAction::WaitTerminating;
    }
    let controller = pod
        .metadata
        .owner_references
        .as_ref()
        .and_then(|owners| owners.iter().find(|owner| owner.controller == Some(true)));
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut warnings = Vec::new();
    if let Some(owner) = controller.filter(|owner| owner.kind == "DaemonSet") {
        if daemon_set_exists(namespace, &owner.name) {
            return PodAction::Skip(SkipReason::DaemonSet {
                daemon_set: owner.name.clone(),
            });
        }
        if !allow_unreplicated {
            return PodAction::Refuse(format!(
                "its DaemonSet {} no longer exists; pass --allow-unreplicated-pods to evict it",
                owner.name
            ));
        }
        warnings.push(EvictWarning::OrphanedDaemonSet {
            daemon_set: owner.name.clone(),
        });
    }
    let phase = pod
        .status
        .as_ref()
        .and_then(|status| status.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return PodAction::DeleteFinished;
    }
    if controller.is_none() {
        if !allow_unreplicated {
            return PodAction::Refuse(
                "no controller would recreate it; pass --allow-unreplicated-pods to evict it"
                    .to_owned(),
            );
        }
        warnings.push(EvictWarning::Unreplicated);
    }
    let empty_dirs: Vec<String> = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.volumes.as_ref())
        .map(|volumes| {
            volumes
                .iter()
                .filter(|v| v.empty_dir.is_some())
                .map(|v| v.name.clone())
                .collect()
        })
        .unwrap_or_default();
    if !empty_dirs.is_empty() {
        warnings.push(EvictWarning::EmptyDir {
            volumes: empty_dirs,
        });
    }
    PodAction::Evict { warnings }
}

/// What a drain did. `remaining` is empty when the node was drained.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DrainResult {
    pub node: String,
    /// Pods whose eviction the API accepted (gone unless listed in `remaining`).
    pub evicted: Vec<PodRef>,
    /// Of those, the pods that used emptyDir volumes (their data is lost).
    pub evicted_with_empty_dir: Vec<PodRef>,
    /// Of those, pods without a controller or with a vanished DaemonSet.
    pub evicted_unreplicated: Vec<PodRef>,
    /// Finished pods deleted.
    pub deleted_finished: Vec<PodRef>,
    pub skipped: Vec<(PodRef, SkipReason)>,
    /// Pods deleted after the timeout, bypassing their budgets.
    pub force_deleted: Vec<PodRef>,
    /// True when the timeout policy deleted pods bypassing PodDisruptionBudgets.
    pub pdbs_bypassed: bool,
    /// Pods still on the node when the drain stopped, with their blocking budgets.
    pub remaining: Vec<BlockedPod>,
    pub elapsed: Duration,
}

impl DrainResult {
    /// True when every pod left through eviction or deletion of a finished pod.
    pub fn completed(&self) -> bool {
        self.remaining.is_empty() && !self.pdbs_bypassed
    }
}

struct Drainer<'a> {
    client: &'a kube::Client,
    node: &'a NodeName,
    options: &'a DrainOptions,
    events: &'a dyn NodeEvents,
    pods: Api<Pod>,
    result: DrainResult,
    /// Pods asked to leave and not yet gone, by (namespace, name) → UID.
    leaving: BTreeMap<(String, String), PodRef>,
    /// Pods already reported (warnings, skips), so each is reported once.
    reported: BTreeSet<PodRef>,
    daemon_sets: BTreeMap<(String, String), bool>,
    /// Labels of the pods of the latest listing (to match budgets).
    labels: BTreeMap<PodRef, BTreeMap<String, String>>,
}

/// Drains `node`. Call [`super::cordon()`] first. Fails with
/// [`Error::DrainRefused`] when a pod must not be evicted, and with
/// [`Error::DrainTimedOut`] when the timeout expires under the `Fail` policy.
#[tracing::instrument(skip_all, fields(node = %node))]
pub async fn drain(
    client: &kube::Client,
    node: &NodeName,
    options: &DrainOptions,
    events: &dyn NodeEvents,
) -> Result<DrainResult> {
    let mut drainer = Drainer {
        client,
        node,
        options,
        events,
        pods: Api::all(client.clone()),
        result: DrainResult {
            node: node.to_string(),
            ..DrainResult::default()
        },
        leaving: BTreeMap::new(),
        reported: BTreeSet::new(),
        daemon_sets: BTreeMap::new(),
        labels: BTreeMap::new(),
    };
    drainer.run().await
}

impl Drainer<'_> {
    async fn run(&mut self) -> Result<DrainResult> {
        let start = Instant::now();
        let deadline = start + self.options.timeout;
        let (initial, max) = self.options.eviction_backoff;
        let mut backoff = Backoff::new(initial, max);
        self.events.on_event(NodeEvent::DrainStarted {
            node: self.node.clone(),
            timeout: self.options.timeout,
        });
        loop {
            let pods = self.list_pods().await?;
            let work = self.plan_round(&pods).await?;
            if work.is_empty() && self.leaving.is_empty() {
                self.result.remaining = Vec::new();
                self.result.elapsed = start.elapsed();
                self.events.on_event(NodeEvent::DrainFinished {
                    node: self.node.clone(),
                    evicted: self.result.evicted.len(),
                    elapsed: self.result.elapsed,
                });
                return Ok(std::mem::take(&mut self.result));
            }
            let now = Instant::now();
            if now >= deadline {
                return self.time_out(work, start).await;
            }
            let blocked = self.act(work).await?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let delay = if blocked.is_empty() {
                self.result.remaining = Vec::new();
                backoff.reset();
                self.options.poll_interval
            } else {
                self.events.on_event(NodeEvent::DrainBlocked {
                    node: self.node.clone(),
                    blocked: blocked.clone(),
                    elapsed: start.elapsed(),
                    remaining,
                });
                self.result.remaining = blocked;
                backoff.next_delay()
            };
            tokio::time::sleep(delay.min(remaining)).await;
        }
    }

    async fn list_pods(&self) -> Result<Vec<Pod>> {
        let params = ListParams::default().fields(&format!("spec.nodeName={}", self.node));
        let list = retry::retry(
            &self.options.retry,
            self.events,
            &format!("list pods of {}", self.node),
            || self.pods.list(&params),
        )
        .await
        .map_err(|source| Error::ListPods {
            node: self.node.clone(),
            source: Box::new(source),
        })?;
        let mut pods = list.items;
        pods.sort_by_key(|pod| PodRef::of(pod).key());
        Ok(pods)
    }

    async fn daemon_set_exists(&mut self, namespace: &str, name: &str) -> Result<bool> {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(exists) = self.daemon_sets.get(&key) {
            return Ok(*exists);
        }
        let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), namespace);
        let found = retry::retry(
            &self.options.retry,
            self.events,
            &format!("get DaemonSet {namespace}/{name}"),
            || api.get_opt(name),
        )
        .await
        .map_err(|source| Error::GetDaemonSet {
            node: self.node.clone(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source: Box::new(source),
        })?;
        self.daemon_sets.insert(key, found.is_some());
        Ok(found.is_some())
    }

    /// Notes the pods that are gone, classifies the others and returns the ones
    /// to act on. Refuses the whole drain if any pod must not be evicted.
    async fn plan_round(&mut self, pods: &[Pod]) -> Result<Vec<(PodRef, PodAction)>> {
        let present: BTreeSet<PodRef> = pods.iter().map(PodRef::of).collect();
        self.labels = pods
            .iter()
            .map(|pod| {
                (
                    PodRef::of(pod),
                    pod.metadata.labels.clone().unwrap_or_default(),
                )
            })
            .collect();
        let gone: Vec<PodRef> = self
            .leaving
            .values()
            .filter(|pod| !present.contains(*pod))
            .cloned()
            .collect();
        for pod in gone {
            self.leaving.remove(&pod.key());
            self.events.on_event(NodeEvent::PodGone {
                node: self.node.clone(),
                pod,
            });
        }
        let mut work = Vec::new();
        let mut refused = Vec::new();
        for pod in pods {
            let reference = PodRef::of(pod);
            if self.leaving.get(&reference.key()) == Some(&reference) {
                continue;
            }
            // A new UID under a known name is a new pod: it is handled afresh.
            self.leaving.remove(&reference.key());
            let mut lookups = BTreeMap::new();
            if let Some(owner) = pod
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|owner| owner.controller == Some(true) && owner.kind == "DaemonSet")
            {
                let exists = self
                    .daemon_set_exists(&reference.namespace, &owner.name)
                    .await?;
                lookups.insert((reference.namespace.clone(), owner.name.clone()), exists);
            }
            let exists = |namespace: &str, name: &str| {
                lookups
                    .get(&(namespace.to_owned(), name.to_owned()))
                    .copied()
                    .unwrap_or(false)
            };
            match classify(pod, self.options.allow_unreplicated, &exists) {
                PodAction::Skip(reason) => {
                    if self.reported.insert(reference.clone()) {
                        self.result
                            .skipped
                            .push((reference.clone(), reason.clone()));
                        self.events.on_event(NodeEvent::PodSkipped {
                            node: self.node.clone(),
                            pod: reference,
                            reason,
                        });
                    }
                }
                PodAction::Refuse(why) => refused.push((reference, why)),
                action => work.push((reference, action)),
            }
        }
        if !refused.is_empty() {
            return Err(Error::DrainRefused {
                node: self.node.clone(),
                refused,
            });
        }
        Ok(work)
    }

    /// Evicts or deletes each pod of `work`; returns the pods whose eviction a
    /// budget refused.
    async fn act(&mut self, work: Vec<(PodRef, PodAction)>) -> Result<Vec<BlockedPod>> {
        let mut blocked = Vec::new();
        let mut pdbs: BTreeMap<String, Vec<PodDisruptionBudget>> = BTreeMap::new();
        let mut empty_dir_pods = Vec::new();
        for (pod, action) in work {
            match action {
                PodAction::WaitTerminating => {
                    self.leaving.insert(pod.key(), pod);
                }
                PodAction::DeleteFinished => {
                    self.delete(&pod, None).await?;
                    self.result.deleted_finished.push(pod.clone());
                    self.events.on_event(NodeEvent::FinishedPodDeleted {
                        node: self.node.clone(),
                        pod: pod.clone(),
                    });
                    self.leaving.insert(pod.key(), pod);
                }
                PodAction::Evict { warnings } => match self.evict(&pod).await {
                    Ok(()) => {
                        self.note_evicted(&pod, &warnings, &mut empty_dir_pods);
                        self.leaving.insert(pod.key(), pod);
                    }
                    // 429: a budget refuses now. Other retryable answers (409,
                    // 5xx, such as a pod covered by two budgets) are retried the
                    // same way and reported the same way.
                    Err(err) if retry::is_retryable(&err) => {
                        let code = retry::status_of(&err).unwrap_or_default();
                        let reason = match &err {
                            kube::Error::Api(status) if !status.message.is_empty() => {
                                status.message.clone()
                            }
                            _ => format!("eviction refused ({code})"),
                        };
                        let covering = self.blocking_pdbs(&pod, &mut pdbs).await?;
                        blocked.push(BlockedPod {
                            pod,
                            reason,
                            pdbs: covering,
                        });
                    }
                    Err(source) => {
                        return Err(Error::Evict {
                            node: self.node.clone(),
                            pod,
                            source: Box::new(source),
                        });
                    }
                },
                PodAction::Skip(_) | PodAction::Refuse(_) => {}
            }
        }
        if !empty_dir_pods.is_empty() {
            self.events.on_event(NodeEvent::EmptyDirPodsEvicted {
                node: self.node.clone(),
                pods: empty_dir_pods,
            });
        }
        Ok(blocked)
    }

    fn note_evicted(
        &mut self,
        pod: &PodRef,
        warnings: &[EvictWarning],
        empty_dir_pods: &mut Vec<PodRef>,
    ) {
        self.result.evicted.push(pod.clone());
        for warning in warnings {
            match warning {
                EvictWarning::EmptyDir { .. } => {
                    self.result.evicted_with_empty_dir.push(pod.clone());
                    empty_dir_pods.push(pod.clone());
                }
                EvictWarning::Unreplicated => {
                    self.result.evicted_unreplicated.push(pod.clone());
                    self.events.on_event(NodeEvent::UnreplicatedPodEvicted {
                        node: self.node.clone(),
                        pod: pod.clone(),
                    });
                }
                EvictWarning::OrphanedDaemonSet { daemon_set } => {
                    self.result.evicted_unreplicated.push(pod.clone());
                    self.events
                        .on_event(NodeEvent::OrphanedDaemonSetPodEvicted {
                            node: self.node.clone(),
                            pod: pod.clone(),
                            daemon_set: daemon_set.clone(),
                        });
                }
            }
        }
        self.events.on_event(NodeEvent::EvictionRequested {
            node: self.node.clone(),
            pod: pod.clone(),
        });
    }

    /// Posts a policy/v1 Eviction; a pod already gone (404) counts as evicted.
    async fn evict(&self, pod: &PodRef) -> Result<(), kube::Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let body = eviction_body(pod, self.options.grace_period);
        match api
            .create_subresource::<_, serde_json::Value>(
                "eviction",
                &pod.name,
                &PostParams::default(),
                &body,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if retry::is_not_found(&err) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Deletes the pod with this UID (a newer pod of the same name is kept);
    /// a pod already gone counts as deleted.
    async fn delete(&self, pod: &PodRef, grace_period: Option<i64>) -> Result<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let params = DeleteParams {
            grace_period_seconds: grace_period.and_then(|g| u32::try_from(g).ok()),
            preconditions: (!pod.uid.is_empty()).then(|| Preconditions {
                uid: Some(pod.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let outcome = retry::retry(
            &self.options.retry,
            self.events,
            &format!("delete pod {pod}"),
            || async {
                match api.delete(&pod.name, &params).await {
                    Ok(_) => Ok(()),
                    Err(err) if retry::is_not_found(&err) => Ok(()),
                    Err(err) => Err(err),
                }
            },
        )
        .await;
        outcome.map_err(|source| Error::DeletePod {
            node: self.node.clone(),
            pod: pod.clone(),
            source: Box::new(source),
        })
    }

    async fn blocking_pdbs(
        &self,
        pod: &PodRef,
        cache: &mut BTreeMap<String, Vec<PodDisruptionBudget>>,
    ) -> Result<Vec<BlockingPdb>> {
        if !cache.contains_key(&pod.namespace) {
            let api: Api<PodDisruptionBudget> =
                Api::namespaced(self.client.clone(), &pod.namespace);
            let params = ListParams::default();
            let list = retry::retry(
                &self.options.retry,
                self.events,
                "list PodDisruptionBudgets",
                || api.list(&params),
            )
            .await
            .map_err(|source| Error::ListPdbs {
                node: self.node.clone(),
                namespace: pod.namespace.clone(),
                source: Box::new(source),
            })?;
            cache.insert(pod.namespace.clone(), list.items);
        }
        let labels = self.labels.get(pod).cloned().unwrap_or_default();
        let mut found: Vec<BlockingPdb> = cache
            .get(&pod.namespace)
            .into_iter()
            .flatten()
            .filter(|pdb| {
                pdb.spec
                    .as_ref()
                    .and_then(|spec| spec.selector.as_ref())
                    .is_some_and(|selector| selector::matches(selector, &labels))
            })
            .map(blocking_pdb)
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }

    async fn time_out(
        &mut self,
        work: Vec<(PodRef, PodAction)>,
        start: Instant,
    ) -> Result<DrainResult> {
        let previous: BTreeMap<PodRef, BlockedPod> = std::mem::take(&mut self.result.remaining)
            .into_iter()
            .map(|b| (b.pod.clone(), b))
            .collect();
        let mut remaining: Vec<BlockedPod> = work
            .into_iter()
            .map(|(pod, _)| pod)
            .chain(self.leaving.values().cloned())
            .map(|pod| {
                previous.get(&pod).cloned().unwrap_or(BlockedPod {
                    pod,
                    reason: "still terminating".to_owned(),
                    pdbs: Vec::new(),
                })
            })
            .collect();
        remaining.sort_by(|a, b| a.pod.cmp(&b.pod));
        remaining.dedup_by(|a, b| a.pod == b.pod);
        self.result.elapsed = start.elapsed();
        match self.options.timeout_policy {
            DrainTimeoutPolicy::Fail => {
                self.result.remaining = remaining;
                Err(Error::DrainTimedOut {
                    node: self.node.clone(),
                    timeout: self.options.timeout,
                    result: Box::new(std::mem::take(&mut self.result)),
                })
            }
            DrainTimeoutPolicy::ForceDelete => {
                self.events.on_event(NodeEvent::PdbBypassed {
                    node: self.node.clone(),
                    pods: remaining.clone(),
                });
                for blocked in &remaining {
                    self.delete(&blocked.pod, self.options.grace_period).await?;
                    self.result.force_deleted.push(blocked.pod.clone());
                }
                self.result.pdbs_bypassed = !remaining.is_empty();
                self.result.remaining = Vec::new();
                self.events.on_event(NodeEvent::DrainFinished {
                    node: self.node.clone(),
                    evicted: self.result.evicted.len(),
                    elapsed: self.result.elapsed,
                });
                Ok(std::mem::take(&mut self.result))
            }
        }
    }
}

/// The policy/v1 Eviction posted for `pod`, with the grace-period override in
/// its delete options. Sent with `create_subresource("eviction", …)`, which
/// serializes it as `{"apiVersion":"policy/v1","kind":"Eviction",
/// "deleteOptions":{…},"metadata":{…}}` (kube's `Api::evict` loses the options).
pub fn eviction_body(pod: &PodRef, grace_period: Option<i64>) -> Eviction {
    Eviction {
        metadata: ObjectMeta {
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            ..ObjectMeta::default()
        },
        delete_options: grace_period.map(|seconds| DeleteOptions {
            grace_period_seconds: Some(seconds),
            ..DeleteOptions::default()
        }),
    }
}

fn blocking_pdb(pdb: &PodDisruptionBudget) -> BlockingPdb {
    let status = pdb.status.clone().unwrap_or_default();
    BlockingPdb {
        namespace: pdb.metadata.namespace.clone().unwrap_or_default(),
        name: pdb.metadata.name.clone().unwrap_or_default(),
        disruptions_allowed: status.disruptions_allowed.unwrap_or(0),
        current_healthy: status.current_healthy.unwrap_or(0),
        desired_healthy: status.desired_healthy.unwrap_or(0),
        expected_pods: status.expected_pods.unwrap_or(0),
    }
}

/// What [`cordon_and_drain`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CordonDrainResult {
    pub cordon: super::CordonOutcome,
    /// `None` when the node does not exist (nothing to drain).
    pub drain: Option<DrainResult>,
}

/// Cordons `node`, then drains it (as `kubectl drain`). On a drain error the
/// node stays cordoned, with aksup's mark if aksup cordoned it, so a re-run
/// continues where this one stopped and a later uncordon clears it.
pub async fn cordon_and_drain(
    client: &kube::Client,
    node: &NodeName,
    options: &DrainOptions,
    events: &dyn NodeEvents,
) -> Result<CordonDrainResult> {
    let cordon = super::cordon(client, node, &options.retry, events).await?;
    if cordon == super::CordonOutcome::NodeNotFound {
        return Ok(CordonDrainResult {
            cordon,
            drain: None,
        });
    }
    let drain = drain(client, node, options, events).await?;
    Ok(CordonDrainResult {
        cordon,
        drain: Some(drain),
    })
}
