//! The admission decision: given an object and the known fixes, the JSON Patch that applies them.
//!
//! Pure: the object in, a patch out. The patch is the difference between the object and a copy
//! with the fixes applied, so missing parents (no `annotations`, no `limits`) are always added
//! correctly, and applying the patch then asking again yields an empty patch.
//!
//! On CREATE a fix raises its fields. On UPDATE it raises only mutable pod templates
//! (Deployment, StatefulSet, DaemonSet, ReplicaSet, CronJob). Fields the apiserver does not let
//! an UPDATE change or shrink — a Pod's containers, a Job's pod template, a claim's storage
//! request, a StatefulSet's `volumeClaimTemplates` — are never raised on UPDATE; instead a
//! re-applied manifest (kubectl apply, Helm, Argo CD, Flux, server-side apply) that carries the
//! value from before the fix gets the live value back, so the apiserver accepts it (see
//! [`keeps_live`] for the exact rule).

mod memory;
mod note;
mod storage;

use serde_json::Value;

use crate::cluster::facts::Facts;
use crate::core::headroom::Held;
use crate::core::index::FixIndex;
use crate::core::quantity::ByteQuantity;
use crate::core::raise::MemoryCaps;
use crate::core::targeting::{Excluded, Exclusion, Target, Targeting};
use crate::core::workload::pointer;
use crate::webhook::target::{self, WorkloadKind};

pub use crate::core::raise::{APPLIED_ANNOTATION, Applied};
/// Label that opts an object out: `selfheal.io/ignore: "true"` (`core::targeting`'s).
pub use crate::core::targeting::IGNORE_LABEL as OPT_OUT_LABEL;

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
    /// The namespace's LimitRange `maxLimitRequestRatio` for container memory: a limit is never
    /// raised past `request × ratio` where the request stays as it is, or the LimitRanger would
    /// refuse the pod.
    pub memory_ratio: Option<f64>,
}

/// Namespaces whose objects are never changed (selfheal's own and kube-system at least).
#[derive(Debug, Clone)]
pub struct Policy {
    pub protected_namespaces: Vec<String>,
}

impl Policy {
    /// Whether the request's object may be changed, by the one targeting rule
    /// (`core::targeting`): not in a protected namespace, not labelled `selfheal.io/ignore=true`.
    /// Every namespace counts as watched (a fix recorded for a namespace applies there), and
    /// namespace labels are not consulted: the webhook's `namespaceSelector` keeps requests from
    /// ignored namespaces away.
    fn check(&self, request: &Request<'_>) -> Result<(), Excluded> {
        let targeting = Targeting {
            protected: self.protected_namespaces.clone(),
            watched: Vec::new(),
        };
        let name = target::str_at(request.object, &["metadata", "name"]).unwrap_or_default();
        targeting.check(&Target {
            ignore_label: target::str_at(request.object, &["metadata", "labels", OPT_OUT_LABEL]),
            ..Target::new(request.kind.as_str(), request.namespace, name)
        })
    }
}

/// Whether a field the apiserver does not let an UPDATE change or shrink gets its live value
/// back: exactly when `incoming < live <= fix`.
///
/// - `incoming < live`: the update lowers the field, which the apiserver would reject (the field
///   is immutable, or a claim may not shrink). Equal or larger values (a user's own expansion)
///   pass through untouched.
/// - `live <= fix`: the live value is one the fix can have produced. A fix raises to at most its
///   value and fixes only grow, so every value a fix raised to is at most the fix's current
///   value. A live value above the fix came from somewhere else (the user), and lowering it is
///   the user's own change for the apiserver to judge.
///
/// Together they imply `incoming < fix`: a CREATE of the incoming object would have raised the
/// field. The value written back is the live one, exactly, so the accepted object differs from
/// the live one only in what the user changed.
pub fn keeps_live(incoming: &ByteQuantity, live: &ByteQuantity, fix: &ByteQuantity) -> bool {
    incoming < live && live <= fix
}

