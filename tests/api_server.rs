//! End-to-end tests of `portcullis serve` in API mode against a real kube-apiserver and
//! etcd (see `kube_support`): objects go in through the API as an admin, the controller
//! runs as its restricted identity, traffic is real TLS from rustls to the real binary,
//! and backends are `portcullis echo` processes in a network namespace.
//!
//! Each test has its own API server, namespace and network namespace, so tests run in
//! parallel and clean up after themselves, also when they fail. Timings are printed (run
//! with `--nocapture` to see them), never asserted.

mod kube_support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::mpsc;
use http::{Request, StatusCode, header};
use http_body_util::StreamBody;
use hyper::body::Frame;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use rustls_pki_types::CertificateDer;

use kube_support::client::{Reply, TlsClient, http_get};
use kube_support::cluster::{Cluster, Rbac};
use kube_support::controller::{Controller, ControllerOptions};
use kube_support::netns::{Backend, Netns};
use kube_support::objects::{
    CLASS, CONTROLLER_NAME, apply, apply_cluster, delete, describe_events, endpoint_slice,
    events_about, ingress, ingress_class, ingress_status, lease_holder, service, tls_secret,
    tls_secret_raw,
};
use kube_support::pki::{Ca, Leaf};
use kube_support::{eventually, ms};

/// How long a change may take to reach the data plane before a test gives up. Changes
/// normally land in well under a second; the bound only keeps a broken build from hanging.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(25);

/// One test's world: an API server, a fresh namespace (also the election namespace), a
/// network namespace for backends, our IngressClass, and a CA for Ingress certificates.
/// Fields drop in order: the network namespace, then the API server and its temp dir.
struct World {
    netns: Netns,
    cluster: Cluster,
    namespace: String,
    admin: Client,
    ca: Ca,
}

impl World {
    async fn new() -> World {
        World::with(Rbac::AllNamespaces).await
    }

    async fn with(rbac: Rbac) -> World {
        let cluster = Cluster::start_with(rbac).await;
        let namespace = cluster.create_namespace("e2e").await;
        cluster.grant_election_namespace(&namespace).await;
        if rbac == Rbac::GrantedNamespaces {
            cluster.grant_namespace(&namespace).await;
        }
        let admin = cluster.admin();
        apply_cluster(&admin, &ingress_class(CLASS, CONTROLLER_NAME, false)).await;
        let netns = Netns::create(cluster.dir());
        World {
            netns,
            cluster,
            namespace,
            admin,
            ca: Ca::new("portcullis-e2e-ingress-ca"),
        }
    }

    fn options(&self) -> ControllerOptions {
        ControllerOptions::new(&self.namespace)
    }

    /// A Service `name` whose EndpointSlice lists `backends`, all ready.
    async fn service_for(&self, name: &str, backends: &[&Backend]) {
        let endpoints: Vec<_> = backends.iter().map(|b| (b.ip(), true)).collect();
        self.service_with(name, &endpoints).await;
    }

    /// A Service `name` whose EndpointSlice lists these endpoints and readiness.
    async fn service_with(&self, name: &str, endpoints: &[(std::net::IpAddr, bool)]) {
        apply(&self.admin, &service(&self.namespace, name)).await;
        let slice = endpoint_slice(&self.namespace, &format!("{name}-1"), name, endpoints);
        apply(&self.admin, &slice).await;
    }

    async fn secret(&self, name: &str, leaf: &Leaf) {
        apply(&self.admin, &tls_secret(&self.namespace, name, leaf)).await;
    }

    async fn ingress_events(&self, name: &str) -> String {
        describe_events(&events_about(&self.admin, &self.namespace, "Ingress", name).await)
    }
}

/// A GET that must answer 200 from the backend `expected`.
async fn get_from(
    client: &TlsClient,
    addr: SocketAddr,
    host: &str,
    path: &str,
    expected: &str,
) -> Result<Reply, String> {
    let reply = client.get(addr, host, path).await?;
    if reply.status != StatusCode::OK || reply.echo_name() != Some(expected) {
        return Err(format!(
            "GET https://{host}{path}: {} from {:?}, wanted 200 from {expected}",
            reply.status,
            reply.echo_name()
        ));
    }
    Ok(reply)
}

