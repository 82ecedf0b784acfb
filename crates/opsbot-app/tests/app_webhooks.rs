//! End to end: webhook payloads shaped as GitHub documents them, signed with a test
//! secret, are posted over HTTP to the App server running in-process; the fake GitHub
//! (tests/) authenticates the App (JWT → installation token), serves compare / pull request
//! files / contents, and records the check run and its annotation batches.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{INSTALLATION, NULL_SHA, REPO, SECRET, aws_key};
use opsbot_app::signature::sign;
use opsbot_app::{AppConfig, AppState, Mode, ServerHandle};
use opsbot_core::github::models::NewPullRequest;
use opsbot_core::github::{Credentials, GitHub, GitHubSettings, RepoRef};
use opsbot_tests::fake_github::{FakeCheckRun, FakeGitHub, TEST_TOKEN};
use secrecy::SecretString;
use serde_json::{Value, json};

// ---- planted secrets, built at run time ----------------------------------------------------

/// A GitHub classic token shape (`ghp_` + 36 alphanumerics).
fn github_token(seed: u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut x = seed.wrapping_add(0x1234_5678_9ABC_DEF1);
    let mut body = String::new();
    for _ in 0..36 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        body.push(ALPHABET[(x % ALPHABET.len() as u64) as usize] as char);
    }
    format!("ghp_{body}")
}

// ---- harness -------------------------------------------------------------------------------

struct Harness {
    fake: FakeGitHub,
    state: AppState,
    server: Option<ServerHandle>,
    http: reqwest::Client,
}

fn settings(fake: &FakeGitHub) -> GitHubSettings {
    common::settings_with_budget(fake, Duration::from_secs(5))
}

/// A token client, to set up branches and pull requests in the fake like a developer would.
fn developer(fake: &FakeGitHub) -> GitHub {
    let mut s = settings(fake);
    s.credentials = Credentials::Token(SecretString::from(TEST_TOKEN));
    GitHub::build(&s).unwrap()
}

