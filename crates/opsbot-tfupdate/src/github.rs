//! The GitHub side, through opsbot-core's client (the only GitHub client): release
//! listings for [`GithubReleases`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use opsbot_core::github::GitHub;
use opsbot_core::{GitHubSettings, RepoRef};
use tokio::sync::OnceCell;

use crate::release::{GithubRelease, GithubReleases};

/// GitHub releases via the core client. The client is connected on first use, so bumps
/// with `-v` never touch GitHub, and a bad configuration is reported only when needed.
/// Each repository's releases are listed once per run (versions and release notes).
#[derive(Debug)]
pub struct CoreGithub {
    settings: Result<GitHubSettings, String>,
    client: OnceCell<Result<GitHub, String>>,
    listed: Mutex<HashMap<String, Listing>>,
}

type Listing = Arc<OnceCell<Result<Vec<GithubRelease>, String>>>;

impl CoreGithub {
    /// With an already connected client.
    pub fn new(client: GitHub) -> CoreGithub {
        CoreGithub {
            settings: Err("unused".to_string()),
            client: OnceCell::new_with(Some(Ok(client))),
            listed: Mutex::default(),
        }
    }

    /// From settings (connected lazily).
    pub fn from_settings(settings: GitHubSettings) -> CoreGithub {
        CoreGithub {
            settings: Ok(settings),
            client: OnceCell::new(),
            listed: Mutex::default(),
        }
    }

    /// From `GITHUB_API_URL`, `GITHUB_TOKEN` or the App variables.
    pub fn from_env() -> CoreGithub {
        CoreGithub {
            settings: GitHubSettings::from_env().map_err(|e| e.to_string()),
            client: OnceCell::new(),
            listed: Mutex::default(),
        }
    }

    /// The connected client.
    pub async fn client(&self) -> Result<&GitHub, String> {
        let result = self
            .client
            .get_or_init(|| async {
                let settings = self.settings.as_ref().map_err(Clone::clone)?;
                GitHub::connect(settings).await.map_err(|e| e.to_string())
            })
            .await;
        result.as_ref().map_err(Clone::clone)
    }
}

impl GithubReleases for CoreGithub {
    async fn releases(&self, owner: &str, repo: &str) -> Result<Vec<GithubRelease>, String> {
        let cell = {
            let mut map = self
                .listed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            map.entry(format!("{owner}/{repo}").to_ascii_lowercase())
                .or_default()
                .clone()
        };
        cell.get_or_init(|| async {
            let gh = self.client().await?;
            let releases = gh
                .releases(&RepoRef::new(owner, repo))
                .await
                .map_err(|e| e.to_string())?;
            Ok(releases
                .into_iter()
                .map(|r| GithubRelease {
                    tag: r.tag_name,
                    name: r.name.unwrap_or_default(),
                    prerelease: r.prerelease,
                    draft: r.draft,
                    html_url: r.html_url,
                    body: r.body.unwrap_or_default(),
                })
                .collect())
        })
        .await
        .clone()
    }
}
