//! Rewriting the pins of one target in one file. Pure: text in, text out plus the list
//! of [`PinRewrite`]s. Only the bytes of the rewritten string literals change: the parser
//! locates each literal and the new literal is spliced into the original text, so
//! comments, blank lines, ordering and spacing stay byte for byte.

use std::path::{Path, PathBuf};

use crate::constraint::{Decision, Kept, Style, TfVersion, decide};
use crate::module_source;
use crate::pins::{ParseError, Pin, PinKind, ProviderAddress, find_pins};

/// What to bump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `required_version` in `terraform {}` blocks.
    Terraform,
    /// A provider, by the name given on the command line.
    Provider(ProviderSpec),
    /// Modules whose `source` matches; `git_ref` also bumps `?ref=vX.Y.Z` tags.
    /// With `regex` (`--source-match-type regex`) the source is matched by that regular
    /// expression instead of by module identity.
    Module {
        source: String,
        git_ref: bool,
        regex: Option<SourcePattern>,
    },
}

/// A compiled `--source-match-type regex` pattern (compared by its text).
#[derive(Debug, Clone)]
pub struct SourcePattern(regex::Regex);

impl SourcePattern {
    pub fn regex(pattern: &str) -> Result<SourcePattern, regex::Error> {
        if pattern.is_empty() {
            return Err(regex::Error::Syntax("empty pattern".to_string()));
        }
        regex::Regex::new(pattern).map(SourcePattern)
    }

    /// Whether the source (without its `?ref=`) matches.
    pub fn is_match(&self, source: &str) -> bool {
        let base = match source.find("?ref=") {
            Some(i) => &source[..i],
            None => source,
        };
        self.0.is_match(base)
    }
}

impl PartialEq for SourcePattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for SourcePattern {}

impl Target {
    /// A short name for messages and branch names: `terraform`, `provider hashicorp/aws`.
    pub fn describe(&self) -> String {
        match self {
            Target::Terraform => "terraform".to_string(),
            Target::Provider(spec) => format!("provider {spec}"),
            Target::Module { source, .. } => format!("module {source}"),
        }
    }

    /// Whether `pin` is one this target rewrites.
    pub fn matches(&self, pin: &Pin) -> bool {
        match (self, &pin.kind) {
            (Target::Terraform, PinKind::TerraformVersion) => true,
            (
                Target::Provider(spec),
                PinKind::RequiredProvider {
                    local_name,
                    address,
                    ..
                }
                | PinKind::ProviderBlock {
                    local_name,
                    address,
                },
            ) => spec.matches(local_name, address),
            (
                Target::Module {
                    source: pattern,
                    regex,
                    ..
                },
                PinKind::ModuleVersion { source, .. } | PinKind::ModuleSource { source, .. },
            ) => match regex {
                Some(re) => re.is_match(source),
                None => module_source::matches(pattern, source),
            },
            _ => false,
        }
    }
}

/// A provider as named on the command line: `aws`, `hashicorp/aws` or
/// `registry.opentofu.org/hashicorp/aws`.
///
/// Like tfupdate: without a namespace the name is compared with the local name (the key
/// in `required_providers`, the label of `provider` blocks); with a namespace it is
/// compared with the source address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSpec {
    pub host: Option<String>,
    pub namespace: Option<String>,
    pub name: String,
}

/// A provider name that is not `NAME`, `NAMESPACE/NAME` or `HOST/NAMESPACE/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid provider name `{0}` (expected NAME, NAMESPACE/NAME or HOST/NAMESPACE/NAME)")]
pub struct ProviderSpecError(pub String);

impl ProviderSpec {
    pub fn parse(text: &str) -> Result<ProviderSpec, ProviderSpecError> {
        let parts: Vec<String> = text
            .trim()
            .split('/')
            .map(str::to_ascii_lowercase)
            .collect();
        if parts.iter().any(String::is_empty) {
            return Err(ProviderSpecError(text.to_string()));
        }
        match parts.as_slice() {
            [name] => Ok(ProviderSpec {
                host: None,
                namespace: None,
                name: name.clone(),
            }),
            [ns, name] => Ok(ProviderSpec {
                host: None,
                namespace: Some(ns.clone()),
                name: name.clone(),
            }),
            [host, ns, name] => Ok(ProviderSpec {
                host: Some(host.clone()),
                namespace: Some(ns.clone()),
                name: name.clone(),
            }),
            _ => Err(ProviderSpecError(text.to_string())),
        }
    }

