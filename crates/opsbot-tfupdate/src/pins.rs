//! Finding version pins in one Terraform file: `required_version`, `required_providers`
//! entries (object and legacy string form), `version` in `provider` blocks, and module
//! `version` / `source`. Pure: text in, pins (with byte spans) out.

use std::ops::Range;
use std::path::{Path, PathBuf};

use hcl_edit::Span;
use hcl_edit::expr::{Expression, ObjectKey};
use hcl_edit::structure::{Block, Body};

/// The registry every unqualified provider or module address refers to.
pub const DEFAULT_REGISTRY_HOST: &str = "registry.terraform.io";

/// A file that does not parse as HCL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: cannot parse HCL: {message}", file.display())]
pub struct ParseError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A provider source address: `[HOST/]NAMESPACE/TYPE`. `host` is `None` for the default
/// registry (whichever one Terraform or OpenTofu uses).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderAddress {
    pub host: Option<String>,
    pub namespace: String,
    pub name: String,
}

impl ProviderAddress {
    /// Parses a `source` attribute: `aws` (legacy, implies `hashicorp`), `hashicorp/aws`,
    /// `registry.terraform.io/hashicorp/aws`. Lower-cased, as Terraform compares them.
    pub fn parse(source: &str) -> Option<ProviderAddress> {
        let parts: Vec<String> = source
            .trim()
            .split('/')
            .map(str::to_ascii_lowercase)
            .collect();
        if parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        let (host, namespace, name) = match parts.as_slice() {
            [name] => (None, "hashicorp".to_string(), name.clone()),
            [ns, name] => (None, ns.clone(), name.clone()),
            [host, ns, name] => (Some(host.clone()), ns.clone(), name.clone()),
            _ => return None,
        };
        let host = host.filter(|h| h != DEFAULT_REGISTRY_HOST);
        Some(ProviderAddress {
            host,
            namespace,
            name,
        })
    }

    /// The implied address of a provider with no `source`: `hashicorp/<local name>`.
    pub fn implied(local_name: &str) -> ProviderAddress {
        ProviderAddress {
            host: None,
            namespace: "hashicorp".to_string(),
            name: local_name.to_ascii_lowercase(),
        }
    }

    /// `hashicorp/aws`, or `host/ns/name` for a non-default registry.
    pub fn short(&self) -> String {
        match &self.host {
            Some(host) => format!("{host}/{}/{}", self.namespace, self.name),
            None => format!("{}/{}", self.namespace, self.name),
        }
    }

    /// The fully qualified address as written in lock files, with `default_host` for
    /// addresses without a host.
    pub fn qualified(&self, default_host: &str) -> String {
        format!(
            "{}/{}/{}",
            self.host.as_deref().unwrap_or(default_host),
            self.namespace,
            self.name
        )
    }
}

impl std::fmt::Display for ProviderAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.short())
    }
}

/// What a pin pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinKind {
    /// `terraform { required_version = "…" }`
    TerraformVersion,
    /// `required_providers { NAME = { version = "…" } }` or the legacy `NAME = "…"`.
    RequiredProvider {
        local_name: String,
        address: ProviderAddress,
        legacy: bool,
        /// The registry host as written in `source` (lower-cased), `None` when the
        /// source names none (`hashicorp/aws`): then the tool's default registry.
        /// Unlike `address.host`, an explicit `registry.terraform.io` is kept.
        written_host: Option<String>,
    },
    /// The deprecated `provider "NAME" { version = "…" }`.
    ProviderBlock {
        local_name: String,
        address: ProviderAddress,
        /// As for `RequiredProvider`: the host of the matching `required_providers`
        /// source, as written.
        written_host: Option<String>,
    },
    /// `module "NAME" { source = "…" version = "…" }`: the pin is the version.
    ModuleVersion { module: String, source: String },
    /// `module "NAME" { source = "git::…?ref=v1.2.3" }`: the pin is the whole source.
    ModuleSource { module: String, source: String },
}

