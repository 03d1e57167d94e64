//! What an admitted object is, from the webhook's point of view: which fix names it answers to.
//! Its kind, where its pod template lives and on which operations it may change are
//! `core::workload`'s (re-exported here, the names the webhook's callers know).
//!
//! Pure functions over the object's JSON; no API calls (the admission path never makes any).

use serde_json::Value;

use crate::core::owners::{self, Subject};
pub use crate::core::workload::{WorkloadKind, controller, str_at};

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
}
