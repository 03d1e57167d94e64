//! selfheal's own webhook certificate, managed in the cluster: a CA and a serving certificate kept
//! in a Secret that every replica reads (so all serve the same certificate), the CA written into
//! the MutatingWebhookConfiguration's `caBundle`, and rotation well before expiry.
//!
//! Rotation keeps the old CA trusted: the new bundle (new CA + old CA) is written to the webhook
//! configuration *before* the Secret gets the new serving certificate, so the apiserver trusts
//! the new certificate before any replica serves it, and still trusts the old one while replicas
//! switch. The old CA leaves the bundle at the next rotation, long after nothing uses it.
//! Writes carry the read resourceVersion: when two replicas rotate at once, one wins and the
//! other adopts its Secret.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch};
use kube::{Api, Client};

use crate::certs::generate as certs;
use crate::certs::serving::ReloadingCertResolver;

/// The PEM material kept in the Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    pub ca_cert: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
    /// The CAs the apiserver must trust: the current one first, the previous one after it.
    pub bundle: String,
}

const KEYS: [&str; 5] = ["ca.crt", "ca.key", "tls.crt", "tls.key", "ca-bundle.crt"];

impl Material {
    pub fn from_secret(secret: &Secret) -> Option<Self> {
        let data = secret.data.as_ref()?;
        let text = |key: &str| {
            data.get(key)
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        };
        Some(Self {
            ca_cert: text(KEYS[0])?,
            ca_key: text(KEYS[1])?,
            cert: text(KEYS[2])?,
            key: text(KEYS[3])?,
            bundle: text(KEYS[4])?,
        })
    }

    fn data(&self) -> BTreeMap<String, ByteString> {
        [
            &self.ca_cert,
            &self.ca_key,
            &self.cert,
            &self.key,
            &self.bundle,
        ]
        .iter()
        .zip(KEYS)
        .map(|(value, key)| (key.to_string(), ByteString(value.as_bytes().to_vec())))
        .collect()
    }

    /// New CA and serving certificate; the bundle keeps `previous`'s CA trusted.
    pub fn fresh(
        dns_names: &[String],
        previous: Option<&Material>,
    ) -> Result<Self, certs::CertError> {
        let generated = certs::generate(dns_names)?;
        let bundle = match previous {
            Some(previous) => format!("{}{}", generated.ca_cert, previous.ca_cert),
            None => generated.ca_cert.clone(),
        };
        Ok(Self {
            ca_cert: generated.ca_cert,
            ca_key: generated.ca_key,
            cert: generated.cert,
            key: generated.key,
            bundle,
        })
    }
}

/// What to do with the material found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Keep,
    Create,
    Rotate,
}

/// Keep while the serving certificate has more than `rotate_before_days` left.
pub fn next_step(current: Option<&Material>, now: Timestamp, rotate_before_days: i64) -> Step {
    let Some(material) = current else {
        return Step::Create;
    };
    match crate::certs::check::validity(material.cert.as_bytes()) {
        Ok(validity)
            if validity.not_after.as_second() - now.as_second() > rotate_before_days * 86_400 =>
        {
            Step::Keep
        }
        _ => Step::Rotate,
    }
}

#[derive(Debug, Clone)]
pub struct SelfCertConfig {
    pub namespace: String,
    pub secret_name: String,
    /// The MutatingWebhookConfiguration whose `caBundle` is kept current.
    pub webhook_config: String,
    pub dns_names: Vec<String>,
    pub rotate_before_days: i64,
}

/// Makes sure the Secret holds usable, not-soon-expiring material, and returns it.
pub async fn ensure(client: &Client, config: &SelfCertConfig) -> anyhow::Result<Material> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &config.namespace);
    for _ in 0..5 {
        let existing = secrets.get_opt(&config.secret_name).await?;
        let current = existing.as_ref().and_then(Material::from_secret);
        let step = next_step(
            current.as_ref(),
            Timestamp::now(),
            config.rotate_before_days,
        );
        let written = match (step, existing, &current) {
            (Step::Keep, _, Some(material)) => {
                write_ca_bundle(client, &config.webhook_config, &material.bundle).await?;
                return Ok(material.clone());
            }
            (_, None, _) => {
                let material = Material::fresh(&config.dns_names, None)?;
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(config.secret_name.clone()),
                        namespace: Some(config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    data: Some(material.data()),
                    type_: Some("Opaque".into()),
                    ..Secret::default()
                };
                secrets
                    .create(&crate::cluster::post_params(), &secret)
                    .await
                    .map(|_| material)
            }
            (_, Some(mut secret), previous) => {
                let material = Material::fresh(&config.dns_names, previous.as_ref())?;
                // Trust first, serve second.
                write_ca_bundle(client, &config.webhook_config, &material.bundle).await?;
                secret.data = Some(material.data());
                secrets
                    .replace(&config.secret_name, &crate::cluster::post_params(), &secret)
                    .await
                    .map(|_| material)
            }
        };
        match written {
            Ok(material) => {
                tracing::info!(secret = %config.secret_name, ?step, "webhook certificate written");
                write_ca_bundle(client, &config.webhook_config, &material.bundle).await?;
                return Ok(material);
            }
            // Another replica wrote first: adopt its material on the next round.
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => return Err(error.into()),
        }
    }
    anyhow::bail!("could not agree on a webhook certificate after 5 conflicting writes")
}

