//! One invocation: unwrap the payload, route and file every event, report failures. Shared by
//! the Lambda binary and `opsbot health handle`, so both behave the same.
//!
//! Every event of a batch is tried; the invocation fails when any input was unusable or any
//! event could not be filed, so AWS retries it (already-filed events are no-ops on retry) and
//! the DLQ / on-failure destination keeps what never succeeds. With an alert topic configured,
//! an SNS message names each event that could not be filed.

use std::future::Future;

use serde::Serialize;
use serde_json::Value;
use tracing::{Instrument, error, info, info_span, warn};

use crate::apply::{Filed, IssueTracker, file_event};
use crate::event::{HealthEvent, InputError, parse_input};
use crate::render::human_time;
use crate::route::{HealthConfig, RouteDecision};

/// An error from a notifier.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotifyError(pub String);

/// The port to a notification channel (SNS in production).
pub trait Notifier: Send + Sync {
    /// Publishes one message; `subject` is at most 100 ASCII characters.
    fn publish(
        &self,
        subject: &str,
        message: &str,
    ) -> impl Future<Output = Result<(), NotifyError>> + Send;

    /// The topic this notifier publishes to, so a topic that also feeds the Lambda does not
    /// make it read its own alerts.
    fn topic_arn(&self) -> Option<&str> {
        None
    }
}

impl<N: Notifier> Notifier for Option<N> {
    async fn publish(&self, subject: &str, message: &str) -> Result<(), NotifyError> {
        match self {
            Some(notifier) => notifier.publish(subject, message).await,
            None => Ok(()),
        }
    }

    fn topic_arn(&self) -> Option<&str> {
        self.as_ref().and_then(|n| n.topic_arn())
    }
}

/// A notifier that sends nothing (no `OPSBOT_SNS_TOPIC_ARN`).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoNotifier;

impl Notifier for NoNotifier {
    async fn publish(&self, _subject: &str, _message: &str) -> Result<(), NotifyError> {
        Ok(())
    }
}

/// What happened to one event.
#[derive(Debug, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum EventResult {
    Filed {
        arn: String,
        key: String,
        repo: String,
        number: Option<u64>,
        outcome: &'static str,
    },
    Ignored {
        arn: String,
        reason: String,
    },
    Failed {
        arn: String,
        error: String,
    },
}

/// What one invocation did; serialised as the Lambda response.
#[derive(Debug, Serialize, Default)]
pub struct InvocationReport {
    pub events: Vec<EventResult>,
    /// Inputs that were not usable Health events (`location: reason`).
    pub input_errors: Vec<String>,
}

impl InvocationReport {
    /// True when AWS should retry the invocation.
    pub fn failed(&self) -> bool {
        !self.input_errors.is_empty()
            || self
                .events
                .iter()
                .any(|e| matches!(e, EventResult::Failed { .. }))
    }

    /// One line naming every failure, for the Lambda error message.
    pub fn failure_summary(&self) -> String {
        let mut parts: Vec<String> = self.input_errors.clone();
        for event in &self.events {
            if let EventResult::Failed { arn, error } = event {
                parts.push(format!("{arn}: {error}"));
            }
        }
        let count = parts.len();
        format!(
            "{count} of the invocation's inputs failed: {}",
            parts.join("; ")
        )
    }
}

/// The filing service: configuration plus the two ports.
pub struct HealthService<T, N> {
    pub tracker: T,
    pub notifier: N,
    pub config: HealthConfig,
    /// `GITHUB_REPOSITORY`.
    pub default_repo: Option<String>,
}

impl<T: IssueTracker, N: Notifier> HealthService<T, N> {
    /// Handles one invocation payload.
    pub async fn handle(&self, payload: &Value) -> InvocationReport {
        let mut report = InvocationReport::default();
        let Some(payload) = self.without_own_alerts(payload) else {
            return report;
        };
        let parsed = parse_input(&payload);
        for err in &parsed.errors {
            error!(
                location = err.location.as_str(),
                reason = err.reason.as_str(),
                "unusable input"
            );
            report.input_errors.push(err.to_string());
        }
        if !parsed.errors.is_empty() {
            self.alert_input(&parsed.errors).await;
        }
        for event in &parsed.events {
            let span = info_span!(
                "health_event",
                arn = event.arn.as_str(),
                key = &crate::event::issue_key(event, self.config.organization_issues)[..12],
                version = human_time(event.last_updated).as_str(),
                status = event.status.as_str(),
            );
            let result = self.handle_event(event).instrument(span).await;
            report.events.push(result);
        }
        report
    }

