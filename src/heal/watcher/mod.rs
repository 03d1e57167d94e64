//! The watcher inside `selfheal serve`: while this replica leads, watches of pods, claims and TLS
//! Secrets feed a work queue; workers diagnose and fix through the same loop as `selfheal heal`.
//!
//! **Leadership.** The watches live only for a leadership term: each term starts with a fresh
//! list of every pod, claim, Secret and Warning event, so whatever failed during a handover (or
//! while no replica ran) is examined by the new leader. When the term ends (Lease lost, local deadline passed, or
//! released on shutdown) everything of the term is dropped at once, in-flight handlings included:
//! a replica that may no longer lead stops acting. Followers keep no caches.
//!
//! **Queue.** A work queue of our own ([`queue::WorkQueue`]) rather than kube-runtime's
//! `Controller`, because the unit of work is a *workload*, not an object: the pods of one
//! Deployment are handled one after the other (a memory raise for one pod must be seen by the
//! next), while a `Controller<Pod>` would reconcile them in parallel and needs a reflector cache of
//! every pod (memory growing with the cluster, where only objects with a problem or a pending
//! time-based check are kept here). The queue gives the guarantees `Controller` gives:
//! - different keys are worked concurrently, up to `concurrency`; one key by one worker at a
//!   time; a change seen while a key is worked makes it due again when the worker is done;
//! - every handling runs in its own task with a deadline (`handle_timeout`), so a hung API call
//!   or a refused eviction holds one worker, never the watches nor another workload;
//! - requeue instead of luck: a rate-limited action is retried when the limiter's backoff ends,
//!   a failed one after a doubling backoff, and a time-based problem (stuck creating, claim
//!   pending, certificate expiring) is looked at the moment it can first be true — no watch
//!   event is needed for any of them;
//! - level-based: the worker judges the object as last seen, at the time it runs.
//!
//! **Warnings.** A state a Warning event explains (a pod creating with `FailedMount`, a
//! container failing its readiness probe, a claim with `ProvisioningFailed`) is reported as soon
//! as the Warning is seen, not after the grace period kept for states nothing explains. One
//! cluster-wide watch of `core/v1` Events with the field selector `type=Warning` (filtered by the
//! apiserver, so Normal events never cross the wire) feeds [`warnings::RecentWarnings`]:
//! a few recent Warnings per pod or claim, bounded in objects, size and age. A new Warning about
//! a tracked object makes its workload due; detection (`detect::pod_problems_with`,
//! `claim_problem_with`) reads them, and the worker's view carries them so the diagnosis quotes
//! them. This costs one watch connection; polling each pending pod's events would cost a list
//! per pod per check and still see a Warning late.
//!
//! **Memory.** Only objects with a problem or a pending check are held; they, their dedup
//! entries and their certificate-expiry series go when the object is deleted or missing from a
//! re-list, and dedup and rate-limit entries expire. Warnings are bounded on their own (see
//! [`warnings`]): they go when their object is deleted, and expire.

mod handled;
mod queue;
mod subject;
mod warnings;

pub use handled::Handled;
pub use queue::WorkQueue;
pub use subject::Subject;
pub use warnings::RecentWarnings;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod, Secret};
use kube::api::ListParams;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::cluster::leader::Leadership;
use crate::cluster::limits::LimitSnapshot;
use crate::heal::call::CALL_TIMEOUT;
use crate::heal::detect::{Problem, ProblemKey, Thresholds};
use crate::heal::execute::Executor;
use crate::heal::execute::Outcome;
use crate::heal::facts::Reader;
use crate::heal::inspect::{self, ClusterView, Finding, Logs};
use crate::heal::plan::Rails;
use crate::heal::probe::{self, ProbeTarget};
use crate::heal::ratelimit::ActionKey;
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
    /// Watch `kubernetes.io/tls` Secrets and check their certificates (needs RBAC on Secrets).
    pub check_certificates: bool,
    /// How soon a certificate still wrong after its handling is looked at again.
    pub certificate_interval: Duration,
    /// The namespaces' LimitRange maxima, kept current by a watch (`limits::keep_current`).
    pub limits: LimitSnapshot,
    /// Dependencies probed over TCP (`namespace/service:port`).
    pub probes: Vec<ProbeTarget>,
    pub probe_interval: Duration,
    /// Workloads handled at the same time.
    pub concurrency: usize,
    /// Longest time one workload's diagnosis and fix may take; then it is retried later.
    pub handle_timeout: Duration,
}

