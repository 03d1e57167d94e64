//! The watcher inside `selfheal serve`: kube-runtime watches keep caches of pods and claims; each
//! pod change is checked by the detectors (pure, in memory); a new problem is diagnosed, planned
//! and fixed through the same loop as `selfheal heal`. Only the leader acts; every replica keeps
//! its caches warm so a new leader starts at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod, Secret};
use kube::api::ListParams;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use crate::cluster::leader::Leadership;
use crate::cluster::limits::LimitSnapshot;
use crate::heal::detect::{self, Problem, Thresholds};
use crate::heal::execute::Executor;
use crate::heal::inspect::{self, ClusterView};
use crate::heal::plan::Rails;
use crate::heal::probe::{self, ProbeTarget};
use crate::heal::run::{self, Scope};
use crate::metrics::{Metrics, ProblemLabels, SecretLabels};
use crate::store::FixStore;

/// How the watcher behaves.
#[derive(Debug, Clone)]
pub struct WatcherConfig {
    pub scope: Scope,
    /// Only these namespaces (empty: all).
    pub include: Vec<String>,
    pub rails: Rails,
    pub thresholds: Thresholds,
    /// How often claims are checked (Pending is a matter of time, not of change).
    pub claim_interval: Duration,
    /// Watch `kubernetes.io/tls` Secrets and check their certificates (needs RBAC on Secrets).
    pub check_certificates: bool,
    /// How often every certificate is checked again (expiry is a matter of time).
    pub certificate_interval: Duration,
    /// The namespaces' LimitRange maxima, kept current by a watch (`limits::keep_current`).
    pub limits: LimitSnapshot,
    /// Dependencies probed over TCP (`namespace/service:port`).
    pub probes: Vec<ProbeTarget>,
    pub probe_interval: Duration,
}

/// Longest time one problem's diagnosis and fix may take before the watcher moves on.
const HANDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Problems already handled, so a watch event that repeats a status does not repeat an action.
/// A new restart (a new OOM kill) has a new restart count and is handled again.
#[derive(Default)]
struct Handled(HashSet<String>);

impl Handled {
    const MAX: usize = 50_000;

    fn first_time(&mut self, problem: &Problem) -> bool {
        if self.0.len() >= Self::MAX {
            self.0.clear();
        }
        self.0.insert(problem_key(problem))
    }

    /// Handles the occurrence again next time it is seen (the action was deferred or failed).
    fn forget(&mut self, problem: &Problem) {
        self.0.remove(&problem_key(problem));
    }
}

/// Identity of one occurrence of a problem.
pub fn problem_key(problem: &Problem) -> String {
    let restarts = match &problem.kind {
        detect::ProblemKind::OomKilled { restart_count, .. }
        | detect::ProblemKind::CrashLoopBackOff { restart_count, .. } => *restart_count,
        _ => 0,
    };
    format!(
        "{}/{}/{}/{restarts}",
        problem.uid,
        problem.kind.container().unwrap_or("-"),
        problem.kind.name()
    )
}

