//! The applied-fixes note (`selfheal.io/applied-fixes`) an admitted object carries: what the
//! note says after this admission. The line format and the merge are `core::raise`'s, shared
//! with the executor.

use serde_json::Value;

use crate::core::raise::{APPLIED_ANNOTATION, write_note};
use crate::core::workload::{set_at, str_at};

use super::Mutation;

/// Writes the note of `changed` after `mutation` (which changed something), given the live
/// object of an UPDATE.
pub(super) fn write(changed: &mut Value, live: Option<&Value>, mutation: &Mutation) {
    let live_note =
        live.and_then(|live| str_at(live, &["metadata", "annotations", APPLIED_ANNOTATION]));
    match live_note {
        // Only live values were given back: the live object's note still describes them, and
        // keeping it keeps the object equal to the live one in everything the user did not change.
        Some(note) if mutation.applied.is_empty() => set_at(
            changed,
            &["metadata", "annotations", APPLIED_ANNOTATION],
            Value::String(note.to_string()),
        ),
        // Nothing raised and no live note: nothing new to say, the note is left as sent.
        None if mutation.applied.is_empty() => {}
        _ => write_note(changed, live_note, &mutation.applied, &mutation.kept),
    }
}
