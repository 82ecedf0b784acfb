//! `.terraform.lock.hcl`: reading and format-preserving updating (pure), and the job that
//! brings lock files in line with the provider pins (downloads, checksums, hashes; I/O).
//!
//! For each provider the lock gets the version the configuration pins (or keeps the
//! locked one when the constraints still admit it), the `h1:` hash of the package for
//! every requested platform (downloaded, verified against the registry's `SHA256SUMS`,
//! cached by checksum) and a `zh:` hash for every package listed in `SHA256SUMS`.
//! `SHA256SUMS` must be signed by one of the registry's keys for the release
//! ([`crate::signature`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hcl_edit::Span;
use hcl_edit::expr::Expression;
use tokio::sync::{OnceCell, Semaphore};

use crate::constraint::{Constraint, TfVersion};
use crate::hash::{PackageError, h1_hash_zip, parse_sha256sums, sha256_hex};
use crate::pins::text_for_parsing;
use crate::pins::{LineIndex, ParseError, PinKind, ProviderAddress};
use crate::registry::{RegistryClient, RegistryError, RequestKind};
use crate::rewrite::{quote, splice, splice_bytes};
use crate::walk::{FileError, WalkOptions, scan_files, terraform_files, write_atomic};

/// The lock file name.
pub const LOCK_FILE: &str = ".terraform.lock.hcl";

const HEADER: &str = "# This file is maintained automatically by \"terraform init\".\n# Manual edits may be lost in future updates.\n";

/// A platform: `linux_amd64`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub arch: String,
}

impl Platform {
    pub fn parse(text: &str) -> Option<Platform> {
        let (os, arch) = text.trim().split_once('_')?;
        let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
        (ok(os) && ok(arch)).then(|| Platform {
            os: os.to_string(),
            arch: arch.to_string(),
        })
    }

    /// The platform this program runs on, in Go's names.
    pub fn host() -> Platform {
        let os = match std::env::consts::OS {
            "macos" => "darwin",
            other => other,
        };
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            other => other,
        };
        Platform {
            os: os.to_string(),
            arch: arch.to_string(),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}", self.os, self.arch)
    }
}

/// One `provider "ADDRESS" { … }` block of a lock file.
#[derive(Debug, Clone)]
pub struct LockEntry {
    /// The address as written.
    pub address: String,
    pub version: Option<String>,
    version_span: Option<Range<usize>>,
    pub constraints: Option<String>,
    constraints_span: Option<Range<usize>>,
    pub hashes: Vec<String>,
    /// Span of the `[...]` array and the indentation of the `hashes` line.
    hashes_span: Option<(Range<usize>, String)>,
    /// Span of the whole block.
    block_span: Range<usize>,
    /// Indentation of attributes in the block.
    indent: String,
}

/// A parsed lock file.
#[derive(Debug, Clone, Default)]
pub struct LockFile {
    pub entries: Vec<LockEntry>,
}

fn indent_at(text: &str, offset: usize) -> String {
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    text[line_start..offset]
        .chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .collect()
}

impl LockFile {
    /// Parses a lock file's text (a leading UTF-8 BOM is accepted, as Terraform does;
    /// spans are offsets into `text`, BOM included).
    pub fn parse(file: &Path, text: &str) -> Result<LockFile, ParseError> {
        let (skip, rest) = match text.strip_prefix(crate::pins::BOM) {
            Some(rest) => (crate::pins::BOM.len(), rest),
            None => (0, text),
        };
        let mut lock = LockFile::parse_body(file, rest)?;
        if skip > 0 {
            let shift = |r: &mut Range<usize>| *r = r.start + skip..r.end + skip;
            for e in &mut lock.entries {
                for r in [e.version_span.as_mut(), e.constraints_span.as_mut()]
                    .into_iter()
                    .flatten()
                {
                    shift(r);
                }
                if let Some((r, _)) = e.hashes_span.as_mut() {
                    shift(r);
                }
                shift(&mut e.block_span);
            }
        }
        Ok(lock)
    }

    fn parse_body(file: &Path, text: &str) -> Result<LockFile, ParseError> {
        let body = hcl_edit::parser::parse_body(text).map_err(|e| ParseError {
            file: file.to_path_buf(),
            line: e.location().line(),
            column: e.location().column(),
            message: e.message().to_string(),
        })?;
        let lines = LineIndex::new(text);
        let mut entries = Vec::new();
        for block in body.blocks().filter(|b| b.has_ident("provider")) {
            let Some(address) = block.labels.first().map(|l| l.as_str().to_string()) else {
                continue;
            };
            let block_span = block.span().unwrap_or(0..0);
            let string_attr = |key: &str| {
                block.body.get_attribute(key).and_then(|a| match &a.value {
                    Expression::String(s) => Some((s.value().to_string(), a.value.span())),
                    _ => None,
                })
            };
            let (version, version_span) =
                string_attr("version").map_or((None, None), |(v, s)| (Some(v), s));
            let (constraints, constraints_span) =
                string_attr("constraints").map_or((None, None), |(v, s)| (Some(v), s));
            let mut hashes = Vec::new();
            let mut hashes_span = None;
            let mut indent = "  ".to_string();
            if let Some(attr) = block.body.attributes().next()
                && let Some(span) = attr.span()
            {
                indent = indent_at(text, span.start);
            }
            if let Some(attr) = block.body.get_attribute("hashes") {
                let Expression::Array(array) = &attr.value else {
                    return Err(ParseError {
                        file: file.to_path_buf(),
                        line: attr.span().map_or(0, |s| lines.line(s.start)),
                        column: 1,
                        message: "`hashes` is not a list".to_string(),
                    });
                };
                for item in array.iter() {
                    if let Expression::String(s) = item {
                        hashes.push(s.value().to_string());
                    }
                }
                if let (Some(value_span), Some(attr_span)) = (attr.value.span(), attr.span()) {
                    hashes_span = Some((value_span, indent_at(text, attr_span.start)));
                }
            }
            entries.push(LockEntry {
                address,
                version,
                version_span,
                constraints,
                constraints_span,
                hashes,
                hashes_span,
                block_span,
                indent,
            });
        }
        Ok(LockFile { entries })
    }
}

