//! An HTTPS front for fake registries under their real names: an HTTP proxy on 127.0.0.1
//! that answers `CONNECT registry.terraform.io:443`, terminates TLS with a certificate
//! for that name signed by a test CA made at start, and forwards the plain HTTP to the
//! fake registry registered for that host.
//!
//! Clients reach it the standard way, without any opsbot-specific switch:
//! `HTTPS_PROXY=http://127.0.0.1:PORT` and `SSL_CERT_FILE=<the test CA>`, which both
//! reqwest (rustls with the platform's roots) and Terraform (Go) honour. So `opsbot
//! tfupdate lock`, tfupdate and `terraform providers lock` can all be pointed at the same
//! fake registry as `registry.terraform.io`. Nothing leaves loopback: a CONNECT to any
//! host not registered answers 403.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use super::FakeRegistry;

/// A running HTTPS front; dropping it stops it (the registries behind it are the
/// caller's).
#[derive(Debug)]
pub struct TlsFront {
    addr: SocketAddr,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsFront {
    /// Starts a front serving each `(host, registry)` pair as `https://host/`.
    pub async fn start(hosts: &[(&str, &FakeRegistry)]) -> Result<TlsFront, String> {
        let names: Vec<String> = hosts.iter().map(|(h, _)| h.to_string()).collect();
        let (ca_pem, cert_der, key_der) = certificates(&names).map_err(|e| e.to_string())?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let ca_file = dir.path().join("opsbot-test-ca.pem");
        std::fs::write(&ca_file, ca_pem).map_err(|e| e.to_string())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(
                vec![cert_der],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key_der),
            )
            .map_err(|e| e.to_string())?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let upstream: Arc<HashMap<String, SocketAddr>> = Arc::new(
            hosts
                .iter()
                .map(|(h, r)| {
                    r.serve_as_https(h);
                    (h.to_string(), r.addr)
                })
                .collect(),
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind the HTTPS front: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let _ = tunnel(conn, acceptor, &upstream).await;
                });
            }
        });
        Ok(TlsFront {
            addr,
            ca_file,
            _dir: dir,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`, for `HTTPS_PROXY`.
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The test CA (PEM), for `SSL_CERT_FILE`.
    pub fn ca_file(&self) -> &std::path::Path {
        &self.ca_file
    }

    /// The environment that points a client (opsbot, tfupdate, Terraform) at the front.
    pub fn client_env(&self) -> Vec<(String, String)> {
        let proxy = self.proxy_url();
        let ca = self.ca_file.display().to_string();
        vec![
            ("HTTPS_PROXY".to_string(), proxy.clone()),
            ("https_proxy".to_string(), proxy),
            ("SSL_CERT_FILE".to_string(), ca),
            ("NO_PROXY".to_string(), String::new()),
            ("no_proxy".to_string(), String::new()),
        ]
    }
}

/// A test CA and one server certificate for `names`: (CA PEM, server DER, key DER).
fn certificates(
    names: &[String],
) -> Result<
    (
        String,
        rustls::pki_types::CertificateDer<'static>,
        rustls::pki_types::PrivatePkcs8KeyDer<'static>,
    ),
    rcgen::Error,
> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "opsbot test CA (fake registry)");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(names.to_vec())?;
    leaf.distinguished_name.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    leaf.use_authority_key_identifier_extension = true;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
    Ok((
        ca_cert.pem(),
        leaf_cert.der().clone(),
        rustls::pki_types::PrivatePkcs8KeyDer::from(leaf_key.serialize_der()),
    ))
}

async fn tunnel(
    mut conn: TcpStream,
    acceptor: TlsAcceptor,
    upstream: &HashMap<String, SocketAddr>,
) -> std::io::Result<()> {
    // The proxy request: `CONNECT host:443 HTTP/1.1` and headers, up to 16 KiB.
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await?;
        if n == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut first = text.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let host = target.rsplit_once(':').map_or(target, |(h, _)| h);
    let Some(addr) = upstream.get(host).filter(|_| method == "CONNECT") else {
        conn.write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
            .await?;
        return Ok(());
    };
    conn.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    let mut tls = acceptor.accept(conn).await?;
    let mut plain = TcpStream::connect(addr).await?;
    tokio::io::copy_bidirectional(&mut tls, &mut plain).await?;
    Ok(())
}
