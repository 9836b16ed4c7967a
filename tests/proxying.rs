//! Requests through the proxy: HTTP/1.1 and HTTP/2 (our client and curl), the plain-HTTP
//! listener (308 to https, ACME challenges, the ssl-redirect annotation, hosts without
//! TLS), the answers the proxy makes itself (404, 502, 503, 504) and the default backend,
//! the forwarding headers, path normalisation, WebSockets, and endpoint choice (round
//! robin, and a failed connect retried on the other endpoint).

mod support;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use support::backend::{Backend, ClosedPort, EchoProcess};
use support::client::{
    H1, H2, Reply, Tls, alpn_of, bounded, connect_tls, curl, http_get, https_get, request,
    seen_header,
};
use support::manifests::{
    Ingress, Manifests, NS, ingress_class, service, service_with_readiness, tls_secret,
};
use support::pki::TestCa;
use support::process::Portcullis;
use tokio_tungstenite::tungstenite::Message;

/// The hosts every test here can use:
/// - a.example.com (TLS): `/` to `web`, `/b` (Exact) to `bee`;
/// - open.example.com (TLS, `ssl-redirect: "false"`) and plain.example.com (no TLS) to `web`;
/// - api.example.com (no TLS): only `/api`, to `web`;
/// - gone.example.com: an endpoint on a closed port; down.example.com: no ready endpoint;
///   slow.example.com: a backend that answers after 3 s;
/// - pair.example.com: two endpoints, `one` and `two`;
/// - half.example.com: a closed port and `alive`.
struct Setup {
    ca: TestCa,
    manifests: Manifests,
    _backends: Vec<Backend>,
    _closed: [ClosedPort; 2],
}

async fn setup() -> Setup {
    let ca = TestCa::new();
    let manifests = Manifests::new();
    let web = Backend::echo("web").await;
    let bee = Backend::echo("bee").await;
    let slow = Backend::slow("slow", Duration::from_secs(3)).await;
    let one = Backend::echo("one").await;
    let two = Backend::echo("two").await;
    let alive = Backend::echo("alive").await;

    let mut objects = vec![
        ingress_class(),
        tls_secret(NS, "a-tls", &ca.leaf(&["a.example.com"])),
        tls_secret(NS, "open-tls", &ca.leaf(&["open.example.com"])),
        Ingress::new("main")
            .tls(&["a.example.com"], "a-tls")
            .route("a.example.com", "/", "web")
            .exact("a.example.com", "/b", "bee")
            .route("plain.example.com", "/", "web")
            .route("api.example.com", "/api", "web")
            .route("gone.example.com", "/", "gone")
            .route("down.example.com", "/", "down")
            .route("slow.example.com", "/", "slow")
            .route("pair.example.com", "/", "pair")
            .route("half.example.com", "/", "half")
            .build(),
        Ingress::new("open")
            .annotation("portcullis.dev/ssl-redirect", "false")
            .tls(&["open.example.com"], "open-tls")
            .route("open.example.com", "/", "web")
            .build(),
    ];
    objects.extend(service(NS, "web", &[web.port()]));
    objects.extend(service(NS, "bee", &[bee.port()]));
    let closed = [ClosedPort::new(), ClosedPort::new()];
    objects.extend(service(NS, "gone", &[closed[0].port]));
    objects.extend(service_with_readiness(NS, "down", &[web.port()], false));
    objects.extend(service(NS, "slow", &[slow.port()]));
    objects.extend(service(NS, "pair", &[one.port(), two.port()]));
    objects.extend(service(NS, "half", &[closed[1].port, alive.port()]));
    manifests.write_objects("main.yaml", &objects);
    Setup {
        ca,
        manifests,
        _backends: vec![web, bee, slow, one, two, alive],
        _closed: closed,
    }
}

