//! Field ownership (`metadata.managedFields`) and server-side apply, as the apiserver's field
//! manager does them (structured-merge-diff), for the kinds selfheal touches:
//!
//! - Every write records who set which fields: a create or update (PUT, JSON/merge/strategic
//!   patch) is an `Update` by its `fieldManager` (else the User-Agent's prefix), owning every
//!   field it set or changed and taking them from other managers; an apply is an `Apply` by its
//!   `fieldManager`, owning exactly the fields of its configuration.
//! - An apply that would change a field another manager owns, without `force=true`, is refused:
//!   409 Conflict, `Apply failed with 1 conflict: conflict with "kubectl-client-side-apply"
//!   using apps/v1: .spec.replicas` (several: `Apply failed with 2 conflicts: conflicts with
//!   "a":\n- .x\n- .y`), one `FieldManagerConflict` cause per field. With `force=true` the
//!   applier takes the fields over.
//! - A field the applier owned and its new configuration no longer names is removed from the
//!   object, unless another manager owns it too (then only the applier's ownership ends).
//!
//! Lists are associative where Kubernetes declares a merge key (containers by `name`, ...; see
//! `patches::merge_key`) and atomic otherwise; maps are granular. `apiVersion`, `kind`, `status`
//! and the server's metadata (`name`, `uid`, `resourceVersion`, ...) are not owned. Approximated:
//! the schema's finer points (atomic structs such as `selector`, set-typed lists, per-key
//! ports) are not modelled; the changes of mutating webhooks are owned by no one, as in the
//! apiserver.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::patches::{merge_key, strategic_merge};
use super::rules::Refusal;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Field(String),
    /// An associative list item, by its key fields (canonical JSON).
    Key(String),
    /// A set item, by value (canonical JSON).
    Value(String),
    Index(usize),
}

type Path = Vec<Step>;
type FieldSet = BTreeSet<Path>;

/// Server-managed metadata no one owns.
const UNOWNED_METADATA: [&str; 10] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

fn owned_at_root(key: &str) -> bool {
    !matches!(key, "apiVersion" | "kind" | "status")
}

fn item_key(item: &Value, key: &str) -> String {
    let mut fields = Map::new();
    fields.insert(key.to_string(), item[key].clone());
    Value::Object(fields).to_string()
}

/// Every owned path in `value`: leaves (scalars, atomic lists, empty maps) and associative
/// list items.
fn field_set(object: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    let Some(fields) = object.as_object() else {
        return set;
    };
    for (key, value) in fields {
        if !owned_at_root(key) {
            continue;
        }
        if key == "metadata" {
            for (meta, value) in value.as_object().into_iter().flatten() {
                if !UNOWNED_METADATA.contains(&meta.as_str()) {
                    let mut path = vec![Step::Field("metadata".into()), Step::Field(meta.clone())];
                    collect(value, meta, &mut path, &mut set);
                }
            }
            continue;
        }
        let mut path = vec![Step::Field(key.clone())];
        collect(value, key, &mut path, &mut set);
    }
    set
}

fn collect(value: &Value, name: &str, path: &mut Path, set: &mut FieldSet) {
    match value {
        Value::Object(fields) if !fields.is_empty() => {
            for (key, child) in fields {
                path.push(Step::Field(key.clone()));
                collect(child, key, path, set);
                path.pop();
            }
        }
        Value::Array(items) => match merge_key(name) {
            Some(key) if items.iter().all(|i| i.get(key).is_some()) => {
                for item in items {
                    path.push(Step::Key(item_key(item, key)));
                    set.insert(path.clone());
                    collect(item, "", path, set);
                    path.pop();
                }
            }
            _ => {
                set.insert(path.clone());
            }
        },
        _ => {
            set.insert(path.clone());
        }
    }
}

fn value_at<'a>(object: &'a Value, path: &[Step]) -> Option<&'a Value> {
    let mut current = object;
    for step in path {
        current = match step {
            Step::Field(name) => current.get(name)?,
            Step::Key(key) => {
                let key: Value = serde_json::from_str(key).ok()?;
                let (field, wanted) = key.as_object()?.iter().next()?;
                current
                    .as_array()?
                    .iter()
                    .find(|item| &item[field] == wanted)?
            }
            Step::Value(value) => {
                let wanted: Value = serde_json::from_str(value).ok()?;
                current.as_array()?.iter().find(|item| **item == wanted)?
            }
            Step::Index(index) => current.as_array()?.get(*index)?,
        };
    }
    Some(current)
}

