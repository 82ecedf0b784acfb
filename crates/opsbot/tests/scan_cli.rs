//! End-to-end tests of `opsbot scan`: the real binary, real temporary git repositories,
//! every mode (directory, --staged, --git range and single commit, --stdin), every format
//! (SARIF validated against the SARIF 2.1.0 schema), baselines, allow comments, config and
//! bad input. Secrets are assembled at run time so this file itself scans clean.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn aws_key() -> String {
    format!("AKIA{}", "Z3MHQ5WXK2PLV7RT")
}
fn github_token() -> String {
    format!("ghp_{}", "k2L9qWx7Vb3Nm8Rt5Yz1Pd4Hs6Gf0Jc2Ka9E")
}
fn stripe_key() -> String {
    format!("sk_live_{}", "4eC39HqLyjWDarjtT1zdp7dc")
}
fn db_url() -> String {
    format!(
        "postgres://app:{}@db.prod.internal:5432/app",
        "Hq8vT2mZr9Lp4Ks"
    )
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
    /// No output may contain any of the test secrets in full.
    fn assert_no_full_secret(&self) {
        let all = self.all();
        for s in [
            aws_key(),
            github_token(),
            stripe_key(),
            "Hq8vT2mZr9Lp4Ks".to_owned(),
        ] {
            assert!(!all.contains(&s), "a secret was printed in full:\n{all}");
        }
    }
}

fn from_output(out: Output) -> Run {
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    run.assert_no_full_secret();
    run
}

fn opsbot_cmd(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsbot"));
    cmd.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("OPSBOT") || k.starts_with("GITHUB_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    git_env(&mut cmd);
    cmd
}

fn opsbot(dir: &Path, args: &[&str]) -> Run {
    from_output(opsbot_cmd(dir).args(args).output().unwrap())
}

fn opsbot_stdin(dir: &Path, args: &[&str], input: &[u8]) -> Run {
    let mut child = opsbot_cmd(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    from_output(child.wait_with_output().unwrap())
}

fn git_env(cmd: &mut Command) {
    cmd.env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.org")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.org");
}

fn git(dir: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir).args(args);
    git_env(&mut cmd);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    dir
}

fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let p = dir.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, text).unwrap();
    p
}

