//! Seeding: every apimodel in `testdata/` and in the shared real-world set
//! either seeds a cluster named as aks-engine names it, or is refused with the
//! model's own validation message.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use aksup::model::ApiModel;
use aksup::sim::kube::NodeRole;
use aksup::sim::seed;
use aksup::sim::world::{Identity, State};
use aksup::sim::{SimOptions, Simulator};

fn new_state() -> State {
    State::new(
        "00000000-0000-0000-0000-0000000000aa".into(),
        "rg".into(),
        "local".into(),
        Identity {
            tenant_id: "t".into(),
            client_id: "c".into(),
            client_secret: "s".into(),
            certificate_der: Vec::new(),
            public_key_der: Vec::new(),
            audience: "a".into(),
        },
    )
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

/// Apimodels: every JSON file under `testdata/` that looks like one, plus the shared real-world set.
fn apimodels() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    json_files(&root.join("testdata"), &mut files);
    let shared = [
        root.join("../shared/realworld/apimodels"),
        PathBuf::from("/work/shared/realworld/apimodels"),
    ]
    .into_iter()
    .find(|dir| dir.is_dir());
    match &shared {
        Some(dir) => json_files(dir, &mut files),
        None => eprintln!(
            "SKIPPED the shared real-world apimodels: ../shared/realworld/apimodels is not there"
        ),
    }
    files
        .into_iter()
        .filter(|path| {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .is_some_and(|value| {
                    value.get("apiVersion").is_some() && value.get("properties").is_some()
                })
        })
        .collect()
}

fn check_seeded(
    path: &Path,
    model: &ApiModel,
    state: &State,
    nodes: &[aksup::sim::kube::NodeRegistration],
) {
    let view = model.view();
    let master = view.properties.master_profile.as_ref().unwrap();
    let suffix = seed::name_suffix(&master.dns_prefix);
    let version = view.orchestrator_version();
    let expected_vms = master.count()
        + view
            .properties
            .agent_pool_profiles
            .iter()
            .map(|p| p.count())
            .sum::<usize>();
    assert_eq!(
        state.virtual_machines.len(),
        expected_vms,
        "{}",
        path.display()
    );
    assert_eq!(nodes.len(), expected_vms);
    for index in 0..master.count() {
        let name = format!("k8s-master-{suffix}-{index}");
        let vm = state
            .vm(&name)
            .unwrap_or_else(|| panic!("{}: no {name}", path.display()));
        assert_eq!(vm.tags["orchestrator"], format!("Kubernetes:{version}"));
        assert_eq!(vm.tags["poolName"], "master");
        assert_eq!(vm.tags["resourceNameSuffix"], suffix);
        assert_eq!(vm.tags["creationSource"], format!("aksengine-{name}"));
        assert_eq!(vm.tags["aksEngineVersion"], "v0.85.0");
        assert_eq!(
            vm.data_disks[0].name,
            format!("k8s-master-{suffix}-{index}-etcddisk")
        );
        assert!(
            state
                .disk(&format!("k8s-master-{suffix}-{index}-etcddisk"))
                .is_some()
        );
        let nic = state
            .nic(&format!("k8s-master-{suffix}-nic-{index}"))
            .unwrap();
        assert_eq!(nic.private_ip_allocation_method, "Static");
        assert_eq!(
            vm.availability_set.as_deref(),
            Some(format!("master-availabilitySet-{suffix}").as_str())
        );
        let node = nodes.iter().find(|n| n.name == name).unwrap();
        assert_eq!(node.role, NodeRole::Master);
        assert_eq!(node.kubelet_version, format!("v{version}"));
        assert!(
            node.taints
                .iter()
                .any(|t| t.key == "node-role.kubernetes.io/control-plane"
                    && t.effect == "NoSchedule")
        );
        assert_eq!(node.labels["kubernetes.io/role"], "master");
        assert!(
            node.labels
                .contains_key("node-role.kubernetes.io/control-plane")
        );
        assert_eq!(node.internal_ip, nic.private_ip_address);
    }
    for (pool_index, pool) in view.properties.agent_pool_profiles.iter().enumerate() {
        for index in 0..pool.count() {
            let (name, nic) = if pool.is_windows() {
                (
                    format!("{}k8s{pool_index:02}{index}", &suffix[..4]),
                    format!("{}k8s{pool_index:02}-nic-{index}", &suffix[..4]),
                )
            } else {
                (
                    format!("k8s-{}-{suffix}-{index}", pool.name),
                    format!("k8s-{}-{suffix}-nic-{index}", pool.name),
                )
            };
            let vm = state
                .vm(&name)
                .unwrap_or_else(|| panic!("{}: no {name}", path.display()));
            assert_eq!(vm.tags["poolName"], pool.name);
            assert!(vm.data_disks.is_empty());
            assert_eq!(vm.is_windows(), pool.is_windows());
            assert!(state.nic(&nic).is_some(), "{nic}");
            assert_eq!(
                vm.availability_set.as_deref(),
                Some(format!("{}-availabilitySet-{suffix}", pool.name).as_str())
            );
            let node = nodes
                .iter()
                .find(|n| n.name == name.to_ascii_lowercase())
                .unwrap();
            assert_eq!(node.role, NodeRole::Agent);
            assert_eq!(node.labels["agentpool"], pool.name);
            assert_eq!(
                node.labels["kubernetes.io/os"],
                if pool.is_windows() {
                    "windows"
                } else {
                    "linux"
                }
            );
            assert_eq!(
                node.labels["node.kubernetes.io/instance-type"],
                pool.vm_size
            );
            assert_eq!(node.labels["storageprofile"], "managed");
            for (key, value) in &pool.custom_node_labels {
                assert_eq!(&node.labels[key], value);
            }
            assert!(node.taints.is_empty());
        }
    }
    // Every OS disk exists and is attached to its VM.
    for vm in state.virtual_machines.values() {
        let disk = state.disk(&vm.os_disk.name).unwrap();
        assert_eq!(disk.managed_by.as_deref(), Some(vm.name.as_str()));
    }
    let ips: BTreeSet<_> = state
        .network_interfaces
        .values()
        .map(|n| n.private_ip_address.clone())
        .collect();
    assert_eq!(ips.len(), state.network_interfaces.len(), "IPs are unique");
}

