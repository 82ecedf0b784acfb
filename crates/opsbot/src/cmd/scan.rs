//! `opsbot scan` (not built yet).

use std::process::ExitCode;

use clap::Args;

use super::GlobalArgs;

#[derive(Debug, Args)]
pub struct ScanArgs {}

pub async fn run(_global: &GlobalArgs, _args: ScanArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`opsbot scan` is not built yet")
}
