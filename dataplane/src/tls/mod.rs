//! TLS: the certificate table compiled from a snapshot, the SNI resolver that reads it on
//! every handshake, and the rustls server configuration.
//!
//! A handshake asks [`CertificateTable::select_certificate`] through [`SniResolver`]; since
//! the resolver reads the table the data plane swapped in last, a new certificate takes
//! effect on the next handshake with no restart.

mod certificate;

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
pub use rustls::sign::CertifiedKey;

pub use certificate::{
    CertificateError, CertificateInfo, LoadedCertificate, load_certificate, name_covers,
};

use crate::runtime::Runtime;
use crate::snapshot::CertificateId;

/// A certificate as the data plane serves it.
#[derive(Debug)]
pub struct ServedCertificate {
    /// The Secret it came from; `None` for the generated placeholder.
    pub id: Option<CertificateId>,
    pub loaded: LoadedCertificate,
}

impl ServedCertificate {
    pub fn covers(&self, host: &str) -> bool {
        self.loaded.info.covers(host)
    }
}

/// The outcome of choosing a certificate for a server name.
pub struct Selection<'a> {
    pub certificate: &'a Arc<ServedCertificate>,
    /// False when nothing matched the name and the default was chosen.
    pub matched: bool,
}

/// Host name to certificate, compiled from a snapshot.
pub struct CertificateTable {
    exact: HashMap<String, Arc<ServedCertificate>>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<String, Arc<ServedCertificate>>,
    default: Arc<ServedCertificate>,
}

impl CertificateTable {
    pub fn new(default: Arc<ServedCertificate>) -> Self {
        CertificateTable {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default,
        }
    }

    pub fn insert_exact(&mut self, host: String, cert: Arc<ServedCertificate>) {
        self.exact.insert(host, cert);
    }

    pub fn insert_wildcard(&mut self, suffix: String, cert: Arc<ServedCertificate>) {
        self.wildcard.insert(suffix, cert);
    }

    pub fn default_certificate(&self) -> &Arc<ServedCertificate> {
        &self.default
    }

    /// Chooses the certificate for a server name (lower case, no port): the exact host,
    /// then a wildcard one label up, then the default certificate.
    pub fn select_certificate(&self, name: Option<&str>) -> Selection<'_> {
        let found = name.and_then(|name| {
            self.exact.get(name).or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.wildcard.get(parent)
            })
        });
        match found {
            Some(certificate) => Selection {
                certificate,
                matched: true,
            },
            None => Selection {
                certificate: &self.default,
                matched: false,
            },
        }
    }
}

/// Generates the placeholder served when no certificate fits and no default certificate
/// was configured. Its subject says what it is, so nobody mistakes it for a real one.
pub fn generate_placeholder() -> Result<ServedCertificate, rcgen::Error> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "Portcullis placeholder certificate: no certificate is configured for this name",
    );
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Portcullis");
    let cert = params.self_signed(&key)?;
    let loaded = load_certificate(cert.pem().as_bytes(), key.serialize_pem().as_bytes(), None)
        .map_err(|e| rcgen::Error::PemError(e.to_string()))?;
    Ok(ServedCertificate { id: None, loaded })
}

/// rustls calls this on every handshake; it reads the current snapshot.
#[derive(Debug)]
pub struct SniResolver {
    runtime: Arc<ArcSwap<Runtime>>,
    strict_sni: bool,
}

impl SniResolver {
    pub fn new(runtime: Arc<ArcSwap<Runtime>>, strict_sni: bool) -> Self {
        SniResolver {
            runtime,
            strict_sni,
        }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let runtime = self.runtime.load();
        // rustls hands us the SNI already lower-cased and validated as a DNS name.
        let selection = runtime.certificates.select_certificate(hello.server_name());
        if !selection.matched && self.strict_sni {
            // Refusing is the point of --strict-sni: the client gets a handshake alert
            // rather than a certificate for some other name.
            tracing::debug!(sni = hello.server_name(), "no certificate for server name");
            return None;
        }
        Some(selection.certificate.loaded.key.clone())
    }
}

/// The rustls server configuration: TLS 1.2 and 1.3 with rustls's modern suites only
/// (ECDHE key exchange, AEAD ciphers), ALPN `h2` then `http/1.1`.
pub fn server_config(resolver: Arc<SniResolver>) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(names: &[&str]) -> Arc<ServedCertificate> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let crt = params.self_signed(&key).unwrap();
        let loaded =
            load_certificate(crt.pem().as_bytes(), key.serialize_pem().as_bytes(), None).unwrap();
        Arc::new(ServedCertificate {
            id: Some(CertificateId(names[0].into())),
            loaded,
        })
    }

    #[test]
    fn exact_beats_wildcard_and_unknown_gets_default() {
        let default = Arc::new(generate_placeholder().unwrap());
        let mut table = CertificateTable::new(default.clone());
        let exact = cert(&["a.example.com"]);
        let wild = cert(&["*.example.com"]);
        table.insert_exact("a.example.com".into(), exact.clone());
        table.insert_wildcard("example.com".into(), wild.clone());

        let pick = |name| table.select_certificate(name).certificate.clone();
        assert!(Arc::ptr_eq(&pick(Some("a.example.com")), &exact));
        assert!(Arc::ptr_eq(&pick(Some("b.example.com")), &wild));
        assert!(Arc::ptr_eq(&pick(Some("x.b.example.com")), &default));
        assert!(Arc::ptr_eq(&pick(Some("example.com")), &default));
        assert!(Arc::ptr_eq(&pick(None), &default));
        assert!(!table.select_certificate(None).matched);
    }

    #[test]
    fn placeholder_says_what_it_is_and_covers_no_name() {
        let placeholder = generate_placeholder().unwrap();
        assert!(
            placeholder
                .loaded
                .info
                .subject
                .contains("Portcullis placeholder")
        );
        assert!(!placeholder.covers("example.com"));
    }
}
