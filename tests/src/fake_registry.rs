//! A stateful fake Terraform registry (providers and modules), served by axum on
//! 127.0.0.1, that the real registry client talks to over HTTP.
//!
//! It speaks service discovery (`/.well-known/terraform.json`), the provider protocol
//! (`/v1/providers/{ns}/{type}/versions`, `…/{version}/download/{os}/{arch}`) and the
//! module protocol (`/v1/modules/{ns}/{name}/{system}/versions`). Provider packages are
//! real zip archives generated in memory with known contents, listed in a `SHA256SUMS`
//! document, so lock-file hashes can be checked end to end. Releases can be added while
//! it runs; every request is counted per path; a bearer token can be required; a package
//! can be corrupted to exercise checksum verification.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// One platform build of a provider version.
#[derive(Debug, Clone)]
pub struct Package {
    pub os: String,
    pub arch: String,
    pub filename: String,
    /// The files inside the zip, in the order written.
    pub files: Vec<(String, Vec<u8>)>,
    pub zip: Vec<u8>,
    /// Bytes actually served (differs from `zip` after [`FakeRegistry::corrupt_package`]).
    pub served: Vec<u8>,
}

#[derive(Debug, Default)]
struct ProviderVersion {
    packages: Vec<Package>,
}

#[derive(Debug, Default)]
struct RegistryState {
    providers: BTreeMap<(String, String), BTreeMap<String, ProviderVersion>>,
    modules: BTreeMap<(String, String, String), Vec<String>>,
    requests: BTreeMap<String, usize>,
    token: Option<String>,
    /// Paths that answer 500 until taken.
    failures: HashMap<String, usize>,
}

/// A running fake registry.
#[derive(Debug, Clone)]
pub struct FakeRegistry {
    addr: SocketAddr,
    state: Arc<Mutex<RegistryState>>,
    /// Shared by clones; the server stops when the last clone is dropped.
    _server: Arc<crate::serve::Served>,
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The files of the generated package for one platform: a fake provider binary and a
/// license, with contents that name the provider, version and platform.
pub fn package_files(
    namespace: &str,
    name: &str,
    version: &str,
    os: &str,
    arch: &str,
) -> Vec<(String, Vec<u8>)> {
    vec![
        (
            format!("terraform-provider-{name}_v{version}_x5"),
            format!("#!/bin/false\nfake provider {namespace}/{name} {version} {os}_{arch}\n")
                .into_bytes(),
        ),
        (
            "LICENSE.txt".to_string(),
            format!("Fake license for {namespace}/{name}.\n").into_bytes(),
        ),
    ]
}

fn build_zip(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o755);
    for (name, data) in files {
        // infallible for in-memory writers
        let _ = w.start_file(name.as_str(), opts);
        let _ = w.write_all(data);
    }
    w.finish().map(|c| c.into_inner()).unwrap_or_default()
}

impl FakeRegistry {
    /// Starts the fake on 127.0.0.1 with a random port.
    pub async fn start() -> FakeRegistry {
        let state = Arc::new(Mutex::new(RegistryState::default()));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let server = crate::serve::serve(app, "the fake Terraform registry").await;
        FakeRegistry {
            addr: server.addr,
            state,
            _server: Arc::new(server),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RegistryState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Requires `Authorization: Bearer <token>` on every request.
    pub fn require_token(&self, token: &str) {
        self.lock().token = Some(token.to_string());
    }

    /// Adds a provider release built for `platforms` (`linux_amd64`, …).
    pub fn add_provider(&self, namespace: &str, name: &str, version: &str, platforms: &[&str]) {
        let packages = platforms
            .iter()
            .filter_map(|p| p.split_once('_'))
            .map(|(os, arch)| {
                let files = package_files(namespace, name, version, os, arch);
                let zip = build_zip(&files);
                Package {
                    os: os.to_string(),
                    arch: arch.to_string(),
                    filename: format!("terraform-provider-{name}_{version}_{os}_{arch}.zip"),
                    files,
                    served: zip.clone(),
                    zip,
                }
            })
            .collect();
        self.lock()
            .providers
            .entry((namespace.to_string(), name.to_string()))
            .or_default()
            .insert(version.to_string(), ProviderVersion { packages });
    }

    /// Adds a module release.
    pub fn add_module(&self, namespace: &str, name: &str, system: &str, version: &str) {
        self.lock()
            .modules
            .entry((namespace.to_string(), name.to_string(), system.to_string()))
            .or_default()
            .push(version.to_string());
    }

    /// The package of one platform, as generated.
    pub fn package(
        &self,
        namespace: &str,
        name: &str,
        version: &str,
        platform: &str,
    ) -> Option<Package> {
        let (os, arch) = platform.split_once('_')?;
        let state = self.lock();
        let v = state
            .providers
            .get(&(namespace.to_string(), name.to_string()))?
            .get(version)?;
        v.packages
            .iter()
            .find(|p| p.os == os && p.arch == arch)
            .cloned()
    }

    /// The `SHA256SUMS` document of a provider version.
    pub fn sha256sums(&self, namespace: &str, name: &str, version: &str) -> Option<String> {
        let state = self.lock();
        let v = state
            .providers
            .get(&(namespace.to_string(), name.to_string()))?
            .get(version)?;
        Some(sums_doc(v))
    }

    /// Serves different bytes for one package than `SHA256SUMS` lists.
    pub fn corrupt_package(&self, namespace: &str, name: &str, version: &str, platform: &str) {
        let Some((os, arch)) = platform.split_once('_') else {
            return;
        };
        let mut state = self.lock();
        if let Some(v) = state
            .providers
            .get_mut(&(namespace.to_string(), name.to_string()))
            .and_then(|p| p.get_mut(version))
            && let Some(p) = v.packages.iter_mut().find(|p| p.os == os && p.arch == arch)
        {
            p.served = build_zip(&[("tampered".to_string(), b"evil".to_vec())]);
        }
    }

    /// The next `times` requests to `path` answer 500.
    pub fn fail(&self, path: &str, times: usize) {
        self.lock().failures.insert(path.to_string(), times);
    }

    /// Requests received per path.
    pub fn requests(&self) -> BTreeMap<String, usize> {
        self.lock().requests.clone()
    }

    /// Requests received for `path`.
    pub fn request_count(&self, path: &str) -> usize {
        self.lock().requests.get(path).copied().unwrap_or(0)
    }

    /// Requests received in total.
    pub fn total_requests(&self) -> usize {
        self.lock().requests.values().sum()
    }

    /// Forgets the request counters.
    pub fn reset_requests(&self) {
        self.lock().requests.clear();
    }
}

fn sums_doc(v: &ProviderVersion) -> String {
    let mut lines: Vec<String> = v
        .packages
        .iter()
        .map(|p| format!("{}  {}\n", sha256_hex(&p.zip), p.filename))
        .collect();
    lines.sort_by(|a, b| {
        a.split_whitespace()
            .nth(1)
            .cmp(&b.split_whitespace().nth(1))
    });
    lines.concat()
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"errors": ["Not Found"]})),
    )
        .into_response()
}

