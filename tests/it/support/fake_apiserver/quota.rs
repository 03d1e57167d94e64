//! ResourceQuota as the quota admission plugin and the resourcequota controller enforce it
//! (`plugin/pkg/admission/resourcequota`, `pkg/quota/v1/evaluator/core`, Kubernetes 1.24):
//!
//! - Usage of a Pod: `pods`, `count/pods`, and from the summed container requests/limits (init
//!   containers as a floor, plus `spec.overhead`): `cpu`/`requests.cpu`, `limits.cpu`,
//!   `memory`/`requests.memory`, `limits.memory`, the same for `ephemeral-storage`. A terminal
//!   pod (Succeeded/Failed), or one whose deletion grace has passed, counts only `count/pods`.
//! - Usage of a PersistentVolumeClaim: `persistentvolumeclaims`, `count/persistentvolumeclaims`,
//!   `requests.storage`, and per StorageClass
//!   `<class>.storageclass.storage.k8s.io/{persistentvolumeclaims,requests.storage}`.
//! - Any other resource: `count/<plural>[.<group>]` (and the legacy names `configmaps`,
//!   `secrets`, `services`, `resourcequotas`, `replicationcontrollers`).
//! - Scopes (`spec.scopes`, `spec.scopeSelector`): `Terminating` / `NotTerminating`
//!   (`activeDeadlineSeconds >= 0`), `BestEffort` / `NotBestEffort` (QoS class), `PriorityClass`
//!   (operators In, NotIn, Exists, DoesNotExist on `spec.priorityClassName`). A scoped quota
//!   never matches claims or other objects.
//! - Admission (CREATE; claims also on UPDATE, billed the growth; pods also on `pods/resize`): for
//!   each matching quota, a pod must state every cpu/memory resource the quota tracks
//!   (`failed quota: <name>: must specify limits.memory,requests.memory`), then usage + request
//!   must stay within `hard` (`exceeded quota: <name>, requested: ..., used: ..., limited: ...`),
//!   answered 403 Forbidden with the apiserver's wording. Dry runs are checked, not billed.
//! - The controller: `status.hard` = `spec.hard`, `status.used` = the usage of every object the
//!   quota matches, kept current on every change in the namespace (the real controller is
//!   asynchronous; admission itself also bills the request, so the steady state is the same).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::Collection;
use super::defaults::qos_class;
use super::quantity::Quantity;
use super::rules::Refusal;

pub type ResourceList = BTreeMap<String, Quantity>;

const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// The quota evaluator responsible for a collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Evaluator {
    Pods,
    Claims,
    Count,
}

fn evaluator(collection: &Collection) -> Evaluator {
    match (collection.prefix.as_str(), collection.plural.as_str()) {
        ("api/v1", "pods") => Evaluator::Pods,
        ("api/v1", "persistentvolumeclaims") => Evaluator::Claims,
        _ => Evaluator::Count,
    }
}

/// `count/<plural>` for the core group, `count/<plural>.<group>` otherwise.
fn count_name(collection: &Collection) -> String {
    let (group, _) = collection.group_version();
    if group.is_empty() {
        format!("count/{}", collection.plural)
    } else {
        format!("count/{}.{group}", collection.plural)
    }
}

fn legacy_count_name(collection: &Collection) -> Option<&'static str> {
    if collection.prefix != "api/v1" {
        return None;
    }
    match collection.plural.as_str() {
        "configmaps" => Some("configmaps"),
        "secrets" => Some("secrets"),
        "services" => Some("services"),
        "resourcequotas" => Some("resourcequotas"),
        "replicationcontrollers" => Some("replicationcontrollers"),
        _ => None,
    }
}

const POD_RESOURCES: [&str; 11] = [
    "count/pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
];

/// The hard resources of `names` the collection's evaluator tracks (`MatchingResources`).
fn matching_resources(collection: &Collection, names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter(|name| match evaluator(collection) {
            Evaluator::Pods => {
                POD_RESOURCES.contains(&name.as_str())
                    || name.starts_with("hugepages-")
                    || name.starts_with("requests.hugepages-")
            }
            Evaluator::Claims => {
                matches!(
                    name.as_str(),
                    "persistentvolumeclaims" | "count/persistentvolumeclaims" | "requests.storage"
                ) || name.ends_with(&format!("{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"))
                    || name.ends_with(&format!("{STORAGE_CLASS_SUFFIX}requests.storage"))
            }
            Evaluator::Count => {
                **name == count_name(collection)
                    || legacy_count_name(collection).is_some_and(|legacy| name.as_str() == legacy)
            }
        })
        .cloned()
        .collect()
}

