//! A small Kubernetes API server for tests: an axum `Router` holding objects in memory, served to
//! `kube::Client::new` in process (no sockets). It implements what selfheal's clients use, with
//! the real apiserver's semantics and refusals where they matter:
//!
//! - get; list (all namespaces too; field selectors checked against the fields the apiserver
//!   supports per resource, 400 otherwise; label selectors); create (409 AlreadyExists);
//!   replace (409 Conflict on a stale `resourceVersion`); JSON patch, JSON merge patch,
//!   strategic merge patch and server-side apply (see `patches`; a patch that changes nothing
//!   stores nothing); delete (UID preconditions); `dryRun=All` on every write;
//! - the built-in admission and validation the apiserver runs (see `rules`): ServiceAccount token
//!   mounts and the LimitRanger on Pod create; StatefulSet, Job, claim and Pod update rules;
//!   `events.k8s.io/v1` Event checks;
//! - watch from a `resourceVersion`, replaying what happened since, then following live (from
//!   `0` or none: the current objects as ADDED, then live, as the apiserver's watch cache does);
//!   `expire_watches()` ends every open watch and compacts the history, so a watch resumed from
//!   an older `resourceVersion` gets the apiserver's 410 Gone ERROR event and must re-list;
//! - subresources `pods/log` (logs set by the test), `pods/eviction` (with PodDisruptionBudgets:
//!   429 TooManyRequests when no disruption is allowed), and `status` (PUT and merge PATCH);
//! - Events stored once and served by both `core/v1` and `events.k8s.io/v1` (see `events`);
//! - an optional mutating webhook, called on every create and update (with the old object on
//!   update) like the apiserver calls a MutatingWebhookConfiguration;
//! - a global, increasing `resourceVersion`; `metadata.generation` bumped when `spec` changes;
//! - interference for tests: `hold_requests` (matching requests hang until released, to prove one
//!   slow call delays nothing else) and `fail_requests` (the next N matching requests get a
//!   chosen Status, e.g. 429 or 503);
//! - `production_client()`: the client with the retry layer kube puts in every client built from
//!   a kubeconfig (429/503/504 retried up to 15 times), to reproduce what selfheal really sees.
//!
//! Paths: `/api/v1[/namespaces/{ns}]/{plural}[/{name}[/{sub}]]` and the `/apis/{group}/{version}/...`
//! form.

#[path = "fake_apiserver/events.rs"]
pub mod events;
#[path = "fake_apiserver/patches.rs"]
pub mod patches;
#[path = "fake_apiserver/rules.rs"]
pub mod rules;
#[path = "fake_apiserver/selectors.rs"]
pub mod selectors;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch as signal};

use patches::PatchType;
use rules::Refusal;

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

    /// API group (empty for the core group) and version.
    pub fn group_version(&self) -> (String, String) {
        match self.prefix.strip_prefix("apis/") {
            Some(rest) => {
                let (group, version) = rest.split_once('/').unwrap_or((rest, ""));
                (group.to_string(), version.to_string())
            }
            None => (
                String::new(),
                self.prefix.trim_start_matches("api/").to_string(),
            ),
        }
    }

    /// The kind this collection serves (`Pod`, `StatefulSet`, ...).
    pub fn kind(&self) -> String {
        rules::kind_of_plural(&self.plural)
    }

    fn is_core_events(&self) -> bool {
        self.prefix == "api/v1" && self.plural == "events"
    }

    fn is_events_v1(&self) -> bool {
        self.prefix == "apis/events.k8s.io/v1" && self.plural == "events"
    }
}

/// Called on create and update with the operation and the object; may change the object.
pub type AdmissionHook = Arc<dyn Fn(&Collection, &str, &mut Value) + Send + Sync>;

/// Called on create and update with the operation, the stored object on UPDATE (`None` on
/// CREATE) and the incoming object, which it may change.
pub type UpdateAdmissionHook =
    Arc<dyn Fn(&Collection, &str, Option<&Value>, &mut Value) + Send + Sync>;

/// What the apiserver tells a mutating webhook about a write (an AdmissionReview's request).
#[derive(Debug, Clone)]
pub struct AdmissionAttributes {
    pub collection: Collection,
    /// `CREATE` or `UPDATE`.
    pub operation: &'static str,
    pub name: String,
    /// The stored object, on UPDATE.
    pub old: Option<Value>,
    pub dry_run: bool,
}

