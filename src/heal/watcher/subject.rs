//! What the watcher looks at (a pod, a claim, a TLS Secret), the work key it is handled under,
//! its problems now, and when a time-based problem can first appear. Pure functions.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};

use crate::core::owners;
use crate::heal::detect::{self, Problem, Thresholds};

/// One watched object, as last seen.
#[derive(Debug, Clone)]
pub enum Subject {
    Pod(Box<Pod>),
    Claim(Box<PersistentVolumeClaim>),
    Secret(Box<Secret>),
}

impl Subject {
    fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
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

    /// Its problems at `now`.
    pub fn problems(&self, now: Timestamp, thresholds: &Thresholds) -> Vec<Problem> {
        match self {
            Subject::Pod(pod) => detect::pod_problems(pod, now, thresholds),
            Subject::Claim(claim) => detect::claim_problem(claim, now, thresholds)
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

    /// When a problem that is not there yet can first appear by the passing of time alone:
    /// a scheduled pod that has not started becomes stuck, a Pending claim overdue, a
    /// certificate expiring soon.
    pub fn recheck_at(&self, thresholds: &Thresholds) -> Option<Timestamp> {
        match self {
            Subject::Pod(pod) => {
                let status = pod.status.as_ref()?;
                if status.phase.as_deref() != Some("Pending") {
                    return None;
                }
                let scheduled = status
                    .conditions
                    .iter()
                    .flatten()
                    .find(|c| c.type_ == "PodScheduled" && c.status == "True")?
                    .last_transition_time
                    .as_ref()?
                    .0;
                Some(scheduled + jiff::SignedDuration::from_secs(thresholds.stuck_creating_seconds))
            }
            Subject::Claim(claim) => {
                if claim.status.as_ref()?.phase.as_deref() != Some("Pending") {
                    return None;
                }
                let created = claim.metadata.creation_timestamp.as_ref()?.0;
                Some(created + jiff::SignedDuration::from_secs(thresholds.claim_pending_seconds))
            }
            Subject::Secret(secret) => {
                let cert = secret.data.as_ref()?.get("tls.crt")?;
                let validity = crate::certs::check::validity(&cert.0).ok()?;
                let window =
                    jiff::SignedDuration::from_hours(thresholds.certificate_window_days * 24);
                Some(validity.not_after - window)
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
    fn a_scheduled_pod_is_looked_at_again_when_it_can_be_stuck() {
        let thresholds = Thresholds::default();
        let creating = pod(
            json!({"metadata": {"name": "p", "namespace": "shop", "uid": "u"},
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-28T12:00:00Z"}]}}),
        );
        let due: Timestamp = "2026-11-28T12:05:00Z".parse().unwrap();
        assert_eq!(creating.recheck_at(&thresholds), Some(due));
        let before = "2026-11-28T12:04:59Z".parse().unwrap();
        assert!(creating.problems(before, &thresholds).is_empty());
        assert_eq!(
            creating.problems(due, &thresholds)[0].kind.name(),
            "StuckCreating"
        );

        let claim = Subject::Claim(Box::new(serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "shop", "uid": "c", "creationTimestamp": "2026-11-28T12:00:00Z"},
            "status": {"phase": "Pending"}})).unwrap()));
        assert_eq!(claim.recheck_at(&thresholds), Some(due));
        assert_eq!(
            claim.problems(due, &thresholds)[0].kind.name(),
            "ClaimPending"
        );

        let running = pod(
            json!({"metadata": {"name": "p", "namespace": "shop"}, "status": {"phase": "Running"}}),
        );
        assert_eq!(running.recheck_at(&thresholds), None);
    }
}
