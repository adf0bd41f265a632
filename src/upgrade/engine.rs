//! The engine: observe → decide → execute one step → observe again.
//!
//! Every decision comes from [`plan::next_step`] over a fresh observation, so a
//! run resumed after a failure or a kill takes exactly the path an
//! uninterrupted run would. The engine holds the cluster's upgrade lock for the
//! whole run, stops at the next safe point when asked to, and writes the
//! apimodel back only after success.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use semver::Version;
use tokio::time::Instant;

use super::adjust::{self, Adjustment};
use super::observe;
use super::plan::{self, Action, Decision, Goal, Plan, Refusal, Step};
use super::state::{ClusterState, DrainBlocker};
use crate::arm::{self, ArmClient, DeploymentRequest, LroOptions};
use crate::kube::{self as nodes, NodeEvent, NodeEvents, NodeName};
use crate::model::{self, ApiModel};
use crate::names::{PoolKind, VmName};
use crate::report::{self, Event, NodeSummary, Outcome, Reporter};
use crate::template::{self, NodeTemplateInput};

/// Node annotation naming the NIC(s) and OS disk of a VM being deleted, written
/// before the VM is deleted and removed once they are gone too: a run killed in
/// between leaves the names where the next run finds them (an OS disk's name
/// cannot be derived, and a NIC of an index not recreated is never reused).
const LEFTOVERS: &str = "aksup.io/leftovers";

/// Everything an upgrade needs besides its clients.
#[derive(Debug, Clone)]
pub struct UpgradeOptions {
    pub resource_group: String,
    pub location: String,
    pub target: Version,
    pub force: bool,
    pub control_plane_only: bool,
    /// Per VM: deployment plus wait Ready (`--vm-timeout`).
    pub vm_timeout: Duration,
    pub drain: nodes::DrainOptions,
    pub adjustments: Vec<Adjustment>,
    /// Where the apimodel is written back after success (`None`: not written).
    pub api_model_path: Option<PathBuf>,
    pub dry_run: bool,
    /// The lock's lease timings.
    pub lock: nodes::LockOptions,
    /// How often to poll ARM long-running operations when they give no Retry-After.
    pub lro_interval: Duration,
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot observe the cluster")]
    Observe(#[from] observe::Error),
    #[error("{0}")]
    Refused(Refusal),
    #[error("{doing}")]
    Arm {
        doing: String,
        #[source]
        source: Box<arm::Error>,
    },
    #[error("{doing}")]
    Kube {
        doing: String,
        #[source]
        source: Box<nodes::Error>,
    },
    #[error("cannot render the ARM template of {vm}")]
    Template {
        vm: String,
        #[source]
        source: template::Error,
    },
    #[error(
        "draining {node} did not finish, so its VM was left untouched: {}",
        remaining.join("; ")
    )]
    DrainIncomplete {
        node: NodeName,
        remaining: Vec<String>,
    },
    #[error("Node {node} was not ready within {}{}", report::format_duration(*timeout), if *deleted { "; its new VM was deleted so that a re-run does not lose capacity" } else { "" })]
    NotReady {
        node: NodeName,
        timeout: Duration,
        deleted: bool,
        #[source]
        source: Box<nodes::Error>,
    },
    #[error("the Kubernetes API did not answer within {}", report::format_duration(*timeout))]
    ApiUnreachable {
        timeout: Duration,
        #[source]
        source: kube::Error,
    },
    #[error("stopped on request after {steps} step(s); run the same command again to resume")]
    Interrupted { steps: usize },
    #[error(
        "step \"{step}\" was decided {times} times in a row without changing the cluster; stopping to avoid a loop"
    )]
    NoProgress { step: String, times: usize },
    #[error("the upgrade finished but the api model could not be written back")]
    SaveModel(#[source] model::Error),
}

impl Error {
    /// Refusals (a gate, the lock held by another run) exit with 1; failures with 2.
    pub fn is_refusal(&self) -> bool {
        match self {
            Error::Refused(_) => true,
            Error::Kube { source, .. } => matches!(**source, nodes::Error::LockHeld { .. }),
            _ => false,
        }
    }

