//! Lease-based leader election (coordination.k8s.io/v1), so that of several replicas only one
//! watcher acts while all of them serve the webhook.
//!
//! Every `renew_every`, a candidate reads the Lease: it creates it if missing, renews it if it
//! holds it, takes it over if it was released or its record stopped changing for a whole
//! `leaseDurationSeconds`, and otherwise follows. Writes carry the read `resourceVersion`, so two
//! candidates can never both win the same round.
//!
//! Only local monotonic clocks are trusted (as client-go does): a follower measures expiry from
//! when *it* saw the record change, never from the `renewTime` another host wrote; the holder
//! leads until a local deadline — the instant it sent its last successful renewal plus the lease
//! duration minus a safety margin — so it stops acting before any follower can take over. On
//! shutdown the holder releases the Lease (empty holder), and a follower takes over at its next
//! round instead of waiting for expiry.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::ObjectMeta;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics::Metrics;

/// Whether this replica currently leads: a local deadline, after which it does not.
#[derive(Clone)]
pub struct Leadership(Arc<watch::Sender<Option<Instant>>>);

impl Default for Leadership {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(None)))
    }
}

impl Leadership {
    pub fn is_leader(&self) -> bool {
        self.valid_until()
            .is_some_and(|until| Instant::now() < until)
    }

    /// Until when this replica may act, if it leads.
    pub fn valid_until(&self) -> Option<Instant> {
        *self.0.borrow()
    }

    /// Leads until `until` (a renewal extends it).
    pub fn grant(&self, until: Instant) {
        self.0.send_replace(Some(until));
    }

    /// Stops leading at once.
    pub fn revoke(&self) {
        self.0.send_replace(None);
    }

    /// Resolves once this replica leads.
    pub async fn gained(&self) {
        let mut changes = self.0.subscribe();
        loop {
            if self.is_leader() {
                return;
            }
            if changes.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Resolves once this replica no longer leads: revoked, or its deadline passed unrenewed.
    pub async fn lost(&self) {
        let mut changes = self.0.subscribe();
        loop {
            let Some(until) = *changes.borrow_and_update() else {
                return;
            };
            if Instant::now() >= until {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                changed = changes.changed() => if changed.is_err() { return },
            }
        }
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

impl LeaseConfig {
    /// How long before the Lease could expire the holder stops acting: a fifth of the duration
    /// (3 s of 15 s), at least one renewal interval is left for the last renewal to land.
    pub fn safety_margin(&self) -> Duration {
        self.lease_duration / 5
    }
}

/// The instant until which a holder may act after a renewal sent at `sent`: the Lease lasts
/// `duration` from when the apiserver stored it (after `sent`), so stopping `margin` before
/// `sent + duration` is early on every clock.
pub fn acting_deadline(sent: Instant, duration: Duration, margin: Duration) -> Instant {
    sent + duration.saturating_sub(margin)
}

/// The Lease record as this replica last saw it change, on its own clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub resource_version: String,
    pub since: Instant,
}

impl Observed {
    /// The observation after reading `lease` at `now`: the time restarts when the record changed.
    pub fn update(previous: Option<Observed>, lease: Option<&Lease>, now: Instant) -> Option<Self> {
        let version = lease?.metadata.resource_version.clone().unwrap_or_default();
        match previous {
            Some(seen) if seen.resource_version == version => Some(seen),
            _ => Some(Observed {
                resource_version: version,
                since: now,
            }),
        }
    }
}

/// What a candidate should do with the Lease it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Create,
    Renew,
    TakeOver,
    Follow { holder: String },
}

/// The pure rule: given the Lease as read (if any), the candidate, how long this replica has
/// seen that same record unchanged, and the local time.
pub fn next_step(
    lease: Option<&Lease>,
    identity: &str,
    observed: Option<&Observed>,
    now: Instant,
) -> Step {
    let Some(lease) = lease else {
        return Step::Create;
    };
    let Some(spec) = lease.spec.as_ref() else {
        return Step::TakeOver;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.is_empty() {
        return Step::TakeOver;
    }
    if holder == identity {
        return Step::Renew;
    }
    let duration =
        Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(15)).unwrap_or(15));
    let unchanged_for = observed
        .filter(|o| Some(&o.resource_version) == lease.metadata.resource_version.as_ref())
        .map_or(Duration::ZERO, |o| now.saturating_duration_since(o.since));
    if unchanged_for >= duration {
        Step::TakeOver
    } else {
        Step::Follow { holder }
    }
}

/// The holder of `lease` whose renewal has not yet run out at `now` by the Lease's own times
/// (for a one-shot command that cannot watch the record change; it trusts the writer's clock).
pub fn live_holder(lease: &Lease, now: Timestamp) -> Option<String> {
    let spec = lease.spec.as_ref()?;
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty())?;
    let renewed = spec.renew_time.as_ref()?.0.as_second();
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    (renewed + duration >= now.as_second()).then_some(holder)
}

