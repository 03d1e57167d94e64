//! DETECT + DIAGNOSE over a view of the cluster: the problems of every pod and claim, each with
//! its diagnosis and its component. The view comes from the API (`gather`), from the watcher's
//! caches, or from a `kubectl get pods,pvc,events,jobs,replicasets -A -o json` dump
//! (`ClusterView::from_dump`). A pod's component is resolved by the one identity rule of
//! `core::owners`; the view supplies what it knows of ReplicaSets and Jobs.

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
use crate::heal::detect::{self, Problem, ProblemKind, Thresholds};
use crate::heal::diagnose::{self, Diagnosis, Evidence};

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
        "the dump must be the output of `kubectl get pods,pvc,events,jobs,replicasets -A -o json` (a List with `items`)"
    )]
    NotAList,
}

impl ClusterView {
    /// Reads the output of `kubectl get pods,pvc,events,jobs,replicasets -A -o json`. Jobs and
    /// ReplicaSets are read for the owner chain only (a dump without them still works: pods then
    /// resolve through the naming conventions, and a manual Job's pods to the Job). Items of
    /// other kinds are ignored; an item that does not parse as its kind is an error naming it.
    pub fn from_dump(text: &str) -> Result<Self, DumpError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| DumpError::Json(e.to_string()))?;
        let items = value
            .get("items")
            .and_then(|i| i.as_array())
            .ok_or(DumpError::NotAList)?;
        let mut view = ClusterView::default();
        for (index, item) in items.iter().enumerate() {
            let parse_error = |e: serde_json::Error| {
                DumpError::Json(format!(
                    "items[{index}] ({}): {e}",
                    item["kind"].as_str().unwrap_or("?")
                ))
            };
            match item["kind"].as_str() {
                Some("Pod") => view
                    .pods
                    .push(serde_json::from_value(item.clone()).map_err(parse_error)?),
                Some("PersistentVolumeClaim") => view
                    .claims
                    .push(serde_json::from_value(item.clone()).map_err(parse_error)?),
                Some("Event") => view
                    .events
                    .push(serde_json::from_value(item.clone()).map_err(parse_error)?),
                Some(kind @ ("Job" | "ReplicaSet")) => {
                    let meta: ObjectMeta =
                        serde_json::from_value(item["metadata"].clone()).map_err(parse_error)?;
                    view.learn_owner(kind, &meta);
                }
                _ => {}
            }
        }
        Ok(view)
    }

    /// Event messages about the object with `uid`, oldest first.
    pub fn event_messages(&self, uid: &str) -> Vec<String> {
        let mut events: Vec<&Event> = self
            .events
            .iter()
            .filter(|e| e.involved_object.uid.as_deref() == Some(uid))
            .collect();
        events.sort_by_key(|e| {
            e.last_timestamp
                .as_ref()
                .map(|t| t.0)
                .or(e.event_time.as_ref().map(|t| t.0))
        });
        events
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e.reason.clone().unwrap_or_default(),
                    e.message.clone().unwrap_or_default()
                )
            })
            .collect()
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

/// Reads, one GET of its metadata each, the Jobs behind the troubled pods (UIDs) that the view
/// does not know, so a pod of a manual Job (`kubectl create job --from=cronjob/backup`, any
/// name) answers to its CronJob. A Job that cannot be read (gone, not allowed, an API error) is
/// left to the naming conventions.
pub async fn learn_unknown_jobs(client: &Client, view: &ClusterView, troubled: &[&str]) -> Owners {
    let mut learned = Owners::new();
    for (namespace, name) in view.unknown_jobs(troubled) {
        let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
        match jobs.get_metadata_opt(&name).await {
            Ok(Some(job)) => learn(&mut learned, "Job", &job.metadata),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%namespace, job = %name, %error, "could not read the Job behind a pod; its owner is resolved by naming convention");
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
    let mut found = Vec::new();
    for pod in &view.pods {
        for problem in detect::pod_problems(pod, now, thresholds) {
            let events = view.event_messages(&problem.uid);
            let (current, previous) = problem
                .kind
                .container()
                .and_then(|c| logs.get(&(problem.uid.clone(), c.to_string())))
                .cloned()
                .unwrap_or_default();
            let diagnosis = diagnose::diagnose(
                &problem,
                &Evidence {
                    logs: &current,
                    previous_logs: &previous,
                    events: &events,
                },
            );
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
        if let Some(problem) = detect::claim_problem(claim, now, thresholds) {
            let events = view.event_messages(&problem.uid);
            let diagnosis = diagnose::diagnose(
                &problem,
                &Evidence {
                    events: &events,
                    ..Evidence::default()
                },
            );
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
/// died). OOM kills are diagnosed from the status; pull and config problems from events.
pub fn wants_logs(problem: &Problem) -> bool {
    matches!(problem.kind, ProblemKind::CrashLoopBackOff { .. })
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
    })
}

/// Reads the log tails the diagnoses of `problems` need. A log that cannot be read (the
/// container never started) is left empty: the diagnosis falls back to events and status.
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
        let current = pods
            .logs(&problem.object_name, &read(false))
            .await
            .unwrap_or_default();
        let previous = pods
            .logs(&problem.object_name, &read(true))
            .await
            .unwrap_or_default();
        logs.insert(
            (problem.uid.clone(), container.to_string()),
            (current, previous),
        );
    }
    logs
}
