//! A small Kubernetes API server for tests: an axum `Router` holding objects in memory, served to
//! `kube::Client::new` in process (no sockets). It implements what selfheal's clients use, with
//! the real apiserver's semantics and refusals where they matter (Kubernetes 1.24, the version the
//! product is verified against, unless a rule names another):
//!
//! - get; list (all namespaces too; field selectors checked against the fields the apiserver
//!   supports per resource, 400 otherwise; label selectors; paging with `limit`/`continue`, 410
//!   for a continue token older than the compacted history, see `watch`); create (409
//!   AlreadyExists; `generateName` resolved after the mutating admission, as the registry does);
//!   replace (409 Conflict on a stale `resourceVersion`); JSON patch, JSON merge patch,
//!   strategic merge patch and server-side apply with field ownership (see `patches` and
//!   `apply`; a patch that changes nothing stores nothing); delete (preconditions, graceful
//!   deletion of pods, finalizers, see `deletion`); `dryRun=All` on every write;
//! - the decode-time defaulting (see `defaults`), then the admission chain in the apiserver's
//!   order (see `admission`): LimitRanger defaults, ServiceAccount, DefaultStorageClass, the
//!   mutating webhooks, object validation (see `rules`), LimitRanger min/max/ratio, ResourceQuota
//!   (see `quota`, whose controller keeps every quota's `status` current);
//! - watch from a `resourceVersion`, replaying what happened since, then following live (from
//!   `0` or none: the current objects as ADDED, then live, as the apiserver's watch cache does);
//!   selector transitions as ADDED / DELETED, bookmarks, `timeoutSeconds` (see `watch`);
//!   `expire_watches()` ends every open watch and compacts the history, so a watch resumed from
//!   an older `resourceVersion` gets the apiserver's 410 Gone ERROR event and must re-list;
//! - subresources `pods/log` (logs set by the test), `pods/eviction` (the disruption controller's
//!   PodDisruptionBudget status and the eviction REST's decision, see `disruption`), `status`
//!   (PUT and every PATCH type) for the kinds that have one (cert-manager Certificates too), and
//!   `pods/resize` when enabled (see `kubelet`);
//! - Events stored once and served by both `core/v1` and `events.k8s.io/v1` (see `events`);
//! - mutating webhooks: the project's MutatingWebhookConfiguration objects routed to in-process
//!   routers (see `webhooks`), and the older catch-all hook `set_mutating_webhook`;
//! - a global, increasing `resourceVersion`; `metadata.generation` bumped when `spec` changes;
//! - a clock (`now`, `advance_clock`) for deletion grace periods and controller deadlines;
//! - a request log (`request_log`): method, path, query, patch type and user of every request;
//! - interference for tests: `hold_requests` (matching requests hang until released, to prove one
//!   slow call delays nothing else) and `fail_requests` (the next N matching requests get a
//!   chosen Status, e.g. 429 or 503);
//! - `production_client()`: the client with the retry layer kube puts in every client built from
//!   a kubeconfig (429/503/504 retried up to 15 times), to reproduce what selfheal really sees.
//!
//! Paths: `/api/v1[/namespaces/{ns}]/{plural}[/{name}[/{sub}]]` and the `/apis/{group}/{version}/...`
//! form; discovery at `/api`, `/api/v1`, `/apis` and `/apis/{group}/{version}`.

#[path = "fake_apiserver/admission.rs"]
pub mod admission;
#[path = "fake_apiserver/apply.rs"]
mod apply;
#[path = "fake_apiserver/controllers.rs"]
pub mod controllers;
#[path = "fake_apiserver/defaults.rs"]
pub mod defaults;
#[path = "fake_apiserver/deletion.rs"]
mod deletion;
#[path = "fake_apiserver/disruption.rs"]
mod disruption;
#[path = "fake_apiserver/events.rs"]
pub mod events;
#[path = "fake_apiserver/http.rs"]
mod http;
#[path = "fake_apiserver/kubelet.rs"]
pub mod kubelet;
#[path = "fake_apiserver/patches.rs"]
pub mod patches;
#[path = "fake_apiserver/quantity.rs"]
pub mod quantity;
#[path = "fake_apiserver/quota.rs"]
pub mod quota;
#[path = "fake_apiserver/rules.rs"]
pub mod rules;
#[path = "fake_apiserver/selectors.rs"]
pub mod selectors;
#[path = "fake_apiserver/watch.rs"]
mod watch;
#[path = "fake_apiserver/webhooks.rs"]
pub mod webhooks;
#[path = "fake_apiserver/write.rs"]
mod write;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch as signal};

