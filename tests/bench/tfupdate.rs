//! Benchmark: bump Terraform and one provider in a generated repository of 2,000 `.tf`
//! files over 200 modules, with the real `opsbot` binary against the fake registry and
//! the fake GitHub on 127.0.0.1. Reports the median wall time of several runs and the
//! registry requests per run.
//!
//! Run with `tests/bench/tfupdate.sh` (builds the release binary first), or
//! `OPSBOT_BIN=target/release/opsbot cargo bench -p opsbot-tests --bench tfupdate`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use opsbot_tests::fake_github::{FakeGitHub, TEST_TOKEN};
use opsbot_tests::fake_registry::FakeRegistry;

const MODULES: usize = 200;
const FILES_PER_MODULE: usize = 10;
const RUNS: usize = 7;

fn versions_tf(i: usize) -> String {
    format!(
        r#"# Module {i}: provider and Terraform requirements.
terraform {{
  required_version = "~> 1.5" # keep in sync with .terraform-version

  required_providers {{
    aws = {{
      source                = "hashicorp/aws"
      version               = "5.31.0"
      configuration_aliases = [aws.replica]
    }}
    random = {{
      source  = "hashicorp/random"
      version = "~> 3.5"
    }}
  }}
}}
"#
    )
}

fn resource_tf(i: usize, j: usize) -> String {
    format!(
        r#"/*
 * Resources of module {i}, part {j}.
 */
locals {{
  name_{j} = "m{i}-p{j}"
  user_data_{j} = <<-EOT
    #!/bin/bash
    echo "module {i} part {j}"
    # version = "5.31.0" is not a pin
  EOT
}}

resource "aws_s3_bucket" "b{j}" {{
  bucket = "bench-{i}-{j}" # comment
  tags = {{
    Name    = local.name_{j}
    version = "5.31.0"
  }}
}}

module "vpc_{j}" {{
  source  = "terraform-aws-modules/vpc/aws"
  version = "5.1.0"
  name    = local.name_{j}
}}

variable "v{j}" {{
  type    = string
  default = "x"
}}

output "o{j}" {{
  value = aws_s3_bucket.b{j}.arn
}}
"#
    )
}

fn generate(root: &Path) {
    for i in 0..MODULES {
        let dir = root.join(format!("modules/m{i:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("versions.tf"), versions_tf(i)).unwrap();
        for j in 1..FILES_PER_MODULE {
            std::fs::write(dir.join(format!("part{j}.tf")), resource_tf(i, j)).unwrap();
        }
    }
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn opsbot_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("OPSBOT_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.join("target/release/opsbot")
}

async fn run(bin: &Path, args: &[&str], env: &[(&str, String)]) -> Duration {
    let start = Instant::now();
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("run opsbot");
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.contains(&format!("of {} file(s)", MODULES * FILES_PER_MODULE)),
        "{summary}"
    );
    elapsed
}

#[tokio::main]
async fn main() {
    // `cargo test --all-targets` runs bench targets too (without `--bench`): stay quiet.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "tfupdate benchmark: skipped (run it with `cargo bench` or tests/bench/tfupdate.sh)"
        );
        return;
    }
    let bin = opsbot_bin();
    assert!(
        bin.is_file(),
        "build it first: cargo build --release -p opsbot ({})",
        bin.display()
    );
    // `cargo bench --bench tfupdate -- roots` (or `files`) runs one scenario only.
    let only: Option<String> = std::env::args()
        .skip(1)
        .find(|a| a == "files" || a == "roots");
    if only.as_deref() != Some("roots") {
        files_scenario(&bin).await;
    }
    if only.as_deref() != Some("files") {
        for grouping in ["none", "all"] {
            roots_scenario(&bin, grouping).await;
        }
    }
}

async fn files_scenario(bin: &Path) {
    let bin = bin.to_path_buf();
    let reg = FakeRegistry::start().await;
    for v in ["5.31.0", "5.70.0"] {
        reg.add_provider("hashicorp", "aws", v, &["linux_amd64"]);
    }
    let gh = FakeGitHub::start().await;
    gh.create_repo("hashicorp/terraform");
    for tag in ["v1.9.7", "v1.9.8"] {
        gh.add_release("hashicorp/terraform", tag, false);
    }
    let env = [
        ("OPSBOT_TF_REGISTRY_URL", reg.url()),
        ("GITHUB_API_URL", gh.url()),
        ("GITHUB_TOKEN", TEST_TOKEN.to_string()),
    ];

    let mut tf_times = Vec::new();
    let mut provider_times = Vec::new();
    let mut total_times = Vec::new();
    let mut registry_requests = Vec::new();
    let mut github_requests = Vec::new();
    for _ in 0..RUNS {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path());
        let path = dir.path().to_str().unwrap();
        reg.reset_requests();
        gh.clear_requests();
        let t = run(&bin, &["tfupdate", "terraform", "-r", path], &env).await;
        let p = run(
            &bin,
            &["tfupdate", "provider", "hashicorp/aws", "-r", path],
            &env,
        )
        .await;
        registry_requests.push(reg.requests());
        github_requests.push(gh.requests().len());
        tf_times.push(t);
        provider_times.push(p);
        total_times.push(t + p);
        let sample = std::fs::read_to_string(dir.path().join("modules/m000/versions.tf")).unwrap();
        assert!(
            sample.contains("\"~> 1.9\"") && sample.contains("\"5.70.0\""),
            "{sample}"
        );
    }
    let files = MODULES * FILES_PER_MODULE;
    println!(
        "tfupdate benchmark: {files} .tf files over {MODULES} modules, {RUNS} runs, binary {}",
        bin.display()
    );
    println!(
        "  terraform bump (latest via GitHub releases): median {:?}",
        median(tf_times)
    );
    println!(
        "  provider hashicorp/aws bump (latest via registry): median {:?}",
        median(provider_times)
    );
    println!(
        "  terraform + provider: median {:?} (target <= 1 s)",
        median(total_times)
    );
    println!("  registry requests per run: {:?}", registry_requests[0]);
    println!("  GitHub requests per run: {}", github_requests[0]);
    let versions = registry_requests[0]
        .get("/v1/providers/hashicorp/aws/versions")
        .copied()
        .unwrap_or(0);
    println!("  version lookups per distinct provider: {versions} (target 1)");
    assert_eq!(versions, 1);
}