pub type WebhookFuture = Pin<Box<dyn Future<Output = Value> + Send>>;

/// A mutating webhook: gets the request's attributes and the incoming object, returns the object
/// to store (unchanged when it fails: the tests' webhooks fail open, as selfheal's is configured).
pub type MutatingWebhook = Arc<dyn Fn(AdmissionAttributes, Value) -> WebhookFuture + Send + Sync>;

#[derive(Debug, Clone)]
struct WatchEvent {
    collection: Collection,
    kind: &'static str,
    object: Value,
    resource_version: u64,
}

/// What open watches receive.
#[derive(Debug, Clone)]
enum Signal {
    Event(WatchEvent),
    /// `expire_watches()`: every open watch ends.
    Expire,
}

/// What an interference rule does to the requests it matches.
enum Interference {
    /// Hold until the guard releases them.
    Hold {
        released: signal::Receiver<bool>,
        held: Arc<AtomicUsize>,
    },
    /// Answer the next `remaining` with `refusal` (and a `Retry-After` header when set).
    Fail {
        remaining: usize,
        refusal: Refusal,
        retry_after: Option<u64>,
    },
}

struct Rule {
    id: u64,
    method: Option<Method>,
    path: String,
    interference: Interference,
}

impl Rule {
    fn matches(&self, method: &Method, path: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method) && path.contains(&self.path)
    }
}

/// Requests held by `FakeApiServer::hold_requests`; released when this is dropped.
pub struct HeldRequests {
    server: FakeApiServer,
    id: u64,
    release: signal::Sender<bool>,
    held: Arc<AtomicUsize>,
}

impl HeldRequests {
    /// How many matching requests are waiting right now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

impl Drop for HeldRequests {
    fn drop(&mut self) {
        self.server
            .rules
            .lock()
            .unwrap()
            .retain(|r| r.id != self.id);
        let _ = self.release.send(true);
    }
}

#[derive(Default)]
struct Objects {
    by_collection: BTreeMap<Collection, BTreeMap<String, Value>>,
    resource_version: u64,
    history: Vec<WatchEvent>,
    /// Watches from a resourceVersion below this get 410 Gone.
    compacted: u64,
    /// (namespace, pod, container, previous) → log text.
    logs: HashMap<(String, String, String, bool), String>,
}

/// Handle on the fake server's state, for tests to inspect and change objects directly.
#[derive(Clone)]
pub struct FakeApiServer {
    objects: Arc<Mutex<Objects>>,
    signals: broadcast::Sender<Signal>,
    webhook: Arc<Mutex<Option<MutatingWebhook>>>,
    rules: Arc<Mutex<Vec<Rule>>>,
    next_rule: Arc<AtomicUsize>,
    pub conflicts: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
    /// Watch requests answered with 410 Gone.
    pub expired_watches: Arc<AtomicUsize>,
}

impl Default for FakeApiServer {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeApiServer {
    pub fn new() -> Self {
        let (signals, _) = broadcast::channel(4096);
        Self {
            objects: Arc::default(),
            signals,
            webhook: Arc::default(),
            rules: Arc::default(),
            next_rule: Arc::default(),
            conflicts: Arc::default(),
            requests: Arc::default(),
            expired_watches: Arc::default(),
        }
    }

    /// A kube client whose every request is answered by this server, in process.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.router(), "default")
    }

    /// A kube client with the retry layer kube adds to every client built from a kubeconfig
    /// (`Config::default_retry`: 429, 503 and 504 retried up to 15 times, exponential backoff
    /// from 5 ms, honouring `Retry-After`), as selfheal's own client has in a cluster.
    pub fn production_client(&self) -> kube::Client {
        let service = tower::ServiceBuilder::new()
            .layer(tower::retry::RetryLayer::new(
                kube::client::retry::RetryPolicy::server_retry(),
            ))
            .map_err(|never: Infallible| -> tower::BoxError { match never {} })
            .service(self.router());
        kube::Client::new(service, "default")
    }

    /// Holds every request whose method is `method` (any when `None`) and whose path contains
    /// `path`, until the returned guard is dropped.
    pub fn hold_requests(&self, method: Option<Method>, path: &str) -> HeldRequests {
        let (release, released) = signal::channel(false);
        let held = Arc::new(AtomicUsize::new(0));
        let id = self.add_rule(
            method,
            path,
            Interference::Hold {
                released,
                held: held.clone(),
            },
        );
        HeldRequests {
            server: self.clone(),
            id,
            release,
            held,
        }
    }

