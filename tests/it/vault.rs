//! The Vault unseal walk against a test Vault server started here: a real threshold, progress,
//! reset and a nonce per attempt, on 127.0.0.1.

use crate::support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{Value, json};

use selfheal::heal::vault::{
    self, OPERATOR_HOLD_OFF, PartialUnseals, UnsealAttempt, UnsealKey, UnsealOutcome, VaultClient,
    VaultError, VaultTargets, keys_from_secret,
};
use support::fake_apiserver::{Collection, FakeApiServer};

/// Shamir-like test Vault: `t` distinct valid shares unseal it; a combination with a wrong share
/// fails when the threshold is reached and resets progress, as Vault does. The first share of
/// every attempt starts a new nonce, as Vault's does.
#[derive(Default)]
struct TestVault {
    threshold: u32,
    valid: HashSet<String>,
    submitted: Vec<String>,
    sealed: bool,
    initialized: bool,
    /// Requests to `/v1/sys/unseal` made by selfheal (an operator's shares are not counted).
    unseal_requests: u32,
    attempts: u32,
}

impl TestVault {
    fn nonce(&self) -> String {
        if self.submitted.is_empty() {
            String::new()
        } else {
            format!("attempt-{}", self.attempts)
        }
    }

    /// One share, as `vault operator unseal` sends it.
    fn submit(&mut self, key: &str) -> bool {
        if !self.sealed {
            return true;
        }
        if self.submitted.is_empty() {
            self.attempts += 1;
        }
        self.submitted.push(key.to_string());
        if self.submitted.len() as u32 == self.threshold {
            let distinct: HashSet<&String> = self.submitted.iter().collect();
            let good = distinct.len() as u32 == self.threshold
                && self.submitted.iter().all(|k| self.valid.contains(k));
            self.submitted.clear();
            if !good {
                return false;
            }
            self.sealed = false;
        }
        true
    }
}

type Shared = Arc<Mutex<TestVault>>;

fn status(vault: &TestVault) -> Value {
    json!({"type": "shamir", "initialized": vault.initialized, "sealed": vault.sealed, "t": vault.threshold,
        "n": vault.valid.len(), "progress": vault.submitted.len(), "nonce": vault.nonce(), "version": "1.18.2"})
}

async fn seal_status(State(vault): State<Shared>) -> Json<Value> {
    Json(status(&vault.lock().unwrap()))
}

async fn unseal(State(vault): State<Shared>, Json(body): Json<Value>) -> Response {
    let mut vault = vault.lock().unwrap();
    vault.unseal_requests += 1;
    if body["reset"] == true {
        vault.submitted.clear();
        return Json(status(&vault)).into_response();
    }
    let Some(key) = body["key"].as_str() else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"errors": ["missing required 'key' parameter"]})),
        )
            .into_response();
    };
    if !vault.submit(key) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"errors": ["failed to unseal: cipher: message authentication failed"]})),
        )
            .into_response();
    }
    Json(status(&vault)).into_response()
}

async fn start(vault: TestVault) -> (String, Shared) {
    let shared: Shared = Arc::new(Mutex::new(vault));
    let app = Router::new()
        .route("/v1/sys/seal-status", get(seal_status))
        .route("/v1/sys/unseal", put(unseal).post(unseal))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (address, shared)
}

fn sealed(threshold: u32) -> TestVault {
    TestVault {
        threshold,
        valid: (1..=5).map(|i| format!("share-{i}")).collect(),
        sealed: true,
        initialized: true,
        ..TestVault::default()
    }
}

fn keys(names: &[&str]) -> Vec<UnsealKey> {
    let data = names
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                format!("key{}", i + 1),
                k8s_openapi::ByteString(v.as_bytes().to_vec()),
            )
        })
        .collect();
    keys_from_secret(&data).unwrap()
}

fn client() -> VaultClient {
    VaultClient::new(
        None,
        Arc::new(rustls::crypto::ring::default_provider()),
        Duration::from_millis(500),
    )
    .unwrap()
}

