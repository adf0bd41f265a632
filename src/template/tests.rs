use std::path::Path;

use base64::Engine as _;
use semver::Version;
use serde_json::Value;

use super::*;
use crate::model::ApiModel;

fn load(name: &str) -> ApiModel {
    ApiModel::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/apimodels")
            .join(name),
    )
    .unwrap()
}

const SUFFIX: &str = "38062788";

fn render_for(model: &ApiModel, pool: PoolKind, index: usize) -> Result<RenderedNode> {
    let target = Version::new(1, 34, 4);
    render(&NodeTemplateInput {
        model: model.view(),
        pool,
        index,
        suffix: SUFFIX,
        target_version: &target,
        subscription_id: "00000000-0000-0000-0000-000000000001",
        resource_group: "rg",
        location: "local",
        aksup_version: "0.1.0",
    })
}

fn resource<'a>(node: &'a RenderedNode, kind: &str) -> &'a Value {
    node.template["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

fn cloud_init(node: &RenderedNode) -> String {
    let vm = resource(node, "Microsoft.Compute/virtualMachines");
    let data = vm["properties"]["osProfile"]["customData"]
        .as_str()
        .unwrap();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
    )
    .unwrap()
}

fn written_file(cloud_init: &str, path: &str) -> String {
    let lines: Vec<&str> = cloud_init.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == format!("- path: {path}"))
        .unwrap_or_else(|| panic!("no {path}"));
    let content = lines[at..]
        .iter()
        .find_map(|l| l.strip_prefix("  content: "))
        .unwrap();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(content)
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn a_master_keeps_its_index_ip_and_etcd_disk() {
    let model = load("three-masters-two-pools.json");
    let node = render_for(&model, PoolKind::Master, 2).unwrap();
    assert_eq!(node.vm_name.as_str(), "k8s-master-38062788-2");
    assert_eq!(node.deployment_name, "aksup-master-2-1-34-4");
    let vm = resource(&node, "Microsoft.Compute/virtualMachines");
    assert_eq!(vm["tags"]["orchestrator"], "Kubernetes:1.34.4");
    assert_eq!(vm["tags"]["poolName"], "master");
    assert_eq!(vm["tags"]["resourceNameSuffix"], SUFFIX);
    assert_eq!(vm["tags"]["aksEngineVersion"], "aksup-0.1.0");
    assert_eq!(
        vm["tags"]["creationSource"],
        "aksengine-k8s-master-38062788-2"
    );
    let disk = &vm["properties"]["storageProfile"]["dataDisks"][0];
    assert_eq!(disk["createOption"], "Attach");
    assert_eq!(disk["name"], "k8s-master-38062788-2-etcddisk");
    assert!(
        disk["managedDisk"]["id"]
            .as_str()
            .unwrap()
            .ends_with("/Microsoft.Compute/disks/k8s-master-38062788-2-etcddisk")
    );
    assert_eq!(
        vm["properties"]["storageProfile"]["imageReference"]["sku"],
        "aks-engine-azurestack-ubuntu-2204"
    );
    assert!(
        vm["properties"]["availabilitySet"]["id"]
            .as_str()
            .unwrap()
            .ends_with("/master-availabilitySet-38062788")
    );
    let nic = resource(&node, "Microsoft.Network/networkInterfaces");
    assert_eq!(nic["name"], "k8s-master-38062788-nic-2");
    let ip = &nic["properties"]["ipConfigurations"][0]["properties"];
    assert_eq!(ip["privateIPAllocationMethod"], "Static");
    assert_eq!(ip["privateIPAddress"], "10.240.255.7");
    assert_eq!(
        ip["loadBalancerBackendAddressPools"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(
        ip["subnet"]["id"]
            .as_str()
            .unwrap()
            .ends_with("/virtualNetworks/k8s-vnet-38062788/subnets/k8s-subnet")
    );
    let extension = resource(&node, "Microsoft.Compute/virtualMachines/extensions");
    assert_eq!(extension["name"], "k8s-master-38062788-2/cse-master-2");
    assert_eq!(
        node.block.taints[0].key,
        "node-role.kubernetes.io/control-plane"
    );
}

#[test]
fn a_private_cluster_master_joins_only_the_internal_load_balancer() {
    let node = render_for(&load("private-cluster.json"), PoolKind::Master, 0).unwrap();
    let nic = resource(&node, "Microsoft.Network/networkInterfaces");
    let pools =
        nic["properties"]["ipConfigurations"][0]["properties"]["loadBalancerBackendAddressPools"]
            .as_array()
            .unwrap();
    assert_eq!(pools.len(), 1);
    assert!(
        pools[0]["id"]
            .as_str()
            .unwrap()
            .contains("k8s-master-internal-lb-")
    );
}

#[test]
fn templates_carry_literal_values_only() {
    let model = load("windows-pool.json");
    for node in [
        render_for(&model, PoolKind::Master, 0).unwrap(),
        render_for(
            &model,
            PoolKind::Agent {
                name: "winpool".into(),
                position: 1,
                windows: true,
            },
            3,
        )
        .unwrap(),
    ] {
        let mut all = Vec::new();
        strings(&node.template, &mut all);
        for text in all {
            assert!(
                !text.starts_with('[') || text.starts_with("[["),
                "ARM expression in {}: {text}",
                node.vm_name
            );
        }
    }
}

#[test]
fn an_agent_carries_its_pool_labels_and_the_target_kubelet() {
    let model = load("three-masters-two-pools.json");
    let node = render_for(
        &model,
        PoolKind::Agent {
            name: "batch".into(),
            position: 1,
            windows: false,
        },
        4,
    )
    .unwrap();
    assert_eq!(node.vm_name.as_str(), "k8s-batch-38062788-4");
    assert_eq!(node.deployment_name, "aksup-batch-4-1-34-4");
    let vm = resource(&node, "Microsoft.Compute/virtualMachines");
    assert_eq!(
        vm["properties"]["storageProfile"]["dataDisks"],
        serde_json::json!([])
    );
    let nic = resource(&node, "Microsoft.Network/networkInterfaces");
    assert_eq!(
        nic["properties"]["ipConfigurations"][0]["properties"]["privateIPAllocationMethod"],
        "Dynamic"
    );
    let text = cloud_init(&node);
    assert!(text.starts_with("#cloud-config\n"));
    let block: NodeBlock = serde_json::from_str(&written_file(&text, NODE_FILE)).unwrap();
    assert_eq!(block, node.block);
    assert_eq!(block.kubelet_version, "v1.34.4");
    assert_eq!(block.node_name, "k8s-batch-38062788-4");
    assert_eq!(block.labels["agentpool"], "batch");
    assert_eq!(block.labels["workload"], "batch");
    assert_eq!(block.labels["tier"], "gold");
    assert!(block.taints.is_empty());
    let env = written_file(&text, "/etc/default/kubelet");
    assert!(env.contains("KUBERNETES_VERSION=1.34.4"), "{env}");
    assert!(
        env.contains("--node-labels=") && env.contains("workload=batch"),
        "{env}"
    );
    assert!(env.contains("--cloud-provider=external"), "{env}");
    let script = written_file(&text, "/opt/azure/containers/aksup-provision.sh");
    assert!(
        script.contains("kubelet-${KUBERNETES_VERSION}")
            && script.contains("KUBERNETES_VERSION=\"1.34.4\"")
    );
    assert!(!text.contains("placeholder"));
}

#[test]
fn windows_nodes_are_named_and_provisioned_the_windows_way() {
    let model = load("windows-pool.json");
    let node = render_for(
        &model,
        PoolKind::Agent {
            name: "winpool".into(),
            position: 1,
            windows: true,
        },
        0,
    )
    .unwrap();
    assert_eq!(node.vm_name.as_str(), "3806k8s010");
    let vm = resource(&node, "Microsoft.Compute/virtualMachines");
    assert_eq!(vm["properties"]["osProfile"]["computerName"], "3806k8s010");
    assert!(
        vm["properties"]["osProfile"]
            .get("windowsConfiguration")
            .is_some()
    );
    assert_eq!(
        vm["properties"]["storageProfile"]["imageReference"]["offer"],
        "aks-windows"
    );
    let extension = resource(&node, "Microsoft.Compute/virtualMachines/extensions");
    assert_eq!(extension["properties"]["type"], "CustomScriptExtension");
    assert_eq!(
        extension["properties"]["settings"]["aksupNode"]["kubeletVersion"],
        "v1.34.4"
    );
    // The admin password is in the template (ARM needs it) but never in Debug.
    assert!(node.template.to_string().contains("FAKE-windows-Password"));
    assert!(!format!("{node:?}").contains("FAKE-windows-Password"));
}

#[test]
fn custom_data_over_the_stamp_limit_is_refused_before_deploying() {
    let mut model = load("single-master-aad.json");
    model
        .set(
            "/properties/orchestratorProfile/kubernetesConfig/kubeletConfig/--huge",
            Value::from("x".repeat(90_000)),
        )
        .unwrap();
    let err = render_for(&model, PoolKind::Master, 0).unwrap_err();
    assert!(matches!(err, Error::CustomDataTooLarge { length, .. } if length > MAX_CUSTOM_DATA));
    assert!(err.to_string().contains("87380"));
}

#[test]
fn images_follow_distro_custom_reference_and_windows_profile() {
    let mut model = load("windows-pool.json");
    let images = required_marketplace_images(model.view(), "sub").unwrap();
    assert_eq!(images.len(), 2);
    assert!(
        images
            .iter()
            .any(|i| i.sku == "aks-engine-azurestack-ubuntu-2204")
    );
    assert!(
        images
            .iter()
            .any(|i| i.offer == "aks-windows" && i.version == "17763.8000.20260101")
    );
    model
        .set(
            "/properties/masterProfile/distro",
            Value::from("ubuntu-18.04"),
        )
        .unwrap();
    assert!(matches!(
        node_image(model.view(), &PoolKind::Master, "sub"),
        Err(Error::UnknownDistro { .. })
    ));
    model
        .set(
            "/properties/masterProfile/imageReference",
            serde_json::json!({"name": "my-image", "resourceGroup": "images"}),
        )
        .unwrap();
    assert_eq!(
        node_image(model.view(), &PoolKind::Master, "sub").unwrap(),
        NodeImage::Custom { id: "/subscriptions/sub/resourceGroups/images/providers/Microsoft.Compute/images/my-image".into() }
    );
}

#[test]
fn master_ips_count_up_from_the_first_consecutive_ip() {
    let mut model = load("single-master-aad.json");
    assert_eq!(
        master_ip(model.view(), 0).unwrap(),
        Ipv4Addr::new(10, 240, 255, 5)
    );
    model
        .set(
            "/properties/masterProfile/firstConsecutiveStaticIP",
            Value::from("10.0.0.254"),
        )
        .unwrap();
    assert_eq!(
        master_ip(model.view(), 2).unwrap(),
        Ipv4Addr::new(10, 0, 1, 0)
    );
    model
        .set(
            "/properties/masterProfile/firstConsecutiveStaticIP",
            Value::from("nope"),
        )
        .unwrap();
    assert!(matches!(
        master_ip(model.view(), 0),
        Err(Error::FirstMasterIp(_))
    ));
}

#[test]
fn storage_tiers() {
    assert_eq!(storage_tier("Standard_DS2_v2"), "Premium_LRS");
    assert_eq!(storage_tier("Standard_D2s_v3"), "Premium_LRS");
    assert_eq!(storage_tier("Standard_D2_v2"), "Standard_LRS");
}
