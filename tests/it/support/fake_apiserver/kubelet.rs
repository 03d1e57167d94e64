//! A scheduler and kubelet, small, and the `pods/resize` subresource (KEP-1287 as GA in 1.35).
//!
//! `run_pods(true)`: every pod not yet scheduled is bound to a node (the first Node object, else
//! `node-1`) and runs at once: phase Running, conditions PodScheduled / Initialized /
//! ContainersReady / Ready, a running container status per container with its `resources` and
//! `allocatedResources` as applied.
//!
//! `serve_pod_resize(true)` (off by default: a cluster before 1.33 answers 404, and discovery
//! lists `pods/resize` only when it is served): PATCH (every patch type) and PUT of
//! `pods/{name}/resize`, validated as `ValidatePodResize` does:
//! - containers may not be added, removed, renamed or reordered
//!   (`spec.containers[0].name: Forbidden: containers may not be renamed or reordered on resize`);
//! - requests and limits may not be removed (`resource requests cannot be removed`);
//! - a non-sidecar init container's resources are immutable;
//! - nothing but the cpu and memory of container resources (and `resizePolicy`) may change
//!   (`spec: Forbidden: only cpu and memory resources are mutable`);
//! - a request may not exceed its limit (1.35 wording: `must be less than or equal to memory
//!   limit of 512Mi`);
//! - the QoS class may not change (`spec: Invalid value: "Burstable": Pod QOS Class may not
//!   change as a result of resizing`);
//! - memory limit decreases are allowed (1.35; the kubelet's best-effort check is a test
//!   control: `ResizeAnswer::Error`);
//!
//! then the LimitRanger and ResourceQuota judge it (a resize is billed its growth), and the
//! kubelet answers (`answer_resizes`), writing what the kubelet reports:
//!
//! - `Apply` (default): applied at once: `status.containerStatuses[].resources` and
//!   `allocatedResources` show the new values, no resize condition;
//! - `InProgress`: accepted (`allocatedResources` new), not yet actuated (`resources` old),
//!   condition `PodResizeInProgress`; `finish_resizes()` completes it;
//! - `Deferred`: condition `PodResizePending`, reason `Deferred`; also chosen by the kubelet when
//!   the node's other pods leave too little allocatable memory;
//! - `Error(message)`: condition `PodResizeInProgress`, reason `Error`, the message;
//! - `Infeasible` is the kubelet's own answer when a request exceeds the node's allocatable:
//!   condition `PodResizePending`, reason `Infeasible`, `Node didn't have enough capacity:
//!   memory, requested: 4294967296, capacity: 2147483648`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::defaults::qos_class;
use super::quantity::Quantity;
use super::rules::{FieldError, Refusal};
use super::{Collection, FakeApiServer, Objects};

/// How the kubelet answers the next resizes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ResizeAnswer {
    #[default]
    Apply,
    InProgress,
    Deferred,
    Error(String),
}

/// The kubelet's settings.
#[derive(Debug, Clone, Default)]
pub struct KubeletSettings {
    pub run_pods: bool,
    pub serve_resize: bool,
    pub answer: ResizeAnswer,
}

