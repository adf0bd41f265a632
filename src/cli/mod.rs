//! Command-line interface: clap types, one file per subcommand. This layer
//! turns arguments into options, calls the library, prints, and picks the exit
//! code; it holds no upgrade logic.

pub mod execute;
pub mod get_versions;
pub mod plan;
pub mod rehearsal;
pub mod simulator;
pub mod upgrade;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Upgrade Kubernetes clusters built by AKS Engine on Azure Stack Hub.
#[derive(Debug, Parser)]
#[command(name = "aksup", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    /// More logs on stderr (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Same as -v (aks-engine's flag).
    #[arg(long, global = true)]
    pub debug: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Display supported Kubernetes versions and upgrade versions (as aks-engine-azurestack get-versions)
    GetVersions(get_versions::GetVersionsArgs),
    /// Upgrade an existing AKS Engine-created Kubernetes cluster, one node at a time
    Upgrade(Box<upgrade::UpgradeArgs>),
    /// Show the steps `upgrade` would take (same flags as upgrade; changes nothing)
    Plan(Box<upgrade::UpgradeArgs>),
    /// Run a simulated Azure Stack Hub stamp and cluster on loopback (rehearsals, tests)
    Simulator(simulator::SimulatorArgs),
}

/// How a run ended; `main` maps it to the process exit code once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: done.
    Success,
    /// 1: refused by a check (bad input, invalid upgrade path, a safety gate); nothing changed.
    Refused,
    /// 2: failed while working, or an internal error.
    Failure,
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        match status {
            ExitStatus::Success => ExitCode::SUCCESS,
            ExitStatus::Refused => ExitCode::from(1),
            ExitStatus::Failure => ExitCode::from(2),
        }
    }
}

/// An error for the user: the message chain, hints, and the exit status.
#[derive(Debug)]
pub struct UserError {
    pub error: anyhow::Error,
    pub hints: Vec<String>,
    pub status: ExitStatus,
}

impl UserError {
    pub fn refused(error: impl Into<anyhow::Error>) -> Self {
        Self {
            error: error.into(),
            hints: Vec::new(),
            status: ExitStatus::Refused,
        }
    }

    pub fn failed(error: impl Into<anyhow::Error>) -> Self {
        Self {
            error: error.into(),
            hints: Vec::new(),
            status: ExitStatus::Failure,
        }
    }

    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = err.print();
            return ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2));
        }
    };
    init_logging(cli.verbose.max(u8::from(cli.debug)));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            render_error(&UserError::failed(
                anyhow::Error::new(err).context("cannot start the async runtime"),
            ));
            return ExitStatus::Failure.into();
        }
    };
    let result = runtime.block_on(run(cli));
    match result {
        Ok(status) => status.into(),
        Err(err) => {
            render_error(&err);
            err.status.into()
        }
    }
}

async fn run(cli: Cli) -> Result<ExitStatus, UserError> {
    match cli.command {
        Command::GetVersions(args) => get_versions::run(&args),
        Command::Upgrade(args) => upgrade::run(*args).await,
        Command::Plan(args) => plan::run(*args).await,
        Command::Simulator(args) => simulator::run(args)
            .await
            .map(|()| ExitStatus::Success)
            .map_err(UserError::failed),
    }
}

fn init_logging(verbosity: u8) {
    let default = match verbosity {
        0 => "warn",
        1 => "warn,aksup=debug",
        _ => "warn,aksup=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Prints `error: …`, the `Caused by:` chain and `hint:` lines to stderr
/// (cargo / uv style).
pub fn render_error(err: &UserError) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error: {}", err.error);
    let causes: Vec<String> = err.error.chain().skip(1).map(ToString::to_string).collect();
    if !causes.is_empty() {
        let _ = writeln!(stderr, "\nCaused by:");
        for cause in causes {
            let _ = writeln!(stderr, "  {cause}");
        }
    }
    for hint in &err.hints {
        let _ = writeln!(stderr, "\nhint: {hint}");
    }
}