#[tokio::test]
async fn unseals_with_exactly_the_threshold() {
    let (address, vault) = start(sealed(3)).await;
    let outcome = client()
        .unseal(
            &address,
            &keys(&["share-1", "share-2", "share-3", "share-4", "share-5"]),
            None,
        )
        .await
        .unwrap();
    assert_eq!(outcome, UnsealOutcome::Unsealed { shares_sent: 3 });
    let vault = vault.lock().unwrap();
    assert!(!vault.sealed);
    assert_eq!(
        vault.unseal_requests, 3,
        "no more shares than the threshold"
    );
}

#[tokio::test]
async fn already_unsealed_sends_no_unseal_request() {
    let mut unsealed = sealed(3);
    unsealed.sealed = false;
    let (address, vault) = start(unsealed).await;
    let outcome = client()
        .unseal(&address, &keys(&["share-1", "share-2", "share-3"]), None)
        .await
        .unwrap();
    assert_eq!(outcome, UnsealOutcome::AlreadyUnsealed);
    assert_eq!(vault.lock().unwrap().unseal_requests, 0);
}

#[tokio::test]
async fn wrong_keys_stop_at_the_first_failure() {
    let (address, vault) = start(sealed(2)).await;
    let error = client()
        .unseal(
            &address,
            &keys(&["share-1", "not-a-share", "share-2", "share-3"]),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, VaultError::Status { code: 400, message, .. } if message.contains("failed to unseal")),
        "{error}"
    );
    let vault = vault.lock().unwrap();
    assert!(vault.sealed);
    assert_eq!(
        vault.unseal_requests, 2,
        "stopped instead of walking through every key"
    );
}

#[tokio::test]
async fn a_half_finished_attempt_is_reset_only_when_it_is_the_abandoned_one() {
    let mut half = sealed(2);
    half.submit("someone-elses-share");
    let (address, vault) = start(half).await;
    let shares = keys(&["share-4", "share-5"]);
    for other in [
        None,
        Some(UnsealAttempt {
            progress: 1,
            nonce: "attempt-0".into(),
        }),
    ] {
        let outcome = client()
            .unseal(&address, &shares, other.as_ref())
            .await
            .unwrap();
        assert_eq!(
            outcome,
            UnsealOutcome::LeftInProgress {
                progress: 1,
                threshold: 2
            }
        );
        assert_eq!(vault.lock().unwrap().unseal_requests, 0, "nothing sent");
    }
    let abandoned = UnsealAttempt {
        progress: 1,
        nonce: "attempt-1".into(),
    };
    let outcome = client()
        .unseal(&address, &shares, Some(&abandoned))
        .await
        .unwrap();
    assert_eq!(outcome, UnsealOutcome::Unsealed { shares_sent: 2 });
    assert_eq!(
        vault.lock().unwrap().unseal_requests,
        3,
        "one reset, two shares"
    );
}

#[tokio::test]
async fn too_few_keys_and_a_missing_key_are_reported_before_sending_anything() {
    let (address, vault) = start(sealed(3)).await;
    let error = client()
        .unseal(&address, &keys(&["share-1", "share-2"]), None)
        .await
        .unwrap_err();
    assert_eq!(error, VaultError::NotEnoughKeys { have: 2, need: 3 });
    assert_eq!(vault.lock().unwrap().unseal_requests, 0);
    let gap = [("key1", "share-1"), ("key3", "share-3")]
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                k8s_openapi::ByteString(v.as_bytes().to_vec()),
            )
        })
        .collect();
    assert_eq!(
        keys_from_secret(&gap).unwrap_err().to_string(),
        "the unseal key Secret has no `key2` (keys must be key1, key2, … without gaps)"
    );
}

#[tokio::test]
async fn uninitialized_vault_is_not_unsealed() {
    let mut fresh = sealed(3);
    fresh.initialized = false;
    let (address, _) = start(fresh).await;
    let error = client()
        .unseal(&address, &keys(&["share-1", "share-2", "share-3"]), None)
        .await
        .unwrap_err();
    assert!(matches!(error, VaultError::NotInitialized { .. }));
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let error = client().seal_status(&address).await.unwrap_err();
    assert!(matches!(error, VaultError::Timeout { .. }), "{error}");
    let refused = client()
        .seal_status("http://127.0.0.1:1")
        .await
        .unwrap_err();
    assert!(
        matches!(refused, VaultError::Unreachable { .. }),
        "{refused}"
    );
}

