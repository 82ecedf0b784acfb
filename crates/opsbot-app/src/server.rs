//! The webhook HTTP server: `POST /webhook` (and `POST /`), `GET /healthz`.
//!
//! Order of checks for a delivery: body size (over the limit → 413, read no further), the
//! body itself within the body read timeout (too slow → 408; cut short → 400), the
//! `X-Hub-Signature-256` HMAC over the raw bytes (missing or wrong → 401, nothing parsed),
//! then the JSON. A scan request already seen (same `X-GitHub-Delivery`, claimed in the
//! [`DeliveryLedger`]: in memory, or DynamoDB shared by replicas) answers 200 `duplicate`
//! and does nothing — except, with a shared ledger, one another replica claimed and has not
//! finished (it may have died: its claim lapses with its lease), which answers 503 so that
//! GitHub records it as failed and the redelivery sweep sends it again.
//!
//! **Bounded admission.** At most `max_concurrent_scans` scans run and at most
//! `queue_capacity` more wait. A delivery that finds no room is answered 503 with
//! `Retry-After` and forgotten, so GitHub records it as failed and the redelivery sweep
//! ([`crate::redeliver`]) sends it again: the server never answers 202 for work it will
//! not do. In [`Mode::Inline`] (Lambda, which freezes the process once it has answered) the
//! scan runs inside the request and the answer comes when the check run is complete.
//!
//! **Connections.** The accept loop is hyper's HTTP/1 connection builder under the axum
//! router: a header read timeout (slow-header clients are dropped), a keep-alive idle
//! timeout and a cap on open connections (beyond it, new connections wait in the kernel's
//! backlog rather than costing memory).
//!
//! **Shutdown** ([`Shutdown`]): the first request stops accepting connections and stops
//! starting queued scans; running scans get `shutdown_deadline` to finish; then (or at
//! once on a second request) they are cancelled and their check runs completed with
//! conclusion `cancelled` and a summary saying the delivery will be redone. Deliveries
//! accepted but not finished are recovered by the redelivery sweep of the next process.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::{TokioIo, TokioTimer};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::dedup::{Claim, DeliveryLedger, DeliveryLog, MemoryLedger};
use crate::redeliver::{RedeliveryLog, RedeliverySettings, Sweeper};
use crate::signature;
use crate::webhook::{self, Route, ScanJob};
use crate::worker::{JobOutcome, Worker};

/// GitHub caps webhook payloads at 25 MB.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;
/// Delivery ids remembered for de-duplication.
pub const DELIVERY_LOG_CAPACITY: usize = 10_000;
/// Scans running at once.
pub const MAX_CONCURRENT_SCANS: usize = 8;
/// Accepted scans waiting for a free slot; beyond this, 503.
pub const QUEUE_CAPACITY: usize = 256;

/// Where the scan runs relative to the HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answer 202 at once, scan on a background task (a long-running server).
    Background,
    /// Scan within the request, answer when done (Lambda: nothing runs after the answer).
    Inline,
}

/// Connection-level limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The request line and headers must arrive within this (hyper closes the connection).
    pub header_read_timeout: Duration,
    /// The whole body must arrive within this after the headers (else 408).
    pub body_read_timeout: Duration,
    /// An idle keep-alive connection is closed after this.
    pub keep_alive_timeout: Duration,
    /// Open connections at most; more wait to be accepted.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(60),
            max_connections: 512,
        }
    }
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The App's webhook secret (`GITHUB_WEBHOOK_SECRET`).
    pub webhook_secret: SecretString,
    pub mode: Mode,
    pub max_body_bytes: usize,
    pub max_concurrent_scans: usize,
    /// Accepted scans that may wait for a slot (beyond: 503).
    pub queue_capacity: usize,
    pub limits: Limits,
    /// How long running scans may take to finish after a shutdown request.
    pub shutdown_deadline: Duration,
    /// `Retry-After` of a 503.
    pub retry_after: Duration,
    /// The periodic redelivery sweep (`None`: off).
    pub redelivery: Option<RedeliverySettings>,
    /// How long a delivery claim in a shared ledger outlives a crashed server: after it,
    /// a redelivery to another replica scans the delivery (the in-memory ledger ignores it).
    pub claim_lease: Duration,
}

