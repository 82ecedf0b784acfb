//! A driver for the AWS Lambda Runtime API (`/2018-06-01/runtime/...`), served on
//! 127.0.0.1, so tests run a real Lambda `bootstrap` binary the way the Lambda service does:
//! the binary long-polls `invocation/next`, gets an event with the `Lambda-Runtime-*`
//! headers, and answers on `invocation/{id}/response` or `invocation/{id}/error` (or
//! `init/error` when it cannot start).
//!
//! A bootstrap killed while it long-polls may leave its `next` call pending on the server,
//! which would then take the next queued event: start a fresh `RuntimeApi` after killing
//! bootstraps if events are to follow.
//!
//! ```ignore
//! let api = RuntimeApi::start().await;
//! let child = Command::new(bin).envs(api.lambda_env("opsbot-health")).spawn()?;
//! let out = api.invoke(json!({...})).await;   // Ok(response) or Err(ErrorBody)
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};

const PREFIX: &str = "/2018-06-01/runtime";
/// Account id used in the invoked function ARN.
pub const ACCOUNT_ID: &str = "123456789012";

/// What a function reported through `/error` or `/init/error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "errorType", default)]
    pub error_type: String,
    #[serde(rename = "errorMessage", default)]
    pub error_message: String,
    /// The `Lambda-Runtime-Function-Error-Type` header, when sent.
    #[serde(skip)]
    pub header_error_type: Option<String>,
}

/// The end of one invocation.
#[derive(Debug, Clone)]
pub enum Outcome {
    Response(Value),
    Error(ErrorBody),
}

struct Queued {
    request_id: String,
    payload: Value,
    deadline: Duration,
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<Queued>,
    waiting: HashMap<String, oneshot::Sender<Outcome>>,
    in_flight: HashMap<String, Instant>,
    init_error: Option<ErrorBody>,
    next_calls: Vec<Instant>,
    pollers: usize,
}

struct Shared {
    inner: Mutex<Inner>,
    queued: Notify,
    polled: Notify,
    ids: AtomicU64,
    function_name: String,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The Runtime API endpoint a Lambda bootstrap talks to.
pub struct RuntimeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    started: Instant,
    _server: crate::serve::Served,
}

impl RuntimeApi {
    /// Serves the Runtime API on 127.0.0.1 (random port) for a function named
    /// `opsbot-health`.
    pub async fn start() -> RuntimeApi {
        Self::start_named("opsbot-health").await
    }