/// Runs until the task is dropped.
pub async fn run(
    client: Client,
    executor: Arc<Executor>,
    store: FixStore,
    config: WatcherConfig,
    leadership: Leadership,
    metrics: Arc<Metrics>,
) {
    // Pods are checked as their events arrive; no cache of them is kept (memory stays flat with
    // the cluster's size). Claims are cached: Pending-too-long is found by a periodic scan.
    let pods: Api<Pod> = Api::all(client.clone());
    let pod_stream = watcher(pods, watcher::Config::default().page_size(500))
        .default_backoff()
        .applied_objects();

    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let (claim_cache, claim_writer) = reflector::store::<PersistentVolumeClaim>();
    let claim_stream = watcher(claims, watcher::Config::default())
        .default_backoff()
        .modify(|claim: &mut PersistentVolumeClaim| claim.metadata.managed_fields = None)
        .reflect(claim_writer)
        .touched_objects();
    tokio::spawn(claim_stream.for_each(|_| async {}));

    let (secret_cache, secret_writer) = reflector::store::<Secret>();
    let secret_stream = if config.check_certificates {
        let secrets: Api<Secret> = Api::all(client.clone());
        watcher(
            secrets,
            watcher::Config::default().fields("type=kubernetes.io/tls"),
        )
        .default_backoff()
        .modify(|secret: &mut Secret| secret.metadata.managed_fields = None)
        .reflect(secret_writer)
        .applied_objects()
        .boxed()
    } else {
        futures::stream::pending().boxed()
    };
    futures::pin_mut!(secret_stream);
    let mut certificate_ticker = tokio::time::interval(config.certificate_interval);
    certificate_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let mut probe_ticker = tokio::time::interval(config.probe_interval);
    probe_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut outages: HashMap<ProbeTarget, String> = HashMap::new();

    let mut handled = Handled::default();
    let mut claim_ticker = tokio::time::interval(config.claim_interval);
    claim_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    futures::pin_mut!(pod_stream);
    loop {
        tokio::select! {
            next = pod_stream.next() => match next {
                Some(Ok(pod)) => {
                    let problems = detect::pod_problems(&pod, jiff::Timestamp::now(), &config.thresholds);
                    let fresh: Vec<Problem> = problems.into_iter().filter(|p| in_scope(&config, p)).collect();
                    if fresh.is_empty() || !leadership.is_leader() {
                        continue;
                    }
                    let fresh: Vec<Problem> = fresh.into_iter().filter(|p| handled.first_time(p)).collect();
                    if !fresh.is_empty() {
                        let subject = pod.metadata.uid.clone().unwrap_or_default();
                        // The claims are context (a full volume's size), not subjects.
                        let claims = claim_cache.state().iter().map(|c| (**c).clone()).collect();
                        let view = ClusterView { pods: vec![pod], claims, memory_max: config.limits.current(), ..ClusterView::default() };
                        let subjects = [subject];
                        let handling = handle(&client, &executor, &store, &config, view, &subjects, &metrics);
                        match tokio::time::timeout(HANDLE_TIMEOUT, handling).await {
                            Ok(results) => {
                                for done in results {
                                    if matches!(done.outcome.result, "rate_limited" | "failed") {
                                        handled.forget(&done.finding.problem);
                                    }
                                }
                            }
                            // A hung API call must not stall the watcher: give up, retry later.
                            Err(_) => {
                                tracing::warn!(pod = %subjects[0], "handling took longer than {}s; will retry", HANDLE_TIMEOUT.as_secs());
                                for problem in &fresh {
                                    handled.forget(problem);
                                }
                            }
                        }
                    }
                }
                Some(Err(error)) => tracing::warn!(%error, "pod watch error; retrying"),
                None => return,
            },
            next = secret_stream.next() => match next {
                Some(Ok(secret)) => check_secret(&client, &executor, &store, &config, &leadership, secret, &metrics).await,
                Some(Err(error)) => tracing::warn!(%error, "secret watch error; retrying"),
                None => {}
            },
            _ = certificate_ticker.tick(), if config.check_certificates => {
                for secret in secret_cache.state() {
                    check_secret(&client, &executor, &store, &config, &leadership, (*secret).clone(), &metrics).await;
                }
            }
            _ = probe_ticker.tick(), if !config.probes.is_empty() => {
                probe_dependencies(&client, &executor, &store, &config, &leadership, &mut outages, &metrics).await;
            }
            _ = claim_ticker.tick() => {
                if leadership.is_leader() {
                    scan_claims(&client, &executor, &store, &config, &claim_cache, &mut handled, &metrics).await;
                }
            }
        }
    }
}

fn in_scope(config: &WatcherConfig, problem: &Problem) -> bool {
    !config.scope.protected.contains(&problem.namespace)
        && (config.include.is_empty() || config.include.contains(&problem.namespace))
}

/// Diagnoses and fixes the problems of the objects `subjects` (UIDs) in a small view; the rest of
/// the view is context.
async fn handle(
    client: &Client,
    executor: &Executor,
    store: &FixStore,
    config: &WatcherConfig,
    mut view: ClusterView,
    subjects: &[String],
    metrics: &Metrics,
) -> Vec<run::Handled> {
    let now = jiff::Timestamp::now();
    let uids = subjects;
    for uid in uids {
        view.events.extend(events_of(client, uid).await);
    }
    let findings: Vec<_> = inspect::diagnose_view(client, &view, now)
        .await
        .into_iter()
        .filter(|f| uids.contains(&f.problem.uid) && config.scope.includes(f))
        .collect();
    for finding in &findings {
        count_problem(metrics, finding);
    }
    let index = store.snapshot().current();
    run::heal(
        client,
        executor,
        &config.rails,
        &view,
        findings,
        &index,
        now,
    )
    .await
}

async fn scan_claims(
    client: &Client,
    executor: &Executor,
    store: &FixStore,
    config: &WatcherConfig,
    cache: &Store<PersistentVolumeClaim>,
    handled: &mut Handled,
    metrics: &Metrics,
) {
    let now = jiff::Timestamp::now();
    let claims: Vec<PersistentVolumeClaim> = cache
        .state()
        .iter()
        .filter(|claim| {
            detect::claim_problem(claim, now, &config.thresholds)
                .is_some_and(|p| in_scope(config, &p) && handled.first_time(&p))
        })
        .map(|c| (**c).clone())
        .collect();
    if !claims.is_empty() {
        let subjects: Vec<String> = claims
            .iter()
            .filter_map(|c| c.metadata.uid.clone())
            .collect();
        let view = ClusterView {
            claims,
            memory_max: config.limits.current(),
            ..ClusterView::default()
        };
        bounded(handle(
            client, executor, store, config, view, &subjects, metrics,
        ))
        .await;
    }
}

