//! From what the catalogue wants ([`Intent`]) to a [`Decision`]: the object the action would
//! change, as read, and the rails it must pass. Pure.

use super::rules::{Intent, Situation, carries_fix_in_template, intent};
use super::targets::{
    raise_memory, raise_storage, renew_certificate, restart_dependency, restart_pod,
};
use super::{
    Action, ActionKind, Decision, Deferral, Rail, Rails, Refusal, Report, ReportLevel, TargetRef,
};
use crate::core::fix::Fix;
use crate::core::headroom::Held;
use crate::core::owners::Workload;
use crate::core::targeting::{IGNORE_LABEL, NamespaceLabels, Target, ignored};
use crate::heal::detect::ProblemKind;
use crate::heal::diagnose::Cause;
use crate::heal::facts::{Facts, stored_memory_fix};
use crate::heal::inspect::Finding;
use crate::heal::ratelimit::{ActionKey, History};

/// The object a decision about a finding reads before `plan` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reads {
    Nothing,
    /// The workload a memory fix is put into.
    Workload(Workload),
    /// The Service behind `host` (in the problem's namespace unless the name says another),
    /// the pods it selects and the workload behind them.
    Dependency {
        host: String,
    },
    /// The cert-manager Certificate of that name in the problem's namespace.
    Certificate(String),
    /// The claims the pod mounts and which StorageClasses allow expansion.
    Claims,
}

/// What a decision about `finding` will read: the target of the action its problem and cause
/// call for (`rules::intent` dispatches the same way).
pub fn reads(finding: &Finding) -> Reads {
    let workload = || {
        finding
            .workload
            .clone()
            .filter(carries_fix_in_template)
            .map_or(Reads::Nothing, Reads::Workload)
    };
    let endpoint = || {
        finding
            .diagnosis
            .endpoint
            .as_ref()
            .map_or(Reads::Nothing, |(host, _)| Reads::Dependency {
                host: host.clone(),
            })
    };
    match &finding.problem.kind {
        ProblemKind::OomKilled { .. } => workload(),
        ProblemKind::CrashLoopBackOff { .. } => match finding.diagnosis.cause {
            Cause::OutOfMemory => workload(),
            Cause::NoSpaceLeft => Reads::Claims,
            Cause::ConnectionRefused => endpoint(),
            _ => Reads::Nothing,
        },
        ProblemKind::DependencyDown { .. } => endpoint(),
        ProblemKind::Certificate {
            managed_by: Some(certificate),
            ..
        } => Reads::Certificate(certificate.clone()),
        _ => Reads::Nothing,
    }
}

/// `db`, `db.ns`, `db.ns.svc`, `db.ns.svc.cluster.local` → (service, namespace). IPs → None.
pub fn service_of_host(host: &str, default_namespace: &str) -> Option<(String, String)> {
    if host.parse::<std::net::IpAddr>().is_ok() || host.is_empty() {
        return None;
    }
    let mut labels = host.split('.');
    let service = labels.next()?.to_string();
    let namespace = labels
        .next()
        .filter(|ns| *ns != "svc")
        .unwrap_or(default_namespace)
        .to_string();
    Some((service, namespace))
}

/// The key under which repeated actions for one finding are counted: certificate renewals per
/// Secret, image-pull retries per workload.
pub fn attempts_key(finding: &Finding) -> ActionKey {
    let problem = &finding.problem;
    if let ProblemKind::Certificate { .. } = problem.kind {
        return ActionKey::Renew {
            namespace: problem.namespace.clone(),
            secret: problem.object_name.clone(),
        };
    }
    ActionKey::PullRetry {
        namespace: problem.namespace.clone(),
        owner: owner_key(finding),
    }
}

/// The workload a finding's pod answers to, or the pod itself.
pub(super) fn owner_key(finding: &Finding) -> String {
    finding
        .workload
        .as_ref()
        .map_or_else(|| finding.problem.object_name.clone(), ToString::to_string)
}

/// The object an action changes, as targeting sees it.
pub(super) struct Changed {
    kind: String,
    namespace: String,
    name: String,
    /// Its `selfheal.io/ignore` label.
    ignore_label: Option<String>,
}