/// Why an object was left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    ProtectedNamespace,
    /// Outside the watched namespaces (not used by the webhook today: it watches all).
    UnwatchedNamespace,
    OptedOut,
    /// The namespace opted out (not used by the webhook today: its `namespaceSelector` does it).
    IgnoredNamespace,
    BeingDeleted,
    /// The fix exists but the fields it changes are immutable for this operation, and the update
    /// does not lower them below their live values either (nothing to keep).
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
            Skip::UnwatchedNamespace => "unwatched_namespace",
            Skip::OptedOut => "opted_out",
            Skip::IgnoredNamespace => "ignored_namespace",
            Skip::BeingDeleted => "being_deleted",
            Skip::ImmutableOnUpdate => "immutable_on_update",
            Skip::ControlledByDeployment => "controlled_by_deployment",
            Skip::NoMatchingFix => "no_matching_fix",
            Skip::UnsupportedOperation => "unsupported_operation",
        }
    }
}

/// The decision for one object.
#[derive(Debug, Clone, Default)]
pub struct Mutation {
    /// Empty when nothing changes.
    pub patch: json_patch::Patch,
    /// Fields raised by a fix.
    pub applied: Vec<Applied>,
    /// Fields an UPDATE would have lowered below a value a fix produced, given their live value
    /// back (`from` is the incoming value, `to` the live one); see [`keeps_live`].
    pub kept: Vec<Applied>,
    /// Shown to the client (`kubectl` prints them): fixes that could not be applied, and why.
    pub warnings: Vec<String>,
    /// Raises a ResourceQuota or the nodes' capacity held below their fix (or left out), and
    /// what held them.
    pub held: Vec<Held>,
    pub skipped: Option<Skip>,
}

impl Mutation {
    fn skip(reason: Skip) -> Self {
        Self {
            skipped: Some(reason),
            ..Self::default()
        }
    }

    /// The metric label of the decision: `held_by_quota` / `held_by_node` (a raise was held
    /// below its fix, or left out, by a ResourceQuota / the nodes' capacity; quota first),
    /// `patched` (a fix raised something), `kept_live` (only live values were given back on
    /// UPDATE), else the skip reason or `unchanged`.
    pub fn outcome(&self) -> &'static str {
        if let Some(held) = self
            .held
            .iter()
            .find(|held| matches!(held, Held::Quota { .. }))
            .or(self.held.first())
        {
            return held.result();
        }
        if !self.patch.0.is_empty() {
            return if self.applied.is_empty() {
                "kept_live"
            } else {
                "patched"
            };
        }
        self.skipped.map_or("unchanged", Skip::as_str)
    }
}

/// Decides which fixes apply to `request.object` and returns the patch that applies them, with
/// no knowledge of the live object (an UPDATE then only raises mutable pod templates).
pub fn mutate(request: &Request<'_>, index: &FixIndex, policy: &Policy) -> Mutation {
    mutate_with_old_object(request, None, index, policy)
}

/// As [`mutate`], with the live object of an UPDATE (the AdmissionRequest's `oldObject`):
/// fields that may not change or shrink on UPDATE keep their live value where the update would
/// lower a value a fix produced ([`keeps_live`]).
pub fn mutate_with_old_object(
    request: &Request<'_>,
    old_object: Option<&Value>,
    index: &FixIndex,
    policy: &Policy,
) -> Mutation {
    decide(request, old_object, index, policy, None)
}

/// As [`mutate_with_old_object`], under the cluster's `facts`: a raise also fits what the
/// namespace's ResourceQuotas and the nodes leave (`core::headroom`); where only part fits the
/// raise goes to what fits, where nothing fits the value stays, and a warning names the quota
/// or node and the values ([`Mutation::held`]). The LimitRange rules still come from
/// `request` (`memory_cap`, `memory_ratio`).
pub fn mutate_with_facts(
    request: &Request<'_>,
    old_object: Option<&Value>,
    index: &FixIndex,
    policy: &Policy,
    facts: &Facts,
) -> Mutation {
    decide(request, old_object, index, policy, Some(facts))
}

