//! Memory fixes at admission: which fixes name the object's pod spec, raising them (the rule
//! is `core::raise`, shared with the executor), and on UPDATE of an immutable pod spec giving
//! each container its live value back.

use serde_json::Value;

use crate::core::fix::{Fix, FixType};
use crate::core::headroom::Held;
use crate::core::index::FixIndex;
use crate::core::quantity::ByteQuantity;
use crate::core::raise::{self, Applied, MemoryCaps, for_each_fixed_container};
use crate::core::workload::set_at;
use crate::webhook::target;

use super::{Mutation, Request, keeps_live};

/// The memory fixes that name the object (none for a kind without a pod spec).
pub(super) fn memory_fixes<'i>(request: &Request<'_>, index: &'i FixIndex) -> Vec<&'i Fix> {
    if request.kind.pod_spec_path().is_none() {
        return Vec::new();
    }
    target::fix_names(request.kind, request.object)
        .iter()
        .flat_map(|name| index.lookup(request.namespace, name))
        .filter(|fix| fix.fix_type == FixType::Memory)
        .collect()
}

/// Leaves every fix in `fixes` out, held by `held`, with a warning each.
pub(super) fn hold(fixes: &[&Fix], held: Held, mutation: &mut Mutation) {
    for fix in fixes {
        mutation.warnings.push(format!(
            "selfheal: memory fix {} of {} not applied: {held}",
            fix.resource, fix.value
        ));
        mutation.held.push(held.clone());
    }
}

/// Raises every fix in `fixes` in `pod_spec` within `caps`, recording what changed.
pub(super) fn raise(
    pod_spec: &mut Value,
    fixes: &[&Fix],
    caps: &MemoryCaps,
    mutation: &mut Mutation,
) {
    for fix in fixes {
        let raised = raise::raise_pod_spec(pod_spec, fix, caps);
        mutation.applied.extend(raised.applied);
        mutation.warnings.extend(raised.warnings);
        mutation.held.extend(raised.held);
    }
}

/// On UPDATE of an immutable pod spec (a Pod's, a Job's template): gives each container the fix
/// names its live memory limit back where [`keeps_live`] says so, and its live memory request
/// where the incoming request equalled the incoming limit (as CREATE raised both together).
/// Writes only exact live values; never raises past them.
pub(super) fn keep_live_memory(
    pod_spec: &mut Value,
    live_spec: &Value,
    fix: &Fix,
    mutation: &mut Mutation,
) {
    for_each_fixed_container(pod_spec, fix, |container, name, list| {
        let live = live_spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|live| target::str_at(live, &["name"]) == Some(name));
        if let Some(live) = live
            && let Some(kept) = keep_container_memory(container, live, name, fix)
        {
            mutation.kept.push(kept);
        }
    });
}

fn keep_container_memory(
    container: &mut Value,
    live: &Value,
    name: &str,
    fix: &Fix,
) -> Option<Applied> {
    let quantity = |value: &Value, path: &[&str]| {
        let text = target::str_at(value, path)?;
        Some((text.to_string(), ByteQuantity::parse(text).ok()?))
    };
    let limit = ["resources", "limits", "memory"];
    let request = ["resources", "requests", "memory"];
    let (incoming_text, incoming) = quantity(container, &limit)?;
    let (live_text, live_limit) = quantity(live, &limit)?;
    if !keeps_live(&incoming, &live_limit, &fix.value) {
        return None;
    }
    let incoming_request = quantity(container, &request);
    let live_request = quantity(live, &request);
    set_at(container, &limit, Value::String(live_text.clone()));
    if let (Some((_, incoming_request)), Some((live_request_text, live_request))) =
        (incoming_request, live_request)
        && incoming_request == incoming
        && keeps_live(&incoming_request, &live_request, &fix.value)
    {
        set_at(container, &request, Value::String(live_request_text));
    }
    Some(Applied {
        fix_type: FixType::Memory,
        resource: fix.resource.clone(),
        place: format!("container {name}"),
        from: incoming_text,
        to: live_text,
    })
}
