//! Accept loops for the HTTPS and HTTP listeners, the connection limit, the TLS handshake
//! timeout, per-connection timeouts, and graceful shutdown.
//!
//! Each connection runs in its own task. When shutdown begins, the accept loops stop and
//! every connection is told to finish what it is doing: HTTP/1 closes after the response
//! in flight, HTTP/2 sends GOAWAY and lets its open streams end.

mod activity;
mod completion;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::Shared;

use crate::metrics::{ListenerLabels, handshake_failure};
use crate::proxy::{self, ConnectionInfo, TlsInfo};
pub use activity::{Activity, Expired, RequestGuard, Tracked};
use completion::{Completion, CompletionBody};

/// Keeps one clone per live connection; when all are dropped, the drain is over.
pub type ConnectionTracker = mpsc::Sender<()>;

/// Accepts connections until `stop` turns true.
pub async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
    tracker: ConnectionTracker,
) {
    let scheme = if tls.is_some() { "https" } else { "http" };
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Usually out of file descriptors: back off briefly rather than spin.
                tracing::warn!(%error, listener = scheme, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&shared.connections).try_acquire_owned() else {
            tracing::warn!(%peer, listener = scheme, "connection limit reached, closing new connection");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let task = serve_connection(
            Arc::clone(&shared),
            stream,
            peer,
            tls.clone(),
            stop.clone(),
            permit,
            tracker.clone(),
        );
        tokio::spawn(task.instrument(tracing::debug_span!("connection", %peer, listener = scheme)));
    }
    tracing::debug!(listener = scheme, "stopped accepting");
}

async fn serve_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
    _tracker: ConnectionTracker,
) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let listener = if tls.is_some() { "https" } else { "http" };
    let gauge = shared
        .metrics
        .connections
        .get_or_create(&ListenerLabels { listener })
        .clone();
    gauge.inc();
    let _open = scopeguard(move || {
        gauge.dec();
    });
    let limits = &shared.config.limits;
    let activity = Activity::new();

    let Some(acceptor) = tls else {
        let info = Arc::new(ConnectionInfo {
            peer,
            local,
            tls: None,
        });
        let io = Tracked::new(stream, Arc::clone(&activity));
        run_http(shared, io, info, activity, false, stop).await;
        return;
    };

    // A handshake still running when shutdown begins carries no request: it is closed
    // rather than left to hold the drain open until the handshake timeout.
    let handshake = tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream));
    let mut stop_handshake = stop.clone();
    let handshake = tokio::select! {
        result = handshake => result,
        Ok(_) = stop_handshake.wait_for(|stop| *stop) => {
            tracing::debug!("shutting down, closing a connection still in its TLS handshake");
            return;
        }
    };
    let tls_stream = match handshake {
        Ok(Ok(tls_stream)) => tls_stream,
        Ok(Err(error)) => {
            tracing::debug!(%error, "TLS handshake failed");
            shared.metrics.handshake_failed(handshake_failure(&error));
            return;
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            shared.metrics.handshake_failed("timeout");
            return;
        }
    };
    let (_, session) = tls_stream.get_ref();
    let sni = session.server_name().map(str::to_owned);
    let alpn = match session.alpn_protocol() {
        Some(b"h2") => "h2",
        Some(b"http/1.1") => "http/1.1",
        Some(_) => "other",
        None => "none",
    };
    let h2 = alpn == "h2";
    let version = match session.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "other",
    };
    let suite = session
        .negotiated_cipher_suite()
        .and_then(|s| s.suite().as_str())
        .unwrap_or("other");
    shared.metrics.handshake_ok(version, suite, alpn);
    let certificate = {
        let runtime = shared.runtime.load();
        Arc::clone(
            runtime
                .certificates
                .select_certificate(sni.as_deref())
                .certificate,
        )
    };
    tracing::debug!(sni = sni.as_deref(), h2, "TLS handshake done");
    let info = Arc::new(ConnectionInfo {
        peer,
        local,
        tls: Some(TlsInfo {
            sni,
            version,
            certificate,
        }),
    });
    let io = Tracked::new(tls_stream, Arc::clone(&activity));
    run_http(shared, io, info, activity, h2, stop).await;
}

