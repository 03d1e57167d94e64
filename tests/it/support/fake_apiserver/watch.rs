//! Reads: get, list, watch, `pods/log`, and discovery.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::Ordering;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::http::{bad_request, not_found_in};
use super::rules::Refusal;
use super::{Collection, FakeApiServer, Objects, Signal, events, selectors};

/// The request's selectors, parsed and checked against what the resource supports.
pub struct Selectors {
    fields: Vec<selectors::FieldRequirement>,
    labels: Option<String>,
}

impl Selectors {
    pub fn parse(
        collection: &Collection,
        params: &BTreeMap<String, String>,
    ) -> Result<Self, Refusal> {
        let fields = match params.get("fieldSelector") {
            Some(text) => selectors::parse_field_selector(collection, text).map_err(bad_request)?,
            None => Vec::new(),
        };
        Ok(Self {
            fields,
            labels: params.get("labelSelector").cloned(),
        })
    }

    pub fn matches(&self, object: &Value) -> bool {
        selectors::fields_match(&self.fields, object)
            && self
                .labels
                .as_deref()
                .is_none_or(|selector| selectors::labels_match(selector, object))
    }
}

/// `object` from `stored` as a read of `requested` serves it: the same resource (all namespaces
/// when `requested` has none), or an Event of the other Events API, converted.
pub fn served_as(requested: &Collection, stored: &Collection, object: &Value) -> Option<Value> {
    if !requested.namespace.is_empty() && requested.namespace != stored.namespace {
        return None;
    }
    if requested.prefix == stored.prefix && requested.plural == stored.plural {
        return Some(object.clone());
    }
    if requested.is_core_events() && stored.is_events_v1() {
        return Some(events::to_core(object));
    }
    if requested.is_events_v1() && stored.is_core_events() {
        return Some(events::to_events_v1(object));
    }
    None
}

/// Whether a read of `requested` serves what `stored` holds.
fn serves(requested: &Collection, stored: &Collection) -> bool {
    let namespace = requested.namespace.is_empty() || requested.namespace == stored.namespace;
    let same = requested.prefix == stored.prefix && requested.plural == stored.plural;
    let events = (requested.is_core_events() && stored.is_events_v1())
        || (requested.is_events_v1() && stored.is_core_events());
    namespace && (same || events)
}

/// The collection holding the other Events API's view of `collection`, if it is an Events one.
pub fn event_alias(collection: &Collection) -> Option<Collection> {
    if collection.is_core_events() {
        Some(Collection::new(
            "apis/events.k8s.io/v1",
            &collection.namespace,
            "events",
        ))
    } else if collection.is_events_v1() {
        Some(Collection::core(&collection.namespace, "events"))
    } else {
        None
    }
}

pub fn log(
    server: &FakeApiServer,
    collection: &Collection,
    name: &str,
    params: &BTreeMap<String, String>,
) -> Result<Response, Refusal> {
    let objects = server.objects.lock().unwrap();
    let key = (
        collection.namespace.clone(),
        name.to_string(),
        params.get("container").cloned().unwrap_or_default(),
        params.get("previous").is_some_and(|p| p == "true"),
    );
    match objects.logs.get(&key) {
        Some(text) => Ok(text.clone().into_response()),
        None => Err(bad_request(format!("no logs for {name}"))),
    }
}

pub fn get(
    server: &FakeApiServer,
    collection: &Collection,
    name: &str,
) -> Result<Response, Refusal> {
    let alias = event_alias(collection);
    let found = [Some(collection.clone()), alias]
        .into_iter()
        .flatten()
        .find_map(|stored| {
            server
                .get(&stored, name)
                .and_then(|object| served_as(collection, &stored, &object))
        });
    match found {
        Some(object) => Ok(axum::Json(object).into_response()),
        None => Err(not_found_in(collection, name)),
    }
}

