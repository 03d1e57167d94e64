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

/// A sink for the JSON log lines of one test (the subscriber is this thread's only).
#[derive(Clone, Default)]
struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One handling can be followed in the JSON logs: its lines carry the object's namespace, kind,
/// name (`object`) and uid and the problem, in the `handling` span.
#[tokio::test]
async fn every_line_of_a_handling_names_its_object_and_problem() {
    let lines = Lines::default();
    let sink = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || sink.clone())
        .finish();
    let _logs = tracing::subscriber::set_default(subscriber);
    // Callsites another test hit first, with no subscriber of its own, are cached as not
    // interesting to anyone; ask every callsite again now that this thread has one.
    tracing::callsite::rebuild_interest_cache();

    let server = FakeApiServer::new();
    server.put(&Collection::apps("shop", "deployments"), json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "web:1", "resources": {"limits": {"memory": "512Mi"}}}]}}}}));
    let pod = server.put(&Collection::core("shop", "pods"), json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-5d4c3b2a1-a1b2c", "namespace": "shop",
            "labels": {"app": "web", "pod-template-hash": "5d4c3b2a1"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d4c3b2a1", "uid": "rs", "controller": true}]},
        "spec": {"containers": [{"name": "app", "image": "web:1", "resources": {"limits": {"memory": "512Mi"}}}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": "app", "ready": true, "restartCount": 2,
            "image": "web:1", "imageID": "", "state": {"running": {"startedAt": "2026-11-28T00:00:00Z"}},
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}}));
    let metrics = Arc::new(Metrics::new());
    let store = FixStore::ConfigMap(Arc::new(ConfigMapStore::new(
        server.client(),
        "selfheal",
        "fixes",
        metrics.clone(),
    )));
    let executor = Executor::new(
        server.client(),
        store,
        Arc::new(RateLimiter::new(
            Duration::from_secs(300),
            Duration::from_secs(3600),
        )),
        metrics,
        false,
    );
    let handled = selfheal::heal::run::run_once(
        &server.client(),
        &executor,
        &Rails::default(),
        Default::default(),
        &Scope::default(),
        jiff::Timestamp::now(),
    )
    .await
    .unwrap();
    assert_eq!(handled[0].outcome.result(), "done", "{handled:?}");

    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let outcome_line: Value = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["fields"]["action"] == "RaiseMemory")
        .unwrap_or_else(|| panic!("the outcome's line in:\n{text}"));
    let span = &outcome_line["span"];
    assert_eq!(span["name"], "handling", "{outcome_line}");
    assert_eq!(
        (
            &span["namespace"],
            &span["kind"],
            &span["object"],
            &span["uid"],
            &span["problem"]
        ),
        (
            &json!("shop"),
            &json!("Pod"),
            &pod["metadata"]["name"],
            &pod["metadata"]["uid"],
            &json!("OOMKilled")
        ),
        "{outcome_line}"
    );
}

/// With the workloads in the watcher's stores (`serve` keeps them), an OOM kill costs four
/// requests: the fix store's read and write, the Deployment's patch, the Event. Nothing is read
/// that a watch keeps: no namespace, no Deployment, no events list (the status names the cause),
/// no StorageClass list.
#[tokio::test]
async fn an_oom_kill_costs_four_requests_when_the_workloads_are_watched() {
    let server = FakeApiServer::new();
    server.put(&Collection::apps("shop", "deployments"), json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "web:1", "resources": {"limits": {"memory": "512Mi"}}}]}}}}));
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
    let config = WatcherConfig {
        watch_workloads: true,
        ..WatcherConfig::new(Scope::default(), Rails::default(), Default::default())
    };
    let lease = LeaseConfig {
        namespace: "selfheal".into(),
        name: "selfheal-watcher".into(),
        identity: "only".into(),
        lease_duration: Duration::from_secs(15),
        renew_every: Duration::from_secs(2),
    };
    let _running = Running {
        tasks: vec![
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
        ],
    };
    eventually("leadership", || leadership.is_leader()).await;
    let listed = |path: &str| {
        server
            .request_log()
            .iter()
            .any(|r| r.path == path && !r.query.contains_key("watch"))
    };
    eventually("the Deployments and namespaces are listed", || {
        listed("/apis/apps/v1/deployments") && listed("/api/v1/namespaces")
    })
    .await;
    server.clear_request_log();
    server.put(&Collection::core("shop", "pods"), json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-5d4c3b2a1-a1b2c", "namespace": "shop",
            "labels": {"app": "web", "pod-template-hash": "5d4c3b2a1"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d4c3b2a1", "uid": "rs", "controller": true}]},
        "spec": {"containers": [{"name": "app", "image": "web:1", "resources": {"limits": {"memory": "512Mi"}}}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": "app", "ready": true, "restartCount": 1,
            "image": "web:1", "imageID": "", "state": {"running": {"startedAt": "2026-11-28T00:00:00Z"}},
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}}));
    eventually("the fix, the rollout and the Event", || {
        let rolled = server
            .get(&Collection::apps("shop", "deployments"), "web")
            .is_some_and(|d| {
                d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
                    == "768Mi"
            });
        rolled && events_in(&server, "shop", "MemoryLimitRaised") == 1
    })
    .await;
    let handling: Vec<String> = server
        .request_log()
        .iter()
        .filter(|r| !r.path.contains("/leases/") && !r.query.contains_key("watch"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        handling,
        [
            "GET /api/v1/namespaces/selfheal/configmaps/fixes",
            "POST /api/v1/namespaces/selfheal/configmaps",
            "PATCH /apis/apps/v1/namespaces/shop/deployments/web",
            "POST /apis/events.k8s.io/v1/namespaces/shop/events",
        ],
        "{handling:#?}"
    );
}

fn events_in(server: &FakeApiServer, namespace: &str, reason: &str) -> usize {
    server
        .list(&Collection::new(
            "apis/events.k8s.io/v1",
            namespace,
            "events",
        ))
        .iter()
        .filter(|e| e["reason"] == reason)
        .count()
}
