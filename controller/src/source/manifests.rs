//! The folder source: Kubernetes objects from `*.yaml`/`*.yml` files, for the quick start
//! and for checking a GitOps repository without a cluster.
//!
//! Every file under the folder is read (recursively; multi-document files and `List`
//! kinds too). A file that does not parse keeps the objects it had when it last parsed,
//! so a half-saved edit takes nothing down; an object that does not parse is skipped with
//! a diagnostic naming the file, the object and the field.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde_json::Value;

use crate::translate::{Diagnostic, Kind, ObjectRef, Objects, Reason};

/// Why the folder itself cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest folder {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("manifest folder {0} is not a directory")]
    NotADirectory(PathBuf),
}

/// One object of a kind we use.
#[derive(Debug, Clone)]
pub enum Object {
    Ingress(Arc<Ingress>),
    IngressClass(Arc<IngressClass>),
    Secret(Arc<Secret>),
    Service(Arc<Service>),
    EndpointSlice(Arc<EndpointSlice>),
}

/// A digest of a file's content and the objects last parsed from it.
struct FileState {
    digest: u64,
    objects: Vec<Object>,
    diagnostics: Vec<Diagnostic>,
}

/// Reads a folder of manifests, remembering each file's last good parse.
pub struct ManifestFolder {
    root: PathBuf,
    files: HashMap<PathBuf, FileState>,
}

/// The objects of the folder, and what could not be read.
pub struct FolderContents {
    pub objects: Objects,
    pub diagnostics: Vec<Diagnostic>,
}

