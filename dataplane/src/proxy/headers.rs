//! Request and response headers at the proxy: hop-by-hop removal (RFC 9110 section 7.6.1)
//! and the forwarding headers the proxy owns.
//!
//! Order matters: hop-by-hop headers, and the ones `Connection` names, are removed first;
//! our own headers are set afterwards, so a client cannot make us drop one of them.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Headers that describe one connection, never the message.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Removes hop-by-hop headers and every header the `Connection` header names. `Upgrade`
/// is removed too unless `upgrade` is set, in which case `Connection: upgrade` and the
/// `Upgrade` header are kept for the upstream hop.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Collect the names listed in Connection before removing it.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| !(upgrade && *name == header::UPGRADE))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Whether an HTTP/1.1 request asks to switch protocols (WebSocket and the like).
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Where the request came from, as the forwarding headers will say.
pub struct Forwarded<'a> {
    pub peer: IpAddr,
    pub trusted_proxies: &'a [IpNet],
    pub proto: &'static str,
    pub host: &'a str,
    pub port: u16,
}

/// Sets `X-Forwarded-For`, `-Proto`, `-Host`, `-Port` and `X-Real-IP`.
///
/// `X-Forwarded-For` is replaced by the peer address, and extended only when the peer is a
/// trusted proxy: otherwise any client could claim any address. `X-Real-IP` is the nearest
/// address in that chain that is not a trusted proxy.
pub fn set_forwarded(headers: &mut HeaderMap, forwarded: &Forwarded<'_>) {
    let peer_trusted = is_trusted(forwarded.peer, forwarded.trusted_proxies);
    let previous = if peer_trusted {
        joined(headers, &X_FORWARDED_FOR)
    } else {
        None
    };

    let mut client = forwarded.peer;
    if let Some(chain) = &previous {
        for hop in chain.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) if is_trusted(ip, forwarded.trusted_proxies) => client = ip,
                Ok(ip) => {
                    client = ip;
                    break;
                }
                Err(_) => break,
            }
        }
    }

    let xff = match previous {
        Some(chain) => format!("{chain}, {}", forwarded.peer),
        None => forwarded.peer.to_string(),
    };
    insert_text(headers, &X_FORWARDED_FOR, &xff);
    insert_text(headers, &X_REAL_IP, &client.to_string());
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(forwarded.proto),
    );
    insert_text(headers, &X_FORWARDED_HOST, forwarded.host);
    headers.insert(X_FORWARDED_PORT.clone(), HeaderValue::from(forwarded.port));
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    trusted.iter().any(|net| net.contains(&ip))
}

/// All values of a header joined with ", ", or `None` when absent or not text.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        None
    } else {
        Some(values.join(", "))
    }
}

fn insert_text(headers: &mut HeaderMap, name: &HeaderName, text: &str) {
    if let Ok(value) = HeaderValue::from_str(text) {
        headers.insert(name.clone(), value);
    } else {
        headers.remove(name);
    }
}

/// The client's `X-Request-ID`, if it is a plausible id.
pub fn client_request_id(headers: &HeaderMap) -> Option<HeaderValue> {
    headers
        .get(&X_REQUEST_ID)
        .filter(|id| is_valid_request_id(id.as_bytes()))
        .cloned()
}

/// Keeps a client's `X-Request-ID` if it is a plausible id, else sets a new UUID. Returns
/// the id in use.
pub fn ensure_request_id(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(existing) = client_request_id(headers) {
        return existing;
    }
    let id = uuid::Uuid::new_v4();
    let value = HeaderValue::from_str(
        id.hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    )
    .expect("a UUID is a valid header value");
    headers.insert(X_REQUEST_ID.clone(), value.clone());
    value
}

/// 1 to 128 characters of letters, digits, `-`, `_`, `.` and `:`: enough for UUIDs and
/// the ids of other proxies, and nothing that could confuse a log parser.
fn is_valid_request_id(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut h = headers(&[
            ("connection", "close, x-secret"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("x-secret", "1"),
            ("upgrade", "h2c"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["x-kept"]);
    }

    #[test]
    fn connection_cannot_remove_headers_we_set() {
        let mut h = headers(&[(
            "connection",
            "x-forwarded-for, x-real-ip, x-forwarded-proto",
        )]);
        strip_hop_by_hop(&mut h, false);
        set_forwarded(
            &mut h,
            &Forwarded {
                peer: "192.0.2.1".parse().unwrap(),
                trusted_proxies: &[],
                proto: "https",
                host: "a.example.com",
                port: 443,
            },
        );
        assert_eq!(h["x-forwarded-for"], "192.0.2.1");
        assert_eq!(h["x-real-ip"], "192.0.2.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "a.example.com");
        assert_eq!(h["x-forwarded-port"], "443");
    }

    #[test]
    fn upgrade_requests_keep_their_upgrade_header() {
        let mut h = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade_request(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn forwarded_for_is_replaced_unless_the_peer_is_trusted() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let forwarded = |peer: &str| Forwarded {
            peer: peer.parse().unwrap(),
            trusted_proxies: &trusted,
            proto: "http",
            host: "h",
            port: 80,
        };

        let mut spoofed = headers(&[("x-forwarded-for", "1.2.3.4")]);
        set_forwarded(&mut spoofed, &forwarded("192.0.2.7"));
        assert_eq!(spoofed["x-forwarded-for"], "192.0.2.7");
        assert_eq!(spoofed["x-real-ip"], "192.0.2.7");

        let mut via_proxy = headers(&[("x-forwarded-for", "198.51.100.9, 10.1.1.1")]);
        set_forwarded(&mut via_proxy, &forwarded("10.2.2.2"));
        assert_eq!(
            via_proxy["x-forwarded-for"],
            "198.51.100.9, 10.1.1.1, 10.2.2.2"
        );
        assert_eq!(via_proxy["x-real-ip"], "198.51.100.9");
    }

    #[test]
    fn request_ids_are_kept_when_valid_and_generated_otherwise() {
        let mut good = headers(&[("x-request-id", "abc-123")]);
        assert_eq!(ensure_request_id(&mut good), "abc-123");

        let mut bad = headers(&[("x-request-id", "has space")]);
        let id = ensure_request_id(&mut bad);
        assert_eq!(id.len(), 36);
        assert_eq!(bad["x-request-id"], id);

        let mut none = HeaderMap::new();
        assert_eq!(ensure_request_id(&mut none).len(), 36);
    }
}
