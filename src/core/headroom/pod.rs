//! The pod side of the rails: a pod's memory as the quota and the scheduler count it, the
//! traits quota scopes match on, how many pods of a workload exist at once, and what the quota
//! already counts of an UPDATEd workload's own pods.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::core::workload::{WorkloadKind, str_at};

use super::{NodeFacts, QuotaFacts, ScopeRequirement, bytes_of};

/// A pod's memory as the quota counts it, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodMemory {
    pub limits: u128,
    pub requests: u128,
}

/// One container's memory, for [`pod_memory`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerMemory {
    /// `containers` or `initContainers`.
    pub list: &'static str,
    pub index: usize,
    pub name: String,
    /// An init container with `restartPolicy: Always` (a sidecar): it runs beside the app.
    pub sidecar: bool,
    pub limit: Option<u128>,
    pub request: Option<u128>,
}

impl ContainerMemory {
    /// The request the pod will have: the limit where no request is set (the API's defaulting).
    fn effective_request(&self) -> u128 {
        self.request.or(self.limit).unwrap_or(0)
    }
}

/// The containers of a pod spec with their memory (unreadable values count as unset).
pub fn containers_of(pod_spec: &Value) -> Vec<ContainerMemory> {
    let mut found = Vec::new();
    for list in ["containers", "initContainers"] {
        let items = pod_spec.get(list).and_then(Value::as_array);
        for (index, container) in items.into_iter().flatten().enumerate() {
            let quantity = |path: &[&str]| str_at(container, path).and_then(bytes_of);
            found.push(ContainerMemory {
                list,
                index,
                name: str_at(container, &["name"]).unwrap_or_default().to_string(),
                sidecar: list == "initContainers"
                    && str_at(container, &["restartPolicy"]) == Some("Always"),
                limit: quantity(&["resources", "limits", "memory"]),
                request: quantity(&["resources", "requests", "memory"]),
            });
        }
    }
    found
}

/// The pod's memory as the quota and the scheduler count it: app containers and sidecars
/// summed, at least each init container (plus the sidecars started before it), plus overhead.
pub fn pod_memory(containers: &[ContainerMemory], overhead: u128) -> PodMemory {
    let mut sum = PodMemory::default();
    let mut sidecars = PodMemory::default();
    let mut init_peak = PodMemory::default();
    for container in containers.iter().filter(|c| c.list == "containers") {
        sum.limits += container.limit.unwrap_or(0);
        sum.requests += container.effective_request();
    }
    for container in containers.iter().filter(|c| c.list == "initContainers") {
        let (limit, request) = (container.limit.unwrap_or(0), container.effective_request());
        if container.sidecar {
            sidecars.limits += limit;
            sidecars.requests += request;
            sum.limits += limit;
            sum.requests += request;
        } else {
            init_peak.limits = init_peak.limits.max(limit + sidecars.limits);
            init_peak.requests = init_peak.requests.max(request + sidecars.requests);
        }
    }
    PodMemory {
        limits: sum.limits.max(init_peak.limits) + overhead,
        requests: sum.requests.max(init_peak.requests) + overhead,
    }
}

/// A pod spec's memory ([`pod_memory`] of [`containers_of`] with its `overhead.memory`).
pub fn pod_memory_of(pod_spec: &Value) -> PodMemory {
    pod_memory(&containers_of(pod_spec), overhead_of(pod_spec))
}

/// `overhead.memory` of a pod spec, in bytes.
pub fn overhead_of(pod_spec: &Value) -> u128 {
    str_at(pod_spec, &["overhead", "memory"])
        .and_then(bytes_of)
        .unwrap_or(0)
}

/// What decides whether a quota scope matches a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodTraits {
    pub priority_class: Option<String>,
    /// `activeDeadlineSeconds >= 0`.
    pub terminating: bool,
    /// No cpu or memory request or limit in any container, nor at the pod level.
    pub best_effort: bool,
    /// Pod (anti-)affinity terms naming other namespaces.
    pub cross_namespace_affinity: bool,
    pub node_selector: BTreeMap<String, String>,
}

