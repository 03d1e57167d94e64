//! DETECT + DIAGNOSE over a view of the cluster: the problems of every pod and claim, each with
//! its diagnosis and its component. The view comes from the API (`gather`), from the watcher's
//! caches, or from a `kubectl get pods,pvc,events,secrets,deployments,statefulsets,jobs,cronjobs,
//! services,endpointslices -A -o json` dump (`ClusterView::from_dump`). Events are matched to
//! their object by UID, or by kind, namespace and name where a UID is missing; Warning events
//! make detection report at once what would otherwise wait for a grace period. A pod's component
//! is resolved by the one identity rule of `core::owners`; the view supplies what it knows of
//! ReplicaSets and Jobs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::core::quantity::ByteQuantity;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, LimitRange, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, LogParams, ObjectMeta};
use kube::{Api, Client};
use serde::Serialize;

use crate::core::owners::{self, Workload};
use crate::heal::detect::{self, Problem, ProblemKind, Thresholds, Warning};
use crate::heal::diagnose::{self, Diagnosis, Evidence};
use crate::heal::execute::CALL_TIMEOUT;

/// Lines of log read per container instance.
pub const LOG_TAIL_LINES: i64 = 100;
/// Bytes of log read per container instance at most.
pub const LOG_LIMIT_BYTES: i64 = 64 * 1024;

/// Pods, claims and events, plus what is known of intermediate owners.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    pub pods: Vec<Pod>,
    pub claims: Vec<PersistentVolumeClaim>,
    pub events: Vec<Event>,
    /// `kubernetes.io/tls` Secrets.
    pub secrets: Vec<Secret>,
    pub services: Vec<Service>,
    pub endpoint_slices: Vec<EndpointSlice>,
    /// Per namespace, the LimitRange maximum for container memory.
    pub memory_max: Arc<BTreeMap<String, ByteQuantity>>,
    /// What the view knows of the intermediate owners of its pods (ReplicaSets and Jobs).
    pub owners: Owners,
    /// Items of a dump that could not be read (`from_dump`), for the report.
    pub unreadable: Vec<UnreadableItem>,
}

/// (namespace, kind, name) of a ReplicaSet or Job → what it answers to (kind, name): its
/// controller, or itself when it has none (see `core::owners::identity`).
pub type Owners = HashMap<(String, String, String), (String, String)>;

/// At most this many Jobs are read (one GET each) per view, for troubled pods whose Job the view
/// does not know.
pub const MAX_JOB_GETS: usize = 8;

/// Log tails of one container: (current, previous instance).
pub type Logs = HashMap<(String, String), (String, String)>;

/// A problem with its diagnosis and component.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub problem: Problem,
    pub diagnosis: Diagnosis,
    pub workload: Option<Workload>,
    #[serde(skip)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("the dump is not JSON: {0}")]
    Json(String),
    #[error(
        "the dump must be the output of `kubectl get pods,pvc,events,... -A -o json` (a List with `items`)"
    )]
    NotAList,
    #[error("no item of the dump could be read: {0}")]
    NothingReadable(String),
}

/// An item of a dump that could not be read: skipped, the rest of the dump is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableItem {
    /// Its index in `items`.
    pub index: usize,
    pub kind: String,
    /// `namespace/name`, or what there is of it (`?` when absent).
    pub name: String,
    /// The field that does not read (`status.containerStatuses[0].restartCount`), or `.` for
    /// the item as a whole.
    pub field: String,
    pub error: String,
}

impl std::fmt::Display for UnreadableItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "items[{}] ({}) {}: field {}: {}",
            self.index, self.kind, self.name, self.field, self.error
        )
    }
}

/// Why one item does not read: (field, error).
type ItemError = (String, String);