async fn start_with(mode: Mode) -> Harness {
    let fake = common::fake_with_repo().await;
    let mut config = AppConfig::new(SecretString::from(SECRET));
    config.mode = mode;
    let state = opsbot_app::app_state(config, &settings(&fake)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = opsbot_app::serve(listener, state.clone()).unwrap();
    Harness {
        fake,
        state,
        server: Some(server),
        http: reqwest::Client::new(),
    }
}

async fn start() -> Harness {
    start_with(Mode::Background).await
}

impl Harness {
    fn url(&self) -> String {
        format!("http://{}/webhook", self.server.as_ref().unwrap().addr())
    }

    async fn post_raw(
        &self,
        event: &str,
        delivery: &str,
        body: Vec<u8>,
        signature: Option<String>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .post(self.url())
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header("user-agent", "GitHub-Hookshot/abc123");
        if let Some(sig) = signature {
            req = req.header("x-hub-signature-256", sig);
        }
        let resp = req.body(body).send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// Posts `payload` signed with the test secret, as GitHub does.
    async fn deliver(&self, event: &str, delivery: &str, payload: &Value) -> (u16, Value) {
        let body = serde_json::to_vec(payload).unwrap();
        let sig = sign(SECRET.as_bytes(), &body);
        self.post_raw(event, delivery, body, Some(sig)).await
    }

    /// Waits (bounded) until every accepted scan is done, then returns the check runs.
    async fn settled_check_runs(&self) -> Vec<FakeCheckRun> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let runs = self.fake.check_runs(REPO);
            let busy = self.state.in_flight() > 0 || runs.iter().any(|r| r.status != "completed");
            if !busy {
                return runs;
            }
            assert!(Instant::now() < deadline, "scans did not finish: {runs:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

// ---- payloads, shaped as in GitHub's webhook documentation ---------------------------------

fn repository_json() -> Value {
    json!({
        "id": 123456, "node_id": "R_kgDOAAAAAQ", "name": "infra", "full_name": REPO, "private": true,
        "owner": { "name": "acme", "login": "acme", "id": 42, "type": "Organization" },
        "html_url": "https://github.com/acme/infra", "default_branch": "main",
        "master_branch": "main"
    })
}

fn installation_json() -> Value {
    json!({ "id": INSTALLATION, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNzc=" })
}

fn push_payload(git_ref: &str, before: &str, after: &str) -> Value {
    json!({
        "ref": git_ref,
        "before": before,
        "after": after,
        "created": before == NULL_SHA,
        "deleted": false,
        "forced": false,
        "base_ref": null,
        "compare": format!("https://github.com/{REPO}/compare/{}...{}", &before[..12], &after[..12]),
        "commits": [{
            "id": after, "tree_id": "t", "distinct": true, "message": "add config",
            "timestamp": "2025-01-01T00:00:00Z", "url": "https://github.com/x",
            "author": { "name": "Alice", "email": "alice@example.com", "username": "alice" },
            "committer": { "name": "Alice", "email": "alice@example.com", "username": "alice" },
            "added": ["config.py"], "removed": [], "modified": []
        }],
        "head_commit": { "id": after, "tree_id": "t", "message": "add config", "timestamp": "2025-01-01T00:00:00Z" },
        "repository": repository_json(),
        "pusher": { "name": "alice", "email": "alice@example.com" },
        "organization": { "login": "acme", "id": 42 },
        "sender": { "login": "alice", "id": 7, "type": "User" },
        "installation": installation_json()
    })
}

fn pull_request_payload(action: &str, number: u64, head_sha: &str, base_sha: &str) -> Value {
    json!({
        "action": action,
        "number": number,
        "pull_request": {
            "url": format!("https://api.github.com/repos/{REPO}/pulls/{number}"),
            "id": 1, "number": number, "state": "open", "locked": false, "title": "Add service",
            "user": { "login": "alice", "id": 7 }, "body": null, "draft": false,
            "head": { "label": "acme:feature", "ref": "feature", "sha": head_sha, "repo": repository_json() },
            "base": { "label": "acme:main", "ref": "main", "sha": base_sha, "repo": repository_json() },
            "merged": false, "commits": 1, "additions": 10, "deletions": 0, "changed_files": 1
        },
        "repository": repository_json(),
        "sender": { "login": "alice", "id": 7, "type": "User" },
        "installation": installation_json()
    })
}

fn check_run_rerequested_payload(head_sha: &str, before: &str) -> Value {
    json!({
        "action": "rerequested",
        "check_run": {
            "id": 4, "name": "opsbot / secrets", "head_sha": head_sha, "status": "completed",
            "conclusion": "failure", "external_id": "",
            "check_suite": {
                "id": 5, "head_branch": "main", "head_sha": head_sha,
                "before": before, "after": head_sha, "pull_requests": [],
                "status": "completed", "conclusion": "failure"
            },
            "app": { "id": 4242, "slug": "opsbot" }
        },
        "repository": repository_json(),
        "sender": { "login": "alice", "id": 7 },
        "installation": installation_json()
    })
}

fn annotation_lines(run: &FakeCheckRun) -> Vec<(String, u64)> {
    run.annotations
        .iter()
        .map(|a| {
            (
                a["path"].as_str().unwrap().to_owned(),
                a["start_line"].as_u64().unwrap(),
            )
        })
        .collect()
}

// ---- tests ---------------------------------------------------------------------------------

#[tokio::test]
async fn push_with_secrets_fails_the_check_with_one_annotation_per_finding() {
    let h = start().await;
    // A key already in the repository before the push is not in the added lines.
    let before = h.fake.commit_files(
        REPO,
        "main",
        &[("legacy.env", &format!("OLD_KEY={}\n", aws_key(1)))],
        "legacy",
    );
    let (k1, k2, tok) = (aws_key(2), aws_key(3), github_token(4));
    let config = format!(
        "import os\n\nAWS_ACCESS_KEY_ID = \"{k1}\"\nregion = \"eu-west-1\"\n\nbackup_key = '{k2}'\nGITHUB_TOKEN = \"{tok}\"\n"
    );
    let after = h.fake.commit_files(
        REPO,
        "main",
        &[
            ("app/config.py", &config),
            ("README.md", "# infra\n\nNothing secret here.\n"),
        ],
        "add config",
    );
    h.fake.clear_requests();

    let (status, body) = h
        .deliver(
            "push",
            "delivery-push-1",
            &push_payload("refs/heads/main", &before, &after),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "accepted");

    let runs = h.settled_check_runs().await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = &runs[0];
    assert_eq!(run.name, "opsbot / secrets");
    assert_eq!(run.head_sha, after);
    assert_eq!(run.conclusion.as_deref(), Some("failure"));
    assert_eq!(run.title.as_deref(), Some("3 secrets found"));
    assert_eq!(
        annotation_lines(run),
        vec![
            ("app/config.py".to_owned(), 3),
            ("app/config.py".to_owned(), 6),
            ("app/config.py".to_owned(), 7)
        ]
    );
    assert_eq!(run.annotation_batches, vec![3]);
    let rules: Vec<&str> = run
        .annotations
        .iter()
        .map(|a| a["message"].as_str().unwrap())
        .collect();
    assert!(
        rules[0].contains("aws-access-key-id") && rules[0].contains("`AKIA…`"),
        "{}",
        rules[0]
    );
    assert!(
        rules[2].contains("github-pat-classic") && rules[2].contains("`ghp_…`"),
        "{}",
        rules[2]
    );
    assert!(
        rules
            .iter()
            .all(|m| m.contains("opsbot:allow") && m.contains("rotate"))
    );
    assert!(
        run.annotations
            .iter()
            .all(|a| a["annotation_level"] == "failure")
    );

    // No secret in full anywhere in what GitHub received.
    let everything = format!("{:?}{:?}", run.annotations, run.summary);
    for s in [&k1, &k2, &tok, &aws_key(1)] {
        assert!(
            !everything.contains(s.as_str()),
            "secret leaked into the check run"
        );
    }
    // The API was used (no clone): token, check run, opsbot.toml lookup, compare, update.
    let paths: Vec<String> = h
        .fake
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("POST /app/installations/77/access_tokens")),
        "{paths:?}"
    );
    assert!(
        paths
            .iter()
            .any(|p| p.contains(&format!("/compare/{before}...{after}"))),
        "{paths:?}"
    );
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("PATCH /repos/acme/infra/check-runs/")),
        "{paths:?}"
    );
}

#[tokio::test]
async fn bad_or_missing_signature_is_401_and_does_no_work() {
    let h = start().await;
    let after = h
        .fake
        .commit_files(REPO, "main", &[("k.txt", &aws_key(9))], "k");
    h.fake.clear_requests();
    let body =
        serde_json::to_vec(&push_payload("refs/heads/main", &"a".repeat(40), &after)).unwrap();

    let wrong = sign(b"not-the-secret", &body);
    let (status, resp) = h.post_raw("push", "d-bad", body.clone(), Some(wrong)).await;
    assert_eq!(status, 401, "{resp}");
    let (status, _) = h.post_raw("push", "d-none", body.clone(), None).await;
    assert_eq!(status, 401);
    // Signed, then tampered with.
    let sig = sign(SECRET.as_bytes(), &body);
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let (status, _) = h.post_raw("push", "d-tampered", tampered, Some(sig)).await;
    assert_eq!(status, 401);
    // Not even JSON: refused on the signature, never parsed.
    let (status, _) = h
        .post_raw(
            "push",
            "d-garbage",
            b"{not json".to_vec(),
            Some("sha256=00".into()),
        )
        .await;
    assert_eq!(status, 401);

    assert_eq!(h.state.in_flight(), 0);
    assert_eq!(
        h.state
            .stats()
            .accepted
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(
        h.state
            .stats()
            .rejected_signatures
            .load(std::sync::atomic::Ordering::Relaxed),
        4
    );
    assert!(h.fake.requests().is_empty(), "{:?}", h.fake.requests());
    assert!(h.fake.check_runs(REPO).is_empty());

    // A correctly signed but malformed payload is 400 and also does nothing.
    let junk = b"{\"ref\": 5}".to_vec();
    let sig = sign(SECRET.as_bytes(), &junk);
    let (status, resp) = h.post_raw("push", "d-junk", junk, Some(sig)).await;
    assert_eq!(status, 400);
    assert!(resp["error"].as_str().unwrap().contains("ref"), "{resp}");
    assert!(h.fake.requests().is_empty());
}

#[tokio::test]
async fn a_duplicate_delivery_makes_no_second_check_run() {
    let h = start().await;
    let before = h.fake.commit_files(REPO, "main", &[("a.txt", "a\n")], "a");
    let after = h.fake.commit_files(
        REPO,
        "main",
        &[("b.env", &format!("KEY={}\n", aws_key(11)))],
        "b",
    );
    let payload = push_payload("refs/heads/main", &before, &after);

    let (first, _) = h.deliver("push", "same-delivery", &payload).await;
    let (second, body) = h.deliver("push", "same-delivery", &payload).await;
    assert_eq!(first, 202);
    assert_eq!(second, 200);
    assert_eq!(body["status"], "duplicate");
    let runs = h.settled_check_runs().await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    // After the first scan finished, a replay is still a duplicate.
    let (third, body) = h.deliver("push", "same-delivery", &payload).await;
    assert_eq!((third, body["status"].as_str()), (200, Some("duplicate")));
    assert_eq!(h.settled_check_runs().await.len(), 1);
    // A new delivery id for the same push is a new scan (GitHub's "Redeliver" keeps the id).
    let (fourth, _) = h.deliver("push", "another-delivery", &payload).await;
    assert_eq!(fourth, 202);
    assert_eq!(h.settled_check_runs().await.len(), 2);
    // One installation token for both scans (the installation client is reused).
    let token_requests = h
        .fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/access_tokens"))
        .count();
    assert_eq!(token_requests, 1, "{:#?}", h.fake.requests());
}

#[tokio::test]
async fn a_push_with_120_findings_is_annotated_in_three_batches() {
    let h = start().await;
    let before = h
        .fake
        .commit_files(REPO, "main", &[("keys.txt", "header\n")], "base");
    let mut text = String::from("header\n");
    for i in 0..120 {
        text.push_str(&format!("key_{i} = {}\n", aws_key(1000 + i)));
    }
    let after = h
        .fake
        .commit_files(REPO, "main", &[("keys.txt", &text)], "120 keys");
    let (status, _) = h
        .deliver(
            "push",
            "d-120",
            &push_payload("refs/heads/main", &before, &after),
        )
        .await;
    assert_eq!(status, 202);
    let runs = h.settled_check_runs().await;
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run.annotation_batches, vec![50, 50, 20]);
    assert_eq!(run.annotations.len(), 120);
    assert_eq!(run.conclusion.as_deref(), Some("failure"));
    assert_eq!(run.title.as_deref(), Some("120 secrets found"));
    let lines: Vec<u64> = annotation_lines(run).into_iter().map(|(_, l)| l).collect();
    assert_eq!(lines, (2..=121).collect::<Vec<u64>>());
}

#[tokio::test]
async fn a_clean_push_succeeds() {
    let h = start().await;
    let before = h
        .fake
        .commit_files(REPO, "main", &[("main.tf", "terraform {}\n")], "base");
    let after = h.fake.commit_files(
        REPO,
        "main",
        &[
            (
                "main.tf",
                "terraform {\n  required_version = \">= 1.6\"\n}\n",
            ),
            (
                "docs/setup.md",
                "Set AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE in your shell.\n",
            ),
        ],
        "docs",
    );
    let (status, _) = h
        .deliver(
            "push",
            "d-clean",
            &push_payload("refs/heads/main", &before, &after),
        )
        .await;
    assert_eq!(status, 202);
    let runs = h.settled_check_runs().await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].conclusion.as_deref(), Some("success"));
    assert_eq!(runs[0].title.as_deref(), Some("No secrets found"));
    assert!(runs[0].annotations.is_empty());
    assert!(
        runs[0].summary.as_deref().unwrap().contains("of 2 files"),
        "{:?}",
        runs[0].summary
    );
}

