//! Events: the validation of `events.k8s.io/v1` Events, and the conversion between the two
//! versions the apiserver serves from one storage (`core/v1` `involvedObject`/`message`/
//! `reportingComponent` ⇄ `events.k8s.io/v1` `regarding`/`note`/`reportingController`), so an
//! Event written with one API is read with the other, as `kubectl describe` reads them.

use serde_json::{Map, Value};

use super::rules::FieldError;

/// The longest note the apiserver accepts.
pub const NOTE_LIMIT: usize = 1024;
const NAME_LIMIT: usize = 128;

fn text<'a>(object: &'a Value, field: &str) -> &'a str {
    object[field].as_str().unwrap_or_default()
}

/// The apiserver's checks of a new `events.k8s.io/v1` Event. One check is the test server's own:
/// `regarding` is required, because an Event about nothing is shown by no `kubectl describe`.
pub fn validate(event: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (field, limit) in [
        ("reportingController", usize::MAX),
        ("reportingInstance", NAME_LIMIT),
        ("action", NAME_LIMIT),
        ("reason", NAME_LIMIT),
    ] {
        let value = text(event, field);
        if value.is_empty() {
            errors.push(FieldError::required(field));
        } else if value.len() > limit {
            errors.push(FieldError::too_long(field, limit));
        }
    }
    if text(event, "eventTime").is_empty() {
        errors.push(FieldError::required("eventTime"));
    }
    if text(event, "note").len() > NOTE_LIMIT {
        errors.push(FieldError::too_long("note", NOTE_LIMIT));
    }
    let kind = text(event, "type");
    if kind != "Normal" && kind != "Warning" {
        errors.push(FieldError::invalid(
            "type",
            kind,
            "has invalid value, must be one of: Normal, Warning",
        ));
    }
    if !event["regarding"].is_object() {
        errors.push(FieldError::required("regarding"));
    }
    let regarding_namespace = event["regarding"]["namespace"].as_str().unwrap_or_default();
    let namespace = event["metadata"]["namespace"].as_str().unwrap_or_default();
    if !regarding_namespace.is_empty() && regarding_namespace != namespace {
        errors.push(FieldError::invalid(
            "regarding.namespace",
            regarding_namespace,
            "does not match event.namespace",
        ));
    }
    errors
}

/// Field renames between the versions: (core/v1, events.k8s.io/v1).
const RENAMES: [(&str, &str); 7] = [
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("count", "deprecatedCount"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
];

fn convert(event: &Value, api_version: &str, from_core: bool) -> Value {
    let Value::Object(fields) = event else {
        return event.clone();
    };
    let mut out = Map::new();
    for (key, value) in fields {
        let renamed = RENAMES.iter().find_map(|(core, v1)| {
            let (from, to) = if from_core { (core, v1) } else { (v1, core) };
            (key == from).then_some(*to)
        });
        out.insert(renamed.unwrap_or(key).to_string(), value.clone());
    }
    out.insert("apiVersion".into(), Value::String(api_version.into()));
    out.insert("kind".into(), Value::String("Event".into()));
    Value::Object(out)
}

/// An `events.k8s.io/v1` Event as `core/v1` serves it.
pub fn to_core(event: &Value) -> Value {
    convert(event, "v1", false)
}

/// A `core/v1` Event as `events.k8s.io/v1` serves it.
pub fn to_events_v1(event: &Value) -> Value {
    convert(event, "events.k8s.io/v1", true)
}
