//! The check: discover the servers, read their status, unseal the sealed ones where allowed, and
//! (in the watcher) say every change of state with an Event on the Vault StatefulSet.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::client::{UnsealKey, UnsealOutcome, VaultClient, keys_from_secret};
use super::status::{OPERATOR_HOLD_OFF, PartialUnseal, PartialUnseals, SealStatus};

/// Where the Vault servers are and where their unseal keys are kept.
#[derive(Debug, Clone)]
pub struct VaultTargets {
    pub namespace: String,
    /// Every pod of this StatefulSet is a server (addressed through its headless Service).
    pub statefulset: Option<String>,
    /// Explicit server addresses (`http://vault-0.vault-internal:8200`), used as given.
    pub addresses: Vec<String>,
    pub scheme: String,
    pub port: u16,
    pub keys_secret: String,
}

/// What was found (and done) at one server.
#[derive(Debug, Clone, Serialize)]
pub struct VaultReport {
    pub address: String,
    /// `unsealed`, `unsealed-now`, `sealed` (alert mode), `error`.
    pub state: &'static str,
    pub detail: String,
}

/// Addresses of every server: the explicit ones, and one per pod of the StatefulSet.
pub async fn discover(
    client: &kube::Client,
    targets: &VaultTargets,
) -> Result<Vec<String>, kube::Error> {
    let mut addresses = targets.addresses.clone();
    if let Some(name) = &targets.statefulset {
        let sets: kube::Api<k8s_openapi::api::apps::v1::StatefulSet> =
            kube::Api::namespaced(client.clone(), &targets.namespace);
        let set = sets.get(name).await?;
        let spec = set.spec.unwrap_or_default();
        let selector = spec
            .selector
            .match_labels
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
            kube::Api::namespaced(client.clone(), &targets.namespace);
        let mut names: Vec<String> = pods
            .list(&kube::api::ListParams::default().labels(&selector))
            .await?
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        names.sort();
        let service = spec.service_name.unwrap_or_else(|| name.clone());
        addresses.extend(names.iter().map(|pod| {
            format!(
                "{}://{pod}.{service}.{}.svc:{}",
                targets.scheme, targets.namespace, targets.port
            )
        }));
    }
    Ok(addresses)
}

/// Checks every server once; in unseal mode unseals the sealed ones with the keys of the Secret,
/// which is read only when a server is actually sealed. One look cannot tell an operator's
/// partial unseal from an abandoned one, so a partial unseal is always left alone here (state
/// `operator-unsealing`); the watcher ([`keep_unsealed`]) remembers across polls.
pub async fn check_all(
    vault: &VaultClient,
    client: &kube::Client,
    targets: &VaultTargets,
    unseal: bool,
) -> Result<Vec<VaultReport>, kube::Error> {
    let mut partials = PartialUnseals::new(OPERATOR_HOLD_OFF);
    let actions = VaultActions {
        unseal,
        dry_run: false,
    };
    check_all_with(
        vault,
        client,
        targets,
        actions,
        None,
        &mut partials,
        Instant::now(),
    )
    .await
}

/// What a check may change at the servers besides reading their status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VaultActions {
    /// Unseal sealed servers (else only report them).
    pub unseal: bool,
    /// Say what an unseal would send and send nothing; publish no Event.
    pub dry_run: bool,
}

