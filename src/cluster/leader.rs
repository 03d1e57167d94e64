//! Lease-based leader election (coordination.k8s.io/v1), so that of several replicas only one
//! watcher acts while all of them serve the webhook.
//!
//! Every `renew_every`, a candidate reads the Lease: it creates it if missing, renews it if it
//! holds it, takes it over if the holder let it expire, and otherwise follows. Writes carry the
//! read `resourceVersion`, so two candidates can never both win the same round.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::metrics::Metrics;

/// Whether this replica currently leads.
#[derive(Clone, Default)]
pub struct Leadership(Arc<AtomicBool>);

impl Leadership {
    pub fn is_leader(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self, leading: bool) {
        self.0.store(leading, Ordering::Release);
    }
}

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_every: Duration,
}

/// What a candidate should do with the Lease it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Create,
    Renew,
    TakeOver,
    Follow { holder: String },
}

/// The pure rule: given the Lease as read (if any), the candidate and the time.
pub fn next_step(lease: Option<&Lease>, identity: &str, now: Timestamp) -> Step {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return if lease.is_some() {
            Step::TakeOver
        } else {
            Step::Create
        };
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder == identity {
        return Step::Renew;
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    let renewed = spec
        .renew_time
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or(0);
    if holder.is_empty() || renewed + duration < now.as_second() {
        Step::TakeOver
    } else {
        Step::Follow { holder }
    }
}

/// Campaigns until the task is dropped, keeping `leadership` current.
pub async fn campaign(
    client: Client,
    config: LeaseConfig,
    leadership: Leadership,
    metrics: Arc<Metrics>,
) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut ticker = tokio::time::interval(config.renew_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let leading = match round(&api, &config).await {
            Ok(leading) => leading,
            Err(error) => {
                tracing::warn!(%error, lease = %config.name, "leader election round failed");
                false
            }
        };
        if leading != leadership.is_leader() {
            tracing::info!(identity = %config.identity, leading, "watcher leadership changed");
        }
        leadership.set(leading);
        metrics.leader.set(i64::from(leading));
    }
}

async fn round(api: &Api<Lease>, config: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let current = api.get_opt(&config.name).await?;
    let step = next_step(current.as_ref(), &config.identity, now);
    let seconds = i32::try_from(config.lease_duration.as_secs()).unwrap_or(15);
    let held = |transitions: i32, acquired: Option<MicroTime>| LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(seconds),
        acquire_time: acquired.or(Some(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    };
    let result = match (step, current) {
        (Step::Create, _) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    namespace: Some(config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(held(0, None)),
            };
            api.create(&PostParams::default(), &lease).await.map(|_| ())
        }
        (Step::Renew, Some(mut lease)) => {
            let spec = lease.spec.take().unwrap_or_default();
            lease.spec = Some(held(spec.lease_transitions.unwrap_or(0), spec.acquire_time));
            api.replace(&config.name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
        (Step::TakeOver, Some(mut lease)) => {
            let transitions = lease
                .spec
                .as_ref()
                .and_then(|s| s.lease_transitions)
                .unwrap_or(0)
                + 1;
            lease.spec = Some(held(transitions, None));
            api.replace(&config.name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
        _ => return Ok(false),
    };
    match result {
        Ok(()) => Ok(true),
        // Someone else wrote first this round.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: &str, seconds: i32) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(renewed.parse().unwrap())),
                lease_duration_seconds: Some(seconds),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn the_rule() {
        let now: Timestamp = "2026-11-28T12:00:30Z".parse().unwrap();
        assert_eq!(next_step(None, "a", now), Step::Create);
        assert_eq!(
            next_step(Some(&lease("a", "2026-11-28T12:00:00Z", 15)), "a", now),
            Step::Renew
        );
        assert_eq!(
            next_step(Some(&lease("b", "2026-11-28T12:00:00Z", 15)), "a", now),
            Step::TakeOver
        );
        assert_eq!(
            next_step(Some(&lease("b", "2026-11-28T12:00:20Z", 15)), "a", now),
            Step::Follow { holder: "b".into() }
        );
        assert_eq!(
            next_step(Some(&lease("", "2026-11-28T12:00:29Z", 15)), "a", now),
            Step::TakeOver
        );
    }
}
