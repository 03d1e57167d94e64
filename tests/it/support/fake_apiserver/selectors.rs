//! Field and label selectors as the apiserver reads them.
//!
//! Field selectors: every resource supports `metadata.name` and `metadata.namespace`; a few
//! resources register more (the list below is the apiserver's, for the resources selfheal and its
//! tests read). Any other field label is refused with 400 "field label not supported: X", as the
//! real apiserver does. Operators `=`, `==` and `!=`, terms joined by `,`.
//!
//! Label selectors: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`; and the
//! `LabelSelector` object (`matchLabels` + `matchExpressions`) PodDisruptionBudgets carry.

use serde_json::Value;

use super::Collection;

/// Field labels the apiserver accepts for a collection, beyond `metadata.name` and
/// `metadata.namespace`.
fn extra_fields(collection: &Collection) -> &'static [&'static str] {
    match (collection.prefix.as_str(), collection.plural.as_str()) {
        ("api/v1", "pods") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        ("api/v1", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("apis/events.k8s.io/v1", "events") => &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        ],
        ("api/v1", "secrets") => &["type"],
        ("api/v1", "namespaces") => &["status.phase"],
        ("api/v1", "nodes") => &["spec.unschedulable"],
        ("api/v1", "replicationcontrollers") => &["status.replicas"],
        ("apis/apps/v1", "replicasets") => &["status.replicas"],
        ("apis/batch/v1", "jobs") => &["status.successful"],
        _ => &[],
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub equal: bool,
    pub value: String,
}

/// Parses a field selector for `collection`; the error is the apiserver's message.
pub fn parse_field_selector(
    collection: &Collection,
    text: &str,
) -> Result<Vec<FieldRequirement>, String> {
    let mut requirements = Vec::new();
    for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (field, equal, value) = if let Some((field, value)) = term.split_once("!=") {
            (field, false, value)
        } else if let Some((field, value)) = term.split_once("==") {
            (field, true, value)
        } else if let Some((field, value)) = term.split_once('=') {
            (field, true, value)
        } else {
            return Err(format!(
                "invalid selector: '{text}'; can't understand '{term}'"
            ));
        };
        let field = field.trim();
        let supported = matches!(field, "metadata.name" | "metadata.namespace")
            || extra_fields(collection).contains(&field);
        if !supported {
            return Err(format!("field label not supported: {field}"));
        }
        requirements.push(FieldRequirement {
            field: field.to_string(),
            equal,
            value: value.trim().to_string(),
        });
    }
    Ok(requirements)
}

/// The value a field label selects on, as the apiserver renders it (absent fields are "").
fn field_value(object: &Value, field: &str) -> String {
    let pointer = match field {
        "source" => "/source/component".to_string(),
        other => format!("/{}", other.replace('.', "/")),
    };
    match object.pointer(&pointer) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Bool(flag)) => flag.to_string(),
        Some(Value::Number(number)) => number.to_string(),
        _ => String::new(),
    }
}

pub fn fields_match(requirements: &[FieldRequirement], object: &Value) -> bool {
    requirements
        .iter()
        .all(|r| (field_value(object, &r.field) == r.value) == r.equal)
}

/// One parsed label selector term.
#[derive(Debug, Clone)]
enum LabelTerm {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    Absent(String),
}

fn split_terms(text: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    terms.push(current);
    terms
        .into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn value_set(text: &str) -> Vec<String> {
    text.trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(|v| v.trim().to_string())
        .collect()
}

fn parse_label_term(term: &str) -> LabelTerm {
    if let Some((key, values)) = term.split_once(" notin ") {
        return LabelTerm::NotIn(key.trim().into(), value_set(values));
    }
    if let Some((key, values)) = term.split_once(" in ") {
        return LabelTerm::In(key.trim().into(), value_set(values));
    }
    if let Some((key, value)) = term.split_once("!=") {
        return LabelTerm::NotIn(key.trim().into(), vec![value.trim().into()]);
    }
    if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return LabelTerm::In(key.trim().into(), vec![value.trim().into()]);
    }
    match term.strip_prefix('!') {
        Some(key) => LabelTerm::Absent(key.trim().into()),
        None => LabelTerm::Exists(term.into()),
    }
}

fn term_matches(term: &LabelTerm, labels: &Value) -> bool {
    let value = |key: &str| labels.get(key).and_then(Value::as_str).map(str::to_string);
    match term {
        LabelTerm::In(key, values) => value(key).is_some_and(|v| values.contains(&v)),
        LabelTerm::NotIn(key, values) => value(key).is_none_or(|v| !values.contains(&v)),
        LabelTerm::Exists(key) => value(key).is_some(),
        LabelTerm::Absent(key) => value(key).is_none(),
    }
}

/// Whether an object's labels match a `labelSelector` query string.
pub fn labels_match(selector: &str, object: &Value) -> bool {
    let labels = &object["metadata"]["labels"];
    split_terms(selector)
        .iter()
        .all(|term| term_matches(&parse_label_term(term), labels))
}

/// Whether labels match a `LabelSelector` object. An empty selector matches everything (policy/v1
/// PodDisruptionBudgets); a missing one matches nothing.
pub fn label_selector_matches(selector: &Value, labels: &Value) -> bool {
    if !selector.is_object() {
        return false;
    }
    let by_label = selector["matchLabels"]
        .as_object()
        .is_none_or(|wanted| wanted.iter().all(|(k, v)| &labels[k] == v));
    let by_expression = selector["matchExpressions"]
        .as_array()
        .is_none_or(|expressions| {
            expressions.iter().all(|e| {
                let key = e["key"].as_str().unwrap_or_default().to_string();
                let values: Vec<String> = e["values"]
                    .as_array()
                    .map(|v| {
                        v.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let term = match e["operator"].as_str() {
                    Some("In") => LabelTerm::In(key, values),
                    Some("NotIn") => LabelTerm::NotIn(key, values),
                    Some("Exists") => LabelTerm::Exists(key),
                    _ => LabelTerm::Absent(key),
                };
                term_matches(&term, labels)
            })
        });
    by_label && by_expression
}
