//! `aksup upgrade --simulator` from the binary: the README's first command on
//! `examples/apimodel.json`, the human summary, the `-o json` event stream,
//! every refusal the simulator can show, and plain lines versus progress bars.
//!
//! Exit codes: 0 done, 1 refused by a check before anything changed, 2 failed
//! while working (a blocked drain included: the run stopped at a safe point).

mod common;
mod rehearsal_support;

use std::fs;
use std::path::{Path, PathBuf};

use common::{aksup, repo, transcript};
use rehearsal_support::{json_lines, settings, zero_durations};

const SINGLE: &str = "testdata/apimodels/single-master-aad.json";

fn rehearsal(model: &str, sim_dir: &Path, extra: &[&str]) -> assert_cmd::Command {
    let mut cmd = aksup();
    cmd.args([
        "upgrade",
        "--simulator",
        "-m",
        model,
        "-k",
        "1.34.4",
        "--simulator-dir",
    ])
    .arg(sim_dir)
    .args(extra);
    cmd
}

fn orchestrator_version(path: &Path) -> String {
    let model: serde_json::Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    model["properties"]["orchestratorProfile"]["orchestratorVersion"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn only_child(dir: &Path) -> PathBuf {
    let children: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(children.len(), 1, "{children:?}");
    children.into_iter().next().unwrap()
}

/// The README's command, as a user types it (default rehearsal directory).
#[test]
fn readme_command_upgrades_the_example_apimodel() {
    let tmp = tempfile::tempdir().unwrap();
    let example = repo("examples/apimodel.json");
    let before = fs::read(&example).unwrap();
    let mut cmd = aksup();
    cmd.current_dir(repo("")).env("TMPDIR", tmp.path()).args([
        "upgrade",
        "--simulator",
        "--api-model",
        "examples/apimodel.json",
        "--upgrade-version",
        "1.34.4",
        "--allow-unreplicated-pods",
        "--no-progress",
    ]);
    let text = transcript(&mut cmd);
    assert!(text.starts_with("exit: 0\n"), "{text}");
    assert_eq!(
        fs::read(&example).unwrap(),
        before,
        "examples/apimodel.json is untouched"
    );
    let kept = only_child(tmp.path());
    let copy = kept.join("apimodel.json");
    assert_eq!(
        orchestrator_version(&copy),
        "1.34.4",
        "the kept copy is upgraded"
    );
    assert!(
        text.contains(&format!("The upgraded apimodel copy is {}", copy.display())),
        "{text}"
    );
    // 3 masters replaced, each pool ends with its count of new nodes.
    for node in [
        "k8s-master-15670134-0",
        "k8s-master-15670134-1",
        "k8s-master-15670134-2",
    ] {
        assert!(
            text.contains(&format!("{node}     1.33.10 -> 1.34.4")),
            "{text}"
        );
    }
    assert!(
        !text.contains('\x1b') && !text.contains('\r'),
        "plain lines only"
    );
    assert!(
        !text.contains("note: "),
        "no note with --allow-unreplicated-pods: {text}"
    );
    settings(tmp.path()).bind(|| insta::assert_snapshot!("readme_command_example", text));
}

#[test]
fn json_events_of_a_successful_rehearsal() {
    let tmp = tempfile::tempdir().unwrap();
    let output = rehearsal(
        &repo(SINGLE).display().to_string(),
        tmp.path(),
        &["--allow-unreplicated-pods", "-o", "json"],
    )
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("{\""), "no JSON on stderr: {stderr}");
    let mut events = json_lines(&output.stdout);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"runStarted"));
    assert_eq!(kinds.get(1), Some(&"plan"));
    assert_eq!(kinds.last(), Some(&"runFinished"));
    assert_eq!(events[0]["dryRun"], false);
    let planned = events[1]["steps"].as_u64().unwrap();
    assert_eq!(planned, 5);
    // Steps start and finish in pairs, numbered 1..=planned, nothing nested.
    let mut open: Option<(u64, String)> = None;
    let mut finished = 0;
    for event in &events {
        match event["event"].as_str().unwrap() {
            "stepStarted" => {
                assert!(open.is_none(), "step started inside another: {event}");
                let number = event["number"].as_u64().unwrap();
                assert_eq!(number, finished + 1);
                assert_eq!(event["estimatedTotal"], planned);
                open = Some((number, event["action"].as_str().unwrap().to_owned()));
            }
            "stepFinished" => {
                let (number, action) = open.take().expect("a step is open");
                assert_eq!(event["number"], number);
                assert_eq!(event["action"], action.as_str());
                assert_eq!(event["outcome"], "success");
                finished = number;
            }
            "runStarted" | "plan" | "progress" | "warning" | "runFinished" => {}
            other => panic!("unexpected event {other}"),
        }
    }
    assert_eq!(finished, planned);
    let last = events.last().unwrap();
    assert_eq!(last["outcome"], "success");
    assert_eq!(last["nodes"].as_array().unwrap().len(), 5);
    let copy = tmp.path().join("apimodel.json");
    assert_eq!(orchestrator_version(&copy), "1.34.4");

    let lines: Vec<String> = events
        .iter_mut()
        .map(|event| {
            zero_durations(event);
            serde_json::to_string(event).unwrap()
        })
        .collect();
    let text = lines.join("\n");
    settings(tmp.path()).bind(|| insta::assert_snapshot!("json_events_single_master", text));
}