/// An answer the proxy made itself: this status, and a short plain-text body saying so.
fn assert_proxy_answer(reply: &Reply, status: u16) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8"),
        "{reply:?}"
    );
    assert!(
        reply.body.starts_with(&format!("{status} ")) && reply.body.len() < 200,
        "{reply:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_http2_are_both_proxied() {
    let setup = setup().await;
    let portcullis = Portcullis::start(&setup.manifests, &[]).await;

    let stream = connect_tls(portcullis.https, &Tls::h1("a.example.com", &setup.ca))
        .await
        .expect("handshake");
    assert_eq!(alpn_of(&stream).as_deref(), Some("http/1.1"));
    let reply = H1::over(stream).await.get("a.example.com", "/one").await;
    assert_eq!(reply.backend(), "web");
    assert_eq!(reply.json()["path"], "/one");

    let stream = connect_tls(portcullis.https, &Tls::h2("a.example.com", &setup.ca))
        .await
        .expect("handshake");
    assert_eq!(alpn_of(&stream).as_deref(), Some("h2"));
    let mut h2 = H2::over(stream).await;
    for path in ["/two", "/three?x=1"] {
        let reply = h2.get("a.example.com", path).await;
        let echoed = reply.json();
        assert_eq!(reply.backend(), "web");
        assert_eq!(echoed["path"], path);
        // The upstream hop is HTTP/1.1 with a Host header made from :authority.
        assert_eq!(echoed["version"], "HTTP/1.1");
        assert_eq!(seen_header(&echoed, "host"), ["a.example.com"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_gets_answers_over_http2_and_http1_1() {
    let setup = setup().await;
    let portcullis = Portcullis::start(&setup.manifests, &[]).await;
    let ca_file = setup.manifests.scratch().join("ca.pem");
    std::fs::write(&ca_file, &setup.ca.pem).expect("write the CA file");
    let port = portcullis.https.port();
    let resolve = format!("a.example.com:{port}:127.0.0.1");
    let url = format!("https://a.example.com:{port}/curl?via=curl");

    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let output = curl(&[
            flag,
            "--resolve",
            &resolve,
            "--cacert",
            ca_file.to_str().unwrap(),
            "--write-out",
            "\n%{http_version} %{http_code}",
            &url,
        ])
        .await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "curl {flag} failed: {}{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        let (body, summary) = stdout.rsplit_once('\n').expect("curl's summary line");
        assert_eq!(summary, format!("{version} 200"), "curl {flag}");
        let echoed: Value = serde_json::from_str(body).expect("the backend's JSON");
        assert_eq!(echoed["backend"], "web");
        assert_eq!(echoed["path"], "/curl?via=curl");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_a_tls_host_gets_308_to_its_https_url() {
    let setup = setup().await;
    let portcullis = Portcullis::start(&setup.manifests, &[]).await;

    let reply = http_get(portcullis.http, "A.Example.com", "/cart/items?id=7&x=y").await;
    assert_proxy_answer(&reply, 308);
    let port = portcullis.https.port();
    assert_eq!(
        reply.header("location").map(str::to_owned),
        Some(format!("https://a.example.com:{port}/cart/items?id=7&x=y"))
    );

    // Whichever route the path takes: here the Exact `/b`, normalised first.
    let reply = http_get(portcullis.http, "a.example.com", "/x/../b").await;
    assert_eq!(reply.status, 308);
    assert_eq!(
        reply.header("location").map(str::to_owned),
        Some(format!("https://a.example.com:{port}/b"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_leave_out_the_port_when_it_is_443() {
    let setup = setup().await;
    let portcullis = Portcullis::start(&setup.manifests, &["--redirect-https-port", "443"]).await;

    let reply = http_get(portcullis.http, "a.example.com", "/x").await;
    assert_eq!(reply.status, 308);
    assert_eq!(reply.header("location"), Some("https://a.example.com/x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_challenges_on_a_tls_host_are_routed_not_redirected() {
    let setup = setup().await;
    let portcullis = Portcullis::start(&setup.manifests, &[]).await;

    let path = "/.well-known/acme-challenge/token-123";
    let reply = http_get(portcullis.http, "a.example.com", path).await;
    assert_eq!(reply.backend(), "web");
    let echoed = reply.json();
    assert_eq!(echoed["path"], path);
    assert_eq!(seen_header(&echoed, "x-forwarded-proto"), ["http"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ssl_redirect_annotation_set_to_false_turns_the_redirect_off() {
    let setup = setup().await;
    let portcullis = Portcullis::start(&setup.manifests, &[]).await;

    let reply = http_get(portcullis.http, "open.example.com", "/page").await;
    assert_eq!(reply.backend(), "web");
    // HTTPS still works for that host.
    assert_eq!(
        https_get(portcullis.https, &setup.ca, "open.example.com", "/page")
            .await
            .backend(),
        "web"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_without_tls_is_served_on_plain_http() {
    let setup = setup().await;
    let portcullis = Portcullis::start(&setup.manifests, &[]).await;

    let reply = http_get(portcullis.http, "plain.example.com", "/hello?q=1").await;
    assert_eq!(reply.backend(), "web");
    let echoed = reply.json();
    assert_eq!(echoed["path"], "/hello?q=1");
    assert_eq!(seen_header(&echoed, "x-forwarded-proto"), ["http"]);
    assert_eq!(
        seen_header(&echoed, "x-forwarded-port"),
        [portcullis.http.port().to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_matching_no_rule_gets_404_without_a_default_backend() {
    let setup = setup().await;
    let portcullis = Portcullis::start(&setup.manifests, &[]).await;

    // An unknown host, on plain HTTP and on HTTPS (placeholder certificate, no SNI).
    assert_proxy_answer(
        &http_get(portcullis.http, "nobody.example.net", "/").await,
        404,
    );
    let stream = connect_tls(portcullis.https, &Tls::inspect(None))
        .await
        .expect("handshake without SNI");
    assert_proxy_answer(
        &H1::over(stream).await.get("nobody.example.net", "/").await,
        404,
    );
    // A known host whose rules do not match the path.
    assert_proxy_answer(
        &http_get(portcullis.http, "api.example.com", "/other").await,
        404,
    );
    assert_eq!(
        http_get(portcullis.http, "api.example.com", "/api/x")
            .await
            .backend(),
        "web"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_matching_no_rule_goes_to_the_default_backend_when_one_is_set() {
    let setup = setup().await;
    let fallback = Backend::echo("fallback").await;
    let mut objects = vec![Ingress::new("fallback").default_backend("fallback").build()];
    objects.extend(service(NS, "fallback", &[fallback.port()]));
    setup.manifests.write_objects("fallback.yaml", &objects);
    let portcullis = Portcullis::start(&setup.manifests, &[]).await;

    let reply = http_get(portcullis.http, "nobody.example.net", "/anything").await;
    assert_eq!(reply.backend(), "fallback");
    assert_eq!(reply.json()["path"], "/anything");
    // Hosts with rules keep them; their paths that match no rule go to the default too.
    assert_eq!(
        http_get(portcullis.http, "plain.example.com", "/")
            .await
            .backend(),
        "web"
    );
    assert_eq!(
        http_get(portcullis.http, "api.example.com", "/other")
            .await
            .backend(),
        "fallback"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_on_a_closed_port_gets_502() {
    let setup = setup().await;
    let portcullis = Portcullis::start(&setup.manifests, &[]).await;

    assert_proxy_answer(
        &http_get(portcullis.http, "gone.example.com", "/").await,
        502,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_ready_endpoints_gets_503() {
    let setup = setup().await;
    let portcullis = Portcullis::start(&setup.manifests, &[]).await;

    assert_proxy_answer(
        &http_get(portcullis.http, "down.example.com", "/").await,
        503,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_slower_than_the_upstream_response_timeout_gets_504() {
    let setup = setup().await;
    let portcullis =
        Portcullis::start(&setup.manifests, &["--upstream-response-timeout", "1s"]).await;

    assert_proxy_answer(
        &http_get(portcullis.http, "slow.example.com", "/").await,
        504,
    );
}

/// GET / on a.example.com over TLS with `headers`; what the backend saw.
async fn echoed_with_headers(
    portcullis: &Portcullis,
    ca: &TestCa,
    headers: &[(&str, &str)],
) -> Value {
    let stream = connect_tls(portcullis.https, &Tls::h1("a.example.com", ca))
        .await
        .expect("handshake");
    let mut builder = request("a.example.com", "/headers");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let reply = H1::over(stream)
        .await
        .send(builder.body(Default::default()).unwrap())
        .await;
    assert_eq!(reply.backend(), "web");
    reply.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_are_ours_and_hop_by_hop_headers_are_removed() {
    let setup = setup().await;
    let portcullis = Portcullis::start(&setup.manifests, &[]).await;

    let echoed = echoed_with_headers(
        &portcullis,
        &setup.ca,
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "gopher"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-port", "1"),
            ("x-real-ip", "203.0.113.9"),
            // A client cannot make us drop a header we set by naming it in Connection.
            (
                "connection",
                "keep-alive, x-drop-me, x-forwarded-proto, x-real-ip",
            ),
            ("x-drop-me", "secret"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("x-kept", "yes"),
        ],
    )
    .await;

    let port = portcullis.https.port().to_string();
    for (name, want) in [
        ("x-forwarded-for", "127.0.0.1"),
        ("x-real-ip", "127.0.0.1"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "a.example.com"),
        ("x-forwarded-port", port.as_str()),
        ("host", "a.example.com"),
        ("x-kept", "yes"),
    ] {
        assert_eq!(seen_header(&echoed, name), [want], "{name}: {echoed}");
    }
    for gone in [
        "x-drop-me",
        "keep-alive",
        "te",
        "proxy-connection",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(
            seen_header(&echoed, gone).is_empty(),
            "{gone} reached the backend: {echoed}"
        );
    }
    // The hop-by-hop Connection header itself is not forwarded as the client sent it.
    assert!(
        !seen_header(&echoed, "connection")
            .iter()
            .any(|v| v.contains("x-drop-me")),
        "{echoed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_is_extended_only_when_the_peer_is_a_trusted_proxy() {
    let setup = setup().await;
    let portcullis =
        Portcullis::start(&setup.manifests, &["--trusted-proxies", "127.0.0.0/8"]).await;

    let echoed = echoed_with_headers(
        &portcullis,
        &setup.ca,
        &[("x-forwarded-for", "203.0.113.9, 198.51.100.2")],
    )
    .await;
    assert_eq!(
        seen_header(&echoed, "x-forwarded-for"),
        ["203.0.113.9, 198.51.100.2, 127.0.0.1"]
    );
    // X-Real-IP is the nearest address that is not a trusted proxy.
    assert_eq!(seen_header(&echoed, "x-real-ip"), ["198.51.100.2"]);

    // Without a client XFF, the peer alone.
    let echoed = echoed_with_headers(&portcullis, &setup.ca, &[]).await;
    assert_eq!(seen_header(&echoed, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen_header(&echoed, "x-real-ip"), ["127.0.0.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_request_id_is_kept_when_valid_and_generated_otherwise() {
    let setup = setup().await;
    let portcullis = Portcullis::start(&setup.manifests, &[]).await;

    let kept =
        echoed_with_headers(&portcullis, &setup.ca, &[("x-request-id", "req-42.a_b:c")]).await;
    assert_eq!(seen_header(&kept, "x-request-id"), ["req-42.a_b:c"]);

    let is_uuid = |id: &str| {
        id.len() == 36
            && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
            && id.matches('-').count() == 4
    };
    let replaced = echoed_with_headers(
        &portcullis,
        &setup.ca,
        &[("x-request-id", "has spaces in it")],
    )
    .await;
    let replaced = seen_header(&replaced, "x-request-id");
    assert_eq!(replaced.len(), 1);
    assert!(is_uuid(&replaced[0]), "{replaced:?}");

    let first = seen_header(
        &echoed_with_headers(&portcullis, &setup.ca, &[]).await,
        "x-request-id",
    );
    let second = seen_header(
        &echoed_with_headers(&portcullis, &setup.ca, &[]).await,
        "x-request-id",
    );
    assert!(
        is_uuid(&first[0]) && is_uuid(&second[0]),
        "{first:?} {second:?}"
    );
    assert_ne!(first, second, "each request gets its own id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_are_removed_before_routing_and_the_backend_gets_the_same_path() {
    let setup = setup().await;
    let portcullis = Portcullis::start(&setup.manifests, &[]).await;

    let stream = connect_tls(portcullis.https, &Tls::h1("a.example.com", &setup.ca))
        .await
        .expect("handshake");
    let mut connection = H1::over(stream).await;
    for (sent, forwarded) in [
        ("/a/../b", "/b"),
        ("/a/../b?x=1", "/b?x=1"),
        ("/./b", "/b"),
        ("/%62", "/b"),
        ("/../../b", "/b"),
    ] {
        let reply = connection.get("a.example.com", sent).await;
        assert_eq!(reply.backend(), "bee", "{sent} routes as {forwarded}");
        assert_eq!(reply.json()["path"], forwarded, "{sent}");
    }
    // Not a dot-segment: routed by prefix to `web`, unchanged.
    let reply = connection.get("a.example.com", "/a/..b").await;
    assert_eq!(reply.backend(), "web");
    assert_eq!(reply.json()["path"], "/a/..b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoded_slash_backslash_or_nul_in_the_path_gets_400() {
    let setup = setup().await;
    let portcullis = Portcullis::start(&setup.manifests, &[]).await;

    for path in ["/a%2Fb", "/a%2fb", "/%2e%2e%2Fb", "/a%5Cb", "/a%00b"] {
        let reply = https_get(portcullis.https, &setup.ca, "a.example.com", path).await;
        assert_proxy_answer(&reply, 400);
        assert!(reply.body.contains("encoded"), "{path}: {reply:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_messages_are_echoed_through_the_proxy() {
    let setup = setup().await;
    let echo = EchoProcess::start("ws", setup.manifests.scratch()).await;
    let mut objects = vec![
        tls_secret(NS, "ws-tls", &setup.ca.leaf(&["ws.example.com"])),
        Ingress::new("ws")
            .tls(&["ws.example.com"], "ws-tls")
            .route("ws.example.com", "/", "ws")
            .build(),
    ];
    objects.extend(service(NS, "ws", &[echo.port()]));
    setup.manifests.write_objects("ws.yaml", &objects);
    let portcullis = Portcullis::start(&setup.manifests, &[]).await;

    let stream = connect_tls(portcullis.https, &Tls::h1("ws.example.com", &setup.ca))
        .await
        .expect("handshake");
    let (mut socket, response) = bounded(
        Duration::from_secs(10),
        "the WebSocket handshake",
        tokio_tungstenite::client_async("wss://ws.example.com/chat", stream),
    )
    .await
    .expect("the WebSocket handshake through the proxy");
    assert_eq!(response.status(), 101);

    for message in [
        Message::text("hello through portcullis"),
        Message::binary(vec![0u8, 1, 2, 255]),
    ] {
        bounded(
            Duration::from_secs(10),
            "sending",
            socket.send(message.clone()),
        )
        .await
        .expect("send a message");
        let echoed = bounded(Duration::from_secs(10), "the echo", socket.next())
            .await
            .expect("the connection stays open")
            .expect("a message");
        assert_eq!(echoed, message);
    }
    bounded(Duration::from_secs(10), "closing", socket.close(None))
        .await
        .expect("close the WebSocket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_spread_round_robin_over_two_endpoints() {
    let setup = setup().await;
    let portcullis = Portcullis::start(&setup.manifests, &[]).await;

    let stream = bounded(
        Duration::from_secs(10),
        "connecting",
        tokio::net::TcpStream::connect(portcullis.http),
    )
    .await
    .expect("connect");
    let mut connection = H1::over(stream).await;
    let mut answers = Vec::new();
    for _ in 0..8 {
        answers.push(connection.get("pair.example.com", "/").await.backend());
    }
    for pair in answers.windows(2) {
        assert_ne!(
            pair[0], pair[1],
            "consecutive requests alternate: {answers:?}"
        );
    }
    let ones = answers.iter().filter(|a| *a == "one").count();
    assert_eq!(ones, 4, "{answers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_connect_is_retried_on_the_other_endpoint() {
    let setup = setup().await;
    let portcullis = Portcullis::start(&setup.manifests, &[]).await;

    // Round robin sends every other first attempt to the closed port; all succeed.
    for i in 0..6 {
        let reply = http_get(portcullis.http, "half.example.com", &format!("/try/{i}")).await;
        assert_eq!(reply.backend(), "alive", "request {i}");
        assert_eq!(reply.json()["path"], format!("/try/{i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_reach_the_backend_over_http1_and_http2() {
    let setup = setup().await;
    let portcullis = Portcullis::start(&setup.manifests, &[]).await;
    let body = "name=portcullis&".repeat(1000);

    let stream = connect_tls(portcullis.https, &Tls::h1("a.example.com", &setup.ca))
        .await
        .expect("handshake");
    let reply = H1::over(stream)
        .await
        .send(
            request("a.example.com", "/form")
                .method("POST")
                .body(body.clone().into())
                .unwrap(),
        )
        .await;
    let echoed = reply.json();
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["body"], body.as_str());

    let stream = connect_tls(portcullis.https, &Tls::h2("a.example.com", &setup.ca))
        .await
        .expect("handshake");
    let reply = H2::over(stream)
        .await
        .send(
            http::Request::put("https://a.example.com/upload")
                .body(body.clone().into())
                .unwrap(),
        )
        .await;
    let echoed = reply.json();
    assert_eq!(echoed["method"], "PUT");
    assert_eq!(echoed["body"], body.as_str());
}
