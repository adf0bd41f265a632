//! The controllers, run in virtual time: scheduler, kubelet pod lifecycle,
//! node lifecycle, ReplicaSet / Deployment / StatefulSet / DaemonSet owners,
//! disruption (PDB status) and pod garbage collection.
//!
//! They are level-triggered: `World::reconcile` looks at the whole world and
//! does what is due at the current virtual time. Requests run it before they
//! are answered, and a background loop runs it when the next timer is due.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::node;
use super::pdb::{self, is_terminating, pod_is_ready};
use super::resources::{self, Resource};
use super::scenario::Workload;
use super::selector::LabelSelector;
use super::store::{ApiError, format_time, metadata_mut, str_at};
use super::{Error, NodeRegistration, NodeRole, Result, Scenario, World, ensure_namespace, names};

fn pods() -> &'static Resource {
    resources::get("pods")
}
fn nodes() -> &'static Resource {
    resources::get("nodes")
}

/// The controlling owner reference of an object, if any.
pub fn controller_of(object: &Value) -> Option<&Value> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|refs| refs.iter().find(|r| r["controller"] == json!(true)))
}

pub fn is_mirror_pod(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations/kubernetes.io~1config.mirror")
        .is_some()
}

fn is_daemon_pod(pod: &Value) -> bool {
    controller_of(pod).is_some_and(|r| r["kind"] == "DaemonSet")
}

fn is_active(pod: &Value) -> bool {
    !is_terminating(pod) && !matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed")
}

/// Whether `tolerations` tolerate `taint`.
pub fn tolerates(tolerations: &[Value], taint: &Value) -> bool {
    tolerations.iter().any(|t| {
        let key = str_at(t, "/key");
        let operator = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
        let effect = str_at(t, "/effect");
        if !effect.is_empty() && effect != str_at(taint, "/effect") {
            return false;
        }
        if key.is_empty() {
            return operator == "Exists";
        }
        if key != str_at(taint, "/key") {
            return false;
        }
        operator == "Exists" || str_at(t, "/value") == str_at(taint, "/value")
    })
}

fn tolerations_of(pod_spec: &Value) -> Vec<Value> {
    pod_spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn node_selector_matches(pod_spec: &Value, node: &Value) -> bool {
    let labels = super::selector::labels_of(node);
    pod_spec
        .get("nodeSelector")
        .and_then(Value::as_object)
        .is_none_or(|sel| {
            sel.iter()
                .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
        })
}

/// Whether the taints with `effects` are all tolerated.
fn taints_tolerated(tolerations: &[Value], node: &Value, effects: &[&str]) -> bool {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .map(|taints| {
            taints
                .iter()
                .filter(|t| effects.contains(&str_at(t, "/effect")))
                .all(|t| tolerates(tolerations, t))
        })
        .unwrap_or(true)
}

/// The tolerations the DaemonSet controller adds to its pods.
fn daemon_tolerations(spec: &Value) -> Vec<Value> {
    let mut out = tolerations_of(spec);
    let mut add = |key: &str, effect: &str| {
        let t = json!({"key": key, "operator": "Exists", "effect": effect});
        if !out.contains(&t) {
            out.push(t);
        }
    };
    add("node.kubernetes.io/not-ready", "NoExecute");
    add("node.kubernetes.io/unreachable", "NoExecute");
    add("node.kubernetes.io/disk-pressure", "NoSchedule");
    add("node.kubernetes.io/memory-pressure", "NoSchedule");
    add("node.kubernetes.io/pid-pressure", "NoSchedule");
    add("node.kubernetes.io/unschedulable", "NoSchedule");
    if spec.get("hostNetwork") == Some(&json!(true)) {
        add("node.kubernetes.io/network-unavailable", "NoSchedule");
    }
    out
}

/// Whether a DaemonSet with pod `spec` runs on `node`.
pub fn daemon_should_run(spec: &Value, node: &Value) -> bool {
    node_selector_matches(spec, node)
        && taints_tolerated(
            &daemon_tolerations(spec),
            node,
            &["NoSchedule", "NoExecute"],
        )
}

/// Whether the scheduler may place a pod with `spec` on `node`.
pub fn schedulable_on(spec: &Value, node: &Value, lost: bool) -> bool {
    if lost || node::readiness(node) != Some(true) {
        return false;
    }
    let tolerations = tolerations_of(spec);
    if node.pointer("/spec/unschedulable") == Some(&json!(true))
        && !tolerates(
            &tolerations,
            &json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}),
        )
    {
        return false;
    }
    node_selector_matches(spec, node)
        && taints_tolerated(&tolerations, node, &["NoSchedule", "NoExecute"])
}

