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

/// A running HTTPS front; dropping it stops it. It holds a handle on every registry
/// behind it, so they keep serving for as long as the front does (a fake registry stops
/// when its last handle is dropped, and a front whose upstream is gone could only cut
/// its clients off).
#[derive(Debug)]
pub struct TlsFront {
    addr: SocketAddr,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
    _registries: Vec<FakeRegistry>,
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
            _registries: hosts.iter().map(|(_, r)| (*r).clone()).collect(),
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

/// One proxy connection: reads the `CONNECT host:443` request, connects to the fake
/// registered for `host` (502 when it cannot be reached, 403 for any other host or
/// method), answers 200, terminates TLS and relays both directions until each side has
/// finished, then closes the TLS session with `close_notify`.
async fn tunnel(
    mut conn: TcpStream,
    acceptor: TlsAcceptor,
    upstream: &HashMap<String, SocketAddr>,
) -> std::io::Result<()> {
    // The proxy request: `CONNECT host:443 HTTP/1.1` and headers, up to 16 KiB.
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let end = loop {
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut buf).await?;
        if n == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    };
    let text = String::from_utf8_lossy(&head[..end]);
    let mut first = text.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let host = target.rsplit_once(':').map_or(target, |(h, _)| h);
    let Some(addr) = upstream.get(host).filter(|_| method == "CONNECT") else {
        conn.write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await?;
        conn.shutdown().await?;
        return Ok(());
    };
    // Upstream first: a client must not get a TLS session that leads nowhere.
    let mut plain = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => {
            let body = format!("fake registry for {host} at {addr} unreachable: {e}\n");
            let resp = format!(
                "HTTP/1.1 502 Bad Gateway\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(resp.as_bytes()).await?;
            conn.shutdown().await?;
            return Ok(());
        }
    };
    plain.set_nodelay(true)?;
    conn.set_nodelay(true)?;
    conn.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    conn.flush().await?;
    // A client may send its ClientHello right behind the CONNECT request: those bytes
    // were read with the head and belong to the TLS session.
    let early = head.split_off(end);
    let mut tls = acceptor
        .accept(Prefixed {
            early,
            pos: 0,
            inner: conn,
        })
        .await?;
    relay(&mut tls, &mut plain).await
}

/// Copies client → upstream and upstream → client until both directions are done: the
/// end of one direction is passed on as a shutdown of the other side's write half
/// (`close_notify` towards the client), so a response is never cut off by the
/// request side finishing first.
async fn relay<A, B>(client: &mut A, upstream: &mut B) -> std::io::Result<()>
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut ur, mut uw) = tokio::io::split(upstream);
    let up = async {
        // A client that closes TCP without `close_notify` ends its side all the same.
        let r = copy_until_eof(&mut cr, &mut uw).await;
        let _ = uw.shutdown().await;
        r
    };
    let down = async {
        let r = copy_until_eof(&mut ur, &mut cw).await;
        let _ = cw.shutdown().await;
        r
    };
    let (a, b) = tokio::join!(up, down);
    a.and(b)
}

async fn copy_until_eof<R, W>(from: &mut R, to: &mut W) -> std::io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n]).await?;
        to.flush().await?;
    }
    Ok(())
}

/// A stream that first yields bytes already read from it.
struct Prefixed {
    early: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl tokio::io::AsyncRead for Prefixed {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        out: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.early.len() {
            let n = out.remaining().min(this.early.len() - this.pos);
            out.put_slice(&this.early[this.pos..this.pos + n]);
            this.pos += n;
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut this.inner).poll_read(cx, out)
    }
}

impl tokio::io::AsyncWrite for Prefixed {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
