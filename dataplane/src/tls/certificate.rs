//! Loading a certificate chain and private key from PEM, with every check that decides
//! whether a Secret can serve: the PEM parses, the key belongs to the leaf, the leaf is in
//! its validity period, and which host names it covers.
//!
//! `translate` calls [`load_certificate`] to turn a Secret into a diagnostic or a
//! certificate; the data plane calls it again when it compiles a snapshot.

use std::fmt::Write as _;
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a certificate/key pair cannot serve. The messages name the Secret keys
/// (`tls.crt`, `tls.key`) because that is where a user goes to fix them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    #[error("tls.crt holds no PEM CERTIFICATE block")]
    NoCertificate,
    #[error("tls.crt is not valid PEM: {0}")]
    CertificatePem(String),
    #[error("certificate {index} in tls.crt is not a valid X.509 certificate: {reason}")]
    CertificateDer { index: usize, reason: String },
    #[error("tls.key holds no PEM private key (PKCS#1, PKCS#8 or SEC1)")]
    NoKey,
    #[error("tls.key is not valid PEM: {0}")]
    KeyPem(String),
    #[error("tls.key holds a key that cannot sign TLS handshakes: {0}")]
    UnsupportedKey(String),
    #[error("the private key in tls.key does not belong to the certificate in tls.crt")]
    KeyMismatch,
    #[error("the certificate in tls.crt expired at {not_after}")]
    Expired { not_after: String },
    #[error("the certificate in tls.crt is not valid before {not_before}")]
    NotYetValid { not_before: String },
}

/// What people need to see about a certificate; never any key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateInfo {
    pub subject: String,
    pub issuer: String,
    /// DNS names from the subjectAltName extension, lower case.
    pub dns_names: Vec<String>,
    pub not_before: String,
    pub not_after: String,
    /// Unix seconds of `not_before`.
    pub not_before_unix: i64,
    /// Unix seconds of `not_after`, for expiry checks and metrics.
    pub not_after_unix: i64,
    /// SHA-256 of the leaf certificate's DER, as colon-separated upper-case hex.
    pub sha256_fingerprint: String,
}

impl CertificateInfo {
    /// Whether this certificate is valid for `host` (lower case, no port), by its DNS
    /// subjectAltNames as RFC 6125 says: exact, or a `*.` name that covers one label.
    /// The subject common name is not consulted, as browsers and rustls do not either.
    pub fn covers(&self, host: &str) -> bool {
        self.dns_names.iter().any(|name| name_covers(name, host))
    }
}

/// Whether a certificate name (`example.com` or `*.example.com`) covers a host pattern
/// (`a.example.com`, or `*.example.com` meaning any one label there).
pub fn name_covers(name: &str, host: &str) -> bool {
    if name == host {
        return true;
    }
    let Some(suffix) = name.strip_prefix("*.") else {
        return false;
    };
    match host.split_once('.') {
        Some((label, rest)) => !label.is_empty() && label != "*" && rest == suffix,
        None => false,
    }
}

/// A parsed, checked certificate/key pair, ready for rustls.
#[derive(Clone)]
pub struct LoadedCertificate {
    pub key: Arc<CertifiedKey>,
    pub info: CertificateInfo,
}

impl std::fmt::Debug for LoadedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedCertificate")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Parses `chain_pem` (leaf first) and `key_pem`, and checks that they belong together and
/// that the leaf is valid at `now_unix` (seconds). Pass `None` to skip the validity check.
pub fn load_certificate(
    chain_pem: &[u8],
    key_pem: &[u8],
    now_unix: Option<i64>,
) -> Result<LoadedCertificate, CertificateError> {
    // The chain: every CERTIFICATE block, in order.
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertificateError::CertificatePem(pem_problem(&e)))?;
    let Some(leaf) = chain.first() else {
        return Err(CertificateError::NoCertificate);
    };
    for (index, der) in chain.iter().enumerate() {
        X509Certificate::from_der(der).map_err(|e| CertificateError::CertificateDer {
            index: index + 1,
            reason: e.to_string(),
        })?;
    }
    let info = inspect(leaf)?;

    // The key: rustls reads PKCS#1, PKCS#8 and SEC1.
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => CertificateError::NoKey,
        other => CertificateError::KeyPem(pem_problem(&other)),
    })?;
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| CertificateError::UnsupportedKey(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        // The provider could not derive the public key; the handshake itself would fail
        // later, so refuse now rather than serve a pair we could not check.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            return Err(CertificateError::UnsupportedKey(
                "its public key cannot be compared with the certificate".into(),
            ));
        }
        Err(_) => return Err(CertificateError::KeyMismatch),
    }

    // Validity period, when the caller asks for it.
    if let Some(now) = now_unix {
        if now > info.not_after_unix {
            return Err(CertificateError::Expired {
                not_after: info.not_after.clone(),
            });
        }
        if now < info.not_before_unix {
            return Err(CertificateError::NotYetValid {
                not_before: info.not_before.clone(),
            });
        }
    }

    Ok(LoadedCertificate {
        key: Arc::new(certified),
        info,
    })
}

