//! The fix lifecycle (`selfheal fixes forget | prune | import | export`) against both stores:
//! the ConfigMap on the in-process test API server, and the file. Every change goes through the
//! store's write path; entries that are not valid fixes are kept word for word.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::fake_apiserver::{Collection, FakeApiServer};

use selfheal::app::fixes::{self, Selector};
use selfheal::core::document::FixDocument;
use selfheal::metrics::Metrics;
use selfheal::store::{ConfigMapStore, FileStore, FixStore};

const NAMESPACE: &str = "selfheal";

/// A stored document with two fixes of `gitlab/web` (one per container), one of `gitlab/db`, and
/// an entry that is not a valid fix.
const STORED: &str = "\
fixes:
- {namespace: gitlab, resource: web, type: memory, value: 2Gi, container: app, timestamp: '2026-01-01T00:00:00Z'}
- {namespace: gitlab, resource: web, type: memory, value: 1Gi, container: sidecar, timestamp: '2026-01-01T00:00:00Z'}
- {namespace: gitlab, resource: db, type: storage, value: 20Gi, timestamp: '2026-01-01T00:00:00Z'}
- {namespace: gitlab, resource: broken, type: memory, value: 4Gx}
";

fn configmaps() -> Collection {
    Collection::core(NAMESPACE, "configmaps")
}

fn configmap_store(server: &FakeApiServer, yaml: &str) -> FixStore {
    server.put(
        &configmaps(),
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "fixes", "namespace": NAMESPACE},
            "data": {"fixes.yaml": yaml},
        }),
    );
    let store = ConfigMapStore::new(
        server.client(),
        NAMESPACE,
        "fixes",
        Arc::new(Metrics::new()),
    );
    FixStore::ConfigMap(Arc::new(store))
}

fn stored_yaml(server: &FakeApiServer) -> String {
    server.get(&configmaps(), "fixes").unwrap()["data"]["fixes.yaml"]
        .as_str()
        .unwrap()
        .to_string()
}

fn resource_version(server: &FakeApiServer) -> Value {
    server.get(&configmaps(), "fixes").unwrap()["metadata"]["resourceVersion"].clone()
}

/// The broken entry exactly as STORED has it, after any rewrite.
fn assert_broken_entry_kept(yaml: &str) {
    let document = FixDocument::parse(yaml).unwrap();
    let problems = document.problems();
    assert_eq!(problems.len(), 1, "{yaml}");
    assert_eq!(problems[0].resource.as_deref(), Some("broken"));
    assert!(problems[0].message.contains("4Gx"), "{yaml}");
}

fn values(yaml: &str) -> Vec<String> {
    let document = FixDocument::parse(yaml).unwrap();
    let mut values: Vec<String> = document
        .fixes()
        .map(|f| {
            format!(
                "{}/{}/{}={}",
                f.resource,
                f.fix_type,
                f.target().unwrap_or("-"),
                f.value
            )
        })
        .collect();
    values.sort();
    values
}

#[tokio::test]
async fn forget_removes_what_matches_once_and_keeps_bad_entries() {
    let server = FakeApiServer::new();
    let store = configmap_store(&server, STORED);

    let sidecar =
        Selector::parse("gitlab/web", Some("memory"), Some("sidecar".into()), None).unwrap();
    let removed = fixes::forget(&store, &sidecar).await.unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].container.as_deref(), Some("sidecar"));
    let report = fixes::forget_report(&store.describe(), &sidecar, &removed);
    assert!(
        report.starts_with("removed 1 fix from ConfigMap selfheal/fixes"),
        "{report}"
    );
    // A memory fix: its values stay in Job templates and bare Pods, and the old manifest is
    // refused there.
    assert!(
        report.contains("warning: the values these fixes raised stay live")
            && report.contains("Job pod templates and bare Pods")
            && report.contains("refused by the apiserver")
            && !report.contains("volumeClaimTemplates"),
        "{report}"
    );
    assert_eq!(
        values(&stored_yaml(&server)),
        ["db/storage/-=20Gi", "web/memory/app=2Gi"]
    );
    assert_broken_entry_kept(&stored_yaml(&server));

    // Idempotent: the second run removes nothing, says so, and writes nothing.
    let version = resource_version(&server);
    let again = fixes::forget(&store, &sidecar).await.unwrap();
    assert!(again.is_empty());
    assert!(fixes::forget_report(&store.describe(), &sidecar, &again).contains("nothing removed"));
    assert_eq!(
        resource_version(&server),
        version,
        "nothing to remove writes nothing"
    );

    // Without a type or container, every fix of the workload goes.
    let web = Selector::parse("gitlab/web", None, None, None).unwrap();
    assert_eq!(fixes::forget(&store, &web).await.unwrap().len(), 1);
    assert_eq!(values(&stored_yaml(&server)), ["db/storage/-=20Gi"]);
    assert_broken_entry_kept(&stored_yaml(&server));
}

