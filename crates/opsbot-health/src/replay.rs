//! Replaying the dead-letter queue: `opsbot health replay --queue-url URL` receives the
//! messages of an SQS queue (aws-sdk-sqs) and hands each body to the same handler as the
//! Lambda ([`HealthService::handle`]). A message is deleted only once everything in it was
//! filed (or deliberately ignored); a message that fails stays in the queue and becomes
//! visible again after the visibility timeout, so nothing is lost by a replay.
//!
//! Bodies can be what each delivery path leaves in a queue: an EventBridge event (an
//! EventBridge target DLQ), a Lambda destination invocation record (`requestPayload`), or
//! an SNS notification (SNS → SQS without raw delivery); the parser unwraps them all.

use std::collections::HashSet;

use aws_config::BehaviorVersion;
use serde::Serialize;
use serde_json::Value;
use tracing::{info, warn};

use crate::apply::IssueTracker;
use crate::service::{HealthService, InvocationReport, Notifier};

/// What happened to one message.
#[derive(Debug, Clone, Serialize)]
pub struct MessageOutcome {
    pub message_id: String,
    /// Filed (or ignored by configuration) and deleted from the queue.
    pub deleted: bool,
    /// One line: the outcomes, or why the message stays.
    pub summary: String,
}

/// What a replay did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayReport {
    pub received: usize,
    pub deleted: usize,
    pub kept: usize,
    pub messages: Vec<MessageOutcome>,
}

/// An SQS call that failed.
#[derive(Debug, thiserror::Error)]
#[error("SQS {operation} on {queue_url}: {message}")]
pub struct ReplayError {
    pub operation: &'static str,
    pub queue_url: String,
    pub message: String,
}

/// Options of one replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Stop after this many messages (all when `None`).
    pub max_messages: Option<usize>,
    /// Seconds a received message stays invisible to others while it is filed; a message
    /// that fails reappears after it.
    pub visibility_timeout_secs: i32,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            max_messages: None,
            visibility_timeout_secs: 300,
        }
    }
}

/// An SQS client from the standard configuration chain; the region defaults to the one in
/// the queue URL (`https://sqs.REGION.amazonaws.com/…`) when none is configured.
pub async fn sqs_client(queue_url: &str) -> aws_sdk_sqs::Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if std::env::var_os("AWS_REGION").is_none()
        && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        && let Some(region) = queue_region(queue_url)
    {
        loader = loader.region(aws_config::Region::new(region.to_string()));
    }
    aws_sdk_sqs::Client::new(&loader.load().await)
}

/// `https://sqs.eu-west-1.amazonaws.com/123/q` → `eu-west-1`.
pub fn queue_region(url: &str) -> Option<&str> {
    let host = url.split("://").nth(1)?.split('/').next()?;
    let mut parts = host.split('.');
    match (parts.next(), parts.next()) {
        (Some("sqs"), Some(region)) if region.contains('-') => Some(region),
        _ => None,
    }
}

fn describe(report: &InvocationReport) -> String {
    let value = serde_json::to_value(report).unwrap_or_default();
    let mut parts: Vec<String> = Vec::new();
    for e in value["events"].as_array().into_iter().flatten() {
        let arn = e["arn"].as_str().unwrap_or("?");
        match e["result"].as_str() {
            Some("filed") => parts.push(format!(
                "{} {}#{} {arn}",
                e["outcome"].as_str().unwrap_or("?"),
                e["repo"].as_str().unwrap_or("?"),
                e["number"].as_u64().map_or("?".into(), |n| n.to_string())
            )),
            Some("ignored") => parts.push(format!("ignored {arn}")),
            _ => parts.push(format!(
                "FAILED {arn}: {}",
                e["error"].as_str().unwrap_or("?")
            )),
        }
    }
    parts.extend(report.input_errors.iter().map(|e| format!("UNUSABLE {e}")));
    if parts.is_empty() {
        "nothing in it".into()
    } else {
        parts.join("; ")
    }
}

/// Drains `queue_url` through `service`; `progress` sees every message as it is done.
pub async fn replay<T: IssueTracker, N: Notifier>(
    service: &HealthService<T, N>,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    options: &ReplayOptions,
    mut progress: impl FnMut(&MessageOutcome),
) -> Result<ReplayReport, ReplayError> {
    let fail = |operation: &'static str| {
        move |err: String| ReplayError {
            operation,
            queue_url: queue_url.to_string(),
            message: err,
        }
    };
    let mut report = ReplayReport::default();
    let mut seen = HashSet::new();
    loop {
        let left = options
            .max_messages
            .map_or(10, |max| max.saturating_sub(report.received).min(10));
        if left == 0 {
            break;
        }
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(left as i32)
            .visibility_timeout(options.visibility_timeout_secs)
            .wait_time_seconds(1)
            .send()
            .await
            .map_err(|e| opsbot_core::aws_error::message(&e))
            .map_err(fail("ReceiveMessage"))?;
        let messages = out.messages();
        if messages.is_empty() {
            break;
        }
        let mut fresh = 0;
        for message in messages {
            let id = message.message_id().unwrap_or("?").to_string();
            if !seen.insert(id.clone()) {
                // Seen in this run already (it failed and reappeared): leave it for later.
                continue;
            }
            fresh += 1;
            report.received += 1;
            let body = message.body().unwrap_or("");
            let outcome = match serde_json::from_str::<Value>(body) {
                Err(err) => MessageOutcome {
                    message_id: id.clone(),
                    deleted: false,
                    summary: format!("UNUSABLE body: not valid JSON: {err}"),
                },
                Ok(payload) => {
                    let result = service.handle(&payload).await;
                    let summary = describe(&result);
                    if result.failed() {
                        MessageOutcome {
                            message_id: id.clone(),
                            deleted: false,
                            summary,
                        }
                    } else {
                        if let Some(handle) = message.receipt_handle() {
                            sqs.delete_message()
                                .queue_url(queue_url)
                                .receipt_handle(handle)
                                .send()
                                .await
                                .map_err(|e| opsbot_core::aws_error::message(&e))
                                .map_err(fail("DeleteMessage"))?;
                        }
                        MessageOutcome {
                            message_id: id.clone(),
                            deleted: true,
                            summary,
                        }
                    }
                }
            };
            if outcome.deleted {
                report.deleted += 1;
                info!(message_id = id.as_str(), "replayed and deleted");
            } else {
                report.kept += 1;
                warn!(
                    message_id = id.as_str(),
                    summary = outcome.summary.as_str(),
                    "kept in the queue"
                );
            }
            progress(&outcome);
            report.messages.push(outcome);
        }
        if fresh == 0 {
            break;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_from_queue_url() {
        assert_eq!(
            queue_region("https://sqs.eu-west-1.amazonaws.com/123456789012/dlq"),
            Some("eu-west-1")
        );
        assert_eq!(queue_region("http://127.0.0.1:5000/123456789012/dlq"), None);
    }
}
