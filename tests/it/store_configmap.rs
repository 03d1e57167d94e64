//! The ConfigMap store against the in-process test API server: the snapshot follows edits,
//! concurrent writers lose nothing, and a malformed ConfigMap keeps the last good fixes.

use crate::support;

use support::eventually;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};
use support::fake_apiserver::{Collection, FakeApiServer};

use selfheal::core::fix::{Fix, FixRecord, MergeOutcome};
use selfheal::metrics::Metrics;
use selfheal::store::{ConfigMapStore, FixStore};

const NAMESPACE: &str = "selfheal";

fn configmaps() -> Collection {
    Collection::core(NAMESPACE, "configmaps")
}

fn fixes_configmap(yaml: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "fixes", "namespace": NAMESPACE},
        "data": {"fixes.yaml": yaml},
    })
}

/// The `fixes.yaml` text of the ConfigMap as the API server holds it.
fn stored_yaml(server: &FakeApiServer) -> String {
    let configmap = server
        .get(&configmaps(), "fixes")
        .expect("the ConfigMap exists");
    configmap["data"]["fixes.yaml"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn memory_fix(namespace: &str, resource: &str, value: &str) -> Fix {
    Fix::from_record(FixRecord {
        namespace: Some(namespace.into()),
        resource: Some(resource.into()),
        fix_type: Some("memory".into()),
        value: Some(value.into()),
        timestamp: Some("2026-11-28T00:00:00Z".into()),
        reason: Some("OOMKilled".into()),
        ..FixRecord::default()
    })
    .unwrap()
}

fn open(server: &FakeApiServer) -> (FixStore, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let store = ConfigMapStore::new(server.client(), NAMESPACE, "fixes", metrics.clone());
    (FixStore::ConfigMap(Arc::new(store)), metrics)
}

#[tokio::test]
async fn snapshot_follows_edits_of_the_configmap() {
    let server = FakeApiServer::new();
    server.put(
        &configmaps(),
        fixes_configmap("fixes:\n- {namespace: gitlab, resource: web, type: memory, value: 2Gi}\n"),
    );
    let (store, _) = open(&server);
    let snapshot = store.snapshot();
    let _sync = store.spawn_sync();
    eventually("initial load", || snapshot.is_loaded()).await;
    assert_eq!(
        snapshot.current().lookup("gitlab", "web")[0].value.as_str(),
        "2Gi"
    );

    server.put(
        &configmaps(),
        fixes_configmap("fixes:\n- {namespace: gitlab, resource: web, type: memory, value: 3Gi}\n- {namespace: gitlab, resource: db, type: storage, value: 20Gi}\n"),
    );
    eventually("edit seen", || snapshot.current().len() == 2).await;
    assert_eq!(
        snapshot.current().lookup("gitlab", "web")[0].value.as_str(),
        "3Gi"
    );
}

#[tokio::test]
async fn missing_configmap_is_an_empty_loaded_store_and_record_creates_it() {
    let server = FakeApiServer::new();
    let (store, _) = open(&server);
    let snapshot = store.snapshot();
    let _sync = store.spawn_sync();
    eventually("loaded", || snapshot.is_loaded()).await;
    assert!(snapshot.current().is_empty());

    let outcome = store
        .record(memory_fix("gitlab", "web", "4Gi"))
        .await
        .unwrap();
    assert_eq!(outcome.outcome, MergeOutcome::Added);
    assert_eq!(outcome.stored.value.as_str(), "4Gi");
    let stored = server
        .get(&configmaps(), "fixes")
        .expect("ConfigMap created");
    let yaml = stored["data"]["fixes.yaml"].as_str().unwrap();
    assert!(
        yaml.contains("resource: web") && yaml.contains("value: 4Gi"),
        "{yaml}"
    );
    assert!(yaml.contains("reason: OOMKilled"), "{yaml}");
    eventually("watch sees the write", || snapshot.current().len() == 1).await;
}

#[tokio::test]
async fn recording_the_same_fix_twice_writes_once() {
    let server = FakeApiServer::new();
    let (store, _) = open(&server);
    store
        .record(memory_fix("gitlab", "web", "4Gi"))
        .await
        .unwrap();
    let version =
        server.get(&configmaps(), "fixes").unwrap()["metadata"]["resourceVersion"].clone();
    let again = store
        .record(memory_fix("gitlab", "web", "4Gi"))
        .await
        .unwrap();
    assert_eq!(again.outcome, MergeOutcome::Unchanged);
    let lower = store
        .record(memory_fix("gitlab", "web", "1Gi"))
        .await
        .unwrap();
    assert_eq!(lower.outcome, MergeOutcome::Unchanged);
    assert_eq!(
        lower.stored.value.as_str(),
        "4Gi",
        "the stored (larger) fix is returned"
    );
    assert_eq!(
        server.get(&configmaps(), "fixes").unwrap()["metadata"]["resourceVersion"],
        version,
        "an unchanged fix must not write the ConfigMap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_lose_no_fix() {
    let server = FakeApiServer::new();
    server.put(&configmaps(), fixes_configmap("fixes: []\n"));
    let writers: Vec<FixStore> = (0..4).map(|_| open(&server).0).collect();
    let mut tasks = Vec::new();
    for (w, store) in writers.iter().enumerate() {
        for i in 0..10 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .record(memory_fix("team", &format!("app-{w}-{i}"), "1Gi"))
                    .await
            }));
        }
    }
    for task in tasks {
        task.await.unwrap().expect("every write lands eventually");
    }
    let yaml = stored_yaml(&server);
    let document = selfheal::core::document::FixDocument::parse(&yaml).unwrap();
    assert_eq!(document.fixes().count(), 40, "{yaml}");
    assert!(
        server.conflicts.load(Ordering::Relaxed) > 0,
        "the test must actually produce conflicting writes"
    );
}