impl Changed {
    pub(super) fn new(kind: &str, namespace: &str, name: &str, ignore_label: Option<&str>) -> Self {
        Self {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
            ignore_label: ignore_label.map(str::to_string),
        }
    }
}

/// An action the rules want, with what its rails look at.
pub(super) struct Wanted {
    pub(super) action: Action,
    /// The object it changes.
    pub(super) target: Changed,
    /// That object, for the Event of a refusal (`None`: the problem's own object).
    pub(super) related: Option<TargetRef>,
    /// A dependency restart: how many replicas are ready.
    pub(super) ready_replicas: Option<u32>,
    /// What held a raise entirely (a quota, the nodes).
    pub(super) held: Option<Held>,
    /// What the action would do is under way already.
    pub(super) under_way: Option<String>,
    /// `eviction`, `image pull retry`, ...: the rate-limit message.
    pub(super) backing_off: String,
    /// What a dry run says it would do.
    pub(super) would: String,
}

pub(super) fn decide(
    finding: &Finding,
    facts: &Facts,
    rails: &Rails,
    history: &dyn History,
) -> Decision {
    if let Some(reason) = opted_out(finding, facts) {
        return Decision::report(reason);
    }
    let problem = &finding.problem;
    let container = problem.kind.container().unwrap_or_default();
    let stored_storage_fixes: Vec<Fix> = facts
        .claims
        .iter()
        .flat_map(|c| {
            facts
                .fixes
                .lookup(&problem.namespace, &c.name)
                .iter()
                .cloned()
        })
        .collect();
    let situation = Situation {
        problem,
        diagnosis: &finding.diagnosis,
        workload: finding.workload.as_ref(),
        container_limit: facts.container_limit(container),
        limit_range_max: facts.cluster.memory_max.get(&problem.namespace).cloned(),
        stored_fix: finding
            .workload
            .as_ref()
            .and_then(|w| stored_memory_fix(&facts.fixes, &w.namespace, &w.name, container)),
        stored_storage_fixes: &stored_storage_fixes,
        last_termination: facts.last_termination(container),
        claims: &facts.claims,
        attempts: history.attempts(&attempts_key(finding)),
        now: facts.now,
    };
    let wanted = match intent(&situation, rails) {
        Intent::Report { reason } => return Decision::report(reason),
        Intent::Alert { reason } => return Decision::alert(reason),
        Intent::RaiseMemory { fix, roll_into } => raise_memory(finding, facts, fix, roll_into),
        Intent::RaiseStorage { fix, claim, expand } => {
            raise_storage(finding, facts, fix, &claim, expand)
        }
        Intent::EvictPod => Ok(restart_pod(finding, ActionKind::EvictPod, 0)),
        Intent::DeletePod => Ok(restart_pod(
            finding,
            ActionKind::DeletePod,
            situation.attempts.saturating_add(1),
        )),
        Intent::RestartDependency { host, port } => restart_dependency(finding, facts, &host, port),
        Intent::RenewCertificate { certificate } => renew_certificate(finding, facts, &certificate),
    };
    match wanted {
        Ok(wanted) => finish(wanted, facts, rails, history),
        Err(report) => Decision::Report(report),
    }
}

/// A decision not to act, of the ordinary kind (a `NotActing` Event).
pub(super) fn notice(reason: impl Into<String>) -> Report {
    Report {
        reason: reason.into(),
        level: ReportLevel::Notice,
    }
}

/// A problem on an object labelled `selfheal.io/ignore=true`, or in a namespace labelled so,
/// makes selfheal act nowhere, not even on a dependency elsewhere.
fn opted_out(finding: &Finding, facts: &Facts) -> Option<String> {
    let namespace = &finding.problem.namespace;
    if ignored(Some(&finding.labels)) {
        return Some(format!("labelled {IGNORE_LABEL}=true: no automatic action"));
    }
    match facts.namespaces.labels(namespace) {
        crate::core::targeting::NamespaceLabels::Known(labels) if ignored(Some(labels)) => Some(
            format!("namespace {namespace} is labelled {IGNORE_LABEL}=true: no automatic action"),
        ),
        NamespaceLabels::Unreadable(why) => Some(format!(
            "the labels of namespace {namespace} could not be read ({why}): no automatic action"
        )),
        _ => None,
    }
}

