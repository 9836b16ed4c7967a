//! `/debug/snapshot`: 404 unless `--enable-debug-endpoints` is given; with it, the hosts,
//! routes, backends with their endpoints, and certificates (Secret, subject, names,
//! issuer, dates, fingerprint) as JSON, and never key material, for every key algorithm
//! and PEM form, nor for keys in Secrets that cannot be read.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::observability_support::{admin_fetch, fingerprint, key_traces, traditional_key};
use crate::support::backend::Backend;
use crate::support::client::{Tls, connect_tls, peer_certificate};
use crate::support::manifests::{
    Ingress, Manifests, NS, ingress_class, secret, service, tls_secret,
};
use crate::support::pki::{KeyKind, Leaf, TestCa};
use crate::support::process::Portcullis;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn is_404_without_enable_debug_endpoints() {
    let ca = TestCa::new();
    let manifests = Manifests::new();
    manifests.write_objects(
        "site.yaml",
        &[
            ingress_class(),
            tls_secret(NS, "a-tls", &ca.leaf(&["a.example.com"])),
        ],
    );
    let portcullis = Portcullis::start(&manifests, &[]).await;
    let reply = admin_fetch(portcullis.admin, "/debug/snapshot")
        .await
        .expect("an answer");
    assert_eq!(reply.status, 404, "{reply:?}");
    assert!(reply.body.contains("--enable-debug-endpoints"), "{reply:?}");
    assert!(!reply.body.contains("a-tls"), "{reply:?}");
}

