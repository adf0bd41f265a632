//! Helpers for the binary tests that run `aksup upgrade --simulator` and
//! `aksup plan --simulator`: snapshot filters for what changes from run to run
//! (temporary paths, durations, the lock holder's host, pid and start time).
#![allow(dead_code)]

use std::path::Path;

use super::common::repo;

/// Escapes `text` for use inside a regular expression.
pub fn regex_escape(text: &str) -> String {
    text.chars()
        .map(|c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                format!("\\{c}")
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Insta settings with every run-dependent part of the output replaced.
/// `sim_dir` is the `--simulator-dir` of the run (or the TMPDIR it lives in).
pub fn settings(sim_dir: &Path) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&regex_escape(&sim_dir.display().to_string()), "[SIMDIR]");
    settings.add_filter(&regex_escape(&repo("").display().to_string()), "[REPO]/");
    settings.add_filter(r"aksup-rehearsal-[A-Za-z0-9_-]+", "[REHEARSAL]");
    settings.add_filter(
        r"acquired the upgrade lock as aksup \S+ on host \S+ \(pid \d+\), upgrading to (\S+), started \S+ \[[^\]]*\]",
        "acquired the upgrade lock as aksup [VERSION] on host [HOST] (pid [PID]), upgrading to $1, started [DATE] [LOCK-ID]",
    );
    // Pods of Deployments: `<name>-<template hash>-<random>`.
    settings.add_filter(r"-[a-z0-9]{10}-[a-z0-9]{5}\b", "-[HASH]-[ID]");
    settings.add_filter(r"\b\d+h\d{2}m\b", "[DUR]");
    settings.add_filter(r"\b\d+m\d{2}s\b", "[DUR]");
    settings.add_filter(r"\b\d+(ms|s)\b", "[DUR]");
    // The summary table pads its TIME column to the longest duration.
    settings.add_filter(r"TIME +RESULT", "TIME  RESULT");
    settings.add_filter(
        r"\[DUR\] +(success|failed|refused|interrupted)",
        "[DUR]  $1",
    );
    settings
}

/// `"durationMs": N` → 0 everywhere in a JSON value.
pub fn zero_durations(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                if key == "durationMs" {
                    *field = serde_json::Value::from(0);
                } else {
                    zero_durations(field);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(zero_durations),
        _ => {}
    }
}

/// Parses every stdout line as one JSON object; panics naming the line that is not.
pub fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("stdout line is not JSON ({err}): {line}"));
            assert!(value.is_object(), "stdout line is not an object: {line}");
            value
        })
        .collect()
}
