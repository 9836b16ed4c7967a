//! The admin listener: `/healthz` (the process is alive), `/readyz` (listeners bound and
//! the first snapshot applied; false again during the shutdown drain), `/metrics`
//! (Prometheus text), and `/debug/snapshot` when `--enable-debug-endpoints` is set.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::debug::SnapshotView;
use crate::pipeline::ServedSlot;

/// What the probes report.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// What the admin endpoints read.
pub struct AdminState {
    pub health: Arc<Health>,
    pub registry: Arc<Registry>,
    /// Set when the debug endpoints are enabled.
    pub served: Option<ServedSlot>,
}

/// Serves the admin endpoints until the task is dropped.
pub async fn serve_admin(listener: TcpListener, state: Arc<AdminState>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(answer(&req, &state)) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(req: &Request<Incoming>, state: &AdminState) -> Response<Full<Bytes>> {
    let health = &state.health;
    let readable = matches!(*req.method(), Method::GET | Method::HEAD);
    match req.uri().path() {
        "/metrics" if readable => {
            let mut text = String::new();
            if encode(&mut text, &state.registry).is_err() {
                return plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot encode metrics\n".into(),
                );
            }
            let mut response = plain(StatusCode::OK, text);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            return response;
        }
        "/debug/snapshot" if readable => {
            let Some(slot) = &state.served else {
                return plain(
                    StatusCode::NOT_FOUND,
                    "not found: start with --enable-debug-endpoints to serve /debug/snapshot\n"
                        .into(),
                );
            };
            let served = Arc::clone(&slot.lock().unwrap_or_else(|e| e.into_inner()));
            let view = SnapshotView::new(&served);
            let body = serde_json::to_string_pretty(&view).unwrap_or_else(|_| "{}".into());
            let mut response = plain(StatusCode::OK, body + "\n");
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return response;
        }
        _ => {}
    }
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => (StatusCode::OK, "ok\n"),
        (&Method::GET | &Method::HEAD, "/readyz") if health.is_ready() => {
            (StatusCode::OK, "ready\n")
        }
        (&Method::GET | &Method::HEAD, "/readyz") => {
            (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
        }
        (_, "/healthz" | "/readyz") => (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    plain(status, body.to_owned())
}

fn plain(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
