//! Terraform registry protocol client (providers and modules): service discovery
//! (`/.well-known/terraform.json`), version lists, provider package downloads.
//!
//! Every distinct lookup is made once per client, however many callers ask for it at the
//! same time (a per-key `OnceCell`), so a run makes one request per distinct provider or
//! module. Tokens come from `TF_TOKEN_<host>` like Terraform's; they are sent as bearer
//! tokens to their host only and never logged.
//!
//! Reaching a registry works as for Terraform: `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` are
//! honoured, and the trusted roots are the system's (or `SSL_CERT_FILE`/`SSL_CERT_DIR`,
//! which replace them as for OpenSSL and Go) plus the PEM certificates of
//! `OPSBOT_EXTRA_CA_FILE` (a corporate TLS-inspecting proxy, a test CA). Every request is
//! counted by kind ([`RegistryClient::stats`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::constraint::TfVersion;
use crate::module_source::ModuleAddress;
use crate::pins::{DEFAULT_REGISTRY_HOST, ProviderAddress};

/// Errors talking to a registry. Cloneable so one failed lookup can be shared by every
/// caller waiting on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid registry URL `{url}`: {message}")]
    BadUrl { url: String, message: String },
    #[error("GET {url}: {message}")]
    Http { url: String, message: String },
    #[error("GET {url}: HTTP {status}{hint}")]
    Status {
        url: String,
        status: u16,
        hint: String,
    },
    #[error("GET {url}: unexpected response: {message}")]
    Decode { url: String, message: String },
    #[error("{host} does not offer the Terraform registry service `{service}`")]
    NoService { host: String, service: String },
    #[error("{what}: no versions found")]
    NoVersions { what: String },
    #[error("{0}")]
    Other(String),
}

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// `registry.terraform.io`, `https://registry.opentofu.org`, `http://127.0.0.1:8080`.
    pub base_url: String,
    /// Host (without port) → token, from `TF_TOKEN_*`.
    pub tokens: HashMap<String, String>,
    pub timeout: std::time::Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            base_url: DEFAULT_REGISTRY_HOST.to_string(),
            tokens: HashMap::new(),
            timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// `TF_TOKEN_app_terraform_io` → (`app.terraform.io`, token). Terraform spells dots as
/// `_` and dashes as `__` in the variable name.
pub fn tokens_from_env(
    vars: impl IntoIterator<Item = (String, String)>,
) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (key, value) in vars {
        let Some(host) = key.strip_prefix("TF_TOKEN_") else {
            continue;
        };
        if host.is_empty() || value.is_empty() {
            continue;
        }
        let host = host
            .replace("__", "\u{0}")
            .replace('_', ".")
            .replace('\u{0}', "-");
        out.insert(host.to_ascii_lowercase(), value);
    }
    out
}

/// One provider release as listed by the registry.
#[derive(Debug, Clone)]
pub struct ProviderRelease {
    pub version: TfVersion,
    /// `(os, arch)` pairs it is built for.
    pub platforms: Vec<(String, String)>,
}

/// Where to download one provider package, from `…/download/{os}/{arch}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderPackage {
    pub os: String,
    pub arch: String,
    pub filename: String,
    pub download_url: String,
    pub shasums_url: String,
    #[serde(default)]
    pub shasums_signature_url: String,
    /// Hex SHA-256 of the zip.
    pub shasum: String,
    #[serde(default)]
    pub signing_keys: SigningKeys,
}

/// The keys a release's `SHA256SUMS` must be signed with.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SigningKeys {
    #[serde(default)]
    pub gpg_public_keys: Vec<GpgPublicKey>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GpgPublicKey {
    #[serde(default)]
    pub key_id: String,
    #[serde(default)]
    pub ascii_armor: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    #[serde(rename = "providers.v1")]
    providers: Option<String>,
    #[serde(rename = "modules.v1")]
    modules: Option<String>,
}

#[derive(Deserialize)]
struct ProviderVersionsDoc {
    versions: Vec<ProviderVersionDoc>,
}

#[derive(Deserialize)]
struct ProviderVersionDoc {
    version: String,
    #[serde(default)]
    platforms: Vec<PlatformDoc>,
}

