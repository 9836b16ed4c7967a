//! A snapshot compiled for serving: hash tables for hosts and server names, routes in
//! match order, parsed certificates and clusters with their round-robin cursors.
//!
//! [`crate::Dataplane::apply`] compiles one and swaps it in; handshakes and requests read
//! whichever is current when they start.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::routing::{CompiledRoute, HostRoutes, RouteTable, sort_routes};
use crate::snapshot::{BackendId, Certificate, CertificateId, HostPattern, Snapshot};
use crate::tls::{
    CertificateError, CertificateTable, LoadedCertificate, ServedCertificate, load_certificate,
};
use crate::upstream::Cluster;

/// The compiled form of one snapshot.
pub struct Runtime {
    pub snapshot: Arc<Snapshot>,
    pub routes: RouteTable,
    pub certificates: CertificateTable,
    pub default_backend: Option<Arc<Cluster>>,
    /// Parsed certificates by id, kept so the next compile can reuse unchanged ones.
    loaded: HashMap<CertificateId, Arc<ServedCertificate>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("virtual_hosts", &self.snapshot.virtual_hosts.len())
            .finish_non_exhaustive()
    }
}

/// What a compile did, for the log line of each applied snapshot.
#[derive(Debug, Default, Clone)]
pub struct ApplyReport {
    pub hosts: usize,
    pub routes: usize,
    pub certificates: usize,
    pub backends: usize,
    pub endpoints: usize,
    /// Certificates the data plane could not load; translate normally catches these first.
    pub failed_certificates: Vec<(CertificateId, CertificateError)>,
}

impl Runtime {
    /// The runtime before any snapshot: no routes, and the placeholder for every name.
    pub fn empty(placeholder: Arc<ServedCertificate>) -> Self {
        Runtime {
            snapshot: Arc::new(Snapshot::default()),
            routes: RouteTable::default(),
            certificates: CertificateTable::new(placeholder),
            default_backend: None,
            loaded: HashMap::new(),
        }
    }

    /// Compiles `snapshot`, reusing certificates of `previous` whose PEM did not change.
    pub fn compile(
        snapshot: Arc<Snapshot>,
        previous: &Runtime,
        placeholder: &Arc<ServedCertificate>,
        preloaded: &HashMap<CertificateId, LoadedCertificate>,
    ) -> (Runtime, ApplyReport) {
        let mut report = ApplyReport::default();

        // Certificates: parse new or changed ones, reuse the rest.
        let old_pem: HashMap<&CertificateId, &Certificate> = previous
            .snapshot
            .certificates
            .iter()
            .map(|c| (&c.id, c))
            .collect();
        let mut loaded = HashMap::with_capacity(snapshot.certificates.len());
        for cert in &snapshot.certificates {
            let unchanged = old_pem.get(&cert.id).is_some_and(|old| *old == cert);
            if unchanged && let Some(served) = previous.loaded.get(&cert.id) {
                loaded.insert(cert.id.clone(), Arc::clone(served));
                continue;
            }
            if let Some(parsed) = preloaded.get(&cert.id) {
                let served = ServedCertificate {
                    id: Some(cert.id.clone()),
                    loaded: parsed.clone(),
                };
                loaded.insert(cert.id.clone(), Arc::new(served));
                continue;
            }
            match load_certificate(
                cert.chain_pem.as_bytes(),
                cert.key_pem.expose().as_bytes(),
                None,
            ) {
                Ok(parsed) => {
                    let served = ServedCertificate {
                        id: Some(cert.id.clone()),
                        loaded: parsed,
                    };
                    loaded.insert(cert.id.clone(), Arc::new(served));
                }
                Err(error) => report.failed_certificates.push((cert.id.clone(), error)),
            }
        }
        report.certificates = loaded.len();

        let default_cert = snapshot
            .default_certificate
            .as_ref()
            .and_then(|id| loaded.get(id))
            .unwrap_or(placeholder);
        let mut certificates = CertificateTable::new(Arc::clone(default_cert));

        // Clusters: one per backend, with a spread-out round-robin start.
        let seed = RandomState::new();
        let clusters: HashMap<&BackendId, Arc<Cluster>> = snapshot
            .backends
            .iter()
            .map(|b| {
                report.endpoints += b.endpoints.len();
                let start = seed.hash_one(&b.id) as usize;
                (
                    &b.id,
                    Arc::new(Cluster::new(b.id.clone(), b.endpoints.clone(), start)),
                )
            })
            .collect();
        report.backends = clusters.len();

        // Hosts and routes.
        let mut routes = RouteTable::default();
        for vhost in &snapshot.virtual_hosts {
            let mut compiled: Vec<CompiledRoute> = vhost
                .routes
                .iter()
                .map(|r| CompiledRoute {
                    path: r.path.clone(),
                    cluster: clusters.get(&r.backend).cloned(),
                    https_redirect: r.https_redirect,
                    source: Arc::from(r.source.as_str()),
                })
                .collect();
            sort_routes(&mut compiled);
            report.routes += compiled.len();
            report.hosts += 1;
            let host_routes = HostRoutes {
                routes: compiled,
                tls: vhost.tls,
            };
            let cert = vhost.certificate.as_ref().and_then(|id| loaded.get(id));
            match &vhost.host {
                HostPattern::Exact(host) => {
                    if let Some(cert) = cert {
                        certificates.insert_exact(host.clone(), Arc::clone(cert));
                    }
                    routes.exact.insert(host.clone(), host_routes);
                }
                HostPattern::Wildcard(suffix) => {
                    if let Some(cert) = cert {
                        certificates.insert_wildcard(suffix.clone(), Arc::clone(cert));
                    }
                    routes.wildcard.insert(suffix.clone(), host_routes);
                }
                HostPattern::Any => routes.any = host_routes,
            }
        }

        let default_backend = snapshot
            .default_backend
            .as_ref()
            .and_then(|id| clusters.get(id))
            .cloned();
        let runtime = Runtime {
            snapshot,
            routes,
            certificates,
            default_backend,
            loaded,
        };
        (runtime, report)
    }

    /// Every endpoint of every backend, for pruning the connection pool.
    pub fn endpoints(&self) -> HashSet<SocketAddr> {
        self.snapshot
            .backends
            .iter()
            .flat_map(|b| b.endpoints.iter().copied())
            .collect()
    }
}
