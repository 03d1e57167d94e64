//! A Pod's problems, read from its status (and the Warning events about it).

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::{Problem, ProblemKind, StartFailure, Thresholds, Warning};

/// Every problem of a pod, init containers included, read from its status alone (the watcher's
/// per-pod check): states the status names are problems at once, the others after their grace.
pub fn pod_problems(pod: &Pod, now: Timestamp, thresholds: &Thresholds) -> Vec<Problem> {
    pod_problems_with(pod, &[], now, thresholds)
}

/// Every problem of a pod, also knowing the Warning events about it: a pod still creating with a
/// Warning (`FailedMount`, `FailedCreatePodSandBox`, ...) and a container not ready with a failed
/// readiness probe (`Unhealthy`) are problems at once instead of after the grace period.
///
/// | state                                    | signal                                  | when          |
/// |------------------------------------------|-----------------------------------------|---------------|
/// | OOMKilled, CrashLoopBackOff, image pull  | container status                        | at once       |
/// | CreateContainerConfigError, NotStarted   | waiting reason and message              | at once       |
/// | ContainerFailed                          | terminated, non-zero, not restarted     | at once       |
/// | Evicted / PodFailed                      | phase Failed with a reason              | at once       |
/// | Unschedulable                            | PodScheduled False, Unschedulable       | at once       |
/// | NotReady                                 | `Unhealthy` "Readiness probe failed"    | at once       |
/// | NotReady                                 | none (ready false, running)             | grace         |
/// | StuckCreating                            | a Warning event since scheduling        | at once       |
/// | StuckCreating                            | none (ContainerCreating)                | grace         |
/// | SchedulingGated                          | PodScheduled False, SchedulingGated     | grace (gates are set on purpose) |
pub fn pod_problems_with(
    pod: &Pod,
    warnings: &[Warning],
    now: Timestamp,
    thresholds: &Thresholds,
) -> Vec<Problem> {
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    let problem = |kind| Problem {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        object_kind: "Pod",
        object_name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        kind,
    };
    let phase = status.phase.as_deref().unwrap_or_default();
    if phase == "Failed"
        && let Some(reason) = status.reason.clone()
    {
        // The pod is over for a reason of its own; its containers were stopped because of it.
        return vec![problem(ProblemKind::PodFailed {
            reason,
            message: status.message.clone(),
        })];
    }
    let spec = pod.spec.as_ref();
    let never_restarts =
        phase == "Failed" || spec.and_then(|s| s.restart_policy.as_deref()) == Some("Never");
    let init = status
        .init_container_statuses
        .iter()
        .flatten()
        .map(|s| (s, true));
    let regular = status
        .container_statuses
        .iter()
        .flatten()
        .map(|s| (s, false));
    let mut problems: Vec<Problem> = init
        .chain(regular)
        .filter_map(|(container, init)| {
            // A restartable init container (a sidecar) is restarted whatever the pod's policy.
            let sidecar = init
                && spec
                    .and_then(|s| s.init_containers.as_ref())
                    .and_then(|c| c.iter().find(|c| c.name == container.name))
                    .and_then(|c| c.restart_policy.as_deref())
                    == Some("Always");
            let facts = ContainerFacts {
                init,
                restarted: !never_restarts || sidecar,
            };
            container_problem(container, facts, now, thresholds)
        })
        .map(problem)
        .collect();

    if phase == "Running" && problems.is_empty() && pod.metadata.deletion_timestamp.is_none() {
        problems.extend(
            status
                .container_statuses
                .iter()
                .flatten()
                .filter_map(|c| not_ready(c, warnings, now, thresholds))
                .map(problem),
        );
    }

    if phase == "Pending" && problems.is_empty() {
        let conditions = status.conditions.iter().flatten();
        let not_scheduled = |reason: &str| {
            conditions.clone().find(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some(reason)
            })
        };
        let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let age = |since: Option<Timestamp>| since.map(|t| now.as_second() - t.as_second());
        if let Some(condition) = not_scheduled("Unschedulable") {
            problems.push(problem(ProblemKind::Unschedulable {
                message: condition.message.clone().unwrap_or_default(),
            }));
        } else if let Some(condition) = not_scheduled("SchedulingGated") {
            let seconds = age(condition
                .last_transition_time
                .as_ref()
                .map(|t| t.0)
                .or(created));
            if seconds.is_none_or(|s| s >= thresholds.stuck_creating_seconds) {
                problems.push(problem(ProblemKind::SchedulingGated {
                    gates: spec
                        .and_then(|s| s.scheduling_gates.as_ref())
                        .map(|gates| gates.iter().map(|g| g.name.clone()).collect())
                        .unwrap_or_default(),
                    message: condition.message.clone(),
                    seconds,
                }));
            }
        } else if let Some(scheduled) = scheduled_condition(pod) {
            let since = scheduled.last_transition_time.as_ref().map(|t| t.0);
            let seconds = age(since.or(created));
            let warned = warnings.iter().any(|w| w.seen_since(since));
            if warned || seconds.is_none_or(|s| s >= thresholds.stuck_creating_seconds) {
                problems.push(problem(ProblemKind::StuckCreating { seconds }));
            }
        }
    }
    problems
}