#[tokio::test]
async fn garbage_answers_are_named() {
    let app = Router::new().route(
        "/v1/sys/seal-status",
        get(|| async { "<html>proxy error</html>" }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let error = client().seal_status(&address).await.unwrap_err();
    assert!(matches!(error, VaultError::Malformed { .. }), "{error}");
}

fn targets(addresses: Vec<String>, statefulset: Option<&str>) -> VaultTargets {
    VaultTargets {
        namespace: "vault".into(),
        statefulset: statefulset.map(String::from),
        addresses,
        scheme: "http".into(),
        port: 8200,
        keys_secret: "vault-unseal-keys".into(),
    }
}

fn keys_secret() -> Value {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vault-unseal-keys", "namespace": "vault"},
        "data": {"key1": b64("share-1"), "key2": b64("share-2"), "key3": b64("share-3")}})
}

#[tokio::test]
async fn alert_mode_reports_and_never_reads_the_keys() {
    let (address, vault) = start(sealed(3)).await;
    let server = FakeApiServer::new();
    server.put(&Collection::core("vault", "secrets"), keys_secret());
    let before = server.requests.load(std::sync::atomic::Ordering::Relaxed);
    let reports = vault::check_all(
        &client(),
        &server.client(),
        &targets(vec![address], None),
        false,
    )
    .await
    .unwrap();
    assert_eq!(reports[0].state, "sealed");
    assert_eq!(
        server.requests.load(std::sync::atomic::Ordering::Relaxed),
        before,
        "the key Secret is not read"
    );
    assert_eq!(vault.lock().unwrap().unseal_requests, 0);
}

#[tokio::test]
async fn unseal_mode_unseals_every_sealed_server_with_the_secret() {
    let (first, a) = start(sealed(3)).await;
    let mut already = sealed(3);
    already.sealed = false;
    let (second, b) = start(already).await;
    let server = FakeApiServer::new();
    server.put(&Collection::core("vault", "secrets"), keys_secret());
    let reports = vault::check_all(
        &client(),
        &server.client(),
        &targets(vec![first, second], None),
        true,
    )
    .await
    .unwrap();
    let states: Vec<&str> = reports.iter().map(|r| r.state.as_str()).collect();
    assert_eq!(states, ["unsealed-now", "unsealed"]);
    assert!(!a.lock().unwrap().sealed);
    assert_eq!(b.lock().unwrap().unseal_requests, 0);
    let text = serde_json::to_string(&reports).unwrap();
    assert!(!text.contains("share-"), "no key in any report: {text}");
}