/// What one provider's lock entry should say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockUpdate {
    /// Fully qualified address (`registry.terraform.io/hashicorp/aws`).
    pub address: String,
    pub version: String,
    pub constraints: Option<String>,
    pub hashes: Vec<String>,
}

fn render_hashes(hashes: &[String], indent: &str) -> String {
    let mut out = String::from("[\n");
    for h in hashes {
        out.push_str(indent);
        out.push_str("  ");
        out.push_str(&quote(h));
        out.push_str(",\n");
    }
    out.push_str(indent);
    out.push(']');
    out
}

fn render_block(update: &LockUpdate) -> String {
    let mut out = format!("provider {} {{\n", quote(&update.address));
    match &update.constraints {
        Some(c) => {
            out.push_str(&format!("  version     = {}\n", quote(&update.version)));
            out.push_str(&format!("  constraints = {}\n", quote(c)));
        }
        None => out.push_str(&format!("  version = {}\n", quote(&update.version))),
    }
    out.push_str(&format!(
        "  hashes = {}\n",
        render_hashes(&update.hashes, "  ")
    ));
    out.push_str("}\n");
    out
}

/// Applies `updates` to the lock file `text` (parsed as `lock`): existing entries are
/// edited in place (version, constraints, hashes), new ones appended. Everything else
/// is kept byte for byte.
pub fn render_lock(
    text: &str,
    lock: &LockFile,
    updates: &[LockUpdate],
    same: impl Fn(&str, &str) -> bool,
) -> String {
    let (edits, appended) = lock_edits(text, lock, updates, same);
    finish_lock(splice(text, edits), &appended, updates)
}

/// [`render_lock`] on the file's bytes: `text` is [`text_for_parsing`] of `raw` (same
/// offsets), so the edits are spliced into the original bytes and any byte that is not
/// UTF-8 (in a comment) is kept as it was.
pub fn render_lock_bytes(
    raw: &[u8],
    text: &str,
    lock: &LockFile,
    updates: &[LockUpdate],
    same: impl Fn(&str, &str) -> bool,
) -> Vec<u8> {
    let (edits, appended) = lock_edits(text, lock, updates, same);
    if raw == text.as_bytes() {
        return finish_lock(splice(text, edits), &appended, updates).into_bytes();
    }
    let mut out = splice_bytes(raw, &edits);
    if !appended.is_empty() {
        if !out.ends_with(b"\n") {
            out.push(b'\n');
        }
        out.extend_from_slice(appended.as_bytes());
    }
    out
}

/// The in-place edits of `text` and the blocks to append for `updates`.
fn lock_edits(
    text: &str,
    lock: &LockFile,
    updates: &[LockUpdate],
    same: impl Fn(&str, &str) -> bool,
) -> (Vec<(Range<usize>, String)>, String) {
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    let mut appended = String::new();
    for update in updates {
        match lock
            .entries
            .iter()
            .find(|e| same(&e.address, &update.address))
        {
            Some(entry) => {
                let new_version = entry.version.as_deref() != Some(update.version.as_str());
                match (&entry.constraints_span, &update.constraints) {
                    (Some(span), Some(c)) if entry.constraints.as_deref() != Some(c.as_str()) => {
                        edits.push((span.clone(), quote(c)));
                    }
                    (None, Some(c)) => {
                        if let Some(span) = &entry.version_span {
                            // A new attribute right after `version`, like Terraform; the
                            // `version` line is realigned as `terraform fmt` aligns the
                            // `=` of consecutive one-line attributes:
                            // `version     = "…"` / `constraints = "…"`.
                            let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
                            let line_end = text[span.end..]
                                .find('\n')
                                .map_or(text.len(), |i| span.end + i);
                            let version = if new_version {
                                quote(&update.version)
                            } else {
                                text[span.clone()].to_string()
                            };
                            let lead = text[line_start..span.start].trim();
                            if lead.strip_prefix("version").map(str::trim) != Some("=") {
                                // not a line of its own: only add the attribute
                                edits.push((
                                    line_end..line_end,
                                    format!("\n{}constraints = {}", entry.indent, quote(c)),
                                ));
                            } else {
                                edits.push((
                                line_start..line_end,
                                format!(
                                    "{indent}version     = {version}{tail}\n{indent}constraints = {}",
                                    quote(c),
                                    indent = entry.indent,
                                    tail = &text[span.end..line_end],
                                ),
                            ));
                            }
                        }
                    }
                    _ => {}
                }
                if let Some(span) = &entry.version_span
                    && new_version
                    && !edits
                        .iter()
                        .any(|(r, _)| r.start <= span.start && span.end <= r.end)
                {
                    edits.push((span.clone(), quote(&update.version)));
                }
                if entry.hashes != update.hashes {
                    match &entry.hashes_span {
                        Some((span, indent)) => {
                            edits.push((span.clone(), render_hashes(&update.hashes, indent)))
                        }
                        None => {
                            let close = entry.block_span.end.saturating_sub(1);
                            edits.push((
                                close..close,
                                format!(
                                    "{}hashes = {}\n",
                                    entry.indent,
                                    render_hashes(&update.hashes, &entry.indent)
                                ),
                            ));
                        }
                    }
                }
            }
            None => {
                appended.push('\n');
                appended.push_str(&render_block(update));
            }
        }
    }
    (edits, appended)
}