impl ClusterView {
    /// Reads the output of `kubectl get pods,pvc,events,secrets,deployments,statefulsets,jobs,
    /// cronjobs,services,endpointslices,replicasets -A -o json` (any subset, any order):
    ///
    /// - Pods, claims, Services and EndpointSlices are checked; `kubernetes.io/tls` Secrets have
    ///   their certificates checked (other Secrets are not kept);
    /// - Events of both APIs (`core/v1`, `events.k8s.io/v1` with `regarding`/`note`) explain them;
    /// - Jobs and ReplicaSets are read for the owner chain (a dump without them still works: pods
    ///   then resolve through the naming conventions); Deployments, StatefulSets, DaemonSets and
    ///   CronJobs are the top of that chain (their pods name them) and are read for their metadata;
    /// - items of other kinds are ignored.
    ///
    /// An item that does not read as its kind is named (index, kind, name, field), logged, kept in
    /// `unreadable` and skipped; the dump is an error only when not one item could be read.
    pub fn from_dump(text: &str) -> Result<Self, DumpError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| DumpError::Json(e.to_string()))?;
        let items = value
            .get("items")
            .and_then(|i| i.as_array())
            .ok_or(DumpError::NotAList)?;
        // The apiserver's own lists (`PodList` from `kubectl get --raw`) leave the kind of their
        // items out.
        let list_kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .and_then(|k| k.strip_suffix("List"))
            .filter(|k| !k.is_empty());
        let list_api_version = value.get("apiVersion").cloned().unwrap_or_default();
        let mut view = ClusterView::default();
        let mut read = 0;
        for (index, item) in items.iter().enumerate() {
            let item = match (list_kind, item.as_object()) {
                (Some(kind), Some(fields)) if !fields.contains_key("kind") => {
                    let mut fields = fields.clone();
                    fields.insert("kind".into(), kind.into());
                    fields
                        .entry("apiVersion")
                        .or_insert_with(|| list_api_version.clone());
                    std::borrow::Cow::Owned(serde_json::Value::Object(fields))
                }
                _ => std::borrow::Cow::Borrowed(item),
            };
            let item = item.as_ref();
            match view.read_item(item) {
                Ok(()) => read += 1,
                Err((field, error)) => {
                    let text = |pointer: &str| item.pointer(pointer).and_then(|v| v.as_str());
                    let unreadable = UnreadableItem {
                        index,
                        kind: text("/kind").unwrap_or("?").to_string(),
                        name: match (text("/metadata/namespace"), text("/metadata/name")) {
                            (Some(ns), Some(name)) => format!("{ns}/{name}"),
                            (None, Some(name)) => name.to_string(),
                            (_, None) => "?".to_string(),
                        },
                        field,
                        error,
                    };
                    tracing::warn!(item = %unreadable, "skipping an item of the dump");
                    view.unreadable.push(unreadable);
                }
            }
        }
        if read == 0 && !view.unreadable.is_empty() {
            let all: Vec<String> = view.unreadable.iter().map(ToString::to_string).collect();
            return Err(DumpError::NothingReadable(all.join("; ")));
        }
        Ok(view)
    }

    /// Reads one item of a dump into the view.
    fn read_item(&mut self, item: &serde_json::Value) -> Result<(), ItemError> {
        let Some(kind) = item.get("kind").and_then(|k| k.as_str()) else {
            return Err((
                "kind".into(),
                "missing: every item of a List names its kind".into(),
            ));
        };
        let api_version = item
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        match kind {
            "Pod" => self.pods.push(read_as(item)?),
            "PersistentVolumeClaim" => self.claims.push(read_as(item)?),
            "Event" if api_version.starts_with("events.k8s.io/") => {
                let event: k8s_openapi::api::events::v1::Event = read_as(item)?;
                self.events.push(core_event(event));
            }
            "Event" => self.events.push(read_as(item)?),
            "Secret" => {
                // A Secret's values never reach a message: serde quotes the value it refuses.
                let secret: Secret = read_as(item).map_err(|(field, _)| {
                    (
                        field,
                        "does not read as a Secret (value not shown)".to_string(),
                    )
                })?;
                if secret.type_.as_deref() == Some("kubernetes.io/tls") {
                    self.secrets.push(secret);
                }
            }
            "Service" => self.services.push(read_as(item)?),
            "EndpointSlice" => self.endpoint_slices.push(read_as(item)?),
            "Job" | "ReplicaSet" => {
                let meta: ObjectMeta = read_metadata(item)?;
                self.learn_owner(kind, &meta);
            }
            "Deployment" | "StatefulSet" | "DaemonSet" | "CronJob" => {
                read_metadata(item)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// The events about the object of `kind` with `meta` (see `is_about`), oldest first.
    pub fn events_about(&self, kind: &str, meta: &ObjectMeta) -> ObjectEvents {
        EventIndex::new(&self.events).about(kind, meta)
    }

    /// The workload `pod` answers to (`None` for a bare pod), through the one identity rule
    /// with what the view knows of intermediate owners.
    pub fn workload_of(&self, pod: &Pod) -> Option<Workload> {
        self.workload_with(pod, &Owners::new())
    }

    /// As `workload_of`, also knowing the intermediate owners in `learned`.
    fn workload_with(&self, pod: &Pod, learned: &Owners) -> Option<Workload> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        owners::owning_workload(pod, |kind, name| {
            let key = (namespace.clone(), kind.to_string(), name.to_string());
            self.owners.get(&key).or_else(|| learned.get(&key)).cloned()
        })
    }

    /// Records what a ReplicaSet or Job (its metadata) answers to.
    pub fn learn_owner(&mut self, kind: &str, meta: &ObjectMeta) {
        learn(&mut self.owners, kind, meta);
    }

    /// Jobs controlling the view's pods with a finding (`troubled`, pod UIDs) that the view does
    /// not know (the watcher's view holds one pod and no Jobs), as (namespace, name), each once,
    /// at most `MAX_JOB_GETS`.
    fn unknown_jobs(&self, troubled: &[&str]) -> Vec<(String, String)> {
        let mut unknown: Vec<(String, String)> = Vec::new();
        let pods = self
            .pods
            .iter()
            .filter(|pod| troubled.contains(&pod.metadata.uid.as_deref().unwrap_or_default()));
        for pod in pods {
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let Some((kind, name)) = owners::controller_of(&pod.metadata) else {
                continue;
            };
            let key = (namespace, kind, name);
            if key.1 == "Job" && !self.owners.contains_key(&key) {
                let job = (key.0, key.2);
                if !unknown.contains(&job) {
                    unknown.push(job);
                }
            }
        }
        unknown.truncate(MAX_JOB_GETS);
        unknown
    }
}

fn learn(owners: &mut Owners, kind: &str, meta: &ObjectMeta) {
    if let Some(answer) = owners::intermediate_answer(kind, meta) {
        let key = (
            meta.namespace.clone().unwrap_or_default(),
            kind.to_string(),
            meta.name.clone().unwrap_or_default(),
        );
        owners.insert(key, answer);
    }
}

/// An item as `T`, or the field that does not read and why.
fn read_as<T: serde::de::DeserializeOwned>(item: &serde_json::Value) -> Result<T, ItemError> {
    serde_json::from_value(item.clone()).map_err(|error| (culprit::<T>(item), error.to_string()))
}

/// An item's metadata.
fn read_metadata(item: &serde_json::Value) -> Result<ObjectMeta, ItemError> {
    let meta = item.get("metadata").cloned().unwrap_or_default();
    serde_json::from_value(meta).map_err(|error| {
        let field = match culprit::<ObjectMeta>(item.get("metadata").unwrap_or_default()) {
            inner if inner == "." => "metadata".to_string(),
            inner => format!("metadata.{inner}"),
        };
        (field, error.to_string())
    })
}

/// The field of `item` that keeps it from reading as `T`: the deepest field whose removal makes
/// it read (serde's errors name no path). `.` when no single field is to blame.
fn culprit<T: serde::de::DeserializeOwned>(item: &serde_json::Value) -> String {
    let reads = |value: serde_json::Value| serde_json::from_value::<T>(value).is_ok();
    let mut path: Vec<String> = Vec::new();
    loop {
        let pointer: String = path
            .iter()
            .map(|step| format!("/{}", escape(step)))
            .collect();
        let Some(node) = item.pointer(&pointer) else {
            break;
        };
        let children: Vec<String> = match node {
            serde_json::Value::Object(map) => map.keys().cloned().collect(),
            serde_json::Value::Array(list) => (0..list.len()).map(|i| i.to_string()).collect(),
            _ => break,
        };
        let blamed = children.into_iter().find(|child| {
            let mut without = item.clone();
            match without.pointer_mut(&pointer) {
                Some(serde_json::Value::Object(map)) => {
                    map.remove(child);
                }
                Some(serde_json::Value::Array(list)) => {
                    if let Ok(index) = child.parse::<usize>()
                        && index < list.len()
                    {
                        list.remove(index);
                    }
                }
                _ => return false,
            }
            reads(without)
        });
        match blamed {
            Some(child) => path.push(child),
            None => break,
        }
    }
    if path.is_empty() {
        return ".".to_string();
    }
    let mut field = String::new();
    for step in path {
        if step.parse::<usize>().is_ok() {
            field.push_str(&format!("[{step}]"));
        } else {
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(&step);
        }
    }
    field
}

/// A key as a JSON Pointer step (RFC 6901).
fn escape(step: &str) -> String {
    step.replace('~', "~0").replace('/', "~1")
}

/// An `events.k8s.io/v1` Event as the `core/v1` Event it mirrors (the apiserver serves each
/// Event through both APIs): `regarding` → `involvedObject`, `note` → `message`,
/// `reportingController` → `reportingComponent`, the `deprecated*` fields to theirs.
pub fn core_event(event: k8s_openapi::api::events::v1::Event) -> Event {
    Event {
        action: event.action,
        count: event.deprecated_count,
        event_time: event.event_time,
        first_timestamp: event.deprecated_first_timestamp,
        involved_object: event.regarding.unwrap_or_default(),
        last_timestamp: event.deprecated_last_timestamp,
        message: event.note,
        metadata: event.metadata,
        reason: event.reason,
        related: event.related,
        reporting_component: event.reporting_controller,
        reporting_instance: event.reporting_instance,
        series: event
            .series
            .map(|series| k8s_openapi::api::core::v1::EventSeries {
                count: Some(series.count),
                last_observed_time: Some(series.last_observed_time),
            }),
        source: event.deprecated_source,
        type_: event.type_,
    }
}

/// When an event was last seen: its series' last observation, its last timestamp, its event
/// time, its first timestamp, its creation — the first it has.
pub fn event_seen(event: &Event) -> Option<Timestamp> {
    event
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref())
        .map(|t| t.0)
        .or(event.last_timestamp.as_ref().map(|t| t.0))
        .or(event.event_time.as_ref().map(|t| t.0))
        .or(event.first_timestamp.as_ref().map(|t| t.0))
        .or(event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Whether `event` is about the object of `kind` with `meta`: by UID when both have one, else by
/// kind, namespace and name (an event or object without a UID, as hand-made dumps have).
pub fn is_about(event: &Event, kind: &str, meta: &ObjectMeta) -> bool {
    let involved = &event.involved_object;
    match (involved.uid.as_deref(), meta.uid.as_deref()) {
        (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() => a == b,
        _ => {
            let namespace = involved
                .namespace
                .as_deref()
                .or(event.metadata.namespace.as_deref());
            involved.kind.as_deref() == Some(kind)
                && involved.name.is_some()
                && involved.name == meta.name
                && namespace == meta.namespace.as_deref()
        }
    }
}

/// The events of a view by the object they are about, so each object's events are found
/// without reading every event (a cluster has many pods and many more events).
struct EventIndex<'a> {
    by_uid: HashMap<&'a str, Vec<&'a Event>>,
    /// (kind, namespace, name) → events.
    by_name: HashMap<(String, String, String), Vec<&'a Event>>,
}

impl<'a> EventIndex<'a> {
    fn new(events: &'a [Event]) -> Self {
        let mut index = EventIndex {
            by_uid: HashMap::new(),
            by_name: HashMap::new(),
        };
        for event in events {
            let involved = &event.involved_object;
            if let Some(uid) = involved.uid.as_deref().filter(|uid| !uid.is_empty()) {
                index.by_uid.entry(uid).or_default().push(event);
            }
            let namespace = involved
                .namespace
                .as_deref()
                .or(event.metadata.namespace.as_deref());
            if let (Some(kind), Some(name)) = (&involved.kind, &involved.name) {
                let key = (
                    kind.clone(),
                    namespace.unwrap_or_default().to_string(),
                    name.clone(),
                );
                index.by_name.entry(key).or_default().push(event);
            }
        }
        index
    }

    /// The events about the object of `kind` with `meta` (see `is_about`), oldest first.
    fn about(&self, kind: &str, meta: &ObjectMeta) -> ObjectEvents {
        let by_uid = meta
            .uid
            .as_deref()
            .and_then(|uid| self.by_uid.get(uid))
            .into_iter()
            .flatten();
        let key = (
            kind.to_string(),
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        );
        let by_name = self.by_name.get(&key).into_iter().flatten();
        let mut events: Vec<&Event> = Vec::new();
        for event in by_uid.chain(by_name) {
            if is_about(event, kind, meta) && !events.iter().any(|e| std::ptr::eq(*e, *event)) {
                events.push(event);
            }
        }
        events.sort_by_key(|e| event_seen(e));
        let mut about = ObjectEvents::default();
        for event in events {
            let reason = event.reason.clone().unwrap_or_default();
            let message = event.message.clone().unwrap_or_default();
            let line = format!("{reason}: {message}");
            if event.type_.as_deref() == Some("Warning") {
                about.warning_lines.push(line.clone());
                about.warnings.push(Warning {
                    container: event
                        .involved_object
                        .field_path
                        .as_deref()
                        .and_then(detect::field_path_container),
                    last_seen: event_seen(event),
                    reason,
                    message,
                });
            }
            about.lines.push(line);
        }
        about
    }
}

/// The events about one object, oldest first, as diagnosis and detection read them.
#[derive(Debug, Clone, Default)]
pub struct ObjectEvents {
    /// Every event, as `Reason: message`.
    pub lines: Vec<String>,
    /// The Warning events, as `Reason: message`.
    pub warning_lines: Vec<String>,
    /// The Warning events, for detection.
    pub warnings: Vec<Warning>,
}

impl ObjectEvents {
    fn evidence<'a>(&'a self, logs: &'a str, previous_logs: &'a str) -> Evidence<'a> {
        Evidence {
            logs,
            previous_logs,
            events: &self.lines,
            warnings: &self.warning_lines,
        }
    }
}

