//! The `opsbot app redeliver` binary against the fake GitHub (the App's deliveries API,
//! tests/src/fake_github/deliveries.rs) and, with `--ledger-table`, the delivery table in
//! moto's DynamoDB (tests/src/moto.rs):
//!
//! - without a ledger, a delivery nobody answered is asked for again and named, exit 0;
//! - with `--ledger-table`, an attempt another sweeper already recorded in the table is not
//!   asked for (no `POST …/attempts` reaches the fake GitHub), a new one is asked for and
//!   recorded there, and a delivery a replica marked scanned is not read back from GitHub;
//! - a table that does not exist is an error naming `--ledger-table` and the table, exit 2,
//!   before any delivery is listed.
//!
//! The ledger tests skip with a message when `moto_server` is absent (fail under CI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Output;
use std::time::Duration;

use opsbot_app::dedup::{Claim, DeliveryLedger};
use opsbot_app::dynamodb;
use opsbot_app::redeliver::RedeliveryLog;
use opsbot_tests::fake_github::deliveries::FakeDelivery;
use opsbot_tests::fake_github::{FakeGitHub, TEST_APP_PRIVATE_KEY};
use opsbot_tests::moto::Moto;
use serde_json::json;

const SECRET: &str = "redeliver-test-webhook-secret";
const REPO: &str = "acme/infra";
const TABLE: &str = "opsbot-app-deliveries";

/// The fake GitHub with the App installed on [`REPO`].
async fn fake() -> FakeGitHub {
    let fake = FakeGitHub::start().await;
    fake.create_repo(REPO);
    fake.add_installation(77, &[REPO]);
    fake
}

/// A push payload as GitHub sends it (its commits need not exist: the sweep reads a
/// payload back only for successful deliveries it verifies).
fn push(after: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "ref": "refs/heads/main",
        "before": "1111111111111111111111111111111111111111",
        "after": after,
        "created": false, "deleted": false, "forced": false,
        "commits": [], "head_commit": { "id": after },
        "repository": {
            "id": 1, "name": "infra", "full_name": REPO,
            "owner": { "name": "acme", "login": "acme" }, "default_branch": "main"
        },
        "installation": { "id": 77 }
    }))
    .unwrap()
}

/// A webhook URL nothing listens on: GitHub records "no answer" (status 0).
fn dead_url() -> String {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/webhook", closed.local_addr().unwrap());
    drop(closed);
    url
}

/// A webhook receiver that answers every delivery `202` (as a replica accepting it does),
/// on a thread; its URL.
fn accepting_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/webhook", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = answer_202(&mut conn);
        }
    });
    url
}

/// Reads one request (headers, then `Content-Length` bytes of body) and answers `202`.
fn answer_202(conn: &mut TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    conn.write_all(
        b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
    )
}

/// Delivers a push to wherever the hook points now; asserts the status GitHub recorded.
async fn deliver(fake: &FakeGitHub, url: &str, after: &str, status: u16) -> FakeDelivery {
    fake.set_webhook(url, SECRET);
    let d = fake.deliver_webhook("push", &push(after)).await;
    assert_eq!(d.status_code, status, "{d:?}");
    d
}

/// Runs `opsbot app redeliver ARGS` with the App's credentials against `fake`, nothing else
/// of the caller's GitHub or ledger environment, and `env` (moto's, for the ledger).
async fn redeliver(fake: &FakeGitHub, args: &[&str], env: &[(&str, String)]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_opsbot"))
        .args(["app", "redeliver"])
        .args(args)
        .env("GITHUB_API_URL", fake.url())
        .env("GITHUB_APP_ID", "4242")
        .env("GITHUB_APP_PRIVATE_KEY", TEST_APP_PRIVATE_KEY)
        .env_remove("GITHUB_TOKEN")
        .env_remove("GH_TOKEN")
        .env_remove("GITHUB_REPOSITORY")
        .env_remove("OPSBOT_CONFIG")
        .env_remove("OPSBOT_APP_LEDGER_TABLE")
        .env_remove("AWS_PROFILE")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `POST /app/hook/deliveries/{id}/attempts` requests the fake GitHub received.
fn attempt_posts(fake: &FakeGitHub, id: u64) -> usize {
    let path = format!("/app/hook/deliveries/{id}/attempts");
    fake.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == path)
        .count()
}

/// Reads of one delivery (`GET /app/hook/deliveries/{id}`: the sweep verifying it).
fn delivery_reads(fake: &FakeGitHub, id: u64) -> usize {
    let path = format!("/app/hook/deliveries/{id}");
    fake.requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == path)
        .count()
}

/// The delivery table as the App's Terraform module creates it (on demand, hash key
/// `delivery_id`, a string), made with one DynamoDB `CreateTable` call over loopback HTTP
/// (this crate has no DynamoDB SDK of its own; moto does not check signatures).
fn create_delivery_table(moto: &Moto, table: &str) {
    let body = json!({
        "TableName": table,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{ "AttributeName": "delivery_id", "AttributeType": "S" }],
        "KeySchema": [{ "AttributeName": "delivery_id", "KeyType": "HASH" }]
    })
    .to_string();
    let addr = moto.addr();
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        conn,
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-amz-json-1.0\r\n\
         X-Amz-Target: DynamoDB_20120810.CreateTable\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/dynamodb/aws4_request, \
         SignedHeaders=host;x-amz-target, Signature=0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "CreateTable: {resp}");
}

