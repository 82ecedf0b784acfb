//! One bump, as `opsbot tfupdate terraform|provider|module` runs it: find the version
//! (explicit, or the latest stable release), then rewrite the tree.

use std::path::PathBuf;

use crate::constraint::{TfVersion, VersionError};
use crate::release::{GithubReleases, Release, ReleaseError, Releases};
use crate::rewrite::Target;
use crate::walk::{FileError, TreeUpdate, WalkOptions, update_tree};

/// How to bump.
#[derive(Debug, Clone)]
pub struct BumpOptions {
    pub path: PathBuf,
    pub walk: WalkOptions,
    /// `-v`: the version to set; `None` for the latest release.
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
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Files(#[from] FileError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The version used and what changed.
#[derive(Debug, Clone)]
pub struct BumpResult {
    pub release: Release,
    pub update: TreeUpdate,
}

/// Finds the version for `target` (explicit or latest) without touching files.
pub async fn resolve_version<G: GithubReleases>(
    releases: &Releases<G>,
    target: &Target,
    opts: &BumpOptions,
) -> Result<Release, BumpError> {
    match &opts.version {
        Some(v) => Ok(Release {
            version: TfVersion::parse(v)?,
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
    let (path, walk, target2, version, dry_run) = (
        opts.path.clone(),
        opts.walk.clone(),
        target.clone(),
        release.version.clone(),
        opts.dry_run,
    );
    let update =
        tokio::task::spawn_blocking(move || update_tree(&path, &walk, &target2, &version, dry_run))
            .await
            .map_err(|e| BumpError::Internal(e.to_string()))??;
    Ok(BumpResult { release, update })
}