/// A GET over port 80 that must answer `status`.
async fn http_status(
    addr: SocketAddr,
    host: &str,
    path: &str,
    status: StatusCode,
) -> Result<Reply, String> {
    let reply = http_get(addr, host, path).await?;
    if reply.status != status {
        return Err(format!(
            "GET http://{host}{path}: {} (from {:?}), wanted {status}",
            reply.status,
            reply.echo_name()
        ));
    }
    Ok(reply)
}

async fn served_is(
    client: &TlsClient,
    addr: SocketAddr,
    sni: &str,
    expected: &CertificateDer<'static>,
) -> Result<(), String> {
    let served = client.served_certificate(addr, sni).await?;
    if &served == expected {
        Ok(())
    } else {
        Err(format!("{sni}: another certificate is served"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_runs_a_real_api_server_with_the_charts_rbac_and_reachable_backends() {
    let world = World::new().await;
    let controller = world.cluster.controller_client().await;

    // The controller identity is not an admin: it cannot create a namespace, nor a Lease
    // outside its election namespace; it can list what it watches everywhere.
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({ "metadata": { "name": "forbidden" } })).unwrap();
    let refused = Api::<Namespace>::all(controller.clone())
        .create(&PostParams::default(), &namespace)
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 403),
        "the controller identity must not create namespaces: {refused:?}"
    );
    let elsewhere = world.cluster.create_namespace("other").await;
    let lease: Lease = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "probe" }, "spec": {}
    }))
    .unwrap();
    let refused = Api::<Lease>::namespaced(controller.clone(), &elsewhere)
        .create(&PostParams::default(), &lease)
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 403),
        "Leases only in the election namespace: {refused:?}"
    );
    Api::<Lease>::namespaced(controller.clone(), &world.namespace)
        .create(&PostParams::default(), &lease)
        .await
        .expect("the controller may create its Lease in the election namespace");
    for list in [
        Api::<Ingress>::all(controller.clone())
            .list(&ListParams::default())
            .await
            .map(|_| ()),
        Api::<Secret>::all(controller.clone())
            .list(&ListParams::default())
            .await
            .map(|_| ()),
        Api::<Service>::all(controller.clone())
            .list(&ListParams::default())
            .await
            .map(|_| ()),
        Api::<EndpointSlice>::all(controller.clone())
            .list(&ListParams::default())
            .await
            .map(|_| ()),
    ] {
        list.expect("the controller may list what it watches");
    }

    // Backends live in the network namespace: reachable from the host, and accepted in an
    // EndpointSlice, which refuses loopback.
    let backend = world.netns.spawn_echo("self-test").await;
    let reply = http_get(backend.addr, "self-test.example.test", "/probe")
        .await
        .unwrap();
    assert_eq!(reply.echo_name(), Some("self-test"));
    assert_eq!(reply.echo_path(), Some("/probe"));
    world.service_for("self-test", &[&backend]).await;
    let loopback = endpoint_slice(
        &world.namespace,
        "loopback",
        "self-test",
        &[("127.0.0.1".parse().unwrap(), true)],
    );
    let refused = Api::<EndpointSlice>::namespaced(world.admin.clone(), &world.namespace)
        .create(&PostParams::default(), &loopback)
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 422),
        "EndpointSlice validation refuses loopback: {refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_ingress_is_served_by_sni_and_path_redirects_http_and_gets_status() {
    let world = World::new().await;
    let ns = &world.namespace;
    let api = world.netns.spawn_echo("api").await;
    let web = world.netns.spawn_echo("web").await;
    world.service_for("api", &[&api]).await;
    world.service_for("web", &[&web]).await;
    let app_cert = world.ca.server(&["app.example.test"]);
    let shop_cert = world.ca.server(&["shop.example.test"]);
    world.secret("app-tls", &app_cert).await;
    world.secret("shop-tls", &shop_cert).await;
    let app = ingress(ns, "app")
        .class(CLASS)
        .tls(&["app.example.test"], "app-tls")
        .rule("app.example.test", &[("/api", "api"), ("/", "web")])
        .build();
    let shop = ingress(ns, "shop")
        .class(CLASS)
        .tls(&["shop.example.test"], "shop-tls")
        .rule("shop.example.test", &[("/", "web")])
        .build();
    apply(&world.admin, &app).await;
    apply(&world.admin, &shop).await;

    // Everything exists before the controller starts: its first snapshot, built from the
    // initial lists, is complete when /readyz turns 200.
    let controller = Controller::start(&world.cluster, &world.options()).await;
    let client = TlsClient::trusting(&world.ca.cert_der());

    // The right certificate by SNI, verified against the CA and the name.
    let served = client
        .served_certificate(controller.https, "app.example.test")
        .await
        .unwrap();
    assert_eq!(
        served, app_cert.cert_der,
        "app.example.test gets its own certificate"
    );
    let served = client
        .served_certificate(controller.https, "shop.example.test")
        .await
        .unwrap();
    assert_eq!(
        served, shop_cert.cert_der,
        "shop.example.test gets its own certificate"
    );

    // Each path reaches its backend, and the path arrives as sent.
    let https = controller.https;
    let reply = get_from(&client, https, "app.example.test", "/api/users?id=7", "api")
        .await
        .unwrap();
    assert_eq!(reply.echo_path(), Some("/api/users?id=7"));
    get_from(&client, https, "app.example.test", "/", "web")
        .await
        .unwrap();
    get_from(&client, https, "app.example.test", "/apiary", "web")
        .await
        .unwrap();
    get_from(&client, https, "shop.example.test", "/api", "web")
        .await
        .unwrap();

    // Port 80 redirects a TLS host to https with 308, path and query kept.
    let reply = http_status(
        controller.http,
        "app.example.test",
        "/api/x?q=1",
        StatusCode::PERMANENT_REDIRECT,
    )
    .await
    .unwrap();
    assert_eq!(reply.location(), Some("https://app.example.test/api/x?q=1"));

    // The leader publishes the status address on both Ingresses.
    let (_, took) = eventually(
        "Ingress status is published",
        CHANGE_TIMEOUT,
        POLL,
        async || {
            for name in ["app", "shop"] {
                let status = ingress_status(&world.admin, ns, name).await;
                if status != ["192.0.2.10"] {
                    return Err(format!("{name} status is {status:?}"));
                }
            }
            Ok(())
        },
    )
    .await;
    eprintln!("Ingress status published {} ms after ready", ms(took));
    assert_eq!(
        world.ingress_events("app").await,
        "",
        "no Events on a healthy Ingress"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_secret_is_served_on_the_next_handshake_while_a_request_in_flight_completes() {
    let world = World::new().await;
    let ns = &world.namespace;
    let upload = world.netns.spawn_echo("upload").await;
    world.service_for("upload", &[&upload]).await;
    let old = world.ca.server(&["rotate.example.test"]);
    let new = world.ca.server(&["rotate.example.test"]);
    world.secret("rotate-tls", &old).await;
    let rotate = ingress(ns, "rotate")
        .class(CLASS)
        .tls(&["rotate.example.test"], "rotate-tls")
        .rule("rotate.example.test", &[("/", "upload")])
        .build();
    apply(&world.admin, &rotate).await;
    let controller = Controller::start(&world.cluster, &world.options()).await;
    let client = TlsClient::trusting(&world.ca.cert_der());
    let https = controller.https;
    served_is(&client, https, "rotate.example.test", &old.cert_der)
        .await
        .unwrap();

    // A request whose body is still being sent when the Secret changes.
    let (body_tx, body_rx) = mpsc::unbounded::<Result<Frame<Bytes>, Infallible>>();
    let request = Request::post("/upload")
        .header(header::HOST, "rotate.example.test")
        .body(StreamBody::new(body_rx))
        .unwrap();
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .send(
                    https,
                    "rotate.example.test",
                    request,
                    Duration::from_secs(60),
                )
                .await
        }
    });
    body_tx
        .unbounded_send(Ok(Frame::data(Bytes::from(vec![b'a'; 1024]))))
        .unwrap();

    // Replace the certificate and key; the next handshake gets the new one.
    let replaced = Instant::now();
    world.secret("rotate-tls", &new).await;
    let (_, took) = eventually(
        "the new certificate is served",
        CHANGE_TIMEOUT,
        POLL,
        async || served_is(&client, https, "rotate.example.test", &new.cert_der).await,
    )
    .await;
    eprintln!(
        "new certificate served after {} ms (Secret applied in {} ms)",
        ms(took),
        ms(replaced.elapsed() - took)
    );
    get_from(&client, https, "rotate.example.test", "/after", "upload")
        .await
        .unwrap();

    // The request in flight finishes on its old connection, with the old certificate.
    body_tx
        .unbounded_send(Ok(Frame::data(Bytes::from(vec![b'b'; 1024]))))
        .unwrap();
    drop(body_tx);
    let reply = in_flight
        .await
        .unwrap()
        .expect("the request in flight completes");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.echo_name(), Some("upload"));
    assert!(
        reply.body.contains("body-bytes: 2048"),
        "whole body arrived: {}",
        reply.body
    );
    assert_eq!(
        reply.certificate.as_ref(),
        Some(&old.cert_der),
        "connection kept its certificate"
    );
    eprintln!(
        "request in flight across the rotation completed after {} ms",
        ms(replaced.elapsed())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_endpoints_and_ingresses_changed_through_the_api_take_effect() {
    let world = World::new().await;
    let ns = &world.namespace;
    let one = world.netns.spawn_echo("one").await;
    let two = world.netns.spawn_echo("two").await;
    let three = world.netns.spawn_echo("three").await;
    let controller = Controller::start(&world.cluster, &world.options()).await;
    let https = controller.https;
    let inspecting = TlsClient::inspecting();
    let client = TlsClient::trusting(&world.ca.cert_der());
    let host = "late.example.test";

    // The Ingress comes first; its Secret does not exist yet.
    world
        .service_with("pool", &[(one.ip(), true), (two.ip(), true)])
        .await;
    let late = ingress(ns, "late")
        .class(CLASS)
        .tls(&[host], "late-tls")
        .rule(host, &[("/", "pool")])
        .build();
    apply(&world.admin, &late).await;
    let (events, _) = eventually(
        "a SecretNotFound Event on the Ingress",
        CHANGE_TIMEOUT,
        POLL,
        async || {
            let events = world.ingress_events("late").await;
            if events.contains("Warning SecretNotFound") && events.contains("late-tls") {
                Ok(events)
            } else {
                Err(format!("events: {events:?}"))
            }
        },
    )
    .await;
    eprintln!("events before the Secret exists:\n{events}");
    let leaf = world.ca.server(&[host]);
    let placeholder = inspecting.served_certificate(https, host).await.unwrap();
    assert_ne!(placeholder, leaf.cert_der);

    // The Secret arrives: its certificate serves from the next handshake on.
    world.secret("late-tls", &leaf).await;
    let (_, took) = eventually(
        "the late Secret's certificate is served",
        CHANGE_TIMEOUT,
        POLL,
        async || served_is(&client, https, host, &leaf.cert_der).await,
    )
    .await;
    eprintln!(
        "certificate from a Secret created after its Ingress served after {} ms",
        ms(took)
    );

    // Round robin over both ready endpoints.
    let names = backends_seen(&client, https, host, 8).await.unwrap();
    assert_eq!(names, ["one", "two"], "both ready endpoints take requests");

    // `two` stops being ready: once that is applied, no new request goes to it.
    world
        .service_with("pool", &[(one.ip(), true), (two.ip(), false)])
        .await;
    let (_, took) = eventually(
        "the unready endpoint is left out",
        CHANGE_TIMEOUT,
        POLL,
        async || {
            let names = backends_seen(&client, https, host, 4).await?;
            if names == ["one"] {
                Ok(())
            } else {
                Err(format!("requests went to {names:?}"))
            }
        },
    )
    .await;
    eprintln!("unready endpoint left out after {} ms", ms(took));
    let names = backends_seen(&client, https, host, 20).await.unwrap();
    assert_eq!(
        names,
        ["one"],
        "no new request goes to the unready endpoint"
    );

    // An endpoint is added.
    world
        .service_with(
            "pool",
            &[(one.ip(), true), (two.ip(), false), (three.ip(), true)],
        )
        .await;
    let (_, took) = eventually(
        "the added endpoint takes requests",
        CHANGE_TIMEOUT,
        POLL,
        async || {
            let names = backends_seen(&client, https, host, 4).await?;
            if names == ["one", "three"] {
                Ok(())
            } else {
                Err(format!("requests went to {names:?}"))
            }
        },
    )
    .await;
    eprintln!("added endpoint took requests after {} ms", ms(took));

    // The Ingress is deleted: its host is no longer served.
    delete::<Ingress>(&world.admin, ns, "late").await;
    let (_, took) = eventually(
        "the deleted Ingress's host answers 404",
        CHANGE_TIMEOUT,
        POLL,
        async || {
            let reply = inspecting.get(https, host, "/").await?;
            if reply.status == StatusCode::NOT_FOUND {
                Ok(())
            } else {
                Err(format!("{}", reply.status))
            }
        },
    )
    .await;
    eprintln!("deleted Ingress stopped being served after {} ms", ms(took));
    let served = inspecting.served_certificate(https, host).await.unwrap();
    assert_ne!(
        served, leaf.cert_der,
        "the deleted Ingress's certificate is no longer chosen"
    );
}

/// The sorted, de-duplicated names of the backends that answered `count` requests.
async fn backends_seen(
    client: &TlsClient,
    addr: SocketAddr,
    host: &str,
    count: usize,
) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for i in 0..count {
        let reply = client.get(addr, host, &format!("/request/{i}")).await?;
        let name = reply.echo_name().ok_or_else(|| {
            format!(
                "request {i}: {} without a backend: {}",
                reply.status, reply.body
            )
        })?;
        names.push(name.to_owned());
    }
    names.sort();
    names.dedup();
    Ok(names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_class_rules_and_watch_namespace_decide_what_is_served() {
    // RBAC as the chart makes it with --watch-namespace: the namespaced rules only in
    // the watched namespace, so reading anything else would fail the controller.
    let world = World::with(Rbac::GrantedNamespaces).await;
    let ns = &world.namespace;
    let admin = &world.admin;
    let echo = world.netns.spawn_echo("served").await;
    world.service_for("served", &[&echo]).await;
    apply_cluster(
        admin,
        &ingress_class("other", "example.com/other-controller", false),
    )
    .await;

    let plain = |name: &str, host: &str| ingress(ns, name).rule(host, &[("/", "served")]);
    apply(
        admin,
        &plain("by-class", "by-class.example.test")
            .class(CLASS)
            .build(),
    )
    .await;
    apply(
        admin,
        &plain("theirs", "theirs.example.test")
            .class("other")
            .build(),
    )
    .await;
    apply(admin, &plain("no-class", "no-class.example.test").build()).await;
    let legacy = "kubernetes.io/ingress.class";
    apply(
        admin,
        &plain("legacy", "legacy.example.test")
            .annotation(legacy, CLASS)
            .build(),
    )
    .await;
    let legacy_other =
        plain("legacy-other", "legacy-other.example.test").annotation(legacy, "other");
    apply(admin, &legacy_other.build()).await;

    // The same Ingress, class and Service in a namespace the controller does not watch.
    let unwatched = world.cluster.create_namespace("unwatched").await;
    apply(admin, &service(&unwatched, "served")).await;
    let slice = endpoint_slice(&unwatched, "served-1", "served", &[(echo.ip(), true)]);
    apply(admin, &slice).await;
    let elsewhere = ingress(&unwatched, "elsewhere")
        .class(CLASS)
        .rule("elsewhere.example.test", &[("/", "served")])
        .build();
    apply(admin, &elsewhere).await;

    let mut options = world.options();
    options.watch_namespaces = vec![ns.clone()];
    let controller = Controller::start(&world.cluster, &options).await;
    let http = controller.http;
    let served = async |host: &str| {
        http_status(http, host, "/", StatusCode::OK)
            .await
            .map(|_| ())
    };
    let not_served = async |host: &str| {
        http_status(http, host, "/", StatusCode::NOT_FOUND)
            .await
            .map(|_| ())
    };

    served("by-class.example.test").await.unwrap();
    served("legacy.example.test").await.unwrap();
    not_served("theirs.example.test").await.unwrap();
    not_served("no-class.example.test").await.unwrap();
    not_served("legacy-other.example.test").await.unwrap();
    not_served("elsewhere.example.test").await.unwrap();

    // Our class becomes the default: the Ingress without a class is now ours; one whose
    // legacy annotation names another class still is not.
    apply_cluster(admin, &ingress_class(CLASS, CONTROLLER_NAME, true)).await;
    let (_, took) = eventually(
        "the class-less Ingress is served",
        CHANGE_TIMEOUT,
        POLL,
        async || served("no-class.example.test").await,
    )
    .await;
    eprintln!(
        "Ingress without a class served {} ms after our class became default",
        ms(took)
    );
    not_served("legacy-other.example.test").await.unwrap();
    not_served("theirs.example.test").await.unwrap();

    // Status goes on ours only.
    eventually(
        "status on our Ingresses",
        CHANGE_TIMEOUT,
        POLL,
        async || {
            for name in ["by-class", "legacy", "no-class"] {
                let status = ingress_status(admin, ns, name).await;
                if status != ["192.0.2.10"] {
                    return Err(format!("{name}: {status:?}"));
                }
            }
            Ok(())
        },
    )
    .await;
    for name in ["theirs", "legacy-other"] {
        assert_eq!(
            ingress_status(admin, ns, name).await,
            Vec::<String>::new(),
            "{name}"
        );
    }
    assert_eq!(
        ingress_status(admin, &unwatched, "elsewhere").await,
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_secret_gets_a_warning_event_and_leaves_other_hosts_alone() {
    let world = World::new().await;
    let ns = &world.namespace;
    let echo = world.netns.spawn_echo("site").await;
    world.service_for("site", &[&echo]).await;
    let good = world.ca.server(&["good.example.test"]);
    let other = world.ca.server(&["mismatch.example.test"]);
    let stray = world.ca.server(&["mismatch.example.test"]);
    world.secret("good-tls", &good).await;
    let bad_pem = tls_secret_raw(
        ns,
        "bad-pem-tls",
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        &other.key_pem,
    );
    apply(&world.admin, &bad_pem).await;
    // The certificate of one key pair with the private key of another.
    let mismatch = tls_secret_raw(ns, "mismatch-tls", &other.cert_pem, &stray.key_pem);
    apply(&world.admin, &mismatch).await;
    for (name, host, secret) in [
        ("good", "good.example.test", "good-tls"),
        ("bad-pem", "bad-pem.example.test", "bad-pem-tls"),
        ("mismatch", "mismatch.example.test", "mismatch-tls"),
    ] {
        let object = ingress(ns, name)
            .class(CLASS)
            .tls(&[host], secret)
            .rule(host, &[("/", "site")])
            .build();
        apply(&world.admin, &object).await;
    }
    let controller = Controller::start(&world.cluster, &world.options()).await;
    let https = controller.https;
    let client = TlsClient::trusting(&world.ca.cert_der());
    let inspecting = TlsClient::inspecting();

    // Each Event names the Secret and the key at fault (DESIGN.md, promise 2).
    for (name, secret, key) in [
        ("bad-pem", "bad-pem-tls", "tls.crt"),
        ("mismatch", "mismatch-tls", "tls.key"),
    ] {
        let (events, took) = eventually(
            "an InvalidCertificate Event",
            CHANGE_TIMEOUT,
            POLL,
            async || {
                let events = world.ingress_events(name).await;
                let named = events.contains(secret) && events.contains(key);
                if events.contains("Warning InvalidCertificate") && named {
                    Ok(events)
                } else {
                    Err(format!("Events on Ingress {name}: {events:?}"))
                }
            },
        )
        .await;
        eprintln!("Event on Ingress {name} after {} ms:\n{events}", ms(took));
    }

    // The broken hosts get the placeholder, never a wrong certificate; the good one is
    // untouched and routes.
    served_is(&client, https, "good.example.test", &good.cert_der)
        .await
        .unwrap();
    get_from(&client, https, "good.example.test", "/", "site")
        .await
        .unwrap();
    for host in ["bad-pem.example.test", "mismatch.example.test"] {
        let served = inspecting.served_certificate(https, host).await.unwrap();
        assert!(
            served != other.cert_der && served != good.cert_der,
            "{host} gets the placeholder"
        );
    }
    assert_eq!(
        world.ingress_events("good").await,
        "",
        "no Event on the good Ingress"
    );

    // A Secret that breaks after it was good keeps its last good certificate in service,
    // with a Warning Event.
    let broken = tls_secret_raw(ns, "good-tls", &good.cert_pem, &stray.key_pem);
    apply(&world.admin, &broken).await;
    let (events, took) = eventually(
        "an Event on the Ingress whose Secret broke",
        CHANGE_TIMEOUT,
        POLL,
        async || {
            let events = world.ingress_events("good").await;
            if events.contains("Warning InvalidCertificate") {
                Ok(events)
            } else {
                Err(format!("{events:?}"))
            }
        },
    )
    .await;
    eprintln!(
        "Event after the good Secret broke, after {} ms:\n{events}",
        ms(took)
    );
    served_is(&client, https, "good.example.test", &good.cert_der)
        .await
        .unwrap();
    get_from(&client, https, "good.example.test", "/", "site")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_flows_while_the_api_server_is_down_and_changes_apply_when_it_returns() {
    let mut world = World::new().await;
    let ns = world.namespace.clone();
    let before = world.netns.spawn_echo("before").await;
    let after = world.netns.spawn_echo("after").await;
    world.service_for("before", &[&before]).await;
    world.service_for("after", &[&after]).await;
    let leaf = world.ca.server(&["steady.example.test"]);
    world.secret("steady-tls", &leaf).await;
    let steady = |service: &str| {
        ingress(&ns, "steady")
            .class(CLASS)
            .tls(&["steady.example.test"], "steady-tls")
            .rule("steady.example.test", &[("/", service)])
            .build()
    };
    apply(&world.admin, &steady("before")).await;
    let doomed = ingress(&ns, "doomed")
        .class(CLASS)
        .rule("doomed.example.test", &[("/", "before")]);
    apply(&world.admin, &doomed.build()).await;
    let controller = Controller::start(&world.cluster, &world.options()).await;
    let (https, http) = (controller.https, controller.http);
    let client = TlsClient::trusting(&world.ca.cert_der());
    get_from(&client, https, "steady.example.test", "/", "before")
        .await
        .unwrap();

    // The API server goes away; new connections and handshakes keep being served.
    world.cluster.kill_apiserver();
    let stopped = Instant::now();
    let mut requests = 0;
    while stopped.elapsed() < Duration::from_secs(4) {
        get_from(&client, https, "steady.example.test", "/", "before")
            .await
            .unwrap();
        http_status(http, "doomed.example.test", "/", StatusCode::OK)
            .await
            .unwrap();
        requests += 2;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("{requests} requests served while the API server was down");
    assert!(
        controller.is_ready().await,
        "/readyz stays 200: the data plane does not need the API"
    );

    // Meanwhile, changes go in through a second API server on the same etcd, which the
    // controller does not talk to: nothing changes for it yet.
    let second = world.cluster.start_second_apiserver().await;
    apply(&second.client, &steady("after")).await;
    delete::<Ingress>(&second.client, &ns, "doomed").await;
    second.stop();
    get_from(&client, https, "steady.example.test", "/", "before")
        .await
        .unwrap();
    http_status(http, "doomed.example.test", "/", StatusCode::OK)
        .await
        .unwrap();
    eprintln!("API server down for {} ms in all", ms(stopped.elapsed()));

    // Back on the same port: the controller catches up with what changed while it could
    // not watch, the deletion included.
    world.cluster.restart_apiserver().await;
    let restarted = Instant::now();
    eventually(
        "the change made while down is applied",
        Duration::from_secs(60),
        POLL,
        async || get_from(&client, https, "steady.example.test", "/", "after").await,
    )
    .await;
    eventually(
        "the deletion made while down is applied",
        CHANGE_TIMEOUT,
        POLL,
        async || http_status(http, "doomed.example.test", "/", StatusCode::NOT_FOUND).await,
    )
    .await;
    eprintln!(
        "changes made while the controller's API server was down applied {} ms after it returned",
        ms(restarted.elapsed())
    );

    // And a change made after the return takes effect.
    let fresh = ingress(&ns, "fresh")
        .class(CLASS)
        .rule("fresh.example.test", &[("/", "after")]);
    apply(&world.admin, &fresh.build()).await;
    let (_, took) = eventually(
        "an Ingress created after the return is served",
        CHANGE_TIMEOUT,
        POLL,
        async || http_status(http, "fresh.example.test", "/", StatusCode::OK).await,
    )
    .await;
    eprintln!(
        "Ingress created after the API server returned served after {} ms",
        ms(took)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_elect_one_status_writer_and_the_other_takes_over_on_sigterm() {
    let world = World::new().await;
    let ns = &world.namespace;
    let echo = world.netns.spawn_echo("replicated").await;
    world.service_for("replicated", &[&echo]).await;
    let first = ingress(ns, "first")
        .class(CLASS)
        .rule("first.example.test", &[("/", "replicated")]);
    apply(&world.admin, &first.build()).await;

    // Each replica publishes its own address, so the status shows who wrote it.
    let mut options = Vec::new();
    for (name, address) in [("replica-a", "192.0.2.10"), ("replica-b", "192.0.2.11")] {
        let mut o = world.options();
        o.name = name.into();
        o.election_id = "portcullis-e2e".into();
        o.publish_status_address = vec![address.into()];
        options.push(o);
    }
    let mut replicas = vec![
        Controller::start(&world.cluster, &options[0]).await,
        Controller::start(&world.cluster, &options[1]).await,
    ];
    for replica in &replicas {
        http_status(replica.http, "first.example.test", "/", StatusCode::OK)
            .await
            .unwrap();
    }

    // One of them holds the Lease (identity: host name and process id) and writes status.
    let (holder, took) = eventually(
        "a replica holds the Lease",
        CHANGE_TIMEOUT,
        POLL,
        async || {
            lease_holder(&world.admin, ns, "portcullis-e2e")
                .await
                .ok_or("no holder")
        },
    )
    .await;
    eprintln!("Lease held by {holder} after {} ms", ms(took));
    let leader = replicas
        .iter()
        .position(|r| holder.ends_with(&format!("-{}", r.pid())))
        .unwrap_or_else(|| panic!("the Lease holder {holder} is neither replica"));
    let follower = 1 - leader;
    let leader_address = options[leader].publish_status_address.clone();
    let follower_address = options[follower].publish_status_address.clone();
    eventually(
        "the leader writes status",
        CHANGE_TIMEOUT,
        POLL,
        async || {
            let status = ingress_status(&world.admin, ns, "first").await;
            if status == leader_address {
                Ok(())
            } else {
                Err(format!("{status:?}"))
            }
        },
    )
    .await;
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(3) {
        assert_eq!(
            ingress_status(&world.admin, ns, "first").await,
            leader_address,
            "only the leader writes status"
        );
        assert_eq!(
            lease_holder(&world.admin, ns, "portcullis-e2e")
                .await
                .as_deref(),
            Some(holder.as_str())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The leader gets SIGTERM: it exits cleanly, and the other takes over within the lease
    // duration (15 s), rewrites the status, and keeps serving.
    let terminated = Instant::now();
    let status = replicas[leader].terminate().expect("leader exited");
    assert!(status.success(), "the leader exits 0 on SIGTERM: {status}");
    let follower_pid = replicas[follower].pid();
    let (new_holder, took) = eventually(
        "the other replica takes the Lease",
        Duration::from_secs(17),
        POLL,
        async || match lease_holder(&world.admin, ns, "portcullis-e2e").await {
            Some(h) if h.ends_with(&format!("-{follower_pid}")) => Ok(h),
            other => Err(format!("holder {other:?}")),
        },
    )
    .await;
    eprintln!(
        "{new_holder} took the Lease {} ms after the leader got SIGTERM",
        ms(terminated.elapsed().max(took))
    );
    let (_, took) = eventually(
        "the new leader writes status",
        CHANGE_TIMEOUT,
        POLL,
        async || {
            let status = ingress_status(&world.admin, ns, "first").await;
            if status == follower_address {
                Ok(())
            } else {
                Err(format!("{status:?}"))
            }
        },
    )
    .await;
    eprintln!("new leader rewrote status after {} ms", ms(took));
    let second = ingress(ns, "second")
        .class(CLASS)
        .rule("second.example.test", &[("/", "replicated")]);
    apply(&world.admin, &second.build()).await;
    eventually(
        "status on an Ingress created after the takeover",
        CHANGE_TIMEOUT,
        POLL,
        async || {
            let status = ingress_status(&world.admin, ns, "second").await;
            if status == follower_address {
                Ok(())
            } else {
                Err(format!("{status:?}"))
            }
        },
    )
    .await;
    let survivor = &mut replicas[follower];
    survivor.assert_running();
    http_status(survivor.http, "second.example.test", "/", StatusCode::OK)
        .await
        .unwrap();
}
