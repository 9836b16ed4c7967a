//! The command line: every flag typed and checked here, each also readable from a
//! `PORTCULLIS_*` environment variable. A bad value is a one-line error and exit code 2.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "A Kubernetes ingress controller built around TLS"
)]
pub struct Cli {
    /// Log line format; the level comes from RUST_LOG (default: info).
    #[arg(
        long,
        global = true,
        env = "PORTCULLIS_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve HTTPS and HTTP for the Ingresses in a folder of manifests.
    Serve(Box<ServeArgs>),
    /// Explain what Portcullis does for a host (and path), and why; or list every host
    /// with its certificate state. Exits 1 when something is wrong, for pipelines.
    Explain(Box<ExplainArgs>),
    /// Run a tiny HTTP server that answers with what it received (a smoke-test backend).
    Echo(EchoArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Read objects from this folder of YAML manifests (recursively) instead of the
    /// Kubernetes API, and follow changes to it.
    #[arg(long, env = "PORTCULLIS_MANIFESTS", value_name = "DIR")]
    pub manifests: Option<PathBuf>,

    #[arg(
        long,
        env = "PORTCULLIS_HTTPS_ADDR",
        default_value = "0.0.0.0:443",
        value_name = "ADDR"
    )]
    pub https_addr: SocketAddr,

    #[arg(
        long,
        env = "PORTCULLIS_HTTP_ADDR",
        default_value = "0.0.0.0:80",
        value_name = "ADDR"
    )]
    pub http_addr: SocketAddr,

    /// Health endpoints (/healthz, /readyz).
    #[arg(
        long,
        env = "PORTCULLIS_ADMIN_ADDR",
        default_value = "0.0.0.0:10254",
        value_name = "ADDR"
    )]
    pub admin_addr: SocketAddr,

    #[command(flatten)]
    pub selection: SelectionArgs,

    /// Refuse TLS handshakes without SNI or for names with no certificate, instead of
    /// answering with the default certificate.
    #[arg(long, env = "PORTCULLIS_STRICT_SNI")]
    pub strict_sni: bool,

    /// Peers (CIDRs, comma-separated) whose X-Forwarded-For is extended, not replaced.
    #[arg(
        long,
        env = "PORTCULLIS_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    pub trusted_proxies: Vec<IpNet>,

    /// The port written in HTTP-to-HTTPS redirects (443 writes none).
    #[arg(long, env = "PORTCULLIS_REDIRECT_HTTPS_PORT", default_value_t = 443)]
    pub redirect_https_port: u16,

    #[command(flatten)]
    pub kube: KubeArgs,

    #[command(flatten)]
    pub limits: LimitArgs,

    /// One log line per request (target "access"), in the --log-format.
    #[arg(long, env = "PORTCULLIS_ACCESS_LOG", value_enum, default_value = "on")]
    pub access_log: OnOff,

    /// Serve /debug/snapshot on the admin port: the served snapshot as JSON, with
    /// certificate details but never keys. Off by default: the admin port may be
    /// reachable from inside the cluster.
    #[arg(long, env = "PORTCULLIS_ENABLE_DEBUG_ENDPOINTS")]
    pub enable_debug_endpoints: bool,

    /// Tokio worker threads (default: one per core).
    #[arg(long, env = "PORTCULLIS_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,
}

/// Which Ingresses are ours, and the default certificate: shared by `serve` and
/// `explain`, so both decide the same way.
#[derive(Debug, Args)]
pub struct SelectionArgs {
    /// Our class name, for the legacy kubernetes.io/ingress.class annotation.
    #[arg(long, env = "PORTCULLIS_INGRESS_CLASS", default_value = "portcullis")]
    pub ingress_class: String,

    /// The spec.controller value of IngressClasses that are ours.
    #[arg(
        long,
        env = "PORTCULLIS_CONTROLLER_NAME",
        default_value = "portcullis.dev/ingress-controller"
    )]
    pub controller_name: String,

    /// Also serve Ingresses that name no IngressClass at all.
    #[arg(long, env = "PORTCULLIS_WATCH_INGRESS_WITHOUT_CLASS")]
    pub watch_ingress_without_class: bool,

    /// The kubernetes.io/tls Secret served when SNI is absent or matches no host.
    /// Without it, a self-signed placeholder is generated at start-up.
    #[arg(long, env = "PORTCULLIS_DEFAULT_CERTIFICATE", value_name = "NAMESPACE/NAME", value_parser = parse_object_key)]
    pub default_certificate: Option<(String, String)>,
}

