//! Clients the tests speak to portcullis with: a rustls client (SNI chosen or absent,
//! ALPN chosen, the test CA trusted, or anything accepted so the served certificate can be
//! inspected), HTTP/1.1 and HTTP/2 over it with hyper, raw bytes for malformed requests,
//! and the system `curl`. Every network step is bounded in time.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::accept_any::AcceptAnything;
use super::pki::TestCa;

/// The bound on any one network step of a test.
pub const STEP: Duration = Duration::from_secs(10);

/// Runs `future`, failing the test if it takes longer than `limit`.
pub async fn bounded<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {limit:?}"))
}

/// How the client checks the server's certificate.
#[derive(Clone, Copy)]
pub enum Verify<'a> {
    /// Chains to this CA and covers the server name.
    Ca(&'a TestCa),
    /// Anything goes; for tests that look at which certificate was served.
    Nothing,
}

/// One TLS client handshake's settings.
pub struct Tls<'a> {
    /// The server name to verify; sent as SNI unless `sni` is false.
    pub name: &'a str,
    pub sni: bool,
    pub alpn: &'a [&'a str],
    pub verify: Verify<'a>,
}

impl<'a> Tls<'a> {
    /// SNI `name`, HTTP/1.1, verified against `ca`.
    pub fn h1(name: &'a str, ca: &'a TestCa) -> Self {
        Tls {
            name,
            sni: true,
            alpn: &["http/1.1"],
            verify: Verify::Ca(ca),
        }
    }

    /// SNI `name`, HTTP/2 only, verified against `ca`.
    pub fn h2(name: &'a str, ca: &'a TestCa) -> Self {
        Tls {
            name,
            sni: true,
            alpn: &["h2"],
            verify: Verify::Ca(ca),
        }
    }

    /// SNI `name` (or none), nothing verified: to see what the server serves.
    pub fn inspect(name: Option<&'a str>) -> Self {
        Tls {
            name: name.unwrap_or("no-sni.invalid"),
            sni: name.is_some(),
            alpn: &["http/1.1"],
            verify: Verify::Nothing,
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Connects to `addr` and completes a TLS handshake.
pub async fn connect_tls(addr: SocketAddr, tls: &Tls<'_>) -> std::io::Result<TlsStream<TcpStream>> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions");
    let mut config = match tls.verify {
        Verify::Ca(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.der.clone()).expect("add the test CA");
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider())))
            .with_no_client_auth(),
    };
    config.enable_sni = tls.sni;
    config.alpn_protocols = tls.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let connector = TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(tls.name.to_owned()).expect("a valid server name");
    bounded(STEP, "the TLS handshake", async {
        let tcp = TcpStream::connect(addr).await?;
        connector.connect(name, tcp).await
    })
    .await
}

/// The leaf certificate the server presented on this connection.
pub fn peer_certificate(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    let (_, session) = stream.get_ref();
    session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("the server sent a certificate")
        .clone()
        .into_owned()
}

/// The ALPN protocol the handshake settled on.
pub fn alpn_of(stream: &TlsStream<TcpStream>) -> Option<String> {
    let (_, session) = stream.get_ref();
    session
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned())
}