/// Checks one TLS Secret: exports its expiry, and heals (through cert-manager) or reports.
/// Certificates are not deduplicated like pods: a renewal that does not take effect is tried
/// again on the next check, within the rate limit, until the attempt cap turns it into an alert.
async fn check_secret(
    client: &Client,
    executor: &Executor,
    store: &FixStore,
    config: &WatcherConfig,
    leadership: &Leadership,
    secret: Secret,
    metrics: &Metrics,
) {
    let namespace = secret.metadata.namespace.clone().unwrap_or_default();
    let name = secret.metadata.name.clone().unwrap_or_default();
    let cert = secret
        .data
        .as_ref()
        .and_then(|d| d.get("tls.crt"))
        .map(|b| b.0.clone())
        .unwrap_or_default();
    if let Ok(validity) = crate::certs::check::validity(&cert) {
        metrics
            .certificate_expiry
            .get_or_create(&SecretLabels {
                namespace: namespace.clone(),
                secret: name.clone(),
            })
            .set(validity.not_after.as_second());
    }
    let provider = rustls::crypto::ring::default_provider();
    let now = jiff::Timestamp::now();
    match detect::secret_problem(
        &secret,
        now,
        config.thresholds.certificate_window_days,
        &provider,
    ) {
        Some(problem) if in_scope(config, &problem) && leadership.is_leader() => {
            let view = ClusterView {
                secrets: vec![secret],
                ..ClusterView::default()
            };
            bounded(handle(
                client,
                executor,
                store,
                config,
                view,
                &[problem.uid],
                metrics,
            ))
            .await;
        }
        Some(_) => {}
        None => executor
            .limiter()
            .reset(&format!("renew/{namespace}/{name}")),
    }
}

/// Probes every configured dependency; a failing one is healed like a caller's "connection
/// refused" (its outage start names the restart, so one outage restarts it at most once).
async fn probe_dependencies(
    client: &Client,
    executor: &Executor,
    store: &FixStore,
    config: &WatcherConfig,
    leadership: &Leadership,
    outages: &mut HashMap<ProbeTarget, String>,
    metrics: &Metrics,
) {
    for target in &config.probes {
        match probe::probe(client, target, Duration::from_secs(2)).await {
            Ok(()) => {
                outages.remove(target);
            }
            Err(error) => {
                let now = jiff::Timestamp::now();
                let since = outages
                    .entry(target.clone())
                    .or_insert_with(|| now.round(jiff::Unit::Second).unwrap_or(now).to_string())
                    .clone();
                tracing::warn!(%target, %error, %since, "dependency probe failed");
                if !leadership.is_leader() {
                    continue;
                }
                let finding = probe::finding(target, &error, &since);
                count_problem(metrics, &finding);
                let index = store.snapshot().current();
                let view = ClusterView {
                    memory_max: config.limits.current(),
                    ..ClusterView::default()
                };
                bounded(run::heal(
                    client,
                    executor,
                    &config.rails,
                    &view,
                    vec![finding],
                    &index,
                    now,
                ))
                .await;
            }
        }
    }
}

/// Runs one handling within `HANDLE_TIMEOUT`; a hung API call must not stall the watcher.
async fn bounded(
    handling: impl std::future::Future<Output = Vec<run::Handled>>,
) -> Vec<run::Handled> {
    tokio::time::timeout(HANDLE_TIMEOUT, handling)
        .await
        .unwrap_or_else(|_| {
            tracing::warn!(
                "handling took longer than {}s; will retry on the next check",
                HANDLE_TIMEOUT.as_secs()
            );
            Vec::new()
        })
}

fn count_problem(metrics: &Metrics, finding: &crate::heal::inspect::Finding) {
    metrics
        .problems_detected
        .get_or_create(&ProblemLabels {
            problem: finding.problem.kind.name().into(),
            cause: finding.diagnosis.cause.as_str().into(),
        })
        .inc();
}

/// Events about one object (one request).
async fn events_of(client: &Client, uid: &str) -> Vec<Event> {
    let api: Api<Event> = Api::all(client.clone());
    let params = ListParams::default().fields(&format!("involvedObject.uid={uid}"));
    api.list(&params).await.map(|l| l.items).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heal::detect::ProblemKind;

    #[test]
    fn a_new_restart_is_a_new_occurrence() {
        let problem = |restart_count| Problem {
            namespace: "a".into(),
            object_kind: "Pod",
            object_name: "p".into(),
            uid: "u".into(),
            kind: ProblemKind::OomKilled {
                container: "app".into(),
                init: false,
                restart_count,
            },
        };
        let mut handled = Handled::default();
        assert!(handled.first_time(&problem(1)));
        assert!(!handled.first_time(&problem(1)));
        assert!(handled.first_time(&problem(2)));
    }
}
