//! Rate limits per target with exponential backoff: the second action on the same target waits
//! `window`, the third `2 × window`, and so on up to `max_backoff`. Time is passed in, so the
//! rule is tested without sleeping.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RateLimiter {
    window: Duration,
    max_backoff: Duration,
    targets: Mutex<HashMap<String, Entry>>,
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

    /// Actions already taken on `target`.
    pub fn attempts(&self, target: &str) -> u32 {
        self.lock().get(target).map_or(0, |e| e.attempts)
    }

    /// Takes a slot for an action on `target` at `now`: `Ok(attempt number)` (1 for the first),
    /// or `Err(time to wait)`.
    pub fn acquire(&self, target: &str, now: Instant) -> Result<u32, Duration> {
        let mut targets = self.lock();
        if let Some(entry) = targets.get(target) {
            let backoff = self
                .window
                .saturating_mul(1 << (entry.attempts - 1).min(16))
                .min(self.max_backoff);
            let elapsed = now.saturating_duration_since(entry.last);
            if elapsed < backoff {
                return Err(backoff - elapsed);
            }
        }
        let attempts = targets.get(target).map_or(0, |e| e.attempts) + 1;
        targets.insert(
            target.to_string(),
            Entry {
                last: now,
                attempts,
            },
        );
        Ok(attempts)
    }

    /// Forgets `target` (it recovered).
    pub fn reset(&self, target: &str) {
        self.lock().remove(target);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.targets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_target_up_to_the_cap() {
        let limiter = RateLimiter::new(Duration::from_secs(60), Duration::from_secs(300));
        let t0 = Instant::now();
        assert_eq!(limiter.acquire("a", t0), Ok(1));
        assert_eq!(limiter.acquire("b", t0), Ok(1), "targets are independent");
        assert_eq!(
            limiter.acquire("a", t0 + Duration::from_secs(10)),
            Err(Duration::from_secs(50))
        );
        assert_eq!(limiter.acquire("a", t0 + Duration::from_secs(60)), Ok(2));
        let t1 = t0 + Duration::from_secs(60);
        assert!(limiter.acquire("a", t1 + Duration::from_secs(119)).is_err());
        assert_eq!(limiter.acquire("a", t1 + Duration::from_secs(120)), Ok(3));
        let t2 = t1 + Duration::from_secs(120);
        assert!(limiter.acquire("a", t2 + Duration::from_secs(239)).is_err());
        assert_eq!(limiter.acquire("a", t2 + Duration::from_secs(240)), Ok(4));
        let t3 = t2 + Duration::from_secs(240);
        // 60 × 8 = 480s, capped at 300s.
        assert!(limiter.acquire("a", t3 + Duration::from_secs(299)).is_err());
        assert_eq!(limiter.acquire("a", t3 + Duration::from_secs(300)), Ok(5));
        assert_eq!(limiter.attempts("a"), 5);
        limiter.reset("a");
        assert_eq!(limiter.attempts("a"), 0);
    }
}
