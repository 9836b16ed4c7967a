//! Bad input gets a clear answer and takes nothing else down: broken Secrets and
//! malformed files are reported by name with the reason while the good hosts keep
//! serving with their certificates; an Ingress naming a missing Service or port gets a
//! diagnostic and 503; oversized and malformed requests get 431 and 400, and the process
//! lives on.

mod support;

use support::backend::Backend;
use support::client::{
    H1, Tls, connect_tls, http_get, https_get, peer_certificate, raw_exchange, raw_status,
};
use support::manifests::{
    Ingress, Manifests, NS, ingress_class, secret, service, tls_secret, yaml_documents,
};
use support::pki::{Leaf, TestCa, subject_of};
use support::process::Portcullis;

const PLACEHOLDER: &str = "Portcullis placeholder";

/// A CERTIFICATE block whose content is not base64.
const NOT_BASE64_PEM: &str =
    "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n";

/// good.example.com with a good certificate, routed to `web`.
fn good_objects(ca: &TestCa, web: &Backend) -> (Leaf, Vec<serde_json::Value>) {
    let good = ca.leaf(&["good.example.com"]);
    let mut objects = vec![
        ingress_class(),
        tls_secret(NS, "good-tls", &good),
        Ingress::new("good")
            .tls(&["good.example.com"], "good-tls")
            .route("good.example.com", "/", "web")
            .build(),
    ];
    objects.extend(service(NS, "web", &[web.port()]));
    (good, objects)
}

