//! DETECT: what is wrong with a Pod or a PersistentVolumeClaim, read from its status as the
//! kubelet and controllers write it. Pure functions; the watcher feeds them from its caches.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStatus, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::certs::check::{self, CertIssue};
use serde::Serialize;

/// One detected problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub namespace: String,
    /// `Pod` or `PersistentVolumeClaim`.
    pub object_kind: &'static str,
    pub object_name: String,
    pub uid: String,
    #[serde(flatten)]
    pub kind: ProblemKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "camelCase")]
pub enum ProblemKind {
    /// The container was killed for exceeding its memory limit (now, or before its last restart).
    OomKilled {
        container: String,
        init: bool,
        restart_count: i32,
    },
    /// The container keeps exiting and the kubelet is backing off.
    CrashLoopBackOff {
        container: String,
        init: bool,
        restart_count: i32,
        exit_code: Option<i32>,
        message: Option<String>,
    },
    /// The image cannot be pulled.
    ImagePull {
        container: String,
        reason: String,
        message: Option<String>,
    },
    /// The container cannot be created from its configuration (missing ConfigMap or Secret, or
    /// a missing key in one).
    CreateConfigError { container: String, message: String },
    /// The kubelet cannot start the container for the reason it names in its waiting state
    /// (`RunContainerError`, `InvalidImageName`, ...).
    NotStarted {
        container: String,
        init: bool,
        reason: StartFailure,
        message: Option<String>,
    },
    /// The container runs but is not ready: its readiness probe fails, so its endpoints get no
    /// traffic. `running_seconds`: since the running instance started, if known.
    NotReady {
        container: String,
        running_seconds: Option<i64>,
    },
    /// The container exited non-zero (not an OOM kill) and will not be restarted: a Job's pod
    /// that failed, a `restartPolicy: Never` pod.
    ContainerFailed {
        container: String,
        init: bool,
        exit_code: i32,
        reason: Option<String>,
        message: Option<String>,
    },
    /// The pod is over (phase Failed) for a reason of its own: `Evicted` by the kubelet,
    /// `DeadlineExceeded`, rejected by the node (`OutOfcpu`, `NodeAffinity`), node `Shutdown`.
    PodFailed {
        reason: String,
        message: Option<String>,
    },
    /// No node fits the pod.
    Unschedulable { message: String },
    /// The pod is held by `spec.schedulingGates` beyond the grace period: the scheduler does
    /// not look at it until whoever set the gates removes them.
    SchedulingGated {
        gates: Vec<String>,
        message: Option<String>,
        seconds: Option<i64>,
    },
    /// Scheduled, but the containers have not started: at once when a Warning event says why
    /// (a failed mount, sandbox, attach), otherwise after the grace period. `seconds` since
    /// scheduling, when known.
    StuckCreating { seconds: Option<i64> },
    /// A claim stays Pending: at once when a Warning event says why (`ProvisioningFailed`,
    /// `FailedBinding`), otherwise after the grace period. `seconds` since creation, when known.
    ClaimPending {
        seconds: Option<i64>,
        storage_class: Option<String>,
    },
    /// The claim lost its volume.
    ClaimLost,
    /// A Service selects pods, but none of its endpoints is ready: whatever calls it is refused.
    NoReadyEndpoints {
        selected_pods: usize,
        port: Option<i32>,
    },
    /// A configured TCP probe of a dependency fails (`since`: when this outage began).
    DependencyDown { endpoint: String, since: String },
    /// A `kubernetes.io/tls` Secret holds a certificate that is expired, not yet valid,
    /// expiring soon, unparsable, or not matching its key.
    Certificate {
        #[serde(flatten)]
        issue: CertIssue,
        /// The cert-manager Certificate that issues this Secret, if any.
        managed_by: Option<String>,
    },
}

