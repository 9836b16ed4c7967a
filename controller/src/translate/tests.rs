//! Translation as tables: manifests in, snapshot and diagnostics out.

use std::net::SocketAddr;

use portcullis_dataplane::snapshot::{BackendId, CertificateId, HostPattern, PathMatch, Snapshot};

use super::*;
use crate::source::manifests::{Object, parse_manifests};

const NOW: i64 = 1_800_000_000; // 2027-01-15

fn objects(yaml: &str) -> Objects {
    let file = ObjectRef::new(Kind::File, "", "test.yaml");
    let (parsed, diagnostics) = parse_manifests(yaml, &file).unwrap();
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let mut objects = Objects::default();
    for object in parsed {
        match object {
            Object::Ingress(o) => objects.ingresses.push(o),
            Object::IngressClass(o) => objects.ingress_classes.push(o),
            Object::Secret(o) => objects.secrets.push(o),
            Object::Service(o) => objects.services.push(o),
            Object::EndpointSlice(o) => objects.endpoint_slices.push(o),
        }
    }
    objects
}

fn config() -> TranslateConfig {
    TranslateConfig {
        class: ClassConfig {
            ingress_class: "portcullis".into(),
            controller_name: "portcullis.dev/ingress-controller".into(),
            watch_ingress_without_class: false,
        },
        default_certificate: None,
    }
}

fn run(yaml: &str) -> Translation {
    translate(
        &objects(yaml),
        &config(),
        &Snapshot::default(),
        NOW,
        &mut SecretCache::default(),
    )
}

fn reasons(t: &Translation) -> Vec<(String, Reason)> {
    t.diagnostics
        .iter()
        .map(|d| (d.object.to_string(), d.reason))
        .collect()
}

/// A `kubernetes.io/tls` Secret for `names`, valid from 2020 to 2030.
fn tls_secret(namespace: &str, name: &str, names: &[&str]) -> String {
    let (crt, key) = certificate(names, 2020, 2030);
    secret_yaml(namespace, name, "kubernetes.io/tls", &crt, &key)
}

fn certificate(names: &[&str], from: i32, to: i32) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.not_before = rcgen::date_time_ymd(from, 1, 1);
    params.not_after = rcgen::date_time_ymd(to, 1, 1);
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

fn secret_yaml(namespace: &str, name: &str, secret_type: &str, crt: &str, key: &str) -> String {
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
         type: {secret_type}\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(crt),
        indent(key)
    )
}

const CLASS: &str = r#"
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: portcullis}
spec: {controller: portcullis.dev/ingress-controller}
"#;

/// A Service `name` with port 80 named http, and a slice with one ready and one
/// not-ready endpoint.
fn service(namespace: &str, name: &str, ready_ip: &str) -> String {
    format!(
        r#"
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec: {{ports: [{{name: http, port: 80, targetPort: 8080}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-abc
  namespace: {namespace}
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}]
endpoints:
- addresses: [{ready_ip}]
  conditions: {{ready: true}}
- addresses: [10.9.9.9]
  conditions: {{ready: false}}
"#
    )
}

fn ingress(namespace: &str, name: &str, created: &str, body: &str) -> String {
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  \
         namespace: {namespace}\n  creationTimestamp: \"{created}\"\nspec:\n  ingressClassName: portcullis\n{body}"
    )
}

const WEB_RULES: &str = r#"
  tls:
  - hosts: [a.example.com]
    secretName: a-tls
  rules:
  - host: a.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}
      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}
"#;

fn web_yaml() -> String {
    [
        CLASS.to_string(),
        service("shop", "web", "10.0.0.1"),
        service("shop", "api", "10.0.0.2"),
        tls_secret("shop", "a-tls", &["a.example.com"]),
        ingress("shop", "web", "2026-01-01T00:00:00Z", WEB_RULES),
    ]
    .concat()
}

