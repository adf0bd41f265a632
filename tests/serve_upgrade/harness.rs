//! Real processes for the serve-and-upgrade tests: `aksup simulator serve` as
//! a child that outlives its clients, and `aksup upgrade` runs against it
//! that can be SIGKILLed at a chosen JSON event. Every child is killed when
//! its guard drops, so a failing assertion never leaves processes behind.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const APIMODEL: &str = "testdata/apimodels/three-masters-two-pools.json";
pub const TARGET: &str = "1.34.4";
/// Virtual seconds per real second for the served simulator.
pub const TIME_SCALE: &str = "1000";
/// The longest an uninterrupted upgrade may take before the test fails.
pub const RUN_LIMIT: Duration = Duration::from_secs(240);

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The aksup binary with no Azure or Kubernetes variables from the caller.
pub fn aksup() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_aksup"));
    for var in [
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "AZURE_SUBSCRIPTION_ID",
        "KUBECONFIG",
        "SSL_CERT_FILE",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command.env("NO_COLOR", "1").env("AKSUP_NO_PROGRESS", "1");
    command
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Guard(pub Child);

impl Guard {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// SIGKILL now and reap.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

/// Lines of a child's pipe, read on a thread.
fn lines(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    receive
}

/// Everything a pipe says, read on a thread.
fn all(mut pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        let _ = send.send(text);
    });
    receive
}

/// `aksup simulator serve` running in its own state dir.
pub struct Served {
    process: Guard,
    /// The printed `-o json` summary.
    pub endpoints: Value,
    /// Holds the state dir; dropped after the process (field order).
    _dir: tempfile::TempDir,
}

impl Served {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let stderr = std::fs::File::create(dir.path().join("simulator.stderr")).expect("a file");
        let mut child = aksup()
            .args(["simulator", "serve", "--api-model"])
            .arg(repo(APIMODEL))
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["--time-scale", TIME_SCALE, "-o", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("aksup simulator serve starts");
        let stdout = child.stdout.take().expect("a stdout pipe");
        let process = Guard(child);
        let first = lines(stdout).recv_timeout(Duration::from_secs(60));
        let endpoints = match first {
            Ok(line) => serde_json::from_str(&line).unwrap_or_else(|err| {
                panic!("the simulator's first line is not JSON ({err}): {line}")
            }),
            Err(err) => panic!(
                "the simulator printed no summary ({err}); stderr:\n{}",
                std::fs::read_to_string(dir.path().join("simulator.stderr")).unwrap_or_default()
            ),
        };
        Self {
            process,
            endpoints,
            _dir: dir,
        }
    }

    /// A string field of the printed summary.
    pub fn field(&self, name: &str) -> String {
        self.endpoints[name]
            .as_str()
            .unwrap_or_else(|| panic!("the summary has no string {name}: {}", self.endpoints))
            .to_owned()
    }

    pub fn api_model_copy(&self) -> PathBuf {
        PathBuf::from(self.field("apiModelFile"))
    }

    /// True while the simulator process lives.
    pub fn alive(&mut self) -> bool {
        matches!(self.process.0.try_wait(), Ok(None))
    }

    /// `GET /_sim/state`: the whole world.
    pub fn state(&self) -> Value {
        let url = format!("{}_sim/state", self.field("armUrl"));
        let ca = self.field("caPem");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let client = reqwest::Client::builder()
                .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).expect("a PEM CA")])
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client");
            let response = client.get(&url).send().await.expect("GET /_sim/state");
            assert!(
                response.status().is_success(),
                "{url}: {}",
                response.status()
            );
            response.json::<Value>().await.expect("the state is JSON")
        })
    }

    /// The `aksup upgrade` command a user would type from the printed summary
    /// (the secret in `AZURE_CLIENT_SECRET`).
    pub fn upgrade_command(&self) -> Command {
        let mut command = aksup();
        command
            .arg("upgrade")
            .arg("--api-model")
            .arg(self.api_model_copy())
            .args(["-g", &self.field("resourceGroup")])
            .args(["-l", &self.field("location")])
            .args(["-s", &self.field("subscriptionId")])
            .args(["--client-id", &self.field("clientId")])
            .arg("--ca-file")
            .arg(self.field("caFile"))
            .args(["--azure-env", "AzureStackCloud", "-k", TARGET])
            .args(["--allow-unreplicated-pods", "-o", "json"])
            .env("AZURE_CLIENT_SECRET", self.field("clientSecret"))
            .stdin(Stdio::null());
        command
    }
}

/// How one `aksup upgrade` run ended.
#[derive(Debug)]
pub struct Run {
    pub pid: u32,
    /// `None` when the test killed it.
    pub status: Option<ExitStatus>,
    /// Every stdout line, parsed (each must be one JSON event).
    pub events: Vec<Value>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    pub fn last(&self, kind: &str) -> Option<&Value> {
        self.events.iter().rev().find(|e| e["event"] == kind)
    }

    pub fn count(&self, kind: &str) -> usize {
        self.events.iter().filter(|e| e["event"] == kind).count()
    }

    /// stdout and stderr, for messages.
    pub fn transcript(&self) -> String {
        let events: Vec<String> = self.events.iter().map(Value::to_string).collect();
        format!(
            "pid {} status {:?} after {:?}\n--- events\n{}\n--- stderr\n{}",
            self.pid,
            self.status,
            self.elapsed,
            events.join("\n"),
            self.stderr
        )
    }
}

