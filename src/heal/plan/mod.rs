//! FIX, the decision: from a problem and its diagnosis, what to do — or why not to act.
//!
//! Pure: everything the decision needs is in `Situation`; `execute` carries the plan out.
//! The safety rails live here: ceilings, the memory rule, the number of raises before giving up,
//! and `admit_target`, the rails every object an action changes must pass (protected and
//! unwatched namespaces, the ignore label on the object and on its namespace).

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use crate::certs::check::CertIssue;
use crate::core::fix::{Fix, FixType};
use crate::core::owners::Workload;
use crate::core::quantity::ByteQuantity;
use crate::heal::detect::{Problem, ProblemKind};
use crate::heal::diagnose::{Cause, Diagnosis};
use crate::webhook::mutate::OPT_OUT_LABEL;

const MI: u128 = 1 << 20;
const GI: u128 = 1 << 30;

/// Safety rails on automatic actions.
#[derive(Debug, Clone)]
pub struct Rails {
    /// Memory is never raised past this.
    pub memory_ceiling: ByteQuantity,
    /// A raise adds at least this much...
    pub memory_min_step: ByteQuantity,
    /// ...and multiplies by at least this percentage.
    pub memory_ratio_percent: u32,
    /// After this many raises of the same fix without recovery: stop and alert.
    pub max_memory_raises: u32,
    pub storage_ceiling: ByteQuantity,
    pub storage_ratio_percent: u32,
    /// Pod deletions to retry an image that does not exist or is denied, before alerting.
    pub max_permanent_pull_retries: u32,
    /// Renewals of one certificate triggered before reporting the renewal as stuck.
    pub max_certificate_renewals: u32,
    /// Raises of one storage fix before selfheal stops and alerts.
    pub max_storage_raises: u32,
    /// Namespaces where nothing is ever changed (kube-system, selfheal's own, the configured).
    pub protected_namespaces: Vec<String>,
    /// When not empty, the only namespaces where anything is changed.
    pub watch_namespaces: Vec<String>,
}

impl Default for Rails {
    fn default() -> Self {
        Self {
            memory_ceiling: ByteQuantity::from_bytes(8 * GI),
            memory_min_step: ByteQuantity::from_bytes(256 * MI),
            memory_ratio_percent: 150,
            max_memory_raises: 3,
            storage_ceiling: ByteQuantity::from_bytes(1024 * GI),
            storage_ratio_percent: 150,
            max_permanent_pull_retries: 2,
            max_certificate_renewals: 3,
            max_storage_raises: 3,
            protected_namespaces: vec!["kube-system".into()],
            watch_namespaces: Vec::new(),
        }
    }
}

/// What the rails look at in an object an action would change (the workload rolled, the pod
/// evicted, the dependency restarted, the claim expanded, the Certificate renewed).
#[derive(Debug, Clone, Copy)]
pub struct TargetFacts<'a> {
    /// `Deployment`, `Pod`, `PersistentVolumeClaim`, `Certificate`, ...
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// The labels of the target's namespace.
    pub namespace_labels: &'a BTreeMap<String, String>,
    /// For an action that needs the target down (a dependency restart): how many of its
    /// replicas are ready. `None` where readiness does not matter.
    pub ready_replicas: Option<u32>,
}

impl TargetFacts<'_> {
    pub fn describe(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// The rail that stops an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rail {
    ProtectedNamespace,
    UnwatchedNamespace,
    IgnoredObject,
    IgnoredNamespace,
    /// A dependency with a ready replica is not down: a restart would not help.
    DependencyReady,
    /// The apiserver refused an eviction because of a PodDisruptionBudget.
    DisruptionBudget,
}

impl Rail {
    /// The rail's name in logs, metrics and outcomes.
    pub fn as_str(self) -> &'static str {
        match self {
            Rail::ProtectedNamespace => "protected_namespace",
            Rail::UnwatchedNamespace => "unwatched_namespace",
            Rail::IgnoredObject => "ignored_object",
            Rail::IgnoredNamespace => "ignored_namespace",
            Rail::DependencyReady => "dependency_ready",
            Rail::DisruptionBudget => "disruption_budget",
        }
    }
}

/// A decision not to change an object, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rail: Rail,
    pub reason: String,
}

fn ignored(labels: &BTreeMap<String, String>) -> bool {
    labels.get(OPT_OUT_LABEL).is_some_and(|v| v == "true")
}

