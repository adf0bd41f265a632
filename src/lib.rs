//! aksup — upgrades Kubernetes clusters built by AKS Engine on Azure Stack Hub.
//!
//! The library never prints: operations return results and emit events; the
//! `cli` module turns arguments into options, calls the library and picks the
//! exit code. See `docs/` and the architecture notes in the repository.

pub mod arm;
pub mod cli;
pub mod kube;
pub mod model;
pub mod names;
pub mod report;
pub mod sim;
pub mod template;
pub mod upgrade;
pub mod versions;
