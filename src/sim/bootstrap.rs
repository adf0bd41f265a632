//! What a booting VM learns from its bootstrap payload.
//!
//! The node template writes a small JSON document, `aksup-node.json`, that the
//! simulator reads in place of running aks-engine's provisioning scripts:
//!
//! ```json
//! {"nodeName": "k8s-agentpool-12345678-3", "kubeletVersion": "v1.34.4",
//!  "role": "agent", "pool": "agentpool",
//!  "labels": {"agentpool": "agentpool", "kubernetes.io/role": "agent"},
//!  "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}
//! ```
//!
//! Only `kubeletVersion` is required. `nodeName` defaults to the VM's computer
//! name lowercased, `role` to `master` when the VM's `poolName` tag is `master`
//! (else `agent`), `pool` to the `poolName` tag; `labels` are the kubelet's
//! `--node-labels` (the simulator adds what a kubelet adds itself: hostname,
//! OS, arch, instance type, region, zone) and `taints` its `--register-with-taints`.
//!
//! It is found, in this order:
//! 1. in the VM's `customData` (base64 of a cloud-init document): a
//!    `write_files` entry whose `path` is `/etc/kubernetes/aksup-node.json`; its
//!    `content` is on one line, either base64 (`encoding: b64` or `base64`) or
//!    the JSON itself (optionally quoted with single quotes);
//! 2. in any extension's `settings.aksupNode` (the JSON object itself).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;
use serde::Deserialize;

use super::world::VirtualMachine;

/// The path of the block in cloud-init's `write_files`.
pub const NODE_FILE: &str = "/etc/kubernetes/aksup-node.json";

/// The bootstrap block.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeBootstrap {
    #[serde(default)]
    pub node_name: Option<String>,
    pub kubelet_version: String,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub pool: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub taints: Vec<Taint>,
}

/// Why no block could be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("no {NODE_FILE} in customData nor aksupNode in extension settings")]
    Missing,
    #[error("customData is not base64")]
    CustomDataEncoding,
    #[error("{NODE_FILE} in customData is not readable: {0}")]
    Content(String),
    #[error("the bootstrap block is not valid: {0}")]
    Json(String),
}

/// Reads the bootstrap block of `vm`.
pub fn read(vm: &VirtualMachine) -> Result<NodeBootstrap, Error> {
    if let Some(custom_data) = &vm.custom_data {
        let decoded = super::util::b64_decode(custom_data).ok_or(Error::CustomDataEncoding)?;
        let text = String::from_utf8_lossy(&decoded);
        if let Some(block) = from_cloud_init(&text)? {
            return Ok(block);
        }
    }
    for extension in &vm.extensions {
        if let Some(node) = extension.settings.get("aksupNode") {
            return serde_json::from_value(node.clone()).map_err(|e| Error::Json(e.to_string()));
        }
    }
    Err(Error::Missing)
}

/// Finds the `write_files` entry for [`NODE_FILE`] in a cloud-init text.
pub fn from_cloud_init(text: &str) -> Result<Option<NodeBootstrap>, Error> {
    let lines: Vec<&str> = text.lines().collect();
    let Some(path_line) = lines.iter().position(|line| {
        let line = line.trim().trim_start_matches("- ").trim();
        line.strip_prefix("path:")
            .is_some_and(|value| unquote(value.trim()) == NODE_FILE)
    }) else {
        return Ok(None);
    };
    // The entry's fields: lines around `path:` up to the neighbouring list items.
    let item_start = (0..=path_line)
        .rev()
        .find(|&index| lines[index].trim_start().starts_with("- "))
        .unwrap_or(path_line);
    let item_end = (path_line + 1..lines.len())
        .find(|&index| {
            lines[index].trim_start().starts_with("- ") || !lines[index].starts_with(' ')
        })
        .unwrap_or(lines.len());
    let mut content = None;
    let mut encoding = None;
    for line in &lines[item_start..item_end] {
        let field = line.trim().trim_start_matches("- ").trim();
        if let Some(value) = field.strip_prefix("content:") {
            content = Some(value.trim().to_owned());
        } else if let Some(value) = field.strip_prefix("encoding:") {
            encoding = Some(unquote(value.trim()).to_ascii_lowercase());
        }
    }
    let content = content.ok_or_else(|| Error::Content("the entry has no content".into()))?;
    let json = match encoding.as_deref() {
        Some("b64" | "base64") => {
            let bytes = super::util::b64_decode(unquote(&content))
                .ok_or_else(|| Error::Content("content is not base64".into()))?;
            String::from_utf8(bytes).map_err(|_| Error::Content("content is not UTF-8".into()))?
        }
        None | Some("text/plain") => unquote(&content).to_owned(),
        Some(other) => return Err(Error::Content(format!("encoding {other} is not supported"))),
    };
    serde_json::from_str(&json)
        .map(Some)
        .map_err(|e| Error::Json(e.to_string()))
}

fn unquote(value: &str) -> &str {
    let value = value.trim();
    for quote in ['\'', '"'] {
        if value.len() >= 2 && value.starts_with(quote) && value.ends_with(quote) {
            return &value[1..value.len() - 1];
        }
    }
    value
}

/// Writes a cloud-init document carrying `block` (what the node template is
/// expected to produce), base64-encoded as `customData`.
pub fn cloud_init_custom_data(block: &serde_json::Value) -> String {
    let content = super::util::b64(block.to_string().as_bytes());
    let text = format!(
        "#cloud-config\nwrite_files:\n- path: {NODE_FILE}\n  permissions: \"0644\"\n  owner: root\n  encoding: b64\n  content: {content}\n"
    );
    super::util::b64(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_base64_entry() {
        let data = cloud_init_custom_data(
            &serde_json::json!({"kubeletVersion": "v1.34.4", "nodeName": "n1"}),
        );
        let text = String::from_utf8(super::super::util::b64_decode(&data).unwrap()).unwrap();
        let block = from_cloud_init(&text).unwrap().unwrap();
        assert_eq!(block.kubelet_version, "v1.34.4");
        assert_eq!(block.node_name.as_deref(), Some("n1"));
    }

    #[test]
    fn reads_an_inline_entry_among_others() {
        let text = r#"#cloud-config
write_files:
- path: /etc/other
  content: hello
- content: '{"kubeletVersion":"1.33.10","labels":{"a":"b"},"taints":[{"key":"k","effect":"NoSchedule"}]}'
  path: "/etc/kubernetes/aksup-node.json"
  permissions: "0644"
runcmd:
- echo hi
"#;
        let block = from_cloud_init(text).unwrap().unwrap();
        assert_eq!(block.kubelet_version, "1.33.10");
        assert_eq!(block.labels["a"], "b");
        assert_eq!(block.taints[0].key, "k");
    }

    #[test]
    fn a_document_without_the_entry_has_none() {
        assert_eq!(
            from_cloud_init("#cloud-config\nruncmd:\n- true\n").unwrap(),
            None
        );
        assert!(matches!(
            from_cloud_init(
                "write_files:\n- path: /etc/kubernetes/aksup-node.json\n  content: '{'\n"
            ),
            Err(Error::Json(_))
        ));
    }
}
