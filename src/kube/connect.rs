//! Connecting to the cluster's API server: from a kubeconfig (`--kubeconfig`,
//! else `KUBECONFIG` when set; see [`ClusterAccess::choose`]), or — like
//! aks-engine — from a kubeconfig built in memory from the apimodel's `certificateProfile` (CA,
//! `kubeConfigCertificate`, `kubeConfigPrivateKey`) and the master address.
//! The in-memory kubeconfig holds the client key: it is written to disk only
//! through [`write_kubeconfig`], when the user asks.
//!
//! kube-rs' own retry layer is switched off (`default_retry = false`): retries
//! are decided in [`super::retry`] only, so a 429 from a PodDisruptionBudget
//! reaches the drain loop and is reported.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

use super::{Error, Result};
use crate::model::{ContainerService, Secret};

/// The first master's static IP when the apimodel does not set one.
pub const DEFAULT_FIRST_MASTER_IP: &str = "10.240.255.5";
/// VM DNS suffix of public Azure (used when the apimodel has no custom cloud).
pub const AZURE_PUBLIC_VM_DNS_SUFFIX: &str = "cloudapp.azure.com";
const CONTEXT: &str = "aksup";

/// How to reach the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterAccess {
    /// A kubeconfig file; `None` reads `KUBECONFIG` or `~/.kube/config`.
    Kubeconfig {
        path: Option<PathBuf>,
        context: Option<String>,
    },
    /// Built in memory from the apimodel.
    ApiModel(ApiModelAccess),
}

impl ClusterAccess {
    /// The access aksup uses: `--kubeconfig` when given; else `KUBECONFIG`
    /// when set (pass its value, e.g. `std::env::var_os("KUBECONFIG")`); else
    /// the apimodel. `~/.kube/config` is deliberately not a fallback: it may
    /// point at another cluster, while the apimodel names this one.
    pub fn choose(
        kubeconfig_flag: Option<PathBuf>,
        context: Option<String>,
        kubeconfig_env: Option<&std::ffi::OsStr>,
        apimodel: ApiModelAccess,
    ) -> Self {
        match kubeconfig_flag {
            Some(path) => Self::Kubeconfig {
                path: Some(path),
                context,
            },
            None if kubeconfig_env.is_some_and(|value| !value.is_empty()) => Self::Kubeconfig {
                path: None,
                context,
            },
            None => Self::ApiModel(apimodel),
        }
    }
}

/// Options of the apimodel-built connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiModelAccess {
    /// Use this server (`https://host:port`, or `host[:port]`) instead of the
    /// one derived from the apimodel.
    pub server: Option<String>,
}

/// The API server URL of the cluster: `masterProfile.fqdn` when set (deploy
/// writes it); else, for a private cluster, the first master IP
/// (`firstConsecutiveStaticIP`, default 10.240.255.5, reachable from a
/// jumpbox); else `<dnsPrefix>.<location>.<resourceManagerVMDNSSuffix>`.
pub fn master_server(model: &ContainerService, access: &ApiModelAccess) -> Result<String> {
    let with_scheme = |host: &str| {
        if host.starts_with("https://") || host.starts_with("http://") {
            host.to_owned()
        } else {
            format!("https://{host}")
        }
    };
    if let Some(server) = access.server.as_deref().filter(|s| !s.trim().is_empty()) {
        return Ok(with_scheme(server.trim()));
    }
    let master = model
        .properties
        .master_profile
        .as_ref()
        .ok_or_else(|| problem("the api model has no masterProfile"))?;
    if !master.fqdn.trim().is_empty() {
        return Ok(with_scheme(master.fqdn.trim()));
    }
    if model.is_private_cluster() {
        let ip = master.first_consecutive_static_ip.trim();
        return Ok(with_scheme(if ip.is_empty() {
            DEFAULT_FIRST_MASTER_IP
        } else {
            ip
        }));
    }
    if master.dns_prefix.trim().is_empty() || model.location.trim().is_empty() {
        return Err(problem(
            "masterProfile.fqdn is empty and masterProfile.dnsPrefix or location is missing",
        ));
    }
    let suffix = match model.properties.custom_cloud_profile.as_ref() {
        None => AZURE_PUBLIC_VM_DNS_SUFFIX.to_owned(),
        Some(custom) => custom
            .environment
            .as_ref()
            .map(|env| env.resource_manager_vm_dns_suffix.trim().to_owned())
            .filter(|suffix| !suffix.is_empty())
            .ok_or_else(|| {
                problem("masterProfile.fqdn is empty and customCloudProfile.environment.resourceManagerVMDNSSuffix is missing")
            })?,
    };
    Ok(with_scheme(&format!(
        "{}.{}.{}",
        master.dns_prefix.trim(),
        model.location.trim(),
        suffix
    )))
}

