//! How the world moves: deployments create resources, VMs boot and register
//! Nodes, deletions complete — all in virtual time, in background tasks that
//! check the resource's incarnation so a stale timer never touches a newer
//! resource of the same name.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::arm::error::{ArmError, deployment_failed, nested_detail};
use super::bootstrap;
use super::images;
use super::kube::{NodeRegistration, NodeRole};
use super::seed;
use super::template::{self, Resource, VmSpec};
use super::util::{iso_duration, new_uuid};
use super::world::{
    AsyncOperation, AvailabilitySet, Boot, DataDisk, Deployment, DeploymentOperation, Extension,
    ImageRef, ManagedDisk, NetworkInterface, OperationKind, OsDisk, State, VirtualMachine, World,
};

/// The largest `customData` Azure Stack Hub accepts (base64 characters).
pub const MAX_CUSTOM_DATA: usize = 87_380;

/// Creates a long-running operation record.
pub fn new_operation(state: &mut State, kind: OperationKind, resource: &str, now: &str) -> String {
    let id = new_uuid();
    state.operations.insert(
        id.clone(),
        AsyncOperation {
            id: id.clone(),
            kind,
            resource: resource.to_owned(),
            status: "InProgress".to_owned(),
            start_time: now.to_owned(),
            end_time: None,
            error: None,
        },
    );
    id
}

fn finish_operation(state: &mut State, id: &str, now: &str, error: Option<Value>) {
    if let Some(op) = state.operations.get_mut(id) {
        op.status = if error.is_some() {
            "Failed"
        } else {
            "Succeeded"
        }
        .to_owned();
        op.end_time = Some(now.to_owned());
        op.error = error;
    }
}

// ---------------------------------------------------------------- deletions

/// Starts deleting a VM. `Ok(None)`: there is no such VM (ARM answers 204).
pub fn delete_vm(world: &World, name: &str) -> Result<Option<String>, ArmError> {
    let now = world.now();
    let (op, incarnation, node) = {
        let mut state = world.lock();
        let Some(vm) = state.vm_mut(name) else {
            return Ok(None);
        };
        vm.provisioning_state = "Deleting".to_owned();
        vm.power_state = "stopping".to_owned();
        let incarnation = vm.incarnation;
        let node = vm.node_name.clone();
        let vm_name = vm.name.clone();
        let op = new_operation(&mut state, OperationKind::VmDelete, &vm_name, &now);
        (op, incarnation, node)
    };
    if let Some(node) = node {
        world.kube().vm_deleted(&node);
    }
    world.update_kube_reachability();
    let world2 = world.clone();
    let name = name.to_owned();
    let op2 = op.clone();
    tokio::spawn(async move {
        let duration = world2.duration_of("vmDelete", world2.timings().vm_delete);
        world2.clock().sleep(duration).await;
        let now = world2.now();
        let mut state = world2.lock();
        let key = name.to_ascii_lowercase();
        if state
            .virtual_machines
            .get(&key)
            .is_some_and(|vm| vm.incarnation == incarnation)
        {
            let vm = state.virtual_machines.remove(&key).expect("present");
            for disk in state.disks.values_mut() {
                if disk
                    .managed_by
                    .as_deref()
                    .is_some_and(|by| by.eq_ignore_ascii_case(&vm.name))
                {
                    disk.managed_by = None;
                }
            }
            for nic in state.network_interfaces.values_mut() {
                if nic
                    .virtual_machine
                    .as_deref()
                    .is_some_and(|by| by.eq_ignore_ascii_case(&vm.name))
                {
                    nic.virtual_machine = None;
                }
            }
        }
        finish_operation(&mut state, &op2, &now, None);
    });
    Ok(Some(op))
}

/// Starts deleting a NIC; refuses one that a VM uses.
pub fn delete_nic(world: &World, name: &str) -> Result<Option<String>, ArmError> {
    let now = world.now();
    let (op, incarnation) = {
        let mut state = world.lock();
        let rg_id = state.rg_id();
        let Some(nic) = state.nic(name).cloned() else {
            return Ok(None);
        };
        if let Some(vm) = &nic.virtual_machine
            && state.vm(vm).is_some()
        {
            return Err(ArmError::bad_request(
                "NicInUse",
                format!(
                    "Network Interface {rg_id}/providers/Microsoft.Network/networkInterfaces/{} is used by existing resource {rg_id}/providers/Microsoft.Compute/virtualMachines/{vm}. In order to delete the network interface, it must be dissociated from the resource. To learn more, see aka.ms/deletenic.",
                    nic.name
                ),
            ));
        }
        if let Some(n) = state.network_interfaces.get_mut(&name.to_ascii_lowercase()) {
            n.provisioning_state = "Deleting".to_owned();
        }
        (
            new_operation(&mut state, OperationKind::NicDelete, &nic.name, &now),
            nic.incarnation,
        )
    };
    let world2 = world.clone();
    let key = name.to_ascii_lowercase();
    let op2 = op.clone();
    tokio::spawn(async move {
        let duration = world2.duration_of("nicDelete", world2.timings().nic);
        world2.clock().sleep(duration).await;
        let now = world2.now();
        let mut state = world2.lock();
        if state
            .network_interfaces
            .get(&key)
            .is_some_and(|n| n.incarnation == incarnation)
        {
            state.network_interfaces.remove(&key);
        }
        finish_operation(&mut state, &op2, &now, None);
    });
    Ok(Some(op))
}

