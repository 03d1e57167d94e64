//! Renewing a cert-manager Certificate, the way `cmctl renew` does.

use std::time::Instant;

use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::events::EventType;
use serde_json::json;

use super::{Executor, object_ref};
use crate::heal::inspect::Finding;

impl Executor {
    /// Triggers re-issuance the way `cmctl renew` does: an `Issuing=True` condition with reason
    /// `ManuallyTriggered` written through the Certificate's status subresource. Works without
    /// cert-manager's CRDs being known to selfheal (dynamic object).
    pub(super) async fn renew_certificate(
        &self,
        finding: &Finding,
        certificate: &str,
    ) -> anyhow::Result<(&'static str, String)> {
        let namespace = &finding.problem.namespace;
        if let Err(wait) = self
            .limiter
            .acquire(&crate::heal::run::attempts_key(finding), Instant::now())
        {
            return Ok((
                "rate_limited",
                format!(
                    "renewal of {certificate} backing off for {}s",
                    wait.as_secs()
                ),
            ));
        }
        if self.dry_run {
            return Ok((
                "dry_run",
                format!("would trigger re-issuance of Certificate {namespace}/{certificate}"),
            ));
        }
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
            "certificates",
        );
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        let mut object = match api.get_opt(certificate).await {
            Ok(Some(object)) => object,
            Ok(None) => {
                return Ok((
                    "reported",
                    format!(
                        "Certificate {namespace}/{certificate} named by the Secret does not exist"
                    ),
                ));
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Ok((
                    "reported",
                    "cert-manager is not installed (no certificates.cert-manager.io API)".into(),
                ));
            }
            Err(error) => return Err(error.into()),
        };
        let conditions = object.data["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(issuing) = conditions
            .iter()
            .find(|c| c["type"] == "Issuing" && c["status"] == "True")
        {
            let since = issuing["lastTransitionTime"].as_str().unwrap_or("?");
            return Ok((
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
        api.replace_status(certificate, &kube::api::PostParams::default(), &object)
            .await?;
        let message = format!(
            "triggered re-issuance of Certificate {certificate}: {}",
            finding.diagnosis.evidence
        );
        let subject = object_ref(
            "v1",
            "Secret",
            namespace,
            &finding.problem.object_name,
            Some(&finding.problem.uid),
        );
        self.event(
            &subject,
            EventType::Normal,
            "CertificateRenewalTriggered",
            &message,
        )
        .await;
        Ok(("done", message))
    }
}
