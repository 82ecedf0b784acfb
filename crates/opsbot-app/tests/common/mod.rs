//! What the App's end-to-end tests share: the fake GitHub with the App's installation and
//! repository, the App's settings against it, planted secrets built at run time, push
//! payloads shaped as GitHub sends them, and bounded waiting.
//!
//! Each test target compiles this module on its own and uses part of it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use opsbot_core::github::{Credentials, GitHubSettings, RetryPolicy};
use opsbot_tests::fake_github::{FakeCheckRun, FakeGitHub, TEST_APP_PRIVATE_KEY};
use secrecy::SecretString;
use serde_json::{Value, json};

pub const SECRET: &str = "test-webhook-secret";
pub const REPO: &str = "acme/infra";
pub const INSTALLATION: u64 = 77;
pub const APP_ID: u64 = 4242;
pub const NULL_SHA: &str = "0000000000000000000000000000000000000000";

/// A distinct, high-entropy AWS access key id per seed (base32 alphabet, like real ones).
pub fn aws_key(seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut body = String::new();
    for _ in 0..16 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        body.push(ALPHABET[(x % 32) as usize] as char);
    }
    format!("AKIA{body}")
}

/// The App's credentials against `fake`, retries bounded by `budget`.
pub fn settings_with_budget(fake: &FakeGitHub, budget: Duration) -> GitHubSettings {
    GitHubSettings {
        api_url: fake.url(),
        repository: None,
        credentials: Credentials::App {
            app_id: APP_ID,
            private_key_pem: SecretString::from(TEST_APP_PRIVATE_KEY),
            installation_id: None,
        },
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            budget,
        },
    }
}

/// [`settings_with_budget`] with 10 s.
pub fn settings(fake: &FakeGitHub) -> GitHubSettings {
    settings_with_budget(fake, Duration::from_secs(10))
}

/// The fake GitHub with [`REPO`] and the App installed on it as [`INSTALLATION`].
pub async fn fake_with_repo() -> FakeGitHub {
    let fake = FakeGitHub::start().await;
    fake.create_repo(REPO);
    fake.add_installation(INSTALLATION, &[REPO]);
    fake
}

/// A `push` payload for [`REPO`] (or `repo`), as GitHub sends it.
pub fn push_payload_for(
    repo: &str,
    git_ref: &str,
    before: &str,
    after: &str,
    commits: &[&str],
) -> Vec<u8> {
    let commits: Vec<Value> = commits
        .iter()
        .map(|c| json!({ "id": c, "distinct": true, "message": "m", "added": [], "removed": [], "modified": [] }))
        .collect();
    let (owner, name) = repo.split_once('/').expect("owner/name");
    serde_json::to_vec(&json!({
        "ref": git_ref, "before": before, "after": after,
        "created": before == NULL_SHA, "deleted": false, "forced": false,
        "commits": commits,
        "head_commit": { "id": after },
        "repository": {
            "id": 1, "name": name, "full_name": repo,
            "owner": { "name": owner, "login": owner }, "default_branch": "main"
        },
        "installation": { "id": INSTALLATION }
    }))
    .unwrap()
}

/// [`push_payload_for`] on [`REPO`].
pub fn push_payload(git_ref: &str, before: &str, after: &str, commits: &[&str]) -> Vec<u8> {
    push_payload_for(REPO, git_ref, before, after, commits)
}

/// Waits (bounded) until `pred` holds.
pub async fn eventually(what: &str, timeout: Duration, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether a completed, not cancelled "opsbot / secrets" run exists for delivery `guid`.
pub fn completed_for(runs: &[FakeCheckRun], guid: &str) -> bool {
    runs.iter().any(|r| {
        r.external_id.as_deref() == Some(guid)
            && r.status == "completed"
            && r.conclusion.as_deref() != Some("cancelled")
    })
}

/// The delivery table as the App's Terraform module creates it: on-demand, `delivery_id`
/// (a string) as the hash key.
pub async fn create_delivery_table(dynamodb: &aws_sdk_dynamodb::Client, table: &str) {
    create_table_keyed(dynamodb, table, "delivery_id").await;
}

/// An on-demand table whose hash key is the string attribute `key`.
pub async fn create_table_keyed(dynamodb: &aws_sdk_dynamodb::Client, table: &str, key: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    dynamodb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key)
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}