/// A host of the debug test, its Secret, and the pair in it.
struct KeyCase {
    host: String,
    secret: String,
    leaf: Leaf,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shows_routes_backends_and_certificates_but_never_a_private_key() {
    let ca = TestCa::new();
    let web = Backend::echo("web").await;

    // Every key algorithm, in every PEM form rustls reads.
    let mut cases = Vec::new();
    for (name, kind, form) in [
        ("rsa-pkcs8", KeyKind::Rsa2048, None),
        ("rsa-pkcs1", KeyKind::Rsa2048, Some("RSA PRIVATE KEY")),
        ("p256-pkcs8", KeyKind::EcdsaP256, None),
        ("p256-sec1", KeyKind::EcdsaP256, Some("EC PRIVATE KEY")),
        ("p384-pkcs8", KeyKind::EcdsaP384, None),
        ("p384-sec1", KeyKind::EcdsaP384, Some("EC PRIVATE KEY")),
        ("ed25519-pkcs8", KeyKind::Ed25519, None),
    ] {
        let host = format!("{name}.example.com");
        let mut leaf = ca.leaf_with_key(&[&host], kind);
        if let Some(label) = form {
            leaf.key_pem = traditional_key(&leaf.key_pem, label);
        }
        cases.push(KeyCase {
            host,
            secret: format!("{name}-tls"),
            leaf,
        });
    }

    // Two Secrets that cannot serve, each holding a key where an error message could
    // quote it: a key joined onto one line, and stringData that is a string, not a map.
    let oneline_leaf = ca.leaf(&["oneline.example.com"]);
    let oneline_key = oneline_leaf.key_pem.trim().replace('\n', " ");
    let notamap_leaf = ca.leaf(&["notamap.example.com"]);

    let manifests = Manifests::new();
    let mut ingress = Ingress::new("keys");
    let mut objects = vec![ingress_class()];
    for case in &cases {
        objects.push(tls_secret(NS, &case.secret, &case.leaf));
        ingress = ingress
            .tls(&[&case.host], &case.secret)
            .route(&case.host, "/", "web");
    }
    objects.push(secret(
        NS,
        "oneline-tls",
        "kubernetes.io/tls",
        &[
            ("tls.crt", &oneline_leaf.cert_pem),
            ("tls.key", &oneline_key),
        ],
    ));
    objects.push(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "notamap-tls", "namespace": NS},
        "type": "kubernetes.io/tls",
        "stringData": notamap_leaf.key_pem,
    }));
    ingress = ingress
        .tls(&["oneline.example.com"], "oneline-tls")
        .route("oneline.example.com", "/", "web")
        .tls(&["notamap.example.com"], "notamap-tls")
        .route("notamap.example.com", "/", "web");
    objects.push(ingress.build());
    objects.extend(service(NS, "web", &[web.port()]));
    manifests.write_objects("keys.yaml", &objects);
    let portcullis = Portcullis::start(&manifests, &["--enable-debug-endpoints"]).await;

    let reply = admin_fetch(portcullis.admin, "/debug/snapshot")
        .await
        .expect("an answer");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let view: Value = serde_json::from_str(&reply.body).expect("the snapshot is JSON");

    // Hosts and their routes.
    let hosts = view["hosts"].as_array().expect("hosts");
    for case in &cases {
        let host = hosts
            .iter()
            .find(|h| h["host"] == case.host.as_str())
            .unwrap_or_else(|| panic!("{} missing from {view:#}", case.host));
        assert_eq!(host["tls"], true);
        assert_eq!(host["certificate"], format!("{NS}/{}", case.secret));
        assert_eq!(
            host["routes"],
            json!([{
                "path": "/",
                "path_type": "Prefix",
                "backend": "shop/web:80",
                "https_redirect": true,
                "ingress": "shop/keys",
            }])
        );
    }
    let oneline = hosts
        .iter()
        .find(|h| h["host"] == "oneline.example.com")
        .expect("oneline.example.com is still routed");
    assert_eq!(oneline["certificate"], Value::Null);

    // Backends and their endpoints.
    assert_eq!(
        view["backends"],
        json!([{"backend": "shop/web:80", "endpoints": [web.addr.to_string()]}])
    );

    // Certificates: what each Secret serves, and the fingerprint of what a handshake gets.
    let certificates = view["certificates"].as_array().expect("certificates");
    let secrets: BTreeSet<String> = certificates
        .iter()
        .map(|c| c["secret"].as_str().unwrap_or_default().to_owned())
        .collect();
    let wanted: BTreeSet<String> = cases.iter().map(|c| format!("{NS}/{}", c.secret)).collect();
    assert_eq!(secrets, wanted);
    for case in &cases {
        let cert = certificates
            .iter()
            .find(|c| c["secret"] == format!("{NS}/{}", case.secret))
            .expect("the certificate");
        let subject = cert["subject"].as_str().unwrap_or_default();
        assert!(subject.contains(&format!("CN={}", case.host)), "{cert:#}");
        assert_eq!(cert["dns_names"], json!([case.host]));
        let issuer = cert["issuer"].as_str().unwrap_or_default();
        assert!(
            issuer.contains("Portcullis integration-test CA"),
            "{cert:#}"
        );
        let not_before = cert["not_before"].as_str().unwrap_or_default();
        let not_after = cert["not_after"].as_str().unwrap_or_default();
        assert!(!not_before.is_empty() && !not_after.is_empty() && not_before != not_after);
        assert_eq!(cert["sha256_fingerprint"], fingerprint(&case.leaf.der));

        let stream = connect_tls(portcullis.https, &Tls::h1(&case.host, &ca))
            .await
            .unwrap_or_else(|e| panic!("handshake for {}: {e}", case.host));
        assert_eq!(
            fingerprint(&peer_certificate(&stream)),
            cert["sha256_fingerprint"].as_str().unwrap_or_default(),
            "{} serves another certificate than /debug/snapshot says",
            case.host
        );
    }

    // The two broken Secrets are diagnosed.
    let diagnostics = view["diagnostics"].as_array().expect("diagnostics");
    let reasons: BTreeSet<&str> = diagnostics
        .iter()
        .filter_map(|d| d["reason"].as_str())
        .collect();
    for reason in ["InvalidCertificate", "InvalidManifest", "SecretNotFound"] {
        assert!(reasons.contains(reason), "no {reason} in {diagnostics:#?}");
    }

    // No key material, in any form, in the answer or in the log.
    let log = portcullis.log();
    for (what, text) in [("/debug/snapshot", &reply.body), ("the log", &log)] {
        for marker in ["PRIVATE KEY", "BEGIN"] {
            assert!(
                !text.contains(marker),
                "{what} contains {marker:?}:\n{text}"
            );
        }
        let keys = cases
            .iter()
            .map(|c| c.leaf.key_pem.as_str())
            .chain([oneline_leaf.key_pem.as_str(), notamap_leaf.key_pem.as_str()]);
        for key in keys {
            for trace in key_traces(key) {
                assert!(
                    !text.contains(&trace),
                    "{what} contains key material ({trace}):\n{text}"
                );
            }
        }
    }
}
