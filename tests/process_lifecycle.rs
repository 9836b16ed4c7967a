//! The process from outside: a bad command line is one line on stderr and exit code 2;
//! SIGTERM fails readiness, stops accepting, lets requests in flight finish, and exits 0.

mod support;

use std::process::Output;
use std::time::Duration;

use support::backend::Backend;
use support::client::{H1, H2, Tls, bounded, connect_tls, https_get};
use support::manifests::{Ingress, Manifests, NS, ingress_class, service, tls_secret};
use support::pki::TestCa;
use support::process::{Portcullis, admin_get, run_to_exit, wait_until};
use tokio::net::TcpStream;

/// Runs the binary with `args`; kills it if it has not exited within 10 s.
fn run_bounded(args: &[&str]) -> Output {
    run_to_exit(args, Duration::from_secs(10))
}

/// Exit code 2 and exactly one line on stderr; that line.
fn assert_usage_error(args: &[&str]) -> String {
    let output = run_bounded(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{args:?}: stderr:\n{stderr}");
    let lines: Vec<&str> = stderr.trim_end().lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: one line on stderr, got:\n{stderr}"
    );
    lines[0].to_owned()
}

/// Flags that keep a run that should have failed on loopback, on ports the system picks.
const LOOPBACK: [&str; 6] = [
    "--https-addr",
    "127.0.0.1:0",
    "--http-addr",
    "127.0.0.1:0",
    "--admin-addr",
    "127.0.0.1:0",
];

#[test]
fn an_unknown_flag_prints_one_line_on_stderr_and_exits_with_2() {
    let manifests = Manifests::new();
    let dir = manifests.dir().to_str().unwrap();
    let mut args = vec!["serve", "--manifests", dir, "--no-such-flag"];
    args.extend(LOOPBACK);
    let line = assert_usage_error(&args);
    assert!(line.contains("--no-such-flag"), "{line}");
}

#[test]
fn a_bad_flag_value_prints_one_line_on_stderr_and_exits_with_2() {
    let manifests = Manifests::new();
    let dir = manifests.dir().to_str().unwrap();
    for (flag, value) in [
        ("--https-addr", "nope"),
        ("--upstream-response-timeout", "10"),
        ("--trusted-proxies", "10.0.0.0/33"),
        ("--max-request-header-size", "1KiB"),
        ("--default-certificate", "no-slash"),
    ] {
        let mut args = vec!["serve", "--manifests", dir];
        for pair in LOOPBACK.chunks(2).filter(|pair| pair[0] != flag) {
            args.extend(pair);
        }
        args.extend([flag, value]);
        let line = assert_usage_error(&args);
        assert!(line.contains(flag), "{flag} {value}: {line}");
        assert!(line.contains(value), "{flag} {value}: {line}");
    }
}

#[test]
fn a_missing_manifest_folder_exits_with_2_and_one_line_naming_the_folder() {
    let manifests = Manifests::new();
    let missing = manifests.scratch().join("no-such-folder");
    let missing = missing.to_str().unwrap();
    let mut args = vec!["serve", "--manifests", missing];
    args.extend(LOOPBACK);
    let line = assert_usage_error(&args);
    assert!(line.contains(missing), "{line}");
}