use http::{TargetPath, parse_path, query_params};
use patches::PatchType;
use rules::Refusal;
use write::Write;

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

    /// `apiVersion` of the objects served here (`v1`, `apps/v1`).
    pub fn api_version(&self) -> String {
        match self.group_version() {
            (group, version) if group.is_empty() => version,
            (group, version) => format!("{group}/{version}"),
        }
    }

    /// The kind this collection serves (`Pod`, `StatefulSet`, ...).
    pub fn kind(&self) -> String {
        rules::kind_of_plural(&self.plural)
    }

    /// The group-qualified resource as the apiserver's messages name it (`pods`,
    /// `deployments.apps`).
    pub fn resource(&self) -> String {
        let (group, _) = self.group_version();
        if group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{group}", self.plural)
        }
    }

    /// The same resource in another namespace.
    pub fn in_namespace(&self, namespace: &str) -> Self {
        Self::new(&self.prefix, namespace, &self.plural)
    }

    pub fn is(&self, prefix: &str, plural: &str) -> bool {
        self.prefix == prefix && self.plural == plural
    }

    pub fn is_pods(&self) -> bool {
        self.is("api/v1", "pods")
    }

    fn is_core_events(&self) -> bool {
        self.is("api/v1", "events")
    }

    fn is_events_v1(&self) -> bool {
        self.is("apis/events.k8s.io/v1", "events")
    }
}

/// Called on create and update with the operation and the object; may change the object.
pub type AdmissionHook = Arc<dyn Fn(&Collection, &str, &mut Value) + Send + Sync>;

/// Called on create and update with the operation, the stored object on UPDATE (`None` on
/// CREATE) and the incoming object, which it may change.
pub type UpdateAdmissionHook =
    Arc<dyn Fn(&Collection, &str, Option<&Value>, &mut Value) + Send + Sync>;

/// Who made a request: the default user (a cluster admin), or whom the request impersonates
/// (`Impersonate-User` / `Impersonate-Group` headers, as kube's impersonation sends them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub username: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The user tests act as unless they impersonate another (`kubectl` with admin credentials).
    pub fn admin() -> Self {
        Self {
            username: "kubernetes-admin".into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        }
    }

    /// A ServiceAccount, as the apiserver names it.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Self {
            username: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
        }
    }

    /// As an AdmissionReview's `userInfo`.
    pub fn to_json(&self) -> Value {
        json!({"username": self.username, "groups": self.groups})
    }
}

/// What the apiserver tells a mutating webhook about a write (an AdmissionReview's request).
#[derive(Debug, Clone)]
pub struct AdmissionAttributes {
    pub collection: Collection,
    /// `CREATE` or `UPDATE`.
    pub operation: &'static str,
    /// The object's name; empty on a CREATE with `generateName` (named after admission).
    pub name: String,
    /// The stored object, on UPDATE.
    pub old: Option<Value>,
    pub dry_run: bool,
    /// The subresource written (`resize`), empty for the main resource.
    pub subresource: String,
    pub user: UserInfo,
    /// The `fieldManager` of the request, if any (in the AdmissionReview's options).
    pub field_manager: Option<String>,
}

pub type WebhookFuture = Pin<Box<dyn Future<Output = Value> + Send>>;

/// A mutating webhook: gets the request's attributes and the incoming object, returns the object
/// to store (unchanged when it fails: the tests' webhooks fail open, as selfheal's is configured).
pub type MutatingWebhook = Arc<dyn Fn(AdmissionAttributes, Value) -> WebhookFuture + Send + Sync>;

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub method: Method,
    pub path: String,
    /// The query parameters, decoded.
    pub query: BTreeMap<String, String>,
    /// For a PATCH, how its body was to be read (from the content type).
    pub patch_type: Option<PatchType>,
    pub user: String,
    /// The status code answered.
    pub code: u16,
    /// The body, when it was JSON (or YAML for an apply patch).
    pub body: Option<Value>,
}

impl LoggedRequest {
    fn target(&self) -> Option<TargetPath> {
        parse_path(&self.path)
    }

    /// The collection the request addressed.
    pub fn collection(&self) -> Option<Collection> {
        self.target().map(|t| t.collection)
    }

    /// The object's name, for requests on one object.
    pub fn name(&self) -> Option<String> {
        self.target().and_then(|t| t.name)
    }

    /// The subresource (`status`, `eviction`, `resize`, `log`), if any.
    pub fn subresource(&self) -> Option<String> {
        self.target().and_then(|t| t.subresource)
    }

