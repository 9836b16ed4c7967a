//! One test's world, shared by the API-server test files: an API server, a fresh
//! namespace, a network namespace for backends, our IngressClass and a CA for Ingress
//! certificates; and the request checks the tests repeat.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::StatusCode;
use kube::Client;
use rustls_pki_types::CertificateDer;

use super::client::{Reply, TlsClient, http_get};
use super::cluster::{Cluster, Rbac};
use super::controller::ControllerOptions;
use super::netns::{Backend, Netns};
use super::objects::{
    CLASS, CONTROLLER_NAME, apply, apply_cluster, describe_events, endpoint_slice, events_about,
    ingress_class, service, tls_secret,
};
use super::pki::{Ca, Leaf};

/// How long a change may take to reach the data plane before a test gives up. Changes
/// normally land in well under a second; the bound only keeps a broken build from hanging.
pub const CHANGE_TIMEOUT: Duration = Duration::from_secs(20);
pub const POLL: Duration = Duration::from_millis(25);

/// One test's world: an API server, a fresh namespace (also the election namespace), a
/// network namespace for backends, our IngressClass, and a CA for Ingress certificates.
/// Fields drop in order: the network namespace, then the API server and its temp dir.
pub struct World {
    pub netns: Netns,
    pub cluster: Cluster,
    pub namespace: String,
    pub admin: Client,
    pub ca: Ca,
}

impl World {
    pub async fn new() -> World {
        World::with(Rbac::AllNamespaces).await
    }

    pub async fn with(rbac: Rbac) -> World {
        let cluster = Cluster::start_with(rbac).await;
        let namespace = cluster.create_namespace("e2e").await;
        cluster.grant_election_namespace(&namespace).await;
        if rbac == Rbac::GrantedNamespaces {
            cluster.grant_namespace(&namespace).await;
        }
        let admin = cluster.admin();
        apply_cluster(&admin, &ingress_class(CLASS, CONTROLLER_NAME, false)).await;
        let netns = Netns::create(cluster.dir());
        World {
            netns,
            cluster,
            namespace,
            admin,
            ca: Ca::new("portcullis-e2e-ingress-ca"),
        }
    }

    pub fn options(&self) -> ControllerOptions {
        ControllerOptions::new(&self.namespace)
    }

    /// A Service `name` whose EndpointSlice lists `backends`, all ready.
    pub async fn service_for(&self, name: &str, backends: &[&Backend]) {
        let endpoints: Vec<_> = backends.iter().map(|b| (b.ip(), true)).collect();
        self.service_with(name, &endpoints).await;
    }

    /// A Service `name` whose EndpointSlice lists these endpoints and readiness.
    pub async fn service_with(&self, name: &str, endpoints: &[(IpAddr, bool)]) {
        apply(&self.admin, &service(&self.namespace, name)).await;
        let slice = endpoint_slice(&self.namespace, &format!("{name}-1"), name, endpoints);
        apply(&self.admin, &slice).await;
    }

    pub async fn secret(&self, name: &str, leaf: &Leaf) {
        apply(&self.admin, &tls_secret(&self.namespace, name, leaf)).await;
    }

    pub async fn ingress_events(&self, name: &str) -> String {
        describe_events(&events_about(&self.admin, &self.namespace, "Ingress", name).await)
    }
}

/// A GET that must answer 200 from the backend `expected`.
pub async fn get_from(
    client: &TlsClient,
    addr: SocketAddr,
    host: &str,
    path: &str,
    expected: &str,
) -> Result<Reply, String> {
    let reply = client.get(addr, host, path).await?;
    if reply.status != StatusCode::OK || reply.echo_name() != Some(expected) {
        return Err(format!(
            "GET https://{host}{path}: {} from {:?}, wanted 200 from {expected}",
            reply.status,
            reply.echo_name()
        ));
    }
    Ok(reply)
}

/// A GET over port 80 that must answer `status`.
pub async fn http_status(
    addr: SocketAddr,
    host: &str,
    path: &str,
    status: StatusCode,
) -> Result<Reply, String> {
    let reply = http_get(addr, host, path).await?;
    if reply.status != status {
        return Err(format!(
            "GET http://{host}{path}: {} (from {:?}), wanted {status}",
            reply.status,
            reply.echo_name()
        ));
    }
    Ok(reply)
}

pub async fn served_is(
    client: &TlsClient,
    addr: SocketAddr,
    sni: &str,
    expected: &CertificateDer<'static>,
) -> Result<(), String> {
    let served = client.served_certificate(addr, sni).await?;
    if &served == expected {
        Ok(())
    } else {
        Err(format!("{sni}: another certificate is served"))
    }
}

/// The sorted, de-duplicated names of the backends that answered `count` requests.
pub async fn backends_seen(
    client: &TlsClient,
    addr: SocketAddr,
    host: &str,
    count: usize,
) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for i in 0..count {
        let reply = client.get(addr, host, &format!("/request/{i}")).await?;
        let name = reply.echo_name().ok_or_else(|| {
            format!(
                "request {i}: {} without a backend: {}",
                reply.status, reply.body
            )
        })?;
        names.push(name.to_owned());
    }
    names.sort();
    names.dedup();
    Ok(names)
}
