//! Typed ARM resources: only the fields aksup uses, every unknown field ignored,
//! every field optional on the wire.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{ArmErrorBody, one_line};

/// `{"id": "…"}`
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct SubResource {
    pub id: String,
}

/// A virtual machine (`Microsoft.Compute/virtualMachines`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct VirtualMachine {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub location: String,
    pub tags: BTreeMap<String, String>,
    pub properties: VirtualMachineProperties,
    /// Extensions, when ARM returns them.
    pub resources: Vec<Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct VirtualMachineProperties {
    pub vm_id: String,
    pub availability_set: Option<SubResource>,
    pub hardware_profile: HardwareProfile,
    pub storage_profile: StorageProfile,
    pub os_profile: OsProfile,
    pub network_profile: NetworkProfile,
    pub provisioning_state: String,
    pub instance_view: Option<InstanceView>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct HardwareProfile {
    pub vm_size: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct StorageProfile {
    pub image_reference: Option<ImageReference>,
    pub os_disk: OsDisk,
    pub data_disks: Vec<DataDisk>,
}

/// A marketplace image (`publisher/offer/sku/version`) or a custom image (`id`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct ImageReference {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub publisher: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub offer: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sku: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct OsDisk {
    pub os_type: String,
    pub name: String,
    pub create_option: String,
    pub caching: String,
    #[serde(rename = "diskSizeGB")]
    pub disk_size_gb: Option<i64>,
    pub managed_disk: Option<ManagedDiskParameters>,
    pub vhd: Option<VirtualHardDisk>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct DataDisk {
    pub lun: Option<i64>,
    pub name: String,
    pub create_option: String,
    #[serde(rename = "diskSizeGB")]
    pub disk_size_gb: Option<i64>,
    pub managed_disk: Option<ManagedDiskParameters>,
    pub vhd: Option<VirtualHardDisk>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct ManagedDiskParameters {
    pub id: String,
    pub storage_account_type: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct VirtualHardDisk {
    pub uri: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct OsProfile {
    pub computer_name: String,
    pub admin_username: String,
    pub linux_configuration: Option<Value>,
    pub windows_configuration: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct NetworkProfile {
    pub network_interfaces: Vec<SubResource>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct InstanceView {
    pub statuses: Vec<InstanceViewStatus>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct InstanceViewStatus {
    pub code: String,
    pub level: String,
    pub display_status: String,
    pub message: String,
}

impl VirtualMachine {
    /// The `PowerState/…` code of the instance view, without the prefix (`running`).
    pub fn power_state(&self) -> Option<&str> {
        self.status_with_prefix("PowerState/")
    }

    /// The `ProvisioningState/…` code of the instance view (`succeeded`), else
    /// the lower-cased `provisioningState` property.
    pub fn instance_provisioning_state(&self) -> Option<&str> {
        self.status_with_prefix("ProvisioningState/")
    }

    fn status_with_prefix(&self, prefix: &str) -> Option<&str> {
        self.properties
            .instance_view
            .as_ref()?
            .statuses
            .iter()
            .find_map(|status| status.code.strip_prefix(prefix))
    }

    /// A tag value (tag names compared case-insensitively, as ARM does).
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The ids of the VM's NICs.
    pub fn nic_ids(&self) -> Vec<&str> {
        self.properties
            .network_profile
            .network_interfaces
            .iter()
            .map(|nic| nic.id.as_str())
            .collect()
    }

    /// The managed OS disk's resource id, when the OS disk is managed.
    pub fn os_disk_id(&self) -> Option<&str> {
        self.properties
            .storage_profile
            .os_disk
            .managed_disk
            .as_ref()
            .map(|disk| disk.id.as_str())
            .filter(|id| !id.is_empty())
    }
}

/// A resource group.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ResourceGroup {
    pub id: String,
    pub name: String,
    pub location: String,
    pub tags: BTreeMap<String, String>,
    pub properties: ResourceGroupProperties,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct ResourceGroupProperties {
    pub provisioning_state: String,
}

/// A marketplace image version
/// (`…/locations/{l}/publishers/{p}/artifacttypes/vmimage/offers/{o}/skus/{s}/versions/{v}`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ImageVersion {
    pub id: String,
    pub name: String,
    pub location: String,
    pub properties: ImageVersionProperties,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ImageVersionProperties {
    pub os_disk_image: Option<Value>,
    pub hyper_v_generation: String,
    pub automatic_os_upgrade_properties: Option<Value>,
}

/// The body of a template deployment PUT.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeploymentRequest {
    pub template: Value,
    pub parameters: Value,
    /// `Incremental` (the default here) or `Complete`.
    pub mode: String,
}

impl DeploymentRequest {
    /// An incremental deployment of `template` with `parameters` (`{"name":{"value":…}}`).
    pub fn incremental(template: Value, parameters: Value) -> Self {
        Self {
            template,
            parameters,
            mode: "Incremental".to_owned(),
        }
    }
}

/// A template deployment (`DeploymentExtended`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Deployment {
    pub id: String,
    pub name: String,
    pub properties: DeploymentProperties,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct DeploymentProperties {
    pub provisioning_state: String,
    pub correlation_id: String,
    pub timestamp: String,
    pub output_resources: Vec<SubResource>,
    pub outputs: Option<Value>,
    pub error: Option<ArmErrorBody>,
}

/// One operation of a deployment (`…/deployments/{name}/operations`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct DeploymentOperation {
    pub id: String,
    #[serde(rename = "operationId")]
    pub operation_id: String,
    pub properties: DeploymentOperationProperties,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct DeploymentOperationProperties {
    pub provisioning_operation: String,
    pub provisioning_state: String,
    pub status_code: String,
    /// Often `{"status":"Failed","error":{…}}` or `{"error":{…}}`; sometimes a string.
    pub status_message: Option<Value>,
    pub target_resource: Option<TargetResource>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct TargetResource {
    pub id: String,
    pub resource_name: String,
    pub resource_type: String,
}

/// A page of a list: `{"value":[…], "nextLink":"…"}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Page<T> {
    pub value: Vec<T>,
    pub next_link: Option<String>,
}

impl<T> Default for Page<T> {
    fn default() -> Self {
        Self {
            value: Vec::new(),
            next_link: None,
        }
    }
}

/// True for the terminal provisioning states (`Succeeded`, `Failed`, `Canceled`/`Cancelled`).
pub fn is_terminal_state(state: &str) -> bool {
    ["succeeded", "failed", "canceled", "cancelled"]
        .iter()
        .any(|terminal| state.eq_ignore_ascii_case(terminal))
}

/// Turns a failed deployment into one readable line naming the failing
/// resource(s) and the innermost error, e.g.
/// `Microsoft.Compute/virtualMachines k8s-master-0 (Create): OSProvisioningTimedOut: OS provisioning did not finish`.
/// Falls back to the deployment's own error when no operation failed.
pub fn explain_deployment_failure(
    top: Option<&ArmErrorBody>,
    operations: &[DeploymentOperation],
) -> (String, String) {
    // Failures with the same error (a VM and its extension, say) are grouped so
    // the line says each error once: (code, message) → the resources.
    let mut groups: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut first_code = None;
    for operation in operations {
        let props = &operation.properties;
        if !props.provisioning_state.eq_ignore_ascii_case("failed") {
            continue;
        }
        let error = props
            .status_message
            .as_ref()
            .and_then(ArmErrorBody::from_value)
            .or_else(|| match &props.status_message {
                Some(Value::String(text)) => Some(ArmErrorBody {
                    code: props.status_code.clone(),
                    message: text.clone(),
                    ..Default::default()
                }),
                _ => None,
            });
        let (code, message) = match &error {
            Some(error) => super::error::innermost_error(error),
            None => (props.status_code.clone(), String::new()),
        };
        let target = props
            .target_resource
            .as_ref()
            .map(|t| format!("{} {}", t.resource_type, t.resource_name))
            .unwrap_or_else(|| format!("operation {}", operation.operation_id));
        let operation_name = if props.provisioning_operation.is_empty() {
            String::new()
        } else {
            format!(" ({})", props.provisioning_operation)
        };
        first_code.get_or_insert_with(|| code.clone());
        groups
            .entry((code, one_line(&message)))
            .or_default()
            .insert(format!("{target}{operation_name}"));
    }
    let parts: Vec<String> = groups
        .into_iter()
        .map(|((code, message), targets)| {
            let targets = targets.into_iter().collect::<Vec<_>>().join(", ");
            format!("{targets}: {code}: {message}")
        })
        .collect();
    if parts.is_empty()
        && let Some(top) = top
    {
        let (code, message) = super::error::innermost_error(top);
        return (code.clone(), format!("{code}: {message}"));
    }
    if parts.is_empty() {
        return (
            "DeploymentFailed".to_owned(),
            "the deployment failed without an error; see its operations in the portal".to_owned(),
        );
    }
    (first_code.unwrap_or_default(), one_line(&parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vm_tolerates_unknown_fields_and_reads_what_we_use() {
        let vm: VirtualMachine = serde_json::from_value(json!({
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/k8s-master-1234-0",
            "name": "k8s-master-1234-0",
            "type": "Microsoft.Compute/virtualMachines",
            "location": "local",
            "zones": ["1"],
            "tags": {"orchestrator": "Kubernetes:1.23.6", "poolName": "master"},
            "properties": {
                "vmId": "x",
                "hardwareProfile": {"vmSize": "Standard_D2_v2"},
                "storageProfile": {
                    "imageReference": {"publisher": "microsoft-aks", "offer": "aks", "sku": "aks-engine-ubuntu-2004-202208", "version": "2022.08.29"},
                    "osDisk": {"osType": "Linux", "name": "os", "createOption": "FromImage", "diskSizeGB": 30,
                               "managedDisk": {"id": "/disks/os", "storageAccountType": "Premium_LRS"}},
                    "dataDisks": [{"lun": 0, "name": "etcd", "createOption": "Empty", "diskSizeGB": 256, "managedDisk": {"id": "/disks/etcd"}}]
                },
                "networkProfile": {"networkInterfaces": [{"id": "/nics/n0", "properties": {"primary": true}}]},
                "provisioningState": "Succeeded",
                "instanceView": {"statuses": [{"code": "ProvisioningState/succeeded"}, {"code": "PowerState/running"}]},
                "somethingNew": {"x": 1}
            }
        }))
        .expect("vm");
        assert_eq!(vm.tag("ORCHESTRATOR"), Some("Kubernetes:1.23.6"));
        assert_eq!(vm.power_state(), Some("running"));
        assert_eq!(vm.instance_provisioning_state(), Some("succeeded"));
        assert_eq!(vm.nic_ids(), vec!["/nics/n0"]);
        assert_eq!(vm.os_disk_id(), Some("/disks/os"));
        assert_eq!(vm.properties.storage_profile.data_disks[0].lun, Some(0));
        let empty: VirtualMachine = serde_json::from_value(json!({"name": "bare"})).expect("vm");
        assert_eq!(empty.power_state(), None);
    }

    #[test]
    fn terminal_states() {
        for state in ["Succeeded", "failed", "Canceled", "Cancelled"] {
            assert!(is_terminal_state(state));
        }
        for state in [
            "Accepted", "Creating", "Updating", "Deleting", "Running", "",
        ] {
            assert!(!is_terminal_state(state));
        }
    }

    #[test]
    fn deployment_failure_is_one_line_naming_the_resource_and_innermost_error() {
        let operations: Vec<DeploymentOperation> = serde_json::from_value(json!([
            {"operationId": "A", "properties": {"provisioningOperation": "Create", "provisioningState": "Succeeded",
              "targetResource": {"resourceType": "Microsoft.Network/networkInterfaces", "resourceName": "nic-0"}}},
            {"operationId": "B", "properties": {"provisioningOperation": "Create", "provisioningState": "Failed", "statusCode": "Conflict",
              "statusMessage": {"status": "Failed", "error": {"code": "ResourceDeploymentFailure", "message": "The resource operation completed with terminal provisioning state 'Failed'.",
                 "details": [{"code": "VMExtensionProvisioningError", "message": "{\"error\":{\"code\":\"VMExtensionHandlerNonTransientError\",\"message\":\"exit status=50\\nCSE failed\"}}"}]}},
              "targetResource": {"resourceType": "Microsoft.Compute/virtualMachines/extensions", "resourceName": "k8s-agent-0/cse0"}}}
        ]))
        .expect("ops");
        let (code, line) = explain_deployment_failure(None, &operations);
        assert_eq!(code, "VMExtensionHandlerNonTransientError");
        assert_eq!(
            line,
            "Microsoft.Compute/virtualMachines/extensions k8s-agent-0/cse0 (Create): VMExtensionHandlerNonTransientError: exit status=50 CSE failed"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn deployment_failures_with_the_same_error_say_it_once() {
        let failed = |id: &str, kind: &str, name: &str, code: &str| {
            json!({"operationId": id, "properties": {"provisioningOperation": "Create", "provisioningState": "Failed",
              "statusCode": "Conflict",
              "statusMessage": {"error": {"code": "ResourceDeploymentFailure", "message": "terminal state 'Failed'",
                 "details": [{"code": code, "message": "exit status=50"}]}},
              "targetResource": {"resourceType": kind, "resourceName": name}}})
        };
        let operations: Vec<DeploymentOperation> = serde_json::from_value(json!([
            failed(
                "B",
                "Microsoft.Compute/virtualMachines/extensions",
                "vm-0/cse",
                "VMExtensionProvisioningError"
            ),
            failed(
                "A",
                "Microsoft.Compute/virtualMachines",
                "vm-0",
                "VMExtensionProvisioningError"
            ),
            failed(
                "C",
                "Microsoft.Compute/virtualMachines",
                "vm-1",
                "AllocationFailed"
            ),
        ]))
        .expect("ops");
        let (code, line) = explain_deployment_failure(None, &operations);
        assert_eq!(code, "VMExtensionProvisioningError");
        assert_eq!(
            line,
            "Microsoft.Compute/virtualMachines vm-1 (Create): AllocationFailed: exit status=50; \
             Microsoft.Compute/virtualMachines vm-0 (Create), Microsoft.Compute/virtualMachines/extensions vm-0/cse (Create): VMExtensionProvisioningError: exit status=50"
        );
    }

    #[test]
    fn deployment_failure_falls_back_to_the_top_error() {
        let top = ArmErrorBody {
            code: "DeploymentFailed".into(),
            message: "x".into(),
            details: vec![ArmErrorBody {
                code: "QuotaExceeded".into(),
                message: "cores".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            explain_deployment_failure(Some(&top), &[]),
            (
                "QuotaExceeded".to_owned(),
                "QuotaExceeded: cores".to_owned()
            )
        );
    }
}
