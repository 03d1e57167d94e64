//! What each action the rules want changes, resolved from the facts read: the workload a fix
//! goes into (and the room it has), the claim, the pod, the dependency behind a Service, the
//! Certificate. Pure.

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use super::admit::{Changed, Wanted, attempts_key, notice, owner_key};
use super::{Action, ActionKind, Report, Roll, TargetRef, workload_group};
use crate::core::fix::Fix;
use crate::core::headroom::Held;
use crate::core::owners::{self, Workload};
use crate::core::raise::{self, MemoryCaps};
use crate::core::targeting::IGNORE_LABEL;
use crate::core::workload::WorkloadKind;
use crate::heal::detect::ProblemKind;
use crate::heal::facts::{CertificateFacts, DependencyFacts, Facts, TargetFacts};
use crate::heal::inspect::Finding;
use crate::heal::ratelimit::ActionKey;

pub(super) fn raise_memory(
    finding: &Finding,
    facts: &Facts,
    fix: Fix,
    roll_into: Option<Workload>,
) -> Result<Wanted, Report> {
    let what = format!(
        "memory of {}/{} container {} to {}",
        fix.namespace,
        fix.resource,
        fix.target().unwrap_or("*"),
        fix.value
    );
    let read = match (&roll_into, &facts.target) {
        (None, _) => None,
        (Some(_), TargetFacts::Workload(Some(read))) => Some(read),
        (Some(workload), TargetFacts::Workload(None)) => {
            return Err(notice(format!(
                "{workload} no longer exists; nothing to raise"
            )));
        }
        (Some(workload), _) => {
            return Err(notice(format!("{workload} was not read; nothing to raise")));
        }
    };
    // The rails look at the workload that carries the fix: as read when its template changes
    // now; otherwise (a Job, a ReplicaSet) the pod's labels stand for it, and the webhook checks
    // the object's own labels when it applies the fix.
    let (kind, labels) = match read {
        Some(read) => (read.workload.kind.as_str(), label_value(&read.object)),
        None => (
            finding.workload.as_ref().map_or("Pod", |w| w.kind.as_str()),
            finding.labels.get(IGNORE_LABEL).map(String::as_str),
        ),
    };
    let target = Changed::new(kind, &fix.namespace, &fix.resource, labels);
    let roll = read.map(|read| {
        let kind = workload_kind(&read.workload);
        Roll {
            caps: memory_caps(facts, &read.workload.namespace, kind, &read.object),
            restart: read.workload.restartable(),
            target: read.clone(),
        }
    });
    let held = roll.as_ref().and_then(|roll| held(roll, &fix));
    let then = roll
        .as_ref()
        .map(|roll| format!(", then roll it into {}", roll.target.workload))
        .unwrap_or_default();
    Ok(Wanted {
        related: read.map(TargetRef::workload),
        target,
        ready_replicas: None,
        held,
        under_way: None,
        backing_off: String::new(),
        would: format!("would record {what}{then}"),
        action: Action::RaiseMemory { fix, roll },
    })
}

/// The `selfheal.io/ignore` label of an object read as JSON.
fn label_value(object: &Value) -> Option<&str> {
    object["metadata"]["labels"][IGNORE_LABEL].as_str()
}

fn workload_kind(workload: &Workload) -> Option<WorkloadKind> {
    WorkloadKind::from_group_kind(workload_group(&workload.kind)?, &workload.kind)
}

/// The caps a raise of `object` obeys in `namespace`: its LimitRanges, and the room its
/// ResourceQuotas and the nodes leave for the pods it runs at once, its running pods credited
/// (the object as read is the live one).
fn memory_caps(
    facts: &Facts,
    namespace: &str,
    kind: Option<WorkloadKind>,
    object: &Value,
) -> MemoryCaps {
    match kind {
        Some(kind) => facts
            .cluster
            .memory_caps(namespace, kind, object, Some(object)),
        None => MemoryCaps {
            max: facts.cluster.memory_max.get(namespace).cloned(),
            ratio: facts.cluster.memory_ratio.get(namespace).copied(),
            room: None,
        },
    }
}