#[test]
fn every_apimodel_seeds_or_is_refused_with_the_models_error() {
    let files = apimodels();
    assert!(files.len() >= 4, "the test apimodels are found: {files:?}");
    let mut seeded = 0;
    let mut refused = 0;
    for path in &files {
        let model = match ApiModel::load(path) {
            Ok(model) => model,
            Err(error) => {
                eprintln!("{}: not loadable ({error}); skipped", path.display());
                continue;
            }
        };
        let mut state = new_state();
        match (model.validate(), seed::seed(&model, &mut state)) {
            (Ok(()), Ok(nodes)) => {
                check_seeded(path, &model, &state, &nodes);
                seeded += 1;
            }
            (Err(expected), Err(seed::Error::Invalid(got))) => {
                assert_eq!(got, expected, "{}", path.display());
                refused += 1;
            }
            (validation, result) => panic!(
                "{}: validation {validation:?} but seeding {:?}",
                path.display(),
                result.map(|n| n.len())
            ),
        }
    }
    eprintln!("seeded {seeded}, refused {refused} apimodels");
    assert!(seeded >= 4);
}

#[tokio::test]
async fn a_definition_without_orchestrator_version_is_refused_at_start() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("testdata/sim/linux-3-masters.json")).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["properties"]["orchestratorProfile"]
        .as_object_mut()
        .unwrap()
        .remove("orchestratorVersion");
    let model = ApiModel::parse(&value.to_string()).unwrap();
    let error = Simulator::start(SimOptions::new(model)).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        aksup::model::ValidationError::NoOrchestratorVersion.to_string()
    );
}

#[test]
fn windows_pools_are_named_from_the_suffix_and_pool_index() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let model = ApiModel::load(&root.join("testdata/sim/windows-1-master-adfs.json")).unwrap();
    let mut win = new_state();
    let nodes = seed::seed(&model, &mut win).unwrap();
    let state = win;
    let suffix = seed::name_suffix("simwin");
    let windows = format!("{}k8s011", &suffix[..4]);
    let vm = state.vm(&windows).unwrap();
    assert_eq!(vm.computer_name, windows);
    assert_eq!(vm.os_disk.os_type, "Windows");
    assert!(
        matches!(&vm.image, aksup::sim::world::ImageRef::Marketplace { offer, .. } if offer == "aks-windows")
    );
    let node = nodes.iter().find(|n| n.name == windows).unwrap();
    assert_eq!(node.os, "windows");
    // The 20.04 distro maps to the older image.
    let model = ApiModel::load(&root.join("testdata/sim/old-1.31-ubuntu-2004.json")).unwrap();
    let mut old = new_state();
    seed::seed(&model, &mut old).unwrap();
    let state = old;
    let suffix = seed::name_suffix("simold");
    let vm = state.vm(&format!("k8s-master-{suffix}-0")).unwrap();
    assert!(
        matches!(&vm.image, aksup::sim::world::ImageRef::Marketplace { sku, .. } if sku == "aks-engine-azurestack-ubuntu-2004")
    );
    assert_eq!(
        state
            .nic(&format!("k8s-master-{suffix}-nic-0"))
            .unwrap()
            .private_ip_address,
        "10.100.0.10"
    );
}
