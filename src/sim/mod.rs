//! Simulator of an Azure Stack Hub stamp and its cluster, served on loopback.

pub mod clock;
pub mod kube;
pub mod tls;