impl AppConfig {
    pub fn new(webhook_secret: SecretString) -> Self {
        AppConfig {
            webhook_secret,
            mode: Mode::Background,
            max_body_bytes: MAX_BODY_BYTES,
            max_concurrent_scans: MAX_CONCURRENT_SCANS,
            queue_capacity: QUEUE_CAPACITY,
            limits: Limits::default(),
            shutdown_deadline: Duration::from_secs(20),
            retry_after: Duration::from_secs(60),
            redelivery: None,
            claim_lease: Duration::from_secs(15 * 60),
        }
    }
}

/// Counters, for `/healthz`, tests and the benchmark.
#[derive(Debug, Default)]
pub struct Stats {
    pub rejected_signatures: AtomicU64,
    pub duplicates: AtomicU64,
    /// Answered 202 (scan accepted).
    pub accepted: AtomicU64,
    /// Answered 503 (no room).
    pub busy: AtomicU64,
    /// Jobs that reached a check run (or were left to their pull request).
    pub completed: AtomicU64,
    pub failed: AtomicU64,
    /// Running scans cancelled at shutdown (check run completed as `cancelled`).
    pub cancelled: AtomicU64,
    /// Accepted scans never started because of a shutdown (redelivery brings them back).
    pub not_started: AtomicU64,
    /// Bodies that did not arrive in time (408) or were cut short (400).
    pub slow_bodies: AtomicU64,
    pub cut_short: AtomicU64,
}

struct Inner {
    config: AppConfig,
    worker: Worker,
    /// Delivery ids claimed once (in memory by default; DynamoDB for replicas).
    ledger: Arc<dyn DeliveryLedger>,
    /// The redelivery sweep's shared "asked once per attempt" record (with a shared
    /// ledger: the same table); `None`, in memory per sweeper.
    redelivery_log: Option<Arc<dyn RedeliveryLog>>,
    /// Deliveries whose job finished here (the sweep need not look them up).
    finished: Mutex<DeliveryLog>,
    tracker: TaskTracker,
    /// Accepted and not finished: running + queued.
    admission: Arc<Semaphore>,
    run_slots: Semaphore,
    queued: AtomicUsize,
    /// Stop taking work: no new connections, no queued scan starts.
    stop: CancellationToken,
    /// Cancel running scans (deadline passed, or a second shutdown request).
    kill: CancellationToken,
    /// A simulated crash: everything stops, nothing is cleaned up.
    abandon: CancellationToken,
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
    /// With the in-memory delivery ledger (one process).
    pub fn new(config: AppConfig, worker: Worker) -> Self {
        Self::with_ledger(
            config,
            worker,
            Arc::new(MemoryLedger::new(DELIVERY_LOG_CAPACITY)),
        )
    }

    /// With another delivery ledger (e.g. [`crate::dynamodb::DynamoLedger`], shared by
    /// replicas, so a delivery is scanned once whichever replica gets it).
    pub fn with_ledger(config: AppConfig, worker: Worker, ledger: Arc<dyn DeliveryLedger>) -> Self {
        Self::build(config, worker, ledger, None)
    }

    /// With a ledger shared by replicas that is also the redelivery sweep's record
    /// ([`crate::dynamodb::DynamoLedger`], `opsbot app serve --ledger-table`): a delivery
    /// is scanned once whichever replica gets it, before or after a restart, and a failed
    /// attempt is asked to be redelivered once whichever replica's sweep sees it.
    pub fn with_shared_ledger<L>(config: AppConfig, worker: Worker, ledger: Arc<L>) -> Self
    where
        L: DeliveryLedger + RedeliveryLog + 'static,
    {
        let log: Arc<dyn RedeliveryLog> = ledger.clone();
        Self::build(config, worker, ledger, Some(log))
    }

