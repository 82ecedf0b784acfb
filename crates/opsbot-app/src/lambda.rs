//! The App on AWS Lambda, scaled out through SQS: two roles of one bootstrap
//! (`opsbot-app-lambda`, chosen by `OPSBOT_APP_ROLE`).
//!
//! - **ingest** (behind a function URL): verifies `X-Hub-Signature-256` over the raw body
//!   (401 and nothing queued when it is missing or wrong), routes the payload, writes the
//!   [`JobMessage`] to SQS and answers 202 at once — well within GitHub's 10 s, whatever
//!   the size of the change. When SQS does not take the job it answers 503 (GitHub marks
//!   the delivery failed; `opsbot app redeliver` sends it again).
//! - **worker** (SQS event source, `ReportBatchItemFailures`): for each message, claims the
//!   delivery id in the [`DeliveryLedger`] (DynamoDB: a conditional put), scans, and marks
//!   it done. Only the messages that failed are reported in `batchItemFailures`, so SQS
//!   redelivers those alone (and, after `maxReceiveCount`, moves them to the DLQ). A scan
//!   that failed, or was cancelled because the invocation's deadline was near (its check
//!   run completed as `cancelled`), releases its claim, so the retry scans it. A delivery
//!   already done is acknowledged without a scan; one claimed by a live worker elsewhere is
//!   reported failed, to be looked at again after the visibility timeout.
//!
//!   The worker also runs the redelivery sweep ([`crate::redeliver`], what `opsbot app
//!   redeliver` does) on a scheduled EventBridge event (`"detail-type": "Scheduled
//!   Event"`, or `{"opsbot": "redeliver"}` invoked by hand): deliveries the ingest answered
//!   503 (or never answered), and deliveries accepted but never scanned (a message lost to
//!   the DLQ), are sent again by GitHub, each attempt asked for once across all sweeps
//!   (the DynamoDB table is the [`crate::redeliver::RedeliveryLog`]). The answer is the
//!   [`crate::redeliver::SweepReport`] as JSON.
//!
//! Environment (secrets from Secrets Manager through [`opsbot_core::secret_source`]):
//!
//! | variable | role | |
//! |---|---|---|
//! | `OPSBOT_APP_ROLE` | both | `ingest` or `worker` |
//! | `GITHUB_WEBHOOK_SECRET_SECRET_ARN` (or `GITHUB_WEBHOOK_SECRET`) | ingest | |
//! | `OPSBOT_APP_QUEUE_URL` | ingest | the jobs queue |
//! | `GITHUB_APP_ID`, `GITHUB_APP_PRIVATE_KEY_SECRET_ARN` (or `…_PRIVATE_KEY`) | worker | |
//! | `GITHUB_API_URL` | worker | GitHub Enterprise |
//! | `OPSBOT_APP_DEDUP_TABLE` | worker | the DynamoDB table (hash key `delivery_id`, TTL `expires_at`) |
//! | `OPSBOT_APP_DEDUP_TTL_SECS` | worker | how long ids are kept (default 7 days) |
//! | `OPSBOT_APP_DEADLINE_MARGIN_SECS` | worker | scans are cancelled this long before the invocation deadline (default 10) |
//! | `OPSBOT_APP_REDELIVER_WINDOW_SECS` | worker | how far back a sweep looks (default 3600) |
//! | `OPSBOT_APP_REDELIVER_GRACE_SECS` | worker | accepted deliveries younger than this are not verified yet (default 600) |

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::dedup::{Claim, DeliveryLedger};
use crate::queue::{JobMessage, JobQueue};
use crate::redeliver::{SweepError, SweepReport, Sweeper};
use crate::server::MAX_BODY_BYTES;
use crate::signature;
use crate::webhook::{self, Route};
use crate::worker::{JobOutcome, Worker};

/// `OPSBOT_APP_ROLE`.
pub const ROLE_ENV: &str = "OPSBOT_APP_ROLE";
pub const QUEUE_URL_ENV: &str = "OPSBOT_APP_QUEUE_URL";
pub const DEDUP_TABLE_ENV: &str = "OPSBOT_APP_DEDUP_TABLE";
pub const DEDUP_TTL_ENV: &str = "OPSBOT_APP_DEDUP_TTL_SECS";
pub const DEADLINE_MARGIN_ENV: &str = "OPSBOT_APP_DEADLINE_MARGIN_SECS";
pub const REDELIVER_WINDOW_ENV: &str = "OPSBOT_APP_REDELIVER_WINDOW_SECS";
pub const REDELIVER_GRACE_ENV: &str = "OPSBOT_APP_REDELIVER_GRACE_SECS";

