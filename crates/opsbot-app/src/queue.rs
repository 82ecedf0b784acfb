//! Scan jobs between the Lambda ingest function and the worker: [`JobMessage`] is the SQS
//! message body (JSON, a few hundred bytes: the job, never the payload), [`JobQueue`] the
//! port the ingest writes to, [`SqsQueue`] its adapter.

use std::future::Future;
use std::pin::Pin;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::MessageAttributeValue;
use opsbot_core::github::RepoRef;
use serde::{Deserialize, Serialize};

use crate::webhook::{ScanJob, ScanTarget};

/// The format of [`JobMessage`]; a worker refuses (and leaves to the DLQ) other versions.
pub const MESSAGE_VERSION: u32 = 1;

/// One scan job as queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMessage {
    pub version: u32,
    /// `X-GitHub-Event`.
    pub event: String,
    /// `X-GitHub-Delivery`: the de-duplication key.
    pub delivery: String,
    pub trigger: String,
    /// `owner/name`.
    pub repo: String,
    pub installation_id: u64,
    pub head_sha: String,
    pub target: TargetMessage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_branch: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TargetMessage {
    Push {
        #[serde(default)]
        base: Option<String>,
        head: String,
        #[serde(default)]
        listed: Vec<String>,
    },
    PullRequest {
        number: u64,
    },
}

/// A message that is not a job this worker can run.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("not a job message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("job message version {0}, this worker reads version {MESSAGE_VERSION}")]
    Version(u32),
    #[error("job message repository `{0}` is not owner/name")]
    Repo(String),
}

impl JobMessage {
    pub fn from_job(event: &str, job: &ScanJob) -> Self {
        JobMessage {
            version: MESSAGE_VERSION,
            event: event.to_owned(),
            delivery: job.delivery.clone(),
            trigger: job.trigger.clone(),
            repo: job.repo.to_string(),
            installation_id: job.installation_id,
            head_sha: job.head_sha.clone(),
            target: match &job.target {
                ScanTarget::Push { base, head, listed } => TargetMessage::Push {
                    base: base.clone(),
                    head: head.clone(),
                    listed: listed.clone(),
                },
                ScanTarget::PullRequest { number } => {
                    TargetMessage::PullRequest { number: *number }
                }
            },
            pushed_branch: job.pushed_branch.clone(),
        }
    }

    pub fn to_json(&self) -> String {
        // A struct of strings and numbers always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn parse(body: &str) -> Result<Self, MessageError> {
        let msg: JobMessage = serde_json::from_str(body)?;
        if msg.version != MESSAGE_VERSION {
            return Err(MessageError::Version(msg.version));
        }
        Ok(msg)
    }

    pub fn job(&self) -> Result<ScanJob, MessageError> {
        let (owner, name) = self
            .repo
            .split_once('/')
            .filter(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'))
            .ok_or_else(|| MessageError::Repo(self.repo.clone()))?;
        Ok(ScanJob {
            delivery: self.delivery.clone(),
            trigger: self.trigger.clone(),
            repo: RepoRef::new(owner, name),
            installation_id: self.installation_id,
            head_sha: self.head_sha.clone(),
            target: match &self.target {
                TargetMessage::Push { base, head, listed } => ScanTarget::Push {
                    base: base.clone(),
                    head: head.clone(),
                    listed: listed.clone(),
                },
                TargetMessage::PullRequest { number } => {
                    ScanTarget::PullRequest { number: *number }
                }
            },
            pushed_branch: self.pushed_branch.clone(),
        })
    }
}

/// The queue could not take the job.
#[derive(Debug, thiserror::Error)]
#[error("queue {queue}: SendMessage for delivery {delivery}: {message}")]
pub struct QueueError {
    pub queue: String,
    pub delivery: String,
    pub message: String,
}

pub type QueueFuture<'a> = Pin<Box<dyn Future<Output = Result<String, QueueError>> + Send + 'a>>;

/// Where the ingest puts accepted jobs. `send` answers the queue's message id.
pub trait JobQueue: Send + Sync + std::fmt::Debug {
    fn send<'a>(&'a self, message: &'a JobMessage) -> QueueFuture<'a>;
}

/// An SQS queue (standard; the worker de-duplicates by delivery id).
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        SqsQueue {
            client,
            url: url.into(),
        }
    }

    async fn send_inner(&self, message: &JobMessage) -> Result<String, QueueError> {
        let attr = |v: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
        };
        let fail = |text: String| QueueError {
            queue: self.url.clone(),
            delivery: message.delivery.clone(),
            message: text,
        };
        let delivery = attr(&message.delivery).map_err(|e| fail(e.to_string()))?;
        let event = attr(&message.event).map_err(|e| fail(e.to_string()))?;
        let out = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(message.to_json())
            // For whoever reads the DLQ: which delivery, which event, without parsing.
            .message_attributes("delivery", delivery)
            .message_attributes("event", event)
            .send()
            .await
            .map_err(|e| fail(opsbot_core::aws_error::message(&e)))?;
        Ok(out.message_id().unwrap_or_default().to_owned())
    }
}

impl JobQueue for SqsQueue {
    fn send<'a>(&'a self, message: &'a JobMessage) -> QueueFuture<'a> {
        Box::pin(self.send_inner(message))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_job_survives_the_queue() {
        let job = ScanJob {
            delivery: "d-1".into(),
            trigger: "push to refs/heads/main".into(),
            repo: RepoRef::new("acme", "infra"),
            installation_id: 77,
            head_sha: "abc".into(),
            target: ScanTarget::Push {
                base: None,
                head: "abc".into(),
                listed: vec!["a".into(), "abc".into()],
            },
            pushed_branch: Some("main".into()),
        };
        let msg = JobMessage::from_job("push", &job);
        let back = JobMessage::parse(&msg.to_json()).unwrap();
        assert_eq!(back.job().unwrap(), job);
        assert_eq!(back.event, "push");
        let pr = JobMessage {
            target: TargetMessage::PullRequest { number: 5 },
            ..msg.clone()
        };
        assert!(pr.to_json().contains(r#""kind":"pull_request""#));
        assert!(matches!(
            JobMessage::parse(&msg.to_json().replace(r#""version":1"#, r#""version":9"#)),
            Err(MessageError::Version(9))
        ));
        assert!(JobMessage::parse("{}").is_err());
        let bad = JobMessage {
            repo: "no-slash".into(),
            ..msg
        };
        assert!(matches!(bad.job(), Err(MessageError::Repo(_))));
    }
}
