//! [`ArmClient`]: typed ARM operations on one subscription.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use serde::de::DeserializeOwned;
use serde_json::json;
use url::Url;

use super::credential::{
    ArmCredential, IdentitySystem, parse_www_authenticate, scope_of_resource,
    tenant_from_authorization_uri,
};
use super::environment::{EnvironmentSource, MetadataEndpoints, arm_endpoint_of_metadata};
use super::http::{Http, Prepared, Reply, RequestBody, strip_query};
use super::lro::{self, LroKind, LroOptions};
use super::types::{
    Deployment, DeploymentOperation, DeploymentRequest, ImageVersion, Page, ResourceGroup,
    VirtualMachine, explain_deployment_failure,
};
use super::{
    ApiProfile, AzureEnvironment, CredentialConfig, Error, ResourceType, Result, RetryPolicy,
};
use crate::model;

/// TLS trust, timeouts and retries of the HTTPS client.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpOptions {
    /// `--ca-file`: an extra PEM root (or bundle) to trust, such as the stamp's CA.
    pub ca_file: Option<PathBuf>,
    /// `SSL_CERT_FILE`: another extra PEM bundle (added to the system roots, not replacing them).
    pub ssl_cert_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// The whole request, answer included.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// Host name overrides (like `curl --resolve`): connect to this address for
    /// that host while still verifying its certificate by name. For simulators
    /// and tests that serve a stamp's real host names on loopback.
    pub resolve: Vec<(String, std::net::SocketAddr)>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            ca_file: None,
            ssl_cert_file: None,
            connect_timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            resolve: Vec::new(),
        }
    }
}

impl HttpOptions {
    /// Defaults, with `ca_file` and `SSL_CERT_FILE` from the process environment.
    pub fn from_process_env(ca_file: Option<PathBuf>) -> Self {
        Self {
            ca_file,
            ssl_cert_file: std::env::var_os("SSL_CERT_FILE")
                .filter(|value| !value.is_empty())
                .map(PathBuf::from),
            ..Self::default()
        }
    }

    pub(crate) fn build(&self) -> Result<Http> {
        let mut files = Vec::new();
        if let Some(path) = &self.ca_file {
            files.push((path.clone(), "the CA file (--ca-file)"));
        }
        if let Some(path) = &self.ssl_cert_file {
            files.push((path.clone(), "the CA bundle (SSL_CERT_FILE)"));
        }
        Http::new(
            &files,
            &self.resolve,
            self.connect_timeout,
            self.request_timeout,
            self.retry.clone(),
        )
    }
}

/// Everything an [`ArmClient`] needs.
#[derive(Debug, Clone)]
pub struct ArmConfig {
    pub environment: AzureEnvironment,
    pub profile: ApiProfile,
    pub credentials: CredentialConfig,
    pub subscription_id: String,
    pub http: HttpOptions,
    /// Refresh a token this long before it expires (at most half its lifetime).
    pub token_refresh_margin: Duration,
}

impl ArmConfig {
    /// A configuration with the profile's default for the environment and default HTTP options.
    pub fn new(
        environment: AzureEnvironment,
        credentials: CredentialConfig,
        subscription_id: impl Into<String>,
    ) -> Self {
        Self {
            profile: ApiProfile::default_for(environment.is_azure_stack),
            environment,
            credentials,
            subscription_id: subscription_id.into(),
            http: HttpOptions::default(),
            token_refresh_margin: Duration::from_secs(300),
        }
    }
}

/// Typed ARM operations on one subscription. Cheap to share behind an `Arc`.
pub struct ArmClient {
    http: Arc<Http>,
    environment: AzureEnvironment,
    profile: ApiProfile,
    subscription_id: String,
    credential: Arc<dyn TokenCredential>,
    own_credential: Option<Arc<ArmCredential>>,
    scope: String,
    base: Url,
}

impl std::fmt::Debug for ArmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmClient")
            .field("environment", &self.environment.name)
            .field(
                "resource_manager_endpoint",
                &self.environment.resource_manager_endpoint,
            )
            .field("profile", &self.profile)
            .field("subscription_id", &self.subscription_id)
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

