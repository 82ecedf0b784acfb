//! A stateful fake of the GitHub REST API, served by axum on 127.0.0.1, that the real
//! octocrab-based client talks to over HTTP.
//!
//! It remembers issues, comments, labels, search (with a configurable index lag, as
//! GitHub's has), git refs, blobs, trees, commits, contents, compare, pull requests,
//! check runs, releases and App installation tokens (the App's RS256 JWT is verified
//! against its public key). Tests can inject failures (the next N calls to a route answer
//! 502, or 403 with `Retry-After`, or are carried out and then answered 502) and read back
//! every request it received. Bodies over 65,536 characters are refused with GitHub's own
//! 422 ([`limits`]).
//!
//! Fidelity notes: issues and pull requests share one number space and the issues list
//! includes pull requests, as on GitHub; creating an issue with an unknown label creates
//! the label; a second open PR for the same head and base is refused with 422.

// Handlers return `Result<_, Response>` so an early error is one `?` away.
#![allow(clippy::result_large_err)]

pub mod deliveries;
pub mod limits;
mod releases;
mod routes;
pub mod seed;
pub mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub use state::{FailureRule, RecordedRequest};
use state::{Repo, now_rfc3339};

/// The token tests hand to the client (`GITHUB_TOKEN`).
pub const TEST_TOKEN: &str = "ghp_fakeTestToken000000000000000000000000";

/// The App key pair of `tests/fixtures/github/` (a throwaway key made for these tests).
pub const TEST_APP_PRIVATE_KEY: &str = include_str!("../../fixtures/github/app-test-key.pem");
pub const TEST_APP_PUBLIC_KEY: &str = include_str!("../../fixtures/github/app-test-key.pub.pem");

#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// Path prefix, e.g. `/api/v3` to behave like GitHub Enterprise Server.
    pub prefix: String,
    /// How long a new issue stays invisible to search.
    pub search_lag: Duration,
    /// An App: (app id, public key PEM).
    pub app: Option<(u64, String)>,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            prefix: String::new(),
            search_lag: Duration::ZERO,
            app: Some((4242, TEST_APP_PUBLIC_KEY.to_string())),
        }
    }
}

pub(crate) struct Inner {
    pub opts: FakeOptions,
    pub base_url: String,
    pub repos: std::collections::BTreeMap<String, Repo>,
    pub requests: Vec<RecordedRequest>,
    pub failures: Vec<FailureRule>,
    /// installation token → installation id
    pub installation_tokens: std::collections::HashMap<String, u64>,
    /// installation id → repos it may access
    pub installations: std::collections::BTreeMap<u64, Vec<String>>,
    pub next_id: u64,
    /// The App's webhook and its deliveries ([`deliveries`]).
    pub hook: deliveries::Hook,
}

impl Inner {
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// A running fake. Dropping it stops the server.
pub struct FakeGitHub {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    _server: crate::serve::Served,
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Caller {
    Token,
    Installation(u64),
    App,
}

impl FakeGitHub {
    /// Starts with default options (no prefix, no search lag, App 4242 with the test key).
    pub async fn start() -> FakeGitHub {
        Self::start_with(FakeOptions::default()).await
    }

