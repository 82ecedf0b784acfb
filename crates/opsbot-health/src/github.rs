//! The GitHub adapter: [`IssueTracker`] over opsbot-core's one GitHub client (auth, retries,
//! pagination). Listing uses `GET /repos/{o}/{r}/issues?labels=health:<key>&state=all`, which
//! is strongly consistent; the search API is never used to find an event's issue.
//!
//! Creates and comments are sent with a single attempt (the core client's policy, with
//! `max_attempts = 1`): the caller ([`crate::apply`]) looks for the write before sending it
//! again after an unclear answer. Reads and PATCHes (idempotent) use the full retry policy.
//! Errors keep GitHub's own words (`422: Validation Failed: body is too long (maximum is
//! 65536 characters)`).

use std::time::Duration;

use opsbot_core::github::models::{IssuePatch, IssueQuery, NewIssue};
use opsbot_core::github::{GitHub, GitHubError, RepoRef, RetryPolicy};

use crate::apply::{CloseReason, IssueEdit, IssueTracker, TrackerError};
use crate::plan::{ExistingIssue, IssueOpenState};
use crate::render::IssueDraft;

/// Files issues through opsbot-core's GitHub client.
#[derive(Debug, Clone)]
pub struct GitHubTracker {
    github: GitHub,
    /// The same client with one attempt per call, for writes that are not idempotent.
    once: GitHub,
}

impl GitHubTracker {
    pub fn new(github: GitHub) -> GitHubTracker {
        let once = github.with_retry(RetryPolicy {
            max_attempts: 1,
            ..github.retry_policy().clone()
        });
        GitHubTracker { github, once }
    }

    /// Requests sent so far (every attempt counts).
    pub fn requests_sent(&self) -> u64 {
        self.github.requests_sent()
    }

    /// The underlying client (reconcile lists open issues and comments with it).
    pub fn github(&self) -> &GitHub {
        &self.github
    }
}

fn repo_ref(repo: &str) -> Result<RepoRef, TrackerError> {
    repo.parse::<RepoRef>()
        .map_err(|err| TrackerError::new(err.to_string()))
}

fn tracker_error(err: GitHubError) -> TrackerError {
    // No status (transport error, timeout) or a 5xx: GitHub may have carried it out.
    let unclear = match &err {
        GitHubError::Api { status, .. } => *status >= 500,
        GitHubError::Exhausted { last_status, .. } => last_status.is_none_or(|s| s >= 500),
        _ => false,
    };
    TrackerError {
        message: err.to_string(),
        unclear,
        source: Some(Box::new(err)),
    }
}

impl IssueTracker for GitHubTracker {
    async fn list_by_label(
        &self,
        repo: &str,
        label: &str,
    ) -> Result<Vec<ExistingIssue>, TrackerError> {
        let repo = repo_ref(repo)?;
        let query = IssueQuery {
            labels: vec![label.to_string()],
            state: Some("all".into()),
        };
        let issues = self
            .github
            .list_issues(&repo, &query)
            .await
            .map_err(tracker_error)?;
        Ok(issues
            .into_iter()
            .filter(|i| !i.is_pull_request())
            .map(|i| ExistingIssue {
                number: i.number,
                state: if i.is_open() {
                    IssueOpenState::Open
                } else {
                    IssueOpenState::Closed
                },
                title: i.title,
                body: i.body.unwrap_or_default(),
            })
            .collect())
    }

    async fn list_comments(&self, repo: &str, number: u64) -> Result<Vec<String>, TrackerError> {
        let repo = repo_ref(repo)?;
        let comments = self
            .github
            .list_comments(&repo, number)
            .await
            .map_err(tracker_error)?;
        Ok(comments
            .into_iter()
            .map(|c| c.body.unwrap_or_default())
            .collect())
    }

    fn write_attempts(&self) -> u32 {
        self.github.retry_policy().max_attempts.max(1)
    }

    fn write_pause(&self, attempt: u32) -> Duration {
        self.github.retry_policy().backoff(attempt, 0.5)
    }

    async fn create_issue(&self, repo: &str, draft: &IssueDraft) -> Result<u64, TrackerError> {
        let repo = repo_ref(repo)?;
        let issue = NewIssue {
            title: draft.title.clone(),
            body: draft.body.clone(),
            labels: draft.labels.clone(),
            assignees: draft.assignees.clone(),
        };
        let created = self
            .once
            .create_issue(&repo, &issue)
            .await
            .map_err(tracker_error)?;
        Ok(created.number)
    }

    async fn comment(&self, repo: &str, number: u64, body: &str) -> Result<(), TrackerError> {
        let repo = repo_ref(repo)?;
        self.once
            .create_comment(&repo, number, body)
            .await
            .map_err(tracker_error)?;
        Ok(())
    }

    async fn edit_issue(
        &self,
        repo: &str,
        number: u64,
        edit: &IssueEdit,
    ) -> Result<(), TrackerError> {
        let repo = repo_ref(repo)?;
        let patch = IssuePatch {
            body: edit.body.clone(),
            state: edit.state.map(|s| match s {
                IssueOpenState::Open => "open".to_string(),
                IssueOpenState::Closed => "closed".to_string(),
            }),
            state_reason: match (edit.state, edit.reason) {
                (Some(IssueOpenState::Closed), Some(CloseReason::Completed)) => {
                    Some("completed".into())
                }
                (Some(IssueOpenState::Closed), Some(CloseReason::NotPlanned)) => {
                    Some("not_planned".into())
                }
                (Some(IssueOpenState::Open), _) => Some("reopened".into()),
                _ => None,
            },
            ..IssuePatch::default()
        };
        self.github
            .update_issue(&repo, number, &patch)
            .await
            .map_err(tracker_error)?;
        Ok(())
    }
}
