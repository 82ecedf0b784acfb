//! The webhook HTTP server (axum): `POST /webhook` (and `POST /`), `GET /healthz`.
//!
//! Order of checks for a delivery: body size (over the limit → 413, read no further), the
//! `X-Hub-Signature-256` HMAC over the raw bytes (missing or wrong → 401, nothing parsed),
//! then the JSON. A scan request already seen (same `X-GitHub-Delivery`) answers 200
//! `duplicate` and does nothing. Otherwise the server answers 202 at once and scans on a
//! background task (GitHub gives a delivery 10 s); graceful shutdown waits for those tasks.
//! In [`Mode::Inline`] (Lambda, which freezes the process once it has answered) the scan
//! runs inside the request and the answer comes when the check run is complete.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::dedup::DeliveryLog;
use crate::signature;
use crate::webhook::{self, Route, ScanJob};
use crate::worker::{JobOutcome, Worker};

/// GitHub caps webhook payloads at 25 MB.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;
/// Delivery ids remembered for de-duplication.
pub const DELIVERY_LOG_CAPACITY: usize = 10_000;
/// Scans running at once; more deliveries wait their turn in the background.
pub const MAX_CONCURRENT_SCANS: usize = 8;

/// Where the scan runs relative to the HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answer 202 at once, scan on a background task (a long-running server).
    Background,
    /// Scan within the request, answer when done (Lambda: nothing runs after the answer).
    Inline,
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The App's webhook secret (`GITHUB_WEBHOOK_SECRET`).
    pub webhook_secret: SecretString,
    pub mode: Mode,
    pub max_body_bytes: usize,
    pub max_concurrent_scans: usize,
}

impl AppConfig {
    pub fn new(webhook_secret: SecretString) -> Self {
        AppConfig {
            webhook_secret,
            mode: Mode::Background,
            max_body_bytes: MAX_BODY_BYTES,
            max_concurrent_scans: MAX_CONCURRENT_SCANS,
        }
    }
}

/// Counters, for `/healthz` and tests.
#[derive(Debug, Default)]
pub struct Stats {
    pub rejected_signatures: AtomicU64,
    pub duplicates: AtomicU64,
    pub accepted: AtomicU64,
    pub completed: AtomicU64,
    pub failed: AtomicU64,
}

struct Inner {
    config: AppConfig,
    worker: Worker,
    deliveries: Mutex<DeliveryLog>,
    tracker: TaskTracker,
    permits: Semaphore,
    stats: Stats,
}

/// Shared state of the server; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("mode", &self.inner.config.mode)
            .field("in_flight", &self.inner.tracker.len())
            .finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(config: AppConfig, worker: Worker) -> Self {
        let permits = Semaphore::new(config.max_concurrent_scans.max(1));
        AppState {
            inner: Arc::new(Inner {
                config,
                worker,
                deliveries: Mutex::new(DeliveryLog::new(DELIVERY_LOG_CAPACITY)),
                tracker: TaskTracker::new(),
                permits,
                stats: Stats::default(),
            }),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Scans accepted and not finished yet.
    pub fn in_flight(&self) -> usize {
        self.inner.tracker.len()
    }

    /// Stops accepting background work and waits for the scans in flight.
    pub async fn drain(&self) {
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    fn deliveries(&self) -> std::sync::MutexGuard<'_, DeliveryLog> {
        self.inner
            .deliveries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

/// The router: `POST /webhook`, `POST /`, `GET /healthz`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/webhook", post(webhook))
        .route("/", post(webhook))
        .route("/healthz", get(healthz))
        // The handler enforces its own limit (so it can answer 413 before reading).
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ServerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, finishes open requests and the scans in flight.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// Serves on `listener` until [`ServerHandle::shutdown`].
pub fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<ServerHandle> {
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve_until(listener, state, async {
        let _ = rx.await;
    }));
    Ok(ServerHandle {
        addr,
        shutdown: Some(tx),
        task,
    })
}

/// Serves on `listener` until `signal` resolves, then drains: open requests finish and
/// background scans complete before this returns.
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    state: AppState,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state.clone());
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .await;
    let waiting = state.in_flight();
    if waiting > 0 {
        info!(
            scans = waiting,
            "shutting down: waiting for scans in flight"
        );
    }
    state.drain().await;
    result
}