/// The objects of `collection` (as a read of it serves them) at `resource_version`, from the
/// history; `None` when the history no longer reaches back that far.
fn snapshot(
    objects: &Objects,
    collection: &Collection,
    resource_version: Option<u64>,
) -> Option<Vec<Value>> {
    let mut state: BTreeMap<(Collection, String), Value> = objects
        .by_collection
        .iter()
        .filter(|(stored, _)| serves(collection, stored))
        .flat_map(|(stored, items)| {
            items
                .iter()
                .map(move |(name, o)| ((stored.clone(), name.clone()), o.clone()))
        })
        .collect();
    if let Some(at) = resource_version
        && at < objects.resource_version
    {
        if at < objects.compacted {
            return None;
        }
        // Undo, newest first, every change made after `at`.
        for event in objects
            .history
            .iter()
            .rev()
            .take_while(|e| e.resource_version > at)
        {
            let key = (
                event.collection.clone(),
                event.object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
            match &event.prev {
                Some(prev) => {
                    state.insert(key, prev.clone());
                }
                None => {
                    state.remove(&key);
                }
            }
        }
    }
    let mut items: Vec<(String, String, Value)> = state
        .into_iter()
        .filter_map(|((stored, name), object)| {
            served_as(collection, &stored, &object).map(|o| (stored.namespace.clone(), name, o))
        })
        .collect();
    items.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    Some(items.into_iter().map(|(_, _, o)| o).collect())
}

fn encode_continue(resource_version: i64, start: &str) -> String {
    use base64::Engine;
    let token =
        json!({"v": "meta.k8s.io/v1", "rv": resource_version, "start": format!("{start}\u{0}")});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Option<(i64, String)> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    let start = value["start"]
        .as_str()?
        .trim_end_matches('\u{0}')
        .to_string();
    Some((value["rv"].as_i64()?, start))
}

fn key_of(object: &Value) -> String {
    format!(
        "{}/{}",
        object["metadata"]["namespace"].as_str().unwrap_or_default(),
        object["metadata"]["name"].as_str().unwrap_or_default()
    )
}

/// A list, paged with `limit` and `continue` as the apiserver pages a list read from etcd: every
/// page of one list is the state at the first page's resourceVersion; a token older than the
/// compacted history is refused with 410 Expired (and an inconsistent token to go on with). A
/// list from `resourceVersion=0` is served whole (the watch cache ignores `limit`).
pub fn list(
    server: &FakeApiServer,
    collection: &Collection,
    params: &BTreeMap<String, String>,
) -> Result<Response, Refusal> {
    let selectors = Selectors::parse(collection, params)?;
    let limit = params
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0 && params.get("resourceVersion").is_none_or(|rv| rv != "0"));
    let continuation = match params.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => Some(
            decode_continue(token)
                .ok_or_else(|| bad_request(format!("continue key is not valid: {token}")))?,
        ),
        None => None,
    };
    let objects = server.objects.lock().unwrap();
    let at = match &continuation {
        Some((rv, _)) if *rv > 0 => Some(*rv as u64),
        _ => None,
    };
    let Some(all) = snapshot(&objects, collection, at) else {
        let start = continuation.map(|(_, start)| start).unwrap_or_default();
        let body = json!({"kind": "Status", "apiVersion": "v1",
            "metadata": {"continue": encode_continue(-1, &start)}, "status": "Failure",
            "message": "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
            "reason": "Expired", "code": 410});
        return Ok((StatusCode::GONE, axum::Json(body)).into_response());
    };
    let resource_version = at.unwrap_or(objects.resource_version);
    let start = continuation.map(|(_, start)| start);
    let selected: Vec<Value> = all
        .into_iter()
        .filter(|o| start.as_ref().is_none_or(|start| key_of(o) > *start))
        .filter(|o| selectors.matches(o))
        .collect();
    let mut metadata = json!({"resourceVersion": resource_version.to_string()});
    let items = match limit {
        Some(limit) if selected.len() > limit => {
            let page: Vec<Value> = selected[..limit].to_vec();
            let last = key_of(&page[limit - 1]);
            metadata["continue"] = json!(encode_continue(resource_version as i64, &last));
            if !params.contains_key("labelSelector") && !params.contains_key("fieldSelector") {
                metadata["remainingItemCount"] = json!(selected.len() - limit);
            }
            page
        }
        _ => selected,
    };
    Ok(axum::Json(json!({
        "kind": format!("{}List", collection.kind()), "apiVersion": collection.api_version(),
        "metadata": metadata,
        "items": items,
    }))
    .into_response())
}

