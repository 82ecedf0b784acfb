//! Where new versions come from: the Terraform registry for providers and modules, GitHub
//! releases for Terraform / OpenTofu themselves (and git-sourced modules on GitHub).
//!
//! GitHub is reached through the [`GithubReleases`] port, implemented on top of the
//! opsbot-core GitHub client, so this crate never has a GitHub client of its own.

use std::future::Future;
use std::sync::Arc;

use crate::constraint::TfVersion;
use crate::module_source::{ModuleAddress, normalize};
use crate::pins::ProviderAddress;
use crate::registry::{RegistryClient, RegistryError};
use crate::rewrite::Target;

/// The GitHub repository of Terraform.
pub const TERRAFORM_REPO: &str = "hashicorp/terraform";
/// The GitHub repository of OpenTofu.
pub const OPENTOFU_REPO: &str = "opentofu/opentofu";

/// One GitHub release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubRelease {
    pub tag: String,
    /// The release's title (may be empty).
    pub name: String,
    pub prerelease: bool,
    pub draft: bool,
    pub html_url: String,
    /// The release notes (Markdown; may be empty).
    pub body: String,
}

/// Lists a repository's releases (all pages).
pub trait GithubReleases: Send + Sync {
    fn releases(
        &self,
        owner: &str,
        repo: &str,
    ) -> impl Future<Output = Result<Vec<GithubRelease>, String>> + Send;
}

/// No GitHub access: every lookup fails with a message saying so.
#[derive(Debug, Clone, Default)]
pub struct NoGithub;

impl GithubReleases for NoGithub {
    async fn releases(&self, owner: &str, repo: &str) -> Result<Vec<GithubRelease>, String> {
        Err(format!(
            "cannot list releases of {owner}/{repo}: no GitHub access configured (set GITHUB_TOKEN)"
        ))
    }
}

/// Errors finding versions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{0}")]
    Github(String),
    #[error("{what}: no {kind} release found")]
    NoRelease { what: String, kind: &'static str },
    #[error(
        "cannot look up versions of `{0}`: not a registry module or a GitHub repository (pass -v VERSION)"
    )]
    UnknownSource(String),
    #[error("invalid source `{0}`")]
    BadSource(String),
}

/// A version with where to read about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub version: TfVersion,
    /// Release notes or changelog.
    pub notes_url: String,
}

/// What `opsbot tfupdate release` looks up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseSource {
    Github { owner: String, repo: String },
    Provider(ProviderAddress),
    Module(ModuleAddress),
}

/// tfupdate's `--source-type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceType {
    Github,
    TfregistryProvider,
    TfregistryModule,
}

impl ReleaseSource {
    /// Parses SOURCE; without an explicit type, `hashicorp/terraform` and
    /// `opentofu/opentofu` are GitHub repositories, other `NS/NAME` are providers and
    /// `NS/NAME/SYSTEM` are modules.
    pub fn parse(text: &str, kind: Option<SourceType>) -> Result<ReleaseSource, ReleaseError> {
        let bad = || ReleaseError::BadSource(text.to_string());
        let github = || {
            let (owner, repo) = text.trim().split_once('/').ok_or_else(bad)?;
            if owner.is_empty() || repo.is_empty() || repo.contains('/') {
                return Err(bad());
            }
            Ok(ReleaseSource::Github {
                owner: owner.to_string(),
                repo: repo.to_string(),
            })
        };
        match kind {
            Some(SourceType::Github) => github(),
            Some(SourceType::TfregistryProvider) => ProviderAddress::parse(text)
                .filter(|_| text.contains('/'))
                .map(ReleaseSource::Provider)
                .ok_or_else(bad),
            Some(SourceType::TfregistryModule) => ModuleAddress::parse(text)
                .map(ReleaseSource::Module)
                .ok_or_else(bad),
            None => {
                let lower = text.trim().to_ascii_lowercase();
                if lower == TERRAFORM_REPO || lower == OPENTOFU_REPO {
                    return github();
                }
                if let Some(m) = ModuleAddress::parse(text) {
                    return Ok(ReleaseSource::Module(m));
                }
                match text.split('/').count() {
                    2 | 3 => ProviderAddress::parse(text)
                        .map(ReleaseSource::Provider)
                        .ok_or_else(bad),
                    _ => Err(bad()),
                }
            }
        }
    }
}

/// Looks up versions from the registry and GitHub.
#[derive(Debug)]
pub struct Releases<G> {
    pub registry: Arc<RegistryClient>,
    pub github: G,
}

fn github_versions(releases: &[GithubRelease]) -> Vec<(TfVersion, String)> {
    releases
        .iter()
        .filter(|r| !r.draft)
        .filter_map(|r| {
            let v = TfVersion::parse(&r.tag).ok()?;
            // a release GitHub flags as a pre-release is never offered as stable
            (!r.prerelease || v.is_prerelease()).then(|| (v, r.html_url.clone()))
        })
        .collect()
}

