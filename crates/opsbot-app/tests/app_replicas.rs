//! `opsbot app serve` scaled out: replicas of the server (in-process, each with its own
//! state, ledger client and listener, as separate processes would have) sharing one
//! DynamoDB delivery table in moto's server (`--ledger-table`), with the fake GitHub sending
//! the deliveries and carrying out redelivery requests (`POST /app/hook/deliveries/{id}/
//! attempts`) to whichever replica its hook points at.
//!
//! - a delivery GitHub redelivers to another replica, or that reaches two replicas at
//!   once, is scanned once: one check run;
//! - a replica restarted between a delivery and its redelivery does not scan it again, and
//!   its start-up sweep does not ask for it again;
//! - a replica killed mid-scan leaves a claim that holds until its lease runs out (a
//!   redelivery meanwhile is answered 503); then a redelivery to the other replica scans
//!   the delivery, and the other replica's own sweep brings it back (nothing lost);
//! - the serve sweep's "asked once per attempt" record lives in the same table;
//! - a table that does not exist fails at start-up, naming the table and the AWS call.
//!
//! Skips with a message when `moto_server` is absent (fails under CI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use common::{
    REPO, SECRET, aws_key, completed_for, eventually, fake_with_repo, push_payload, settings,
};
use http::Method;
use opsbot_app::dynamodb::{self, DynamoLedger};
use opsbot_app::signature::sign;
use opsbot_app::{AppConfig, AppState, RedeliverySettings, ServerHandle};
use opsbot_tests::fake_github::deliveries::FakeDelivery;
use opsbot_tests::fake_github::{FailureRule, FakeGitHub};
use opsbot_tests::moto::Moto;
use secrecy::SecretString;

const TABLE: &str = "opsbot-app-deliveries";

/// moto with the delivery table as the Terraform module creates it.
async fn aws(test: &str) -> Option<(Moto, SdkConfig)> {
    let moto = Moto::start(test)?;
    let config = moto.sdk_config().await;
    common::create_delivery_table(&aws_sdk_dynamodb::Client::new(&config), TABLE).await;
    Some((moto, config))
}

/// One replica of `opsbot app serve --ledger-table TABLE`.
struct Replica {
    state: AppState,
    server: ServerHandle,
    ledger: Arc<DynamoLedger>,
    url: String,
}

fn config() -> AppConfig {
    AppConfig::new(SecretString::from(SECRET))
}

