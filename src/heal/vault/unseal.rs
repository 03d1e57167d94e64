//! The check: discover the servers, read their status, unseal the sealed ones where allowed, and
//! (in the watcher) say every change of state with an Event on the Vault StatefulSet.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use super::client::{UnsealKey, UnsealOutcome, VaultClient, keys_from_secret};
use super::status::{OPERATOR_HOLD_OFF, PartialUnseal, PartialUnseals, UnsealAttempt};
use crate::core::targeting::{NamespaceLabels, Target, Targeting};
use crate::heal::call::{self, CALL_TIMEOUT};
use crate::heal::plan::vault::{Partial, SealedServer, UnsealMode};
use crate::heal::plan::{self, Action, ActionKind, Decision, Rail, ReportLevel};

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

/// The state of one server after a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VaultState {
    Unsealed,
    /// Sealed, and unsealed by this check.
    UnsealedNow,
    /// Sealed: alert mode, a dry run, or refused by a rail.
    Sealed,
    /// Sealed with a partial unseal someone else may be entering: left alone.
    OperatorUnsealing,
    /// Unreachable, or the unseal failed.
    Error,
}

impl VaultState {
    /// `unsealed`, `unsealed-now`, `sealed`, `operator-unsealing`, `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            VaultState::Unsealed => "unsealed",
            VaultState::UnsealedNow => "unsealed-now",
            VaultState::Sealed => "sealed",
            VaultState::OperatorUnsealing => OPERATOR_UNSEALING,
            VaultState::Error => "error",
        }
    }

    /// Whether the server is unsealed now.
    pub fn is_unsealed(self) -> bool {
        matches!(self, VaultState::Unsealed | VaultState::UnsealedNow)
    }
}

impl std::fmt::Display for VaultState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for VaultState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl PartialEq<&str> for VaultState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// What was found (and done) at one server.
#[derive(Debug, Clone, Serialize)]
pub struct VaultReport {
    pub address: String,
    pub state: VaultState,
    pub detail: String,
    /// What was decided about a sealed server (`UnsealVault`, `Alert`, `Report`), what came of
    /// it (`selfheal_healing_actions_total`'s `result`), and the rail that refused it.
    #[serde(skip)]
    pub action: Option<ActionKind>,
    #[serde(skip)]
    pub result: Option<&'static str>,
    #[serde(skip)]
    pub rail: Option<Rail>,
}

/// Addresses of every server: the explicit ones, and one per pod of the StatefulSet.
pub async fn discover(
    client: &kube::Client,
    targets: &VaultTargets,
) -> Result<Vec<String>, kube::Error> {
    Ok(find(client, targets).await?.addresses)
}

/// The servers, and the labels of their StatefulSet (the rails read them).
struct Found {
    addresses: Vec<String>,
    statefulset_labels: Option<BTreeMap<String, String>>,
}

async fn find(client: &kube::Client, targets: &VaultTargets) -> Result<Found, kube::Error> {
    let mut addresses = targets.addresses.clone();
    let mut statefulset_labels = None;
    if let Some(name) = &targets.statefulset {
        let sets: kube::Api<k8s_openapi::api::apps::v1::StatefulSet> =
            kube::Api::namespaced(client.clone(), &targets.namespace);
        let set = sets.get(name).await?;
        statefulset_labels = set.metadata.labels.clone();
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
    Ok(Found {
        addresses,
        statefulset_labels,
    })
}

/// Checks every server once; in unseal mode unseals the sealed ones with the keys of the Secret,
/// which is read only when a server is actually sealed. One look cannot tell an operator's
/// partial unseal from an abandoned one, so a partial unseal is always left alone here (state
/// `operator-unsealing`); the watcher ([`keep_unsealed`](super::keep_unsealed)) remembers across polls. A one-shot
/// check honours the ignore label on the StatefulSet and its namespace.
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
        targeting: Targeting::default(),
    };
    check_all_with(
        vault,
        client,
        targets,
        &actions,
        None,
        &mut partials,
        Instant::now(),
    )
    .await
}