#[tokio::test]
async fn import_raises_adds_never_lowers_and_skips_bad_entries() {
    let server = FakeApiServer::new();
    let store = configmap_store(&server, STORED);
    let imported = fixes::parse_import(
        "\
fixes:
- {namespace: gitlab, resource: web, type: memory, value: 4Gi, container: app}
- {namespace: gitlab, resource: web, type: memory, value: 512Mi, container: sidecar}
- {namespace: gitlab, resource: cache, type: memory, value: 1Gi}
- {namespace: gitlab, resource: evil, type: cpu, value: 1}
",
        "backup.yaml",
    )
    .unwrap();
    let report = fixes::import(&store, &imported).await.unwrap();
    assert_eq!(report.added.len(), 1);
    assert_eq!(report.raised.len(), 1);
    assert_eq!(report.raised[0].1, "2Gi");
    assert_eq!(report.unchanged.len(), 1);
    assert_eq!(report.skipped.len(), 1);
    let text = fixes::import_report(&store.describe(), "backup.yaml", &report);
    assert!(
        text.contains("1 added, 1 raised, 1 unchanged, 1 skipped")
            && text.contains("skipped   backup.yaml fixes[3] (gitlab/evil)")
            && text.contains("\"cpu\""),
        "{text}"
    );
    let yaml = stored_yaml(&server);
    assert_eq!(
        values(&yaml),
        [
            "cache/memory/-=1Gi",
            "db/storage/-=20Gi",
            "web/memory/app=4Gi",
            "web/memory/sidecar=1Gi"
        ],
        "the sidecar keeps its larger value"
    );
    assert!(
        !yaml.contains("evil"),
        "a bad imported entry is never written: {yaml}"
    );
    assert_broken_entry_kept(&yaml);

    // The same import again changes nothing and writes nothing.
    let version = resource_version(&server);
    let again = fixes::import(&store, &imported).await.unwrap();
    assert!(again.added.is_empty() && again.raised.is_empty());
    assert_eq!(again.unchanged.len(), 3);
    assert_eq!(resource_version(&server), version);
}

#[tokio::test]
async fn export_then_import_into_an_empty_store_restores_every_fix() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.yaml");
    std::fs::write(&source, STORED).unwrap();
    let source = FixStore::File(Arc::new(FileStore::new(
        &source,
        Duration::from_secs(1),
        Arc::new(Metrics::new()),
    )));
    let exported = fixes::export(&source.read_document().await.unwrap(), true).unwrap();

    let server = FakeApiServer::new();
    let target = ConfigMapStore::new(
        server.client(),
        NAMESPACE,
        "fixes",
        Arc::new(Metrics::new()),
    );
    let target = FixStore::ConfigMap(Arc::new(target));
    let report = fixes::import(
        &target,
        &fixes::parse_import(&exported, "export.json").unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(report.added.len(), 3);
    assert_eq!(
        report.skipped.len(),
        1,
        "the broken entry is named, not imported"
    );
    assert_eq!(values(&stored_yaml(&server)), values(STORED));
}

fn deployment(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "x"}]}}},
    })
}

fn claim(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"resources": {"requests": {"storage": "1Gi"}}},
    })
}

