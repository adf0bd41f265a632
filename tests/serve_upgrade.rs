//! `aksup simulator serve` as a long-lived child process, driven by separate
//! `aksup upgrade` processes exactly as an operator would: the printed
//! credentials, subscription, resource group, location and apimodel copy,
//! the secret in `AZURE_CLIENT_SECRET`. Upgrades are SIGKILLed at chosen
//! points and run again; the simulator outlives them all.
//!
//! Slow by nature (about a minute per upgrade at time scale 1000); every
//! process is bounded in time and killed on failure.

#[path = "serve_upgrade/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use harness::{EndState, Run, Served, TARGET, run};

fn orchestrator_version(served: &Served) -> String {
    let text = std::fs::read_to_string(served.api_model_copy()).expect("the apimodel copy");
    let model: Value = serde_json::from_str(&text).expect("the copy is JSON");
    model["properties"]["orchestratorProfile"]["orchestratorVersion"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The upgraded world: every VM tagged with the target, every Node Ready at
/// it, all masters there with their own etcd disk (the very disks of the
/// start: same incarnation and creation time, never deleted), nothing lost,
/// the lock released.
fn assert_upgraded(state: &Value, etcd_before: &BTreeMap<String, Value>) {
    let end = EndState::of(state);
    let tag = format!("Kubernetes:{TARGET}");
    for (vm, tags) in &end.vms {
        assert_eq!(tags.get("orchestrator"), Some(&tag), "{vm} tags {tags:?}");
    }
    assert_eq!(
        end.nodes.keys().collect::<Vec<_>>(),
        end.vms.keys().collect::<Vec<_>>(),
        "one Node per VM"
    );
    for (node, (version, ready, unschedulable)) in &end.nodes {
        assert_eq!(version, &format!("v{TARGET}"), "{node}");
        assert!(ready, "{node} is not Ready");
        assert!(!unschedulable, "{node} is still cordoned");
    }
    let masters: Vec<&String> = end
        .vms
        .keys()
        .filter(|name| name.starts_with("k8s-master-"))
        .collect();
    assert_eq!(masters.len(), 3, "masters: {masters:?}");
    for master in masters {
        assert_eq!(
            end.data_disks[master],
            vec![(0, format!("{master}-etcddisk"))],
            "{master} has its etcd disk at lun 0"
        );
    }
    let etcd_after = harness::etcd_disks(state);
    assert_eq!(
        etcd_after.keys().collect::<Vec<_>>(),
        etcd_before.keys().collect::<Vec<_>>()
    );
    for (name, before) in etcd_before {
        let after = &etcd_after[name];
        assert_eq!(after["incarnation"], before["incarnation"], "{name}");
        assert_eq!(after["timeCreated"], before["timeCreated"], "{name}");
    }
    let deleted_disks = harness::deleted(state, "diskDelete");
    assert!(
        deleted_disks.iter().all(|d| !d.ends_with("-etcddisk")),
        "an etcd disk was deleted: {deleted_disks:?}"
    );
    assert_eq!(
        state["kubernetes"]["lostNodes"],
        Value::Array(Vec::new()),
        "lost nodes"
    );
    if let Some(lease) = harness::lock_lease(state) {
        assert!(
            lease["spec"]["holderIdentity"]
                .as_str()
                .is_none_or(str::is_empty),
            "the upgrade lock is still held: {lease}"
        );
    }
}

fn assert_succeeded(run: &Run) {
    assert_eq!(run.code(), Some(0), "{}", run.transcript());
    let finished = run.last("runFinished").expect("a runFinished event");
    assert_eq!(run.events.last(), Some(finished), "{}", run.transcript());
    assert_eq!(finished["outcome"], "success", "{}", run.transcript());
    assert_eq!(run.count("runFinished"), 1);
}

/// The uninterrupted run, with every assertion of the first test; computed
/// once and compared with by the resumed runs.
fn baseline() -> &'static EndState {
    static BASELINE: OnceLock<EndState> = OnceLock::new();
    BASELINE.get_or_init(|| {
        let started = Instant::now();
        let mut served = Served::start();
        let before = served.state();
        let etcd_before = harness::etcd_disks(&before);
        assert_eq!(etcd_before.len(), 3, "three etcd disks seeded");
        assert_eq!(orchestrator_version(&served), "1.33.10");

        let upgrade = run(served.upgrade_command(), None, harness::RUN_LIMIT);
        assert_succeeded(&upgrade);
        assert_eq!(upgrade.events[0]["event"], "runStarted");
        assert_eq!(upgrade.events[0]["target"], TARGET);
        let planned = upgrade
            .events
            .iter()
            .find(|e| e["event"] == "plan")
            .and_then(|e| e["steps"].as_u64())
            .expect("a plan event with its step count");
        assert!(planned >= 3 + 2 * 3, "{planned} steps");
        assert_eq!(upgrade.count("stepFinished") as u64, planned);
        assert!(
            upgrade
                .events
                .iter()
                .filter(|e| e["event"] == "stepFinished")
                .all(|e| e["outcome"] == "success")
        );

        assert!(served.alive(), "the simulator outlives its client");
        let after = served.state();
        assert_upgraded(&after, &etcd_before);
        assert_eq!(orchestrator_version(&served), TARGET);
        eprintln!(
            "uninterrupted upgrade: {:?} (aksup upgrade itself {:?}, {planned} steps)",
            started.elapsed(),
            upgrade.elapsed
        );
        EndState::of(&after)
    })
}

#[test]
fn upgrade_runs_unchanged_against_the_served_simulator() {
    let end = baseline();
    // The shape of the upgraded cluster: masters replaced in place, each pool
    // back to the apimodel's count (the surge VM kept, the last old VM not
    // recreated).
    let text = std::fs::read_to_string(harness::repo(harness::APIMODEL)).expect("the apimodel");
    let model: Value = serde_json::from_str(&text).expect("JSON");
    let properties = &model["properties"];
    let mut expected = BTreeMap::from([(
        "master".to_owned(),
        properties["masterProfile"]["count"]
            .as_u64()
            .expect("count"),
    )]);
    for pool in properties["agentPoolProfiles"].as_array().expect("pools") {
        expected.insert(
            pool["name"].as_str().expect("name").to_owned(),
            pool["count"].as_u64().expect("count"),
        );
    }
    let mut counted = BTreeMap::new();
    for tags in end.vms.values() {
        *counted.entry(tags["poolName"].clone()).or_insert(0) += 1;
    }
    assert_eq!(counted, expected, "{:?}", end.vms.keys());
    for index in 0..3 {
        assert!(
            end.vms
                .keys()
                .any(|name| name.starts_with("k8s-master-") && name.ends_with(&format!("-{index}"))),
            "master {index} is there at its index"
        );
    }
}

/// Where to SIGKILL the first run.
struct KillPoint {
    label: &'static str,
    at: fn(&Value) -> bool,
    /// Once `at` has matched, kill only when the simulator's state shows
    /// this (the request the client was making has reached the stamp).
    until: Option<fn(&Value) -> bool>,
    /// The first step of the resumed run: action, pool, VM index.
    resumes_with: (&'static str, &'static str, u32),
}

/// The VM `k8s-<pool>-<suffix>-<index>` in a `/_sim/state` document.
fn vm<'a>(state: &'a Value, pool: &str, index: u32) -> Option<&'a Value> {
    state["arm"]["virtualMachines"]
        .as_object()?
        .iter()
        .find(|(name, _)| {
            name.starts_with(&format!("k8s-{pool}-")) && name.ends_with(&format!("-{index}"))
        })
        .map(|(_, vm)| vm)
}

