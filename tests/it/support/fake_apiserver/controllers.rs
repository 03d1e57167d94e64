//! The workload controllers of kube-controller-manager, small: the deployment controller and
//! the replicaset controller (1.24 behaviour), switched on by a test (`start_controllers`, or one
//! pass with `reconcile_workloads`). They act through the API like the real ones, as their
//! ServiceAccounts, so every object they write goes through defaulting, the mutating webhooks
//! (a ReplicaSet and its Pods reach selfheal's webhook as in a cluster), validation, the
//! LimitRanger and ResourceQuota:
//!
//! - Deployment → ReplicaSet `<name>-<pod-template-hash>` (labels, selector and template with
//!   the `pod-template-hash` label; `ownerReferences` to the Deployment; revision annotations),
//!   scaled by the rolling update (`maxSurge` rounded up, `maxUnavailable` rounded down; unhealthy
//!   old replicas first) or Recreate; `ScalingReplicaSet` Events; status (replicas, updated,
//!   ready, available, unavailable, observedGeneration) and the conditions `Available`
//!   (MinimumReplicasAvailable / MinimumReplicasUnavailable), `Progressing` (NewReplicaSetCreated,
//!   FoundNewReplicaSet, ReplicaSetUpdated, NewReplicaSetAvailable, and after
//!   `progressDeadlineSeconds` without progress, status False `ProgressDeadlineExceeded`:
//!   `ReplicaSet "web-5d4c3b2a1" has timed out progressing.`) and `ReplicaFailure` copied from
//!   the new ReplicaSet.
//! - ReplicaSet → Pods from its template (`generateName: <rs>-`, `ownerReferences`), created in
//!   slow-start batches (1, 2, 4, ...) stopping at the first refusal; each refusal is a core/v1
//!   Warning Event on the ReplicaSet, reason `FailedCreate`, message `Error creating: <the
//!   apiserver's refusal>`, source `replicaset-controller` (repeats counted, and after ten
//!   different messages about one object within ten minutes combined into `(combined from
//!   similar events): ...`, as client-go's event correlator does); successes `SuccessfulCreate`
//!   `Created pod: <name>`; surplus pods deleted (`SuccessfulDelete`); status with the
//!   `ReplicaFailure` condition (reason FailedCreate, the refusal as message) while creations fail.
//! - Pods stay Pending (no scheduler, no kubelet) unless `run_pods` is on (see `kubelet`); a pod
//!   counts as available as soon as it is Ready (`minReadySeconds` is not modelled).
//!
//! Not modelled: StatefulSets, Jobs, DaemonSets, adoption of orphans, revision history cleanup,
//! paused Deployments, the controllers' rate-limited requeues (a running loop retries every
//! second; `reconcile_workloads` once).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{Collection, FakeApiServer, Signal, UserInfo};

const DEPLOYMENT_CONTROLLER: &str = "deployment-controller";
const REPLICASET_CONTROLLER: &str = "replicaset-controller";
/// How many similar Events the correlator lets through before combining them.
const SIMILAR_EVENTS: usize = 10;

/// A running controller loop; stops when dropped.
pub struct Controllers {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Controllers {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `rand.SafeEncodeString` of the FNV-1a hash of the template (the controller hashes the Go
/// struct; here its canonical JSON): the digits map onto "bcdfghjklmnpqrstvwxz2456789".
pub fn pod_template_hash(template: &Value) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut hash: u32 = 0x811c_9dc5;
    for byte in template.to_string().bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash.to_string()
        .bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

fn without_hash(template: &Value) -> Value {
    let mut template = template.clone();
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove("pod-template-hash");
    }
    template
}

fn controller_of(object: &Value) -> Option<&Value> {
    object["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| o["controller"] == true)
}

fn owned_by(object: &Value, owner: &Value) -> bool {
    controller_of(object).is_some_and(|o| o["uid"] == owner["metadata"]["uid"])
}

fn owner_reference(owner: &Value, kind: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": kind, "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true})
}

fn replicas(object: &Value) -> i64 {
    object["spec"]["replicas"].as_i64().unwrap_or(1)
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn is_active(pod: &Value) -> bool {
    !matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    ) && pod["metadata"]["deletionTimestamp"].is_null()
}

fn scaled(value: &Value, total: i64, round_up: bool) -> i64 {
    if let Some(number) = value.as_i64() {
        return number;
    }
    let percent: i64 = value
        .as_str()
        .and_then(|v| v.strip_suffix('%'))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if round_up {
        (percent * total + 99) / 100
    } else {
        percent * total / 100
    }
}

fn condition(status: &Value, kind: &str) -> Option<Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .cloned()
}