/// Reads, one GET of its metadata each, the Jobs behind the troubled pods (UIDs) that the view
/// does not know, so a pod of a manual Job (`kubectl create job --from=cronjob/backup`, any
/// name) answers to its CronJob. A Job that cannot be read (gone, not allowed, an API error) is
/// left to the naming conventions.
pub async fn learn_unknown_jobs(client: &Client, view: &ClusterView, troubled: &[&str]) -> Owners {
    let mut learned = Owners::new();
    for (namespace, name) in view.unknown_jobs(troubled) {
        let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
        match tokio::time::timeout(CALL_TIMEOUT, jobs.get_metadata_opt(&name)).await {
            Ok(Ok(Some(job))) => learn(&mut learned, "Job", &job.metadata),
            Ok(Ok(None)) => {}
            Ok(Err(error)) => {
                tracing::warn!(%namespace, job = %name, %error, "could not read the Job behind a pod; its owner is resolved by naming convention");
            }
            Err(_) => {
                tracing::warn!(%namespace, job = %name, timeout_seconds = CALL_TIMEOUT.as_secs(), "reading the Job behind a pod timed out; its owner is resolved by naming convention");
            }
        }
    }
    learned
}

/// Every problem in the view, diagnosed.
pub fn findings(
    view: &ClusterView,
    logs: &Logs,
    now: Timestamp,
    thresholds: &Thresholds,
) -> Vec<Finding> {
    findings_with(view, &Owners::new(), logs, now, thresholds)
}