/// Starts deleting a managed disk; refuses one attached to a VM.
pub fn delete_disk(world: &World, name: &str) -> Result<Option<String>, ArmError> {
    let now = world.now();
    let (op, incarnation) = {
        let mut state = world.lock();
        let rg_id = state.rg_id();
        let Some(disk) = state.disk(name).cloned() else {
            return Ok(None);
        };
        if let Some(vm) = &disk.managed_by {
            return Err(ArmError::new(
                StatusCode::CONFLICT,
                "OperationNotAllowed",
                format!(
                    "Disk {} is attached to VM {rg_id}/providers/Microsoft.Compute/virtualMachines/{vm}.",
                    disk.name
                ),
            ));
        }
        if let Some(d) = state.disks.get_mut(&name.to_ascii_lowercase()) {
            d.provisioning_state = "Deleting".to_owned();
        }
        (
            new_operation(&mut state, OperationKind::DiskDelete, &disk.name, &now),
            disk.incarnation,
        )
    };
    let world2 = world.clone();
    let key = name.to_ascii_lowercase();
    let op2 = op.clone();
    tokio::spawn(async move {
        let duration = world2.duration_of("diskDelete", world2.timings().disk_delete);
        world2.clock().sleep(duration).await;
        let now = world2.now();
        let mut state = world2.lock();
        if state
            .disks
            .get(&key)
            .is_some_and(|d| d.incarnation == incarnation)
        {
            state.disks.remove(&key);
        }
        finish_operation(&mut state, &op2, &now, None);
    });
    Ok(Some(op))
}

// ---------------------------------------------------------------- deployments

/// Accepts a deployment PUT. Returns (created, operation id).
pub fn start_deployment(
    world: &World,
    name: &str,
    body: &Value,
) -> Result<(bool, String), ArmError> {
    if name.len() > 64 {
        return Err(ArmError::bad_request(
            "DeploymentNameLengthLimitExceeded",
            format!(
                "The provided deployment name '{name}' has a length of '{}' which exceeds the maximum length of '64'. Please see https://aka.ms/arm-deploy-resources for usage details.",
                name.len()
            ),
        ));
    }
    let props = body.get("properties").ok_or_else(|| {
        ArmError::bad_request("InvalidRequestContent", "The request content was invalid and could not be deserialized: 'Required property 'properties' not found in JSON.'")
    })?;
    let mode = props
        .get("mode")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !mode.eq_ignore_ascii_case("Incremental") {
        return Err(ArmError::bad_request(
            "InvalidDeploymentMode",
            format!(
                "The deployment mode '{mode}' is not supported by the simulator: use 'Incremental'."
            ),
        ));
    }
    if props.get("templateLink").is_some() {
        return Err(ArmError::bad_request(
            "InvalidTemplate",
            "The simulator cannot fetch a templateLink: send the template inline in properties.template.",
        ));
    }
    let template = props
        .get("template")
        .filter(|t| t.is_object())
        .cloned()
        .ok_or_else(|| {
            ArmError::bad_request(
                "InvalidTemplate",
                "The request has no properties.template object.",
            )
        })?;
    let now = world.now();
    let mut state = world.lock();
    let key = name.to_ascii_lowercase();
    if let Some(existing) = state.deployments.get(&key)
        && matches!(existing.provisioning_state.as_str(), "Accepted" | "Running")
    {
        let id = format!(
            "{}/providers/Microsoft.Resources/deployments/{}",
            state.rg_id(),
            existing.name
        );
        return Err(ArmError::new(
            StatusCode::CONFLICT,
            "DeploymentActive",
            format!(
                "Unable to edit or replace deployment '{}': previous deployment from '{}' is still active (resource id '{id}'). Please see https://aka.ms/arm-deploy for usage details.",
                existing.name, existing.timestamp
            ),
        ));
    }
    let created = !state.deployments.contains_key(&key);
    let op = new_operation(&mut state, OperationKind::Deployment, name, &now);
    let incarnation = state.incarnation();
    let hash = super::util::hex(&super::util::sha256(template.to_string().as_bytes())[..8]);
    let started = world.clock().elapsed();
    state.deployments.insert(
        key.clone(),
        Deployment {
            name: name.to_owned(),
            mode: "Incremental".to_owned(),
            template,
            parameters: props.get("parameters").cloned().unwrap_or(Value::Null),
            template_hash: u64::from_str_radix(&hash, 16).unwrap_or(0).to_string(),
            provisioning_state: "Accepted".to_owned(),
            correlation_id: new_uuid(),
            timestamp: now.clone(),
            started,
            duration: "PT0S".to_owned(),
            error: None,
            output_resources: Vec::new(),
            operations: Vec::new(),
            operation_id: op.clone(),
            incarnation,
        },
    );
    drop(state);
    let world2 = world.clone();
    tokio::spawn(async move { run_deployment(world2, key, incarnation).await });
    Ok((created, op))
}

