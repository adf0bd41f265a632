//! Starting the simulator: credentials, seeding, both HTTPS listeners, and the
//! files a client needs (CA, kubeconfig, certificates, apimodel copy).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::arm::{self, ArmApp};
use super::clock::Clock;
use super::faults::FaultSpec;
use super::kube::{KubeSim, KubeSimOptions, Scenario};
use super::tls::{self, Listener, Pki};
use super::util::{b64, new_uuid, random_hex, uuid_from};
use super::world::{Identity, Profile, State, Timings, World};
use crate::model::ApiModel;

/// What to simulate and how.
#[derive(Clone, Debug)]
pub struct SimOptions {
    pub api_model: ApiModel,
    /// Where the ARM listener binds (default `127.0.0.1:0`).
    pub arm_listen: SocketAddr,
    /// Where the Kubernetes listener binds (default `127.0.0.1:0`).
    pub kube_listen: SocketAddr,
    /// Where to write the CA, kubeconfig, certificates, credentials and the
    /// apimodel copy; credentials and the CA found there are reused.
    pub state_dir: Option<PathBuf>,
    /// Workloads; `None` applies the default scenario.
    pub scenario: Option<Scenario>,
    pub faults: Vec<FaultSpec>,
    /// Virtual seconds per real second.
    pub time_scale: f64,
    pub profile: Profile,
    /// VMs (and other list items) per page.
    pub page_size: usize,
    pub timings: Timings,
    /// Default: the apimodel's `masterProfile.dnsPrefix`.
    pub resource_group: Option<String>,
    /// `Retry-After` seconds of long-running operations; default 15 virtual seconds (≥ 1 real).
    pub retry_after: Option<u64>,
    /// How long access tokens stay valid, in real time (whole seconds, at
    /// least 1); default 3599 s. Short lifetimes exercise token refresh.
    pub token_lifetime: Duration,
}

impl SimOptions {
    pub fn new(api_model: ApiModel) -> Self {
        Self {
            api_model,
            arm_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            kube_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir: None,
            scenario: None,
            faults: Vec::new(),
            time_scale: 1.0,
            profile: Profile::default(),
            page_size: 50,
            timings: Timings::default(),
            resource_group: None,
            retry_after: None,
            token_lifetime: super::world::DEFAULT_TOKEN_LIFETIME,
        }
    }
}

/// AAD endpoints of the simulated stamp.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AadEndpoints {
    pub tenant_id: String,
    /// `{arm}/{tenant}`.
    pub authority: String,
    pub token_url_v1: String,
    pub token_url_v2: String,
}

/// ADFS endpoints of the simulated stamp.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdfsEndpoints {
    /// `{arm}/adfs`.
    pub authority: String,
    pub token_url: String,
    pub openid_configuration: String,
}

/// Everything a client needs. Contains secrets (client secret, keys, token).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// `https://127.0.0.1:<port>/`.
    pub arm_url: String,
    pub metadata_url: String,
    /// `https://127.0.0.1:<port>`.
    pub kube_url: String,
    pub ca_pem: String,
    pub ca_file: Option<PathBuf>,
    /// `azure_ad` or `adfs`, from the apimodel (default `azure_ad`).
    pub identity_system: String,
    /// `client_secret` or `client_certificate`, from the apimodel (default `client_secret`).
    pub authentication_method: String,
    pub audience: String,
    pub aad: AadEndpoints,
    pub adfs: AdfsEndpoints,
    pub client_id: String,
    pub client_secret: String,
    /// The service principal's certificate (RSA) and key, for certificate auth.
    pub client_certificate_pem: String,
    pub client_private_key_pem: String,
    pub client_certificate_file: Option<PathBuf>,
    pub client_private_key_file: Option<PathBuf>,
    pub subscription_id: String,
    pub resource_group: String,
    pub location: String,
    /// Kubeconfig text (client certificate `CN=masterclient, O=system:masters`).
    pub kubeconfig: String,
    pub kubeconfig_file: Option<PathBuf>,
    /// A bearer token the Kubernetes API accepts.
    pub kube_token: String,
    /// The apimodel copy pointing at the simulator.
    pub api_model_file: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
}