/// Removes the field or list item at `path`.
fn remove_at(object: &mut Value, path: &[Step]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = object;
    for step in parents {
        let next = match step {
            Step::Field(name) => current.get_mut(name),
            Step::Key(key) => {
                let Ok(key) = serde_json::from_str::<Value>(key) else {
                    return;
                };
                let Some((field, wanted)) = key.as_object().and_then(|k| k.iter().next()) else {
                    return;
                };
                current
                    .as_array_mut()
                    .and_then(|items| items.iter_mut().find(|item| &item[field] == wanted))
            }
            Step::Index(index) => current.as_array_mut().and_then(|i| i.get_mut(*index)),
            Step::Value(_) => None,
        };
        let Some(next) = next else {
            return;
        };
        current = next;
    }
    match last {
        Step::Field(name) => {
            if let Some(fields) = current.as_object_mut() {
                fields.remove(name);
            }
        }
        Step::Key(key) => {
            if let (Ok(key), Some(items)) =
                (serde_json::from_str::<Value>(key), current.as_array_mut())
                && let Some((field, wanted)) = key.as_object().and_then(|k| k.iter().next())
            {
                items.retain(|item| &item[field] != wanted);
            }
        }
        Step::Value(value) => {
            if let (Ok(wanted), Some(items)) =
                (serde_json::from_str::<Value>(value), current.as_array_mut())
            {
                items.retain(|item| *item != wanted);
            }
        }
        Step::Index(index) => {
            if let Some(items) = current.as_array_mut()
                && *index < items.len()
            {
                items.remove(*index);
            }
        }
    }
}

/// Map-typed fields (Go maps, `omitempty`): serialized away when empty.
const MAP_FIELDS: [&str; 8] = [
    "labels",
    "annotations",
    "limits",
    "requests",
    "nodeSelector",
    "data",
    "binaryData",
    "matchLabels",
];

/// After a removal at `path`: the lists and maps it leaves empty vanish, as the typed object's
/// `omitempty` serialization drops them (structs stay, as `{}`).
fn prune_empty(object: &mut Value, path: &[Step]) {
    for depth in (1..path.len()).rev() {
        let parent = &path[..depth];
        let Some(Step::Field(name)) = parent.last() else {
            continue;
        };
        let empty = match value_at(object, parent) {
            Some(Value::Array(items)) => items.is_empty(),
            Some(Value::Object(fields)) => fields.is_empty() && MAP_FIELDS.contains(&name.as_str()),
            _ => false,
        };
        if !empty {
            return;
        }
        remove_at(object, parent);
    }
}

/// `fieldpath.Path.String()`: `.spec.containers[name="app"].image`.
fn render(path: &[Step]) -> String {
    let mut text = String::new();
    for step in path {
        match step {
            Step::Field(name) => {
                text.push('.');
                text.push_str(name);
            }
            Step::Key(key) => {
                let key: Value = serde_json::from_str(key).unwrap_or(Value::Null);
                let parts: Vec<String> = key
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                text.push_str(&format!("[{}]", parts.join(",")));
            }
            Step::Value(value) => text.push_str(&format!("[={value}]")),
            Step::Index(index) => text.push_str(&format!("[{index}]")),
        }
    }
    text
}

/// The `fieldsV1` encoding of a set.
fn encode(set: &FieldSet) -> Value {
    let mut root = json!({});
    for path in set {
        let mut node = &mut root;
        for step in path {
            let key = match step {
                Step::Field(name) => format!("f:{name}"),
                Step::Key(key) => format!("k:{key}"),
                Step::Value(value) => format!("v:{value}"),
                Step::Index(index) => format!("i:{index}"),
            };
            if !node[&key].is_object() {
                node[&key] = json!({});
            }
            node = &mut node[&key];
        }
        if matches!(path.last(), Some(Step::Key(_))) {
            node["."] = json!({});
        }
    }
    root
}

