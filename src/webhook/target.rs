//! What an admitted object is, from the webhook's point of view: which kind of workload, where its
//! pod template and claims live, which fix names it answers to, and on which operations it may be
//! changed without the apiserver rejecting the change.
//!
//! Pure functions over the object's JSON; no API calls (the admission path never makes any).

use serde_json::Value;

use crate::core::owners::{self, Subject};

/// Kinds the webhook mutates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    /// Whether the pod template may be raised on UPDATE. Pod specs and Job templates are
    /// immutable after creation: raising them on UPDATE would make the apiserver reject the
    /// user's update (a finalizer removal, a label change), so they are raised on CREATE only
    /// and on UPDATE only get their live values back (`mutate::keeps_live`).
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

/// The names an object answers to, its identity first. A fix whose `resource` is one of these
/// applies to the object.
///
/// The identity is the one rule of [`owners::identity`]: a Pod of ReplicaSet `web-7d9f8c6b5`
/// answers to the Deployment `web`, a Pod of Job `backup-29012345` and a Job with controller
/// CronJob `backup` to the CronJob `backup`, a bare Pod to its own name. The webhook makes no API
/// call, so a Pod's intermediate owner is resolved by the built-in controllers' naming
/// conventions; where a convention decided, the intermediate owner's own name is listed second
/// (the ReplicaSet may not be a Deployment's, the Job may not be a CronJob's).
pub fn fix_names(kind: WorkloadKind, object: &Value) -> Vec<String> {
    let subject = Subject {
        kind: kind.as_str(),
        name: str_at(object, &["metadata", "name"]).unwrap_or_default(),
        controller: controller(object),
        pod_template_hash: str_at(object, &["metadata", "labels", "pod-template-hash"]),
    };
    owners::identity(&subject, |_, _| None)
        .map(|found| found.fix_names())
        .unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_of_a_deployment_answers_to_the_deployment() {
        let pod = json!({"metadata": {
            "generateName": "web-7d9f8c6b5-",
            "labels": {"pod-template-hash": "7d9f8c6b5"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7d9f8c6b5", "controller": true}]
        }});
        assert_eq!(fix_names(WorkloadKind::Pod, &pod), ["web", "web-7d9f8c6b5"]);
    }

    #[test]
    fn pod_of_a_statefulset_and_a_bare_pod() {
        let owned = json!({"metadata": {"name": "db-0",
            "ownerReferences": [{"kind": "StatefulSet", "name": "db", "controller": true}]}});
        assert_eq!(fix_names(WorkloadKind::Pod, &owned), ["db"]);
        let bare = json!({"metadata": {"name": "debug"}});
        assert_eq!(fix_names(WorkloadKind::Pod, &bare), ["debug"]);
        let nameless = json!({"metadata": {"generateName": "x-"}});
        assert!(fix_names(WorkloadKind::Pod, &nameless).is_empty());
    }

    #[test]
    fn pod_of_a_cronjob_answers_to_the_cronjob() {
        let pod = json!({"metadata": {
            "labels": {"batch.kubernetes.io/job-name": "backup-29012345"},
            "ownerReferences": [{"kind": "Job", "name": "backup-29012345", "controller": true}]
        }});
        assert_eq!(
            fix_names(WorkloadKind::Pod, &pod),
            ["backup", "backup-29012345"]
        );
        let job = json!({"metadata": {"name": "backup-29012345",
            "ownerReferences": [{"kind": "CronJob", "name": "backup", "controller": true}]}});
        assert_eq!(fix_names(WorkloadKind::Job, &job), ["backup"]);
    }

    #[test]
    fn non_controller_owners_are_ignored() {
        let pod = json!({"metadata": {"name": "p",
            "ownerReferences": [{"kind": "ReplicaSet", "name": "rs", "controller": false}]}});
        assert_eq!(fix_names(WorkloadKind::Pod, &pod), ["p"]);
    }

    #[test]
    fn immutable_templates_are_create_only() {
        assert!(!WorkloadKind::Pod.pod_spec_mutable_on_update());
        assert!(!WorkloadKind::Job.pod_spec_mutable_on_update());
        assert!(WorkloadKind::Deployment.pod_spec_mutable_on_update());
        assert!(WorkloadKind::CronJob.pod_spec_mutable_on_update());
    }
}
