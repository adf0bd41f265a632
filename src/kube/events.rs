//! Progress of node operations, reported through a callback. The library never
//! prints: the `report` layer turns these events into bars or JSON lines.

use std::sync::Mutex;
use std::time::Duration;

use super::NodeName;
use super::drain::{BlockedPod, PodRef};
use super::lock::LockHolder;

/// Why the drain leaves a pod alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// A static pod's mirror (`kubernetes.io/config.mirror`): the kubelet owns it.
    MirrorPod,
    /// Owned by an existing DaemonSet, which would recreate it on the node anyway.
    DaemonSet { daemon_set: String },
}

/// One thing that happened during a node operation.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeEvent {
    /// A call failed with a retryable status and is repeated after `delay`.
    Retrying {
        what: String,
        status: u16,
        attempt: u32,
        delay: Duration,
    },
    Cordoned {
        node: NodeName,
    },
    /// The node was unschedulable already; `by_aksup` tells whether aksup did it.
    AlreadyCordoned {
        node: NodeName,
        by_aksup: bool,
    },
    Uncordoned {
        node: NodeName,
    },
    /// The node was cordoned before aksup ran: it stays cordoned.
    KeptCordoned {
        node: NodeName,
    },
    /// The node does not exist (any more); the operation has nothing to do.
    NodeNotFound {
        node: NodeName,
    },
    DrainStarted {
        node: NodeName,
        timeout: Duration,
    },
    PodSkipped {
        node: NodeName,
        pod: PodRef,
        reason: SkipReason,
    },
    /// Pods using emptyDir volumes are evicted: their local data is lost.
    EmptyDirPodsEvicted {
        node: NodeName,
        pods: Vec<PodRef>,
    },
    /// A pod owned by a DaemonSet that no longer exists is evicted (allowed by
    /// `--allow-unreplicated-pods`).
    OrphanedDaemonSetPodEvicted {
        node: NodeName,
        pod: PodRef,
        daemon_set: String,
    },
    /// A pod without a controller is evicted (allowed by `--allow-unreplicated-pods`).
    UnreplicatedPodEvicted {
        node: NodeName,
        pod: PodRef,
    },
    EvictionRequested {
        node: NodeName,
        pod: PodRef,
    },
    /// A finished pod (Succeeded or Failed) was deleted.
    FinishedPodDeleted {
        node: NodeName,
        pod: PodRef,
    },
    PodGone {
        node: NodeName,
        pod: PodRef,
    },
    /// Evictions are refused (429): every blocking pod and its budget.
    DrainBlocked {
        node: NodeName,
        blocked: Vec<BlockedPod>,
        elapsed: Duration,
        remaining: Duration,
    },
    /// The drain timeout expired and the operator chose to delete the remaining
    /// pods: their PodDisruptionBudgets are bypassed.
    PdbBypassed {
        node: NodeName,
        pods: Vec<BlockedPod>,
    },
    DrainFinished {
        node: NodeName,
        evicted: usize,
        elapsed: Duration,
    },
    WaitingReady {
        node: NodeName,
        expected_version: String,
    },
    NodeReady {
        node: NodeName,
        kubelet_version: String,
    },
    PropertiesCopied {
        from: NodeName,
        to: NodeName,
        labels: usize,
        annotations: usize,
        taints: usize,
    },
    /// `preserveNodesProperties` is false for the pool: nothing copied.
    PropertiesNotPreserved {
        from: NodeName,
        to: NodeName,
    },
    /// A previous run completed this copy: nothing done.
    PropertiesAlreadyCopied {
        from: NodeName,
        to: NodeName,
    },
    LockAcquired {
        holder: LockHolder,
    },
    /// The previous holder's lease had expired; this run took it over.
    LockTakenOver {
        previous: LockHolder,
    },
    LockRenewed {
        holder: LockHolder,
    },
    /// The lease now names another holder (or is gone): this run lost the lock.
    LockLost {
        holder: Option<LockHolder>,
    },
    /// The lock was broken on request (`--break-lock`).
    LockBroken {
        previous: Option<LockHolder>,
    },
    LockReleased {
        holder: LockHolder,
    },
}

/// Receives the events of node operations.
pub trait NodeEvents: Send + Sync {
    fn on_event(&self, event: NodeEvent);
}

/// Drops every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEvents;

impl NodeEvents for NoEvents {
    fn on_event(&self, _event: NodeEvent) {}
}

/// Keeps every event in order (tests, transcripts).
#[derive(Debug, Default)]
pub struct RecordedEvents(Mutex<Vec<NodeEvent>>);

