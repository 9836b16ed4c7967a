//! The objects tests apply, and reading back what the controller wrote (status, Events,
//! the leader Lease).
//!
//! Conventions: a Service `NAME` has port 80 named `http`, target port 8080; its
//! EndpointSlice names the port `http` with port 8080 (the echo backends' port), so
//! resolving a backend exercises the Service-port to EndpointSlice-port mapping.

use std::fmt::Debug;
use std::net::IpAddr;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::netns::BACKEND_PORT;
use super::pki::Leaf;

/// Our controller's `spec.controller` value and class name (the binary's defaults).
pub const CONTROLLER_NAME: &str = "portcullis.dev/ingress-controller";
pub const CLASS: &str = "portcullis";

const FIELD_MANAGER: &str = "portcullis-e2e";

/// Server-side applies a namespaced object (created or updated) and returns it.
pub async fn apply<K>(client: &Client, object: &K) -> K
where
    K: Resource<Scope = NamespaceResourceScope> + Serialize + DeserializeOwned + Clone + Debug,
    K::DynamicType: Default,
{
    let namespace = object
        .namespace()
        .expect("namespaced object has a namespace");
    let name = object.name_any();
    Api::<K>::namespaced(client.clone(), &namespace)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(object),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {} {namespace}/{name}: {e}", kind::<K>()))
}

/// Server-side applies a cluster-scoped object.
pub async fn apply_cluster<K>(client: &Client, object: &K) -> K
where
    K: Resource<Scope = ClusterResourceScope> + Serialize + DeserializeOwned + Clone + Debug,
    K::DynamicType: Default,
{
    let name = object.name_any();
    Api::<K>::all(client.clone())
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(object),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {} {name}: {e}", kind::<K>()))
}

/// Deletes a namespaced object (without waiting for finalizers; these objects have none).
pub async fn delete<K>(client: &Client, namespace: &str, name: &str)
where
    K: Resource<Scope = NamespaceResourceScope> + DeserializeOwned + Clone + Debug,
    K::DynamicType: Default,
{
    Api::<K>::namespaced(client.clone(), namespace)
        .delete(name, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("delete {} {namespace}/{name}: {e}", kind::<K>()));
}

fn kind<K: Resource>() -> String
where
    K::DynamicType: Default,
{
    K::kind(&K::DynamicType::default()).into_owned()
}

fn from_json<T: DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("test object matches its schema")
}

/// A `kubernetes.io/tls` Secret from a certificate and key.
pub fn tls_secret(namespace: &str, name: &str, leaf: &Leaf) -> Secret {
    tls_secret_raw(namespace, name, &leaf.cert_pem, &leaf.key_pem)
}

/// A `kubernetes.io/tls` Secret with whatever bytes a test wants in it.
pub fn tls_secret_raw(namespace: &str, name: &str, cert: &str, key: &str) -> Secret {
    from_json(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": name, "namespace": namespace },
        "type": "kubernetes.io/tls",
        "stringData": { "tls.crt": cert, "tls.key": key },
    }))
}

/// A ClusterIP Service with port 80 (`http`) to target port 8080.
pub fn service(namespace: &str, name: &str) -> Service {
    from_json(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": name, "namespace": namespace },
        "spec": {
            "selector": { "app": name },
            "ports": [{ "name": "http", "port": 80, "targetPort": BACKEND_PORT,
                        "protocol": "TCP" }],
        },
    }))
}

/// An EndpointSlice for `service` with the given endpoints and their readiness.
pub fn endpoint_slice(
    namespace: &str,
    name: &str,
    service: &str,
    endpoints: &[(IpAddr, bool)],
) -> EndpointSlice {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(ip, ready)| {
            json!({ "addresses": [ip.to_string()], "conditions": { "ready": ready } })
        })
        .collect();
    from_json(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": { "name": name, "namespace": namespace,
                      "labels": { "kubernetes.io/service-name": service } },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{ "name": "http", "port": BACKEND_PORT, "protocol": "TCP" }],
    }))
}

/// An IngressClass; `is_default` sets the is-default-class annotation.
pub fn ingress_class(name: &str, controller: &str, is_default: bool) -> IngressClass {
    let mut annotations = serde_json::Map::new();
    if is_default {
        annotations.insert(
            "ingressclass.kubernetes.io/is-default-class".into(),
            "true".into(),
        );
    }
    from_json(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": { "name": name, "annotations": annotations },
        "spec": { "controller": controller },
    }))
}

/// Builds an Ingress: `ingress(ns, name).class(c).tls(hosts, secret).rule(host, paths)`.
pub fn ingress(namespace: &str, name: &str) -> IngressBuilder {
    IngressBuilder {
        value: json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": { "name": name, "namespace": namespace, "annotations": {} },
            "spec": { "rules": [] },
        }),
    }
}

pub struct IngressBuilder {
    value: Value,
}

impl IngressBuilder {
    pub fn class(mut self, class: &str) -> Self {
        self.value["spec"]["ingressClassName"] = class.into();
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.value["metadata"]["annotations"][key] = value.into();
        self
    }

    pub fn tls(mut self, hosts: &[&str], secret: &str) -> Self {
        let tls = self.value["spec"]["tls"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut tls = tls;
        tls.push(json!({ "hosts": hosts, "secretName": secret }));
        self.value["spec"]["tls"] = tls.into();
        self
    }

    /// A rule for `host` with `Prefix` paths, each to a Service's port 80.
    pub fn rule(mut self, host: &str, paths: &[(&str, &str)]) -> Self {
        let paths: Vec<Value> = paths
            .iter()
            .map(|(path, service)| {
                json!({ "path": path, "pathType": "Prefix",
                        "backend": { "service": { "name": service,
                                                  "port": { "number": 80 } } } })
            })
            .collect();
        let rules = self.value["spec"]["rules"].as_array_mut().expect("rules");
        rules.push(json!({ "host": host, "http": { "paths": paths } }));
        self
    }

    pub fn build(self) -> Ingress {
        from_json(self.value)
    }
}

/// The addresses in an Ingress's `status.loadBalancer.ingress` (IPs and hostnames).
pub async fn ingress_status(client: &Client, namespace: &str, name: &str) -> Vec<String> {
    let ingress = Api::<Ingress>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("get Ingress {namespace}/{name}: {e}"));
    ingress
        .status
        .and_then(|s| s.load_balancer)
        .and_then(|lb| lb.ingress)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| i.ip.or(i.hostname))
        .collect()
}

/// The events.k8s.io/v1 Events in `namespace` about the object `kind` `name`.
pub async fn events_about(client: &Client, namespace: &str, kind: &str, name: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("list Events in {namespace}: {e}"))
        .items
        .into_iter()
        .filter(|event| {
            event
                .regarding
                .as_ref()
                .is_some_and(|r| r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name))
        })
        .collect()
}

/// `type reason: note` of each Event, for assertion messages.
pub fn describe_events(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {}: {}",
                e.type_.as_deref().unwrap_or("?"),
                e.reason.as_deref().unwrap_or("?"),
                e.note.as_deref().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The holder of a Lease, if the Lease exists and is held.
pub async fn lease_holder(client: &Client, namespace: &str, name: &str) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .unwrap_or_else(|e| panic!("get Lease {namespace}/{name}: {e}"))?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}
