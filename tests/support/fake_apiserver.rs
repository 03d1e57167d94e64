//! A small Kubernetes API server for tests: an axum `Router` holding objects in memory, served to
//! `kube::Client::new` in process (no sockets). It implements what selfheal's clients use, with
//! the apiserver's semantics where they matter:
//!
//! - get, list (with `fieldSelector=metadata.name=`), create (409 AlreadyExists), replace
//!   (409 Conflict on a stale `resourceVersion`), merge patch, delete;
//! - watch from a `resourceVersion`, replaying what happened since, then following live;
//! - a global, increasing `resourceVersion`.
//!
//! Paths: `/api/v1/namespaces/{ns}/{plural}[/{name}]` and
//! `/apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}]`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// One collection: API prefix (`api/v1` or `apis/group/version`), namespace and resource plural.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Collection {
    pub prefix: String,
    pub namespace: String,
    pub plural: String,
}

impl Collection {
    pub fn core(namespace: &str, plural: &str) -> Self {
        Self {
            prefix: "api/v1".into(),
            namespace: namespace.into(),
            plural: plural.into(),
        }
    }
}

#[derive(Debug, Clone)]
struct WatchEvent {
    collection: Collection,
    kind: &'static str,
    object: Value,
    resource_version: u64,
}

#[derive(Default)]
struct Objects {
    by_collection: BTreeMap<Collection, BTreeMap<String, Value>>,
    resource_version: u64,
    history: Vec<WatchEvent>,
}

/// Handle on the fake server's state, for tests to inspect and change objects directly.
#[derive(Clone)]
pub struct FakeApiServer {
    objects: Arc<Mutex<Objects>>,
    events: broadcast::Sender<WatchEvent>,
    pub conflicts: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
}

impl Default for FakeApiServer {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeApiServer {
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(4096);
        Self {
            objects: Arc::default(),
            events,
            conflicts: Arc::default(),
            requests: Arc::default(),
        }
    }

    /// A kube client whose every request is answered by this server, in process.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.router(), "default")
    }

    pub fn router(&self) -> Router {
        Router::new().fallback(handle).with_state(self.clone())
    }

    pub fn get(&self, collection: &Collection, name: &str) -> Option<Value> {
        let objects = self.objects.lock().unwrap();
        objects.by_collection.get(collection)?.get(name).cloned()
    }

    pub fn list(&self, collection: &Collection) -> Vec<Value> {
        let objects = self.objects.lock().unwrap();
        objects
            .by_collection
            .get(collection)
            .map(|items| items.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Creates or replaces an object as an out-of-band writer would (`kubectl apply`).
    pub fn put(&self, collection: &Collection, object: Value) -> Value {
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let mut objects = self.objects.lock().unwrap();
        let kind = if objects
            .by_collection
            .get(collection)
            .is_some_and(|items| items.contains_key(&name))
        {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.store(&mut objects, collection, name, object, kind)
    }

    fn store(
        &self,
        objects: &mut Objects,
        collection: &Collection,
        name: String,
        mut object: Value,
        kind: &'static str,
    ) -> Value {
        objects.resource_version += 1;
        let resource_version = objects.resource_version;
        object["metadata"]["resourceVersion"] = json!(resource_version.to_string());
        object["metadata"]["namespace"] = json!(collection.namespace);
        if object["metadata"]["uid"].is_null() {
            object["metadata"]["uid"] = json!(format!("uid-{resource_version}"));
        }
        let items = objects.by_collection.entry(collection.clone()).or_default();
        if kind == "DELETED" {
            items.remove(&name);
        } else {
            items.insert(name, object.clone());
        }
        let event = WatchEvent {
            collection: collection.clone(),
            kind,
            object: object.clone(),
            resource_version,
        };
        objects.history.push(event.clone());
        let _ = self.events.send(event);
        object
    }
}

/// Parses `/api/v1/namespaces/ns/plural[/name]` and the `/apis/...` form.
fn parse_path(path: &str) -> Option<(Collection, Option<String>)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (prefix, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("api/v1".to_string(), rest),
        ["apis", group, version, rest @ ..] => (format!("apis/{group}/{version}"), rest),
        _ => return None,
    };
    match rest {
        ["namespaces", namespace, plural, tail @ ..] if tail.len() <= 1 => Some((
            Collection {
                prefix,
                namespace: namespace.to_string(),
                plural: plural.to_string(),
            },
            tail.first().map(|name| name.to_string()),
        )),
        _ => None,
    }
}

fn query_params(query: Option<&str>) -> BTreeMap<String, String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = std::str::from_utf8(bytes.get(i + 1..i + 3).unwrap_or_default())
            .ok()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        if let (b'%', Some(byte)) = (bytes[i], escaped) {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
    });
    (code, axum::Json(body)).into_response()
}

fn name_matches(selector: Option<&String>, object: &Value) -> bool {
    match selector.and_then(|s| s.strip_prefix("metadata.name=")) {
        Some(name) => object["metadata"]["name"] == name,
        None => true,
    }
}

