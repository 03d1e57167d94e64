//! The watcher inside `selfheal serve`: while this replica leads, watches of pods, claims,
//! namespaces, TLS Secrets and Warning events feed a pure index ([`index::WatchIndex`]); workers
//! take its work items and handle them through the same loop as `selfheal heal` (facts, one
//! decision, the executor).
//!
//! **Shape.** [`index::WatchIndex`] holds the state and the scheduling rules (what is tracked,
//! when it is due, what was handled) with no client and no metrics, and is tested in
//! microseconds; this module is the thin loop around it: it feeds it watch events, starts
//! workers on due items, settles their outcomes, and carries out its effects (certificate-expiry
//! series, forgetting the history of deleted objects).
//!
//! **Leadership.** The watches live only for a leadership term: each term starts with a fresh
//! list of every pod, claim, namespace, Secret and Warning event, so whatever failed during a
//! handover (or while no replica ran) is examined by the new leader. When the term ends (Lease
//! lost, local deadline passed, or released on shutdown) everything of the term is dropped at
//! once, in-flight handlings included: a replica that may no longer lead stops acting.
//! Followers keep no caches.
//!
//! **Queue.** A work queue of our own ([`queue::WorkQueue`]) rather than kube-runtime's
//! `Controller`, because the unit of work is a *workload*, not an object: the pods of one
//! Deployment are handled one after the other (a memory raise for one pod must be seen by the
//! next), while a `Controller<Pod>` would reconcile them in parallel. The queue gives the
//! guarantees `Controller` gives:
//! - different keys are worked concurrently, up to `concurrency`; one key by one worker at a
//!   time; a change seen while a key is worked makes it due again when the worker is done;
//! - every handling runs in its own task with a deadline (`handle_timeout`), so a hung API call
//!   or a refused eviction holds one worker, never the watches nor another workload;
//! - requeue instead of luck: see the scheduling rules of [`index`];
//! - level-based: the worker judges the object as last seen, at the time it runs.
//!
//! **Facts once.** The stores the watches keep (pods, claims, namespaces with their labels) are
//! the facts decisions read, with no API call: the labels of a target's namespace, the claims a
//! pod mounts, the pods behind a Service. A work item carries its detected problems; the worker
//! reads the evidence once (the object's events when its diagnosis needs them, the log tails a
//! crash loop needs, a Job the view does not know), diagnoses, and never detects again. Stored
//! objects are stripped of what no decision reads ([`strip`]: managed fields, container
//! environments, probes, non-claim volumes, Secret data other than the certificate and key).
//!
//! **Warnings.** A state a Warning event explains (a pod creating with `FailedMount`, a
//! container failing its readiness probe, a claim with `ProvisioningFailed`) is reported as soon
//! as the Warning is seen, not after the grace period kept for states nothing explains. One
//! cluster-wide watch of `core/v1` Events with the field selector `type=Warning` (filtered by the
//! apiserver, so Normal events never cross the wire) feeds [`warnings::RecentWarnings`]:
//! a few recent Warnings per pod or claim, bounded in objects, size and age.
//!
//! **Memory.** The index holds only objects with a problem or a pending check; they, their dedup
//! entries and their certificate-expiry series go when the object is deleted or missing from a
//! re-list, and dedup and rate-limit entries expire. Warnings are bounded on their own (see
//! `warnings`).

mod config;
mod feed;
mod handled;
pub mod index;
mod probes;
mod queue;
pub mod strip;
mod subject;
mod tracked;
mod warnings;
mod work;

pub use config::WatcherConfig;
pub use handled::Handled;
pub use index::{Effect, IndexConfig, Now, Settlement, WatchIndex, WorkItem};
pub use queue::WorkQueue;
pub use subject::Subject;
pub use warnings::RecentWarnings;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Event, Namespace, PersistentVolumeClaim, Pod, Secret};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::cluster::leader::Leadership;
use crate::core::targeting::Targeting;
use crate::heal::execute::Executor;
use crate::heal::facts::WorkloadStores;
use crate::metrics::Metrics;
use crate::store::FixStore;
use feed::{Seen, carry_out, list_end, on_seen, seen, seen_warning};
use work::{Worked, work};