/// Whether an action may change `target`. The same rails as for the pod that triggered the
/// action, applied to whatever the action changes, so a pod cannot make selfheal act where it
/// would never act on its own.
pub fn admit_target(target: &TargetFacts<'_>, rails: &Rails) -> Result<(), Refusal> {
    let what = target.describe();
    let refuse = |rail, reason: String| Err(Refusal { rail, reason });
    let namespace = target.namespace;
    if rails.protected_namespaces.iter().any(|p| p == namespace) {
        return refuse(
            Rail::ProtectedNamespace,
            format!("{what} is in the protected namespace {namespace}; not changing it"),
        );
    }
    if !rails.watch_namespaces.is_empty() && !rails.watch_namespaces.iter().any(|w| w == namespace)
    {
        return refuse(
            Rail::UnwatchedNamespace,
            format!("{what} is outside the watched namespaces; not changing it"),
        );
    }
    if ignored(target.labels) {
        return refuse(
            Rail::IgnoredObject,
            format!("{what} is labelled {OPT_OUT_LABEL}=true; not changing it"),
        );
    }
    if ignored(target.namespace_labels) {
        return refuse(
            Rail::IgnoredNamespace,
            format!(
                "namespace {namespace} of {what} is labelled {OPT_OUT_LABEL}=true; not changing it"
            ),
        );
    }
    if let Some(ready) = target.ready_replicas.filter(|ready| *ready > 0) {
        return refuse(
            Rail::DependencyReady,
            format!(
                "{what} has {ready} ready replica(s): it is not down, a restart would not help"
            ),
        );
    }
    Ok(())
}

/// A claim mounted by the pod.
#[derive(Debug, Clone)]
pub struct ClaimInfo {
    pub name: String,
    pub request: Option<ByteQuantity>,
    /// Bound, and its StorageClass has `allowVolumeExpansion: true`.
    pub expandable: bool,
}

/// Everything the decision looks at.
#[derive(Debug, Clone)]
pub struct Situation<'a> {
    pub problem: &'a Problem,
    pub diagnosis: &'a Diagnosis,
    pub workload: Option<&'a Workload>,
    /// Memory limit of the problem's container in the pod.
    pub container_limit: Option<ByteQuantity>,
    /// The namespace's LimitRange maximum for container memory.
    pub limit_range_max: Option<ByteQuantity>,
    /// The memory fix already stored for this workload and container.
    pub stored_fix: Option<&'a Fix>,
    /// The storage fixes already stored in this namespace (looked up by claim name).
    pub stored_storage_fixes: &'a [Fix],
    /// When the problem's container last terminated, if known.
    pub last_termination: Option<Timestamp>,
    pub claims: &'a [ClaimInfo],
    /// Earlier actions on this target (from the rate limiter).
    pub attempts: u32,
    pub now: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum Plan {
    /// Record a memory fix, then put it into the workload's template at once: a rollout of a
    /// Deployment, StatefulSet or DaemonSet; the `jobTemplate` of a CronJob (its next Job).
    RaiseMemory {
        #[serde(serialize_with = "fix_summary")]
        fix: Fix,
        roll_into: Option<Workload>,
    },
    /// Record a storage fix; expand the bound claim where its class allows it.
    RaiseStorage {
        #[serde(serialize_with = "fix_summary")]
        fix: Fix,
        claim: String,
        expand: bool,
    },
    /// Restart the pod through the Eviction API (honours PodDisruptionBudgets).
    EvictPod,
    /// Delete the pod so its controller creates a new one (retries an image pull).
    DeletePod,
    /// Restart the workload behind `host:port` if it is not ready (never the caller).
    RestartDependency { host: String, port: u16 },
    /// Ask cert-manager to re-issue the Certificate (as `cmctl renew` does).
    RenewCertificate { certificate: String },
    /// A decision not to act, and why.
    Report { reason: String },
    /// Automatic healing gave up or cannot help: a person must look.
    Alert { reason: String },
}

impl Plan {
    pub fn name(&self) -> &'static str {
        match self {
            Plan::RaiseMemory { .. } => "RaiseMemory",
            Plan::RaiseStorage { .. } => "RaiseStorage",
            Plan::EvictPod => "EvictPod",
            Plan::DeletePod => "DeletePod",
            Plan::RestartDependency { .. } => "RestartDependency",
            Plan::RenewCertificate { .. } => "RenewCertificate",
            Plan::Report { .. } => "Report",
            Plan::Alert { .. } => "Alert",
        }
    }
}

fn fix_summary<S: serde::Serializer>(fix: &Fix, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&format_args!(
        "{} {}={} {}",
        fix.resource,
        fix.fix_type,
        fix.value,
        fix.target().unwrap_or("")
    ))
}

fn report(reason: impl Into<String>) -> Plan {
    Plan::Report {
        reason: reason.into(),
    }
}

