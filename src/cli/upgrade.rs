//! `aksup upgrade`: every flag of `aks-engine-azurestack upgrade`, plus
//! `--dry-run`, `-o/--output` and `--ca-file`.
//!
//! This file translates flags into checked options. The checks that need no
//! network run here, in aks-engine's order and with its messages; contacting
//! the cloud is the upgrade engine's job.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use clap::{ArgAction, Args, ValueEnum};
use semver::Version;

use super::{ExitStatus, UserError};
use crate::model::{ApiModel, Secret};
use crate::upgrade::adjust::{self, AdjustOptions, Adjustment};
use crate::versions::{self, Cloud};

/// File name of the apimodel inside a `--deployment-dir`.
pub const APIMODEL_FILENAME: &str = "apimodel.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMethod {
    #[value(name = "client_secret")]
    ClientSecret,
    #[value(name = "client_certificate")]
    ClientCertificate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IdentitySystem {
    #[value(name = "azure_ad")]
    AzureAd,
    #[value(name = "adfs")]
    Adfs,
}

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// location the cluster is deployed in (required)
    #[arg(short = 'l', long)]
    pub location: Option<String>,
    /// the resource group where the cluster is deployed (required)
    #[arg(short = 'g', long = "resource-group")]
    pub resource_group: Option<String>,
    /// path to the generated apimodel.json file
    #[arg(short = 'm', long = "api-model", value_name = "PATH")]
    pub api_model: Option<PathBuf>,
    /// deprecated: the directory holding apimodel.json (use --api-model)
    #[arg(long = "deployment-dir", value_name = "DIR")]
    pub deployment_dir: Option<PathBuf>,
    /// desired kubernetes version (required)
    #[arg(short = 'k', long = "upgrade-version", value_name = "VERSION")]
    pub upgrade_version: Option<String>,
    /// the path of the kubeconfig file (default: KUBECONFIG, else built in memory from the apimodel)
    #[arg(short = 'b', long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// the kubeconfig context to use (with --kubeconfig or KUBECONFIG)
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// how long to wait for each vm to be upgraded in minutes (-1: 20)
    #[arg(long = "vm-timeout", default_value_t = -1, allow_negative_numbers = true, value_name = "MINUTES")]
    pub vm_timeout: i64,
    /// how long to wait for each vm to be cordoned and drained in minutes (-1: 20, 60 on Azure Stack Hub)
    #[arg(long = "cordon-drain-timeout", default_value_t = -1, allow_negative_numbers = true, value_name = "MINUTES")]
    pub cordon_drain_timeout: i64,
    /// force upgrading the cluster to desired version. Allows same version upgrades and downgrades.
    #[arg(short = 'f', long, action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true", require_equals = true)]
    pub force: bool,
    /// upgrade control plane VMs only, do not upgrade node pools
    #[arg(long = "control-plane-only", action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true", require_equals = true)]
    pub control_plane_only: bool,
    /// upgrade image reference of the Windows nodes
    #[arg(long = "upgrade-windows-vhd", action = ArgAction::Set, num_args = 0..=1, default_value_t = true, default_missing_value = "true", require_equals = true)]
    pub upgrade_windows_vhd: bool,
    /// the target Azure cloud
    #[arg(long = "azure-env", default_value = "AzurePublicCloud")]
    pub azure_env: String,
    /// azure subscription id (default: the Azure CLI's selected subscription)
    #[arg(short = 's', long = "subscription-id", env = "AZURE_SUBSCRIPTION_ID")]
    pub subscription_id: Option<String>,
    /// auth method (default: the apimodel's customCloudProfile.authenticationMethod, else client_secret)
    #[arg(long = "auth-method", value_enum)]
    pub auth_method: Option<AuthMethod>,
    /// client id (used with --auth-method=[client_secret|client_certificate])
    #[arg(long = "client-id", env = "AZURE_CLIENT_ID")]
    pub client_id: Option<String>,
    /// client secret (used with --auth-method=client_secret); prefer the environment variable
    #[arg(
        long = "client-secret",
        env = "AZURE_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub client_secret: Option<String>,
    /// path to client certificate (used with --auth-method=client_certificate)
    #[arg(long = "certificate-path", env = "AZURE_CLIENT_CERTIFICATE_PATH")]
    pub certificate_path: Option<PathBuf>,
    /// path to private key (used with --auth-method=client_certificate)
    #[arg(long = "private-key-path")]
    pub private_key_path: Option<PathBuf>,
    /// identity system (default: the apimodel's customCloudProfile.identitySystem, else azure_ad)
    #[arg(long = "identity-system", value_enum)]
    pub identity_system: Option<IdentitySystem>,
    /// tenant id (default: discovered from the Resource Manager endpoint)
    #[arg(long = "tenant-id", env = "AZURE_TENANT_ID")]
    pub tenant_id: Option<String>,
    /// language to return error messages in
    #[arg(long, default_value = "en-us")]
    pub language: String,
    /// extra root CA (PEM) to trust for Resource Manager and the identity provider
    #[arg(long = "ca-file", value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    /// the api-version profile: 2020-09-01-hybrid (Azure Stack Hub default), 2019-03-01-hybrid, latest
    #[arg(long = "api-profile", value_name = "PROFILE")]
    pub api_profile: Option<String>,
    /// what to do when a drain is still blocked at --cordon-drain-timeout: fail (leave the VM untouched) or force-delete (bypass PodDisruptionBudgets, loudly)
    #[arg(
        long = "drain-timeout-policy",
        default_value = "fail",
        value_name = "POLICY"
    )]
    pub drain_timeout_policy: String,
    /// evict pods that no controller recreates (kubectl drain --force); refused by default
    #[arg(long = "allow-unreplicated-pods")]
    pub allow_unreplicated_pods: bool,
    /// grace period in seconds for evicted pods (default: each pod's own)
    #[arg(
        long = "grace-period",
        value_name = "SECONDS",
        allow_negative_numbers = true
    )]
    pub grace_period: Option<i64>,
    /// take over the cluster's upgrade lock even if another run holds it (only when that run is dead)
    #[arg(long = "break-lock")]
    pub break_lock: bool,
    /// no progress bars (also when stdout is not a terminal, or AKSUP_NO_PROGRESS is set)
    #[arg(long = "no-progress")]
    pub no_progress: bool,
    /// show what would be done, change nothing
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// rehearse: run the upgrade against the built-in simulator seeded from a copy of --api-model (the file is not touched)
    #[arg(long)]
    pub simulator: bool,
    /// with --simulator: virtual seconds per real second
    #[arg(
        long = "time-scale",
        default_value_t = 600.0,
        value_name = "N",
        requires = "simulator"
    )]
    pub time_scale: f64,
    /// with --simulator: where to keep the simulator's files and the upgraded apimodel copy (default: a new directory in the system's temp directory)
    #[arg(long = "simulator-dir", value_name = "DIR", requires = "simulator")]
    pub simulator_dir: Option<PathBuf>,
    /// output format
    #[arg(short = 'o', long, value_enum, default_value = "human")]
    pub output: OutputFormat,
}

