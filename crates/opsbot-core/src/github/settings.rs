//! Where GitHub is and who we are there, read from the variables GitHub Actions sets
//! (`GITHUB_API_URL`, `GITHUB_REPOSITORY`, `GITHUB_TOKEN`) plus the App's
//! (`GITHUB_APP_ID`, `GITHUB_APP_PRIVATE_KEY` or `GITHUB_APP_PRIVATE_KEY_PATH`,
//! `GITHUB_APP_INSTALLATION_ID`), so the binaries run unchanged inside Actions.

use std::fmt;
use std::str::FromStr;

use secrecy::SecretString;

use super::retry::RetryPolicy;

/// The public API; GitHub Enterprise Server uses `https://HOST/api/v3`.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoRef {
    pub owner: String,
    pub name: String,
}

impl RepoRef {
    pub fn new(owner: impl Into<String>, name: impl Into<String>) -> Self {
        RepoRef {
            owner: owner.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for RepoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("repository must be `owner/name`, got `{0}`")]
pub struct BadRepoRef(pub String);

impl FromStr for RepoRef {
    type Err = BadRepoRef;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = |part: &str| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        match s.split_once('/') {
            Some((owner, name)) if valid(owner) && valid(name) => Ok(RepoRef::new(owner, name)),
            _ => Err(BadRepoRef(s.to_string())),
        }
    }
}

/// How to authenticate.
#[derive(Clone)]
pub enum Credentials {
    /// A token: `GITHUB_TOKEN` in Actions, a PAT, or an installation token.
    Token(SecretString),
    /// As a GitHub App: a JWT signed with the App's key, exchanged for an installation token.
    App {
        app_id: u64,
        private_key_pem: SecretString,
        /// Looked up from the target repository when not given.
        installation_id: Option<u64>,
    },
    /// No credentials (public data only).
    Anonymous,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Token(_) => f.write_str("Token(***)"),
            Credentials::App {
                app_id,
                installation_id,
                ..
            } => f
                .debug_struct("App")
                .field("app_id", app_id)
                .field("installation_id", installation_id)
                .field("private_key_pem", &"***")
                .finish(),
            Credentials::Anonymous => f.write_str("Anonymous"),
        }
    }
}

/// Everything needed to build a [`super::GitHub`] client.
#[derive(Debug, Clone)]
pub struct GitHubSettings {
    pub api_url: String,
    pub repository: Option<RepoRef>,
    pub credentials: Credentials,
    pub retry: RetryPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("GITHUB_REPOSITORY: {0}")]
    Repository(BadRepoRef),
    #[error("{var}: {message}")]
    Invalid { var: &'static str, message: String },
}

