//! Dependencies probed over TCP beside the queue (`--probe namespace/service:port`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use super::Context;
use super::work::count_problem;
use crate::heal::facts::Reader;
use crate::heal::inspect::ClusterView;
use crate::heal::probe::{self, ProbeTarget};
use crate::heal::run;

/// Probes every configured dependency every `probe_interval`; a failing one is healed like a
/// caller's "connection refused" (its outage start names the restart, so one outage restarts
/// it at most once). Runs beside the queue: a slow probe delays only the probes.
pub(super) async fn probe_dependencies(context: Arc<Context>) {
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
                cluster: config.limits.clone(),
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
