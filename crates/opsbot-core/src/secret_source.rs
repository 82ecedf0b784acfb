//! Secrets from AWS Secrets Manager or SSM Parameter Store instead of plain environment
//! variables, fetched once per process (Lambda cold start) and cached.
//!
//! For any variable `NAME` a binary reads (`GITHUB_TOKEN`, `GITHUB_APP_PRIVATE_KEY`,
//! `GITHUB_WEBHOOK_SECRET`…), the value may instead come from:
//!
//! - `NAME_SECRET_ARN`: a Secrets Manager secret (ARN or name), read with `GetSecretValue`;
//!   `ARN#field` takes one field of a JSON secret (`{"token": "…"}`). `SecretBinary` is
//!   accepted when it is UTF-8 (a PEM key stored as a file).
//! - `NAME_SSM_PARAMETER`: an SSM parameter name (a `SecureString`), read with
//!   `GetParameter` and `WithDecryption=true`.
//!
//! Setting two of `NAME`, `NAME_SECRET_ARN` and `NAME_SSM_PARAMETER` is an error (which one
//! would win is not obvious to the person reading the configuration). Values are
//! [`SecretString`]s; neither values nor their lengths are logged, and errors name the
//! variable, the API call and the secret's id — never its value.
//!
//! ```no_run
//! # async fn f() -> Result<(), opsbot_core::secret_source::SecretError> {
//! use opsbot_core::secret_source::{self, SecretSource};
//! // GitHub settings with GITHUB_TOKEN / GITHUB_APP_PRIVATE_KEY resolved from AWS:
//! let settings = secret_source::github_settings_from_env().await?;
//! // Any other variable:
//! let source = SecretSource::from_env().await;
//! let env = source
//!     .resolve(&["GITHUB_WEBHOOK_SECRET"], |k| std::env::var(k).ok())
//!     .await?;
//! let webhook_secret = env.get("GITHUB_WEBHOOK_SECRET");
//! # Ok(()) }
//! ```
//!
//! The cache is process-wide and keyed by the secret reference: a second [`SecretSource`]
//! (or a second `resolve`) asks AWS again only for references it has not seen. A rotated
//! secret is therefore picked up by the next cold start, as with any Lambda configuration.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, OnceLock};

use aws_config::{BehaviorVersion, SdkConfig};
use secrecy::{ExposeSecret, SecretString};
use tracing::info;

use crate::github::{GitHubSettings, SettingsError};

/// Suffix naming a Secrets Manager secret that holds the variable's value.
pub const SECRET_ARN_SUFFIX: &str = "_SECRET_ARN";
/// Suffix naming an SSM parameter (SecureString) that holds the variable's value.
pub const SSM_PARAMETER_SUFFIX: &str = "_SSM_PARAMETER";

/// The variables [`github_settings_from_env`] resolves.
pub const GITHUB_SECRET_VARS: [&str; 2] = ["GITHUB_TOKEN", "GITHUB_APP_PRIVATE_KEY"];

/// Where a secret lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretRef {
    /// A Secrets Manager secret id (ARN or name), optionally one field of its JSON value.
    SecretsManager {
        id: String,
        json_key: Option<String>,
    },
    /// An SSM parameter name (decrypted when it is a SecureString).
    SsmParameter { name: String },
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::SecretsManager { id, json_key: None } => write!(f, "secret {id}"),
            SecretRef::SecretsManager {
                id,
                json_key: Some(k),
            } => write!(f, "secret {id} (field `{k}`)"),
            SecretRef::SsmParameter { name } => write!(f, "SSM parameter {name}"),
        }
    }
}