    /// POST, PUT, PATCH or DELETE (watches and reads are not writes).
    pub fn is_write(&self) -> bool {
        matches!(
            self.method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        )
    }

    pub fn is_watch(&self) -> bool {
        self.query
            .get("watch")
            .is_some_and(|w| w == "true" || w == "1")
    }
}

#[derive(Debug, Clone)]
struct WatchEvent {
    collection: Collection,
    kind: &'static str,
    object: Value,
    /// The object before this change (`None` when it was added).
    prev: Option<Value>,
    resource_version: u64,
}

/// What open watches receive.
#[derive(Debug, Clone)]
enum Signal {
    Event(WatchEvent),
    /// `send_bookmarks()`: every watch that asked for bookmarks gets one, at this
    /// resourceVersion.
    Bookmark(u64),
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

/// Settings and state outside the object store.
#[derive(Default)]
struct Settings {
    /// How far the clock was moved on by `advance_clock`.
    clock_offset: jiff::SignedDuration,
    /// Requests in arrival order.
    log: Vec<LoggedRequest>,
    /// Names handed out for `generateName`.
    generated: u64,
    /// The kubelet's settings (pods run, `pods/resize` served, its answer).
    kubelet: kubelet::KubeletSettings,
}

/// Handle on the fake server's state, for tests to inspect and change objects directly.
#[derive(Clone)]
pub struct FakeApiServer {
    objects: Arc<Mutex<Objects>>,
    settings: Arc<Mutex<Settings>>,
    signals: broadcast::Sender<Signal>,
    webhook: Arc<Mutex<Option<MutatingWebhook>>>,
    /// Webhook services (`namespace/name`) or URLs, routed to in-process routers.
    backends: Arc<Mutex<HashMap<String, webhooks::Backend>>>,
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
            settings: Arc::default(),
            signals,
            webhook: Arc::default(),
            backends: Arc::default(),
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

    /// A client whose requests are made as `user` (impersonation headers).
    pub fn client_as(&self, user: &UserInfo) -> kube::Client {
        let username = user.username.clone();
        let groups = user.groups.clone();
        let service = tower::ServiceBuilder::new()
            .map_request(
                move |mut request: axum::http::Request<kube::client::Body>| {
                    let headers = request.headers_mut();
                    if let Ok(value) = username.parse() {
                        headers.insert("impersonate-user", value);
                    }
                    for group in &groups {
                        if let Ok(value) = group.parse() {
                            headers.append("impersonate-group", value);
                        }
                    }
                    request
                },
            )
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

    /// Calls `webhook` on every create and update of a main resource that goes through the API
    /// (not on `put`), after the webhooks of stored MutatingWebhookConfigurations.
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

    /// Creates or replaces an object as an out-of-band writer would (a controller, `kubectl`):
    /// with the decode-time defaulting every stored object has been through (see `defaults`;
    /// a Pod without a status gets `phase: Pending` and its `qosClass`), without admission or
    /// validation.
    pub fn put(&self, collection: &Collection, mut object: Value) -> Value {
        defaults::apply(collection, &mut object);
        if collection.is_pods() {
            let qos = defaults::qos_class(&object["spec"]);
            if !object["status"].is_object() {
                object["status"] = json!({});
            }
            let status = &mut object["status"];
            if status.get("phase").is_none() {
                status["phase"] = json!("Pending");
            }
            if status.get("qosClass").is_none() {
                status["qosClass"] = json!(qos);
            }
        }
        self.put_raw(collection, object)
    }

    /// Like `put`, but stores the object exactly as given (no defaulting): for objects a real
    /// apiserver would never hold, to test how selfheal copes with them.
    pub fn put_raw(&self, collection: &Collection, object: Value) -> Value {
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let mut objects = self.objects.lock().unwrap();
        let exists = objects
            .by_collection
            .get(collection)
            .is_some_and(|items| items.contains_key(&name));
        let kind = if exists { "MODIFIED" } else { "ADDED" };
        self.store(&mut objects, collection, name, object, kind)
    }

    /// Deletes an object out of band (at once, whatever its grace period or finalizers).
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

    /// Sends a BOOKMARK (the current resourceVersion) to every open watch that asked for
    /// bookmarks (`allowWatchBookmarks=true`), as the watch cache does about once a minute.
    pub fn send_bookmarks(&self) {
        let objects = self.objects.lock().unwrap();
        let _ = self
            .signals
            .send(Signal::Bookmark(objects.resource_version));
    }

    /// The server's clock: the wall clock, moved on by `advance_clock`.
    pub fn now(&self) -> jiff::Timestamp {
        let offset = self.settings.lock().unwrap().clock_offset;
        jiff::Timestamp::now()
            .checked_add(offset)
            .unwrap_or_else(|_| jiff::Timestamp::now())
    }

    /// Moves the server's clock on (deletion grace periods end, controller deadlines pass).
    pub fn advance_clock(&self, by: std::time::Duration) {
        {
            let mut settings = self.settings.lock().unwrap();
            let by = jiff::SignedDuration::try_from(by).unwrap_or(jiff::SignedDuration::ZERO);
            settings.clock_offset = settings
                .clock_offset
                .checked_add(by)
                .unwrap_or(settings.clock_offset);
        }
        self.on_clock();
    }

    /// What the passing of time triggers (grace periods that end).
    fn on_clock(&self) {
        self.end_due_grace_periods();
    }

    /// Every request received so far, in arrival order.
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        self.settings.lock().unwrap().log.clone()
    }