fn condition(kind: &str, status: bool, now: &str) -> Value {
    json!({"type": kind, "status": if status { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": now})
}

fn owner_ref(owner: &Value, kind: &str, api_version: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "name": str_at(owner, "/metadata/name"),
        "uid": str_at(owner, "/metadata/uid"),
        "controller": true,
        "blockOwnerDeletion": true
    })
}

/// Keeps the transition times of conditions whose status did not change.
fn keep_condition_times(old: Option<&Value>, new: &mut Value) {
    let (Some(old), Some(new)) = (old.and_then(Value::as_array), new.as_array_mut()) else {
        return;
    };
    for c in new.iter_mut() {
        if let Some(o) = old.iter().find(|o| {
            o["type"] == c["type"] && o["status"] == c["status"] && o["reason"] == c["reason"]
        }) {
            for field in ["lastTransitionTime", "lastUpdateTime", "lastHeartbeatTime"] {
                if let Some(v) = o.get(field) {
                    c[field] = v.clone();
                }
            }
        }
    }
}

impl World {
    /// Runs the controllers until the world is settled for the current time.
    pub fn reconcile(&mut self) {
        for _ in 0..10 {
            let before = self.store.resource_version();
            self.reconcile_once();
            if self.store.resource_version() == before {
                break;
            }
        }
    }

    fn reconcile_once(&mut self) {
        let now = self.now();
        self.finish_terminations(now);
        self.evict_from_lost_nodes(now);
        self.replica_sets(now);
        self.stateful_sets(now);
        self.daemon_sets(now);
        self.schedule(now);
        self.start_pods(now);
        self.update_workload_status();
        self.update_budgets();
    }

    /// The next virtual time something is due.
    pub fn next_due(&self) -> Option<SystemTime> {
        let delay = self.options.recreate_delay;
        let lost = self.options.lost_pod_eviction_delay;
        self.terminations
            .values()
            .chain(self.starts.values())
            .copied()
            .chain(self.shortfalls.values().map(|t| *t + delay))
            .chain(
                self.lost_nodes
                    .iter()
                    .filter(|(n, _)| !self.lost_handled.contains(*n))
                    .map(|(_, t)| *t + lost),
            )
            .min()
    }

    fn pod_by_uid(&self, uid: &str) -> Option<Value> {
        self.store
            .list(pods(), None)
            .into_iter()
            .find(|p| str_at(p, "/metadata/uid") == uid)
            .cloned()
    }

    fn finish_terminations(&mut self, now: SystemTime) {
        let due: Vec<String> = self
            .terminations
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in due {
            self.terminations.remove(&uid);
            if let Some(pod) = self.pod_by_uid(&uid) {
                let (ns, name) = super::store::key_of(&pod);
                self.store.delete(pods(), &ns, &name);
            }
        }
    }

    fn evict_from_lost_nodes(&mut self, now: SystemTime) {
        let due: Vec<String> = self
            .lost_nodes
            .iter()
            .filter(|(n, t)| {
                !self.lost_handled.contains(*n) && **t + self.options.lost_pod_eviction_delay <= now
            })
            .map(|(n, _)| n.clone())
            .collect();
        for node_name in due {
            self.lost_handled.insert(node_name.clone());
            let victims: Vec<Value> = self
                .store
                .list(pods(), None)
                .into_iter()
                .filter(|p| str_at(p, "/spec/nodeName") == node_name)
                .filter(|p| !is_terminating(p) && !is_daemon_pod(p) && !is_mirror_pod(p))
                .cloned()
                .collect();
            for pod in victims {
                let grace = pod
                    .pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(30);
                let _ = self.mark_terminating(pod, grace, now);
            }
        }
    }

    /// Sets deletionTimestamp; the kubelet (if alive) finishes after `grace`.
    fn mark_terminating(
        &mut self,
        mut pod: Value,
        grace: i64,
        now: SystemTime,
    ) -> Result<Value, ApiError> {
        // Ten years at most: enough for any grace period, and no time overflow.
        let grace = grace.clamp(0, 315_360_000);
        let uid = str_at(&pod, "/metadata/uid").to_string();
        let at = now + Duration::from_secs(grace as u64);
        let meta = metadata_mut(&mut pod);
        meta.insert("deletionTimestamp".into(), json!(format_time(at)));
        meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
        set_ready(&mut pod, false, &format_time(now));
        let node_name = str_at(&pod, "/spec/nodeName").to_string();
        if !self.lost_nodes.contains_key(&node_name) {
            self.terminations.insert(uid.clone(), at);
        }
        self.starts.remove(&uid);
        self.store.replace(pods(), pod)
    }

    /// Deletes a pod as the API server does: unscheduled pods and a zero
    /// grace period delete at once; others terminate gracefully (a shorter
    /// grace period may shorten an ongoing termination). Returns the pod as
    /// stored (terminating) or as deleted.
    pub fn delete_pod(
        &mut self,
        namespace: &str,
        name: &str,
        grace: Option<i64>,
    ) -> Result<Value, ApiError> {
        let now = self.now();
        let Some(pod) = self.store.get(pods(), namespace, name).cloned() else {
            return Err(ApiError::not_found(pods(), name));
        };
        let grace = grace
            .or_else(|| {
                pod.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(30);
        let unscheduled = str_at(&pod, "/spec/nodeName").is_empty();
        let finished = matches!(str_at(&pod, "/status/phase"), "Succeeded" | "Failed");
        if grace <= 0 || unscheduled || finished {
            let uid = str_at(&pod, "/metadata/uid").to_string();
            self.terminations.remove(&uid);
            self.starts.remove(&uid);
            return self
                .store
                .delete(pods(), namespace, name)
                .ok_or_else(|| ApiError::not_found(pods(), name));
        }
        if is_terminating(&pod) {
            let current = pod
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(grace);
            if grace >= current {
                return Ok(pod);
            }
        }
        self.mark_terminating(pod, grace, now)
    }

    /// The API deleted a Node: the pod garbage collector removes its pods.
    pub fn node_deleted(&mut self, name: &str) {
        self.lost_nodes.remove(name);
        self.lost_handled.remove(name);
        self.roles.remove(name);
        let bound: Vec<(String, String, String)> = self
            .store
            .list(pods(), None)
            .into_iter()
            .filter(|p| str_at(p, "/spec/nodeName") == name)
            .map(|p| {
                let (ns, n) = super::store::key_of(p);
                (ns, n, str_at(p, "/metadata/uid").to_string())
            })
            .collect();
        for (ns, n, uid) in bound {
            self.terminations.remove(&uid);
            self.starts.remove(&uid);
            self.store.delete(pods(), &ns, &n);
        }
    }

    fn next_sequence(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }

    /// Creates a pod from a template (status Pending).
    fn create_pod(
        &mut self,
        namespace: &str,
        name: &str,
        template: &Value,
        owner: Option<Value>,
        extra_labels: &[(&str, String)],
        node_name: Option<&str>,
    ) {
        let now = self.now();
        let now_text = format_time(now);
        let mut pod = json!({"metadata": template.get("metadata").cloned().unwrap_or(json!({})),
                             "spec": template.get("spec").cloned().unwrap_or(json!({}))});
        {
            let meta = metadata_mut(&mut pod);
            meta.insert("name".into(), json!(name));
            meta.insert("namespace".into(), json!(namespace));
            if let Some(owner) = owner {
                meta.insert("ownerReferences".into(), json!([owner]));
            }
        }
        for (k, v) in extra_labels {
            pod["metadata"]["labels"][*k] = json!(v);
        }
        let mut conditions = Vec::new();
        if let Some(node_name) = node_name {
            pod["spec"]["nodeName"] = json!(node_name);
            conditions.push(condition("PodScheduled", true, &now_text));
        }
        pod["status"] =
            json!({"phase": "Pending", "conditions": conditions, "qosClass": "BestEffort"});
        // A name clash means the object already exists: nothing to create.
        let _ = self.store.create(pods(), pod, now);
    }

    fn owned_pods(&self, namespace: &str, uid: &str) -> Vec<Value> {
        self.store
            .list(pods(), Some(namespace))
            .into_iter()
            .filter(|p| controller_of(p).is_some_and(|r| r["uid"] == json!(uid)))
            .cloned()
            .collect()
    }

    /// Records a shortfall and says whether its recreate delay has passed.
    fn shortfall_due(&mut self, key: String, now: SystemTime) -> bool {
        let since = *self.shortfalls.entry(key.clone()).or_insert(now);
        if since + self.options.recreate_delay <= now {
            self.shortfalls.remove(&key);
            true
        } else {
            false
        }
    }

    fn replica_sets(&mut self, now: SystemTime) {
        let rs_resource = resources::get("replicasets.apps");
        let sets: Vec<Value> = self
            .store
            .list(rs_resource, None)
            .into_iter()
            .cloned()
            .collect();
        for rs in sets {
            let (ns, name) = super::store::key_of(&rs);
            let uid = str_at(&rs, "/metadata/uid").to_string();
            let replicas = rs
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let active = self
                .owned_pods(&ns, &uid)
                .iter()
                .filter(|p| is_active(p))
                .count() as i64;
            let key = format!("rs/{ns}/{name}");
            if active >= replicas {
                self.shortfalls.remove(&key);
                continue;
            }
            if !self.shortfall_due(key, now) {
                continue;
            }
            let mut template = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
            template["metadata"]["generateName"] = json!(format!("{name}-"));
            for _ in active..replicas {
                let seq = self.next_sequence();
                let pod_name = format!("{name}-{}", names::suffix(&name, seq, 5));
                let owner = owner_ref(&rs, "ReplicaSet", "apps/v1");
                self.create_pod(&ns, &pod_name, &template, Some(owner), &[], None);
            }
        }
    }

    fn stateful_sets(&mut self, now: SystemTime) {
        let sts_resource = resources::get("statefulsets.apps");
        let sets: Vec<Value> = self
            .store
            .list(sts_resource, None)
            .into_iter()
            .cloned()
            .collect();
        for sts in sets {
            let (ns, name) = super::store::key_of(&sts);
            let replicas = sts
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let template = sts.pointer("/spec/template").cloned().unwrap_or(json!({}));
            for ordinal in 0..replicas {
                let pod_name = format!("{name}-{ordinal}");
                let key = format!("sts/{ns}/{name}/{ordinal}");
                if self.store.get(pods(), &ns, &pod_name).is_some() {
                    self.shortfalls.remove(&key);
                    continue;
                }
                if !self.shortfall_due(key, now) {
                    continue;
                }
                let owner = owner_ref(&sts, "StatefulSet", "apps/v1");
                let revision = format!("{name}-{}", names::suffix(&name, 1, 10));
                self.create_pod(
                    &ns,
                    &pod_name,
                    &template,
                    Some(owner),
                    &[
                        ("controller-revision-hash", revision),
                        ("statefulset.kubernetes.io/pod-name", pod_name.clone()),
                    ],
                    None,
                );
            }
        }
    }

    fn daemon_sets(&mut self, now: SystemTime) {
        let ds_resource = resources::get("daemonsets.apps");
        let sets: Vec<Value> = self
            .store
            .list(ds_resource, None)
            .into_iter()
            .cloned()
            .collect();
        let all_nodes: Vec<Value> = self
            .store
            .list(nodes(), None)
            .into_iter()
            .cloned()
            .collect();
        for ds in sets {
            let (ns, name) = super::store::key_of(&ds);
            let uid = str_at(&ds, "/metadata/uid").to_string();
            let template = ds.pointer("/spec/template").cloned().unwrap_or(json!({}));
            let spec = template.get("spec").cloned().unwrap_or(json!({}));
            let owned = self.owned_pods(&ns, &uid);
            for node in &all_nodes {
                let node_name = str_at(node, "/metadata/name").to_string();
                let key = format!("ds/{ns}/{name}/{node_name}");
                let present = owned
                    .iter()
                    .any(|p| str_at(p, "/spec/nodeName") == node_name);
                if present || !daemon_should_run(&spec, node) {
                    self.shortfalls.remove(&key);
                    continue;
                }
                if !self.shortfall_due(key, now) {
                    continue;
                }
                let seq = self.next_sequence();
                let pod_name = format!("{name}-{}", names::suffix(&name, seq, 5));
                let owner = owner_ref(&ds, "DaemonSet", "apps/v1");
                let revision = names::suffix(&name, 2, 10);
                let mut pod_template = template.clone();
                pod_template["metadata"]["generateName"] = json!(format!("{name}-"));
                pod_template["spec"]["tolerations"] = json!(daemon_tolerations(&spec));
                pod_template["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}}});
                self.create_pod(
                    &ns,
                    &pod_name,
                    &pod_template,
                    Some(owner),
                    &[
                        ("controller-revision-hash", revision),
                        ("pod-template-generation", "1".to_string()),
                    ],
                    Some(&node_name),
                );
            }
        }
    }

    /// Binds unscheduled pods, spreading the replicas of an owner.
    fn schedule(&mut self, now: SystemTime) {
        let now_text = format_time(now);
        let pending: Vec<Value> = self
            .store
            .list(pods(), None)
            .into_iter()
            .filter(|p| str_at(p, "/spec/nodeName").is_empty() && !is_terminating(p))
            .cloned()
            .collect();
        let all_nodes: Vec<Value> = self
            .store
            .list(nodes(), None)
            .into_iter()
            .cloned()
            .collect();
        for mut pod in pending {
            let spec = pod.get("spec").cloned().unwrap_or(json!({}));
            let owner_uid = controller_of(&pod).map(|r| r["uid"].clone());
            let mut best: Option<((usize, usize, String), String)> = None;
            for node in &all_nodes {
                let node_name = str_at(node, "/metadata/name").to_string();
                if !schedulable_on(&spec, node, self.lost_nodes.contains_key(&node_name)) {
                    continue;
                }
                let on_node: Vec<&Value> = self
                    .store
                    .list(pods(), None)
                    .into_iter()
                    .filter(|p| str_at(p, "/spec/nodeName") == node_name && is_active(p))
                    .collect();
                let siblings = on_node
                    .iter()
                    .filter(|p| {
                        owner_uid.is_some()
                            && controller_of(p).map(|r| r["uid"].clone()) == owner_uid
                    })
                    .count();
                let score = (siblings, on_node.len(), node_name.clone());
                if best.as_ref().is_none_or(|(b, _)| score < *b) {
                    best = Some((score, node_name));
                }
            }
            match best {
                Some((_, node_name)) => {
                    pod["spec"]["nodeName"] = json!(node_name);
                    pod["status"]["conditions"] =
                        json!([condition("PodScheduled", true, &now_text)]);
                    if let Some(status) = pod.get_mut("status").and_then(Value::as_object_mut) {
                        status.remove("reason");
                        status.remove("message");
                    }
                }
                None => {
                    let total = all_nodes.len();
                    let message = format!(
                        "0/{total} nodes are available: {total} node(s) didn't match Pod's node affinity/selector, were unschedulable or had untolerated taints."
                    );
                    let already = pod
                        .pointer("/status/conditions/0/message")
                        .and_then(Value::as_str)
                        == Some(&message);
                    if already {
                        continue;
                    }
                    let mut c = condition("PodScheduled", false, &now_text);
                    c["reason"] = json!("Unschedulable");
                    c["message"] = json!(message);
                    pod["status"]["conditions"] = json!([c]);
                }
            }
            let _ = self.store.replace(pods(), pod);
        }
    }

    /// The kubelet side: bound pods on Ready nodes start after the start delay.
    fn start_pods(&mut self, now: SystemTime) {
        let now_text = format_time(now);
        let candidates: Vec<Value> = self
            .store
            .list(pods(), None)
            .into_iter()
            .filter(|p| str_at(p, "/status/phase") == "Pending" && !is_terminating(p))
            .filter(|p| !str_at(p, "/spec/nodeName").is_empty())
            .cloned()
            .collect();
        for mut pod in candidates {
            let uid = str_at(&pod, "/metadata/uid").to_string();
            let node_name = str_at(&pod, "/spec/nodeName").to_string();
            let node = self.store.get(nodes(), "", &node_name).cloned();
            let runnable = node.as_ref().is_some_and(|n| {
                node::readiness(n) == Some(true) && !self.lost_nodes.contains_key(&node_name)
            });
            if !runnable {
                self.starts.remove(&uid);
                continue;
            }
            let due = *self
                .starts
                .entry(uid.clone())
                .or_insert(now + self.options.pod_start_delay);
            if due > now {
                continue;
            }
            self.starts.remove(&uid);
            let node = node.unwrap_or(json!({}));
            let host_ip = node
                .pointer("/status/addresses")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
                .and_then(|x| x["address"].as_str())
                .unwrap_or_default()
                .to_string();
            let seq = self.next_sequence();
            let pod_ip = if pod.pointer("/spec/hostNetwork") == Some(&json!(true)) {
                host_ip.clone()
            } else {
                names::pod_ip(seq)
            };
            let containers: Vec<Value> = pod
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|c| {
                    let image = str_at(c, "/image");
                    json!({"name": str_at(c, "/name"), "image": image, "imageID": format!("{image}@sha256:{}", names::suffix(image, 3, 32)),
                           "containerID": format!("containerd://{}", names::suffix(&uid, seq, 32)),
                           "ready": true, "started": true, "restartCount": 0,
                           "state": {"running": {"startedAt": now_text}}, "lastState": {}})
                })
                .collect();
            pod["status"] = json!({
                "phase": "Running",
                "conditions": [condition("Initialized", true, &now_text), condition("Ready", true, &now_text),
                               condition("ContainersReady", true, &now_text), condition("PodScheduled", true, &now_text)],
                "hostIP": host_ip,
                "hostIPs": [{"ip": host_ip}],
                "podIP": pod_ip,
                "podIPs": [{"ip": pod_ip}],
                "startTime": now_text,
                "containerStatuses": containers,
                "qosClass": "BestEffort"
            });
            let _ = self.store.replace(pods(), pod);
        }
    }

    fn update_workload_status(&mut self) {
        let all_pods: Vec<Value> = self.store.list(pods(), None).into_iter().cloned().collect();
        let owned = |uid: &str| -> Vec<&Value> {
            all_pods
                .iter()
                .filter(|p| controller_of(p).is_some_and(|r| r["uid"] == json!(uid)))
                .collect()
        };
        let counts = |uid: &str| -> (i64, i64) {
            let mine = owned(uid);
            let active = mine.iter().filter(|p| is_active(p)).count() as i64;
            let ready = mine
                .iter()
                .filter(|p| is_active(p) && pod_is_ready(p))
                .count() as i64;
            (active, ready)
        };
        // ReplicaSets and StatefulSets.
        for (id, kind) in [("replicasets.apps", "rs"), ("statefulsets.apps", "sts")] {
            let resource = resources::get(id);
            let objects: Vec<Value> = self
                .store
                .list(resource, None)
                .into_iter()
                .cloned()
                .collect();
            for mut object in objects {
                let (active, ready) = counts(str_at(&object, "/metadata/uid"));
                let generation = object
                    .pointer("/metadata/generation")
                    .cloned()
                    .unwrap_or(json!(1));
                let mut status = json!({"replicas": active, "readyReplicas": ready, "availableReplicas": ready,
                                        "observedGeneration": generation});
                if kind == "rs" {
                    status["fullyLabeledReplicas"] = json!(active);
                } else {
                    status["currentReplicas"] = json!(active);
                    status["updatedReplicas"] = json!(active);
                    let revision = format!(
                        "{}-{}",
                        str_at(&object, "/metadata/name"),
                        names::suffix(str_at(&object, "/metadata/name"), 1, 10)
                    );
                    status["currentRevision"] = json!(revision);
                    status["updateRevision"] = json!(revision);
                }
                object["status"] = status;
                let _ = self.store.replace(resource, object);
            }
        }
        // Deployments, from their ReplicaSets.
        let rs_resource = resources::get("replicasets.apps");
        let deployments = resources::get("deployments.apps");
        let replica_sets: Vec<Value> = self
            .store
            .list(rs_resource, None)
            .into_iter()
            .cloned()
            .collect();
        let objects: Vec<Value> = self
            .store
            .list(deployments, None)
            .into_iter()
            .cloned()
            .collect();
        for mut object in objects {
            let uid = str_at(&object, "/metadata/uid").to_string();
            let (active, ready) = replica_sets
                .iter()
                .filter(|rs| controller_of(rs).is_some_and(|r| r["uid"] == json!(uid)))
                .map(|rs| counts(str_at(rs, "/metadata/uid")))
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            let wanted = object
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let max_unavailable = wanted / 4;
            let available = ready >= wanted - max_unavailable;
            let now = self.now_text();
            let mut conditions = json!([
                {"type": "Available", "status": if available { "True" } else { "False" },
                 "reason": if available { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
                 "message": if available { "Deployment has minimum availability." } else { "Deployment does not have minimum availability." },
                 "lastUpdateTime": now, "lastTransitionTime": now},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                 "message": format!("ReplicaSet \"{}-{}\" has successfully progressed.", str_at(&object, "/metadata/name"), names::template_hash(str_at(&object, "/metadata/name"))),
                 "lastUpdateTime": now, "lastTransitionTime": now}
            ]);
            keep_condition_times(object.pointer("/status/conditions"), &mut conditions);
            let generation = object
                .pointer("/metadata/generation")
                .cloned()
                .unwrap_or(json!(1));
            let mut status = json!({"observedGeneration": generation, "replicas": active, "updatedReplicas": active,
                                    "readyReplicas": ready, "availableReplicas": ready, "conditions": conditions});
            if wanted > ready {
                status["unavailableReplicas"] = json!(wanted - ready);
            }
            object["status"] = status;
            let _ = self.store.replace(deployments, object);
        }
        // DaemonSets.
        let ds_resource = resources::get("daemonsets.apps");
        let all_nodes: Vec<Value> = self
            .store
            .list(nodes(), None)
            .into_iter()
            .cloned()
            .collect();
        let objects: Vec<Value> = self
            .store
            .list(ds_resource, None)
            .into_iter()
            .cloned()
            .collect();
        for mut object in objects {
            let spec = object
                .pointer("/spec/template/spec")
                .cloned()
                .unwrap_or(json!({}));
            let desired = all_nodes
                .iter()
                .filter(|n| daemon_should_run(&spec, n))
                .count() as i64;
            let mine = owned(str_at(&object, "/metadata/uid"));
            let scheduled = mine.iter().filter(|p| is_active(p)).count() as i64;
            let ready = mine
                .iter()
                .filter(|p| is_active(p) && pod_is_ready(p))
                .count() as i64;
            let generation = object
                .pointer("/metadata/generation")
                .cloned()
                .unwrap_or(json!(1));
            let mut status = json!({"currentNumberScheduled": scheduled, "desiredNumberScheduled": desired,
                                    "numberMisscheduled": 0, "numberReady": ready, "numberAvailable": ready,
                                    "updatedNumberScheduled": scheduled, "observedGeneration": generation});
            if desired > ready {
                status["numberUnavailable"] = json!(desired - ready);
            }
            object["status"] = status;
            let _ = self.store.replace(ds_resource, object);
        }
    }

    /// The replica count of a pod's controller (for PDB percentages).
    fn controller_scale(&self, pod: &Value) -> Option<(String, i64)> {
        let owner = controller_of(pod)?;
        let ns = str_at(pod, "/metadata/namespace");
        let resource = match owner["kind"].as_str()? {
            "ReplicaSet" => resources::get("replicasets.apps"),
            "StatefulSet" => resources::get("statefulsets.apps"),
            _ => return None,
        };
        let object = self.store.get(resource, ns, owner["name"].as_str()?)?;
        // A Deployment's ReplicaSet counts as the Deployment.
        let (key_object, replicas) = match controller_of(object) {
            Some(d) if d["kind"] == "Deployment" => {
                let deployment =
                    self.store
                        .get(resources::get("deployments.apps"), ns, d["name"].as_str()?)?;
                (
                    deployment,
                    deployment
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1),
                )
            }
            _ => (
                object,
                object
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(1),
            ),
        };
        Some((str_at(key_object, "/metadata/uid").to_string(), replicas))
    }

    /// The disruption controller: recomputes every PDB's status.
    pub fn update_budgets(&mut self) {
        let budgets_resource = resources::get("poddisruptionbudgets.policy");
        let budgets: Vec<Value> = self
            .store
            .list(budgets_resource, None)
            .into_iter()
            .cloned()
            .collect();
        let now = self.now_text();
        for mut budget in budgets {
            let ns = str_at(&budget, "/metadata/namespace").to_string();
            let selector = budget
                .pointer("/spec/selector")
                .cloned()
                .unwrap_or(json!({}));
            let selector = LabelSelector::from_object(&selector).unwrap_or_default();
            let matching: Vec<&Value> = self
                .store
                .list(pods(), Some(&ns))
                .into_iter()
                .filter(|p| selector.matches_object(p))
                .collect();
            let mut status =
                pdb::compute_status(&budget, &matching, &|p| self.controller_scale(p), &now);
            keep_condition_times(
                budget.pointer("/status/conditions"),
                &mut status["conditions"],
            );
            budget["status"] = status;
            let _ = self.store.replace(budgets_resource, budget);
        }
    }

    pub fn register_node(&mut self, reg: &NodeRegistration) {
        let now = self.now();
        let now_text = format_time(now);
        self.roles.insert(reg.name.clone(), reg.role);
        self.lost_nodes.remove(&reg.name);
        self.lost_handled.remove(&reg.name);
        let fresh = node::build(reg, &now_text);
        match self.store.get(nodes(), "", &reg.name).cloned() {
            None => {
                let _ = self.store.create(nodes(), fresh, now);
            }
            Some(mut existing) => {
                let mut labels = super::selector::labels_of(&existing);
                labels.extend(node::labels(reg));
                existing["metadata"]["labels"] = json!(labels);
                existing["status"] = fresh["status"].clone();
                node::set_readiness(&mut existing, Some(false), &now_text);
                let _ = self.store.replace(nodes(), existing);
                // The new kubelet finds the pods bound to its node: terminating
                // ones are confirmed gone, the others start again.
                let bound: Vec<Value> = self
                    .store
                    .list(pods(), None)
                    .into_iter()
                    .filter(|p| str_at(p, "/spec/nodeName") == reg.name)
                    .cloned()
                    .collect();
                for mut pod in bound {
                    let uid = str_at(&pod, "/metadata/uid").to_string();
                    self.starts.remove(&uid);
                    if is_terminating(&pod) {
                        self.terminations.remove(&uid);
                        let (ns, name) = super::store::key_of(&pod);
                        self.store.delete(pods(), &ns, &name);
                    } else {
                        pod["status"] = json!({"phase": "Pending", "qosClass": "BestEffort",
                                               "conditions": [condition("PodScheduled", true, &now_text)]});
                        let _ = self.store.replace(pods(), pod);
                    }
                }
            }
        }
        if reg.role == NodeRole::Master {
            self.create_mirror_pods(reg);
        }
    }

    fn create_mirror_pods(&mut self, reg: &NodeRegistration) {
        let Some(node) = self.store.get(nodes(), "", &reg.name).cloned() else {
            return;
        };
        let version = &reg.kubelet_version;
        for (component, image) in [
            (
                "kube-addon-manager",
                "mcr.microsoft.com/oss/kubernetes/kube-addon-manager:v9.1.5".to_string(),
            ),
            (
                "kube-apiserver",
                format!("mcr.microsoft.com/oss/kubernetes/kube-apiserver:{version}"),
            ),
            (
                "kube-controller-manager",
                format!("mcr.microsoft.com/oss/kubernetes/kube-controller-manager:{version}"),
            ),
            (
                "kube-scheduler",
                format!("mcr.microsoft.com/oss/kubernetes/kube-scheduler:{version}"),
            ),
        ] {
            let name = format!("{component}-{}", reg.name);
            if self.store.get(pods(), "kube-system", &name).is_some() {
                continue;
            }
            let hash = names::suffix(&name, 4, 32);
            let template = json!({
                "metadata": {
                    "labels": {"component": component, "tier": "control-plane"},
                    "annotations": {"kubernetes.io/config.hash": hash, "kubernetes.io/config.mirror": hash,
                                    "kubernetes.io/config.source": "file"}
                },
                "spec": {
                    "containers": [{"name": component, "image": image, "imagePullPolicy": "IfNotPresent"}],
                    "hostNetwork": true,
                    "priorityClassName": "system-node-critical",
                    "restartPolicy": "Always",
                    "terminationGracePeriodSeconds": 30,
                    "tolerations": [{"operator": "Exists", "effect": "NoExecute"}]
                }
            });
            let owner = json!({"apiVersion": "v1", "kind": "Node", "name": reg.name,
                               "uid": str_at(&node, "/metadata/uid"), "controller": true});
            self.create_pod(
                "kube-system",
                &name,
                &template,
                Some(owner),
                &[],
                Some(&reg.name),
            );
        }
    }

    pub fn set_node_ready(&mut self, name: &str, ready: bool) {
        let Some(mut node) = self.store.get(nodes(), "", name).cloned() else {
            return;
        };
        if ready {
            self.lost_nodes.remove(name);
            self.lost_handled.remove(name);
        }
        node::set_readiness(&mut node, Some(ready), &self.now_text());
        let _ = self.store.replace(nodes(), node);
    }

    pub fn vm_deleted(&mut self, name: &str) {
        let Some(mut node) = self.store.get(nodes(), "", name).cloned() else {
            return;
        };
        let now = self.now();
        let now_text = format_time(now);
        node::set_readiness(&mut node, None, &now_text);
        let _ = self.store.replace(nodes(), node);
        self.lost_nodes.insert(name.to_string(), now);
        self.lost_handled.remove(name);
        let bound: Vec<Value> = self
            .store
            .list(pods(), None)
            .into_iter()
            .filter(|p| str_at(p, "/spec/nodeName") == name)
            .cloned()
            .collect();
        for mut pod in bound {
            let uid = str_at(&pod, "/metadata/uid").to_string();
            self.starts.remove(&uid);
            self.terminations.remove(&uid);
            if pod_is_ready(&pod) {
                set_ready(&mut pod, false, &now_text);
                let _ = self.store.replace(pods(), pod);
            }
        }
    }

    pub fn apply_scenario(&mut self, scenario: &Scenario) -> Result<()> {
        let checks: [(&'static str, &str, &Vec<Workload>); 4] = [
            ("deployment", "deployments.apps", &scenario.deployments),
            ("statefulSet", "statefulsets.apps", &scenario.stateful_sets),
            ("daemonSet", "daemonsets.apps", &scenario.daemon_sets),
            ("pod", "pods", &scenario.pods),
        ];
        for (kind, id, list) in checks {
            for w in list {
                if self
                    .store
                    .get(resources::get(id), &w.namespace, &w.name)
                    .is_some()
                {
                    return Err(Error::AlreadyExists {
                        kind,
                        namespace: w.namespace.clone(),
                        name: w.name.clone(),
                    });
                }
            }
        }
        let budgets = resources::get("poddisruptionbudgets.policy");
        for b in &scenario.pod_disruption_budgets {
            if self.store.get(budgets, &b.namespace, &b.name).is_some() {
                return Err(Error::AlreadyExists {
                    kind: "podDisruptionBudget",
                    namespace: b.namespace.clone(),
                    name: b.name.clone(),
                });
            }
        }
        let now = self.now();
        for ns in scenario.all_namespaces() {
            ensure_namespace(&mut self.store, &ns, now);
        }
        for w in &scenario.daemon_sets {
            let labels = w.pod_labels();
            let object = json!({
                "metadata": {"name": w.name, "namespace": w.namespace, "labels": labels,
                             "annotations": {"deprecated.daemonset.template.generation": "1"}},
                "spec": {"selector": {"matchLabels": labels}, "template": w.template(),
                         "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                         "revisionHistoryLimit": 10}
            });
            let _ = self
                .store
                .create(resources::get("daemonsets.apps"), object, now);
        }
        for w in &scenario.deployments {
            let labels = w.pod_labels();
            let replicas = w.replicas.unwrap_or(1);
            let object = json!({
                "metadata": {"name": w.name, "namespace": w.namespace, "labels": labels,
                             "annotations": {"deployment.kubernetes.io/revision": "1"}},
                "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": w.template(),
                         "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                         "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600}
            });
            let Ok(deployment) = self
                .store
                .create(resources::get("deployments.apps"), object, now)
            else {
                continue;
            };
            let hash = names::template_hash(&w.name);
            let mut rs_labels = labels.clone();
            rs_labels.insert("pod-template-hash".to_string(), hash.clone());
            let mut template = w.template();
            template["metadata"]["labels"] = json!(rs_labels);
            let rs = json!({
                "metadata": {"name": format!("{}-{hash}", w.name), "namespace": w.namespace, "labels": rs_labels,
                             "annotations": {"deployment.kubernetes.io/desired-replicas": replicas.to_string(),
                                             "deployment.kubernetes.io/max-replicas": (replicas + replicas.div_ceil(4)).to_string(),
                                             "deployment.kubernetes.io/revision": "1"},
                             "ownerReferences": [owner_ref(&deployment, "Deployment", "apps/v1")]},
                "spec": {"replicas": replicas, "selector": {"matchLabels": rs_labels}, "template": template}
            });
            let _ = self
                .store
                .create(resources::get("replicasets.apps"), rs, now);
        }
        for w in &scenario.stateful_sets {
            let labels = w.pod_labels();
            let object = json!({
                "metadata": {"name": w.name, "namespace": w.namespace, "labels": labels},
                "spec": {"replicas": w.replicas.unwrap_or(1), "serviceName": w.name, "selector": {"matchLabels": labels},
                         "template": w.template(), "podManagementPolicy": "OrderedReady",
                         "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}}
            });
            let _ = self
                .store
                .create(resources::get("statefulsets.apps"), object, now);
        }
        for w in &scenario.pods {
            self.create_pod(&w.namespace, &w.name, &w.template(), None, &[], None);
        }
        for b in &scenario.pod_disruption_budgets {
            let mut spec = json!({"selector": {"matchLabels": b.selector}});
            if let Some(v) = &b.min_available {
                spec["minAvailable"] = v.clone();
            }
            if let Some(v) = &b.max_unavailable {
                spec["maxUnavailable"] = v.clone();
            }
            if let Some(p) = &b.unhealthy_pod_eviction_policy {
                spec["unhealthyPodEvictionPolicy"] = json!(p);
            }
            let object =
                json!({"metadata": {"name": b.name, "namespace": b.namespace}, "spec": spec});
            let _ = self.store.create(budgets, object, now);
        }
        Ok(())
    }
}

/// Sets the Ready and ContainersReady conditions of a pod.
pub fn set_ready(pod: &mut Value, ready: bool, now: &str) {
    if let Some(conditions) = pod
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
    {
        for c in conditions.iter_mut() {
            if c["type"] == "Ready" || c["type"] == "ContainersReady" {
                let status = if ready { "True" } else { "False" };
                if c["status"] != status {
                    c["status"] = json!(status);
                    c["lastTransitionTime"] = json!(now);
                }
            }
        }
    }
    if let Some(statuses) = pod
        .pointer_mut("/status/containerStatuses")
        .and_then(Value::as_array_mut)
    {
        for s in statuses {
            s["ready"] = json!(ready);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde_json::{Value, json};

    use crate::sim::clock::Clock;
    use crate::sim::kube::{KubeSim, KubeSimOptions, NodeRegistration, NodeRole, Scenario};

    fn registration(name: &str, role: NodeRole, os: &str) -> NodeRegistration {
        let mut labels = BTreeMap::new();
        labels.insert(
            "kubernetes.io/role".to_string(),
            if role == NodeRole::Master {
                "master"
            } else {
                "agent"
            }
            .to_string(),
        );
        let taints = if role == NodeRole::Master {
            vec![k8s_openapi::api::core::v1::Taint {
                key: "node-role.kubernetes.io/master".into(),
                value: Some("true".into()),
                effect: "NoSchedule".into(),
                time_added: None,
            }]
        } else {
            Vec::new()
        };
        NodeRegistration {
            name: name.to_string(),
            kubelet_version: "v1.24.17".into(),
            role,
            os: os.into(),
            labels,
            taints,
            pool: "pool".into(),
            vm_size: "Standard_D2_v2".into(),
            internal_ip: "10.240.0.4".into(),
        }
    }

    fn sim() -> KubeSim {
        KubeSim::new(Clock::new(1.0), KubeSimOptions::default())
    }

    fn ready_node(sim: &KubeSim, name: &str, role: NodeRole) {
        sim.register_node(registration(name, role, "linux"));
        sim.set_node_ready(name, true);
    }

    fn pods_of(sim: &KubeSim, app: &str) -> Vec<Value> {
        sim.objects("pods")
            .into_iter()
            .filter(|p| p["metadata"]["labels"]["app"] == app)
            .collect()
    }

    fn node_of(p: &Value) -> &str {
        p["spec"]["nodeName"].as_str().unwrap_or_default()
    }

    /// Advances virtual time one second at a time, letting the controllers
    /// act at each step as the background loop would.
    async fn advance(sim: &KubeSim, seconds: u64) {
        for _ in 0..seconds {
            tokio::time::advance(Duration::from_secs(1)).await;
            drop(sim.world());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_scheduler_respects_cordons_taints_selectors_and_spreads() {
        let sim = sim();
        ready_node(&sim, "master-0", NodeRole::Master);
        ready_node(&sim, "agent-0", NodeRole::Agent);
        ready_node(&sim, "agent-1", NodeRole::Agent);
        ready_node(&sim, "agent-2", NodeRole::Agent);
        ready_node(&sim, "agent-3", NodeRole::Agent);
        sim.register_node(registration("win-0", NodeRole::Agent, "windows"));
        sim.set_node_ready("win-0", true);
        sim.register_node(registration("agent-4", NodeRole::Agent, "linux")); // never Ready
        {
            let mut world = sim.world();
            let nodes = super::nodes();
            let mut n = world.store.get(nodes, "", "agent-0").cloned().unwrap();
            n["spec"]["unschedulable"] = json!(true);
            world.store.replace(nodes, n).unwrap();
            let mut n = world.store.get(nodes, "", "agent-1").cloned().unwrap();
            n["spec"]["taints"] =
                json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]);
            world.store.replace(nodes, n).unwrap();
        }
        sim.apply_scenario(
            &Scenario::from_json(
                r#"{"deployments": [
                    {"name": "web", "replicas": 4, "nodeSelector": {"kubernetes.io/os": "linux"}},
                    {"name": "db", "replicas": 1, "nodeSelector": {"kubernetes.io/os": "linux"},
                     "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]}]}"#,
            )
            .unwrap(),
        )
        .unwrap();
        advance(&sim, 3).await;
        let web = pods_of(&sim, "web");
        assert_eq!(web.len(), 4);
        let mut placement: Vec<&str> = web.iter().map(node_of).collect();
        placement.sort();
        assert_eq!(placement, ["agent-2", "agent-2", "agent-3", "agent-3"]);
        // The tolerating pod may use the tainted node (it is the emptiest).
        assert_eq!(node_of(&pods_of(&sim, "db")[0]), "agent-1");
        // Not Running before the start delay, Running and Ready after it.
        assert!(web.iter().all(|p| p["status"]["phase"] == "Pending"));
        advance(&sim, 10).await;
        assert!(
            pods_of(&sim, "web")
                .iter()
                .all(|p| p["status"]["phase"] == "Running" && super::pod_is_ready(p))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unschedulable_pods_wait_pending_with_the_reason() {
        let sim = sim();
        ready_node(&sim, "master-0", NodeRole::Master);
        sim.apply_scenario(&Scenario::from_json(r#"{"pods": [{"name": "lonely"}]}"#).unwrap())
            .unwrap();
        advance(&sim, 1).await;
        let pod = &pods_of(&sim, "lonely")[0];
        assert_eq!(node_of(pod), "");
        assert_eq!(pod["status"]["conditions"][0]["reason"], "Unschedulable");
        ready_node(&sim, "agent-0", NodeRole::Agent);
        advance(&sim, 11).await;
        let pod = &pods_of(&sim, "lonely")[0];
        assert_eq!(node_of(pod), "agent-0");
        assert_eq!(pod["status"]["phase"], "Running");
    }

    #[tokio::test(start_paused = true)]
    async fn terminating_pods_go_away_after_their_grace_period_and_owners_replace_them() {
        let sim = sim();
        ready_node(&sim, "agent-0", NodeRole::Agent);
        sim.apply_scenario(
            &Scenario::from_json(
                r#"{"deployments": [{"name": "web", "replicas": 1, "terminationGracePeriodSeconds": 45}],
                    "statefulSets": [{"name": "db", "replicas": 1}]}"#,
            )
            .unwrap(),
        )
        .unwrap();
        advance(&sim, 15).await;
        let original = pods_of(&sim, "web")[0]["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_string();
        sim.world().delete_pod("default", &original, None).unwrap();
        sim.world().delete_pod("default", "db-0", Some(5)).unwrap();
        advance(&sim, 44).await;
        let web = pods_of(&sim, "web");
        assert!(
            web.iter()
                .any(|p| p["metadata"]["name"] == original.as_str()),
            "still terminating at 44 s"
        );
        assert_eq!(
            web.len(),
            2,
            "the ReplicaSet does not wait for the old pod to go"
        );
        // The StatefulSet recreated db-0 (same name) once the old one was gone.
        let db = pods_of(&sim, "db");
        assert_eq!(db.len(), 1);
        assert!(db[0]["metadata"].get("deletionTimestamp").is_none());
        advance(&sim, 2).await;
        let web = pods_of(&sim, "web");
        assert_eq!(web.len(), 1);
        assert_ne!(web[0]["metadata"]["name"], original.as_str());
        assert!(
            web[0]["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("web-")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn daemon_sets_follow_nodes_and_their_tolerations() {
        let sim = sim();
        ready_node(&sim, "master-0", NodeRole::Master);
        ready_node(&sim, "agent-0", NodeRole::Agent);
        sim.apply_scenario(
            &Scenario::from_json(
                r#"{"daemonSets": [{"namespace": "kube-system", "name": "proxy", "tolerations": [{"operator": "Exists"}]},
                                    {"namespace": "kube-system", "name": "agent-only"}]}"#,
            )
            .unwrap(),
        )
        .unwrap();
        advance(&sim, 3).await;
        let on = |app: &str| -> Vec<String> {
            let mut v: Vec<String> = pods_of(&sim, app)
                .iter()
                .map(|p| node_of(p).to_string())
                .collect();
            v.sort();
            v
        };
        assert_eq!(on("proxy"), ["agent-0", "master-0"]);
        assert_eq!(on("agent-only"), ["agent-0"]);
        // A new NotReady node: only the DaemonSet tolerating everything goes there at once.
        sim.register_node(registration("agent-1", NodeRole::Agent, "linux"));
        advance(&sim, 3).await;
        assert_eq!(on("proxy"), ["agent-0", "agent-1", "master-0"]);
        assert_eq!(on("agent-only"), ["agent-0"]);
        sim.set_node_ready("agent-1", true);
        advance(&sim, 3).await;
        assert_eq!(on("agent-only"), ["agent-0", "agent-1"]);
        // Cordoned nodes keep DaemonSet pods (they tolerate unschedulable).
        let pod = pods_of(&sim, "agent-only")
            .into_iter()
            .find(|p| node_of(p) == "agent-1")
            .unwrap();
        let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
        assert!(tolerations.contains(&json!({"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"})));
        // Mirror pods exist on masters only.
        let mirrors: Vec<Value> = sim
            .objects("pods")
            .into_iter()
            .filter(super::is_mirror_pod)
            .collect();
        assert_eq!(mirrors.len(), 4);
        assert!(mirrors.iter().all(|p| node_of(p) == "master-0"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_deleted_vm_loses_its_pods_and_a_recreated_one_starts_over() {
        let sim = sim();
        ready_node(&sim, "master-0", NodeRole::Master);
        ready_node(&sim, "agent-0", NodeRole::Agent);
        ready_node(&sim, "agent-1", NodeRole::Agent);
        sim.apply_scenario(
            &Scenario::from_json(
                r#"{"daemonSets": [{"namespace": "kube-system", "name": "proxy", "tolerations": [{"operator": "Exists"}]}],
                    "deployments": [{"name": "web", "replicas": 2}]}"#,
            )
            .unwrap(),
        )
        .unwrap();
        advance(&sim, 15).await;
        let lost: Vec<String> = pods_of(&sim, "web")
            .iter()
            .filter(|p| node_of(p) == "agent-0")
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(lost.len(), 1);
        sim.vm_deleted("agent-0");
        let snapshot = sim.snapshot();
        assert_eq!(snapshot["lostNodes"], json!(["agent-0"]));
        let pod = pods_of(&sim, "web")
            .into_iter()
            .find(|p| p["metadata"]["name"] == lost[0].as_str())
            .unwrap();
        assert!(!super::pod_is_ready(&pod));
        assert!(pod["metadata"].get("deletionTimestamp").is_none());
        advance(&sim, 301).await;
        let web = pods_of(&sim, "web");
        let old = web
            .iter()
            .find(|p| p["metadata"]["name"] == lost[0].as_str())
            .unwrap();
        assert!(
            old["metadata"].get("deletionTimestamp").is_some(),
            "marked for deletion after 300 s"
        );
        advance(&sim, 15).await;
        let web = pods_of(&sim, "web");
        assert!(
            web.iter()
                .any(|p| p["metadata"]["name"] == lost[0].as_str()),
            "stays Terminating: no kubelet"
        );
        let running: Vec<&Value> = web
            .iter()
            .filter(|p| p["status"]["phase"] == "Running" && super::pod_is_ready(p))
            .collect();
        assert_eq!(running.len(), 2);
        assert!(running.iter().all(|p| node_of(p) == "agent-1"));
        // The DaemonSet pod of the lost node is not evicted.
        let proxy = pods_of(&sim, "proxy")
            .into_iter()
            .find(|p| node_of(p) == "agent-0")
            .unwrap();
        assert!(proxy["metadata"].get("deletionTimestamp").is_none());

        // The VM comes back under the same name: the kubelet confirms the
        // terminating pod gone and restarts the rest; the Node keeps its spec.
        {
            let mut world = sim.world();
            let nodes = super::nodes();
            let mut n = world.store.get(nodes, "", "agent-0").cloned().unwrap();
            n["spec"]["unschedulable"] = json!(true);
            n["metadata"]["labels"]["custom"] = json!("kept");
            world.store.replace(nodes, n).unwrap();
        }
        let mut again = registration("agent-0", NodeRole::Agent, "linux");
        again.kubelet_version = "v1.25.16".into();
        sim.register_node(again);
        let node = sim
            .objects("nodes")
            .into_iter()
            .find(|n| n["metadata"]["name"] == "agent-0")
            .unwrap();
        assert_eq!(node["spec"]["unschedulable"], json!(true));
        assert_eq!(node["metadata"]["labels"]["custom"], "kept");
        assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], "v1.25.16");
        assert!(
            !pods_of(&sim, "web")
                .iter()
                .any(|p| p["metadata"]["name"] == lost[0].as_str())
        );
        let proxy = pods_of(&sim, "proxy")
            .into_iter()
            .find(|p| node_of(p) == "agent-0")
            .unwrap();
        assert_eq!(proxy["status"]["phase"], "Pending");
        sim.set_node_ready("agent-0", true);
        advance(&sim, 11).await;
        let proxy = pods_of(&sim, "proxy")
            .into_iter()
            .find(|p| node_of(p) == "agent-0")
            .unwrap();
        assert_eq!(proxy["status"]["phase"], "Running");
    }

    #[tokio::test(start_paused = true)]
    async fn budgets_track_pods_and_server_version_follows_masters() {
        let sim = sim();
        ready_node(&sim, "agent-0", NodeRole::Agent);
        assert_eq!(sim.snapshot()["serverVersion"], "v1.24.17");
        let mut master = registration("master-0", NodeRole::Master, "linux");
        master.kubelet_version = "v1.23.17".into();
        sim.register_node(master);
        assert_eq!(sim.snapshot()["serverVersion"], "v1.23.17");
        sim.apply_scenario(
            &Scenario::from_json(
                r#"{"deployments": [{"name": "web", "replicas": 3}],
                    "podDisruptionBudgets": [{"name": "web", "selector": {"app": "web"}, "maxUnavailable": "34%"}]}"#,
            )
            .unwrap(),
        )
        .unwrap();
        let status =
            |sim: &KubeSim| sim.objects("poddisruptionbudgets.policy")[0]["status"].clone();
        // No pods yet: nothing expected, nothing allowed.
        assert_eq!(status(&sim)["expectedPods"], 0);
        assert_eq!(status(&sim)["disruptionsAllowed"], 0);
        advance(&sim, 3).await;
        assert_eq!(status(&sim)["expectedPods"], 3);
        assert_eq!(status(&sim)["currentHealthy"], 0);
        advance(&sim, 15).await;
        let s = status(&sim);
        assert_eq!(
            (
                s["currentHealthy"].clone(),
                s["desiredHealthy"].clone(),
                s["disruptionsAllowed"].clone()
            ),
            (json!(3), json!(1), json!(2))
        );
        let err = sim
            .apply_scenario(&Scenario::from_json(r#"{"deployments": [{"name": "web"}]}"#).unwrap())
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("deployment default/web already exists"),
            "{err}"
        );
    }
}
