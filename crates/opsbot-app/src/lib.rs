//! opsbot-app: the GitHub App that scans what developers push. It receives `push`,
//! `pull_request` and check re-run webhooks, verifies their signature, reads the added
//! lines from the GitHub API (no clone) and reports an "opsbot / secrets" check run with
//! one annotation per finding. Runs as a plain server or as a Lambda function URL.
//!
//! Pure parts: [`signature`], [`webhook`] (payloads → [`webhook::ScanJob`]), [`report`]
//! (findings → check run output), [`dedup`]. I/O: [`worker`] (GitHub API) and [`server`].

pub mod dedup;
pub mod report;
pub mod server;
pub mod signature;
pub mod webhook;
pub mod worker;

use std::sync::Arc;

use opsbot_core::github::{Credentials, GitHub, GitHubSettings};
use opsbot_scan::{RuleSet, Scanner};
use secrecy::SecretString;

pub use server::{AppConfig, AppState, Mode, ServerHandle, router, run_lambda, serve, serve_until};
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
}

/// The webhook secret from `GITHUB_WEBHOOK_SECRET` (required, non-empty).
pub fn webhook_secret_from_env() -> Result<SecretString, AppError> {
    webhook_secret_from(std::env::var(WEBHOOK_SECRET_ENV).ok())
}

fn webhook_secret_from(value: Option<String>) -> Result<SecretString, AppError> {
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
    if !matches!(settings.credentials, Credentials::App { .. }) {
        return Err(AppError::NotAnApp);
    }
    let app = GitHub::app_client(settings)?;
    let scanner = Arc::new(Scanner::new(&RuleSet::builtin()?));
    Ok(AppState::new(config, Worker::new(app, scanner)))
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
