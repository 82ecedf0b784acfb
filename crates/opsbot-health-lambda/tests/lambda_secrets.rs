//! The real bootstrap reading its GitHub token from Secrets Manager (moto's server over
//! HTTP on 127.0.0.1) at cold start: no token in its environment, the issue filed with the
//! fetched one, a bad secret reported as an init error that names the variable and not the
//! value, and the cold start with the secret fetched measured against one without.
//! Skips with a message when `moto_server` is absent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use opsbot_tests::fake_github::{FakeGitHub, TEST_TOKEN};
use opsbot_tests::lambda_runtime::RuntimeApi;
use opsbot_tests::moto::Moto;
use serde_json::Value;
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_opsbot-health-lambda");
const REPO: &str = "acme/ops";

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/health")
        .join(format!("{name}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn spawn(api: &RuntimeApi, github: &FakeGitHub, moto: &Moto, extra: &[(&str, String)]) -> Child {
    let bin = std::env::var("OPSBOT_HEALTH_BIN").unwrap_or_else(|_| BIN.to_string());
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .envs(api.lambda_env())
        .envs(moto.env())
        .env("GITHUB_API_URL", github.url())
        .env("GITHUB_REPOSITORY", REPO)
        .env("OPSBOT_GITHUB_RETRY_BUDGET_SECS", "5")
        .env("AWS_CONFIG_FILE", "/nonexistent/config")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
        .env("RUST_LOG", "info")
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn the bootstrap")
}

async fn create_secret(moto: &Moto, name: &str, value: &str) -> String {
    let config = moto.sdk_config().await;
    aws_sdk_secretsmanager::Client::new(&config)
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_string()
}

/// Median of `runs` cold starts (spawn → first `invocation/next`).
async fn cold_start(
    api: &RuntimeApi,
    github: &FakeGitHub,
    moto: &Moto,
    extra: &[(&str, String)],
    runs: usize,
) -> (Duration, Vec<Duration>) {
    let mut samples = Vec::new();
    for _ in 0..runs {
        let since = Instant::now();
        let child = spawn(api, github, moto, extra);
        samples.push(
            api.first_next_after(since, Duration::from_secs(20))
                .await
                .expect("the bootstrap polled for an invocation"),
        );
        drop(child);
    }
    samples.sort();
    (samples[samples.len() / 2], samples)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_secrets_manager_files_the_issue() {
    let Some(moto) = Moto::start("token_from_secrets_manager_files_the_issue") else {
        return;
    };
    let github = FakeGitHub::start().await;
    github.create_repo(REPO);
    let arn = create_secret(&moto, "opsbot/github-token", TEST_TOKEN).await;

    let api = RuntimeApi::start().await;
    let _boot = spawn(&api, &github, &moto, &[("GITHUB_TOKEN_SECRET_ARN", arn)]);
    let response = api
        .invoke(fixture("ec2_instance_retirement"))
        .await
        .expect("the invocation succeeds with the fetched token");
    assert_eq!(response["events"][0]["outcome"], "created", "{response}");
    assert_eq!(github.issues(REPO).len(), 1);

    // A secret that does not exist: init fails, naming the variable and the call.
    let api = RuntimeApi::start().await;
    let _boot = spawn(
        &api,
        &github,
        &moto,
        &[("GITHUB_TOKEN_SECRET_ARN", "opsbot/missing".to_string())],
    );
    let err = api
        .wait_init_error(Duration::from_secs(20))
        .await
        .expect("an init error");
    assert!(
        err.error_message
            .contains("GITHUB_TOKEN: Secrets Manager GetSecretValue secret opsbot/missing"),
        "{err:?}"
    );
}

/// Cold start with the secret fetched vs. a token in the environment (local runs), on
/// whichever binary `OPSBOT_HEALTH_BIN` names. Run on the release build:
/// `OPSBOT_HEALTH_BIN=$PWD/target/release/opsbot-health-lambda cargo test -p
/// opsbot-health-lambda --test lambda_secrets -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run explicitly"]
async fn measure_cold_start_with_secret() {
    let Some(moto) = Moto::start("measure_cold_start_with_secret") else {
        return;
    };
    let github = FakeGitHub::start().await;
    github.create_repo(REPO);
    let arn = create_secret(&moto, "opsbot/github-token", TEST_TOKEN).await;
    let api = RuntimeApi::start().await;
    let (plain, plain_all) = cold_start(
        &api,
        &github,
        &moto,
        &[("GITHUB_TOKEN", TEST_TOKEN.to_string())],
        15,
    )
    .await;
    let api = RuntimeApi::start().await;
    let (fetched, fetched_all) = cold_start(
        &api,
        &github,
        &moto,
        &[("GITHUB_TOKEN_SECRET_ARN", arn)],
        15,
    )
    .await;
    eprintln!(
        "binary: {}",
        std::env::var("OPSBOT_HEALTH_BIN").unwrap_or_else(|_| BIN.to_string())
    );
    eprintln!(
        "cold start (spawn → first /next), 15 runs each: token in env median {plain:?} \
         (min {:?}, max {:?}); token from Secrets Manager (moto) median {fetched:?} \
         (min {:?}, max {:?}); ratio {:.2}",
        plain_all[0],
        plain_all[plain_all.len() - 1],
        fetched_all[0],
        fetched_all[fetched_all.len() - 1],
        fetched.as_secs_f64() / plain.as_secs_f64()
    );
    assert!(fetched < Duration::from_secs(2), "{fetched_all:?}");
}