/// As `findings`, also knowing the intermediate owners in `learned`.
fn findings_with(
    view: &ClusterView,
    learned: &Owners,
    logs: &Logs,
    now: Timestamp,
    thresholds: &Thresholds,
) -> Vec<Finding> {
    let events = EventIndex::new(&view.events);
    let mut found = Vec::new();
    for pod in &view.pods {
        let about = events.about("Pod", &pod.metadata);
        for problem in detect::pod_problems_with(pod, &about.warnings, now, thresholds) {
            let (current, previous) = problem
                .kind
                .container()
                .and_then(|c| logs.get(&(problem.uid.clone(), c.to_string())))
                .cloned()
                .unwrap_or_default();
            let diagnosis = diagnose::diagnose(&problem, &about.evidence(&current, &previous));
            found.push(Finding {
                workload: view.workload_with(pod, learned),
                labels: pod.metadata.labels.clone().unwrap_or_default(),
                problem,
                diagnosis,
            });
        }
    }
    for service in &view.services {
        if let Some(problem) = detect::service_problem(service, &view.pods, &view.endpoint_slices) {
            let diagnosis = diagnose::diagnose(&problem, &Evidence::default());
            found.push(Finding {
                problem,
                diagnosis,
                workload: None,
                labels: service.metadata.labels.clone().unwrap_or_default(),
            });
        }
    }
    let provider = rustls::crypto::ring::default_provider();
    for secret in &view.secrets {
        if let Some(problem) =
            detect::secret_problem(secret, now, thresholds.certificate_window_days, &provider)
        {
            let diagnosis = diagnose::diagnose(&problem, &Evidence::default());
            found.push(Finding {
                problem,
                diagnosis,
                workload: None,
                labels: secret.metadata.labels.clone().unwrap_or_default(),
            });
        }
    }
    for claim in &view.claims {
        let about = events.about("PersistentVolumeClaim", &claim.metadata);
        if let Some(problem) = detect::claim_problem_with(claim, &about.warnings, now, thresholds) {
            let diagnosis = diagnose::diagnose(&problem, &about.evidence("", ""));
            found.push(Finding {
                problem,
                diagnosis,
                workload: None,
                labels: claim.metadata.labels.clone().unwrap_or_default(),
            });
        }
    }
    found
}

