//! Problems already handled, so a watch event that repeats a status does not repeat an action.
//! A new restart (a new OOM kill) has a new restart count and is handled again.
//!
//! Memory stays bounded by the objects that exist: entries are kept per object UID and go when
//! the object is deleted (or is missing from a re-list), and an entry not seen for `ttl` expires
//! (if its problem is still there, it is handled once more, within the executor's rate limits).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::heal::detect::{Problem, ProblemKey};

#[derive(Debug)]
pub struct Handled {
    ttl: Duration,
    by_object: HashMap<String, Entry>,
}

#[derive(Debug)]
struct Entry {
    /// `Pod`, `PersistentVolumeClaim`, ...
    kind: &'static str,
    problems: HashSet<ProblemKey>,
    seen: Instant,
}

impl Handled {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            by_object: HashMap::new(),
        }
    }

    /// Whether this occurrence was handled; refreshes its entry if so.
    pub fn contains(&mut self, problem: &Problem, now: Instant) -> bool {
        match self.by_object.get_mut(&problem.uid) {
            Some(entry) if entry.problems.contains(&problem.key()) => {
                entry.seen = now;
                true
            }
            _ => false,
        }
    }

    pub fn insert(&mut self, problem: &Problem, now: Instant) {
        let entry = self
            .by_object
            .entry(problem.uid.clone())
            .or_insert_with(|| Entry {
                kind: problem.object_kind,
                problems: HashSet::new(),
                seen: now,
            });
        entry.problems.insert(problem.key());
        entry.seen = now;
    }

    /// The object is gone.
    pub fn forget_object(&mut self, uid: &str) {
        self.by_object.remove(uid);
    }

    /// Keeps only the objects of `kind` that `exists` says are still there (after a re-list).
    pub fn retain_objects(&mut self, kind: &str, exists: impl Fn(&str) -> bool) {
        self.by_object
            .retain(|uid, entry| entry.kind != kind || exists(uid));
    }

    /// Drops entries not seen for the time to live.
    pub fn expire(&mut self, now: Instant) {
        let ttl = self.ttl;
        self.by_object
            .retain(|_, entry| now.saturating_duration_since(entry.seen) < ttl);
    }

    /// Objects with at least one handled problem.
    pub fn len(&self) -> usize {
        self.by_object.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_object.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heal::detect::ProblemKind;

    fn oom(uid: &str, restart_count: i32) -> Problem {
        Problem {
            namespace: "a".into(),
            object_kind: "Pod",
            object_name: "p".into(),
            uid: uid.into(),
            kind: ProblemKind::OomKilled {
                container: "app".into(),
                init: false,
                restart_count,
            },
        }
    }

    #[test]
    fn a_new_restart_is_a_new_occurrence() {
        let now = Instant::now();
        let mut handled = Handled::new(Duration::from_secs(60));
        assert!(!handled.contains(&oom("u", 1), now));
        handled.insert(&oom("u", 1), now);
        assert!(handled.contains(&oom("u", 1), now));
        assert!(!handled.contains(&oom("u", 2), now));
    }

    #[test]
    fn entries_go_with_their_object_and_expire_unseen() {
        let t0 = Instant::now();
        let mut handled = Handled::new(Duration::from_secs(60));
        handled.insert(&oom("deleted", 1), t0);
        handled.insert(&oom("quiet", 1), t0);
        handled.insert(&oom("seen", 1), t0);
        handled.insert(&oom("missing", 1), t0);
        handled.forget_object("deleted");
        handled.retain_objects("Pod", |uid| uid != "missing");
        handled.retain_objects("Secret", |_| false);
        assert_eq!(handled.len(), 2);
        let later = t0 + Duration::from_secs(50);
        assert!(handled.contains(&oom("seen", 1), later), "seeing refreshes");
        handled.expire(t0 + Duration::from_secs(61));
        assert!(!handled.contains(&oom("quiet", 1), later));
        assert!(handled.contains(&oom("seen", 1), later));
        assert_eq!(handled.len(), 1);
    }
}
