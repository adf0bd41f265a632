//! Node objects as a kubelet registers and reports them.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::NodeRegistration;

/// (cpu cores, memory GiB, max data disks) of the VM sizes seen on Azure
/// Stack Hub; others get 2 cores and 8 GiB.
fn vm_capacity(vm_size: &str) -> (u32, u32) {
    let size = vm_size.to_ascii_lowercase();
    let table: &[(&str, u32, u32)] = &[
        ("standard_a2_v2", 2, 4),
        ("standard_a4_v2", 4, 8),
        ("standard_d1_v2", 1, 3),
        ("standard_d2_v2", 2, 7),
        ("standard_d3_v2", 4, 14),
        ("standard_d4_v2", 8, 28),
        ("standard_d5_v2", 16, 56),
        ("standard_ds1_v2", 1, 3),
        ("standard_ds2_v2", 2, 7),
        ("standard_ds3_v2", 4, 14),
        ("standard_ds4_v2", 8, 28),
        ("standard_ds5_v2", 16, 56),
        ("standard_d2s_v3", 2, 8),
        ("standard_d4s_v3", 4, 16),
        ("standard_d8s_v3", 8, 32),
        ("standard_f2s_v2", 2, 4),
        ("standard_f4s_v2", 4, 8),
        ("standard_f8s_v2", 8, 16),
    ];
    table
        .iter()
        .find(|(name, _, _)| *name == size)
        .map(|(_, cpu, mem)| (*cpu, *mem))
        .unwrap_or((2, 8))
}

fn os_image(os: &str) -> (&'static str, &'static str, &'static str) {
    if os.eq_ignore_ascii_case("windows") {
        (
            "Windows Server 2019 Datacenter",
            "10.0.17763.5458",
            "containerd://1.6.21+azure",
        )
    } else {
        (
            "Ubuntu 18.04.6 LTS",
            "5.4.0-1109-azure",
            "containerd://1.6.21+azure",
        )
    }
}