    /// Forgets the requests logged so far.
    pub fn clear_request_log(&self) {
        self.settings.lock().unwrap().log.clear();
    }

    /// The writes (POST, PUT, PATCH, DELETE) that addressed `collection` (any namespace when its
    /// namespace is empty), for assertions such as "no Deployment was ever patched".
    pub fn writes_to(&self, collection: &Collection) -> Vec<LoggedRequest> {
        self.request_log()
            .into_iter()
            .filter(|r| r.is_write())
            .filter(|r| {
                r.collection().is_some_and(|c| {
                    c.prefix == collection.prefix
                        && c.plural == collection.plural
                        && (collection.namespace.is_empty() || c.namespace == collection.namespace)
                })
            })
            .collect()
    }

    fn log_request(&self, request: LoggedRequest) {
        self.settings.lock().unwrap().log.push(request);
    }

    /// A name for `generateName`: the prefix and five characters of the apiserver's alphabet.
    fn generate_name(&self, prefix: &str) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let serial = {
            let mut settings = self.settings.lock().unwrap();
            settings.generated += 1;
            settings.generated
        };
        // A fixed permutation of the serial, so consecutive names look unrelated.
        let mut value = serial.wrapping_mul(2_654_435_761).wrapping_add(97_531) % 14_348_907;
        let mut suffix = String::new();
        for _ in 0..5 {
            suffix.push(ALPHABET[(value % 27) as usize] as char);
            value /= 27;
        }
        format!("{prefix}{suffix}")
    }

    /// The catch-all webhook, if set.
    fn catch_all_webhook(&self) -> Option<MutatingWebhook> {
        self.webhook.lock().unwrap().clone()
    }

    fn store(
        &self,
        objects: &mut Objects,
        collection: &Collection,
        name: String,
        object: Value,
        kind: &'static str,
    ) -> Value {
        let stored = self.store_raw(objects, collection, name, object, kind);
        self.after_store(objects, collection);
        stored
    }

    /// Stores one change and tells the watches; no controller reacts.
    fn store_raw(
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
        let prev = if kind == "DELETED" {
            items.remove(&name)
        } else {
            items.insert(name, object.clone())
        };
        let event = WatchEvent {
            collection: collection.clone(),
            kind,
            object: object.clone(),
            prev,
            resource_version,
        };
        objects.history.push(event.clone());
        let _ = self.signals.send(Signal::Event(event));
        object
    }

    /// The controllers that react to a change at once: the resourcequota controller's and the
    /// disruption controller's status.
    fn after_store(&self, objects: &mut Objects, collection: &Collection) {
        if collection.is_pods() {
            self.kubelet_pass(objects);
        }
        let namespace = &collection.namespace;
        if namespace.is_empty() {
            return;
        }
        self.update_budgets(objects, namespace);
        let quotas = Collection::core(namespace, "resourcequotas");
        let names: Vec<String> = objects
            .by_collection
            .get(&quotas)
            .map(|items| items.keys().cloned().collect())
            .unwrap_or_default();
        if names.is_empty() {
            return;
        }
        let now = self.now();
        for name in names {
            let Some(quota) = objects
                .by_collection
                .get(&quotas)
                .and_then(|items| items.get(&name))
                .cloned()
            else {
                continue;
            };
            let status = {
                let in_namespace: Vec<(&Collection, &Value)> = objects
                    .by_collection
                    .iter()
                    .filter(|(c, _)| &c.namespace == namespace)
                    .flat_map(|(c, items)| items.values().map(move |o| (c, o)))
                    .collect();
                quota::status(&quota, &in_namespace, now)
            };
            if quota["status"] != status {
                let mut updated = quota;
                updated["status"] = status;
                self.store_raw(objects, &quotas, name, updated, "MODIFIED");
            }
        }
    }

