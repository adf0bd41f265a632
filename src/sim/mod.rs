//! Simulator of an Azure Stack Hub stamp and its cluster, served on loopback.

pub mod arm;
pub mod bootstrap;
pub mod clock;
pub mod faults;
pub mod images;
pub mod kube;
pub mod lifecycle;
pub mod requests;
pub mod seed;
pub mod template;
pub mod tls;
pub mod util;
pub mod world;
pub mod server;

pub use server::{AadEndpoints, AdfsEndpoints, Endpoints, Error, SimOptions, Simulator};
pub use world::{Profile, Timings, World};