/// The traits of a pod spec.
pub fn pod_traits(pod_spec: &Value) -> PodTraits {
    let has_compute = |resources: Option<&Value>| {
        ["limits", "requests"].iter().any(|kind| {
            resources
                .and_then(|r| r.get(kind))
                .is_some_and(|set| set.get("cpu").is_some() || set.get("memory").is_some())
        })
    };
    let containers = ["containers", "initContainers"]
        .iter()
        .filter_map(|list| pod_spec.get(list).and_then(Value::as_array))
        .flatten();
    let best_effort = !has_compute(pod_spec.get("resources"))
        && !containers
            .clone()
            .any(|container| has_compute(container.get("resources")));
    let cross_namespace_affinity = ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
        let Some(affinity) = pod_spec.pointer(&format!("/affinity/{kind}")) else {
            return false;
        };
        let required = affinity
            .get("requiredDuringSchedulingIgnoredDuringExecution")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        let preferred = affinity
            .get("preferredDuringSchedulingIgnoredDuringExecution")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|weighted| weighted.get("podAffinityTerm"));
        required.chain(preferred).any(|term| {
            term.get("namespaces")
                .and_then(Value::as_array)
                .is_some_and(|names| !names.is_empty())
                || term.get("namespaceSelector").is_some_and(|s| !s.is_null())
        })
    });
    let node_selector = pod_spec
        .get("nodeSelector")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_string())))
        .collect();
    PodTraits {
        priority_class: str_at(pod_spec, &["priorityClassName"])
            .filter(|name| !name.is_empty())
            .map(String::from),
        terminating: pod_spec
            .get("activeDeadlineSeconds")
            .and_then(Value::as_i64)
            .is_some_and(|seconds| seconds >= 0),
        best_effort,
        cross_namespace_affinity,
        node_selector,
    }
}

/// Whether `quota` counts a pod with `traits` (every scope must match).
pub fn quota_applies_to_pod(quota: &QuotaFacts, traits: &PodTraits) -> bool {
    quota.scopes.iter().all(|requirement| {
        match requirement.scope.as_str() {
            "Terminating" => traits.terminating,
            "NotTerminating" => !traits.terminating,
            "BestEffort" => traits.best_effort,
            "NotBestEffort" => !traits.best_effort,
            "PriorityClass" => value_matches(requirement, traits.priority_class.as_deref()),
            "CrossNamespacePodAffinity" => traits.cross_namespace_affinity,
            // VolumeAttributesClass and scopes unknown to this version match no pod.
            _ => false,
        }
    })
}

/// Whether `quota` counts a claim of volume attributes class `attributes_class`.
pub fn quota_applies_to_claim(quota: &QuotaFacts, attributes_class: Option<&str>) -> bool {
    quota.scopes.iter().all(|requirement| {
        requirement.scope == "VolumeAttributesClass" && value_matches(requirement, attributes_class)
    })
}

