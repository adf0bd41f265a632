//! `aksup get-versions` golden tests: stdout, stderr and exit status for the
//! combinations of --version, --windows, --azure-env and -o.

mod common;

use common::{aksup, transcript};

const CASES: &[(&str, &[&str])] = &[
    // Azure Stack Hub, every reference example.
    ("stack_all_human", &["--azure-env", "AzureStackCloud"]),
    (
        "stack_all_json",
        &["--azure-env", "AzureStackCloud", "-o", "json"],
    ),
    ("stack_lowercase_env", &["--azure-env", "azurestackcloud"]),
    (
        "stack_1_35_0",
        &["--azure-env", "AzureStackCloud", "--version", "1.35.0"],
    ),
    (
        "stack_1_34_4",
        &["--azure-env", "AzureStackCloud", "--version", "1.34.4"],
    ),
    (
        "stack_1_33_10",
        &["--azure-env", "AzureStackCloud", "--version", "1.33.10"],
    ),
    (
        "stack_1_33_5",
        &["--azure-env", "AzureStackCloud", "--version", "1.33.5"],
    ),
    (
        "stack_1_32_9",
        &["--azure-env", "AzureStackCloud", "--version", "1.32.9"],
    ),
    (
        "stack_1_31_13",
        &["--azure-env", "AzureStackCloud", "--version", "1.31.13"],
    ),
    (
        "stack_1_30_14",
        &["--azure-env", "AzureStackCloud", "--version", "1.30.14"],
    ),
    (
        "stack_1_25_7",
        &["--azure-env", "AzureStackCloud", "--version", "1.25.7"],
    ),
    (
        "stack_1_14_7",
        &["--azure-env", "AzureStackCloud", "--version", "1.14.7"],
    ),
    (
        "stack_1_33_5_json",
        &[
            "--azure-env",
            "AzureStackCloud",
            "--version",
            "1.33.5",
            "-o",
            "json",
        ],
    ),
    (
        "stack_1_35_0_json",
        &[
            "--azure-env",
            "AzureStackCloud",
            "--version",
            "1.35.0",
            "--output",
            "json",
        ],
    ),
    // Windows tables.
    (
        "stack_windows_all",
        &["--azure-env", "AzureStackCloud", "--windows"],
    ),
    (
        "stack_windows_json",
        &["--azure-env", "AzureStackCloud", "--windows", "-o", "json"],
    ),
    (
        "stack_windows_1_14_7",
        &[
            "--azure-env",
            "AzureStackCloud",
            "--windows",
            "--version",
            "1.14.7",
        ],
    ),
    (
        "stack_windows_1_25_7",
        &[
            "--azure-env",
            "AzureStackCloud",
            "--windows",
            "--version",
            "1.25.7",
        ],
    ),
    ("public_windows_all", &["--windows"]),
    (
        "public_windows_1_8_12",
        &["--windows", "--version", "1.8.12"],
    ),
    // Public cloud (the default --azure-env).
    ("public_all_human", &[]),
    ("public_all_json", &["-o", "json"]),
    (
        "public_other_env_means_public",
        &["--azure-env", "AzureChinaCloud"],
    ),
    ("public_1_6_6", &["--version", "1.6.6"]),
    ("public_1_10_0_beta_2", &["--version", "1.10.0-beta.2"]),
    (
        "public_1_31_13_json",
        &["--version", "1.31.13", "-o", "json"],
    ),
    // Invalid inputs: aks-engine's messages and exit status 1.
    (
        "invalid_v_prefix",
        &["--azure-env", "AzureStackCloud", "--version", "v1.33.10"],
    ),
    (
        "invalid_unknown_version",
        &["--azure-env", "AzureStackCloud", "--version", "1.99.0"],
    ),
    (
        "invalid_public_only_version_on_stack",
        &["--azure-env", "AzureStackCloud", "--version", "1.6.6"],
    ),
    (
        "invalid_output_yaml",
        &["--azure-env", "AzureStackCloud", "-o", "yaml"],
    ),
    (
        "invalid_version_wins_over_output",
        &["--version", "1.99.0", "-o", "yaml"],
    ),
];

#[test]
fn get_versions_goldens() {
    assert!(CASES.len() >= 25);
    for (name, args) in CASES {
        let text = transcript(aksup().arg("get-versions").args(*args));
        insta::assert_snapshot!(
            format!("get_versions__{name}"),
            text,
            &format!("aksup get-versions {}", args.join(" "))
        );
    }
}

#[test]
fn json_output_ends_with_one_blank_line_and_human_rows_carry_padding() {
    let out = aksup()
        .args([
            "get-versions",
            "--azure-env",
            "AzureStackCloud",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    assert!(out.stdout.ends_with(b"}\n\n"));
    assert!(!out.stdout.ends_with(b"}\n\n\n"));
    let out = aksup()
        .args(["get-versions", "--azure-env", "AzureStackCloud"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "Version Upgrades\n1.35.0  \n1.34.4  1.35.0\n1.33.10 1.34.4\n"
    );
}
