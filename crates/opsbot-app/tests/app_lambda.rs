//! The App on AWS Lambda, end to end: the real `opsbot-app-lambda` bootstrap (both roles)
//! run as Lambda runs it, through the Runtime API driver (tests/src/lambda_runtime.rs),
//! against moto's server (SQS, DynamoDB, Secrets Manager over the real AWS SDK) and the fake
//! GitHub, which sends the App's webhooks and serves its delivery log.
//!
//! Two small stand-ins play the AWS parts between them, as the Lambda service does:
//!
//! - [`FunctionUrl`]: an HTTP server that turns each request into a function URL event
//!   (payload format 2.0), invokes the ingest function and turns its answer back into the
//!   HTTP response. GitHub (the fake) posts its deliveries there.
//! - [`run_batch`]: the SQS event source mapping: receives a batch from the queue in moto,
//!   invokes the worker with it, deletes the messages that succeeded and makes the ones
//!   listed in `batchItemFailures` visible again (their visibility timeout passing at once).
//!
//! Every bootstrap starts with no secret in its environment: the webhook secret and the
//! App's private key are read from Secrets Manager in moto at cold start.
//!
//! Skips with a message when `moto_server` is absent (fails under CI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use common::{
    APP_ID, INSTALLATION, REPO, SECRET, aws_key, completed_for, eventually, fake_with_repo,
    push_payload_for,
};
use opsbot_app::signature::sign;
use opsbot_core::github::GitHub;
use opsbot_tests::fake_github::deliveries::FakeDelivery;
use opsbot_tests::fake_github::{FailureRule, FakeGitHub, TEST_APP_PRIVATE_KEY};
use opsbot_tests::lambda_runtime::RuntimeApi;
use opsbot_tests::moto::Moto;
use opsbot_tests::serve::Served;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_opsbot-app-lambda");
const QUEUE: &str = "opsbot-app-jobs";
const TABLE: &str = "opsbot-app-deliveries";

// ---- AWS in moto ---------------------------------------------------------------------------

/// The queue, the delivery table and the App's two secrets, created in moto as the
/// Terraform module creates them.
struct Aws {
    sqs: aws_sdk_sqs::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    secrets: aws_sdk_secretsmanager::Client,
    queue_url: String,
    queue_arn: String,
    webhook_secret_arn: String,
    private_key_arn: String,
}

impl Aws {
    async fn setup(moto: &Moto) -> Aws {
        let config = moto.sdk_config().await;
        let sqs = aws_sdk_sqs::Client::new(&config);
        let dynamodb = aws_sdk_dynamodb::Client::new(&config);
        let secrets = aws_sdk_secretsmanager::Client::new(&config);
        let queue_url = sqs
            .create_queue()
            .queue_name(QUEUE)
            .attributes(QueueAttributeName::VisibilityTimeout, "60")
            .send()
            .await
            .unwrap()
            .queue_url()
            .unwrap()
            .to_string();
        let queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .unwrap();
        common::create_delivery_table(&dynamodb, TABLE).await;
        let mut aws = Aws {
            sqs,
            dynamodb,
            secrets,
            queue_url,
            queue_arn,
            webhook_secret_arn: String::new(),
            private_key_arn: String::new(),
        };
        aws.webhook_secret_arn = aws.secret("opsbot-app/webhook-secret", SECRET).await;
        aws.private_key_arn = aws
            .secret("opsbot-app/private-key", TEST_APP_PRIVATE_KEY)
            .await;
        aws
    }

    async fn secret(&self, name: &str, value: &str) -> String {
        self.secrets
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .unwrap()
            .arn()
            .unwrap()
            .to_string()
    }

