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