/// Credentials as given; secrets wrapped so they never print.
#[derive(Debug, Clone)]
pub struct CredentialArgs {
    pub identity_system: IdentitySystem,
    pub auth_method: AuthMethod,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub certificate_path: Option<PathBuf>,
    pub private_key_path: Option<PathBuf>,
    pub tenant_id: Option<String>,
    /// `None`: resolved from the Azure CLI configuration when the cloud is contacted.
    pub subscription_id: Option<String>,
}

/// The upgrade request after every check that needs no network.
#[derive(Debug)]
pub struct CheckedUpgrade {
    pub api_model_path: PathBuf,
    pub model: ApiModel,
    pub location: String,
    pub resource_group: String,
    pub current_version: String,
    pub target_version: Version,
    pub cloud: Cloud,
    pub vm_timeout: Duration,
    pub cordon_drain_timeout: Duration,
    pub adjustments: Vec<Adjustment>,
    pub warnings: Vec<String>,
    pub credentials: CredentialArgs,
    pub drain_timeout_policy: crate::kube::DrainTimeoutPolicy,
}

pub async fn run(args: UpgradeArgs) -> Result<ExitStatus, UserError> {
    if args.simulator {
        return super::rehearsal::run(args).await;
    }
    let checked = check(&args)?;
    super::execute::execute(checked, &args).await
}