    /// Messages in the queue, visible or not.
    async fn queued(&self) -> usize {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let attrs = out.attributes().cloned().unwrap_or_default();
        let count = |k: QueueAttributeName| {
            attrs
                .get(&k)
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0)
        };
        count(QueueAttributeName::ApproximateNumberOfMessages)
            + count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
    }

    /// The visible messages' bodies (parsed) and `delivery` attributes, left in the queue.
    async fn peek(&self) -> Vec<(Value, Option<String>)> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        out.messages()
            .iter()
            .map(|m| {
                let body = serde_json::from_str(m.body().unwrap_or("null")).unwrap();
                let delivery = m
                    .message_attributes()
                    .and_then(|a| a.get("delivery"))
                    .and_then(|v| v.string_value())
                    .map(str::to_string);
                (body, delivery)
            })
            .collect()
    }

    /// Receives and deletes every message (lost, as to a purged dead-letter queue).
    async fn lose_all(&self) {
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            if out.messages().is_empty() {
                return;
            }
            for m in out.messages() {
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    /// The delivery table's item for `key`, attribute → string/number text.
    async fn item(&self, key: &str) -> Option<std::collections::HashMap<String, String>> {
        let out = self
            .dynamodb
            .get_item()
            .table_name(TABLE)
            .key("delivery_id", AttributeValue::S(key.to_string()))
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        out.item().map(|item| {
            item.iter()
                .map(|(k, v)| {
                    let text = match v {
                        AttributeValue::S(s) | AttributeValue::N(s) => s.clone(),
                        other => format!("{other:?}"),
                    };
                    (k.clone(), text)
                })
                .collect()
        })
    }
}

// ---- the bootstrap as Lambda runs it --------------------------------------------------------

/// One `opsbot-app-lambda` process with its own Runtime API; its stdout and stderr (the
/// JSON logs) go to a file.
struct Lambda {
    api: Arc<RuntimeApi>,
    _child: Child,
    log: PathBuf,
}

fn log_path(role: &str) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "opsbot-app-lambda-{role}-{}-{}.log",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

impl Lambda {
    /// Starts the bootstrap as `role` with moto's endpoint, dummy credentials and `env`,
    /// and waits until it polls for its first invocation (or panics with its init error).
    async fn start(moto: &Moto, role: &str, env: &[(&str, String)]) -> Lambda {
        let api = Arc::new(RuntimeApi::start_named(&format!("opsbot-app-{role}")).await);
        let log = log_path(role);
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .envs(api.lambda_env())
            .envs(moto.env())
            .env("OPSBOT_APP_ROLE", role)
            .env("AWS_CONFIG_FILE", "/nonexistent/config")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
            .env("RUST_LOG", "info")
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn the bootstrap");
        let lambda = Lambda {
            api,
            _child: child,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if lambda
                .api
                .wait_for_pollers(1, Duration::from_millis(100))
                .await
            {
                return lambda;
            }
            if let Some(err) = lambda.api.init_error() {
                panic!("{role}: init error {err:?}\n{}", lambda.logs());
            }
            assert!(
                Instant::now() < deadline,
                "{role}: no poll within 30 s\n{}",
                lambda.logs()
            );
        }
    }

    async fn ingest(moto: &Moto, aws: &Aws, extra: &[(&str, String)]) -> Lambda {
        let mut env = vec![
            ("OPSBOT_APP_QUEUE_URL", aws.queue_url.clone()),
            (
                "GITHUB_WEBHOOK_SECRET_SECRET_ARN",
                aws.webhook_secret_arn.clone(),
            ),
        ];
        env.extend(extra.iter().cloned());
        Lambda::start(moto, "ingest", &env).await
    }

    /// The ingest with SQS unreachable (its endpoint a closed port; Secrets Manager still
    /// answers).
    async fn ingest_without_sqs(moto: &Moto, aws: &Aws) -> Lambda {
        let sqs = format!("http://127.0.0.1:{}", closed_port());
        Lambda::ingest(moto, aws, &[("AWS_ENDPOINT_URL_SQS", sqs)]).await
    }

    async fn worker(moto: &Moto, aws: &Aws, fake: &FakeGitHub) -> Lambda {
        Lambda::start(moto, "worker", &worker_env(aws, fake)).await
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Asserts the logs hold neither the webhook secret nor any line of the private key.
    fn assert_no_secret_logged(&self) {
        let logs = self.logs();
        assert!(!logs.is_empty(), "no logs at {}", self.log.display());
        assert!(!logs.contains(SECRET), "webhook secret in the logs");
        for line in TEST_APP_PRIVATE_KEY
            .lines()
            .filter(|l| l.len() > 20 && !l.starts_with("-----"))
        {
            assert!(!logs.contains(line), "private key in the logs");
        }
    }
}

impl Drop for Lambda {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.log);
    }
}

fn worker_env(aws: &Aws, fake: &FakeGitHub) -> Vec<(&'static str, String)> {
    vec![
        ("OPSBOT_APP_DEDUP_TABLE", TABLE.to_string()),
        ("GITHUB_API_URL", fake.url()),
        ("GITHUB_APP_ID", APP_ID.to_string()),
        (
            "GITHUB_APP_PRIVATE_KEY_SECRET_ARN",
            aws.private_key_arn.clone(),
        ),
        ("OPSBOT_GITHUB_MAX_ATTEMPTS", "2".to_string()),
        ("OPSBOT_GITHUB_BACKOFF_MS", "10".to_string()),
        ("OPSBOT_GITHUB_RETRY_BUDGET_SECS", "5".to_string()),
        // Verify accepted deliveries at once (a scan still queued is de-duplicated).
        ("OPSBOT_APP_REDELIVER_GRACE_SECS", "0".to_string()),
    ]
}

// ---- the function URL in front of the ingest ------------------------------------------------

/// A function URL: HTTP in, payload format 2.0 event to the ingest function, its answer out.
struct FunctionUrl {
    served: Served,
}

impl FunctionUrl {
    async fn start(ingest: &Lambda) -> FunctionUrl {
        let app = Router::new()
            .fallback(function_url_request)
            .with_state(Arc::clone(&ingest.api));
        FunctionUrl {
            served: opsbot_tests::serve::serve(app, "the function URL").await,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.served.addr)
    }
}

