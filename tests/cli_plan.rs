//! `aksup plan --simulator` (and `aksup upgrade --dry-run --simulator`) from
//! the binary: the plan table, `-o json`, a refusing gate, and that a dry run
//! leaves nothing behind.

mod common;
mod rehearsal_support;

use std::fs;
use std::path::Path;

use common::{aksup, repo, transcript};
use rehearsal_support::settings;

fn model(name: &str) -> String {
    repo(name).display().to_string()
}

/// `aksup <command> --simulator -m MODEL -k 1.34.4 …` with TMPDIR in `tmp`, so
/// the default rehearsal directory is created (and must be removed) there.
fn plan_command(tmp: &Path, command: &str, model: &str, extra: &[&str]) -> assert_cmd::Command {
    let mut cmd = aksup();
    cmd.env("TMPDIR", tmp)
        .args([command, "--simulator", "-m", model, "-k", "1.34.4"])
        .args(extra);
    cmd
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("the temp dir is readable")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn plan_table_single_master() {
    let tmp = tempfile::tempdir().unwrap();
    let source = model("testdata/apimodels/single-master-aad.json");
    let before = fs::read(&source).unwrap();
    let text = transcript(&mut plan_command(tmp.path(), "plan", &source, &[]));
    assert!(text.starts_with("exit: 0\n"), "{text}");
    assert!(text.contains("Nothing was changed (dry run)."), "{text}");
    assert_eq!(
        fs::read(&source).unwrap(),
        before,
        "the apimodel is untouched"
    );
    assert!(
        entries(tmp.path()).is_empty(),
        "a dry run removes the rehearsal directory it made: {:?}",
        entries(tmp.path())
    );
    settings(tmp.path()).bind(|| insta::assert_snapshot!("plan_table_single_master", text));
}

#[test]
fn plan_json_three_masters_two_pools() {
    let tmp = tempfile::tempdir().unwrap();
    let source = model("examples/apimodel.json");
    let output = plan_command(tmp.path(), "plan", &source, &["-o", "json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    // stdout is one JSON document (pretty-printed), nothing else.
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    assert_eq!(plan["currentVersion"], "1.33.10");
    assert_eq!(plan["targetVersion"], "1.34.4");
    assert!(plan["refusal"].is_null());
    let steps = plan["steps"].as_array().unwrap();
    // 3 masters; 2 pools of 2: surge, replace, recreate, replace each.
    assert_eq!(steps.len(), 3 + 4 + 4);
    let actions: Vec<&str> = steps
        .iter()
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    assert_eq!(&actions[..3], ["replaceMaster"; 3]);
    assert_eq!(
        &actions[3..7],
        ["createAgent", "replaceAgent", "createAgent", "replaceAgent"]
    );
    assert!(entries(tmp.path()).is_empty());
    let stdout = String::from_utf8(output.stdout).unwrap();
    settings(tmp.path())
        .bind(|| insta::assert_snapshot!("plan_json_three_masters_two_pools", stdout));
}

#[test]
fn upgrade_dry_run_prints_the_same_plan() {
    let tmp = tempfile::tempdir().unwrap();
    let source = model("testdata/apimodels/single-master-aad.json");
    let plan = plan_command(tmp.path(), "plan", &source, &[])
        .output()
        .unwrap();
    let dry = plan_command(tmp.path(), "upgrade", &source, &["--dry-run"])
        .output()
        .unwrap();
    assert_eq!(plan.status.code(), Some(0));
    assert_eq!(dry.status.code(), Some(0));
    // Only the temporary copy's path differs.
    let strip = |out: &[u8]| {
        String::from_utf8_lossy(out)
            .lines()
            .map(|l| match l.find(" (") {
                Some(i) if l.starts_with("Plan for ") => l[..i].to_owned(),
                _ => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&plan.stdout), strip(&dry.stdout));
    assert!(entries(tmp.path()).is_empty());
}

#[test]
fn plan_refuses_a_missing_marketplace_image() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("custom-offer.json");
    let mut model: serde_json::Value =
        serde_json::from_slice(&fs::read(repo("testdata/apimodels/windows-pool.json")).unwrap())
            .unwrap();
    model["properties"]["windowsProfile"]["windowsOffer"] = "contoso-hardened-windows".into();
    fs::write(&path, serde_json::to_vec_pretty(&model).unwrap()).unwrap();
    let sims = tmp.path().join("sims");
    fs::create_dir(&sims).unwrap();
    let text = transcript(&mut plan_command(
        &sims,
        "plan",
        &path.display().to_string(),
        &[],
    ));
    assert!(text.starts_with("exit: 1\n"), "{text}");
    assert!(
        text.contains("microsoft-aks:contoso-hardened-windows:"),
        "{text}"
    );
    assert!(entries(&sims).is_empty());
    settings(tmp.path()).bind(|| insta::assert_snapshot!("plan_refuses_missing_image", text));
}