/// Runs `command` until it exits, or SIGKILLs it right after the first JSON
/// event on which `kill_at` is true. Fails the test (killing the child) if it
/// takes longer than `limit` or prints a line that is not a JSON object.
pub fn run(mut command: Command, kill_at: Option<&dyn Fn(&Value) -> bool>, limit: Duration) -> Run {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("aksup upgrade starts");
    let stdout = lines(child.stdout.take().expect("a stdout pipe"));
    let stderr = all(child.stderr.take().expect("a stderr pipe"));
    let mut process = Guard(child);
    let pid = process.pid();
    let mut events = Vec::new();
    let mut killed = false;
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match stdout.recv_timeout(left) {
            Ok(line) => {
                let event: Value = match serde_json::from_str(&line) {
                    Ok(event @ Value::Object(_)) => event,
                    _ => panic!("aksup upgrade printed a line that is not a JSON event: {line}"),
                };
                let stop = kill_at.is_some_and(|at| at(&event));
                events.push(event);
                if stop {
                    process.kill();
                    killed = true;
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                process.kill();
                let stderr = stderr
                    .recv_timeout(Duration::from_secs(5))
                    .unwrap_or_default();
                panic!(
                    "aksup upgrade did not finish within {limit:?}; events so far:\n{}\n--- stderr\n{stderr}",
                    events
                        .iter()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
        }
    }
    let status = if killed {
        None
    } else {
        // stdout closed: the process is exiting.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match process.0.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => panic!("aksup upgrade closed stdout but did not exit"),
            }
        }
    };
    let stderr = stderr
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_default();
    Run {
        pid,
        status,
        events,
        stderr,
        elapsed: started.elapsed(),
    }
}

/// What must be the same after an uninterrupted run and a killed-and-resumed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndState {
    /// VM name (pool and index) → tags.
    pub vms: BTreeMap<String, BTreeMap<String, String>>,
    /// VM name → attached data disks (lun, name).
    pub data_disks: BTreeMap<String, Vec<(u64, String)>>,
    /// Node name → (kubelet version, Ready, unschedulable).
    pub nodes: BTreeMap<String, (String, bool, bool)>,
    /// etcd disk name → (the VM it is attached to, its incarnation: the
    /// simulator's creation counter, so a recreated disk would differ).
    pub etcd_disks: BTreeMap<String, (String, u64)>,
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

impl EndState {
    pub fn of(state: &Value) -> Self {
        let arm = &state["arm"];
        let mut vms = BTreeMap::new();
        let mut data_disks = BTreeMap::new();
        for (name, vm) in arm["virtualMachines"].as_object().expect("virtualMachines") {
            let tags = vm["tags"]
                .as_object()
                .map(|tags| tags.iter().map(|(k, v)| (k.clone(), text(v))).collect())
                .unwrap_or_default();
            vms.insert(name.clone(), tags);
            let disks = vm["dataDisks"]
                .as_array()
                .map(|disks| {
                    disks
                        .iter()
                        .map(|d| (d["lun"].as_u64().unwrap_or(u64::MAX), text(&d["name"])))
                        .collect()
                })
                .unwrap_or_default();
            data_disks.insert(name.clone(), disks);
        }
        let etcd_disks = etcd_disks(state)
            .into_iter()
            .map(|(name, disk)| {
                (
                    name,
                    (
                        text(&disk["managedBy"]),
                        disk["incarnation"].as_u64().unwrap_or(0),
                    ),
                )
            })
            .collect();
        let mut nodes = BTreeMap::new();
        for node in state["kubernetes"]["nodes"].as_array().expect("nodes") {
            let ready = node["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            nodes.insert(
                text(&node["metadata"]["name"]),
                (
                    text(&node["status"]["nodeInfo"]["kubeletVersion"]),
                    ready,
                    node["spec"]["unschedulable"].as_bool().unwrap_or(false),
                ),
            );
        }
        Self {
            vms,
            data_disks,
            nodes,
            etcd_disks,
        }
    }
}

/// The etcd data disks of the world, by name.
pub fn etcd_disks(state: &Value) -> BTreeMap<String, Value> {
    state["arm"]["disks"]
        .as_object()
        .expect("disks")
        .values()
        .filter(|disk| text(&disk["name"]).ends_with("-etcddisk"))
        .map(|disk| (text(&disk["name"]), disk.clone()))
        .collect()
}

/// Names of the resources the simulator ran a delete operation on.
pub fn deleted(state: &Value, kind: &str) -> Vec<String> {
    state["arm"]["operations"]
        .as_object()
        .expect("operations")
        .values()
        .filter(|op| op["kind"] == kind)
        .map(|op| text(&op["resource"]))
        .collect()
}

/// The upgrade lock's lease, if any.
pub fn lock_lease(state: &Value) -> Option<Value> {
    state["kubernetes"]["leases.coordination.k8s.io"]
        .as_array()?
        .iter()
        .find(|lease| lease["metadata"]["name"] == "aksup-upgrade-lock")
        .cloned()
}

/// Real time until the lease's holder would count as gone (renewTime +
/// leaseDurationSeconds, as the lock code judges it), if it is still held.
pub fn lease_left(lease: &Value) -> Option<Duration> {
    use k8s_openapi::jiff::{SignedDuration, Timestamp};
    let spec = &lease["spec"];
    spec["holderIdentity"].as_str().filter(|h| !h.is_empty())?;
    let renewed: Timestamp = spec["renewTime"]
        .as_str()
        .or(spec["acquireTime"].as_str())?
        .parse()
        .ok()?;
    let expiry = renewed.checked_add(SignedDuration::from_secs(
        spec["leaseDurationSeconds"].as_i64().unwrap_or(0),
    ));
    let left = expiry.ok()?.duration_since(Timestamp::now());
    Duration::try_from(left).ok()
}
