//! `portcullis serve`: wires a source, the rebuild pipeline, the data plane and the admin
//! endpoints together, and runs the shutdown sequence on SIGTERM or SIGINT.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_dataplane::metrics::DataplaneMetrics;
use portcullis_dataplane::{Config, Dataplane, Limits};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::admin::{AdminState, Health, serve_admin};
use crate::cli::{OnOff, SelectionArgs, ServeArgs};
use crate::metrics::ControllerMetrics;
use crate::pipeline::Pipeline;
use crate::pipeline::{Served, ServedSlot};
use crate::source::kube::{self as kube_source, KubeSourceError, KubeStores};
use crate::source::manifests::ManifestFolder;
use crate::source::watch::{settle, watch_folder};
use crate::status::events::EventWriter;
use crate::status::ingress_status::{PublishSource, StatusWriter};
use crate::status::leader::{self, ElectionConfig, Leadership, run_election};
use crate::translate::{ClassConfig, TranslateConfig};

/// Why `serve` stopped with an error; usage errors exit with 2, the rest with 1.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Dataplane(#[from] portcullis_dataplane::DataplaneError),
    #[error(transparent)]
    Kube(#[from] KubeSourceError),
    #[error("cannot listen on {addr} (admin): {source}")]
    AdminBind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

impl ServeError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ServeError::Usage(_) => 2,
            _ => 1,
        }
    }
}

pub fn dataplane_config(args: &ServeArgs) -> Config {
    let l = &args.limits;
    Config {
        https_addr: args.https_addr,
        http_addr: args.http_addr,
        strict_sni: args.strict_sni,
        trusted_proxies: args.trusted_proxies.clone(),
        redirect_https_port: args.redirect_https_port,
        access_log: args.access_log == OnOff::On,
        limits: Limits {
            request_header_timeout: l.request_header_timeout,
            tls_handshake_timeout: l.tls_handshake_timeout,
            client_body_idle_timeout: l.client_body_timeout,
            keepalive_idle_timeout: l.keepalive_timeout,
            max_request_header_bytes: l.max_request_header_size,
            max_concurrent_streams: l.max_concurrent_streams,
            max_connections: l.max_connections as usize,
            upstream_connect_timeout: l.upstream_connect_timeout,
            upstream_response_timeout: l.upstream_response_timeout,
        },
    }
}

pub fn translate_config(args: &SelectionArgs) -> TranslateConfig {
    TranslateConfig {
        class: ClassConfig {
            ingress_class: args.ingress_class.clone(),
            controller_name: args.controller_name.clone(),
            watch_ingress_without_class: args.watch_ingress_without_class,
        },
        default_certificate: args.default_certificate.clone(),
    }
}

/// Where objects come from, decided by the flags.
enum Source {
    Folder(ManifestFolder),
    Kube(kube::Client),
}