#[test]
fn an_ingress_with_tls_and_two_paths_becomes_one_virtual_host() {
    let t = run(&web_yaml());
    assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
    let s = &t.snapshot;
    assert_eq!(s.virtual_hosts.len(), 1);
    let vhost = &s.virtual_hosts[0];
    assert_eq!(vhost.host, HostPattern::Exact("a.example.com".into()));
    assert_eq!(vhost.certificate, Some(CertificateId("shop/a-tls".into())));
    assert!(vhost.tls);
    let paths: Vec<_> = vhost
        .routes
        .iter()
        .map(|r| (&r.path, &r.backend.0, r.https_redirect))
        .collect();
    assert_eq!(
        paths,
        vec![
            (
                &PathMatch::Prefix("/api".into()),
                &"shop/api:80".to_string(),
                true
            ),
            (
                &PathMatch::Prefix("/".into()),
                &"shop/web:http".to_string(),
                true
            ),
        ]
    );
    let endpoints: Vec<_> = s
        .backends
        .iter()
        .map(|b| (b.id.0.as_str(), b.endpoints.clone()))
        .collect();
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert_eq!(
        endpoints,
        vec![
            ("shop/api:80", vec![addr("10.0.0.2:8080")]),
            ("shop/web:http", vec![addr("10.0.0.1:8080")])
        ]
    );
    assert_eq!(s.certificates.len(), 1);
}

#[test]
fn translation_is_deterministic_whatever_the_object_order() {
    let yaml = web_yaml();
    let forward = objects(&yaml);
    let mut reversed = forward.clone();
    reversed.ingresses.reverse();
    reversed.services.reverse();
    reversed.endpoint_slices.reverse();
    reversed.secrets.reverse();
    let a = translate(
        &forward,
        &config(),
        &Snapshot::default(),
        NOW,
        &mut SecretCache::default(),
    );
    let b = translate(
        &reversed,
        &config(),
        &Snapshot::default(),
        NOW,
        &mut SecretCache::default(),
    );
    assert_eq!(a.snapshot, b.snapshot);
    assert_eq!(a.diagnostics, b.diagnostics);
}

#[test]
fn the_oldest_ingress_wins_a_conflict_then_namespace_and_name() {
    let rule = r#"
  rules:
  - host: a.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"#;
    let cases = [
        // (created of x/new, created of y/old, expected winner)
        ("2026-02-01T00:00:00Z", "2026-01-01T00:00:00Z", "y/old"),
        ("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", "x/new"),
        ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "x/new"),
    ];
    for (x_created, y_created, winner) in cases {
        let yaml = [
            CLASS.to_string(),
            service("x", "web", "10.0.0.1"),
            service("y", "web", "10.0.0.2"),
            ingress("y", "old", y_created, rule),
            ingress("x", "new", x_created, rule),
        ]
        .concat();
        let t = run(&yaml);
        let route = &t.snapshot.virtual_hosts[0].routes[0];
        assert_eq!(route.source, winner);
        let loser = if winner == "y/old" {
            "Ingress x/new"
        } else {
            "Ingress y/old"
        };
        assert_eq!(
            reasons(&t),
            vec![(loser.to_string(), Reason::ConflictingRule)]
        );
    }
}

#[test]
fn ingresses_of_other_classes_are_ignored() {
    let yaml = web_yaml().replace("ingressClassName: portcullis", "ingressClassName: nginx");
    let t = run(&yaml);
    assert!(t.snapshot.virtual_hosts.is_empty());
    assert!(t.ingresses.is_empty());
}