/// Starts a replica; with `hook`, GitHub's webhook points at it before it serves (so the
/// start-up sweep's redeliveries come to it).
async fn replica(fake: &FakeGitHub, aws: &SdkConfig, cfg: AppConfig, hook: bool) -> Replica {
    let ledger = Arc::new(dynamodb::connect(aws, TABLE).await.unwrap());
    let worker = opsbot_app::worker(&settings(fake)).unwrap();
    let state = AppState::with_shared_ledger(cfg, worker, ledger.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhook", listener.local_addr().unwrap());
    if hook {
        fake.set_webhook(&url, SECRET);
    }
    let server = opsbot_app::serve(listener, state.clone()).unwrap();
    Replica {
        state,
        server,
        ledger,
        url,
    }
}

impl Replica {
    fn accepted(&self) -> u64 {
        self.state.stats().accepted.load(Ordering::Relaxed)
    }

    fn duplicates(&self) -> u64 {
        self.state.stats().duplicates.load(Ordering::Relaxed)
    }
}

/// GitHub's "Redeliver" of attempt `id` to wherever the hook points now (through the App's
/// own API, with its JWT), and the attempt it recorded.
async fn redeliver_to(fake: &FakeGitHub, to: &Replica, id: u64, guid: &str) -> FakeDelivery {
    fake.set_webhook(&to.url, SECRET);
    let attempts = || fake.deliveries().into_iter().filter(|d| d.guid == guid);
    let before = attempts().count();
    to.state
        .worker()
        .app()
        .send::<()>(
            "redeliver",
            Method::POST,
            &format!("/app/hook/deliveries/{id}/attempts"),
            None,
        )
        .await
        .unwrap();
    eventually("the redelivery attempt", Duration::from_secs(15), || {
        attempts().count() > before
    })
    .await;
    attempts().next_back().unwrap()
}

/// The ledger's item for `key`, as DynamoDB holds it.
async fn item(
    aws: &SdkConfig,
    key: &str,
) -> Option<std::collections::HashMap<String, AttributeValue>> {
    aws_sdk_dynamodb::Client::new(aws)
        .get_item()
        .table_name(TABLE)
        .key("delivery_id", AttributeValue::S(key.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item()
        .cloned()
}

/// Waits (bounded) until the item of `key` has `claim_state` = `state`; returns it. (The
/// check run is complete a moment before the ledger is told.)
async fn item_in_state(
    aws: &SdkConfig,
    key: &str,
    state: &str,
) -> std::collections::HashMap<String, AttributeValue> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = item(aws, key).await;
        if let Some(i) = &found
            && matches!(i.get("claim_state"), Some(AttributeValue::S(s)) if s == state)
        {
            return found.unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{key} never became {state}: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn attr<'a>(item: &'a std::collections::HashMap<String, AttributeValue>, k: &str) -> &'a str {
    match item.get(k) {
        Some(AttributeValue::S(s)) | Some(AttributeValue::N(s)) => s,
        other => panic!("{k}: {other:?}"),
    }
}

fn runs_for(fake: &FakeGitHub, guid: &str) -> usize {
    fake.check_runs(REPO)
        .iter()
        .filter(|r| r.external_id.as_deref() == Some(guid))
        .count()
}

/// A push adding a key; the payload GitHub sends for it.
fn push_with_key(fake: &FakeGitHub, seed: u64) -> Vec<u8> {
    let before = fake.commit_files(REPO, "main", &[("a.txt", "a\n")], "a");
    let after = fake.commit_files(
        REPO,
        "main",
        &[("k.env", &format!("K={}\n", aws_key(seed)))],
        "k",
    );
    push_payload("refs/heads/main", &before, &after, &[&after])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_sent_to_two_replicas_is_scanned_once() {
    let Some((_moto, aws)) = aws("a_delivery_sent_to_two_replicas_is_scanned_once").await else {
        return;
    };
    let fake = fake_with_repo().await;
    let a = replica(&fake, &aws, config(), true).await;
    let b = replica(&fake, &aws, config(), false).await;

    // GitHub delivers to A; A scans.
    let d = fake
        .deliver_webhook("push", &push_with_key(&fake, 11))
        .await;
    assert_eq!(d.status_code, 202, "{d:?}");
    eventually("A's check run", Duration::from_secs(20), || {
        completed_for(&fake.check_runs(REPO), &d.guid)
    })
    .await;
    let done = item_in_state(&aws, &d.guid, "done").await;
    assert_eq!(attr(&done, "claimed_by"), a.ledger.owner());
    // GitHub redelivers it to B (another replica behind the load balancer): nothing.
    let again = redeliver_to(&fake, &b, d.id, &d.guid).await;
    assert_eq!(again.status_code, 200, "{again:?}");
    assert_eq!((a.accepted(), b.accepted(), b.duplicates()), (1, 0, 1));

    // The same delivery reaching both replicas at the same moment: one wins the
    // conditional put, the other does not scan it.
    let body = push_with_key(&fake, 12);
    let guid = "5a1e7c00-d0d0-11ef-8000-000000000012";
    let post = |url: String| {
        let body = body.clone();
        async move {
            reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .header("x-github-event", "push")
                .header("x-github-delivery", guid)
                .header("x-hub-signature-256", sign(SECRET.as_bytes(), &body))
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let (sa, sb) = tokio::join!(post(a.url.clone()), post(b.url.clone()));
    // The loser answers 503 while the winner's scan runs (GitHub records a failed attempt,
    // the sweep asks for it again and it is then a duplicate), 200 if it has finished.
    let mut statuses = [sa, sb];
    statuses.sort_unstable();
    eprintln!("raced delivery: A {sa}, B {sb}");
    assert!(
        statuses == [202, 503] || statuses == [200, 202],
        "one scan, one duplicate: {statuses:?}"
    );
    eventually(
        "the raced delivery's check run",
        Duration::from_secs(20),
        || completed_for(&fake.check_runs(REPO), guid),
    )
    .await;
    // Let a second scan (if any) show itself before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        a.accepted() + b.accepted(),
        3 - 1,
        "two deliveries, two scans"
    );
    assert_eq!(runs_for(&fake, &d.guid), 1);
    assert_eq!(runs_for(&fake, guid), 1);
    assert_eq!(fake.check_runs(REPO).len(), 2);
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/check-runs"))
            .count(),
        2,
        "one check run created per delivery"
    );
    a.server.shutdown().await.unwrap();
    b.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_does_not_scan_a_delivery_again() {
    let Some((_moto, aws)) = aws("a_restarted_replica_does_not_scan_a_delivery_again").await else {
        return;
    };
    let fake = fake_with_repo().await;
    let a = replica(&fake, &aws, config(), true).await;
    let d = fake
        .deliver_webhook("push", &push_with_key(&fake, 21))
        .await;
    assert_eq!(d.status_code, 202, "{d:?}");
    eventually("the check run", Duration::from_secs(20), || {
        completed_for(&fake.check_runs(REPO), &d.guid)
    })
    .await;
    a.server.shutdown().await.unwrap();

    // The same replica restarted (nothing in memory), with its start-up sweep, which would
    // verify (and, for a memory-only server, redeliver) every successful delivery.
    let mut cfg = config();
    cfg.redelivery = Some(RedeliverySettings {
        interval: Duration::from_secs(3600),
        grace: Duration::ZERO,
        ..RedeliverySettings::default()
    });
    let a2 = replica(&fake, &aws, cfg, true).await;
    eventually("the start-up sweep", Duration::from_secs(10), || {
        fake.requests()
            .iter()
            .any(|r| r.path.starts_with("/app/hook/deliveries"))
    })
    .await;
    let again = redeliver_to(&fake, &a2, d.id, &d.guid).await;
    assert_eq!(again.status_code, 200, "{again:?}");
    assert_eq!((a2.accepted(), a2.duplicates()), (0, 1));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(runs_for(&fake, &d.guid), 1, "{:?}", fake.check_runs(REPO));
    assert_eq!(fake.redelivery_requests(&d.guid), 1, "only ours");
    // The sweep read from the table that it was scanned: it did not read the delivery's
    // payload back from GitHub to verify it.
    let readback = format!("/app/hook/deliveries/{}", d.id);
    assert!(
        !fake
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.path == readback),
        "{:?}",
        fake.requests()
    );
    a2.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_scan_is_taken_over_once_its_lease_runs_out() {
    let Some((_moto, aws)) =
        aws("a_replica_killed_mid_scan_is_taken_over_once_its_lease_runs_out").await
    else {
        return;
    };
    let fake = fake_with_repo().await;
    let lease = Duration::from_secs(3);
    let mut cfg = config();
    cfg.claim_lease = lease;
    let a = replica(&fake, &aws, cfg.clone(), true).await;
    let b = replica(&fake, &aws, cfg, false).await;
    let body = push_with_key(&fake, 31);
    // A's installation token is held back 3 s: A has accepted the scan when it dies.
    fake.fail_next(FailureRule::secondary_rate_limit("/access_tokens", 1, 3));
    let d = fake.deliver_webhook("push", &body).await;
    assert_eq!(d.status_code, 202, "{d:?}");
    eventually("A's token request", Duration::from_secs(10), || {
        fake.requests()
            .iter()
            .any(|r| r.path.contains("/access_tokens"))
    })
    .await;
    let claimed_by_a = a.ledger.owner().to_owned();
    a.server.abandon().await;
    let claim = item(&aws, &d.guid).await.expect("A's claim");
    assert_eq!(attr(&claim, "claim_state"), "running");
    assert_eq!(attr(&claim, "claimed_by"), claimed_by_a);

    // Within the lease, B must not scan it (A might still be scanning), and says so with a
    // 503: GitHub records a failed attempt, which the sweep asks for again.
    let early = redeliver_to(&fake, &b, d.id, &d.guid).await;
    assert_eq!(early.status_code, 503, "{early:?}");
    assert_eq!(b.accepted(), 0);
    assert_eq!(runs_for(&fake, &d.guid), 0);

    // Once the lease has run out, a redelivery to B scans it.
    tokio::time::sleep(lease + Duration::from_millis(1500)).await;
    let late = redeliver_to(&fake, &b, d.id, &d.guid).await;
    assert_eq!(late.status_code, 202, "{late:?}");
    eventually("B's check run", Duration::from_secs(20), || {
        completed_for(&fake.check_runs(REPO), &d.guid)
    })
    .await;
    assert_eq!(b.accepted(), 1);
    assert_eq!(runs_for(&fake, &d.guid), 1);
    let runs = fake.check_runs(REPO);
    assert_eq!(
        runs[0].conclusion.as_deref(),
        Some("failure"),
        "the key found"
    );
    let done = item_in_state(&aws, &d.guid, "done").await;
    assert_eq!(attr(&done, "claimed_by"), b.ledger.owner());
    b.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_surviving_replicas_sweep_recovers_a_scan_lost_with_a_killed_replica() {
    let Some((_moto, aws)) =
        aws("the_surviving_replicas_sweep_recovers_a_scan_lost_with_a_killed_replica").await
    else {
        return;
    };
    let fake = fake_with_repo().await;
    let lease = Duration::from_secs(3);
    let mut cfg = config();
    cfg.claim_lease = lease;
    let a = replica(&fake, &aws, cfg.clone(), true).await;
    let body = push_with_key(&fake, 51);
    fake.fail_next(FailureRule::secondary_rate_limit("/access_tokens", 1, 3));
    let d = fake.deliver_webhook("push", &body).await;
    assert_eq!(d.status_code, 202, "{d:?}");
    eventually("A's token request", Duration::from_secs(10), || {
        fake.requests()
            .iter()
            .any(|r| r.path.contains("/access_tokens"))
    })
    .await;
    a.server.abandon().await;

    // B sweeps every second with no grace: it finds the accepted delivery unscanned and
    // asks for it; while A's claim holds, B answers the redelivery 503, a new attempt that
    // its next sweep asks for again; once the lease has run out, B scans it. No one
    // redelivers it by hand.
    cfg.redelivery = Some(RedeliverySettings {
        interval: Duration::from_secs(1),
        grace: Duration::ZERO,
        ..RedeliverySettings::default()
    });
    let b = replica(&fake, &aws, cfg, true).await;
    eventually("B's check run", Duration::from_secs(30), || {
        completed_for(&fake.check_runs(REPO), &d.guid)
    })
    .await;
    assert_eq!(b.accepted(), 1);
    assert_eq!(runs_for(&fake, &d.guid), 1);
    let attempts: Vec<FakeDelivery> = fake
        .deliveries()
        .into_iter()
        .filter(|x| x.guid == d.guid)
        .collect();
    assert!(
        attempts
            .iter()
            .any(|x| x.redelivery && x.status_code == 503),
        "redelivered within the lease: {attempts:?}"
    );
    assert_eq!(
        attempts.last().map(|x| x.status_code),
        Some(202),
        "{attempts:?}"
    );
    let n = fake.redelivery_requests(&d.guid) as usize;
    assert_eq!(
        n,
        attempts.len() - 1,
        "each attempt asked for once: {attempts:?}"
    );
    b.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serve_sweep_records_what_it_asked_for_in_the_shared_table() {
    let Some((_moto, aws)) =
        aws("the_serve_sweep_records_what_it_asked_for_in_the_shared_table").await
    else {
        return;
    };
    let fake = fake_with_repo().await;
    // A delivery nobody answered (the hook pointed at a closed port).
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}/webhook", closed.local_addr().unwrap());
    drop(closed);
    fake.set_webhook(&dead, SECRET);
    let d = fake
        .deliver_webhook("push", &push_with_key(&fake, 41))
        .await;
    assert_eq!(d.status_code, 0, "{d:?}");

    let sweeping = || {
        let mut cfg = config();
        cfg.redelivery = Some(RedeliverySettings {
            interval: Duration::from_secs(3600),
            ..RedeliverySettings::default()
        });
        cfg
    };
    // A's start-up sweep asks for it once, records that in the table, and A scans it.
    let a = replica(&fake, &aws, sweeping(), true).await;
    eventually("the redelivered scan", Duration::from_secs(20), || {
        completed_for(&fake.check_runs(REPO), &d.guid)
    })
    .await;
    assert_eq!(fake.redelivery_requests(&d.guid), 1);
    let asked = item(&aws, &format!("{}{}", dynamodb::REDELIVER_PREFIX, d.guid))
        .await
        .expect("the sweep's record");
    assert_eq!(attr(&asked, "asked_attempt"), d.id.to_string());
    // B's start-up sweep: nothing more to ask for.
    let lists = || {
        fake.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.starts_with("/app/hook/deliveries"))
            .count()
    };
    let before = lists();
    let b = replica(&fake, &aws, sweeping(), false).await;
    eventually("B's start-up sweep", Duration::from_secs(10), || {
        lists() > before
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.redelivery_requests(&d.guid), 1);
    assert_eq!(runs_for(&fake, &d.guid), 1);
    a.server.shutdown().await.unwrap();
    b.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_missing_table_is_a_start_up_error_naming_the_table_and_the_call() {
    let Some((_moto, aws)) =
        aws("a_missing_table_is_a_start_up_error_naming_the_table_and_the_call").await
    else {
        return;
    };
    let err = dynamodb::connect(&aws, "no-such-table").await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("`no-such-table`"), "{text}");
    assert!(text.contains("DescribeTable"), "{text}");
    assert!(text.contains("ResourceNotFound"), "{text}");
    assert!(text.contains("us-east-1"), "{text}");
    // A table with another key is refused too.
    common::create_table_keyed(&aws_sdk_dynamodb::Client::new(&aws), "wrong-key", "id").await;
    let text = dynamodb::connect(&aws, "wrong-key")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("`wrong-key`") && text.contains("delivery_id"),
        "{text}"
    );
    assert!(dynamodb::connect(&aws, TABLE).await.is_ok());
}
