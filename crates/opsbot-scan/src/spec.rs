//! The TOML format of `rules/*.toml` as serde types. Shared by the crate and its build
//! script (`build.rs` includes this file), which parses the embedded rule files at compile
//! time, so this file uses nothing but `std` and `serde`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How bad a leak of this kind of secret is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A positive example: plain text, or text plus the secret the rule must capture from it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Example {
    Text(String),
    WithSecret { text: String, secret: String },
}

impl Example {
    pub fn text(&self) -> &str {
        match self {
            Example::Text(t) => t,
            Example::WithSecret { text, .. } => text,
        }
    }
    pub fn expected_secret(&self) -> Option<&str> {
        match self {
            Example::Text(_) => None,
            Example::WithSecret { secret, .. } => Some(secret),
        }
    }
}

/// One rule as written in a rules file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Stable identifier, `[a-z0-9-]+`, unique across all loaded rules.
    pub id: String,
    pub description: String,
    /// Rust `regex` syntax (linear time). Matched against bytes; `(?i)` etc. allowed.
    pub regex: String,
    /// Capture group holding the secret. Defaults to 1 when the regex has a group, else 0.
    #[serde(default)]
    pub secret_group: Option<usize>,
    /// Literal keywords (ASCII, matched case-insensitively) that must appear for the regex to run.
    pub keywords: Vec<String>,
    /// Minimum Shannon entropy (bits per byte) of the secret.
    #[serde(default)]
    pub entropy: Option<f64>,
    /// Regexes; a secret matching any of them is not reported.
    #[serde(default)]
    pub allowlist: Vec<String>,
    /// Regexes tested against the whole match (context, e.g. `@localhost`); a match
    /// containing one of them is not reported.
    #[serde(default)]
    pub match_allowlist: Vec<String>,
    /// Regexes the secret must *all* match (e.g. `[0-9]` and `[A-Za-z]`: mixed characters).
    #[serde(default)]
    pub require: Vec<String>,
    /// A keyword-context rule (`password = "…"`): a specific rule matching the same secret
    /// wins over it.
    #[serde(default)]
    pub generic: bool,
    /// Ids of rules this one is a narrower form of (a provider whose key shares Stripe's
    /// `sk_live_` prefix, told apart by the provider's name next to it): where this rule and
    /// one of those match an overlapping secret, only this one is reported.
    #[serde(default)]
    pub refines: Vec<String>,
    pub severity: Severity,
    /// The match may span lines (private keys): the regex sees up to 16 KiB after the keyword.
    #[serde(default)]
    pub multiline: bool,
    /// Where to read about this kind of credential (first one is used as the SARIF help URI).
    #[serde(default)]
    pub references: Vec<String>,
    #[serde(default)]
    pub examples: Vec<Example>,
    #[serde(default)]
    pub negative_examples: Vec<String>,
}

/// The `[global]` table of a rule file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalSpec {
    /// Regexes tested against the secret of every rule.
    #[serde(default)]
    pub allowlist: Vec<String>,
    /// Regexes tested against the whole match of every rule (context such as `@test.com`).
    #[serde(default)]
    pub match_allowlist: Vec<String>,
}

/// A whole rule file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    #[serde(default)]
    pub global: Option<GlobalSpec>,
    /// Applies to every rule of this file.
    #[serde(default)]
    pub allowlist: Vec<String>,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}
