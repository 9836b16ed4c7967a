//! `/metrics` after a scripted set of requests: valid OpenMetrics text, each counter moved
//! by exactly what was sent (requests by Ingress, Service, method and status; handshakes
//! by outcome; upstream connect errors), the snapshot and certificate gauges, and no
//! string a client chose anywhere in it.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use tokio::net::TcpStream;

use crate::observability_support::openmetrics::parse_openmetrics;
use crate::observability_support::{
    get, not_after_unix, random_token, scrape, scrape_until, self_signed_expiring_in, tls_exchange,
    tls11_client_hello,
};
use crate::support::backend::{Backend, ClosedPort};
use crate::support::client::{Tls, connect_tls, https_get, raw_exchange};
use crate::support::manifests::{
    Ingress, Manifests, NS, ingress_class, secret, service, service_with_readiness, tls_secret,
};
use crate::support::pki::{Leaf, TestCa};
use crate::support::process::Portcullis;

/// The metrics test's folder:
/// - a.example.com: `/app` to `web`, `/down` to `broken` (an endpoint on a closed port),
///   `/empty` to `empty` (no ready endpoint), all from Ingress `site`;
/// - `*.wild.example.com` to `web` from Ingress `wild`;
/// - soon.example.com, whose self-signed certificate expires in five days.
struct MetricsSite {
    ca: TestCa,
    manifests: Manifests,
    a_leaf: Leaf,
    wild_leaf: Leaf,
    soon_not_after: i64,
    _web: Backend,
    _closed: ClosedPort,
}

async fn metrics_site() -> MetricsSite {
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
    MetricsSite {
        ca,
        manifests,
        a_leaf,
        wild_leaf,
        soon_not_after,
        _web: web,
        _closed: closed,
    }
}

/// What the scripted traffic did: its successful handshakes, and every string a client
/// chose (lower case), none of which may show up in `/metrics`.
struct Traffic {
    handshakes: u32,
    chosen: Vec<String>,
}

