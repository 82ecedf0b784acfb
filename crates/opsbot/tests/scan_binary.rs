//! `opsbot scan` on binary files (issue 11 item 4): a file with a NUL in its first 8 KiB is
//! scanned as `strings` would show it, with the high-confidence rules only; findings carry
//! the byte offset, and the summary counts and names the binary files. The real binary on a
//! generated 2 MB file; secrets are assembled at run time so this file itself scans clean.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn aws_key() -> String {
    format!("AKIA{}", "R7TQ2XW5MZK3LPV6")
}
fn github_token() -> String {
    format!("ghp_{}", "Vb3Nm8Rt5Yz1k2L9qWx7Pd4Hs6Gf0Jc2Ka9E")
}
const PASSWORD: &str = "Hx9qL2vT7mQ8wZ";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn opsbot(dir: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsbot"));
    cmd.current_dir(dir).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("OPSBOT") || k.starts_with("GITHUB_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let all = format!("{}{}", run.stdout, run.stderr);
    for s in [aws_key(), github_token(), PASSWORD.to_owned()] {
        assert!(!all.contains(&s), "a secret was printed in full:\n{all}");
    }
    run
}

/// `len` bytes that look like compiled code: pseudo-random, a NUL every few bytes, so no
/// printable run is 8 bytes long by chance.
fn binary_noise(len: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_u32;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if i % 6 == 0 { 0 } else { (x >> 8) as u8 }
        })
        .collect()
}

fn put(data: &mut [u8], at: usize, text: &str) {
    data[at - 1] = 0;
    data[at..at + text.len()].copy_from_slice(text.as_bytes());
    data[at + text.len()] = 0;
}

const AWS_AT: usize = 1_500_000;
const GITHUB_AT: usize = 100;

/// A 2 MB binary holding an AWS key deep inside, a GitHub token near the start and a generic
/// password assignment (a rule that does not run on binaries), next to a text file.
fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut data = binary_noise(2 * 1024 * 1024);
    put(&mut data, GITHUB_AT, &github_token());
    put(&mut data, AWS_AT, &aws_key());
    put(&mut data, 600_000, &format!("db_password = \"{PASSWORD}\""));
    std::fs::create_dir_all(dir.path().join("dist")).unwrap();
    std::fs::write(dir.path().join("dist/agent.bin"), data).unwrap();
    std::fs::write(
        dir.path().join("notes.txt"),
        format!("db_password = \"{PASSWORD}\"\n"),
    )
    .unwrap();
    dir
}

#[test]
fn a_key_in_a_two_megabyte_binary_is_reported_at_its_byte_offset() {
    let dir = tree();
    let run = opsbot(dir.path(), &["scan", "--format", "json"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let findings: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    let mut got: Vec<(String, String, u64, Option<u64>)> = findings
        .iter()
        .map(|f| {
            (
                f["rule_id"].as_str().unwrap().to_owned(),
                f["path"].as_str().unwrap().to_owned(),
                f["line"].as_u64().unwrap(),
                f["offset"].as_u64(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (
                "aws-access-key-id".to_owned(),
                "dist/agent.bin".to_owned(),
                0,
                Some(AWS_AT as u64)
            ),
            (
                "generic-password-assignment".to_owned(),
                "notes.txt".to_owned(),
                1,
                None
            ),
            (
                "github-pat-classic".to_owned(),
                "dist/agent.bin".to_owned(),
                0,
                Some(GITHUB_AT as u64)
            ),
        ],
        "the generic password rule runs on the text file only"
    );
    let aws = findings
        .iter()
        .find(|f| f["rule_id"] == "aws-access-key-id")
        .unwrap();
    assert_eq!(aws["secret"], "AKIA…");
}

#[test]
fn text_and_sarif_output_and_the_summary_name_the_binary() {
    let dir = tree();
    let run = opsbot(dir.path(), &["scan", "--color", "never"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains(&format!(
            "dist/agent.bin@{AWS_AT}: high aws-access-key-id: AWS access key ID [AKIA…]"
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains(
            "1 binary file(s) scanned as strings (high-confidence rules only): dist/agent.bin"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("(1 file(s), "),
        "the text file is counted as scanned: {}",
        run.stderr
    );

    let run = opsbot(dir.path(), &["scan", "--format", "sarif", "dist"]);
    assert_eq!(run.code, 1);
    let sarif: Value = serde_json::from_str(&run.stdout).unwrap();
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    let aws = results
        .iter()
        .find(|r| r["ruleId"] == "aws-access-key-id")
        .unwrap();
    assert_eq!(
        aws["locations"][0]["physicalLocation"]["region"]["byteOffset"],
        AWS_AT as u64
    );
}

#[test]
fn a_binary_on_stdin_is_scanned_as_strings_too() {
    use std::io::Write as _;
    let dir = tree();
    let data = std::fs::read(dir.path().join("dist/agent.bin")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_opsbot"))
        .current_dir(dir.path())
        .args([
            "scan",
            "--stdin",
            "--stdin-name",
            "upload.bin",
            "--format",
            "json",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let findings: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut offsets: Vec<u64> = findings
        .iter()
        .filter(|f| f["path"] == "upload.bin")
        .filter_map(|f| f["offset"].as_u64())
        .collect();
    offsets.sort();
    assert_eq!(offsets, vec![GITHUB_AT as u64, AWS_AT as u64]);
}