/// Which containers' logs a diagnosis would read: crash loops (the previous instance tells why it
/// died) and containers that failed for good (their last instance is the current one). OOM kills
/// are diagnosed from the status; pull, config and start problems from the status and events.
pub fn wants_logs(problem: &Problem) -> bool {
    matches!(
        problem.kind,
        ProblemKind::CrashLoopBackOff { .. } | ProblemKind::ContainerFailed { .. }
    )
}

/// Findings of a view, with the logs their diagnoses need and the Jobs the view does not know
/// (`learn_unknown_jobs`) read from the API.
pub async fn diagnose_view(client: &Client, view: &ClusterView, now: Timestamp) -> Vec<Finding> {
    let thresholds = Thresholds::default();
    let first = findings(view, &Logs::new(), now, &thresholds);
    let troubled: Vec<&str> = first.iter().map(|f| f.problem.uid.as_str()).collect();
    let learned = learn_unknown_jobs(client, view, &troubled).await;
    if !first.iter().any(|f| wants_logs(&f.problem)) {
        return if learned.is_empty() {
            first
        } else {
            findings_with(view, &learned, &Logs::new(), now, &thresholds)
        };
    }
    let problems: Vec<&Problem> = first.iter().map(|f| &f.problem).collect();
    let logs = fetch_logs(client, &problems).await;
    findings_with(view, &learned, &logs, now, &thresholds)
}