/// [`check_all`] with the partial unseals seen at earlier polls: a partial unseal is reset only
/// when `partials` has seen it unchanged for the whole hold-off ([`judge_partial`]), as of `now`.
/// With `leadership`, every write (a reset, a share) is sent only while this replica leads.
pub async fn check_all_with(
    vault: &VaultClient,
    client: &kube::Client,
    targets: &VaultTargets,
    actions: VaultActions,
    leadership: Option<&crate::cluster::leader::Leadership>,
    partials: &mut PartialUnseals,
    now: Instant,
) -> Result<Vec<VaultReport>, kube::Error> {
    let may_write = || leadership.is_none_or(|l| l.is_leader());
    let mut reports = Vec::new();
    let mut keys: Option<Result<Vec<UnsealKey>, String>> = None;
    for address in discover(client, targets).await? {
        let report = |state, detail: String| VaultReport {
            address: address.clone(),
            state,
            detail,
        };
        let status = match vault.seal_status(&address).await {
            Ok(status) => status,
            Err(error) => {
                reports.push(report("error", error.to_string()));
                continue;
            }
        };
        let partial = partials.observe(&address, &status, now);
        if !status.sealed {
            reports.push(report("unsealed", "unsealed".into()));
            continue;
        }
        if !actions.unseal {
            reports.push(report(
                "sealed",
                format!(
                    "sealed ({}/{} shares submitted); alert mode",
                    status.progress, status.t
                ),
            ));
            continue;
        }
        let abandoned = match partial {
            Some(PartialUnseal::OperatorAtWork { unchanged_for }) => {
                reports.push(report(
                    OPERATOR_UNSEALING,
                    operator_at_work(&status, unchanged_for, partials.hold_off()),
                ));
                continue;
            }
            Some(PartialUnseal::Abandoned { unchanged_for }) => {
                status.attempt().map(|attempt| (attempt, unchanged_for))
            }
            None => None,
        };
        if actions.dry_run {
            let reset = abandoned
                .map(|(attempt, unchanged_for)| {
                    format!(
                        "reset the unseal left at {}/{} shares for {}s and ",
                        attempt.progress,
                        status.t,
                        unchanged_for.as_secs()
                    )
                })
                .unwrap_or_default();
            reports.push(report(
                "sealed",
                format!(
                    "sealed; dry run: would {reset}send {} shares from Secret {}/{}",
                    status.t, targets.namespace, targets.keys_secret
                ),
            ));
            continue;
        }
        if keys.is_none() {
            keys = Some(read_keys(client, targets).await);
        }
        let outcome = match keys.as_ref() {
            Some(Ok(keys)) => vault
                .unseal_while(
                    &address,
                    keys,
                    abandoned.as_ref().map(|(attempt, _)| attempt),
                    &may_write,
                )
                .await
                .map_err(|e| e.to_string()),
            Some(Err(error)) => Err(error.clone()),
            None => Err("no keys".to_string()),
        };
        let reset = abandoned
            .map(|(attempt, unchanged_for)| {
                format!(
                    " after resetting an unseal left at {}/{} shares for {}s",
                    attempt.progress,
                    status.t,
                    unchanged_for.as_secs()
                )
            })
            .unwrap_or_default();
        reports.push(match outcome {
            Ok(UnsealOutcome::Unsealed { shares_sent }) => report(
                "unsealed-now",
                format!("unsealed with {shares_sent} shares{reset}"),
            ),
            Ok(UnsealOutcome::AlreadyUnsealed) => report("unsealed", "unsealed meanwhile".into()),
            Ok(UnsealOutcome::LeftInProgress {
                progress,
                threshold,
            }) => report(
                OPERATOR_UNSEALING,
                format!(
                    "an unseal moved to {progress}/{threshold} shares while selfheal looked: left alone"
                ),
            ),
            Err(error) => report("error", format!("{error}{reset}")),
        });
    }
    Ok(reports)
}

/// State of a sealed server whose partial unseal selfheal leaves alone.
pub const OPERATOR_UNSEALING: &str = "operator-unsealing";

fn operator_at_work(status: &SealStatus, unchanged_for: Duration, hold_off: Duration) -> String {
    format!(
        "an unseal is in progress ({}/{} shares, seen unchanged for {}s): left alone while an operator may be at work; \
         the watcher resets it only after {}s unchanged, `vault operator unseal -reset` clears it now",
        status.progress,
        status.t,
        unchanged_for.as_secs(),
        hold_off.as_secs()
    )
}

async fn read_keys(
    client: &kube::Client,
    targets: &VaultTargets,
) -> Result<Vec<UnsealKey>, String> {
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(client.clone(), &targets.namespace);
    let secret = secrets.get(&targets.keys_secret).await.map_err(|e| {
        format!(
            "reading Secret {}/{}: {e}",
            targets.namespace, targets.keys_secret
        )
    })?;
    keys_from_secret(&secret.data.unwrap_or_default()).map_err(|e| e.to_string())
}

