//! The admission decision: given an object and the known fixes, the JSON Patch that applies them.
//!
//! Pure: the object in, a patch out. The patch is the difference between the object and a copy
//! with the fixes applied, so missing parents (no `annotations`, no `limits`) are always added
//! correctly, and applying the patch then asking again yields an empty patch.

use std::fmt;

use serde_json::{Map, Value};

use crate::core::fix::{Fix, FixType};
use crate::core::index::FixIndex;
use crate::core::owners;
use crate::core::quantity::ByteQuantity;
use crate::webhook::target::{self, WorkloadKind};

/// Annotation written on every object the webhook changed, listing what it applied.
pub const APPLIED_ANNOTATION: &str = "selfheal.io/applied-fixes";
/// Label that opts an object out: `selfheal.io/ignore: "true"`.
pub const OPT_OUT_LABEL: &str = "selfheal.io/ignore";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    /// DELETE and CONNECT: never mutated.
    Other,
}

/// The parts of an AdmissionRequest the decision needs.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub kind: WorkloadKind,
    pub operation: Operation,
    pub namespace: &'a str,
    pub object: &'a Value,
    /// The namespace's LimitRange maximum for container memory: no fix raises past it, or the
    /// apiserver would reject the object after the webhook.
    pub memory_cap: Option<&'a ByteQuantity>,
}

/// Namespaces whose objects are never changed (selfheal's own and kube-system at least).
#[derive(Debug, Clone)]
pub struct Policy {
    pub protected_namespaces: Vec<String>,
}

/// Why an object was left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    ProtectedNamespace,
    OptedOut,
    BeingDeleted,
    /// The fix exists but the fields it changes are immutable for this operation.
    ImmutableOnUpdate,
    /// A ReplicaSet controlled by a Deployment: the Deployment is patched instead, because a
    /// ReplicaSet whose template differs from its Deployment's makes the Deployment controller
    /// create ReplicaSets forever.
    ControlledByDeployment,
    NoMatchingFix,
    UnsupportedOperation,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::ProtectedNamespace => "protected_namespace",
            Skip::OptedOut => "opted_out",
            Skip::BeingDeleted => "being_deleted",
            Skip::ImmutableOnUpdate => "immutable_on_update",
            Skip::ControlledByDeployment => "controlled_by_deployment",
            Skip::NoMatchingFix => "no_matching_fix",
            Skip::UnsupportedOperation => "unsupported_operation",
        }
    }
}

/// One change made to the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub fix_type: FixType,
    /// The fix's `resource`.
    pub resource: String,
    /// `container app` or `claim data`.
    pub place: String,
    pub from: String,
    pub to: String,
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={} {} (was {}, fix {})",
            self.fix_type, self.to, self.place, self.from, self.resource
        )
    }
}

/// The decision for one object.
#[derive(Debug, Clone, Default)]
pub struct Mutation {
    /// Empty when nothing changes.
    pub patch: json_patch::Patch,
    pub applied: Vec<Applied>,
    /// Shown to the client (`kubectl` prints them): fixes that could not be applied, and why.
    pub warnings: Vec<String>,
    pub skipped: Option<Skip>,
}

impl Mutation {
    fn skip(reason: Skip) -> Self {
        Self {
            skipped: Some(reason),
            ..Self::default()
        }
    }
}

/// Decides which fixes apply to `request.object` and returns the patch that applies them.
pub fn mutate(request: &Request<'_>, index: &FixIndex, policy: &Policy) -> Mutation {
    let object = request.object;
    if policy
        .protected_namespaces
        .iter()
        .any(|ns| ns == request.namespace)
    {
        return Mutation::skip(Skip::ProtectedNamespace);
    }
    if target::str_at(object, &["metadata", "labels", OPT_OUT_LABEL]) == Some("true") {
        return Mutation::skip(Skip::OptedOut);
    }
    let may_change_pod_spec = match request.operation {
        Operation::Create => true,
        Operation::Update => request.kind.pod_spec_mutable_on_update(),
        Operation::Other => return Mutation::skip(Skip::UnsupportedOperation),
    };
    let may_change_claims = request.operation == Operation::Create;
    if object.pointer("/metadata/deletionTimestamp").is_some() {
        return Mutation::skip(Skip::BeingDeleted);
    }
    if request.kind == WorkloadKind::ReplicaSet
        && matches!(target::controller(object), Some(("Deployment", _)))
    {
        return Mutation::skip(Skip::ControlledByDeployment);
    }
    if !index.has_namespace(request.namespace) {
        return Mutation::skip(Skip::NoMatchingFix);
    }

    let memory_fixes = memory_fixes(request, index);
    let claim_fixes = claim_fixes(request, index);
    if memory_fixes.is_empty() && claim_fixes.is_empty() {
        return Mutation::skip(Skip::NoMatchingFix);
    }
    let memory_allowed = may_change_pod_spec && !memory_fixes.is_empty();
    let claims_allowed = may_change_claims && !claim_fixes.is_empty();
    if !memory_allowed && !claims_allowed {
        return Mutation::skip(Skip::ImmutableOnUpdate);
    }

    let mut changed = object.clone();
    let mut mutation = Mutation::default();
    if memory_allowed
        && let Some(path) = request.kind.pod_spec_path()
        && let Some(pod_spec) = changed.pointer_mut(&pointer(path))
    {
        for fix in &memory_fixes {
            raise_memory(pod_spec, fix, request.memory_cap, &mut mutation);
        }
    }
    if claims_allowed {
        for fix in &claim_fixes {
            raise_claims(request.kind, &mut changed, fix, &mut mutation);
        }
    }
    if mutation.applied.is_empty() {
        mutation.skipped = Some(Skip::NoMatchingFix);
        return mutation;
    }
    annotate(&mut changed, &mutation.applied);
    mutation.patch = json_patch::diff(object, &changed);
    mutation
}