/// Reads the view from the API: one list per kind (all namespaces, or one).
pub async fn gather(client: &Client, namespace: Option<&str>) -> Result<ClusterView, kube::Error> {
    fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let params = ListParams::default();
    let pods = api::<Pod>(client, namespace).list(&params).await?.items;
    let claims = api::<PersistentVolumeClaim>(client, namespace)
        .list(&params)
        .await?
        .items;
    let events = api::<Event>(client, namespace).list(&params).await?.items;
    let services = api::<Service>(client, namespace).list(&params).await?.items;
    let limit_ranges = api::<LimitRange>(client, namespace)
        .list(&params)
        .await?
        .items;
    let endpoint_slices = api::<EndpointSlice>(client, namespace)
        .list(&params)
        .await?
        .items;
    // Certificates are checked when selfheal may read TLS Secrets; without that grant the rest
    // of the report still works.
    let secrets = match api::<Secret>(client, namespace)
        .list(&ListParams::default().fields("type=kubernetes.io/tls"))
        .await
    {
        Ok(list) => list.items,
        Err(kube::Error::Api(status)) if status.code == 403 => {
            tracing::warn!("not allowed to list TLS Secrets: certificates are not checked");
            Vec::new()
        }
        Err(error) => return Err(error),
    };
    let replicasets = api::<k8s_openapi::api::apps::v1::ReplicaSet>(client, namespace)
        .list_metadata(&params)
        .await?
        .items
        .into_iter()
        .map(|m| ("ReplicaSet", m.metadata));
    let jobs = api::<Job>(client, namespace)
        .list_metadata(&params)
        .await?
        .items
        .into_iter()
        .map(|m| ("Job", m.metadata));
    let mut owners = Owners::new();
    for (kind, meta) in replicasets.chain(jobs) {
        learn(&mut owners, kind, &meta);
    }
    Ok(ClusterView {
        pods,
        claims,
        events,
        secrets,
        services,
        endpoint_slices,
        memory_max: Arc::new(crate::cluster::limits::maxima(&limit_ranges)),
        owners,
        unreadable: Vec::new(),
    })
}

