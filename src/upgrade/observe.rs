//! Observe: join the cluster's VMs (ARM) with its nodes (Kubernetes) into a
//! [`ClusterState`], per pool and index.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Node;
use semver::Version;

use super::state::{ClusterState, NodeState, PoolState, Provisioning, VmState};
use crate::arm::VirtualMachine;
use crate::kube::keys;
use crate::model::ContainerService;
use crate::names::{self, NodeName, PoolKind, VmName};

use crate::template::RUN_TAG;

/// Why the cluster could not be observed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error(
        "no VM of this cluster was found in the resource group: no master VM named k8s-master-<suffix>-<i> and no resourceNameSuffix tag; check --resource-group and --subscription-id"
    )]
    NoClusterVms,
    #[error(
        "the VMs disagree about the cluster's name suffix ({0}); aksup cannot tell which cluster to upgrade"
    )]
    AmbiguousSuffix(String),
}

/// The cluster's 8-digit name suffix, from the masters' `resourceNameSuffix`
/// tag or their names; when no master VM exists (a single master deleted by a
/// killed run), from the agents of the apimodel's pools the same way.
pub fn recover_suffix(vms: &[VirtualMachine], agent_pools: &[String]) -> Result<String, Error> {
    let masters = suffixes_of(vms, &[names::MASTER_POOL.to_owned()]);
    let found = if masters.is_empty() {
        suffixes_of(vms, agent_pools)
    } else {
        masters
    };
    match found.len() {
        0 => Err(Error::NoClusterVms),
        1 => Ok(found.into_iter().next().unwrap_or_default()),
        _ => Err(Error::AmbiguousSuffix(
            found.into_iter().collect::<Vec<_>>().join(", "),
        )),
    }
}

/// The suffixes that VMs of `pools` carry (tag first, else the Linux name).
fn suffixes_of(vms: &[VirtualMachine], pools: &[String]) -> BTreeSet<String> {
    let in_pools = |pool: &str| pools.iter().any(|p| p.eq_ignore_ascii_case(pool));
    let mut found = BTreeSet::new();
    for vm in vms {
        if vm.tag("poolName").is_some_and(in_pools)
            && let Some(suffix) = vm.tag("resourceNameSuffix").filter(|s| !s.is_empty())
        {
            found.insert(suffix.to_owned());
            continue;
        }
        if let Some((pool, suffix, _)) = names::parse_linux_vm_name(&vm.name)
            && in_pools(&pool)
            && vm
                .name
                .to_ascii_lowercase()
                .starts_with(&format!("k8s-{}-", pool.to_ascii_lowercase()))
        {
            found.insert(suffix);
        }
    }
    found
}

/// The pools of the apimodel, control plane first.
pub fn pools_of(model: &ContainerService) -> Vec<(PoolKind, usize)> {
    let mut pools = vec![(
        PoolKind::Master,
        model
            .properties
            .master_profile
            .as_ref()
            .map_or(0, |m| m.count()),
    )];
    for (position, profile) in model.properties.agent_pool_profiles.iter().enumerate() {
        pools.push((
            PoolKind::Agent {
                name: profile.name.clone(),
                position,
                windows: profile.is_windows(),
            },
            profile.count(),
        ));
    }
    pools
}

/// Which pool and index a VM of the cluster belongs to, or `None` for a VM of
/// something else (a jumpbox, another cluster).
fn place(vm: &VirtualMachine, pools: &[(PoolKind, usize)], suffix: &str) -> Option<(usize, usize)> {
    for (position, (kind, _)) in pools.iter().enumerate() {
        let prefix = kind.vm_prefix(suffix);
        let rest = if kind.is_windows() {
            vm.name.strip_prefix(&prefix)
        } else {
            vm.name
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_prefix('-'))
        };
        if let Some(index) = rest.and_then(|digits| digits.parse::<usize>().ok()) {
            return Some((position, index));
        }
    }
    None
}

