//! Restarting a pod: eviction (PodDisruptionBudgets apply) or deletion (an image pull retry).

use std::time::Instant;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::Api;
use kube::api::EvictParams;
use kube::runtime::events::EventType;

use super::{Executor, owner_key, uid_precondition, workload_ref};
use crate::heal::inspect::Finding;

impl Executor {
    pub(super) async fn evict_pod(
        &self,
        finding: &Finding,
        subject: ObjectReference,
    ) -> anyhow::Result<(&'static str, String)> {
        let problem = &finding.problem;
        let key = format!("evict/{}/{}", problem.namespace, owner_key(finding));
        if let Err(wait) = self.limiter.acquire(&key, Instant::now()) {
            return Ok((
                "rate_limited",
                format!("eviction backing off for {}s", wait.as_secs()),
            ));
        }
        if self.dry_run {
            return Ok((
                "dry_run",
                format!("would evict pod {}", problem.object_name),
            ));
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &problem.namespace);
        let params = EvictParams {
            delete_options: Some(uid_precondition(&problem.uid)),
            ..EvictParams::default()
        };
        match pods.evict(&problem.object_name, &params).await {
            Ok(_) => {
                let message = format!(
                    "evicted pod {} to restart it ({})",
                    problem.object_name, finding.diagnosis.evidence
                );
                self.event(&subject, EventType::Normal, "PodEvicted", &message)
                    .await;
                Ok(("done", message))
            }
            Err(kube::Error::Api(status)) if status.code == 429 => {
                let message =
                    "eviction refused by a PodDisruptionBudget; will retry later".to_string();
                self.event(&subject, EventType::Normal, "NotActing", &message)
                    .await;
                Ok(("reported", message))
            }
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
                Ok(("unchanged", "the pod is already gone".to_string()))
            }
            Err(error) => Err(error.into()),
        }
    }

    pub(super) async fn delete_pod(
        &self,
        finding: &Finding,
        subject: ObjectReference,
    ) -> anyhow::Result<(&'static str, String)> {
        let problem = &finding.problem;
        let key = crate::heal::run::attempts_key(finding);
        let attempt = match self.limiter.acquire(&key, Instant::now()) {
            Ok(attempt) => attempt,
            Err(wait) => {
                return Ok((
                    "rate_limited",
                    format!("image pull retry backing off for {}s", wait.as_secs()),
                ));
            }
        };
        if self.dry_run {
            return Ok((
                "dry_run",
                format!(
                    "would delete pod {} to retry the image pull",
                    problem.object_name
                ),
            ));
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &problem.namespace);
        match pods
            .delete(&problem.object_name, &uid_precondition(&problem.uid))
            .await
        {
            Ok(_) => {
                let message = format!(
                    "deleted pod {} so its controller retries the image pull (attempt {attempt}): {}",
                    problem.object_name, finding.diagnosis.evidence
                );
                let reference = workload_ref(finding.workload.as_ref(), finding).unwrap_or(subject);
                self.event(&reference, EventType::Normal, "ImagePullRetried", &message)
                    .await;
                Ok(("done", message))
            }
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
                Ok(("unchanged", "the pod is already gone".to_string()))
            }
            Err(error) => Err(error.into()),
        }
    }
}
