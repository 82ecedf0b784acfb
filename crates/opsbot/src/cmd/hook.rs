//! `opsbot hook` (not built yet).

use std::process::ExitCode;

use clap::Args;

use super::GlobalArgs;

#[derive(Debug, Args)]
pub struct HookArgs {}

pub async fn run(_global: &GlobalArgs, _args: HookArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`opsbot hook` is not built yet")
}
