//! Reading an ARM deployment template into the resources it declares.
//!
//! The simulator evaluates templates with literal values only: any string that
//! is an ARM expression (`[...]`, not the `[[` escape) and any resource type
//! outside the supported set make the deployment fail with `DeploymentFailed`
//! and one nested `InvalidTemplate` detail per problem.

use std::collections::BTreeMap;

use serde_json::Value;

/// The resource types a deployment may declare.
pub const SUPPORTED_TYPES: &[&str] = &[
    "Microsoft.Compute/availabilitySets",
    "Microsoft.Compute/disks",
    "Microsoft.Network/networkInterfaces",
    "Microsoft.Compute/virtualMachines",
    "Microsoft.Compute/virtualMachines/extensions",
];

/// One resource of a template, in the order the simulator creates them.
#[derive(Clone, Debug)]
pub enum Resource {
    AvailabilitySet {
        name: String,
        tags: BTreeMap<String, String>,
        fault_domains: i64,
        update_domains: i64,
    },
    Disk {
        name: String,
        tags: BTreeMap<String, String>,
        size_gb: i64,
        sku: String,
    },
    Nic {
        name: String,
        tags: BTreeMap<String, String>,
        private_ip: Option<String>,
        subnet_id: String,
        ip_forwarding: bool,
    },
    Vm(Box<VmSpec>),
    Extension {
        vm: String,
        name: String,
        publisher: String,
        kind: String,
        type_handler_version: String,
        auto_upgrade_minor_version: bool,
        settings: Value,
        protected_settings: Value,
    },
}

impl Resource {
    /// (full type, name) as ARM shows them in deployment operations.
    pub fn type_and_name(&self) -> (&'static str, String) {
        match self {
            Self::AvailabilitySet { name, .. } => {
                ("Microsoft.Compute/availabilitySets", name.clone())
            }
            Self::Disk { name, .. } => ("Microsoft.Compute/disks", name.clone()),
            Self::Nic { name, .. } => ("Microsoft.Network/networkInterfaces", name.clone()),
            Self::Vm(vm) => ("Microsoft.Compute/virtualMachines", vm.name.clone()),
            Self::Extension { vm, name, .. } => (
                "Microsoft.Compute/virtualMachines/extensions",
                format!("{vm}/{name}"),
            ),
        }
    }

    fn order(&self) -> u8 {
        match self {
            Self::AvailabilitySet { .. } => 0,
            Self::Disk { .. } => 1,
            Self::Nic { .. } => 2,
            Self::Vm(_) => 3,
            Self::Extension { .. } => 4,
        }
    }
}

/// A virtual machine as a template declares it.
#[derive(Clone, Debug)]
pub struct VmSpec {
    pub name: String,
    pub tags: BTreeMap<String, String>,
    pub vm_size: String,
    pub availability_set: Option<String>,
    pub computer_name: Option<String>,
    pub admin_username: String,
    pub custom_data: Option<String>,
    pub windows_configuration: bool,
    pub image: Option<super::world::ImageRef>,
    pub os_disk_name: Option<String>,
    pub os_disk_create_option: String,
    pub os_disk_id: Option<String>,
    pub os_disk_caching: String,
    pub os_disk_size_gb: Option<i64>,
    pub os_disk_storage_type: Option<String>,
    pub os_type: Option<String>,
    pub data_disks: Vec<DataDiskSpec>,
    pub nics: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct DataDiskSpec {
    pub lun: i64,
    pub name: Option<String>,
    pub create_option: String,
    pub caching: String,
    pub size_gb: Option<i64>,
    pub disk_id: Option<String>,
    pub storage_type: Option<String>,
}

/// A problem with the template: (target resource, message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub target: String,
    pub message: String,
}

