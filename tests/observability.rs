//! What operators see, from outside the real binary: `/metrics` (valid OpenMetrics, the
//! counters moved by exactly what was sent, and no label taken from client input),
//! `/readyz` before the first snapshot, while serving and through the shutdown drain,
//! `/debug/snapshot` (off by default; certificate details but never key material), the
//! JSON access log (one line per request with the right fields, none when turned off),
//! and `portcullis explain` on folders with every kind of certificate problem.

mod observability_support;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use observability_support::{
    Launched, access_lines, admin_fetch, connect_tls12, eventually, explain, fingerprint,
    key_traces, make_fifo, not_after_unix, parse_openmetrics, random_token, run_portcullis,
    scrape, self_signed_expiring_in, tls11_client_hello, traditional_key,
};
use serde_json::{Value, json};
use support::backend::{Backend, ClosedPort};
use support::client::{
    H1, H2, Reply, Tls, bounded, connect_tls, http_get, https_get, peer_certificate,
    raw_exchange, request, seen_header,
};
use support::manifests::{
    Ingress, Manifests, NS, ingress_class, secret, service, service_with_readiness, tls_secret,
    yaml_documents,
};
use support::pki::{KeyKind, Leaf, TestCa};
use support::process::{Portcullis, admin_get};
use tokio::net::TcpStream;

/// One request on a fresh TLS connection; the reply.
async fn tls_exchange(portcullis: &Portcullis, tls: &Tls<'_>, req: Request<Full<Bytes>>) -> Reply {
    let stream = connect_tls(portcullis.https, tls)
        .await
        .unwrap_or_else(|e| panic!("TLS handshake for {}: {e}", tls.name));
    H1::over(stream).await.send(req).await
}

fn get(host: &str, path: &str) -> Request<Full<Bytes>> {
    request(host, path).body(Full::default()).unwrap()
}

