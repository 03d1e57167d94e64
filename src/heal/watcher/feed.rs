//! Watch events to the index, and the index's effects to the metrics and the history.

use k8s_openapi::api::core::v1::Event;
use kube::runtime::watcher;

use super::index::SecretName;
use super::{Context, Effect, Now, Stores, Subject, WatchIndex};
use crate::metrics::SecretLabels;

/// What a watch said, for any kind of subject.
pub(super) enum Seen {
    Applied(Subject),
    Deleted(Subject),
    /// A (re-)list of this kind begins.
    ListStarted(&'static str),
    Listed(Subject),
    ListDone(&'static str),
    /// A Warning event, new, updated or listed.
    Warned(Box<Event>),
    /// A Warning event was deleted (its time to live passed).
    WarningGone(Box<Event>),
}

pub(super) fn seen<K>(
    event: watcher::Event<K>,
    kind: &'static str,
    wrap: impl Fn(K) -> Subject,
) -> Seen {
    match event {
        watcher::Event::Apply(object) => Seen::Applied(wrap(object)),
        watcher::Event::Delete(object) => Seen::Deleted(wrap(object)),
        watcher::Event::Init => Seen::ListStarted(kind),
        watcher::Event::InitApply(object) => Seen::Listed(wrap(object)),
        watcher::Event::InitDone => Seen::ListDone(kind),
    }
}

pub(super) fn seen_warning(event: watcher::Event<Event>) -> Seen {
    match event {
        watcher::Event::Apply(event) | watcher::Event::InitApply(event) => {
            Seen::Warned(Box::new(event))
        }
        watcher::Event::Delete(event) => Seen::WarningGone(Box::new(event)),
        watcher::Event::Init => Seen::ListStarted("Event"),
        watcher::Event::InitDone => Seen::ListDone("Event"),
    }
}

/// Only the end of a list matters of the watches whose stores are facts (namespaces,
/// workloads): from then on the store is read instead of the API.
pub(super) fn list_end<K>(event: watcher::Event<K>, kind: &'static str) -> Option<Seen> {
    matches!(event, watcher::Event::InitDone).then_some(Seen::ListDone(kind))
}

/// Feeds one watch event to the index.
pub(super) fn on_seen(index: &mut WatchIndex, stores: &mut Stores, seen: Seen) -> Vec<Effect> {
    let now = Now::current();
    match seen {
        Seen::Applied(subject) => index.apply(subject, now),
        Seen::Listed(subject) => index.relist_item(subject, now),
        Seen::Deleted(subject) => index.delete(&subject, now),
        Seen::Warned(event) => {
            index.warned(*event, now);
            Vec::new()
        }
        Seen::WarningGone(event) => {
            index.warning_gone(&event);
            Vec::new()
        }
        // A re-list of the events replaces what was kept.
        Seen::ListStarted("Event") => {
            index.warnings_relisted();
            Vec::new()
        }
        Seen::ListStarted(kind) => {
            index.relist_begin(kind);
            Vec::new()
        }
        Seen::ListDone(kind) => {
            stores.listed.insert(kind);
            match kind {
                "Pod" | "PersistentVolumeClaim" | "Secret" => index.relist_end(kind, now),
                _ => Vec::new(),
            }
        }
    }
}

/// Carries out the index's effects.
pub(super) fn carry_out(context: &Context, effects: Vec<Effect>) {
    for effect in effects {
        match effect {
            Effect::ExportExpiry { secret, not_after } => {
                context
                    .metrics
                    .certificate_expiry
                    .get_or_create(&secret_labels(secret))
                    .set(not_after);
            }
            Effect::ForgetExpiry(secret) => {
                context
                    .metrics
                    .certificate_expiry
                    .remove(&secret_labels(secret));
            }
            Effect::ForgetHistory(key) => context.executor.limiter().reset(&key),
        }
    }
}

fn secret_labels(secret: SecretName) -> SecretLabels {
    SecretLabels {
        namespace: secret.namespace,
        secret: secret.name,
    }
}
