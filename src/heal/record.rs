//! RECORD: the one Event recorder of the healing half (the executor and the Vault check), with
//! the one fingerprint rule: an Event's action carries a hash of its note, so a repeat of the same
//! note counts up in one series while a new note (a raise to a new value, another failure) is a
//! new Event with its own note. Events name their object by uid, so `kubectl describe` shows
//! them. A dry run publishes none (it logs what it would publish).

use std::hash::{Hash, Hasher};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Reporter};

use crate::heal::call;
use crate::heal::plan::TargetRef;

/// The longest note an Event keeps (the `events.k8s.io/v1` limit is 1 KiB).
const NOTE_LIMIT: usize = 1000;

pub struct Recorder {
    recorder: kube::runtime::events::Recorder,
    timeout: Duration,
    dry_run: bool,
}

impl Recorder {
    /// A recorder reporting as `selfheal` (instance: `$POD_NAME`); with `dry_run`, it publishes
    /// nothing.
    pub fn new(client: Client, timeout: Duration, dry_run: bool) -> Self {
        let reporter = Reporter {
            controller: "selfheal".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: kube::runtime::events::Recorder::new(client, reporter),
            timeout,
            dry_run,
        }
    }

    /// Publishes an Event about `regarding` (`related`: a second object it concerns), within
    /// the call timeout; a failure is logged, never raised. `action` names the Event's series
    /// (`Heal`, `CheckVault`); the note's fingerprint is added to it.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        related: Option<ObjectReference>,
        type_: EventType,
        (action, reason): (&str, &str),
        note: &str,
    ) {
        let note = crate::text::truncate(note, NOTE_LIMIT);
        if self.dry_run {
            tracing::info!(reason, %note, "dry run: would publish an Event");
            return;
        }
        let event = Event {
            type_,
            reason: reason.to_string(),
            action: format!("{action}-{:016x}", fingerprint(&note)),
            note: Some(note),
            secondary: related,
        };
        let publish = self.recorder.publish(&event, regarding);
        match call::within(self.timeout, || format!("publishing {reason}"), publish).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, reason, "could not publish an Event"),
            Err(elapsed) => tracing::warn!(%elapsed, "could not publish an Event"),
        }
    }
}

/// A fingerprint of an Event's note, carried in its action.
pub fn fingerprint(text: &str) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// An Event's reference to `target`.
pub fn reference(target: &TargetRef) -> ObjectReference {
    ObjectReference {
        api_version: Some(target.api_version.clone()),
        kind: Some(target.kind.clone()),
        namespace: Some(target.namespace.clone()),
        name: Some(target.name.clone()),
        uid: target.uid.clone(),
        ..ObjectReference::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_note_is_a_new_series_and_a_repeat_is_not() {
        assert_eq!(fingerprint("to 768Mi"), fingerprint("to 768Mi"));
        assert_ne!(fingerprint("to 768Mi"), fingerprint("to 1280Mi"));
        let target = TargetRef::new("apps/v1", "Deployment", "shop", "web").with_uid(Some("u"));
        let reference = reference(&target);
        assert_eq!(reference.uid.as_deref(), Some("u"));
        assert_eq!(reference.kind.as_deref(), Some("Deployment"));
    }
}
