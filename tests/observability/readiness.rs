//! `/readyz`: 503 until the first snapshot is applied (and no handshake is answered
//! before), 200 while serving, and 503 from SIGTERM through the shutdown delay, while
//! the process still accepts, and through the drain that follows.

use std::time::Duration;

use crate::observability_support::{Launched, feed_pipe, make_fifo, wait_for_readyz};
use crate::support::backend::Backend;
use crate::support::client::{H1, Tls, bounded, connect_tls, https_get, peer_certificate};
use crate::support::manifests::{
    Ingress, Manifests, NS, ingress_class, service, tls_secret, yaml_documents,
};
use crate::support::pki::TestCa;
use crate::support::process::{Portcullis, admin_get};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_and_nothing_is_served_until_the_first_snapshot_is_applied() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["a.example.com"]);
    let web = Backend::echo("web").await;
    let manifests = Manifests::new();
    let mut objects = vec![
        ingress_class(),
        Ingress::new("site")
            .tls(&["a.example.com"], "a-tls")
            .route("a.example.com", "/", "web")
            .build(),
    ];
    objects.extend(service(NS, "web", &[web.port()]));
    manifests.write_objects("site.yaml", &objects);

    // The Secret comes through a named pipe, so reading the folder the first time blocks
    // on it until the test writes it. That holds the process, in folder mode, between
    // binding its ports and applying its first snapshot.
    let pipe = manifests.dir().join("zz-secret.yaml");
    make_fifo(&pipe);
    let secret_yaml = yaml_documents(&[tls_secret(NS, "a-tls", &leaf)]);

    let launched = Launched::until_admin_answers(&manifests, &[]).await;
    for _ in 0..10 {
        let status = admin_get(launched.admin, "/readyz").await;
        assert_eq!(status, Some(503), "/readyz before the first snapshot");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(!launched.stderr().contains("snapshot applied"));

    // The HTTPS port is bound, but a handshake is not answered while not ready.
    let https = launched.https;
    let handshake = tokio::spawn(async move {
        let stream = connect_tls(https, &Tls::inspect(Some("a.example.com")))
            .await
            .expect("the handshake completes once serving");
        peer_certificate(&stream)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !handshake.is_finished(),
        "a TLS handshake completed before the first snapshot was applied"
    );
    let status = admin_get(launched.admin, "/readyz").await;
    assert_eq!(status, Some(503));

    // Let the first read of the folder finish.
    feed_pipe(&pipe, &secret_yaml).await;

    // Ready now, and the handshake that waited got the Secret's certificate.
    let ready = wait_for_readyz(launched.admin, 200).await;
    assert!(ready, "not ready after the snapshot could be read");
    let served = bounded(Duration::from_secs(10), "the waiting handshake", handshake)
        .await
        .expect("the handshake task");
    assert_eq!(
        served, leaf.der,
        "the waiting handshake got another certificate"
    );
    let reply = https_get(launched.https, &ca, "a.example.com", "/").await;
    assert_eq!(reply.backend(), "web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_200_while_serving_and_503_through_the_shutdown_delay_and_drain() {
    let ca = TestCa::new();
    let web = Backend::echo("web").await;
    let slow = Backend::slow("slow", Duration::from_secs(6)).await;
    let manifests = Manifests::new();
    let mut objects = vec![
        ingress_class(),
        tls_secret(NS, "a-tls", &ca.leaf(&["a.example.com"])),
        Ingress::new("site")
            .tls(&["a.example.com"], "a-tls")
            .route("a.example.com", "/", "web")
            .route("a.example.com", "/slow", "slow")
            .build(),
    ];
    objects.extend(service(NS, "web", &[web.port()]));
    objects.extend(service(NS, "slow", &[slow.port()]));
    manifests.write_objects("site.yaml", &objects);
    let mut portcullis = Portcullis::start(
        &manifests,
        &["--shutdown-delay", "3s", "--drain-timeout", "15s"],
    )
    .await;
    let admin = portcullis.admin;

    // Serving: ready.
    for _ in 0..3 {
        assert_eq!(admin_get(admin, "/readyz").await, Some(200));
        let reply = https_get(portcullis.https, &ca, "a.example.com", "/").await;
        assert_eq!(reply.backend(), "web");
    }

    // SIGTERM: readiness fails at once, while the process still accepts and serves.
    portcullis.terminate();
    let mut not_ready = false;
    for _ in 0..80 {
        match admin_get(admin, "/readyz").await {
            Some(503) => {
                not_ready = true;
                break;
            }
            Some(200) => {}
            other => panic!("/readyz after SIGTERM: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(not_ready, "/readyz did not fail after SIGTERM");
    assert_eq!(admin_get(admin, "/healthz").await, Some(200));
    let reply = https_get(portcullis.https, &ca, "a.example.com", "/").await;
    assert_eq!(reply.backend(), "web", "a new connection during the delay");
    assert_eq!(admin_get(admin, "/readyz").await, Some(503));

    // A slow request accepted during the delay keeps the drain going past it.
    let stream = connect_tls(portcullis.https, &Tls::h1("a.example.com", &ca))
        .await
        .expect("a handshake during the delay");
    let mut connection = H1::over(stream).await;
    let in_flight = tokio::spawn(async move { connection.get("a.example.com", "/slow").await });
    slow.wait_for_requests(1).await;

    // Until accepting stops, /readyz never says ready again.
    let https = portcullis.https;
    let mut refused = false;
    for _ in 0..200 {
        assert_eq!(admin_get(admin, "/readyz").await, Some(503));
        if std::net::TcpStream::connect_timeout(&https, Duration::from_millis(200)).is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(refused, "portcullis still accepts 10 s after SIGTERM");
    assert!(
        !in_flight.is_finished(),
        "the slow request ended before accepting stopped; the test proves nothing"
    );

    // Draining: no longer accepting, the request still in flight, still not ready.
    assert_eq!(admin_get(admin, "/readyz").await, Some(503));
    let reply = bounded(Duration::from_secs(15), "the request in flight", in_flight)
        .await
        .expect("the request's task");
    assert_eq!(reply.backend(), "slow");
    let status = portcullis.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0), "log:\n{}", portcullis.log());
}