async fn function_url_request(
    State(api): State<Arc<RuntimeApi>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut hdrs = serde_json::Map::new();
    for name in headers.keys() {
        let joined = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        hdrs.insert(name.as_str().to_string(), Value::String(joined));
    }
    // Text bodies arrive as they are; others base64-encoded, as function URLs do.
    let (text, encoded) = match std::str::from_utf8(&body) {
        Ok(t) => (t.to_string(), false),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&body),
            true,
        ),
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let user_agent = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": uri.path(),
        "rawQueryString": uri.query().unwrap_or(""),
        "headers": hdrs,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "opsbotappingest",
            "domainName": "opsbotappingest.lambda-url.us-east-1.on.aws",
            "domainPrefix": "opsbotappingest",
            "http": {
                "method": method.as_str(),
                "path": uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": user_agent
            },
            "requestId": format!("req-{now_ms}"),
            "routeKey": "$default",
            "stage": "$default",
            "time": "02/Dec/2026:13:00:00 +0000",
            "timeEpoch": now_ms
        },
        "body": text,
        "isBase64Encoded": encoded
    });
    match api.invoke(event).await {
        Ok(answer) => {
            let status = answer["statusCode"]
                .as_u64()
                .and_then(|s| StatusCode::from_u16(s as u16).ok())
                .unwrap_or(StatusCode::BAD_GATEWAY);
            let body = answer["body"].as_str().unwrap_or("");
            let body = if answer["isBase64Encoded"].as_bool() == Some(true) {
                base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .unwrap_or_default()
            } else {
                body.as_bytes().to_vec()
            };
            let mut resp = (status, body).into_response();
            if let Some(map) = answer["headers"].as_object() {
                for (k, v) in map {
                    if let (Ok(name), Some(Ok(value))) = (
                        axum::http::HeaderName::try_from(k.as_str()),
                        v.as_str().map(axum::http::HeaderValue::from_str),
                    ) {
                        resp.headers_mut().insert(name, value);
                    }
                }
            }
            resp
        }
        // The function failed: a function URL answers 502.
        Err(err) => (
            StatusCode::BAD_GATEWAY,
            axum::Json(json!({ "Message": err.error_message })),
        )
            .into_response(),
    }
}

// ---- the SQS event source mapping -----------------------------------------------------------

/// One record handed to the worker.
#[derive(Debug, Clone)]
struct Record {
    message_id: String,
    delivery: String,
    receives: u32,
}

/// What one worker invocation was given and answered.
#[derive(Debug)]
struct Batch {
    records: Vec<Record>,
    failures: Vec<String>,
}

impl Batch {
    fn failed_deliveries(&self) -> Vec<&str> {
        self.records
            .iter()
            .filter(|r| self.failures.contains(&r.message_id))
            .map(|r| r.delivery.as_str())
            .collect()
    }
}

/// Receives up to 10 messages, invokes the worker with them as Lambda's event source
/// mapping does, deletes the ones not in `batchItemFailures`, and makes the failed ones
/// visible again at once (their visibility timeout passing).
async fn run_batch(aws: &Aws, worker: &Lambda) -> Batch {
    let out = aws
        .sqs
        .receive_message()
        .queue_url(&aws.queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap();
    let messages = out.messages().to_vec();
    if messages.is_empty() {
        return Batch {
            records: Vec::new(),
            failures: Vec::new(),
        };
    }
    let mut records = Vec::new();
    let event_records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_string(), Value::String(v.clone())))
                        .collect()
                })
                .unwrap_or_default();
            let message_attributes: serde_json::Map<String, Value> = m
                .message_attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                json!({
                                    "stringValue": v.string_value(),
                                    "stringListValues": [],
                                    "binaryListValues": [],
                                    "dataType": v.data_type()
                                }),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let delivery = m
                .message_attributes()
                .and_then(|a| a.get("delivery"))
                .and_then(|v| v.string_value())
                .unwrap_or_default()
                .to_string();
            let receives = attributes
                .get("ApproximateReceiveCount")
                .and_then(Value::as_str)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            records.push(Record {
                message_id: m.message_id().unwrap_or_default().to_string(),
                delivery,
                receives,
            });
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": aws.queue_arn,
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    let answer = worker
        .api
        .invoke(json!({ "Records": event_records }))
        .await
        .unwrap_or_else(|e| panic!("the worker failed the batch: {e:?}\n{}", worker.logs()));
    let failures: Vec<String> = answer["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("not a batch response: {answer}"))
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
        .collect();
    for m in &messages {
        let id = m.message_id().unwrap_or_default();
        let receipt = m.receipt_handle().unwrap_or_default();
        if failures.iter().any(|f| f == id) {
            aws.sqs
                .change_message_visibility()
                .queue_url(&aws.queue_url)
                .receipt_handle(receipt)
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
        } else {
            aws.sqs
                .delete_message()
                .queue_url(&aws.queue_url)
                .receipt_handle(receipt)
                .send()
                .await
                .unwrap();
        }
    }
    Batch { records, failures }
}

