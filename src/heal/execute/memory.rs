//! Raising a workload's memory: record the fix, then put it into the workload's template with
//! `core::raise` (the webhook's rule, under the caps the decision computed): a rollout; a
//! CronJob's `jobTemplate`, for its next Job. A running Job is never touched.

use kube::runtime::events::EventType;

use super::{
    ExecuteError, Executor, Outcome, RESTART_ANNOTATION, related_pod, set_template_annotation,
    subject_ref,
};
use crate::core::fix::{Fix, MergeOutcome};
use crate::core::raise;
use crate::core::workload::WorkloadKind;
use crate::heal::inspect::Finding;
use crate::heal::plan::{Roll, TargetRef, workload_group};
use crate::heal::record;

impl Executor {
    pub(super) async fn raise_memory(
        &self,
        finding: &Finding,
        fix: &Fix,
        roll: Option<&Roll>,
    ) -> Result<Outcome, ExecuteError> {
        let what = format!(
            "memory of {}/{} container {} to {}",
            fix.namespace,
            fix.resource,
            fix.target().unwrap_or("*"),
            fix.value
        );
        let recorded = self.record_fix(fix).await?;
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
        if let Some(roll) = roll {
            let workload = &roll.target.workload;
            let restart = roll.restart.then(|| {
                format!(
                    "memory {} for container {}",
                    stored.value,
                    stored.target().unwrap_or("*")
                )
            });
            // The fix as stored (a larger one recorded meanwhile wins), by the webhook's rule.
            let kind = workload_group(&workload.kind)
                .and_then(|group| WorkloadKind::from_group_kind(group, &workload.kind));
            let raised = kind
                .map(|kind| raise::raise_workload(kind, &roll.target.object, stored, &roll.caps));
            let rolled = match raised {
                Some(Ok(raised)) => {
                    for warning in &raised.raised.warnings {
                        tracing::warn!(%workload, %warning, "raising the template");
                    }
                    self.patch_workload(&roll.target, |object| {
                        *object = raised.object;
                        if let Some(value) = &restart {
                            set_template_annotation(object, RESTART_ANNOTATION, value);
                        }
                    })
                    .await?
                }
                Some(Err(not_raised)) => {
                    message.push_str(&format!("; {workload} not changed: {not_raised}"));
                    false
                }
                None => false,
            };
            if rolled {
                changed = true;
                if restart.is_some() {
                    message.push_str(&format!("; restarted {workload} with it"));
                } else {
                    message.push_str(&format!("; {workload}'s next Job carries it"));
                }
            }
        }
        if changed {
            let (regarding, related) = match roll {
                Some(roll) => (
                    record::reference(&TargetRef::workload(&roll.target)),
                    related_pod(finding),
                ),
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
            Ok(Outcome::Done(message))
        } else {
            Ok(Outcome::Unchanged(message))
        }
    }
}