/// How often expired memory is dropped.
const HOUSEKEEPING: Duration = Duration::from_secs(60);
/// How long work waits for the first list of claims.
const CLAIMS_WAIT: Duration = Duration::from_secs(10);

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
            () = probes::probe_dependencies(context.clone()) => {}
            () = leadership.lost() => tracing::info!("no longer leading: stopped acting"),
        }
        // Only the leader exports certificate expiries and a queue.
        context.metrics.certificate_expiry.clear();
        context.metrics.watcher_queue.set(0);
        context.metrics.watcher_tracked.set(0);
    }
}

pub(super) struct Context {
    client: Client,
    executor: Arc<Executor>,
    store: FixStore,
    config: WatcherConfig,
    metrics: Arc<Metrics>,
}

impl Context {
    /// The index's configuration: the watcher's targeting (with `include` as the watched
    /// namespaces when set), thresholds and certificate interval.
    fn index_config(&self) -> IndexConfig {
        let config = &self.config;
        let targeting = &config.rails.targeting;
        IndexConfig {
            thresholds: config.thresholds,
            targeting: Targeting::new(
                targeting.protected.clone(),
                if config.include.is_empty() {
                    targeting.watched.clone()
                } else {
                    config.include.clone()
                },
            ),
            certificate_interval: config.certificate_interval,
            ..IndexConfig::default()
        }
    }
}

/// The stores the watches keep, and whether each has been listed once.
#[derive(Clone)]
pub(super) struct Stores {
    pods: Store<Pod>,
    claims: Store<PersistentVolumeClaim>,
    namespaces: Store<Namespace>,
    deployments: Store<Deployment>,
    statefulsets: Store<StatefulSet>,
    daemonsets: Store<DaemonSet>,
    cronjobs: Store<CronJob>,
    listed: HashSet<&'static str>,
}

impl Stores {
    fn listed(&self, kind: &str) -> bool {
        self.listed.contains(kind)
    }

    /// The workload stores that are listed: the facts a raise or a restart reads, with no GET.
    fn workloads(&self) -> WorkloadStores {
        WorkloadStores {
            deployments: self.listed("Deployment").then(|| self.deployments.clone()),
            statefulsets: self
                .listed("StatefulSet")
                .then(|| self.statefulsets.clone()),
            daemonsets: self.listed("DaemonSet").then(|| self.daemonsets.clone()),
            cronjobs: self.listed("CronJob").then(|| self.cronjobs.clone()),
        }
    }
}

/// A watch of every `K`, stripped by `strip`, kept in a store; only its lists' ends are events.
fn kept<K>(
    client: &Client,
    kind: &'static str,
    strip: fn(&mut K),
) -> (
    Store<K>,
    futures::stream::BoxStream<'static, Result<Seen, watcher::Error>>,
)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let stream = watcher(Api::<K>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(strip)
        .reflect(writer)
        .filter_map(move |event| async move {
            match event {
                Ok(event) => list_end(event, kind).map(Ok),
                Err(error) => Some(Err(error)),
            }
        })
        .boxed();
    (store, stream)
}