impl ManifestFolder {
    /// Checks that `root` is a readable directory.
    pub fn open(root: &Path) -> Result<Self, ManifestError> {
        let meta = std::fs::metadata(root).map_err(|source| ManifestError::Folder {
            path: root.to_owned(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(ManifestError::NotADirectory(root.to_owned()));
        }
        std::fs::read_dir(root).map_err(|source| ManifestError::Folder {
            path: root.to_owned(),
            source,
        })?;
        Ok(ManifestFolder {
            root: root.to_owned(),
            files: HashMap::new(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Reads the folder again. Unchanged files are not parsed again.
    pub fn load(&mut self) -> Result<FolderContents, ManifestError> {
        let mut paths = Vec::new();
        collect_yaml_files(&self.root, &mut paths).map_err(|source| ManifestError::Folder {
            path: self.root.clone(),
            source,
        })?;
        paths.sort();

        let mut seen = HashMap::with_capacity(paths.len());
        let mut diagnostics = Vec::new();
        for path in paths {
            let display = path
                .strip_prefix(&self.root)
                .unwrap_or(&path)
                .display()
                .to_string();
            let file = ObjectRef::new(Kind::File, "", &display);
            let content = match std::fs::read(&path) {
                Ok(content) => content,
                Err(error) => {
                    // Gone between listing and reading, or unreadable: keep what it had.
                    diagnostics.push(Diagnostic::new(
                        file,
                        "",
                        Reason::InvalidManifest,
                        format!("cannot read the file: {error}"),
                    ));
                    if let Some(state) = self.files.remove(&path) {
                        seen.insert(path, state);
                    }
                    continue;
                }
            };
            let digest = digest(&content);
            let state = match self.files.remove(&path) {
                Some(state) if state.digest == digest => state,
                previous => parse_file(&file, &content, digest, previous),
            };
            seen.insert(path, state);
        }
        self.files = seen;

        let mut objects = Objects::default();
        let mut paths: Vec<_> = self.files.keys().cloned().collect();
        paths.sort();
        for path in paths {
            let state = &self.files[&path];
            diagnostics.extend(state.diagnostics.iter().cloned());
            for object in &state.objects {
                match object {
                    Object::Ingress(o) => objects.ingresses.push(Arc::clone(o)),
                    Object::IngressClass(o) => objects.ingress_classes.push(Arc::clone(o)),
                    Object::Secret(o) => objects.secrets.push(Arc::clone(o)),
                    Object::Service(o) => objects.services.push(Arc::clone(o)),
                    Object::EndpointSlice(o) => objects.endpoint_slices.push(Arc::clone(o)),
                }
            }
        }
        Ok(FolderContents {
            objects,
            diagnostics,
        })
    }
}

fn collect_yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        // Hidden entries: editors' swap files and Kubernetes' `..data` symlink farms.
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let meta = std::fs::metadata(&path)?;
        if meta.is_dir() {
            collect_yaml_files(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// Parses a file; on a YAML error keeps the previous parse's objects.
fn parse_file(
    file: &ObjectRef,
    content: &[u8],
    digest: u64,
    previous: Option<FileState>,
) -> FileState {
    let text = match std::str::from_utf8(content) {
        Ok(text) => text,
        Err(error) => {
            return kept(
                file,
                digest,
                previous,
                format!("the file is not UTF-8: {error}"),
            );
        }
    };
    match parse_manifests(text, file) {
        Ok((objects, diagnostics)) => FileState {
            digest,
            objects,
            diagnostics,
        },
        Err(message) => kept(file, digest, previous, message),
    }
}

/// A 64-bit digest of a file's bytes, to skip parsing unchanged files. Keeping the bytes
/// themselves would double the memory of a large folder.
fn digest(content: &[u8]) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    content.hash(&mut hasher);
    hasher.finish()
}

fn kept(file: &ObjectRef, digest: u64, previous: Option<FileState>, message: String) -> FileState {
    let objects = previous.map(|p| p.objects).unwrap_or_default();
    let suffix = if objects.is_empty() {
        ""
    } else {
        "; keeping the objects it had before"
    };
    FileState {
        digest,
        objects,
        diagnostics: vec![Diagnostic::new(
            file.clone(),
            "",
            Reason::InvalidManifest,
            format!("{message}{suffix}"),
        )],
    }
}

/// Parses YAML text into objects. A YAML syntax error fails the whole text; an object
/// that does not fit its kind only skips that object, with a diagnostic.
pub fn parse_manifests(
    text: &str,
    file: &ObjectRef,
) -> Result<(Vec<Object>, Vec<Diagnostic>), String> {
    // YAML 1.2 booleans only, so `namespace: no` stays a string; errors on one line.
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.with_snippet = false;
    // The default limits suit one configuration file; a GitOps folder can hold thousands
    // of objects in one file. Alias and depth limits stay as they are.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = 1_000_000;
    budget.max_nodes = 100_000_000;
    budget.max_events = 200_000_000;
    budget.max_total_scalar_bytes = 1024 * 1024 * 1024;
    options.budget = Some(budget);
    // One document at a time, so a large file never holds all its untyped trees at once.
    let mut reader = text.as_bytes();
    let mut objects = Vec::new();
    let mut diagnostics = Vec::new();
    for document in serde_saphyr::read_with_options::<_, Value>(&mut reader, options) {
        let document = document
            .map_err(|e| format!("the file is not valid YAML: {}", one_line(&e.to_string())))?;
        take_document(document, file, &mut objects, &mut diagnostics);
    }
    Ok((objects, diagnostics))
}

fn take_document(
    document: Value,
    file: &ObjectRef,
    objects: &mut Vec<Object>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    if document.is_null() {
        return;
    }
    let api_version = document
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let kind = document
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let name = document
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("<no name>")
        .to_owned();

    let parsed = match (api_version.as_str(), kind.as_str()) {
        ("v1", "List") => {
            if let Value::Array(items) = document.get("items").cloned().unwrap_or_default() {
                for item in items {
                    take_document(item, file, objects, diagnostics);
                }
            }
            return;
        }
        ("networking.k8s.io/v1", "Ingress") => {
            typed(document).map(|o| Object::Ingress(Arc::new(o)))
        }
        ("networking.k8s.io/v1", "IngressClass") => {
            typed(document).map(|o| Object::IngressClass(Arc::new(o)))
        }
        // serde quotes the value it refused, and a Secret's values are keys.
        ("v1", "Secret") => typed(document)
            .map(|o| Object::Secret(Arc::new(o)))
            .map_err(|message| without_refused_value(&message)),
        ("v1", "Service") => typed(document).map(|o| Object::Service(Arc::new(o))),
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            typed(document).map(|o| Object::EndpointSlice(Arc::new(o)))
        }
        _ => {
            tracing::debug!(file = %file.name, %api_version, %kind, %name, "skipping object of a kind we do not use");
            return;
        }
    };
    match parsed {
        Ok(object) => objects.push(object),
        Err(message) => diagnostics.push(Diagnostic::new(
            file.clone(),
            "",
            Reason::InvalidManifest,
            format!("{kind} {name} ({api_version}) is not valid: {message}; it is skipped"),
        )),
    }
}

/// Deserialises a document as `T`, naming the field that failed.
fn typed<T: serde::de::DeserializeOwned>(document: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(document).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." {
            inner
        } else {
            format!("{path}: {inner}")
        }
    })
}

/// serde's "invalid type" and "invalid value" errors quote what they refused; this keeps
/// the field and what was expected, and drops the value (DESIGN.md, promise 6).
fn without_refused_value(message: &str) -> String {
    for word in ["invalid type", "invalid value"] {
        if let Some(start) = message.find(&format!("{word}: ")) {
            let expected = message[start..]
                .rfind(", expected ")
                .map_or("", |i| &message[start + i..]);
            return format!("{}{word} (not shown){expected}", &message[..start]);
        }
    }
    message.to_owned()
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> ObjectRef {
        ObjectRef::new(Kind::File, "", "test.yaml")
    }

    #[test]
    fn multi_document_files_and_lists_are_read() {
        let text = r#"
apiVersion: v1
kind: Service
metadata: {name: a, namespace: ns}
spec: {ports: [{port: 80}]}
---
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: b}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: skipped}
"#;
        let (objects, diagnostics) = parse_manifests(text, &file()).unwrap();
        assert_eq!(objects.len(), 2);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
    }

    #[test]
    fn a_malformed_object_is_skipped_with_its_field_named() {
        let text = r#"
apiVersion: v1
kind: Service
metadata: {name: bad}
spec: {ports: [{port: "eighty"}]}
---
apiVersion: v1
kind: Service
metadata: {name: good}
"#;
        let (objects, diagnostics) = parse_manifests(text, &file()).unwrap();
        assert_eq!(objects.len(), 1);
        assert_eq!(diagnostics.len(), 1);
        let message = &diagnostics[0].message;
        assert!(message.contains("Service bad"), "{message}");
        assert!(message.contains("spec.ports[0].port"), "{message}");
    }

    #[test]
    fn a_malformed_secret_is_skipped_without_quoting_its_value() {
        let text = r#"
apiVersion: v1
kind: Secret
metadata: {name: bad, namespace: ns}
stringData: "-----BEGIN PRIVATE KEY----- MIGHAgEAMBMGByqGSM49 -----END PRIVATE KEY-----"
"#;
        let (objects, diagnostics) = parse_manifests(text, &file()).unwrap();
        assert!(objects.is_empty());
        let message = &diagnostics[0].message;
        assert!(message.contains("stringData: invalid type"), "{message}");
        assert!(message.contains("expected a map"), "{message}");
        assert!(!message.contains("PRIVATE KEY"), "{message}");
        assert!(!message.contains("MIGHAgEAMBMGByqGSM49"), "{message}");
    }

    #[test]
    fn a_yaml_syntax_error_is_one_line() {
        let err = parse_manifests("kind: [unclosed\n", &file()).unwrap_err();
        assert!(err.starts_with("the file is not valid YAML"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}
