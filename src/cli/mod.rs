//! Command-line interface: clap types, one file per subcommand.

pub mod simulator;
