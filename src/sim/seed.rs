//! Seeding: the cluster exactly as `aks-engine-azurestack deploy` leaves it.
//!
//! Names follow aks-engine (reference §3): an 8-digit suffix derived from
//! `masterProfile.dnsPrefix` (the simulator's own derivation: the first 8 bytes
//! of SHA-256(dnsPrefix) as a big-endian integer, modulo 90,000,000, plus
//! 10,000,000 — stable for a given dnsPrefix), masters `k8s-master-<suffix>-<i>`,
//! Linux agents `k8s-<pool>-<suffix>-<i>`, Windows agents
//! `<suffix[0:4]>k8s<poolIndex:02><i>`, NICs `<prefix>-nic-<i>`, etcd disks
//! `<prefix>-<i>-etcddisk`, OS disks `<vm>_OsDisk_1_<32 hex>`, availability
//! sets `<pool>-availabilitySet-<suffix>`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Taint;

use super::images::{self, MarketplaceImage};
use super::kube::{NodeRegistration, NodeRole};
use super::world::{
    AvailabilitySet, Boot, DataDisk, ImageRef, ManagedDisk, NetworkInterface, OsDisk, State,
    VirtualMachine,
};
use crate::model::{AgentPoolProfile, ApiModel};

/// The aks-engine release whose deployments the simulator imitates.
pub const AKS_ENGINE_VERSION: &str = "v0.85.0";
/// Default first master IP (aks-engine `DefaultFirstConsecutiveKubernetesStaticIP`).
pub const DEFAULT_FIRST_MASTER_IP: &str = "10.240.255.5";
/// First agent IP handed out (the simulator's choice; agents use dynamic IPs).
const FIRST_AGENT_IP: Ipv4Addr = Ipv4Addr::new(10, 240, 0, 4);
const DEFAULT_ETCD_DISK_GB: i64 = 256;

/// Errors of seeding.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] crate::model::ValidationError),
    #[error("masterProfile.firstConsecutiveStaticIP \"{0}\" is not an IPv4 address")]
    MasterIp(String),
}

/// The 8-digit cluster name suffix for `dns_prefix`.
pub fn name_suffix(dns_prefix: &str) -> String {
    let digest = super::util::sha256(dns_prefix.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(bytes) % 90_000_000 + 10_000_000).to_string()
}

/// VM name prefix of a pool (the VM name is `<prefix>-<i>` on Linux, `<prefix><i>` on Windows).
pub fn pool_prefix(pool: &AgentPoolProfile, pool_index: usize, suffix: &str) -> String {
    if pool.is_windows() {
        format!("{}k8s{:02}", &suffix[..4], pool_index)
    } else {
        format!("k8s-{}-{}", pool.name, suffix)
    }
}

pub fn master_prefix(suffix: &str) -> String {
    format!("k8s-master-{suffix}")
}

pub fn vm_name(prefix: &str, windows: bool, index: usize) -> String {
    if windows {
        format!("{prefix}{index}")
    } else {
        format!("{prefix}-{index}")
    }
}

pub fn nic_name(prefix: &str, index: usize) -> String {
    format!("{prefix}-nic-{index}")
}

pub fn etcd_disk_name(suffix: &str, index: usize) -> String {
    format!("{}-{index}-etcddisk", master_prefix(suffix))
}

/// The OS disk name Azure gives a VM created from an image.
pub fn os_disk_name(vm: &str) -> String {
    let hex = super::util::hex(&super::util::sha256(vm.as_bytes())[..16]);
    format!("{vm}_OsDisk_1_{hex}")
}

pub fn availability_set_name(pool: &str, suffix: &str) -> String {
    format!("{pool}-availabilitySet-{suffix}")
}

/// The storage tier of a VM size (one rule, shared with the node template).
pub use crate::template::storage_tier;