async fn handle(
    State(state): State<Arc<Mutex<RegistryState>>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let path = uri.path().to_string();
    let mut s = state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *s.requests.entry(path.clone()).or_default() += 1;
    if let Some(left) = s.failures.get_mut(&path)
        && *left > 0
    {
        *left -= 1;
        return (StatusCode::INTERNAL_SERVER_ERROR, "injected failure").into_response();
    }
    if let Some(token) = &s.token
        && path != "/.well-known/terraform.json"
    {
        let expected = format!("Bearer {token}");
        let given = headers.get("authorization").and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"errors": ["unauthorized"]})),
            )
                .into_response();
        }
    }
    let base = format!(
        "http://{}",
        headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1")
    );
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    match seg.as_slice() {
        [".well-known", "terraform.json"] => axum::Json(json!({
            "providers.v1": "/v1/providers/",
            "modules.v1": "/v1/modules/",
        }))
        .into_response(),
        ["v1", "providers", ns, name, "versions"] => {
            let Some(versions) = s.providers.get(&(ns.to_string(), name.to_string())) else {
                return not_found();
            };
            let list: Vec<Value> = versions
                .iter()
                .map(|(v, pv)| {
                    json!({
                        "version": v,
                        "protocols": ["5.0"],
                        "platforms": pv.packages.iter().map(|p| json!({"os": p.os, "arch": p.arch})).collect::<Vec<_>>(),
                    })
                })
                .collect();
            axum::Json(json!({ "versions": list })).into_response()
        }
        ["v1", "providers", ns, name, version, "download", os, arch] => {
            let Some(pv) = s
                .providers
                .get(&(ns.to_string(), name.to_string()))
                .and_then(|p| p.get(*version))
            else {
                return not_found();
            };
            let Some(p) = pv.packages.iter().find(|p| p.os == *os && p.arch == *arch) else {
                return not_found();
            };
            axum::Json(json!({
                "protocols": ["5.0"],
                "os": p.os,
                "arch": p.arch,
                "filename": p.filename,
                "download_url": format!("{base}/dl/{ns}/{name}/{version}/{}", p.filename),
                "shasums_url": format!("{base}/dl/{ns}/{name}/{version}/SHA256SUMS"),
                "shasums_signature_url": format!("{base}/dl/{ns}/{name}/{version}/SHA256SUMS.sig"),
                "shasum": sha256_hex(&p.zip),
                "signing_keys": {"gpg_public_keys": []},
            }))
            .into_response()
        }
        ["dl", ns, name, version, file] => {
            let Some(pv) = s
                .providers
                .get(&(ns.to_string(), name.to_string()))
                .and_then(|p| p.get(*version))
            else {
                return not_found();
            };
            if *file == "SHA256SUMS" {
                return sums_doc(pv).into_response();
            }
            match pv.packages.iter().find(|p| p.filename == *file) {
                Some(p) => {
                    ([("content-type", "application/zip")], p.served.clone()).into_response()
                }
                None => not_found(),
            }
        }
        ["v1", "modules", ns, name, system, "versions"] => {
            let key = (ns.to_string(), name.to_string(), system.to_string());
            let Some(versions) = s.modules.get(&key) else {
                return not_found();
            };
            let list: Vec<Value> = versions.iter().map(|v| json!({"version": v})).collect();
            axum::Json(
                json!({"modules": [{"source": format!("{ns}/{name}/{system}"), "versions": list}]}),
            )
            .into_response()
        }
        _ => not_found(),
    }
}