/// Serves HTTP/1.1 (with upgrades) or HTTP/2 on one connection until it ends, a limit runs
/// out, or shutdown asks it to finish.
async fn run_http<S>(
    shared: Arc<Shared>,
    io: Tracked<S>,
    info: Arc<ConnectionInfo>,
    activity: Arc<Activity>,
    h2: bool,
    stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = shared.config.limits.clone();
    let service = {
        let shared = Arc::clone(&shared);
        let activity = Arc::clone(&activity);
        service_fn(move |req: Request<Incoming>| {
            let guard = activity.request_started();
            let started = std::time::Instant::now();
            let shared = Arc::clone(&shared);
            let info = Arc::clone(&info);
            async move {
                let (response, record) =
                    proxy::handle(Arc::clone(&shared), Arc::clone(&info), req).await;
                let status = response.status().as_u16();
                let completion = Completion {
                    shared,
                    conn: info,
                    record,
                    status,
                    started,
                    guard,
                };
                Ok::<_, Infallible>(
                    response.map(|body| CompletionBody::new(body, completion).boxed()),
                )
            }
        })
    };

    // HTTP/2 has no request-head phase to time; its idle limit still applies.
    let header_timeout = (!h2).then_some(limits.request_header_timeout);
    let timers = Timers {
        header_timeout,
        idle: limits.keepalive_idle_timeout,
    };
    let io = TokioIo::new(io);
    if h2 {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_concurrent_streams)
            .max_header_list_size(
                u32::try_from(limits.max_request_header_bytes).unwrap_or(u32::MAX),
            );
        let connection = pin!(builder.serve_connection(io, service));
        drive(
            connection,
            |c| c.graceful_shutdown(),
            &activity,
            timers,
            stop,
        )
        .await;
    } else {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_buf_size(limits.max_request_header_bytes)
            // max_buf_size alone stops only heads still incomplete at the limit: one big
            // read can bring in a whole head past it. This checks the parsed head (431).
            .max_header_size(limits.max_request_header_bytes)
            .keep_alive(true);
        let connection = pin!(builder.serve_connection(io, service).with_upgrades());
        drive(
            connection,
            |c| c.graceful_shutdown(),
            &activity,
            timers,
            stop,
        )
        .await;
    }
}

#[derive(Clone, Copy)]
struct Timers {
    header_timeout: Option<Duration>,
    idle: Duration,
}

/// Polls a hyper connection to its end while enforcing the header and idle limits, and
/// asks it to finish gracefully on idleness or shutdown.
async fn drive<C>(
    mut connection: Pin<&mut C>,
    graceful: impl Fn(Pin<&mut C>),
    activity: &Activity,
    timers: Timers,
    mut stop: watch::Receiver<bool>,
) where
    C: Future<Output = Result<(), hyper::Error>>,
{
    let mut shutting_down = false;
    let sleep =
        tokio::time::sleep_until(activity.next_deadline(timers.header_timeout, timers.idle));
    let mut sleep = pin!(sleep);
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            _ = sleep.as_mut(), if !shutting_down => {
                match activity.expired(timers.header_timeout, timers.idle) {
                    Some(Expired::RequestHeader) => {
                        tracing::debug!("request header timeout, closing connection");
                        return;
                    }
                    Some(Expired::Idle) => {
                        tracing::debug!("keep-alive idle timeout, closing connection");
                        graceful(connection.as_mut());
                        shutting_down = true;
                    }
                    None => {
                        sleep.as_mut().reset(activity.next_deadline(timers.header_timeout, timers.idle));
                    }
                }
            }
            _ = stop.wait_for(|stop| *stop), if !shutting_down => {
                graceful(connection.as_mut());
                shutting_down = true;
            }
        }
    }
}

/// Runs `f` when dropped.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