impl ProblemKind {
    /// Short name for tables, metrics and Event reasons.
    pub fn name(&self) -> &'static str {
        match self {
            ProblemKind::OomKilled { .. } => "OOMKilled",
            ProblemKind::CrashLoopBackOff { .. } => "CrashLoopBackOff",
            ProblemKind::ImagePull { .. } => "ImagePullBackOff",
            ProblemKind::CreateConfigError { .. } => "CreateContainerConfigError",
            ProblemKind::NotStarted { reason, .. } => reason.as_str(),
            ProblemKind::NotReady { .. } => "NotReady",
            ProblemKind::ContainerFailed { .. } => "ContainerFailed",
            ProblemKind::PodFailed { reason, .. } if reason == "Evicted" => "Evicted",
            ProblemKind::PodFailed { .. } => "PodFailed",
            ProblemKind::Unschedulable { .. } => "Unschedulable",
            ProblemKind::SchedulingGated { .. } => "SchedulingGated",
            ProblemKind::StuckCreating { .. } => "StuckCreating",
            ProblemKind::ClaimPending { .. } => "ClaimPending",
            ProblemKind::ClaimLost => "ClaimLost",
            ProblemKind::Certificate { issue, .. } => issue.name(),
            ProblemKind::NoReadyEndpoints { .. } => "NoReadyEndpoints",
            ProblemKind::DependencyDown { .. } => "DependencyDown",
        }
    }

    /// The container concerned, if the problem is about one.
    pub fn container(&self) -> Option<&str> {
        match self {
            ProblemKind::OomKilled { container, .. }
            | ProblemKind::CrashLoopBackOff { container, .. }
            | ProblemKind::ImagePull { container, .. }
            | ProblemKind::CreateConfigError { container, .. }
            | ProblemKind::NotStarted { container, .. }
            | ProblemKind::NotReady { container, .. }
            | ProblemKind::ContainerFailed { container, .. } => Some(container),
            _ => None,
        }
    }
}

/// The waiting reasons of a container the kubelet cannot start, each named as the kubelet
/// names it (`pkg/kubelet/container` and `images` errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StartFailure {
    /// The runtime failed to start the created container (a missing executable, a bad mount).
    RunContainerError,
    /// The runtime failed to create the container.
    CreateContainerError,
    /// The kubelet's internal pre-start hook failed (resource managers: cpu, memory, devices).
    PreStartHookError,
    /// The kubelet's internal pre-create hook failed.
    PreCreateHookError,
    /// The image is absent from the node and `imagePullPolicy: Never` forbids pulling it.
    ErrImageNeverPull,
    /// The runtime could not inspect the image.
    ImageInspectError,
    /// The image reference does not parse.
    InvalidImageName,
}

impl StartFailure {
    pub fn from_reason(reason: &str) -> Option<Self> {
        Some(match reason {
            "RunContainerError" => Self::RunContainerError,
            "CreateContainerError" => Self::CreateContainerError,
            "PreStartHookError" => Self::PreStartHookError,
            "PreCreateHookError" => Self::PreCreateHookError,
            "ErrImageNeverPull" => Self::ErrImageNeverPull,
            "ImageInspectError" => Self::ImageInspectError,
            "InvalidImageName" => Self::InvalidImageName,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RunContainerError => "RunContainerError",
            Self::CreateContainerError => "CreateContainerError",
            Self::PreStartHookError => "PreStartHookError",
            Self::PreCreateHookError => "PreCreateHookError",
            Self::ErrImageNeverPull => "ErrImageNeverPull",
            Self::ImageInspectError => "ImageInspectError",
            Self::InvalidImageName => "InvalidImageName",
        }
    }
}

/// A Warning Event about an object, as detection needs it (read from `core/v1` or
/// `events.k8s.io/v1` Events alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub reason: String,
    pub message: String,
    /// The container named by the event's `fieldPath` (`spec.containers{app}`), if any.
    pub container: Option<String>,
    /// When the event was last seen, if it says.
    pub last_seen: Option<Timestamp>,
}

impl Warning {
    fn is_readiness_failure(&self) -> bool {
        self.reason == "Unhealthy"
            && (self.message.starts_with("Readiness probe failed")
                || self.message.starts_with("Readiness probe errored"))
    }

    /// Whether it was seen at or after `since` (an event without a time counts: it exists).
    fn seen_since(&self, since: Option<Timestamp>) -> bool {
        match (self.last_seen, since) {
            (Some(seen), Some(since)) => seen >= since,
            _ => true,
        }
    }
}

/// The container a `fieldPath` names (`spec.containers{app}`, `spec.initContainers{init}`).
pub fn field_path_container(field_path: &str) -> Option<String> {
    let inner = field_path
        .strip_prefix("spec.containers{")
        .or_else(|| field_path.strip_prefix("spec.initContainers{"))
        .or_else(|| field_path.strip_prefix("spec.ephemeralContainers{"))?;
    inner.strip_suffix('}').map(str::to_string)
}

/// Grace periods before a state with no message of its own counts as a problem.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Scheduled pods whose containers have not started, with no Warning event saying why; also
    /// running containers not ready with no failed readiness probe reported, and pods held by
    /// scheduling gates.
    pub stuck_creating_seconds: i64,
    /// Pending claims with no Warning event saying why.
    pub claim_pending_seconds: i64,
    /// A certificate expiring within this many days is a problem.
    pub certificate_window_days: i64,
    /// How long a ready container's past OOM kill (its `lastState`) still counts.
    pub recent_oom_seconds: i64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            stuck_creating_seconds: 300,
            claim_pending_seconds: 300,
            certificate_window_days: 30,
            recent_oom_seconds: 3600,
        }
    }
}

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