async fn handle(State(server): State<FakeApiServer>, request: Request) -> Response {
    server.requests.fetch_add(1, Ordering::Relaxed);
    let method = request.method().clone();
    let uri = request.uri().clone();
    let Some((collection, name)) = parse_path(uri.path()) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no route {}", uri.path()),
        );
    };
    let params = query_params(uri.query());
    let body = axum::body::to_bytes(request.into_body(), 16 << 20)
        .await
        .unwrap_or_default();
    match (method, name) {
        (Method::GET, None) if params.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch(&server, collection, &params)
        }
        (Method::GET, None) => list(&server, &collection, &params),
        (Method::GET, Some(name)) => match server.get(&collection, &name) {
            Some(object) => axum::Json(object).into_response(),
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{} \"{name}\" not found", collection.plural),
            ),
        },
        (Method::POST, None) => create(&server, &collection, &body),
        (Method::PUT, Some(name)) => replace(&server, &collection, &name, &body),
        (Method::PATCH, Some(name)) => merge_patch(&server, &collection, &name, &body),
        (Method::DELETE, Some(name)) => {
            let mut objects = server.objects.lock().unwrap();
            let existing = objects
                .by_collection
                .get(&collection)
                .and_then(|items| items.get(&name))
                .cloned();
            match existing {
                Some(object) => {
                    let deleted = server.store(&mut objects, &collection, name, object, "DELETED");
                    axum::Json(deleted).into_response()
                }
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("\"{name}\" not found"),
                ),
            }
        }
        (method, _) => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} not supported"),
        ),
    }
}

fn list(
    server: &FakeApiServer,
    collection: &Collection,
    params: &BTreeMap<String, String>,
) -> Response {
    let objects = server.objects.lock().unwrap();
    let items: Vec<Value> = objects
        .by_collection
        .get(collection)
        .map(|items| {
            items
                .values()
                .filter(|o| name_matches(params.get("fieldSelector"), o))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    axum::Json(json!({
        "kind": "List", "apiVersion": "v1",
        "metadata": {"resourceVersion": objects.resource_version.to_string()},
        "items": items,
    }))
    .into_response()
}

fn watch(
    server: &FakeApiServer,
    collection: Collection,
    params: &BTreeMap<String, String>,
) -> Response {
    let since: u64 = params
        .get("resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0);
    let selector = params.get("fieldSelector").cloned();
    // Subscribe under the lock so no event falls between the replay and the live stream.
    let (replay, live) = {
        let objects = server.objects.lock().unwrap();
        let replay: Vec<WatchEvent> = objects
            .history
            .iter()
            .filter(|e| e.resource_version > since)
            .cloned()
            .collect();
        (replay, server.events.subscribe())
    };
    let live = tokio_stream_from(live);
    let wanted = move |event: &WatchEvent| {
        event.collection == collection && name_matches(selector.as_ref(), &event.object)
    };
    let stream = futures::stream::iter(replay)
        .chain(live)
        .filter(move |event| futures::future::ready(wanted(event)))
        .map(|event| {
            let mut line = serde_json::to_vec(&json!({"type": event.kind, "object": event.object}))
                .unwrap_or_default();
            line.push(b'\n');
            Ok::<Bytes, Infallible>(Bytes::from(line))
        });
    Response::new(Body::from_stream(stream))
}

fn tokio_stream_from(
    receiver: broadcast::Receiver<WatchEvent>,
) -> impl futures::Stream<Item = WatchEvent> {
    futures::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(event) => return Some((event, receiver)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

fn create(server: &FakeApiServer, collection: &Collection, body: &[u8]) -> Response {
    let Ok(object) = serde_json::from_slice::<Value>(body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "body is not JSON".into(),
        );
    };
    let name = match (
        object["metadata"]["name"].as_str(),
        object["metadata"]["generateName"].as_str(),
    ) {
        (Some(name), _) => name.to_string(),
        (None, Some(prefix)) => format!(
            "{prefix}{}",
            server.objects.lock().unwrap().resource_version + 1
        ),
        (None, None) => {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                "metadata.name: Required value".into(),
            );
        }
    };
    let mut objects = server.objects.lock().unwrap();
    if objects
        .by_collection
        .get(collection)
        .is_some_and(|items| items.contains_key(&name))
    {
        server.conflicts.fetch_add(1, Ordering::Relaxed);
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", collection.plural),
        );
    }
    let mut object = object;
    object["metadata"]["name"] = json!(name);
    let stored = server.store(&mut objects, collection, name, object, "ADDED");
    (StatusCode::CREATED, axum::Json(stored)).into_response()
}

fn replace(server: &FakeApiServer, collection: &Collection, name: &str, body: &[u8]) -> Response {
    let Ok(object) = serde_json::from_slice::<Value>(body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "body is not JSON".into(),
        );
    };
    let mut objects = server.objects.lock().unwrap();
    let Some(current) = objects
        .by_collection
        .get(collection)
        .and_then(|items| items.get(name))
    else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("\"{name}\" not found"),
        );
    };
    let sent = object["metadata"]["resourceVersion"].as_str();
    if sent.is_none() || sent != current["metadata"]["resourceVersion"].as_str() {
        server.conflicts.fetch_add(1, Ordering::Relaxed);
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                collection.plural
            ),
        );
    }
    let stored = server.store(
        &mut objects,
        collection,
        name.to_string(),
        object,
        "MODIFIED",
    );
    axum::Json(stored).into_response()
}

fn merge_patch(
    server: &FakeApiServer,
    collection: &Collection,
    name: &str,
    body: &[u8],
) -> Response {
    let Ok(patch) = serde_json::from_slice::<Value>(body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "body is not JSON".into(),
        );
    };
    let mut objects = server.objects.lock().unwrap();
    let Some(mut current) = objects
        .by_collection
        .get(collection)
        .and_then(|items| items.get(name))
        .cloned()
    else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("\"{name}\" not found"),
        );
    };
    json_patch::merge(&mut current, &patch);
    let stored = server.store(
        &mut objects,
        collection,
        name.to_string(),
        current,
        "MODIFIED",
    );
    axum::Json(stored).into_response()
}
