//! Flood benchmark of the GitHub App server (`opsbot app serve`, release build) against the
//! in-process fake GitHub, on loopback only. Run through `tests/bench/app.sh`, which builds
//! the binary and passes it in `OPSBOT_BIN`. Bounded in count and time:
//!
//! - `APP_BENCH_SECS` (default 10) seconds of signed `push` deliveries from
//!   `APP_BENCH_CONNECTIONS` (default 64) connections, at most `APP_BENCH_MAX` (200,000);
//! - then the drain (every 202 must end in a completed check run; at most 120 s);
//! - then `APP_BENCH_SLOW` (default 500) slow clients sending one header byte a second;
//! - then SIGTERM during a burst of scans: time to exit and what was left in progress.
//!
//! Prints deliveries/s, p50/p99 latency, peak RSS (VmHWM of the server process), time to
//! drain, the 202s that ended in a completed check run, slow-client behaviour and
//! shutdown time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use opsbot_tests::fake_github::{FailureRule, FakeGitHub};
use sha2::Sha256;
use tokio::io::AsyncWriteExt;

const SECRET: &str = "bench-webhook-secret";
const REPO: &str = "acme/infra";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn sign(body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn start_server(bin: &str, fake: &FakeGitHub, port: u16) -> Child {
    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/github/app-test-key.pem"
    );
    let child = Command::new(bin)
        .args(["app", "serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("GITHUB_API_URL", fake.url())
        .env("GITHUB_APP_ID", "4242")
        .env("GITHUB_APP_PRIVATE_KEY_PATH", key)
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env("OPSBOT__APP__HEADER_TIMEOUT_SECS", "2")
        .env("OPSBOT__APP__SHUTDOWN_DEADLINE_SECS", "5")
        .env("OPSBOT__APP__REDELIVER_INTERVAL_SECS", "0")
        .env("RUST_LOG", "error")
        .env_remove("GITHUB_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn completed(fake: &FakeGitHub, guids: &HashSet<String>) -> (usize, usize, usize) {
    let mut done = 0;
    let mut cancelled = 0;
    let mut in_progress = 0;
    for r in fake.check_runs(REPO) {
        let ours = r.external_id.as_ref().is_some_and(|g| guids.contains(g));
        if !ours {
            continue;
        }
        match (r.status.as_str(), r.conclusion.as_deref()) {
            ("completed", Some("cancelled")) => cancelled += 1,
            ("completed", _) => done += 1,
            _ => in_progress += 1,
        }
    }
    (done, cancelled, in_progress)
}

struct Flood {
    accepted: HashSet<String>,
    statuses: std::collections::BTreeMap<u16, u64>,
    latencies_us: Vec<u64>,
    elapsed: Duration,
    retry_after_seen: bool,
}

async fn flood(url: &str, body: Arc<Vec<u8>>, conns: u64, secs: u64, max: u64) -> Flood {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(conns as usize)
        .build()
        .unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let sig = sign(&body);
    let mut tasks = Vec::new();
    for c in 0..conns {
        let (client, body, sent, sig, url) = (
            client.clone(),
            body.clone(),
            sent.clone(),
            sig.clone(),
            url.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut out: Vec<(String, u16, u64, bool)> = Vec::new();
            let mut n = 0u64;
            while Instant::now() < until && sent.fetch_add(1, Ordering::Relaxed) < max {
                n += 1;
                let guid = format!("bench-{c}-{n}");
                let t = Instant::now();
                let resp = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-github-event", "push")
                    .header("x-github-delivery", &guid)
                    .header("x-hub-signature-256", &sig)
                    .body(body.as_ref().clone())
                    .send()
                    .await;
                let (status, retry) = match resp {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let retry = r.headers().contains_key("retry-after");
                        let _ = r.bytes().await;
                        (s, retry)
                    }
                    Err(_) => (0, false),
                };
                out.push((guid, status, t.elapsed().as_micros() as u64, retry));
            }
            out
        }));
    }
    let mut f = Flood {
        accepted: HashSet::new(),
        statuses: Default::default(),
        latencies_us: Vec::new(),
        elapsed: Duration::ZERO,
        retry_after_seen: false,
    };
    for t in tasks {
        for (guid, status, lat, retry) in t.await.unwrap() {
            *f.statuses.entry(status).or_default() += 1;
            f.latencies_us.push(lat);
            if status == 202 {
                f.accepted.insert(guid);
            }
            if status == 503 && retry {
                f.retry_after_seen = true;
            }
        }
    }
    f.elapsed = started.elapsed();
    f.latencies_us.sort_unstable();
    f
}

