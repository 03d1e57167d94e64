//! The namespaces' ResourceQuotas, kept in memory by a watch (`cluster::facts`): only their byte
//! resources (memory and storage), `status.used` and scopes, so a raise can be held to what is
//! left (`core::headroom`) with no API call on the admission path.

use k8s_openapi::api::core::v1::ResourceQuota;
use kube::{Api, Client, ResourceExt};

use crate::cluster::facts::{ClusterFacts, watch_facts};
use crate::core::headroom::{QuotaFacts, ScopeRequirement, bytes_of};

/// Whether selfheal's rails read a quota resource: memory (`limits.memory`, `requests.memory`,
/// `memory`) and claim storage (`requests.storage`, `<class>.storageclass.storage.k8s.io/
/// requests.storage`).
fn is_byte_resource(name: &str) -> bool {
    matches!(name, "limits.memory" | "requests.memory" | "memory")
        || name.ends_with("requests.storage")
}

/// The facts of one ResourceQuota. `hard` is the smaller of `spec.hard` and `status.hard` (the
/// quota admission enforces `status.hard`; a `spec.hard` the controller has not synced yet is
/// not room to count on). An unreadable quantity makes the quota unreadable.
pub fn facts_of(quota: &ResourceQuota) -> Result<QuotaFacts, String> {
    let read = |entries: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >| {
        let mut read = std::collections::BTreeMap::new();
        for (name, quantity) in entries.into_iter().flatten() {
            if !is_byte_resource(name) {
                continue;
            }
            let bytes = bytes_of(&quantity.0)
                .ok_or_else(|| format!("{name}: {:?} is not a quantity", quantity.0))?;
            read.insert(name.clone(), bytes);
        }
        Ok::<_, String>(read)
    };
    let spec = quota.spec.as_ref();
    let status = quota.status.as_ref();
    let mut hard = read(spec.and_then(|spec| spec.hard.as_ref()))?;
    for (name, synced) in read(status.and_then(|status| status.hard.as_ref()))? {
        if let Some(limit) = hard.get_mut(&name) {
            *limit = (*limit).min(synced);
        }
    }
    let used = read(status.and_then(|status| status.used.as_ref()))?;
    let mut scopes: Vec<ScopeRequirement> = spec
        .and_then(|spec| spec.scopes.as_ref())
        .into_iter()
        .flatten()
        .map(|scope| ScopeRequirement {
            scope: scope.clone(),
            operator: "Exists".into(),
            values: Vec::new(),
        })
        .collect();
    let selector = spec
        .and_then(|spec| spec.scope_selector.as_ref())
        .and_then(|selector| selector.match_expressions.as_ref());
    scopes.extend(
        selector
            .into_iter()
            .flatten()
            .map(|requirement| ScopeRequirement {
                scope: requirement.scope_name.clone(),
                operator: requirement.operator.clone(),
                values: requirement.values.clone().unwrap_or_default(),
            }),
    );
    Ok(QuotaFacts {
        namespace: quota.namespace().unwrap_or_default(),
        name: quota.name_any(),
        hard,
        used,
        scopes,
    })
}

/// Watches ResourceQuotas in every namespace and keeps `facts` current until dropped.
pub async fn keep_current(client: Client, facts: ClusterFacts) {
    watch_facts(Api::<ResourceQuota>::all(client), facts_of, |quotas| {
        facts.publish_quotas(quotas)
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_quota_keeps_its_byte_resources_used_and_scopes() {
        let quota: ResourceQuota = serde_json::from_value(json!({
            "metadata": {"name": "mem", "namespace": "e2"},
            "spec": {
                "hard": {"limits.memory": "768Mi", "requests.memory": "1Gi", "pods": "10",
                         "cpu": "2", "gold.storageclass.storage.k8s.io/requests.storage": "20Gi"},
                "scopes": ["NotTerminating"],
                "scopeSelector": {"matchExpressions": [
                    {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}
            },
            "status": {"hard": {"limits.memory": "768Mi", "requests.memory": "512Mi"},
                       "used": {"limits.memory": "256Mi", "pods": "1"}}
        }))
        .unwrap();
        let facts = facts_of(&quota).unwrap();
        assert_eq!(
            (facts.namespace.as_str(), facts.name.as_str()),
            ("e2", "mem")
        );
        assert_eq!(
            facts.hard,
            [
                (
                    "gold.storageclass.storage.k8s.io/requests.storage".to_string(),
                    20 << 30
                ),
                ("limits.memory".to_string(), 768 << 20),
                // status.hard not synced up to spec yet: the smaller one counts.
                ("requests.memory".to_string(), 512 << 20),
            ]
            .into()
        );
        assert_eq!(
            facts.used,
            [("limits.memory".to_string(), 256 << 20)].into()
        );
        assert_eq!(facts.scopes.len(), 2);
        assert_eq!(facts.scopes[0].operator, "Exists");
        assert_eq!(facts.scopes[1].values, ["high"]);
        let bad: ResourceQuota = serde_json::from_value(json!({
            "metadata": {"name": "bad", "namespace": "e2"},
            "spec": {"hard": {"limits.memory": "lots"}}
        }))
        .unwrap();
        assert!(facts_of(&bad).unwrap_err().contains("limits.memory"));
    }
}
