//! The `opsbot` command line: argument parsing and wiring only. Each subcommand lives in
//! `cmd/<name>.rs` and calls into a library crate that does the work.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// opsbot takes the toil off an SRE team: it files AWS Health events as GitHub issues,
/// opens pull requests when Terraform, providers or modules have new releases, and scans
/// files, commits and pull requests for leaked secrets.
///
/// GitHub access is configured with the same variables GitHub Actions sets:
/// GITHUB_TOKEN (or GITHUB_APP_ID + GITHUB_APP_PRIVATE_KEY), GITHUB_REPOSITORY (owner/name)
/// and GITHUB_API_URL (default https://api.github.com; GitHub Enterprise: https://HOST/api/v3).
#[derive(Debug, Parser)]
#[command(name = "opsbot", version, about, long_about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: cmd::GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process; in the scanner-only build `Scan` is simply the biggest variant.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    #[cfg(feature = "scan")]
    /// Scan files, staged changes, commit ranges or stdin for secrets.
    Scan(cmd::scan::ScanArgs),
    #[cfg(feature = "tfupdate")]
    /// Bump Terraform, provider and module version pins (tfupdate-compatible) and open PRs.
    Tfupdate(cmd::tfupdate::TfupdateArgs),
    #[cfg(feature = "health")]
    /// File AWS Health events as GitHub issues (the Lambda's logic, from the command line).
    Health(cmd::health::HealthArgs),
    #[cfg(feature = "app")]
    /// Run the GitHub App that scans pushes and pull requests and reports check runs.
    App(cmd::app::AppArgs),
    #[cfg(feature = "scan")]
    /// Install git hooks (a pre-commit hook that runs `opsbot scan --staged`).
    Hook(cmd::hook::HookArgs),
    /// Check and show the configuration: opsbot.toml and the GitHub environment.
    Config(cmd::config::ConfigArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help/version to stdout with exit 0 and usage errors to stderr with 2.
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    cmd::run(cli)
}
