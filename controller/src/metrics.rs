//! Controller metrics: snapshots, translation, propagation, diagnostics and certificate
//! expiry. Label values are Secret names and diagnostic reasons: configuration, never
//! client input.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use portcullis_dataplane::ApplyReport;
use portcullis_dataplane::snapshot::CertificateId;
use portcullis_dataplane::tls::CertificateInfo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::translate::{Diagnostic, Reason};

/// Certificates that expire within this many days are counted as expiring soon.
pub const EXPIRY_WARNING_DAYS: i64 = 14;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SecretLabels {
    pub secret: String,
}

#[derive(Debug)]
pub struct ControllerMetrics {
    pub snapshot_applies: Counter,
    pub translation_duration: Histogram,
    pub propagation: Histogram,
    pub hosts: Gauge,
    pub routes: Gauge,
    pub certificates: Gauge,
    pub backends: Gauge,
    pub endpoints: Gauge,
    pub diagnostics: Family<ReasonLabels, Gauge>,
    pub certificate_expiry: Family<SecretLabels, Gauge>,
    pub certificates_expiring_soon: Gauge,
    /// Secrets with an expiry series, so removed ones can be dropped.
    expiry_series: std::sync::Mutex<BTreeSet<String>>,
}

impl ControllerMetrics {
    pub fn new() -> Self {
        ControllerMetrics {
            snapshot_applies: Counter::default(),
            // 0.1 ms to about 6.5 s.
            translation_duration: Histogram::new(exponential_buckets(0.0001, 2.0, 17)),
            // 1 ms to about 65 s.
            propagation: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            hosts: Gauge::default(),
            routes: Gauge::default(),
            certificates: Gauge::default(),
            backends: Gauge::default(),
            endpoints: Gauge::default(),
            diagnostics: Family::default(),
            certificate_expiry: Family::default(),
            certificates_expiring_soon: Gauge::default(),
            expiry_series: std::sync::Mutex::new(BTreeSet::new()),
        }
    }

    pub fn register(self: &Arc<Self>, registry: &mut Registry) {
        registry.register(
            "snapshot_applies",
            "Snapshots applied to the data plane",
            self.snapshot_applies.clone(),
        );
        registry.register(
            "translation_duration_seconds",
            "Time to translate objects into a snapshot",
            self.translation_duration.clone(),
        );
        registry.register(
            "propagation_seconds",
            "Time from the controller seeing an object change to the snapshot with it being served",
            self.propagation.clone(),
        );
        registry.register(
            "snapshot_hosts",
            "Host patterns in the served snapshot",
            self.hosts.clone(),
        );
        registry.register(
            "snapshot_routes",
            "Routes in the served snapshot",
            self.routes.clone(),
        );
        registry.register(
            "snapshot_certificates",
            "Certificates in the served snapshot",
            self.certificates.clone(),
        );
        registry.register(
            "snapshot_backends",
            "Backends in the served snapshot",
            self.backends.clone(),
        );
        registry.register(
            "snapshot_endpoints",
            "Ready endpoints in the served snapshot",
            self.endpoints.clone(),
        );
        registry.register(
            "diagnostics",
            "Current configuration problems by reason",
            self.diagnostics.clone(),
        );
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "Not-after time of each served certificate, by Secret",
            self.certificate_expiry.clone(),
        );
        registry.register(
            "certificates_expiring_soon",
            "Served certificates that expire within 14 days",
            self.certificates_expiring_soon.clone(),
        );
    }

    pub fn record_apply(&self, report: &ApplyReport) {
        self.snapshot_applies.inc();
        self.hosts.set(report.hosts as i64);
        self.routes.set(report.routes as i64);
        self.certificates.set(report.certificates as i64);
        self.backends.set(report.backends as i64);
        self.endpoints.set(report.endpoints as i64);
    }

    pub fn record_diagnostics(&self, diagnostics: &[Diagnostic]) {
        let mut counts: BTreeMap<Reason, i64> = BTreeMap::new();
        for d in diagnostics {
            *counts.entry(d.reason).or_default() += 1;
        }
        // Every reason that was ever set keeps a series; reset them before counting.
        self.diagnostics.clear();
        for (reason, count) in counts {
            self.diagnostics
                .get_or_create(&ReasonLabels {
                    reason: reason.as_str(),
                })
                .set(count);
        }
    }

    /// Sets the expiry series of the served certificates and drops the others.
    pub fn record_certificates(
        &self,
        served: &BTreeMap<CertificateId, CertificateInfo>,
        now_unix: i64,
    ) {
        let mut series = self.expiry_series.lock().unwrap_or_else(|e| e.into_inner());
        let mut soon = 0;
        let mut current = BTreeSet::new();
        for (id, info) in served {
            self.certificate_expiry
                .get_or_create(&SecretLabels {
                    secret: id.0.clone(),
                })
                .set(info.not_after_unix);
            if info.not_after_unix - now_unix < EXPIRY_WARNING_DAYS * 86_400 {
                soon += 1;
            }
            current.insert(id.0.clone());
        }
        for gone in series.difference(&current) {
            self.certificate_expiry.remove(&SecretLabels {
                secret: gone.clone(),
            });
        }
        *series = current;
        self.certificates_expiring_soon.set(soon);
    }
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