/// Watches and works the queue for one leadership term; returns only if the watches end.
async fn lead(context: Arc<Context>) {
    let client = context.client.clone();
    let (pod_store, pod_writer) = reflector::store::<Pod>();
    let pods = watcher(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().page_size(500),
    )
    .default_backoff()
    .modify(strip::pod)
    .reflect(pod_writer)
    .map(|event| event.map(|e| seen(e, "Pod", |pod| Subject::Pod(Box::new(pod)))))
    .boxed();
    let (claim_store, claim_writer) = reflector::store::<PersistentVolumeClaim>();
    let claims = watcher(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(strip::claim)
    .reflect(claim_writer)
    .map(|event| {
        event.map(|e| {
            seen(e, "PersistentVolumeClaim", |claim| {
                Subject::Claim(Box::new(claim))
            })
        })
    })
    .boxed();
    let (namespace_store, namespaces) = kept::<Namespace>(&client, "Namespace", strip::namespace);
    let (deployments, deployment_watch) =
        kept::<Deployment>(&client, "Deployment", strip::workload);
    let (statefulsets, statefulset_watch) =
        kept::<StatefulSet>(&client, "StatefulSet", strip::workload);
    let (daemonsets, daemonset_watch) = kept::<DaemonSet>(&client, "DaemonSet", strip::workload);
    let (cronjobs, cronjob_watch) = kept::<CronJob>(&client, "CronJob", strip::workload);
    let workload_watches = if context.config.watch_workloads {
        vec![
            deployment_watch,
            statefulset_watch,
            daemonset_watch,
            cronjob_watch,
        ]
    } else {
        // Never listed: the workloads are read when a decision needs one.
        Vec::new()
    };
    let facts = futures::stream::select_all(std::iter::once(namespaces).chain(workload_watches));
    let secrets = if context.config.check_certificates {
        watcher(
            Api::<Secret>::all(client.clone()),
            watcher::Config::default().fields("type=kubernetes.io/tls"),
        )
        .default_backoff()
        .modify(strip::secret)
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
        futures::stream::select(futures::stream::select(secrets, warnings), facts),
    );

    let mut stores = Stores {
        pods: pod_store,
        claims: claim_store,
        namespaces: namespace_store,
        deployments,
        statefulsets,
        daemonsets,
        cronjobs,
        listed: HashSet::new(),
    };
    let mut index = WatchIndex::new(context.index_config());
    let mut workers: JoinSet<Worked> = JoinSet::new();
    let mut working: HashMap<tokio::task::Id, WorkItem> = HashMap::new();
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let claims_awaited_until = Instant::now() + CLAIMS_WAIT;
    let concurrency = context.config.concurrency.max(1);
    loop {
        let metrics = &context.metrics;
        metrics
            .watcher_queue
            .set(i64::try_from(index.queue_len()).unwrap_or(i64::MAX));
        metrics
            .watcher_tracked
            .set(i64::try_from(index.tracked_len()).unwrap_or(i64::MAX));
        // Claims are context for pods (a full volume's size): work waits for their first list,
        // a bounded time (without RBAC on claims it never comes).
        let wake =
            if stores.listed("PersistentVolumeClaim") || Instant::now() >= claims_awaited_until {
                while workers.len() < concurrency {
                    let Some(item) = index.next_due(Now::current()) else {
                        break;
                    };
                    let task = workers.spawn(work(context.clone(), stores.clone(), item.clone()));
                    working.insert(task.id(), item);
                }
                // With every worker busy, a finishing worker is what wakes the loop.
                (workers.len() < concurrency)
                    .then(|| index.next_wake())
                    .flatten()
            } else {
                Some(claims_awaited_until)
            };
        tokio::select! {
            next = events.next() => match next {
                Some(Ok(seen)) => {
                    let effects = on_seen(&mut index, &mut stores, seen);
                    carry_out(&context, effects);
                }
                Some(Err(error)) => tracing::warn!(%error, "watch error; retrying"),
                None => return,
            },
            Some(joined) = workers.join_next_with_id(), if !workers.is_empty() => match joined {
                Ok((id, worked)) => {
                    working.remove(&id);
                    let settled = worked.settlements();
                    index.settle(&worked.item, settled.as_deref(), Now::current());
                }
                // A handling that panicked is a failed one: retried after a backoff.
                Err(error) => {
                    tracing::error!(%error, "a handling task ended abnormally");
                    if let Some(item) = working.remove(&error.id()) {
                        index.settle(&item, None, Now::current());
                    }
                }
            },
            () = sleep_until(wake), if wake.is_some() => {}
            _ = housekeeping.tick() => {
                index.expire(Now::current());
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
