//! End-to-end tests of `portcullis serve` in API mode when things around it fail or move:
//! the API server goes away, a replica hands over leadership, the status address comes
//! from a Service. Same harness as `api_server.rs`: a real kube-apiserver and etcd (see
//! `kube_support`), objects applied as an admin, the controller as its restricted
//! identity, real TLS, and `portcullis echo` backends in a network namespace.
//!
//! Each test has its own API server, namespace and network namespace, so tests run in
//! parallel and clean up after themselves, also when they fail. Timings are printed (run
//! with `--nocapture` to see them), never asserted.

mod kube_support;

use std::time::{Duration, Instant};

use http::StatusCode;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, PostParams};

use kube_support::client::TlsClient;
use kube_support::cluster::Rbac;
use kube_support::controller::Controller;
use kube_support::objects::{CLASS, apply, delete, ingress, ingress_status, lease_holder};
use kube_support::world::{CHANGE_TIMEOUT, POLL, World, get_from, http_status};
use kube_support::{eventually, ms};

/// What this proves: with kube-apiserver killed (etcd kept), the data plane keeps serving
/// new connections and handshakes from the last snapshot and /readyz stays 200; changes
/// made meanwhile through a second API server on the same etcd (a changed backend and a
/// deleted Ingress) do not reach the controller while it cannot watch, and are applied
/// once its API server is back on the same address, the deletion included (the watchers
/// resume or re-list, 410 Gone included); a change made after the return applies too.
/// What it cannot prove: a partition where the API server stays up but unreachable for
/// longer than etcd's compaction window (here nothing is compacted).
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
    let (new_holder, _) = eventually(
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
        ms(terminated.elapsed())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publish_service_address_goes_into_status_with_the_charts_own_namespace_role() {
    // As the chart installs it with --watch-namespace: the controller lives in its own
    // namespace, where it may only use its Lease and read its Service.
    let world = World::with(Rbac::GrantedNamespaces).await;
    let ns = &world.namespace;
    let admin = &world.admin;
    let system = world.cluster.create_namespace("portcullis-system").await;
    world.cluster.grant_election_namespace(&system).await;
    let echo = world.netns.spawn_echo("published").await;
    world.service_for("published", &[&echo]).await;

    // The controller's own Service, with a load-balancer address as a cloud would set it
    // (there is no cloud controller here: the test writes the status itself).
    let own: Service = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "portcullis", "namespace": system },
        "spec": { "type": "LoadBalancer",
                  "ports": [{ "name": "https", "port": 443, "targetPort": 443 }] },
    }))
    .unwrap();
    let services = Api::<Service>::namespaced(admin.clone(), &system);
    services.create(&PostParams::default(), &own).await.unwrap();
    let set_balancer_ip = async |ip: &str| {
        let status =
            serde_json::json!({ "status": { "loadBalancer": { "ingress": [{ "ip": ip }] } } });
        services
            .patch_status(
                "portcullis",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&status),
            )
            .await
            .unwrap();
    };
    set_balancer_ip("192.0.2.20").await;

    let first = ingress(ns, "first")
        .class(CLASS)
        .rule("first.example.test", &[("/", "published")]);
    apply(admin, &first.build()).await;
    let mut options = world.options();
    options.election_namespace = system.clone();
    options.watch_namespaces = vec![ns.clone()];
    options.publish_status_address = Vec::new();
    options.extra_args = vec![format!("--publish-service={system}/portcullis")];
    let controller = Controller::start(&world.cluster, &options).await;
    http_status(controller.http, "first.example.test", "/", StatusCode::OK)
        .await
        .unwrap();
    let (_, took) = eventually(
        "the Service's address in status",
        CHANGE_TIMEOUT,
        POLL,
        async || {
            let status = ingress_status(admin, ns, "first").await;
            if status == ["192.0.2.20"] {
                Ok(())
            } else {
                Err(format!("{status:?}"))
            }
        },
    )
    .await;
    eprintln!(
        "publish Service address in status {} ms after ready",
        ms(took)
    );
    let holder = lease_holder(admin, &system, "portcullis-leader").await;
    assert!(
        holder.is_some(),
        "the Lease is in the controller's own namespace"
    );

    // The Service's address changes; the next status sync (here: on the next Ingress
    // change) publishes the new one everywhere.
    set_balancer_ip("192.0.2.21").await;
    let second = ingress(ns, "second")
        .class(CLASS)
        .rule("second.example.test", &[("/", "published")]);
    apply(admin, &second.build()).await;
    eventually(
        "the new Service address in status",
        CHANGE_TIMEOUT,
        POLL,
        async || {
            for name in ["first", "second"] {
                let status = ingress_status(admin, ns, name).await;
                if status != ["192.0.2.21"] {
                    return Err(format!("{name}: {status:?}"));
                }
            }
            Ok(())
        },
    )
    .await;
    assert!(
        !controller.log().contains("forbidden"),
        "no permission was missing:\n{}",
        controller.log_tail(20)
    );
}
