//! Shared test support: the simulated Kubernetes API served over TLS on
//! loopback with a throwaway CA, plus kube-rs and kubectl configurations.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use aksup::sim::clock::Clock;
use aksup::sim::kube::{KubeSim, KubeSimOptions, NodeRegistration, NodeRole, Scenario};
use k8s_openapi::api::core::v1::Taint;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
use serde_json::Value;

pub const TOKEN: &str = "sim-test-token-0123456789";

pub struct Cluster {
    pub sim: KubeSim,
    pub url: String,
    pub ca_der: Vec<u8>,
    pub dir: tempfile::TempDir,
    pub kubeconfig: std::path::PathBuf,
    handle: axum_server::Handle<SocketAddr>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

/// Serves a fresh simulator at `scale` × real time over TLS.
pub async fn serve(scale: f64, options: KubeSimOptions) -> Cluster {
    let mut options = options;
    options.bearer_tokens = vec![TOKEN.to_string()];
    let sim = KubeSim::new(Clock::new(scale), options);
    serve_sim(sim).await
}

pub async fn serve_sim(sim: KubeSim) -> Cluster {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "simkube test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let mut server_params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    server_params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    server_params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    let server_cert = server_params.signed_by(&server_key, &ca).unwrap();

    let config = axum_server::tls_rustls::RustlsConfig::from_pem(
        server_cert.pem().into_bytes(),
        server_key.serialize_pem().into_bytes(),
    )
    .await
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(listener, config)
        .unwrap()
        .handle(handle.clone());
    let router = sim.router();
    tokio::spawn(async move {
        let _ = server.serve(router.into_make_service()).await;
    });

    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.crt");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let url = format!("https://127.0.0.1:{}", addr.port());
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: {url}\n    certificate-authority: {}\nusers:\n- name: admin\n  user:\n    token: {TOKEN}\ncontexts:\n- name: sim\n  context:\n    cluster: sim\n    user: admin\ncurrent-context: sim\n",
            ca_path.display()
        ),
    )
    .unwrap();
    Cluster {
        sim,
        url,
        ca_der: ca.der().to_vec(),
        dir,
        kubeconfig,
        handle,
    }
}

impl Cluster {
    /// A kube-rs client with the CA and the token.
    pub fn client(&self) -> kube::Client {
        self.client_with_token(TOKEN)
    }

    pub fn client_with_token(&self, token: &str) -> kube::Client {
        let mut config = kube::Config::new(self.url.parse().unwrap());
        config.root_cert = Some(vec![self.ca_der.clone()]);
        config.auth_info.token = Some(token.to_string().into());
        config.read_timeout = Some(Duration::from_secs(20));
        // kube 5 retries 429/503 up to 15 times with backoff by default; the
        // tests want to see those answers.
        config.default_retry = false;
        kube::Client::try_from(config).unwrap()
    }

    /// Registers a master and `agents` agents (Ready) and applies `scenario`.
    pub fn seed(&self, agents: usize, scenario: &Scenario) {
        self.sim.register_node(master("k8s-master-12345678-0"));
        self.sim.set_node_ready("k8s-master-12345678-0", true);
        for i in 0..agents {
            let name = format!("k8s-agentpool-12345678-{i}");
            self.sim.register_node(agent(&name, i));
            self.sim.set_node_ready(&name, true);
        }
        self.sim.apply_scenario(scenario).unwrap();
    }

    pub fn pods(&self) -> Vec<Value> {
        self.sim.objects("pods")
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<Value> {
        self.pods()
            .into_iter()
            .find(|p| p["metadata"]["namespace"] == namespace && p["metadata"]["name"] == name)
    }

    /// Waits (bounded) until every pod is Running and Ready.
    pub async fn settle(&self) {
        wait_for(
            "all pods Running and Ready",
            Duration::from_secs(30),
            || {
                let pods = self.pods();
                !pods.is_empty()
                    && pods.iter().all(|p| {
                        p["status"]["phase"] == "Running"
                            && p["metadata"].get("deletionTimestamp").is_none()
                            && p["status"]["conditions"].as_array().is_some_and(|cs| {
                                cs.iter()
                                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
                            })
                    })
            },
        )
        .await;
    }
}

pub fn master(name: &str) -> NodeRegistration {
    let labels: BTreeMap<String, String> = [
        ("kubernetes.azure.com/role", "master"),
        ("kubernetes.io/role", "master"),
        ("node-role.kubernetes.io/master", ""),
        ("agentpool", "master"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    NodeRegistration {
        name: name.to_string(),
        kubelet_version: "v1.24.17".to_string(),
        role: NodeRole::Master,
        os: "linux".to_string(),
        labels,
        taints: vec![Taint {
            key: "node-role.kubernetes.io/master".to_string(),
            value: Some("true".to_string()),
            effect: "NoSchedule".to_string(),
            time_added: None,
        }],
        pool: "master".to_string(),
        vm_size: "Standard_D2_v2".to_string(),
        internal_ip: "10.240.255.5".to_string(),
    }
}

pub fn agent(name: &str, index: usize) -> NodeRegistration {
    let labels: BTreeMap<String, String> = [
        ("kubernetes.azure.com/role", "agent"),
        ("kubernetes.io/role", "agent"),
        ("node-role.kubernetes.io/agent", ""),
        ("agentpool", "agentpool"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    NodeRegistration {
        name: name.to_string(),
        kubelet_version: "v1.24.17".to_string(),
        role: NodeRole::Agent,
        os: "linux".to_string(),
        labels,
        taints: Vec::new(),
        pool: "agentpool".to_string(),
        vm_size: "Standard_D2_v2".to_string(),
        internal_ip: format!("10.240.0.{}", 4 + index),
    }
}

/// Polls `check` every 20 ms until it holds; panics after `limit`.
pub async fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
