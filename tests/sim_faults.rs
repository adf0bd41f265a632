//! Every fault kind, over the wire: from the start options (the fault file) and
//! through `/_sim/faults`.

#[path = "sim_common/mod.rs"]
mod common;

use std::time::Duration;

use aksup::sim::faults::FaultSpec;
use aksup::sim::world::Boot;
use common::*;
use reqwest::StatusCode;
use serde_json::json;

fn faults(text: &str) -> Vec<FaultSpec> {
    FaultSpec::parse_list(text).expect("valid faults")
}

fn suffix() -> String {
    aksup::sim::seed::name_suffix("simlinux")
}

fn boot_of(sim: &aksup::sim::Simulator, vm: &str) -> Option<Boot> {
    sim.world().lock().vm(vm).map(|vm| vm.boot.clone())
}

/// True when the Kubernetes side is the real one (not the interface placeholder).
async fn real_kube(sim: &aksup::sim::Simulator) -> bool {
    let client = https_client(&sim.endpoints.ca_pem);
    let answer = client
        .get(format!("{}/version", sim.endpoints.kube_url))
        .bearer_auth(&sim.endpoints.kube_token)
        .send()
        .await;
    let real = answer.is_ok_and(|a| a.status() != StatusCode::NOT_FOUND);
    if !real {
        eprintln!(
            "SKIPPED the Kubernetes-side half of this test: the Kubernetes API is the interface placeholder"
        );
    }
    real
}

#[test]
fn the_example_fault_file_parses() {
    let text = std::fs::read_to_string(testdata("faults-example.json")).unwrap();
    assert_eq!(faults(&text).len(), 9);
}