/// What is wrong with a PEM text, quoting none of it. The parser's own messages print the
/// offending line or section label, and in `tls.key` that is the key itself: a key whose
/// lines were joined into one (a YAML folded scalar does that) would end up in logs,
/// Events and `/debug/snapshot` (DESIGN.md, promise 6).
fn pem_problem(error: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    match error {
        Error::MissingSectionEnd { .. } => {
            "a PEM block has no end line (were its lines joined into one?)".into()
        }
        Error::IllegalSectionStart { .. } => "the first line of a PEM block is malformed".into(),
        Error::Base64Decode(_) => "the body of a PEM block is not valid base64".into(),
        Error::SectionTooLarge => "a PEM block is too large".into(),
        _ => "the PEM text cannot be read".into(),
    }
}

/// Reads the leaf's names, dates and fingerprint.
fn inspect(leaf: &CertificateDer<'_>) -> Result<CertificateInfo, CertificateError> {
    let (_, cert) =
        X509Certificate::from_der(leaf).map_err(|e| CertificateError::CertificateDer {
            index: 1,
            reason: e.to_string(),
        })?;

    let mut dns_names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                dns_names.push(dns.to_ascii_lowercase());
            }
        }
    }

    let validity = cert.validity();
    Ok(CertificateInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        dns_names,
        not_before: validity.not_before.to_string(),
        not_after: validity.not_after.to_string(),
        not_before_unix: validity.not_before.timestamp(),
        not_after_unix: validity.not_after.timestamp(),
        sha256_fingerprint: fingerprint(leaf),
    })
}

fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let mut out = String::with_capacity(digest.len() * 3);
    for (i, byte) in digest.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{byte:02X}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(names: &[&str], alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn loads_ecdsa_p256_p384_and_ed25519_pairs() {
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
        ] {
            let (crt, key) = self_signed(&["a.example.com"], alg);
            let loaded = load_certificate(crt.as_bytes(), key.as_bytes(), None).unwrap();
            assert_eq!(loaded.info.dns_names, vec!["a.example.com"]);
            assert_eq!(loaded.info.sha256_fingerprint.len(), 32 * 3 - 1);
        }
    }

    #[test]
    fn refuses_a_key_from_another_certificate() {
        let (crt, _) = self_signed(&["a.example.com"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let (_, other_key) = self_signed(&["a.example.com"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let err = load_certificate(crt.as_bytes(), other_key.as_bytes(), None).unwrap_err();
        assert_eq!(err, CertificateError::KeyMismatch);
    }

    #[test]
    fn refuses_missing_and_swapped_pem_blocks() {
        let (crt, key) = self_signed(&["a.example.com"], &rcgen::PKCS_ECDSA_P256_SHA256);
        assert_eq!(
            load_certificate(b"", key.as_bytes(), None).unwrap_err(),
            CertificateError::NoCertificate
        );
        assert_eq!(
            load_certificate(crt.as_bytes(), b"", None).unwrap_err(),
            CertificateError::NoKey
        );
        assert_eq!(
            load_certificate(key.as_bytes(), crt.as_bytes(), None).unwrap_err(),
            CertificateError::NoCertificate
        );
        let broken = crt.replace("-----END CERTIFICATE-----", "");
        assert!(matches!(
            load_certificate(broken.as_bytes(), key.as_bytes(), None).unwrap_err(),
            CertificateError::CertificatePem(_)
        ));
    }

    #[test]
    fn a_key_with_its_lines_joined_is_refused_without_quoting_it() {
        let (crt, key) = self_signed(&["a.example.com"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let joined = key.trim().replace('\n', " ");
        let err = load_certificate(crt.as_bytes(), joined.as_bytes(), None).unwrap_err();
        let body = key.lines().nth(1).unwrap();
        let first_bytes = format!(
            "{}, {}, {}",
            body.as_bytes()[0],
            body.as_bytes()[1],
            body.as_bytes()[2]
        );
        assert!(matches!(err, CertificateError::KeyPem(_)), "{err}");
        assert!(!err.to_string().contains(body), "{err}");
        assert!(!err.to_string().contains(&first_bytes), "{err}");
    }

    #[test]
    fn refuses_certificates_outside_their_validity_period_when_asked() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.example.com".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let crt = params.self_signed(&key).unwrap().pem();
        let key = key.serialize_pem();
        let in_2022 = 1_640_995_200;
        let in_2019 = 1_546_300_800;
        let in_2020 = 1_590_000_000;
        assert!(matches!(
            load_certificate(crt.as_bytes(), key.as_bytes(), Some(in_2022)).unwrap_err(),
            CertificateError::Expired { .. }
        ));
        assert!(matches!(
            load_certificate(crt.as_bytes(), key.as_bytes(), Some(in_2019)).unwrap_err(),
            CertificateError::NotYetValid { .. }
        ));
        assert!(load_certificate(crt.as_bytes(), key.as_bytes(), Some(in_2020)).is_ok());
        assert!(load_certificate(crt.as_bytes(), key.as_bytes(), None).is_ok());
    }

    #[test]
    fn wildcard_names_cover_exactly_one_label() {
        assert!(name_covers("*.example.com", "a.example.com"));
        assert!(!name_covers("*.example.com", "a.b.example.com"));
        assert!(!name_covers("*.example.com", "example.com"));
        assert!(name_covers("*.example.com", "*.example.com"));
        assert!(!name_covers("a.example.com", "*.example.com"));
        assert!(name_covers("example.com", "example.com"));
    }
}