fn quantity_of(value: &Value) -> Option<Quantity> {
    value.as_str().and_then(Quantity::parse)
}

fn add_to(list: &mut ResourceList, name: &str, quantity: Quantity) {
    let sum = list
        .get(name)
        .copied()
        .map_or(quantity, |have| have + quantity);
    list.insert(name.to_string(), sum);
}

fn max_into(list: &mut ResourceList, name: &str, quantity: Quantity) {
    if list.get(name).is_none_or(|have| quantity > *have) {
        list.insert(name.to_string(), quantity);
    }
}

fn resource_list(value: &Value) -> ResourceList {
    value
        .as_object()
        .map(|fields| {
            fields
                .iter()
                .filter_map(|(k, v)| quantity_of(v).map(|q| (k.clone(), q)))
                .collect()
        })
        .unwrap_or_default()
}

/// `PodRequestsAndLimits`: summed containers, init containers as a floor, plus the overhead.
fn pod_requests_and_limits(spec: &Value) -> (ResourceList, ResourceList) {
    let mut requests = ResourceList::new();
    let mut limits = ResourceList::new();
    for container in spec["containers"].as_array().into_iter().flatten() {
        for (name, q) in resource_list(&container["resources"]["requests"]) {
            add_to(&mut requests, &name, q);
        }
        for (name, q) in resource_list(&container["resources"]["limits"]) {
            add_to(&mut limits, &name, q);
        }
    }
    for container in spec["initContainers"].as_array().into_iter().flatten() {
        for (name, q) in resource_list(&container["resources"]["requests"]) {
            max_into(&mut requests, &name, q);
        }
        for (name, q) in resource_list(&container["resources"]["limits"]) {
            max_into(&mut limits, &name, q);
        }
    }
    for (name, q) in resource_list(&spec["overhead"]) {
        add_to(&mut requests, &name, q);
        if limits.contains_key(&name) {
            add_to(&mut limits, &name, q);
        }
    }
    (requests, limits)
}

/// `podComputeUsageHelper`.
fn compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut usage = ResourceList::new();
    usage.insert("pods".into(), Quantity::from_units(1));
    for resource in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(request) = requests.get(resource) {
            usage.insert(resource.into(), *request);
            usage.insert(format!("requests.{resource}"), *request);
        }
        if let Some(limit) = limits.get(resource) {
            usage.insert(format!("limits.{resource}"), *limit);
        }
    }
    for (name, request) in requests {
        if name.starts_with("hugepages-") {
            usage.insert(name.clone(), *request);
            usage.insert(format!("requests.{name}"), *request);
        }
    }
    usage
}

/// Whether a pod still counts for compute quota (`QuotaV1Pod`): not terminal, and not past the
/// end of its deletion grace.
fn pod_counts(pod: &Value, now: jiff::Timestamp) -> bool {
    if matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    ) {
        return false;
    }
    let deleted = pod["metadata"]["deletionTimestamp"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let grace = pod["metadata"]["deletionGracePeriodSeconds"].as_i64();
    if let (Some(deleted), Some(grace)) = (deleted, grace)
        && let Ok(end) = deleted.checked_add(jiff::SignedDuration::from_secs(grace))
        && now > end
    {
        return false;
    }
    true
}

/// The storage class a claim is charged to (the beta annotation first, as the apiserver reads it).
fn claim_class(claim: &Value) -> Option<String> {
    claim["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"]
        .as_str()
        .or(claim["spec"]["storageClassName"].as_str())
        .filter(|c| !c.is_empty())
        .map(str::to_string)
}

/// The usage an object adds to the quotas that match it.
pub fn usage(collection: &Collection, object: &Value, now: jiff::Timestamp) -> ResourceList {
    let mut usage = ResourceList::new();
    match evaluator(collection) {
        Evaluator::Pods => {
            usage.insert("count/pods".into(), Quantity::from_units(1));
            if pod_counts(object, now) {
                let (requests, limits) = pod_requests_and_limits(&object["spec"]);
                usage.extend(compute_usage(&requests, &limits));
            }
        }
        Evaluator::Claims => {
            let one = Quantity::from_units(1);
            usage.insert("persistentvolumeclaims".into(), one);
            usage.insert("count/persistentvolumeclaims".into(), one);
            let class = claim_class(object);
            if let Some(class) = &class {
                usage.insert(
                    format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
                    one,
                );
            }
            if let Some(storage) = quantity_of(&object["spec"]["resources"]["requests"]["storage"])
            {
                usage.insert("requests.storage".into(), storage);
                if let Some(class) = &class {
                    usage.insert(
                        format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"),
                        storage,
                    );
                }
            }
        }
        Evaluator::Count => {
            usage.insert(count_name(collection), Quantity::from_units(1));
            if let Some(legacy) = legacy_count_name(collection) {
                usage.insert(legacy.into(), Quantity::from_units(1));
            }
        }
    }
    usage
}

