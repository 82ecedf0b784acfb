//! Runs the fake GitHub standalone for manual trials:
//!
//! ```text
//! cargo run -p opsbot-tests --bin fake-github -- [ADDR] [owner/name ...]
//! ```
//!
//! ADDR defaults to 127.0.0.1:8099. It prints the variables to export so `opsbot` talks
//! to it, and serves until Ctrl-C. State lives in memory only.

use opsbot_tests::fake_github::{FakeGitHub, FakeOptions, TEST_TOKEN};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8099".to_string());
    let repos: Vec<String> = args.collect();
    let repos = if repos.is_empty() {
        vec!["acme/infra".to_string()]
    } else {
        repos
    };
    let fake = FakeGitHub::serve(FakeOptions::default(), &addr).await?;
    for r in &repos {
        fake.create_repo(r);
    }
    println!("fake GitHub listening; export:");
    println!("  GITHUB_API_URL={}", fake.url());
    println!("  GITHUB_TOKEN={TEST_TOKEN}");
    println!("  GITHUB_REPOSITORY={}", repos[0]);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
