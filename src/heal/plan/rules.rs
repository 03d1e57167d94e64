//! The catalogue's rules: from a problem, its diagnosis and what is known of its pod and the
//! stored fixes, what to do (`Intent`) — before the rails of the object the action would change
//! (`plan::admit`). Pure.

use jiff::Timestamp;
use serde::Serialize;

use super::Rails;
use crate::certs::check::CertIssue;
use crate::core::fix::{Fix, FixType};
use crate::core::owners::Workload;
use crate::core::quantity::ByteQuantity;
use crate::heal::detect::{Problem, ProblemKind};
use crate::heal::diagnose::{Cause, Diagnosis};
use crate::heal::facts::ClaimInfo;

const MI: u128 = 1 << 20;
const GI: u128 = 1 << 30;

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

/// What the catalogue wants done about a problem, before the rails of its target.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum Intent {
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

impl Intent {
    pub fn name(&self) -> &'static str {
        match self {
            Intent::RaiseMemory { .. } => "RaiseMemory",
            Intent::RaiseStorage { .. } => "RaiseStorage",
            Intent::EvictPod => "EvictPod",
            Intent::DeletePod => "DeletePod",
            Intent::RestartDependency { .. } => "RestartDependency",
            Intent::RenewCertificate { .. } => "RenewCertificate",
            Intent::Report { .. } => "Report",
            Intent::Alert { .. } => "Alert",
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

fn report(reason: impl Into<String>) -> Intent {
    Intent::Report {
        reason: reason.into(),
    }
}

/// What the catalogue wants done about one problem. Only the catalogue's fixes act; every other problem is
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
pub fn intent(s: &Situation<'_>, rails: &Rails) -> Intent {
    let cause = s.diagnosis.cause;
    match &s.problem.kind {
        ProblemKind::OomKilled { container, .. } => plan_memory(s, container, rails),
        ProblemKind::CrashLoopBackOff { container, .. } => match cause {
            Cause::OutOfMemory => plan_memory(s, container, rails),
            Cause::NoSpaceLeft => plan_storage(s, rails),
            Cause::ConnectionRefused => match &s.diagnosis.endpoint {
                Some((host, port)) => Intent::RestartDependency {
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
            _ => Intent::EvictPod,
        },
        ProblemKind::ImagePull { .. } => {
            if s.workload.is_none() {
                return report("bare pod: deleting it would not bring it back");
            }
            let permanent = matches!(cause, Cause::ImageNotFound | Cause::ImageUnauthorized);
            if permanent && s.attempts >= rails.max_permanent_pull_retries {
                return Intent::Alert {
                    reason: format!(
                        "{} after {} retries: fix the image reference or the pull secret",
                        cause.as_str(),
                        s.attempts
                    ),
                };
            }
            Intent::DeletePod
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
        ProblemKind::ClaimLost => Intent::Alert {
            reason: "the claim lost its volume: data may be gone, restore from backup".into(),
        },
        ProblemKind::DependencyDown { .. } => match &s.diagnosis.endpoint {
            Some((host, port)) => Intent::RestartDependency {
                host: host.clone(),
                port: *port,
            },
            None => report("dependency probe failed, but no endpoint is known"),
        },
        ProblemKind::NoReadyEndpoints { .. } => report(
            "no ready endpoints: the workload behind is restarted when a caller is refused, not before",
        ),
        ProblemKind::Certificate { issue, managed_by } => match (managed_by, issue) {
            (Some(certificate), _) if s.attempts >= rails.max_certificate_renewals => {
                Intent::Alert {
                    reason: format!(
                        "renewal of Certificate {certificate} triggered {} times and still {}: renewal stuck",
                        s.attempts,
                        issue.describe()
                    ),
                }
            }
            (Some(certificate), _) => Intent::RenewCertificate {
                certificate: certificate.clone(),
            },
            (None, CertIssue::ExpiringSoon { .. }) => report(format!(
                "{}; not managed by cert-manager: renew it by hand",
                issue.describe()
            )),
            (None, _) => Intent::Alert {
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
pub(super) fn carries_fix_in_template(workload: &Workload) -> bool {
    workload.restartable() || workload.kind == "CronJob"
}

fn plan_memory(s: &Situation<'_>, container: &str, rails: &Rails) -> Intent {
    let Some(workload) = s.workload else {
        return report("bare pod: no workload carries a fix across restarts; reported only");
    };
    let Some(current) = &s.container_limit else {
        return report(format!(
            "container {container} has no memory limit: the OOM kill came from node memory pressure"
        ));
    };
    let Some(next) = next_memory_limit(current, rails, s.limit_range_max.as_ref()) else {
        return Intent::Alert {
            reason: format!(
                "container {container} is at the memory ceiling ({current}); not raising further"
            ),
        };
    };
    if let Some(stored) = s.stored_fix {
        // The pod already runs with the stored value (or more) and still ran out of memory.
        let raised_without_recovery = *current >= stored.value;
        if raised_without_recovery && stored.count >= rails.max_memory_raises {
            return Intent::Alert {
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
    Intent::RaiseMemory {
        fix,
        roll_into: carries_fix_in_template(workload).then(|| workload.clone()),
    }
}

fn plan_storage(s: &Situation<'_>, rails: &Rails) -> Intent {
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
            return Intent::RaiseStorage {
                fix: stored.clone(),
                claim: claim.name.clone(),
                expand: claim.expandable,
            };
        }
        if stored.count >= rails.max_storage_raises {
            return Intent::Alert {
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
        return Intent::Alert {
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
    Intent::RaiseStorage {
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
        let Intent::RaiseMemory { fix, roll_into } = intent(
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
            intent(&situation(&problem, &diagnosis, None), &Rails::default()),
            Intent::Report { .. }
        ));
        let workload = web();
        let mut s = situation(&problem, &diagnosis, Some(&workload));
        s.container_limit = None;
        assert!(
            matches!(intent(&s, &Rails::default()), Intent::Report { reason } if reason.contains("no memory limit"))
        );
    }

    #[test]
    fn runaway_raises_stop_with_an_alert() {
        let (problem, diagnosis, workload) = (oom_problem(), diagnosis(Cause::OutOfMemory), web());
        let mut stored = match intent(
            &situation(&problem, &diagnosis, Some(&workload)),
            &Rails::default(),
        ) {
            Intent::RaiseMemory { fix, .. } => fix,
            other => panic!("{other:?}"),
        };
        stored.count = 3;
        let mut s = situation(&problem, &diagnosis, Some(&workload));
        s.container_limit = Some(stored.value.clone());
        s.stored_fix = Some(&stored);
        assert!(
            matches!(intent(&s, &Rails::default()), Intent::Alert { reason } if reason.contains("3 times"))
        );
        // An old pod still running with less than the stored fix is not a failed raise.
        s.container_limit = Some(q("512Mi"));
        assert!(matches!(
            intent(&s, &Rails::default()),
            Intent::RaiseMemory { .. }
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
        let Intent::RaiseMemory { fix, roll_into } = intent(
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
            intent(
                &situation(&problem, &diagnosis, Some(&job)),
                &Rails::default()
            ),
            Intent::RaiseMemory {
                roll_into: None,
                ..
            }
        ));
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
        assert_eq!(intent(&s, &Rails::default()), Intent::DeletePod);
        s.attempts = 2;
        assert!(matches!(
            intent(&s, &Rails::default()),
            Intent::Alert { .. }
        ));
        let timeout = diagnosis(Cause::RegistryTimeout);
        let mut s = situation(&problem, &timeout, Some(&workload));
        s.attempts = 5;
        assert_eq!(
            intent(&s, &Rails::default()),
            Intent::DeletePod,
            "transient: keep retrying (rate-limited)"
        );
        assert!(matches!(
            intent(&situation(&problem, &timeout, None), &Rails::default()),
            Intent::Report { .. }
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
            intent(
                &situation(&problem, &refused, Some(&workload)),
                &Rails::default()
            ),
            Intent::RestartDependency {
                host: "db".into(),
                port: 5432
            }
        );
        assert_eq!(
            intent(
                &situation(&problem, &diagnosis(Cause::Unknown), Some(&workload)),
                &Rails::default()
            ),
            Intent::EvictPod
        );
        assert!(matches!(
            intent(
                &situation(&problem, &diagnosis(Cause::MissingSecret), Some(&workload)),
                &Rails::default()
            ),
            Intent::Report { .. }
        ));

        let claims = [ClaimInfo {
            name: "data-db-0".into(),
            request: Some(q("10Gi")),
            expandable: true,
            ..ClaimInfo::default()
        }];
        let full = diagnosis(Cause::NoSpaceLeft);
        let mut s = situation(&problem, &full, Some(&workload));
        s.claims = &claims;
        let Intent::RaiseStorage { fix, claim, expand } = intent(&s, &Rails::default()) else {
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
            ..ClaimInfo::default()
        }];
        let mut stored = match intent(
            &Situation {
                claims: &[ClaimInfo {
                    request: Some(q("10Gi")),
                    ..claims[0].clone()
                }],
                ..situation(&problem, &full, Some(&workload))
            },
            &Rails::default(),
        ) {
            Intent::RaiseStorage { fix, .. } => fix,
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
            matches!(intent(&s, &Rails::default()), Intent::RaiseStorage { fix, .. } if fix == stored)
        );
        // A new failure after the fix: grow again.
        s.last_termination = Some("2026-11-28T13:00:00Z".parse().unwrap());
        assert!(
            matches!(intent(&s, &Rails::default()), Intent::RaiseStorage { fix, .. } if fix.value.as_str() == "23Gi")
        );
        // ...until the cap.
        let capped = [Fix {
            count: 3,
            ..stored.clone()
        }];
        s.stored_storage_fixes = &capped;
        assert!(matches!(
            intent(&s, &Rails::default()),
            Intent::Alert { .. }
        ));
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
                let decided = intent(
                    &situation(&problem, &diagnosis, Some(&workload)),
                    &Rails::default(),
                );
                assert!(
                    matches!(decided, Intent::Report { .. }),
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
                intent(
                    &situation(&crashloop, &diagnosis, Some(&workload)),
                    &Rails::default()
                ),
                Intent::Report { .. }
            ));
        }
    }
}
