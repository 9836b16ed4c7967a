//! `portcullis explain`: what Portcullis does for a host, and why, for people.
//!
//! It translates the same objects with the same code as `serve`, then reads the result
//! the way a handshake and a request would: which certificate the host's SNI gets (and,
//! when it is the default one, the diagnostics that say why), which rules serve the host,
//! which route a path takes, and which endpoints are ready. Without a host it prints a
//! table of every host and its certificate state. The exit code is 1 when anything is
//! wrong, so a GitOps pipeline can gate on it.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::time::Duration;

use k8s_openapi::api::networking::v1::Ingress;
use portcullis_dataplane::routing::{normalize_host, normalize_path, path_matches};
use portcullis_dataplane::snapshot::{HostPattern, Snapshot, VirtualHost};
use portcullis_dataplane::tls::{CertificateInfo, name_covers};
use serde::Serialize;

use crate::cli::{ExplainArgs, OutputFormat};
use crate::debug::path_view;
use crate::pipeline::now_unix;
use crate::serve::translate_config;
use crate::source::kube::{KubeStores, client};
use crate::source::manifests::ManifestFolder;
use crate::translate::backend::namespace_of;
use crate::translate::{
    ClassDecision, Diagnostic, Kind, Objects, Reason, SecretCache, Translation, translate,
};

/// Why explain could not run at all (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("{0}")]
    Source(String),
    #[error("{0:?} is not a valid host")]
    BadHost(String),
    #[error("{0:?} is not a valid path: {1}")]
    BadPath(String, String),
}

#[derive(Debug, Serialize)]
pub struct HostReport {
    pub host: String,
    /// The rule host pattern that serves it: the host itself, a wildcard, or `*` for
    /// rules without a host; `None` when nothing serves it.
    pub served_by: Option<String>,
    pub ingresses: Vec<IngressReport>,
    pub certificate: CertificateReport,
    pub routes: Vec<RouteReport>,
    pub path: Option<PathReport>,
    pub problems: Vec<Diagnostic>,
    pub ok: bool,
}

#[derive(Debug, Serialize)]
pub struct IngressReport {
    pub ingress: String,
    pub class: ClassDecision,
}

#[derive(Debug, Serialize)]
pub struct CertificateReport {
    /// `secret`, `default` (the --default-certificate) or `placeholder`.
    pub source: &'static str,
    pub secret: Option<String>,
    pub info: Option<CertificateInfo>,
    /// Why the host does not get a certificate of its own, when it does not.
    pub why: Vec<String>,
    pub ok: bool,
}

