//! Server-side printing: `Table` responses for `kubectl get`.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::node;
use super::pdb::{is_terminating, pod_is_ready};
use super::resources::Resource;
use super::store::{parse_time, str_at};

/// Whether the client asked for a Table (`Accept: application/json;as=Table;…`).
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

/// A short age the way kubectl prints it (`45s`, `12m`, `3h`, `5d`).
pub fn age(created: &str, now: SystemTime) -> String {
    let Some(created) = parse_time(created) else {
        return "<unknown>".to_string();
    };
    let secs = now
        .duration_since(created)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 3 => format!("{}m", s / 60),
        s if s < 86_400 * 2 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn column(name: &str, kind: &str, format: &str, priority: u8, description: &str) -> Value {
    json!({"name": name, "type": kind, "format": format, "description": description, "priority": priority})
}

fn node_roles(node: &Value) -> String {
    let mut roles: Vec<String> = super::selector::labels_of(node)
        .into_iter()
        .filter_map(|(k, v)| {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                Some(role.to_string()).filter(|r| !r.is_empty())
            } else if k == "kubernetes.io/role" {
                Some(v)
            } else {
                None
            }
        })
        .collect();
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    }
}

fn node_status(node: &Value) -> String {
    let mut status = match node::readiness(node) {
        Some(true) => "Ready",
        Some(false) => "NotReady",
        None => "NotReady",
    }
    .to_string();
    if node.pointer("/spec/unschedulable") == Some(&json!(true)) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

fn address(node: &Value, kind: &str) -> String {
    node.pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|x| x["type"] == kind))
        .and_then(|x| x["address"].as_str())
        .unwrap_or("<none>")
        .to_string()
}

fn pod_status(pod: &Value) -> String {
    if is_terminating(pod) {
        return "Terminating".to_string();
    }
    let phase = str_at(pod, "/status/phase");
    if phase == "Pending" && !str_at(pod, "/spec/nodeName").is_empty() {
        return "ContainerCreating".to_string();
    }
    if phase.is_empty() {
        "Unknown".to_string()
    } else {
        phase.to_string()
    }
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s.to_string()
    }
}

/// The Table for `objects` of `resource`.
pub fn table(
    resource: &Resource,
    objects: &[&Value],
    resource_version: &str,
    include_object: &str,
    now: SystemTime,
) -> Value {
    let columns = match resource.kind {
        "Node" => vec![
            column(
                "Name",
                "string",
                "name",
                0,
                "Name must be unique within a namespace.",
            ),
            column("Status", "string", "", 0, "The status of the node"),
            column("Roles", "string", "", 0, "The roles of the node"),
            column(
                "Age",
                "string",
                "",
                0,
                "CreationTimestamp is a timestamp representing the server time when this object was created.",
            ),
            column(
                "Version",
                "string",
                "",
                0,
                "Kubelet Version reported by the node.",
            ),
            column(
                "Internal-IP",
                "string",
                "",
                1,
                "List of addresses reachable to the node.",
            ),
            column(
                "External-IP",
                "string",
                "",
                1,
                "List of addresses reachable to the node.",
            ),
            column(
                "OS-Image",
                "string",
                "",
                1,
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
            ),
            column(
                "Kernel-Version",
                "string",
                "",
                1,
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
            ),
            column(
                "Container-Runtime",
                "string",
                "",
                1,
                "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
            ),
        ],
        "Pod" => vec![
            column(
                "Name",
                "string",
                "name",
                0,
                "Name must be unique within a namespace.",
            ),
            column(
                "Ready",
                "string",
                "",
                0,
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            column(
                "Status",
                "string",
                "",
                0,
                "The aggregate status of the containers in this pod.",
            ),
            column(
                "Restarts",
                "string",
                "",
                0,
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            column(
                "Age",
                "string",
                "",
                0,
                "CreationTimestamp is a timestamp representing the server time when this object was created.",
            ),
            column(
                "IP",
                "string",
                "",
                1,
                "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
            ),
            column(
                "Node",
                "string",
                "",
                1,
                "NodeName is a request to schedule this pod onto a specific node.",
            ),
            column(
                "Nominated Node",
                "string",
                "",
                1,
                "nominatedNodeName is set only when this pod preempts other pods on the node.",
            ),
            column(
                "Readiness Gates",
                "string",
                "",
                1,
                "If specified, all readiness gates will be evaluated for pod readiness.",
            ),
        ],
        _ => vec![
            column(
                "Name",
                "string",
                "name",
                0,
                "Name must be unique within a namespace.",
            ),
            column(
                "Age",
                "string",
                "",
                0,
                "CreationTimestamp is a timestamp representing the server time when this object was created.",
            ),
        ],
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let name = str_at(o, "/metadata/name");
            let created_age = age(str_at(o, "/metadata/creationTimestamp"), now);
            let cells = match resource.kind {
                "Node" => json!([name, node_status(o), node_roles(o), created_age,
                                 str_at(o, "/status/nodeInfo/kubeletVersion"), address(o, "InternalIP"), address(o, "ExternalIP"),
                                 str_at(o, "/status/nodeInfo/osImage"), str_at(o, "/status/nodeInfo/kernelVersion"),
                                 str_at(o, "/status/nodeInfo/containerRuntimeVersion")]),
                "Pod" => {
                    let containers = o.pointer("/spec/containers").and_then(Value::as_array).map_or(0, Vec::len);
                    let ready = if pod_is_ready(o) && !is_terminating(o) { containers } else { 0 };
                    json!([name, format!("{ready}/{containers}"), pod_status(o), 0, created_age,
                           or_none(str_at(o, "/status/podIP")), or_none(str_at(o, "/spec/nodeName")), "<none>", "<none>"])
                }
                _ => json!([name, created_age]),
            };
            let object = if include_object == "Object" {
                (*o).clone()
            } else if include_object == "None" {
                Value::Null
            } else {
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"].clone()})
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns,
        "rows": rows
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn ages_and_table_requests_are_recognised() {
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(age("1970-01-01T02:46:00Z", now), "40s");
        assert_eq!(age("1970-01-01T00:00:00Z", now), "166m");
        assert_eq!(age("garbage", now), "<unknown>");
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
    }

    #[test]
    fn node_rows_show_status_roles_and_version() {
        let n = json!({"metadata": {"name": "k8s-master-1", "creationTimestamp": "1970-01-01T00:00:00Z",
                        "labels": {"kubernetes.io/role": "master", "node-role.kubernetes.io/master": ""}},
                       "spec": {"unschedulable": true},
                       "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.24.17"}}});
        let nodes = super::super::resources::get("nodes");
        let t = table(nodes, &[&n], "5", "", UNIX_EPOCH + Duration::from_secs(30));
        assert_eq!(
            t["rows"][0]["cells"].as_array().unwrap()[..5].to_vec(),
            vec![
                json!("k8s-master-1"),
                json!("Ready,SchedulingDisabled"),
                json!("master"),
                json!("30s"),
                json!("v1.24.17")
            ]
        );
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }
}