    /// Answers the next `times` requests matching `method` and `path` with a Status of `code`
    /// (reason `reason`), with a `Retry-After` header when `retry_after` is set.
    pub fn fail_requests(
        &self,
        method: Option<Method>,
        path: &str,
        times: usize,
        code: StatusCode,
        reason: &'static str,
        retry_after: Option<u64>,
    ) {
        let refusal = Refusal::new(code, reason, format!("injected by the test: {reason}"));
        self.add_rule(
            method,
            path,
            Interference::Fail {
                remaining: times,
                refusal,
                retry_after,
            },
        );
    }

    fn add_rule(&self, method: Option<Method>, path: &str, interference: Interference) -> u64 {
        let id = self.next_rule.fetch_add(1, Ordering::Relaxed) as u64;
        self.rules.lock().unwrap().push(Rule {
            id,
            method,
            path: path.to_string(),
            interference,
        });
        id
    }

    /// Applies the first matching interference rule: a failure to answer with, or a hold to
    /// wait out first.
    async fn interfere(&self, method: &Method, path: &str) -> Option<Response> {
        let hold = {
            let mut rules = self.rules.lock().unwrap();
            let rule = rules.iter_mut().find(|r| {
                r.matches(method, path)
                    && !matches!(r.interference, Interference::Fail { remaining: 0, .. })
            })?;
            match &mut rule.interference {
                Interference::Fail {
                    remaining,
                    refusal,
                    retry_after,
                } => {
                    *remaining -= 1;
                    let mut response = refusal.clone().into_response();
                    if let Some(seconds) = retry_after
                        && let Ok(value) = seconds.to_string().parse()
                    {
                        response.headers_mut().insert("retry-after", value);
                    }
                    return Some(response);
                }
                Interference::Hold { released, held } => (released.clone(), held.clone()),
            }
        };
        let (mut released, held) = hold;
        held.fetch_add(1, Ordering::SeqCst);
        let _ = released.wait_for(|released| *released).await;
        held.fetch_sub(1, Ordering::SeqCst);
        None
    }

    pub fn router(&self) -> Router {
        Router::new().fallback(handle).with_state(self.clone())
    }

    /// Runs `hook` on every create and update that goes through the API (not on `put`).
    pub fn set_admission(&self, hook: AdmissionHook) {
        self.set_admission_with_old(Arc::new(
            move |collection: &Collection,
                  operation: &str,
                  _old: Option<&Value>,
                  object: &mut Value| hook(collection, operation, object),
        ));
    }

    /// Runs `hook` on every create and update that goes through the API (not on `put`), with the
    /// stored object on UPDATE.
    pub fn set_admission_with_old(&self, hook: UpdateAdmissionHook) {
        self.set_mutating_webhook(Arc::new(move |attributes, mut object| {
            hook(
                &attributes.collection,
                attributes.operation,
                attributes.old.as_ref(),
                &mut object,
            );
            Box::pin(std::future::ready(object))
        }));
    }

    /// Calls `webhook` on every create and update that goes through the API (not on `put`).
    pub fn set_mutating_webhook(&self, webhook: MutatingWebhook) {
        *self.webhook.lock().unwrap() = Some(webhook);
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

    /// The newest resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.objects.lock().unwrap().resource_version
    }

    /// Creates or replaces an object as an out-of-band writer would (a controller, `kubectl`),
    /// without admission or validation.
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

    /// Ends every open watch and compacts the history: the global resourceVersion moves on (as
    /// writes elsewhere in a cluster move it) and every resourceVersion handed out before is now
    /// too old to watch from, so a resumed watch gets 410 Gone and its client must re-list.
    pub fn expire_watches(&self) {
        let mut objects = self.objects.lock().unwrap();
        objects.resource_version += 1;
        objects.compacted = objects.resource_version;
        objects.history.clear();
        let _ = self.signals.send(Signal::Expire);
    }

