//! opsbot-app: the GitHub App that scans what developers push. It receives `push`,
//! `pull_request` and check re-run webhooks, verifies their signature, reads the added
//! lines from the GitHub API (no clone) and reports an "opsbot / secrets" check run with
//! one annotation per finding. Runs as a plain server or as a Lambda function URL.
//!
//! Pure parts: [`signature`], [`webhook`] (payloads → [`webhook::ScanJob`]), [`report`]
//! (findings → check run output), [`dedup`] (the delivery ledger port). I/O: [`worker`]
//! (GitHub API), [`server`] (`opsbot app serve`), and on AWS [`lambda`] (ingest → SQS
//! [`queue`] → worker, de-duplicated in DynamoDB by [`dynamodb`]).

pub mod dedup;
pub mod dynamodb;
pub mod lambda;
pub mod queue;
pub mod redeliver;
pub mod report;
pub mod send_test;
pub mod server;
pub mod signature;
pub mod webhook;
pub mod worker;

use std::sync::Arc;

use opsbot_core::github::{Credentials, GitHub, GitHubSettings};
use opsbot_scan::{RuleSet, Scanner};
use secrecy::SecretString;

pub use redeliver::{RedeliverySettings, Sweeper};
pub use server::{
    AppConfig, AppState, Limits, Mode, ServerHandle, Shutdown, router, run_lambda, serve,
    serve_until, serve_with,
};
pub use worker::Worker;

/// The environment variable holding the App's webhook secret.
pub const WEBHOOK_SECRET_ENV: &str = "GITHUB_WEBHOOK_SECRET";

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(
        "{WEBHOOK_SECRET_ENV} is not set: the webhook secret of the GitHub App is required to verify deliveries"
    )]
    MissingWebhookSecret,
    #[error(
        "the App server needs GitHub App credentials: set GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY (or GITHUB_APP_PRIVATE_KEY_PATH)"
    )]
    NotAnApp,
    #[error(transparent)]
    GitHub(#[from] opsbot_core::GitHubError),
    #[error("built-in scanner rules: {0}")]
    Rules(#[from] opsbot_scan::RuleError),
}

/// The default listening address of `opsbot app serve`.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";

/// The `[app]` table of opsbot.toml (the webhook secret and App key stay in the
/// environment, never in a file).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSettings {
    /// Listening address (`--listen` / `OPSBOT_LISTEN` win).
    #[serde(default)]
    pub listen: Option<String>,
    /// Scans running at once (default 8).
    #[serde(default)]
    pub max_concurrent_scans: Option<usize>,
    /// Accepted scans that may wait for a slot; beyond, 503 + Retry-After (default 256).
    #[serde(default)]
    pub queue_capacity: Option<usize>,
    /// Seconds for the request headers (default 10), the body (30) and an idle
    /// keep-alive connection (60).
    #[serde(default)]
    pub header_timeout_secs: Option<u64>,
    #[serde(default)]
    pub body_timeout_secs: Option<u64>,
    #[serde(default)]
    pub keep_alive_secs: Option<u64>,
    /// Open connections at most (default 512).
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Seconds running scans get to finish after SIGTERM (default 20).
    #[serde(default)]
    pub shutdown_deadline_secs: Option<u64>,
    /// Seconds between redelivery sweeps (default 300; 0 turns the sweep off).
    #[serde(default)]
    pub redeliver_interval_secs: Option<u64>,
    /// Seconds a delivery claimed in the shared ledger (`--ledger-table`) stays claimed
    /// when its replica dies mid-scan; then a redelivery to another replica scans it
    /// (default 900; longer than the longest scan).
    #[serde(default)]
    pub claim_lease_secs: Option<u64>,
}