fn problem(text: &str) -> Error {
    Error::ApiModelAccess {
        problem: text.to_owned(),
    }
}

/// PEM text of a certificateProfile value: PEM as aks-engine writes it, or
/// base64-encoded PEM.
fn pem_text(value: &str) -> Option<String> {
    let value = value.trim();
    if value.contains("-----BEGIN") {
        return Some(value.to_owned());
    }
    let decoded = STANDARD
        .decode(value.split_whitespace().collect::<String>())
        .ok()?;
    String::from_utf8(decoded)
        .ok()
        .filter(|text| text.contains("-----BEGIN"))
}

/// The kubeconfig document (JSON, which is valid YAML) for the cluster,
/// built from the apimodel. It contains the client private key, hence a [`Secret`].
pub fn kubeconfig_from_apimodel(
    model: &ContainerService,
    access: &ApiModelAccess,
) -> Result<Secret> {
    let server = master_server(model, access)?;
    let profile = model
        .properties
        .certificate_profile
        .as_ref()
        .ok_or_else(|| problem("the api model has no certificateProfile"))?;
    let field = |name: &str, value: &str| {
        pem_text(value)
            .map(|pem| STANDARD.encode(pem))
            .ok_or_else(|| {
                problem(&format!(
                    "certificateProfile.{name} is missing or not a PEM block"
                ))
            })
    };
    let ca = field("caCertificate", &profile.ca_certificate)?;
    let cert = field("kubeConfigCertificate", &profile.kube_config_certificate)?;
    let key = field(
        "kubeConfigPrivateKey",
        profile.kube_config_private_key.expose(),
    )?;
    let cluster = model
        .properties
        .master_profile
        .as_ref()
        .map(|m| m.dns_prefix.clone())
        .unwrap_or_default();
    let document = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": cluster, "cluster": { "server": server, "certificate-authority-data": ca } }],
        "users": [{ "name": format!("{cluster}-admin"), "user": {
            "client-certificate-data": cert,
            "client-key-data": key,
        } }],
        "contexts": [{ "name": CONTEXT, "context": { "cluster": cluster, "user": format!("{cluster}-admin") } }],
        "current-context": CONTEXT,
    });
    serde_json::to_string_pretty(&document)
        .map(Secret::from)
        .map_err(|err| problem(&format!("cannot encode the kubeconfig: {err}")))
}

/// A kube-rs configuration built from the apimodel (in memory only).
pub async fn config_from_apimodel(
    model: &ContainerService,
    access: &ApiModelAccess,
) -> Result<kube::Config> {
    let text = kubeconfig_from_apimodel(model, access)?;
    let kubeconfig = Kubeconfig::from_yaml(text.expose())
        .map_err(|source| Error::Kubeconfig { path: None, source })?;
    let options = KubeConfigOptions {
        context: Some(CONTEXT.to_owned()),
        ..KubeConfigOptions::default()
    };
    kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|source| Error::Kubeconfig { path: None, source })
}

/// Writes the apimodel-built kubeconfig to `path` (mode 0600 on Unix) — only
/// when the user asks for it.
pub fn write_kubeconfig(
    model: &ContainerService,
    access: &ApiModelAccess,
    path: &Path,
) -> Result<()> {
    let text = kubeconfig_from_apimodel(model, access)?;
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path)?;
        file.write_all(text.expose().as_bytes())?;
        file.sync_all()
    };
    write().map_err(|source| Error::WriteKubeconfig {
        path: path.to_owned(),
        source,
    })
}

/// A kube-rs configuration from a kubeconfig file (`None`: `KUBECONFIG` or `~/.kube/config`).
pub async fn config_from_kubeconfig(
    path: Option<&Path>,
    context: Option<&str>,
) -> Result<kube::Config> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let config = match path {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
                path: Some(path.to_owned()),
                source,
            })?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options).await
        }
        None => kube::Config::from_kubeconfig(&options).await,
    };
    config.map_err(|source| Error::Kubeconfig {
        path: path.map(Path::to_owned),
        source,
    })
}

/// A client on `config`, with kube-rs' own retries off (see the module doc).
pub fn client_from_config(mut config: kube::Config) -> Result<kube::Client> {
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|err| Error::Client(Box::new(err)))
}

/// Connects as `access` says. `model` is needed for [`ClusterAccess::ApiModel`].
pub async fn connect(
    access: &ClusterAccess,
    model: Option<&ContainerService>,
) -> Result<kube::Client> {
    let config = match access {
        ClusterAccess::Kubeconfig { path, context } => {
            config_from_kubeconfig(path.as_deref(), context.as_deref()).await?
        }
        ClusterAccess::ApiModel(options) => {
            let model = model.ok_or_else(|| problem("no api model was given"))?;
            config_from_apimodel(model, options).await?
        }
    };
    client_from_config(config)
}
