//! The decision and its parts: what to do ([`Action`]), a rail that stops it ([`Rail`],
//! [`Refusal`]), a report, a deferral; the objects they name ([`TargetRef`]).

use std::time::Duration;

use serde::Serialize;

use crate::core::fix::Fix;
use crate::core::headroom::Held;
use crate::core::owners::Workload;
use crate::core::quantity::ByteQuantity;
use crate::core::raise::MemoryCaps;
use crate::core::targeting::Exclusion;
use crate::heal::facts::WorkloadObject;
use crate::heal::ratelimit::ActionKey;

/// What to do about one problem.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "camelCase")]
pub enum Decision {
    /// Carry this action out.
    Act(Box<Action>),
    /// An action is called for, and a rail stops it.
    Refuse(Refusal),
    /// No action: say why (an Event, a metric, a row of `health`).
    Report(Report),
    /// Not now: the action waits for its rate limit.
    Defer(Deferral),
}

impl Decision {
    /// The action the decision is about, as metrics and logs name it (`Report` and `Alert` for
    /// reports that are not about an action).
    pub fn action(&self) -> ActionKind {
        match self {
            Decision::Act(action) => action.kind(),
            Decision::Refuse(refusal) => refusal.action,
            Decision::Defer(deferral) => deferral.action,
            Decision::Report(report) => match report.level {
                ReportLevel::Notice => ActionKind::Report,
                ReportLevel::Alert => ActionKind::Alert,
                ReportLevel::UnderWay(action) => action,
            },
        }
    }

    pub(super) fn report(reason: impl Into<String>) -> Self {
        Decision::Report(Report {
            reason: reason.into(),
            level: ReportLevel::Notice,
        })
    }

    pub(super) fn alert(reason: impl Into<String>) -> Self {
        Decision::Report(Report {
            reason: reason.into(),
            level: ReportLevel::Alert,
        })
    }
}

/// The kinds of action, as metrics and logs name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ActionKind {
    RaiseMemory,
    RaiseStorage,
    EvictPod,
    DeletePod,
    RestartDependency,
    RenewCertificate,
    UnsealVault,
    Report,
    Alert,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::RaiseMemory => "RaiseMemory",
            ActionKind::RaiseStorage => "RaiseStorage",
            ActionKind::EvictPod => "EvictPod",
            ActionKind::DeletePod => "DeletePod",
            ActionKind::RestartDependency => "RestartDependency",
            ActionKind::RenewCertificate => "RenewCertificate",
            ActionKind::UnsealVault => "UnsealVault",
            ActionKind::Report => "Report",
            ActionKind::Alert => "Alert",
        }
    }
}

impl std::fmt::Display for ActionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An object an action changes or a refusal names, as an Event references it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

impl TargetRef {
    pub fn new(api_version: &str, kind: &str, namespace: &str, name: &str) -> Self {
        Self {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
            uid: None,
        }
    }

    pub fn with_uid(self, uid: Option<&str>) -> Self {
        Self {
            uid: uid.map(str::to_string),
            ..self
        }
    }

    /// A workload as read (its uid included).
    pub fn workload(read: &WorkloadObject) -> Self {
        let group = workload_group(&read.workload.kind).unwrap_or("apps");
        Self::new(
            &format!("{group}/v1"),
            &read.workload.kind,
            &read.workload.namespace,
            &read.workload.name,
        )
        .with_uid(read.uid())
    }
}

impl std::fmt::Display for TargetRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// The API group of the workload kinds selfheal reads and changes.
pub fn workload_group(kind: &str) -> Option<&'static str> {
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" => Some("apps"),
        "CronJob" => Some("batch"),
        _ => None,
    }
}

/// An action to carry out, with everything the executor needs to do it and nothing to decide.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum Action {
    /// Record a memory fix; put it into the workload's template (`roll`: a rollout of a
    /// Deployment, StatefulSet or DaemonSet, the `jobTemplate` of a CronJob, for its next Job).
    RaiseMemory {
        #[serde(serialize_with = "fix_summary")]
        fix: Fix,
        #[serde(skip_serializing_if = "Option::is_none")]
        roll: Option<Roll>,
    },
    /// Record a storage fix; expand the bound claim where its class allows it.
    RaiseStorage {
        #[serde(serialize_with = "fix_summary")]
        fix: Fix,
        claim: TargetRef,
        /// The claim's storage request now (expanded only when below the fix).
        #[serde(skip)]
        current: Option<ByteQuantity>,
        expand: bool,
    },
    /// Restart the pod through the Eviction API (honours PodDisruptionBudgets).
    EvictPod { pod: TargetRef, slot: ActionKey },
    /// Delete the pod so its controller creates a new one (retries an image pull).
    DeletePod {
        pod: TargetRef,
        slot: ActionKey,
        /// The workload the pod answers to (the Event is about it).
        workload: Option<Workload>,
        /// Which retry this is (1 for the first).
        attempt: u32,
    },
    /// Restart the not-ready workload behind a refused `host:port` (never the caller).
    RestartDependency {
        #[serde(skip)]
        dependency: WorkloadObject,
        /// The restart annotation's value: names the occurrence, so a repeat changes nothing.
        restart: String,
        slot: ActionKey,
        /// `host:port`, the caller: for the message.
        endpoint: String,
        caller: String,
    },
    /// Ask cert-manager to re-issue the Certificate (as `cmctl renew` does).
    RenewCertificate {
        certificate: TargetRef,
        #[serde(skip)]
        object: serde_json::Value,
        slot: ActionKey,
    },
    /// Unseal a Vault server with the threshold's number of key shares, first resetting an
    /// abandoned partial unseal (carried out by the Vault check).
    UnsealVault {
        address: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        reset: Option<Reset>,
    },
}

