//! The Portcullis data plane: terminates TLS, routes by host and path, and proxies to
//! upstream endpoints, all from a [`Snapshot`]. It knows nothing of Kubernetes.
//!
//! A tour of the modules, in the order a request meets them:
//! - [`listener`]: accept loops, connection limits, handshake and idle timeouts, shutdown.
//! - [`tls`]: certificates compiled from the snapshot and the SNI resolver.
//! - [`proxy`]: the hyper service; host and path checks, redirects, forwarding, errors.
//! - [`routing`]: host and path matching.
//! - [`upstream`]: endpoint choice and the keep-alive connection pool.
//! - [`snapshot`] is the input; [`runtime`] is its compiled form, swapped in atomically.

pub mod body;
pub mod config;
pub mod listener;
pub mod metrics;
pub mod proxy;
pub mod routing;
pub mod runtime;
pub mod snapshot;
pub mod tls;
pub mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;

pub use config::{Config, Limits, MIN_REQUEST_HEADER_BYTES};
pub use runtime::ApplyReport;
pub use snapshot::Snapshot;

use metrics::DataplaneMetrics;
use runtime::Runtime;
use snapshot::CertificateId;
use tls::LoadedCertificate;
use tls::ServedCertificate;
use upstream::{Pool, PoolConfig};

/// Why the data plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot generate the placeholder certificate: {0}")]
    Placeholder(#[from] rcgen::Error),
    #[error("cannot build the TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// State shared by every connection.
pub struct Shared {
    pub config: Config,
    pub runtime: Arc<ArcSwap<Runtime>>,
    pub pool: Arc<Pool>,
    pub connections: Arc<Semaphore>,
    pub metrics: Arc<DataplaneMetrics>,
}

/// The data plane: apply snapshots, bind, serve, drain.
pub struct Dataplane {
    shared: Arc<Shared>,
    placeholder: Arc<ServedCertificate>,
    tls: Arc<rustls::ServerConfig>,
}

/// The two bound sockets, before serving starts.
pub struct Listeners {
    https: TcpListener,
    http: TcpListener,
}

impl Listeners {
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https.local_addr().ok()
    }

    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.local_addr().ok()
    }
}

/// Serving in progress; stop it with [`Serving::shutdown`].
pub struct Serving {
    stop: watch::Sender<bool>,
    drained: mpsc::Receiver<()>,
}

impl Dataplane {
    pub fn new(config: Config, metrics: Arc<DataplaneMetrics>) -> Result<Self, DataplaneError> {
        let placeholder = Arc::new(tls::generate_placeholder()?);
        let runtime = Arc::new(ArcSwap::from_pointee(Runtime::empty(Arc::clone(
            &placeholder,
        ))));
        let resolver = Arc::new(tls::SniResolver::new(
            Arc::clone(&runtime),
            config.strict_sni,
        ));
        let tls = Arc::new(tls::server_config(resolver)?);
        let pool = Pool::new(PoolConfig {
            connect_timeout: config.limits.upstream_connect_timeout,
            ..PoolConfig::default()
        });
        let connections = Arc::new(Semaphore::new(config.limits.max_connections));
        let shared = Arc::new(Shared {
            config,
            runtime,
            pool,
            connections,
            metrics,
        });
        Ok(Dataplane {
            shared,
            placeholder,
            tls,
        })
    }

    /// Compiles `snapshot` and swaps it in: the next handshake and the next request see
    /// it; requests in flight finish on what they had.
    pub fn apply(&self, snapshot: Arc<Snapshot>) -> ApplyReport {
        self.apply_preloaded(snapshot, &HashMap::new())
    }

    /// Like [`Dataplane::apply`], with certificates the caller already parsed from this
    /// snapshot's PEM (translation checks every pair, so it has them at hand).
    pub fn apply_preloaded(
        &self,
        snapshot: Arc<Snapshot>,
        preloaded: &HashMap<CertificateId, LoadedCertificate>,
    ) -> ApplyReport {
        let previous = self.shared.runtime.load();
        let (runtime, report) = Runtime::compile(snapshot, &previous, &self.placeholder, preloaded);
        let live = runtime.endpoints();
        self.shared.runtime.store(Arc::new(runtime));
        self.shared.pool.retain_endpoints(&live);
        report
    }

    /// The snapshot being served.
    pub fn current(&self) -> Arc<Snapshot> {
        Arc::clone(&self.shared.runtime.load().snapshot)
    }

    /// Binds both listeners, so a bad address fails before anything is served.
    pub async fn bind(&self) -> Result<Listeners, DataplaneError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| DataplaneError::Bind { addr, source })
        };
        Ok(Listeners {
            https: bind(self.shared.config.https_addr).await?,
            http: bind(self.shared.config.http_addr).await?,
        })
    }

    /// Starts the accept loops on the tokio runtime.
    pub fn serve(&self, listeners: Listeners) -> Serving {
        let (stop, stop_rx) = watch::channel(false);
        let (tracker, drained) = mpsc::channel(1);
        let acceptor = TlsAcceptor::from(Arc::clone(&self.tls));
        tokio::spawn(listener::accept_loop(
            Arc::clone(&self.shared),
            listeners.https,
            Some(acceptor),
            stop_rx.clone(),
            tracker.clone(),
        ));
        tokio::spawn(listener::accept_loop(
            Arc::clone(&self.shared),
            listeners.http,
            None,
            stop_rx,
            tracker,
        ));
        Serving { stop, drained }
    }
}

impl Serving {
    /// Stops accepting, asks every connection to finish, and waits up to `timeout` for
    /// them. Returns false if some were still open when time ran out.
    pub async fn shutdown(mut self, timeout: Duration) -> bool {
        let _ = self.stop.send(true);
        tokio::time::timeout(timeout, async {
            while self.drained.recv().await.is_some() {}
        })
        .await
        .is_ok()
    }
}