    /// Routes and files one event (also used by `reconcile`, which has events, not payloads).
    pub async fn handle_event(&self, event: &HealthEvent) -> EventResult {
        let target = match self.config.route(event, self.default_repo.as_deref()) {
            RouteDecision::File(target) => target,
            RouteDecision::Ignore { reason } => {
                info!(reason = reason.as_str(), "ignored by configuration");
                return EventResult::Ignored {
                    arn: event.arn.clone(),
                    reason,
                };
            }
            RouteDecision::NoTarget => {
                let error = "no target repository: set GITHUB_REPOSITORY, health.repo or a \
                             matching health.routes entry"
                    .to_string();
                error!(error = error.as_str(), "cannot route event");
                self.alert_event(event, &error).await;
                return EventResult::Failed {
                    arn: event.arn.clone(),
                    error,
                };
            }
        };
        match file_event(&self.tracker, &target, event).await {
            Ok(filed) => {
                info!(
                    repo = filed.repo.as_str(),
                    issue = filed.number,
                    outcome = filed.outcome,
                    "filed"
                );
                if filed.outcome == "created" && self.config.notify_new_issues {
                    self.notify_new(event, &filed).await;
                }
                EventResult::Filed {
                    arn: event.arn.clone(),
                    key: filed.plan.key.clone(),
                    repo: filed.repo,
                    number: filed.number,
                    outcome: filed.outcome,
                }
            }
            Err(err) => {
                let error = err.to_string();
                error!(error = error.as_str(), "could not file event");
                self.alert_event(event, &error).await;
                EventResult::Failed {
                    arn: event.arn.clone(),
                    error,
                }
            }
        }
    }

    /// Drops SNS records that came from our own alert topic (a topic wired both ways would
    /// otherwise loop); `None` when nothing else is left.
    fn without_own_alerts(&self, payload: &Value) -> Option<Value> {
        let Some(topic) = self.notifier.topic_arn() else {
            return Some(payload.clone());
        };
        let mut payload = payload.clone();
        if let Some(records) = payload.get_mut("Records").and_then(Value::as_array_mut) {
            let before = records.len();
            records.retain(|r| {
                r.get("Sns")
                    .and_then(|s| s.get("TopicArn"))
                    .and_then(Value::as_str)
                    != Some(topic)
            });
            if records.len() != before {
                warn!(
                    dropped = before - records.len(),
                    "ignored records from the alert topic itself"
                );
                if records.is_empty() {
                    return None;
                }
            }
        }
        Some(payload)
    }

    async fn alert_event(&self, event: &HealthEvent, error: &str) {
        let subject = truncate_subject(&format!(
            "opsbot: could not file AWS Health event {} {}",
            event.service, event.event_type_code
        ));
        let message = format!(
            "opsbot could not file this AWS Health event as a GitHub issue. The invocation \
             failed, so AWS retries it; the DLQ keeps it if retries run out. Run \
             `opsbot health reconcile` once GitHub is reachable.\n\n\
             Event ARN: {}\nAccount: {}\nService: {}\nEvent type: {}\nRegion: {}\n\
             Status: {}\nLast updated: {}\n\nError: {error}\n",
            event.arn,
            event.shown_account().unwrap_or("unknown"),
            event.service,
            event.event_type_code,
            event.shown_region(),
            event.status,
            human_time(event.last_updated),
        );
        if let Err(err) = self.notifier.publish(&subject, &message).await {
            error!(error = %err, "could not publish the SNS alert");
        }
    }

