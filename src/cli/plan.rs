//! `aksup plan`: `aksup upgrade --dry-run` under its own name.

use super::upgrade::{self, UpgradeArgs};
use super::{ExitStatus, UserError};

pub async fn run(mut args: UpgradeArgs) -> Result<ExitStatus, UserError> {
    args.dry_run = true;
    upgrade::run(args).await
}
