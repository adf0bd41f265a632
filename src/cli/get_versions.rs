//! `aksup get-versions`: the same answers as `aks-engine-azurestack get-versions`,
//! byte for byte on stdout, with its error messages and exit status.

use std::io::Write;

use clap::Args;
use serde_json::{Map, Value, json};

use super::{ExitStatus, UserError};
use crate::model::to_aks_engine_json;
use crate::versions::{self, Cloud, VersionProfile};

#[derive(Debug, Args)]
pub struct GetVersionsArgs {
    /// Kubernetes version (optional)
    #[arg(long = "version", value_name = "VERSION", default_value = "")]
    pub version: String,
    /// Kubernetes cluster with Windows nodes (optional)
    #[arg(long)]
    pub windows: bool,
    /// The target Azure cloud
    #[arg(long = "azure-env", default_value = "AzurePublicCloud")]
    pub azure_env: String,
    /// Output format. Allowed values: human, json
    #[arg(short = 'o', long = "output", default_value = "human")]
    pub output: String,
}

/// An error printed exactly as aks-engine's cobra root prints it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct CompatError(String);

pub fn run(args: &GetVersionsArgs) -> Result<ExitStatus, UserError> {
    match render(args) {
        Ok(text) => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .map_err(|err| {
                    UserError::failed(anyhow::Error::new(err).context("cannot write to stdout"))
                })?;
            Ok(ExitStatus::Success)
        }
        Err(message) => {
            // aks-engine (cobra) prints `Error: <message>` and exits 1.
            eprintln!("Error: {message}");
            eprintln!("Run 'aksup get-versions --help' for usage.");
            Ok(ExitStatus::Refused)
        }
    }
}

/// The exact stdout of a successful run, or aks-engine's error message.
pub fn render(args: &GetVersionsArgs) -> Result<String, String> {
    let cloud = Cloud::from_azure_env(&args.azure_env);
    // aks-engine computes the list first, then looks at the output format.
    let profiles = versions::version_profiles(Some(&args.version), args.windows, cloud)
        .map_err(|err| CompatError(err.to_string()).to_string())?;
    match args.output.as_str() {
        "json" => Ok(render_json(&profiles)),
        "human" => Ok(render_human(&profiles)),
        other => Err(format!("output format \"{other}\" is not supported")),
    }
}

/// `{"orchestrators":[…]}` ascending, 2-space indent, and the blank line that
/// Go's encoder newline plus `fmt.Println` leave.
fn render_json(profiles: &[VersionProfile]) -> String {
    let orchestrators: Vec<Value> = profiles
        .iter()
        .map(|profile| {
            let mut entry = Map::new();
            entry.insert("orchestratorType".into(), json!("Kubernetes"));
            entry.insert("orchestratorVersion".into(), json!(profile.version));
            if profile.is_default {
                entry.insert("default".into(), json!(true));
            }
            if !profile.upgrades.is_empty() {
                let upgrades: Vec<Value> = profile
                    .upgrades
                    .iter()
                    .map(|upgrade| json!({"orchestratorType": "", "orchestratorVersion": upgrade}))
                    .collect();
                entry.insert("upgrades".into(), Value::Array(upgrades));
            }
            Value::Object(entry)
        })
        .collect();
    let mut text = to_aks_engine_json(&json!({ "orchestrators": orchestrators }));
    text.push('\n');
    text
}

/// Newest first, columns padded like Go's tabwriter (minwidth 0, padding 1,
/// pad char space): the first column is as wide as its widest cell plus one.
fn render_human(profiles: &[VersionProfile]) -> String {
    const HEADER: (&str, &str) = ("Version", "Upgrades");
    let width = profiles
        .iter()
        .map(|profile| profile.version.chars().count())
        .chain(std::iter::once(HEADER.0.len()))
        .max()
        .unwrap_or(0)
        + 1;
    let mut out = String::new();
    let mut row = |first: &str, second: &str| {
        out.push_str(first);
        out.extend(std::iter::repeat_n(' ', width - first.chars().count()));
        out.push_str(second);
        out.push('\n');
    };
    row(HEADER.0, HEADER.1);
    for profile in profiles.iter().rev() {
        row(&profile.version, &profile.upgrades.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(version: &str, windows: bool, azure_env: &str, output: &str) -> GetVersionsArgs {
        GetVersionsArgs {
            version: version.into(),
            windows,
            azure_env: azure_env.into(),
            output: output.into(),
        }
    }

    #[test]
    fn human_output_matches_the_reference_example() {
        let text = render(&args("", false, "AzureStackCloud", "human")).unwrap();
        assert_eq!(
            text,
            "Version Upgrades\n1.35.0  \n1.34.4  1.35.0\n1.33.10 1.34.4\n"
        );
    }

    #[test]
    fn json_output_is_ascending_with_a_trailing_blank_line() {
        let text = render(&args("1.33.10", false, "azurestackcloud", "json")).unwrap();
        assert_eq!(
            text,
            "{\n  \"orchestrators\": [\n    {\n      \"orchestratorType\": \"Kubernetes\",\n      \"orchestratorVersion\": \"1.33.10\",\n      \"default\": true,\n      \"upgrades\": [\n        {\n          \"orchestratorType\": \"\",\n          \"orchestratorVersion\": \"1.34.4\"\n        }\n      ]\n    }\n  ]\n}\n\n"
        );
    }

    #[test]
    fn the_version_error_wins_over_the_output_error() {
        assert_eq!(
            render(&args("1.99.0", false, "AzureStackCloud", "yaml")),
            Err("Kubernetes version 1.99.0 is not supported".to_owned())
        );
        assert_eq!(
            render(&args("", false, "AzureStackCloud", "yaml")),
            Err("output format \"yaml\" is not supported".to_owned())
        );
    }
}