/// Creates `feature` from `main`, commits `files` on it and opens a PR; returns
/// (PR number, head sha, base sha).
async fn open_pull(h: &Harness, files: &[(&str, &str)]) -> (u64, String, String) {
    let base = h
        .fake
        .commit_files(REPO, "main", &[("src/app.py", "print('hello')\n")], "base");
    let dev = developer(&h.fake);
    let repo = RepoRef::new("acme", "infra");
    dev.create_ref(&repo, "refs/heads/feature", &base)
        .await
        .unwrap();
    let head = h.fake.commit_files(REPO, "feature", files, "feature work");
    let pr = dev
        .create_pull(
            &repo,
            &NewPullRequest {
                title: "Add service".into(),
                head: "feature".into(),
                base: "main".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    (pr.number, head, base)
}

#[tokio::test]
async fn pull_request_opened_scans_the_pull_requests_files() {
    let h = start().await;
    let secret_file = format!(
        "def connect():\n    token = \"{}\"\n    return token\n",
        github_token(21)
    );
    let (number, head, base) = open_pull(&h, &[("src/client.py", &secret_file)]).await;
    h.fake.clear_requests();

    let (status, _) = h
        .deliver(
            "pull_request",
            "d-pr",
            &pull_request_payload("opened", number, &head, &base),
        )
        .await;
    assert_eq!(status, 202);
    let runs = h.settled_check_runs().await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].head_sha, head);
    assert_eq!(runs[0].conclusion.as_deref(), Some("failure"));
    assert_eq!(
        annotation_lines(&runs[0]),
        vec![("src/client.py".to_owned(), 2)]
    );
    assert!(
        h.fake.requests().iter().any(|r| r
            .path
            .starts_with(&format!("/repos/acme/infra/pulls/{number}/files"))),
        "{:?}",
        h.fake.requests()
    );

    // Closing is not scanned.
    let (status, body) = h
        .deliver(
            "pull_request",
            "d-pr-closed",
            &pull_request_payload("closed", number, &head, &base),
        )
        .await;
    assert_eq!((status, body["status"].as_str()), (202, Some("ignored")));
    assert_eq!(h.settled_check_runs().await.len(), 1);
}