    async fn alert_input(&self, errors: &[InputError]) {
        let message = format!(
            "opsbot received input it cannot use as AWS Health events; the invocation failed.\n\n{}\n",
            errors
                .iter()
                .map(|e| format!("- {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        if let Err(err) = self
            .notifier
            .publish("opsbot: unusable AWS Health input", &message)
            .await
        {
            error!(error = %err, "could not publish the SNS alert");
        }
    }

    async fn notify_new(&self, event: &HealthEvent, filed: &Filed) {
        let subject = truncate_subject(&format!(
            "New AWS Health issue: {} {}",
            event.service, event.event_type_code
        ));
        let message = format!(
            "opsbot opened {}#{} for AWS Health event {} ({}, {}).\n",
            filed.repo,
            filed.number.unwrap_or_default(),
            event.arn,
            event.shown_region(),
            event.status
        );
        if let Err(err) = self.notifier.publish(&subject, &message).await {
            warn!(error = %err, "could not publish the new-issue notice");
        }
    }
}

/// SNS subjects: ASCII, no line breaks, at most 100 characters.
fn truncate_subject(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii() && !c.is_ascii_control())
        .take(100)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;

    use super::*;
    use crate::apply::{IssueEdit, MemoryTracker, TrackerError};
    use crate::plan::ExistingIssue;
    use crate::render::IssueDraft;

    #[derive(Default)]
    struct Recorder {
        topic: Option<String>,
        sent: Mutex<Vec<(String, String)>>,
    }

    impl Notifier for Recorder {
        async fn publish(&self, subject: &str, message: &str) -> Result<(), NotifyError> {
            self.sent
                .lock()
                .unwrap()
                .push((subject.to_string(), message.to_string()));
            Ok(())
        }
        fn topic_arn(&self) -> Option<&str> {
            self.topic.as_deref()
        }
    }

    struct Down;

    impl IssueTracker for Down {
        async fn list_by_label(
            &self,
            _: &str,
            _: &str,
        ) -> Result<Vec<ExistingIssue>, TrackerError> {
            Err(TrackerError::new("HTTP 502 Bad Gateway after 3 attempts"))
        }
        async fn list_comments(&self, _: &str, _: u64) -> Result<Vec<String>, TrackerError> {
            Err(TrackerError::new("down"))
        }
        async fn create_issue(&self, _: &str, _: &IssueDraft) -> Result<u64, TrackerError> {
            Err(TrackerError::new("down"))
        }
        async fn comment(&self, _: &str, _: u64, _: &str) -> Result<(), TrackerError> {
            Err(TrackerError::new("down"))
        }
        async fn edit_issue(&self, _: &str, _: u64, _: &IssueEdit) -> Result<(), TrackerError> {
            Err(TrackerError::new("down"))
        }
    }

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/../../tests/fixtures/health/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    fn service<T: IssueTracker>(tracker: T, config: HealthConfig) -> HealthService<T, Recorder> {
        HealthService {
            tracker,
            notifier: Recorder {
                topic: Some("arn:aws:sns:us-east-1:123456789012:alerts".into()),
                ..Recorder::default()
            },
            config,
            default_repo: Some("acme/ops".into()),
        }
    }

    #[tokio::test]
    async fn batch_files_good_events_and_fails_on_bad_ones() {
        let config = HealthConfig {
            notify_new_issues: true,
            ..HealthConfig::default()
        };
        let svc = service(MemoryTracker::default(), config);
        let payload = serde_json::json!([
            fixture("rds_maintenance"),
            fixture("malformed_missing_arn"),
            fixture("sns_wrapped_rds_maintenance"),
        ]);
        let report = svc.handle(&payload).await;
        assert!(report.failed());
        assert_eq!(report.input_errors.len(), 1);
        assert!(report.input_errors[0].starts_with("$[1].detail: missing field `eventArn`"));
        assert!(
            report
                .failure_summary()
                .starts_with("1 of the invocation's inputs failed")
        );
        let outcomes: Vec<_> = report
            .events
            .iter()
            .map(|e| match e {
                EventResult::Filed { outcome, .. } => *outcome,
                _ => "other",
            })
            .collect();
        assert_eq!(outcomes, ["created", "unchanged"]);
        let sent = svc.notifier.sent.lock().unwrap();
        assert_eq!(sent.len(), 2, "one input alert, one new-issue notice");
        assert_eq!(sent[0].0, "opsbot: unusable AWS Health input");
        assert!(sent[1].1.contains("acme/ops#1"));
    }

    #[tokio::test]
    async fn tracker_failure_fails_the_invocation_and_alerts() {
        let svc = service(Down, HealthConfig::default());
        let report = svc.handle(&fixture("ec2_operational_issue")).await;
        assert!(report.failed());
        let sent = svc.notifier.sent.lock().unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            sent[0].0,
            "opsbot: could not file AWS Health event EC2 AWS_EC2_OPERATIONAL_ISSUE"
        );
        assert!(sent[0].1.contains("HTTP 502 Bad Gateway after 3 attempts"));
        assert!(sent[0].1.contains("AWS_EC2_OPERATIONAL_ISSUE_7f35c8ae"));
    }

    #[tokio::test]
    async fn ignored_events_succeed_and_own_alerts_are_dropped() {
        let config = HealthConfig::from_toml(
            "[[health.ignore]]\ncategories = [\"issue\"]\n",
            "opsbot.toml",
        )
        .unwrap();
        let svc = service(MemoryTracker::default(), config);
        let report = svc.handle(&fixture("ec2_operational_issue")).await;
        assert!(!report.failed());
        assert!(matches!(report.events[0], EventResult::Ignored { .. }));

        let own = serde_json::json!({"Records": [{"Sns": {
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:alerts",
            "Message": "opsbot could not file…"
        }}]});
        let report = svc.handle(&own).await;
        assert!(!report.failed());
        assert!(report.events.is_empty());
        assert_eq!(svc.tracker.requests(), 0);
    }
}