/// Errors of starting the simulator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] crate::model::ValidationError),
    #[error("cannot seed the cluster")]
    Seed(#[from] super::seed::Error),
    #[error("cannot set up TLS")]
    Tls(#[from] tls::Error),
    #[error("cannot {step}")]
    Io {
        step: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot apply the scenario")]
    Scenario(#[from] super::kube::Error),
    #[error("cannot write the apimodel copy")]
    Model(#[from] crate::model::Error),
}

fn io(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let step = step.into();
    move |source| Error::Io { step, source }
}

/// Long-lived identifiers and secrets, kept in `credentials.json` of the state
/// dir so a restarted simulator hands out the same ones.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Credentials {
    subscription_id: String,
    tenant_id: String,
    client_id: String,
    client_secret: String,
    kube_token: String,
    sp_certificate_pem: String,
    sp_private_key_pem: String,
    kube_client_certificate_pem: String,
    kube_client_private_key_pem: String,
}

impl Credentials {
    fn generate(pki: &Pki) -> Result<Self, Error> {
        let sp = Pki::issue_service_principal("aksup-simulator-service-principal")?;
        let kube_client = pki.issue_client("masterclient", Some("system:masters"))?;
        Ok(Self {
            subscription_id: new_uuid(),
            tenant_id: new_uuid(),
            client_id: new_uuid(),
            client_secret: format!("sim~{}", random_hex(20)),
            kube_token: random_hex(24),
            sp_certificate_pem: sp.cert_pem,
            sp_private_key_pem: sp.key_pem,
            kube_client_certificate_pem: kube_client.cert_pem,
            kube_client_private_key_pem: kube_client.key_pem,
        })
    }
}

/// A running simulator.
pub struct Simulator {
    pub endpoints: Endpoints,
    world: World,
    arm: Listener,
    kube: Listener,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("arm_url", &self.endpoints.arm_url)
            .field("kube_url", &self.endpoints.kube_url)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// Seeds the world from the apimodel and serves both listeners.
    pub async fn start(options: SimOptions) -> Result<Self, Error> {
        options.api_model.validate()?;
        let view = options.api_model.view().clone();
        let master = view.properties.master_profile.clone().unwrap_or_default();

        if let Some(dir) = &options.state_dir {
            std::fs::create_dir_all(dir)
                .map_err(io(format!("create the state dir {}", dir.display())))?;
        }
        let pki = match &options.state_dir {
            Some(dir) => Pki::load_or_generate(dir)?,
            None => Pki::generate()?,
        };
        let credentials = match options
            .state_dir
            .as_deref()
            .map(|d| d.join("credentials.json"))
        {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(&path)
                    .map_err(io(format!("read {}", path.display())))?;
                match serde_json::from_str(&text) {
                    Ok(credentials) => credentials,
                    Err(_) => Credentials::generate(&pki)?,
                }
            }
            _ => Credentials::generate(&pki)?,
        };

        let arm_socket = std::net::TcpListener::bind(options.arm_listen)
            .map_err(io(format!("listen on {} (ARM)", options.arm_listen)))?;
        let kube_socket = std::net::TcpListener::bind(options.kube_listen).map_err(io(format!(
            "listen on {} (Kubernetes)",
            options.kube_listen
        )))?;
        let arm_addr = arm_socket
            .local_addr()
            .map_err(io("read the ARM address"))?;
        let kube_addr = kube_socket
            .local_addr()
            .map_err(io("read the Kubernetes address"))?;
        let host = |addr: SocketAddr| {
            if addr.ip().is_unspecified() {
                format!("127.0.0.1:{}", addr.port())
            } else {
                addr.to_string()
            }
        };
        let base = format!("https://{}", host(arm_addr));
        let kube_url = format!("https://{}", host(kube_addr));

        let cloud = view
            .properties
            .custom_cloud_profile
            .clone()
            .unwrap_or_default();
        let identity_system = if cloud.identity_system.is_empty() {
            "azure_ad".to_owned()
        } else {
            cloud.identity_system.clone()
        };
        let authentication_method = if cloud.authentication_method.is_empty() {
            "client_secret".to_owned()
        } else {
            cloud.authentication_method.clone()
        };
        let location = if view.location.is_empty() {
            "local".to_owned()
        } else {
            view.location.to_ascii_lowercase().replace(' ', "")
        };
        let resource_group = options
            .resource_group
            .clone()
            .unwrap_or_else(|| master.dns_prefix.clone());
        let audience = format!(
            "https://management.azurestack.local/{}",
            uuid_from(&format!("{}#audience", master.dns_prefix))
        );

        let sp_der = tls::pem_to_der(&credentials.sp_certificate_pem).unwrap_or_default();
        let sp_key =
            rcgen::KeyPair::from_pem(&credentials.sp_private_key_pem).map_err(tls::Error::from)?;
        let identity = Identity {
            tenant_id: credentials.tenant_id.clone(),
            client_id: credentials.client_id.clone(),
            client_secret: credentials.client_secret.clone(),
            certificate_der: sp_der,
            public_key_der: rcgen::PublicKeyData::subject_public_key_info(&sp_key),
            audience: audience.clone(),
        };
        let mut state = State::new(
            credentials.subscription_id.clone(),
            resource_group.clone(),
            location.clone(),
            identity,
        );
        state.profile = options.profile;
        state.page_size = options.page_size.max(1);
        state.token_lifetime = options.token_lifetime;
        let nodes = super::seed::seed(&options.api_model, &mut state)?;

        let clock = Clock::new(options.time_scale);
        // The real KubeSimOptions has more fields, all defaulted.
        #[allow(clippy::needless_update)]
        let kube = KubeSim::new(
            clock.clone(),
            KubeSimOptions {
                bearer_tokens: vec![credentials.kube_token.clone()],
                ..Default::default()
            },
        );
        let world = World::new(state, clock.clone(), kube.clone(), options.timings.clone());
        for node in nodes {
            let name = node.name.clone();
            kube.register_node(node);
            kube.set_node_ready(&name, true);
        }
        let scenario = options
            .scenario
            .clone()
            .unwrap_or_else(Scenario::default_scenario);
        kube.apply_scenario(&scenario)?;
        arm::install_faults(&world, options.faults.clone());

        let retry_after = options
            .retry_after
            .unwrap_or_else(|| arm::default_retry_after(clock.scale()));
        let app = ArmApp::new(
            world.clone(),
            base.clone(),
            identity_system.clone(),
            retry_after,
        );
        let arm_listener = tls::serve(arm_socket, arm::router(app), pki.server_config(false)?)
            .map_err(io("serve the ARM listener"))?;
        let kube_listener = tls::serve(kube_socket, kube.router(), pki.server_config(true)?)
            .map_err(io("serve the Kubernetes listener"))?;

        let kubeconfig = kubeconfig_text(&master.dns_prefix, &kube_url, pki.ca_pem(), &credentials);
        let tenant = credentials.tenant_id.clone();
        let mut endpoints = Endpoints {
            arm_url: format!("{base}/"),
            metadata_url: format!("{base}/metadata/endpoints?api-version=2015-01-01"),
            kube_url: kube_url.clone(),
            ca_pem: pki.ca_pem().to_owned(),
            ca_file: None,
            identity_system,
            authentication_method,
            audience,
            aad: AadEndpoints {
                tenant_id: tenant.clone(),
                authority: format!("{base}/{tenant}"),
                token_url_v1: format!("{base}/{tenant}/oauth2/token"),
                token_url_v2: format!("{base}/{tenant}/oauth2/v2.0/token"),
            },
            adfs: AdfsEndpoints {
                authority: format!("{base}/adfs"),
                token_url: format!("{base}/adfs/oauth2/token"),
                openid_configuration: format!("{base}/adfs/.well-known/openid-configuration"),
            },
            client_id: credentials.client_id.clone(),
            client_secret: credentials.client_secret.clone(),
            client_certificate_pem: credentials.sp_certificate_pem.clone(),
            client_private_key_pem: credentials.sp_private_key_pem.clone(),
            client_certificate_file: None,
            client_private_key_file: None,
            subscription_id: credentials.subscription_id.clone(),
            resource_group,
            location,
            kubeconfig,
            kubeconfig_file: None,
            kube_token: credentials.kube_token.clone(),
            api_model_file: None,
            state_dir: options.state_dir.clone(),
        };
        if let Some(dir) = &options.state_dir {
            write_state_dir(
                dir,
                &pki,
                &credentials,
                &options.api_model,
                &mut endpoints,
                &kube_addr,
            )?;
        }
        Ok(Self {
            endpoints,
            world,
            arm: arm_listener,
            kube: kube_listener,
        })
    }

    /// The shared world (ARM state, clock, faults, request log).
    pub fn world(&self) -> &World {
        &self.world
    }

    /// The Kubernetes side.
    pub fn kube(&self) -> &KubeSim {
        self.world.kube()
    }

    pub fn arm_addr(&self) -> SocketAddr {
        self.arm.addr
    }

    pub fn kube_addr(&self) -> SocketAddr {
        self.kube.addr
    }

    /// Stops both listeners and waits for them.
    pub async fn shutdown(self) {
        self.arm.handle.shutdown();
        self.kube.handle.shutdown();
        let _ = self.arm.task.await;
        let _ = self.kube.task.await;
    }
}

fn kubeconfig_text(name: &str, server: &str, ca_pem: &str, credentials: &Credentials) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: {name}\ncontexts:\n- context:\n    cluster: {name}\n    user: {name}-admin\n  name: {name}\ncurrent-context: {name}\npreferences: {{}}\nusers:\n- name: {name}-admin\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n",
        ca = b64(ca_pem.as_bytes()),
        cert = b64(credentials.kube_client_certificate_pem.as_bytes()),
        key = b64(credentials.kube_client_private_key_pem.as_bytes()),
    )
}

