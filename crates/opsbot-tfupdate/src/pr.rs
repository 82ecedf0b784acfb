//! The daily PR job (adapter): scan the checkout, look up the latest releases, group the
//! updates, plan against the job's pull requests ([`crate::plan`]) and carry the plan out
//! through opsbot-core's GitHub client. Commits are made with the git data API (tree with
//! the new file contents on top of the base branch, commit, ref), so no local git push.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use opsbot_core::RepoRef;
use opsbot_core::github::GitHub;
use opsbot_core::github::marker;
use opsbot_core::github::models::{NewPullRequest, PullRequestPatch, TreeEntry};
use serde::Deserialize;

use crate::constraint::TfVersion;
use crate::lock::{LockHasher, Overlay, Platform, lock_dirs, locked_text};
use crate::module_source::{ModuleAddress, normalize, ref_version};
use crate::pins::{PinKind, ProviderAddress};
use crate::plan::{
    CloseReason, ExistingPr, FileChange, Grouping, MARKER_KIND, PrAction, PrMarker, RefreshReason,
    TargetKind, TargetUpdate, UpdateGroup, group_key, plan,
};
use crate::registry::RegistryClient;
use crate::release::{GithubReleases, Release, Releases};
use crate::rewrite::{ProviderSpec, Target, restore_bytes, rewrite_file, rewrite_pins};
use crate::walk::{ScannedFile, WalkOptions, scan_files, terraform_files};

/// `[tfupdate]` in `opsbot.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrConfig {
    /// Directory to scan, relative to the checkout.
    pub path: String,
    pub recursive: bool,
    /// Regular expressions of paths to skip.
    pub ignore_paths: Vec<String>,
    /// Bump `required_version`.
    pub terraform: bool,
    /// Where Terraform's releases are: `hashicorp/terraform` or `opentofu/opentofu`.
    pub core_repo: String,
    /// Providers to watch besides those found in the repository (`hashicorp/aws`).
    pub providers: Vec<String>,
    /// Providers never bumped.
    pub ignore_providers: Vec<String>,
    /// Bump registry modules found in the repository.
    pub modules: bool,
    /// Also bump `?ref=vX.Y.Z` of git modules hosted on GitHub.
    pub git_ref: bool,
    pub ignore_modules: Vec<String>,
    /// Update `.terraform.lock.hcl` files next to changed configurations.
    pub lock: bool,
    pub lock_platforms: Vec<String>,
    pub group: Grouping,
    pub labels: Vec<String>,
    pub reviewers: Vec<String>,
    pub team_reviewers: Vec<String>,
    /// At most this many of the job's pull requests open at once.
    pub max_open_prs: usize,
    /// Base branch (default: the repository's default branch).
    pub base: Option<String>,
    pub branch_prefix: String,
    pub pre_release: bool,
    /// Registry for providers and modules (the CLI's `--registry-url` wins).
    pub registry_url: Option<String>,
    /// Provider package cache for lock hashes.
    pub cache_dir: Option<PathBuf>,
}

impl Default for PrConfig {
    fn default() -> Self {
        PrConfig {
            path: ".".to_string(),
            recursive: true,
            ignore_paths: Vec::new(),
            terraform: true,
            core_repo: crate::release::TERRAFORM_REPO.to_string(),
            providers: Vec::new(),
            ignore_providers: Vec::new(),
            modules: false,
            git_ref: false,
            ignore_modules: Vec::new(),
            lock: true,
            lock_platforms: vec![
                "linux_amd64".to_string(),
                "linux_arm64".to_string(),
                "darwin_amd64".to_string(),
                "darwin_arm64".to_string(),
            ],
            group: Grouping::None,
            labels: vec!["dependencies".to_string(), "terraform".to_string()],
            reviewers: Vec::new(),
            team_reviewers: Vec::new(),
            max_open_prs: 10,
            base: None,
            branch_prefix: "opsbot/tfupdate".to_string(),
            pre_release: false,
            registry_url: None,
            cache_dir: None,
        }
    }
}

