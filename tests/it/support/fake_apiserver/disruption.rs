//! PodDisruptionBudgets: the disruption controller's status and the eviction subresource's
//! decision (`pkg/controller/disruption`, `pkg/registry/core/pod/storage/eviction.go`).
//!
//! The controller (kept current on every change in the namespace):
//! - the pods a budget selects (policy/v1: an empty selector selects every pod of the namespace);
//! - `desiredHealthy`: an integer `minAvailable` as given (`expectedPods` = the selected pods); a
//!   percentage `minAvailable`, or `maxUnavailable`, scaled from the replicas of the pods'
//!   controllers (a ReplicaSet counts as its Deployment; a pod without a controller puts the
//!   budget in its fail-safe state, as 1.24 does: nothing may be disrupted), rounded up;
//! - `currentHealthy`: selected pods that are Ready and neither terminating nor just evicted
//!   (`disruptedPods`, for two minutes);
//! - `disruptionsAllowed` = currentHealthy − desiredHealthy (never below 0; 0 with no pods).
//!
//! The eviction (`POST pods/{name}/eviction`):
//! - a pod that is Pending, Succeeded, Failed or already terminating is deleted without asking
//!   any budget;
//! - more than one budget: `This pod has more than one PodDisruptionBudget, which the eviction
//!   subresource does not support.` (500);
//! - a pod that is not Ready is deleted without spending the budget when the budget's
//!   `unhealthyPodEvictionPolicy` is `AlwaysAllow`, or (the default `IfHealthyBudget`) when the
//!   budget is healthy (currentHealthy ≥ desiredHealthy > 0); the field is 1.27+ (1.24 drops it,
//!   and behaves as `IfHealthyBudget`);
//! - otherwise the budget decides: a status older than its spec (observedGeneration) → 429 "is
//!   still being processed"; negative → 403; none allowed → 429 `Cannot evict pod as it would
//!   violate the pod's disruption budget.` with the `DisruptionBudget` cause `The disruption
//!   budget web needs 2 healthy pods and has 2 currently`; else one disruption is spent
//!   (recorded in `disruptedPods`) and the pod deleted — gracefully, with the eviction's
//!   `deleteOptions`.
//! - The DisruptionTarget condition (1.26+) is not written.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::deletion::DeleteOptions;
use super::http::{bad_request, not_found_in};
use super::rules::Refusal;
use super::{Collection, FakeApiServer, Objects, selectors};

/// How long an eviction's entry in `disruptedPods` holds (the controller's DeletionTimeout).
const DELETION_TIMEOUT: i64 = 120;

fn budgets(namespace: &str) -> Collection {
    Collection::new("apis/policy/v1", namespace, "poddisruptionbudgets")
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn selects(budget: &Value, pod: &Value) -> bool {
    selectors::label_selector_matches(&budget["spec"]["selector"], &pod["metadata"]["labels"])
}

/// `intstr.GetScaledValueFromIntOrPercent(value, total, roundUp)`.
fn scaled(value: &Value, total: i64, round_up: bool) -> Option<i64> {
    if let Some(number) = value.as_i64() {
        return Some(number);
    }
    let percent: i64 = value.as_str()?.strip_suffix('%')?.parse().ok()?;
    let product = percent * total;
    Some(if round_up {
        (product + 99) / 100
    } else {
        product / 100
    })
}

fn objects_in<'a>(objects: &'a Objects, collection: &Collection) -> Vec<&'a Value> {
    objects
        .by_collection
        .get(collection)
        .map(|items| items.values().collect())
        .unwrap_or_default()
}

