//! The TLS clients: `handshakes`, `probe` and `idle`.
//!
//! All speak TLS 1.3 with X25519 only and no resumption, so every connection is a full
//! handshake, and accept any certificate: they measure the server, not the PKI.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Semaphore, watch};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::args::{Error, Flags};
use crate::http1;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts whatever certificate the server presents; the benchmark checks which one it
/// was by fingerprint instead.
#[derive(Debug)]
struct AcceptAny(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

fn connector() -> TlsConnector {
    let mut provider: CryptoProvider = rustls::crypto::ring::default_provider();
    provider.kx_groups = vec![rustls::crypto::ring::kx_group::X25519];
    let algorithms = provider.signature_verification_algorithms;
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 with ring")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(algorithms)))
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

async fn connect(
    connector: &TlsConnector,
    addr: SocketAddr,
    sni: &str,
) -> Result<TlsStream<TcpStream>, Error> {
    let name = ServerName::try_from(sni.to_string())?;
    let attempt = async {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        Ok::<_, Error>(connector.connect(name, tcp).await?)
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt)
        .await
        .map_err(|_| "handshake timed out")?
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

fn fingerprint(stream: &TlsStream<TcpStream>) -> String {
    let (_, connection) = stream.get_ref();
    match connection.peer_certificates().and_then(|chain| chain.first()) {
        Some(leaf) => Sha256::digest(leaf.as_ref()).iter().map(|b| format!("{b:02x}")).collect(),
        None => "none".into(),
    }
}

/// Short error kinds for counting: the first words of the message.
fn kind(error: &Error) -> String {
    error.to_string().chars().take(60).collect()
}

/// `handshakes`: C loops of connect, full handshake, optional GET, close; until
/// `--seconds` or `--max` handshakes. Prints one JSON object.
pub async fn handshakes(flags: &Flags) -> Result<(), Error> {
    let addr: SocketAddr = flags.text("connect")?.parse()?;
    let pattern = flags.text("sni")?.to_string();
    let hosts: u64 = flags.number("hosts", 1)?;
    let concurrency: usize = flags.number("concurrency", 8)?;
    let seconds: f64 = flags.number("seconds", 10.0)?;
    let max: u64 = flags.number("max", u64::MAX)?;
    let request = flags.optional("request").map(str::to_string);

    let connector = connector();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));

    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (connector, pattern, request) = (connector.clone(), pattern.clone(), request.clone());
        let (next, ok, errors) = (next.clone(), ok.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= max {
                    break;
                }
                let host = pattern.replace("{}", &(index % hosts).to_string());
                let outcome = async {
                    let mut stream = connect(&connector, addr, &host).await?;
                    if let Some(path) = &request {
                        let status = http1::get(&mut stream, &host, path, true).await?;
                        if status != 200 {
                            return Err(format!("status {status}").into());
                        }
                    }
                    let _ = stream.shutdown().await;
                    Ok::<_, Error>(())
                }
                .await;
                match outcome {
                    Ok(()) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => *errors.lock().await.entry(kind(&error)).or_default() += 1,
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }

    let seconds = started.elapsed().as_secs_f64();
    let ok = ok.load(Ordering::Relaxed);
    let errors = errors.lock().await;
    let failed: u64 = errors.values().sum();
    let kinds: Vec<String> = errors.iter().map(|(k, n)| format!("{:?}: {n}", k)).collect();
    println!(
        "{{\"ok\": {ok}, \"errors\": {failed}, \"seconds\": {seconds:.3}, \"per_sec\": {:.1}, \
         \"error_kinds\": {{{}}}}}",
        ok as f64 / seconds,
        kinds.join(", ")
    );
    Ok(())
}

/// `probe`: a fresh handshake every `--interval-ms` from each of `--concurrency` loops,
/// printing `START_NS END_NS SHA256-OF-LEAF` (or `ERR:...`) per handshake, until
/// `--seconds` pass or standard input closes.
pub async fn probe(flags: &Flags) -> Result<(), Error> {
    let addr: SocketAddr = flags.text("connect")?.parse()?;
    let sni = flags.text("sni")?.to_string();
    let interval = Duration::from_millis(flags.number("interval-ms", 2)?);
    let concurrency: usize = flags.number("concurrency", 2)?;
    let seconds: f64 = flags.number("seconds", 600.0)?;

    let connector = connector();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let (lines, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        while let Some(line) = rx.recv().await {
            if out.write_all(line.as_bytes()).await.is_err() || out.flush().await.is_err() {
                break;
            }
        }
    });

    let mut loops = Vec::new();
    for _ in 0..concurrency {
        let (connector, sni, lines) = (connector.clone(), sni.clone(), lines.clone());
        loops.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let start = now_ns();
                let seen = match connect(&connector, addr, &sni).await {
                    Ok(mut stream) => {
                        let print = fingerprint(&stream);
                        let _ = stream.shutdown().await;
                        print
                    }
                    Err(error) => format!("ERR:{}", kind(&error).replace(' ', "_")),
                };
                if lines.send(format!("{start} {} {seen}\n", now_ns())).is_err() {
                    break;
                }
                tokio::time::sleep(interval).await;
            }
        }));
    }
    drop(lines);

    // Standard input closing is the stop signal from the script.
    let stdin_closed = async {
        let mut sink = Vec::new();
        let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    };
    let all_done = futures_join(loops);
    tokio::select! {
        _ = stdin_closed => {}
        _ = all_done => {}
    }
    writer.abort();
    Ok(())
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

