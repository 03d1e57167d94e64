//! TARGETING: which objects selfheal may change. One rule for the admission webhook, the watcher,
//! `selfheal heal` and the Vault check alike, so no path can act where another would not.
//!
//! An object may be changed unless
//!
//! | rule | exclusion |
//! |---|---|
//! | its namespace is protected (kube-system, selfheal's own, `--protected-namespaces`) | `ProtectedNamespace` |
//! | watched namespaces are configured and its namespace is not one of them | `UnwatchedNamespace` |
//! | it is labelled `selfheal.io/ignore=true` | `IgnoredObject` |
//! | its namespace is labelled `selfheal.io/ignore=true`, or its labels cannot be read | `IgnoredNamespace` |
//!
//! The rules are checked in that order; the first that applies is the answer. Pure: the caller
//! brings what it knows of the object and its namespace ([`Target`]).

use std::collections::BTreeMap;

/// The label that opts an object, or every object of a namespace, out: `selfheal.io/ignore: "true"`.
pub const IGNORE_LABEL: &str = "selfheal.io/ignore";

/// Where selfheal may change objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targeting {
    /// Namespaces where nothing is ever changed.
    pub protected: Vec<String>,
    /// When not empty, the only namespaces where anything is changed.
    pub watched: Vec<String>,
}

/// Why an object may not be changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Exclusion {
    ProtectedNamespace,
    UnwatchedNamespace,
    IgnoredObject,
    IgnoredNamespace,
}

impl Exclusion {
    /// The name in logs, metric labels and outcomes.
    pub fn as_str(self) -> &'static str {
        match self {
            Exclusion::ProtectedNamespace => "protected_namespace",
            Exclusion::UnwatchedNamespace => "unwatched_namespace",
            Exclusion::IgnoredObject => "ignored_object",
            Exclusion::IgnoredNamespace => "ignored_namespace",
        }
    }
}

impl std::fmt::Display for Exclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known of the labels of an object's namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceLabels<'a> {
    /// As read (a namespace the API does not know has none).
    Known(&'a BTreeMap<String, String>),
    /// They could not be read (the reason): counted as ignored, so a namespace whose opt-out
    /// cannot be seen never makes selfheal act.
    Unreadable(&'a str),
    /// Not consulted: the caller excludes ignored namespaces another way (the webhook's
    /// `namespaceSelector` keeps their requests from ever reaching it).
    NotConsulted,
}

/// The object an action would change, as targeting sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// `Deployment`, `Pod`, `PersistentVolumeClaim`, `Certificate`, ...
    pub kind: &'a str,
    pub namespace: &'a str,
    /// Empty for an object not named yet (`generateName` at admission).
    pub name: &'a str,
    /// The value of its `selfheal.io/ignore` label, if it has one.
    pub ignore_label: Option<&'a str>,
    pub namespace_labels: NamespaceLabels<'a>,
}

impl<'a> Target<'a> {
    /// An object with no labels whose namespace's labels are not consulted.
    pub fn new(kind: &'a str, namespace: &'a str, name: &'a str) -> Self {
        Self {
            kind,
            namespace,
            name,
            ignore_label: None,
            namespace_labels: NamespaceLabels::NotConsulted,
        }
    }

    /// With the object's labels.
    pub fn labelled(self, labels: Option<&'a BTreeMap<String, String>>) -> Self {
        Self {
            ignore_label: labels.and_then(|l| l.get(IGNORE_LABEL)).map(String::as_str),
            ..self
        }
    }

    /// With what is known of its namespace's labels.
    pub fn in_namespace(self, namespace_labels: NamespaceLabels<'a>) -> Self {
        Self {
            namespace_labels,
            ..self
        }
    }

