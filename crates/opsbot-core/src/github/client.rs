//! The client itself (feature `github`): octocrab underneath, bounded retries, errors
//! that name the call, pagination, a request counter.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, Method, Request};
use http_body_util::BodyExt;
use octocrab::Octocrab;
use secrecy::ExposeSecret;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::retry::{Decision, Failure};
use super::{Credentials, GitHubSettings, RetryPolicy, SettingsError, retry};

/// Sent with every request, as GitHub recommends.
const API_VERSION: &str = "2022-11-28";
/// Hard cap on pages followed by one listing (100 items a page).
const MAX_PAGES: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    #[error("{op}: GitHub answered {status}: {message}")]
    Api {
        op: String,
        status: u16,
        message: String,
    },
    #[error("{op}: gave up after {attempts} attempts in {elapsed_ms} ms; last error: {last}")]
    Exhausted {
        op: String,
        attempts: u32,
        elapsed_ms: u128,
        last: String,
        last_status: Option<u16>,
    },
    #[error(
        "{op}: rate limited; GitHub asks to wait {wait_secs} s, longer than the retry budget allows"
    )]
    RateLimited { op: String, wait_secs: u64 },
    #[error("{op}: unexpected response from GitHub: {message}")]
    Decode { op: String, message: String },
    #[error("GitHub App authentication: {0}")]
    Auth(String),
    #[error("{0}")]
    Settings(#[from] SettingsError),
    #[error("building the GitHub client: {0}")]
    Client(String),
}

impl GitHubError {
    /// The HTTP status of the (last) error response, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            GitHubError::Api { status, .. } => Some(*status),
            GitHubError::Exhausted { last_status, .. } => *last_status,
            GitHubError::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

/// A GitHub API client bound to one identity (token or App installation).
#[derive(Clone)]
pub struct GitHub {
    /// Shared, not cloned: octocrab deep-copies its installation-token cache on clone, and
    /// every copy would mint its own token.
    crab: Arc<Octocrab>,
    retry: RetryPolicy,
    api_url: String,
    requests: Arc<AtomicU64>,
    /// Present when authenticated as an App: used to mint per-installation clients.
    app: Option<Octocrab>,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHub")
            .field("api_url", &self.api_url)
            .field("app", &self.app.is_some())
            .finish_non_exhaustive()
    }
}

/// A raw response: status, headers and body bytes.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl RawResponse {
    /// The route of the next page (`Link: rel="next"`), for listings a caller pages through
    /// itself (cursor pagination that stops early); [`GitHub::paginate`] uses the same.
    pub fn next_page(&self) -> Option<String> {
        next_link(&self.headers).map(|url| relative_route(&url))
    }
}

impl GitHub {
    /// Builds a client from settings. As an App, the installation is the one given in the
    /// settings, or else the one installed on `settings.repository` (one API call).
    pub async fn connect(settings: &GitHubSettings) -> Result<GitHub, GitHubError> {
        match &settings.credentials {
            Credentials::App {
                installation_id, ..
            } => {
                let app = Self::app_client(settings)?;
                let id = match installation_id {
                    Some(id) => *id,
                    None => {
                        let repo = settings.require_repository()?;
                        app.repo_installation_id(repo).await?
                    }
                };
                app.for_installation(id)
            }
            _ => Self::build(settings),
        }
    }

    /// A client authenticated with a token (or anonymous), as the settings say. For App
    /// credentials this is the App-level client (JWT); see [`GitHub::connect`].
    pub fn build(settings: &GitHubSettings) -> Result<GitHub, GitHubError> {
        match &settings.credentials {
            Credentials::App { .. } => Self::app_client(settings),
            Credentials::Token(token) => {
                let crab = Self::builder(settings)?
                    .personal_token(token.expose_secret().to_string())
                    .build()
                    .map_err(|e| GitHubError::Client(e.to_string()))?;
                Ok(Self::wrap(crab, settings, None))
            }
            Credentials::Anonymous => {
                let crab = Self::builder(settings)?
                    .build()
                    .map_err(|e| GitHubError::Client(e.to_string()))?;
                Ok(Self::wrap(crab, settings, None))
            }
        }
    }