impl<G: GithubReleases> Releases<G> {
    /// All versions of `source`, newest first, stable only unless `pre_release`.
    pub async fn list(
        &self,
        source: &ReleaseSource,
        pre_release: bool,
    ) -> Result<Vec<Release>, ReleaseError> {
        let mut out: Vec<Release> = match source {
            ReleaseSource::Github { owner, repo } => {
                let releases = self
                    .github
                    .releases(owner, repo)
                    .await
                    .map_err(ReleaseError::Github)?;
                github_versions(&releases)
                    .into_iter()
                    .map(|(version, notes_url)| Release { version, notes_url })
                    .collect()
            }
            ReleaseSource::Provider(address) => {
                let releases = self.registry.provider_versions(address).await?;
                releases
                    .iter()
                    .map(|r| Release {
                        notes_url: provider_notes_url(address, &r.version),
                        version: r.version.clone(),
                    })
                    .collect()
            }
            ReleaseSource::Module(address) => {
                let versions = self.registry.module_versions(address).await?;
                versions
                    .iter()
                    .map(|v| Release {
                        notes_url: module_notes_url(address, v),
                        version: v.clone(),
                    })
                    .collect()
            }
        };
        out.retain(|r| pre_release || !r.version.is_prerelease());
        out.sort_by(|a, b| b.version.cmp(&a.version));
        out.dedup_by(|a, b| a.version == b.version);
        Ok(out)
    }

    /// The newest version of `source`.
    pub async fn latest(
        &self,
        source: &ReleaseSource,
        pre_release: bool,
    ) -> Result<Release, ReleaseError> {
        self.list(source, pre_release)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ReleaseError::NoRelease {
                what: describe(source),
                kind: if pre_release { "" } else { "stable" },
            })
    }

    /// The source of new versions for a bump target. `core_repo` is the GitHub
    /// repository of Terraform itself (or OpenTofu).
    pub fn source_for(target: &Target, core_repo: &str) -> Result<ReleaseSource, ReleaseError> {
        match target {
            Target::Terraform => ReleaseSource::parse(core_repo, Some(SourceType::Github)),
            Target::Provider(spec) => Ok(ReleaseSource::Provider(spec.address())),
            Target::Module { source, .. } => {
                if let Some(m) = ModuleAddress::parse(source) {
                    return Ok(ReleaseSource::Module(m));
                }
                let n = normalize(source);
                let parts: Vec<&str> = n.split('/').collect();
                match parts.as_slice() {
                    ["github.com", owner, repo] => Ok(ReleaseSource::Github {
                        owner: owner.to_string(),
                        repo: repo.to_string(),
                    }),
                    _ => Err(ReleaseError::UnknownSource(source.clone())),
                }
            }
        }
    }
}

/// The GitHub repository whose releases carry a target's release notes: Terraform's (or
/// OpenTofu's) own, `NS/terraform-provider-NAME` for a provider (or the repository the
/// registry names as its `source`), `NS/terraform-SYSTEM-NAME` for a registry module, the
/// repository itself for a git module on GitHub.
pub fn notes_repo(
    target: &Target,
    core_repo: &str,
    registry_source: Option<&str>,
) -> Option<(String, String)> {
    if let Some(repo) = registry_source.and_then(github_repo_of) {
        return Some(repo);
    }
    match target {
        Target::Terraform => core_repo
            .split_once('/')
            .map(|(o, r)| (o.to_string(), r.to_string())),
        Target::Provider(spec) => {
            let a = spec.address();
            Some((
                a.namespace.clone(),
                format!("terraform-provider-{}", a.name),
            ))
        }
        Target::Module { source, .. } => {
            if let Some(m) = ModuleAddress::parse(source) {
                return Some((
                    m.namespace.clone(),
                    format!("terraform-{}-{}", m.system, m.name),
                ));
            }
            match Releases::<NoGithub>::source_for(target, core_repo).ok()? {
                ReleaseSource::Github { owner, repo } => Some((owner, repo)),
                _ => None,
            }
        }
    }
}

/// `https://github.com/o/r(.git)` → `(o, r)`.
pub fn github_repo_of(url: &str) -> Option<(String, String)> {
    let rest = url
        .trim()
        .trim_start_matches("git::")
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .strip_prefix("github.com/")?;
    let mut parts = rest.trim_end_matches('/').split('/');
    let owner = parts.next().filter(|o| !o.is_empty())?;
    let repo = parts.next()?.trim_end_matches(".git");
    (!repo.is_empty()).then(|| (owner.to_string(), repo.to_string()))
}

