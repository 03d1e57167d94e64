//! The defaulting the apiserver applies when it decodes a request body, before any admission
//! plugin sees the object (`pkg/apis/*/v1/defaults.go`), and again after each mutating webhook's
//! patch (the webhook dispatcher re-runs the defaulter on the patched object):
//!
//! - Pod: a container's (and init container's) `requests` default to its `limits` for every
//!   resource the limits name (`SetDefaults_Pod`; templates are not defaulted this way);
//!   `restartPolicy: Always`, `terminationGracePeriodSeconds: 30`, `dnsPolicy: ClusterFirst`,
//!   `schedulerName: default-scheduler` (`SetDefaults_PodSpec`, templates too).
//! - Deployment: `replicas: 1`, `strategy` RollingUpdate 25%/25%, `revisionHistoryLimit: 10`,
//!   `progressDeadlineSeconds: 600`; ReplicaSet `replicas: 1`; StatefulSet `replicas: 1`,
//!   `podManagementPolicy: OrderedReady`, `updateStrategy` RollingUpdate (partition 0),
//!   `revisionHistoryLimit: 10`; Job `parallelism: 1`, `completions: 1`, `backoffLimit: 6`.
//! - PersistentVolumeClaim: `volumeMode: Filesystem`.
//! - LimitRange `type: Container` items: `default` from `max`, `defaultRequest` from `default`,
//!   then from `min` (`SetDefaults_LimitRangeItem`).
//! - Namespace: the `kubernetes.io/metadata.name` label (set by the apiserver since 1.21).
//! - Quantities in resources, LimitRanges, ResourceQuotas and Node capacity are stored in their
//!   canonical text (`1024Mi` reads back as `1Gi`).
//!
//! Not modelled (no selfheal decision reads them): container `imagePullPolicy`,
//! `terminationMessagePath`/`Policy`, `enableServiceLinks`, `securityContext: {}`, Service and
//! probe defaults.
//!
//! On Pod CREATE the registry also resets the status (`PrepareForCreate`): phase `Pending` and
//! the computed `qosClass` (see [`pod_status_at_create`]).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::Collection;
use super::quantity::{Quantity, canonical_text};

/// Applies the decode-time defaults of `collection`'s kind to `object`.
pub fn apply(collection: &Collection, object: &mut Value) {
    match (collection.prefix.as_str(), collection.plural.as_str()) {
        ("api/v1", "pods") => {
            if let Some(spec) = object.get_mut("spec") {
                pod_requests_from_limits(spec);
                pod_spec(spec);
            }
        }
        ("api/v1", "persistentvolumeclaims") if object["spec"].is_object() => {
            set_absent(&mut object["spec"], "volumeMode", json!("Filesystem"));
        }
        ("api/v1", "limitranges") => limit_range(object),
        ("api/v1", "namespaces") => {
            if let Some(name) = object["metadata"]["name"].as_str().map(str::to_string) {
                object["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
            }
        }
        ("apis/apps/v1", "deployments") => {
            let spec = &mut object["spec"];
            if spec.is_object() {
                set_absent(spec, "replicas", json!(1));
                set_absent(spec, "revisionHistoryLimit", json!(10));
                set_absent(spec, "progressDeadlineSeconds", json!(600));
                set_absent(spec, "strategy", json!({"type": "RollingUpdate"}));
                if spec["strategy"]["type"] == "RollingUpdate" {
                    let rolling = &mut spec["strategy"]["rollingUpdate"];
                    if !rolling.is_object() {
                        *rolling = json!({});
                    }
                    set_absent(rolling, "maxUnavailable", json!("25%"));
                    set_absent(rolling, "maxSurge", json!("25%"));
                }
                template(spec);
            }
        }
        ("apis/apps/v1", "replicasets" | "daemonsets") => {
            let spec = &mut object["spec"];
            if spec.is_object() {
                if collection.plural == "replicasets" {
                    set_absent(spec, "replicas", json!(1));
                }
                template(spec);
            }
        }
        ("apis/apps/v1", "statefulsets") => {
            let spec = &mut object["spec"];
            if spec.is_object() {
                set_absent(spec, "replicas", json!(1));
                set_absent(spec, "podManagementPolicy", json!("OrderedReady"));
                set_absent(spec, "revisionHistoryLimit", json!(10));
                set_absent(
                    spec,
                    "updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
                );
                template(spec);
            }
        }
        ("apis/batch/v1", "jobs") => {
            let spec = &mut object["spec"];
            if spec.is_object() {
                set_absent(spec, "parallelism", json!(1));
                set_absent(spec, "completions", json!(1));
                set_absent(spec, "backoffLimit", json!(6));
                template(spec);
            }
        }
        ("apis/batch/v1", "cronjobs") => {
            if let Some(job) = object.pointer_mut("/spec/jobTemplate/spec") {
                template(job);
            }
        }
        _ => {}
    }
    canonical_quantities(collection, object);
}

fn set_absent(object: &mut Value, key: &str, value: Value) {
    if let Some(fields) = object.as_object_mut() {
        fields.entry(key.to_string()).or_insert(value);
    }
}

fn template(spec: &mut Value) {
    if let Some(pod) = spec.pointer_mut("/template/spec")
        && pod.is_object()
    {
        pod_spec(pod);
    }
}

fn pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_absent(spec, "restartPolicy", json!("Always"));
    set_absent(spec, "terminationGracePeriodSeconds", json!(30));
    set_absent(spec, "dnsPolicy", json!("ClusterFirst"));
    set_absent(spec, "schedulerName", json!("default-scheduler"));
}

