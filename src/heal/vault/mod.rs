//! Vault: notice a sealed server and, where allowed, unseal it with the key shares kept in a
//! Kubernetes Secret (`key1` … `keyN`).
//!
//! The unseal walk sends exactly as many shares as the threshold needs, follows `progress` after
//! each one, and stops at the first error or reset instead of walking through every key. Keys
//! never reach a log line, an Event or an error message: `UnsealKey` prints as `***`.
//!
//! An unseal that someone else has begun (progress above 0) is left alone while it may still be
//! moving: see [`judge_partial`] for the rule and [`OPERATOR_HOLD_OFF`] for the window.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::ByteString;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// `GET /v1/sys/seal-status` (and the answer of every unseal step).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct SealStatus {
    pub sealed: bool,
    /// Threshold: shares needed.
    pub t: u32,
    /// Total shares.
    pub n: u32,
    /// Shares submitted so far in this attempt.
    pub progress: u32,
    #[serde(default = "yes")]
    pub initialized: bool,
    /// Vault's identifier of the attempt in progress: a new one with the first share of every
    /// attempt, empty while none is in progress (and on servers that do not report it).
    #[serde(default)]
    pub nonce: String,
}

fn yes() -> bool {
    true
}

impl SealStatus {
    /// The unseal attempt in progress, if a sealed server holds some shares.
    pub fn attempt(&self) -> Option<UnsealAttempt> {
        (self.sealed && self.progress > 0).then(|| UnsealAttempt {
            progress: self.progress,
            nonce: self.nonce.clone(),
        })
    }
}

/// An unseal attempt in progress at one server, as `seal-status` shows it. Two sightings show the
/// same attempt, unmoved, when both fields are equal: within one attempt `progress` only grows, and
/// a reset or a new attempt brings a new `nonce`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsealAttempt {
    pub progress: u32,
    pub nonce: String,
}

/// How long a partial unseal must stay unchanged before selfheal treats it as abandoned.
///
/// Five minutes, ten polls of the watcher: an operator entering shares from a terminal, or key
/// holders taking turns on a call, submit the next share well within it, so selfheal never
/// resets their work; an abandoned attempt (someone walked away, a walk of selfheal's cut short)
/// delays the automatic unseal by at most this window plus one poll.
pub const OPERATOR_HOLD_OFF: Duration = Duration::from_secs(5 * 60);

/// An attempt as last seen at one server, and since when it has been seen unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenAttempt {
    pub attempt: UnsealAttempt,
    pub since: Instant,
}

/// Verdict on a partial unseal found at a sealed server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartialUnseal {
    /// It moved within the hold-off (or is seen for the first time): someone may be entering
    /// shares. Leave it alone: no reset, no share.
    OperatorAtWork { unchanged_for: Duration },
    /// Unchanged for at least the hold-off: abandoned. It may be reset and the unseal redone.
    Abandoned { unchanged_for: Duration },
}

/// The rule that keeps auto-unseal from fighting an operator:
///
/// selfheal resets a partial unseal (progress above 0) only after it has seen that same attempt —
/// the same `progress` and the same `nonce` from `/v1/sys/seal-status` — unchanged for at least
/// `hold_off` ([`OPERATOR_HOLD_OFF`], 5 minutes). An attempt seen for the first time (also after
/// selfheal starts or a new leader takes over) starts the clock, so it is never reset at first
/// sight; every share an operator submits, and every new attempt, starts the clock again. Until
/// then selfheal reports the unseal in progress and sends nothing to that server.
///
/// `previous` is what was seen at this server at the last poll; the answer carries what to
/// remember for the next one.
pub fn judge_partial(
    previous: Option<&SeenAttempt>,
    attempt: &UnsealAttempt,
    now: Instant,
    hold_off: Duration,
) -> (SeenAttempt, PartialUnseal) {
    let since = match previous {
        Some(seen) if seen.attempt == *attempt => seen.since,
        _ => now,
    };
    let unchanged_for = now.saturating_duration_since(since);
    let verdict = if unchanged_for >= hold_off {
        PartialUnseal::Abandoned { unchanged_for }
    } else {
        PartialUnseal::OperatorAtWork { unchanged_for }
    };
    (
        SeenAttempt {
            attempt: attempt.clone(),
            since,
        },
        verdict,
    )
}