/// What holds a raise entirely (nothing of it fits); a partial raise goes ahead.
fn held(roll: &Roll, fix: &Fix) -> Option<Held> {
    let kind = workload_kind(&roll.target.workload)?;
    let raised = raise::raise_workload(kind, &roll.target.object, fix, &roll.caps).ok()?;
    if raised.raised.applied.is_empty() {
        raised.raised.held.into_iter().next()
    } else {
        None
    }
}

pub(super) fn raise_storage(
    finding: &Finding,
    facts: &Facts,
    fix: Fix,
    claim: &str,
    expand: bool,
) -> Result<Wanted, Report> {
    let namespace = &finding.problem.namespace;
    let Some(info) = facts.claims.iter().find(|c| c.name == claim && c.exists) else {
        return Err(notice(format!(
            "claim {namespace}/{claim} no longer exists"
        )));
    };
    let reference = TargetRef::new("v1", "PersistentVolumeClaim", namespace, claim)
        .with_uid(info.uid.as_deref());
    let target = Changed::new(
        "PersistentVolumeClaim",
        namespace,
        &info.name,
        info.labels.get(IGNORE_LABEL).map(String::as_str),
    );
    Ok(Wanted {
        would: format!("would record storage {} for claim {claim}", fix.value),
        action: Action::RaiseStorage {
            fix,
            claim: reference.clone(),
            current: info.request.clone(),
            expand,
        },
        related: Some(reference),
        target,
        ready_replicas: None,
        held: None,
        under_way: None,
        backing_off: String::new(),
    })
}

/// An eviction (`EvictPod`) or a deletion to retry an image pull (`DeletePod`, its `attempt`).
pub(super) fn restart_pod(finding: &Finding, kind: ActionKind, attempt: u32) -> Wanted {
    let problem = &finding.problem;
    let pod = TargetRef::new("v1", "Pod", &problem.namespace, &problem.object_name)
        .with_uid(Some(&problem.uid));
    let target = Changed::new(
        "Pod",
        &problem.namespace,
        &problem.object_name,
        finding.labels.get(IGNORE_LABEL).map(String::as_str),
    );
    let (action, backing_off, would) = if kind == ActionKind::EvictPod {
        let slot = ActionKey::Evict {
            namespace: problem.namespace.clone(),
            owner: owner_key(finding),
        };
        (
            Action::EvictPod { pod, slot },
            "eviction".to_string(),
            format!("would evict pod {}", problem.object_name),
        )
    } else {
        (
            Action::DeletePod {
                pod,
                slot: attempts_key(finding),
                workload: finding.workload.clone(),
                attempt,
            },
            "image pull retry".to_string(),
            format!(
                "would delete pod {} to retry the image pull",
                problem.object_name
            ),
        )
    };
    Wanted {
        action,
        target,
        related: None,
        ready_replicas: None,
        held: None,
        under_way: None,
        backing_off,
        would,
    }
}