/// Decides what to do about one problem. Only the catalogue's fixes act; every other problem is
/// reported (an Event, a metric, a row of `health`):
///
/// | problem                                  | action                                           |
/// |------------------------------------------|--------------------------------------------------|
/// | OOMKilled (or a crash loop out of memory)| RaiseMemory (rails: ceiling, LimitRange, raises)  |
/// | CrashLoopBackOff, no space left          | RaiseStorage                                      |
/// | CrashLoopBackOff, connection refused     | RestartDependency (only if it is down)            |
/// | CrashLoopBackOff, other (workload pod)   | EvictPod; missing object/key, command, DNS, permission: Report |
/// | ImagePullBackOff / ErrImagePull          | DeletePod, Alert after retries of a permanent error |
/// | CreateContainerConfigError               | Report                                            |
/// | NotStarted (RunContainerError, CreateContainerError, PreStartHookError, PreCreateHookError, ErrImageNeverPull, ImageInspectError, InvalidImageName) | Report |
/// | NotReady (readiness probe failing)       | Report                                            |
/// | ContainerFailed (exited non-zero, not restarted) | Report                                    |
/// | Evicted / PodFailed                      | Report                                            |
/// | Unschedulable, SchedulingGated           | Report                                            |
/// | StuckCreating, ClaimPending              | Report                                            |
/// | ClaimLost                                | Alert                                             |
/// | NoReadyEndpoints                         | Report                                            |
/// | DependencyDown                           | RestartDependency                                 |
/// | Certificate                              | RenewCertificate (cert-manager), else Report/Alert |
pub fn plan(s: &Situation<'_>, rails: &Rails) -> Plan {
    let cause = s.diagnosis.cause;
    match &s.problem.kind {
        ProblemKind::OomKilled { container, .. } => plan_memory(s, container, rails),
        ProblemKind::CrashLoopBackOff { container, .. } => match cause {
            Cause::OutOfMemory => plan_memory(s, container, rails),
            Cause::NoSpaceLeft => plan_storage(s, rails),
            Cause::ConnectionRefused => match &s.diagnosis.endpoint {
                Some((host, port)) => Plan::RestartDependency {
                    host: host.clone(),
                    port: *port,
                },
                None => report("connection refused, but the log line names no host:port"),
            },
            Cause::MissingConfigMap
            | Cause::MissingSecret
            | Cause::MissingConfigMapKey
            | Cause::MissingSecretKey
            | Cause::CommandNotFound
            | Cause::PermissionDenied
            | Cause::DnsFailure => report(format!("{}: a restart cannot fix this", cause.as_str())),
            _ if s.workload.is_none() => {
                report("bare pod: no controller would recreate it, not restarting")
            }
            _ => Plan::EvictPod,
        },
        ProblemKind::ImagePull { .. } => {
            if s.workload.is_none() {
                return report("bare pod: deleting it would not bring it back");
            }
            let permanent = matches!(cause, Cause::ImageNotFound | Cause::ImageUnauthorized);
            if permanent && s.attempts >= rails.max_permanent_pull_retries {
                return Plan::Alert {
                    reason: format!(
                        "{} after {} retries: fix the image reference or the pull secret",
                        cause.as_str(),
                        s.attempts
                    ),
                };
            }
            Plan::DeletePod
        }
        ProblemKind::CreateConfigError { .. } => report(format!(
            "{}: the kubelet retries by itself once the configuration is right",
            cause.as_str()
        )),
        ProblemKind::NotStarted { reason, .. } => report(format!(
            "{} ({}): no fix in the catalogue; the kubelet keeps retrying",
            reason.as_str(),
            cause.as_str()
        )),
        ProblemKind::NotReady { .. } => report(format!(
            "not ready ({}): its endpoints get no traffic; the kubelet keeps probing, a restart would not make it ready",
            cause.as_str()
        )),
        ProblemKind::ContainerFailed { .. } => report(format!(
            "container failed ({}): its controller decides on a retry (a Job's backoffLimit)",
            cause.as_str()
        )),
        ProblemKind::PodFailed { .. } => report(format!(
            "pod failed ({}): its controller replaces it; the failed pod stays until deleted",
            cause.as_str()
        )),
        ProblemKind::SchedulingGated { .. } => report(
            "held by scheduling gates: whoever set them (a queue controller) must remove them",
        ),
        ProblemKind::Unschedulable { .. } => report(format!(
            "unschedulable ({}): needs capacity or smaller requests",
            cause.as_str()
        )),
        ProblemKind::StuckCreating { .. } => report(format!("stuck creating: {}", cause.as_str())),
        ProblemKind::ClaimPending { .. } => report(format!("claim pending: {}", cause.as_str())),
        ProblemKind::ClaimLost => Plan::Alert {
            reason: "the claim lost its volume: data may be gone, restore from backup".into(),
        },
        ProblemKind::DependencyDown { .. } => match &s.diagnosis.endpoint {
            Some((host, port)) => Plan::RestartDependency {
                host: host.clone(),
                port: *port,
            },
            None => report("dependency probe failed, but no endpoint is known"),
        },
        ProblemKind::NoReadyEndpoints { .. } => report(
            "no ready endpoints: the workload behind is restarted when a caller is refused, not before",
        ),
        ProblemKind::Certificate { issue, managed_by } => match (managed_by, issue) {
            (Some(certificate), _) if s.attempts >= rails.max_certificate_renewals => Plan::Alert {
                reason: format!(
                    "renewal of Certificate {certificate} triggered {} times and still {}: renewal stuck",
                    s.attempts,
                    issue.describe()
                ),
            },
            (Some(certificate), _) => Plan::RenewCertificate {
                certificate: certificate.clone(),
            },
            (None, CertIssue::ExpiringSoon { .. }) => report(format!(
                "{}; not managed by cert-manager: renew it by hand",
                issue.describe()
            )),
            (None, _) => Plan::Alert {
                reason: format!(
                    "{}; not managed by cert-manager: replace it by hand",
                    issue.describe()
                ),
            },
        },
    }
}

