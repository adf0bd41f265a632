//! Node operations on the Kubernetes API (see issue: node operations).
