//! The GitHub adapter: [`IssueTracker`] over opsbot-core's one GitHub client (auth, retries,
//! pagination). Listing uses `GET /repos/{o}/{r}/issues?labels=health:<key>&state=all`, which
//! is strongly consistent; the search API is never used to find an event's issue.

use opsbot_core::github::models::{IssuePatch, IssueQuery, NewIssue};
use opsbot_core::github::{GitHub, GitHubError, RepoRef};

use crate::apply::{CloseReason, IssueEdit, IssueTracker, TrackerError};
use crate::plan::{ExistingIssue, IssueOpenState};
use crate::render::IssueDraft;

/// Files issues through opsbot-core's GitHub client.
#[derive(Debug, Clone)]
pub struct GitHubTracker {
    github: GitHub,
}

impl GitHubTracker {
    pub fn new(github: GitHub) -> GitHubTracker {
        GitHubTracker { github }
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
    TrackerError {
        message: err.to_string(),
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

    async fn create_issue(&self, repo: &str, draft: &IssueDraft) -> Result<u64, TrackerError> {
        let repo = repo_ref(repo)?;
        let issue = NewIssue {
            title: draft.title.clone(),
            body: draft.body.clone(),
            labels: draft.labels.clone(),
            assignees: draft.assignees.clone(),
        };
        let created = self
            .github
            .create_issue(&repo, &issue)
            .await
            .map_err(tracker_error)?;
        Ok(created.number)
    }

    async fn comment(&self, repo: &str, number: u64, body: &str) -> Result<(), TrackerError> {
        let repo = repo_ref(repo)?;
        self.github
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
