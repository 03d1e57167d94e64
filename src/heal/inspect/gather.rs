//! Reading the view and the evidence from the API: one list per kind, the log tails a diagnosis
//! needs, the Jobs the view does not know. Every call is bounded by the call timeout.

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, LogParams};
use kube::{Api, Client};

use super::view::learn;
use super::{ClusterView, Finding, Logs, Owners, findings, findings_with, wants_logs};
use crate::heal::call::CALL_TIMEOUT;
use crate::heal::detect::{Problem, Thresholds};

/// Lines of log read per container instance.
pub const LOG_TAIL_LINES: i64 = 100;
/// Bytes of log read per container instance at most.
pub const LOG_LIMIT_BYTES: i64 = 64 * 1024;

/// At most this many Jobs are read (one GET each) per view, for troubled pods whose Job the view
/// does not know.
pub const MAX_JOB_GETS: usize = 8;

/// Reads, one GET of its metadata each, the Jobs behind the troubled pods (UIDs) that the view
/// does not know, so a pod of a manual Job (`kubectl create job --from=cronjob/backup`, any
/// name) answers to its CronJob. A Job that cannot be read (gone, not allowed, an API error) is
/// left to the naming conventions.
pub async fn learn_unknown_jobs(client: &Client, view: &ClusterView, troubled: &[&str]) -> Owners {
    let mut learned = Owners::new();
    for (namespace, name) in view.unknown_jobs(troubled) {
        let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
        match crate::heal::call::within(
            CALL_TIMEOUT,
            || format!("reading Job {namespace}/{name}"),
            jobs.get_metadata_opt(&name),
        )
        .await
        {
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
    match crate::heal::call::within(
        CALL_TIMEOUT,
        || {
            format!(
                "reading the log of {}/{}",
                problem.namespace, problem.object_name
            )
        },
        pods.logs(&problem.object_name, params),
    )
    .await
    {
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
