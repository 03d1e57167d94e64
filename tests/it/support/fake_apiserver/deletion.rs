//! Deletion as the generic registry does it (`rest.BeforeDelete`, the pod strategy's
//! `CheckGracefulDelete`):
//!
//! - Preconditions (`uid`, `resourceVersion`) are checked first: 409 Conflict, `Operation cannot
//!   be fulfilled on Pod "web-1": the UID in the precondition (a) does not match the UID in
//!   record (b). The object might have been deleted and then recreated`.
//! - A Pod is deleted gracefully: its grace period is the request's `gracePeriodSeconds`, else
//!   the pod's `terminationGracePeriodSeconds` (30 by default); 0 when the pod was never
//!   scheduled (no `spec.nodeName`) or is already terminal (Succeeded/Failed); a negative value
//!   counts as 1. With a grace period the pod stays, with `deletionTimestamp` (now + grace) and
//!   `deletionGracePeriodSeconds` set, its status untouched (a MODIFIED watch event), until the
//!   grace ends; only then is it gone (DELETED). Grace 0 removes it at once.
//! - Deleting an object that is already being deleted may only shorten its grace period; a
//!   longer or equal one changes nothing (the object is returned as it is).
//! - An object with `metadata.finalizers` gets `deletionTimestamp` and stays until an update
//!   removes the last finalizer.
//! - Pods answer with the object; other resources, once gone, with a `Success` Status.
//!
//! The grace ends in time (a timer on the server's clock), or at once when a test calls
//! `end_grace_periods` / `end_grace_period`, or when `advance_clock` moves past it. What the
//! kubelet does meanwhile (stopping containers, a final status) is not modelled: the pod keeps
//! the status it had.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::http::not_found_in;
use super::rules::{Refusal, qualified_kind};
use super::{Collection, FakeApiServer, Objects};

/// The options of a DELETE: from the body (DeleteOptions, or an Eviction's `deleteOptions`) and
/// the query.
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

impl DeleteOptions {
    pub fn parse(body: &Value, query: &std::collections::BTreeMap<String, String>) -> Self {
        let options = if body["deleteOptions"].is_object() {
            &body["deleteOptions"]
        } else {
            body
        };
        Self {
            grace_period: options["gracePeriodSeconds"]
                .as_i64()
                .or_else(|| query.get("gracePeriodSeconds").and_then(|g| g.parse().ok())),
            uid: options["preconditions"]["uid"].as_str().map(str::to_string),
            resource_version: options["preconditions"]["resourceVersion"]
                .as_str()
                .map(str::to_string),
        }
    }
}

fn precondition_failed(collection: &Collection, name: &str, detail: String) -> Refusal {
    let (group, kind) = qualified_kind(collection);
    let resource = if group.is_empty() {
        kind
    } else {
        format!("{kind}.{group}")
    };
    let mut refusal = Refusal::new(
        StatusCode::CONFLICT,
        "Conflict",
        format!("Operation cannot be fulfilled on {resource} \"{name}\": {detail}"),
    );
    refusal.details = json!({"name": name, "group": group, "kind": collection.plural});
    refusal
}