    /// The registry address to look versions up at (`hashicorp` when no namespace).
    pub fn address(&self) -> ProviderAddress {
        ProviderAddress {
            host: self
                .host
                .clone()
                .filter(|h| h != crate::pins::DEFAULT_REGISTRY_HOST),
            namespace: self
                .namespace
                .clone()
                .unwrap_or_else(|| "hashicorp".to_string()),
            name: self.name.clone(),
        }
    }

    fn matches(&self, local_name: &str, address: &ProviderAddress) -> bool {
        match &self.namespace {
            None => local_name.eq_ignore_ascii_case(&self.name),
            Some(ns) => {
                let host_ok = match (&self.host, &address.host) {
                    (None, _) => true,
                    (Some(want), Some(have)) => want == have,
                    (Some(want), None) => {
                        want == crate::pins::DEFAULT_REGISTRY_HOST
                            || want == "registry.opentofu.org"
                    }
                };
                host_ok && *ns == address.namespace && self.name == address.name
            }
        }
    }
}

impl From<ProviderAddress> for ProviderSpec {
    fn from(address: ProviderAddress) -> Self {
        ProviderSpec {
            host: address.host,
            namespace: Some(address.namespace),
            name: address.name,
        }
    }
}

impl std::fmt::Display for ProviderSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(host) = &self.host {
            write!(f, "{host}/")?;
        }
        if let Some(ns) = &self.namespace {
            write!(f, "{ns}/")?;
        }
        f.write_str(&self.name)
    }
}

/// One rewritten version string.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PinRewrite {
    pub file: PathBuf,
    pub line: usize,
    /// What was pinned: `required_providers.aws`, `module "vpc" version`.
    pub what: String,
    pub from: String,
    pub to: String,
    pub style: Style,
}

/// A matching pin that was left alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PinNote {
    pub file: PathBuf,
    pub line: usize,
    pub what: String,
    pub message: String,
}

/// The result for one file.
#[derive(Debug, Clone, Default)]
pub struct FileRewrite {
    /// The new text; equal to the input when nothing changed.
    pub text: String,
    pub rewrites: Vec<PinRewrite>,
    pub notes: Vec<PinNote>,
}

impl FileRewrite {
    pub fn changed(&self) -> bool {
        !self.rewrites.is_empty()
    }
}

/// Rewrites every pin of `target` in `text` (the contents of `file`) for `version`.
pub fn rewrite_file(
    file: &Path,
    text: &str,
    target: &Target,
    version: &TfVersion,
) -> Result<FileRewrite, ParseError> {
    let pins = find_pins(file, text)?;
    Ok(rewrite_pins(file, text, &pins, target, version))
}

