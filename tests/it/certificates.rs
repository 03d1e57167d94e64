//! Certificates in TLS Secrets: detection of every kind of bad certificate (rcgen makes them),
//! and renewal through cert-manager's Certificate status, checked against the test API server.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use support::fake_apiserver::{Collection, FakeApiServer};
use time::OffsetDateTime;

use selfheal::certs::generate::{self as certs, GeneratedCerts};
use selfheal::heal::execute::Executor;
use selfheal::heal::plan::Rails;
use selfheal::heal::ratelimit::RateLimiter;
use selfheal::heal::run::{self as heal, Handled, Scope};
use selfheal::metrics::Metrics;
use selfheal::store::{ConfigMapStore, FixStore};

const NS: &str = "web";

fn certificate(valid_from_days: i64, valid_days: i64) -> GeneratedCerts {
    let start = OffsetDateTime::now_utc() + time::Duration::days(valid_from_days);
    certs::generate_valid_between(
        &["shop.example.com".into()],
        start,
        time::Duration::days(valid_days),
    )
    .unwrap()
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn tls_secret(name: &str, cert: &str, key: &str, managed_by: Option<&str>) -> Value {
    let mut annotations = json!({});
    if let Some(certificate) = managed_by {
        annotations["cert-manager.io/certificate-name"] = json!(certificate);
        annotations["cert-manager.io/issuer-name"] = json!("letsencrypt");
    }
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": NS, "annotations": annotations},
        "data": {"tls.crt": b64(cert), "tls.key": b64(key)}})
}

fn cert_manager_certificate(name: &str) -> Value {
    json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": name, "namespace": NS, "generation": 4},
        "spec": {"secretName": format!("{name}-tls"), "dnsNames": ["shop.example.com"], "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"}},
        "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Expired", "message": "Certificate expired", "lastTransitionTime": "2026-11-01T00:00:00Z"}]}})
}

fn certificates() -> Collection {
    Collection::new("apis/cert-manager.io/v1", NS, "certificates")
}

async fn heal_once(server: &FakeApiServer, limiter: &Arc<RateLimiter>) -> Vec<Handled> {
    let client = server.client();
    let metrics = Arc::new(Metrics::new());
    let store = FixStore::ConfigMap(Arc::new(ConfigMapStore::new(
        client.clone(),
        "selfheal",
        "fixes",
        metrics.clone(),
    )));
    let executor = Executor::new(client.clone(), store, limiter.clone(), metrics, false);
    let scope = Scope {
        protected: vec!["kube-system".into(), "selfheal".into()],
        ..Scope::default()
    };
    heal::run_once(
        &client,
        &executor,
        &Rails::default(),
        Default::default(),
        &scope,
        jiff::Timestamp::now(),
    )
    .await
    .unwrap()
}

fn problem_of(handled: &[Handled], secret: &str) -> String {
    handled
        .iter()
        .find(|h| h.finding.problem.object_name == secret)
        .map(|h| h.finding.problem.kind.name().to_string())
        .unwrap_or_else(|| "healthy".into())
}

#[tokio::test]
async fn every_kind_of_bad_certificate_is_found_and_unmanaged_ones_are_reported() {
    let server = FakeApiServer::new();
    let secrets = Collection::core(NS, "secrets");
    let good = certificate(-1, 365);
    let other = certificate(-1, 365);
    let expired = certificate(-100, 30);
    let future = certificate(10, 365);
    let soon = certificate(-360, 370);
    server.put(&secrets, tls_secret("good", &good.cert, &good.key, None));
    server.put(
        &secrets,
        tls_secret("expired", &expired.cert, &expired.key, None),
    );
    server.put(
        &secrets,
        tls_secret("future", &future.cert, &future.key, None),
    );
    server.put(&secrets, tls_secret("soon", &soon.cert, &soon.key, None));
    server.put(
        &secrets,
        tls_secret("garbage", "not a certificate at all", &good.key, None),
    );
    server.put(
        &secrets,
        tls_secret("mismatch", &good.cert, &other.key, None),
    );
    let limiter = Arc::new(RateLimiter::new(
        Duration::from_secs(300),
        Duration::from_secs(3600),
    ));
    let handled = heal_once(&server, &limiter).await;

    assert_eq!(problem_of(&handled, "good"), "healthy");
    assert_eq!(problem_of(&handled, "expired"), "CertificateExpired");
    assert_eq!(problem_of(&handled, "future"), "CertificateNotYetValid");
    assert_eq!(problem_of(&handled, "soon"), "CertificateExpiringSoon");
    assert_eq!(problem_of(&handled, "garbage"), "CertificateUnparsable");
    assert_eq!(problem_of(&handled, "mismatch"), "CertificateKeyMismatch");
    let result = |secret: &str| {
        let h = handled
            .iter()
            .find(|h| h.finding.problem.object_name == secret)
            .unwrap();
        (h.action(), h.outcome.result())
    };
    assert_eq!(result("soon"), ("Report", "reported"));
    assert_eq!(result("expired"), ("Alert", "alerted"));
    let events = server.list(&Collection::new("apis/events.k8s.io/v1", NS, "events"));
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "HealingStopped" && e["regarding"]["name"] == "expired")
    );
}