impl WatcherConfig {
    /// The defaults `selfheal serve` uses, for a scope (its protected namespaces are protected
    /// for the rails too).
    pub fn new(scope: Scope, mut rails: Rails, limits: LimitSnapshot) -> Self {
        for namespace in &scope.protected {
            if !rails.targeting.is_protected(namespace) {
                rails.targeting.protected.push(namespace.clone());
            }
        }
        Self {
            scope,
            include: Vec::new(),
            rails,
            thresholds: Thresholds::default(),
            check_certificates: true,
            certificate_interval: Duration::from_secs(600),
            limits,
            probes: Vec::new(),
            probe_interval: Duration::from_secs(30),
            concurrency: 4,
            handle_timeout: Duration::from_secs(60),
        }
    }

    fn in_scope(&self, namespace: &str) -> bool {
        self.rails.targeting.in_scope(namespace)
            && (self.include.is_empty() || self.include.iter().any(|i| i == namespace))
    }
}

/// How long a handled problem is remembered without being seen again.
const HANDLED_TTL: Duration = Duration::from_secs(6 * 3600);
/// First retry after a failed handling; doubles per failure up to `MAX_FAILURE_BACKOFF`.
const FAILURE_BACKOFF: Duration = Duration::from_secs(5);
const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(300);
/// How often expired memory is dropped.
const HOUSEKEEPING: Duration = Duration::from_secs(60);
/// How long work waits for the first list of claims.
const CLAIMS_WAIT: Duration = Duration::from_secs(10);
/// Pods and claims whose recent Warning events are kept, at most (with `WARNINGS_PER_OBJECT`:
/// about 3 MB of kubelet Warnings, 12 MB if every message has the longest length kept).
const WARNED_OBJECTS: usize = 2048;
/// Recent Warning events kept per object (the newest).
const WARNINGS_PER_OBJECT: usize = 4;
/// How long an object's Warnings are kept after its last one (the apiserver's default event TTL).
const WARNING_TTL: Duration = Duration::from_secs(3600);

/// Runs until the task is dropped: leads whenever `leadership` says so.
pub async fn run(
    client: Client,
    executor: Arc<Executor>,
    store: FixStore,
    config: WatcherConfig,
    leadership: Leadership,
    metrics: Arc<Metrics>,
) {
    let context = Arc::new(Context {
        client,
        executor,
        store,
        config,
        metrics,
    });
    loop {
        leadership.gained().await;
        tracing::info!("leading: examining every pod, claim and certificate");
        tokio::select! {
            () = lead(context.clone()) => {}
            () = probe_dependencies(context.clone()) => {}
            () = leadership.lost() => tracing::info!("no longer leading: stopped acting"),
        }
        // Only the leader exports certificate expiries and a queue.
        context.metrics.certificate_expiry.clear();
        context.metrics.watcher_queue.set(0);
        context.metrics.watcher_tracked.set(0);
    }
}

struct Context {
    client: Client,
    executor: Arc<Executor>,
    store: FixStore,
    config: WatcherConfig,
    metrics: Arc<Metrics>,
}

/// One object held by the queue, with the earliest time it may be handled again.
struct Tracked {
    subject: Subject,
    not_before: Option<Instant>,
    /// `not_before` is a later look at a settled problem (a certificate), not a backoff: any
    /// change to the object is looked at at once.
    recheck: bool,
}

