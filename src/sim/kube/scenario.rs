//! The workload scenario: what runs on the simulated cluster.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Error, Result};

/// A workload of the scenario (Deployment, StatefulSet, DaemonSet or bare pod).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub name: String,
    /// Pod labels (and the owner's selector); default `{"app": <name>}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Replicas (Deployments and StatefulSets only); default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Gives the pod an emptyDir volume (kubectl drain then needs `--delete-emptydir-data`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_dir: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Kubernetes tolerations, as in a pod spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<k8s_openapi::api::core::v1::Toleration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
}

/// A PodDisruptionBudget of the scenario.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Budget {
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub name: String,
    /// matchLabels of the budget's selector.
    pub selector: BTreeMap<String, String>,
    /// An integer or a percentage string ("50%").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<Value>,
    /// "IfHealthyBudget" (default) or "AlwaysAllow".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_pod_eviction_policy: Option<String>,
}

/// The workloads to create on the cluster. JSON; see docs/simulator.md (Kubernetes API).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployments: Vec<Workload>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stateful_sets: Vec<Workload>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub daemon_sets: Vec<Workload>,
    /// Bare pods without an owner, scheduled once and never recreated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<Workload>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pod_disruption_budgets: Vec<Budget>,
}

fn default_namespace() -> String {
    "default".to_string()
}

const DEFAULT_SCENARIO: &str = r#"{
  "namespaces": ["shop"],
  "daemonSets": [
    {"namespace": "kube-system", "name": "kube-proxy", "labels": {"component": "kube-proxy", "tier": "node"},
     "image": "mcr.microsoft.com/oss/kubernetes/kube-proxy:v1.24.17",
     "nodeSelector": {"kubernetes.io/os": "linux"}, "tolerations": [{"operator": "Exists"}]},
    {"namespace": "kube-system", "name": "azure-ip-masq-agent", "labels": {"k8s-app": "azure-ip-masq-agent"},
     "image": "mcr.microsoft.com/oss/kubernetes/ip-masq-agent:v2.5.0",
     "nodeSelector": {"kubernetes.io/os": "linux"}, "tolerations": [{"operator": "Exists"}]}
  ],
  "deployments": [
    {"namespace": "kube-system", "name": "coredns", "replicas": 2, "labels": {"k8s-app": "kube-dns"},
     "image": "mcr.microsoft.com/oss/kubernetes/coredns:1.9.4", "nodeSelector": {"kubernetes.io/os": "linux"}},
    {"namespace": "kube-system", "name": "metrics-server", "replicas": 1, "labels": {"k8s-app": "metrics-server"},
     "image": "mcr.microsoft.com/oss/kubernetes/metrics-server:v0.5.2", "nodeSelector": {"kubernetes.io/os": "linux"},
     "emptyDir": true},
    {"namespace": "shop", "name": "web", "replicas": 3, "nodeSelector": {"kubernetes.io/os": "linux"}},
    {"namespace": "shop", "name": "api", "replicas": 2, "nodeSelector": {"kubernetes.io/os": "linux"}},
    {"namespace": "shop", "name": "cache", "replicas": 1, "emptyDir": true, "nodeSelector": {"kubernetes.io/os": "linux"}}
  ],
  "pods": [
    {"namespace": "shop", "name": "debug-shell", "nodeSelector": {"kubernetes.io/os": "linux"},
     "image": "mcr.microsoft.com/cbl-mariner/busybox:2.0"}
  ],
  "podDisruptionBudgets": [
    {"namespace": "shop", "name": "web", "selector": {"app": "web"}, "minAvailable": 2},
    {"namespace": "shop", "name": "api", "selector": {"app": "api"}, "maxUnavailable": 1}
  ]
}"#;

