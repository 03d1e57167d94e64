//! A small Kubernetes API server for tests: an axum `Router` holding objects in memory, served to
//! `kube::Client::new` in process (no sockets). It implements what selfheal's clients use, with
//! the apiserver's semantics where they matter:
//!
//! - get; list (all namespaces too, `fieldSelector=metadata.name=`, equality `labelSelector`);
//!   create (409 AlreadyExists); replace (409 Conflict on a stale `resourceVersion`); merge and
//!   JSON patches (a patch that changes nothing stores nothing); delete (UID preconditions);
//! - watch from a `resourceVersion`, replaying what happened since, then following live;
//! - subresources `pods/log` (logs set by the test) and `pods/eviction`;
//! - an optional admission hook, called on every create and update like a mutating webhook;
//! - a global, increasing `resourceVersion`.
//!
//! Paths: `/api/v1[/namespaces/{ns}]/{plural}[/{name}[/{sub}]]` and the `/apis/{group}/{version}/...`
//! form.

use std::collections::{BTreeMap, HashMap};
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

/// One collection: API prefix (`api/v1` or `apis/group/version`), namespace (empty for
/// cluster-scoped objects) and resource plural.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Collection {
    pub prefix: String,
    pub namespace: String,
    pub plural: String,
}

impl Collection {
    pub fn core(namespace: &str, plural: &str) -> Self {
        Self::new("api/v1", namespace, plural)
    }

    pub fn new(prefix: &str, namespace: &str, plural: &str) -> Self {
        Self {
            prefix: prefix.into(),
            namespace: namespace.into(),
            plural: plural.into(),
        }
    }

    pub fn apps(namespace: &str, plural: &str) -> Self {
        Self::new("apis/apps/v1", namespace, plural)
    }
}

/// Called on create and update with the operation and the object; may change the object.
pub type AdmissionHook = Arc<dyn Fn(&Collection, &str, &mut Value) + Send + Sync>;

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
    /// (namespace, pod, container, previous) → log text.
    logs: HashMap<(String, String, String, bool), String>,
}

/// Handle on the fake server's state, for tests to inspect and change objects directly.
#[derive(Clone)]
pub struct FakeApiServer {
    objects: Arc<Mutex<Objects>>,
    events: broadcast::Sender<WatchEvent>,
    admission: Arc<Mutex<Option<AdmissionHook>>>,
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
            admission: Arc::default(),
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

    /// Runs `hook` on every create and update that goes through the API (not on `put`).
    pub fn set_admission(&self, hook: AdmissionHook) {
        *self.admission.lock().unwrap() = Some(hook);
    }