fn decode(node: &Value, path: &mut Path, set: &mut FieldSet) {
    let Some(fields) = node.as_object() else {
        return;
    };
    if fields.is_empty() && !path.is_empty() {
        set.insert(path.clone());
        return;
    }
    for (key, child) in fields {
        if key == "." {
            set.insert(path.clone());
            continue;
        }
        let step = if let Some(name) = key.strip_prefix("f:") {
            Step::Field(name.into())
        } else if let Some(item) = key.strip_prefix("k:") {
            Step::Key(
                serde_json::from_str::<Value>(item)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|_| item.into()),
            )
        } else if let Some(value) = key.strip_prefix("v:") {
            Step::Value(value.into())
        } else if let Some(index) = key.strip_prefix("i:") {
            Step::Index(index.parse().unwrap_or(0))
        } else {
            continue;
        };
        path.push(step);
        decode(child, path, set);
        path.pop();
    }
}

/// One manager's entry: who, how, and what it owns.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Value,
    set: FieldSet,
}

impl Entry {
    /// The manager as the apiserver identifies it (an applier is one manager whatever its
    /// apiVersion; an updater is one per apiVersion).
    fn id(&self) -> (String, String, String) {
        let version = if self.operation == "Apply" {
            String::new()
        } else {
            self.api_version.clone()
        };
        (self.manager.clone(), self.operation.clone(), version)
    }

    /// As `printManager` names it in a conflict.
    fn printed(&self) -> String {
        if self.operation == "Update" {
            format!("\"{}\" using {}", self.manager, self.api_version)
        } else {
            format!("\"{}\"", self.manager)
        }
    }

    fn to_json(&self) -> Value {
        json!({"manager": self.manager, "operation": self.operation, "apiVersion": self.api_version,
            "time": self.time, "fieldsType": "FieldsV1", "fieldsV1": encode(&self.set)})
    }
}

fn entries(object: &Value) -> Vec<Entry> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["subresource"].as_str().is_none_or(str::is_empty))
        .map(|e| {
            let mut set = FieldSet::new();
            decode(&e["fieldsV1"], &mut Vec::new(), &mut set);
            Entry {
                manager: e["manager"].as_str().unwrap_or_default().into(),
                operation: e["operation"].as_str().unwrap_or_default().into(),
                api_version: e["apiVersion"].as_str().unwrap_or_default().into(),
                time: e["time"].clone(),
                set,
            }
        })
        .collect()
}

fn write_entries(object: &mut Value, entries: &[Entry]) {
    let kept: Vec<Value> = entries
        .iter()
        .filter(|e| !e.set.is_empty())
        .map(Entry::to_json)
        .collect();
    if kept.is_empty() {
        if let Some(metadata) = object["metadata"].as_object_mut() {
            metadata.remove("managedFields");
        }
    } else {
        object["metadata"]["managedFields"] = Value::Array(kept);
    }
}

/// Who writes, with what, and when.
pub struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub time: &'a str,
}

/// Whether the value at `path` differs between two objects (an item that appears or goes, a
/// leaf that changes).
fn differs(before: &Value, after: &Value, path: &[Step]) -> bool {
    match (value_at(before, path), value_at(after, path)) {
        (None, None) => false,
        (Some(_), None) | (None, Some(_)) => true,
        (Some(_), Some(_)) if matches!(path.last(), Some(Step::Key(_))) => false,
        (Some(a), Some(b)) => a != b,
    }
}

/// Records an `Update` of `live` into `new` (create: `live` is `None`): the writer owns every
/// field it set or changed, which other managers lose; fields that went are owned by no one.
pub fn record_update(live: Option<&Value>, new: &mut Value, writer: &Writer) {
    let mut managers = live.map(entries).unwrap_or_default();
    let new_set = field_set(new);
    let changed: FieldSet = match live {
        None => new_set.clone(),
        Some(live) => new_set
            .iter()
            .filter(|p| differs(live, new, p))
            .cloned()
            .collect(),
    };
    for entry in &mut managers {
        entry
            .set
            .retain(|p| !changed.contains(p) && new_set.contains(p));
    }
    let me = Entry {
        manager: writer.manager.into(),
        operation: "Update".into(),
        api_version: writer.api_version.into(),
        time: json!(writer.time),
        set: FieldSet::new(),
    };
    let index = match managers.iter().position(|e| e.id() == me.id()) {
        Some(index) => index,
        None => {
            managers.push(me);
            managers.len() - 1
        }
    };
    if !changed.is_empty() {
        managers[index].time = json!(writer.time);
    }
    managers[index].set.extend(changed);
    write_entries(new, &managers);
}

