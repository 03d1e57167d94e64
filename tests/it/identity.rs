//! One identity rule for every caller (issue 7, point 2): the same table of objects resolves to
//! the same fix target through
//!
//! 1. the webhook (`target::fix_names` over the admitted JSON object, no API calls),
//! 2. the watcher (`inspect::diagnose_view` over its one-pod view, which holds no Jobs: the Job
//!    behind the pod is read with one GET),
//! 3. `selfheal health` / `selfheal heal` (`inspect::gather` then `inspect::diagnose_view`),
//! 4. `selfheal health --from-file` (`ClusterView::from_dump` then `inspect::findings`).
//!
//! Claims (`<template>-<statefulset>-<n>` → StatefulSet) are resolved by the webhook only: the
//! healing half records a storage fix under the claim's own name, which the webhook matches too.

use crate::support;

use serde_json::{Value, json};
use support::fake_apiserver::{Collection, FakeApiServer};

use selfheal::core::owners;
use selfheal::heal::detect::Thresholds;
use selfheal::heal::inspect::{self, ClusterView};
use selfheal::webhook::target::{self, WorkloadKind};

const NS: &str = "apps";

/// One row: a pod, the intermediate owner behind it (if any), and what it must resolve to.
struct Row {
    what: &'static str,
    pod: Value,
    /// The ReplicaSet or Job the pod's controller reference names, as the API holds it.
    intermediate: Option<(&'static str, Value)>,
    /// The names the webhook looks fixes up under, identity first.
    webhook: &'static [&'static str],
    /// The workload the healing half records a fix under (`None`: a bare pod, reported only).
    healing: Option<(&'static str, &'static str)>,
}

fn owner(kind: &str, name: &str) -> Value {
    let api_version = match kind {
        "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Deployment" => "apps/v1",
        _ => "batch/v1",
    };
    json!([{"apiVersion": api_version, "kind": kind, "name": name, "uid": format!("uid-{name}"), "controller": true}])
}

/// An OOMKilled pod (so every caller has a finding to resolve) owned by `controller`.
fn pod(name: &str, controller: Option<(&str, &str)>, labels: Value) -> Value {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"), "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "app:1", "resources": {"limits": {"memory": "256Mi"}}}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": "app", "ready": true, "restartCount": 1,
            "image": "app:1", "imageID": "", "state": {"running": {}},
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}});
    if let Some((kind, name)) = controller {
        pod["metadata"]["ownerReferences"] = owner(kind, name);
    }
    pod
}

