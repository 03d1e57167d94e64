//! The write path: decode-time defaulting, mutating admission (built-in plugins, then webhooks),
//! naming, object validation, validating admission (LimitRanger, ResourceQuota), storage (unless
//! a dry run). Subresources `status` and `eviction`, and deletion.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::deletion::DeleteOptions;
use super::http::{bad_request, conflict, not_found_in, parse_json};
use super::patches::{self, PatchType};
use super::rules::{self, Refusal};
use super::watch::event_alias;
use super::{
    AdmissionAttributes, Collection, FakeApiServer, Objects, UserInfo, admission, apply, defaults,
    quota,
};

/// Bumps `metadata.generation` when the spec changed, as the apiserver does for workloads.
fn next_generation(old: &Value, new: &mut Value) {
    let generation = old["metadata"]["generation"].as_i64();
    if old["spec"] != new["spec"] {
        new["metadata"]["generation"] = json!(generation.unwrap_or(1) + 1);
    } else if let Some(generation) = generation {
        new["metadata"]["generation"] = json!(generation);
    }
}

/// One write request.
pub struct Write<'a> {
    pub server: &'a FakeApiServer,
    pub collection: &'a Collection,
    pub dry_run: bool,
    pub user: &'a UserInfo,
    pub params: &'a BTreeMap<String, String>,
    pub user_agent: &'a str,
}

/// What an UPDATE's field ownership is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ownership {
    /// An update: the writer owns what it changed.
    Update,
    /// Already decided by a server-side apply.
    Applied,
}

