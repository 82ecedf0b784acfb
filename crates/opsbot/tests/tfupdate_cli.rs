//! `opsbot tfupdate …` as users run it: the real binary against the fake registry and the
//! fake GitHub on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use opsbot_tests::fake_github::{FakeGitHub, TEST_TOKEN};
use opsbot_tests::fake_registry::FakeRegistry;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn opsbot(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_opsbot"));
    cmd.args(args)
        .env_remove("GITHUB_TOKEN")
        .env_remove("GITHUB_API_URL")
        .env_remove("OPSBOT_TF_REGISTRY_URL")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `opsbot tfupdate lock [OPTIONS] DIR` against the fake registry `reg`, with the provider
/// cache in `cache` and one `--platform` per entry of `platforms`.
async fn tfupdate_lock(
    reg: &FakeRegistry,
    cache: &Path,
    dir: &Path,
    platforms: &[&str],
    extra: &[&str],
) -> Run {
    let url = reg.url();
    let mut args = vec!["tfupdate", "lock"];
    args.extend_from_slice(extra);
    for p in platforms {
        args.extend(["--platform", p]);
    }
    args.extend([
        "--registry-url",
        url.as_str(),
        "--cache-dir",
        cache.to_str().unwrap(),
        dir.to_str().unwrap(),
    ]);
    opsbot(&args, &[]).await
}

fn fixture_copy() -> tempfile::TempDir {
    let src =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../opsbot-tfupdate/tests/fixtures/realistic");
    let dir = tempfile::tempdir().unwrap();
    for name in ["main.tf", "crlf.tf", "broken.tf"] {
        let to = if name == "main.tf" {
            dir.path().join("envs/prod").join(name)
        } else {
            dir.path().join(name)
        };
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(src.join(name), to).unwrap();
    }
    // never touched: tool directories
    let vendored = dir.path().join(".terraform/modules/x/main.tf");
    std::fs::create_dir_all(vendored.parent().unwrap()).unwrap();
    std::fs::write(
        &vendored,
        "terraform {\n  required_version = \"1.0.0\"\n}\n",
    )
    .unwrap();
    dir
}

fn read(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn terraform_with_version_recursive_broken_file_and_idempotency() {
    let dir = fixture_copy();
    let path = dir.path().to_str().unwrap();
    let broken_before = read(dir.path(), "broken.tf");
    let run = opsbot(&["tfupdate", "terraform", "-v", "1.9.8", "-r", path], &[]).await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("broken.tf:11:") && run.stderr.contains("cannot parse HCL"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout
            .contains("main.tf:8: terraform required_version: \"~> 1.5\" -> \"~> 1.9\""),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("(replaced: `>= 1.3, < 1.6` did not admit 1.9.8)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("updated 2 of 3 file(s) (3 pin(s)) to 1.9.8"),
        "{}",
        run.stdout
    );
    assert_eq!(read(dir.path(), "broken.tf"), broken_before);
    assert!(read(dir.path(), ".terraform/modules/x/main.tf").contains("\"1.0.0\""));
    assert!(
        read(dir.path(), "envs/prod/main.tf")
            .contains("required_version = \"~> 1.9\" # pessimistic, two parts")
    );

    // second run, broken file ignored: nothing changes, success
    let run = opsbot(
        &[
            "tfupdate",
            "terraform",
            "-v",
            "1.9.8",
            "-r",
            "-i",
            "broken",
            path,
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("updated 0 of 2 file(s) (0 pin(s))"),
        "{}",
        run.stdout
    );

    // without -r only the top directory
    let run = opsbot(
        &[
            "tfupdate",
            "terraform",
            "-v",
            "1.10.0",
            "-i",
            "broken",
            path,
        ],
        &[],
    )
    .await;
    assert!(
        run.stdout.contains("updated 1 of 1 file(s)"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn terraform_latest_comes_from_github_releases() {
    let gh = FakeGitHub::start().await;
    gh.create_repo("hashicorp/terraform");
    gh.add_release("hashicorp/terraform", "v1.9.7", false);
    gh.add_release("hashicorp/terraform", "v1.9.8", false);
    gh.add_release("hashicorp/terraform", "v1.10.0-beta1", true);
    let dir = fixture_copy();
    let env = [
        ("GITHUB_API_URL", gh.url()),
        ("GITHUB_TOKEN", TEST_TOKEN.to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let file = dir.path().join("crlf.tf");
    let run = opsbot(&["tfupdate", "terraform", file.to_str().unwrap()], &env).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(read(dir.path(), "crlf.tf").contains("required_version = \"1.9.8\"\r\n"));
    let run = opsbot(
        &[
            "tfupdate",
            "terraform",
            "--pre-release",
            file.to_str().unwrap(),
        ],
        &env,
    )
    .await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(read(dir.path(), "crlf.tf").contains("required_version = \"1.10.0-beta1\""));

    let run = opsbot(
        &["tfupdate", "release", "latest", "hashicorp/terraform"],
        &env,
    )
    .await;
    assert_eq!(run.stdout, "1.9.8\n", "{}", run.stderr);
    let run = opsbot(
        &[
            "tfupdate",
            "release",
            "list",
            "--pre-release",
            "hashicorp/terraform",
        ],
        &env,
    )
    .await;
    assert_eq!(run.stdout, "1.9.7\n1.9.8\n1.10.0-beta1\n", "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_and_module_from_the_registry() {
    let reg = FakeRegistry::start().await;
    for v in ["5.31.0", "5.70.0"] {
        reg.add_provider("hashicorp", "aws", v, &["linux_amd64"]);
    }
    reg.add_provider("hashicorp", "aws", "6.0.0-beta1", &["linux_amd64"]);
    for v in ["5.1.0", "5.13.0"] {
        reg.add_module("terraform-aws-modules", "vpc", "aws", v);
    }
    let url = reg.url();
    let env = [("OPSBOT_TF_REGISTRY_URL", url.as_str())];
    let dir = fixture_copy();
    let path = dir.path().to_str().unwrap();

    let run = opsbot(
        &["tfupdate", "provider", "aws", "-r", "-i", "broken", path],
        &env,
    )
    .await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("required_providers.aws: \"5.31.0\" -> \"5.70.0\""),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("provider \"aws\" version: \"= 5.31.0\" -> \"= 5.70.0\""),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("crlf.tf:6: required_providers.aws: \"~> 5.0\" -> \"~> 5.70\""),
        "{}",
        run.stdout
    );
    assert_eq!(reg.request_count("/v1/providers/hashicorp/aws/versions"), 1);

    let run = opsbot(
        &[
            "tfupdate",
            "module",
            "terraform-aws-modules/vpc/aws",
            "-r",
            "-i",
            "broken",
            path,
        ],
        &env,
    )
    .await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(read(dir.path(), "envs/prod/main.tf").contains("  version = \"5.13.0\"\n"));
    assert!(
        run.stdout.contains("not a plain string literal"),
        "{}",
        run.stdout
    );

    // git refs only with --git-ref, and with an explicit version
    let run = opsbot(
        &[
            "tfupdate",
            "module",
            "-v",
            "1.4.0",
            "github.com/acme/tf-modules",
            "-r",
            "-i",
            "broken",
            path,
        ],
        &env,
    )
    .await;
    // as tfupdate: matching git `?ref=` tags are updated by default
    assert!(!run.stdout.contains("use --git-ref"), "{}", run.stdout);
    let run = opsbot(
        &[
            "tfupdate",
            "module",
            "--git-ref",
            "-v",
            "v1.4.0",
            "github.com/acme/tf-modules",
            "-r",
            "-i",
            "broken",
            path,
        ],
        &env,
    )
    .await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(read(dir.path(), "envs/prod/main.tf").contains("//network?ref=v1.4.0\""));

    let run = opsbot(&["tfupdate", "release", "latest", "hashicorp/aws"], &env).await;
    assert_eq!(run.stdout, "5.70.0\n", "{}", run.stderr);
    let run = opsbot(
        &[
            "tfupdate",
            "release",
            "list",
            "-s",
            "tfregistryModule",
            "-n",
            "1",
            "terraform-aws-modules/vpc/aws",
        ],
        &env,
    )
    .await;
    assert_eq!(run.stdout, "5.13.0\n", "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn lock_subcommand_and_usage_errors() {
    let reg = FakeRegistry::start().await;
    reg.add_provider(
        "hashicorp",
        "aws",
        "5.70.0",
        &["linux_amd64", "darwin_arm64"],
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("main.tf"),
        "terraform {\n  required_providers {\n    aws = { source = \"hashicorp/aws\", version = \"5.70.0\" }\n  }\n}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join(".terraform.lock.hcl"), "").unwrap();
    let cache = dir.path().join("cache");
    let platforms = ["linux_amd64", "darwin_arm64"];
    let run = tfupdate_lock(&reg, &cache, dir.path(), &platforms, &[]).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("hashicorp/aws: (new) -> 5.70.0"),
        "{}",
        run.stdout
    );
    let lock = read(dir.path(), ".terraform.lock.hcl");
    assert!(lock.starts_with("# This file is maintained automatically by \"terraform init\"."));
    assert_eq!(lock.matches("\"h1:").count(), 2, "{lock}");
    // every SHA256SUMS line: two zips and the `_manifest.json`, as Terraform records them
    assert_eq!(lock.matches("\"zh:").count(), 3, "{lock}");
    let run = tfupdate_lock(&reg, &cache, dir.path(), &platforms, &[]).await;
    assert!(
        run.stdout.contains("updated 0 of 1 lock files"),
        "{}",
        run.stdout
    );

    let run = opsbot(&["tfupdate", "lock", "--platform", "linux", "."], &[]).await;
    assert_eq!(run.code, 1, "tfupdate exits 1 on any error");
    assert!(run.stderr.contains("--platform `linux`"), "{}", run.stderr);
    let run = opsbot(&["tfupdate", "terraform", "-v", "one.two", "."], &[]).await;
    assert_eq!(run.code, 1, "tfupdate exits 1 on any error");
    assert!(
        run.stderr.contains("invalid version constraint `one.two`"),
        "{}",
        run.stderr
    );
    let run = opsbot(
        &["tfupdate", "terraform", "-v", "1.9.8", "/does/not/exist"],
        &[],
    )
    .await;
    assert_eq!(run.code, 1, "tfupdate exits 1 on any error");
    assert!(run.stderr.contains("/does/not/exist"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn pr_job_from_the_command_line_with_opsbot_toml() {
    let gh = FakeGitHub::start().await;
    gh.create_repo("acme/infra");
    let versions = "terraform {\n  required_providers {\n    aws = { source = \"hashicorp/aws\", version = \"5.31.0\" }\n  }\n}\n";
    gh.commit_files("acme/infra", "main", &[("versions.tf", versions)], "infra");
    let reg = FakeRegistry::start().await;
    reg.add_provider("hashicorp", "aws", "5.70.0", &["linux_amd64"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("versions.tf"), versions).unwrap();
    let config = dir.path().join("opsbot.toml");
    std::fs::write(
        &config,
        "[tfupdate]\nterraform = false\nlabels = [\"deps\"]\nbranch_prefix = \"bot/tf\"\n",
    )
    .unwrap();
    let url = gh.url();
    let reg_url = reg.url();
    let env = [
        ("GITHUB_API_URL", url.as_str()),
        ("GITHUB_TOKEN", TEST_TOKEN),
        ("GITHUB_REPOSITORY", "acme/infra"),
        ("OPSBOT_TF_REGISTRY_URL", reg_url.as_str()),
    ];
    let checkout = dir.path().to_str().unwrap();
    let cfg = config.to_str().unwrap();
    let args = ["--config", cfg, "tfupdate", "pr", "--checkout", checkout];
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let run = opsbot(&dry, &env).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("would open: Bump hashicorp/aws from 5.31.0 to 5.70.0"),
        "{}",
        run.stdout
    );
    assert!(gh.pulls("acme/infra").is_empty());

    let run = opsbot(&args, &env).await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("opened #"), "{}", run.stdout);
    let pulls = gh.pulls("acme/infra");
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0].head, "bot/tf/provider-hashicorp-aws");
    assert_eq!(pulls[0].labels, vec!["deps".to_string()]);
    let run = opsbot(&args, &env).await;
    assert!(run.stdout.contains("already open #"), "{}", run.stdout);
    assert_eq!(gh.pulls("acme/infra").len(), 1);

    // a typo in the table is reported with its key path
    std::fs::write(&config, "[tfupdate]\nlabelz = []\n").unwrap();
    let run = opsbot(&args, &env).await;
    // tfupdate's exit code for any error
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("labelz"), "{}", run.stderr);
}

/// `opsbot tfupdate lock` writes the same lock file as `terraform providers lock` for
/// the same providers, versions and platforms: both reach the fake registry as
/// registry.terraform.io through its HTTPS front (real zips, signed SHA256SUMS with a
/// `_manifest.json` line). Without `terraform` on PATH the Terraform half is skipped
/// with a message; opsbot's output is still checked against the fake's hashes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_files_match_terraform_providers_lock() {
    use opsbot_tests::fake_registry::TlsFront;
    let registry = FakeRegistry::start().await;
    let platforms = ["linux_amd64", "darwin_arm64"];
    registry.add_provider("hashicorp", "null", "3.2.1", &platforms);
    registry.add_provider("hashicorp", "null", "3.2.2", &platforms);
    registry.add_provider("hashicorp", "random", "3.6.0", &platforms);
    let front = TlsFront::start(&[("registry.terraform.io", &registry)])
        .await
        .unwrap();
    let main_tf = "terraform {\n  required_providers {\n    null = {\n      source  = \"hashicorp/null\"\n      version = \"3.2.1\"\n    }\n    random = {\n      source  = \"hashicorp/random\"\n      version = \"~> 3.5\"\n    }\n  }\n}\n";
    let mut env: Vec<(String, String)> = front.client_env();
    env.push(("CHECKPOINT_DISABLE".into(), "1".into()));
    let ours = tempfile::tempdir().unwrap();
    std::fs::write(ours.path().join("main.tf"), main_tf).unwrap();
    // like tfupdate, `lock` updates the lock files that exist
    std::fs::write(ours.path().join(".terraform.lock.hcl"), "").unwrap();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let cache = ours.path().join(".cache");
    let cache_s = cache.display().to_string();
    let mut cmd_env = env_refs.clone();
    cmd_env.push(("OPSBOT_TF_CACHE_DIR", &cache_s));
    let dir_s = ours.path().display().to_string();
    let run = opsbot(
        &[
            "tfupdate",
            "lock",
            "--platform",
            "linux_amd64",
            "--platform",
            "darwin_arm64",
            &dir_s,
        ],
        &cmd_env,
    )
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let lock = read(ours.path(), ".terraform.lock.hcl");
    let plats: Vec<String> = platforms.iter().map(|p| p.to_string()).collect();
    for (name, version) in [("null", "3.2.1"), ("random", "3.6.0")] {
        let hashes = registry.lock_hashes("hashicorp", name, version, &plats);
        assert_eq!(
            hashes.iter().filter(|h| h.starts_with("zh:")).count(),
            3,
            "2 zips + manifest"
        );
        for h in &hashes {
            assert!(
                lock.contains(&format!("\"{h}\"")),
                "{h} missing from\n{lock}"
            );
        }
    }
    assert!(
        lock.contains("version     = \"3.6.0\"\n  constraints = \"~> 3.5\""),
        "{lock}"
    );

    let Some(terraform) = terraform_cli() else {
        eprintln!(
            "SKIP: no terraform on PATH; the comparison with `terraform providers lock` was not run"
        );
        return;
    };
    let theirs = tempfile::tempdir().unwrap();
    std::fs::write(theirs.path().join("main.tf"), main_tf).unwrap();
    let rc = theirs.path().join("terraformrc");
    std::fs::write(&rc, "").unwrap();
    let mut cmd = tokio::process::Command::new(terraform);
    cmd.args([
        "providers",
        "lock",
        "-platform=linux_amd64",
        "-platform=darwin_arm64",
    ])
    .current_dir(theirs.path())
    .env("TF_CLI_CONFIG_FILE", &rc)
    .env("TF_IN_AUTOMATION", "1")
    .env_remove("TF_PLUGIN_CACHE_DIR");
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let zip = |name: &str, version: &str, platform: &str| {
        format!("/dl/hashicorp/{name}/{version}/terraform-provider-{name}_{version}_{platform}.zip")
    };
    let fetched = |name: &str, version: &str| {
        platforms
            .iter()
            .map(|p| registry.request_count(&zip(name, version, p)))
            .collect::<Vec<_>>()
    };
    let before = [fetched("null", "3.2.1"), fetched("random", "3.6.0")];
    let out = cmd.output().await.unwrap();
    assert!(
        out.status.success(),
        "terraform providers lock failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Terraform itself fetched (and verified) every package from the fake
    let after = [fetched("null", "3.2.1"), fetched("random", "3.6.0")];
    for (b, a) in before.iter().flatten().zip(after.iter().flatten()) {
        assert!(
            a > b,
            "terraform did not download every package: {:?}",
            registry.requests()
        );
    }
    eprintln!(
        "terraform providers lock: {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );
    let want = read(theirs.path(), ".terraform.lock.hcl");
    assert_eq!(lock, want, "opsbot's lock file differs from terraform's");

    // A tampered signature is refused and the lock file is left as it was.
    registry.add_provider("hashicorp", "null", "3.2.3", &platforms);
    registry.tamper_signature("hashicorp", "null", "3.2.3");
    std::fs::write(
        ours.path().join("main.tf"),
        main_tf.replace("3.2.1", "3.2.3"),
    )
    .unwrap();
    let run = opsbot(
        &[
            "tfupdate",
            "lock",
            "--platform",
            "linux_amd64",
            "--platform",
            "darwin_arm64",
            &dir_s,
        ],
        &cmd_env,
    )
    .await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("signature"), "{}", run.stderr);
    assert_eq!(read(ours.path(), ".terraform.lock.hcl"), want);
}

/// The hashes listed in the lock block of `address`, in file order.
fn lock_block_hashes(lock: &str, address: &str) -> Vec<String> {
    let Some(start) = lock.find(&format!("provider \"{address}\" {{")) else {
        return Vec::new();
    };
    let rest = &lock[start..];
    let end = rest.find("\n}").unwrap_or(rest.len());
    rest[..end]
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("\"h1:") || l.starts_with("\"zh:"))
        .map(|l| l.trim_end_matches(',').trim_matches('"').to_string())
        .collect()
}

/// An OpenTofu tree gets OpenTofu hashes: with `registry.terraform.io` and
/// `registry.opentofu.org` both served (through the HTTPS front, under their real names)
/// and the same provider version built differently on each, a provider whose source is
/// `registry.opentofu.org/…`, or any provider when `TFREGISTRY_BASE_URL` names the
/// OpenTofu registry, is locked with the OpenTofu registry's hashes, and
/// registry.terraform.io is never asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentofu_providers_get_opentofu_hashes() {
    use opsbot_tests::fake_registry::{PackageSpec, TlsFront};
    let hashicorp = FakeRegistry::start().await;
    let tofu = FakeRegistry::start().await;
    let platforms = ["linux_amd64", "darwin_arm64"];
    hashicorp.add_provider("hashicorp", "null", "3.2.2", &platforms);
    // OpenTofu's registry serves its own builds, without a `_manifest.json` line
    tofu.add_provider_packages(
        "hashicorp",
        "null",
        "3.2.2",
        platforms
            .iter()
            .map(|p| {
                PackageSpec::with_files(
                    p,
                    vec![(
                        "terraform-provider-null_v3.2.2".to_string(),
                        format!("OpenTofu's build of hashicorp/null 3.2.2 for {p}\n").into_bytes(),
                    )],
                )
            })
            .collect(),
        false,
    );
    let front = TlsFront::start(&[
        ("registry.terraform.io", &hashicorp),
        ("registry.opentofu.org", &tofu),
    ])
    .await
    .unwrap();
    let plats: Vec<String> = platforms.iter().map(|p| p.to_string()).collect();
    let want = tofu.lock_hashes("hashicorp", "null", "3.2.2", &plats);
    let theirs = hashicorp.lock_hashes("hashicorp", "null", "3.2.2", &plats);
    assert_eq!(want.len(), 4, "2 h1 + 2 zh: {want:?}");
    assert!(
        want.iter().all(|h| !theirs.contains(h)),
        "builds must differ"
    );

    let env = front.client_env();
    let tf = |source: &str| {
        format!(
            "terraform {{\n  required_providers {{\n    null = {{\n      source  = \"{source}\"\n      version = \"3.2.2\"\n    }}\n  }}\n}}\n"
        )
    };
    for (source, base_url) in [
        ("registry.opentofu.org/hashicorp/null", None),
        ("hashicorp/null", Some("https://registry.opentofu.org")),
    ] {
        hashicorp.reset_requests();
        tofu.reset_requests();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.tf"), tf(source)).unwrap();
        std::fs::write(dir.path().join(".terraform.lock.hcl"), "").unwrap();
        let cache = dir.path().join(".cache").display().to_string();
        let mut run_env: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_env.push(("OPSBOT_TF_CACHE_DIR", &cache));
        if let Some(url) = base_url {
            run_env.push(("TFREGISTRY_BASE_URL", url));
        }
        let dir_s = dir.path().display().to_string();
        let run = opsbot(
            &[
                "tfupdate",
                "lock",
                "--platform",
                "linux_amd64",
                "--platform",
                "darwin_arm64",
                &dir_s,
            ],
            &run_env,
        )
        .await;
        assert_eq!(run.code, 0, "{source}: {}\n{}", run.stdout, run.stderr);
        let lock = read(dir.path(), ".terraform.lock.hcl");
        assert!(
            lock.starts_with("# This file is maintained automatically by \"tofu init\"."),
            "{source}: {lock}"
        );
        let got = lock_block_hashes(&lock, "registry.opentofu.org/hashicorp/null");
        assert_eq!(got, want, "{source}: {lock}");
        assert!(!lock.contains("registry.terraform.io"), "{source}: {lock}");
        assert_eq!(
            hashicorp.total_requests(),
            0,
            "{source}: registry.terraform.io was asked: {:?}",
            hashicorp.requests()
        );
        assert_eq!(
            tofu.request_count("/v1/providers/hashicorp/null/3.2.2/download/linux/amd64"),
            1,
            "{source}: {:?}",
            tofu.requests()
        );
    }
}

/// Lock files Terraform accepts are updated byte for byte: a UTF-8 BOM and a byte
/// outside UTF-8 in a comment stay as they were around the edited entry (whose
/// `version` is realigned when `constraints` is added, as `terraform fmt` aligns it). A
/// lock file that does not parse is left untouched, with an error naming it, and the
/// other lock files of the run are still updated.
#[tokio::test(flavor = "multi_thread")]
async fn lock_files_keep_their_bytes_and_unparseable_ones_are_left_alone() {
    let reg = FakeRegistry::start().await;
    let platforms = ["linux_amd64"];
    reg.add_provider("hashicorp", "null", "3.2.1", &platforms);
    reg.add_provider("hashicorp", "null", "3.2.2", &platforms);
    let dir = tempfile::tempdir().unwrap();
    let tf = "terraform {\n  required_providers {\n    null = {\n      source  = \"hashicorp/null\"\n      version = \"~> 3.2.2\"\n    }\n  }\n}\n";
    for root in ["good", "bad"] {
        std::fs::create_dir_all(dir.path().join(root)).unwrap();
        std::fs::write(dir.path().join(root).join("main.tf"), tf).unwrap();
    }
    let mut good = b"\xEF\xBB\xBF# This file is maintained automatically by \"terraform init\".\n# r\xE9sum\xE9: \xFF\xFE (latin-1)\n\nprovider \"registry.terraform.io/hashicorp/null\" {\n  version = \"3.2.1\"\n  hashes = [\n    \"h1:old=\",\n  ]\n}\n".to_vec();
    std::fs::write(dir.path().join("good/.terraform.lock.hcl"), &good).unwrap();
    let bad = b"# caf\xE9\nprovider \"registry.terraform.io/hashicorp/null\" {\n  version = \"3.2.1\"\n  hashes = [\n".to_vec();
    std::fs::write(dir.path().join("bad/.terraform.lock.hcl"), &bad).unwrap();
    let cache = dir.path().join(".cache");
    let run = tfupdate_lock(&reg, &cache, dir.path(), &["linux_amd64"], &["-r"]).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("bad/.terraform.lock.hcl:") && run.stderr.contains("cannot parse"),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read(dir.path().join("bad/.terraform.lock.hcl")).unwrap(),
        bad
    );
    let plats = vec!["linux_amd64".to_string()];
    let hashes = reg.lock_hashes("hashicorp", "null", "3.2.2", &plats);
    let at = good.windows(9).position(|w| w == b"  version").unwrap();
    let entry = format!(
        "  version     = \"3.2.2\"\n  constraints = \"~> 3.2.2\"\n  hashes = [\n{}  ]\n}}\n",
        hashes
            .iter()
            .map(|h| format!("    \"{h}\",\n"))
            .collect::<String>()
    );
    good.truncate(at);
    good.extend_from_slice(entry.as_bytes());
    assert_eq!(
        String::from_utf8_lossy(
            &std::fs::read(dir.path().join("good/.terraform.lock.hcl")).unwrap()
        ),
        String::from_utf8_lossy(&good)
    );
    assert_eq!(
        std::fs::read(dir.path().join("good/.terraform.lock.hcl")).unwrap(),
        good
    );
    assert!(
        run.stdout.contains("updated 1 of 2 lock files"),
        "{}",
        run.stdout
    );
}

/// `terraform` on PATH, if any.
fn terraform_cli() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("terraform"))
            .find(|p| p.is_file())
    })
}

/// When the configuration gains a constraint, `constraints` is added to the existing
/// lock entry and `version` realigned exactly as `terraform fmt` aligns them (checked
/// against the real `terraform fmt` when it is on PATH).
#[tokio::test(flavor = "multi_thread")]
async fn constraints_added_to_a_lock_entry_are_aligned_as_terraform_fmt_aligns_them() {
    let reg = FakeRegistry::start().await;
    reg.add_provider("hashicorp", "null", "3.2.1", &["linux_amd64"]);
    let plats = vec!["linux_amd64".to_string()];
    let hashes = reg.lock_hashes("hashicorp", "null", "3.2.1", &plats);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("main.tf"),
        "terraform {\n  required_providers {\n    null = {\n      source  = \"hashicorp/null\"\n      version = \"~> 3.2\"\n    }\n  }\n}\n",
    )
    .unwrap();
    let entry = |attrs: &str| {
        format!(
            "# This file is maintained automatically by \"terraform init\".\n# Manual edits may be lost in future updates.\n\nprovider \"registry.terraform.io/hashicorp/null\" {{\n{attrs}  hashes = [\n{}  ]\n}}\n",
            hashes
                .iter()
                .map(|h| format!("    \"{h}\",\n"))
                .collect::<String>()
        )
    };
    std::fs::write(
        dir.path().join(".terraform.lock.hcl"),
        entry("  version = \"3.2.1\"\n"),
    )
    .unwrap();
    let cache = dir.path().join(".cache");
    let run = tfupdate_lock(&reg, &cache, dir.path(), &["linux_amd64"], &[]).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let lock = read(dir.path(), ".terraform.lock.hcl");
    assert_eq!(
        lock,
        entry("  version     = \"3.2.1\"\n  constraints = \"~> 3.2\"\n")
    );
    let Some(terraform) = terraform_cli() else {
        eprintln!("SKIP: no terraform on PATH; the comparison with `terraform fmt` was not run");
        return;
    };
    let mut child = std::process::Command::new(terraform)
        .args(["fmt", "-"])
        .env("CHECKPOINT_DISABLE", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(lock.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        lock,
        "terraform fmt changes it"
    );
}

/// The PR job commits a file with bytes outside UTF-8 in a comment (and its lock file)
/// with those bytes as they were, only the version strings changed.
#[tokio::test(flavor = "multi_thread")]
async fn pr_job_keeps_bytes_outside_utf8_in_the_committed_files() {
    let reg = FakeRegistry::start().await;
    reg.add_provider("hashicorp", "aws", "5.31.0", &["linux_amd64"]);
    reg.add_provider("hashicorp", "aws", "5.70.0", &["linux_amd64"]);
    let plats = vec!["linux_amd64".to_string()];
    let old = reg.lock_hashes("hashicorp", "aws", "5.31.0", &plats);
    let new = reg.lock_hashes("hashicorp", "aws", "5.70.0", &plats);
    let versions = b"# r\xE9sum\xE9 \xFF (latin-1)\nterraform {\n  required_providers {\n    aws = { source = \"hashicorp/aws\", version = \"5.31.0\" }\n  }\n}\n".to_vec();
    let lock = |version: &str, hashes: &[String]| {
        let mut out = b"# This file is maintained automatically by \"terraform init\".\n# caf\xE9\n\nprovider \"registry.terraform.io/hashicorp/aws\" {\n".to_vec();
        out.extend_from_slice(
            format!(
                "  version     = \"{version}\"\n  constraints = \"{version}\"\n  hashes = [\n{}  ]\n}}\n",
                hashes
                    .iter()
                    .map(|h| format!("    \"{h}\",\n"))
                    .collect::<String>()
            )
            .as_bytes(),
        );
        out
    };
    let old_lock = lock("5.31.0", &old);
    let gh = FakeGitHub::start().await;
    gh.create_repo("acme/infra");
    gh.commit_files(
        "acme/infra",
        "main",
        &[
            ("versions.tf", String::from_utf8_lossy(&versions).as_ref()),
            (
                ".terraform.lock.hcl",
                String::from_utf8_lossy(&old_lock).as_ref(),
            ),
        ],
        "infra",
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("versions.tf"), &versions).unwrap();
    std::fs::write(dir.path().join(".terraform.lock.hcl"), &old_lock).unwrap();
    let config = dir.path().join("opsbot.toml");
    let cache = dir.path().join(".cache");
    std::fs::write(
        &config,
        format!(
            "[tfupdate]\nterraform = false\nlock_platforms = [\"linux_amd64\"]\ncache_dir = \"{}\"\n",
            cache.display()
        ),
    )
    .unwrap();
    let url = gh.url();
    let reg_url = reg.url();
    let env = [
        ("GITHUB_API_URL", url.as_str()),
        ("GITHUB_TOKEN", TEST_TOKEN),
        ("GITHUB_REPOSITORY", "acme/infra"),
        ("OPSBOT_TF_REGISTRY_URL", reg_url.as_str()),
    ];
    let checkout = dir.path().to_str().unwrap();
    let cfg = config.to_str().unwrap();
    let run = opsbot(
        &["--config", cfg, "tfupdate", "pr", "--checkout", checkout],
        &env,
    )
    .await;
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let pulls = gh.pulls("acme/infra");
    assert_eq!(pulls.len(), 1, "{}", run.stdout);
    let head = &pulls[0].head;
    let mut want_tf = versions.clone();
    let at = want_tf.windows(6).position(|w| w == b"5.31.0").unwrap();
    want_tf.splice(at..at + 6, b"5.70.0".iter().copied());
    // the fake hands files back as (lossy) text: a placeholder would show as \u{1}, the
    // original bytes as U+FFFD
    for (path, want) in [
        ("versions.tf", want_tf),
        (".terraform.lock.hcl", lock("5.70.0", &new)),
    ] {
        let got = gh.file("acme/infra", head, path).unwrap();
        assert!(!got.contains('\u{1}'), "{path}: {got:?}");
        assert_eq!(got, String::from_utf8_lossy(&want), "{path}");
    }
}
