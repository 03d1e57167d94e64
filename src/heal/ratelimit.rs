//! Rate limits per target with exponential backoff: the second action on the same target waits
//! `window`, the third `2 × window`, and so on up to `max_backoff`. Time is passed in, so the
//! rule is tested without sleeping.
//!
//! Memory stays bounded: a target quiet for twice the longest backoff is forgotten (`expire`),
//! and a target whose object is gone can be dropped at once (`reset`).
//!
//! The limiter is the healing half's history: `plan` reads it (how many attempts, how long until
//! the next one may go) and the executor takes a slot when it acts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::core::owners::Workload;

/// What repeated actions are counted and spaced by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionKey {
    /// Evictions of the pods of one workload (`owner`: the workload, or a bare pod's name).
    Evict { namespace: String, owner: String },
    /// Deletions of the pods of one workload to retry an image pull.
    PullRetry { namespace: String, owner: String },
    /// Restarts of one dependency.
    Restart(Workload),
    /// Renewals of the certificate of one Secret.
    Renew { namespace: String, secret: String },
}

impl serde::Serialize for ActionKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl std::fmt::Display for ActionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActionKey::Evict { namespace, owner } => write!(f, "evict/{namespace}/{owner}"),
            ActionKey::PullRetry { namespace, owner } => write!(f, "pull/{namespace}/{owner}"),
            ActionKey::Restart(workload) => write!(f, "dependency/{workload}"),
            ActionKey::Renew { namespace, secret } => write!(f, "renew/{namespace}/{secret}"),
        }
    }
}

/// What `plan` knows of earlier actions, read-only: how many were taken on a key, and how long
/// until the next one may go.
pub trait History {
    /// Actions already taken on `key`.
    fn attempts(&self, key: &ActionKey) -> u32;
    /// How long until an action on `key` may go (`None`: now).
    fn wait(&self, key: &ActionKey) -> Option<Duration>;
}

/// No earlier action: what a process that has not acted knows.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHistory;

impl History for NoHistory {
    fn attempts(&self, _: &ActionKey) -> u32 {
        0
    }

    fn wait(&self, _: &ActionKey) -> Option<Duration> {
        None
    }
}

/// The limiter's history as of one instant.
#[derive(Debug, Clone, Copy)]
pub struct AsOf<'a> {
    limiter: &'a RateLimiter,
    now: Instant,
}

impl History for AsOf<'_> {
    fn attempts(&self, key: &ActionKey) -> u32 {
        self.limiter.attempts(key)
    }

    fn wait(&self, key: &ActionKey) -> Option<Duration> {
        self.limiter.wait(key, self.now)
    }
}

#[derive(Debug)]
pub struct RateLimiter {
    window: Duration,
    max_backoff: Duration,
    targets: Mutex<HashMap<ActionKey, Entry>>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    last: Instant,
    attempts: u32,
}

impl RateLimiter {
    pub fn new(window: Duration, max_backoff: Duration) -> Self {
        Self {
            window,
            max_backoff,
            targets: Mutex::default(),
        }
    }

