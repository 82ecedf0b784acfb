//! Seeding the fake from a webhook payload: the repository, the App installation, the
//! commits (with the payload's own shas), branches and pull requests the payload refers
//! to, so that a payload sent to the App (for instance one of GitHub's documented
//! examples) can be scanned against the fake end to end. Generic: it reads only the
//! fields GitHub documents (`repository`, `installation`, `ref`/`before`/`after`/`commits`,
//! `pull_request.head`/`base`, `check_suite`/`check_run`).
//!
//! Files of seeded commits are placeholders (the payload does not carry contents): each
//! added or modified path gets one line naming the path and the commit.

use std::time::Instant;

use serde_json::Value;

use super::state::{CommitRec, Files, IssueRec, PullRec, Repo, now_rfc3339};
use super::{FakeGitHub, Inner};

fn is_null_sha(s: &str) -> bool {
    s.is_empty() || s.bytes().all(|b| b == b'0')
}

/// Inserts commit `sha` (child of `parent`, with `files` written on top of the parent's
/// tree) unless it exists.
fn ensure_commit(repo: &mut Repo, sha: &str, parent: Option<&str>, files: &[String]) {
    if repo.commits.contains_key(sha) {
        return;
    }
    let mut tree: Files = parent
        .and_then(|p| repo.files_at(p))
        .cloned()
        .unwrap_or_default();
    for path in files {
        let blob = repo.put_blob(format!("seeded {path} at {sha}\n").into_bytes());
        tree.insert(path.clone(), ("100644".to_string(), blob));
    }
    let tree_sha = repo.put_tree(tree);
    repo.commits.insert(
        sha.to_string(),
        CommitRec {
            tree: tree_sha,
            parents: parent.map(str::to_string).into_iter().collect(),
            message: format!("seeded commit {sha}"),
        },
    );
}

fn ensure_branch_tip(repo: &mut Repo, branch: &str) -> String {
    let key = format!("refs/heads/{branch}");
    if let Some(sha) = repo.refs.get(&key) {
        return sha.clone();
    }
    let sha = repo.commit_files(
        branch,
        &[("README.md", "# seeded repository\n")],
        "Initial commit",
    );
    repo.refs.insert(key, sha.clone());
    sha
}

fn ensure_pull(repo: &mut Repo, number: u64, head_ref: &str, base_ref: &str, state: &str) {
    if repo.pulls.contains_key(&number) {
        return;
    }
    let now = now_rfc3339();
    repo.issues.insert(
        number,
        IssueRec {
            number,
            title: format!("seeded pull request #{number}"),
            body: None,
            state: state.to_string(),
            state_reason: None,
            labels: Vec::new(),
            assignees: Vec::new(),
            created: Instant::now(),
            created_at: now.clone(),
            updated_at: now,
            is_pull: true,
            author: "seed".to_string(),
        },
    );
    repo.pulls.insert(
        number,
        PullRec {
            number,
            head_ref: head_ref.to_string(),
            base_ref: base_ref.to_string(),
            draft: false,
            merged: false,
            requested_reviewers: Vec::new(),
        },
    );
    repo.next_number = repo.next_number.max(number + 1);
}

/// Seeds a pull request object (`pull_request`, or one of `check_suite.pull_requests`).
fn seed_pull(repo: &mut Repo, pr: &Value) {
    let (Some(number), Some(head_sha), Some(base_sha)) = (
        pr["number"].as_u64(),
        pr["head"]["sha"].as_str(),
        pr["base"]["sha"].as_str(),
    ) else {
        return;
    };
    let head_ref = pr["head"]["ref"].as_str().unwrap_or("head");
    let base_ref = pr["base"]["ref"]
        .as_str()
        .unwrap_or(&repo.default_branch)
        .to_string();
    ensure_commit(repo, base_sha, None, &["README.md".to_string()]);
    ensure_commit(repo, head_sha, Some(base_sha), &["CHANGES.md".to_string()]);
    repo.refs
        .entry(format!("refs/heads/{base_ref}"))
        .or_insert_with(|| base_sha.to_string());
    repo.refs
        .insert(format!("refs/heads/{head_ref}"), head_sha.to_string());
    let state = pr["state"].as_str().unwrap_or("open");
    ensure_pull(repo, number, head_ref, &base_ref, state);
}