#[tokio::test]
async fn malformed_configmap_keeps_the_last_good_fixes_and_says_why() {
    let server = FakeApiServer::new();
    server.put(
        &configmaps(),
        fixes_configmap("fixes:\n- {namespace: gitlab, resource: web, type: memory, value: 2Gi}\n- {namespace: gitlab, resource: db, type: memory, value: 1Gi}\n"),
    );
    let (store, metrics) = open(&server);
    let snapshot = store.snapshot();
    let _sync = store.spawn_sync();
    eventually("initial load", || snapshot.current().len() == 2).await;

    // Not YAML at all: everything is kept.
    server.put(&configmaps(), fixes_configmap("fixes: [unclosed\n"));
    eventually("document error counted", || {
        metrics
            .encode()
            .contains("selfheal_store_errors_total{error=\"document\"} 1")
    })
    .await;
    assert_eq!(snapshot.current().len(), 2);
    let events = Collection {
        prefix: "apis/events.k8s.io/v1".into(),
        namespace: NAMESPACE.into(),
        plural: "events".into(),
    };
    eventually("Warning event on the ConfigMap", || {
        server.list(&events).iter().any(|e| {
            e["reason"] == "InvalidFixStore"
                && e["regarding"]["name"] == "fixes"
                && e["note"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("not valid YAML")
        })
    })
    .await;

    // One bad entry: the good one is updated, the bad one keeps its last good value.
    server.put(
        &configmaps(),
        fixes_configmap("fixes:\n- {namespace: gitlab, resource: web, type: memory, value: 2Gx}\n- {namespace: gitlab, resource: db, type: memory, value: 3Gi}\n"),
    );
    eventually("good entry updated", || {
        snapshot
            .current()
            .lookup("gitlab", "db")
            .first()
            .is_some_and(|f| f.value.as_str() == "3Gi")
    })
    .await;
    assert_eq!(
        snapshot.current().lookup("gitlab", "web")[0].value.as_str(),
        "2Gi"
    );
    eventually("entry problem event", || {
        server.list(&events).iter().any(|e| {
            e["reason"] == "InvalidFixEntries"
                && e["note"].as_str().unwrap_or_default().contains("2Gx")
        })
    })
    .await;

    // A write while an entry is bad keeps the bad entry for a person to repair.
    store
        .record(memory_fix("gitlab", "cache", "1Gi"))
        .await
        .unwrap();
    let yaml = stored_yaml(&server);
    assert!(yaml.contains("2Gx") && yaml.contains("cache"), "{yaml}");

    // A write while the document is unreadable is refused rather than overwriting it.
    server.put(&configmaps(), fixes_configmap("fixes: [unclosed\n"));
    let error = store
        .record(memory_fix("gitlab", "other", "1Gi"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("not valid YAML"), "{error}");
    assert_eq!(stored_yaml(&server), "fixes: [unclosed\n");
}

#[tokio::test]
async fn deleted_configmap_keeps_fixes_in_memory() {
    let server = FakeApiServer::new();
    server.put(
        &configmaps(),
        fixes_configmap("fixes:\n- {namespace: gitlab, resource: web, type: memory, value: 2Gi}\n"),
    );
    let (store, metrics) = open(&server);
    let snapshot = store.snapshot();
    let _sync = store.spawn_sync();
    eventually("initial load", || snapshot.current().len() == 1).await;
    let client = server.client();
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client, NAMESPACE);
    api.delete("fixes", &Default::default()).await.unwrap();
    // Wait until the watch has seen the deletion, then check nothing was dropped.
    eventually("the deletion is seen", || {
        metrics
            .encode()
            .contains("selfheal_store_errors_total{error=\"deleted\"} 1")
    })
    .await;
    assert!(server.get(&configmaps(), "fixes").is_none());
    assert_eq!(snapshot.current().len(), 1);
}

#[tokio::test]
async fn a_record_after_the_configmap_was_deleted_re_creates_every_fix() {
    let server = FakeApiServer::new();
    server.put(
        &configmaps(),
        fixes_configmap("fixes:\n- {namespace: gitlab, resource: a, type: memory, value: 2Gi}\n- {namespace: gitlab, resource: b, type: memory, value: 3Gi}\n"),
    );
    let (store, metrics) = open(&server);
    let snapshot = store.snapshot();
    let _sync = store.spawn_sync();
    eventually("initial load", || snapshot.current().len() == 2).await;
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(server.client(), NAMESPACE);
    api.delete("fixes", &Default::default()).await.unwrap();
    eventually("the deletion is seen", || {
        metrics
            .encode()
            .contains("selfheal_store_errors_total{error=\"deleted\"} 1")
    })
    .await;

    store
        .record(memory_fix("gitlab", "c", "4Gi"))
        .await
        .unwrap();

    let stored = stored_yaml(&server);
    for resource in ["resource: a", "resource: b", "resource: c"] {
        assert!(
            stored.contains(resource),
            "{resource} missing from {stored}"
        );
    }
    eventually("the snapshot holds all three", || {
        let current = snapshot.current();
        ["a", "b", "c"]
            .iter()
            .all(|resource| current.lookup("gitlab", resource).len() == 1)
    })
    .await;
    assert_eq!(snapshot.current().len(), 3);
    eventually("a FixStoreRecreated Event", || {
        events_with_reason(&server, "FixStoreRecreated").len() == 1
    })
    .await;
}

fn events() -> Collection {
    Collection {
        prefix: "apis/events.k8s.io/v1".into(),
        namespace: NAMESPACE.into(),
        plural: "events".into(),
    }
}

fn events_with_reason(server: &FakeApiServer, reason: &str) -> Vec<Value> {
    server
        .list(&events())
        .into_iter()
        .filter(|e| e["reason"] == reason && e["regarding"]["name"] == "fixes")
        .collect()
}

/// A fix whose entry takes about `bytes` bytes of fixes.yaml.
fn bulky_fix(resource: &str, bytes: usize) -> Fix {
    let mut record = memory_fix("team", resource, "1Gi").to_record();
    record.evidence = Some("x".repeat(bytes));
    Fix::from_record(record).unwrap()
}

/// A fixes.yaml of bulky fixes, at least `bytes` long.
fn document_of_at_least(bytes: usize) -> String {
    let mut document = selfheal::core::document::FixDocument::default();
    let mut i = 0;
    while document.to_yaml().unwrap().len() < bytes {
        document.record(bulky_fix(&format!("app-{i}"), 16 * 1024));
        i += 1;
    }
    document.to_yaml().unwrap()
}

#[tokio::test]
async fn a_write_past_the_configmap_limit_is_refused_and_loses_nothing() {
    let server = FakeApiServer::new();
    let full = document_of_at_least(selfheal::store::CONFIGMAP_LIMIT_BYTES - 8 * 1024);
    assert!(full.len() <= selfheal::store::CONFIGMAP_LIMIT_BYTES);
    let stored_fixes = selfheal::core::document::FixDocument::parse(&full)
        .unwrap()
        .fixes()
        .count();
    server.put(&configmaps(), fixes_configmap(&full));
    let before = server.get(&configmaps(), "fixes").unwrap();
    let (store, metrics) = open(&server);
    let snapshot = store.snapshot();
    let _sync = store.spawn_sync();
    eventually("initial load", || snapshot.current().len() == stored_fixes).await;

    let error = store
        .record(bulky_fix("one-too-many", 16 * 1024))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, selfheal::store::StoreError::TooLarge { .. })
            && message.contains("Too long")
            && message.contains("selfheal/fixes"),
        "{message}"
    );
    assert_eq!(
        server.get(&configmaps(), "fixes").unwrap(),
        before,
        "the stored ConfigMap is untouched"
    );
    assert_eq!(
        snapshot.current().len(),
        stored_fixes,
        "the snapshot keeps every fix"
    );
    assert!(snapshot.current().lookup("team", "one-too-many").is_empty());
    assert!(
        metrics
            .encode()
            .contains("selfheal_store_errors_total{error=\"too_large\"} 1"),
        "{}",
        metrics.encode()
    );
    let full_events = events_with_reason(&server, "FixStoreFull");
    assert_eq!(full_events.len(), 1, "{full_events:?}");
    assert!(
        full_events[0]["note"]
            .as_str()
            .unwrap_or_default()
            .contains("nothing was written"),
        "{full_events:?}"
    );
    assert_eq!(full_events[0]["type"], "Warning");

    // A smaller fix still fits: the store is not stuck once full.
    store
        .record(memory_fix("team", "small", "1Gi"))
        .await
        .expect("a fix that fits is stored");
}

