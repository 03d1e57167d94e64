//! Raising a claim's storage: record the fix, and expand the bound claim where its class allows.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::json;

use super::{Executor, Step, object_ref, related_pod, step};
use crate::core::fix::Fix;
use crate::core::quantity::ByteQuantity;
use crate::heal::inspect::Finding;
use crate::heal::plan::{Rails, TargetFacts};

impl Executor {
    pub(super) async fn raise_storage(
        &self,
        finding: &Finding,
        fix: &Fix,
        claim: &str,
        expand: bool,
        rails: &Rails,
    ) -> anyhow::Result<Step> {
        let namespace = &finding.problem.namespace;
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        let what = format!("reading claim {namespace}/{claim}");
        let Some(current) = self
            .within(&what, api.get_opt(claim))
            .await?
            .map_err(|e| anyhow::anyhow!("{what}: {e}"))?
        else {
            return Ok(step(
                "reported",
                format!("claim {namespace}/{claim} no longer exists"),
            ));
        };
        let reference = object_ref(
            "v1",
            "PersistentVolumeClaim",
            namespace,
            claim,
            current.metadata.uid.as_deref(),
        );
        let labels = current.metadata.labels.clone().unwrap_or_default();
        let facts = TargetFacts {
            kind: "PersistentVolumeClaim",
            namespace,
            name: claim,
            labels: &labels,
            namespace_labels: &Default::default(),
            ready_replicas: None,
        };
        if let Err(refusal) = self.admit(facts, rails).await? {
            return Ok(self.refuse(finding, Some(reference), refusal).await);
        }
        if self.dry_run {
            return Ok(step(
                "dry_run",
                format!("would record storage {} for claim {claim}", fix.value),
            ));
        }
        let recorded = self
            .bounded("recording the fix", self.store.record(fix.clone()))
            .await?;
        let mut changed = recorded.outcome.changed();
        let mut message = format!("storage fix for claim {claim}: {}", recorded.stored.value);
        if expand
            && self
                .expand_claim(&api, &current, &recorded.stored.value)
                .await?
        {
            changed = true;
            message.push_str("; claim expanded");
        }
        if changed {
            self.event(
                &reference,
                related_pod(finding),
                EventType::Normal,
                "StorageRaised",
                &message,
            )
            .await;
        }
        Ok(step(if changed { "done" } else { "unchanged" }, message))
    }

    /// Raises the claim's storage request to `size`; `false` when it asks for that much already.
    async fn expand_claim(
        &self,
        api: &Api<PersistentVolumeClaim>,
        current: &PersistentVolumeClaim,
        size: &ByteQuantity,
    ) -> anyhow::Result<bool> {
        let claim = current.metadata.name.clone().unwrap_or_default();
        let request = current
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"));
        let current_size = request.and_then(|q| ByteQuantity::parse(&q.0).ok());
        if current_size.is_some_and(|c| c >= *size) {
            return Ok(false);
        }
        let patch = json!({"spec": {"resources": {"requests": {"storage": size.to_string()}}}});
        let what = format!("expanding claim {claim}");
        self.within(
            &what,
            api.patch(&claim, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await?
        .map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        Ok(true)
    }
}
