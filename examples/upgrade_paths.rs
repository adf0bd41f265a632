//! Reads an apimodel and prints where its cluster can be upgraded to, using the
//! library the way `aksup upgrade` does.
//!
//! ```sh
//! cargo run --example upgrade_paths -- testdata/apimodels/three-masters-two-pools.json
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use aksup::model::ApiModel;
use aksup::versions::{self, Cloud};

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: upgrade_paths <apimodel.json>");
        return ExitCode::from(2);
    };
    let model = match ApiModel::load(&path) {
        Ok(model) => model,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(1);
        }
    };
    if let Err(err) = model.validate() {
        eprintln!("error: {err}");
        return ExitCode::from(1);
    }
    let view = model.view();
    let cloud = if view.is_azure_stack() {
        Cloud::AzureStack
    } else {
        Cloud::AzurePublic
    };
    let current = view.orchestrator_version();
    let table = versions::table(cloud, view.has_windows_pool());
    match versions::upgrade_targets(current, table) {
        Ok(targets) if targets.is_empty() => println!("{current}: no upgrade available"),
        Ok(targets) => println!("{current} -> {}", targets.join(", ")),
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}