/// The abandoned partial unseal an unseal resets first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reset {
    pub progress: u32,
    pub nonce: String,
    #[serde(with = "seconds")]
    pub unchanged_for: Duration,
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::RaiseMemory { .. } => ActionKind::RaiseMemory,
            Action::RaiseStorage { .. } => ActionKind::RaiseStorage,
            Action::EvictPod { .. } => ActionKind::EvictPod,
            Action::DeletePod { .. } => ActionKind::DeletePod,
            Action::RestartDependency { .. } => ActionKind::RestartDependency,
            Action::RenewCertificate { .. } => ActionKind::RenewCertificate,
            Action::UnsealVault { .. } => ActionKind::UnsealVault,
        }
    }

    /// The rate-limit slot the action takes when it is carried out.
    pub fn slot(&self) -> Option<&ActionKey> {
        match self {
            Action::EvictPod { slot, .. }
            | Action::DeletePod { slot, .. }
            | Action::RestartDependency { slot, .. }
            | Action::RenewCertificate { slot, .. } => Some(slot),
            Action::RaiseMemory { .. }
            | Action::RaiseStorage { .. }
            | Action::UnsealVault { .. } => None,
        }
    }
}

/// Putting a memory fix into a workload's template.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Roll {
    #[serde(rename = "into", serialize_with = "workload_name")]
    pub target: WorkloadObject,
    /// The LimitRange and room caps of the namespace (`core::raise`).
    #[serde(skip)]
    pub caps: MemoryCaps,
    /// Set the restart annotation too, so the controller rolls the pods (not for a CronJob).
    pub restart: bool,
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

fn workload_name<S: serde::Serializer>(
    target: &WorkloadObject,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&target.workload)
}

/// The rail that stops an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rail {
    /// Targeting excludes the object (a protected, unwatched or ignored namespace, an ignored
    /// object).
    Target(Exclusion),
    /// A dependency with a ready replica is not down: a restart would not help.
    DependencyReady,
    /// The apiserver refused an eviction because of a PodDisruptionBudget.
    DisruptionBudget,
    /// A ResourceQuota leaves no room for the raise.
    Quota,
    /// No node could run the raised pod.
    NodeCapacity,
    /// `--dry-run`: the action is only described.
    DryRun,
}

impl Rail {
    /// The rail's name in logs, metrics and outcomes.
    pub fn as_str(self) -> &'static str {
        match self {
            Rail::Target(exclusion) => exclusion.as_str(),
            Rail::DependencyReady => "dependency_ready",
            Rail::DisruptionBudget => "disruption_budget",
            Rail::Quota => "quota",
            Rail::NodeCapacity => "node_capacity",
            Rail::DryRun => "dry_run",
        }
    }

    /// The rail of what held a raise (`core::headroom`).
    pub fn of_held(held: &Held) -> Self {
        match held {
            Held::Quota { .. } => Rail::Quota,
            Held::Node { .. } => Rail::NodeCapacity,
        }
    }
}

impl Serialize for Rail {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl From<Exclusion> for Rail {
    fn from(exclusion: Exclusion) -> Self {
        Rail::Target(exclusion)
    }
}

/// A decision not to carry an action out, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusal {
    pub action: ActionKind,
    pub rail: Rail,
    pub reason: String,
    /// The object refused, when it is not the problem's own (the Event names it as `related`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub related: Option<TargetRef>,
}

/// A decision to act later: the action's rate limit lets it go in `wait`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deferral {
    pub action: ActionKind,
    #[serde(with = "seconds")]
    pub wait: Duration,
    pub reason: String,
}

mod seconds {
    pub fn serialize<S: serde::Serializer>(
        wait: &std::time::Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(wait.as_secs())
    }
}

/// A decision not to act, said.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub reason: String,
    pub level: ReportLevel,
}

/// How a report is said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ReportLevel {
    /// Nothing in the catalogue applies or the action cannot help (a `NotActing` Event).
    Notice,
    /// Automatic healing gave up or cannot help: a person must look (a `HealingStopped` Warning).
    Alert,
    /// What the action would do is under way already: nothing to do, nothing to say.
    UnderWay(ActionKind),
}
