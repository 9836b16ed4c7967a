//! Which certificate a handshake gets: by SNI for exact and wildcard hosts, the
//! placeholder or `--default-certificate` for unknown names and for no SNI, refusal with
//! `--strict-sni`; every key algorithm we support; 421 when a connection's certificate
//! does not cover a request's host; and a certificate replaced on disk taking effect on
//! the next handshake while requests on old connections finish.

mod support;

use std::time::Duration;

use rustls_pki_types::CertificateDer;
use support::backend::Backend;
use support::client::{H1, H2, Tls, alpn_of, bounded, connect_tls, https_get, peer_certificate};
use support::manifests::{
    Ingress, Manifests, NS, ingress_class, service, tls_secret, tls_secret_base64,
};
use support::pki::{KeyKind, Leaf, TestCa, subject_of};
use support::process::Portcullis;

const PLACEHOLDER: &str = "Portcullis placeholder";

/// a.example.com with its own certificate (in `stringData`), `*.apps.example.com` with a
/// wildcard one (base64 `data`), and a rule without host; all to the `web` backend.
struct SniSetup {
    ca: TestCa,
    exact: Leaf,
    wildcard: Leaf,
    fallback: Leaf,
    manifests: Manifests,
    _web: Backend,
}

async fn sni_setup() -> SniSetup {
    let ca = TestCa::new();
    let exact = ca.leaf(&["a.example.com"]);
    let wildcard = ca.leaf(&["*.apps.example.com"]);
    let fallback = ca.leaf(&["fallback.example.com"]);
    let web = Backend::echo("web").await;
    let manifests = Manifests::new();
    let mut objects = vec![
        ingress_class(),
        tls_secret(NS, "a-tls", &exact),
        tls_secret_base64(NS, "apps-tls", &wildcard),
        tls_secret(NS, "fallback-tls", &fallback),
        Ingress::new("sites")
            .tls(&["a.example.com"], "a-tls")
            .tls(&["*.apps.example.com"], "apps-tls")
            .route("a.example.com", "/", "web")
            .route("*.apps.example.com", "/", "web")
            .route("", "/", "web")
            .build(),
    ];
    objects.extend(service(NS, "web", &[web.port()]));
    manifests.write_objects("sites.yaml", &objects);
    SniSetup {
        ca,
        exact,
        wildcard,
        fallback,
        manifests,
        _web: web,
    }
}

