//! Carrying a plan out against an issue tracker (GitHub in production, through the
//! [`IssueTracker`] port), including the create-then-converge step that makes two concurrent
//! deliveries of one event end with one open issue.
//!
//! Requests per event, with the GitHub adapter:
//! - new event: list by label, create, list by label again (converge) = 3;
//! - redelivery: list by label = 1;
//! - later version: list, list comments (is this version's comment there already?),
//!   comment, edit (body and state in one PATCH) = 4.
//!
//! Writes that are not idempotent (create, comment) are sent once by the adapter; when the
//! answer is unclear (5xx, timeout: GitHub may have applied it), this module looks before
//! sending again — the issue by its key label, the comment by its hidden marker — so a
//! write GitHub applied and answered 502 for is not made twice. Converging stays the second
//! line of defence.

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use tracing::{info, warn};

use crate::diff::{comment_version, union_states};
use crate::event::HealthEvent;
use crate::plan::{
    ExistingIssue, IssueAction, IssueOpenState, IssuePlan, converge, issues_for_key, plan,
    united_state,
};
use crate::render::{IssueDraft, key_label, page_log_state, render_body};
use crate::route::Target;

/// Rounds of rebuilding the body from the page log before giving up (each round is a
/// concurrent writer's change seen).
const SETTLE_ROUNDS: usize = 8;

/// Why an issue is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    Completed,
    NotPlanned,
}

/// One edit of an issue (a single `PATCH`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssueEdit {
    pub body: Option<String>,
    pub state: Option<IssueOpenState>,
    pub reason: Option<CloseReason>,
}

/// An error from the tracker, after its own retries.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TrackerError {
    pub message: String,
    /// The write may have been applied (a 5xx or a timeout): look before sending it again.
    pub unclear: bool,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl TrackerError {
    pub fn new(message: impl Into<String>) -> TrackerError {
        TrackerError {
            message: message.into(),
            unclear: false,
            source: None,
        }
    }

    /// An error after which the write may or may not have happened.
    pub fn unclear(message: impl Into<String>) -> TrackerError {
        TrackerError {
            unclear: true,
            ..TrackerError::new(message)
        }
    }
}

/// The port to an issue tracker. Listing by label must be strongly consistent (GitHub's
/// issue list is; its search index is not).
pub trait IssueTracker: Send + Sync {
    /// Every issue (open and closed, no pull requests) carrying `label` in `repo`.
    fn list_by_label(
        &self,
        repo: &str,
        label: &str,
    ) -> impl Future<Output = Result<Vec<ExistingIssue>, TrackerError>> + Send;
    /// Bodies of the comments on issue `number`, oldest first.
    fn list_comments(
        &self,
        repo: &str,
        number: u64,
    ) -> impl Future<Output = Result<Vec<String>, TrackerError>> + Send;
    /// How often a write that is not idempotent is tried (looking in between).
    fn write_attempts(&self) -> u32 {
        3
    }
    /// The pause before try `attempt` + 1 of such a write.
    fn write_pause(&self, attempt: u32) -> Duration {
        Duration::from_millis(100 * u64::from(attempt))
    }
    /// Opens an issue (one attempt: the caller looks before trying again); returns its
    /// number. Unknown labels are created by the tracker.
    fn create_issue(
        &self,
        repo: &str,
        draft: &IssueDraft,
    ) -> impl Future<Output = Result<u64, TrackerError>> + Send;
    fn comment(
        &self,
        repo: &str,
        number: u64,
        body: &str,
    ) -> impl Future<Output = Result<(), TrackerError>> + Send;
    fn edit_issue(
        &self,
        repo: &str,
        number: u64,
        edit: &IssueEdit,
    ) -> impl Future<Output = Result<(), TrackerError>> + Send;
}

/// A step that failed, and why.
#[derive(Debug, thiserror::Error)]
#[error("{repo}: cannot {step}: {source}")]
pub struct FileError {
    pub repo: String,
    pub step: String,
    #[source]
    pub source: TrackerError,
}

/// What filing one event did.
#[derive(Debug, Clone, Serialize)]
pub struct Filed {
    pub repo: String,
    /// The event's issue after the run (the primary one).
    pub number: Option<u64>,
    /// `created`, `updated`, `closed`, `reopened`, `unchanged`, `deduplicated`.
    pub outcome: &'static str,
    /// Duplicates closed while converging.
    pub duplicates_closed: Vec<u64>,
    pub plan: IssuePlan,
}

