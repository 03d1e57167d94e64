//! Storage fixes at admission: which fixes name a claim or a StatefulSet's claim templates,
//! raising `resources.requests.storage` on CREATE, and on UPDATE giving it its live value back
//! (claims may not shrink, claim templates are immutable).

use serde_json::Value;

use crate::core::fix::{Fix, FixType};
use crate::core::headroom::{self, Held, OtherClaims, QuotaFacts};
use crate::core::index::FixIndex;
use crate::core::owners;
use crate::core::quantity::ByteQuantity;
use crate::core::raise::Applied;
use crate::core::workload::set_at;
use crate::webhook::target::{self, WorkloadKind};

use super::{Mutation, Request, keeps_live};

/// Storage fixes for a claim (by its own name, or as a claim of a StatefulSet) or a StatefulSet.
pub(super) fn claim_fixes<'i>(request: &Request<'_>, index: &'i FixIndex) -> Vec<&'i Fix> {
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
            // A reading the owner reference confirms takes the StatefulSet's fixes for any
            // claim template; an unconfirmed one (`data-keycloak-postgresql-0` could be a claim
            // of `postgresql`) only a fix that names this very template.
            let confirmed = owner.is_some();
            for (template, statefulset) in owners::statefulset_claim_readings(name, owner) {
                found.extend(
                    index
                        .lookup(request.namespace, statefulset)
                        .iter()
                        .filter(storage)
                        .filter(|fix| {
                            fix.claim
                                .as_deref()
                                .map_or(confirmed, |claim| claim == template)
                        }),
                );
            }
            found
        }
        _ => Vec::new(),
    }
}

/// On UPDATE of a claim or a StatefulSet: gives `resources.requests.storage` (of the claim, or
/// of each claim template the fix names) its live value back where [`keeps_live`] says so.
pub(super) fn keep_live_claims(
    kind: WorkloadKind,
    object: &mut Value,
    live: &Value,
    fix: &Fix,
    mutation: &mut Mutation,
) {
    for_each_fixed_claim(kind, object, fix, |spec, name| {
        let live_spec = match kind {
            WorkloadKind::StatefulSet => live
                .pointer("/spec/volumeClaimTemplates")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|live| target::str_at(live, &["metadata", "name"]) == Some(name))
                .and_then(|live| live.get("spec")),
            _ => live.get("spec"),
        };
        if let Some(live_spec) = live_spec
            && let Some(kept) = keep_claim_spec(spec, live_spec, name, fix)
        {
            mutation.kept.push(kept);
        }
    });
}

/// Calls `visit(spec, claim_name)` for every claim spec of `object` a storage fix names: a
/// claim's own spec, or each of a StatefulSet's `volumeClaimTemplates` (only the one the fix
/// names, when it names one).
fn for_each_fixed_claim(
    kind: WorkloadKind,
    object: &mut Value,
    fix: &Fix,
    mut visit: impl FnMut(&mut Value, &str),
) {
    match kind {
        WorkloadKind::PersistentVolumeClaim => {
            let name = target::str_at(object, &["metadata", "name"])
                .unwrap_or_default()
                .to_string();
            if let Some(spec) = object.get_mut("spec") {
                visit(spec, &name);
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
                if let Some(spec) = claim.get_mut("spec") {
                    visit(spec, &name);
                }
            }
        }
        _ => {}
    }
}

fn keep_claim_spec(
    spec: &mut Value,
    live_spec: &Value,
    claim_name: &str,
    fix: &Fix,
) -> Option<Applied> {
    let path = ["resources", "requests", "storage"];
    let incoming_text = target::str_at(spec, &path)?.to_string();
    let live_text = target::str_at(live_spec, &path)?.to_string();
    let incoming = ByteQuantity::parse(&incoming_text).ok()?;
    let live = ByteQuantity::parse(&live_text).ok()?;
    if !keeps_live(&incoming, &live, &fix.value) {
        return None;
    }
    set_at(spec, &path, Value::String(live_text.clone()));
    Some(Applied {
        fix_type: FixType::Storage,
        resource: fix.resource.clone(),
        place: format!("claim {claim_name}"),
        from: incoming_text,
        to: live_text,
    })
}

