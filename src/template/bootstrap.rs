//! The bootstrap payload: what a new VM runs to become the node it replaces.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{NodeTemplateInput, storage_tier};
use crate::model::ContainerService;
use crate::names::{NodeName, PoolKind};

/// Where the node block is written on a Linux node.
pub const NODE_FILE: &str = "/etc/kubernetes/aksup-node.json";

/// The machine-readable description of the node the VM must become: read by
/// the provisioning script (and by the simulator in place of a real kubelet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeBlock {
    pub node_name: String,
    /// `v1.34.4`.
    pub kubelet_version: String,
    /// `master` or `agent`.
    pub role: String,
    pub pool: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
}

/// A node taint as the kubelet's `--register-with-taints` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taint {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub effect: String,
}

impl Taint {
    fn flag(&self) -> String {
        match &self.value {
            Some(value) => format!("{}={}:{}", self.key, value, self.effect),
            None => format!("{}:{}", self.key, self.effect),
        }
    }
}

/// The node block for the VM at `input`: role, pool, the labels aks-engine
/// gives such a node (role labels, `agentpool`, storage labels, custom node
/// labels from the apimodel) and the master taint.
pub fn node_block(input: &NodeTemplateInput<'_>, node_name: &NodeName) -> NodeBlock {
    let master = input.pool == PoolKind::Master;
    let role = if master { "master" } else { "agent" };
    let mut labels = BTreeMap::new();
    labels.insert("kubernetes.azure.com/role".to_owned(), role.to_owned());
    labels.insert("kubernetes.io/role".to_owned(), role.to_owned());
    labels.insert(format!("node-role.kubernetes.io/{role}"), String::new());
    labels.insert(
        "kubernetes.azure.com/cluster".to_owned(),
        input.resource_group.to_owned(),
    );
    labels.insert("storageprofile".to_owned(), "managed".to_owned());
    let mut taints = Vec::new();
    let vm_size = match &input.pool {
        PoolKind::Master => {
            labels.insert(
                "node-role.kubernetes.io/control-plane".to_owned(),
                String::new(),
            );
            taints.push(Taint {
                key: "node-role.kubernetes.io/control-plane".to_owned(),
                value: None,
                effect: "NoSchedule".to_owned(),
            });
            input
                .model
                .properties
                .master_profile
                .as_ref()
                .map(|m| m.vm_size.clone())
                .unwrap_or_default()
        }
        PoolKind::Agent { name, position, .. } => {
            labels.insert("agentpool".to_owned(), name.clone());
            let profile = input.model.properties.agent_pool_profiles.get(*position);
            if let Some(profile) = profile {
                for (key, value) in &profile.custom_node_labels {
                    labels.insert(key.clone(), value.clone());
                }
            }
            profile.map(|p| p.vm_size.clone()).unwrap_or_default()
        }
    };
    labels.insert("storagetier".to_owned(), storage_tier(&vm_size).to_owned());
    NodeBlock {
        node_name: node_name.to_string(),
        kubelet_version: format!("v{}", input.target_version),
        role: role.to_owned(),
        pool: input.pool.pool_name().to_owned(),
        labels,
        taints,
    }
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
}

/// Kubelet flags from the apimodel's `kubeletConfig`, then the node's labels
/// and taints (which aksup sets itself).
fn kubelet_flags(block: &NodeBlock, model: &ContainerService) -> String {
    let mut flags: Vec<String> = model
        .kubernetes_config()
        .map(|config| {
            config
                .kubelet_config
                .iter()
                .filter(|(key, _)| {
                    !matches!(key.as_str(), "--node-labels" | "--register-with-taints")
                })
                .map(|(key, value)| format!("{key}={value}"))
                .collect()
        })
        .unwrap_or_default();
    let labels: Vec<String> = block
        .labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    flags.push(format!("--node-labels={}", labels.join(",")));
    if !block.taints.is_empty() {
        let taints: Vec<String> = block.taints.iter().map(Taint::flag).collect();
        flags.push(format!("--register-with-taints={}", taints.join(",")));
    }
    flags.join(" ")
}

