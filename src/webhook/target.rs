//! What an admitted object is, from the webhook's point of view: which kind of workload, where its
//! pod template and claims live, which fix names it answers to, and on which operations it may be
//! changed without the apiserver rejecting the change.
//!
//! Pure functions over the object's JSON; no API calls (the admission path never makes any).

use serde_json::Value;

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

    /// Whether the pod template may be changed on UPDATE. Pod specs, Job templates and claims are
    /// immutable after creation: patching them on UPDATE would make the apiserver reject the
    /// user's update (a finalizer removal, a label change), so they are changed on CREATE only.
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

/// The names an object answers to, most specific workload first. A fix whose `resource` is one of
/// these applies to the object.
///
/// A Pod answers to its controller: a ReplicaSet created by a Deployment resolves to the
/// Deployment's name (the ReplicaSet name minus the `pod-template-hash` suffix), a Job created by a
/// CronJob to the CronJob's name; a bare Pod answers to its own name.
pub fn fix_names(kind: WorkloadKind, object: &Value) -> Vec<String> {
    let own_name = str_at(object, &["metadata", "name"]).unwrap_or_default();
    let mut names = Vec::with_capacity(3);
    match kind {
        WorkloadKind::Pod => {
            if let Some((owner_kind, owner_name)) = controller(object) {
                if owner_kind == "ReplicaSet" {
                    let hash = str_at(object, &["metadata", "labels", "pod-template-hash"]);
                    if let Some(deployment) = hash.and_then(|h| strip_suffix(owner_name, h)) {
                        names.push(deployment.to_string());
                    }
                } else if owner_kind == "Job" {
                    let cronjob = str_at(
                        object,
                        &["metadata", "labels", "batch.kubernetes.io/job-name"],
                    )
                    .and_then(cronjob_of_job_name);
                    if let Some(cronjob) = cronjob {
                        names.push(cronjob.to_string());
                    }
                }
                names.push(owner_name.to_string());
            } else if !own_name.is_empty() {
                names.push(own_name.to_string());
            }
        }
        WorkloadKind::Job => {
            if let Some(("CronJob", cronjob)) = controller(object) {
                names.push(cronjob.to_string());
            }
            if !own_name.is_empty() {
                names.push(own_name.to_string());
            }
        }
        _ => {
            if !own_name.is_empty() {
                names.push(own_name.to_string());
            }
        }
    }
    names.dedup();
    names
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

/// A claim created by a StatefulSet is named `<template>-<statefulset>-<ordinal>`. Returns every
/// way of reading `claim_name` so, as (template, statefulset) pairs; where the claim names its
/// StatefulSet as owner, only the matching reading.
pub fn statefulset_claim_readings<'a>(
    claim_name: &'a str,
    owner_statefulset: Option<&str>,
) -> Vec<(&'a str, &'a str)> {
    let Some((stem, ordinal)) = claim_name.rsplit_once('-') else {
        return Vec::new();
    };
    if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return Vec::new();
    }
    stem.match_indices('-')
        .map(|(at, _)| (&stem[..at], &stem[at + 1..]))
        .filter(|(template, statefulset)| !template.is_empty() && !statefulset.is_empty())
        .filter(|(_, statefulset)| owner_statefulset.is_none_or(|owner| owner == *statefulset))
        .collect()
}

/// The string at `path` in `value`, if there is one.
pub fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |node, segment| node.get(segment))?
        .as_str()
}

fn strip_suffix<'a>(name: &'a str, hash: &str) -> Option<&'a str> {
    name.strip_suffix(hash)?
        .strip_suffix('-')
        .filter(|stem| !stem.is_empty())
}

/// CronJob-created Jobs are named `<cronjob>-<scheduled time in minutes>`.
fn cronjob_of_job_name(job_name: &str) -> Option<&str> {
    let (stem, stamp) = job_name.rsplit_once('-')?;
    let is_stamp = stamp.len() >= 8 && stamp.bytes().all(|b| b.is_ascii_digit());
    (is_stamp && !stem.is_empty()).then_some(stem)
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
        assert_eq!(
            fix_names(WorkloadKind::Job, &job),
            ["backup", "backup-29012345"]
        );
    }

    #[test]
    fn non_controller_owners_are_ignored() {
        let pod = json!({"metadata": {"name": "p",
            "ownerReferences": [{"kind": "ReplicaSet", "name": "rs", "controller": false}]}});
        assert_eq!(fix_names(WorkloadKind::Pod, &pod), ["p"]);
    }

    #[test]
    fn statefulset_claim_names_are_read_every_way() {
        assert_eq!(
            statefulset_claim_readings("data-web-0", None),
            [("data", "web")]
        );
        assert_eq!(
            statefulset_claim_readings("my-data-my-web-12", None),
            [
                ("my", "data-my-web"),
                ("my-data", "my-web"),
                ("my-data-my", "web")
            ]
        );
        assert_eq!(
            statefulset_claim_readings("my-data-my-web-12", Some("my-web")),
            [("my-data", "my-web")]
        );
        assert!(statefulset_claim_readings("data-web", None).is_empty());
        assert!(statefulset_claim_readings("web-0", None).is_empty());
    }

    #[test]
    fn immutable_templates_are_create_only() {
        assert!(!WorkloadKind::Pod.pod_spec_mutable_on_update());
        assert!(!WorkloadKind::Job.pod_spec_mutable_on_update());
        assert!(WorkloadKind::Deployment.pod_spec_mutable_on_update());
        assert!(WorkloadKind::CronJob.pod_spec_mutable_on_update());
    }
}
