//! `opsbot app` (not built yet).

use std::process::ExitCode;

use clap::Args;

use super::GlobalArgs;

#[derive(Debug, Args)]
pub struct AppArgs {}

pub async fn run(_global: &GlobalArgs, _args: AppArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`opsbot app` is not built yet")
}
