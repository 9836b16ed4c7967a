//! The harness for end-to-end tests against a real Kubernetes API server.
//!
//! A test builds its world from these pieces, each a guard that cleans up when dropped
//! (also when the test panics):
//! - [`cluster`]: etcd and kube-apiserver on loopback with generated certificates, RBAC on,
//!   an admin client for the test and a restricted kubeconfig for the controller.
//! - [`netns`]: a network namespace with addresses of its own, where `portcullis echo`
//!   backends run (EndpointSlices refuse loopback addresses).
//! - [`controller`]: the real `portcullis serve` binary in API mode.
//! - [`client`]: a rustls client that reports which certificate it was served, and a
//!   plain HTTP client for port 80.
//! - [`objects`]: Ingresses, Secrets, Services and EndpointSlices, and applying them.
//! - [`pki`]: test CAs and leaf certificates from rcgen.
//! - [`world`]: the pieces one test usually needs, together, and the checks tests repeat.
//!
//! Every wait is bounded ([`eventually`]); nothing is skipped: a missing tool fails the test
//! with the command that installs it.

#![allow(dead_code)]

#[path = "../support/accept_any.rs"]
pub mod accept_any;
pub mod client;
pub mod cluster;
pub mod controller;
pub mod netns;
pub mod objects;
pub mod pki;
pub mod process;
pub mod tools;
pub mod world;

use std::fmt::Display;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// Polls `check` every `interval` until it returns `Ok`, for at most `timeout`; panics with
/// the last error otherwise. Returns the value and how long it took.
pub async fn eventually<T, E, F>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: F,
) -> (T, Duration)
where
    E: Display,
    F: AsyncFnMut() -> Result<T, E>,
{
    let start = Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let last = match tokio::time::timeout(timeout, check()).await {
            Ok(Ok(value)) => return (value, start.elapsed()),
            Ok(Err(error)) => error.to_string(),
            Err(_) => "the check itself timed out".to_owned(),
        };
        if start.elapsed() >= timeout {
            panic!("{what}: not true after {timeout:?} ({attempts} attempts); last: {last}");
        }
        tokio::time::sleep(interval).await;
    }
}

/// A random number from the standard library's per-process hash keys (no extra crate).
pub fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}

/// A lower-case suffix for names that must not collide between tests.
pub fn random_suffix() -> String {
    format!("{:08x}", random_u64() as u32)
}

/// Milliseconds, for the timings the tests print.
pub fn ms(duration: Duration) -> u128 {
    duration.as_millis()
}
