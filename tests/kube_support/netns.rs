//! A network namespace where backends get addresses of their own, the way pods do:
//! EndpointSlice validation refuses loopback addresses, so backends cannot sit on
//! 127.0.0.1.
//!
//! One namespace per test, joined to the host by a veth pair on a /28 picked at random in
//! 10.200.0.0/16 and checked unused: the host side is `.1`, backends get `.2`, `.3`, ...
//! Traffic goes only to addresses inside it. Before handing it out, the harness checks the
//! namespace answers (a refused TCP connection proves the peer is reachable); on drop the
//! backends are stopped and the veth and namespace deleted.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::client;
use super::process::{self, Process};
use super::tools::{self, run};

/// The port every echo backend listens on, inside its own address.
pub const BACKEND_PORT: u16 = 8080;

const NAME_PREFIX: &str = "pcl-e2e-";
const REACHABLE_TIMEOUT: Duration = Duration::from_secs(5);
const BACKEND_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A network namespace with a veth pair; deleted when dropped.
pub struct Netns {
    name: String,
    host_veth: String,
    peer_veth: String,
    subnet: [u8; 4],
    next_host: Mutex<u8>,
    log_dir: std::path::PathBuf,
}

/// A `portcullis echo` inside the namespace; stopped when dropped.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    process: Process,
}

