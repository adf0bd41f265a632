//! The upgrade: checks, model adjustments, and (with the engine) observe → plan → execute.

pub mod adjust;
pub mod plan;
pub mod state;