/// Reads the Lease and says who holds it live, if anyone.
pub async fn current_holder(
    client: Client,
    namespace: &str,
    name: &str,
) -> Result<Option<String>, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    Ok(api
        .get_opt(name)
        .await?
        .and_then(|lease| live_holder(&lease, Timestamp::now())))
}

/// Campaigns until the task is dropped, keeping `leadership` current (a dropped campaign leaves
/// the Lease to expire: use `campaign_until` to release it).
pub async fn campaign(
    client: Client,
    config: LeaseConfig,
    leadership: Leadership,
    metrics: Arc<Metrics>,
) {
    campaign_until(client, config, leadership, metrics, std::future::pending()).await;
}

/// Campaigns until `stop` resolves, keeping `leadership` current; then stops acting and
/// releases the Lease if it holds it.
pub async fn campaign_until(
    client: Client,
    config: LeaseConfig,
    leadership: Leadership,
    metrics: Arc<Metrics>,
    stop: impl Future<Output = ()>,
) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut ticker = tokio::time::interval(config.renew_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut observed = None;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = ticker.tick() => {}
        }
        let sent = Instant::now();
        let was_leading = leadership.is_leader();
        let round = tokio::time::timeout(config.renew_every, round(&api, &config, &mut observed));
        match round.await {
            Ok(Ok(true)) => leadership.grant(acting_deadline(
                sent,
                config.lease_duration,
                config.safety_margin(),
            )),
            Ok(Ok(false)) => leadership.revoke(),
            // A failed renewal keeps the earlier deadline: acting stops when it passes.
            Ok(Err(error)) => {
                tracing::warn!(%error, lease = %config.name, "leader election round failed");
            }
            Err(_) => tracing::warn!(lease = %config.name, "leader election round timed out"),
        }
        let now_leading = leadership.is_leader();
        if now_leading != was_leading {
            tracing::info!(identity = %config.identity, leading = now_leading, "watcher leadership changed");
        }
        metrics.leader.set(i64::from(now_leading));
    }
    leadership.revoke();
    metrics.leader.set(0);
    match tokio::time::timeout(config.renew_every, release(&api, &config)).await {
        Ok(Ok(true)) => tracing::info!(identity = %config.identity, "released the watcher lease"),
        Ok(Ok(false)) => {}
        Ok(Err(error)) => tracing::warn!(%error, "could not release the watcher lease"),
        Err(_) => tracing::warn!("releasing the watcher lease timed out"),
    }
}