/// How often a caBundle write that lost a race (another replica changed the configuration
/// between our read and our patch) reads again and retries.
const CA_BUNDLE_ATTEMPTS: u32 = 8;

/// Sets `caBundle` of every webhook of the configuration; `false` when it already was. A missing
/// configuration is not an error (selfheal may run before it is installed).
/// A write that races another replica's reads again and retries (up to `CA_BUNDLE_ATTEMPTS`).
pub async fn write_ca_bundle(
    client: &Client,
    name: &str,
    bundle_pem: &str,
) -> anyhow::Result<bool> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let encoded = base64::engine::general_purpose::STANDARD.encode(bundle_pem);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(config) = api.get_opt(name).await? else {
            tracing::warn!(
                webhook_config = name,
                "MutatingWebhookConfiguration not found; caBundle not written"
            );
            return Ok(false);
        };
        let Some(patch) = ca_bundle_patch(&config, &encoded)? else {
            return Ok(false);
        };
        match api
            .patch(
                name,
                &crate::cluster::patch_params(),
                &Patch::Json::<()>(patch),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(webhook_config = name, "caBundle written");
                return Ok(true);
            }
            // The resourceVersion test failed (422) or the write conflicted (409): another
            // replica changed the configuration since it was read. Read it again: if it now
            // carries this bundle there is nothing left to do.
            Err(kube::Error::Api(status))
                if (status.code == 409 || status.code == 422) && attempt < CA_BUNDLE_ATTEMPTS =>
            {
                tracing::debug!(
                    webhook_config = name,
                    attempt,
                    "caBundle write raced another writer; reading again"
                );
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// The JSON patch that puts `encoded` into every webhook of `config` that lacks it, guarded by
/// the read resourceVersion; `None` when every webhook has it already.
fn ca_bundle_patch(
    config: &MutatingWebhookConfiguration,
    encoded: &str,
) -> anyhow::Result<Option<json_patch::Patch>> {
    let mut operations = vec![json_patch::PatchOperation::Test(
        json_patch::TestOperation {
            path: json_patch::jsonptr::PointerBuf::parse("/metadata/resourceVersion")?,
            value: serde_json::json!(config.metadata.resource_version),
        },
    )];
    for (index, webhook) in config.webhooks.iter().flatten().enumerate() {
        let current = webhook
            .client_config
            .ca_bundle
            .as_ref()
            .map(|b| base64::engine::general_purpose::STANDARD.encode(&b.0));
        if current.as_deref() != Some(encoded) {
            operations.push(json_patch::PatchOperation::Add(json_patch::AddOperation {
                path: json_patch::jsonptr::PointerBuf::parse(format!(
                    "/webhooks/{index}/clientConfig/caBundle"
                ))?,
                value: serde_json::json!(encoded),
            }));
        }
    }
    Ok((operations.len() > 1).then_some(json_patch::Patch(operations)))
}

/// Every `interval`: makes sure the material is current (rotating when due) and serves it.
pub async fn keep_current(
    client: Client,
    config: SelfCertConfig,
    resolver: Arc<ReloadingCertResolver>,
    interval: Duration,
) {
    let mut served: Option<String> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match ensure(&client, &config).await {
            Ok(material) if served.as_deref() != Some(material.cert.as_str()) => {
                match resolver.set_pem(material.cert.as_bytes(), material.key.as_bytes()) {
                    Ok(()) => {
                        tracing::info!("serving the webhook certificate from the Secret");
                        served = Some(material.cert);
                    }
                    Err(error) => {
                        tracing::error!(%error, "webhook certificate in the Secret is unusable; keeping the current one")
                    }
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "webhook certificate check failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_create_or_rotate() {
        let names = vec!["selfheal.selfheal.svc".to_string()];
        let material = Material::fresh(&names, None).unwrap();
        let now = Timestamp::now();
        assert_eq!(next_step(None, now, 30), Step::Create);
        assert_eq!(next_step(Some(&material), now, 30), Step::Keep);
        // A year of validity: rotating 400 days before expiry means now.
        assert_eq!(next_step(Some(&material), now, 400), Step::Rotate);
        let broken = Material {
            cert: "garbage".into(),
            ..material.clone()
        };
        assert_eq!(next_step(Some(&broken), now, 30), Step::Rotate);
        let rotated = Material::fresh(&names, Some(&material)).unwrap();
        assert!(rotated.bundle.starts_with(&rotated.ca_cert));
        assert!(
            rotated.bundle.ends_with(&material.ca_cert),
            "the old CA stays trusted"
        );
    }
}
