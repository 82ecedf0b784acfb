//! The daily tfupdate PR job end to end: the real GitHub client against the fake GitHub
//! and the real registry client against the fake registry, both over HTTP on 127.0.0.1.
//! First run opens pull requests, a second run opens none, a newer release supersedes the
//! older pull request, a closed pull request is not reopened, grouping puts providers
//! together.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use opsbot_core::github::models::PullRequestPatch;
use opsbot_core::github::{Credentials, GitHub, GitHubSettings, RepoRef, RetryPolicy};
use opsbot_tests::fake_github::{FakeGitHub, FakePull, TEST_APP_PRIVATE_KEY, TEST_TOKEN};
use opsbot_tests::fake_registry::FakeRegistry;
use opsbot_tfupdate::github::CoreGithub;
use opsbot_tfupdate::plan::Grouping;
use opsbot_tfupdate::pr::{PrConfig, PrJob, PrReport, run_pr_job};
use opsbot_tfupdate::registry::{RegistryClient, RegistryOptions};
use opsbot_tfupdate::release::Releases;
use secrecy::SecretString;

const REPO: &str = "acme/infra";

const VERSIONS_TF: &str = r#"# Production
terraform {
  required_version = "1.5.7"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "5.31.0" # pinned on purpose
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.5"
    }
  }
}
"#;

const LOCK: &str = r#"# This file is maintained automatically by "terraform init".
# Manual edits may be lost in future updates.

provider "registry.terraform.io/hashicorp/aws" {
  version     = "5.31.0"
  constraints = "5.31.0"
  hashes = [
    "h1:old=",
  ]
}

provider "registry.terraform.io/hashicorp/random" {
  version     = "3.5.0"
  constraints = "~> 3.5"
  hashes = [
    "h1:rnd=",
  ]
}
"#;

const NET_TF: &str = r#"module "vpc" {
  source  = "terraform-aws-modules/vpc/aws"
  version = "5.1.0" # the VPC module
}

module "local" {
  source = "./local"
}
"#;

struct World {
    gh_fake: FakeGitHub,
    reg: FakeRegistry,
    checkout: tempfile::TempDir,
}

async fn world() -> World {
    let gh_fake = FakeGitHub::start().await;
    gh_fake.create_repo(REPO);
    let files = [
        ("envs/prod/versions.tf", VERSIONS_TF),
        ("envs/prod/.terraform.lock.hcl", LOCK),
        ("modules/net/main.tf", NET_TF),
    ];
    gh_fake.commit_files(REPO, "main", &files, "infra");
    gh_fake.create_repo("hashicorp/terraform");
    gh_fake.add_release("hashicorp/terraform", "v1.5.7", false);
    gh_fake.add_release("hashicorp/terraform", "v1.9.8", false);
    gh_fake.add_release("hashicorp/terraform", "v1.10.0-rc1", true);

    let reg = FakeRegistry::start().await;
    for v in ["5.31.0", "5.70.0"] {
        reg.add_provider("hashicorp", "aws", v, &["linux_amd64", "darwin_arm64"]);
    }
    for v in ["3.5.0", "3.6.3"] {
        reg.add_provider("hashicorp", "random", v, &["linux_amd64", "darwin_arm64"]);
    }
    for v in ["5.1.0", "5.13.0"] {
        reg.add_module("terraform-aws-modules", "vpc", "aws", v);
    }

    let checkout = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = checkout.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    World {
        gh_fake,
        reg,
        checkout,
    }
}

fn config() -> PrConfig {
    PrConfig {
        modules: true,
        lock_platforms: vec!["linux_amd64".into()],
        reviewers: vec!["alice".into()],
        ..PrConfig::default()
    }
}

async fn run(w: &World, config: PrConfig) -> PrReport {
    run_as(
        w,
        config,
        Credentials::Token(SecretString::from(TEST_TOKEN)),
    )
    .await
}