impl AppSettings {
    /// Applies the file's settings on top of `config`.
    pub fn apply(&self, config: &mut AppConfig) {
        use std::time::Duration;
        if let Some(n) = self.max_concurrent_scans {
            config.max_concurrent_scans = n;
        }
        if let Some(n) = self.queue_capacity {
            config.queue_capacity = n;
        }
        if let Some(s) = self.header_timeout_secs {
            config.limits.header_read_timeout = Duration::from_secs(s.max(1));
        }
        if let Some(s) = self.body_timeout_secs {
            config.limits.body_read_timeout = Duration::from_secs(s.max(1));
        }
        if let Some(s) = self.keep_alive_secs {
            config.limits.keep_alive_timeout = Duration::from_secs(s.max(1));
        }
        if let Some(n) = self.max_connections {
            config.limits.max_connections = n.max(1);
        }
        if let Some(s) = self.shutdown_deadline_secs {
            config.shutdown_deadline = Duration::from_secs(s);
        }
        if let Some(s) = self.claim_lease_secs {
            config.claim_lease = Duration::from_secs(s.max(1));
        }
        match self.redeliver_interval_secs {
            Some(0) => config.redelivery = None,
            Some(s) => {
                config.redelivery = Some(RedeliverySettings {
                    interval: Duration::from_secs(s),
                    ..config.redelivery.clone().unwrap_or_default()
                });
            }
            None => {}
        }
    }
}

/// The webhook secret from `GITHUB_WEBHOOK_SECRET` (required, non-empty).
pub fn webhook_secret_from_env() -> Result<SecretString, AppError> {
    webhook_secret_from(std::env::var(WEBHOOK_SECRET_ENV).ok())
}

/// The webhook secret from a looked-up value (required, non-empty).
pub fn webhook_secret_from(value: Option<String>) -> Result<SecretString, AppError> {
    match value {
        Some(v) if !v.is_empty() => Ok(SecretString::from(v)),
        _ => Err(AppError::MissingWebhookSecret),
    }
}

/// True inside AWS Lambda (the runtime API is announced in the environment).
pub fn in_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
}

/// The server state: the App-level GitHub client from `settings` (App credentials
/// required) and the built-in scanner.
pub fn app_state(config: AppConfig, settings: &GitHubSettings) -> Result<AppState, AppError> {
    Ok(AppState::new(config, worker(settings)?))
}

/// The worker alone (App credentials required): for `opsbot app redeliver`.
pub fn worker(settings: &GitHubSettings) -> Result<Worker, AppError> {
    if !matches!(settings.credentials, Credentials::App { .. }) {
        return Err(AppError::NotAnApp);
    }
    let app = GitHub::app_client(settings)?;
    let scanner = Arc::new(Scanner::new(&RuleSet::builtin()?));
    Ok(Worker::new(app, scanner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_secret_is_required() {
        assert!(matches!(
            webhook_secret_from(None),
            Err(AppError::MissingWebhookSecret)
        ));
        assert!(matches!(
            webhook_secret_from(Some(String::new())),
            Err(AppError::MissingWebhookSecret)
        ));
        assert!(webhook_secret_from(Some("s".into())).is_ok());
        assert!(
            AppError::MissingWebhookSecret
                .to_string()
                .contains("GITHUB_WEBHOOK_SECRET")
        );
    }

    #[test]
    fn the_app_manifest_asks_for_the_permissions_and_events_the_code_uses() {
        let manifest: serde_json::Value =
            serde_json::from_str(include_str!("../github-app-manifest.json")).unwrap_or_default();
        let perms = &manifest["default_permissions"];
        assert_eq!(perms["checks"], "write");
        assert_eq!(perms["contents"], "read");
        assert_eq!(perms["pull_requests"], "read");
        let mut events: Vec<&str> = manifest["default_events"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e.as_str()).collect())
            .unwrap_or_default();
        events.sort_unstable();
        let mut handled = webhook::HANDLED_EVENTS.to_vec();
        handled.sort_unstable();
        assert_eq!(events, handled);
        assert_eq!(manifest["hook_attributes"]["active"], true);
    }
}
