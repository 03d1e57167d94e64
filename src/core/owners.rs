//! The one identity rule: whom an object answers to — the workload whose fixes apply to it and
//! under whose name a fix learned from it is recorded. The webhook (`webhook::target`), the
//! watcher, `selfheal health` and `selfheal heal` (all through `heal::inspect`) resolve through
//! this module only, so a fix recorded by one is found by the others.
//!
//! | Object | Answers to |
//! |---|---|
//! | Pod of ReplicaSet `web-7d9f8c6b5` (label `pod-template-hash: 7d9f8c6b5`) | Deployment `web` |
//! | Pod of Job `backup-29412345` (scheduled) or of a manual Job with controller CronJob `backup` | CronJob `backup` |
//! | Pod of a StatefulSet, DaemonSet (or any other controller) | that controller |
//! | Bare Pod | the Pod itself |
//! | Job with controller CronJob `backup` | CronJob `backup` |
//! | ReplicaSet with controller Deployment `web` | Deployment `web` |
//! | Claim `<template>-<statefulset>-<ordinal>` | StatefulSet `<statefulset>`, claim template `<template>` (and the claim itself) |
//! | Anything else | itself |
//!
//! Pure: the caller supplies what it knows about intermediate owners (a ReplicaSet or a Job)
//! through a lookup; where the lookup does not know one, the naming conventions of the built-in
//! controllers decide (`<deployment>-<pod-template-hash>`, `<cronjob>-<scheduled minutes>`).
//!
//! The webhook never makes API calls, so at admission a Pod's Job is always unknown and only a
//! scheduled Job's name reveals its CronJob. A manual Job (`kubectl create job
//! --from=cronjob/backup`, any name) still runs with the fix: the Job itself is admitted first,
//! with its controller CronJob `backup` in its ownerReferences, and its pod template is patched
//! at Job CREATE; its pods are created from that patched template.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ObjectMeta;
use serde::Serialize;

/// A workload that owns pods.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Workload {
    /// `Deployment`, `StatefulSet`, `DaemonSet`, `ReplicaSet`, `Job` or `CronJob`.
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl Workload {
    /// Whether a rollout restart (a pod template change) makes its controller replace its pods.
    pub fn restartable(&self) -> bool {
        matches!(
            self.kind.as_str(),
            "Deployment" | "StatefulSet" | "DaemonSet"
        )
    }
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// The facts about an object the identity rule reads, all from its metadata.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subject<'a> {
    /// `Pod`, `Job`, `ReplicaSet`, `Deployment`, ...
    pub kind: &'a str,
    /// Empty for an object not named yet (`generateName` at admission).
    pub name: &'a str,
    /// Kind and name of the owner reference with `controller: true`.
    pub controller: Option<(&'a str, &'a str)>,
    /// The Pod's `pod-template-hash` label (set by the Deployment controller).
    pub pod_template_hash: Option<&'a str>,
}

impl<'a> Subject<'a> {
    /// The facts of a typed object's metadata.
    pub fn from_meta(kind: &'a str, meta: &'a ObjectMeta) -> Self {
        Self {
            kind,
            name: meta.name.as_deref().unwrap_or_default(),
            controller: meta
                .owner_references
                .iter()
                .flatten()
                .find(|owner| owner.controller == Some(true))
                .map(|owner| (owner.kind.as_str(), owner.name.as_str())),
            pod_template_hash: meta
                .labels
                .as_ref()
                .and_then(|labels| labels.get("pod-template-hash"))
                .map(String::as_str),
        }
    }
}

/// The workload an object answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub kind: String,
    pub name: String,
    /// Set when a naming convention, not a lookup, decided: the intermediate owner (kind, name)
    /// the object may really answer to (a ReplicaSet that only looks like a Deployment's, a Job
    /// named like a scheduled run without being one).
    pub unconfirmed_via: Option<(String, String)>,
}

impl Identity {
    fn of(kind: &str, name: &str) -> Self {
        Self {
            kind: kind.to_string(),
            name: name.to_string(),
            unconfirmed_via: None,
        }
    }

    /// The names a fix for this object may be stored under, the identity first.
    pub fn fix_names(&self) -> Vec<String> {
        let mut names = vec![self.name.clone()];
        if let Some((_, via)) = &self.unconfirmed_via {
            names.push(via.clone());
        }
        names
    }
}