    /// The App-level client, authenticated with a JWT (for `/app/...` endpoints and for
    /// minting installation clients).
    pub fn app_client(settings: &GitHubSettings) -> Result<GitHub, GitHubError> {
        let Credentials::App {
            app_id,
            private_key_pem,
            ..
        } = &settings.credentials
        else {
            return Err(GitHubError::Auth("no App credentials configured".into()));
        };
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem.expose_secret().as_bytes())
                .map_err(|e| {
                    GitHubError::Auth(format!(
                        "GITHUB_APP_PRIVATE_KEY is not a usable RSA key: {e}"
                    ))
                })?;
        let crab = Self::builder(settings)?
            .app(octocrab::models::AppId(*app_id), key)
            .build()
            .map_err(|e| GitHubError::Client(e.to_string()))?;
        let mut gh = Self::wrap(crab.clone(), settings, None);
        gh.app = Some(crab);
        Ok(gh)
    }

    /// A client acting as installation `id` of this App. Installation tokens are fetched
    /// (and refreshed before expiry) by octocrab.
    pub fn for_installation(&self, id: u64) -> Result<GitHub, GitHubError> {
        let app = self
            .app
            .as_ref()
            .ok_or_else(|| GitHubError::Auth("not authenticated as an App".into()))?;
        let crab = app
            .installation(octocrab::models::InstallationId(id))
            .map_err(|e| GitHubError::Auth(e.to_string()))?;
        Ok(GitHub {
            crab: Arc::new(crab),
            retry: self.retry.clone(),
            api_url: self.api_url.clone(),
            requests: self.requests.clone(),
            app: self.app.clone(),
        })
    }

    fn builder(
        settings: &GitHubSettings,
    ) -> Result<
        octocrab::OctocrabBuilder<
            octocrab::NoSvc,
            octocrab::DefaultOctocrabBuilderConfig,
            octocrab::NoAuth,
            octocrab::NotLayerReady,
        >,
        GitHubError,
    > {
        install_crypto_provider();
        Octocrab::builder()
            .base_uri(settings.api_url.as_str())
            .map_err(|e| GitHubError::Client(format!("GITHUB_API_URL `{}`: {e}", settings.api_url)))
            // Our own policy (bounded, with backoff) replaces octocrab's.
            .map(|b| {
                b.add_retry_config(octocrab::service::middleware::retry::RetryConfig::None)
                    .set_connect_timeout(Some(Duration::from_secs(10)))
                    .set_read_timeout(Some(Duration::from_secs(30)))
            })
    }

    fn wrap(crab: Octocrab, settings: &GitHubSettings, app: Option<Octocrab>) -> GitHub {
        GitHub {
            crab: Arc::new(crab),
            retry: settings.retry.clone(),
            api_url: settings.api_url.clone(),
            requests: Arc::new(AtomicU64::new(0)),
            app,
        }
    }

    /// The same identity with another retry policy: e.g. a single attempt for a write that
    /// is not idempotent (a create GitHub applied but answered 502 for must not be sent
    /// again blindly; the caller looks first).
    pub fn with_retry(&self, retry: RetryPolicy) -> GitHub {
        GitHub {
            retry,
            ..self.clone()
        }
    }

    /// The retry policy of this client.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The API base URL this client talks to.
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// HTTP requests sent so far by this client and its clones (retries included).
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The underlying octocrab client, for endpoints this crate does not wrap yet.
    pub fn octocrab(&self) -> &Octocrab {
        &self.crab
    }

    /// One API call with the retry policy applied; `route` is relative (`/repos/...`).
    pub async fn send<B: Serialize + ?Sized>(
        &self,
        op: &str,
        method: Method,
        route: &str,
        body: Option<&B>,
    ) -> Result<RawResponse, GitHubError> {
        let body = match body {
            Some(b) => Some(serde_json::to_string(b).map_err(|e| GitHubError::Decode {
                op: op.to_string(),
                message: format!("cannot encode request: {e}"),
            })?),
            None => None,
        };
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = self.attempt(&method, route, body.clone()).await;
            // `last` is what the error reports; `message` GitHub's own words when it answered.
            let (failure, message, last_status) = match outcome {
                Ok(resp) if (200..300).contains(&resp.status) => return Ok(resp),
                Ok(resp) => {
                    let message = error_message(&resp.body, resp.status);
                    let failure = Failure::from_status(
                        resp.status,
                        &message,
                        header_u64(&resp.headers, "retry-after"),
                        header_u64(&resp.headers, "x-ratelimit-remaining"),
                        header_u64(&resp.headers, "x-ratelimit-reset"),
                    );
                    (failure, message, Some(resp.status))
                }
                Err(AttemptError::Transport(message)) => (Failure::Transport, message, None),
                // octocrab's own installation-token request: status and message only.
                Err(AttemptError::Status { status, message }) => (
                    Failure::from_status(status, &message, None, None, None),
                    message,
                    Some(status),
                ),
            };
            let last = match last_status {
                Some(status) => format!("{status}: {message}"),
                None => message.clone(),
            };
            let now_unix = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            match retry::decide(
                &self.retry,
                &failure,
                attempt,
                started.elapsed(),
                now_unix,
                jitter(),
            ) {
                Decision::RetryAfter(wait) => {
                    tracing::warn!(op, attempt, wait_ms = wait.as_millis() as u64, error = %last, "GitHub call failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                Decision::GiveUp => {
                    return Err(match last_status {
                        Some(status) => GitHubError::Api {
                            op: op.to_string(),
                            status,
                            message,
                        },
                        None => GitHubError::Exhausted {
                            op: op.to_string(),
                            attempts: attempt,
                            elapsed_ms: started.elapsed().as_millis(),
                            last,
                            last_status,
                        },
                    });
                }
                Decision::Exhausted => {
                    return Err(GitHubError::Exhausted {
                        op: op.to_string(),
                        attempts: attempt,
                        elapsed_ms: started.elapsed().as_millis(),
                        last,
                        last_status,
                    });
                }
                Decision::WaitTooLong(wait) => {
                    return Err(GitHubError::RateLimited {
                        op: op.to_string(),
                        wait_secs: wait.as_secs().max(1),
                    });
                }
            }
        }
    }

    async fn attempt(
        &self,
        method: &Method,
        route: &str,
        body: Option<String>,
    ) -> Result<RawResponse, AttemptError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let builder = Request::builder()
            .method(method.clone())
            .uri(route)
            .header(http::header::ACCEPT, "application/vnd.github+json")
            .header("x-github-api-version", API_VERSION)
            .header(
                http::header::USER_AGENT,
                concat!("opsbot/", env!("CARGO_PKG_VERSION")),
            );
        let request = match body {
            Some(body) => builder
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(octocrab::OctoBody::from(body)),
            None => builder
                .header(http::header::CONTENT_LENGTH, "0")
                .body(octocrab::OctoBody::from(())),
        }
        .map_err(|e| AttemptError::Transport(format!("bad request: {e}")))?;
        let response = self
            .crab
            .execute(request)
            .await
            .map_err(classify_octocrab)?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| AttemptError::Transport(format!("reading the response: {e}")))?
            .to_bytes();
        Ok(RawResponse {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    /// A call whose JSON answer is decoded into `T` (an empty body decodes as `null`).
    pub async fn call<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        op: &str,
        method: Method,
        route: &str,
        body: Option<&B>,
    ) -> Result<T, GitHubError> {
        let resp = self.send(op, method, route, body).await?;
        decode(op, &resp.body)
    }

    /// A GET that answers `None` on 404.
    pub async fn get_optional<T: DeserializeOwned>(
        &self,
        op: &str,
        route: &str,
    ) -> Result<Option<T>, GitHubError> {
        match self.send::<()>(op, Method::GET, route, None).await {
            Ok(resp) => decode(op, &resp.body).map(Some),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Follows `Link: rel="next"` across pages and concatenates the items. `route` should
    /// ask for `per_page=100`. `items` picks the array out of wrapped answers (search,
    /// check runs); `None` means the answer is the array.
    pub async fn paginate<T: DeserializeOwned>(
        &self,
        op: &str,
        route: &str,
        items: Option<&str>,
    ) -> Result<Vec<T>, GitHubError> {
        let mut out = Vec::new();
        let mut next = Some(route.to_string());
        let mut pages = 0;
        while let Some(route) = next.take() {
            pages += 1;
            let resp = self.send::<()>(op, Method::GET, &route, None).await?;
            let mut value: serde_json::Value = decode(op, &resp.body)?;
            if let Some(key) = items {
                value = value
                    .get_mut(key)
                    .map(serde_json::Value::take)
                    .ok_or_else(|| GitHubError::Decode {
                        op: op.to_string(),
                        message: format!("no `{key}` array in the answer"),
                    })?;
            }
            let page: Vec<T> = serde_json::from_value(value).map_err(|e| GitHubError::Decode {
                op: op.to_string(),
                message: e.to_string(),
            })?;
            out.extend(page);
            if pages < MAX_PAGES {
                next = resp.next_page();
            }
        }
        Ok(out)
    }
}

enum AttemptError {
    Transport(String),
    Status { status: u16, message: String },
}

fn classify_octocrab(err: octocrab::Error) -> AttemptError {
    match err {
        // Raised by octocrab itself while fetching an installation token.
        octocrab::Error::GitHub { source, .. } => AttemptError::Status {
            status: source.status_code.as_u16(),
            message: source.message,
        },
        other => AttemptError::Transport(flatten_error(&other)),
    }
}

fn flatten_error(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let s = cause.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = cause.source();
    }
    text
}

fn decode<T: DeserializeOwned>(op: &str, body: &[u8]) -> Result<T, GitHubError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"null"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| GitHubError::Decode {
        op: op.to_string(),
        message: e.to_string(),
    })
}