#[tokio::test]
async fn a_new_branch_is_compared_with_the_default_branch_and_rerun_works() {
    let h = start().await;
    let base = h.fake.commit_files(
        REPO,
        "main",
        &[("old.env", &format!("K={}\n", aws_key(30)))],
        "old key on main",
    );
    let dev = developer(&h.fake);
    dev.create_ref(&RepoRef::new("acme", "infra"), "refs/heads/topic", &base)
        .await
        .unwrap();
    let head = h.fake.commit_files(
        REPO,
        "topic",
        &[("new.env", &format!("K={}\n", aws_key(31)))],
        "new",
    );

    let (status, _) = h
        .deliver(
            "push",
            "d-new-branch",
            &push_payload("refs/heads/topic", NULL_SHA, &head),
        )
        .await;
    assert_eq!(status, 202);
    let runs = h.settled_check_runs().await;
    assert_eq!(runs.len(), 1);
    // Only what the branch adds over main.
    assert_eq!(annotation_lines(&runs[0]), vec![("new.env".to_owned(), 1)]);

    // "Re-run" in the checks UI sends check_run rerequested: a second, identical run.
    let (status, _) = h
        .deliver(
            "check_run",
            "d-rerun",
            &check_run_rerequested_payload(&head, &base),
        )
        .await;
    assert_eq!(status, 202);
    let runs = h.settled_check_runs().await;
    assert_eq!(runs.len(), 2);
    assert_eq!(annotation_lines(&runs[1]), vec![("new.env".to_owned(), 1)]);
}

