//! The Action's install step (`action.yml`, step `install-opsbot`, which runs
//! `scripts/install.sh`) run as GitHub Actions runs it, against the fake GitHub's releases
//! API serving a real release archive of this very `opsbot` binary, packed by
//! `scripts/package.sh` as the release workflow packs it.
//!
//! Right checksum → installed, on `$GITHUB_PATH`, and it runs; a wrong checksum, a
//! tampered archive or a missing asset → exit 1 with a clear message and nothing installed;
//! no release at all → the cargo fallback (overridden here by `OPSBOT_FALLBACK`).
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use opsbot_tests::fake_github::{FakeGitHub, TEST_TOKEN};
use sha2::{Digest, Sha256};

const REPO: &str = "opsbot/opsbot";
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The target triple `scripts/install.sh` detects on this machine.
fn host_target() -> String {
    let arch = std::env::consts::ARCH;
    match std::env::consts::OS {
        "macos" => format!("{arch}-apple-darwin"),
        _ => format!("{arch}-unknown-linux-gnu"),
    }
}

fn tools_present() -> bool {
    let ok = ["bash", "curl", "tar"].iter().all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !ok {
        eprintln!("SKIP: the install script needs bash, curl and tar on PATH");
    }
    ok
}

/// The `run:` block of the step with `id: <id>` in a workflow or action file.
fn step_script(file: &Path, id: &str) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == format!("id: {id}"))
        .unwrap_or_else(|| panic!("no step {id} in {}", file.display()));
    let run = at
        + lines[at..]
            .iter()
            .position(|l| l.trim() == "run: |")
            .unwrap_or_else(|| panic!("step {id} has no `run: |` block"));
    let indent = lines[run].len() - lines[run].trim_start().len() + 2;
    let mut script = String::new();
    for l in &lines[run + 1..] {
        if !l.trim().is_empty() && l.len() - l.trim_start().len() < indent {
            break;
        }
        script.push_str(l.get(indent..).unwrap_or(""));
        script.push('\n');
    }
    script
}

/// PATH without any directory holding an `opsbot`, so an installed one cannot answer.
fn clean_path() -> String {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty() && !Path::new(d).join("opsbot").exists())
        .collect::<Vec<_>>()
        .join(":")
}

/// A release archive of the `opsbot` binary under test, as the release workflow packs it.
fn archive(dir: &Path) -> (String, Vec<u8>) {
    let out = Command::new("bash")
        .arg(root().join("scripts/package.sh"))
        .args(["cli", &host_target(), env!("CARGO_BIN_EXE_opsbot")])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "package.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    (name, std::fs::read(&path).unwrap())
}

fn sums(entries: &[(&str, &[u8])]) -> Vec<u8> {
    entries
        .iter()
        .map(|(name, bytes)| format!("{}  {name}\n", hex::encode(Sha256::digest(bytes))))
        .collect::<String>()
        .into_bytes()
}

struct Outcome {
    code: i32,
    stderr: String,
    bin_dir: PathBuf,
    github_path: String,
    _tmp: tempfile::TempDir,
}

/// Runs the Action's install step with the environment GitHub Actions gives it.
fn run_action_step(fake: &FakeGitHub, extra_env: &[(&str, &str)]) -> Outcome {
    let tmp = tempfile::tempdir().unwrap();
    let tool_cache = tmp.path().join("toolcache");
    let github_path = tmp.path().join("github_path");
    std::fs::write(&github_path, "").unwrap();
    let script = step_script(&root().join("action.yml"), "install-opsbot");
    let mut cmd = Command::new("bash");
    cmd.args(["-e", "-c", &script])
        .current_dir(tmp.path())
        .env("PATH", clean_path())
        .env("ACTION_PATH", root())
        .env("OPSBOT_VERSION", "")
        .env("GITHUB_TOKEN", TEST_TOKEN)
        .env("GITHUB_API_URL", fake.url())
        .env("GITHUB_ACTIONS", "true")
        .env("RUNNER_TOOL_CACHE", &tool_cache)
        .env("GITHUB_PATH", &github_path)
        .env("HOME", tmp.path())
        .env_remove("OPSBOT_REPO")
        .env_remove("OPSBOT_TARGET")
        .env_remove("OPSBOT_FALLBACK");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let out = cmd.output().unwrap();
    eprintln!(
        "install step: exit {:?} in {} ms",
        out.status.code(),
        started.elapsed().as_millis()
    );
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout),
        bin_dir: tool_cache.join("opsbot").join(VERSION).join("bin"),
        github_path: std::fs::read_to_string(&github_path).unwrap_or_default(),
        _tmp: tmp,
    }
}