async fn round(
    api: &Api<Lease>,
    config: &LeaseConfig,
    observed: &mut Option<Observed>,
) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let current = api.get_opt(&config.name).await?;
    *observed = Observed::update(observed.take(), current.as_ref(), Instant::now());
    let step = next_step(
        current.as_ref(),
        &config.identity,
        observed.as_ref(),
        Instant::now(),
    );
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
            api.create(&crate::cluster::post_params(), &lease).await
        }
        (Step::Renew, Some(mut lease)) => {
            let spec = lease.spec.take().unwrap_or_default();
            lease.spec = Some(held(spec.lease_transitions.unwrap_or(0), spec.acquire_time));
            api.replace(&config.name, &crate::cluster::post_params(), &lease)
                .await
        }
        (Step::TakeOver, Some(mut lease)) => {
            let transitions = lease
                .spec
                .as_ref()
                .and_then(|s| s.lease_transitions)
                .unwrap_or(0)
                + 1;
            lease.spec = Some(held(transitions, None));
            api.replace(&config.name, &crate::cluster::post_params(), &lease)
                .await
        }
        _ => return Ok(false),
    };
    match result {
        Ok(_) => {
            // Our own writes are not someone else's record to time.
            *observed = None;
            Ok(true)
        }
        // Someone else wrote first this round.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}

/// Hands the Lease over: if this replica holds it, writes an empty holder, so the next
/// candidate takes over at its next round. `false` when someone else holds it.
pub async fn release(api: &Api<Lease>, config: &LeaseConfig) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        return Ok(false);
    };
    let Some(spec) = lease.spec.as_mut() else {
        return Ok(false);
    };
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(false);
    }
    *spec = released(spec, Timestamp::now());
    match api
        .replace(&config.name, &crate::cluster::post_params(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}

/// The spec of a released Lease: no holder, a one-second duration (a candidate of an older
/// version that only looks at expiry takes over at once too), transitions kept.
pub fn released(spec: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        renew_time: Some(MicroTime(now)),
        acquire_time: spec.acquire_time.clone(),
        lease_transitions: spec.lease_transitions,
        ..LeaseSpec::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, version: &str, seconds: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime("2026-11-28T12:00:00Z".parse().unwrap())),
                lease_duration_seconds: Some(seconds),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn the_rule_trusts_only_the_local_clock() {
        let t0 = Instant::now();
        let seen = |version: &str, since| Observed {
            resource_version: version.into(),
            since,
        };
        assert_eq!(next_step(None, "a", None, t0), Step::Create);
        assert_eq!(
            next_step(Some(&lease("a", "1", 15)), "a", None, t0),
            Step::Renew
        );
        // Another holder: followed until its record stayed the same for a whole duration here,
        // whatever its renewTime says.
        let b = lease("b", "7", 15);
        let follow = Step::Follow { holder: "b".into() };
        assert_eq!(next_step(Some(&b), "a", None, t0), follow);
        let observed = Observed::update(None, Some(&b), t0);
        assert_eq!(observed, Some(seen("7", t0)));
        let later = t0 + Duration::from_secs(14);
        let observed = Observed::update(observed, Some(&b), later);
        assert_eq!(observed, Some(seen("7", t0)), "same record: same start");
        assert_eq!(next_step(Some(&b), "a", observed.as_ref(), later), follow);
        let expired = t0 + Duration::from_secs(15);
        assert_eq!(
            next_step(Some(&b), "a", observed.as_ref(), expired),
            Step::TakeOver
        );
        // A renewal (new resourceVersion) restarts the count.
        let renewed = lease("b", "8", 15);
        let observed = Observed::update(observed, Some(&renewed), expired);
        assert_eq!(
            next_step(Some(&renewed), "a", observed.as_ref(), expired),
            follow
        );
        // A released Lease is taken at once.
        assert_eq!(
            next_step(Some(&lease("", "9", 1)), "a", None, t0),
            Step::TakeOver
        );
    }

    #[test]
    fn the_holder_stops_acting_before_its_lease_can_expire() {
        let sent = Instant::now();
        let config = LeaseConfig {
            namespace: "selfheal".into(),
            name: "l".into(),
            identity: "a".into(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        };
        let deadline = acting_deadline(sent, config.lease_duration, config.safety_margin());
        assert_eq!(deadline, sent + Duration::from_secs(12));
        assert!(deadline < sent + config.lease_duration);
        assert!(
            deadline > sent + config.renew_every,
            "a renewal is due before acting stops"
        );
    }

    #[test]
    fn a_released_lease_has_no_holder_and_is_not_live() {
        let now: Timestamp = "2026-11-28T12:00:05Z".parse().unwrap();
        let held = lease("a", "3", 15);
        assert_eq!(live_holder(&held, now), Some("a".into()));
        let spec = released(held.spec.as_ref().unwrap(), now);
        assert_eq!(spec.holder_identity, None);
        let released_lease = Lease {
            metadata: ObjectMeta::default(),
            spec: Some(spec),
        };
        assert_eq!(live_holder(&released_lease, now), None);
        let stale: Timestamp = "2026-11-28T12:00:16Z".parse().unwrap();
        assert_eq!(live_holder(&held, stale), None, "renewal ran out");
    }
}