/// Which function this bootstrap is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Ingest,
    Worker,
}

impl Role {
    pub fn parse(value: Option<&str>) -> Result<Role, String> {
        match value.map(str::trim) {
            None | Some("") => Err(format!(
                "{ROLE_ENV} is not set: `ingest` (function URL) or `worker` (SQS event source)"
            )),
            Some("ingest") => Ok(Role::Ingest),
            Some("worker") => Ok(Role::Worker),
            Some(other) => Err(format!(
                "{ROLE_ENV} must be `ingest` or `worker`, got `{other}`"
            )),
        }
    }
}

// ---- ingest -------------------------------------------------------------------------------

/// Counters of the ingest function.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub queued: AtomicU64,
    pub rejected_signatures: AtomicU64,
    pub queue_errors: AtomicU64,
}

struct IngestInner {
    secret: SecretString,
    queue: Arc<dyn JobQueue>,
    retry_after: Duration,
    stats: IngestStats,
}

/// The ingest function's state; cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    inner: Arc<IngestInner>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("queue", &self.inner.queue)
            .finish_non_exhaustive()
    }
}

impl Ingest {
    pub fn new(secret: SecretString, queue: Arc<dyn JobQueue>) -> Self {
        Ingest {
            inner: Arc::new(IngestInner {
                secret,
                queue,
                retry_after: Duration::from_secs(60),
                stats: IngestStats::default(),
            }),
        }
    }

    pub fn stats(&self) -> &IngestStats {
        &self.inner.stats
    }
}

/// The ingest router: `POST /` (the function URL) and `POST /webhook`.
pub fn ingest_router(ingest: Ingest) -> Router {
    Router::new()
        .route("/", post(ingest_webhook))
        .route("/webhook", post(ingest_webhook))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ingest)
}

/// Serves the ingest router through the Lambda runtime (function URL events).
pub async fn run_ingest(ingest: Ingest) -> Result<(), lambda_http::Error> {
    lambda_http::run(ingest_router(ingest)).await
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn ingest_webhook(State(ingest): State<Ingest>, headers: HeaderMap, body: Bytes) -> Response {
    let inner = &ingest.inner;
    // 1. The signature over the raw bytes, before anything is parsed.
    if let Err(err) = signature::verify(
        inner.secret.expose_secret().as_bytes(),
        header_str(&headers, "x-hub-signature-256"),
        &body,
    ) {
        inner
            .stats
            .rejected_signatures
            .fetch_add(1, Ordering::Relaxed);
        warn!(error = %err, bytes = body.len(), "webhook refused");
        return answer(
            StatusCode::UNAUTHORIZED,
            json!({ "error": err.to_string() }),
        );
    }
    let (Some(event), Some(delivery)) = (
        header_str(&headers, "x-github-event"),
        header_str(&headers, "x-github-delivery"),
    ) else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({ "error": "missing X-GitHub-Event or X-GitHub-Delivery header" }),
        );
    };
    // 2. The payload.
    let job = match webhook::route(event, delivery, &body) {
        Ok(Route::Scan(job)) => job,
        Ok(Route::Ping) => {
            info!(%delivery, "ping");
            return answer(StatusCode::OK, json!({ "status": "pong" }));
        }
        Ok(Route::Ignore(reason)) => {
            debug!(%delivery, %event, %reason, "ignored");
            return answer(
                StatusCode::ACCEPTED,
                json!({ "status": "ignored", "reason": reason }),
            );
        }
        Err(err) => {
            warn!(%delivery, %event, error = %err, "bad payload");
            return answer(StatusCode::BAD_REQUEST, json!({ "error": err.to_string() }));
        }
    };
    // 3. Queued, or 503 (GitHub records the failure; redelivery sends it again).
    let message = JobMessage::from_job(event, &job);
    match inner.queue.send(&message).await {
        Ok(message_id) => {
            inner.stats.queued.fetch_add(1, Ordering::Relaxed);
            info!(%delivery, %event, repo = %job.repo, sha = %job.head_sha, %message_id, "queued");
            answer(
                StatusCode::ACCEPTED,
                json!({ "status": "queued", "delivery": delivery }),
            )
        }
        Err(err) => {
            inner.stats.queue_errors.fetch_add(1, Ordering::Relaxed);
            warn!(%delivery, error = %err, "the job could not be queued");
            let secs = inner.retry_after.as_secs().max(1);
            let mut resp = answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "error": "the scan queue is unavailable", "retry_after_s": secs }),
            );
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
    }
}

