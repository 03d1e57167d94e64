//! Raising a claim's storage: record the fix, and expand the bound claim where its class allows.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::json;

use super::{ExecuteError, Executor, Outcome, related_pod};
use crate::core::fix::Fix;
use crate::core::quantity::ByteQuantity;
use crate::heal::inspect::Finding;
use crate::heal::plan::TargetRef;
use crate::heal::record;

impl Executor {
    pub(super) async fn raise_storage(
        &self,
        finding: &Finding,
        fix: &Fix,
        claim: &TargetRef,
        current: Option<&ByteQuantity>,
        expand: bool,
    ) -> Result<Outcome, ExecuteError> {
        let recorded = self.record_fix(fix).await?;
        let mut changed = recorded.outcome.changed();
        let size = &recorded.stored.value;
        let mut message = format!("storage fix for claim {}: {size}", claim.name);
        // A claim asking for that much already needs no expansion.
        if expand && current.is_none_or(|current| current < size) {
            let api: Api<PersistentVolumeClaim> =
                Api::namespaced(self.client.clone(), &claim.namespace);
            let patch = json!({"spec": {"resources": {"requests": {"storage": size.to_string()}}}});
            self.call(
                &format!("expanding claim {}", claim.name),
                api.patch(&claim.name, &PatchParams::default(), &Patch::Merge(&patch)),
            )
            .await?;
            changed = true;
            message.push_str("; claim expanded");
        }
        if !changed {
            return Ok(Outcome::Unchanged(message));
        }
        self.event(
            &record::reference(claim),
            related_pod(finding),
            EventType::Normal,
            "StorageRaised",
            &message,
        )
        .await;
        Ok(Outcome::Done(message))
    }
}