/// When a Pending claim's grace period ends (`None` for a claim not Pending, or of unknown age:
/// that one is reported at once).
pub fn claim_grace_ends(
    claim: &PersistentVolumeClaim,
    thresholds: &Thresholds,
) -> Option<Timestamp> {
    if claim.status.as_ref()?.phase.as_deref() != Some("Pending") {
        return None;
    }
    let created = claim.metadata.creation_timestamp.as_ref()?.0;
    created
        .checked_add(jiff::SignedDuration::from_secs(
            thresholds.claim_pending_seconds,
        ))
        .ok()
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

/// Annotation cert-manager puts on the Secrets it issues, naming their Certificate.
pub const CERT_MANAGER_CERTIFICATE_ANNOTATION: &str = "cert-manager.io/certificate-name";

/// The certificate problem of a `kubernetes.io/tls` Secret, if it has one.
pub fn secret_problem(
    secret: &Secret,
    now: Timestamp,
    window_days: i64,
    provider: &rustls::crypto::CryptoProvider,
) -> Option<Problem> {
    if secret.type_.as_deref() != Some("kubernetes.io/tls") {
        return None;
    }
    let data = secret.data.as_ref();
    let cert = data
        .and_then(|d| d.get("tls.crt"))
        .map(|b| b.0.as_slice())
        .unwrap_or_default();
    let key = data.and_then(|d| d.get("tls.key")).map(|b| b.0.as_slice());
    let (_, issue) = check::check(cert, key, now, window_days, provider);
    Some(Problem {
        namespace: secret.metadata.namespace.clone().unwrap_or_default(),
        object_kind: "Secret",
        object_name: secret.metadata.name.clone().unwrap_or_default(),
        uid: secret.metadata.uid.clone().unwrap_or_default(),
        kind: ProblemKind::Certificate {
            issue: issue?,
            managed_by: secret
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(CERT_MANAGER_CERTIFICATE_ANNOTATION).cloned()),
        },
    })
}

/// Whether `labels` satisfy an equality `selector` (a Service's `spec.selector`).
pub fn selects(
    selector: &std::collections::BTreeMap<String, String>,
    labels: Option<&std::collections::BTreeMap<String, String>>,
) -> bool {
    !selector.is_empty()
        && labels.is_some_and(|labels| selector.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// The problem of a Service whose selected pods (`pods`, same namespace) have no ready endpoint
/// in its EndpointSlices (`slices`, those labelled with its name).
pub fn service_problem(
    service: &Service,
    pods: &[Pod],
    slices: &[EndpointSlice],
) -> Option<Problem> {
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let name = service.metadata.name.clone().unwrap_or_default();
    let spec = service.spec.as_ref()?;
    let selector = spec.selector.as_ref()?;
    let selected_pods = pods
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|p| selects(selector, p.metadata.labels.as_ref()))
        .count();
    if selected_pods == 0 {
        return None;
    }
    let ready = slices
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|s| {
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
                == Some(&name)
        })
        .flat_map(|s| s.endpoints.iter())
        // A missing `ready` means unknown, which consumers treat as ready.
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .count();
    (ready == 0).then(|| Problem {
        namespace,
        object_kind: "Service",
        object_name: name,
        uid: service.metadata.uid.clone().unwrap_or_default(),
        kind: ProblemKind::NoReadyEndpoints {
            selected_pods,
            port: spec.ports.as_ref().and_then(|p| p.first()).map(|p| p.port),
        },
    })
}

/// The problem of a claim, if it has one, read from its status alone.
pub fn claim_problem(
    claim: &PersistentVolumeClaim,
    now: Timestamp,
    thresholds: &Thresholds,
) -> Option<Problem> {
    claim_problem_with(claim, &[], now, thresholds)
}