#[tokio::test]
async fn throttling_every_nth_request() {
    let sim = start("linux-3-masters.json", |o| {
        o.faults = faults(r#"[{"kind":"throttle","everyNth":3,"method":"GET","pathContains":"/virtualMachines","retryAfterSeconds":2}]"#)
    })
    .await;
    let arm = Arm::login(&sim).await;
    let path = arm.vm_path(&format!("k8s-master-{}-0", suffix()));
    let statuses: Vec<StatusCode> = {
        let mut out = Vec::new();
        for _ in 0..6 {
            let answer = arm.get(&path).await;
            if answer.status == StatusCode::TOO_MANY_REQUESTS {
                assert_eq!(answer.header("retry-after").as_deref(), Some("2"));
                assert_eq!(answer.error_code(), "SubscriptionRequestsThrottled");
            }
            out.push(answer.status);
        }
        out
    };
    assert_eq!(
        statuses.iter().map(|s| s.as_u16()).collect::<Vec<_>>(),
        [200, 200, 429, 200, 200, 429]
    );
    // Other requests are not counted.
    let nics = arm
        .get(&arm.rg(&format!(
            "providers/Microsoft.Network/networkInterfaces?api-version={NETWORK}"
        )))
        .await;
    assert_eq!(nics.status, StatusCode::OK);
    sim.shutdown().await;
}

#[tokio::test]
async fn throttling_by_budget_per_window() {
    // 2 requests per 60 virtual seconds = 60 ms real at 1000×.
    let sim = start("linux-3-masters.json", |o| {
        o.faults = faults(r#"[{"kind":"throttle","budget":2,"windowSeconds":60}]"#)
    })
    .await;
    let arm = Arm::login(&sim).await;
    let path = arm.vm_path(&format!("k8s-master-{}-0", suffix()));
    assert_eq!(arm.get(&path).await.status, StatusCode::OK);
    assert_eq!(arm.get(&path).await.status, StatusCode::OK);
    let throttled = arm.get(&path).await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.header("retry-after").as_deref(), Some("1"));
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(arm.get(&path).await.status, StatusCode::OK, "a new window");
    sim.shutdown().await;
}

#[tokio::test]
async fn transient_server_errors() {
    let sim = start("linux-3-masters.json", |o| {
        o.faults = faults(r#"[{"kind":"transient","status":500,"times":1,"method":"GET"},{"kind":"transient","status":503,"everyNth":2,"method":"DELETE"}]"#)
    })
    .await;
    let arm = Arm::login(&sim).await;
    let s = suffix();
    let path = arm.vm_path(&format!("k8s-master-{s}-0"));
    let first = arm.get(&path).await;
    assert_eq!(first.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(first.error_code(), "InternalServerError");
    assert_eq!(arm.get(&path).await.status, StatusCode::OK, "times: 1");
    let delete = arm.vm_path(&format!("k8s-linuxpool-{s}-0"));
    assert_eq!(arm.delete(&delete).await.status, StatusCode::ACCEPTED);
    let second = arm.delete(&delete).await;
    assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(second.error_code(), "ServiceUnavailable");
    assert!(second.header("retry-after").is_some());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_named_deployment_fails_with_a_nested_error() {
    let sim = start("linux-3-masters.json", |o| {
        o.faults = faults(r#"[{"kind":"deploymentFails","deployment":"linuxpool-3-*","times":1}]"#)
    })
    .await;
    let arm = Arm::login(&sim).await;
    let s = suffix();
    let vm = format!("k8s-linuxpool-{s}-3");
    let nic = format!("k8s-linuxpool-{s}-nic-3");
    let node = NodeVm::agent(&arm, &vm, &nic, "linuxpool", "1.34.4");
    let status = arm.deploy("linuxpool-3-1.34.4", node.template()).await;
    assert_eq!(status["status"], "Failed");
    assert_eq!(status["error"]["code"], "DeploymentFailed");
    let detail = &status["error"]["details"][0];
    assert_eq!(detail["code"], "Conflict");
    let inner: serde_json::Value =
        serde_json::from_str(detail["message"].as_str().unwrap()).unwrap();
    assert_eq!(inner["status"], "Failed");
    assert_eq!(inner["error"]["code"], "ResourceDeploymentFailure");
    assert_eq!(
        inner["error"]["details"][0]["code"],
        "VMExtensionProvisioningError"
    );
    let got = arm
        .get(&format!("{}&$expand=instanceView", arm.vm_path(&vm)))
        .await;
    assert_eq!(got.body["properties"]["provisioningState"], "Failed");
    assert_eq!(
        got.body["properties"]["instanceView"]["statuses"][0]["level"],
        "Error"
    );
    let operations = arm
        .get(&format!("/subscriptions/{}/resourcegroups/{}/deployments/linuxpool-3-1.34.4/operations?api-version={RESOURCES}", arm.subscription, arm.resource_group))
        .await;
    assert!(
        operations.body["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|op| op["properties"]["provisioningState"] == "Failed")
    );
    assert!(matches!(boot_of(&sim, &vm), Some(Boot::Failed(_))));

    // A retry after deleting the failed VM succeeds (the fault fired its one time).
    let answer = arm.delete(&arm.vm_path(&vm)).await;
    arm.wait_async(&answer.header("azure-asyncoperation").unwrap())
        .await;
    let status = arm.deploy("linuxpool-3-1.34.4", node.template()).await;
    assert_eq!(status["status"], "Succeeded", "{status}");

    // A custom nested error.
    arm.call(
        reqwest::Method::POST,
        "/_sim/faults",
        Some(&json!({"kind": "deploymentFails", "deployment": "custom", "code": "OSProvisioningTimedOut", "message": "OS Provisioning for VM did not finish in the allotted time."})),
    )
    .await;
    let vm = format!("k8s-linuxpool-{s}-4");
    let node = NodeVm::agent(
        &arm,
        &vm,
        &format!("k8s-linuxpool-{s}-nic-4"),
        "linuxpool",
        "1.34.4",
    );
    let status = arm.deploy("custom", node.template()).await;
    assert!(
        status["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("OSProvisioningTimedOut")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_vm_stuck_in_creating() {
    let s = suffix();
    let vm = format!("k8s-linuxpool-{s}-3");
    let sim = start("linux-3-masters.json", |o| {
        o.faults = faults(&format!(r#"[{{"kind":"vmStuckCreating","vm":"{vm}"}}]"#))
    })
    .await;
    let arm = Arm::login(&sim).await;
    let node = NodeVm::agent(
        &arm,
        &vm,
        &format!("k8s-linuxpool-{s}-nic-3"),
        "linuxpool",
        "1.34.4",
    );
    let answer = arm
        .put(
            &arm.deployment_path("stuck"),
            &json!({"properties": {"mode": "Incremental", "template": node.template()}}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    // Well past VM create (240 s virtual = 0.24 s real).
    tokio::time::sleep(Duration::from_millis(800)).await;
    let status = arm
        .get(&answer.header("azure-asyncoperation").unwrap())
        .await;
    assert_eq!(status.body["status"], "Running");
    let got = arm.get(&arm.vm_path(&vm)).await;
    assert_eq!(got.body["properties"]["provisioningState"], "Creating");
    assert_eq!(boot_of(&sim, &vm), Some(Boot::Pending));
    // It can still be deleted.
    let delete = arm.delete(&arm.vm_path(&vm)).await;
    assert_eq!(delete.status, StatusCode::ACCEPTED);
    arm.wait_async(&delete.header("azure-asyncoperation").unwrap())
        .await;
    assert_eq!(
        arm.get(&arm.vm_path(&vm)).await.status,
        StatusCode::NOT_FOUND
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_node_that_never_becomes_ready() {
    let s = suffix();
    let vm = format!("k8s-linuxpool-{s}-3");
    let sim = start("linux-3-masters.json", |o| {
        o.faults = faults(&format!(
            r#"{{"faults":[{{"kind":"nodeNeverReady","node":"{vm}"}}]}}"#
        ))
    })
    .await;
    let arm = Arm::login(&sim).await;
    let node = NodeVm::agent(
        &arm,
        &vm,
        &format!("k8s-linuxpool-{s}-nic-3"),
        "linuxpool",
        "1.34.4",
    );
    assert_eq!(
        arm.deploy("never-ready", node.template()).await["status"],
        "Succeeded"
    );
    eventually("the node registers", || {
        boot_of(&sim, &vm) == Some(Boot::Registered)
    })
    .await;
    // Boot (120 s) + Ready (20 s) are 0.14 s real: wait well past them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(boot_of(&sim, &vm), Some(Boot::Registered));
    sim.shutdown().await;
}

#[tokio::test]
async fn blocked_evictions_reach_the_kubernetes_side() {
    let sim = start("linux-3-masters.json", |o| {
        o.faults =
            faults(r#"[{"kind":"evictionBlocked","namespace":"default","podPrefix":"payments-"}]"#)
    })
    .await;
    let arm = Arm::login(&sim).await;
    let listed = arm.get("/_sim/faults").await;
    assert_eq!(listed.body["faults"][0]["kind"], "evictionBlocked");
    assert_eq!(listed.body["faults"][0]["podPrefix"], "payments-");
    if real_kube(&sim).await {
        // The Kubernetes side refuses the eviction of a matching pod with 429 forever.
        let client = https_client(&sim.endpoints.ca_pem);
        let pods: serde_json::Value = client
            .get(format!(
                "{}/api/v1/namespaces/default/pods",
                sim.endpoints.kube_url
            ))
            .bearer_auth(&sim.endpoints.kube_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(pod) = pods["items"].as_array().and_then(|items| {
            items.iter().find(|p| {
                p["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("payments-"))
            })
        }) {
            let name = pod["metadata"]["name"].as_str().unwrap();
            let answer = client
                .post(format!("{}/api/v1/namespaces/default/pods/{name}/eviction", sim.endpoints.kube_url))
                .bearer_auth(&sim.endpoints.kube_token)
                .json(&json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": "default"}}))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS);
        }
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn the_kubernetes_api_is_unreachable_while_the_only_master_is_replaced() {
    let sim = start("old-1.31-ubuntu-2004.json", |o| {
        o.faults = faults(r#"[{"kind":"kubeUnreachableWithoutMaster"}]"#)
    })
    .await;
    let arm = Arm::login(&sim).await;
    let s = aksup::sim::seed::name_suffix("simold");
    let vm = format!("k8s-master-{s}-0");
    assert!(!sim.world().lock().kube_unreachable);
    let answer = arm.delete(&arm.vm_path(&vm)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert!(
        sim.world().lock().kube_unreachable,
        "unreachable from the moment the master goes down"
    );
    let state = arm.get("/_sim/state").await;
    assert_eq!(state.body["arm"]["kubeUnreachable"], true);
    if real_kube(&sim).await {
        let client = https_client(&sim.endpoints.ca_pem);
        let answer = client
            .get(format!("{}/api/v1/nodes", sim.endpoints.kube_url))
            .bearer_auth(&sim.endpoints.kube_token)
            .send()
            .await;
        assert!(
            answer
                .map(|a| a.status() == StatusCode::SERVICE_UNAVAILABLE)
                .unwrap_or(true)
        );
    }
    arm.wait_async(&answer.header("azure-asyncoperation").unwrap())
        .await;
    for path in [
        arm.rg(&format!("providers/Microsoft.Network/networkInterfaces/k8s-master-{s}-nic-0?api-version={NETWORK}")),
        arm.rg(&format!("providers/Microsoft.Compute/disks/{}?api-version={DISKS}", aksup::sim::seed::os_disk_name(&vm))),
    ] {
        let answer = arm.delete(&path).await;
        arm.wait_async(&answer.header("azure-asyncoperation").unwrap()).await;
    }
    // The replacement (1.31.13 is carried by the ubuntu-2004 image).
    let mut master = NodeVm::agent(
        &arm,
        &vm,
        &format!("k8s-master-{s}-nic-0"),
        "master",
        "1.31.13",
    );
    master.static_ip = Some("10.100.0.10");
    master.image = json!({"publisher": "microsoft-aks", "offer": "aks", "sku": "aks-engine-azurestack-ubuntu-2004", "version": "2024.311.1"});
    master.node_block = Some(json!({"kubeletVersion": "v1.31.13", "role": "master"}));
    master.data_disks = json!([{"lun": 0, "createOption": "Attach", "managedDisk": {"id": arm.rg(&format!("providers/Microsoft.Compute/disks/k8s-master-{s}-0-etcddisk"))}}]);
    assert_eq!(
        arm.deploy("master-0", master.template()).await["status"],
        "Succeeded"
    );
    assert!(
        sim.world().lock().kube_unreachable,
        "still down until the new master is Ready"
    );
    eventually("the API is back", || !sim.world().lock().kube_unreachable).await;
    assert_eq!(boot_of(&sim, &vm), Some(Boot::Ready));
    sim.shutdown().await;
}

#[tokio::test]
async fn slow_long_running_operations() {
    let sim = start("linux-3-masters.json", |o| {
        o.faults = faults(r#"[{"kind":"slowOperations","factor":20,"operation":"vmDelete"}]"#)
    })
    .await;
    let arm = Arm::login(&sim).await;
    let vm = format!("k8s-linuxpool-{}-1", suffix());
    let answer = arm.delete(&arm.vm_path(&vm)).await;
    let url = answer.header("azure-asyncoperation").unwrap();
    // Unslowed, a VM delete (60 s virtual) is 60 ms real; slowed 20×, 1.2 s.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(arm.get(&url).await.body["status"], "InProgress");
    assert_eq!(arm.wait_async(&url).await["status"], "Succeeded");
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_are_managed_over_http() {
    let sim = start("linux-3-masters.json", |_| {}).await;
    let arm = Arm::login(&sim).await;
    let path = arm.vm_path(&format!("k8s-master-{}-0", suffix()));
    let added = arm
        .call(
            reqwest::Method::POST,
            "/_sim/faults",
            Some(&json!({"kind": "transient", "status": 503, "pathContains": "virtualMachines"})),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED);
    let id = added.body["ids"][0].as_u64().unwrap();
    assert_eq!(arm.get(&path).await.status, StatusCode::SERVICE_UNAVAILABLE);
    let listed = arm.get("/_sim/faults").await;
    assert_eq!(listed.body["faults"][0]["fired"], 1);
    assert_eq!(
        arm.delete(&format!("/_sim/faults/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(arm.get(&path).await.status, StatusCode::OK);

    let invalid = arm
        .call(
            reqwest::Method::POST,
            "/_sim/faults",
            Some(&json!({"kind": "throttle"})),
        )
        .await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    let text = std::fs::read_to_string(testdata("faults-example.json")).unwrap();
    let replaced = arm
        .call(
            reqwest::Method::PUT,
            "/_sim/faults",
            Some(&serde_json::from_str(&text).unwrap()),
        )
        .await;
    assert_eq!(replaced.body["ids"].as_array().unwrap().len(), 9);
    assert_eq!(
        arm.delete("/_sim/faults").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(arm.get("/_sim/faults").await.body["faults"], json!([]));
    sim.shutdown().await;
}
