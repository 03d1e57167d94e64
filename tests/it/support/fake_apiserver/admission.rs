//! The built-in admission plugins selfheal's writes meet, in the apiserver's order
//! (`pkg/kubeapiserver/options/plugins.go`, `AllOrderedPlugins`): every plugin's mutating half
//! runs first, in order — **LimitRanger** defaults, ServiceAccount, DefaultStorageClass, ... and
//! the mutating webhooks last — then every validating half — LimitRanger's min/max/ratio,
//! ..., ResourceQuota last. So a LimitRange's `default` fills a container *before* selfheal's
//! webhook sees the pod, and the LimitRange maximum and the quota judge the object *after* it.
//!
//! - LimitRanger (Pods on CREATE, claims on CREATE and UPDATE, `pods/resize`): `type: Container`
//!   `default` / `defaultRequest` fill containers and init containers that state no value (with
//!   the `kubernetes.io/limit-ranger` annotation); then `min`, `max` and
//!   `maxLimitRequestRatio` per container, `type: Pod` on the summed pod, and
//!   `type: PersistentVolumeClaim` `min` / `max` on a claim's requested storage. Each LimitRange
//!   is judged alone; its errors are aggregated (`[a, b]`, duplicates once) into
//!   `<resource> "<name>" is forbidden: ...` (403). An UPDATE of an object being deleted is not
//!   judged.
//! - DefaultStorageClass (claims on CREATE): a claim without `storageClassName` gets the class
//!   annotated `storageclass.kubernetes.io/is-default-class: "true"` (two defaults: 500, as 1.24).
//! - ServiceAccount: see `rules::service_account_admission`.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::Collection;
use super::quantity::Quantity;
use super::rules::Refusal;

fn sorted_entries(list: &Value) -> Vec<(String, Value)> {
    let mut entries: Vec<(String, Value)> = list
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries
}

fn items<'a>(limit_range: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> {
    limit_range["spec"]["limits"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |item| item["type"] == kind)
}

/// LimitRanger's mutating half on a Pod: every LimitRange's container defaults, in order.
pub fn limit_ranger_mutate(pod: &mut Value, limit_ranges: &[Value]) {
    for limit_range in limit_ranges {
        let mut default_limits = serde_json::Map::new();
        let mut default_requests = serde_json::Map::new();
        for item in items(limit_range, "Container") {
            for (k, v) in sorted_entries(&item["defaultRequest"]) {
                default_requests.insert(k, v);
            }
            for (k, v) in sorted_entries(&item["default"]) {
                default_limits.insert(k, v);
            }
        }
        let mut notes = Vec::new();
        for (list, prefix) in [
            ("containers", "container"),
            ("initContainers", "init container"),
        ] {
            let Some(containers) = pod
                .pointer_mut(&format!("/spec/{list}"))
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            for container in containers {
                let name = container["name"].as_str().unwrap_or_default().to_string();
                let mut set_requests = Vec::new();
                let mut set_limits = Vec::new();
                for (field, defaults, set) in [
                    ("limits", &default_limits, &mut set_limits),
                    ("requests", &default_requests, &mut set_requests),
                ] {
                    if !container["resources"][field].is_object() {
                        container["resources"][field] = json!({});
                    }
                    for (resource, value) in defaults {
                        if container["resources"][field].get(resource).is_none() {
                            container["resources"][field][resource] = value.clone();
                            set.push(resource.clone());
                        }
                    }
                }
                for field in ["limits", "requests"] {
                    if container["resources"][field]
                        .as_object()
                        .is_some_and(|m| m.is_empty())
                        && let Some(resources) = container["resources"].as_object_mut()
                    {
                        resources.remove(field);
                    }
                }
                if !set_requests.is_empty() {
                    set_requests.sort();
                    notes.push(format!(
                        "{} request for {prefix} {name}",
                        set_requests.join(", ")
                    ));
                }
                if !set_limits.is_empty() {
                    set_limits.sort();
                    notes.push(format!(
                        "{} limit for {prefix} {name}",
                        set_limits.join(", ")
                    ));
                }
            }
        }
        if !notes.is_empty() {
            pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"] =
                json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
        }
    }
}