    fn build(
        config: AppConfig,
        worker: Worker,
        ledger: Arc<dyn DeliveryLedger>,
        redelivery_log: Option<Arc<dyn RedeliveryLog>>,
    ) -> Self {
        let slots = config.max_concurrent_scans.max(1);
        let admission = Arc::new(Semaphore::new(slots + config.queue_capacity));
        AppState {
            inner: Arc::new(Inner {
                run_slots: Semaphore::new(slots),
                admission,
                config,
                worker,
                ledger,
                redelivery_log,
                finished: Mutex::new(DeliveryLog::new(DELIVERY_LOG_CAPACITY)),
                tracker: TaskTracker::new(),
                queued: AtomicUsize::new(0),
                stop: CancellationToken::new(),
                kill: CancellationToken::new(),
                abandon: CancellationToken::new(),
                stats: Stats::default(),
            }),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    pub fn config(&self) -> &AppConfig {
        &self.inner.config
    }

    pub fn worker(&self) -> &Worker {
        &self.inner.worker
    }

    /// Scans accepted and not finished yet (running or queued).
    pub fn in_flight(&self) -> usize {
        self.inner.tracker.len()
    }

    /// Scans accepted and waiting for a slot.
    pub fn queued(&self) -> usize {
        self.inner.queued.load(Ordering::Relaxed)
    }

    /// Whether this process finished the job of delivery `guid` (the sweep's shortcut).
    pub fn finished_here(&self, guid: &str) -> bool {
        lock(&self.inner.finished).contains(guid)
    }

    /// Records a finished job (here and in the ledger).
    async fn completed(&self, delivery: &str) {
        lock(&self.inner.finished).first_time(delivery);
        if let Err(err) = self.inner.ledger.complete(delivery).await {
            warn!(%delivery, error = %err, "cannot mark the delivery done in the ledger");
        }
    }

    /// Releases a claim whose scan will not run (or did not finish), so a redelivery
    /// runs it; a ledger error is logged (a durable claim then lapses with its lease).
    async fn release(&self, delivery: &str) {
        if let Err(err) = self.inner.ledger.release(delivery).await {
            warn!(%delivery, error = %err, "cannot release the delivery claim");
        }
    }

    /// Runs the shutdown sequence on the scans: stop starting queued ones, let running ones
    /// finish within `deadline` (or until `immediate`), then cancel the rest, which
    /// complete their check runs as `cancelled`.
    pub async fn drain(&self, immediate: &CancellationToken) {
        let inner = &self.inner;
        inner.stop.cancel();
        inner.tracker.close();
        let deadline = inner.config.shutdown_deadline;
        let waiting = self.in_flight();
        if waiting > 0 {
            info!(
                scans = waiting,
                queued = self.queued(),
                deadline_ms = deadline.as_millis() as u64,
                "shutting down: letting running scans finish"
            );
        }
        tokio::select! {
            () = inner.tracker.wait() => return,
            () = tokio::time::sleep(deadline) => {
                warn!(scans = self.in_flight(), "shutdown deadline reached: cancelling running scans");
            }
            () = immediate.cancelled() => {
                warn!(scans = self.in_flight(), "second shutdown request: cancelling running scans now");
            }
        }
        inner.kill.cancel();
        // Each cancelled job completes its check run (bounded by the worker's own timeout).
        let _ = tokio::time::timeout(
            crate::worker::CANCEL_REPORT_TIMEOUT * 2,
            inner.tracker.wait(),
        )
        .await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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

/// Shutdown requests: the first (`requested`) drains with the deadline, the second
/// (`immediate`) cancels running scans at once. Both end with the same clean-up.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    pub requested: CancellationToken,
    pub immediate: CancellationToken,
}

impl Shutdown {
    /// One more request: the first asks for a drain, the second for an immediate stop.
    pub fn request(&self) {
        if self.requested.is_cancelled() {
            self.immediate.cancel();
        } else {
            self.requested.cancel();
        }
    }
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    shutdown: Shutdown,
    state: AppState,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ServerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shutdown tokens (a second [`Shutdown::request`] stops at once).
    pub fn shutdown_tokens(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Stops accepting, drains with the deadline and waits until the server is done.
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.shutdown.request();
        self.wait().await
    }

    /// Waits for the server to end (after a shutdown request).
    pub async fn wait(self) -> std::io::Result<()> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    /// Simulates a crash (tests): the server and every job stop where they are and nothing
    /// is cleaned up, as when the process is killed.
    pub async fn abandon(self) {
        self.state.inner.abandon.cancel();
        self.state.inner.stop.cancel();
        self.task.abort();
        let _ = self.task.await;
        self.state.inner.tracker.close();
        self.state.inner.tracker.wait().await;
    }
}

/// Serves on `listener` until [`ServerHandle::shutdown`].
pub fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<ServerHandle> {
    let addr = listener.local_addr()?;
    let shutdown = Shutdown::default();
    let task = tokio::spawn(serve_with(listener, state.clone(), shutdown.clone()));
    Ok(ServerHandle {
        addr,
        shutdown,
        state,
        task,
    })
}

/// Serves on `listener` until `signal` resolves, then drains (see [`serve_with`]).
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    state: AppState,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shutdown = Shutdown::default();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        signal.await;
        trigger.request();
    });
    serve_with(listener, state, shutdown).await
}