impl SecretRef {
    /// The reference configured for `var` (through `VAR_SECRET_ARN` or `VAR_SSM_PARAMETER`),
    /// `None` when neither is set. Blank values count as unset.
    pub fn for_var(
        var: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<SecretRef>, SecretError> {
        let get = |k: &str| {
            lookup(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let arn_var = format!("{var}{SECRET_ARN_SUFFIX}");
        let ssm_var = format!("{var}{SSM_PARAMETER_SUFFIX}");
        let set: Vec<String> = [var.to_string(), arn_var.clone(), ssm_var.clone()]
            .into_iter()
            .filter(|k| get(k).is_some())
            .collect();
        if set.len() > 1 {
            return Err(SecretError::Conflict {
                var: var.to_string(),
                set,
            });
        }
        if let Some(arn) = get(&arn_var) {
            let (id, json_key) = match arn.split_once('#') {
                Some((id, key)) if !key.is_empty() => (id.to_string(), Some(key.to_string())),
                _ => (arn.trim_end_matches('#').to_string(), None),
            };
            return Ok(Some(SecretRef::SecretsManager { id, json_key }));
        }
        Ok(get(&ssm_var).map(|name| SecretRef::SsmParameter { name }))
    }
}

/// A secret that could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{var}: set only one of {}", set.join(", "))]
    Conflict { var: String, set: Vec<String> },
    #[error("{var}: {call} {reference}: {message}")]
    Fetch {
        var: String,
        /// `Secrets Manager GetSecretValue` or `SSM GetParameter`.
        call: &'static str,
        reference: String,
        message: String,
    },
    #[error(transparent)]
    Settings(#[from] SettingsError),
}

/// Resolved values, overlaid on another lookup (normally the process environment).
pub struct ResolvedEnv<L> {
    values: HashMap<String, SecretString>,
    fallback: L,
}

impl<L> fmt::Debug for ResolvedEnv<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.values.keys().collect();
        names.sort();
        f.debug_struct("ResolvedEnv")
            .field("resolved", &names)
            .finish_non_exhaustive()
    }
}

impl<L: Fn(&str) -> Option<String>> ResolvedEnv<L> {
    /// The resolved secret for `var`, else the fallback's value. (Exposes the secret: pass
    /// it straight into a `SecretString`-holding setting.)
    pub fn get(&self, var: &str) -> Option<String> {
        match self.values.get(var) {
            Some(v) => Some(v.expose_secret().to_string()),
            None => (self.fallback)(var),
        }
    }

    /// The secret itself, when `var` was resolved from AWS.
    pub fn secret(&self, var: &str) -> Option<&SecretString> {
        self.values.get(var)
    }

    /// Names of the variables resolved from AWS.
    pub fn resolved(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
}

fn cache() -> &'static Mutex<HashMap<SecretRef, SecretString>> {
    static CACHE: OnceLock<Mutex<HashMap<SecretRef, SecretString>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn cached(r: &SecretRef) -> Option<SecretString> {
    cache()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(r)
        .cloned()
}

/// Fetches secrets with the AWS SDK (standard configuration chain: region, credentials and
/// `AWS_ENDPOINT_URL_SECRETS_MANAGER` / `AWS_ENDPOINT_URL_SSM` / `AWS_ENDPOINT_URL`).
/// Clients are built lazily, so a process that needs no secret makes no AWS call.
#[derive(Debug, Clone)]
pub struct SecretSource {
    config: SdkConfig,
}

impl SecretSource {
    /// From the standard AWS configuration chain.
    pub async fn from_env() -> SecretSource {
        SecretSource::new(&aws_config::defaults(BehaviorVersion::latest()).load().await)
    }

    /// From a given AWS configuration (tests point it at moto).
    pub fn new(config: &SdkConfig) -> SecretSource {
        SecretSource {
            config: config.clone(),
        }
    }

    /// Resolves every `vars` entry that has a `_SECRET_ARN` / `_SSM_PARAMETER` companion in
    /// `lookup`; other variables are read from `lookup` unchanged.
    pub async fn resolve<L: Fn(&str) -> Option<String>>(
        &self,
        vars: &[&str],
        lookup: L,
    ) -> Result<ResolvedEnv<L>, SecretError> {
        let mut values = HashMap::new();
        for var in vars {
            if let Some(reference) = SecretRef::for_var(var, &lookup)? {
                let value = self.fetch(var, &reference).await?;
                values.insert((*var).to_string(), value);
            }
        }
        Ok(ResolvedEnv {
            values,
            fallback: lookup,
        })
    }

    /// One secret, from the process-wide cache or from AWS. `var` only names it in errors.
    pub async fn fetch(
        &self,
        var: &str,
        reference: &SecretRef,
    ) -> Result<SecretString, SecretError> {
        if let Some(hit) = cached(reference) {
            return Ok(hit);
        }
        let started = std::time::Instant::now();
        let value = match reference {
            SecretRef::SecretsManager { id, json_key } => {
                self.secrets_manager(var, reference, id, json_key.as_deref())
                    .await?
            }
            SecretRef::SsmParameter { name } => self.ssm(var, reference, name).await?,
        };
        info!(
            var,
            source = %reference,
            ms = started.elapsed().as_millis() as u64,
            "secret fetched"
        );
        cache()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(reference.clone(), value.clone());
        Ok(value)
    }

