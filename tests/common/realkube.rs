//! Harness of the real-Kubernetes test tier.
//!
//! Starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (built by
//! `scripts/testbed/build.sh`, found through `AKSUP_TESTBED_BIN`) on loopback ports, once per test
//! binary, and gives tests a [`kube::Client`], a kubeconfig and helpers to create kwok nodes and
//! workloads.
//!
//! Include it from a test file with
//! `#[path = "common/realkube.rs"] mod realkube;` and call [`testbed()`]: it returns `None` (after
//! printing why) when the binaries are absent, so `cargo test` skips the tier.
//!
//! Teardown: every process runs under a small `sh` supervisor in its own process group that holds
//! the read end of a pipe whose write end belongs to this test process. When the test process
//! exits for any reason (tests passed, a test panicked, the binary was killed) the pipe closes and
//! the supervisor kills its whole process group; a janitor removes the working directory the same
//! way. A [`Testbed`] that is dropped (one not kept in the shared static) kills the process groups
//! at once in its `Drop`.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::future::Future;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

/// Environment variable naming the directory with the test bed binaries.
pub const BIN_ENV: &str = "AKSUP_TESTBED_BIN";
/// Binaries the harness needs in that directory.
pub const BINARIES: [&str; 6] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
];
/// The annotation kwok selects the nodes it manages by (`kwok --manage-nodes-with-annotation-selector`).
pub const KWOK_NODE_ANNOTATION: (&str, &str) = ("kwok.x-k8s.io/node", "fake");
/// A taint key the pods of [`pod_template`] tolerate: put it on a kwok node to keep other pods off.
pub const KWOK_TAINT_KEY: &str = "kwok.x-k8s.io/node";

/// Controllers the controller manager runs (all that drain, PDBs, node lifecycle and namespaces need).
pub const CONTROLLERS: &str = "deployment,replicaset,disruption,daemonset,podgc,serviceaccount,\
serviceaccount-token,namespace,garbagecollector,nodelifecycle,root-ca-cert-publisher";

static TESTBED: OnceLock<Option<std::result::Result<Testbed, String>>> = OnceLock::new();

/// The control plane shared by the tests of this test binary, started at the first call.
///
/// Returns `None`, after printing a visible skip message, when `AKSUP_TESTBED_BIN` is unset or
/// lacks a binary. Panics (failing the calling test) when the binaries are there but the control
/// plane does not come up: that is a broken test bed, not a reason to skip.
pub fn testbed() -> Option<&'static Testbed> {
    let state = TESTBED.get_or_init(|| {
        let bin_dir = match check_bin_dir(std::env::var_os(BIN_ENV).as_deref()) {
            Ok(dir) => dir,
            Err(why) => {
                // Written to the process's stderr, not through eprintln!, which the test
                // harness captures: the skip must be visible in a passing run.
                let _ = writeln!(std::io::stderr(), "SKIPPED: real Kubernetes tier: {why}");
                return None;
            }
        };
        // Started on a thread of its own with its own runtime: the caller may be inside a tokio
        // runtime (block_on there would panic), and nothing started here may depend on the
        // caller's runtime, which ends with the calling test.
        let started = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("tokio runtime: {e}"))?;
            rt.block_on(Testbed::start(bin_dir))
                .map_err(|e| format!("{e:#}"))
        })
        .join()
        .unwrap_or_else(|_| Err("the test bed start thread panicked".to_string()));
        Some(started)
    });
    match state {
        None => None,
        Some(Ok(tb)) => Some(tb),
        Some(Err(e)) => panic!("the real Kubernetes test bed did not start: {e}"),
    }
}

/// The bin directory named by `value` (the value of `AKSUP_TESTBED_BIN`) if it holds every
/// binary, else why not.
pub fn check_bin_dir(value: Option<&std::ffi::OsStr>) -> std::result::Result<PathBuf, String> {
    let dir = value.ok_or_else(|| {
        format!("{BIN_ENV} is not set; run scripts/testbed/build.sh and set {BIN_ENV} to the directory it prints")
    })?;
    let dir = PathBuf::from(dir);
    for b in BINARIES {
        if !dir.join(b).is_file() {
            return Err(format!(
                "{} is missing; run scripts/testbed/build.sh and set {BIN_ENV} to the directory it prints",
                dir.join(b).display()
            ));
        }
    }
    Ok(dir)
}

