//! Raising a workload's memory: record the fix, then roll the workload so it carries it.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::EventType;

use super::{Executor, workload_ref};
use crate::core::fix::{Fix, MergeOutcome};
use crate::core::owners::Workload;
use crate::heal::inspect::Finding;

impl Executor {
    pub(super) async fn raise_memory(
        &self,
        finding: &Finding,
        fix: &Fix,
        restart: Option<&Workload>,
        subject: ObjectReference,
    ) -> anyhow::Result<(&'static str, String)> {
        let what = format!(
            "memory of {}/{} container {} to {}",
            fix.namespace,
            fix.resource,
            fix.target().unwrap_or("*"),
            fix.value
        );
        if self.dry_run {
            let then = restart
                .as_ref()
                .map(|w| format!(", then restart {w}"))
                .unwrap_or_default();
            return Ok(("dry_run", format!("would record {what}{then}")));
        }
        let recorded = self.store.record(fix.clone()).await?;
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
        if let Some(workload) = restart {
            let value = format!(
                "memory {} for container {}",
                stored.value,
                stored.target().unwrap_or("*")
            );
            if self.roll(workload, Some(stored), &value).await? {
                changed = true;
                message.push_str(&format!("; restarted {workload} so the webhook applies it"));
            }
        }
        if changed {
            let reference = workload_ref(restart, finding).unwrap_or(subject);
            self.event(
                &reference,
                EventType::Normal,
                "MemoryLimitRaised",
                &format!("{message}. Evidence: {}", finding.diagnosis.evidence),
            )
            .await;
        }
        Ok((if changed { "done" } else { "unchanged" }, message))
    }
}