/// A scope selector requirement over a value that may be absent (an empty name is absent).
fn value_matches(requirement: &ScopeRequirement, value: Option<&str>) -> bool {
    let value = value.filter(|v| !v.is_empty());
    match requirement.operator.as_str() {
        "In" => value.is_some_and(|v| requirement.values.iter().any(|w| w == v)),
        "NotIn" => value.is_none_or(|v| requirement.values.iter().all(|w| w != v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

/// How many pods exist at once at the new size, and why (for the warning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    pub pods: u128,
    /// `2 pods at once (1 replica + 1 surge)`, `3 pods at once (3 replicas)`.
    pub why: String,
    /// What the quota's `used` already counts of the object's own pods (see the module docs).
    pub credit: PodMemory,
}

impl Default for Demand {
    fn default() -> Self {
        Self {
            pods: 1,
            why: "1 pod".into(),
            credit: PodMemory::default(),
        }
    }
}

/// The pods of `object` (a `kind`) that exist at once: see the module documentation.
/// `nodes` counts a DaemonSet's pods (one per node matching its `nodeSelector`; 1 without node
/// facts). Never less than 1: a workload scaled to zero will scale up again.
pub fn pods_at_once(kind: WorkloadKind, object: &Value, nodes: Option<&[NodeFacts]>) -> Demand {
    let int = |path: &str| object.pointer(path).and_then(Value::as_u64);
    let plural = |n: u128, one: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {one}s")
        }
    };
    let (pods, why) = match kind {
        WorkloadKind::Deployment => {
            let replicas = u128::from(int("/spec/replicas").unwrap_or(1));
            let surge = if str_at(object, &["spec", "strategy", "type"]) == Some("Recreate") {
                0
            } else {
                let surge = object.pointer("/spec/strategy/rollingUpdate/maxSurge");
                scaled(surge, replicas, 25)
            };
            (
                replicas + surge,
                format!("{} + {surge} surge", plural(replicas, "replica")),
            )
        }
        WorkloadKind::StatefulSet | WorkloadKind::ReplicaSet => {
            let replicas = u128::from(int("/spec/replicas").unwrap_or(1));
            (replicas, plural(replicas, "replica"))
        }
        WorkloadKind::DaemonSet => {
            let selector = object
                .pointer("/spec/template/spec")
                .map(|spec| pod_traits(spec).node_selector)
                .unwrap_or_default();
            let matching = nodes.map_or(1, |nodes| {
                nodes.iter().filter(|node| selects(&selector, node)).count() as u128
            });
            let surge = object.pointer("/spec/updateStrategy/rollingUpdate/maxSurge");
            let surge = scaled(surge, matching, 0);
            (
                matching + surge,
                format!("{} + {surge} surge", plural(matching, "node")),
            )
        }
        WorkloadKind::Job | WorkloadKind::CronJob => {
            let spec = if kind == WorkloadKind::Job {
                "/spec"
            } else {
                "/spec/jobTemplate/spec"
            };
            let parallelism = int(&format!("{spec}/parallelism")).unwrap_or(1);
            let pods = int(&format!("{spec}/completions"))
                .map_or(parallelism, |completions| parallelism.min(completions));
            (u128::from(pods), format!("parallelism {pods}"))
        }
        WorkloadKind::Pod | WorkloadKind::PersistentVolumeClaim => (1, "1 pod".to_string()),
    };
    let pods = pods.max(1);
    let at_once = if pods == 1 {
        "1 pod".to_string()
    } else {
        format!("{pods} pods")
    };
    Demand {
        pods,
        why: format!("{at_once} at once ({why})"),
        credit: PodMemory::default(),
    }
}

/// An int-or-percent (`1`, `"25%"`) of `total`, rounded up as the Deployment controller rounds
/// `maxSurge`; `default_percent` when unset or unreadable.
fn scaled(value: Option<&Value>, total: u128, default_percent: u128) -> u128 {
    let percent = |p: u128| (p * total).div_ceil(100);
    match value {
        Some(Value::Number(n)) => n.as_u64().map_or(percent(default_percent), u128::from),
        Some(Value::String(text)) => match text.strip_suffix('%').map(str::parse::<u128>) {
            Some(Ok(p)) => percent(p),
            _ => text
                .parse::<u128>()
                .unwrap_or_else(|_| percent(default_percent)),
        },
        _ => percent(default_percent),
    }
}

/// What the quota already counts of an UPDATEd workload's own pods: those running its live
/// template (`live`, the object as stored), at the live template's size. Nothing for kinds
/// whose pods do not follow their template (ReplicaSet), run later (CronJob) or are only raised
/// at CREATE, and nothing while the controller has not observed the live generation.
pub fn credit_of(kind: WorkloadKind, live: &Value) -> PodMemory {
    let status = match kind {
        WorkloadKind::Deployment | WorkloadKind::StatefulSet => "/status/updatedReplicas",
        WorkloadKind::DaemonSet => "/status/updatedNumberScheduled",
        _ => return PodMemory::default(),
    };
    let generation = live.pointer("/metadata/generation").and_then(Value::as_i64);
    let observed = live
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64);
    if generation.is_none() || generation != observed {
        return PodMemory::default();
    }
    let updated = u128::from(live.pointer(status).and_then(Value::as_u64).unwrap_or(0));
    let each = kind
        .pod_spec_pointer()
        .and_then(|pointer| live.pointer(&pointer))
        .map(pod_memory_of)
        .unwrap_or_default();
    PodMemory {
        limits: each.limits * updated,
        requests: each.requests * updated,
    }
}

