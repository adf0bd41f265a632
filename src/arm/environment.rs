//! Cloud environments: endpoints and the token audience.

use serde::Deserialize;
use url::Url;

use super::{Error, Result};
use crate::model;

/// The endpoints aksup needs to talk to one cloud.
///
/// URLs are kept with a trailing slash. The token audience is always taken
/// from the environment (`serviceManagementEndpoint`, else `tokenAudience`,
/// or the metadata's `authentication.audiences[0]`), never from the ARM URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureEnvironment {
    /// `AzureStackCloud`, `AzurePublicCloud`, ...
    pub name: String,
    /// `https://management.<region>.<fqdn>/`
    pub resource_manager_endpoint: String,
    /// `https://login.microsoftonline.com/` (AAD) or `https://adfs.<region>.<fqdn>/adfs/` (ADFS).
    pub active_directory_endpoint: String,
    /// The `resource` of token requests.
    pub token_audience: String,
    /// `cloudapp.<fqdn>` on a stamp.
    pub resource_manager_vm_dns_suffix: String,
    /// True for an Azure Stack Hub stamp.
    pub is_azure_stack: bool,
}

/// The stamp's `GET {arm}/metadata/endpoints` answer (fields we use).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct MetadataEndpoints {
    pub gallery_endpoint: String,
    pub graph_endpoint: String,
    pub portal_endpoint: String,
    pub authentication: MetadataAuthentication,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct MetadataAuthentication {
    pub login_endpoint: String,
    pub audiences: Vec<String>,
}

/// Where the environment comes from, decided from `--azure-env` and the apimodel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvironmentSource {
    /// Everything is known.
    Ready(AzureEnvironment),
    /// Fetch the stamp's metadata at `metadata_url`; fields the apimodel has win.
    Discover {
        metadata_url: Url,
        partial: Option<Box<model::Environment>>,
    },
}

pub(crate) const AZURE_STACK_CLOUD: &str = "AzureStackCloud";

fn with_slash(url: &str) -> String {
    let trimmed = url.trim();
    if trimmed.is_empty() || trimmed.ends_with('/') {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/")
    }
}

fn require_https(field: &str, value: &str) -> Result<()> {
    match Url::parse(value) {
        Ok(url) if url.scheme() == "https" && url.host_str().is_some() => Ok(()),
        _ => Err(Error::Config(format!(
            "{field} {value:?} is not an https URL; fix customCloudProfile.environment in the apimodel"
        ))),
    }
}

impl AzureEnvironment {
    /// A named public cloud, as `--azure-env` names it (aks-engine's names).
    pub fn named(name: &str) -> Result<Self> {
        let (canonical, arm, login, audience, dns) = match name.trim().to_ascii_lowercase().as_str()
        {
            "azurepubliccloud" | "azurecloud" | "" => (
                "AzurePublicCloud",
                "https://management.azure.com/",
                "https://login.microsoftonline.com/",
                "https://management.core.windows.net/",
                "cloudapp.azure.com",
            ),
            "azurechinacloud" => (
                "AzureChinaCloud",
                "https://management.chinacloudapi.cn/",
                "https://login.chinacloudapi.cn/",
                "https://management.core.chinacloudapi.cn/",
                "cloudapp.chinacloudapi.cn",
            ),
            "azureusgovernmentcloud" | "azureusgovernment" => (
                "AzureUSGovernmentCloud",
                "https://management.usgovcloudapi.net/",
                "https://login.microsoftonline.us/",
                "https://management.core.usgovcloudapi.net/",
                "cloudapp.usgovcloudapi.net",
            ),
            "azuregermancloud" => (
                "AzureGermanCloud",
                "https://management.microsoftazure.de/",
                "https://login.microsoftonline.de/",
                "https://management.core.cloudapi.de/",
                "cloudapp.microsoftazure.de",
            ),
            "azurestackcloud" => {
                return Err(Error::Config(
                    "--azure-env AzureStackCloud needs the apimodel's customCloudProfile (environment or portalURL) to find the stamp's endpoints".into(),
                ));
            }
            _ => {
                return Err(Error::Config(format!(
                    "unknown --azure-env {name:?}: use AzureStackCloud, AzurePublicCloud, AzureChinaCloud, AzureUSGovernmentCloud or AzureGermanCloud"
                )));
            }
        };
        Ok(Self {
            name: canonical.to_owned(),
            resource_manager_endpoint: arm.to_owned(),
            active_directory_endpoint: login.to_owned(),
            token_audience: audience.to_owned(),
            resource_manager_vm_dns_suffix: dns.to_owned(),
            is_azure_stack: false,
        })
    }

