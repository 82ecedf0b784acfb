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
//!
//! Like the real registries, every `SHA256SUMS` document lists a `_manifest.json` line
//! (unless a release is added without one, as the OpenTofu registry's are) and is signed:
//! the fake makes an OpenPGP key (Ed25519) at start, serves `SHA256SUMS.sig` (a binary
//! detached signature, as HashiCorp's) and lists the public key in `signing_keys`, so
//! Terraform itself accepts its packages. [`TlsFront`] serves fakes under their real
//! names over HTTPS.

mod tls;
pub use tls::TlsFront;

use std::collections::{BTreeMap, BTreeSet, HashMap};
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

impl Package {
    /// The `h1:` hash Terraform records for this package (Go's dirhash `Hash1` of the
    /// unpacked files); `None` for a package that is not a zip.
    pub fn h1(&self) -> Option<String> {
        if self.files.is_empty() {
            return None;
        }
        let mut lines: Vec<String> = self
            .files
            .iter()
            .map(|(name, data)| format!("{}  {name}\n", sha256_hex(data)))
            .collect();
        lines.sort_by(|a, b| {
            a.split_once("  ")
                .map(|x| x.1)
                .cmp(&b.split_once("  ").map(|x| x.1))
        });
        use base64::Engine;
        Some(format!(
            "h1:{}",
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(lines.concat()))
        ))
    }
}

/// What to serve for one platform of a release.
#[derive(Debug, Clone)]
pub struct PackageSpec {
    /// `linux_amd64`
    pub platform: String,
    /// The zip's files; `None` serves `raw` bytes that are not a zip.
    pub files: Option<Vec<(String, Vec<u8>)>>,
    pub raw: Vec<u8>,
}

impl PackageSpec {
    /// The default generated package ([`package_files`]).
    pub fn generated(platform: &str) -> PackageSpec {
        PackageSpec {
            platform: platform.to_string(),
            files: None,
            raw: Vec::new(),
        }
    }

    /// A zip holding exactly `files`.
    pub fn with_files(platform: &str, files: Vec<(String, Vec<u8>)>) -> PackageSpec {
        PackageSpec {
            platform: platform.to_string(),
            files: Some(files),
            raw: Vec::new(),
        }
    }

    /// Bytes that are not a zip (their `SHA256SUMS` line matches them).
    pub fn raw(platform: &str, bytes: Vec<u8>) -> PackageSpec {
        PackageSpec {
            platform: platform.to_string(),
            files: Some(Vec::new()),
            raw: bytes,
        }
    }
}

#[derive(Debug, Default)]
struct ProviderVersion {
    name: String,
    version: String,
    packages: Vec<Package>,
    /// `terraform-provider-NAME_VERSION_manifest.json`, listed in `SHA256SUMS`.
    manifest: Option<Vec<u8>>,
}

/// The registry's signing key.
struct Signer {
    secret: pgp::composed::SignedSecretKey,
    armored_public: String,
    key_id: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.key_id)
    }
}

impl Signer {
    fn generate() -> Signer {
        use pgp::composed::{ArmorOptions, KeyType, SecretKeyParamsBuilder, SignedPublicKey};
        use pgp::types::KeyDetails;
        let mut params = SecretKeyParamsBuilder::default();
        params
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .primary_user_id("Fake Registry Signing <registry@opsbot.invalid>".into());
        let secret = params
            .build()
            .expect("key parameters")
            .generate(rand08::thread_rng())
            .expect("generate the fake registry's signing key");
        let public = SignedPublicKey::from(secret.clone());
        let armored_public = public
            .to_armored_string(ArmorOptions::default())
            .expect("armor the public key");
        let key_id = format!("{:X}", secret.fingerprint())
            .chars()
            .rev()
            .take(16)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<String>();
        Signer {
            secret,
            armored_public,
            key_id,
        }
    }

    fn sign(&self, document: &[u8]) -> Vec<u8> {
        use pgp::ser::Serialize;
        let sig = pgp::composed::DetachedSignature::sign_binary_data(
            rand08::thread_rng(),
            &self.secret.primary_key,
            &pgp::types::Password::empty(),
            pgp::crypto::hash::HashAlgorithm::Sha256,
            document,
        )
        .expect("sign SHA256SUMS");
        sig.to_bytes().expect("serialize the signature")
    }
}

#[derive(Debug, Default)]
struct RegistryState {
    providers: BTreeMap<(String, String), BTreeMap<String, ProviderVersion>>,
    modules: BTreeMap<(String, String, String), Vec<String>>,
    requests: BTreeMap<String, usize>,
    token: Option<String>,
    /// Paths that answer 500 until taken.
    failures: HashMap<String, usize>,
    signer: Option<Arc<Signer>>,
    /// Releases whose `SHA256SUMS.sig` does not match (`(ns, name, version)`).
    bad_signatures: BTreeSet<(String, String, String)>,
    /// `Host` values reached through a [`TlsFront`]: their URLs are `https://`.
    https_hosts: BTreeSet<String>,
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
        let signer = tokio::task::spawn_blocking(Signer::generate)
            .await
            .expect("key generation");
        let state = Arc::new(Mutex::new(RegistryState {
            signer: Some(Arc::new(signer)),
            ..RegistryState::default()
        }));
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

