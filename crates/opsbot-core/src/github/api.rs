//! Typed endpoints: one method per GitHub call opsbot makes. Each names its operation
//! (`"create issue in acme/infra"`) so errors say which call failed.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use http::Method;
use serde_json::json;

use super::models::*;
use super::{GitHub, GitHubError, RepoRef, encode_query, encode_segment};

/// Encodes a path inside a repository, keeping the `/` separators.
fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

impl GitHub {
    // ---- repositories and Apps ------------------------------------------------------

    pub async fn repository(&self, repo: &RepoRef) -> Result<Repository, GitHubError> {
        self.call::<_, ()>(
            &format!("get repository {repo}"),
            Method::GET,
            &format!("/repos/{}/{}", repo.owner, repo.name),
            None,
        )
        .await
    }

    /// The id of this App's installation on `repo` (App JWT auth).
    pub async fn repo_installation_id(&self, repo: &RepoRef) -> Result<u64, GitHubError> {
        let inst: Installation = self
            .call::<_, ()>(
                &format!("find the App installation for {repo}"),
                Method::GET,
                &format!("/repos/{}/{}/installation", repo.owner, repo.name),
                None,
            )
            .await?;
        Ok(inst.id)
    }

    // ---- issues -----------------------------------------------------------------------

    pub async fn create_issue(
        &self,
        repo: &RepoRef,
        issue: &NewIssue,
    ) -> Result<Issue, GitHubError> {
        self.call(
            &format!("create issue in {repo}"),
            Method::POST,
            &format!("/repos/{}/{}/issues", repo.owner, repo.name),
            Some(issue),
        )
        .await
    }

    pub async fn issue(&self, repo: &RepoRef, number: u64) -> Result<Issue, GitHubError> {
        self.call::<_, ()>(
            &format!("get issue {repo}#{number}"),
            Method::GET,
            &format!("/repos/{}/{}/issues/{number}", repo.owner, repo.name),
            None,
        )
        .await
    }

    pub async fn update_issue(
        &self,
        repo: &RepoRef,
        number: u64,
        patch: &IssuePatch,
    ) -> Result<Issue, GitHubError> {
        self.call(
            &format!("update issue {repo}#{number}"),
            Method::PATCH,
            &format!("/repos/{}/{}/issues/{number}", repo.owner, repo.name),
            Some(patch),
        )
        .await
    }

    /// Lists issues (pull requests excluded) matching `query`, oldest first, every page.
    /// Listing by label is strongly consistent, unlike search.
    pub async fn list_issues(
        &self,
        repo: &RepoRef,
        query: &IssueQuery,
    ) -> Result<Vec<Issue>, GitHubError> {
        let mut route = format!(
            "/repos/{}/{}/issues?state={}&sort=created&direction=asc&per_page=100",
            repo.owner,
            repo.name,
            query.state.as_deref().unwrap_or("all")
        );
        if !query.labels.is_empty() {
            route.push_str("&labels=");
            route.push_str(&encode_query(&query.labels.join(",")));
        }
        let issues: Vec<Issue> = self
            .paginate(&format!("list issues in {repo}"), &route, None)
            .await?;
        Ok(issues
            .into_iter()
            .filter(|i| !i.is_pull_request())
            .collect())
    }

    /// Issue search (`q` as on github.com). GitHub's index lags writes by seconds to
    /// minutes: never the only way to find something just created.
    pub async fn search_issues(&self, q: &str) -> Result<Vec<Issue>, GitHubError> {
        self.paginate(
            "search issues",
            &format!("/search/issues?q={}&per_page=100", encode_query(q)),
            Some("items"),
        )
        .await
    }

    pub async fn create_comment(
        &self,
        repo: &RepoRef,
        number: u64,
        body: &str,
    ) -> Result<Comment, GitHubError> {
        self.call(
            &format!("comment on {repo}#{number}"),
            Method::POST,
            &format!(
                "/repos/{}/{}/issues/{number}/comments",
                repo.owner, repo.name
            ),
            Some(&json!({ "body": body })),
        )
        .await
    }

    pub async fn list_comments(
        &self,
        repo: &RepoRef,
        number: u64,
    ) -> Result<Vec<Comment>, GitHubError> {
        self.paginate(
            &format!("list comments on {repo}#{number}"),
            &format!(
                "/repos/{}/{}/issues/{number}/comments?per_page=100",
                repo.owner, repo.name
            ),
            None,
        )
        .await
    }

