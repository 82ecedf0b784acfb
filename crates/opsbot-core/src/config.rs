//! `opsbot.toml`: one file, one table per job (`[github]`, `[scan]`, `[health]`,
//! `[tfupdate]`, `[app]`). This module knows only the file's outline; each job owns the
//! shape of its own table and deserializes it with [`Config::section`], so the core never
//! depends on a job crate.
//!
//! Environment overrides: `OPSBOT__<TABLE>__<KEY>=value` sets `<table>.<key>` (nested keys
//! with more `__`). The value is read as a TOML value when it parses as one (`42`, `true`,
//! `["a","b"]`) and as a plain string otherwise.
//!
//! Errors name the file and, for syntax, the line and column; for a wrong value, the full
//! key path (`health.routes[1].repo`).

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// The tables `opsbot.toml` may have. Anything else is a typo and is reported as such.
pub const KNOWN_TABLES: &[&str] = &["github", "scan", "health", "tfupdate", "app"];

/// Environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "OPSBOT__";

/// The default file name looked up in the working directory.
pub const DEFAULT_FILE: &str = "opsbot.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: invalid TOML: {message}")]
    Syntax {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: unknown table [{table}] (known: {known})")]
    UnknownTable {
        path: String,
        table: String,
        known: String,
    },
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        path: String,
        key: String,
        message: String,
    },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

/// A parsed `opsbot.toml` with environment overrides applied.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Where it came from, for messages (`opsbot.toml`, `<defaults>`).
    origin: String,
    table: toml::Table,
}

impl Config {
    /// Finds the file to load: the explicit path, else `./opsbot.toml` when it exists.
    pub fn discover(explicit: Option<&Path>) -> Option<PathBuf> {
        match explicit {
            Some(path) => Some(path.to_path_buf()),
            None => {
                let default = PathBuf::from(DEFAULT_FILE);
                default.is_file().then_some(default)
            }
        }
    }

    /// Loads `path` (or only the defaults and environment when `None`).
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let vars = std::env::vars().filter(|(k, _)| k.starts_with(ENV_PREFIX));
        match path {
            Some(path) => {
                let origin = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: origin.clone(),
                    source,
                })?;
                Self::parse(&text, &origin, vars)
            }
            None => Self::parse("", "<defaults>", vars),
        }
    }

    /// Parses `text` and applies `overrides` (`OPSBOT__TABLE__KEY`, value) pairs.
    pub fn parse(
        text: &str,
        origin: &str,
        overrides: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table = text.parse().map_err(|err: toml::de::Error| {
            let (line, column) = err
                .span()
                .map(|span| line_col(text, span.start))
                .unwrap_or((1, 1));
            ConfigError::Syntax {
                path: origin.to_string(),
                line,
                column,
                message: err.message().trim().to_string(),
            }
        })?;
        for (var, value) in overrides {
            apply_override(&mut table, &var, &value)?;
        }
        for key in table.keys() {
            if !KNOWN_TABLES.contains(&key.as_str()) {
                return Err(ConfigError::UnknownTable {
                    path: origin.to_string(),
                    table: key.clone(),
                    known: KNOWN_TABLES.join(", "),
                });
            }
        }
        Ok(Config {
            origin: origin.to_string(),
            table,
        })
    }

    /// Where this configuration came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Deserializes table `name` into `T` (an absent table gives `T`'s defaults, via an
    /// empty table). Errors carry the full key path.
    pub fn section<T: DeserializeOwned>(&self, name: &str) -> Result<T, ConfigError> {
        let value = self
            .table
            .get(name)
            .cloned()
            .unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
        serde_path_to_error::deserialize(value).map_err(|err| {
            let inner = err.path().to_string();
            let key = if inner.is_empty() || inner == "." {
                name.to_string()
            } else {
                format!("{name}.{inner}")
            };
            ConfigError::Invalid {
                path: self.origin.clone(),
                key,
                message: err.into_inner().to_string(),
            }
        })
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn apply_override(table: &mut toml::Table, var: &str, value: &str) -> Result<(), ConfigError> {
    let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
        return Ok(());
    };
    let keys: Vec<String> = rest.split("__").map(|k| k.to_ascii_lowercase()).collect();
    if keys.len() < 2 || keys.iter().any(String::is_empty) {
        return Err(ConfigError::Env {
            var: var.to_string(),
            message: "expected OPSBOT__<TABLE>__<KEY>".to_string(),
        });
    }
    let parsed = parse_env_value(value);
    let mut current = table;
    for key in &keys[..keys.len() - 1] {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry.as_table_mut().ok_or_else(|| ConfigError::Env {
            var: var.to_string(),
            message: format!("`{key}` is not a table in the file"),
        })?;
    }
    if let Some(last) = keys.last() {
        current.insert(last.clone(), parsed);
    }
    Ok(())
}

fn parse_env_value(value: &str) -> toml::Value {
    let doc = format!("v = {value}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(value.to_string())),
        Err(_) => toml::Value::String(value.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, Default, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Scan {
        max_file_size: u64,
        disabled: Vec<String>,
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let err = Config::parse("[scan]\nmax_file_size = = 3\n", "opsbot.toml", [])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("opsbot.toml:2:"), "{err}");
        assert!(err.contains("invalid TOML"), "{err}");
    }

    #[test]
    fn wrong_type_names_key_path() {
        let cfg = Config::parse("[scan]\nmax_file_size = \"big\"\n", "opsbot.toml", []).unwrap();
        let err = cfg.section::<Scan>("scan").unwrap_err().to_string();
        assert!(err.contains("key `scan.max_file_size`"), "{err}");
    }

    #[test]
    fn unknown_field_and_table_are_reported() {
        let cfg = Config::parse("[scan]\nmax_fil_size = 1\n", "o.toml", []).unwrap();
        let err = cfg.section::<Scan>("scan").unwrap_err().to_string();
        assert!(err.contains("unknown field `max_fil_size`"), "{err}");
        let err = Config::parse("[scna]\n", "o.toml", [])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown table [scna]"), "{err}");
    }

    #[test]
    fn env_overrides_set_typed_values() {
        let cfg = Config::parse(
            "[scan]\nmax_file_size = 1\n",
            "o.toml",
            [
                ("OPSBOT__SCAN__MAX_FILE_SIZE".to_string(), "42".to_string()),
                (
                    "OPSBOT__SCAN__DISABLED".to_string(),
                    "[\"a\",\"b\"]".to_string(),
                ),
            ],
        )
        .unwrap();
        let scan: Scan = cfg.section("scan").unwrap();
        assert_eq!(
            scan,
            Scan {
                max_file_size: 42,
                disabled: vec!["a".into(), "b".into()]
            }
        );
    }

    #[test]
    fn absent_section_gives_defaults() {
        let cfg = Config::parse("", "o.toml", []).unwrap();
        assert_eq!(cfg.section::<Scan>("scan").unwrap(), Scan::default());
    }

    #[test]
    fn malformed_env_override_is_an_error() {
        let err = Config::parse(
            "",
            "o.toml",
            [("OPSBOT__SCAN".to_string(), "1".to_string())],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("OPSBOT__SCAN"), "{err}");
    }
}
