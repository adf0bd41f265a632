//! Runs a checked upgrade: builds the ARM and Kubernetes clients, picks the
//! reporter, wires Ctrl-C, runs the engine, prints the plan or the summary.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use super::upgrade::{AuthMethod, CheckedUpgrade, IdentitySystem, OutputFormat, UpgradeArgs};
use super::{ExitStatus, UserError};
use crate::arm::{self, ArmClient, ArmConfig, CredentialOptions, HttpOptions};
use crate::kube::{self as nodes, ApiModelAccess, ClusterAccess};
use crate::report::{
    self, Event, JsonLinesReporter, LineReporter, Outcome, ProgressReporter, QuietReporter,
    Reporter,
};
use crate::upgrade::engine::{self, Engine, StopFlag, Summary, UpgradeOptions};

/// Clients for a run: ARM and Kubernetes.
pub struct Clients {
    pub arm: ArmClient,
    pub kube: kube::Client,
}

fn failed(doing: &str) -> impl FnOnce(anyhow::Error) -> UserError + '_ {
    move |err| UserError::failed(err.context(doing.to_owned()))
}

/// Builds the ARM client from the flags, the environment and the apimodel.
pub async fn arm_client(
    checked: &CheckedUpgrade,
    args: &UpgradeArgs,
    http: HttpOptions,
) -> Result<ArmClient, UserError> {
    let view = checked.model.view();
    let custom = view.properties.custom_cloud_profile.as_ref();
    let environment = ArmClient::resolve_environment(Some(&args.azure_env), custom, &http)
        .await
        .map_err(|err| failed("cannot determine the Azure environment")(err.into()))?;
    let creds = &checked.credentials;
    let options = CredentialOptions {
        client_id: Some(creds.client_id.clone()),
        client_secret: creds.client_secret.clone(),
        certificate_path: creds.certificate_path.clone(),
        private_key_path: creds.private_key_path.clone(),
        identity_system: Some(
            match creds.identity_system {
                IdentitySystem::AzureAd => "azure_ad",
                IdentitySystem::Adfs => "adfs",
            }
            .to_owned(),
        ),
        auth_method: Some(
            match creds.auth_method {
                AuthMethod::ClientSecret => "client_secret",
                AuthMethod::ClientCertificate => "client_certificate",
            }
            .to_owned(),
        ),
        tenant_id: creds.tenant_id.clone(),
    };
    let credentials = options
        .resolve_from_process_env(custom)
        .map_err(|err| UserError::refused(anyhow::Error::new(err)))?;
    let subscription = arm::resolve_subscription_id(creds.subscription_id.as_deref(), &|name| {
        std::env::var(name).ok()
    })
    .map_err(|err| UserError::refused(anyhow::Error::new(err)))?;
    let mut config = ArmConfig::new(environment, credentials, subscription);
    config.http = http;
    if let Some(profile) = &args.api_profile {
        config.profile = profile
            .parse()
            .map_err(|err: arm::Error| UserError::refused(anyhow::Error::new(err)))?;
    }
    ArmClient::new(config)
        .await
        .map_err(|err| failed("cannot sign in to Azure Resource Manager")(err.into()))
}

/// Connects to the cluster's Kubernetes API.
pub async fn kube_client(
    checked: &CheckedUpgrade,
    args: &UpgradeArgs,
) -> Result<kube::Client, UserError> {
    let access = ClusterAccess::choose(
        args.kubeconfig.clone(),
        args.context.clone(),
        std::env::var_os("KUBECONFIG").as_deref(),
        ApiModelAccess::default(),
    );
    nodes::connect(&access, Some(checked.model.view()))
        .await
        .map_err(|err| failed("cannot connect to the cluster's Kubernetes API")(err.into()))
}

fn reporter(args: &UpgradeArgs) -> Arc<dyn Reporter> {
    if args.output == OutputFormat::Json {
        return Arc::new(JsonLinesReporter::new(std::io::stdout()));
    }
    let bars = !args.no_progress
        && std::env::var_os("AKSUP_NO_PROGRESS").is_none()
        && std::io::stderr().is_terminal()
        && std::io::stdout().is_terminal();
    if bars {
        Arc::new(ProgressReporter::new())
    } else {
        Arc::new(LineReporter::new(std::io::stderr()))
    }
}

/// Options of the engine from the checked request.
pub fn upgrade_options(checked: &CheckedUpgrade, args: &UpgradeArgs) -> UpgradeOptions {
    let drain =
        nodes::DrainOptions::for_cluster(checked.cloud == crate::versions::Cloud::AzureStack)
            .with_timeout(checked.cordon_drain_timeout)
            .with_timeout_policy(checked.drain_timeout_policy)
            .with_allow_unreplicated(args.allow_unreplicated_pods)
            .with_grace_period(args.grace_period);
    UpgradeOptions {
        resource_group: checked.resource_group.clone(),
        location: checked.location.clone(),
        target: checked.target_version.clone(),
        force: args.force,
        control_plane_only: args.control_plane_only,
        vm_timeout: checked.vm_timeout,
        drain,
        adjustments: checked.adjustments.clone(),
        api_model_path: Some(checked.api_model_path.clone()),
        dry_run: args.dry_run,
        lock: nodes::LockOptions::default(),
        lro_interval: Duration::from_secs(10),
    }
}