/// Reads the log tails the diagnoses of `problems` need. A log that cannot be read (the
/// container never started) is left empty: the diagnosis falls back to events and status.
/// Reads the current and previous logs of the containers whose problems want them. Each read has
/// its own `CALL_TIMEOUT`: a read that fails or times out (a kubelet hanging on a sick node)
/// contributes no log evidence, and after a timed-out current log the previous one is not tried.
pub async fn fetch_logs(client: &Client, problems: &[&Problem]) -> Logs {
    let mut logs = Logs::new();
    for problem in problems.iter().filter(|p| wants_logs(p)) {
        let Some(container) = problem.kind.container() else {
            continue;
        };
        let pods: Api<Pod> = Api::namespaced(client.clone(), &problem.namespace);
        let read = |previous| LogParams {
            container: Some(container.to_string()),
            previous,
            tail_lines: Some(LOG_TAIL_LINES),
            limit_bytes: Some(LOG_LIMIT_BYTES),
            ..LogParams::default()
        };
        let Some(current) = log_within_timeout(&pods, problem, container, &read(false)).await
        else {
            continue;
        };
        let previous = log_within_timeout(&pods, problem, container, &read(true))
            .await
            .unwrap_or_default();
        logs.insert(
            (problem.uid.clone(), container.to_string()),
            (current, previous),
        );
    }
    logs
}

