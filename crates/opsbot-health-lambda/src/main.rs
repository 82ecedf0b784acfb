//! `opsbot-health-lambda`: the AWS Lambda `bootstrap` (runtime `provided.al2023`) that files
//! AWS Health events as GitHub issues. Thin by design: it reads configuration once at init,
//! then hands every invocation payload to `opsbot_health::HealthService`, the same code
//! `opsbot health handle` runs.
//!
//! Environment: `GITHUB_API_URL`, `GITHUB_REPOSITORY`, `GITHUB_TOKEN` (or `GITHUB_APP_ID` +
//! `GITHUB_APP_PRIVATE_KEY` [+ `GITHUB_APP_INSTALLATION_ID`]), optional `OPSBOT_CONFIG` (path
//! of `opsbot.toml`) and `OPSBOT_SNS_TOPIC_ARN` (alerts for events that could not be filed).
//! In AWS the token or key comes from Secrets Manager (`GITHUB_TOKEN_SECRET_ARN`,
//! `GITHUB_APP_PRIVATE_KEY_SECRET_ARN`) or an SSM SecureString (`…_SSM_PARAMETER`), read
//! once at cold start (`opsbot_core::secret_source`), never from a plain variable.
//!
//! An invocation fails (so AWS retries it, and the on-failure destination / DLQ keeps what
//! never succeeds) when any of its inputs was unusable or could not be filed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use opsbot_core::github::GitHub;
use opsbot_core::secret_source;
use opsbot_health::github::GitHubTracker;
use opsbot_health::sns::SnsNotifier;
use opsbot_health::{HealthConfig, HealthService};
use serde_json::Value;
use tracing::{error, info};

type Service = HealthService<GitHubTracker, Option<SnsNotifier>>;

/// The error an invocation reports to the Runtime API.
#[derive(Debug)]
struct InvocationFailed(String);

impl From<InvocationFailed> for Diagnostic {
    fn from(err: InvocationFailed) -> Diagnostic {
        Diagnostic {
            error_type: "OpsbotHealth.InvocationFailed".to_string(),
            error_message: err.0,
        }
    }
}

async fn init() -> anyhow::Result<Service> {
    let config_path = std::env::var_os("OPSBOT_CONFIG")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let config = HealthConfig::load(config_path.as_deref())
        .context("cannot load the [health] configuration")?;
    opsbot_core::github::install_crypto_provider();
    // The token or App key from Secrets Manager / SSM (`…_SECRET_ARN`, `…_SSM_PARAMETER`)
    // once per cold start; plain variables still work for local runs.
    let settings = secret_source::github_settings_from_env()
        .await
        .context("GitHub settings")?;
    let github = GitHub::connect(&settings)
        .await
        .context("cannot set up the GitHub client")?;
    let notifier = match std::env::var("OPSBOT_SNS_TOPIC_ARN") {
        Ok(topic) if !topic.trim().is_empty() => Some(SnsNotifier::from_env(topic.trim()).await),
        _ => None,
    };
    let default_repo = settings.repository.as_ref().map(ToString::to_string);
    info!(
        repo = default_repo.as_deref().unwrap_or("-"),
        routes = config.routes.len(),
        sns = notifier.is_some(),
        "initialised"
    );
    Ok(HealthService {
        tracker: GitHubTracker::new(github),
        notifier,
        config,
        default_repo,
    })
}

async fn handle(service: &Service, event: LambdaEvent<Value>) -> Result<Value, InvocationFailed> {
    let report = service.handle(&event.payload).await;
    if report.failed() {
        let summary = report.failure_summary();
        error!(
            request_id = event.context.request_id.as_str(),
            error = summary.as_str(),
            "invocation failed"
        );
        return Err(InvocationFailed(summary));
    }
    serde_json::to_value(&report).map_err(|err| InvocationFailed(err.to_string()))
}

/// Tells the Runtime API that initialisation failed (`/runtime/init/error`), so Lambda
/// reports the reason instead of a bare exit code.
async fn report_init_error(err: &anyhow::Error) {
    let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") else {
        return;
    };
    let Ok(uri) = format!("http://{api}").parse::<http::Uri>() else {
        return;
    };
    let message = format!("{err:#}");
    let body = serde_json::json!({
        "errorType": "OpsbotHealth.InitError",
        "errorMessage": message,
    });
    let client = lambda_runtime_api_client::PooledClient::builder()
        .with_endpoint(uri)
        .build();
    let request = lambda_runtime_api_client::build_request()
        .method(http::Method::POST)
        .uri("/2018-06-01/runtime/init/error")
        .header(
            "Lambda-Runtime-Function-Error-Type",
            "OpsbotHealth.InitError",
        )
        .header("content-type", "application/json")
        .body(lambda_runtime_api_client::body::Body::from(
            body.to_string(),
        ));
    if let Ok(request) = request
        && let Err(post_err) = client.call(request).await
    {
        error!(error = %post_err, "cannot report the init error to the Runtime API");
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    opsbot_core::telemetry::init_lambda();
    let service = match init().await {
        Ok(service) => Arc::new(service),
        Err(err) => {
            error!(error = format!("{err:#}").as_str(), "initialisation failed");
            report_init_error(&err).await;
            return ExitCode::FAILURE;
        }
    };
    let result = lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let service = Arc::clone(&service);
        async move { handle(&service, event).await }
    }))
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!(error = %err, "the Lambda runtime loop stopped");
            ExitCode::FAILURE
        }
    }
}
