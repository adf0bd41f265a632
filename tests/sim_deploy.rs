//! Template deployments and the node lifecycle: what a deployment creates, how
//! a VM boots from its bootstrap block, and the failures a stamp reports.

#[path = "sim_common/mod.rs"]
mod common;

use aksup::sim::world::Boot;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn suffix() -> String {
    aksup::sim::seed::name_suffix("simlinux")
}

fn boot_of(sim: &aksup::sim::Simulator, vm: &str) -> Option<Boot> {
    sim.world().lock().vm(vm).map(|vm| vm.boot.clone())
}

#[tokio::test]
async fn a_deployment_creates_a_node_vm_that_boots_and_registers() {
    let sim = start("linux-3-masters.json", |_| {}).await;
    let arm = Arm::login(&sim).await;
    let s = suffix();
    let vm = format!("k8s-linuxpool-{s}-3");
    let nic = format!("k8s-linuxpool-{s}-nic-3");
    let node = NodeVm::agent(&arm, &vm, &nic, "linuxpool", "1.34.4");
    let path = arm.deployment_path("linuxpool-3-1.34.4");
    let answer = arm
        .put(&path, &json!({"properties": {"mode": "Incremental", "template": node.template(), "parameters": {}}}))
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_eq!(answer.body["properties"]["provisioningState"], "Accepted");
    assert_eq!(answer.body["name"], "linuxpool-3-1.34.4");
    let status_url = answer
        .header("azure-asyncoperation")
        .expect("Azure-AsyncOperation");
    assert!(status_url.contains("/deployments/linuxpool-3-1.34.4/operationStatuses/"));
    assert!(answer.header("retry-after").is_some());
    let status = arm.wait_async(&status_url).await;
    assert_eq!(status["status"], "Succeeded", "{status}");

    let deployment = arm.get(&path).await;
    assert_eq!(
        deployment.body["properties"]["provisioningState"],
        "Succeeded"
    );
    let outputs: Vec<_> = deployment.body["properties"]["outputResources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(outputs.len(), 3);
    let operations = arm
        .get(&format!("/subscriptions/{}/resourcegroups/{}/deployments/linuxpool-3-1.34.4/operations?api-version={RESOURCES}", arm.subscription, arm.resource_group))
        .await;
    assert_eq!(operations.status, StatusCode::OK, "{}", operations.body);
    let ops = operations.body["value"].as_array().unwrap();
    assert_eq!(ops.len(), 3);
    assert!(
        ops.iter()
            .all(|op| op["properties"]["provisioningState"] == "Succeeded")
    );
    assert!(
        ops.iter()
            .any(|op| op["properties"]["targetResource"]["resourceName"] == json!(vm))
    );

    let got = arm.get(&arm.vm_path(&vm)).await;
    assert_eq!(got.body["properties"]["provisioningState"], "Succeeded");
    assert_eq!(got.body["tags"]["orchestrator"], "Kubernetes:1.34.4");
    assert_eq!(got.body["resources"][0]["name"], "cse-agent");
    assert!(
        got.body["properties"]["osProfile"]
            .get("customData")
            .is_none()
    );
    let nic_answer = arm
        .get(&arm.rg(&format!(
            "providers/Microsoft.Network/networkInterfaces/{nic}?api-version={NETWORK}"
        )))
        .await;
    assert!(
        nic_answer.body["properties"]["virtualMachine"]["id"]
            .as_str()
            .unwrap()
            .ends_with(&vm)
    );

    // It boots in virtual time: registered, then Ready.
    eventually("the new VM's node is Ready", || {
        boot_of(&sim, &vm) == Some(Boot::Ready)
    })
    .await;
    assert_eq!(
        sim.world().lock().vm(&vm).unwrap().node_name.as_deref(),
        Some(vm.as_str())
    );

    // Re-putting the same name after it finished replaces the record (200).
    let again = arm
        .put(&path, &json!({"properties": {"mode": "Incremental", "template": node.template(), "parameters": {}}}))
        .await;
    assert_eq!(again.status, StatusCode::OK);
    // A PUT while it runs is refused.
    let busy = arm
        .put(&path, &json!({"properties": {"mode": "Incremental", "template": node.template(), "parameters": {}}}))
        .await;
    assert_eq!(busy.status, StatusCode::CONFLICT);
    assert_eq!(busy.error_code(), "DeploymentActive");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_master_is_replaced_with_its_etcd_disk_attached_again() {
    let sim = start("linux-3-masters.json", |_| {}).await;
    let arm = Arm::login(&sim).await;
    let s = suffix();
    let vm = format!("k8s-master-{s}-0");
    let nic = format!("k8s-master-{s}-nic-0");
    let etcd = format!("k8s-master-{s}-0-etcddisk");

    let disk_id = arm.rg(&format!("providers/Microsoft.Compute/disks/{etcd}"));
    let attach = json!([{"lun": 0, "name": etcd, "createOption": "Attach", "caching": "None", "managedDisk": {"id": disk_id}}]);
    // While the old master holds the disk, attaching it elsewhere fails.
    let mut other = NodeVm::agent(
        &arm,
        &format!("k8s-master-{s}-7"),
        &format!("k8s-master-{s}-nic-7"),
        "master",
        "1.34.4",
    );
    other.data_disks = attach.clone();
    other.static_ip = Some("10.240.255.20");
    let status = arm.deploy("steal-etcd", other.template()).await;
    assert_eq!(status["status"], "Failed");
    let message = status["error"]["details"][0]["message"].as_str().unwrap();
    assert!(message.contains("ConflictingUserInput"), "{message}");

    // Delete VM, NIC, OS disk (the order aks-engine uses).
    let delete_and_wait = |path: String| {
        let arm = &arm;
        async move {
            let answer = arm.delete(&path).await;
            assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
            arm.wait_async(&answer.header("azure-asyncoperation").unwrap())
                .await;
        }
    };
    delete_and_wait(arm.vm_path(&vm)).await;
    delete_and_wait(arm.rg(&format!(
        "providers/Microsoft.Network/networkInterfaces/{nic}?api-version={NETWORK}"
    )))
    .await;
    delete_and_wait(arm.rg(&format!(
        "providers/Microsoft.Compute/disks/{}?api-version={DISKS}",
        aksup::sim::seed::os_disk_name(&vm)
    )))
    .await;

    let mut master = NodeVm::agent(&arm, &vm, &nic, "master", "1.34.4");
    master.static_ip = Some("10.240.255.5");
    master.data_disks = attach;
    master.node_block = Some(json!({"kubeletVersion": "v1.34.4", "role": "master",
        "labels": {"kubernetes.io/role": "master", "node-role.kubernetes.io/control-plane": ""},
        "taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}));
    let status = arm.deploy("master-0-1.34.4", master.template()).await;
    assert_eq!(status["status"], "Succeeded", "{status}");
    let got = arm.get(&arm.vm_path(&vm)).await;
    assert_eq!(
        got.body["properties"]["storageProfile"]["dataDisks"][0]["name"],
        json!(etcd)
    );
    assert_eq!(
        got.body["properties"]["storageProfile"]["dataDisks"][0]["createOption"],
        "Attach"
    );
    let disk = arm
        .get(&arm.rg(&format!(
            "providers/Microsoft.Compute/disks/{etcd}?api-version={DISKS}"
        )))
        .await;
    assert_eq!(disk.body["properties"]["diskState"], "Attached");
    assert!(disk.body["managedBy"].as_str().unwrap().ends_with(&vm));
    let nic_answer = arm
        .get(&arm.rg(&format!(
            "providers/Microsoft.Network/networkInterfaces/{nic}?api-version={NETWORK}"
        )))
        .await;
    assert_eq!(
        nic_answer.body["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"],
        "10.240.255.5"
    );
    eventually("the new master is Ready", || {
        boot_of(&sim, &vm) == Some(Boot::Ready)
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn templates_with_expressions_or_unknown_types_fail_clearly() {
    let sim = start("linux-3-masters.json", |_| {}).await;
    let arm = Arm::login(&sim).await;
    let s = suffix();
    let vm = format!("k8s-linuxpool-{s}-4");
    let mut template = NodeVm::agent(
        &arm,
        &vm,
        &format!("k8s-linuxpool-{s}-nic-4"),
        "linuxpool",
        "1.34.4",
    )
    .template();
    template["resources"][1]["properties"]["hardwareProfile"]["vmSize"] =
        json!("[parameters('vmSize')]");
    template["resources"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "Microsoft.Network/loadBalancers", "name": "lb", "properties": {}}));
    let status = arm.deploy("with-expressions", template).await;
    assert_eq!(status["status"], "Failed");
    assert_eq!(status["error"]["code"], "DeploymentFailed");
    let details = status["error"]["details"].as_array().unwrap();
    assert_eq!(details.len(), 2, "{status}");
    assert!(details.iter().all(|d| d["code"] == "InvalidTemplate"));
    assert!(
        details[0]["message"]
            .as_str()
            .unwrap()
            .contains("[parameters('vmSize')]")
    );
    assert!(
        details[0]["message"]
            .as_str()
            .unwrap()
            .contains("properties.hardwareProfile.vmSize")
    );
    assert!(
        details[1]["message"]
            .as_str()
            .unwrap()
            .contains("Microsoft.Network/loadBalancers")
    );
    // Nothing was created.
    assert_eq!(
        arm.get(&arm.vm_path(&vm)).await.status,
        StatusCode::NOT_FOUND
    );
    let deployment = arm.get(&arm.deployment_path("with-expressions")).await;
    assert_eq!(deployment.body["properties"]["provisioningState"], "Failed");
    assert_eq!(
        deployment.body["properties"]["error"]["code"],
        "DeploymentFailed"
    );

    // Request-level refusals.
    let long = "x".repeat(65);
    let answer = arm
        .put(
            &arm.deployment_path(&long),
            &json!({"properties": {"mode": "Incremental", "template": {"resources": []}}}),
        )
        .await;
    assert_eq!(answer.error_code(), "DeploymentNameLengthLimitExceeded");
    let answer = arm
        .put(
            &arm.deployment_path("complete"),
            &json!({"properties": {"mode": "Complete", "template": {"resources": []}}}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    sim.shutdown().await;
}

#[tokio::test]
async fn custom_data_over_the_stamp_limit_is_rejected() {
    let sim = start("linux-3-masters.json", |_| {}).await;
    let arm = Arm::login(&sim).await;
    let s = suffix();
    let vm = format!("k8s-linuxpool-{s}-5");
    let mut node = NodeVm::agent(
        &arm,
        &vm,
        &format!("k8s-linuxpool-{s}-nic-5"),
        "linuxpool",
        "1.34.4",
    );
    node.custom_data = Some("A".repeat(aksup::sim::lifecycle::MAX_CUSTOM_DATA + 4));
    let status = arm.deploy("too-big", node.template()).await;
    assert_eq!(status["status"], "Failed");
    let detail = &status["error"]["details"][0];
    assert_eq!(detail["code"], "BadRequest");
    let inner: Value =
        serde_json::from_str(detail["message"].as_str().unwrap()).expect("a nested JSON error");
    assert_eq!(inner["error"]["code"], "InvalidParameter");
    assert_eq!(inner["error"]["target"], "customData");
    assert_eq!(
        arm.get(&arm.vm_path(&vm)).await.status,
        StatusCode::NOT_FOUND
    );
    let operations = arm
        .get(&format!("/subscriptions/{}/resourcegroups/{}/deployments/too-big/operations?api-version={RESOURCES}", arm.subscription, arm.resource_group))
        .await;
    let op = &operations.body["value"][0]["properties"];
    assert_eq!(op["provisioningState"], "Failed");
    assert_eq!(op["statusMessage"]["error"]["code"], "InvalidParameter");

    // Exactly at the limit is accepted.
    node.custom_data = Some("A".repeat(aksup::sim::lifecycle::MAX_CUSTOM_DATA));
    let status = arm.deploy("at-limit", node.template()).await;
    assert_eq!(status["status"], "Succeeded", "{status}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_kubelet_version_the_image_lacks_never_starts() {
    let sim = start("linux-3-masters.json", |_| {}).await;
    let arm = Arm::login(&sim).await;
    let s = suffix();
    let vm = format!("k8s-linuxpool-{s}-6");
    let mut node = NodeVm::agent(
        &arm,
        &vm,
        &format!("k8s-linuxpool-{s}-nic-6"),
        "linuxpool",
        "1.34.4",
    );
    node.image = json!({"publisher": "microsoft-aks", "offer": "aks", "sku": "aks-engine-azurestack-ubuntu-2004", "version": "2024.311.1"});
    let status = arm.deploy("old-image", node.template()).await;
    assert_eq!(status["status"], "Succeeded", "the VM itself deploys fine");
    eventually("the boot fails", || {
        matches!(boot_of(&sim, &vm), Some(Boot::Failed(_)))
    })
    .await;
    let Some(Boot::Failed(reason)) = boot_of(&sim, &vm) else {
        unreachable!()
    };
    assert!(
        reason.contains("does not carry Kubernetes v1.34.4"),
        "{reason}"
    );
    assert_eq!(sim.world().lock().vm(&vm).unwrap().node_name, None);

    // Without a bootstrap block nothing registers either.
    let vm2 = format!("k8s-linuxpool-{s}-7");
    let mut bare = NodeVm::agent(
        &arm,
        &vm2,
        &format!("k8s-linuxpool-{s}-nic-7"),
        "linuxpool",
        "1.34.4",
    );
    bare.node_block = None;
    assert_eq!(
        arm.deploy("no-bootstrap", bare.template()).await["status"],
        "Succeeded"
    );
    eventually("the boot fails", || {
        matches!(boot_of(&sim, &vm2), Some(Boot::Failed(_)))
    })
    .await;
    let Some(Boot::Failed(reason)) = boot_of(&sim, &vm2) else {
        unreachable!()
    };
    assert!(reason.contains("aksup-node.json"), "{reason}");

    // An image that is not on the stamp fails the deployment.
    let vm3 = format!("k8s-linuxpool-{s}-8");
    let mut missing = NodeVm::agent(
        &arm,
        &vm3,
        &format!("k8s-linuxpool-{s}-nic-8"),
        "linuxpool",
        "1.34.4",
    );
    missing.image = json!({"publisher": "microsoft-aks", "offer": "aks", "sku": "aks-engine-azurestack-ubuntu-2204", "version": "2099.1.1"});
    let status = arm.deploy("missing-image", missing.template()).await;
    assert_eq!(status["status"], "Failed");
    assert!(
        status["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("PlatformImageNotFound")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn extension_settings_can_carry_the_bootstrap_block() {
    let sim = start("linux-3-masters.json", |_| {}).await;
    let arm = Arm::login(&sim).await;
    let s = suffix();
    let vm = format!("k8s-batch-{s}-2");
    let mut node = NodeVm::agent(
        &arm,
        &vm,
        &format!("k8s-batch-{s}-nic-2"),
        "batch",
        "1.33.10",
    );
    node.node_block = None;
    let mut template = node.template();
    template["resources"][1]["resources"][0]["properties"]["settings"] = json!({"aksupNode": {"kubeletVersion": "v1.33.10", "nodeName": "custom-node-name", "labels": {"agentpool": "batch"}}});
    assert_eq!(arm.deploy("batch-2", template).await["status"], "Succeeded");
    eventually("the node is Ready", || {
        boot_of(&sim, &vm) == Some(Boot::Ready)
    })
    .await;
    assert_eq!(
        sim.world().lock().vm(&vm).unwrap().node_name.as_deref(),
        Some("custom-node-name")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn an_existing_vm_keeps_its_image() {
    let sim = start("linux-3-masters.json", |_| {}).await;
    let arm = Arm::login(&sim).await;
    let s = suffix();
    let vm = format!("k8s-linuxpool-{s}-0");
    let mut node = NodeVm::agent(
        &arm,
        &vm,
        &format!("k8s-linuxpool-{s}-nic-0"),
        "linuxpool",
        "1.34.4",
    );
    node.image = json!({"publisher": "microsoft-aks", "offer": "aks", "sku": "aks-engine-azurestack-ubuntu-2004", "version": "2024.311.1"});
    let status = arm.deploy("change-image", node.template()).await;
    assert_eq!(status["status"], "Failed");
    assert!(
        status["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("PropertyChangeNotAllowed")
    );
    sim.shutdown().await;
}