impl PinKind {
    /// A short human label: `terraform`, `provider aws`, `module vpc`.
    pub fn label(&self) -> String {
        match self {
            PinKind::TerraformVersion => "terraform required_version".to_string(),
            PinKind::RequiredProvider {
                local_name,
                legacy: false,
                ..
            } => format!("required_providers.{local_name}"),
            PinKind::RequiredProvider { local_name, .. } => {
                format!("required_providers.{local_name} (legacy string)")
            }
            PinKind::ProviderBlock { local_name, .. } => {
                format!("provider \"{local_name}\" version")
            }
            PinKind::ModuleVersion { module, .. } => format!("module \"{module}\" version"),
            PinKind::ModuleSource { module, .. } => format!("module \"{module}\" source ref"),
        }
    }
}

/// One version pin found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub kind: PinKind,
    /// 1-based line of the value.
    pub line: usize,
    /// The string value, or `None` when it is not a plain string literal (a variable,
    /// a template with interpolations), which is then never rewritten.
    pub value: Option<String>,
    /// Byte range of the value expression in the file (quotes included).
    pub span: Range<usize>,
}

/// Byte offset → 1-based line.
#[derive(Debug)]
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(memchr_newlines(text).map(|i| i + 1));
        LineIndex { starts }
    }

    pub fn line(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

fn memchr_newlines(text: &str) -> impl Iterator<Item = usize> + '_ {
    text.bytes()
        .enumerate()
        .filter(|(_, b)| *b == b'\n')
        .map(|(i, _)| i)
}

/// The UTF-8 byte order mark, which Terraform accepts at the start of a file.
pub const BOM: &str = "\u{feff}";

/// The byte put in place of each byte that is not UTF-8 (in comments, where Terraform
/// accepts anything) so that the text parses with every offset unchanged. Outside
/// comments and string literals it does not parse, as Terraform refuses such bytes.
pub const NON_UTF8_PLACEHOLDER: u8 = 0x01;