fn timestamp(server: &FakeApiServer) -> String {
    server.now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The resources a container runs with, as the kubelet reports them.
fn reported(container: &Value) -> Value {
    let resources = &container["resources"];
    let mut out = json!({});
    for field in ["requests", "limits"] {
        if let Some(list) = resources[field].as_object() {
            let kept: serde_json::Map<String, Value> = list
                .iter()
                .filter(|(k, _)| matches!(k.as_str(), "cpu" | "memory"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !kept.is_empty() {
                out[field] = Value::Object(kept);
            }
        }
    }
    out
}

fn allocated(container: &Value) -> Value {
    reported(container)["requests"].clone()
}

fn node_allocatable(objects: &Objects, node: &str) -> Option<Quantity> {
    objects
        .by_collection
        .get(&Collection::core("", "nodes"))
        .and_then(|nodes| nodes.get(node))
        .and_then(|n| n["status"]["allocatable"]["memory"].as_str())
        .and_then(Quantity::parse)
}

fn pod_memory_request(spec: &Value) -> Quantity {
    spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["resources"]["requests"]["memory"].as_str())
        .filter_map(Quantity::parse)
        .fold(Quantity::zero(), |sum, q| sum + q)
}

impl FakeApiServer {
    /// Schedules and runs every pod (see the module notes); on, pods created later run too.
    pub fn run_pods(&self, on: bool) {
        self.settings.lock().unwrap().kubelet.run_pods = on;
        if on {
            let mut objects = self.objects.lock().unwrap();
            self.kubelet_pass(&mut objects);
        }
    }

    /// Serves `pods/resize` (see the module notes); off, it is 404 as before 1.33.
    pub fn serve_pod_resize(&self, on: bool) {
        self.settings.lock().unwrap().kubelet.serve_resize = on;
    }

    pub(super) fn serves_pod_resize(&self) -> bool {
        self.settings.lock().unwrap().kubelet.serve_resize
    }

    /// How the kubelet answers the next resizes.
    pub fn answer_resizes(&self, answer: ResizeAnswer) {
        self.settings.lock().unwrap().kubelet.answer = answer;
    }

    /// Completes every accepted resize: what was allocated is now running.
    pub fn finish_resizes(&self) {
        let mut objects = self.objects.lock().unwrap();
        let pods: Vec<(Collection, String, Value)> = objects
            .by_collection
            .iter()
            .filter(|(c, _)| c.is_pods())
            .flat_map(|(c, items)| {
                items
                    .iter()
                    .map(move |(n, p)| (c.clone(), n.clone(), p.clone()))
            })
            .collect();
        for (collection, name, pod) in pods {
            let conditions = pod["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !conditions
                .iter()
                .any(|c| c["type"] == "PodResizeInProgress")
            {
                continue;
            }
            let mut done = pod.clone();
            self.actuate(&mut done, true);
            self.store_raw(&mut objects, &collection, name, done, "MODIFIED");
            self.after_store(&mut objects, &collection);
        }
    }

    /// The scheduler and kubelet: pods without a node run on one.
    pub(super) async fn run_kubelet(&self) {
        let mut objects = self.objects.lock().unwrap();
        self.kubelet_pass(&mut objects);
    }

    /// Runs every pending pod, when pods run.
    pub(super) fn kubelet_pass(&self, objects: &mut Objects) {
        if !self.settings.lock().unwrap().kubelet.run_pods {
            return;
        }
        let node = objects
            .by_collection
            .get(&Collection::core("", "nodes"))
            .and_then(|nodes| nodes.keys().next().cloned())
            .unwrap_or_else(|| "node-1".to_string());
        let pending: Vec<(Collection, String, Value)> = objects
            .by_collection
            .iter()
            .filter(|(c, _)| c.is_pods())
            .flat_map(|(c, items)| {
                items
                    .iter()
                    .map(move |(n, p)| (c.clone(), n.clone(), p.clone()))
            })
            .filter(|(_, _, p)| {
                p["spec"]["nodeName"].as_str().is_none_or(str::is_empty)
                    && p["metadata"]["deletionTimestamp"].is_null()
            })
            .collect();
        for (collection, name, pod) in pending {
            let mut running = pod.clone();
            running["spec"]["nodeName"] = json!(node);
            let now = timestamp(self);
            let statuses: Vec<Value> = pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    json!({"name": c["name"], "image": c["image"], "imageID": "", "ready": true,
                        "started": true, "restartCount": 0,
                        "state": {"running": {"startedAt": now}}, "lastState": {},
                        "resources": reported(c), "allocatedResources": allocated(c)})
                })
                .collect();
            running["status"] = json!({"phase": "Running", "qosClass": qos_class(&pod["spec"]),
                "hostIP": "10.0.0.10", "podIP": "10.244.0.10", "startTime": now,
                "conditions": [
                    {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                    {"type": "Ready", "status": "True", "lastTransitionTime": now},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": now}],
                "containerStatuses": statuses});
            self.store_raw(objects, &collection, name, running, "MODIFIED");
            self.after_store(objects, &collection);
        }
    }

    /// The kubelet's answer to a stored resize, written into `pod`'s status.
    pub(super) fn answer_resize(&self, objects: &Objects, pod: &mut Value) {
        let answer = self.settings.lock().unwrap().kubelet.answer.clone();
        let node = pod["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let request = pod_memory_request(&pod["spec"]);
        let now = timestamp(self);
        if let Some(capacity) = node_allocatable(objects, &node) {
            if request > capacity {
                self.resize_condition(
                    pod,
                    "PodResizePending",
                    "Infeasible",
                    &format!(
                        "Node didn't have enough capacity: memory, requested: {}, capacity: {}",
                        request.value(),
                        capacity.value()
                    ),
                    &now,
                );
                return;
            }
            let others: Quantity = objects
                .by_collection
                .iter()
                .filter(|(c, _)| c.is_pods())
                .flat_map(|(_, items)| items.values())
                .filter(|p| {
                    p["spec"]["nodeName"] == node.as_str()
                        && p["metadata"]["uid"] != pod["metadata"]["uid"]
                        && p["metadata"]["deletionTimestamp"].is_null()
                })
                .map(|p| pod_memory_request(&p["spec"]))
                .fold(Quantity::zero(), |sum, q| sum + q);
            if others + request > capacity {
                self.resize_condition(
                    pod,
                    "PodResizePending",
                    "Deferred",
                    &format!(
                        "Node didn't have enough resource: memory, requested: {}, used: {}, capacity: {}",
                        request.value(),
                        others.value(),
                        capacity.value()
                    ),
                    &now,
                );
                return;
            }
        }
        match answer {
            ResizeAnswer::Apply => self.actuate(pod, true),
            ResizeAnswer::InProgress => {
                self.actuate(pod, false);
                self.resize_condition(pod, "PodResizeInProgress", "", "", &now);
            }
            ResizeAnswer::Deferred => self.resize_condition(
                pod,
                "PodResizePending",
                "Deferred",
                "Node didn't have enough resource: memory",
                &now,
            ),
            ResizeAnswer::Error(message) => {
                self.actuate(pod, false);
                self.resize_condition(pod, "PodResizeInProgress", "Error", &message, &now);
            }
        }
    }

    /// The resize is allocated; `running` also when the runtime applied it.
    fn actuate(&self, pod: &mut Value, running: bool) {
        let containers = pod["spec"]["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(statuses) = pod["status"]["containerStatuses"].as_array_mut() {
            for status in statuses {
                let Some(container) = containers.iter().find(|c| c["name"] == status["name"])
                else {
                    continue;
                };
                status["allocatedResources"] = allocated(container);
                if running {
                    status["resources"] = reported(container);
                }
            }
        }
        if running && let Some(conditions) = pod["status"]["conditions"].as_array_mut() {
            conditions
                .retain(|c| c["type"] != "PodResizePending" && c["type"] != "PodResizeInProgress");
        }
    }

    fn resize_condition(
        &self,
        pod: &mut Value,
        kind: &str,
        reason: &str,
        message: &str,
        now: &str,
    ) {
        if !pod["status"]["conditions"].is_array() {
            pod["status"]["conditions"] = json!([]);
        }
        if let Some(conditions) = pod["status"]["conditions"].as_array_mut() {
            conditions
                .retain(|c| c["type"] != "PodResizePending" && c["type"] != "PodResizeInProgress");
            let mut condition = json!({"type": kind, "status": "True", "lastProbeTime": null,
                "lastTransitionTime": now});
            if !reason.is_empty() {
                condition["reason"] = json!(reason);
            }
            if !message.is_empty() {
                condition["message"] = json!(message);
            }
            conditions.push(condition);
        }
    }
}

/// `ValidatePodResize` (1.35) of `new` against the stored `old`.
pub fn validate_resize(name: &str, old: &Value, new: &Value) -> Result<(), Refusal> {
    let mut errors = Vec::new();
    for list in ["containers", "initContainers"] {
        let before = old["spec"][list].as_array().cloned().unwrap_or_default();
        let after = new["spec"][list].as_array().cloned().unwrap_or_default();
        if before.len() != after.len() {
            errors.push(FieldError::forbidden(
                &format!("spec.{list}"),
                &format!("{list} may not be added or removed on resize"),
            ));
            continue;
        }
        for (index, (was, now)) in before.iter().zip(&after).enumerate() {
            if was["name"] != now["name"] {
                errors.push(FieldError::forbidden(
                    &format!("spec.{list}[{index}].name"),
                    &format!("{list} may not be renamed or reordered on resize"),
                ));
                continue;
            }
            for field in ["requests", "limits"] {
                let removed = was["resources"][field]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .any(|(k, _)| now["resources"][field].get(k).is_none());
                if removed {
                    let what = if field == "requests" {
                        "requests"
                    } else {
                        "limits"
                    };
                    errors.push(FieldError::forbidden(
                        &format!("spec.{list}[{index}].resources.{field}"),
                        &format!("resource {what} cannot be removed"),
                    ));
                }
            }
            let sidecar = now["restartPolicy"] == "Always";
            if list == "initContainers" && !sidecar && was["resources"] != now["resources"] {
                errors.push(FieldError::forbidden(
                    &format!("spec.initContainers[{index}].resources"),
                    "resources for non-sidecar init containers are immutable",
                ));
            }
        }
    }
    if errors.is_empty() {
        // Everything but cpu/memory resources and resizePolicy must be as it was.
        let mut comparable = new["spec"].clone();
        for list in ["containers", "initContainers"] {
            let before = old["spec"][list].as_array().cloned().unwrap_or_default();
            if let Some(after) = comparable.get_mut(list).and_then(Value::as_array_mut) {
                for (now, was) in after.iter_mut().zip(&before) {
                    for field in ["requests", "limits"] {
                        for resource in ["cpu", "memory"] {
                            match was["resources"][field].get(resource) {
                                Some(value) => now["resources"][field][resource] = value.clone(),
                                None => {
                                    if let Some(list) = now["resources"][field].as_object_mut() {
                                        list.remove(resource);
                                    }
                                }
                            }
                        }
                        if now["resources"][field]
                            .as_object()
                            .is_some_and(|m| m.is_empty())
                            && was["resources"].get(field).is_none()
                            && let Some(resources) = now["resources"].as_object_mut()
                        {
                            resources.remove(field);
                        }
                    }
                    match was.get("resizePolicy") {
                        Some(policy) => now["resizePolicy"] = policy.clone(),
                        None => {
                            if let Some(fields) = now.as_object_mut() {
                                fields.remove("resizePolicy");
                            }
                        }
                    }
                }
            }
        }
        if comparable != old["spec"] {
            errors.push(FieldError::forbidden(
                "spec",
                "only cpu and memory resources are mutable",
            ));
        }
    }
    if errors.is_empty() {
        for (index, container) in new["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let resources = &container["resources"];
            for resource in ["cpu", "memory"] {
                let request = resources["requests"][resource]
                    .as_str()
                    .and_then(Quantity::parse);
                let limit = resources["limits"][resource]
                    .as_str()
                    .and_then(Quantity::parse);
                if let (Some(request), Some(limit)) = (request, limit)
                    && request > limit
                {
                    errors.push(FieldError::invalid(
                        &format!("spec.containers[{index}].resources.requests"),
                        &request.canonical(),
                        &format!("must be less than or equal to {resource} limit of {limit}"),
                    ));
                }
            }
        }
    }
    if errors.is_empty() {
        let before = old["status"]["qosClass"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| qos_class(&old["spec"]).to_string());
        if qos_class(&new["spec"]) != before {
            errors.push(FieldError::invalid(
                "spec",
                &before,
                "Pod QOS Class may not change as a result of resizing",
            ));
        }
    }
    super::rules::invalid_pod(name, errors)
}

/// 404 for `pods/resize` on a server that does not serve it.
pub fn not_served() -> Response {
    Refusal::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
    )
    .into_response()
}
