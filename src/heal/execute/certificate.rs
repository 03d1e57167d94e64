//! Renewing a cert-manager Certificate, the way `cmctl renew` does.

use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::runtime::events::EventType;
use serde_json::json;

use super::{ExecuteError, Executor, Outcome, subject_ref};
use crate::heal::inspect::Finding;
use crate::heal::plan::TargetRef;
use crate::heal::ratelimit::ActionKey;
use crate::heal::record;

impl Executor {
    /// Triggers re-issuance the way `cmctl renew` does: an `Issuing=True` condition with reason
    /// `ManuallyTriggered` written through the Certificate's status subresource. The Event is about
    /// the Certificate, with the Secret that showed the problem as `related`. Works without
    /// cert-manager's CRDs being known to selfheal (dynamic object).
    pub(super) async fn renew_certificate(
        &self,
        finding: &Finding,
        certificate: &TargetRef,
        object: &serde_json::Value,
        slot: &ActionKey,
    ) -> Result<Outcome, ExecuteError> {
        let (namespace, name) = (&certificate.namespace, &certificate.name);
        if let Err(outcome) = self.take(slot, &format!("renewal of {name}")) {
            return Ok(outcome);
        }
        let mut object: DynamicObject =
            serde_json::from_value(object.clone()).map_err(|error| ExecuteError::Patch {
                what: format!("Certificate {namespace}/{name}"),
                reason: error.to_string(),
            })?;
        let mut conditions: Vec<serde_json::Value> = object.data["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c["type"] != "Issuing")
            .collect();
        let now = jiff::Timestamp::now();
        conditions.push(json!({
            "type": "Issuing",
            "status": "True",
            "reason": "ManuallyTriggered",
            "message": "Certificate re-issuance manually triggered",
            "lastTransitionTime": now.round(jiff::Unit::Second).unwrap_or(now).to_string(),
            "observedGeneration": object.metadata.generation,
        }));
        if !object.data["status"].is_object() {
            object.data["status"] = json!({});
        }
        object.data["status"]["conditions"] = json!(conditions);
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
            "certificates",
        );
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        self.call(
            &format!("triggering re-issuance of Certificate {namespace}/{name}"),
            api.replace_status(name, &PostParams::default(), &object),
        )
        .await?;
        let message = format!(
            "triggered re-issuance of Certificate {name}: {}",
            finding.diagnosis.evidence
        );
        self.event(
            &record::reference(certificate),
            Some(subject_ref(finding)),
            EventType::Normal,
            "CertificateRenewalTriggered",
            &message,
        )
        .await;
        Ok(Outcome::Done(message))
    }
}
