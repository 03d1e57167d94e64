//! The one rule that puts a memory fix into a pod spec, shared by the admission webhook
//! (`webhook::mutate`) and the healing executor's rollout, so the two never disagree about a
//! template.
//!
//! Pure: a pod spec (or a whole workload) as JSON in, the raised copy and what changed out.
//!
//! The rule, per container the fix names (every regular container when it names none, init
//! containers only when it names them):
//! - a memory limit is raised to the fix's value, never lowered; a container without a limit is
//!   unbounded already and left alone; an unreadable limit is left alone with a warning;
//! - where `requests.memory` equalled the limit both are raised, so a Guaranteed pod stays
//!   Guaranteed; otherwise the request stays as it is;
//! - a pod that sets pod-level memory resources is left alone with a warning;
//! - caps ([`MemoryCaps`]): never past the namespace's LimitRange maximum for container memory,
//!   and never past `request × maxLimitRequestRatio` where the request stays as it is, or the
//!   apiserver's LimitRanger would refuse the pod after the webhook;
//! - then never past what the cluster has left ([`MemoryCaps::room`], `core::headroom`): the
//!   namespace's ResourceQuotas for the pods that exist at once, and the largest node. Where
//!   part of the raise fits, the raise goes to the largest size that fits (whole MiB); where
//!   nothing fits, the values stay. Either way a warning says why and [`Raised::held`] carries
//!   the typed reason.
//!
//! # For the executor
//!
//! [`raise_workload`] takes a workload as read from the API (serialized to JSON) and one fix and
//! returns the whole object with the fix applied and the applied-fixes note
//! ([`APPLIED_ANNOTATION`]) merged into the object's own note. Diff it against the object read
//! (`json_patch::diff`) to patch. It refuses kinds whose template the apiserver does not let an
//! UPDATE change (a Pod, a Job), objects being deleted, and ReplicaSets a Deployment controls,
//! with a [`NotRaised`] saying which.
//!
//! ```ignore
//! let object = serde_json::to_value(&dynamic_object)?;
//! // The workload as read is the live one: its running pods are credited (core::headroom).
//! let caps = facts.memory_caps(namespace, WorkloadKind::Deployment, &object, Some(&object));
//! let raised = raise::raise_workload(WorkloadKind::Deployment, &object, &fix, &caps)?;
//! if !raised.raised.held.is_empty() { /* FixHeldByQuota / FixHeldByNode: record as held */ }
//! let patch = json_patch::diff(&object, &raised.object);
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::core::fix::{Fix, FixType};
use crate::core::headroom::{self, Held, Room};
use crate::core::quantity::ByteQuantity;
use crate::core::workload::{self, WorkloadKind, set_at, str_at};

/// Annotation written on every object a fix changed, listing what it applied.
pub const APPLIED_ANNOTATION: &str = "selfheal.io/applied-fixes";

/// The limits a memory raise obeys in the object's namespace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryCaps {
    /// The namespace's LimitRange maximum for container memory: no fix raises past it, or the
    /// apiserver would reject the object after the webhook.
    pub max: Option<ByteQuantity>,
    /// The namespace's LimitRange `maxLimitRequestRatio` for container memory: a limit is never
    /// raised past `request × ratio` where the request stays as it is, or the LimitRanger would
    /// refuse the pod.
    pub ratio: Option<f64>,
    /// What the cluster has left for the object's pods: its ResourceQuotas and the largest node
    /// (`core::headroom`). `None`: nothing known, nothing held.
    pub room: Option<Room>,
}

/// One field changed by a fix (or, on UPDATE, given its live value back).
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

/// What a raise of one pod spec did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Raised {
    /// Fields raised, one per container.
    pub applied: Vec<Applied>,
    /// For the client (an admission warning) or the audit trail: what could not be applied in
    /// full, and why.
    pub warnings: Vec<String>,
    /// Raises a quota or the node capacity held below the fix (or left out entirely), and what
    /// held them: one per fix.
    pub held: Vec<Held>,
}

