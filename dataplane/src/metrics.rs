//! Data-plane metrics, registered into the process's Prometheus registry.
//!
//! Every label value comes from configuration (Ingress and Service names) or from a
//! small fixed set (method and status classes, TLS versions, handshake outcomes); none
//! is taken from what a client sends, so the number of series stays bounded.

use std::sync::Arc;

use http::Method;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// HTTP methods, folded into a fixed set.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(clippy::upper_case_acronyms)]
pub enum MethodClass {
    GET,
    HEAD,
    POST,
    PUT,
    PATCH,
    DELETE,
    OPTIONS,
    OTHER,
}

impl MethodClass {
    pub fn of(method: &Method) -> Self {
        match *method {
            Method::GET => MethodClass::GET,
            Method::HEAD => MethodClass::HEAD,
            Method::POST => MethodClass::POST,
            Method::PUT => MethodClass::PUT,
            Method::PATCH => MethodClass::PATCH,
            Method::DELETE => MethodClass::DELETE,
            Method::OPTIONS => MethodClass::OPTIONS,
            _ => MethodClass::OTHER,
        }
    }
}

/// `1xx` to `5xx`.
pub fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `namespace/name` of the Ingress whose rule matched; empty when none did.
    pub ingress: Arc<str>,
    /// `namespace/service:port`; empty when the proxy answered itself.
    pub service: Arc<str>,
    pub method: MethodClass,
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    pub version: &'static str,
    pub cipher_suite: &'static str,
    pub alpn: &'static str,
    /// `ok`, or why the handshake failed (a fixed set, see [`handshake_failure`]).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: &'static str,
}

/// The data plane's metrics.
#[derive(Debug)]
pub struct DataplaneMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Histogram,
    pub upstream_duration: Histogram,
    pub upstream_connect_errors: Family<ServiceLabels, Counter>,
    pub upstream_retries: Family<ServiceLabels, Counter>,
    pub handshakes: Family<HandshakeLabels, Counter>,
    pub connections: Family<ListenerLabels, Gauge>,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Default for DataplaneMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl DataplaneMetrics {
    pub fn new() -> Self {
        DataplaneMetrics {
            requests: Family::default(),
            request_duration: latency_histogram(),
            upstream_duration: latency_histogram(),
            upstream_connect_errors: Family::default(),
            upstream_retries: Family::default(),
            handshakes: Family::default(),
            connections: Family::default(),
        }
    }

    /// Registers every metric under the `portcullis_` prefix the caller gives.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "requests",
            "HTTP requests answered, by Ingress, Service, method class and status class",
            self.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request's head to the end of its response",
            self.request_duration.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time from sending a request upstream to the upstream's response head",
            self.upstream_duration.clone(),
        );
        registry.register(
            "upstream_connect_errors",
            "Failed connections to upstream endpoints",
            self.upstream_connect_errors.clone(),
        );
        registry.register(
            "upstream_retries",
            "Requests retried on another endpoint after a failed connect",
            self.upstream_retries.clone(),
        );
        registry.register(
            "tls_handshakes",
            "TLS handshakes by protocol version, cipher suite, ALPN and outcome",
            self.handshakes.clone(),
        );
        registry.register(
            "client_connections",
            "Open client connections",
            self.connections.clone(),
        );
    }

    pub fn handshake_ok(
        &self,
        version: &'static str,
        cipher_suite: &'static str,
        alpn: &'static str,
    ) {
        self.handshakes
            .get_or_create(&HandshakeLabels {
                version,
                cipher_suite,
                alpn,
                outcome: "ok",
            })
            .inc();
    }

    pub fn handshake_failed(&self, outcome: &'static str) {
        let labels = HandshakeLabels {
            version: "",
            cipher_suite: "",
            alpn: "",
            outcome,
        };
        self.handshakes.get_or_create(&labels).inc();
    }
}

/// Folds a failed handshake's error into a fixed set of reasons.
pub fn handshake_failure(error: &std::io::Error) -> &'static str {
    if let Some(tls) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        return match tls {
            rustls::Error::InvalidMessage(_) => "invalid_message",
            rustls::Error::PeerIncompatible(_) => "incompatible",
            rustls::Error::PeerMisbehaved(_) => "misbehaved",
            rustls::Error::AlertReceived(_) => "alert_received",
            rustls::Error::NoCertificatesPresented | rustls::Error::InvalidCertificate(_) => {
                "bad_client_certificate"
            }
            rustls::Error::General(message) if message.contains("certificate") => "no_certificate",
            _ => "tls_error",
        };
    }
    match error.kind() {
        std::io::ErrorKind::UnexpectedEof => "eof",
        std::io::ErrorKind::ConnectionReset => "reset",
        std::io::ErrorKind::InvalidData => "invalid_message",
        _ => "io_error",
    }
}
