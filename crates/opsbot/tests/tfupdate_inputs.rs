//! `opsbot tfupdate` on the inputs Terraform and OpenTofu accept, through the real
//! binary with explicit `-v` (no registry, no network): constraint values, `.tofu`
//! files, registry hosts, a UTF-8 BOM and bytes outside UTF-8 in comments.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn opsbot(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsbot"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("GITHUB_TOKEN")
        .env_remove("GITHUB_API_URL")
        .env_remove("OPSBOT_TF_REGISTRY_URL")
        .env_remove("TFREGISTRY_BASE_URL")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn write(dir: &Path, rel: &str, bytes: &[u8]) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

fn read(dir: &Path, rel: &str) -> Vec<u8> {
    std::fs::read(dir.join(rel)).unwrap()
}

const TF: &str = "terraform {\n  required_version = \"1.5.7\" # pinned\n  required_providers {\n    aws = {\n      source  = \"hashicorp/aws\"\n      version = \"5.31.0\"\n    }\n  }\n}\n";

#[test]
fn constraint_values_replace_the_constraint_as_written() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "main.tf", TF.as_bytes());
    let run = opsbot(
        dir.path(),
        &["tfupdate", "terraform", "-v", "~> 1.0", "."],
        &[],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let run = opsbot(
        dir.path(),
        &["tfupdate", "provider", "aws", "-v", ">= 4.0, < 6.0", "."],
        &[],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let want = TF
        .replace("\"1.5.7\"", "\"~> 1.0\"")
        .replace("\"5.31.0\"", "\">= 4.0, < 6.0\"");
    assert_eq!(
        String::from_utf8(read(dir.path(), "main.tf")).unwrap(),
        want
    );
    // a value that is neither a version nor a constraint: exit 1, file untouched
    let run = opsbot(dir.path(), &["tfupdate", "terraform", "-v", "~>", "."], &[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        String::from_utf8(read(dir.path(), "main.tf")).unwrap(),
        want
    );
}

#[test]
fn opentofu_reads_tofu_files_and_prefers_them() {
    let dir = tempfile::tempdir().unwrap();
    let tf = "terraform {\n  required_version = \"1.8.0\"\n}\n";
    write(dir.path(), "main.tf", tf.as_bytes());
    write(dir.path(), "main.tofu", tf.as_bytes());
    write(dir.path(), "other.tf", tf.as_bytes());
    let run = opsbot(
        dir.path(),
        &["tfupdate", "opentofu", "-v", "1.9.0", "."],
        &[],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let bumped = tf.replace("1.8.0", "1.9.0");
    // OpenTofu reads main.tofu instead of main.tf
    assert_eq!(read(dir.path(), "main.tofu"), bumped.as_bytes());
    assert_eq!(read(dir.path(), "main.tf"), tf.as_bytes());
    assert_eq!(read(dir.path(), "other.tf"), bumped.as_bytes());
    // Terraform does not read .tofu files
    let run = opsbot(
        dir.path(),
        &["tfupdate", "terraform", "-v", "1.10.0", "."],
        &[],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(read(dir.path(), "main.tofu"), bumped.as_bytes());
    assert_eq!(
        read(dir.path(), "main.tf"),
        tf.replace("1.8.0", "1.10.0").as_bytes()
    );
}

#[test]
fn registry_hosts_are_compared_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let text = "terraform {\n  required_providers {\n    a = {\n      source  = \"registry.terraform.io/hashicorp/aws\"\n      version = \"5.0.0\"\n    }\n    b = {\n      source  = \"registry.opentofu.org/hashicorp/aws\"\n      version = \"5.0.0\"\n    }\n    c = {\n      source  = \"hashicorp/aws\"\n      version = \"5.0.0\"\n    }\n  }\n}\n";
    write(dir.path(), "main.tf", text.as_bytes());
    let get = || String::from_utf8(read(dir.path(), "main.tf")).unwrap();
    let versions = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.contains("version"))
            .map(|l| l.trim().to_string())
            .collect()
    };
    // an explicit registry.opentofu.org source: only b
    let run = opsbot(
        dir.path(),
        &[
            "tfupdate",
            "provider",
            "registry.opentofu.org/hashicorp/aws",
            "-v",
            "5.1.0",
            ".",
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        versions(&get()),
        [
            "version = \"5.0.0\"",
            "version = \"5.1.0\"",
            "version = \"5.0.0\""
        ]
    );
    // bare hashicorp/aws on the default registry (registry.terraform.io): a and c
    let run = opsbot(
        dir.path(),
        &["tfupdate", "provider", "hashicorp/aws", "-v", "5.2.0", "."],
        &[],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        versions(&get()),
        [
            "version = \"5.2.0\"",
            "version = \"5.1.0\"",
            "version = \"5.2.0\""
        ]
    );
    // with TFREGISTRY_BASE_URL=registry.opentofu.org the bare name means b and c
    let run = opsbot(
        dir.path(),
        &["tfupdate", "provider", "hashicorp/aws", "-v", "5.3.0", "."],
        &[("TFREGISTRY_BASE_URL", "https://registry.opentofu.org/")],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        versions(&get()),
        [
            "version = \"5.2.0\"",
            "version = \"5.3.0\"",
            "version = \"5.3.0\""
        ]
    );
}

#[test]
fn bom_and_non_utf8_comment_bytes_are_kept_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = b"\xEF\xBB\xBF# r\xE9sum\xE9 (latin-1)\n".to_vec();
    bytes.extend_from_slice(TF.as_bytes());
    bytes.extend_from_slice(b"/* \xFF\xFE */\n");
    write(dir.path(), "main.tf", &bytes);
    let run = opsbot(
        dir.path(),
        &["tfupdate", "terraform", "-v", "1.9.8", "main.tf"],
        &[],
    );
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("main.tf:3:"), "{}", run.stdout);
    let at = bytes.windows(5).position(|w| w == b"1.5.7").unwrap();
    let mut want = bytes.clone();
    want.splice(at..at + 5, b"1.9.8".iter().copied());
    assert_eq!(read(dir.path(), "main.tf"), want);
}

#[test]
fn a_file_that_does_not_parse_is_left_untouched_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    // a byte outside UTF-8 outside any comment or string: Terraform refuses it too
    let bytes = b"terraform {\n  required_version = \"1.5.7\"\n  x = \xFF\n}\n".to_vec();
    write(dir.path(), "bad.tf", &bytes);
    let run = opsbot(
        dir.path(),
        &["tfupdate", "terraform", "-v", "1.9.8", "."],
        &[],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("bad.tf:3:"), "{}", run.stderr);
    assert_eq!(read(dir.path(), "bad.tf"), bytes);
}