/// Raises the memory of the containers of `pod_spec` that `fix` names, within `caps` (the rule
/// of the module documentation). `fix` must be a memory fix; any other is ignored.
pub fn raise_pod_spec(pod_spec: &mut Value, fix: &Fix, caps: &MemoryCaps) -> Raised {
    let mut raised = Raised::default();
    if fix.fix_type != FixType::Memory {
        return raised;
    }
    let pod_level = pod_spec.pointer("/resources/limits/memory").is_some()
        || pod_spec.pointer("/resources/requests/memory").is_some();
    if pod_level {
        raised.warnings.push(format!(
            "selfheal: memory fix {} not applied: the pod sets pod-level memory resources",
            fix.resource
        ));
        return raised;
    }
    let mut target = match &caps.max {
        Some(cap) if *cap < fix.value => {
            raised.warnings.push(format!(
                "selfheal: memory fix {} of {} capped at the namespace's LimitRange maximum {cap}",
                fix.resource, fix.value
            ));
            cap.clone()
        }
        _ => fix.value.clone(),
    };
    let plan = plan(pod_spec, fix, caps.ratio, &mut raised);
    if let Some(room) = caps.room.as_ref().filter(|room| !room.is_unbounded()) {
        match hold(pod_spec, &plan, &target, room) {
            None => {}
            Some((fitting, held)) => {
                let fitting = fitting.filter(|fitting| {
                    plan.iter()
                        .any(|planned| planned.raised_to(fitting).is_some())
                });
                raised.warnings.push(match &fitting {
                    Some(fitting) => format!(
                        "selfheal: memory fix {} of {} held at {fitting}: {held}",
                        fix.resource, fix.value
                    ),
                    None => format!(
                        "selfheal: memory fix {} of {} not applied: {held}",
                        fix.resource, fix.value
                    ),
                });
                raised.held.push(held);
                match fitting {
                    Some(fitting) => target = fitting,
                    None => return raised,
                }
            }
        }
    }
    for planned in &plan {
        if let Some(ratio_cap) = &planned.ratio_cap
            && *ratio_cap < target
            && planned.limit < target
        {
            raised.warnings.push(format!(
                "selfheal: container {}: memory fix {} of {} capped at {ratio_cap}, the namespace's LimitRange maxLimitRequestRatio {} times its request",
                planned.name,
                fix.resource,
                fix.value,
                caps.ratio.unwrap_or_default()
            ));
        }
        let Some(new_limit) = planned.raised_to(&target) else {
            continue;
        };
        let Some(resources) = pod_spec
            .get_mut(planned.list)
            .and_then(|list| list.get_mut(planned.index))
            .and_then(|container| container.get_mut("resources"))
        else {
            continue;
        };
        let new_value = Value::String(new_limit.as_str().to_string());
        set_at(resources, &["limits", "memory"], new_value.clone());
        if planned.request_equals_limit {
            set_at(resources, &["requests", "memory"], new_value);
        }
        raised.applied.push(Applied {
            fix_type: FixType::Memory,
            resource: fix.resource.clone(),
            place: format!("container {}", planned.name),
            from: planned.limit_text.clone(),
            to: new_limit.as_str().to_string(),
        });
    }
    raised
}

/// A container a fix names, as read before raising it.
struct Planned {
    list: &'static str,
    index: usize,
    name: String,
    limit_text: String,
    limit: ByteQuantity,
    request_equals_limit: bool,
    /// `request × maxLimitRequestRatio` where the request stays as it is.
    ratio_cap: Option<ByteQuantity>,
}

impl Planned {
    /// The limit a raise to `target` gives the container, if it rises.
    fn raised_to(&self, target: &ByteQuantity) -> Option<ByteQuantity> {
        let capped = match &self.ratio_cap {
            Some(ratio_cap) if ratio_cap < target => ratio_cap,
            _ => target,
        };
        (*capped > self.limit).then(|| capped.clone())
    }
}

/// The containers `fix` names that have a readable memory limit (an unreadable one is named in
/// a warning and left alone; one without a limit is unbounded already).
fn plan(pod_spec: &Value, fix: &Fix, ratio: Option<f64>, raised: &mut Raised) -> Vec<Planned> {
    let mut plan = Vec::new();
    for (list, index, name) in fixed_containers(pod_spec, fix) {
        let Some(resources) = pod_spec
            .get(list)
            .and_then(|containers| containers.get(index))
            .and_then(|container| container.get("resources"))
        else {
            continue;
        };
        let Some(limit_text) = str_at(resources, &["limits", "memory"]) else {
            continue;
        };
        let Ok(limit) = ByteQuantity::parse(limit_text) else {
            raised.warnings.push(format!(
                "selfheal: container {name}: memory limit {limit_text:?} is unreadable; left unchanged"
            ));
            continue;
        };
        let request = str_at(resources, &["requests", "memory"])
            .and_then(|text| ByteQuantity::parse(text).ok());
        let request_equals_limit = request.as_ref() == Some(&limit);
        let ratio_cap = if request_equals_limit {
            None
        } else {
            request
                .as_ref()
                .zip(ratio)
                .and_then(|(request, ratio)| ratio_limit(request, ratio))
        };
        plan.push(Planned {
            list,
            index,
            name,
            limit_text: limit_text.to_string(),
            limit,
            request_equals_limit,
            ratio_cap,
        });
    }
    plan
}