/// The certificate served to a handshake with this SNI (or none), unverified.
async fn served(portcullis: &Portcullis, sni: Option<&str>) -> CertificateDer<'static> {
    let stream = connect_tls(portcullis.https, &Tls::inspect(sni))
        .await
        .unwrap_or_else(|e| panic!("handshake with SNI {sni:?} failed: {e}"));
    peer_certificate(&stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_sni_gets_its_own_certificate() {
    let setup = sni_setup().await;
    let portcullis = Portcullis::start(&setup.manifests, &[]).await;

    // Verified against the test CA for the name, and byte for byte the Secret's leaf.
    let stream = connect_tls(portcullis.https, &Tls::h1("a.example.com", &setup.ca))
        .await
        .expect("a verified handshake for a.example.com");
    assert_eq!(peer_certificate(&stream), setup.exact.der);
    let reply = H1::over(stream).await.get("a.example.com", "/").await;
    assert_eq!(reply.backend(), "web");

    // Names compare case-insensitively.
    assert_eq!(
        served(&portcullis, Some("A.Example.COM")).await,
        setup.exact.der
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_sni_gets_the_wildcard_certificate_for_one_label_only() {
    let setup = sni_setup().await;
    let portcullis = Portcullis::start(&setup.manifests, &[]).await;

    let stream = connect_tls(
        portcullis.https,
        &Tls::h1("shop.apps.example.com", &setup.ca),
    )
    .await
    .expect("a verified handshake for shop.apps.example.com");
    assert_eq!(peer_certificate(&stream), setup.wildcard.der);

    // Two labels below the wildcard are not covered: the placeholder.
    let deep = served(&portcullis, Some("a.b.apps.example.com")).await;
    assert!(
        subject_of(&deep).contains(PLACEHOLDER),
        "{}",
        subject_of(&deep)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_sni_and_no_sni_get_the_placeholder() {
    let setup = sni_setup().await;
    let portcullis = Portcullis::start(&setup.manifests, &[]).await;

    for sni in [Some("unknown.example.net"), None] {
        let cert = served(&portcullis, sni).await;
        let subject = subject_of(&cert);
        assert!(subject.contains(PLACEHOLDER), "SNI {sni:?}: {subject}");
        assert_ne!(cert, setup.exact.der);
    }

    // A client that verifies refuses the placeholder: it is not for this name.
    let verified = connect_tls(portcullis.https, &Tls::h1("unknown.example.net", &setup.ca)).await;
    assert!(verified.is_err(), "the placeholder must not verify");

    // Without SNI the handshake still completes and host-less rules answer.
    let stream = connect_tls(portcullis.https, &Tls::inspect(None))
        .await
        .expect("a handshake without SNI");
    let reply = H1::over(stream).await.get("10.1.2.3", "/").await;
    assert_eq!(reply.backend(), "web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_certificate_flag_serves_that_secret_for_unknown_names_and_no_sni() {
    let setup = sni_setup().await;
    let default = format!("{NS}/fallback-tls");
    let portcullis =
        Portcullis::start(&setup.manifests, &["--default-certificate", &default]).await;

    assert_eq!(
        served(&portcullis, Some("unknown.example.net")).await,
        setup.fallback.der
    );
    assert_eq!(served(&portcullis, None).await, setup.fallback.der);
    // Known names keep their own certificates.
    assert_eq!(
        served(&portcullis, Some("a.example.com")).await,
        setup.exact.der
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_sni_refuses_a_handshake_for_an_unknown_name_or_without_sni() {
    let setup = sni_setup().await;
    let portcullis = Portcullis::start(&setup.manifests, &["--strict-sni"]).await;

    for sni in [Some("unknown.example.net"), None] {
        let refused = connect_tls(portcullis.https, &Tls::inspect(sni)).await;
        assert!(
            refused.is_err(),
            "SNI {sni:?} must be refused under --strict-sni"
        );
    }
    let stream = connect_tls(portcullis.https, &Tls::h1("a.example.com", &setup.ca))
        .await
        .expect("known names still complete their handshake");
    assert_eq!(peer_certificate(&stream), setup.exact.der);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_p384_and_ed25519_certificates_are_served_and_verify() {
    let ca = TestCa::new();
    let web = Backend::echo("web").await;
    let manifests = Manifests::new();
    let kinds = [
        ("rsa.example.com", KeyKind::Rsa2048),
        ("p384.example.com", KeyKind::EcdsaP384),
        ("ed25519.example.com", KeyKind::Ed25519),
        ("p256.example.com", KeyKind::EcdsaP256),
    ];
    let mut objects = vec![ingress_class()];
    let mut ingress = Ingress::new("keys");
    let mut leaves = Vec::new();
    for (i, (host, kind)) in kinds.iter().enumerate() {
        let leaf = ca.leaf_with_key(&[host], *kind);
        let secret = format!("key-{i}");
        objects.push(tls_secret(NS, &secret, &leaf));
        ingress = ingress.tls(&[host], &secret).route(host, "/", "web");
        leaves.push(leaf);
    }
    objects.push(ingress.build());
    objects.extend(service(NS, "web", &[web.port()]));
    manifests.write_objects("keys.yaml", &objects);
    let portcullis = Portcullis::start(&manifests, &[]).await;

    for ((host, kind), leaf) in kinds.iter().zip(&leaves) {
        for tls in [Tls::h1(host, &ca), Tls::h2(host, &ca)] {
            let stream = connect_tls(portcullis.https, &tls)
                .await
                .unwrap_or_else(|e| panic!("{kind:?} handshake for {host}: {e}"));
            assert_eq!(peer_certificate(&stream), leaf.der, "{kind:?}");
        }
        assert_eq!(
            https_get(portcullis.https, &ca, host, "/").await.backend(),
            "web"
        );
    }
}

/// a.example.com and b.example.com with their own certificates; x. and y.example.org
/// under one wildcard certificate; each host to a backend of its name; and a host-less
/// rule to `any`.
struct MisdirectSetup {
    ca: TestCa,
    manifests: Manifests,
    _backends: Vec<Backend>,
}

async fn misdirect_setup() -> MisdirectSetup {
    let ca = TestCa::new();
    let manifests = Manifests::new();
    let mut objects = vec![
        ingress_class(),
        tls_secret(NS, "a-tls", &ca.leaf(&["a.example.com"])),
        tls_secret(NS, "b-tls", &ca.leaf(&["b.example.com"])),
        tls_secret(NS, "org-tls", &ca.leaf(&["*.example.org"])),
    ];
    let mut ingress = Ingress::new("hosts")
        .tls(&["a.example.com"], "a-tls")
        .tls(&["b.example.com"], "b-tls")
        .tls(&["*.example.org"], "org-tls");
    let mut backends = Vec::new();
    for (host, name) in [
        ("a.example.com", "a"),
        ("b.example.com", "b"),
        ("x.example.org", "x"),
        ("y.example.org", "y"),
        ("", "any"),
    ] {
        let backend = Backend::echo(name).await;
        objects.extend(service(NS, name, &[backend.port()]));
        ingress = ingress.route(host, "/", name);
        backends.push(backend);
    }
    objects.push(ingress.build());
    manifests.write_objects("hosts.yaml", &objects);
    MisdirectSetup {
        ca,
        manifests,
        _backends: backends,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_with_another_certificate_gets_421_on_a_connection_made_for_a_different_host() {
    let setup = misdirect_setup().await;
    let portcullis = Portcullis::start(&setup.manifests, &[]).await;

    let stream = connect_tls(portcullis.https, &Tls::h1("a.example.com", &setup.ca))
        .await
        .expect("handshake for a.example.com");
    let mut connection = H1::over(stream).await;
    let misdirected = connection.get("b.example.com", "/").await;
    assert_eq!(misdirected.status, 421, "{misdirected:?}");
    assert_eq!(
        misdirected.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert!(misdirected.body.starts_with("421 "), "{}", misdirected.body);

    // The connection is still good for the host its certificate covers.
    assert_eq!(connection.get("a.example.com", "/").await.backend(), "a");
    // And b.example.com works on a connection of its own.
    assert_eq!(
        https_get(portcullis.https, &setup.ca, "b.example.com", "/")
            .await
            .backend(),
        "b"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_covered_by_one_wildcard_certificate_share_an_http2_connection() {
    let setup = misdirect_setup().await;
    let portcullis = Portcullis::start(&setup.manifests, &[]).await;

    let stream = connect_tls(portcullis.https, &Tls::h2("x.example.org", &setup.ca))
        .await
        .expect("handshake for x.example.org");
    assert_eq!(alpn_of(&stream).as_deref(), Some("h2"));
    let mut connection = H2::over(stream).await;
    assert_eq!(connection.get("x.example.org", "/").await.backend(), "x");
    assert_eq!(connection.get("y.example.org", "/").await.backend(), "y");
    // A host the wildcard does not cover, with a certificate of its own: 421.
    assert_eq!(connection.get("a.example.com", "/").await.status, 421);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_sni_reach_hostless_rules_on_the_default_certificate() {
    let setup = misdirect_setup().await;
    let portcullis = Portcullis::start(&setup.manifests, &[]).await;

    let stream = connect_tls(portcullis.https, &Tls::inspect(None))
        .await
        .expect("handshake without SNI");
    let mut connection = H1::over(stream).await;
    assert_eq!(
        connection.get("127.0.0.1", "/").await.backend(),
        "any",
        "an IP host has no certificate of its own"
    );
    assert_eq!(
        connection.get("other.example.net", "/").await.backend(),
        "any"
    );
    // A host with a certificate of its own is misdirected on the placeholder connection.
    assert_eq!(connection.get("a.example.com", "/").await.status, 421);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_replaced_on_disk_is_served_on_the_next_handshake_while_old_requests_finish()
{
    let ca = TestCa::new();
    let old = ca.leaf(&["a.example.com"]);
    let new = ca.leaf(&["a.example.com"]);
    let web = Backend::echo("web").await;
    let slow = Backend::slow("slow", Duration::from_secs(2)).await;
    let manifests = Manifests::new();
    let mut objects = vec![
        ingress_class(),
        Ingress::new("site")
            .tls(&["a.example.com"], "a-tls")
            .route("a.example.com", "/", "web")
            .route("a.example.com", "/slow", "slow")
            .build(),
    ];
    objects.extend(service(NS, "web", &[web.port()]));
    objects.extend(service(NS, "slow", &[slow.port()]));
    manifests.write_objects("site.yaml", &objects);
    manifests.write_objects("secret.yaml", &[tls_secret(NS, "a-tls", &old)]);
    let portcullis = Portcullis::start(&manifests, &[]).await;

    // A long request on a connection made with the old certificate.
    let stream = connect_tls(portcullis.https, &Tls::h1("a.example.com", &ca))
        .await
        .expect("handshake with the old certificate");
    assert_eq!(peer_certificate(&stream), old.der);
    let mut connection = H1::over(stream).await;
    let long_request =
        tokio::spawn(async move { connection.get("a.example.com", "/slow/report").await });
    slow.wait_for_requests(1).await;

    // Replace the Secret's file; poll new handshakes until they get the new certificate.
    manifests.write_objects("secret.yaml", &[tls_secret(NS, "a-tls", &new)]);
    let mut rotated = false;
    for _ in 0..100 {
        let stream = connect_tls(portcullis.https, &Tls::h1("a.example.com", &ca))
            .await
            .expect("handshakes keep working during the rotation");
        if peer_certificate(&stream) == new.der {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rotated, "the new certificate was not served within 10 s");
    portcullis.wait_for_log(&["certificate rotated"]).await;

    // The request on the old connection completes.
    let reply = bounded(Duration::from_secs(10), "the long request", long_request)
        .await
        .expect("the long request's task");
    assert_eq!(reply.backend(), "slow");
    assert_eq!(reply.json()["path"], "/slow/report");

    // And the new certificate verifies end to end.
    assert_eq!(
        https_get(portcullis.https, &ca, "a.example.com", "/")
            .await
            .backend(),
        "web"
    );
}