/// One log read bounded by `CALL_TIMEOUT`: the text (empty when the API refuses it, e.g. no
/// previous instance), or `None` when it timed out.
async fn log_within_timeout(
    pods: &Api<Pod>,
    problem: &Problem,
    container: &str,
    params: &LogParams,
) -> Option<String> {
    match tokio::time::timeout(CALL_TIMEOUT, pods.logs(&problem.object_name, params)).await {
        Ok(read) => Some(read.unwrap_or_default()),
        Err(_) => {
            tracing::warn!(
                namespace = %problem.namespace,
                pod = %problem.object_name,
                container,
                previous = params.previous,
                timeout_seconds = CALL_TIMEOUT.as_secs(),
                "reading the log timed out; diagnosed without log evidence"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list(items: serde_json::Value) -> String {
        json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
    }

    #[test]
    fn an_unreadable_item_is_named_with_its_field_and_skipped() {
        let dump = list(json!([
            {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1"},
             "spec": {"containers": [{"name": "app", "image": "app:1"}]},
             "status": {"phase": "Running", "containerStatuses": [{"name": "app", "ready": true,
                 "restartCount": "three", "image": "app:1", "imageID": ""}]}},
            {"apiVersion": "v1", "metadata": {"name": "kindless"}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "shop", "labels": {"app.kubernetes.io/name": 5}}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-2", "namespace": "shop", "uid": "u2"},
             "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
        ]));
        let view = ClusterView::from_dump(&dump).expect("the readable items are read");
        assert_eq!(view.pods.len(), 1);
        let named: Vec<String> = view.unreadable.iter().map(ToString::to_string).collect();
        assert_eq!(named.len(), 3, "{named:?}");
        assert!(
            named[0].starts_with(
                "items[0] (Pod) shop/web-1: field status.containerStatuses[0].restartCount: invalid type: string \"three\""
            ),
            "{}",
            named[0]
        );
        assert!(
            named[1].starts_with("items[1] (?) kindless: field kind: missing"),
            "{}",
            named[1]
        );
        assert!(
            named[2].starts_with(
                "items[2] (Service) shop/db: field metadata.labels.app.kubernetes.io/name: invalid type"
            ),
            "{}",
            named[2]
        );
    }

    #[test]
    fn an_unreadable_secret_is_named_without_its_values() {
        let dump = list(json!([
            {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
             "metadata": {"name": "db-creds", "namespace": "shop"}, "data": {"password": "hunter2!not-base64"}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-2", "namespace": "shop"}}
        ]));
        let view = ClusterView::from_dump(&dump).unwrap();
        let named = view.unreadable[0].to_string();
        assert_eq!(
            named,
            "items[0] (Secret) shop/db-creds: field data.password: does not read as a Secret (value not shown)"
        );
    }

    #[test]
    fn the_items_of_an_apiserver_list_take_its_kind() {
        let dump = json!({"apiVersion": "v1", "kind": "PodList", "items": [
            {"metadata": {"name": "web-1", "namespace": "shop"}, "status": {"phase": "Pending"}},
            7
        ]});
        let view = ClusterView::from_dump(&dump.to_string()).unwrap();
        assert_eq!(view.pods.len(), 1);
        assert_eq!(
            view.unreadable[0].to_string(),
            "items[1] (?) ?: field kind: missing: every item of a List names its kind"
        );
    }

    #[test]
    fn a_dump_of_which_nothing_reads_is_an_error() {
        let dump = list(json!([{"kind": "Pod", "metadata": 7}]));
        let error = ClusterView::from_dump(&dump).unwrap_err().to_string();
        assert!(
            error.contains("items[0] (Pod) ?: field metadata: invalid type"),
            "{error}"
        );
    }

    #[test]
    fn events_of_both_apis_are_read_and_matched_without_a_uid() {
        let dump = list(json!([
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": "data-0", "namespace": "shop", "uid": "c1"},
             "status": {"phase": "Pending"}},
            {"apiVersion": "events.k8s.io/v1", "kind": "Event",
             "metadata": {"name": "data-0.1", "namespace": "shop"},
             "eventTime": "2026-11-28T11:59:50.000000Z",
             "reportingController": "ebs.csi.aws.com", "reportingInstance": "ebs-csi-1",
             "action": "Provisioning", "reason": "ProvisioningFailed", "type": "Warning",
             "note": "failed to provision volume with StorageClass \"gp3\": quota exceeded",
             "regarding": {"kind": "PersistentVolumeClaim", "namespace": "shop", "name": "data-0", "uid": "c1"},
             "series": {"count": 4, "lastObservedTime": "2026-11-28T11:59:58.000000Z"}},
            {"apiVersion": "v1", "kind": "Event",
             "metadata": {"name": "data-0.2", "namespace": "shop"},
             "involvedObject": {"kind": "PersistentVolumeClaim", "name": "data-0"},
             "reason": "ExternalProvisioning", "type": "Normal",
             "message": "Waiting for a volume to be created either by the external provisioner 'ebs.csi.aws.com' or manually by the system administrator.",
             "lastTimestamp": "2026-11-28T11:59:00Z"},
            {"apiVersion": "v1", "kind": "Event",
             "metadata": {"name": "other.1", "namespace": "shop"},
             "involvedObject": {"kind": "PersistentVolumeClaim", "name": "data-0", "uid": "an-older-claim"},
             "reason": "ProvisioningFailed", "type": "Warning", "message": "of a claim deleted since"}
        ]));
        let view = ClusterView::from_dump(&dump).unwrap();
        assert_eq!(view.events.len(), 3);
        let converted = &view.events[0];
        assert_eq!(
            converted.reporting_component.as_deref(),
            Some("ebs.csi.aws.com")
        );
        assert_eq!(converted.involved_object.name.as_deref(), Some("data-0"));
        let about = view.events_about("PersistentVolumeClaim", &view.claims[0].metadata);
        assert_eq!(
            about.lines,
            [
                "ExternalProvisioning: Waiting for a volume to be created either by the external provisioner 'ebs.csi.aws.com' or manually by the system administrator.",
                "ProvisioningFailed: failed to provision volume with StorageClass \"gp3\": quota exceeded",
            ]
        );
        assert_eq!(about.warnings.len(), 1);
        assert_eq!(
            about.warnings[0].last_seen,
            Some("2026-11-28T11:59:58Z".parse().unwrap()),
            "a series' last observation is when it was last seen"
        );
    }

    #[test]
    fn tls_secrets_of_a_dump_are_checked_and_other_secrets_not_kept() {
        let dump = list(json!([
            {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
             "metadata": {"name": "shop-tls", "namespace": "shop"},
             "data": {"tls.crt": "bm90IGEgY2VydGlmaWNhdGU=", "tls.key": ""}},
            {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
             "metadata": {"name": "db-creds", "namespace": "shop"}, "data": {"password": "aHVudGVyMg=="}}
        ]));
        let view = ClusterView::from_dump(&dump).unwrap();
        assert_eq!(view.secrets.len(), 1);
        let findings = findings(
            &view,
            &Logs::new(),
            jiff::Timestamp::now(),
            &Thresholds::default(),
        );
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].problem.kind.name(), "CertificateUnparsable");
    }
}