/// `None` when raising `plan` to `target` fits `room`; else the largest target that fits
/// (`None`: not even the pod as it is) and what held it.
fn hold(
    pod_spec: &Value,
    plan: &[Planned],
    target: &ByteQuantity,
    room: &Room,
) -> Option<(Option<ByteQuantity>, Held)> {
    let containers = headroom::containers_of(pod_spec);
    let overhead = headroom::overhead_of(pod_spec);
    let ceiling = target.bytes();
    let fits = |bytes: u128| {
        let candidate = if bytes == ceiling {
            target.clone()
        } else {
            ByteQuantity::from_bytes(bytes)
        };
        let mut sized = containers.clone();
        let mut largest_limit = 0;
        for planned in plan {
            let Some(new_limit) = planned.raised_to(&candidate) else {
                continue;
            };
            let new_bytes = new_limit.bytes();
            largest_limit = largest_limit.max(new_bytes);
            if let Some(container) = sized
                .iter_mut()
                .find(|c| c.list == planned.list && c.index == planned.index)
            {
                container.limit = Some(new_bytes);
                if planned.request_equals_limit {
                    container.request = Some(new_bytes);
                }
            }
        }
        room.check(&headroom::pod_memory(&sized, overhead), largest_limit)
    };
    match headroom::largest_fitting(ceiling, fits) {
        (_, None) => None,
        (fitting, Some(breach)) => {
            Some((fitting.map(ByteQuantity::from_bytes), room.explain(breach)))
        }
    }
}

/// `(list, index, name)` of every container of `pod_spec` a memory fix names: every regular
/// container when the fix names none, else the one it names; init containers only when the fix
/// names them (they rarely share the app's needs).
fn fixed_containers(pod_spec: &Value, fix: &Fix) -> Vec<(&'static str, usize, String)> {
    let mut found = Vec::new();
    for list in ["containers", "initContainers"] {
        if list == "initContainers" && fix.container.is_none() {
            continue;
        }
        let containers = pod_spec.get(list).and_then(Value::as_array);
        for (index, container) in containers.into_iter().flatten().enumerate() {
            let name = str_at(container, &["name"]).unwrap_or_default();
            if fix.container.as_deref().is_none_or(|wanted| wanted == name) {
                found.push((list, index, name.to_string()));
            }
        }
    }
    found
}

/// Calls `visit(container, name, list)` for every container of `pod_spec` a memory fix names
/// (see [`fixed_containers`]). `list` is `containers` or `initContainers`.
pub fn for_each_fixed_container(
    pod_spec: &mut Value,
    fix: &Fix,
    mut visit: impl FnMut(&mut Value, &str, &str),
) {
    for (list, index, name) in fixed_containers(pod_spec, fix) {
        if let Some(container) = pod_spec
            .get_mut(list)
            .and_then(|containers| containers.get_mut(index))
        {
            visit(container, &name, list);
        }
    }
}

/// The largest limit a LimitRange `maxLimitRequestRatio` allows for `request`, rounded down to a
/// whole MiB; `None` for a ratio that is not a finite number of at least 1.
pub fn ratio_limit(request: &ByteQuantity, ratio: f64) -> Option<ByteQuantity> {
    if !ratio.is_finite() || ratio < 1.0 {
        return None;
    }
    const MIB: u128 = 1 << 20;
    let allowed = (request.bytes() as f64 * ratio).floor();
    // `as` saturates: an allowance past u128 is held to 1 EiB by `from_bytes`.
    let allowed = allowed as u128;
    Some(ByteQuantity::from_bytes(allowed - allowed % MIB))
}