// ---- worker -------------------------------------------------------------------------------

/// What became of one SQS message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Scanned and reported (the conclusion, or `skipped` when left to its pull request).
    Scanned(&'static str),
    /// Already scanned by someone: acknowledged, nothing done.
    Duplicate,
    /// Claimed by a live worker elsewhere: reported failed, looked at again later.
    InProgress,
    /// Failed (claim released): reported failed, so SQS redelivers it.
    Failed(String),
}

impl RecordOutcome {
    /// Whether the message goes into `batchItemFailures`.
    pub fn retry(&self) -> bool {
        matches!(self, RecordOutcome::InProgress | RecordOutcome::Failed(_))
    }
}

/// What the worker function was invoked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerEvent {
    /// An SQS batch (`Records` from `aws:sqs`).
    Sqs,
    /// A scheduled EventBridge event, or `{"opsbot": "redeliver"}`: one redelivery sweep.
    Redeliver,
}

impl WorkerEvent {
    pub fn classify(event: &serde_json::Value) -> Option<WorkerEvent> {
        if event
            .get("Records")
            .is_some_and(serde_json::Value::is_array)
        {
            return Some(WorkerEvent::Sqs);
        }
        let scheduled = event.get("source").and_then(|v| v.as_str()) == Some("aws.events")
            && event.get("detail-type").and_then(|v| v.as_str()) == Some("Scheduled Event");
        let asked = event.get("opsbot").and_then(|v| v.as_str()) == Some("redeliver");
        (scheduled || asked).then_some(WorkerEvent::Redeliver)
    }
}

/// Why a worker invocation failed as a whole (the Lambda service then retries it).
#[derive(Debug, thiserror::Error)]
pub enum WorkerEventError {
    #[error(
        "not an event this worker handles: expected an SQS batch (`Records`) or a scheduled EventBridge event (`\"detail-type\": \"Scheduled Event\"`)"
    )]
    Unknown,
    #[error("malformed SQS event: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("a redelivery sweep was asked for, but this worker has no sweeper")]
    NoSweeper,
    #[error("redelivery sweep: {0}")]
    Sweep(#[from] SweepError),
    #[error(
        "redelivery sweep: cut short {0} s before the invocation deadline (the next sweep goes on)"
    )]
    Deadline(u64),
}

/// The worker function: scans queued jobs once each, and sweeps for lost deliveries.
#[derive(Debug, Clone)]
pub struct QueueWorker {
    worker: Worker,
    ledger: Arc<dyn DeliveryLedger>,
    sweeper: Option<Arc<Sweeper>>,
    /// Scans are cancelled this long before the invocation's deadline.
    pub deadline_margin: Duration,
    /// A claim outlives the invocation's deadline by this (then a retry may take it).
    pub lease_margin: Duration,
}

impl QueueWorker {
    pub fn new(worker: Worker, ledger: Arc<dyn DeliveryLedger>) -> Self {
        QueueWorker {
            worker,
            ledger,
            sweeper: None,
            deadline_margin: Duration::from_secs(10),
            lease_margin: Duration::from_secs(30),
        }
    }

    /// Runs `sweeper` on scheduled events (it keeps what it asked for between invocations
    /// of a warm function; its log, across all of them).
    pub fn with_sweeper(mut self, sweeper: Sweeper) -> Self {
        self.sweeper = Some(Arc::new(sweeper));
        self
    }

