//! Checks of user-written hosts and paths before they reach a snapshot.
//!
//! Rule paths are refused when they hold control characters, dot-segments, or an encoded
//! `/`, `\` or NUL, whatever their pathType (DESIGN.md, "Decisions at the edges"): such a
//! path could never match a normalised request path, or would match one the user did not
//! mean. Accepted paths are normalised as request paths are, so the two compare.

use portcullis_dataplane::routing::normalize_path;
use portcullis_dataplane::snapshot::{HostPattern, PathMatch};

/// Parses an Ingress host (`a.example.com` or `*.example.com`) into a pattern.
pub fn parse_host(host: &str) -> Result<HostPattern, String> {
    let lower = host.to_ascii_lowercase();
    let name = lower.strip_prefix("*.").unwrap_or(&lower);
    if name.len() > 253 {
        return Err(format!("host {host:?} is longer than 253 characters"));
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "host {host:?} is an IP address; Ingress hosts must be DNS names"
        ));
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if !name.split('.').all(valid_label) {
        return Err(format!(
            "host {host:?} is not a DNS name (lower-case letters, digits, '-' and '.', \
             optionally starting with '*.')"
        ));
    }
    Ok(HostPattern::parse(&lower))
}

/// The pathTypes of the Ingress API. `ImplementationSpecific` is treated as `Prefix`.
pub fn parse_path(path: Option<&str>, path_type: &str) -> Result<PathMatch, String> {
    let exact = match path_type {
        "Exact" => true,
        "Prefix" | "ImplementationSpecific" => false,
        other => {
            return Err(format!(
                "pathType {other:?} is not one of Exact, Prefix, ImplementationSpecific"
            ));
        }
    };
    let path = path.unwrap_or("/");
    if !path.starts_with('/') {
        return Err(format!("path {path:?} does not start with '/'"));
    }
    if path.bytes().any(|b| b.is_ascii_control()) {
        return Err(format!("path {path:?} contains a control character"));
    }
    let lower = path.to_ascii_lowercase();
    let dots_decoded = lower.replace("%2e", ".");
    if dots_decoded
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(format!("path {path:?} contains a '.' or '..' segment"));
    }
    if lower.contains("%2f") || lower.contains("%5c") || lower.contains("%00") {
        return Err(format!(
            "path {path:?} contains an encoded '/', '\\' or NUL"
        ));
    }
    if path.contains('\\') {
        return Err(format!("path {path:?} contains a '\\'"));
    }
    let normalized = normalize_path(path)
        .map_err(|e| format!("path {path:?} is not a valid URL path: {e}"))?
        .into_owned();
    if exact {
        return Ok(PathMatch::Exact(normalized));
    }
    // A trailing slash in a Prefix rule is ignored: `/foo/` matches as `/foo`.
    let trimmed = normalized.trim_end_matches('/');
    Ok(PathMatch::Prefix(if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.into()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_validation_table() {
        let cases = [
            (
                "a.example.com",
                Ok(HostPattern::Exact("a.example.com".into())),
            ),
            (
                "A.Example.COM",
                Ok(HostPattern::Exact("a.example.com".into())),
            ),
            (
                "*.example.com",
                Ok(HostPattern::Wildcard("example.com".into())),
            ),
            ("localhost", Ok(HostPattern::Exact("localhost".into()))),
            ("a..example.com", Err(())),
            ("-a.example.com", Err(())),
            ("a_b.example.com", Err(())),
            ("a.*.example.com", Err(())),
            ("10.0.0.1", Err(())),
            ("example.com:443", Err(())),
        ];
        for (host, want) in cases {
            assert_eq!(parse_host(host).map_err(|_| ()), want, "{host}");
        }
    }

    #[test]
    fn path_validation_table() {
        use PathMatch::{Exact, Prefix};
        let cases: Vec<(Option<&str>, &str, Result<PathMatch, ()>)> = vec![
            (Some("/"), "Prefix", Ok(Prefix("/".into()))),
            (Some("/foo/"), "Prefix", Ok(Prefix("/foo".into()))),
            (Some("/foo"), "Exact", Ok(Exact("/foo".into()))),
            (Some("/foo/"), "Exact", Ok(Exact("/foo/".into()))),
            (
                Some("/foo"),
                "ImplementationSpecific",
                Ok(Prefix("/foo".into())),
            ),
            (None, "Prefix", Ok(Prefix("/".into()))),
            (Some("/%7euser"), "Prefix", Ok(Prefix("/~user".into()))),
            (Some("foo"), "Prefix", Err(())),
            (Some("/foo/../bar"), "Prefix", Err(())),
            (Some("/foo/./bar"), "Exact", Err(())),
            (Some("/a%2Fb"), "Prefix", Err(())),
            (Some("/a%5cb"), "Exact", Err(())),
            (Some("/a%00"), "ImplementationSpecific", Err(())),
            (Some("/a/%2e%2e/b"), "Prefix", Err(())),
            (Some("/a%2e%2e/b"), "Prefix", Ok(Prefix("/a../b".into()))),
            (Some("/a\tb"), "Prefix", Err(())),
            (Some("/a"), "Regex", Err(())),
        ];
        for (path, path_type, want) in cases {
            assert_eq!(
                parse_path(path, path_type).map_err(|_| ()),
                want,
                "{path:?} {path_type}"
            );
        }
    }
}