/// What a watch said, for any kind of subject.
enum Seen {
    Applied(Subject),
    Deleted(Subject),
    /// A (re-)list of this kind begins.
    ListStarted(&'static str),
    Listed(Subject),
    ListDone(&'static str),
    /// A Warning event, new, updated or listed.
    Warned(Box<Event>),
    /// A Warning event was deleted (its time to live passed).
    WarningGone(Box<Event>),
}

fn seen<K>(event: watcher::Event<K>, kind: &'static str, wrap: impl Fn(K) -> Subject) -> Seen {
    match event {
        watcher::Event::Apply(object) => Seen::Applied(wrap(object)),
        watcher::Event::Delete(object) => Seen::Deleted(wrap(object)),
        watcher::Event::Init => Seen::ListStarted(kind),
        watcher::Event::InitApply(object) => Seen::Listed(wrap(object)),
        watcher::Event::InitDone => Seen::ListDone(kind),
    }
}

fn seen_warning(event: watcher::Event<Event>) -> Seen {
    match event {
        watcher::Event::Apply(event) | watcher::Event::InitApply(event) => {
            Seen::Warned(Box::new(event))
        }
        watcher::Event::Delete(event) => Seen::WarningGone(Box::new(event)),
        watcher::Event::Init => Seen::ListStarted("Event"),
        watcher::Event::InitDone => Seen::ListDone("Event"),
    }
}

/// The state of one leadership term.
struct Term {
    context: Arc<Context>,
    queue: WorkQueue,
    tracked: HashMap<String, BTreeMap<String, Tracked>>,
    handled: Handled,
    failures: HashMap<String, u32>,
    /// Per kind, the UIDs seen by a re-list in progress.
    listing: HashMap<&'static str, HashSet<String>>,
    /// The key and problems each running worker task has.
    working: HashMap<tokio::task::Id, (String, Vec<Problem>)>,
    /// Secrets whose certificate expiry is exported, with their UIDs.
    exported: HashMap<SecretLabels, String>,
    /// Recent Warning events about pods and claims.
    warnings: RecentWarnings,
}

/// Watches and works the queue for one leadership term; returns only if the watches end.
async fn lead(context: Arc<Context>) {
    let client = context.client.clone();
    let pods = watcher(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().page_size(500),
    )
    .default_backoff()
    .map(|event| event.map(|e| seen(e, "Pod", |pod| Subject::Pod(Box::new(pod)))))
    .boxed();
    let (claim_cache, claim_writer) = reflector::store::<PersistentVolumeClaim>();
    let mut claims_listed = false;
    let claims = watcher(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|claim| claim.metadata.managed_fields = None)
    .reflect(claim_writer)
    .map(|event| {
        event.map(|e| {
            seen(e, "PersistentVolumeClaim", |claim| {
                Subject::Claim(Box::new(claim))
            })
        })
    })
    .boxed();
    let secrets = if context.config.check_certificates {
        watcher(
            Api::<Secret>::all(client.clone()),
            watcher::Config::default().fields("type=kubernetes.io/tls"),
        )
        .default_backoff()
        .modify(|secret| secret.metadata.managed_fields = None)
        .map(|event| event.map(|e| seen(e, "Secret", |secret| Subject::Secret(Box::new(secret)))))
        .boxed()
    } else {
        futures::stream::pending().boxed()
    };
    let warnings = watcher(
        Api::<Event>::all(client.clone()),
        watcher::Config::default()
            .fields("type=Warning")
            .page_size(500),
    )
    .default_backoff()
    .map(|event| event.map(seen_warning))
    .boxed();
    let mut events = futures::stream::select(
        futures::stream::select(pods, claims),
        futures::stream::select(secrets, warnings),
    );

    let mut term = Term {
        context: context.clone(),
        queue: WorkQueue::default(),
        tracked: HashMap::new(),
        handled: Handled::new(HANDLED_TTL),
        failures: HashMap::new(),
        listing: HashMap::new(),
        working: HashMap::new(),
        exported: HashMap::new(),
        warnings: RecentWarnings::new(WARNED_OBJECTS, WARNINGS_PER_OBJECT, WARNING_TTL),
    };
    let mut workers: JoinSet<Worked> = JoinSet::new();
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let claims_awaited_until = Instant::now() + CLAIMS_WAIT;
    loop {
        let metrics = &context.metrics;
        metrics
            .watcher_queue
            .set(i64::try_from(term.queue.len()).unwrap_or(i64::MAX));
        metrics.watcher_tracked.set(
            i64::try_from(term.tracked.values().map(BTreeMap::len).sum::<usize>())
                .unwrap_or(i64::MAX),
        );
        // Claims are context for pods (a full volume's size): work waits for their first list,
        // a bounded time (without RBAC on claims it never comes).
        let wake = if claims_listed || Instant::now() >= claims_awaited_until {
            term.dispatch(&mut workers, &claim_cache);
            // With every worker busy, a finishing worker is what wakes the loop.
            (workers.len() < context.config.concurrency.max(1))
                .then(|| term.queue.next_wake())
                .flatten()
        } else {
            Some(claims_awaited_until)
        };
        tokio::select! {
            next = events.next() => match next {
                Some(Ok(seen)) => {
                    claims_listed |= matches!(seen, Seen::ListDone("PersistentVolumeClaim"));
                    term.on_seen(seen);
                }
                Some(Err(error)) => tracing::warn!(%error, "watch error; retrying"),
                None => return,
            },
            Some(joined) = workers.join_next_with_id(), if !workers.is_empty() => match joined {
                Ok((id, worked)) => {
                    term.working.remove(&id);
                    term.finish(worked);
                }
                // A handling that panicked is a failed one: retried after a backoff.
                Err(error) => {
                    tracing::error!(%error, "a handling task ended abnormally");
                    if let Some((key, wanted)) = term.working.remove(&error.id()) {
                        term.finish(Worked { key, wanted, results: None });
                    }
                }
            },
            () = sleep_until(wake), if wake.is_some() => {}
            _ = housekeeping.tick() => {
                term.handled.expire(Instant::now());
                term.warnings.expire(Instant::now());
                context.executor.limiter().expire(std::time::Instant::now());
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What a worker hands back.
struct Worked {
    key: String,
    wanted: Vec<Problem>,
    /// `None`: the handling ran past its deadline.
    results: Option<Vec<run::Handled>>,
}

impl Term {
    fn on_seen(&mut self, seen: Seen) {
        match seen {
            Seen::Applied(subject) => self.observe(subject),
            Seen::Listed(subject) => {
                self.listing
                    .entry(subject.kind())
                    .or_default()
                    .insert(subject.uid());
                self.observe(subject);
            }
            Seen::Deleted(subject) => self.deleted(&subject),
            Seen::Warned(event) => self.warned(*event),
            Seen::WarningGone(event) => self.warnings.remove(&event),
            // A re-list of the events replaces what was kept.
            Seen::ListStarted("Event") => self.warnings.clear(),
            Seen::ListDone("Event") => {}
            Seen::ListStarted(kind) => {
                self.listing.insert(kind, HashSet::new());
            }
            Seen::ListDone(kind) => self.list_done(kind),
        }
    }

    /// A subject as it is now: tracked if it has a problem to handle or a check due later.
    fn observe(&mut self, subject: Subject) {
        if let Subject::Secret(secret) = &subject {
            self.export_expiry(secret);
        }
        if !self.context.config.in_scope(&subject.namespace()) {
            return;
        }
        let key = subject.work_key();
        let uid = subject.uid();
        let not_before = self.carried_backoff(&key, &uid, &subject);
        let entries = self.tracked.entry(key.clone()).or_default();
        entries.insert(
            uid,
            Tracked {
                subject,
                not_before,
                recheck: false,
            },
        );
        self.reschedule(&key);
    }

    /// The backoff an object keeps when it is seen again: only while it has no problem the earlier
    /// sighting did not have. A new occurrence (a new OOM kill, a new restart) is handled at once,
    /// not after the backoff of an earlier one that failed. A later look at a settled problem is
    /// not a backoff: a change to the object is looked at at once.
    fn carried_backoff(&mut self, key: &str, uid: &str, subject: &Subject) -> Option<Instant> {
        let previous = self.tracked.get(key)?.get(uid)?;
        let not_before = previous.not_before?;
        let changed = previous.subject.meta().resource_version != subject.meta().resource_version;
        if previous.recheck && changed {
            return None;
        }
        let previous = previous.subject.clone();
        let (now, at) = (Timestamp::now(), Instant::now());
        let before: HashSet<ProblemKey> = self
            .fresh(&previous, now, at)
            .iter()
            .map(Problem::key)
            .collect();
        let new_problem = self
            .fresh(subject, now, at)
            .iter()
            .any(|problem| !before.contains(&problem.key()));
        (!new_problem).then_some(not_before)
    }

    /// A Warning event: kept if it is about a pod or a claim in scope; the workload of a
    /// tracked object it is about is due at once.
    fn warned(&mut self, event: Event) {
        let namespace = event
            .involved_object
            .namespace
            .as_deref()
            .or(event.metadata.namespace.as_deref())
            .unwrap_or_default();
        if !self.context.config.in_scope(namespace) {
            return;
        }
        // When the Warnings kept are at their bound, those of tracked objects stay longest.
        let tracked: HashSet<&str> = if self.warnings.is_full() {
            self.tracked
                .values()
                .flat_map(|entries| entries.keys().map(String::as_str))
                .collect()
        } else {
            HashSet::new()
        };
        let recorded = self
            .warnings
            .record(event, Instant::now(), |uid| tracked.contains(uid));
        let Some(uid) = recorded else {
            return;
        };
        let key = self
            .tracked
            .iter()
            .find(|(_, entries)| entries.contains_key(&uid))
            .map(|(key, _)| key.clone());
        if let Some(key) = key {
            self.reschedule(&key);
        }
    }

    fn deleted(&mut self, subject: &Subject) {
        let uid = subject.uid();
        self.handled.forget_object(&uid);
        self.warnings.forget_object(&uid);
        if let Subject::Secret(secret) = subject {
            let labels = secret_labels(secret);
            self.context.metrics.certificate_expiry.remove(&labels);
            self.exported.remove(&labels);
            self.context.executor.limiter().reset(&ActionKey::Renew {
                namespace: labels.namespace.clone(),
                secret: labels.secret.clone(),
            });
        }
        let key = subject.work_key();
        if let Some(entries) = self.tracked.get_mut(&key) {
            entries.remove(&uid);
        }
        self.reschedule(&key);
    }

    /// A re-list finished: what it did not list is gone.
    fn list_done(&mut self, kind: &'static str) {
        if let Some(listed) = self.listing.remove(kind) {
            self.handled
                .retain_objects(kind, |uid| listed.contains(uid));
            let mut emptied = Vec::new();
            for (key, entries) in &mut self.tracked {
                entries.retain(|uid, t| t.subject.kind() != kind || listed.contains(uid));
                if entries.is_empty() {
                    emptied.push(key.clone());
                }
            }
            for key in emptied {
                self.reschedule(&key);
            }
            if kind == "Secret" {
                let gone: Vec<SecretLabels> = self
                    .exported
                    .iter()
                    .filter(|(_, uid)| !listed.contains(*uid))
                    .map(|(labels, _)| labels.clone())
                    .collect();
                for labels in gone {
                    self.context.metrics.certificate_expiry.remove(&labels);
                    self.exported.remove(&labels);
                }
            }
        }
    }

    /// Problems of a subject that are in scope and not yet handled, at `now`.
    fn fresh(&mut self, subject: &Subject, now: Timestamp, at: Instant) -> Vec<Problem> {
        let warnings = self.warnings.about(subject.kind(), subject.meta());
        subject
            .problems(&warnings, now, &self.context.config.thresholds)
            .into_iter()
            .filter(|p| self.context.config.in_scope(&p.namespace))
            .filter(|p| !self.handled.contains(p, at))
            .collect()
    }

    /// Schedules `key` at the earliest time one of its subjects needs a look; drops what
    /// needs none.
    fn reschedule(&mut self, key: &str) {
        let now = Timestamp::now();
        let at = Instant::now();
        let Some(mut entries) = self.tracked.remove(key) else {
            self.queue.forget(key);
            return;
        };
        let mut earliest: Option<Instant> = None;
        entries.retain(|_, tracked| {
            let next = if !self.fresh(&tracked.subject, now, at).is_empty() {
                Some(tracked.not_before.map_or(at, |nb| nb.max(at)))
            } else {
                tracked
                    .subject
                    .recheck_at(now, &self.context.config.thresholds)
                    .filter(|t| *t > now)
                    .and_then(|t| at.checked_add(t.duration_since(now).unsigned_abs()))
            };
            if let Some(next) = next {
                earliest = Some(earliest.map_or(next, |e| e.min(next)));
            }
            next.is_some()
        });
        self.queue.forget(key);
        match earliest {
            Some(next) => {
                self.queue.schedule(key, next);
                self.tracked.insert(key.to_string(), entries);
            }
            None => {
                self.failures.remove(key);
            }
        }
    }

    /// Starts workers on due keys, up to the concurrency.
    fn dispatch(&mut self, workers: &mut JoinSet<Worked>, claims: &Store<PersistentVolumeClaim>) {
        while workers.len() < self.context.config.concurrency.max(1) {
            let at = Instant::now();
            let Some(key) = self.queue.next_due(at) else {
                return;
            };
            let now = Timestamp::now();
            let subjects: Vec<Subject> = self
                .tracked
                .get(&key)
                .into_iter()
                .flat_map(|entries| entries.values())
                .filter(|t| t.not_before.is_none_or(|nb| nb <= at))
                .map(|t| t.subject.clone())
                .collect();
            let wanted: Vec<Problem> = subjects
                .iter()
                .flat_map(|s| self.fresh(s, now, at))
                .collect();
            if wanted.is_empty() {
                self.queue.done(&key);
                self.reschedule(&key);
                continue;
            }
            let warned: Vec<Event> = subjects
                .iter()
                .flat_map(|s| self.warnings.events_of(&s.uid()))
                .collect();
            let context = self.context.clone();
            let claims = claims.clone();
            let task_key = (key.clone(), wanted.clone());
            let task = workers.spawn(async move {
                let handling = work(&context, subjects, warned, &wanted, &claims, now);
                let results = tokio::time::timeout(context.config.handle_timeout, handling)
                    .await
                    .ok();
                Worked {
                    key,
                    wanted,
                    results,
                }
            });
            self.working.insert(task.id(), task_key);
        }
    }

    /// A worker finished: remembers what was settled, retries the rest when it may.
    fn finish(&mut self, worked: Worked) {
        let Worked {
            key,
            wanted,
            results,
        } = worked;
        self.queue.done(&key);
        let at = Instant::now();
        let mut retry_at: Option<Instant> = None;
        let mut retry = |when: Instant| retry_at = Some(retry_at.map_or(when, |r| r.min(when)));
        let mut settled = Vec::new();
        let mut failed = false;
        match &results {
            Some(results) => {
                for done in results {
                    // A rate-limited action, or an eviction a PodDisruptionBudget refused, is
                    // tried again when its backoff ends.
                    if let Some(wait) = done.outcome.retry_in() {
                        retry(at + wait);
                    } else if let Outcome::Failed(_) = done.outcome {
                        failed = true;
                    } else {
                        settled.push(done.finding.problem.key());
                    }
                }
                // A wanted problem that had no finding (gone by the time the worker looked)
                // is settled too: a new occurrence has a new key.
                let answered: HashSet<ProblemKey> =
                    results.iter().map(|d| d.finding.problem.key()).collect();
                settled.extend(
                    wanted
                        .iter()
                        .map(Problem::key)
                        .filter(|k| !answered.contains(k)),
                );
            }
            None => {
                tracing::warn!(key = %key, "handling took longer than {}s; will retry", self.context.config.handle_timeout.as_secs());
                failed = true;
            }
        }
        if failed {
            let failures = self.failures.entry(key.clone()).or_insert(0);
            *failures = failures.saturating_add(1);
            let backoff = FAILURE_BACKOFF
                .saturating_mul(1 << (*failures - 1).min(16))
                .min(MAX_FAILURE_BACKOFF);
            retry(at + backoff);
        } else {
            self.failures.remove(&key);
        }
        let certificate_recheck = at + self.context.config.certificate_interval;
        for problem in &wanted {
            let key_of = problem.key();
            if !settled.contains(&key_of) {
                continue;
            }
            // Certificates are not deduplicated: one still wrong is looked at again later,
            // within the rate limit, until the attempt cap turns it into an alert.
            let still_there = self
                .tracked
                .get(&key)
                .is_some_and(|entries| entries.contains_key(&problem.uid));
            if problem.object_kind == "Secret" {
                self.delay(&key, &problem.uid, certificate_recheck);
                if let Some(tracked) = self
                    .tracked
                    .get_mut(&key)
                    .and_then(|e| e.get_mut(&problem.uid))
                {
                    tracked.recheck = true;
                }
            } else if still_there {
                // (An object deleted meanwhile leaves nothing behind.)
                self.handled.insert(problem, at);
            }
        }
        if let Some(when) = retry_at {
            let uids: HashSet<&str> = wanted.iter().map(|p| p.uid.as_str()).collect();
            for uid in uids {
                self.delay(&key, uid, when);
            }
        }
        self.reschedule(&key);
    }

    fn delay(&mut self, key: &str, uid: &str, until: Instant) {
        if let Some(tracked) = self.tracked.get_mut(key).and_then(|e| e.get_mut(uid)) {
            tracked.not_before = Some(tracked.not_before.map_or(until, |nb| nb.max(until)));
            tracked.recheck = false;
        }
    }

    fn export_expiry(&mut self, secret: &Secret) {
        let cert = secret.data.as_ref().and_then(|d| d.get("tls.crt"));
        let Some(validity) = cert.and_then(|c| crate::certs::check::validity(&c.0).ok()) else {
            return;
        };
        let labels = secret_labels(secret);
        self.context
            .metrics
            .certificate_expiry
            .get_or_create(&labels)
            .set(validity.not_after.as_second());
        self.exported
            .insert(labels, secret.metadata.uid.clone().unwrap_or_default());
    }
}

fn secret_labels(secret: &Secret) -> SecretLabels {
    SecretLabels {
        namespace: secret.metadata.namespace.clone().unwrap_or_default(),
        secret: secret.metadata.name.clone().unwrap_or_default(),
    }
}

/// Diagnoses and fixes the `wanted` problems of `subjects` (the rest of the view is context).
/// The view holds the subjects' events (listed now) and the Warnings kept about them (`warned`,
/// in case the list fails or lags), so the diagnosis quotes what detection saw.
async fn work(
    context: &Context,
    subjects: Vec<Subject>,
    warned: Vec<Event>,
    wanted: &[Problem],
    claims: &Store<PersistentVolumeClaim>,
    now: Timestamp,
) -> Vec<run::Handled> {
    let mut view = ClusterView {
        claims: claims.state().iter().map(|c| (**c).clone()).collect(),
        ..ClusterView::default()
    };
    let uids: Vec<String> = subjects.iter().map(Subject::uid).collect();
    for subject in subjects {
        match subject {
            Subject::Pod(pod) => view.pods.push(*pod),
            Subject::Secret(secret) => view.secrets.push(*secret),
            // Claims are in the view already (from the cache).
            Subject::Claim(_) => {}
        }
    }
    for uid in &uids {
        view.events.extend(events_of(&context.client, uid).await);
    }
    for event in warned {
        let listed = view
            .events
            .iter()
            .any(|e| e.metadata.uid.is_some() && e.metadata.uid == event.metadata.uid);
        if !listed {
            view.events.push(event);
        }
    }
    let wanted_keys: HashSet<ProblemKey> = wanted.iter().map(Problem::key).collect();
    let mut seen = HashSet::new();
    let findings: Vec<Finding> = diagnose(context, &mut view, wanted, now)
        .await
        .into_iter()
        .filter(|f| wanted_keys.contains(&f.problem.key()))
        .filter(|f| seen.insert(f.problem.key()))
        .filter(|f| context.config.scope.includes(f))
        .collect();
    for finding in &findings {
        count_problem(&context.metrics, finding);
    }
    let healing = run::Healing {
        executor: &context.executor,
        rails: &context.config.rails,
        index: context.store.snapshot().current(),
        limits: context.config.limits.clone(),
        room: Default::default(),
        now,
    };
    let mut reader = Reader::new(&context.client, context.executor.call_timeout());
    healing.heal(&mut reader, &view, findings).await
}

/// The findings of `view` with the watcher's grace periods (those detection used), knowing the
/// Jobs behind the `wanted` problems' pods and the logs their diagnoses need.
async fn diagnose(
    context: &Context,
    view: &mut ClusterView,
    wanted: &[Problem],
    now: Timestamp,
) -> Vec<Finding> {
    let troubled: Vec<&str> = wanted.iter().map(|p| p.uid.as_str()).collect();
    let learned = inspect::learn_unknown_jobs(&context.client, view, &troubled).await;
    view.owners.extend(learned);
    let logs = if wanted.iter().any(inspect::wants_logs) {
        let problems: Vec<&Problem> = wanted.iter().collect();
        inspect::fetch_logs(&context.client, &problems).await
    } else {
        Logs::new()
    };
    inspect::findings(view, &logs, now, &context.config.thresholds)
}

/// Probes every configured dependency every `probe_interval`; a failing one is healed like a
/// caller's "connection refused" (its outage start names the restart, so one outage restarts
/// it at most once). Runs beside the queue: a slow probe delays only the probes.
async fn probe_dependencies(context: Arc<Context>) {
    let config = &context.config;
    if config.probes.is_empty() {
        return std::future::pending().await;
    }
    let mut outages: HashMap<ProbeTarget, String> = HashMap::new();
    let mut ticker = tokio::time::interval(config.probe_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        for target in &config.probes {
            let failure = match probe::probe(&context.client, target, Duration::from_secs(2)).await
            {
                Ok(()) => {
                    outages.remove(target);
                    continue;
                }
                Err(failure) => failure,
            };
            let now = Timestamp::now();
            let since = outages
                .entry(target.clone())
                .or_insert_with(|| now.round(jiff::Unit::Second).unwrap_or(now).to_string())
                .clone();
            tracing::warn!(%target, error = %failure, %since, "dependency probe failed");
            let finding = probe::finding(target, &failure, &since);
            count_problem(&context.metrics, &finding);
            let healing = run::Healing {
                executor: &context.executor,
                rails: &config.rails,
                index: context.store.snapshot().current(),
                limits: config.limits.clone(),
                room: Default::default(),
                now,
            };
            let mut reader = Reader::new(&context.client, context.executor.call_timeout());
            let view = ClusterView::default();
            let handling = healing.heal(&mut reader, &view, vec![finding]);
            if tokio::time::timeout(config.handle_timeout, handling)
                .await
                .is_err()
            {
                tracing::warn!(%target, "restarting the dependency took longer than {}s; will retry on the next probe", config.handle_timeout.as_secs());
            }
        }
    }
}

fn count_problem(metrics: &Metrics, finding: &Finding) {
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
    match crate::heal::call::within(
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
