//! Webhook payloads (only the fields opsbot reads, shaped as GitHub documents them) and the
//! decision each event leads to: a [`ScanJob`], or nothing. Pure.
//!
//! Handled: `push` (the lines added between `before` and `after`), `pull_request`
//! (`opened`, `synchronize`, `reopened`: the pull request's added lines), and
//! `check_suite` / `check_run` `rerequested` (the same scan again). `ping` is answered.

use opsbot_core::github::RepoRef;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The events the App subscribes to (see `github-app-manifest.json`).
pub const HANDLED_EVENTS: &[&str] = &["push", "pull_request", "check_suite", "check_run"];

/// The sha GitHub sends as `before` for a new branch and as `after` for a deleted one.
pub const NULL_SHA: &str = "0000000000000000000000000000000000000000";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The body is not the JSON the event name announces; names the field.
    #[error("`{event}` payload: {message}")]
    Payload { event: String, message: String },
}

#[derive(Debug, Clone, Deserialize)]
pub struct Installation {
    pub id: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Owner {
    #[serde(default)]
    pub login: Option<String>,
    /// Push payloads also carry the owner's `name`.
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    pub name: String,
    #[serde(default)]
    pub full_name: Option<String>,
    pub owner: Owner,
    #[serde(default)]
    pub default_branch: Option<String>,
}

impl Repository {
    pub fn repo_ref(&self) -> RepoRef {
        let owner = self
            .owner
            .login
            .clone()
            .or_else(|| self.owner.name.clone())
            .or_else(|| {
                self.full_name
                    .as_deref()
                    .and_then(|f| f.split_once('/'))
                    .map(|(o, _)| o.to_owned())
            })
            .unwrap_or_default();
        RepoRef::new(owner, self.name.clone())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct HeadCommit {
    pub id: String,
}

/// GitHub lists at most this many commits in a push payload.
pub const PUSH_PAYLOAD_COMMIT_LIMIT: usize = 2048;

/// `push`.
#[derive(Debug, Clone, Deserialize)]
pub struct PushEvent {
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub before: String,
    pub after: String,
    #[serde(default)]
    pub created: bool,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub forced: bool,
    #[serde(default)]
    pub head_commit: Option<HeadCommit>,
    /// The commits the push lists (oldest first; at most [`PUSH_PAYLOAD_COMMIT_LIMIT`]).
    #[serde(default)]
    pub commits: Vec<HeadCommit>,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<Installation>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PullBranch {
    pub sha: String,
    #[serde(rename = "ref", default)]
    pub git_ref: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    pub head: PullBranch,
    pub base: PullBranch,
}

/// `pull_request`.
#[derive(Debug, Clone, Deserialize)]
pub struct PullRequestEvent {
    pub action: String,
    pub pull_request: PullRequest,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<Installation>,
}

/// The `check_suite` object (also nested in `check_run.check_suite`).
#[derive(Debug, Clone, Deserialize)]
pub struct CheckSuite {
    pub head_sha: String,
    #[serde(default)]
    pub before: Option<String>,
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default)]
    pub pull_requests: Vec<PullRequest>,
}

/// `check_suite`.
#[derive(Debug, Clone, Deserialize)]
pub struct CheckSuiteEvent {
    pub action: String,
    pub check_suite: CheckSuite,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<Installation>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CheckRun {
    #[serde(default)]
    pub name: Option<String>,
    pub head_sha: String,
    pub check_suite: CheckSuite,
}

/// `check_run`.
#[derive(Debug, Clone, Deserialize)]
pub struct CheckRunEvent {
    pub action: String,
    pub check_run: CheckRun,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<Installation>,
}

/// Which lines to scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanTarget {
    /// Every commit a push adds, each read on its own (so a key added by one commit and
    /// removed by a later one is still found, and each finding names its commit).
    /// `base` is what the commits are new relative to (`before`, or the default branch for
    /// a new branch): the commits are those of `base...head` (paged past compare's 250).
    /// Without a base (the first push to the default branch) the commits are `listed`
    /// (from the payload), and the history of `head` is walked when that list is full.
    Push {
        base: Option<String>,
        head: String,
        listed: Vec<String>,
    },
    /// The files of a pull request.
    PullRequest { number: u64 },
}

/// One scan to run and report as a check run on `head_sha`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanJob {
    /// `X-GitHub-Delivery`, for logs and the check run's `external_id`.
    pub delivery: String,
    /// What triggered it, for logs and the summary (`push to refs/heads/x`, `pull request #5`).
    pub trigger: String,
    pub repo: RepoRef,
    pub installation_id: u64,
    pub head_sha: String,
    pub target: ScanTarget,
    /// For pushes: the branch. A push to the head branch of an open pull request is left
    /// to the pull request's own scan (GitHub sends both events), so the two never race to
    /// be the last "opsbot / secrets" run on the same commit.
    pub pushed_branch: Option<String>,
}

/// What a delivery leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Scan(ScanJob),
    /// GitHub's `ping` when the hook is created.
    Ping,
    /// Nothing to do, and why (for the response and the logs).
    Ignore(String),
}