/// Whether a controller of this kind makes its pods from a pod template.
fn makes_pods_from_a_template(kind: &str) -> bool {
    matches!(kind, "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job")
}

fn decide(
    request: &Request<'_>,
    old_object: Option<&Value>,
    index: &FixIndex,
    policy: &Policy,
    facts: Option<&Facts>,
) -> Mutation {
    let object = request.object;
    if let Err(excluded) = policy.check(request) {
        return Mutation::skip(match excluded.exclusion {
            Exclusion::ProtectedNamespace => Skip::ProtectedNamespace,
            Exclusion::UnwatchedNamespace => Skip::UnwatchedNamespace,
            Exclusion::IgnoredObject => Skip::OptedOut,
            Exclusion::IgnoredNamespace => Skip::IgnoredNamespace,
        });
    }
    let may_change_pod_spec = match request.operation {
        Operation::Create => true,
        Operation::Update => request.kind.pod_spec_mutable_on_update(),
        Operation::Other => return Mutation::skip(Skip::UnsupportedOperation),
    };
    let may_change_claims = request.operation == Operation::Create;
    // Only an UPDATE has a live object whose values may have to be kept.
    let live = old_object.filter(|_| request.operation == Operation::Update);
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

    let memory_fixes = memory::memory_fixes(request, index);
    let claim_fixes = storage::claim_fixes(request, index);
    if memory_fixes.is_empty() && claim_fixes.is_empty() {
        return Mutation::skip(Skip::NoMatchingFix);
    }
    let memory_allowed = may_change_pod_spec && !memory_fixes.is_empty();
    let claims_allowed = may_change_claims && !claim_fixes.is_empty();
    let memory_kept = !may_change_pod_spec && !memory_fixes.is_empty() && live.is_some();
    let claims_kept = !may_change_claims && !claim_fixes.is_empty() && live.is_some();
    if !memory_allowed && !claims_allowed && !memory_kept && !claims_kept {
        return Mutation::skip(Skip::ImmutableOnUpdate);
    }

    let mut changed = object.clone();
    let mut mutation = Mutation::default();
    if let Some(path) = request.kind.pod_spec_path()
        && let Some(pod_spec) = changed.pointer_mut(&pointer(path))
    {
        if memory_allowed {
            let room = facts.and_then(|facts| {
                facts
                    .memory_caps(request.namespace, request.kind, object, live)
                    .room
            });
            // A pod made from a template is sized by its template (held to the quota for all
            // its pods at once); raising one pod alone would spend the room its siblings and the
            // next rollout need.
            let sized_by_template = match (request.kind, target::controller(object)) {
                (WorkloadKind::Pod, Some((kind, name))) if makes_pods_from_a_template(kind) => {
                    room.as_ref().and_then(|room| {
                        room.quota_held(&format!(
                            "a pod of {kind} {name}, which its template sizes within the quota"
                        ))
                    })
                }
                _ => None,
            };
            match sized_by_template {
                Some(held) => memory::hold(&memory_fixes, held, &mut mutation),
                None => {
                    let caps = MemoryCaps {
                        max: request.memory_cap.cloned(),
                        ratio: request.memory_ratio,
                        room,
                    };
                    memory::raise(pod_spec, &memory_fixes, &caps, &mut mutation);
                }
            }
        } else if memory_kept
            && let Some(live_spec) = live.and_then(|live| live.pointer(&pointer(path)))
        {
            for fix in &memory_fixes {
                memory::keep_live_memory(pod_spec, live_spec, fix, &mut mutation);
            }
        }
    }
    if claims_allowed {
        let quotas = facts.map_or(&[][..], |facts| facts.quotas(request.namespace));
        for fix in &claim_fixes {
            storage::raise_claims(request.kind, &mut changed, fix, quotas, &mut mutation);
        }
    } else if claims_kept && let Some(live) = live {
        for fix in &claim_fixes {
            storage::keep_live_claims(request.kind, &mut changed, live, fix, &mut mutation);
        }
    }
    if mutation.applied.is_empty() && mutation.kept.is_empty() {
        mutation.skipped = Some(if memory_allowed || claims_allowed {
            Skip::NoMatchingFix
        } else {
            Skip::ImmutableOnUpdate
        });
        return mutation;
    }
    note::write(&mut changed, live, &mutation);
    mutation.patch = json_patch::diff(object, &changed);
    mutation
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(text: &str) -> ByteQuantity {
        ByteQuantity::parse(text).unwrap()
    }

    #[test]
    fn live_values_are_kept_only_when_the_update_lowers_a_value_a_fix_produced() {
        // (incoming, live, fix, kept)
        let rows = [
            ("1Gi", "5Gi", "5Gi", true), // re-applied manifest, live raised by the fix
            ("1Gi", "3Gi", "5Gi", true), // live raised by an earlier, smaller fix
            ("128Mi", "512Mi", "512Mi", true),
            ("5Gi", "5Gi", "5Gi", false),    // nothing lowered
            ("10Gi", "3Gi", "3Gi", false),   // a user's expansion
            ("1Gi", "8Gi", "5Gi", false),    // live above the fix: not the fix's doing
            ("6Gi", "8Gi", "5Gi", false),    // the user's own shrink: the apiserver decides
            ("5120Mi", "5Gi", "5Gi", false), // same quantity, other spelling
        ];
        for (incoming, live, fix, kept) in rows {
            assert_eq!(
                keeps_live(&q(incoming), &q(live), &q(fix)),
                kept,
                "incoming {incoming}, live {live}, fix {fix}"
            );
        }
    }

    fn index(yaml: &str) -> FixIndex {
        let document = crate::core::document::FixDocument::parse(yaml).unwrap();
        FixIndex::new(document.fixes().cloned())
    }

    fn update(kind: WorkloadKind, object: &Value, live: &Value, fixes: &FixIndex) -> Value {
        let mutation = mutate_with_old_object(
            &Request {
                kind,
                operation: Operation::Update,
                namespace: "ns",
                object,
                memory_cap: None,
                memory_ratio: None,
            },
            Some(live),
            fixes,
            &Policy {
                protected_namespaces: vec![],
            },
        );
        let mut patched = object.clone();
        json_patch::patch(&mut patched, &mutation.patch).unwrap();
        patched
    }

    fn job(limit: &str, request: &str, label: &str) -> Value {
        json!({"metadata": {"name": "backup-1", "labels": {"l": label},
                "ownerReferences": [{"kind": "CronJob", "name": "backup", "controller": true}]},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i",
                "resources": {"limits": {"memory": limit}, "requests": {"memory": request}}}]}}}})
    }

    #[test]
    fn a_job_reapply_gets_its_live_template_values_back() {
        let fixes =
            index("fixes:\n  - {namespace: ns, resource: backup, type: memory, value: 512Mi}\n");
        let live = job("512Mi", "512Mi", "old");
        let patched = update(
            WorkloadKind::Job,
            &job("128Mi", "128Mi", "new"),
            &live,
            &fixes,
        );
        let mut expected = live.clone();
        expected["metadata"]["labels"]["l"] = json!("new");
        assert_eq!(patched["spec"], expected["spec"]);
        assert_eq!(
            patched["metadata"]["labels"],
            expected["metadata"]["labels"]
        );
        // Only live values given back, and the live Job had no note: none is invented.
        assert!(
            patched["metadata"].get("annotations").is_none(),
            "{}",
            patched["metadata"]
        );
        // A request that was below the limit was not raised at CREATE: it is not touched now.
        let partial = update(
            WorkloadKind::Job,
            &job("128Mi", "64Mi", "new"),
            &job("512Mi", "64Mi", "old"),
            &fixes,
        );
        let container = &partial["spec"]["template"]["spec"]["containers"][0]["resources"];
        assert_eq!(container["limits"]["memory"], "512Mi");
        assert_eq!(container["requests"]["memory"], "64Mi");
    }

    fn with_note(mut object: Value, note: &str) -> Value {
        object["metadata"]["annotations"] = json!({ APPLIED_ANNOTATION: note });
        object
    }

    fn note(object: &Value) -> &str {
        object["metadata"]["annotations"][APPLIED_ANNOTATION]
            .as_str()
            .unwrap_or_default()
    }

    #[test]
    fn an_update_that_only_keeps_live_values_keeps_the_live_note() {
        let fixes =
            index("fixes:\n  - {namespace: ns, resource: backup, type: memory, value: 512Mi}\n");
        let live_note = "memory=512Mi container c (was 128Mi, fix backup)";
        let live = with_note(job("512Mi", "512Mi", "old"), live_note);
        let incoming = with_note(job("128Mi", "128Mi", "new"), "written by hand");
        let patched = update(WorkloadKind::Job, &incoming, &live, &fixes);
        assert_eq!(note(&patched), live_note);
    }

    fn deployment(note: Option<&str>, limits: [&str; 2]) -> Value {
        let mut object = json!({"metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "i", "resources": {"limits": {"memory": limits[0]}}},
            {"name": "b", "image": "i", "resources": {"limits": {"memory": limits[1]}}},
        ]}}}});
        if let Some(text) = note {
            object = with_note(object, text);
        }
        object
    }

    #[test]
    fn an_update_that_raises_merges_its_lines_into_the_live_note() {
        let fixes = index("fixes:\n  - {namespace: ns, resource: web, type: memory, value: 2Gi}\n");
        let live_note = "memory=1Gi container a (was 512Mi, fix web); memory=1Gi container z (was 256Mi, fix web)";
        let live = deployment(Some(live_note), ["1Gi", "2Gi"]);
        // The incoming object carries no note (a replace with the original manifest).
        let patched = update(
            WorkloadKind::Deployment,
            &deployment(None, ["1Gi", "2Gi"]),
            &live,
            &fixes,
        );
        assert_eq!(
            note(&patched),
            "memory=1Gi container z (was 256Mi, fix web); memory=2Gi container a (was 1Gi, fix web)"
        );
        // Nothing raised on an UPDATE: the note the user sent is left alone.
        let unchanged = deployment(Some("by hand"), ["2Gi", "2Gi"]);
        assert_eq!(
            update(WorkloadKind::Deployment, &unchanged, &live, &fixes),
            unchanged
        );
    }

    #[test]
    fn an_update_never_raises_an_immutable_field_past_its_live_value() {
        let fixes =
            index("fixes:\n  - {namespace: ns, resource: backup, type: memory, value: 2Gi}\n");
        // The fix grew after the Job was created: the live 512Mi is kept, never 2Gi.
        let patched = update(
            WorkloadKind::Job,
            &job("128Mi", "128Mi", "new"),
            &job("512Mi", "512Mi", "old"),
            &fixes,
        );
        let resources = &patched["spec"]["template"]["spec"]["containers"][0]["resources"];
        assert_eq!(resources["limits"]["memory"], "512Mi");
        assert_eq!(resources["requests"]["memory"], "512Mi");
        // Equal to live: nothing to do, nothing raised.
        let same = job("512Mi", "512Mi", "new");
        assert_eq!(
            update(
                WorkloadKind::Job,
                &same,
                &job("512Mi", "512Mi", "old"),
                &fixes
            ),
            same
        );
    }

    fn create_with_ratio(object: &Value, fixes: &FixIndex, ratio: Option<f64>) -> Mutation {
        mutate(
            &Request {
                kind: WorkloadKind::Deployment,
                operation: Operation::Create,
                namespace: "ns",
                object,
                memory_cap: None,
                memory_ratio: ratio,
            },
            fixes,
            &Policy {
                protected_namespaces: vec![],
            },
        )
    }

    fn with_request(limit: &str, request: &str) -> Value {
        json!({"metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "i",
                "resources": {"limits": {"memory": limit}, "requests": {"memory": request}}}]}}}})
    }

    #[test]
    fn a_limit_never_passes_the_limitranges_ratio_to_its_request() {
        let fixes = index("fixes:\n  - {namespace: ns, resource: web, type: memory, value: 4Gi}\n");
        let resources = |mutation: &Mutation, object: &Value| {
            let mut patched = object.clone();
            json_patch::patch(&mut patched, &mutation.patch).unwrap();
            patched["spec"]["template"]["spec"]["containers"][0]["resources"].clone()
        };
        // Request 256Mi, ratio 2: the limit goes to 512Mi, not 4Gi, and the user is told why.
        let object = with_request("300Mi", "256Mi");
        let capped = create_with_ratio(&object, &fixes, Some(2.0));
        assert_eq!(resources(&capped, &object)["limits"]["memory"], "512Mi");
        assert_eq!(resources(&capped, &object)["requests"]["memory"], "256Mi");
        assert!(
            capped
                .warnings
                .iter()
                .any(|w| w.contains("maxLimitRequestRatio"))
        );
        // Already at the ratio's allowance: nothing is raised (and nothing lowered).
        let at_allowance = with_request("512Mi", "256Mi");
        let unchanged = create_with_ratio(&at_allowance, &fixes, Some(2.0));
        assert!(unchanged.patch.0.is_empty());
        // Request equal to the limit: both rise together, the ratio stays 1.
        let guaranteed = with_request("256Mi", "256Mi");
        let both = create_with_ratio(&guaranteed, &fixes, Some(2.0));
        assert_eq!(resources(&both, &guaranteed)["limits"]["memory"], "4Gi");
        assert_eq!(resources(&both, &guaranteed)["requests"]["memory"], "4Gi");
        // No ratio in the namespace: the full fix.
        let free = create_with_ratio(&object, &fixes, None);
        assert_eq!(resources(&free, &object)["limits"]["memory"], "4Gi");
    }

    fn claim(storage: &str, label: &str) -> Value {
        json!({"metadata": {"name": "data", "labels": {"l": label}},
            "spec": {"resources": {"requests": {"storage": storage}}}})
    }

    #[test]
    fn claims_keep_their_live_size_and_user_expansions_pass() {
        let fixes =
            index("fixes:\n  - {namespace: ns, resource: data, type: storage, value: 3Gi}\n");
        let kept = update(
            WorkloadKind::PersistentVolumeClaim,
            &claim("1Gi", "new"),
            &claim("3Gi", "old"),
            &fixes,
        );
        assert_eq!(kept["spec"], claim("3Gi", "")["spec"]);
        let expanded = claim("10Gi", "new");
        assert_eq!(
            update(
                WorkloadKind::PersistentVolumeClaim,
                &expanded,
                &claim("3Gi", "old"),
                &fixes
            ),
            expanded
        );
    }

    #[test]
    fn create_and_updates_without_a_live_object_keep_todays_behaviour() {
        let fixes =
            index("fixes:\n  - {namespace: ns, resource: backup, type: memory, value: 512Mi}\n");
        let object = job("128Mi", "128Mi", "x");
        let request = Request {
            kind: WorkloadKind::Job,
            operation: Operation::Update,
            namespace: "ns",
            object: &object,
            memory_cap: None,
            memory_ratio: None,
        };
        let policy = Policy {
            protected_namespaces: vec![],
        };
        let mutation = mutate(&request, &fixes, &policy);
        assert!(mutation.patch.0.is_empty());
        assert_eq!(mutation.outcome(), "immutable_on_update");
        let with_live =
            mutate_with_old_object(&request, Some(&job("512Mi", "512Mi", "x")), &fixes, &policy);
        assert_eq!(with_live.outcome(), "kept_live");
        assert!(with_live.applied.is_empty());
    }
}
