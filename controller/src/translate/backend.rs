//! From an Ingress backend to the ready endpoints of a Service port.
//!
//! The Service port is matched by name or number; its endpoints come from the
//! EndpointSlices labelled `kubernetes.io/service-name`, whose ports are matched by the
//! Service port's name. Only endpoints whose `ready` condition is not false take new
//! requests (the API says a missing condition should be read as ready).
//! <https://kubernetes.io/docs/concepts/services-networking/endpoint-slices/>

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::IngressServiceBackend;
use portcullis_dataplane::snapshot::BackendId;

use super::diagnostic::Reason;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Services and their EndpointSlices by namespace and name.
#[derive(Default)]
pub struct ServiceIndex<'a> {
    services: HashMap<(&'a str, &'a str), &'a Service>,
    slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
}

impl<'a> ServiceIndex<'a> {
    pub fn new(
        services: impl Iterator<Item = &'a Service>,
        slices: impl Iterator<Item = &'a EndpointSlice>,
    ) -> Self {
        let mut index = ServiceIndex::default();
        for service in services {
            let meta = &service.metadata;
            if let Some(name) = meta.name.as_deref() {
                index.services.insert((namespace_of(meta), name), service);
            }
        }
        for slice in slices {
            let meta = &slice.metadata;
            if let Some(service) = meta.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) {
                index
                    .slices
                    .entry((namespace_of(meta), service.as_str()))
                    .or_default()
                    .push(slice);
            }
        }
        index
    }
}

/// A namespaced object's namespace; manifests without one land in `default`, as with
/// `kubectl apply`.
pub fn namespace_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("default")
}

/// A backend and what was found for it.
pub struct ResolvedBackend {
    pub id: BackendId,
    pub endpoints: Vec<SocketAddr>,
    /// Set when the Service or its port is missing; the backend then has no endpoints.
    pub problem: Option<(Reason, String)>,
}

/// The backend id for a Service port as the Ingress names it: `namespace/name:port`.
pub fn backend_id(namespace: &str, backend: &IngressServiceBackend) -> BackendId {
    let port = backend.port.as_ref();
    let port = match (
        port.and_then(|p| p.number),
        port.and_then(|p| p.name.as_deref()),
    ) {
        (Some(number), _) => number.to_string(),
        (None, Some(name)) => name.to_owned(),
        (None, None) => "?".to_owned(),
    };
    BackendId(format!("{namespace}/{}:{port}", backend.name))
}

/// Resolves a Service backend in `namespace`.
pub fn resolve_backend(
    index: &ServiceIndex<'_>,
    namespace: &str,
    backend: &IngressServiceBackend,
) -> ResolvedBackend {
    let id = backend_id(namespace, backend);
    let missing = |reason, message| ResolvedBackend {
        id: id.clone(),
        endpoints: Vec::new(),
        problem: Some((reason, message)),
    };
    let name = backend.name.as_str();
    let Some(service) = index.services.get(&(namespace, name)) else {
        return missing(
            Reason::ServiceNotFound,
            format!("Service {namespace}/{name} does not exist; requests get 503 until it does"),
        );
    };
    let wanted = backend.port.as_ref();
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    let port = ports.iter().find(|p| match wanted {
        Some(w) if w.number.is_some() => w.number == Some(p.port),
        Some(w) => w.name.is_some() && w.name == p.name,
        None => false,
    });
    let Some(port) = port else {
        let wanted = id.0.rsplit(':').next().unwrap_or_default().to_owned();
        return missing(
            Reason::ServicePortNotFound,
            format!(
                "Service {namespace}/{name} has no port {wanted}; requests get 503 until it does"
            ),
        );
    };

    let slices = index
        .slices
        .get(&(namespace, name))
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut endpoints = ready_endpoints(slices, port);
    endpoints.sort();
    endpoints.dedup();
    ResolvedBackend {
        id,
        endpoints,
        problem: None,
    }
}

/// Ready addresses of the slices' port that carries `service_port`.
fn ready_endpoints(slices: &[&EndpointSlice], service_port: &ServicePort) -> Vec<SocketAddr> {
    let port_name = service_port.name.as_deref().unwrap_or("");
    let mut out = Vec::new();
    for slice in slices {
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            continue;
        }
        let number = slice
            .ports
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name)
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok());
        let Some(number) = number else { continue };
        for endpoint in &slice.endpoints {
            let ready = endpoint.conditions.as_ref().and_then(|c| c.ready) != Some(false);
            if !ready {
                continue;
            }
            for address in &endpoint.addresses {
                if let Ok(ip) = address.parse::<IpAddr>() {
                    out.push(SocketAddr::new(ip, number));
                }
            }
        }
    }
    out
}
