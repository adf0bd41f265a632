//! The ARM template and bootstrap payload of one node VM.
//!
//! [`render`] turns the apimodel, a pool and an index into a deployment with
//! literal values only (no ARM expressions): the NIC, the VM (image, OS disk,
//! the master's etcd data disk attached, availability set, admin user and SSH
//! keys or Windows profile, customData, tags) and the provisioning extension.
//! The bootstrap payload is real cloud-init on Linux (a PowerShell script on
//! Windows) that configures the kubelet of the target version with the node's
//! role, labels and taints, and carries the machine-readable node block
//! `/etc/kubernetes/aksup-node.json` described in `docs/upgrade.md`.

mod bootstrap;
mod image;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use base64::Engine as _;
use semver::Version;
use serde_json::{Value, json};

pub use bootstrap::{NODE_FILE, NodeBlock, Taint};
pub use image::{
    MarketplaceImage, MarketplaceImageConst, NodeImage, UBUNTU_2004, UBUNTU_2204, WINDOWS_2019,
    node_image, required_marketplace_images,
};

use crate::model::ContainerService;
use crate::names::{self, NodeName, PoolKind, VmName};

/// Azure Stack Hub rejects a VM whose base64 `customData` is longer than this.
pub const MAX_CUSTOM_DATA: usize = 87_380;
/// The first master IP aks-engine uses when the apimodel sets none.
pub const DEFAULT_FIRST_MASTER_IP: Ipv4Addr = Ipv4Addr::new(10, 240, 255, 5);
/// api-versions written into the template's resources (profile 2020-09-01-hybrid).
const COMPUTE_API: &str = "2020-06-01";
const NETWORK_API: &str = "2018-11-01";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("the api model has no masterProfile")]
    NoMasterProfile,
    #[error("the api model has no agent pool named {0}")]
    NoPool(String),
    #[error(
        "pool {pool}: distro \"{distro}\" has no Azure Stack Hub image aksup knows; use aks-ubuntu-22.04 or set an imageReference"
    )]
    UnknownDistro { pool: String, distro: String },
    #[error("masterProfile.firstConsecutiveStaticIP \"{0}\" is not an IPv4 address")]
    FirstMasterIp(String),
    #[error(
        "the bootstrap payload of {vm} is {length} characters of base64, over Azure Stack Hub's limit of {MAX_CUSTOM_DATA}: remove custom files or large kubelet flags from the api model"
    )]
    CustomDataTooLarge { vm: String, length: usize },
    #[error(
        "the linuxProfile has no admin user or SSH key; a Linux VM cannot be created without them"
    )]
    NoLinuxProfile,
    #[error(
        "the windowsProfile has no admin user or password; a Windows VM cannot be created without them"
    )]
    NoWindowsProfile,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where and what to render.
#[derive(Debug, Clone)]
pub struct NodeTemplateInput<'a> {
    pub model: &'a ContainerService,
    pub pool: PoolKind,
    pub index: usize,
    /// The cluster's 8-digit name suffix.
    pub suffix: &'a str,
    pub target_version: &'a Version,
    pub subscription_id: &'a str,
    pub resource_group: &'a str,
    pub location: &'a str,
    /// Written into the `aksEngineVersion` tag as `aksup-<version>`.
    pub aksup_version: &'a str,
}

/// A rendered node deployment. `Debug` leaves the template out: on Windows it
/// carries the admin password.
#[derive(Clone)]
pub struct RenderedNode {
    pub vm_name: VmName,
    pub node_name: NodeName,
    pub deployment_name: String,
    /// The deployment template (resources with literal values).
    pub template: Value,
    /// The deployment parameters (none: every value is literal).
    pub parameters: Value,
    /// Length of the base64 customData.
    pub custom_data_len: usize,
    pub image: NodeImage,
    pub block: NodeBlock,
}

impl std::fmt::Debug for RenderedNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderedNode")
            .field("vm_name", &self.vm_name)
            .field("deployment_name", &self.deployment_name)
            .field("custom_data_len", &self.custom_data_len)
            .field("image", &self.image)
            .finish_non_exhaustive()
    }
}