/// The Kubernetes API source (used when --manifests is not given).
#[derive(Debug, Args)]
pub struct KubeArgs {
    /// Kubeconfig to use; without it: KUBECONFIG, else ~/.kube/config, else the
    /// in-cluster configuration.
    #[arg(long, env = "PORTCULLIS_KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Serve only Ingresses (and read only Secrets, Services, EndpointSlices) in this
    /// namespace; repeat for more. Default: all namespaces.
    #[arg(long = "watch-namespace", env = "PORTCULLIS_WATCH_NAMESPACE", value_delimiter = ',', value_name = "NS", value_parser = parse_name)]
    pub watch_namespaces: Vec<String>,

    /// Name of the leader-election Lease.
    #[arg(long, env = "PORTCULLIS_ELECTION_ID", default_value = "portcullis-leader", value_parser = parse_name)]
    pub election_id: String,

    /// Namespace of the leader-election Lease (default: the pod's namespace from
    /// POD_NAMESPACE, else "default").
    #[arg(long, env = "PORTCULLIS_ELECTION_NAMESPACE", value_name = "NS", value_parser = parse_name)]
    pub election_namespace: Option<String>,

    /// Publish this Service's load-balancer addresses (or cluster IP) in Ingress status.
    #[arg(long, env = "PORTCULLIS_PUBLISH_SERVICE", value_name = "NAMESPACE/NAME", value_parser = parse_object_key, conflicts_with = "publish_status_address")]
    pub publish_service: Option<(String, String)>,

    /// Publish these IPs or host names (comma-separated) in Ingress status.
    #[arg(long, env = "PORTCULLIS_PUBLISH_STATUS_ADDRESS", value_delimiter = ',', value_name = "ADDRESS", value_parser = parse_address)]
    pub publish_status_address: Vec<String>,
}

/// Timeouts and sizes (DESIGN.md, "Starting limits").
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Time allowed to receive a request's headers (HTTP/1).
    #[arg(long, env = "PORTCULLIS_REQUEST_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_header_timeout: Duration,

    #[arg(long, env = "PORTCULLIS_TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub tls_handshake_timeout: Duration,

    /// Longest pause while a client sends a request body.
    #[arg(long, env = "PORTCULLIS_CLIENT_BODY_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub client_body_timeout: Duration,

    /// Idle client connections are closed after this.
    #[arg(long, env = "PORTCULLIS_KEEPALIVE_TIMEOUT", default_value = "75s", value_parser = parse_duration)]
    pub keepalive_timeout: Duration,

    /// Largest request head (HTTP/1) or header list (HTTP/2); at least 8KiB.
    #[arg(long, env = "PORTCULLIS_MAX_REQUEST_HEADER_SIZE", default_value = "32KiB", value_parser = parse_header_size)]
    pub max_request_header_size: usize,

    #[arg(long, env = "PORTCULLIS_MAX_CONCURRENT_STREAMS", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,

    #[arg(long, env = "PORTCULLIS_MAX_CONNECTIONS", default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    #[arg(long, env = "PORTCULLIS_UPSTREAM_CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub upstream_connect_timeout: Duration,

    /// Time allowed for an upstream's response headers.
    #[arg(long, env = "PORTCULLIS_UPSTREAM_RESPONSE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub upstream_response_timeout: Duration,

    /// On SIGTERM, keep accepting this long (with /readyz failing) before stopping.
    #[arg(long, env = "PORTCULLIS_SHUTDOWN_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// After accepting stops, how long requests in flight may take to finish.
    #[arg(long, env = "PORTCULLIS_DRAIN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The host to explain, as a client would send it. Without it: every host.
    pub host: Option<String>,

    /// A request path to route, e.g. /api/orders.
    pub path: Option<String>,

    /// Read a folder of manifests instead of the Kubernetes API.
    #[arg(long, env = "PORTCULLIS_MANIFESTS", value_name = "DIR")]
    pub manifests: Option<PathBuf>,

    #[arg(long, env = "PORTCULLIS_KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    #[arg(long = "watch-namespace", env = "PORTCULLIS_WATCH_NAMESPACE", value_delimiter = ',', value_name = "NS", value_parser = parse_name)]
    pub watch_namespaces: Vec<String>,

    #[command(flatten)]
    pub selection: SelectionArgs,

    /// `text` for people (aligned columns, colour on a terminal), `json` for scripts.
    #[arg(long, short, value_enum, default_value = "text")]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct EchoArgs {
    #[arg(
        long,
        env = "PORTCULLIS_ECHO_LISTEN",
        default_value = "127.0.0.1:9000",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,

    /// A name to tell this instance from others in the answers.
    #[arg(long, env = "PORTCULLIS_ECHO_NAME", default_value = "echo")]
    pub name: String,
}