#[tokio::test]
async fn the_repositorys_opsbot_toml_allowlist_is_honoured() {
    let h = start().await;
    let before = h.fake.commit_files(
        REPO,
        "main",
        &[(
            "opsbot.toml",
            "[scan]\nallow_paths = [\"^tests/fixtures/\"]\n",
        )],
        "config",
    );
    let after = h.fake.commit_files(
        REPO,
        "main",
        &[
            ("tests/fixtures/keys.txt", &format!("{}\n", aws_key(40))),
            ("app.env", &format!("KEY={} # opsbot:allow\n", aws_key(41))),
            ("real.env", &format!("KEY={}\n", aws_key(42))),
        ],
        "fixtures",
    );
    h.deliver(
        "push",
        "d-allow",
        &push_payload("refs/heads/main", &before, &after),
    )
    .await;
    let runs = h.settled_check_runs().await;
    assert_eq!(annotation_lines(&runs[0]), vec![("real.env".to_owned(), 1)]);
}

#[tokio::test]
async fn bodies_over_25_mb_are_413_and_other_endpoints_behave() {
    let h = start().await;
    let big = vec![b' '; 25 * 1024 * 1024 + 1];
    let sig = sign(SECRET.as_bytes(), &big);
    let (status, _) = h.post_raw("push", "d-big", big, Some(sig)).await;
    assert_eq!(status, 413);
    assert!(h.fake.requests().is_empty());

    // ping, unknown events, missing headers, /healthz, POST /.
    let (status, body) = h
        .deliver(
            "ping",
            "d-ping",
            &json!({ "zen": "Keep it logically awesome.", "hook_id": 1 }),
        )
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("pong")));
    let (status, body) = h
        .deliver("issues", "d-issues", &json!({ "action": "opened" }))
        .await;
    assert_eq!((status, body["status"].as_str()), (202, Some("ignored")));
    let base = format!("http://{}", h.server.as_ref().unwrap().addr());
    let health = h.http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(health.json::<Value>().await.unwrap()["status"], "ok");
    let body = b"{}".to_vec();
    let resp = h
        .http
        .post(format!("{base}/"))
        .header("x-hub-signature-256", sign(SECRET.as_bytes(), &body))
        .header("x-github-delivery", "d-root")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400, "missing X-GitHub-Event");
}