/// Whether a node matches a `nodeSelector` (every label equal).
fn selects(selector: &BTreeMap<String, String>, node: &NodeFacts) -> bool {
    selector
        .iter()
        .all(|(key, value)| node.labels.get(key) == Some(value))
}

/// The largest allocatable memory of an eligible node matching `selector`, with its name.
pub fn largest_node(
    nodes: &[NodeFacts],
    selector: &BTreeMap<String, String>,
) -> Option<(u128, String)> {
    nodes
        .iter()
        .filter(|node| node.eligible() && selects(selector, node))
        .filter_map(|node| Some((node.allocatable_memory?, node.name.clone())))
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(&a.1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MI: u128 = 1 << 20;

    #[test]
    fn pod_memory_sums_app_containers_takes_the_largest_init_and_defaults_requests_to_limits() {
        let spec = json!({
            "overhead": {"memory": "10Mi"},
            "initContainers": [
                {"name": "migrate", "resources": {"limits": {"memory": "1Gi"}, "requests": {"memory": "1Gi"}}},
                {"name": "proxy", "restartPolicy": "Always",
                 "resources": {"limits": {"memory": "64Mi"}, "requests": {"memory": "32Mi"}}},
                {"name": "late", "resources": {"limits": {"memory": "900Mi"}}},
            ],
            "containers": [
                {"name": "app", "resources": {"limits": {"memory": "256Mi"}, "requests": {"memory": "128Mi"}}},
                {"name": "limit-only", "resources": {"limits": {"memory": "128Mi"}}},
                {"name": "unbounded"},
            ],
        });
        let pod = pod_memory_of(&spec);
        // App 256 + 128 + sidecar 64 = 448Mi of limits; the first init container needs 1Gi; the
        // last runs beside the sidecar: 900 + 64 = 964Mi. The largest wins, plus overhead.
        assert_eq!(pod.limits, (1024 + 10) * MI);
        // Requests: 128 + 128 (defaulted from the limit) + 32 = 288; init 1Gi; 900 + 32.
        assert_eq!(pod.requests, (1024 + 10) * MI);
        let small = json!({"containers": [
            {"name": "app", "resources": {"limits": {"memory": "256Mi"}, "requests": {"memory": "128Mi"}}},
            {"name": "limit-only", "resources": {"limits": {"memory": "128Mi"}}},
        ]});
        assert_eq!(
            pod_memory_of(&small),
            PodMemory {
                limits: 384 * MI,
                requests: 256 * MI
            }
        );
    }

    fn deployment(replicas: u64, strategy: Value) -> Value {
        json!({"spec": {"replicas": replicas, "strategy": strategy,
            "template": {"spec": {"containers": []}}}})
    }

    #[test]
    fn a_deployment_counts_its_replicas_and_the_surge_rounded_up_as_the_controller_does() {
        let pods = |object: &Value| pods_at_once(WorkloadKind::Deployment, object, None).pods;
        // The default maxSurge is 25%, rounded up: 1 of 1, 1 of 4, 2 of 5.
        assert_eq!(pods(&deployment(1, json!(null))), 2);
        assert_eq!(pods(&deployment(4, json!({"type": "RollingUpdate"}))), 5);
        assert_eq!(pods(&deployment(5, json!({}))), 7);
        let surge =
            |value: Value| json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": value}});
        assert_eq!(pods(&deployment(3, surge(json!("50%")))), 5);
        assert_eq!(pods(&deployment(3, surge(json!(0)))), 3);
        assert_eq!(pods(&deployment(3, surge(json!(2)))), 5);
        assert_eq!(pods(&deployment(10, surge(json!("1%")))), 11);
        // Recreate deletes the old pods first.
        assert_eq!(pods(&deployment(3, json!({"type": "Recreate"}))), 3);
        // Scaled to zero: it will scale up again, one pod at least.
        assert_eq!(pods(&deployment(0, surge(json!(0)))), 1);
        let demand = pods_at_once(WorkloadKind::Deployment, &deployment(1, json!(null)), None);
        assert_eq!(demand.why, "2 pods at once (1 replica + 1 surge)");
    }

    #[test]
    fn other_kinds_count_the_pods_they_create_at_once() {
        let count = |kind, object: Value| pods_at_once(kind, &object, None).pods;
        assert_eq!(
            count(WorkloadKind::StatefulSet, json!({"spec": {"replicas": 3}})),
            3
        );
        assert_eq!(count(WorkloadKind::ReplicaSet, json!({"spec": {}})), 1);
        assert_eq!(
            count(WorkloadKind::Job, json!({"spec": {"parallelism": 4}})),
            4
        );
        assert_eq!(
            count(
                WorkloadKind::Job,
                json!({"spec": {"parallelism": 4, "completions": 2}})
            ),
            2
        );
        assert_eq!(count(WorkloadKind::Job, json!({"spec": {}})), 1);
        assert_eq!(
            count(
                WorkloadKind::CronJob,
                json!({"spec": {"jobTemplate": {"spec": {"parallelism": 3}}}})
            ),
            3
        );
        assert_eq!(count(WorkloadKind::Pod, json!({})), 1);
        let node = |name: &str, pool: &str| NodeFacts {
            name: name.into(),
            allocatable_memory: Some(1 << 34),
            ready: true,
            unschedulable: false,
            labels: [("pool".to_string(), pool.to_string())].into(),
        };
        let nodes = [node("a", "gpu"), node("b", "gpu"), node("c", "web")];
        let daemonset = json!({"spec": {
            "updateStrategy": {"rollingUpdate": {"maxSurge": "50%"}},
            "template": {"spec": {"nodeSelector": {"pool": "gpu"}}}}});
        let demand = pods_at_once(WorkloadKind::DaemonSet, &daemonset, Some(&nodes));
        assert_eq!(
            (demand.pods, demand.why.as_str()),
            (3, "3 pods at once (2 nodes + 1 surge)")
        );
        let everywhere = json!({"spec": {"template": {"spec": {}}}});
        assert_eq!(
            pods_at_once(WorkloadKind::DaemonSet, &everywhere, Some(&nodes)).pods,
            3
        );
    }

    fn quota(scopes: &[(&str, &str, &[&str])]) -> QuotaFacts {
        QuotaFacts {
            scopes: scopes
                .iter()
                .map(|(scope, operator, values)| ScopeRequirement {
                    scope: scope.to_string(),
                    operator: operator.to_string(),
                    values: values.iter().map(|v| v.to_string()).collect(),
                })
                .collect(),
            ..QuotaFacts::default()
        }
    }

    #[test]
    fn scoped_quotas_count_only_the_pods_they_match() {
        let burstable = json!({"priorityClassName": "batch", "activeDeadlineSeconds": 600,
            "containers": [{"name": "a", "resources": {"limits": {"memory": "1Gi"}}}]});
        let best_effort = json!({"containers": [{"name": "a"}]});
        let traits = pod_traits(&burstable);
        let none = pod_traits(&best_effort);
        assert!(traits.terminating && !traits.best_effort);
        assert!(!none.terminating && none.best_effort && none.priority_class.is_none());
        let applies = |quota: &QuotaFacts, traits: &PodTraits| quota_applies_to_pod(quota, traits);
        assert!(
            applies(&quota(&[]), &traits),
            "an unscoped quota counts every pod"
        );
        assert!(applies(&quota(&[("Terminating", "Exists", &[])]), &traits));
        assert!(!applies(
            &quota(&[("NotTerminating", "Exists", &[])]),
            &traits
        ));
        assert!(applies(
            &quota(&[("NotBestEffort", "Exists", &[])]),
            &traits
        ));
        assert!(!applies(&quota(&[("BestEffort", "Exists", &[])]), &traits));
        assert!(applies(&quota(&[("BestEffort", "Exists", &[])]), &none));
        // PriorityClass: In / NotIn / Exists / DoesNotExist on the pod's class.
        let class = |operator: &str, values: &[&str]| quota(&[("PriorityClass", operator, values)]);
        assert!(applies(&class("In", &["batch", "x"]), &traits));
        assert!(!applies(&class("In", &["high"]), &traits));
        assert!(!applies(&class("In", &["high"]), &none));
        assert!(applies(&class("NotIn", &["high"]), &traits));
        assert!(applies(&class("NotIn", &["high"]), &none));
        assert!(!applies(&class("NotIn", &["batch"]), &traits));
        assert!(applies(&class("Exists", &[]), &traits));
        assert!(!applies(&class("Exists", &[]), &none));
        assert!(applies(&class("DoesNotExist", &[]), &none));
        assert!(!applies(&class("DoesNotExist", &[]), &traits));
        // All scopes must match.
        let both = quota(&[
            ("Terminating", "Exists", &[]),
            ("PriorityClass", "In", &["high"]),
        ]);
        assert!(!applies(&both, &traits));
        // Cross-namespace affinity, and scopes that never match a pod.
        let affine = json!({"affinity": {"podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 1, "podAffinityTerm": {"namespaceSelector": {}, "topologyKey": "k"}}]}}});
        assert!(pod_traits(&affine).cross_namespace_affinity);
        assert!(!traits.cross_namespace_affinity);
        assert!(!applies(
            &quota(&[("VolumeAttributesClass", "Exists", &[])]),
            &traits
        ));
        // Claims: only unscoped and VolumeAttributesClass quotas.
        assert!(quota_applies_to_claim(&quota(&[]), None));
        assert!(!quota_applies_to_claim(
            &quota(&[("NotTerminating", "Exists", &[])]),
            None
        ));
        let gold = quota(&[("VolumeAttributesClass", "In", &["gold"])]);
        assert!(quota_applies_to_claim(&gold, Some("gold")));
        assert!(!quota_applies_to_claim(&gold, None));
    }

    #[test]
    fn only_pods_running_the_observed_live_template_are_credited() {
        let live = |generation: i64, observed: i64, updated: u64| {
            json!({"metadata": {"generation": generation},
                "status": {"observedGeneration": observed, "updatedReplicas": updated, "replicas": 3},
                "spec": {"template": {"spec": {"containers": [
                    {"name": "a", "resources": {"limits": {"memory": "256Mi"}}}]}}}})
        };
        let credit = credit_of(WorkloadKind::Deployment, &live(2, 2, 3));
        assert_eq!(
            credit,
            PodMemory {
                limits: 768 * MI,
                requests: 768 * MI
            }
        );
        // Pods that were refused (none updated) and a generation the controller has not seen
        // yet are not credited.
        assert_eq!(
            credit_of(WorkloadKind::Deployment, &live(2, 2, 0)),
            PodMemory::default()
        );
        assert_eq!(
            credit_of(WorkloadKind::Deployment, &live(3, 2, 3)),
            PodMemory::default()
        );
        assert_eq!(
            credit_of(WorkloadKind::ReplicaSet, &live(2, 2, 3)),
            PodMemory::default()
        );
        assert_eq!(
            credit_of(WorkloadKind::CronJob, &live(2, 2, 3)),
            PodMemory::default()
        );
    }

    #[test]
    fn the_largest_eligible_node_matching_the_selector() {
        let node = |name: &str, gi: u128, ready: bool, unschedulable: bool, pool: &str| NodeFacts {
            name: name.into(),
            allocatable_memory: Some(gi << 30),
            ready,
            unschedulable,
            labels: [("pool".to_string(), pool.to_string())].into(),
        };
        let nodes = [
            node("big-but-down", 64, false, false, "web"),
            node("big-but-cordoned", 32, true, true, "web"),
            node("web-1", 8, true, false, "web"),
            node("db-1", 16, true, false, "db"),
        ];
        assert_eq!(
            largest_node(&nodes, &BTreeMap::new()),
            Some((16 << 30, "db-1".into()))
        );
        let web = [("pool".to_string(), "web".to_string())].into();
        assert_eq!(largest_node(&nodes, &web), Some((8 << 30, "web-1".into())));
        let none = [("pool".to_string(), "gpu".to_string())].into();
        assert_eq!(largest_node(&nodes, &none), None);
    }
}