/// 17 requests on 17 connections (8 to a backend, 4 proxy 4xx, 2 each of 502 and 503),
/// and two failed handshakes.
async fn scripted_traffic(portcullis: &Portcullis, ca: &TestCa) -> Traffic {
    let mut chosen: Vec<String> = Vec::new();
    let mut token = || {
        let t = random_token();
        chosen.push(t.clone());
        t
    };
    let a = Tls::h1("a.example.com", ca);
    let mut handshakes = 0;

    // 200s through a route: GET, POST, and a method nobody configured.
    for _ in 0..3 {
        let path = format!("/app/{}", token());
        let reply = tls_exchange(portcullis, &a, get("a.example.com", &path)).await;
        assert_eq!(reply.backend(), "web");
        handshakes += 1;
    }
    let post = Request::post(format!("/app/{}", token()))
        .header("host", "a.example.com")
        .body(Full::new(Bytes::from_static(b"x=1")))
        .unwrap();
    assert_eq!(tls_exchange(portcullis, &a, post).await.backend(), "web");
    handshakes += 1;
    let odd_method = format!("Q{}", token().to_uppercase());
    let odd = Request::builder()
        .method(Method::from_bytes(odd_method.as_bytes()).unwrap())
        .uri("/app")
        .header("host", "a.example.com")
        .body(Full::default())
        .unwrap();
    let reply = tls_exchange(portcullis, &a, odd).await;
    assert_eq!(reply.json()["method"], odd_method.as_str());
    handshakes += 1;

    // 404 (no rule), 502 (endpoint on a closed port), 503 (no ready endpoint).
    for (prefix, status) in [("/nothing-", 404), ("/down/", 502), ("/empty/", 503)] {
        for _ in 0..2 {
            let path = format!("{prefix}{}", token());
            let reply = tls_exchange(portcullis, &a, get("a.example.com", &path)).await;
            assert_eq!(reply.status, status, "{path}: {reply:?}");
            handshakes += 1;
        }
    }

    // Hosts nobody configured: under the wildcard (200), unknown (404 on the placeholder
    // certificate), and in the Host header of a connection for another name (421).
    for _ in 0..3 {
        let host = format!("{}.wild.example.com", token());
        let path = format!("/{}", token());
        let reply = tls_exchange(portcullis, &Tls::h1(&host, ca), get(&host, &path)).await;
        assert_eq!(reply.backend(), "web");
        handshakes += 1;
    }
    for _ in 0..2 {
        let host = format!("{}.unknown.example.net", token());
        let path = format!("/{}", token());
        let reply = tls_exchange(portcullis, &Tls::inspect(Some(&host)), get(&host, &path)).await;
        assert_eq!(reply.status, 404, "{reply:?}");
        handshakes += 1;
    }
    let stray = format!("{}.example.org", token());
    let reply = tls_exchange(portcullis, &a, get(&stray, "/app")).await;
    assert_eq!(reply.status, 421, "{reply:?}");
    handshakes += 1;

    // Failed handshakes: a client that offers only TLS 1.1, and plain HTTP on the TLS port.
    let tcp = TcpStream::connect(portcullis.https).await.expect("connect");
    raw_exchange(tcp, &tls11_client_hello()).await;
    let tcp = TcpStream::connect(portcullis.https).await.expect("connect");
    let garbage = format!("GET /{} HTTP/1.1\r\nHost: {}\r\n\r\n", token(), token());
    raw_exchange(tcp, garbage.as_bytes()).await;

    Traffic { handshakes, chosen }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_outcome_is_counted_with_configuration_labels_only() {
    let site = metrics_site().await;
    let portcullis = Portcullis::start(&site.manifests, &[]).await;
    let Traffic { handshakes, chosen } = scripted_traffic(&portcullis, &site.ca).await;

    // Requests are counted when their response body ends, so wait for all of them.
    let total = 17.0;
    let (m, text) = scrape_until(
        portcullis.admin,
        "17 requests and 2 failed handshakes",
        |m| {
            m.sum("portcullis_requests_total", &[]) == total
                && m.sum("portcullis_tls_handshakes_total", &[]) == f64::from(handshakes + 2)
        },
    )
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
    assert_eq!(
        m.series("portcullis_upstream_connect_errors_total").len(),
        1
    );
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

    // The snapshot: three hosts, five routes, three certificates, and three backends (web,
    // broken, empty) with two ready endpoints between them; one certificate expires soon.
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
            (
                "shop/a-tls".to_owned(),
                not_after_unix(&site.a_leaf.der) as f64
            ),
            (
                "shop/wild-tls".to_owned(),
                not_after_unix(&site.wild_leaf.der) as f64
            ),
            ("shop/soon-tls".to_owned(), site.soon_not_after as f64),
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

    // No label value, and no text anywhere, comes from what the clients sent (the odd
    // method is a token in upper case, hence the lower-case search).
    let lower = text.to_lowercase();
    for s in &chosen {
        assert!(
            !lower.contains(s.as_str()),
            "{s:?} appears in /metrics:\n{text}"
        );
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
        m.sum(
            "portcullis_tls_handshakes_total",
            &[("outcome", "no_certificate")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        m.sum("portcullis_tls_handshakes_total", &[("outcome", "ok")]),
        1.0
    );
    assert!(!text.contains(&unknown), "{unknown} appears in /metrics");
}

/// Reading the folder is not a change to it: a process left alone translates once, while
/// handshakes and requests come in, and again only when a file is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_folder_is_translated_once_and_again_only_when_a_file_changes() {
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
    let portcullis = Portcullis::start(&manifests, &[]).await;
    let translations = |m: &crate::observability_support::openmetrics::Exposition| {
        m.value("portcullis_translation_duration_seconds_count", &[])
    };

    let (first, _) = scrape(portcullis.admin).await;
    assert_eq!(translations(&first), Some(1.0));
    // Longer than the folder's settling time many times over, and traffic meanwhile.
    for _ in 0..5 {
        let reply = https_get(portcullis.https, &ca, "a.example.com", "/").await;
        assert_eq!(reply.backend(), "web");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (idle, text) = scrape(portcullis.admin).await;
    assert_eq!(
        translations(&idle),
        Some(1.0),
        "the folder was translated again with no file written:\n{text}"
    );

    // A write is a change: one more translation (at least; editors write in bursts).
    objects.push(
        Ingress::new("more")
            .route("b.example.com", "/", "web")
            .build(),
    );
    manifests.write_objects("site.yaml", &objects);
    scrape_until(portcullis.admin, "a second translation", |m| {
        translations(m).is_some_and(|n| n >= 2.0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (changed, _) = scrape(portcullis.admin).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (settled, text) = scrape(portcullis.admin).await;
    assert_eq!(
        translations(&settled),
        translations(&changed),
        "the folder kept being translated after one write:\n{text}"
    );
}

#[test]
fn the_parser_refuses_what_openmetrics_forbids() {
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
        (
            "an unquoted label",
            good.replace("x=\"q\\\"\\\\\\n\"", "x=q"),
        ),
        ("a trailing comma", good.replace("\\n\"}", "\\n\",}")),
        (
            "a repeated sample",
            good.replace("h_sum 3.0\n", "h_sum 3.0\nh_sum 3.0\n"),
        ),
        (
            "buckets going down",
            good.replace("le=\"1.0\"} 1", "le=\"1.0\"} 3"),
        ),
        (
            "+Inf not equal to _count",
            good.replace("h_count 2", "h_count 5"),
        ),
        (
            "a split family",
            format!(
                "{}a_b_total{{x=\"z\"}} 1\n# EOF\n",
                good.replace("# EOF\n", "")
            ),
        ),
        ("text after # EOF", format!("{good}a_b_total 1\n")),
        (
            "an empty line",
            good.replace("h_sum 3.0\n", "h_sum 3.0\n\n"),
        ),
    ];
    for (what, text) in bad {
        assert!(
            parse_openmetrics(&text).is_err(),
            "accepted {what}:\n{text}"
        );
    }
}
