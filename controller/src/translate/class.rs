//! Which Ingresses are ours, and why: the IngressClass decision.
//!
//! An Ingress is ours when its `spec.ingressClassName` names an IngressClass whose
//! `spec.controller` is ours; or it names no class and one of our IngressClasses is the
//! default (`ingressclass.kubernetes.io/is-default-class: "true"`), or
//! `--watch-ingress-without-class` is set; or it carries the legacy
//! `kubernetes.io/ingress.class` annotation with our class name.
//! <https://kubernetes.io/docs/concepts/services-networking/ingress/#ingress-class>

use std::sync::Arc;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use serde::Serialize;

pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// What decides ownership; set from flags.
#[derive(Debug, Clone)]
pub struct ClassConfig {
    /// Our class name, for the legacy annotation.
    pub ingress_class: String,
    /// Our `spec.controller` value.
    pub controller_name: String,
    pub watch_ingress_without_class: bool,
}

/// Why an Ingress is, or is not, ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ClassDecision {
    /// `spec.ingressClassName` names this IngressClass, which is ours.
    ClassName(String),
    /// No class named; this IngressClass of ours is the default.
    DefaultClass(String),
    /// No class named, and `--watch-ingress-without-class` is set.
    WithoutClass,
    /// The legacy annotation names our class.
    LegacyAnnotation(String),
    /// Not ours; the text says why.
    NotOurs(String),
}

impl ClassDecision {
    pub fn is_ours(&self) -> bool {
        !matches!(self, ClassDecision::NotOurs(_))
    }
}

/// Decides whether `ingress` is ours.
pub fn decide_class(
    ingress: &Ingress,
    classes: &[Arc<IngressClass>],
    config: &ClassConfig,
) -> ClassDecision {
    let ours = |class: &IngressClass| {
        class.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(&config.controller_name)
    };

    // 1. The class field, when set, decides alone.
    if let Some(name) = ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
    {
        return match classes
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
        {
            Some(class) if ours(class) => ClassDecision::ClassName(name.to_owned()),
            Some(_) => {
                ClassDecision::NotOurs(format!("IngressClass {name} belongs to another controller"))
            }
            None => ClassDecision::NotOurs(format!("IngressClass {name} does not exist")),
        };
    }

    // 2. The legacy annotation.
    let annotations = ingress.metadata.annotations.as_ref();
    if let Some(legacy) = annotations.and_then(|a| a.get(LEGACY_CLASS_ANNOTATION)) {
        return if *legacy == config.ingress_class {
            ClassDecision::LegacyAnnotation(legacy.clone())
        } else {
            ClassDecision::NotOurs(format!(
                "the {LEGACY_CLASS_ANNOTATION} annotation names class {legacy}"
            ))
        };
    }

    // 3. No class at all: our default class, or the flag.
    let default = classes.iter().filter(|c| ours(c)).find(|c| {
        c.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
            .map(String::as_str)
            == Some("true")
    });
    if let Some(class) = default {
        return ClassDecision::DefaultClass(class.metadata.name.clone().unwrap_or_default());
    }
    if config.watch_ingress_without_class {
        return ClassDecision::WithoutClass;
    }
    ClassDecision::NotOurs("it names no IngressClass and none of ours is the default".into())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::networking::v1::{IngressClassSpec, IngressSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    const OURS: &str = "portcullis.dev/ingress-controller";

    fn class(name: &str, controller: &str, default: bool) -> Arc<IngressClass> {
        let annotations = default
            .then(|| BTreeMap::from([(DEFAULT_CLASS_ANNOTATION.to_string(), "true".to_string())]));
        Arc::new(IngressClass {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations,
                ..Default::default()
            },
            spec: Some(IngressClassSpec {
                controller: Some(controller.into()),
                parameters: None,
            }),
        })
    }

    fn ingress(class_name: Option<&str>, legacy: Option<&str>) -> Ingress {
        let annotations =
            legacy.map(|l| BTreeMap::from([(LEGACY_CLASS_ANNOTATION.to_string(), l.to_string())]));
        Ingress {
            metadata: ObjectMeta {
                name: Some("web".into()),
                annotations,
                ..Default::default()
            },
            spec: Some(IngressSpec {
                ingress_class_name: class_name.map(Into::into),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn config(without_class: bool) -> ClassConfig {
        ClassConfig {
            ingress_class: "portcullis".into(),
            controller_name: OURS.into(),
            watch_ingress_without_class: without_class,
        }
    }

    #[test]
    fn class_selection_table() {
        let ours = class("portcullis", OURS, false);
        let ours_default = class("portcullis", OURS, true);
        let theirs = class("nginx", "k8s.io/ingress-nginx", true);
        // (case, ingress, classes, --watch-ingress-without-class, ours?)
        type Case = (&'static str, Ingress, Vec<Arc<IngressClass>>, bool, bool);
        let cases: Vec<Case> = vec![
            (
                "class name of ours",
                ingress(Some("portcullis"), None),
                vec![ours.clone()],
                false,
                true,
            ),
            (
                "class of another controller",
                ingress(Some("nginx"), None),
                vec![ours.clone(), theirs.clone()],
                false,
                false,
            ),
            (
                "class that does not exist",
                ingress(Some("missing"), None),
                vec![ours.clone()],
                true,
                false,
            ),
            (
                "no class, ours is default",
                ingress(None, None),
                vec![ours_default.clone()],
                false,
                true,
            ),
            (
                "no class, theirs is default",
                ingress(None, None),
                vec![ours.clone(), theirs.clone()],
                false,
                false,
            ),
            (
                "no class, flag set",
                ingress(None, None),
                vec![ours.clone()],
                true,
                true,
            ),
            (
                "legacy annotation ours",
                ingress(None, Some("portcullis")),
                vec![],
                false,
                true,
            ),
            (
                "legacy annotation theirs",
                ingress(None, Some("nginx")),
                vec![ours_default.clone()],
                true,
                false,
            ),
            (
                "class field beats annotation",
                ingress(Some("nginx"), Some("portcullis")),
                vec![theirs.clone()],
                false,
                false,
            ),
        ];
        for (name, ing, classes, flag, want) in cases {
            let decision = decide_class(&ing, &classes, &config(flag));
            assert_eq!(decision.is_ours(), want, "{name}: {decision:?}");
        }
    }
}
