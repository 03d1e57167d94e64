//! The work queue: keys (one per workload) due at an instant, each worked by at most one worker
//! at a time. Pure state; the caller passes the time in, so the rules are tested without sleeping.
//!
//! - `schedule(key, at)` asks for the key to be worked at `at`; the earliest request wins.
//! - `next_due(now)` hands out a due key that is not being worked, and marks it in flight.
//! - A key scheduled while in flight waits for `done`, so one workload is handled serially.
//! - `forget(key)` drops a schedule (its objects are gone).

use std::collections::{BTreeSet, HashMap, HashSet};

use tokio::time::Instant;

#[derive(Debug, Default)]
pub struct WorkQueue {
    due: BTreeSet<(Instant, String)>,
    at: HashMap<String, Instant>,
    in_flight: HashSet<String>,
}

impl WorkQueue {
    /// Asks for `key` to be worked at `at` (or earlier, if already asked).
    pub fn schedule(&mut self, key: &str, at: Instant) {
        match self.at.get(key) {
            Some(existing) if *existing <= at => {}
            Some(existing) => {
                self.due.remove(&(*existing, key.to_string()));
                self.due.insert((at, key.to_string()));
                self.at.insert(key.to_string(), at);
            }
            None => {
                self.due.insert((at, key.to_string()));
                self.at.insert(key.to_string(), at);
            }
        }
    }

    /// Drops the schedule of `key` (a worker already on it finishes).
    pub fn forget(&mut self, key: &str) {
        if let Some(at) = self.at.remove(key) {
            self.due.remove(&(at, key.to_string()));
        }
    }

    /// A key due at `now` that no worker holds; it is now in flight.
    pub fn next_due(&mut self, now: Instant) -> Option<String> {
        let (at, key) = self
            .due
            .iter()
            .take_while(|(at, _)| *at <= now)
            .find(|(_, key)| !self.in_flight.contains(key))
            .cloned()?;
        self.due.remove(&(at, key.clone()));
        self.at.remove(&key);
        self.in_flight.insert(key.clone());
        Some(key)
    }

    /// When the next key not in flight falls due.
    pub fn next_wake(&self) -> Option<Instant> {
        self.due
            .iter()
            .find(|(_, key)| !self.in_flight.contains(key))
            .map(|(at, _)| *at)
    }

    /// The worker on `key` finished; a schedule made meanwhile stands.
    pub fn done(&mut self, key: &str) {
        self.in_flight.remove(key);
    }

    pub fn is_scheduled(&self, key: &str) -> bool {
        self.at.contains_key(key)
    }

    /// Keys scheduled (due or later).
    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_worker_per_key_and_earliest_schedule_wins() {
        let t0 = Instant::now();
        let mut queue = WorkQueue::default();
        queue.schedule("shop/web", t0 + Duration::from_secs(10));
        queue.schedule("shop/web", t0 + Duration::from_secs(5));
        queue.schedule("shop/web", t0 + Duration::from_secs(60));
        queue.schedule("shop/cart", t0);
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.next_due(t0), Some("shop/cart".into()));
        assert_eq!(queue.next_due(t0), None, "web is not due yet");
        assert_eq!(queue.next_wake(), Some(t0 + Duration::from_secs(5)));

        // cart changes while its worker runs: it is not handed out twice...
        queue.schedule("shop/cart", t0);
        assert_eq!(
            queue.next_due(t0 + Duration::from_secs(5)),
            Some("shop/web".into())
        );
        assert_eq!(queue.next_due(t0 + Duration::from_secs(5)), None);
        assert_eq!(queue.next_wake(), None, "only in-flight keys are scheduled");
        // ...but again as soon as the first worker is done.
        queue.done("shop/cart");
        assert_eq!(
            queue.next_due(t0 + Duration::from_secs(5)),
            Some("shop/cart".into())
        );
        queue.done("shop/cart");
        queue.done("shop/web");
        assert!(queue.is_empty());
    }

    #[test]
    fn a_forgotten_key_is_not_handed_out() {
        let t0 = Instant::now();
        let mut queue = WorkQueue::default();
        queue.schedule("shop/web", t0);
        queue.forget("shop/web");
        assert_eq!(queue.next_due(t0 + Duration::from_secs(1)), None);
        assert!(queue.is_empty());
    }
}