/// The next memory limit after an OOM kill at `current`: at least `min_step` more and at least
/// `ratio` times more, rounded up to a tidy size (64Mi below 1Gi, 256Mi above), capped by the
/// ceiling and the LimitRange maximum. `None` when the cap leaves no room to grow.
pub fn next_memory_limit(
    current: &ByteQuantity,
    rails: &Rails,
    limit_range_max: Option<&ByteQuantity>,
) -> Option<ByteQuantity> {
    let current = current.bytes();
    let by_ratio = current
        .saturating_mul(u128::from(rails.memory_ratio_percent))
        .div_ceil(100);
    let wanted = by_ratio.max(current.saturating_add(rails.memory_min_step.bytes()));
    let grain = if wanted < GI { 64 * MI } else { 256 * MI };
    let tidy = wanted.div_ceil(grain).saturating_mul(grain);
    let cap = limit_range_max.map_or(rails.memory_ceiling.bytes(), |max| {
        max.bytes().min(rails.memory_ceiling.bytes())
    });
    let next = tidy.min(cap);
    (next > current).then(|| ByteQuantity::from_bytes(next))
}

/// Whether a fix written into the workload's template reaches its pods: by a rollout, or (a
/// CronJob) with its next Job. A running Job's template is immutable; a ReplicaSet's belongs to
/// its Deployment.
fn carries_fix_in_template(workload: &Workload) -> bool {
    workload.restartable() || workload.kind == "CronJob"
}

fn plan_memory(s: &Situation<'_>, container: &str, rails: &Rails) -> Plan {
    let Some(workload) = s.workload else {
        return report("bare pod: no workload carries a fix across restarts; reported only");
    };
    let Some(current) = &s.container_limit else {
        return report(format!(
            "container {container} has no memory limit: the OOM kill came from node memory pressure"
        ));
    };
    let Some(next) = next_memory_limit(current, rails, s.limit_range_max.as_ref()) else {
        return Plan::Alert {
            reason: format!(
                "container {container} is at the memory ceiling ({current}); not raising further"
            ),
        };
    };
    if let Some(stored) = s.stored_fix {
        // The pod already runs with the stored value (or more) and still ran out of memory.
        let raised_without_recovery = *current >= stored.value;
        if raised_without_recovery && stored.count >= rails.max_memory_raises {
            return Plan::Alert {
                reason: format!(
                    "memory of container {container} raised {} times (now {}) without recovery; stopping",
                    stored.count, stored.value
                ),
            };
        }
    }
    let fix = Fix {
        namespace: workload.namespace.clone(),
        resource: workload.name.clone(),
        fix_type: FixType::Memory,
        value: next,
        timestamp: Some(s.now),
        container: Some(container.to_string()),
        claim: None,
        reason: Some(format!(
            "{} of container {container} at {current}",
            s.problem.kind.name()
        )),
        evidence: Some(s.diagnosis.evidence.clone()),
        previous: Some(current.to_string()),
        count: 1,
    };
    Plan::RaiseMemory {
        fix,
        roll_into: carries_fix_in_template(workload).then(|| workload.clone()),
    }
}

