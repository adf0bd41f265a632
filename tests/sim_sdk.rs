//! The official Azure SDK for Python (azure-mgmt-compute 30.x at api-version
//! 2020-06-01, azure-identity's client-secret credential against the AAD v2
//! endpoint) lists, reads and deletes the simulator's VMs.
//!
//! Runs when `AKSUP_PYTHON_SDK=1` (then a missing SDK is a failure) or when the
//! packages import; otherwise it says it skipped. The interpreter is
//! `$AKSUP_PYTHON` or `python3`; `pip install -r tests/python/requirements.txt`.

#[path = "sim_common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

fn python() -> String {
    std::env::var("AKSUP_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn sdk_available() -> bool {
    Command::new(python())
        .args(["-c", "import azure.mgmt.compute, azure.identity"])
        .output()
        .is_ok_and(|output| output.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_azure_sdk_for_python_reads_and_deletes_vms() {
    let required = std::env::var("AKSUP_PYTHON_SDK").is_ok_and(|v| v == "1");
    if !sdk_available() {
        assert!(
            !required,
            "AKSUP_PYTHON_SDK=1 but `{} -c 'import azure.mgmt.compute, azure.identity'` fails",
            python()
        );
        eprintln!(
            "SKIPPED the Azure SDK judge: azure-mgmt-compute / azure-identity do not import in {} (pip install -r tests/python/requirements.txt, or set AKSUP_PYTHON)",
            python()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sim = start("linux-3-masters.json", |o| {
        o.page_size = 3;
        o.state_dir = Some(dir.path().to_path_buf());
    })
    .await;
    let endpoints_file = dir.path().join("simulator.json");
    assert!(endpoints_file.exists());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/sdk_judge.py");
    let ca = sim.endpoints.ca_file.clone().unwrap();
    let output = tokio::process::Command::new(python())
        .arg(&script)
        .arg(&endpoints_file)
        .env("REQUESTS_CA_BUNDLE", &ca)
        .env("SSL_CERT_FILE", &ca)
        .env_remove("AZURE_AUTHORITY_HOST")
        .output()
        .await
        .expect("python runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the SDK judge failed:\n{stderr}");
    let result: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON object");
    let suffix = aksup::sim::seed::name_suffix("simlinux");
    assert_eq!(
        result["names"].as_array().unwrap().len(),
        8,
        "all pages were followed: {result}"
    );
    assert_eq!(result["names"][0], format!("k8s-batch-{suffix}-0"));
    assert_eq!(result["tags"]["orchestrator"], "Kubernetes:1.33.10");
    assert_eq!(result["statuses"][0], "ProvisioningState/succeeded");
    assert_eq!(result["statuses"][1], "PowerState/running");
    assert_eq!(result["image"], "2026.139.1");
    assert_eq!(
        result["remaining"].as_array().unwrap().len(),
        7,
        "the SDK's poller saw the delete through"
    );
    // The SDK really went through the endpoints it should have.
    let counts = sim.world().requests().counts();
    assert!(
        counts
            .get("POST /{tenant}/oauth2/v2.0/token")
            .copied()
            .unwrap_or(0)
            >= 1,
        "{counts:?}"
    );
    assert!(
        counts
            .keys()
            .any(|k| k.contains("/locations/{location}/operations/{operationId}")),
        "{counts:?}"
    );
    sim.shutdown().await;
}
