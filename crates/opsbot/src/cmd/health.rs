//! `opsbot health` (not built yet).

use std::process::ExitCode;

use clap::Args;

use super::GlobalArgs;

#[derive(Debug, Args)]
pub struct HealthArgs {}

pub async fn run(_global: &GlobalArgs, _args: HealthArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`opsbot health` is not built yet")
}