/// Serves on `listener` until `shutdown.requested`; then stops accepting, lets open
/// requests finish and drains the scans ([`AppState::drain`]). Runs the redelivery sweep
/// when configured.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let started = Instant::now();
    let inner = state.inner.clone();
    let limits = inner.config.limits;
    let app = router(state.clone());
    let connections = TaskTracker::new();
    let conn_slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let stop_conns = CancellationToken::new();

    let sweeper = inner.config.redelivery.clone().map(|settings| {
        let mut sweeper = Sweeper::new(inner.worker.app().clone(), settings);
        if let Some(log) = &inner.redelivery_log {
            sweeper = sweeper.with_log(log.clone());
        }
        let state = state.clone();
        let stop = inner.stop.clone();
        tokio::spawn(async move { sweeper.run_periodic(&state, stop).await })
    });

    loop {
        let slot = tokio::select! {
            () = shutdown.requested.cancelled() => break,
            () = inner.abandon.cancelled() => break,
            slot = conn_slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.requested.cancelled() => break,
            () = inner.abandon.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_connection(
            stream,
            peer,
            app.clone(),
            limits,
            slot,
            stop_conns.clone(),
        ));
    }
    drop(listener);
    info!("shutdown requested: no new connections");
    // Requests already being answered finish; idle connections close.
    stop_conns.cancel();
    state.drain(&shutdown.immediate).await;
    connections.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), connections.wait()).await;
    if let Some(task) = sweeper {
        task.abort();
    }
    let s = state.stats();
    info!(
        accepted = s.accepted.load(Ordering::Relaxed),
        completed = s.completed.load(Ordering::Relaxed),
        failed = s.failed.load(Ordering::Relaxed),
        cancelled = s.cancelled.load(Ordering::Relaxed),
        not_started = s.not_started.load(Ordering::Relaxed),
        busy = s.busy.load(Ordering::Relaxed),
        uptime_s = started.elapsed().as_secs(),
        "stopped"
    );
    Ok(())
}

/// One HTTP/1 connection: hyper with the header read timeout, closed when idle longer
/// than the keep-alive timeout or when the server stops.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    _slot: OwnedSemaphorePermit,
    stop: CancellationToken,
) {
    let activity = Arc::new(Activity::default());
    let seen = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let app = app.clone();
        let seen = seen.clone();
        seen.begin();
        async move {
            let response = app.oneshot(req.map(Body::new)).await;
            seen.end();
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let tick = (limits.keep_alive_timeout / 4).max(Duration::from_millis(50));
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    debug!(%peer, error = %e, timeout = e.is_timeout(), "connection ended");
                }
                return;
            }
            () = stop.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = tokio::time::sleep(tick), if !closing => {
                if activity.idle_for() > limits.keep_alive_timeout {
                    debug!(%peer, "keep-alive idle timeout");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// Requests in progress on a connection and when the last one ended.
#[derive(Debug)]
struct Activity {
    busy: AtomicUsize,
    last: Mutex<Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            busy: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        }
    }
}