/// a.example.com: `/` to `web`, `/slow` to a backend that answers after 3 s.
async fn slow_site(ca: &TestCa) -> (Manifests, Backend, Backend) {
    let web = Backend::echo("web").await;
    let slow = Backend::slow("slow", Duration::from_secs(3)).await;
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
    (manifests, web, slow)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_lets_the_request_in_flight_finish_and_exits_0() {
    let ca = TestCa::new();
    let (manifests, _web, slow) = slow_site(&ca).await;
    let mut portcullis = Portcullis::start(
        &manifests,
        &["--shutdown-delay", "0s", "--drain-timeout", "10s"],
    )
    .await;

    // A slow request in flight.
    let stream = connect_tls(portcullis.https, &Tls::h1("a.example.com", &ca))
        .await
        .expect("handshake");
    let mut connection = H1::over(stream).await;
    let in_flight = tokio::spawn(async move { connection.get("a.example.com", "/slow").await });
    slow.wait_for_requests(1).await;

    portcullis.terminate();

    // New connections are refused while the request is still running.
    let https = portcullis.https;
    let refused = wait_until(Duration::from_secs(5), || {
        std::net::TcpStream::connect_timeout(&https, Duration::from_millis(200)).is_err()
    })
    .await;
    assert!(
        refused,
        "portcullis still accepts connections after SIGTERM"
    );
    assert!(
        !in_flight.is_finished(),
        "the slow request ended before accepting stopped; the test proves nothing"
    );

    // The request finishes with its full answer, then the process exits 0.
    let reply = bounded(Duration::from_secs(10), "the request in flight", in_flight)
        .await
        .expect("the request's task");
    assert_eq!(reply.backend(), "slow");
    let status = portcullis.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0), "log:\n{}", portcullis.log());
    let log = portcullis.log();
    assert!(log.contains("stopped"), "log:\n{log}");
    assert!(
        !log.contains("drain timeout reached"),
        "the drain should not have timed out; log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_the_shutdown_delay_readiness_fails_but_requests_are_still_served() {
    let ca = TestCa::new();
    let (manifests, _web, _slow) = slow_site(&ca).await;
    let mut portcullis = Portcullis::start(
        &manifests,
        &["--shutdown-delay", "3s", "--drain-timeout", "5s"],
    )
    .await;
    assert_eq!(admin_get(portcullis.admin, "/readyz").await, Some(200));

    portcullis.terminate();
    let admin = portcullis.admin;
    let mut not_ready = false;
    for _ in 0..40 {
        if admin_get(admin, "/readyz").await == Some(503) {
            not_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(not_ready, "/readyz did not fail after SIGTERM");
    assert_eq!(admin_get(admin, "/healthz").await, Some(200));
    // Still accepting and serving during the delay.
    assert_eq!(
        https_get(portcullis.https, &ca, "a.example.com", "/")
            .await
            .backend(),
        "web"
    );

    let status = portcullis.wait_exit(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0), "log:\n{}", portcullis.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_unfinished_handshakes_do_not_hold_up_the_shutdown() {
    let ca = TestCa::new();
    let (manifests, _web, _slow) = slow_site(&ca).await;
    let mut portcullis = Portcullis::start(
        &manifests,
        &[
            "--drain-timeout",
            "60s",
            "--tls-handshake-timeout",
            "60s",
            "--keepalive-timeout",
            "60s",
        ],
    )
    .await;

    // Idle keep-alive connections after a request: HTTP/2, HTTP/1.1 over TLS, plain HTTP.
    let stream = connect_tls(portcullis.https, &Tls::h2("a.example.com", &ca))
        .await
        .expect("handshake");
    let mut h2 = H2::over(stream).await;
    assert_eq!(h2.get("a.example.com", "/").await.backend(), "web");
    let stream = connect_tls(portcullis.https, &Tls::h1("a.example.com", &ca))
        .await
        .expect("handshake");
    let mut h1 = H1::over(stream).await;
    assert_eq!(h1.get("a.example.com", "/").await.backend(), "web");
    let plain = TcpStream::connect(portcullis.http).await.expect("connect");
    let mut h1_plain = H1::over(plain).await;
    assert_eq!(h1_plain.get("a.example.com", "/").await.status, 308);
    // Connections that never send a byte: one waiting for a TLS handshake, one for HTTP.
    let _silent_tls = TcpStream::connect(portcullis.https).await.expect("connect");
    let _silent_http = TcpStream::connect(portcullis.http).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Every timeout above is 60 s: exiting well within that shows nothing waited on them.
    portcullis.terminate();
    let status = portcullis.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0), "log:\n{}", portcullis.log());
}