/// Reads the template's resources, or every problem found.
pub fn read(template: &Value) -> Result<Vec<Resource>, Vec<Problem>> {
    let mut problems = Vec::new();
    let Some(resources) = template.get("resources").and_then(Value::as_array) else {
        return Err(vec![Problem {
            target: "template".into(),
            message: "The template has no 'resources' array.".into(),
        }]);
    };
    let mut out = Vec::new();
    for (index, resource) in resources.iter().enumerate() {
        read_resource(resource, None, index, &mut out, &mut problems);
    }
    if problems.is_empty() {
        out.sort_by_key(Resource::order);
        Ok(out)
    } else {
        Err(problems)
    }
}

fn read_resource(
    resource: &Value,
    parent_vm: Option<&str>,
    index: usize,
    out: &mut Vec<Resource>,
    problems: &mut Vec<Problem>,
) {
    let kind = resource
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = resource
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let target = if name.is_empty() {
        format!("resources[{index}]")
    } else {
        name.to_owned()
    };
    let mut expressions = Vec::new();
    find_expressions(resource, String::new(), &mut expressions);
    if !expressions.is_empty() {
        for (path, expression) in expressions {
            problems.push(Problem {
                target: target.clone(),
                message: format!(
                    "The simulator evaluates templates with literal values only: resource '{target}' has the expression '{expression}' at '{path}'. Render the template with literal values."
                ),
            });
        }
        return;
    }
    if name.is_empty() {
        problems.push(Problem {
            target,
            message: "The resource has no 'name'.".into(),
        });
        return;
    }
    let full_type = match parent_vm {
        Some(_) if kind.eq_ignore_ascii_case("extensions") => {
            "Microsoft.Compute/virtualMachines/extensions".to_owned()
        }
        _ => kind.to_owned(),
    };
    let Some(supported) = SUPPORTED_TYPES
        .iter()
        .find(|t| t.eq_ignore_ascii_case(&full_type))
    else {
        problems.push(Problem {
            target: target.clone(),
            message: format!(
                "The simulator cannot deploy resource '{target}' of type '{kind}'. Supported types: {}.",
                SUPPORTED_TYPES.join(", ")
            ),
        });
        return;
    };
    let props = resource.get("properties").cloned().unwrap_or(Value::Null);
    let tags = tags_of(resource);
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
    match *supported {
        "Microsoft.Compute/availabilitySets" => out.push(Resource::AvailabilitySet {
            name: name.to_owned(),
            tags,
            fault_domains: props
                .get("platformFaultDomainCount")
                .and_then(Value::as_i64)
                .unwrap_or(2),
            update_domains: props
                .get("platformUpdateDomainCount")
                .and_then(Value::as_i64)
                .unwrap_or(3),
        }),
        "Microsoft.Compute/disks" => out.push(Resource::Disk {
            name: name.to_owned(),
            tags,
            size_gb: props
                .get("diskSizeGB")
                .and_then(Value::as_i64)
                .unwrap_or(128),
            sku: resource
                .pointer("/sku/name")
                .and_then(Value::as_str)
                .unwrap_or("Standard_LRS")
                .to_owned(),
        }),
        "Microsoft.Network/networkInterfaces" => {
            let ip_config = props
                .pointer("/ipConfigurations/0/properties")
                .cloned()
                .unwrap_or(Value::Null);
            let method = text(ip_config.get("privateIPAllocationMethod"))
                .unwrap_or_else(|| "Dynamic".into());
            let private_ip = text(ip_config.get("privateIPAddress"))
                .filter(|_| method.eq_ignore_ascii_case("static"));
            out.push(Resource::Nic {
                name: name.to_owned(),
                tags,
                private_ip,
                subnet_id: text(ip_config.pointer("/subnet/id")).unwrap_or_default(),
                ip_forwarding: props
                    .get("enableIPForwarding")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            })
        }
        "Microsoft.Compute/virtualMachines/extensions" => {
            let (vm, extension) = match parent_vm {
                Some(vm) => (
                    vm.to_owned(),
                    name.rsplit('/').next().unwrap_or(name).to_owned(),
                ),
                None => match name.split_once('/') {
                    Some((vm, extension)) => (vm.to_owned(), extension.to_owned()),
                    None => {
                        problems.push(Problem {
                            target,
                            message: "An extension's name is '<vmName>/<extensionName>'.".into(),
                        });
                        return;
                    }
                },
            };
            out.push(Resource::Extension {
                vm,
                name: extension,
                publisher: text(props.get("publisher")).unwrap_or_default(),
                kind: text(props.get("type")).unwrap_or_default(),
                type_handler_version: text(props.get("typeHandlerVersion")).unwrap_or_default(),
                auto_upgrade_minor_version: props
                    .get("autoUpgradeMinorVersion")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                settings: props
                    .get("settings")
                    .cloned()
                    .unwrap_or_else(|| serde_json::json!({})),
                protected_settings: props
                    .get("protectedSettings")
                    .cloned()
                    .unwrap_or(Value::Null),
            });
        }
        "Microsoft.Compute/virtualMachines" => {
            match read_vm(name, tags, &props) {
                Ok(vm) => out.push(Resource::Vm(Box::new(vm))),
                Err(message) => problems.push(Problem { target, message }),
            }
            if let Some(children) = resource.get("resources").and_then(Value::as_array) {
                for (child_index, child) in children.iter().enumerate() {
                    read_resource(child, Some(name), child_index, out, problems);
                }
            }
        }
        _ => unreachable!("every supported type is handled"),
    }
}