/// The replicas of the controllers of `pods` (`getExpectedScale`); `None` when a pod has no
/// controller.
fn expected_scale(objects: &Objects, namespace: &str, pods: &[&Value]) -> Option<i64> {
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0;
    for pod in pods {
        let owner = pod["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|o| o["controller"] == true)?;
        let uid = owner["uid"].as_str().unwrap_or_default().to_string();
        if !seen.insert(uid.clone()) {
            continue;
        }
        let by_uid = |collection: Collection, uid: &str| -> Option<Value> {
            objects_in(objects, &collection)
                .into_iter()
                .find(|o| o["metadata"]["uid"] == uid)
                .cloned()
        };
        let replicas = match owner["kind"].as_str().unwrap_or_default() {
            "ReplicaSet" => {
                let set = by_uid(Collection::apps(namespace, "replicasets"), &uid)?;
                let deployment = set["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|o| o["controller"] == true && o["kind"] == "Deployment")
                    .and_then(|o| o["uid"].as_str())
                    .and_then(|d| by_uid(Collection::apps(namespace, "deployments"), d));
                match deployment {
                    Some(deployment) => {
                        if !seen.insert(
                            deployment["metadata"]["uid"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                        ) {
                            continue;
                        }
                        deployment["spec"]["replicas"].as_i64().unwrap_or(1)
                    }
                    None => set["spec"]["replicas"].as_i64().unwrap_or(1),
                }
            }
            "StatefulSet" => {
                by_uid(Collection::apps(namespace, "statefulsets"), &uid)?["spec"]["replicas"]
                    .as_i64()
                    .unwrap_or(1)
            }
            "ReplicationController" => by_uid(
                Collection::core(namespace, "replicationcontrollers"),
                &uid,
            )?["spec"]["replicas"]
                .as_i64()
                .unwrap_or(1),
            _ => return None,
        };
        total += replicas;
    }
    Some(total)
}

/// The status the disruption controller writes for `budget`.
fn budget_status(
    objects: &Objects,
    namespace: &str,
    budget: &Value,
    now: jiff::Timestamp,
) -> Value {
    let pods: Vec<&Value> = objects_in(objects, &Collection::core(namespace, "pods"))
        .into_iter()
        .filter(|pod| selects(budget, pod))
        .collect();
    let spec = &budget["spec"];
    let generation = budget["metadata"]["generation"].as_i64().unwrap_or(1);
    let (expected, desired) = if spec.get("maxUnavailable").is_some() {
        match expected_scale(objects, namespace, &pods) {
            Some(scale) => {
                let unavailable = scaled(&spec["maxUnavailable"], scale, true).unwrap_or(0);
                (Some(scale), (scale - unavailable).max(0))
            }
            None => (None, 0),
        }
    } else if spec["minAvailable"].is_i64() {
        (
            Some(pods.len() as i64),
            spec["minAvailable"].as_i64().unwrap_or(0),
        )
    } else if spec["minAvailable"].is_string() {
        match expected_scale(objects, namespace, &pods) {
            Some(scale) => (
                Some(scale),
                scaled(&spec["minAvailable"], scale, true).unwrap_or(0),
            ),
            None => (None, 0),
        }
    } else {
        (Some(pods.len() as i64), 0)
    };
    // Evictions confirmed recently and not yet seen as deletions.
    let mut disrupted = serde_json::Map::new();
    for (name, at) in budget["status"]["disruptedPods"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let recent = at
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .is_some_and(|t| now.duration_since(t).as_secs() < DELETION_TIMEOUT);
        let still_running = pods.iter().any(|p| {
            p["metadata"]["name"] == name.as_str() && p["metadata"]["deletionTimestamp"].is_null()
        });
        if recent && still_running {
            disrupted.insert(name.clone(), at.clone());
        }
    }
    let healthy = pods
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| !disrupted.contains_key(p["metadata"]["name"].as_str().unwrap_or_default()))
        .filter(|p| is_ready(p))
        .count() as i64;
    let (allowed, reason) = match expected {
        None => (0, "SyncFailed"),
        Some(expected) => {
            let allowed = if expected <= 0 {
                0
            } else {
                (healthy - desired).max(0)
            };
            (
                allowed,
                if allowed > 0 {
                    "SufficientPods"
                } else {
                    "InsufficientPods"
                },
            )
        }
    };
    let previous = budget["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "DisruptionAllowed"))
        .cloned();
    let status_text = if allowed > 0 { "True" } else { "False" };
    let since = match &previous {
        Some(previous) if previous["status"] == status_text => {
            previous["lastTransitionTime"].clone()
        }
        _ => json!(now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
    };
    let mut status = json!({
        "observedGeneration": generation,
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected.unwrap_or(0),
        "conditions": [{"type": "DisruptionAllowed", "status": status_text, "reason": reason,
            "message": "", "observedGeneration": generation, "lastTransitionTime": since}],
    });
    if !disrupted.is_empty() {
        status["disruptedPods"] = Value::Object(disrupted);
    }
    status
}

impl FakeApiServer {
    /// The disruption controller: every budget of the namespace gets its current status.
    pub(super) fn update_budgets(&self, objects: &mut Objects, namespace: &str) {
        let collection = budgets(namespace);
        let names: Vec<String> = objects
            .by_collection
            .get(&collection)
            .map(|items| items.keys().cloned().collect())
            .unwrap_or_default();
        let now = self.now();
        for name in names {
            let Some(budget) = objects
                .by_collection
                .get(&collection)
                .and_then(|items| items.get(&name))
                .cloned()
            else {
                continue;
            };
            let status = budget_status(objects, namespace, &budget, now);
            if budget["status"] != status {
                let mut updated = budget;
                updated["status"] = status;
                self.store_raw(objects, &collection, name, updated, "MODIFIED");
            }
        }
    }

    /// `POST pods/{name}/eviction`.
    pub(super) fn evict_pod(
        &self,
        collection: &Collection,
        name: &str,
        body: &Value,
        dry_run: bool,
    ) -> Result<Response, Refusal> {
        if body["metadata"]["name"].as_str().is_some_and(|n| n != name) {
            return Err(bad_request(
                "name in URL does not match name in Eviction object",
            ));
        }
        let options = DeleteOptions::parse(body, &Default::default());
        let dry_run = dry_run
            || body["deleteOptions"]["dryRun"]
                .as_array()
                .is_some_and(|d| d.iter().any(|v| v == "All"));
        let pod = self
            .get(collection, name)
            .ok_or_else(|| not_found_in(collection, name))?;
        let phase = pod["status"]["phase"].as_str().unwrap_or_default();
        let ignores_budgets = matches!(phase, "Succeeded" | "Failed" | "Pending")
            || !pod["metadata"]["deletionTimestamp"].is_null();
        if !ignores_budgets {
            self.ask_budget(&collection.namespace, name, &pod, dry_run)?;
        }
        self.delete_object(collection, name, &options, dry_run)?;
        let success = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Success", "code": 201});
        Ok((StatusCode::CREATED, axum::Json(success)).into_response())
    }

    /// The budget's decision; spends one disruption when it allows one.
    fn ask_budget(
        &self,
        namespace: &str,
        pod_name: &str,
        pod: &Value,
        dry_run: bool,
    ) -> Result<(), Refusal> {
        let collection = budgets(namespace);
        let mut objects = self.objects.lock().unwrap();
        let matching: Vec<Value> = objects_in(&objects, &collection)
            .into_iter()
            .filter(|b| selects(b, pod))
            .cloned()
            .collect();
        if matching.len() > 1 {
            return Err(Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        let Some(budget) = matching.into_iter().next() else {
            return Ok(());
        };
        let budget_name = budget["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let status = &budget["status"];
        let current = status["currentHealthy"].as_i64().unwrap_or(0);
        let desired = status["desiredHealthy"].as_i64().unwrap_or(0);
        if !is_ready(pod) {
            if budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow" {
                return Ok(());
            }
            if current >= desired && desired > 0 {
                return Ok(());
            }
        }
        let too_many = |cause: String, retry_after: u64| {
            let mut refusal = Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "Cannot evict pod as it would violate the pod's disruption budget.",
            );
            refusal.details = json!({"causes": [{"reason": "DisruptionBudget", "message": cause}]});
            if retry_after > 0 {
                refusal.details["retryAfterSeconds"] = json!(retry_after);
            }
            refusal
        };
        let generation = budget["metadata"]["generation"].as_i64().unwrap_or(1);
        if status["observedGeneration"].as_i64().unwrap_or(0) < generation {
            return Err(too_many(
                format!(
                    "The disruption budget {budget_name} is still being processed by the server."
                ),
                10,
            ));
        }
        let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
        if allowed < 0 {
            let mut refusal = Refusal::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!(
                    "poddisruptionbudget.policy \"{budget_name}\" is forbidden: pdb disruptions allowed is negative"
                ),
            );
            refusal.details =
                json!({"name": budget_name, "group": "policy", "kind": "poddisruptionbudget"});
            return Err(refusal);
        }
        if allowed == 0 {
            return Err(too_many(
                format!(
                    "The disruption budget {budget_name} needs {desired} healthy pods and has {current} currently"
                ),
                0,
            ));
        }
        if dry_run {
            return Ok(());
        }
        let mut spent = budget;
        spent["status"]["disruptionsAllowed"] = json!(allowed - 1);
        if !spent["status"]["disruptedPods"].is_object() {
            spent["status"]["disruptedPods"] = json!({});
        }
        spent["status"]["disruptedPods"][pod_name] =
            json!(self.now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
        self.store_raw(&mut objects, &collection, budget_name, spent, "MODIFIED");
        Ok(())
    }
}
