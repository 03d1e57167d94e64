//! Restarting a pod: eviction (PodDisruptionBudgets apply) or deletion (an image pull retry).

use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::EvictParams;
use kube::core::Status;
use kube::runtime::events::EventType;

use super::{ExecuteError, Executor, Outcome, related_pod, subject_ref, uid_precondition};
use crate::core::owners::Workload;
use crate::heal::inspect::Finding;
use crate::heal::plan::{Rail, TargetRef};
use crate::heal::ratelimit::ActionKey;

/// The apiserver's refusal of an eviction because of a PodDisruptionBudget (429 with a
/// `DisruptionBudget` cause naming the budget), as a reason a person can act on. Other answers
/// (another 429 is the apiserver throttling) are not a budget's refusal: `None`.
fn eviction_refusal(status: &Status) -> Option<String> {
    if status.code != 429 {
        return None;
    }
    let causes: Vec<&str> = status
        .details
        .iter()
        .flat_map(|d| d.causes.iter())
        .filter(|c| c.reason == "DisruptionBudget")
        .map(|c| c.message.as_str())
        .collect();
    if causes.is_empty() && !status.message.contains("disruption budget") {
        return None;
    }
    let mut reason = format!("eviction refused: {}", status.message.trim_end_matches('.'));
    for cause in causes {
        reason.push_str(&format!("; {cause}"));
    }
    Some(reason)
}

impl Executor {
    pub(super) async fn evict_pod(
        &self,
        finding: &Finding,
        pod: &TargetRef,
        slot: &ActionKey,
    ) -> Result<Outcome, ExecuteError> {
        if let Err(outcome) = self.take(slot, "eviction") {
            return Ok(outcome);
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let params = EvictParams {
            delete_options: Some(uid_precondition(pod.uid.as_deref())),
            ..EvictParams::default()
        };
        let what = format!("evicting pod {}/{}", pod.namespace, pod.name);
        let answer = crate::heal::call::within(
            self.call_timeout,
            || what.clone(),
            pods.evict(&pod.name, &params),
        )
        .await?;
        match answer {
            Ok(_) => {
                let message = format!(
                    "evicted pod {} to restart it ({})",
                    pod.name, finding.diagnosis.evidence
                );
                self.event(
                    &subject_ref(finding),
                    None,
                    EventType::Normal,
                    "PodEvicted",
                    &message,
                )
                .await;
                Ok(Outcome::Done(message))
            }
            Err(kube::Error::Api(status)) if eviction_refusal(&status).is_some() => {
                let reason = eviction_refusal(&status).unwrap_or_default();
                let message = format!("{reason}; backing off before the next eviction");
                self.not_acting(finding, None, &message).await;
                // The budget may allow it once the eviction's backoff ends.
                Ok(Outcome::Refused {
                    rail: Rail::DisruptionBudget,
                    message,
                    retry_in: self.limiter.wait(slot, Instant::now()),
                })
            }
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
                Ok(Outcome::Unchanged("the pod is already gone".to_string()))
            }
            Err(source) => Err(ExecuteError::Api { what, source }),
        }
    }

    pub(super) async fn delete_pod(
        &self,
        finding: &Finding,
        pod: &TargetRef,
        slot: &ActionKey,
        workload: Option<&Workload>,
    ) -> Result<Outcome, ExecuteError> {
        let attempt = match self.take(slot, "image pull retry") {
            Ok(attempt) => attempt,
            Err(outcome) => return Ok(outcome),
        };
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let what = format!("deleting pod {}/{}", pod.namespace, pod.name);
        let answer = crate::heal::call::within(
            self.call_timeout,
            || what.clone(),
            pods.delete(&pod.name, &uid_precondition(pod.uid.as_deref())),
        )
        .await?;
        match answer {
            Ok(_) => {
                let message = format!(
                    "deleted pod {} so its controller retries the image pull (attempt {attempt}): {}",
                    pod.name, finding.diagnosis.evidence
                );
                let workload = match workload {
                    Some(workload) => self.workload_reference(workload).await,
                    None => None,
                };
                let (regarding, related) = match workload {
                    Some(workload) => (workload, related_pod(finding)),
                    None => (subject_ref(finding), None),
                };
                self.event(
                    &regarding,
                    related,
                    EventType::Normal,
                    "ImagePullRetried",
                    &message,
                )
                .await;
                Ok(Outcome::Done(message))
            }
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
                Ok(Outcome::Unchanged("the pod is already gone".to_string()))
            }
            Err(source) => Err(ExecuteError::Api { what, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(value: serde_json::Value) -> Status {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_budget_refusal_names_the_budget_and_throttling_is_not_one() {
        let refused = status(json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 429,
            "reason": "TooManyRequests",
            "message": "Cannot evict pod as it would violate the pod's disruption budget.",
            "details": {"causes": [{"reason": "DisruptionBudget",
                "message": "The disruption budget web-pdb needs 2 healthy pods and has 2 currently"}]}
        }));
        let reason = eviction_refusal(&refused).unwrap();
        assert!(reason.contains("web-pdb needs 2 healthy pods"), "{reason}");
        assert!(reason.contains("disruption budget"), "{reason}");

        let throttled = status(json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 429,
            "reason": "TooManyRequests", "message": "Too many requests, please try again later."
        }));
        assert_eq!(eviction_refusal(&throttled), None);
        let gone = status(
            json!({"status": "Failure", "code": 404, "reason": "NotFound",
            "message": "pods \"web-1\" not found"}),
        );
        assert_eq!(eviction_refusal(&gone), None);
    }
}
