//! Events: their validation as the apiserver validates them (`ValidateEventCreate`,
//! `ValidateEventUpdate`, `legacyValidateEvent`, 1.24), and the conversion between the two
//! versions the apiserver serves from one storage (`core/v1` `involvedObject`/`message`/
//! `reportingComponent` ⇄ `events.k8s.io/v1` `regarding`/`note`/`reportingController`), so an
//! Event written with one API is read with the other, as `kubectl describe` reads them.
//!
//! Validation runs on the internal type, so its field paths are the core/v1 names whichever API
//! was used (`involvedObject.namespace`, `message`, `firstTimestamp`):
//! - every Event (both APIs, create and update): without `eventTime` (an old-style Event), the
//!   involved object's namespace must be the Event's (or, for a cluster-scoped object, the Event
//!   must be in `default` or no namespace); with `eventTime`, a cluster-scoped object's Event
//!   must be in `default` or `kube-system` (a namespaced object's Event may be in another
//!   namespace), `reportingController` (a qualified name), `reportingInstance`, `action` and
//!   `reason` are required, the last three at most 128 characters and the message at most 1024
//!   (`can have at most 1024 characters`);
//! - created through `events.k8s.io/v1` also: `eventTime` required, `type` Normal or Warning,
//!   `series` with `count >= 2` and `lastObservedTime`, and the deprecated fields
//!   (`firstTimestamp`, `lastTimestamp`, `count`, `source`) unset;
//! - updated through `events.k8s.io/v1` also: everything but `series` (and metadata) is
//!   immutable (`reason: Invalid value: "X": field is immutable`; structured values print as
//!   JSON here, as Go syntax in the apiserver).

use serde_json::{Map, Value};

use super::rules::FieldError;

/// The longest note the apiserver accepts.
pub const NOTE_LIMIT: usize = 1024;
const NAME_LIMIT: usize = 128;

fn text<'a>(object: &'a Value, field: &str) -> &'a str {
    object[field].as_str().unwrap_or_default()
}

fn is_set(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(text) => !text.is_empty(),
        Value::Number(n) => n.as_i64() != Some(0),
        Value::Object(fields) => fields.values().any(is_set),
        _ => true,
    }
}

/// `validation.IsQualifiedName`: an optional DNS-subdomain prefix and `/`, then a name of at
/// most 63 alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
fn qualified_name_errors(value: &str) -> Vec<String> {
    const NAME_RULE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    let parts: Vec<&str> = value.split('/').collect();
    let mut errors = Vec::new();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            let subdomain = !prefix.is_empty()
                && prefix.len() <= 253
                && prefix.split('.').all(|label| {
                    !label.is_empty()
                        && label.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                        && label.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                        && label
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                });
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_string());
            } else if !subdomain {
                errors.push("prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string());
            }
            *name
        }
        _ => {
            return vec![format!(
                "a qualified name {NAME_RULE} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errors.push("name part must be no more than 63 characters".to_string());
    }
    let alphanumeric = |c: char| c.is_ascii_alphanumeric();
    let matches = !name.is_empty()
        && name.starts_with(alphanumeric)
        && name.ends_with(alphanumeric)
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !matches {
        errors.push(format!("name part {NAME_RULE}"));
    }
    errors
}

/// `legacyValidateEvent`, on the core view of an Event.
fn legacy(event: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let namespace = event["metadata"]["namespace"].as_str().unwrap_or_default();
    let involved = event["involvedObject"]["namespace"]
        .as_str()
        .unwrap_or_default();
    let mismatch = || {
        FieldError::invalid(
            "involvedObject.namespace",
            involved,
            "does not match event.namespace",
        )
    };
    if !is_set(&event["eventTime"]) {
        if involved.is_empty() {
            if !namespace.is_empty() && namespace != "default" {
                errors.push(mismatch());
            }
        } else if namespace != involved {
            errors.push(mismatch());
        }
        return errors;
    }
    if involved.is_empty() && namespace != "default" && namespace != "kube-system" {
        errors.push(mismatch());
    }
    let controller = text(event, "reportingComponent");
    if controller.is_empty() {
        errors.push(FieldError::required("reportingController"));
    }
    for message in qualified_name_errors(controller) {
        errors.push(FieldError::invalid(
            "reportingController",
            controller,
            &message,
        ));
    }
    for field in ["reportingInstance", "action", "reason"] {
        let value = text(event, field);
        if value.is_empty() {
            errors.push(FieldError::required(field));
        }
        if value.len() > NAME_LIMIT {
            errors.push(FieldError::invalid(
                field,
                "",
                &format!("can have at most {NAME_LIMIT} characters"),
            ));
        }
    }
    if text(event, "message").len() > NOTE_LIMIT {
        errors.push(FieldError::invalid(
            "message",
            "",
            &format!("can have at most {NOTE_LIMIT} characters"),
        ));
    }
    errors
}

fn series_errors(event: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let series = &event["series"];
    if series.is_object() {
        if series["count"].as_i64().unwrap_or(0) < 2 {
            errors.push(FieldError::invalid(
                "series.count",
                "",
                "should be at least 2",
            ));
        }
        if !is_set(&series["lastObservedTime"]) {
            errors.push(FieldError::required("series.lastObservedTime"));
        }
    }
    errors
}

/// The checks of an Event created through `api` (`v1` or `events.k8s.io/v1`); `event` is as
/// that API sent it.
pub fn validate_create(event: &Value, core_api: bool) -> Vec<FieldError> {
    let core = if core_api {
        event.clone()
    } else {
        to_core(event)
    };
    let mut errors = legacy(&core);
    if core_api {
        return errors;
    }
    errors.extend(series_errors(&core));
    if !is_set(&core["eventTime"]) {
        errors.push(FieldError::required("eventTime"));
    }
    let kind = text(&core, "type");
    if kind != "Normal" && kind != "Warning" {
        errors.push(FieldError::invalid(
            "type",
            "",
            &format!("has invalid value: {kind}"),
        ));
    }
    for field in ["firstTimestamp", "lastTimestamp", "count"] {
        if is_set(&core[field]) {
            errors.push(FieldError::invalid(field, "", "needs to be unset"));
        }
    }
    if is_set(&core["source"]["component"]) || is_set(&core["source"]["host"]) {
        errors.push(FieldError::invalid("source", "", "needs to be unset"));
    }
    errors
}

/// The checks of an Event update through `api`; `old` and `new` as that API serves them.
pub fn validate_update(old: &Value, new: &Value, core_api: bool) -> Vec<FieldError> {
    let (old, new) = if core_api {
        (old.clone(), new.clone())
    } else {
        (to_core(old), to_core(new))
    };
    let mut errors = legacy(&new);
    if core_api {
        return errors;
    }
    if old["series"] != new["series"] {
        errors.extend(series_errors(&new));
    }
    for (field, path) in [
        ("involvedObject", "involvedObject"),
        ("reason", "reason"),
        ("message", "message"),
        ("source", "source"),
        ("firstTimestamp", "firstTimestamp"),
        ("lastTimestamp", "lastTimestamp"),
        ("count", "count"),
        ("type", "type"),
        ("eventTime", "eventTime"),
        ("action", "action"),
        ("related", "related"),
        ("reportingComponent", "reportingController"),
        ("reportingInstance", "reportingInstance"),
    ] {
        if old[field] != new[field] {
            errors.push(FieldError::immutable(path, &new[field]));
        }
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