/// Runs the engine with the given clients and options and renders the result.
pub async fn run_engine(
    checked: CheckedUpgrade,
    args: &UpgradeArgs,
    clients: Clients,
    options: UpgradeOptions,
) -> Result<ExitStatus, UserError> {
    if args.break_lock {
        let previous = nodes::break_lock(&clients.kube, &options.lock, &nodes::NoEvents)
            .await
            .map_err(|err| failed("cannot break the upgrade lock")(err.into()))?;
        if let Some(holder) = previous {
            eprintln!("warning: --break-lock: removed the upgrade lock held by {holder}");
        }
    }
    let dry_run = options.dry_run;
    let json = args.output == OutputFormat::Json;
    let reporter: Arc<dyn Reporter> = if dry_run {
        Arc::new(QuietReporter)
    } else {
        reporter(args)
    };
    if !dry_run {
        for warning in &checked.warnings {
            reporter.report(&Event::Warning {
                message: warning.clone(),
            });
        }
    }
    let stop = StopFlag::default();
    let watcher = tokio::spawn(watch_interrupts(stop.clone()));
    let started = tokio::time::Instant::now();
    let mut engine = Engine::new(
        clients.arm,
        clients.kube,
        checked.model.clone(),
        options,
        reporter.clone(),
        stop,
    );
    let result = engine.run().await;
    watcher.abort();
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(summary) if dry_run => {
            print_plan(&checked, &summary, json);
            match summary.plan.refusal {
                Some(refusal) => Err(UserError::refused(anyhow::Error::new(refusal))
                    .with_hint("the plan above stops at this gate; nothing was changed")),
                None => Ok(ExitStatus::Success),
            }
        }
        Ok(summary) => {
            reporter.report(&Event::RunFinished {
                outcome: Outcome::Success,
                duration_ms,
                nodes: summary.nodes,
                message: Some(format!(
                    "upgraded to {}; the api model {} was updated (previous version kept as .bak)",
                    checked.target_version,
                    checked.api_model_path.display()
                )),
            });
            if !json {
                eprintln!(
                    "Upgraded {} to {} in {}; wrote {}",
                    checked.resource_group,
                    checked.target_version,
                    report::format_duration(Duration::from_millis(duration_ms)),
                    checked.api_model_path.display()
                );
            }
            Ok(ExitStatus::Success)
        }
        Err(err) => {
            let outcome = match &err {
                engine::Error::Interrupted { .. } => Outcome::Interrupted,
                err if err.is_refusal() => Outcome::Refused,
                _ => Outcome::Failed,
            };
            reporter.report(&Event::RunFinished {
                outcome,
                duration_ms,
                nodes: Vec::new(),
                message: Some(error_chain(&err)),
            });
            let hints = err.hints();
            let refusal = err.is_refusal();
            let mut user = if refusal {
                UserError::refused(anyhow::Error::new(err))
            } else {
                UserError::failed(anyhow::Error::new(err))
            };
            for hint in hints {
                user = user.with_hint(hint);
            }
            if !refusal {
                user = user.with_hint(
                    "the api model was left unchanged; the VM tags record what was done",
                );
            }
            Err(user)
        }
    }
}

/// First Ctrl-C: stop at the next safe point. Second: exit now (a re-run resumes).
async fn watch_interrupts(stop: StopFlag) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    stop.request();
    eprintln!(
        "\nStopping after the current step (press Ctrl-C again to stop now; run the same command to resume)"
    );
    if tokio::signal::ctrl_c().await.is_ok() {
        eprintln!("Stopped. Run the same command again to resume.");
        std::process::exit(130);
    }
}

/// Runs a checked upgrade against the real cloud.
pub async fn execute(checked: CheckedUpgrade, args: &UpgradeArgs) -> Result<ExitStatus, UserError> {
    if args.output == OutputFormat::Human && !args.dry_run {
        super::upgrade::print_checked(&checked);
    }
    let arm = arm_client(
        &checked,
        args,
        HttpOptions::from_process_env(args.ca_file.clone()),
    )
    .await?;
    let kube = kube_client(&checked, args).await?;
    let options = upgrade_options(&checked, args);
    run_engine(checked, args, Clients { arm, kube }, options).await
}

/// The plan as a table (human) or one JSON document.
pub fn print_plan(checked: &CheckedUpgrade, summary: &Summary, json: bool) {
    let plan = &summary.plan;
    if json {
        let document = serde_json::json!({
            "resourceGroup": checked.resource_group,
            "currentVersion": checked.current_version,
            "targetVersion": checked.target_version.to_string(),
            "adjustments": checked.adjustments,
            "warnings": checked.warnings.iter().chain(&plan.warnings).collect::<Vec<_>>(),
            "gates": summary.gates,
            "steps": plan.steps,
            "refusal": plan.refusal.as_ref().map(ToString::to_string),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&document).unwrap_or_default()
        );
        return;
    }
    println!(
        "Plan for {} ({}): {} -> {}, {} step(s)",
        checked.resource_group,
        checked.api_model_path.display(),
        checked.current_version,
        checked.target_version,
        plan.steps.len()
    );
    let rows: Vec<Vec<String>> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            vec![
                (i + 1).to_string(),
                step.action.verb().to_owned(),
                step.action.subject(),
                step.reason.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        report::text_table(&["#", "ACTION", "VM/NODE", "REASON"], &rows)
    );
    for adjustment in &checked.adjustments {
        println!(
            "adjust {}: {} -> {} ({})",
            adjustment.pointer, adjustment.from, adjustment.to, adjustment.reason
        );
    }
    for warning in checked.warnings.iter().chain(&plan.warnings) {
        println!("warning: {warning}");
    }
    for gate in &summary.gates {
        let result = if gate.passed { "passed" } else { "FAILED" };
        println!("gate {}: {result} ({})", gate.gate, gate.detail);
    }
    if let Some(refusal) = &plan.refusal {
        println!("the run would stop here: {refusal}");
    }
    println!("Nothing was changed (dry run).");
}

/// `error: cause: cause …` on one line, for the JSON `runFinished` message.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
