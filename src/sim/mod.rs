//! Simulator of an Azure Stack Hub stamp and its cluster, served on loopback.

// ARM errors carry the whole error body; they are built once per failed request.
#[allow(clippy::result_large_err)]
pub mod arm;
pub mod bootstrap;
pub mod clock;
pub mod faults;
pub mod images;
pub mod kube;
#[allow(clippy::result_large_err)]
pub mod lifecycle;
pub mod requests;
pub mod seed;
pub mod server;
pub mod template;
pub mod tls;
pub mod util;
pub mod world;

pub use server::{AadEndpoints, AdfsEndpoints, Endpoints, Error, SimOptions, Simulator};
pub use world::{Profile, Timings, World};