fn read_vm(name: &str, tags: BTreeMap<String, String>, props: &Value) -> Result<VmSpec, String> {
    let text = |pointer: &str| {
        props
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let vm_size = text("/hardwareProfile/vmSize")
        .ok_or("The VM has no properties.hardwareProfile.vmSize.")?;
    let image = match props.pointer("/storageProfile/imageReference") {
        Some(reference) => match reference.get("id").and_then(Value::as_str) {
            Some(id) => Some(super::world::ImageRef::Id { id: id.to_owned() }),
            None => {
                let field = |key: &str| {
                    reference
                        .get(key)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                Some(super::world::ImageRef::Marketplace {
                    publisher: field("publisher"),
                    offer: field("offer"),
                    sku: field("sku"),
                    version: field("version"),
                })
            }
        },
        None => None,
    };
    let os_disk = props
        .pointer("/storageProfile/osDisk")
        .cloned()
        .unwrap_or(Value::Null);
    let os_disk_create_option = os_disk
        .get("createOption")
        .and_then(Value::as_str)
        .unwrap_or("FromImage")
        .to_owned();
    if image.is_none() && !os_disk_create_option.eq_ignore_ascii_case("attach") {
        return Err(
            "The VM has neither storageProfile.imageReference nor an attached OS disk.".into(),
        );
    }
    let nics: Vec<String> = props
        .pointer("/networkProfile/networkInterfaces")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|nic| nic.get("id").and_then(Value::as_str))
                .map(last_segment)
                .collect()
        })
        .unwrap_or_default();
    if nics.is_empty() {
        return Err("The VM has no properties.networkProfile.networkInterfaces.".into());
    }
    let data_disks = props
        .pointer("/storageProfile/dataDisks")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|disk| DataDiskSpec {
                    lun: disk.get("lun").and_then(Value::as_i64).unwrap_or(0),
                    name: disk.get("name").and_then(Value::as_str).map(str::to_owned),
                    create_option: disk
                        .get("createOption")
                        .and_then(Value::as_str)
                        .unwrap_or("Empty")
                        .to_owned(),
                    caching: disk
                        .get("caching")
                        .and_then(Value::as_str)
                        .unwrap_or("None")
                        .to_owned(),
                    size_gb: disk.get("diskSizeGB").and_then(Value::as_i64),
                    disk_id: disk
                        .pointer("/managedDisk/id")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    storage_type: disk
                        .pointer("/managedDisk/storageAccountType")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(VmSpec {
        name: name.to_owned(),
        tags,
        vm_size,
        availability_set: text("/availabilitySet/id").map(|id| last_segment(&id)),
        computer_name: text("/osProfile/computerName"),
        admin_username: text("/osProfile/adminUsername").unwrap_or_else(|| "azureuser".into()),
        custom_data: text("/osProfile/customData"),
        windows_configuration: props.pointer("/osProfile/windowsConfiguration").is_some(),
        image,
        os_disk_name: os_disk
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned),
        os_disk_create_option,
        os_disk_id: os_disk
            .pointer("/managedDisk/id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        os_disk_caching: os_disk
            .get("caching")
            .and_then(Value::as_str)
            .unwrap_or("ReadWrite")
            .to_owned(),
        os_disk_size_gb: os_disk.get("diskSizeGB").and_then(Value::as_i64),
        os_disk_storage_type: os_disk
            .pointer("/managedDisk/storageAccountType")
            .and_then(Value::as_str)
            .map(str::to_owned),
        os_type: os_disk
            .get("osType")
            .and_then(Value::as_str)
            .map(str::to_owned),
        data_disks,
        nics,
    })
}