/// Files one event: list its issues by key label, plan, act, converge after a create, and
/// (paged events, per-event grouping) rebuild the body from every copy until it holds all.
pub async fn file_event<T: IssueTracker>(
    tracker: &T,
    target: &Target,
    event: &HealthEvent,
) -> Result<Filed, FileError> {
    let repo = target.repo.as_str();
    let key = target.key(event);
    let label = key_label(&key);
    let fail = |step: String| {
        let repo = repo.to_string();
        move |source| FileError { repo, step, source }
    };
    let existing = tracker
        .list_by_label(repo, &label)
        .await
        .map_err(fail(format!("list issues labelled {label}")))?;
    let the_plan = plan(event, target, &existing);
    let mut number = the_plan.primary;
    let mut duplicates_closed = Vec::new();
    let mut created = None;
    // Comments already on an issue, read once when a comment needs checking.
    let mut seen_comments: Option<(u64, Vec<String>)> = None;

    let mut pending: Option<(u64, IssueEdit)> = None;
    for action in &the_plan.actions {
        match action {
            IssueAction::Create { draft, then_close } => {
                let (n, found) = create_once(tracker, repo, &key, &label, draft)
                    .await
                    .map_err(fail("create an issue".into()))?;
                if found {
                    info!(
                        repo,
                        issue = n,
                        "a create answered unclearly had been applied"
                    );
                } else {
                    info!(repo, issue = n, "created issue");
                }
                if *then_close {
                    let edit = IssueEdit {
                        state: Some(IssueOpenState::Closed),
                        reason: Some(CloseReason::Completed),
                        ..IssueEdit::default()
                    };
                    tracker
                        .edit_issue(repo, n, &edit)
                        .await
                        .map_err(fail(format!("close #{n}")))?;
                }
                created = Some(n);
                number = Some(n);
            }
            IssueAction::Comment {
                number: n,
                body,
                version,
            } => {
                let already = match &seen_comments {
                    Some((m, list)) if m == n => list.clone(),
                    _ => {
                        let list = tracker
                            .list_comments(repo, *n)
                            .await
                            .map_err(fail(format!("list comments on #{n}")))?;
                        seen_comments = Some((*n, list.clone()));
                        list
                    }
                };
                let is_mine = |c: &str| match version {
                    Some(v) => comment_version(c).as_deref() == Some(v.as_str()),
                    None => c == body,
                };
                if already.iter().any(|c| is_mine(c)) {
                    info!(
                        repo,
                        issue = n,
                        "the comment of this version is there already"
                    );
                } else {
                    comment_once(tracker, repo, *n, body, &is_mine)
                        .await
                        .map_err(fail(format!("comment on #{n}")))?;
                }
            }
            IssueAction::LogDelivery { number: n, body } => {
                comment_once(tracker, repo, *n, body, &|c: &str| c == body)
                    .await
                    .map_err(fail(format!("log a page on #{n}")))?;
            }
            IssueAction::UpdateBody { number: n, body } => {
                pending_edit(&mut pending, *n).body = Some(body.clone());
            }
            IssueAction::Close { number: n } => {
                let edit = pending_edit(&mut pending, *n);
                edit.state = Some(IssueOpenState::Closed);
                edit.reason = Some(CloseReason::Completed);
            }
            IssueAction::Reopen { number: n } => {
                pending_edit(&mut pending, *n).state = Some(IssueOpenState::Open);
            }
            IssueAction::CloseDuplicate { number: n, primary } => {
                close_duplicate(tracker, repo, *n, *primary)
                    .await
                    .map_err(fail(format!("close duplicate #{n}")))?;
                duplicates_closed.push(*n);
            }
            IssueAction::Noop { reason } => {
                info!(repo, reason = reason.as_str(), "nothing to do");
            }
        }
    }
    if let Some((n, edit)) = pending.take() {
        tracker
            .edit_issue(repo, n, &edit)
            .await
            .map_err(fail(format!("edit #{n}")))?;
    }

    if let Some(mine) = created {
        // Create-then-converge: a concurrent copy of this delivery may have created its own
        // issue between our list and our create. Label listing is strongly consistent, so of
        // two racing copies at least the later one sees both issues and closes the
        // higher-numbered one; both agree on which issue survives.
        let listed = tracker
            .list_by_label(repo, &label)
            .await
            .map_err(fail(format!("list issues labelled {label}")))?;
        if !listed.iter().any(|i| i.number == mine) {
            warn!(repo, issue = mine, "created issue not yet listed by label");
        }
        // The survivor is the lowest-numbered issue of the key. The copy that created an
        // extra issue always explains and closes it (even if the other copy already closed
        // it); other extra issues still open are closed without a comment, as a backstop for
        // a copy that died after creating. A race therefore leaves exactly one comment.
        // (Our own issue counts even if the listing missed it, so it is never closed in
        // favour of a higher number.)
        let primary = issues_for_key(&key, &listed)
            .first()
            .map_or(mine, |i| i.number.min(mine));
        number = Some(primary);
        if primary != mine {
            close_duplicate(tracker, repo, mine, primary)
                .await
                .map_err(fail(format!("close duplicate #{mine}")))?;
            duplicates_closed.push(mine);
        }
        for action in converge(&key, &listed) {
            if let IssueAction::CloseDuplicate { number: n, .. } = action
                && n != mine
            {
                tracker
                    .edit_issue(repo, n, &duplicate_close())
                    .await
                    .map_err(fail(format!("close duplicate #{n}")))?;
                duplicates_closed.push(n);
            }
        }
    }

    if the_plan.settle {
        // Concurrent copies (pages, accounts) may each have written the body from what they
        // read: rebuild it from everything recorded (the copies' own issues and the page-log
        // comments, which nobody overwrites) until a re-read shows it holds all of it.
        if let Some(n) = settle(tracker, repo, &key, &label, event)
            .await
            .map_err(fail(format!("merge the pages of {}", event.arn)))?
        {
            number = Some(n);
        }
    }

    Ok(Filed {
        repo: repo.to_string(),
        number,
        outcome: the_plan.summary(),
        duplicates_closed,
        plan: the_plan,
    })
}