fn with_deployment<'a>(
    state: &'a mut State,
    key: &str,
    incarnation: u64,
) -> Option<&'a mut Deployment> {
    state
        .deployments
        .get_mut(key)
        .filter(|d| d.incarnation == incarnation)
}

/// Ends a deployment: its state, duration, error and operation status.
fn finish_deployment(
    world: &World,
    state: &mut State,
    key: &str,
    incarnation: u64,
    error: Option<Value>,
) {
    let now = world.now();
    let elapsed = world.clock().elapsed();
    let Some(deployment) = with_deployment(state, key, incarnation) else {
        return;
    };
    deployment.provisioning_state = if error.is_some() {
        "Failed"
    } else {
        "Succeeded"
    }
    .to_owned();
    deployment.duration = iso_duration(elapsed.saturating_sub(deployment.started));
    deployment.error = error.clone();
    deployment.timestamp = now.clone();
    let op = deployment.operation_id.clone();
    finish_operation(state, &op, &now, error);
}

fn operation_record(
    state: &State,
    resource: &Resource,
    now: &str,
    succeeded: Option<bool>,
    status: &str,
    message: Value,
) -> DeploymentOperation {
    let (kind, name) = resource.type_and_name();
    DeploymentOperation {
        operation_id: super::util::hex(
            &super::util::sha256(format!("{kind}/{name}/{}", new_uuid()).as_bytes())[..8],
        )
        .to_ascii_uppercase(),
        provisioning_operation: "Create".to_owned(),
        provisioning_state: match succeeded {
            Some(true) => "Succeeded",
            Some(false) => "Failed",
            None => "Running",
        }
        .to_owned(),
        timestamp: now.to_owned(),
        duration: "PT0S".to_owned(),
        status_code: status.to_owned(),
        status_message: message,
        resource_id: state.resource_id(kind, &name),
        resource_type: kind.to_owned(),
        resource_name: name,
    }
}

async fn run_deployment(world: World, key: String, incarnation: u64) {
    let start = world.duration_of("deployment", world.timings().deployment_start);
    world.clock().sleep(start).await;
    let now = world.now();
    // Read and check the template; on any problem nothing is created.
    let plan = {
        let mut state = world.lock();
        let Some(deployment) = with_deployment(&mut state, &key, incarnation) else {
            return;
        };
        deployment.provisioning_state = "Running".to_owned();
        let template = deployment.template.clone();
        match template::read(&template) {
            Ok(resources) => match check(&state, &resources) {
                Ok(()) => Some(resources),
                Err(failures) => {
                    let mut details = Vec::new();
                    let mut operations = Vec::new();
                    for (resource, error) in failures {
                        let inner = json!({"error": error.body()});
                        details.push(nested_detail(status_name(error.status), &inner));
                        operations.push(operation_record(
                            &state,
                            &resource,
                            &now,
                            Some(false),
                            status_name(error.status),
                            inner,
                        ));
                    }
                    if let Some(d) = with_deployment(&mut state, &key, incarnation) {
                        d.operations = operations;
                    }
                    finish_deployment(
                        &world,
                        &mut state,
                        &key,
                        incarnation,
                        Some(deployment_failed(details)),
                    );
                    None
                }
            },
            Err(problems) => {
                let details = problems
                    .into_iter()
                    .map(|p| json!({"code": "InvalidTemplate", "target": p.target, "message": p.message}))
                    .collect();
                finish_deployment(
                    &world,
                    &mut state,
                    &key,
                    incarnation,
                    Some(deployment_failed(details)),
                );
                None
            }
        }
    };
    let Some(resources) = plan else { return };

    // Create everything; VMs start in `Creating`.
    let created_vms = {
        let mut state = world.lock();
        let mut operations = Vec::new();
        let mut outputs = Vec::new();
        let mut vms = Vec::new();
        for resource in &resources {
            let (kind, name) = resource.type_and_name();
            outputs.push(state.resource_id(kind, &name));
            let done = !matches!(resource, Resource::Vm(_) | Resource::Extension { .. });
            if let Some(vm) = apply(&mut state, resource, &now, &key) {
                vms.push(vm);
            }
            operations.push(operation_record(
                &state,
                resource,
                &now,
                done.then_some(true),
                if done { "Created" } else { "Accepted" },
                if done {
                    json!({"status": "Succeeded"})
                } else {
                    Value::Null
                },
            ));
        }
        if let Some(d) = with_deployment(&mut state, &key, incarnation) {
            d.operations = operations;
            d.output_resources = outputs;
        }
        vms
    };

    let duration = if created_vms.is_empty() {
        world.timings().nic
    } else {
        world.duration_of("vmCreate", world.timings().vm_create)
    };
    world.clock().sleep(duration).await;

    let now = world.now();
    let mut to_boot = Vec::new();
    let mut stuck = false;
    {
        let mut state = world.lock();
        if with_deployment(&mut state, &key, incarnation).is_none() {
            return;
        }
        let deployment_name = state.deployments[&key].name.clone();
        let failure = state.faults.deployment_failure(&deployment_name);
        let mut failed_vms = Vec::new();
        for (vm_name, vm_incarnation) in &created_vms {
            if state.faults.vm_stuck_creating(vm_name) {
                stuck = true;
                continue;
            }
            let failed = failure.is_some();
            let Some(vm) = state
                .vm_mut(vm_name)
                .filter(|vm| vm.incarnation == *vm_incarnation)
            else {
                continue;
            };
            if vm.provisioning_state != "Creating" {
                continue;
            }
            vm.provisioning_state = if failed { "Failed" } else { "Succeeded" }.to_owned();
            vm.power_state = "running".to_owned();
            for extension in &mut vm.extensions {
                if extension.provisioning_state == "Creating" {
                    extension.provisioning_state =
                        if failed { "Failed" } else { "Succeeded" }.to_owned();
                }
            }
            if failed {
                vm.boot = Boot::Failed("the deployment failed (fault deploymentFails)".to_owned());
                failed_vms.push(vm.name.clone());
            } else {
                to_boot.push((vm.name.clone(), vm.incarnation));
            }
        }
        let elapsed = iso_duration(duration);
        if let Some(d) = with_deployment(&mut state, &key, incarnation) {
            for op in &mut d.operations {
                if op.provisioning_state != "Running" {
                    continue;
                }
                let vm_of_op = op
                    .resource_name
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let vm_failed = failed_vms.iter().any(|v| v.eq_ignore_ascii_case(&vm_of_op));
                let vm_stuck = stuck
                    && !vm_failed
                    && !to_boot
                        .iter()
                        .any(|(v, _)| v.eq_ignore_ascii_case(&vm_of_op));
                if vm_stuck {
                    continue;
                }
                op.timestamp = now.clone();
                op.duration = elapsed.clone();
                if vm_failed {
                    op.provisioning_state = "Failed".to_owned();
                    op.status_code = "Conflict".to_owned();
                    op.status_message = failure_status(&failure, &vm_of_op);
                } else {
                    op.provisioning_state = "Succeeded".to_owned();
                    op.status_code = "OK".to_owned();
                    op.status_message = json!({"status": "Succeeded"});
                }
            }
        }
        if !stuck {
            let error = (!failed_vms.is_empty() || failure.is_some()).then(|| {
                let vm = failed_vms.first().cloned().unwrap_or_default();
                deployment_failed(vec![nested_detail(
                    "Conflict",
                    &failure_status(&failure, &vm),
                )])
            });
            finish_deployment(&world, &mut state, &key, incarnation, error);
        }
    }
    for (vm, vm_incarnation) in to_boot {
        let world = world.clone();
        tokio::spawn(async move { boot(world, vm, vm_incarnation).await });
    }
}