/// Parses a `Kubernetes:<version>` tag or a `v1.2.3` kubelet version.
pub fn parse_version(text: &str) -> Option<Version> {
    let text = text.strip_prefix("Kubernetes:").unwrap_or(text);
    Version::parse(text.trim().trim_start_matches('v')).ok()
}

/// A node's state as the planner needs it.
pub fn node_state(node: &Node) -> NodeState {
    let name = NodeName::new(node.metadata.name.clone().unwrap_or_default());
    let status = node.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    let kubelet_version = status
        .and_then(|s| s.node_info.as_ref())
        .and_then(|info| parse_version(&info.kubelet_version));
    let annotations = node.metadata.annotations.clone().unwrap_or_default();
    NodeState {
        name,
        ready,
        kubelet_version,
        unschedulable: node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false),
        cordoned_by_aksup: annotations.contains_key(keys::CORDONED_BY_AKSUP),
        replaced_node: annotations
            .get(keys::REPLACED_NODE)
            .filter(|v| !v.is_empty())
            .map(NodeName::new),
    }
}

/// Builds the state from what ARM and Kubernetes show. VMs of other clusters
/// in the resource group are ignored; nodes named like a VM of an agent pool
/// whose VM is gone become that pool's orphans.
pub fn build_state(
    model: &ContainerService,
    vms: &[VirtualMachine],
    nodes: &[Node],
) -> Result<ClusterState, Error> {
    let agent_pools: Vec<String> = model
        .properties
        .agent_pool_profiles
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let suffix = recover_suffix(vms, &agent_pools)?;
    let pools = pools_of(model);
    let mut states: Vec<PoolState> = pools
        .iter()
        .map(|(kind, count)| PoolState {
            kind: kind.clone(),
            count: *count,
            vms: Vec::new(),
            orphan_nodes: Vec::new(),
        })
        .collect();
    let mut nodes_by_name: BTreeMap<String, NodeState> = nodes
        .iter()
        .map(node_state)
        .map(|state| (state.name.as_str().to_owned(), state))
        .collect();
    for vm in vms {
        let Some((position, index)) = place(vm, &pools, &suffix) else {
            continue;
        };
        let name = VmName::new(vm.name.clone());
        let node = nodes_by_name.remove(name.node_name().as_str());
        let provisioning = Provisioning::from_arm(
            vm.instance_provisioning_state()
                .unwrap_or(vm.properties.provisioning_state.as_str()),
        );
        states[position].vms.push(VmState {
            tag_version: vm.tag("orchestrator").and_then(parse_version),
            provisioning,
            run: vm.tag(RUN_TAG).map(str::to_owned),
            node,
            name,
            index,
        });
    }
    // Leftover nodes named like an agent VM of this cluster are orphans of that pool.
    for (name, node) in nodes_by_name {
        let fake = VirtualMachine {
            name: name.clone(),
            ..Default::default()
        };
        if let Some((position, _)) = place(&fake, &pools, &suffix)
            && states[position].kind != PoolKind::Master
        {
            states[position].orphan_nodes.push(node);
        }
    }
    for pool in &mut states {
        pool.sort();
    }
    Ok(ClusterState {
        suffix,
        pools: states,
        missing_images: Vec::new(),
        drain_blockers: BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::model::ApiModel;

    fn model() -> ApiModel {
        ApiModel::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("testdata/apimodels/three-masters-two-pools.json"),
        )
        .unwrap()
    }

    fn arm_vm(name: &str, pool: &str, version: &str, state: &str) -> VirtualMachine {
        let mut vm = VirtualMachine {
            name: name.into(),
            ..Default::default()
        };
        vm.tags = BTreeMap::from([
            ("orchestrator".to_owned(), format!("Kubernetes:{version}")),
            ("poolName".to_owned(), pool.to_owned()),
            ("resourceNameSuffix".to_owned(), "38062788".to_owned()),
        ]);
        vm.properties.provisioning_state = state.into();
        vm
    }

    fn node(name: &str, ready: bool, version: &str, annotations: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                unschedulable: Some(!annotations.is_empty()),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                node_info: Some(NodeSystemInfo {
                    kubelet_version: format!("v{version}"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn vms_and_nodes_are_joined_per_pool_and_index() {
        let vms = vec![
            arm_vm("k8s-master-38062788-0", "master", "1.34.4", "Succeeded"),
            arm_vm("k8s-master-38062788-2", "master", "1.33.10", "Succeeded"),
            arm_vm(
                "k8s-linuxpool-38062788-3",
                "linuxpool",
                "1.34.4",
                "Creating",
            ),
            arm_vm("k8s-batch-38062788-0", "batch", "1.33.10", "Failed"),
            arm_vm("jumpbox", "", "", "Succeeded"),
            arm_vm("k8s-master-99999999-0", "other", "1.30.14", "Succeeded"),
        ];
        let nodes = vec![
            node(
                "k8s-master-38062788-0",
                true,
                "1.34.4",
                &[(keys::CORDONED_BY_AKSUP, "true")],
            ),
            node("k8s-master-38062788-1", false, "1.33.10", &[]),
            node("k8s-linuxpool-38062788-0", false, "1.33.10", &[]),
            node(
                "k8s-linuxpool-38062788-3",
                true,
                "1.34.4",
                &[(keys::REPLACED_NODE, "k8s-linuxpool-38062788-0")],
            ),
        ];
        let mut with_other = vms.clone();
        with_other.retain(|vm| vm.name != "k8s-master-99999999-0");
        let state = build_state(model().view(), &with_other, &nodes).unwrap();
        assert_eq!(state.suffix, "38062788");
        let masters = state.masters().unwrap();
        assert_eq!(masters.count, 3);
        assert_eq!(
            masters.vms.iter().map(|vm| vm.index).collect::<Vec<_>>(),
            [0, 2]
        );
        let first = &masters.vms[0];
        assert_eq!(first.version(), Some(&Version::new(1, 34, 4)));
        assert!(first.node.as_ref().unwrap().cordoned_by_aksup);
        assert!(
            masters.orphan_nodes.is_empty(),
            "a master's node stays for its recreated VM"
        );
        let linux = &state.pools[1];
        assert_eq!(linux.vms[0].provisioning, Provisioning::InProgress);
        assert_eq!(
            linux.vms[0].node.as_ref().unwrap().replaced_node,
            Some(NodeName::new("k8s-linuxpool-38062788-0"))
        );
        assert_eq!(linux.orphan_nodes.len(), 1);
        assert_eq!(state.pools[2].vms[0].provisioning, Provisioning::Failed);
        // Two clusters' masters in one resource group: refuse to guess.
        assert!(matches!(
            build_state(model().view(), &vms, &nodes),
            Err(Error::AmbiguousSuffix(_))
        ));
        assert_eq!(
            build_state(model().view(), &[], &nodes),
            Err(Error::NoClusterVms)
        );
    }

    #[test]
    fn the_suffix_comes_from_names_when_tags_are_missing() {
        let mut vm = arm_vm("k8s-master-1234abcd-0", "", "1.33.10", "Succeeded");
        vm.tags.clear();
        assert_eq!(recover_suffix(&[vm], &[]).unwrap(), "1234abcd");
        // No master at all (a single master deleted by a killed run): the agents tell.
        let agent = arm_vm(
            "k8s-linuxpool-38062788-1",
            "linuxpool",
            "1.33.10",
            "Succeeded",
        );
        assert_eq!(
            recover_suffix(std::slice::from_ref(&agent), &["linuxpool".into()]).unwrap(),
            "38062788"
        );
        assert_eq!(recover_suffix(&[agent], &[]), Err(Error::NoClusterVms));
    }

    #[test]
    fn versions_parse_from_tags_and_kubelets() {
        assert_eq!(
            parse_version("Kubernetes:1.33.10"),
            Some(Version::new(1, 33, 10))
        );
        assert_eq!(parse_version("v1.34.4"), Some(Version::new(1, 34, 4)));
        assert_eq!(parse_version("garbage"), None);
    }
}
