//! One handling of a work item: the evidence read once (the events its diagnoses need, the log
//! tails of crash loops, the Jobs the view does not know), the diagnosis of the problems it
//! carries (nothing is detected again), and the findings in scope healed with facts from the
//! watcher's stores.

use std::collections::HashSet;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod};
use kube::api::ListParams;
use kube::runtime::reflector::{self, Store};
use kube::{Api, Client};
use tracing::Instrument;

use super::{Context, Settlement, Stores, Subject, WorkItem};
use crate::heal::call::{self, CALL_TIMEOUT};
use crate::heal::diagnose;
use crate::heal::execute::Outcome;
use crate::heal::facts::Reader;
use crate::heal::inspect::{self, ClusterView, Finding, Logs};
use crate::heal::run;
use crate::metrics::{Metrics, ProblemLabels};

/// What a worker hands back.
pub(super) struct Worked {
    pub(super) item: WorkItem,
    /// `None`: the handling ran past its deadline.
    results: Option<Vec<run::Handled>>,
}

impl Worked {
    /// What became of each problem, for the index.
    pub(super) fn settlements(&self) -> Option<Vec<(crate::heal::detect::ProblemKey, Settlement)>> {
        let results = self.results.as_ref()?;
        Some(
            results
                .iter()
                .map(|handled| {
                    let settlement = match (&handled.outcome, handled.outcome.retry_in()) {
                        (_, Some(wait)) => Settlement::RetryIn(wait),
                        (Outcome::Failed(_), None) => Settlement::Failed,
                        _ => Settlement::Settled,
                    };
                    (handled.finding.problem.key(), settlement)
                })
                .collect(),
        )
    }
}

/// Handles one work item within the handling deadline.
pub(super) async fn work(context: Arc<Context>, stores: Stores, item: WorkItem) -> Worked {
    let span = tracing::info_span!("work", key = %item.key, problems = item.problems.len());
    let handling = handle(&context, &stores, &item).instrument(span);
    let results = tokio::time::timeout(context.config.handle_timeout, handling)
        .await
        .ok();
    if results.is_none() {
        tracing::warn!(key = %item.key, "handling took longer than {}s; will retry", context.config.handle_timeout.as_secs());
    }
    Worked { item, results }
}

/// Reads the evidence of `item`'s problems once (the events their diagnoses need, the log tails
/// of crash loops, the Jobs the view does not know), diagnoses them (no detection: the item
/// carries them), and heals the findings in scope.
async fn handle(context: &Context, stores: &Stores, item: &WorkItem) -> Vec<run::Handled> {
    let now = Timestamp::now();
    let mut view = ClusterView::default();
    for subject in &item.subjects {
        match subject {
            Subject::Pod(pod) => view.pods.push((**pod).clone()),
            Subject::Secret(secret) => view.secrets.push((**secret).clone()),
            Subject::Claim(claim) => view.claims.push((**claim).clone()),
        }
    }
    view.claims
        .extend(mounted_claims(&view.pods, &stores.claims));
    let mut listed: HashSet<&str> = HashSet::new();
    for problem in item.problems.iter().filter(|p| diagnose::reads_events(p)) {
        if listed.insert(problem.uid.as_str()) {
            view.events
                .extend(events_of(&context.client, &problem.uid).await);
        }
    }
    for event in &item.warnings {
        let listed = view
            .events
            .iter()
            .any(|e| e.metadata.uid.is_some() && e.metadata.uid == event.metadata.uid);
        if !listed {
            view.events.push(event.clone());
        }
    }
    let troubled: Vec<&str> = item.problems.iter().map(|p| p.uid.as_str()).collect();
    let learned = inspect::learn_unknown_jobs(&context.client, &view, &troubled).await;
    let logs = if item.problems.iter().any(inspect::wants_logs) {
        let problems: Vec<&crate::heal::detect::Problem> = item.problems.iter().collect();
        inspect::fetch_logs(&context.client, &problems).await
    } else {
        Logs::new()
    };
    let findings: Vec<Finding> = inspect::diagnosed(&view, &item.problems, &learned, &logs)
        .into_iter()
        .filter(|f| context.config.scope.includes(f))
        .collect();
    for finding in &findings {
        count_problem(&context.metrics, finding);
    }
    let healing = run::Healing {
        executor: &context.executor,
        rails: &context.config.rails,
        index: context.store.snapshot().current(),
        cluster: context.config.limits.clone(),
        now,
    };
    let workloads = stores.workloads();
    let mut reader = Reader::new(&context.client, context.executor.call_timeout()).with_stores(
        stores.listed("Namespace").then_some(&stores.namespaces),
        stores.listed("Pod").then_some(&stores.pods),
        Some(&workloads),
    );
    healing.heal(&mut reader, &view, findings).await
}

/// The claims `pods` mount, from the claim store.
fn mounted_claims(
    pods: &[Pod],
    claims: &Store<PersistentVolumeClaim>,
) -> Vec<PersistentVolumeClaim> {
    pods.iter()
        .flat_map(|pod| {
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            pod.spec
                .iter()
                .flat_map(|spec| spec.volumes.iter().flatten())
                .filter_map(|volume| volume.persistent_volume_claim.as_ref())
                .filter_map(move |source| {
                    claims.get(&reflector::ObjectRef::new(&source.claim_name).within(&namespace))
                })
                .collect::<Vec<_>>()
        })
        .map(|claim| (*claim).clone())
        .collect()
}

pub(super) fn count_problem(metrics: &Metrics, finding: &Finding) {
    metrics
        .problems_detected
        .get_or_create(&ProblemLabels {
            problem: finding.problem.kind.name().into(),
            cause: finding.diagnosis.cause.as_str().into(),
        })
        .inc();
}

/// Events about one object (one request, bounded in time; none if it fails).
async fn events_of(client: &Client, uid: &str) -> Vec<Event> {
    let api: Api<Event> = Api::all(client.clone());
    let params = ListParams::default().fields(&format!("involvedObject.uid={uid}"));
    match call::within(
        CALL_TIMEOUT,
        || format!("listing the events of {uid}"),
        api.list(&params),
    )
    .await
    {
        Ok(Ok(list)) => list.items,
        Ok(Err(error)) => {
            tracing::debug!(%error, uid, "listing events failed; diagnosing without them");
            Vec::new()
        }
        Err(_) => Vec::new(),
    }
}
