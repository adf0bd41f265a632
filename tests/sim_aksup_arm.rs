//! aksup's own ARM client against the simulator, configured only from what the
//! simulator writes (the apimodel copy, the CA file, the printed credentials):
//! tenant discovery from the 401 challenge, AAD secret and ADFS certificate
//! auth, paging, long-running deletes and deployments, a failed deployment.

#[path = "sim_common/mod.rs"]
mod common;

use std::time::Duration;

use aksup::arm::{
    ArmClient, ArmConfig, AuthMethod, CredentialConfig, DeploymentRequest, Error, HttpOptions,
    IdentitySystem, LroOptions,
};
use aksup::model::ApiModel;
use common::*;
use serde_json::json;

async fn client_for(sim: &aksup::sim::Simulator, certificate: bool) -> ArmClient {
    let e = &sim.endpoints;
    let copy = ApiModel::load(e.api_model_file.as_ref().unwrap()).unwrap();
    let http = HttpOptions {
        ca_file: e.ca_file.clone(),
        ..HttpOptions::default()
    };
    let environment = ArmClient::resolve_environment(
        Some("AzureStackCloud"),
        copy.view().properties.custom_cloud_profile.as_ref(),
        &http,
    )
    .await
    .expect("the environment of the apimodel copy");
    assert_eq!(environment.resource_manager_endpoint, e.arm_url);
    let identity_system = if e.identity_system == "adfs" {
        IdentitySystem::Adfs
    } else {
        IdentitySystem::AzureAd
    };
    let auth = if certificate {
        AuthMethod::ClientCertificate {
            certificate_path: e.client_certificate_file.clone().unwrap(),
            private_key_path: e.client_private_key_file.clone().unwrap(),
        }
    } else {
        AuthMethod::ClientSecret(e.client_secret.as_str().into())
    };
    let mut config = ArmConfig::new(
        environment,
        CredentialConfig {
            identity_system,
            client_id: e.client_id.clone(),
            // AAD: discovered from the unauthenticated subscription GET.
            tenant_id: None,
            auth,
        },
        e.subscription_id.clone(),
    );
    config.http = http;
    ArmClient::new(config).await.expect("the ARM client")
}

fn fast() -> LroOptions {
    LroOptions::default()
        .with_interval(Duration::from_millis(50))
        .with_timeout(Duration::from_secs(30))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aksups_arm_client_works_against_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start("linux-3-masters.json", |o| {
        o.page_size = 3;
        o.state_dir = Some(dir.path().to_path_buf());
    })
    .await;
    let client = client_for(&sim, false).await;
    let rg = sim.endpoints.resource_group.clone();
    let s = aksup::sim::seed::name_suffix("simlinux");

    let vms = client.list_vms(&rg).await.unwrap();
    assert_eq!(vms.len(), 8);
    let vm = client
        .get_vm(&rg, &format!("k8s-master-{s}-0"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(vm.tags["orchestrator"], "Kubernetes:1.33.10");
    assert!(vm.properties.instance_view.is_some());
    assert!(client.get_vm(&rg, "nope").await.unwrap().is_none());
    client.get_resource_group(&rg).await.unwrap();
    client
        .get_image_version(
            &sim.endpoints.location,
            "microsoft-aks",
            "aks",
            "aks-engine-azurestack-ubuntu-2204",
            "2026.139.1",
        )
        .await
        .unwrap();

    // Replace an agent: delete VM, NIC, OS disk, then deploy it again.
    let name = format!("k8s-linuxpool-{s}-1");
    let nic = format!("k8s-linuxpool-{s}-nic-1");
    client.delete_vm(&rg, &name, &fast()).await.unwrap();
    client.delete_nic(&rg, &nic, &fast()).await.unwrap();
    client
        .delete_disk(&rg, &aksup::sim::seed::os_disk_name(&name), &fast())
        .await
        .unwrap();
    assert!(client.get_vm(&rg, &name).await.unwrap().is_none());
    let arm = Arm::new(&sim);
    let template = NodeVm::agent(&arm, &name, &nic, "linuxpool", "1.34.4").template();
    let deployment = client
        .put_deployment(
            &rg,
            "linuxpool-1-1.34.4",
            &DeploymentRequest::incremental(template.clone(), json!({})),
            &fast(),
        )
        .await
        .unwrap();
    assert_eq!(deployment.properties.provisioning_state, "Succeeded");
    let vm = client.get_vm(&rg, &name).await.unwrap().unwrap();
    assert_eq!(vm.tags["orchestrator"], "Kubernetes:1.34.4");

    // A failing deployment is explained from its operations.
    let mut broken = template;
    broken["resources"][1]["properties"]["hardwareProfile"]["vmSize"] =
        json!("[variables('size')]");
    let error = client
        .put_deployment(
            &rg,
            "broken",
            &DeploymentRequest::incremental(broken, json!({})),
            &fast(),
        )
        .await
        .unwrap_err();
    match error {
        Error::DeploymentFailed { code, summary, .. } => {
            assert!(
                code == "DeploymentFailed" || code == "InvalidTemplate",
                "{code}: {summary}"
            );
            assert!(summary.contains("variables('size')"), "{summary}");
        }
        other => panic!("expected DeploymentFailed, got {other:?}"),
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aksups_arm_client_authenticates_to_adfs_with_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start("windows-1-master-adfs.json", |o| {
        o.state_dir = Some(dir.path().to_path_buf());
    })
    .await;
    let client = client_for(&sim, true).await;
    let vms = client
        .list_vms(&sim.endpoints.resource_group)
        .await
        .unwrap();
    assert_eq!(vms.len(), 5);
    assert_eq!(sim.world().requests().count("POST /adfs/oauth2/token"), 1);
    sim.shutdown().await;
}
