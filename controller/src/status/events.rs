//! Kubernetes Events for diagnostics: a Warning on the object at fault, with the
//! diagnostic's reason and message. The leader publishes each problem once when it
//! appears (and once more after a leadership change), not on every rebuild.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::translate::{Diagnostic, Kind, Objects};

pub struct EventWriter {
    recorder: Recorder,
    published: BTreeSet<Diagnostic>,
}

/// Kubernetes limits an Event's note to 1 kB.
const MAX_NOTE: usize = 1000;

impl EventWriter {
    pub fn new(client: Client, instance: String) -> Self {
        let reporter = Reporter {
            controller: "portcullis".into(),
            instance: Some(instance),
        };
        EventWriter {
            recorder: Recorder::new(client, reporter),
            published: BTreeSet::new(),
        }
    }

    /// Forgets what was published, so a new leader tells the current problems again.
    pub fn reset(&mut self) {
        self.published.clear();
    }

    /// Publishes diagnostics not yet published.
    pub async fn publish(&mut self, diagnostics: &[Diagnostic], objects: &Objects) {
        let current: BTreeSet<Diagnostic> = diagnostics.iter().cloned().collect();
        for diagnostic in current.difference(&self.published) {
            let Some(reference) = object_reference(diagnostic, objects) else {
                continue;
            };
            let mut note = diagnostic.message.clone();
            if note.len() > MAX_NOTE {
                let mut end = MAX_NOTE;
                while !note.is_char_boundary(end) {
                    end -= 1;
                }
                note.truncate(end);
            }
            let event = Event {
                type_: EventType::Warning,
                reason: diagnostic.reason.as_str().to_owned(),
                note: Some(
                    format!("{}: {note}", diagnostic.field)
                        .chars()
                        .take(MAX_NOTE)
                        .collect(),
                ),
                action: "Translate".into(),
                secondary: None,
            };
            if let Err(error) = self.recorder.publish(&event, &reference).await {
                tracing::warn!(object = %diagnostic.object, %error, "cannot publish event");
            }
        }
        self.published = current;
    }
}

/// The API object a diagnostic is about, with its uid; `None` for files or objects that
/// are gone.
fn object_reference(diagnostic: &Diagnostic, objects: &Objects) -> Option<ObjectReference> {
    let o = &diagnostic.object;
    let matches = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        meta.name.as_deref() == Some(o.name.as_str())
            && (o.namespace.is_empty() || meta.namespace.as_deref() == Some(o.namespace.as_str()))
    };
    let (api_version, meta) = match o.kind {
        Kind::Ingress => (
            "networking.k8s.io/v1",
            &objects
                .ingresses
                .iter()
                .find(|i| matches(&i.metadata))?
                .metadata,
        ),
        Kind::IngressClass => (
            "networking.k8s.io/v1",
            &objects
                .ingress_classes
                .iter()
                .find(|i| matches(&i.metadata))?
                .metadata,
        ),
        Kind::Secret => (
            "v1",
            &objects
                .secrets
                .iter()
                .find(|i| matches(&i.metadata))?
                .metadata,
        ),
        Kind::Service => (
            "v1",
            &objects
                .services
                .iter()
                .find(|i| matches(&i.metadata))?
                .metadata,
        ),
        Kind::EndpointSlice => (
            "discovery.k8s.io/v1",
            &objects
                .endpoint_slices
                .iter()
                .find(|i| matches(&i.metadata))?
                .metadata,
        ),
        Kind::File => return None,
    };
    Some(ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(o.kind.as_str().into()),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    })
}
