//! What the watcher looks at (a pod, a claim, a TLS Secret), the work key it is handled under,
//! its problems now, and when a time-based problem can first appear. Pure functions.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};

use crate::core::owners;
use crate::heal::detect::{self, Problem, Thresholds, Warning};

/// One watched object, as last seen.
#[derive(Debug, Clone)]
pub enum Subject {
    Pod(Box<Pod>),
    Claim(Box<PersistentVolumeClaim>),
    Secret(Box<Secret>),
}

impl Subject {
    pub fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            Subject::Pod(pod) => &pod.metadata,
            Subject::Claim(claim) => &claim.metadata,
            Subject::Secret(secret) => &secret.metadata,
        }
    }

    /// `Pod`, `PersistentVolumeClaim` or `Secret`, as in `Problem::object_kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::Pod(_) => "Pod",
            Subject::Claim(_) => "PersistentVolumeClaim",
            Subject::Secret(_) => "Secret",
        }
    }

    pub fn uid(&self) -> String {
        self.meta().uid.clone().unwrap_or_default()
    }

    pub fn namespace(&self) -> String {
        self.meta().namespace.clone().unwrap_or_default()
    }

    /// The key its problems are handled under: the owning workload for a pod (so the pods of one
    /// Deployment are handled one after the other), the object itself otherwise.
    pub fn work_key(&self) -> String {
        let name = self.meta().name.clone().unwrap_or_default();
        match self {
            Subject::Pod(pod) => owners::owning_workload(pod, |_, _| None).map_or_else(
                || format!("Pod/{}/{name}", self.namespace()),
                |workload| workload.to_string(),
            ),
            Subject::Claim(_) => format!("PersistentVolumeClaim/{}/{name}", self.namespace()),
            Subject::Secret(_) => format!("Secret/{}/{name}", self.namespace()),
        }
    }

    /// Its problems at `now`, knowing the Warning events about it (`warnings`): a pod still
    /// creating, a container not ready or a Pending claim is a problem at once when a Warning
    /// says why, after its grace period otherwise.
    pub fn problems(
        &self,
        warnings: &[Warning],
        now: Timestamp,
        thresholds: &Thresholds,
    ) -> Vec<Problem> {
        match self {
            Subject::Pod(pod) => detect::pod_problems_with(pod, warnings, now, thresholds),
            Subject::Claim(claim) => detect::claim_problem_with(claim, warnings, now, thresholds)
                .into_iter()
                .collect(),
            Subject::Secret(secret) => detect::secret_problem(
                secret,
                now,
                thresholds.certificate_window_days,
                &rustls::crypto::ring::default_provider(),
            )
            .into_iter()
            .collect(),
        }
    }

    /// When a problem that is not there yet can first appear by the passing of time alone
    /// (`detect::pod_grace_ends`, `detect::claim_grace_ends`; a certificate entering the
    /// expiry window), after `now`.
    pub fn recheck_at(&self, now: Timestamp, thresholds: &Thresholds) -> Option<Timestamp> {
        match self {
            Subject::Pod(pod) => detect::pod_grace_ends(pod, now, thresholds),
            Subject::Claim(claim) => detect::claim_grace_ends(claim, thresholds),
            Subject::Secret(secret) => {
                let cert = secret.data.as_ref()?.get("tls.crt")?;
                let validity = crate::certs::check::validity(&cert.0).ok()?;
                let window = jiff::SignedDuration::from_secs(
                    thresholds.certificate_window_days.saturating_mul(24 * 3600),
                );
                validity.not_after.checked_sub(window).ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Subject {
        Subject::Pod(Box::new(serde_json::from_value(value).unwrap()))
    }

    #[test]
    fn pods_of_one_workload_share_a_key() {
        let owned = |name: &str| {
            pod(json!({"metadata": {"name": name, "namespace": "shop",
                "labels": {"pod-template-hash": "5d4c3b2a1"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d4c3b2a1", "uid": "rs", "controller": true}]}}))
        };
        assert_eq!(
            owned("web-5d4c3b2a1-a").work_key(),
            owned("web-5d4c3b2a1-b").work_key()
        );
        assert_eq!(owned("web-5d4c3b2a1-a").work_key(), "Deployment/shop/web");
        let bare = pod(json!({"metadata": {"name": "debug", "namespace": "shop"}}));
        assert_eq!(bare.work_key(), "Pod/shop/debug");
    }

    #[test]
    fn every_time_based_state_is_looked_at_again_when_it_can_first_be_true() {
        let thresholds = Thresholds::default();
        let due: Timestamp = "2026-11-28T12:05:00Z".parse().unwrap();
        let before: Timestamp = "2026-11-28T12:04:59Z".parse().unwrap();
        let cases = [
            (
                "StuckCreating",
                pod(json!({"metadata": {"name": "p", "namespace": "shop", "uid": "u"},
                    "status": {"phase": "Pending", "conditions": [
                        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-28T12:00:00Z"}]}})),
            ),
            (
                "NotReady",
                pod(json!({"metadata": {"name": "p", "namespace": "shop", "uid": "u"},
                    "status": {"phase": "Running", "containerStatuses": [{"name": "app", "ready": false,
                        "restartCount": 0, "image": "web:1", "imageID": "", "started": true,
                        "state": {"running": {"startedAt": "2026-11-28T12:00:00Z"}}}]}})),
            ),
            (
                "SchedulingGated",
                pod(json!({"metadata": {"name": "p", "namespace": "shop", "uid": "u"},
                    "spec": {"containers": [], "schedulingGates": [{"name": "example.com/quota"}]},
                    "status": {"phase": "Pending", "conditions": [
                        {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated",
                         "lastTransitionTime": "2026-11-28T12:00:00Z"}]}})),
            ),
            (
                "ClaimPending",
                Subject::Claim(Box::new(serde_json::from_value(json!({
                    "metadata": {"name": "data", "namespace": "shop", "uid": "c", "creationTimestamp": "2026-11-28T12:00:00Z"},
                    "status": {"phase": "Pending"}})).unwrap())),
            ),
        ];
        for (name, subject) in cases {
            assert_eq!(subject.recheck_at(before, &thresholds), Some(due), "{name}");
            assert!(
                subject.problems(&[], before, &thresholds).is_empty(),
                "{name}"
            );
            let found = subject.problems(&[], due, &thresholds);
            assert_eq!(found[0].kind.name(), name);
        }

        let running = pod(
            json!({"metadata": {"name": "p", "namespace": "shop"}, "status": {"phase": "Running"}}),
        );
        assert_eq!(running.recheck_at(before, &thresholds), None);
    }

    #[test]
    fn a_warning_makes_a_creating_pod_a_problem_at_once() {
        let thresholds = Thresholds::default();
        let creating = pod(
            json!({"metadata": {"name": "p", "namespace": "shop", "uid": "u"},
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-28T12:00:00Z"}]}}),
        );
        let soon: Timestamp = "2026-11-28T12:00:30Z".parse().unwrap();
        let mount = Warning {
            reason: "FailedMount".into(),
            message: "MountVolume.SetUp failed for volume \"config\" : configmap \"web\" not found"
                .into(),
            container: None,
            last_seen: Some("2026-11-28T12:00:20Z".parse().unwrap()),
        };
        assert!(creating.problems(&[], soon, &thresholds).is_empty());
        assert_eq!(
            creating.problems(&[mount], soon, &thresholds)[0]
                .kind
                .name(),
            "StuckCreating"
        );
    }
}
