//! The real `portcullis serve` as a child process on loopback ports: started against a
//! manifest folder, waited for on `/readyz`, its log (stdout and stderr) kept in a file
//! that is printed when the test fails, and killed when dropped.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::manifests::Manifests;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// Runs the binary with `args` and no environment but `NO_COLOR`, to its exit; kills it
/// and fails the test if it is still running after `limit`.
pub fn run_to_exit(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_clear()
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start portcullis");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("poll the child").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("collect output");
            panic!(
                "portcullis {args:?} was still running after {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect output")
}

/// How long a start may take before the test fails.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Polls `check` every 25 ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A running `portcullis serve`.
pub struct Portcullis {
    child: Child,
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    log: PathBuf,
    manifests: PathBuf,
}

impl Portcullis {
    /// Starts `portcullis serve --manifests DIR` with free loopback ports, a zero shutdown
    /// delay, redirects to the HTTPS port it got, and `extra` flags; waits for `/readyz`.
    /// A port taken by someone else between choosing and binding is retried with others.
    pub async fn start(manifests: &Manifests, extra: &[&str]) -> Portcullis {
        let mut last_log = String::new();
        for attempt in 0..5 {
            let [https, http, admin] = free_ports();
            let log = manifests
                .scratch()
                .join(format!("portcullis-{}.log", attempt));
            let file = std::fs::File::create(&log).expect("create the log file");
            let mut command = Command::new(BIN);
            command
                .args(["--log-format", "json", "serve", "--manifests"])
                .arg(manifests.dir())
                .args(["--https-addr", &https.to_string()])
                .args(["--http-addr", &http.to_string()])
                .args(["--admin-addr", &admin.to_string()]);
            if !extra.contains(&"--shutdown-delay") {
                command.args(["--shutdown-delay", "0s"]);
            }
            if !extra.contains(&"--redirect-https-port") {
                command.args(["--redirect-https-port", &https.port().to_string()]);
            }
            let child = command
                .args(extra)
                .env_clear()
                .env(
                    "RUST_LOG",
                    std::env::var("PORTCULLIS_TEST_LOG").unwrap_or_else(|_| "info".into()),
                )
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(file.try_clone().expect("clone the log file"))
                .stderr(file)
                .spawn()
                .expect("start portcullis");
            let mut process = Portcullis {
                child,
                https,
                http,
                admin,
                log,
                manifests: manifests.dir().to_owned(),
            };
            match process.wait_ready().await {
                Ok(()) => return process,
                Err(Exited(status)) => {
                    last_log = process.log();
                    let bind_race = last_log.contains("cannot listen")
                        || last_log.contains("Address already in use");
                    assert!(
                        bind_race,
                        "portcullis exited with {status} before it was ready; log:\n{last_log}"
                    );
                }
            }
        }
        panic!("portcullis could not bind free ports in 5 attempts; last log:\n{last_log}");
    }

    /// Waits for `/readyz` to answer 200, or for the process to exit. The process must
    /// also have logged that it listens on our ports: another test's process that won a
    /// race for the same admin port would answer `/readyz` too.
    async fn wait_ready(&mut self) -> Result<(), Exited> {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let https = format!("\"https\":\"{}\"", self.https);
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the child") {
                return Err(Exited(status));
            }
            if admin_get(self.admin, "/readyz").await == Some(200)
                && self
                    .log()
                    .lines()
                    .any(|line| line.contains("\"listening\"") && line.contains(&https))
            {
                return Ok(());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "portcullis was not ready within {READY_TIMEOUT:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) for a log line that contains every one of `needles`; returns it.
    pub async fn wait_for_log(&self, needles: &[&str]) -> String {
        let mut found = None;
        let seen = wait_until(Duration::from_secs(10), || {
            found = self
                .log()
                .lines()
                .find(|line| needles.iter().all(|n| line.contains(n)))
                .map(str::to_owned);
            found.is_some()
        })
        .await;
        assert!(
            seen,
            "no log line contains all of {needles:?}; log:\n{}",
            self.log()
        );
        found.unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("poll the child").is_none()
    }

    /// Sends SIGTERM with the system `kill`.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Waits (bounded) for the process to exit and returns its status.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut status = None;
        let exited = wait_until(timeout, || {
            status = self.child.try_wait().expect("poll the child");
            status.is_some()
        })
        .await;
        assert!(
            exited,
            "portcullis did not exit within {timeout:?}; log:\n{}",
            self.log()
        );
        status.expect("an exit status")
    }
}

struct Exited(ExitStatus);

impl Drop for Portcullis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "----- portcullis log ({}), manifests in {} -----\n{}----- end of log -----",
                self.log.display(),
                self.manifests.display(),
                self.log()
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

/// GET on the admin port; the status code, or `None` if it could not be had in 2 s.
pub async fn admin_get(admin: SocketAddr, path: &str) -> Option<u16> {
    let exchange = async {
        let mut stream = TcpStream::connect(admin).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8_lossy(&response);
        text.split(' ').nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .ok()
        .flatten()
}