/// good.example.com answers over a verified handshake with its own certificate.
async fn assert_good_host_served(portcullis: &Portcullis, ca: &TestCa, good: &Leaf) {
    let stream = connect_tls(portcullis.https, &Tls::h1("good.example.com", ca))
        .await
        .expect("good.example.com still completes a verified handshake");
    assert_eq!(peer_certificate(&stream), good.der);
    let reply = H1::over(stream).await.get("good.example.com", "/").await;
    assert_eq!(reply.backend(), "web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_broken_secret_is_reported_by_name_and_reason_while_good_hosts_keep_serving() {
    let ca = TestCa::new();
    let web = Backend::echo("web").await;
    let (good, mut objects) = good_objects(&ca, &web);

    let mismatch = ca.leaf(&["mismatch.example.com"]);
    let stranger = ca.leaf(&["mismatch.example.com"]);
    let wrong_type = ca.leaf(&["wrongtype.example.com"]);
    let no_key = ca.leaf(&["nokey.example.com"]);
    let bad_pem = ca.leaf(&["badpem.example.com"]);
    // (host, Secret, the Secret itself, what the diagnostic must say)
    let broken = [
        (
            "badpem.example.com",
            "bad-pem",
            secret(
                NS,
                "bad-pem",
                "kubernetes.io/tls",
                &[("tls.crt", NOT_BASE64_PEM), ("tls.key", &bad_pem.key_pem)],
            ),
            vec!["InvalidCertificate", "tls.crt is not valid PEM"],
        ),
        (
            "mismatch.example.com",
            "key-mismatch",
            secret(
                NS,
                "key-mismatch",
                "kubernetes.io/tls",
                &[
                    ("tls.crt", &mismatch.cert_pem),
                    ("tls.key", &stranger.key_pem),
                ],
            ),
            vec!["InvalidCertificate", "does not belong to the certificate"],
        ),
        (
            "nokey.example.com",
            "no-key",
            secret(
                NS,
                "no-key",
                "kubernetes.io/tls",
                &[("tls.crt", &no_key.cert_pem)],
            ),
            vec!["InvalidCertificate", "has no tls.key"],
        ),
        (
            "wrongtype.example.com",
            "wrong-type",
            secret(
                NS,
                "wrong-type",
                "Opaque",
                &[
                    ("tls.crt", &wrong_type.cert_pem),
                    ("tls.key", &wrong_type.key_pem),
                ],
            ),
            vec!["SecretWrongType", "has type Opaque"],
        ),
        (
            "expired.example.com",
            "expired",
            tls_secret(NS, "expired", &ca.expired_leaf(&["expired.example.com"])),
            vec!["CertificateExpired", "expired"],
        ),
        (
            "uncovered.example.com",
            "not-covering",
            tls_secret(NS, "not-covering", &ca.leaf(&["other.example.com"])),
            vec![
                "CertificateHostMismatch",
                "covers other.example.com, not uncovered.example.com",
            ],
        ),
    ];
    let mut ingress = Ingress::new("broken");
    for (host, name, object, _) in &broken {
        objects.push(object.clone());
        ingress = ingress.tls(&[host], name).route(host, "/", "web");
    }
    objects.push(ingress.build());

    let manifests = Manifests::new();
    manifests.write_objects("objects.yaml", &objects);
    let mut portcullis = Portcullis::start(&manifests, &[]).await;

    for (host, name, _, says) in &broken {
        let secret = format!("Secret {NS}/{name}");
        let mut needles = vec!["configuration problem", secret.as_str()];
        needles.extend(says.iter().copied());
        portcullis.wait_for_log(&needles).await;

        // Its host gets the placeholder, and keeps being routed.
        let stream = connect_tls(portcullis.https, &Tls::inspect(Some(host)))
            .await
            .unwrap_or_else(|e| panic!("handshake for {host}: {e}"));
        let subject = subject_of(&peer_certificate(&stream));
        assert!(subject.contains(PLACEHOLDER), "{host}: {subject}");
        assert_eq!(H1::over(stream).await.get(host, "/").await.backend(), "web");
    }
    assert_good_host_served(&portcullis, &ca, &good).await;
    assert!(portcullis.is_running());

    // No private key material reaches the log.
    let log = portcullis.log();
    assert!(!log.contains("PRIVATE KEY"), "the log holds key material");
    for leaf in [&good, &mismatch, &stranger] {
        let key_body = leaf.key_pem.lines().nth(1).unwrap_or_default();
        assert!(!log.contains(key_body), "the log holds key material");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_yaml_file_is_named_in_the_log_and_the_other_files_are_still_served() {
    let ca = TestCa::new();
    let web = Backend::echo("web").await;
    let (good, objects) = good_objects(&ca, &web);
    let manifests = Manifests::new();
    manifests.write_objects("good.yaml", &objects);
    manifests.write("broken.yaml", "kind: [unclosed\nmetadata: {name: x\n");
    let mut extra = vec![
        Ingress::new("extra")
            .route("extra.example.com", "/", "web")
            .build(),
    ];
    extra.extend(service(NS, "other", &[web.port()]));
    manifests.write("extra.yaml", &yaml_documents(&extra));
    let mut portcullis = Portcullis::start(&manifests, &[]).await;

    portcullis
        .wait_for_log(&[
            "configuration problem",
            "File broken.yaml",
            "not valid YAML",
        ])
        .await;
    assert_good_host_served(&portcullis, &ca, &good).await;
    assert_eq!(
        http_get(portcullis.http, "extra.example.com", "/")
            .await
            .backend(),
        "web"
    );

    // A file that breaks while running is reported, and keeps the objects it had.
    manifests.write("extra.yaml", "apiVersion: v1\nkind: Service\nmetadata: [\n");
    portcullis
        .wait_for_log(&[
            "configuration problem",
            "File extra.yaml",
            "keeping the objects",
        ])
        .await;
    assert_eq!(
        http_get(portcullis.http, "extra.example.com", "/")
            .await
            .backend(),
        "web"
    );
    assert!(portcullis.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_naming_a_missing_service_or_port_is_reported_and_gets_503() {
    let ca = TestCa::new();
    let web = Backend::echo("web").await;
    let (good, mut objects) = good_objects(&ca, &web);
    objects.push(
        Ingress::new("dangling")
            .route("nosvc.example.com", "/", "missing")
            .path(
                "noport.example.com",
                "/",
                "Prefix",
                "web",
                serde_json::json!({"number": 8081}),
            )
            .path(
                "noname.example.com",
                "/",
                "Prefix",
                "web",
                serde_json::json!({"name": "grpc"}),
            )
            .build(),
    );
    let manifests = Manifests::new();
    manifests.write_objects("objects.yaml", &objects);
    let portcullis = Portcullis::start(&manifests, &[]).await;

    portcullis
        .wait_for_log(&[
            "configuration problem",
            "Ingress shop/dangling",
            "ServiceNotFound",
            "Service shop/missing does not exist",
        ])
        .await;
    portcullis
        .wait_for_log(&[
            "configuration problem",
            "Ingress shop/dangling",
            "ServicePortNotFound",
            "has no port 8081",
        ])
        .await;
    portcullis
        .wait_for_log(&["ServicePortNotFound", "has no port grpc"])
        .await;
    for host in [
        "nosvc.example.com",
        "noport.example.com",
        "noname.example.com",
    ] {
        let reply = http_get(portcullis.http, host, "/").await;
        assert_eq!(reply.status, 503, "{host}: {reply:?}");
        assert!(reply.body.starts_with("503 "), "{host}: {reply:?}");
    }
    assert_good_host_served(&portcullis, &ca, &good).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_oversized_headers_gets_431_and_the_process_lives_on() {
    let ca = TestCa::new();
    let web = Backend::echo("web").await;
    let (good, objects) = good_objects(&ca, &web);
    let manifests = Manifests::new();
    manifests.write_objects("objects.yaml", &objects);
    let mut portcullis = Portcullis::start(&manifests, &[]).await;

    let big = "a".repeat(40 * 1024);
    let request = format!(
        "GET / HTTP/1.1\r\nHost: good.example.com\r\nConnection: close\r\nX-Big: {big}\r\n\r\n"
    )
    .into_bytes();
    let stream = connect_tls(portcullis.https, &Tls::h1("good.example.com", &ca))
        .await
        .expect("handshake");
    let response = raw_exchange(stream, &request).await;
    assert_eq!(raw_status(&response), Some(431), "{response}");

    let stream = tokio::net::TcpStream::connect(portcullis.http)
        .await
        .expect("connect");
    let response = raw_exchange(stream, &request).await;
    assert_eq!(raw_status(&response), Some(431), "{response}");

    // Just under the limit is fine.
    let fits = "a".repeat(16 * 1024);
    let stream = tokio::net::TcpStream::connect(portcullis.http)
        .await
        .expect("connect");
    let mut connection = H1::over(stream).await;
    let reply = connection
        .send(
            support::client::request("good.example.com", "/")
                .header("x-fits", fits)
                .body(Default::default())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 308, "plain HTTP to a TLS host: {reply:?}");

    assert!(portcullis.is_running());
    assert_good_host_served(&portcullis, &ca, &good).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_line_gets_400_and_the_process_lives_on() {
    let ca = TestCa::new();
    let web = Backend::echo("web").await;
    let (good, objects) = good_objects(&ca, &web);
    let manifests = Manifests::new();
    manifests.write_objects("objects.yaml", &objects);
    let mut portcullis = Portcullis::start(&manifests, &[]).await;

    for garbage in [
        &b"this is not http\r\n\r\n"[..],
        b"GET /\x01path HTTP/1.1\r\nHost: good.example.com\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: good.example.com\r\n\r\n",
    ] {
        let stream = connect_tls(portcullis.https, &Tls::h1("good.example.com", &ca))
            .await
            .expect("handshake");
        let response = raw_exchange(stream, garbage).await;
        assert_eq!(
            raw_status(&response),
            Some(400),
            "{:?}: {response}",
            String::from_utf8_lossy(garbage)
        );
    }
    // A request without any host.
    let stream = tokio::net::TcpStream::connect(portcullis.http)
        .await
        .expect("connect");
    let response = raw_exchange(stream, b"GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(raw_status(&response), Some(400), "{response}");

    assert!(portcullis.is_running());
    assert_good_host_served(&portcullis, &ca, &good).await;
    assert_eq!(
        https_get(portcullis.https, &ca, "good.example.com", "/x")
            .await
            .backend(),
        "web"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_that_breaks_after_it_was_good_keeps_serving_its_last_good_certificate() {
    let ca = TestCa::new();
    let web = Backend::echo("web").await;
    let (good, objects) = good_objects(&ca, &web);
    let (secrets, others): (Vec<_>, Vec<_>) =
        objects.into_iter().partition(|o| o["kind"] == "Secret");
    let manifests = Manifests::new();
    manifests.write_objects("objects.yaml", &others);
    manifests.write_objects("secret.yaml", &secrets);
    let portcullis = Portcullis::start(&manifests, &[]).await;
    assert_good_host_served(&portcullis, &ca, &good).await;

    // The Secret now holds a key of another certificate.
    let stranger = ca.leaf(&["good.example.com"]);
    manifests.write_objects(
        "secret.yaml",
        &[secret(
            NS,
            "good-tls",
            "kubernetes.io/tls",
            &[("tls.crt", &good.cert_pem), ("tls.key", &stranger.key_pem)],
        )],
    );
    portcullis
        .wait_for_log(&[
            "configuration problem",
            "Secret shop/good-tls",
            "does not belong to the certificate",
            "still serving the last good certificate",
        ])
        .await;
    assert_good_host_served(&portcullis, &ca, &good).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_two_host_headers_gets_400() {
    let ca = TestCa::new();
    let web = Backend::echo("web").await;
    let (good, objects) = good_objects(&ca, &web);
    let manifests = Manifests::new();
    manifests.write_objects("objects.yaml", &objects);
    let portcullis = Portcullis::start(&manifests, &[]).await;

    // RFC 9112 section 3.2: a server MUST answer 400 to more than one Host header.
    for (first, second) in [
        ("good.example.com", "other.example.com"),
        ("good.example.com", "good.example.com"),
    ] {
        let stream = connect_tls(portcullis.https, &Tls::h1("good.example.com", &ca))
            .await
            .expect("handshake");
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {first}\r\nHost: {second}\r\nConnection: close\r\n\r\n"
        );
        let response = raw_exchange(stream, request.as_bytes()).await;
        assert_eq!(raw_status(&response), Some(400), "{response}");
    }
    assert_good_host_served(&portcullis, &ca, &good).await;
}