/// Runs batches until the queue is empty (at most `max` invocations); returns them.
async fn drain(aws: &Aws, worker: &Lambda, max: usize) -> Vec<Batch> {
    let mut batches = Vec::new();
    for _ in 0..max {
        if aws.queued().await == 0 {
            return batches;
        }
        batches.push(run_batch(aws, worker).await);
    }
    assert_eq!(aws.queued().await, 0, "queue not drained: {batches:?}");
    batches
}

// ---- GitHub's side -------------------------------------------------------------------------

/// Asks the fake GitHub to redeliver attempt `id` (as a person would in the App's
/// settings) and waits until the new attempt is recorded.
async fn redeliver(fake: &FakeGitHub, d: &FakeDelivery) -> FakeDelivery {
    let before = attempts(fake, &d.guid).len();
    let app = GitHub::app_client(&common::settings(fake)).unwrap();
    app.send::<()>(
        "redeliver",
        http::Method::POST,
        &format!("/app/hook/deliveries/{}/attempts", d.id),
        None,
    )
    .await
    .unwrap();
    eventually("the redelivery", Duration::from_secs(20), || {
        attempts(fake, &d.guid).len() > before
    })
    .await;
    attempts(fake, &d.guid).pop().unwrap()
}

fn attempts(fake: &FakeGitHub, guid: &str) -> Vec<FakeDelivery> {
    fake.deliveries()
        .into_iter()
        .filter(|x| x.guid == guid)
        .collect()
}

fn check_run_creations(fake: &FakeGitHub, repo: &str) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with(&format!("/repos/{repo}/check-runs")))
        .count()
}

/// A push to main adding a file with a planted key; (payload, head sha).
fn keyed_push(fake: &FakeGitHub, repo: &str, seed: u64) -> (Vec<u8>, String) {
    let before = fake.commit_files(repo, "main", &[("a.txt", "a\n")], "a");
    let after = fake.commit_files(
        repo,
        "main",
        &[("k.env", &format!("K={}\n", aws_key(seed)))],
        "k",
    );
    (
        push_payload_for(repo, "refs/heads/main", &before, &after, &[&after]),
        after,
    )
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

async fn post_signed(
    url: &str,
    guid: &str,
    body: &[u8],
    signature: Option<String>,
) -> (u16, Value, HeaderMap) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/test")
        .header("x-github-event", "push")
        .header("x-github-delivery", guid);
    if let Some(sig) = signature {
        req = req.header("x-hub-signature-256", sig);
    }
    let resp = req.body(body.to_vec()).send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body, headers)
}

fn scheduled_event() -> Value {
    json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-12-02T13:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/opsbot-app-redeliver"],
        "detail": {}
    })
}

fn guids(list: &Value) -> HashSet<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().or_else(|| x[0].as_str()))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

// ---- (a) the ingest ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_queues_a_signed_delivery_refuses_a_forged_one_and_answers_503_without_sqs() {
    let Some(moto) = Moto::start("ingest_queues_a_signed_delivery") else {
        return;
    };
    let aws = Aws::setup(&moto).await;
    let fake = fake_with_repo().await;
    let (body, head) = keyed_push(&fake, REPO, 1);
    let ingest = Lambda::ingest(&moto, &aws, &[]).await;
    let url = FunctionUrl::start(&ingest).await;
    fake.set_webhook(&url.url(), SECRET);

    // Signed by GitHub: 202, and exactly one job in the queue, naming the delivery.
    let started = Instant::now();
    let d = fake.deliver_webhook("push", &body).await;
    let took = started.elapsed();
    assert_eq!(d.status_code, 202, "{d:?}\n{}", ingest.logs());
    let answer: Value = serde_json::from_str(&d.response).unwrap();
    assert_eq!(answer["status"], "queued", "{answer}");
    assert_eq!(answer["delivery"], d.guid.as_str());
    assert_eq!(aws.queued().await, 1);
    let jobs = aws.peek().await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let (job, attr) = &jobs[0];
    assert_eq!(job["delivery"], d.guid.as_str(), "{job}");
    assert_eq!(attr.as_deref(), Some(d.guid.as_str()));
    assert_eq!(job["event"], "push");
    assert_eq!(job["repo"], REPO);
    assert_eq!(job["installation_id"], INSTALLATION);
    assert_eq!(job["head_sha"], head.as_str());
    assert_eq!(job["target"]["kind"], "push");
    assert!(
        fake.check_runs(REPO).is_empty(),
        "the ingest scans nothing itself"
    );

    // Forged: a wrong secret, no signature, a signature of another body. 401, nothing queued.
    let forged = [
        (Some(sign(b"not-the-webhook-secret", &body)), "wrong secret"),
        (None, "unsigned"),
        (Some(sign(SECRET.as_bytes(), b"{}")), "another body"),
    ];
    for (i, (signature, what)) in forged.into_iter().enumerate() {
        let (status, answer, _) =
            post_signed(&url.url(), &format!("forged-{i}"), &body, signature).await;
        assert_eq!(status, 401, "{what}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {answer}"
        );
    }
    assert_eq!(aws.queued().await, 1, "a forged delivery was queued");

    // SQS unreachable (its endpoint a closed port; Secrets Manager still answers): 503
    // with Retry-After, which GitHub records as a failed delivery.
    let down = Lambda::ingest_without_sqs(&moto, &aws).await;
    let down_url = FunctionUrl::start(&down).await;
    fake.set_webhook(&down_url.url(), SECRET);
    let refused = fake.deliver_webhook("push", &body).await;
    assert_eq!(refused.status_code, 503, "{refused:?}\n{}", down.logs());
    assert!(
        refused.response.contains("queue is unavailable"),
        "{refused:?}"
    );
    let (status, answer, headers) = post_signed(
        &down_url.url(),
        "direct",
        &body,
        Some(sign(SECRET.as_bytes(), &body)),
    )
    .await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(
        headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("60")
    );
    assert_eq!(aws.queued().await, 1);
    assert!(
        down.logs().contains("the job could not be queued"),
        "{}",
        down.logs()
    );
    assert!(ingest.logs().contains("webhook refused"));
    ingest.assert_no_secret_logged();
    down.assert_no_secret_logged();
    eprintln!(
        "ingest: delivery answered 202 in {} ms (first invocation after init, SQS in moto)",
        took.as_millis()
    );
}

