//! PodDisruptionBudget status (as the disruption controller computes it) and
//! the eviction decision (as the eviction subresource makes it).

use serde_json::{Value, json};

use super::selector::LabelSelector;
use super::store::{ApiError, str_at};

/// A pod counts as healthy when it is Ready and not being deleted.
pub fn pod_is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

pub fn is_terminating(object: &Value) -> bool {
    object
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// The pod's selector-matching PDBs (same namespace; an empty selector
/// matches every pod, as in policy/v1).
pub fn matching_pdbs<'a>(pod: &Value, pdbs: &[&'a Value]) -> Vec<&'a Value> {
    let namespace = str_at(pod, "/metadata/namespace");
    pdbs.iter()
        .copied()
        .filter(|pdb| str_at(pdb, "/metadata/namespace") == namespace)
        .filter(|pdb| {
            let selector = pdb.pointer("/spec/selector").cloned().unwrap_or(json!({}));
            LabelSelector::from_object(&selector).is_ok_and(|s| s.matches_object(pod))
        })
        .collect()
}

/// An int-or-percent value scaled against `total`, rounding up as the
/// disruption controller does.
pub fn scaled(value: &Value, total: i64) -> Result<i64, String> {
    let invalid = || {
        format!(
            "invalid value {value}: a non-negative integer or a percentage from 0% to 100% is expected"
        )
    };
    match value {
        Value::Number(n) => n.as_i64().filter(|v| *v >= 0).ok_or_else(invalid),
        Value::String(s) => match s.strip_suffix('%') {
            Some(p) => {
                let percent: i64 = p.trim().parse().map_err(|_| invalid())?;
                if !(0..=100).contains(&percent) {
                    return Err(invalid());
                }
                Ok((percent * total.clamp(0, i64::MAX / 200) + 99) / 100)
            }
            None => s
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|v| *v >= 0)
                .ok_or_else(invalid),
        },
        _ => Err(invalid()),
    }
}

fn is_percent(value: &Value) -> bool {
    value.as_str().is_some_and(|s| s.ends_with('%'))
}

/// Computes a PDB's `status` from the pods matching it. `scale_of(pod)`
/// returns the replica count of the pod's controller and a key identifying
/// it (None for a pod without a controller).
pub fn compute_status(
    pdb: &Value,
    pods: &[&Value],
    scale_of: &dyn Fn(&Value) -> Option<(String, i64)>,
    now: &str,
) -> Value {
    let generation = pdb
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let current_healthy = pods
        .iter()
        .filter(|p| !is_terminating(p) && pod_is_ready(p))
        .count() as i64;
    let min_available = pdb.pointer("/spec/minAvailable").filter(|v| !v.is_null());
    let max_unavailable = pdb.pointer("/spec/maxUnavailable").filter(|v| !v.is_null());

    let expected_scale = || -> Result<i64, String> {
        let mut controllers: std::collections::BTreeMap<String, i64> = Default::default();
        for pod in pods {
            match scale_of(pod) {
                Some((key, scale)) => {
                    controllers.insert(key, scale);
                }
                None => {
                    return Err(format!(
                        "found no controllers for pod \"{}\"",
                        str_at(pod, "/metadata/name")
                    ));
                }
            }
        }
        Ok(controllers.values().sum())
    };

    let computed: Result<(i64, i64), String> = (|| {
        if let Some(max) = max_unavailable {
            let expected = expected_scale()?;
            let max = scaled(max, expected)?;
            Ok((expected, expected.saturating_sub(max).max(0)))
        } else if let Some(min) = min_available {
            if is_percent(min) {
                let expected = expected_scale()?;
                Ok((expected, scaled(min, expected)?))
            } else {
                Ok((pods.len() as i64, scaled(min, 0)?))
            }
        } else {
            Ok((pods.len() as i64, 0))
        }
    })();

    let (expected, desired, error) = match computed {
        Ok((expected, desired)) => (expected, desired, None),
        Err(e) => (0, 0, Some(e)),
    };
    let mut allowed = current_healthy.saturating_sub(desired);
    if expected <= 0 || allowed <= 0 || error.is_some() {
        allowed = 0;
    }
    let condition = match &error {
        Some(message) => {
            json!({"type": "DisruptionAllowed", "status": "False", "reason": "SyncFailed",
                                "message": message, "observedGeneration": generation, "lastTransitionTime": now})
        }
        None if allowed > 0 => {
            json!({"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods",
                                      "message": "", "observedGeneration": generation, "lastTransitionTime": now})
        }
        None => {
            json!({"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods",
                       "message": "", "observedGeneration": generation, "lastTransitionTime": now})
        }
    };
    json!({
        "observedGeneration": generation,
        "disruptionsAllowed": allowed,
        "currentHealthy": if error.is_some() { 0 } else { current_healthy },
        "desiredHealthy": desired,
        "expectedPods": expected,
        "conditions": [condition]
    })
}

