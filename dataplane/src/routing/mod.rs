//! Host and path matching: which route, if any, a request takes.
//!
//! The table is compiled from a snapshot once; a request does one or two hash lookups for
//! its host and walks that host's routes, which are already in match order.

mod path;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

pub use path::{PathError, normalize_path, path_matches};

use crate::snapshot::PathMatch;
use crate::upstream::Cluster;

/// A route ready to serve.
#[derive(Debug)]
pub struct CompiledRoute {
    pub path: PathMatch,
    /// `None` when the snapshot named a backend it did not define; the request gets 503.
    pub cluster: Option<Arc<Cluster>>,
    pub https_redirect: bool,
    pub source: Arc<str>,
}

/// The routes of one host pattern, in match order.
#[derive(Debug, Default)]
pub struct HostRoutes {
    pub routes: Vec<CompiledRoute>,
    /// The host has TLS, so plain HTTP requests that match no route of its own are
    /// redirected to HTTPS.
    pub tls: bool,
}

/// What routing found for a request.
pub struct RouteMatch<'a> {
    pub route: Option<&'a CompiledRoute>,
    /// The route came from the host's own rules, not from host-less rules.
    pub own_host: bool,
    /// The host has TLS.
    pub host_tls: bool,
}

#[derive(Debug, Default)]
pub struct RouteTable {
    pub exact: HashMap<String, HostRoutes>,
    /// Keyed by the suffix after `*.`.
    pub wildcard: HashMap<String, HostRoutes>,
    /// Rules without a host.
    pub any: HostRoutes,
}

impl RouteTable {
    /// Finds the route for a host (normalised) and a path (normalised).
    ///
    /// The exact host wins over a wildcard, and a wildcard over host-less rules. Host-less
    /// rules serve only hosts without rules of their own: a host that has rules but no
    /// matching path falls to the default backend, as the Ingress API says.
    pub fn match_route(&self, host: &str, path: &str) -> RouteMatch<'_> {
        let own = self.exact.get(host).or_else(|| {
            let (label, parent) = host.split_once('.')?;
            if label.is_empty() {
                return None;
            }
            self.wildcard.get(parent)
        });
        let host_tls = own.is_some_and(|h| h.tls);
        let (routes, own_host) = match own {
            Some(own) if !own.routes.is_empty() => (own, true),
            _ => (&self.any, false),
        };
        let route = routes.routes.iter().find(|r| path_matches(&r.path, path));
        RouteMatch {
            route,
            own_host,
            host_tls,
        }
    }
}

/// Sorts routes into match order: longest path first; at equal length `Exact` first.
pub fn sort_routes(routes: &mut [CompiledRoute]) {
    routes.sort_by(|a, b| {
        b.path.len().cmp(&a.path.len()).then_with(|| {
            let rank = |p: &PathMatch| matches!(p, PathMatch::Prefix(_)) as u8;
            rank(&a.path).cmp(&rank(&b.path))
        })
    });
}

/// Why a request's host cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("the request has no host")]
    Missing,
    #[error("the request host is not a valid host name")]
    Invalid,
}

/// Normalises a request host for matching: lower case, without the port and without a
/// trailing dot. IPv6 literals keep their brackets.
pub fn normalize_host(raw: &str) -> Result<Cow<'_, str>, HostError> {
    if raw.is_empty() {
        return Err(HostError::Missing);
    }
    let host = if raw.starts_with('[') {
        // [v6]:port
        let end = raw.find(']').ok_or(HostError::Invalid)?;
        let rest = &raw[end + 1..];
        if !(rest.is_empty() || is_port(rest.strip_prefix(':').unwrap_or("x"))) {
            return Err(HostError::Invalid);
        }
        &raw[..=end]
    } else {
        match raw.rsplit_once(':') {
            Some((host, port)) if is_port(port) => host,
            Some(_) => return Err(HostError::Invalid),
            None => raw,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty()
        || !host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'[' | b']' | b':')
        })
    {
        return Err(HostError::Invalid);
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Ok(Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Ok(Cow::Borrowed(host))
    }
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: PathMatch, source: &str) -> CompiledRoute {
        CompiledRoute {
            path,
            cluster: None,
            https_redirect: false,
            source: source.into(),
        }
    }

    fn table() -> RouteTable {
        let mut t = RouteTable::default();
        let mut foo = vec![
            route(PathMatch::Prefix("/".into()), "foo-root"),
            route(PathMatch::Prefix("/api".into()), "foo-api-prefix"),
            route(PathMatch::Exact("/api".into()), "foo-api-exact"),
            route(PathMatch::Prefix("/api/v2".into()), "foo-api-v2"),
        ];
        sort_routes(&mut foo);
        t.exact.insert(
            "foo.example.com".into(),
            HostRoutes {
                routes: foo,
                tls: true,
            },
        );
        t.exact.insert(
            "only-api.example.com".into(),
            HostRoutes {
                routes: vec![route(PathMatch::Prefix("/api".into()), "api-only")],
                tls: false,
            },
        );
        t.exact.insert(
            "tls-only.example.com".into(),
            HostRoutes {
                routes: vec![],
                tls: true,
            },
        );
        t.wildcard.insert(
            "example.com".into(),
            HostRoutes {
                routes: vec![route(PathMatch::Prefix("/".into()), "wild")],
                tls: false,
            },
        );
        t.any = HostRoutes {
            routes: vec![route(PathMatch::Prefix("/".into()), "any")],
            tls: false,
        };
        t
    }

    #[test]
    fn route_matching_table() {
        let t = table();
        let cases = [
            ("foo.example.com", "/", Some("foo-root")),
            ("foo.example.com", "/api", Some("foo-api-exact")),
            ("foo.example.com", "/api/", Some("foo-api-prefix")),
            ("foo.example.com", "/api/v2/x", Some("foo-api-v2")),
            ("foo.example.com", "/apiv2", Some("foo-root")),
            ("bar.example.com", "/x", Some("wild")),
            ("a.bar.example.com", "/x", Some("any")),
            ("example.com", "/x", Some("any")),
            ("other.org", "/x", Some("any")),
            // A host with rules of its own does not fall to host-less rules.
            ("only-api.example.com", "/web", None),
            // A host with TLS but no rules of its own is served by host-less rules.
            ("tls-only.example.com", "/", Some("any")),
        ];
        for (host, path, want) in cases {
            let got = t.match_route(host, path).route.map(|r| &*r.source);
            assert_eq!(got, want, "{host}{path}");
        }
        assert!(t.match_route("tls-only.example.com", "/").host_tls);
        assert!(!t.match_route("tls-only.example.com", "/").own_host);
    }

    #[test]
    fn host_normalisation_table() {
        let cases: &[(&str, Result<&str, HostError>)] = &[
            ("Example.COM", Ok("example.com")),
            ("example.com:8443", Ok("example.com")),
            ("example.com.", Ok("example.com")),
            ("[::1]:443", Ok("[::1]")),
            ("[::1]", Ok("[::1]")),
            ("10.0.0.1:80", Ok("10.0.0.1")),
            ("", Err(HostError::Missing)),
            ("exa mple.com", Err(HostError::Invalid)),
            ("example.com:http", Err(HostError::Invalid)),
            ("example.com:", Err(HostError::Invalid)),
            ("[::1", Err(HostError::Invalid)),
        ];
        for (raw, want) in cases {
            let got = normalize_host(raw).map(|h| h.into_owned());
            assert_eq!(got.as_deref().map_err(|e| *e), *want, "{raw:?}");
        }
    }
}
