//! The access log: with `--log-format json`, each request is one JSON line on stderr
//! (target `access`) whose fields say what happened; with `--access-log off`, none.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use crate::observability_support::{
    Launched, access_lines, connect_tls12, eventually, random_token, scrape_until,
};
use crate::support::backend::{Backend, ClosedPort};
use crate::support::client::{
    H1, H2, Reply, Tls, connect_tls, http_get, https_get, request, seen_header,
};
use crate::support::manifests::{
    Ingress, Manifests, NS, ingress_class, service, service_with_readiness, tls_secret,
};
use crate::support::pki::TestCa;

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
    /// The endpoint it went to.
    upstream: Upstream,
    ingress: String,
    service: String,
}

/// The endpoint a request went to, as the access log should name it.
enum Upstream {
    Web,
    /// None: the proxy answered by itself.
    None,
    /// An endpoint that refused the connection.
    Refused(String),
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
            upstream: Upstream::Web,
            ingress: "shop/site".into(),
            service: "shop/web:80".into(),
        }
    }
}

/// The access-log test's folder: a.example.com (TLS) with `/app` to `web`, `/empty` to a
/// Service without ready endpoints and `/down` to one whose endpoint refuses connections;
/// plain.example.com (no TLS) to `web`.
async fn access_log_site(ca: &TestCa) -> (Manifests, Backend, ClosedPort) {
    let web = Backend::echo("web").await;
    let closed = ClosedPort::new();
    let manifests = Manifests::new();
    let mut objects = vec![
        ingress_class(),
        tls_secret(NS, "a-tls", &ca.leaf(&["a.example.com"])),
        Ingress::new("site")
            .tls(&["a.example.com"], "a-tls")
            .route("a.example.com", "/app", "web")
            .route("a.example.com", "/empty", "empty")
            .route("a.example.com", "/down", "broken")
            .build(),
        Ingress::new("plain")
            .route("plain.example.com", "/", "web")
            .build(),
    ];
    objects.extend(service(NS, "web", &[web.port()]));
    objects.extend(service_with_readiness(NS, "empty", &[web.port()], false));
    objects.extend(service(NS, "broken", &[closed.port]));
    manifests.write_objects("site.yaml", &objects);
    (manifests, web, closed)
}

/// A fresh X-Request-ID.
fn new_id() -> String {
    format!("req-{}", random_token())
}