    /// Adds a provider release built for `platforms` (`linux_amd64`, …), with a
    /// `_manifest.json` line in its `SHA256SUMS` as on registry.terraform.io.
    pub fn add_provider(&self, namespace: &str, name: &str, version: &str, platforms: &[&str]) {
        let specs = platforms
            .iter()
            .map(|p| PackageSpec::generated(p))
            .collect();
        self.add_provider_packages(namespace, name, version, specs, true);
    }

    /// Adds a provider release with the given packages; `manifest` adds the
    /// `_manifest.json` file and its `SHA256SUMS` line (the OpenTofu registry has none).
    pub fn add_provider_packages(
        &self,
        namespace: &str,
        name: &str,
        version: &str,
        specs: Vec<PackageSpec>,
        manifest: bool,
    ) {
        let packages = specs
            .into_iter()
            .filter_map(|spec| {
                let (os, arch) = spec.platform.split_once('_')?;
                let (files, zip) = match spec.files {
                    None => {
                        let files = package_files(namespace, name, version, os, arch);
                        let zip = build_zip(&files);
                        (files, zip)
                    }
                    Some(files) if files.is_empty() => (files, spec.raw),
                    Some(files) => {
                        let zip = build_zip(&files);
                        (files, zip)
                    }
                };
                Some(Package {
                    os: os.to_string(),
                    arch: arch.to_string(),
                    filename: format!("terraform-provider-{name}_{version}_{os}_{arch}.zip"),
                    files,
                    served: zip.clone(),
                    zip,
                })
            })
            .collect();
        let manifest = manifest.then(|| {
            b"{\n  \"version\": 1,\n  \"metadata\": {\n    \"protocol_versions\": [\"5.0\"]\n  }\n}\n"
                .to_vec()
        });
        self.lock()
            .providers
            .entry((namespace.to_string(), name.to_string()))
            .or_default()
            .insert(
                version.to_string(),
                ProviderVersion {
                    name: name.to_string(),
                    version: version.to_string(),
                    packages,
                    manifest,
                },
            );
    }

    /// The hashes `terraform providers lock` records for a release: `h1:` for each of
    /// `platforms`, `zh:` for every `SHA256SUMS` line; sorted.
    pub fn lock_hashes(
        &self,
        namespace: &str,
        name: &str,
        version: &str,
        platforms: &[String],
    ) -> Vec<String> {
        let state = self.lock();
        let Some(v) = state
            .providers
            .get(&(namespace.to_string(), name.to_string()))
            .and_then(|p| p.get(version))
        else {
            return Vec::new();
        };
        let mut out: Vec<String> = v
            .packages
            .iter()
            .filter(|p| {
                platforms
                    .iter()
                    .any(|want| *want == format!("{}_{}", p.os, p.arch))
            })
            .filter_map(Package::h1)
            .collect();
        out.extend(
            sums_doc(v)
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .map(|h| format!("zh:{h}")),
        );
        out.sort();
        out.dedup();
        out
    }

    /// The public signing key (ASCII armor), as `signing_keys` lists it.
    pub fn signing_key(&self) -> String {
        self.lock()
            .signer
            .as_ref()
            .map(|s| s.armored_public.clone())
            .unwrap_or_default()
    }

    /// Serves a `SHA256SUMS.sig` for this release that does not match its document.
    pub fn tamper_signature(&self, namespace: &str, name: &str, version: &str) {
        self.lock().bad_signatures.insert((
            namespace.to_string(),
            name.to_string(),
            version.to_string(),
        ));
    }

    /// URLs for requests whose `Host` is `host` are written `https://host/…` (set by
    /// [`TlsFront::start`]).
    pub fn serve_as_https(&self, host: &str) {
        self.lock().https_hosts.insert(host.to_string());
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

fn manifest_name(v: &ProviderVersion) -> String {
    format!("terraform-provider-{}_{}_manifest.json", v.name, v.version)
}

/// `SHA256SUMS`: one `HEX  FILENAME` line per package (and the manifest), sorted by name.
fn sums_doc(v: &ProviderVersion) -> String {
    let mut lines: Vec<(String, String)> = v
        .packages
        .iter()
        .map(|p| (p.filename.clone(), sha256_hex(&p.zip)))
        .collect();
    if let Some(m) = &v.manifest {
        lines.push((manifest_name(v), sha256_hex(m)));
    }
    lines.sort();
    lines
        .into_iter()
        .map(|(name, hash)| format!("{hash}  {name}\n"))
        .collect()
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
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let scheme = if s.https_hosts.contains(host) {
        "https"
    } else {
        "http"
    };
    let base = format!("{scheme}://{host}");
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
                "signing_keys": {"gpg_public_keys": s.signer.iter().map(|k| json!({
                    "key_id": k.key_id,
                    "ascii_armor": k.armored_public,
                    "trust_signature": "",
                    "source": "Fake",
                    "source_url": null,
                })).collect::<Vec<_>>()},
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
            if *file == "SHA256SUMS.sig" {
                let Some(signer) = s.signer.clone() else {
                    return not_found();
                };
                let mut doc = sums_doc(pv).into_bytes();
                if s.bad_signatures.contains(&(
                    ns.to_string(),
                    name.to_string(),
                    version.to_string(),
                )) {
                    doc.extend_from_slice(b"tampered\n");
                }
                return signer.sign(&doc).into_response();
            }
            if let Some(m) = &pv.manifest
                && *file == manifest_name(pv)
            {
                return m.clone().into_response();
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