/// `out` (the spliced text) with the appended blocks, and the header when the file was
/// empty.
fn finish_lock(mut out: String, appended: &str, updates: &[LockUpdate]) -> String {
    if !appended.is_empty() {
        if out.trim().is_empty() {
            // as `tofu providers lock` writes an OpenTofu lock file
            let tofu = updates
                .iter()
                .all(|u| u.address.starts_with("registry.opentofu.org/"));
            out = if tofu {
                HEADER.replace("\"terraform init\"", "\"tofu init\"")
            } else {
                HEADER.to_string()
            };
        } else if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(appended);
    }
    out
}

/// Errors computing a provider's hashes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{file}: {source}")]
    Package { file: String, source: PackageError },
    #[error("{file}: checksum mismatch: SHA256SUMS says {expected}, got {actual}")]
    Checksum {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("{file} is not listed in {url}")]
    NotInSums { file: String, url: String },
    #[error("{url}: signature not trusted: {source}")]
    Signature {
        url: String,
        source: crate::signature::SignatureError,
    },
    #[error("provider {address}: no version matches `{constraints}`")]
    NoMatchingVersion {
        address: String,
        constraints: String,
    },
}

type SharedHashes = Arc<OnceCell<Result<Arc<Vec<String>>, LockError>>>;

/// Computes package hashes once per provider version, in parallel, with a download
/// cache keyed by checksum.
#[derive(Debug)]
pub struct LockHasher {
    registry: Arc<RegistryClient>,
    platforms: Vec<Platform>,
    cache_dir: Option<PathBuf>,
    done: Mutex<HashMap<(ProviderAddress, String), SharedHashes>>,
    downloads: Semaphore,
}

impl LockHasher {
    pub fn new(
        registry: Arc<RegistryClient>,
        platforms: Vec<Platform>,
        cache_dir: Option<PathBuf>,
    ) -> LockHasher {
        LockHasher {
            registry,
            platforms,
            cache_dir,
            done: Mutex::default(),
            downloads: Semaphore::new(8),
        }
    }

    /// Sorted `h1:` (requested platforms) and `zh:` (every package) hashes.
    pub async fn hashes(
        &self,
        address: &ProviderAddress,
        version: &TfVersion,
    ) -> Result<Arc<Vec<String>>, LockError> {
        let key = (address.clone(), version.as_str().to_string());
        let cell = {
            let mut map = self
                .done
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            map.entry(key).or_default().clone()
        };
        cell.get_or_init(|| async { self.compute(address, version).await.map(Arc::new) })
            .await
            .clone()
    }

