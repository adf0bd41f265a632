//! `aksup simulator serve`: run the stamp simulator until interrupted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;

use crate::model::ApiModel;
use crate::sim::faults::FaultSpec;
use crate::sim::kube::Scenario;
use crate::sim::{Endpoints, Profile, SimOptions, Simulator};

#[derive(Debug, clap::Args)]
pub struct SimulatorArgs {
    #[command(subcommand)]
    pub command: SimulatorCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum SimulatorCommand {
    /// Serve a simulated Azure Stack Hub stamp and cluster seeded from an apimodel.
    Serve(ServeArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Human,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The apimodel.json written by `aks-engine-azurestack deploy`.
    #[arg(short = 'm', long, value_name = "PATH")]
    pub api_model: PathBuf,
    /// Address of the ARM endpoint (the Kubernetes API listens on the same IP, another port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Address of the Kubernetes API (default: the --listen IP, any free port).
    #[arg(long, value_name = "ADDR")]
    pub kube_listen: Option<SocketAddr>,
    /// Directory for the CA, kubeconfig, certificates, credentials and the apimodel copy.
    /// Credentials and CA found there are reused.
    #[arg(long, value_name = "DIR", default_value = "aksup-simulator")]
    pub state_dir: PathBuf,
    /// Workloads to create (JSON); default: the built-in scenario.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Faults to install at start (JSON: {"faults": [...]}).
    #[arg(long, value_name = "FILE")]
    pub faults: Option<PathBuf>,
    /// Virtual seconds per real second (VM create ~4 min, boot ~2 min at 1).
    #[arg(long, value_name = "N", default_value_t = 1.0)]
    pub time_scale: f64,
    /// api-version profile of the stamp.
    #[arg(long, value_name = "PROFILE", default_value = "2020-09-01-hybrid", value_parser = ["2020-09-01-hybrid", "2019-03-01-hybrid"])]
    pub profile: String,
    /// Items per page of list answers (VMs, NICs, disks).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub page_size: usize,
    /// Resource group name (default: the apimodel's dnsPrefix).
    #[arg(short = 'g', long, value_name = "NAME")]
    pub resource_group: Option<String>,
    /// Output format of the startup summary.
    #[arg(short = 'o', long, value_enum, default_value = "human")]
    pub output: OutputFormat,
}

pub async fn run(args: SimulatorArgs) -> anyhow::Result<()> {
    match args.command {
        SimulatorCommand::Serve(args) => serve(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let model = ApiModel::load(&args.api_model)
        .with_context(|| format!("cannot load {}", args.api_model.display()))?;
    let mut options = SimOptions::new(model);
    options.arm_listen = args.listen;
    options.kube_listen = args
        .kube_listen
        .unwrap_or_else(|| SocketAddr::new(args.listen.ip(), 0));
    options.state_dir = Some(args.state_dir.clone());
    options.time_scale = args.time_scale;
    options.profile = Profile::parse(&args.profile).unwrap_or_default();
    options.page_size = args.page_size;
    options.resource_group = args.resource_group.clone();
    if let Some(path) = &args.scenario {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the scenario {}", path.display()))?;
        options.scenario = Some(
            Scenario::from_json(&text)
                .with_context(|| format!("invalid scenario {}", path.display()))?,
        );
    }
    if let Some(path) = &args.faults {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the fault file {}", path.display()))?;
        options.faults = FaultSpec::parse_list(&text)
            .with_context(|| format!("invalid fault file {}", path.display()))?;
    }
    // Handlers first, so a client that reads the summary can stop us at once.
    let interrupted = interrupt_signal()?;
    let simulator = Simulator::start(options)
        .await
        .context("cannot start the simulator")?;
    let summary = match args.output {
        OutputFormat::Json => serde_json::to_string(&json(&simulator.endpoints)?)? + "\n",
        OutputFormat::Human => human(&simulator.endpoints, args.time_scale),
    };
    {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(summary.as_bytes())?;
        stdout.flush()?;
    }
    interrupted.await;
    simulator.shutdown().await;
    Ok(())
}

/// A future that completes on Ctrl-C or SIGTERM; the handlers are installed now.
fn interrupt_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = term.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// The environment variables an operator exports so that `aksup upgrade`,
/// `kubectl` and the Azure SDKs reach the simulator with its credentials,
/// sorted by name: the service principal (`AZURE_CLIENT_ID`,
/// `AZURE_CLIENT_SECRET`, `AZURE_SUBSCRIPTION_ID`, and `AZURE_TENANT_ID` on
/// AAD), the CA (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`) and `KUBECONFIG`.
pub fn environment(e: &Endpoints) -> BTreeMap<&'static str, String> {
    let mut vars = BTreeMap::from([
        ("AZURE_CLIENT_ID", e.client_id.clone()),
        ("AZURE_CLIENT_SECRET", e.client_secret.clone()),
        ("AZURE_SUBSCRIPTION_ID", e.subscription_id.clone()),
    ]);
    if e.identity_system != "adfs" {
        vars.insert("AZURE_TENANT_ID", e.aad.tenant_id.clone());
    }
    if let Some(ca) = &e.ca_file {
        let ca = ca.display().to_string();
        vars.insert("SSL_CERT_FILE", ca.clone());
        vars.insert("REQUESTS_CA_BUNDLE", ca);
    }
    if let Some(kubeconfig) = &e.kubeconfig_file {
        vars.insert("KUBECONFIG", kubeconfig.display().to_string());
    }
    vars
}

/// The `-o json` summary: the endpoints and, under `environment`, the
/// variables of [`environment`].
fn json(e: &Endpoints) -> anyhow::Result<serde_json::Value> {
    let mut document = serde_json::to_value(e)?;
    if let Some(object) = document.as_object_mut() {
        object.insert(
            "environment".to_owned(),
            serde_json::to_value(environment(e))?,
        );
    }
    Ok(document)
}

/// `value` as one POSIX shell word.
fn shell_word(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:@%+=,".contains(c));
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

fn path_text(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "-".to_owned())
}

fn human(e: &Endpoints, scale: f64) -> String {
    let rows = [
        ("ARM endpoint", e.arm_url.clone()),
        ("Metadata", e.metadata_url.clone()),
        ("Kubernetes API", e.kube_url.clone()),
        ("CA file", path_text(&e.ca_file)),
        ("Identity system", e.identity_system.clone()),
        ("Auth method", e.authentication_method.clone()),
        ("Token audience", e.audience.clone()),
        ("AAD tenant", e.aad.tenant_id.clone()),
        ("AAD token (v1)", e.aad.token_url_v1.clone()),
        ("AAD token (v2)", e.aad.token_url_v2.clone()),
        ("ADFS token", e.adfs.token_url.clone()),
        ("Client ID", e.client_id.clone()),
        ("Client secret", e.client_secret.clone()),
        ("Client certificate", path_text(&e.client_certificate_file)),
        ("Client private key", path_text(&e.client_private_key_file)),
        ("Subscription", e.subscription_id.clone()),
        ("Resource group", e.resource_group.clone()),
        ("Location", e.location.clone()),
        ("Kubeconfig", path_text(&e.kubeconfig_file)),
        ("Kubernetes token", e.kube_token.clone()),
        ("Apimodel copy", path_text(&e.api_model_file)),
        ("Time scale", format!("{scale}x")),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut text = String::from("Simulator ready (Ctrl-C to stop).\n");
    for (key, value) in rows {
        text.push_str(&format!("  {key:<width$}  {value}\n"));
    }
    text.push_str("\nEnvironment (aksup, kubectl, Azure SDKs):\n");
    for (name, value) in environment(e) {
        text.push_str(&format!("  export {name}={}\n", shell_word(&value)));
    }
    text.push_str(&format!(
        "\nUpgrade against it (with the environment above):\n  aksup upgrade --api-model {} --location {} --resource-group {} \\\n    --identity-system {} --azure-env AzureStackCloud --upgrade-version VERSION\n",
        shell_word(&path_text(&e.api_model_file)),
        shell_word(&e.location),
        shell_word(&e.resource_group),
        e.identity_system,
    ));
    text.push_str(&format!(
        "Trust the CA: export SSL_CERT_FILE={0} REQUESTS_CA_BUNDLE={0}\n",
        shell_word(&path_text(&e.ca_file))
    ));
    text
}