    async fn admit(&self, attributes: AdmissionAttributes, object: Value) -> Value {
        let webhook = self.webhook.lock().unwrap().clone();
        match webhook {
            Some(webhook) => webhook(attributes, object).await,
            None => object,
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
        let _ = self.signals.send(Signal::Event(event));
        object
    }

    /// The LimitRanges of a namespace.
    fn limit_ranges(&self, namespace: &str) -> Vec<Value> {
        self.list(&Collection::core(namespace, "limitranges"))
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

fn status(code: StatusCode, reason: &'static str, message: String) -> Response {
    Refusal::new(code, reason, message).into_response()
}

fn bad_request(message: impl Into<String>) -> Refusal {
    Refusal::new(StatusCode::BAD_REQUEST, "BadRequest", message)
}

fn not_found_in(collection: &Collection, name: &str) -> Refusal {
    let (group, _) = collection.group_version();
    let resource = if group.is_empty() {
        collection.plural.clone()
    } else {
        format!("{}.{group}", collection.plural)
    };
    let mut refusal = Refusal::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{resource} \"{name}\" not found"),
    );
    refusal.details = json!({"name": name, "group": group, "kind": collection.plural});
    refusal
}

fn conflict(collection: &Collection, name: &str) -> Refusal {
    Refusal::new(
        StatusCode::CONFLICT,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            collection.plural
        ),
    )
}

/// The request's selectors, parsed and checked against what the resource supports.
struct Selectors {
    fields: Vec<selectors::FieldRequirement>,
    labels: Option<String>,
}

impl Selectors {
    fn parse(collection: &Collection, params: &BTreeMap<String, String>) -> Result<Self, Refusal> {
        let fields = match params.get("fieldSelector") {
            Some(text) => selectors::parse_field_selector(collection, text).map_err(bad_request)?,
            None => Vec::new(),
        };
        Ok(Self {
            fields,
            labels: params.get("labelSelector").cloned(),
        })
    }

    fn matches(&self, object: &Value) -> bool {
        selectors::fields_match(&self.fields, object)
            && self
                .labels
                .as_deref()
                .is_none_or(|selector| selectors::labels_match(selector, object))
    }
}

/// `object` from `stored` as a read of `requested` serves it: the same resource (all namespaces
/// when `requested` has none), or an Event of the other Events API, converted.
fn served_as(requested: &Collection, stored: &Collection, object: &Value) -> Option<Value> {
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
fn event_alias(collection: &Collection) -> Option<Collection> {
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

async fn handle(State(server): State<FakeApiServer>, request: Request) -> Response {
    server.requests.fetch_add(1, Ordering::Relaxed);
    let method = request.method().clone();
    let uri = request.uri().clone();
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if let Some(response) = server.interfere(&method, uri.path()).await {
        return response;
    }
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
    let write = Write {
        server: &server,
        collection: &collection,
        dry_run: params.get("dryRun").is_some_and(|d| d == "All"),
    };
    let result = match (method, target.name, target.subresource.as_deref()) {
        (Method::GET, None, _) if params.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch(&server, collection, &params)
        }
        (Method::GET, None, _) => list(&server, &collection, &params),
        (Method::GET, Some(name), Some("log")) => log(&server, &collection, &name, &params),
        (Method::GET, Some(name), None) => get(&server, &collection, &name),
        (Method::POST, None, _) => write.create(&body).await,
        (Method::POST, Some(name), Some("eviction")) => evict(&server, &collection, &name, &body),
        (Method::PUT, Some(name), None) => write.replace(&name, &body).await,
        (Method::PUT, Some(name), Some("status")) => {
            replace_status(&server, &collection, &name, &body)
        }
        (Method::PATCH, Some(name), Some("status")) => {
            patch_status(&server, &collection, &name, &body)
        }
        (Method::PATCH, Some(name), None) => match PatchType::from_content_type(&content_type) {
            Some(kind) => write.patch(&name, &body, kind, &params).await,
            None => Err(Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type:?})"
                ),
            )),
        },
        (Method::DELETE, Some(name), None) => delete(&server, &collection, &name, &body),
        (method, _, sub) => Err(Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} {sub:?} not supported"),
        )),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