/// The labels a kubelet sets on its own Node (hostname, OS, arch, instance type,
/// region and zone).
pub fn kubelet_labels(
    node_name: &str,
    os: &str,
    vm_size: &str,
    location: &str,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for (key, value) in [
        ("kubernetes.io/hostname", node_name),
        ("kubernetes.io/os", os),
        ("beta.kubernetes.io/os", os),
        ("kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/arch", "amd64"),
        ("node.kubernetes.io/instance-type", vm_size),
        ("beta.kubernetes.io/instance-type", vm_size),
        ("topology.kubernetes.io/region", location),
        ("failure-domain.beta.kubernetes.io/region", location),
        ("topology.kubernetes.io/zone", "0"),
        ("failure-domain.beta.kubernetes.io/zone", "0"),
    ] {
        labels.insert(key.to_owned(), value.to_owned());
    }
    labels
}

/// The labels aks-engine's bootstrap passes to the kubelet (`--node-labels`).
pub fn bootstrap_labels(
    role: NodeRole,
    pool: &str,
    vm_size: &str,
    custom: impl IntoIterator<Item = (String, String)>,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let role_name = match role {
        NodeRole::Master => "master",
        NodeRole::Agent => "agent",
    };
    labels.insert("kubernetes.io/role".to_owned(), role_name.to_owned());
    labels.insert("kubernetes.azure.com/role".to_owned(), role_name.to_owned());
    match role {
        NodeRole::Master => {
            labels.insert("node-role.kubernetes.io/master".to_owned(), String::new());
            labels.insert(
                "node-role.kubernetes.io/control-plane".to_owned(),
                String::new(),
            );
            labels.insert(
                "node.kubernetes.io/exclude-from-external-load-balancers".to_owned(),
                "true".to_owned(),
            );
        }
        NodeRole::Agent => {
            labels.insert("agentpool".to_owned(), pool.to_owned());
            labels.insert("node-role.kubernetes.io/agent".to_owned(), String::new());
        }
    }
    labels.insert("storageprofile".to_owned(), "managed".to_owned());
    labels.insert("storagetier".to_owned(), storage_tier(vm_size).to_owned());
    labels.extend(custom);
    labels
}

/// The taints a master registers with: `node-role.kubernetes.io/control-plane:NoSchedule`,
/// plus `node-role.kubernetes.io/master=true:NoSchedule` before Kubernetes 1.25
/// (where aks-engine still set it).
pub fn master_taints(version: &str) -> Vec<Taint> {
    let mut taints = vec![Taint {
        key: "node-role.kubernetes.io/control-plane".to_owned(),
        effect: "NoSchedule".to_owned(),
        ..Default::default()
    }];
    let minor = version
        .trim_start_matches('v')
        .split('.')
        .nth(1)
        .and_then(|m| m.parse::<u64>().ok())
        .unwrap_or(99);
    if minor < 25 {
        taints.push(Taint {
            key: "node-role.kubernetes.io/master".to_owned(),
            value: Some("true".to_owned()),
            effect: "NoSchedule".to_owned(),
            ..Default::default()
        });
    }
    taints
}

/// The standard VM tags aks-engine writes.
pub fn vm_tags(version: &str, pool: &str, suffix: &str, vm: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("aksEngineVersion".to_owned(), AKS_ENGINE_VERSION.to_owned()),
        ("creationSource".to_owned(), format!("aksengine-{vm}")),
        ("orchestrator".to_owned(), format!("Kubernetes:{version}")),
        ("poolName".to_owned(), pool.to_owned()),
        ("resourceNameSuffix".to_owned(), suffix.to_owned()),
    ])
}

fn marketplace(image: &MarketplaceImage) -> ImageRef {
    ImageRef::Marketplace {
        publisher: image.publisher.to_owned(),
        offer: image.offer.to_owned(),
        sku: image.sku.to_owned(),
        version: image.version.to_owned(),
    }
}

fn custom_image(reference: &crate::model::ImageReference, subscription: &str) -> Option<ImageRef> {
    if reference.name.is_empty() {
        return None;
    }
    let subscription = if reference.subscription_id.is_empty() {
        subscription
    } else {
        &reference.subscription_id
    };
    let id = if reference.gallery.is_empty() {
        format!(
            "/subscriptions/{subscription}/resourceGroups/{}/providers/Microsoft.Compute/images/{}",
            reference.resource_group, reference.name
        )
    } else {
        format!(
            "/subscriptions/{subscription}/resourceGroups/{}/providers/Microsoft.Compute/galleries/{}/images/{}/versions/{}",
            reference.resource_group, reference.gallery, reference.name, reference.version
        )
    };
    Some(ImageRef::Id { id })
}

