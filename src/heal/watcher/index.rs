//! The watcher's state, pure: what it holds of the objects it watches, when each needs a look,
//! what was handled. No `Client`, no `Metrics`, no clock of its own: the loop feeds it watch
//! events ([`WatchIndex::apply`], [`delete`](WatchIndex::delete), a re-list) and the outcomes of
//! handlings ([`settle`](WatchIndex::settle)), asks it what is due ([`next_due`](WatchIndex::next_due)),
//! and carries out the [`Effect`]s it returns. Time is passed in ([`Now`]).
//!
//! Scheduling rules (each has a test below):
//! - a problem not handled yet is due at once (its workload's key, one worker per key);
//! - a problem handled is not handled again while its object repeats its status; a new
//!   occurrence (a new restart count) is a new problem; what was handled is forgotten with its
//!   object, when a re-list misses it, or after `handled_ttl` unseen;
//! - a handling that failed is retried after a backoff doubling from `failure_backoff` up to
//!   `max_failure_backoff`, per key; one that succeeds resets it;
//! - a rate-limited action (or an eviction a PodDisruptionBudget refused) is retried when the
//!   wait its outcome carries ends;
//! - a backoff stays when its object changes without a new occurrence, so a chatty status cannot
//!   defeat it; a new occurrence is due at once;
//! - a time-based problem (a pod stuck creating, a claim pending, a container not ready) is
//!   looked at the moment its grace ends, with no event; a certificate still wrong after its
//!   handling is looked at again `certificate_interval` later;
//! - a change to an object whose problem was settled is looked at at once (the later look of
//!   a settled problem is not a backoff);
//! - a Warning event about a tracked object makes it due at once (detection reads Warnings).
//!
//! Detection runs once per sighting of an object (and again only when its grace ends or a
//! Warning about it arrives); the work item carries the problems found, and nobody detects them
//! again.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::core::v1::{Event, Secret};
use tokio::time::Instant;

use super::handled::Handled;
use super::queue::WorkQueue;
use super::subject::Subject;
use super::tracked::{Tracked, carried, secret_name};
use super::warnings::RecentWarnings;
use crate::heal::detect::{Problem, ProblemKey};
use crate::heal::ratelimit::ActionKey;

pub use super::tracked::{Effect, IndexConfig, Now, SecretName, Settlement, WorkItem};

#[derive(Debug)]
pub struct WatchIndex {
    config: IndexConfig,
    queue: WorkQueue,
    tracked: HashMap<String, BTreeMap<String, Tracked>>,
    handled: Handled,
    failures: HashMap<String, u32>,
    /// Per kind, the uids seen by a re-list in progress.
    listing: HashMap<&'static str, HashSet<String>>,
    warnings: RecentWarnings,
    /// Secrets whose certificate expiry is exported, with their uids.
    exported: HashMap<SecretName, String>,
}

impl WatchIndex {
    pub fn new(config: IndexConfig) -> Self {
        Self {
            queue: WorkQueue::default(),
            tracked: HashMap::new(),
            handled: Handled::new(config.handled_ttl),
            failures: HashMap::new(),
            listing: HashMap::new(),
            warnings: RecentWarnings::new(
                config.warned_objects,
                config.warnings_per_object,
                config.warning_ttl,
            ),
            exported: HashMap::new(),
            config,
        }
    }

    /// An object as it is now (added or changed): tracked if it has a problem to handle or a
    /// check due later.
    pub fn apply(&mut self, subject: Subject, now: Now) -> Vec<Effect> {
        let mut effects = Vec::new();
        if let Subject::Secret(secret) = &subject
            && let Some(effect) = self.export_expiry(secret)
        {
            effects.push(effect);
        }
        if !self.config.targeting.in_scope(&subject.namespace()) {
            return effects;
        }
        let key = subject.work_key();
        let uid = subject.uid();
        let mut tracked = self.look(subject, now);
        if let Some(previous) = self.tracked.get(&key).and_then(|entries| entries.get(&uid)) {
            (tracked.not_before, tracked.settled_look) =
                carried(&mut self.handled, previous, &tracked, now);
        }
        self.tracked
            .entry(key.clone())
            .or_default()
            .insert(uid, tracked);
        self.reschedule(&key, now);
        effects
    }

    /// A re-list of `kind` begins: what it does not list is gone when it ends.
    pub fn relist_begin(&mut self, kind: &'static str) {
        self.listing.insert(kind, HashSet::new());
    }