/// The labels the kubelet sets itself, merged under the registration's labels.
pub fn labels(reg: &NodeRegistration) -> BTreeMap<String, String> {
    let os = if reg.os.eq_ignore_ascii_case("windows") {
        "windows"
    } else {
        "linux"
    };
    let mut labels: BTreeMap<String, String> = [
        ("beta.kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", os),
        ("kubernetes.io/arch", "amd64"),
        ("kubernetes.io/os", os),
        ("kubernetes.io/hostname", reg.name.as_str()),
        ("node.kubernetes.io/instance-type", reg.vm_size.as_str()),
        ("beta.kubernetes.io/instance-type", reg.vm_size.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    labels.extend(reg.labels.clone());
    labels
}

/// Node conditions for a Ready / NotReady / Unknown node.
pub fn conditions(ready: Option<bool>, now: &str) -> Value {
    let pressure = |kind: &str, reason: &str, message: &str| {
        let (status, reason, message) = match ready {
            None => (
                "Unknown",
                "NodeStatusUnknown",
                "Kubelet stopped posting node status.",
            ),
            Some(_) => ("False", reason, message),
        };
        json!({"type": kind, "status": status, "lastHeartbeatTime": now, "lastTransitionTime": now,
               "reason": reason, "message": message})
    };
    let ready = match ready {
        Some(true) => {
            json!({"type": "Ready", "status": "True", "lastHeartbeatTime": now, "lastTransitionTime": now,
                             "reason": "KubeletReady", "message": "kubelet is posting ready status"})
        }
        Some(false) => {
            json!({"type": "Ready", "status": "False", "lastHeartbeatTime": now, "lastTransitionTime": now,
                              "reason": "KubeletNotReady", "message": "container runtime network not ready: NetworkReady=false"})
        }
        None => {
            json!({"type": "Ready", "status": "Unknown", "lastHeartbeatTime": now, "lastTransitionTime": now,
                       "reason": "NodeStatusUnknown", "message": "Kubelet stopped posting node status."})
        }
    };
    json!([
        pressure(
            "MemoryPressure",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        ),
        pressure(
            "DiskPressure",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        ),
        pressure(
            "PIDPressure",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        ready
    ])
}

/// The taints the node lifecycle controller keeps on a node that is not Ready.
pub fn lifecycle_taints(ready: Option<bool>, now: &str) -> Vec<Value> {
    let key = match ready {
        Some(true) => return Vec::new(),
        Some(false) => "node.kubernetes.io/not-ready",
        None => "node.kubernetes.io/unreachable",
    };
    vec![
        json!({"key": key, "effect": "NoSchedule"}),
        json!({"key": key, "effect": "NoExecute", "timeAdded": now}),
    ]
}

/// A freshly registered (NotReady) Node.
pub fn build(reg: &NodeRegistration, now: &str) -> Value {
    let (cpu, mem_gib) = vm_capacity(&reg.vm_size);
    let (image, kernel, runtime) = os_image(&reg.os);
    let os = if reg.os.eq_ignore_ascii_case("windows") {
        "windows"
    } else {
        "linux"
    };
    let memory_kib = u64::from(mem_gib) * 1024 * 1024;
    let reserved_kib = if mem_gib > 4 { 1_800_000 } else { 750_000 };
    let mut taints: Vec<Value> = reg
        .taints
        .iter()
        .filter_map(|t| serde_json::to_value(t).ok())
        .collect();
    taints.extend(lifecycle_taints(Some(false), now));
    json!({
        "metadata": {
            "name": reg.name,
            "labels": labels(reg),
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true"
            }
        },
        "spec": {
            "podCIDR": format!("10.244.{}.0/24", reg.internal_ip.rsplit('.').next().unwrap_or("0")),
            "providerID": format!("azure:///subscriptions/sim/resourceGroups/sim/providers/Microsoft.Compute/virtualMachines/{}", reg.name),
            "taints": taints
        },
        "status": {
            "capacity": {"cpu": cpu.to_string(), "ephemeral-storage": "30308240Ki", "hugepages-1Gi": "0",
                         "hugepages-2Mi": "0", "memory": format!("{memory_kib}Ki"), "pods": "110"},
            "allocatable": {"cpu": format!("{}m", cpu * 1000 - 100), "ephemeral-storage": "27932073938",
                            "hugepages-1Gi": "0", "hugepages-2Mi": "0",
                            "memory": format!("{}Ki", memory_kib.saturating_sub(reserved_kib)), "pods": "110"},
            "conditions": conditions(Some(false), now),
            "addresses": [{"type": "InternalIP", "address": reg.internal_ip}, {"type": "Hostname", "address": reg.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": super::names::suffix(&reg.name, 7, 32),
                "systemUUID": super::names::suffix(&reg.name, 8, 32),
                "bootID": super::names::suffix(&reg.name, 9, 32),
                "kernelVersion": kernel,
                "osImage": image,
                "containerRuntimeVersion": runtime,
                "kubeletVersion": reg.kubelet_version,
                "kubeProxyVersion": reg.kubelet_version,
                "operatingSystem": os,
                "architecture": "amd64"
            }
        }
    })
}

/// Ready (Some(true)), NotReady (Some(false)) or Unknown (None) from the Ready condition.
pub fn readiness(node: &Value) -> Option<bool> {
    let status = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("False");
    match status {
        "True" => Some(true),
        "Unknown" => None,
        _ => Some(false),
    }
}

/// Sets the Ready state: conditions plus the lifecycle taints.
pub fn set_readiness(node: &mut Value, ready: Option<bool>, now: &str) {
    node["status"]["conditions"] = conditions(ready, now);
    let mut taints: Vec<Value> = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| {
            let key = t["key"].as_str().unwrap_or_default();
            key != "node.kubernetes.io/not-ready" && key != "node.kubernetes.io/unreachable"
        })
        .collect();
    taints.extend(lifecycle_taints(ready, now));
    if taints.is_empty() {
        if let Some(spec) = node.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("taints");
        }
    } else {
        node["spec"]["taints"] = json!(taints);
    }
}