/// One VM to create while seeding.
struct Planned {
    name: String,
    prefix: String,
    index: usize,
    pool: String,
    role: NodeRole,
    windows: bool,
    vm_size: String,
    os_disk_gb: i64,
    image: ImageRef,
    ip: String,
    static_ip: bool,
    availability_set: String,
    custom_labels: Vec<(String, String)>,
    etcd_disk_gb: Option<i64>,
}

/// Fills `state` with the cluster of `model` and returns the Nodes to register
/// (Ready). Refuses an apimodel that fails [`ApiModel::validate`].
pub fn seed(model: &ApiModel, state: &mut State) -> Result<Vec<NodeRegistration>, Error> {
    model.validate()?;
    let view = model.view();
    let master = view.properties.master_profile.clone().unwrap_or_default();
    let version = view.orchestrator_version().to_owned();
    let suffix = name_suffix(&master.dns_prefix);
    let subscription = state.subscription_id.clone();
    let location = state.location.clone();

    state.cluster.dns_prefix = master.dns_prefix.clone();
    state.cluster.suffix = suffix.clone();
    state.cluster.orchestrator_version = version.clone();
    state.cluster.master_count = master.count();
    state.cluster.vnet_subnet_id = if master.vnet_subnet_id.is_empty() {
        format!(
            "{}/providers/Microsoft.Network/virtualNetworks/k8s-vnet-{suffix}/subnets/k8s-subnet",
            state.rg_id()
        )
    } else {
        master.vnet_subnet_id.clone()
    };

    let first_ip = if master.first_consecutive_static_ip.is_empty() {
        DEFAULT_FIRST_MASTER_IP
    } else {
        master.first_consecutive_static_ip.as_str()
    };
    let first_ip: Ipv4Addr = first_ip
        .parse()
        .map_err(|_| Error::MasterIp(first_ip.to_owned()))?;

    let mut planned = Vec::new();
    let master_image = master
        .image_reference
        .as_ref()
        .and_then(|r| custom_image(r, &subscription))
        .unwrap_or_else(|| marketplace(images::linux_image_for_distro(&master.distro)));
    let etcd_gb = master
        .etcd_disk_size_gb
        .parse::<i64>()
        .unwrap_or(DEFAULT_ETCD_DISK_GB);
    for index in 0..master.count() {
        let prefix = master_prefix(&suffix);
        planned.push(Planned {
            name: vm_name(&prefix, false, index),
            prefix,
            index,
            pool: "master".to_owned(),
            role: NodeRole::Master,
            windows: false,
            vm_size: master.vm_size.clone(),
            os_disk_gb: master.os_disk_size_gb.unwrap_or(30),
            image: master_image.clone(),
            ip: Ipv4Addr::from(u32::from(first_ip) + index as u32).to_string(),
            static_ip: true,
            availability_set: availability_set_name("master", &suffix),
            custom_labels: Vec::new(),
            etcd_disk_gb: Some(etcd_gb),
        });
    }
    let mut agent_ip = u32::from(FIRST_AGENT_IP);
    for (pool_index, pool) in view.properties.agent_pool_profiles.iter().enumerate() {
        let prefix = pool_prefix(pool, pool_index, &suffix);
        let windows = pool.is_windows();
        let image = pool
            .image_reference
            .as_ref()
            .and_then(|r| custom_image(r, &subscription))
            .unwrap_or_else(|| {
                if windows {
                    windows_image_of(model)
                } else {
                    marketplace(images::linux_image_for_distro(&pool.distro))
                }
            });
        for index in 0..pool.count() {
            planned.push(Planned {
                name: vm_name(&prefix, windows, index),
                prefix: prefix.clone(),
                index,
                pool: pool.name.clone(),
                role: NodeRole::Agent,
                windows,
                vm_size: pool.vm_size.clone(),
                os_disk_gb: pool
                    .os_disk_size_gb
                    .unwrap_or(if windows { 128 } else { 30 }),
                image: image.clone(),
                ip: Ipv4Addr::from(agent_ip).to_string(),
                static_ip: false,
                availability_set: availability_set_name(&pool.name, &suffix),
                custom_labels: pool
                    .custom_node_labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                etcd_disk_gb: None,
            });
            agent_ip += 1;
        }
    }

    let now = super::util::rfc3339(std::time::SystemTime::now());
    let admin = view
        .properties
        .linux_profile
        .as_ref()
        .map(|p| p.admin_username.clone())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "azureuser".to_owned());
    let windows_admin = view
        .properties
        .windows_profile
        .as_ref()
        .map(|p| p.admin_username.clone())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "azureuser".to_owned());
    let mut nodes = Vec::new();
    for vm in planned {
        let availability_set = vm.availability_set.clone();
        state
            .availability_sets
            .entry(availability_set.to_ascii_lowercase())
            .or_insert_with(|| AvailabilitySet {
                name: availability_set.clone(),
                location: location.clone(),
                tags: BTreeMap::new(),
                platform_fault_domain_count: 2,
                platform_update_domain_count: 3,
            });
        let incarnation = state.incarnation();
        let tier = storage_tier(&vm.vm_size).to_owned();
        let os_type = if vm.windows { "Windows" } else { "Linux" };
        let os_disk = OsDisk {
            name: os_disk_name(&vm.name),
            os_type: os_type.to_owned(),
            create_option: "FromImage".to_owned(),
            caching: "ReadWrite".to_owned(),
            disk_size_gb: vm.os_disk_gb,
            storage_account_type: tier.clone(),
        };
        state.disks.insert(
            os_disk.name.to_ascii_lowercase(),
            ManagedDisk {
                name: os_disk.name.clone(),
                location: location.clone(),
                tags: BTreeMap::new(),
                disk_size_gb: vm.os_disk_gb,
                sku: tier.clone(),
                os_type: Some(os_type.to_owned()),
                create_option: "FromImage".to_owned(),
                image: Some(vm.image.clone()),
                managed_by: Some(vm.name.clone()),
                provisioning_state: "Succeeded".to_owned(),
                time_created: now.clone(),
                incarnation,
            },
        );
        let mut data_disks = Vec::new();
        if let Some(size) = vm.etcd_disk_gb {
            let name = etcd_disk_name(&suffix, vm.index);
            data_disks.push(DataDisk {
                lun: 0,
                name: name.clone(),
                create_option: "Empty".to_owned(),
                caching: "None".to_owned(),
                disk_size_gb: size,
                storage_account_type: tier.clone(),
            });
            state.disks.insert(
                name.to_ascii_lowercase(),
                ManagedDisk {
                    name,
                    location: location.clone(),
                    tags: BTreeMap::new(),
                    disk_size_gb: size,
                    sku: tier.clone(),
                    os_type: None,
                    create_option: "Empty".to_owned(),
                    image: None,
                    managed_by: Some(vm.name.clone()),
                    provisioning_state: "Succeeded".to_owned(),
                    time_created: now.clone(),
                    incarnation,
                },
            );
        }
        let nic = nic_name(&vm.prefix, vm.index);
        state.network_interfaces.insert(
            nic.to_ascii_lowercase(),
            NetworkInterface {
                name: nic.clone(),
                location: location.clone(),
                tags: vm_tags(&version, &vm.pool, &suffix, &vm.name),
                private_ip_address: vm.ip.clone(),
                private_ip_allocation_method: if vm.static_ip { "Static" } else { "Dynamic" }
                    .to_owned(),
                subnet_id: state.cluster.vnet_subnet_id.clone(),
                ip_forwarding: true,
                virtual_machine: Some(vm.name.clone()),
                provisioning_state: "Succeeded".to_owned(),
                incarnation,
            },
        );
        let node_name = vm.name.to_ascii_lowercase();
        state.virtual_machines.insert(
            vm.name.to_ascii_lowercase(),
            VirtualMachine {
                name: vm.name.clone(),
                vm_id: super::util::uuid_from(&format!("{}/{}", master.dns_prefix, vm.name)),
                location: location.clone(),
                tags: vm_tags(&version, &vm.pool, &suffix, &vm.name),
                vm_size: vm.vm_size.clone(),
                availability_set: Some(availability_set),
                image: vm.image.clone(),
                os_disk,
                data_disks,
                network_interfaces: vec![nic],
                computer_name: vm.name.clone(),
                admin_username: if vm.windows {
                    windows_admin.clone()
                } else {
                    admin.clone()
                },
                custom_data: None,
                os_profile_extra: serde_json::Value::Null,
                provisioning_state: "Succeeded".to_owned(),
                power_state: "running".to_owned(),
                extensions: vec![seed_extension(&vm)],
                time_created: now.clone(),
                deployment: None,
                node_name: Some(node_name.clone()),
                boot: Boot::Seeded,
                incarnation,
            },
        );
        let os = if vm.windows { "windows" } else { "linux" };
        let mut labels = kubelet_labels(&node_name, os, &vm.vm_size, &location);
        labels.extend(bootstrap_labels(
            vm.role,
            &vm.pool,
            &vm.vm_size,
            vm.custom_labels.clone(),
        ));
        nodes.push(NodeRegistration {
            name: node_name,
            kubelet_version: format!("v{}", version.trim_start_matches('v')),
            role: vm.role,
            os: os.to_owned(),
            labels,
            taints: if vm.role == NodeRole::Master {
                master_taints(&version)
            } else {
                Vec::new()
            },
            pool: vm.pool.clone(),
            vm_size: vm.vm_size.clone(),
            internal_ip: vm.ip.clone(),
        });
    }
    Ok(nodes)
}

