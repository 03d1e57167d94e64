//! Renewing a cert-manager Certificate, the way `cmctl renew` does.

use std::time::Instant;

use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::events::EventType;
use serde_json::json;

use super::{Executor, Step, object_ref, step, subject_ref};
use crate::heal::inspect::Finding;
use crate::heal::plan::{Rails, TargetFacts};

impl Executor {
    /// Triggers re-issuance the way `cmctl renew` does: an `Issuing=True` condition with reason
    /// `ManuallyTriggered` written through the Certificate's status subresource. The Event is about
    /// the Certificate, with the Secret that showed the problem as `related`. Works without
    /// cert-manager's CRDs being known to selfheal (dynamic object).
    pub(super) async fn renew_certificate(
        &self,
        finding: &Finding,
        certificate: &str,
        rails: &Rails,
    ) -> anyhow::Result<Step> {
        let namespace = &finding.problem.namespace;
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
            "certificates",
        );
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        let what = format!("reading Certificate {namespace}/{certificate}");
        let mut object = match self.within(&what, api.get_opt(certificate)).await? {
            Ok(Some(object)) => object,
            Ok(None) => {
                return Ok(step(
                    "reported",
                    format!(
                        "Certificate {namespace}/{certificate} named by the Secret does not exist"
                    ),
                ));
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Ok(step(
                    "reported",
                    "cert-manager is not installed (no certificates.cert-manager.io API)".into(),
                ));
            }
            Err(error) => return Err(anyhow::anyhow!("{what}: {error}")),
        };
        let reference = object_ref(
            "cert-manager.io/v1",
            "Certificate",
            namespace,
            certificate,
            object.metadata.uid.as_deref(),
        );
        let labels = object.metadata.labels.clone().unwrap_or_default();
        let facts = TargetFacts {
            kind: "Certificate",
            namespace,
            name: certificate,
            labels: &labels,
            namespace_labels: &Default::default(),
            ready_replicas: None,
        };
        if let Err(refusal) = self.admit(facts, rails).await? {
            return Ok(self.refuse(finding, Some(reference), refusal).await);
        }
        if let Err(wait) = self
            .limiter
            .acquire(&super::attempts_key(finding), Instant::now())
        {
            return Ok(step(
                "rate_limited",
                format!(
                    "renewal of {certificate} backing off for {}s",
                    wait.as_secs()
                ),
            ));
        }
        if self.dry_run {
            return Ok(step(
                "dry_run",
                format!("would trigger re-issuance of Certificate {namespace}/{certificate}"),
            ));
        }
        let conditions = object.data["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(issuing) = conditions
            .iter()
            .find(|c| c["type"] == "Issuing" && c["status"] == "True")
        {
            let since = issuing["lastTransitionTime"].as_str().unwrap_or("?");
            return Ok(step(
                "unchanged",
                format!("Certificate {certificate} is already being issued (since {since})"),
            ));
        }
        let mut conditions: Vec<serde_json::Value> = conditions
            .into_iter()
            .filter(|c| c["type"] != "Issuing")
            .collect();
        conditions.push(json!({
            "type": "Issuing",
            "status": "True",
            "reason": "ManuallyTriggered",
            "message": "Certificate re-issuance manually triggered",
            "lastTransitionTime": jiff::Timestamp::now().round(jiff::Unit::Second)?.to_string(),
            "observedGeneration": object.metadata.generation,
        }));
        if !object.data["status"].is_object() {
            object.data["status"] = json!({});
        }
        object.data["status"]["conditions"] = json!(conditions);
        let what = format!("triggering re-issuance of Certificate {namespace}/{certificate}");
        self.within(
            &what,
            api.replace_status(certificate, &kube::api::PostParams::default(), &object),
        )
        .await?
        .map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
        let message = format!(
            "triggered re-issuance of Certificate {certificate}: {}",
            finding.diagnosis.evidence
        );
        self.event(
            &reference,
            Some(subject_ref(finding)),
            EventType::Normal,
            "CertificateRenewalTriggered",
            &message,
        )
        .await;
        Ok(step("done", message))
    }
}
