//! What the observability tests need beyond the shared harness in `support/`: a start of
//! `portcullis serve` that does not wait for readiness (and keeps stdout and stderr
//! apart), the admin endpoints read with their bodies, a strict parser of the OpenMetrics
//! text `/metrics` serves, `portcullis explain` as a bounded child process, keys in their
//! traditional PEM forms, hand-made TLS ClientHellos, and unguessable strings.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::support::client::{STEP, bounded};
use crate::support::manifests::Manifests;
use crate::support::pki::TestCa;
use crate::support::process::{BIN, wait_until};

// ---------------------------------------------------------------------------------------
// The process

/// `portcullis --log-format json serve` on free loopback ports, started without waiting
/// for `/readyz`; stdout and stderr go to separate files. Killed when dropped; its output
/// is printed if the test failed.
pub struct Launched {
    child: Child,
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// How long a start may take before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(20);

impl Launched {
    /// Starts the process and waits until the admin port answers at all (any status);
    /// retries with other ports when one was taken between choosing and binding.
    pub async fn until_admin_answers(manifests: &Manifests, extra: &[&str]) -> Launched {
        let mut last = String::new();
        for attempt in 0..5 {
            let mut launched = Launched::spawn(manifests, extra, attempt);
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if !launched.is_running() {
                    last = launched.stderr();
                    assert!(
                        last.contains("cannot listen") || last.contains("Address already in use"),
                        "portcullis exited before its admin port answered; stderr:\n{last}"
                    );
                    break;
                }
                if admin_fetch(launched.admin, "/healthz").await.is_some() {
                    return launched;
                }
                assert!(
                    Instant::now() < deadline,
                    "the admin port did not answer within {START_TIMEOUT:?}; stderr:\n{}",
                    launched.stderr()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        panic!("portcullis could not bind free ports in 5 attempts; last stderr:\n{last}");
    }

    /// Starts the process and waits for `/readyz` to answer 200.
    pub async fn ready(manifests: &Manifests, extra: &[&str]) -> Launched {
        let launched = Launched::until_admin_answers(manifests, extra).await;
        let admin = launched.admin;
        let mut ready = false;
        for _ in 0..400 {
            if admin_fetch(admin, "/readyz").await.map(|r| r.status) == Some(200) {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(ready, "not ready in 10 s; stderr:\n{}", launched.stderr());
        launched
    }

    fn spawn(manifests: &Manifests, extra: &[&str], attempt: usize) -> Launched {
        let [https, http, admin] = free_ports();
        let stdout = manifests.scratch().join(format!("launched-{attempt}.stdout"));
        let stderr = manifests.scratch().join(format!("launched-{attempt}.stderr"));
        let mut command = Command::new(BIN);
        command
            .args(["--log-format", "json", "serve", "--manifests"])
            .arg(manifests.dir())
            .args(["--https-addr", &https.to_string()])
            .args(["--http-addr", &http.to_string()])
            .args(["--admin-addr", &admin.to_string()])
            .args(["--redirect-https-port", &https.port().to_string()]);
        if !extra.contains(&"--shutdown-delay") {
            command.args(["--shutdown-delay", "0s"]);
        }
        let child = command
            .args(extra)
            .env_clear()
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("create the stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("create the stderr file"))
            .spawn()
            .expect("start portcullis");
        Launched {
            child,
            https,
            http,
            admin,
            stdout,
            stderr,
        }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("poll the child").is_none()
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "----- portcullis stderr -----\n{}----- stdout -----\n{}----- end -----",
                self.stderr(),
                self.stdout()
            );
        }
    }
}

/// Three distinct free loopback ports (bound together, then released).
fn free_ports() -> [SocketAddr; 3] {
    let listeners: Vec<StdListener> = (0..3)
        .map(|_| StdListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    let addr = |i: usize| listeners[i].local_addr().expect("local address");
    [addr(0), addr(1), addr(2)]
}

/// The JSON log lines of `text` whose tracing target is `access`.
pub fn access_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["target"] == "access")
        .collect()
}

// ---------------------------------------------------------------------------------------
// The admin endpoints

/// An admin answer, read to the end.
#[derive(Debug)]
pub struct AdminReply {
    pub status: u16,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// GET `path` on the admin port with `Connection: close`; `None` if no complete answer
/// came within 5 s.
pub async fn admin_fetch(admin: SocketAddr, path: &str) -> Option<AdminReply> {
    let exchange = async {
        let mut stream = TcpStream::connect(admin).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8(response).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Some(AdminReply {
            status,
            headers,
            body: body.to_owned(),
        })
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// GET /metrics, parsed strictly; fails the test if it is not valid OpenMetrics text.
pub async fn scrape(admin: SocketAddr) -> (Exposition, String) {
    let reply = admin_fetch(admin, "/metrics")
        .await
        .expect("GET /metrics answered");
    assert_eq!(reply.status, 200, "GET /metrics: {reply:?}");
    assert_eq!(
        reply.headers.get("content-type").map(String::as_str),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let parsed = parse_openmetrics(&reply.body)
        .unwrap_or_else(|e| panic!("/metrics is not valid OpenMetrics: {e}\n{}", reply.body));
    (parsed, reply.body)
}

// ---------------------------------------------------------------------------------------
// A strict OpenMetrics text parser

/// One metric family's metadata.
#[derive(Debug, Clone)]
pub struct Family {
    pub kind: String,
    pub help: String,
}

/// One sample line.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub family: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed exposition.
#[derive(Debug, Default)]
pub struct Exposition {
    pub families: BTreeMap<String, Family>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the sample with exactly these labels.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }

    /// Every sample of `name`.
    pub fn series(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    /// The sum of the samples of `name` whose labels include all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series(name)
            .into_iter()
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }
}

/// The sample-name suffixes each OpenMetrics type allows.
fn suffixes(kind: &str) -> &'static [&'static str] {
    match kind {
        "counter" => &["_total", "_created"],
        "gauge" | "unknown" | "stateset" => &[""],
        "histogram" => &["_bucket", "_sum", "_count", "_created"],
        "gaugehistogram" => &["_bucket", "_gsum", "_gcount"],
        "summary" => &["", "_sum", "_count", "_created"],
        "info" => &["_info"],
        _ => &[],
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A number as OpenMetrics writes it: a decimal float, `+Inf`, `-Inf` or `NaN`.
fn parse_number(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => return Ok(f64::INFINITY),
        "-Inf" => return Ok(f64::NEG_INFINITY),
        "NaN" => return Ok(f64::NAN),
        _ => {}
    }
    let plain = !text.is_empty()
        && text.chars().any(|c| c.is_ascii_digit())
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
    if !plain {
        return Err(format!("{text:?} is not a number"));
    }
    text.parse::<f64>()
        .map_err(|e| format!("{text:?} is not a number: {e}"))
}

/// `{name="value",...}` at the start of `text`; the labels and the rest of the text.
fn parse_labels(text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let Some(mut rest) = text.strip_prefix('{') else {
        return Ok((labels, text));
    };
    if let Some(after) = rest.strip_prefix('}') {
        return Err(format!("empty label braces before {after:?}"));
    }
    loop {
        let (name, after) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("a label without =\" in {text:?}"))?;
        if !is_label_name(name) {
            return Err(format!("{name:?} is not a valid label name"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let Some((i, c)) = chars.next() else {
                return Err(format!("an unterminated label value in {text:?}"));
            };
            match c {
                '"' => break i,
                '\\' => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("a bad escape {other:?} in {text:?}")),
                },
                '\n' => return Err("a raw newline in a label value".into()),
                c => value.push(c),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name:?} twice in {text:?}"));
        }
        rest = &after[end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
            if rest.starts_with('}') {
                return Err(format!("a trailing comma in {text:?}"));
            }
        } else if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        } else {
            return Err(format!("expected , or }} in {text:?}"));
        }
    }
}

/// Parses OpenMetrics text strictly: every line is `# HELP`, `# TYPE`, `# UNIT` or a
/// sample `name{labels} value [timestamp]`; every sample belongs, by its suffix, to the
/// family declared last, which has both `# TYPE` and `# HELP`; a family's lines are
/// together; no sample repeats; counters are not negative; histogram buckets are
/// cumulative and end at `+Inf` equal to `_count`; the text ends with `# EOF`.
pub fn parse_openmetrics(text: &str) -> Result<Exposition, String> {
    let body = text
        .strip_suffix("# EOF\n")
        .or_else(|| text.strip_suffix("# EOF"))
        .ok_or("the text does not end with # EOF")?;
    let mut out = Exposition::default();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeMap<String, String> = BTreeMap::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut seen: BTreeSet<(String, BTreeMap<String, String>)> = BTreeSet::new();

    for (number, line) in body.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", number + 1);
        if line.is_empty() {
            return Err(at("an empty line".into()));
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let keyword = parts.next().unwrap_or_default();
            let name = parts.next().unwrap_or_default().to_owned();
            let rest = parts.next().unwrap_or_default().to_owned();
            if !is_metric_name(&name) {
                return Err(at(format!("{name:?} is not a metric name")));
            }
            // A new family starts; the previous one may not come back.
            if current.as_deref() != Some(name.as_str()) {
                if finished.contains(&name) {
                    return Err(at(format!("family {name} is split")));
                }
                if let Some(previous) = current.replace(name.clone()) {
                    finished.insert(previous);
                }
            }
            match keyword {
                "TYPE" => {
                    if suffixes(&rest).is_empty() {
                        return Err(at(format!("unknown type {rest:?}")));
                    }
                    if types.insert(name.clone(), rest).is_some() {
                        return Err(at("a second # TYPE".into()));
                    }
                }
                "HELP" => {
                    if helps.insert(name.clone(), rest).is_some() {
                        return Err(at("a second # HELP".into()));
                    }
                }
                "UNIT" => {}
                other => return Err(at(format!("unknown comment {other:?}"))),
            }
            if out.samples.iter().any(|s| s.family == name) {
                return Err(at("metadata after the family's samples".into()));
            }
            continue;
        }
        if line.starts_with('#') {
            return Err(at("a comment that is not # HELP, # TYPE or # UNIT".into()));
        }

        // A sample of the current family.
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| at("no value".into()))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(at(format!("{name:?} is not a metric name")));
        }
        let (labels, rest) = parse_labels(&line[name_end..]).map_err(at)?;
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("no space before the value".into()))?;
        let mut fields = rest.split(' ');
        let value = parse_number(fields.next().unwrap_or_default()).map_err(at)?;
        if let Some(timestamp) = fields.next() {
            parse_number(timestamp).map_err(at)?;
        }
        if fields.next().is_some() {
            return Err(at("extra fields after the value".into()));
        }
        let family = current
            .clone()
            .ok_or_else(|| at("a sample before any # TYPE".into()))?;
        let kind = types
            .get(&family)
            .ok_or_else(|| at(format!("family {family} has no # TYPE")))?;
        if !helps.contains_key(&family) {
            return Err(at(format!("family {family} has no # HELP")));
        }
        let suffix = name
            .strip_prefix(family.as_str())
            .ok_or_else(|| at(format!("the sample is not of family {family}")))?;
        if !suffixes(kind).contains(&suffix) {
            return Err(at(format!("suffix {suffix:?} is not allowed for a {kind}")));
        }
        if kind == "counter" && !(value >= 0.0) {
            return Err(at("a counter below zero".into()));
        }
        if suffix == "_bucket" && !labels.contains_key("le") {
            return Err(at("a bucket without le".into()));
        }
        if !seen.insert((name.to_owned(), labels.clone())) {
            return Err(at("a repeated sample".into()));
        }
        out.samples.push(Sample {
            name: name.to_owned(),
            family,
            labels,
            value,
        });
    }
    for (family, kind) in &types {
        if !helps.contains_key(family) {
            return Err(format!("family {family} has # TYPE but no # HELP"));
        }
        out.families.insert(
            family.clone(),
            Family {
                kind: kind.clone(),
                help: helps[family].clone(),
            },
        );
    }
    check_histograms(&out)?;
    Ok(out)
}