fn job(name: &str, cronjob: Option<&str>, manual: bool) -> Value {
    let mut job = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}")},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "app", "image": "app:1"}]}}}});
    if let Some(cronjob) = cronjob {
        job["metadata"]["ownerReferences"] = owner("CronJob", cronjob);
    }
    if manual {
        job["metadata"]["annotations"] = json!({"cronjob.kubernetes.io/instantiate": "manual"});
    }
    job
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            what: "Pod → ReplicaSet → Deployment",
            pod: pod(
                "web-7d9f8c6b5-x2x7q",
                Some(("ReplicaSet", "web-7d9f8c6b5")),
                json!({"pod-template-hash": "7d9f8c6b5"}),
            ),
            intermediate: Some((
                "ReplicaSet",
                json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {"name": "web-7d9f8c6b5", "namespace": NS, "uid": "uid-rs",
                        "labels": {"pod-template-hash": "7d9f8c6b5"},
                        "ownerReferences": owner("Deployment", "web")},
                    "spec": {"selector": {"matchLabels": {"app": "web"}}}}),
            )),
            webhook: &["web", "web-7d9f8c6b5"],
            healing: Some(("Deployment", "web")),
        },
        Row {
            what: "Pod → scheduled Job → CronJob",
            pod: pod(
                "backup-29412345-abcde",
                Some(("Job", "backup-29412345")),
                json!({"batch.kubernetes.io/job-name": "backup-29412345"}),
            ),
            intermediate: Some(("Job", job("backup-29412345", Some("backup"), false))),
            webhook: &["backup", "backup-29412345"],
            healing: Some(("CronJob", "backup")),
        },
        Row {
            // `kubectl create job --from=cronjob/backup backup-by-hand`. The webhook cannot know
            // the CronJob from the pod without an API call; the Job itself was admitted with its
            // CronJob owner, so its template (and every pod made from it) already has the fix.
            what: "Pod → manual Job → CronJob",
            pod: pod(
                "backup-by-hand-q9z8w",
                Some(("Job", "backup-by-hand")),
                json!({"batch.kubernetes.io/job-name": "backup-by-hand"}),
            ),
            intermediate: Some(("Job", job("backup-by-hand", Some("backup"), true))),
            webhook: &["backup-by-hand"],
            healing: Some(("CronJob", "backup")),
        },
        Row {
            // A Job of its own whose name looks like a scheduled run: whoever knows the Job
            // resolves it to itself; the webhook lists both names.
            what: "Pod → Job without a controller",
            pod: pod(
                "migrate-29412345-k2j4h",
                Some(("Job", "migrate-29412345")),
                json!({}),
            ),
            intermediate: Some(("Job", job("migrate-29412345", None, false))),
            webhook: &["migrate", "migrate-29412345"],
            healing: Some(("Job", "migrate-29412345")),
        },
        Row {
            // A date is not a scheduled minute (2015..2100): the webhook does not guess a CronJob.
            what: "Pod → dated Job",
            pod: pod(
                "migrate-20240101-k2j4h",
                Some(("Job", "migrate-20240101")),
                json!({}),
            ),
            intermediate: Some(("Job", job("migrate-20240101", None, false))),
            webhook: &["migrate-20240101"],
            healing: Some(("Job", "migrate-20240101")),
        },
        Row {
            what: "Pod → StatefulSet",
            pod: pod("db-0", Some(("StatefulSet", "db")), json!({})),
            intermediate: None,
            webhook: &["db"],
            healing: Some(("StatefulSet", "db")),
        },
        Row {
            what: "Pod → DaemonSet",
            pod: pod("agent-7x9k2", Some(("DaemonSet", "agent")), json!({})),
            intermediate: None,
            webhook: &["agent"],
            healing: Some(("DaemonSet", "agent")),
        },
        Row {
            what: "bare Pod",
            pod: pod("debug", None, json!({})),
            intermediate: None,
            webhook: &["debug"],
            healing: None,
        },
    ]
}

fn expected(row: &Row) -> Option<(String, String)> {
    row.healing
        .map(|(kind, name)| (kind.to_string(), name.to_string()))
}

fn resolved(workload: Option<&owners::Workload>) -> Option<(String, String)> {
    workload.map(|w| {
        assert_eq!(w.namespace, NS);
        (w.kind.clone(), w.name.clone())
    })
}

fn collection(kind: &str) -> Collection {
    match kind {
        "ReplicaSet" => Collection::apps(NS, "replicasets"),
        _ => Collection::new("apis/batch/v1", NS, "jobs"),
    }
}

#[test]
fn the_webhook_resolves_every_row() {
    for row in rows() {
        assert_eq!(
            target::fix_names(WorkloadKind::Pod, &row.pod),
            row.webhook,
            "{}",
            row.what
        );
        // The Jobs themselves are admitted with their owner: a manual Job answers to its CronJob.
        if let Some(("Job", job)) = &row.intermediate {
            let names = target::fix_names(WorkloadKind::Job, job);
            let want = match row.healing {
                Some((_, name)) => name,
                None => unreachable!("every Job row has a workload"),
            };
            assert_eq!(names, [want], "{}: the Job object", row.what);
        }
    }
    // Claims of a StatefulSet answer to it (the readings the webhook tries).
    let claim_owner = owners::statefulset_claim_readings("data-db-0", None);
    assert_eq!(claim_owner, [("data", "db")]);
}

#[tokio::test]
async fn the_watcher_resolves_every_row_reading_an_unknown_job_once() {
    for row in rows() {
        let server = FakeApiServer::new();
        if let Some((kind, object)) = &row.intermediate {
            server.put(&collection(kind), object.clone());
        }
        // The watcher's view: the one pod, no ReplicaSets, no Jobs.
        let view = ClusterView {
            pods: vec![serde_json::from_value(row.pod.clone()).unwrap()],
            ..ClusterView::default()
        };
        let before = server.requests.load(std::sync::atomic::Ordering::Relaxed);
        let findings =
            inspect::diagnose_view(&server.client(), &view, jiff::Timestamp::now()).await;
        let calls = server.requests.load(std::sync::atomic::Ordering::Relaxed) - before;
        assert_eq!(findings.len(), 1, "{}", row.what);
        assert_eq!(
            resolved(findings[0].workload.as_ref()),
            expected(&row),
            "{}",
            row.what
        );
        let job_owned = matches!(row.intermediate, Some(("Job", _)));
        assert_eq!(
            calls,
            usize::from(job_owned),
            "{}: one GET for a Job the view does not know, none otherwise",
            row.what
        );
    }
}

