//! The recent Warning events about pods and claims, fed by one cluster-wide watch of `core/v1`
//! Events with the field selector `type=Warning`, so the watcher reports a state the moment a
//! Warning names it (`FailedMount` on a creating pod, `Unhealthy` readiness failures,
//! `ProvisioningFailed` on a claim) instead of after the grace period.
//!
//! Events are kept whatever the order in which the pod and its events are seen (a kubelet emits
//! `Unhealthy` before it turns the pod not ready), so detection finds them when the pod changes.
//!
//! Memory is bounded whatever the cluster does: only Warnings about pods and claims are kept, and
//! of each only what detection and diagnosis read (reason, message cut at `MESSAGE_LIMIT` bytes,
//! the object reference, when it was last seen: 192 bytes and its text, about 400 bytes for a
//! kubelet Warning, where an `Event` takes 1000 bytes before any text). At most `per_object`
//! events per object (the newest; an event the apiserver updates — same uid, a higher count —
//! replaces itself); at most `max_objects` objects (when full, an object the watcher is not
//! waiting on goes first, the one warned longest ago first). An object's events go when it is
//! deleted and expire `ttl` after its last Warning (the apiserver keeps events an hour by
//! default).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use tokio::time::Instant;

use crate::heal::detect::Warning;
use crate::heal::inspect::{self, ClusterView};

/// The longest event message kept (the `events.k8s.io/v1` note limit).
pub const MESSAGE_LIMIT: usize = 1024;

/// Kinds whose Warnings detection reads.
const KINDS: [&str; 2] = ["Pod", "PersistentVolumeClaim"];

#[derive(Debug)]
pub struct RecentWarnings {
    max_objects: usize,
    per_object: usize,
    ttl: Duration,
    /// Object uid → its recent Warnings, oldest first.
    by_object: HashMap<String, Recent>,
}

#[derive(Debug)]
struct Recent {
    events: VecDeque<Kept>,
    updated: Instant,
}

/// What is kept of one Warning event.
#[derive(Debug)]
struct Kept {
    /// The event's own uid: the apiserver updates an event in place (a higher count).
    uid: Option<String>,
    kind: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    field_path: Option<String>,
    reason: Option<String>,
    message: Option<String>,
    last_seen: Option<Timestamp>,
}

impl Kept {
    fn new(event: Event) -> Self {
        let last_seen = inspect::event_seen(&event);
        let involved = event.involved_object;
        Self {
            uid: event.metadata.uid,
            kind: involved.kind,
            namespace: involved.namespace.or(event.metadata.namespace),
            name: involved.name,
            field_path: involved.field_path,
            reason: event.reason,
            message: event
                .message
                .map(|m| crate::text::truncate(&m, MESSAGE_LIMIT)),
            last_seen,
        }
    }

    fn is(&self, event_uid: Option<&str>) -> bool {
        self.uid.is_some() && self.uid.as_deref() == event_uid
    }

    /// As a `core/v1` Event about the object with `object_uid`.
    fn to_event(&self, object_uid: &str) -> Event {
        Event {
            metadata: ObjectMeta {
                uid: self.uid.clone(),
                namespace: self.namespace.clone(),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                kind: self.kind.clone(),
                namespace: self.namespace.clone(),
                name: self.name.clone(),
                uid: Some(object_uid.to_string()),
                field_path: self.field_path.clone(),
                ..ObjectReference::default()
            },
            type_: Some("Warning".into()),
            reason: self.reason.clone(),
            message: self.message.clone(),
            event_time: self.last_seen.map(MicroTime),
            ..Event::default()
        }
    }
}

impl RecentWarnings {
    pub fn new(max_objects: usize, per_object: usize, ttl: Duration) -> Self {
        Self {
            max_objects: max_objects.max(1),
            per_object: per_object.max(1),
            ttl,
            by_object: HashMap::new(),
        }
    }

    /// Whether a Warning about a new object would push another one out.
    pub fn is_full(&self) -> bool {
        self.by_object.len() >= self.max_objects
    }

