//! One bump, as `opsbot tfupdate terraform|provider|module` runs it: find the version
//! (explicit, or the latest stable release), then rewrite the tree.

use std::path::PathBuf;

use crate::constraint::{Constraint, ConstraintError, TfVersion, VersionError};
use crate::release::{GithubReleases, OPENTOFU_REPO, Release, ReleaseError, Releases};
use crate::rewrite::{Setting, Target};
use crate::walk::{Dialect, FileError, TreeUpdate, WalkOptions, update_tree_with};

/// How to bump.
#[derive(Debug, Clone)]
pub struct BumpOptions {
    pub path: PathBuf,
    pub walk: WalkOptions,
    /// `-v`: the version to set, or a constraint (`"~> 1.0"`, `">= 4.0, < 6.0"`) written
    /// as given, as tfupdate does; `None` or `latest` for the latest release.
    pub version: Option<String>,
    /// Consider pre-releases when looking for the latest release.
    pub pre_release: bool,
    /// Report, do not write.
    pub dry_run: bool,
    /// GitHub repository whose releases are Terraform's (`hashicorp/terraform` or
    /// `opentofu/opentofu`).
    pub core_repo: String,
}

/// Errors that stop a bump before any file is touched.
#[derive(Debug, thiserror::Error)]
pub enum BumpError {
    #[error(transparent)]
    Version(#[from] VersionError),
    #[error(transparent)]
    Constraint(#[from] ConstraintError),
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Files(#[from] FileError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The version used and what changed.
#[derive(Debug, Clone)]
pub struct BumpResult {
    /// The version set; for a constraint, the version its first clause names.
    pub release: Release,
    /// The `-v` constraint written as given, when `-v` was one.
    pub constraint: Option<String>,
    pub update: TreeUpdate,
}

impl BumpResult {
    /// What the pins were set to: the constraint, else the version.
    pub fn value(&self) -> String {
        self.constraint
            .clone()
            .unwrap_or_else(|| self.release.version.to_string())
    }
}

/// A `-v` value that is a constraint rather than one version: it has an operator or
/// several clauses. `None` for a version (`1.2.3`, `v1.2.3`, `= 1.2.3` is a version too:
/// the exact pin of it).
pub fn constraint_value(value: &str) -> Result<Option<Constraint>, ConstraintError> {
    let v = value.trim();
    if TfVersion::parse(v).is_ok() {
        return Ok(None);
    }
    Constraint::parse(v).map(Some)
}

/// The files a target's tool reads: `opsbot tfupdate opentofu` bumps `required_version`
/// in what OpenTofu reads, `terraform` in what Terraform reads; providers and modules
/// serve both.
pub fn dialect_for(target: &Target, core_repo: &str) -> Dialect {
    match target {
        Target::Terraform if core_repo.eq_ignore_ascii_case(OPENTOFU_REPO) => Dialect::OpenTofu,
        Target::Terraform => Dialect::Terraform,
        _ => Dialect::Any,
    }
}

fn requested(opts: &BumpOptions) -> Option<&str> {
    opts.version
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.eq_ignore_ascii_case("latest"))
}

/// Finds the version for `target` (explicit or latest) without touching files.
pub async fn resolve_version<G: GithubReleases>(
    releases: &Releases<G>,
    target: &Target,
    opts: &BumpOptions,
) -> Result<Release, BumpError> {
    match requested(opts) {
        Some(v) => Ok(Release {
            version: match constraint_value(v)? {
                Some(c) => c
                    .clauses
                    .first()
                    .map(|cl| cl.version.clone())
                    .ok_or_else(|| BumpError::Internal(format!("empty constraint `{v}`")))?,
                None => TfVersion::parse(v)?,
            },
            notes_url: String::new(),
        }),
        None => {
            let source = Releases::<G>::source_for(target, &opts.core_repo)?;
            Ok(releases.latest(&source, opts.pre_release).await?)
        }
    }
}

/// Resolves the version, then rewrites every matching pin under `opts.path`.
pub async fn bump<G: GithubReleases>(
    releases: &Releases<G>,
    target: &Target,
    opts: &BumpOptions,
) -> Result<BumpResult, BumpError> {
    let release = resolve_version(releases, target, opts).await?;
    let constraint = match requested(opts) {
        Some(v) => constraint_value(v)?.map(|_| v.to_string()),
        None => None,
    };
    let (path, walk, target2, version, dry_run) = (
        opts.path.clone(),
        opts.walk.clone(),
        target.clone(),
        release.version.clone(),
        opts.dry_run,
    );
    let dialect = dialect_for(target, &opts.core_repo);
    let constraint2 = constraint.clone();
    let update = tokio::task::spawn_blocking(move || {
        let setting = match &constraint2 {
            Some(c) => Setting::Constraint(c),
            None => Setting::Version(&version),
        };
        update_tree_with(&path, &walk, dialect, &target2, setting, dry_run)
    })
    .await
    .map_err(|e| BumpError::Internal(e.to_string()))??;
    Ok(BumpResult {
        release,
        constraint,
        update,
    })
}