/// Why [`raise_workload`] left a workload alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotRaised {
    #[error("{0} has no pod template")]
    NoPodTemplate(&'static str),
    #[error("the pod template of a {0} cannot change after creation")]
    ImmutableTemplate(&'static str),
    #[error("the object is being deleted")]
    BeingDeleted,
    #[error("the ReplicaSet is controlled by a Deployment: raise the Deployment")]
    ControlledByDeployment,
    #[error("the object has no pod spec at {0}")]
    NoPodSpec(String),
}

/// A workload with a fix put into its template.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadRaise {
    /// The whole object with the raise and the applied-fixes note; equal to the object given
    /// when nothing was raised.
    pub object: Value,
    pub raised: Raised,
}

/// Puts one memory fix into the pod template of a workload read from the API (`workload` is
/// the object as JSON, `kind` its kind): the rule of [`raise_pod_spec`], and where it raised
/// something, the [`APPLIED_ANNOTATION`] note merged into the workload's own. For the executor:
/// see the module documentation.
pub fn raise_workload(
    kind: WorkloadKind,
    workload: &Value,
    fix: &Fix,
    caps: &MemoryCaps,
) -> Result<WorkloadRaise, NotRaised> {
    let pointer = kind
        .pod_spec_pointer()
        .ok_or(NotRaised::NoPodTemplate(kind.as_str()))?;
    if !kind.pod_spec_mutable_on_update() {
        return Err(NotRaised::ImmutableTemplate(kind.as_str()));
    }
    if workload.pointer("/metadata/deletionTimestamp").is_some() {
        return Err(NotRaised::BeingDeleted);
    }
    if kind == WorkloadKind::ReplicaSet
        && matches!(workload::controller(workload), Some(("Deployment", _)))
    {
        return Err(NotRaised::ControlledByDeployment);
    }
    let mut object = workload.clone();
    let pod_spec = object
        .pointer_mut(&pointer)
        .ok_or_else(|| NotRaised::NoPodSpec(pointer.clone()))?;
    let raised = raise_pod_spec(pod_spec, fix, caps);
    if !raised.applied.is_empty() {
        let own_note = str_at(workload, &["metadata", "annotations", APPLIED_ANNOTATION]);
        write_note(&mut object, own_note, &raised.applied, &[]);
    }
    Ok(WorkloadRaise { object, raised })
}

/// Writes the applied-fixes note: the live note's lines, then the kept values it does not
/// describe yet, then what was raised now; a later line replaces an earlier one about the same
/// field (same fix type and place), so the note says where each field stands. Creates
/// `metadata.annotations` if missing.
pub fn write_note(
    object: &mut Value,
    live_note: Option<&str>,
    applied: &[Applied],
    kept: &[Applied],
) {
    let mut lines: BTreeMap<String, String> = BTreeMap::new();
    for line in live_note.into_iter().flat_map(|note| note.split("; ")) {
        lines.insert(note_line_field(line), line.to_string());
    }
    for line in kept.iter().map(Applied::to_string) {
        lines.entry(note_line_field(&line)).or_insert(line);
    }
    for line in applied.iter().map(Applied::to_string) {
        lines.insert(note_line_field(&line), line);
    }
    let mut lines: Vec<String> = lines.into_values().filter(|l| !l.is_empty()).collect();
    lines.sort();
    lines.dedup();
    set_at(
        object,
        &["metadata", "annotations", APPLIED_ANNOTATION],
        Value::String(lines.join("; ")),
    );
}