async fn fake_with_release() -> FakeGitHub {
    let fake = FakeGitHub::start().await;
    fake.create_repo(REPO);
    fake.add_release(REPO, &format!("v{VERSION}"), false);
    fake
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_checksum_installs_a_binary_that_runs() {
    if !tools_present() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (name, bytes) = archive(work.path());
    let fake = fake_with_release().await;
    let tag = format!("v{VERSION}");
    let lambda = b"PK-not-looked-at".to_vec();
    fake.add_release_asset(
        REPO,
        &tag,
        "SHA256SUMS",
        sums(&[(&name, &bytes), ("opsbot-health-lambda-arm64.zip", &lambda)]),
    );
    fake.add_release_asset(REPO, &tag, &name, bytes);

    let out = run_action_step(&fake, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("verified"), "{}", out.stderr);
    let installed = out.bin_dir.join("opsbot");
    assert_eq!(out.github_path.trim(), out.bin_dir.to_string_lossy());
    let version = Command::new(&installed).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("opsbot {VERSION}")
    );
    // The installed binary does its job: a clean file scans clean (exit 0).
    let clean = work.path().join("clean.txt");
    std::fs::write(&clean, "nothing to see here\n").unwrap();
    let scan = Command::new(&installed)
        .arg("scan")
        .arg(&clean)
        .output()
        .unwrap();
    assert_eq!(scan.status.code(), Some(0));
    // The release was read through the API with the token: release, SHA256SUMS, archive.
    let paths: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.status == 200)
        .map(|r| r.path)
        .collect();
    assert!(paths.contains(&format!("/repos/{REPO}/releases/tags/{tag}")));
    assert_eq!(
        paths
            .iter()
            .filter(|p| p.contains("/releases/assets/"))
            .count(),
        2,
        "{paths:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_checksum_or_tampered_archive_fails_closed() {
    if !tools_present() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (name, bytes) = archive(work.path());
    let tag = format!("v{VERSION}");

    // SHA256SUMS lists another file's hash for the archive.
    let fake = fake_with_release().await;
    fake.add_release_asset(REPO, &tag, "SHA256SUMS", sums(&[(&name, b"other bytes")]));
    fake.add_release_asset(REPO, &tag, &name, bytes.clone());
    let out = run_action_step(&fake, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("checksum mismatch"), "{}", out.stderr);
    assert!(out.stderr.contains("refusing to install"), "{}", out.stderr);
    assert!(out.stderr.contains("::error"), "{}", out.stderr);
    assert!(!out.bin_dir.join("opsbot").exists());
    assert!(out.github_path.is_empty());

    // The archive was altered after SHA256SUMS was written.
    let fake = fake_with_release().await;
    fake.add_release_asset(REPO, &tag, "SHA256SUMS", sums(&[(&name, &bytes)]));
    let mut tampered = bytes;
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    fake.add_release_asset(REPO, &tag, &name, tampered);
    let out = run_action_step(&fake, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("checksum mismatch"), "{}", out.stderr);
    assert!(!out.bin_dir.join("opsbot").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_asset_or_checksums_fail_closed() {
    if !tools_present() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (name, bytes) = archive(work.path());
    let tag = format!("v{VERSION}");

    // A release without this platform's archive.
    let fake = fake_with_release().await;
    fake.add_release_asset(REPO, &tag, "SHA256SUMS", sums(&[(&name, &bytes)]));
    fake.add_release_asset(REPO, &tag, "opsbot-sparc-unknown-linux-gnu.tar.gz", vec![1]);
    let out = run_action_step(&fake, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("has no asset '{name}'")),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("opsbot-sparc-unknown-linux-gnu.tar.gz"));
    assert!(!out.bin_dir.join("opsbot").exists());

    // A release without SHA256SUMS: nothing to verify against, so nothing installed.
    let fake = fake_with_release().await;
    fake.add_release_asset(REPO, &tag, &name, bytes);
    let out = run_action_step(&fake, &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("has no asset 'SHA256SUMS'"),
        "{}",
        out.stderr
    );
    assert!(!out.bin_dir.join("opsbot").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_release_falls_back_to_building() {
    if !tools_present() {
        return;
    }
    let fake = FakeGitHub::start().await;
    fake.create_repo(REPO);
    // Stands in for `cargo install`: records what it was asked for.
    let fallback = r#"mkdir -p "$OPSBOT_BIN_DIR" && echo "build $OPSBOT_VERSION" > "$OPSBOT_BIN_DIR/fallback-ran""#;
    let out = run_action_step(&fake, &[("OPSBOT_FALLBACK", fallback)]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("no release v{VERSION} of {REPO}")),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(out.bin_dir.join("fallback-ran")).unwrap(),
        format!("build {VERSION}\n")
    );
    assert_eq!(out.github_path.trim(), out.bin_dir.to_string_lossy());

    // With the fallback off, no release is an error.
    let out = run_action_step(&fake, &[("OPSBOT_FALLBACK", "none")]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("fallback is off"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_zip_download_is_verified() {
    if !tools_present() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let zip = work.path().join("bootstrap");
    std::fs::write(&zip, "#!/bin/sh\n").unwrap();
    let out = Command::new("bash")
        .arg(root().join("scripts/package.sh"))
        .args(["lambda", "opsbot-health-lambda", "arm64"])
        .arg(&zip)
        .arg(work.path().join("dist"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let zip_name = "opsbot-health-lambda-arm64.zip";
    let bytes = std::fs::read(work.path().join("dist").join(zip_name)).unwrap();
    let fake = fake_with_release().await;
    let tag = format!("v{VERSION}");
    fake.add_release_asset(REPO, &tag, "SHA256SUMS", sums(&[(zip_name, &bytes)]));
    fake.add_release_asset(REPO, &tag, zip_name, bytes.clone());

    let dest = work.path().join("download");
    let run = |asset: &str| {
        Command::new("bash")
            .arg(root().join("scripts/install.sh"))
            .args(["--version", VERSION, "--asset", asset, "--dest"])
            .arg(&dest)
            .env("GITHUB_API_URL", fake.url())
            .env("GITHUB_TOKEN", TEST_TOKEN)
            .env_remove("GITHUB_ACTIONS")
            .output()
            .unwrap()
    };
    let out = run(zip_name);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(dest.join(zip_name)).unwrap(), bytes);
    // An asset the release does not have is an error, never a build.
    let out = run("opsbot-app-lambda-arm64.zip");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no asset"));
}

/// The `opsbot-scan-release` pre-commit hook: the first commit fetches the release (verified)
/// into the cache, later ones use the cached binary without asking GitHub again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_commit_hook_fetches_once_then_scans_staged_lines() {
    if !tools_present() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (name, bytes) = archive(work.path());
    let fake = fake_with_release().await;
    let tag = format!("v{VERSION}");
    fake.add_release_asset(REPO, &tag, "SHA256SUMS", sums(&[(&name, &bytes)]));
    fake.add_release_asset(REPO, &tag, &name, bytes);

    let repo = work.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(&repo)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    std::fs::write(repo.join("notes.txt"), "nothing secret here\n").unwrap();
    git(&["add", "notes.txt"]);

    let cache = work.path().join("cache");
    let hook = || {
        Command::new("bash")
            .arg(root().join("scripts/pre-commit-hook.sh"))
            .current_dir(&repo)
            .env("PATH", clean_path())
            .env("XDG_CACHE_HOME", &cache)
            .env("GITHUB_API_URL", fake.url())
            .env("GITHUB_TOKEN", TEST_TOKEN)
            .env_remove("OPSBOT_CACHE_DIR")
            .output()
            .unwrap()
    };
    let first = hook();
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("fetching opsbot"), "{stderr}");
    assert!(
        cache
            .join("opsbot")
            .join(VERSION)
            .join("bin/opsbot")
            .exists()
    );
    let asked = fake.requests().len();
    assert!(asked >= 3, "release, SHA256SUMS and archive: {asked}");

    let second = hook();
    assert_eq!(second.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&second.stderr).contains("fetching"));
    assert_eq!(
        fake.requests().len(),
        asked,
        "the cached binary needs no GitHub"
    );
}
