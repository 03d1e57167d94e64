//! The nodes' allocatable memory, readiness, cordon and labels, kept in memory by a watch
//! (`cluster::facts`) so no raise passes the largest node a pod could land on
//! (`core::headroom`). Only these facts are kept, never whole Node objects (a Node's status
//! lists its images and can be large).

use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client, ResourceExt};

use crate::cluster::facts::{ClusterFacts, watch_facts};
use crate::core::headroom::{NodeFacts, bytes_of};

/// The facts of one node. Unreadable allocatable memory makes the node unreadable.
pub fn facts_of(node: &Node) -> Result<NodeFacts, String> {
    let status = node.status.as_ref();
    let allocatable_memory = status
        .and_then(|status| status.allocatable.as_ref())
        .and_then(|allocatable| allocatable.get("memory"))
        .map(|quantity| {
            bytes_of(&quantity.0)
                .ok_or_else(|| format!("allocatable memory {:?} is not a quantity", quantity.0))
        })
        .transpose()?;
    let ready = status
        .and_then(|status| status.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|condition| condition.type_ == "Ready" && condition.status == "True");
    Ok(NodeFacts {
        name: node.name_any(),
        allocatable_memory,
        ready,
        unschedulable: node
            .spec
            .as_ref()
            .and_then(|spec| spec.unschedulable)
            .unwrap_or(false),
        labels: node.labels().clone(),
    })
}

/// Watches Nodes and keeps `facts` current until dropped.
pub async fn keep_current(client: Client, facts: ClusterFacts) {
    watch_facts(Api::<Node>::all(client), facts_of, |nodes| {
        facts.publish_nodes(nodes)
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_node_keeps_allocatable_memory_readiness_cordon_and_labels() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {"pool": "web"}},
            "spec": {"unschedulable": true},
            "status": {
                "allocatable": {"memory": "16329940Ki", "cpu": "4"},
                "conditions": [{"type": "MemoryPressure", "status": "False"},
                               {"type": "Ready", "status": "True"}],
                "images": [{"names": ["registry/app:1"], "sizeBytes": 1}]
            }
        }))
        .unwrap();
        let facts = facts_of(&node).unwrap();
        assert_eq!(facts.allocatable_memory, Some(16_329_940 * 1024));
        assert!(facts.ready && facts.unschedulable);
        assert_eq!(facts.labels.get("pool").map(String::as_str), Some("web"));
        let not_ready: Node = serde_json::from_value(json!({
            "metadata": {"name": "n2"},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}
        }))
        .unwrap();
        let facts = facts_of(&not_ready).unwrap();
        assert!(!facts.ready && !facts.unschedulable && facts.allocatable_memory.is_none());
        let bad: Node = serde_json::from_value(json!({
            "metadata": {"name": "n3"}, "status": {"allocatable": {"memory": "much"}}
        }))
        .unwrap();
        assert!(facts_of(&bad).is_err());
    }
}
