//! The cluster facts every raise obeys (LimitRanges, ResourceQuotas, Nodes) are kept current by
//! watches against the test API server, as `selfheal serve` keeps them: what exists at start-up
//! is published when the list ends, every change after it, and an object that cannot be read is
//! skipped without ending the watch.

use crate::support;

use serde_json::{Value, json};

use selfheal::cluster::facts::{self, ClusterFacts};
use support::fake_apiserver::{Collection, FakeApiServer};

const NS: &str = "e2";

fn quota(name: &str, limits_memory: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name, "namespace": NS},
        "spec": {"hard": {"limits.memory": limits_memory}}})
}

fn node(name: &str, memory: &str, ready: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"pool": "web"}},
        "status": {"allocatable": {"memory": memory},
                   "conditions": [{"type": "Ready", "status": ready}]}})
}

fn quota_hard(facts: &ClusterFacts, name: &str) -> Option<u128> {
    let facts = facts.load();
    let quota = facts.quotas(NS).iter().find(|q| q.name == name)?;
    quota.hard.get("limits.memory").copied()
}

fn node_ready(facts: &ClusterFacts, name: &str) -> Option<bool> {
    let facts = facts.load();
    Some(facts.nodes()?.iter().find(|n| n.name == name)?.ready)
}

#[tokio::test]
async fn quotas_and_nodes_that_exist_at_start_up_are_published_when_the_list_ends() {
    let server = FakeApiServer::new();
    server.put(
        &Collection::core(NS, "resourcequotas"),
        quota("mem", "768Mi"),
    );
    // A running pod the quota controller counts in `status.used`.
    server.put(
        &Collection::core(NS, "pods"),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "running", "namespace": NS},
            "spec": {"containers": [{"name": "app", "image": "app:1",
                "resources": {"limits": {"memory": "256Mi"}, "requests": {"memory": "256Mi"}}}]},
            "status": {"phase": "Running"}}),
    );
    server.put(&Collection::core("", "nodes"), node("n1", "16Gi", "True"));
    let facts = ClusterFacts::default();
    assert!(
        facts.load().nodes().is_none(),
        "nothing known before the list"
    );
    let watch = tokio::spawn(facts::keep_current(server.client(), facts.clone()));
    // Nothing changes after start: only the end of each initial list can publish.
    support::eventually("the quota and the node are published", || {
        quota_hard(&facts, "mem") == Some(768 << 20) && node_ready(&facts, "n1") == Some(true)
    })
    .await;
    let loaded = facts.load();
    let quota = &loaded.quotas(NS)[0];
    assert_eq!(quota.used.get("limits.memory"), Some(&(256 << 20)));
    let node = &loaded.nodes().unwrap()[0];
    assert_eq!(node.allocatable_memory, Some(16 << 30));
    assert_eq!(node.labels.get("pool").map(String::as_str), Some("web"));
    watch.abort();
}

#[tokio::test]
async fn changes_are_published_and_an_unreadable_object_is_skipped_without_ending_the_watch() {
    let server = FakeApiServer::new();
    server.put(&Collection::core("", "nodes"), node("n1", "16Gi", "True"));
    let facts = ClusterFacts::default();
    let watch = tokio::spawn(facts::keep_current(server.client(), facts.clone()));
    support::eventually("the node list is published", || {
        node_ready(&facts, "n1") == Some(true)
    })
    .await;

    // An unreadable quota and an unreadable node arrive first; the watches carry on.
    server.put(
        &Collection::core(NS, "resourcequotas"),
        quota("bad", "lots"),
    );
    server.put(
        &Collection::core("", "nodes"),
        node("broken", "much", "True"),
    );
    server.put(&Collection::core(NS, "resourcequotas"), quota("mem", "1Gi"));
    server.put(&Collection::core("", "nodes"), node("n1", "16Gi", "False"));
    support::eventually("later changes are published", || {
        quota_hard(&facts, "mem") == Some(1 << 30) && node_ready(&facts, "n1") == Some(false)
    })
    .await;
    let loaded = facts.load();
    assert!(loaded.quotas(NS).iter().all(|q| q.name != "bad"));
    assert!(loaded.nodes().unwrap().iter().all(|n| n.name != "broken"));

    // A deletion is published too.
    server.remove(&Collection::core(NS, "resourcequotas"), "mem");
    support::eventually("the deleted quota is gone", || {
        facts.load().quotas(NS).is_empty()
    })
    .await;
    watch.abort();
}