fn windows_image_of(model: &ApiModel) -> ImageRef {
    let default = images::windows_image();
    let profile = model
        .view()
        .properties
        .windows_profile
        .clone()
        .unwrap_or_default();
    let pick = |value: &str, fallback: &str| {
        if value.is_empty() {
            fallback.to_owned()
        } else {
            value.to_owned()
        }
    };
    ImageRef::Marketplace {
        publisher: pick(&profile.windows_publisher, default.publisher),
        offer: pick(&profile.windows_offer, default.offer),
        sku: pick(&profile.windows_sku, default.sku),
        version: pick(&profile.image_version, default.version),
    }
}

fn seed_extension(vm: &Planned) -> super::world::Extension {
    let (name, publisher, kind, version) = if vm.windows {
        (
            "cse-agent-".to_owned() + &vm.index.to_string(),
            "Microsoft.Compute",
            "CustomScriptExtension",
            "1.8",
        )
    } else if vm.role == NodeRole::Master {
        (
            "cse-master-".to_owned() + &vm.index.to_string(),
            "Microsoft.Azure.Extensions",
            "CustomScript",
            "2.0",
        )
    } else {
        (
            "cse-agent-".to_owned() + &vm.index.to_string(),
            "Microsoft.Azure.Extensions",
            "CustomScript",
            "2.0",
        )
    };
    super::world::Extension {
        name,
        publisher: publisher.to_owned(),
        kind: kind.to_owned(),
        type_handler_version: version.to_owned(),
        auto_upgrade_minor_version: true,
        settings: serde_json::json!({}),
        protected_settings: serde_json::Value::Null,
        provisioning_state: "Succeeded".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suffix_is_eight_digits_and_stable() {
        let suffix = name_suffix("mycluster");
        assert_eq!(suffix.len(), 8);
        assert!(suffix.chars().all(|c| c.is_ascii_digit()));
        assert_eq!(suffix, name_suffix("mycluster"));
        assert_ne!(suffix, name_suffix("othercluster"));
    }

    #[test]
    fn storage_tiers_follow_the_vm_size() {
        assert_eq!(storage_tier("Standard_DS2_v2"), "Premium_LRS");
        assert_eq!(storage_tier("Standard_D2s_v3"), "Premium_LRS");
        assert_eq!(storage_tier("Standard_D2_v2"), "Standard_LRS");
        assert_eq!(storage_tier("Standard_A4"), "Standard_LRS");
    }

    #[test]
    fn masters_before_1_25_also_carry_the_master_taint() {
        assert_eq!(master_taints("1.24.9").len(), 2);
        assert_eq!(master_taints("1.33.10").len(), 1);
    }
}