fn memory_fixes<'i>(request: &Request<'_>, index: &'i FixIndex) -> Vec<&'i Fix> {
    if request.kind.pod_spec_path().is_none() {
        return Vec::new();
    }
    target::fix_names(request.kind, request.object)
        .iter()
        .flat_map(|name| index.lookup(request.namespace, name))
        .filter(|fix| fix.fix_type == FixType::Memory)
        .collect()
}

/// Storage fixes for a claim (by its own name, or as a claim of a StatefulSet) or a StatefulSet.
fn claim_fixes<'i>(request: &Request<'_>, index: &'i FixIndex) -> Vec<&'i Fix> {
    let storage = |fix: &&Fix| fix.fix_type == FixType::Storage;
    let name = target::str_at(request.object, &["metadata", "name"]).unwrap_or_default();
    match request.kind {
        WorkloadKind::StatefulSet => index
            .lookup(request.namespace, name)
            .iter()
            .filter(storage)
            .collect(),
        WorkloadKind::PersistentVolumeClaim => {
            let mut found: Vec<&Fix> = index
                .lookup(request.namespace, name)
                .iter()
                .filter(storage)
                .filter(|fix| fix.claim.is_none())
                .collect();
            let owner = match target::controller(request.object) {
                Some(("StatefulSet", owner)) => Some(owner),
                _ => None,
            };
            for (template, statefulset) in owners::statefulset_claim_readings(name, owner) {
                found.extend(
                    index
                        .lookup(request.namespace, statefulset)
                        .iter()
                        .filter(storage)
                        .filter(|fix| fix.claim.as_deref().is_none_or(|c| c == template)),
                );
            }
            found
        }
        _ => Vec::new(),
    }
}

/// Raises memory limits in a pod spec to `fix.value`. Never lowers a value, never adds a limit
/// to a container that has none (it is unbounded already), and keeps `requests == limits` where
/// they were equal so a Guaranteed pod stays Guaranteed.
fn raise_memory(
    pod_spec: &mut Value,
    fix: &Fix,
    cap: Option<&ByteQuantity>,
    mutation: &mut Mutation,
) {
    let pod_level = pod_spec.pointer("/resources/limits/memory").is_some()
        || pod_spec.pointer("/resources/requests/memory").is_some();
    if pod_level {
        mutation.warnings.push(format!(
            "selfheal: memory fix {} not applied: the pod sets pod-level memory resources",
            fix.resource
        ));
        return;
    }
    let target = match cap {
        Some(cap) if *cap < fix.value => {
            mutation.warnings.push(format!(
                "selfheal: memory fix {} of {} capped at the namespace's LimitRange maximum {cap}",
                fix.resource, fix.value
            ));
            cap
        }
        _ => &fix.value,
    };
    for list in ["containers", "initContainers"] {
        // Init containers only when the fix names them: they rarely share the app's needs.
        if list == "initContainers" && fix.container.is_none() {
            continue;
        }
        let Some(containers) = pod_spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers {
            let name = target::str_at(container, &["name"])
                .unwrap_or_default()
                .to_string();
            if fix
                .container
                .as_deref()
                .is_some_and(|wanted| wanted != name)
            {
                continue;
            }
            if let Some(applied) = raise_container_memory(container, &name, fix, target, mutation) {
                mutation.applied.push(applied);
            }
        }
    }
}

