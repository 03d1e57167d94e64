//! A stored `fixes.yaml` that YAML cannot write back (found by fuzzing: a mapping with a tagged
//! key) is never overwritten: recording a fix fails with an error naming the entry, and every
//! byte of the file, and so every fix in it, stays.

use std::sync::Arc;
use std::time::Duration;

use selfheal::core::fix::{Fix, FixRecord};
use selfheal::metrics::Metrics;
use selfheal::store::{FileStore, FixStore};

#[tokio::test]
async fn recording_into_an_unwritable_file_fails_by_name_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixes.yaml");
    let text = "fixes:\n- {namespace: gitlab, resource: web, type: memory, value: 1Gi}\n- !x :\n";
    std::fs::write(&path, text).unwrap();
    let store = FixStore::File(Arc::new(FileStore::new(
        &path,
        Duration::from_millis(20),
        Arc::new(Metrics::new()),
    )));
    let fix = Fix::from_record(FixRecord {
        namespace: Some("gitlab".into()),
        resource: Some("cart".into()),
        fix_type: Some("memory".into()),
        value: Some("2Gi".into()),
        ..FixRecord::default()
    })
    .unwrap();
    let error = store.record(fix).await.expect_err("the write is refused");
    let message = error.to_string();
    assert!(
        message.contains("cannot be written back") && message.contains("entry 1"),
        "{message}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}