#[tokio::test]
async fn without_a_ledger_a_failed_delivery_is_redelivered_and_named() {
    let fake = fake().await;
    let d = deliver(
        &fake,
        &dead_url(),
        "2222222222222222222222222222222222222222",
        0,
    )
    .await;
    fake.clear_requests();

    let out = redeliver(&fake, &["--since", "1h"], &[]).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("redelivered {}: no answer", d.guid)),
        "{stdout}"
    );
    assert!(stdout.contains("1 redelivered"), "{stdout}");
    assert!(!stdout.contains("ledger"), "no ledger was given: {stdout}");
    // GitHub was asked once, for that attempt.
    assert_eq!(fake.redelivery_requests(&d.guid), 1);
    assert_eq!(attempt_posts(&fake, d.id), 1, "{:?}", fake.requests());
}

#[tokio::test]
async fn with_the_ledger_an_attempt_another_sweeper_asked_for_is_not_asked_again() {
    let test = "with_the_ledger_an_attempt_another_sweeper_asked_for_is_not_asked_again";
    let Some(moto) = Moto::start(test) else {
        return;
    };
    create_delivery_table(&moto, TABLE);
    // A replica's view of the same table (its own claims and sweep record).
    let replica = dynamodb::connect(&moto.sdk_config().await, TABLE)
        .await
        .unwrap();

    let fake = fake().await;
    let dead = dead_url();
    // Failed, and a replica's sweep already asked GitHub to redeliver this attempt.
    let asked = deliver(&fake, &dead, "3333333333333333333333333333333333333333", 0).await;
    assert!(replica.first_ask(&asked.guid, asked.id).await.unwrap());
    // Failed, and nobody asked for it yet.
    let fresh = deliver(&fake, &dead, "4444444444444444444444444444444444444444", 0).await;
    // Accepted and scanned to the end by a replica (`done` in the table): with no grace it
    // would otherwise be read back from GitHub and verified.
    let scanned = deliver(
        &fake,
        &accepting_url(),
        "5555555555555555555555555555555555555555",
        202,
    )
    .await;
    let lease = Duration::from_secs(900);
    assert_eq!(
        replica.claim(&scanned.guid, lease).await.unwrap(),
        Claim::Acquired
    );
    replica.complete(&scanned.guid).await.unwrap();
    // Redeliveries this run asks for go nowhere (another failed attempt each).
    fake.set_webhook(&dead, SECRET);
    fake.clear_requests();

    let out = redeliver(
        &fake,
        &["--since", "1h", "--grace", "0s", "--ledger-table", TABLE],
        &moto.env(),
    )
    .await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");

    // Already asked for by the replica: GitHub is not asked again.
    assert_eq!(fake.redelivery_requests(&asked.guid), 0, "{stdout}");
    assert_eq!(attempt_posts(&fake, asked.id), 0, "{:?}", fake.requests());
    assert!(
        stdout.contains(&format!("not asked again {}", asked.guid)),
        "{stdout}"
    );
    // The new one is asked for once, and recorded in the table for the replicas: their
    // sweep would not ask for the same attempt again.
    assert_eq!(fake.redelivery_requests(&fresh.guid), 1, "{stdout}");
    assert_eq!(attempt_posts(&fake, fresh.id), 1, "{:?}", fake.requests());
    assert!(
        stdout.contains(&format!("redelivered {}: no answer", fresh.guid)),
        "{stdout}"
    );
    assert!(
        !replica.first_ask(&fresh.guid, fresh.id).await.unwrap(),
        "the run recorded what it asked for"
    );
    // Scanned by a replica: known from the table, not read on GitHub, not redelivered.
    assert_eq!(
        delivery_reads(&fake, scanned.id),
        0,
        "{:?}",
        fake.requests()
    );
    assert_eq!(fake.redelivery_requests(&scanned.guid), 0);
    assert!(
        stdout.contains("0 successful ones checked for a finished scan, 1 redelivered"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "ledger {TABLE}: 1 known to be scanned (not read on GitHub), 1 already asked for by another sweeper"
        )),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_table_that_does_not_exist_is_an_error_naming_the_flag_and_the_table() {
    let test = "a_table_that_does_not_exist_is_an_error_naming_the_flag_and_the_table";
    let Some(moto) = Moto::start(test) else {
        return;
    };
    let fake = fake().await;
    let d = deliver(
        &fake,
        &dead_url(),
        "6666666666666666666666666666666666666666",
        0,
    )
    .await;
    fake.clear_requests();

    let out = redeliver(&fake, &["--ledger-table", "no-such-table"], &moto.env()).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("--ledger-table"), "{stderr}");
    assert!(stderr.contains("`no-such-table`"), "{stderr}");
    assert!(stderr.contains("DescribeTable"), "{stderr}");
    // It stops before listing anything, so nothing is asked for.
    assert!(
        !fake
            .requests()
            .iter()
            .any(|r| r.path.starts_with("/app/hook/deliveries")),
        "{:?}",
        fake.requests()
    );
    assert_eq!(fake.redelivery_requests(&d.guid), 0);
}

#[test]
fn help_explains_the_ledger_table_flag() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_opsbot"))
        .args(["app", "redeliver", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(help.contains("--ledger-table <NAME>"), "{help}");
    assert!(help.contains("OPSBOT_APP_LEDGER_TABLE"), "{help}");
    assert!(help.contains("not asked again"), "{help}");
}
