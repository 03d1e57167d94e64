//! Request paths and parameters, and the Status answers every handler shares.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::Collection;
use super::rules::Refusal;

/// What a request path names.
pub struct TargetPath {
    pub collection: Collection,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

pub fn parse_path(path: &str) -> Option<TargetPath> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (prefix, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] if !rest.is_empty() => ("api/v1".to_string(), rest),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => {
            (format!("apis/{group}/{version}"), rest)
        }
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", namespace, tail @ ..] if !tail.is_empty() => (namespace.to_string(), tail),
        _ => (String::new(), rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (plural, None, None),
        [plural, name] => (plural, Some(name.to_string()), None),
        [plural, name, sub] => (plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return None,
    };
    Some(TargetPath {
        collection: Collection {
            prefix,
            namespace,
            plural: plural.to_string(),
        },
        name,
        subresource,
    })
}

pub fn query_params(query: Option<&str>) -> BTreeMap<String, String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = std::str::from_utf8(bytes.get(i + 1..i + 3).unwrap_or_default())
            .ok()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        if let (b'%', Some(byte)) = (bytes[i], escaped) {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn bad_request(message: impl Into<String>) -> Refusal {
    Refusal::new(StatusCode::BAD_REQUEST, "BadRequest", message)
}

pub fn not_found_in(collection: &Collection, name: &str) -> Refusal {
    let (group, _) = collection.group_version();
    let mut refusal = Refusal::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{} \"{name}\" not found", collection.resource()),
    );
    refusal.details = json!({"name": name, "group": group, "kind": collection.plural});
    refusal
}

pub fn conflict(collection: &Collection, name: &str) -> Refusal {
    let mut refusal = Refusal::new(
        StatusCode::CONFLICT,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            collection.resource()
        ),
    );
    let (group, _) = collection.group_version();
    refusal.details = json!({"name": name, "group": group, "kind": collection.plural});
    refusal
}

pub fn parse_json(body: &[u8]) -> Result<Value, Refusal> {
    serde_json::from_slice::<Value>(body).map_err(|e| bad_request(format!("body is not JSON: {e}")))
}