async fn run_as(w: &World, config: PrConfig, credentials: Credentials) -> PrReport {
    let settings = GitHubSettings {
        api_url: w.gh_fake.url(),
        repository: Some(RepoRef::new("acme", "infra")),
        credentials,
        retry: RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            budget: Duration::from_secs(5),
        },
    };
    let gh = GitHub::connect(&settings).await.unwrap();
    let registry = Arc::new(
        RegistryClient::new(RegistryOptions {
            base_url: w.reg.url(),
            ..RegistryOptions::default()
        })
        .unwrap(),
    );
    let releases = Releases {
        registry: registry.clone(),
        github: CoreGithub::new(gh.clone()),
    };
    let job = PrJob {
        gh: &gh,
        repo: RepoRef::new("acme", "infra"),
        releases: &releases,
        registry,
        checkout: w.checkout.path().to_path_buf(),
        config: PrConfig {
            cache_dir: Some(w.checkout.path().join(".cache")),
            ..config
        },
        dry_run: false,
    };
    run_pr_job(job).await.unwrap()
}

fn open_pulls(w: &World) -> Vec<FakePull> {
    w.gh_fake
        .pulls(REPO)
        .into_iter()
        .filter(|p| p.state == "open")
        .collect()
}

fn pull<'a>(pulls: &'a [FakePull], title_part: &str) -> &'a FakePull {
    pulls
        .iter()
        .find(|p| p.title.contains(title_part))
        .unwrap_or_else(|| {
            panic!(
                "no PR with {title_part:?} in {:?}",
                pulls.iter().map(|p| &p.title).collect::<Vec<_>>()
            )
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn opens_once_then_keeps_then_supersedes() {
    let w = world().await;

    // first run: one PR per target with a newer release
    let report = run(&w, config()).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.opened.len(), 4, "{report:?}");
    let pulls = open_pulls(&w);
    assert_eq!(pulls.len(), 4);

    let tf = pull(&pulls, "Terraform");
    assert_eq!(tf.title, "Bump Terraform from 1.5.7 to 1.9.8");
    assert_eq!(tf.head, "opsbot/tfupdate/terraform");
    assert!(
        tf.body.contains("<summary>Terraform v1.9.8</summary>"),
        "release notes inline: {}",
        tf.body
    );
    assert_eq!(tf.base, "main");
    assert!(
        tf.body
            .contains("Bumps **Terraform** from `1.5.7` to `1.9.8`."),
        "{}",
        tf.body
    );
    assert!(
        tf.body.contains("/hashicorp/terraform/releases/tag/v1.9.8"),
        "{}",
        tf.body
    );
    assert!(
        tf.body.contains("- `envs/prod/versions.tf` (1 pin)"),
        "{}",
        tf.body
    );
    assert!(tf.body.contains("<!-- opsbot:tfupdate "), "{}", tf.body);
    assert_eq!(
        tf.labels,
        vec!["dependencies".to_string(), "terraform".to_string()]
    );
    assert_eq!(tf.requested_reviewers, vec!["alice".to_string()]);
    let tf_file = w
        .gh_fake
        .file(REPO, &tf.head, "envs/prod/versions.tf")
        .unwrap();
    assert_eq!(tf_file, VERSIONS_TF.replace("\"1.5.7\"", "\"1.9.8\""));

    let aws = pull(&pulls, "hashicorp/aws");
    assert_eq!(aws.title, "Bump hashicorp/aws from 5.31.0 to 5.70.0");
    assert!(
        aws.body
            .contains("https://github.com/hashicorp/terraform-provider-aws/releases/tag/v5.70.0")
    );
    assert!(
        aws.body
            .contains("- `envs/prod/.terraform.lock.hcl` (lock file)"),
        "{}",
        aws.body
    );
    let aws_file = w
        .gh_fake
        .file(REPO, &aws.head, "envs/prod/versions.tf")
        .unwrap();
    assert!(aws_file.contains("      version = \"5.70.0\" # pinned on purpose\n"));
    assert!(
        aws_file.contains("required_version = \"1.5.7\""),
        "only this target changes"
    );
    let lock = w
        .gh_fake
        .file(REPO, &aws.head, "envs/prod/.terraform.lock.hcl")
        .unwrap();
    assert!(
        lock.contains("  version     = \"5.70.0\"\n  constraints = \"5.70.0\"\n"),
        "{lock}"
    );
    assert!(!lock.contains("h1:old="), "{lock}");
    assert!(
        lock.contains(
            "provider \"registry.terraform.io/hashicorp/random\" {\n  version     = \"3.5.0\""
        ),
        "{lock}"
    );

    let random = pull(&pulls, "hashicorp/random");
    assert_eq!(random.title, "Bump hashicorp/random from ~> 3.5 to 3.6.3");
    let random_file = w
        .gh_fake
        .file(REPO, &random.head, "envs/prod/versions.tf")
        .unwrap();
    assert!(random_file.contains("version = \"~> 3.6\""));

    let vpc = pull(&pulls, "terraform-aws-modules/vpc/aws");
    assert_eq!(
        vpc.head,
        "opsbot/tfupdate/module-terraform-aws-modules-vpc-aws"
    );
    let net = w
        .gh_fake
        .file(REPO, &vpc.head, "modules/net/main.tf")
        .unwrap();
    assert_eq!(net, NET_TF.replace("\"5.1.0\"", "\"5.13.0\""));

    // main is untouched
    assert_eq!(
        w.gh_fake
            .file(REPO, "main", "envs/prod/versions.tf")
            .unwrap(),
        VERSIONS_TF
    );

    // second run: nothing new, and not one write
    w.gh_fake.clear_requests();
    let report = run(&w, config()).await;
    assert!(report.opened.is_empty(), "{report:?}");
    assert_eq!(report.kept.len(), 4, "{report:?}");
    assert_eq!(w.gh_fake.pulls(REPO).len(), 4);
    let writes: Vec<_> = w
        .gh_fake
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect();
    assert!(writes.is_empty(), "nothing to do, yet: {writes:?}");

    let settings = GitHubSettings {
        api_url: w.gh_fake.url(),
        repository: None,
        credentials: Credentials::Token(SecretString::from(TEST_TOKEN)),
        retry: RetryPolicy::default(),
    };
    let gh = GitHub::connect(&settings).await.unwrap();
    let repo = RepoRef::new("acme", "infra");
    let head_of = |branch: String| {
        let gh = gh.clone();
        let repo = repo.clone();
        async move {
            let r = gh
                .git_ref(&repo, &format!("heads/{branch}"))
                .await
                .unwrap()
                .unwrap();
            let c = gh.git_commit(&repo, &r.object.sha).await.unwrap();
            (r.object.sha, c.parents[0].sha.clone())
        }
    };

    // the base moves: every open PR is rebuilt on it in place (same numbers)
    let (aws_head, aws_parent) = head_of(aws.head.clone()).await;
    let new_main = w
        .gh_fake
        .commit_files(REPO, "main", &[("README.md", "infra\n")], "docs");
    assert_ne!(aws_parent, new_main);
    let report = run(&w, config()).await;
    assert!(report.opened.is_empty(), "{report:?}");
    assert_eq!(report.refreshed.len(), 4, "{report:?}");
    assert_eq!(w.gh_fake.pulls(REPO).len(), 4, "no duplicate");
    let (head2, parent2) = head_of(aws.head.clone()).await;
    assert_ne!(head2, aws_head, "a new head commit");
    assert_eq!(parent2, new_main, "on the new base");
    assert_eq!(
        w.gh_fake.file(REPO, &aws.head, "README.md").as_deref(),
        Some("infra\n")
    );
    let now = w.gh_fake.pulls(REPO);
    let aws_now = now.iter().find(|p| p.number == aws.number).unwrap();
    let m: opsbot_tfupdate::plan::PrMarker =
        opsbot_core::github::marker::find(&aws_now.body, opsbot_tfupdate::plan::MARKER_KIND)
            .unwrap();
    assert_eq!(m.base.as_deref(), Some(new_main.as_str()));
    assert_eq!(m.head.as_deref(), Some(head2.as_str()));

    // a newer aws release: the same PR is updated to it, not a new one
    w.reg.add_provider(
        "hashicorp",
        "aws",
        "5.71.0",
        &["linux_amd64", "darwin_arm64"],
    );
    let report = run(&w, config()).await;
    assert!(report.opened.is_empty(), "{report:?}");
    assert!(report.closed.is_empty(), "{report:?}");
    assert_eq!(report.refreshed.len(), 1, "{report:?}");
    let all = w.gh_fake.pulls(REPO);
    assert_eq!(all.len(), 4, "never a duplicate");
    let same = all.iter().find(|p| p.number == aws.number).unwrap();
    assert_eq!(same.state, "open");
    assert_eq!(same.title, "Bump hashicorp/aws from 5.31.0 to 5.71.0");
    assert!(same.body.contains("hashicorp/aws@5.71.0"), "{}", same.body);
    let aws_file = w
        .gh_fake
        .file(REPO, &aws.head, "envs/prod/versions.tf")
        .unwrap();
    assert!(aws_file.contains("version = \"5.71.0\" # pinned on purpose"));
    let lock = w
        .gh_fake
        .file(REPO, &aws.head, "envs/prod/.terraform.lock.hcl")
        .unwrap();
    assert!(lock.contains("version     = \"5.71.0\""), "{lock}");
    let (_, parent3) = head_of(aws.head.clone()).await;
    assert_eq!(parent3, new_main);
    assert_eq!(open_pulls(&w).len(), 4);

    // and again nothing to do: no writes
    w.gh_fake.clear_requests();
    let report = run(&w, config()).await;
    assert!(
        report.refreshed.is_empty() && report.opened.is_empty(),
        "{report:?}"
    );
    assert!(
        w.gh_fake.requests().iter().all(|r| r.method == "GET"),
        "{:?}",
        w.gh_fake.requests()
    );

    // a PR closed by a person is not reopened for the same version
    gh.update_pull(
        &RepoRef::new("acme", "infra"),
        vpc.number,
        &PullRequestPatch {
            state: Some("closed".into()),
            ..PullRequestPatch::default()
        },
    )
    .await
    .unwrap();
    let report = run(&w, config()).await;
    assert!(report.opened.is_empty(), "{report:?}");
    assert_eq!(report.declined.len(), 1, "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn grouping_limits_and_broken_files() {
    let w = world().await;
    let broken = w.checkout.path().join("envs/dev/broken.tf");
    std::fs::create_dir_all(broken.parent().unwrap()).unwrap();
    std::fs::write(&broken, "terraform {\n  x = = 1\n}\n").unwrap();
    let config = PrConfig {
        group: Grouping::Providers,
        max_open_prs: 2,
        ..config()
    };
    let report = run(&w, config.clone()).await;
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(
        report.errors[0].contains("envs/dev/broken.tf:2:"),
        "{:?}",
        report.errors
    );
    assert!(!report.errors[0].contains("/./"), "{:?}", report.errors);
    // terraform, providers (grouped), module: the limit of 2 defers the third
    assert_eq!(report.opened.len(), 2, "{report:?}");
    assert_eq!(report.deferred.len(), 1, "{report:?}");
    let pulls = open_pulls(&w);
    let providers = pull(&pulls, "Bump providers:");
    assert_eq!(
        providers.title,
        "Bump providers: hashicorp/aws 5.70.0, hashicorp/random 3.6.3"
    );
    assert_eq!(providers.head, "opsbot/tfupdate/providers");
    let file = w
        .gh_fake
        .file(REPO, &providers.head, "envs/prod/versions.tf")
        .unwrap();
    assert!(
        file.contains("\"5.70.0\"") && file.contains("\"~> 3.6\""),
        "{file}"
    );
    let lock = w
        .gh_fake
        .file(REPO, &providers.head, "envs/prod/.terraform.lock.hcl")
        .unwrap();
    assert!(lock.contains("version     = \"3.6.3\""), "{lock}");
    // one request per distinct provider and module in the whole run
    assert_eq!(
        w.reg.request_count("/v1/providers/hashicorp/aws/versions"),
        1
    );
    assert_eq!(
        w.reg
            .request_count("/v1/modules/terraform-aws-modules/vpc/aws/versions"),
        1
    );
    assert_eq!(
        std::fs::read_to_string(&broken).unwrap(),
        "terraform {\n  x = = 1\n}\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_as_a_github_app() {
    let w = world().await;
    w.gh_fake.add_installation(77, &[REPO]);
    let app = Credentials::App {
        app_id: 4242,
        private_key_pem: SecretString::from(TEST_APP_PRIVATE_KEY),
        installation_id: None,
    };
    let config = PrConfig {
        terraform: false,
        modules: false,
        ..config()
    };
    let report = run_as(&w, config.clone(), app.clone()).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.opened.len(), 2, "{report:?}");
    let report = run_as(&w, config, app).await;
    assert_eq!(
        (report.opened.len(), report.kept.len()),
        (0, 2),
        "{report:?}"
    );
}