impl RecordedEvents {
    /// The events recorded so far; the record is emptied.
    pub fn take(&self) -> Vec<NodeEvent> {
        match self.0.lock() {
            Ok(mut events) => std::mem::take(&mut *events),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }
}

impl NodeEvents for RecordedEvents {
    fn on_event(&self, event: NodeEvent) {
        match self.0.lock() {
            Ok(mut events) => events.push(event),
            Err(poisoned) => poisoned.into_inner().push(event),
        }
    }
}

impl<T: NodeEvents + ?Sized> NodeEvents for std::sync::Arc<T> {
    fn on_event(&self, event: NodeEvent) {
        (**self).on_event(event);
    }
}

/// How prominently a reporter should show an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Detail (retries, renewals, pods gone): logs and verbose output.
    Debug,
    Info,
    /// Something the operator should read: data lost, a lock taken over, ...
    Warning,
}

impl NodeEvent {
    pub fn severity(&self) -> Severity {
        match self {
            Self::Retrying { .. }
            | Self::PodGone { .. }
            | Self::PodSkipped { .. }
            | Self::EvictionRequested { .. }
            | Self::LockRenewed { .. } => Severity::Debug,
            Self::EmptyDirPodsEvicted { .. }
            | Self::OrphanedDaemonSetPodEvicted { .. }
            | Self::UnreplicatedPodEvicted { .. }
            | Self::DrainBlocked { .. }
            | Self::PdbBypassed { .. }
            | Self::KeptCordoned { .. }
            | Self::LockTakenOver { .. }
            | Self::LockLost { .. }
            | Self::LockBroken { .. } => Severity::Warning,
            _ => Severity::Info,
        }
    }
}