/// One process of the control plane, under its supervisor (see the module docs).
struct Proc {
    name: &'static str,
    child: Child,
    /// Write end of the supervisor's lifeline; dropping it also ends the process group.
    lifeline: Option<ChildStdin>,
    log: PathBuf,
    /// Written by the supervisor when the process ends by itself.
    exit_file: Option<PathBuf>,
}

impl Proc {
    fn spawn(name: &'static str, dir: &Path, bin: &Path, args: &[String]) -> Result<Proc> {
        let log = dir.join(format!("{name}.log"));
        let exit_file = dir.join(format!("{name}.exit"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let mut child = Command::new("sh")
            .arg("-c")
            // The background job gets /dev/null as stdin and writes its exit status to $0 when
            // it ends; `read` waits on the lifeline.
            .arg(r#"exit_file=$0; ( "$@"; echo "exit status $?" > "$exit_file" ) & read -r _; kill -KILL 0"#)
            .arg(&exit_file)
            .arg(bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let lifeline = child.stdin.take();
        Ok(Proc {
            name,
            child,
            lifeline,
            log,
            exit_file: Some(exit_file),
        })
    }

    /// The last `n` lines of the process's log, for failure messages.
    fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log, n)
    }

    /// How the process ended, if it did.
    fn exited(&self) -> Option<String> {
        let file = self.exit_file.as_ref()?;
        fs::read_to_string(file).ok().map(|s| s.trim().to_string())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        drop(self.lifeline.take());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

fn log_tail(path: &Path, n: usize) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A free TCP port on 127.0.0.1 (asked from the kernel; a tiny race with other programs remains).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running control plane.
pub struct Testbed {
    /// Where the binaries are.
    pub bin_dir: PathBuf,
    /// `https://127.0.0.1:<port>`
    pub server: String,
    /// Working directory: certificates, kubeconfig, etcd data, one `<component>.log` per process.
    pub dir: PathBuf,
    /// A kubeconfig for the admin user (also used by the controller manager, scheduler and kwok).
    pub kubeconfig: PathBuf,
    /// A kubeconfig for a second user (`aksup-other`), e.g. for contention tests.
    pub kubeconfig_other: PathBuf,
    ca_pem: String,
    tokens: BTreeMap<&'static str, String>,
    procs: Mutex<Vec<Proc>>,
    janitor: Option<Proc>,
    _tmp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Testbed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Testbed")
            .field("server", &self.server)
            .field("dir", &self.dir)
            .field("tokens", &"<redacted>")
            .finish()
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        // the reverse of the start order
        if let Ok(mut procs) = self.procs.lock() {
            while let Some(p) = procs.pop() {
                drop(p);
            }
        }
    }
}

impl Testbed {
    /// Starts a control plane from the binaries in `bin_dir` in a new temporary directory and
    /// waits until it serves: etcd, the API server (`/readyz`), the controller manager, the
    /// scheduler and kwok.
    pub async fn start(bin_dir: PathBuf) -> Result<Testbed> {
        let t0 = Instant::now();
        let tmp = tempfile::Builder::new()
            .prefix("aksup-testbed-")
            .tempdir()?;
        let dir = tmp.path().to_path_buf();
        let mut tokens = BTreeMap::new();
        for user in ["aksup-admin", "aksup-other"] {
            let mut bytes = [0u8; 24];
            aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow!("no system randomness"))?;
            let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            tokens.insert(user, token);
        }

        // Certificates: a CA, the API server's serving certificate and the service-account keys.
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "aksup test bed CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;
        let serving_key = rcgen::KeyPair::generate()?;
        let mut serving_params = rcgen::CertificateParams::new(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
            "10.0.0.1".to_string(),
            "kubernetes".to_string(),
            "kubernetes.default.svc".to_string(),
        ])?;
        serving_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kube-apiserver");
        serving_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let serving = serving_params.signed_by(&serving_key, &ca)?;
        let sa_key = rcgen::KeyPair::generate()?;
        let ca_pem = ca.pem();
        let write = |name: &str, content: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            fs::write(&p, content).with_context(|| format!("writing {}", p.display()))?;
            Ok(p)
        };
        let ca_file = write("ca.crt", &ca_pem)?;
        let serving_crt = write("apiserver.crt", &serving.pem())?;
        let serving_keyf = write("apiserver.key", &serving_key.serialize_pem())?;
        let sa_pub = write("sa.pub", &sa_key.public_key_pem())?;
        let sa_priv = write("sa.key", &sa_key.serialize_pem())?;
        let token_file = write(
            "tokens.csv",
            &tokens
                .iter()
                .enumerate()
                .map(|(i, (user, tok))| format!("{tok},{user},uid-{i},\"system:masters\"\n"))
                .collect::<String>(),
        )?;

        let etcd_port = free_port()?;
        let etcd_peer_port = free_port()?;
        let api_port = free_port()?;
        let kcm_port = free_port()?;
        let sched_port = free_port()?;
        let kwok_port = free_port()?;
        let server = format!("https://127.0.0.1:{api_port}");

        let kubeconfig = write(
            "admin.kubeconfig",
            &kubeconfig_yaml(&server, &ca_pem, "aksup-admin", &tokens["aksup-admin"]),
        )?;
        let kubeconfig_other = write(
            "other.kubeconfig",
            &kubeconfig_yaml(&server, &ca_pem, "aksup-other", &tokens["aksup-other"]),
        )?;

        // The janitor removes the working directory once this process is gone (see module docs).
        let mut janitor = Command::new("sh")
            .arg("-c")
            .arg(r#"read -r _; sleep 3; rm -rf "$0""#)
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting the janitor")?;
        let janitor = Proc {
            name: "janitor",
            lifeline: janitor.stdin.take(),
            child: janitor,
            log: dir.join("janitor.log"),
            exit_file: None,
        };

        let mut tb = Testbed {
            bin_dir: bin_dir.clone(),
            server: server.clone(),
            dir: dir.clone(),
            kubeconfig: kubeconfig.clone(),
            kubeconfig_other,
            ca_pem,
            tokens,
            procs: Mutex::new(Vec::new()),
            janitor: Some(janitor),
            _tmp: None,
        };
        let p = |s: &Path| s.display().to_string();

        // etcd
        let etcd_data = dir.join("etcd-data");
        // Without frequent watch progress notifications, the API server's watch cache of a
        // quiet resource lags behind (etcd's default interval is 10 minutes) and reads at a
        // recent resourceVersion wait for it. etcd 3.4 only has the experimental flag name.
        let etcd_help = Command::new(bin_dir.join("etcd"))
            .arg("--help")
            .output()
            .map(|o| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .unwrap_or_default();
        let progress_flag = if etcd_help.contains("\n  --watch-progress-notify-interval") {
            "--watch-progress-notify-interval=1s"
        } else {
            "--experimental-watch-progress-notify-interval=1s"
        };
        tb.spawn(
            "etcd",
            &[
                format!("--data-dir={}", p(&etcd_data)),
                "--name=testbed".into(),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
                format!("--initial-cluster=testbed=http://127.0.0.1:{etcd_peer_port}"),
                "--quota-backend-bytes=1073741824".into(),
                "--log-level=warn".into(),
                progress_flag.into(),
            ],
        )?;
        tb.wait_tcp("etcd", etcd_port, Duration::from_secs(30))
            .await?;

        // kube-apiserver
        tb.spawn(
            "kube-apiserver",
            &[
                format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={api_port}"),
                format!("--cert-dir={}", p(&dir.join("apiserver-certs"))),
                format!("--tls-cert-file={}", p(&serving_crt)),
                format!("--tls-private-key-file={}", p(&serving_keyf)),
                format!("--token-auth-file={}", p(&token_file)),
                "--authorization-mode=RBAC".into(),
                "--anonymous-auth=false".into(),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-account-key-file={}", p(&sa_pub)),
                format!("--service-account-signing-key-file={}", p(&sa_priv)),
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                "--endpoint-reconciler-type=none".into(),
                "--allow-privileged=true".into(),
                "--profiling=false".into(),
                "--v=1".into(),
            ],
        )?;
        tb.wait_ready(Duration::from_secs(120)).await?;

        let kc = format!("--kubeconfig={}", p(&kubeconfig));
        tb.spawn(
            "kube-controller-manager",
            &[
                kc.clone(),
                format!("--controllers={CONTROLLERS}"),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={kcm_port}"),
                "--use-service-account-credentials=false".into(),
                format!("--service-account-private-key-file={}", p(&sa_priv)),
                format!("--root-ca-file={}", p(&ca_file)),
                // quick reactions keep the tests short
                "--node-monitor-period=2s".into(),
                "--node-monitor-grace-period=50s".into(),
                "--concurrent-deployment-syncs=5".into(),
                "--profiling=false".into(),
                "--v=1".into(),
            ],
        )?;
        tb.spawn(
            "kube-scheduler",
            &[
                kc.clone(),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={sched_port}"),
                "--profiling=false".into(),
                "--v=1".into(),
            ],
        )?;
        tb.spawn(
            "kwok",
            &[
                kc,
                "--manage-all-nodes=false".into(),
                format!(
                    "--manage-nodes-with-annotation-selector={}={}",
                    KWOK_NODE_ANNOTATION.0, KWOK_NODE_ANNOTATION.1
                ),
                "--cidr=10.244.0.1/16".into(),
                "--node-ip=10.0.1.1".into(),
                format!("--server-address=127.0.0.1:{kwok_port}"),
            ],
        )?;
        tb.wait_tcp("kube-controller-manager", kcm_port, Duration::from_secs(60))
            .await?;
        tb.wait_tcp("kube-scheduler", sched_port, Duration::from_secs(60))
            .await?;
        tb.wait_tcp("kwok", kwok_port, Duration::from_secs(60))
            .await?;
        // The service-account controller runs: "default" exists in "default".
        let client = tb.client()?;
        let sas: Api<ServiceAccount> = Api::namespaced(client, "default");
        tb.wait_for_ok(
            "the default service account (controller manager)",
            Duration::from_secs(60),
            || {
                let sas = sas.clone();
                async move { Ok(sas.get_opt("default").await?.map(|_| ())) }
            },
        )
        .await?;
        tb._tmp = Some(tmp);
        eprintln!(
            "real Kubernetes test bed up at {server} in {:.1}s (dir {})",
            t0.elapsed().as_secs_f64(),
            dir.display()
        );
        Ok(tb)
    }

    fn spawn(&self, name: &'static str, args: &[String]) -> Result<()> {
        let proc = Proc::spawn(name, &self.dir, &self.bin_dir.join(name), args)?;
        self.procs
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .push(proc);
        Ok(())
    }

    /// The last `n` lines of every component's log, for failure messages.
    pub fn logs(&self, n: usize) -> String {
        let procs = match self.procs.lock() {
            Ok(p) => p,
            Err(p) => p.into_inner(),
        };
        procs
            .iter()
            .map(|p| format!("--- {} ({}):\n{}", p.name, p.log.display(), p.log_tail(n)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn check_alive(&self) -> Result<()> {
        let procs = self.procs.lock().map_err(|_| anyhow!("poisoned"))?;
        for p in procs.iter() {
            if let Some(how) = p.exited() {
                bail!(
                    "{} exited ({how}); its log ends with:\n{}",
                    p.name,
                    p.log_tail(30)
                );
            }
        }
        Ok(())
    }

    async fn wait_tcp(&self, what: &str, port: u16, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "{what} did not listen on 127.0.0.1:{port} within {timeout:?}:\n{}",
                    self.logs(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let client = self.client()?;
        let deadline = Instant::now() + timeout;
        loop {
            let req = http::Request::get("/readyz").body(Vec::new())?;
            let last = match client.request_text(req).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) => body,
                Err(e) => e.to_string(),
            };
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "kube-apiserver /readyz not ok within {timeout:?} (last answer: {last}):\n{}",
                    self.logs(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// A kube config for the admin user (`system:masters`).
    pub fn config(&self) -> Result<kube::Config> {
        self.config_for("aksup-admin")
    }

    /// A kube config for `user`: `aksup-admin` or `aksup-other` (both in `system:masters`).
    /// It keeps kube 5's `default_retry = true`, which retries 429/503/504 answers for minutes:
    /// set it to `false` to see a PDB-blocked eviction's 429.
    pub fn config_for(&self, user: &str) -> Result<kube::Config> {
        let token = self
            .tokens
            .get(user)
            .ok_or_else(|| anyhow!("no test bed user {user}"))?;
        let mut cfg = kube::Config::new(self.server.parse()?);
        let ca = rustls_pemfile::certs(&mut self.ca_pem.as_bytes())
            .map(|c| c.map(|c| c.to_vec()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        cfg.root_cert = Some(ca);
        cfg.auth_info.token = Some(token.clone().into());
        cfg.read_timeout = Some(Duration::from_secs(60));
        Ok(cfg)
    }

    /// A new client for the admin user. Create one per test: a client belongs to the tokio
    /// runtime it is first used on.
    pub fn client(&self) -> Result<kube::Client> {
        Ok(kube::Client::try_from(self.config()?)?)
    }

    /// A new client for `user` (see [`Testbed::config_for`]).
    pub fn client_for(&self, user: &str) -> Result<kube::Client> {
        Ok(kube::Client::try_from(self.config_for(user)?)?)
    }

    /// The CA certificate (PEM) that signed the API server's serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// `kubectl` (the test bed's own build) pointed at this control plane.
    pub fn kubectl(&self) -> Command {
        let mut c = Command::new(self.bin_dir.join("kubectl"));
        c.arg(format!("--kubeconfig={}", self.kubeconfig.display()));
        c
    }

    /// Polls `f` every 250 ms until it returns `Ok(Some(_))`; fails after `timeout` (adding the
    /// components' logs) or at the first `Err`.
    pub async fn wait_for_ok<T, F, Fut>(&self, what: &str, timeout: Duration, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f().await? {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {what}\n{}",
                    self.logs(15)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Creates a namespace and waits for its `default` service account (pods need it).
    pub async fn create_namespace(&self, client: &kube::Client, name: &str) -> Result<Namespace> {
        let nss: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
        let ns = nss.create(&PostParams::default(), &ns).await?;
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
        self.wait_for_ok(
            &format!("service account default in {name}"),
            Duration::from_secs(60),
            || {
                let sas = sas.clone();
                async move { Ok(sas.get_opt("default").await?.map(|_| ())) }
            },
        )
        .await?;
        Ok(ns)
    }

    /// Creates a Node that kwok manages (kwok makes it Ready and runs the pods bound to it).
    /// The node is also labelled `kubernetes.io/hostname=<name>` and `type=kwok`; `taints` are
    /// added as given (pass none to let every pod schedule there).
    pub async fn create_kwok_node(&self, client: &kube::Client, spec: &KwokNode) -> Result<Node> {
        let nodes: Api<Node> = Api::all(client.clone());
        let mut labels: BTreeMap<String, String> = spec.labels.clone();
        labels.insert("kubernetes.io/hostname".into(), spec.name.clone());
        labels.insert("kubernetes.io/os".into(), "linux".into());
        labels.insert("type".into(), "kwok".into());
        let taints: Vec<serde_json::Value> = spec
            .taints
            .iter()
            .map(|(k, v, e)| json!({"key": k, "value": v, "effect": e}))
            .collect();
        let node: Node = serde_json::from_value(json!({
            "metadata": {
                "name": spec.name,
                "labels": labels,
                "annotations": {KWOK_NODE_ANNOTATION.0: KWOK_NODE_ANNOTATION.1},
            },
            "spec": {"taints": taints, "unschedulable": spec.unschedulable},
            "status": {
                "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                "nodeInfo": {
                    "kubeletVersion": spec.kubelet_version,
                    "kubeProxyVersion": spec.kubelet_version,
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                },
            },
        }))?;
        Ok(nodes.create(&PostParams::default(), &node).await?)
    }

    /// Makes kwok let go of a node (removes the annotation it selects nodes by): the node's
    /// heartbeats stop and the node lifecycle controller marks it NotReady (`Ready=Unknown`,
    /// taint `node.kubernetes.io/unreachable`) after its grace period (50 s) — what happens
    /// to the Node of a VM that was deleted.
    pub async fn release_kwok_node(&self, client: &kube::Client, name: &str) -> Result<Node> {
        let nodes: Api<Node> = Api::all(client.clone());
        let patch = json!({"metadata": {"annotations": {KWOK_NODE_ANNOTATION.0: null}}});
        Ok(nodes
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(patch),
            )
            .await?)
    }

    /// Waits until the node's Ready condition is True and returns the node.
    pub async fn wait_node_ready(
        &self,
        client: &kube::Client,
        name: &str,
        timeout: Duration,
    ) -> Result<Node> {
        let nodes: Api<Node> = Api::all(client.clone());
        self.wait_for_ok(&format!("node {name} Ready"), timeout, || {
            let nodes = nodes.clone();
            async move {
                let node = nodes.get(name).await?;
                Ok(node_ready(&node).then_some(node))
            }
        })
        .await
    }

    /// Creates a Deployment of `replicas` pods (label `app=<name>`) that tolerate the kwok taint
    /// and select nodes by `node_selector`.
    pub async fn create_deployment(
        &self,
        client: &kube::Client,
        ns: &str,
        name: &str,
        replicas: i32,
        node_selector: &BTreeMap<String, String>,
    ) -> Result<Deployment> {
        let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": pod_template(name, node_selector),
            },
        }))?;
        Ok(api.create(&PostParams::default(), &d).await?)
    }

    /// Creates a DaemonSet (label `app=<name>`) that tolerates the kwok taint and selects nodes
    /// by `node_selector`.
    pub async fn create_daemonset(
        &self,
        client: &kube::Client,
        ns: &str,
        name: &str,
        node_selector: &BTreeMap<String, String>,
    ) -> Result<DaemonSet> {
        let api: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
        let d: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "selector": {"matchLabels": {"app": name}},
                "template": pod_template(name, node_selector),
            },
        }))?;
        Ok(api.create(&PostParams::default(), &d).await?)
    }

    /// Waits until `count` pods matching `selector` in `ns` are Running (and Ready), returns them
    /// sorted by name.
    pub async fn wait_pods_running(
        &self,
        client: &kube::Client,
        ns: &str,
        selector: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<Pod>> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        self.wait_for_ok(
            &format!("{count} running pods {selector} in {ns}"),
            timeout,
            || {
                let pods = pods.clone();
                async move {
                    let list = pods
                        .list(&kube::api::ListParams::default().labels(selector))
                        .await?;
                    let mut running: Vec<Pod> = list
                        .items
                        .into_iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none() && pod_running_ready(p))
                        .collect();
                    running.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
                    Ok((running.len() == count).then_some(running))
                }
            },
        )
        .await
    }

