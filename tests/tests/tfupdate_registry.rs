//! The tfupdate registry client, release lookups and lock-file hashes, end to end over
//! HTTP against the fake registry (and the fake GitHub for Terraform's own releases).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use opsbot_tests::fake_registry::{FakeRegistry, package_files};
use opsbot_tfupdate::bump::{BumpOptions, bump};
use opsbot_tfupdate::lock::{LockFile, Platform, update_locks};
use opsbot_tfupdate::module_source::ModuleAddress;
use opsbot_tfupdate::pins::ProviderAddress;
use opsbot_tfupdate::registry::{RegistryClient, RegistryOptions};
use opsbot_tfupdate::release::{NoGithub, ReleaseSource, Releases};
use opsbot_tfupdate::rewrite::{ProviderSpec, Target};
use opsbot_tfupdate::walk::WalkOptions;
use sha2::{Digest, Sha256};

const PLATFORMS: &[&str] = &["linux_amd64", "darwin_arm64", "windows_amd64"];

fn client(reg: &FakeRegistry, tokens: HashMap<String, String>) -> Arc<RegistryClient> {
    Arc::new(
        RegistryClient::new(RegistryOptions {
            base_url: reg.url(),
            tokens,
            ..RegistryOptions::default()
        })
        .unwrap(),
    )
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// h1 computed independently from the known package contents: Go's dirhash.Hash1.
fn expected_h1(ns: &str, name: &str, version: &str, platform: &str) -> String {
    let (os, arch) = platform.split_once('_').unwrap();
    let mut files = package_files(ns, name, version, os, arch);
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let summary: String = files
        .iter()
        .map(|(n, data)| format!("{}  {n}\n", hex::encode(Sha256::digest(data))))
        .collect();
    format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(summary.as_bytes()))
    )
}

#[tokio::test]
async fn one_request_per_provider_even_when_asked_concurrently() {
    let reg = FakeRegistry::start().await;
    reg.add_provider("hashicorp", "aws", "5.31.0", PLATFORMS);
    reg.add_provider("hashicorp", "aws", "5.70.0", PLATFORMS);
    reg.add_provider("hashicorp", "aws", "6.0.0-beta1", PLATFORMS);
    reg.add_module("terraform-aws-modules", "vpc", "aws", "5.1.0");
    reg.add_module("terraform-aws-modules", "vpc", "aws", "5.13.0");
    let c = client(&reg, HashMap::new());
    let aws = ProviderAddress::parse("hashicorp/aws").unwrap();
    let vpc = ModuleAddress::parse("terraform-aws-modules/vpc/aws").unwrap();
    let (a, b, m1, m2) = tokio::join!(
        c.provider_versions(&aws),
        c.provider_versions(&aws),
        c.module_versions(&vpc),
        c.module_versions(&vpc)
    );
    assert_eq!(a.unwrap().len(), 3);
    assert_eq!(b.unwrap().len(), 3);
    assert_eq!(m1.unwrap().len(), 2);
    assert_eq!(m2.unwrap().len(), 2);
    assert_eq!(reg.request_count("/v1/providers/hashicorp/aws/versions"), 1);
    assert_eq!(
        reg.request_count("/v1/modules/terraform-aws-modules/vpc/aws/versions"),
        1
    );
    assert_eq!(reg.request_count("/.well-known/terraform.json"), 1);

    let releases = Releases {
        registry: c.clone(),
        github: NoGithub,
    };
    let source = ReleaseSource::Provider(aws.clone());
    assert_eq!(
        releases
            .latest(&source, false)
            .await
            .unwrap()
            .version
            .as_str(),
        "5.70.0"
    );
    assert_eq!(
        releases
            .latest(&source, true)
            .await
            .unwrap()
            .version
            .as_str(),
        "6.0.0-beta1"
    );
    // cached: still one request
    assert_eq!(reg.request_count("/v1/providers/hashicorp/aws/versions"), 1);
}

