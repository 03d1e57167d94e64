//! The healing core end to end through the watcher: scheduling rules that only show over time
//! against the test API server (the pure rules are unit-tested in `heal::watcher::index`).

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use support::eventually;
use support::fake_apiserver::{Collection, FakeApiServer};

use selfheal::certs::generate as certs;
use selfheal::cluster::leader::{self, Leadership, LeaseConfig};
use selfheal::heal::execute::Executor;
use selfheal::heal::plan::Rails;
use selfheal::heal::ratelimit::RateLimiter;
use selfheal::heal::run::Scope;
use selfheal::heal::watcher::{self, WatcherConfig};
use selfheal::metrics::Metrics;
use selfheal::store::{ConfigMapStore, FixStore};

const NS: &str = "web";

struct Running {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

/// A watcher with the defaults `selfheal serve` uses (certificates checked, looked at again
/// 10 minutes after a handling), leading at once.
async fn start(server: &FakeApiServer) -> Running {
    let metrics = Arc::new(Metrics::new());
    let store = FixStore::ConfigMap(Arc::new(ConfigMapStore::new(
        server.client(),
        "selfheal",
        "fixes",
        metrics.clone(),
    )));
    let leadership = Leadership::default();
    let executor = Arc::new(Executor::new(
        server.client(),
        store.clone(),
        Arc::new(RateLimiter::new(
            Duration::from_secs(300),
            Duration::from_secs(3600),
        )),
        metrics.clone(),
        false,
    ));
    let scope = Scope {
        protected: vec!["kube-system".into(), "selfheal".into()],
        ..Scope::default()
    };
    let config = WatcherConfig::new(scope, Rails::default(), Default::default());
    let lease = LeaseConfig {
        namespace: "selfheal".into(),
        name: "selfheal-watcher".into(),
        identity: "only".into(),
        lease_duration: Duration::from_secs(15),
        renew_every: Duration::from_millis(200),
    };
    let tasks = vec![
        store.spawn_sync(),
        tokio::spawn(leader::campaign(
            server.client(),
            lease,
            leadership.clone(),
            metrics.clone(),
        )),
        tokio::spawn(watcher::run(
            server.client(),
            executor,
            store,
            config,
            leadership.clone(),
            metrics,
        )),
    ];
    eventually("leadership", || leadership.is_leader()).await;
    Running { tasks }
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn expired_secret(annotations: Value) -> Value {
    let start = time::OffsetDateTime::now_utc() - time::Duration::days(100);
    let expired = certs::generate_valid_between(
        &["shop.example.com".into()],
        start,
        time::Duration::days(30),
    )
    .unwrap();
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "shop-tls", "namespace": NS, "annotations": annotations},
        "data": {"tls.crt": b64(&expired.cert), "tls.key": b64(&expired.key)}})
}

fn events_with_reason(server: &FakeApiServer, reason: &str) -> usize {
    server
        .list(&Collection::new("apis/events.k8s.io/v1", NS, "events"))
        .iter()
        .filter(|e| e["reason"] == reason)
        .count()
}

/// The case seen on a real apiserver: a TLS Secret already reported as expired (nobody manages
/// it), then annotated `cert-manager.io/certificate-name`, had its renewal triggered 31 s later,
/// because the Secret kept the delay of its earlier handling. A change to an object already
/// handled is looked at at once.
#[tokio::test]
async fn a_handled_secret_that_gains_its_certificate_is_renewed_at_once() {
    let server = FakeApiServer::new();
    let secrets = Collection::core(NS, "secrets");
    server.put(&secrets, expired_secret(json!({})));
    let _watcher = start(&server).await;
    eventually("the unmanaged expired certificate is reported", || {
        events_with_reason(&server, "HealingStopped") == 1
    })
    .await;
    // The handling is over (its Event is its last step) well before this: the Secret is settled.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let certificates = Collection::new("apis/cert-manager.io/v1", NS, "certificates");
    server.put(
        &certificates,
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": "shop", "namespace": NS},
            "spec": {"secretName": "shop-tls"},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
    );
    let annotated = Instant::now();
    // The same Secret (its uid), annotated, as `kubectl annotate` leaves it.
    let mut secret = server.get(&secrets, "shop-tls").unwrap();
    secret["metadata"]["annotations"] = json!({"cert-manager.io/certificate-name": "shop"});
    server.put(&secrets, secret);
    let issuing = || {
        server.get(&certificates, "shop").is_some_and(|c| {
            c["status"]["conditions"]
                .as_array()
                .is_some_and(|all| all.iter().any(|c| c["type"] == "Issuing"))
        })
    };
    for _ in 0..150 {
        if issuing() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        issuing(),
        "no renewal {:?} after the Secret named its Certificate (it waited on the delay of its earlier handling)",
        annotated.elapsed()
    );
    assert_eq!(
        events_with_reason(&server, "CertificateRenewalTriggered"),
        1
    );
}