fn seed(g: &mut Inner, event: &str, p: &Value) {
    let r = &p["repository"];
    let Some(name) = r["name"].as_str() else {
        return;
    };
    let owner = r["owner"]["login"]
        .as_str()
        .or_else(|| r["owner"]["name"].as_str())
        .unwrap_or("owner");
    let full = format!("{owner}/{name}");
    let id = match r["id"].as_u64() {
        Some(id) => id,
        None => g.next_id(),
    };
    if let Some(inst) = p["installation"]["id"].as_u64() {
        let repos = g.installations.entry(inst).or_default();
        if !repos.contains(&full) {
            repos.push(full.clone());
        }
    }
    let repo = g.repos.entry(full).or_insert_with(|| Repo {
        id,
        owner: owner.to_string(),
        name: name.to_string(),
        default_branch: r["default_branch"].as_str().unwrap_or("main").to_string(),
        next_number: 1,
        ..Default::default()
    });
    match event {
        "push" => {
            let (Some(git_ref), Some(before), Some(after)) =
                (p["ref"].as_str(), p["before"].as_str(), p["after"].as_str())
            else {
                return;
            };
            let Some(branch) = git_ref.strip_prefix("refs/heads/") else {
                return;
            };
            if is_null_sha(after) {
                return;
            }
            let default = repo.default_branch.clone();
            let mut prev: Option<String> = if !is_null_sha(before) {
                ensure_commit(repo, before, None, &["README.md".to_string()]);
                Some(before.to_string())
            } else if branch != default {
                Some(ensure_branch_tip(repo, &default))
            } else {
                None
            };
            for c in p["commits"].as_array().into_iter().flatten() {
                let Some(sha) = c["id"].as_str() else {
                    continue;
                };
                let files: Vec<String> = ["added", "modified"]
                    .iter()
                    .flat_map(|k| c[*k].as_array().into_iter().flatten())
                    .filter_map(|f| f.as_str().map(str::to_string))
                    .collect();
                ensure_commit(repo, sha, prev.as_deref(), &files);
                prev = Some(sha.to_string());
            }
            ensure_commit(repo, after, prev.as_deref(), &[]);
            repo.refs.insert(git_ref.to_string(), after.to_string());
        }
        "pull_request" => seed_pull(repo, &p["pull_request"]),
        "check_suite" | "check_run" => {
            let suite = if event == "check_run" {
                &p["check_run"]["check_suite"]
            } else {
                &p["check_suite"]
            };
            let head = suite["head_sha"]
                .as_str()
                .or_else(|| p["check_run"]["head_sha"].as_str());
            let before = suite["before"].as_str().filter(|b| !is_null_sha(b));
            if let Some(head) = head {
                if let Some(b) = before {
                    ensure_commit(repo, b, None, &["README.md".to_string()]);
                }
                ensure_commit(repo, head, before, &["CHANGES.md".to_string()]);
                if let Some(branch) = suite["head_branch"].as_str() {
                    repo.refs
                        .entry(format!("refs/heads/{branch}"))
                        .or_insert_with(|| head.to_string());
                }
            }
            for pr in suite["pull_requests"].as_array().into_iter().flatten() {
                seed_pull(repo, pr);
            }
        }
        _ => {}
    }
}

impl FakeGitHub {
    /// Makes the fake hold what the payload of event `event` refers to (see the module
    /// docs). Idempotent; payloads without a repository only register their installation.
    pub fn seed_from_payload(&self, event: &str, payload: &Value) {
        let mut g = self.lock();
        if payload["repository"].is_null()
            && let Some(inst) = payload["installation"]["id"].as_u64()
        {
            g.installations.entry(inst).or_default();
            return;
        }
        seed(&mut g, event, payload);
    }
}
