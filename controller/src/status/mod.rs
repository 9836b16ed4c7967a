//! What the controller writes back to the API: leader election, Ingress status, and
//! Events for diagnostics. Only the leader writes; every replica serves traffic.

pub mod events;
pub mod ingress_status;
pub mod leader;