#[tokio::test]
async fn graceful_shutdown_finishes_scans_in_flight() {
    let mut h = start().await;
    let before = h.fake.commit_files(REPO, "main", &[("a.txt", "a\n")], "a");
    let mut text = String::new();
    for i in 0..60 {
        text.push_str(&format!("k{i}={}\n", aws_key(500 + i)));
    }
    let after = h
        .fake
        .commit_files(REPO, "main", &[("keys.env", &text)], "keys");
    let (status, _) = h
        .deliver(
            "push",
            "d-shutdown",
            &push_payload("refs/heads/main", &before, &after),
        )
        .await;
    assert_eq!(status, 202);
    // Shut down at once: the accepted scan must still complete.
    h.server.take().unwrap().shutdown().await.unwrap();
    let runs = h.fake.check_runs(REPO);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, "completed");
    assert_eq!(runs[0].annotation_batches, vec![50, 10]);
}

#[tokio::test]
async fn inline_mode_answers_after_the_check_run_is_complete() {
    let h = start_with(Mode::Inline).await;
    let before = h.fake.commit_files(REPO, "main", &[("a.txt", "a\n")], "a");
    let after = h
        .fake
        .commit_files(REPO, "main", &[("b.txt", &aws_key(60))], "b");
    let (status, body) = h
        .deliver(
            "push",
            "d-inline",
            &push_payload("refs/heads/main", &before, &after),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["conclusion"], "failure");
    // Complete already, without waiting.
    let runs = h.fake.check_runs(REPO);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, "completed");
}

#[tokio::test]
async fn a_github_outage_completes_the_run_as_failed_and_a_redelivery_retries() {
    use opsbot_tests::fake_github::FailureRule;
    let h = start().await;
    let before = h.fake.commit_files(REPO, "main", &[("a.txt", "a\n")], "a");
    let after = h
        .fake
        .commit_files(REPO, "main", &[("b.txt", &aws_key(70))], "b");
    // More 502s on compare than the retry policy's 3 attempts.
    h.fake.fail_next(FailureRule::bad_gateway("/compare/", 3));
    let payload = push_payload("refs/heads/main", &before, &after);
    h.deliver("push", "d-outage", &payload).await;
    let runs = h.settled_check_runs().await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].conclusion.as_deref(), Some("failure"));
    assert_eq!(runs[0].title.as_deref(), Some("The scan could not run"));
    assert!(
        runs[0].summary.as_deref().unwrap().contains("502"),
        "{:?}",
        runs[0].summary
    );
    // GitHub's "Redeliver" sends the same delivery id: it runs again since the first failed.
    let (status, _) = h.deliver("push", "d-outage", &payload).await;
    assert_eq!(status, 202);
    let runs = h.settled_check_runs().await;
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1].title.as_deref(), Some("1 secret found"));
}

