//! Ingress annotations, parsed into typed values. Nothing in an annotation is passed on as
//! text: an invalid value is refused with a diagnostic and the default applies.

use std::collections::BTreeMap;

use super::diagnostic::{Diagnostic, ObjectRef, Reason};

pub const PREFIX: &str = "portcullis.dev/";
pub const SSL_REDIRECT: &str = "portcullis.dev/ssl-redirect";
const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// The settings an Ingress can change through annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressAnnotations {
    /// Plain-HTTP requests for TLS hosts get a 308 to HTTPS. Default true.
    pub ssl_redirect: bool,
}

impl Default for IngressAnnotations {
    fn default() -> Self {
        IngressAnnotations { ssl_redirect: true }
    }
}

/// Parses the annotations of one Ingress, adding a diagnostic for each refused value.
pub fn parse_annotations(
    annotations: Option<&BTreeMap<String, String>>,
    ingress: &ObjectRef,
    diagnostics: &mut Vec<Diagnostic>,
) -> IngressAnnotations {
    let mut parsed = IngressAnnotations::default();
    let Some(annotations) = annotations else {
        return parsed;
    };
    let mut foreign = Vec::new();

    for (key, value) in annotations {
        let field = format!("metadata.annotations[{key:?}]");
        if key == SSL_REDIRECT {
            match value.as_str() {
                "true" => parsed.ssl_redirect = true,
                "false" => parsed.ssl_redirect = false,
                other => diagnostics.push(Diagnostic::new(
                    ingress.clone(),
                    field,
                    Reason::InvalidAnnotation,
                    format!("{key} must be \"true\" or \"false\", not {other:?}; using \"true\""),
                )),
            }
        } else if key.starts_with(PREFIX) {
            diagnostics.push(Diagnostic::new(
                ingress.clone(),
                field,
                Reason::InvalidAnnotation,
                format!("{key} is not an annotation Portcullis knows; it has no effect"),
            ));
        } else if key.starts_with(NGINX_PREFIX) {
            foreign.push(key.as_str());
        }
    }

    if !foreign.is_empty() {
        diagnostics.push(Diagnostic::new(
            ingress.clone(),
            "metadata.annotations",
            Reason::UnsupportedAnnotation,
            format!(
                "ingress-nginx annotations have no effect on Portcullis and were ignored: {}",
                foreign.join(", ")
            ),
        ));
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::diagnostic::Kind;

    fn parse(pairs: &[(&str, &str)]) -> (IngressAnnotations, Vec<Diagnostic>) {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut diagnostics = Vec::new();
        let ingress = ObjectRef::new(Kind::Ingress, "ns", "web");
        (
            parse_annotations(Some(&map), &ingress, &mut diagnostics),
            diagnostics,
        )
    }

    #[test]
    fn ssl_redirect_accepts_only_true_and_false() {
        assert!(!parse(&[(SSL_REDIRECT, "false")]).0.ssl_redirect);
        assert!(parse(&[(SSL_REDIRECT, "true")]).0.ssl_redirect);
        let (parsed, diagnostics) = parse(&[(SSL_REDIRECT, "no")]);
        assert!(parsed.ssl_redirect);
        assert_eq!(diagnostics[0].reason, Reason::InvalidAnnotation);
    }

    #[test]
    fn unknown_and_foreign_annotations_are_reported() {
        let (_, diagnostics) = parse(&[
            ("portcullis.dev/ssl-redirectt", "false"),
            ("nginx.ingress.kubernetes.io/rewrite-target", "/"),
            ("example.com/other", "x"),
        ]);
        let reasons: Vec<_> = diagnostics.iter().map(|d| d.reason).collect();
        assert_eq!(
            reasons,
            vec![Reason::InvalidAnnotation, Reason::UnsupportedAnnotation]
        );
    }
}
