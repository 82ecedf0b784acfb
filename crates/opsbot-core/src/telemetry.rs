//! Logging setup shared by every binary: human-readable on a terminal, JSON lines in
//! Lambda and CI (where logs are collected by machines), always on stderr so stdout
//! stays clean for reports.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Text on a terminal; JSON when running in Lambda or when stderr is not a terminal.
    Auto,
    Text,
    Json,
}

impl LogFormat {
    /// Resolves `Auto` against the environment.
    pub fn resolve(self) -> LogFormat {
        match self {
            LogFormat::Auto => {
                let in_lambda = std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some();
                if in_lambda || !std::io::stderr().is_terminal() {
                    LogFormat::Json
                } else {
                    LogFormat::Text
                }
            }
            other => other,
        }
    }
}

/// Installs the global subscriber. `verbosity` 0 logs warnings, 1 info, 2 debug, 3+ trace;
/// `RUST_LOG` overrides it. Safe to call twice (the second call does nothing).
pub fn init(format: LogFormat, verbosity: u8) {
    let default = match verbosity {
        0 => "warn",
        1 => "info,opsbot=info",
        2 => "info,opsbot=debug,opsbot_core=debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format.resolve() {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        _ => builder.with_target(false).compact().try_init(),
    };
}

/// Lambda flavour: JSON, info level by default (CloudWatch is the only reader).
pub fn init_lambda() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .without_time()
        .try_init();
}