/// Errors that stop the job.
#[derive(Debug, thiserror::Error)]
pub enum PrError {
    #[error("tfupdate.{key}: {message}")]
    Config { key: &'static str, message: String },
    #[error(transparent)]
    GitHub(#[from] opsbot_core::GitHubError),
    #[error("{0}")]
    Files(String),
}

/// What the job did (or, in a dry run, would do).
#[derive(Debug, Clone, Default)]
pub struct PrReport {
    /// `(number, title)`; number 0 in a dry run.
    pub opened: Vec<(u64, String)>,
    pub kept: Vec<(u64, String)>,
    /// Open pull requests rebuilt in place (base moved, or a newer release): `(number,
    /// title and why)`.
    pub refreshed: Vec<(u64, String)>,
    /// Open pull requests whose title or body was rewritten (release notes changed).
    pub rewritten: Vec<(u64, String)>,
    pub closed: Vec<(u64, String)>,
    pub declined: Vec<(u64, String)>,
    pub deferred: Vec<String>,
    /// Targets already at the latest release.
    pub current: Vec<String>,
    /// Problems that did not stop the job (a file that does not parse, a lookup that
    /// failed); the exit code says so.
    pub errors: Vec<String>,
}

/// The job's inputs.
pub struct PrJob<'a, G> {
    pub gh: &'a GitHub,
    pub repo: RepoRef,
    pub releases: &'a Releases<G>,
    pub registry: Arc<RegistryClient>,
    /// The checkout of the base branch.
    pub checkout: PathBuf,
    pub config: PrConfig,
    pub dry_run: bool,
}

struct Candidate {
    target: Target,
    kind: TargetKind,
    name: String,
    key: String,
}

fn rel_path(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn candidates(config: &PrConfig, files: &[ScannedFile]) -> Result<Vec<Candidate>, PrError> {
    let mut out = Vec::new();
    let has_core_pin = files
        .iter()
        .any(|f| f.pins.iter().any(|p| p.kind == PinKind::TerraformVersion));
    if config.terraform && has_core_pin {
        let name = if config
            .core_repo
            .eq_ignore_ascii_case(crate::release::OPENTOFU_REPO)
        {
            "OpenTofu"
        } else {
            "Terraform"
        };
        out.push(Candidate {
            target: Target::Terraform,
            kind: TargetKind::Terraform,
            name: name.to_string(),
            key: TargetUpdate::key_for(TargetKind::Terraform, name),
        });
    }
    let mut providers: BTreeSet<ProviderAddress> = files
        .iter()
        .flat_map(|f| f.pins.iter())
        .filter_map(|p| match &p.kind {
            PinKind::RequiredProvider { address, .. } | PinKind::ProviderBlock { address, .. } => {
                Some(address.clone())
            }
            _ => None,
        })
        .collect();
    for extra in &config.providers {
        let spec = ProviderSpec::parse(extra).map_err(|e| PrError::Config {
            key: "providers",
            message: e.to_string(),
        })?;
        providers.insert(spec.address());
    }
    let ignored: Vec<ProviderAddress> = config
        .ignore_providers
        .iter()
        .map(|p| {
            ProviderSpec::parse(p)
                .map(|s| s.address())
                .map_err(|e| PrError::Config {
                    key: "ignore_providers",
                    message: e.to_string(),
                })
        })
        .collect::<Result<_, _>>()?;
    for address in providers.into_iter().filter(|a| !ignored.contains(a)) {
        let name = address.short();
        out.push(Candidate {
            key: TargetUpdate::key_for(TargetKind::Provider, &name),
            target: Target::Provider(ProviderSpec::from(address)),
            kind: TargetKind::Provider,
            name,
        });
    }
    if config.modules || config.git_ref {
        let ignored: Vec<String> = config.ignore_modules.iter().map(|m| normalize(m)).collect();
        let mut modules: BTreeMap<String, bool> = BTreeMap::new();
        for pin in files.iter().flat_map(|f| f.pins.iter()) {
            match &pin.kind {
                PinKind::ModuleVersion { source, .. } if config.modules => {
                    if let Some(m) = ModuleAddress::parse(source) {
                        modules.insert(m.short(), false);
                    }
                }
                PinKind::ModuleSource { source, .. }
                    if config.git_ref && ref_version(source).is_some() =>
                {
                    let n = normalize(source);
                    if n.starts_with("github.com/") && n.split('/').count() == 3 {
                        modules.insert(n, true);
                    }
                }
                _ => {}
            }
        }
        for (source, git_ref) in modules {
            if ignored.contains(&normalize(&source)) {
                continue;
            }
            out.push(Candidate {
                key: TargetUpdate::key_for(TargetKind::Module, &source),
                target: Target::Module {
                    source: source.clone(),
                    git_ref,
                    regex: None,
                },
                kind: TargetKind::Module,
                name: source,
            });
        }
    }
    Ok(out)
}

/// One target's rewrites over the scanned files.
struct TargetChange {
    update: TargetUpdate,
    target: Target,
    version: TfVersion,
    /// path → pins rewritten
    files: BTreeMap<PathBuf, usize>,
}

fn changes_for(c: &Candidate, release: &Release, files: &[ScannedFile]) -> Option<TargetChange> {
    let mut from: Vec<String> = Vec::new();
    let mut changed = BTreeMap::new();
    for f in files
        .iter()
        .filter(|f| f.pins.iter().any(|p| c.target.matches(p)))
    {
        let r = rewrite_pins(&f.path, &f.text, &f.pins, &c.target, &release.version);
        if r.rewrites.is_empty() {
            continue;
        }
        for rw in &r.rewrites {
            if !from.contains(&rw.from) {
                from.push(rw.from.clone());
            }
        }
        changed.insert(f.path.clone(), r.rewrites.len());
    }
    if changed.is_empty() {
        return None;
    }
    Some(TargetChange {
        update: TargetUpdate {
            key: c.key.clone(),
            name: c.name.clone(),
            kind: c.kind,
            from,
            to: release.version.to_string(),
            notes_url: release.notes_url.clone(),
            notes: Vec::new(),
            releases_url: None,
        },
        target: c.target.clone(),
        version: release.version.clone(),
        files: changed,
    })
}

/// Applies every target of a group to the files, one after the other.
fn group_files(
    root: &Path,
    members: &[&TargetChange],
    originals: &HashMap<PathBuf, &ScannedFile>,
) -> Result<Vec<(PathBuf, FileChange)>, String> {
    let mut texts: BTreeMap<PathBuf, (String, usize)> = BTreeMap::new();
    for change in members {
        for path in change.files.keys() {
            let (text, pins) = texts.entry(path.clone()).or_insert_with(|| {
                (
                    originals
                        .get(path)
                        .map(|f| f.text.clone())
                        .unwrap_or_default(),
                    0,
                )
            });
            let r = rewrite_file(path, text, &change.target, &change.version)
                .map_err(|e| e.to_string())?;
            *pins += r.rewrites.len();
            *text = r.text;
        }
    }
    Ok(texts
        .into_iter()
        .map(|(path, (content, pins))| {
            let change = FileChange {
                path: rel_path(root, &path),
                pins,
                content,
            };
            (path, change)
        })
        .collect())
}

/// Runs the job.
pub async fn run_pr_job<G: GithubReleases>(job: PrJob<'_, G>) -> Result<PrReport, PrError> {
    let mut report = PrReport::default();
    let config = &job.config;
    let scan_root: PathBuf = job
        .checkout
        .join(&config.path)
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    let ignore = config
        .ignore_paths
        .iter()
        .map(|re| regex::Regex::new(re))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PrError::Config {
            key: "ignore_paths",
            message: e.to_string(),
        })?;
    let walk = WalkOptions {
        recursive: config.recursive,
        ignore,
    };
    let platforms = config
        .lock_platforms
        .iter()
        .map(|p| {
            Platform::parse(p).ok_or_else(|| PrError::Config {
                key: "lock_platforms",
                message: format!("`{p}` is not OS_ARCH"),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;

    // 1. scan
    let (scan_root2, walk2) = (scan_root.clone(), walk.clone());
    let (files, parse_errors) = tokio::task::spawn_blocking(move || {
        terraform_files(&scan_root2, &walk2).map(|files| scan_files(&files))
    })
    .await
    .map_err(|e| PrError::Files(e.to_string()))?
    .map_err(|e| PrError::Files(e.message))?;
    report
        .errors
        .extend(parse_errors.into_iter().map(|e| e.message));

    // 2. targets and 3. their latest releases, concurrently
    let candidates = candidates(config, &files)?;
    let lookups = futures::future::join_all(candidates.iter().map(|c| async {
        let source = Releases::<G>::source_for(&c.target, &config.core_repo)?;
        job.releases.latest(&source, config.pre_release).await
    }))
    .await;

    // 4. what each target changes
    let mut changes: Vec<TargetChange> = Vec::new();
    let mut current_keys: BTreeSet<String> = BTreeSet::new();
    let mut failed_keys: BTreeSet<String> = BTreeSet::new();
    for (c, lookup) in candidates.iter().zip(lookups) {
        let gkey = group_key(
            config.group,
            &TargetUpdate {
                key: c.key.clone(),
                name: c.name.clone(),
                kind: c.kind,
                from: vec![],
                to: String::new(),
                notes_url: String::new(),
                notes: Vec::new(),
                releases_url: None,
            },
        );
        match lookup {
            Err(e) => {
                report.errors.push(format!("{}: {e}", c.name));
                failed_keys.insert(gkey);
            }
            Ok(release) => match changes_for(c, &release, &files) {
                Some(change) => changes.push(change),
                None => {
                    report
                        .current
                        .push(format!("{} {}", c.name, release.version));
                    current_keys.insert(gkey);
                }
            },
        }
    }
    let current_keys: Vec<String> = current_keys.difference(&failed_keys).cloned().collect();

    // 5. groups
    let originals: HashMap<PathBuf, &ScannedFile> =
        files.iter().map(|f| (f.path.clone(), f)).collect();
    let mut by_key: BTreeMap<String, Vec<&TargetChange>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for change in &changes {
        let key = group_key(config.group, &change.update);
        if !by_key.contains_key(&key) {
            order.push(key.clone());
        }
        by_key.entry(key).or_default().push(change);
    }
    let mut groups: Vec<UpdateGroup> = Vec::new();
    let mut group_paths: Vec<Vec<PathBuf>> = Vec::new();
    for key in order {
        let members = by_key.remove(&key).unwrap_or_default();
        let files = group_files(&job.checkout, &members, &originals).map_err(PrError::Files)?;
        group_paths.push(files.iter().map(|(p, _)| p.clone()).collect());
        groups.push(UpdateGroup {
            key,
            updates: members.iter().map(|m| m.update.clone()).collect(),
            files: files.into_iter().map(|(_, f)| f).collect(),
            lock_platforms: Vec::new(),
        });
    }

    // 6. the job's pull requests: open ones, and closed ones for the same update
    let base_branch = match &config.base {
        Some(b) => b.clone(),
        None => job.gh.repository(&job.repo).await?.default_branch,
    };
    let base_head = job
        .gh
        .git_ref(&job.repo, &format!("heads/{base_branch}"))
        .await?
        .ok_or_else(|| {
            PrError::Files(format!(
                "base branch `{base_branch}` not found in {}",
                job.repo
            ))
        })?;
    let base_sha = base_head.object.sha.clone();
    let open = job.gh.list_pulls(&job.repo, "open", None).await?;
    let mut existing: Vec<ExistingPr> = Vec::new();
    let mut shown: HashMap<u64, (String, String)> = HashMap::new();
    for p in open
        .iter()
        .filter(|p| p.head.name.starts_with(&config.branch_prefix))
    {
        let body = p.body.as_deref().unwrap_or_default();
        let Some(m) = marker::find::<PrMarker>(body, MARKER_KIND) else {
            continue;
        };
        // the base the branch is built on: from the marker while the branch is as the
        // job left it, else the head commit's parent
        let based_on = match (&m.head, &m.base) {
            (Some(head), Some(base)) if *head == p.head.sha => Some(base.clone()),
            _ if p.head.sha.is_empty() => None,
            _ => job
                .gh
                .git_commit(&job.repo, &p.head.sha)
                .await
                .ok()
                .and_then(|c| c.parents.first().map(|s| s.sha.clone())),
        };
        shown.insert(p.number, (p.title.clone(), body.to_string()));
        existing.push(ExistingPr {
            number: p.number,
            branch: p.head.name.clone(),
            open: true,
            merged: false,
            marker: m,
            head_sha: (!p.head.sha.is_empty()).then(|| p.head.sha.clone()),
            based_on,
        });
    }
    for group in &groups {
        let identity = group.identity();
        if existing.iter().any(|e| e.marker.identity == identity) {
            continue;
        }
        let head = format!("{}:{}", job.repo.owner, group.branch(&config.branch_prefix));
        for p in job.gh.list_pulls(&job.repo, "closed", Some(&head)).await? {
            if let Some(m) =
                marker::find::<PrMarker>(p.body.as_deref().unwrap_or_default(), MARKER_KIND)
            {
                existing.push(ExistingPr {
                    number: p.number,
                    branch: p.head.name.clone(),
                    open: false,
                    merged: p.merged,
                    marker: m,
                    head_sha: None,
                    based_on: None,
                });
            }
        }
    }

    // 7. plan
    let actions = plan(
        &groups,
        &current_keys,
        &existing,
        config.max_open_prs,
        Some(&base_sha),
    );
    tracing::info!(
        groups = groups.len(),
        actions = actions.len(),
        "tfupdate plan"
    );

    // 8. carry it out: opens first (their numbers are needed for the closing comments)
    let mut group_numbers: HashMap<usize, u64> = HashMap::new();
    let mut base_tree: Option<String> = None;
    let hasher = LockHasher::new(
        job.registry.clone(),
        platforms.clone(),
        config.cache_dir.clone(),
    );
    let lock_roots = if config.lock {
        lock_dirs(&scan_root, &walk).map_err(|e| PrError::Files(e.message))?
    } else {
        Vec::new()
    };
    let finish = Finish {
        job: &job,
        hasher: &hasher,
        lock_roots: &lock_roots,
        platforms: &platforms,
    };
    for action in &actions {
        let (group, existing_pr) = match action {
            PrAction::Keep { group, number } => (*group, Some(*number)),
            PrAction::Refresh { group, number, .. } => (*group, Some(*number)),
            PrAction::Open { group } => (*group, None),
            PrAction::KeepEdited { group, number } => {
                group_numbers.insert(*group, *number);
                report.kept.push((*number, groups[*group].title()));
                report.errors.push(format!(
                    "#{number} ({}) is out of date but has commits not made by opsbot: not refreshed",
                    groups[*group].title()
                ));
                continue;
            }
            PrAction::Declined { group, number } => {
                report.declined.push((*number, groups[*group].title()));
                continue;
            }
            PrAction::Deferred { group } => {
                report.deferred.push(groups[*group].title());
                continue;
            }
            PrAction::Close { .. } => continue,
        };
        let g = finish
            .complete(&groups[group], &group_paths[group], &mut report)
            .await;
        let title = g.title();
        if let Some(number) = existing_pr {
            group_numbers.insert(group, number);
        }
        match action {
            PrAction::Keep { number, .. } => {
                // same update on the same base: only the title and body, if they differ
                let pr = existing.iter().find(|e| e.number == *number);
                let marker = PrMarker {
                    base: pr.and_then(|p| p.marker.base.clone()),
                    head: pr.and_then(|p| p.marker.head.clone()),
                    ..g.marker()
                };
                let body = g.body_with(&marker);
                let same = shown
                    .get(number)
                    .is_some_and(|(t, b)| *t == title && *b == body);
                if !same && !job.dry_run {
                    job.gh
                        .update_pull(
                            &job.repo,
                            *number,
                            &PullRequestPatch {
                                title: Some(title.clone()),
                                body: Some(body),
                                ..PullRequestPatch::default()
                            },
                        )
                        .await?;
                }
                if same {
                    report.kept.push((*number, title));
                } else {
                    report.rewritten.push((*number, title));
                }
            }
            PrAction::Refresh {
                number,
                branch,
                reason,
                ..
            } => {
                if !job.dry_run {
                    let tree = base_tree_of(job.gh, &job.repo, &base_sha, &mut base_tree).await?;
                    let head = commit_group(&job, &g, &base_sha, &tree).await?;
                    job.gh
                        .update_ref(&job.repo, &format!("heads/{branch}"), &head, true)
                        .await?;
                    let marker = PrMarker {
                        base: Some(base_sha.clone()),
                        head: Some(head),
                        ..g.marker()
                    };
                    job.gh
                        .update_pull(
                            &job.repo,
                            *number,
                            &PullRequestPatch {
                                title: Some(title.clone()),
                                body: Some(g.body_with(&marker)),
                                ..PullRequestPatch::default()
                            },
                        )
                        .await?;
                }
                let why = match reason {
                    RefreshReason::BaseMoved => format!("rebuilt on {base_branch}"),
                    RefreshReason::Superseded { was } => format!("was {was}"),
                };
                report.refreshed.push((*number, format!("{title} ({why})")));
            }
            PrAction::Open { .. } => {
                if job.dry_run {
                    report.opened.push((0, title));
                    continue;
                }
                let tree = base_tree_of(job.gh, &job.repo, &base_sha, &mut base_tree).await?;
                let number = open_pr(&job, &g, &base_branch, &base_sha, &tree).await?;
                group_numbers.insert(group, number);
                report.opened.push((number, title));
            }
            _ => {}
        }
    }
    for action in &actions {
        let PrAction::Close {
            number,
            branch,
            reason,
        } = action
        else {
            continue;
        };
        let comment = match reason {
            CloseReason::Superseded { group } => match group_numbers.get(group) {
                Some(n) => format!("Superseded by #{n} ({}).", groups[*group].title()),
                None => format!("Superseded by a newer update: {}.", groups[*group].title()),
            },
            CloseReason::UpToDate => {
                "Closing: the repository already uses the latest release.".to_string()
            }
        };
        if !job.dry_run {
            job.gh.create_comment(&job.repo, *number, &comment).await?;
            job.gh
                .update_pull(
                    &job.repo,
                    *number,
                    &PullRequestPatch {
                        state: Some("closed".to_string()),
                        ..PullRequestPatch::default()
                    },
                )
                .await?;
            let in_use = groups
                .iter()
                .any(|g| g.branch(&config.branch_prefix) == *branch);
            if !in_use
                && let Err(e) = job
                    .gh
                    .delete_ref(&job.repo, &format!("heads/{branch}"))
                    .await
            {
                tracing::warn!(branch, error = %e, "cannot delete the branch of a closed pull request");
            }
        }
        report.closed.push((*number, comment));
    }
    Ok(report)
}

/// What completes a group before it is pushed: lock files and release notes (I/O).
struct Finish<'a, 'j, G> {
    job: &'a PrJob<'j, G>,
    hasher: &'a LockHasher,
    lock_roots: &'a [PathBuf],
    platforms: &'a [Platform],
}

impl<G: GithubReleases> Finish<'_, '_, G> {
    async fn complete(
        &self,
        group: &UpdateGroup,
        paths: &[PathBuf],
        report: &mut PrReport,
    ) -> UpdateGroup {
        let job = self.job;
        let mut g = group.clone();
        let providers: BTreeSet<String> = g
            .updates
            .iter()
            .filter(|u| u.kind == TargetKind::Provider)
            .map(|u| u.name.to_ascii_lowercase())
            .collect();
        if !providers.is_empty() && !self.lock_roots.is_empty() {
            let overlay: Overlay = paths
                .iter()
                .cloned()
                .zip(g.files.iter().map(|f| f.content.clone()))
                .collect();
            let overlay = &overlay;
            let locks = futures::future::join_all(self.lock_roots.iter().map(|dir| async move {
                let result = locked_text(dir, overlay, self.hasher, &job.registry).await;
                (dir, result)
            }))
            .await;
            for (dir, result) in locks {
                match result {
                    Ok((text, new, versions)) if new != text => {
                        // as text to parse (bytes outside UTF-8 as placeholders, put back
                        // from the checkout when committed)
                        let new = crate::pins::text_for_parsing(&new).into_owned();
                        // only lock files this group's changes move: a file of the group
                        // in the directory, or one of its providers at another version
                        let touched = paths.iter().any(|p| p.parent() == Some(dir.as_path()))
                            || versions.iter().any(|(a, _, _)| {
                                ProviderAddress::parse(a).is_some_and(|a| {
                                    providers.contains(&a.short().to_ascii_lowercase())
                                }) || providers
                                    .iter()
                                    .any(|p| a.to_ascii_lowercase().ends_with(p.as_str()))
                            });
                        if touched {
                            g.files.push(FileChange {
                                path: rel_path(&job.checkout, &dir.join(crate::lock::LOCK_FILE)),
                                pins: 0,
                                content: new,
                            });
                        }
                    }
                    Ok(_) => {}
                    Err(e) => report.errors.push(format!(
                        "{}: lock file not updated: {}",
                        g.title(),
                        e.message
                    )),
                }
            }
            if g.files.iter().any(|f| f.pins == 0) {
                g.lock_platforms = self.platforms.iter().map(|p| p.to_string()).collect();
            }
        }
        for u in &mut g.updates {
            self.add_notes(u).await;
        }
        g
    }

    /// The release notes of `u`'s source repository between the old and new versions.
    async fn add_notes(&self, u: &mut TargetUpdate) {
        let config = &self.job.config;
        let target = match u.kind {
            TargetKind::Terraform => Target::Terraform,
            TargetKind::Provider => match ProviderSpec::parse(&u.name) {
                Ok(spec) => Target::Provider(spec),
                Err(_) => return,
            },
            TargetKind::Module => Target::Module {
                source: u.name.clone(),
                git_ref: false,
                regex: None,
            },
        };
        let Some((owner, repo)) = crate::release::notes_repo(&target, &config.core_repo, None)
        else {
            return;
        };
        let Ok(to) = TfVersion::parse(&u.to) else {
            return;
        };
        match self.job.releases.github.releases(&owner, &repo).await {
            Ok(releases) => {
                u.notes = crate::release::notes_between(
                    &releases,
                    crate::plan::from_floor(&u.from).as_ref(),
                    &to,
                );
                u.releases_url = Some(format!("https://github.com/{owner}/{repo}/releases"));
            }
            Err(e) => {
                tracing::warn!(repo = %format!("{owner}/{repo}"), error = %e, "no release notes");
            }
        }
    }
}

/// The tree of the base commit (read once).
async fn base_tree_of(
    gh: &GitHub,
    repo: &RepoRef,
    base_sha: &str,
    cached: &mut Option<String>,
) -> Result<String, PrError> {
    if let Some(t) = cached {
        return Ok(t.clone());
    }
    let commit = gh.git_commit(repo, base_sha).await?;
    *cached = Some(commit.tree.sha.clone());
    Ok(commit.tree.sha)
}

/// The bytes to commit for `f` when its file in the checkout is not UTF-8 everywhere:
/// its content with each byte outside UTF-8 put back ([`restore_bytes`]); `None` for a
/// UTF-8 file (committed as text).
fn original_bytes(checkout: &Path, f: &FileChange) -> Result<Option<Vec<u8>>, PrError> {
    let placeholder = crate::pins::NON_UTF8_PLACEHOLDER as char;
    if !f.content.contains(placeholder) {
        return Ok(None);
    }
    let path = checkout.join(&f.path);
    let raw = std::fs::read(&path)
        .map_err(|e| PrError::Files(format!("{}: cannot read: {e}", path.display())))?;
    if std::str::from_utf8(&raw).is_ok() {
        return Ok(None);
    }
    let text = crate::pins::text_for_parsing(&raw);
    // the rewrite of the original text keeps its placeholders in order
    let original = text.as_ref();
    restore_bytes(&raw, original, &f.content)
        .map(Some)
        .ok_or_else(|| {
            PrError::Files(format!(
                "{}: changed on disk during the update; not committed",
                path.display()
            ))
        })
}

/// One commit on `base_sha` with the group's files; returns its sha.
async fn commit_group<G>(
    job: &PrJob<'_, G>,
    group: &UpdateGroup,
    base_sha: &str,
    base_tree: &str,
) -> Result<String, PrError> {
    let mut entries: Vec<TreeEntry> = Vec::with_capacity(group.files.len());
    for f in &group.files {
        match original_bytes(&job.checkout, f)? {
            // bytes outside UTF-8 (in comments) are committed as they are in the checkout
            Some(bytes) => {
                let sha = job.gh.create_blob(&job.repo, &bytes).await?;
                entries.push(TreeEntry::file_with_blob(f.path.clone(), sha));
            }
            None => entries.push(TreeEntry::file_with_content(
                f.path.clone(),
                f.content.clone(),
            )),
        }
    }
    let tree = job
        .gh
        .create_tree(&job.repo, Some(base_tree), &entries)
        .await?;
    let files: Vec<String> = group
        .files
        .iter()
        .map(|f| format!("- {}", f.path))
        .collect();
    let message = format!("{}\n\n{}\n", group.title(), files.join("\n"));
    let commit = job
        .gh
        .create_commit(&job.repo, &message, &tree.sha, &[base_sha.to_string()])
        .await?;
    Ok(commit.sha)
}

async fn open_pr<G>(
    job: &PrJob<'_, G>,
    group: &UpdateGroup,
    base_branch: &str,
    base_sha: &str,
    base_tree: &str,
) -> Result<u64, PrError> {
    let gh = job.gh;
    let repo = &job.repo;
    let config = &job.config;
    let head = commit_group(job, group, base_sha, base_tree).await?;
    let branch = group.branch(&config.branch_prefix);
    match gh.git_ref(repo, &format!("heads/{branch}")).await? {
        Some(_) => {
            gh.update_ref(repo, &format!("heads/{branch}"), &head, true)
                .await?;
        }
        None => {
            gh.create_ref(repo, &format!("refs/heads/{branch}"), &head)
                .await?;
        }
    }
    let marker = PrMarker {
        base: Some(base_sha.to_string()),
        head: Some(head),
        ..group.marker()
    };
    let pr = gh
        .create_pull(
            repo,
            &NewPullRequest {
                title: group.title(),
                head: branch,
                base: base_branch.to_string(),
                body: group.body_with(&marker),
                draft: false,
                maintainer_can_modify: true,
            },
        )
        .await?;
    if !config.labels.is_empty() {
        gh.add_labels(repo, pr.number, &config.labels).await?;
    }
    if !config.reviewers.is_empty() || !config.team_reviewers.is_empty() {
        gh.request_reviewers(repo, pr.number, &config.reviewers, &config.team_reviewers)
            .await?;
    }
    Ok(pr.number)
}