fn refused(message: impl std::fmt::Display) -> UserError {
    UserError::refused(anyhow!("{message}"))
}

/// Runs every check that needs no network, in aks-engine's order.
pub fn check(args: &UpgradeArgs) -> Result<CheckedUpgrade, UserError> {
    let hint_usage = "run 'aksup upgrade --help' for the flags";
    // 1. Required flags (aks-engine: validate()).
    let resource_group = non_empty(&args.resource_group)
        .ok_or_else(|| refused("--resource-group must be specified").with_hint(hint_usage))?;
    let location = non_empty(&args.location)
        .map(normalize_location)
        .ok_or_else(|| refused("--location must be specified").with_hint(hint_usage))?;
    let vm_timeout = minutes(args.vm_timeout, 20, "--vm-timeout")?;
    let upgrade_version = non_empty(&args.upgrade_version)
        .ok_or_else(|| refused("--upgrade-version must be specified").with_hint(hint_usage))?;
    let api_model_path = match (&args.api_model, &args.deployment_dir) {
        (None, None) => return Err(refused("--api-model must be specified").with_hint(hint_usage)),
        (Some(_), Some(_)) => {
            return Err(refused(
                "ambiguous, please specify only one of --api-model and --deployment-dir",
            ));
        }
        (Some(path), None) => path.clone(),
        (None, Some(dir)) => {
            eprintln!(
                "warning: --deployment-dir is deprecated: use --api-model {}",
                dir.join(APIMODEL_FILENAME).display()
            );
            dir.join(APIMODEL_FILENAME)
        }
    };

    // 2. Load the cluster (aks-engine: loadCluster()).
    if !api_model_path.exists() {
        return Err(refused(format!(
            "specified api model does not exist ({})",
            api_model_path.display()
        )));
    }
    let model = ApiModel::load(&api_model_path).map_err(|err| {
        UserError::refused(anyhow::Error::new(err).context(format!(
            "error parsing the api model {}",
            api_model_path.display()
        )))
    })?;
    model.validate().map_err(|err| {
        UserError::refused(anyhow::Error::new(err).context(format!(
            "the api model {} cannot be upgraded",
            api_model_path.display()
        )))
    })?;
    let view = model.view();
    let cloud = if view.is_azure_stack() {
        Cloud::AzureStack
    } else {
        Cloud::from_azure_env(&args.azure_env)
    };
    let default_drain = if view.is_azure_stack() { 60 } else { 20 };
    let cordon_drain_timeout = minutes(
        args.cordon_drain_timeout,
        default_drain,
        "--cordon-drain-timeout",
    )?;

    let drain_timeout_policy: crate::kube::DrainTimeoutPolicy = args.drain_timeout_policy.parse().map_err(|_| {
        refused(format!(
            "--drain-timeout-policy {} is not known: use fail (default: leave the VM untouched) or force-delete (bypass PodDisruptionBudgets)",
            args.drain_timeout_policy
        ))
    })?;
    if let Some(seconds) = args.grace_period.filter(|s| *s < 0) {
        return Err(refused(format!(
            "--grace-period {seconds} is not valid: give 0 or more seconds"
        )));
    }
    if let Some(profile) = &args.api_profile {
        profile
            .parse::<crate::arm::ApiProfile>()
            .map_err(|err| UserError::refused(anyhow::Error::new(err)))?;
    }

    // 3. Credentials that can be checked locally (aks-engine: validateAuthArgs()).
    let credentials = check_credentials(args, &model)?;
    let view = model.view();

    // 4. Location, semver, path (aks-engine: initialize()).
    if !view.location.is_empty() && normalize_location(&view.location) != location {
        return Err(
            refused("--location does not match api model location").with_hint(format!(
                "the api model says \"{}\"; pass -l {} or fix the api model",
                view.location,
                normalize_location(&view.location)
            )),
        );
    }
    let target_version = Version::parse(&upgrade_version).map_err(|err| {
        refused(format!(
            "Invalid --upgrade-version value '{upgrade_version}', not a semver string: {err}"
        ))
        .with_hint("versions are written without a 'v', for example 1.34.4")
    })?;
    let current_version = view.orchestrator_version().to_owned();
    let mut warnings = Vec::new();
    if args.force {
        warnings.push("--force: the upgrade path is not checked and nodes already on the target version are re-paved".to_owned());
    } else {
        check_path(
            &current_version,
            &upgrade_version,
            view.has_windows_pool(),
            cloud,
        )?;
    }
    if let Ok(current) = Version::parse(&current_version)
        && let Some(skew) = versions::skew(&current, &target_version)
    {
        warnings.push(skew.to_string());
    }
    let adjustments = adjust::azure_stack_adjustments(
        &model,
        &target_version,
        AdjustOptions {
            upgrade_windows_vhd: args.upgrade_windows_vhd,
        },
    );

    Ok(CheckedUpgrade {
        api_model_path,
        location,
        resource_group,
        current_version,
        target_version,
        cloud,
        vm_timeout,
        cordon_drain_timeout,
        adjustments,
        warnings,
        credentials,
        model,
        drain_timeout_policy,
    })
}

