//! A PersistentVolumeClaim's problem, read from its status (and the Warning events about it).

use jiff::Timestamp;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use super::{Problem, ProblemKind, Thresholds, Warning};

/// When a Pending claim's grace period ends (`None` for a claim not Pending, or of unknown age:
/// that one is reported at once).
pub fn claim_grace_ends(
    claim: &PersistentVolumeClaim,
    thresholds: &Thresholds,
) -> Option<Timestamp> {
    if claim.status.as_ref()?.phase.as_deref() != Some("Pending") {
        return None;
    }
    let created = claim.metadata.creation_timestamp.as_ref()?.0;
    created
        .checked_add(jiff::SignedDuration::from_secs(
            thresholds.claim_pending_seconds,
        ))
        .ok()
}

/// The problem of a claim, if it has one, read from its status alone.
pub fn claim_problem(
    claim: &PersistentVolumeClaim,
    now: Timestamp,
    thresholds: &Thresholds,
) -> Option<Problem> {
    claim_problem_with(claim, &[], now, thresholds)
}

/// The problem of a claim, also knowing the Warning events about it: a Pending claim with a
/// Warning (`ProvisioningFailed`, `FailedBinding`) is a problem at once; without one, after the
/// grace period (waiting for a provisioner or a first consumer is normal for a while). A claim
/// with no `creationTimestamp` has no known age and is reported.
pub fn claim_problem_with(
    claim: &PersistentVolumeClaim,
    warnings: &[Warning],
    now: Timestamp,
    thresholds: &Thresholds,
) -> Option<Problem> {
    let phase = claim.status.as_ref()?.phase.as_deref()?;
    let kind = match phase {
        "Lost" => ProblemKind::ClaimLost,
        "Pending" => {
            let seconds = claim
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|created| now.as_second() - created.0.as_second());
            let overdue = seconds.is_none_or(|s| s >= thresholds.claim_pending_seconds);
            if !overdue && warnings.is_empty() {
                return None;
            }
            ProblemKind::ClaimPending {
                seconds,
                storage_class: claim
                    .spec
                    .as_ref()
                    .and_then(|s| s.storage_class_name.clone()),
            }
        }
        _ => return None,
    };
    Some(Problem {
        namespace: claim.metadata.namespace.clone().unwrap_or_default(),
        object_kind: "PersistentVolumeClaim",
        object_name: claim.metadata.name.clone().unwrap_or_default(),
        uid: claim.metadata.uid.clone().unwrap_or_default(),
        kind,
    })
}