fn plan_storage(s: &Situation<'_>, rails: &Rails) -> Plan {
    let [claim] = s.claims else {
        return report(format!(
            "no space left on device, and the pod mounts {} claims: cannot tell which one is full",
            s.claims.len()
        ));
    };
    let Some(current) = &claim.request else {
        return report(format!("claim {} has no storage request", claim.name));
    };
    let stored = s
        .stored_storage_fixes
        .iter()
        .find(|f| f.fix_type == FixType::Storage && f.resource == claim.name && f.claim.is_none());
    if let Some(stored) = stored.filter(|f| f.value <= *current) {
        // The claim already has the stored size. If the container has not failed since the fix
        // was recorded, this is the same incident: re-apply (a no-op), do not grow again.
        let fixed_after_failure = match (s.last_termination, stored.timestamp) {
            (Some(failed), Some(fixed)) => fixed >= failed,
            _ => true,
        };
        if fixed_after_failure {
            return Plan::RaiseStorage {
                fix: stored.clone(),
                claim: claim.name.clone(),
                expand: claim.expandable,
            };
        }
        if stored.count >= rails.max_storage_raises {
            return Plan::Alert {
                reason: format!(
                    "claim {} raised {} times (now {}) and still full; stopping",
                    claim.name, stored.count, stored.value
                ),
            };
        }
    }
    let wanted = current
        .bytes()
        .saturating_mul(u128::from(rails.storage_ratio_percent))
        .div_ceil(100)
        .div_ceil(GI)
        .saturating_mul(GI)
        .min(rails.storage_ceiling.bytes());
    if wanted <= current.bytes() {
        return Plan::Alert {
            reason: format!("claim {} is at the storage ceiling ({current})", claim.name),
        };
    }
    let fix = Fix {
        namespace: s.problem.namespace.clone(),
        resource: claim.name.clone(),
        fix_type: FixType::Storage,
        value: ByteQuantity::from_bytes(wanted),
        timestamp: Some(s.now),
        container: None,
        claim: None,
        reason: Some("no space left on device".into()),
        evidence: Some(s.diagnosis.evidence.clone()),
        previous: Some(current.to_string()),
        count: 1,
    };
    Plan::RaiseStorage {
        fix,
        claim: claim.name.clone(),
        expand: claim.expandable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heal::diagnose::Source;

    fn q(text: &str) -> ByteQuantity {
        ByteQuantity::parse(text).unwrap()
    }

    #[test]
    fn memory_rule_steps_rounds_and_caps() {
        let rails = Rails::default();
        // 512Mi: ×1.5 = 768Mi, +256Mi = 768Mi → 768Mi.
        assert_eq!(
            next_memory_limit(&q("512Mi"), &rails, None)
                .unwrap()
                .as_str(),
            "768Mi"
        );
        // 100Mi: +256Mi wins (356Mi), rounded up to 64Mi → 384Mi.
        assert_eq!(
            next_memory_limit(&q("100Mi"), &rails, None)
                .unwrap()
                .as_str(),
            "384Mi"
        );
        // 2Gi ×1.5 = 3Gi.
        assert_eq!(
            next_memory_limit(&q("2Gi"), &rails, None).unwrap().as_str(),
            "3Gi"
        );
        // 1000Mi ×1.5 = 1500Mi → rounded to 256Mi → 1536Mi.
        assert_eq!(
            next_memory_limit(&q("1000Mi"), &rails, None)
                .unwrap()
                .as_str(),
            "1536Mi"
        );
        // Capped by the ceiling, then by the LimitRange.
        assert_eq!(
            next_memory_limit(&q("7Gi"), &rails, None).unwrap().as_str(),
            "8Gi"
        );
        assert_eq!(
            next_memory_limit(&q("1Gi"), &rails, Some(&q("1280Mi")))
                .unwrap()
                .as_str(),
            "1280Mi"
        );
        assert!(next_memory_limit(&q("8Gi"), &rails, None).is_none());
        assert!(next_memory_limit(&q("1Gi"), &rails, Some(&q("1Gi"))).is_none());
    }

    fn oom_problem() -> Problem {
        Problem {
            namespace: "gitlab".into(),
            object_kind: "Pod",
            object_name: "web-7d9f8c6b5-x2x7q".into(),
            uid: "u1".into(),
            kind: ProblemKind::OomKilled {
                container: "app".into(),
                init: false,
                restart_count: 2,
            },
        }
    }

    fn diagnosis(cause: Cause) -> Diagnosis {
        Diagnosis {
            cause,
            evidence: "evidence".into(),
            source: Source::Status,
            endpoint: None,
            missing: None,
        }
    }

    fn web() -> Workload {
        Workload {
            kind: "Deployment".into(),
            namespace: "gitlab".into(),
            name: "web".into(),
        }
    }

    fn situation<'a>(
        problem: &'a Problem,
        diagnosis: &'a Diagnosis,
        workload: Option<&'a Workload>,
    ) -> Situation<'a> {
        Situation {
            problem,
            diagnosis,
            workload,
            container_limit: Some(q("512Mi")),
            limit_range_max: None,
            stored_fix: None,
            stored_storage_fixes: &[],
            last_termination: None,
            claims: &[],
            attempts: 0,
            now: "2026-11-28T12:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn oom_raises_memory_and_restarts_the_workload() {
        let (problem, diagnosis, workload) = (oom_problem(), diagnosis(Cause::OutOfMemory), web());
        let Plan::RaiseMemory { fix, roll_into } = plan(
            &situation(&problem, &diagnosis, Some(&workload)),
            &Rails::default(),
        ) else {
            panic!("expected a memory raise");
        };
        assert_eq!(
            (fix.namespace.as_str(), fix.resource.as_str()),
            ("gitlab", "web")
        );
        assert_eq!(fix.container.as_deref(), Some("app"));
        assert_eq!(fix.value.as_str(), "768Mi");
        assert_eq!(fix.previous.as_deref(), Some("512Mi"));
        assert_eq!(roll_into, Some(workload));
    }

    #[test]
    fn oom_of_a_bare_pod_or_without_limit_is_reported() {
        let (problem, diagnosis) = (oom_problem(), diagnosis(Cause::OutOfMemory));
        assert!(matches!(
            plan(&situation(&problem, &diagnosis, None), &Rails::default()),
            Plan::Report { .. }
        ));
        let workload = web();
        let mut s = situation(&problem, &diagnosis, Some(&workload));
        s.container_limit = None;
        assert!(
            matches!(plan(&s, &Rails::default()), Plan::Report { reason } if reason.contains("no memory limit"))
        );
    }

    #[test]
    fn runaway_raises_stop_with_an_alert() {
        let (problem, diagnosis, workload) = (oom_problem(), diagnosis(Cause::OutOfMemory), web());
        let mut stored = match plan(
            &situation(&problem, &diagnosis, Some(&workload)),
            &Rails::default(),
        ) {
            Plan::RaiseMemory { fix, .. } => fix,
            other => panic!("{other:?}"),
        };
        stored.count = 3;
        let mut s = situation(&problem, &diagnosis, Some(&workload));
        s.container_limit = Some(stored.value.clone());
        s.stored_fix = Some(&stored);
        assert!(
            matches!(plan(&s, &Rails::default()), Plan::Alert { reason } if reason.contains("3 times"))
        );
        // An old pod still running with less than the stored fix is not a failed raise.
        s.container_limit = Some(q("512Mi"));
        assert!(matches!(
            plan(&s, &Rails::default()),
            Plan::RaiseMemory { .. }
        ));
    }

    #[test]
    fn a_cronjob_gets_the_fix_in_its_job_template_a_job_only_in_the_store() {
        let (problem, diagnosis) = (oom_problem(), diagnosis(Cause::OutOfMemory));
        let cronjob = Workload {
            kind: "CronJob".into(),
            namespace: "gitlab".into(),
            name: "backup".into(),
        };
        let Plan::RaiseMemory { fix, roll_into } = plan(
            &situation(&problem, &diagnosis, Some(&cronjob)),
            &Rails::default(),
        ) else {
            panic!("expected a memory raise");
        };
        assert_eq!(fix.resource, "backup", "recorded under the CronJob");
        assert_eq!(roll_into, Some(cronjob));
        let job = Workload {
            kind: "Job".into(),
            namespace: "gitlab".into(),
            name: "migrate".into(),
        };
        assert!(matches!(
            plan(
                &situation(&problem, &diagnosis, Some(&job)),
                &Rails::default()
            ),
            Plan::RaiseMemory {
                roll_into: None,
                ..
            }
        ));
    }

    #[test]
    fn the_rails_apply_to_every_target() {
        let labels = |ignored: bool| -> BTreeMap<String, String> {
            if ignored {
                [(OPT_OUT_LABEL.to_string(), "true".to_string())].into()
            } else {
                BTreeMap::new()
            }
        };
        let rails = Rails {
            protected_namespaces: vec!["kube-system".into(), "selfheal".into()],
            watch_namespaces: vec!["shop".into(), "kube-system".into(), "selfheal".into()],
            ..Rails::default()
        };
        // (namespace, object ignored, namespace ignored, ready replicas) → the rail, if any.
        type Row = (&'static str, bool, bool, Option<u32>, Option<Rail>);
        let table: [Row; 8] = [
            ("shop", false, false, None, None),
            ("shop", false, false, Some(0), None),
            (
                "kube-system",
                false,
                false,
                Some(0),
                Some(Rail::ProtectedNamespace),
            ),
            (
                "selfheal",
                false,
                false,
                None,
                Some(Rail::ProtectedNamespace),
            ),
            (
                "elsewhere",
                false,
                false,
                None,
                Some(Rail::UnwatchedNamespace),
            ),
            ("shop", true, false, None, Some(Rail::IgnoredObject)),
            ("shop", false, true, None, Some(Rail::IgnoredNamespace)),
            ("shop", false, false, Some(1), Some(Rail::DependencyReady)),
        ];
        for (namespace, object_ignored, namespace_ignored, ready, rail) in table {
            let (object_labels, namespace_labels) =
                (labels(object_ignored), labels(namespace_ignored));
            let facts = TargetFacts {
                kind: "Deployment",
                namespace,
                name: "dns",
                labels: &object_labels,
                namespace_labels: &namespace_labels,
                ready_replicas: ready,
            };
            let verdict = admit_target(&facts, &rails);
            assert_eq!(
                verdict.as_ref().err().map(|r| r.rail),
                rail,
                "{namespace} {verdict:?}"
            );
            if let Err(refusal) = verdict {
                assert!(refusal.reason.contains("Deployment"), "{}", refusal.reason);
                assert!(refusal.reason.contains(namespace), "{}", refusal.reason);
            }
        }
        // No watch list: every namespace but the protected ones.
        let open = Rails::default();
        let empty = BTreeMap::new();
        let facts = TargetFacts {
            kind: "Pod",
            namespace: "anywhere",
            name: "p",
            labels: &empty,
            namespace_labels: &empty,
            ready_replicas: None,
        };
        assert_eq!(admit_target(&facts, &open), Ok(()));
        let system = TargetFacts {
            namespace: "kube-system",
            ..facts
        };
        assert_eq!(
            admit_target(&system, &open).map_err(|r| r.rail),
            Err(Rail::ProtectedNamespace),
            "kube-system is protected by default"
        );
    }

    #[test]
    fn image_pull_retries_then_alerts_when_the_image_is_missing() {
        let problem = Problem {
            kind: ProblemKind::ImagePull {
                container: "app".into(),
                reason: "ImagePullBackOff".into(),
                message: None,
            },
            ..oom_problem()
        };
        let workload = web();
        let missing = diagnosis(Cause::ImageNotFound);
        let mut s = situation(&problem, &missing, Some(&workload));
        assert_eq!(plan(&s, &Rails::default()), Plan::DeletePod);
        s.attempts = 2;
        assert!(matches!(plan(&s, &Rails::default()), Plan::Alert { .. }));
        let timeout = diagnosis(Cause::RegistryTimeout);
        let mut s = situation(&problem, &timeout, Some(&workload));
        s.attempts = 5;
        assert_eq!(
            plan(&s, &Rails::default()),
            Plan::DeletePod,
            "transient: keep retrying (rate-limited)"
        );
        assert!(matches!(
            plan(&situation(&problem, &timeout, None), &Rails::default()),
            Plan::Report { .. }
        ));
    }

    #[test]
    fn crashloop_causes_choose_the_action() {
        let problem = Problem {
            kind: ProblemKind::CrashLoopBackOff {
                container: "app".into(),
                init: false,
                restart_count: 4,
                exit_code: Some(1),
                message: None,
            },
            ..oom_problem()
        };
        let workload = web();
        let refused = Diagnosis {
            endpoint: Some(("db".into(), 5432)),
            ..diagnosis(Cause::ConnectionRefused)
        };
        assert_eq!(
            plan(
                &situation(&problem, &refused, Some(&workload)),
                &Rails::default()
            ),
            Plan::RestartDependency {
                host: "db".into(),
                port: 5432
            }
        );
        assert_eq!(
            plan(
                &situation(&problem, &diagnosis(Cause::Unknown), Some(&workload)),
                &Rails::default()
            ),
            Plan::EvictPod
        );
        assert!(matches!(
            plan(
                &situation(&problem, &diagnosis(Cause::MissingSecret), Some(&workload)),
                &Rails::default()
            ),
            Plan::Report { .. }
        ));

        let claims = [ClaimInfo {
            name: "data-db-0".into(),
            request: Some(q("10Gi")),
            expandable: true,
        }];
        let full = diagnosis(Cause::NoSpaceLeft);
        let mut s = situation(&problem, &full, Some(&workload));
        s.claims = &claims;
        let Plan::RaiseStorage { fix, claim, expand } = plan(&s, &Rails::default()) else {
            panic!()
        };
        assert_eq!(
            (fix.value.as_str(), claim.as_str(), expand),
            ("15Gi", "data-db-0", true)
        );
    }

    #[test]
    fn a_full_claim_grows_once_per_incident_then_stops() {
        let problem = Problem {
            kind: ProblemKind::CrashLoopBackOff {
                container: "db".into(),
                init: false,
                restart_count: 4,
                exit_code: Some(1),
                message: None,
            },
            ..oom_problem()
        };
        let workload = web();
        let full = diagnosis(Cause::NoSpaceLeft);
        let claims = [ClaimInfo {
            name: "data".into(),
            request: Some(q("15Gi")),
            expandable: true,
        }];
        let mut stored = match plan(
            &Situation {
                claims: &[ClaimInfo {
                    request: Some(q("10Gi")),
                    ..claims[0].clone()
                }],
                ..situation(&problem, &full, Some(&workload))
            },
            &Rails::default(),
        ) {
            Plan::RaiseStorage { fix, .. } => fix,
            other => panic!("{other:?}"),
        };
        assert_eq!(stored.value.as_str(), "15Gi");
        stored.timestamp = Some("2026-11-28T12:00:00Z".parse().unwrap());
        let fixes = [stored.clone()];
        let mut s = situation(&problem, &full, Some(&workload));
        s.claims = &claims;
        s.stored_storage_fixes = &fixes;
        // The failure predates the fix: same incident, re-apply the stored value.
        s.last_termination = Some("2026-11-28T11:59:00Z".parse().unwrap());
        assert!(
            matches!(plan(&s, &Rails::default()), Plan::RaiseStorage { fix, .. } if fix == stored)
        );
        // A new failure after the fix: grow again.
        s.last_termination = Some("2026-11-28T13:00:00Z".parse().unwrap());
        assert!(
            matches!(plan(&s, &Rails::default()), Plan::RaiseStorage { fix, .. } if fix.value.as_str() == "23Gi")
        );
        // ...until the cap.
        let capped = [Fix {
            count: 3,
            ..stored.clone()
        }];
        s.stored_storage_fixes = &capped;
        assert!(matches!(plan(&s, &Rails::default()), Plan::Alert { .. }));
    }
    /// The detections of issue 10 are reported, never acted on, whatever their cause: none of
    /// the catalogue's fixes clearly applies.
    #[test]
    fn new_detections_are_reported_not_acted_on() {
        let kinds = [
            ProblemKind::NotStarted {
                container: "app".into(),
                init: false,
                reason: crate::heal::detect::StartFailure::RunContainerError,
                message: None,
            },
            ProblemKind::NotReady {
                container: "app".into(),
                running_seconds: Some(60),
            },
            ProblemKind::ContainerFailed {
                container: "app".into(),
                init: false,
                exit_code: 1,
                reason: Some("Error".into()),
                message: None,
            },
            ProblemKind::PodFailed {
                reason: "Evicted".into(),
                message: None,
            },
            ProblemKind::SchedulingGated {
                gates: vec!["kueue.x-k8s.io/admission".into()],
                message: None,
                seconds: Some(600),
            },
        ];
        let workload = web();
        for kind in kinds {
            let problem = Problem {
                kind,
                ..oom_problem()
            };
            // Even with the causes that make a crash loop act.
            for cause in [
                Cause::OutOfMemory,
                Cause::NoSpaceLeft,
                Cause::ConnectionRefused,
                Cause::Unknown,
            ] {
                let diagnosis = Diagnosis {
                    endpoint: Some(("db".into(), 5432)),
                    ..diagnosis(cause)
                };
                let decided = plan(
                    &situation(&problem, &diagnosis, Some(&workload)),
                    &Rails::default(),
                );
                assert!(
                    matches!(decided, Plan::Report { .. }),
                    "{} with {cause:?}: {decided:?}",
                    problem.kind.name()
                );
            }
        }
        // A crash loop whose container's command is missing, or a key of its Secret: restarting
        // it (evicting the pod) meets the same error.
        let crashloop = Problem {
            kind: ProblemKind::CrashLoopBackOff {
                container: "app".into(),
                init: false,
                restart_count: 4,
                exit_code: Some(128),
                message: None,
            },
            ..oom_problem()
        };
        for cause in [
            Cause::CommandNotFound,
            Cause::MissingSecretKey,
            Cause::MissingConfigMapKey,
        ] {
            let diagnosis = diagnosis(cause);
            assert!(matches!(
                plan(
                    &situation(&crashloop, &diagnosis, Some(&workload)),
                    &Rails::default()
                ),
                Plan::Report { .. }
            ));
        }
    }
}