/// A response, read to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The body as JSON (what the echo backend answers).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?} {}", self.status, self.body))
    }

    /// The backend that answered, from the echo backend's JSON.
    pub fn backend(&self) -> String {
        assert_eq!(self.status, 200, "expected a backend's answer: {self:?}");
        self.json()["backend"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The values of a header as the echo backend saw them.
pub fn seen_header(echoed: &Value, name: &str) -> Vec<String> {
    echoed["headers"][name]
        .as_array()
        .map(|values| {
            values
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn read_reply(response: http::Response<hyper::body::Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    let body = bounded(STEP, "reading a response body", body.collect())
        .await
        .expect("the response body")
        .to_bytes();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// An HTTP/1.1 client connection over any stream.
pub struct H1 {
    sender: http1::SendRequest<Full<Bytes>>,
}

impl H1 {
    pub async fn over<S>(io: S) -> H1
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = bounded(STEP, "the HTTP/1.1 handshake", async {
            http1::handshake(TokioIo::new(io)).await
        })
        .await
        .expect("HTTP/1.1 handshake");
        tokio::spawn(connection);
        H1 { sender }
    }

    /// GET `path` with `Host: host`.
    pub async fn get(&mut self, host: &str, path: &str) -> Reply {
        self.send(request(host, path).body(Full::default()).unwrap())
            .await
    }

    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Reply {
        bounded(STEP, "an HTTP/1.1 exchange", async {
            self.sender.ready().await.expect("connection ready");
            let response = self.sender.send_request(req).await.expect("a response");
            read_reply(response).await
        })
        .await
    }
}

/// A request builder for `GET path` with a Host header.
pub fn request(host: &str, path: &str) -> http::request::Builder {
    Request::get(path).header(http::header::HOST, host)
}

/// An HTTP/2 client connection over any stream.
pub struct H2 {
    sender: http2::SendRequest<Full<Bytes>>,
}

impl H2 {
    pub async fn over<S>(io: S) -> H2
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = bounded(STEP, "the HTTP/2 handshake", async {
            http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await
        })
        .await
        .expect("HTTP/2 handshake");
        tokio::spawn(connection);
        H2 { sender }
    }

    /// GET `https://authority/path`; `:authority` carries the host.
    pub async fn get(&mut self, authority: &str, path: &str) -> Reply {
        let req = Request::get(format!("https://{authority}{path}"))
            .body(Full::default())
            .unwrap();
        self.send(req).await
    }

    /// Sends a request with an absolute URI (its authority becomes `:authority`).
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Reply {
        bounded(STEP, "an HTTP/2 exchange", async {
            self.sender.ready().await.expect("connection ready");
            let response = self.sender.send_request(req).await.expect("a response");
            read_reply(response).await
        })
        .await
    }
}

/// One HTTPS GET on a fresh connection: SNI and Host are `host`, HTTP/1.1, CA verified.
pub async fn https_get(https: SocketAddr, ca: &TestCa, host: &str, path: &str) -> Reply {
    let stream = connect_tls(https, &Tls::h1(host, ca))
        .await
        .unwrap_or_else(|e| panic!("TLS handshake for {host}: {e}"));
    H1::over(stream).await.get(host, path).await
}

/// One plain-HTTP GET on a fresh connection.
pub async fn http_get(http: SocketAddr, host: &str, path: &str) -> Reply {
    let stream = bounded(STEP, "connecting", TcpStream::connect(http))
        .await
        .expect("connect to the HTTP listener");
    H1::over(stream).await.get(host, path).await
}

/// Writes `bytes` as they are and reads until the server closes; the text received.
pub async fn raw_exchange<S>(mut stream: S, bytes: &[u8]) -> String
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    bounded(STEP, "a raw exchange", async {
        // The server may answer and close before it has read everything we send.
        let _ = stream.write_all(bytes).await;
        let _ = stream.flush().await;
        let mut received = Vec::new();
        let _ = stream.read_to_end(&mut received).await;
        String::from_utf8_lossy(&received).into_owned()
    })
    .await
}

/// The status code of a raw HTTP/1.x response text.
pub fn raw_status(response: &str) -> Option<u16> {
    let rest = response.strip_prefix("HTTP/1.")?;
    rest.get(2..5)?.parse().ok()
}

/// The system `curl`; a missing curl fails the test with the command that installs it.
pub async fn curl(args: &[&str]) -> std::process::Output {
    let run = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(args)
        .kill_on_drop(true)
        .output();
    match bounded(Duration::from_secs(15), "curl", run).await {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("curl is not installed; install it with: apt-get install curl")
        }
        Err(e) => panic!("cannot run curl: {e}"),
    }
}