fn pods_text(pods: &[PodRef]) -> String {
    pods.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn secs(duration: &Duration) -> String {
    super::error::humantime(*duration)
}

impl std::fmt::Display for NodeEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Retrying {
                what,
                status,
                attempt,
                delay,
            } => {
                write!(
                    f,
                    "{what}: the API answered {status}; retry {attempt} in {}",
                    secs(delay)
                )
            }
            Self::Cordoned { node } => write!(f, "cordoned {node}"),
            Self::AlreadyCordoned {
                node,
                by_aksup: true,
            } => write!(f, "{node} is already cordoned (by aksup)"),
            Self::AlreadyCordoned {
                node,
                by_aksup: false,
            } => {
                write!(
                    f,
                    "{node} was cordoned before this run; it will stay cordoned"
                )
            }
            Self::Uncordoned { node } => write!(f, "uncordoned {node}"),
            Self::KeptCordoned { node } => {
                write!(
                    f,
                    "{node} stays cordoned: it was cordoned before this run, not by aksup"
                )
            }
            Self::NodeNotFound { node } => write!(f, "node {node} does not exist; nothing to do"),
            Self::DrainStarted { node, timeout } => {
                write!(f, "draining {node} (timeout {})", secs(timeout))
            }
            Self::PodSkipped {
                node,
                pod,
                reason: SkipReason::MirrorPod,
            } => {
                write!(f, "{node}: skipping {pod} (static pod mirror)")
            }
            Self::PodSkipped {
                node,
                pod,
                reason: SkipReason::DaemonSet { daemon_set },
            } => {
                write!(f, "{node}: skipping {pod} (DaemonSet {daemon_set})")
            }
            Self::EmptyDirPodsEvicted { node, pods } => {
                write!(
                    f,
                    "{node}: evicting pods with emptyDir volumes, their local data is lost: {}",
                    pods_text(pods)
                )
            }
            Self::OrphanedDaemonSetPodEvicted {
                node,
                pod,
                daemon_set,
            } => {
                write!(
                    f,
                    "{node}: evicting {pod}, whose DaemonSet {daemon_set} no longer exists"
                )
            }
            Self::UnreplicatedPodEvicted { node, pod } => {
                write!(
                    f,
                    "{node}: evicting {pod}, which no controller will recreate"
                )
            }
            Self::EvictionRequested { node, pod } => write!(f, "{node}: evicting {pod}"),
            Self::FinishedPodDeleted { node, pod } => {
                write!(f, "{node}: deleted finished pod {pod}")
            }
            Self::PodGone { node, pod } => write!(f, "{node}: {pod} is gone"),
            Self::DrainBlocked {
                node,
                blocked,
                elapsed,
                remaining,
            } => {
                write!(
                    f,
                    "drain of {node} blocked for {} ({} left):",
                    secs(elapsed),
                    secs(remaining)
                )?;
                for pod in blocked {
                    write!(f, "\n  {pod}")?;
                }
                Ok(())
            }
            Self::PdbBypassed { node, pods } => {
                write!(
                    f,
                    "DRAIN TIMEOUT on {node}: deleting {} pod(s) BYPASSING their PodDisruptionBudgets:",
                    pods.len()
                )?;
                for pod in pods {
                    write!(f, "\n  {pod}")?;
                }
                Ok(())
            }
            Self::DrainFinished {
                node,
                evicted,
                elapsed,
            } => {
                write!(
                    f,
                    "drained {node}: {evicted} pod(s) evicted in {}",
                    secs(elapsed)
                )
            }
            Self::WaitingReady {
                node,
                expected_version,
            } => {
                write!(
                    f,
                    "waiting for {node} to be Ready with kubelet {expected_version}"
                )
            }
            Self::NodeReady {
                node,
                kubelet_version,
            } => write!(f, "{node} is Ready (kubelet {kubelet_version})"),
            Self::PropertiesCopied {
                from,
                to,
                labels,
                annotations,
                taints,
            } => write!(
                f,
                "copied {labels} label(s), {annotations} annotation(s) and {taints} taint(s) from {from} to {to}"
            ),
            Self::PropertiesNotPreserved { from, to } => {
                write!(
                    f,
                    "preserveNodesProperties is off: nothing copied from {from} to {to}"
                )
            }
            Self::PropertiesAlreadyCopied { from, to } => {
                write!(
                    f,
                    "{to} already carries the properties of {from} (copied by a previous run)"
                )
            }
            Self::LockAcquired { holder } => write!(f, "acquired the upgrade lock as {holder}"),
            Self::LockTakenOver { previous } => {
                write!(f, "took over the expired upgrade lock of {previous}")
            }
            Self::LockRenewed { .. } => write!(f, "renewed the upgrade lock"),
            Self::LockLost {
                holder: Some(holder),
            } => write!(f, "lost the upgrade lock to {holder}"),
            Self::LockLost { holder: None } => {
                write!(f, "lost the upgrade lock: the lease was deleted")
            }
            Self::LockBroken {
                previous: Some(previous),
            } => write!(f, "broke the upgrade lock held by {previous}"),
            Self::LockBroken { previous: None } => write!(f, "no upgrade lock to break"),
            Self::LockReleased { .. } => write!(f, "released the upgrade lock"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::drain::BlockingPdb;

    fn pod(name: &str) -> PodRef {
        PodRef {
            namespace: "default".into(),
            name: name.into(),
            uid: "u".into(),
        }
    }

    #[test]
    fn events_read_as_sentences_and_warnings_stand_out() {
        let node = NodeName::new("k8s-agent-0");
        let blocked = BlockedPod {
            pod: pod("web-1"),
            reason: "Cannot evict pod as it would violate the pod's disruption budget.".into(),
            pdbs: vec![BlockingPdb {
                namespace: "default".into(),
                name: "web-pdb".into(),
                disruptions_allowed: 0,
                current_healthy: 2,
                desired_healthy: 2,
                expected_pods: 2,
            }],
        };
        let event = NodeEvent::DrainBlocked {
            node: node.clone(),
            blocked: vec![blocked.clone()],
            elapsed: Duration::from_secs(90),
            remaining: Duration::from_secs(1110),
        };
        assert_eq!(
            event.to_string(),
            "drain of k8s-agent-0 blocked for 1m30s (18m30s left):\n  default/web-1: Cannot evict pod as it would violate the pod's disruption budget.; PodDisruptionBudget default/web-pdb (disruptionsAllowed 0, healthy 2 of 2 desired, 2 expected)"
        );
        assert_eq!(event.severity(), Severity::Warning);
        let bypass = NodeEvent::PdbBypassed {
            node: node.clone(),
            pods: vec![blocked],
        };
        assert!(
            bypass
                .to_string()
                .starts_with("DRAIN TIMEOUT on k8s-agent-0: deleting 1 pod(s) BYPASSING")
        );
        let emptydir = NodeEvent::EmptyDirPodsEvicted {
            node: node.clone(),
            pods: vec![pod("a"), pod("b")],
        };
        assert_eq!(
            emptydir.to_string(),
            "k8s-agent-0: evicting pods with emptyDir volumes, their local data is lost: default/a, default/b"
        );
        assert_eq!(
            NodeEvent::Cordoned { node: node.clone() }.severity(),
            Severity::Info
        );
        assert_eq!(
            NodeEvent::PodGone {
                node,
                pod: pod("a")
            }
            .severity(),
            Severity::Debug
        );
    }
}
