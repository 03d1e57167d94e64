//! The watcher's Vault check: every `interval`, while this replica leads, the servers are
//! checked (and unsealed where the decision says so); each change of a server's state is a log
//! line, an Event on the Vault StatefulSet and a count.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::client::VaultClient;
use super::status::{OPERATOR_HOLD_OFF, PartialUnseals};
use super::unseal::{VaultActions, VaultState, VaultTargets, check_all_with};
use crate::heal::call::{self, CALL_TIMEOUT};
use crate::heal::plan::{Rail, TargetRef};
use crate::heal::record::{self, Recorder};

/// Checks (and in unseal mode unseals) the servers every `interval` while this replica leads.
/// Every change of a server's state is an Event on the Vault StatefulSet (when one is
/// configured) and a log line; `selfheal_vault_sealed` follows every check, and the series of a
/// server that is no longer discovered is removed. A partial unseal is reset only once
/// [`judge_partial`](super::judge_partial) calls it abandoned; while an operator is at work selfheal says so
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
    // The healing half's one recorder: a dry run publishes nothing.
    let recorder = Recorder::new(client.clone(), CALL_TIMEOUT, actions.dry_run);
    let mut statefulset_uid: Option<String> = None;
    let mut last_state: BTreeMap<String, VaultState> = BTreeMap::new();
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
            &actions,
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
            let sealed = !report.state.is_unsealed();
            metrics
                .vault_sealed
                .get_or_create(&crate::metrics::AddressLabels {
                    address: report.address.clone(),
                })
                .set(i64::from(sealed));
            if last_state.insert(report.address.clone(), report.state) == Some(report.state) {
                continue;
            }
            // Each decision about a sealed server is counted once per change of state (a poll
            // that finds the same state again decides nothing new).
            if let (Some(action), Some(result)) = (report.action, report.result) {
                metrics.healing_actions.count(
                    action.as_str(),
                    result,
                    report.rail.map(Rail::as_str).unwrap_or_default(),
                );
            }
            match report.state {
                VaultState::Unsealed => tracing::info!(address = %report.address, "vault unsealed"),
                VaultState::UnsealedNow => {
                    tracing::info!(address = %report.address, detail = %report.detail, "vault was sealed; unsealed it")
                }
                VaultState::OperatorUnsealing => {
                    tracing::info!(address = %report.address, detail = %report.detail, "vault unseal in progress by someone else; leaving it alone")
                }
                VaultState::Sealed | VaultState::Error => {
                    tracing::warn!(address = %report.address, state = %report.state, detail = %report.detail, "vault needs attention")
                }
            }
            if let Some(statefulset) = &targets.statefulset {
                let (type_, reason) = match report.state {
                    VaultState::Unsealed => {
                        (kube::runtime::events::EventType::Normal, "VaultUnsealed")
                    }
                    VaultState::UnsealedNow => (
                        kube::runtime::events::EventType::Normal,
                        "VaultAutoUnsealed",
                    ),
                    VaultState::Sealed => {
                        (kube::runtime::events::EventType::Warning, "VaultSealed")
                    }
                    VaultState::OperatorUnsealing => (
                        kube::runtime::events::EventType::Normal,
                        "VaultUnsealInProgress",
                    ),
                    VaultState::Error => (
                        kube::runtime::events::EventType::Warning,
                        "VaultUnsealFailed",
                    ),
                };
                let note = format!("{}: {}", report.address, report.detail);
                if !leadership.is_leader() {
                    continue;
                }
                if statefulset_uid.is_none() && !actions.dry_run {
                    statefulset_uid = read_uid(&client, &targets.namespace, statefulset).await;
                }
                let reference = record::reference(
                    &TargetRef::new("apps/v1", "StatefulSet", &targets.namespace, statefulset)
                        .with_uid(statefulset_uid.as_deref()),
                );
                recorder
                    .publish(&reference, None, type_, ("CheckVault", reason), &note)
                    .await;
            }
        }
    }
}

/// The uid of the Vault StatefulSet, for the Events' reference (`kubectl describe` matches on
/// it); `None` (and a warning) when it cannot be read in time, to be tried at the next Event.
async fn read_uid(client: &kube::Client, namespace: &str, name: &str) -> Option<String> {
    let api: kube::Api<k8s_openapi::api::apps::v1::StatefulSet> =
        kube::Api::namespaced(client.clone(), namespace);
    match call::within(
        CALL_TIMEOUT,
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

/// The servers known from the last poll that this poll no longer found.
fn vanished(known: &BTreeMap<String, VaultState>, current: &BTreeSet<&str>) -> Vec<String> {
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
        let known = BTreeMap::from([
            ("a".to_string(), VaultState::Unsealed),
            ("b".to_string(), VaultState::Error),
        ]);
        assert_eq!(vanished(&known, &BTreeSet::from(["a", "c"])), ["b"]);
        assert!(vanished(&known, &BTreeSet::from(["a", "b"])).is_empty());
    }
}
