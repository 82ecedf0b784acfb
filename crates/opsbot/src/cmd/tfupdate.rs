//! `opsbot tfupdate`: tfupdate-compatible pin bumps (`terraform`, `provider`, `module`),
//! lock file hashes (`lock`), version lookups (`release`) and the daily PR job (`pr`).
//! Argument parsing and printing only; the work is in `opsbot-tfupdate`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use opsbot_tfupdate::bump::{BumpOptions, bump};
use opsbot_tfupdate::lock::{Platform, update_locks};
use opsbot_tfupdate::pr::{PrConfig, PrJob, run_pr_job};
use opsbot_tfupdate::registry::{RegistryClient, RegistryOptions, tokens_from_env};
use opsbot_tfupdate::release::{
    GithubReleases, OPENTOFU_REPO, ReleaseSource, Releases, SourceType, TERRAFORM_REPO,
};
use opsbot_tfupdate::rewrite::{ProviderSpec, SourcePattern, Target};
use opsbot_tfupdate::walk::{TreeUpdate, WalkOptions};

use super::GlobalArgs;

#[derive(Debug, Args)]
pub struct TfupdateArgs {
    #[command(subcommand)]
    command: TfCommand,
}

#[derive(Debug, Subcommand)]
enum TfCommand {
    /// Update `required_version` in every `terraform {}` block (of `.tf` files: the
    /// ones Terraform reads).
    #[command(disable_version_flag = true)]
    Terraform(TerraformArgs),
    /// Update `required_version` for OpenTofu (versions from opentofu/opentofu), in the
    /// files OpenTofu reads: `.tofu`, and `.tf` unless a same-named `.tofu` exists.
    #[command(disable_version_flag = true)]
    Opentofu(TerraformArgs),
    /// Update a provider's version in `required_providers` and `provider` blocks.
    #[command(disable_version_flag = true)]
    Provider(ProviderArgs),
    /// Update the version of module calls whose source matches.
    #[command(disable_version_flag = true)]
    Module(ModuleArgs),
    /// Update `.terraform.lock.hcl` files to the pinned provider versions, with hashes.
    Lock(LockArgs),
    /// Look up versions in the Terraform registry or GitHub releases.
    #[command(subcommand)]
    Release(ReleaseCommand),
    /// The daily job: open a pull request for each target with a newer release.
    Pr(PrArgs),
    /// An unknown subcommand: exit 127, as tfupdate.
    #[command(external_subcommand)]
    Unknown(Vec<String>),
}

#[derive(Debug, Args)]
struct RegistryArgs {
    /// Terraform registry for providers and modules (host or URL; private registries
    /// take a token from TF_TOKEN_<host>). Default: $TFREGISTRY_BASE_URL (tfupdate's
    /// variable), else registry.terraform.io.
    #[arg(long, env = "OPSBOT_TF_REGISTRY_URL")]
    registry_url: Option<String>,
}

impl RegistryArgs {
    fn url(&self) -> String {
        self.registry_url
            .clone()
            .or_else(|| std::env::var("TFREGISTRY_BASE_URL").ok())
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| "registry.terraform.io".to_string())
    }
}