impl Activity {
    fn begin(&self) {
        self.busy.fetch_add(1, Ordering::Relaxed);
    }

    fn end(&self) {
        *lock(&self.last) = Instant::now();
        self.busy.fetch_sub(1, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        if self.busy.load(Ordering::Relaxed) > 0 {
            Duration::ZERO
        } else {
            lock(&self.last).elapsed()
        }
    }
}

/// Runs the router as a Lambda function (function URL / API Gateway HTTP API). Scans run
/// inline: set `state` up with [`Mode::Inline`].
pub async fn run_lambda(state: AppState) -> Result<(), lambda_http::Error> {
    lambda_http::run(router(state)).await
}

async fn healthz(State(state): State<AppState>) -> Response {
    let s = state.stats();
    let stopping = state.inner.stop.is_cancelled();
    Json(json!({
        "status": if stopping { "stopping" } else { "ok" },
        "in_flight": state.in_flight(),
        "queued": state.queued(),
        "accepted": s.accepted.load(Ordering::Relaxed),
        "busy": s.busy.load(Ordering::Relaxed),
        "completed": s.completed.load(Ordering::Relaxed),
        "failed": s.failed.load(Ordering::Relaxed),
        "cancelled": s.cancelled.load(Ordering::Relaxed),
    }))
    .into_response()
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// 503 with `Retry-After`: nothing was accepted.
fn busy(state: &AppState, reason: &str) -> Response {
    state.stats().busy.fetch_add(1, Ordering::Relaxed);
    let secs = state.inner.config.retry_after.as_secs().max(1);
    let mut resp = answer(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({ "error": reason, "retry_after_s": secs }),
    );
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// The request body within the limit and the body read timeout.
async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<bytes::Bytes, Response> {
    let config = &state.inner.config;
    let limit = config.max_body_bytes;
    let declared = header_str(headers, header::CONTENT_LENGTH.as_str())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let timeout = config.limits.body_read_timeout;
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(limit)),
        Ok(Err(err)) => {
            state.stats().cut_short.fetch_add(1, Ordering::Relaxed);
            warn!(error = %err, "request body cut short");
            Err(close(answer(
                StatusCode::BAD_REQUEST,
                json!({ "error": format!("request body cut short: {err}") }),
            )))
        }
        Err(_) => {
            state.stats().slow_bodies.fetch_add(1, Ordering::Relaxed);
            warn!(
                timeout_s = timeout.as_secs(),
                declared, "request body not received in time"
            );
            Err(close(answer(
                StatusCode::REQUEST_TIMEOUT,
                json!({ "error": format!("request body not received within {} s", timeout.as_secs()) }),
            )))
        }
    }
}

/// Asks the client to close: what is left of its request would be read as the next one.
fn close(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

async fn webhook(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;

    // 1. Size and arrival, before anything else.
    let body = match read_body(&state, &headers, body).await {
        Ok(b) => b,
        Err(resp) => return resp,
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
    drop(body);

    // 5. Once per delivery.
    match state
        .inner
        .ledger
        .claim(&delivery, state.inner.config.claim_lease)
        .await
    {
        Ok(Claim::Acquired) => {}
        Ok(Claim::InProgress) if state.inner.redelivery_log.is_some() => {
            // Claimed in the shared ledger by a replica that is scanning it — or that died
            // and whose lease has not run out. Not a success: GitHub records the attempt as
            // failed, and the sweep asks for it again (once per attempt) until the claim is
            // done or has lapsed and a replica takes it.
            state.stats().duplicates.fetch_add(1, Ordering::Relaxed);
            info!(%delivery, %event, "delivery claimed by another replica: 503");
            let secs = state.inner.config.retry_after.as_secs().max(1);
            let mut resp = answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({
                    "status": "in_progress",
                    "error": "the delivery is being scanned by another replica",
                    "delivery": delivery,
                    "retry_after_s": secs,
                }),
            );
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return resp;
        }
        Ok(Claim::Done | Claim::InProgress) => {
            state.stats().duplicates.fetch_add(1, Ordering::Relaxed);
            info!(%delivery, %event, "duplicate delivery ignored");
            return answer(
                StatusCode::OK,
                json!({ "status": "duplicate", "delivery": delivery }),
            );
        }
        Err(err) => {
            warn!(%delivery, error = %err, "delivery ledger unavailable: 503");
            return busy(&state, "the delivery ledger is unavailable");
        }
    }
    let span = info_span!("scan", %delivery, %event, repo = %job.repo, sha = %job.head_sha);

    match state.inner.config.mode {
        Mode::Background => {
            // 6. Room for it, or 503 (GitHub marks the delivery failed; the sweep redelivers).
            if state.inner.stop.is_cancelled() {
                state.release(&delivery).await;
                return busy(&state, "shutting down");
            }
            let Ok(admitted) = state.inner.admission.clone().try_acquire_owned() else {
                state.release(&delivery).await;
                debug!(%delivery, "queue full: 503");
                return busy(&state, "the scan queue is full");
            };
            state.stats().accepted.fetch_add(1, Ordering::Relaxed);
            state.inner.queued.fetch_add(1, Ordering::Relaxed);
            let task_state = state.clone();
            state
                .inner
                .tracker
                .spawn(run_queued(task_state, job, admitted).instrument(span));
            answer(
                StatusCode::ACCEPTED,
                json!({ "status": "accepted", "delivery": delivery }),
            )
        }
        Mode::Inline => {
            state.stats().accepted.fetch_add(1, Ordering::Relaxed);
            match run_job(&state, &job).instrument(span).await {
                Some(conclusion) => answer(
                    StatusCode::OK,
                    json!({ "status": "completed", "delivery": delivery, "conclusion": conclusion }),
                ),
                None => answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({ "status": "failed", "delivery": delivery }),
                ),
            }
        }
    }
}

/// A queued job: waits for a slot (unless the server stops first), then runs.
async fn run_queued(state: AppState, job: ScanJob, _admitted: OwnedSemaphorePermit) {
    let inner = &state.inner;
    let slot = tokio::select! {
        biased;
        () = inner.stop.cancelled() => None,
        slot = inner.run_slots.acquire() => slot.ok(),
    };
    inner.queued.fetch_sub(1, Ordering::Relaxed);
    let Some(_slot) = slot else {
        if !inner.abandon.is_cancelled() {
            inner.stats.not_started.fetch_add(1, Ordering::Relaxed);
            info!(delivery = %job.delivery, "not started: shutting down (the redelivery sweep brings it back)");
        }
        return;
    };
    if inner.stop.is_cancelled() && inner.abandon.is_cancelled() {
        return;
    }
    tokio::select! {
        () = inner.abandon.cancelled() => {}
        _ = run_job(&state, &job) => {}
    }
}

/// Runs one job; returns the conclusion, or `None` on failure (the delivery is then
/// forgotten so a redelivery runs it again).
async fn run_job(state: &AppState, job: &ScanJob) -> Option<&'static str> {
    let inner = &state.inner;
    match inner.worker.run_cancellable(job, &inner.kill).await {
        Ok(JobOutcome::Reported(report)) => {
            inner.stats.completed.fetch_add(1, Ordering::Relaxed);
            state.completed(&job.delivery).await;
            Some(report.conclusion)
        }
        Ok(JobOutcome::Skipped(_)) => {
            inner.stats.completed.fetch_add(1, Ordering::Relaxed);
            state.completed(&job.delivery).await;
            Some("skipped")
        }
        Ok(JobOutcome::Cancelled { .. }) => {
            inner.stats.cancelled.fetch_add(1, Ordering::Relaxed);
            state.release(&job.delivery).await;
            None
        }
        Err(err) => {
            inner.stats.failed.fetch_add(1, Ordering::Relaxed);
            warn!(error = %err, "scan job failed");
            state.release(&job.delivery).await;
            None
        }
    }
}

fn too_large(limit: usize) -> Response {
    close(answer(
        StatusCode::PAYLOAD_TOO_LARGE,
        json!({ "error": format!("payload larger than {limit} bytes") }),
    ))
}