    async fn compute(
        &self,
        address: &ProviderAddress,
        version: &TfVersion,
    ) -> Result<Vec<String>, LockError> {
        let packages = futures::future::try_join_all(self.platforms.iter().map(|p| {
            self.registry
                .provider_package(address, version, &p.os, &p.arch)
        }))
        .await?;
        let Some(first) = packages.first() else {
            return Ok(Vec::new());
        };
        let sums_url = first.shasums_url.clone();
        let sums_text = self
            .registry
            .get_bytes_as(&sums_url, RequestKind::Checksums)
            .await?;
        // Like `terraform providers lock`: the hashes are trusted only when one of the
        // registry's signing keys for this release signed SHA256SUMS.
        let keys: Vec<String> = first
            .signing_keys
            .gpg_public_keys
            .iter()
            .map(|k| k.ascii_armor.clone())
            .collect();
        let sig_url = first.shasums_signature_url.clone();
        if sig_url.is_empty() {
            return Err(LockError::Signature {
                url: sums_url,
                source: crate::signature::SignatureError::BadSignature(
                    "the registry gives no shasums_signature_url".to_string(),
                ),
            });
        }
        let sig = self
            .registry
            .get_bytes_as(&sig_url, RequestKind::Checksums)
            .await?;
        crate::signature::verify_detached(&sums_text, &sig, &keys).map_err(|source| {
            LockError::Signature {
                url: sums_url.clone(),
                source,
            }
        })?;
        let sums = parse_sha256sums(&String::from_utf8_lossy(&sums_text));
        let h1s = futures::future::try_join_all(packages.iter().map(|pkg| async {
            let expected = sums
                .get(&pkg.filename)
                .ok_or_else(|| LockError::NotInSums {
                    file: pkg.filename.clone(),
                    url: sums_url.clone(),
                })?;
            if !pkg.shasum.is_empty() && !pkg.shasum.eq_ignore_ascii_case(expected) {
                return Err(LockError::Checksum {
                    file: pkg.filename.clone(),
                    expected: expected.clone(),
                    actual: format!("{} (registry metadata)", pkg.shasum),
                });
            }
            let zip = self
                .package_bytes(&pkg.download_url, &pkg.filename, expected)
                .await?;
            let filename = pkg.filename.clone();
            tokio::task::spawn_blocking(move || h1_hash_zip(&zip))
                .await
                .map_err(|e| LockError::Package {
                    file: filename.clone(),
                    source: PackageError(e.to_string()),
                })?
                .map_err(|source| LockError::Package {
                    file: filename,
                    source,
                })
        }))
        .await?;
        let mut all: BTreeSet<String> = h1s.into_iter().collect();
        // every SHA256SUMS line, the `_manifest.json` one too, as Terraform records them
        all.extend(sums.values().map(|hash| format!("zh:{hash}")));
        Ok(all.into_iter().collect())
    }

    async fn package_bytes(
        &self,
        url: &str,
        filename: &str,
        expected: &str,
    ) -> Result<Vec<u8>, LockError> {
        let cached = self
            .cache_dir
            .as_ref()
            .map(|dir| dir.join("packages").join(format!("{expected}.zip")));
        if let Some(path) = &cached
            && let Ok(bytes) = std::fs::read(path)
        {
            if sha256_hex(&bytes) == expected {
                tracing::debug!(file = filename, "package from cache");
                return Ok(bytes);
            }
            tracing::warn!(path = %path.display(), "cached package is corrupt; downloading again");
        }
        let bytes = {
            let _permit = self.downloads.acquire().await;
            self.registry.get_bytes(url).await?
        };
        let actual = sha256_hex(&bytes);
        if actual != expected {
            return Err(LockError::Checksum {
                file: filename.to_string(),
                expected: expected.to_string(),
                actual,
            });
        }
        if let Some(path) = &cached {
            let stored = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| write_atomic(path, &bytes));
            if let Err(e) = stored {
                tracing::warn!(path = %path.display(), error = %e, "cannot cache package");
            }
        }
        Ok(bytes)
    }
}

/// One provider requirement of a root module: the constraint strings naming it (none
/// for a provider that is only used, or listed in `required_providers` without a
/// `version`).
#[derive(Debug, Clone, Default)]
struct Requirement {
    constraints: Vec<String>,
}

/// What updating the lock files of a tree did.
#[derive(Debug, Clone, Default)]
pub struct LockReport {
    /// Lock files looked at.
    pub lock_files: Vec<PathBuf>,
    pub changed: Vec<PathBuf>,
    /// `(lock file, address, from, to)` version changes.
    pub versions: Vec<(PathBuf, String, Option<String>, String)>,
    pub errors: Vec<FileError>,
}

