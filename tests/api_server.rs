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
use kube::api::{Api, ListParams, PostParams};

use kube_support::client::{TlsClient, http_get};
use kube_support::cluster::Rbac;
use kube_support::controller::Controller;
use kube_support::objects::{
    CLASS, CONTROLLER_NAME, apply, apply_cluster, delete, endpoint_slice, ingress, ingress_class,
    ingress_status, service, tls_secret_raw,
};
use kube_support::world::{
    CHANGE_TIMEOUT, POLL, World, backends_seen, get_from, http_status, served_is,
};
use kube_support::{eventually, ms};

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