fn parse<T: DeserializeOwned>(event: &str, body: &[u8]) -> Result<T, WebhookError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        // serde_json quotes offending string values (`invalid type: string "…"`): drop
        // them, a payload value must never reach a log or a response.
        let inner = redact_quoted(&e.into_inner().to_string());
        let message = if path == "." || path.is_empty() {
            inner
        } else {
            format!("field `{path}`: {inner}")
        };
        WebhookError::Payload {
            event: event.to_owned(),
            message,
        }
    })
}

/// Replaces every double-quoted part of `text` with `"…"`.
fn redact_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_quote = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quote = false;
                out.push_str("…\"");
            }
        } else {
            out.push(c);
            if c == '"' {
                in_quote = true;
            }
        }
    }
    if in_quote {
        out.push_str("…\"");
    }
    out
}

fn installation(event: &str, inst: Option<&Installation>) -> Result<u64, WebhookError> {
    inst.map(|i| i.id).ok_or_else(|| WebhookError::Payload {
        event: event.to_owned(),
        message: "field `installation.id` is missing (is this delivery from a GitHub App?)"
            .to_owned(),
    })
}

fn is_null_sha(sha: &str) -> bool {
    sha.is_empty() || sha.bytes().all(|b| b == b'0')
}

/// Decides what to do with one delivery (`X-GitHub-Event` = `event`).
pub fn route(event: &str, delivery: &str, body: &[u8]) -> Result<Route, WebhookError> {
    match event {
        "ping" => Ok(Route::Ping),
        "push" => route_push(delivery, parse(event, body)?),
        "pull_request" => route_pull(delivery, parse(event, body)?),
        "check_suite" => {
            let ev: CheckSuiteEvent = parse(event, body)?;
            if ev.action != "rerequested" {
                return Ok(Route::Ignore(format!(
                    "check_suite {} is not handled",
                    ev.action
                )));
            }
            let installation_id = installation(event, ev.installation.as_ref())?;
            Ok(route_suite(
                delivery,
                "re-run of the check suite",
                ev.repository.repo_ref(),
                installation_id,
                &ev.check_suite.head_sha,
                &ev.check_suite,
            ))
        }
        "check_run" => {
            let ev: CheckRunEvent = parse(event, body)?;
            if ev.action != "rerequested" {
                return Ok(Route::Ignore(format!(
                    "check_run {} is not handled",
                    ev.action
                )));
            }
            let installation_id = installation(event, ev.installation.as_ref())?;
            Ok(route_suite(
                delivery,
                "re-run of the check run",
                ev.repository.repo_ref(),
                installation_id,
                &ev.check_run.head_sha,
                &ev.check_run.check_suite,
            ))
        }
        other => Ok(Route::Ignore(format!("event `{other}` is not handled"))),
    }
}

fn route_push(delivery: &str, ev: PushEvent) -> Result<Route, WebhookError> {
    if ev.deleted || is_null_sha(&ev.after) {
        return Ok(Route::Ignore(format!("{} was deleted", ev.git_ref)));
    }
    if !ev.git_ref.starts_with("refs/heads/") {
        return Ok(Route::Ignore(format!("{} is not a branch", ev.git_ref)));
    }
    let installation_id = installation("push", ev.installation.as_ref())?;
    let head = ev
        .head_commit
        .as_ref()
        .map_or_else(|| ev.after.clone(), |c| c.id.clone());
    let branch = ev.git_ref.trim_start_matches("refs/heads/");
    // A normal or forced push: the commits new since `before` (for a force-push, those
    // not reachable from the old tip). A new branch: what it adds over the default
    // branch. The first push to the default branch: the commits it lists.
    let base = if !is_null_sha(&ev.before) {
        Some(ev.before.clone())
    } else {
        match ev.repository.default_branch.as_deref() {
            Some(default) if default != branch => Some(default.to_owned()),
            _ => None,
        }
    };
    let target = ScanTarget::Push {
        base,
        head: head.clone(),
        listed: ev.commits.iter().map(|c| c.id.clone()).collect(),
    };
    Ok(Route::Scan(ScanJob {
        delivery: delivery.to_owned(),
        trigger: format!("push to {}", ev.git_ref),
        repo: ev.repository.repo_ref(),
        installation_id,
        head_sha: head,
        target,
        pushed_branch: Some(branch.to_owned()),
    }))
}