#[test]
fn each_broken_secret_gives_its_reason_and_leaves_other_hosts_alone() {
    let (crt, key) = certificate(&["b.example.com"], 2020, 2030);
    let (_, other_key) = certificate(&["b.example.com"], 2020, 2030);
    let (old_crt, old_key) = certificate(&["b.example.com"], 2010, 2011);
    let (wrong_host_crt, wrong_host_key) = certificate(&["other.example.com"], 2020, 2030);
    let cases = [
        ("missing", String::new(), Reason::SecretNotFound),
        (
            "wrong type",
            secret_yaml("shop", "b-tls", "Opaque", &crt, &key),
            Reason::SecretWrongType,
        ),
        (
            "key mismatch",
            secret_yaml("shop", "b-tls", "kubernetes.io/tls", &crt, &other_key),
            Reason::InvalidCertificate,
        ),
        (
            "bad pem",
            secret_yaml(
                "shop",
                "b-tls",
                "kubernetes.io/tls",
                &crt.replace("-----END CERTIFICATE-----", ""),
                &key,
            ),
            Reason::InvalidCertificate,
        ),
        (
            "no key",
            secret_yaml("shop", "b-tls", "kubernetes.io/tls", &crt, ""),
            Reason::InvalidCertificate,
        ),
        (
            "expired",
            secret_yaml("shop", "b-tls", "kubernetes.io/tls", &old_crt, &old_key),
            Reason::CertificateExpired,
        ),
        (
            "host not covered",
            secret_yaml(
                "shop",
                "b-tls",
                "kubernetes.io/tls",
                &wrong_host_crt,
                &wrong_host_key,
            ),
            Reason::CertificateHostMismatch,
        ),
    ];
    let b_rules = r#"
  tls:
  - hosts: [b.example.com]
    secretName: b-tls
  rules:
  - host: b.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"#;
    for (name, secret, reason) in cases {
        let yaml = [
            web_yaml(),
            secret,
            ingress("shop", "b", "2026-03-01T00:00:00Z", b_rules),
        ]
        .concat();
        let t = run(&yaml);
        assert_eq!(
            reasons(&t),
            vec![("Ingress shop/b".to_string(), reason)],
            "{name}"
        );
        let message = &t.diagnostics[0].message;
        assert!(
            message.contains("b-tls"),
            "{name}: the message names the Secret: {message}"
        );

        let b = t
            .snapshot
            .virtual_hosts
            .iter()
            .find(|v| v.host == HostPattern::Exact("b.example.com".into()));
        let b = b.unwrap();
        assert_eq!(
            b.certificate, None,
            "{name}: b gets the default certificate"
        );
        assert!(b.tls, "{name}: b still redirects to https");
        let a = t
            .snapshot
            .virtual_hosts
            .iter()
            .find(|v| v.host == HostPattern::Exact("a.example.com".into()));
        assert_eq!(
            a.unwrap().certificate,
            Some(CertificateId("shop/a-tls".into())),
            "{name}: a is unaffected"
        );
    }
}

#[test]
fn a_secret_that_breaks_after_it_was_good_keeps_its_last_good_certificate() {
    let good = run(&web_yaml());
    let broken_yaml = web_yaml().replace("-----END CERTIFICATE-----", "");
    let t = translate(
        &objects(&broken_yaml),
        &config(),
        &good.snapshot,
        NOW,
        &mut SecretCache::default(),
    );
    assert_eq!(
        reasons(&t),
        vec![("Ingress shop/web".to_string(), Reason::InvalidCertificate)]
    );
    assert!(
        t.diagnostics[0].message.contains("last good"),
        "{}",
        t.diagnostics[0].message
    );
    assert_eq!(t.snapshot.certificates, good.snapshot.certificates);
    assert_eq!(
        t.snapshot.virtual_hosts[0].certificate,
        Some(CertificateId("shop/a-tls".into()))
    );
}

#[test]
fn missing_services_and_ports_are_reported_and_routes_get_no_endpoints() {
    let rules = r#"
  rules:
  - host: c.example.com
    http:
      paths:
      - {path: /a, pathType: Prefix, backend: {service: {name: absent, port: {number: 80}}}}
      - {path: /b, pathType: Prefix, backend: {service: {name: web, port: {number: 9999}}}}
      - {path: /c, pathType: Prefix, backend: {service: {name: web, port: {name: nope}}}}
"#;
    let yaml = [
        CLASS.to_string(),
        service("shop", "web", "10.0.0.1"),
        ingress("shop", "c", "2026-01-01T00:00:00Z", rules),
    ]
    .concat();
    let t = run(&yaml);
    let got: Vec<_> = t
        .diagnostics
        .iter()
        .map(|d| (d.field.as_str(), d.reason))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "spec.rules[0].http.paths[0].backend.service",
                Reason::ServiceNotFound
            ),
            (
                "spec.rules[0].http.paths[1].backend.service",
                Reason::ServicePortNotFound
            ),
            (
                "spec.rules[0].http.paths[2].backend.service",
                Reason::ServicePortNotFound
            ),
        ]
    );
    assert_eq!(t.snapshot.virtual_hosts[0].routes.len(), 3);
    assert!(t.snapshot.backends.iter().all(|b| b.endpoints.is_empty()));
}