/// The partial unseals seen at each server, kept from one poll to the next.
#[derive(Debug, Clone)]
pub struct PartialUnseals {
    hold_off: Duration,
    seen: BTreeMap<String, SeenAttempt>,
}

impl PartialUnseals {
    pub fn new(hold_off: Duration) -> Self {
        Self {
            hold_off,
            seen: BTreeMap::new(),
        }
    }

    /// Records what `status` shows at `address` at `now`; the verdict when a partial unseal is in
    /// progress, `None` (and nothing remembered) when there is none.
    pub fn observe(
        &mut self,
        address: &str,
        status: &SealStatus,
        now: Instant,
    ) -> Option<PartialUnseal> {
        let Some(attempt) = status.attempt() else {
            self.seen.remove(address);
            return None;
        };
        let (seen, verdict) = judge_partial(self.seen.get(address), &attempt, now, self.hold_off);
        self.seen.insert(address.to_string(), seen);
        Some(verdict)
    }

    /// Forgets the servers that are not in `addresses`.
    pub fn retain(&mut self, addresses: &BTreeSet<&str>) {
        self.seen
            .retain(|address, _| addresses.contains(address.as_str()));
    }
}

/// One unseal key share. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct UnsealKey(String);

impl std::fmt::Debug for UnsealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnsealKey(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error("{address}: {reason}")]
    Unreachable { address: String, reason: String },
    #[error("{address}: no answer within {seconds}s")]
    Timeout { address: String, seconds: u64 },
    #[error("{address}: HTTP {code}: {message}")]
    Status {
        address: String,
        code: u16,
        message: String,
    },
    #[error("{address}: unexpected answer: {reason}")]
    Malformed { address: String, reason: String },
    #[error("{address}: Vault is not initialized; unsealing needs `vault operator init` first")]
    NotInitialized { address: String },
    #[error("the unseal key Secret has no `{0}` (keys must be key1, key2, … without gaps)")]
    MissingKey(String),
    #[error("the unseal key Secret holds {have} keys; the threshold is {need}")]
    NotEnoughKeys { have: usize, need: u32 },
    #[error(
        "{address}: unseal progress went back to {progress} after share {sent}: the keys do not belong together; stopped"
    )]
    Reset {
        address: String,
        sent: u32,
        progress: u32,
    },
    #[error("{address}: still sealed after {sent} shares; stopped")]
    StillSealed { address: String, sent: u32 },
    #[error("{address}: this replica no longer leads; stopped after {sent} shares")]
    NoLongerLeading { address: String, sent: u32 },
    #[error("https Vault addresses need --vault-ca-file: {0}")]
    Tls(String),
}

/// The keys `key1` … `keyN` of the unseal Secret, in order. A gap is an error naming the key.
pub fn keys_from_secret(data: &BTreeMap<String, ByteString>) -> Result<Vec<UnsealKey>, VaultError> {
    let numbered: Vec<u32> = data
        .keys()
        .filter_map(|k| k.strip_prefix("key")?.parse().ok())
        .collect();
    let count = numbered.iter().copied().max().unwrap_or(0);
    (1..=count)
        .map(|i| {
            let name = format!("key{i}");
            data.get(&name)
                .map(|bytes| UnsealKey(String::from_utf8_lossy(&bytes.0).trim().to_string()))
                .filter(|key| !key.0.is_empty())
                .ok_or(VaultError::MissingKey(name))
        })
        .collect()
}

