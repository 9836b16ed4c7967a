//! The hyper service: one request from a client to an answer.
//!
//! In order: find the host and normalise the path (400 on bad input), check the
//! connection's certificate against the host (421), route (404), redirect plain HTTP for
//! TLS hosts (308), pick an endpoint (503), forward with our headers, and relay the answer
//! (502 and 504 when the upstream fails). Each answer the proxy makes itself has a short
//! plain-text body.

mod answer;
mod headers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

pub use answer::Answer;
pub use headers::{is_upgrade_request, strip_hop_by_hop};

use crate::Shared;
use crate::body::{IdleTimeoutBody, ResponseBody, UpstreamBody, empty};
use crate::metrics::ServiceLabels;
use crate::routing::{HostError, PathError, normalize_host, normalize_path};
use crate::tls::ServedCertificate;
use crate::upstream::{Cluster, PooledSender};
use headers::{Forwarded, client_request_id, ensure_request_id, set_forwarded};

/// What the proxy knows about the client connection a request arrived on.
#[derive(Debug)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// `None` on the plain-HTTP listener.
    pub tls: Option<TlsInfo>,
}

#[derive(Debug)]
pub struct TlsInfo {
    pub sni: Option<String>,
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: &'static str,
    /// The certificate this connection's handshake got.
    pub certificate: Arc<ServedCertificate>,
}

const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// What happened to one request, for its metrics and access-log line. The strings are
/// filled only when the access log is on.
#[derive(Debug)]
pub struct RequestRecord {
    pub method: Method,
    pub host: Option<String>,
    /// The normalised path, without the query.
    pub path: Option<String>,
    pub ingress: Option<Arc<str>>,
    pub service: Option<Arc<str>>,
    pub upstream: Option<SocketAddr>,
    pub upstream_duration: Option<Duration>,
    pub request_id: Option<HeaderValue>,
    pub bytes_in: Option<Arc<AtomicU64>>,
}

/// Serves one request.
pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnectionInfo>,
    req: Request<Incoming>,
) -> (Response<ResponseBody>, RequestRecord) {
    let mut record = RequestRecord {
        method: req.method().clone(),
        host: None,
        path: None,
        ingress: None,
        service: None,
        upstream: None,
        upstream_duration: None,
        // The client's id is logged even when the proxy answers itself (404, 421, ...);
        // a forwarded request's id is set again below, generated if the client sent none.
        request_id: if shared.config.access_log {
            client_request_id(req.headers())
        } else {
            None
        },
        bytes_in: None,
    };
    let response = match route_and_forward(&shared, &conn, req, &mut record).await {
        Ok(response) => response,
        Err(answer) => answer.into_response(),
    };
    (response, record)
}