fn check_path(current: &str, target: &str, windows: bool, cloud: Cloud) -> Result<(), UserError> {
    let env_flag = match cloud {
        Cloud::AzureStack => "--azure-env AzureStackCloud ",
        Cloud::AzurePublic => "",
    };
    let windows_flag = if windows { "--windows " } else { "" };
    let lead =
        "Invalid upgrade target version. Consider using --force if you really want to proceed";
    let profiles = versions::version_profiles(Some(current), windows, cloud).map_err(|err| {
        refused(format!(
            "{lead}: error getting list of available upgrades: {err}"
        ))
        .with_hint(
            "the api model's orchestratorVersion is not one aks-engine-azurestack v0.85.0 knows",
        )
    })?;
    let allowed = profiles
        .first()
        .map(|profile| profile.upgrades.clone())
        .unwrap_or_default();
    if allowed.iter().any(|version| version == target) {
        return Ok(());
    }
    Err(refused(format!(
        "{lead}: upgrading from Kubernetes version {current} to version {target} is not supported. \
         To see a list of available upgrades, use 'aksup get-versions {env_flag}{windows_flag}--version {current}'"
    ))
    .with_hint(if allowed.is_empty() {
        format!("{current} has no supported upgrade")
    } else {
        format!("from {current} you can upgrade to: {}", allowed.join(", "))
    }))
}

fn check_credentials(args: &UpgradeArgs, model: &ApiModel) -> Result<CredentialArgs, UserError> {
    let cloud = model
        .view()
        .properties
        .custom_cloud_profile
        .clone()
        .unwrap_or_default();
    let identity_system = args
        .identity_system
        .unwrap_or(match cloud.identity_system.as_str() {
            "adfs" => IdentitySystem::Adfs,
            _ => IdentitySystem::AzureAd,
        });
    let auth_method = args
        .auth_method
        .unwrap_or(match cloud.authentication_method.as_str() {
            "client_certificate" => AuthMethod::ClientCertificate,
            _ => AuthMethod::ClientSecret,
        });
    let client_id = args.client_id.clone().unwrap_or_default();
    if !is_uuid(&client_id) {
        return Err(refused(format!(
            "parsing --client-id: \"{client_id}\" is not a UUID: pass the application (client) ID of the service principal"
        ))
        .with_hint("or set AZURE_CLIENT_ID"));
    }
    let client_secret = args
        .client_secret
        .clone()
        .filter(|s| !s.is_empty())
        .map(Secret::from);
    match auth_method {
        AuthMethod::ClientSecret if client_secret.is_none() => {
            return Err(refused("--client-secret must be specified when --auth-method=\"client_secret\"")
                .with_hint("prefer the AZURE_CLIENT_SECRET environment variable: a flag shows in the process list"));
        }
        AuthMethod::ClientCertificate
            if args.certificate_path.is_none() || args.private_key_path.is_none() =>
        {
            return Err(refused(
                "--certificate-path and --private-key-path must be specified when --auth-method=\"client_certificate\"",
            ));
        }
        _ => {}
    }
    for path in [
        &args.certificate_path,
        &args.private_key_path,
        &args.ca_file,
    ]
    .into_iter()
    .flatten()
    {
        if !path.is_file() {
            return Err(refused(format!(
                "cannot read {}: no such file",
                path.display()
            )));
        }
    }
    let subscription_id = non_empty(&args.subscription_id);
    if let Some(subscription) = &subscription_id
        && !is_uuid(subscription)
    {
        return Err(refused(
            "--subscription-id is required (and must be a valid UUID)",
        ));
    }
    Ok(CredentialArgs {
        identity_system,
        auth_method,
        client_id,
        client_secret,
        certificate_path: args.certificate_path.clone(),
        private_key_path: args.private_key_path.clone(),
        tenant_id: non_empty(&args.tenant_id),
        subscription_id,
    })
}