/// The problem of a claim, also knowing the Warning events about it: a Pending claim with a
/// Warning (`ProvisioningFailed`, `FailedBinding`) is a problem at once; without one, after the
/// grace period (waiting for a provisioner or a first consumer is normal for a while). A claim
/// with no `creationTimestamp` has no known age and is reported.
pub fn claim_problem_with(
    claim: &PersistentVolumeClaim,
    warnings: &[Warning],
    now: Timestamp,
    thresholds: &Thresholds,
) -> Option<Problem> {
    let phase = claim.status.as_ref()?.phase.as_deref()?;
    let kind = match phase {
        "Lost" => ProblemKind::ClaimLost,
        "Pending" => {
            let seconds = claim
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|created| now.as_second() - created.0.as_second());
            let overdue = seconds.is_none_or(|s| s >= thresholds.claim_pending_seconds);
            if !overdue && warnings.is_empty() {
                return None;
            }
            ProblemKind::ClaimPending {
                seconds,
                storage_class: claim
                    .spec
                    .as_ref()
                    .and_then(|s| s.storage_class_name.clone()),
            }
        }
        _ => return None,
    };
    Some(Problem {
        namespace: claim.metadata.namespace.clone().unwrap_or_default(),
        object_kind: "PersistentVolumeClaim",
        object_name: claim.metadata.name.clone().unwrap_or_default(),
        uid: claim.metadata.uid.clone().unwrap_or_default(),
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2026-11-28T12:00:00Z".parse().unwrap()
    }

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-7d9f8c6b5-x2x7q", "namespace": "gitlab", "uid": "u1"},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]},
            "status": status,
        }))
        .unwrap()
    }

    /// A Running container whose previous instance was OOM killed, as the kubelet reports it.
    #[test]
    fn running_after_an_oom_kill_is_detected_by_last_state() {
        let pod = pod(json!({
            "phase": "Running",
            "containerStatuses": [{
                "name": "app", "ready": true, "restartCount": 3, "image": "app:1", "imageID": "",
                "state": {"running": {"startedAt": "2026-11-28T11:59:00Z"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                    "startedAt": "2026-11-28T11:50:00Z", "finishedAt": "2026-11-28T11:58:59Z",
                    "containerID": "containerd://abc"}}
            }]
        }));
        let problems = pod_problems(&pod, now(), &Thresholds::default());
        assert_eq!(
            problems[0].kind,
            ProblemKind::OomKilled {
                container: "app".into(),
                init: false,
                restart_count: 3
            }
        );
    }

    #[test]
    fn an_old_oom_kill_of_a_recovered_container_is_history() {
        let recovered = |finished: &str| {
            pod(json!({
                "phase": "Running",
                "containerStatuses": [{
                    "name": "app", "ready": true, "restartCount": 1, "image": "app:1", "imageID": "",
                    "state": {"running": {"startedAt": finished}},
                    "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": finished}}
                }]
            }))
        };
        assert!(
            pod_problems(
                &recovered("2026-11-01T00:00:00Z"),
                now(),
                &Thresholds::default()
            )
            .is_empty()
        );
        assert_eq!(
            pod_problems(
                &recovered("2026-11-28T11:30:00Z"),
                now(),
                &Thresholds::default()
            )[0]
            .kind
            .name(),
            "OOMKilled"
        );
    }

    #[test]
    fn crashloop_with_an_oom_last_state_is_an_oom() {
        let pod = pod(json!({
            "phase": "Running",
            "containerStatuses": [{
                "name": "app", "ready": false, "restartCount": 5, "image": "app:1", "imageID": "",
                "state": {"waiting": {"reason": "CrashLoopBackOff",
                    "message": "back-off 2m40s restarting failed container=app pod=web-7d9f8c6b5-x2x7q_gitlab(u1)"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
            }]
        }));
        assert_eq!(
            pod_problems(&pod, now(), &Thresholds::default())[0]
                .kind
                .name(),
            "OOMKilled"
        );
    }

    #[test]
    fn crashloop_keeps_the_last_exit() {
        let pod = pod(json!({
            "phase": "Running",
            "containerStatuses": [{
                "name": "app", "ready": false, "restartCount": 7, "image": "app:1", "imageID": "",
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}
            }]
        }));
        let problems = pod_problems(&pod, now(), &Thresholds::default());
        assert_eq!(
            problems[0].kind,
            ProblemKind::CrashLoopBackOff {
                container: "app".into(),
                init: false,
                restart_count: 7,
                exit_code: Some(1),
                message: Some("Error".into()),
            }
        );
    }

    #[test]
    fn init_container_image_pull_failure() {
        let pod = pod(json!({
            "phase": "Pending",
            "initContainerStatuses": [{
                "name": "migrate", "ready": false, "restartCount": 0, "image": "registry.example.com/migrate:v9", "imageID": "",
                "state": {"waiting": {"reason": "ImagePullBackOff",
                    "message": "Back-off pulling image \"registry.example.com/migrate:v9\""}}
            }],
            "containerStatuses": [{
                "name": "app", "ready": false, "restartCount": 0, "image": "app:1", "imageID": "",
                "state": {"waiting": {"reason": "PodInitializing"}}
            }]
        }));
        let problems = pod_problems(&pod, now(), &Thresholds::default());
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].kind.name(), "ImagePullBackOff");
        assert_eq!(problems[0].kind.container(), Some("migrate"));
    }

    #[test]
    fn unschedulable_and_stuck_creating() {
        let unschedulable = pod(json!({
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."}]
        }));
        let problems = pod_problems(&unschedulable, now(), &Thresholds::default());
        assert!(
            matches!(&problems[0].kind, ProblemKind::Unschedulable { message } if message.contains("Insufficient memory"))
        );

        let creating = |since: &str| {
            pod(json!({
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": since}],
                "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0, "image": "app:1", "imageID": "",
                    "state": {"waiting": {"reason": "ContainerCreating"}}}]
            }))
        };
        let stuck = pod_problems(
            &creating("2026-11-28T11:50:00Z"),
            now(),
            &Thresholds::default(),
        );
        assert_eq!(
            stuck[0].kind,
            ProblemKind::StuckCreating { seconds: Some(600) }
        );
        assert!(
            pod_problems(
                &creating("2026-11-28T11:59:00Z"),
                now(),
                &Thresholds::default()
            )
            .is_empty()
        );
    }

    #[test]
    fn healthy_pods_have_no_problem() {
        let healthy = pod(json!({
            "phase": "Running",
            "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "image": "app:1", "imageID": "",
                "state": {"running": {"startedAt": "2026-11-28T11:00:00Z"}}}]
        }));
        assert!(pod_problems(&healthy, now(), &Thresholds::default()).is_empty());
    }

    #[test]
    fn services_without_ready_endpoints() {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "shop"},
            "spec": {"selector": {"app": "db"}, "ports": [{"port": 5432}]}
        }))
        .unwrap();
        let db_pod: Pod = serde_json::from_value(
            json!({"metadata": {"name": "db-0", "namespace": "shop", "labels": {"app": "db"}}}),
        )
        .unwrap();
        let slice = |ready: bool| -> EndpointSlice {
            serde_json::from_value(json!({
                "metadata": {"name": "db-abcde", "namespace": "shop", "labels": {"kubernetes.io/service-name": "db"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.0.0.7"], "conditions": {"ready": ready}}]
            }))
            .unwrap()
        };
        let down =
            service_problem(&service, std::slice::from_ref(&db_pod), &[slice(false)]).unwrap();
        assert_eq!(
            down.kind,
            ProblemKind::NoReadyEndpoints {
                selected_pods: 1,
                port: Some(5432)
            }
        );
        assert!(
            service_problem(&service, std::slice::from_ref(&db_pod), &[]).is_some(),
            "no slice at all"
        );
        assert!(service_problem(&service, std::slice::from_ref(&db_pod), &[slice(true)]).is_none());
        assert!(
            service_problem(&service, &[], &[slice(false)]).is_none(),
            "selects no pod: nothing to be ready"
        );
    }

    #[test]
    fn claims_pending_beyond_grace_and_lost() {
        let claim = |phase: &str, created: &str| -> PersistentVolumeClaim {
            serde_json::from_value(json!({
                "metadata": {"name": "data-db-0", "namespace": "gitlab", "creationTimestamp": created},
                "spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "8Gi"}}},
                "status": {"phase": phase}
            }))
            .unwrap()
        };
        let pending = claim_problem(
            &claim("Pending", "2026-11-28T11:00:00Z"),
            now(),
            &Thresholds::default(),
        )
        .unwrap();
        assert_eq!(
            pending.kind,
            ProblemKind::ClaimPending {
                seconds: Some(3600),
                storage_class: Some("fast".into())
            }
        );
        assert!(
            claim_problem(
                &claim("Pending", "2026-11-28T11:59:00Z"),
                now(),
                &Thresholds::default()
            )
            .is_none()
        );
        assert_eq!(
            claim_problem(
                &claim("Lost", "2026-11-28T11:00:00Z"),
                now(),
                &Thresholds::default()
            )
            .unwrap()
            .kind,
            ProblemKind::ClaimLost
        );
        assert!(
            claim_problem(
                &claim("Bound", "2026-11-28T11:00:00Z"),
                now(),
                &Thresholds::default()
            )
            .is_none()
        );
    }
    fn warning(reason: &str, message: &str, seen: &str) -> Warning {
        Warning {
            reason: reason.into(),
            message: message.into(),
            container: Some("app".into()),
            last_seen: Some(seen.parse().unwrap()),
        }
    }

    fn running_not_ready(started_at: &str) -> Pod {
        pod(json!({
            "phase": "Running",
            "containerStatuses": [{"name": "app", "ready": false, "started": true, "restartCount": 0,
                "image": "app:1", "imageID": "", "state": {"running": {"startedAt": started_at}}}]
        }))
    }

    #[test]
    fn not_ready_is_news_at_once_with_a_failed_readiness_probe_else_after_the_grace() {
        let thresholds = Thresholds::default();
        let young = running_not_ready("2026-11-28T11:59:00Z");
        assert!(pod_problems(&young, now(), &thresholds).is_empty());
        let probe = warning(
            "Unhealthy",
            "Readiness probe failed: HTTP probe failed with statuscode: 503",
            "2026-11-28T11:59:30Z",
        );
        assert_eq!(
            pod_problems_with(&young, std::slice::from_ref(&probe), now(), &thresholds)[0].kind,
            ProblemKind::NotReady {
                container: "app".into(),
                running_seconds: Some(60)
            }
        );
        // A probe failure of the previous instance, or of another container, is not this one's.
        let before = warning("Unhealthy", &probe.message, "2026-11-28T11:58:00Z");
        let other = Warning {
            container: Some("sidecar".into()),
            ..probe.clone()
        };
        let liveness = warning(
            "Unhealthy",
            "Liveness probe failed: Get \"http://10.244.1.5:8080/healthz\": context deadline exceeded",
            "2026-11-28T11:59:30Z",
        );
        assert!(
            pod_problems_with(&young, &[before, other, liveness], now(), &thresholds).is_empty()
        );
        assert_eq!(
            pod_problems(
                &running_not_ready("2026-11-28T11:50:00Z"),
                now(),
                &thresholds
            )[0]
            .kind
            .name(),
            "NotReady"
        );
        // Still starting (startup probe not passed), or being deleted: not a readiness problem.
        let mut starting = running_not_ready("2026-11-28T11:50:00Z");
        if let Some(statuses) = starting
            .status
            .as_mut()
            .and_then(|s| s.container_statuses.as_mut())
        {
            statuses[0].started = Some(false);
        }
        assert!(pod_problems(&starting, now(), &thresholds).is_empty());
        let mut deleting = running_not_ready("2026-11-28T11:50:00Z");
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
        assert!(pod_problems(&deleting, now(), &thresholds).is_empty());
    }

    fn exited(restart_policy: &str, phase: &str, sidecar: bool) -> Pod {
        let mut pod = pod(json!({
            "phase": phase,
            "initContainerStatuses": [{"name": "proxy", "ready": false, "restartCount": 0, "image": "proxy:1", "imageID": "",
                "state": {"terminated": {"exitCode": 2, "reason": "Error"}}}],
            "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0, "image": "app:1", "imageID": "",
                "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": "migration failed"}}}]
        }));
        if let Some(spec) = pod.spec.as_mut() {
            spec.restart_policy = Some(restart_policy.into());
            spec.init_containers = Some(vec![k8s_openapi::api::core::v1::Container {
                name: "proxy".into(),
                restart_policy: sidecar.then(|| "Always".to_string()),
                ..Default::default()
            }]);
        }
        pod
    }

    #[test]
    fn a_container_that_exited_non_zero_is_a_failure_once_nothing_restarts_it() {
        let thresholds = Thresholds::default();
        let failed = pod_problems(&exited("Never", "Failed", false), now(), &thresholds);
        let names: Vec<(&str, Option<&str>)> = failed
            .iter()
            .map(|p| (p.kind.name(), p.kind.container()))
            .collect();
        assert_eq!(
            names,
            [
                ("ContainerFailed", Some("proxy")),
                ("ContainerFailed", Some("app"))
            ]
        );
        assert_eq!(
            failed[1].kind,
            ProblemKind::ContainerFailed {
                container: "app".into(),
                init: false,
                exit_code: 1,
                reason: Some("Error".into()),
                message: Some("migration failed".into()),
            }
        );
        // The kubelet restarts it (a crash loop is coming, and is reported as one).
        assert!(pod_problems(&exited("Always", "Running", false), now(), &thresholds).is_empty());
        // A sidecar is restarted whatever the pod's policy.
        let with_sidecar = pod_problems(&exited("Never", "Running", true), now(), &thresholds);
        assert_eq!(with_sidecar.len(), 1);
        assert_eq!(with_sidecar[0].kind.container(), Some("app"));
    }

    #[test]
    fn an_evicted_pod_is_one_problem_with_the_kubelets_message() {
        let evicted = pod(json!({
            "phase": "Failed", "reason": "Evicted",
            "message": "The node was low on resource: ephemeral-storage. Threshold quantity: 4Gi, available: 3Gi. ",
            "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0, "image": "app:1", "imageID": "",
                "state": {"terminated": {"exitCode": 137, "reason": "ContainerStatusUnknown"}}}]
        }));
        let problems = pod_problems(&evicted, now(), &Thresholds::default());
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].kind.name(), "Evicted");
        let deadline = pod(json!({"phase": "Failed", "reason": "DeadlineExceeded",
            "message": "Pod was active on the node longer than the specified deadline"}));
        assert_eq!(
            pod_problems(&deadline, now(), &Thresholds::default())[0]
                .kind
                .name(),
            "PodFailed"
        );
    }

    #[test]
    fn every_waiting_reason_is_named_as_the_kubelet_names_it() {
        for (reason, name) in [
            ("RunContainerError", "RunContainerError"),
            ("CreateContainerError", "CreateContainerError"),
            ("PreStartHookError", "PreStartHookError"),
            ("PreCreateHookError", "PreCreateHookError"),
            ("ErrImageNeverPull", "ErrImageNeverPull"),
            ("ImageInspectError", "ImageInspectError"),
            ("InvalidImageName", "InvalidImageName"),
            ("CreateContainerConfigError", "CreateContainerConfigError"),
            ("ErrImagePull", "ImagePullBackOff"),
        ] {
            let waiting = pod(json!({
                "phase": "Pending",
                "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0, "image": "app:1", "imageID": "",
                    "state": {"waiting": {"reason": reason, "message": "the kubelet's message"}}}]
            }));
            let problems = pod_problems(&waiting, now(), &Thresholds::default());
            assert_eq!(problems.len(), 1, "{reason}");
            assert_eq!(problems[0].kind.name(), name, "{reason}");
            assert_eq!(problems[0].kind.container(), Some("app"), "{reason}");
        }
    }

    #[test]
    fn scheduling_gates_are_reported_after_the_grace_with_their_names() {
        let gated = |since: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "worker", "namespace": "batch", "uid": "u2"},
                "spec": {"containers": [{"name": "app", "image": "app:1"}],
                    "schedulingGates": [{"name": "kueue.x-k8s.io/admission"}]},
                "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                    "reason": "SchedulingGated", "message": "Scheduling is blocked due to non-empty scheduling gates",
                    "lastTransitionTime": since}]}
            }))
            .unwrap()
        };
        assert!(
            pod_problems(
                &gated("2026-11-28T11:59:00Z"),
                now(),
                &Thresholds::default()
            )
            .is_empty()
        );
        assert_eq!(
            pod_problems(
                &gated("2026-11-28T11:50:00Z"),
                now(),
                &Thresholds::default()
            )[0]
            .kind,
            ProblemKind::SchedulingGated {
                gates: vec!["kueue.x-k8s.io/admission".into()],
                message: Some("Scheduling is blocked due to non-empty scheduling gates".into()),
                seconds: Some(600),
            }
        );
    }

    #[test]
    fn a_warning_since_scheduling_ends_the_grace_of_a_creating_pod() {
        let creating = pod(json!({
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-28T11:59:30Z"}],
            "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0, "image": "app:1", "imageID": "",
                "state": {"waiting": {"reason": "ContainerCreating"}}}]
        }));
        let mount = Warning {
            container: None,
            ..warning(
                "FailedMount",
                "MountVolume.SetUp failed for volume \"data\" : secret \"db-creds\" not found",
                "2026-11-28T11:59:45Z",
            )
        };
        assert_eq!(
            pod_problems_with(
                &creating,
                std::slice::from_ref(&mount),
                now(),
                &Thresholds::default()
            )[0]
            .kind,
            ProblemKind::StuckCreating { seconds: Some(30) }
        );
        // A FailedScheduling from before the pod was scheduled says nothing about creating it.
        let earlier = warning(
            "FailedScheduling",
            "0/3 nodes are available: 3 Insufficient memory.",
            "2026-11-28T11:59:00Z",
        );
        assert!(pod_problems_with(&creating, &[earlier], now(), &Thresholds::default()).is_empty());
    }

    #[test]
    fn a_pending_claim_with_a_warning_is_reported_at_once_and_one_without_a_creation_time_too() {
        let claim = |created: Option<&str>| -> PersistentVolumeClaim {
            let mut claim = json!({
                "metadata": {"name": "data-db-0", "namespace": "gitlab"},
                "spec": {"storageClassName": "standard"},
                "status": {"phase": "Pending"}
            });
            if let Some(created) = created {
                claim["metadata"]["creationTimestamp"] = json!(created);
            }
            serde_json::from_value(claim).unwrap()
        };
        let young = claim(Some("2026-11-28T11:59:40Z"));
        assert!(claim_problem(&young, now(), &Thresholds::default()).is_none());
        let failed = warning(
            "ProvisioningFailed",
            "failed to provision volume with StorageClass \"standard\": rpc error: code = ResourceExhausted desc = quota exceeded",
            "2026-11-28T11:59:50Z",
        );
        assert_eq!(
            claim_problem_with(&young, &[failed], now(), &Thresholds::default())
                .unwrap()
                .kind,
            ProblemKind::ClaimPending {
                seconds: Some(20),
                storage_class: Some("standard".into())
            }
        );
        assert_eq!(
            claim_problem(&claim(None), now(), &Thresholds::default())
                .unwrap()
                .kind,
            ProblemKind::ClaimPending {
                seconds: None,
                storage_class: Some("standard".into())
            }
        );
    }

    #[test]
    fn field_paths_name_their_container() {
        assert_eq!(
            field_path_container("spec.containers{app}").as_deref(),
            Some("app")
        );
        assert_eq!(
            field_path_container("spec.initContainers{migrate}").as_deref(),
            Some("migrate")
        );
        assert_eq!(field_path_container(""), None);
    }
    #[test]
    fn grace_periods_end_when_time_alone_makes_a_problem() {
        let thresholds = Thresholds::default();
        let at = |t: &str| -> Option<Timestamp> { Some(t.parse().unwrap()) };
        let young = running_not_ready("2026-11-28T11:59:00Z");
        let ends = pod_grace_ends(&young, now(), &thresholds);
        assert_eq!(ends, at("2026-11-28T12:04:00Z"));
        let just_before = ends.unwrap() - jiff::SignedDuration::from_secs(1);
        assert!(pod_problems(&young, just_before, &thresholds).is_empty());
        assert_eq!(
            pod_problems(&young, ends.unwrap(), &thresholds)[0]
                .kind
                .name(),
            "NotReady"
        );
        let gated = pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "SchedulingGated", "lastTransitionTime": "2026-11-28T11:58:00Z"}]}),
        );
        assert_eq!(
            pod_grace_ends(&gated, now(), &thresholds),
            at("2026-11-28T12:03:00Z")
        );
        let unschedulable = pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "lastTransitionTime": "2026-11-28T11:58:00Z"}]}),
        );
        assert_eq!(pod_grace_ends(&unschedulable, now(), &thresholds), None);
        let claim: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data", "creationTimestamp": "2026-11-28T11:58:00Z"},
            "status": {"phase": "Pending"}
        }))
        .unwrap();
        assert_eq!(
            claim_grace_ends(&claim, &thresholds),
            at("2026-11-28T12:03:00Z")
        );
    }

    #[test]
    fn each_unready_container_has_its_own_grace_end() {
        let thresholds = Thresholds::default();
        let at = |t: &str| -> Timestamp { t.parse().unwrap() };
        let two = pod(json!({
            "phase": "Running",
            "containerStatuses": [
                {"name": "a", "ready": false, "started": true, "restartCount": 0, "image": "a:1",
                 "imageID": "", "state": {"running": {"startedAt": "2026-11-28T11:50:00Z"}}},
                {"name": "b", "ready": false, "started": true, "restartCount": 0, "image": "b:1",
                 "imageID": "", "state": {"running": {"startedAt": "2026-11-28T11:51:40Z"}}}
            ]
        }));
        let before = at("2026-11-28T11:52:00Z");
        assert_eq!(
            pod_grace_ends(&two, before, &thresholds),
            Some(at("2026-11-28T11:55:00Z"))
        );
        let a_due = at("2026-11-28T11:55:00Z");
        assert_eq!(
            pod_grace_ends(&two, a_due, &thresholds),
            Some(at("2026-11-28T11:56:40Z")),
            "once a's grace has ended, b's is still to come"
        );
        assert_eq!(
            pod_grace_ends(&two, at("2026-11-28T11:56:40Z"), &thresholds),
            None
        );
    }

    #[test]
    fn a_start_at_the_end_of_time_has_no_grace_end_and_no_panic() {
        let thresholds = Thresholds::default();
        let last = "9999-12-30T21:59:00Z";
        let started = running_not_ready(last);
        assert_eq!(pod_grace_ends(&started, now(), &thresholds), None);
        assert!(pod_problems(&started, now(), &thresholds).is_empty());
        let gated = pod(
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "SchedulingGated", "lastTransitionTime": last}]}),
        );
        assert_eq!(pod_grace_ends(&gated, now(), &thresholds), None);
        let claim: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data", "creationTimestamp": last},
            "status": {"phase": "Pending"}
        }))
        .unwrap();
        assert_eq!(claim_grace_ends(&claim, &thresholds), None);
        assert_eq!(claim_problem(&claim, now(), &thresholds), None);
    }
}
