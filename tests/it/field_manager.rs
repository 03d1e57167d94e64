//! Every write of selfheal's names selfheal as its field manager, so `managedFields` says who
//! changed what and an owner's non-forced server-side apply conflicts with `selfheal`, by name,
//! never with the empty manager a client without a User-Agent gets.

use crate::support;

use std::sync::Arc;

use serde_json::Value;
use support::fake_apiserver::{Collection, FakeApiServer};

use selfheal::cluster::FIELD_MANAGER;
use selfheal::core::fix::{Fix, FixRecord};
use selfheal::metrics::Metrics;
use selfheal::store::{ConfigMapStore, FixStore};

fn managers(object: &Value) -> Vec<String> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry["manager"].as_str().map(str::to_string))
        .collect()
}

fn memory_fix(resource: &str, value: &str) -> Fix {
    Fix::from_record(FixRecord {
        namespace: Some("shop".into()),
        resource: Some(resource.into()),
        fix_type: Some("memory".into()),
        value: Some(value.into()),
        ..FixRecord::default()
    })
    .unwrap()
}

#[tokio::test]
async fn the_fix_store_creates_and_replaces_its_configmap_as_selfheal() {
    let server = FakeApiServer::new();
    let store = FixStore::ConfigMap(Arc::new(ConfigMapStore::new(
        server.client(),
        "selfheal",
        "fixes",
        Arc::new(Metrics::new()),
    )));
    let configmaps = Collection::core("selfheal", "configmaps");
    store.record(memory_fix("web", "1Gi")).await.unwrap();
    let created = server.get(&configmaps, "fixes").expect("created");
    assert_eq!(managers(&created), vec![FIELD_MANAGER.to_string()]);
    store.record(memory_fix("cart", "2Gi")).await.unwrap();
    let replaced = server.get(&configmaps, "fixes").expect("replaced");
    assert_eq!(
        managers(&replaced),
        vec![FIELD_MANAGER.to_string()],
        "no write of selfheal's is by another manager"
    );
}