fn failure_status(failure: &Option<(Option<String>, Option<String>)>, vm: &str) -> Value {
    let (code, message) = failure.clone().unwrap_or_default();
    let code = code.unwrap_or_else(|| "VMExtensionProvisioningError".to_owned());
    let message = message.unwrap_or_else(|| {
        format!("VM has reported a failure when processing extension 'cse-{vm}'. Error message: \"Enable failed: failed to execute command: command terminated with exit status=50\n[stdout]\n\n[stderr]\n\"\r\n\r\nMore information on troubleshooting is available at https://aka.ms/VMExtensionCSELinuxTroubleshoot ")
    });
    json!({
        "status": "Failed",
        "error": {
            "code": "ResourceDeploymentFailure",
            "message": "The resource operation completed with terminal provisioning state 'Failed'.",
            "details": [{"code": code, "message": message}],
        }
    })
}

fn status_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "BadRequest",
        404 => "NotFound",
        409 => "Conflict",
        _ => "InternalServerError",
    }
}

/// Checks that every resource can be created, without creating anything.
fn check(state: &State, resources: &[Resource]) -> Result<(), Vec<(Resource, ArmError)>> {
    let declared = |kind: &str, name: &str| {
        resources.iter().any(|r| {
            let (k, n) = r.type_and_name();
            k == kind && n.eq_ignore_ascii_case(name)
        })
    };
    let mut failures = Vec::new();
    let rg = state.resource_group.clone();
    for resource in resources {
        let result = match resource {
            Resource::Vm(vm) => check_vm(state, vm, &declared, &rg),
            Resource::Extension { vm, .. } => {
                if state.vm(vm).is_none() && !declared("Microsoft.Compute/virtualMachines", vm) {
                    Err(ArmError::not_found(
                        "Microsoft.Compute/virtualMachines",
                        vm,
                        &rg,
                    ))
                } else {
                    Ok(())
                }
            }
            Resource::Nic {
                name, private_ip, ..
            } => match private_ip {
                Some(ip) if ip.parse::<Ipv4Addr>().is_err() => Err(ArmError::bad_request(
                    "InvalidRequestFormat",
                    format!(
                        "Cannot parse the request: privateIPAddress '{ip}' of {name} is not an IPv4 address."
                    ),
                )),
                Some(ip) => match state
                    .network_interfaces
                    .values()
                    .find(|n| &n.private_ip_address == ip && !n.name.eq_ignore_ascii_case(name))
                {
                    Some(other) => Err(ArmError::bad_request(
                        "PrivateIPAddressInUse",
                        format!(
                            "IP configuration {} is using the private IP address {ip} which is already allocated to resource {}.",
                            name,
                            state.resource_id("Microsoft.Network/networkInterfaces", &other.name)
                        ),
                    )),
                    None => Ok(()),
                },
                None => Ok(()),
            },
            Resource::Disk { name, .. } => match state.disk(name) {
                Some(_) => Ok(()),
                None => Ok(()),
            },
            Resource::AvailabilitySet { .. } => Ok(()),
        };
        if let Err(error) = result {
            failures.push((resource.clone(), error));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

fn check_vm(
    state: &State,
    vm: &VmSpec,
    declared: &dyn Fn(&str, &str) -> bool,
    rg: &str,
) -> Result<(), ArmError> {
    let vm_id = state.resource_id("Microsoft.Compute/virtualMachines", &vm.name);
    if let Some(data) = &vm.custom_data
        && data.len() > MAX_CUSTOM_DATA
    {
        return Err(ArmError::bad_request(
            "InvalidParameter",
            format!(
                "The value of parameter customData is invalid: it has {} characters, more than the {MAX_CUSTOM_DATA} Azure Stack Hub accepts.",
                data.len()
            ),
        )
        .with_target("customData"));
    }
    if let Some(existing) = state.vm(&vm.name) {
        if existing.provisioning_state == "Deleting" {
            return Err(ArmError::new(
                StatusCode::CONFLICT,
                "OperationNotAllowed",
                format!(
                    "Operation 'PUT' is not allowed on VM '{}' since the VM is marked for deletion. You can only retry the Delete operation (or wait for an ongoing one to complete).",
                    existing.name
                ),
            ));
        }
        if let Some(image) = &vm.image
            && image != &existing.image
        {
            return Err(ArmError::new(
                StatusCode::CONFLICT,
                "PropertyChangeNotAllowed",
                "Changing property 'imageReference' is not allowed.",
            )
            .with_target("imageReference"));
        }
        return Ok(());
    }
    if let Some(ImageRef::Marketplace {
        publisher,
        offer,
        sku,
        version,
    }) = &vm.image
        && images::find(publisher, offer, sku, version).is_none()
    {
        return Err(ArmError::new(
            StatusCode::NOT_FOUND,
            "PlatformImageNotFound",
            format!("The platform image '{publisher}:{offer}:{sku}:{version}' is not available. Verify that all fields in the storage profile are correct. For more details about storage profile information, please refer to https://aka.ms/storageprofile"),
        )
        .with_target("imageReference"));
    }
    if let Some(set) = &vm.availability_set
        && !state
            .availability_sets
            .contains_key(&set.to_ascii_lowercase())
        && !declared("Microsoft.Compute/availabilitySets", set)
    {
        return Err(invalid_reference(
            state,
            "Microsoft.Compute/availabilitySets",
            set,
            &vm_id,
        ));
    }
    for nic in &vm.nics {
        match state.nic(nic) {
            None if !declared("Microsoft.Network/networkInterfaces", nic) => {
                return Err(invalid_reference(
                    state,
                    "Microsoft.Network/networkInterfaces",
                    nic,
                    &vm_id,
                ));
            }
            Some(existing) => {
                if let Some(user) = &existing.virtual_machine
                    && !user.eq_ignore_ascii_case(&vm.name)
                    && state.vm(user).is_some()
                {
                    return Err(ArmError::bad_request(
                        "NicInUse",
                        format!(
                            "Network interface {} is already in use by VM {}.",
                            existing.name,
                            state.resource_id("Microsoft.Compute/virtualMachines", user)
                        ),
                    ));
                }
            }
            None => {}
        }
    }
    let mut disks: Vec<(Option<&String>, &str)> = vm
        .data_disks
        .iter()
        .map(|d| {
            (
                d.disk_id.as_ref().or(d.name.as_ref()),
                d.create_option.as_str(),
            )
        })
        .collect();
    if vm.os_disk_create_option.eq_ignore_ascii_case("attach") {
        disks.push((
            vm.os_disk_id.as_ref().or(vm.os_disk_name.as_ref()),
            "Attach",
        ));
    }
    for (reference, option) in disks {
        let Some(reference) = reference else {
            return Err(ArmError::bad_request(
                "InvalidParameter",
                "A data disk needs a name or managedDisk.id.",
            )
            .with_target("dataDisks"));
        };
        let name = template::last_segment(reference);
        let existing = state.disk(&name);
        if option.eq_ignore_ascii_case("attach") {
            match existing {
                None if !declared("Microsoft.Compute/disks", &name) => {
                    return Err(ArmError::not_found("Microsoft.Compute/disks", &name, rg));
                }
                Some(disk) => {
                    if let Some(user) = &disk.managed_by
                        && !user.eq_ignore_ascii_case(&vm.name)
                    {
                        return Err(ArmError::new(
                            StatusCode::CONFLICT,
                            "ConflictingUserInput",
                            format!(
                                "Disk '{}' cannot be attached as the disk is already owned by VM '{}'.",
                                disk.name,
                                state.resource_id("Microsoft.Compute/virtualMachines", user)
                            ),
                        ));
                    }
                }
                None => {}
            }
        } else if existing.is_some() {
            return Err(ArmError::new(
                StatusCode::CONFLICT,
                "ConflictingUserInput",
                format!("Disk {name} already exists in resource group {}. Only CreateOption.Attach is supported.", state.resource_group.to_ascii_uppercase()),
            )
            .with_target("dataDisk.createOption"));
        }
    }
    if vm.vm_size.is_empty() {
        return Err(
            ArmError::bad_request("InvalidParameter", "The VM size is empty.")
                .with_target("vmSize"),
        );
    }
    Ok(())
}

fn invalid_reference(state: &State, kind: &str, name: &str, referrer: &str) -> ArmError {
    ArmError::bad_request(
        "InvalidResourceReference",
        format!(
            "Resource {} referenced by resource {referrer} was not found. Please make sure that the referenced resource exists, and that both resources are in the same region.",
            state.resource_id(kind, name)
        ),
    )
}

/// Creates (or updates) one checked resource. Returns a VM created in `Creating`.
fn apply(
    state: &mut State,
    resource: &Resource,
    now: &str,
    deployment: &str,
) -> Option<(String, u64)> {
    let location = state.location.clone();
    match resource {
        Resource::AvailabilitySet {
            name,
            tags,
            fault_domains,
            update_domains,
        } => {
            let entry = state
                .availability_sets
                .entry(name.to_ascii_lowercase())
                .or_insert_with(|| AvailabilitySet {
                    name: name.clone(),
                    location: location.clone(),
                    tags: BTreeMap::new(),
                    platform_fault_domain_count: *fault_domains,
                    platform_update_domain_count: *update_domains,
                });
            entry.tags.extend(tags.clone());
            None
        }
        Resource::Disk {
            name,
            tags,
            size_gb,
            sku,
        } => {
            if state.disk(name).is_none() {
                let incarnation = state.incarnation();
                state.disks.insert(
                    name.to_ascii_lowercase(),
                    empty_disk(
                        name,
                        *size_gb,
                        sku,
                        &location,
                        now,
                        incarnation,
                        tags.clone(),
                    ),
                );
            }
            None
        }
        Resource::Nic {
            name,
            tags,
            private_ip,
            subnet_id,
            ip_forwarding,
        } => {
            let key = name.to_ascii_lowercase();
            if let Some(nic) = state.network_interfaces.get_mut(&key) {
                nic.tags.extend(tags.clone());
                return None;
            }
            let ip = private_ip.clone().unwrap_or_else(|| next_dynamic_ip(state));
            let incarnation = state.incarnation();
            let subnet = if subnet_id.is_empty() {
                state.cluster.vnet_subnet_id.clone()
            } else {
                subnet_id.clone()
            };
            state.network_interfaces.insert(
                key,
                NetworkInterface {
                    name: name.clone(),
                    location,
                    tags: tags.clone(),
                    private_ip_address: ip,
                    private_ip_allocation_method: if private_ip.is_some() {
                        "Static"
                    } else {
                        "Dynamic"
                    }
                    .to_owned(),
                    subnet_id: subnet,
                    ip_forwarding: *ip_forwarding,
                    virtual_machine: None,
                    provisioning_state: "Succeeded".to_owned(),
                    incarnation,
                },
            );
            None
        }
        Resource::Extension {
            vm,
            name,
            publisher,
            kind,
            type_handler_version,
            auto_upgrade_minor_version,
            settings,
            protected_settings,
        } => {
            let vm = state.vm_mut(vm)?;
            let state_now = if vm.provisioning_state == "Creating" {
                "Creating"
            } else {
                "Succeeded"
            };
            vm.extensions.retain(|e| !e.name.eq_ignore_ascii_case(name));
            vm.extensions.push(Extension {
                name: name.clone(),
                publisher: publisher.clone(),
                kind: kind.clone(),
                type_handler_version: type_handler_version.clone(),
                auto_upgrade_minor_version: *auto_upgrade_minor_version,
                settings: settings.clone(),
                protected_settings: protected_settings.clone(),
                provisioning_state: state_now.to_owned(),
            });
            None
        }
        Resource::Vm(spec) => {
            if let Some(existing) = state.vm_mut(&spec.name) {
                // Incremental PUT of an existing VM: tags (and extensions) only.
                existing.tags = spec.tags.clone();
                return None;
            }
            Some(create_vm(state, spec, now, deployment))
        }
    }
}

fn empty_disk(
    name: &str,
    size: i64,
    sku: &str,
    location: &str,
    now: &str,
    incarnation: u64,
    tags: BTreeMap<String, String>,
) -> ManagedDisk {
    ManagedDisk {
        name: name.to_owned(),
        location: location.to_owned(),
        tags,
        disk_size_gb: size,
        sku: sku.to_owned(),
        os_type: None,
        create_option: "Empty".to_owned(),
        image: None,
        managed_by: None,
        provisioning_state: "Succeeded".to_owned(),
        time_created: now.to_owned(),
        incarnation,
    }
}

fn next_dynamic_ip(state: &State) -> String {
    let used: std::collections::BTreeSet<&str> = state
        .network_interfaces
        .values()
        .map(|n| n.private_ip_address.as_str())
        .collect();
    let mut candidate = u32::from(Ipv4Addr::new(10, 240, 0, 4));
    loop {
        let ip = Ipv4Addr::from(candidate).to_string();
        if !used.contains(ip.as_str()) {
            return ip;
        }
        candidate += 1;
    }
}

fn create_vm(state: &mut State, spec: &VmSpec, now: &str, deployment: &str) -> (String, u64) {
    let incarnation = state.incarnation();
    let location = state.location.clone();
    let image = spec.image.clone().unwrap_or(ImageRef::Id {
        id: spec.os_disk_id.clone().unwrap_or_default(),
    });
    let os_type = spec.os_type.clone().unwrap_or_else(|| {
        let from_image = match &image {
            ImageRef::Marketplace {
                publisher,
                offer,
                sku,
                version,
            } => images::find(publisher, offer, sku, version).map(|i| i.os_type),
            ImageRef::Id { .. } => None,
        };
        from_image.map(str::to_owned).unwrap_or_else(|| {
            if spec.windows_configuration {
                "Windows".into()
            } else {
                "Linux".into()
            }
        })
    });
    let tier = spec
        .os_disk_storage_type
        .clone()
        .unwrap_or_else(|| seed::storage_tier(&spec.vm_size).to_owned());
    let os_disk_name = if spec.os_disk_create_option.eq_ignore_ascii_case("attach") {
        template::last_segment(
            spec.os_disk_id
                .as_ref()
                .or(spec.os_disk_name.as_ref())
                .expect("checked"),
        )
    } else {
        spec.os_disk_name
            .clone()
            .unwrap_or_else(|| seed::os_disk_name(&spec.name))
    };
    let os_disk_size = spec
        .os_disk_size_gb
        .unwrap_or(if os_type == "Windows" { 128 } else { 30 });
    match state.disks.get_mut(&os_disk_name.to_ascii_lowercase()) {
        Some(disk) => disk.managed_by = Some(spec.name.clone()),
        None => {
            state.disks.insert(
                os_disk_name.to_ascii_lowercase(),
                ManagedDisk {
                    name: os_disk_name.clone(),
                    location: location.clone(),
                    tags: BTreeMap::new(),
                    disk_size_gb: os_disk_size,
                    sku: tier.clone(),
                    os_type: Some(os_type.clone()),
                    create_option: "FromImage".to_owned(),
                    image: Some(image.clone()),
                    managed_by: Some(spec.name.clone()),
                    provisioning_state: "Succeeded".to_owned(),
                    time_created: now.to_owned(),
                    incarnation,
                },
            );
        }
    }
    let mut data_disks = Vec::new();
    for disk in &spec.data_disks {
        let name = template::last_segment(
            disk.disk_id
                .as_ref()
                .or(disk.name.as_ref())
                .expect("checked"),
        );
        let key = name.to_ascii_lowercase();
        let sku = disk.storage_type.clone().unwrap_or_else(|| tier.clone());
        if !state.disks.contains_key(&key) {
            state.disks.insert(
                key.clone(),
                empty_disk(
                    &name,
                    disk.size_gb.unwrap_or(128),
                    &sku,
                    &location,
                    now,
                    incarnation,
                    BTreeMap::new(),
                ),
            );
        }
        let stored = state.disks.get_mut(&key).expect("present");
        stored.managed_by = Some(spec.name.clone());
        data_disks.push(DataDisk {
            lun: disk.lun,
            name: stored.name.clone(),
            create_option: disk.create_option.clone(),
            caching: disk.caching.clone(),
            disk_size_gb: stored.disk_size_gb,
            storage_account_type: stored.sku.clone(),
        });
    }
    for nic in &spec.nics {
        if let Some(n) = state.network_interfaces.get_mut(&nic.to_ascii_lowercase()) {
            n.virtual_machine = Some(spec.name.clone());
        }
    }
    let nics = spec
        .nics
        .iter()
        .map(|n| {
            state
                .nic(n)
                .map(|nic| nic.name.clone())
                .unwrap_or_else(|| n.clone())
        })
        .collect();
    let vm = VirtualMachine {
        name: spec.name.clone(),
        vm_id: new_uuid(),
        location,
        tags: spec.tags.clone(),
        vm_size: spec.vm_size.clone(),
        availability_set: spec.availability_set.as_ref().map(|s| {
            state
                .availability_sets
                .get(&s.to_ascii_lowercase())
                .map(|a| a.name.clone())
                .unwrap_or_else(|| s.clone())
        }),
        image,
        os_disk: OsDisk {
            name: os_disk_name,
            os_type,
            create_option: spec.os_disk_create_option.clone(),
            caching: spec.os_disk_caching.clone(),
            disk_size_gb: os_disk_size,
            storage_account_type: tier,
        },
        data_disks,
        network_interfaces: nics,
        computer_name: spec
            .computer_name
            .clone()
            .unwrap_or_else(|| spec.name.clone()),
        admin_username: spec.admin_username.clone(),
        custom_data: spec.custom_data.clone(),
        os_profile_extra: Value::Null,
        provisioning_state: "Creating".to_owned(),
        power_state: "starting".to_owned(),
        extensions: Vec::new(),
        time_created: now.to_owned(),
        deployment: Some(deployment.to_owned()),
        node_name: None,
        boot: Boot::Pending,
        incarnation,
    };
    state
        .virtual_machines
        .insert(spec.name.to_ascii_lowercase(), vm);
    (spec.name.clone(), incarnation)
}

// ---------------------------------------------------------------- boot

fn vm_alive<'a>(
    state: &'a mut State,
    name: &str,
    incarnation: u64,
) -> Option<&'a mut VirtualMachine> {
    state
        .vm_mut(name)
        .filter(|vm| vm.incarnation == incarnation && vm.provisioning_state != "Deleting")
}

/// Boots a created VM: reads its bootstrap, registers its Node, makes it Ready.
pub async fn boot(world: World, name: String, incarnation: u64) {
    let duration = world.duration_of("boot", world.timings().vm_boot);
    world.clock().sleep(duration).await;
    let registration = {
        let mut state = world.lock();
        let location = state.location.clone();
        let Some(vm) = vm_alive(&mut state, &name, incarnation).cloned() else {
            return;
        };
        let result = registration_for(&vm, &location).map(|r| with_ip(&state, &vm, r));
        let vm = state.vm_mut(&name).expect("alive");
        match result {
            Ok(registration) => {
                vm.boot = Boot::Registered;
                vm.node_name = Some(registration.name.clone());
                registration
            }
            Err(reason) => {
                vm.boot = Boot::Failed(reason);
                return;
            }
        }
    };
    let node = registration.name.clone();
    world.kube().register_node(registration);
    if world.lock().faults.node_never_ready(&node, &name) {
        return;
    }
    world.clock().sleep(world.timings().node_ready).await;
    {
        let mut state = world.lock();
        let Some(vm) = vm_alive(&mut state, &name, incarnation) else {
            return;
        };
        vm.boot = Boot::Ready;
    }
    world.kube().set_node_ready(&node, true);
    world.update_kube_reachability();
}

/// The Node a VM's bootstrap asks for, or why its kubelet never starts.
pub fn registration_for(vm: &VirtualMachine, location: &str) -> Result<NodeRegistration, String> {
    let block = bootstrap::read(vm).map_err(|e| e.to_string())?;
    if let ImageRef::Marketplace {
        publisher,
        offer,
        sku,
        version,
    } = &vm.image
    {
        let image = images::find(publisher, offer, sku, version)
            .ok_or_else(|| format!("image {publisher}:{offer}:{sku}:{version} is unknown"))?;
        if !images::carries(image, &block.kubelet_version) {
            return Err(format!(
                "image {publisher}:{offer}:{sku}:{} does not carry Kubernetes {} (it carries {}); the kubelet never starts",
                image.version,
                block.kubelet_version,
                if image.kubernetes_versions.is_empty() {
                    "none".to_owned()
                } else {
                    image.kubernetes_versions.join(", ")
                }
            ));
        }
    }
    let role = match block.role.as_deref() {
        Some(role)
            if role.eq_ignore_ascii_case("master")
                || role.eq_ignore_ascii_case("control-plane") =>
        {
            NodeRole::Master
        }
        Some(_) => NodeRole::Agent,
        None if vm.is_master() => NodeRole::Master,
        None => NodeRole::Agent,
    };
    let name = block
        .node_name
        .clone()
        .unwrap_or_else(|| vm.computer_name.to_ascii_lowercase());
    let os = if vm.is_windows() { "windows" } else { "linux" };
    let mut labels = seed::kubelet_labels(&name, os, &vm.vm_size, location);
    labels.extend(block.labels.clone());
    let pool = block
        .pool
        .clone()
        .or_else(|| vm.pool().map(str::to_owned))
        .unwrap_or_default();
    let version = block.kubelet_version.trim_start_matches('v');
    Ok(NodeRegistration {
        name,
        kubelet_version: format!("v{version}"),
        role,
        os: os.to_owned(),
        labels,
        taints: block.taints,
        pool,
        vm_size: vm.vm_size.clone(),
        internal_ip: String::new(),
    })
}

/// Fills a registration's internal IP from the VM's first NIC.
pub fn with_ip(
    state: &State,
    vm: &VirtualMachine,
    mut registration: NodeRegistration,
) -> NodeRegistration {
    if let Some(nic) = vm.network_interfaces.first().and_then(|n| state.nic(n)) {
        registration.internal_ip = nic.private_ip_address.clone();
    }
    registration
}
