//! Typed view of the vlabs apimodel: only the fields aksup reads.
//!
//! Every struct ignores unknown fields; the lossless document lives in
//! [`super::ApiModel`], which edits the raw JSON and re-derives this view, so
//! fields aksup does not know survive a load → save round trip untouched.

use indexmap::IndexMap;
use serde::Deserialize;

use super::secret::Secret;

/// Root of a vlabs apimodel (`ContainerService` in aks-engine).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerService {
    pub api_version: String,
    pub location: String,
    pub properties: Properties,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Properties {
    pub orchestrator_profile: Option<OrchestratorProfile>,
    pub master_profile: Option<MasterProfile>,
    pub agent_pool_profiles: Vec<AgentPoolProfile>,
    pub linux_profile: Option<LinuxProfile>,
    pub windows_profile: Option<WindowsProfile>,
    pub service_principal_profile: Option<ServicePrincipalProfile>,
    pub certificate_profile: Option<CertificateProfile>,
    pub custom_cloud_profile: Option<CustomCloudProfile>,
    pub feature_flags: Option<IndexMap<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OrchestratorProfile {
    pub orchestrator_type: String,
    pub orchestrator_release: String,
    pub orchestrator_version: String,
    pub kubernetes_config: Option<KubernetesConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KubernetesConfig {
    pub container_runtime: String,
    pub network_plugin: String,
    pub network_policy: String,
    pub use_cloud_controller_manager: Option<bool>,
    pub use_instance_metadata: Option<bool>,
    pub kubernetes_image_base: String,
    pub private_cluster: Option<PrivateCluster>,
    pub kubelet_config: IndexMap<String, String>,
    pub controller_manager_config: IndexMap<String, String>,
    pub cloud_controller_manager_config: IndexMap<String, String>,
    pub api_server_config: IndexMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PrivateCluster {
    pub enabled: Option<bool>,
    pub enable_host_os_disk_as_os_disk: Option<bool>,
    pub jumpbox_profile: Option<JumpboxProfile>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JumpboxProfile {
    pub name: String,
    pub vm_size: String,
    #[serde(rename = "osDiskSizeGB")]
    pub os_disk_size_gb: Option<i64>,
    pub username: String,
    pub public_key: String,
    pub storage_profile: String,
}

/// Reference to a custom image (`imageReference` on master / pool profiles).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct ImageReference {
    pub name: String,
    pub resource_group: String,
    pub subscription_id: String,
    pub gallery: String,
    pub version: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MasterProfile {
    /// Kept as JSON so that a wrong type is reported by validation, not by serde.
    pub count: Option<serde_json::Value>,
    pub dns_prefix: String,
    pub vm_size: String,
    #[serde(rename = "osDiskSizeGB")]
    pub os_disk_size_gb: Option<i64>,
    pub distro: String,
    #[serde(rename = "firstConsecutiveStaticIP")]
    pub first_consecutive_static_ip: String,
    #[serde(rename = "vnetSubnetID")]
    pub vnet_subnet_id: String,
    #[serde(rename = "vnetCidr")]
    pub vnet_cidr: String,
    pub availability_profile: String,
    #[serde(rename = "etcdDiskSizeGB")]
    pub etcd_disk_size_gb: String,
    pub image_reference: Option<ImageReference>,
    pub fqdn: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AgentPoolProfile {
    pub name: String,
    /// Kept as JSON so that a wrong type is reported by validation, not by serde.
    pub count: Option<serde_json::Value>,
    pub vm_size: String,
    #[serde(rename = "osDiskSizeGB")]
    pub os_disk_size_gb: Option<i64>,
    pub os_type: String,
    pub distro: String,
    pub availability_profile: String,
    #[serde(rename = "vnetSubnetID")]
    pub vnet_subnet_id: String,
    pub image_reference: Option<ImageReference>,
    pub custom_node_labels: IndexMap<String, String>,
    pub preserve_nodes_properties: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LinuxProfile {
    pub admin_username: String,
    pub ssh: SshConfiguration,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SshConfiguration {
    pub public_keys: Vec<PublicKey>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PublicKey {
    pub key_data: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WindowsProfile {
    pub admin_username: String,
    pub admin_password: Secret,
    pub windows_publisher: String,
    pub windows_offer: String,
    pub windows_sku: String,
    pub image_version: String,
    pub ssh_enabled: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServicePrincipalProfile {
    pub client_id: String,
    pub secret: Secret,
}

/// PEM material generated by deploy. Private keys are [`Secret`]s.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CertificateProfile {
    pub ca_certificate: String,
    pub ca_private_key: Secret,
    pub api_server_certificate: String,
    pub api_server_private_key: Secret,
    pub client_certificate: String,
    pub client_private_key: Secret,
    pub kube_config_certificate: String,
    pub kube_config_private_key: Secret,
    pub etcd_server_certificate: String,
    pub etcd_server_private_key: Secret,
    pub etcd_client_certificate: String,
    pub etcd_client_private_key: Secret,
    pub etcd_peer_certificates: Vec<String>,
    pub etcd_peer_private_keys: Vec<Secret>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CustomCloudProfile {
    pub environment: Option<Environment>,
    pub identity_system: String,
    pub authentication_method: String,
    #[serde(rename = "portalURL")]
    pub portal_url: String,
}

/// `customCloudProfile.environment`: go-autorest's `Environment` as written by deploy.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Environment {
    pub name: String,
    #[serde(rename = "managementPortalURL")]
    pub management_portal_url: String,
    pub service_management_endpoint: String,
    pub resource_manager_endpoint: String,
    pub active_directory_endpoint: String,
    pub gallery_endpoint: String,
    pub key_vault_endpoint: String,
    pub graph_endpoint: String,
    pub storage_endpoint_suffix: String,
    #[serde(rename = "resourceManagerVMDNSSuffix")]
    pub resource_manager_vm_dns_suffix: String,
    pub token_audience: String,
}

impl ContainerService {
    /// The cluster's Kubernetes version as written in the apimodel.
    pub fn orchestrator_version(&self) -> &str {
        self.properties
            .orchestrator_profile
            .as_ref()
            .map(|profile| profile.orchestrator_version.as_str())
            .unwrap_or_default()
    }

    /// True when any agent pool runs Windows.
    pub fn has_windows_pool(&self) -> bool {
        self.properties
            .agent_pool_profiles
            .iter()
            .any(AgentPoolProfile::is_windows)
    }

    /// True when the apimodel describes an Azure Stack Hub cluster
    /// (a `customCloudProfile` is present, as aks-engine decides).
    pub fn is_azure_stack(&self) -> bool {
        self.properties.custom_cloud_profile.is_some()
    }

    pub fn kubernetes_config(&self) -> Option<&KubernetesConfig> {
        self.properties
            .orchestrator_profile
            .as_ref()
            .and_then(|profile| profile.kubernetes_config.as_ref())
    }

    /// True for a private cluster (`kubernetesConfig.privateCluster.enabled`).
    pub fn is_private_cluster(&self) -> bool {
        self.kubernetes_config()
            .and_then(|config| config.private_cluster.as_ref())
            .and_then(|private| private.enabled)
            .unwrap_or(false)
    }
}

impl MasterProfile {
    /// The master count; 0 when absent or not an integer (validation reports it).
    pub fn count(&self) -> usize {
        super::validate::count_of(self.count.as_ref())
            .and_then(|count| usize::try_from(count).ok())
            .unwrap_or(0)
    }
}

impl AgentPoolProfile {
    /// The VM count; 0 when absent or not an integer (validation reports it).
    pub fn count(&self) -> usize {
        super::validate::count_of(self.count.as_ref())
            .and_then(|count| usize::try_from(count).ok())
            .unwrap_or(0)
    }

    pub fn is_windows(&self) -> bool {
        self.os_type.eq_ignore_ascii_case("windows")
    }

    /// `preserveNodesProperties`, default true.
    pub fn preserve_nodes_properties(&self) -> bool {
        self.preserve_nodes_properties.unwrap_or(true)
    }
}