// ---- (b) the worker ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_scans_a_delivery_once_whether_queued_twice_or_after_a_restart() {
    let Some(moto) = Moto::start("the_worker_scans_a_delivery_once") else {
        return;
    };
    let aws = Aws::setup(&moto).await;
    let fake = fake_with_repo().await;
    let (body, head) = keyed_push(&fake, REPO, 2);
    let ingest = Lambda::ingest(&moto, &aws, &[]).await;
    let url = FunctionUrl::start(&ingest).await;
    fake.set_webhook(&url.url(), SECRET);

    // Delivered, and redelivered by GitHub: two messages with one delivery id.
    let d = fake.deliver_webhook("push", &body).await;
    assert_eq!(d.status_code, 202, "{d:?}");
    let again = redeliver(&fake, &d).await;
    assert!(again.redelivery && again.status_code == 202, "{again:?}");
    assert_eq!(aws.queued().await, 2);

    // One batch holds both: one claims the delivery in DynamoDB and scans; the other finds
    // it claimed and is reported failed, then acknowledged as done on its retry.
    let worker = Lambda::worker(&moto, &aws, &fake).await;
    let batches = drain(&aws, &worker, 4).await;
    let first = &batches[0];
    assert_eq!(first.records.len(), 2, "{batches:?}");
    assert!(first.records.iter().all(|r| r.delivery == d.guid));
    assert!(first.failures.len() <= 1, "{batches:?}");
    let runs = fake.check_runs(REPO);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(check_run_creations(&fake, REPO), 1);
    let run = &runs[0];
    assert_eq!(run.external_id.as_deref(), Some(d.guid.as_str()));
    assert_eq!(run.head_sha, head);
    assert_eq!(run.status, "completed");
    assert_eq!(run.conclusion.as_deref(), Some("failure"), "{run:?}");
    assert_eq!(run.annotations.len(), 1, "{run:?}");
    assert_eq!(run.annotations[0]["path"], "k.env");
    let item = aws.item(&d.guid).await.expect("the ledger item");
    assert_eq!(item["claim_state"], "done", "{item:?}");
    let expires: u64 = item["expires_at"].parse().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        expires > now + 6 * 86_400 && expires <= now + 7 * 86_400 + 60,
        "TTL {expires} vs now {now}"
    );

    // A restart: a new worker process, and GitHub sends the delivery a third time.
    drop(worker);
    let third = redeliver(&fake, &d).await;
    assert_eq!(third.status_code, 202);
    let worker = Lambda::worker(&moto, &aws, &fake).await;
    let batches = drain(&aws, &worker, 2).await;
    assert_eq!(batches.len(), 1, "{batches:?}");
    assert_eq!(batches[0].records.len(), 1);
    assert!(batches[0].failures.is_empty(), "{batches:?}");
    assert_eq!(
        fake.check_runs(REPO).len(),
        1,
        "scanned again after a restart"
    );
    assert_eq!(check_run_creations(&fake, REPO), 1);
    assert!(
        worker
            .logs()
            .contains("duplicate delivery: already scanned"),
        "{}",
        worker.logs()
    );
    worker.assert_no_secret_logged();
    ingest.assert_no_secret_logged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_that_fails_is_reported_alone_in_batch_item_failures_and_succeeds_on_retry() {
    let Some(moto) = Moto::start("a_scan_that_fails_is_reported_alone") else {
        return;
    };
    const BROKEN: &str = "acme/broken";
    let aws = Aws::setup(&moto).await;
    let fake = FakeGitHub::start().await;
    fake.create_repo(REPO);
    fake.create_repo(BROKEN);
    fake.add_installation(INSTALLATION, &[REPO, BROKEN]);
    let (ok_body, _) = keyed_push(&fake, REPO, 3);
    let (broken_body, _) = keyed_push(&fake, BROKEN, 4);
    let ingest = Lambda::ingest(&moto, &aws, &[]).await;
    let url = FunctionUrl::start(&ingest).await;
    fake.set_webhook(&url.url(), SECRET);
    let ok = fake.deliver_webhook("push", &ok_body).await;
    let broken = fake.deliver_webhook("push", &broken_body).await;
    assert_eq!((ok.status_code, broken.status_code), (202, 202));

    // GitHub is down for the broken repository: its first call fails both of the worker's
    // attempts (OPSBOT_GITHUB_MAX_ATTEMPTS=2), then it is back.
    fake.fail_next(FailureRule::bad_gateway(&format!("/repos/{BROKEN}"), 2));
    let worker = Lambda::worker(&moto, &aws, &fake).await;
    let first = run_batch(&aws, &worker).await;
    assert_eq!(first.records.len(), 2, "{first:?}");
    assert_eq!(
        first.failed_deliveries(),
        vec![broken.guid.as_str()],
        "{first:?}"
    );
    assert!(completed_for(&fake.check_runs(REPO), &ok.guid));
    assert!(fake.check_runs(BROKEN).is_empty());
    let bad_gateways = fake
        .requests()
        .iter()
        .filter(|r| r.path.contains(&format!("/repos/{BROKEN}")) && r.status == 502)
        .count();
    assert_eq!(bad_gateways, 2);
    // The claim was released, so the retry can take it.
    assert!(aws.item(&broken.guid).await.is_none());

    // The retry (SQS hands the failed message back): scanned and completed.
    let retry = run_batch(&aws, &worker).await;
    assert_eq!(retry.records.len(), 1, "{retry:?}");
    assert_eq!(retry.records[0].delivery, broken.guid);
    assert_eq!(retry.records[0].receives, 2);
    assert!(retry.failures.is_empty(), "{retry:?}\n{}", worker.logs());
    let runs = fake.check_runs(BROKEN);
    assert!(completed_for(&runs, &broken.guid), "{runs:?}");
    assert_eq!(runs[0].conclusion.as_deref(), Some("failure"));
    assert_eq!(fake.check_runs(REPO).len(), 1);
    assert_eq!(aws.queued().await, 0);
    assert_eq!(aws.item(&broken.guid).await.unwrap()["claim_state"], "done");
    worker.assert_no_secret_logged();
}

