//! What the fake GitHub remembers: repositories with issues, comments, labels, git
//! objects (blobs, flattened trees, commits, refs), pull requests, check runs and releases.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Instant;

use serde_json::{Value, json};
use sha1::{Digest, Sha1};

/// One recorded HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query as received (prefix included).
    pub path: String,
    pub status: u16,
}

/// Makes the next `remaining` requests matching `method` + `path_contains` fail.
#[derive(Debug, Clone)]
pub struct FailureRule {
    pub method: Option<String>,
    pub path_contains: String,
    pub remaining: u32,
    pub status: u16,
    pub retry_after: Option<u64>,
    pub message: String,
    /// Carry the request out first, then answer with the failure (a write GitHub applied
    /// but answered 502 for, as its front end sometimes does).
    pub apply_first: bool,
}

impl FailureRule {
    /// `count` 502s for any request whose path contains `path_contains`.
    pub fn bad_gateway(path_contains: &str, count: u32) -> Self {
        FailureRule {
            method: None,
            path_contains: path_contains.to_string(),
            remaining: count,
            status: 502,
            retry_after: None,
            message: "<html><body><h1>502 Bad Gateway</h1></body></html>".to_string(),
            apply_first: false,
        }
    }

    /// `count` requests whose path contains `path_contains` are carried out and then
    /// answered 502: the write happened, the client cannot tell.
    pub fn applied_then_bad_gateway(path_contains: &str, count: u32) -> Self {
        FailureRule {
            apply_first: true,
            ..Self::bad_gateway(path_contains, count)
        }
    }

    /// `count` secondary-rate-limit 403s with `Retry-After: secs`.
    pub fn secondary_rate_limit(path_contains: &str, count: u32, secs: u64) -> Self {
        FailureRule {
            method: None,
            path_contains: path_contains.to_string(),
            remaining: count,
            status: 403,
            retry_after: Some(secs),
            message: "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.".to_string(),
            apply_first: false,
        }
    }

    pub fn only_method(mut self, method: &str) -> Self {
        self.method = Some(method.to_ascii_uppercase());
        self
    }
}

#[derive(Debug, Clone)]
pub struct IssueRec {
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    pub state: String,
    pub state_reason: Option<String>,
    pub labels: Vec<String>,
    pub assignees: Vec<String>,
    pub created: Instant,
    pub created_at: String,
    pub updated_at: String,
    pub is_pull: bool,
    pub author: String,
}

#[derive(Debug, Clone)]
pub struct CommentRec {
    pub id: u64,
    pub body: String,
    pub created_at: String,
    pub author: String,
}

