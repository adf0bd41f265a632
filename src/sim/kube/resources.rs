//! The resources the simulated API server serves, and their discovery documents.

use serde_json::{Value, json};

/// One served resource.
#[derive(Debug)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub verbs: &'static [&'static str],
    pub short_names: &'static [&'static str],
    /// Subresources served, with their verbs.
    pub subresources: &'static [(&'static str, &'static [&'static str])],
    /// True when `/status` exists, so a main-resource update keeps the stored status.
    pub has_status: bool,
}

const ALL: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const READ: &[&str] = &["get", "list", "watch"];
const STATUS: &[&str] = &["get", "patch", "update"];

pub static RESOURCES: &[Resource] = &[
    Resource {
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        verbs: &["create", "get", "list", "watch"],
        short_names: &["ns"],
        subresources: &[],
        has_status: false,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "nodes",
        singular: "node",
        kind: "Node",
        namespaced: false,
        verbs: ALL,
        short_names: &["no"],
        subresources: &[("status", STATUS)],
        has_status: true,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        verbs: ALL,
        short_names: &["po"],
        subresources: &[("eviction", &["create"]), ("status", STATUS)],
        has_status: true,
    },
    Resource {
        group: "",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        verbs: ALL,
        short_names: &["ev"],
        subresources: &[],
        has_status: false,
    },
    Resource {
        group: "apps",
        version: "v1",
        plural: "daemonsets",
        singular: "daemonset",
        kind: "DaemonSet",
        namespaced: true,
        verbs: READ,
        short_names: &["ds"],
        subresources: &[],
        has_status: true,
    },
    Resource {
        group: "apps",
        version: "v1",
        plural: "deployments",
        singular: "deployment",
        kind: "Deployment",
        namespaced: true,
        verbs: READ,
        short_names: &["deploy"],
        subresources: &[],
        has_status: true,
    },
    Resource {
        group: "apps",
        version: "v1",
        plural: "replicasets",
        singular: "replicaset",
        kind: "ReplicaSet",
        namespaced: true,
        verbs: READ,
        short_names: &["rs"],
        subresources: &[],
        has_status: true,
    },
    Resource {
        group: "apps",
        version: "v1",
        plural: "statefulsets",
        singular: "statefulset",
        kind: "StatefulSet",
        namespaced: true,
        verbs: READ,
        short_names: &["sts"],
        subresources: &[],
        has_status: true,
    },
    Resource {
        group: "policy",
        version: "v1",
        plural: "poddisruptionbudgets",
        singular: "poddisruptionbudget",
        kind: "PodDisruptionBudget",
        namespaced: true,
        verbs: ALL,
        short_names: &["pdb"],
        subresources: &[("status", &["get"])],
        has_status: true,
    },
    Resource {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        singular: "lease",
        kind: "Lease",
        namespaced: true,
        verbs: ALL,
        short_names: &[],
        subresources: &[],
        has_status: false,
    },
];

impl Resource {
    /// Stable identifier (`plural.group`).
    pub fn id(&self) -> &'static str {
        match self.plural {
            "namespaces" => "namespaces",
            "nodes" => "nodes",
            "pods" => "pods",
            "events" => "events",
            "daemonsets" => "daemonsets.apps",
            "deployments" => "deployments.apps",
            "replicasets" => "replicasets.apps",
            "statefulsets" => "statefulsets.apps",
            "poddisruptionbudgets" => "poddisruptionbudgets.policy",
            _ => "leases.coordination.k8s.io",
        }
    }

    /// `plural` or `plural.group`, as the server names resources in messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn allows(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }
}

/// The resource `plural` of `group` (any version served).
pub fn find(group: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.plural == plural)
}

/// Shorthands used by the controllers.
pub fn get(id: &str) -> &'static Resource {
    RESOURCES
        .iter()
        .find(|r| r.id() == id)
        .unwrap_or(&RESOURCES[0])
}

/// The group/versions served, in discovery order.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !r.group.is_empty() && !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// `/api`
pub fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:443"}]
    })
}

/// `/apis`
pub fn api_group_list() -> Value {
    let groups: Vec<Value> = groups()
        .into_iter()
        .map(|(group, version)| api_group(group, version))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`
pub fn api_group(group: &str, version: &str) -> Value {
    let gv = format!("{group}/{version}");
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": [{"groupVersion": gv, "version": version}],
        "preferredVersion": {"groupVersion": gv, "version": version}
    })
}

/// `/api/v1` or `/apis/<group>/<version>`; None if not served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        resources.push(entry);
        for (sub, verbs) in r.subresources {
            let mut entry = json!({
                "name": format!("{}/{sub}", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": verbs,
            });
            if *sub == "eviction" {
                entry["group"] = json!("policy");
                entry["version"] = json!("v1");
                entry["kind"] = json!("Eviction");
            }
            resources.push(entry);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_discovery_names_the_eviction_subresource_as_kubectl_drain_expects() {
        let list = resource_list("", "v1").unwrap();
        let eviction = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods/eviction")
            .unwrap();
        assert_eq!(eviction["group"], "policy");
        assert_eq!(eviction["version"], "v1");
        assert_eq!(eviction["kind"], "Eviction");
        assert!(resource_list("apps", "v2").is_none());
        let groups = api_group_list();
        let names: Vec<_> = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].clone())
            .collect();
        assert_eq!(names, vec!["apps", "policy", "coordination.k8s.io"]);
    }

    #[test]
    fn every_resource_has_a_distinct_id() {
        let mut ids: Vec<_> = RESOURCES.iter().map(Resource::id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), RESOURCES.len());
        for r in RESOURCES {
            assert_eq!(get(r.id()).plural, r.plural);
        }
    }
}