// ---- (c) secrets from Secrets Manager ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_secrets_come_from_secrets_manager_fields_and_a_missing_one_fails_init() {
    let Some(moto) = Moto::start("the_apps_secrets_come_from_secrets_manager") else {
        return;
    };
    let aws = Aws::setup(&moto).await;
    let fake = fake_with_repo().await;
    // One JSON secret holding both, each function reading its own field (`ARN#field`).
    let both = aws
        .secret(
            "opsbot-app/all",
            &json!({ "webhook": SECRET, "key": TEST_APP_PRIVATE_KEY }).to_string(),
        )
        .await;
    let ingest = Lambda::start(
        &moto,
        "ingest",
        &[
            ("OPSBOT_APP_QUEUE_URL", aws.queue_url.clone()),
            (
                "GITHUB_WEBHOOK_SECRET_SECRET_ARN",
                format!("{both}#webhook"),
            ),
        ],
    )
    .await;
    let url = FunctionUrl::start(&ingest).await;
    fake.set_webhook(&url.url(), SECRET);
    let (body, _) = keyed_push(&fake, REPO, 5);
    let d = fake.deliver_webhook("push", &body).await;
    assert_eq!(d.status_code, 202, "{d:?}");
    let mut env = worker_env(&aws, &fake);
    env.retain(|(k, _)| *k != "GITHUB_APP_PRIVATE_KEY_SECRET_ARN");
    env.push(("GITHUB_APP_PRIVATE_KEY_SECRET_ARN", format!("{both}#key")));
    let worker = Lambda::start(&moto, "worker", &env).await;
    let batches = drain(&aws, &worker, 2).await;
    assert!(batches[0].failures.is_empty(), "{batches:?}");
    assert!(completed_for(&fake.check_runs(REPO), &d.guid));
    ingest.assert_no_secret_logged();
    worker.assert_no_secret_logged();

    // Missing secrets: the init error names the variable and the secret, never a value.
    for (role, var, env) in [
        (
            "ingest",
            "GITHUB_WEBHOOK_SECRET",
            vec![
                ("OPSBOT_APP_QUEUE_URL", aws.queue_url.clone()),
                (
                    "GITHUB_WEBHOOK_SECRET_SECRET_ARN",
                    "opsbot-app/missing".to_string(),
                ),
            ],
        ),
        ("worker", "GITHUB_APP_PRIVATE_KEY", {
            let mut e = worker_env(&aws, &fake);
            e.retain(|(k, _)| *k != "GITHUB_APP_PRIVATE_KEY_SECRET_ARN");
            e.push((
                "GITHUB_APP_PRIVATE_KEY_SECRET_ARN",
                "opsbot-app/missing".to_string(),
            ));
            e
        }),
    ] {
        let api = RuntimeApi::start_named(&format!("opsbot-app-{role}")).await;
        let log = log_path(role);
        let out = std::fs::File::create(&log).unwrap();
        let _child = Command::new(BIN)
            .env_clear()
            .envs(api.lambda_env())
            .envs(moto.env())
            .env("OPSBOT_APP_ROLE", role)
            .env("AWS_CONFIG_FILE", "/nonexistent/config")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(out))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let err = api
            .wait_init_error(Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("{role}: no init error"));
        assert_eq!(err.error_type, "OpsbotApp.InitError", "{err:?}");
        assert!(err.error_message.contains(var), "{role}: {err:?}");
        assert!(
            err.error_message.contains("opsbot-app/missing"),
            "{role}: {err:?}"
        );
        let logs = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        assert!(!logs.contains(SECRET));
    }
}

