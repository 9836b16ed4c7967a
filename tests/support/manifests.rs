//! A folder of manifests for one test, and the Kubernetes objects that go in it: the
//! IngressClass, `kubernetes.io/tls` Secrets, Services with EndpointSlices pointing at
//! 127.0.0.1, and Ingresses. Objects are built as JSON values and written as block-style
//! YAML, as a user would write them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Map, Value, json};

use super::pki::Leaf;

/// The namespace the tests use unless they say otherwise.
pub const NS: &str = "shop";

/// A fresh folder under cargo's test temp dir; removed when dropped.
pub struct Manifests {
    root: PathBuf,
    dir: PathBuf,
}

impl Manifests {
    pub fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let unique = format!(
            "portcullis-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique);
        let dir = root.join("manifests");
        std::fs::create_dir_all(&dir).expect("create the manifest folder");
        Manifests { root, dir }
    }

    /// The manifest folder given to `--manifests`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A folder beside the manifests (logs, curl's CA file), never watched by portcullis.
    pub fn scratch(&self) -> &Path {
        &self.root
    }

    /// Writes `file` in one step (a hidden temporary file renamed into place), so the
    /// folder watcher never reads half a file.
    pub fn write(&self, file: &str, text: &str) {
        let temporary = self.dir.join(format!(".{file}.tmp"));
        std::fs::write(&temporary, text).expect("write a manifest");
        std::fs::rename(&temporary, self.dir.join(file)).expect("rename a manifest");
    }

    /// Writes objects as a multi-document YAML file.
    pub fn write_objects(&self, file: &str, objects: &[Value]) {
        self.write(file, &yaml_documents(objects));
    }
}

impl Default for Manifests {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Manifests {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// Our IngressClass, the one `ingressClassName: portcullis` names.
pub fn ingress_class() -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": "portcullis"},
        "spec": {"controller": "portcullis.dev/ingress-controller"},
    })
}

/// A `kubernetes.io/tls` Secret with the pair in `stringData`.
pub fn tls_secret(namespace: &str, name: &str, leaf: &Leaf) -> Value {
    secret(
        namespace,
        name,
        "kubernetes.io/tls",
        &[("tls.crt", &leaf.cert_pem), ("tls.key", &leaf.key_pem)],
    )
}

/// A `kubernetes.io/tls` Secret with the pair base64-encoded in `data`, as the API
/// server stores it.
pub fn tls_secret_base64(namespace: &str, name: &str, leaf: &Leaf) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64(leaf.cert_pem.as_bytes()),
            "tls.key": base64(leaf.key_pem.as_bytes()),
        },
    })
}

/// A Secret of any type with any `stringData`.
pub fn secret(namespace: &str, name: &str, secret_type: &str, data: &[(&str, &str)]) -> Value {
    let data: Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": secret_type,
        "stringData": data,
    })
}

/// A Service with port 80 (named `http`) and one ready endpoint on 127.0.0.1 per port in
/// `ports`. Each endpoint gets an EndpointSlice of its own, since a slice has one port
/// number for all its endpoints.
pub fn service(namespace: &str, name: &str, ports: &[u16]) -> Vec<Value> {
    service_with_readiness(namespace, name, ports, true)
}

/// Like [`service`], with every endpoint's `ready` condition set to `ready`.
pub fn service_with_readiness(
    namespace: &str,
    name: &str,
    ports: &[u16],
    ready: bool,
) -> Vec<Value> {
    let mut objects = vec![json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    })];
    for (i, port) in ports.iter().enumerate() {
        objects.push(json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": format!("{name}-{i}"),
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": ready}}],
        }));
    }
    objects
}

/// An Ingress of class `portcullis`, built rule by rule.
#[derive(Debug, Clone)]
pub struct Ingress {
    namespace: String,
    name: String,
    annotations: Map<String, Value>,
    tls: Vec<Value>,
    rules: Vec<(String, Vec<Value>)>,
    default_backend: Option<Value>,
}

impl Ingress {
    pub fn new(name: &str) -> Self {
        Ingress {
            namespace: NS.to_owned(),
            name: name.to_owned(),
            annotations: Map::new(),
            tls: Vec::new(),
            rules: Vec::new(),
            default_backend: None,
        }
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_owned(), value.into());
        self
    }

    /// A `spec.tls` entry: these hosts are served with the certificate in `secret`.
    pub fn tls(mut self, hosts: &[&str], secret: &str) -> Self {
        self.tls.push(json!({"hosts": hosts, "secretName": secret}));
        self
    }

    /// A `Prefix` path on `host` (empty for a rule without host) to port 80 of `service`.
    pub fn route(self, host: &str, path: &str, service: &str) -> Self {
        self.path(host, path, "Prefix", service, json!({"number": 80}))
    }

    /// An `Exact` path on `host` to port 80 of `service`.
    pub fn exact(self, host: &str, path: &str, service: &str) -> Self {
        self.path(host, path, "Exact", service, json!({"number": 80}))
    }

    /// A path with any pathType and Service port (`{"number": 80}` or `{"name": "http"}`).
    pub fn path(
        mut self,
        host: &str,
        path: &str,
        path_type: &str,
        service: &str,
        port: Value,
    ) -> Self {
        let entry = json!({
            "path": path,
            "pathType": path_type,
            "backend": {"service": {"name": service, "port": port}},
        });
        match self.rules.iter_mut().find(|(h, _)| h == host) {
            Some((_, paths)) => paths.push(entry),
            None => self.rules.push((host.to_owned(), vec![entry])),
        }
        self
    }

    pub fn default_backend(mut self, service: &str) -> Self {
        self.default_backend = Some(json!({"service": {"name": service, "port": {"number": 80}}}));
        self
    }

    pub fn build(&self) -> Value {
        let mut metadata = json!({"name": self.name, "namespace": self.namespace});
        if !self.annotations.is_empty() {
            metadata["annotations"] = Value::Object(self.annotations.clone());
        }
        let mut spec = json!({"ingressClassName": "portcullis"});
        if !self.tls.is_empty() {
            spec["tls"] = Value::Array(self.tls.clone());
        }
        if !self.rules.is_empty() {
            let rules: Vec<Value> = self
                .rules
                .iter()
                .map(|(host, paths)| {
                    let mut rule = json!({"http": {"paths": paths}});
                    if !host.is_empty() {
                        rule["host"] = host.as_str().into();
                    }
                    rule
                })
                .collect();
            spec["rules"] = Value::Array(rules);
        }
        if let Some(default) = &self.default_backend {
            spec["defaultBackend"] = default.clone();
        }
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": metadata,
            "spec": spec,
        })
    }
}

/// Objects as a multi-document YAML text.
pub fn yaml_documents(objects: &[Value]) -> String {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        write_block(object, 0, &mut out);
    }
    out
}

/// Block-style YAML; scalars are written as JSON scalars, which YAML reads the same way.
fn write_block(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                out.push_str(&pad);
                out.push_str(&scalar(&Value::String(key.clone())));
                out.push(':');
                write_child(child, indent, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                out.push_str(&pad);
                out.push('-');
                write_child(item, indent, out);
            }
        }
        other => {
            out.push_str(&pad);
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn write_child(child: &Value, indent: usize, out: &mut String) {
    let nested = match child {
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => false,
    };
    if nested {
        out.push('\n');
        write_block(child, indent + 2, out);
    } else {
        out.push(' ');
        out.push_str(&scalar(child));
        out.push('\n');
    }
}

fn scalar(value: &Value) -> String {
    serde_json::to_string(value).expect("a JSON value serialises")
}

/// Standard base64 with padding, for Secret `data`.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
