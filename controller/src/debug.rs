//! The served snapshot as people read it: hosts, routes, backends, endpoints, and for
//! each certificate its Secret, names, issuer, dates and fingerprint. This is what
//! `/debug/snapshot` returns. It is built from its own types, which have no field for key
//! material, so no key can ever be printed.

use portcullis_dataplane::snapshot::{PathMatch, Snapshot};
use serde::Serialize;

use crate::pipeline::Served;
use crate::translate::Diagnostic;

#[derive(Debug, Serialize)]
pub struct SnapshotView {
    pub hosts: Vec<HostView>,
    pub default_backend: Option<String>,
    /// The default certificate's Secret; `null` means the generated placeholder.
    pub default_certificate: Option<String>,
    pub backends: Vec<BackendView>,
    pub certificates: Vec<CertificateView>,
    pub diagnostics: Vec<Diagnostic>,
}

#[derive(Debug, Serialize)]
pub struct HostView {
    pub host: String,
    pub tls: bool,
    pub certificate: Option<String>,
    pub routes: Vec<RouteView>,
}

#[derive(Debug, Serialize)]
pub struct RouteView {
    pub path: String,
    pub path_type: &'static str,
    pub backend: String,
    pub https_redirect: bool,
    pub ingress: String,
}

#[derive(Debug, Serialize)]
pub struct BackendView {
    pub backend: String,
    pub endpoints: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct CertificateView {
    pub secret: String,
    pub subject: String,
    pub dns_names: Vec<String>,
    pub issuer: String,
    pub not_before: String,
    pub not_after: String,
    pub sha256_fingerprint: String,
}

pub fn path_view(path: &PathMatch) -> (String, &'static str) {
    match path {
        PathMatch::Exact(p) => (p.clone(), "Exact"),
        PathMatch::Prefix(p) => (p.clone(), "Prefix"),
    }
}

impl SnapshotView {
    pub fn new(served: &Served) -> Self {
        let snapshot: &Snapshot = &served.snapshot;
        let hosts = snapshot
            .virtual_hosts
            .iter()
            .map(|v| HostView {
                host: v.host.to_string(),
                tls: v.tls,
                certificate: v.certificate.as_ref().map(|c| c.0.clone()),
                routes: v
                    .routes
                    .iter()
                    .map(|r| {
                        let (path, path_type) = path_view(&r.path);
                        RouteView {
                            path,
                            path_type,
                            backend: r.backend.0.clone(),
                            https_redirect: r.https_redirect,
                            ingress: r.source.clone(),
                        }
                    })
                    .collect(),
            })
            .collect();
        let backends = snapshot
            .backends
            .iter()
            .map(|b| BackendView {
                backend: b.id.0.clone(),
                endpoints: b.endpoints.iter().map(|e| e.to_string()).collect(),
            })
            .collect();
        let certificates = served
            .certificates
            .iter()
            .map(|(id, info)| CertificateView {
                secret: id.0.clone(),
                subject: info.subject.clone(),
                dns_names: info.dns_names.clone(),
                issuer: info.issuer.clone(),
                not_before: info.not_before.clone(),
                not_after: info.not_after.clone(),
                sha256_fingerprint: info.sha256_fingerprint.clone(),
            })
            .collect();
        SnapshotView {
            hosts,
            default_backend: snapshot.default_backend.as_ref().map(|b| b.0.clone()),
            default_certificate: snapshot.default_certificate.as_ref().map(|c| c.0.clone()),
            backends,
            certificates,
            diagnostics: served.diagnostics.clone(),
        }
    }
}