/// `status.conditions` with `new` in place of its type (lastTransitionTime kept when the status
/// did not change).
fn set_condition(conditions: &mut Vec<Value>, mut new: Value) {
    if let Some(old) = conditions.iter().find(|c| c["type"] == new["type"])
        && old["status"] == new["status"]
    {
        new["lastTransitionTime"] = old["lastTransitionTime"].clone();
        if old["reason"] == new["reason"] && new["lastUpdateTime"].is_null() {
            new["lastUpdateTime"] = old["lastUpdateTime"].clone();
        }
    }
    conditions.retain(|c| c["type"] != new["type"]);
    conditions.push(new);
}

/// What an API call answered.
struct Answer {
    code: u16,
    body: Value,
}

impl Answer {
    fn message(&self) -> String {
        self.body["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

impl FakeApiServer {
    /// Starts the deployment and replicaset controllers: they reconcile on every change of a
    /// Deployment, ReplicaSet or Pod, and every second (retrying refused creations, noticing
    /// deadlines), until the handle is dropped.
    pub fn start_controllers(&self) -> Controllers {
        let server = self.clone();
        let mut signals = self.signals.subscribe();
        let task = tokio::spawn(async move {
            loop {
                server.reconcile_workloads().await;
                let wake = async {
                    loop {
                        match signals.recv().await {
                            Ok(Signal::Event(event))
                                if matches!(
                                    event.collection.plural.as_str(),
                                    "deployments" | "replicasets" | "pods"
                                ) =>
                            {
                                return;
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                std::future::pending::<()>().await
                            }
                            _ => continue,
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), wake).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Controllers { task }
    }

    /// One pass of the deployment controller, then the replicaset controller, over every
    /// namespace.
    pub async fn reconcile_workloads(&self) {
        for deployment in self.all_of("apis/apps/v1", "deployments") {
            self.sync_deployment(&deployment).await;
        }
        for set in self.all_of("apis/apps/v1", "replicasets") {
            self.sync_replica_set(&set).await;
        }
        for deployment in self.all_of("apis/apps/v1", "deployments") {
            self.deployment_status(&deployment).await;
        }
        self.run_kubelet().await;
    }

    /// Every object of a resource, all namespaces.
    fn all_of(&self, prefix: &str, plural: &str) -> Vec<Value> {
        let objects = self.objects.lock().unwrap();
        objects
            .by_collection
            .iter()
            .filter(|(c, _)| c.prefix == prefix && c.plural == plural)
            .flat_map(|(_, items)| items.values().cloned())
            .collect()
    }

    /// A request through the API, as `user`.
    async fn call(
        &self,
        user: &UserInfo,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> Answer {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(uri)
            .header("impersonate-user", user.username.as_str())
            .header("user-agent", "kube-controller-manager/v1.24.0");
        for group in &user.groups {
            request = request.header("impersonate-group", group.as_str());
        }
        if method == Method::PATCH {
            request = request.header("content-type", "application/merge-patch+json");
        } else {
            request = request.header("content-type", "application/json");
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let Ok(request) = request.body(body) else {
            return Answer {
                code: 500,
                body: Value::Null,
            };
        };
        let Ok(response) = self.router().oneshot(request).await;
        let code = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Answer {
            code,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    /// The core/v1 Event a controller records (client-go's recorder with its correlator).
    async fn record_event(
        &self,
        component: &str,
        involved: &Value,
        kind: &str,
        event_type: &str,
        reason: &str,
        message: &str,
    ) {
        let namespace = involved["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = involved["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let user = UserInfo::service_account("kube-system", component);
        let now = self.now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let events = self.list(&Collection::core(&namespace, "events"));
        let about = |e: &&Value| {
            e["involvedObject"]["uid"] == involved["metadata"]["uid"]
                && e["reason"] == reason
                && e["type"] == event_type
                && e["source"]["component"] == component
        };
        let recent = |e: &&Value| {
            e["lastTimestamp"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .is_some_and(|t| self.now().duration_since(t).as_secs() < 600)
        };
        let similar: Vec<&Value> = events.iter().filter(about).filter(recent).collect();
        let combined = similar
            .iter()
            .find(|e| {
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("(combined from similar events): "))
            })
            .copied();
        let same = similar.iter().find(|e| e["message"] == message).copied();
        let existing = match (same, combined) {
            (Some(same), _) => Some((same.clone(), message.to_string())),
            (None, Some(combined)) => Some((
                combined.clone(),
                format!("(combined from similar events): {message}"),
            )),
            (None, None) if similar.len() >= SIMILAR_EVENTS => None,
            (None, None) => {
                self.create_event(
                    &user, component, involved, kind, event_type, reason, message, &now,
                )
                .await;
                return;
            }
        };
        match existing {
            Some((event, text)) => {
                let event_name = event["metadata"]["name"].as_str().unwrap_or_default();
                let patch = json!({"count": event["count"].as_i64().unwrap_or(1) + 1,
                    "lastTimestamp": now, "message": text});
                self.call(
                    &user,
                    Method::PATCH,
                    &format!("/api/v1/namespaces/{namespace}/events/{event_name}"),
                    Some(patch),
                )
                .await;
            }
            None => {
                let text = format!("(combined from similar events): {message}");
                self.create_event(
                    &user, component, involved, kind, event_type, reason, &text, &now,
                )
                .await;
                let _ = name;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn create_event(
        &self,
        user: &UserInfo,
        component: &str,
        involved: &Value,
        kind: &str,
        event_type: &str,
        reason: &str,
        message: &str,
        now: &str,
    ) {
        let namespace = involved["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default();
        let name = involved["metadata"]["name"].as_str().unwrap_or_default();
        let serial = self.generate_name("");
        let event = json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("{name}.{:x}", fnv(&format!("{serial}{now}{message}"))),
                "namespace": namespace},
            "involvedObject": {"apiVersion": "apps/v1", "kind": kind, "namespace": namespace,
                "name": name, "uid": involved["metadata"]["uid"],
                "resourceVersion": involved["metadata"]["resourceVersion"]},
            "reason": reason, "message": message, "type": event_type,
            "source": {"component": component},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "eventTime": null, "reportingComponent": "", "reportingInstance": ""});
        self.call(
            user,
            Method::POST,
            &format!("/api/v1/namespaces/{namespace}/events"),
            Some(event),
        )
        .await;
    }

    /// The deployment controller's sync: find or create the new ReplicaSet, scale.
    async fn sync_deployment(&self, deployment: &Value) {
        let namespace = deployment["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default();
        let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
        let user = UserInfo::service_account("kube-system", DEPLOYMENT_CONTROLLER);
        let sets: Vec<Value> = self
            .list(&Collection::apps(namespace, "replicasets"))
            .into_iter()
            .filter(|s| owned_by(s, deployment))
            .collect();
        let template = &deployment["spec"]["template"];
        let hash = pod_template_hash(template);
        let wanted = replicas(deployment);
        let new_set = sets
            .iter()
            .find(|s| without_hash(&s["spec"]["template"]) == *template)
            .cloned();
        let old_sets: Vec<&Value> = sets
            .iter()
            .filter(|s| Some(*s) != new_set.as_ref())
            .collect();
        let strategy = &deployment["spec"]["strategy"];
        let recreate = strategy["type"] == "Recreate";
        let (max_surge, mut max_unavailable) = if recreate {
            (0, wanted)
        } else {
            (
                scaled(&strategy["rollingUpdate"]["maxSurge"], wanted, true),
                scaled(&strategy["rollingUpdate"]["maxUnavailable"], wanted, false),
            )
        };
        if max_surge == 0 && max_unavailable == 0 {
            max_unavailable = 1;
        }
        let old_total: i64 = old_sets.iter().map(|s| replicas(s)).sum();
        let Some(new_set) = new_set else {
            // A new ReplicaSet: as many replicas as the surge allows.
            let initial = if recreate {
                if old_sets.iter().any(|s| replicas(s) > 0) {
                    0
                } else {
                    wanted
                }
            } else {
                (wanted + max_surge - old_total).clamp(0, wanted)
            };
            let revision = sets
                .iter()
                .filter_map(|s| {
                    s["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                        .as_str()
                        .and_then(|r| r.parse::<i64>().ok())
                })
                .max()
                .unwrap_or(0)
                + 1;
            let mut labels = template["metadata"]["labels"].clone();
            labels["pod-template-hash"] = json!(hash);
            let mut selector = deployment["spec"]["selector"].clone();
            selector["matchLabels"]["pod-template-hash"] = json!(hash);
            let mut pod_template = template.clone();
            pod_template["metadata"]["labels"] = labels.clone();
            let set_name = format!("{name}-{hash}");
            let set = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": set_name, "namespace": namespace, "labels": labels,
                    "annotations": {"deployment.kubernetes.io/revision": revision.to_string(),
                        "deployment.kubernetes.io/desired-replicas": wanted.to_string(),
                        "deployment.kubernetes.io/max-replicas": (wanted + max_surge).to_string()},
                    "ownerReferences": [owner_reference(deployment, "Deployment")]},
                "spec": {"replicas": initial, "selector": selector, "template": pod_template,
                    "minReadySeconds": deployment["spec"]["minReadySeconds"].as_i64().unwrap_or(0)}});
            let answer = self
                .call(
                    &user,
                    Method::POST,
                    &format!("/apis/apps/v1/namespaces/{namespace}/replicasets"),
                    Some(set),
                )
                .await;
            if answer.code == 201 {
                self.progressing(
                    deployment,
                    "True",
                    "NewReplicaSetCreated",
                    &format!("Created new replica set \"{set_name}\""),
                )
                .await;
                if initial > 0 {
                    self.record_event(
                        DEPLOYMENT_CONTROLLER,
                        deployment,
                        "Deployment",
                        "Normal",
                        "ScalingReplicaSet",
                        &format!("Scaled up replica set {set_name} to {initial}"),
                    )
                    .await;
                }
            }
            return;
        };
        let set_name = new_set["metadata"]["name"].as_str().unwrap_or_default();
        let available = |s: &Value| s["status"]["availableReplicas"].as_i64().unwrap_or(0);
        // Scale the new ReplicaSet up within the surge.
        let new_replicas = replicas(&new_set);
        let target = if recreate {
            if old_sets
                .iter()
                .any(|s| replicas(s) > 0 || s["status"]["replicas"].as_i64().unwrap_or(0) > 0)
            {
                new_replicas
            } else {
                wanted
            }
        } else if new_replicas > wanted {
            wanted
        } else {
            let total = old_total + new_replicas;
            let room = wanted + max_surge - total;
            (new_replicas + room.max(0)).min(wanted)
        };
        if target != new_replicas {
            self.scale(&user, deployment, &new_set, target).await;
        }
        // Scale old ReplicaSets down, keeping the minimum available.
        let min_available = wanted - max_unavailable;
        let all_total = old_total + target;
        let new_unavailable = target - available(&new_set);
        let mut budget = if recreate {
            old_total
        } else {
            all_total - min_available - new_unavailable
        };
        let mut old_sorted = old_sets.clone();
        old_sorted.sort_by_key(|s| {
            s["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        });
        // Unhealthy old replicas first.
        for set in &old_sorted {
            if budget <= 0 {
                break;
            }
            let unhealthy = replicas(set) - available(set);
            let down = unhealthy.min(budget);
            if down > 0 {
                self.scale(&user, deployment, set, replicas(set) - down)
                    .await;
                budget -= down;
            }
        }
        if !recreate {
            let available_total: i64 =
                old_sets.iter().map(|s| available(s)).sum::<i64>() + available(&new_set);
            let mut down_total = (available_total - min_available).max(0);
            for set in &old_sorted {
                let current = self
                    .get(
                        &Collection::apps(namespace, "replicasets"),
                        set["metadata"]["name"].as_str().unwrap_or_default(),
                    )
                    .map(|s| replicas(&s))
                    .unwrap_or(0);
                if down_total <= 0 || current == 0 {
                    continue;
                }
                let down = current.min(down_total);
                self.scale(&user, deployment, set, current - down).await;
                down_total -= down;
            }
        } else {
            for set in &old_sorted {
                if replicas(set) > 0 {
                    self.scale(&user, deployment, set, 0).await;
                }
            }
        }
        if condition(&deployment["status"], "Progressing").is_none() {
            self.progressing(
                deployment,
                "True",
                "FoundNewReplicaSet",
                &format!("Found new replica set \"{set_name}\""),
            )
            .await;
        }
    }

    async fn scale(&self, user: &UserInfo, deployment: &Value, set: &Value, to: i64) {
        let namespace = set["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = set["metadata"]["name"].as_str().unwrap_or_default();
        let from = replicas(set);
        let answer = self
            .call(
                user,
                Method::PATCH,
                &format!("/apis/apps/v1/namespaces/{namespace}/replicasets/{name}"),
                Some(json!({"spec": {"replicas": to}})),
            )
            .await;
        if answer.code == 200 && from != to {
            let direction = if to > from { "up" } else { "down" };
            self.record_event(
                DEPLOYMENT_CONTROLLER,
                deployment,
                "Deployment",
                "Normal",
                "ScalingReplicaSet",
                &format!("Scaled {direction} replica set {name} to {to}"),
            )
            .await;
        }
    }

    /// Writes the Progressing condition (status subresource).
    async fn progressing(&self, deployment: &Value, status: &str, reason: &str, message: &str) {
        let namespace = deployment["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default();
        let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
        let Some(current) = self.get(&Collection::apps(namespace, "deployments"), name) else {
            return;
        };
        let now = self.now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let mut conditions = current["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        set_condition(
            &mut conditions,
            json!({"type": "Progressing", "status": status, "reason": reason, "message": message,
                "lastUpdateTime": now, "lastTransitionTime": now}),
        );
        self.call(
            &UserInfo::service_account("kube-system", DEPLOYMENT_CONTROLLER),
            Method::PATCH,
            &format!("/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"),
            Some(json!({"status": {"conditions": conditions}})),
        )
        .await;
    }

    /// The deployment controller's status and conditions.
    async fn deployment_status(&self, deployment: &Value) {
        let namespace = deployment["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default();
        let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
        let Some(deployment) = self.get(&Collection::apps(namespace, "deployments"), name) else {
            return;
        };
        let sets: Vec<Value> = self
            .list(&Collection::apps(namespace, "replicasets"))
            .into_iter()
            .filter(|s| owned_by(s, &deployment))
            .collect();
        let template = &deployment["spec"]["template"];
        let new_set = sets
            .iter()
            .find(|s| without_hash(&s["spec"]["template"]) == *template);
        let sum = |field: &str| -> i64 {
            sets.iter()
                .map(|s| s["status"][field].as_i64().unwrap_or(0))
                .sum()
        };
        let wanted = replicas(&deployment);
        let total = sum("replicas");
        let ready = sum("readyReplicas");
        let available = sum("availableReplicas");
        let updated = new_set
            .map(|s| s["status"]["replicas"].as_i64().unwrap_or(0))
            .unwrap_or(0);
        let strategy = &deployment["spec"]["strategy"];
        let max_unavailable = if strategy["type"] == "Recreate" {
            wanted
        } else {
            scaled(&strategy["rollingUpdate"]["maxUnavailable"], wanted, false)
        };
        let old = &deployment["status"];
        let now = self.now();
        let now_text = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let mut conditions = old["conditions"].as_array().cloned().unwrap_or_default();
        let minimum = available >= wanted - max_unavailable;
        set_condition(
            &mut conditions,
            if minimum {
                json!({"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability.", "lastUpdateTime": now_text, "lastTransitionTime": now_text})
            } else {
                json!({"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                    "message": "Deployment does not have minimum availability.", "lastUpdateTime": now_text, "lastTransitionTime": now_text})
            },
        );
        if let Some(new_set) = new_set {
            let set_name = new_set["metadata"]["name"].as_str().unwrap_or_default();
            let complete = updated == wanted && total == wanted && available == wanted;
            let progressed = updated > old["updatedReplicas"].as_i64().unwrap_or(0)
                || ready > old["readyReplicas"].as_i64().unwrap_or(0)
                || available > old["availableReplicas"].as_i64().unwrap_or(0)
                || total < old["replicas"].as_i64().unwrap_or(0);
            let current = condition(old, "Progressing");
            let reason = current
                .as_ref()
                .and_then(|c| c["reason"].as_str().map(str::to_string));
            if complete {
                set_condition(
                    &mut conditions,
                    json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                        "message": format!("ReplicaSet \"{set_name}\" has successfully progressed."),
                        "lastUpdateTime": now_text, "lastTransitionTime": now_text}),
                );
            } else if progressed {
                set_condition(
                    &mut conditions,
                    json!({"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                        "message": format!("ReplicaSet \"{set_name}\" is progressing."),
                        "lastUpdateTime": now_text, "lastTransitionTime": now_text}),
                );
            } else if reason.as_deref() != Some("NewReplicaSetAvailable")
                && reason.as_deref() != Some("ProgressDeadlineExceeded")
                && let Some(current) = &current
                && let Some(deadline) = deployment["spec"]["progressDeadlineSeconds"].as_i64()
            {
                let last = current["lastUpdateTime"]
                    .as_str()
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    .unwrap_or(now);
                if now.duration_since(last).as_secs() > deadline {
                    set_condition(
                        &mut conditions,
                        json!({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                            "message": format!("ReplicaSet \"{set_name}\" has timed out progressing."),
                            "lastUpdateTime": now_text, "lastTransitionTime": now_text}),
                    );
                }
            }
            match condition(&new_set["status"], "ReplicaFailure") {
                Some(failure) => set_condition(
                    &mut conditions,
                    json!({"type": "ReplicaFailure", "status": "True", "reason": failure["reason"],
                        "message": failure["message"], "lastUpdateTime": now_text,
                        "lastTransitionTime": failure["lastTransitionTime"]}),
                ),
                None => conditions.retain(|c| c["type"] != "ReplicaFailure"),
            }
        }
        let status = json!({"observedGeneration": deployment["metadata"]["generation"],
            "replicas": total, "updatedReplicas": updated, "readyReplicas": ready,
            "availableReplicas": available, "unavailableReplicas": (wanted - available).max(0),
            "conditions": conditions});
        // Only a change of substance is written (timestamps of unchanged conditions are kept).
        let mut comparable = status.clone();
        let mut previous = old.clone();
        for value in [&mut comparable, &mut previous] {
            for c in value["conditions"].as_array_mut().into_iter().flatten() {
                if let Some(c) = c.as_object_mut() {
                    c.remove("lastUpdateTime");
                    c.remove("lastTransitionTime");
                }
            }
            if let Some(conditions) = value["conditions"].as_array_mut() {
                conditions.sort_by_key(|c| c["type"].as_str().unwrap_or_default().to_string());
            }
        }
        if comparable != previous {
            self.call(
                &UserInfo::service_account("kube-system", DEPLOYMENT_CONTROLLER),
                Method::PATCH,
                &format!("/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status"),
                Some(json!({"status": status})),
            )
            .await;
        }
    }

    /// The replicaset controller's sync: as many active pods as replicas.
    async fn sync_replica_set(&self, set: &Value) {
        let namespace = set["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = set["metadata"]["name"].as_str().unwrap_or_default();
        let user = UserInfo::service_account("kube-system", REPLICASET_CONTROLLER);
        let pods: Vec<Value> = self
            .list(&Collection::core(namespace, "pods"))
            .into_iter()
            .filter(|p| owned_by(p, set) && is_active(p))
            .collect();
        let diff = replicas(set) - pods.len() as i64;
        let mut failure: Option<String> = None;
        if diff > 0 {
            let mut left = diff.min(500);
            let mut batch = 1;
            'batches: while left > 0 {
                for _ in 0..batch.min(left) {
                    let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"generateName": format!("{name}-"), "namespace": namespace,
                            "labels": set["spec"]["template"]["metadata"]["labels"],
                            "ownerReferences": [owner_reference(set, "ReplicaSet")]},
                        "spec": set["spec"]["template"]["spec"]});
                    if let Some(annotations) =
                        set["spec"]["template"]["metadata"].get("annotations")
                    {
                        pod["metadata"]["annotations"] = annotations.clone();
                    }
                    let answer = self
                        .call(
                            &user,
                            Method::POST,
                            &format!("/api/v1/namespaces/{namespace}/pods"),
                            Some(pod),
                        )
                        .await;
                    if answer.code == 201 {
                        let created = answer.body["metadata"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string();
                        self.record_event(
                            REPLICASET_CONTROLLER,
                            set,
                            "ReplicaSet",
                            "Normal",
                            "SuccessfulCreate",
                            &format!("Created pod: {created}"),
                        )
                        .await;
                    } else {
                        let message = answer.message();
                        self.record_event(
                            REPLICASET_CONTROLLER,
                            set,
                            "ReplicaSet",
                            "Warning",
                            "FailedCreate",
                            &format!("Error creating: {message}"),
                        )
                        .await;
                        failure = Some(message);
                        break 'batches;
                    }
                }
                left -= batch.min(left);
                batch *= 2;
            }
        } else if diff < 0 {
            let mut surplus = pods.clone();
            // Not scheduled, then pending, then not ready, then the newest go first.
            surplus.sort_by_key(|p| {
                (
                    p["spec"]["nodeName"].as_str().is_some(),
                    p["status"]["phase"] != "Pending",
                    is_ready(p),
                    std::cmp::Reverse(
                        p["metadata"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    ),
                )
            });
            for pod in surplus.iter().take((-diff) as usize) {
                let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
                let answer = self
                    .call(
                        &user,
                        Method::DELETE,
                        &format!("/api/v1/namespaces/{namespace}/pods/{pod_name}"),
                        None,
                    )
                    .await;
                if answer.code == 200 {
                    self.record_event(
                        REPLICASET_CONTROLLER,
                        set,
                        "ReplicaSet",
                        "Normal",
                        "SuccessfulDelete",
                        &format!("Deleted pod: {pod_name}"),
                    )
                    .await;
                }
            }
        }
        self.replica_set_status(set, failure).await;
    }

    async fn replica_set_status(&self, set: &Value, failure: Option<String>) {
        let namespace = set["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = set["metadata"]["name"].as_str().unwrap_or_default();
        let Some(set) = self.get(&Collection::apps(namespace, "replicasets"), name) else {
            return;
        };
        let pods: Vec<Value> = self
            .list(&Collection::core(namespace, "pods"))
            .into_iter()
            .filter(|p| owned_by(p, &set) && is_active(p))
            .collect();
        let ready = pods.iter().filter(|p| is_ready(p)).count();
        let now = self.now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let mut conditions = set["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        match failure {
            Some(message) if !conditions.iter().any(|c| c["type"] == "ReplicaFailure") => {
                conditions.push(json!({"type": "ReplicaFailure", "status": "True",
                    "reason": "FailedCreate", "message": message, "lastTransitionTime": now}));
            }
            Some(_) => {}
            None if pods.len() as i64 >= replicas(&set) => {
                conditions.retain(|c| c["type"] != "ReplicaFailure");
            }
            None => {}
        }
        let mut status = json!({"replicas": pods.len(), "fullyLabeledReplicas": pods.len(),
            "readyReplicas": ready, "availableReplicas": ready,
            "observedGeneration": set["metadata"]["generation"]});
        if !conditions.is_empty() {
            status["conditions"] = json!(conditions);
        }
        if status != set["status"] {
            self.call(
                &UserInfo::service_account("kube-system", REPLICASET_CONTROLLER),
                Method::PUT,
                &format!("/apis/apps/v1/namespaces/{namespace}/replicasets/{name}/status"),
                Some({
                    let mut body = set.clone();
                    body["status"] = status;
                    body
                }),
            )
            .await;
        }
    }
}

fn fnv(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Deployments' ReplicaSets by Deployment name, for tests.
pub fn replica_sets_of(server: &FakeApiServer, namespace: &str, deployment: &str) -> Vec<Value> {
    let Some(owner) = server.get(&Collection::apps(namespace, "deployments"), deployment) else {
        return Vec::new();
    };
    let mut sets: BTreeMap<String, Value> = BTreeMap::new();
    for set in server.list(&Collection::apps(namespace, "replicasets")) {
        if owned_by(&set, &owner) {
            sets.insert(
                set["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                set,
            );
        }
    }
    sets.into_values().collect()
}
