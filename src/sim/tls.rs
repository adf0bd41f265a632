//! TLS for the simulator (placeholder until the sim-arm branch merges).

/// Request extension inserted for connections that presented a client
/// certificate issued by the simulator CA.
#[derive(Clone, Debug)]
pub struct ClientCertVerified {
    pub common_name: String,
}
