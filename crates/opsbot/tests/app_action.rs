//! The scan step of `action.yml` (the GitHub Action), run as GitHub runs it
//! (`bash --noprofile --norc -eo pipefail`) with the environment a push or pull_request
//! event gives it, in a real temporary git repository with the opsbot under test on PATH:
//! it picks the right range, writes SARIF, and reports the number of findings.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(unix)]

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

const OPSBOT: &str = env!("CARGO_BIN_EXE_opsbot");
const ZERO: &str = "0000000000000000000000000000000000000000";

/// The `run: |` block of the step named `name`, de-indented.
fn step_script(name: &str) -> String {
    let yml =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../action.yml"))
            .unwrap();
    let lines: Vec<&str> = yml.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == format!("- name: {name}"))
        .unwrap_or_else(|| panic!("no step {name:?} in action.yml"));
    let run = (start..lines.len())
        .find(|&i| lines[i].trim() == "run: |")
        .unwrap();
    let indent = lines[run].len() - lines[run].trim_start().len() + 2;
    let mut script = String::new();
    for line in &lines[run + 1..] {
        if !line.trim().is_empty() && line.len() - line.trim_start().len() < indent {
            break;
        }
        script.push_str(line.get(indent..).unwrap_or(""));
        script.push('\n');
    }
    assert!(
        !script.contains("${{"),
        "expressions belong in env:, not in the script"
    );
    script
}

fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", repo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn commit(repo: &Path, file: &str, content: &str) -> String {
    std::fs::write(repo.join(file), content).unwrap();
    git(repo, &["add", file]);
    git(repo, &["commit", "-q", "-m", file]);
    git(repo, &["rev-parse", "HEAD"])
}

fn key(tail: &str) -> String {
    ["AKIA", "Q7TRN6WZ", tail].concat()
}

struct Run {
    out: Output,
    outputs: HashMap<String, String>,
    sarif: Option<String>,
}

fn run_scan_step(repo: &Path, env: &[(&str, &str)]) -> Run {
    let script = step_script("Scan the pushed commits");
    let out_file = repo.join(".github_output");
    std::fs::write(&out_file, "").unwrap();
    let sarif = repo.join("opsbot.sarif");
    let _ = std::fs::remove_file(&sarif);
    let bin_dir = Path::new(OPSBOT).parent().unwrap();
    let mut cmd = Command::new("bash");
    cmd.args(["--noprofile", "--norc", "-eo", "pipefail", "-c", &script])
        .current_dir(repo)
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("GITHUB_OUTPUT", &out_file)
        .env("HOME", repo)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("OPSBOT_CONFIG")
        .env("RANGE", "")
        .env("SARIF", "opsbot.sarif")
        .env("EXTRA_ARGS", "");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let outputs = std::fs::read_to_string(&out_file)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Run {
        out,
        outputs,
        sarif: std::fs::read_to_string(&sarif).ok(),
    }
}

fn log(r: &Run) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&r.out.stdout),
        String::from_utf8_lossy(&r.out.stderr)
    )
}

#[test]
fn the_action_scans_the_pushed_range_and_the_pull_request_range() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    git(repo, &["init", "-q", "-b", "main"]);
    git(repo, &["config", "user.name", "T"]);
    git(repo, &["config", "user.email", "t@example.com"]);
    git(repo, &["config", "commit.gpgsign", "false"]);
    // A key already on main before the push is out of range.
    let c1 = commit(repo, "old.env", &format!("K={}\n", key("K3XPLY4M")));
    let c2 = commit(repo, "app.py", "print('clean')\n");
    let c3 = commit(repo, "new.env", &format!("K={}\n", key("M4YZPQ2B")));
    git(repo, &["update-ref", "refs/remotes/origin/main", &c2]);

    // push c2..c3: one finding, SARIF written, the step itself succeeds (failing is the
    // "Fail on findings" step's job, after the upload).
    let r = run_scan_step(
        repo,
        &[
            ("EVENT", "push"),
            ("PUSH_BEFORE", &c2),
            ("PUSH_AFTER", &c3),
            ("DEFAULT_BRANCH", "main"),
            ("REF_NAME", "main"),
        ],
    );
    assert!(r.out.status.success(), "{}", log(&r));
    assert!(
        log(&r).contains(&format!("scanning {c2}..{c3}")),
        "{}",
        log(&r)
    );
    assert_eq!(
        r.outputs.get("findings").map(String::as_str),
        Some("1"),
        "{}",
        log(&r)
    );
    assert_eq!(r.outputs.get("exit").map(String::as_str), Some("1"));
    let sarif: serde_json::Value = serde_json::from_str(r.sarif.as_deref().unwrap()).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let result = &sarif["runs"][0]["results"][0];
    assert_eq!(result["ruleId"], "aws-access-key-id");
    assert!(
        !r.sarif.as_deref().unwrap().contains(&key("M4YZPQ2B")),
        "SARIF must mask the key"
    );
    // The log lists the finding as a workflow annotation.
    assert!(
        log(&r).contains("::error") && log(&r).contains("new.env"),
        "{}",
        log(&r)
    );

    // push c1..c2: clean.
    let r = run_scan_step(
        repo,
        &[("EVENT", "push"), ("PUSH_BEFORE", &c1), ("PUSH_AFTER", &c2)],
    );
    assert!(r.out.status.success(), "{}", log(&r));
    assert_eq!(r.outputs.get("findings").map(String::as_str), Some("0"));
    assert_eq!(r.outputs.get("exit").map(String::as_str), Some("0"));

    // pull_request base c1, head c3: the PR's range holds one key.
    let r = run_scan_step(
        repo,
        &[
            ("EVENT", "pull_request"),
            ("PR_BASE", &c1),
            ("PR_HEAD", &c3),
        ],
    );
    assert!(
        log(&r).contains(&format!("scanning {c1}..{c3}")),
        "{}",
        log(&r)
    );
    assert_eq!(r.outputs.get("findings").map(String::as_str), Some("1"));

    // A new branch (before = zeros): what it adds over the default branch.
    let r = run_scan_step(
        repo,
        &[
            ("EVENT", "push"),
            ("PUSH_BEFORE", ZERO),
            ("PUSH_AFTER", &c3),
            ("DEFAULT_BRANCH", "main"),
            ("REF_NAME", "topic"),
        ],
    );
    assert!(
        log(&r).contains(&format!("scanning origin/main..{c3}")),
        "{}",
        log(&r)
    );
    assert_eq!(r.outputs.get("findings").map(String::as_str), Some("1"));

    // An explicit range input wins; a broken range fails the step with opsbot's exit code.
    let r = run_scan_step(repo, &[("EVENT", "push"), ("RANGE", "no-such-ref..HEAD")]);
    assert_eq!(r.out.status.code(), Some(2), "{}", log(&r));
}