    /// Handles one invocation: an SQS batch (answers the [`SqsBatchResponse`]) or a
    /// scheduled sweep (answers the [`SweepReport`]).
    pub async fn handle_event(
        &self,
        event: serde_json::Value,
        deadline_ms: u64,
    ) -> Result<serde_json::Value, WorkerEventError> {
        match WorkerEvent::classify(&event) {
            Some(WorkerEvent::Sqs) => {
                let batch: SqsEvent = serde_json::from_value(event)?;
                Ok(serde_json::to_value(self.handle(batch, deadline_ms).await)?)
            }
            Some(WorkerEvent::Redeliver) => {
                Ok(serde_json::to_value(self.sweep(deadline_ms).await?)?)
            }
            None => Err(WorkerEventError::Unknown),
        }
    }

    /// One redelivery sweep, given up `deadline_margin` before the invocation deadline.
    pub async fn sweep(&self, deadline_ms: u64) -> Result<SweepReport, WorkerEventError> {
        let sweeper = self.sweeper.as_ref().ok_or(WorkerEventError::NoSweeper)?;
        let window = sweeper.settings().window;
        // Whether a delivery was scanned is known from the ledger (any worker's), else
        // read from GitHub (its check run); never from this process alone.
        let sweep = sweeper.sweep(&self.worker, window, |_| false);
        let report = match remaining(deadline_ms) {
            Some(left) => {
                let budget = left
                    .saturating_sub(self.deadline_margin)
                    .max(Duration::from_secs(1));
                tokio::time::timeout(budget, sweep)
                    .await
                    .map_err(|_| WorkerEventError::Deadline(self.deadline_margin.as_secs()))??
            }
            None => sweep.await?,
        };
        info!(
            listed = report.listed,
            verified = report.verified,
            known_scanned = report.known_scanned,
            redelivered = report.redelivered.len(),
            already_asked = report.already_asked.len(),
            errors = report.errors.len(),
            "redelivery sweep"
        );
        Ok(report)
    }

    /// Handles one SQS batch; `deadline_ms` is the invocation deadline (unix ms, 0: none).
    /// The records run concurrently; the answer lists the ones to redeliver.
    pub async fn handle(&self, event: SqsEvent, deadline_ms: u64) -> SqsBatchResponse {
        let (outcomes, response) = self.handle_detailed(event, deadline_ms).await;
        let retried = outcomes.iter().filter(|(_, o)| o.retry()).count();
        info!(records = outcomes.len(), retried, "batch handled");
        response
    }