/// Webhook → completed check run for a pull request adding 1,000 lines (10 of them secrets).
/// Prints the numbers; run with `--nocapture` to see them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timing_webhook_to_check_run_for_a_1000_line_pull_request() {
    let h = start().await;
    let mut text = String::new();
    for i in 0..1000u64 {
        if i % 100 == 50 {
            text.push_str(&format!("    aws_key_{i} = \"{}\"\n", aws_key(9000 + i)));
        } else {
            text.push_str(&format!(
                "    value_{i} = compute(\"item-{i}\", retries={}, timeout=30)\n",
                i % 7
            ));
        }
    }
    let (number, head, base) = open_pull(&h, &[("src/generated.py", &text)]).await;
    let payload = pull_request_payload("opened", number, &head, &base);

    let started = Instant::now();
    let (status, _) = h.deliver("pull_request", "d-timing", &payload).await;
    let acknowledged = started.elapsed();
    assert_eq!(status, 202);
    let runs = h.settled_check_runs().await;
    let completed = started.elapsed();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].annotations.len(), 10);
    println!(
        "timing: 1,000-line PR: webhook acknowledged in {} ms, check run completed {} ms after the webhook",
        acknowledged.as_millis(),
        completed.as_millis()
    );
    assert!(
        acknowledged < Duration::from_secs(10),
        "GitHub waits 10 s at most"
    );
}

#[tokio::test]
async fn a_push_of_300_files_is_read_commit_by_commit() {
    let h = start().await;
    let before = h.fake.commit_files(REPO, "main", &[("a.txt", "a\n")], "a");
    let names: Vec<String> = (0..300).map(|i| format!("gen/file_{i:03}.txt")).collect();
    let files: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "generated\n")).collect();
    let c1 = h
        .fake
        .commit_files(REPO, "main", &files, "300 generated files");
    let after = h.fake.commit_files(
        REPO,
        "main",
        &[(
            "deploy/creds.env",
            &format!("AWS_ACCESS_KEY_ID={}\n", aws_key(80)),
        )],
        "creds",
    );
    h.fake.clear_requests();
    h.deliver(
        "push",
        "d-300",
        &push_payload("refs/heads/main", &before, &after),
    )
    .await;
    let runs = h.settled_check_runs().await;
    assert_eq!(runs.len(), 1);
    assert_eq!(
        annotation_lines(&runs[0]),
        vec![("deploy/creds.env".to_owned(), 1)]
    );
    let summary = runs[0].summary.clone().unwrap();
    assert!(summary.contains("2 commits read one by one"), "{summary}");
    assert!(summary.contains("of 301 files"), "{summary}");
    let paths: Vec<String> = h.fake.requests().iter().map(|r| r.path.clone()).collect();
    for sha in [&c1, &after] {
        assert!(
            paths
                .iter()
                .any(|p| p == &format!("/repos/acme/infra/commits/{sha}")),
            "{paths:?}"
        );
    }
}

#[tokio::test]
async fn a_push_to_a_pull_requests_branch_is_left_to_the_pull_requests_scan() {
    let h = start().await;
    // The PR's first commit adds a key; the next push is clean. The push scan alone would
    // say "success" for the head commit; the PR scan must be the one reporting on it.
    let (number, first, base) =
        open_pull(&h, &[("svc.env", &format!("KEY={}\n", aws_key(90)))]).await;
    let head = h
        .fake
        .commit_files(REPO, "feature", &[("svc.py", "print('ok')\n")], "clean");
    let (s1, _) = h
        .deliver(
            "push",
            "d-push-pr",
            &push_payload("refs/heads/feature", &first, &head),
        )
        .await;
    let (s2, _) = h
        .deliver(
            "pull_request",
            "d-sync",
            &pull_request_payload("synchronize", number, &head, &base),
        )
        .await;
    assert_eq!((s1, s2), (202, 202));
    let runs = h.settled_check_runs().await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].head_sha, head);
    assert_eq!(runs[0].conclusion.as_deref(), Some("failure"));
    assert_eq!(annotation_lines(&runs[0]), vec![("svc.env".to_owned(), 1)]);
    assert_eq!(
        h.state
            .stats()
            .completed
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}