#[tokio::test]
async fn private_registry_needs_its_tf_token() {
    let reg = FakeRegistry::start().await;
    reg.add_provider("acme", "internal", "1.2.0", &["linux_amd64"]);
    reg.require_token("s3cr3t-token");
    let addr = ProviderAddress::parse("acme/internal").unwrap();
    let err = client(&reg, HashMap::new())
        .provider_versions(&addr)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("HTTP 401") && err.contains("TF_TOKEN_127_0_0_1"),
        "{err}"
    );
    assert!(!err.contains("s3cr3t"), "{err}");
    let tokens = opsbot_tfupdate::registry::tokens_from_env([(
        "TF_TOKEN_127_0_0_1".to_string(),
        "s3cr3t-token".to_string(),
    )]);
    let versions = client(&reg, tokens).provider_versions(&addr).await.unwrap();
    assert_eq!(versions[0].version.as_str(), "1.2.0");
}

#[tokio::test]
async fn unknown_provider_is_a_clear_error() {
    let reg = FakeRegistry::start().await;
    let err = client(&reg, HashMap::new())
        .provider_versions(&ProviderAddress::parse("hashicorp/nope").unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/v1/providers/hashicorp/nope/versions") && err.contains("404"),
        "{err}"
    );
}

#[tokio::test]
async fn bump_provider_uses_the_latest_stable_release() {
    let reg = FakeRegistry::start().await;
    reg.add_provider("hashicorp", "aws", "5.31.0", PLATFORMS);
    reg.add_provider("hashicorp", "aws", "5.70.0", PLATFORMS);
    reg.add_provider("hashicorp", "aws", "6.0.0-beta1", PLATFORMS);
    let dir = tempfile::tempdir().unwrap();
    for i in 0..5 {
        write(
            dir.path(),
            &format!("m{i}/versions.tf"),
            "terraform {\n  required_providers {\n    aws = {\n      source  = \"hashicorp/aws\"\n      version = \"~> 5.31.0\" # pinned\n    }\n  }\n}\n",
        );
    }
    let releases = Releases {
        registry: client(&reg, HashMap::new()),
        github: NoGithub,
    };
    let opts = BumpOptions {
        path: dir.path().to_path_buf(),
        walk: WalkOptions {
            recursive: true,
            ignore: vec![],
        },
        version: None,
        pre_release: false,
        dry_run: false,
        core_repo: "hashicorp/terraform".into(),
    };
    let target = Target::Provider(ProviderSpec::parse("hashicorp/aws").unwrap());
    let result = bump(&releases, &target, &opts).await.unwrap();
    assert_eq!(result.release.version.as_str(), "5.70.0");
    assert_eq!(result.update.changed_files.len(), 5);
    let text = std::fs::read_to_string(dir.path().join("m3/versions.tf")).unwrap();
    assert!(
        text.contains("      version = \"~> 5.70.0\" # pinned\n"),
        "{text}"
    );
    assert_eq!(reg.request_count("/v1/providers/hashicorp/aws/versions"), 1);
}

const LOCK_BEFORE: &str = r#"# This file is maintained automatically by "terraform init".
# Manual edits may be lost in future updates.

provider "registry.terraform.io/hashicorp/aws" {
  version     = "5.31.0"
  constraints = "5.31.0"
  hashes = [
    "h1:stale=",
  ]
}

# a comment kept as is
provider "registry.terraform.io/hashicorp/unused" {
  version = "1.0.0"
  hashes = [
    "h1:keep=",
  ]
}
"#;