/// `NAMESPACE/NAME`, each a Kubernetes name.
fn parse_object_key(text: &str) -> Result<(String, String), String> {
    let (namespace, name) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not NAMESPACE/NAME"))?;
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    if !valid(namespace) || !valid(name) {
        return Err(format!(
            "{text:?} is not NAMESPACE/NAME of lower-case Kubernetes names"
        ));
    }
    Ok((namespace.to_owned(), name.to_owned()))
}

/// A Kubernetes object name (DNS-1123 subdomain).
fn parse_name(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 253
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !text.starts_with(['-', '.'])
        && !text.ends_with(['-', '.']);
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!("{text:?} is not a Kubernetes name"))
    }
}

/// An IP address or a DNS host name for Ingress status.
fn parse_address(text: &str) -> Result<String, String> {
    if text.parse::<std::net::IpAddr>().is_ok() {
        return Ok(text.to_owned());
    }
    parse_name(text).map_err(|_| format!("{text:?} is neither an IP address nor a host name"))
}

/// `500ms`, `10s`, `5m`, `1h`: a whole number with a unit.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 10s, 5m or 1h"))?;
    let millis = match unit {
        "ms" => Some(number),
        "s" => number.checked_mul(1_000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        _ => {
            return Err(format!(
                "{text:?} is not a duration like 500ms, 10s, 5m or 1h"
            ));
        }
    };
    match millis {
        Some(ms) if ms <= 7 * 24 * 3_600_000 => Ok(Duration::from_millis(ms)),
        _ => Err(format!("{text:?} is longer than a week")),
    }
}

/// `32KiB`, `1MiB` or a number of bytes; between 8 KiB and 1 MiB.
fn parse_header_size(text: &str) -> Result<usize, String> {
    let (number, scale) = if let Some(n) = text.strip_suffix("KiB") {
        (n, 1024)
    } else if let Some(n) = text.strip_suffix("MiB") {
        (n, 1024 * 1024)
    } else {
        (text, 1)
    };
    let bytes = number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| format!("{text:?} is not a size like 32KiB"))?;
    let min = portcullis_dataplane::MIN_REQUEST_HEADER_BYTES;
    if !(min..=1024 * 1024).contains(&bytes) {
        return Err(format!("{text:?} must be between 8KiB and 1MiB"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit_and_a_sane_size() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in [
            "10",
            "s",
            "-1s",
            "1.5s",
            "10 s",
            "99999999999999999999s",
            "200h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_sizes_are_bounded() {
        assert_eq!(parse_header_size("32KiB"), Ok(32 * 1024));
        assert_eq!(parse_header_size("8192"), Ok(8192));
        assert!(parse_header_size("4KiB").is_err());
        assert!(parse_header_size("2MiB").is_err());
        assert!(parse_header_size("lots").is_err());
    }

    #[test]
    fn object_keys_are_namespace_slash_name() {
        assert_eq!(parse_object_key("ns/tls"), Ok(("ns".into(), "tls".into())));
        for bad in ["tls", "/tls", "ns/", "NS/tls", "ns/t ls"] {
            assert!(parse_object_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_command_line_parses_with_defaults() {
        let cli = Cli::try_parse_from(["portcullis", "serve", "--manifests", "x"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.https_addr, "0.0.0.0:443".parse().unwrap());
        assert_eq!(args.limits.keepalive_timeout, Duration::from_secs(75));
        assert_eq!(args.limits.max_request_header_size, 32 * 1024);
    }
}
