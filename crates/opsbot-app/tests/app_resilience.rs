//! End to end, under load and faults: the fake GitHub sends the deliveries (signed, with
//! GitHub's headers, recorded in its delivery log as GitHub does) to the App server running
//! in-process, and serves the App's delivery endpoints for the redelivery sweep.
//!
//! Small versions of the properties the benchmark (tests/bench/app.sh) measures at scale:
//! a full queue answers 503 and every 202 ends in a completed check run; slow clients are
//! cut off; a shutdown completes started runs as `cancelled`; every commit of a push is
//! scanned; a restart between delivery and scan is recovered by redelivery; and every
//! payload of the GitHub webhook corpus goes through the server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{
    NULL_SHA, REPO, SECRET, aws_key, completed_for, eventually, fake_with_repo, push_payload,
    settings,
};
use opsbot_app::webhook::{self, Route};
use opsbot_app::{AppConfig, AppState, Limits, RedeliverySettings, ServerHandle, Sweeper};
use opsbot_tests::fake_github::{FailureRule, FakeGitHub};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config() -> AppConfig {
    AppConfig::new(SecretString::from(SECRET))
}

async fn start_server(fake: &FakeGitHub, config: AppConfig) -> (AppState, ServerHandle) {
    let state = opsbot_app::app_state(config, &settings(fake)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // GitHub knows the hook's address before the server starts: its start-up sweep may ask
    // for a redelivery at once, which must reach this server, not the previous one.
    let addr = listener.local_addr().unwrap();
    fake.set_webhook(&format!("http://{addr}/webhook"), SECRET);
    let server = opsbot_app::serve(listener, state.clone()).unwrap();
    (state, server)
}

fn sweeper(fake: &FakeGitHub, state: &AppState) -> Sweeper {
    let _ = fake;
    Sweeper::new(
        state.worker().app().clone(),
        RedeliverySettings {
            grace: Duration::ZERO,
            ..RedeliverySettings::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_and_redelivery_completes_every_delivery() {
    let fake = fake_with_repo().await;
    let before = fake.commit_files(REPO, "main", &[("a.txt", "a\n")], "a");
    let after = fake.commit_files(
        REPO,
        "main",
        &[("k.env", &format!("K={}\n", aws_key(1)))],
        "k",
    );
    let mut cfg = config();
    cfg.max_concurrent_scans = 1;
    cfg.queue_capacity = 2;
    cfg.retry_after = Duration::from_secs(7);
    let (state, _server) = start_server(&fake, cfg).await;
    let body = push_payload("refs/heads/main", &before, &after, &[&after]);

    // 24 deliveries at once: only 3 fit (1 running + 2 queued) until one finishes.
    let sends = (0..24).map(|_| fake.deliver_webhook("push", &body));
    let results = futures_join_all(sends).await;
    let accepted: Vec<&str> = results
        .iter()
        .filter(|d| d.status_code == 202)
        .map(|d| d.guid.as_str())
        .collect();
    let refused: Vec<_> = results.iter().filter(|d| d.status_code == 503).collect();
    assert_eq!(accepted.len() + refused.len(), 24, "{results:?}");
    assert!(accepted.len() >= 3, "{results:?}");
    assert!(
        !refused.is_empty(),
        "nothing refused: the queue is not bounded"
    );
    assert!(
        refused.iter().all(|d| d.response.contains("queue is full")),
        "{refused:?}"
    );
    assert!(state.in_flight() <= 3);

    // Every 202 ends in a completed check run.
    eventually("accepted scans", Duration::from_secs(20), || {
        let runs = fake.check_runs(REPO);
        accepted.iter().all(|g| completed_for(&runs, g))
    })
    .await;

    // The 503s are redelivered by the sweep (once each) until all are done.
    let sweep = sweeper(&fake, &state);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let runs = fake.check_runs(REPO);
        if results.iter().all(|d| completed_for(&runs, &d.guid)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "redelivery did not complete every delivery"
        );
        let _ = sweep
            .sweep(state.worker(), Duration::from_secs(600), |g| {
                state.finished_here(g)
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Each failed delivery id asked for at most once per sweeper... and a new sweeper
    // asks only for what is still not done: nothing.
    let fresh = sweeper(&fake, &state);
    let report = fresh
        .sweep(state.worker(), Duration::from_secs(600), |_| false)
        .await
        .unwrap();
    assert!(report.redelivered.is_empty(), "{report:?}");
    assert!(report.verified > 0);
    for d in results.iter().filter(|d| d.status_code == 503) {
        assert!(fake.redelivery_requests(&d.guid) >= 1);
    }
    for g in &accepted {
        assert_eq!(
            fake.redelivery_requests(g),
            0,
            "a 202 that completed is not redelivered"
        );
    }
    // One completed run per delivery id, never two for the same id.
    let runs = fake.check_runs(REPO);
    let mut ids = HashSet::new();
    for r in runs
        .iter()
        .filter(|r| r.conclusion.as_deref() != Some("cancelled"))
    {
        assert!(
            ids.insert(r.external_id.clone()),
            "two runs for {:?}",
            r.external_id
        );
    }
    assert_eq!(ids.len(), 24);
}

async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futs.collect();
    let mut out = Vec::with_capacity(handles.len());
    // Start them all, then collect (join_all without the futures crate).
    let mut pinned: Vec<_> = handles.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if done[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => done[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.extend(done.into_iter().flatten());
    out
}

#[tokio::test]
async fn slow_clients_are_cut_off_and_a_cut_short_body_is_408_not_413() {
    let fake = fake_with_repo().await;
    let mut cfg = config();
    cfg.limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        body_read_timeout: Duration::from_millis(300),
        keep_alive_timeout: Duration::from_millis(400),
        max_connections: 8,
    };
    let (state, server) = start_server(&fake, cfg).await;
    let addr = server.addr();

    // Headers one byte at a time: dropped after the header read timeout.
    let started = Instant::now();
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut closed = false;
    for b in b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
        if slow.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(2), slow.read(&mut buf)).await;
    assert!(
        closed || matches!(n, Ok(Ok(0)) | Ok(Err(_))),
        "slow-header client still connected: {n:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "held for {:?}",
        started.elapsed()
    );

    // A body cut short with the connection held open: 408, not 413.
    let mut cut = tokio::net::TcpStream::connect(addr).await.unwrap();
    cut.write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"ref\":")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), cut.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("not received within"), "{answer}");

    // A body cut short by the client closing: counted, nothing accepted.
    let mut gone = tokio::net::TcpStream::connect(addr).await.unwrap();
    gone.write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"a\"")
        .await
        .unwrap();
    drop(gone);
    eventually("cut-short count", Duration::from_secs(3), || {
        state
            .stats()
            .cut_short
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1
    })
    .await;

    // An idle keep-alive connection is closed after the keep-alive timeout.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = vec![0u8; 4096];
    let n = idle.read(&mut got).await.unwrap();
    assert!(String::from_utf8_lossy(&got[..n]).starts_with("HTTP/1.1 200"));
    let t = Instant::now();
    let rest = tokio::time::timeout(Duration::from_secs(3), idle.read(&mut got)).await;
    assert!(matches!(rest, Ok(Ok(0)) | Ok(Err(_))), "{rest:?}");
    assert!(t.elapsed() < Duration::from_secs(2));

    // Connection cap: 8 silent connections fill it; once they time out, service resumes.
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let health = reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(
        state
            .stats()
            .accepted
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_scans_completes_started_runs_as_cancelled() {
    let fake = fake_with_repo().await;
    let before = fake.commit_files(REPO, "main", &[("a.txt", "a\n")], "a");
    let after = fake.commit_files(
        REPO,
        "main",
        &[("k.env", &format!("K={}\n", aws_key(2)))],
        "k",
    );
    // Compare answers "wait 3 s" (a secondary rate limit): the scans hang after creating
    // their check runs.
    fake.fail_next(FailureRule::secondary_rate_limit("/compare/", 2, 3));
    let mut cfg = config();
    cfg.max_concurrent_scans = 2;
    cfg.queue_capacity = 4;
    cfg.shutdown_deadline = Duration::from_millis(300);
    let (state, server) = start_server(&fake, cfg).await;
    let body = push_payload("refs/heads/main", &before, &after, &[&after]);
    let mut guids = Vec::new();
    for _ in 0..5 {
        let d = fake.deliver_webhook("push", &body).await;
        assert_eq!(d.status_code, 202);
        guids.push(d.guid);
    }
    eventually("two runs in progress", Duration::from_secs(5), || {
        fake.check_runs(REPO)
            .iter()
            .filter(|r| r.status == "in_progress")
            .count()
            == 2
    })
    .await;
    let t = Instant::now();
    server.shutdown().await.unwrap();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    let runs = fake.check_runs(REPO);
    assert_eq!(
        runs.len(),
        2,
        "queued scans must not start during the drain: {runs:?}"
    );
    for r in &runs {
        assert_eq!(r.status, "completed");
        assert_eq!(r.conclusion.as_deref(), Some("cancelled"));
        assert!(
            r.summary.as_deref().unwrap().contains("sent again"),
            "{:?}",
            r.summary
        );
    }
    let s = state.stats();
    assert_eq!(s.cancelled.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert_eq!(s.not_started.load(std::sync::atomic::Ordering::Relaxed), 3);

    // The next process redelivers all five (cancelled or never started) and scans them.
    let (state2, _server2) = start_server(&fake, config()).await;
    let report = sweeper(&fake, &state2)
        .sweep(state2.worker(), Duration::from_secs(600), |_| false)
        .await
        .unwrap();
    assert_eq!(report.redelivered.len(), 5, "{report:?}");
    eventually("redelivered scans", Duration::from_secs(20), || {
        let runs = fake.check_runs(REPO);
        guids.iter().all(|g| completed_for(&runs, g))
    })
    .await;
}

#[tokio::test]
async fn a_second_shutdown_request_stops_at_once_after_the_clean_up() {
    let fake = fake_with_repo().await;
    let before = fake.commit_files(REPO, "main", &[("a.txt", "a\n")], "a");
    let after = fake.commit_files(REPO, "main", &[("b.txt", "b\n")], "b");
    fake.fail_next(FailureRule::secondary_rate_limit("/compare/", 100, 5));
    let mut cfg = config();
    cfg.shutdown_deadline = Duration::from_secs(60);
    let (_state, server) = start_server(&fake, cfg).await;
    let body = push_payload("refs/heads/main", &before, &after, &[&after]);
    assert_eq!(fake.deliver_webhook("push", &body).await.status_code, 202);
    eventually("run in progress", Duration::from_secs(5), || {
        fake.check_runs(REPO)
            .iter()
            .any(|r| r.status == "in_progress")
    })
    .await;
    let tokens = server.shutdown_tokens();
    let t = Instant::now();
    tokens.request();
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokens.request();
    server.wait().await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    let runs = fake.check_runs(REPO);
    assert_eq!(runs[0].conclusion.as_deref(), Some("cancelled"));
}

#[tokio::test]
async fn every_commit_of_a_first_push_a_force_push_and_a_long_push_is_scanned() {
    let fake = fake_with_repo().await;
    let (_state, _server) = start_server(&fake, config()).await;

    // First push to the default branch (before = 40 zeros): a key added by commit 1 and
    // removed by commit 3 is still found, and the annotation names commit 1.
    let key = aws_key(3);
    let c1 = fake.commit_files(
        REPO,
        "main",
        &[("deploy.env", &format!("KEY={key}\n"))],
        "c1",
    );
    let c2 = fake.commit_files(REPO, "main", &[("app.py", "print(1)\n")], "c2");
    let c3 = fake.commit_files(REPO, "main", &[("deploy.env", "KEY=from-vault\n")], "c3");
    let d = fake
        .deliver_webhook(
            "push",
            &push_payload("refs/heads/main", NULL_SHA, &c3, &[&c1, &c2, &c3]),
        )
        .await;
    assert_eq!(d.status_code, 202);
    eventually("first push scan", Duration::from_secs(10), || {
        completed_for(&fake.check_runs(REPO), &d.guid)
    })
    .await;
    let run = fake
        .check_runs(REPO)
        .into_iter()
        .find(|r| r.external_id.as_deref() == Some(d.guid.as_str()))
        .unwrap();
    assert_eq!(run.conclusion.as_deref(), Some("failure"), "{run:?}");
    assert_eq!(run.annotations.len(), 1);
    assert_eq!(run.annotations[0]["path"], "deploy.env");
    let msg = run.annotations[0]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("added in commit {}", &c1[..7])),
        "{msg}"
    );

    // A force-push: the new commits (not reachable from the old tip) are scanned.
    let base = fake.commit_files(REPO, "topic", &[("t.txt", "t\n")], "topic base");
    let old_tip = fake.commit_files(REPO, "topic", &[("old.txt", "old\n")], "old");
    let _ = old_tip;
    // Rewrite: new commits on top of `base` (the fake's branch moves; build them on a
    // side branch and then point topic at them).
    let side_key = aws_key(4);
    let n1 = {
        fake.commit_files(REPO, "rewrite", &[("seed.txt", "x\n")], "side root");
        fake.commit_files(
            REPO,
            "rewrite",
            &[("s.env", &format!("S={side_key}\n"))],
            "n1",
        )
    };
    let n2 = fake.commit_files(REPO, "rewrite", &[("s.env", "S=removed\n")], "n2");
    let _ = base;
    let mut payload: Value = serde_json::from_slice(&push_payload(
        "refs/heads/rewrite",
        &old_tip,
        &n2,
        &[&n1, &n2],
    ))
    .unwrap();
    payload["forced"] = json!(true);
    let d = fake
        .deliver_webhook("push", &serde_json::to_vec(&payload).unwrap())
        .await;
    assert_eq!(d.status_code, 202);
    eventually("force-push scan", Duration::from_secs(10), || {
        completed_for(&fake.check_runs(REPO), &d.guid)
    })
    .await;
    let run = fake
        .check_runs(REPO)
        .into_iter()
        .find(|r| r.external_id.as_deref() == Some(d.guid.as_str()))
        .unwrap();
    let paths: Vec<&str> = run
        .annotations
        .iter()
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, vec!["s.env"], "{run:?}");

    // 260 commits (past compare's 250): paged, every commit read.
    let start = fake.commit_files(REPO, "long", &[("l.txt", "0\n")], "long base");
    let mut tip = start.clone();
    let mut with_key = String::new();
    for i in 1..=260 {
        let content = if i == 255 {
            format!("K={}\n", aws_key(5))
        } else {
            format!("{i}\n")
        };
        tip = fake.commit_files(REPO, "long", &[("l.txt", &content)], &format!("c{i}"));
        if i == 255 {
            with_key = tip.clone();
        }
    }
    let d = fake
        .deliver_webhook(
            "push",
            &push_payload("refs/heads/long", &start, &tip, &[&tip]),
        )
        .await;
    assert_eq!(d.status_code, 202);
    eventually("long push scan", Duration::from_secs(30), || {
        completed_for(&fake.check_runs(REPO), &d.guid)
    })
    .await;
    let run = fake
        .check_runs(REPO)
        .into_iter()
        .find(|r| r.external_id.as_deref() == Some(d.guid.as_str()))
        .unwrap();
    assert_eq!(run.annotations.len(), 1, "{run:?}");
    assert!(
        run.annotations[0]["message"]
            .as_str()
            .unwrap()
            .contains(&with_key[..7])
    );
    assert!(
        run.summary
            .as_deref()
            .unwrap()
            .contains("260 commits read one by one"),
        "{:?}",
        run.summary
    );
    let pages = fake
        .requests()
        .iter()
        .filter(|r| r.path.contains(&format!("/compare/{start}...{tip}")))
        .count();
    assert_eq!(pages, 3, "compare read in pages of 100");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_between_delivery_and_scan_is_recovered_by_redelivery() {
    let fake = fake_with_repo().await;
    let before = fake.commit_files(REPO, "main", &[("a.txt", "a\n")], "a");
    let after = fake.commit_files(
        REPO,
        "main",
        &[("k.env", &format!("K={}\n", aws_key(6)))],
        "k",
    );
    // The first installation token takes 3 s: the scan is accepted, then the process dies.
    fake.fail_next(FailureRule::secondary_rate_limit("/access_tokens", 1, 3));
    let (_state, server) = start_server(&fake, config()).await;
    let d = fake
        .deliver_webhook(
            "push",
            &push_payload("refs/heads/main", &before, &after, &[&after]),
        )
        .await;
    assert_eq!(d.status_code, 202);
    // Die while the token request is being held (not before it was sent: then the held
    // answer would meet the next process instead).
    eventually("the first token request", Duration::from_secs(30), || {
        fake.requests()
            .iter()
            .any(|r| r.path.contains("/access_tokens"))
    })
    .await;
    server.abandon().await;
    assert!(fake.check_runs(REPO).is_empty());

    // A new process: its start-up sweep finds the delivery accepted but not scanned.
    let mut cfg = config();
    cfg.redelivery = Some(RedeliverySettings {
        interval: Duration::from_secs(3600),
        grace: Duration::ZERO,
        ..RedeliverySettings::default()
    });
    let (_state2, server2) = start_server(&fake, cfg).await;
    eventually("redelivered scan", Duration::from_secs(60), || {
        completed_for(&fake.check_runs(REPO), &d.guid)
    })
    .await;
    assert_eq!(fake.redelivery_requests(&d.guid), 1);
    let runs = fake.check_runs(REPO);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].conclusion.as_deref(), Some("failure"));
    let attempts: Vec<_> = fake
        .deliveries()
        .into_iter()
        .filter(|x| x.guid == d.guid)
        .collect();
    assert_eq!(attempts.len(), 2);
    assert!(
        attempts[1].redelivery && attempts[1].status_code == 202,
        "{attempts:?}"
    );
    server2.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failed_installation_token_is_blamed_on_the_token_not_the_check_run() {
    let fake = FakeGitHub::start().await;
    fake.create_repo(REPO); // no installation registered
    let (state, _server) = start_server(&fake, config()).await;
    let before = fake.commit_files(REPO, "main", &[("a.txt", "a\n")], "a");
    let body = push_payload("refs/heads/main", &before, &before, &[&before]);
    let d = fake.deliver_webhook("push", &body).await;
    assert_eq!(d.status_code, 202);
    eventually("failure", Duration::from_secs(10), || {
        state
            .stats()
            .failed
            .load(std::sync::atomic::Ordering::Relaxed)
            == 1
    })
    .await;
    let job = match webhook::route("push", "x", &body).unwrap() {
        Route::Scan(job) => job,
        other => panic!("{other:?}"),
    };
    let err = state.worker().run(&job).await.unwrap_err().to_string();
    assert!(err.contains("authenticate as installation 77"), "{err}");
    assert!(err.contains("access_tokens"), "{err}");
    assert!(!err.contains("create check run"), "{err}");
}

/// Every payload of `${OPSBOT_CORPORA:-../shared/corpora}/github-webhooks` through the server:
/// the status must be what the payload leads to, and a scan must end in a completed check
/// run on the fake (or be left to its open pull request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_payload_goes_through_the_server() {
    let root = std::env::var("OPSBOT_CORPORA")
        .unwrap_or_else(|_| format!("{}/../../../shared/corpora", env!("CARGO_MANIFEST_DIR")));
    let dir = std::path::Path::new(&root).join("github-webhooks");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!(
            "every_corpus_payload_goes_through_the_server: skipped: no corpus at {} (set OPSBOT_CORPORA)",
            dir.display()
        );
        return;
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no payloads in {}", dir.display());
    let fake = FakeGitHub::start().await;
    let (state, _server) = start_server(&fake, config()).await;
    let mut scans = 0;
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let event = name.split('.').next().unwrap().to_owned();
        let bytes = std::fs::read(path).unwrap();
        let payload: Value = serde_json::from_slice(&bytes).unwrap();
        fake.seed_from_payload(&event, &payload);
        let d = fake.deliver_webhook(&event, &bytes).await;
        let expected = webhook::route(&event, &d.guid, &bytes);
        match expected {
            Ok(Route::Ping) => assert_eq!(d.status_code, 200, "{name}: {}", d.response),
            Ok(Route::Ignore(_)) => {
                assert_eq!(d.status_code, 202, "{name}: {}", d.response);
                assert!(d.response.contains("ignored"), "{name}: {}", d.response);
            }
            Err(_) => assert_eq!(d.status_code, 400, "{name}: {}", d.response),
            Ok(Route::Scan(job)) => {
                scans += 1;
                assert_eq!(d.status_code, 202, "{name}: {}", d.response);
                let repo = job.repo.to_string();
                eventually(&name, Duration::from_secs(20), || state.in_flight() == 0).await;
                let done = completed_for(&fake.check_runs(&repo), &d.guid);
                let left_to_pr = job.pushed_branch.is_some() && !fake.pulls(&repo).is_empty();
                assert!(
                    done || left_to_pr,
                    "{name}: no completed check run: {:?}",
                    fake.check_runs(&repo)
                );
                if done {
                    let run = fake
                        .check_runs(&repo)
                        .into_iter()
                        .find(|r| r.external_id.as_deref() == Some(d.guid.as_str()))
                        .unwrap();
                    assert_eq!(run.head_sha, job.head_sha, "{name}");
                    assert_eq!(
                        run.conclusion.as_deref(),
                        Some("success"),
                        "{name}: {run:?}"
                    );
                }
            }
        }
    }
    assert!(scans >= 5, "only {scans} scans in the corpus");
    assert_eq!(
        state
            .stats()
            .failed
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    println!(
        "corpus: {} payloads, {scans} scans, all through the server",
        files.len()
    );
}
