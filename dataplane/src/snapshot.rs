//! The Snapshot: the whole desired state of the data plane, as one plain value.
//!
//! The controller's `translate` stage produces a `Snapshot`; [`crate::Dataplane::apply`]
//! compiles it into lookup tables and swaps it in. Nothing here knows about Kubernetes:
//! names such as `namespace/name` are opaque labels carried for logs and diagnostics.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Everything the data plane serves. Translation builds it sorted, so equal inputs give
/// equal snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Hosts with routes and/or a certificate, sorted by host.
    pub virtual_hosts: Vec<VirtualHost>,
    /// Where a request that matches no route goes; 404 when `None`.
    pub default_backend: Option<BackendId>,
    /// Upstream clusters, sorted by id.
    pub backends: Vec<Backend>,
    /// Certificate/key pairs, sorted by id.
    pub certificates: Vec<Certificate>,
    /// The certificate for handshakes without SNI or with a name nothing else covers. When
    /// `None`, the data plane serves its generated placeholder.
    pub default_certificate: Option<CertificateId>,
}

/// A host pattern with its routes and certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualHost {
    pub host: HostPattern,
    /// Routes in match order: longest path first, `Exact` before `Prefix` at equal length.
    pub routes: Vec<Route>,
    /// The certificate served for this host, if its Ingresses ask for TLS and it loaded.
    pub certificate: Option<CertificateId>,
    /// True when an Ingress lists this host under `tls`, even if its certificate failed:
    /// plain HTTP requests for it are redirected to HTTPS.
    pub tls: bool,
}

/// Which request hosts a virtual host answers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum HostPattern {
    /// One host, lower case, without a port.
    Exact(String),
    /// `*.example.com`, stored as the suffix `example.com`: matches exactly one more label.
    Wildcard(String),
    /// Rules without a host: every host that has no rule of its own.
    Any,
}

impl HostPattern {
    /// Parses a host as written in an Ingress rule; the caller has validated it.
    pub fn parse(host: &str) -> HostPattern {
        let host = host.to_ascii_lowercase();
        match host.strip_prefix("*.") {
            Some(suffix) => HostPattern::Wildcard(suffix.to_owned()),
            None => HostPattern::Exact(host),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(host) => f.write_str(host),
            HostPattern::Wildcard(suffix) => write!(f, "*.{suffix}"),
            HostPattern::Any => f.write_str("*"),
        }
    }
}

/// One path rule of one Ingress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub path: PathMatch,
    pub backend: BackendId,
    /// Answer plain HTTP with a 308 to HTTPS (the host has TLS and the Ingress did not
    /// turn the redirect off).
    pub https_redirect: bool,
    /// The Ingress this route came from, `namespace/name`, for logs.
    pub source: String,
}

/// How a route matches the request path (Kubernetes `pathType`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathMatch {
    /// The whole path, byte for byte.
    Exact(String),
    /// By `/`-separated elements; stored without a trailing slash (`/` stays `/`).
    Prefix(String),
}

impl PathMatch {
    /// The length that ranks this match against others: the longest wins.
    pub fn len(&self) -> usize {
        match self {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => p.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The name of an upstream cluster: `namespace/service:port`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BackendId(pub String);

impl fmt::Display for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An upstream cluster and its ready endpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    pub id: BackendId,
    /// Ready endpoints, sorted. Empty means every request gets 503.
    pub endpoints: Vec<SocketAddr>,
}

/// The name of a certificate: the `namespace/name` of the Secret it came from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CertificateId(pub String);

impl fmt::Display for CertificateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A certificate chain and its private key, both PEM.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    pub id: CertificateId,
    /// The chain, leaf first.
    pub chain_pem: String,
    pub key_pem: PrivateKeyPem,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("id", &self.id)
            .field("chain_pem_bytes", &self.chain_pem.len())
            .field("key_pem", &self.key_pem)
            .finish()
    }
}

/// PEM text of a private key. Its `Debug` and `Display` never show the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PrivateKeyPem(String);

impl PrivateKeyPem {
    pub fn new(pem: String) -> Self {
        PrivateKeyPem(pem)
    }

    /// The key text, for parsing only: never log or print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKeyPem(<redacted>)")
    }
}

impl fmt::Display for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_key_never_shows_in_debug_output() {
        let cert = Certificate {
            id: CertificateId("ns/tls".into()),
            chain_pem: "chain".into(),
            key_pem: PrivateKeyPem::new("-----BEGIN PRIVATE KEY-----secret".into()),
        };
        let shown = format!("{cert:?} {}", cert.key_pem);
        assert!(!shown.contains("secret"), "{shown}");
        assert!(!shown.contains("BEGIN"), "{shown}");
    }

    #[test]
    fn host_patterns_parse_case_insensitively() {
        assert_eq!(
            HostPattern::parse("Foo.Example.COM"),
            HostPattern::Exact("foo.example.com".into())
        );
        assert_eq!(
            HostPattern::parse("*.Example.com"),
            HostPattern::Wildcard("example.com".into())
        );
    }
}