/// The resource-group scoped id of a resource.
pub fn resource_id(
    subscription: &str,
    resource_group: &str,
    provider_type: &str,
    name: &str,
) -> String {
    format!(
        "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/{provider_type}/{name}"
    )
}

/// The tags aksup writes on a VM it creates: the progress record
/// (`orchestrator`) and aks-engine's identification tags.
pub fn vm_tags(
    pool: &PoolKind,
    suffix: &str,
    vm: &VmName,
    version: &Version,
    aksup_version: &str,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "aksEngineVersion".to_owned(),
            format!("aksup-{aksup_version}"),
        ),
        ("creationSource".to_owned(), format!("aksengine-{vm}")),
        ("orchestrator".to_owned(), format!("Kubernetes:{version}")),
        ("poolName".to_owned(), pool.pool_name().to_owned()),
        ("resourceNameSuffix".to_owned(), suffix.to_owned()),
    ])
}

/// Renders the deployment of one node VM.
pub fn render(input: &NodeTemplateInput<'_>) -> Result<RenderedNode> {
    let model = input.model;
    let master = model
        .properties
        .master_profile
        .as_ref()
        .ok_or(Error::NoMasterProfile)?;
    let (vm_size, os_disk_size, subnet) = match &input.pool {
        PoolKind::Master => (
            master.vm_size.clone(),
            master.os_disk_size_gb,
            master.vnet_subnet_id.clone(),
        ),
        PoolKind::Agent { position, .. } => {
            let profile = model
                .properties
                .agent_pool_profiles
                .get(*position)
                .ok_or_else(|| Error::NoPool(input.pool.pool_name().to_owned()))?;
            (
                profile.vm_size.clone(),
                profile.os_disk_size_gb,
                profile.vnet_subnet_id.clone(),
            )
        }
    };
    let id = |provider_type: &str, name: &str| {
        resource_id(
            input.subscription_id,
            input.resource_group,
            provider_type,
            name,
        )
    };
    let subnet_id = if subnet.is_empty() {
        format!(
            "{}/subnets/k8s-subnet",
            id(
                "Microsoft.Network/virtualNetworks",
                &format!("k8s-vnet-{}", input.suffix)
            )
        )
    } else {
        subnet
    };

    let vm_name = input.pool.vm_name(input.suffix, input.index);
    let node_name = vm_name.node_name();
    let nic_name = input.pool.nic_name(input.suffix, input.index);
    let nic_id = id("Microsoft.Network/networkInterfaces", &nic_name);
    let tags = vm_tags(
        &input.pool,
        input.suffix,
        &vm_name,
        input.target_version,
        input.aksup_version,
    );
    let image = node_image(model, &input.pool, input.subscription_id)?;
    let block = bootstrap::node_block(input, &node_name);
    let windows = input.pool.is_windows();
    let custom_data = if windows {
        bootstrap::windows_custom_data(&block)
    } else {
        bootstrap::linux_custom_data(&block, model)
    };
    let custom_data = base64::engine::general_purpose::STANDARD.encode(custom_data.as_bytes());
    if custom_data.len() > MAX_CUSTOM_DATA {
        return Err(Error::CustomDataTooLarge {
            vm: vm_name.to_string(),
            length: custom_data.len(),
        });
    }

    let nic = nic_resource(input, &nic_name, &subnet_id, &tags)?;
    let os_profile = os_profile(model, &vm_name, windows, &custom_data)?;
    let mut data_disks = Vec::new();
    if input.pool == PoolKind::Master {
        let disk = names::etcd_disk_name(input.suffix, input.index);
        data_disks.push(json!({
            "lun": 0,
            "name": disk,
            "createOption": "Attach",
            "caching": "None",
            "managedDisk": { "id": id("Microsoft.Compute/disks", &disk) },
        }));
    }
    let mut os_disk = json!({
        "createOption": "FromImage",
        "caching": "ReadWrite",
        "managedDisk": { "storageAccountType": storage_tier(&vm_size) },
    });
    if let Some(size) = os_disk_size {
        os_disk["diskSizeGB"] = json!(size);
    }
    let vm = json!({
        "type": "Microsoft.Compute/virtualMachines",
        "apiVersion": COMPUTE_API,
        "name": vm_name.as_str(),
        "location": input.location,
        "tags": tags,
        "dependsOn": [nic_id],
        "properties": {
            "availabilitySet": { "id": id("Microsoft.Compute/availabilitySets", &input.pool.availability_set_name(input.suffix)) },
            "hardwareProfile": { "vmSize": vm_size },
            "osProfile": os_profile,
            "storageProfile": {
                "imageReference": image.image_reference(),
                "osDisk": os_disk,
                "dataDisks": data_disks,
            },
            "networkProfile": { "networkInterfaces": [ { "id": nic_id } ] },
        },
    });
    let extension = extension_resource(
        input,
        &vm_name,
        windows,
        &block,
        &id("Microsoft.Compute/virtualMachines", vm_name.as_str()),
    );
    let template = json!({
        "$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {},
        "variables": {},
        "resources": [nic, vm, extension],
        "outputs": {},
    });
    Ok(RenderedNode {
        deployment_name: names::deployment_name(
            input.pool.pool_name(),
            input.index,
            &input.target_version.to_string(),
        ),
        vm_name,
        node_name,
        template,
        parameters: json!({}),
        custom_data_len: custom_data.len(),
        image,
        block,
    })
}