fn watch_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// How an event reaches a watch with selectors (the watch cache's `convertToWatchEvent`): an
/// object that starts matching is ADDED, one that stops matching is DELETED (its previous
/// content, at the new resourceVersion).
fn through_selectors(
    selectors: &Selectors,
    kind: &'static str,
    object: Value,
    prev: Option<Value>,
    resource_version: u64,
) -> Option<(&'static str, Value)> {
    let now = kind != "DELETED" && selectors.matches(&object);
    let before = prev.as_ref().is_some_and(|p| selectors.matches(p));
    match (now, before) {
        (true, false) => Some(("ADDED", object)),
        (true, true) => Some(("MODIFIED", object)),
        (false, true) => {
            let mut gone = prev.unwrap_or(object);
            gone["metadata"]["resourceVersion"] = json!(resource_version.to_string());
            Some(("DELETED", gone))
        }
        (false, false) => None,
    }
}

/// What a watch stream is doing.
struct WatchState {
    receiver: broadcast::Receiver<Signal>,
    collection: Collection,
    selectors: Selectors,
    bookmarks: bool,
    /// The resourceVersion of the last event sent (or the watch's start).
    last: u64,
    /// When `timeoutSeconds` ends the watch.
    deadline: Option<tokio::time::Instant>,
    /// When the next periodic bookmark is due.
    heartbeat: tokio::time::Instant,
    /// The bookmark just before the deadline was sent.
    pre_timeout_sent: bool,
}

/// How often the watch cache sends a bookmark to a watch that asked for them.
const BOOKMARK_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl WatchState {
    fn bookmark(&self, resource_version: u64) -> Bytes {
        watch_line(
            "BOOKMARK",
            &json!({"kind": self.collection.kind(), "apiVersion": self.collection.api_version(),
                "metadata": {"resourceVersion": resource_version.to_string()}}),
        )
    }

    /// The next line to send; `None` ends the watch.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            let pre_timeout = self
                .deadline
                .filter(|_| self.bookmarks && !self.pre_timeout_sent)
                .map(|d| {
                    d.checked_sub(std::time::Duration::from_secs(2))
                        .unwrap_or(d)
                });
            let next_bookmark = match pre_timeout {
                Some(pre) if pre < self.heartbeat => pre,
                _ => self.heartbeat,
            };
            let deadline = self.deadline;
            tokio::select! {
                signal = self.receiver.recv() => match signal {
                    Ok(Signal::Event(event)) => {
                        let Some(object) = served_as(&self.collection, &event.collection, &event.object) else {
                            continue;
                        };
                        let prev = event
                            .prev
                            .as_ref()
                            .and_then(|p| served_as(&self.collection, &event.collection, p));
                        if let Some((kind, object)) = through_selectors(
                            &self.selectors, event.kind, object, prev, event.resource_version,
                        ) {
                            self.last = event.resource_version;
                            return Some(watch_line(kind, &object));
                        }
                    }
                    Ok(Signal::Bookmark(resource_version)) => {
                        if self.bookmarks {
                            self.last = self.last.max(resource_version);
                            return Some(self.bookmark(self.last));
                        }
                    }
                    Ok(Signal::Expire) | Err(broadcast::error::RecvError::Closed) => return None,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                },
                _ = tokio::time::sleep_until(next_bookmark), if self.bookmarks => {
                    if pre_timeout == Some(next_bookmark) {
                        self.pre_timeout_sent = true;
                    } else {
                        self.heartbeat = tokio::time::Instant::now() + BOOKMARK_EVERY;
                    }
                    return Some(self.bookmark(self.last));
                }
                _ = async {
                    match deadline {
                        Some(deadline) => tokio::time::sleep_until(deadline).await,
                        None => std::future::pending().await,
                    }
                } => return None,
            }
        }
    }
}

