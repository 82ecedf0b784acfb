//! The `[scan]` table of `opsbot.toml`: extra rules, disabled rules, allowlists, limits.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::rule::{RuleError, RuleFile, RuleSet, RuleSpec};

/// Default `max_file_size`: larger files are skipped (with a note) unless raised.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 10 * 1024 * 1024;

/// `[scan]` in opsbot.toml.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScanConfig {
    /// Directories of extra `*.toml` rule files (relative to the config file).
    #[serde(default)]
    pub rules_dirs: Vec<PathBuf>,
    /// Rule ids to turn off.
    #[serde(default)]
    pub disable: Vec<String>,
    /// Regexes: a secret matching one of them is never reported.
    #[serde(default)]
    pub allowlist: Vec<String>,
    /// Regexes on the path (with `/` separators): matching files are not scanned.
    #[serde(default)]
    pub allow_paths: Vec<String>,
    /// Skip files larger than this (`"10M"`, `"512K"`, `"1G"` or bytes; `0` = no limit).
    #[serde(default)]
    pub max_file_size: Option<SizeValue>,
    /// Baseline file used when `--baseline` is not given.
    #[serde(default)]
    pub baseline: Option<PathBuf>,
    /// Extra rules written inline as `[[scan.rules]]`.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

/// A size given as a number of bytes or a string with a K/M/G suffix.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(u64),
    Text(String),
}

impl SizeValue {
    pub fn bytes(&self) -> Result<u64, String> {
        match self {
            SizeValue::Bytes(b) => Ok(*b),
            SizeValue::Text(t) => parse_size(t),
        }
    }
}

/// Parses `"10M"`, `"512k"`, `"1G"`, `"2048"` (binary units).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'B' => 1,
                _ => return Err(format!("invalid size {text:?}: unknown unit {c:?}")),
            };
            (&t[..i], mult)
        }
        _ => (t, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid size {text:?}: expected e.g. 10M, 512K or a byte count"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("invalid size {text:?}: too large"))
}

impl ScanConfig {
    /// Parses the `[scan]` table out of a whole opsbot.toml (other tables are ignored).
    pub fn from_opsbot_toml(text: &str) -> Result<Self, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        match table.get("scan") {
            None => Ok(Self::default()),
            Some(value) => value
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| format!("[scan]: {e}")),
        }
    }

    /// Adds this config's inline rules and allowlist to `set` (rule directories are read by
    /// the caller, see [`crate::source::load_rules_dir`]).
    pub fn apply_inline(&self, origin: &str, set: &mut RuleSet) -> Result<(), RuleError> {
        if !self.rules.is_empty() {
            set.add_parsed(
                origin,
                RuleFile {
                    rules: self.rules.clone(),
                    ..RuleFile::default()
                },
                true,
            )?;
        }
        for a in &self.allowlist {
            set.add_global_allowlist(origin, a)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("7"), Ok(7));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5X").is_err());
    }

    #[test]
    fn scan_table_is_read_and_others_ignored() {
        let cfg = ScanConfig::from_opsbot_toml(
            "[tfupdate]\nx = 1\n[scan]\ndisable = [\"jwt\"]\nmax_file_size = \"1M\"\n",
        );
        let cfg = match cfg {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(cfg.disable, vec!["jwt".to_owned()]);
        assert_eq!(cfg.max_file_size.map(|s| s.bytes()), Some(Ok(1 << 20)));
        assert!(ScanConfig::from_opsbot_toml("[scan]\nbogus = 1\n").is_err());
    }
}