/// A server-side apply of `applied` onto `live` (`None`: the object is created from the
/// configuration). Returns the object to store, or the apiserver's 409 on conflicts.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    writer: &Writer,
    force: bool,
) -> Result<Value, Refusal> {
    let new_set = field_set(applied);
    let Some(live) = live else {
        let mut created = applied.clone();
        let entry = Entry {
            manager: writer.manager.into(),
            operation: "Apply".into(),
            api_version: writer.api_version.into(),
            time: json!(writer.time),
            set: new_set,
        };
        write_entries(&mut created, &[entry]);
        return Ok(created);
    };
    let mut managers = entries(live);
    let me_id = (
        writer.manager.to_string(),
        "Apply".to_string(),
        String::new(),
    );
    let previous: FieldSet = managers
        .iter()
        .find(|e| e.id() == me_id)
        .map(|e| e.set.clone())
        .unwrap_or_default();
    let others_own = |managers: &[Entry], path: &Path| {
        managers.iter().any(|e| {
            e.id() != me_id
                && e.set
                    .iter()
                    .any(|owned| owned.len() >= path.len() && owned[..path.len()] == path[..])
        })
    };
    // Fields the applier no longer names: removed unless someone else owns them.
    let mut merged = live.clone();
    for path in previous.difference(&new_set) {
        if !others_own(&managers, path) {
            remove_at(&mut merged, path);
            prune_empty(&mut merged, path);
        }
    }
    strategic_merge(&mut merged, applied);
    // Conflicts: fields this apply changes that another manager owns.
    let changed: FieldSet = new_set
        .iter()
        .filter(|p| differs(live, &merged, p))
        .cloned()
        .collect();
    // By manager, in the order of the apiserver's (JSON) manager identifiers.
    let mut conflicts: Conflicts = BTreeMap::new();
    for entry in managers.iter().filter(|e| e.id() != me_id) {
        for path in entry.set.intersection(&changed) {
            conflicts
                .entry(entry.id())
                .or_insert_with(|| (entry.printed(), Vec::new()))
                .1
                .push(render(path));
        }
    }
    if !force && !conflicts.is_empty() {
        return Err(conflict_error(conflicts));
    }
    for entry in managers.iter_mut().filter(|e| e.id() != me_id) {
        entry.set.retain(|p| !changed.contains(p));
    }
    match managers.iter_mut().find(|e| e.id() == me_id) {
        Some(entry) => {
            entry.set = new_set;
            entry.api_version = writer.api_version.into();
            entry.time = json!(writer.time);
        }
        None => managers.push(Entry {
            manager: writer.manager.into(),
            operation: "Apply".into(),
            api_version: writer.api_version.into(),
            time: json!(writer.time),
            set: new_set,
        }),
    }
    write_entries(&mut merged, &managers);
    Ok(merged)
}

type Conflicts = BTreeMap<(String, String, String), (String, Vec<String>)>;

fn conflict_error(conflicts: Conflicts) -> Refusal {
    let total: usize = conflicts.values().map(|(_, paths)| paths.len()).sum();
    let causes: Vec<Value> = conflicts
        .values()
        .flat_map(|(manager, paths)| {
            paths.iter().map(move |path| {
                json!({"reason": "FieldManagerConflict", "message": format!("conflict with {manager}"),
                    "field": path})
            })
        })
        .collect();
    let message = if total == 1 {
        let (manager, paths) = conflicts.values().next().cloned().unwrap_or_default();
        format!(
            "Apply failed with 1 conflict: conflict with {manager}: {}",
            paths.first().cloned().unwrap_or_default()
        )
    } else {
        let mut lines = Vec::new();
        for (manager, paths) in conflicts.values() {
            lines.push(format!("conflicts with {manager}:"));
            lines.extend(paths.iter().map(|p| format!("- {p}")));
        }
        format!("Apply failed with {total} conflicts: {}", lines.join("\n"))
    };
    let mut refusal = Refusal::new(StatusCode::CONFLICT, "Conflict", message);
    refusal.details = json!({"causes": causes});
    refusal
}