    async fn secrets_manager(
        &self,
        var: &str,
        reference: &SecretRef,
        id: &str,
        json_key: Option<&str>,
    ) -> Result<SecretString, SecretError> {
        let fail = |message: String| SecretError::Fetch {
            var: var.to_string(),
            call: "Secrets Manager GetSecretValue",
            reference: reference.to_string(),
            message,
        };
        let client = aws_sdk_secretsmanager::Client::new(&self.config);
        let out = client
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| fail(crate::aws_error::message(&e)))?;
        let text = match (out.secret_string(), out.secret_binary()) {
            (Some(s), _) => s.to_string(),
            (None, Some(b)) => String::from_utf8(b.as_ref().to_vec())
                .map_err(|_| fail("SecretBinary is not UTF-8 text".into()))?,
            (None, None) => return Err(fail("the secret has no value".into())),
        };
        let text = match json_key {
            None => text,
            Some(key) => {
                let doc: serde_json::Value = serde_json::from_str(&text).map_err(|_| {
                    fail(format!(
                        "field `{key}` asked for, but the secret is not a JSON object"
                    ))
                })?;
                match doc.get(key) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(_) => return Err(fail(format!("field `{key}` is not a string"))),
                    None => return Err(fail(format!("the JSON secret has no field `{key}`"))),
                }
            }
        };
        non_empty(text).ok_or_else(|| fail("the value is empty".into()))
    }

    async fn ssm(
        &self,
        var: &str,
        reference: &SecretRef,
        name: &str,
    ) -> Result<SecretString, SecretError> {
        let fail = |message: String| SecretError::Fetch {
            var: var.to_string(),
            call: "SSM GetParameter",
            reference: reference.to_string(),
            message,
        };
        let client = aws_sdk_ssm::Client::new(&self.config);
        let out = client
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| fail(crate::aws_error::message(&e)))?;
        let text = out
            .parameter()
            .and_then(|p| p.value())
            .map(str::to_string)
            .ok_or_else(|| fail("the parameter has no value".into()))?;
        non_empty(text).ok_or_else(|| fail("the value is empty".into()))
    }
}

fn non_empty(text: String) -> Option<SecretString> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        None
    } else {
        Some(SecretString::from(trimmed.to_string()))
    }
}

/// [`GitHubSettings::from_env`] with `GITHUB_TOKEN` and `GITHUB_APP_PRIVATE_KEY` resolvable
/// from Secrets Manager / SSM (see the module docs). Makes no AWS call when neither
/// `…_SECRET_ARN` nor `…_SSM_PARAMETER` is set.
pub async fn github_settings_from_env() -> Result<GitHubSettings, SecretError> {
    let env = |k: &str| std::env::var(k).ok();
    let wanted = GITHUB_SECRET_VARS
        .iter()
        .map(|v| SecretRef::for_var(v, env))
        .collect::<Result<Vec<_>, _>>()?;
    if wanted.iter().all(Option::is_none) {
        return Ok(GitHubSettings::from_env()?);
    }
    let source = SecretSource::from_env().await;
    github_settings_with(&source, env).await
}

/// [`github_settings_from_env`] over any lookup and source (for tests and other callers).
pub async fn github_settings_with<L: Fn(&str) -> Option<String>>(
    source: &SecretSource,
    lookup: L,
) -> Result<GitHubSettings, SecretError> {
    let env = source.resolve(&GITHUB_SECRET_VARS, lookup).await?;
    Ok(GitHubSettings::from_lookup(|k| env.get(k))?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn lookup(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn references_from_companion_variables() {
        assert_eq!(
            SecretRef::for_var("GITHUB_TOKEN", lookup(&[])).unwrap(),
            None
        );
        assert_eq!(
            SecretRef::for_var(
                "GITHUB_TOKEN",
                lookup(&[(
                    "GITHUB_TOKEN_SECRET_ARN",
                    "arn:aws:secretsmanager:us-east-1:1:secret:gh#token"
                )])
            )
            .unwrap(),
            Some(SecretRef::SecretsManager {
                id: "arn:aws:secretsmanager:us-east-1:1:secret:gh".into(),
                json_key: Some("token".into())
            })
        );
        assert_eq!(
            SecretRef::for_var(
                "GITHUB_APP_PRIVATE_KEY",
                lookup(&[
                    ("GITHUB_APP_PRIVATE_KEY_SSM_PARAMETER", "/opsbot/key"),
                    ("GITHUB_TOKEN", "x")
                ])
            )
            .unwrap(),
            Some(SecretRef::SsmParameter {
                name: "/opsbot/key".into()
            })
        );
        // Blank counts as unset.
        assert_eq!(
            SecretRef::for_var(
                "GITHUB_TOKEN",
                lookup(&[("GITHUB_TOKEN_SSM_PARAMETER", "  ")])
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn two_sources_for_one_variable_is_an_error_without_values() {
        let err = SecretRef::for_var(
            "GITHUB_TOKEN",
            lookup(&[
                ("GITHUB_TOKEN", "ghp_plainvalue"),
                ("GITHUB_TOKEN_SECRET_ARN", "gh"),
            ]),
        )
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(
            text,
            "GITHUB_TOKEN: set only one of GITHUB_TOKEN, GITHUB_TOKEN_SECRET_ARN"
        );
        assert!(!text.contains("ghp_plainvalue"));
    }
}
