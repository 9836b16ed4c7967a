//! The rebuild pipeline shared by both sources: translate, log what changed, apply.
//!
//! A source calls [`Pipeline::rebuild`] with the objects it holds; the pipeline keeps the
//! snapshot being served (for "last good" certificates and to skip no-op applies) and the
//! diagnostics already reported (so the same problem is logged once, not per rebuild).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use portcullis_dataplane::Dataplane;
use portcullis_dataplane::snapshot::{CertificateId, Snapshot};
use portcullis_dataplane::tls::CertificateInfo;

use crate::translate::{Diagnostic, Objects, TranslateConfig, Translation, translate};

pub struct Pipeline {
    dataplane: Arc<Dataplane>,
    config: TranslateConfig,
    served: Arc<Snapshot>,
    applied_once: bool,
    reported: BTreeSet<Diagnostic>,
    fingerprints: BTreeMap<CertificateId, String>,
}

/// What one rebuild did.
pub struct Rebuild {
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
    pub fn new(dataplane: Arc<Dataplane>, config: TranslateConfig) -> Self {
        Pipeline {
            dataplane,
            config,
            served: Arc::new(Snapshot::default()),
            applied_once: false,
            reported: BTreeSet::new(),
            fingerprints: BTreeMap::new(),
        }
    }

    /// Translates `objects` (plus diagnostics the source found itself) and applies the
    /// snapshot if it changed.
    pub fn rebuild(&mut self, objects: &Objects, source_diagnostics: Vec<Diagnostic>) -> Rebuild {
        let _span = tracing::info_span!("rebuild").entered();
        let started = Instant::now();
        let mut translation = translate(objects, &self.config, &self.served, now_unix());
        let translate_time = started.elapsed();
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

        let changed = !self.applied_once || translation.snapshot != *self.served;
        if changed {
            let snapshot = Arc::new(translation.snapshot.clone());
            let report = self.dataplane.apply(Arc::clone(&snapshot));
            for (id, error) in &report.failed_certificates {
                tracing::error!(certificate = %id, %error, "data plane could not load a certificate that passed translation");
            }
            self.log_certificate_changes(&translation.certificates, &snapshot);
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