#[tokio::test]
async fn every_pod_of_the_statefulset_is_a_target() {
    let server = FakeApiServer::new();
    server.put(&Collection::apps("vault", "statefulsets"), json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "vault", "namespace": "vault"},
        "spec": {"serviceName": "vault-internal", "selector": {"matchLabels": {"app.kubernetes.io/name": "vault"}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/name": "vault"}}, "spec": {"containers": []}}}}));
    for i in 0..3 {
        server.put(&Collection::core("vault", "pods"), json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("vault-{i}"), "namespace": "vault", "labels": {"app.kubernetes.io/name": "vault"}}}));
    }
    server.put(&Collection::core("vault", "pods"), json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "vault-agent-injector-1", "namespace": "vault", "labels": {"app.kubernetes.io/name": "vault-agent-injector"}}}));
    let addresses = vault::discover(&server.client(), &targets(vec![], Some("vault")))
        .await
        .unwrap();
    assert_eq!(
        addresses,
        [
            "http://vault-0.vault-internal.vault.svc:8200",
            "http://vault-1.vault-internal.vault.svc:8200",
            "http://vault-2.vault-internal.vault.svc:8200",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_keeps_vault_unsealed_and_says_so_with_an_event() {
    let (address, vault) = start(sealed(3)).await;
    let server = FakeApiServer::new();
    server.put(&Collection::core("vault", "secrets"), keys_secret());
    server.put(&Collection::apps("vault", "statefulsets"), json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "vault", "namespace": "vault"},
        "spec": {"serviceName": "vault-internal", "selector": {"matchLabels": {"app.kubernetes.io/name": "vault"}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/name": "vault"}}, "spec": {"containers": []}}}}));
    let metrics = Arc::new(selfheal::metrics::Metrics::new());
    let (leadership, campaign) = lead(&server, &metrics);
    let keeper = tokio::spawn(vault::keep_unsealed(
        client(),
        server.client(),
        targets(vec![address.clone()], Some("vault")),
        actions(true, false),
        leadership,
        metrics.clone(),
        Duration::from_millis(50),
    ));
    support::eventually("Vault is unsealed", || !vault.lock().unwrap().sealed).await;
    let events = Collection::new("apis/events.k8s.io/v1", "vault", "events");
    support::eventually("an Event on the StatefulSet", || {
        server
            .list(&events)
            .iter()
            .any(|e| e["reason"] == "VaultAutoUnsealed" && e["regarding"]["name"] == "vault")
    })
    .await;
    support::eventually("the metric says unsealed", || {
        metrics
            .encode()
            .contains(&format!("selfheal_vault_sealed{{address=\"{address}\"}} 0"))
    })
    .await;
    let text = serde_json::to_string(&server.list(&events)).unwrap();
    assert!(!text.contains("share-"), "no key in any Event");
    keeper.abort();
    campaign.abort();
}

/// This test process leads (a Lease of its own on `server`).
fn lead(
    server: &FakeApiServer,
    metrics: &Arc<selfheal::metrics::Metrics>,
) -> (
    selfheal::cluster::leader::Leadership,
    tokio::task::JoinHandle<()>,
) {
    let leadership = selfheal::cluster::leader::Leadership::default();
    let lease = selfheal::cluster::leader::LeaseConfig {
        namespace: "selfheal".into(),
        name: "selfheal-watcher".into(),
        identity: "only".into(),
        lease_duration: Duration::from_secs(5),
        renew_every: Duration::from_millis(50),
    };
    let campaign = tokio::spawn(selfheal::cluster::leader::campaign(
        server.client(),
        lease,
        leadership.clone(),
        metrics.clone(),
    ));
    (leadership, campaign)
}

fn vault_statefulset() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "vault", "namespace": "vault"},
        "spec": {"serviceName": "vault-internal", "selector": {"matchLabels": {"app.kubernetes.io/name": "vault"}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/name": "vault"}}, "spec": {"containers": []}}}})
}

fn actions(unseal: bool, dry_run: bool) -> vault::VaultActions {
    vault::VaultActions {
        unseal,
        dry_run,
        targeting: Default::default(),
    }
}

fn seconds_after(start: Instant, seconds: u64) -> Instant {
    start + Duration::from_secs(seconds)
}

/// One poll of the watcher at `now`, remembering across polls in `partials`.
async fn poll(
    server: &FakeApiServer,
    address: &str,
    partials: &mut PartialUnseals,
    now: Instant,
) -> vault::VaultReport {
    let mut reports = vault::check_all_with(
        &client(),
        &server.client(),
        &targets(vec![address.to_string()], None),
        &actions(true, false),
        None,
        partials,
        now,
    )
    .await
    .unwrap();
    assert_eq!(reports.len(), 1);
    reports.remove(0)
}

#[tokio::test]
async fn an_operators_unseal_that_moved_recently_is_never_reset_and_gets_no_key() {
    let (address, vault) = start(sealed(3)).await;
    let server = FakeApiServer::new();
    server.put(&Collection::core("vault", "secrets"), keys_secret());
    let before = server.requests.load(std::sync::atomic::Ordering::Relaxed);
    let mut partials = PartialUnseals::new(OPERATOR_HOLD_OFF);
    let start = Instant::now();

    vault.lock().unwrap().submit("share-4");
    // The case: progress 1 of 3, and selfheal's next poll 24 s later.
    for at in [0, 24] {
        let report = poll(&server, &address, &mut partials, seconds_after(start, at)).await;
        assert_eq!(report.state, "operator-unsealing", "at {at}s: {report:?}");
        assert!(report.detail.contains("1/3 shares"), "{}", report.detail);
    }
    // The second share comes after four minutes; the hold-off counts from it, not from the first.
    vault.lock().unwrap().submit("share-5");
    for at in [250, 400, 549] {
        let report = poll(&server, &address, &mut partials, seconds_after(start, at)).await;
        assert_eq!(report.state, "operator-unsealing", "at {at}s: {report:?}");
    }
    {
        let mut vault = vault.lock().unwrap();
        assert_eq!(
            vault.unseal_requests, 0,
            "no reset and no share from selfheal"
        );
        assert_eq!(
            vault.submitted,
            ["share-4", "share-5"],
            "the operator's shares are intact"
        );
        assert!(vault.submit("share-1"));
        assert!(!vault.sealed, "the operator's own third share unseals");
    }
    assert_eq!(
        server.requests.load(std::sync::atomic::Ordering::Relaxed),
        before,
        "the key Secret is not even read while an operator is at work"
    );
    let report = poll(&server, &address, &mut partials, seconds_after(start, 560)).await;
    assert_eq!(report.state, "unsealed");
}

#[tokio::test]
async fn a_partial_unseal_unchanged_beyond_the_hold_off_is_reset_and_unsealed() {
    let mut half = sealed(3);
    half.submit("share-4");
    let (address, vault) = start(half).await;
    let server = FakeApiServer::new();
    server.put(&Collection::core("vault", "secrets"), keys_secret());
    let mut partials = PartialUnseals::new(OPERATOR_HOLD_OFF);
    let start = Instant::now();
    let first = poll(&server, &address, &mut partials, start).await;
    assert_eq!(first.state, "operator-unsealing");
    assert_eq!(vault.lock().unwrap().unseal_requests, 0);

    let hold_off = OPERATOR_HOLD_OFF.as_secs();
    let report = poll(
        &server,
        &address,
        &mut partials,
        seconds_after(start, hold_off),
    )
    .await;
    assert_eq!(report.state, "unsealed-now", "{report:?}");
    assert_eq!(
        report.detail,
        format!(
            "unsealed with 3 shares after resetting an unseal left at 1/3 shares for {hold_off}s"
        )
    );
    let vault = vault.lock().unwrap();
    assert!(!vault.sealed);
    assert_eq!(vault.unseal_requests, 4, "one reset, three shares");
}

#[tokio::test]
async fn the_one_shot_check_leaves_any_partial_unseal_alone() {
    let mut half = sealed(3);
    half.submit("share-4");
    let (address, vault) = start(half).await;
    let server = FakeApiServer::new();
    server.put(&Collection::core("vault", "secrets"), keys_secret());
    for _ in 0..2 {
        let reports = vault::check_all(
            &client(),
            &server.client(),
            &targets(vec![address.clone()], None),
            true,
        )
        .await
        .unwrap();
        assert_eq!(reports[0].state, "operator-unsealing");
        assert!(
            reports[0].detail.contains("vault operator unseal -reset"),
            "says how to clear it: {}",
            reports[0].detail
        );
    }
    assert_eq!(vault.lock().unwrap().unseal_requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_says_an_operator_is_at_work_and_sends_nothing() {
    let mut half = sealed(3);
    half.submit("share-4");
    let (address, vault) = start(half).await;
    let server = FakeApiServer::new();
    server.put(&Collection::core("vault", "secrets"), keys_secret());
    server.put(
        &Collection::apps("vault", "statefulsets"),
        vault_statefulset(),
    );
    let metrics = Arc::new(selfheal::metrics::Metrics::new());
    let (leadership, campaign) = lead(&server, &metrics);
    let keeper = tokio::spawn(vault::keep_unsealed(
        client(),
        server.client(),
        targets(vec![address.clone()], Some("vault")),
        actions(true, false),
        leadership,
        metrics.clone(),
        Duration::from_millis(50),
    ));
    let events = Collection::new("apis/events.k8s.io/v1", "vault", "events");
    support::eventually("an Event saying the unseal is left to the operator", || {
        server.list(&events).iter().any(|e| {
            e["reason"] == "VaultUnsealInProgress"
                && e["regarding"]["name"] == "vault"
                && e["note"].as_str().is_some_and(|n| n.contains("1/3 shares"))
        })
    })
    .await;
    // The Event is published after the poll decided: by now that poll has sent nothing.
    assert_eq!(vault.lock().unwrap().unseal_requests, 0);
    assert!(
        metrics
            .encode()
            .contains(&format!("selfheal_vault_sealed{{address=\"{address}\"}} 1")),
        "still sealed"
    );
    keeper.abort();
    campaign.abort();
    assert_eq!(vault.lock().unwrap().unseal_requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metric_series_of_a_server_no_longer_discovered_is_removed() {
    let server = FakeApiServer::new();
    server.put(
        &Collection::apps("vault", "statefulsets"),
        vault_statefulset(),
    );
    for i in 0..2 {
        server.put(&Collection::core("vault", "pods"), json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("vault-{i}"), "namespace": "vault", "labels": {"app.kubernetes.io/name": "vault"}}}));
    }
    let metrics = Arc::new(selfheal::metrics::Metrics::new());
    let (leadership, campaign) = lead(&server, &metrics);
    let keeper = tokio::spawn(vault::keep_unsealed(
        client(),
        server.client(),
        targets(vec![], Some("vault")),
        actions(false, false),
        leadership,
        metrics.clone(),
        Duration::from_millis(50),
    ));
    let series = |pod: &str| {
        format!("selfheal_vault_sealed{{address=\"http://{pod}.vault-internal.vault.svc:8200\"}}")
    };
    support::eventually("a series per server", || {
        let text = metrics.encode();
        text.contains(&series("vault-0")) && text.contains(&series("vault-1"))
    })
    .await;
    server.remove(&Collection::core("vault", "pods"), "vault-1");
    support::eventually("the series of the deleted pod's server is gone", || {
        !metrics.encode().contains(&series("vault-1"))
    })
    .await;
    assert!(
        metrics.encode().contains(&series("vault-0")),
        "the other server's series stays"
    );
    keeper.abort();
    campaign.abort();
}

#[tokio::test]
async fn a_walk_sends_nothing_once_this_replica_no_longer_leads() {
    let (address, vault) = start(sealed(3)).await;
    let allowed = std::sync::atomic::AtomicU32::new(0);
    // Leads for the first write only.
    let leading = || allowed.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 1;
    let outcome = client()
        .unseal_while(
            &address,
            &keys(&["share-1", "share-2", "share-3"]),
            None,
            &leading,
        )
        .await;
    assert!(
        matches!(outcome, Err(VaultError::NoLongerLeading { sent: 1, .. })),
        "{outcome:?}"
    );
    assert_eq!(
        vault.lock().unwrap().unseal_requests,
        1,
        "one share, then none"
    );
    assert!(vault.lock().unwrap().sealed);

    let mut half = sealed(2);
    half.submit("someone-elses-share");
    let (address, vault) = start(half).await;
    let abandoned = UnsealAttempt {
        progress: 1,
        nonce: "attempt-1".into(),
    };
    let outcome = client()
        .unseal_while(
            &address,
            &keys(&["share-4", "share-5"]),
            Some(&abandoned),
            &|| false,
        )
        .await;
    assert!(
        matches!(outcome, Err(VaultError::NoLongerLeading { sent: 0, .. })),
        "{outcome:?}"
    );
    assert_eq!(
        vault.lock().unwrap().unseal_requests,
        0,
        "not even the reset"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_sends_no_share_and_publishes_no_event() {
    let (sealed_address, sealed_vault) = start(sealed(3)).await;
    let mut open = sealed(3);
    open.sealed = false;
    let (open_address, _) = start(open).await;
    let server = FakeApiServer::new();
    server.put(&Collection::core("vault", "secrets"), keys_secret());
    server.put(
        &Collection::apps("vault", "statefulsets"),
        vault_statefulset(),
    );
    let metrics = Arc::new(selfheal::metrics::Metrics::new());
    let (leadership, campaign) = lead(&server, &metrics);
    let keeper = tokio::spawn(vault::keep_unsealed(
        client(),
        server.client(),
        targets(
            vec![sealed_address.clone(), open_address.clone()],
            Some("vault"),
        ),
        actions(true, true),
        leadership,
        metrics.clone(),
        Duration::from_millis(50),
    ));
    // The servers are handled in order: the second one's metric is set after the first one's
    // Event would have been published.
    support::eventually("the second server was checked", || {
        metrics.encode().contains(&format!(
            "selfheal_vault_sealed{{address=\"{open_address}\"}} 0"
        ))
    })
    .await;
    assert!(
        metrics.encode().contains(&format!(
            "selfheal_vault_sealed{{address=\"{sealed_address}\"}} 1"
        )),
        "still sealed"
    );
    assert_eq!(
        sealed_vault.lock().unwrap().unseal_requests,
        0,
        "no share sent"
    );
    let events = Collection::new("apis/events.k8s.io/v1", "vault", "events");
    assert_eq!(server.list(&events), Vec::<Value>::new(), "no Event");
    keeper.abort();
    campaign.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_events_name_the_statefulsets_uid_and_each_failure_is_its_own_event() {
    let (first, _) = start(sealed(3)).await;
    let (second, _) = start(sealed(3)).await;
    let server = FakeApiServer::new();
    // No key Secret: both servers fail to unseal, each with its own note.
    server.put(
        &Collection::apps("vault", "statefulsets"),
        vault_statefulset(),
    );
    let uid = server
        .get(&Collection::apps("vault", "statefulsets"), "vault")
        .unwrap()["metadata"]["uid"]
        .clone();
    assert!(uid.is_string());
    let metrics = Arc::new(selfheal::metrics::Metrics::new());
    let (leadership, campaign) = lead(&server, &metrics);
    let keeper = tokio::spawn(vault::keep_unsealed(
        client(),
        server.client(),
        targets(vec![first.clone(), second.clone()], Some("vault")),
        actions(true, false),
        leadership,
        metrics.clone(),
        Duration::from_millis(50),
    ));
    let events = Collection::new("apis/events.k8s.io/v1", "vault", "events");
    let failed = || -> Vec<Value> {
        server
            .list(&events)
            .into_iter()
            .filter(|e| e["reason"] == "VaultUnsealFailed")
            .collect()
    };
    support::eventually("a VaultUnsealFailed Event per server", || {
        failed().len() == 2
    })
    .await;
    for (event, address) in failed().iter().zip([&first, &second]) {
        assert_eq!(event["regarding"]["uid"], uid, "{event}");
        assert!(
            event["note"]
                .as_str()
                .is_some_and(|n| n.starts_with(address.as_str())),
            "{event}"
        );
    }
    keeper.abort();
    campaign.abort();
}

/// The Vault passes the rails of every object an action changes: in a namespace labelled
/// `selfheal.io/ignore=true` (or a protected one) selfheal unseals nothing, reads no key, and
/// says why.
#[tokio::test]
async fn a_vault_in_an_ignored_or_protected_namespace_is_not_unsealed() {
    for (labels, protected) in [
        (json!({"selfheal.io/ignore": "true"}), vec![]),
        (json!({}), vec!["vault".to_string()]),
    ] {
        let (address, vault) = start(sealed(3)).await;
        let server = FakeApiServer::new();
        server.put(&Collection::core("vault", "secrets"), keys_secret());
        server.put(
            &Collection::core("", "namespaces"),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "vault", "labels": labels}}),
        );
        let mut partials = PartialUnseals::new(vault::OPERATOR_HOLD_OFF);
        let actions = vault::VaultActions {
            targeting: selfheal::core::targeting::Targeting::new(protected, Vec::new()),
            ..actions(true, false)
        };
        let reports = vault::check_all_with(
            &client(),
            &server.client(),
            &targets(vec![address], None),
            &actions,
            None,
            &mut partials,
            Instant::now(),
        )
        .await
        .unwrap();
        assert_eq!(reports[0].state, "sealed", "{reports:?}");
        assert!(
            reports[0].detail.contains("not unsealing") && reports[0].detail.contains("vault"),
            "{}",
            reports[0].detail
        );
        assert_eq!(vault.lock().unwrap().unseal_requests, 0, "no share sent");
        assert_eq!(reports[0].result, Some("refused"));
    }
}