/// Sends `req` (its Host header is a.example.com) with `body` on a fresh TLS 1.3
/// connection; the client's address and the reply.
async fn over_h1(
    portcullis: &Launched,
    ca: &TestCa,
    req: http::request::Builder,
    body: &'static [u8],
) -> (String, Reply) {
    let stream = connect_tls(portcullis.https, &Tls::h1("a.example.com", ca))
        .await
        .expect("handshake");
    let client = stream.get_ref().0.local_addr().expect("local address");
    let req = req
        .header("host", "a.example.com")
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    (client.to_string(), H1::over(stream).await.send(req).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn has_one_json_line_per_request_with_what_happened() {
    let ca = TestCa::new();
    let (manifests, web, closed) = access_log_site(&ca).await;
    let portcullis = Launched::ready(&manifests, &[]).await;
    let mut sent: Vec<Sent> = Vec::new();

    // A GET whose query is not logged, and a POST whose body is counted.
    let id = new_id();
    let get = Request::get("/app/one?token=secret").header("x-request-id", &id);
    let (client, reply) = over_h1(&portcullis, &ca, get, b"").await;
    assert_eq!(reply.backend(), "web");
    sent.push(Sent::routed(id, client, "/app/one", &reply));

    let id = new_id();
    let post = Request::post("/app/form").header("x-request-id", &id);
    let (client, reply) = over_h1(&portcullis, &ca, post, b"hello=world").await;
    assert_eq!(reply.backend(), "web");
    sent.push(Sent {
        method: "POST".into(),
        bytes_in: 11,
        ..Sent::routed(id, client, "/app/form", &reply)
    });

    // Answers the proxy makes itself: 404 with no Ingress or Service, and 503 with both.
    let id = new_id();
    let get = Request::get("/missing").header("x-request-id", &id);
    let (client, reply) = over_h1(&portcullis, &ca, get, b"").await;
    assert_eq!(reply.status, 404, "{reply:?}");
    sent.push(Sent {
        status: 404,
        upstream: Upstream::None,
        ingress: String::new(),
        service: String::new(),
        ..Sent::routed(id, client, "/missing", &reply)
    });

    let id = new_id();
    let get = Request::get("/empty/x").header("x-request-id", &id);
    let (client, reply) = over_h1(&portcullis, &ca, get, b"").await;
    assert_eq!(reply.status, 503, "{reply:?}");
    sent.push(Sent {
        status: 503,
        upstream: Upstream::None,
        service: "shop/empty:80".into(),
        ..Sent::routed(id, client, "/empty/x", &reply)
    });

    // 502: the one endpoint refused the connection; the log names it.
    let id = new_id();
    let get = Request::get("/down/x").header("x-request-id", &id);
    let (client, reply) = over_h1(&portcullis, &ca, get, b"").await;
    assert_eq!(reply.status, 502, "{reply:?}");
    sent.push(Sent {
        status: 502,
        upstream: Upstream::Refused(format!("127.0.0.1:{}", closed.port)),
        service: "shop/broken:80".into(),
        ..Sent::routed(id, client, "/down/x", &reply)
    });

    // A dot-segment path is logged as it was routed: normalised.
    let id = new_id();
    let get = Request::get("/app/./x/../four").header("x-request-id", &id);
    let (client, reply) = over_h1(&portcullis, &ca, get, b"").await;
    assert_eq!(reply.json()["path"], "/app/four");
    sent.push(Sent::routed(id, client, "/app/four", &reply));

    // HTTP/2: the host comes from :authority.
    let id = new_id();
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
    let id = new_id();
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
    let id = new_id();
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
        let mut get = Request::get("/app/generated");
        if let Some(id) = client_id {
            get = get.header("x-request-id", id);
        }
        let (client, reply) = over_h1(&portcullis, &ca, get, b"").await;
        let seen = seen_header(&reply.json(), "x-request-id");
        assert_eq!(seen.len(), 1, "{reply:?}");
        assert_ne!(Some(seen[0].as_str()), client_id);
        sent.push(Sent::routed(
            seen[0].clone(),
            client,
            "/app/generated",
            &reply,
        ));
    }

    // Exactly one line per request. A request is counted in the metrics just before its
    // line is written: wait for the count, then for the lines, then give a line written
    // twice a moment to show up before counting.
    let n = sent.len();
    scrape_until(portcullis.admin, "every request finished", |m| {
        m.sum("portcullis_requests_total", &[]) == n as f64
    })
    .await;
    eventually(
        &format!("{n} access-log lines"),
        Duration::from_secs(10),
        || access_lines(&portcullis.stderr()).len() >= n,
    )
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
            "upstream": match &s.upstream {
                Upstream::Web => web_addr.as_str(),
                Upstream::None => "",
                Upstream::Refused(addr) => addr.as_str(),
            },
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
async fn off_writes_no_access_lines() {
    let ca = TestCa::new();
    let (manifests, _web, _closed) = access_log_site(&ca).await;
    let portcullis = Launched::ready(&manifests, &["--access-log", "off"]).await;

    let reply = https_get(portcullis.https, &ca, "a.example.com", "/app/x").await;
    assert_eq!(reply.backend(), "web");
    let reply = https_get(portcullis.https, &ca, "a.example.com", "/missing").await;
    assert_eq!(reply.status, 404);
    let reply = https_get(portcullis.https, &ca, "a.example.com", "/empty").await;
    assert_eq!(reply.status, 503);
    let reply = http_get(portcullis.http, "plain.example.com", "/").await;
    assert_eq!(reply.backend(), "web");

    // A request is counted in the metrics just before its line would be written; after
    // the count, give such a line a moment to show up.
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
