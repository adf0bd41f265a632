//! `aksup upgrade` up to the cloud boundary: every check that needs no network,
//! its message and exit status, and that nothing is changed.

mod common;

use std::fs;

use common::{aksup, repo, transcript};

const CLIENT_ID: &str = "8a2ab0d0-36d4-4d3f-9a4a-1b3b0e5b7c11";

/// A complete, valid set of flags for the single-master testdata apimodel.
fn base(model: &str) -> Vec<String> {
    [
        "upgrade",
        "-g",
        "rg",
        "-l",
        "local",
        "-k",
        "1.34.4",
        "-m",
        model,
        "--azure-env",
        "AzureStackCloud",
        "--client-id",
        CLIENT_ID,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn model_path(name: &str) -> String {
    repo(&format!("testdata/{name}")).display().to_string()
}

fn without(args: &[String], flag: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = false;
    for arg in args {
        if skip {
            skip = false;
            continue;
        }
        if arg == flag {
            skip = true;
            continue;
        }
        out.push(arg.clone());
    }
    out
}

fn with(args: &[String], flag: &str, value: &str) -> Vec<String> {
    let mut out = without(args, flag);
    out.push(flag.to_owned());
    out.push(value.to_owned());
    out
}

fn settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&regex_escape(&repo("").display().to_string()), "[REPO]/");
    settings.add_filter(r"/tmp/[^ )\n]+", "[TEMP]");
    settings
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .map(|c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                format!("\\{c}")
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn run(name: &str, args: &[String], secret: &str) {
    let text = transcript(aksup().args(args).env("AZURE_CLIENT_SECRET", secret));
    assert!(!text.contains("FAKE-"), "{name}: a secret leaked:\n{text}");
    if !secret.is_empty() {
        assert!(
            !text.contains(secret),
            "{name}: the client secret leaked:\n{text}"
        );
    }
    settings().bind(|| insta::assert_snapshot!(format!("upgrade__{name}"), text));
}

#[test]
fn every_validation_error_has_its_message_and_exit_code() {
    let model = model_path("apimodels/single-master-aad.json");
    let ok = base(&model);
    let secret = "s3cr3t-value-never-printed";
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("no_resource_group", without(&ok, "-g")),
        ("no_location", without(&ok, "-l")),
        ("no_upgrade_version", without(&ok, "-k")),
        ("no_api_model", without(&ok, "-m")),
        (
            "api_model_and_deployment_dir",
            with(&ok, "--deployment-dir", "/tmp"),
        ),
        (
            "api_model_missing",
            with(&ok, "-m", "/nonexistent/apimodel.json"),
        ),
        (
            "deployment_dir_without_apimodel",
            with(&without(&ok, "-m"), "--deployment-dir", "/nonexistent-dir"),
        ),
        ("bad_vm_timeout", with(&ok, "--vm-timeout", "0")),
        (
            "bad_cordon_drain_timeout",
            with(&ok, "--cordon-drain-timeout", "-7"),
        ),
        (
            "syntax_error",
            with(&ok, "-m", &model_path("invalid/syntax.json")),
        ),
        (
            "not_vlabs",
            with(&ok, "-m", &model_path("invalid/api-version.json")),
        ),
        (
            "cluster_definition",
            with(
                &ok,
                "-m",
                &model_path("invalid/no-orchestrator-version.json"),
            ),
        ),
        (
            "no_master_profile",
            with(&ok, "-m", &model_path("invalid/no-master-profile.json")),
        ),
        (
            "bad_master_count",
            with(&ok, "-m", &model_path("invalid/master-count.json")),
        ),
        (
            "bad_pool_count",
            with(&ok, "-m", &model_path("invalid/pool-count.json")),
        ),
        (
            "duplicate_pool",
            with(&ok, "-m", &model_path("invalid/duplicate-pool.json")),
        ),
        (
            "vmss_control_plane",
            with(&ok, "-m", &model_path("invalid/vmss-control-plane.json")),
        ),
        (
            "unknown_identity_system",
            with(&ok, "-m", &model_path("invalid/identity-system.json")),
        ),
        (
            "unknown_authentication_method",
            with(&ok, "-m", &model_path("invalid/authentication-method.json")),
        ),
        (
            "client_id_not_uuid",
            with(&ok, "--client-id", "ServicePrincipalClientID"),
        ),
        (
            "certificate_without_key",
            with(&ok, "--auth-method", "client_certificate"),
        ),
        ("subscription_not_uuid", with(&ok, "-s", "my-subscription")),
        ("location_mismatch", with(&ok, "-l", "West US")),
        ("not_semver", with(&ok, "-k", "v1.34.4")),
        ("path_not_supported", with(&ok, "-k", "1.35.0")),
        (
            "unknown_current_version",
            with(&ok, "-m", &model_path("apimodels/old-docker.json")),
        ),
        (
            "bad_auth_method_value",
            with(&ok, "--auth-method", "password"),
        ),
        (
            "bad_drain_timeout_policy",
            with(&ok, "--drain-timeout-policy", "ignore"),
        ),
        ("negative_grace_period", with(&ok, "--grace-period", "-1")),
        (
            "unknown_api_profile",
            with(&ok, "--api-profile", "2015-01-01"),
        ),
        (
            "time_scale_without_simulator",
            with(&ok, "--time-scale", "100"),
        ),
    ];
    for (name, args) in &cases {
        run(name, args, secret);
    }
    // The client secret is required for client_secret auth.
    run("no_client_secret", &ok, "");
}

#[test]
fn passing_checks_then_a_missing_subscription_is_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("apimodel.json");
    let original = fs::read_to_string(repo("testdata/apimodels/old-docker.json")).unwrap();
    fs::write(&path, &original).unwrap();
    let mut args = with(&base(&path.display().to_string()), "-k", "1.24.7");
    args.push("--force".into());
    let mut settings = settings();
    settings.add_filter(&regex_escape(&dir.path().display().to_string()), "[DIR]");
    let text = transcript(
        aksup()
            .args(&args)
            .env("AZURE_CLIENT_SECRET", "x")
            .env("HOME", dir.path()),
    );
    settings.bind(|| insta::assert_snapshot!("upgrade__checks_pass_then_no_subscription", text));
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        original,
        "the apimodel must not change"
    );
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no backup or temp file"
    );
}

#[test]
fn a_valid_path_on_a_three_master_cluster_passes_the_checks() {
    let home = tempfile::tempdir().unwrap();
    let args = base(&model_path("apimodels/three-masters-two-pools.json"));
    let out = aksup()
        .args(&args)
        .env("AZURE_CLIENT_SECRET", "x")
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "refused: no subscription anywhere"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("from 1.33.10 to 1.34.4"), "{stderr}");
    assert!(stderr.contains("no subscription"), "{stderr}");
}
