//! Faults: what the simulated stamp does wrong, on purpose.
//!
//! A fault file is `{"faults": [ <fault>, … ]}` (a bare array is accepted too);
//! `/_sim/faults` takes the same objects. Every fault has a `kind`; see
//! `docs/simulator.md` for each kind's fields.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One fault rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Fault {
    /// ARM answers 429 with `Retry-After`: every `everyNth` matching request, or
    /// once more than `budget` matching requests arrived in a window of
    /// `windowSeconds` (virtual seconds).
    Throttle {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        every_nth: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        budget: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        window_seconds: Option<u64>,
        /// Real seconds to send in `Retry-After`; default 1 for `everyNth`, the
        /// rest of the window for a budget.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_seconds: Option<u64>,
        #[serde(flatten)]
        matcher: RequestMatcher,
    },
    /// ARM answers `status` (500 or 503) to every `everyNth` matching request
    /// (default: every one, so use `times` to bound it).
    Transient {
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        every_nth: Option<u64>,
        #[serde(flatten)]
        matcher: RequestMatcher,
    },
    /// The deployment named `deployment` (case-insensitive; a trailing `*`
    /// matches a prefix) creates its resources, then fails: its VMs end in
    /// provisioning state `Failed` and the deployment carries a nested
    /// `DeploymentFailed` error whose innermost detail is `code`/`message`.
    DeploymentFails {
        deployment: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// A VM of this name (case-insensitive; trailing `*` = prefix) created by a
    /// deployment stays in provisioning state `Creating`, and its deployment stays `Running`.
    VmStuckCreating { vm: String },
    /// The node of this name (or of the VM of this name) registers but never becomes Ready.
    NodeNeverReady { node: String },
    /// Evictions of pods in `namespace` whose name starts with `podPrefix` are
    /// refused forever (passed to the Kubernetes side at start).
    EvictionBlocked {
        namespace: String,
        pod_prefix: String,
    },
    /// The Kubernetes API is unreachable whenever no master VM is running with a
    /// Ready node — what a single-master cluster does while its master is replaced.
    KubeUnreachableWithoutMaster {},
    /// Long-running operations take `factor` times longer; `operation` limits it
    /// to one of `vmCreate`, `vmDelete`, `nicDelete`, `diskDelete`, `deployment`, `boot`.
    SlowOperations {
        factor: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operation: Option<String>,
    },
}

/// Which ARM requests a throttle or transient fault applies to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestMatcher {
    /// HTTP method (`GET`, `PUT`, …); any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Case-insensitive substring of the path; any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_contains: Option<String>,
}

impl RequestMatcher {
    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.to_ascii_lowercase().contains(&p.to_ascii_lowercase()))
    }
}

/// A fault as installed: the rule, how often it may still fire, and counters.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultEntry {
    pub id: u64,
    #[serde(flatten)]
    pub fault: Fault,
    /// How many more times the fault fires; unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
    /// Requests (or events) the fault looked at.
    #[serde(default)]
    pub seen: u64,
    /// Times it fired.
    #[serde(default)]
    pub fired: u64,
    #[serde(skip)]
    window: Option<(Duration, u64)>,
}

/// The wire form of one fault: the rule plus an optional `times`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultSpec {
    #[serde(flatten)]
    pub fault: Fault,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
}

/// Errors of reading fault definitions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the fault file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid fault definition: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("invalid fault: {0}")]
    Invalid(String),
}