fn raise_container_memory(
    container: &mut Value,
    name: &str,
    fix: &Fix,
    target: &ByteQuantity,
    mutation: &mut Mutation,
) -> Option<Applied> {
    let resources = container.get_mut("resources")?;
    let limit_text = target::str_at(resources, &["limits", "memory"])?.to_string();
    let Ok(limit) = ByteQuantity::parse(&limit_text) else {
        mutation.warnings.push(format!(
            "selfheal: container {name}: memory limit {limit_text:?} is unreadable; left unchanged"
        ));
        return None;
    };
    if limit >= *target {
        return None;
    }
    let request_equals_limit = target::str_at(resources, &["requests", "memory"])
        .and_then(|text| ByteQuantity::parse(text).ok())
        .is_some_and(|request| request == limit);
    let new_value = Value::String(target.as_str().to_string());
    set_at(resources, &["limits", "memory"], new_value.clone());
    if request_equals_limit {
        set_at(resources, &["requests", "memory"], new_value);
    }
    Some(Applied {
        fix_type: FixType::Memory,
        resource: fix.resource.clone(),
        place: format!("container {name}"),
        from: limit_text,
        to: target.as_str().to_string(),
    })
}

fn raise_claims(kind: WorkloadKind, object: &mut Value, fix: &Fix, mutation: &mut Mutation) {
    match kind {
        WorkloadKind::PersistentVolumeClaim => {
            let name = target::str_at(object, &["metadata", "name"])
                .unwrap_or_default()
                .to_string();
            if let Some(spec) = object.get_mut("spec")
                && let Some(applied) = raise_claim_spec(spec, &name, fix, mutation)
            {
                mutation.applied.push(applied);
            }
        }
        WorkloadKind::StatefulSet => {
            let Some(templates) = object
                .pointer_mut("/spec/volumeClaimTemplates")
                .and_then(Value::as_array_mut)
            else {
                return;
            };
            for claim in templates {
                let name = target::str_at(claim, &["metadata", "name"])
                    .unwrap_or_default()
                    .to_string();
                if fix.claim.as_deref().is_some_and(|wanted| wanted != name) {
                    continue;
                }
                if let Some(spec) = claim.get_mut("spec")
                    && let Some(applied) = raise_claim_spec(spec, &name, fix, mutation)
                {
                    mutation.applied.push(applied);
                }
            }
        }
        _ => {}
    }
}

/// Raises `resources.requests.storage` of a claim spec. A claim whose storage limit is below
/// the new request is left alone (the apiserver would reject requests > limits).
fn raise_claim_spec(
    spec: &mut Value,
    claim_name: &str,
    fix: &Fix,
    mutation: &mut Mutation,
) -> Option<Applied> {
    let request_text = target::str_at(spec, &["resources", "requests", "storage"])?.to_string();
    let Ok(request) = ByteQuantity::parse(&request_text) else {
        mutation.warnings.push(format!(
            "selfheal: claim {claim_name}: storage request {request_text:?} is unreadable; left unchanged"
        ));
        return None;
    };
    if request >= fix.value {
        return None;
    }
    if let Some(limit_text) = target::str_at(spec, &["resources", "limits", "storage"]) {
        let below = ByteQuantity::parse(limit_text).map_or(true, |limit| limit < fix.value);
        if below {
            mutation.warnings.push(format!(
                "selfheal: claim {claim_name}: storage fix {} exceeds its storage limit {limit_text}; left unchanged",
                fix.value
            ));
            return None;
        }
    }
    set_at(
        spec,
        &["resources", "requests", "storage"],
        Value::String(fix.value.as_str().to_string()),
    );
    Some(Applied {
        fix_type: FixType::Storage,
        resource: fix.resource.clone(),
        place: format!("claim {claim_name}"),
        from: request_text,
        to: fix.value.as_str().to_string(),
    })
}

/// Records what was applied in the object's annotation (creating `annotations` if missing).
fn annotate(object: &mut Value, applied: &[Applied]) {
    let mut lines: Vec<String> = applied.iter().map(Applied::to_string).collect();
    lines.sort();
    lines.dedup();
    set_at(
        object,
        &["metadata", "annotations", APPLIED_ANNOTATION],
        Value::String(lines.join("; ")),
    );
}

/// Sets `value` at `path`, creating missing (or null) parent objects.
fn set_at(root: &mut Value, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = root;
    for segment in parents {
        let Some(map) = as_object(node) else {
            return;
        };
        node = map
            .entry(segment.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if let Some(map) = as_object(node) {
        map.insert(last.to_string(), value);
    }
}

/// The node as an object, turning `null` into `{}`; `None` for any other non-object.
fn as_object(node: &mut Value) -> Option<&mut Map<String, Value>> {
    if node.is_null() {
        *node = Value::Object(Map::new());
    }
    node.as_object_mut()
}

fn pointer(path: &[&str]) -> String {
    path.iter().map(|segment| format!("/{segment}")).collect()
}