impl Scenario {
    /// Parses and validates a scenario.
    pub fn from_json(text: &str) -> Result<Self> {
        let scenario: Scenario = serde_json::from_str(text).map_err(Error::ScenarioParse)?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// The documented default scenario.
    pub fn default_scenario() -> Self {
        Self::from_json(DEFAULT_SCENARIO).unwrap_or_default()
    }

    /// Checks names, replica counts and budgets.
    pub fn validate(&self) -> Result<()> {
        let invalid = |what: String| Err(Error::InvalidScenario(what));
        for ns in &self.namespaces {
            if !is_dns_label(ns) {
                return invalid(format!("namespace {ns:?} is not a valid DNS label"));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (kind, list) in [
            ("deployment", &self.deployments),
            ("statefulSet", &self.stateful_sets),
            ("daemonSet", &self.daemon_sets),
            ("pod", &self.pods),
        ] {
            for w in list {
                if !is_dns_label(&w.namespace) || !is_dns_label(&w.name) {
                    return invalid(format!(
                        "{kind} {}/{}: namespace and name must be lowercase DNS labels",
                        w.namespace, w.name
                    ));
                }
                if !seen.insert((kind, w.namespace.clone(), w.name.clone())) {
                    return invalid(format!(
                        "{kind} {}/{} is declared twice",
                        w.namespace, w.name
                    ));
                }
                if w.replicas.is_some() && matches!(kind, "daemonSet" | "pod") {
                    return invalid(format!(
                        "{kind} {}/{}: replicas only applies to deployments and statefulSets",
                        w.namespace, w.name
                    ));
                }
            }
        }
        for b in &self.pod_disruption_budgets {
            if !is_dns_label(&b.namespace) || !is_dns_label(&b.name) {
                return invalid(format!(
                    "podDisruptionBudget {}/{}: namespace and name must be lowercase DNS labels",
                    b.namespace, b.name
                ));
            }
            let value = match (&b.min_available, &b.max_unavailable) {
                (Some(v), None) | (None, Some(v)) => v,
                _ => {
                    return invalid(format!(
                        "podDisruptionBudget {}/{}: set exactly one of minAvailable and maxUnavailable",
                        b.namespace, b.name
                    ));
                }
            };
            if super::pdb::scaled(value, 100).is_err() || value.as_i64().is_some_and(|v| v < 0) {
                return invalid(format!(
                    "podDisruptionBudget {}/{}: {value} is neither a non-negative integer nor a percentage like \"50%\"",
                    b.namespace, b.name
                ));
            }
            if let Some(policy) = &b.unhealthy_pod_eviction_policy
                && policy != "IfHealthyBudget"
                && policy != "AlwaysAllow"
            {
                return invalid(format!(
                    "podDisruptionBudget {}/{}: unhealthyPodEvictionPolicy must be IfHealthyBudget or AlwaysAllow",
                    b.namespace, b.name
                ));
            }
        }
        Ok(())
    }

    /// Every namespace the scenario uses, sorted.
    pub fn all_namespaces(&self) -> Vec<String> {
        let mut out: std::collections::BTreeSet<String> = self.namespaces.iter().cloned().collect();
        for w in self
            .deployments
            .iter()
            .chain(&self.stateful_sets)
            .chain(&self.daemon_sets)
            .chain(&self.pods)
        {
            out.insert(w.namespace.clone());
        }
        for b in &self.pod_disruption_budgets {
            out.insert(b.namespace.clone());
        }
        out.into_iter().collect()
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl Workload {
    pub fn pod_labels(&self) -> BTreeMap<String, String> {
        if self.labels.is_empty() {
            [("app".to_string(), self.name.clone())]
                .into_iter()
                .collect()
        } else {
            self.labels.clone()
        }
    }

    /// The pod template (metadata + spec) of this workload.
    pub fn template(&self) -> Value {
        let image = self
            .image
            .clone()
            .unwrap_or_else(|| "mcr.microsoft.com/oss/nginx/nginx:1.21.6".to_string());
        let mut container = json!({"name": self.name, "image": image, "imagePullPolicy": "IfNotPresent",
                                   "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"});
        let mut spec = json!({
            "containers": [],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": self.termination_grace_period_seconds.unwrap_or(30),
            "dnsPolicy": "ClusterFirst",
            "schedulerName": "default-scheduler",
            "serviceAccountName": "default",
            "securityContext": {}
        });
        if self.empty_dir {
            container["volumeMounts"] = json!([{"name": "scratch", "mountPath": "/scratch"}]);
            spec["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
        }
        spec["containers"] = json!([container]);
        if !self.node_selector.is_empty() {
            spec["nodeSelector"] = json!(self.node_selector);
        }
        if !self.tolerations.is_empty() {
            spec["tolerations"] = serde_json::to_value(&self.tolerations).unwrap_or(json!([]));
        }
        json!({"metadata": {"labels": self.pod_labels()}, "spec": spec})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_scenario_parses_and_has_every_required_workload() {
        let s = Scenario::default_scenario();
        assert!(s.deployments.iter().any(|d| d.replicas.unwrap_or(1) > 1));
        assert!(s.deployments.iter().any(|d| d.empty_dir));
        assert!(!s.pods.is_empty());
        assert!(!s.daemon_sets.is_empty());
        assert!(
            s.pod_disruption_budgets
                .iter()
                .any(|b| b.min_available.is_some())
        );
        assert!(
            s.pod_disruption_budgets
                .iter()
                .any(|b| b.max_unavailable.is_some())
        );
        assert_eq!(s.all_namespaces(), vec!["kube-system", "shop"]);
    }

    #[test]
    fn invalid_scenarios_are_refused_with_a_reason() {
        let err = Scenario::from_json(r#"{"deployments": [{"name": "Web"}]}"#).unwrap_err();
        assert!(err.to_string().contains("lowercase DNS labels"), "{err}");
        let err = Scenario::from_json(
            r#"{"podDisruptionBudgets": [{"name": "b", "selector": {}, "minAvailable": 1, "maxUnavailable": 1}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("exactly one"), "{err}");
        let err = Scenario::from_json(
            r#"{"podDisruptionBudgets": [{"name": "b", "selector": {}, "minAvailable": "lots"}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("percentage"), "{err}");
        let err = Scenario::from_json(r#"{"deployment": []}"#).unwrap_err();
        let source = std::error::Error::source(&err)
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(source.contains("unknown field"), "{source}");
        let err =
            Scenario::from_json(r#"{"daemonSets": [{"name": "d", "replicas": 2}]}"#).unwrap_err();
        assert!(err.to_string().contains("replicas only applies"), "{err}");
    }

    #[test]
    fn templates_carry_empty_dir_selectors_and_tolerations() {
        let s = Scenario::from_json(
            r#"{"deployments": [{"name": "c", "emptyDir": true, "nodeSelector": {"kubernetes.io/os": "linux"},
                "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}]}]}"#,
        )
        .unwrap();
        let t = s.deployments[0].template();
        assert_eq!(t["spec"]["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(t["spec"]["nodeSelector"]["kubernetes.io/os"], "linux");
        assert_eq!(t["spec"]["tolerations"][0]["key"], "k");
        assert_eq!(t["metadata"]["labels"]["app"], "c");
    }
}