pub async fn serve(args: ServeArgs) -> Result<(), ServeError> {
    // The source first: a folder or kubeconfig that cannot be read is a usage error.
    let source = match args.manifests.as_deref() {
        Some(dir) => {
            Source::Folder(ManifestFolder::open(dir).map_err(|e| ServeError::Usage(e.to_string()))?)
        }
        None => Source::Kube(
            kube_source::client(args.kube.kubeconfig.as_deref())
                .await
                .map_err(|e| match e {
                    KubeSourceError::Kubeconfig { .. } => ServeError::Usage(e.to_string()),
                    other => ServeError::Kube(other),
                })?,
        ),
    };

    let mut registry = Registry::with_prefix("portcullis");
    let dataplane_metrics = Arc::new(DataplaneMetrics::new());
    dataplane_metrics.register(&mut registry);
    let controller_metrics = Arc::new(ControllerMetrics::new());
    controller_metrics.register(&mut registry);
    let slot: ServedSlot = Arc::new(Mutex::new(Arc::new(Served::default())));

    let dataplane = Arc::new(Dataplane::new(dataplane_config(&args), dataplane_metrics)?);
    let listeners = dataplane.bind().await?;
    let admin =
        TcpListener::bind(args.admin_addr)
            .await
            .map_err(|source| ServeError::AdminBind {
                addr: args.admin_addr,
                source,
            })?;
    if args.selection.default_certificate.is_none() {
        tracing::warn!(
            "no --default-certificate: handshakes without SNI or for unknown names get a generated \
             self-signed placeholder"
        );
    }
    let health = Arc::new(Health::default());
    let admin_state = AdminState {
        health: Arc::clone(&health),
        registry: Arc::new(registry),
        served: args.enable_debug_endpoints.then(|| Arc::clone(&slot)),
    };
    let admin_task = tokio::spawn(serve_admin(admin, Arc::new(admin_state)));
    let mut pipeline = Pipeline::new(
        Arc::clone(&dataplane),
        translate_config(&args.selection),
        controller_metrics,
        slot,
    );
    let https = display_addr(listeners.https_addr());
    let http = display_addr(listeners.http_addr());

    // Folder mode applies its first snapshot before serving; API mode serves at once
    // (not ready) and turns ready when the first full snapshot from the API is applied.
    let mut election = None;
    let follow = match source {
        Source::Folder(mut folder) => {
            let contents = folder
                .load()
                .map_err(|e| ServeError::Usage(e.to_string()))?;
            pipeline.rebuild(&contents.objects, contents.diagnostics, None);
            health.set_ready(true);
            tracing::info!(%https, %http, admin = %args.admin_addr, manifests = %folder.root().display(), "listening");
            tokio::spawn(follow_folder(folder, pipeline))
        }
        Source::Kube(client) => {
            let config = election_config(&args);
            let leadership = Arc::new(Leadership::default());
            let campaign = tokio::spawn(run_election(
                client.clone(),
                config.clone(),
                Arc::clone(&leadership),
            ));
            election = Some((client.clone(), config.clone(), campaign));
            tracing::info!(%https, %http, admin = %args.admin_addr, namespaces = ?args.kube.watch_namespaces, "listening; waiting for the first snapshot from the API");
            let follow = FollowKube {
                namespaces: args.kube.watch_namespaces.clone(),
                publish: publish_source(&args),
                identity: config.identity.clone(),
                leadership,
                health: Arc::clone(&health),
            };
            tokio::spawn(follow.run(client, pipeline))
        }
    };
    let serving = dataplane.serve(listeners);

    // Shutdown: readiness fails first; after SIGTERM, keep accepting for the delay so
    // load balancers notice; then stop accepting and let requests in flight finish.
    let signal = wait_for_signal().await;
    tracing::info!(signal = ?signal, "shutdown signal received");
    health.set_ready(false);
    let delay = args.limits.shutdown_delay;
    if signal == Signal::Terminate && !delay.is_zero() {
        tracing::info!(delay = ?delay, "shutdown requested: failing readiness, still accepting");
        tokio::time::sleep(delay).await;
    }
    follow.abort();
    if let Some((client, config, campaign)) = election {
        campaign.abort();
        leader::release(client, &config).await;
    }
    let drain = args.limits.drain_timeout;
    tracing::info!(timeout = ?drain, "no longer accepting; waiting for requests in flight");
    if !serving.shutdown(drain).await {
        tracing::warn!(timeout = ?drain, "drain timeout reached with connections still open");
    }
    admin_task.abort();
    tracing::info!("stopped");
    Ok(())
}

