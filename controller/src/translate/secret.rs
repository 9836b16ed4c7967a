//! From a `kubernetes.io/tls` Secret to a snapshot certificate, or the reason it cannot be
//! one.

use k8s_openapi::api::core::v1::Secret;
use portcullis_dataplane::snapshot::{Certificate, CertificateId, PrivateKeyPem};
use portcullis_dataplane::tls::{CertificateError, CertificateInfo, load_certificate};

use super::diagnostic::Reason;

pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// A Secret that can serve.
#[derive(Debug, Clone)]
pub struct LoadedSecret {
    pub certificate: Certificate,
    pub info: CertificateInfo,
}

/// Why a Secret cannot serve, as a reason and a sentence that names the Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretProblem {
    pub reason: Reason,
    pub message: String,
}

/// Loads the certificate of Secret `namespace/name`, checked at `now_unix`.
pub fn load_secret(
    secret: Option<&Secret>,
    namespace: &str,
    name: &str,
    now_unix: i64,
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
    let loaded = load_certificate(&chain, &key, Some(now_unix)).map_err(|error| {
        let reason = match error {
            CertificateError::Expired { .. } | CertificateError::NotYetValid { .. } => {
                Reason::CertificateExpired
            }
            _ => Reason::InvalidCertificate,
        };
        problem(reason, format!("Secret {namespace}/{name}: {error}"))
    })?;

    // Both parsed, so both are text; PEM is ASCII.
    let chain_pem = String::from_utf8_lossy(&chain).into_owned();
    let key_pem = PrivateKeyPem::new(String::from_utf8_lossy(&key).into_owned());
    Ok(LoadedSecret {
        certificate: Certificate {
            id: CertificateId(format!("{namespace}/{name}")),
            chain_pem,
            key_pem,
        },
        info: loaded.info,
    })
}

/// A value from `stringData` (folder mode) or `data`, as the API server would merge them.
fn secret_value(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    if let Some(text) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Some(text.as_bytes().to_vec());
    }
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|bytes| bytes.0.clone())
        .filter(|b| !b.is_empty())
}
