//! Objects to a Snapshot and diagnostics: pure, no I/O, deterministic.
//!
//! Both sources (the Kubernetes API and a folder of manifests) fill an [`Objects`] value
//! and call [`translate`]. Ingresses are taken oldest first (then by namespace/name), so
//! when two claim the same host and path, or the same TLS host, the older one wins every
//! time and the other gets a diagnostic.

pub mod annotations;
pub mod backend;
pub mod class;
pub mod diagnostic;
pub mod secret;
pub mod validate;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressClass};
use portcullis_dataplane::snapshot::{
    Backend, BackendId, Certificate, CertificateId, HostPattern, PathMatch, Route, Snapshot,
    VirtualHost,
};
use portcullis_dataplane::tls::{CertificateInfo, LoadedCertificate, load_certificate};

use annotations::parse_annotations;
use backend::{ServiceIndex, namespace_of, resolve_backend};
pub use class::{ClassConfig, ClassDecision, decide_class};
pub use diagnostic::{Diagnostic, Kind, ObjectRef, Reason};
pub use secret::SecretCache;
use secret::{LoadedSecret, SecretProblem, load_secret};
use validate::{parse_host, parse_path};

use crate::metrics::EXPIRY_WARNING_DAYS;

/// Everything translation reads. Sources keep these in stores and hand over a view.
#[derive(Debug, Default, Clone)]
pub struct Objects {
    pub ingresses: Vec<Arc<Ingress>>,
    pub ingress_classes: Vec<Arc<IngressClass>>,
    pub secrets: Vec<Arc<Secret>>,
    pub services: Vec<Arc<Service>>,
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
}

/// Settings of translation, from flags.
#[derive(Debug, Clone)]
pub struct TranslateConfig {
    pub class: ClassConfig,
    /// `namespace/name` of the Secret served when nothing else matches.
    pub default_certificate: Option<(String, String)>,
}

/// An Ingress we serve, and why it is ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedIngress {
    pub object: ObjectRef,
    pub decision: ClassDecision,
}

/// The result of one translation.
#[derive(Debug, Clone)]
pub struct Translation {
    pub snapshot: Snapshot,
    /// Sorted, so equal inputs give equal output.
    pub diagnostics: Vec<Diagnostic>,
    /// The Ingresses that are ours, oldest first.
    pub ingresses: Vec<OwnedIngress>,
    /// What was found about each certificate in the snapshot.
    pub certificates: BTreeMap<CertificateId, CertificateInfo>,
    /// The parsed certificates, so the data plane need not parse them again.
    pub loaded: HashMap<CertificateId, LoadedCertificate>,
}

/// One host's routes and TLS claim while translation runs.
#[derive(Default)]
struct HostState {
    /// Path to the route that claimed it first, and that route's Ingress.
    routes: BTreeMap<PathKey, (Route, ObjectRef)>,
    /// The Secret (`namespace/name`) and Ingress that claimed TLS for this host; the
    /// Secret is `None` when the Ingress lists the host without a secretName.
    tls: Option<(Option<String>, ObjectRef)>,
    certificate: Option<CertificateId>,
}

/// A path match as an ordered key (pathType, path).
type PathKey = (bool, String);

fn path_key(path: &PathMatch) -> PathKey {
    match path {
        PathMatch::Exact(p) => (true, p.clone()),
        PathMatch::Prefix(p) => (false, p.clone()),
    }
}