/// Resolves `subject` to the workload it answers to; `None` for an object without a name and
/// without a controller (nothing to answer to yet).
///
/// `owner_of(kind, name)` answers, for an intermediate owner of a Pod (a `ReplicaSet` or a
/// `Job` in the Pod's namespace), what that owner answers to: its controller, or itself when it
/// has none; `None` when the caller does not know the owner (then the conventions decide).
pub fn identity(
    subject: &Subject<'_>,
    owner_of: impl Fn(&str, &str) -> Option<(String, String)>,
) -> Option<Identity> {
    let own = || (!subject.name.is_empty()).then(|| Identity::of(subject.kind, subject.name));
    match (subject.kind, subject.controller) {
        ("Pod", None) => own(),
        ("Pod", Some((kind @ ("ReplicaSet" | "Job"), name))) => {
            if let Some((owner_kind, owner_name)) = owner_of(kind, name) {
                return Some(Identity::of(&owner_kind, &owner_name));
            }
            let convention = match kind {
                "ReplicaSet" => subject
                    .pod_template_hash
                    .and_then(|hash| deployment_of_replicaset_name(name, hash))
                    .map(|deployment| ("Deployment", deployment)),
                _ => cronjob_of_job_name(name).map(|cronjob| ("CronJob", cronjob)),
            };
            Some(match convention {
                Some((workload_kind, workload)) => Identity {
                    kind: workload_kind.to_string(),
                    name: workload.to_string(),
                    unconfirmed_via: Some((kind.to_string(), name.to_string())),
                },
                None => Identity::of(kind, name),
            })
        }
        ("Pod", Some((kind, name)))
        | ("Job", Some((kind @ "CronJob", name)))
        | ("ReplicaSet", Some((kind @ "Deployment", name))) => Some(Identity::of(kind, name)),
        _ => own(),
    }
}

/// The workload owning `pod`, or `None` for a bare pod (no workload carries a fix across its
/// restarts). `owner_of` as for [`identity`].
pub fn owning_workload(
    pod: &Pod,
    owner_of: impl Fn(&str, &str) -> Option<(String, String)>,
) -> Option<Workload> {
    let found = identity(&Subject::from_meta("Pod", &pod.metadata), owner_of)?;
    (found.kind != "Pod").then(|| Workload {
        kind: found.kind,
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: found.name,
    })
}

/// What an intermediate owner (a ReplicaSet or Job, from its metadata) answers to, as a lookup
/// for [`identity`] returns it: its controller, or itself when it has none.
pub fn intermediate_answer(kind: &str, meta: &ObjectMeta) -> Option<(String, String)> {
    let found = identity(&Subject::from_meta(kind, meta), |_, _| None)?;
    Some((found.kind, found.name))
}

/// Kind and name of the controller of an object (the owner with `controller: true`).
pub fn controller_of(meta: &ObjectMeta) -> Option<(String, String)> {
    Subject::from_meta("", meta)
        .controller
        .map(|(kind, name)| (kind.to_string(), name.to_string()))
}

/// A claim created by a StatefulSet is named `<template>-<statefulset>-<ordinal>`. Returns every
/// way of reading `claim_name` so, as (template, statefulset) pairs; where the claim names its
/// StatefulSet as owner, only the matching reading. Readings without that owner are guesses: the
/// webhook believes one only for a fix that names its template as `claim`.
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

/// A Deployment's ReplicaSets are named `<deployment>-<pod-template-hash>`.
fn deployment_of_replicaset_name<'a>(replicaset: &'a str, hash: &str) -> Option<&'a str> {
    replicaset
        .strip_suffix(hash)?
        .strip_suffix('-')
        .filter(|stem| !stem.is_empty())
}

/// Scheduled times a CronJob stamp is believed from, in minutes since the epoch: 2015-01-01
/// (before CronJobs existed) to 2100-01-01. The range leaves out numbers that are something else,
/// notably dates such as `20261128` (about 20.3 million): Job `api-20261128` is not CronJob `api`.
const CRONJOB_STAMPS: std::ops::RangeInclusive<u64> = 23_667_840..=68_374_080;