/// The default scenario runs `shop/debug-shell`, a pod no controller owns.
/// Without `--allow-unreplicated-pods` the drain refuses before the VM is
/// deleted: exit 2, the pod is named, the apimodel copy keeps its version.
/// Run without `--no-progress`: stderr is not a terminal, so plain lines.
#[test]
fn unreplicated_pod_blocks_the_drain() {
    let tmp = tempfile::tempdir().unwrap();
    let text = transcript(&mut rehearsal(
        &repo(SINGLE).display().to_string(),
        tmp.path(),
        &[],
    ));
    assert!(text.starts_with("exit: 2\n"), "{text}");
    assert!(text.contains("shop/debug-shell"), "{text}");
    assert!(text.contains("--allow-unreplicated-pods"), "{text}");
    assert!(text.contains("the VM was left untouched"), "{text}");
    assert!(
        text.contains("note: the simulated cluster runs shop/debug-shell that no controller owns"),
        "the rehearsal warns up front: {text}"
    );
    assert!(
        !text.contains("k8s-linuxpool-85329075-0: deleting the VM"),
        "the blocked node's VM is not deleted: {text}"
    );
    assert!(
        !text.contains('\x1b') && !text.contains('\r'),
        "plain lines only"
    );
    assert_eq!(
        orchestrator_version(&tmp.path().join("apimodel.json")),
        "1.33.10",
        "a failed run leaves the apimodel unchanged"
    );
    settings(tmp.path()).bind(|| insta::assert_snapshot!("blocked_drain", text));
}

/// A marketplace image the new VMs need is missing on the stamp: refused
/// before the first step (exit 1), nothing deleted.
#[test]
fn missing_marketplace_image_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("custom-offer.json");
    let mut model: serde_json::Value =
        serde_json::from_slice(&fs::read(repo("testdata/apimodels/windows-pool.json")).unwrap())
            .unwrap();
    model["properties"]["windowsProfile"]["windowsOffer"] = "contoso-hardened-windows".into();
    fs::write(&path, serde_json::to_vec_pretty(&model).unwrap()).unwrap();
    let sim = tmp.path().join("sim");
    let text = transcript(&mut rehearsal(
        &path.display().to_string(),
        &sim,
        &["--no-progress"],
    ));
    assert!(text.starts_with("exit: 1\n"), "{text}");
    assert!(
        text.contains("the stamp offers none of these images"),
        "{text}"
    );
    assert!(!text.contains("Starting"), "no step ran: {text}");
    settings(tmp.path()).bind(|| insta::assert_snapshot!("missing_image", text));
}