#[derive(Debug, Clone)]
pub struct PullRec {
    pub number: u64,
    pub head_ref: String,
    pub base_ref: String,
    pub draft: bool,
    pub merged: bool,
    pub requested_reviewers: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct CheckRunRec {
    pub id: u64,
    pub name: String,
    pub head_sha: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub external_id: Option<String>,
    pub title: Option<String>,
    pub summary: Option<String>,
    pub annotations: Vec<Value>,
    /// Sizes of the annotation batches received, request by request.
    pub annotation_batches: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct CommitRec {
    pub tree: String,
    pub parents: Vec<String>,
    pub message: String,
}

/// A flattened tree: path → (mode, blob sha).
pub type Files = BTreeMap<String, (String, String)>;

#[derive(Debug, Default)]
pub struct Repo {
    pub id: u64,
    pub owner: String,
    pub name: String,
    pub default_branch: String,
    pub next_number: u64,
    pub issues: BTreeMap<u64, IssueRec>,
    pub comments: BTreeMap<u64, Vec<CommentRec>>,
    pub labels: BTreeMap<String, (String, String)>,
    /// `refs/heads/main` → commit sha.
    pub refs: BTreeMap<String, String>,
    pub blobs: HashMap<String, Vec<u8>>,
    pub trees: HashMap<String, Files>,
    pub commits: HashMap<String, CommitRec>,
    pub pulls: BTreeMap<u64, PullRec>,
    pub check_runs: Vec<CheckRunRec>,
    pub releases: Vec<Value>,
}

impl Repo {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    pub fn put_blob(&mut self, bytes: Vec<u8>) -> String {
        let mut h = Sha1::new();
        h.update(format!("blob {}\0", bytes.len()).as_bytes());
        h.update(&bytes);
        let sha = hex::encode(h.finalize());
        self.blobs.insert(sha.clone(), bytes);
        sha
    }

    pub fn put_tree(&mut self, files: Files) -> String {
        let mut h = Sha1::new();
        h.update(b"tree\0");
        for (path, (mode, sha)) in &files {
            h.update(format!("{mode} {path} {sha}\n").as_bytes());
        }
        let sha = hex::encode(h.finalize());
        self.trees.insert(sha.clone(), files);
        sha
    }

    pub fn put_commit(&mut self, tree: String, parents: Vec<String>, message: String) -> String {
        let mut h = Sha1::new();
        h.update(
            format!(
                "commit\0{tree}\n{}\n{message}\n{}",
                parents.join(","),
                self.commits.len()
            )
            .as_bytes(),
        );
        let sha = hex::encode(h.finalize());
        self.commits.insert(
            sha.clone(),
            CommitRec {
                tree,
                parents,
                message,
            },
        );
        sha
    }

    /// Commits `files` (path → content) on top of `branch` (created when absent).
    pub fn commit_files(&mut self, branch: &str, files: &[(&str, &str)], message: &str) -> String {
        let full = format!("refs/heads/{branch}");
        let parent = self.refs.get(&full).cloned();
        let mut tree = parent
            .as_ref()
            .and_then(|c| self.commits.get(c))
            .and_then(|c| self.trees.get(&c.tree))
            .cloned()
            .unwrap_or_default();
        for (path, content) in files {
            let sha = self.put_blob(content.as_bytes().to_vec());
            tree.insert((*path).to_string(), ("100644".to_string(), sha));
        }
        let tree_sha = self.put_tree(tree);
        let sha = self.put_commit(tree_sha, parent.into_iter().collect(), message.to_string());
        self.refs.insert(full, sha.clone());
        sha
    }

    /// Resolves a branch name, `heads/x`, `refs/heads/x`, a tag or a commit sha.
    pub fn resolve(&self, reference: &str) -> Option<String> {
        if self.commits.contains_key(reference) {
            return Some(reference.to_string());
        }
        let candidates = [
            reference.to_string(),
            format!("refs/{reference}"),
            format!("refs/heads/{reference}"),
            format!("refs/tags/{reference}"),
        ];
        candidates
            .iter()
            .find_map(|c| self.refs.get(c).cloned())
            .or_else(|| {
                // Abbreviated shas.
                (reference.len() >= 7)
                    .then(|| {
                        self.commits
                            .keys()
                            .find(|k| k.starts_with(reference))
                            .cloned()
                    })
                    .flatten()
            })
    }

    pub fn files_at(&self, commit: &str) -> Option<&Files> {
        let c = self.commits.get(commit)?;
        self.trees.get(&c.tree)
    }

    fn ancestors(&self, commit: &str) -> Vec<String> {
        let mut seen = HashSet::new();
        let mut order = Vec::new();
        let mut queue = VecDeque::from([commit.to_string()]);
        while let Some(c) = queue.pop_front() {
            if !seen.insert(c.clone()) {
                continue;
            }
            if let Some(rec) = self.commits.get(&c) {
                queue.extend(rec.parents.iter().cloned());
            }
            order.push(c);
        }
        order
    }

    /// The nearest common ancestor (what `base...head` compares against).
    pub fn merge_base(&self, base: &str, head: &str) -> Option<String> {
        let base_set: HashSet<String> = self.ancestors(base).into_iter().collect();
        self.ancestors(head)
            .into_iter()
            .find(|c| base_set.contains(c))
    }

    /// Commits reachable from `head` but not from `base`, oldest first.
    pub fn commits_between(&self, base: &str, head: &str) -> Vec<String> {
        let base_set: HashSet<String> = self.ancestors(base).into_iter().collect();
        let mut list: Vec<String> = self
            .ancestors(head)
            .into_iter()
            .filter(|c| !base_set.contains(c))
            .collect();
        list.reverse();
        list
    }

    /// GitHub-style changed files with patches between two commits.
    pub fn diff_files(&self, from: &str, to: &str) -> Vec<Value> {
        let empty = Files::new();
        let old = self.files_at(from).unwrap_or(&empty);
        let new = self.files_at(to).unwrap_or(&empty);
        let mut paths: Vec<&String> = old.keys().chain(new.keys()).collect();
        paths.sort();
        paths.dedup();
        let mut out = Vec::new();
        for path in paths {
            let (o, n) = (old.get(path), new.get(path));
            if o.map(|x| &x.1) == n.map(|x| &x.1) {
                continue;
            }
            let text = |e: Option<&(String, String)>| {
                e.and_then(|(_, sha)| self.blobs.get(sha))
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default()
            };
            let (old_text, new_text) = (text(o), text(n));
            let diff = similar::TextDiff::from_lines(&old_text, &new_text);
            let mut patch = String::new();
            let (mut additions, mut deletions) = (0u64, 0u64);
            for change in diff.iter_all_changes() {
                match change.tag() {
                    similar::ChangeTag::Insert => additions += 1,
                    similar::ChangeTag::Delete => deletions += 1,
                    similar::ChangeTag::Equal => {}
                }
            }
            for hunk in diff.unified_diff().context_radius(3).iter_hunks() {
                patch.push_str(&hunk.to_string());
            }
            let status = match (o, n) {
                (None, Some(_)) => "added",
                (Some(_), None) => "removed",
                _ => "modified",
            };
            out.push(json!({
                "sha": n.map(|x| x.1.clone()),
                "filename": path,
                "status": status,
                "additions": additions,
                "deletions": deletions,
                "changes": additions + deletions,
                "patch": patch.trim_end_matches('\n'),
            }));
        }
        out
    }
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
