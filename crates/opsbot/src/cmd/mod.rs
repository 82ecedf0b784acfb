//! Subcommand wiring. Every subcommand returns `anyhow::Result<ExitCode>`; an `Err` is
//! printed as one line (with its causes joined by `: `) and exits with code 2.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::{Cli, Command};

#[cfg(feature = "app")]
pub mod app;
pub mod config;
#[cfg(feature = "health")]
pub mod health;
#[cfg(feature = "scan")]
pub mod hook;
#[cfg(feature = "scan")]
pub mod scan;
#[cfg(feature = "tfupdate")]
pub mod tfupdate;

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Configuration file. Defaults to ./opsbot.toml when it exists.
    #[arg(long, global = true, env = "OPSBOT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log format on stderr: `auto` is human-readable on a terminal and JSON otherwise
    /// in CI and Lambda.
    #[arg(long, global = true, value_enum, default_value_t = LogFormatArg::Auto)]
    pub log_format: LogFormatArg,

    /// More logging (--verbose info, twice debug, three times trace). RUST_LOG overrides.
    /// Long form only: `-v` is `tfupdate`'s `--version`, as in tfupdate.
    #[arg(long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Auto,
    Text,
    Json,
}

pub fn run(cli: Cli) -> ExitCode {
    let format = match cli.global.log_format {
        LogFormatArg::Auto => opsbot_core::telemetry::LogFormat::Auto,
        LogFormatArg::Text => opsbot_core::telemetry::LogFormat::Text,
        LogFormatArg::Json => opsbot_core::telemetry::LogFormat::Json,
    };
    let verbosity = match &cli.command {
        #[cfg(feature = "tfupdate")]
        Command::Tfupdate(_) => tfupdate::log_verbosity(cli.global.verbose),
        _ => cli.global.verbose,
    };
    opsbot_core::telemetry::init(format, verbosity);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("opsbot: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let global = cli.global;
    let result = runtime.block_on(async move {
        match cli.command {
            #[cfg(feature = "scan")]
            Command::Scan(args) => scan::run(&global, args).await,
            #[cfg(feature = "tfupdate")]
            Command::Tfupdate(args) => tfupdate::run(&global, args).await,
            #[cfg(feature = "health")]
            Command::Health(args) => health::run(&global, args).await,
            #[cfg(feature = "app")]
            Command::App(args) => app::run(&global, args).await,
            #[cfg(feature = "scan")]
            Command::Hook(args) => hook::run(&global, args).await,
            Command::Config(args) => config::run(&global, args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("opsbot: {}", one_line(&err));
            ExitCode::from(2)
        }
    }
}

impl GlobalArgs {
    /// Loads `--config` / `$OPSBOT_CONFIG` / `./opsbot.toml` (defaults when none), with
    /// `OPSBOT__TABLE__KEY` environment overrides applied.
    pub fn config(&self) -> anyhow::Result<opsbot_core::Config> {
        let path = opsbot_core::Config::discover(self.config.as_deref());
        Ok(opsbot_core::Config::load(path.as_deref())?)
    }
}

/// GitHub settings from the environment (`GITHUB_API_URL`, `GITHUB_REPOSITORY`,
/// `GITHUB_TOKEN` or the App variables).
pub fn github_settings() -> anyhow::Result<opsbot_core::GitHubSettings> {
    Ok(opsbot_core::GitHubSettings::from_env()?)
}

/// `outer: cause: root cause` on one line, never a backtrace.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}
