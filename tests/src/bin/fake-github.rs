//! Runs the fake GitHub standalone for manual trials:
//!
//! ```text
//! cargo run -p opsbot-tests --bin fake-github -- [ADDR] [owner/name ...]
//!     [--installation ID:owner/name]... [--seed-from PAYLOAD.json]...
//!     [--webhook URL --webhook-secret SECRET]
//! ```
//!
//! ADDR defaults to 127.0.0.1:8099. The fake knows GitHub App 4242 (the test key in
//! `tests/fixtures/github/`). `--installation` installs it on a repository;
//! `--seed-from` makes the fake hold what a webhook payload refers to (its repository,
//! installation, commits and pull requests; the event is the file name up to the first
//! dot, as in the corpus); `--webhook` is where redeliveries asked for through
//! `POST /app/hook/deliveries/{id}/attempts` are sent. It prints the variables to export
//! and every check run as it completes, and serves until Ctrl-C. State lives in memory.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use opsbot_tests::fake_github::{FakeGitHub, FakeOptions, TEST_TOKEN};

fn usage(msg: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!(
            "{msg}\nusage: fake-github [ADDR] [owner/name ...] [--installation ID:owner/name]... \
             [--seed-from PAYLOAD.json]... [--webhook URL --webhook-secret SECRET]"
        ),
    )
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut addr = None;
    let mut repos: Vec<String> = Vec::new();
    let mut installations: Vec<(u64, String)> = Vec::new();
    let mut seeds: Vec<String> = Vec::new();
    let (mut webhook, mut webhook_secret) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| usage(&format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--installation" => {
                let v = value("--installation")?;
                let (id, repo) = v
                    .split_once(':')
                    .and_then(|(i, r)| Some((i.parse::<u64>().ok()?, r.to_string())))
                    .ok_or_else(|| {
                        usage(&format!("--installation `{v}`: expected ID:owner/name"))
                    })?;
                installations.push((id, repo));
            }
            "--seed-from" => seeds.push(value("--seed-from")?),
            "--webhook" => webhook = Some(value("--webhook")?),
            "--webhook-secret" => webhook_secret = Some(value("--webhook-secret")?),
            "-h" | "--help" => {
                println!(
                    "{}",
                    usage("fake GitHub for local trials")
                        .to_string()
                        .trim_start_matches('\n')
                );
                return Ok(());
            }
            a if a.starts_with("--") => return Err(usage(&format!("unknown option {a}"))),
            a if a.contains('/') => repos.push(a.to_string()),
            a if addr.is_none() => addr = Some(a.to_string()),
            a => return Err(usage(&format!("unexpected argument {a}"))),
        }
    }
    let addr = addr.unwrap_or_else(|| "127.0.0.1:8099".to_string());
    if repos.is_empty() && seeds.is_empty() {
        repos.push("acme/infra".to_string());
    }
    let fake = FakeGitHub::serve(FakeOptions::default(), &addr).await?;
    let mut known: BTreeSet<String> = BTreeSet::new();
    for r in &repos {
        fake.create_repo(r);
        known.insert(r.clone());
    }
    for path in &seeds {
        let bytes = std::fs::read(path).map_err(|e| usage(&format!("--seed-from {path}: {e}")))?;
        let payload: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| usage(&format!("--seed-from {path}: not JSON: {e}")))?;
        let event = Path::new(path)
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split('.').next())
            .unwrap_or_default()
            .to_string();
        fake.seed_from_payload(&event, &payload);
        if let Some(full) = payload["repository"]["full_name"].as_str() {
            known.insert(full.to_string());
        }
        println!("seeded from {path} ({event})");
    }
    for (id, repo) in &installations {
        fake.add_installation(*id, &[repo.as_str()]);
        known.insert(repo.clone());
    }
    if let (Some(url), Some(secret)) = (&webhook, &webhook_secret) {
        fake.set_webhook(url, secret);
    } else if webhook.is_some() || webhook_secret.is_some() {
        return Err(usage("--webhook and --webhook-secret go together"));
    }
    let key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/github/app-test-key.pem"
    );
    println!("fake GitHub listening; export:");
    println!("  GITHUB_API_URL={}", fake.url());
    println!("  GITHUB_TOKEN={TEST_TOKEN}   # as a user; or as the App:");
    println!("  GITHUB_APP_ID=4242 GITHUB_APP_PRIVATE_KEY_PATH={key}");
    if let Some(first) = known.iter().next() {
        println!("  GITHUB_REPOSITORY={first}");
    }

    // Print each check run once it completes.
    let mut reported = BTreeSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            r = tokio::signal::ctrl_c() => return r,
            _ = tick.tick() => {}
        }
        for repo in &known {
            for run in fake.check_runs(repo) {
                if run.status == "completed" && reported.insert(run.id) {
                    println!(
                        "check run {} `{}` on {repo}@{}: {} — {}",
                        run.id,
                        run.name,
                        run.head_sha.get(..7).unwrap_or(&run.head_sha),
                        run.conclusion.as_deref().unwrap_or("?"),
                        run.title.as_deref().unwrap_or("")
                    );
                }
            }
        }
    }
}