#[tokio::test]
async fn the_watcher_falls_back_to_conventions_when_the_job_cannot_be_read() {
    // The Job is gone (or not readable): a scheduled name still resolves to its CronJob.
    let server = FakeApiServer::new();
    let view = ClusterView {
        pods: vec![
            serde_json::from_value(pod(
                "backup-29412345-abcde",
                Some(("Job", "backup-29412345")),
                json!({}),
            ))
            .unwrap(),
        ],
        ..ClusterView::default()
    };
    let findings = inspect::diagnose_view(&server.client(), &view, jiff::Timestamp::now()).await;
    assert_eq!(
        resolved(findings[0].workload.as_ref()),
        Some(("CronJob".into(), "backup".into()))
    );
}

#[tokio::test]
async fn health_and_heal_resolve_every_row_from_the_api() {
    let server = FakeApiServer::new();
    for row in rows() {
        server.put(&Collection::core(NS, "pods"), row.pod.clone());
        if let Some((kind, object)) = &row.intermediate {
            server.put(&collection(kind), object.clone());
        }
    }
    let client = server.client();
    let view = inspect::gather(&client, Some(NS)).await.expect("gather");
    let findings = inspect::diagnose_view(&client, &view, jiff::Timestamp::now()).await;
    every_row_resolves(&findings);
}

#[test]
fn health_from_a_dump_resolves_every_row() {
    let mut items: Vec<Value> = Vec::new();
    for row in rows() {
        items.push(row.pod.clone());
        if let Some((_, object)) = &row.intermediate {
            items.push(object.clone());
        }
    }
    let dump = json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
    let view = ClusterView::from_dump(&dump).expect("dump");
    let findings = inspect::findings(
        &view,
        &Default::default(),
        jiff::Timestamp::now(),
        &Thresholds::default(),
    );
    every_row_resolves(&findings);
}

#[test]
fn a_dump_without_jobs_still_resolves_scheduled_runs_by_their_name() {
    let items = vec![pod(
        "backup-29412345-abcde",
        Some(("Job", "backup-29412345")),
        json!({}),
    )];
    let dump = json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
    let view = ClusterView::from_dump(&dump).expect("dump");
    let pod = &view.pods[0];
    assert_eq!(
        resolved(view.workload_of(pod).as_ref()),
        Some(("CronJob".into(), "backup".into()))
    );
}

#[tokio::test]
async fn healthy_pods_cost_no_job_reads() {
    let server = FakeApiServer::new();
    server.put(
        &collection("Job"),
        job("backup-by-hand", Some("backup"), true),
    );
    let mut healthy = pod(
        "backup-by-hand-q9z8w",
        Some(("Job", "backup-by-hand")),
        json!({}),
    );
    healthy["status"]["containerStatuses"][0]["lastState"] = json!({});
    let view = ClusterView {
        pods: vec![serde_json::from_value(healthy).unwrap()],
        ..ClusterView::default()
    };
    let findings = inspect::diagnose_view(&server.client(), &view, jiff::Timestamp::now()).await;
    assert!(findings.is_empty());
    assert_eq!(
        server.requests.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "only the Jobs behind pods with a finding are read"
    );
}

/// Every row's pod has a finding whose workload is the row's expected fix target.
fn every_row_resolves(findings: &[inspect::Finding]) {
    for row in rows() {
        let uid = row.pod["metadata"]["uid"].as_str().unwrap();
        let finding = findings
            .iter()
            .find(|f| f.problem.uid == uid)
            .unwrap_or_else(|| panic!("{}: no finding", row.what));
        assert_eq!(
            resolved(finding.workload.as_ref()),
            expected(&row),
            "{}",
            row.what
        );
    }
}