#[test]
fn invalid_api_model_path_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-apimodel.json");
    let text = transcript(&mut rehearsal(
        &missing.display().to_string(),
        &tmp.path().join("sim"),
        &[],
    ));
    assert!(text.starts_with("exit: 1\n"), "{text}");
    assert!(!tmp.path().join("sim").exists(), "no simulator was started");
    settings(tmp.path()).bind(|| insta::assert_snapshot!("invalid_path", text));
}

#[test]
fn unparsable_api_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("broken.json");
    fs::write(&path, "{ \"apiVersion\": \"vlabs\", ").unwrap();
    let text = transcript(&mut rehearsal(
        &path.display().to_string(),
        &tmp.path().join("sim"),
        &[],
    ));
    assert!(text.starts_with("exit: 1\n"), "{text}");
    settings(tmp.path()).bind(|| insta::assert_snapshot!("unparsable", text));
}

/// `-o json` on a failed run: still only JSON lines on stdout, the last one
/// `runFinished` with outcome `failed`; the error goes to stderr.
#[test]
fn json_mode_failure_prints_only_json_on_stdout() {
    let tmp = tempfile::tempdir().unwrap();
    let output = rehearsal(
        &repo(SINGLE).display().to_string(),
        tmp.path(),
        &["-o", "json"],
    )
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let events = json_lines(&output.stdout);
    let last = events.last().unwrap();
    assert_eq!(last["event"], "runFinished");
    assert_eq!(last["outcome"], "failed");
    assert!(
        last["message"].as_str().unwrap().contains("draining"),
        "{last}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("error: draining k8s-linuxpool-85329075-0"),
        "{stderr}"
    );
}

