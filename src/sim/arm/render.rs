//! Resources as ARM returns them.

use serde_json::{Value, json};

use crate::sim::world::{
    AsyncOperation, AvailabilitySet, Boot, Deployment, DeploymentOperation, ImageRef, ManagedDisk,
    NetworkInterface, State, VirtualMachine,
};

fn image_reference(image: &ImageRef) -> Value {
    match image {
        ImageRef::Marketplace {
            publisher,
            offer,
            sku,
            version,
        } => {
            let exact = if version.eq_ignore_ascii_case("latest") {
                crate::sim::images::find(publisher, offer, sku, version)
                    .map(|i| i.version.to_owned())
                    .unwrap_or_else(|| version.clone())
            } else {
                version.clone()
            };
            json!({"publisher": publisher, "offer": offer, "sku": sku, "version": version, "exactVersion": exact})
        }
        ImageRef::Id { id } => json!({"id": id}),
    }
}

/// ARM writes availability set ids in upper case.
fn availability_set_id(state: &State, name: &str) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/availabilitySets/{}",
        state.subscription_id,
        state.resource_group.to_ascii_uppercase(),
        name.to_ascii_uppercase()
    )
}

fn provisioning_code(state: &str) -> String {
    format!("ProvisioningState/{}", state.to_ascii_lowercase())
}

pub fn virtual_machine(
    state: &State,
    vm: &VirtualMachine,
    now: &str,
    instance_view: bool,
) -> Value {
    let id = state.resource_id("Microsoft.Compute/virtualMachines", &vm.name);
    let disk_id = |name: &str| state.resource_id("Microsoft.Compute/disks", name);
    let os_configuration = if vm.is_windows() {
        json!({"windowsConfiguration": {"provisionVMAgent": true, "enableAutomaticUpdates": false}})
    } else {
        json!({"linuxConfiguration": {"disablePasswordAuthentication": true, "provisionVMAgent": true}})
    };
    let mut os_profile = json!({
        "computerName": vm.computer_name,
        "adminUsername": vm.admin_username,
        "secrets": [],
        "allowExtensionOperations": true,
        "requireGuestProvisionSignal": true,
    });
    if let (Some(target), Some(config)) = (os_profile.as_object_mut(), os_configuration.as_object())
    {
        target.extend(config.clone());
    }
    let data_disks: Vec<Value> = vm
        .data_disks
        .iter()
        .map(|d| {
            json!({
                "lun": d.lun,
                "name": d.name,
                "createOption": d.create_option,
                "caching": d.caching,
                "managedDisk": {"storageAccountType": d.storage_account_type, "id": disk_id(&d.name)},
                "diskSizeGB": d.disk_size_gb,
                "toBeDetached": false,
            })
        })
        .collect();
    let mut properties = json!({
        "vmId": vm.vm_id,
        "hardwareProfile": {"vmSize": vm.vm_size},
        "storageProfile": {
            "imageReference": image_reference(&vm.image),
            "osDisk": {
                "osType": vm.os_disk.os_type,
                "name": vm.os_disk.name,
                "createOption": vm.os_disk.create_option,
                "caching": vm.os_disk.caching,
                "managedDisk": {"storageAccountType": vm.os_disk.storage_account_type, "id": disk_id(&vm.os_disk.name)},
                "diskSizeGB": vm.os_disk.disk_size_gb,
            },
            "dataDisks": data_disks,
        },
        "osProfile": os_profile,
        "networkProfile": {
            "networkInterfaces": vm.network_interfaces.iter().enumerate().map(|(i, n)| json!({
                "id": state.resource_id("Microsoft.Network/networkInterfaces", n),
                "properties": {"primary": i == 0},
            })).collect::<Vec<_>>(),
        },
        "provisioningState": vm.provisioning_state,
    });
    if let Some(set) = &vm.availability_set {
        properties["availabilitySet"] = json!({"id": availability_set_id(state, set)});
    }
    if instance_view {
        properties["instanceView"] = vm_instance_view(vm, now);
    }
    let mut body = json!({
        "name": vm.name,
        "id": id,
        "type": "Microsoft.Compute/virtualMachines",
        "location": vm.location,
        "tags": vm.tags,
        "properties": properties,
    });
    if !vm.extensions.is_empty() {
        body["resources"] = Value::Array(
            vm.extensions
                .iter()
                .map(|e| {
                    json!({
                        "name": e.name,
                        "id": format!("{id}/extensions/{}", e.name),
                        "type": "Microsoft.Compute/virtualMachines/extensions",
                        "location": vm.location,
                        "properties": {
                            "autoUpgradeMinorVersion": e.auto_upgrade_minor_version,
                            "provisioningState": e.provisioning_state,
                            "publisher": e.publisher,
                            "type": e.kind,
                            "typeHandlerVersion": e.type_handler_version,
                            "settings": e.settings,
                        }
                    })
                })
                .collect(),
        );
    }
    body
}

