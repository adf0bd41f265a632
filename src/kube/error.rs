use std::path::PathBuf;
use std::time::Duration;

use super::NodeName;
use super::drain::{DrainResult, PodRef};
use super::lock::LockHolder;
use super::ready::NodeStatusReport;
use super::retry;

/// Errors of node operations. Each variant names the step and the node; the
/// underlying API error is the `source`. [`Error::is_retryable`] decides from
/// the HTTP status only.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the kubeconfig {}", path.as_ref().map_or_else(|| "from KUBECONFIG or ~/.kube/config".to_owned(), |p| p.display().to_string()))]
    Kubeconfig {
        path: Option<PathBuf>,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error(
        "cannot build a Kubernetes connection from the api model: {problem}; pass --kubeconfig or fix the api model"
    )]
    ApiModelAccess { problem: String },
    #[error("cannot write the kubeconfig to {path}")]
    WriteKubeconfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the Kubernetes client")]
    Client(#[source] Box<kube::Error>),
    #[error("cannot read node {node}")]
    GetNode {
        node: NodeName,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("node {node} does not exist; check the node name or whether the VM joined the cluster")]
    NodeNotFound { node: NodeName },
    #[error("cannot cordon node {node}")]
    Cordon {
        node: NodeName,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("cannot uncordon node {node}")]
    Uncordon {
        node: NodeName,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("cannot list the pods of node {node}")]
    ListPods {
        node: NodeName,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("cannot read DaemonSet {namespace}/{name} (owner of a pod on node {node})")]
    GetDaemonSet {
        node: NodeName,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("cannot evict pod {pod} from node {node}")]
    Evict {
        node: NodeName,
        pod: PodRef,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("cannot delete pod {pod} on node {node}")]
    DeletePod {
        node: NodeName,
        pod: PodRef,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("cannot read the PodDisruptionBudgets of namespace {namespace} (draining node {node})")]
    ListPdbs {
        node: NodeName,
        namespace: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error(
        "refusing to drain node {node}: {}; the VM was left untouched",
        refused_text(refused)
    )]
    DrainRefused {
        node: NodeName,
        refused: Vec<(PodRef, String)>,
    },
    #[error(
        "node {node} was not drained within {}: {} pod(s) remain ({}); the VM was left untouched. Fix the blocking budgets, raise --cordon-drain-timeout, or pass --drain-timeout-policy force-delete to delete them bypassing their PodDisruptionBudgets",
        humantime(*timeout),
        result.remaining.len(),
        result.remaining.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    DrainTimedOut {
        node: NodeName,
        timeout: Duration,
        result: Box<DrainResult>,
    },
    #[error(
        "node {node} was not Ready with kubelet {expected_version} within {}; last seen: {}",
        humantime(*timeout),
        last.as_ref().map_or_else(|| "never seen".to_owned(), ToString::to_string)
    )]
    NotReady {
        node: NodeName,
        expected_version: String,
        timeout: Duration,
        last: Option<Box<NodeStatusReport>>,
    },
    #[error("cannot copy properties of node {from} to node {to}")]
    CopyProperties {
        from: NodeName,
        to: NodeName,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("cannot {step} the upgrade lock (Lease kube-system/{name})")]
    Lock {
        step: &'static str,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error(
        "another aksup run holds the upgrade lock: {holder}; wait for it to finish, or if that run is dead, pass --break-lock"
    )]
    LockHeld { holder: Box<LockHolder> },
    #[error("this run lost the upgrade lock{}; stop and re-run", holder.as_ref().map(|h| format!(" to {h}")).unwrap_or_default())]
    LockLost { holder: Option<Box<LockHolder>> },
}

impl Error {
    /// True when repeating the step may succeed: the API answered 409, 429 or
    /// a 5xx gateway/server error. Decided from the HTTP status only.
    pub fn is_retryable(&self) -> bool {
        self.api_error().is_some_and(retry::is_retryable)
    }

    /// The Kubernetes API error underneath, if any.
    pub fn api_error(&self) -> Option<&kube::Error> {
        match self {
            Self::Client(source)
            | Self::GetNode { source, .. }
            | Self::Cordon { source, .. }
            | Self::Uncordon { source, .. }
            | Self::ListPods { source, .. }
            | Self::GetDaemonSet { source, .. }
            | Self::Evict { source, .. }
            | Self::DeletePod { source, .. }
            | Self::ListPdbs { source, .. }
            | Self::CopyProperties { source, .. }
            | Self::Lock { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }

    /// The node the failed step was about, if any.
    pub fn node(&self) -> Option<&NodeName> {
        match self {
            Self::GetNode { node, .. }
            | Self::NodeNotFound { node }
            | Self::Cordon { node, .. }
            | Self::Uncordon { node, .. }
            | Self::ListPods { node, .. }
            | Self::GetDaemonSet { node, .. }
            | Self::Evict { node, .. }
            | Self::DeletePod { node, .. }
            | Self::ListPdbs { node, .. }
            | Self::DrainRefused { node, .. }
            | Self::DrainTimedOut { node, .. }
            | Self::NotReady { node, .. } => Some(node),
            Self::CopyProperties { to, .. } => Some(to),
            _ => None,
        }
    }
}

fn refused_text(refused: &[(PodRef, String)]) -> String {
    refused
        .iter()
        .map(|(pod, why)| format!("{pod} ({why})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `1h2m3s` style duration for messages.
pub(crate) fn humantime(duration: Duration) -> String {
    let total = duration.as_secs();
    let (hours, minutes, seconds) = (total / 3600, total / 60 % 60, total % 60);
    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    if seconds > 0 || text.is_empty() {
        text.push_str(&format!("{seconds}s"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_is_decided_by_status() {
        let node = NodeName::new("n");
        let err = Error::Cordon {
            node: node.clone(),
            source: Box::new(retry::api_error(409, "Conflict", "x")),
        };
        assert!(err.is_retryable());
        assert_eq!(err.node(), Some(&node));
        let err = Error::Cordon {
            node: node.clone(),
            source: Box::new(retry::api_error(403, "Forbidden", "x")),
        };
        assert!(!err.is_retryable());
        assert!(!Error::NodeNotFound { node }.is_retryable());
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(humantime(Duration::from_secs(1200)), "20m");
        assert_eq!(humantime(Duration::from_secs(3725)), "1h2m5s");
        assert_eq!(humantime(Duration::ZERO), "0s");
    }
}