/// Translates `objects` into a snapshot. `previous` is the snapshot being served: a Secret
/// that broke after it was good keeps its last good certificate from there. `now_unix`
/// decides certificate expiry.
pub fn translate(
    objects: &Objects,
    config: &TranslateConfig,
    previous: &Snapshot,
    now_unix: i64,
    cache: &mut SecretCache,
) -> Translation {
    let mut t = Translator {
        config,
        previous,
        now_unix,
        cache,
        index: ServiceIndex::new(
            objects.services.iter().map(|s| s.as_ref()),
            objects.endpoint_slices.iter().map(|s| s.as_ref()),
        ),
        secrets: objects
            .secrets
            .iter()
            .filter_map(|s| {
                Some((
                    (namespace_of(&s.metadata), s.metadata.name.as_deref()?),
                    s.as_ref(),
                ))
            })
            .collect(),
        loaded: HashMap::new(),
        hosts: BTreeMap::new(),
        backends: BTreeMap::new(),
        certificates: BTreeMap::new(),
        diagnostics: Vec::new(),
        reported: HashSet::new(),
        default_backend: None,
    };

    // Ours, oldest first; objects without a creation time (manifests) sort last.
    let mut ours: Vec<(&Ingress, OwnedIngress)> = objects
        .ingresses
        .iter()
        .filter_map(|ingress| {
            let name = ingress.metadata.name.as_deref()?;
            let decision = decide_class(ingress, &objects.ingress_classes, &config.class);
            let object = ObjectRef::new(Kind::Ingress, namespace_of(&ingress.metadata), name);
            decision
                .is_ours()
                .then_some((ingress.as_ref(), OwnedIngress { object, decision }))
        })
        .collect();
    ours.sort_by(|(a, ao), (b, bo)| {
        let created = |i: &Ingress| i.metadata.creation_timestamp.as_ref().map(|t| t.0);
        (created(a).is_none(), created(a), &ao.object).cmp(&(
            created(b).is_none(),
            created(b),
            &bo.object,
        ))
    });

    for (ingress, owned) in &ours {
        t.add_ingress(ingress, &owned.object);
    }
    let default_certificate = t.add_default_certificate();
    let snapshot = t.assemble(default_certificate);

    t.cache.prune();
    let mut diagnostics = t.diagnostics;
    diagnostics.sort();
    diagnostics.dedup();
    Translation {
        snapshot,
        diagnostics,
        ingresses: ours.into_iter().map(|(_, owned)| owned).collect(),
        certificates: t
            .certificates
            .iter()
            .map(|(id, loaded)| (id.clone(), loaded.info.clone()))
            .collect(),
        loaded: t
            .certificates
            .into_iter()
            .map(|(id, loaded)| {
                (
                    id,
                    LoadedCertificate {
                        key: loaded.key,
                        info: loaded.info,
                    },
                )
            })
            .collect(),
    }
}

struct Translator<'a> {
    config: &'a TranslateConfig,
    cache: &'a mut SecretCache,
    previous: &'a Snapshot,
    now_unix: i64,
    index: ServiceIndex<'a>,
    secrets: HashMap<(&'a str, &'a str), &'a Secret>,
    /// Each Secret is loaded once per translation.
    loaded: HashMap<(String, String), Result<LoadedSecret, SecretProblem>>,
    hosts: BTreeMap<HostPattern, HostState>,
    backends: BTreeMap<BackendId, Vec<SocketAddr>>,
    /// Certificates some host uses.
    certificates: BTreeMap<CertificateId, LoadedSecret>,
    diagnostics: Vec<Diagnostic>,
    /// (object, field, reason) already reported, so one problem is one diagnostic.
    reported: HashSet<(ObjectRef, String, Reason)>,
    default_backend: Option<(BackendId, ObjectRef)>,
}

