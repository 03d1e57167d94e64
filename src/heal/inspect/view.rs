//! The view of the cluster a diagnosis reads: pods, claims, events, TLS Secrets, Services and
//! their EndpointSlices, and what is known of intermediate owners; events matched to their object.

use std::collections::HashMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ObjectMeta;

use super::{MAX_JOB_GETS, UnreadableItem};
use crate::core::owners::{self, Workload};
use crate::heal::detect::{self, Warning};
use crate::heal::diagnose::Evidence;

/// Pods, claims and events, plus what is known of intermediate owners.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    pub pods: Vec<Pod>,
    pub claims: Vec<PersistentVolumeClaim>,
    pub events: Vec<Event>,
    /// `kubernetes.io/tls` Secrets.
    pub secrets: Vec<Secret>,
    pub services: Vec<Service>,
    pub endpoint_slices: Vec<EndpointSlice>,
    /// What the view knows of the intermediate owners of its pods (ReplicaSets and Jobs).
    pub owners: Owners,
    /// Items of a dump that could not be read (`from_dump`), for the report.
    pub unreadable: Vec<UnreadableItem>,
}

/// (namespace, kind, name) of a ReplicaSet or Job → what it answers to (kind, name): its
/// controller, or itself when it has none (see `core::owners::identity`).
pub type Owners = HashMap<(String, String, String), (String, String)>;

/// Log tails of one container: (current, previous instance).
pub type Logs = HashMap<(String, String), (String, String)>;

impl ClusterView {
    /// The events about the object of `kind` with `meta` (see `is_about`), oldest first.
    pub fn events_about(&self, kind: &str, meta: &ObjectMeta) -> ObjectEvents {
        EventIndex::new(&self.events).about(kind, meta)
    }

    /// The workload `pod` answers to (`None` for a bare pod), through the one identity rule
    /// with what the view knows of intermediate owners.
    pub fn workload_of(&self, pod: &Pod) -> Option<Workload> {
        self.workload_with(pod, &Owners::new())
    }

    /// As `workload_of`, also knowing the intermediate owners in `learned`.
    pub(super) fn workload_with(&self, pod: &Pod, learned: &Owners) -> Option<Workload> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        owners::owning_workload(pod, |kind, name| {
            let key = (namespace.clone(), kind.to_string(), name.to_string());
            self.owners.get(&key).or_else(|| learned.get(&key)).cloned()
        })
    }

    /// Records what a ReplicaSet or Job (its metadata) answers to.
    pub fn learn_owner(&mut self, kind: &str, meta: &ObjectMeta) {
        learn(&mut self.owners, kind, meta);
    }

    /// Jobs controlling the view's pods with a finding (`troubled`, pod UIDs) that the view does
    /// not know (the watcher's view holds one pod and no Jobs), as (namespace, name), each once,
    /// at most `MAX_JOB_GETS`.
    pub(super) fn unknown_jobs(&self, troubled: &[&str]) -> Vec<(String, String)> {
        let mut unknown: Vec<(String, String)> = Vec::new();
        let pods = self
            .pods
            .iter()
            .filter(|pod| troubled.contains(&pod.metadata.uid.as_deref().unwrap_or_default()));
        for pod in pods {
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let Some((kind, name)) = owners::controller_of(&pod.metadata) else {
                continue;
            };
            let key = (namespace, kind, name);
            if key.1 == "Job" && !self.owners.contains_key(&key) {
                let job = (key.0, key.2);
                if !unknown.contains(&job) {
                    unknown.push(job);
                }
            }
        }
        unknown.truncate(MAX_JOB_GETS);
        unknown
    }
}

pub(super) fn learn(owners: &mut Owners, kind: &str, meta: &ObjectMeta) {
    if let Some(answer) = owners::intermediate_answer(kind, meta) {
        let key = (
            meta.namespace.clone().unwrap_or_default(),
            kind.to_string(),
            meta.name.clone().unwrap_or_default(),
        );
        owners.insert(key, answer);
    }
}

