//! Clients for the traffic a test sends: rustls over TCP to the HTTPS listener (reporting
//! which certificate the server chose), and plain HTTP/1.1 for port 80, the admin port and
//! etcd's health check. Every call has a time limit and opens its own connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Body;
use hyper_util::rt::TokioIo;
use rustls::crypto::{CryptoProvider, ring};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::accept_any::AcceptAnything;

/// How long one request (connect, handshake, response) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    /// The end-entity certificate of the TLS connection, if any.
    pub certificate: Option<CertificateDer<'static>>,
}

impl Reply {
    /// The name a `portcullis echo` backend answered with (its first line).
    pub fn echo_name(&self) -> Option<&str> {
        self.body.lines().next()?.strip_prefix("echo: ")
    }

    /// The path the backend received.
    pub fn echo_path(&self) -> Option<&str> {
        self.body.lines().find_map(|l| l.strip_prefix("path: "))
    }

    pub fn location(&self) -> Option<&str> {
        self.headers.get(header::LOCATION)?.to_str().ok()
    }
}

/// A rustls client for the HTTPS listener.
#[derive(Clone)]
pub struct TlsClient {
    connector: TlsConnector,
}

impl TlsClient {
    /// Verifies the server's chain against `ca` and its name against the SNI, as a browser
    /// would.
    pub fn trusting(ca: &CertificateDer<'static>) -> TlsClient {
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone()).expect("test CA is a valid root");
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsClient::from_config(config)
    }

    /// Accepts any certificate (still checking the handshake signatures), so a test can look
    /// at what was served when it is not a valid one: a placeholder, an old certificate.
    pub fn inspecting() -> TlsClient {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider())))
            .with_no_client_auth();
        TlsClient::from_config(config)
    }

    fn from_config(mut config: ClientConfig) -> TlsClient {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // Every connection is a full handshake, so it shows the certificate the server
        // chooses now (a resumed session reports the one from its first handshake).
        config.resumption = rustls::client::Resumption::disabled();
        TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
        }
    }

    /// TCP connect and TLS handshake with `sni`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        sni: &str,
    ) -> Result<TlsStream<TcpStream>, String> {
        let server_name =
            ServerName::try_from(sni.to_owned()).map_err(|e| format!("bad SNI {sni:?}: {e}"))?;
        let handshake = async {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect {addr}: {e}"))?;
            self.connector
                .connect(server_name, tcp)
                .await
                .map_err(|e| format!("TLS handshake with {addr} for {sni}: {e}"))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, handshake)
            .await
            .map_err(|_| format!("TLS handshake with {addr} for {sni} timed out"))?
    }

    /// The certificate the server presents for `sni` on a new handshake.
    pub async fn served_certificate(
        &self,
        addr: SocketAddr,
        sni: &str,
    ) -> Result<CertificateDer<'static>, String> {
        let stream = self.connect(addr, sni).await?;
        peer_certificate(&stream).ok_or_else(|| "the server sent no certificate".to_owned())
    }

    /// GET `path` on a new connection with SNI and Host `host`.
    pub async fn get(&self, addr: SocketAddr, host: &str, path: &str) -> Result<Reply, String> {
        let request = Request::get(path)
            .header(header::HOST, host)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        self.send(addr, host, request, REQUEST_TIMEOUT).await
    }

    /// Sends `request` on a new connection with SNI `sni`; `timeout` covers the whole
    /// exchange (a streaming body may need longer than [`REQUEST_TIMEOUT`]).
    pub async fn send<B>(
        &self,
        addr: SocketAddr,
        sni: &str,
        request: Request<B>,
        timeout: Duration,
    ) -> Result<Reply, String>
    where
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let exchange = async {
            let stream = self.connect(addr, sni).await?;
            let certificate = peer_certificate(&stream);
            let mut reply = exchange(stream, request).await?;
            reply.certificate = certificate;
            Ok(reply)
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("request to {addr} (SNI {sni}) timed out after {timeout:?}"))?
    }
}

/// GET `path` over plain HTTP/1.1 with Host `host`.
pub async fn http_get(addr: SocketAddr, host: &str, path: &str) -> Result<Reply, String> {
    let request = Request::get(path)
        .header(header::HOST, host)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        exchange(tcp, request).await
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("GET http://{addr}{path} timed out"))?
}

async fn exchange<S, B>(stream: S, request: Request<B>) -> Result<Reply, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let driver = tokio::spawn(connection);
    let path = request.uri().to_string();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request {path}: {e}"))?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("response body of {path}: {e}"))?
        .to_bytes();
    driver.abort();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        certificate: None,
    })
}

fn peer_certificate(stream: &TlsStream<TcpStream>) -> Option<CertificateDer<'static>> {
    let (_, connection) = stream.get_ref();
    Some(
        connection
            .peer_certificates()?
            .first()?
            .clone()
            .into_owned(),
    )
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}