    /// Keeps `event` if it is a Warning about a pod or a claim with a uid; returns that uid.
    /// When full, the objects `wanted` says the watcher waits on are pushed out last.
    pub fn record(
        &mut self,
        event: Event,
        now: Instant,
        wanted: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let uid = about_uid(&event)?.to_string();
        if !self.by_object.contains_key(&uid) && self.is_full() {
            let oldest = self
                .by_object
                .iter()
                .min_by_key(|(uid, recent)| (wanted(uid), recent.updated))
                .map(|(uid, _)| uid.clone());
            if let Some(oldest) = oldest {
                self.by_object.remove(&oldest);
            }
        }
        let recent = self.by_object.entry(uid.clone()).or_insert_with(|| Recent {
            events: VecDeque::new(),
            updated: now,
        });
        let kept = Kept::new(event);
        recent.events.retain(|k| !k.is(kept.uid.as_deref()));
        recent.events.push_back(kept);
        while recent.events.len() > self.per_object {
            recent.events.pop_front();
        }
        recent.updated = now;
        Some(uid)
    }

    /// The event was deleted (its time to live passed).
    pub fn remove(&mut self, event: &Event) {
        let Some(uid) = about_uid(event) else {
            return;
        };
        if let Some(recent) = self.by_object.get_mut(uid) {
            recent
                .events
                .retain(|k| !k.is(event.metadata.uid.as_deref()));
            if recent.events.is_empty() {
                self.by_object.remove(uid);
            }
        }
    }

    /// The Warnings kept about the object with `uid`, oldest first, as `core/v1` Events.
    pub fn events_of(&self, uid: &str) -> Vec<Event> {
        self.by_object
            .get(uid)
            .into_iter()
            .flat_map(|recent| recent.events.iter())
            .map(|kept| kept.to_event(uid))
            .collect()
    }

    /// The Warnings about the object of `kind` with `meta`, as detection reads them.
    pub fn about(&self, kind: &str, meta: &ObjectMeta) -> Vec<Warning> {
        let Some(uid) = meta.uid.as_deref() else {
            return Vec::new();
        };
        if !self.by_object.contains_key(uid) {
            return Vec::new();
        }
        let view = ClusterView {
            events: self.events_of(uid),
            ..ClusterView::default()
        };
        view.events_about(kind, meta).warnings
    }

    /// The object is gone.
    pub fn forget_object(&mut self, uid: &str) {
        self.by_object.remove(uid);
    }

    /// Drops everything (a re-list of the events begins).
    pub fn clear(&mut self) {
        self.by_object.clear();
    }

    /// Drops the objects not warned about for the time to live.
    pub fn expire(&mut self, now: Instant) {
        let ttl = self.ttl;
        self.by_object
            .retain(|_, recent| now.saturating_duration_since(recent.updated) < ttl);
    }

    /// Objects with kept Warnings.
    pub fn len(&self) -> usize {
        self.by_object.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_object.is_empty()
    }
}