    /// The objects of a collection (in name order).
    fn objects_of(&self, collection: &Collection) -> Vec<Value> {
        self.list(collection)
    }
}

async fn handle(State(server): State<FakeApiServer>, request: Request) -> Response {
    server.requests.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let uri = parts.uri.clone();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let content_type = header("content-type");
    let user_agent = header("user-agent");
    let user = match header("impersonate-user") {
        name if name.is_empty() => UserInfo::admin(),
        name => UserInfo {
            username: name,
            groups: parts
                .headers
                .get_all("impersonate-group")
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_string))
                .collect(),
        },
    };
    let params = query_params(uri.query());
    let patch_type = (method == Method::PATCH)
        .then(|| PatchType::from_content_type(&content_type))
        .flatten();
    let interfered = server.interfere(&method, uri.path()).await;
    let body = axum::body::to_bytes(body, 16 << 20)
        .await
        .unwrap_or_default();
    let response = match interfered {
        Some(response) => response,
        None => {
            let request = Incoming {
                method: &method,
                path: uri.path(),
                params: &params,
                content_type: &content_type,
                user_agent: &user_agent,
                user: &user,
                body: &body,
            };
            serve(&server, request).await
        }
    };
    let logged_body = serde_json::from_slice::<Value>(&body).ok().or_else(|| {
        (patch_type == Some(PatchType::Apply))
            .then(|| serde_norway::from_slice::<Value>(&body).ok())
            .flatten()
    });
    server.log_request(LoggedRequest {
        method,
        path: uri.path().to_string(),
        query: params,
        patch_type,
        user: user.username,
        code: response.status().as_u16(),
        body: logged_body,
    });
    response
}

/// What a request brings.
struct Incoming<'a> {
    method: &'a Method,
    path: &'a str,
    params: &'a BTreeMap<String, String>,
    content_type: &'a str,
    user_agent: &'a str,
    user: &'a UserInfo,
    body: &'a [u8],
}

async fn serve(server: &FakeApiServer, request: Incoming<'_>) -> Response {
    let Incoming {
        method,
        path,
        params,
        content_type,
        user_agent,
        user,
        body,
    } = request;
    if method == Method::GET
        && let Some(discovery) = watch::discovery(server, path)
    {
        return axum::Json(discovery).into_response();
    }
    let Some(target) = parse_path(path) else {
        return Refusal::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        )
        .into_response();
    };
    let collection = target.collection;
    let write = Write {
        server,
        collection: &collection,
        dry_run: params.get("dryRun").is_some_and(|d| d == "All"),
        user,
        params,
        user_agent,
    };
    let watching = params.get("watch").is_some_and(|w| w == "true" || w == "1");
    let result = match (method, target.name, target.subresource.as_deref()) {
        (&Method::GET, None, _) if watching => watch::watch(server, collection.clone(), params),
        (&Method::GET, None, _) => watch::list(server, &collection, params),
        (&Method::GET, Some(name), Some("log")) => watch::log(server, &collection, &name, params),
        (&Method::GET, Some(name), None | Some("status")) => watch::get(server, &collection, &name),
        (&Method::POST, None, _) => write.create(body).await,
        (&Method::POST, Some(name), Some("eviction")) => write.evict(&name, body).await,
        (&Method::PUT, Some(name), None) => write.replace(&name, body).await,
        (&Method::PUT, Some(name), Some("status")) => write.replace_status(&name, body),
        (&Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
            match PatchType::from_content_type(content_type) {
                Some(kind) if sub == Some("status") => write.patch_status(&name, body, kind),
                Some(kind) => write.patch(&name, body, kind).await,
                None => Err(Refusal::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type:?})"
                    ),
                )),
            }
        }
        (&Method::DELETE, Some(name), None) => write.delete(&name, body),
        (&Method::PATCH | &Method::PUT, Some(name), Some("resize"))
            if collection.is_pods() && server.serves_pod_resize() =>
        {
            let kind = if method == Method::PUT {
                None
            } else {
                PatchType::from_content_type(content_type)
            };
            write.resize(&name, body, kind).await
        }
        (method, _, Some(sub)) => Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server could not find the requested resource ({method} {sub})"),
        )),
        (method, _, None) => Err(Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        )),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}
