//! Raising a workload's memory: record the fix, then put it into the workload's template (a
//! rollout; a CronJob's `jobTemplate`, for its next Job; a running Job is never touched).

use kube::runtime::events::EventType;

use super::{Executor, Step, related_pod, step, subject_ref, workload_ref};
use crate::core::fix::{Fix, MergeOutcome};
use crate::core::owners::Workload;
use crate::heal::inspect::Finding;
use crate::heal::plan::{Rails, TargetFacts};

impl Executor {
    pub(super) async fn raise_memory(
        &self,
        finding: &Finding,
        fix: &Fix,
        roll_into: Option<&Workload>,
        rails: &Rails,
    ) -> anyhow::Result<Step> {
        let what = format!(
            "memory of {}/{} container {} to {}",
            fix.namespace,
            fix.resource,
            fix.target().unwrap_or("*"),
            fix.value
        );
        // The rails look at the workload that carries the fix: read when its template is
        // changed now; otherwise (a Job, a ReplicaSet) the pod's labels stand for it, and the
        // webhook checks the object's own labels when it applies the fix.
        let object = match roll_into {
            Some(workload) => match self.get_workload(workload).await? {
                Some(object) => Some(object),
                None => {
                    return Ok(step(
                        "reported",
                        format!("{workload} no longer exists; nothing to raise"),
                    ));
                }
            },
            None => None,
        };
        let (kind, labels) = match (roll_into, &object) {
            (Some(workload), Some(object)) => (
                workload.kind.as_str(),
                object.metadata.labels.clone().unwrap_or_default(),
            ),
            _ => (
                finding.workload.as_ref().map_or("Pod", |w| w.kind.as_str()),
                finding.labels.clone(),
            ),
        };
        let facts = TargetFacts {
            kind,
            namespace: &fix.namespace,
            name: &fix.resource,
            labels: &labels,
            namespace_labels: &Default::default(),
            ready_replicas: None,
        };
        if let Err(refusal) = self.admit(facts, rails).await? {
            let target = roll_into
                .zip(object.as_ref())
                .map(|(w, o)| workload_ref(w, o));
            return Ok(self.refuse(finding, target, refusal).await);
        }
        if self.dry_run {
            let then = roll_into
                .map(|w| format!(", then roll it into {w}"))
                .unwrap_or_default();
            return Ok(step("dry_run", format!("would record {what}{then}")));
        }
        let recorded = self
            .bounded("recording the fix", self.store.record(fix.clone()))
            .await?;
        let stored = &recorded.stored;
        let mut message = match &recorded.outcome {
            MergeOutcome::Unchanged => {
                format!("fix already recorded: memory {}", stored.value)
            }
            _ => format!(
                "recorded {what} ({})",
                fix.reason.clone().unwrap_or_default()
            ),
        };
        let mut changed = recorded.outcome.changed();
        if let Some((workload, object)) = roll_into.zip(object.as_ref()) {
            let restart = workload.restartable().then(|| {
                format!(
                    "memory {} for container {}",
                    stored.value,
                    stored.target().unwrap_or("*")
                )
            });
            if self
                .roll(workload, object, Some(stored), restart.as_deref())
                .await?
            {
                changed = true;
                if restart.is_some() {
                    message.push_str(&format!("; restarted {workload} with it"));
                } else {
                    message.push_str(&format!("; {workload}'s next Job carries it"));
                }
            }
        }
        if changed {
            let (regarding, related) = match roll_into.zip(object.as_ref()) {
                Some((workload, object)) => (workload_ref(workload, object), related_pod(finding)),
                None => (subject_ref(finding), None),
            };
            self.event(
                &regarding,
                related,
                EventType::Normal,
                "MemoryLimitRaised",
                &format!("{message}. Evidence: {}", finding.diagnosis.evidence),
            )
            .await;
        }
        Ok(step(if changed { "done" } else { "unchanged" }, message))
    }
}