#[tokio::test]
async fn cert_manager_renewal_is_triggered_through_the_status_subresource() {
    let server = FakeApiServer::new();
    let expired = certificate(-100, 30);
    server.put(
        &Collection::core(NS, "secrets"),
        tls_secret("shop-tls", &expired.cert, &expired.key, Some("shop")),
    );
    server.put(&certificates(), cert_manager_certificate("shop"));
    let spec_before = server.get(&certificates(), "shop").unwrap()["spec"].clone();
    let limiter = Arc::new(RateLimiter::new(
        Duration::from_secs(300),
        Duration::from_secs(3600),
    ));

    let handled = heal_once(&server, &limiter).await;
    assert_eq!(
        (handled[0].action(), handled[0].outcome.result()),
        ("RenewCertificate", "done"),
        "{:?}",
        handled[0].outcome
    );
    let certificate = server.get(&certificates(), "shop").unwrap();
    let conditions = certificate["status"]["conditions"].as_array().unwrap();
    let issuing = conditions
        .iter()
        .find(|c| c["type"] == "Issuing")
        .expect("Issuing condition");
    assert_eq!(issuing["status"], "True");
    assert_eq!(issuing["reason"], "ManuallyTriggered");
    assert_eq!(
        issuing["message"],
        "Certificate re-issuance manually triggered"
    );
    assert_eq!(issuing["observedGeneration"], 4);
    assert!(
        conditions.iter().any(|c| c["type"] == "Ready"),
        "other conditions are kept"
    );
    assert_eq!(
        certificate["spec"], spec_before,
        "only the status is written"
    );
    // The Event is about the Certificate (its uid, so `kubectl describe certificate` shows it),
    // with the Secret that showed the problem as `related`.
    let events = server.list(&Collection::new("apis/events.k8s.io/v1", NS, "events"));
    let renewal = events
        .iter()
        .find(|e| e["reason"] == "CertificateRenewalTriggered")
        .expect("a renewal Event");
    assert_eq!(renewal["regarding"]["kind"], "Certificate");
    assert_eq!(renewal["regarding"]["uid"], certificate["metadata"]["uid"]);
    let secret = server
        .get(&Collection::core(NS, "secrets"), "shop-tls")
        .unwrap();
    assert_eq!(renewal["related"]["kind"], "Secret");
    assert_eq!(renewal["related"]["uid"], secret["metadata"]["uid"]);

    // Within the backoff window nothing more is done.
    let again = heal_once(&server, &limiter).await;
    assert_eq!(again[0].outcome.result(), "rate_limited");
}

#[tokio::test]
async fn a_renewal_that_stays_stuck_is_reported_after_the_attempt_cap() {
    let server = FakeApiServer::new();
    let expired = certificate(-100, 30);
    server.put(
        &Collection::core(NS, "secrets"),
        tls_secret("shop-tls", &expired.cert, &expired.key, Some("shop")),
    );
    server.put(&certificates(), cert_manager_certificate("shop"));
    let no_backoff = Arc::new(RateLimiter::new(Duration::ZERO, Duration::ZERO));
    let mut results = Vec::new();
    for _ in 0..4 {
        let handled = heal_once(&server, &no_backoff).await;
        results.push((handled[0].action(), handled[0].outcome.result()));
        // cert-manager tried and failed: Issuing goes back to False, the Secret stays expired.
        let mut certificate = server.get(&certificates(), "shop").unwrap();
        for condition in certificate["status"]["conditions"].as_array_mut().unwrap() {
            if condition["type"] == "Issuing" {
                condition["status"] = json!("False");
            }
        }
        server.put(&certificates(), certificate);
    }
    assert_eq!(
        results,
        [
            ("RenewCertificate", "done"),
            ("RenewCertificate", "done"),
            ("RenewCertificate", "done"),
            ("Alert", "alerted")
        ]
    );
}

#[tokio::test]
async fn an_issuing_certificate_and_a_missing_certificate_are_left_alone() {
    let server = FakeApiServer::new();
    let expired = certificate(-100, 30);
    server.put(
        &Collection::core(NS, "secrets"),
        tls_secret("shop-tls", &expired.cert, &expired.key, Some("shop")),
    );
    server.put(
        &Collection::core(NS, "secrets"),
        tls_secret("gone-tls", &expired.cert, &expired.key, Some("gone")),
    );
    let mut issuing = cert_manager_certificate("shop");
    issuing["status"]["conditions"] = json!([{"type": "Issuing", "status": "True", "reason": "Expired", "lastTransitionTime": "2026-11-27T00:00:00Z"}]);
    server.put(&certificates(), issuing);
    let version =
        server.get(&certificates(), "shop").unwrap()["metadata"]["resourceVersion"].clone();
    let limiter = Arc::new(RateLimiter::new(
        Duration::from_secs(300),
        Duration::from_secs(3600),
    ));
    let handled = heal_once(&server, &limiter).await;
    let outcome = |secret: &str| {
        &handled
            .iter()
            .find(|h| h.finding.problem.object_name == secret)
            .unwrap()
            .outcome
    };
    assert_eq!(outcome("shop-tls").result(), "unchanged");
    assert_eq!(
        server.get(&certificates(), "shop").unwrap()["metadata"]["resourceVersion"],
        version
    );
    assert_eq!(outcome("gone-tls").result(), "reported");
    assert!(outcome("gone-tls").message().contains("does not exist"));
}