fn write_state_dir(
    dir: &Path,
    pki: &Pki,
    credentials: &Credentials,
    model: &ApiModel,
    endpoints: &mut Endpoints,
    kube_addr: &SocketAddr,
) -> Result<(), Error> {
    let write = |name: &str, contents: &str, secret: bool| -> Result<PathBuf, Error> {
        let path = dir.join(name);
        tls::write_file(&path, contents.as_bytes(), secret)
            .map_err(io(format!("write {}", path.display())))?;
        Ok(path)
    };
    pki.save(dir)
        .map_err(io(format!("write the CA into {}", dir.display())))?;
    endpoints.ca_file = Some(dir.join("ca.crt"));
    write(
        "credentials.json",
        &serde_json::to_string_pretty(credentials).expect("serializable"),
        true,
    )?;
    endpoints.client_certificate_file =
        Some(write("client.crt", &credentials.sp_certificate_pem, false)?);
    endpoints.client_private_key_file =
        Some(write("client.key", &credentials.sp_private_key_pem, true)?);
    write(
        "client.pem",
        &format!(
            "{}{}",
            credentials.sp_certificate_pem, credentials.sp_private_key_pem
        ),
        true,
    )?;
    write(
        "kubeclient.crt",
        &credentials.kube_client_certificate_pem,
        false,
    )?;
    write(
        "kubeclient.key",
        &credentials.kube_client_private_key_pem,
        true,
    )?;
    endpoints.kubeconfig_file = Some(write("kubeconfig", &endpoints.kubeconfig, true)?);

    let copy = apimodel_copy(model, endpoints, pki, credentials, kube_addr)?;
    let path = dir.join("apimodel.json");
    copy.save(&path)?;
    endpoints.api_model_file = Some(path);
    write(
        "simulator.json",
        &serde_json::to_string_pretty(endpoints).expect("serializable"),
        true,
    )?;
    Ok(())
}