/// Scrapes until `done` holds for the parsed metrics (at most 10 s), then returns them.
async fn scrape_until(
    admin: std::net::SocketAddr,
    what: &str,
    done: impl Fn(&observability_support::Exposition) -> bool,
) -> (observability_support::Exposition, String) {
    for _ in 0..200 {
        let (metrics, text) = scrape(admin).await;
        if done(&metrics) {
            return (metrics, text);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, text) = scrape(admin).await;
    panic!("metrics never showed {what}:\n{text}");
}

// ---------------------------------------------------------------------------------------
// /metrics

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_each_outcome_with_configuration_labels_only() {
    let ca = TestCa::new();
    let web = Backend::echo("web").await;
    let closed = ClosedPort::new();
    let a_leaf = ca.leaf(&["a.example.com"]);
    let wild_leaf = ca.leaf(&["*.wild.example.com"]);
    let (soon_crt, soon_key, soon_not_after) =
        self_signed_expiring_in("soon.example.com", 5 * 86_400);
    let manifests = Manifests::new();
    let mut objects = vec![
        ingress_class(),
        tls_secret(NS, "a-tls", &a_leaf),
        tls_secret(NS, "wild-tls", &wild_leaf),
        secret(
            NS,
            "soon-tls",
            "kubernetes.io/tls",
            &[("tls.crt", &soon_crt), ("tls.key", &soon_key)],
        ),
        Ingress::new("site")
            .tls(&["a.example.com"], "a-tls")
            .route("a.example.com", "/app", "web")
            .route("a.example.com", "/down", "broken")
            .route("a.example.com", "/empty", "empty")
            .build(),
        Ingress::new("wild")
            .tls(&["*.wild.example.com"], "wild-tls")
            .route("*.wild.example.com", "/", "web")
            .build(),
        Ingress::new("soon")
            .tls(&["soon.example.com"], "soon-tls")
            .route("soon.example.com", "/", "web")
            .build(),
    ];
    objects.extend(service(NS, "web", &[web.port()]));
    objects.extend(service(NS, "broken", &[closed.port]));
    objects.extend(service_with_readiness(NS, "empty", &[web.port()], false));
    manifests.write_objects("site.yaml", &objects);
    let portcullis = Portcullis::start(&manifests, &[]).await;

    // Every string a client chose; none may become a label value.
    let mut chosen: Vec<String> = Vec::new();
    let mut token = || {
        let t = random_token();
        chosen.push(t.clone());
        t
    };
    let mut chosen_later: Vec<String> = Vec::new();
    let a = Tls::h1("a.example.com", &ca);
    let mut handshakes = 0;

    // 200s through a route: GET, POST, and a method nobody configured.
    for _ in 0..3 {
        let reply = tls_exchange(&portcullis, &a, get("a.example.com", &format!("/app/{}", token()))).await;
        assert_eq!(reply.backend(), "web");
        handshakes += 1;
    }
    let post = Request::post(format!("/app/{}", token()))
        .header("host", "a.example.com")
        .body(Full::new(Bytes::from_static(b"x=1")))
        .unwrap();
    assert_eq!(tls_exchange(&portcullis, &a, post).await.backend(), "web");
    handshakes += 1;
    let odd_method = format!("Q{}", token().to_uppercase());
    chosen_later.push(odd_method.clone());
    let odd = Request::builder()
        .method(Method::from_bytes(odd_method.as_bytes()).unwrap())
        .uri("/app")
        .header("host", "a.example.com")
        .body(Full::default())
        .unwrap();
    let reply = tls_exchange(&portcullis, &a, odd).await;
    assert_eq!(reply.json()["method"], odd_method.as_str());
    handshakes += 1;

    // 404 (no rule), 502 (endpoint on a closed port), 503 (no ready endpoint).
    for (prefix, status) in [("/nothing-", 404), ("/down/", 502), ("/empty/", 503)] {
        for _ in 0..2 {
            let path = format!("{prefix}{}", token());
            let reply = tls_exchange(&portcullis, &a, get("a.example.com", &path)).await;
            assert_eq!(reply.status, status, "{path}: {reply:?}");
            handshakes += 1;
        }
    }

    // Hosts nobody configured: under the wildcard (200), unknown (404 on the placeholder
    // certificate), and in the Host header of a connection for another name (421).
    for _ in 0..3 {
        let host = format!("{}.wild.example.com", token());
        let path = format!("/{}", token());
        let reply = tls_exchange(&portcullis, &Tls::h1(&host, &ca), get(&host, &path)).await;
        assert_eq!(reply.backend(), "web");
        handshakes += 1;
    }
    for _ in 0..2 {
        let host = format!("{}.unknown.example.net", token());
        let path = format!("/{}", token());
        let reply = tls_exchange(&portcullis, &Tls::inspect(Some(&host)), get(&host, &path)).await;
        assert_eq!(reply.status, 404, "{reply:?}");
        handshakes += 1;
    }
    let stray = format!("{}.example.org", token());
    let reply = tls_exchange(&portcullis, &a, get(&stray, "/app")).await;
    assert_eq!(reply.status, 421, "{reply:?}");
    handshakes += 1;

    // Failed handshakes: a client that offers only TLS 1.1, and plain HTTP on the TLS port.
    let tcp = TcpStream::connect(portcullis.https).await.expect("connect");
    raw_exchange(tcp, &tls11_client_hello()).await;
    let tcp = TcpStream::connect(portcullis.https).await.expect("connect");
    let garbage = format!("GET /{} HTTP/1.1\r\nHost: {}\r\n\r\n", token(), token());
    raw_exchange(tcp, garbage.as_bytes()).await;

    // Requests are counted when their response body ends, so wait for all of them.
    let total = 17.0;
    let (m, text) = scrape_until(portcullis.admin, "17 requests and 2 failed handshakes", |m| {
        m.sum("portcullis_requests_total", &[]) == total
            && m.sum("portcullis_tls_handshakes_total", &[]) == f64::from(handshakes + 2)
    })
    .await;

    // Every family is ours and has the type it should (families without any series, such
    // as upstream_retries here, are left out of the text, as prometheus-client does).
    for (name, family) in &m.families {
        assert!(name.starts_with("portcullis_"), "{name}");
        assert!(!family.help.is_empty(), "{name} has an empty # HELP");
    }
    for (name, kind) in [
        ("portcullis_requests", "counter"),
        ("portcullis_tls_handshakes", "counter"),
        ("portcullis_upstream_connect_errors", "counter"),
        ("portcullis_snapshot_applies", "counter"),
        ("portcullis_request_duration_seconds", "histogram"),
        ("portcullis_upstream_duration_seconds", "histogram"),
        ("portcullis_translation_duration_seconds", "histogram"),
        ("portcullis_snapshot_hosts", "gauge"),
        ("portcullis_snapshot_routes", "gauge"),
        ("portcullis_snapshot_certificates", "gauge"),
        ("portcullis_snapshot_backends", "gauge"),
        ("portcullis_snapshot_endpoints", "gauge"),
        ("portcullis_certificate_expiry_timestamp_seconds", "gauge"),
        ("portcullis_certificates_expiring_soon", "gauge"),
        ("portcullis_diagnostics", "gauge"),
        ("portcullis_client_connections", "gauge"),
    ] {
        let family = m
            .families
            .get(name)
            .unwrap_or_else(|| panic!("no family {name}:\n{text}"));
        assert_eq!(family.kind, kind, "{name}");
    }

    // Requests, by exactly the label sets they should have.
    let requests: BTreeMap<Vec<String>, f64> = m
        .series("portcullis_requests_total")
        .into_iter()
        .map(|s| (s.labels.values().cloned().collect(), s.value))
        .collect();
    // Labels in key order: ingress, method, service, status.
    let row = |ingress: &str, method: &str, service: &str, status: &str| {
        vec![ingress, method, service, status]
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let expected: BTreeMap<Vec<String>, f64> = [
        (row("shop/site", "GET", "shop/web:80", "2xx"), 3.0),
        (row("shop/site", "POST", "shop/web:80", "2xx"), 1.0),
        (row("shop/site", "OTHER", "shop/web:80", "2xx"), 1.0),
        (row("shop/wild", "GET", "shop/web:80", "2xx"), 3.0),
        (row("", "GET", "", "4xx"), 5.0),
        (row("shop/site", "GET", "shop/broken:80", "5xx"), 2.0),
        (row("shop/site", "GET", "shop/empty:80", "5xx"), 2.0),
    ]
    .into_iter()
    .collect();
    assert_eq!(requests, expected, "{text}");
    assert_eq!(
        m.value("portcullis_request_duration_seconds_count", &[]),
        Some(total)
    );
    // Only the eight requests that reached an upstream have an upstream time.
    assert_eq!(
        m.value("portcullis_upstream_duration_seconds_count", &[]),
        Some(8.0)
    );

    // One connect error per 502 (one endpoint, so no retry), and nothing else.
    assert_eq!(
        m.value(
            "portcullis_upstream_connect_errors_total",
            &[("service", "shop/broken:80")]
        ),
        Some(2.0)
    );
    assert_eq!(m.series("portcullis_upstream_connect_errors_total").len(), 1);
    assert!(m.series("portcullis_upstream_retries_total").is_empty());

    // Handshakes: every successful one is TLS 1.3 with HTTP/1.1; the two failures are
    // counted under outcomes of their own, with empty version, suite and ALPN.
    assert_eq!(
        m.sum("portcullis_tls_handshakes_total", &[("outcome", "ok")]),
        f64::from(handshakes)
    );
    for s in m.series("portcullis_tls_handshakes_total") {
        if s.labels["outcome"] == "ok" {
            assert_eq!(s.labels["version"], "TLSv1.3", "{s:?}");
            assert_eq!(s.labels["alpn"], "http/1.1", "{s:?}");
            assert!(s.labels["cipher_suite"].starts_with("TLS13_"), "{s:?}");
        } else {
            assert_eq!(s.labels["version"], "", "{s:?}");
            assert_eq!(s.labels["cipher_suite"], "", "{s:?}");
        }
    }
    let failures: BTreeMap<String, f64> = m
        .series("portcullis_tls_handshakes_total")
        .into_iter()
        .filter(|s| s.labels["outcome"] != "ok")
        .map(|s| (s.labels["outcome"].clone(), s.value))
        .collect();
    assert_eq!(
        failures,
        BTreeMap::from([
            ("incompatible".to_owned(), 1.0),
            ("invalid_message".to_owned(), 1.0)
        ]),
        "{text}"
    );

    // The snapshot: a.example.com, *.wild.example.com, soon.example.com; five routes;
    // three certificates; web, broken and empty, with one ready endpoint each but empty.
    for (name, value) in [
        ("portcullis_snapshot_applies_total", 1.0),
        ("portcullis_snapshot_hosts", 3.0),
        ("portcullis_snapshot_routes", 5.0),
        ("portcullis_snapshot_certificates", 3.0),
        ("portcullis_snapshot_backends", 3.0),
        ("portcullis_snapshot_endpoints", 2.0),
        ("portcullis_certificates_expiring_soon", 1.0),
    ] {
        assert_eq!(m.value(name, &[]), Some(value), "{name}\n{text}");
    }
    let expiry: BTreeMap<String, f64> = m
        .series("portcullis_certificate_expiry_timestamp_seconds")
        .into_iter()
        .map(|s| (s.labels["secret"].clone(), s.value))
        .collect();
    assert_eq!(
        expiry,
        BTreeMap::from([
            ("shop/a-tls".to_owned(), not_after_unix(&a_leaf.der) as f64),
            ("shop/wild-tls".to_owned(), not_after_unix(&wild_leaf.der) as f64),
            ("shop/soon-tls".to_owned(), soon_not_after as f64),
        ])
    );
    let diagnostics: BTreeMap<String, f64> = m
        .series("portcullis_diagnostics")
        .into_iter()
        .map(|s| (s.labels["reason"].clone(), s.value))
        .collect();
    assert_eq!(
        diagnostics,
        BTreeMap::from([("CertificateExpiringSoon".to_owned(), 1.0)])
    );

    // No label value, and no text anywhere, comes from what the clients sent.
    drop(token);
    for s in chosen.iter().chain(&chosen_later) {
        assert!(!text.contains(s.as_str()), "{s:?} appears in /metrics:\n{text}");
    }
    for host in ["unknown.example.net", "example.org"] {
        assert!(!text.contains(host), "{host} appears in /metrics");
    }

    // Once the clients are gone, no connection is counted as open.
    let (m, _) = scrape_until(portcullis.admin, "no open connections", |m| {
        m.sum("portcullis_client_connections", &[]) == 0.0
    })
    .await;
    assert_eq!(
        m.value("portcullis_client_connections", &[("listener", "https")]),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_refused_by_strict_sni_is_counted_as_a_failure_without_its_name() {
    let ca = TestCa::new();
    let manifests = Manifests::new();
    let web = Backend::echo("web").await;
    let mut objects = vec![
        ingress_class(),
        tls_secret(NS, "a-tls", &ca.leaf(&["a.example.com"])),
        Ingress::new("site")
            .tls(&["a.example.com"], "a-tls")
            .route("a.example.com", "/", "web")
            .build(),
    ];
    objects.extend(service(NS, "web", &[web.port()]));
    manifests.write_objects("site.yaml", &objects);
    let portcullis = Portcullis::start(&manifests, &["--strict-sni"]).await;

    let unknown = format!("{}.example.org", random_token());
    let refused = connect_tls(portcullis.https, &Tls::inspect(Some(&unknown))).await;
    assert!(refused.is_err(), "--strict-sni served {unknown}");
    let reply = https_get(portcullis.https, &ca, "a.example.com", "/").await;
    assert_eq!(reply.backend(), "web");

    let (m, text) = scrape_until(portcullis.admin, "two handshakes", |m| {
        m.sum("portcullis_tls_handshakes_total", &[]) == 2.0
    })
    .await;
    assert_eq!(
        m.sum("portcullis_tls_handshakes_total", &[("outcome", "no_certificate")]),
        1.0,
        "{text}"
    );
    assert_eq!(
        m.sum("portcullis_tls_handshakes_total", &[("outcome", "ok")]),
        1.0
    );
    assert!(!text.contains(&unknown), "{unknown} appears in /metrics");
}

#[test]
fn the_metrics_parser_refuses_what_openmetrics_forbids() {
    let good = "# HELP a_b Things.\n# TYPE a_b counter\na_b_total{x=\"q\\\"\\\\\\n\"} 1.5\n\
                # HELP h Times.\n# TYPE h histogram\nh_sum 3.0\nh_count 2\n\
                h_bucket{le=\"1.0\"} 1\nh_bucket{le=\"+Inf\"} 2\n# EOF\n";
    let parsed = parse_openmetrics(good).expect("the good text parses");
    assert_eq!(parsed.value("a_b_total", &[("x", "q\"\\\n")]), Some(1.5));

    let bad = [
        ("no # EOF", good.replace("# EOF\n", "")),
        ("no # HELP", good.replace("# HELP a_b Things.\n", "")),
        ("no # TYPE", good.replace("# TYPE a_b counter\n", "")),
        ("a bad float", good.replace("1.5", "1,5")),
        ("an odd float", good.replace("1.5", "inf")),
        ("a counter without _total", good.replace("a_b_total", "a_b")),
        ("a gauge with a suffix", good.replace("counter", "gauge")),
        ("a bad escape", good.replace("\\\\\\n", "\\t")),
        ("an unquoted label", good.replace("x=\"q\\\"\\\\\\n\"", "x=q")),
        ("a trailing comma", good.replace("\\n\"}", "\\n\",}")),
        ("a repeated sample", good.replace("h_sum 3.0\n", "h_sum 3.0\nh_sum 3.0\n")),
        ("buckets going down", good.replace("le=\"1.0\"} 1", "le=\"1.0\"} 3")),
        ("+Inf not equal to _count", good.replace("h_count 2", "h_count 5")),
        ("a split family", format!("{}a_b_total{{x=\"z\"}} 1\n# EOF\n", good.replace("# EOF\n", ""))),
        ("text after # EOF", format!("{good}a_b_total 1\n")),
        ("an empty line", good.replace("h_sum 3.0\n", "h_sum 3.0\n\n")),
    ];
    for (what, text) in bad {
        assert!(parse_openmetrics(&text).is_err(), "accepted {what}:\n{text}");
    }
}

// ---------------------------------------------------------------------------------------
// /readyz

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
    // on it until the test writes it: in folder mode that is the only way to hold the
    // process between binding its ports and applying its first snapshot.
    let pipe = manifests.dir().join("zz-secret.yaml");
    make_fifo(&pipe);
    let secret_yaml = yaml_documents(&[tls_secret(NS, "a-tls", &leaf)]);

    let launched = Launched::until_admin_answers(&manifests, &[]).await;
    for _ in 0..10 {
        let status = admin_fetch(launched.admin, "/readyz").await.map(|r| r.status);
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
    let status = admin_fetch(launched.admin, "/readyz").await.map(|r| r.status);
    assert_eq!(status, Some(503));

    // Write the Secret into the pipe; before closing it, put a plain file with the same
    // content in its place, so later reads of the folder do not block.
    let (done, finished) = std::sync::mpsc::channel();
    let replacement = manifests.dir().join(".zz-secret.yaml.tmp");
    let pipe_path = pipe.clone();
    std::thread::spawn(move || {
        let fed = (|| -> std::io::Result<()> {
            use std::io::Write as _;
            let mut writer = std::fs::OpenOptions::new().write(true).open(&pipe_path)?;
            writer.write_all(secret_yaml.as_bytes())?;
            std::fs::write(&replacement, &secret_yaml)?;
            std::fs::rename(&replacement, &pipe_path)?;
            drop(writer);
            Ok(())
        })();
        let _ = done.send(fed);
    });
    let mut fed = None;
    for _ in 0..400 {
        if let Ok(result) = finished.try_recv() {
            fed = Some(result);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    fed.expect("portcullis read the pipe within 10 s")
        .expect("write the Secret into the pipe");

    // Ready now, and the handshake that waited got the Secret's certificate.
    let mut ready = false;
    for _ in 0..400 {
        if admin_fetch(launched.admin, "/readyz").await.map(|r| r.status) == Some(200) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(ready, "not ready after the snapshot could be read");
    let served = bounded(Duration::from_secs(10), "the waiting handshake", handshake)
        .await
        .expect("the handshake task");
    assert_eq!(served, leaf.der, "the waiting handshake got another certificate");
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

// ---------------------------------------------------------------------------------------
// /debug/snapshot

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_snapshot_is_404_without_enable_debug_endpoints() {
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
async fn debug_snapshot_shows_routes_backends_and_certificates_but_never_a_private_key() {
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
        &[("tls.crt", &oneline_leaf.cert_pem), ("tls.key", &oneline_key)],
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
    let wanted: BTreeSet<String> = cases
        .iter()
        .map(|c| format!("{NS}/{}", c.secret))
        .collect();
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
        assert!(issuer.contains("Portcullis integration-test CA"), "{cert:#}");
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
            assert!(!text.contains(marker), "{what} contains {marker:?}:\n{text}");
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

// ---------------------------------------------------------------------------------------
// The access log

/// What one request of the access-log test should log.
struct Sent {
    request_id: String,
    client: String,
    sni: &'static str,
    tls_version: &'static str,
    host: &'static str,
    method: String,
    path: String,
    status: u64,
    bytes_in: u64,
    bytes_out: u64,
    /// Whether it reached the web backend.
    upstream: bool,
    ingress: String,
    service: String,
}

impl Sent {
    /// A GET over TLS 1.3 to a.example.com that reached `web` through `shop/site`.
    fn routed(request_id: String, client: String, path: &str, reply: &Reply) -> Sent {
        Sent {
            request_id,
            client,
            sni: "a.example.com",
            tls_version: "TLSv1.3",
            host: "a.example.com",
            method: "GET".into(),
            path: path.into(),
            status: 200,
            bytes_in: 0,
            bytes_out: reply.body.len() as u64,
            upstream: true,
            ingress: "shop/site".into(),
            service: "shop/web:80".into(),
        }
    }
}

/// The access-log test's folder: a.example.com (TLS) with `/app` to `web` and `/empty`
/// to a Service without ready endpoints; plain.example.com (no TLS) to `web`.
async fn access_log_site(ca: &TestCa) -> (Manifests, Backend) {
    let web = Backend::echo("web").await;
    let manifests = Manifests::new();
    let mut objects = vec![
        ingress_class(),
        tls_secret(NS, "a-tls", &ca.leaf(&["a.example.com"])),
        Ingress::new("site")
            .tls(&["a.example.com"], "a-tls")
            .route("a.example.com", "/app", "web")
            .route("a.example.com", "/empty", "empty")
            .build(),
        Ingress::new("plain")
            .route("plain.example.com", "/", "web")
            .build(),
    ];
    objects.extend(service(NS, "web", &[web.port()]));
    objects.extend(service_with_readiness(NS, "empty", &[web.port()], false));
    manifests.write_objects("site.yaml", &objects);
    (manifests, web)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_access_log_has_one_line_per_request_with_what_happened() {
    let ca = TestCa::new();
    let (manifests, web) = access_log_site(&ca).await;
    let portcullis = Launched::ready(&manifests, &[]).await;
    let mut sent: Vec<Sent> = Vec::new();

    // (method, path as sent, path as logged, body, status, reaches web, ingress, service)
    let h1_cases: [(&str, &str, &str, &'static [u8], u64, bool, &str, &str); 4] = [
        ("GET", "/app/one?token=secret", "/app/one", b"", 200, true, "shop/site", "shop/web:80"),
        ("POST", "/app/form", "/app/form", b"hello=world", 200, true, "shop/site", "shop/web:80"),
        ("GET", "/missing", "/missing", b"", 404, false, "", ""),
        ("GET", "/empty/x", "/empty/x", b"", 503, false, "shop/site", "shop/empty:80"),
    ];
    for (method, path, logged, body, status, upstream, ingress, service) in h1_cases {
        let id = format!("req-{}", random_token());
        let stream = connect_tls(portcullis.https, &Tls::h1("a.example.com", &ca))
            .await
            .expect("handshake");
        let client = stream.get_ref().0.local_addr().expect("local address");
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "a.example.com")
            .header("x-request-id", &id)
            .body(Full::new(Bytes::from_static(body)))
            .unwrap();
        let reply = H1::over(stream).await.send(req).await;
        assert_eq!(u64::from(reply.status), status, "{path}: {reply:?}");
        sent.push(Sent {
            request_id: id,
            client: client.to_string(),
            sni: "a.example.com",
            tls_version: "TLSv1.3",
            host: "a.example.com",
            method: method.into(),
            path: logged.into(),
            status,
            bytes_in: body.len() as u64,
            bytes_out: reply.body.len() as u64,
            upstream,
            ingress: ingress.into(),
            service: service.into(),
        });
    }

    // A dot-segment path is logged as it was routed: normalised.
    let id = format!("req-{}", random_token());
    let stream = connect_tls(portcullis.https, &Tls::h1("a.example.com", &ca))
        .await
        .expect("handshake");
    let client = stream.get_ref().0.local_addr().expect("local address");
    let req = request("a.example.com", "/app/./x/../four")
        .header("x-request-id", &id)
        .body(Full::default())
        .unwrap();
    let reply = H1::over(stream).await.send(req).await;
    assert_eq!(reply.json()["path"], "/app/four");
    sent.push(Sent::routed(id, client.to_string(), "/app/four", &reply));

    // HTTP/2: the host comes from :authority.
    let id = format!("req-{}", random_token());
    let stream = connect_tls(portcullis.https, &Tls::h2("a.example.com", &ca))
        .await
        .expect("handshake");
    let client = stream.get_ref().0.local_addr().expect("local address");
    let req = Request::get("https://a.example.com/app/two")
        .header("x-request-id", &id)
        .body(Full::default())
        .unwrap();
    let reply = H2::over(stream).await.send(req).await;
    assert_eq!(reply.backend(), "web");
    sent.push(Sent::routed(id, client.to_string(), "/app/two", &reply));

    // TLS 1.2.
    let id = format!("req-{}", random_token());
    let stream = connect_tls12(portcullis.https, "a.example.com", &ca)
        .await
        .expect("a TLS 1.2 handshake");
    let client = stream.get_ref().0.local_addr().expect("local address");
    let req = request("a.example.com", "/app/three")
        .header("x-request-id", &id)
        .body(Full::default())
        .unwrap();
    let reply = H1::over(stream).await.send(req).await;
    assert_eq!(reply.backend(), "web");
    sent.push(Sent {
        tls_version: "TLSv1.2",
        ..Sent::routed(id, client.to_string(), "/app/three", &reply)
    });

    // Plain HTTP: no SNI, no TLS version.
    let id = format!("req-{}", random_token());
    let tcp = TcpStream::connect(portcullis.http).await.expect("connect");
    let client = tcp.local_addr().expect("local address");
    let req = request("plain.example.com", "/plain")
        .header("x-request-id", &id)
        .body(Full::default())
        .unwrap();
    let reply = H1::over(tcp).await.send(req).await;
    assert_eq!(reply.backend(), "web");
    sent.push(Sent {
        sni: "",
        tls_version: "",
        host: "plain.example.com",
        ingress: "shop/plain".into(),
        ..Sent::routed(id, client.to_string(), "/plain", &reply)
    });

    // Without an X-Request-ID, or with one we do not pass on, the id that is logged is the
    // one the backend got.
    for client_id in [None, Some("not \"a\" valid id")] {
        let stream = connect_tls(portcullis.https, &Tls::h1("a.example.com", &ca))
            .await
            .expect("handshake");
        let client = stream.get_ref().0.local_addr().expect("local address");
        let mut req = request("a.example.com", "/app/generated");
        if let Some(id) = client_id {
            req = req.header("x-request-id", id);
        }
        let reply = H1::over(stream)
            .await
            .send(req.body(Full::default()).unwrap())
            .await;
        let seen = seen_header(&reply.json(), "x-request-id");
        assert_eq!(seen.len(), 1, "{reply:?}");
        assert_ne!(Some(seen[0].as_str()), client_id);
        sent.push(Sent::routed(
            seen[0].clone(),
            client.to_string(),
            "/app/generated",
            &reply,
        ));
    }

    // Exactly one line per request: wait for them, and for the metrics to have counted
    // every request as finished, then count again.
    let n = sent.len();
    eventually(
        &format!("{n} access-log lines"),
        Duration::from_secs(10),
        || access_lines(&portcullis.stderr()).len() >= n,
    )
    .await;
    scrape_until(portcullis.admin, "every request finished", |m| {
        m.sum("portcullis_requests_total", &[]) == n as f64
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stderr = portcullis.stderr();
    let lines = access_lines(&stderr);
    assert_eq!(lines.len(), n, "access-log lines:\n{stderr}");

    // One JSON object per line, all on stderr.
    assert_eq!(portcullis.stdout(), "", "nothing goes to stdout");
    for line in stderr.lines() {
        let parsed: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        assert!(parsed.is_object(), "{line}");
    }

    let web_addr = web.addr.to_string();
    for s in &sent {
        let line = lines
            .iter()
            .find(|l| l["request_id"] == s.request_id.as_str())
            .unwrap_or_else(|| panic!("no line for request {}:\n{stderr}", s.request_id));
        let expect = json!({
            "level": "INFO",
            "message": "request",
            "target": "access",
            "client": s.client,
            "sni": s.sni,
            "tls_version": s.tls_version,
            "host": s.host,
            "method": s.method,
            "path": s.path,
            "status": s.status,
            "bytes_in": s.bytes_in,
            "bytes_out": s.bytes_out,
            "upstream": if s.upstream { web_addr.as_str() } else { "" },
            "ingress": s.ingress,
            "service": s.service,
            "request_id": s.request_id,
        });
        for (key, value) in expect.as_object().expect("an object") {
            assert_eq!(&line[key], value, "field {key} of {line}");
        }
        for key in ["duration_ms", "upstream_ms"] {
            let ms = line[key].as_f64().unwrap_or(-1.0);
            assert!(ms >= 0.0, "{key} of {line}");
        }
        assert!(line["timestamp"].is_string(), "{line}");
    }
    assert!(
        !stderr.contains("token=secret"),
        "the query string was logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_off_writes_no_access_lines() {
    let ca = TestCa::new();
    let (manifests, _web) = access_log_site(&ca).await;
    let portcullis = Launched::ready(&manifests, &["--access-log", "off"]).await;

    let reply = https_get(portcullis.https, &ca, "a.example.com", "/app/x").await;
    assert_eq!(reply.backend(), "web");
    let reply = https_get(portcullis.https, &ca, "a.example.com", "/missing").await;
    assert_eq!(reply.status, 404);
    let reply = https_get(portcullis.https, &ca, "a.example.com", "/empty").await;
    assert_eq!(reply.status, 503);
    let reply = http_get(portcullis.http, "plain.example.com", "/").await;
    assert_eq!(reply.backend(), "web");

    // Once the metrics count the four requests as finished, any line would be written.
    scrape_until(portcullis.admin, "four finished requests", |m| {
        m.sum("portcullis_requests_total", &[]) == 4.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stderr = portcullis.stderr();
    assert!(
        stderr.contains("\"listening\""),
        "the process logs at all:\n{stderr}"
    );
    assert_eq!(access_lines(&stderr).len(), 0, "{stderr}");
    assert!(!stderr.contains("/app/x"), "{stderr}");
}

// ---------------------------------------------------------------------------------------
// portcullis explain

#[test]
fn explain_on_a_healthy_folder_exits_0_in_every_mode() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["a.example.com"]);
    let endpoint = ClosedPort::new();
    let manifests = Manifests::new();
    let mut objects = vec![
        ingress_class(),
        tls_secret(NS, "a-tls", &leaf),
        Ingress::new("site")
            .tls(&["a.example.com"], "a-tls")
            .route("a.example.com", "/", "web")
            .route("a.example.com", "/api", "api")
            .build(),
    ];
    objects.extend(service(NS, "web", &[endpoint.port]));
    objects.extend(service(NS, "api", &[endpoint.port]));
    manifests.write_objects("site.yaml", &objects);
    let dir = manifests.dir();
    let sha = fingerprint(&leaf.der);

    // The table.
    let table = explain(dir, &[]);
    assert_eq!(table.code, Some(0), "{table:?}");
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("HOST"), "{}", table.stdout);
    let row = lines
        .iter()
        .find(|l| l.starts_with("a.example.com "))
        .unwrap_or_else(|| panic!("no row for a.example.com:\n{}", table.stdout));
    assert!(row.contains("shop/a-tls"), "{row}");
    assert!(row.trim_end().ends_with(" ok"), "{row}");
    assert!(!table.stdout.contains("problems"), "{}", table.stdout);

    let table = explain(dir, &["--output", "json"]);
    assert_eq!(table.code, Some(0), "{table:?}");
    let reports = table.json();
    let reports = reports.as_array().expect("an array of hosts");
    assert_eq!(reports.len(), 1, "{reports:#?}");
    assert_eq!(reports[0]["host"], "a.example.com");
    assert_eq!(reports[0]["ok"], true);
    assert_eq!(reports[0]["certificate"]["source"], "secret");
    assert_eq!(reports[0]["certificate"]["secret"], "shop/a-tls");
    assert_eq!(reports[0]["problems"], json!([]));

    // One host, then one host and a path.
    let host = explain(dir, &["a.example.com"]);
    assert_eq!(host.code, Some(0), "{host:?}");
    for needle in [
        "Host         a.example.com   ok",
        "Certificate  Secret shop/a-tls   ok",
        &format!("sha256     {sha}"),
    ] {
        assert!(host.stdout.contains(needle), "no {needle:?} in:\n{}", host.stdout);
    }

    let path = explain(dir, &["a.example.com", "/api/orders", "--output", "json"]);
    assert_eq!(path.code, Some(0), "{path:?}");
    let report = path.json();
    assert_eq!(report["ok"], true);
    let certificate = &report["certificate"];
    assert_eq!(certificate["source"], "secret");
    assert_eq!(certificate["secret"], "shop/a-tls");
    assert_eq!(certificate["ok"], true);
    assert_eq!(certificate["why"], json!([]));
    assert_eq!(certificate["info"]["dns_names"], json!(["a.example.com"]));
    assert_eq!(certificate["info"]["sha256_fingerprint"], sha.as_str());
    assert_eq!(report["path"]["path"], "/api/orders");
    assert_eq!(report["path"]["ok"], true);
    let route = report["path"]["route"].as_u64().expect("a matching route") as usize;
    assert_eq!(report["routes"][route]["backend"], "shop/api:80");
    assert_eq!(report["problems"], json!([]));
}

/// One host of the certificate-problem folder.
struct Problem {
    host: &'static str,
    reason: &'static str,
    /// Words the explanation must contain.
    says: String,
}

#[test]
fn explain_names_each_certificate_problem_and_exits_1() {
    let ca = TestCa::new();
    let endpoint = ClosedPort::new();
    let manifests = Manifests::new();
    let mut objects = vec![ingress_class()];
    objects.extend(service(NS, "web", &[endpoint.port]));
    let site = |name: &str, host: &str, secret: &str| {
        Ingress::new(name)
            .tls(&[host], secret)
            .route(host, "/", "web")
            .build()
    };
    let pair = |leaf: &Leaf| [("tls.crt", leaf.cert_pem.clone()), ("tls.key", leaf.key_pem.clone())];

    // A Secret that does not exist, and one in another namespace.
    objects.push(site("missing", "missing.example.com", "missing-tls"));
    objects.push(tls_secret(
        "other",
        "elsewhere-tls",
        &ca.leaf(&["elsewhere.example.com"]),
    ));
    objects.push(site("elsewhere", "elsewhere.example.com", "elsewhere-tls"));

    // The wrong type.
    let [crt, key] = pair(&ca.leaf(&["opaque.example.com"]));
    objects.push(secret(NS, "opaque-tls", "Opaque", &[(crt.0, &crt.1), (key.0, &key.1)]));
    objects.push(site("opaque", "opaque.example.com", "opaque-tls"));

    // Bad PEM, a key of another certificate, and a key joined onto one line.
    let good = ca.leaf(&["badpem.example.com"]);
    objects.push(secret(
        NS,
        "badpem-tls",
        "kubernetes.io/tls",
        &[("tls.crt", "this is not a certificate"), ("tls.key", &good.key_pem)],
    ));
    objects.push(site("badpem", "badpem.example.com", "badpem-tls"));
    let mine = ca.leaf(&["wrongkey.example.com"]);
    let other = ca.leaf(&["wrongkey.example.com"]);
    objects.push(secret(
        NS,
        "wrongkey-tls",
        "kubernetes.io/tls",
        &[("tls.crt", &mine.cert_pem), ("tls.key", &other.key_pem)],
    ));
    objects.push(site("wrongkey", "wrongkey.example.com", "wrongkey-tls"));
    let oneline = ca.leaf(&["oneline.example.com"]);
    let joined = oneline.key_pem.trim().replace('\n', " ");
    objects.push(secret(
        NS,
        "oneline-tls",
        "kubernetes.io/tls",
        &[("tls.crt", &oneline.cert_pem), ("tls.key", &joined)],
    ));
    objects.push(site("oneline", "oneline.example.com", "oneline-tls"));

    // Expired, and not covering the host.
    objects.push(tls_secret(
        NS,
        "expired-tls",
        &ca.expired_leaf(&["expired.example.com"]),
    ));
    objects.push(site("expired", "expired.example.com", "expired-tls"));
    objects.push(tls_secret(
        NS,
        "uncovered-tls",
        &ca.leaf(&["other.example.com"]),
    ));
    objects.push(site("uncovered", "uncovered.example.com", "uncovered-tls"));

    // And one good host among them.
    objects.push(tls_secret(NS, "good-tls", &ca.leaf(&["good.example.com"])));
    objects.push(site("good", "good.example.com", "good-tls"));
    manifests.write_objects("problems.yaml", &objects);
    let dir = manifests.dir();

    let problems = [
        Problem {
            host: "missing.example.com",
            reason: "SecretNotFound",
            says: "Secret shop/missing-tls does not exist".into(),
        },
        Problem {
            host: "elsewhere.example.com",
            reason: "SecretNotFound",
            says: "a Secret named elsewhere-tls exists in namespace other".into(),
        },
        Problem {
            host: "opaque.example.com",
            reason: "SecretWrongType",
            says: "has type Opaque, not kubernetes.io/tls".into(),
        },
        Problem {
            host: "badpem.example.com",
            reason: "InvalidCertificate",
            says: "tls.crt holds no PEM CERTIFICATE block".into(),
        },
        Problem {
            host: "wrongkey.example.com",
            reason: "InvalidCertificate",
            says: "does not belong to the certificate".into(),
        },
        Problem {
            host: "oneline.example.com",
            reason: "InvalidCertificate",
            says: "tls.key is not valid PEM".into(),
        },
        Problem {
            host: "expired.example.com",
            reason: "CertificateExpired",
            says: "expired".into(),
        },
        Problem {
            host: "uncovered.example.com",
            reason: "CertificateHostMismatch",
            says: "covers other.example.com, not uncovered.example.com".into(),
        },
    ];

    for p in &problems {
        let text = explain(dir, &[p.host]);
        assert_eq!(text.code, Some(1), "{}: {text:?}", p.host);
        for needle in [
            format!("Host         {}   PROBLEM", p.host),
            "the generated placeholder".to_owned(),
            p.reason.to_owned(),
            p.says.clone(),
        ] {
            assert!(
                text.stdout.contains(&needle),
                "{}: no {needle:?} in:\n{}",
                p.host,
                text.stdout
            );
        }

        let json = explain(dir, &[p.host, "--output", "json"]);
        assert_eq!(json.code, Some(1), "{}: {json:?}", p.host);
        let report = json.json();
        assert_eq!(report["ok"], false, "{report:#}");
        assert_eq!(report["certificate"]["source"], "placeholder", "{report:#}");
        assert_eq!(report["certificate"]["ok"], false, "{report:#}");
        let reasons: Vec<&str> = report["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .filter_map(|d| d["reason"].as_str())
            .collect();
        assert_eq!(reasons, [p.reason], "{}: {report:#}", p.host);
        let why = report["certificate"]["why"].to_string();
        assert!(why.contains(&p.says), "{}: why is {why}", p.host);
    }

    // The good host is fine on its own, whatever its neighbours do.
    let good_host = explain(dir, &["good.example.com", "--output", "json"]);
    assert_eq!(good_host.code, Some(0), "{good_host:?}");
    assert_eq!(good_host.json()["certificate"]["secret"], "shop/good-tls");

    // The table shows every problem on its host's row, and exits 1.
    let table = explain(dir, &[]);
    assert_eq!(table.code, Some(1), "{table:?}");
    let row = |host: &str| -> String {
        table
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{host} ")))
            .unwrap_or_else(|| panic!("no row for {host}:\n{}", table.stdout))
            .to_owned()
    };
    for p in &problems {
        let row = row(p.host);
        assert!(row.contains("placeholder"), "{row}");
        assert!(row.trim_end().ends_with(p.reason), "{row}");
    }
    assert!(row("good.example.com").trim_end().ends_with(" ok"));

    let table = explain(dir, &["--output", "json"]);
    assert_eq!(table.code, Some(1), "{table:?}");
    let reports = table.json();
    for p in &problems {
        let report = reports
            .as_array()
            .expect("an array")
            .iter()
            .find(|r| r["host"] == p.host)
            .unwrap_or_else(|| panic!("no report for {}", p.host));
        assert_eq!(report["problems"][0]["reason"], p.reason, "{report:#}");
        assert_eq!(report["certificate"]["source"], "placeholder");
    }

    // The key on one line is never quoted back, in any output.
    for run in [
        explain(dir, &[]),
        explain(dir, &["--output", "json"]),
        explain(dir, &["oneline.example.com"]),
        explain(dir, &["oneline.example.com", "--output", "json"]),
    ] {
        for trace in key_traces(&oneline.key_pem) {
            assert!(!run.stdout.contains(&trace), "explain printed key material:\n{}", run.stdout);
        }
        assert!(!run.stdout.contains("PRIVATE KEY"), "{}", run.stdout);
    }
}

#[test]
fn explain_exits_2_on_a_missing_folder_or_a_bad_host() {
    let manifests = Manifests::new();
    let missing = manifests.scratch().join("no-such-folder");
    let ran = explain(&missing, &[]);
    assert_eq!(ran.code, Some(2), "{ran:?}");
    assert!(ran.stderr.contains("no-such-folder"), "{ran:?}");
    assert_eq!(ran.stderr.trim_end().lines().count(), 1, "{ran:?}");

    manifests.write_objects("site.yaml", &[ingress_class()]);
    let ran = explain(manifests.dir(), &["not a host!"]);
    assert_eq!(ran.code, Some(2), "{ran:?}");
    assert!(ran.stderr.contains("not a host!"), "{ran:?}");

    let ran = run_portcullis(&["explain", "--output", "yaml"]);
    assert_eq!(ran.code, Some(2), "{ran:?}");
}