pub fn vm_instance_view(vm: &VirtualMachine, now: &str) -> Value {
    let (level, provisioning_display) = match vm.provisioning_state.as_str() {
        "Failed" => ("Error", "Provisioning failed"),
        "Succeeded" => ("Info", "Provisioning succeeded"),
        "Deleting" => ("Info", "Deleting"),
        _ => ("Info", "Creating"),
    };
    let vm_code = if vm.provisioning_state == "Failed" {
        "ProvisioningState/failed/VMExtensionProvisioningError".to_owned()
    } else {
        provisioning_code(&vm.provisioning_state)
    };
    let mut statuses = vec![json!({
        "code": vm_code,
        "level": level,
        "displayStatus": provisioning_display,
        "time": now,
    })];
    let power = match vm.power_state.as_str() {
        "running" => "VM running",
        "starting" => "VM starting",
        "stopping" => "VM stopping",
        "stopped" => "VM stopped",
        "deallocated" => "VM deallocated",
        _ => "VM state unknown",
    };
    statuses.push(json!({"code": format!("PowerState/{}", vm.power_state), "level": "Info", "displayStatus": power}));
    let agent_ready = vm.power_state == "running";
    let (os_name, os_version) = if vm.is_windows() {
        ("Windows Server 2019 Datacenter", "10.0.17763.8644")
    } else {
        ("ubuntu", "22.04")
    };
    let mut disks = vec![
        json!({"name": vm.os_disk.name, "statuses": [{"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded", "time": vm.time_created}]}),
    ];
    for disk in &vm.data_disks {
        disks.push(json!({"name": disk.name, "statuses": [{"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded", "time": vm.time_created}]}));
    }
    let mut view = json!({
        "computerName": vm.computer_name,
        "osName": os_name,
        "osVersion": os_version,
        "vmAgent": {
            "vmAgentVersion": "2.2.53",
            "statuses": [{
                "code": "ProvisioningState/succeeded",
                "level": "Info",
                "displayStatus": if agent_ready { "Ready" } else { "Not Ready" },
                "message": if agent_ready { "Guest Agent is running" } else { "VM status blob is found but not yet populated." },
                "time": now,
            }],
        },
        "disks": disks,
        "extensions": vm.extensions.iter().map(|e| json!({
            "name": e.name,
            "type": format!("{}.{}", e.publisher, e.kind),
            "typeHandlerVersion": e.type_handler_version,
            "statuses": [{
                "code": provisioning_code(&e.provisioning_state),
                "level": if e.provisioning_state == "Failed" { "Error" } else { "Info" },
                "displayStatus": format!("Provisioning {}", e.provisioning_state.to_ascii_lowercase()),
            }],
        })).collect::<Vec<_>>(),
        "statuses": statuses,
    });
    if let Boot::Failed(reason) = &vm.boot {
        view["bootDiagnostics"] = json!({"status": {"code": "aksup-simulator/kubelet", "level": "Warning", "message": reason}});
    }
    view
}

pub fn network_interface(state: &State, nic: &NetworkInterface) -> Value {
    let id = state.resource_id("Microsoft.Network/networkInterfaces", &nic.name);
    let etag = format!(
        "W/\"{}\"",
        crate::sim::util::uuid_from(&format!("{id}/{}", nic.incarnation))
    );
    let mut properties = json!({
        "provisioningState": nic.provisioning_state,
        "resourceGuid": crate::sim::util::uuid_from(&format!("{id}#{}", nic.incarnation)),
        "ipConfigurations": [{
            "name": "ipconfig1",
            "id": format!("{id}/ipConfigurations/ipconfig1"),
            "etag": etag,
            "type": "Microsoft.Network/networkInterfaces/ipConfigurations",
            "properties": {
                "provisioningState": nic.provisioning_state,
                "privateIPAddress": nic.private_ip_address,
                "privateIPAllocationMethod": nic.private_ip_allocation_method,
                "subnet": {"id": nic.subnet_id},
                "primary": true,
                "privateIPAddressVersion": "IPv4",
            },
        }],
        "dnsSettings": {"dnsServers": [], "appliedDnsServers": []},
        "enableAcceleratedNetworking": false,
        "enableIPForwarding": nic.ip_forwarding,
        "primary": true,
        "tapConfigurations": [],
    });
    if let Some(vm) = &nic.virtual_machine {
        properties["virtualMachine"] =
            json!({"id": state.resource_id("Microsoft.Compute/virtualMachines", vm)});
    }
    json!({
        "name": nic.name,
        "id": id,
        "etag": etag,
        "location": nic.location,
        "tags": nic.tags,
        "type": "Microsoft.Network/networkInterfaces",
        "properties": properties,
    })
}

