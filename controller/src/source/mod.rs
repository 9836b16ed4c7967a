//! Where objects come from: a folder of manifests ([`manifests`]) or the Kubernetes API.
//! Both hand a [`crate::translate::Objects`] to the same rebuild pipeline.

pub mod kube;
pub mod manifests;
pub mod watch;
