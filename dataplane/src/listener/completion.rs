//! The end of a request: when its response body ends (or is dropped), count it in the
//! metrics, write its access-log line, and mark the connection's request done.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::RequestGuard;
use crate::Shared;
use crate::body::{BoxError, ResponseBody};
use crate::metrics::{MethodClass, RequestLabels, status_class};
use crate::proxy::{ConnectionInfo, RequestRecord};

/// What is needed to finish a request's bookkeeping.
pub struct Completion {
    pub shared: Arc<Shared>,
    pub conn: Arc<ConnectionInfo>,
    pub record: RequestRecord,
    pub status: u16,
    pub started: Instant,
    pub guard: RequestGuard,
}

/// A response body that finishes the request's bookkeeping when it ends.
pub struct CompletionBody {
    inner: ResponseBody,
    bytes_out: u64,
    completion: Option<Completion>,
}

impl CompletionBody {
    pub fn new(inner: ResponseBody, completion: Completion) -> Self {
        CompletionBody {
            inner,
            bytes_out: 0,
            completion: Some(completion),
        }
    }

    fn finish(&mut self) {
        if let Some(completion) = self.completion.take() {
            completion.finish(self.bytes_out);
        }
    }
}

impl Body for CompletionBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes_out += data.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for CompletionBody {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Completion {
    fn finish(self, bytes_out: u64) {
        let Completion {
            shared,
            conn,
            record,
            status,
            started,
            guard,
        } = self;
        let elapsed = started.elapsed();
        let metrics = &shared.metrics;
        metrics.request_duration.observe(elapsed.as_secs_f64());
        let empty: Arc<str> = Arc::from("");
        let labels = RequestLabels {
            ingress: record.ingress.clone().unwrap_or_else(|| Arc::clone(&empty)),
            service: record.service.clone().unwrap_or(empty),
            method: MethodClass::of(&record.method),
            status: status_class(status),
        };
        metrics.requests.get_or_create(&labels).inc();
        drop(guard);

        if !shared.config.access_log {
            return;
        }
        let tls = conn.tls.as_ref();
        tracing::info!(
            target: "access",
            client = %conn.peer,
            sni = tls.and_then(|t| t.sni.as_deref()).unwrap_or(""),
            tls_version = tls.map(|t| t.version).unwrap_or(""),
            host = record.host.as_deref().unwrap_or(""),
            method = %record.method,
            path = record.path.as_deref().unwrap_or(""),
            status,
            bytes_in = record.bytes_in.as_ref().map(|b| b.load(Ordering::Relaxed)).unwrap_or(0),
            bytes_out,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            upstream = record.upstream.map(|u| u.to_string()).unwrap_or_default(),
            upstream_ms = record.upstream_duration.map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0),
            ingress = record.ingress.as_deref().unwrap_or(""),
            service = record.service.as_deref().unwrap_or(""),
            request_id = record.request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or(""),
            "request"
        );
    }
}
