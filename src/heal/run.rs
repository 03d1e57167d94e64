//! The loop READ FACTS → PLAN → EXECUTE over diagnosed findings, shared by the one-shot
//! `selfheal heal` and the watcher inside `selfheal serve`: for each finding, the facts its
//! decision reads (`facts::Reader`), one pure decision (`plan::plan`), and the executor carrying
//! it out.

use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use kube::Client;
use serde::Serialize;
use serde::ser::SerializeStruct;
use tracing::Instrument;

use crate::cluster::facts::{self as cluster_facts_of, ClusterFacts};
use crate::core::index::FixIndex;
use crate::core::owners;
use crate::heal::call;
use crate::heal::execute::{ExecuteError, Executor, Outcome, subject_name};
use crate::heal::facts::{Facts, Reader};
use crate::heal::inspect::{self, ClusterView, Finding};
use crate::heal::plan::{self, ActionKind, Decision, Rails, Reads};

/// One handled finding: the decision (none when its facts could not be read) and what came of
/// it.
#[derive(Debug)]
pub struct Handled {
    pub finding: Finding,
    pub decision: Option<Decision>,
    pub outcome: Outcome,
}

impl Handled {
    /// The action the decision was about (`RaiseMemory`, `Report`, ...).
    pub fn action(&self) -> &'static str {
        self.decision
            .as_ref()
            .map_or_else(|| wanted(&self.finding), Decision::action)
            .as_str()
    }

    /// `Pod/shop/web-1`: the object the finding is about.
    pub fn target(&self) -> String {
        subject_name(&self.finding)
    }
}

impl Serialize for Handled {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct OutcomeView<'a> {
            target: String,
            action: &'a str,
            result: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            rail: Option<&'a str>,
            message: String,
        }
        let mut handled = serializer.serialize_struct("Handled", 3)?;
        handled.serialize_field("finding", &self.finding)?;
        handled.serialize_field("plan", &self.decision)?;
        handled.serialize_field(
            "outcome",
            &OutcomeView {
                target: self.target(),
                action: self.action(),
                result: self.outcome.result(),
                rail: self.outcome.rail().map(plan::Rail::as_str),
                message: self.outcome.message(),
            },
        )?;
        handled.end()
    }
}

/// The span of one handling: every line it logs (the facts read, the decision, the outcome)
/// carries the object (`namespace`, `kind`, `object`: its name, `uid`) and the problem, so one
/// handling can be followed in the JSON logs (where a span's `name` is the span's own).
pub fn span_of(finding: &Finding) -> tracing::Span {
    let problem = &finding.problem;
    tracing::info_span!(
        "handling",
        namespace = %problem.namespace,
        kind = problem.object_kind,
        object = %problem.object_name,
        uid = %problem.uid,
        problem = problem.kind.name(),
        container = problem.kind.container().unwrap_or_default(),
    )
}

/// The action a finding's facts were read for, when they could not be.
fn wanted(finding: &Finding) -> ActionKind {
    match plan::reads(finding) {
        Reads::Workload(_) => ActionKind::RaiseMemory,
        Reads::Claims => ActionKind::RaiseStorage,
        Reads::Dependency { .. } => ActionKind::RestartDependency,
        Reads::Certificate(_) => ActionKind::RenewCertificate,
        Reads::Nothing => ActionKind::Report,
    }
}

/// Where a run may act.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only this component (namespace, workload, or app label).
    pub component: Option<String>,
    /// Never act here (kube-system and selfheal's own namespace).
    pub protected: Vec<String>,
}

impl Scope {
    pub fn includes(&self, finding: &Finding) -> bool {
        let namespace = &finding.problem.namespace;
        !self.protected.contains(namespace)
            && self.namespace.as_ref().is_none_or(|ns| ns == namespace)
            && self.component.as_deref().is_none_or(|component| {
                owners::matches_component(
                    component,
                    namespace,
                    finding.workload.as_ref(),
                    Some(&finding.labels),
                )
            })
    }
}

/// One pass of the loop over the whole cluster (or the scope): gather, detect, diagnose, fix.
pub async fn run_once(
    client: &Client,
    executor: &Executor,
    rails: &Rails,
    index: Arc<FixIndex>,
    scope: &Scope,
    now: Timestamp,
) -> Result<Vec<Handled>, kube::Error> {
    let view = inspect::gather(client, scope.namespace.as_deref()).await?;
    let findings: Vec<Finding> = inspect::diagnose_view(client, &view, now)
        .await
        .into_iter()
        .filter(|f| scope.includes(f))
        .collect();
    let cluster = cluster_facts(client, executor.call_timeout()).await;
    let mut reader = Reader::new(client, executor.call_timeout());
    let healing = Healing {
        executor,
        rails,
        index,
        cluster,
        now,
    };
    Ok(healing.heal(&mut reader, &view, findings).await)
}

/// The LimitRanges, ResourceQuotas and nodes as of one list each (a one-shot run has no watch);
/// without them (not allowed, no answer in time) raises are capped by the planner only.
async fn cluster_facts(client: &Client, timeout: std::time::Duration) -> ClusterFacts {
    let listed = call::within(
        timeout,
        || "listing LimitRanges, ResourceQuotas and nodes".into(),
        cluster_facts_of::read_once(client.clone()),
    )
    .await;
    match listed {
        Ok(Ok(facts)) => facts,
        Ok(Err(error)) => {
            tracing::warn!(%error, "the cluster's caps could not be listed; raises are capped by the planner only");
            ClusterFacts::default()
        }
        Err(elapsed) => {
            tracing::warn!(%elapsed, "raises are capped by the planner only");
            ClusterFacts::default()
        }
    }
}

/// What a batch of findings is handled with.
pub struct Healing<'a> {
    pub executor: &'a Executor,
    pub rails: &'a Rails,
    /// The fixes stored now.
    pub index: Arc<FixIndex>,
    /// What the cluster enforces on a raise (LimitRanges, quotas, nodes).
    pub cluster: ClusterFacts,
    pub now: Timestamp,
}

impl Healing<'_> {
    /// Reads the facts of each finding, decides, and carries the decision out, in order.
    pub async fn heal(
        &self,
        reader: &mut Reader<'_>,
        view: &ClusterView,
        findings: Vec<Finding>,
    ) -> Vec<Handled> {
        let executor = self.executor;
        let rails = Rails {
            dry_run: self.rails.dry_run || executor.dry_run,
            ..self.rails.clone()
        };
        // Every finding of the batch reads the cluster as of one moment.
        let base = Facts::new(self.now, self.index.clone(), self.cluster.load());
        let mut handled = Vec::new();
        for finding in findings {
            let handling = async {
                match reader.facts(&finding, &base, view).await {
                    Ok(facts) => {
                        let history = executor.limiter().as_of(Instant::now());
                        let decision = plan::plan(&finding, &facts, &rails, &history);
                        let outcome = executor.carry_out(&finding, &decision).await;
                        (Some(decision), outcome)
                    }
                    Err(error) => {
                        let error = ExecuteError::Read(error);
                        let outcome = executor.not_decided(&finding, wanted(&finding), error);
                        (None, outcome)
                    }
                }
            };
            let (decision, outcome) = handling.instrument(span_of(&finding)).await;
            handled.push(Handled {
                finding,
                decision,
                outcome,
            });
        }
        handled
    }
}
