//! Request path normalisation and path matching.
//!
//! A request path is normalised once, before routing: unreserved `%XX` escapes are
//! decoded and dot-segments removed (RFC 3986 sections 2.3, 6.2.2 and 5.2.4). The proxy
//! routes on that path and forwards the same path, so a backend never sees a path the
//! router did not. Encoded `/`, `\` and NUL are refused: they would let a request name one
//! path to the router and another to the backend.

use std::borrow::Cow;

use crate::snapshot::PathMatch;

/// Why a request path cannot be routed; the client gets 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with '/'")]
    NotAbsolute,
    #[error("the path has a malformed percent-escape")]
    BadEscape,
    #[error("the path has an encoded '/', '\\' or NUL")]
    EncodedSeparator,
}

/// Normalises a request path (without its query). Borrows when nothing changes, which is
/// the common case.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let needs_decode = path.contains('%');
    let needs_dots = has_dot_segment(path);
    if !needs_decode && !needs_dots {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = if needs_decode {
        Cow::Owned(decode_unreserved(path)?)
    } else {
        Cow::Borrowed(path)
    };
    Ok(Cow::Owned(remove_dot_segments(&decoded)))
}

fn has_dot_segment(path: &str) -> bool {
    path.split('/')
        .any(|segment| segment == "." || segment == "..")
}

/// Decodes `%XX` escapes of unreserved characters and upper-cases the hex digits of the
/// rest, so equal paths compare equal.
fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            // The URI parser admits only ASCII here; push byte-wise to keep it cheap.
            out.push(bytes[i] as char);
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).and_then(|b| hex(*b)),
            bytes.get(i + 2).and_then(|b| hex(*b)),
        ) else {
            return Err(PathError::BadEscape);
        };
        let byte = hi << 4 | lo;
        match byte {
            b'/' | b'\\' | 0 => return Err(PathError::EncodedSeparator),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(byte as char)
            }
            _ => {
                out.push('%');
                out.push(HEX_UPPER[usize::from(hi)] as char);
                out.push(HEX_UPPER[usize::from(lo)] as char);
            }
        }
        i += 3;
    }
    Ok(out)
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 section 5.2.4 for an absolute path: `.` segments vanish, `..` removes the
/// segment before it and never climbs above the root. A trailing `.` or `..` leaves a
/// trailing slash, as the RFC's algorithm does.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    // Skip the leading '/' and walk the segments.
    for segment in path[1..].split('/') {
        trailing_slash = false;
        match segment {
            "." => trailing_slash = true,
            ".." => {
                segments.pop();
                trailing_slash = true;
            }
            other => segments.push(other),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

/// Whether a normalised request path matches a rule path.
///
/// `Prefix` matches by `/`-separated elements, as the Ingress API defines it: `/foo`
/// matches `/foo`, `/foo/` and `/foo/bar`, never `/foobar`.
pub fn path_matches(rule: &PathMatch, path: &str) -> bool {
    match rule {
        PathMatch::Exact(exact) => exact == path,
        PathMatch::Prefix(prefix) => {
            if prefix == "/" {
                return true;
            }
            match path.strip_prefix(prefix.as_str()) {
                Some(rest) => rest.is_empty() || rest.starts_with('/'),
                None => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_table() {
        let cases: &[(&str, Result<&str, PathError>)] = &[
            ("/", Ok("/")),
            ("/foo/bar", Ok("/foo/bar")),
            ("/foo/./bar", Ok("/foo/bar")),
            ("/foo/../bar", Ok("/bar")),
            ("/../../etc/passwd", Ok("/etc/passwd")),
            ("/foo/..", Ok("/")),
            ("/foo/bar/.", Ok("/foo/bar/")),
            ("/foo/%2e%2E/bar", Ok("/bar")),
            ("/%7Euser/%61", Ok("/~user/a")),
            ("/a%20b", Ok("/a%20b")),
            ("/a%c3%a9", Ok("/a%C3%A9")),
            ("/a%2fb", Err(PathError::EncodedSeparator)),
            ("/a%2Fb", Err(PathError::EncodedSeparator)),
            ("/a%5cb", Err(PathError::EncodedSeparator)),
            ("/a%00b", Err(PathError::EncodedSeparator)),
            ("/a%zz", Err(PathError::BadEscape)),
            ("/a%4", Err(PathError::BadEscape)),
            ("*", Err(PathError::NotAbsolute)),
            ("/foo//bar", Ok("/foo//bar")),
            (
                "/.well-known/acme-challenge/x",
                Ok("/.well-known/acme-challenge/x"),
            ),
        ];
        for (input, want) in cases {
            let got = normalize_path(input).map(|p| p.into_owned());
            assert_eq!(got.as_deref().map_err(|e| *e), *want, "input {input:?}");
        }
    }

    #[test]
    fn prefix_matches_whole_elements_only() {
        let foo = PathMatch::Prefix("/foo".into());
        let cases = [
            ("/foo", true),
            ("/foo/", true),
            ("/foo/bar", true),
            ("/foobar", false),
            ("/fo", false),
            ("/", false),
            ("/FOO", false),
        ];
        for (path, want) in cases {
            assert_eq!(path_matches(&foo, path), want, "{path}");
        }
        let root = PathMatch::Prefix("/".into());
        assert!(path_matches(&root, "/"));
        assert!(path_matches(&root, "/anything/at/all"));
    }

    #[test]
    fn exact_matches_the_whole_path_only() {
        let exact = PathMatch::Exact("/foo".into());
        assert!(path_matches(&exact, "/foo"));
        assert!(!path_matches(&exact, "/foo/"));
        assert!(!path_matches(&exact, "/foo/bar"));
    }
}