#[tokio::test]
async fn crossing_80_percent_warns_once_with_an_event_and_sets_the_size_gauge() {
    let server = FakeApiServer::new();
    let (store, metrics) = open(&server);
    store
        .record(memory_fix("team", "small", "1Gi"))
        .await
        .unwrap();
    let small = stored_yaml(&server).len();
    assert!(
        metrics
            .encode()
            .contains(&format!("selfheal_store_bytes {small}")),
        "{}",
        metrics.encode()
    );
    assert!(events_with_reason(&server, "FixStoreNearLimit").is_empty());

    // One write crosses 80 % of 1 MiB, the next stays above it.
    store
        .record(bulky_fix("big", selfheal::store::WARN_BYTES))
        .await
        .unwrap();
    let warned = events_with_reason(&server, "FixStoreNearLimit");
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert_eq!(warned[0]["type"], "Warning");
    assert!(
        warned[0]["note"]
            .as_str()
            .unwrap_or_default()
            .contains("1048576"),
        "{warned:?}"
    );
    store
        .record(memory_fix("team", "another", "1Gi"))
        .await
        .unwrap();
    assert_eq!(
        events_with_reason(&server, "FixStoreNearLimit").len(),
        1,
        "staying above the threshold does not warn again"
    );
    let size = stored_yaml(&server).len();
    assert!(
        metrics
            .encode()
            .contains(&format!("selfheal_store_bytes {size}"))
    );
}