#[derive(Debug, Serialize)]
pub struct RouteReport {
    pub path: String,
    pub path_type: &'static str,
    pub backend: String,
    pub ingress: String,
    pub ready_endpoints: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PathReport {
    pub path: String,
    /// Index into `routes` of the route that wins; `None` when none matches.
    pub route: Option<usize>,
    /// Where the request goes: a backend, the default backend, or nowhere (404).
    pub outcome: String,
    pub ok: bool,
}

/// Runs the command; returns the exit code.
pub async fn run(args: ExplainArgs) -> Result<u8, ExplainError> {
    let (objects, source_diagnostics) = load(&args).await?;
    let config = translate_config(&args.selection);
    let mut translation = translate(
        &objects,
        &config,
        &Snapshot::default(),
        now_unix(),
        &mut SecretCache::default(),
    );
    translation.diagnostics.extend(source_diagnostics);

    let colour = args.output == OutputFormat::Text && std::io::stdout().is_terminal();
    let ok = match &args.host {
        Some(host) => {
            let report = explain_host(&translation, &objects, host, args.path.as_deref())?;
            match args.output {
                OutputFormat::Json => println!("{}", to_json(&report)),
                OutputFormat::Text => print!("{}", render_host(&report, colour)),
            }
            report.ok
        }
        None => {
            let reports = explain_all(&translation, &objects)?;
            match args.output {
                OutputFormat::Json => println!("{}", to_json(&reports)),
                OutputFormat::Text => print!("{}", render_table(&reports, &translation, colour)),
            }
            reports.iter().all(|r| r.ok) && translation.diagnostics.is_empty()
        }
    };
    Ok(if ok { 0 } else { 1 })
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

async fn load(args: &ExplainArgs) -> Result<(Objects, Vec<Diagnostic>), ExplainError> {
    if let Some(dir) = &args.manifests {
        let mut folder =
            ManifestFolder::open(dir).map_err(|e| ExplainError::Source(e.to_string()))?;
        let contents = folder
            .load()
            .map_err(|e| ExplainError::Source(e.to_string()))?;
        return Ok((contents.objects, contents.diagnostics));
    }
    let client = client(args.kubeconfig.as_deref())
        .await
        .map_err(|e| ExplainError::Source(e.to_string()))?;
    let (changes, _events) = tokio::sync::mpsc::channel(1);
    let stores = KubeStores::start(&client, &args.watch_namespaces, changes);
    tokio::time::timeout(Duration::from_secs(30), stores.wait_until_ready())
        .await
        .map_err(|_| {
            ExplainError::Source("the Kubernetes API did not answer within 30 s".into())
        })?;
    Ok((stores.objects(), Vec::new()))
}

fn explain_all(
    translation: &Translation,
    objects: &Objects,
) -> Result<Vec<HostReport>, ExplainError> {
    translation
        .snapshot
        .virtual_hosts
        .iter()
        .filter(|v| v.host != HostPattern::Any)
        .map(|v| explain_host(translation, objects, &v.host.to_string(), None))
        .collect()
}

/// Explains one host, and optionally one path on it.
pub fn explain_host(
    translation: &Translation,
    objects: &Objects,
    raw_host: &str,
    path: Option<&str>,
) -> Result<HostReport, ExplainError> {
    let host = if raw_host.starts_with("*.") {
        raw_host.to_ascii_lowercase()
    } else {
        normalize_host(raw_host)
            .map_err(|_| ExplainError::BadHost(raw_host.into()))?
            .into_owned()
    };
    let snapshot = &translation.snapshot;

    // The Ingresses that name this host in a rule or under tls, and the decision that made
    // each of them ours.
    let involved = involved_ingresses(objects, &host);
    let ingresses: Vec<IngressReport> = translation
        .ingresses
        .iter()
        .filter(|o| involved.contains(&o.object.key()))
        .map(|o| IngressReport {
            ingress: o.object.key(),
            class: o.decision.clone(),
        })
        .collect();
    let mut problems: Vec<Diagnostic> = translation
        .diagnostics
        .iter()
        .filter(|d| d.object.kind == Kind::Ingress && involved.contains(&d.object.key()))
        .cloned()
        .collect();

    // The certificate a handshake with this SNI gets: exact, wildcard, default.
    let own = |pattern: &HostPattern| snapshot.virtual_hosts.iter().find(|v| v.host == *pattern);
    let exact = own(&HostPattern::parse(&host));
    let wildcard = host
        .split_once('.')
        .and_then(|(_, parent)| own(&HostPattern::Wildcard(parent.into())));
    let with_cert = [exact, wildcard]
        .into_iter()
        .flatten()
        .find(|v| v.certificate.is_some());
    let wants_tls = [exact, wildcard].into_iter().flatten().any(|v| v.tls);
    let certificate = match with_cert.and_then(|v| v.certificate.as_ref()) {
        Some(id) => CertificateReport {
            source: "secret",
            secret: Some(id.0.clone()),
            info: translation.certificates.get(id).cloned(),
            why: Vec::new(),
            ok: true,
        },
        None => {
            let mut why: Vec<String> = problems
                .iter()
                .filter(|d| is_certificate_reason(d.reason))
                .map(|d| format!("{}: {}", d.object.key(), d.message))
                .collect();
            if !wants_tls {
                why.push("no Ingress lists this host under spec.tls".into());
            } else if why.is_empty() {
                why.push("its Ingress lists it under spec.tls without a secretName".into());
            }
            let default = snapshot.default_certificate.as_ref();
            if default.is_none() {
                problems.extend(
                    translation
                        .diagnostics
                        .iter()
                        .filter(|d| d.object.kind == Kind::Secret)
                        .cloned(),
                );
            }
            CertificateReport {
                source: if default.is_some() {
                    "default"
                } else {
                    "placeholder"
                },
                secret: default.map(|d| d.0.clone()),
                info: default
                    .and_then(|d| translation.certificates.get(d))
                    .cloned(),
                why,
                ok: !wants_tls,
            }
        }
    };
    let certificate = CertificateReport {
        ok: certificate.ok
            && certificate
                .info
                .as_ref()
                .is_none_or(|i| i.covers(&host) || !wants_tls),
        ..certificate
    };

    // The rules that serve the host: its own, a wildcard's, else the host-less ones.
    let vhost: Option<&VirtualHost> = [exact, wildcard, own(&HostPattern::Any)]
        .into_iter()
        .flatten()
        .find(|v| !v.routes.is_empty());
    let routes: Vec<RouteReport> = vhost
        .map(|v| {
            v.routes
                .iter()
                .map(|r| {
                    let (path, path_type) = path_view(&r.path);
                    RouteReport {
                        path,
                        path_type,
                        backend: r.backend.0.clone(),
                        ingress: r.source.clone(),
                        ready_endpoints: endpoints(snapshot, &r.backend.0),
                    }
                })
                .collect()
        })
        .unwrap_or_default();

    let path = match path {
        None => None,
        Some(raw) => {
            let normalized = normalize_path(raw)
                .map_err(|e| ExplainError::BadPath(raw.into(), e.to_string()))?;
            let route = vhost.and_then(|v| {
                v.routes
                    .iter()
                    .position(|r| path_matches(&r.path, &normalized))
            });
            let (outcome, ok) = match (route, &snapshot.default_backend) {
                (Some(i), _) => {
                    let ready = !routes[i].ready_endpoints.is_empty();
                    let note = if ready {
                        ""
                    } else {
                        " (no ready endpoints: 503)"
                    };
                    (format!("{}{note}", routes[i].backend), ready)
                }
                (None, Some(default)) => {
                    let ready = !endpoints(snapshot, &default.0).is_empty();
                    (format!("default backend {}", default.0), ready)
                }
                (None, None) => (
                    "no rule matches and there is no default backend: 404".into(),
                    false,
                ),
            };
            Some(PathReport {
                path: normalized.into_owned(),
                route,
                outcome,
                ok,
            })
        }
    };

    let endpoints_ok = path
        .as_ref()
        .map_or(routes.iter().all(|r| !r.ready_endpoints.is_empty()), |p| {
            p.ok
        });
    let ok = certificate.ok && endpoints_ok && problems.is_empty() && vhost.is_some();
    Ok(HostReport {
        host,
        served_by: vhost.map(|v| v.host.to_string()),
        ingresses,
        certificate,
        routes,
        path,
        problems,
        ok,
    })
}

fn is_certificate_reason(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::InvalidCertificate
            | Reason::CertificateExpired
            | Reason::CertificateHostMismatch
            | Reason::SecretNotFound
            | Reason::SecretWrongType
            | Reason::ConflictingRule
    )
}

fn endpoints(snapshot: &Snapshot, backend: &str) -> Vec<String> {
    snapshot
        .backends
        .iter()
        .find(|b| b.id.0 == backend)
        .map(|b| b.endpoints.iter().map(|e| e.to_string()).collect())
        .unwrap_or_default()
}

/// `namespace/name` of every Ingress that names `host` in a rule or under tls (a
/// wildcard that covers it counts).
fn involved_ingresses(objects: &Objects, host: &str) -> BTreeSet<String> {
    let covers = |pattern: &str| {
        let pattern = pattern.to_ascii_lowercase();
        pattern == host || name_covers(&pattern, host)
    };
    let mut out = BTreeSet::new();
    for ingress in &objects.ingresses {
        if names_host(ingress, &covers) {
            let key = format!(
                "{}/{}",
                namespace_of(&ingress.metadata),
                ingress.metadata.name.clone().unwrap_or_default()
            );
            out.insert(key);
        }
    }
    out
}

fn names_host(ingress: &Ingress, covers: &dyn Fn(&str) -> bool) -> bool {
    let Some(spec) = &ingress.spec else {
        return false;
    };
    let rules = spec
        .rules
        .iter()
        .flatten()
        .filter_map(|r| r.host.as_deref());
    let tls = spec
        .tls
        .iter()
        .flatten()
        .flat_map(|t| t.hosts.iter().flatten())
        .map(String::as_str);
    rules.chain(tls).any(covers)
}

struct Paint {
    on: bool,
}

impl Paint {
    fn good(&self, text: &str) -> String {
        if self.on {
            format!("\x1b[32m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
    fn bad(&self, text: &str) -> String {
        if self.on {
            format!("\x1b[31m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
    fn state(&self, ok: bool) -> String {
        if ok {
            self.good("ok")
        } else {
            self.bad("PROBLEM")
        }
    }
}

fn render_host(report: &HostReport, colour: bool) -> String {
    let paint = Paint { on: colour };
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!(
        "Host         {}   {}",
        report.host,
        paint.state(report.ok)
    ));
    match &report.served_by {
        Some(pattern) => line(format!("Served by    rules for {pattern}")),
        None => line(format!(
            "Served by    {}",
            paint.bad("nothing: no rule serves this host")
        )),
    }
    for ingress in &report.ingresses {
        line(format!(
            "Ingress      {}  ({})",
            ingress.ingress,
            class_text(&ingress.class)
        ));
    }

    let cert = &report.certificate;
    let source = match (cert.source, &cert.secret) {
        ("secret", Some(secret)) => format!("Secret {secret}"),
        ("default", Some(secret)) => format!("the default certificate, Secret {secret}"),
        _ => "the generated placeholder (no --default-certificate)".to_owned(),
    };
    line(format!("Certificate  {source}   {}", paint.state(cert.ok)));
    if let Some(info) = &cert.info {
        line(format!("  subject    {}", info.subject));
        line(format!("  names      {}", info.dns_names.join(", ")));
        line(format!("  issuer     {}", info.issuer));
        line(format!("  expires    {}", info.not_after));
        line(format!("  sha256     {}", info.sha256_fingerprint));
    }
    for why in &cert.why {
        line(format!("  why        {why}"));
    }

    if !report.routes.is_empty() {
        line("Routes       (in match order)".into());
        let width = report
            .routes
            .iter()
            .map(|r| r.path.len() + r.path_type.len() + 1)
            .max()
            .unwrap_or(0);
        let backend_width = report
            .routes
            .iter()
            .map(|r| r.backend.len())
            .max()
            .unwrap_or(0);
        for (i, route) in report.routes.iter().enumerate() {
            let chosen = report.path.as_ref().and_then(|p| p.route) == Some(i);
            let marker = if chosen { "->" } else { "  " };
            let matcher = format!("{} {}", route.path_type, route.path);
            let ready = match route.ready_endpoints.len() {
                0 => paint.bad("no ready endpoints"),
                n => format!("{n} ready: {}", route.ready_endpoints.join(", ")),
            };
            line(format!(
                "  {marker} {matcher:width$}  {:backend_width$}  [{}]  {ready}",
                route.backend, route.ingress
            ));
        }
    }
    if let Some(path) = &report.path {
        line(format!(
            "Path         {} -> {}   {}",
            path.path,
            path.outcome,
            paint.state(path.ok)
        ));
    }
    if !report.problems.is_empty() {
        line("Problems".into());
        for d in &report.problems {
            line(format!(
                "  {} {}: {}: {}",
                paint.bad(d.reason.as_str()),
                d.object,
                d.field,
                d.message
            ));
        }
    }
    out
}

fn class_text(decision: &ClassDecision) -> String {
    match decision {
        ClassDecision::ClassName(c) => format!("ours: spec.ingressClassName is {c}"),
        ClassDecision::DefaultClass(c) => format!("ours: no class named, {c} is the default class"),
        ClassDecision::WithoutClass => "ours: no class named, --watch-ingress-without-class".into(),
        ClassDecision::LegacyAnnotation(c) => format!("ours: kubernetes.io/ingress.class is {c}"),
        ClassDecision::NotOurs(why) => format!("not ours: {why}"),
    }
}

fn render_table(reports: &[HostReport], translation: &Translation, colour: bool) -> String {
    let paint = Paint { on: colour };
    let headers = ["HOST", "CERTIFICATE", "EXPIRES", "ROUTES", "STATE"];
    let rows: Vec<[String; 5]> = reports
        .iter()
        .map(|r| {
            let cert = match (r.certificate.source, &r.certificate.secret) {
                ("secret", Some(s)) => s.clone(),
                ("default", Some(s)) => format!("default ({s})"),
                _ => "placeholder".into(),
            };
            let expires = r
                .certificate
                .info
                .as_ref()
                .map(|i| i.not_after.clone())
                .unwrap_or_else(|| "-".into());
            let state = if r.ok {
                "ok".to_owned()
            } else {
                let reasons: BTreeSet<&str> =
                    r.problems.iter().map(|d| d.reason.as_str()).collect();
                if reasons.is_empty() {
                    if r.certificate.ok {
                        "no ready endpoints".into()
                    } else {
                        "certificate".into()
                    }
                } else {
                    reasons.into_iter().collect::<Vec<_>>().join(",")
                }
            };
            [
                r.host.clone(),
                cert,
                expires,
                r.routes.len().to_string(),
                state,
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let fmt_row = |cells: [&str; 5], state: String| {
        format!(
            "{:w0$}  {:w1$}  {:w2$}  {:>w3$}  {}\n",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            state,
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        )
    };
    out.push_str(&fmt_row(
        [headers[0], headers[1], headers[2], headers[3], ""],
        headers[4].to_owned(),
    ));
    for (row, report) in rows.iter().zip(reports) {
        let state = if report.ok {
            paint.good(&row[4])
        } else {
            paint.bad(&row[4])
        };
        out.push_str(&fmt_row([&row[0], &row[1], &row[2], &row[3], ""], state));
    }
    let other: Vec<&Diagnostic> = translation
        .diagnostics
        .iter()
        .filter(|d| !reports.iter().any(|r| r.problems.contains(d)))
        .collect();
    if !other.is_empty() {
        out.push_str("\nOther problems\n");
        for d in other {
            out.push_str(&format!(
                "  {} {}: {}: {}\n",
                paint.bad(d.reason.as_str()),
                d.object,
                d.field,
                d.message
            ));
        }
    }
    out
}
