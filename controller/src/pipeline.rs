//! The rebuild pipeline shared by both sources: translate, log what changed, apply.
//!
//! A source calls [`Pipeline::rebuild`] with the objects it holds; the pipeline keeps the
//! snapshot being served (for "last good" certificates and to skip no-op applies) and the
//! diagnostics already reported (so the same problem is logged once, not per rebuild).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use portcullis_dataplane::Dataplane;
use portcullis_dataplane::snapshot::{CertificateId, Snapshot};
use portcullis_dataplane::tls::CertificateInfo;

use crate::metrics::ControllerMetrics;
use crate::translate::{Diagnostic, Objects, SecretCache, TranslateConfig, Translation, translate};

/// The snapshot being served and what is known about its certificates, for the debug
/// endpoint and `explain`.
#[derive(Debug, Default)]
pub struct Served {
    pub snapshot: Arc<Snapshot>,
    pub certificates: BTreeMap<CertificateId, CertificateInfo>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Where the pipeline leaves the latest [`Served`] for readers on other tasks.
pub type ServedSlot = Arc<Mutex<Arc<Served>>>;

pub struct Pipeline {
    dataplane: Arc<Dataplane>,
    config: TranslateConfig,
    metrics: Arc<ControllerMetrics>,
    slot: ServedSlot,
    cache: SecretCache,
    served: Arc<Snapshot>,
    applied_once: bool,
    reported: BTreeSet<Diagnostic>,
    fingerprints: BTreeMap<CertificateId, String>,
}

/// What one rebuild did.
pub struct Rebuild {
    /// The translation, except its snapshot: that went to the data plane when applied
    /// (the one served is in [`Served`]).
    pub translation: Translation,
    /// Diagnostics not seen in the previous rebuild.
    pub new_diagnostics: Vec<Diagnostic>,
    pub applied: bool,
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Pipeline {
    pub fn new(
        dataplane: Arc<Dataplane>,
        config: TranslateConfig,
        metrics: Arc<ControllerMetrics>,
        slot: ServedSlot,
    ) -> Self {
        Pipeline {
            dataplane,
            config,
            metrics,
            slot,
            cache: SecretCache::default(),
            served: Arc::new(Snapshot::default()),
            applied_once: false,
            reported: BTreeSet::new(),
            fingerprints: BTreeMap::new(),
        }
    }

    /// Translates `objects` (plus diagnostics the source found itself) and applies the
    /// snapshot if it changed. `changed_at` is when the source first saw the change that
    /// caused this rebuild, for the propagation metric.
    pub fn rebuild(
        &mut self,
        objects: &Objects,
        source_diagnostics: Vec<Diagnostic>,
        changed_at: Option<Instant>,
    ) -> Rebuild {
        let _span = tracing::info_span!("rebuild").entered();
        let started = Instant::now();
        let now = now_unix();
        let mut translation = translate(objects, &self.config, &self.served, now, &mut self.cache);
        let translate_time = started.elapsed();
        self.metrics
            .translation_duration
            .observe(translate_time.as_secs_f64());
        translation.diagnostics.extend(source_diagnostics);
        translation.diagnostics.sort();

        // Each problem is logged when it appears, and once more when it is gone.
        let current: BTreeSet<Diagnostic> = translation.diagnostics.iter().cloned().collect();
        let new_diagnostics: Vec<Diagnostic> =
            current.difference(&self.reported).cloned().collect();
        for d in &new_diagnostics {
            tracing::warn!(
                object = %d.object,
                field = %d.field,
                reason = %d.reason,
                detail = %d.message,
                "configuration problem"
            );
        }
        for d in self.reported.difference(&current) {
            tracing::info!(object = %d.object, reason = %d.reason, "configuration problem resolved");
        }
        self.reported = current;
        self.metrics.record_diagnostics(&translation.diagnostics);

        let changed = !self.applied_once || translation.snapshot != *self.served;
        if changed {
            // The snapshot moves to the data plane; the caller has no use for it.
            let snapshot = Arc::new(std::mem::take(&mut translation.snapshot));
            let report = self
                .dataplane
                .apply_preloaded(Arc::clone(&snapshot), &translation.loaded);
            for (id, error) in &report.failed_certificates {
                tracing::error!(certificate = %id, %error, "data plane could not load a certificate that passed translation");
            }
            self.log_certificate_changes(&translation.certificates, &snapshot);
            self.metrics.record_apply(&report);
            if let Some(changed_at) = changed_at {
                self.metrics
                    .propagation
                    .observe(changed_at.elapsed().as_secs_f64());
            }
            tracing::info!(
                hosts = report.hosts,
                routes = report.routes,
                certificates = report.certificates,
                backends = report.backends,
                endpoints = report.endpoints,
                diagnostics = translation.diagnostics.len(),
                translate_ms = translate_time.as_secs_f64() * 1000.0,
                "snapshot applied"
            );
            self.served = snapshot;
            self.applied_once = true;
        } else {
            tracing::debug!(
                translate_ms = translate_time.as_secs_f64() * 1000.0,
                "snapshot unchanged"
            );
        }
        let served_certificates: BTreeMap<CertificateId, CertificateInfo> = self
            .served
            .certificates
            .iter()
            .filter_map(|c| Some((c.id.clone(), translation.certificates.get(&c.id)?.clone())))
            .collect();
        self.metrics.record_certificates(&served_certificates, now);
        let served = Served {
            snapshot: Arc::clone(&self.served),
            certificates: served_certificates,
            diagnostics: translation.diagnostics.clone(),
        };
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(served);
        Rebuild {
            translation,
            new_diagnostics,
            applied: changed,
        }
    }

    /// Logs certificates that appeared, changed or went away; never key material.
    fn log_certificate_changes(
        &mut self,
        infos: &BTreeMap<CertificateId, CertificateInfo>,
        snapshot: &Snapshot,
    ) {
        let mut now = BTreeMap::new();
        for cert in &snapshot.certificates {
            let Some(info) = infos.get(&cert.id) else {
                continue;
            };
            match self.fingerprints.get(&cert.id) {
                None => tracing::info!(
                    secret = %cert.id,
                    subject = %info.subject,
                    not_after = %info.not_after,
                    sha256 = %info.sha256_fingerprint,
                    "certificate loaded"
                ),
                Some(old) if *old != info.sha256_fingerprint => tracing::info!(
                    secret = %cert.id,
                    subject = %info.subject,
                    not_after = %info.not_after,
                    sha256 = %info.sha256_fingerprint,
                    previous_sha256 = %old,
                    "certificate rotated"
                ),
                Some(_) => {}
            }
            now.insert(cert.id.clone(), info.sha256_fingerprint.clone());
        }
        for id in self.fingerprints.keys().filter(|id| !now.contains_key(*id)) {
            tracing::info!(secret = %id, "certificate no longer served");
        }
        self.fingerprints = now;
    }
}