    pub async fn start_named(function_name: &str) -> RuntimeApi {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            queued: Notify::new(),
            polled: Notify::new(),
            ids: AtomicU64::new(1),
            function_name: function_name.to_string(),
        });
        let app = Router::new()
            .route(&format!("{PREFIX}/invocation/next"), get(next))
            .route(
                &format!("{PREFIX}/invocation/{{id}}/response"),
                post(response),
            )
            .route(
                &format!("{PREFIX}/invocation/{{id}}/error"),
                post(invocation_error),
            )
            .route(&format!("{PREFIX}/init/error"), post(init_error))
            .fallback(|| async {
                (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({"errorType": "NotFound", "errorMessage": "no such route"})),
                )
            })
            .with_state(Arc::clone(&shared));
        let server = crate::serve::serve(app, "the Lambda Runtime API").await;
        RuntimeApi {
            addr: server.addr,
            shared,
            started: Instant::now(),
            _server: server,
        }
    }

    /// The `AWS_LAMBDA_RUNTIME_API` value (`127.0.0.1:PORT`).
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The environment Lambda gives a `provided.al2023` bootstrap.
    pub fn lambda_env(&self) -> Vec<(String, String)> {
        let name = &self.shared.function_name;
        [
            ("AWS_LAMBDA_RUNTIME_API", self.address()),
            ("AWS_LAMBDA_FUNCTION_NAME", name.clone()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2025/01/01/[$LATEST]0123456789abcdef".into(),
            ),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
            ("_HANDLER", "bootstrap".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".into()),
            ("LAMBDA_TASK_ROOT", "/var/task".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Queues an event; the receiver resolves when the function answers.
    pub fn enqueue(&self, payload: Value) -> (String, oneshot::Receiver<Outcome>) {
        let n = self.shared.ids.fetch_add(1, Ordering::Relaxed);
        let request_id = format!("8476a536-e9f4-11e8-9739-{n:012x}");
        let (tx, rx) = oneshot::channel();
        {
            let mut inner = self.shared.lock();
            inner.waiting.insert(request_id.clone(), tx);
            inner.queue.push_back(Queued {
                request_id: request_id.clone(),
                payload,
                deadline: Duration::from_secs(60),
            });
        }
        self.shared.queued.notify_one();
        (request_id, rx)
    }

    /// Invokes the function once and waits (at most 60 s) for its answer.
    pub async fn invoke(&self, payload: Value) -> Result<Value, ErrorBody> {
        let (id, rx) = self.enqueue(payload);
        match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(Ok(Outcome::Response(value))) => Ok(value),
            Ok(Ok(Outcome::Error(err))) => Err(err),
            Ok(Err(_)) => panic!("invocation {id}: the driver dropped it"),
            Err(_) => panic!(
                "invocation {id}: no answer within 60 s (init error: {:?})",
                self.init_error()
            ),
        }
    }

    /// Waits until `n` callers are blocked on `invocation/next` (all workers idle).
    pub async fn wait_for_pollers(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.shared.polled.notified();
            if self.shared.lock().pollers >= n {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                return self.shared.lock().pollers >= n;
            }
        }
    }

    /// When `invocation/next` was first called, measured from [`RuntimeApi::start`] or
    /// from `since` — the cold start of a bootstrap spawned at `since`.
    pub async fn first_next_after(&self, since: Instant, timeout: Duration) -> Option<Duration> {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.shared.polled.notified();
            if let Some(t) = self.shared.lock().next_calls.iter().find(|t| **t >= since) {
                return Some(t.duration_since(since));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Number of `invocation/next` calls so far.
    pub fn next_calls(&self) -> usize {
        self.shared.lock().next_calls.len()
    }

    /// The init error a bootstrap reported, if any.
    pub fn init_error(&self) -> Option<ErrorBody> {
        self.shared.lock().init_error.clone()
    }

    /// Waits (bounded) for an init error report.
    pub async fn wait_init_error(&self, timeout: Duration) -> Option<ErrorBody> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(err) = self.init_error() {
                return Some(err);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.init_error()
    }

    /// Time since the driver started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Counts a caller blocked on `invocation/next` until it gets an event or hangs up.
struct PollerGuard(Arc<Shared>);

impl Drop for PollerGuard {
    fn drop(&mut self) {
        let mut inner = self.0.lock();
        inner.pollers = inner.pollers.saturating_sub(1);
    }
}

fn header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    {
        let mut inner = shared.lock();
        inner.next_calls.push(Instant::now());
        inner.pollers += 1;
    }
    shared.polled.notify_waiters();
    let guard = PollerGuard(Arc::clone(&shared));
    let queued = loop {
        let notified = shared.queued.notified();
        if let Some(item) = shared.lock().queue.pop_front() {
            break item;
        }
        notified.await;
    };
    drop(guard);
    shared
        .lock()
        .in_flight
        .insert(queued.request_id.clone(), Instant::now());
    let deadline_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| (d + queued.deadline).as_millis())
        .unwrap_or_default();
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("lambda-runtime-aws-request-id", header(&queued.request_id));
    headers.insert(
        "lambda-runtime-deadline-ms",
        header(&deadline_ms.to_string()),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        header(&format!(
            "arn:aws:lambda:us-east-1:{ACCOUNT_ID}:function:{}",
            shared.function_name
        )),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        header(&format!(
            "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1;Lineage=a:{}",
            queued.request_id.len()
        )),
    );
    (StatusCode::OK, headers, queued.payload.to_string()).into_response()
}

fn finish(shared: &Shared, id: &str, outcome: Outcome) -> Response {
    let sender = {
        let mut inner = shared.lock();
        if inner.in_flight.remove(id).is_none() {
            None
        } else {
            inner.waiting.remove(id)
        }
    };
    match sender {
        Some(tx) => {
            let _ = tx.send(outcome);
            (StatusCode::ACCEPTED, axum::Json(json!({"status": "OK"}))).into_response()
        }
        None => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({
                "errorType": "InvalidRequestID",
                "errorMessage": format!("Invalid request ID: {id}")
            })),
        )
            .into_response(),
    }
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    finish(&shared, &id, Outcome::Response(value))
}

fn error_body(headers: &HeaderMap, body: &[u8]) -> ErrorBody {
    let mut err: ErrorBody = serde_json::from_slice(body).unwrap_or_else(|_| ErrorBody {
        error_type: "Unparseable".into(),
        error_message: String::from_utf8_lossy(body).into_owned(),
        header_error_type: None,
    });
    err.header_error_type = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    err
}

async fn invocation_error(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let err = error_body(&headers, &body);
    finish(&shared, &id, Outcome::Error(err))
}

async fn init_error(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.lock().init_error = Some(error_body(&headers, &body));
    (StatusCode::ACCEPTED, axum::Json(json!({"status": "OK"}))).into_response()
}
