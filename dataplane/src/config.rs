//! Settings of the data plane: addresses, limits and edge policies. The controller fills
//! this from its flags; every value here is already typed and checked.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;

/// The smallest request-header limit hyper's HTTP/1 parser accepts.
pub const MIN_REQUEST_HEADER_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone)]
pub struct Config {
    pub https_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Refuse handshakes without SNI or for names without a certificate, instead of
    /// answering with the default certificate.
    pub strict_sni: bool,
    /// Peers whose `X-Forwarded-For` is extended rather than replaced.
    pub trusted_proxies: Vec<IpNet>,
    /// The port in `Location` of HTTP-to-HTTPS redirects; 443 gives a URL without one.
    pub redirect_https_port: u16,
    /// One log line per request, with target `access`.
    pub access_log: bool,
    pub limits: Limits,
}

/// Timeouts and sizes, each with its flag in the controller.
#[derive(Debug, Clone)]
pub struct Limits {
    /// From the start of waiting for a request head until it is complete (HTTP/1).
    pub request_header_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    /// The longest pause while a client sends a request body.
    pub client_body_idle_timeout: Duration,
    /// A client connection with no request in flight and no traffic is closed after this.
    pub keepalive_idle_timeout: Duration,
    /// Request line and headers (HTTP/1) or header list (HTTP/2), in bytes.
    pub max_request_header_bytes: usize,
    pub max_concurrent_streams: u32,
    pub max_connections: usize,
    pub upstream_connect_timeout: Duration,
    /// From sending the request to the upstream until its response head arrives.
    pub upstream_response_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_header_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            client_body_idle_timeout: Duration::from_secs(60),
            keepalive_idle_timeout: Duration::from_secs(75),
            max_request_header_bytes: 32 * 1024,
            max_concurrent_streams: 128,
            max_connections: 50_000,
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_response_timeout: Duration::from_secs(60),
        }
    }
}
