//! The harness of the integration tests: each test makes its own CA and certificates,
//! writes a manifest folder, starts backends on 127.0.0.1 and the real `portcullis serve`
//! on free loopback ports, and speaks real TLS and HTTP to it.
//!
//! - [`pki`]: a test CA and leaf certificates (ECDSA P-256/P-384, Ed25519, RSA).
//! - [`manifests`]: the manifest folder and the objects written into it.
//! - [`backend`]: echo and slow backends, a closed port, `portcullis echo`.
//! - [`process`]: the `portcullis serve` child process, its log and its signals.
//! - [`client`]: rustls, hyper HTTP/1.1 and HTTP/2, raw bytes, and curl.
//!
//! Each test binary uses a different part of the harness.
#![allow(dead_code)]

pub mod accept_any;
pub mod backend;
pub mod client;
pub mod manifests;
pub mod pki;
pub mod process;