/// The apimodel with its cloud profile, certificates and master FQDN pointing at the simulator.
fn apimodel_copy(
    model: &ApiModel,
    endpoints: &Endpoints,
    pki: &Pki,
    credentials: &Credentials,
    kube_addr: &SocketAddr,
) -> Result<ApiModel, Error> {
    let base = endpoints.arm_url.clone();
    let login = if endpoints.identity_system == "adfs" {
        endpoints.adfs.authority.clone() + "/"
    } else {
        base.clone()
    };
    let environment = json!({
        "name": "AzureStackCloud",
        "managementPortalURL": format!("{base}portal/"),
        "publishSettingsURL": "",
        "serviceManagementEndpoint": endpoints.audience,
        "resourceManagerEndpoint": base,
        "activeDirectoryEndpoint": login,
        "galleryEndpoint": format!("{base}gallery/"),
        "keyVaultEndpoint": "https://vault.local.azurestack.external/",
        "graphEndpoint": format!("{base}graph/"),
        "serviceBusEndpoint": "",
        "batchManagementEndpoint": "",
        "storageEndpointSuffix": "local.azurestack.external",
        "sqlDatabaseDNSSuffix": "",
        "trafficManagerDNSSuffix": "",
        "keyVaultDNSSuffix": "vault.local.azurestack.external",
        "serviceBusEndpointSuffix": "",
        "serviceManagementVMDNSSuffix": "",
        "resourceManagerVMDNSSuffix": "cloudapp.local.azurestack.external",
        "containerRegistryDNSSuffix": "",
        "tokenAudience": endpoints.audience,
    });
    let key_pem = std::fs::read_to_string(
        endpoints
            .state_dir
            .as_deref()
            .unwrap_or(Path::new("."))
            .join("ca.key"),
    )
    .unwrap_or_default();
    let mut copy = model.clone();
    let host = if kube_addr.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        kube_addr.ip().to_string()
    };
    let sets: Vec<(&str, Value)> = vec![
        ("/location", json!(endpoints.location)),
        ("/properties/customCloudProfile/environment", environment),
        (
            "/properties/customCloudProfile/identitySystem",
            json!(endpoints.identity_system),
        ),
        (
            "/properties/customCloudProfile/authenticationMethod",
            json!(endpoints.authentication_method),
        ),
        (
            "/properties/customCloudProfile/portalURL",
            json!(format!("{base}portal/")),
        ),
        (
            "/properties/masterProfile/fqdn",
            json!(format!("{host}:{}", kube_addr.port())),
        ),
        (
            "/properties/certificateProfile/caCertificate",
            json!(pki.ca_pem()),
        ),
        (
            "/properties/certificateProfile/caPrivateKey",
            json!(key_pem),
        ),
        (
            "/properties/certificateProfile/kubeConfigCertificate",
            json!(credentials.kube_client_certificate_pem),
        ),
        (
            "/properties/certificateProfile/kubeConfigPrivateKey",
            json!(credentials.kube_client_private_key_pem),
        ),
        (
            "/properties/servicePrincipalProfile/clientId",
            json!(credentials.client_id),
        ),
        (
            "/properties/servicePrincipalProfile/secret",
            json!(credentials.client_secret),
        ),
    ];
    for (pointer, value) in sets {
        copy.set(pointer, value)?;
    }
    Ok(copy)
}
