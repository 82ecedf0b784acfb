//! Benchmark: bump Terraform and one provider in a generated repository of 2,000 `.tf`
//! files over 200 modules, with the real `opsbot` binary against the fake registry and
//! the fake GitHub on 127.0.0.1. Reports the median wall time of several runs and the
//! registry requests per run.
//!
//! Run with `tests/bench/tfupdate.sh` (builds the release binary first), or
//! `OPSBOT_BIN=target/release/opsbot cargo bench -p opsbot-tests --bench tfupdate`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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
