//! DETECT: what is wrong with a Pod, a PersistentVolumeClaim, a TLS Secret or a Service, read
//! from its status as the kubelet and controllers write it. Pure functions; the watcher feeds
//! them from its caches. One file per kind of object (`pod`, `claim`, `secret`, `service`); the
//! problem types and thresholds they share live here.

mod claim;
mod pod;
mod secret;
mod service;

pub use claim::{claim_grace_ends, claim_problem, claim_problem_with};
pub use pod::{pod_grace_ends, pod_problems, pod_problems_with};
pub use secret::{CERT_MANAGER_CERTIFICATE_ANNOTATION, secret_problem};
pub use service::{selects, service_problem};

use jiff::Timestamp;
use serde::Serialize;

use crate::certs::check::CertIssue;

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

/// Identity of one occurrence of a problem: the object, the container, the kind of problem, and
/// for problems that recur with restarts (an OOM kill, a crash loop) the restart count, so a new
/// restart is a new occurrence. Printed as `uid/container/problem/restarts`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProblemKey {
    pub uid: String,
    pub container: Option<String>,
    pub problem: &'static str,
    pub occurrence: i32,
}

impl std::fmt::Display for ProblemKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.uid,
            self.container.as_deref().unwrap_or("-"),
            self.problem,
            self.occurrence
        )
    }
}

impl Problem {
    /// The identity of this occurrence.
    pub fn key(&self) -> ProblemKey {
        let occurrence = match &self.kind {
            ProblemKind::OomKilled { restart_count, .. }
            | ProblemKind::CrashLoopBackOff { restart_count, .. } => *restart_count,
            _ => 0,
        };
        ProblemKey {
            uid: self.uid.clone(),
            container: self.kind.container().map(str::to_string),
            problem: self.kind.name(),
            occurrence,
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
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