fn error_message(body: &[u8], status: u16) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        message: Option<String>,
        #[serde(default)]
        errors: Vec<serde_json::Value>,
    }
    match serde_json::from_slice::<Body>(body) {
        // "Validation Failed" says little; GitHub's `errors[]` say what (and which field).
        Ok(Body {
            message: Some(m),
            errors,
        }) if !errors.is_empty() => {
            let details: Vec<String> = errors
                .iter()
                .filter_map(|e| match e {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Object(o) => o
                        .get("message")
                        .and_then(|m| m.as_str())
                        .map(str::to_string)
                        .or_else(|| {
                            let get = |k: &str| o.get(k).and_then(|v| v.as_str()).unwrap_or("");
                            Some(format!(
                                "{} {} {}",
                                get("resource"),
                                get("field"),
                                get("code")
                            ))
                        }),
                    _ => None,
                })
                .collect();
            format!("{m}: {}", details.join("; "))
        }
        Ok(Body {
            message: Some(m), ..
        }) => m,
        _ => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                http::StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("error")
                    .to_string()
            } else {
                text.chars().take(200).collect()
            }
        }
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = headers.get(http::header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

/// Absolute next-page URLs are turned back into routes, so the auth header and the
/// base-URL prefix are applied exactly as for the first page.
fn relative_route(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(uri) => uri
            .path_and_query()
            .map_or_else(|| url.to_string(), |pq| pq.as_str().to_string()),
        Err(_) => url.to_string(),
    }
}

