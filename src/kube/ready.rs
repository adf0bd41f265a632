//! Wait until a node is Ready with the expected kubelet version: a watch
//! (kube-runtime `watch_object`), bounded by a timeout. On timeout the error
//! carries the node's last seen conditions.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};

use super::events::{NodeEvent, NodeEvents};
use super::{Error, NodeName, Result};

/// A node that became Ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyResult {
    pub node: NodeName,
    pub kubelet_version: String,
    pub elapsed: Duration,
}

/// One node condition as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionReport {
    pub type_: String,
    pub status: String,
    pub reason: Option<String>,
    pub message: Option<String>,
}

/// The node's state when the wait gave up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeStatusReport {
    pub kubelet_version: Option<String>,
    pub conditions: Vec<ConditionReport>,
}

impl std::fmt::Display for NodeStatusReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kubelet {}",
            self.kubelet_version.as_deref().unwrap_or("unknown")
        )?;
        if self.conditions.is_empty() {
            return f.write_str(", no conditions");
        }
        for condition in &self.conditions {
            write!(f, ", {}={}", condition.type_, condition.status)?;
            if let Some(reason) = condition.reason.as_deref().filter(|r| !r.is_empty()) {
                write!(f, " ({reason}")?;
                if let Some(message) = condition.message.as_deref().filter(|m| !m.is_empty()) {
                    write!(f, ": {message}")?;
                }
                f.write_str(")")?;
            }
        }
        Ok(())
    }
}

impl NodeStatusReport {
    pub fn of(node: &Node) -> Self {
        let status = node.status.as_ref();
        let mut conditions: Vec<ConditionReport> = status
            .and_then(|status| status.conditions.as_ref())
            .into_iter()
            .flatten()
            .map(|condition| ConditionReport {
                type_: condition.type_.clone(),
                status: condition.status.clone(),
                reason: condition.reason.clone(),
                message: condition.message.clone(),
            })
            .collect();
        conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
        Self {
            kubelet_version: status
                .and_then(|s| s.node_info.as_ref())
                .map(|info| info.kubelet_version.clone()),
            conditions,
        }
    }

    /// True when the node is Ready and its kubelet runs `expected_version`.
    pub fn is_ready_at(&self, expected_version: &str) -> bool {
        let ready = self
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ready
            && self
                .kubelet_version
                .as_deref()
                .is_some_and(|version| same_version(version, expected_version))
    }
}

/// Compares Kubernetes versions ignoring a leading `v` on either side.
pub fn same_version(a: &str, b: &str) -> bool {
    let strip = |v: &str| v.trim().trim_start_matches(['v', 'V']).to_owned();
    strip(a) == strip(b)
}

/// Waits until `node` is Ready with kubelet `expected_version`, at most `timeout`.
#[tracing::instrument(skip_all, fields(node = %node, expected = expected_version))]
pub async fn wait_ready(
    client: &kube::Client,
    node: &NodeName,
    expected_version: &str,
    timeout: Duration,
    events: &dyn NodeEvents,
) -> Result<ReadyResult> {
    let start = tokio::time::Instant::now();
    events.on_event(NodeEvent::WaitingReady {
        node: node.clone(),
        expected_version: expected_version.to_owned(),
    });
    let nodes: Api<Node> = Api::all(client.clone());
    let mut last: Option<NodeStatusReport> = None;
    let watch = async {
        let stream = watcher::watch_object(nodes, node.as_str()).default_backoff();
        futures::pin_mut!(stream);
        while let Some(item) = stream.next().await {
            // Watch errors are retried by the backoff until the timeout.
            let Ok(Some(seen)) = item else { continue };
            let report = NodeStatusReport::of(&seen);
            let ready = report.is_ready_at(expected_version);
            let version = report.kubelet_version.clone().unwrap_or_default();
            last = Some(report);
            if ready {
                return Some(version);
            }
        }
        None
    };
    match tokio::time::timeout(timeout, watch).await {
        Ok(Some(kubelet_version)) => {
            events.on_event(NodeEvent::NodeReady {
                node: node.clone(),
                kubelet_version: kubelet_version.clone(),
            });
            Ok(ReadyResult {
                node: node.clone(),
                kubelet_version,
                elapsed: start.elapsed(),
            })
        }
        Ok(None) | Err(_) => Err(Error::NotReady {
            node: node.clone(),
            expected_version: expected_version.to_owned(),
            timeout,
            last: last.map(Box::new),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_without_v_prefix() {
        assert!(same_version("v1.30.4", "1.30.4"));
        assert!(same_version("1.30.4", "v1.30.4"));
        assert!(!same_version("v1.30.4", "1.30.5"));
    }
}