    /// From the apimodel's `customCloudProfile.environment`, when it has the
    /// ARM endpoint, the login endpoint and an audience.
    pub fn from_model(env: &model::Environment) -> Result<Self> {
        let audience = if !env.service_management_endpoint.trim().is_empty() {
            &env.service_management_endpoint
        } else {
            &env.token_audience
        };
        let missing: Vec<&str> = [
            ("resourceManagerEndpoint", &env.resource_manager_endpoint),
            ("activeDirectoryEndpoint", &env.active_directory_endpoint),
            ("serviceManagementEndpoint (or tokenAudience)", audience),
        ]
        .into_iter()
        .filter(|(_, value)| value.trim().is_empty())
        .map(|(name, _)| name)
        .collect();
        if !missing.is_empty() {
            return Err(Error::Config(format!(
                "customCloudProfile.environment lacks {}; add it to the apimodel or set portalURL so aksup can read the stamp's metadata",
                missing.join(", ")
            )));
        }
        require_https(
            "resourceManagerEndpoint",
            env.resource_manager_endpoint.trim(),
        )?;
        require_https(
            "activeDirectoryEndpoint",
            env.active_directory_endpoint.trim(),
        )?;
        Ok(Self {
            name: if env.name.trim().is_empty() {
                AZURE_STACK_CLOUD.to_owned()
            } else {
                env.name.trim().to_owned()
            },
            resource_manager_endpoint: with_slash(&env.resource_manager_endpoint),
            active_directory_endpoint: with_slash(&env.active_directory_endpoint),
            token_audience: audience.trim().to_owned(),
            resource_manager_vm_dns_suffix: env.resource_manager_vm_dns_suffix.trim().to_owned(),
            is_azure_stack: true,
        })
    }

    /// From the stamp's metadata answer, read at `arm_endpoint`; fields set in
    /// `partial` (the apimodel) win over the metadata.
    pub fn from_metadata(
        arm_endpoint: &str,
        metadata: &MetadataEndpoints,
        partial: Option<&model::Environment>,
    ) -> Result<Self> {
        let mut env = partial.cloned().unwrap_or_default();
        if env.resource_manager_endpoint.trim().is_empty() {
            env.resource_manager_endpoint = arm_endpoint.to_owned();
        }
        if env.active_directory_endpoint.trim().is_empty() {
            env.active_directory_endpoint = metadata.authentication.login_endpoint.clone();
        }
        if env.service_management_endpoint.trim().is_empty() && env.token_audience.trim().is_empty()
        {
            env.service_management_endpoint = metadata
                .authentication
                .audiences
                .first()
                .cloned()
                .unwrap_or_default();
        }
        if env.resource_manager_vm_dns_suffix.trim().is_empty()
            && let Ok(url) = Url::parse(arm_endpoint)
            && let Some(host) = url.host_str()
            && let Some((_, rest)) = host.split_once('.')
            && let Some((_, fqdn)) = rest.split_once('.')
        {
            // management.<region>.<fqdn> -> cloudapp.<fqdn>
            env.resource_manager_vm_dns_suffix = format!("cloudapp.{fqdn}");
        }
        Self::from_model(&env)
    }

    /// True when the login endpoint is an ADFS one (`…/adfs/`).
    pub fn login_is_adfs(&self) -> bool {
        self.active_directory_endpoint
            .trim_end_matches('/')
            .to_ascii_lowercase()
            .ends_with("/adfs")
    }

