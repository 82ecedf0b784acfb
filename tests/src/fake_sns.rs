//! A fake Amazon SNS (`Publish` only) speaking the AWS Query protocol aws-sdk-sns uses:
//! `POST /` with a form body (`Action=Publish&TopicArn=…&Subject=…&Message=…`), XML reply.
//! It records every message so tests assert what opsbot published.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

/// One published message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub topic_arn: String,
    pub subject: Option<String>,
    pub message: String,
    pub message_id: String,
}

#[derive(Default)]
struct Inner {
    published: Vec<Published>,
    topics: Vec<String>,
    fail_next: u32,
}

/// The fake SNS endpoint.
pub struct FakeSns {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    _server: crate::serve::Served,
}

fn lock(inner: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FakeSns {
    /// Serves on 127.0.0.1 (random port) with the given topics existing.
    pub async fn start(topics: &[&str]) -> FakeSns {
        let inner = Arc::new(Mutex::new(Inner {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/", post(handle))
            .with_state(Arc::clone(&inner));
        let server = crate::serve::serve(app, "the fake SNS").await;
        FakeSns {
            addr: server.addr,
            inner,
            _server: server,
        }
    }

    /// The endpoint URL (`AWS_ENDPOINT_URL_SNS` / `endpoint_url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything published so far.
    pub fn published(&self) -> Vec<Published> {
        lock(&self.inner).published.clone()
    }

    /// The next `n` publishes fail with `InternalError` (500).
    pub fn fail_next(&self, n: u32) {
        lock(&self.inner).fail_next = n;
    }
}

fn xml(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"))],
        body,
    )
        .into_response()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    xml(
        status,
        format!(
            "<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\">\
             <Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error>\
             <RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>",
            escape(message)
        ),
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if form.get("Action").map(String::as_str) != Some("Publish") {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            &format!("unsupported action {:?}", form.get("Action")),
        );
    }
    let Some(topic) = form.get("TopicArn") else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            "TopicArn is required",
        );
    };
    let Some(message) = form.get("Message") else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            "Message is required",
        );
    };
    let mut state = lock(&inner);
    if state.fail_next > 0 {
        state.fail_next -= 1;
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "try again",
        );
    }
    if !state.topics.iter().any(|t| t == topic) {
        return error(StatusCode::NOT_FOUND, "NotFound", "Topic does not exist");
    }
    if let Some(subject) = form.get("Subject")
        && (subject.len() > 100 || subject.chars().any(|c| !c.is_ascii() || c.is_control()))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            "Invalid parameter: Subject",
        );
    }
    let message_id = format!("95df01b4-ee98-5cb9-9903-{:012x}", state.published.len() + 1);
    state.published.push(Published {
        topic_arn: topic.clone(),
        subject: form.get("Subject").cloned(),
        message: message.clone(),
        message_id: message_id.clone(),
    });
    xml(
        StatusCode::OK,
        format!(
            "<PublishResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\">\
             <PublishResult><MessageId>{message_id}</MessageId></PublishResult>\
             <ResponseMetadata><RequestId>f187a3c1-376f-11df-8963-01868b7c937a</RequestId>\
             </ResponseMetadata></PublishResponse>"
        ),
    )
}