/// The uid of the pod or claim a Warning event is about.
fn about_uid(event: &Event) -> Option<&str> {
    let involved = &event.involved_object;
    let kept_kind = involved.kind.as_deref().is_some_and(|k| KINDS.contains(&k));
    (event.type_.as_deref() == Some("Warning") && kept_kind)
        .then_some(involved.uid.as_deref())
        .flatten()
        .filter(|uid| !uid.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn warning(event_uid: &str, object_uid: &str, reason: &str, message: &str) -> Event {
        serde_json::from_value(json!({
            "metadata": {"name": format!("p.{event_uid}"), "namespace": "shop", "uid": event_uid,
                "managedFields": [{"manager": "kubelet"}]},
            "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "p", "uid": object_uid,
                "fieldPath": "spec.containers{app}"},
            "type": "Warning", "reason": reason, "message": message,
            "lastTimestamp": "2026-11-28T12:00:00Z", "count": 1,
            "source": {"component": "kubelet", "host": "node-1"}}))
        .unwrap()
    }

    fn meta(uid: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some("p".into()),
            namespace: Some("shop".into()),
            uid: Some(uid.into()),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn only_warnings_about_pods_and_claims_are_kept_slim() {
        let t0 = Instant::now();
        let mut recent = RecentWarnings::new(10, 4, Duration::from_secs(3600));
        let long = "x".repeat(5000);
        assert_eq!(
            recent.record(warning("e1", "pod-1", "Unhealthy", &long), t0, |_| false),
            Some("pod-1".into())
        );
        let mut normal = warning("e2", "pod-1", "Pulled", "pulled");
        normal.type_ = Some("Normal".into());
        assert_eq!(recent.record(normal, t0, |_| false), None);
        let mut about_node = warning("e3", "node-uid", "NodeNotReady", "down");
        about_node.involved_object.kind = Some("Node".into());
        assert_eq!(recent.record(about_node, t0, |_| false), None);
        let mut no_uid = warning("e4", "", "FailedMount", "m");
        no_uid.involved_object.uid = None;
        assert_eq!(recent.record(no_uid, t0, |_| false), None);

        assert_eq!(recent.len(), 1);
        let kept = recent.events_of("pod-1");
        assert_eq!(kept.len(), 1);
        assert!(kept[0].metadata.managed_fields.is_none());
        assert!(kept[0].source.is_none());
        let message = kept[0].message.as_deref().unwrap();
        assert!(message.ends_with('…') && message.len() <= MESSAGE_LIMIT + '…'.len_utf8());
        let warnings = recent.about("Pod", &meta("pod-1"));
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].reason, "Unhealthy");
        assert_eq!(warnings[0].container.as_deref(), Some("app"));
        assert_eq!(
            warnings[0].last_seen,
            Some("2026-11-28T12:00:00Z".parse().unwrap()),
            "when it was last seen is kept (a Warning older than the running container is old news)"
        );
        assert!(recent.about("Pod", &meta("pod-2")).is_empty());
    }

    #[test]
    fn memory_stays_bounded_per_object_and_in_objects() {
        let t0 = Instant::now();
        let mut recent = RecentWarnings::new(2, 2, Duration::from_secs(60));
        for n in 0..5 {
            recent.record(
                warning(&format!("e{n}"), "a", "FailedMount", "m"),
                t0,
                |_| false,
            );
        }
        // An updated event (same uid, higher count) replaces itself.
        let again = warning("e4", "a", "FailedMount", "m again");
        recent.record(again, t0, |_| false);
        let kept: Vec<Option<String>> = recent
            .events_of("a")
            .into_iter()
            .map(|e| e.message)
            .collect();
        assert_eq!(kept, [Some("m".into()), Some("m again".into())]);

        let later = t0 + Duration::from_secs(10);
        recent.record(warning("b1", "b", "FailedMount", "m"), later, |_| false);
        assert!(recent.is_full());
        recent.record(warning("c1", "c", "FailedMount", "m"), later, |_| false);
        assert_eq!(recent.len(), 2);
        assert_eq!(
            recent.events_of("a").len(),
            0,
            "the least recent goes first"
        );
        // ...unless the watcher waits on it.
        let latest = later + Duration::from_secs(10);
        recent.record(warning("g1", "g", "FailedMount", "m"), latest, |uid| {
            uid == "b"
        });
        assert_eq!(recent.events_of("b").len(), 1);
        assert_eq!(recent.events_of("c").len(), 0);
        recent.forget_object("g");

        recent.remove(&warning("b1", "b", "FailedMount", "m"));
        assert_eq!(recent.events_of("b").len(), 0);
        recent.forget_object("c");
        assert!(recent.is_empty());

        recent.record(warning("d1", "d", "FailedMount", "m"), t0, |_| false);
        recent.record(warning("f1", "f", "FailedMount", "m"), later, |_| false);
        recent.expire(t0 + Duration::from_secs(60));
        assert_eq!(recent.events_of("d").len(), 0, "expired");
        assert_eq!(recent.events_of("f").len(), 1);
        recent.clear();
        assert!(recent.is_empty());
    }
}