fn validate_subscription(subscription_id: &str) -> Result<()> {
    azure_core::Uuid::parse_str(subscription_id).map(|_| ()).map_err(|_| {
        Error::Config(format!(
            "subscription id {subscription_id:?} is not a UUID: pass --subscription-id or set it with `az account set`"
        ))
    })
}

/// The subscription: the flag, else `AZURE_SUBSCRIPTION_ID`, else the Azure CLI's
/// default subscription of its active cloud (as aks-engine does). `env` reads
/// environment variables.
pub fn resolve_subscription_id(
    flag: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String> {
    let chosen = match flag.map(str::trim).filter(|s| !s.is_empty()) {
        Some(value) => value.to_owned(),
        None => match env("AZURE_SUBSCRIPTION_ID")
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
        {
            Some(value) => value,
            None => {
                let from_cli = match super::azure_cli_config_dir(env) {
                    Some(dir) => super::subscription_from_azure_cli(&dir)?,
                    None => None,
                };
                from_cli.ok_or_else(|| {
                    Error::Config(
                        "no subscription: pass --subscription-id, set AZURE_SUBSCRIPTION_ID, or choose one with `az account set`".into(),
                    )
                })?
            }
        },
    };
    validate_subscription(&chosen)?;
    Ok(chosen)
}

impl ArmClient {
    /// Builds the client: HTTPS client, tenant discovery (AAD without a tenant),
    /// credential (certificate and key files are read now).
    pub async fn new(config: ArmConfig) -> Result<Self> {
        validate_subscription(&config.subscription_id)?;
        let http = Arc::new(config.http.build()?);
        let tenant = match (
            config.credentials.identity_system,
            &config.credentials.tenant_id,
        ) {
            (IdentitySystem::Adfs, _) => "adfs".to_owned(),
            (IdentitySystem::AzureAd, Some(tenant)) => tenant.clone(),
            (IdentitySystem::AzureAd, None) => {
                discover_tenant(
                    &http,
                    &config.environment,
                    config.profile,
                    &config.subscription_id,
                )
                .await?
            }
        };
        let credential = Arc::new(ArmCredential::new(
            &config.credentials,
            tenant,
            &config.environment.active_directory_endpoint,
            http.clone(),
            config.token_refresh_margin,
        )?);
        Self::assemble(config, http, credential.clone(), Some(credential))
    }

    /// Builds the client on any `azure_core` token credential (for example one of
    /// `azure_identity`'s). `config.credentials` is not used.
    pub fn with_credential(
        config: ArmConfig,
        credential: Arc<dyn TokenCredential>,
    ) -> Result<Self> {
        validate_subscription(&config.subscription_id)?;
        let http = Arc::new(config.http.build()?);
        Self::assemble(config, http, credential, None)
    }

    fn assemble(
        config: ArmConfig,
        http: Arc<Http>,
        credential: Arc<dyn TokenCredential>,
        own_credential: Option<Arc<ArmCredential>>,
    ) -> Result<Self> {
        let base = Url::parse(&config.environment.resource_manager_endpoint).map_err(|_| {
            Error::Config(format!(
                "resource manager endpoint {:?} is not a URL",
                config.environment.resource_manager_endpoint
            ))
        })?;
        Ok(Self {
            http,
            scope: scope_of_resource(&config.environment.token_audience),
            environment: config.environment,
            profile: config.profile,
            subscription_id: config.subscription_id,
            credential,
            own_credential,
            base,
        })
    }

    /// Resolves the environment from `--azure-env` and the apimodel's
    /// `customCloudProfile`, reading the stamp's metadata endpoint when needed.
    pub async fn resolve_environment(
        azure_env: Option<&str>,
        custom: Option<&model::CustomCloudProfile>,
        http: &HttpOptions,
    ) -> Result<AzureEnvironment> {
        match AzureEnvironment::source(azure_env, custom)? {
            EnvironmentSource::Ready(env) => Ok(env),
            EnvironmentSource::Discover {
                metadata_url,
                partial,
            } => {
                let client = http.build()?;
                let doing = format!(
                    "reading the stamp's metadata at {}",
                    strip_query(metadata_url.as_str())
                );
                let url = metadata_url.to_string();
                let reply = client
                    .execute(&doing, || {
                        let url = url.clone();
                        async move { Ok((reqwest::Method::GET, url, None, RequestBody::None)) }
                    })
                    .await?
                    .success(&doing)?;
                let metadata: MetadataEndpoints = reply.json(&doing)?;
                AzureEnvironment::from_metadata(
                    &arm_endpoint_of_metadata(&metadata_url),
                    &metadata,
                    partial.as_deref(),
                )
            }
        }
    }

    pub fn environment(&self) -> &AzureEnvironment {
        &self.environment
    }

    pub fn profile(&self) -> ApiProfile {
        self.profile
    }

    pub fn subscription_id(&self) -> &str {
        &self.subscription_id
    }

    /// The api-version sent for `resource`.
    pub fn api_version(&self, resource: ResourceType) -> &'static str {
        self.profile.api_version(resource)
    }

    /// The credential built by [`ArmClient::new`] (none with [`ArmClient::with_credential`]).
    pub fn credential(&self) -> Option<&Arc<ArmCredential>> {
        self.own_credential.as_ref()
    }

    // ---- URLs ----------------------------------------------------------

    fn url(
        &self,
        segments: &[&str],
        resource: ResourceType,
        extra: &[(&str, &str)],
    ) -> Result<String> {
        let mut url = self.base.clone();
        {
            let mut path = url.path_segments_mut().map_err(|_| {
                Error::Config("the resource manager endpoint cannot be a base URL".into())
            })?;
            path.pop_if_empty();
            for segment in segments {
                if segment.is_empty() || segment.contains('/') {
                    return Err(Error::Config(format!(
                        "{segment:?} is not a valid resource name"
                    )));
                }
                path.push(segment);
            }
        }
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("api-version", self.api_version(resource));
            for (key, value) in extra {
                query.append_pair(key, value);
            }
        }
        Ok(url.to_string())
    }

    fn rg_url(
        &self,
        rg: &str,
        provider_path: &[&str],
        resource: ResourceType,
        extra: &[(&str, &str)],
    ) -> Result<String> {
        let mut segments = vec![
            "subscriptions",
            self.subscription_id.as_str(),
            "resourceGroups",
            rg,
        ];
        segments.extend_from_slice(provider_path);
        self.url(&segments, resource, extra)
    }

    /// Refuses to send the token to another origin than the ARM endpoint
    /// (`nextLink`, `Azure-AsyncOperation` and `Location` come from the wire).
    fn same_origin(&self, url: &str, doing: &str) -> Result<()> {
        let parsed = Url::parse(url)
            .map_err(|_| Error::Config(format!("{doing}: ARM sent an invalid URL {url:?}")))?;
        if parsed.scheme() == self.base.scheme()
            && parsed.host_str().map(str::to_ascii_lowercase)
                == self.base.host_str().map(str::to_ascii_lowercase)
            && parsed.port_or_known_default() == self.base.port_or_known_default()
        {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "{doing}: ARM pointed to {} which is not the resource manager endpoint {}; refusing to send the token there",
                strip_query(url),
                self.environment.resource_manager_endpoint
            )))
        }
    }

    // ---- sending -------------------------------------------------------

    async fn token(&self) -> Result<String> {
        match self
            .credential
            .get_token(&[self.scope.as_str()], None)
            .await
        {
            Ok(token) => Ok(token.token.secret().to_owned()),
            Err(error) => match error.into_downcast::<Error>() {
                Ok(ours) => Err(ours),
                Err(other) => Err(Error::Config(format!(
                    "getting a token for {}: {other}",
                    self.scope
                ))),
            },
        }
    }

    /// Sends one request with retries; a 401 clears the token cache and tries once more.
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: RequestBody,
        doing: &str,
    ) -> Result<Reply> {
        self.same_origin(url, doing)?;
        let mut refreshed = false;
        loop {
            let reply = self
                .http
                .execute(doing, || {
                    let method = method.clone();
                    let body = body.clone();
                    let url = url.to_owned();
                    async move {
                        let token = self.token().await?;
                        Ok::<Prepared, Error>((method, url, Some(token), body))
                    }
                })
                .await?;
            if reply.status == 401
                && !refreshed
                && let Some(credential) = &self.own_credential
            {
                credential.clear_cache().await;
                refreshed = true;
                continue;
            }
            return Ok(reply);
        }
    }

    async fn get_json<T: DeserializeOwned>(&self, url: &str, doing: &str) -> Result<T> {
        self.send(reqwest::Method::GET, url, RequestBody::None, doing)
            .await?
            .success(doing)?
            .json(doing)
    }

    async fn get_optional<T: DeserializeOwned>(&self, url: &str, doing: &str) -> Result<Option<T>> {
        let reply = self
            .send(reqwest::Method::GET, url, RequestBody::None, doing)
            .await?;
        if reply.status == 404 {
            return Ok(None);
        }
        reply.success(doing)?.json(doing).map(Some)
    }

    async fn list_all<T: DeserializeOwned>(&self, first: String, doing: &str) -> Result<Vec<T>> {
        let mut items = Vec::new();
        let mut next = Some(first);
        let mut pages = 0usize;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > 10_000 {
                return Err(Error::Config(format!(
                    "{doing}: more than 10000 pages; ARM keeps sending nextLink"
                )));
            }
            let page: Page<T> = self.get_json(&url, doing).await?;
            items.extend(page.value);
            next = page.next_link.filter(|link| !link.trim().is_empty());
        }
        Ok(items)
    }

    async fn long_running(
        &self,
        method: reqwest::Method,
        url: &str,
        body: RequestBody,
        kind: LroKind,
        options: &LroOptions,
        doing: &str,
    ) -> Result<Option<Reply>> {
        let initial = self.send(method, url, body, doing).await?;
        let get = |poll_url: String| async move {
            self.send(reqwest::Method::GET, &poll_url, RequestBody::None, doing)
                .await
        };
        lro::wait(
            get,
            initial,
            url,
            kind,
            options,
            self.http.retry_policy(),
            doing,
        )
        .await
    }

    // ---- operations ----------------------------------------------------

    /// All VMs of a resource group (every page), sorted by name (case-insensitive).
    pub async fn list_vms(&self, resource_group: &str) -> Result<Vec<VirtualMachine>> {
        let doing = format!("listing the VMs of resource group {resource_group}");
        let url = self.rg_url(
            resource_group,
            &["providers", "Microsoft.Compute", "virtualMachines"],
            ResourceType::VirtualMachines,
            &[],
        )?;
        let mut vms: Vec<VirtualMachine> = self.list_all(url, &doing).await?;
        vms.sort_by_key(|vm| vm.name.to_ascii_lowercase());
        Ok(vms)
    }

    /// One VM with its instance view; `None` when it does not exist.
    pub async fn get_vm(&self, resource_group: &str, name: &str) -> Result<Option<VirtualMachine>> {
        let doing = format!("reading VM {name} in resource group {resource_group}");
        let url = self.rg_url(
            resource_group,
            &["providers", "Microsoft.Compute", "virtualMachines", name],
            ResourceType::VirtualMachines,
            &[("$expand", "instanceView")],
        )?;
        self.get_optional(&url, &doing).await
    }

    /// Deletes a VM and waits until it is gone (already gone is success).
    pub async fn delete_vm(
        &self,
        resource_group: &str,
        name: &str,
        options: &LroOptions,
    ) -> Result<()> {
        let path = ["providers", "Microsoft.Compute", "virtualMachines", name];
        self.delete(
            resource_group,
            "VM",
            name,
            &path,
            ResourceType::VirtualMachines,
            options,
        )
        .await
    }

    /// Deletes a network interface and waits until it is gone.
    pub async fn delete_nic(
        &self,
        resource_group: &str,
        name: &str,
        options: &LroOptions,
    ) -> Result<()> {
        let path = ["providers", "Microsoft.Network", "networkInterfaces", name];
        let kind = "network interface";
        self.delete(
            resource_group,
            kind,
            name,
            &path,
            ResourceType::NetworkInterfaces,
            options,
        )
        .await
    }

    /// Deletes a managed disk and waits until it is gone.
    pub async fn delete_disk(
        &self,
        resource_group: &str,
        name: &str,
        options: &LroOptions,
    ) -> Result<()> {
        let path = ["providers", "Microsoft.Compute", "disks", name];
        self.delete(
            resource_group,
            "managed disk",
            name,
            &path,
            ResourceType::Disks,
            options,
        )
        .await
    }

    /// The one delete: a long-running DELETE followed to its end; already gone is success.
    async fn delete(
        &self,
        resource_group: &str,
        kind: &str,
        name: &str,
        path: &[&str],
        resource: ResourceType,
        options: &LroOptions,
    ) -> Result<()> {
        let doing = format!("deleting {kind} {name} in resource group {resource_group}");
        let url = self.rg_url(resource_group, path, resource, &[])?;
        self.long_running(
            reqwest::Method::DELETE,
            &url,
            RequestBody::None,
            LroKind::Delete,
            options,
            &doing,
        )
        .await
        .map(|_| ())
    }

    /// A marketplace image version (to check an image exists on the stamp before using it).
    pub async fn get_image_version(
        &self,
        location: &str,
        publisher: &str,
        offer: &str,
        sku: &str,
        version: &str,
    ) -> Result<ImageVersion> {
        let doing =
            format!("reading marketplace image {publisher}:{offer}:{sku}:{version} in {location}");
        let url = self.url(
            &[
                "subscriptions",
                &self.subscription_id,
                "providers",
                "Microsoft.Compute",
                "locations",
                location,
                "publishers",
                publisher,
                "artifacttypes",
                "vmimage",
                "offers",
                offer,
                "skus",
                sku,
                "versions",
                version,
            ],
            ResourceType::VirtualMachineImages,
            &[],
        )?;
        self.get_json(&url, &doing).await
    }

    /// The resource group.
    pub async fn get_resource_group(&self, resource_group: &str) -> Result<ResourceGroup> {
        let doing = format!("reading resource group {resource_group}");
        let url = self.url(
            &[
                "subscriptions",
                &self.subscription_id,
                "resourcegroups",
                resource_group,
            ],
            ResourceType::ResourceGroups,
            &[],
        )?;
        self.get_json(&url, &doing).await
    }

    fn deployment_url(&self, resource_group: &str, name: &str) -> Result<String> {
        if name.len() > 64 {
            return Err(Error::Config(format!(
                "deployment name {name:?} is longer than 64 characters, which ARM refuses"
            )));
        }
        self.url(
            &[
                "subscriptions",
                &self.subscription_id,
                "resourcegroups",
                resource_group,
                "providers",
                "Microsoft.Resources",
                "deployments",
                name,
            ],
            ResourceType::Deployments,
            &[],
        )
    }

    /// A deployment; `None` when it does not exist.
    pub async fn get_deployment(
        &self,
        resource_group: &str,
        name: &str,
    ) -> Result<Option<Deployment>> {
        let doing = format!("reading deployment {name} in resource group {resource_group}");
        let url = self.deployment_url(resource_group, name)?;
        self.get_optional(&url, &doing).await
    }

    /// Every operation of a deployment (every page).
    pub async fn list_deployment_operations(
        &self,
        resource_group: &str,
        name: &str,
    ) -> Result<Vec<DeploymentOperation>> {
        let doing = format!(
            "listing the operations of deployment {name} in resource group {resource_group}"
        );
        let url = self.url(
            &[
                "subscriptions",
                &self.subscription_id,
                "resourcegroups",
                resource_group,
                "deployments",
                name,
                "operations",
            ],
            ResourceType::DeploymentOperations,
            &[],
        )?;
        self.list_all(url, &doing).await
    }

    /// Puts a template deployment and waits for it. A failure becomes
    /// [`Error::DeploymentFailed`] whose summary names the failing resource and
    /// the innermost error, read from the deployment's operations.
    pub async fn put_deployment(
        &self,
        resource_group: &str,
        name: &str,
        request: &DeploymentRequest,
        options: &LroOptions,
    ) -> Result<Deployment> {
        let doing = format!("deploying {name} to resource group {resource_group}");
        let url = self.deployment_url(resource_group, name)?;
        let body = RequestBody::Json(json!({ "properties": request }));
        match self
            .long_running(
                reqwest::Method::PUT,
                &url,
                body,
                LroKind::Put,
                options,
                &doing,
            )
            .await
        {
            Ok(Some(reply)) => reply.json(&doing),
            Ok(None) => Err(Error::Config(format!(
                "{doing}: ARM returned no deployment"
            ))),
            Err(Error::OperationFailed { .. }) => {
                Err(self.explain_failure(resource_group, name).await)
            }
            Err(other) => Err(other),
        }
    }

    /// The one-line explanation of a failed deployment, as an error.
    async fn explain_failure(&self, resource_group: &str, name: &str) -> Error {
        let top = match self.get_deployment(resource_group, name).await {
            Ok(Some(deployment)) => deployment.properties.error,
            _ => None,
        };
        let operations = self
            .list_deployment_operations(resource_group, name)
            .await
            .unwrap_or_default();
        let (code, summary) = explain_deployment_failure(top.as_ref(), &operations);
        Error::DeploymentFailed {
            deployment: name.to_owned(),
            resource_group: resource_group.to_owned(),
            code,
            summary,
        }
    }
}