/// Runs `command` under `script` (a pseudo-terminal) and returns what the
/// terminal received, or `None` where `script` is not installed.
fn on_a_terminal(args: &[String], env: &[(&str, &str)]) -> Option<String> {
    let script = ["/usr/bin/script", "/bin/script"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let bin = env!("CARGO_BIN_EXE_aksup");
    let mut line = String::from(bin);
    for arg in args {
        line.push(' ');
        line.push_str(arg);
    }
    let mut cmd = std::process::Command::new(script);
    cmd.args(["-qec", &line, "/dev/null"])
        .env("COLUMNS", "120")
        .env("TERM", "xterm")
        .env_remove("AKSUP_NO_PROGRESS")
        .env_remove("RUST_LOG");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let output = cmd.output().ok()?;
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn terminal_args(sim_dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "upgrade",
        "--simulator",
        "-m",
        &repo(SINGLE).display().to_string(),
        "-k",
        "1.34.4",
        "--simulator-dir",
        &sim_dir.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// On a terminal the run draws indicatif bars (`N/M steps`, redrawn with
/// carriage returns); `--no-progress` and `AKSUP_NO_PROGRESS` give the plain
/// lines instead. (Stops at the blocked drain to stay short.)
#[test]
fn progress_bars_on_a_terminal_only() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(bars) = on_a_terminal(&terminal_args(&tmp.path().join("a"), &[]), &[]) else {
        eprintln!("script(1) is not installed: terminal check skipped");
        return;
    };
    assert!(
        bars.contains("steps (eta"),
        "a progress bar is drawn: {bars}"
    );
    assert!(
        bars.contains("\x1b[2K"),
        "the bar is redrawn in place: {bars}"
    );
    assert!(
        bars.contains("Starting k8s-master-85329075-0 (1/5)"),
        "{bars}"
    );

    let flag = on_a_terminal(
        &terminal_args(&tmp.path().join("b"), &["--no-progress"]),
        &[],
    )
    .unwrap();
    assert!(!flag.contains("steps (eta"), "{flag}");
    assert!(!flag.contains("\x1b[2K"), "{flag}");
    assert!(
        flag.contains("Starting k8s-master-85329075-0 (1/5)"),
        "{flag}"
    );

    let env = on_a_terminal(
        &terminal_args(&tmp.path().join("c"), &[]),
        &[("AKSUP_NO_PROGRESS", "1")],
    )
    .unwrap();
    assert!(!env.contains("steps (eta"), "{env}");
    assert!(
        env.contains("Starting k8s-master-85329075-0 (1/5)"),
        "{env}"
    );
}

/// Kills a child process when dropped (a failing assertion must not leave the
/// simulator or a run behind).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `aksup simulator serve -m MODEL` at real speed (a VM takes minutes) and
/// its endpoints (the JSON line it prints first).
fn serve(model: &str, state_dir: &Path) -> (Killed, serde_json::Value) {
    use std::io::{BufRead as _, BufReader};
    use std::process::{Command, Stdio};

    let serve = Command::new(env!("CARGO_BIN_EXE_aksup"))
        .args(["simulator", "serve", "-m"])
        .arg(repo(model))
        .arg("--state-dir")
        .arg(state_dir)
        .args(["-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut serve = Killed(serve);
    let mut line = String::new();
    BufReader::new(serve.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let endpoints = serde_json::from_str(&line).expect("endpoints JSON");
    (serve, endpoints)
}

/// `aksup <command>` with the flags a user passes against a stamp, pointing
/// at the served simulator (the secret in the environment, as advised).
fn against(endpoints: &serde_json::Value, command: &str) -> std::process::Command {
    let text = |key: &str| endpoints[key].as_str().unwrap().to_owned();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_aksup"));
    cmd.env_clear()
        .env("AZURE_CLIENT_SECRET", text("clientSecret"))
        .args([command, "-m", &text("apiModelFile"), "-k", "1.34.4"])
        .args(["-g", &text("resourceGroup"), "-l", &text("location")])
        .args([
            "-s",
            &text("subscriptionId"),
            "--client-id",
            &text("clientId"),
        ])
        .args([
            "--azure-env",
            "AzureStackCloud",
            "--ca-file",
            &text("caFile"),
        ])
        .args(["-b", &text("kubeconfigFile"), "--allow-unreplicated-pods"]);
    cmd
}

/// Two runs against one cluster: a first `aksup upgrade` that holds the lock
/// (the simulator at real speed keeps it busy for minutes), and a second one
/// that is refused (exit 1) naming the holder's pid and `--break-lock`.
#[test]
fn a_second_concurrent_run_is_refused() {
    use std::io::{BufRead as _, BufReader};
    use std::process::Stdio;

    let tmp = tempfile::tempdir().unwrap();
    let (serve, endpoints) = serve(SINGLE, &tmp.path().join("sim"));
    let secret = endpoints["clientSecret"].as_str().unwrap().to_owned();

    let first = against(&endpoints, "upgrade")
        .args(["-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = Killed(first);
    let pid = first.0.id();
    let mut events = BufReader::new(first.0.stdout.take().unwrap()).lines();
    let locked = events
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l.contains("acquired the upgrade lock"))
        .expect("the first run takes the lock");
    assert!(locked.contains(&format!("(pid {pid})")), "{locked}");

    let output = against(&endpoints, "upgrade")
        .arg("--no-progress")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another aksup run holds the upgrade lock"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("(pid {pid})")),
        "names the holder: {stderr}"
    );
    assert!(stderr.contains("--break-lock"), "{stderr}");
    assert!(
        !stderr.contains("Starting"),
        "the second run did no step: {stderr}"
    );
    assert!(!stderr.contains(&secret), "the client secret is not shown");
    drop(first);
    drop(serve);
}

/// The quorum gate: with another master NotReady, the first master may not be
/// replaced. `aksup plan` and `aksup upgrade` both refuse (exit 1) and name it;
/// the upgrade deletes nothing.
#[test]
fn a_not_ready_master_is_refused_by_the_gate() {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::{Api, Patch, PatchParams};

    let tmp = tempfile::tempdir().unwrap();
    let (serve, endpoints) = serve(
        "testdata/apimodels/three-masters-two-pools.json",
        &tmp.path().join("sim"),
    );
    let kubeconfig = PathBuf::from(endpoints["kubeconfigFile"].as_str().unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .unwrap();
        let nodes: Api<Node> = Api::all(kube::Client::try_from(config).unwrap());
        let not_ready = serde_json::json!({"status": {"conditions": [{
            "type": "Ready", "status": "False", "reason": "KubeletNotReady",
            "message": "kubelet stopped posting node status"
        }]}});
        nodes
            .patch_status(
                "k8s-master-74194908-1",
                &PatchParams::default(),
                &Patch::Merge(&not_ready),
            )
            .await
            .unwrap();
    });

    let plan = against(&endpoints, "plan").output().unwrap();
    let plan_err = String::from_utf8_lossy(&plan.stderr);
    assert_eq!(plan.status.code(), Some(1), "{plan_err}");
    let upgrade = against(&endpoints, "upgrade")
        .arg("--no-progress")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&upgrade.stderr);
    assert_eq!(upgrade.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("while master k8s-master-74194908-1 is NotReady"),
        "{stderr}"
    );
    assert!(!stderr.contains("deleting"), "nothing deleted: {stderr}");
    assert!(!stderr.contains("Starting"), "no step ran: {stderr}");
    drop(serve);
    // PDB warnings depend on how far the simulator's pods are at real speed.
    let text: String = format!("--- plan\n{plan_err}--- upgrade\n{stderr}")
        .lines()
        .filter(|line| !line.contains("is blocked now"))
        .map(|line| format!("{line}\n"))
        .collect();
    settings(tmp.path()).bind(|| insta::assert_snapshot!("not_ready_master_gate", text));
}

/// An upgrade path the version table does not allow is refused (exit 1) with
/// the versions that are allowed.
#[test]
fn unsupported_upgrade_path_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = aksup();
    cmd.args([
        "upgrade",
        "--simulator",
        "-m",
        &repo(SINGLE).display().to_string(),
    ])
    .args(["-k", "1.35.0", "--simulator-dir"])
    .arg(tmp.path());
    let text = transcript(&mut cmd);
    assert!(text.starts_with("exit: 1\n"), "{text}");
    assert!(
        text.contains("from 1.33.10 you can upgrade to: 1.34.4"),
        "{text}"
    );
    assert!(
        !text.contains("Upgrading"),
        "the engine did not start: {text}"
    );
    settings(tmp.path()).bind(|| insta::assert_snapshot!("unsupported_path", text));
}

/// `-o json` on a refusal: only JSON on stdout, ending in `runFinished` with
/// outcome `refused`; exit 1.
#[test]
fn json_mode_refusal_ends_with_run_finished_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("custom-offer.json");
    let mut model: serde_json::Value =
        serde_json::from_slice(&fs::read(repo("testdata/apimodels/windows-pool.json")).unwrap())
            .unwrap();
    model["properties"]["windowsProfile"]["windowsOffer"] = "contoso-hardened-windows".into();
    fs::write(&path, serde_json::to_vec_pretty(&model).unwrap()).unwrap();
    let output = rehearsal(
        &path.display().to_string(),
        &tmp.path().join("sim"),
        &["-o", "json"],
    )
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let events = json_lines(&output.stdout);
    let last = events.last().unwrap();
    assert_eq!(last["event"], "runFinished");
    assert_eq!(last["outcome"], "refused");
    assert!(
        events.iter().all(|e| e["event"] != "stepStarted"),
        "no step ran"
    );
}