    pub async fn add_labels(
        &self,
        repo: &RepoRef,
        number: u64,
        labels: &[String],
    ) -> Result<Vec<Label>, GitHubError> {
        self.call(
            &format!("label {repo}#{number}"),
            Method::POST,
            &format!("/repos/{}/{}/issues/{number}/labels", repo.owner, repo.name),
            Some(&json!({ "labels": labels })),
        )
        .await
    }

    /// Creates a label; an existing one with that name is fine.
    pub async fn ensure_label(
        &self,
        repo: &RepoRef,
        name: &str,
        color: &str,
        description: &str,
    ) -> Result<(), GitHubError> {
        let result = self
            .send(
                &format!("create label `{name}` in {repo}"),
                Method::POST,
                &format!("/repos/{}/{}/labels", repo.owner, repo.name),
                Some(&json!({ "name": name, "color": color, "description": description })),
            )
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(422) => Ok(()),
            Err(e) => Err(e),
        }
    }

    // ---- git data -----------------------------------------------------------------------

    /// `heads/main` → the ref, or `None` when it does not exist.
    pub async fn git_ref(&self, repo: &RepoRef, name: &str) -> Result<Option<GitRef>, GitHubError> {
        self.get_optional(
            &format!("get ref {name} in {repo}"),
            &format!(
                "/repos/{}/{}/git/ref/{}",
                repo.owner,
                repo.name,
                encode_path(name)
            ),
        )
        .await
    }

    /// Refs starting with `prefix` (`heads/opsbot/`).
    pub async fn matching_refs(
        &self,
        repo: &RepoRef,
        prefix: &str,
    ) -> Result<Vec<GitRef>, GitHubError> {
        self.paginate(
            &format!("list refs {prefix} in {repo}"),
            &format!(
                "/repos/{}/{}/git/matching-refs/{}?per_page=100",
                repo.owner,
                repo.name,
                encode_path(prefix)
            ),
            None,
        )
        .await
    }

    /// Creates `refs/heads/...` (give the full `refs/...` name).
    pub async fn create_ref(
        &self,
        repo: &RepoRef,
        full_name: &str,
        sha: &str,
    ) -> Result<GitRef, GitHubError> {
        self.call(
            &format!("create ref {full_name} in {repo}"),
            Method::POST,
            &format!("/repos/{}/{}/git/refs", repo.owner, repo.name),
            Some(&json!({ "ref": full_name, "sha": sha })),
        )
        .await
    }

    /// Moves `heads/...` to `sha` (force allows non-fast-forward).
    pub async fn update_ref(
        &self,
        repo: &RepoRef,
        name: &str,
        sha: &str,
        force: bool,
    ) -> Result<GitRef, GitHubError> {
        self.call(
            &format!("update ref {name} in {repo}"),
            Method::PATCH,
            &format!(
                "/repos/{}/{}/git/refs/{}",
                repo.owner,
                repo.name,
                encode_path(name)
            ),
            Some(&json!({ "sha": sha, "force": force })),
        )
        .await
    }

    pub async fn delete_ref(&self, repo: &RepoRef, name: &str) -> Result<(), GitHubError> {
        self.send::<()>(
            &format!("delete ref {name} in {repo}"),
            Method::DELETE,
            &format!(
                "/repos/{}/{}/git/refs/{}",
                repo.owner,
                repo.name,
                encode_path(name)
            ),
            None,
        )
        .await
        .map(|_| ())
    }

    /// Stores `bytes` as a blob; returns its sha.
    pub async fn create_blob(&self, repo: &RepoRef, bytes: &[u8]) -> Result<String, GitHubError> {
        let blob: ShaRef = self
            .call(
                &format!("create blob in {repo}"),
                Method::POST,
                &format!("/repos/{}/{}/git/blobs", repo.owner, repo.name),
                Some(&json!({ "content": B64.encode(bytes), "encoding": "base64" })),
            )
            .await?;
        Ok(blob.sha)
    }

    pub async fn create_tree(
        &self,
        repo: &RepoRef,
        base_tree: Option<&str>,
        entries: &[TreeEntry],
    ) -> Result<Tree, GitHubError> {
        let mut body = json!({ "tree": entries });
        if let Some(base) = base_tree {
            body["base_tree"] = json!(base);
        }
        self.call(
            &format!("create tree in {repo}"),
            Method::POST,
            &format!("/repos/{}/{}/git/trees", repo.owner, repo.name),
            Some(&body),
        )
        .await
    }

    /// The whole tree of `sha` (a tree or commit sha), recursively.
    pub async fn tree_recursive(&self, repo: &RepoRef, sha: &str) -> Result<Tree, GitHubError> {
        self.call::<_, ()>(
            &format!("get tree {sha} in {repo}"),
            Method::GET,
            &format!(
                "/repos/{}/{}/git/trees/{sha}?recursive=1",
                repo.owner, repo.name
            ),
            None,
        )
        .await
    }

    /// A blob's bytes.
    pub async fn blob(&self, repo: &RepoRef, sha: &str) -> Result<Vec<u8>, GitHubError> {
        #[derive(serde::Deserialize)]
        struct Blob {
            content: String,
            encoding: String,
        }
        let op = format!("get blob {sha} in {repo}");
        let blob: Blob = self
            .call::<_, ()>(
                &op,
                Method::GET,
                &format!("/repos/{}/{}/git/blobs/{sha}", repo.owner, repo.name),
                None,
            )
            .await?;
        decode_content(&op, &blob.content, &blob.encoding)
    }

    pub async fn create_commit(
        &self,
        repo: &RepoRef,
        message: &str,
        tree: &str,
        parents: &[String],
    ) -> Result<GitCommit, GitHubError> {
        self.call(
            &format!("create commit in {repo}"),
            Method::POST,
            &format!("/repos/{}/{}/git/commits", repo.owner, repo.name),
            Some(&json!({ "message": message, "tree": tree, "parents": parents })),
        )
        .await
    }

    pub async fn git_commit(&self, repo: &RepoRef, sha: &str) -> Result<GitCommit, GitHubError> {
        self.call::<_, ()>(
            &format!("get commit {sha} in {repo}"),
            Method::GET,
            &format!("/repos/{}/{}/git/commits/{sha}", repo.owner, repo.name),
            None,
        )
        .await
    }

    /// A file at `reference` (branch, tag or sha), or `None` when absent.
    pub async fn file(
        &self,
        repo: &RepoRef,
        path: &str,
        reference: &str,
    ) -> Result<Option<FileContent>, GitHubError> {
        #[derive(serde::Deserialize)]
        struct Content {
            path: String,
            sha: String,
            #[serde(default)]
            content: String,
            #[serde(default)]
            encoding: String,
        }
        let op = format!("get {path}@{reference} in {repo}");
        let content: Option<Content> = self
            .get_optional(
                &op,
                &format!(
                    "/repos/{}/{}/contents/{}?ref={}",
                    repo.owner,
                    repo.name,
                    encode_path(path),
                    encode_query(reference)
                ),
            )
            .await?;
        content
            .map(|c| {
                Ok(FileContent {
                    bytes: decode_content(&op, &c.content, &c.encoding)?,
                    path: c.path,
                    sha: c.sha,
                })
            })
            .transpose()
    }

    /// Commits and changed files (with patches) between two commits.
    pub async fn compare(
        &self,
        repo: &RepoRef,
        base: &str,
        head: &str,
    ) -> Result<Comparison, GitHubError> {
        self.call::<_, ()>(
            &format!("compare {base}...{head} in {repo}"),
            Method::GET,
            &format!(
                "/repos/{}/{}/compare/{}...{}?per_page=100",
                repo.owner,
                repo.name,
                encode_segment(base),
                encode_segment(head)
            ),
            None,
        )
        .await
    }

    // ---- pull requests ----------------------------------------------------------------

    /// Pull requests; `head` is `owner:branch`, `state` `open`/`closed`/`all`.
    pub async fn list_pulls(
        &self,
        repo: &RepoRef,
        state: &str,
        head: Option<&str>,
    ) -> Result<Vec<PullRequest>, GitHubError> {
        let mut route = format!(
            "/repos/{}/{}/pulls?state={state}&per_page=100",
            repo.owner, repo.name
        );
        if let Some(head) = head {
            route.push_str("&head=");
            route.push_str(&encode_query(head));
        }
        self.paginate(&format!("list pull requests in {repo}"), &route, None)
            .await
    }

    pub async fn create_pull(
        &self,
        repo: &RepoRef,
        pull: &NewPullRequest,
    ) -> Result<PullRequest, GitHubError> {
        self.call(
            &format!("open pull request {} in {repo}", pull.head),
            Method::POST,
            &format!("/repos/{}/{}/pulls", repo.owner, repo.name),
            Some(pull),
        )
        .await
    }

    pub async fn pull(&self, repo: &RepoRef, number: u64) -> Result<PullRequest, GitHubError> {
        self.call::<_, ()>(
            &format!("get pull request {repo}#{number}"),
            Method::GET,
            &format!("/repos/{}/{}/pulls/{number}", repo.owner, repo.name),
            None,
        )
        .await
    }

    pub async fn update_pull(
        &self,
        repo: &RepoRef,
        number: u64,
        patch: &PullRequestPatch,
    ) -> Result<PullRequest, GitHubError> {
        self.call(
            &format!("update pull request {repo}#{number}"),
            Method::PATCH,
            &format!("/repos/{}/{}/pulls/{number}", repo.owner, repo.name),
            Some(patch),
        )
        .await
    }

    /// Files a pull request changes, with patches (every page, up to GitHub's 3,000).
    pub async fn pull_files(
        &self,
        repo: &RepoRef,
        number: u64,
    ) -> Result<Vec<ChangedFile>, GitHubError> {
        self.paginate(
            &format!("list files of {repo}#{number}"),
            &format!(
                "/repos/{}/{}/pulls/{number}/files?per_page=100",
                repo.owner, repo.name
            ),
            None,
        )
        .await
    }

    pub async fn request_reviewers(
        &self,
        repo: &RepoRef,
        number: u64,
        reviewers: &[String],
        team_reviewers: &[String],
    ) -> Result<(), GitHubError> {
        self.send(
            &format!("request reviewers on {repo}#{number}"),
            Method::POST,
            &format!(
                "/repos/{}/{}/pulls/{number}/requested_reviewers",
                repo.owner, repo.name
            ),
            Some(&json!({ "reviewers": reviewers, "team_reviewers": team_reviewers })),
        )
        .await
        .map(|_| ())
    }

    // ---- checks -------------------------------------------------------------------------

    pub async fn create_check_run(
        &self,
        repo: &RepoRef,
        run: &NewCheckRun,
    ) -> Result<CheckRun, GitHubError> {
        self.call(
            &format!("create check run `{}` in {repo}", run.name),
            Method::POST,
            &format!("/repos/{}/{}/check-runs", repo.owner, repo.name),
            Some(run),
        )
        .await
    }

    pub async fn update_check_run(
        &self,
        repo: &RepoRef,
        id: u64,
        patch: &CheckRunPatch,
    ) -> Result<CheckRun, GitHubError> {
        self.call(
            &format!("update check run {id} in {repo}"),
            Method::PATCH,
            &format!("/repos/{}/{}/check-runs/{id}", repo.owner, repo.name),
            Some(patch),
        )
        .await
    }

    pub async fn check_runs_for_ref(
        &self,
        repo: &RepoRef,
        reference: &str,
    ) -> Result<Vec<CheckRun>, GitHubError> {
        self.paginate(
            &format!("list check runs for {reference} in {repo}"),
            &format!(
                "/repos/{}/{}/commits/{}/check-runs?per_page=100",
                repo.owner,
                repo.name,
                encode_segment(reference)
            ),
            Some("check_runs"),
        )
        .await
    }

    // ---- releases -----------------------------------------------------------------------

    pub async fn releases(&self, repo: &RepoRef) -> Result<Vec<Release>, GitHubError> {
        self.paginate(
            &format!("list releases of {repo}"),
            &format!("/repos/{}/{}/releases?per_page=100", repo.owner, repo.name),
            None,
        )
        .await
    }
}

fn decode_content(op: &str, content: &str, encoding: &str) -> Result<Vec<u8>, GitHubError> {
    match encoding {
        "base64" => {
            let compact: String = content.chars().filter(|c| !c.is_whitespace()).collect();
            B64.decode(compact).map_err(|e| GitHubError::Decode {
                op: op.to_string(),
                message: format!("bad base64 content: {e}"),
            })
        }
        "utf-8" | "" => Ok(content.as_bytes().to_vec()),
        other => Err(GitHubError::Decode {
            op: op.to_string(),
            message: format!("unknown content encoding `{other}`"),
        }),
    }
}