/// A CronJob's scheduled Jobs are named `<cronjob>-<scheduled time in minutes since the epoch>`
/// (see [`CRONJOB_STAMPS`] for which numbers count as such a time).
fn cronjob_of_job_name(job: &str) -> Option<&str> {
    let (stem, stamp) = job.rsplit_once('-')?;
    let is_stamp = !stamp.starts_with('0')
        && stamp.bytes().all(|b| b.is_ascii_digit())
        && stamp
            .parse::<u64>()
            .is_ok_and(|minutes| CRONJOB_STAMPS.contains(&minutes));
    (is_stamp && !stem.is_empty()).then_some(stem)
}

/// Whether a `heal` component argument names this pod's component: its namespace, its workload,
/// or its `app.kubernetes.io/name` / `app.kubernetes.io/instance` / `app` label.
pub fn matches_component(
    component: &str,
    namespace: &str,
    workload: Option<&Workload>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    if component == namespace || workload.is_some_and(|w| w.name == component) {
        return true;
    }
    labels.is_some_and(|labels| {
        [
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app",
        ]
        .iter()
        .any(|key| labels.get(*key).is_some_and(|value| value == component))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn subject<'a>(
        kind: &'a str,
        name: &'a str,
        controller: Option<(&'a str, &'a str)>,
        hash: Option<&'a str>,
    ) -> Subject<'a> {
        Subject {
            kind,
            name,
            controller,
            pod_template_hash: hash,
        }
    }

    fn resolved(subject: &Subject<'_>, known: &[(&str, &str, &str, &str)]) -> Option<Identity> {
        identity(subject, |kind, name| {
            known
                .iter()
                .find(|(k, n, _, _)| *k == kind && *n == name)
                .map(|(_, _, owner_kind, owner)| (owner_kind.to_string(), owner.to_string()))
        })
    }

    fn sure(kind: &str, name: &str) -> Option<Identity> {
        Some(Identity::of(kind, name))
    }

    fn guessed(kind: &str, name: &str, via: (&str, &str)) -> Option<Identity> {
        Some(Identity {
            unconfirmed_via: Some((via.0.into(), via.1.into())),
            ..Identity::of(kind, name)
        })
    }

    #[test]
    fn only_plausible_scheduled_minutes_name_a_cronjob() {
        for (job, cronjob) in [
            ("backup-29412345", Some("backup")),
            ("backup-23667840", Some("backup")),
            ("backup-68374080", Some("backup")),
            ("api-20261128", None),
            ("api-20150101", None),
            ("backup-23667839", None),
            ("backup-68374081", None),
            ("backup-029412345", None),
            ("backup-99999999999999999999999", None),
            ("backup-1234", None),
            ("-29412345", None),
            ("backup", None),
        ] {
            assert_eq!(cronjob_of_job_name(job), cronjob, "{job}");
        }
    }

    #[test]
    fn the_rule_row_by_row() {
        let rs_pod = subject(
            "Pod",
            "",
            Some(("ReplicaSet", "web-7d9f8c6b5")),
            Some("7d9f8c6b5"),
        );
        assert_eq!(
            resolved(
                &rs_pod,
                &[("ReplicaSet", "web-7d9f8c6b5", "Deployment", "web")]
            ),
            sure("Deployment", "web")
        );
        assert_eq!(
            resolved(&rs_pod, &[]),
            guessed("Deployment", "web", ("ReplicaSet", "web-7d9f8c6b5"))
        );
        let unhashed = subject("Pod", "p", Some(("ReplicaSet", "cache")), None);
        assert_eq!(resolved(&unhashed, &[]), sure("ReplicaSet", "cache"));

        let scheduled = subject("Pod", "", Some(("Job", "backup-29412345")), None);
        assert_eq!(
            resolved(
                &scheduled,
                &[("Job", "backup-29412345", "CronJob", "backup")]
            ),
            sure("CronJob", "backup")
        );
        assert_eq!(
            resolved(&scheduled, &[]),
            guessed("CronJob", "backup", ("Job", "backup-29412345"))
        );
        let manual = subject("Pod", "", Some(("Job", "backup-by-hand")), None);
        assert_eq!(
            resolved(&manual, &[("Job", "backup-by-hand", "CronJob", "backup")]),
            sure("CronJob", "backup")
        );
        assert_eq!(resolved(&manual, &[]), sure("Job", "backup-by-hand"));
        // A known Job without a controller is its own workload, whatever its name looks like.
        let dated = subject("Pod", "", Some(("Job", "migrate-20240101")), None);
        assert_eq!(
            resolved(
                &dated,
                &[("Job", "migrate-20240101", "Job", "migrate-20240101")]
            ),
            sure("Job", "migrate-20240101")
        );

        for kind in ["StatefulSet", "DaemonSet"] {
            let pod = subject("Pod", "x-0", Some((kind, "x")), None);
            assert_eq!(resolved(&pod, &[]), sure(kind, "x"));
        }
        assert_eq!(
            resolved(&subject("Pod", "debug", None, None), &[]),
            sure("Pod", "debug")
        );
        assert_eq!(resolved(&subject("Pod", "", None, None), &[]), None);

        let job = subject("Job", "backup-by-hand", Some(("CronJob", "backup")), None);
        assert_eq!(resolved(&job, &[]), sure("CronJob", "backup"));
        let own_job = subject("Job", "backup-29412345", None, None);
        assert_eq!(resolved(&own_job, &[]), sure("Job", "backup-29412345"));
        let rs = subject("ReplicaSet", "web-1", Some(("Deployment", "web")), None);
        assert_eq!(resolved(&rs, &[]), sure("Deployment", "web"));
        let deployment = subject("Deployment", "web", None, None);
        assert_eq!(resolved(&deployment, &[]), sure("Deployment", "web"));
    }

    #[test]
    fn fix_names_list_the_unconfirmed_owner_second() {
        let pod = subject("Pod", "", Some(("Job", "backup-29412345")), None);
        let found = identity(&pod, |_, _| None).unwrap();
        assert_eq!(found.fix_names(), ["backup", "backup-29412345"]);
        let job = subject("Job", "backup-29412345", Some(("CronJob", "backup")), None);
        assert_eq!(identity(&job, |_, _| None).unwrap().fix_names(), ["backup"]);
    }

    fn pod(owner_kind: &str, owner_name: &str, labels: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {
            "name": "p", "namespace": "gitlab", "labels": labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner_kind, "name": owner_name, "uid": "u", "controller": true}]
        }}))
        .unwrap()
    }

    #[test]
    fn owning_workload_is_the_identity_of_a_pod_and_none_for_a_bare_pod() {
        let p = pod(
            "ReplicaSet",
            "web-7d9f8c6b5",
            json!({"pod-template-hash": "7d9f8c6b5"}),
        );
        let guessed = owning_workload(&p, |_, _| None).unwrap();
        assert_eq!(guessed.to_string(), "Deployment/gitlab/web");
        assert!(guessed.restartable());
        let job = owning_workload(&pod("Job", "backup-29012345", json!({})), |_, _| None).unwrap();
        assert_eq!(job.to_string(), "CronJob/gitlab/backup");
        assert!(!job.restartable());
        let bare: Pod =
            serde_json::from_value(json!({"metadata": {"name": "debug", "namespace": "x"}}))
                .unwrap();
        assert!(owning_workload(&bare, |_, _| None).is_none());
    }

    #[test]
    fn intermediates_answer_their_controller_or_themselves() {
        let controlled: ObjectMeta = serde_json::from_value(json!({"name": "backup-by-hand",
            "annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "backup", "uid": "u", "controller": true}]}))
        .unwrap();
        assert_eq!(
            intermediate_answer("Job", &controlled),
            Some(("CronJob".into(), "backup".into()))
        );
        let alone: ObjectMeta =
            serde_json::from_value(json!({"name": "migrate-20240101"})).unwrap();
        assert_eq!(
            intermediate_answer("Job", &alone),
            Some(("Job".into(), "migrate-20240101".into()))
        );
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
    fn components_match_by_namespace_workload_or_label() {
        let workload = Workload {
            kind: "Deployment".into(),
            namespace: "gitlab".into(),
            name: "web".into(),
        };
        let labels = BTreeMap::from([(
            "app.kubernetes.io/name".to_string(),
            "webservice".to_string(),
        )]);
        assert!(matches_component("gitlab", "gitlab", Some(&workload), None));
        assert!(matches_component("web", "other", Some(&workload), None));
        assert!(matches_component(
            "webservice",
            "other",
            None,
            Some(&labels)
        ));
        assert!(!matches_component(
            "redis",
            "gitlab",
            Some(&workload),
            Some(&labels)
        ));
    }
}