#[tokio::test]
async fn prune_drops_only_fixes_of_absent_workloads_untouched_for_the_age() {
    let server = FakeApiServer::new();
    server.put(
        &Collection::apps("gitlab", "deployments"),
        deployment("gitlab", "web"),
    );
    server.put(
        &Collection::core("gitlab", "persistentvolumeclaims"),
        claim("gitlab", "data-db"),
    );
    let store = configmap_store(
        &server,
        "\
fixes:
- {namespace: gitlab, resource: web, type: memory, value: 2Gi, timestamp: '2026-01-01T00:00:00Z'}
- {namespace: gitlab, resource: data-db, type: storage, value: 20Gi, timestamp: '2026-01-01T00:00:00Z'}
- {namespace: gitlab, resource: gone, type: memory, value: 1Gi, timestamp: '2026-01-01T00:00:00Z'}
- {namespace: gitlab, resource: gone-lately, type: memory, value: 1Gi, timestamp: '2026-02-25T00:00:00Z'}
- {namespace: gitlab, resource: undated, type: memory, value: 1Gi}
- {namespace: vanished, resource: app, type: memory, value: 1Gi, timestamp: '2026-01-01T00:00:00Z'}
- {namespace: gitlab, resource: broken, type: memory, value: 4Gx, timestamp: '2020-01-01T00:00:00Z'}
",
    );
    let client = server.client();
    let now: jiff::Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
    let month = Duration::from_secs(30 * 86_400);
    let document = store.read_document().await.unwrap();
    let existing = fixes::existing_for(&client, &document).await.unwrap();
    assert!(existing["gitlab"].contains("web") && existing["gitlab"].contains("data-db"));

    // Dry run: says what it would drop, writes nothing.
    let version = resource_version(&server);
    let stale = fixes::stale_fixes(&document, &existing, now, month);
    let names: Vec<String> = stale
        .iter()
        .map(|f| format!("{}/{}", f.namespace, f.resource))
        .collect();
    assert_eq!(names, ["gitlab/gone", "vanished/app"]);
    let report = fixes::prune_report(&store.describe(), &stale, false, "30d");
    assert!(
        report.starts_with("would drop 2 fixes") && report.contains("--apply"),
        "{report}"
    );
    assert!(
        report.contains("refused by the apiserver"),
        "prune warns about the values left live: {report}"
    );
    assert_eq!(resource_version(&server), version);

    // Applied: exactly those go; the broken entry stays word for word.
    let dropped = fixes::drop_stale(&store, &existing, now, month)
        .await
        .unwrap();
    assert_eq!(dropped, stale);
    let yaml = stored_yaml(&server);
    let left: Vec<String> = FixDocument::parse(&yaml)
        .unwrap()
        .fixes()
        .map(|f| f.resource.clone())
        .collect();
    assert_eq!(left, ["web", "data-db", "gone-lately", "undated"]);
    assert!(yaml.contains("4Gx"), "{yaml}");
    // A second run finds nothing.
    assert!(
        fixes::drop_stale(&store, &existing, now, month)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_beside_concurrent_writers_loses_none_of_their_fixes() {
    let server = FakeApiServer::new();
    configmap_store(&server, STORED);
    let stores: Vec<FixStore> = (0..4)
        .map(|_| {
            FixStore::ConfigMap(Arc::new(ConfigMapStore::new(
                server.client(),
                NAMESPACE,
                "fixes",
                Arc::new(Metrics::new()),
            )))
        })
        .collect();
    let mut tasks = Vec::new();
    for (w, store) in stores.iter().enumerate() {
        for i in 0..5 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let fix = selfheal::core::fix::Fix::from_record(selfheal::core::fix::FixRecord {
                    namespace: Some("team".into()),
                    resource: Some(format!("app-{w}-{i}")),
                    fix_type: Some("memory".into()),
                    value: Some("1Gi".into()),
                    ..Default::default()
                })
                .unwrap();
                store.record(fix).await.map(|_| 0)
            }));
        }
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let web = Selector::parse("gitlab/web", None, None, None).unwrap();
            fixes::forget(&store, &web)
                .await
                .map(|removed| removed.len())
        }));
    }
    let mut forgotten = 0;
    for task in tasks {
        forgotten += task.await.unwrap().expect("every write lands");
    }
    assert_eq!(
        forgotten, 2,
        "the two fixes of gitlab/web are removed once in all"
    );
    let yaml = stored_yaml(&server);
    let document = FixDocument::parse(&yaml).unwrap();
    assert_eq!(
        document.fixes().filter(|f| f.namespace == "team").count(),
        20
    );
    assert!(document.fixes().all(|f| f.resource != "web"), "{yaml}");
    assert_broken_entry_kept(&yaml);
    assert!(
        server.conflicts.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the test must produce conflicting writes"
    );
}
