//! What the observability tests need beyond the shared harness in `support/`: a start of
//! `portcullis serve` that does not wait for readiness (and keeps stdout and stderr
//! apart), the admin endpoints read with their bodies, `/metrics` parsed by the strict
//! OpenMetrics parser in [`openmetrics`], `portcullis explain` as a bounded child process,
//! keys in their traditional PEM forms, a TLS 1.2-only client and a TLS 1.1 ClientHello,
//! and unguessable strings.
#![allow(dead_code)]

pub mod openmetrics;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::support::client::{H1, Reply, STEP, Tls, bounded, connect_tls, request};
use crate::support::manifests::Manifests;
use crate::support::pki::TestCa;
use crate::support::process::{BIN, Portcullis, admin_get, run_to_exit, wait_until};
use openmetrics::{Exposition, parse_openmetrics};

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
        let ready = wait_for_readyz(launched.admin, 200).await;
        assert!(ready, "not ready in 10 s; stderr:\n{}", launched.stderr());
        launched
    }

    fn spawn(manifests: &Manifests, extra: &[&str], attempt: usize) -> Launched {
        let [https, http, admin] = free_ports();
        let stdout = manifests
            .scratch()
            .join(format!("launched-{attempt}.stdout"));
        let stderr = manifests
            .scratch()
            .join(format!("launched-{attempt}.stderr"));
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

/// Scrapes until `done` holds for the parsed metrics (at most 10 s), then returns them.
pub async fn scrape_until(
    admin: SocketAddr,
    what: &str,
    done: impl Fn(&Exposition) -> bool,
) -> (Exposition, String) {
    for _ in 0..200 {
        let (metrics, text) = scrape(admin).await;
        if done(&metrics) {
            return (metrics, text);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, text) = scrape(admin).await;
    panic!("metrics never showed {what}:\n{text}");
}

// ---------------------------------------------------------------------------------------
// Requests

/// One request on a fresh TLS connection; the reply.
pub async fn tls_exchange(
    portcullis: &Portcullis,
    tls: &Tls<'_>,
    req: Request<Full<Bytes>>,
) -> Reply {
    let stream = connect_tls(portcullis.https, tls)
        .await
        .unwrap_or_else(|e| panic!("TLS handshake for {}: {e}", tls.name));
    H1::over(stream).await.send(req).await
}

/// `GET path` with `Host: host` and no body.
pub fn get(host: &str, path: &str) -> Request<Full<Bytes>> {
    request(host, path).body(Full::default()).unwrap()
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
    let output = run_to_exit(args, Duration::from_secs(20));
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
        stdin
            .write_all(pkcs8_pem.as_bytes())
            .expect("write the key");
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
    (cert.pem(), key.serialize_pem(), not_after_unix(cert.der()))
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

/// Waits (at most 10 s) for `/readyz` to answer `status`; whether it did.
pub async fn wait_for_readyz(admin: SocketAddr, status: u16) -> bool {
    for _ in 0..400 {
        if admin_get(admin, "/readyz").await == Some(status) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// Writes `text` into the named pipe at `pipe` once a reader opens it (at most 10 s), and
/// before closing it puts a plain file with the same text in its place, so that later
/// reads of the folder do not block.
pub async fn feed_pipe(pipe: &Path, text: &str) {
    let (done, finished) = std::sync::mpsc::channel();
    let pipe = pipe.to_owned();
    let text = text.to_owned();
    // A thread, not a blocking task: if nobody ever reads, the open never returns, and a
    // runtime waits for its blocking tasks when it shuts down.
    std::thread::spawn(move || {
        let fed = (|| -> std::io::Result<()> {
            use std::io::Write as _;
            let mut writer = std::fs::OpenOptions::new().write(true).open(&pipe)?;
            writer.write_all(text.as_bytes())?;
            let name = pipe.file_name().unwrap_or_default().to_string_lossy();
            let replacement = pipe.with_file_name(format!(".{name}.tmp"));
            std::fs::write(&replacement, &text)?;
            std::fs::rename(&replacement, &pipe)?;
            drop(writer);
            Ok(())
        })();
        let _ = done.send(fed);
    });
    for _ in 0..400 {
        if let Ok(fed) = finished.try_recv() {
            return fed.expect("write into the pipe");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nobody read the pipe within 10 s");
}

/// Makes a named pipe at `path` with the system `mkfifo`.
pub fn make_fifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run mkfifo ({e}); install it with: apt-get install coreutils")
        });
    assert!(status.success(), "mkfifo {} failed", path.display());
}

/// Waits (bounded) until `check` holds; fails the test with `what` otherwise.
pub async fn eventually(what: &str, timeout: Duration, check: impl FnMut() -> bool) {
    assert!(
        wait_until(timeout, check).await,
        "{what} (waited {timeout:?})"
    );
}
