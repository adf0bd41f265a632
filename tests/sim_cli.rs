//! `aksup simulator serve` as a process: it prints what a client needs, writes
//! the state dir, serves until SIGTERM, and a restart on the same state dir
//! hands out the same credentials and CA.

#[path = "sim_common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use aksup::model::ApiModel;
use common::*;
use serde_json::Value;

struct Served {
    child: Child,
    endpoints: Value,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(state_dir: &std::path::Path, extra: &[&str]) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aksup"))
        .args(["simulator", "serve", "--api-model"])
        .arg(testdata("linux-3-masters.json"))
        .arg("--state-dir")
        .arg(state_dir)
        .args(["--time-scale", "500", "-o", "json"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(!line.is_empty(), "the simulator printed its endpoints");
    let endpoints = serde_json::from_str(&line).expect("JSON endpoints");
    Served { child, endpoints }
}

fn terminate(mut served: Served) -> std::process::ExitStatus {
    let pid = served.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    served.child.wait().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_prints_endpoints_writes_the_state_dir_and_outlives_clients() {
    let dir = tempfile::tempdir().unwrap();
    let served = serve(
        dir.path(),
        &[
            "--page-size",
            "4",
            "--faults",
            testdata("faults-example.json").to_str().unwrap(),
        ],
    );
    let e = served.endpoints.clone();
    for file in [
        "ca.crt",
        "kubeconfig",
        "client.crt",
        "client.key",
        "apimodel.json",
        "simulator.json",
        "credentials.json",
    ] {
        assert!(dir.path().join(file).exists(), "{file} is written");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for secret in [
            "client.key",
            "credentials.json",
            "kubeconfig",
            "apimodel.json",
        ] {
            let mode = std::fs::metadata(dir.path().join(secret))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{secret}");
        }
    }
    // The apimodel copy points at the simulator.
    let copy = ApiModel::load(&dir.path().join("apimodel.json")).unwrap();
    copy.validate().unwrap();
    let cloud = copy.view().properties.custom_cloud_profile.clone().unwrap();
    let env = cloud.environment.unwrap();
    assert_eq!(env.resource_manager_endpoint, e["armUrl"].as_str().unwrap());
    assert_eq!(
        env.service_management_endpoint,
        e["audience"].as_str().unwrap()
    );
    assert_eq!(env.active_directory_endpoint, e["armUrl"].as_str().unwrap());
    assert_eq!(cloud.identity_system, "azure_ad");
    let master = copy.view().properties.master_profile.clone().unwrap();
    assert_eq!(
        format!("https://{}", master.fqdn),
        e["kubeUrl"].as_str().unwrap()
    );
    let certs = copy.view().properties.certificate_profile.clone().unwrap();
    assert_eq!(certs.ca_certificate, e["caPem"].as_str().unwrap());
    assert!(certs.kube_config_certificate.contains("BEGIN CERTIFICATE"));
    assert_eq!(copy.view().location, "local");
    let kubeconfig = std::fs::read_to_string(dir.path().join("kubeconfig")).unwrap();
    assert!(kubeconfig.contains(&format!("server: {}", e["kubeUrl"].as_str().unwrap())));

    // A client reads the world; a second client later meets the same world.
    let http = https_client(e["caPem"].as_str().unwrap());
    let token = |http: reqwest::Client, e: Value| async move {
        let body: Value = http
            .post(e["aad"]["tokenUrlV1"].as_str().unwrap())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs([
                        ("grant_type", "client_credentials"),
                        ("client_id", e["clientId"].as_str().unwrap()),
                        ("client_secret", e["clientSecret"].as_str().unwrap()),
                        ("resource", e["audience"].as_str().unwrap()),
                    ])
                    .finish(),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    };
    let vm_url = format!(
        "{}subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines/k8s-linuxpool-{}-0?api-version={COMPUTE}",
        e["armUrl"].as_str().unwrap(),
        e["subscriptionId"].as_str().unwrap(),
        e["resourceGroup"].as_str().unwrap(),
        aksup::sim::seed::name_suffix("simlinux"),
    );
    let first = token(http.clone(), e.clone()).await;
    let deleted = http
        .delete(&vm_url)
        .bearer_auth(&first)
        .send()
        .await
        .unwrap();
    assert!(
        deleted.status() == 202 || deleted.status() == 429 || deleted.status() == 503,
        "{}",
        deleted.status()
    );
    drop(first);
    let second = token(http.clone(), e.clone()).await;
    let mut gone = false;
    for _ in 0..100 {
        let answer = http.get(&vm_url).bearer_auth(&second).send().await.unwrap();
        if answer.status() == 404 {
            gone = true;
            break;
        }
        if deleted.status() != 202 && answer.status() == 200 {
            // The delete itself was faulted (the example faults include throttling and 503s): retry it.
            http.delete(&vm_url)
                .bearer_auth(&second)
                .send()
                .await
                .unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(gone, "the second client sees the first client's delete");
    let faults: Value = http
        .get(format!("{}_sim/faults", e["armUrl"].as_str().unwrap()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults["faults"].as_array().unwrap().len(), 9);

    let status = terminate(served);
    assert!(status.success(), "SIGTERM stops it cleanly: {status:?}");

    // A restart on the same state dir hands out the same credentials and CA.
    let again = serve(dir.path(), &["-g", "other-group"]);
    assert_eq!(again.endpoints["clientId"], e["clientId"]);
    assert_eq!(again.endpoints["clientSecret"], e["clientSecret"]);
    assert_eq!(again.endpoints["subscriptionId"], e["subscriptionId"]);
    assert_eq!(again.endpoints["caPem"], e["caPem"]);
    assert_eq!(again.endpoints["resourceGroup"], "other-group");
    assert!(terminate(again).success());
}

#[test]
fn human_output_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_aksup"))
        .args(["simulator", "serve", "--api-model"])
        .arg(testdata("windows-1-master-adfs.json"))
        .arg("--state-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        text.push_str(&line);
        if line.starts_with("Trust the CA") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    for expected in [
        "ARM endpoint",
        "Kubernetes API",
        "ADFS token",
        "Client certificate",
        "aksup upgrade --api-model",
    ] {
        assert!(text.contains(expected), "{expected} in:\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("Identity system")
                && l.trim_end().ends_with(" adfs")),
        "{text}"
    );

    // A definition without orchestratorVersion is refused with the model's message.
    let model = dir.path().join("definition.json");
    let mut value: Value =
        serde_json::from_str(&std::fs::read_to_string(testdata("linux-3-masters.json")).unwrap())
            .unwrap();
    value["properties"]["orchestratorProfile"]
        .as_object_mut()
        .unwrap()
        .remove("orchestratorVersion");
    std::fs::write(&model, value.to_string()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_aksup"))
        .args(["simulator", "serve", "--api-model"])
        .arg(&model)
        .arg("--state-dir")
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("orchestratorVersion is missing"),
        "{stderr}"
    );
}