/// The name lock files give the default registry (the one `--registry-url` /
/// `TFREGISTRY_BASE_URL` names, `registry.terraform.io` unless set): its host, except a
/// loopback or IP address (a local mirror or test registry), which stands in for
/// `registry.terraform.io`.
fn lock_default_host(registry: &RegistryClient) -> String {
    let base = registry.default_host();
    let host = base.rsplit_once(':').map_or(base.as_str(), |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host == "localhost" || host.parse::<std::net::IpAddr>().is_ok() {
        crate::pins::DEFAULT_REGISTRY_HOST.to_string()
    } else {
        base
    }
}

/// `host/namespace/type`, lower-cased, of a lock entry's address (`namespace/type` gets
/// `default_host`).
fn entry_key(text: &str, default_host: &str) -> Option<String> {
    let parts: Vec<&str> = text.trim().split('/').collect();
    let key = match parts.as_slice() {
        [host, ns, name] => format!("{host}/{ns}/{name}"),
        [ns, name] => format!("{default_host}/{ns}/{name}"),
        _ => return None,
    };
    Some(key.to_ascii_lowercase())
}

/// The address to ask the registry for about a lock entry: the default registry's own
/// name leaves the host out (so `--registry-url` / `TFREGISTRY_BASE_URL` serve it), any
/// other host is asked itself, so a `registry.opentofu.org/…` entry gets OpenTofu's
/// hashes and a `registry.terraform.io/…` one Terraform's, whatever the default is.
fn fetch_address(key: &str, default_host: &str) -> Option<ProviderAddress> {
    let (host, rest) = key.split_once('/')?;
    let (namespace, name) = rest.split_once('/')?;
    Some(ProviderAddress {
        host: (!host.eq_ignore_ascii_case(default_host)).then(|| host.to_string()),
        namespace: namespace.to_string(),
        name: name.to_string(),
    })
}

/// Directories under `root` (per `opts`) that have a lock file next to `.tf` files.
pub fn lock_dirs(root: &Path, opts: &WalkOptions) -> Result<Vec<PathBuf>, FileError> {
    let files = terraform_files(root, opts)?;
    let dirs: BTreeSet<PathBuf> = files
        .iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .filter(|d| d.join(LOCK_FILE).is_file())
        .collect();
    Ok(dirs.into_iter().collect())
}

/// File contents that differ from the disk (changes not written yet), by path.
pub type Overlay = HashMap<PathBuf, String>;

/// Providers a module's files use, as Terraform infers them: every `required_providers`
/// entry (with or without `version`), every `provider "NAME"` block and the provider of
/// every `resource`/`data` block (its `provider` argument, else the type's prefix), local
/// names resolved through the module's `required_providers`, else `hashicorp/NAME`.
fn used_providers(texts: &[&str]) -> Vec<ProviderAddress> {
    let bodies: Vec<hcl_edit::structure::Body> = texts
        .iter()
        .filter_map(|t| hcl_edit::parser::parse_body(t.trim_start_matches('\u{feff}')).ok())
        .collect();
    let mut local: BTreeMap<String, ProviderAddress> = BTreeMap::new();
    for body in &bodies {
        for tf in body.blocks().filter(|b| b.has_ident("terraform")) {
            for rp in tf
                .body
                .blocks()
                .filter(|b| b.has_ident("required_providers"))
            {
                for attr in rp.body.attributes() {
                    let name = attr.key.as_str().to_string();
                    let address = match &attr.value {
                        Expression::Object(object) => {
                            let source = object.iter().find_map(|(k, v)| {
                                let key = match k {
                                    hcl_edit::expr::ObjectKey::Ident(i) => i.as_str().to_string(),
                                    hcl_edit::expr::ObjectKey::Expression(Expression::String(
                                        s,
                                    )) => s.value().to_string(),
                                    hcl_edit::expr::ObjectKey::Expression(_) => return None,
                                };
                                (key == "source").then(|| v.expr().clone())
                            });
                            match source {
                                Some(Expression::String(s)) => ProviderAddress::parse(s.value()),
                                Some(_) => None,
                                None => Some(ProviderAddress::implied(&name)),
                            }
                        }
                        _ => Some(ProviderAddress::implied(&name)),
                    };
                    if let Some(address) = address {
                        local.insert(name, address);
                    }
                }
            }
        }
    }
    let resolve = |name: &str| {
        local
            .get(name)
            .cloned()
            .unwrap_or_else(|| ProviderAddress::implied(name))
    };
    let mut out: Vec<ProviderAddress> = local.values().cloned().collect();
    for body in &bodies {
        for block in body.blocks() {
            let label = block.labels.first().map(|l| l.as_str().to_string());
            match (block.ident.as_str(), label) {
                ("provider", Some(name)) => out.push(resolve(&name)),
                ("resource" | "data" | "ephemeral", Some(kind)) => {
                    let name = match block.body.get_attribute("provider").map(|a| &a.value) {
                        // `provider = aws.west`
                        Some(Expression::Traversal(t)) => match &t.expr {
                            Expression::Variable(v) => v.as_str().to_string(),
                            _ => continue,
                        },
                        Some(Expression::Variable(v)) => v.as_str().to_string(),
                        Some(_) => continue,
                        None => kind.split('_').next().unwrap_or_default().to_string(),
                    };
                    if !name.is_empty() && name != "terraform" {
                        out.push(resolve(&name));
                    }
                }
                _ => {}
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Provider requirements of the root module in `dir`, following local module calls;
/// file contents come from `overlay` when present there.
fn requirements(
    dir: &Path,
    overlay: &Overlay,
) -> Result<BTreeMap<ProviderAddress, Requirement>, FileError> {
    let mut out: BTreeMap<ProviderAddress, Requirement> = BTreeMap::new();
    let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
    let mut queue = vec![dir.to_path_buf()];
    while let Some(d) = queue.pop() {
        let canonical = d.canonicalize().unwrap_or_else(|_| d.clone());
        if !seen.insert(canonical) || seen.len() > 500 {
            continue;
        }
        let files = terraform_files(&d, &WalkOptions::default())?;
        let (on_disk, changed): (Vec<PathBuf>, Vec<PathBuf>) =
            files.into_iter().partition(|f| !overlay.contains_key(f));
        let (mut scanned, errors) = scan_files(&on_disk);
        if let Some(err) = errors.into_iter().next() {
            return Err(err);
        }
        for path in changed {
            let text = overlay.get(&path).cloned().unwrap_or_default();
            let pins = crate::pins::find_pins(&path, &text).map_err(|e| FileError {
                file: path.clone(),
                message: e.to_string(),
            })?;
            scanned.push(crate::walk::ScannedFile { path, text, pins });
        }
        for file in &scanned {
            for pin in &file.pins {
                if let (
                    PinKind::RequiredProvider { address, .. }
                    | PinKind::ProviderBlock { address, .. },
                    Some(value),
                ) = (&pin.kind, &pin.value)
                {
                    let req = out.entry(address.clone()).or_default();
                    if !req.constraints.contains(value) {
                        req.constraints.push(value.clone());
                    }
                }
            }
            for source in crate::pins::local_module_sources(&file.text) {
                queue.push(d.join(source));
            }
        }
        let texts: Vec<&str> = scanned.iter().map(|f| f.text.as_str()).collect();
        for address in used_providers(&texts) {
            out.entry(address).or_default();
        }
    }
    Ok(out)
}

/// The `constraints` string Terraform records for a provider's constraint strings
/// (`getproviders.VersionConstraintsString`): every clause with its operator and the
/// version as written, duplicates dropped, `, `-separated; `None` without any.
fn constraints_text(constraints: &[String]) -> Option<String> {
    let mut clauses: Vec<String> = Vec::new();
    for text in constraints {
        let parsed = Constraint::parse(text).ok();
        let pieces: Vec<String> = match parsed {
            Some(c) => c
                .clauses
                .iter()
                .map(|clause| {
                    let op = match clause.op {
                        crate::constraint::Op::Eq => "",
                        crate::constraint::Op::Ne => "!= ",
                        crate::constraint::Op::Gt => "> ",
                        crate::constraint::Op::Ge => ">= ",
                        crate::constraint::Op::Lt => "< ",
                        crate::constraint::Op::Le => "<= ",
                        crate::constraint::Op::Pessimistic => "~> ",
                    };
                    format!("{op}{}", clause.version.as_str())
                })
                .collect(),
            None => vec![text.trim().to_string()],
        };
        for p in pieces {
            if !clauses.contains(&p) {
                clauses.push(p);
            }
        }
    }
    (!clauses.is_empty()).then(|| clauses.join(", "))
}

/// Chooses the version to lock: the locked one while the constraints admit it, else the
/// exact pin, else the newest stable release the constraints admit.
async fn choose_version(
    registry: &RegistryClient,
    address: &ProviderAddress,
    constraints: &[Constraint],
    locked: Option<&str>,
) -> Result<TfVersion, LockError> {
    let admits = |v: &TfVersion| constraints.iter().all(|c| c.admits(v));
    if let Some(v) = locked.and_then(|l| TfVersion::parse(l).ok())
        && admits(&v)
    {
        return Ok(v);
    }
    if let Some(v) = constraints.iter().find_map(|c| c.exact())
        && admits(v)
    {
        return Ok(v.clone());
    }
    let releases = registry.provider_versions(address).await?;
    releases
        .iter()
        .map(|r| &r.version)
        .filter(|v| !v.is_prerelease() && admits(v))
        .max()
        .cloned()
        .ok_or_else(|| LockError::NoMatchingVersion {
            address: address.to_string(),
            constraints: constraints
                .iter()
                .flat_map(|c| c.clauses.iter())
                .map(|c| c.version.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The lock file of `dir` as it should be: `(current text, new text, version changes)`.
///
/// As `terraform providers lock`: every provider the configuration uses gets an entry
/// (its locked version kept while the constraints admit it, else the exact pin, else the
/// newest release they admit), `constraints` as the configuration writes them, and the
/// hashes of that version (`h1:` of each platform and `zh:` of every `SHA256SUMS` line;
/// merged with the hashes already recorded while the version stays). Entries the
/// configuration does not name are kept as they are.
///
/// The file is read as bytes: a UTF-8 BOM and bytes outside UTF-8 (in comments) are
/// kept byte for byte; a file that does not parse is an error naming it (and is left
/// alone by the callers).
pub async fn locked_text(
    dir: &Path,
    overlay: &Overlay,
    hasher: &LockHasher,
    registry: &RegistryClient,
) -> Result<(Vec<u8>, Vec<u8>, Vec<(String, Option<String>, String)>), FileError> {
    let path = dir.join(LOCK_FILE);
    let file_err = |message: String| FileError {
        file: path.clone(),
        message,
    };
    let raw = std::fs::read(&path)
        .map_err(|e| file_err(format!("{}: cannot read: {e}", path.display())))?;
    let text = text_for_parsing(&raw).into_owned();
    let lock = LockFile::parse(&path, &text).map_err(|e| file_err(e.to_string()))?;
    let reqs = requirements(dir, overlay)?;
    let default_host = lock_default_host(registry);
    // one requirement per lock address (`hashicorp/aws` and `registry.terraform.io/
    // hashicorp/aws` are the same provider; `registry.opentofu.org/hashicorp/aws` is not)
    let mut by_key: BTreeMap<String, (ProviderAddress, Vec<String>)> = BTreeMap::new();
    for (address, req) in &reqs {
        let key = address.qualified(&default_host).to_ascii_lowercase();
        let Some(fetch) = fetch_address(&key, &default_host) else {
            continue;
        };
        let slot = by_key.entry(key).or_insert_with(|| (fetch, Vec::new()));
        for c in &req.constraints {
            if !slot.1.contains(c) {
                slot.1.push(c.clone());
            }
        }
    }
    let results = futures::future::join_all(by_key.iter().map(|(key, (address, constraints))| {
        let existing = lock
            .entries
            .iter()
            .find(|e| entry_key(&e.address, &default_host).as_deref() == Some(key.as_str()));
        entry_update(registry, hasher, key, address, constraints, existing)
    }))
    .await;
    let mut updates = Vec::new();
    let mut versions = Vec::new();
    for result in results {
        let (update, change) = result.map_err(|e| file_err(format!("{}: {e}", path.display())))?;
        updates.push(update);
        versions.extend(change);
    }
    let new_raw = render_lock_bytes(&raw, &text, &lock, &updates, |entry, update| {
        entry_key(entry, &default_host) == entry_key(update, &default_host)
    });
    Ok((raw, new_raw, versions))
}

/// What one provider's lock entry should say, and its version change if any.
async fn entry_update(
    registry: &RegistryClient,
    hasher: &LockHasher,
    key: &str,
    address: &ProviderAddress,
    constraint_texts: &[String],
    existing: Option<&LockEntry>,
) -> Result<(LockUpdate, Option<(String, Option<String>, String)>), String> {
    let constraints: Vec<Constraint> = constraint_texts
        .iter()
        .filter_map(|c| Constraint::parse(c).ok())
        .collect();
    let locked = existing.and_then(|e| e.version.as_deref());
    let version = choose_version(registry, address, &constraints, locked)
        .await
        .map_err(|e| format!("{key}: {e}"))?;
    let computed = hasher
        .hashes(address, &version)
        .await
        .map_err(|e| format!("{key} {version}: {e}"))?;
    let same_version = locked.is_some_and(|l| TfVersion::parse(l).is_ok_and(|l| l == version));
    let hashes: Vec<String> = if same_version {
        let mut all: BTreeSet<String> = existing
            .map(|e| e.hashes.iter().cloned().collect())
            .unwrap_or_default();
        all.extend(computed.iter().cloned());
        all.into_iter().collect()
    } else {
        computed.to_vec()
    };
    let version_text = match locked {
        Some(l) if same_version => l.to_string(),
        _ => version.to_string(),
    };
    let change = (!same_version).then(|| {
        (
            address.to_string(),
            locked.map(str::to_string),
            version_text.clone(),
        )
    });
    Ok((
        LockUpdate {
            address: existing.map_or_else(|| key.to_string(), |e| e.address.clone()),
            version: version_text,
            constraints: constraints_text(constraint_texts),
            hashes,
        },
        change,
    ))
}

/// Updates one lock file; returns whether it changed and the version changes.
async fn update_lock_dir(
    dir: &Path,
    hasher: &LockHasher,
    registry: &RegistryClient,
    dry_run: bool,
) -> Result<(bool, Vec<(String, Option<String>, String)>), FileError> {
    let path = dir.join(LOCK_FILE);
    let (text, new_text, versions) = locked_text(dir, &Overlay::new(), hasher, registry).await?;
    if new_text == text {
        return Ok((false, versions));
    }
    if !dry_run {
        write_atomic(&path, &new_text).map_err(|e| FileError {
            file: path.clone(),
            message: format!("{}: cannot write: {e}", path.display()),
        })?;
    }
    Ok((true, versions))
}

/// Updates every lock file under `root` (per `opts`). Lock files are processed
/// concurrently; each provider version is hashed once.
pub async fn update_locks(
    root: &Path,
    opts: &WalkOptions,
    registry: Arc<RegistryClient>,
    platforms: Vec<Platform>,
    cache_dir: Option<PathBuf>,
    dry_run: bool,
) -> Result<LockReport, FileError> {
    let dirs = lock_dirs(root, opts)?;
    let hasher = LockHasher::new(registry.clone(), platforms, cache_dir);
    let results = futures::future::join_all(
        dirs.iter()
            .map(|dir| update_lock_dir(dir, &hasher, &registry, dry_run)),
    )
    .await;
    let mut report = LockReport::default();
    for (dir, result) in dirs.iter().zip(results) {
        let path = dir.join(LOCK_FILE);
        report.lock_files.push(path.clone());
        match result {
            Ok((changed, versions)) => {
                if changed {
                    report.changed.push(path.clone());
                }
                report.versions.extend(
                    versions
                        .into_iter()
                        .map(|(a, f, t)| (path.clone(), a, f, t)),
                );
            }
            Err(e) => report.errors.push(e),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const LOCK: &str = r#"# This file is maintained automatically by "terraform init".
# Manual edits may be lost in future updates.

provider "registry.terraform.io/hashicorp/aws" {
  version     = "5.31.0"
  constraints = "5.31.0"
  hashes = [
    "h1:old=",
    "zh:0000000000000000000000000000000000000000000000000000000000000000",
  ]
}

provider "registry.terraform.io/hashicorp/random" {
  version = "3.6.0"
  hashes = [
    "h1:rand=",
  ]
}
"#;

    #[test]
    fn parses_lock_files() {
        let lock = LockFile::parse(Path::new(LOCK_FILE), LOCK).unwrap();
        assert_eq!(lock.entries.len(), 2);
        assert_eq!(
            lock.entries[0].address,
            "registry.terraform.io/hashicorp/aws"
        );
        assert_eq!(lock.entries[0].version.as_deref(), Some("5.31.0"));
        assert_eq!(lock.entries[0].constraints.as_deref(), Some("5.31.0"));
        assert_eq!(lock.entries[0].hashes.len(), 2);
        assert_eq!(lock.entries[1].constraints, None);
    }

    #[test]
    fn renders_updates_in_place_and_appends_new_providers() {
        let lock = LockFile::parse(Path::new(LOCK_FILE), LOCK).unwrap();
        let updates = vec![
            LockUpdate {
                address: "registry.terraform.io/hashicorp/aws".into(),
                version: "5.70.0".into(),
                constraints: Some("5.70.0".into()),
                hashes: vec!["h1:new=".into(), "zh:1111".into()],
            },
            LockUpdate {
                address: "registry.terraform.io/hashicorp/tls".into(),
                version: "4.0.6".into(),
                constraints: Some("~> 4.0".into()),
                hashes: vec!["h1:tls=".into()],
            },
        ];
        let out = render_lock(LOCK, &lock, &updates, |a, b| a == b);
        let expected = LOCK
            .replace("version     = \"5.31.0\"", "version     = \"5.70.0\"")
            .replace("constraints = \"5.31.0\"", "constraints = \"5.70.0\"")
            .replace(
                "    \"h1:old=\",\n    \"zh:0000000000000000000000000000000000000000000000000000000000000000\",\n",
                "    \"h1:new=\",\n    \"zh:1111\",\n",
            )
            + "\nprovider \"registry.terraform.io/hashicorp/tls\" {\n  version     = \"4.0.6\"\n  constraints = \"~> 4.0\"\n  hashes = [\n    \"h1:tls=\",\n  ]\n}\n";
        assert_eq!(out, expected);
        // applying the same update again changes nothing
        let lock2 = LockFile::parse(Path::new(LOCK_FILE), &out).unwrap();
        assert_eq!(render_lock(&out, &lock2, &updates, |a, b| a == b), out);
    }

    #[test]
    fn adds_constraints_after_version_when_missing() {
        let lock = LockFile::parse(Path::new(LOCK_FILE), LOCK).unwrap();
        let updates = vec![LockUpdate {
            address: "registry.terraform.io/hashicorp/random".into(),
            version: "3.6.0".into(),
            constraints: Some("~> 3.6".into()),
            hashes: vec!["h1:rand=".into()],
        }];
        let out = render_lock(LOCK, &lock, &updates, |a, b| a == b);
        assert!(
            out.contains("  version     = \"3.6.0\"\n  constraints = \"~> 3.6\"\n  hashes = ["),
            "{out}"
        );
        // with a new version at the same time
        let updates = vec![LockUpdate {
            version: "3.6.2".into(),
            ..updates[0].clone()
        }];
        let out = render_lock(LOCK, &lock, &updates, |a, b| a == b);
        assert!(
            out.contains("  version     = \"3.6.2\"\n  constraints = \"~> 3.6\"\n  hashes = ["),
            "{out}"
        );
        let again = LockFile::parse(Path::new(LOCK_FILE), &out).unwrap();
        assert_eq!(render_lock(&out, &again, &updates, |a, b| a == b), out);
    }

    #[test]
    fn bom_and_non_utf8_comment_bytes_survive_a_lock_update() {
        let mut raw = b"\xef\xbb\xbf# caf\xe9 \xff\n".to_vec();
        raw.extend_from_slice(LOCK.as_bytes());
        let text = text_for_parsing(&raw).into_owned();
        let lock = LockFile::parse(Path::new(LOCK_FILE), &text).unwrap();
        assert_eq!(lock.entries.len(), 2);
        let updates = vec![LockUpdate {
            address: "registry.terraform.io/hashicorp/random".into(),
            version: "3.6.1".into(),
            constraints: None,
            hashes: vec!["h1:new=".into()],
        }];
        let out = render_lock_bytes(&raw, &text, &lock, &updates, |a, b| a == b);
        let mut want = b"\xef\xbb\xbf# caf\xe9 \xff\n".to_vec();
        want.extend_from_slice(
            LOCK.replace("version = \"3.6.0\"", "version = \"3.6.1\"")
                .replace("\"h1:rand=\"", "\"h1:new=\"")
                .as_bytes(),
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&want)
        );
        assert_eq!(out, want);
    }

    #[test]
    fn new_lock_file_gets_the_header() {
        let updates = vec![LockUpdate {
            address: "registry.terraform.io/hashicorp/null".into(),
            version: "3.2.0".into(),
            constraints: None,
            hashes: vec!["h1:n=".into()],
        }];
        let out = render_lock("", &LockFile::default(), &updates, |a, b| a == b);
        assert!(out.starts_with(HEADER));
        assert!(out.contains(
            "provider \"registry.terraform.io/hashicorp/null\" {\n  version = \"3.2.0\"\n"
        ));
    }

    #[test]
    fn platforms() {
        assert_eq!(
            Platform::parse("linux_amd64").unwrap().to_string(),
            "linux_amd64"
        );
        assert_eq!(Platform::parse("darwin_arm64").unwrap().arch, "arm64");
        assert!(Platform::parse("linux").is_none());
        assert!(Platform::parse("_amd64").is_none());
        assert!(Platform::parse(&Platform::host().to_string()).is_some());
    }
}
