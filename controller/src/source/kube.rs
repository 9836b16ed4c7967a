//! The Kubernetes API source: kube-rs watchers feeding reflector stores, one per kind and
//! watched namespace.
//!
//! Every watch event wakes the rebuild loop; the stores hold the last known state, so
//! when the API server goes away the data plane keeps serving what it had, and when it
//! returns the watchers re-list and the stores catch up (deletions included). Secrets are
//! watched with a `type=kubernetes.io/tls` field selector: no other Secret is ever held.

use std::fmt::Debug;
use std::hash::Hash;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::translate::Objects;

/// Why the API could not be reached at start-up.
#[derive(Debug, thiserror::Error)]
pub enum KubeSourceError {
    #[error("cannot read kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("cannot use kubeconfig {path}: {source}")]
    KubeconfigInvalid {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("cannot find Kubernetes credentials (in-cluster, KUBECONFIG or ~/.kube/config): {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("cannot build a Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// Builds a client from `--kubeconfig`, else the usual kube-rs order: in-cluster
/// configuration, `KUBECONFIG`, `~/.kube/config`.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, KubeSourceError> {
    let config = match kubeconfig {
        Some(path) => {
            let shown = path.display().to_string();
            let file = kube::config::Kubeconfig::read_from(path).map_err(|source| {
                KubeSourceError::Kubeconfig {
                    path: shown.clone(),
                    source,
                }
            })?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|source| KubeSourceError::KubeconfigInvalid {
                    path: shown,
                    source,
                })?
        }
        None => kube::Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

/// The reflector stores of every watched kind.
pub struct KubeStores {
    ingresses: Vec<Store<Ingress>>,
    ingress_classes: Store<IngressClass>,
    secrets: Vec<Store<Secret>>,
    services: Vec<Store<Service>>,
    endpoint_slices: Vec<Store<EndpointSlice>>,
}

pub const TLS_SECRET_FIELD_SELECTOR: &str = "type=kubernetes.io/tls";

impl KubeStores {
    /// Starts the watchers. `namespaces` empty means all namespaces. Each watch event
    /// sends on `changes` (a full channel already means "rebuild soon").
    pub fn start(client: &Client, namespaces: &[String], changes: mpsc::Sender<()>) -> Self {
        let plain = watcher::Config::default();
        let tls_only = watcher::Config::default().fields(TLS_SECRET_FIELD_SELECTOR);
        KubeStores {
            ingresses: watch_namespaced(client, namespaces, &plain, &changes),
            ingress_classes: spawn_watch(Api::all(client.clone()), plain.clone(), changes.clone()),
            secrets: watch_namespaced(client, namespaces, &tls_only, &changes),
            services: watch_namespaced(client, namespaces, &plain, &changes),
            endpoint_slices: watch_namespaced(client, namespaces, &plain, &changes),
        }
    }

    /// Waits until every store has seen its first full list.
    pub async fn wait_until_ready(&self) {
        let _ = self.ingress_classes.wait_until_ready().await;
        for store in &self.ingresses {
            let _ = store.wait_until_ready().await;
        }
        for store in &self.secrets {
            let _ = store.wait_until_ready().await;
        }
        for store in &self.services {
            let _ = store.wait_until_ready().await;
        }
        for store in &self.endpoint_slices {
            let _ = store.wait_until_ready().await;
        }
    }

    /// The objects as the stores hold them now.
    pub fn objects(&self) -> Objects {
        Objects {
            ingresses: self.ingresses.iter().flat_map(Store::state).collect(),
            ingress_classes: self.ingress_classes.state(),
            secrets: self.secrets.iter().flat_map(Store::state).collect(),
            services: self.services.iter().flat_map(Store::state).collect(),
            endpoint_slices: self.endpoint_slices.iter().flat_map(Store::state).collect(),
        }
    }
}

fn watch_namespaced<K>(
    client: &Client,
    namespaces: &[String],
    config: &watcher::Config,
    changes: &mpsc::Sender<()>,
) -> Vec<Store<K>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    if namespaces.is_empty() {
        return vec![spawn_watch(
            Api::all(client.clone()),
            config.clone(),
            changes.clone(),
        )];
    }
    namespaces
        .iter()
        .map(|ns| {
            spawn_watch(
                Api::namespaced(client.clone(), ns),
                config.clone(),
                changes.clone(),
            )
        })
        .collect()
}

/// How long a failed watch waits before it tries again: 250 ms, doubling to at most 5 s,
/// and back to 250 ms after any success. kube-rs's default climbs to 30 s and stays high
/// for two minutes, so after an API-server outage changes made meanwhile would wait up to
/// half a minute; a few watches retrying every 5 s cost the API server nothing.
#[derive(Debug, Clone)]
struct WatchBackoff {
    next: Duration,
}

const WATCH_RETRY_FIRST: Duration = Duration::from_millis(250);
const WATCH_RETRY_MAX: Duration = Duration::from_secs(5);

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff {
            next: WATCH_RETRY_FIRST,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let current = self.next;
        self.next = (current * 2).min(WATCH_RETRY_MAX);
        Some(current)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = WATCH_RETRY_FIRST;
    }
}

/// Runs one watcher into a reflector store until the process ends. Errors (the API server
/// is down, a watch expired with 410 Gone, a permission is missing) are logged and
/// retried with backoff; the store keeps its last state meanwhile.
fn spawn_watch<K>(api: Api<K>, config: watcher::Config, changes: mpsc::Sender<()>) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    let stream = reflector::reflector(
        writer,
        watcher(api, config)
            .backoff(WatchBackoff::default())
            // Nobody here reads managedFields; dropping them halves the memory of a store.
            .modify(|object: &mut K| object.meta_mut().managed_fields = None),
    );
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut failing = false;
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => {
                    if failing {
                        tracing::info!(%kind, "watch recovered");
                        failing = false;
                    }
                    let _ = changes.try_send(());
                }
                Err(error) => {
                    tracing::warn!(%kind, %error, "watch failed; retrying, still serving the last snapshot");
                    failing = true;
                }
            }
        }
    });
    store
}
