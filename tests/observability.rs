//! What operators see, from outside the real binary:
//!
//! - [`metrics`]: `/metrics` is valid OpenMetrics text, its counters move by exactly what
//!   was sent, and no label value or other text in it comes from client input;
//! - [`readiness`]: `/readyz` before the first snapshot, while serving, and through the
//!   shutdown delay and drain;
//! - [`debug_snapshot`]: `/debug/snapshot` is off by default, and shows hosts, routes,
//!   backends and certificates but never key material;
//! - [`access_log`]: one JSON line per request with what happened, none when turned off;
//! - [`explain`]: `portcullis explain` names every kind of certificate problem, with the
//!   exit code a pipeline gates on.
//!
//! The harness is the shared one in `support/`, with what these tests need beyond it in
//! `observability_support`.

mod observability_support;
mod support;

#[path = "observability/access_log.rs"]
mod access_log;
#[path = "observability/debug_snapshot.rs"]
mod debug_snapshot;
#[path = "observability/explain.rs"]
mod explain;
#[path = "observability/metrics.rs"]
mod metrics;
#[path = "observability/readiness.rs"]
mod readiness;
