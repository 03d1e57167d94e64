//! The self-managed webhook certificate against the test API server: replicas agree on one
//! certificate, the caBundle is written, rotation keeps the old CA trusted, and a rotation by
//! another replica reaches the server without a restart.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::http::Method;
use base64::Engine;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use support::eventually;
use support::fake_apiserver::{Collection, FakeApiServer};

use selfheal::certs::selfcert::{self, Material, SelfCertConfig};
use selfheal::webhook::tls::ReloadingCertResolver;

fn config() -> SelfCertConfig {
    SelfCertConfig {
        namespace: "selfheal".into(),
        secret_name: "selfheal-webhook-tls".into(),
        webhook_config: "selfheal".into(),
        dns_names: selfheal::certs::generate::service_dns_names("selfheal", "selfheal"),
        rotate_before_days: 60,
    }
}

fn webhook_configs() -> Collection {
    Collection::new(
        "apis/admissionregistration.k8s.io/v1",
        "",
        "mutatingwebhookconfigurations",
    )
}

fn secrets() -> Collection {
    Collection::core("selfheal", "secrets")
}

fn install_webhook_config(server: &FakeApiServer) {
    server.put(&webhook_configs(), json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "selfheal"},
        "webhooks": [{"name": "fixes.selfheal.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {"service": {"name": "selfheal", "namespace": "selfheal", "path": "/mutate", "port": 443}, "caBundle": ""}}]}));
}

fn ca_bundle(server: &FakeApiServer) -> String {
    let config: Value = server.get(&webhook_configs(), "selfheal").unwrap();
    let encoded = config["webhooks"][0]["clientConfig"]["caBundle"]
        .as_str()
        .unwrap_or_default();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap(),
    )
    .unwrap()
}

fn stored(server: &FakeApiServer) -> Material {
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(server.get(&secrets(), "selfheal-webhook-tls").unwrap()).unwrap();
    Material::from_secret(&secret).unwrap()
}

#[tokio::test]
async fn replicas_agree_on_one_certificate_and_the_ca_bundle_is_written() {
    let server = FakeApiServer::new();
    install_webhook_config(&server);
    let first = selfcert::ensure(&server.client(), &config()).await.unwrap();
    let second = selfcert::ensure(&server.client(), &config()).await.unwrap();
    assert_eq!(first, second, "the second replica adopts the Secret");
    assert_eq!(stored(&server), first);
    assert_eq!(ca_bundle(&server), first.ca_cert);
    let version =
        server.get(&webhook_configs(), "selfheal").unwrap()["metadata"]["resourceVersion"].clone();
    selfcert::ensure(&server.client(), &config()).await.unwrap();
    assert_eq!(
        server.get(&webhook_configs(), "selfheal").unwrap()["metadata"]["resourceVersion"],
        version,
        "an unchanged bundle is not rewritten"
    );
}

/// Starts `ensure` for one replica as its own task.
fn start_replica(client: kube::Client) -> tokio::task::JoinHandle<anyhow::Result<Material>> {
    tokio::spawn(async move { selfcert::ensure(&client, &config()).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_starts_end_with_one_certificate() {
    // The webhook configuration comes later: this is about the Secret race alone (the caBundle
    // race is the next test).
    let server = FakeApiServer::new();
    // Both replicas read "no Secret" and create one; the creates are held until both are
    // there, so one of them must lose.
    let creates = server.hold_requests(Some(Method::POST), "/secrets");
    let (a, b) = (
        start_replica(server.client()),
        start_replica(server.client()),
    );
    eventually("both replicas create the Secret", || creates.held() == 2).await;
    let conflicts = server.conflicts.load(Ordering::SeqCst);
    drop(creates);
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    assert!(
        server.conflicts.load(Ordering::SeqCst) > conflicts,
        "the second create was refused with a conflict"
    );
    let winner = stored(&server);
    assert!(a == winner, "replica a serves the stored certificate");
    assert!(b == winner, "replica b serves the stored certificate");
    install_webhook_config(&server);
    let again = selfcert::ensure(&server.client(), &config()).await.unwrap();
    assert_eq!(again, winner);
    assert_eq!(ca_bundle(&server), winner.bundle);
}

/// Two replicas that find the Secret and write the caBundle at the same moment: both read the
/// webhook configuration at one resourceVersion, so one JSON patch fails its resourceVersion
/// test (422). That replica must read again and find the bundle written, not fail (before the
/// retry, its `ensure` failed and `serve` exited at startup).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ca_bundle_writes_both_succeed() {
    let server = FakeApiServer::new();
    install_webhook_config(&server);
    let first = selfcert::ensure(&server.client(), &config()).await.unwrap();
    // The bundle is written again by both once it was cleared.
    install_webhook_config(&server);
    // Both read the configuration before either patch lands: the patches are held until both
    // are there.
    let patches = server.hold_requests(
        Some(Method::PATCH),
        "/mutatingwebhookconfigurations/selfheal",
    );
    let (a, b) = (
        start_replica(server.client()),
        start_replica(server.client()),
    );
    eventually("both replicas write the caBundle", || patches.held() == 2).await;
    drop(patches);
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(a.expect("replica a"), first);
    assert_eq!(b.expect("replica b"), first);
    assert_eq!(ca_bundle(&server), first.bundle);
}

#[tokio::test]
async fn rotation_before_expiry_keeps_the_old_ca_trusted() {
    let server = FakeApiServer::new();
    install_webhook_config(&server);
    let old = selfcert::ensure(&server.client(), &config()).await.unwrap();
    let rotating = SelfCertConfig {
        rotate_before_days: 400,
        ..config()
    };
    let new = selfcert::ensure(&server.client(), &rotating).await.unwrap();
    assert_ne!(new.cert, old.cert);
    assert_ne!(new.ca_cert, old.ca_cert);
    let bundle = ca_bundle(&server);
    assert!(
        bundle.contains(&new.ca_cert) && bundle.contains(&old.ca_cert),
        "both CAs trusted during the switch"
    );
    assert_eq!(stored(&server), new);
}

#[tokio::test]
async fn another_replicas_rotation_is_served_without_a_restart() {
    let server = FakeApiServer::new();
    install_webhook_config(&server);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let first = selfcert::ensure(&server.client(), &config()).await.unwrap();
    let resolver = Arc::new(
        ReloadingCertResolver::from_pem(first.cert.as_bytes(), first.key.as_bytes(), provider)
            .unwrap(),
    );
    let keeper = tokio::spawn(selfcert::keep_current(
        server.client(),
        config(),
        resolver.clone(),
        Duration::from_millis(50),
    ));

    // Another replica rotates.
    let rotated = selfcert::ensure(
        &server.client(),
        &SelfCertConfig {
            rotate_before_days: 400,
            ..config()
        },
    )
    .await
    .unwrap();
    let wanted = CertificateDer::from_pem_slice(rotated.cert.as_bytes()).unwrap();
    eventually("the resolver serves the rotated certificate", || {
        resolver.serving_certificate() == wanted
    })
    .await;
    keeper.abort();
}