    /// What to look at next.
    pub fn hints(&self) -> Vec<String> {
        match self {
            Error::NotReady { node, .. } => vec![format!(
                "look at the node's kubelet log (journalctl -u kubelet on {node}) and the VM's boot diagnostics; then run the same command again"
            )],
            Error::DrainIncomplete { .. } => vec![
                "the blocking pods and their PodDisruptionBudgets are listed above; scale the workload or relax the budget, then run the same command again".into(),
                "or raise --cordon-drain-timeout; --drain-timeout-policy force-delete bypasses the budgets (loudly)".into(),
            ],
            Error::Kube { source, .. } if matches!(**source, nodes::Error::LockHeld { .. }) => vec![
                "another aksup run holds the cluster's upgrade lock; wait for it, or if it is dead, run with --break-lock".into(),
            ],
            Error::Interrupted { .. } | Error::Arm { .. } | Error::Kube { .. } => {
                vec!["nothing is lost: a re-run observes the cluster and resumes from where this run stopped".into()]
            }
            _ => Vec::new(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a run did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub plan: Plan,
    /// The preflight gates of the first observation, with their results.
    pub gates: Vec<plan::GateResult>,
    pub nodes: Vec<NodeSummary>,
    pub steps_done: usize,
    pub final_state: Option<ClusterState>,
}

/// A handle to ask a running upgrade to stop at the next safe point.
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Forwards node-operation events to the run's reporter.
struct EventBridge(Arc<dyn Reporter>);

impl NodeEvents for EventBridge {
    fn on_event(&self, event: NodeEvent) {
        let out = match &event {
            NodeEvent::DrainBlocked { node, blocked, .. }
            | NodeEvent::PdbBypassed {
                node,
                pods: blocked,
            } => Event::DrainBlocked {
                node: node.to_string(),
                pods: blocked.iter().flat_map(blocked_pods).collect(),
            },
            _ => match event.severity() {
                nodes::events::Severity::Debug => return,
                nodes::events::Severity::Warning => Event::Warning {
                    message: event.to_string(),
                },
                nodes::events::Severity::Info => Event::Progress {
                    subject: String::new(),
                    message: event.to_string(),
                },
            },
        };
        self.0.report(&out);
    }
}

fn blocked_pods(blocked: &nodes::BlockedPod) -> Vec<report::BlockedPod> {
    if blocked.pdbs.is_empty() {
        return vec![report::BlockedPod {
            namespace: blocked.pod.namespace.clone(),
            pod: blocked.pod.name.clone(),
            pdb: None,
            disruptions_allowed: None,
            current_healthy: None,
            desired_healthy: None,
        }];
    }
    blocked
        .pdbs
        .iter()
        .map(|pdb| report::BlockedPod {
            namespace: blocked.pod.namespace.clone(),
            pod: blocked.pod.name.clone(),
            pdb: Some(pdb.name.clone()),
            disruptions_allowed: Some(pdb.disruptions_allowed),
            current_healthy: Some(pdb.current_healthy),
            desired_healthy: Some(pdb.desired_healthy),
        })
        .collect()
}

/// One upgrade of one cluster.
pub struct Engine {
    arm: ArmClient,
    kube: kube::Client,
    model: ApiModel,
    options: UpgradeOptions,
    reporter: Arc<dyn Reporter>,
    bridge: Arc<EventBridge>,
    stop: StopFlag,
    missing_images: Option<Vec<template::MarketplaceImage>>,
    /// The last observation found the Kubernetes API down with a master VM
    /// missing (a single-master cluster killed while its master was replaced).
    api_down: bool,
}

impl Engine {
    pub fn new(
        arm: ArmClient,
        kube: kube::Client,
        model: ApiModel,
        options: UpgradeOptions,
        reporter: Arc<dyn Reporter>,
        stop: StopFlag,
    ) -> Self {
        Self {
            bridge: Arc::new(EventBridge(reporter.clone())),
            arm,
            kube,
            model,
            options,
            reporter,
            stop,
            missing_images: None,
            api_down: false,
        }
    }

    fn lro(&self, timeout: Duration) -> LroOptions {
        LroOptions::default()
            .with_timeout(timeout)
            .with_interval(self.options.lro_interval)
    }

    /// The model the new VMs are rendered from: adjusted, at the target version.
    fn target_model(&self) -> Result<ApiModel> {
        let mut model = self.model.clone();
        adjust::apply(&mut model, &self.options.adjustments).map_err(Error::SaveModel)?;
        Ok(model)
    }

    /// Observes ARM and Kubernetes.
    pub async fn observe(&mut self) -> Result<ClusterState> {
        let vms = self
            .arm
            .list_vms(&self.options.resource_group)
            .await
            .map_err(|source| Error::Arm {
                doing: format!(
                    "listing the VMs of resource group {}",
                    self.options.resource_group
                ),
                source: Box::new(source),
            })?;
        let nodes = self.list_nodes_unless_masterless(&vms).await?;
        let mut state = observe::build_state(self.model.view(), &vms, &nodes)?;
        state.missing_images = self.missing_images().await?;
        Ok(state)
    }

    /// Lists nodes. When the API does not answer and a master VM is missing, no
    /// one else can bring it back: the API stays down until aksup recreates
    /// that master, so the nodes are taken as unknown (empty) instead of
    /// waiting; otherwise waits as [`Engine::list_nodes`] does.
    async fn list_nodes_unless_masterless(
        &mut self,
        vms: &[arm::VirtualMachine],
    ) -> Result<Vec<Node>> {
        let api: Api<Node> = Api::all(self.kube.clone());
        match api.list(&ListParams::default()).await {
            Ok(list) => {
                self.api_down = false;
                return Ok(list.items);
            }
            Err(kube::Error::Api(status)) if status.code == 401 || status.code == 403 => {}
            Err(err) => {
                let without_nodes = observe::build_state(self.model.view(), vms, &[])?;
                let master_missing = without_nodes.masters().is_some_and(|masters| {
                    (0..masters.count).any(|index| masters.vm_at(index).is_none())
                });
                if master_missing {
                    self.api_down = true;
                    self.reporter.report(&Event::Warning {
                        message: format!(
                            "the Kubernetes API does not answer ({err}) and a master VM is missing: the master is recreated first"
                        ),
                    });
                    return Ok(Vec::new());
                }
            }
        }
        self.api_down = false;
        self.list_nodes().await
    }

    /// Lists nodes, waiting up to the VM timeout while the API does not answer
    /// (a single-master cluster has no API while its master is replaced).
    async fn list_nodes(&self) -> Result<Vec<Node>> {
        let api: Api<Node> = Api::all(self.kube.clone());
        let deadline = Instant::now() + self.options.vm_timeout;
        let mut delay = Duration::from_millis(200);
        loop {
            match api.list(&ListParams::default()).await {
                Ok(list) => return Ok(list.items),
                Err(err)
                    if Instant::now() < deadline
                        && !matches!(err, kube::Error::Api(ref status) if status.code == 401 || status.code == 403) =>
                {
                    self.reporter.report(&Event::Progress {
                        subject: "kubernetes".into(),
                        message: format!("waiting for the Kubernetes API: {err}"),
                    });
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
                Err(source) => {
                    return Err(Error::ApiUnreachable {
                        timeout: self.options.vm_timeout,
                        source,
                    });
                }
            }
        }
    }

    async fn missing_images(&mut self) -> Result<Vec<template::MarketplaceImage>> {
        if let Some(known) = &self.missing_images {
            return Ok(known.clone());
        }
        let model = self.target_model()?;
        let required =
            template::required_marketplace_images(model.view(), self.arm.subscription_id())
                .map_err(|source| Error::Template {
                    vm: "the cluster".into(),
                    source,
                })?;
        let mut missing = Vec::new();
        for image in required {
            match self
                .arm
                .get_image_version(
                    &self.options.location,
                    &image.publisher,
                    &image.offer,
                    &image.sku,
                    &image.version,
                )
                .await
            {
                Ok(_) => {}
                Err(err) if err.is_not_found() => missing.push(image),
                Err(source) => {
                    return Err(Error::Arm {
                        doing: format!(
                            "checking that image {}:{}:{}:{} exists",
                            image.publisher, image.offer, image.sku, image.version
                        ),
                        source: Box::new(source),
                    });
                }
            }
        }
        self.missing_images = Some(missing.clone());
        Ok(missing)
    }

    /// Which pods a drain could not evict now, per node (for the plan's warnings).
    async fn drain_blockers(&self, state: &mut ClusterState) -> Result<()> {
        let pdbs: Api<PodDisruptionBudget> = Api::all(self.kube.clone());
        let pods: Api<Pod> = Api::all(self.kube.clone());
        let kube_err = |doing: &str| {
            let doing = doing.to_owned();
            move |source: kube::Error| Error::Kube {
                doing,
                source: Box::new(nodes::Error::Client(Box::new(source))),
            }
        };
        let budgets = pdbs
            .list(&ListParams::default())
            .await
            .map_err(kube_err("listing PodDisruptionBudgets"))?
            .items;
        let blocked: Vec<&PodDisruptionBudget> = budgets
            .iter()
            .filter(|pdb| {
                pdb.status
                    .as_ref()
                    .is_some_and(|s| s.disruptions_allowed.unwrap_or(0) <= 0)
            })
            .collect();
        if blocked.is_empty() {
            return Ok(());
        }
        for pod in pods
            .list(&ListParams::default())
            .await
            .map_err(kube_err("listing pods"))?
            .items
        {
            let (Some(node), Some(namespace)) = (
                pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                pod.metadata.namespace.clone(),
            ) else {
                continue;
            };
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            for pdb in &blocked {
                let same_namespace = pdb.metadata.namespace.as_deref() == Some(namespace.as_str());
                let selected = pdb
                    .spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .is_some_and(|selector| nodes::selector::matches(selector, &labels));
                if same_namespace && selected {
                    let status = pdb.status.clone().unwrap_or_default();
                    state
                        .drain_blockers
                        .entry(NodeName::new(node.clone()))
                        .or_default()
                        .push(DrainBlocker {
                            pod: format!(
                                "{namespace}/{}",
                                pod.metadata.name.clone().unwrap_or_default()
                            ),
                            pdb: pdb.metadata.name.clone().unwrap_or_default(),
                            disruptions_allowed: status.disruptions_allowed.unwrap_or(0),
                            current_healthy: status.current_healthy.unwrap_or(0),
                            desired_healthy: status.desired_healthy.unwrap_or(0),
                        });
                }
            }
        }
        Ok(())
    }

    /// The goal of this run; `--force` resumes the forced run the VM tags show
    /// unfinished, or starts a new one.
    fn goal(&self, state: &ClusterState) -> Goal {
        let mut goal = Goal::new(self.options.target.clone());
        goal.control_plane_only = self.options.control_plane_only;
        if self.options.force {
            let runs: Vec<Option<&str>> = state
                .pools
                .iter()
                .flat_map(|p| &p.vms)
                .map(|vm| vm.run.as_deref())
                .collect();
            let unfinished = runs
                .iter()
                .flatten()
                .find(|run| runs.iter().any(|other| other != &Some(**run)));
            goal.force_run = Some(match unfinished {
                Some(run) => (*run).to_owned(),
                None => format!(
                    "force-{}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0)
                ),
            });
        }
        goal
    }

    /// Computes the plan without changing anything.
    pub async fn plan(&mut self) -> Result<(ClusterState, Goal, Plan)> {
        let mut state = self.observe().await?;
        if !self.api_down {
            self.drain_blockers(&mut state).await?;
        }
        let goal = self.goal(&state);
        let plan = plan::plan(&state, &goal);
        Ok((state, goal, plan))
    }

    /// Runs the upgrade to the end (or plans it with `dry_run`).
    pub async fn run(&mut self) -> Result<Summary> {
        let (state, goal, first_plan) = self.plan().await?;
        let current = state
            .masters()
            .and_then(|m| m.vms.iter().filter_map(|vm| vm.version()).min().cloned())
            .map_or_else(
                || self.model.view().orchestrator_version().to_owned(),
                |v| v.to_string(),
            );
        self.reporter.report(&Event::RunStarted {
            current,
            target: self.options.target.to_string(),
            resource_group: self.options.resource_group.clone(),
            dry_run: self.options.dry_run,
        });
        self.reporter.report(&Event::Plan {
            steps: first_plan.steps.len(),
            plan: serde_json::to_value(&first_plan).unwrap_or_default(),
        });
        for warning in &first_plan.warnings {
            self.reporter.report(&Event::Warning {
                message: warning.clone(),
            });
        }
        let mut summary = Summary {
            plan: first_plan.clone(),
            gates: plan::gates(&state, &goal),
            nodes: Vec::new(),
            steps_done: 0,
            final_state: None,
        };
        if self.options.dry_run {
            // The caller shows the plan with its gates; a refusal is in `plan.refusal`.
            return Ok(summary);
        }
        // A single-master cluster killed while its master was replaced has no
        // API, hence no lock to take: bring the master back first.
        let mut state = state;
        while self.api_down {
            let Decision::Next(step) = plan::next_step(&state, &goal) else {
                break;
            };
            if !matches!(step.action, Action::RecreateMaster { .. }) {
                break;
            }
            self.reporter.report(&Event::StepStarted {
                number: summary.steps_done + 1,
                estimated_total: first_plan.steps.len().max(summary.steps_done + 1),
                action: step.action.verb().into(),
                subject: step.action.subject(),
                reason: step.reason.clone(),
            });
            let started = Instant::now();
            let result = self.execute(&state, &goal, &step).await;
            self.reporter.report(&Event::StepFinished {
                number: summary.steps_done + 1,
                action: step.action.verb().into(),
                subject: step.action.subject(),
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                outcome: if result.is_ok() {
                    Outcome::Success
                } else {
                    Outcome::Failed
                },
            });
            result?;
            summary.steps_done += 1;
            state = self.observe().await?;
        }
        // Gates that need the first observation (drain blockers are looked up only
        // now): a refusal here happens before anything is changed.
        if let Decision::Refuse(refusal) = plan::next_step(&state, &goal) {
            return Err(Error::Refused(refusal));
        }
        let holder = nodes::LockHolder::current(&self.options.target.to_string());
        let lock = nodes::UpgradeLock::acquire(
            &self.kube,
            holder,
            self.options.lock.clone(),
            self.bridge.clone(),
        )
        .await
        .map_err(|source| Error::Kube {
            doing: "taking the cluster's upgrade lock".into(),
            source: Box::new(source),
        })?;
        let result = self.walk(&goal, &first_plan, &lock, &mut summary).await;
        let released = lock.release().await;
        result?;
        released.map_err(|source| Error::Kube {
            doing: "releasing the upgrade lock".into(),
            source: Box::new(source),
        })?;
        if let Some(path) = self.options.api_model_path.clone() {
            let mut model = self.target_model()?;
            let target = &self.options.target;
            model
                .set(
                    "/properties/orchestratorProfile/orchestratorVersion",
                    serde_json::Value::from(target.to_string()),
                )
                .and_then(|()| {
                    model.set(
                        "/properties/orchestratorProfile/orchestratorRelease",
                        serde_json::Value::from(format!("{}.{}", target.major, target.minor)),
                    )
                })
                .and_then(|()| model.save(&path))
                .map_err(Error::SaveModel)?;
            self.model = model;
        }
        Ok(summary)
    }

    async fn walk(
        &mut self,
        goal: &Goal,
        first: &Plan,
        lock: &nodes::UpgradeLock,
        summary: &mut Summary,
    ) -> Result<()> {
        let mut last: Option<(Action, usize)> = None;
        loop {
            if self.stop.requested() {
                return Err(Error::Interrupted {
                    steps: summary.steps_done,
                });
            }
            lock.check().map_err(|source| Error::Kube {
                doing: "checking the upgrade lock".into(),
                source: Box::new(source),
            })?;
            let state = self.observe().await?;
            let step = match plan::next_step(&state, goal) {
                Decision::Done => {
                    summary.final_state = Some(state);
                    return Ok(());
                }
                Decision::Refuse(refusal) => return Err(Error::Refused(refusal)),
                Decision::Next(step) => step,
            };
            let times = match &last {
                Some((action, times)) if *action == step.action => times + 1,
                _ => 1,
            };
            if times > 3 {
                return Err(Error::NoProgress {
                    step: format!("{} {}", step.action.verb(), step.action.subject()),
                    times,
                });
            }
            last = Some((step.action.clone(), times));
            let number = summary.steps_done + 1;
            let estimated_total = first.steps.len().max(number);
            self.reporter.report(&Event::StepStarted {
                number,
                estimated_total,
                action: step.action.verb().into(),
                subject: step.action.subject(),
                reason: step.reason.clone(),
            });
            let started = Instant::now();
            let from = match step.action {
                Action::CreateAgent { .. } | Action::RecreateMaster { .. } => {
                    Some("new".to_owned())
                }
                _ => version_of(&state, &step),
            };
            let result = self.execute(&state, goal, &step).await;
            let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let outcome = if result.is_ok() {
                Outcome::Success
            } else {
                Outcome::Failed
            };
            self.reporter.report(&Event::StepFinished {
                number,
                action: step.action.verb().into(),
                subject: step.action.subject(),
                duration_ms,
                outcome,
            });
            if matches!(
                step.action,
                Action::ReplaceMaster { .. }
                    | Action::RecreateMaster { .. }
                    | Action::CreateAgent { .. }
                    | Action::ReplaceAgent { .. }
            ) {
                summary.nodes.push(NodeSummary {
                    node: step.action.subject(),
                    from,
                    to: match step.action {
                        Action::ReplaceAgent { .. } => "removed".into(),
                        _ => self.options.target.to_string(),
                    },
                    duration_ms,
                    outcome,
                });
            }
            result?;
            summary.steps_done += 1;
        }
    }

    async fn execute(&self, state: &ClusterState, goal: &Goal, step: &Step) -> Result<()> {
        match &step.action {
            Action::RecreateMaster { index, vm } => {
                self.deploy(&PoolKind::Master, *index, goal, state).await?;
                self.wait_ready(&PoolKind::Master, vm).await?;
                self.clear_leftovers(&vm.node_name()).await?;
                self.uncordon(&vm.node_name()).await
            }
            Action::ReplaceMaster { index, vm } => {
                let node = vm.node_name();
                self.cordon_and_drain(&node).await?;
                self.delete_vm(&PoolKind::Master, *index, vm, state).await?;
                self.deploy(&PoolKind::Master, *index, goal, state).await?;
                self.wait_ready(&PoolKind::Master, vm).await?;
                self.clear_leftovers(&node).await?;
                self.uncordon(&node).await
            }
            Action::WaitReady { index, vm, .. } => {
                let kind = pool_kind(state, &step.action);
                self.wait_ready_or_remove(&kind, *index, vm, state).await
            }
            Action::Uncordon { node } => self.uncordon(node).await,
            Action::DeleteFailedVm { index, vm, .. } => {
                let kind = pool_kind(state, &step.action);
                self.delete_vm(&kind, *index, vm, state).await
            }
            Action::DeleteOrphanNode { node } => {
                self.delete_leftovers(node).await?;
                self.delete_node(node).await
            }
            Action::CreateAgent { index, vm, .. } => {
                let kind = pool_kind(state, &step.action);
                self.deploy(&kind, *index, goal, state).await?;
                self.wait_ready_or_remove(&kind, *index, vm, state).await
            }
            Action::ReplaceAgent {
                index,
                vm,
                node,
                replacement,
                ..
            } => {
                let kind = pool_kind(state, &step.action);
                if let Some(new_node) = replacement {
                    self.copy_properties(&kind, node, new_node).await?;
                }
                self.cordon_and_drain(node).await?;
                self.delete_vm(&kind, *index, vm, state).await?;
                self.delete_node(node).await
            }
        }
    }

    async fn cordon_and_drain(&self, node: &NodeName) -> Result<()> {
        let result =
            nodes::cordon_and_drain(&self.kube, node, &self.options.drain, self.bridge.as_ref())
                .await
                .map_err(|source| match source {
                    nodes::Error::DrainTimedOut { result, .. } => Error::DrainIncomplete {
                        node: node.clone(),
                        remaining: result.remaining.iter().map(ToString::to_string).collect(),
                    },
                    source => Error::Kube {
                        doing: format!("draining {node}"),
                        source: Box::new(source),
                    },
                })?;
        if let Some(drain) = result.drain {
            if !drain.remaining.is_empty() {
                return Err(Error::DrainIncomplete {
                    node: node.clone(),
                    remaining: drain.remaining.iter().map(ToString::to_string).collect(),
                });
            }
            if drain.pdbs_bypassed {
                self.reporter.report(&Event::Warning {
                    message: format!(
                        "--drain-timeout-policy force-delete: {} pod(s) on {node} were deleted bypassing their PodDisruptionBudgets",
                        drain.force_deleted.len()
                    ),
                });
            }
        }
        Ok(())
    }

    async fn uncordon(&self, node: &NodeName) -> Result<()> {
        nodes::uncordon(
            &self.kube,
            node,
            &self.options.drain.retry,
            self.bridge.as_ref(),
        )
        .await
        .map(|_| ())
        .map_err(|source| Error::Kube {
            doing: format!("uncordoning {node}"),
            source: Box::new(source),
        })
    }

    async fn delete_node(&self, node: &NodeName) -> Result<()> {
        let api: Api<Node> = Api::all(self.kube.clone());
        match api.delete(node.as_str(), &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(Error::Kube {
                doing: format!("deleting Node {node}"),
                source: Box::new(nodes::Error::Client(Box::new(source))),
            }),
        }
    }

    async fn copy_properties(&self, kind: &PoolKind, old: &NodeName, new: &NodeName) -> Result<()> {
        let preserve = match kind {
            PoolKind::Agent { position, .. } => self
                .model
                .view()
                .properties
                .agent_pool_profiles
                .get(*position)
                .is_none_or(|pool| pool.preserve_nodes_properties()),
            PoolKind::Master => true,
        };
        let options = nodes::CopyOptions {
            preserve,
            retry: self.options.drain.retry.clone(),
            drain: self.options.drain.clone(),
        };
        nodes::copy_properties(&self.kube, old, new, &options, self.bridge.as_ref())
            .await
            .map(|_| ())
            .map_err(|source| Error::Kube {
                doing: format!("copying the properties of {old} to {new}"),
                source: Box::new(source),
            })
    }

    /// Deletes a VM, its NICs and its OS disk — never a data disk (the etcd disk).
    async fn delete_vm(
        &self,
        kind: &PoolKind,
        index: usize,
        vm: &VmName,
        state: &ClusterState,
    ) -> Result<()> {
        let rg = &self.options.resource_group;
        let arm_err = |doing: String| {
            move |source: arm::Error| Error::Arm {
                doing,
                source: Box::new(source),
            }
        };
        let found = self
            .arm
            .get_vm(rg, vm.as_str())
            .await
            .map_err(arm_err(format!("reading VM {vm}")))?;
        let (nics, os_disk) = match &found {
            Some(found) => (
                found
                    .nic_ids()
                    .iter()
                    .map(|id| last_segment(id).to_owned())
                    .collect::<Vec<_>>(),
                found.os_disk_id().map(|id| last_segment(id).to_owned()),
            ),
            // Gone already (a previous run deleted it): clean up by name.
            None => (
                vec![kind.nic_name(&state.suffix, index)],
                Some(template::os_disk_name(vm)),
            ),
        };
        let timeout = self.lro(self.options.vm_timeout);
        let node = vm.node_name();
        if found.is_some() {
            self.set_leftovers(
                &node,
                serde_json::json!({"nics": nics, "osDisk": os_disk}).to_string(),
            )
            .await?;
            self.reporter.report(&Event::Progress {
                subject: vm.to_string(),
                message: "deleting the VM".into(),
            });
            self.arm
                .delete_vm(rg, vm.as_str(), &timeout)
                .await
                .map_err(arm_err(format!("deleting VM {vm}")))?;
        }
        for nic in nics {
            self.arm
                .delete_nic(rg, &nic, &timeout)
                .await
                .map_err(arm_err(format!("deleting NIC {nic}")))?;
        }
        if let Some(disk) = os_disk {
            self.arm
                .delete_disk(rg, &disk, &timeout)
                .await
                .map_err(arm_err(format!("deleting OS disk {disk}")))?;
        }
        self.clear_leftovers(&node).await
    }

    /// Records on the node what is left to delete after its VM (see [`LEFTOVERS`]).
    async fn set_leftovers(&self, node: &NodeName, value: String) -> Result<()> {
        self.annotate(node, serde_json::Value::String(value)).await
    }

    /// Best effort: a stale record is harmless (it is only read while the
    /// node's VM does not exist, and a deletion records afresh), and on a
    /// single-master cluster the API is down right after the VM is deleted.
    async fn clear_leftovers(&self, node: &NodeName) -> Result<()> {
        if let Err(err) = self.annotate(node, serde_json::Value::Null).await {
            tracing::debug!("cannot clear {LEFTOVERS} on {node}: {err}");
        }
        Ok(())
    }

    async fn annotate(&self, node: &NodeName, value: serde_json::Value) -> Result<()> {
        let api: Api<Node> = Api::all(self.kube.clone());
        let patch = serde_json::json!({"metadata": {"annotations": {LEFTOVERS: value}}});
        match api
            .patch(
                node.as_str(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            // No node (never registered, or already deleted): nothing to record on.
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(Error::Kube {
                doing: format!("annotating Node {node}"),
                source: Box::new(nodes::Error::Client(Box::new(source))),
            }),
        }
    }

    /// Deletes the NICs and OS disk a killed run recorded on the node of a VM
    /// that is gone (call only when its VM does not exist).
    async fn delete_leftovers(&self, node: &NodeName) -> Result<()> {
        let api: Api<Node> = Api::all(self.kube.clone());
        // The API of a single-master cluster is down while its master is
        // replaced: the record stays for a later run.
        let found = match api.get_opt(node.as_str()).await {
            Ok(found) => found,
            Err(err) => {
                tracing::debug!("cannot read {LEFTOVERS} of {node}: {err}");
                return Ok(());
            }
        };
        let Some(text) = found
            .and_then(|n| n.metadata.annotations)
            .and_then(|mut a| a.remove(LEFTOVERS))
        else {
            return Ok(());
        };
        // An unreadable annotation is not ours to act on: leave it.
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
            return Ok(());
        };
        let rg = &self.options.resource_group;
        let timeout = self.lro(self.options.vm_timeout);
        let names = |key: &str| -> Vec<String> {
            match value.get(key) {
                Some(serde_json::Value::Array(items)) => items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                Some(serde_json::Value::String(one)) => vec![one.clone()],
                _ => Vec::new(),
            }
        };
        for nic in names("nics") {
            self.reporter.report(&Event::Progress {
                subject: node.to_string(),
                message: format!("deleting NIC {nic} left by an interrupted run"),
            });
            self.arm
                .delete_nic(rg, &nic, &timeout)
                .await
                .map_err(|source| Error::Arm {
                    doing: format!("deleting NIC {nic}"),
                    source: Box::new(source),
                })?;
        }
        for disk in names("osDisk") {
            self.reporter.report(&Event::Progress {
                subject: node.to_string(),
                message: format!("deleting OS disk {disk} left by an interrupted run"),
            });
            self.arm
                .delete_disk(rg, &disk, &timeout)
                .await
                .map_err(|source| Error::Arm {
                    doing: format!("deleting OS disk {disk}"),
                    source: Box::new(source),
                })?;
        }
        self.clear_leftovers(node).await
    }

    async fn deploy(
        &self,
        kind: &PoolKind,
        index: usize,
        goal: &Goal,
        state: &ClusterState,
    ) -> Result<()> {
        let model = self.target_model()?;
        let aksup_version = env!("CARGO_PKG_VERSION");
        let input = NodeTemplateInput {
            model: model.view(),
            pool: kind.clone(),
            index,
            suffix: &state.suffix,
            target_version: &goal.target,
            subscription_id: self.arm.subscription_id(),
            resource_group: &self.options.resource_group,
            location: &self.options.location,
            aksup_version,
            run: goal.force_run.as_deref(),
        };
        let rendered = template::render(&input).map_err(|source| Error::Template {
            vm: kind.vm_name(&state.suffix, index).to_string(),
            source,
        })?;
        self.delete_leftovers(&rendered.vm_name.node_name()).await?;
        self.reporter.report(&Event::Progress {
            subject: rendered.vm_name.to_string(),
            message: format!("deploying {} ({})", rendered.deployment_name, goal.target),
        });
        let request =
            DeploymentRequest::incremental(rendered.template.clone(), rendered.parameters.clone());
        self.arm
            .put_deployment(
                &self.options.resource_group,
                &rendered.deployment_name,
                &request,
                &self.lro(self.options.vm_timeout),
            )
            .await
            .map(|_| ())
            .map_err(|source| Error::Arm {
                doing: format!("deploying {}", rendered.vm_name),
                source: Box::new(source),
            })
    }

    async fn wait_ready(&self, _kind: &PoolKind, vm: &VmName) -> Result<()> {
        let node = vm.node_name();
        nodes::wait_ready(
            &self.kube,
            &node,
            &self.options.target.to_string(),
            self.options.vm_timeout,
            self.bridge.as_ref(),
        )
        .await
        .map(|_| ())
        .map_err(|source| Error::NotReady {
            node,
            timeout: self.options.vm_timeout,
            deleted: false,
            source: Box::new(source),
        })
    }

    /// Waits for an agent's node; on timeout deletes the new VM (so a retry
    /// does not lose capacity) and fails, as aks-engine does.
    async fn wait_ready_or_remove(
        &self,
        kind: &PoolKind,
        index: usize,
        vm: &VmName,
        state: &ClusterState,
    ) -> Result<()> {
        match self.wait_ready(kind, vm).await {
            Err(Error::NotReady {
                node,
                timeout,
                source,
                ..
            }) if *kind != PoolKind::Master => {
                self.delete_vm(kind, index, vm, state).await?;
                self.delete_node(&node).await?;
                Err(Error::NotReady {
                    node,
                    timeout,
                    deleted: true,
                    source,
                })
            }
            other => other,
        }
    }
}

fn last_segment(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

fn pool_kind(state: &ClusterState, action: &Action) -> PoolKind {
    let name = match action {
        Action::WaitReady { pool, .. }
        | Action::DeleteFailedVm { pool, .. }
        | Action::CreateAgent { pool, .. }
        | Action::ReplaceAgent { pool, .. } => pool.as_str(),
        _ => crate::names::MASTER_POOL,
    };
    state
        .pools
        .iter()
        .map(|pool| pool.kind.clone())
        .find(|kind| kind.pool_name() == name)
        .unwrap_or(PoolKind::Master)
}

fn version_of(state: &ClusterState, step: &Step) -> Option<String> {
    let subject = step.action.subject();
    state
        .pools
        .iter()
        .flat_map(|pool| &pool.vms)
        .find(|vm| vm.name.as_str() == subject)
        .and_then(|vm| vm.version())
        .map(ToString::to_string)
}
