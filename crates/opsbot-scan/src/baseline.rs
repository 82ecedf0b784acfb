//! Baselines: findings a repository has accepted (by fingerprint), so the scanner can be
//! adopted without fixing history. The file is JSON; the `--format json` output is also
//! accepted as a baseline.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::finding::{Finding, Fingerprint};

/// One accepted finding. Only `fingerprint` matters for matching; the rest helps reviewers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaselineEntry {
    pub fingerprint: String,
    #[serde(default)]
    pub rule_id: String,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub line: u32,
    /// Masked secret.
    #[serde(default)]
    pub secret: String,
}

/// A baseline file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    pub version: u32,
    pub findings: Vec<BaselineEntry>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum BaselineFile {
    Baseline(Baseline),
    Findings(Vec<BaselineEntry>),
}

impl Baseline {
    pub fn from_findings(findings: &[Finding]) -> Self {
        let mut seen = HashSet::new();
        let mut entries: Vec<BaselineEntry> = findings
            .iter()
            .filter(|f| seen.insert(f.fingerprint))
            .map(|f| BaselineEntry {
                fingerprint: f.fingerprint.to_string(),
                rule_id: f.rule_id().to_string(),
                path: f.path.to_string(),
                line: f.line,
                secret: f.secret.to_string(),
            })
            .collect();
        entries.sort_by(|a, b| (&a.path, a.line, &a.rule_id).cmp(&(&b.path, b.line, &b.rule_id)));
        Baseline {
            version: 1,
            findings: entries,
        }
    }

    /// Parses a baseline (or a `--format json` findings array).
    pub fn parse(text: &str) -> Result<Self, String> {
        match serde_json::from_str::<BaselineFile>(text) {
            Ok(BaselineFile::Baseline(b)) => Ok(b),
            Ok(BaselineFile::Findings(findings)) => Ok(Baseline {
                version: 1,
                findings,
            }),
            Err(_) => {
                // Report the error of the documented format.
                let err = serde_json::from_str::<Baseline>(text)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "not a baseline".to_owned());
                Err(format!("not a valid baseline: {err}"))
            }
        }
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Drops findings whose fingerprint is in the baseline; returns how many were dropped.
    pub fn filter(&self, findings: &mut Vec<Finding>) -> usize {
        // An entry that is not 32 hex digits matches no finding.
        let known: HashSet<Fingerprint> = self
            .findings
            .iter()
            .filter_map(|e| Fingerprint::from_hex(&e.fingerprint))
            .collect();
        let before = findings.len();
        findings.retain(|f| !known.contains(&f.fingerprint));
        before - findings.len()
    }
}