    /// Decides where the environment comes from. `azure_env` is `--azure-env`;
    /// `custom` is the apimodel's `customCloudProfile`.
    ///
    /// - With a `customCloudProfile` (an Azure Stack cluster), `--azure-env`
    ///   must be absent or `AzureStackCloud`; the profile's environment is used
    ///   when complete, else the metadata endpoint derived from `portalURL`.
    /// - Without one, `--azure-env` names a public cloud (default `AzurePublicCloud`).
    pub fn source(
        azure_env: Option<&str>,
        custom: Option<&model::CustomCloudProfile>,
    ) -> Result<EnvironmentSource> {
        let Some(custom) = custom else {
            return Ok(EnvironmentSource::Ready(Self::named(
                azure_env.unwrap_or("AzurePublicCloud"),
            )?));
        };
        if let Some(name) = azure_env
            && !name.trim().eq_ignore_ascii_case(AZURE_STACK_CLOUD)
        {
            return Err(Error::Config(format!(
                "--azure-env {name:?} does not match the apimodel, which describes an Azure Stack Hub cluster (customCloudProfile); use --azure-env AzureStackCloud or leave it out"
            )));
        }
        if let Some(env) = &custom.environment
            && let Ok(ready) = Self::from_model(env)
        {
            return Ok(EnvironmentSource::Ready(ready));
        }
        if custom.portal_url.trim().is_empty() {
            // Report what the environment lacks, or that nothing is there.
            return match &custom.environment {
                Some(env) => Self::from_model(env).map(EnvironmentSource::Ready),
                None => Err(Error::Config(
                    "the apimodel's customCloudProfile has neither an environment nor a portalURL; add portalURL (https://portal.<region>.<fqdn>/)".into(),
                )),
            };
        }
        Ok(EnvironmentSource::Discover {
            metadata_url: metadata_url_from_portal(&custom.portal_url)?,
            partial: custom.environment.clone().map(Box::new),
        })
    }
}

/// The stamp's metadata URL from its portal URL, as aks-engine derives it:
/// `https://portal.<region>.<fqdn>/` →
/// `https://management.<region>.<fqdn>/metadata/endpoints?api-version=2015-01-01`.
pub fn metadata_url_from_portal(portal_url: &str) -> Result<Url> {
    let bad = || {
        Error::Config(format!(
            "portalURL {portal_url:?} is not of the form https://portal.<region>.<fqdn>/; fix customCloudProfile.portalURL in the apimodel"
        ))
    };
    let url = Url::parse(portal_url.trim()).map_err(|_| bad())?;
    if url.scheme() != "https" {
        return Err(bad());
    }
    let host = url.host_str().ok_or_else(bad)?;
    let (_, rest) = host.split_once('.').ok_or_else(bad)?;
    if rest.is_empty() || !rest.contains('.') {
        return Err(bad());
    }
    let mut metadata =
        Url::parse(&format!("https://management.{rest}/metadata/endpoints")).map_err(|_| bad())?;
    if let Some(port) = url.port() {
        metadata.set_port(Some(port)).map_err(|_| bad())?;
    }
    metadata
        .query_pairs_mut()
        .append_pair("api-version", "2015-01-01");
    Ok(metadata)
}