impl Write<'_> {
    /// The field manager: `fieldManager`, else the User-Agent up to its first `/`.
    fn manager(&self) -> String {
        match self.params.get("fieldManager").filter(|m| !m.is_empty()) {
            Some(manager) => manager.clone(),
            None => self
                .user_agent
                .split('/')
                .next()
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_control())
                .take(128)
                .collect(),
        }
    }

    fn record_update(&self, live: Option<&Value>, object: &mut Value) {
        let manager = self.manager();
        let api_version = self.collection.api_version();
        let time = self.server.now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        apply::record_update(
            live,
            object,
            &apply::Writer {
                manager: &manager,
                api_version: &api_version,
                time: &time,
            },
        );
    }

    fn attributes(
        &self,
        operation: &'static str,
        name: &str,
        old: Option<&Value>,
    ) -> AdmissionAttributes {
        AdmissionAttributes {
            collection: self.collection.clone(),
            operation,
            name: name.to_string(),
            old: old.cloned(),
            dry_run: self.dry_run,
            subresource: String::new(),
            user: self.user.clone(),
            field_manager: self.params.get("fieldManager").cloned(),
        }
    }

    /// The mutating webhooks, then the defaulting the dispatcher re-runs on their result.
    async fn mutating_webhooks(
        &self,
        attributes: AdmissionAttributes,
        object: Value,
    ) -> Result<Value, Refusal> {
        let mut object = self
            .server
            .run_configured_webhooks(&attributes, object)
            .await?;
        if let Some(webhook) = self.server.catch_all_webhook() {
            object = webhook(attributes, object).await;
            defaults::apply(self.collection, &mut object);
        }
        Ok(object)
    }

    fn limit_ranges(&self) -> Vec<Value> {
        self.server
            .objects_of(&Collection::core(&self.collection.namespace, "limitranges"))
    }

    /// The validating admission plugins that need the store's current state (ResourceQuota),
    /// checked under the store's lock just before the object is stored.
    fn quota_admission(
        &self,
        objects: &Objects,
        operation: &str,
        name: &str,
        object: &Value,
        old: Option<&Value>,
    ) -> Result<(), Refusal> {
        if !quota::handles(self.collection, operation, "") {
            return Ok(());
        }
        let quotas: Vec<Value> = objects
            .by_collection
            .get(&Collection::core(
                &self.collection.namespace,
                "resourcequotas",
            ))
            .map(|items| items.values().cloned().collect())
            .unwrap_or_default();
        quota::admit(
            self.collection,
            name,
            object,
            old,
            &quotas,
            self.server.now(),
        )
    }

    pub async fn create(&self, body: &[u8]) -> Result<Response, Refusal> {
        let object = parse_json(body)?;
        self.create_object(object, Ownership::Update).await
    }

    async fn create_object(
        &self,
        mut object: Value,
        ownership: Ownership,
    ) -> Result<Response, Refusal> {
        let collection = self.collection;
        let sent_namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
        if !sent_namespace.is_empty() && sent_namespace != collection.namespace {
            return Err(bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        if !collection.namespace.is_empty() {
            object["metadata"]["namespace"] = json!(collection.namespace);
        }
        let given_name = object["metadata"]["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        let prefix = object["metadata"]["generateName"]
            .as_str()
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        if given_name.is_none() && prefix.is_none() {
            let (group, kind) = rules::qualified_kind(collection);
            let qualified = if group.is_empty() {
                kind
            } else {
                format!("{kind}.{group}")
            };
            return Err(Refusal::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!(
                    "{qualified} \"\" is invalid: metadata.name: Required value: name or generateName is required"
                ),
            ));
        }
        // Decoding defaults the object; the field manager records the write; then the mutating
        // plugins in the apiserver's order.
        defaults::apply(collection, &mut object);
        if ownership == Ownership::Update {
            self.record_update(None, &mut object);
        }
        let is_pod = collection.is_pods();
        let is_claim = collection.is("api/v1", "persistentvolumeclaims");
        let limit_ranges = if is_pod || is_claim {
            self.limit_ranges()
        } else {
            Vec::new()
        };
        if is_pod {
            admission::limit_ranger_mutate(&mut object, &limit_ranges);
            rules::service_account_admission(&mut object);
        }
        if is_claim {
            let classes = self.server.objects_of(&Collection::new(
                "apis/storage.k8s.io/v1",
                "",
                "storageclasses",
            ));
            admission::default_storage_class(&mut object, &classes)?;
        }
        let attributes = self.attributes("CREATE", given_name.as_deref().unwrap_or(""), None);
        let mut object = self.mutating_webhooks(attributes, object).await?;
        // The registry names the object after the mutating admission, before validation.
        let name = match (&given_name, &prefix) {
            (Some(name), _) => name.clone(),
            (None, Some(prefix)) => self.server.generate_name(prefix),
            (None, None) => String::new(),
        };
        object["metadata"]["name"] = json!(name);
        if !collection.namespace.is_empty() {
            object["metadata"]["namespace"] = json!(collection.namespace);
        }
        // PrepareForCreate: a Pod's status is the registry's, whatever was sent.
        if is_pod {
            object["status"] = defaults::pod_status_at_create(&object["spec"]);
        }
        rules::validate_create(collection, &name, &object)?;
        if is_pod || is_claim {
            admission::limit_ranger_validate(collection, &name, &object, &limit_ranges)?;
        }
        if object.get("spec").is_some() && !is_pod {
            object["metadata"]["generation"] = json!(1);
        }
        let mut objects = self.server.objects.lock().unwrap();
        let taken = [Some(collection.clone()), event_alias(collection)]
            .into_iter()
            .flatten()
            .any(|c| {
                objects
                    .by_collection
                    .get(&c)
                    .is_some_and(|items| items.contains_key(&name))
            });
        if taken {
            self.server.conflicts.fetch_add(1, Ordering::Relaxed);
            let (group, _) = collection.group_version();
            let mut refusal = Refusal::new(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", collection.resource()),
            );
            refusal.details = json!({"name": name, "group": group, "kind": collection.plural});
            return Err(refusal);
        }
        self.quota_admission(&objects, "CREATE", &name, &object, None)?;
        let stored = if self.dry_run {
            object
        } else {
            self.server
                .store(&mut objects, collection, name, object, "ADDED")
        };
        Ok((StatusCode::CREATED, axum::Json(stored)).into_response())
    }

    pub async fn replace(&self, name: &str, body: &[u8]) -> Result<Response, Refusal> {
        let object = parse_json(body)?;
        let current = self
            .server
            .get(self.collection, name)
            .ok_or_else(|| not_found_in(self.collection, name))?;
        let sent = object["metadata"]["resourceVersion"].as_str();
        if sent.is_none() || sent != current["metadata"]["resourceVersion"].as_str() {
            self.server.conflicts.fetch_add(1, Ordering::Relaxed);
            return Err(conflict(self.collection, name));
        }
        self.update(name, &current, object, Ownership::Update).await
    }

    /// Admission, validation and storage of `object` replacing `current`; a conflict when the
    /// stored object changed meanwhile.
    async fn update(
        &self,
        name: &str,
        current: &Value,
        mut object: Value,
        ownership: Ownership,
    ) -> Result<Response, Refusal> {
        let collection = self.collection;
        defaults::apply(collection, &mut object);
        if ownership == Ownership::Update {
            self.record_update(Some(current), &mut object);
        }
        let mut object = self
            .mutating_webhooks(self.attributes("UPDATE", name, Some(current)), object)
            .await?;
        for field in [
            "uid",
            "creationTimestamp",
            "name",
            "namespace",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            match current["metadata"].get(field) {
                Some(value) => object["metadata"][field] = value.clone(),
                None => {
                    if let Some(metadata) = object["metadata"].as_object_mut() {
                        metadata.remove(field);
                    }
                }
            }
        }
        if rules::has_status_subresource(collection) {
            // The main resource cannot change the status (the apiserver's update strategies
            // copy the stored one); only the `status` subresource can.
            match current.get("status") {
                Some(status) => object["status"] = status.clone(),
                None => {
                    if let Some(fields) = object.as_object_mut() {
                        fields.remove("status");
                    }
                }
            }
        }
        rules::validate_update(collection, name, current, &object)?;
        if !collection.is_pods() {
            next_generation(current, &mut object);
        }
        let is_claim = collection.is("api/v1", "persistentvolumeclaims");
        if is_claim && current["metadata"]["deletionTimestamp"].is_null() {
            admission::limit_ranger_validate(collection, name, &object, &self.limit_ranges())?;
        }
        let mut objects = self.server.objects.lock().unwrap();
        let stored = objects
            .by_collection
            .get(collection)
            .and_then(|items| items.get(name))
            .ok_or_else(|| not_found_in(collection, name))?;
        if stored["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
            self.server.conflicts.fetch_add(1, Ordering::Relaxed);
            return Err(conflict(collection, name));
        }
        if &object == current || self.dry_run {
            return Ok(axum::Json(object).into_response());
        }
        self.quota_admission(&objects, "UPDATE", name, &object, Some(current))?;
        let stored = self.server.store(
            &mut objects,
            collection,
            name.to_string(),
            object,
            "MODIFIED",
        );
        self.server.finalized(&mut objects, collection, &stored);
        Ok(axum::Json(stored).into_response())
    }

    pub async fn patch(
        &self,
        name: &str,
        body: &[u8],
        kind: PatchType,
    ) -> Result<Response, Refusal> {
        let patch: Value = if kind == PatchType::Apply {
            serde_norway::from_slice(body)
                .map_err(|e| bad_request(format!("error decoding YAML: {e}")))?
        } else {
            parse_json(body)?
        };
        if kind == PatchType::Apply {
            if self.params.get("fieldManager").is_none_or(String::is_empty) {
                return Err(Refusal::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            if patch["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n != name)
            {
                return Err(bad_request(
                    "the name of the object does not match the name on the URL",
                ));
            }
        }
        // The apiserver retries a patch whose object changed between read and write.
        for _ in 0..5 {
            let manager = self.manager();
            let api_version = self.collection.api_version();
            let time = self.server.now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
            let writer = apply::Writer {
                manager: &manager,
                api_version: &api_version,
                time: &time,
            };
            let force = self.params.get("force").is_some_and(|f| f == "true");
            let Some(current) = self.server.get(self.collection, name) else {
                if kind == PatchType::Apply {
                    let mut object = apply::apply(None, &patch, &writer, force)?;
                    object["metadata"]["name"] = json!(name);
                    return self.create_object(object, Ownership::Applied).await;
                }
                return Err(not_found_in(self.collection, name));
            };
            let (changed, ownership) = if kind == PatchType::Apply {
                (
                    apply::apply(Some(&current), &patch, &writer, force)?,
                    Ownership::Applied,
                )
            } else {
                (apply_patch(&current, &patch, kind)?, Ownership::Update)
            };
            if changed["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                self.server.conflicts.fetch_add(1, Ordering::Relaxed);
                return Err(conflict(self.collection, name));
            }
            match self.update(name, &current, changed, ownership).await {
                Err(refusal)
                    if refusal.code == StatusCode::CONFLICT
                        && refusal.reason == "Conflict"
                        && self.server.get(self.collection, name).is_some_and(|now| {
                            now["metadata"]["resourceVersion"]
                                != current["metadata"]["resourceVersion"]
                        }) =>
                {
                    continue;
                }
                other => return other,
            }
        }
        Err(conflict(self.collection, name))
    }

    /// The status subresource: only `status` is taken from the body; a stale resourceVersion
    /// conflicts.
    pub fn replace_status(&self, name: &str, body: &[u8]) -> Result<Response, Refusal> {
        let sent = parse_json(body)?;
        let current = self
            .server
            .get(self.collection, name)
            .ok_or_else(|| not_found_in(self.collection, name))?;
        if sent["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
            self.server.conflicts.fetch_add(1, Ordering::Relaxed);
            return Err(conflict(self.collection, name));
        }
        let mut updated = current.clone();
        updated["status"] = sent["status"].clone();
        self.store_status(name, &current, updated)
    }

    /// A PATCH of the status subresource (any patch type): only `status` changes.
    pub fn patch_status(
        &self,
        name: &str,
        body: &[u8],
        kind: PatchType,
    ) -> Result<Response, Refusal> {
        let patch: Value = if kind == PatchType::Apply {
            serde_norway::from_slice(body)
                .map_err(|e| bad_request(format!("error decoding YAML: {e}")))?
        } else {
            parse_json(body)?
        };
        let current = self
            .server
            .get(self.collection, name)
            .ok_or_else(|| not_found_in(self.collection, name))?;
        let changed = apply_patch(&current, &patch, kind)?;
        if changed["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
            self.server.conflicts.fetch_add(1, Ordering::Relaxed);
            return Err(conflict(self.collection, name));
        }
        let mut updated = current.clone();
        updated["status"] = changed["status"].clone();
        self.store_status(name, &current, updated)
    }

    fn store_status(
        &self,
        name: &str,
        current: &Value,
        updated: Value,
    ) -> Result<Response, Refusal> {
        let mut objects = self.server.objects.lock().unwrap();
        let stored = objects
            .by_collection
            .get(self.collection)
            .and_then(|items| items.get(name))
            .ok_or_else(|| not_found_in(self.collection, name))?;
        if stored["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
            self.server.conflicts.fetch_add(1, Ordering::Relaxed);
            return Err(conflict(self.collection, name));
        }
        if self.dry_run || &updated == current {
            return Ok(axum::Json(updated).into_response());
        }
        let stored = self.server.store(
            &mut objects,
            self.collection,
            name.to_string(),
            updated,
            "MODIFIED",
        );
        Ok(axum::Json(stored).into_response())
    }

    /// `pods/resize` (see `kubelet`): PUT (`kind` None) or PATCH of the pod's resources.
    pub async fn resize(
        &self,
        name: &str,
        body: &[u8],
        kind: Option<PatchType>,
    ) -> Result<Response, Refusal> {
        let collection = self.collection;
        let current = self
            .server
            .get(collection, name)
            .ok_or_else(|| not_found_in(collection, name))?;
        let sent = match kind {
            None => {
                let sent = parse_json(body)?;
                let given = sent["metadata"]["resourceVersion"].as_str();
                if given
                    .is_some_and(|rv| Some(rv) != current["metadata"]["resourceVersion"].as_str())
                {
                    self.server.conflicts.fetch_add(1, Ordering::Relaxed);
                    return Err(conflict(collection, name));
                }
                sent
            }
            Some(kind) => {
                let patch: Value = if kind == PatchType::Apply {
                    serde_norway::from_slice(body)
                        .map_err(|e| bad_request(format!("error decoding YAML: {e}")))?
                } else {
                    parse_json(body)?
                };
                apply_patch(&current, &patch, kind)?
            }
        };
        // Only the spec is the resize's; the rest is the stored pod's.
        let mut resized = current.clone();
        resized["spec"] = sent["spec"].clone();
        defaults::apply(collection, &mut resized);
        super::kubelet::validate_resize(name, &current, &resized)?;
        let mut attributes = self.attributes("UPDATE", name, Some(&current));
        attributes.subresource = "resize".into();
        let mut resized = self
            .server
            .run_configured_webhooks(&attributes, resized)
            .await?;
        resized["status"] = current["status"].clone();
        admission::limit_ranger_validate(collection, name, &resized, &self.limit_ranges())?;
        let mut objects = self.server.objects.lock().unwrap();
        let quotas: Vec<Value> = objects
            .by_collection
            .get(&Collection::core(&collection.namespace, "resourcequotas"))
            .map(|items| items.values().cloned().collect())
            .unwrap_or_default();
        quota::admit(
            collection,
            name,
            &resized,
            Some(&current),
            &quotas,
            self.server.now(),
        )?;
        if self.dry_run || resized == current {
            return Ok(axum::Json(resized).into_response());
        }
        let stored = self.server.store(
            &mut objects,
            collection,
            name.to_string(),
            resized,
            "MODIFIED",
        );
        // The kubelet sees the new desired resources and answers in the status.
        let mut answered = stored.clone();
        self.server.answer_resize(&objects, &mut answered);
        if answered != stored {
            self.server.store(
                &mut objects,
                collection,
                name.to_string(),
                answered,
                "MODIFIED",
            );
        }
        Ok(axum::Json(stored).into_response())
    }

    /// `pods/eviction` (see `disruption`).
    pub async fn evict(&self, name: &str, body: &[u8]) -> Result<Response, Refusal> {
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        self.server
            .evict_pod(self.collection, name, &body, self.dry_run)
    }

    pub fn delete(&self, name: &str, body: &[u8]) -> Result<Response, Refusal> {
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let options = DeleteOptions::parse(&body, self.params);
        let dry_run = self.dry_run
            || body["dryRun"]
                .as_array()
                .is_some_and(|d| d.iter().any(|v| v == "All"));
        self.server
            .delete_object(self.collection, name, &options, dry_run)
    }
}

/// `current` with a patch of `kind` applied.
fn apply_patch(current: &Value, patch: &Value, kind: PatchType) -> Result<Value, Refusal> {
    let mut changed = current.clone();
    match kind {
        PatchType::Json => {
            let ops = serde_json::from_value::<json_patch::Patch>(patch.clone())
                .map_err(|e| bad_request(format!("not a JSON Patch: {e}")))?;
            json_patch::patch(&mut changed, &ops).map_err(|error| {
                Refusal::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    format!("the patch does not apply: {error}"),
                )
            })?;
        }
        PatchType::Merge => json_patch::merge(&mut changed, patch),
        PatchType::Strategic => patches::strategic_merge(&mut changed, patch),
        PatchType::Apply => patches::server_side_apply(&mut changed, patch),
    }
    Ok(changed)
}