    /// One object of a re-list.
    pub fn relist_item(&mut self, subject: Subject, now: Now) -> Vec<Effect> {
        if let Some(listed) = self.listing.get_mut(subject.kind()) {
            listed.insert(subject.uid());
        }
        self.apply(subject, now)
    }

    /// A re-list of `kind` ended: what it did not list is gone.
    pub fn relist_end(&mut self, kind: &'static str, now: Now) -> Vec<Effect> {
        let Some(listed) = self.listing.remove(kind) else {
            return Vec::new();
        };
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
            self.reschedule(&key, now);
        }
        let gone: Vec<SecretName> = match kind {
            "Secret" => self
                .exported
                .iter()
                .filter(|(_, uid)| !listed.contains(*uid))
                .map(|(name, _)| name.clone())
                .collect(),
            _ => Vec::new(),
        };
        gone.into_iter()
            .map(|name| {
                self.exported.remove(&name);
                Effect::ForgetExpiry(name)
            })
            .collect()
    }

    /// The object was deleted: everything about it goes.
    pub fn delete(&mut self, subject: &Subject, now: Now) -> Vec<Effect> {
        let uid = subject.uid();
        self.handled.forget_object(&uid);
        self.warnings.forget_object(&uid);
        let mut effects = Vec::new();
        if let Subject::Secret(secret) = subject {
            let name = secret_name(secret);
            self.exported.remove(&name);
            effects.push(Effect::ForgetHistory(ActionKey::Renew {
                namespace: name.namespace.clone(),
                secret: name.name.clone(),
            }));
            effects.push(Effect::ForgetExpiry(name));
        }
        let key = subject.work_key();
        if let Some(entries) = self.tracked.get_mut(&key) {
            entries.remove(&uid);
        }
        self.reschedule(&key, now);
        effects
    }

    /// A Warning event, new, updated or listed: kept if it is about a pod or a claim in scope;
    /// a tracked object it is about is looked at again at once.
    pub fn warned(&mut self, event: Event, now: Now) {
        let namespace = event
            .involved_object
            .namespace
            .as_deref()
            .or(event.metadata.namespace.as_deref())
            .unwrap_or_default();
        if !self.config.targeting.in_scope(namespace) {
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
            .record(event, now.mono, |uid| tracked.contains(uid));
        let Some(uid) = recorded else {
            return;
        };
        let key = self
            .tracked
            .iter()
            .find(|(_, entries)| entries.contains_key(&uid))
            .map(|(key, _)| key.clone());
        if let Some(key) = key {
            // Its input changed: detect again.
            let warnings = &self.warnings;
            let thresholds = &self.config.thresholds;
            if let Some(tracked) = self.tracked.get_mut(&key).and_then(|e| e.get_mut(&uid)) {
                tracked.detect(warnings, now, thresholds);
            }
            self.reschedule(&key, now);
        }
    }

    /// A Warning event was deleted (its time to live passed).
    pub fn warning_gone(&mut self, event: &Event) {
        self.warnings.remove(event);
    }

    /// A re-list of the Warning events begins: it replaces what was kept.
    pub fn warnings_relisted(&mut self) {
        self.warnings.clear();
    }

    /// A key due at `now` that no worker holds, with its problems; it is in flight until
    /// [`settle`](Self::settle).
    pub fn next_due(&mut self, now: Now) -> Option<WorkItem> {
        loop {
            let key = self.queue.next_due(now.mono)?;
            let warnings = &self.warnings;
            let thresholds = &self.config.thresholds;
            let entries: Vec<&mut Tracked> = self
                .tracked
                .get_mut(&key)
                .into_iter()
                .flat_map(|entries| entries.values_mut())
                .filter(|t| t.not_before.is_none_or(|nb| nb <= now.mono))
                .collect();
            let mut subjects = Vec::new();
            let mut problems = Vec::new();
            for tracked in entries {
                tracked.refresh(warnings, now, thresholds);
                subjects.push(tracked.subject.clone());
                problems.extend(tracked.problems.clone());
            }
            let problems: Vec<Problem> = problems
                .into_iter()
                .filter(|p| self.config.targeting.in_scope(&p.namespace))
                .filter(|p| !self.handled.contains(p, now.mono))
                .collect();
            if problems.is_empty() {
                self.queue.done(&key);
                self.reschedule(&key, now);
                continue;
            }
            let warnings = subjects
                .iter()
                .flat_map(|s| self.warnings.events_of(&s.uid()))
                .collect();
            return Some(WorkItem {
                key,
                subjects,
                problems,
                warnings,
            });
        }
    }

    /// When the next key not in flight falls due.
    pub fn next_wake(&self) -> Option<Instant> {
        self.queue.next_wake()
    }

    /// A worker finished `item`: `results` per problem (`None`: the handling ran past its
    /// deadline, every problem failed). Remembers what was settled and schedules the rest.
    pub fn settle(
        &mut self,
        item: &WorkItem,
        results: Option<&[(ProblemKey, Settlement)]>,
        now: Now,
    ) {
        let key = &item.key;
        self.queue.done(key);
        let mut retry_at: Option<Instant> = None;
        let mut retry = |when: Instant| retry_at = Some(retry_at.map_or(when, |r| r.min(when)));
        let mut settled: HashSet<ProblemKey> = HashSet::new();
        let mut failed = results.is_none();
        for (problem, settlement) in results.unwrap_or_default() {
            match settlement {
                Settlement::Settled => {
                    settled.insert(problem.clone());
                }
                Settlement::RetryIn(wait) => retry(now.mono + *wait),
                Settlement::Failed => failed = true,
            }
        }
        // A problem no result names (gone by the time the worker looked) is settled too: a new
        // occurrence has a new key.
        if let Some(results) = results {
            let answered: HashSet<&ProblemKey> = results.iter().map(|(k, _)| k).collect();
            settled.extend(
                item.problems
                    .iter()
                    .map(Problem::key)
                    .filter(|k| !answered.contains(k)),
            );
        }
        if failed {
            let failures = self.failures.entry(key.clone()).or_insert(0);
            *failures = failures.saturating_add(1);
            let backoff = self
                .config
                .failure_backoff
                .saturating_mul(1 << (*failures - 1).min(16))
                .min(self.config.max_failure_backoff);
            retry(now.mono + backoff);
        } else {
            self.failures.remove(key);
        }
        let certificate_look = now.mono + self.config.certificate_interval;
        for problem in item.problems.iter().filter(|p| settled.contains(&p.key())) {
            let Some(tracked) = self
                .tracked
                .get_mut(key)
                .and_then(|e| e.get_mut(&problem.uid))
            else {
                // (An object deleted meanwhile leaves nothing behind.)
                continue;
            };
            // Certificates are not deduplicated: one still wrong is looked at again later,
            // within the rate limit, until the attempt cap turns it into an alert.
            if problem.object_kind == "Secret" {
                tracked.delay(certificate_look, true);
            } else {
                self.handled.insert(problem, now.mono);
            }
        }
        if let Some(when) = retry_at {
            let uids: HashSet<&str> = item.problems.iter().map(|p| p.uid.as_str()).collect();
            for uid in uids {
                if let Some(tracked) = self.tracked.get_mut(key).and_then(|e| e.get_mut(uid)) {
                    tracked.delay(when, false);
                }
            }
        }
        self.reschedule(key, now);
    }

    /// Drops what expired: handled problems not seen for their time to live, old Warnings.
    pub fn expire(&mut self, now: Now) {
        self.handled.expire(now.mono);
        self.warnings.expire(now.mono);
    }

    /// Keys scheduled (due now or at a later check).
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Objects held.
    pub fn tracked_len(&self) -> usize {
        self.tracked.values().map(BTreeMap::len).sum()
    }

    /// A first look at `subject`: its problems and when time alone may add one.
    fn look(&self, subject: Subject, now: Now) -> Tracked {
        let mut tracked = Tracked {
            subject,
            problems: Vec::new(),
            recheck_at: None,
            not_before: None,
            settled_look: false,
        };
        tracked.detect(&self.warnings, now, &self.config.thresholds);
        tracked
    }

    /// Schedules `key` at the earliest time one of its objects needs a look; drops what needs
    /// none.
    fn reschedule(&mut self, key: &str, now: Now) {
        let Some(mut entries) = self.tracked.remove(key) else {
            self.queue.forget(key);
            return;
        };
        let mut earliest: Option<Instant> = None;
        entries.retain(|_, tracked| {
            tracked.refresh(&self.warnings, now, &self.config.thresholds);
            let fresh = tracked
                .problems
                .iter()
                .filter(|p| self.config.targeting.in_scope(&p.namespace))
                .any(|p| !self.handled.contains(p, now.mono));
            let next = if fresh {
                Some(tracked.not_before.map_or(now.mono, |nb| nb.max(now.mono)))
            } else {
                tracked.recheck_at.and_then(|t| now.mono_at(t))
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

    fn export_expiry(&mut self, secret: &Secret) -> Option<Effect> {
        let cert = secret.data.as_ref()?.get("tls.crt")?;
        let validity = crate::certs::check::validity(&cert.0).ok()?;
        let name = secret_name(secret);
        self.exported.insert(
            name.clone(),
            secret.metadata.uid.clone().unwrap_or_default(),
        );
        Some(Effect::ExportExpiry {
            secret: name,
            not_after: validity.not_after.as_second(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::targeting::Targeting;
    use serde_json::{Value, json};
    use std::time::Duration;

    const GRACE: u64 = 300;

    fn start() -> Now {
        Now {
            wall: "2026-11-28T12:00:00Z".parse().unwrap(),
            mono: Instant::now(),
        }
    }

    fn after(now: Now, seconds: u64) -> Now {
        Now {
            wall: now
                .wall
                .checked_add(jiff::SignedDuration::from_secs(seconds as i64))
                .unwrap(),
            mono: now.mono + Duration::from_secs(seconds),
        }
    }

    fn index() -> WatchIndex {
        WatchIndex::new(IndexConfig {
            targeting: Targeting::new(vec!["kube-system".into()], Vec::new()),
            ..IndexConfig::default()
        })
    }

    /// Pod `web-…-a` of Deployment `shop/web` (uid `pod-a`) at resourceVersion `rv`.
    fn pod(namespace: &str, rv: &str, status: Value) -> Subject {
        Subject::Pod(Box::new(
            serde_json::from_value(json!({
                "metadata": {"name": "web-5d4c3b2a1-a", "namespace": namespace, "uid": "pod-a",
                    "resourceVersion": rv, "labels": {"pod-template-hash": "5d4c3b2a1"},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "name": "web-5d4c3b2a1", "uid": "rs", "controller": true}]},
                "spec": {"containers": [{"name": "app"}]},
                "status": status}))
            .unwrap(),
        ))
    }

    /// Running after an OOM kill at its `restarts`th restart.
    fn oom(rv: &str, restarts: i32) -> Subject {
        pod(
            "shop",
            rv,
            json!({"phase": "Running", "containerStatuses": [{"name": "app", "ready": false,
                "restartCount": restarts, "image": "web:1", "imageID": "",
                "state": {"running": {"startedAt": "2026-11-28T11:59:00Z"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
        )
    }

    /// Scheduled at 12:00:00, containers not started: a problem once the grace ends.
    fn creating(rv: &str) -> Subject {
        pod(
            "shop",
            rv,
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True",
                "lastTransitionTime": "2026-11-28T12:00:00Z"}]}),
        )
    }

    fn problems(item: &WorkItem) -> Vec<String> {
        item.problems.iter().map(|p| p.key().to_string()).collect()
    }

    fn all(item: &WorkItem, settlement: Settlement) -> Vec<(ProblemKey, Settlement)> {
        item.problems
            .iter()
            .map(|p| (p.key(), settlement))
            .collect()
    }

    #[test]
    fn a_new_problem_is_due_at_once_and_a_handled_one_only_with_a_new_occurrence() {
        let t0 = start();
        let mut index = index();
        index.apply(oom("1", 1), t0);
        let item = index.next_due(t0).expect("due at once");
        assert_eq!(item.key, "Deployment/shop/web");
        assert_eq!(problems(&item), ["pod-a/app/OOMKilled/1"]);
        index.settle(&item, Some(&all(&item, Settlement::Settled)), t0);
        // The same status again (the kubelet updates the pod): nothing to do.
        index.apply(oom("2", 1), after(t0, 1));
        assert!(index.next_due(after(t0, 1)).is_none());
        // The next OOM kill is a new occurrence.
        index.apply(oom("3", 2), after(t0, 2));
        let next = index.next_due(after(t0, 2)).expect("a new occurrence");
        assert_eq!(problems(&next), ["pod-a/app/OOMKilled/2"]);
    }

    #[test]
    fn one_worker_per_key_and_a_change_in_flight_is_looked_at_after_it() {
        let t0 = start();
        let mut index = index();
        index.apply(oom("1", 1), t0);
        let item = index.next_due(t0).unwrap();
        index.apply(oom("2", 2), t0);
        assert!(index.next_due(t0).is_none(), "the key is in flight");
        index.settle(&item, Some(&all(&item, Settlement::Settled)), t0);
        let next = index.next_due(t0).expect("the change seen meanwhile");
        assert_eq!(problems(&next), ["pod-a/app/OOMKilled/2"]);
    }

    #[test]
    fn a_failed_handling_backs_off_doubling_and_a_success_resets_it() {
        let t0 = start();
        let mut index = index();
        index.apply(oom("1", 1), t0);
        let mut now = t0;
        for backoff in [5, 10, 20, 40] {
            let item = index.next_due(now).expect("due");
            index.settle(&item, Some(&all(&item, Settlement::Failed)), now);
            assert!(
                index.next_due(after(now, backoff - 1)).is_none(),
                "{backoff}s"
            );
            now = after(now, backoff);
        }
        let item = index.next_due(now).unwrap();
        index.settle(&item, None, now);
        assert!(
            index.next_due(after(now, 79)).is_none(),
            "a deadline passed is a failure"
        );
        now = after(now, 80);
        let item = index.next_due(now).unwrap();
        index.settle(&item, Some(&all(&item, Settlement::Settled)), now);
        // Success forgot the failures: the next occurrence's failure backs off 5 s again.
        index.apply(oom("2", 2), now);
        let item = index.next_due(now).unwrap();
        index.settle(&item, Some(&all(&item, Settlement::Failed)), now);
        assert!(index.next_due(after(now, 4)).is_none());
        assert!(index.next_due(after(now, 5)).is_some());
    }

    #[test]
    fn the_backoff_stays_through_changes_until_a_new_occurrence() {
        let t0 = start();
        let mut index = index();
        index.apply(oom("1", 1), t0);
        let item = index.next_due(t0).unwrap();
        index.settle(&item, Some(&all(&item, Settlement::Failed)), t0);
        // A status update with the same occurrence keeps the backoff.
        index.apply(oom("2", 1), after(t0, 1));
        assert!(index.next_due(after(t0, 2)).is_none());
        assert!(index.next_due(after(t0, 5)).is_some());

        let mut index = self::index();
        index.apply(oom("1", 1), t0);
        let item = index.next_due(t0).unwrap();
        index.settle(&item, Some(&all(&item, Settlement::Failed)), t0);
        // A new OOM kill is handled at once, not after the earlier one's backoff.
        index.apply(oom("2", 2), after(t0, 1));
        assert!(index.next_due(after(t0, 1)).is_some());
    }

    #[test]
    fn a_rate_limited_action_is_retried_when_its_wait_ends() {
        let t0 = start();
        let mut index = index();
        index.apply(oom("1", 1), t0);
        let item = index.next_due(t0).unwrap();
        let wait = Settlement::RetryIn(Duration::from_secs(30));
        index.settle(&item, Some(&all(&item, wait)), t0);
        assert!(index.next_due(after(t0, 29)).is_none());
        assert_eq!(index.next_wake(), Some(after(t0, 30).mono));
        assert!(index.next_due(after(t0, 30)).is_some(), "no event needed");
    }

    #[test]
    fn a_time_based_problem_is_looked_at_when_its_grace_ends() {
        let t0 = start();
        let mut index = index();
        index.apply(creating("1"), t0);
        assert!(index.next_due(t0).is_none(), "within its grace");
        assert_eq!(index.tracked_len(), 1, "held for the later look");
        assert_eq!(index.next_wake(), Some(after(t0, GRACE).mono));
        let item = index.next_due(after(t0, GRACE)).expect("its grace ended");
        assert_eq!(item.problems[0].kind.name(), "StuckCreating");
    }

    #[test]
    fn a_warning_about_a_tracked_pod_makes_it_due_at_once() {
        let t0 = start();
        let mut index = index();
        index.apply(creating("1"), t0);
        let warning: Event = serde_json::from_value(json!({
            "metadata": {"name": "web.1", "namespace": "shop", "uid": "event-1"},
            "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "web-5d4c3b2a1-a", "uid": "pod-a"},
            "type": "Warning", "reason": "FailedMount",
            "message": "MountVolume.SetUp failed for volume \"config\" : configmap \"web\" not found",
            "lastTimestamp": "2026-11-28T12:00:20Z"}))
        .unwrap();
        index.warned(warning, after(t0, 30));
        let item = index.next_due(after(t0, 30)).expect("the Warning says why");
        assert_eq!(item.problems[0].kind.name(), "StuckCreating");
        assert_eq!(item.warnings.len(), 1, "the work item quotes it");
    }

    #[test]
    fn what_was_handled_is_forgotten_unseen_after_its_time_to_live() {
        let t0 = start();
        let mut index = index();
        index.apply(oom("1", 1), t0);
        let item = index.next_due(t0).unwrap();
        index.settle(&item, Some(&all(&item, Settlement::Settled)), t0);
        let ttl = IndexConfig::default().handled_ttl.as_secs();
        index.expire(after(t0, ttl + 1));
        index.apply(oom("1", 1), after(t0, ttl + 1));
        assert!(
            index.next_due(after(t0, ttl + 1)).is_some(),
            "handled once more (within the executor's rate limits)"
        );
    }

    fn tls_secret(rv: &str, annotations: Value) -> Subject {
        let start = time::OffsetDateTime::now_utc() - time::Duration::days(100);
        let expired = crate::certs::generate::generate_valid_between(
            &["shop.example.com".into()],
            start,
            time::Duration::days(30),
        )
        .unwrap();
        Subject::Secret(Box::new(
            serde_json::from_value(json!({"type": "kubernetes.io/tls",
                "metadata": {"name": "shop-tls", "namespace": "shop", "uid": "secret-1",
                    "resourceVersion": rv, "annotations": annotations},
                "stringData": {},
                "data": {"tls.crt": base64(&expired.cert), "tls.key": base64(&expired.key)}}))
            .unwrap(),
        ))
    }

    fn base64(text: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    /// The 31 s case: a Secret already reported expired, then annotated with its Certificate,
    /// is looked at at once, not after the later look of its settled problem.
    #[test]
    fn a_change_to_a_settled_object_is_looked_at_at_once() {
        let t0 = start();
        let mut index = index();
        index.apply(tls_secret("1", json!({})), t0);
        let item = index.next_due(t0).expect("expired");
        index.settle(&item, Some(&all(&item, Settlement::Settled)), t0);
        index.apply(tls_secret("1", json!({})), after(t0, 1));
        assert!(
            index.next_due(after(t0, 1)).is_none(),
            "nothing changed: the later look waits"
        );
        let annotated = json!({"cert-manager.io/certificate-name": "shop"});
        index.apply(tls_secret("2", annotated), after(t0, 2));
        let item = index
            .next_due(after(t0, 2))
            .expect("the change is looked at at once");
        assert!(matches!(
            &item.problems[0].kind,
            crate::heal::detect::ProblemKind::Certificate { managed_by: Some(c), .. } if c == "shop"
        ));
        // Unchanged, a certificate still wrong is looked at again after the interval.
        index.settle(&item, Some(&all(&item, Settlement::Settled)), after(t0, 2));
        let interval = IndexConfig::default().certificate_interval.as_secs();
        assert!(index.next_due(after(t0, 1 + interval)).is_none());
        assert!(index.next_due(after(t0, 2 + interval)).is_some());
    }

    #[test]
    fn deleted_and_unlisted_objects_are_forgotten_with_their_series() {
        let t0 = start();
        let mut index = index();
        let effects = index.apply(tls_secret("1", json!({})), t0);
        let name = SecretName {
            namespace: "shop".into(),
            name: "shop-tls".into(),
        };
        assert!(matches!(&effects[..], [Effect::ExportExpiry { secret, .. }] if *secret == name));
        assert_eq!(index.tracked_len(), 1);
        let effects = index.delete(&tls_secret("2", json!({})), t0);
        assert_eq!(
            effects,
            [
                Effect::ForgetHistory(ActionKey::Renew {
                    namespace: "shop".into(),
                    secret: "shop-tls".into()
                }),
                Effect::ForgetExpiry(name.clone())
            ]
        );
        assert_eq!((index.tracked_len(), index.queue_len()), (0, 0));

        index.apply(tls_secret("3", json!({})), t0);
        index.apply(oom("1", 1), t0);
        index.relist_begin("Secret");
        assert_eq!(index.relist_end("Secret", t0), [Effect::ForgetExpiry(name)]);
        assert_eq!(
            index.tracked_len(),
            1,
            "the pod stays: pods were not re-listed"
        );
        index.relist_begin("Pod");
        index.relist_end("Pod", t0);
        assert_eq!((index.tracked_len(), index.queue_len()), (0, 0));
    }

    #[test]
    fn objects_outside_the_watched_namespaces_are_not_held() {
        let t0 = start();
        let mut index = index();
        let mut system = oom("1", 1);
        if let Subject::Pod(pod) = &mut system {
            pod.metadata.namespace = Some("kube-system".into());
        }
        index.apply(system, t0);
        assert!(index.next_due(t0).is_none());
        assert_eq!(index.tracked_len(), 0);
    }
}