fn nic_resource(
    input: &NodeTemplateInput<'_>,
    name: &str,
    subnet_id: &str,
    tags: &BTreeMap<String, String>,
) -> Result<Value> {
    let mut ip_configuration = json!({
        "primary": true,
        "privateIPAllocationMethod": "Dynamic",
        "subnet": { "id": subnet_id },
    });
    if input.pool == PoolKind::Master {
        ip_configuration["privateIPAllocationMethod"] = json!("Static");
        ip_configuration["privateIPAddress"] =
            json!(master_ip(input.model, input.index)?.to_string());
        let lb = |name: String| {
            resource_id(
                input.subscription_id,
                input.resource_group,
                "Microsoft.Network/loadBalancers",
                &name,
            )
        };
        let pool = format!("k8s-master-pool-{}", input.suffix);
        let mut pools = vec![
            json!({ "id": format!("{}/backendAddressPools/{pool}", lb(format!("k8s-master-internal-lb-{}", input.suffix))) }),
        ];
        if !input.model.is_private_cluster() {
            pools.insert(0, json!({ "id": format!("{}/backendAddressPools/{pool}", lb(format!("k8s-master-lb-{}", input.suffix))) }));
        }
        ip_configuration["loadBalancerBackendAddressPools"] = Value::Array(pools);
    }
    Ok(json!({
        "type": "Microsoft.Network/networkInterfaces",
        "apiVersion": NETWORK_API,
        "name": name,
        "location": input.location,
        "tags": { "poolName": tags["poolName"], "resourceNameSuffix": tags["resourceNameSuffix"] },
        "properties": {
            "enableIPForwarding": true,
            "ipConfigurations": [ { "name": "ipconfig1", "properties": ip_configuration } ],
        },
    }))
}

/// The static IP of master `index`: `firstConsecutiveStaticIP` (default 10.240.255.5) + index.
pub fn master_ip(model: &ContainerService, index: usize) -> Result<Ipv4Addr> {
    let first = model
        .properties
        .master_profile
        .as_ref()
        .map(|master| master.first_consecutive_static_ip.as_str())
        .unwrap_or_default();
    let base = if first.is_empty() {
        DEFAULT_FIRST_MASTER_IP
    } else {
        first
            .parse()
            .map_err(|_| Error::FirstMasterIp(first.to_owned()))?
    };
    let offset = u32::try_from(index).map_err(|_| Error::FirstMasterIp(first.to_owned()))?;
    Ok(Ipv4Addr::from(u32::from(base).wrapping_add(offset)))
}