/// The ARM endpoint of a metadata URL (`https://management.x/`).
pub(crate) fn arm_endpoint_of_metadata(url: &Url) -> String {
    let mut base = url.clone();
    base.set_path("/");
    base.set_query(None);
    base.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack_env() -> model::Environment {
        model::Environment {
            name: "AzureStackCloud".into(),
            resource_manager_endpoint: "https://management.local.azurestack.external".into(),
            active_directory_endpoint: "https://adfs.local.azurestack.external/adfs".into(),
            service_management_endpoint: "https://management.adfs.azurestack.local/4de154de".into(),
            resource_manager_vm_dns_suffix: "cloudapp.azurestack.external".into(),
            ..Default::default()
        }
    }

    #[test]
    fn from_model_takes_the_audience_from_service_management() {
        let env = AzureEnvironment::from_model(&stack_env()).expect("env");
        assert_eq!(
            env.resource_manager_endpoint,
            "https://management.local.azurestack.external/"
        );
        assert_eq!(
            env.active_directory_endpoint,
            "https://adfs.local.azurestack.external/adfs/"
        );
        assert_eq!(
            env.token_audience,
            "https://management.adfs.azurestack.local/4de154de"
        );
        assert!(env.login_is_adfs());
        assert!(env.is_azure_stack);
    }

    #[test]
    fn from_model_falls_back_to_token_audience_and_reports_missing_fields() {
        let mut raw = stack_env();
        raw.service_management_endpoint.clear();
        raw.token_audience = "https://aud.example/".into();
        assert_eq!(
            AzureEnvironment::from_model(&raw)
                .expect("env")
                .token_audience,
            "https://aud.example/"
        );
        raw.token_audience.clear();
        raw.active_directory_endpoint.clear();
        let message = AzureEnvironment::from_model(&raw).unwrap_err().to_string();
        assert!(message.contains("activeDirectoryEndpoint"), "{message}");
        assert!(message.contains("serviceManagementEndpoint"), "{message}");
        assert!(!message.contains("resourceManagerEndpoint"), "{message}");
    }

    #[test]
    fn metadata_url_is_derived_from_the_portal() {
        let url = metadata_url_from_portal("https://portal.redmond.ext-contoso.com/").expect("url");
        assert_eq!(
            url.as_str(),
            "https://management.redmond.ext-contoso.com/metadata/endpoints?api-version=2015-01-01"
        );
        let url =
            metadata_url_from_portal("https://portal.local.azurestack.external:8443").expect("url");
        assert_eq!(url.port(), Some(8443));
        assert_eq!(
            arm_endpoint_of_metadata(&url),
            "https://management.local.azurestack.external:8443/"
        );
        assert!(metadata_url_from_portal("http://portal.a.b/").is_err());
        assert!(metadata_url_from_portal("https://localhost/").is_err());
        assert!(metadata_url_from_portal("not a url").is_err());
    }

    #[test]
    fn from_metadata_uses_the_first_audience_and_keeps_model_fields() {
        let metadata: MetadataEndpoints = serde_json::from_str(
            r#"{"galleryEndpoint":"g","graphEndpoint":"gr","portalEndpoint":"p","unknown":1,
                "authentication":{"loginEndpoint":"https://login.microsoftonline.com/","audiences":["https://management.contoso.onmicrosoft.com/abc","second"]}}"#,
        )
        .expect("json");
        let env =
            AzureEnvironment::from_metadata("https://management.region.fqdn.com/", &metadata, None)
                .expect("env");
        assert_eq!(
            env.token_audience,
            "https://management.contoso.onmicrosoft.com/abc"
        );
        assert_eq!(
            env.active_directory_endpoint,
            "https://login.microsoftonline.com/"
        );
        assert_eq!(env.resource_manager_vm_dns_suffix, "cloudapp.fqdn.com");
        assert!(!env.login_is_adfs());

        let partial = model::Environment {
            service_management_endpoint: "https://from-model/".into(),
            ..Default::default()
        };
        let env = AzureEnvironment::from_metadata(
            "https://management.region.fqdn.com/",
            &metadata,
            Some(&partial),
        )
        .expect("env");
        assert_eq!(env.token_audience, "https://from-model/");
    }

    #[test]
    fn source_follows_azure_env_semantics() {
        // No custom cloud: a named public cloud.
        match AzureEnvironment::source(None, None).expect("source") {
            EnvironmentSource::Ready(env) => {
                assert_eq!(env.name, "AzurePublicCloud");
                assert_eq!(env.token_audience, "https://management.core.windows.net/");
                assert_ne!(env.token_audience, env.resource_manager_endpoint);
            }
            other => panic!("{other:?}"),
        }
        assert!(AzureEnvironment::source(Some("AzureStackCloud"), None).is_err());
        assert!(AzureEnvironment::source(Some("Mars"), None).is_err());
        let china = AzureEnvironment::source(Some("AzureChinaCloud"), None).expect("china");
        assert!(
            matches!(china, EnvironmentSource::Ready(env) if env.resource_manager_endpoint == "https://management.chinacloudapi.cn/")
        );

        // Custom cloud with a complete environment.
        let custom = model::CustomCloudProfile {
            environment: Some(stack_env()),
            portal_url: "https://portal.local.azurestack.external/".into(),
            ..Default::default()
        };
        assert!(matches!(
            AzureEnvironment::source(None, Some(&custom)),
            Ok(EnvironmentSource::Ready(_))
        ));
        assert!(matches!(
            AzureEnvironment::source(Some("azurestackcloud"), Some(&custom)),
            Ok(EnvironmentSource::Ready(_))
        ));
        let error = AzureEnvironment::source(Some("AzurePublicCloud"), Some(&custom)).unwrap_err();
        assert!(error.to_string().contains("AzureStackCloud"));

        // Custom cloud without environment: discovery from the portal URL.
        let custom = model::CustomCloudProfile {
            environment: None,
            portal_url: "https://portal.local.azurestack.external/".into(),
            ..Default::default()
        };
        match AzureEnvironment::source(None, Some(&custom)).expect("source") {
            EnvironmentSource::Discover {
                metadata_url,
                partial,
            } => {
                assert_eq!(
                    metadata_url.host_str(),
                    Some("management.local.azurestack.external")
                );
                assert!(partial.is_none());
            }
            other => panic!("{other:?}"),
        }
        let empty = model::CustomCloudProfile::default();
        assert!(AzureEnvironment::source(None, Some(&empty)).is_err());
    }

    /// `customCloudProfile`s as real apimodels carry them (aks-engine's testdata).
    #[test]
    fn real_custom_cloud_profiles() {
        let stack: model::CustomCloudProfile = serde_json::from_str(
            r#"{"identitySystem":"azure_ad","authenticationMethod":"client_secret","portalURL":"https://portal.local.azurestack.external/",
                "environment":{"name":"AzureStackCloud","managementPortalURL":"","publishSettingsURL":"",
                "serviceManagementEndpoint":"https://management.azurestackci15.onmicrosoft.com/36f71706-54df-4305-9847-5b038a4cf189",
                "resourceManagerEndpoint":"https://management.local.azurestack.external/","activeDirectoryEndpoint":"https://login.windows.net/",
                "galleryEndpoint":"https://portal.local.azurestack.external:30015/","keyVaultEndpoint":"https://vault.azurestackci15.onmicrosoft.com/36f71706-54df-4305-9847-5b038a4cf189",
                "graphEndpoint":"https://graph.windows.net/","storageEndpointSuffix":"local.azurestack.external","serviceBusEndpointSuffix":"",
                "keyVaultDNSSuffix":"vault.local.azurestack.external","resourceManagerVMDNSSuffix":"cloudapp.azurestack.external"}}"#,
        )
        .expect("profile");
        match AzureEnvironment::source(None, Some(&stack)).expect("source") {
            EnvironmentSource::Ready(env) => {
                assert_eq!(
                    env.resource_manager_endpoint,
                    "https://management.local.azurestack.external/"
                );
                assert_eq!(
                    env.token_audience,
                    "https://management.azurestackci15.onmicrosoft.com/36f71706-54df-4305-9847-5b038a4cf189"
                );
                assert!(!env.login_is_adfs());
            }
            other => panic!("{other:?}"),
        }
        // The deploy-time template leaves portalURL empty and has no environment.
        let template: model::CustomCloudProfile =
            serde_json::from_str(r#"{"portalURL":"","identitySystem":""}"#).expect("profile");
        let error = AzureEnvironment::source(None, Some(&template)).unwrap_err();
        assert!(error.to_string().contains("portalURL"), "{error}");
    }
}