impl Translator<'_> {
    fn report(
        &mut self,
        object: &ObjectRef,
        field: impl Into<String>,
        reason: Reason,
        message: String,
    ) {
        let field = field.into();
        if self
            .reported
            .insert((object.clone(), field.clone(), reason))
        {
            self.diagnostics
                .push(Diagnostic::new(object.clone(), field, reason, message));
        }
    }

    fn add_ingress(&mut self, ingress: &Ingress, object: &ObjectRef) {
        let annotations = parse_annotations(
            ingress.metadata.annotations.as_ref(),
            object,
            &mut self.diagnostics,
        );
        let Some(spec) = ingress.spec.as_ref() else {
            return;
        };
        let namespace = object.namespace.as_str();

        // Rule hosts, for TLS entries that list none.
        let rule_hosts: Vec<&str> = spec
            .rules
            .iter()
            .flatten()
            .filter_map(|r| r.host.as_deref())
            .collect();

        // TLS first, so routes know which hosts have TLS.
        for (i, tls) in spec.tls.iter().flatten().enumerate() {
            let hosts: Vec<&str> = match tls.hosts.as_deref() {
                Some(hosts) if !hosts.is_empty() => hosts.iter().map(String::as_str).collect(),
                _ => rule_hosts.clone(),
            };
            let secret_name = tls.secret_name.as_deref().filter(|s| !s.is_empty());
            for (j, host) in hosts.iter().enumerate() {
                let field = format!("spec.tls[{i}].hosts[{j}]");
                match parse_host(host) {
                    Ok(pattern) => {
                        self.claim_tls(object, &field, pattern, namespace, secret_name, i)
                    }
                    Err(message) => self.report(object, field, Reason::InvalidHost, message),
                }
            }
        }

        // Rules and their paths.
        for (i, rule) in spec.rules.iter().flatten().enumerate() {
            let pattern = match rule.host.as_deref() {
                None | Some("") => HostPattern::Any,
                Some(host) => match parse_host(host) {
                    Ok(pattern) => pattern,
                    Err(message) => {
                        self.report(
                            object,
                            format!("spec.rules[{i}].host"),
                            Reason::InvalidHost,
                            message,
                        );
                        continue;
                    }
                },
            };
            let Some(http) = rule.http.as_ref() else {
                continue;
            };
            for (j, path) in http.paths.iter().enumerate() {
                let field = format!("spec.rules[{i}].http.paths[{j}]");
                let path_match = match parse_path(path.path.as_deref(), &path.path_type) {
                    Ok(path_match) => path_match,
                    Err(message) => {
                        self.report(
                            object,
                            format!("{field}.path"),
                            Reason::InvalidPath,
                            message,
                        );
                        continue;
                    }
                };
                let Some(backend) = self.add_backend(
                    object,
                    &format!("{field}.backend"),
                    namespace,
                    &path.backend,
                ) else {
                    continue;
                };
                let route = Route {
                    path: path_match,
                    backend,
                    https_redirect: annotations.ssl_redirect,
                    source: object.key(),
                };
                self.claim_route(object, &field, pattern.clone(), route);
            }
        }

        // The default backend: the oldest Ingress that sets one.
        if let Some(default) = spec.default_backend.as_ref() {
            let field = "spec.defaultBackend";
            match &self.default_backend {
                Some((_, winner)) => {
                    let message = format!("the default backend is already set by older {winner}");
                    self.report(object, field, Reason::ConflictingRule, message);
                }
                None => {
                    if let Some(id) = self.add_backend(object, field, namespace, default) {
                        self.default_backend = Some((id, object.clone()));
                    }
                }
            }
        }
    }

    /// Resolves a backend, records its endpoints, and reports a missing Service or port.
    fn add_backend(
        &mut self,
        object: &ObjectRef,
        field: &str,
        namespace: &str,
        backend: &IngressBackend,
    ) -> Option<BackendId> {
        let Some(service) = backend.service.as_ref() else {
            let message = "only Service backends are supported; resource backends are ignored";
            self.report(object, field, Reason::InvalidBackend, message.into());
            return None;
        };
        let resolved = resolve_backend(&self.index, namespace, service);
        if let Some((reason, message)) = resolved.problem {
            self.report(object, format!("{field}.service"), reason, message);
        }
        self.backends
            .insert(resolved.id.clone(), resolved.endpoints);
        Some(resolved.id)
    }

    fn claim_route(&mut self, object: &ObjectRef, field: &str, pattern: HostPattern, route: Route) {
        let host = pattern.to_string();
        let state = self.hosts.entry(pattern).or_default();
        let key = path_key(&route.path);
        if let Some((_, winner)) = state.routes.get(&key) {
            let winner = winner.clone();
            let message = format!(
                "host {host} path {} is already served by older {winner}; this rule is ignored",
                key.1
            );
            self.report(object, field, Reason::ConflictingRule, message);
            return;
        }
        state.routes.insert(key, (route, object.clone()));
    }

    fn claim_tls(
        &mut self,
        object: &ObjectRef,
        field: &str,
        pattern: HostPattern,
        namespace: &str,
        secret_name: Option<&str>,
        tls_index: usize,
    ) {
        let host = pattern.to_string();
        let secret_key = secret_name.map(|name| format!("{namespace}/{name}"));
        let state = self.hosts.entry(pattern.clone()).or_default();
        if let Some((claimed, winner)) = &state.tls {
            if *claimed != secret_key {
                let message = match claimed {
                    Some(secret) => format!(
                        "TLS for host {host} is already served from Secret {secret} by older {winner}"
                    ),
                    None => format!("TLS for host {host} is already set by older {winner}"),
                };
                self.report(object, field, Reason::ConflictingRule, message);
            }
            return;
        }
        state.tls = Some((secret_key, object.clone()));
        let Some(secret_name) = secret_name else {
            return;
        };

        // The Secret, loaded once per translation; a broken Secret keeps its last good
        // certificate if that one is still valid.
        let secret_field = format!("spec.tls[{tls_index}].secretName");
        let loaded = match self.load_secret(namespace, secret_name) {
            Ok(loaded) => loaded,
            Err(problem) => match self.last_good(namespace, secret_name) {
                Some(last_good) => {
                    let message = format!(
                        "{}; still serving the last good certificate from this Secret",
                        problem.message
                    );
                    self.report(object, secret_field.clone(), problem.reason, message);
                    last_good
                }
                None => {
                    let message =
                        format!("{}; its hosts get the default certificate", problem.message);
                    self.report(object, secret_field, problem.reason, message);
                    return;
                }
            },
        };

        if !loaded.info.covers(&host) {
            let names = if loaded.info.dns_names.is_empty() {
                "no DNS names".to_owned()
            } else {
                loaded.info.dns_names.join(", ")
            };
            let message = format!(
                "the certificate in Secret {namespace}/{secret_name} covers {names}, not {host}; \
                 {host} gets the default certificate"
            );
            self.report(object, field, Reason::CertificateHostMismatch, message);
            return;
        }
        self.warn_if_expiring(object, &secret_field, &loaded);
        let id = loaded.certificate.id.clone();
        if let Some(state) = self.hosts.get_mut(&pattern) {
            state.certificate = Some(id.clone());
        }
        self.certificates.entry(id).or_insert(loaded);
    }

    /// A certificate that expires within two weeks gets a diagnostic whose message names
    /// the days left, so it is told again each day rather than on every rebuild.
    fn warn_if_expiring(&mut self, object: &ObjectRef, field: &str, loaded: &LoadedSecret) {
        let left = loaded.info.not_after_unix - self.now_unix;
        if left >= EXPIRY_WARNING_DAYS * 86_400 {
            return;
        }
        let days = left / 86_400;
        let when = if days == 0 {
            "today".to_owned()
        } else {
            format!("in {days} days")
        };
        let message = format!(
            "the certificate in Secret {} expires {when} ({}); renew it",
            loaded.certificate.id, loaded.info.not_after
        );
        self.report(object, field, Reason::CertificateExpiringSoon, message);
    }

    fn load_secret(&mut self, namespace: &str, name: &str) -> Result<LoadedSecret, SecretProblem> {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(result) = self.loaded.get(&key) {
            return result.clone();
        }
        let secret = self.secrets.get(&(namespace, name)).copied();
        let mut result = load_secret(secret, namespace, name, self.now_unix, self.cache);
        if let Err(problem) = &mut result
            && problem.reason == Reason::SecretNotFound
        {
            // The commonest cause: the Secret exists, but in another namespace.
            let mut elsewhere: Vec<&str> = self
                .secrets
                .keys()
                .filter(|(ns, n)| *n == name && *ns != namespace)
                .map(|(ns, _)| *ns)
                .collect();
            elsewhere.sort();
            if !elsewhere.is_empty() {
                problem.message.push_str(&format!(
                    "; a Secret named {name} exists in namespace {}, but an Ingress can only use \
                     Secrets in its own namespace",
                    elsewhere.join(", ")
                ));
            }
        }
        self.loaded.insert(key, result.clone());
        result
    }

    /// The certificate this Secret had in the snapshot being served, if still valid.
    fn last_good(&self, namespace: &str, name: &str) -> Option<LoadedSecret> {
        let id = CertificateId(format!("{namespace}/{name}"));
        let certificate = self.previous.certificates.iter().find(|c| c.id == id)?;
        let loaded = load_certificate(
            certificate.chain_pem.as_bytes(),
            certificate.key_pem.expose().as_bytes(),
            Some(self.now_unix),
        )
        .ok()?;
        Some(LoadedSecret {
            certificate: certificate.clone(),
            info: loaded.info,
            key: loaded.key,
        })
    }

    /// Loads `--default-certificate`; a problem with it is reported on the Secret.
    fn add_default_certificate(&mut self) -> Option<CertificateId> {
        let (namespace, name) = self.config.default_certificate.clone()?;
        match self
            .load_secret(&namespace, &name)
            .or_else(|problem| self.last_good(&namespace, &name).ok_or(problem))
        {
            Ok(loaded) => {
                let object = ObjectRef::new(Kind::Secret, &namespace, &name);
                self.warn_if_expiring(&object, "data", &loaded);
                let id = loaded.certificate.id.clone();
                self.certificates.entry(id.clone()).or_insert(loaded);
                Some(id)
            }
            Err(problem) => {
                let object = ObjectRef::new(Kind::Secret, &namespace, &name);
                let message = format!(
                    "{} (it is the --default-certificate); serving the generated placeholder instead",
                    problem.message
                );
                self.report(&object, "data", problem.reason, message);
                None
            }
        }
    }

    /// Whether a host pattern has TLS: listed itself, or covered by a listed wildcard.
    fn host_has_tls(&self, pattern: &HostPattern) -> bool {
        let listed = |p: &HostPattern| self.hosts.get(p).is_some_and(|s| s.tls.is_some());
        match pattern {
            HostPattern::Exact(host) => {
                listed(pattern)
                    || host.split_once('.').is_some_and(|(_, parent)| {
                        listed(&HostPattern::Wildcard(parent.to_owned()))
                    })
            }
            HostPattern::Wildcard(_) => listed(pattern),
            HostPattern::Any => false,
        }
    }

    fn assemble(&self, default_certificate: Option<CertificateId>) -> Snapshot {
        let mut virtual_hosts = Vec::with_capacity(self.hosts.len());
        let mut used: BTreeSet<CertificateId> = default_certificate.iter().cloned().collect();
        for (pattern, state) in &self.hosts {
            let tls = self.host_has_tls(pattern);
            if state.routes.is_empty() && state.tls.is_none() {
                continue;
            }
            let mut routes: Vec<Route> = state
                .routes
                .values()
                .map(|(route, _)| Route {
                    https_redirect: route.https_redirect && tls,
                    ..route.clone()
                })
                .collect();
            routes.sort_by(|a, b| {
                b.path
                    .len()
                    .cmp(&a.path.len())
                    .then_with(|| path_key(&b.path).cmp(&path_key(&a.path)))
            });
            used.extend(state.certificate.iter().cloned());
            virtual_hosts.push(VirtualHost {
                host: pattern.clone(),
                routes,
                certificate: state.certificate.clone(),
                tls,
            });
        }

        let certificates: Vec<Certificate> = self
            .certificates
            .iter()
            .filter(|(id, _)| used.contains(*id))
            .map(|(_, loaded)| loaded.certificate.clone())
            .collect();
        let backends = self
            .backends
            .iter()
            .map(|(id, endpoints)| Backend {
                id: id.clone(),
                endpoints: endpoints.clone(),
            })
            .collect();
        Snapshot {
            virtual_hosts,
            default_backend: self.default_backend.as_ref().map(|(id, _)| id.clone()),
            backends,
            certificates,
            default_certificate,
        }
    }
}
