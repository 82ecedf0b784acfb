//! The CLI's contract for bad configuration: one line naming the problem, exit code 2,
//! no panic and no backtrace.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

fn opsbot(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsbot"));
    cmd.current_dir(dir).args(args);
    for var in [
        "OPSBOT_CONFIG",
        "GITHUB_REPOSITORY",
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "GITHUB_APP_ID",
        "GITHUB_API_URL",
        "RUST_BACKTRACE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("RUST_BACKTRACE", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn one_error_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    lines[0].to_string()
}

#[test]
fn bad_toml_names_file_and_line_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("opsbot.toml"), "[github]\nrepository = \n").unwrap();
    let out = opsbot(dir.path(), &["config"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let line = one_error_line(&out);
    assert!(line.starts_with("opsbot: opsbot.toml:2:"), "{line}");
    assert!(line.contains("invalid TOML"), "{line}");
}

#[test]
fn unknown_table_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("custom.toml"), "[helth]\nrepo = \"a/b\"\n").unwrap();
    let out = opsbot(dir.path(), &["--config", "custom.toml", "config"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let line = one_error_line(&out);
    assert!(
        line.contains("custom.toml: unknown table [helth]"),
        "{line}"
    );
}

#[test]
fn missing_config_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = opsbot(dir.path(), &["config"], &[("OPSBOT_CONFIG", "nope.toml")]);
    assert_eq!(out.status.code(), Some(2));
    let line = one_error_line(&out);
    assert!(line.contains("nope.toml: cannot read"), "{line}");
}

#[test]
fn malformed_github_repository_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = opsbot(
        dir.path(),
        &["config"],
        &[("GITHUB_REPOSITORY", "just-a-name")],
    );
    assert_eq!(out.status.code(), Some(2));
    let line = one_error_line(&out);
    assert_eq!(
        line,
        "opsbot: GITHUB_REPOSITORY: repository must be `owner/name`, got `just-a-name`"
    );
}

#[test]
fn good_config_is_shown_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("opsbot.toml"), "[scan]\n").unwrap();
    let out = opsbot(
        dir.path(),
        &["config"],
        &[
            ("GITHUB_REPOSITORY", "acme/infra"),
            ("GITHUB_TOKEN", "ghp_doNotPrintThisToken0000000000000000"),
            ("GITHUB_API_URL", "https://ghe.example.com/api/v3"),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("acme/infra"));
    assert!(stdout.contains("https://ghe.example.com/api/v3"));
    assert!(stdout.contains("token (GITHUB_TOKEN)"));
    assert!(!stdout.contains("doNotPrint"));
}

#[test]
fn help_and_version_explain_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let out = opsbot(dir.path(), &["--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["scan", "tfupdate", "health", "app", "GITHUB_TOKEN"] {
        assert!(help.contains(word), "--help lacks {word}: {help}");
    }
    let out = opsbot(dir.path(), &["--version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("opsbot "));
    let out = opsbot(dir.path(), &["frobnicate"], &[]);
    assert_eq!(out.status.code(), Some(2));
}