/// Tells, on stderr, what the checks established before the cloud is contacted.
pub(crate) fn print_checked(checked: &CheckedUpgrade) {
    eprintln!(
        "Checked upgrade of {} ({} in {}) from {} to {}",
        checked.api_model_path.display(),
        checked.resource_group,
        checked.location,
        checked.current_version,
        checked.target_version
    );
    eprintln!(
        "  timeouts: {} min per VM, {} min per cordon and drain",
        checked.vm_timeout.as_secs() / 60,
        checked.cordon_drain_timeout.as_secs() / 60
    );
    for adjustment in &checked.adjustments {
        eprintln!(
            "  adjust {}: {} -> {} ({})",
            adjustment.pointer, adjustment.from, adjustment.to, adjustment.reason
        );
    }
}

fn non_empty(value: &Option<String>) -> Option<String> {
    value
        .as_ref()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// aks-engine's `NormalizeAzureRegion`: lowercase, spaces removed.
pub fn normalize_location(location: impl AsRef<str>) -> String {
    location.as_ref().replace(' ', "").to_lowercase()
}

fn minutes(value: i64, default: u64, flag: &str) -> Result<Duration, UserError> {
    match value {
        -1 => Ok(Duration::from_secs(default * 60)),
        1.. => Ok(Duration::from_secs(value.unsigned_abs() * 60)),
        _ => Err(refused(format!(
            "{flag} {value} is not valid: give a positive number of minutes, or -1 for the default ({default})"
        ))),
    }
}

/// True for the forms Go's `uuid.Parse` accepts: canonical, `urn:uuid:`,
/// braces, or 32 hex digits.
pub fn is_uuid(text: &str) -> bool {
    let text = text.strip_prefix("urn:uuid:").unwrap_or(text);
    let text = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(text);
    let hex = |s: &str| s.chars().all(|c| c.is_ascii_hexdigit());
    match text.len() {
        32 => hex(text),
        36 => {
            let parts: Vec<&str> = text.split('-').collect();
            parts.len() == 5
                && parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
                && parts.iter().all(|p| hex(p))
        }
        _ => false,
    }
}

/// The apimodel path an upgrade reads, for callers outside the CLI.
pub fn api_model_path(args: &UpgradeArgs) -> Option<PathBuf> {
    args.api_model.clone().or_else(|| {
        args.deployment_dir
            .as_deref()
            .map(|dir: &Path| dir.join(APIMODEL_FILENAME))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_forms() {
        assert!(is_uuid("8a2ab0d0-36d4-4d3f-9a4a-1b3b0e5b7c11"));
        assert!(is_uuid("{8a2ab0d0-36d4-4d3f-9a4a-1b3b0e5b7c11}"));
        assert!(is_uuid("urn:uuid:8a2ab0d0-36d4-4d3f-9a4a-1b3b0e5b7c11"));
        assert!(is_uuid("8a2ab0d036d44d3f9a4a1b3b0e5b7c11"));
        assert!(!is_uuid(""));
        assert!(!is_uuid("ServicePrincipalClientID"));
        assert!(!is_uuid("8a2ab0d0-36d4-4d3f-9a4a-1b3b0e5b7c1g"));
    }

    #[test]
    fn locations_normalize_like_aks_engine() {
        assert_eq!(normalize_location("West US 2"), "westus2");
        assert_eq!(normalize_location("LOCAL"), "local");
    }

    #[test]
    fn timeouts_default_and_reject_nonsense() {
        assert_eq!(minutes(-1, 60, "--x").unwrap(), Duration::from_secs(3600));
        assert_eq!(minutes(5, 60, "--x").unwrap(), Duration::from_secs(300));
        assert!(minutes(0, 60, "--x").is_err());
        assert!(minutes(-5, 60, "--x").is_err());
    }
}