// ---- nothing lost: the redelivery sweep on a schedule ---------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_sweep_redelivers_refused_and_lost_deliveries_once_across_workers() {
    let Some(moto) = Moto::start("the_scheduled_sweep_redelivers") else {
        return;
    };
    let aws = Aws::setup(&moto).await;
    let fake = fake_with_repo().await;
    let (body, _) = keyed_push(&fake, REPO, 7);

    // 1. The ingest cannot reach SQS: GitHub records a 503 for P.
    let down = Lambda::ingest_without_sqs(&moto, &aws).await;
    let down_url = FunctionUrl::start(&down).await;
    fake.set_webhook(&down_url.url(), SECRET);
    let p = fake.deliver_webhook("push", &body).await;
    assert_eq!(p.status_code, 503, "{p:?}");

    // 2. A deploy is under way: the endpoint accepts connections and does not answer.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_url = format!("http://{}/", hang.local_addr().unwrap());
    let hanging = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = hang.accept().await {
            held.push(stream);
        }
    });
    fake.set_webhook(&hang_url, SECRET);

    // 3. Two scheduled sweeps on two cold workers: P is asked for once, the second sweep
    //    finds the first one's record in DynamoDB (the new attempt is not listed yet).
    let w1 = Lambda::worker(&moto, &aws, &fake).await;
    let w2 = Lambda::worker(&moto, &aws, &fake).await;
    let (r1, r2) = tokio::join!(w1.api.invoke(scheduled_event()), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        w2.api.invoke(scheduled_event()).await
    });
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    let asked: Vec<&Value> = [&r1, &r2]
        .into_iter()
        .filter(|r| guids(&r["redelivered"]).contains(&p.guid))
        .collect();
    assert_eq!(asked.len(), 1, "{r1}\n{r2}");
    let other = if guids(&r1["redelivered"]).contains(&p.guid) {
        &r2
    } else {
        &r1
    };
    assert!(guids(&other["already_asked"]).contains(&p.guid), "{other}");
    assert_eq!(fake.redelivery_requests(&p.guid), 1);
    let logged = aws
        .item(&format!("redeliver#{}", p.guid))
        .await
        .expect("the sweep's record");
    assert_eq!(logged["asked_attempt"], p.id.to_string());

    // 4. The deploy is done (a working ingest); the held attempt ends without an answer.
    let ingest = Lambda::ingest(&moto, &aws, &[]).await;
    let url = FunctionUrl::start(&ingest).await;
    fake.set_webhook(&url.url(), SECRET);
    hanging.abort();
    eventually("the held attempt", Duration::from_secs(15), || {
        attempts(&fake, &p.guid).len() == 2
    })
    .await;
    assert_eq!(attempts(&fake, &p.guid)[1].status_code, 0);

    // Q is accepted, but its message is lost (as if moved to the DLQ and purged).
    let (q_body, _) = keyed_push(&fake, REPO, 8);
    let q = fake.deliver_webhook("push", &q_body).await;
    assert_eq!(q.status_code, 202);
    aws.lose_all().await;
    assert_eq!(aws.queued().await, 0);

    // 5. The next scheduled sweep (warm w1): P's unanswered attempt, and Q accepted but
    //    never scanned, are redelivered, queued and scanned.
    let r3 = w1.api.invoke(scheduled_event()).await.unwrap();
    let redelivered = guids(&r3["redelivered"]);
    assert!(redelivered.contains(&p.guid), "{r3}");
    assert!(redelivered.contains(&q.guid), "{r3}");
    assert!(
        r3["redelivered"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x[0] == q.guid.as_str() && x[1] == "accepted but never scanned"),
        "{r3}"
    );
    assert!(r3["errors"].as_array().unwrap().is_empty(), "{r3}");
    assert_eq!(r3["verified"], 1, "only Q is read on GitHub: {r3}");
    eventually("both redelivered", Duration::from_secs(20), || {
        let all = fake.deliveries();
        [&p.guid, &q.guid].iter().all(|g| {
            all.iter()
                .any(|x| &x.guid == *g && x.redelivery && x.status_code == 202)
        })
    })
    .await;
    let batches = drain(&aws, &w1, 3).await;
    assert!(batches.iter().all(|b| b.failures.is_empty()), "{batches:?}");
    let runs = fake.check_runs(REPO);
    assert!(completed_for(&runs, &p.guid), "{runs:?}");
    assert!(completed_for(&runs, &q.guid), "{runs:?}");
    assert_eq!(runs.len(), 2);

    // 6. Nothing is left: a further sweep on a cold worker asks for nothing, and knows
    //    from the table that both were scanned, without reading their check runs.
    let w3 = Lambda::worker(&moto, &aws, &fake).await;
    let reads = |fake: &FakeGitHub| {
        fake.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.contains("/check-runs"))
            .count()
    };
    let reads_before = reads(&fake);
    let r4 = w3.api.invoke(scheduled_event()).await.unwrap();
    assert!(guids(&r4["redelivered"]).is_empty(), "{r4}");
    assert_eq!(r4["known_scanned"], 2, "{r4}");
    assert_eq!(r4["verified"], 0, "{r4}");
    assert_eq!(
        reads(&fake),
        reads_before,
        "check runs read for scanned deliveries"
    );
    assert_eq!(fake.redelivery_requests(&p.guid), 2);
    assert_eq!(fake.redelivery_requests(&q.guid), 1);

    // A manual invocation takes the same path; anything else fails and says why.
    let manual = w3
        .api
        .invoke(json!({ "opsbot": "redeliver" }))
        .await
        .unwrap();
    assert!(guids(&manual["redelivered"]).is_empty(), "{manual}");
    let err = w3.api.invoke(json!({ "hello": 1 })).await.unwrap_err();
    assert!(
        err.error_message
            .contains("not an event this worker handles"),
        "{err:?}"
    );
    for w in [&w1, &w2, &w3] {
        w.assert_no_secret_logged();
    }
}