/// `SetDefaults_Pod`: requests default to limits, per resource, in every container.
pub fn pod_requests_from_limits(spec: &mut Value) {
    for list in ["containers", "initContainers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers {
            let Some(limits) = container["resources"]["limits"].as_object().cloned() else {
                continue;
            };
            let resources = &mut container["resources"];
            if !resources["requests"].is_object() {
                resources["requests"] = json!({});
            }
            for (resource, value) in limits {
                if resources["requests"].get(&resource).is_none() {
                    resources["requests"][&resource] = value;
                }
            }
        }
    }
}

/// `SetDefaults_LimitRangeItem` for `type: Container` items.
fn limit_range(object: &mut Value) {
    let Some(items) = object
        .pointer_mut("/spec/limits")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for item in items.iter_mut().filter(|i| i["type"] == "Container") {
        for (target, source) in [
            ("default", "max"),
            ("defaultRequest", "default"),
            ("defaultRequest", "min"),
        ] {
            let Some(values) = item[source].as_object().cloned() else {
                continue;
            };
            if !item[target].is_object() {
                item[target] = json!({});
            }
            for (resource, value) in values {
                if item[target].get(&resource).is_none() {
                    item[target][&resource] = value;
                }
            }
        }
    }
}

/// Rewrites the quantities of a resource list in place.
fn canonical_list(list: &mut Value) {
    if let Some(fields) = list.as_object_mut() {
        for value in fields.values_mut() {
            if let Some(text) = value.as_str() {
                *value = json!(canonical_text(text));
            }
        }
    }
}

/// Every `resources.{limits,requests}` map under `value` (containers, templates, claims).
fn canonical_resources(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            for (key, child) in fields.iter_mut() {
                if key == "resources" && child.is_object() {
                    canonical_list(&mut child["limits"]);
                    canonical_list(&mut child["requests"]);
                    strip_null(child, "limits");
                    strip_null(child, "requests");
                }
                canonical_resources(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(canonical_resources),
        _ => {}
    }
}

fn strip_null(object: &mut Value, key: &str) {
    if object[key].is_null()
        && let Some(fields) = object.as_object_mut()
    {
        fields.remove(key);
    }
}

fn canonical_quantities(collection: &Collection, object: &mut Value) {
    if let Some(spec) = object.get_mut("spec") {
        canonical_resources(spec);
    }
    match collection.plural.as_str() {
        "limitranges" => {
            for item in object
                .pointer_mut("/spec/limits")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                for key in [
                    "max",
                    "min",
                    "default",
                    "defaultRequest",
                    "maxLimitRequestRatio",
                ] {
                    canonical_list(&mut item[key]);
                    strip_null(item, key);
                }
            }
        }
        "resourcequotas" => {
            canonical_list(&mut object["spec"]["hard"]);
            strip_null(&mut object["spec"], "hard");
        }
        "nodes" if object["status"].is_object() => {
            canonical_list(&mut object["status"]["capacity"]);
            canonical_list(&mut object["status"]["allocatable"]);
            strip_null(&mut object["status"], "capacity");
            strip_null(&mut object["status"], "allocatable");
        }
        _ => {}
    }
}

/// A pod's QoS class from its spec (`qos.GetPodQOS`, over containers and init containers):
/// BestEffort when nothing requests or limits cpu or memory; Guaranteed when every container
/// limits both and the summed requests equal the summed limits; Burstable otherwise.
pub fn qos_class(spec: &Value) -> &'static str {
    let mut requests: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut limits: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut guaranteed = true;
    let containers = ["containers", "initContainers"]
        .into_iter()
        .flat_map(|list| spec[list].as_array().into_iter().flatten());
    for container in containers {
        let resources = &container["resources"];
        let mut limited = 0;
        for resource in ["cpu", "memory"] {
            let positive = |list: &str| {
                Quantity::parse(resources[list][resource].as_str().unwrap_or(""))
                    .filter(|q| !q.is_zero() && !q.is_negative())
            };
            if let Some(request) = positive("requests") {
                let sum = requests
                    .get(resource)
                    .copied()
                    .unwrap_or_else(Quantity::zero)
                    + request;
                requests.insert(resource, sum);
            }
            if let Some(limit) = positive("limits") {
                let sum = limits.get(resource).copied().unwrap_or_else(Quantity::zero) + limit;
                limits.insert(resource, sum);
                limited += 1;
            }
        }
        if limited != 2 {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    let equal = requests
        .iter()
        .all(|(resource, request)| limits.get(resource) == Some(request));
    if guaranteed && equal && requests.len() == limits.len() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The status a Pod has after CREATE: whatever the request sent is replaced.
pub fn pod_status_at_create(spec: &Value) -> Value {
    json!({"phase": "Pending", "qosClass": qos_class(spec)})
}