/// The text to parse for a file's bytes: the bytes themselves when they are UTF-8,
/// else every byte of an invalid sequence replaced by [`NON_UTF8_PLACEHOLDER`]. Offsets
/// into the result are offsets into `bytes`, so edits can be spliced into the original.
pub fn text_for_parsing(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for _ in chunk.invalid() {
            out.push(NON_UTF8_PLACEHOLDER as char);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Parses HCL, accepting a leading byte order mark; spans stay relative to `text`
/// (returned as the BOM's length, to add to them).
pub(crate) fn parse_hcl(text: &str) -> Result<(Body, usize), hcl_edit::parser::Error> {
    let (skip, rest) = match text.strip_prefix(BOM) {
        Some(rest) => (BOM.len(), rest),
        None => (0, text),
    };
    hcl_edit::parser::parse_body(rest).map(|body| (body, skip))
}

/// Parses `text` (the contents of `file`) and returns every pin in it, in file order.
pub fn find_pins(file: &Path, text: &str) -> Result<Vec<Pin>, ParseError> {
    let (body, skip) = parse_hcl(text).map_err(|e| ParseError {
        file: file.to_path_buf(),
        line: e.location().line(),
        column: e.location().column(),
        message: e.message().to_string(),
    })?;
    let lines = LineIndex::new(text);
    let mut pins = Vec::new();
    // local name → address from every required_providers block in the file, so that
    // `provider "NAME"` blocks resolve to the same address.
    let mut local_names: Vec<LocalName> = Vec::new();
    for block in body.blocks().filter(|b| b.has_ident("terraform")) {
        terraform_block(block, &lines, &mut pins, &mut local_names);
    }
    for block in body.blocks() {
        match block.ident.as_str() {
            "provider" => provider_block(block, &lines, &local_names, &mut pins),
            "module" => module_block(block, &lines, &mut pins),
            _ => {}
        }
    }
    if skip > 0 {
        for p in &mut pins {
            p.span = p.span.start + skip..p.span.end + skip;
            p.line = lines.line(p.span.start);
        }
    }
    pins.sort_by_key(|p| p.span.start);
    Ok(pins)
}

fn pin(kind: PinKind, expr: &Expression, lines: &LineIndex) -> Option<Pin> {
    let span = expr.span()?;
    let value = match expr {
        Expression::String(s) => Some(s.value().to_string()),
        _ => None,
    };
    Some(Pin {
        kind,
        line: lines.line(span.start),
        value,
        span,
    })
}

fn terraform_block(
    block: &Block,
    lines: &LineIndex,
    pins: &mut Vec<Pin>,
    local_names: &mut Vec<LocalName>,
) {
    if let Some(attr) = block.body.get_attribute("required_version") {
        pins.extend(pin(PinKind::TerraformVersion, &attr.value, lines));
    }
    for rp in block
        .body
        .blocks()
        .filter(|b| b.has_ident("required_providers"))
    {
        required_providers(&rp.body, lines, pins, local_names);
    }
}

/// A `required_providers` entry: local name, address, host as written.
type LocalName = (String, ProviderAddress, Option<String>);

/// The host part of a three-part provider source, lower-cased.
fn written_host(source: &str) -> Option<String> {
    let parts: Vec<&str> = source.trim().split('/').collect();
    match parts.as_slice() {
        [host, _, _] => Some(host.to_ascii_lowercase()),
        _ => None,
    }
}

fn required_providers(
    body: &Body,
    lines: &LineIndex,
    pins: &mut Vec<Pin>,
    local_names: &mut Vec<LocalName>,
) {
    for attr in body.attributes() {
        let local_name = attr.key.as_str().to_string();
        match &attr.value {
            Expression::Object(object) => {
                let mut source = None;
                let mut version = None;
                for (key, value) in object.iter() {
                    match object_key(key).as_deref() {
                        Some("source") => source = Some(value.expr()),
                        Some("version") => version = Some(value.expr()),
                        _ => {}
                    }
                }
                let (address, host) = match source {
                    Some(Expression::String(s)) => match ProviderAddress::parse(s.value()) {
                        Some(address) => (address, written_host(s.value())),
                        None => continue,
                    },
                    // a computed source cannot be matched: skip the entry
                    Some(_) => continue,
                    None => (ProviderAddress::implied(&local_name), None),
                };
                local_names.push((local_name.clone(), address.clone(), host.clone()));
                if let Some(expr) = version {
                    let kind = PinKind::RequiredProvider {
                        local_name,
                        address,
                        legacy: false,
                        written_host: host,
                    };
                    pins.extend(pin(kind, expr, lines));
                }
            }
            expr => {
                let address = ProviderAddress::implied(&local_name);
                local_names.push((local_name.clone(), address.clone(), None));
                let kind = PinKind::RequiredProvider {
                    local_name,
                    address,
                    legacy: true,
                    written_host: None,
                };
                pins.extend(pin(kind, expr, lines));
            }
        }
    }
}

fn object_key(key: &ObjectKey) -> Option<String> {
    match key {
        ObjectKey::Ident(ident) => Some(ident.as_str().to_string()),
        ObjectKey::Expression(Expression::String(s)) => Some(s.value().to_string()),
        ObjectKey::Expression(_) => None,
    }
}

fn first_label(block: &Block) -> Option<&str> {
    block.labels.first().map(|l| l.as_str())
}

fn provider_block(
    block: &Block,
    lines: &LineIndex,
    local_names: &[LocalName],
    pins: &mut Vec<Pin>,
) {
    let Some(local_name) = first_label(block) else {
        return;
    };
    let Some(attr) = block.body.get_attribute("version") else {
        return;
    };
    let (address, written_host) = local_names
        .iter()
        .find(|(name, _, _)| name == local_name)
        .map_or_else(
            || (ProviderAddress::implied(local_name), None),
            |(_, a, h)| (a.clone(), h.clone()),
        );
    let kind = PinKind::ProviderBlock {
        local_name: local_name.to_string(),
        address,
        written_host,
    };
    pins.extend(pin(kind, &attr.value, lines));
}

fn module_block(block: &Block, lines: &LineIndex, pins: &mut Vec<Pin>) {
    let module = first_label(block).unwrap_or_default().to_string();
    let Some(source_attr) = block.body.get_attribute("source") else {
        return;
    };
    let Expression::String(source) = &source_attr.value else {
        return;
    };
    let source = source.value().to_string();
    if let Some(attr) = block.body.get_attribute("version") {
        let kind = PinKind::ModuleVersion {
            module: module.clone(),
            source: source.clone(),
        };
        pins.extend(pin(kind, &attr.value, lines));
    }
    if crate::module_source::git_ref(&source).is_some() {
        let kind = PinKind::ModuleSource { module, source };
        pins.extend(pin(kind, &source_attr.value, lines));
    }
}

/// The `source` of every module call with a local path (`./modules/x`, `../y`).
/// Files that do not parse give none.
pub fn local_module_sources(text: &str) -> Vec<String> {
    let Ok((body, _)) = parse_hcl(text) else {
        return Vec::new();
    };
    body.blocks()
        .filter(|b| b.has_ident("module"))
        .filter_map(|b| match &b.body.get_attribute("source")?.value {
            Expression::String(s) if s.starts_with("./") || s.starts_with("../") => {
                Some(s.value().to_string())
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn provider_addresses() {
        let a = ProviderAddress::parse("registry.terraform.io/HashiCorp/aws").unwrap();
        assert_eq!(a, ProviderAddress::parse("hashicorp/aws").unwrap());
        assert_eq!(a.short(), "hashicorp/aws");
        assert_eq!(
            a.qualified("registry.opentofu.org"),
            "registry.opentofu.org/hashicorp/aws"
        );
        let p = ProviderAddress::parse("app.terraform.io/acme/foo").unwrap();
        assert_eq!(p.short(), "app.terraform.io/acme/foo");
        assert_eq!(
            ProviderAddress::parse("aws").unwrap().namespace,
            "hashicorp"
        );
        assert!(ProviderAddress::parse("a/b/c/d").is_none());
        assert!(ProviderAddress::parse("a//c").is_none());
    }

    #[test]
    fn line_index() {
        let idx = LineIndex::new("a\nbc\n\nd");
        assert_eq!(idx.line(0), 1);
        assert_eq!(idx.line(1), 1);
        assert_eq!(idx.line(2), 2);
        assert_eq!(idx.line(5), 3);
        assert_eq!(idx.line(6), 4);
    }

    #[test]
    fn finds_every_kind_of_pin() {
        let text = r#"
terraform {
  required_version = ">= 1.3"
  required_providers {
    aws = { source = "hashicorp/aws", version = "~> 5.0" }
    google = "~> 4.0"
    dyn = { source = var.x, version = "1.0" }
  }
}
provider "aws" {
  version = var.v
}
module "a" {
  source  = "terraform-aws-modules/vpc/aws"
  version = "5.1.0"
}
module "b" {
  source = "git::https://example.com/m.git?ref=v1.2.3"
}
"#;
        let pins = find_pins(Path::new("x.tf"), text).unwrap();
        let labels: Vec<String> = pins.iter().map(|p| p.kind.label()).collect();
        assert_eq!(
            labels,
            [
                "terraform required_version",
                "required_providers.aws",
                "required_providers.google (legacy string)",
                "provider \"aws\" version",
                "module \"a\" version",
                "module \"b\" source ref",
            ]
        );
        assert_eq!(pins[0].line, 3);
        assert_eq!(pins[0].value.as_deref(), Some(">= 1.3"));
        assert_eq!(&text[pins[0].span.clone()], "\">= 1.3\"");
        assert_eq!(pins[3].value, None);
    }
}