fn jitter() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1000) / 1000.0
}

/// rustls needs one process-wide crypto provider; several crates enable different ones.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Percent-encodes one path segment (a branch name, a file path component).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a query value.
pub fn encode_query(s: &str) -> String {
    encode_segment(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_link_is_found_and_made_relative() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::LINK,
            http::HeaderValue::from_static(
                "<https://ghe.local/api/v3/repos/a/b/issues?page=2&per_page=100>; rel=\"next\", <https://ghe.local/api/v3/repos/a/b/issues?page=5>; rel=\"last\"",
            ),
        );
        let next = next_link(&h).unwrap_or_default();
        assert_eq!(
            relative_route(&next),
            "/api/v3/repos/a/b/issues?page=2&per_page=100"
        );
        assert_eq!(next_link(&HeaderMap::new()), None);
        let resp = RawResponse {
            status: 200,
            headers: h,
            body: bytes::Bytes::new(),
        };
        assert_eq!(
            resp.next_page().as_deref(),
            Some("/api/v3/repos/a/b/issues?page=2&per_page=100")
        );
    }

    #[test]
    fn error_messages_prefer_githubs_text() {
        assert_eq!(
            error_message(br#"{"message":"Not Found"}"#, 404),
            "Not Found"
        );
        assert_eq!(error_message(b"", 502), "Bad Gateway");
        assert_eq!(
            error_message(
                br#"{"message":"Validation Failed","errors":[{"resource":"Issue","code":"custom","field":"body","message":"body is too long (maximum is 65536 characters)"}]}"#,
                422
            ),
            "Validation Failed: body is too long (maximum is 65536 characters)"
        );
        assert_eq!(
            error_message(b"<html>oops</html>", 502),
            "<html>oops</html>"
        );
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(encode_segment("opsbot/tf update"), "opsbot%2Ftf%20update");
    }
}