// ---------------------------------------------------------------------------------------
// One repository with 60 Terraform roots, as the seeds' team runs it daily: every root
// pins three providers and has a lock file; one `opsbot tfupdate pr` run bumps every pin
// and every lock file (one pull request per update, or all in one) and must make one
// registry request per distinct lookup: one version list per provider, and for each
// distinct provider version hashed one `SHA256SUMS`, one signature, and one package
// metadata request and one download per platform, however many roots share it.

const ROOTS: usize = 60;
const ROOT_RUNS: usize = 5;
const PLATFORMS: [&str; 2] = ["linux_amd64", "darwin_arm64"];
/// `(name, old version, new version, constraint as pinned)`
const PROVIDERS: [(&str, &str, &str, &str); 3] = [
    ("aws", "5.31.0", "5.70.0", "5.31.0"),
    ("random", "3.5.0", "3.6.3", "~> 3.5"),
    ("null", "3.2.1", "3.2.3", "3.2.1"),
];

fn root_versions_tf(i: usize) -> String {
    let mut out = format!(
        "# Root {i}\nterraform {{\n  required_version = \"~> 1.5\"\n\n  required_providers {{\n"
    );
    for (name, _, _, constraint) in PROVIDERS {
        out.push_str(&format!(
            "    {name} = {{\n      source  = \"hashicorp/{name}\"\n      version = \"{constraint}\"\n    }}\n"
        ));
    }
    out.push_str("  }\n}\n");
    out
}

fn root_main_tf(i: usize) -> String {
    format!(
        "resource \"aws_s3_bucket\" \"b\" {{\n  bucket = \"root-{i}\" # one bucket per root\n}}\n\nresource \"random_id\" \"r\" {{\n  byte_length = 4\n}}\n\nresource \"null_resource\" \"n\" {{}}\n"
    )
}

/// The lock file `terraform init` wrote for the old versions.
fn root_lock(reg: &FakeRegistry) -> String {
    let platforms: Vec<String> = PLATFORMS.iter().map(|p| p.to_string()).collect();
    let mut out = String::from(
        "# This file is maintained automatically by \"terraform init\".\n# Manual edits may be lost in future updates.\n",
    );
    let mut sorted = PROVIDERS;
    sorted.sort_by_key(|p| p.0);
    for (name, old, _, constraint) in sorted {
        out.push_str(&format!(
            "\nprovider \"registry.terraform.io/hashicorp/{name}\" {{\n  version     = \"{old}\"\n  constraints = \"{constraint}\"\n  hashes = [\n"
        ));
        for h in reg.lock_hashes("hashicorp", name, old, &platforms) {
            out.push_str(&format!("    \"{h}\",\n"));
        }
        out.push_str("  ]\n}\n");
    }
    out
}