/// The notes of the releases after `from` up to `to`, newest first: drafts never,
/// pre-releases only when `to` is one. Without `from`, only `to`'s.
pub fn notes_between(
    releases: &[GithubRelease],
    from: Option<&TfVersion>,
    to: &TfVersion,
) -> Vec<crate::plan::ReleaseNote> {
    let mut out: Vec<(TfVersion, crate::plan::ReleaseNote)> = releases
        .iter()
        .filter(|r| !r.draft)
        .filter_map(|r| {
            let v = TfVersion::parse(&r.tag).ok()?;
            let wanted = match from {
                Some(f) => v > *f && v <= *to,
                None => v == *to,
            };
            let pre_ok = to.is_prerelease() || (!v.is_prerelease() && !r.prerelease);
            (wanted && pre_ok).then(|| {
                let note = crate::plan::ReleaseNote {
                    version: v.as_str().to_string(),
                    title: if r.name.trim().is_empty() {
                        r.tag.clone()
                    } else {
                        r.name.trim().to_string()
                    },
                    url: r.html_url.clone(),
                    body: r.body.clone(),
                };
                (v, note)
            })
        })
        .collect();
    out.sort_by(|a, b| b.0.cmp(&a.0));
    out.dedup_by(|a, b| a.0 == b.0);
    out.into_iter().map(|(_, n)| n).collect()
}

/// `hashicorp/aws`, `hashicorp/terraform (GitHub)`.
pub fn describe(source: &ReleaseSource) -> String {
    match source {
        ReleaseSource::Github { owner, repo } => format!("{owner}/{repo}"),
        ReleaseSource::Provider(a) => format!("provider {a}"),
        ReleaseSource::Module(m) => format!("module {m}"),
    }
}

/// Where a provider version's changes are described. Registry-hosted providers keep
/// their changelog in GitHub releases of `NS/terraform-provider-NAME`, by convention.
pub fn provider_notes_url(address: &ProviderAddress, version: &TfVersion) -> String {
    match &address.host {
        None => format!(
            "https://github.com/{}/terraform-provider-{}/releases/tag/v{}",
            address.namespace, address.name, version
        ),
        Some(host) => format!(
            "https://{host}/providers/{}/{}/{}",
            address.namespace, address.name, version
        ),
    }
}

/// A module version's registry page.
pub fn module_notes_url(address: &ModuleAddress, version: &TfVersion) -> String {
    format!(
        "https://{}/modules/{}/{}/{}/{}",
        address
            .host
            .as_deref()
            .unwrap_or(crate::pins::DEFAULT_REGISTRY_HOST),
        address.namespace,
        address.name,
        address.system,
        version
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_sources() {
        assert_eq!(
            ReleaseSource::parse("hashicorp/terraform", None).unwrap(),
            ReleaseSource::Github {
                owner: "hashicorp".into(),
                repo: "terraform".into()
            }
        );
        assert!(matches!(
            ReleaseSource::parse("opentofu/opentofu", None).unwrap(),
            ReleaseSource::Github { .. }
        ));
        assert!(matches!(
            ReleaseSource::parse("hashicorp/aws", None).unwrap(),
            ReleaseSource::Provider(_)
        ));
        assert!(matches!(
            ReleaseSource::parse("terraform-aws-modules/vpc/aws", None).unwrap(),
            ReleaseSource::Module(_)
        ));
        assert!(matches!(
            ReleaseSource::parse("hashicorp/terraform-provider-aws", Some(SourceType::Github))
                .unwrap(),
            ReleaseSource::Github { .. }
        ));
        assert!(ReleaseSource::parse("aws", Some(SourceType::TfregistryProvider)).is_err());
        assert!(ReleaseSource::parse("a/b/c/d/e", None).is_err());
    }

    #[test]
    fn github_release_versions() {
        let rel = |tag: &str, prerelease: bool, draft: bool| GithubRelease {
            tag: tag.into(),
            prerelease,
            draft,
            html_url: format!("https://github.com/hashicorp/terraform/releases/tag/{tag}"),
            name: String::new(),
            body: String::new(),
        };
        let got = github_versions(&[
            rel("v1.9.8", false, false),
            rel("v1.10.0-beta1", true, false),
            rel("v2.0.0", false, true),
            rel("nightly", false, false),
        ]);
        let names: Vec<&str> = got.iter().map(|(v, _)| v.as_str()).collect();
        assert_eq!(names, ["1.9.8", "1.10.0-beta1"]);
    }

    #[test]
    fn sources_for_targets() {
        type R = Releases<NoGithub>;
        assert_eq!(
            R::source_for(&Target::Terraform, OPENTOFU_REPO).unwrap(),
            ReleaseSource::Github {
                owner: "opentofu".into(),
                repo: "opentofu".into()
            }
        );
        let git = Target::Module {
            source: "git::https://github.com/acme/net.git?ref=v1.0.0".into(),
            git_ref: true,
            regex: None,
        };
        assert_eq!(
            R::source_for(&git, TERRAFORM_REPO).unwrap(),
            ReleaseSource::Github {
                owner: "acme".into(),
                repo: "net".into()
            }
        );
        let other = Target::Module {
            source: "git::https://gitlab.example.com/acme/net.git".into(),
            git_ref: true,
            regex: None,
        };
        assert!(matches!(
            R::source_for(&other, TERRAFORM_REPO),
            Err(ReleaseError::UnknownSource(_))
        ));
    }
}
