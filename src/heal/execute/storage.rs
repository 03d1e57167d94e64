//! Raising a claim's storage: record the fix, and expand the bound claim where its class allows.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::json;

use super::{Executor, object_ref};
use crate::core::fix::Fix;
use crate::heal::inspect::Finding;

impl Executor {
    pub(super) async fn raise_storage(
        &self,
        finding: &Finding,
        fix: &Fix,
        claim: &str,
        expand: bool,
    ) -> anyhow::Result<(&'static str, String)> {
        let problem = &finding.problem;
        if self.dry_run {
            return Ok((
                "dry_run",
                format!("would record storage {} for claim {claim}", fix.value),
            ));
        }
        let recorded = self.store.record(fix.clone()).await?;
        let mut changed = recorded.outcome.changed();
        let mut message = format!("storage fix for claim {claim}: {}", recorded.stored.value);
        if expand
            && self
                .expand_claim(
                    &problem.namespace,
                    claim,
                    &recorded.stored.value.to_string(),
                )
                .await?
        {
            changed = true;
            message.push_str("; claim expanded");
        }
        if changed {
            let reference = object_ref(
                "v1",
                "PersistentVolumeClaim",
                &problem.namespace,
                claim,
                None,
            );
            self.event(&reference, EventType::Normal, "StorageRaised", &message)
                .await;
        }
        Ok((if changed { "done" } else { "unchanged" }, message))
    }

    pub(super) async fn expand_claim(
        &self,
        namespace: &str,
        claim: &str,
        size: &str,
    ) -> anyhow::Result<bool> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        let current = api.get(claim).await?;
        let request = current
            .spec
            .and_then(|s| s.resources)
            .and_then(|r| r.requests)
            .and_then(|r| r.get("storage").cloned());
        let current_size =
            request.and_then(|q| crate::core::quantity::ByteQuantity::parse(&q.0).ok());
        let wanted = crate::core::quantity::ByteQuantity::parse(size)?;
        if current_size.is_some_and(|c| c >= wanted) {
            return Ok(false);
        }
        let patch = json!({"spec": {"resources": {"requests": {"storage": size}}}});
        api.patch(claim, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(true)
    }
}