#[derive(Deserialize)]
struct PlatformDoc {
    os: String,
    arch: String,
}

#[derive(Deserialize)]
struct ModuleVersionsDoc {
    modules: Vec<ModuleVersionsEntry>,
}

#[derive(Deserialize)]
struct ModuleVersionsEntry {
    versions: Vec<ModuleVersionDoc>,
}

#[derive(Deserialize)]
struct ModuleVersionDoc {
    version: String,
}

type Shared<T> = Arc<OnceCell<Result<T, RegistryError>>>;

/// What a registry request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// `/.well-known/terraform.json`
    Discovery,
    /// A provider's or module's version list.
    Versions,
    /// A provider package's download metadata (`…/download/{os}/{arch}`).
    PackageMeta,
    /// `SHA256SUMS` and its signature.
    Checksums,
    /// A provider package (zip).
    Archive,
}

/// Requests a [`RegistryClient`] made, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestStats {
    pub discovery: usize,
    pub versions: usize,
    pub package_meta: usize,
    pub checksums: usize,
    pub archives: usize,
}

impl RequestStats {
    pub fn total(&self) -> usize {
        self.discovery + self.versions + self.package_meta + self.checksums + self.archives
    }
}

impl std::fmt::Display for RequestStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} registry requests ({} discovery, {} version lists, {} package metadata, {} checksum documents/signatures, {} package downloads)",
            self.total(),
            self.discovery,
            self.versions,
            self.package_meta,
            self.checksums,
            self.archives
        )
    }
}

#[derive(Debug, Default)]
struct Counters([AtomicUsize; 5]);

impl Counters {
    fn add(&self, kind: RequestKind) {
        let i = match kind {
            RequestKind::Discovery => 0,
            RequestKind::Versions => 1,
            RequestKind::PackageMeta => 2,
            RequestKind::Checksums => 3,
            RequestKind::Archive => 4,
        };
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> RequestStats {
        let n = |i: usize| self.0[i].load(Ordering::Relaxed);
        RequestStats {
            discovery: n(0),
            versions: n(1),
            package_meta: n(2),
            checksums: n(3),
            archives: n(4),
        }
    }
}

/// `err` and its sources, `: `-separated (reqwest's own message hides the cause: an
/// unknown certificate issuer, a refused proxy connection).
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

/// Extra trusted roots: the PEM certificates in `OPSBOT_EXTRA_CA_FILE`.
fn extra_roots() -> Result<Vec<reqwest::Certificate>, RegistryError> {
    let Some(path) = std::env::var_os("OPSBOT_EXTRA_CA_FILE").filter(|p| !p.is_empty()) else {
        return Ok(Vec::new());
    };
    let pem = std::fs::read(&path).map_err(|e| {
        RegistryError::Other(format!(
            "OPSBOT_EXTRA_CA_FILE {}: {e}",
            std::path::Path::new(&path).display()
        ))
    })?;
    reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        RegistryError::Other(format!(
            "OPSBOT_EXTRA_CA_FILE {}: not PEM certificates: {e}",
            std::path::Path::new(&path).display()
        ))
    })
}

/// A registry's base URL and its discovered services.
type Services = Arc<(Url, Discovery)>;

/// A registry client with a per-run cache.
#[derive(Debug)]
pub struct RegistryClient {
    http: reqwest::Client,
    base: Url,
    tokens: HashMap<String, String>,
    discovery: Mutex<HashMap<String, Shared<Services>>>,
    providers: Mutex<HashMap<ProviderAddress, Shared<Arc<Vec<ProviderRelease>>>>>,
    modules: Mutex<HashMap<ModuleAddress, Shared<Arc<Vec<TfVersion>>>>>,
    packages: Mutex<HashMap<PackageKey, Shared<ProviderPackage>>>,
    requests: AtomicUsize,
    counters: Counters,
}

/// `(provider, version, os, arch)`
type PackageKey = (ProviderAddress, String, String, String);

fn shared<K: std::hash::Hash + Eq + Clone, T>(
    map: &Mutex<HashMap<K, Shared<T>>>,
    key: &K,
) -> Shared<T> {
    let mut map = map
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    map.entry(key.clone()).or_default().clone()
}