/// Discovers the AAD tenant from ARM's 401 challenge to an unauthenticated request.
async fn discover_tenant(
    http: &Http,
    env: &AzureEnvironment,
    profile: ApiProfile,
    subscription: &str,
) -> Result<String> {
    let url = format!(
        "{}subscriptions/{subscription}?api-version={}",
        env.resource_manager_endpoint,
        profile.api_version(ResourceType::Subscriptions)
    );
    let doing = format!("discovering the AAD tenant of subscription {subscription}");
    let reply = http
        .execute(&doing, || {
            let url = url.clone();
            async move { Ok((reqwest::Method::GET, url, None, RequestBody::None)) }
        })
        .await?;
    let challenge = reply.header("www-authenticate").map(parse_www_authenticate);
    let tenant = challenge
        .as_ref()
        .and_then(|params| params.get("authorization_uri"))
        .and_then(|uri| tenant_from_authorization_uri(uri));
    match (reply.status, tenant) {
        (401, Some(tenant)) => Ok(tenant),
        _ => Err(Error::Config(format!(
            "{doing}: ARM answered {} without a usable WWW-Authenticate challenge; pass --tenant-id or set AZURE_TENANT_ID",
            reply.status
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "d4a1e0c2-3b5f-4c6d-8e7f-0a1b2c3d4e5f";

    #[test]
    fn subscription_comes_from_flag_env_or_azure_cli() {
        let none = |_: &str| None;
        assert_eq!(
            resolve_subscription_id(Some(SUB), &none).expect("flag"),
            SUB
        );
        let env = |name: &str| (name == "AZURE_SUBSCRIPTION_ID").then(|| SUB.to_owned());
        assert_eq!(resolve_subscription_id(None, &env).expect("env"), SUB);

        let home = tempfile::tempdir().expect("tempdir");
        let dir = home.path().join(".azure");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("config"), "[cloud]\nname = AzureStackUser\n").expect("write");
        std::fs::write(
            dir.join("clouds.config"),
            format!("[AzureStackUser]\nsubscription = {SUB}\n"),
        )
        .expect("write");
        let home_path = home.path().to_string_lossy().into_owned();
        let env = move |name: &str| (name == "HOME").then(|| home_path.clone());
        assert_eq!(resolve_subscription_id(None, &env).expect("cli"), SUB);

        let error = resolve_subscription_id(None, &none).unwrap_err();
        assert!(error.to_string().contains("--subscription-id"), "{error}");
        let error = resolve_subscription_id(Some("prod"), &none).unwrap_err();
        assert!(error.to_string().contains("not a UUID"), "{error}");
    }
}