impl FaultSpec {
    /// Parses `{"faults":[…]}`, `[…]` or a single fault object.
    pub fn parse_list(text: &str) -> Result<Vec<FaultSpec>, Error> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        let list = match value {
            serde_json::Value::Object(mut map) if map.contains_key("faults") => {
                map.remove("faults").unwrap_or_default()
            }
            serde_json::Value::Array(_) => value,
            other => serde_json::Value::Array(vec![other]),
        };
        let specs: Vec<FaultSpec> = serde_json::from_value(list)?;
        for spec in &specs {
            spec.check()?;
        }
        Ok(specs)
    }

    pub fn check(&self) -> Result<(), Error> {
        match &self.fault {
            Fault::Throttle {
                every_nth, budget, ..
            } => {
                if every_nth.is_none() == budget.is_none() {
                    return Err(Error::Invalid(
                        "a throttle fault has exactly one of everyNth and budget".into(),
                    ));
                }
                if *every_nth == Some(0) {
                    return Err(Error::Invalid("everyNth must be at least 1".into()));
                }
            }
            Fault::Transient {
                status, every_nth, ..
            } => {
                if !(500..600).contains(status) {
                    return Err(Error::Invalid(format!(
                        "a transient fault answers 5xx, not {status}"
                    )));
                }
                if *every_nth == Some(0) {
                    return Err(Error::Invalid("everyNth must be at least 1".into()));
                }
            }
            Fault::SlowOperations { factor, operation } => {
                if !factor.is_finite() || *factor <= 0.0 {
                    return Err(Error::Invalid(
                        "slowOperations.factor must be a positive number".into(),
                    ));
                }
                if let Some(op) = operation
                    && ![
                        "vmCreate",
                        "vmDelete",
                        "nicDelete",
                        "diskDelete",
                        "deployment",
                        "boot",
                    ]
                    .contains(&op.as_str())
                {
                    return Err(Error::Invalid(format!("unknown operation {op}")));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// What a request-level fault decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestFault {
    Throttle { retry_after: u64 },
    Transient { status: u16 },
}

/// The installed faults.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Faults {
    entries: Vec<FaultEntry>,
    #[serde(skip)]
    next_id: u64,
}

/// Case-insensitive name match; a trailing `*` matches a prefix.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let name = name.to_ascii_lowercase();
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

impl Faults {
    pub fn add(&mut self, spec: FaultSpec) -> u64 {
        self.next_id += 1;
        self.entries.push(FaultEntry {
            id: self.next_id,
            fault: spec.fault,
            times: spec.times,
            seen: 0,
            fired: 0,
            window: None,
        });
        self.next_id
    }

    pub fn remove(&mut self, id: u64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|entry| entry.id != id);
        before != self.entries.len()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn entries(&self) -> &[FaultEntry] {
        &self.entries
    }

    /// Decides whether an ARM request fails (first firing fault wins).
    /// `now` is the virtual time elapsed; `scale` the clock's.
    pub fn on_request(
        &mut self,
        method: &str,
        path: &str,
        now: Duration,
        scale: f64,
    ) -> Option<RequestFault> {
        for entry in &mut self.entries {
            if entry.times == Some(0) {
                continue;
            }
            let decision = match &entry.fault {
                Fault::Throttle {
                    every_nth,
                    budget,
                    window_seconds,
                    retry_after_seconds,
                    matcher,
                } if matcher.matches(method, path) => {
                    entry.seen += 1;
                    if let Some(n) = every_nth {
                        (entry.seen % n == 0).then(|| RequestFault::Throttle {
                            retry_after: retry_after_seconds.unwrap_or(1),
                        })
                    } else {
                        let window = Duration::from_secs(window_seconds.unwrap_or(60).max(1));
                        let (start, count) = match entry.window {
                            Some((start, count)) if now < start + window => (start, count + 1),
                            _ => (now, 1),
                        };
                        entry.window = Some((start, count));
                        (count > budget.unwrap_or(0)).then(|| {
                            let rest = (start + window).saturating_sub(now).div_f64(scale);
                            RequestFault::Throttle {
                                retry_after: retry_after_seconds
                                    .unwrap_or_else(|| rest.as_secs_f64().ceil().max(1.0) as u64),
                            }
                        })
                    }
                }
                Fault::Transient {
                    status,
                    every_nth,
                    matcher,
                } if matcher.matches(method, path) => {
                    entry.seen += 1;
                    (entry.seen % every_nth.unwrap_or(1) == 0)
                        .then_some(RequestFault::Transient { status: *status })
                }
                _ => None,
            };
            if let Some(decision) = decision {
                entry.fired += 1;
                if let Some(times) = entry.times.as_mut() {
                    *times -= 1;
                }
                return Some(decision);
            }
        }
        None
    }

    /// Fires the first armed fault that `select` picks, returning its rule.
    fn fire(&mut self, select: impl Fn(&Fault) -> bool) -> Option<Fault> {
        for entry in &mut self.entries {
            if entry.times == Some(0) || !select(&entry.fault) {
                continue;
            }
            entry.seen += 1;
            entry.fired += 1;
            if let Some(times) = entry.times.as_mut() {
                *times -= 1;
            }
            return Some(entry.fault.clone());
        }
        None
    }

    /// The failure a deployment of this name must end with, if any (nested code and message).
    pub fn deployment_failure(
        &mut self,
        deployment: &str,
    ) -> Option<(Option<String>, Option<String>)> {
        match self.fire(|f| matches!(f, Fault::DeploymentFails { deployment: d, .. } if name_matches(d, deployment)))? {
            Fault::DeploymentFails { code, message, .. } => Some((code, message)),
            _ => None,
        }
    }

    pub fn vm_stuck_creating(&mut self, vm: &str) -> bool {
        self.fire(|f| matches!(f, Fault::VmStuckCreating { vm: v } if name_matches(v, vm)))
            .is_some()
    }

    pub fn node_never_ready(&mut self, node: &str, vm: &str) -> bool {
        self.fire(|f| matches!(f, Fault::NodeNeverReady { node: n } if name_matches(n, node) || name_matches(n, vm)))
            .is_some()
    }

    pub fn kube_unreachable_without_master(&self) -> bool {
        self.entries.iter().any(|e| {
            matches!(e.fault, Fault::KubeUnreachableWithoutMaster {}) && e.times != Some(0)
        })
    }

    /// Evictions to block: (namespace, pod name prefix).
    pub fn blocked_evictions(&self) -> Vec<(String, String)> {
        self.entries
            .iter()
            .filter_map(|e| match &e.fault {
                Fault::EvictionBlocked {
                    namespace,
                    pod_prefix,
                } => Some((namespace.clone(), pod_prefix.clone())),
                _ => None,
            })
            .collect()
    }

    /// The product of the slow-operation factors that apply to `operation`.
    pub fn slowdown(&self, operation: &str) -> f64 {
        self.entries
            .iter()
            .filter_map(|e| match &e.fault {
                Fault::SlowOperations {
                    factor,
                    operation: only,
                } if only
                    .as_deref()
                    .is_none_or(|o| o.eq_ignore_ascii_case(operation)) =>
                {
                    Some(*factor)
                }
                _ => None,
            })
            .product()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults(text: &str) -> Faults {
        let mut faults = Faults::default();
        for spec in FaultSpec::parse_list(text).unwrap() {
            faults.add(spec);
        }
        faults
    }

    #[test]
    fn every_nth_throttles_matching_requests() {
        let mut f =
            faults(r#"[{"kind":"throttle","everyNth":3,"method":"GET","retryAfterSeconds":2}]"#);
        let now = Duration::ZERO;
        let results: Vec<_> = (0..6)
            .map(|_| f.on_request("GET", "/x", now, 1.0))
            .collect();
        assert_eq!(results[2], Some(RequestFault::Throttle { retry_after: 2 }));
        assert_eq!(results.iter().filter(|r| r.is_some()).count(), 2);
        assert_eq!(f.on_request("PUT", "/x", now, 1.0), None);
    }

    #[test]
    fn a_budget_resets_with_its_window() {
        let mut f = faults(r#"{"faults":[{"kind":"throttle","budget":2,"windowSeconds":60}]}"#);
        assert!(
            f.on_request("GET", "/a", Duration::from_secs(0), 10.0)
                .is_none()
        );
        assert!(
            f.on_request("GET", "/a", Duration::from_secs(1), 10.0)
                .is_none()
        );
        assert_eq!(
            f.on_request("GET", "/a", Duration::from_secs(10), 10.0),
            Some(RequestFault::Throttle { retry_after: 5 })
        );
        assert!(
            f.on_request("GET", "/a", Duration::from_secs(61), 10.0)
                .is_none()
        );
    }

    #[test]
    fn times_bounds_a_fault() {
        let mut f = faults(
            r#"[{"kind":"transient","status":503,"times":2,"pathContains":"virtualmachines"}]"#,
        );
        let path = "/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/virtualMachines";
        assert!(f.on_request("GET", path, Duration::ZERO, 1.0).is_some());
        assert!(f.on_request("GET", "/other", Duration::ZERO, 1.0).is_none());
        assert!(f.on_request("GET", path, Duration::ZERO, 1.0).is_some());
        assert!(f.on_request("GET", path, Duration::ZERO, 1.0).is_none());
    }

    #[test]
    fn invalid_faults_are_refused() {
        assert!(FaultSpec::parse_list(r#"[{"kind":"throttle"}]"#).is_err());
        assert!(FaultSpec::parse_list(r#"[{"kind":"transient","status":404}]"#).is_err());
        assert!(FaultSpec::parse_list(r#"[{"kind":"nope"}]"#).is_err());
    }

    #[test]
    fn names_match_case_insensitively_with_prefixes() {
        assert!(name_matches("K8S-master-*", "k8s-master-12345678-0"));
        assert!(name_matches("upgrade-1", "UPGRADE-1"));
        assert!(!name_matches("upgrade-1", "upgrade-10"));
    }
}