#[derive(Debug, Args)]
struct BumpArgs {
    /// Version to set (default, or `latest`: the latest stable release), or a
    /// constraint such as `"~> 1.0"` or `">= 4.0, < 6.0"`, written as given (as
    /// tfupdate does). A version keeps each pin's style (`~> 1.5` becomes `~> 1.9`).
    #[arg(short = 'v', long = "version", value_name = "VERSION|CONSTRAINT")]
    version: Option<String>,
    /// Walk directories recursively (skipping .terraform/ and .git/).
    #[arg(short, long)]
    recursive: bool,
    /// Skip paths matching this regular expression (repeatable).
    #[arg(short = 'i', long = "ignore-path", value_name = "REGEX")]
    ignore_path: Vec<String>,
    /// Consider pre-releases when looking for the latest release.
    #[arg(long)]
    pre_release: bool,
    /// Print what would change without writing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Debug, Args)]
struct TerraformArgs {
    #[command(flatten)]
    bump: BumpArgs,
    /// GitHub repository whose releases are the versions (default hashicorp/terraform;
    /// opentofu/opentofu when the registry is registry.opentofu.org).
    #[arg(long, value_name = "OWNER/REPO")]
    core_repo: Option<String>,
    /// File or directory.
    path: PathBuf,
}

#[derive(Debug, Args)]
struct ProviderArgs {
    #[command(flatten)]
    bump: BumpArgs,
    /// Provider: `aws` (local name) or `hashicorp/aws` (source address; a source
    /// without a host is on the default registry, so `registry.opentofu.org/hashicorp/aws`
    /// does not match `registry.terraform.io/hashicorp/aws`).
    name: String,
    /// File or directory.
    path: PathBuf,
}

#[derive(Debug, Args)]
struct ModuleArgs {
    #[command(flatten)]
    bump: BumpArgs,
    /// Accepted for compatibility: `?ref=vX.Y.Z` tags of matching git sources are
    /// always updated, as tfupdate does.
    #[arg(long, hide = true)]
    git_ref: bool,
    /// How SOURCE is compared with module sources: `full` (the same module) or `regex`
    /// (SOURCE is a regular expression searched in the source).
    #[arg(long, value_name = "full|regex", default_value = "full")]
    source_match_type: String,
    /// Module source: `terraform-aws-modules/vpc/aws`, `github.com/org/repo`.
    source: String,
    /// File or directory.
    path: PathBuf,
}

#[derive(Debug, Args)]
struct LockArgs {
    /// Platforms to record `h1:` hashes for (repeatable; default: this machine's).
    #[arg(long, value_name = "OS_ARCH")]
    platform: Vec<String>,
    /// Walk directories recursively.
    #[arg(short, long)]
    recursive: bool,
    /// Skip paths matching this regular expression (repeatable).
    #[arg(short = 'i', long = "ignore-path", value_name = "REGEX")]
    ignore_path: Vec<String>,
    /// Where downloaded provider packages are cached.
    #[arg(long, env = "OPSBOT_TF_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Print what would change without writing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    registry: RegistryArgs,
    /// File or directory.
    path: PathBuf,
}

#[derive(Debug, Subcommand)]
enum ReleaseCommand {
    /// Print the latest version.
    Latest(ReleaseArgs),
    /// Print recent versions, oldest first.
    List(ReleaseListArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SourceTypeArg {
    #[value(name = "github")]
    Github,
    #[value(name = "tfregistryProvider")]
    TfregistryProvider,
    #[value(name = "tfregistryModule")]
    TfregistryModule,
}

#[derive(Debug, Args)]
struct ReleaseArgs {
    /// Kind of SOURCE (default: guessed: hashicorp/terraform and opentofu/opentofu are
    /// GitHub, NS/NAME a provider, NS/NAME/SYSTEM a module).
    #[arg(short = 's', long, value_enum)]
    source_type: Option<SourceTypeArg>,
    /// Include pre-releases.
    #[arg(long)]
    pre_release: bool,
    #[command(flatten)]
    registry: RegistryArgs,
    /// `hashicorp/terraform`, `hashicorp/aws`, `terraform-aws-modules/vpc/aws`.
    source: String,
}

#[derive(Debug, Args)]
struct ReleaseListArgs {
    #[command(flatten)]
    release: ReleaseArgs,
    /// How many versions to print.
    #[arg(short = 'n', long, default_value_t = 10)]
    max_length: usize,
}

#[derive(Debug, Args)]
struct PrArgs {
    /// Report the plan without pushing or opening pull requests.
    #[arg(long)]
    dry_run: bool,
    /// Terraform registry (default: `tfupdate.registry_url`, else registry.terraform.io).
    #[arg(long, env = "OPSBOT_TF_REGISTRY_URL")]
    registry_url: Option<String>,
    /// Checkout of the base branch (default: the current directory).
    #[arg(long, default_value = ".")]
    checkout: PathBuf,
}

/// Runs one `tfupdate` subcommand. As tfupdate: any error exits 1, an unknown
/// subcommand 127.
pub async fn run(global: &GlobalArgs, args: TfupdateArgs) -> anyhow::Result<ExitCode> {
    match run_command(global, args).await {
        Ok(code) => Ok(code),
        Err(err) => {
            eprintln!("opsbot: {}", super::one_line(&err));
            Ok(ExitCode::from(1))
        }
    }
}

/// How much to log for `TFUPDATE_LOG` (tfupdate's TRACE, DEBUG, INFO, WARN, ERROR),
/// given the `--verbose` count.
pub fn log_verbosity(verbose: u8) -> u8 {
    let from_env = match std::env::var("TFUPDATE_LOG")
        .unwrap_or_default()
        .trim()
        .to_ascii_uppercase()
        .as_str()
    {
        "TRACE" => 3,
        "DEBUG" => 2,
        "INFO" => 1,
        _ => 0,
    };
    verbose.max(from_env)
}

async fn run_command(global: &GlobalArgs, args: TfupdateArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        TfCommand::Terraform(a) => {
            let core_repo = a
                .core_repo
                .clone()
                .unwrap_or_else(|| default_core_repo(&a.bump.registry));
            run_bump(Target::Terraform, a.bump, a.path, core_repo).await
        }
        TfCommand::Opentofu(a) => {
            let core_repo = a.core_repo.clone().unwrap_or(OPENTOFU_REPO.to_string());
            run_bump(Target::Terraform, a.bump, a.path, core_repo).await
        }
        TfCommand::Provider(a) => {
            let spec = ProviderSpec::parse(&a.name)?.with_default_registry(&a.bump.registry.url());
            run_bump(
                Target::Provider(spec),
                a.bump,
                a.path,
                TERRAFORM_REPO.to_string(),
            )
            .await
        }
        TfCommand::Module(a) => {
            let regex = match a.source_match_type.as_str() {
                "full" => None,
                "regex" => Some(
                    SourcePattern::regex(&a.source)
                        .with_context(|| format!("module source regex `{}`", a.source))?,
                ),
                other => anyhow::bail!("--source-match-type `{other}`: expected `full` or `regex`"),
            };
            if a.source.trim().is_empty() {
                anyhow::bail!("module source must not be empty");
            }
            let _ = a.git_ref;
            let target = Target::Module {
                source: a.source.clone(),
                git_ref: true,
                regex,
            };
            run_bump(target, a.bump, a.path, TERRAFORM_REPO.to_string()).await
        }
        TfCommand::Lock(a) => run_lock(a).await,
        TfCommand::Release(c) => run_release(c).await,
        TfCommand::Pr(a) => run_pr(global, a).await,
        TfCommand::Unknown(words) => {
            eprintln!(
                "opsbot tfupdate: unknown subcommand `{}` (try `opsbot tfupdate --help`)",
                words.first().map(String::as_str).unwrap_or_default()
            );
            Ok(ExitCode::from(127))
        }
    }
}

fn default_core_repo(registry: &RegistryArgs) -> String {
    if registry.url().contains("registry.opentofu.org") {
        OPENTOFU_REPO.to_string()
    } else {
        TERRAFORM_REPO.to_string()
    }
}

fn registry_client(args: &RegistryArgs) -> anyhow::Result<Arc<RegistryClient>> {
    let client = RegistryClient::new(RegistryOptions {
        base_url: args.url(),
        tokens: tokens_from_env(std::env::vars()),
        ..RegistryOptions::default()
    })?;
    Ok(Arc::new(client))
}

fn walk_options(recursive: bool, ignore: &[String]) -> anyhow::Result<WalkOptions> {
    // As tfupdate: an empty pattern is dropped (it would match every path).
    let ignore = ignore
        .iter()
        .filter(|re| !re.is_empty())
        .map(|re| regex::Regex::new(re).with_context(|| format!("--ignore-path `{re}`")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(WalkOptions { recursive, ignore })
}

/// GitHub releases through the opsbot-core client (GITHUB_API_URL, GITHUB_TOKEN or App).
fn github() -> impl GithubReleases {
    opsbot_tfupdate::github::CoreGithub::from_env()
}

async fn run_bump(
    target: Target,
    args: BumpArgs,
    path: PathBuf,
    core_repo: String,
) -> anyhow::Result<ExitCode> {
    let releases = Releases {
        registry: registry_client(&args.registry)?,
        github: github(),
    };
    let opts = BumpOptions {
        path,
        walk: walk_options(args.recursive, &args.ignore_path)?,
        version: args.version,
        pre_release: args.pre_release,
        dry_run: args.dry_run,
        core_repo,
    };
    let result = bump(&releases, &target, &opts)
        .await
        .with_context(|| format!("tfupdate {}", target.describe()))?;
    print_update(&result.update, &result.value(), args.dry_run);
    Ok(exit_for(&result.update.errors))
}

fn print_update(update: &TreeUpdate, version: &str, dry_run: bool) {
    for r in &update.rewrites {
        let style = match r.style {
            opsbot_tfupdate::Style::Replaced => {
                format!(" (replaced: `{}` did not admit {version})", r.from)
            }
            opsbot_tfupdate::Style::Set => " (set as given)".to_string(),
            _ => String::new(),
        };
        println!(
            "{}:{}: {}: \"{}\" -> \"{}\"{style}",
            r.file.display(),
            r.line,
            r.what,
            r.from,
            r.to
        );
    }
    for n in &update.notes {
        println!("{}:{}: {}: {}", n.file.display(), n.line, n.what, n.message);
    }
    for e in &update.errors {
        eprintln!("error: {}", e.message);
    }
    let verb = if dry_run { "would update" } else { "updated" };
    let mut summary = format!(
        "{verb} {} of {} file(s) ({} pin(s)) to {version}",
        update.changed_files.len(),
        update.files_scanned,
        update.rewrites.len()
    );
    if !update.errors.is_empty() {
        summary.push_str(&format!(
            "; {} file(s) left untouched because of errors",
            update.errors.len()
        ));
    }
    println!("{summary}");
}

fn exit_for<T>(errors: &[T]) -> ExitCode {
    if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn run_lock(args: LockArgs) -> anyhow::Result<ExitCode> {
    let platforms = if args.platform.is_empty() {
        vec![Platform::host()]
    } else {
        args.platform
            .iter()
            .map(|p| {
                Platform::parse(p).with_context(|| {
                    format!("--platform `{p}`: expected OS_ARCH, e.g. linux_amd64")
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let registry = registry_client(&args.registry)?;
    let walk = walk_options(args.recursive, &args.ignore_path)?;
    let cache_dir = args.cache_dir.or_else(default_cache_dir);
    let report = update_locks(
        &args.path,
        &walk,
        registry,
        platforms,
        cache_dir,
        args.dry_run,
    )
    .await?;
    for (file, address, from, to) in &report.versions {
        println!(
            "{}: {address}: {} -> {to}",
            file.display(),
            from.as_deref().unwrap_or("(new)")
        );
    }
    for e in &report.errors {
        eprintln!("error: {}", e.message);
    }
    let verb = if args.dry_run {
        "would update"
    } else {
        "updated"
    };
    println!(
        "{verb} {} of {} lock files",
        report.changed.len(),
        report.lock_files.len()
    );
    Ok(exit_for(&report.errors))
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("opsbot").join("tfupdate"))
}

async fn run_release(command: ReleaseCommand) -> anyhow::Result<ExitCode> {
    let (args, max) = match command {
        ReleaseCommand::Latest(a) => (a, None),
        ReleaseCommand::List(l) => (l.release, Some(l.max_length)),
    };
    let kind = args.source_type.map(|k| match k {
        SourceTypeArg::Github => SourceType::Github,
        SourceTypeArg::TfregistryProvider => SourceType::TfregistryProvider,
        SourceTypeArg::TfregistryModule => SourceType::TfregistryModule,
    });
    let source = ReleaseSource::parse(&args.source, kind)?;
    let releases = Releases {
        registry: registry_client(&args.registry)?,
        github: github(),
    };
    match max {
        None => {
            let latest = releases.latest(&source, args.pre_release).await?;
            println!("{}", latest.version);
        }
        Some(n) => {
            let list = releases.list(&source, args.pre_release).await?;
            for r in list.iter().take(n).rev() {
                println!("{}", r.version);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_pr(global: &GlobalArgs, args: PrArgs) -> anyhow::Result<ExitCode> {
    let config = global.config()?;
    let mut pr_config: PrConfig = config.section("tfupdate")?;
    let registry_url = args
        .registry_url
        .or_else(|| pr_config.registry_url.clone())
        .unwrap_or_else(|| "registry.terraform.io".to_string());
    if pr_config.cache_dir.is_none() {
        pr_config.cache_dir = default_cache_dir();
    }
    let registry = registry_client(&RegistryArgs {
        registry_url: Some(registry_url),
    })?;
    let settings = super::github_settings()?;
    let repo = settings.require_repository()?.clone();
    let gh = opsbot_core::GitHub::connect(&settings)
        .await
        .context("connect to GitHub")?;
    let releases = Releases {
        registry: registry.clone(),
        github: opsbot_tfupdate::github::CoreGithub::new(gh.clone()),
    };
    let job = PrJob {
        gh: &gh,
        repo,
        releases: &releases,
        registry,
        checkout: args.checkout,
        config: pr_config,
        dry_run: args.dry_run,
    };
    let report = run_pr_job(job).await?;
    let would = if args.dry_run { "would " } else { "" };
    for (n, title) in &report.opened {
        if args.dry_run {
            println!("would open: {title}");
        } else {
            println!("opened #{n}: {title}");
        }
    }
    for (n, title) in &report.kept {
        println!("already open #{n}: {title}");
    }
    for (n, title) in &report.refreshed {
        println!("{would}refresh #{n}: {title}");
    }
    for (n, title) in &report.rewritten {
        println!("{would}rewrite the body of #{n}: {title}");
    }
    for (n, comment) in &report.closed {
        println!("{would}close #{n}: {comment}");
    }
    for (n, title) in &report.declined {
        println!("skipped (#{n} was closed): {title}");
    }
    for title in &report.deferred {
        println!("deferred (open pull request limit): {title}");
    }
    for current in &report.current {
        println!("up to date: {current}");
    }
    for e in &report.errors {
        eprintln!("error: {e}");
    }
    Ok(exit_for(&report.errors))
}