/// `idle`: opens `--count` connections (64 handshakes at a time), sends one keep-alive
/// GET on each, then holds them. Watches each for the server closing it. Commands on
/// standard input, one per line, each answered with one JSON line:
/// `status` (how many are open, how many the server closed) and `verify` (one more GET
/// on every open connection). Standard input closing, or `--seconds`, ends it.
pub async fn idle(flags: &Flags) -> Result<(), Error> {
    let addr: SocketAddr = flags.text("connect")?.parse()?;
    let sni = flags.text("sni")?.to_string();
    let count: usize = flags.number("count", 1000)?;
    let path = flags.optional("request").unwrap_or("/").to_string();
    let seconds: f64 = flags.number("seconds", 600.0)?;

    let connector = connector();
    let opening = Arc::new(Semaphore::new(64));
    let open = Arc::new(AtomicU64::new(0));
    let failed_open = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let verified_ok = Arc::new(AtomicU64::new(0));
    let verified_failed = Arc::new(AtomicU64::new(0));
    let (verify_tx, verify_rx) = watch::channel(0u64);
    let mut opened = Vec::new();

    for _ in 0..count {
        let (connector, sni, path) = (connector.clone(), sni.clone(), path.clone());
        let opening = opening.clone();
        let (open, failed_open, closed) = (open.clone(), failed_open.clone(), closed.clone());
        let (verified_ok, verified_failed) = (verified_ok.clone(), verified_failed.clone());
        let mut verify_rx = verify_rx.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
        opened.push(ready_rx);
        tokio::spawn(async move {
            let permit = opening.acquire().await;
            let first = async {
                let mut stream = connect(&connector, addr, &sni).await?;
                let status = http1::get(&mut stream, &sni, &path, false).await?;
                if status != 200 {
                    return Err::<_, Error>(format!("status {status}").into());
                }
                Ok(stream)
            };
            let mut stream = match first.await {
                Ok(stream) => stream,
                Err(_) => {
                    failed_open.fetch_add(1, Ordering::Relaxed);
                    drop(ready_tx);
                    return;
                }
            };
            drop(permit);
            open.fetch_add(1, Ordering::Relaxed);
            let _ = ready_tx.send(());

            // Idle: the only way out is the server closing, or a verify request.
            let mut byte = [0u8; 1];
            loop {
                tokio::select! {
                    read = stream.read(&mut byte) => {
                        if matches!(read, Ok(0) | Err(_)) {
                            open.fetch_sub(1, Ordering::Relaxed);
                            closed.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                    changed = verify_rx.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        match http1::get(&mut stream, &sni, &path, false).await {
                            Ok(200) => verified_ok.fetch_add(1, Ordering::Relaxed),
                            _ => verified_failed.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                }
            }
        });
    }
    for ready in opened {
        let _ = ready.await;
    }
    println!(
        "{{\"event\": \"ready\", \"open\": {}, \"failed_to_open\": {}}}",
        open.load(Ordering::Relaxed),
        failed_open.load(Ordering::Relaxed)
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(seconds);
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    loop {
        let line = tokio::select! {
            line = commands.next_line() => line?,
            _ = tokio::time::sleep_until(deadline) => None,
        };
        match line.as_deref().map(str::trim) {
            None => break,
            Some("status") => println!(
                "{{\"event\": \"status\", \"open\": {}, \"closed_by_server\": {}}}",
                open.load(Ordering::Relaxed),
                closed.load(Ordering::Relaxed)
            ),
            Some("verify") => {
                let before = verified_ok.load(Ordering::Relaxed)
                    + verified_failed.load(Ordering::Relaxed);
                let expected = open.load(Ordering::Relaxed);
                verify_tx.send_modify(|generation| *generation += 1);
                let until = Instant::now() + Duration::from_secs(15);
                while Instant::now() < until {
                    let done = verified_ok.load(Ordering::Relaxed)
                        + verified_failed.load(Ordering::Relaxed)
                        - before;
                    if done >= expected {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                println!(
                    "{{\"event\": \"verify\", \"ok\": {}, \"failed\": {}, \"open\": {}, \
                     \"closed_by_server\": {}}}",
                    verified_ok.load(Ordering::Relaxed),
                    verified_failed.load(Ordering::Relaxed),
                    open.load(Ordering::Relaxed),
                    closed.load(Ordering::Relaxed)
                );
            }
            Some(other) => println!("{{\"event\": \"error\", \"unknown\": {other:?}}}"),
        }
    }
    Ok(())
}