    /// `Deployment shop/web`, as refusals name it.
    pub fn describe(&self) -> String {
        if self.name.is_empty() {
            format!("{} in {}", self.kind, self.namespace)
        } else {
            format!("{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// A decision not to change an object: the rule and a sentence naming the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excluded {
    pub exclusion: Exclusion,
    pub reason: String,
}

/// Whether a `selfheal.io/ignore` label value opts out.
pub fn opts_out(value: Option<&str>) -> bool {
    value == Some("true")
}

/// Whether labels carry `selfheal.io/ignore=true`.
pub fn ignored(labels: Option<&BTreeMap<String, String>>) -> bool {
    opts_out(labels.and_then(|l| l.get(IGNORE_LABEL)).map(String::as_str))
}

impl Targeting {
    pub fn new(protected: Vec<String>, watched: Vec<String>) -> Self {
        Self { protected, watched }
    }

    pub fn is_protected(&self, namespace: &str) -> bool {
        self.protected.iter().any(|p| p == namespace)
    }

    /// Whether `namespace` is among the watched ones (every namespace when none is configured).
    pub fn watches(&self, namespace: &str) -> bool {
        self.watched.is_empty() || self.watched.iter().any(|w| w == namespace)
    }

    /// The namespace rules alone (protected, unwatched): what can be told from a name.
    pub fn namespace_exclusion(&self, namespace: &str) -> Option<Exclusion> {
        if self.is_protected(namespace) {
            Some(Exclusion::ProtectedNamespace)
        } else if !self.watches(namespace) {
            Some(Exclusion::UnwatchedNamespace)
        } else {
            None
        }
    }

    /// Whether `namespace` may hold objects selfheal changes, by its name alone.
    pub fn in_scope(&self, namespace: &str) -> bool {
        self.namespace_exclusion(namespace).is_none()
    }

    /// Whether `target` may be changed; the first rule that excludes it otherwise.
    pub fn check(&self, target: &Target<'_>) -> Result<(), Excluded> {
        let what = target.describe();
        let namespace = target.namespace;
        let excluded = |exclusion, reason: String| Err(Excluded { exclusion, reason });
        match self.namespace_exclusion(namespace) {
            Some(Exclusion::ProtectedNamespace) => {
                return excluded(
                    Exclusion::ProtectedNamespace,
                    format!("{what} is in the protected namespace {namespace}; not changing it"),
                );
            }
            Some(exclusion) => {
                return excluded(
                    exclusion,
                    format!("{what} is outside the watched namespaces; not changing it"),
                );
            }
            None => {}
        }
        if opts_out(target.ignore_label) {
            return excluded(
                Exclusion::IgnoredObject,
                format!("{what} is labelled {IGNORE_LABEL}=true; not changing it"),
            );
        }
        match target.namespace_labels {
            NamespaceLabels::Known(labels) if ignored(Some(labels)) => excluded(
                Exclusion::IgnoredNamespace,
                format!(
                    "namespace {namespace} of {what} is labelled {IGNORE_LABEL}=true; not changing it"
                ),
            ),
            NamespaceLabels::Unreadable(why) => excluded(
                Exclusion::IgnoredNamespace,
                format!(
                    "the labels of namespace {namespace} could not be read ({why}); not changing {what}"
                ),
            ),
            NamespaceLabels::Known(_) | NamespaceLabels::NotConsulted => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(ignored: bool) -> BTreeMap<String, String> {
        if ignored {
            [(IGNORE_LABEL.to_string(), "true".to_string())].into()
        } else {
            [(IGNORE_LABEL.to_string(), "false".to_string())].into()
        }
    }

    #[test]
    fn each_rule_excludes_in_its_order() {
        let targeting = Targeting::new(
            vec!["kube-system".into(), "selfheal".into()],
            vec!["shop".into(), "kube-system".into()],
        );
        let plain = labels(false);
        let opted_out = labels(true);
        // (namespace, object ignored, namespace labels) → the exclusion, if any.
        let table: [(&str, bool, NamespaceLabels<'_>, Option<Exclusion>); 9] = [
            ("shop", false, NamespaceLabels::Known(&plain), None),
            ("shop", false, NamespaceLabels::NotConsulted, None),
            (
                "kube-system",
                false,
                NamespaceLabels::Known(&plain),
                Some(Exclusion::ProtectedNamespace),
            ),
            (
                "selfheal",
                true,
                NamespaceLabels::Known(&opted_out),
                Some(Exclusion::ProtectedNamespace),
            ),
            (
                "elsewhere",
                true,
                NamespaceLabels::Known(&plain),
                Some(Exclusion::UnwatchedNamespace),
            ),
            (
                "shop",
                true,
                NamespaceLabels::Known(&opted_out),
                Some(Exclusion::IgnoredObject),
            ),
            (
                "shop",
                false,
                NamespaceLabels::Known(&opted_out),
                Some(Exclusion::IgnoredNamespace),
            ),
            (
                "shop",
                false,
                NamespaceLabels::Unreadable("timed out"),
                Some(Exclusion::IgnoredNamespace),
            ),
            (
                "shop",
                true,
                NamespaceLabels::NotConsulted,
                Some(Exclusion::IgnoredObject),
            ),
        ];
        for (namespace, object_ignored, namespace_labels, expected) in table {
            let object = labels(object_ignored);
            let target = Target::new("Deployment", namespace, "web")
                .labelled(Some(&object))
                .in_namespace(namespace_labels);
            let verdict = targeting.check(&target);
            assert_eq!(
                verdict.as_ref().err().map(|e| e.exclusion),
                expected,
                "{namespace} {object_ignored} {namespace_labels:?}: {verdict:?}"
            );
            if let Err(excluded) = verdict {
                assert!(
                    excluded.reason.contains("Deployment") && excluded.reason.contains(namespace),
                    "{}",
                    excluded.reason
                );
            }
        }
    }

    #[test]
    fn no_watch_list_means_every_namespace_but_the_protected_ones() {
        let targeting = Targeting::new(vec!["kube-system".into()], Vec::new());
        assert!(targeting.in_scope("anywhere"));
        assert!(!targeting.in_scope("kube-system"));
        assert_eq!(
            targeting.namespace_exclusion("kube-system"),
            Some(Exclusion::ProtectedNamespace)
        );
        let unnamed = Target::new("Pod", "anywhere", "");
        assert_eq!(unnamed.describe(), "Pod in anywhere");
        assert_eq!(targeting.check(&unnamed), Ok(()));
    }

    #[test]
    fn an_unreadable_namespace_says_why() {
        let targeting = Targeting::default();
        let target = Target::new("Pod", "shop", "web-1")
            .in_namespace(NamespaceLabels::Unreadable("403 Forbidden"));
        let excluded = targeting.check(&target).unwrap_err();
        assert_eq!(excluded.exclusion, Exclusion::IgnoredNamespace);
        assert!(
            excluded.reason.contains("403 Forbidden"),
            "{}",
            excluded.reason
        );
    }

    #[test]
    fn only_true_opts_out() {
        assert!(opts_out(Some("true")));
        for value in [None, Some("false"), Some("True"), Some("")] {
            assert!(!opts_out(value), "{value:?}");
        }
        assert!(ignored(Some(&labels(true))));
        assert!(!ignored(Some(&labels(false))));
        assert!(!ignored(None));
    }
}