async fn route_and_forward(
    shared: &Arc<Shared>,
    conn: &ConnectionInfo,
    mut req: Request<Incoming>,
    record: &mut RequestRecord,
) -> Result<Response<ResponseBody>, Answer> {
    // A protocol switch (WebSocket) is claimed now, before the request is taken apart.
    let upgrade = req.version() == Version::HTTP_11 && is_upgrade_request(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

    // The host: the URI's authority (HTTP/2, absolute-form) wins over the Host header.
    // Two Host headers are refused (RFC 9112 section 3.2): whichever we picked, another
    // hop could have read the other one.
    if req.headers().get_all(header::HOST).iter().nth(1).is_some() {
        return Err(Answer::BadHost(HostError::Invalid));
    }
    let host_header = match req.uri().authority() {
        Some(authority) => {
            let without_userinfo = authority.as_str().rsplit('@').next().unwrap_or_default();
            HeaderValue::from_str(without_userinfo).ok()
        }
        None => req.headers().get(header::HOST).cloned(),
    };
    let host_header = host_header.ok_or(Answer::BadHost(HostError::Missing))?;
    let raw_host = host_header
        .to_str()
        .map_err(|_| Answer::BadHost(HostError::Invalid))?;
    let host = normalize_host(raw_host).map_err(Answer::BadHost)?;
    let access_log = shared.config.access_log;
    if access_log {
        record.host = Some(host.clone().into_owned());
        record.path = Some(req.uri().path().to_owned());
    }
    let path = normalize_path(req.uri().path()).map_err(Answer::BadPath)?;
    if access_log && path.as_ref() != req.uri().path() {
        record.path = Some(path.clone().into_owned());
    }
    let runtime = shared.runtime.load();

    // 421: the host would get another certificate, and this connection's does not cover
    // it (DESIGN.md, "Decisions at the edges").
    if let Some(tls) = &conn.tls {
        let for_host = runtime
            .certificates
            .select_certificate(Some(&host))
            .certificate;
        if for_host.id != tls.certificate.id && !tls.certificate.covers(&host) {
            return Err(Answer::Misdirected);
        }
    }

    let matched = runtime.routes.match_route(&host, &path);

    // Plain HTTP to a host with TLS: 308 to https, except for ACME HTTP-01 challenges.
    if conn.tls.is_none() && !path.starts_with(ACME_CHALLENGE_PREFIX) {
        let redirect = match matched.route {
            Some(route) if matched.own_host => route.https_redirect,
            _ => matched.host_tls,
        };
        if redirect {
            let query = req.uri().query();
            return Err(Answer::Redirect(redirect_location(
                &host,
                shared.config.redirect_https_port,
                &path,
                query,
            )));
        }
    }

    record.ingress = matched.route.map(|r| Arc::clone(&r.source));
    let cluster = match matched.route {
        Some(route) => route.cluster.clone().ok_or(Answer::NoEndpoints)?,
        None => runtime.default_backend.clone().ok_or(Answer::NoRoute)?,
    };
    record.service = Some(Arc::clone(&cluster.label));
    // Let go of the snapshot before awaiting the upstream, so a long request does not
    // keep an old snapshot alive.
    drop(runtime);

    // The upstream request: origin-form URI with the normalised path, our headers.
    let path_and_query = match req.uri().query() {
        Some(query) => format!("{path}?{query}"),
        None => path.into_owned(),
    };
    let uri = Uri::try_from(path_and_query).map_err(|_| Answer::BadPath(PathError::BadEscape))?;
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers, upgrade);
    if parts.version == Version::HTTP_2 {
        join_cookies(&mut parts.headers);
    }
    parts.headers.insert(header::HOST, host_header.clone());
    set_forwarded(
        &mut parts.headers,
        &Forwarded {
            peer: conn.peer.ip(),
            trusted_proxies: &shared.config.trusted_proxies,
            proto: if conn.tls.is_some() { "https" } else { "http" },
            host: raw_host,
            port: conn.local.port(),
        },
    );
    record.request_id = Some(ensure_request_id(&mut parts.headers));
    parts.uri = uri;
    parts.version = Version::HTTP_11;

    // An empty body can be rebuilt, so such a request may be retried on a fresh connection.
    let body: UpstreamBody = if body.is_end_stream() {
        empty_upstream()
    } else {
        let counted = Arc::new(AtomicU64::new(0));
        record.bytes_in = Some(Arc::clone(&counted));
        IdleTimeoutBody::new(body, shared.config.limits.client_body_idle_timeout, counted).boxed()
    };
    let upstream_req = Request::from_parts(parts, body);

    let pooled = checkout(shared, &cluster, &mut record.upstream).await?;
    let sent = Instant::now();
    let response = send(shared, pooled, upstream_req).await;
    let upstream_duration = sent.elapsed();
    record.upstream_duration = Some(upstream_duration);
    shared
        .metrics
        .upstream_duration
        .observe(upstream_duration.as_secs_f64());
    let response = response?;

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        return Ok(switch_protocols(response, client_upgrade));
    }
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    Ok(Response::from_parts(
        parts,
        body.map_err(Into::into).boxed(),
    ))
}

/// HTTP/2 clients may split `Cookie` into one field per cookie; an HTTP/1.1 upstream
/// must get them joined with "; " (RFC 9113, section 8.2.3).
fn join_cookies(headers: &mut http::HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    let (Some(_), Some(_)) = (values.next(), values.next()) else {
        return;
    };
    let joined: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    if let Ok(value) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
        headers.insert(header::COOKIE, value);
    }
}

fn empty_upstream() -> UpstreamBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

