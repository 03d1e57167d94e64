//! DETECT + DIAGNOSE over a view of the cluster: the problems of every pod and claim, each with
//! its diagnosis and its component. The view comes from the API (`gather`), from the watcher's
//! caches, or from a `kubectl get pods,pvc,events,secrets,deployments,statefulsets,jobs,cronjobs,
//! services,endpointslices -A -o json` dump (`ClusterView::from_dump`). Events are matched to
//! their object by UID, or by kind, namespace and name where a UID is missing; Warning events
//! make detection report at once what would otherwise wait for a grace period. A pod's component
//! is resolved by the one identity rule of `core::owners`; the view supplies what it knows of
//! ReplicaSets and Jobs.

mod dump;
mod gather;
mod view;

pub use dump::{DumpError, UnreadableItem, core_event};
pub use gather::{
    LOG_LIMIT_BYTES, LOG_TAIL_LINES, MAX_JOB_GETS, diagnose_view, fetch_logs, gather,
    learn_unknown_jobs,
};
pub use view::{ClusterView, Logs, ObjectEvents, Owners, event_seen, is_about};

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use crate::core::owners::Workload;
use crate::heal::detect::{self, Problem, ProblemKind, Thresholds};
use crate::heal::diagnose::{self, Diagnosis, Evidence};
use view::EventIndex;

/// A problem with its diagnosis and component.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub problem: Problem,
    pub diagnosis: Diagnosis,
    pub workload: Option<Workload>,
    #[serde(skip)]
    pub labels: BTreeMap<String, String>,
}

/// The findings of problems detected already (the watcher's work items carry them): each
/// diagnosed from the events of its object in `view` and the `logs` read for it, with the
/// workload it answers to (`learned`: intermediate owners read since). Nothing is detected
/// again; a problem whose object the view does not hold is left out.
pub fn diagnosed(
    view: &ClusterView,
    problems: &[Problem],
    learned: &Owners,
    logs: &Logs,
) -> Vec<Finding> {
    let events = EventIndex::new(&view.events);
    problems
        .iter()
        .filter_map(|problem| {
            let uid = Some(problem.uid.as_str());
            let (meta, workload, evidence_of) = match problem.object_kind {
                "Pod" => {
                    let pod = view
                        .pods
                        .iter()
                        .find(|p| p.metadata.uid.as_deref() == uid)?;
                    (&pod.metadata, view.workload_with(pod, learned), true)
                }
                "PersistentVolumeClaim" => {
                    let claim = view
                        .claims
                        .iter()
                        .find(|c| c.metadata.uid.as_deref() == uid)?;
                    (&claim.metadata, None, true)
                }
                "Secret" => {
                    let secret = view
                        .secrets
                        .iter()
                        .find(|s| s.metadata.uid.as_deref() == uid)?;
                    (&secret.metadata, None, false)
                }
                _ => return None,
            };
            let about = events.about(problem.object_kind, meta);
            let (current, previous) = problem
                .kind
                .container()
                .and_then(|c| logs.get(&(problem.uid.clone(), c.to_string())))
                .cloned()
                .unwrap_or_default();
            let diagnosis = if evidence_of {
                diagnose::diagnose(problem, &about.evidence(&current, &previous))
            } else {
                diagnose::diagnose(problem, &Evidence::default())
            };
            Some(Finding {
                problem: problem.clone(),
                diagnosis,
                workload,
                labels: meta.labels.clone().unwrap_or_default(),
            })
        })
        .collect()
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
pub(crate) fn findings_with(
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