pub fn disk(state: &State, disk: &ManagedDisk) -> Value {
    let id = state.resource_id("Microsoft.Compute/disks", &disk.name);
    let tier = if disk.sku.starts_with("Premium") {
        "Premium"
    } else {
        "Standard"
    };
    let mut creation = json!({"createOption": disk.create_option});
    if let Some(image) = &disk.image {
        creation["imageReference"] = match image {
            ImageRef::Marketplace {
                publisher,
                offer,
                sku,
                version,
            } => json!({"id": format!(
                "/Subscriptions/{}/Providers/Microsoft.Compute/Locations/{}/Publishers/{publisher}/ArtifactTypes/VMImage/Offers/{offer}/Skus/{sku}/Versions/{version}",
                state.subscription_id, disk.location
            )}),
            ImageRef::Id { id } => json!({"id": id}),
        };
    }
    let mut properties = json!({
        "creationData": creation,
        "diskSizeGB": disk.disk_size_gb,
        "timeCreated": disk.time_created,
        "provisioningState": disk.provisioning_state,
        "diskState": if disk.managed_by.is_some() { "Attached" } else { "Unattached" },
        "uniqueId": crate::sim::util::uuid_from(&format!("{id}#{}", disk.incarnation)),
    });
    if let Some(os) = &disk.os_type {
        properties["osType"] = json!(os);
        properties["hyperVGeneration"] = json!("V1");
    }
    let mut body = json!({
        "name": disk.name,
        "id": id,
        "type": "Microsoft.Compute/disks",
        "location": disk.location,
        "tags": disk.tags,
        "sku": {"name": disk.sku, "tier": tier},
        "properties": properties,
    });
    if let Some(vm) = &disk.managed_by {
        body["managedBy"] = json!(state.resource_id("Microsoft.Compute/virtualMachines", vm));
    }
    body
}

pub fn availability_set(state: &State, set: &AvailabilitySet) -> Value {
    let vms: Vec<Value> = state
        .virtual_machines
        .values()
        .filter(|vm| vm.availability_set.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(&set.name)))
        .map(|vm| {
            json!({"id": format!(
                "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines/{}",
                state.subscription_id,
                state.resource_group.to_ascii_uppercase(),
                vm.name.to_ascii_uppercase()
            )})
        })
        .collect();
    json!({
        "name": set.name,
        "id": state.resource_id("Microsoft.Compute/availabilitySets", &set.name),
        "type": "Microsoft.Compute/availabilitySets",
        "location": set.location,
        "tags": set.tags,
        "sku": {"name": "Aligned"},
        "properties": {
            "platformUpdateDomainCount": set.platform_update_domain_count,
            "platformFaultDomainCount": set.platform_fault_domain_count,
            "virtualMachines": vms,
        },
    })
}

pub fn deployment_id(state: &State, name: &str) -> String {
    state.resource_id("Microsoft.Resources/deployments", name)
}

pub fn deployment(state: &State, deployment: &Deployment) -> Value {
    let mut properties = json!({
        "templateHash": deployment.template_hash,
        "parameters": deployment.parameters.as_object().cloned().unwrap_or_default(),
        "mode": deployment.mode,
        "provisioningState": deployment.provisioning_state,
        "timestamp": deployment.timestamp,
        "duration": deployment.duration,
        "correlationId": deployment.correlation_id,
        "providers": [],
        "dependencies": [],
        "outputResources": deployment.output_resources.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
    });
    if let Some(error) = &deployment.error {
        properties["error"] = error.clone();
    }
    json!({
        "id": deployment_id(state, &deployment.name),
        "name": deployment.name,
        "type": "Microsoft.Resources/deployments",
        "properties": properties,
    })
}

pub fn deployment_operation(
    state: &State,
    deployment: &Deployment,
    op: &DeploymentOperation,
) -> Value {
    json!({
        "id": format!("{}/operations/{}", deployment_id(state, &deployment.name), op.operation_id),
        "operationId": op.operation_id,
        "properties": {
            "provisioningOperation": op.provisioning_operation,
            "provisioningState": op.provisioning_state,
            "timestamp": op.timestamp,
            "duration": op.duration,
            "trackingId": crate::sim::util::uuid_from(&op.operation_id),
            "serviceRequestId": crate::sim::util::uuid_from(&format!("{}#request", op.operation_id)),
            "statusCode": op.status_code,
            "statusMessage": op.status_message,
            "targetResource": {
                "id": op.resource_id,
                "resourceType": op.resource_type,
                "resourceName": op.resource_name,
            },
        },
    })
}

/// The `Azure-AsyncOperation` body.
pub fn operation_status(op: &AsyncOperation, deployment_state: Option<&str>) -> Value {
    let status = match deployment_state {
        Some(state) => state.to_owned(),
        None => op.status.clone(),
    };
    let mut body = json!({"name": op.id, "status": status, "startTime": op.start_time});
    if let Some(end) = &op.end_time {
        body["endTime"] = json!(end);
    }
    if let Some(error) = &op.error {
        body["error"] = error.clone();
    }
    body
}