fn after_step(event: &Value, k: u64) -> bool {
    event["event"] == "stepFinished" && event["number"] == k
}

fn progress(event: &Value, subject: &str, message: &str) -> bool {
    event["event"] == "progress"
        && event["subject"]
            .as_str()
            .unwrap_or_default()
            .contains(subject)
        && event["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with(message)
}

const KILL_POINTS: &[KillPoint] = &[
    KillPoint {
        label: "after the 1st stepFinished (a master replaced)",
        at: |e| after_step(e, 1),
        until: None,
        resumes_with: ("replace master", "master", 1),
    },
    KillPoint {
        label: "after the 4th stepFinished (the surge VM of the first pool)",
        at: |e| after_step(e, 4),
        until: None,
        resumes_with: ("replace agent", "linuxpool", 0),
    },
    KillPoint {
        label: "after the 7th stepFinished (in the middle of the first pool)",
        at: |e| after_step(e, 7),
        until: None,
        resumes_with: ("create surge vm", "linuxpool", 1),
    },
    KillPoint {
        label: "mid-step: while master 1's VM is being deleted",
        at: |e| {
            progress(e, "k8s-master-", "deleting the VM")
                && e["subject"].as_str().is_some_and(|s| s.ends_with("-1"))
        },
        // The delete was accepted: the VM is going or gone, its NIC and OS
        // disk not deleted yet, nothing redeployed.
        until: Some(|state| {
            vm(state, "master", 1).is_none_or(|vm| vm["provisioningState"] == "Deleting")
        }),
        resumes_with: ("recreate master", "master", 1),
    },
    KillPoint {
        label: "mid-step: while the first surge VM is being deployed",
        at: |e| progress(e, "-linuxpool-", "deploying aksup-linuxpool-3-"),
        // The deployment PUT was accepted; its VM is still being created.
        until: Some(|state| {
            state["arm"]["deployments"]
                .as_object()
                .is_some_and(|d| d.keys().any(|k| k.starts_with("aksup-linuxpool-3-")))
        }),
        resumes_with: ("replace agent", "linuxpool", 0),
    },
];

/// Kill at `point`, check the same command is refused while the dead run's
/// lease is valid (naming the dead pid), run it again once the lease has
/// expired, and return the end state.
fn killed_and_resumed(point: &KillPoint) -> EndState {
    let started = Instant::now();
    let mut served = Served::start();
    let etcd_before = harness::etcd_disks(&served.state());

    let kill_at = |event: &Value| {
        if !(point.at)(event) {
            return false;
        }
        if let Some(until) = point.until {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !until(&served.state()) {
                assert!(
                    Instant::now() < deadline,
                    "{}: the simulator never showed the kill condition",
                    point.label
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        true
    };
    let first = run(served.upgrade_command(), Some(&kill_at), harness::RUN_LIMIT);
    assert_eq!(
        first.status,
        None,
        "{}: the run ended before the kill point\n{}",
        point.label,
        first.transcript()
    );
    assert_eq!(first.count("runFinished"), 0, "{}", point.label);
    assert_eq!(
        orchestrator_version(&served),
        "1.33.10",
        "{}: a killed run leaves the apimodel unchanged",
        point.label
    );
    assert!(served.alive(), "the simulator outlives the killed client");

    // The dead run's lease is still valid: the same command is refused and
    // says who holds the lock.
    let refused = run(served.upgrade_command(), None, Duration::from_secs(120));
    assert_eq!(refused.code(), Some(1), "{}", refused.transcript());
    assert_eq!(
        refused.last("runFinished").map(|e| e["outcome"].clone()),
        Some(Value::from("refused")),
        "{}",
        refused.transcript()
    );
    let said = refused.transcript();
    assert!(
        said.contains("lock") && said.contains(&format!("pid {}", first.pid)),
        "{}: the refusal names the holder (pid {})\n{said}",
        point.label,
        first.pid
    );

    // Once the holder has stopped renewing for the lease duration, the very
    // same command resumes.
    let lease = harness::lock_lease(&served.state()).expect("the dead run's lease");
    if let Some(left) = harness::lease_left(&lease) {
        assert!(left <= Duration::from_secs(61), "lease left {left:?}");
        std::thread::sleep(left + Duration::from_secs(1));
    }
    let resumed = run(served.upgrade_command(), None, harness::RUN_LIMIT);
    assert_succeeded(&resumed);
    // It resumed where the first run stopped (the same code path observes
    // the half-done world), not from the beginning.
    let (action, pool, index) = point.resumes_with;
    let first_step = resumed
        .events
        .iter()
        .find(|e| e["event"] == "stepStarted")
        .expect("the resumed run has steps");
    let subject = first_step["subject"].as_str().unwrap_or_default();
    assert!(
        first_step["action"] == action
            && subject.starts_with(&format!("k8s-{pool}-"))
            && subject.ends_with(&format!("-{index}")),
        "{}: the resumed run starts with {action} {pool} {index}, not {first_step}",
        point.label
    );
    assert!(served.alive(), "the simulator outlives both clients");
    let state = served.state();
    assert_upgraded(&state, &etcd_before);
    assert_eq!(orchestrator_version(&served), TARGET);
    eprintln!(
        "{}: {:?} in all (killed after {:?}, refused in {:?}, resumed in {:?}, {} steps)",
        point.label,
        started.elapsed(),
        first.elapsed,
        refused.elapsed,
        resumed.elapsed,
        resumed.count("stepFinished")
    );
    EndState::of(&state)
}

#[test]
fn killed_upgrades_resume_to_the_same_world() {
    // The kill points run side by side, each against its own simulator.
    let ends: Vec<EndState> = std::thread::scope(|scope| {
        let handles: Vec<_> = KILL_POINTS
            .iter()
            .map(|point| scope.spawn(move || killed_and_resumed(point)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let expected = baseline();
    for (point, end) in KILL_POINTS.iter().zip(&ends) {
        assert_eq!(end, expected, "{}", point.label);
    }
}

#[test]
fn a_second_concurrent_upgrade_is_refused_naming_the_holder() {
    let started = Instant::now();
    let served = Served::start();
    let second: Mutex<Option<Run>> = Mutex::new(None);
    // When the first run has taken the lock, run the second one to its end,
    // then stop the first.
    let when_locked = |event: &Value| {
        if !progress(event, "", "acquired the upgrade lock") {
            return false;
        }
        let refused = run(served.upgrade_command(), None, Duration::from_secs(120));
        *second.lock().expect("not poisoned") = Some(refused);
        true
    };
    let first = run(
        served.upgrade_command(),
        Some(&when_locked),
        harness::RUN_LIMIT,
    );
    let refused = second
        .into_inner()
        .expect("not poisoned")
        .expect("the second run ran while the first held the lock");
    assert_eq!(refused.code(), Some(1), "{}", refused.transcript());
    assert_eq!(
        refused.last("runFinished").map(|e| e["outcome"].clone()),
        Some(Value::from("refused")),
        "{}",
        refused.transcript()
    );
    let said = refused.transcript();
    assert!(
        said.contains("lock") && said.contains(&format!("pid {}", first.pid)),
        "the refusal names the holder (pid {})\n{said}",
        first.pid
    );
    assert_eq!(refused.count("stepStarted"), 0, "{said}");
    eprintln!(
        "concurrent refusal: {:?} in all (second run {:?})",
        started.elapsed(),
        refused.elapsed
    );
}

#[test]
fn upgrade_with_only_the_printed_environment() {
    // No --ca-file, --subscription-id, --client-id or secret flag: the
    // `environment` the simulator printed (SSL_CERT_FILE, AZURE_*,
    // KUBECONFIG) is all the credentials and trust the run gets.
    let started = Instant::now();
    let mut served = Served::start();
    let etcd_before = harness::etcd_disks(&served.state());
    let environment = served.endpoints["environment"]
        .as_object()
        .expect("the summary has an environment object")
        .clone();
    let names: Vec<&String> = environment.keys().collect();
    assert_eq!(
        names,
        [
            "AZURE_CLIENT_ID",
            "AZURE_CLIENT_SECRET",
            "AZURE_SUBSCRIPTION_ID",
            "AZURE_TENANT_ID",
            "KUBECONFIG",
            "REQUESTS_CA_BUNDLE",
            "SSL_CERT_FILE",
        ]
    );
    assert_eq!(environment["SSL_CERT_FILE"], served.endpoints["caFile"]);
    assert_eq!(
        environment["AZURE_CLIENT_SECRET"],
        served.endpoints["clientSecret"]
    );
    let mut command = harness::aksup();
    command
        .arg("upgrade")
        .arg("--api-model")
        .arg(served.api_model_copy())
        .args(["-g", &served.field("resourceGroup")])
        .args(["-l", &served.field("location")])
        .args(["--azure-env", "AzureStackCloud", "-k", TARGET])
        .args(["--allow-unreplicated-pods", "-o", "json"])
        .stdin(std::process::Stdio::null());
    for (name, value) in &environment {
        command.env(name, value.as_str().expect("a string"));
    }
    let upgrade = run(command, None, harness::RUN_LIMIT);
    assert_succeeded(&upgrade);
    assert!(served.alive());
    let state = served.state();
    assert_upgraded(&state, &etcd_before);
    assert_eq!(orchestrator_version(&served), TARGET);
    assert_eq!(&EndState::of(&state), baseline());
    eprintln!(
        "upgrade with the printed environment: {:?} in all (aksup upgrade {:?})",
        started.elapsed(),
        upgrade.elapsed
    );
}

#[test]
fn human_summary_prints_the_exports_and_a_complete_command() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().expect("a temp dir");
    let child = harness::aksup()
        .args(["simulator", "serve", "--api-model"])
        .arg(harness::repo(harness::APIMODEL))
        .arg("--state-dir")
        .arg(dir.path().join("my state"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("aksup simulator serve starts");
    let mut served = harness::Guard(child);
    let stdout = served.0.stdout.take().expect("a pipe");
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let last = line.starts_with("Trust the CA");
            text.push_str(&line);
            text.push('\n');
            if last {
                break;
            }
        }
        let _ = send.send(text);
    });
    let text = receive
        .recv_timeout(Duration::from_secs(60))
        .expect("the summary is printed");
    served.kill();
    let exports: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .collect();
    for name in [
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_SUBSCRIPTION_ID",
        "AZURE_TENANT_ID",
        "KUBECONFIG",
        "REQUESTS_CA_BUNDLE",
        "SSL_CERT_FILE",
    ] {
        assert!(exports.contains_key(name), "export {name} in:\n{text}");
    }
    // A path with a space is one shell word.
    assert!(
        exports["KUBECONFIG"].starts_with('\'') && exports["KUBECONFIG"].ends_with("kubeconfig'"),
        "{text}"
    );
    assert!(
        text.contains("--upgrade-version VERSION") && !text.contains("--client-secret"),
        "the command names the missing flag and keeps the secret off the command line:\n{text}"
    );
}