/// What the eviction subresource does with a pod.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Delete the pod (with the eviction's delete options).
    Delete,
    /// Refuse with this error.
    Refuse(ApiError),
}

/// The disruption-budget 429, shaped as the real server's.
pub fn budget_violation(cause: impl Into<String>) -> ApiError {
    ApiError::new(
        429,
        "TooManyRequests",
        "Cannot evict pod as it would violate the pod's disruption budget.",
    )
    .with_details(json!({"causes": [{"reason": "DisruptionBudget", "message": cause.into()}]}))
}

/// Decides an eviction of `pod` given the PDBs of its namespace (with
/// current status), following the real eviction REST handler.
pub fn decide(pod: &Value, pdbs: &[&Value]) -> Decision {
    // Pods that are already terminating, or not running, are deleted without
    // consulting budgets.
    if is_terminating(pod) {
        return Decision::Delete;
    }
    let phase = str_at(pod, "/status/phase");
    if matches!(phase, "Succeeded" | "Failed" | "Pending") {
        return Decision::Delete;
    }
    let matching = matching_pdbs(pod, pdbs);
    let pdb = match matching.as_slice() {
        [] => return Decision::Delete,
        [one] => *one,
        _ => {
            return Decision::Refuse(ApiError::new(
                500,
                "InternalError",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
    };
    let status = pdb.get("status").cloned().unwrap_or(json!({}));
    let number = |field: &str| status.get(field).and_then(Value::as_i64).unwrap_or(0);
    let generation = pdb
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    if number("observedGeneration") < generation {
        return Decision::Refuse(
            ApiError::new(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.")
                .with_details(json!({"causes": [{"reason": "DisruptionBudget",
                    "message": format!("The disruption budget {} is still being processed by the server.", str_at(pdb, "/metadata/name"))}]})),
        );
    }
    if !pod_is_ready(pod) {
        let policy = str_at(pdb, "/spec/unhealthyPodEvictionPolicy");
        if policy == "AlwaysAllow" || number("currentHealthy") >= number("desiredHealthy") {
            return Decision::Delete;
        }
    }
    let allowed = number("disruptionsAllowed");
    if allowed < 0 {
        return Decision::Refuse(ApiError::new(
            403,
            "Forbidden",
            "pdb disruptions allowed is negative",
        ));
    }
    if allowed == 0 {
        return Decision::Refuse(budget_violation(format!(
            "The disruption budget {} needs {} healthy pods and has {} currently",
            str_at(pdb, "/metadata/name"),
            number("desiredHealthy"),
            number("currentHealthy")
        )));
    }
    Decision::Delete
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ready: bool, owner: Option<&str>) -> Value {
        let mut p = json!({
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        });
        if let Some(o) = owner {
            p["metadata"]["ownerReferences"] =
                json!([{"kind": "ReplicaSet", "name": o, "uid": o, "controller": true}]);
        }
        p
    }

    fn pdb(spec: Value) -> Value {
        let mut spec = spec;
        spec["selector"] = json!({"matchLabels": {"app": "web"}});
        json!({"metadata": {"name": "web", "namespace": "default", "generation": 1}, "spec": spec})
    }

    fn scale3(p: &Value) -> Option<(String, i64)> {
        p.pointer("/metadata/ownerReferences/0/uid")
            .and_then(Value::as_str)
            .map(|u| (u.to_string(), 3))
    }

    fn status(spec: Value, pods: &[Value]) -> Value {
        let refs: Vec<&Value> = pods.iter().collect();
        compute_status(&pdb(spec), &refs, &scale3, "t")
    }

    fn summary(s: &Value) -> (i64, i64, i64, i64) {
        (
            s["currentHealthy"].as_i64().unwrap(),
            s["desiredHealthy"].as_i64().unwrap(),
            s["disruptionsAllowed"].as_i64().unwrap(),
            s["expectedPods"].as_i64().unwrap(),
        )
    }

    #[test]
    fn min_available_integer_counts_matching_pods() {
        let pods = [
            pod("a", true, Some("rs")),
            pod("b", true, Some("rs")),
            pod("c", true, Some("rs")),
        ];
        assert_eq!(
            summary(&status(json!({"minAvailable": 2}), &pods)),
            (3, 2, 1, 3)
        );
        let two = [pod("a", true, Some("rs")), pod("b", true, Some("rs"))];
        assert_eq!(
            summary(&status(json!({"minAvailable": 2}), &two)),
            (2, 2, 0, 2)
        );
    }

    #[test]
    fn percentages_and_max_unavailable_use_the_controller_scale() {
        // 2 of 3 replicas present and ready: 50% of 3 rounds up to 2.
        let pods = [pod("a", true, Some("rs")), pod("b", true, Some("rs"))];
        assert_eq!(
            summary(&status(json!({"minAvailable": "50%"}), &pods)),
            (2, 2, 0, 3)
        );
        assert_eq!(
            summary(&status(json!({"maxUnavailable": 1}), &pods)),
            (2, 2, 0, 3)
        );
        // 34% of 3 rounds up to 2 unavailable: desired 1.
        assert_eq!(
            summary(&status(json!({"maxUnavailable": "34%"}), &pods)),
            (2, 1, 1, 3)
        );
        let all = [
            pod("a", true, Some("rs")),
            pod("b", true, Some("rs")),
            pod("c", false, Some("rs")),
        ];
        assert_eq!(
            summary(&status(json!({"maxUnavailable": 1}), &all)),
            (2, 2, 0, 3)
        );
    }

    #[test]
    fn hostile_values_fail_the_sync_instead_of_overflowing() {
        let pods = [pod("a", true, Some("rs"))];
        for spec in [
            json!({"minAvailable": "900%"}),
            json!({"minAvailable": -5}),
            json!({"maxUnavailable": "-9223372036854775808"}),
        ] {
            let s = status(spec, &pods);
            assert_eq!(s["disruptionsAllowed"], 0);
            assert_eq!(s["conditions"][0]["reason"], "SyncFailed");
        }
        assert_eq!(scaled(&json!("50%"), 3), Ok(2));
        assert_eq!(scaled(&json!("3"), 0), Ok(3));
    }

    #[test]
    fn terminating_pods_are_not_healthy() {
        let mut gone = pod("c", true, Some("rs"));
        gone["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let pods = [pod("a", true, Some("rs")), pod("b", true, Some("rs")), gone];
        assert_eq!(
            summary(&status(json!({"minAvailable": 2}), &pods)),
            (2, 2, 0, 3)
        );
    }

    #[test]
    fn a_bare_pod_under_a_percentage_fails_the_sync_and_allows_nothing() {
        let pods = [pod("a", true, None)];
        let s = status(json!({"maxUnavailable": "50%"}), &pods);
        assert_eq!(s["disruptionsAllowed"], 0);
        assert_eq!(s["conditions"][0]["reason"], "SyncFailed");
        assert!(
            s["conditions"][0]["message"]
                .as_str()
                .unwrap()
                .contains("found no controllers for pod \"a\"")
        );
    }

    fn with_status(spec: Value, pods: &[Value]) -> Value {
        let mut p = pdb(spec.clone());
        p["status"] = status(spec, pods);
        p
    }

    #[test]
    fn eviction_is_refused_with_the_real_429_when_no_disruption_is_allowed() {
        let pods = [pod("a", true, Some("rs")), pod("b", true, Some("rs"))];
        let budget = with_status(json!({"minAvailable": 2}), &pods);
        let Decision::Refuse(err) = decide(&pods[0], &[&budget]) else {
            panic!("expected a refusal")
        };
        assert_eq!(err.code, 429);
        assert_eq!(
            err.status(),
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Cannot evict pod as it would violate the pod's disruption budget.",
                "reason": "TooManyRequests",
                "details": {"causes": [{"reason": "DisruptionBudget",
                    "message": "The disruption budget web needs 2 healthy pods and has 2 currently"}]},
                "code": 429
            })
        );
    }

    #[test]
    fn eviction_is_allowed_within_budget_and_for_pods_outside_it() {
        let pods = [
            pod("a", true, Some("rs")),
            pod("b", true, Some("rs")),
            pod("c", true, Some("rs")),
        ];
        let budget = with_status(json!({"minAvailable": 2}), &pods);
        assert_eq!(decide(&pods[0], &[&budget]), Decision::Delete);
        let mut other = pod("x", true, None);
        other["metadata"]["labels"] = json!({"app": "db"});
        let tight = with_status(json!({"minAvailable": 3}), &pods);
        assert_eq!(decide(&other, &[&tight]), Decision::Delete);
        let mut pending = pods[0].clone();
        pending["status"]["phase"] = json!("Pending");
        assert_eq!(decide(&pending, &[&tight]), Decision::Delete);
        let Decision::Refuse(err) = decide(&pods[0], &[&budget, &tight]) else {
            panic!()
        };
        assert_eq!(err.code, 500);
    }

    #[test]
    fn unhealthy_pods_follow_the_unhealthy_pod_eviction_policy() {
        let pods = [
            pod("a", true, Some("rs")),
            pod("b", true, Some("rs")),
            pod("c", false, Some("rs")),
        ];
        // Budget is met (2 healthy, 2 desired): an unready pod may go.
        let met = with_status(json!({"minAvailable": 2}), &pods);
        assert_eq!(decide(&pods[2], &[&met]), Decision::Delete);
        // Budget not met: IfHealthyBudget refuses, AlwaysAllow deletes.
        let unmet = with_status(json!({"minAvailable": 3}), &pods);
        assert!(matches!(decide(&pods[2], &[&unmet]), Decision::Refuse(_)));
        let always = with_status(
            json!({"minAvailable": 3, "unhealthyPodEvictionPolicy": "AlwaysAllow"}),
            &pods,
        );
        assert_eq!(decide(&pods[2], &[&always]), Decision::Delete);
    }
}