// ---- the Terraform module grants what the code calls ----------------------------------------

/// `snake_case` SDK call → `PascalCase` IAM action.
fn iam_action(call: &str) -> String {
    call.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The SDK calls `source` makes on `client` (`self.client\n .put_item()` → `put_item`).
fn sdk_calls(source: &str) -> HashSet<String> {
    let re = regex::Regex::new(r"\.client\s*\.([a-z_]+)\(\)").unwrap();
    re.captures_iter(source).map(|c| c[1].to_string()).collect()
}

/// The actions of the policy statement `sid` in `tf` (the module's main.tf).
fn statement_actions(tf: &str, sid: &str) -> String {
    let start = tf
        .find(&format!("\"{sid}\""))
        .unwrap_or_else(|| panic!("no statement {sid}"));
    let rest = &tf[start..];
    rest[..rest.find("resources").unwrap()].to_string()
}

#[test]
fn the_terraform_module_grants_the_worker_every_dynamodb_call_and_schedules_the_sweep() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let tf = std::fs::read_to_string(root.join("deploy/terraform/main.tf")).unwrap();
    let ledger = std::fs::read_to_string(root.join("src/dynamodb.rs")).unwrap();
    let calls = sdk_calls(&ledger);
    assert!(calls.len() >= 5, "{calls:?}");
    let granted = statement_actions(&tf, "DeliveryLedger");
    for call in &calls {
        let action = format!("dynamodb:{}", iam_action(call));
        assert!(
            granted.contains(&format!("\"{action}\"")),
            "the worker calls {call} but its policy lacks {action}"
        );
    }
    let queue = std::fs::read_to_string(root.join("src/queue.rs")).unwrap();
    let ingest = statement_actions(&tf, "QueueJobs");
    for call in sdk_calls(&queue) {
        let action = format!("sqs:{}", iam_action(&call));
        assert!(ingest.contains(&action), "ingest lacks {action}");
    }
    // The sweep: a schedule on the worker, allowed to invoke it, and its settings.
    for needle in [
        "resource \"aws_cloudwatch_event_rule\" \"redeliver\"",
        "schedule_expression = var.redeliver_schedule",
        "arn       = aws_lambda_function.worker.arn",
        "principal     = \"events.amazonaws.com\"",
        "OPSBOT_APP_REDELIVER_WINDOW_SECS",
        "OPSBOT_APP_REDELIVER_GRACE_SECS",
    ] {
        assert!(tf.contains(needle), "main.tf lacks {needle}");
    }
}
