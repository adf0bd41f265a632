//! `--help` of every command, as users see it.

mod common;

use common::{aksup, transcript};

#[test]
fn help_of_each_command() {
    for (name, args) in [
        ("root", vec!["--help"]),
        ("get_versions", vec!["get-versions", "--help"]),
        ("upgrade", vec!["upgrade", "--help"]),
        ("simulator_serve", vec!["simulator", "serve", "--help"]),
    ] {
        let text = transcript(aksup().args(&args));
        insta::assert_snapshot!(format!("help__{name}"), text);
    }
}

#[test]
fn unknown_flags_are_usage_errors() {
    let out = aksup()
        .args(["upgrade", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
}