/// Parses `registry.terraform.io` or a URL into a base URL.
pub fn parse_base_url(text: &str) -> Result<Url, RegistryError> {
    let with_scheme = if text.contains("://") {
        text.to_string()
    } else {
        format!("https://{text}")
    };
    let mut url = Url::parse(&with_scheme).map_err(|e| RegistryError::BadUrl {
        url: text.to_string(),
        message: e.to_string(),
    })?;
    if url.host_str().is_none() {
        return Err(RegistryError::BadUrl {
            url: text.to_string(),
            message: "no host".to_string(),
        });
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

fn host_key(url: &Url) -> String {
    match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    }
}

impl RegistryClient {
    pub fn new(options: RegistryOptions) -> Result<RegistryClient, RegistryError> {
        let base = parse_base_url(&options.base_url)?;
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("opsbot-tfupdate/", env!("CARGO_PKG_VERSION")))
            .timeout(options.timeout)
            .connect_timeout(Duration::from_secs(30).min(options.timeout));
        let extra = extra_roots()?;
        if !extra.is_empty() {
            builder = builder.tls_certs_merge(extra);
        }
        let http = builder.build().map_err(|e| {
            RegistryError::Other(format!("cannot build HTTP client: {}", error_chain(&e)))
        })?;
        Ok(RegistryClient {
            http,
            base,
            tokens: options.tokens,
            discovery: Mutex::default(),
            providers: Mutex::default(),
            modules: Mutex::default(),
            packages: Mutex::default(),
            requests: AtomicUsize::new(0),
            counters: Counters::default(),
        })
    }

    /// The default registry's host, as written in lock files (`registry.terraform.io`).
    pub fn default_host(&self) -> String {
        host_key(&self.base)
    }

    /// How many HTTP requests this client has made.
    pub fn requests_made(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// The requests this client has made, by kind.
    pub fn stats(&self) -> RequestStats {
        self.counters.get()
    }

    /// `address` with the host left out when it is the default registry's, so that
    /// `hashicorp/aws` and `registry.terraform.io/hashicorp/aws` share one cache entry.
    fn canonical(&self, address: &ProviderAddress) -> ProviderAddress {
        let mut a = address.clone();
        if a.host
            .as_deref()
            .is_some_and(|h| h.eq_ignore_ascii_case(&host_key(&self.base)))
        {
            a.host = None;
        }
        a
    }

    fn base_for(&self, host: Option<&str>) -> Result<Url, RegistryError> {
        match host {
            None => Ok(self.base.clone()),
            Some(h) if h == host_key(&self.base) => Ok(self.base.clone()),
            Some(h) => parse_base_url(h),
        }
    }

    fn token_for(&self, url: &Url) -> Option<&str> {
        let host = url.host_str()?.to_ascii_lowercase();
        self.tokens.get(&host).map(String::as_str)
    }

    async fn get(&self, url: &Url, kind: RequestKind) -> Result<reqwest::Response, RegistryError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.counters.add(kind);
        let mut req = self.http.get(url.clone());
        if let Some(token) = self.token_for(url) {
            req = req.bearer_auth(token);
        }
        tracing::debug!(%url, "registry request");
        let resp = req.send().await.map_err(|e| RegistryError::Http {
            url: url.to_string(),
            message: error_chain(&e),
        })?;
        let status = resp.status();
        if !status.is_success() {
            let hint = match status.as_u16() {
                401 | 403 => {
                    let var = url
                        .host_str()
                        .map(|h| format!("TF_TOKEN_{}", h.replace('-', "__").replace('.', "_")))
                        .unwrap_or_default();
                    format!(" (set {var} to a token for this registry)")
                }
                404 => " (not found)".to_string(),
                _ => String::new(),
            };
            return Err(RegistryError::Status {
                url: url.to_string(),
                status: status.as_u16(),
                hint,
            });
        }
        Ok(resp)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &Url,
        kind: RequestKind,
    ) -> Result<T, RegistryError> {
        let resp = self.get(url, kind).await?;
        let bytes = resp.bytes().await.map_err(|e| RegistryError::Http {
            url: url.to_string(),
            message: error_chain(&e),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| RegistryError::Decode {
            url: url.to_string(),
            message: e.to_string(),
        })
    }

    /// Downloads `url` (absolute, or relative to the registry base) into memory.
    pub async fn get_bytes(&self, url: &str) -> Result<Vec<u8>, RegistryError> {
        self.get_bytes_as(url, RequestKind::Archive).await
    }

    /// [`Self::get_bytes`], counted as `kind`.
    pub async fn get_bytes_as(
        &self,
        url: &str,
        kind: RequestKind,
    ) -> Result<Vec<u8>, RegistryError> {
        let url = self.base.join(url).map_err(|e| RegistryError::BadUrl {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        let resp = self.get(&url, kind).await?;
        let bytes = resp.bytes().await.map_err(|e| RegistryError::Http {
            url: url.to_string(),
            message: error_chain(&e),
        })?;
        Ok(bytes.to_vec())
    }

    async fn services(&self, host: Option<&str>) -> Result<Services, RegistryError> {
        let base = self.base_for(host)?;
        let cell = shared(&self.discovery, &host_key(&base));
        cell.get_or_init(|| async {
            let url =
                base.join(".well-known/terraform.json")
                    .map_err(|e| RegistryError::BadUrl {
                        url: base.to_string(),
                        message: e.to_string(),
                    })?;
            let doc: Discovery = self.get_json(&url, RequestKind::Discovery).await?;
            Ok(Arc::new((base.clone(), doc)))
        })
        .await
        .clone()
    }

    async fn service_url(&self, host: Option<&str>, service: &str) -> Result<Url, RegistryError> {
        let services = self.services(host).await?;
        let (base, doc) = &*services;
        let path = match service {
            "providers.v1" => doc.providers.as_deref(),
            _ => doc.modules.as_deref(),
        };
        let path = path.ok_or_else(|| RegistryError::NoService {
            host: host_key(base),
            service: service.to_string(),
        })?;
        let path = if path.ends_with('/') {
            path.to_string()
        } else {
            format!("{path}/")
        };
        base.join(&path).map_err(|e| RegistryError::BadUrl {
            url: path.clone(),
            message: e.to_string(),
        })
    }

    fn join(base: &Url, rest: &str) -> Result<Url, RegistryError> {
        base.join(rest).map_err(|e| RegistryError::BadUrl {
            url: rest.to_string(),
            message: e.to_string(),
        })
    }

    /// All releases of a provider (one request per provider per client).
    pub async fn provider_versions(
        &self,
        address: &ProviderAddress,
    ) -> Result<Arc<Vec<ProviderRelease>>, RegistryError> {
        let address = &self.canonical(address);
        let cell = shared(&self.providers, address);
        cell.get_or_init(|| async {
            let base = self
                .service_url(address.host.as_deref(), "providers.v1")
                .await?;
            let url = Self::join(
                &base,
                &format!("{}/{}/versions", address.namespace, address.name),
            )?;
            let doc: ProviderVersionsDoc = self.get_json(&url, RequestKind::Versions).await?;
            let releases: Vec<ProviderRelease> = doc
                .versions
                .into_iter()
                .filter_map(|v| {
                    Some(ProviderRelease {
                        version: TfVersion::parse(&v.version).ok()?,
                        platforms: v.platforms.into_iter().map(|p| (p.os, p.arch)).collect(),
                    })
                })
                .collect();
            if releases.is_empty() {
                return Err(RegistryError::NoVersions {
                    what: format!("provider {address}"),
                });
            }
            Ok(Arc::new(releases))
        })
        .await
        .clone()
    }

    /// All versions of a registry module (one request per module per client).
    pub async fn module_versions(
        &self,
        address: &ModuleAddress,
    ) -> Result<Arc<Vec<TfVersion>>, RegistryError> {
        let cell = shared(&self.modules, address);
        cell.get_or_init(|| async {
            let base = self
                .service_url(address.host.as_deref(), "modules.v1")
                .await?;
            let url = Self::join(
                &base,
                &format!(
                    "{}/{}/{}/versions",
                    address.namespace, address.name, address.system
                ),
            )?;
            let doc: ModuleVersionsDoc = self.get_json(&url, RequestKind::Versions).await?;
            let versions: Vec<TfVersion> = doc
                .modules
                .into_iter()
                .flat_map(|m| m.versions)
                .filter_map(|v| TfVersion::parse(&v.version).ok())
                .collect();
            if versions.is_empty() {
                return Err(RegistryError::NoVersions {
                    what: format!("module {address}"),
                });
            }
            Ok(Arc::new(versions))
        })
        .await
        .clone()
    }

    /// Download metadata of one provider package (one request per package per client).
    pub async fn provider_package(
        &self,
        address: &ProviderAddress,
        version: &TfVersion,
        os: &str,
        arch: &str,
    ) -> Result<ProviderPackage, RegistryError> {
        let address = &self.canonical(address);
        let key = (
            address.clone(),
            version.as_str().to_string(),
            os.to_string(),
            arch.to_string(),
        );
        let cell = shared(&self.packages, &key);
        cell.get_or_init(|| async {
            let base = self
                .service_url(address.host.as_deref(), "providers.v1")
                .await?;
            let url = Self::join(
                &base,
                &format!(
                    "{}/{}/{}/download/{os}/{arch}",
                    address.namespace, address.name, version
                ),
            )?;
            let mut pkg: ProviderPackage = self.get_json(&url, RequestKind::PackageMeta).await?;
            // relative URLs are relative to the download endpoint
            for field in [
                &mut pkg.download_url,
                &mut pkg.shasums_url,
                &mut pkg.shasums_signature_url,
            ] {
                if field.is_empty() {
                    continue;
                }
                if let Ok(abs) = url.join(field) {
                    *field = abs.to_string();
                }
            }
            Ok(pkg)
        })
        .await
        .clone()
    }
}

/// The newest version, stable only unless `pre_release`.
pub fn latest<'a>(
    versions: impl IntoIterator<Item = &'a TfVersion>,
    pre_release: bool,
) -> Option<&'a TfVersion> {
    versions
        .into_iter()
        .filter(|v| pre_release || !v.is_prerelease())
        .max()
}

/// Versions sorted newest first, stable only unless `pre_release`.
pub fn sorted_desc<'a>(
    versions: impl IntoIterator<Item = &'a TfVersion>,
    pre_release: bool,
) -> Vec<&'a TfVersion> {
    let mut out: Vec<&TfVersion> = versions
        .into_iter()
        .filter(|v| pre_release || !v.is_prerelease())
        .collect();
    out.sort_by(|a, b| b.cmp(a));
    out.dedup_by(|a, b| a == b);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn token_variables_map_to_hosts() {
        let tokens = tokens_from_env([
            ("TF_TOKEN_app_terraform_io".to_string(), "t1".to_string()),
            (
                "TF_TOKEN_my__registry_example_com".to_string(),
                "t2".to_string(),
            ),
            ("TF_TOKEN_".to_string(), "x".to_string()),
            ("HOME".to_string(), "/root".to_string()),
        ]);
        assert_eq!(
            tokens.get("app.terraform.io").map(String::as_str),
            Some("t1")
        );
        assert_eq!(
            tokens.get("my-registry.example.com").map(String::as_str),
            Some("t2")
        );
        assert_eq!(tokens.len(), 2);
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            parse_base_url("registry.terraform.io").unwrap().as_str(),
            "https://registry.terraform.io/"
        );
        assert_eq!(
            parse_base_url("http://127.0.0.1:8080").unwrap().as_str(),
            "http://127.0.0.1:8080/"
        );
        assert_eq!(
            parse_base_url("https://example.com/reg").unwrap().as_str(),
            "https://example.com/reg/"
        );
        assert!(parse_base_url("http://").is_err());
    }

    #[test]
    fn latest_skips_pre_releases_unless_asked() {
        let vs: Vec<TfVersion> = ["1.9.8", "1.10.0-beta1", "1.2.0", "1.9.7"]
            .iter()
            .map(|s| TfVersion::parse(s).unwrap())
            .collect();
        assert_eq!(latest(&vs, false).unwrap().as_str(), "1.9.8");
        assert_eq!(latest(&vs, true).unwrap().as_str(), "1.10.0-beta1");
        let sorted: Vec<&str> = sorted_desc(&vs, false).iter().map(|v| v.as_str()).collect();
        assert_eq!(sorted, ["1.9.8", "1.9.7", "1.2.0"]);
    }
}