/// The last segment of a resource id (its name).
pub fn last_segment(id: &str) -> String {
    id.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(id)
        .to_owned()
}

fn tags_of(resource: &Value) -> BTreeMap<String, String> {
    resource
        .get("tags")
        .and_then(Value::as_object)
        .map(|tags| {
            tags.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// ARM expressions in `value`: (JSON path, expression).
fn find_expressions(value: &Value, path: String, out: &mut Vec<(String, String)>) {
    match value {
        Value::String(text) if is_expression(text) => out.push((path, text.clone())),
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                find_expressions(item, format!("{path}[{index}]"), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                // Nested resources are read (and checked) on their own.
                if key == "resources" {
                    continue;
                }
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                find_expressions(item, child, out);
            }
        }
        _ => {}
    }
}

/// True for an ARM template expression (`[concat(...)]`), false for the `[[` escape.
pub fn is_expression(text: &str) -> bool {
    let text = text.trim();
    text.starts_with('[') && text.ends_with(']') && !text.starts_with("[[")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expressions_and_unknown_types_are_problems() {
        let template = json!({"resources": [
            {"type": "Microsoft.Network/networkInterfaces", "name": "[concat('a', 'b')]"},
            {"type": "Microsoft.Network/loadBalancers", "name": "lb"},
            {"type": "Microsoft.Compute/availabilitySets", "name": "as", "properties": {"x": "[[literal]"}}
        ]});
        let problems = read(&template).unwrap_err();
        assert_eq!(problems.len(), 2);
        assert!(problems[0].message.contains("literal values only"));
        assert!(
            problems[1]
                .message
                .contains("Microsoft.Network/loadBalancers")
        );
    }

    #[test]
    fn nested_extensions_are_read_after_their_vm() {
        let template = json!({"resources": [
            {"type": "Microsoft.Compute/virtualMachines", "name": "vm1", "properties": {
                "hardwareProfile": {"vmSize": "Standard_D2_v2"},
                "storageProfile": {"imageReference": {"publisher": "p", "offer": "o", "sku": "s", "version": "v"}},
                "networkProfile": {"networkInterfaces": [{"id": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/networkInterfaces/nic1"}]}
            }, "resources": [{"type": "extensions", "name": "cse", "properties": {"publisher": "p", "type": "t", "typeHandlerVersion": "2.0"}}]},
            {"type": "Microsoft.Network/networkInterfaces", "name": "nic1", "properties": {}}
        ]});
        let resources = read(&template).unwrap();
        let names: Vec<_> = resources.iter().map(|r| r.type_and_name().1).collect();
        assert_eq!(names, ["nic1", "vm1", "vm1/cse"]);
    }
}
