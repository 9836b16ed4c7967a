//! Diagnostics: what translation refused or worked around, on which object and field,
//! and why, in words a user can act on. They become log lines and Kubernetes Events.

use std::fmt;

use serde::Serialize;

/// The kinds of object a diagnostic can be about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Kind {
    Ingress,
    IngressClass,
    Secret,
    Service,
    EndpointSlice,
    /// A manifest file in folder mode.
    File,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ingress => "Ingress",
            Kind::IngressClass => "IngressClass",
            Kind::Secret => "Secret",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::File => "File",
        }
    }
}

/// A reference to one object: its kind, namespace (empty for cluster-scoped objects and
/// files) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Self {
        ObjectRef {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    /// `namespace/name`, or `name` when cluster-scoped.
    pub fn key(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind.as_str(), self.name)
        } else {
            write!(f, "{} {}/{}", self.kind.as_str(), self.namespace, self.name)
        }
    }
}

/// Why a diagnostic was raised. The names are the Event reasons users will see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Reason {
    /// The Secret's certificate or key cannot serve.
    InvalidCertificate,
    /// The Secret's certificate is outside its validity period.
    CertificateExpired,
    /// The certificate does not cover a host it is listed for.
    CertificateHostMismatch,
    /// The certificate expires within 14 days.
    CertificateExpiringSoon,
    SecretNotFound,
    /// The Secret is not of type `kubernetes.io/tls`.
    SecretWrongType,
    ServiceNotFound,
    ServicePortNotFound,
    /// Another, older Ingress already claims this host and path (or TLS host, or default
    /// backend).
    ConflictingRule,
    InvalidHost,
    InvalidPath,
    InvalidBackend,
    InvalidAnnotation,
    /// An annotation of another controller, which has no effect here.
    UnsupportedAnnotation,
    /// A manifest file, or an object in it, could not be read.
    InvalidManifest,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidCertificate => "InvalidCertificate",
            Reason::CertificateExpired => "CertificateExpired",
            Reason::CertificateHostMismatch => "CertificateHostMismatch",
            Reason::CertificateExpiringSoon => "CertificateExpiringSoon",
            Reason::SecretNotFound => "SecretNotFound",
            Reason::SecretWrongType => "SecretWrongType",
            Reason::ServiceNotFound => "ServiceNotFound",
            Reason::ServicePortNotFound => "ServicePortNotFound",
            Reason::ConflictingRule => "ConflictingRule",
            Reason::InvalidHost => "InvalidHost",
            Reason::InvalidPath => "InvalidPath",
            Reason::InvalidBackend => "InvalidBackend",
            Reason::InvalidAnnotation => "InvalidAnnotation",
            Reason::UnsupportedAnnotation => "UnsupportedAnnotation",
            Reason::InvalidManifest => "InvalidManifest",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found during translation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Diagnostic {
    /// The object at fault: the one a user should edit, and the one an Event goes on.
    pub object: ObjectRef,
    /// The field, as a path into the object (`spec.tls[0].secretName`).
    pub field: String,
    pub reason: Reason,
    pub message: String,
}

impl Diagnostic {
    pub fn new(
        object: ObjectRef,
        field: impl Into<String>,
        reason: Reason,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            object,
            field: field.into(),
            reason,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.object, self.field, self.message)
    }
}