/// Creates an issue once; after an unclear failure it looks for the key's issue by label
/// before trying again. Returns the number and whether it was found rather than created.
async fn create_once<T: IssueTracker>(
    tracker: &T,
    repo: &str,
    key: &str,
    label: &str,
    draft: &IssueDraft,
) -> Result<(u64, bool), TrackerError> {
    let attempts = tracker.write_attempts().max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match tracker.create_issue(repo, draft).await {
            Ok(n) => return Ok((n, false)),
            Err(err) if err.unclear && attempt < attempts => {
                warn!(repo, attempt, error = %err, "create answered unclearly; looking before trying again");
                tokio::time::sleep(tracker.write_pause(attempt)).await;
                let listed = tracker.list_by_label(repo, label).await?;
                if let Some(found) = issues_for_key(key, &listed).first() {
                    return Ok((found.number, true));
                }
            }
            Err(err) => return Err(err),
        }
    }
}

/// Posts a comment once; after an unclear failure it looks for it (`is_mine`) before
/// trying again.
async fn comment_once<T: IssueTracker>(
    tracker: &T,
    repo: &str,
    number: u64,
    body: &str,
    is_mine: &(dyn Fn(&str) -> bool + Sync),
) -> Result<(), TrackerError> {
    let attempts = tracker.write_attempts().max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match tracker.comment(repo, number, body).await {
            Ok(()) => return Ok(()),
            Err(err) if err.unclear && attempt < attempts => {
                warn!(repo, issue = number, attempt, error = %err, "comment answered unclearly; looking before trying again");
                tokio::time::sleep(tracker.write_pause(attempt)).await;
                let list = tracker.list_comments(repo, number).await?;
                if list.iter().any(|c| is_mine(c)) {
                    return Ok(());
                }
            }
            Err(err) => return Err(err),
        }
    }
}

/// Rebuilds the primary issue's body from every copy of its version (other issues of the
/// key, page-log comments) until a fresh read shows it holds them all. Every write is a
/// union of what was read, and every writer checks after its own write, so the last write
/// holds everything any writer recorded.
async fn settle<T: IssueTracker>(
    tracker: &T,
    repo: &str,
    key: &str,
    label: &str,
    event: &HealthEvent,
) -> Result<Option<u64>, TrackerError> {
    for round in 0..SETTLE_ROUNDS {
        let listed = tracker.list_by_label(repo, label).await?;
        let mine = issues_for_key(key, &listed);
        let Some(primary) = mine.first() else {
            return Ok(None);
        };
        let Some(recorded) = primary.marker() else {
            return Ok(Some(primary.number));
        };
        if recorded.version() != Some(event.last_updated) {
            // A later version is there now; its own deliveries settle it.
            return Ok(Some(primary.number));
        }
        let mut united = united_state(key, &recorded, &mine[1..]);
        for body in tracker.list_comments(repo, primary.number).await? {
            if let Some(logged) = page_log_state(&body)
                && logged.key == key
                && logged.v == recorded.v
            {
                union_states(&mut united, &logged);
            }
        }
        if united == recorded {
            return Ok(Some(primary.number));
        }
        info!(
            repo,
            issue = primary.number,
            round,
            "uniting the pages of one event"
        );
        let edit = IssueEdit {
            body: Some(render_body(event, &united)),
            ..IssueEdit::default()
        };
        tracker.edit_issue(repo, primary.number, &edit).await?;
    }
    warn!(
        repo,
        "the body kept changing under concurrent writers; the next delivery completes it"
    );
    Ok(None)
}