fn os_profile(
    model: &ContainerService,
    vm_name: &VmName,
    windows: bool,
    custom_data: &str,
) -> Result<Value> {
    if windows {
        let profile = model.properties.windows_profile.clone().unwrap_or_default();
        if profile.admin_username.is_empty() || profile.admin_password.is_empty() {
            return Err(Error::NoWindowsProfile);
        }
        return Ok(json!({
            "computerName": vm_name.as_str(),
            "adminUsername": profile.admin_username,
            "adminPassword": profile.admin_password.expose(),
            "customData": custom_data,
            "windowsConfiguration": { "enableAutomaticUpdates": false, "provisionVMAgent": true },
        }));
    }
    let profile = model.properties.linux_profile.clone().unwrap_or_default();
    let keys: Vec<Value> = profile
        .ssh
        .public_keys
        .iter()
        .filter(|key| !key.key_data.is_empty())
        .map(|key| {
            json!({
                "path": format!("/home/{}/.ssh/authorized_keys", profile.admin_username),
                "keyData": key.key_data,
            })
        })
        .collect();
    if profile.admin_username.is_empty() || keys.is_empty() {
        return Err(Error::NoLinuxProfile);
    }
    Ok(json!({
        "computerName": vm_name.as_str(),
        "adminUsername": profile.admin_username,
        "customData": custom_data,
        "linuxConfiguration": { "disablePasswordAuthentication": true, "ssh": { "publicKeys": keys } },
    }))
}

fn extension_resource(
    input: &NodeTemplateInput<'_>,
    vm_name: &VmName,
    windows: bool,
    block: &NodeBlock,
    vm_id: &str,
) -> Value {
    let role = if input.pool == PoolKind::Master {
        "master"
    } else {
        "agent"
    };
    let name = format!("{vm_name}/cse-{role}-{}", input.index);
    let (publisher, kind, version, command) = if windows {
        (
            "Microsoft.Compute",
            "CustomScriptExtension",
            "1.10",
            "powershell.exe -ExecutionPolicy Unrestricted -Command \"Copy-Item C:\\AzureData\\CustomData.bin C:\\AzureData\\aksup-provision.ps1; & C:\\AzureData\\aksup-provision.ps1 *> C:\\AzureData\\aksup-provision.log\"",
        )
    } else {
        (
            "Microsoft.Azure.Extensions",
            "CustomScript",
            "2.0",
            "/bin/bash -c '/opt/azure/containers/aksup-provision.sh >> /var/log/azure/aksup-provision.log 2>&1'",
        )
    };
    let mut settings = json!({});
    if windows {
        // Windows customData is a script, not cloud-init: the node block rides in the settings.
        settings["aksupNode"] = serde_json::to_value(block).unwrap_or(Value::Null);
    }
    json!({
        "type": "Microsoft.Compute/virtualMachines/extensions",
        "apiVersion": COMPUTE_API,
        "name": name,
        "location": input.location,
        "dependsOn": [vm_id],
        "properties": {
            "publisher": publisher,
            "type": kind,
            "typeHandlerVersion": version,
            "autoUpgradeMinorVersion": true,
            "settings": settings,
            "protectedSettings": { "commandToExecute": command },
        },
    })
}

/// `Premium_LRS` for VM sizes with premium storage (an `s` in the size family,
/// as `Standard_DS2_v2`), else `Standard_LRS`.
pub fn storage_tier(vm_size: &str) -> &'static str {
    let family = vm_size
        .strip_prefix("Standard_")
        .unwrap_or(vm_size)
        .split('_')
        .next()
        .unwrap_or_default();
    if family.chars().skip(1).any(|c| c.eq_ignore_ascii_case(&'s')) {
        "Premium_LRS"
    } else {
        "Standard_LRS"
    }
}

#[cfg(test)]
mod tests;