fn timestamp(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn parse_timestamp(value: &Value) -> Option<jiff::Timestamp> {
    value.as_str().and_then(|t| t.parse().ok())
}

/// What a DELETE does to the object.
enum Outcome {
    /// Removed now.
    Gone(Value),
    /// Kept, terminating (or waiting for finalizers).
    Kept(Value),
}

impl FakeApiServer {
    /// Deletes `name` as the registry does; `dry_run` decides without storing.
    pub(super) fn delete_object(
        &self,
        collection: &Collection,
        name: &str,
        options: &DeleteOptions,
        dry_run: bool,
    ) -> Result<Response, Refusal> {
        let outcome = {
            let mut objects = self.objects.lock().unwrap();
            let object = objects
                .by_collection
                .get(collection)
                .and_then(|i| i.get(name))
                .cloned()
                .ok_or_else(|| not_found_in(collection, name))?;
            if let Some(uid) = &options.uid
                && object["metadata"]["uid"] != uid.as_str()
            {
                return Err(precondition_failed(
                    collection,
                    name,
                    format!(
                        "the UID in the precondition ({uid}) does not match the UID in record ({}). The object might have been deleted and then recreated",
                        object["metadata"]["uid"].as_str().unwrap_or_default()
                    ),
                ));
            }
            if let Some(version) = &options.resource_version
                && object["metadata"]["resourceVersion"] != version.as_str()
            {
                return Err(precondition_failed(
                    collection,
                    name,
                    format!(
                        "the ResourceVersion in the precondition ({version}) does not match the ResourceVersion in record ({}). The object might have been modified",
                        object["metadata"]["resourceVersion"]
                            .as_str()
                            .unwrap_or_default()
                    ),
                ));
            }
            self.decide_deletion(&mut objects, collection, name, object, options, dry_run)
        };
        Ok(match outcome {
            Outcome::Kept(object) => axum::Json(object).into_response(),
            Outcome::Gone(object) if collection.is_pods() => axum::Json(object).into_response(),
            Outcome::Gone(object) => {
                let (group, _) = collection.group_version();
                axum::Json(json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Success", "details": {"name": name, "group": group,
                        "kind": collection.plural, "uid": object["metadata"]["uid"]}}))
                .into_response()
            }
        })
    }

    fn decide_deletion(
        &self,
        objects: &mut Objects,
        collection: &Collection,
        name: &str,
        object: Value,
        options: &DeleteOptions,
        dry_run: bool,
    ) -> Outcome {
        let finalizers = object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        let now = self.now();
        let current_grace = object["metadata"]["deletionGracePeriodSeconds"].as_i64();
        let terminating = !object["metadata"]["deletionTimestamp"].is_null();
        let grace = if terminating {
            // Already being deleted: only a shorter grace period changes anything.
            match (current_grace, options.grace_period.map(|g| g.max(0))) {
                (None | Some(0), _) => Some(0),
                (Some(current), Some(shorter)) if shorter < current => Some(shorter),
                _ => None,
            }
        } else if collection.is_pods() {
            let mut grace = options
                .grace_period
                .or(object["spec"]["terminationGracePeriodSeconds"].as_i64())
                .unwrap_or(30);
            if object["spec"]["nodeName"]
                .as_str()
                .is_none_or(str::is_empty)
                || matches!(
                    object["status"]["phase"].as_str(),
                    Some("Succeeded" | "Failed")
                )
            {
                grace = 0;
            }
            Some(if grace < 0 { 1 } else { grace })
        } else {
            Some(0)
        };
        let Some(grace) = grace else {
            return Outcome::Kept(object);
        };
        let mut marked = object.clone();
        if terminating {
            // The deadline moves by the difference: old timestamp - old grace + new grace.
            let started = parse_timestamp(&object["metadata"]["deletionTimestamp"])
                .and_then(|t| {
                    t.checked_sub(jiff::SignedDuration::from_secs(current_grace.unwrap_or(0)))
                        .ok()
                })
                .unwrap_or(now);
            let deadline = started
                .checked_add(jiff::SignedDuration::from_secs(grace))
                .unwrap_or(now);
            marked["metadata"]["deletionTimestamp"] = json!(timestamp(deadline));
        } else {
            let deadline = now
                .checked_add(jiff::SignedDuration::from_secs(grace))
                .unwrap_or(now);
            marked["metadata"]["deletionTimestamp"] = json!(timestamp(deadline));
        }
        marked["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        if grace == 0 && !finalizers {
            if dry_run {
                return Outcome::Gone(object);
            }
            let gone = self.store(objects, collection, name.to_string(), marked, "DELETED");
            return Outcome::Gone(gone);
        }
        if dry_run {
            return Outcome::Kept(marked);
        }
        if marked == object {
            return Outcome::Kept(object);
        }
        let kept = self.store(objects, collection, name.to_string(), marked, "MODIFIED");
        if grace > 0 {
            self.schedule_end_of_grace(collection, name, &kept);
        }
        Outcome::Kept(kept)
    }

    /// Ends the grace at its deadline, in time.
    fn schedule_end_of_grace(&self, collection: &Collection, name: &str, object: &Value) {
        let Some(deadline) = parse_timestamp(&object["metadata"]["deletionTimestamp"]) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let server = self.clone();
        let collection = collection.clone();
        let name = name.to_string();
        runtime.spawn(async move {
            loop {
                let left = deadline.duration_since(server.now());
                if left <= jiff::SignedDuration::ZERO {
                    break;
                }
                let wait = std::time::Duration::try_from(left)
                    .unwrap_or(std::time::Duration::from_secs(1))
                    .min(std::time::Duration::from_secs(1));
                tokio::time::sleep(wait).await;
            }
            server.end_grace_if(&collection, &name, |_| true);
        });
    }

    /// Removes the object if it is terminating, its finalizers are gone and `due` holds for its
    /// deletion deadline.
    fn end_grace_if(
        &self,
        collection: &Collection,
        name: &str,
        due: impl Fn(jiff::Timestamp) -> bool,
    ) -> bool {
        let mut objects = self.objects.lock().unwrap();
        let Some(object) = objects
            .by_collection
            .get(collection)
            .and_then(|items| items.get(name))
            .cloned()
        else {
            return false;
        };
        let Some(deadline) = parse_timestamp(&object["metadata"]["deletionTimestamp"]) else {
            return false;
        };
        let finalizers = object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if finalizers || !due(deadline) {
            return false;
        }
        self.store(
            &mut objects,
            collection,
            name.to_string(),
            object,
            "DELETED",
        );
        true
    }

    /// Ends the grace period of every terminating object now (its kubelet confirms at once).
    pub fn end_grace_periods(&self) -> usize {
        let terminating: Vec<(Collection, String)> = {
            let objects = self.objects.lock().unwrap();
            objects
                .by_collection
                .iter()
                .flat_map(|(collection, items)| {
                    items
                        .iter()
                        .filter(|(_, o)| !o["metadata"]["deletionTimestamp"].is_null())
                        .map(move |(name, _)| (collection.clone(), name.clone()))
                })
                .collect()
        };
        terminating
            .iter()
            .filter(|(collection, name)| self.end_grace_if(collection, name, |_| true))
            .count()
    }

    /// Ends the grace period of one terminating object now; false when it is not terminating.
    pub fn end_grace_period(&self, collection: &Collection, name: &str) -> bool {
        self.end_grace_if(collection, name, |_| true)
    }

    /// Ends the grace periods whose deadline the clock has passed.
    pub(super) fn end_due_grace_periods(&self) {
        let now = self.now();
        let terminating: Vec<(Collection, String)> = {
            let objects = self.objects.lock().unwrap();
            objects
                .by_collection
                .iter()
                .flat_map(|(collection, items)| {
                    items
                        .iter()
                        .filter(|(_, o)| !o["metadata"]["deletionTimestamp"].is_null())
                        .map(move |(name, _)| (collection.clone(), name.clone()))
                })
                .collect()
        };
        for (collection, name) in terminating {
            self.end_grace_if(&collection, &name, |deadline| deadline <= now);
        }
    }

    /// After an update: an object being deleted whose last finalizer was removed is gone.
    pub(super) fn finalized(&self, objects: &mut Objects, collection: &Collection, object: &Value) {
        let terminating = !object["metadata"]["deletionTimestamp"].is_null();
        let finalizers = object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        let grace_left = object["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(0)
            > 0
            && parse_timestamp(&object["metadata"]["deletionTimestamp"])
                .is_some_and(|deadline| deadline > self.now());
        if terminating
            && !finalizers
            && !grace_left
            && let Some(name) = object["metadata"]["name"].as_str()
        {
            self.store(
                objects,
                collection,
                name.to_string(),
                object.clone(),
                "DELETED",
            );
        }
    }
}