    pub async fn start_with(opts: FakeOptions) -> FakeGitHub {
        Self::serve(opts, "127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("fake GitHub: {e}"))
    }

    /// Binds `addr` (e.g. `127.0.0.1:0`) and serves until dropped.
    pub async fn serve(opts: FakeOptions, addr: &str) -> std::io::Result<FakeGitHub> {
        let inner = Arc::new(Mutex::new(Inner {
            opts,
            base_url: String::new(),
            repos: Default::default(),
            requests: Vec::new(),
            failures: Vec::new(),
            installation_tokens: Default::default(),
            installations: Default::default(),
            next_id: 1000,
            hook: Default::default(),
        }));
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let server = crate::serve::try_serve(app, addr).await?;
        {
            let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
            g.base_url = format!("http://{}{}", server.addr, g.opts.prefix);
        }
        Ok(FakeGitHub {
            addr: server.addr,
            inner,
            _server: server,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `GITHUB_API_URL` for the client (prefix included).
    pub fn url(&self) -> String {
        self.lock().base_url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Creates `owner/name` with one commit on `main` holding a README.
    pub fn create_repo(&self, full_name: &str) {
        let mut g = self.lock();
        let id = g.next_id();
        let (owner, name) = full_name.split_once('/').unwrap_or((full_name, ""));
        let mut repo = Repo {
            id,
            owner: owner.to_string(),
            name: name.to_string(),
            default_branch: "main".to_string(),
            next_number: 1,
            ..Default::default()
        };
        repo.commit_files(
            "main",
            &[("README.md", "# test repository\n")],
            "Initial commit",
        );
        g.repos.insert(full_name.to_string(), repo);
    }

    /// Commits files on `branch` of `repo`; returns the new commit sha.
    pub fn commit_files(
        &self,
        repo: &str,
        branch: &str,
        files: &[(&str, &str)],
        message: &str,
    ) -> String {
        let mut g = self.lock();
        let r = g
            .repos
            .get_mut(repo)
            .unwrap_or_else(|| panic!("no repo {repo}"));
        r.commit_files(branch, files, message)
    }

    /// Installs the App on `repos` as installation `id`.
    pub fn add_installation(&self, id: u64, repos: &[&str]) {
        self.lock()
            .installations
            .insert(id, repos.iter().map(|r| r.to_string()).collect());
    }

    pub fn add_release(&self, repo: &str, tag: &str, prerelease: bool) {
        let mut g = self.lock();
        let id = g.next_id();
        let base = g.base_url.clone();
        let r = g
            .repos
            .get_mut(repo)
            .unwrap_or_else(|| panic!("no repo {repo}"));
        r.releases.insert(
            0,
            json!({
                "id": id, "tag_name": tag, "name": tag, "prerelease": prerelease, "draft": false,
                "html_url": format!("{base}/{repo}/releases/tag/{tag}"),
                "published_at": now_rfc3339(),
            }),
        );
    }

    pub fn set_search_lag(&self, lag: Duration) {
        self.lock().opts.search_lag = lag;
    }

    pub fn fail_next(&self, rule: FailureRule) {
        self.lock().failures.push(rule);
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// Issues (not pull requests) of `repo`, with their comments.
    pub fn issues(&self, repo: &str) -> Vec<FakeIssue> {
        let g = self.lock();
        let Some(r) = g.repos.get(repo) else {
            return Vec::new();
        };
        r.issues
            .values()
            .filter(|i| !i.is_pull)
            .map(|i| FakeIssue {
                number: i.number,
                title: i.title.clone(),
                body: i.body.clone().unwrap_or_default(),
                state: i.state.clone(),
                state_reason: i.state_reason.clone(),
                labels: i.labels.clone(),
                assignees: i.assignees.clone(),
                comments: r
                    .comments
                    .get(&i.number)
                    .map(|cs| cs.iter().map(|c| c.body.clone()).collect())
                    .unwrap_or_default(),
            })
            .collect()
    }

    pub fn pulls(&self, repo: &str) -> Vec<FakePull> {
        let g = self.lock();
        let Some(r) = g.repos.get(repo) else {
            return Vec::new();
        };
        r.pulls
            .values()
            .filter_map(|p| {
                let i = r.issues.get(&p.number)?;
                Some(FakePull {
                    number: p.number,
                    title: i.title.clone(),
                    body: i.body.clone().unwrap_or_default(),
                    state: i.state.clone(),
                    head: p.head_ref.clone(),
                    base: p.base_ref.clone(),
                    labels: i.labels.clone(),
                    requested_reviewers: p.requested_reviewers.clone(),
                    comments: r
                        .comments
                        .get(&p.number)
                        .map(|cs| cs.iter().map(|c| c.body.clone()).collect())
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    pub fn check_runs(&self, repo: &str) -> Vec<FakeCheckRun> {
        let g = self.lock();
        let Some(r) = g.repos.get(repo) else {
            return Vec::new();
        };
        r.check_runs
            .iter()
            .map(|c| FakeCheckRun {
                id: c.id,
                name: c.name.clone(),
                head_sha: c.head_sha.clone(),
                status: c.status.clone(),
                conclusion: c.conclusion.clone(),
                title: c.title.clone(),
                summary: c.summary.clone(),
                annotations: c.annotations.clone(),
                annotation_batches: c.annotation_batches.clone(),
                external_id: c.external_id.clone(),
            })
            .collect()
    }

    /// Branch names of `repo`.
    pub fn branches(&self, repo: &str) -> Vec<String> {
        let g = self.lock();
        g.repos
            .get(repo)
            .map(|r| {
                r.refs
                    .keys()
                    .filter_map(|k| k.strip_prefix("refs/heads/").map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A file's text at a branch or sha.
    pub fn file(&self, repo: &str, reference: &str, path: &str) -> Option<String> {
        let g = self.lock();
        let r = g.repos.get(repo)?;
        let commit = r.resolve(reference)?;
        let (_, sha) = r.files_at(&commit)?.get(path)?;
        r.blobs
            .get(sha)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// Commit message of the tip of `reference`.
    pub fn head_message(&self, repo: &str, reference: &str) -> Option<String> {
        let g = self.lock();
        let r = g.repos.get(repo)?;
        let c = r.resolve(reference)?;
        r.commits.get(&c).map(|c| c.message.clone())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FakeIssue {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub state: String,
    pub state_reason: Option<String>,
    pub labels: Vec<String>,
    pub assignees: Vec<String>,
    pub comments: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FakePull {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub state: String,
    pub head: String,
    pub base: String,
    pub labels: Vec<String>,
    pub requested_reviewers: Vec<String>,
    pub comments: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FakeCheckRun {
    pub id: u64,
    pub name: String,
    pub head_sha: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub title: Option<String>,
    pub summary: Option<String>,
    pub annotations: Vec<Value>,
    pub annotation_batches: Vec<usize>,
    pub external_id: Option<String>,
}

pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({ "message": message, "documentation_url": "https://docs.github.com/rest" })
            .to_string(),
    )
        .into_response()
}

async fn handle(
    AxumState(inner): AxumState<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
    let full = uri
        .path_and_query()
        .map_or(uri.path(), |pq| pq.as_str())
        .to_string();
    let response = respond(&mut g, &method, &uri, &headers, &body);
    g.requests.push(RecordedRequest {
        method: method.to_string(),
        path: full,
        status: response.status().as_u16(),
    });
    response
}

fn respond(
    g: &mut Inner,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let path = uri.path();
    let Some(path) = path.strip_prefix(g.opts.prefix.as_str()) else {
        return error(StatusCode::NOT_FOUND, "Not Found (outside the API prefix)");
    };
    let path = path.to_string();

    // Injected failures come first, as a proxy in front of GitHub would answer; an
    // `apply_first` rule lets GitHub carry the request out and then answers with it.
    let mut applied_then: Option<FailureRule> = None;
    if let Some(rule) = g.failures.iter_mut().find(|r| {
        r.remaining > 0
            && path.contains(&r.path_contains)
            && r.method.as_deref().is_none_or(|m| m == method.as_str())
    }) {
        rule.remaining -= 1;
        if rule.apply_first {
            applied_then = Some(rule.clone());
        } else {
            return failure_response(rule);
        }
    }
    let response = respond_for_real(g, method, uri, headers, body, &path);
    match applied_then {
        Some(rule) => failure_response(&rule),
        None => response,
    }
}

fn failure_response(rule: &FailureRule) -> Response {
    {
        let mut resp = if rule.status == 502 {
            (StatusCode::BAD_GATEWAY, rule.message.clone()).into_response()
        } else {
            error(
                StatusCode::from_u16(rule.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                &rule.message,
            )
        };
        if let Some(secs) = rule.retry_after
            && let Ok(v) = secs.to_string().parse()
        {
            resp.headers_mut().insert("retry-after", v);
        }
        resp
    }
}

fn respond_for_real(
    g: &mut Inner,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    path: &str,
) -> Response {
    let caller = match authenticate(g, headers) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(|s| percent_decode(s, false))
        .collect();
    let query = parse_query(uri.query().unwrap_or(""));
    let json_body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("Problems parsing JSON: {e}"),
                );
            }
        }
    };
    if let Some(refused) = limits::check_body(method, &segments, &json_body) {
        return refused;
    }
    if let Some(resp) = releases::route(g, &caller, method, &segments, headers) {
        return resp;
    }
    routes::dispatch(g, &caller, method, &segments, &query, json_body)
}

fn authenticate(g: &Inner, headers: &HeaderMap) -> Result<Caller, Response> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let token = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("token "))
        .unwrap_or("")
        .trim();
    if token.is_empty() {
        return Err(error(StatusCode::UNAUTHORIZED, "Requires authentication"));
    }
    if token == TEST_TOKEN {
        return Ok(Caller::Token);
    }
    if let Some(id) = g.installation_tokens.get(token) {
        return Ok(Caller::Installation(*id));
    }
    if token.matches('.').count() == 2
        && let Some((app_id, public_pem)) = &g.opts.app
    {
        return verify_app_jwt(token, *app_id, public_pem).map(|()| Caller::App);
    }
    Err(error(StatusCode::UNAUTHORIZED, "Bad credentials"))
}

fn verify_app_jwt(token: &str, app_id: u64, public_pem: &str) -> Result<(), Response> {
    #[derive(serde::Deserialize)]
    struct Claims {
        iss: Value,
    }
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(public_pem.as_bytes()).map_err(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("fake: bad App public key: {e}"),
        )
    })?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    // GitHub Apps send `iss` as a number; it is checked below by hand.
    validation.set_required_spec_claims(&["exp", "iat"]);
    validation.leeway = 60;
    let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| {
        error(
            StatusCode::UNAUTHORIZED,
            &format!("'Issued at' claim or signature invalid: {e}"),
        )
    })?;
    let iss = match &data.claims.iss {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if iss != app_id.to_string() {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "JWT issuer is not this App",
        ));
    }
    Ok(())
}

fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if plus_is_space && bytes[i] == b'+' {
            b' '
        } else {
            bytes[i]
        });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> std::collections::HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}