#[tokio::test]
async fn lock_gets_verified_h1_and_zh_hashes_for_each_platform() {
    let reg = FakeRegistry::start().await;
    reg.add_provider("hashicorp", "aws", "5.31.0", PLATFORMS);
    reg.add_provider("hashicorp", "aws", "5.70.0", PLATFORMS);
    reg.add_provider("hashicorp", "random", "3.6.3", PLATFORMS);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("envs/prod");
    write(
        &root,
        "main.tf",
        "terraform {\n  required_providers {\n    aws = { source = \"hashicorp/aws\", version = \"5.70.0\" }\n  }\n}\nmodule \"net\" {\n  source = \"../../modules/net\"\n}\n",
    );
    // a provider required only by a local child module is locked too
    write(
        dir.path(),
        "modules/net/versions.tf",
        "terraform {\n  required_providers {\n    random = { source = \"hashicorp/random\", version = \"~> 3.6\" }\n  }\n}\n",
    );
    write(&root, ".terraform.lock.hcl", LOCK_BEFORE);
    let cache = dir.path().join("cache");
    let platforms: Vec<Platform> = ["linux_amd64", "darwin_arm64"]
        .iter()
        .map(|p| Platform::parse(p).unwrap())
        .collect();
    let walk = WalkOptions {
        recursive: true,
        ignore: vec![],
    };
    let report = update_locks(
        dir.path(),
        &walk,
        client(&reg, HashMap::new()),
        platforms.clone(),
        Some(cache.clone()),
        false,
    )
    .await
    .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.changed.len(), 1);

    let text = std::fs::read_to_string(root.join(".terraform.lock.hcl")).unwrap();
    let lock = LockFile::parse(Path::new("lock"), &text).unwrap();
    let aws = lock
        .entries
        .iter()
        .find(|e| e.address == "registry.terraform.io/hashicorp/aws")
        .unwrap();
    assert_eq!(aws.version.as_deref(), Some("5.70.0"));
    assert_eq!(aws.constraints.as_deref(), Some("5.70.0"));
    let mut expected: Vec<String> = vec![
        expected_h1("hashicorp", "aws", "5.70.0", "linux_amd64"),
        expected_h1("hashicorp", "aws", "5.70.0", "darwin_arm64"),
    ];
    // zh: for every package in SHA256SUMS, windows included, and (as Terraform writes
    // it) for every other line of SHA256SUMS too: the `_manifest.json` one.
    for p in PLATFORMS {
        let pkg = reg.package("hashicorp", "aws", "5.70.0", p).unwrap();
        expected.push(format!("zh:{}", hex::encode(Sha256::digest(&pkg.zip))));
    }
    let sums = reg.sha256sums("hashicorp", "aws", "5.70.0").unwrap();
    for line in sums.lines().filter(|l| l.ends_with("_manifest.json")) {
        let hash = line.split_whitespace().next().unwrap();
        expected.push(format!("zh:{hash}"));
    }
    expected.sort();
    assert_eq!(aws.hashes, expected);
    let random = lock
        .entries
        .iter()
        .find(|e| e.address.ends_with("hashicorp/random"))
        .unwrap();
    assert_eq!(random.version.as_deref(), Some("3.6.3"));
    // two h1: (the lock's platforms), a zh: per package and one for the manifest line
    assert_eq!(random.hashes.len(), 2 + PLATFORMS.len() + 1);
    // the untouched block and the comment are byte for byte the same
    assert!(text.contains(
        "# a comment kept as is\nprovider \"registry.terraform.io/hashicorp/unused\" {\n  version = \"1.0.0\"\n  hashes = [\n    \"h1:keep=\",\n  ]\n}\n"
    ));
    // packages went to the cache
    assert_eq!(
        std::fs::read_dir(cache.join("packages")).unwrap().count(),
        4
    );

    // a second run changes nothing and downloads no package (the cache answers)
    reg.reset_requests();
    let again = update_locks(
        dir.path(),
        &walk,
        client(&reg, HashMap::new()),
        platforms,
        Some(cache),
        false,
    )
    .await
    .unwrap();
    assert!(
        again.changed.is_empty() && again.errors.is_empty(),
        "{again:?}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join(".terraform.lock.hcl")).unwrap(),
        text
    );
    let downloads: usize = reg
        .requests()
        .iter()
        .filter(|(p, _)| p.ends_with(".zip"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(downloads, 0, "{:?}", reg.requests());
}

#[tokio::test]
async fn tampered_package_is_refused_and_the_lock_untouched() {
    let reg = FakeRegistry::start().await;
    reg.add_provider("hashicorp", "aws", "5.70.0", PLATFORMS);
    reg.corrupt_package("hashicorp", "aws", "5.70.0", "linux_amd64");
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "main.tf",
        "terraform {\n  required_providers {\n    aws = { source = \"hashicorp/aws\", version = \"5.70.0\" }\n  }\n}\n",
    );
    write(dir.path(), ".terraform.lock.hcl", LOCK_BEFORE);
    let report = update_locks(
        dir.path(),
        &WalkOptions::default(),
        client(&reg, HashMap::new()),
        vec![Platform::parse("linux_amd64").unwrap()],
        None,
        false,
    )
    .await
    .unwrap();
    assert_eq!(report.errors.len(), 1);
    let msg = &report.errors[0].message;
    assert!(
        msg.contains("checksum mismatch") && msg.contains("linux_amd64.zip"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join(".terraform.lock.hcl")).unwrap(),
        LOCK_BEFORE
    );
}