/// Like [`rewrite_file`] with the pins already found.
pub fn rewrite_pins(
    file: &Path,
    text: &str,
    pins: &[Pin],
    target: &Target,
    version: &TfVersion,
) -> FileRewrite {
    let git_ref = matches!(target, Target::Module { git_ref: true, .. });
    let mut out = FileRewrite::default();
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    for pin in pins.iter().filter(|p| target.matches(p)) {
        let what = pin.kind.label();
        let note = |message: String| PinNote {
            file: file.to_path_buf(),
            line: pin.line,
            what: what.clone(),
            message,
        };
        let Some(value) = &pin.value else {
            out.notes
                .push(note("not a plain string literal; left alone".to_string()));
            continue;
        };
        if let PinKind::ModuleSource { .. } = pin.kind {
            if !git_ref {
                out.notes.push(note(format!(
                    "git ref in `{value}` left alone (use --git-ref to update it)"
                )));
                continue;
            }
            match module_source::with_ref(value, version) {
                Some(new) if new != *value => {
                    edits.push((pin.span.clone(), quote(&new)));
                    out.rewrites.push(PinRewrite {
                        file: file.to_path_buf(),
                        line: pin.line,
                        what,
                        from: value.clone(),
                        to: new,
                        style: Style::Exact,
                    });
                }
                Some(_) => {}
                None => out.notes.push(note(format!(
                    "ref in `{value}` is not a version tag; left alone"
                ))),
            }
            continue;
        }
        match decide(value, version) {
            Decision::Keep(Kept::Current) => {}
            Decision::Keep(Kept::Admits) => out.notes.push(note(format!(
                "`{value}` already admits {version}; left alone"
            ))),
            Decision::Rewrite { to, style } => {
                edits.push((pin.span.clone(), quote(&to)));
                out.rewrites.push(PinRewrite {
                    file: file.to_path_buf(),
                    line: pin.line,
                    what,
                    from: value.clone(),
                    to,
                    style,
                });
            }
        }
    }
    out.text = splice(text, edits);
    out
}

/// Replaces byte ranges (non-overlapping) with new text; everything else is copied.
pub fn splice(text: &str, mut edits: Vec<(std::ops::Range<usize>, String)>) -> String {
    if edits.is_empty() {
        return text.to_string();
    }
    edits.sort_by_key(|(r, _)| r.start);
    let mut out = String::with_capacity(text.len() + 64);
    let mut pos = 0;
    for (range, with) in edits {
        if range.start < pos {
            continue;
        }
        out.push_str(&text[pos..range.start]);
        out.push_str(&with);
        pos = range.end;
    }
    out.push_str(&text[pos..]);
    out
}

/// An HCL string literal for `value`.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out.replace("${", "$${").replace("%{", "%%{")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn v(s: &str) -> TfVersion {
        TfVersion::parse(s).unwrap()
    }

    #[test]
    fn provider_specs() {
        let aws = ProviderSpec::parse("aws").unwrap();
        let ns = ProviderSpec::parse("hashicorp/aws").unwrap();
        let fork = ProviderAddress::parse("acme/aws").unwrap();
        let official = ProviderAddress::parse("hashicorp/aws").unwrap();
        assert!(aws.matches("aws", &fork));
        assert!(!aws.matches("amazon", &official));
        assert!(ns.matches("amazon", &official));
        assert!(!ns.matches("aws", &fork));
        let tofu = ProviderSpec::parse("registry.opentofu.org/hashicorp/aws").unwrap();
        assert!(tofu.matches("aws", &official));
        assert!(!tofu.matches(
            "aws",
            &ProviderAddress::parse("example.com/hashicorp/aws").unwrap()
        ));
        assert_eq!(ns.to_string(), "hashicorp/aws");
        assert_eq!(aws.address().short(), "hashicorp/aws");
        assert!(ProviderSpec::parse("a//b").is_err());
    }

    #[test]
    fn only_the_literal_changes() {
        let text = "terraform {\n  # keep\n  required_version   =   \"~> 1.5\"   # why\n}\n";
        let r = rewrite_file(Path::new("m.tf"), text, &Target::Terraform, &v("1.9.8")).unwrap();
        assert_eq!(
            r.text,
            "terraform {\n  # keep\n  required_version   =   \"~> 1.9\"   # why\n}\n"
        );
        assert_eq!(r.rewrites.len(), 1);
        assert_eq!(r.rewrites[0].line, 3);
        assert_eq!(r.rewrites[0].from, "~> 1.5");
        assert_eq!(r.rewrites[0].style, Style::Pessimistic);
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("1.2.3"), "\"1.2.3\"");
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
        assert_eq!(quote("${x}"), "\"$${x}\"");
    }

    #[test]
    fn splice_keeps_everything_else() {
        let text = "0123456789";
        assert_eq!(
            splice(text, vec![(5..7, "ab".into()), (1..2, "X".into())]),
            "0X234ab789"
        );
    }
}