/// A watch from `resourceVersion` (the history since then, or from `0`/none the current objects
/// as ADDED), then live; selector transitions as ADDED/DELETED; BOOKMARKs when
/// `allowWatchBookmarks=true` (every minute, just before `timeoutSeconds` ends the watch, and on
/// `send_bookmarks()`); `timeoutSeconds` ends the stream.
pub fn watch(
    server: &FakeApiServer,
    collection: Collection,
    params: &BTreeMap<String, String>,
) -> Result<Response, Refusal> {
    let selectors = Selectors::parse(&collection, params)?;
    let since: u64 = params
        .get("resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0);
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true" || b == "1");
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .map(std::time::Duration::from_secs);
    // Subscribe under the lock so no event falls between the replay and the live stream.
    let (replay, receiver, last) = {
        let objects = server.objects.lock().unwrap();
        if since != 0 && since < objects.compacted {
            server.expired_watches.fetch_add(1, Ordering::Relaxed);
            let gone = Refusal::new(
                StatusCode::GONE,
                "Expired",
                format!("too old resource version: {since} ({})", objects.compacted),
            );
            let line = watch_line("ERROR", &gone.body());
            return Ok(Response::new(Body::from(line)));
        }
        let replay: Vec<Bytes> = if since == 0 {
            // "Any" resourceVersion: the current state as ADDED events, then live.
            snapshot(&objects, &collection, None)
                .unwrap_or_default()
                .into_iter()
                .filter(|o| selectors.matches(o))
                .map(|o| watch_line("ADDED", &o))
                .collect()
        } else {
            objects
                .history
                .iter()
                .filter(|e| e.resource_version > since)
                .filter_map(|e| {
                    let object = served_as(&collection, &e.collection, &e.object)?;
                    let prev = e
                        .prev
                        .as_ref()
                        .and_then(|p| served_as(&collection, &e.collection, p));
                    through_selectors(&selectors, e.kind, object, prev, e.resource_version)
                })
                .map(|(kind, object)| watch_line(kind, &object))
                .collect()
        };
        let last = since.max(objects.resource_version);
        (replay, server.signals.subscribe(), last)
    };
    let now = tokio::time::Instant::now();
    let state = WatchState {
        receiver,
        collection,
        selectors,
        bookmarks,
        last,
        deadline: timeout.map(|t| now + t),
        heartbeat: now + BOOKMARK_EVERY,
        // A watch shorter than the 2 s margin gets no bookmark before its end.
        pre_timeout_sent: timeout.is_some_and(|t| t <= std::time::Duration::from_secs(2)),
    };
    let live = futures::stream::unfold(state, |mut state| async move {
        let line = state.next().await?;
        Some((line, state))
    });
    let stream = futures::stream::iter(replay)
        .chain(live)
        .map(Ok::<Bytes, Infallible>);
    Ok(Response::new(Body::from_stream(stream)))
}

/// The resources served, by API prefix: (plural, kind, namespaced, verbs).
fn served_resources(
    server: &FakeApiServer,
    prefix: &str,
) -> Vec<(&'static str, &'static str, bool)> {
    let core: Vec<(&str, &str, bool)> = vec![
        ("configmaps", "ConfigMap", true),
        ("events", "Event", true),
        ("limitranges", "LimitRange", true),
        ("namespaces", "Namespace", false),
        ("nodes", "Node", false),
        ("persistentvolumeclaims", "PersistentVolumeClaim", true),
        (
            "persistentvolumeclaims/status",
            "PersistentVolumeClaim",
            true,
        ),
        ("pods", "Pod", true),
        ("pods/eviction", "Eviction", true),
        ("pods/log", "Pod", true),
        ("pods/status", "Pod", true),
        ("resourcequotas", "ResourceQuota", true),
        ("resourcequotas/status", "ResourceQuota", true),
        ("secrets", "Secret", true),
        ("serviceaccounts", "ServiceAccount", true),
        ("services", "Service", true),
    ];
    match prefix {
        "api/v1" if server.serves_pod_resize() => {
            let mut core = core;
            core.push(("pods/resize", "Pod", true));
            core.sort();
            core
        }
        "api/v1" => core,
        "apis/apps/v1" => vec![
            ("daemonsets", "DaemonSet", true),
            ("daemonsets/status", "DaemonSet", true),
            ("deployments", "Deployment", true),
            ("deployments/status", "Deployment", true),
            ("replicasets", "ReplicaSet", true),
            ("replicasets/status", "ReplicaSet", true),
            ("statefulsets", "StatefulSet", true),
            ("statefulsets/status", "StatefulSet", true),
        ],
        "apis/batch/v1" => vec![
            ("cronjobs", "CronJob", true),
            ("cronjobs/status", "CronJob", true),
            ("jobs", "Job", true),
            ("jobs/status", "Job", true),
        ],
        "apis/policy/v1" => vec![
            ("poddisruptionbudgets", "PodDisruptionBudget", true),
            ("poddisruptionbudgets/status", "PodDisruptionBudget", true),
        ],
        "apis/coordination.k8s.io/v1" => vec![("leases", "Lease", true)],
        "apis/events.k8s.io/v1" => vec![("events", "Event", true)],
        "apis/storage.k8s.io/v1" => vec![("storageclasses", "StorageClass", false)],
        "apis/scheduling.k8s.io/v1" => vec![("priorityclasses", "PriorityClass", false)],
        "apis/admissionregistration.k8s.io/v1" => vec![
            (
                "mutatingwebhookconfigurations",
                "MutatingWebhookConfiguration",
                false,
            ),
            (
                "validatingwebhookconfigurations",
                "ValidatingWebhookConfiguration",
                false,
            ),
        ],
        "apis/cert-manager.io/v1" => vec![
            ("certificates", "Certificate", true),
            ("certificates/status", "Certificate", true),
        ],
        _ => Vec::new(),
    }
}

const GROUPS: [&str; 9] = [
    "apps/v1",
    "batch/v1",
    "policy/v1",
    "coordination.k8s.io/v1",
    "events.k8s.io/v1",
    "storage.k8s.io/v1",
    "scheduling.k8s.io/v1",
    "admissionregistration.k8s.io/v1",
    "cert-manager.io/v1",
];

/// The discovery documents (`/api`, `/api/v1`, `/apis`, `/apis/{group}/{version}`), or `None`
/// when `path` is no discovery path.
pub fn discovery(server: &FakeApiServer, path: &str) -> Option<Value> {
    let path = path.trim_end_matches('/');
    match path {
        "/api" => Some(json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "10.0.0.1:6443"}]})),
        "/apis" => {
            let groups: Vec<Value> = GROUPS
                .iter()
                .map(|gv| {
                    let (group, version) = gv.split_once('/').unwrap_or((gv, "v1"));
                    json!({"name": group, "versions": [{"groupVersion": gv, "version": version}],
                        "preferredVersion": {"groupVersion": gv, "version": version}})
                })
                .collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        _ => {
            let (prefix, group_version) = if path == "/api/v1" {
                ("api/v1".to_string(), "v1".to_string())
            } else {
                let gv = path.strip_prefix("/apis/")?;
                if !GROUPS.contains(&gv) {
                    return None;
                }
                (format!("apis/{gv}"), gv.to_string())
            };
            let resources: Vec<Value> = served_resources(server, &prefix)
                .into_iter()
                .map(|(name, kind, namespaced)| {
                    let verbs = if name.ends_with("/eviction") {
                        json!(["create"])
                    } else if name.ends_with("/log") {
                        json!(["get"])
                    } else if name.contains('/') {
                        json!(["get", "patch", "update"])
                    } else {
                        json!([
                            "create", "delete", "get", "list", "patch", "update", "watch"
                        ])
                    };
                    json!({"name": name, "singularName": "", "namespaced": namespaced,
                        "kind": kind, "verbs": verbs})
                })
                .collect();
            Some(json!({"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": group_version, "resources": resources}))
        }
    }
}
