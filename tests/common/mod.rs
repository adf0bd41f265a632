//! Helpers shared by the binary tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The aksup binary with a clean environment (no Azure or kube variables leak in).
pub fn aksup() -> Command {
    let mut command = Command::cargo_bin("aksup").expect("the aksup binary is built");
    for var in [
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "AZURE_SUBSCRIPTION_ID",
        "KUBECONFIG",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command.env("NO_COLOR", "1").env("COLUMNS", "100");
    command
}

/// Runs the command and renders exit code, stdout and stderr as one text for a
/// snapshot. Every stdout line ends in `$` (as `cat -A` shows it) so that
/// trailing spaces and blank lines are part of the golden.
pub fn transcript(command: &mut Command) -> String {
    let output = command.output().expect("the command runs");
    let code = output
        .status
        .code()
        .map_or("signal".to_owned(), |c| c.to_string());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut marked = String::new();
    for line in stdout.split_inclusive('\n') {
        match line.strip_suffix('\n') {
            Some(body) => {
                marked.push_str(body);
                marked.push_str("$\n");
            }
            None => {
                marked.push_str(line);
                marked.push_str("(no newline at end)\n");
            }
        }
    }
    format!(
        "exit: {code}\n--- stdout\n{marked}--- stderr\n{}",
        String::from_utf8_lossy(&output.stderr)
    )
}