/// The field a note line is about: `memory container app` of
/// `memory=4Gi container app (was 2Gi, fix web)`; a line in any other form is its own field.
fn note_line_field(line: &str) -> String {
    let field = line.split_once('=').and_then(|(fix_type, rest)| {
        let (_, place) = rest.split_once(' ')?;
        let (place, _) = place.split_once(" (was ")?;
        Some(format!("{fix_type} {place}"))
    });
    field.unwrap_or_else(|| line.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(text: &str) -> ByteQuantity {
        ByteQuantity::parse(text).unwrap()
    }

    fn fix(value: &str, container: Option<&str>) -> Fix {
        let yaml = format!(
            "fixes:\n  - {{namespace: ns, resource: web, type: memory, value: {value}{}}}\n",
            container.map_or(String::new(), |c| format!(", container: {c}"))
        );
        let document = crate::core::document::FixDocument::parse(&yaml).unwrap();
        document.fixes().next().unwrap().clone()
    }

    fn deployment(containers: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "ns", "resourceVersion": "7"},
            "spec": {"replicas": 1, "template": {"spec": {"containers": containers}}}})
    }

    fn memory(object: &Value, index: usize) -> (Value, Value) {
        let resources = &object["spec"]["template"]["spec"]["containers"][index]["resources"];
        (
            resources["limits"]["memory"].clone(),
            resources["requests"]["memory"].clone(),
        )
    }

    #[test]
    fn limits_rise_requests_follow_only_where_equal_and_nothing_is_lowered_or_invented() {
        let object = deployment(json!([
            {"name": "a", "resources": {"limits": {"memory": "1Gi"}, "requests": {"memory": "256Mi"}}},
            {"name": "b", "resources": {"limits": {"memory": "512Mi"}, "requests": {"memory": "512Mi"}}},
            {"name": "c", "resources": {"limits": {"memory": "8Gi"}}},
            {"name": "d"},
            {"name": "e", "resources": {"limits": {"memory": "1Gi"}}},
        ]));
        let raised = raise_workload(
            WorkloadKind::Deployment,
            &object,
            &fix("2Gi", None),
            &MemoryCaps::default(),
        )
        .unwrap();
        assert_eq!(memory(&raised.object, 0), (json!("2Gi"), json!("256Mi")));
        assert_eq!(memory(&raised.object, 1), (json!("2Gi"), json!("2Gi")));
        assert_eq!(memory(&raised.object, 2), (json!("8Gi"), Value::Null));
        assert!(
            raised.object["spec"]["template"]["spec"]["containers"][3]
                .get("resources")
                .is_none()
        );
        assert_eq!(memory(&raised.object, 4), (json!("2Gi"), Value::Null));
        assert_eq!(raised.raised.applied.len(), 3);
        let patch = json_patch::diff(&object, &raised.object);
        assert!(
            patch
                .0
                .iter()
                .all(|op| !op.path().to_string().contains("/metadata/resourceVersion")),
            "{patch:?}"
        );
    }

    #[test]
    fn the_limitrange_maximum_and_ratio_cap_the_raise() {
        let object = deployment(json!([
            {"name": "a", "resources": {"limits": {"memory": "300Mi"}, "requests": {"memory": "256Mi"}}},
            {"name": "b", "resources": {"limits": {"memory": "256Mi"}, "requests": {"memory": "256Mi"}}},
        ]));
        let caps = MemoryCaps {
            max: Some(q("3Gi")),
            ratio: Some(2.0),
            room: None,
        };
        let raised =
            raise_workload(WorkloadKind::Deployment, &object, &fix("4Gi", None), &caps).unwrap();
        assert_eq!(memory(&raised.object, 0), (json!("512Mi"), json!("256Mi")));
        assert_eq!(memory(&raised.object, 1), (json!("3Gi"), json!("3Gi")));
        let warnings = raised.raised.warnings.join("\n");
        assert!(warnings.contains("LimitRange maximum 3Gi"), "{warnings}");
        assert!(warnings.contains("maxLimitRequestRatio 2"), "{warnings}");
    }

    #[test]
    fn the_note_merges_into_the_workloads_own() {
        let mut object = deployment(json!([
            {"name": "a", "resources": {"limits": {"memory": "1Gi"}}},
        ]));
        object["metadata"]["annotations"] = json!({
            APPLIED_ANNOTATION: "memory=1Gi container a (was 512Mi, fix web); memory=2Gi container z (was 1Gi, fix web)"
        });
        let raised = raise_workload(
            WorkloadKind::Deployment,
            &object,
            &fix("2Gi", Some("a")),
            &MemoryCaps::default(),
        )
        .unwrap();
        assert_eq!(
            raised.object["metadata"]["annotations"][APPLIED_ANNOTATION],
            "memory=2Gi container a (was 1Gi, fix web); memory=2Gi container z (was 1Gi, fix web)"
        );
        // Raised once: a second raise changes nothing, not even the note.
        let again = raise_workload(
            WorkloadKind::Deployment,
            &raised.object,
            &fix("2Gi", Some("a")),
            &MemoryCaps::default(),
        )
        .unwrap();
        assert_eq!(again.object, raised.object);
        assert!(again.raised.applied.is_empty());
    }

    #[test]
    fn workloads_whose_template_cannot_change_are_refused() {
        let object = deployment(json!([{"name": "a", "resources": {"limits": {"memory": "1Gi"}}}]));
        let caps = MemoryCaps::default();
        let f = fix("2Gi", None);
        assert_eq!(
            raise_workload(WorkloadKind::Job, &object, &f, &caps),
            Err(NotRaised::ImmutableTemplate("Job"))
        );
        assert_eq!(
            raise_workload(WorkloadKind::PersistentVolumeClaim, &object, &f, &caps),
            Err(NotRaised::NoPodTemplate("PersistentVolumeClaim"))
        );
        let mut owned = object.clone();
        owned["metadata"]["ownerReferences"] =
            json!([{"kind": "Deployment", "name": "web", "controller": true}]);
        assert_eq!(
            raise_workload(WorkloadKind::ReplicaSet, &owned, &f, &caps),
            Err(NotRaised::ControlledByDeployment)
        );
        let mut deleting = object.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert_eq!(
            raise_workload(WorkloadKind::Deployment, &deleting, &f, &caps),
            Err(NotRaised::BeingDeleted)
        );
        let cronjob = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {
            "containers": [{"name": "a", "resources": {"limits": {"memory": "1Gi"}}}]}}}}}});
        let raised = raise_workload(WorkloadKind::CronJob, &cronjob, &f, &caps).unwrap();
        assert_eq!(
            raised.object["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["resources"]
                ["limits"]["memory"],
            "2Gi"
        );
    }

    fn room(object: &Value, quota_mib: u128, used_mib: u128) -> Room {
        let quota = headroom::QuotaFacts {
            namespace: "ns".into(),
            name: "mem".into(),
            hard: [
                ("limits.memory".to_string(), quota_mib << 20),
                ("requests.memory".to_string(), quota_mib << 20),
            ]
            .into(),
            used: [("limits.memory".to_string(), used_mib << 20)].into(),
            scopes: Vec::new(),
        };
        let demand = headroom::pods_at_once(WorkloadKind::Deployment, object, None);
        Room::new(&object["spec"]["template"]["spec"], demand, &[quota], None)
    }

    #[test]
    fn a_raise_is_held_to_what_the_quota_leaves_for_every_pod_at_once() {
        let object =
            deployment(json!([{"name": "a", "resources": {"limits": {"memory": "256Mi"}}}]));
        let caps = MemoryCaps {
            room: Some(room(&object, 768, 0)),
            ..MemoryCaps::default()
        };
        let raised =
            raise_workload(WorkloadKind::Deployment, &object, &fix("1Gi", None), &caps).unwrap();
        // 1 replica + 1 surge at once: 2 × 384Mi = 768Mi.
        assert_eq!(memory(&raised.object, 0).0, "384Mi");
        assert_eq!(raised.raised.held.len(), 1);
        assert_eq!(raised.raised.held[0].reason(), "FixHeldByQuota");
        let warning = raised.raised.warnings.join("\n");
        assert!(
            warning.contains("memory fix web of 1Gi held at 384Mi: ResourceQuota mem has 768Mi of limits.memory left (hard 768Mi, used 0) for 2 pods at once (1 replica + 1 surge)"),
            "{warning}"
        );
        // Nothing left: the value stays, and the warning says so.
        let full = MemoryCaps {
            room: Some(room(&object, 768, 768)),
            ..MemoryCaps::default()
        };
        let held =
            raise_workload(WorkloadKind::Deployment, &object, &fix("1Gi", None), &full).unwrap();
        assert_eq!(held.object, object);
        assert!(
            held.raised.warnings[0].contains("not applied: ResourceQuota mem"),
            "{held:?}"
        );
        // Room for the whole fix: the fix's own value, exactly.
        let wide = MemoryCaps {
            room: Some(room(&object, 4096, 0)),
            ..MemoryCaps::default()
        };
        let free =
            raise_workload(WorkloadKind::Deployment, &object, &fix("1Gi", None), &wide).unwrap();
        assert_eq!(memory(&free.object, 0).0, "1Gi");
        assert!(free.raised.held.is_empty() && free.raised.warnings.is_empty());
    }

    #[test]
    fn pod_level_memory_resources_are_left_alone() {
        let mut spec = json!({"resources": {"limits": {"memory": "1Gi"}},
            "containers": [{"name": "a", "resources": {"limits": {"memory": "1Gi"}}}]});
        let before = spec.clone();
        let raised = raise_pod_spec(&mut spec, &fix("2Gi", None), &MemoryCaps::default());
        assert_eq!(spec, before);
        assert!(raised.warnings[0].contains("pod-level"), "{raised:?}");
    }
}
