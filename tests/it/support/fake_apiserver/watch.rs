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
use super::{Collection, FakeApiServer, Signal, events, selectors};

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

pub fn list(
    server: &FakeApiServer,
    collection: &Collection,
    params: &BTreeMap<String, String>,
) -> Result<Response, Refusal> {
    let selectors = Selectors::parse(collection, params)?;
    let objects = server.objects.lock().unwrap();
    let items: Vec<Value> = objects
        .by_collection
        .iter()
        .flat_map(|(stored, items)| {
            items
                .values()
                .filter_map(move |o| served_as(collection, stored, o))
        })
        .filter(|o| selectors.matches(o))
        .collect();
    Ok(axum::Json(json!({
        "kind": format!("{}List", collection.kind()), "apiVersion": collection.api_version(),
        "metadata": {"resourceVersion": objects.resource_version.to_string()},
        "items": items,
    }))
    .into_response())
}

fn watch_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

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
    // Subscribe under the lock so no event falls between the replay and the live stream.
    let (replay, live) = {
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
        let replay: Vec<(&'static str, Value)> = if since == 0 {
            // "Any" resourceVersion: the current state as ADDED events, then live.
            objects
                .by_collection
                .iter()
                .flat_map(|(stored, items)| {
                    let collection = &collection;
                    items
                        .values()
                        .filter_map(move |o| served_as(collection, stored, o))
                })
                .map(|o| ("ADDED", o))
                .collect()
        } else {
            objects
                .history
                .iter()
                .filter(|e| e.resource_version > since)
                .filter_map(|e| {
                    served_as(&collection, &e.collection, &e.object).map(|o| (e.kind, o))
                })
                .collect()
        };
        (replay, server.signals.subscribe())
    };
    let live_collection = collection.clone();
    let live = futures::stream::unfold(live, move |mut receiver| {
        let collection = live_collection.clone();
        async move {
            loop {
                match receiver.recv().await {
                    Ok(Signal::Event(event)) => {
                        if let Some(object) =
                            served_as(&collection, &event.collection, &event.object)
                        {
                            return Some(((event.kind, object), receiver));
                        }
                    }
                    Ok(Signal::Bookmark) => continue,
                    Ok(Signal::Expire) | Err(broadcast::error::RecvError::Closed) => return None,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                }
            }
        }
    });
    let stream = futures::stream::iter(replay)
        .chain(live)
        .filter(move |(_, object)| futures::future::ready(selectors.matches(object)))
        .map(|(kind, object)| Ok::<Bytes, Infallible>(watch_line(kind, &object)));
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
    let _ = server;
    match prefix {
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