fn pending_edit(pending: &mut Option<(u64, IssueEdit)>, number: u64) -> &mut IssueEdit {
    if pending.as_ref().is_none_or(|(n, _)| *n != number) {
        *pending = Some((number, IssueEdit::default()));
    }
    match pending {
        Some((_, edit)) => edit,
        None => unreachable!("set just above"),
    }
}

async fn close_duplicate<T: IssueTracker>(
    tracker: &T,
    repo: &str,
    number: u64,
    primary: u64,
) -> Result<(), TrackerError> {
    warn!(
        repo,
        issue = number,
        primary,
        "closing duplicate issue of one Health event"
    );
    tracker
        .comment(
            repo,
            number,
            &format!(
                "Duplicate of #{primary}: two deliveries of the same AWS Health event ran at \
                 once. opsbot keeps the lowest-numbered issue."
            ),
        )
        .await?;
    tracker.edit_issue(repo, number, &duplicate_close()).await
}

fn duplicate_close() -> IssueEdit {
    IssueEdit {
        state: Some(IssueOpenState::Closed),
        reason: Some(CloseReason::NotPlanned),
        ..IssueEdit::default()
    }
}

/// An in-memory tracker: the dry run, and the unit tests of this module.
#[derive(Debug, Default)]
pub struct MemoryTracker {
    state: std::sync::Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    next: u64,
    issues: Vec<(String, Vec<String>, ExistingIssue)>,
    comments: Vec<(u64, String)>,
    requests: usize,
    /// Creates and comments still to be applied and then answered with an unclear error.
    applied_then_fail: u32,
}

impl MemoryTracker {
    /// The next `n` creates or comments are applied and then answered with an unclear
    /// error, as GitHub answering 502 for a write it carried out.
    pub fn apply_then_fail(&self, n: u32) {
        self.lock().applied_then_fail = n;
    }

    fn unclear_after_apply(s: &mut MemoryState) -> Result<(), TrackerError> {
        if s.applied_then_fail > 0 {
            s.applied_then_fail -= 1;
            return Err(TrackerError::unclear("502 Bad Gateway (applied)"));
        }
        Ok(())
    }

    /// Number of calls made so far.
    pub fn requests(&self) -> usize {
        self.lock().requests
    }

    /// All issues of `repo`.
    pub fn issues(&self, repo: &str) -> Vec<ExistingIssue> {
        self.lock()
            .issues
            .iter()
            .filter(|(r, _, _)| r == repo)
            .map(|(_, _, i)| i.clone())
            .collect()
    }