fn main() {
    let bin = std::env::var("OPSBOT_BIN").expect("set OPSBOT_BIN (tests/bench/app.sh does)");
    let secs = env_num("APP_BENCH_SECS", 10).min(60);
    let conns = env_num("APP_BENCH_CONNECTIONS", 64).min(256);
    let max = env_num("APP_BENCH_MAX", 200_000).min(1_000_000);
    let slow = env_num("APP_BENCH_SLOW", 500).min(2_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let fake = FakeGitHub::start().await;
        fake.create_repo(REPO);
        fake.add_installation(77, &[REPO]);
        let before = fake.commit_files(REPO, "main", &[("a.txt", "a\n")], "a");
        let after = fake.commit_files(
            REPO,
            "main",
            &[("app.py", "def f():\n    return 1\n"), ("README.md", "# bench\n")],
            "change",
        );
        let body = Arc::new(
            serde_json::to_vec(&serde_json::json!({
                "ref": "refs/heads/main", "before": before, "after": after,
                "created": false, "deleted": false, "forced": false,
                "commits": [{ "id": after, "message": "change" }],
                "head_commit": { "id": after },
                "repository": { "id": 1, "name": "infra", "full_name": REPO,
                                "owner": { "login": "acme", "name": "acme" }, "default_branch": "main" },
                "installation": { "id": 77 }
            }))
            .unwrap(),
        );
        let port = free_port();
        let mut child = start_server(&bin, &fake, port);
        let pid = child.id();
        let url = format!("http://127.0.0.1:{port}/webhook");
        println!("opsbot app serve (pid {pid}) vs in-process fake GitHub; {conns} connections, {secs} s, at most {max} deliveries");

        // 1. Flood.
        let rss_peak_flood = Arc::new(AtomicU64::new(0));
        let sampler = {
            let peak = rss_peak_flood.clone();
            tokio::spawn(async move {
                loop {
                    peak.fetch_max(status_field(pid, "VmRSS:"), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let f = flood(&url, body.clone(), conns, secs, max).await;
        let total: u64 = f.statuses.values().sum();
        println!(
            "flood: {total} deliveries in {:.1} s = {:.0} deliveries/s; statuses {:?}; 503 with Retry-After: {}",
            f.elapsed.as_secs_f64(),
            total as f64 / f.elapsed.as_secs_f64(),
            f.statuses,
            f.retry_after_seen
        );
        println!(
            "latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            percentile(&f.latencies_us, 0.5),
            percentile(&f.latencies_us, 0.99),
            percentile(&f.latencies_us, 1.0)
        );

        // 2. Drain: every 202 must end in a completed check run.
        let t = Instant::now();
        let accepted = f.accepted.len();
        let mut last = (0, 0, 0);
        while t.elapsed() < Duration::from_secs(120) {
            last = completed(&fake, &f.accepted);
            if last.0 + last.1 >= accepted && last.2 == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "drain: {:.2} s after the flood; 202s: {accepted}, ended in a completed check run: {} (cancelled {}, in progress {}){}",
            t.elapsed().as_secs_f64(),
            last.0,
            last.1,
            last.2,
            if last.0 == accepted { " — all" } else { " — MISSING SOME" }
        );
        println!(
            "memory: peak RSS {} MB (VmHWM), sampled max {} MB",
            status_field(pid, "VmHWM:") / 1024,
            rss_peak_flood.load(Ordering::Relaxed) / 1024
        );

        // 3. Slow clients: one header byte a second.
        let fds_before = open_fds(pid);
        let started = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..slow {
            handles.push(tokio::spawn(async move {
                let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                    return Duration::ZERO;
                };
                let t = Instant::now();
                for b in b"POST /webhook HTTP/1.1\r\nHost: bench\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa".iter() {
                    if s.write_all(&[*b]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if t.elapsed() > Duration::from_secs(30) {
                        break;
                    }
                }
                t.elapsed()
            }));
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let fds_during = open_fds(pid);
        let health_t = Instant::now();
        let health = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        let health_ms = health_t.elapsed().as_millis();
        let mut held: Vec<Duration> = Vec::new();
        for h in handles {
            held.push(h.await.unwrap());
        }
        held.sort();
        tokio::time::sleep(Duration::from_millis(500)).await;
        println!(
            "slow clients: {slow} sending a header byte a second: held {:.1} s (median), {:.1} s (max) before being dropped; \
             server fds {fds_before} → {fds_during} during → {} after; /healthz meanwhile: {health} in {health_ms} ms; total {:.1} s",
            held.get(held.len() / 2).map_or(0.0, Duration::as_secs_f64),
            held.last().map_or(0.0, Duration::as_secs_f64),
            open_fds(pid),
            started.elapsed().as_secs_f64()
        );

        // 4. SIGTERM during scans: slow GitHub (every compare waits 2 s), then a burst.
        fake.fail_next(FailureRule::secondary_rate_limit("/compare/", 1_000, 2));
        let burst = flood(&url, body.clone(), 16, 1, 300).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t = Instant::now();
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if t.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                break child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let exit = t.elapsed();
        let (done, cancelled, in_progress) = completed(&fake, &burst.accepted);
        println!(
            "shutdown: SIGTERM with {} accepted scans → exited ({status}) in {:.2} s (deadline 5 s); \
             check runs completed {done}, cancelled {cancelled}, left in progress {in_progress}; \
             not started (for redelivery) {}",
            burst.accepted.len(),
            exit.as_secs_f64(),
            burst.accepted.len() - done - cancelled - in_progress
        );
        sampler.abort();
    });
}