/// When a problem of `pod` that is not there yet can first appear by the passing of time alone:
/// the end of the grace period of a scheduled pod whose containers have not started, of a running
/// container that is not ready, of a pod held by scheduling gates. `None` when time alone changes
/// nothing (a Warning event or a status change does; the watcher looks again then). Each
/// container and condition has its own grace end: the earliest one after `now` is returned, so
/// a second container that went unready later is looked at when its own grace ends.
pub fn pod_grace_ends(pod: &Pod, now: Timestamp, thresholds: &Thresholds) -> Option<Timestamp> {
    let status = pod.status.as_ref()?;
    let grace = jiff::SignedDuration::from_secs(thresholds.stuck_creating_seconds);
    let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let starts: Vec<Timestamp> = match status.phase.as_deref() {
        Some("Pending") => status
            .conditions
            .iter()
            .flatten()
            .filter(|c| {
                c.type_ == "PodScheduled"
                    && (c.status == "True" || c.reason.as_deref() == Some("SchedulingGated"))
            })
            .filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0).or(created))
            .collect(),
        Some("Running") if pod.metadata.deletion_timestamp.is_none() => status
            .container_statuses
            .iter()
            .flatten()
            .filter(|c| !c.ready && c.started != Some(false))
            .filter_map(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
            .map(|t| t.0)
            .collect(),
        _ => Vec::new(),
    };
    starts
        .into_iter()
        .filter_map(|start| start.checked_add(grace).ok())
        .filter(|end| *end > now)
        .min()
}

/// What a container's problem depends on besides its status.
#[derive(Debug, Clone, Copy)]
struct ContainerFacts {
    init: bool,
    /// The kubelet restarts it when it exits (its pod's policy, or it is a sidecar).
    restarted: bool,
}

fn container_problem(
    status: &ContainerStatus,
    facts: ContainerFacts,
    now: Timestamp,
    thresholds: &Thresholds,
) -> Option<ProblemKind> {
    let init = facts.init;
    let name = status.name.clone();
    let waiting = status.state.as_ref().and_then(|s| s.waiting.as_ref());
    let waiting_reason = waiting
        .and_then(|w| w.reason.as_deref())
        .unwrap_or_default();
    let waiting_message = waiting.and_then(|w| w.message.clone());
    let terminated_now = status.state.as_ref().and_then(|s| s.terminated.as_ref());
    let terminated_last = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref());
    let oom = |t: Option<&k8s_openapi::api::core::v1::ContainerStateTerminated>| {
        t.is_some_and(|t| t.reason.as_deref() == Some("OOMKilled"))
    };
    // OOM first: a CrashLoopBackOff whose last exit was an OOM kill is an OOM problem, and so is
    // a Running container whose previous instance was OOM killed (seen by its restart count) —
    // while that is news: `lastState` stays OOMKilled long after a container recovered, so a
    // ready container's old OOM kill counts only within `recent_oom_seconds` of its end.
    let recent = |t: &k8s_openapi::api::core::v1::ContainerStateTerminated| {
        t.finished_at.as_ref().is_none_or(|finished| {
            now.as_second() - finished.0.as_second() <= thresholds.recent_oom_seconds
        })
    };
    let last_oom_is_news =
        oom(terminated_last) && (!status.ready || terminated_last.is_some_and(recent));
    if oom(terminated_now) || last_oom_is_news {
        return Some(ProblemKind::OomKilled {
            container: name,
            init,
            restart_count: status.restart_count,
        });
    }
    match waiting_reason {
        "CrashLoopBackOff" => {
            return Some(ProblemKind::CrashLoopBackOff {
                container: name,
                init,
                restart_count: status.restart_count,
                exit_code: terminated_last.map(|t| t.exit_code),
                message: terminated_last
                    .and_then(|t| t.message.clone().or(t.reason.clone()))
                    .or(waiting_message),
            });
        }
        "ImagePullBackOff" | "ErrImagePull" => {
            return Some(ProblemKind::ImagePull {
                container: name,
                reason: waiting_reason.to_string(),
                message: waiting_message,
            });
        }
        "CreateContainerConfigError" => {
            return Some(ProblemKind::CreateConfigError {
                container: name,
                message: waiting_message.unwrap_or_default(),
            });
        }
        other => {
            if let Some(reason) = StartFailure::from_reason(other) {
                return Some(ProblemKind::NotStarted {
                    container: name,
                    init,
                    reason,
                    message: waiting_message,
                });
            }
        }
    }
    let failed = terminated_now.filter(|t| t.exit_code != 0 && !facts.restarted)?;
    Some(ProblemKind::ContainerFailed {
        container: name,
        init,
        exit_code: failed.exit_code,
        reason: failed.reason.clone(),
        message: failed.message.clone(),
    })
}

/// A running container that is not ready: at once when a readiness probe failure of its current
/// instance is reported, after the grace period otherwise. A container whose startup probe has
/// not passed yet (`started: false`) is still starting.
fn not_ready(
    status: &ContainerStatus,
    warnings: &[Warning],
    now: Timestamp,
    thresholds: &Thresholds,
) -> Option<ProblemKind> {
    let running = status.state.as_ref()?.running.as_ref()?;
    if status.ready || status.started == Some(false) {
        return None;
    }
    let started = running.started_at.as_ref().map(|t| t.0);
    let running_seconds = started.map(|t| now.as_second() - t.as_second());
    let probe_failed = warnings.iter().any(|w| {
        w.is_readiness_failure()
            && w.container.as_deref().is_none_or(|c| c == status.name)
            && w.seen_since(started)
    });
    let overdue = running_seconds.is_some_and(|s| s >= thresholds.stuck_creating_seconds);
    (probe_failed || overdue).then(|| ProblemKind::NotReady {
        container: status.name.clone(),
        running_seconds,
    })
}

fn scheduled_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "True")
}