    /// All comments posted, with their issue numbers.
    pub fn comments(&self) -> Vec<(u64, String)> {
        self.lock().comments.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Returns `Pending` once, so concurrent callers interleave like real network calls do.
fn yield_once() -> impl Future<Output = ()> + Send {
    let mut yielded = false;
    std::future::poll_fn(move |cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
}

impl IssueTracker for MemoryTracker {
    async fn list_by_label(
        &self,
        repo: &str,
        label: &str,
    ) -> Result<Vec<ExistingIssue>, TrackerError> {
        yield_once().await;
        let mut s = self.lock();
        s.requests += 1;
        Ok(s.issues
            .iter()
            .filter(|(r, labels, _)| r == repo && labels.iter().any(|l| l == label))
            .map(|(_, _, i)| i.clone())
            .collect())
    }

    async fn list_comments(&self, repo: &str, number: u64) -> Result<Vec<String>, TrackerError> {
        yield_once().await;
        let mut s = self.lock();
        s.requests += 1;
        if !s
            .issues
            .iter()
            .any(|(r, _, i)| r == repo && i.number == number)
        {
            return Err(TrackerError::new(format!("no issue #{number}")));
        }
        Ok(s.comments
            .iter()
            .filter(|(n, _)| *n == number)
            .map(|(_, c)| c.clone())
            .collect())
    }

    fn write_pause(&self, _attempt: u32) -> Duration {
        Duration::ZERO
    }

    async fn create_issue(&self, repo: &str, draft: &IssueDraft) -> Result<u64, TrackerError> {
        yield_once().await;
        let mut s = self.lock();
        s.requests += 1;
        s.next += 1;
        let number = s.next;
        s.issues.push((
            repo.to_string(),
            draft.labels.clone(),
            ExistingIssue {
                number,
                state: IssueOpenState::Open,
                title: draft.title.clone(),
                body: draft.body.clone(),
            },
        ));
        Self::unclear_after_apply(&mut s)?;
        Ok(number)
    }

    async fn comment(&self, repo: &str, number: u64, body: &str) -> Result<(), TrackerError> {
        yield_once().await;
        let mut s = self.lock();
        s.requests += 1;
        if !s
            .issues
            .iter()
            .any(|(r, _, i)| r == repo && i.number == number)
        {
            return Err(TrackerError::new(format!("no issue #{number}")));
        }
        s.comments.push((number, body.to_string()));
        Self::unclear_after_apply(&mut s)
    }

    async fn edit_issue(
        &self,
        repo: &str,
        number: u64,
        edit: &IssueEdit,
    ) -> Result<(), TrackerError> {
        yield_once().await;
        let mut s = self.lock();
        s.requests += 1;
        let issue = s
            .issues
            .iter_mut()
            .find(|(r, _, i)| r == repo && i.number == number)
            .map(|(_, _, i)| i)
            .ok_or_else(|| TrackerError::new(format!("no issue #{number}")))?;
        if let Some(body) = &edit.body {
            issue.body = body.clone();
        }
        if let Some(state) = edit.state {
            issue.state = state;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::test_support::{fixture, target};

    #[tokio::test]
    async fn lifecycle_with_request_counts() {
        let t = MemoryTracker::default();
        let filed = file_event(&t, &target(), &fixture("ec2_instance_retirement"))
            .await
            .unwrap();
        assert_eq!((filed.outcome, filed.number), ("created", Some(1)));
        assert_eq!(t.requests(), 3);

        let filed = file_event(&t, &target(), &fixture("ec2_instance_retirement"))
            .await
            .unwrap();
        assert_eq!(filed.outcome, "unchanged");
        assert_eq!(t.requests(), 4);

        let filed = file_event(&t, &target(), &fixture("ec2_instance_retirement_update"))
            .await
            .unwrap();
        assert_eq!(filed.outcome, "updated");
        assert_eq!(t.requests(), 8, "list, list comments, comment, edit");
        assert_eq!(t.comments().len(), 1);

        let filed = file_event(&t, &target(), &fixture("ec2_instance_retirement_closed"))
            .await
            .unwrap();
        assert_eq!(filed.outcome, "closed");
        assert_eq!(t.requests(), 12);
        let issues = t.issues("acme/ops");
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].state, IssueOpenState::Closed);
        assert!(issues[0].body.contains("| Status | closed |"));

        let filed = file_event(&t, &target(), &fixture("ec2_instance_retirement_reopened"))
            .await
            .unwrap();
        assert_eq!(filed.outcome, "reopened");
        assert_eq!(t.issues("acme/ops")[0].state, IssueOpenState::Open);
        assert_eq!(t.comments().len(), 3);
    }

    #[tokio::test]
    async fn concurrent_copies_end_with_one_open_issue() {
        let event = fixture("rds_maintenance");
        // The memory tracker yields at every call, so the two copies interleave: both list
        // (nothing), both create, both converge.
        let t2 = MemoryTracker::default();
        let target = target();
        let (a, b) = tokio::join!(
            file_event(&t2, &target, &event),
            file_event(&t2, &target, &event)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let open: Vec<_> = t2
            .issues("acme/ops")
            .into_iter()
            .filter(|i| i.state == IssueOpenState::Open)
            .collect();
        assert_eq!(open.len(), 1, "{:?}", t2.issues("acme/ops"));
        assert_eq!(open[0].number, 1);
        assert_eq!(t2.issues("acme/ops").len(), 2, "both copies created one");
        assert_eq!(a.number, Some(1));
        assert_eq!(b.number, Some(1));
        assert!(a.duplicates_closed.contains(&2) || b.duplicates_closed.contains(&2));
        let dup_comments: Vec<_> = t2
            .comments()
            .into_iter()
            .filter(|(n, c)| *n == 2 && c.starts_with("Duplicate of #1"))
            .collect();
        assert_eq!(dup_comments.len(), 1, "{dup_comments:?}");
    }
}
