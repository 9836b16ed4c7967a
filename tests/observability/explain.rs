//! `portcullis explain` on folders: exit 0 and the certificate's source on a healthy one,
//! in table and single-host mode, as text and JSON; the right reason, words and exit 1
//! for each certificate problem; exit 2 for bad usage.

use serde_json::json;

use crate::observability_support::{explain, fingerprint, key_traces, run_portcullis};
use crate::support::backend::ClosedPort;
use crate::support::manifests::{
    Ingress, Manifests, NS, ingress_class, secret, service, tls_secret,
};
use crate::support::pki::{Leaf, TestCa};

#[test]
fn a_healthy_folder_exits_0_in_every_mode() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["a.example.com"]);
    // A ready endpoint for explain to list; it never connects to it.
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
        assert!(
            host.stdout.contains(needle),
            "no {needle:?} in:\n{}",
            host.stdout
        );
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
fn each_certificate_problem_is_named_and_exits_1() {
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
    let pair = |leaf: &Leaf| {
        [
            ("tls.crt", leaf.cert_pem.clone()),
            ("tls.key", leaf.key_pem.clone()),
        ]
    };

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
    objects.push(secret(
        NS,
        "opaque-tls",
        "Opaque",
        &[(crt.0, &crt.1), (key.0, &key.1)],
    ));
    objects.push(site("opaque", "opaque.example.com", "opaque-tls"));

    // Bad PEM, a key of another certificate, and a key joined onto one line.
    let good = ca.leaf(&["badpem.example.com"]);
    objects.push(secret(
        NS,
        "badpem-tls",
        "kubernetes.io/tls",
        &[
            ("tls.crt", "this is not a certificate"),
            ("tls.key", &good.key_pem),
        ],
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
            assert!(
                !run.stdout.contains(&trace),
                "explain printed key material:\n{}",
                run.stdout
            );
        }
        assert!(!run.stdout.contains("PRIVATE KEY"), "{}", run.stdout);
    }
}

#[test]
fn a_missing_folder_or_a_bad_host_exits_2() {
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