/// The quota's scope selectors: `spec.scopes` as `Exists`, then `spec.scopeSelector`.
fn scope_selectors(quota: &Value) -> Vec<Value> {
    let mut selectors: Vec<Value> = quota["spec"]["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|scope| json!({"scopeName": scope, "operator": "Exists"}))
        .collect();
    selectors.extend(
        quota["spec"]["scopeSelector"]["matchExpressions"]
            .as_array()
            .into_iter()
            .flatten()
            .cloned(),
    );
    selectors
}

fn pod_matches_scope(selector: &Value, pod: &Value) -> bool {
    let spec = &pod["spec"];
    let terminating = spec["activeDeadlineSeconds"]
        .as_i64()
        .is_some_and(|s| s >= 0);
    let best_effort = qos_class(spec) == "BestEffort";
    match selector["scopeName"].as_str().unwrap_or_default() {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => best_effort,
        "NotBestEffort" => !best_effort,
        "PriorityClass" => {
            let class = spec["priorityClassName"].as_str().filter(|c| !c.is_empty());
            let values: Vec<&str> = selector["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            match selector["operator"].as_str().unwrap_or_default() {
                "Exists" => class.is_some(),
                "DoesNotExist" => class.is_none(),
                "In" => class.is_some_and(|c| values.contains(&c)),
                "NotIn" => class.is_none_or(|c| !values.contains(&c)),
                _ => false,
            }
        }
        _ => false,
    }
}

fn hard_names(quota: &Value, field: &str) -> Vec<String> {
    quota[field]["hard"]
        .as_object()
        .map(|hard| hard.keys().cloned().collect())
        .unwrap_or_default()
}

/// Whether the quota applies to the object: it tracks at least one resource of the object's
/// evaluator, and every scope selects it (`generic.Matches`).
fn quota_matches(quota: &Value, field: &str, collection: &Collection, object: &Value) -> bool {
    if matching_resources(collection, &hard_names(quota, field)).is_empty() {
        return false;
    }
    scope_selectors(quota).iter().all(|selector| {
        evaluator(collection) == Evaluator::Pods && pod_matches_scope(selector, object)
    })
}

/// `quota.Mask`.
fn mask(list: &ResourceList, names: &[String]) -> ResourceList {
    list.iter()
        .filter(|(k, _)| names.contains(k))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// `prettyPrint`: `name=value` sorted by name, joined with `,`.
fn pretty(list: &ResourceList) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn forbidden(collection: &Collection, name: &str, message: String) -> Refusal {
    let mut refusal = Refusal::new(
        axum::http::StatusCode::FORBIDDEN,
        "Forbidden",
        format!(
            "{} \"{name}\" is forbidden: {message}",
            collection.resource()
        ),
    );
    let (group, _) = collection.group_version();
    refusal.details = json!({"name": name, "group": group, "kind": collection.plural});
    refusal
}

/// Whether some evaluator tracks the resource name.
fn tracked_by_any(name: &str) -> bool {
    let names = [name.to_string()];
    !matching_resources(&Collection::core("", "pods"), &names).is_empty()
        || !matching_resources(&Collection::core("", "persistentvolumeclaims"), &names).is_empty()
        || name.starts_with("count/")
        || matches!(
            name,
            "configmaps" | "secrets" | "services" | "resourcequotas" | "replicationcontrollers"
        )
}

/// The quota status the controller writes: `hard` from the spec, `used` summed over the
/// objects of the namespace the quota matches. `objects` holds every collection of the
/// namespace.
pub fn status(quota: &Value, objects: &[(&Collection, &Value)], now: jiff::Timestamp) -> Value {
    let hard = resource_list(&quota["spec"]["hard"]);
    let names: Vec<String> = hard.keys().cloned().collect();
    // Every tracked resource has a value, zero while nothing uses it (`CalculateUsageStats`).
    let mut used: ResourceList = names
        .iter()
        .filter(|name| tracked_by_any(name))
        .map(|name| (name.clone(), Quantity::zero()))
        .collect();
    for (collection, object) in objects {
        let tracked = matching_resources(collection, &names);
        if tracked.is_empty() || !quota_matches(quota, "spec", collection, object) {
            continue;
        }
        for (name, quantity) in mask(&usage(collection, object, now), &tracked) {
            add_to(&mut used, &name, quantity);
        }
    }
    let render = |list: &ResourceList| -> Value {
        Value::Object(
            list.iter()
                .map(|(k, v)| (k.clone(), json!(v.canonical())))
                .collect(),
        )
    };
    json!({"hard": render(&hard), "used": render(&used)})
}

/// Which writes the quota admission evaluates.
pub fn handles(collection: &Collection, operation: &str, subresource: &str) -> bool {
    matches!(
        (evaluator(collection), operation, subresource),
        (Evaluator::Pods | Evaluator::Count, "CREATE", "")
            | (Evaluator::Pods, "UPDATE", "resize")
            | (Evaluator::Claims, "CREATE" | "UPDATE", "")
    )
}

/// The quota admission's decision on a write: `quotas` are the namespace's ResourceQuotas (with
/// their current status), `old` the stored object on UPDATE.
pub fn admit(
    collection: &Collection,
    name: &str,
    object: &Value,
    old: Option<&Value>,
    quotas: &[Value],
    now: jiff::Timestamp,
) -> Result<(), Refusal> {
    let mut interesting = Vec::new();
    for quota in quotas {
        if !quota_matches(quota, "status", collection, object) {
            continue;
        }
        let quota_name = quota["metadata"]["name"].as_str().unwrap_or_default();
        let tracked = matching_resources(collection, &hard_names(quota, "status"));
        if evaluator(collection) == Evaluator::Pods {
            let missing = missing_resources(&object["spec"], &tracked);
            if !missing.is_empty() {
                return Err(forbidden(
                    collection,
                    name,
                    format!(
                        "failed quota: {quota_name}: must specify {}",
                        missing.join(",")
                    ),
                ));
            }
        }
        let used = resource_list(&quota["status"]["used"]);
        if tracked.iter().any(|r| !used.contains_key(r)) {
            return Err(forbidden(
                collection,
                name,
                format!(
                    "status unknown for quota: {quota_name}, resources: {}",
                    tracked.join(",")
                ),
            ));
        }
        interesting.push(quota);
    }
    let mut delta = usage(collection, object, now);
    if let Some(old) = old {
        let before = usage(collection, old, now);
        for (name, quantity) in delta.iter_mut() {
            if let Some(previous) = before.get(name) {
                let grown = *quantity - *previous;
                *quantity = if grown.is_negative() {
                    Quantity::zero()
                } else {
                    grown
                };
            }
        }
    }
    delta.retain(|_, q| !q.is_zero());
    if delta.is_empty() {
        return Ok(());
    }
    for quota in interesting {
        let hard = resource_list(&quota["status"]["hard"]);
        let used = resource_list(&quota["status"]["used"]);
        let names: Vec<String> = hard.keys().cloned().collect();
        let requested = mask(&delta, &names);
        let exceeded: Vec<String> = requested
            .iter()
            .filter(|(resource, quantity)| {
                let now_used = used.get(*resource).copied().unwrap_or_else(Quantity::zero);
                hard.get(*resource)
                    .is_some_and(|limit| now_used + **quantity > *limit)
            })
            .map(|(resource, _)| resource.clone())
            .collect();
        if !exceeded.is_empty() {
            let quota_name = quota["metadata"]["name"].as_str().unwrap_or_default();
            return Err(forbidden(
                collection,
                name,
                format!(
                    "exceeded quota: {quota_name}, requested: {}, used: {}, limited: {}",
                    pretty(&mask(&requested, &exceeded)),
                    pretty(&mask(&used, &exceeded)),
                    pretty(&mask(&hard, &exceeded)),
                ),
            ));
        }
    }
    Ok(())
}

/// The cpu/memory resources a quota tracks that some container of the pod does not state
/// (`enforcePodContainerConstraints`), sorted.
fn missing_resources(spec: &Value, tracked: &[String]) -> Vec<String> {
    const VALIDATED: [&str; 6] = [
        "cpu",
        "memory",
        "requests.cpu",
        "requests.memory",
        "limits.cpu",
        "limits.memory",
    ];
    let required: Vec<&String> = tracked
        .iter()
        .filter(|r| VALIDATED.contains(&r.as_str()))
        .collect();
    let mut missing: Vec<String> = Vec::new();
    let containers = ["containers", "initContainers"]
        .into_iter()
        .flat_map(|list| spec[list].as_array().into_iter().flatten());
    for container in containers {
        let usage = compute_usage(
            &resource_list(&container["resources"]["requests"]),
            &resource_list(&container["resources"]["limits"]),
        );
        for resource in &required {
            if !usage.contains_key(*resource) && !missing.contains(resource) {
                missing.push((*resource).clone());
            }
        }
    }
    missing.sort();
    missing
}
