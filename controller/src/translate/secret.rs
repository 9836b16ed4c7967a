//! From a `kubernetes.io/tls` Secret to a snapshot certificate, or the reason it cannot be
//! one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use portcullis_dataplane::snapshot::{Certificate, CertificateId, PrivateKeyPem};
use portcullis_dataplane::tls::CertifiedKey;
use portcullis_dataplane::tls::{CertificateError, CertificateInfo, load_certificate};

use super::diagnostic::Reason;

pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// A Secret that can serve.
#[derive(Debug, Clone)]
pub struct LoadedSecret {
    pub certificate: Certificate,
    pub info: CertificateInfo,
    /// The parsed pair, handed to the data plane so it need not parse it again.
    pub key: Arc<CertifiedKey>,
}

/// Why a Secret cannot serve, as a reason and a sentence that names the Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretProblem {
    pub reason: Reason,
    pub message: String,
}

/// Parsed Secrets from earlier translations, so an unchanged Secret is not parsed again:
/// with thousands of certificates, parsing is most of a rebuild. An entry is used only
/// when the Secret's bytes are exactly those it was parsed from.
#[derive(Debug, Default)]
pub struct SecretCache {
    entries: HashMap<(String, String), LoadedSecret>,
    used: HashSet<(String, String)>,
}

impl SecretCache {
    /// Forgets Secrets not used since the last call.
    pub fn prune(&mut self) {
        let used = std::mem::take(&mut self.used);
        self.entries.retain(|key, _| used.contains(key));
    }
}

/// Loads the certificate of Secret `namespace/name`, checked at `now_unix`.
pub fn load_secret(
    secret: Option<&Secret>,
    namespace: &str,
    name: &str,
    now_unix: i64,
    cache: &mut SecretCache,
) -> Result<LoadedSecret, SecretProblem> {
    let problem = |reason, message: String| SecretProblem { reason, message };
    let Some(secret) = secret else {
        return Err(problem(
            Reason::SecretNotFound,
            format!(
                "Secret {namespace}/{name} does not exist (it must be in the Ingress's namespace)"
            ),
        ));
    };
    let secret_type = secret.type_.as_deref().unwrap_or("Opaque");
    if secret_type != TLS_SECRET_TYPE {
        return Err(problem(
            Reason::SecretWrongType,
            format!("Secret {namespace}/{name} has type {secret_type}, not {TLS_SECRET_TYPE}"),
        ));
    }
    let chain = secret_value(secret, "tls.crt").ok_or_else(|| {
        problem(
            Reason::InvalidCertificate,
            format!("Secret {namespace}/{name} has no tls.crt"),
        )
    })?;
    let key = secret_value(secret, "tls.key").ok_or_else(|| {
        problem(
            Reason::InvalidCertificate,
            format!("Secret {namespace}/{name} has no tls.key"),
        )
    })?;
    let cache_key = (namespace.to_owned(), name.to_owned());
    cache.used.insert(cache_key.clone());
    if let Some(hit) = cache.entries.get(&cache_key)
        && hit.certificate.chain_pem.as_bytes() == chain
        && hit.certificate.key_pem.expose().as_bytes() == key
    {
        // Same bytes, same certificate: only the validity period depends on the time.
        let info = &hit.info;
        if now_unix > info.not_after_unix {
            let error = CertificateError::Expired {
                not_after: info.not_after.clone(),
            };
            return Err(problem(
                Reason::CertificateExpired,
                format!("Secret {namespace}/{name}: {error}"),
            ));
        }
        if now_unix < info.not_before_unix {
            let error = CertificateError::NotYetValid {
                not_before: info.not_before.clone(),
            };
            return Err(problem(
                Reason::CertificateExpired,
                format!("Secret {namespace}/{name}: {error}"),
            ));
        }
        return Ok(hit.clone());
    }

    let loaded = load_certificate(chain, key, None)
        .and_then(|loaded| {
            // The validity check, separately, so the cache keeps pairs that expired.
            let info = &loaded.info;
            if now_unix > info.not_after_unix {
                Err(CertificateError::Expired {
                    not_after: info.not_after.clone(),
                })
            } else if now_unix < info.not_before_unix {
                Err(CertificateError::NotYetValid {
                    not_before: info.not_before.clone(),
                })
            } else {
                Ok(loaded)
            }
        })
        .map_err(|error| {
            let reason = match error {
                CertificateError::Expired { .. } | CertificateError::NotYetValid { .. } => {
                    Reason::CertificateExpired
                }
                _ => Reason::InvalidCertificate,
            };
            problem(reason, format!("Secret {namespace}/{name}: {error}"))
        })?;

    // Both parsed, so both are text; PEM is ASCII.
    let chain_pem = String::from_utf8_lossy(chain).into_owned();
    let key_pem = PrivateKeyPem::new(String::from_utf8_lossy(key).into_owned());
    let loaded = LoadedSecret {
        certificate: Certificate {
            id: CertificateId(format!("{namespace}/{name}")),
            chain_pem,
            key_pem,
        },
        info: loaded.info,
        key: loaded.key,
    };
    cache.entries.insert(cache_key, loaded.clone());
    Ok(loaded)
}

/// A value from `stringData` (folder mode) or `data`, as the API server would merge them.
fn secret_value<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    if let Some(text) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Some(text.as_bytes());
    }
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|bytes| bytes.0.as_slice())
        .filter(|b| !b.is_empty())
}
