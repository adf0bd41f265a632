//! Helpers of the simulator tier: a served simulator with a few agents and an
//! event recorder that can be read while an operation runs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aksup::kube::{NodeEvent, NodeEvents, NodeName};
use aksup::sim::kube::{KubeSimOptions, Scenario};

use super::support::{Cluster, agent, master, serve};

/// Virtual time runs this many times faster than real time.
pub const SCALE: f64 = 100.0;

pub fn agent_name(index: usize) -> NodeName {
    NodeName::new(format!("k8s-agentpool-12345678-{index}"))
}

/// A simulator with a master and `agents` Ready agents (all `v1.24.17`), a
/// kube-proxy DaemonSet on every node and `scenario` applied on top.
pub async fn cluster(agents: usize, scenario: &str) -> Cluster {
    let c = serve(SCALE, KubeSimOptions::default()).await;
    c.sim.register_node(master("k8s-master-12345678-0"));
    c.sim.set_node_ready("k8s-master-12345678-0", true);
    for i in 0..agents {
        let name = agent_name(i);
        c.sim.register_node(agent(name.as_str(), i));
        c.sim.set_node_ready(name.as_str(), true);
    }
    let proxy = Scenario::from_json(
        r#"{"daemonSets": [{"namespace": "kube-system", "name": "kube-proxy", "tolerations": [{"operator": "Exists"}]}]}"#,
    )
    .expect("scenario");
    c.sim.apply_scenario(&proxy).expect("kube-proxy");
    if !scenario.is_empty() {
        c.sim
            .apply_scenario(&Scenario::from_json(scenario).expect("scenario"))
            .expect("apply the scenario");
    }
    c
}

/// Records events; readable while the operation runs.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<NodeEvent>>>);

impl NodeEvents for Recorder {
    fn on_event(&self, event: NodeEvent) {
        self.0.lock().expect("recorder").push(event);
    }
}

impl Recorder {
    pub fn events(&self) -> Vec<NodeEvent> {
        self.0.lock().expect("recorder").clone()
    }

    /// Waits (bounded) until an event satisfies `test`; returns it.
    pub async fn wait_for(&self, what: &str, test: impl Fn(&NodeEvent) -> bool) -> NodeEvent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(event) = self.events().into_iter().find(|e| test(e)) {
                return event;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {what} event within 30 s: {:?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Pods of the simulator whose name starts with `prefix`: (name, node, ready, terminating).
pub fn pods_named(c: &Cluster, namespace: &str, prefix: &str) -> Vec<(String, String, bool, bool)> {
    c.pods()
        .into_iter()
        .filter(|p| p["metadata"]["namespace"] == namespace)
        .filter(|p| {
            p["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(prefix))
        })
        .map(|p| {
            let ready = p["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                ready,
                p["metadata"].get("deletionTimestamp").is_some(),
            )
        })
        .collect()
}

/// A client built the way aksup builds it: from the simulator's kubeconfig
/// through `aksup::kube::connect` (kube-rs' own 429/503 retries off).
pub async fn client(c: &Cluster) -> kube::Client {
    let access = aksup::kube::ClusterAccess::Kubeconfig {
        path: Some(c.kubeconfig.clone()),
        context: None,
    };
    aksup::kube::connect(&access, None)
        .await
        .expect("connect through the kubeconfig")
}
