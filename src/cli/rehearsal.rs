//! `aksup upgrade --simulator`: rehearse an upgrade of your own apimodel
//! offline. The embedded simulator is seeded from a copy of `--api-model`
//! (the file itself is never touched), and the real upgrade code runs against
//! it over HTTPS, exactly as against a stamp. The upgraded copy is kept.

use std::path::PathBuf;

use anyhow::Context as _;

use super::execute::{self, Clients};
use super::upgrade::{self, UpgradeArgs};
use super::{ExitStatus, UserError};
use crate::arm::HttpOptions;
use crate::model::ApiModel;
use crate::sim::kube::Scenario;
use crate::sim::{SimOptions, Simulator};

pub async fn run(mut args: UpgradeArgs) -> Result<ExitStatus, UserError> {
    let Some(source) = upgrade::api_model_path(&args) else {
        return Err(
            UserError::refused(anyhow::anyhow!("--api-model must be specified"))
                .with_hint("aksup upgrade --simulator --api-model PATH --upgrade-version VERSION"),
        );
    };
    if args.upgrade_version.as_deref().is_none_or(str::is_empty) {
        return Err(UserError::refused(anyhow::anyhow!(
            "--upgrade-version must be specified"
        )));
    }
    if !source.exists() {
        return Err(UserError::refused(anyhow::anyhow!(
            "specified api model does not exist ({})",
            source.display()
        )));
    }
    let model = ApiModel::load(&source).map_err(|err| {
        UserError::refused(
            anyhow::Error::new(err)
                .context(format!("error parsing the api model {}", source.display())),
        )
    })?;
    model.validate().map_err(|err| {
        UserError::refused(anyhow::Error::new(err).context(format!(
            "the api model {} cannot be upgraded",
            source.display()
        )))
    })?;
    // A directory we made for a dry run is removed afterwards: nothing in it
    // outlives the run. One the user named is always kept.
    let temporary = args.simulator_dir.is_none() && args.dry_run;
    let dir = match &args.simulator_dir {
        Some(dir) => dir.clone(),
        None => default_dir(&model)?,
    };
    // No scenario given: the simulator applies its default one.
    let unowned = unowned_pods(&Scenario::default_scenario());
    let mut options = SimOptions::new(model);
    options.state_dir = Some(dir.clone());
    options.time_scale = args.time_scale;
    let simulator = Simulator::start(options).await.map_err(|err| {
        UserError::failed(anyhow::Error::new(err).context("cannot start the simulator"))
    })?;
    let endpoints = simulator.endpoints.clone();
    let Some(copy) = endpoints.api_model_file.clone() else {
        simulator.shutdown().await;
        return Err(UserError::failed(anyhow::anyhow!(
            "the simulator wrote no apimodel copy"
        )));
    };
    if temporary {
        eprintln!(
            "Rehearsing on the simulator (time x{}, dry run)",
            args.time_scale
        );
    } else {
        eprintln!(
            "Rehearsing on the simulator (time x{}); files in {}",
            args.time_scale,
            dir.display()
        );
    }

    // The same flags a user would pass against the stamp, pointing at the simulator.
    args.api_model = Some(copy.clone());
    args.deployment_dir = None;
    args.resource_group = Some(endpoints.resource_group.clone());
    args.location = Some(endpoints.location.clone());
    args.subscription_id = Some(endpoints.subscription_id.clone());
    args.client_id = Some(endpoints.client_id.clone());
    args.client_secret = Some(endpoints.client_secret.clone());
    args.auth_method = Some(upgrade::AuthMethod::ClientSecret);
    args.certificate_path = None;
    args.private_key_path = None;
    args.azure_env = "AzureStackCloud".into();
    args.ca_file = endpoints.ca_file.clone();
    args.kubeconfig = None;
    // Every outcome from here on goes through the same shutdown, clean-up and hints.
    let result = rehearse(&args, &unowned).await;
    simulator.shutdown().await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    match result {
        Ok(status) => {
            if !args.dry_run {
                eprintln!(
                    "The upgraded apimodel copy is {} (your {} is unchanged)",
                    copy.display(),
                    source.display()
                );
            }
            Ok(status)
        }
        Err(err) if temporary => Err(err.with_hint(format!(
            "this was a rehearsal: your {} is unchanged",
            source.display()
        ))),
        Err(err) if err.status == ExitStatus::Refused => Err(err.with_hint(format!(
            "this was a rehearsal: your {} is unchanged; the simulator's files are in {}",
            source.display(),
            dir.display()
        ))),
        Err(err) => Err(err.with_hint(format!(
            "this was a rehearsal: your {} is unchanged and the simulator's files are in {}; \
             against the stamp a re-run would resume, but a new rehearsal starts from a fresh simulator",
            source.display(),
            dir.display()
        ))),
    }
}

/// Checks the request (now pointing at the simulator) and runs the engine.
async fn rehearse(args: &UpgradeArgs, unowned: &[String]) -> Result<ExitStatus, UserError> {
    let checked = upgrade::check(args)?;
    if !unowned.is_empty() && !args.allow_unreplicated_pods {
        eprintln!(
            "note: the simulated cluster runs {} that no controller owns: draining its node stops \
             the rehearsal unless you pass --allow-unreplicated-pods",
            unowned.join(", ")
        );
    }
    let mut http = HttpOptions::from_process_env(args.ca_file.clone());
    // The simulator speaks in virtual seconds (Retry-After included).
    http.retry.time_scale = args.time_scale;
    let arm = execute::arm_client(&checked, args, http).await?;
    let kube = execute::kube_client(&checked, args).await?;
    let mut options = execute::upgrade_options(&checked, args);
    options.lro_interval = std::time::Duration::from_millis(100);
    execute::run_engine(checked, args, Clients { arm, kube }, options).await
}

/// `namespace/name` of the scenario's bare pods, sorted.
fn unowned_pods(scenario: &Scenario) -> Vec<String> {
    let mut pods: Vec<String> = scenario
        .pods
        .iter()
        .map(|pod| format!("{}/{}", pod.namespace, pod.name))
        .collect();
    pods.sort();
    pods
}

fn default_dir(model: &ApiModel) -> Result<PathBuf, UserError> {
    let prefix = model
        .view()
        .properties
        .master_profile
        .as_ref()
        .map(|m| m.dns_prefix.clone())
        .unwrap_or_default();
    tempfile::Builder::new()
        .prefix(&format!("aksup-rehearsal-{prefix}-"))
        .tempdir()
        .map(tempfile::TempDir::keep)
        .context("cannot create a directory for the simulator")
        .map_err(UserError::failed)
}
