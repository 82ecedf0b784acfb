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
                    written_host,
                    ..
                }
                | PinKind::ProviderBlock {
                    local_name,
                    address,
                    written_host,
                },
            ) => spec.matches_written(local_name, address, written_host.as_deref()),
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
///
/// Hosts are compared as written: a source without a host (`hashicorp/aws`) and a
/// name without one are on `default_host` (the tool's registry: `TFREGISTRY_BASE_URL`,
/// else registry.terraform.io), so `registry.opentofu.org/hashicorp/aws` never matches
/// an explicit `registry.terraform.io/hashicorp/aws` source, nor the reverse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSpec {
    pub host: Option<String>,
    pub namespace: Option<String>,
    pub name: String,
    /// The registry a name or source without a host refers to; `None` for
    /// registry.terraform.io.
    pub default_host: Option<String>,
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
                default_host: None,
            }),
            [ns, name] => Ok(ProviderSpec {
                host: None,
                namespace: Some(ns.clone()),
                name: name.clone(),
                default_host: None,
            }),
            [host, ns, name] => Ok(ProviderSpec {
                host: Some(host.clone()),
                namespace: Some(ns.clone()),
                name: name.clone(),
                default_host: None,
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

    /// The same spec with `host` (a host or registry URL) as the default registry.
    pub fn with_default_registry(mut self, registry: &str) -> ProviderSpec {
        let host = registry_host(registry);
        self.default_host = Some(host).filter(|h| h != crate::pins::DEFAULT_REGISTRY_HOST);
        self
    }

    fn default_host(&self) -> &str {
        self.default_host
            .as_deref()
            .unwrap_or(crate::pins::DEFAULT_REGISTRY_HOST)
    }

    /// Whether a provider with this local name and address matches, its source
    /// having no host or `written_host`.
    pub fn matches_written(
        &self,
        local_name: &str,
        address: &ProviderAddress,
        written_host: Option<&str>,
    ) -> bool {
        match &self.namespace {
            None => local_name.eq_ignore_ascii_case(&self.name),
            Some(ns) => {
                let want = self.host.as_deref().unwrap_or(self.default_host());
                let have = written_host
                    .or(address.host.as_deref())
                    .unwrap_or(self.default_host());
                want == have && *ns == address.namespace && self.name == address.name
            }
        }
    }

    #[cfg(test)]
    fn matches(&self, local_name: &str, address: &ProviderAddress) -> bool {
        self.matches_written(local_name, address, address.host.as_deref())
    }
}

/// `registry.opentofu.org` for `https://registry.opentofu.org/`, `host:8443` kept.
pub fn registry_host(registry: &str) -> String {
    let rest = registry
        .trim()
        .strip_prefix("https://")
        .or_else(|| registry.trim().strip_prefix("http://"))
        .unwrap_or(registry.trim());
    rest.split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

impl From<ProviderAddress> for ProviderSpec {
    fn from(address: ProviderAddress) -> Self {
        ProviderSpec {
            host: address.host,
            namespace: Some(address.namespace),
            name: address.name,
            default_host: None,
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
    /// The replaced byte ranges of the input and their new text (what made `text`),
    /// to apply to the file's original bytes.
    pub edits: Vec<(std::ops::Range<usize>, String)>,
}

impl FileRewrite {
    pub fn changed(&self) -> bool {
        !self.rewrites.is_empty()
    }
}

/// What a pin is set to: a version (the author's style is kept, see
/// [`crate::constraint::decide`]) or, as tfupdate does with `-v "~> 1.0"`, a constraint
/// string that replaces the constraint as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting<'a> {
    Version(&'a TfVersion),
    Constraint(&'a str),
}

impl std::fmt::Display for Setting<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Setting::Version(v) => write!(f, "{v}"),
            Setting::Constraint(c) => f.write_str(c),
        }
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
    rewrite_pins_with(file, text, pins, target, Setting::Version(version))
}

/// Like [`rewrite_pins`], for a version or a constraint string.
pub fn rewrite_pins_with(
    file: &Path,
    text: &str,
    pins: &[Pin],
    target: &Target,
    setting: Setting<'_>,
) -> FileRewrite {
    let git_ref = matches!(target, Target::Module { git_ref: true, .. });
    let mut out = FileRewrite::default();
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    let mut rewrites: Vec<PinRewrite> = Vec::new();
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
        let mut rewrite =
            |to: String, style: Style, edits: &mut Vec<(std::ops::Range<usize>, String)>| {
                edits.push((pin.span.clone(), quote(&to)));
                rewrites.push(PinRewrite {
                    file: file.to_path_buf(),
                    line: pin.line,
                    what: what.clone(),
                    from: value.clone(),
                    to,
                    style,
                });
            };
        if let PinKind::ModuleSource { .. } = pin.kind {
            if !git_ref {
                out.notes.push(note(format!(
                    "git ref in `{value}` left alone (use --git-ref to update it)"
                )));
                continue;
            }
            let version = match setting {
                Setting::Version(v) => v,
                Setting::Constraint(c) => {
                    out.notes.push(note(format!(
                        "`?ref=` in `{value}` takes a version, not the constraint `{c}`; left alone"
                    )));
                    continue;
                }
            };
            match module_source::with_ref(value, version) {
                Some(new) if new != *value => rewrite(new, Style::Exact, &mut edits),
                Some(_) => {}
                None => out.notes.push(note(format!(
                    "ref in `{value}` is not a version tag; left alone"
                ))),
            }
            continue;
        }
        let version = match setting {
            Setting::Constraint(c) => {
                if value != c {
                    rewrite(c.to_string(), Style::Set, &mut edits);
                }
                continue;
            }
            Setting::Version(v) => v,
        };
        match decide(value, version) {
            Decision::Keep(Kept::Current) => {}
            Decision::Keep(Kept::Admits) => out.notes.push(note(format!(
                "`{value}` already admits {version}; left alone"
            ))),
            Decision::Rewrite { to, style } => rewrite(to, style, &mut edits),
        }
    }
    out.rewrites = rewrites;
    edits.sort_by_key(|(r, _)| r.start);
    out.text = splice(text, edits.clone());
    out.edits = edits;
    out
}

/// [`splice`] on bytes: the original bytes of a file that is not UTF-8 everywhere.
pub fn splice_bytes(bytes: &[u8], edits: &[(std::ops::Range<usize>, String)]) -> Vec<u8> {
    let mut sorted: Vec<&(std::ops::Range<usize>, String)> = edits.iter().collect();
    sorted.sort_by_key(|(r, _)| r.start);
    let mut out = Vec::with_capacity(bytes.len() + 64);
    let mut pos = 0;
    for (range, with) in sorted {
        if range.start < pos || range.end > bytes.len() {
            continue;
        }
        out.extend_from_slice(&bytes[pos..range.start]);
        out.extend_from_slice(with.as_bytes());
        pos = range.end;
    }
    out.extend_from_slice(&bytes[pos..]);
    out
}

/// The bytes of `new_text`, a rewrite of `text` (= [`crate::pins::text_for_parsing`] of
/// `raw`), with every [`crate::pins::NON_UTF8_PLACEHOLDER`] put back to the byte of `raw`
/// it stands for: rewrites only splice version strings, which hold no placeholder, so the
/// placeholders of `new_text` are those of `text`, in order. `None` when `text` is not
/// the parsing text of `raw` or the counts differ (the file changed meanwhile).
pub fn restore_bytes(raw: &[u8], text: &str, new_text: &str) -> Option<Vec<u8>> {
    const P: u8 = crate::pins::NON_UTF8_PLACEHOLDER;
    if raw.len() != text.len() || crate::pins::text_for_parsing(raw) != text {
        return None;
    }
    let originals: Vec<u8> = text
        .bytes()
        .zip(raw)
        .filter(|(t, _)| *t == P)
        .map(|(_, r)| *r)
        .collect();
    let mut originals = originals.into_iter();
    let mut out = Vec::with_capacity(new_text.len());
    for b in new_text.bytes() {
        if b == P {
            out.push(originals.next()?);
        } else {
            out.push(b);
        }
    }
    originals.next().is_none().then_some(out)
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
        // a bare source is on the tool's default registry
        assert!(!tofu.matches("aws", &official));
        assert!(
            tofu.clone()
                .with_default_registry("https://registry.opentofu.org/")
                .matches("aws", &official)
        );
        let explicit_tf = ProviderAddress::parse("registry.terraform.io/hashicorp/aws").unwrap();
        assert!(!tofu.matches_written("aws", &explicit_tf, Some("registry.terraform.io")));
        let on_tofu = ProviderAddress::parse("registry.opentofu.org/hashicorp/aws").unwrap();
        assert!(!ns.matches("aws", &on_tofu));
        assert!(
            ns.clone()
                .with_default_registry("registry.opentofu.org")
                .matches("aws", &on_tofu)
        );
        assert!(
            !ns.clone()
                .with_default_registry("registry.opentofu.org")
                .matches_written("aws", &explicit_tf, Some("registry.terraform.io"))
        );
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
    fn a_constraint_replaces_the_constraint_as_written() {
        let text = "terraform {\n  required_version = \"1.5.7\" # x\n}\n";
        let pins = find_pins(Path::new("m.tf"), text).unwrap();
        let r = rewrite_pins_with(
            Path::new("m.tf"),
            text,
            &pins,
            &Target::Terraform,
            Setting::Constraint("~> 1.0"),
        );
        assert_eq!(
            r.text,
            "terraform {\n  required_version = \"~> 1.0\" # x\n}\n"
        );
        assert_eq!(r.rewrites[0].style, Style::Set);
        let again = find_pins(Path::new("m.tf"), &r.text).unwrap();
        let r2 = rewrite_pins_with(
            Path::new("m.tf"),
            &r.text,
            &again,
            &Target::Terraform,
            Setting::Constraint("~> 1.0"),
        );
        assert!(r2.rewrites.is_empty());
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

    #[test]
    fn restore_bytes_puts_non_utf8_bytes_back_after_a_rewrite() {
        let raw = b"# caf\xe9 \x01 \xff\xfe\nterraform {\n  required_version = \"1.5.7\"\n}\n";
        let text = crate::pins::text_for_parsing(raw).into_owned();
        let new_text = text.replace("1.5.7", "1.10.0");
        let mut want = raw.to_vec();
        let at = want.windows(5).position(|w| w == b"1.5.7").unwrap();
        want.splice(at..at + 5, b"1.10.0".iter().copied());
        assert_eq!(restore_bytes(raw, &text, &new_text), Some(want));
        // a text that is not the file's, or lost a placeholder: refused
        assert_eq!(restore_bytes(raw, &new_text, &new_text), None);
        assert_eq!(
            restore_bytes(raw, &text, &new_text.replacen('\u{1}', "", 1)),
            None
        );
    }
}