/// Buckets are cumulative, end with `+Inf`, and `+Inf` equals `_count`.
fn check_histograms(exposition: &Exposition) -> Result<(), String> {
    for (family, meta) in &exposition.families {
        if meta.kind != "histogram" {
            continue;
        }
        let mut groups: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        for sample in exposition.series(&format!("{family}_bucket")) {
            let mut rest = sample.labels.clone();
            let le = parse_number(&rest.remove("le").unwrap_or_default())?;
            groups.entry(rest).or_default().push((le, sample.value));
        }
        for (labels, mut buckets) in groups {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            if buckets.windows(2).any(|w| w[1].1 < w[0].1) {
                return Err(format!("{family}{labels:?}: buckets are not cumulative"));
            }
            let last = buckets.last().copied().unwrap_or((0.0, 0.0));
            if last.0 != f64::INFINITY {
                return Err(format!("{family}{labels:?}: no +Inf bucket"));
            }
            let count = exposition
                .series(&format!("{family}_count"))
                .into_iter()
                .find(|s| s.labels == labels)
                .map(|s| s.value);
            if count != Some(last.1) {
                return Err(format!(
                    "{family}{labels:?}: +Inf bucket {} but _count {count:?}",
                    last.1
                ));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// `portcullis explain`

/// What a finished command printed, and its exit code.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// Runs `portcullis ARGS`; kills it if it has not exited within 20 s.
pub fn run_portcullis(args: &[&str]) -> Ran {
    let mut child = Command::new(BIN)
        .args(args)
        .env_clear()
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start portcullis");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("poll the child").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("collect output");
            panic!(
                "portcullis {args:?} was still running after 20 s; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("collect output");
    Ran {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `portcullis explain ARGS --manifests DIR`.
pub fn explain(dir: &Path, args: &[&str]) -> Ran {
    let mut all = vec!["explain"];
    all.extend(args);
    all.push("--manifests");
    all.push(dir.to_str().expect("a UTF-8 path"));
    run_portcullis(&all)
}

// ---------------------------------------------------------------------------------------
// Keys and certificates

/// The same private key in its traditional PEM form (`openssl pkey -traditional`):
/// PKCS#1 `RSA PRIVATE KEY` for RSA, SEC1 `EC PRIVATE KEY` for ECDSA.
pub fn traditional_key(pkcs8_pem: &str, expected_label: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["pkey", "-traditional"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run openssl ({e}); install it with: apt-get install openssl")
        });
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("openssl stdin");
        stdin.write_all(pkcs8_pem.as_bytes()).expect("write the key");
    }
    let output = child.wait_with_output().expect("openssl output");
    assert!(
        output.status.success(),
        "openssl pkey -traditional failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pem = String::from_utf8(output.stdout).expect("PEM is text");
    assert!(
        pem.starts_with(&format!("-----BEGIN {expected_label}-----")),
        "openssl gave another form:\n{}",
        pem.lines().next().unwrap_or_default()
    );
    pem
}

/// The base64 body of a PEM block: its lines between BEGIN and END.
pub fn pem_body_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Standard base64 (with padding) to bytes.
pub fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("{c} is not base64"),
        }
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

/// Ways a private key could show up in text: its PEM body (whole and line by line), and
/// its bytes as a Rust byte list (`[77, 73, ...]`) or as hex.
pub fn key_traces(key_pem: &str) -> Vec<String> {
    let lines = pem_body_lines(key_pem);
    let body: String = lines.concat();
    let der = base64_decode(&body);
    let mut traces = lines.clone();
    traces.push(body.clone());
    // The body as bytes, as `{:?}` prints a Vec<u8>.
    let decimal: Vec<String> = body.bytes().take(24).map(|b| b.to_string()).collect();
    traces.push(decimal.join(", "));
    // Twelve bytes from the middle of the DER, in hex.
    let middle = &der[der.len() / 2..der.len() / 2 + 12];
    let hex: String = middle.iter().map(|b| format!("{b:02x}")).collect();
    traces.push(hex.to_uppercase());
    traces.push(hex);
    traces
}

/// SHA-256 of `der` as colon-separated upper-case hex, as Portcullis prints fingerprints.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The not-after time of a DER certificate, in Unix seconds.
pub fn not_after_unix(der: &[u8]) -> i64 {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("a valid certificate");
    cert.validity().not_after.timestamp()
}

/// A self-signed ECDSA P-256 certificate for `name` that expires `seconds` from now:
/// the certificate PEM, the key PEM and its not-after in Unix seconds.
pub fn self_signed_expiring_in(name: &str, seconds: u64) -> (String, String, i64) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("a key");
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + Duration::from_secs(now - 3600);
    params.not_after = epoch + Duration::from_secs(now + seconds);
    let cert = params.self_signed(&key).expect("a certificate");
    (
        cert.pem(),
        key.serialize_pem(),
        not_after_unix(cert.der()),
    )
}

// ---------------------------------------------------------------------------------------
// TLS clients the shared harness does not have

/// A TLS 1.2-only handshake with SNI `name`, verified against `ca`, offering HTTP/1.1.
pub async fn connect_tls12(
    addr: SocketAddr,
    name: &str,
    ca: &TestCa,
) -> std::io::Result<TlsStream<TcpStream>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(ca.der.clone()).expect("add the test CA");
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("TLS 1.2")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = TlsConnector::from(Arc::new(config));
    let server_name = ServerName::try_from(name.to_owned()).expect("a server name");
    bounded(STEP, "a TLS 1.2 handshake", async {
        let tcp = TcpStream::connect(addr).await?;
        connector.connect(server_name, tcp).await
    })
    .await
}

/// A ClientHello record that offers only TLS 1.1 (legacy version 3.2, no
/// supported_versions extension) with two CBC suites.
pub fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend([0x5a; 32]);
    body.push(0);
    body.extend([0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]);
    body.extend([0x01, 0x00]);
    let mut handshake = vec![0x01, 0, (body.len() >> 8) as u8, body.len() as u8];
    handshake.extend(body);
    let mut record = vec![
        0x16,
        0x03,
        0x01,
        (handshake.len() >> 8) as u8,
        handshake.len() as u8,
    ];
    record.extend(handshake);
    record
}

// ---------------------------------------------------------------------------------------
// Odds and ends

/// 16 lower-case hex digits nobody could have configured: for hosts, paths and methods
/// that must never become metric labels.
pub fn random_token() -> String {
    use std::hash::{BuildHasher, RandomState};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = RandomState::new().hash_one((
        COUNTER.fetch_add(1, Ordering::Relaxed),
        std::process::id(),
        std::time::SystemTime::now(),
    ));
    format!("{n:016x}")
}

/// Makes a named pipe at `path` with the system `mkfifo`.
pub fn make_fifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap_or_else(|e| panic!("cannot run mkfifo ({e}); install it with: apt-get install coreutils"));
    assert!(status.success(), "mkfifo {} failed", path.display());
}

/// Waits (bounded) until `check` holds; fails the test with `what` otherwise.
pub async fn eventually(what: &str, timeout: Duration, check: impl FnMut() -> bool) {
    assert!(wait_until(timeout, check).await, "{what} (waited {timeout:?})");
}
