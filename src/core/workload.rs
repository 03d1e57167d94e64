//! The kinds of object selfheal changes, where their pod spec lives, whether it may change on
//! UPDATE, and the small JSON accessors the pure rules over them share (`core::raise`,
//! `core::headroom`, `webhook::mutate`).
//!
//! Pure functions over an object's JSON; no API calls.

use serde_json::{Map, Value};

/// Kinds the webhook mutates and the executor rolls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    Pod,
    PersistentVolumeClaim,
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    Job,
    CronJob,
}

impl WorkloadKind {
    /// Identifies a kind from the request's `kind` (group and kind; every version is the same shape).
    pub fn from_group_kind(group: &str, kind: &str) -> Option<Self> {
        match (group, kind) {
            ("", "Pod") => Some(Self::Pod),
            ("", "PersistentVolumeClaim") => Some(Self::PersistentVolumeClaim),
            ("apps", "Deployment") => Some(Self::Deployment),
            ("apps", "StatefulSet") => Some(Self::StatefulSet),
            ("apps", "DaemonSet") => Some(Self::DaemonSet),
            ("apps", "ReplicaSet") => Some(Self::ReplicaSet),
            ("batch", "Job") => Some(Self::Job),
            ("batch", "CronJob") => Some(Self::CronJob),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pod => "Pod",
            Self::PersistentVolumeClaim => "PersistentVolumeClaim",
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
            Self::ReplicaSet => "ReplicaSet",
            Self::Job => "Job",
            Self::CronJob => "CronJob",
        }
    }

    /// JSON pointer segments from the object to its pod spec, if it has one.
    pub fn pod_spec_path(self) -> Option<&'static [&'static str]> {
        match self {
            Self::Pod => Some(&["spec"]),
            Self::Deployment
            | Self::StatefulSet
            | Self::DaemonSet
            | Self::ReplicaSet
            | Self::Job => Some(&["spec", "template", "spec"]),
            Self::CronJob => Some(&["spec", "jobTemplate", "spec", "template", "spec"]),
            Self::PersistentVolumeClaim => None,
        }
    }

    /// The object's pod spec as a JSON pointer (`/spec/template/spec`), if it has one.
    pub fn pod_spec_pointer(self) -> Option<String> {
        self.pod_spec_path().map(pointer)
    }

    /// Whether the pod template may be raised on UPDATE. Pod specs and Job templates are
    /// immutable after creation: raising them on UPDATE would make the apiserver reject the
    /// user's update (a finalizer removal, a label change), so they are raised on CREATE only
    /// and on UPDATE only get their live values back (`webhook::mutate::keeps_live`).
    pub fn pod_spec_mutable_on_update(self) -> bool {
        matches!(
            self,
            Self::Deployment
                | Self::StatefulSet
                | Self::DaemonSet
                | Self::ReplicaSet
                | Self::CronJob
        )
    }
}

/// Kind and name of the object's controller (the owner reference with `controller: true`).
pub fn controller(object: &Value) -> Option<(&str, &str)> {
    object
        .pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|owner| owner.get("controller").and_then(Value::as_bool) == Some(true))
        .and_then(|owner| Some((owner.get("kind")?.as_str()?, owner.get("name")?.as_str()?)))
}

/// The string at `path` in `value`, if there is one.
pub fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |node, segment| node.get(segment))?
        .as_str()
}

/// Sets `value` at `path`, creating missing (or null) parent objects. Does nothing where a
/// parent exists but is not an object.
pub fn set_at(root: &mut Value, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = root;
    for segment in parents {
        let Some(map) = as_object(node) else {
            return;
        };
        node = map
            .entry(segment.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if let Some(map) = as_object(node) {
        map.insert(last.to_string(), value);
    }
}

/// The node as an object, turning `null` into `{}`; `None` for any other non-object.
fn as_object(node: &mut Value) -> Option<&mut Map<String, Value>> {
    if node.is_null() {
        *node = Value::Object(Map::new());
    }
    node.as_object_mut()
}

/// Path segments as a JSON pointer: `["spec", "template"]` → `/spec/template`.
pub fn pointer(path: &[&str]) -> String {
    path.iter().map(|segment| format!("/{segment}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn immutable_templates_are_create_only() {
        assert!(!WorkloadKind::Pod.pod_spec_mutable_on_update());
        assert!(!WorkloadKind::Job.pod_spec_mutable_on_update());
        assert!(WorkloadKind::Deployment.pod_spec_mutable_on_update());
        assert!(WorkloadKind::CronJob.pod_spec_mutable_on_update());
    }

    #[test]
    fn set_at_creates_missing_and_null_parents_only() {
        let mut object = json!({"metadata": {"annotations": null}, "spec": "text"});
        set_at(&mut object, &["metadata", "annotations", "a"], json!("1"));
        set_at(&mut object, &["status", "x"], json!(2));
        set_at(&mut object, &["spec", "y"], json!(3));
        assert_eq!(
            object,
            json!({"metadata": {"annotations": {"a": "1"}}, "status": {"x": 2}, "spec": "text"})
        );
        assert_eq!(
            WorkloadKind::CronJob.pod_spec_pointer().as_deref(),
            Some("/spec/jobTemplate/spec/template/spec")
        );
    }
}
