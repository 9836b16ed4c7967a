//! Ingress status: the leader writes `status.loadBalancer.ingress` on every Ingress it
//! serves, from `--publish-service` or `--publish-status-address`, and clears it on an
//! Ingress that stops being ours. It writes only when the value differs.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::{Ingress, IngressLoadBalancerIngress};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::translate::OwnedIngress;
use crate::translate::backend::namespace_of;

/// Where the published address comes from.
#[derive(Debug, Clone)]
pub enum PublishSource {
    /// That Service's load-balancer addresses, or its cluster IP when it has none.
    Service { namespace: String, name: String },
    /// Fixed IPs or host names.
    Addresses(Vec<String>),
    /// Status is not written.
    None,
}

pub struct StatusWriter {
    client: Client,
    source: PublishSource,
    /// Ingresses we wrote a status on, so we can clear it when they stop being ours.
    written: BTreeSet<(String, String)>,
}

impl StatusWriter {
    pub fn new(client: Client, source: PublishSource) -> Self {
        StatusWriter {
            client,
            source,
            written: BTreeSet::new(),
        }
    }

    /// Brings the status of every Ingress in line with who owns it.
    pub async fn sync(&mut self, ingresses: &[Arc<Ingress>], owned: &[OwnedIngress]) {
        let Some(desired) = self.desired().await else {
            return;
        };
        let ours: BTreeSet<(String, String)> = owned
            .iter()
            .map(|o| (o.object.namespace.clone(), o.object.name.clone()))
            .collect();

        for ingress in ingresses {
            let namespace = namespace_of(&ingress.metadata).to_owned();
            let Some(name) = ingress.metadata.name.clone() else {
                continue;
            };
            let key = (namespace, name);
            let current = current_addresses(ingress);
            let target = if ours.contains(&key) {
                desired.clone()
            } else if self.written.contains(&key) || (!current.is_empty() && current == desired) {
                // It was ours: take our address back off.
                Vec::new()
            } else {
                continue;
            };
            if current != target {
                self.patch(&key.0, &key.1, &target).await;
            }
            if target.is_empty() {
                self.written.remove(&key);
            } else {
                self.written.insert(key);
            }
        }
    }

    async fn patch(&self, namespace: &str, name: &str, addresses: &[IngressLoadBalancerIngress]) {
        let api: Api<Ingress> = Api::namespaced(self.client.clone(), namespace);
        let body = json!({ "status": { "loadBalancer": { "ingress": addresses } } });
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(_) => {
                tracing::info!(ingress = %format!("{namespace}/{name}"), addresses = addresses.len(), "ingress status updated")
            }
            // Deleted since the store saw it: nothing to write, and the watch will catch up.
            Err(kube::Error::Api(response)) if response.code == 404 => tracing::debug!(
                ingress = %format!("{namespace}/{name}"),
                "ingress is gone; not updating its status"
            ),
            Err(error) => {
                tracing::warn!(ingress = %format!("{namespace}/{name}"), %error, "cannot update ingress status")
            }
        }
    }

    /// The addresses to publish, or `None` when they cannot be known right now.
    async fn desired(&self) -> Option<Vec<IngressLoadBalancerIngress>> {
        match &self.source {
            PublishSource::None => None,
            PublishSource::Addresses(addresses) => {
                Some(addresses.iter().map(|a| address(a)).collect())
            }
            PublishSource::Service { namespace, name } => {
                let api: Api<Service> = Api::namespaced(self.client.clone(), namespace);
                match api.get(name).await {
                    Ok(service) => Some(service_addresses(&service)),
                    Err(error) => {
                        tracing::warn!(service = %format!("{namespace}/{name}"), %error, "cannot read the publish Service");
                        None
                    }
                }
            }
        }
    }
}

fn address(text: &str) -> IngressLoadBalancerIngress {
    if text.parse::<IpAddr>().is_ok() {
        IngressLoadBalancerIngress {
            ip: Some(text.to_owned()),
            ..Default::default()
        }
    } else {
        IngressLoadBalancerIngress {
            hostname: Some(text.to_owned()),
            ..Default::default()
        }
    }
}

fn service_addresses(service: &Service) -> Vec<IngressLoadBalancerIngress> {
    let balancer: Vec<IngressLoadBalancerIngress> = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .map(|i| IngressLoadBalancerIngress {
            ip: i.ip.clone(),
            hostname: i.hostname.clone(),
            ..Default::default()
        })
        .collect();
    if !balancer.is_empty() {
        return balancer;
    }
    let spec = service.spec.as_ref();
    let cluster_ips = spec.and_then(|s| s.cluster_ips.clone()).unwrap_or_default();
    let cluster_ip = spec.and_then(|s| s.cluster_ip.clone());
    let ips = if cluster_ips.is_empty() {
        cluster_ip.into_iter().collect()
    } else {
        cluster_ips
    };
    ips.iter()
        .filter(|ip| ip.as_str() != "None" && !ip.is_empty())
        .map(|ip| address(ip))
        .collect()
}

fn current_addresses(ingress: &Ingress) -> Vec<IngressLoadBalancerIngress> {
    ingress
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|i| IngressLoadBalancerIngress {
            ip: i.ip,
            hostname: i.hostname,
            ..Default::default()
        })
        .collect()
}