impl Netns {
    /// Creates the namespace and checks it answers. Logs of backends go to `log_dir`.
    pub fn create(log_dir: &std::path::Path) -> Netns {
        process::sweep_leftovers();
        let ip = tools::ip();

        // Serialised within this process; other processes are seen through `ip -o addr`.
        static CREATING: Mutex<()> = Mutex::new(());
        let _guard = CREATING.lock().unwrap_or_else(|e| e.into_inner());
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("{NAME_PREFIX}{pid}-{seq}");
        // Interface names have at most 15 bytes.
        let host_veth = format!("pe{pid}h{seq}");
        let peer_veth = format!("pe{pid}n{seq}");
        assert!(host_veth.len() <= 15, "interface name {host_veth} too long");

        let subnet = pick_subnet();
        let [a, b, c, d] = subnet;
        let host_addr = format!("{a}.{b}.{c}.{}/28", d + 1);

        let netns = Netns {
            name: name.clone(),
            host_veth: host_veth.clone(),
            peer_veth: peer_veth.clone(),
            subnet,
            next_host: Mutex::new(2),
            log_dir: log_dir.to_path_buf(),
        };
        let steps: [&[&str]; 7] = [
            &["netns", "add", &name],
            &[
                "link", "add", &host_veth, "type", "veth", "peer", "name", &peer_veth,
            ],
            &["link", "set", &peer_veth, "netns", &name],
            &["addr", "add", &host_addr, "dev", &host_veth],
            &["link", "set", &host_veth, "up"],
            &["-n", &name, "link", "set", &peer_veth, "up"],
            &["-n", &name, "link", "set", "lo", "up"],
        ];
        for step in steps {
            // On failure `netns` is dropped and removes what was made.
            run(ip, step).unwrap_or_else(|e| {
                panic!(
                    "setting up network namespace {name}: {e} (this needs root, or \
                     CAP_NET_ADMIN and CAP_SYS_ADMIN)"
                )
            });
        }
        netns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds the next free address inside the namespace and checks it answers from the host.
    pub fn add_address(&self) -> Ipv4Addr {
        let host = {
            let mut next = self.next_host.lock().unwrap_or_else(|e| e.into_inner());
            let host = *next;
            assert!(host <= 14, "no more addresses in {}'s /28", self.name);
            *next += 1;
            host
        };
        let [a, b, c, d] = self.subnet;
        let address = Ipv4Addr::new(a, b, c, d + host);
        let cidr = format!("{address}/28");
        run(
            tools::ip(),
            &[
                "-n",
                &self.name,
                "addr",
                "add",
                &cidr,
                "dev",
                &self.peer_veth,
            ],
        )
        .unwrap_or_else(|e| panic!("adding {address} in {}: {e}", self.name));
        wait_reachable(address);
        address
    }

    /// Starts `portcullis echo --name NAME` on a new address inside the namespace, and
    /// waits until it answers.
    pub async fn spawn_echo(&self, name: &str) -> Backend {
        let address = self.add_address();
        let addr = SocketAddr::new(IpAddr::V4(address), BACKEND_PORT);
        let log = self.log_dir.join(format!("echo-{name}.log"));
        let portcullis = tools::portcullis();
        let mut process = Process::spawn(
            &format!("echo {name}"),
            tools::ip(),
            [
                "netns".as_ref(),
                "exec".as_ref(),
                self.name.as_ref(),
                portcullis.as_os_str(),
                "echo".as_ref(),
                "--listen".as_ref(),
                addr.to_string().as_ref(),
                "--name".as_ref(),
                name.as_ref(),
            ] as [&std::ffi::OsStr; 9],
            &log,
        );
        let start = Instant::now();
        loop {
            process.assert_running();
            match client::http_get(addr, "backend.test", "/").await {
                Ok(reply) if reply.echo_name() == Some(name) => break,
                Ok(reply) => panic!("{addr} answered as {:?}, not {name}", reply.echo_name()),
                Err(error) => assert!(
                    start.elapsed() < BACKEND_READY_TIMEOUT,
                    "echo backend {name} on {addr} not answering after \
                     {BACKEND_READY_TIMEOUT:?}: {error}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Backend {
            name: name.to_owned(),
            addr,
            process,
        }
    }
}

impl Backend {
    pub fn ip(&self) -> IpAddr {
        self.addr.ip()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the host end removes the pair; then the namespace.
        let _ = run(tools::ip(), &["link", "del", &self.host_veth]);
        let _ = run(tools::ip(), &["netns", "del", &self.name]);
    }
}

/// Waits until a TCP connection to `address` is answered, refused or accepted: either way a
/// packet came back from inside the namespace.
fn wait_reachable(address: Ipv4Addr) {
    let target = SocketAddr::new(IpAddr::V4(address), 1);
    let start = Instant::now();
    loop {
        match std::net::TcpStream::connect_timeout(&target, Duration::from_millis(500)) {
            Ok(_) => return,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            Err(e) => assert!(
                start.elapsed() < REACHABLE_TIMEOUT,
                "{address} in the test network namespace does not answer after \
                 {REACHABLE_TIMEOUT:?}: {e}"
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A random /28 in 10.200.0.0/16 that no interface on the host has an address in.
fn pick_subnet() -> [u8; 4] {
    let output = run(tools::ip(), &["-o", "-4", "addr", "show"])
        .unwrap_or_else(|e| panic!("listing addresses: {e}"));
    let used: HashSet<(u8, u8)> = output
        .split_whitespace()
        .filter_map(|word| word.split('/').next()?.parse::<Ipv4Addr>().ok())
        .filter(|a| a.octets()[..2] == [10, 200])
        .map(|a| (a.octets()[2], a.octets()[3] & 0xf0))
        .collect();
    for _ in 0..100 {
        let block = (super::random_u64() % 4096) as u16;
        let (c, d) = ((block / 16) as u8, ((block % 16) * 16) as u8);
        if !used.contains(&(c, d)) {
            return [10, 200, c, d];
        }
    }
    panic!("no free /28 in 10.200.0.0/16 after 100 tries");
}

/// Deletes namespaces (and the processes inside) left by test binaries that were killed.
pub fn sweep_stale_namespaces() {
    let Ok(list) = run(tools::ip(), &["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(NAME_PREFIX) else {
            continue;
        };
        let Some((pid, seq)) = rest.split_once('-') else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if !process::owner_is_gone(pid) {
            continue;
        }
        if let Ok(pids) = run(tools::ip(), &["netns", "pids", name]) {
            for stale in pids.split_whitespace() {
                let _ = run("kill", &["-KILL", stale]);
            }
        }
        let _ = run(tools::ip(), &["link", "del", &format!("pe{pid}h{seq}")]);
        let _ = run(tools::ip(), &["netns", "del", name]);
        eprintln!("removed network namespace {name} left by an earlier run");
    }
}