/// The rails in their order; the first that stops the action is the answer.
fn finish(wanted: Wanted, facts: &Facts, rails: &Rails, history: &dyn History) -> Decision {
    let action = wanted.action.kind();
    let changed = &wanted.target;
    let target = Target {
        kind: &changed.kind,
        namespace: &changed.namespace,
        name: &changed.name,
        ignore_label: changed.ignore_label.as_deref(),
        namespace_labels: facts.namespaces.labels(&changed.namespace),
    };
    let refuse = |rail: Rail, reason: String| {
        Decision::Refuse(Refusal {
            action,
            rail,
            reason,
            related: wanted.related.clone(),
        })
    };
    if let Err(excluded) = rails.targeting.check(&target) {
        return refuse(excluded.exclusion.into(), excluded.reason);
    }
    if let Some(ready) = wanted.ready_replicas.filter(|ready| *ready > 0) {
        return refuse(
            Rail::DependencyReady,
            format!(
                "{} has {ready} ready replica(s): it is not down, a restart would not help",
                target.describe()
            ),
        );
    }
    if let Some(held) = &wanted.held {
        return refuse(Rail::of_held(held), format!("{held}; not raising"));
    }
    if let Some(wait) = wanted.action.slot().and_then(|slot| history.wait(slot)) {
        return Decision::Defer(Deferral {
            action,
            wait,
            reason: format!("{} backing off for {}s", wanted.backing_off, wait.as_secs()),
        });
    }
    if rails.dry_run {
        return refuse(Rail::DryRun, wanted.would);
    }
    if let Some(under_way) = wanted.under_way {
        return Decision::Report(Report {
            reason: under_way,
            level: ReportLevel::UnderWay(action),
        });
    }
    Decision::Act(Box::new(wanted.action))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::json;

    use k8s_openapi::api::core::v1::Pod;

    use super::*;
    use crate::core::headroom::QuotaFacts;
    use crate::core::targeting::Targeting;
    use crate::heal::detect::Problem;
    use crate::heal::diagnose::{Diagnosis, Source};
    use crate::heal::facts::{CertificateFacts, DependencyFacts, TargetFacts};
    use crate::heal::facts::{Facts, WorkloadObject};
    use crate::heal::ratelimit::NoHistory;

    /// A history where every key has `attempts` and waits `wait`.
    struct Busy {
        attempts: u32,
        wait: Option<Duration>,
    }

    impl History for Busy {
        fn attempts(&self, _: &ActionKey) -> u32 {
            self.attempts
        }
        fn wait(&self, _: &ActionKey) -> Option<Duration> {
            self.wait
        }
    }

    fn finding(kind: ProblemKind, cause: Cause, endpoint: Option<(&str, u16)>) -> Finding {
        Finding {
            problem: Problem {
                namespace: "shop".into(),
                object_kind: "Pod",
                object_name: "web-5d4c3b2a1-x2x7q".into(),
                uid: "pod-uid".into(),
                kind,
            },
            diagnosis: Diagnosis {
                cause,
                evidence: "the line".into(),
                source: Source::Logs,
                endpoint: endpoint.map(|(h, p)| (h.to_string(), p)),
                missing: None,
            },
            workload: Some(Workload {
                kind: "Deployment".into(),
                namespace: "shop".into(),
                name: "web".into(),
            }),
            labels: BTreeMap::new(),
        }
    }

    fn crashloop() -> ProblemKind {
        ProblemKind::CrashLoopBackOff {
            container: "app".into(),
            init: false,
            restart_count: 4,
            exit_code: Some(1),
            message: None,
        }
    }

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-5d4c3b2a1-x2x7q", "namespace": "shop", "uid": "pod-uid"},
            "spec": {"containers": [{"name": "app", "resources": {"limits": {"memory": "512Mi"}}}]}
        }))
        .unwrap()
    }

    /// Facts with the pod, the namespaces `shop` and `data` readable (no labels).
    fn facts(target: TargetFacts) -> Facts {
        let mut facts = Facts::new(
            "2026-11-28T12:00:00Z".parse().unwrap(),
            Arc::default(),
            Default::default(),
        );
        facts.pod = Some(pod());
        facts.namespaces.insert("shop", BTreeMap::new());
        facts.namespaces.insert("data", BTreeMap::new());
        facts.target = target;
        facts
    }

    fn deployment(namespace: &str, name: &str, ready: u64) -> WorkloadObject {
        WorkloadObject {
            workload: Workload {
                kind: "Deployment".into(),
                namespace: namespace.into(),
                name: name.into(),
            },
            object: json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": namespace, "uid": format!("{name}-uid"), "resourceVersion": "7"},
                "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                    "template": {"spec": {"containers": [{"name": "app",
                        "resources": {"limits": {"memory": "512Mi"}}}]}}},
                "status": {"readyReplicas": ready}}),
        }
    }

    fn rails() -> Rails {
        Rails {
            targeting: Targeting::new(vec!["kube-system".into()], Vec::new()),
            ..Rails::default()
        }
    }

    #[test]
    fn the_rails_apply_in_their_order() {
        let evict = finding(crashloop(), Cause::Unknown, None);
        // Free: act, taking the eviction slot of the workload.
        let Decision::Act(action) =
            plan_of(&evict, &facts(TargetFacts::None), &rails(), &NoHistory)
        else {
            panic!("an eviction")
        };
        assert_eq!(
            action.slot(),
            Some(&ActionKey::Evict {
                namespace: "shop".into(),
                owner: "Deployment/shop/web".into()
            })
        );
        // Backing off: later, with the wait.
        let busy = Busy {
            attempts: 1,
            wait: Some(Duration::from_secs(42)),
        };
        let deferred = plan_of(&evict, &facts(TargetFacts::None), &rails(), &busy);
        assert_eq!(
            deferred,
            Decision::Defer(Deferral {
                action: ActionKind::EvictPod,
                wait: Duration::from_secs(42),
                reason: "eviction backing off for 42s".into()
            })
        );
        // A dry run says what it would do, after every other rail.
        let dry = Rails {
            dry_run: true,
            ..rails()
        };
        assert!(matches!(
            plan_of(&evict, &facts(TargetFacts::None), &dry, &NoHistory),
            Decision::Refuse(Refusal { rail: Rail::DryRun, reason, .. }) if reason == "would evict pod web-5d4c3b2a1-x2x7q"
        ));
        assert!(matches!(
            plan_of(&evict, &facts(TargetFacts::None), &dry, &busy),
            Decision::Defer(_)
        ));
        // An opted-out pod makes selfheal act nowhere: a report, not a refusal.
        let mut opted = evict.clone();
        opted.labels.insert(IGNORE_LABEL.into(), "true".into());
        assert!(matches!(
            plan_of(&opted, &facts(TargetFacts::None), &dry, &busy),
            Decision::Report(Report {
                level: ReportLevel::Notice,
                ..
            })
        ));
    }

    fn plan_of(finding: &Finding, facts: &Facts, rails: &Rails, history: &dyn History) -> Decision {
        decide(finding, facts, rails, history)
    }

    #[test]
    fn a_dependency_is_restarted_only_when_down_and_never_the_caller() {
        let refused = finding(
            crashloop(),
            Cause::ConnectionRefused,
            Some(("db.data", 5432)),
        );
        let found = |ready: u64, dependency: &str| {
            TargetFacts::Dependency(DependencyFacts::Found {
                dependency: deployment("data", dependency, ready).workload,
                pods: Vec::new(),
                object: Some(deployment("data", dependency, ready)),
            })
        };
        let Decision::Act(action) = plan_of(&refused, &facts(found(0, "db")), &rails(), &NoHistory)
        else {
            panic!("a restart")
        };
        assert!(
            matches!(&*action, Action::RestartDependency { restart, .. } if restart == "refused db.data:5432 to web (restart 4)")
        );
        assert!(matches!(
            plan_of(&refused, &facts(found(1, "db")), &rails(), &NoHistory),
            Decision::Refuse(Refusal {
                rail: Rail::DependencyReady,
                related: Some(_),
                ..
            })
        ));
        let mut caller = facts(found(0, "web"));
        if let TargetFacts::Dependency(DependencyFacts::Found { dependency, .. }) =
            &mut caller.target
        {
            dependency.namespace = "shop".into();
        }
        assert!(matches!(
            plan_of(&refused, &caller, &rails(), &NoHistory),
            Decision::Report(Report { reason, .. }) if reason.contains("never restarting the caller")
        ));
        // What the reads found decides the report.
        let none = TargetFacts::Dependency(DependencyFacts::NoService {
            namespace: "data".into(),
            service: "db".into(),
        });
        assert!(matches!(
            plan_of(&refused, &facts(none), &rails(), &NoHistory),
            Decision::Report(Report { reason, .. }) if reason == "no Service data/db behind db.data:5432"
        ));
        assert_eq!(
            reads(&refused),
            Reads::Dependency {
                host: "db.data".into()
            }
        );
    }

    #[test]
    fn a_renewal_under_way_is_nothing_to_do() {
        let secret = Finding {
            problem: Problem {
                object_kind: "Secret",
                object_name: "shop-tls".into(),
                kind: ProblemKind::Certificate {
                    issue: crate::certs::check::CertIssue::Expired {
                        not_after: "2026-11-01T00:00:00Z".into(),
                    },
                    managed_by: Some("shop".into()),
                },
                ..finding(crashloop(), Cause::Unknown, None).problem
            },
            workload: None,
            ..finding(crashloop(), Cause::CertificateInvalid, None)
        };
        let certificate = |conditions: serde_json::Value| {
            TargetFacts::Certificate(CertificateFacts::Found(json!({
                "metadata": {"name": "shop", "namespace": "shop", "uid": "c"},
                "status": {"conditions": conditions}})))
        };
        assert!(matches!(
            plan_of(&secret, &facts(certificate(json!([]))), &rails(), &NoHistory),
            Decision::Act(action) if action.kind() == ActionKind::RenewCertificate
        ));
        let issuing = certificate(json!([{"type": "Issuing", "status": "True"}]));
        assert!(matches!(
            plan_of(&secret, &facts(issuing), &rails(), &NoHistory),
            Decision::Report(Report {
                level: ReportLevel::UnderWay(ActionKind::RenewCertificate),
                ..
            })
        ));
        assert!(matches!(
            plan_of(&secret, &facts(TargetFacts::Certificate(CertificateFacts::Missing)), &rails(), &NoHistory),
            Decision::Report(Report { reason, .. }) if reason.contains("does not exist")
        ));
        // After the attempt cap: an alert, whatever the Certificate says.
        let stuck = Busy {
            attempts: 3,
            wait: None,
        };
        assert!(matches!(
            plan_of(&secret, &facts(certificate(json!([]))), &rails(), &stuck),
            Decision::Report(Report {
                level: ReportLevel::Alert,
                ..
            })
        ));
    }

    #[test]
    fn a_raise_no_quota_leaves_room_for_is_held() {
        let oom = finding(crashloop(), Cause::OutOfMemory, None);
        let read = || TargetFacts::Workload(Some(deployment("shop", "web", 1)));
        let Decision::Act(action) = plan_of(&oom, &facts(read()), &rails(), &NoHistory) else {
            panic!("a raise")
        };
        assert!(matches!(&*action, Action::RaiseMemory { roll: Some(roll), .. } if roll.restart));
        let mut full = facts(read());
        let cluster = crate::cluster::facts::ClusterFacts::default();
        cluster.publish_quotas([QuotaFacts {
            namespace: "shop".into(),
            name: "mem".into(),
            hard: [("limits.memory".to_string(), 512u128 << 20)].into(),
            used: [("limits.memory".to_string(), 512u128 << 20)].into(),
            scopes: Vec::new(),
        }]);
        full.cluster = cluster.load();
        assert!(matches!(
            plan_of(&oom, &full, &rails(), &NoHistory),
            Decision::Refuse(Refusal {
                rail: Rail::Quota,
                ..
            })
        ));
        // The workload gone since: nothing to raise.
        assert!(matches!(
            plan_of(&oom, &facts(TargetFacts::Workload(None)), &rails(), &NoHistory),
            Decision::Report(Report { reason, .. }) if reason.contains("no longer exists")
        ));
    }
}