    pub fn set_log(&self, namespace: &str, pod: &str, container: &str, previous: bool, text: &str) {
        self.objects.lock().unwrap().logs.insert(
            (namespace.into(), pod.into(), container.into(), previous),
            text.into(),
        );
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

    /// Creates or replaces an object as an out-of-band writer would (a controller, `kubectl`),
    /// without admission.
    pub fn put(&self, collection: &Collection, object: Value) -> Value {
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let mut objects = self.objects.lock().unwrap();
        let exists = objects
            .by_collection
            .get(collection)
            .is_some_and(|items| items.contains_key(&name));
        let kind = if exists { "MODIFIED" } else { "ADDED" };
        self.store(&mut objects, collection, name, object, kind)
    }

    /// Deletes an object out of band.
    pub fn remove(&self, collection: &Collection, name: &str) {
        let mut objects = self.objects.lock().unwrap();
        if let Some(object) = objects
            .by_collection
            .get(collection)
            .and_then(|i| i.get(name))
            .cloned()
        {
            self.store(
                &mut objects,
                collection,
                name.to_string(),
                object,
                "DELETED",
            );
        }
    }

    fn admit(&self, collection: &Collection, operation: &str, object: &mut Value) {
        let hook = self.admission.lock().unwrap().clone();
        if let Some(hook) = hook {
            hook(collection, operation, object);
        }
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
        if !collection.namespace.is_empty() {
            object["metadata"]["namespace"] = json!(collection.namespace);
        }
        if object["metadata"]["uid"].is_null() {
            object["metadata"]["uid"] = json!(format!("uid-{resource_version}"));
        }
        if object["metadata"]["creationTimestamp"].is_null() {
            object["metadata"]["creationTimestamp"] = json!("2026-11-28T00:00:00Z");
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

/// What a request path names.
struct Target {
    collection: Collection,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (prefix, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("api/v1".to_string(), rest),
        ["apis", group, version, rest @ ..] => (format!("apis/{group}/{version}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", namespace, tail @ ..] if !tail.is_empty() => (namespace.to_string(), tail),
        _ => (String::new(), rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (plural, None, None),
        [plural, name] => (plural, Some(name.to_string()), None),
        [plural, name, sub] => (plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return None,
    };
    Some(Target {
        collection: Collection {
            prefix,
            namespace,
            plural: plural.to_string(),
        },
        name,
        subresource,
    })
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

fn not_found(name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("\"{name}\" not found"),
    )
}

/// `fieldSelector=metadata.name=x` and equality `labelSelector=a=b,c=d`.
fn selected(params: &BTreeMap<String, String>, object: &Value) -> bool {
    let name_ok = match params
        .get("fieldSelector")
        .and_then(|s| s.strip_prefix("metadata.name="))
    {
        Some(name) => object["metadata"]["name"] == name,
        None => true,
    };
    let labels_ok = params.get("labelSelector").is_none_or(|selector| {
        selector
            .split(',')
            .filter(|t| !t.is_empty())
            .all(|term| match term.split_once('=') {
                Some((key, value)) => object["metadata"]["labels"][key] == value,
                None => true,
            })
    });
    name_ok && labels_ok
}

fn covers(listed: &Collection, stored: &Collection) -> bool {
    listed.prefix == stored.prefix
        && listed.plural == stored.plural
        && (listed.namespace.is_empty() || listed.namespace == stored.namespace)
}

async fn handle(State(server): State<FakeApiServer>, request: Request) -> Response {
    server.requests.fetch_add(1, Ordering::Relaxed);
    let method = request.method().clone();
    let uri = request.uri().clone();
    let json_patch = request
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json-patch"));
    let Some(target) = parse_path(uri.path()) else {
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
    let collection = target.collection;
    match (method, target.name, target.subresource.as_deref()) {
        (Method::GET, None, _) if params.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch(&server, collection, &params)
        }
        (Method::GET, None, _) => list(&server, &collection, &params),
        (Method::GET, Some(name), Some("log")) => {
            let objects = server.objects.lock().unwrap();
            let key = (
                collection.namespace.clone(),
                name.clone(),
                params.get("container").cloned().unwrap_or_default(),
                params.get("previous").is_some_and(|p| p == "true"),
            );
            match objects.logs.get(&key) {
                Some(text) => text.clone().into_response(),
                None => status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("no logs for {name}"),
                ),
            }
        }
        (Method::GET, Some(name), None) => match server.get(&collection, &name) {
            Some(object) => axum::Json(object).into_response(),
            None => not_found(&name),
        },
        (Method::POST, None, _) => create(&server, &collection, &body),
        (Method::POST, Some(name), Some("eviction")) => delete(&server, &collection, &name, &body),
        (Method::PUT, Some(name), None) => replace(&server, &collection, &name, &body),
        (Method::PUT, Some(name), Some("status")) => {
            replace_status(&server, &collection, &name, &body)
        }
        (Method::PATCH, Some(name), None) => patch(&server, &collection, &name, &body, json_patch),
        (Method::DELETE, Some(name), None) => delete(&server, &collection, &name, &body),
        (method, _, sub) => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} {sub:?} not supported"),
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
        .iter()
        .filter(|(stored, _)| covers(collection, stored))
        .flat_map(|(_, items)| items.values())
        .filter(|o| selected(params, o))
        .cloned()
        .collect();
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
    let params = params.clone();
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
    let live = futures::stream::unfold(live, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(event) => return Some((event, receiver)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let stream = futures::stream::iter(replay)
        .chain(live)
        .filter(move |event| {
            futures::future::ready(
                covers(&collection, &event.collection) && selected(&params, &event.object),
            )
        })
        .map(|event| {
            let mut line = serde_json::to_vec(&json!({"type": event.kind, "object": event.object}))
                .unwrap_or_default();
            line.push(b'\n');
            Ok::<Bytes, Infallible>(Bytes::from(line))
        });
    Response::new(Body::from_stream(stream))
}

fn create(server: &FakeApiServer, collection: &Collection, body: &[u8]) -> Response {
    let Ok(mut object) = serde_json::from_slice::<Value>(body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "body is not JSON".into(),
        );
    };
    server.admit(collection, "CREATE", &mut object);
    let mut objects = server.objects.lock().unwrap();
    let name = match (
        object["metadata"]["name"].as_str(),
        object["metadata"]["generateName"].as_str(),
    ) {
        (Some(name), _) => name.to_string(),
        (None, Some(prefix)) => format!("{prefix}{}", objects.resource_version + 1),
        (None, None) => {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                "metadata.name: Required value".into(),
            );
        }
    };
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
    object["metadata"]["name"] = json!(name);
    let stored = server.store(&mut objects, collection, name, object, "ADDED");
    (StatusCode::CREATED, axum::Json(stored)).into_response()
}

fn replace(server: &FakeApiServer, collection: &Collection, name: &str, body: &[u8]) -> Response {
    let Ok(mut object) = serde_json::from_slice::<Value>(body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "body is not JSON".into(),
        );
    };
    server.admit(collection, "UPDATE", &mut object);
    let mut objects = server.objects.lock().unwrap();
    let Some(current) = objects
        .by_collection
        .get(collection)
        .and_then(|items| items.get(name))
    else {
        return not_found(name);
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

/// The status subresource: only `status` is taken from the body; a stale resourceVersion conflicts.
fn replace_status(
    server: &FakeApiServer,
    collection: &Collection,
    name: &str,
    body: &[u8],
) -> Response {
    let Ok(sent) = serde_json::from_slice::<Value>(body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "body is not JSON".into(),
        );
    };
    let Some(mut current) = server.get(collection, name) else {
        return not_found(name);
    };
    if sent["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
        server.conflicts.fetch_add(1, Ordering::Relaxed);
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            format!("\"{name}\": the object has been modified"),
        );
    }
    current["status"] = sent["status"].clone();
    let mut objects = server.objects.lock().unwrap();
    let stored = server.store(
        &mut objects,
        collection,
        name.to_string(),
        current,
        "MODIFIED",
    );
    axum::Json(stored).into_response()
}

fn patch(
    server: &FakeApiServer,
    collection: &Collection,
    name: &str,
    body: &[u8],
    json_patch: bool,
) -> Response {
    let Ok(patch) = serde_json::from_slice::<Value>(body) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "body is not JSON".into(),
        );
    };
    let Some(current) = server.get(collection, name) else {
        return not_found(name);
    };
    let mut changed = current.clone();
    if json_patch {
        let Ok(ops) = serde_json::from_value::<json_patch::Patch>(patch) else {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "not a JSON Patch".into(),
            );
        };
        if let Err(error) = json_patch::patch(&mut changed, &ops) {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!("the patch does not apply: {error}"),
            );
        }
    } else {
        json_patch::merge(&mut changed, &patch);
    }
    server.admit(collection, "UPDATE", &mut changed);
    if changed == current {
        return axum::Json(current).into_response();
    }
    let mut objects = server.objects.lock().unwrap();
    let stored = server.store(
        &mut objects,
        collection,
        name.to_string(),
        changed,
        "MODIFIED",
    );
    axum::Json(stored).into_response()
}

fn delete(server: &FakeApiServer, collection: &Collection, name: &str, body: &[u8]) -> Response {
    let options: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let precondition = options["preconditions"]["uid"]
        .as_str()
        .or(options["deleteOptions"]["preconditions"]["uid"].as_str());
    let mut objects = server.objects.lock().unwrap();
    let Some(object) = objects
        .by_collection
        .get(collection)
        .and_then(|i| i.get(name))
        .cloned()
    else {
        return not_found(name);
    };
    if let Some(uid) = precondition
        && object["metadata"]["uid"] != uid
    {
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            format!("Precondition failed: UID in precondition: {uid}"),
        );
    }
    let deleted = server.store(
        &mut objects,
        collection,
        name.to_string(),
        object,
        "DELETED",
    );
    axum::Json(deleted).into_response()
}
