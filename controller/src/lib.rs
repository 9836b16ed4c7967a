//! The Portcullis controller: Kubernetes objects in, a data-plane Snapshot out.
//!
//! A tour, in the order one change flows:
//! - [`source`]: where objects come from (a folder of manifests, or the Kubernetes API).
//! - [`translate`]: objects to a Snapshot and diagnostics; pure, no I/O.
//! - [`pipeline`]: runs translation, logs what changed, and applies the snapshot.
//! - [`status`]: leader election, Ingress status and Events (API mode only).
//! - [`serve`]: wires it all to the data plane and the admin endpoints.
//! - [`admin`], [`metrics`] and [`debug`]: what operators see; [`explain`] answers "why".
//! - [`cli`] holds the typed command line; [`echo`] is the smoke-test backend.

pub mod admin;
pub mod cli;
pub mod debug;
pub mod echo;
pub mod explain;
pub mod metrics;
pub mod pipeline;
pub mod serve;
pub mod source;
pub mod status;
pub mod translate;