    /// Deletes a namespace (fire and forget; the namespace controller finishes it).
    pub async fn delete_namespace(&self, client: &kube::Client, name: &str) -> Result<()> {
        let nss: Api<Namespace> = Api::all(client.clone());
        nss.delete(name, &DeleteParams::background()).await?;
        Ok(())
    }
}

/// What [`Testbed::create_kwok_node`] creates.
#[derive(Debug, Clone)]
pub struct KwokNode {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// (key, value, effect)
    pub taints: Vec<(String, String, String)>,
    pub unschedulable: bool,
    pub kubelet_version: String,
}

impl KwokNode {
    /// A schedulable, untainted node reporting kubelet `v1.35.4`.
    pub fn new(name: &str) -> KwokNode {
        KwokNode {
            name: name.to_string(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            unschedulable: false,
            kubelet_version: "v1.35.4".to_string(),
        }
    }

    pub fn label(mut self, k: &str, v: &str) -> KwokNode {
        self.labels.insert(k.to_string(), v.to_string());
        self
    }
}

/// A pod template (label `app=<app>`) tolerating every taint kwok nodes may carry.
pub fn pod_template(app: &str, node_selector: &BTreeMap<String, String>) -> serde_json::Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {
            "nodeSelector": node_selector,
            "tolerations": [{"key": KWOK_TAINT_KEY, "operator": "Exists"}],
            "terminationGracePeriodSeconds": 30,
            "containers": [{"name": "main", "image": "registry.invalid/aksup-test:1"}],
        },
    })
}

pub fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn pod_running_ready(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .as_ref()
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn kubeconfig_yaml(server: &str, ca_pem: &str, user: &str, token: &str) -> String {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: testbed\n  cluster:\n    server: {server}\n    \
         certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    token: {token}\n\
         contexts:\n- name: testbed\n  context:\n    cluster: testbed\n    user: {user}\n\
         current-context: testbed\n"
    )
}