fn quantity(list: &Value, resource: &str) -> Option<Quantity> {
    list[resource].as_str().and_then(Quantity::parse)
}

fn text(q: Option<Quantity>) -> String {
    q.map(|q| q.canonical()).unwrap_or_default()
}

fn min_constraint(
    kind: &str,
    resource: &str,
    enforced: Quantity,
    requests: &Value,
    limits: &Value,
) -> Option<String> {
    let request = quantity(requests, resource);
    let limit = quantity(limits, resource);
    let Some(request_value) = request else {
        return Some(format!(
            "minimum {resource} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    if request_value.milli_value() < enforced.milli_value() {
        return Some(format!(
            "minimum {resource} usage per {kind} is {enforced}, but request is {}",
            text(request)
        ));
    }
    if let Some(limit_value) = limit
        && limit_value.milli_value() < enforced.milli_value()
    {
        return Some(format!(
            "minimum {resource} usage per {kind} is {enforced}, but limit is {}",
            text(limit)
        ));
    }
    None
}

fn max_constraint(
    kind: &str,
    resource: &str,
    enforced: Quantity,
    requests: &Value,
    limits: &Value,
) -> Option<String> {
    let request = quantity(requests, resource);
    let Some(limit) = quantity(limits, resource) else {
        return Some(format!(
            "maximum {resource} usage per {kind} is {enforced}.  No limit is specified"
        ));
    };
    if limit.milli_value() > enforced.milli_value() {
        return Some(format!(
            "maximum {resource} usage per {kind} is {enforced}, but limit is {limit}"
        ));
    }
    if let Some(request) = request
        && request.milli_value() > enforced.milli_value()
    {
        return Some(format!(
            "maximum {resource} usage per {kind} is {enforced}, but request is {request}"
        ));
    }
    None
}

fn max_request_constraint(
    kind: &str,
    resource: &str,
    enforced: Quantity,
    requests: &Value,
) -> Option<String> {
    let Some(request) = quantity(requests, resource) else {
        return Some(format!(
            "maximum {resource} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    (request.milli_value() > enforced.milli_value()).then(|| {
        format!("maximum {resource} usage per {kind} is {enforced}, but request is {request}")
    })
}

fn ratio_constraint(
    kind: &str,
    resource: &str,
    enforced: Quantity,
    requests: &Value,
    limits: &Value,
) -> Option<String> {
    let request = quantity(requests, resource)
        .map(|q| q.milli_value())
        .unwrap_or(0);
    let limit = quantity(limits, resource)
        .map(|q| q.milli_value())
        .unwrap_or(0);
    if request == 0 {
        return Some(format!(
            "{resource} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"
        ));
    }
    if limit == 0 {
        return Some(format!(
            "{resource} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"
        ));
    }
    let observed = limit as f64 / request as f64;
    (observed * 1000.0 > enforced.milli_value() as f64).then(|| {
        format!(
            "{resource} max limit to request ratio per {kind} is {enforced}, but provided ratio is {observed:.6}"
        )
    })
}

fn check_item(
    item: &Value,
    kind: &str,
    requests: &Value,
    limits: &Value,
    errors: &mut Vec<String>,
) {
    for (resource, value) in sorted_entries(&item["min"]) {
        if let Some(enforced) = value.as_str().and_then(Quantity::parse) {
            errors.extend(min_constraint(kind, &resource, enforced, requests, limits));
        }
    }
    for (resource, value) in sorted_entries(&item["max"]) {
        if let Some(enforced) = value.as_str().and_then(Quantity::parse) {
            errors.extend(max_constraint(kind, &resource, enforced, requests, limits));
        }
    }
    for (resource, value) in sorted_entries(&item["maxLimitRequestRatio"]) {
        if let Some(enforced) = value.as_str().and_then(Quantity::parse) {
            errors.extend(ratio_constraint(
                kind, &resource, enforced, requests, limits,
            ));
        }
    }
}

/// The summed requests or limits of a pod's containers, init containers as a floor (for
/// `type: Pod` items).
fn pod_total(spec: &Value, field: &str) -> Value {
    let mut total: std::collections::BTreeMap<String, Quantity> = Default::default();
    for container in spec["containers"].as_array().into_iter().flatten() {
        for (resource, value) in sorted_entries(&container["resources"][field]) {
            if let Some(q) = value.as_str().and_then(Quantity::parse) {
                let sum = total.get(&resource).map_or(q, |have| *have + q);
                total.insert(resource, sum);
            }
        }
    }
    for container in spec["initContainers"].as_array().into_iter().flatten() {
        for (resource, value) in sorted_entries(&container["resources"][field]) {
            if let Some(q) = value.as_str().and_then(Quantity::parse)
                && total.get(&resource).is_none_or(|have| q > *have)
            {
                total.insert(resource, q);
            }
        }
    }
    Value::Object(
        total
            .into_iter()
            .map(|(k, v)| (k, json!(v.canonical())))
            .collect(),
    )
}

/// `utilerrors.NewAggregate(...).Error()`: one message alone, several as `[a, b]`, each once.
fn aggregate(errors: Vec<String>) -> String {
    let mut seen = BTreeSet::new();
    let unique: Vec<String> = errors
        .into_iter()
        .filter(|e| seen.insert(e.clone()))
        .collect();
    if unique.len() == 1 {
        unique[0].clone()
    } else {
        format!("[{}]", unique.join(", "))
    }
}

/// LimitRanger's validating half on a Pod or a claim.
pub fn limit_ranger_validate(
    collection: &Collection,
    name: &str,
    object: &Value,
    limit_ranges: &[Value],
) -> Result<(), Refusal> {
    for limit_range in limit_ranges {
        let mut errors = Vec::new();
        if collection.plural == "pods" {
            let spec = &object["spec"];
            for item in items(limit_range, "Container") {
                for list in ["containers", "initContainers"] {
                    for container in spec[list].as_array().into_iter().flatten() {
                        let resources = &container["resources"];
                        check_item(
                            item,
                            "Container",
                            &resources["requests"],
                            &resources["limits"],
                            &mut errors,
                        );
                    }
                }
            }
            for item in items(limit_range, "Pod") {
                let requests = pod_total(spec, "requests");
                let limits = pod_total(spec, "limits");
                check_item(item, "Pod", &requests, &limits, &mut errors);
            }
        } else {
            let requests = &object["spec"]["resources"]["requests"];
            for item in items(limit_range, "PersistentVolumeClaim") {
                for (resource, value) in sorted_entries(&item["min"]) {
                    if let Some(enforced) = value.as_str().and_then(Quantity::parse) {
                        errors.extend(min_constraint(
                            "PersistentVolumeClaim",
                            &resource,
                            enforced,
                            requests,
                            &json!({}),
                        ));
                    }
                }
                for (resource, value) in sorted_entries(&item["max"]) {
                    if let Some(enforced) = value.as_str().and_then(Quantity::parse) {
                        errors.extend(max_request_constraint(
                            "PersistentVolumeClaim",
                            &resource,
                            enforced,
                            requests,
                        ));
                    }
                }
            }
        }
        if !errors.is_empty() {
            let mut refusal = Refusal::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!(
                    "{} \"{name}\" is forbidden: {}",
                    collection.resource(),
                    aggregate(errors)
                ),
            );
            refusal.details = json!({"name": name, "kind": collection.plural});
            return Err(refusal);
        }
    }
    Ok(())
}

/// The DefaultStorageClass plugin on a claim CREATE.
pub fn default_storage_class(claim: &mut Value, classes: &[Value]) -> Result<(), Refusal> {
    if claim["spec"].get("storageClassName").is_some() {
        return Ok(());
    }
    let defaults: Vec<&Value> = classes
        .iter()
        .filter(|class| {
            let annotations = &class["metadata"]["annotations"];
            annotations["storageclass.kubernetes.io/is-default-class"] == "true"
                || annotations["storageclass.beta.kubernetes.io/is-default-class"] == "true"
        })
        .collect();
    match defaults.as_slice() {
        [] => Ok(()),
        [class] => {
            claim["spec"]["storageClassName"] = class["metadata"]["name"].clone();
            Ok(())
        }
        many => Err(Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!(
                "Internal error occurred: {} default StorageClasses were found",
                many.len()
            ),
        )),
    }
}