/// When an event was last seen: its series' last observation, its last timestamp, its event
/// time, its first timestamp, its creation — the first it has.
pub fn event_seen(event: &Event) -> Option<Timestamp> {
    event
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref())
        .map(|t| t.0)
        .or(event.last_timestamp.as_ref().map(|t| t.0))
        .or(event.event_time.as_ref().map(|t| t.0))
        .or(event.first_timestamp.as_ref().map(|t| t.0))
        .or(event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Whether `event` is about the object of `kind` with `meta`: by UID when both have one, else by
/// kind, namespace and name (an event or object without a UID, as hand-made dumps have).
pub fn is_about(event: &Event, kind: &str, meta: &ObjectMeta) -> bool {
    let involved = &event.involved_object;
    match (involved.uid.as_deref(), meta.uid.as_deref()) {
        (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() => a == b,
        _ => {
            let namespace = involved
                .namespace
                .as_deref()
                .or(event.metadata.namespace.as_deref());
            involved.kind.as_deref() == Some(kind)
                && involved.name.is_some()
                && involved.name == meta.name
                && namespace == meta.namespace.as_deref()
        }
    }
}

/// The events of a view by the object they are about, so each object's events are found
/// without reading every event (a cluster has many pods and many more events).
pub(super) struct EventIndex<'a> {
    by_uid: HashMap<&'a str, Vec<&'a Event>>,
    /// (kind, namespace, name) → events.
    by_name: HashMap<(String, String, String), Vec<&'a Event>>,
}

impl<'a> EventIndex<'a> {
    pub(super) fn new(events: &'a [Event]) -> Self {
        let mut index = EventIndex {
            by_uid: HashMap::new(),
            by_name: HashMap::new(),
        };
        for event in events {
            let involved = &event.involved_object;
            if let Some(uid) = involved.uid.as_deref().filter(|uid| !uid.is_empty()) {
                index.by_uid.entry(uid).or_default().push(event);
            }
            let namespace = involved
                .namespace
                .as_deref()
                .or(event.metadata.namespace.as_deref());
            if let (Some(kind), Some(name)) = (&involved.kind, &involved.name) {
                let key = (
                    kind.clone(),
                    namespace.unwrap_or_default().to_string(),
                    name.clone(),
                );
                index.by_name.entry(key).or_default().push(event);
            }
        }
        index
    }

    /// The events about the object of `kind` with `meta` (see `is_about`), oldest first.
    pub(super) fn about(&self, kind: &str, meta: &ObjectMeta) -> ObjectEvents {
        let by_uid = meta
            .uid
            .as_deref()
            .and_then(|uid| self.by_uid.get(uid))
            .into_iter()
            .flatten();
        let key = (
            kind.to_string(),
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        );
        let by_name = self.by_name.get(&key).into_iter().flatten();
        let mut events: Vec<&Event> = Vec::new();
        for event in by_uid.chain(by_name) {
            if is_about(event, kind, meta) && !events.iter().any(|e| std::ptr::eq(*e, *event)) {
                events.push(event);
            }
        }
        events.sort_by_key(|e| event_seen(e));
        let mut about = ObjectEvents::default();
        for event in events {
            let reason = event.reason.clone().unwrap_or_default();
            let message = event.message.clone().unwrap_or_default();
            let line = format!("{reason}: {message}");
            if event.type_.as_deref() == Some("Warning") {
                about.warning_lines.push(line.clone());
                about.warnings.push(Warning {
                    container: event
                        .involved_object
                        .field_path
                        .as_deref()
                        .and_then(detect::field_path_container),
                    last_seen: event_seen(event),
                    reason,
                    message,
                });
            }
            about.lines.push(line);
        }
        about
    }
}

/// The events about one object, oldest first, as diagnosis and detection read them.
#[derive(Debug, Clone, Default)]
pub struct ObjectEvents {
    /// Every event, as `Reason: message`.
    pub lines: Vec<String>,
    /// The Warning events, as `Reason: message`.
    pub warning_lines: Vec<String>,
    /// The Warning events, for detection.
    pub warnings: Vec<Warning>,
}

impl ObjectEvents {
    pub(super) fn evidence<'a>(&'a self, logs: &'a str, previous_logs: &'a str) -> Evidence<'a> {
        Evidence {
            logs,
            previous_logs,
            events: &self.lines,
            warnings: &self.warning_lines,
        }
    }
}
