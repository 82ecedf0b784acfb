//! The `opsbot app serve` binary. As a Lambda function behind a function URL it runs
//! against a local Lambda Runtime API (tests/src/lambda_runtime.rs) and the fake GitHub: a
//! signed push delivery arrives as a function URL event (payload format 2.0), the answer
//! comes only once the check run is complete (Lambda freezes the process after answering),
//! and a bad signature is refused with 401 before any GitHub call. As a plain server it
//! listens, answers /healthz and exits cleanly on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};

use opsbot_app::signature::sign;
use opsbot_tests::fake_github::{FakeGitHub, TEST_APP_PRIVATE_KEY};
use opsbot_tests::lambda_runtime::RuntimeApi;
use serde_json::{Value, json};

const SECRET: &str = "lambda-test-webhook-secret";
const REPO: &str = "acme/infra";

/// Kills the function process when the test ends, pass or fail.
struct Function(Child);

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn aws_key() -> String {
    ["AKIA", "Q7TRN6WZ", "K3XPLY4M"].concat()
}

fn function_url_event(event: &str, delivery: &str, body: &str, signature: &str) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/webhook",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "content-length": body.len().to_string(),
            "host": "abcdefg.lambda-url.us-east-1.on.aws",
            "user-agent": "GitHub-Hookshot/044aadd",
            "x-github-event": event,
            "x-github-delivery": delivery,
            "x-github-hook-id": "1",
            "x-hub-signature-256": signature,
            "x-forwarded-proto": "https"
        },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abcdefg",
            "domainName": "abcdefg.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abcdefg",
            "http": {
                "method": "POST", "path": "/webhook", "protocol": "HTTP/1.1",
                "sourceIp": "140.82.115.10", "userAgent": "GitHub-Hookshot/044aadd"
            },
            "requestId": format!("req-{delivery}"),
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Jan/2025:00:00:00 +0000",
            "timeEpoch": 1_735_689_600_000u64
        },
        "body": body,
        "isBase64Encoded": false
    })
}

fn push_body(before: &str, after: &str) -> String {
    json!({
        "ref": "refs/heads/main", "before": before, "after": after,
        "created": false, "deleted": false, "forced": false,
        "head_commit": { "id": after, "message": "add key" },
        "commits": [],
        "repository": {
            "id": 1, "name": "infra", "full_name": REPO,
            "owner": { "name": "acme", "login": "acme" }, "default_branch": "main"
        },
        "pusher": { "name": "alice" },
        "sender": { "login": "alice" },
        "installation": { "id": 77 }
    })
    .to_string()
}

#[tokio::test]
async fn the_binary_serves_a_function_url_and_completes_the_check_run_before_answering() {
    let fake = FakeGitHub::start().await;
    fake.create_repo(REPO);
    fake.add_installation(77, &[REPO]);
    let before = fake.commit_files(REPO, "main", &[("a.txt", "a\n")], "a");
    let after = fake.commit_files(
        REPO,
        "main",
        &[("deploy.env", &format!("AWS_ACCESS_KEY_ID={}\n", aws_key()))],
        "b",
    );
    fake.clear_requests();

    let api = RuntimeApi::start_named("opsbot-app").await;
    let child = Command::new(env!("CARGO_BIN_EXE_opsbot"))
        .args(["app", "serve"])
        .envs(api.lambda_env())
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env("GITHUB_API_URL", fake.url())
        .env("GITHUB_APP_ID", "4242")
        .env("GITHUB_APP_PRIVATE_KEY", TEST_APP_PRIVATE_KEY)
        .env_remove("GITHUB_TOKEN")
        .env_remove("GH_TOKEN")
        .env_remove("GITHUB_REPOSITORY")
        .env_remove("OPSBOT_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _function = Function(child);

    // A wrong signature: 401, and GitHub is never called.
    let body = push_body(&before, &after);
    let bad = api
        .invoke(function_url_event(
            "push",
            "d-bad",
            &body,
            &sign(b"wrong", body.as_bytes()),
        ))
        .await
        .unwrap();
    assert_eq!(bad["statusCode"], 401, "{bad}");
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());

    // A good one: the answer comes after the check run is complete.
    let good = api
        .invoke(function_url_event(
            "push",
            "d-good",
            &body,
            &sign(SECRET.as_bytes(), body.as_bytes()),
        ))
        .await
        .unwrap();
    assert_eq!(good["statusCode"], 200, "{good}");
    let answer: Value = serde_json::from_str(good["body"].as_str().unwrap()).unwrap();
    assert_eq!(answer["conclusion"], "failure", "{answer}");
    let runs = fake.check_runs(REPO);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, "completed");
    assert_eq!(runs[0].head_sha, after);
    assert_eq!(runs[0].annotations.len(), 1);
    assert_eq!(runs[0].annotations[0]["path"], "deploy.env");

    // The same delivery again (a warm function keeps its memory): duplicate.
    let dup = api
        .invoke(function_url_event(
            "push",
            "d-good",
            &body,
            &sign(SECRET.as_bytes(), body.as_bytes()),
        ))
        .await
        .unwrap();
    assert_eq!(dup["statusCode"], 200);
    assert!(dup["body"].as_str().unwrap().contains("duplicate"), "{dup}");
    assert_eq!(fake.check_runs(REPO).len(), 1);
}

#[test]
fn serve_without_a_webhook_secret_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_opsbot"))
        .args(["app", "serve", "--listen", "127.0.0.1:0"])
        .env_remove("GITHUB_WEBHOOK_SECRET")
        .env_remove("OPSBOT_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("GITHUB_WEBHOOK_SECRET is not set"),
        "{stderr}"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn the_plain_server_answers_healthz_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;

    let fake = FakeGitHub::start().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_opsbot"))
        .args(["app", "serve", "--listen", "127.0.0.1:0"])
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env("GITHUB_API_URL", fake.url())
        .env("GITHUB_APP_ID", "4242")
        .env("GITHUB_APP_PRIVATE_KEY", TEST_APP_PRIVATE_KEY)
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .env_remove("GITHUB_TOKEN")
        .env_remove("GH_TOKEN")
        .env_remove("OPSBOT_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let function = Function(child);

    // "opsbot app: listening on http://127.0.0.1:PORT (...)"
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the server exited before listening"
        );
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let mut conn = TcpStream::connect(&addr).unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"status\":\"ok\""), "{resp}");

    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut function = function;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let code = loop {
        if let Some(code) = function.0.try_wait().unwrap() {
            break code;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(code.success(), "{code:?}");
}

#[test]
fn a_bad_app_table_in_opsbot_toml_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("opsbot.toml");
    std::fs::write(&config, "[app]\nlisten = 8080\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_opsbot"))
        .args(["app", "serve"])
        .env("OPSBOT_CONFIG", &config)
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env_remove("OPSBOT_LISTEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("app.listen"), "{stderr}");
}