fn log(
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

fn get(server: &FakeApiServer, collection: &Collection, name: &str) -> Result<Response, Refusal> {
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

fn list(
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
        "kind": "List", "apiVersion": "v1",
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

fn watch(
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

fn parse_json(body: &[u8]) -> Result<Value, Refusal> {
    serde_json::from_slice::<Value>(body).map_err(|e| bad_request(format!("body is not JSON: {e}")))
}

/// Bumps `metadata.generation` when the spec changed, as the apiserver does for workloads.
fn next_generation(old: &Value, new: &mut Value) {
    let generation = old["metadata"]["generation"].as_i64();
    if old["spec"] != new["spec"] {
        new["metadata"]["generation"] = json!(generation.unwrap_or(1) + 1);
    } else if let Some(generation) = generation {
        new["metadata"]["generation"] = json!(generation);
    }
}

/// The write path: admission, validation, storage (unless a dry run).
struct Write<'a> {
    server: &'a FakeApiServer,
    collection: &'a Collection,
    dry_run: bool,
}

impl Write<'_> {
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
        }
    }

    async fn create(&self, body: &[u8]) -> Result<Response, Refusal> {
        let object = parse_json(body)?;
        self.create_object(object).await
    }

    async fn create_object(&self, mut object: Value) -> Result<Response, Refusal> {
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
        let name = match (
            object["metadata"]["name"].as_str(),
            object["metadata"]["generateName"].as_str(),
        ) {
            (Some(name), _) => name.to_string(),
            (None, Some(prefix)) => format!("{prefix}{}", self.server.resource_version() + 1),
            (None, None) => {
                return Err(Refusal::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "metadata.name: Required value",
                ));
            }
        };
        object["metadata"]["name"] = json!(name);
        let is_pod = collection.prefix == "api/v1" && collection.plural == "pods";
        let limit_ranges = if is_pod {
            self.server.limit_ranges(&collection.namespace)
        } else {
            Vec::new()
        };
        if is_pod {
            rules::service_account_admission(&mut object);
        }
        rules::limit_ranger_defaults(&mut object, &limit_ranges);
        let mut object = self
            .server
            .admit(self.attributes("CREATE", &name, None), object)
            .await;
        object["metadata"]["name"] = json!(name);
        rules::validate_create(collection, &name, &object)?;
        rules::limit_ranger_validate(collection, &name, &object, &limit_ranges)?;
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
            return Err(Refusal::new(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", collection.plural),
            ));
        }
        let stored = if self.dry_run {
            object
        } else {
            self.server
                .store(&mut objects, collection, name, object, "ADDED")
        };
        Ok((StatusCode::CREATED, axum::Json(stored)).into_response())
    }

    async fn replace(&self, name: &str, body: &[u8]) -> Result<Response, Refusal> {
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
        self.update(name, &current, object).await
    }

    /// Admission, validation and storage of `object` replacing `current`; a conflict when the
    /// stored object changed meanwhile.
    async fn update(
        &self,
        name: &str,
        current: &Value,
        object: Value,
    ) -> Result<Response, Refusal> {
        let collection = self.collection;
        let mut object = self
            .server
            .admit(self.attributes("UPDATE", name, Some(current)), object)
            .await;
        for field in ["uid", "creationTimestamp", "name", "namespace"] {
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
        if collection.is_events_v1() {
            rules::validate_create(collection, name, &object)?;
        }
        rules::validate_update(collection, name, current, &object)?;
        if !(collection.prefix == "api/v1" && collection.plural == "pods") {
            next_generation(current, &mut object);
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
        let stored = self.server.store(
            &mut objects,
            collection,
            name.to_string(),
            object,
            "MODIFIED",
        );
        Ok(axum::Json(stored).into_response())
    }

    async fn patch(
        &self,
        name: &str,
        body: &[u8],
        kind: PatchType,
        params: &BTreeMap<String, String>,
    ) -> Result<Response, Refusal> {
        let patch: Value = if kind == PatchType::Apply {
            serde_norway::from_slice(body)
                .map_err(|e| bad_request(format!("error decoding YAML: {e}")))?
        } else {
            parse_json(body)?
        };
        if kind == PatchType::Apply {
            if params.get("fieldManager").is_none_or(String::is_empty) {
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
            let Some(current) = self.server.get(self.collection, name) else {
                if kind == PatchType::Apply {
                    let mut object = patch.clone();
                    object["metadata"]["name"] = json!(name);
                    return self.create_object(object).await;
                }
                return Err(not_found_in(self.collection, name));
            };
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
                PatchType::Merge => json_patch::merge(&mut changed, &patch),
                PatchType::Strategic => patches::strategic_merge(&mut changed, &patch),
                PatchType::Apply => patches::server_side_apply(&mut changed, &patch),
            }
            if changed["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                self.server.conflicts.fetch_add(1, Ordering::Relaxed);
                return Err(conflict(self.collection, name));
            }
            match self.update(name, &current, changed).await {
                Err(refusal)
                    if refusal.code == StatusCode::CONFLICT
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
}

/// The status subresource: only `status` is taken from the body; a stale resourceVersion conflicts.
fn replace_status(
    server: &FakeApiServer,
    collection: &Collection,
    name: &str,
    body: &[u8],
) -> Result<Response, Refusal> {
    let sent = parse_json(body)?;
    let mut current = server
        .get(collection, name)
        .ok_or_else(|| not_found_in(collection, name))?;
    if sent["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
        server.conflicts.fetch_add(1, Ordering::Relaxed);
        return Err(conflict(collection, name));
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
    Ok(axum::Json(stored).into_response())
}

/// A merge patch of the status subresource: only `status` changes.
fn patch_status(
    server: &FakeApiServer,
    collection: &Collection,
    name: &str,
    body: &[u8],
) -> Result<Response, Refusal> {
    let patch = parse_json(body)?;
    let mut current = server
        .get(collection, name)
        .ok_or_else(|| not_found_in(collection, name))?;
    let mut status = current["status"].clone();
    json_patch::merge(&mut status, &patch["status"]);
    current["status"] = status;
    let mut objects = server.objects.lock().unwrap();
    let stored = server.store(
        &mut objects,
        collection,
        name.to_string(),
        current,
        "MODIFIED",
    );
    Ok(axum::Json(stored).into_response())
}

/// `pods/eviction`: the pod's PodDisruptionBudget decides, as the apiserver's eviction REST does.
fn evict(
    server: &FakeApiServer,
    collection: &Collection,
    name: &str,
    body: &[u8],
) -> Result<Response, Refusal> {
    let pod = server
        .get(collection, name)
        .ok_or_else(|| not_found_in(collection, name))?;
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    let ignores_budgets = matches!(phase, "Succeeded" | "Failed" | "Pending")
        || !pod["metadata"]["deletionTimestamp"].is_null();
    if !ignores_budgets {
        let budgets: Vec<Value> = server
            .list(&Collection::new(
                "apis/policy/v1",
                &collection.namespace,
                "poddisruptionbudgets",
            ))
            .into_iter()
            .filter(|b| {
                selectors::label_selector_matches(
                    &b["spec"]["selector"],
                    &pod["metadata"]["labels"],
                )
            })
            .collect();
        if budgets.len() > 1 {
            return Err(Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        if let Some(budget) = budgets.into_iter().next() {
            let allowed = budget["status"]["disruptionsAllowed"].as_i64().unwrap_or(0);
            let budget_name = budget["metadata"]["name"].as_str().unwrap_or_default();
            if allowed < 0 {
                return Err(Refusal::new(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    "pdb disruptions allowed is negative",
                ));
            }
            if allowed == 0 {
                let mut refusal = Refusal::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    "Cannot evict pod as it would violate the pod's disruption budget.",
                );
                refusal.details = json!({"causes": [{
                    "reason": "DisruptionBudget",
                    "message": format!(
                        "The disruption budget {budget_name} needs {} healthy pods and has {} currently",
                        budget["status"]["desiredHealthy"].as_i64().unwrap_or(0),
                        budget["status"]["currentHealthy"].as_i64().unwrap_or(0),
                    ),
                }]});
                return Err(refusal);
            }
            let mut spent = budget.clone();
            spent["status"]["disruptionsAllowed"] = json!(allowed - 1);
            let budgets = Collection::new(
                "apis/policy/v1",
                &collection.namespace,
                "poddisruptionbudgets",
            );
            server.put(&budgets, spent);
        }
    }
    delete(server, collection, name, body)?;
    let success = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
    Ok((StatusCode::CREATED, axum::Json(success)).into_response())
}

fn delete(
    server: &FakeApiServer,
    collection: &Collection,
    name: &str,
    body: &[u8],
) -> Result<Response, Refusal> {
    let options: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let precondition = options["preconditions"]["uid"]
        .as_str()
        .or(options["deleteOptions"]["preconditions"]["uid"].as_str());
    let mut objects = server.objects.lock().unwrap();
    let object = objects
        .by_collection
        .get(collection)
        .and_then(|i| i.get(name))
        .cloned()
        .ok_or_else(|| not_found_in(collection, name))?;
    if let Some(uid) = precondition
        && object["metadata"]["uid"] != uid
    {
        return Err(Refusal::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("Precondition failed: UID in precondition: {uid}"),
        ));
    }
    let deleted = server.store(
        &mut objects,
        collection,
        name.to_string(),
        object,
        "DELETED",
    );
    Ok(axum::Json(deleted).into_response())
}
