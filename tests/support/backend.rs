//! Backends on 127.0.0.1 inside the test process: a hyper server that answers with its
//! name, the request's method, path and headers as JSON, after an optional delay; a
//! closed port; and `portcullis echo` as a child process (it also echoes WebSockets).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

use super::process::{BIN, wait_until};

/// A backend running on the test's tokio runtime; it stops with the runtime.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    received: Arc<AtomicUsize>,
}

impl Backend {
    /// Answers at once.
    pub async fn echo(name: &str) -> Backend {
        Backend::start(name, Duration::ZERO).await
    }

    /// Answers each request after `delay`.
    pub async fn slow(name: &str, delay: Duration) -> Backend {
        Backend::start(name, delay).await
    }

    async fn start(name: &str, delay: Duration) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a backend");
        let addr = listener.local_addr().expect("backend address");
        let received = Arc::new(AtomicUsize::new(0));
        let backend = Backend {
            name: name.to_owned(),
            addr,
            received: Arc::clone(&received),
        };
        let name: Arc<str> = Arc::from(name);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let name = Arc::clone(&name);
                let received = Arc::clone(&received);
                let service = service_fn(move |req| {
                    let name = Arc::clone(&name);
                    let received = Arc::clone(&received);
                    async move {
                        received.fetch_add(1, Ordering::SeqCst);
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        Ok::<_, Infallible>(answer(&name, req).await)
                    }
                });
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        backend
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// How many requests have reached this backend so far.
    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until at least `n` requests have reached this backend.
    pub async fn wait_for_requests(&self, n: usize) {
        let reached = wait_until(Duration::from_secs(10), || self.received() >= n).await;
        assert!(
            reached,
            "backend {} saw {} requests, expected {n}",
            self.name,
            self.received()
        );
    }
}

/// What the echo backend answers: who it is and what it received.
async fn answer(name: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let mut headers = Map::new();
    for (key, value) in req.headers() {
        let entry = headers
            .entry(key.as_str().to_owned())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(values) = entry {
            values.push(String::from_utf8_lossy(value.as_bytes()).into());
        }
    }
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let version = format!("{:?}", req.version());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let reply = json!({
        "backend": name,
        "method": method,
        "path": path,
        "version": version,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    let mut response = Response::new(Full::new(Bytes::from(reply.to_string())));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// A loopback port that refuses connections: bound but never listening, so nothing else
/// can take it while the test runs. Keep it alive as long as the port is in use.
pub struct ClosedPort {
    _socket: tokio::net::TcpSocket,
    pub port: u16,
}

impl ClosedPort {
    pub fn new() -> ClosedPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind a port");
        let port = socket.local_addr().expect("its address").port();
        ClosedPort {
            _socket: socket,
            port,
        }
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        Self::new()
    }
}

/// `portcullis echo` as a child process on a port it picks itself; killed when dropped.
pub struct EchoProcess {
    child: Child,
    pub addr: SocketAddr,
    log: std::path::PathBuf,
}

impl EchoProcess {
    pub async fn start(name: &str, scratch: &std::path::Path) -> EchoProcess {
        let log = scratch.join(format!("echo-{name}.log"));
        let file = std::fs::File::create(&log).expect("create the echo log");
        let child = Command::new(BIN)
            .args(["--log-format", "json", "echo", "--listen", "127.0.0.1:0"])
            .args(["--name", name])
            .env_clear()
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone the log file"))
            .stderr(file)
            .spawn()
            .expect("start portcullis echo");
        let mut echo = EchoProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        };

        // It logs the address it bound: `"addr":"127.0.0.1:PORT"`.
        let mut found = None;
        let _ = wait_until(Duration::from_secs(20), || {
            found = echo_addr(&echo.log);
            found.is_some()
        })
        .await;
        echo.addr = found.unwrap_or_else(|| {
            panic!(
                "portcullis echo did not report its address; log:\n{}",
                std::fs::read_to_string(&echo.log).unwrap_or_default()
            )
        });
        echo
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

fn echo_addr(log: &std::path::Path) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find_map(|line| line.get("addr")?.as_str()?.parse().ok())
}

impl Drop for EchoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