    /// [`QueueWorker::handle`] with each record's outcome.
    pub async fn handle_detailed(
        &self,
        event: SqsEvent,
        deadline_ms: u64,
    ) -> (Vec<(String, RecordOutcome)>, SqsBatchResponse) {
        let time_left = remaining(deadline_ms);
        let cancel = CancellationToken::new();
        if let Some(left) = time_left {
            let stop = left
                .saturating_sub(self.deadline_margin)
                .max(Duration::from_millis(500));
            let token = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(stop).await;
                token.cancel();
            });
        }
        let lease = time_left.unwrap_or(Duration::from_secs(900)) + self.lease_margin;
        let outcomes = futures::future::join_all(event.records.iter().map(|record| {
            let cancel = cancel.clone();
            async move {
                let id = record.message_id.clone().unwrap_or_default();
                let outcome = self.one(record, &cancel, lease).await;
                (id, outcome)
            }
        }))
        .await;
        cancel.cancel();
        let mut response = SqsBatchResponse::default();
        for (id, outcome) in &outcomes {
            if outcome.retry() {
                response.add_failure(id.clone());
            }
        }
        (outcomes, response)
    }

    async fn one(
        &self,
        record: &SqsMessage,
        cancel: &CancellationToken,
        lease: Duration,
    ) -> RecordOutcome {
        let message_id = record.message_id.as_deref().unwrap_or("-");
        let receives = record
            .attributes
            .get("ApproximateReceiveCount")
            .map_or("?", String::as_str);
        let parsed = JobMessage::parse(record.body.as_deref().unwrap_or(""))
            .and_then(|m| m.job().map(|job| (m, job)));
        let (message, job) = match parsed {
            Ok(p) => p,
            Err(err) => {
                // Never scannable: SQS moves it to the DLQ after maxReceiveCount.
                warn!(message_id, error = %err, "unreadable job message");
                return RecordOutcome::Failed(err.to_string());
            }
        };
        let span = info_span!("scan", delivery = %job.delivery, event = %message.event, repo = %job.repo, sha = %job.head_sha, message_id, receives);
        async {
            match self.ledger.claim(&job.delivery, lease).await {
                Ok(Claim::Acquired) => {}
                Ok(Claim::Done) => {
                    info!("duplicate delivery: already scanned");
                    return RecordOutcome::Duplicate;
                }
                Ok(Claim::InProgress) => {
                    info!("delivery claimed by another worker: looked at again later");
                    return RecordOutcome::InProgress;
                }
                Err(err) => {
                    warn!(error = %err, "cannot claim the delivery");
                    return RecordOutcome::Failed(err.to_string());
                }
            }
            let result = self.worker.run_cancellable(&job, cancel).await;
            let outcome = match result {
                Ok(JobOutcome::Reported(report)) => RecordOutcome::Scanned(report.conclusion),
                Ok(JobOutcome::Skipped(_)) => RecordOutcome::Scanned("skipped"),
                Ok(JobOutcome::Cancelled { check_run_id }) => RecordOutcome::Failed(format!(
                    "cancelled near the invocation deadline (check run {check_run_id:?})"
                )),
                Err(err) => RecordOutcome::Failed(err.to_string()),
            };
            match &outcome {
                RecordOutcome::Scanned(conclusion) => {
                    if let Err(err) = self.ledger.complete(&job.delivery).await {
                        // The scan is reported; a retry after the lease would redo it.
                        warn!(error = %err, "scanned, but the ledger was not updated");
                    }
                    info!(conclusion, "scanned");
                }
                RecordOutcome::Failed(reason) => {
                    warn!(error = %reason, "scan failed: released for a retry");
                    if let Err(err) = self.ledger.release(&job.delivery).await {
                        warn!(error = %err, "cannot release the claim (a retry takes it after the lease)");
                    }
                }
                _ => {}
            }
            outcome
        }
        .instrument(span)
        .await
    }
}

/// Time left until `deadline_ms` (unix ms; 0: no deadline).
fn remaining(deadline_ms: u64) -> Option<Duration> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    (deadline_ms > 0).then(|| Duration::from_millis(deadline_ms.saturating_sub(now_ms)))
}

/// Runs the worker through the Lambda runtime: SQS batches in, batch responses out;
/// scheduled events in, sweep reports out.
pub async fn run_worker(worker: QueueWorker) -> Result<(), lambda_runtime::Error> {
    let worker = Arc::new(worker);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
            let worker = Arc::clone(&worker);
            async move {
                let deadline = event.context.deadline;
                worker
                    .handle_event(event.payload, deadline)
                    .await
                    .map_err(|e| {
                        warn!(error = %e, "invocation failed");
                        lambda_runtime::Error::from(e.to_string())
                    })
            }
        },
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_is_named() {
        assert_eq!(Role::parse(Some("ingest")), Ok(Role::Ingest));
        assert_eq!(Role::parse(Some(" worker ")), Ok(Role::Worker));
        assert!(Role::parse(None).is_err_and(|e| e.contains(ROLE_ENV)));
        assert!(Role::parse(Some("both")).is_err_and(|e| e.contains("`both`")));
    }

    #[test]
    fn the_worker_tells_batches_from_schedules() {
        let sqs = json!({ "Records": [{ "messageId": "m", "eventSource": "aws:sqs" }] });
        assert_eq!(WorkerEvent::classify(&sqs), Some(WorkerEvent::Sqs));
        let scheduled = json!({
            "version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": "2026-01-01T00:00:00Z", "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/opsbot-app-redeliver"],
            "detail": {}
        });
        assert_eq!(
            WorkerEvent::classify(&scheduled),
            Some(WorkerEvent::Redeliver)
        );
        assert_eq!(
            WorkerEvent::classify(&json!({ "opsbot": "redeliver" })),
            Some(WorkerEvent::Redeliver)
        );
        assert_eq!(
            WorkerEvent::classify(&json!({ "source": "aws.events" })),
            None
        );
        assert_eq!(WorkerEvent::classify(&json!({})), None);
    }
}
