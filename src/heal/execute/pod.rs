//! Restarting a pod: eviction (PodDisruptionBudgets apply) or deletion (an image pull retry).

use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::EvictParams;
use kube::core::Status;
use kube::runtime::events::EventType;

use super::{Executor, Step, owner_key, related_pod, step, subject_ref, uid_precondition};
use crate::heal::inspect::Finding;
use crate::heal::plan::{Rail, Rails, Refusal, TargetFacts};

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
    /// The rails' answer for changing the pod of `finding` (its labels came with the finding).
    async fn admit_pod(
        &self,
        finding: &Finding,
        rails: &Rails,
    ) -> anyhow::Result<Result<(), Refusal>> {
        let problem = &finding.problem;
        let facts = TargetFacts {
            kind: "Pod",
            namespace: &problem.namespace,
            name: &problem.object_name,
            labels: &finding.labels,
            namespace_labels: &Default::default(),
            ready_replicas: None,
        };
        self.admit(facts, rails).await
    }

    pub(super) async fn evict_pod(&self, finding: &Finding, rails: &Rails) -> anyhow::Result<Step> {
        let problem = &finding.problem;
        if let Err(refusal) = self.admit_pod(finding, rails).await? {
            return Ok(self.refuse(finding, None, refusal).await);
        }
        let key = crate::heal::ratelimit::ActionKey::Evict {
            namespace: problem.namespace.clone(),
            owner: owner_key(finding),
        };
        if let Err(wait) = self.limiter.acquire(&key, Instant::now()) {
            return Ok(step(
                "rate_limited",
                format!("eviction backing off for {}s", wait.as_secs()),
            ));
        }
        if self.dry_run {
            return Ok(step(
                "dry_run",
                format!("would evict pod {}", problem.object_name),
            ));
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &problem.namespace);
        let params = EvictParams {
            delete_options: Some(uid_precondition(&problem.uid)),
            ..EvictParams::default()
        };
        let what = format!("evicting pod {}/{}", problem.namespace, problem.object_name);
        match self
            .within(&what, pods.evict(&problem.object_name, &params))
            .await?
        {
            Ok(_) => {
                let message = format!(
                    "evicted pod {} to restart it ({})",
                    problem.object_name, finding.diagnosis.evidence
                );
                self.event(
                    &subject_ref(finding),
                    None,
                    EventType::Normal,
                    "PodEvicted",
                    &message,
                )
                .await;
                Ok(step("done", message))
            }
            Err(kube::Error::Api(status)) if eviction_refusal(&status).is_some() => {
                let reason = eviction_refusal(&status).unwrap_or_default();
                let refusal = Refusal {
                    rail: Rail::DisruptionBudget,
                    reason: format!("{reason}; backing off before the next eviction"),
                };
                Ok(self.refuse(finding, None, refusal).await)
            }
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
                Ok(step("unchanged", "the pod is already gone".to_string()))
            }
            Err(error) => Err(anyhow::anyhow!("{what}: {error}")),
        }
    }

    pub(super) async fn delete_pod(
        &self,
        finding: &Finding,
        rails: &Rails,
    ) -> anyhow::Result<Step> {
        let problem = &finding.problem;
        if let Err(refusal) = self.admit_pod(finding, rails).await? {
            return Ok(self.refuse(finding, None, refusal).await);
        }
        let key = super::attempts_key(finding);
        let attempt = match self.limiter.acquire(&key, Instant::now()) {
            Ok(attempt) => attempt,
            Err(wait) => {
                return Ok(step(
                    "rate_limited",
                    format!("image pull retry backing off for {}s", wait.as_secs()),
                ));
            }
        };
        if self.dry_run {
            return Ok(step(
                "dry_run",
                format!(
                    "would delete pod {} to retry the image pull",
                    problem.object_name
                ),
            ));
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &problem.namespace);
        let what = format!("deleting pod {}/{}", problem.namespace, problem.object_name);
        match self
            .within(
                &what,
                pods.delete(&problem.object_name, &uid_precondition(&problem.uid)),
            )
            .await?
        {
            Ok(_) => {
                let message = format!(
                    "deleted pod {} so its controller retries the image pull (attempt {attempt}): {}",
                    problem.object_name, finding.diagnosis.evidence
                );
                let workload = match &finding.workload {
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
                Ok(step("done", message))
            }
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
                Ok(step("unchanged", "the pod is already gone".to_string()))
            }
            Err(error) => Err(anyhow::anyhow!("{what}: {error}")),
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
