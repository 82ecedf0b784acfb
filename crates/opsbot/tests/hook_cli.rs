//! `opsbot hook install` in a real temporary git repository: the pre-commit hook blocks a
//! commit that adds a key and lets a clean one through; foreign hooks are protected;
//! `core.hooksPath` is honoured; `uninstall` restores what was there.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const OPSBOT: &str = env!("CARGO_BIN_EXE_opsbot");

/// PATH with the opsbot under test first, as a developer's shell would have it.
fn path_with_opsbot() -> String {
    let bin_dir = Path::new(OPSBOT).parent().unwrap();
    format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn git(repo: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .env("PATH", path_with_opsbot())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", repo)
        .env_remove("OPSBOT_CONFIG")
        .output()
        .unwrap()
}

fn opsbot(repo: &Path, args: &[&str]) -> Output {
    Command::new(OPSBOT)
        .args(args)
        .current_dir(repo)
        .env_remove("OPSBOT_CONFIG")
        .output()
        .unwrap()
}

fn new_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    assert!(git(repo, &["init", "-q", "-b", "main"]).status.success());
    git(repo, &["config", "user.name", "Test"]);
    git(repo, &["config", "user.email", "test@example.com"]);
    git(repo, &["config", "commit.gpgsign", "false"]);
    dir
}

/// A valid-looking AWS access key id, assembled at run time.
fn planted_key() -> String {
    ["AKIA", "Z3MHQ5WX", "K2PLV7RT"].concat()
}

fn commits(repo: &Path) -> usize {
    let out = git(repo, &["rev-list", "--count", "--all"]);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_installed_hook_blocks_a_planted_key_and_passes_a_clean_commit() {
    let dir = new_repo();
    let repo = dir.path();
    let out = opsbot(repo, &["hook", "install"]);
    assert!(out.status.success(), "{}", text(&out));
    let hook = repo.join(".git/hooks/pre-commit");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&hook).unwrap().permissions());
    assert_eq!(mode & 0o111, 0o111, "hook must be executable");

    // A clean commit goes through.
    std::fs::write(repo.join("main.tf"), "terraform {}\n").unwrap();
    git(repo, &["add", "main.tf"]);
    let out = git(repo, &["commit", "-q", "-m", "clean"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(commits(repo), 1);

    // A key is refused, and the output names the file and rule but not the key.
    let key = planted_key();
    std::fs::write(
        repo.join("settings.env"),
        format!("REGION=eu-west-1\nAWS_ACCESS_KEY_ID={key}\n"),
    )
    .unwrap();
    git(repo, &["add", "settings.env"]);
    let out = git(repo, &["commit", "-q", "-m", "leak"]);
    let all = text(&out);
    assert!(!out.status.success(), "the commit should be blocked: {all}");
    assert!(
        all.contains("settings.env") && all.contains("aws-access-key-id"),
        "{all}"
    );
    assert!(!all.contains(&key), "the key must not be printed in full");
    assert_eq!(commits(repo), 1);

    // Fixed (marked as a known fixture): the commit passes.
    std::fs::write(
        repo.join("settings.env"),
        format!("REGION=eu-west-1\nAWS_ACCESS_KEY_ID={key} # opsbot:allow test fixture\n"),
    )
    .unwrap();
    git(repo, &["add", "settings.env"]);
    let out = git(repo, &["commit", "-q", "-m", "fixture"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(commits(repo), 2);
}

#[test]
fn a_foreign_hook_is_kept_unless_forced_and_uninstall_restores_it() {
    let dir = new_repo();
    let repo = dir.path();
    let hook = repo.join(".git/hooks/pre-commit");
    std::fs::write(&hook, "#!/bin/sh\necho mine\n").unwrap();

    let out = opsbot(repo, &["hook", "install"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--force"), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&hook).unwrap(),
        "#!/bin/sh\necho mine\n"
    );

    let out = opsbot(repo, &["hook", "install", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        std::fs::read_to_string(&hook)
            .unwrap()
            .contains("scan --staged")
    );
    // Installing again over our own hook needs no --force.
    assert!(opsbot(repo, &["hook", "install"]).status.success());

    let out = opsbot(repo, &["hook", "uninstall"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(&hook).unwrap(),
        "#!/bin/sh\necho mine\n"
    );
    // Uninstall refuses to delete a hook it did not write.
    let out = opsbot(repo, &["hook", "uninstall"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(hook.exists());
}

#[test]
fn core_hooks_path_is_honoured_and_outside_a_repo_is_an_error() {
    let dir = new_repo();
    let repo = dir.path();
    git(repo, &["config", "core.hooksPath", ".githooks"]);
    let out = opsbot(repo, &["hook", "install"]);
    assert!(out.status.success(), "{}", text(&out));
    let hook: PathBuf = repo.join(".githooks/pre-commit");
    assert!(hook.exists());
    assert!(!repo.join(".git/hooks/pre-commit").exists());

    let key = planted_key();
    std::fs::write(repo.join("k.txt"), format!("{key}\n")).unwrap();
    git(repo, &["add", "k.txt"]);
    assert!(!git(repo, &["commit", "-q", "-m", "leak"]).status.success());

    let outside = tempfile::tempdir().unwrap();
    let out = opsbot(outside.path(), &["hook", "install"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("not inside a git repository"),
        "{}",
        text(&out)
    );
}

/// `len` bytes that look like compiled code (a NUL every fourth byte), `secret` NUL-delimited
/// at byte `at` when given.
fn binary(len: usize, at: usize, secret: Option<&str>) -> Vec<u8> {
    let mut x = 0x2545_f491_u32;
    let mut data: Vec<u8> = (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if i % 4 == 0 { 0 } else { (x >> 8) as u8 }
        })
        .collect();
    if let Some(s) = secret {
        data[at - 1] = 0;
        data[at..at + s.len()].copy_from_slice(s.as_bytes());
        data[at + s.len()] = 0;
    }
    data
}

#[test]
fn the_installed_hook_blocks_a_key_inside_a_staged_binary() {
    let dir = new_repo();
    let repo = dir.path();
    let out = opsbot(repo, &["hook", "install"]);
    assert!(out.status.success(), "{}", text(&out));

    // A binary without a secret goes through.
    std::fs::write(repo.join("app.sqlite"), binary(5000, 0, None)).unwrap();
    git(repo, &["add", "app.sqlite"]);
    let out = git(repo, &["commit", "-q", "-m", "db"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(commits(repo), 1);

    // The same database with a key written into it: refused, the path named, the key masked.
    let key = planted_key();
    std::fs::write(
        repo.join("app.sqlite"),
        binary(5000, 3210, Some(&format!("aws_key={key}"))),
    )
    .unwrap();
    git(repo, &["add", "app.sqlite"]);
    let out = git(repo, &["commit", "-q", "-m", "leak"]);
    let all = text(&out);
    assert!(!out.status.success(), "the commit should be blocked: {all}");
    assert!(
        all.contains("app.sqlite") && all.contains("aws-access-key-id"),
        "{all}"
    );
    assert!(!all.contains(&key), "the key must not be printed in full");
    assert_eq!(commits(repo), 1);
}
