//! The patch types the apiserver accepts, and the patch `kubectl apply` computes.
//!
//! - JSON patch (RFC 6902) and JSON merge patch (RFC 7386): exact, via the `json_patch` crate.
//! - Strategic merge patch: a merge patch in which the lists Kubernetes declares with a patch merge
//!   key are merged element by element (containers, env, volumes, ... by `name`; volumeMounts by
//!   `mountPath`; ports by `containerPort`), with the `$patch: delete|replace`,
//!   `$deleteFromPrimitiveList/` and `$setElementOrder/` directives kubectl sends.
//!   Approximated: the merge key is chosen by the list's field name, not by the full schema path
//!   (every list selfheal's kinds carry under these names has that key); `$setElementOrder` and
//!   `$retainKeys` are accepted and ignored (order and retained keys are not enforced). Lists without
//!   a merge key (`volumeClaimTemplates`, `tolerations`, `args`, ...) are replaced whole, as the real
//!   schema declares them atomic.
//! - Server-side apply: the applied configuration is merged into the live object with the same
//!   name-keyed list merging; field ownership, conflicts and removals are `apply`'s.

use serde_json::{Map, Value};

/// How a PATCH body is to be read, from its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        match media {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// The patch merge key of a list field, if Kubernetes declares one.
pub fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => Some("name"),
        "volumeMounts" | "volumeDevices" => Some("mountPath"),
        "ports" => Some("containerPort"),
        "hostAliases" => Some("ip"),
        "topologySpreadConstraints" => Some("topologyKey"),
        "ownerReferences" => Some("uid"),
        _ => None,
    }
}

fn is_directive(key: &str) -> bool {
    key.starts_with('$')
}

/// Applies a strategic merge patch to `target`.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replacement = Value::Null;
        let mut without = patch.clone();
        without.remove("$patch");
        strategic_merge(&mut replacement, &Value::Object(without));
        *target = replacement;
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(fields) = target else {
        return;
    };
    for (key, value) in patch {
        if let Some(list) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Value::Array(removed)) =
                (fields.get_mut(list), value)
            {
                items.retain(|item| !removed.contains(item));
            }
            continue;
        }
        if is_directive(key) {
            continue;
        }
        match (value, merge_key(key)) {
            (Value::Null, _) => {
                fields.remove(key);
            }
            (Value::Array(items), Some(merge_key)) => {
                let list = fields.entry(key.clone()).or_insert(Value::Null);
                merge_keyed_list(list, items, merge_key);
            }
            (Value::Object(_), _) => {
                strategic_merge(fields.entry(key.clone()).or_insert(Value::Null), value);
            }
            _ => {
                let mut plain = Value::Null;
                strategic_merge(&mut plain, value);
                fields.insert(key.clone(), plain);
            }
        }
    }
}

fn merge_keyed_list(list: &mut Value, items: &[Value], merge_key: &str) {
    if !list.is_array() {
        *list = Value::Array(Vec::new());
    }
    let Value::Array(elements) = list else {
        return;
    };
    for item in items {
        let key = &item[merge_key];
        let position = elements.iter().position(|e| &e[merge_key] == key);
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(position) = position {
                elements.remove(position);
            }
            continue;
        }
        match position {
            Some(position) => strategic_merge(&mut elements[position], item),
            None => {
                let mut element = Value::Null;
                strategic_merge(&mut element, item);
                elements.push(element);
            }
        }
    }
}

/// The merge of a server-side apply of `applied` onto `live` (ownership: see `apply`).
pub fn server_side_apply(live: &mut Value, applied: &Value) {
    strategic_merge(live, applied);
}

/// The patch `kubectl apply` sends: a three-way strategic merge patch from the last applied
/// configuration (`original`), the manifest being applied (`modified`) and the live object
/// (`current`). Fields whose live value differs from the manifest are sent with the manifest's
/// value; fields in `original` that `modified` dropped are deleted (`null` / `$patch: delete`).
pub fn three_way_patch(original: &Value, modified: &Value, current: &Value) -> Value {
    diff_maps(original, modified, current).unwrap_or_else(|| Value::Object(Map::new()))
}

fn diff_maps(original: &Value, modified: &Value, current: &Value) -> Option<Value> {
    let Value::Object(wanted) = modified else {
        return (modified != current).then(|| modified.clone());
    };
    let mut patch = Map::new();
    if let Value::Object(before) = original {
        for key in before.keys().filter(|k| !wanted.contains_key(*k)) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    for (key, value) in wanted {
        let live = &current[key];
        let was = &original[key];
        let change = match (value, merge_key(key)) {
            (Value::Array(items), Some(merge_key)) => {
                diff_keyed_list(key, was, items, live, merge_key, &mut patch)
            }
            (Value::Object(_), _) if live.is_object() => diff_maps(was, value, live),
            _ => (value != live).then(|| value.clone()),
        };
        if let Some(change) = change {
            patch.insert(key.clone(), change);
        }
    }
    (!patch.is_empty()).then_some(Value::Object(patch))
}

fn diff_keyed_list(
    field: &str,
    original: &Value,
    items: &[Value],
    current: &Value,
    merge_key: &str,
    patch: &mut Map<String, Value>,
) -> Option<Value> {
    let find = |list: &Value, key: &Value| {
        list.as_array()
            .and_then(|l| l.iter().find(|e| &e[merge_key] == key).cloned())
    };
    let mut changes = Vec::new();
    for item in items {
        let key = &item[merge_key];
        let was = find(original, key).unwrap_or(Value::Null);
        match find(current, key) {
            None => changes.push(item.clone()),
            Some(live) => {
                if let Some(Value::Object(mut change)) = diff_maps(&was, item, &live) {
                    change.insert(merge_key.to_string(), key.clone());
                    changes.push(Value::Object(change));
                }
            }
        }
    }
    if let Value::Array(before) = original {
        for gone in before
            .iter()
            .filter(|e| !items.iter().any(|i| i[merge_key] == e[merge_key]))
        {
            let mut deletion = Map::new();
            deletion.insert(merge_key.to_string(), gone[merge_key].clone());
            deletion.insert("$patch".into(), Value::String("delete".into()));
            changes.push(Value::Object(deletion));
        }
    }
    if changes.is_empty() {
        return None;
    }
    let order: Vec<Value> = items
        .iter()
        .map(|i| {
            let mut key = Map::new();
            key.insert(merge_key.to_string(), i[merge_key].clone());
            Value::Object(key)
        })
        .collect();
    patch.insert(format!("$setElementOrder/{field}"), Value::Array(order));
    Some(Value::Array(changes))
}