pub(super) fn restart_dependency(
    finding: &Finding,
    facts: &Facts,
    host: &str,
    port: u16,
) -> Result<Wanted, Report> {
    let problem = &finding.problem;
    let report = |reason: String| Err(notice(reason));
    let (dependency, pods, read) = match &facts.target {
        TargetFacts::Dependency(DependencyFacts::Found {
            dependency,
            pods,
            object,
        }) => (dependency, pods, object),
        TargetFacts::Dependency(DependencyFacts::NoService { namespace, service }) => {
            return report(format!(
                "no Service {namespace}/{service} behind {host}:{port}"
            ));
        }
        TargetFacts::Dependency(DependencyFacts::NoSelector { namespace, service }) => {
            return report(format!("Service {namespace}/{service} has no selector"));
        }
        TargetFacts::Dependency(DependencyFacts::NoPods { namespace, service }) => {
            return report(format!("Service {namespace}/{service} selects no pods"));
        }
        TargetFacts::Dependency(DependencyFacts::Uncontrolled { pod }) => {
            return report(format!("dependency pod {pod} has no controller"));
        }
        TargetFacts::Dependency(DependencyFacts::NotAService) => {
            return report(format!(
                "{host}:{port} is not a Service name; not restarting anything"
            ));
        }
        _ => return report(format!("what is behind {host}:{port} was not read")),
    };
    if finding.workload.as_ref() == Some(dependency) {
        return report(
            "the refused endpoint is the caller itself; never restarting the caller".into(),
        );
    }
    if !dependency.restartable() {
        return report(format!("dependency {dependency} cannot be restarted"));
    }
    let Some(read) = read else {
        return report(format!("dependency {dependency} no longer exists"));
    };
    let caller = finding
        .workload
        .as_ref()
        .map_or(problem.object_name.clone(), |w| w.name.clone());
    // Names this occurrence, so the restart happens once per occurrence (idempotent).
    let occurrence = match &problem.kind {
        ProblemKind::CrashLoopBackOff { restart_count, .. } => {
            format!("restart {restart_count}")
        }
        ProblemKind::DependencyDown { since, .. } => format!("down since {since}"),
        _ => String::new(),
    };
    let target = Changed::new(
        &dependency.kind,
        &dependency.namespace,
        &dependency.name,
        label_value(&read.object),
    );
    Ok(Wanted {
        ready_replicas: Some(ready_replicas(dependency, pods, &read.object)),
        related: Some(TargetRef::workload(read)),
        target,
        held: None,
        under_way: None,
        backing_off: format!("restart of {dependency}"),
        would: format!("would restart {dependency} (not ready, refusing {host}:{port})"),
        action: Action::RestartDependency {
            dependency: read.clone(),
            restart: format!("refused {host}:{port} to {caller} ({occurrence})"),
            slot: ActionKey::Restart(dependency.clone()),
            endpoint: format!("{host}:{port}"),
            caller,
        },
    })
}

/// Ready replicas of `dependency`: its ready pods among those the Service selects, or what its
/// status says, whichever is more (a rollout's old ready pods count).
fn ready_replicas(dependency: &Workload, backing: &[Pod], object: &Value) -> u32 {
    let ready_pods = backing
        .iter()
        .filter(|p| pod_ready(p))
        .filter(|p| owners::owning_workload(p, |_, _| None).as_ref() == Some(dependency))
        .count();
    let from_status = object["status"]["readyReplicas"].as_u64().unwrap_or(0);
    u32::try_from(ready_pods)
        .unwrap_or(u32::MAX)
        .max(u32::try_from(from_status).unwrap_or(u32::MAX))
}

/// Whether a pod's `Ready` condition is true.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

pub(super) fn renew_certificate(
    finding: &Finding,
    facts: &Facts,
    certificate: &str,
) -> Result<Wanted, Report> {
    let namespace = &finding.problem.namespace;
    let object = match &facts.target {
        TargetFacts::Certificate(CertificateFacts::Found(object)) => object,
        TargetFacts::Certificate(CertificateFacts::NoApi) => {
            return Err(notice(
                "cert-manager is not installed (no certificates.cert-manager.io API)",
            ));
        }
        _ => {
            return Err(notice(format!(
                "Certificate {namespace}/{certificate} named by the Secret does not exist"
            )));
        }
    };
    let reference = TargetRef::new("cert-manager.io/v1", "Certificate", namespace, certificate)
        .with_uid(object["metadata"]["uid"].as_str());
    let issuing = object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Issuing" && c["status"] == "True");
    let under_way = issuing.map(|issuing| {
        let since = issuing["lastTransitionTime"].as_str().unwrap_or("?");
        format!("Certificate {certificate} is already being issued (since {since})")
    });
    let target = Changed::new("Certificate", namespace, certificate, label_value(object));
    Ok(Wanted {
        action: Action::RenewCertificate {
            certificate: reference.clone(),
            object: object.clone(),
            slot: attempts_key(finding),
        },
        related: Some(reference),
        target,
        ready_replicas: None,
        held: None,
        under_way,
        backing_off: format!("renewal of {certificate}"),
        would: format!("would trigger re-issuance of Certificate {namespace}/{certificate}"),
    })
}