    /// The history `plan` reads, as of `now`.
    pub fn as_of(&self, now: Instant) -> AsOf<'_> {
        AsOf { limiter: self, now }
    }

    /// Actions already taken on `target`.
    pub fn attempts(&self, target: &ActionKey) -> u32 {
        self.lock().get(target).map_or(0, |e| e.attempts)
    }

    /// Takes a slot for an action on `target` at `now`: `Ok(attempt number)` (1 for the first),
    /// or `Err(time to wait)`.
    pub fn acquire(&self, target: &ActionKey, now: Instant) -> Result<u32, Duration> {
        let mut targets = self.lock();
        if let Some(entry) = targets.get(target) {
            let backoff = self.backoff(entry);
            let elapsed = now.saturating_duration_since(entry.last);
            if elapsed < backoff {
                return Err(backoff - elapsed);
            }
        }
        let attempts = targets.get(target).map_or(0, |e| e.attempts) + 1;
        targets.insert(
            target.clone(),
            Entry {
                last: now,
                attempts,
            },
        );
        Ok(attempts)
    }

    fn backoff(&self, entry: &Entry) -> Duration {
        self.window
            .saturating_mul(1 << (entry.attempts.saturating_sub(1)).min(16))
            .min(self.max_backoff)
    }

    /// How long until an action on `target` may go (`None`: now).
    pub fn wait(&self, target: &ActionKey, now: Instant) -> Option<Duration> {
        let targets = self.lock();
        let entry = targets.get(target)?;
        let elapsed = now.saturating_duration_since(entry.last);
        self.backoff(entry)
            .checked_sub(elapsed)
            .filter(|wait| !wait.is_zero())
    }

    /// How long until the first target now backing off may act again (`None`: none is). A
    /// refused action is retried then: it is either that target, or it waits again.
    pub fn next_release(&self, now: Instant) -> Option<Duration> {
        self.lock()
            .values()
            .filter_map(|entry| {
                let elapsed = now.saturating_duration_since(entry.last);
                self.backoff(entry).checked_sub(elapsed)
            })
            .filter(|wait| !wait.is_zero())
            .min()
    }

    /// Forgets targets with no action for twice the longest backoff.
    pub fn expire(&self, now: Instant) {
        let quiet = self.max_backoff.saturating_mul(2).max(self.window);
        self.lock()
            .retain(|_, entry| now.saturating_duration_since(entry.last) < quiet);
    }

    /// Targets remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Forgets `target` (it recovered).
    pub fn reset(&self, target: &ActionKey) {
        self.lock().remove(target);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ActionKey, Entry>> {
        self.targets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(owner: &str) -> ActionKey {
        ActionKey::Evict {
            namespace: "shop".into(),
            owner: owner.into(),
        }
    }

    #[test]
    fn backoff_doubles_per_target_up_to_the_cap() {
        let limiter = RateLimiter::new(Duration::from_secs(60), Duration::from_secs(300));
        let t0 = Instant::now();
        assert_eq!(limiter.acquire(&key("a"), t0), Ok(1));
        assert_eq!(
            limiter.acquire(&key("b"), t0),
            Ok(1),
            "targets are independent"
        );
        assert_eq!(
            limiter.acquire(&key("a"), t0 + Duration::from_secs(10)),
            Err(Duration::from_secs(50))
        );
        assert_eq!(
            limiter.wait(&key("a"), t0 + Duration::from_secs(10)),
            Some(Duration::from_secs(50))
        );
        assert_eq!(limiter.wait(&key("a"), t0 + Duration::from_secs(60)), None);
        assert_eq!(limiter.wait(&key("never"), t0), None);
        assert_eq!(
            limiter.acquire(&key("a"), t0 + Duration::from_secs(60)),
            Ok(2)
        );
        let t1 = t0 + Duration::from_secs(60);
        assert!(
            limiter
                .acquire(&key("a"), t1 + Duration::from_secs(119))
                .is_err()
        );
        assert_eq!(
            limiter.acquire(&key("a"), t1 + Duration::from_secs(120)),
            Ok(3)
        );
        let t2 = t1 + Duration::from_secs(120);
        assert!(
            limiter
                .acquire(&key("a"), t2 + Duration::from_secs(239))
                .is_err()
        );
        assert_eq!(
            limiter.acquire(&key("a"), t2 + Duration::from_secs(240)),
            Ok(4)
        );
        let t3 = t2 + Duration::from_secs(240);
        // 60 × 8 = 480s, capped at 300s.
        assert!(
            limiter
                .acquire(&key("a"), t3 + Duration::from_secs(299))
                .is_err()
        );
        assert_eq!(
            limiter.acquire(&key("a"), t3 + Duration::from_secs(300)),
            Ok(5)
        );
        assert_eq!(limiter.attempts(&key("a")), 5);
        limiter.reset(&key("a"));
        assert_eq!(limiter.attempts(&key("a")), 0);
    }

    #[test]
    fn the_next_release_and_expiry() {
        let limiter = RateLimiter::new(Duration::from_secs(60), Duration::from_secs(300));
        let t0 = Instant::now();
        assert_eq!(limiter.next_release(t0), None);
        limiter.acquire(&key("a"), t0).unwrap();
        limiter
            .acquire(&key("b"), t0 + Duration::from_secs(20))
            .unwrap();
        assert_eq!(
            limiter.next_release(t0 + Duration::from_secs(30)),
            Some(Duration::from_secs(30)),
            "a is free first"
        );
        assert_eq!(
            limiter.next_release(t0 + Duration::from_secs(60)),
            Some(Duration::from_secs(20)),
            "a is free already: b is next"
        );
        limiter.expire(t0 + Duration::from_secs(600));
        assert_eq!(
            limiter.len(),
            1,
            "a was quiet for twice the longest backoff"
        );
        limiter.expire(t0 + Duration::from_secs(620));
        assert!(limiter.is_empty());
    }
}