pub(super) fn raise_claims(
    kind: WorkloadKind,
    object: &mut Value,
    fix: &Fix,
    quotas: &[QuotaFacts],
    mutation: &mut Mutation,
) {
    // A StatefulSet's claim templates become a claim per replica, beside the other templates'.
    let (count, why) = match kind {
        WorkloadKind::StatefulSet => {
            let replicas = object
                .pointer("/spec/replicas")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .max(1);
            let claims = if replicas == 1 { "claim" } else { "claims" };
            (
                u128::from(replicas),
                format!("{replicas} {claims} per template ({replicas} replicas)"),
            )
        }
        _ => (1, "1 claim".to_string()),
    };
    let mut claims = claim_sizes(kind, object, count);
    for_each_fixed_claim(kind, object, fix, |spec, name| {
        let others: Vec<OtherClaims> = claims
            .iter()
            .filter(|(claim, _)| claim != name)
            .map(|(_, other)| other.clone())
            .collect();
        let room = (!quotas.is_empty())
            .then(|| {
                let class = target::str_at(spec, &["storageClassName"]);
                let attributes = target::str_at(spec, &["volumeAttributesClassName"]);
                headroom::claim_room(quotas, (class, attributes), count, &others, &why)
            })
            .flatten();
        if let Some(applied) = raise_claim_spec(spec, name, fix, room, mutation) {
            let raised = headroom::bytes_of(&applied.to).unwrap_or(0);
            if let Some((_, claim)) = claims.iter_mut().find(|(claim, _)| claim == name) {
                claim.each = raised;
            }
            mutation.applied.push(applied);
        }
    });
}

/// Every claim (template) of `object` with its class and size: what a claim raise must fit
/// beside.
fn claim_sizes(kind: WorkloadKind, object: &Value, count: u128) -> Vec<(String, OtherClaims)> {
    let specs: Vec<(String, &Value)> = match kind {
        WorkloadKind::StatefulSet => object
            .pointer("/spec/volumeClaimTemplates")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|claim| {
                let name = target::str_at(claim, &["metadata", "name"])?;
                Some((name.to_string(), claim.get("spec")?))
            })
            .collect(),
        _ => Vec::new(),
    };
    specs
        .into_iter()
        .map(|(name, spec)| {
            let each = target::str_at(spec, &["resources", "requests", "storage"])
                .and_then(headroom::bytes_of)
                .unwrap_or(0);
            let class = target::str_at(spec, &["storageClassName"]).map(String::from);
            (name, OtherClaims { class, count, each })
        })
        .collect()
}

/// Raises `resources.requests.storage` of a claim spec, to what `room` (the largest size the
/// quotas leave, and what holds it) allows. A claim whose storage limit is below the new request
/// is left alone (the apiserver would reject requests > limits).
fn raise_claim_spec(
    spec: &mut Value,
    claim_name: &str,
    fix: &Fix,
    room: Option<(u128, Held)>,
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
    let mut target = fix.value.clone();
    if let Some((allowed, held)) = room
        && allowed < fix.value.bytes()
    {
        // Whole MiB, as a memory raise held by a quota.
        let allowed = ByteQuantity::from_bytes(allowed - allowed % (1 << 20));
        let fits = allowed > request;
        mutation.warnings.push(if fits {
            format!(
                "selfheal: claim {claim_name}: storage fix {} of {} held at {allowed}: {held}",
                fix.resource, fix.value
            )
        } else {
            format!(
                "selfheal: claim {claim_name}: storage fix {} of {} not applied: {held}",
                fix.resource, fix.value
            )
        });
        mutation.held.push(held);
        if !fits {
            return None;
        }
        target = allowed;
    }
    if let Some(limit_text) = target::str_at(spec, &["resources", "limits", "storage"]) {
        let below = ByteQuantity::parse(limit_text).map_or(true, |limit| limit < target);
        if below {
            mutation.warnings.push(format!(
                "selfheal: claim {claim_name}: storage fix {} exceeds its storage limit {limit_text}; left unchanged",
                target
            ));
            return None;
        }
    }
    set_at(
        spec,
        &["resources", "requests", "storage"],
        Value::String(target.as_str().to_string()),
    );
    Some(Applied {
        fix_type: FixType::Storage,
        resource: fix.resource.clone(),
        place: format!("claim {claim_name}"),
        from: request_text,
        to: target.as_str().to_string(),
    })
}