/// Checks (and in unseal mode unseals) the servers every `interval` while this replica leads.
/// Every change of a server's state is an Event on the Vault StatefulSet (when one is
/// configured) and a log line; `selfheal_vault_sealed` follows every check, and the series of a
/// server that is no longer discovered is removed. A partial unseal is reset only once
/// [`judge_partial`] calls it abandoned; while an operator is at work selfheal says so
/// (`VaultUnsealInProgress`) and sends nothing. Every write (a reset, a share, an Event) is made
/// only while this replica leads; in a dry run none is made and the log says what would be.
pub async fn keep_unsealed(
    vault: VaultClient,
    client: kube::Client,
    targets: VaultTargets,
    actions: VaultActions,
    leadership: crate::cluster::leader::Leadership,
    metrics: Arc<crate::metrics::Metrics>,
    interval: Duration,
) {
    let recorder = kube::runtime::events::Recorder::new(
        client.clone(),
        kube::runtime::events::Reporter {
            controller: "selfheal".into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    let mut statefulset_uid: Option<String> = None;
    let mut last_state: BTreeMap<String, &'static str> = BTreeMap::new();
    let mut partials = PartialUnseals::new(OPERATOR_HOLD_OFF);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if !leadership.is_leader() {
            continue;
        }
        let checked = check_all_with(
            &vault,
            &client,
            &targets,
            actions,
            Some(&leadership),
            &mut partials,
            Instant::now(),
        )
        .await;
        let reports = match checked {
            Ok(reports) => reports,
            Err(error) => {
                tracing::warn!(%error, "could not list the Vault servers");
                continue;
            }
        };
        let current: BTreeSet<&str> = reports.iter().map(|r| r.address.as_str()).collect();
        for address in vanished(&last_state, &current) {
            tracing::info!(%address, "vault server no longer discovered; its metric series is removed");
            metrics.vault_sealed.remove(&crate::metrics::AddressLabels {
                address: address.clone(),
            });
            last_state.remove(&address);
        }
        partials.retain(&current);
        for report in reports {
            let sealed = !report.state.starts_with("unsealed");
            metrics
                .vault_sealed
                .get_or_create(&crate::metrics::AddressLabels {
                    address: report.address.clone(),
                })
                .set(i64::from(sealed));
            if last_state.insert(report.address.clone(), report.state) == Some(report.state) {
                continue;
            }
            match report.state {
                "unsealed" => tracing::info!(address = %report.address, "vault unsealed"),
                "unsealed-now" => {
                    tracing::info!(address = %report.address, detail = %report.detail, "vault was sealed; unsealed it")
                }
                OPERATOR_UNSEALING => {
                    tracing::info!(address = %report.address, detail = %report.detail, "vault unseal in progress by someone else; leaving it alone")
                }
                _ => {
                    tracing::warn!(address = %report.address, state = report.state, detail = %report.detail, "vault needs attention")
                }
            }
            if let Some(statefulset) = &targets.statefulset {
                let (type_, reason) = match report.state {
                    "unsealed" => (kube::runtime::events::EventType::Normal, "VaultUnsealed"),
                    "unsealed-now" => (
                        kube::runtime::events::EventType::Normal,
                        "VaultAutoUnsealed",
                    ),
                    "sealed" => (kube::runtime::events::EventType::Warning, "VaultSealed"),
                    OPERATOR_UNSEALING => (
                        kube::runtime::events::EventType::Normal,
                        "VaultUnsealInProgress",
                    ),
                    _ => (
                        kube::runtime::events::EventType::Warning,
                        "VaultUnsealFailed",
                    ),
                };
                let note =
                    crate::text::truncate(&format!("{}: {}", report.address, report.detail), 1000);
                if actions.dry_run {
                    tracing::info!(reason, %note, "dry run: would publish a Vault Event on the StatefulSet");
                    continue;
                }
                if !leadership.is_leader() {
                    continue;
                }
                if statefulset_uid.is_none() {
                    statefulset_uid = read_uid(&client, &targets.namespace, statefulset).await;
                }
                let event = kube::runtime::events::Event {
                    type_,
                    reason: reason.into(),
                    action: format!("CheckVault-{:016x}", fingerprint(&note)),
                    note: Some(note),
                    secondary: None,
                };
                let reference = k8s_openapi::api::core::v1::ObjectReference {
                    api_version: Some("apps/v1".into()),
                    kind: Some("StatefulSet".into()),
                    namespace: Some(targets.namespace.clone()),
                    name: Some(statefulset.clone()),
                    uid: statefulset_uid.clone(),
                    ..Default::default()
                };
                let publish = recorder.publish(&event, &reference);
                match crate::heal::call::within(
                    crate::heal::call::CALL_TIMEOUT,
                    || "publishing a Vault Event".into(),
                    publish,
                )
                .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::warn!(%error, "could not publish a Vault Event"),
                    Err(_) => tracing::warn!("could not publish a Vault Event in time"),
                }
            }
        }
    }
}

/// The uid of the Vault StatefulSet, for the Events' reference (`kubectl describe` matches on
/// it); `None` (and a warning) when it cannot be read in time, to be tried at the next Event.
async fn read_uid(client: &kube::Client, namespace: &str, name: &str) -> Option<String> {
    let api: kube::Api<k8s_openapi::api::apps::v1::StatefulSet> =
        kube::Api::namespaced(client.clone(), namespace);
    match crate::heal::call::within(
        crate::heal::call::CALL_TIMEOUT,
        || format!("reading StatefulSet {namespace}/{name}"),
        api.get_metadata_opt(name),
    )
    .await
    {
        Ok(Ok(Some(found))) => found.metadata.uid,
        Ok(Ok(None)) => {
            tracing::warn!(%namespace, statefulset = %name, "the Vault StatefulSet does not exist; its Events carry no uid");
            None
        }
        Ok(Err(error)) => {
            tracing::warn!(%namespace, statefulset = %name, %error, "could not read the Vault StatefulSet; its Events carry no uid");
            None
        }
        Err(_) => {
            tracing::warn!(%namespace, statefulset = %name, "reading the Vault StatefulSet timed out; its Events carry no uid");
            None
        }
    }
}

/// A fingerprint of an Event's note, carried in its action: the Recorder counts a repeat of the
/// same note in one series, and a new note (another failure) is a new Event.
fn fingerprint(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// The servers known from the last poll that this poll no longer found.
fn vanished(known: &BTreeMap<String, &'static str>, current: &BTreeSet<&str>) -> Vec<String> {
    known
        .keys()
        .filter(|address| !current.contains(address.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_missing_from_this_poll_have_vanished() {
        let known = BTreeMap::from([("a".to_string(), "unsealed"), ("b".to_string(), "error")]);
        assert_eq!(vanished(&known, &BTreeSet::from(["a", "c"])), ["b"]);
        assert!(vanished(&known, &BTreeSet::from(["a", "b"])).is_empty());
    }
}