fn redirect_location(host: &str, port: u16, path: &str, query: Option<&str>) -> String {
    let mut location = String::with_capacity(host.len() + path.len() + 16);
    location.push_str("https://");
    location.push_str(host);
    if port != 443 {
        location.push(':');
        location.push_str(&port.to_string());
    }
    location.push_str(path);
    if let Some(query) = query {
        location.push('?');
        location.push_str(query);
    }
    location
}

/// A connection to an endpoint; a failed connect is retried once on another endpoint.
/// `tried` is the endpoint tried last, for the access log, whether or not it answered.
async fn checkout(
    shared: &Shared,
    cluster: &Cluster,
    tried: &mut Option<SocketAddr>,
) -> Result<PooledSender, Answer> {
    let first = cluster.pick(None).ok_or(Answer::NoEndpoints)?;
    *tried = Some(first);
    let service = ServiceLabels {
        service: Arc::clone(&cluster.label),
    };
    match shared.pool.checkout(first).await {
        Ok(pooled) => Ok(pooled),
        Err(error) => {
            shared
                .metrics
                .upstream_connect_errors
                .get_or_create(&service)
                .inc();
            let Some(second) = cluster.pick(Some(first)).filter(|s| *s != first) else {
                tracing::warn!(backend = %cluster.id, %error, "upstream connect failed");
                return Err(Answer::UpstreamUnreachable);
            };
            tracing::debug!(backend = %cluster.id, %error, retry = %second, "upstream connect failed, retrying");
            shared
                .metrics
                .upstream_retries
                .get_or_create(&service)
                .inc();
            *tried = Some(second);
            shared.pool.checkout(second).await.map_err(|error| {
                shared.metrics.upstream_connect_errors.get_or_create(&service).inc();
                tracing::warn!(backend = %cluster.id, %error, "upstream connect failed after retry");
                Answer::UpstreamUnreachable
            })
        }
    }
}

/// Sends the request and waits for the response head, within the upstream timeout.
async fn send(
    shared: &Arc<Shared>,
    mut pooled: PooledSender,
    req: Request<UpstreamBody>,
) -> Result<Response<Incoming>, Answer> {
    let timeout = shared.config.limits.upstream_response_timeout;
    let addr = pooled.addr;
    match tokio::time::timeout(timeout, pooled.sender.send_request(req)).await {
        Err(_) => {
            tracing::warn!(upstream = %addr, ?timeout, "upstream response timed out");
            Err(Answer::UpstreamTimeout)
        }
        Ok(Err(error)) => {
            // A client body that stalled or failed is the client's fault, not the
            // upstream's.
            if error_chain_has::<crate::body::BodyIdleTimeout>(&error) {
                return Err(Answer::ClientBodyTimeout);
            }
            tracing::warn!(upstream = %addr, %error, "upstream request failed");
            Err(Answer::UpstreamFailed)
        }
        Ok(Ok(response)) => {
            if response.status() != StatusCode::SWITCHING_PROTOCOLS {
                shared.pool.checkin(pooled);
            }
            Ok(response)
        }
    }
}

fn error_chain_has<E: std::error::Error + 'static>(
    error: &(dyn std::error::Error + 'static),
) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<E>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// Relays a 101 answer and joins the two upgraded connections once both sides switch.
fn switch_protocols(
    mut response: Response<Incoming>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response<ResponseBody> {
    let Some(client_upgrade) = client_upgrade else {
        // The upstream switched protocols without being asked: that is its error.
        return Answer::UpstreamFailed.into_response();
    };
    let upstream_upgrade = hyper::upgrade::on(&mut response);
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client_upgrade, upstream_upgrade) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%error, "protocol upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(%error, "upgraded connection ended");
        }
    });
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_http2_cookies_are_joined_for_http1_upstreams() {
        let mut headers = http::HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1"));
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        join_cookies(&mut headers);
        assert_eq!(headers.get_all(header::COOKIE).iter().count(), 1);
        assert_eq!(headers[header::COOKIE], "a=1; b=2");
    }

    #[test]
    fn redirect_locations_keep_the_query_and_omit_port_443() {
        assert_eq!(
            redirect_location("a.example.com", 443, "/x", Some("q=1")),
            "https://a.example.com/x?q=1"
        );
        assert_eq!(
            redirect_location("a.example.com", 8443, "/", None),
            "https://a.example.com:8443/"
        );
    }
}