fn json(run: &Run) -> Vec<Value> {
    serde_json::from_str::<Vec<Value>>(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

fn keys(findings: &[Value]) -> Vec<(String, String, u64)> {
    let mut v: Vec<_> = findings
        .iter()
        .map(|f| {
            (
                f["rule_id"].as_str().unwrap().to_owned(),
                f["path"].as_str().unwrap().to_owned(),
                f["line"].as_u64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn directory_scan_reports_findings_masks_secrets_and_sets_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "clean.py", "print('hello')\n");
    let run = opsbot(dir.path(), &["scan"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stderr.contains("no secrets found"), "{}", run.stderr);

    write(
        dir.path(),
        "app/settings.py",
        &format!("import os\nAWS_KEY = \"{}\"\n", aws_key()),
    );
    write(dir.path(), ".env", &format!("DATABASE_URL={}\n", db_url()));
    let run = opsbot(dir.path(), &["scan", "--color", "never"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stdout
            .contains("app/settings.py:2:12: high aws-access-key-id: AWS access key ID [AKIA…]"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(".env:1:"),
        "hidden files are scanned: {}",
        run.stdout
    );
    assert!(!run.stdout.contains('\x1b'));
    let coloured = opsbot(dir.path(), &["scan", "--color", "always"]);
    assert!(coloured.stdout.contains('\x1b'));

    // Explicit file arguments and JSON fields.
    let run = opsbot(dir.path(), &["scan", "app/settings.py", "--format", "json"]);
    assert_eq!(run.code, 1);
    let f = &json(&run)[0];
    assert_eq!(f["rule_id"], "aws-access-key-id");
    assert_eq!(f["path"], "app/settings.py");
    assert_eq!(f["line"], 2);
    assert_eq!(f["column"], 12);
    assert_eq!(f["secret"], "AKIA…");
    assert_eq!(f["fingerprint"].as_str().unwrap().len(), 32);
    assert!(f.get("commit").is_none());

    // A usage error is 2.
    let run = opsbot(dir.path(), &["scan", "--format", "yaml"]);
    assert_eq!(run.code, 2);
    let run = opsbot(dir.path(), &["scan", "--staged", "--stdin"]);
    assert_eq!(run.code, 2);
}

#[test]
fn gitignore_and_opsbotignore_are_honoured() {
    let dir = repo();
    let d = dir.path();
    write(d, ".gitignore", "build/\n");
    write(d, ".opsbotignore", "fixtures/\n*.snap\n");
    write(d, "build/out.js", &format!("k='{}'\n", aws_key()));
    write(d, "fixtures/creds.txt", &format!("k='{}'\n", aws_key()));
    write(d, "x.snap", &format!("k='{}'\n", aws_key()));
    write(
        d,
        "src/main.rs",
        &format!("const T: &str = \"{}\";\n", github_token()),
    );
    let run = opsbot(d, &["scan", "--format", "json"]);
    assert_eq!(
        keys(&json(&run)),
        vec![("github-pat-classic".into(), "src/main.rs".into(), 1)]
    );
    let run = opsbot(d, &["scan", "--format", "json", "--no-ignore"]);
    assert_eq!(json(&run).len(), 4, "{}", run.stdout);
}

#[test]
fn staged_mode_reports_only_added_lines_with_new_line_numbers() {
    let dir = repo();
    let d = dir.path();
    // Already committed secret: not part of the staged change.
    write(d, "old.txt", &format!("legacy {}\n", aws_key()));
    write(d, "app.py", "a = 1\nb = 2\nc = 3\n");
    git(d, &["add", "-A"]);
    git(d, &["commit", "-qm", "init"]);

    write(
        d,
        "app.py",
        &format!("a = 1\nb = 2\ntoken = '{}'\nc = 3\n", github_token()),
    );
    write(
        d,
        "new file.cfg",
        &format!("[x]\nstripe = {}\n", stripe_key()),
    );
    git(d, &["add", "-A"]);
    // Unstaged change: not scanned by --staged.
    write(
        d,
        "app.py",
        &format!(
            "a = 1\nb = 2\ntoken = '{}'\nc = 3\nd = '{}'\n",
            github_token(),
            aws_key()
        ),
    );

    let run = opsbot(d, &["scan", "--staged", "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert_eq!(
        keys(&json(&run)),
        vec![
            ("github-pat-classic".into(), "app.py".into(), 3),
            ("stripe-live-secret-key".into(), "new file.cfg".into(), 2),
        ]
    );
    // git starts before the rules load: rules that do not load still stop the scan with
    // their error (git's unread output is dropped), and nothing is reported.
    let broken = tempfile::tempdir().unwrap();
    write(broken.path(), "bad.toml", "[[rules]\nthis is not toml");
    let broken = broken.path();
    let run = opsbot(
        d,
        &["scan", "--staged", "--rules-dir", broken.to_str().unwrap()],
    );
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("bad.toml: invalid TOML"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("github-pat-classic"), "{}", run.all());

    // Pathspecs limit the scan; a clean index exits 0.
    let run = opsbot(d, &["scan", "--staged", "--format", "json", "app.py"]);
    assert_eq!(json(&run).len(), 1);
    git(d, &["commit", "-qm", "second"]);
    let run = opsbot(d, &["scan", "--staged"]);
    assert_eq!(run.code, 0, "{}", run.all());

    // Outside a repository: a clear error and exit 2.
    let not_repo = tempfile::tempdir().unwrap();
    let run = opsbot(not_repo.path(), &["scan", "--staged"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("git"), "{}", run.stderr);
}

#[test]
fn git_range_and_single_commit_report_commit_path_and_line() {
    let dir = repo();
    let d = dir.path();
    write(d, "README.md", "# demo\n");
    git(d, &["add", "-A"]);
    git(d, &["commit", "-qm", "c1"]);
    let c1 = git(d, &["rev-parse", "HEAD"]);

    write(
        d,
        "deploy/env.sh",
        &format!("#!/bin/sh\nexport AWS_ACCESS_KEY_ID={}\n", aws_key()),
    );
    git(d, &["add", "-A"]);
    git(d, &["commit", "-qm", "c2"]);
    let c2 = git(d, &["rev-parse", "HEAD"]);

    // c3 removes the key (still in history) and adds a DB URL elsewhere.
    write(d, "deploy/env.sh", "#!/bin/sh\n");
    write(d, "config/db.yml", &format!("prod:\n  url: {}\n", db_url()));
    git(d, &["add", "-A"]);
    git(d, &["commit", "-qm", "c3"]);
    let c3 = git(d, &["rev-parse", "HEAD"]);

    let run = opsbot(
        d,
        &["scan", "--git", &format!("{c1}..{c3}"), "--format", "json"],
    );
    assert_eq!(run.code, 1, "{}", run.all());
    let findings = json(&run);
    assert_eq!(findings.len(), 2, "{}", run.stdout);
    let by_rule = |id: &str| {
        findings
            .iter()
            .find(|f| f["rule_id"] == id)
            .unwrap()
            .clone()
    };
    let aws = by_rule("aws-access-key-id");
    assert_eq!(
        (
            aws["path"].as_str(),
            aws["line"].as_u64(),
            aws["commit"].as_str()
        ),
        (Some("deploy/env.sh"), Some(2), Some(c2.as_str()))
    );
    let url = by_rule("url-password");
    assert_eq!(
        (
            url["path"].as_str(),
            url["line"].as_u64(),
            url["commit"].as_str()
        ),
        (Some("config/db.yml"), Some(2), Some(c3.as_str()))
    );

    // One commit.
    let run = opsbot(d, &["scan", "--git", &c2, "--format", "json"]);
    let findings = json(&run);
    assert_eq!(
        keys(&findings),
        vec![("aws-access-key-id".into(), "deploy/env.sh".into(), 2)]
    );
    assert_eq!(findings[0]["commit"], c2.as_str());
    let run = opsbot(d, &["scan", "--git", &c1]);
    assert_eq!(run.code, 0, "{}", run.all());

    // Text output names the commit.
    let run = opsbot(
        d,
        &["scan", "--git", &format!("{c1}..{c3}"), "--color", "never"],
    );
    assert!(
        run.stdout
            .contains(&format!("{} deploy/env.sh:2:", &c2[..12])),
        "{}",
        run.stdout
    );

    // A bad range is a usage error naming git's complaint.
    let run = opsbot(d, &["scan", "--git", "nosuchref..HEAD"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("nosuchref"), "{}", run.stderr);
}

#[test]
fn stdin_mode_scans_piped_content() {
    let dir = tempfile::tempdir().unwrap();
    let input = format!("line one\nSTRIPE={}\n", stripe_key());
    let run = opsbot_stdin(
        dir.path(),
        &["scan", "--stdin", "--format", "json"],
        input.as_bytes(),
    );
    assert_eq!(run.code, 1, "{}", run.all());
    assert_eq!(
        keys(&json(&run)),
        vec![("stripe-live-secret-key".into(), "stdin".into(), 2)]
    );
    let run = opsbot_stdin(
        dir.path(),
        &[
            "scan",
            "--stdin",
            "--stdin-name",
            "paste.txt",
            "--format",
            "json",
        ],
        input.as_bytes(),
    );
    assert_eq!(json(&run)[0]["path"], "paste.txt");
    let run = opsbot_stdin(dir.path(), &["scan", "--stdin"], b"nothing to see\n");
    assert_eq!(run.code, 0);
}

#[test]
fn sarif_output_is_valid_sarif_2_1_0() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "dir with space/a.py",
        &format!("k = '{}'\nt = '{}'\n", aws_key(), github_token()),
    );
    let run = opsbot(dir.path(), &["scan", "--format", "sarif"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let sarif: Value = serde_json::from_str(&run.stdout).unwrap();
    let schema_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../opsbot-scan/tests/fixtures/sarif-2.1.0-rtm.5.json");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&sarif)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "SARIF schema errors: {errors:#?}");
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    let loc = &results[0]["locations"][0]["physicalLocation"];
    assert_eq!(loc["artifactLocation"]["uri"], "dir%20with%20space/a.py");
    assert_eq!(loc["region"]["startLine"], 1);
    assert!(results[0]["partialFingerprints"]["opsbotSecret/v1"].is_string());
    let rules = sarif["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap();
    assert_eq!(rules.len(), 2);
    assert!(
        rules
            .iter()
            .all(|r| r["properties"]["security-severity"].is_string())
    );

    // Empty SARIF (no findings) is valid too; --output writes the file.
    let clean = tempfile::tempdir().unwrap();
    write(clean.path(), "a.txt", "fine\n");
    let run = opsbot(
        clean.path(),
        &["scan", "--format", "sarif", "--output", "report.sarif"],
    );
    assert_eq!(run.code, 0);
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(clean.path().join("report.sarif")).unwrap())
            .unwrap();
    assert!(validator.is_valid(&written));
}

#[test]
fn github_format_prints_workflow_annotations() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a,b.txt", &format!("{}\n", aws_key()));
    let run = opsbot(dir.path(), &["scan", "--format", "github"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stdout.trim(),
        "::error file=a%2Cb.txt,line=1,col=1,title=Secret%3A aws-access-key-id::AWS access key ID found: AKIA…"
    );
}

#[test]
fn baseline_suppresses_known_findings_even_after_lines_move() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "a.py", &format!("x = 1\nk = '{}'\n", aws_key()));
    let run = opsbot(d, &["scan", "--write-baseline", ".opsbot-baseline.json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stderr.contains("wrote 1 finding(s)"), "{}", run.stderr);
    let baseline = std::fs::read_to_string(d.join(".opsbot-baseline.json")).unwrap();
    assert!(!baseline.contains(&aws_key()));

    let run = opsbot(d, &["scan", "--baseline", ".opsbot-baseline.json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stderr.contains("1 in the baseline"), "{}", run.stderr);

    // Lines move: still suppressed. A new secret: reported.
    write(
        d,
        "a.py",
        &format!(
            "import os\n\n\nx = 1\nk = '{}'\nt = '{}'\n",
            aws_key(),
            github_token()
        ),
    );
    let run = opsbot(
        d,
        &[
            "scan",
            "--baseline",
            ".opsbot-baseline.json",
            "--format",
            "json",
        ],
    );
    assert_eq!(run.code, 1);
    assert_eq!(
        keys(&json(&run)),
        vec![("github-pat-classic".into(), "a.py".into(), 6)]
    );

    // The JSON report works as a baseline too; [scan] baseline in opsbot.toml is used by default.
    std::fs::write(d.join("report.json"), &run.stdout).unwrap();
    write(
        d,
        "opsbot.toml",
        "[scan]\nbaseline = \".opsbot-baseline.json\"\n",
    );
    let run = opsbot(
        d,
        &["scan", "--baseline", "report.json", "--format", "json"],
    );
    assert_eq!(
        keys(&json(&run)),
        vec![("aws-access-key-id".into(), "a.py".into(), 5)]
    );
    let run = opsbot(d, &["scan", "--format", "json"]);
    assert_eq!(
        keys(&json(&run)),
        vec![("github-pat-classic".into(), "a.py".into(), 6)]
    );

    // A corrupt baseline is an error naming the file.
    write(d, "bad.json", "{not json");
    let run = opsbot(d, &["scan", "--baseline", "bad.json"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("bad.json"), "{}", run.stderr);
}

#[test]
fn inline_allow_comments_suppress_a_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.py",
        &format!(
            "a = '{k}'  # opsbot:allow\nb = '{k}'  # gitleaks:allow\nc = '{k}'\n",
            k = aws_key()
        ),
    );
    let run = opsbot(dir.path(), &["scan", "--format", "json"]);
    assert_eq!(
        keys(&json(&run)),
        vec![("aws-access-key-id".into(), "a.py".into(), 3)]
    );
}

#[test]
fn opsbot_toml_scan_table_disables_allowlists_and_adds_rules() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "a.py",
        &format!(
            "k = '{}'\nt = '{}'\nacme = acme_k3j9x0m2p7q4z8w1\n",
            aws_key(),
            github_token()
        ),
    );
    write(d, "vendor/lib.py", &format!("k = '{}'\n", stripe_key()));
    write(
        d,
        "opsbot.toml",
        r#"[scan]
disable = ["github-pat-classic"]
allow_paths = ["^vendor/", "^opsbot\\.toml$"]
allowlist = ["Z3MHQ5"]

[[scan.rules]]
id = "acme-token"
description = "ACME internal token"
severity = "high"
keywords = ["acme_"]
regex = '\bacme_([a-z0-9]{16})\b'
examples = ["x = acme_q1w2e3r4t5y6u7i8"]
negative_examples = ["x = acme_short"]
"#,
    );
    let run = opsbot(d, &["scan", "--format", "json"]);
    assert_eq!(
        keys(&json(&run)),
        vec![("acme-token".into(), "a.py".into(), 3)]
    );
    let run = opsbot(d, &["scan", "--list-rules"]);
    assert!(run.stdout.contains("acme-token"));
    assert!(!run.stdout.contains("github-pat-classic"));
    assert!(
        run.stdout.lines().count() >= 150,
        "{} rules",
        run.stdout.lines().count()
    );

    // --disable-rule on the command line; unknown ids are warned about.
    let run = opsbot(
        d,
        &[
            "scan",
            "--format",
            "json",
            "--disable-rule",
            "acme-token",
            "--disable-rule",
            "nope",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stderr.contains("unknown rule `nope`"), "{}", run.stderr);
}

#[test]
fn corrupt_rules_are_reported_with_file_rule_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "a.py", "x = 1\n");
    write(
        d,
        "rules/ok.toml",
        "[[rules]]\nid = \"good\"\ndescription = \"d\"\nseverity = \"low\"\nkeywords = [\"zz_\"]\nregex = 'zz_([0-9]{8})'\nexamples = [\"zz_12873465\"]\nnegative_examples = [\"zz_1\"]\n",
    );
    write(
        d,
        "rules/bad.toml",
        "[[rules]]\nid = \"broken-rule\"\ndescription = \"d\"\nseverity = \"low\"\nkeywords = [\"abc\"]\nregex = 'abc(['\nexamples = [\"abc\"]\nnegative_examples = [\"x\"]\n",
    );
    let run = opsbot(d, &["scan", "--rules-dir", "rules"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("rules/bad.toml"), "{}", run.stderr);
    assert!(run.stderr.contains("broken-rule"), "{}", run.stderr);
    assert!(
        run.stderr.contains("regex does not parse"),
        "{}",
        run.stderr
    );

    write(d, "rules/bad.toml", "[[rules]\nthis is not toml");
    let run = opsbot(d, &["scan", "--rules-dir", "rules"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("rules/bad.toml: invalid TOML"),
        "{}",
        run.stderr
    );

    write(
        d,
        "rules/bad.toml",
        "[[rules]]\nid = \"no-examples\"\ndescription = \"d\"\nseverity = \"low\"\nkeywords = [\"abc\"]\nregex = 'abc'\n",
    );
    let run = opsbot(d, &["scan", "--rules-dir", "rules"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("no-examples") && run.stderr.contains("examples"),
        "{}",
        run.stderr
    );

    std::fs::remove_file(d.join("rules/bad.toml")).unwrap();
    write(d, "b.txt", "v = zz_90817263\n");
    // The rules file itself contains its example; scan only b.txt.
    let run = opsbot(
        d,
        &["scan", "--rules-dir", "rules", "--format", "json", "b.txt"],
    );
    assert_eq!(keys(&json(&run)), vec![("good".into(), "b.txt".into(), 1)]);
}

#[test]
fn binary_invalid_utf8_and_oversized_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Binary (NUL in the first bytes): only its printable strings are scanned, the key
    // is reported at its byte offset (line 0).
    let mut bin = b"\x7fELF\x00\x01\x02".to_vec();
    bin.extend(aws_key().as_bytes());
    std::fs::write(d.join("tool.bin"), bin).unwrap();
    // Invalid UTF-8 around a secret: still found, column counted in characters.
    let mut latin1 = b"caf\xe9 \xff\xfe token=".to_vec();
    latin1.extend(github_token().as_bytes());
    latin1.push(b'\n');
    std::fs::write(d.join("latin1.txt"), latin1).unwrap();
    // Over the size limit: skipped with a note.
    write(
        d,
        "big.log",
        &format!("{}\n{}\n", "x".repeat(2048), stripe_key()),
    );
    let run = opsbot(d, &["scan", "--format", "json", "--max-file-size", "1K"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let findings = json(&run);
    assert_eq!(
        keys(&findings),
        vec![
            ("aws-access-key-id".into(), "tool.bin".into(), 0),
            ("github-pat-classic".into(), "latin1.txt".into(), 1)
        ]
    );
    let text = |path: &str| findings.iter().find(|f| f["path"] == path).unwrap();
    assert_eq!(text("latin1.txt")["column"], 15);
    assert_eq!(text("tool.bin")["offset"], 7);
    assert!(
        run.stderr
            .contains("skipped 1 file(s) larger than the size limit"),
        "{}",
        run.stderr
    );
    let run = opsbot(d, &["scan", "--format", "json", "--max-file-size", "lots"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--max-file-size"), "{}", run.stderr);
}

#[test]
fn a_100_mb_single_line_file_is_scanned_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Minified-JS-like single line of 100 MB with secrets near the start, middle and end.
    let size = 100 * 1024 * 1024;
    let chunk = b"var a=function(b){return b+1};if(x&&y){z.push('v')}";
    let mut data = Vec::with_capacity(size + 200);
    let mut n = 0u64;
    while data.len() < size {
        data.extend_from_slice(chunk);
        n += 1;
        if n == 10 || n == 1_000_000 {
            data.extend_from_slice(format!(";k=\"{}\";", aws_key()).as_bytes());
        }
    }
    data.extend_from_slice(format!(";t=\"{}\";", github_token()).as_bytes());
    std::fs::write(d.join("bundle.min.js"), &data).unwrap();
    drop(data);
    let run = opsbot(d, &["scan", "--format", "json", "--max-file-size", "0"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let findings = json(&run);
    assert_eq!(findings.len(), 3, "{}", run.stdout);
    assert!(findings.iter().all(|f| f["line"] == 1));
    let last = findings
        .iter()
        .find(|f| f["rule_id"] == "github-pat-classic")
        .unwrap();
    assert!(last["column"].as_u64().unwrap() > size as u64);
    // Default size limit: skipped, with a note.
    let run = opsbot(d, &["scan"]);
    assert_eq!(run.code, 0);
    assert!(run.stderr.contains("skipped 1 file(s)"), "{}", run.stderr);
}

#[test]
fn symlink_loops_unreadable_files_and_missing_paths_do_not_stop_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "ok/a.py", &format!("k = '{}'\n", aws_key()));
    std::os::unix::fs::symlink("..", d.join("ok/loop")).unwrap();
    std::os::unix::fs::symlink("self", d.join("self")).unwrap();

    // Not following links (the default): no loop at all.
    let run = opsbot(d, &["scan", "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert_eq!(
        keys(&json(&run)),
        vec![("aws-access-key-id".into(), "ok/a.py".into(), 1)]
    );

    // Following links: the loop is reported by name and the scan goes on.
    let run = opsbot(d, &["scan", "--format", "json", "--follow-symlinks"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert_eq!(
        keys(&json(&run)),
        vec![("aws-access-key-id".into(), "ok/a.py".into(), 1)]
    );
    assert!(run.stderr.contains("loop"), "{}", run.stderr);

    // A file that cannot be read (even by root: /proc/self/mem has nothing mapped at 0).
    let run = opsbot(d, &["scan", "--format", "json", ".", "/proc/self/mem"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("/proc/self/mem"), "{}", run.stderr);
    assert_eq!(json(&run).len(), 1);

    // chmod 000: unreadable unless we are root (root reads it anyway; then it is scanned).
    use std::os::unix::fs::PermissionsExt;
    let locked = write(d, "locked.txt", &format!("{}\n", stripe_key()));
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let readable = std::fs::read(&locked).is_ok();
    let run = opsbot(d, &["scan", "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let found = keys(&json(&run));
    if readable {
        assert!(found.contains(&("stripe-live-secret-key".into(), "locked.txt".into(), 1)));
    } else {
        assert!(run.stderr.contains("locked.txt"), "{}", run.stderr);
        assert_eq!(found.len(), 1);
    }
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o644)).unwrap();

    // A missing path: warning naming it, exit 2 when nothing else was found.
    let clean = tempfile::tempdir().unwrap();
    let run = opsbot(clean.path(), &["scan", "no/such/dir"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("no/such/dir"), "{}", run.stderr);
}

#[test]
fn history_scans_every_blob_once_and_names_the_commit_that_introduced_it() {
    let dir = repo();
    let d = dir.path();
    // c1: the key arrives; c2: the file changes around it (a new blob with the same key);
    // c3: the key is removed. A side branch adds another secret and is never merged.
    write(d, "app/config.py", &format!("KEY = \"{}\"\n", aws_key()));
    git(d, &["add", "-A"]);
    git(d, &["commit", "-qm", "c1"]);
    let c1 = git(d, &["rev-parse", "HEAD"]);
    write(
        d,
        "app/config.py",
        &format!("# settings\nKEY = \"{}\"\nDEBUG = False\n", aws_key()),
    );
    write(d, "blob.bin", "\0\0binary\0");
    git(d, &["add", "-A"]);
    git(d, &["commit", "-qm", "c2"]);
    write(d, "app/config.py", "# settings\nDEBUG = False\n");
    git(d, &["commit", "-qam", "c3"]);
    git(d, &["checkout", "-qb", "side"]);
    write(
        d,
        "deploy/.env",
        &format!("GITHUB_TOKEN={}\n", github_token()),
    );
    git(d, &["add", "-A"]);
    git(d, &["commit", "-qm", "side"]);
    let side = git(d, &["rev-parse", "HEAD"]);
    git(d, &["checkout", "-q", "main"]);

    // The work tree and the last commit are clean.
    let run = opsbot(d, &["scan", "--git", "HEAD"]);
    assert_eq!(run.code, 0, "{}", run.all());

    let run = opsbot(d, &["scan", "--git", "--all", "-f", "json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let found = json(&run);
    let got: Vec<(String, String, u64, String)> = found
        .iter()
        .map(|f| {
            (
                f["rule_id"].as_str().unwrap().to_owned(),
                f["path"].as_str().unwrap().to_owned(),
                f["line"].as_u64().unwrap(),
                f["commit"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // Oldest first; the key once (at c1, its line there), not again for c2's blob.
    assert_eq!(got.len(), 2, "{found:?}");
    assert_eq!(got[0].1, "app/config.py");
    assert_eq!(got[0].2, 1);
    assert_eq!(got[0].3, c1);
    assert_eq!(got[1].1, "deploy/.env");
    assert_eq!(got[1].3, side);
    assert!(
        run.stderr
            .contains("4 commit(s), 5 distinct file version(s)"),
        "{}",
        run.stderr
    );

    // --history is the same; pathspecs limit it; --max-file-size skips and says so.
    let run = opsbot(d, &["scan", "--history", "-f", "json", "--", "deploy"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert_eq!(keys(&json(&run)).len(), 1);
    let run = opsbot(d, &["scan", "--all", "--max-file-size", "10"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr.contains("larger than the size limit"),
        "{}",
        run.stderr
    );

    // Usage errors exit 2 with a message; outside a repository too.
    let run = opsbot(d, &["scan", "--git"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("--git needs a RANGE"), "{}", run.stderr);
    let run = opsbot(d, &["scan", "--all", "--staged"]);
    assert_eq!(run.code, 2, "{}", run.all());
    let outside = tempfile::tempdir().unwrap();
    let run = opsbot(outside.path(), &["scan", "--all"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("git"), "{}", run.stderr);
}

#[test]
fn a_tree_deeper_than_the_path_limit_is_reported_as_not_scanned_and_exits_2() {
    // On tmpfs when there is one: removing 3,000 levels from a disk takes seconds.
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    // 3,000 levels (a 6,000-byte path, past Linux's 4,096) with a key at the bottom: three
    // chains of 1,000, nested by renames, as no single path may be that long.
    let script = format!(
        "p=$(printf 'd/%.0s' $(seq 1000)); for c in a b c; do mkdir -p \"$c/$p\" || exit 1; done; \
         printf 'KEY = \"%s\"\\n' '{}' > \"c/$p/key.txt\" && mv c \"b/$p\" && mv b \"a/$p\"",
        aws_key()
    );
    let made = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(made.success());
    write(dir.path(), "top.txt", "nothing here\n");
    let run = opsbot(dir.path(), &["scan", "."]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("File name too long"), "{}", run.stderr);
    assert!(
        run.stderr.contains("1 path(s) could not be scanned"),
        "{}",
        run.stderr
    );
    // The 6,000-character path is shortened in the message, its end (the reason) kept.
    assert!(run.stderr.len() < 2_000, "{} bytes", run.stderr.len());
    // GNU rm removes trees deeper than PATH_MAX.
    let _ = Command::new("rm").arg("-rf").arg(dir.path()).status();
}

/// `len` bytes that look like compiled code: a NUL every fourth byte, so no printable run is
/// long enough to be a string.
fn binary_noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if i % 4 == 0 { 0 } else { (x >> 8) as u8 }
        })
        .collect()
}

/// A binary of `len` bytes with `secret` (NUL-delimited) at byte `at`.
fn binary_with(len: usize, seed: u32, at: usize, secret: &str) -> Vec<u8> {
    let mut data = binary_noise(len, seed);
    data[at - 1] = 0;
    data[at..at + secret.len()].copy_from_slice(secret.as_bytes());
    data[at + secret.len()] = 0;
    data
}

fn write_bytes(dir: &Path, rel: &str, data: &[u8]) {
    let p = dir.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(p, data).unwrap();
}

/// `(rule, path, offset)` of each finding, sorted; only findings in binaries (line 0).
fn binary_keys(findings: &[Value]) -> Vec<(String, String, u64)> {
    let mut v: Vec<_> = findings
        .iter()
        .filter(|f| f["line"] == 0)
        .map(|f| {
            (
                f["rule_id"].as_str().unwrap().to_owned(),
                f["path"].as_str().unwrap().to_owned(),
                f["offset"].as_u64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn staged_binary_files_are_read_from_the_index_and_scanned_as_strings() {
    let dir = repo();
    let d = dir.path();
    write(d, "README.md", "# demo\n");
    write_bytes(d, "lib/tool.so", &binary_noise(600, 7));
    write_bytes(d, "old.bin", &binary_noise(300, 8));
    git(d, &["add", "-A"]);
    git(d, &["commit", "-qm", "init"]);

    // A binary without a secret: scanned, counted and named, nothing found; the hook passes.
    write_bytes(d, "assets/logo.png", &binary_noise(900, 9));
    git(d, &["add", "-A"]);
    let run = opsbot(d, &["scan", "--staged", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(json(&run).is_empty(), "{}", run.stdout);
    let run = opsbot(d, &["scan", "--staged"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr.contains(
            "1 binary file(s) scanned as strings (high-confidence rules only): assets/logo.png"
        ),
        "{}",
        run.stderr
    );
    git(d, &["commit", "-qm", "logo"]);

    // A modified binary and a new one (a name with spaces, a non-ASCII name), each with a
    // key, beside a text change and a deleted binary.
    write_bytes(d, "lib/tool.so", &binary_with(700, 7, 123, &aws_key()));
    write_bytes(
        d,
        "data/app store é.db",
        &binary_with(4000, 11, 2500, &format!("token={}", github_token())),
    );
    write(d, "README.md", "# demo\nmore\n");
    std::fs::remove_file(d.join("old.bin")).unwrap();
    git(d, &["add", "-A"]);
    // The index is scanned, not the work tree: cleaning the files afterwards changes nothing.
    write_bytes(d, "lib/tool.so", &binary_noise(700, 7));
    write_bytes(d, "data/app store é.db", &binary_noise(4000, 11));

    let run = opsbot(d, &["scan", "--staged", "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let findings = json(&run);
    assert_eq!(
        binary_keys(&findings),
        vec![
            ("aws-access-key-id".into(), "lib/tool.so".into(), 123),
            (
                "github-pat-classic".into(),
                "data/app store é.db".into(),
                2506
            ),
        ],
        "{}",
        run.stdout
    );
    assert_eq!(findings.len(), 2, "{}", run.stdout);
    assert!(findings.iter().all(|f| f.get("commit").is_none()));
    // Text output names the paths, and the summary the binaries.
    let run = opsbot(d, &["scan", "--staged", "--color", "never"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stdout.contains("lib/tool.so"), "{}", run.stdout);
    assert!(
        run.stderr.contains("2 binary file(s) scanned as strings")
            && run.stderr.contains("data/app store é.db, lib/tool.so"),
        "{}",
        run.stderr
    );

    // Pathspecs limit it; the size limit skips the large one (unread) and says so.
    let run = opsbot(d, &["scan", "--staged", "-f", "json", "--", "lib"]);
    assert_eq!(binary_keys(&json(&run)).len(), 1, "{}", run.stdout);
    let run = opsbot(
        d,
        &["scan", "--staged", "-f", "json", "--max-file-size", "1K"],
    );
    assert_eq!(run.code, 1, "{}", run.all());
    assert_eq!(
        binary_keys(&json(&run)),
        vec![("aws-access-key-id".into(), "lib/tool.so".into(), 123)]
    );
    assert!(
        run.stderr
            .contains("skipped 1 file(s) larger than the size limit"),
        "{}",
        run.stderr
    );
    // .opsbotignore applies to binaries as to text.
    write(d, ".opsbotignore", "data/\n");
    let run = opsbot(d, &["scan", "--staged", "-f", "json"]);
    assert_eq!(
        binary_keys(&json(&run)),
        vec![("aws-access-key-id".into(), "lib/tool.so".into(), 123)]
    );
}

#[test]
fn git_ranges_scan_the_binaries_each_commit_writes_and_name_the_commit() {
    let dir = repo();
    let d = dir.path();
    write(d, "README.md", "# demo\n");
    git(d, &["add", "-A"]);
    git(d, &["commit", "-qm", "c1"]);
    let c1 = git(d, &["rev-parse", "HEAD"]);

    // c2: a keystore-like binary with a key, and a clean binary.
    write_bytes(
        d,
        "certs/my store.p12",
        &binary_with(3000, 21, 1000, &format!("pw={}", stripe_key())),
    );
    write_bytes(d, "bin/clean.o", &binary_noise(2000, 22));
    git(d, &["add", "-A"]);
    git(d, &["commit", "-qm", "c2"]);
    let c2 = git(d, &["rev-parse", "HEAD"]);

    // c3: the key is removed again (still in history), the clean binary changes.
    write_bytes(d, "certs/my store.p12", &binary_noise(3000, 21));
    write_bytes(d, "bin/clean.o", &binary_noise(2100, 23));
    git(d, &["add", "-A"]);
    git(d, &["commit", "-qm", "c3"]);
    let c3 = git(d, &["rev-parse", "HEAD"]);

    let run = opsbot(
        d,
        &["scan", "--git", &format!("{c1}..{c3}"), "--format", "json"],
    );
    assert_eq!(run.code, 1, "{}", run.all());
    let findings = json(&run);
    assert_eq!(
        binary_keys(&findings),
        vec![(
            "stripe-live-secret-key".into(),
            "certs/my store.p12".into(),
            1003
        )],
        "{}",
        run.stdout
    );
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0]["commit"], c2.as_str());
    let run = opsbot(d, &["scan", "--git", &format!("{c1}..{c3}")]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("binary file(s) scanned as strings")
            && run.stderr.contains("bin/clean.o, certs/my store.p12"),
        "{}",
        run.stderr
    );

    // The single commit that added it; the one that removed it is clean.
    let run = opsbot(d, &["scan", "--git", &c2, "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let findings = json(&run);
    assert_eq!(findings.len(), 1, "{}", run.stdout);
    assert_eq!(findings[0]["commit"], c2.as_str());
    assert_eq!(findings[0]["path"], "certs/my store.p12");
    let run = opsbot(d, &["scan", "--git", &c3, "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(json(&run).is_empty());
    let run = opsbot(d, &["scan", "--git", &c3]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr.contains("2 binary file(s) scanned as strings"),
        "{}",
        run.stderr
    );

    // c4: the keystore is renamed and a token written into it (the finding takes the new
    // name); c5: c2's keystore comes back under another name (the same blob: its key is
    // reported once, at c2, the oldest commit that wrote it).
    git(d, &["mv", "certs/my store.p12", "certs/moved store.p12"]);
    write_bytes(
        d,
        "certs/moved store.p12",
        &binary_with(3000, 21, 2000, &github_token()),
    );
    git(d, &["add", "-A"]);
    git(d, &["commit", "-qm", "c4"]);
    let c4 = git(d, &["rev-parse", "HEAD"]);
    let status = git(d, &["show", "--stat", "--format=", "-M", &c4]);
    assert!(status.contains("=>"), "a rename: {status}");
    write_bytes(
        d,
        "again.p12",
        &binary_with(3000, 21, 1000, &format!("pw={}", stripe_key())),
    );
    git(d, &["add", "-A"]);
    git(d, &["commit", "-qm", "c5"]);
    let run = opsbot(
        d,
        &["scan", "--git", &format!("{c1}..HEAD"), "--format", "json"],
    );
    assert_eq!(run.code, 1, "{}", run.all());
    let found: Vec<(String, u64, String)> = json(&run)
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["offset"].as_u64().unwrap(),
                f["commit"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            ("certs/my store.p12".to_owned(), 1003, c2.clone()),
            ("certs/moved store.p12".to_owned(), 2000, c4.clone()),
        ],
        "{}",
        run.stdout
    );
}