/// The Linux payload: a cloud-init document writing the node block, the
/// kubelet's environment file and the provisioning script the extension runs.
pub fn linux_custom_data(block: &NodeBlock, model: &ContainerService) -> String {
    let node_json = serde_json::to_string(block).unwrap_or_default();
    let version = block.kubelet_version.trim_start_matches('v');
    let kubelet_env = format!(
        "KUBELET_FLAGS={}\nKUBELET_NODE_NAME={}\nKUBERNETES_VERSION={version}\n",
        kubelet_flags(block, model),
        block.node_name
    );
    let script = format!(
        r#"#!/usr/bin/env bash
# Written by aksup: starts the kubelet of Kubernetes {version} on node {node}.
set -euo pipefail
KUBERNETES_VERSION="{version}"
log() {{ echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) aksup-provision: $*"; }}
cached="/usr/local/bin/kubelet-${{KUBERNETES_VERSION}}"
if [ ! -x "$cached" ]; then
  log "this image carries no kubelet ${{KUBERNETES_VERSION}} ($cached is missing)"
  exit 20
fi
install -m 0755 "$cached" /usr/local/bin/kubelet
if [ -x "/usr/local/bin/kubectl-${{KUBERNETES_VERSION}}" ]; then
  install -m 0755 "/usr/local/bin/kubectl-${{KUBERNETES_VERSION}}" /usr/local/bin/kubectl
fi
systemctl daemon-reload
systemctl enable kubelet
systemctl restart kubelet
for _ in $(seq 1 60); do
  if curl -fsS http://127.0.0.1:10248/healthz >/dev/null 2>&1; then
    log "kubelet ${{KUBERNETES_VERSION}} is healthy"
    exit 0
  fi
  sleep 5
done
log "the kubelet did not become healthy within 5 minutes"
journalctl -u kubelet --no-pager -n 50 || true
exit 21
"#,
        node = block.node_name
    );
    format!(
        "#cloud-config\nwrite_files:\n{}{}{}",
        write_file(NODE_FILE, "0644", &node_json),
        write_file("/etc/default/kubelet", "0644", &kubelet_env),
        write_file("/opt/azure/containers/aksup-provision.sh", "0744", &script),
    )
}

fn write_file(path: &str, permissions: &str, content: &str) -> String {
    format!(
        "- path: {path}\n  permissions: \"{permissions}\"\n  owner: root\n  encoding: b64\n  content: {}\n",
        b64(content)
    )
}

/// The Windows payload: a PowerShell script (aks-engine's CustomData.bin) that
/// the extension copies and runs.
pub fn windows_custom_data(block: &NodeBlock) -> String {
    let node_json = serde_json::to_string(block)
        .unwrap_or_default()
        .replace('\'', "''");
    let version = block.kubelet_version.trim_start_matches('v');
    let labels: Vec<String> = block
        .labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    let taints: Vec<String> = block.taints.iter().map(Taint::flag).collect();
    format!(
        r#"<#
  Written by aksup: starts the kubelet of Kubernetes {version} on Windows node {node}.
#>
$ErrorActionPreference = "Stop"
$KubernetesVersion = "{version}"
New-Item -ItemType Directory -Force -Path C:\k | Out-Null
Set-Content -Path C:\k\aksup-node.json -Value '{node_json}'
$zip = "C:\akse-cache\win-k8s\v$KubernetesVersion-1int.zip"
if (-not (Test-Path $zip)) {{
  Write-Error "this image carries no kubelet $KubernetesVersion ($zip is missing)"
  exit 20
}}
Expand-Archive -Path $zip -DestinationPath C:\k -Force
$kubeletArgs = @("--node-labels={labels}", "--register-with-taints={taints}", "--hostname-override={node}")
Set-Content -Path C:\k\kubelet-args.txt -Value ($kubeletArgs -join " ")
if (-not (Get-Service kubelet -ErrorAction SilentlyContinue)) {{
  New-Service -Name kubelet -BinaryPathName "C:\k\kubelet.exe $($kubeletArgs -join ' ')" -StartupType Automatic | Out-Null
}}
Restart-Service kubelet
"#,
        node = block.node_name,
        labels = labels.join(","),
        taints = taints.join(","),
    )
}