/// What a check may change at the servers besides reading their status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultActions {
    /// Unseal sealed servers (else only report them).
    pub unseal: bool,
    /// Say what an unseal would send and send nothing; publish no Event.
    pub dry_run: bool,
    /// Where selfheal may act: the Vault StatefulSet (its namespace for explicit addresses)
    /// passes the same rails as every other object an action changes.
    pub targeting: Targeting,
}

/// What the decision about one sealed server said, for the report and the metric.
struct Decided {
    action: ActionKind,
    result: &'static str,
    rail: Option<Rail>,
}

/// [`check_all`] with the partial unseals seen at earlier polls: a partial unseal is reset only
/// when `partials` has seen it unchanged for the whole hold-off ([`judge_partial`](super::judge_partial)), as of `now`.
/// With `leadership`, every write (a reset, a share) is sent only while this replica leads.
/// What to do about a sealed server is decided by `plan::vault::unseal`.
pub async fn check_all_with(
    vault: &VaultClient,
    client: &kube::Client,
    targets: &VaultTargets,
    actions: &VaultActions,
    leadership: Option<&crate::cluster::leader::Leadership>,
    partials: &mut PartialUnseals,
    now: Instant,
) -> Result<Vec<VaultReport>, kube::Error> {
    let may_write = || leadership.is_none_or(|l| l.is_leader());
    let mut reports = Vec::new();
    let mut keys: Option<Result<Vec<UnsealKey>, String>> = None;
    let found = find(client, targets).await?;
    let mut namespace_labels: Option<Result<BTreeMap<String, String>, String>> = None;
    let keys_secret = format!("{}/{}", targets.namespace, targets.keys_secret);
    for address in &found.addresses {
        let report = |state, detail: String, decided: Option<Decided>| VaultReport {
            address: address.clone(),
            state,
            detail,
            action: decided.as_ref().map(|d| d.action),
            result: decided.as_ref().map(|d| d.result),
            rail: decided.and_then(|d| d.rail),
        };
        let status = match vault.seal_status(address).await {
            Ok(status) => status,
            Err(error) => {
                reports.push(report(VaultState::Error, error.to_string(), None));
                continue;
            }
        };
        let partial = partials.observe(address, &status, now);
        if !status.sealed {
            reports.push(report(VaultState::Unsealed, "unsealed".into(), None));
            continue;
        }
        let partial = match &partial {
            Some(PartialUnseal::OperatorAtWork { unchanged_for }) => Partial::OperatorAtWork {
                unchanged_for: *unchanged_for,
                hold_off: partials.hold_off(),
            },
            Some(PartialUnseal::Abandoned { unchanged_for }) => Partial::Abandoned {
                nonce: status.nonce.clone(),
                unchanged_for: *unchanged_for,
            },
            None => Partial::None,
        };
        let mode = UnsealMode {
            unseal: actions.unseal,
            dry_run: actions.dry_run,
        };
        // The facts of the decision: the labels of the Vault's namespace, read once per check
        // and only when the decision reads them (a server is sealed, to be unsealed).
        if plan::vault::reads_target(&partial, mode) && namespace_labels.is_none() {
            namespace_labels = Some(read_namespace_labels(client, &targets.namespace).await);
        }
        let labels = match namespace_labels.as_ref() {
            Some(Ok(labels)) => NamespaceLabels::Known(labels),
            Some(Err(why)) => NamespaceLabels::Unreadable(why),
            None => NamespaceLabels::NotConsulted,
        };
        let target = match &targets.statefulset {
            Some(name) => Target::new("StatefulSet", &targets.namespace, name)
                .labelled(found.statefulset_labels.as_ref()),
            None => Target::new("Vault", &targets.namespace, ""),
        }
        .in_namespace(labels);
        let sealed = SealedServer {
            address,
            threshold: status.t,
            progress: status.progress,
            partial,
            target,
            keys: &keys_secret,
        };
        let action = match plan::vault::unseal(&sealed, mode, &actions.targeting) {
            Decision::Report(said) => {
                let (state, result) = match said.level {
                    ReportLevel::Alert => (VaultState::Sealed, "alerted"),
                    ReportLevel::Notice | ReportLevel::UnderWay(_) => {
                        (VaultState::OperatorUnsealing, "reported")
                    }
                };
                let action = Decision::Report(said.clone()).action();
                let decided = Decided {
                    action,
                    result,
                    rail: None,
                };
                reports.push(report(state, said.reason, Some(decided)));
                continue;
            }
            Decision::Refuse(refusal) => {
                let result = if refusal.rail == Rail::DryRun {
                    "dry_run"
                } else {
                    "refused"
                };
                let detail = if refusal.rail == Rail::DryRun {
                    refusal.reason
                } else {
                    format!("sealed; not unsealing: {}", refusal.reason)
                };
                let decided = Decided {
                    action: refusal.action,
                    result,
                    rail: (refusal.rail != Rail::DryRun).then_some(refusal.rail),
                };
                reports.push(report(VaultState::Sealed, detail, Some(decided)));
                continue;
            }
            Decision::Defer(_) => continue,
            Decision::Act(action) => action,
        };
        let Action::UnsealVault { reset, .. } = *action else {
            continue;
        };
        let abandoned = reset.as_ref().map(|reset| UnsealAttempt {
            progress: reset.progress,
            nonce: reset.nonce.clone(),
        });
        if keys.is_none() {
            keys = Some(read_keys(client, targets).await);
        }
        let outcome = match keys.as_ref() {
            Some(Ok(keys)) => vault
                .unseal_while(address, keys, abandoned.as_ref(), &may_write)
                .await
                .map_err(|e| e.to_string()),
            Some(Err(error)) => Err(error.clone()),
            None => Err("no keys".to_string()),
        };
        let after_reset = reset
            .map(|reset| {
                format!(
                    " after resetting an unseal left at {}/{} shares for {}s",
                    reset.progress,
                    status.t,
                    reset.unchanged_for.as_secs()
                )
            })
            .unwrap_or_default();
        let decided = |result| {
            Some(Decided {
                action: ActionKind::UnsealVault,
                result,
                rail: None,
            })
        };
        reports.push(match outcome {
            Ok(UnsealOutcome::Unsealed { shares_sent }) => report(
                VaultState::UnsealedNow,
                format!("unsealed with {shares_sent} shares{after_reset}"),
                decided("done"),
            ),
            Ok(UnsealOutcome::AlreadyUnsealed) => report(
                VaultState::Unsealed,
                "unsealed meanwhile".into(),
                decided("unchanged"),
            ),
            Ok(UnsealOutcome::LeftInProgress {
                progress,
                threshold,
            }) => report(
                VaultState::OperatorUnsealing,
                format!(
                    "an unseal moved to {progress}/{threshold} shares while selfheal looked: left alone"
                ),
                decided("unchanged"),
            ),
            Err(error) => report(
                VaultState::Error,
                format!("{error}{after_reset}"),
                decided("failed"),
            ),
        });
    }
    Ok(reports)
}

/// State of a sealed server whose partial unseal selfheal leaves alone.
pub const OPERATOR_UNSEALING: &str = "operator-unsealing";

/// The labels of `namespace` (none for one the API does not know), or why they could not be
/// read.
async fn read_namespace_labels(
    client: &kube::Client,
    namespace: &str,
) -> Result<BTreeMap<String, String>, String> {
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client.clone());
    match call::within(
        CALL_TIMEOUT,
        || format!("reading namespace {namespace}"),
        api.get_opt(namespace),
    )
    .await
    {
        Ok(Ok(found)) => Ok(found.and_then(|n| n.metadata.labels).unwrap_or_default()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(elapsed) => Err(elapsed.to_string()),
    }
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