/// What an unseal attempt did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum UnsealOutcome {
    /// Nothing to do: no unseal request was sent.
    AlreadyUnsealed,
    Unsealed {
        shares_sent: u32,
    },
    /// A partial unseal other than the one allowed to be reset was in progress: nothing was sent.
    LeftInProgress {
        progress: u32,
        threshold: u32,
    },
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A small HTTP(S) client for Vault's `sys` endpoints, with a timeout on every request.
#[derive(Clone)]
pub struct VaultClient {
    http: HttpClient,
    timeout: Duration,
}

impl VaultClient {
    /// `ca_pem`: the CA that signs Vault's certificate (needed for https addresses).
    pub fn new(
        ca_pem: Option<&[u8]>,
        provider: Arc<CryptoProvider>,
        timeout: Duration,
    ) -> Result<Self, VaultError> {
        let mut roots = RootCertStore::empty();
        if let Some(pem) = ca_pem {
            for certificate in CertificateDer::pem_slice_iter(pem) {
                let certificate = certificate.map_err(|e| VaultError::Tls(e.to_string()))?;
                roots
                    .add(certificate)
                    .map_err(|e| VaultError::Tls(e.to_string()))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| VaultError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            http: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        })
    }

    async fn call(
        &self,
        address: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, VaultError> {
        let url = format!("{}{path}", address.trim_end_matches('/'));
        let unreachable = |reason: String| VaultError::Unreachable {
            address: address.to_string(),
            reason,
        };
        let payload = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(&url)
            .header("content-type", "application/json")
            .body(Full::new(payload))
            .map_err(|e| unreachable(format!("bad address: {e}")))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            Ok::<_, VaultError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| VaultError::Timeout {
                address: address.to_string(),
                seconds: self.timeout.as_secs(),
            })??;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status != StatusCode::OK {
            let message = value["errors"]
                .as_array()
                .map(|errors| {
                    errors
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_else(|| crate::text::truncate(&String::from_utf8_lossy(&bytes), 200));
            return Err(VaultError::Status {
                address: address.to_string(),
                code: status.as_u16(),
                message,
            });
        }
        Ok(value)
    }

    fn parse(address: &str, value: Value) -> Result<SealStatus, VaultError> {
        serde_json::from_value(value).map_err(|e| VaultError::Malformed {
            address: address.to_string(),
            reason: e.to_string(),
        })
    }

    pub async fn seal_status(&self, address: &str) -> Result<SealStatus, VaultError> {
        let value = self
            .call(address, Method::GET, "/v1/sys/seal-status", None)
            .await?;
        Self::parse(address, value)
    }

    /// Unseals `address` with `keys`; see the module documentation. A partial unseal found at the
    /// server is reset only when it is exactly `abandoned` (judged by [`judge_partial`]); any
    /// other one is left alone and nothing is sent.
    pub async fn unseal(
        &self,
        address: &str,
        keys: &[UnsealKey],
        abandoned: Option<&UnsealAttempt>,
    ) -> Result<UnsealOutcome, VaultError> {
        self.unseal_while(address, keys, abandoned, &|| true).await
    }

    /// [`VaultClient::unseal`], sending each write (a reset, a share) only while `may_write`
    /// says so (this replica still leads): the walk stops before the first write it forbids.
    pub async fn unseal_while(
        &self,
        address: &str,
        keys: &[UnsealKey],
        abandoned: Option<&UnsealAttempt>,
        may_write: &(dyn Fn() -> bool + Sync),
    ) -> Result<UnsealOutcome, VaultError> {
        let stopped = |sent| VaultError::NoLongerLeading {
            address: address.to_string(),
            sent,
        };
        let mut status = self.seal_status(address).await?;
        if !status.initialized {
            return Err(VaultError::NotInitialized {
                address: address.to_string(),
            });
        }
        if !status.sealed {
            return Ok(UnsealOutcome::AlreadyUnsealed);
        }
        if keys.len() < status.t as usize {
            return Err(VaultError::NotEnoughKeys {
                have: keys.len(),
                need: status.t,
            });
        }
        if let Some(attempt) = status.attempt() {
            if abandoned != Some(&attempt) {
                return Ok(UnsealOutcome::LeftInProgress {
                    progress: attempt.progress,
                    threshold: status.t,
                });
            }
            // An abandoned attempt: its shares are unknown, start afresh.
            if !may_write() {
                return Err(stopped(0));
            }
            let value = self
                .call(
                    address,
                    Method::PUT,
                    "/v1/sys/unseal",
                    Some(json!({"reset": true})),
                )
                .await?;
            status = Self::parse(address, value)?;
        }
        let mut sent = 0;
        for key in keys.iter().take(status.t as usize) {
            if !may_write() {
                return Err(stopped(sent));
            }
            let value = self
                .call(
                    address,
                    Method::PUT,
                    "/v1/sys/unseal",
                    Some(json!({"key": key.0})),
                )
                .await?;
            sent += 1;
            let now = Self::parse(address, value)?;
            if !now.sealed {
                return Ok(UnsealOutcome::Unsealed { shares_sent: sent });
            }
            if now.progress != sent {
                return Err(VaultError::Reset {
                    address: address.to_string(),
                    sent,
                    progress: now.progress,
                });
            }
        }
        Err(VaultError::StillSealed {
            address: address.to_string(),
            sent,
        })
    }
}

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
                    operator_at_work(&status, unchanged_for, partials.hold_off),
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
                match tokio::time::timeout(crate::heal::execute::CALL_TIMEOUT, publish).await {
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
    match tokio::time::timeout(
        crate::heal::execute::CALL_TIMEOUT,
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

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn keys_are_read_in_order_and_gaps_are_named() {
        let keys = keys_from_secret(&data(&[
            ("key2", "bbb\n"),
            ("key1", "aaa"),
            ("root-token", "x"),
        ]))
        .unwrap();
        assert_eq!(keys, [UnsealKey("aaa".into()), UnsealKey("bbb".into())]);
        assert_eq!(
            keys_from_secret(&data(&[("key1", "a"), ("key3", "c")])).unwrap_err(),
            VaultError::MissingKey("key2".into())
        );
        assert_eq!(
            keys_from_secret(&data(&[("key1", "")])).unwrap_err(),
            VaultError::MissingKey("key1".into())
        );
    }

    #[test]
    fn keys_never_print() {
        let key = UnsealKey("s3cr3t-share".into());
        assert_eq!(format!("{key:?}"), "UnsealKey(***)");
        assert!(!format!("{:?}", vec![key]).contains("s3cr3t"));
    }

    fn attempt(progress: u32, nonce: &str) -> UnsealAttempt {
        UnsealAttempt {
            progress,
            nonce: nonce.into(),
        }
    }

    const HOLD_OFF: Duration = Duration::from_secs(300);

    /// Judges `sightings` (seconds after the first poll, attempt seen) one after the other.
    fn judge_all(sightings: &[(u64, UnsealAttempt)]) -> Vec<PartialUnseal> {
        let start = Instant::now();
        let mut seen: Option<SeenAttempt> = None;
        sightings
            .iter()
            .map(|(at, attempt)| {
                let now = start + Duration::from_secs(*at);
                let (next, verdict) = judge_partial(seen.as_ref(), attempt, now, HOLD_OFF);
                seen = Some(next);
                verdict
            })
            .collect()
    }

    fn at_work(seconds: u64) -> PartialUnseal {
        PartialUnseal::OperatorAtWork {
            unchanged_for: Duration::from_secs(seconds),
        }
    }

    fn abandoned(seconds: u64) -> PartialUnseal {
        PartialUnseal::Abandoned {
            unchanged_for: Duration::from_secs(seconds),
        }
    }

    #[test]
    fn a_partial_unseal_is_never_abandoned_at_first_sight() {
        assert_eq!(judge_all(&[(0, attempt(1, "n1"))]), [at_work(0)]);
        let (seen, _) = judge_partial(None, &attempt(2, "n1"), Instant::now(), HOLD_OFF);
        assert_eq!(seen.attempt, attempt(2, "n1"));
    }

    #[test]
    fn the_issue_case_progress_one_of_three_24s_later_is_an_operator_at_work() {
        assert_eq!(
            judge_all(&[(0, attempt(1, "n1")), (24, attempt(1, "n1"))]),
            [at_work(0), at_work(24)]
        );
    }

    #[test]
    fn an_unchanged_attempt_is_abandoned_exactly_at_the_hold_off() {
        assert_eq!(
            judge_all(&[
                (0, attempt(1, "n1")),
                (299, attempt(1, "n1")),
                (300, attempt(1, "n1")),
            ]),
            [at_work(0), at_work(299), abandoned(300)]
        );
    }

    #[test]
    fn every_share_restarts_the_clock() {
        assert_eq!(
            judge_all(&[
                (0, attempt(1, "n1")),
                (240, attempt(2, "n1")),
                (480, attempt(2, "n1")),
                (540, attempt(2, "n1")),
            ]),
            [at_work(0), at_work(0), at_work(240), abandoned(300)]
        );
    }

    #[test]
    fn a_new_attempt_at_the_same_progress_restarts_the_clock() {
        // The operator reset and entered one share again: same progress, new nonce.
        assert_eq!(
            judge_all(&[
                (0, attempt(1, "n1")),
                (290, attempt(1, "n2")),
                (320, attempt(1, "n2")),
            ]),
            [at_work(0), at_work(0), at_work(30)]
        );
    }

    fn status(sealed: bool, progress: u32, nonce: &str) -> SealStatus {
        SealStatus {
            sealed,
            t: 3,
            n: 5,
            progress,
            initialized: true,
            nonce: nonce.into(),
        }
    }

    #[test]
    fn servers_are_judged_apart_and_forgotten_when_no_attempt_is_left() {
        let start = Instant::now();
        let later = start + HOLD_OFF;
        let mut partials = PartialUnseals::new(HOLD_OFF);
        assert_eq!(partials.observe("a", &status(true, 0, ""), start), None);
        assert_eq!(
            partials.observe("a", &status(true, 1, "n1"), start),
            Some(at_work(0))
        );
        assert_eq!(
            partials.observe("b", &status(true, 1, "n1"), later),
            Some(at_work(0))
        );
        assert_eq!(
            partials.observe("a", &status(true, 1, "n1"), later),
            Some(abandoned(300))
        );
        // Unsealed meanwhile, then sealed again with the same progress and nonce: a new sighting.
        assert_eq!(partials.observe("a", &status(false, 0, ""), later), None);
        assert_eq!(
            partials.observe("a", &status(true, 1, "n1"), later),
            Some(at_work(0))
        );
        partials.retain(&BTreeSet::from(["b"]));
        assert_eq!(
            partials.observe("a", &status(true, 1, "n1"), later + HOLD_OFF),
            Some(at_work(0)),
            "a server no longer discovered is forgotten"
        );
    }

    #[test]
    fn an_unsealed_server_has_no_attempt_whatever_its_progress() {
        assert_eq!(status(false, 2, "n1").attempt(), None);
        assert_eq!(status(true, 0, "").attempt(), None);
        assert_eq!(status(true, 2, "n1").attempt(), Some(attempt(2, "n1")));
    }

    #[test]
    fn servers_missing_from_this_poll_have_vanished() {
        let known = BTreeMap::from([("a".to_string(), "unsealed"), ("b".to_string(), "error")]);
        assert_eq!(vanished(&known, &BTreeSet::from(["a", "c"])), ["b"]);
        assert!(vanished(&known, &BTreeSet::from(["a", "b"])).is_empty());
    }
}