/// Runs the router as a Lambda function (function URL / API Gateway HTTP API). Scans run
/// inline: set `state` up with [`Mode::Inline`].
pub async fn run_lambda(state: AppState) -> Result<(), lambda_http::Error> {
    lambda_http::run(router(state)).await
}

async fn healthz(State(state): State<AppState>) -> Response {
    let s = state.stats();
    Json(json!({
        "status": "ok",
        "in_flight": state.in_flight(),
        "accepted": s.accepted.load(Ordering::Relaxed),
        "completed": s.completed.load(Ordering::Relaxed),
        "failed": s.failed.load(Ordering::Relaxed),
    }))
    .into_response()
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn webhook(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let limit = state.inner.config.max_body_bytes;

    // 1. Size, before reading.
    let declared = header_str(&headers, header::CONTENT_LENGTH.as_str())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(limit);
    }
    let body = match axum::body::to_bytes(Body::new(body), limit).await {
        Ok(b) => b,
        Err(_) => return too_large(limit),
    };

    // 2. Signature over the raw bytes, before any parsing.
    let secret = state.inner.config.webhook_secret.expose_secret().as_bytes();
    if let Err(err) = signature::verify(secret, header_str(&headers, "x-hub-signature-256"), &body)
    {
        state
            .stats()
            .rejected_signatures
            .fetch_add(1, Ordering::Relaxed);
        warn!(error = %err, bytes = body.len(), "webhook refused");
        return answer(
            StatusCode::UNAUTHORIZED,
            json!({ "error": err.to_string() }),
        );
    }

    // 3. Headers GitHub always sends.
    let Some(event) = header_str(&headers, "x-github-event") else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({ "error": "missing X-GitHub-Event header" }),
        );
    };
    let Some(delivery) = header_str(&headers, "x-github-delivery") else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({ "error": "missing X-GitHub-Delivery header" }),
        );
    };
    let (event, delivery) = (event.to_owned(), delivery.to_owned());

    // 4. The payload.
    let job = match webhook::route(&event, &delivery, &body) {
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

    // 5. Once per delivery.
    if !state.deliveries().first_time(&delivery) {
        state.stats().duplicates.fetch_add(1, Ordering::Relaxed);
        info!(%delivery, %event, "duplicate delivery ignored");
        return answer(
            StatusCode::OK,
            json!({ "status": "duplicate", "delivery": delivery }),
        );
    }
    state.stats().accepted.fetch_add(1, Ordering::Relaxed);
    let span = info_span!("scan", %delivery, %event, repo = %job.repo, sha = %job.head_sha);

    match state.inner.config.mode {
        Mode::Background => {
            let task_state = state.clone();
            state
                .inner
                .tracker
                .spawn(run_job(task_state, job).instrument(span));
            answer(
                StatusCode::ACCEPTED,
                json!({ "status": "accepted", "delivery": delivery }),
            )
        }
        Mode::Inline => match run_job(state.clone(), job).instrument(span).await {
            Some(conclusion) => answer(
                StatusCode::OK,
                json!({ "status": "completed", "delivery": delivery, "conclusion": conclusion }),
            ),
            None => answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "status": "failed", "delivery": delivery }),
            ),
        },
    }
}

/// Runs one job under the concurrency limit; returns the conclusion, or `None` on failure
/// (the delivery is then forgotten so a redelivery runs it again).
async fn run_job(state: AppState, job: ScanJob) -> Option<&'static str> {
    let _permit = state.inner.permits.acquire().await.ok()?;
    match state.inner.worker.run(&job).await {
        Ok(JobOutcome::Reported(report)) => {
            state.stats().completed.fetch_add(1, Ordering::Relaxed);
            Some(report.conclusion)
        }
        Ok(JobOutcome::Skipped(_)) => {
            state.stats().completed.fetch_add(1, Ordering::Relaxed);
            Some("skipped")
        }
        Err(err) => {
            state.stats().failed.fetch_add(1, Ordering::Relaxed);
            warn!(error = %err, "scan job failed");
            state.deliveries().forget(&job.delivery);
            None
        }
    }
}

fn too_large(limit: usize) -> Response {
    answer(
        StatusCode::PAYLOAD_TOO_LARGE,
        json!({ "error": format!("payload larger than {limit} bytes") }),
    )
}