#[test]
fn invalid_paths_and_hosts_are_refused_and_the_rest_kept() {
    let rules = r#"
  rules:
  - host: d.example.com
    http:
      paths:
      - {path: /ok, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /a/../b, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /a%2fb, pathType: ImplementationSpecific, backend: {service: {name: web, port: {number: 80}}}}
  - host: bad_host.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"#;
    let yaml = [
        CLASS.to_string(),
        service("shop", "web", "10.0.0.1"),
        ingress("shop", "d", "2026-01-01T00:00:00Z", rules),
    ]
    .concat();
    let t = run(&yaml);
    let got: Vec<_> = t
        .diagnostics
        .iter()
        .map(|d| (d.field.as_str(), d.reason))
        .collect();
    assert_eq!(
        got,
        vec![
            ("spec.rules[0].http.paths[1].path", Reason::InvalidPath),
            ("spec.rules[0].http.paths[2].path", Reason::InvalidPath),
            ("spec.rules[1].host", Reason::InvalidHost),
        ]
    );
    assert_eq!(t.snapshot.virtual_hosts.len(), 1);
    assert_eq!(t.snapshot.virtual_hosts[0].routes.len(), 1);
}

#[test]
fn ssl_redirect_false_turns_the_redirect_off_for_that_ingress_only() {
    let yaml = web_yaml().replace(
        "  creationTimestamp",
        "  annotations: {portcullis.dev/ssl-redirect: \"false\"}\n  creationTimestamp",
    );
    let t = run(&yaml);
    assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
    assert!(
        t.snapshot.virtual_hosts[0]
            .routes
            .iter()
            .all(|r| !r.https_redirect)
    );
    assert!(t.snapshot.virtual_hosts[0].tls);
}

#[test]
fn the_oldest_default_backend_wins() {
    let default = |svc: &str| {
        format!("  defaultBackend: {{service: {{name: {svc}, port: {{number: 80}}}}}}\n")
    };
    let yaml = [
        CLASS.to_string(),
        service("shop", "web", "10.0.0.1"),
        service("shop", "api", "10.0.0.2"),
        ingress("shop", "second", "2026-02-01T00:00:00Z", &default("api")),
        ingress("shop", "first", "2026-01-01T00:00:00Z", &default("web")),
    ]
    .concat();
    let t = run(&yaml);
    assert_eq!(
        t.snapshot.default_backend,
        Some(BackendId("shop/web:80".into()))
    );
    assert_eq!(
        reasons(&t),
        vec![("Ingress shop/second".to_string(), Reason::ConflictingRule)]
    );
}

#[test]
fn a_wildcard_tls_host_gives_rule_hosts_under_it_tls() {
    let rules = r#"
  tls:
  - hosts: ["*.example.com"]
    secretName: wild
  rules:
  - host: x.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"#;
    let yaml = [
        CLASS.to_string(),
        service("shop", "web", "10.0.0.1"),
        tls_secret("shop", "wild", &["*.example.com"]),
        ingress("shop", "w", "2026-01-01T00:00:00Z", rules),
    ]
    .concat();
    let t = run(&yaml);
    assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
    let hosts: Vec<_> = t
        .snapshot
        .virtual_hosts
        .iter()
        .map(|v| (v.host.to_string(), v.tls, v.certificate.is_some()))
        .collect();
    assert_eq!(
        hosts,
        vec![
            ("x.example.com".into(), true, false),
            ("*.example.com".into(), true, true)
        ]
    );
    assert!(t.snapshot.virtual_hosts[0].routes[0].https_redirect);
}

#[test]
fn a_broken_default_certificate_is_reported_on_its_secret() {
    let mut config = config();
    config.default_certificate = Some(("shop".into(), "absent".into()));
    let t = translate(
        &objects(&web_yaml()),
        &config,
        &Snapshot::default(),
        NOW,
        &mut SecretCache::default(),
    );
    assert_eq!(
        reasons(&t),
        vec![("Secret shop/absent".to_string(), Reason::SecretNotFound)]
    );
    assert_eq!(t.snapshot.default_certificate, None);

    config.default_certificate = Some(("shop".into(), "a-tls".into()));
    let t = translate(
        &objects(&web_yaml()),
        &config,
        &Snapshot::default(),
        NOW,
        &mut SecretCache::default(),
    );
    assert_eq!(
        t.snapshot.default_certificate,
        Some(CertificateId("shop/a-tls".into()))
    );
}