fn route_pull(delivery: &str, ev: PullRequestEvent) -> Result<Route, WebhookError> {
    if !matches!(ev.action.as_str(), "opened" | "synchronize" | "reopened") {
        return Ok(Route::Ignore(format!(
            "pull_request {} is not handled",
            ev.action
        )));
    }
    let installation_id = installation("pull_request", ev.installation.as_ref())?;
    let number = ev.pull_request.number;
    Ok(Route::Scan(ScanJob {
        delivery: delivery.to_owned(),
        trigger: format!("pull request #{number} {}", ev.action),
        repo: ev.repository.repo_ref(),
        installation_id,
        head_sha: ev.pull_request.head.sha.clone(),
        target: ScanTarget::PullRequest { number },
        pushed_branch: None,
    }))
}

fn route_suite(
    delivery: &str,
    trigger: &str,
    repo: RepoRef,
    installation_id: u64,
    head_sha: &str,
    suite: &CheckSuite,
) -> Route {
    let target = if let Some(pr) = suite.pull_requests.first() {
        ScanTarget::PullRequest { number: pr.number }
    } else {
        ScanTarget::Push {
            base: suite
                .before
                .as_deref()
                .filter(|b| !is_null_sha(b))
                .map(str::to_owned),
            head: head_sha.to_owned(),
            listed: vec![head_sha.to_owned()],
        }
    };
    Route::Scan(ScanJob {
        delivery: delivery.to_owned(),
        trigger: trigger.to_owned(),
        repo,
        installation_id,
        head_sha: head_sha.to_owned(),
        target,
        pushed_branch: None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn repository() -> serde_json::Value {
        json!({
            "id": 1, "name": "infra", "full_name": "acme/infra",
            "owner": { "name": "acme", "login": "acme", "id": 2 },
            "default_branch": "main", "private": true
        })
    }

    fn push(before: &str, after: &str, git_ref: &str) -> Vec<u8> {
        json!({
            "ref": git_ref, "before": before, "after": after,
            "created": before == NULL_SHA, "deleted": after == NULL_SHA, "forced": false,
            "base_ref": null, "compare": "https://github.com/acme/infra/compare/x...y",
            "commits": if after == NULL_SHA { json!([]) } else { json!([{"id": after, "message": "m"}]) },
            "head_commit": if after == NULL_SHA { json!(null) } else { json!({"id": after, "message": "m"}) },
            "repository": repository(),
            "pusher": { "name": "alice", "email": "a@example.com" },
            "sender": { "login": "alice" },
            "installation": { "id": 77, "node_id": "MDIz" }
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn push_scans_the_range_between_before_and_after() {
        let (b, a) = ("a".repeat(40), "b".repeat(40));
        let route = route("push", "d1", &push(&b, &a, "refs/heads/feature")).unwrap();
        assert_eq!(
            route,
            Route::Scan(ScanJob {
                delivery: "d1".into(),
                trigger: "push to refs/heads/feature".into(),
                repo: RepoRef::new("acme", "infra"),
                installation_id: 77,
                head_sha: a.clone(),
                target: ScanTarget::Push {
                    base: Some(b),
                    head: a,
                    listed: vec!["b".repeat(40)],
                },
                pushed_branch: Some("feature".into()),
            })
        );
    }

    #[test]
    fn new_branch_compares_with_the_default_branch_and_first_push_scans_the_commit() {
        let a = "c".repeat(40);
        let Route::Scan(job) = route("push", "d", &push(NULL_SHA, &a, "refs/heads/topic")).unwrap()
        else {
            panic!("expected a scan")
        };
        assert_eq!(
            job.target,
            ScanTarget::Push {
                base: Some("main".into()),
                head: a.clone(),
                listed: vec![a.clone()],
            }
        );
        let Route::Scan(job) = route("push", "d", &push(NULL_SHA, &a, "refs/heads/main")).unwrap()
        else {
            panic!("expected a scan")
        };
        assert_eq!(
            job.target,
            ScanTarget::Push {
                base: None,
                head: a.clone(),
                listed: vec![a],
            }
        );
    }

    #[test]
    fn deleted_branches_and_tags_are_ignored() {
        let a = "c".repeat(40);
        assert!(matches!(
            route("push", "d", &push(&a, NULL_SHA, "refs/heads/x")).unwrap(),
            Route::Ignore(_)
        ));
        assert!(matches!(
            route("push", "d", &push(NULL_SHA, &a, "refs/tags/v1")).unwrap(),
            Route::Ignore(_)
        ));
    }

    fn pull(action: &str) -> Vec<u8> {
        json!({
            "action": action, "number": 5,
            "pull_request": {
                "number": 5, "state": "open", "title": "t",
                "head": { "ref": "feature", "sha": "h".repeat(40), "repo": repository() },
                "base": { "ref": "main", "sha": "b".repeat(40), "repo": repository() }
            },
            "repository": repository(),
            "installation": { "id": 77 }
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn pull_request_actions() {
        for action in ["opened", "synchronize", "reopened"] {
            let Route::Scan(job) = route("pull_request", "d", &pull(action)).unwrap() else {
                panic!("{action} should scan")
            };
            assert_eq!(job.target, ScanTarget::PullRequest { number: 5 });
            assert_eq!(job.head_sha, "h".repeat(40));
        }
        for action in ["closed", "labeled", "edited"] {
            assert!(matches!(
                route("pull_request", "d", &pull(action)).unwrap(),
                Route::Ignore(_)
            ));
        }
    }

    #[test]
    fn check_suite_and_check_run_rerequested() {
        let suite = json!({
            "id": 9, "head_branch": "feature", "head_sha": "h".repeat(40),
            "before": "b".repeat(40), "after": "h".repeat(40), "pull_requests": []
        });
        let body = json!({ "action": "rerequested", "check_suite": suite, "repository": repository(), "installation": {"id": 77} });
        let Route::Scan(job) = route("check_suite", "d", body.to_string().as_bytes()).unwrap()
        else {
            panic!("expected a scan")
        };
        assert_eq!(
            job.target,
            ScanTarget::Push {
                base: Some("b".repeat(40)),
                head: "h".repeat(40),
                listed: vec!["h".repeat(40)],
            }
        );
        let mut with_pr = suite.clone();
        with_pr["pull_requests"] = json!([{ "number": 3, "head": {"ref": "feature", "sha": "h".repeat(40)}, "base": {"ref": "main", "sha": "b".repeat(40)} }]);
        let body = json!({
            "action": "rerequested",
            "check_run": { "id": 1, "name": "opsbot / secrets", "head_sha": "h".repeat(40), "check_suite": with_pr },
            "repository": repository(), "installation": {"id": 77}
        });
        let Route::Scan(job) = route("check_run", "d", body.to_string().as_bytes()).unwrap() else {
            panic!("expected a scan")
        };
        assert_eq!(job.target, ScanTarget::PullRequest { number: 3 });
        let body = json!({ "action": "completed", "check_suite": suite, "repository": repository(), "installation": {"id": 77} });
        assert!(matches!(
            route("check_suite", "d", body.to_string().as_bytes()).unwrap(),
            Route::Ignore(_)
        ));
    }

    #[test]
    fn errors_name_the_field_and_unknown_events_are_ignored() {
        let err = route(
            "pull_request",
            "d",
            br#"{"action":"opened","pull_request":{"number":"x"}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("pull_request.number"), "{err}");
        let body = json!({ "action": "opened", "pull_request": { "number": 1, "head": {"sha": "h"}, "base": {"sha": "b"} }, "repository": repository() });
        let err = route("pull_request", "d", body.to_string().as_bytes()).unwrap_err();
        assert!(err.to_string().contains("installation.id"), "{err}");
        assert!(route("push", "d", b"not json").is_err());
        // A wrongly typed value is never echoed.
        let err = route(
            "pull_request",
            "d",
            br#"{"action":"opened","pull_request":{"number":"ghp_leaky\"value"}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("leaky"), "{err}");
        assert!(err.contains("invalid type: string \"…\""), "{err}");
        assert!(matches!(
            route("issues", "d", b"{}").unwrap(),
            Route::Ignore(_)
        ));
        assert_eq!(route("ping", "d", b"{}").unwrap(), Route::Ping);
    }
}