async fn roots_scenario(bin: &Path, grouping: &str) {
    let reg = FakeRegistry::start().await;
    for (name, old, new, _) in PROVIDERS {
        for v in [old, new] {
            reg.add_provider("hashicorp", name, v, &PLATFORMS);
        }
    }
    let lock = root_lock(&reg);
    let mut files: Vec<(String, String)> = Vec::new();
    for i in 0..ROOTS {
        let dir = format!("roots/r{i:02}");
        files.push((format!("{dir}/versions.tf"), root_versions_tf(i)));
        files.push((format!("{dir}/main.tf"), root_main_tf(i)));
        files.push((format!("{dir}/.terraform.lock.hcl"), lock.clone()));
    }
    let mut times = Vec::new();
    let mut registry_requests = BTreeMap::new();
    let mut github_requests = 0;
    let mut pulls = 0;
    for run in 0..ROOT_RUNS {
        // a fresh repository, checkout and package cache each run: the daily run
        let gh = FakeGitHub::start().await;
        gh.create_repo("acme/infra");
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        gh.commit_files("acme/infra", "main", &refs, "infra");
        gh.create_repo("hashicorp/terraform");
        for tag in ["v1.5.7", "v1.9.8"] {
            gh.add_release("hashicorp/terraform", tag, false);
        }
        let checkout = tempfile::tempdir().unwrap();
        for (p, t) in &files {
            let path = checkout.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, t).unwrap();
        }
        let config = checkout.path().join("opsbot.toml");
        let cache = checkout.path().join(".cache");
        std::fs::write(
            &config,
            format!(
                "[tfupdate]\nlock_platforms = [\"linux_amd64\", \"darwin_arm64\"]\ngroup = \"{grouping}\"\ncache_dir = \"{}\"\n",
                cache.display()
            ),
        )
        .unwrap();
        let env = [
            ("OPSBOT_TF_REGISTRY_URL", reg.url()),
            ("GITHUB_API_URL", gh.url()),
            ("GITHUB_TOKEN", TEST_TOKEN.to_string()),
            ("GITHUB_REPOSITORY", "acme/infra".to_string()),
        ];
        reg.reset_requests();
        let start = Instant::now();
        let mut cmd = tokio::process::Command::new(bin);
        cmd.args([
            "--config",
            config.to_str().unwrap(),
            "tfupdate",
            "pr",
            "--checkout",
            checkout.path().to_str().unwrap(),
        ])
        .env_remove("TFREGISTRY_BASE_URL")
        .env("XDG_CACHE_HOME", checkout.path().join(".xdg"));
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().await.expect("run opsbot");
        times.push(start.elapsed());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // every pin and every lock file of every root, in the pull requests' branches
        let heads: Vec<String> = gh.pulls("acme/infra").into_iter().map(|p| p.head).collect();
        let want_pulls = if grouping == "all" { 1 } else { 4 };
        assert_eq!(heads.len(), want_pulls, "{stdout}");
        for i in 0..ROOTS {
            let dir = format!("roots/r{i:02}");
            let versions: String = heads
                .iter()
                .filter_map(|h| gh.file("acme/infra", h, &format!("{dir}/versions.tf")))
                .collect();
            let locks: String = heads
                .iter()
                .filter_map(|h| gh.file("acme/infra", h, &format!("{dir}/.terraform.lock.hcl")))
                .collect();
            assert!(versions.contains("\"~> 1.9\""), "{dir}: {versions}");
            for (name, _, new, constraint) in PROVIDERS {
                let pinned = if constraint.starts_with("~>") {
                    format!("\"~> {}\"", &new[..new.rfind('.').unwrap()])
                } else {
                    format!("\"{new}\"")
                };
                assert!(versions.contains(&pinned), "{dir} {name}: {versions}");
                let hashes = reg.lock_hashes("hashicorp", name, new, &PLATFORMS.map(String::from));
                assert!(
                    locks.contains(&format!("version     = \"{new}\""))
                        && hashes.iter().all(|h| locks.contains(h.as_str())),
                    "{dir} {name}: {locks}"
                );
            }
        }
        let requests = reg.requests();
        // one request per distinct lookup, however many roots share it
        let repeated: Vec<(&String, &usize)> = requests.iter().filter(|(_, n)| **n != 1).collect();
        assert!(
            repeated.is_empty(),
            "repeated registry requests: {repeated:?}"
        );
        for (name, _, _, _) in PROVIDERS {
            assert_eq!(
                requests.get(&format!("/v1/providers/hashicorp/{name}/versions")),
                Some(&1)
            );
        }
        if run == 0 {
            registry_requests = requests;
            github_requests = gh.requests().len();
            pulls = heads.len();
        }
    }
    let sums: Vec<&String> = registry_requests
        .keys()
        .filter(|p| p.ends_with("/SHA256SUMS"))
        .collect();
    let count = |f: &dyn Fn(&str) -> bool| registry_requests.keys().filter(|p| f(p)).count();
    println!(
        "tfupdate benchmark: {ROOTS} Terraform roots (3 providers + lock file each), `opsbot tfupdate pr`, group = {grouping}, {ROOT_RUNS} runs, binary {}",
        bin.display()
    );
    println!(
        "  one run (all pins + {ROOTS} lock files, {} platforms, cold package cache): median {:?}",
        PLATFORMS.len(),
        median(times.clone())
    );
    println!(
        "  runs: {:?}",
        times
            .iter()
            .map(|t| format!("{:.0} ms", t.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
    );
    println!(
        "  registry requests per run: {} in total, every path once: discovery {}, version lists {}, package metadata {}, SHA256SUMS {}, signatures {}, downloads {}",
        registry_requests.values().sum::<usize>(),
        count(&|p| p.starts_with("/.well-known")),
        count(&|p| p.ends_with("/versions")),
        count(&|p| p.contains("/download/")),
        sums.len(),
        count(&|p| p.ends_with("/SHA256SUMS.sig")),
        count(&|p| p.ends_with(".zip")),
    );
    println!(
        "  distinct provider versions hashed: {} ({})",
        sums.len(),
        sums.iter()
            .map(|p| p.trim_start_matches("/dl/").trim_end_matches("/SHA256SUMS"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  pull requests: {pulls}; GitHub requests per run: {github_requests}");
}