fn election_config(args: &ServeArgs) -> ElectionConfig {
    let namespace = args
        .kube
        .election_namespace
        .clone()
        .or_else(|| {
            std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "default".into());
    let identity = std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
    ElectionConfig {
        namespace,
        name: args.kube.election_id.clone(),
        identity,
        lease_duration: Duration::from_secs(15),
        retry_period: Duration::from_secs(2),
    }
}

fn publish_source(args: &ServeArgs) -> PublishSource {
    if let Some((namespace, name)) = &args.kube.publish_service {
        PublishSource::Service {
            namespace: namespace.clone(),
            name: name.clone(),
        }
    } else if !args.kube.publish_status_address.is_empty() {
        PublishSource::Addresses(args.kube.publish_status_address.clone())
    } else {
        PublishSource::None
    }
}

/// API mode's loop: rebuild on settled bursts of watch events, and every 30 s anyway;
/// as leader, write Ingress status and publish Events after each rebuild, and at once
/// when leadership is gained.
struct FollowKube {
    namespaces: Vec<String>,
    publish: PublishSource,
    identity: String,
    leadership: Arc<Leadership>,
    health: Arc<Health>,
}

impl FollowKube {
    async fn run(self, client: kube::Client, mut pipeline: Pipeline) {
        let (changes, mut events) = tokio::sync::mpsc::channel(1);
        let stores = KubeStores::start(&client, &self.namespaces, changes);
        stores.wait_until_ready().await;
        let mut objects = stores.objects();
        let mut last = pipeline.rebuild(&objects, Vec::new(), None);
        self.health.set_ready(true);
        tracing::info!("first snapshot from the API applied; ready");

        let mut status = StatusWriter::new(client.clone(), self.publish.clone());
        let mut event_writer = EventWriter::new(client, self.identity.clone());
        let mut was_leader = false;
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        let mut ticks: u32 = 0;
        let mut rebuilt = true;
        loop {
            let leader = self.leadership.is_leader();
            if leader && (rebuilt || !was_leader) {
                if !was_leader {
                    event_writer.reset();
                }
                status
                    .sync(&objects.ingresses, &last.translation.ingresses)
                    .await;
                event_writer
                    .publish(&last.translation.diagnostics, &objects)
                    .await;
            }
            was_leader = leader;

            let mut changed_at = None;
            rebuilt = tokio::select! {
                Some(()) = events.recv() => {
                    changed_at = Some(std::time::Instant::now());
                    settle(&mut events, Duration::from_millis(50), Duration::from_millis(500)).await;
                    true
                }
                _ = tick.tick() => {
                    ticks = ticks.wrapping_add(1);
                    ticks.is_multiple_of(15)
                }
            };
            if rebuilt {
                objects = stores.objects();
                // Translation of a large cluster is CPU work: keep it off the workers
                // that serve traffic.
                let input = objects.clone();
                let step = tokio::task::spawn_blocking(move || {
                    let rebuild = pipeline.rebuild(&input, Vec::new(), changed_at);
                    (pipeline, rebuild)
                });
                match step.await {
                    Ok((returned, rebuild)) => {
                        pipeline = returned;
                        last = rebuild;
                    }
                    Err(error) => {
                        tracing::error!(%error, "rebuild failed; no longer following the API");
                        return;
                    }
                }
            }
        }
    }
}

fn display_addr(addr: Option<std::net::SocketAddr>) -> String {
    addr.map(|a| a.to_string()).unwrap_or_else(|| "?".into())
}

/// Follows the folder: rebuild on every settled burst of file events, and every 30 s
/// anyway (certificates expire with no file changing). Without file events (the platform
/// cannot watch), the folder is read every 2 s.
async fn follow_folder(mut folder: ManifestFolder, mut pipeline: Pipeline) {
    // The watcher stops when dropped, so it lives as long as this loop.
    let (_watcher, mut events, period) = match watch_folder(folder.root()) {
        Ok((watcher, events)) => (Some(watcher), events, Duration::from_secs(30)),
        Err(error) => {
            tracing::warn!(%error, "cannot watch the manifest folder; reading it every 2 s instead");
            (
                None,
                tokio::sync::mpsc::channel(1).1,
                Duration::from_secs(2),
            )
        }
    };
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        let mut changed_at = None;
        tokio::select! {
            Some(()) = events.recv() => {
                changed_at = Some(std::time::Instant::now());
                settle(&mut events, Duration::from_millis(20), Duration::from_millis(250)).await;
            }
            _ = tick.tick() => {}
        }
        // Reading files and translating thousands of objects would stall a runtime
        // worker that also serves traffic: both run on the blocking pool.
        let step = tokio::task::spawn_blocking(move || {
            match folder.load() {
                Ok(contents) => {
                    pipeline.rebuild(&contents.objects, contents.diagnostics, changed_at);
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot read the manifest folder; serving the last good snapshot");
                }
            }
            (folder, pipeline)
        });
        match step.await {
            Ok(state) => (folder, pipeline) = state,
            Err(error) => {
                tracing::error!(%error, "manifest folder rebuild failed; no longer following the folder");
                return;
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Signal {
    Terminate,
    Interrupt,
}

async fn wait_for_signal() -> Signal {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM; only SIGINT will stop the process");
            let _ = tokio::signal::ctrl_c().await;
            return Signal::Interrupt;
        }
    };
    tokio::select! {
        _ = term.recv() => Signal::Terminate,
        _ = tokio::signal::ctrl_c() => Signal::Interrupt,
    }
}
