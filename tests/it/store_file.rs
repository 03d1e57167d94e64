//! The file store: edits are picked up without a restart, a broken file keeps the last good
//! fixes, writes are atomic and idempotent.

use crate::support;

use support::eventually;

use std::sync::Arc;
use std::time::Duration;

use selfheal::core::fix::{Fix, FixRecord, MergeOutcome};
use selfheal::metrics::Metrics;
use selfheal::store::{FileStore, FixStore};

fn storage_fix(resource: &str, value: &str) -> Fix {
    Fix::from_record(FixRecord {
        namespace: Some("gitlab".into()),
        resource: Some(resource.into()),
        fix_type: Some("storage".into()),
        value: Some(value.into()),
        ..FixRecord::default()
    })
    .unwrap()
}

/// The file's device and inode: every write renames a new file into place, so an unchanged
/// inode means no write (a modification time can repeat within its granularity).
fn inode(path: &std::path::Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).unwrap();
    (metadata.dev(), metadata.ino())
}

fn open(path: &std::path::Path) -> (FixStore, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let store = FileStore::new(path, Duration::from_millis(20), metrics.clone());
    (FixStore::File(Arc::new(store)), metrics)
}

#[tokio::test]
async fn edits_are_picked_up_and_a_broken_file_keeps_the_last_good_fixes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixes.yaml");
    std::fs::write(
        &path,
        "fixes:\n- {namespace: gitlab, resource: a, type: memory, value: 1Gi}\n",
    )
    .unwrap();
    let (store, metrics) = open(&path);
    let snapshot = store.snapshot();
    let _sync = store.spawn_sync();
    eventually("first load", || snapshot.current().len() == 1).await;

    std::fs::write(&path, "fixes:\n- {namespace: gitlab, resource: a, type: memory, value: 1Gi}\n- {namespace: gitlab, resource: b, type: memory, value: 2Gi}\n").unwrap();
    eventually("edit picked up", || snapshot.current().len() == 2).await;

    std::fs::write(
        &path,
        "fixes:\n  - namespace: gitlab\n   bad indentation: [\n",
    )
    .unwrap();
    eventually("error counted", || {
        metrics.encode().contains("error=\"document\"")
    })
    .await;
    assert_eq!(
        snapshot.current().len(),
        2,
        "a broken file never empties the snapshot"
    );
}

#[tokio::test]
async fn missing_file_is_an_empty_store_and_record_creates_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".state/fixes.yaml");
    let (store, _) = open(&path);
    assert_eq!(store.read_document().await.unwrap().fixes().count(), 0);
    assert_eq!(
        store
            .record(storage_fix("data", "20Gi"))
            .await
            .unwrap()
            .outcome,
        MergeOutcome::Added
    );
    assert_eq!(
        store.snapshot().current().len(),
        1,
        "record publishes at once"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("fixes:") && text.contains("value: 20Gi"),
        "{text}"
    );
    let written = inode(&path);
    assert_eq!(
        store
            .record(storage_fix("data", "20Gi"))
            .await
            .unwrap()
            .outcome,
        MergeOutcome::Unchanged
    );
    assert_eq!(inode(&path), written, "no rewrite");
    assert_eq!(
        store
            .record(storage_fix("data", "30Gi"))
            .await
            .unwrap()
            .outcome,
        MergeOutcome::Raised {
            from: "20Gi".into()
        }
    );
    assert_ne!(
        inode(&path),
        written,
        "a raise is written (the inode tells)"
    );
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name != "fixes.yaml.lock")
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary files left: {leftovers:?}");
}

#[tokio::test]
async fn a_file_that_is_not_yaml_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixes.yaml");
    std::fs::write(&path, "fixes: [oops\n").unwrap();
    let (store, _) = open(&path);
    let error = store.record(storage_fix("data", "20Gi")).await.unwrap_err();
    assert!(error.to_string().contains("fixes.yaml"), "{error}");
    assert!(error.to_string().contains("not valid YAML"), "{error}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "fixes: [oops\n");
}

#[tokio::test]
async fn an_update_rewrites_atomically_keeps_bad_entries_and_sets_the_size_gauge() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixes.yaml");
    std::fs::write(
        &path,
        "fixes:\n- {namespace: gitlab, resource: a, type: storage, value: 1Gi}\n- {namespace: gitlab, resource: b, type: storage, value: 1Gx}\n",
    )
    .unwrap();
    let (store, metrics) = open(&path);
    let removed = store
        .update(|document| document.remove_fixes(|fix| fix.resource == "a"))
        .await
        .unwrap();
    assert_eq!(removed.len(), 1);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("resource: a\n") && text.contains("1Gx"),
        "{text}"
    );
    assert!(
        metrics
            .encode()
            .contains(&format!("selfheal_store_bytes {}", text.len())),
        "{}",
        metrics.encode()
    );
    assert_eq!(
        store.snapshot().current().len(),
        0,
        "the removal is published at once"
    );

    // A change that changes nothing does not rewrite the file.
    let written = inode(&path);
    let none = store
        .update(|document| document.remove_fixes(|fix| fix.resource == "a"))
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(inode(&path), written, "no rewrite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_with_their_own_store_on_one_file_lose_no_fix() {
    // Each FileStore stands for one process (`selfheal heal`, `selfheal fixes import`): they
    // share nothing but the file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixes.yaml");
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let (store, _) = open(&path);
            tokio::spawn(async move {
                for n in 0..8 {
                    let resource = format!("w{writer}-{n}");
                    store.record(storage_fix(&resource, "2Gi")).await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let (store, _) = open(&path);
    let document = store.read_document().await.unwrap();
    assert_eq!(
        document.fixes().count(),
        32,
        "{}",
        document.to_yaml().unwrap()
    );
}
