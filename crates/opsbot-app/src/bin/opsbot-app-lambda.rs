//! `opsbot-app-lambda`: the `bootstrap` (runtime `provided.al2023`) of the App's two Lambda
//! functions, one binary for both: `OPSBOT_APP_ROLE=ingest` behind the function URL
//! (signature check, job to SQS, 202), `OPSBOT_APP_ROLE=worker` on the SQS event source
//! (scan once per delivery id, de-duplicated in DynamoDB) and on the EventBridge schedule
//! (the redelivery sweep). See `opsbot_app::lambda` for the environment. Secrets are read once at cold start (`opsbot_core::secret_source`).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use aws_config::BehaviorVersion;
use opsbot_app::RedeliverySettings;
use opsbot_app::lambda::{
    DEADLINE_MARGIN_ENV, DEDUP_TABLE_ENV, DEDUP_TTL_ENV, Ingest, QUEUE_URL_ENV, QueueWorker,
    REDELIVER_GRACE_ENV, REDELIVER_WINDOW_ENV, ROLE_ENV, Role,
};
use opsbot_app::queue::SqsQueue;
use opsbot_core::secret_source::{self, SecretSource};
use tracing::{error, info};

fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn required(name: &str, what: &str) -> anyhow::Result<String> {
    env(name).with_context(|| format!("{name} is not set: {what}"))
}

fn secs(name: &str) -> anyhow::Result<Option<Duration>> {
    env(name)
        .map(|v| {
            v.parse::<u64>()
                .map(Duration::from_secs)
                .with_context(|| format!("{name} must be a number of seconds, got `{v}`"))
        })
        .transpose()
}

async fn init_ingest(aws: &aws_config::SdkConfig) -> anyhow::Result<Ingest> {
    let queue_url = required(QUEUE_URL_ENV, "the URL of the jobs queue")?;
    let resolved = SecretSource::new(aws)
        .resolve(&[opsbot_app::WEBHOOK_SECRET_ENV], |k| std::env::var(k).ok())
        .await
        .context("webhook secret")?;
    let secret = opsbot_app::webhook_secret_from(resolved.get(opsbot_app::WEBHOOK_SECRET_ENV))?;
    let queue = SqsQueue::new(aws_sdk_sqs::Client::new(aws), &queue_url);
    info!(queue = %queue_url, "ingest initialised");
    Ok(Ingest::new(secret, Arc::new(queue)))
}

async fn init_worker(aws: &aws_config::SdkConfig) -> anyhow::Result<QueueWorker> {
    let table = required(DEDUP_TABLE_ENV, "the DynamoDB table of delivery ids")?;
    let settings = secret_source::github_settings_from_env()
        .await
        .context("GitHub settings")?;
    let worker = opsbot_app::worker(&settings)?;
    // Checked at cold start (DescribeTable): a wrong name fails the init, naming the table.
    let mut ledger = opsbot_app::dynamodb::connect(aws, &table).await?;
    if let Some(ttl) = secs(DEDUP_TTL_ENV)? {
        ledger = ledger.with_ttl(ttl);
    }
    let ledger = Arc::new(ledger);
    let mut redelivery = RedeliverySettings::default();
    if let Some(window) = secs(REDELIVER_WINDOW_ENV)? {
        redelivery.window = window;
    }
    if let Some(grace) = secs(REDELIVER_GRACE_ENV)? {
        redelivery.grace = grace;
    }
    let sweeper =
        opsbot_app::Sweeper::new(worker.app().clone(), redelivery.clone()).with_log(ledger.clone());
    let mut queue_worker = QueueWorker::new(worker, ledger).with_sweeper(sweeper);
    if let Some(margin) = secs(DEADLINE_MARGIN_ENV)? {
        queue_worker.deadline_margin = margin;
    }
    info!(
        %table,
        api = settings.api_url.as_str(),
        redeliver_window_s = redelivery.window.as_secs(),
        redeliver_grace_s = redelivery.grace.as_secs(),
        "worker initialised"
    );
    Ok(queue_worker)
}

/// Tells the Runtime API that initialisation failed (`/runtime/init/error`), so Lambda
/// reports the reason instead of a bare exit code.
async fn report_init_error(err: &anyhow::Error) {
    let Some(api) = env("AWS_LAMBDA_RUNTIME_API") else {
        return;
    };
    let Ok(uri) = format!("http://{api}").parse::<http::Uri>() else {
        return;
    };
    let body = serde_json::json!({
        "errorType": "OpsbotApp.InitError",
        "errorMessage": format!("{err:#}"),
    });
    let client = lambda_runtime_api_client::PooledClient::builder()
        .with_endpoint(uri)
        .build();
    let request = lambda_runtime_api_client::build_request()
        .method(http::Method::POST)
        .uri("/2018-06-01/runtime/init/error")
        .header("Lambda-Runtime-Function-Error-Type", "OpsbotApp.InitError")
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

async fn run(role: Role) -> anyhow::Result<Result<(), String>> {
    let aws = aws_config::defaults(BehaviorVersion::latest()).load().await;
    Ok(match role {
        Role::Ingest => {
            let ingest = init_ingest(&aws).await?;
            opsbot_app::lambda::run_ingest(ingest)
                .await
                .map_err(|e| e.to_string())
        }
        Role::Worker => {
            let worker = init_worker(&aws).await?;
            opsbot_app::lambda::run_worker(worker)
                .await
                .map_err(|e| e.to_string())
        }
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    opsbot_core::telemetry::init_lambda();
    let role = match Role::parse(env(ROLE_ENV).as_deref()) {
        Ok(role) => role,
        Err(message) => {
            let err = anyhow::anyhow!(message);
            error!(error = %err, "initialisation failed");
            report_init_error(&err).await;
            return ExitCode::FAILURE;
        }
    };
    match run(role).await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(message)) => {
            error!(error = message.as_str(), "the Lambda runtime loop stopped");
            ExitCode::FAILURE
        }
        Err(err) => {
            error!(error = format!("{err:#}").as_str(), "initialisation failed");
            report_init_error(&err).await;
            ExitCode::FAILURE
        }
    }
}
