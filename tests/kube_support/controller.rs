//! The real `portcullis serve` in API mode, run as the restricted controller identity, on
//! loopback ports of its own; stopped when dropped.

use std::net::SocketAddr;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use super::client::http_get;
use super::cluster::{Cluster, free_port};
use super::process::Process;
use super::tools;

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How one replica is started.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// Names the log file and the process in messages.
    pub name: String,
    /// `--watch-namespace`, repeated; empty watches all namespaces.
    pub watch_namespaces: Vec<String>,
    /// `--election-namespace`; the namespace must have the own-namespace Role.
    pub election_namespace: String,
    pub election_id: String,
    /// `--publish-status-address`.
    pub publish_status_address: Vec<String>,
    /// Anything else, appended as is.
    pub extra_args: Vec<String>,
}

impl ControllerOptions {
    /// One replica electing in `namespace` and publishing 192.0.2.10 (TEST-NET-1: only ever
    /// written into status, never sent traffic).
    pub fn new(election_namespace: &str) -> ControllerOptions {
        ControllerOptions {
            name: "portcullis".into(),
            watch_namespaces: Vec::new(),
            election_namespace: election_namespace.into(),
            election_id: "portcullis-leader".into(),
            publish_status_address: vec!["192.0.2.10".into()],
            extra_args: Vec::new(),
        }
    }
}

/// A running controller and its listeners.
pub struct Controller {
    process: Process,
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

impl Controller {
    /// Starts the controller and waits until `/readyz` answers 200: the first full snapshot
    /// from the API is applied.
    pub async fn start(cluster: &Cluster, options: &ControllerOptions) -> Controller {
        let started = Instant::now();
        let mut controller = Controller::spawn(cluster, options);
        controller.wait_ready(READY_TIMEOUT).await;
        eprintln!(
            "{} ready after {} ms (pid {}, https {})",
            options.name,
            started.elapsed().as_millis(),
            controller.pid(),
            controller.https
        );
        controller
    }

    /// Starts the controller without waiting for readiness.
    pub fn spawn(cluster: &Cluster, options: &ControllerOptions) -> Controller {
        let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let (https, http, admin) = (
            loopback(free_port()),
            loopback(free_port()),
            loopback(free_port()),
        );
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--kubeconfig".into(),
            cluster.controller_kubeconfig().display().to_string(),
            format!("--https-addr={https}"),
            format!("--http-addr={http}"),
            format!("--admin-addr={admin}"),
            "--shutdown-delay=0s".into(),
            "--drain-timeout=5s".into(),
            format!("--election-id={}", options.election_id),
            format!("--election-namespace={}", options.election_namespace),
        ];
        for namespace in &options.watch_namespaces {
            args.push(format!("--watch-namespace={namespace}"));
        }
        if !options.publish_status_address.is_empty() {
            args.push(format!(
                "--publish-status-address={}",
                options.publish_status_address.join(",")
            ));
        }
        args.extend(options.extra_args.iter().cloned());
        let log = cluster.dir().join(format!("{}.log", options.name));
        let process = Process::spawn_with_env(
            &options.name,
            tools::portcullis(),
            &args,
            &log,
            &[("RUST_LOG", "info"), ("NO_COLOR", "1")],
        );
        Controller {
            process,
            https,
            http,
            admin,
        }
    }

    /// Polls `/readyz` until it answers 200, failing if the process exits.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        let start = Instant::now();
        loop {
            self.process.assert_running();
            if self.is_ready().await {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "{} not ready after {timeout:?}; last lines of its log:\n{}",
                self.process.name(),
                self.process.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn is_ready(&self) -> bool {
        http_get(self.admin, "localhost", "/readyz")
            .await
            .is_ok_and(|r| r.status.is_success())
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    pub fn assert_running(&mut self) {
        self.process.assert_running();
    }

    /// SIGTERM and wait (bounded) for the exit.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        self.process.terminate(Duration::from_secs(15))
    }
}
