//! opsbot-scan: the secret scanner. Rules are data (`rules/*.toml`, embedded at build time,
//! plus user rules at run time); the [`engine`] turns bytes into masked [`Finding`]s without
//! any I/O; [`source`] walks directories, runs git and reads stdin; [`report`] renders
//! findings as text, JSON, SARIF 2.1.0 or GitHub workflow commands.

pub mod baseline;
pub mod config;
pub mod diff;
pub mod engine;
pub mod finding;
pub mod keywords;
pub mod lazy_regex;
pub mod pkcs12;
pub mod placeholder;
pub mod report;
pub mod rule;
pub mod source;
mod spec;
pub mod stream;

pub use diff::{FileAdditions, added_lines_from_patch};
pub use engine::Scanner;
pub use finding::Finding;
pub use rule::{Rule, RuleError, RuleSet, Severity};