impl GitHubSettings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `get` (testable without touching the real environment).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let api_url = get("GITHUB_API_URL").unwrap_or_else(|| DEFAULT_API_URL.to_string());
        let api_url = api_url.trim_end_matches('/').to_string();
        if !(api_url.starts_with("http://") || api_url.starts_with("https://")) {
            return Err(SettingsError::Invalid {
                var: "GITHUB_API_URL",
                message: format!("must start with http:// or https://, got `{api_url}`"),
            });
        }
        let repository = match get("GITHUB_REPOSITORY") {
            Some(r) => Some(r.trim().parse().map_err(SettingsError::Repository)?),
            None => None,
        };
        let credentials = if let Some(app_id) = get("GITHUB_APP_ID") {
            let app_id = app_id
                .trim()
                .parse::<u64>()
                .map_err(|_| SettingsError::Invalid {
                    var: "GITHUB_APP_ID",
                    message: format!("must be a number, got `{app_id}`"),
                })?;
            let pem = match (
                get("GITHUB_APP_PRIVATE_KEY"),
                get("GITHUB_APP_PRIVATE_KEY_PATH"),
            ) {
                (Some(pem), _) => pem.replace("\\n", "\n"),
                (None, Some(path)) => {
                    std::fs::read_to_string(&path).map_err(|e| SettingsError::Invalid {
                        var: "GITHUB_APP_PRIVATE_KEY_PATH",
                        message: format!("cannot read {path}: {e}"),
                    })?
                }
                (None, None) => {
                    return Err(SettingsError::Invalid {
                        var: "GITHUB_APP_PRIVATE_KEY",
                        message: "GITHUB_APP_ID is set, so the App's private key (PEM) is needed \
                                  in GITHUB_APP_PRIVATE_KEY or GITHUB_APP_PRIVATE_KEY_PATH"
                            .to_string(),
                    });
                }
            };
            if !pem.contains("-----BEGIN") {
                return Err(SettingsError::Invalid {
                    var: "GITHUB_APP_PRIVATE_KEY",
                    message: "is not a PEM private key (no -----BEGIN line)".to_string(),
                });
            }
            let installation_id = match get("GITHUB_APP_INSTALLATION_ID") {
                Some(id) => Some(
                    id.trim()
                        .parse::<u64>()
                        .map_err(|_| SettingsError::Invalid {
                            var: "GITHUB_APP_INSTALLATION_ID",
                            message: format!("must be a number, got `{id}`"),
                        })?,
                ),
                None => None,
            };
            Credentials::App {
                app_id,
                private_key_pem: SecretString::from(pem),
                installation_id,
            }
        } else if let Some(token) = get("GITHUB_TOKEN").or_else(|| get("GH_TOKEN")) {
            Credentials::Token(SecretString::from(token.trim().to_string()))
        } else {
            Credentials::Anonymous
        };
        let retry = RetryPolicy::from_lookup(&get).map_err(|message| SettingsError::Invalid {
            var: "OPSBOT_GITHUB_RETRY_BUDGET_SECS",
            message,
        })?;
        Ok(GitHubSettings {
            api_url,
            repository,
            credentials,
            retry,
        })
    }

    /// The target repository or a clear error saying how to set it.
    pub fn require_repository(&self) -> Result<&RepoRef, SettingsError> {
        self.repository.as_ref().ok_or(SettingsError::Invalid {
            var: "GITHUB_REPOSITORY",
            message: "not set; export GITHUB_REPOSITORY=owner/name".to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn repo_ref_parses_and_rejects() {
        assert_eq!(
            "acme/infra".parse::<RepoRef>().unwrap().to_string(),
            "acme/infra"
        );
        for bad in ["acme", "acme/", "/infra", "a/b/c", "acme/in fra", ""] {
            let err = bad.parse::<RepoRef>().unwrap_err();
            assert!(err.to_string().contains("owner/name"), "{bad}");
        }
    }

    #[test]
    fn defaults_and_enterprise_url() {
        let s = GitHubSettings::from_lookup(lookup(&[])).unwrap();
        assert_eq!(s.api_url, DEFAULT_API_URL);
        assert!(matches!(s.credentials, Credentials::Anonymous));
        let s = GitHubSettings::from_lookup(lookup(&[
            ("GITHUB_API_URL", "https://ghe.example.com/api/v3/"),
            ("GITHUB_TOKEN", "t0k"),
            ("GITHUB_REPOSITORY", "acme/infra"),
        ]))
        .unwrap();
        assert_eq!(s.api_url, "https://ghe.example.com/api/v3");
        assert!(matches!(s.credentials, Credentials::Token(_)));
        assert_eq!(s.repository.unwrap(), RepoRef::new("acme", "infra"));
    }

    #[test]
    fn malformed_repository_names_the_variable() {
        let err =
            GitHubSettings::from_lookup(lookup(&[("GITHUB_REPOSITORY", "acme")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "GITHUB_REPOSITORY: repository must be `owner/name`, got `acme`"
        );
    }

    #[test]
    fn app_needs_a_pem_key_and_never_prints_it() {
        let err = GitHubSettings::from_lookup(lookup(&[("GITHUB_APP_ID", "12")])).unwrap_err();
        assert!(err.to_string().contains("GITHUB_APP_PRIVATE_KEY"));
        let s = GitHubSettings::from_lookup(lookup(&[
            ("GITHUB_APP_ID", "12"),
            (
                "GITHUB_APP_PRIVATE_KEY",
                "-----BEGIN RSA PRIVATE KEY-----\\nSECRETBYTES",
            ),
        ]))
        .unwrap();
        let shown = format!("{:?}", s.credentials);
        assert!(!shown.contains("SECRETBYTES"), "{shown}");
        assert!(shown.contains("app_id: 12"));
    }
}
