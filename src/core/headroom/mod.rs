//! Whether a raise fits what the cluster has left: ResourceQuota headroom and node capacity.
//!
//! Pure: facts about quotas and nodes (kept current by `cluster::facts`), an object as JSON, and
//! a candidate pod or claim size in; "fits" or a typed [`Held`] reason out. `core::raise` asks
//! it for the largest memory raise that fits; the webhook's storage raise asks it for a claim.
//!
//! # Quota
//!
//! Every ResourceQuota of the namespace that applies to the object must fit; the tightest one
//! decides. A quota with `scopes` / `scopeSelector` applies to a pod only when the pod matches
//! all of them, as the quota admission matches them: `Terminating` (`activeDeadlineSeconds`
//! set) / `NotTerminating`, `BestEffort` (no cpu or memory request or limit anywhere) /
//! `NotBestEffort`, `PriorityClass` (`In` / `NotIn` / `Exists` / `DoesNotExist` on
//! `priorityClassName`), `CrossNamespacePodAffinity`. A pod-scoped quota never applies to a
//! claim; a claim matches `VolumeAttributesClass` scopes on `volumeAttributesClassName`.
//!
//! Memory resources: `limits.memory` counts the pod's limits, `requests.memory` and `memory`
//! its requests, computed as the quota does: the sum over containers (and restartable init
//! containers), at least the largest init container, plus `overhead`. A container with a
//! limit and no request is counted with request = limit (the API's defaulting).
//!
//! The rule for a pod size `P` ([`PodMemory`]) and the [`Demand`] of the object:
//!
//! ```text
//! pods × P ≤ (hard − used) + credit
//! ```
//!
//! - `pods` are the pods that exist at once at the new size ([`pods_at_once`]): 1 for a Pod;
//!   `replicas + maxSurge` for a Deployment (so the next rollout, which runs `maxSurge` extra
//!   pods beside the old ones, still fits); `replicas` for a StatefulSet and a ReplicaSet; the
//!   matching nodes (+ `maxSurge`) for a DaemonSet; `min(parallelism, completions)` for a Job
//!   and a CronJob's `jobTemplate` (one run).
//! - `credit` is what the quota's `used` already counts of the object's own pods: nothing at
//!   CREATE (the object's pods do not exist yet, so the whole new value must fit); on an UPDATE
//!   of a Deployment, StatefulSet or DaemonSet, its pods that run the live template
//!   (`status.updatedReplicas`, `updatedNumberScheduled`, when the controller has observed the
//!   live generation) at the live template's size. Pods that may not exist (refused by the
//!   quota) are never credited, so a raise that was refused before is held to what fits now.
//!
//! Claims: `requests.storage` and `<class>.storageclass.storage.k8s.io/requests.storage`,
//! `count × size ≤ hard − used` (a claim: 1; a StatefulSet's claim template: `replicas`).
//!
//! # Nodes
//!
//! A memory raise never exceeds the largest allocatable memory of a Ready, schedulable node
//! that matches the pod's `nodeSelector`: neither a raised container's limit nor the pod's
//! requests. Without node facts (not listed yet, no RBAC) or without any eligible node, nodes
//! cap nothing. Taints and node affinity are not considered.

use std::collections::BTreeMap;
use std::fmt;

mod pod;

use kube_quantity::ParsedQuantity;
use serde_json::Value;

use crate::core::quantity::ByteQuantity;

pub use pod::{
    ContainerMemory, Demand, PodMemory, PodTraits, containers_of, credit_of, largest_node,
    overhead_of, pod_memory, pod_memory_of, pod_traits, pods_at_once, quota_applies_to_claim,
    quota_applies_to_pod,
};

const MIB: u128 = 1 << 20;

/// A quantity (`768Mi`, `0`, `1.5G`) in whole bytes, rounded up; `None` when unreadable or
/// negative. Zero is a valid quota.
pub fn bytes_of(text: &str) -> Option<u128> {
    let parsed = ParsedQuantity::try_from(text.trim()).ok()?;
    let bytes = parsed.to_bytes_f64()?;
    (bytes.is_finite() && bytes >= 0.0).then(|| bytes.ceil().min(u128::MAX as f64) as u128)
}

/// Bytes written as a quantity for people: `805306368` → `768Mi`.
pub fn show(bytes: u128) -> String {
    ByteQuantity::from_bytes(bytes).as_str().to_string()
}

/// One ResourceQuota as the rails need it: its byte resources and scopes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaFacts {
    pub namespace: String,
    pub name: String,
    /// `hard` per resource name, in bytes (memory and storage resources only).
    pub hard: BTreeMap<String, u128>,
    /// `status.used` per resource name, in bytes (missing: 0).
    pub used: BTreeMap<String, u128>,
    /// `spec.scopes` (as `Exists`) and `spec.scopeSelector.matchExpressions`.
    pub scopes: Vec<ScopeRequirement>,
}

/// One scope a quota is limited to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRequirement {
    pub scope: String,
    /// `In`, `NotIn`, `Exists`, `DoesNotExist`.
    pub operator: String,
    pub values: Vec<String>,
}

/// One node as the rails need it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFacts {
    pub name: String,
    /// `status.allocatable.memory` in bytes.
    pub allocatable_memory: Option<u128>,
    pub ready: bool,
    pub unschedulable: bool,
    pub labels: BTreeMap<String, String>,
}

impl NodeFacts {
    /// Whether new pods can land on it.
    pub fn eligible(&self) -> bool {
        self.ready && !self.unschedulable && self.allocatable_memory.is_some()
    }
}

/// The memory resources a quota can hold a raise to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MemoryResource {
    LimitsMemory,
    RequestsMemory,
    /// `memory`: the same as `requests.memory`.
    Memory,
}

impl MemoryResource {
    pub const ALL: [Self; 3] = [Self::LimitsMemory, Self::RequestsMemory, Self::Memory];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LimitsMemory => "limits.memory",
            Self::RequestsMemory => "requests.memory",
            Self::Memory => "memory",
        }
    }

    fn of(self, pod: &PodMemory) -> u128 {
        match self {
            Self::LimitsMemory => pod.limits,
            Self::RequestsMemory | Self::Memory => pod.requests,
        }
    }
}

/// Why a raise was held below the fix: the constraint that stopped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    Quota {
        namespace: String,
        quota: String,
        /// `limits.memory`, `requests.storage`, `gold.storageclass.storage.k8s.io/requests.storage`.
        resource: String,
        hard: u128,
        used: u128,
        /// What `used` already counts of the object's own pods (see the module docs).
        credit: u128,
        /// Pods (or claims) that exist at once at the new size, and in words why
        /// (`2 pods at once (1 replica + 1 surge)`, `3 claims (3 replicas)`).
        count: u128,
        why: String,
    },
    Node {
        /// The largest allocatable memory of an eligible node, and that node.
        largest: u128,
        node: String,
        /// Whether the pod's `nodeSelector` narrowed the nodes.
        selector: bool,
    },
}

impl Held {
    /// The Event reason and admission metric result: `FixHeldByQuota`, `FixHeldByNode`.
    pub fn reason(&self) -> &'static str {
        match self {
            Held::Quota { .. } => "FixHeldByQuota",
            Held::Node { .. } => "FixHeldByNode",
        }
    }

    /// The metric result: `held_by_quota`, `held_by_node`.
    pub fn result(&self) -> &'static str {
        match self {
            Held::Quota { .. } => "held_by_quota",
            Held::Node { .. } => "held_by_node",
        }
    }

    /// Room left for the object: `hard − used + credit` (a quota), the node's memory (a node).
    pub fn room(&self) -> u128 {
        match self {
            Held::Quota {
                hard, used, credit, ..
            } => (hard + credit).saturating_sub(*used),
            Held::Node { largest, .. } => *largest,
        }
    }
}

impl fmt::Display for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Held::Quota {
                quota,
                resource,
                hard,
                used,
                credit,
                why,
                ..
            } => {
                write!(
                    f,
                    "ResourceQuota {quota} has {} of {resource} left (hard {}, used {}",
                    show(self.room()),
                    show(*hard),
                    show(*used),
                )?;
                if *credit > 0 {
                    write!(f, ", of which {} by this workload", show(*credit))?;
                }
                write!(f, ") for {why}")
            }
            Held::Node {
                largest,
                node,
                selector,
            } => write!(
                f,
                "the largest Ready schedulable node{} ({node}) has {} allocatable memory",
                if *selector {
                    " matching the nodeSelector"
                } else {
                    ""
                },
                show(*largest)
            ),
        }
    }
}

/// One quota resource a pod raise must fit.
#[derive(Debug, Clone, PartialEq, Eq)]
struct QuotaRoom {
    namespace: String,
    quota: String,
    resource: MemoryResource,
    hard: u128,
    used: u128,
}

/// The room a pod-spec memory raise has: the applicable quotas' memory resources, the node
/// cap, and the object's demand. Built once per object, asked once per candidate size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Room {
    quotas: Vec<QuotaRoom>,
    node: Option<(u128, String, bool)>,
    demand: Demand,
}

impl Room {
    /// The room of the pod spec `pod_spec` of an object with `demand`, under the namespace's
    /// `quotas` and the cluster's `nodes` (`None`: unknown).
    pub fn new(
        pod_spec: &Value,
        demand: Demand,
        quotas: &[QuotaFacts],
        nodes: Option<&[NodeFacts]>,
    ) -> Self {
        let traits = pod_traits(pod_spec);
        let quotas = quotas
            .iter()
            .filter(|quota| quota_applies_to_pod(quota, &traits))
            .flat_map(|quota| {
                MemoryResource::ALL.into_iter().filter_map(|resource| {
                    Some(QuotaRoom {
                        namespace: quota.namespace.clone(),
                        quota: quota.name.clone(),
                        resource,
                        hard: *quota.hard.get(resource.as_str())?,
                        used: quota.used.get(resource.as_str()).copied().unwrap_or(0),
                    })
                })
            })
            .collect();
        let node = nodes
            .and_then(|nodes| largest_node(nodes, &traits.node_selector))
            .map(|(largest, name)| (largest, name, !traits.node_selector.is_empty()));
        Self {
            quotas,
            node,
            demand,
        }
    }

    /// Whether nothing can hold a raise (no quota resource, no node cap).
    pub fn is_unbounded(&self) -> bool {
        self.quotas.is_empty() && self.node.is_none()
    }

    /// Whether a pod of size `pod`, whose largest raised container limit is `largest_limit`,
    /// fits; else the first constraint it breaks ([`Room::explain`] says which).
    pub fn check(&self, pod: &PodMemory, largest_limit: u128) -> Result<(), Breach> {
        let demand = &self.demand;
        for (index, room) in self.quotas.iter().enumerate() {
            let credit = room.resource.of(&demand.credit);
            let needed = demand.pods.saturating_mul(room.resource.of(pod));
            if needed > (room.hard + credit).saturating_sub(room.used) {
                return Err(Breach(Some(index)));
            }
        }
        if let Some((largest, _, _)) = &self.node
            && (pod.requests > *largest || largest_limit > *largest)
        {
            return Err(Breach(None));
        }
        Ok(())
    }

    /// The tightest quota resource of this room, told as holding a raise for `why` (a pod
    /// made from a template is sized by its template: a raise of the pod alone would spend the
    /// room its siblings and the next rollout need); `None` when no quota applies.
    pub fn quota_held(&self, why: &str) -> Option<Held> {
        let index = (0..self.quotas.len()).min_by_key(|&index| {
            let room = &self.quotas[index];
            (room.hard + room.resource.of(&self.demand.credit)).saturating_sub(room.used)
        })?;
        match self.explain(Breach(Some(index))) {
            Held::Quota {
                namespace,
                quota,
                resource,
                hard,
                used,
                credit,
                count,
                ..
            } => Some(Held::Quota {
                namespace,
                quota,
                resource,
                hard,
                used,
                credit,
                count,
                why: why.to_string(),
            }),
            Held::Node { .. } => None,
        }
    }

    /// What a [`Breach`] of this room means.
    pub fn explain(&self, breach: Breach) -> Held {
        let demand = &self.demand;
        match breach.0.and_then(|index| self.quotas.get(index)) {
            Some(room) => Held::Quota {
                namespace: room.namespace.clone(),
                quota: room.quota.clone(),
                resource: room.resource.as_str().to_string(),
                hard: room.hard,
                used: room.used,
                credit: room.resource.of(&demand.credit),
                count: demand.pods,
                why: demand.why.clone(),
            },
            None => {
                let (largest, node, selector) = self.node.clone().unwrap_or_default();
                Held::Node {
                    largest,
                    node,
                    selector,
                }
            }
        }
    }
}

/// A constraint of a [`Room`] a size breaks: a quota resource (its index), else the node cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breach(Option<usize>);

/// The largest `target ≤ ceiling` for which `fits(target)` holds, searched in whole MiB below
/// `ceiling` (`ceiling` itself first, so a fix that fits keeps its exact value). `fits` must be
/// monotone (true up to some size, false above). `None` when not even 0 fits.
pub fn largest_fitting<E>(
    ceiling: u128,
    mut fits: impl FnMut(u128) -> Result<(), E>,
) -> (Option<u128>, Option<E>) {
    let first = match fits(ceiling) {
        Ok(()) => return (Some(ceiling), None),
        Err(error) => error,
    };
    let (mut low, mut high) = (0u128, ceiling / MIB);
    if high * MIB == ceiling {
        high = high.saturating_sub(1);
    }
    if fits(0).is_err() {
        return (None, Some(first));
    }
    // Invariant: low MiB fits; above high MiB nothing does.
    while low < high {
        let middle = low + (high - low).div_ceil(2);
        if fits(middle * MIB).is_ok() {
            low = middle;
        } else {
            high = middle - 1;
        }
    }
    (Some(low * MIB), Some(first))
}

/// A claim a storage raise must fit beside: `count` claims of storage class `class` (`None`: no
/// class named) at `each` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherClaims {
    pub class: Option<String>,
    pub count: u128,
    pub each: u128,
}

/// The largest storage request each of `count` claims of storage class `class` (and volume
/// attributes class `attributes_class`) may have under the namespace's `quotas`, beside the
/// `others` created with them (a StatefulSet's other claim templates), with the tightest
/// constraint; `None` when no quota limits it. The claims are new (CREATE): none is in `used`.
pub fn claim_room(
    quotas: &[QuotaFacts],
    claim: (Option<&str>, Option<&str>),
    count: u128,
    others: &[OtherClaims],
    why: &str,
) -> Option<(u128, Held)> {
    let (class, attributes_class) = claim;
    let count = count.max(1);
    let class_resource = class.map(|c| format!("{c}.storageclass.storage.k8s.io/requests.storage"));
    let beside = |resource: &str| -> u128 {
        others
            .iter()
            .filter(|other| {
                resource == "requests.storage"
                    || other
                        .class
                        .as_deref()
                        .is_some_and(|c| resource.starts_with(&format!("{c}.")))
            })
            .map(|other| other.count.saturating_mul(other.each))
            .sum()
    };
    quotas
        .iter()
        .filter(|quota| quota_applies_to_claim(quota, attributes_class))
        .flat_map(|quota| {
            ["requests.storage".to_string()]
                .into_iter()
                .chain(class_resource.clone())
                .filter_map(move |resource| {
                    let hard = *quota.hard.get(&resource)?;
                    let used = quota.used.get(&resource).copied().unwrap_or(0);
                    let used = used.saturating_add(beside(&resource));
                    let each = hard.saturating_sub(used) / count;
                    Some((
                        each,
                        Held::Quota {
                            namespace: quota.namespace.clone(),
                            quota: quota.name.clone(),
                            resource,
                            hard,
                            used,
                            credit: 0,
                            count,
                            why: why.to_string(),
                        },
                    ))
                })
        })
        .min_by_key(|(each, _)| *each)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MI: u128 = 1 << 20;

    fn quota(name: &str, hard: &[(&str, u128)], used: &[(&str, u128)]) -> QuotaFacts {
        let map = |entries: &[(&str, u128)]| {
            entries
                .iter()
                .map(|(resource, mib)| (resource.to_string(), mib * MI))
                .collect()
        };
        QuotaFacts {
            namespace: "ns".into(),
            name: name.into(),
            hard: map(hard),
            used: map(used),
            scopes: Vec::new(),
        }
    }

    fn spec(limit: &str) -> Value {
        json!({"containers": [{"name": "app", "resources": {"limits": {"memory": limit}}}]})
    }

    fn pod(mib: u128) -> PodMemory {
        PodMemory {
            limits: mib * MI,
            requests: mib * MI,
        }
    }

    fn demand(pods: u128, credit_mib: u128) -> Demand {
        Demand {
            pods,
            why: format!("{pods} pods at once"),
            credit: pod(credit_mib),
        }
    }

    #[test]
    fn quantities_may_be_zero_but_not_negative_or_unreadable() {
        assert_eq!(bytes_of("0"), Some(0));
        assert_eq!(bytes_of("768Mi"), Some(768 * MI));
        assert_eq!(bytes_of("1.5Ki"), Some(1536));
        assert_eq!(bytes_of("-1Gi"), None);
        assert_eq!(bytes_of("lots"), None);
        assert_eq!(show(384 * MI), "384Mi");
    }

    #[test]
    fn every_pod_at_once_must_fit_the_quota_left_plus_what_it_already_counts() {
        let quotas = [quota(
            "mem",
            &[("limits.memory", 768), ("requests.memory", 768)],
            &[],
        )];
        // CREATE of a Deployment of 1 replica + 1 surge: nothing counted yet, so 2 × size ≤ 768Mi.
        let room = Room::new(&spec("256Mi"), demand(2, 0), &quotas, None);
        assert_eq!(room.check(&pod(384), 384 * MI), Ok(()));
        let held = room.explain(room.check(&pod(385), 385 * MI).unwrap_err());
        assert_eq!(held.reason(), "FixHeldByQuota");
        assert_eq!(held.room(), 768 * MI);
        assert_eq!(
            held.to_string(),
            "ResourceQuota mem has 768Mi of limits.memory left (hard 768Mi, used 0) for 2 pods at once"
        );
        // UPDATE with the workload's one pod at 256Mi running: 2 × size ≤ 512 + 256.
        let running = [quota(
            "mem",
            &[("limits.memory", 768)],
            &[("limits.memory", 256)],
        )];
        let room = Room::new(&spec("256Mi"), demand(2, 256), &running, None);
        assert_eq!(room.check(&pod(384), 0), Ok(()));
        assert!(room.check(&pod(385), 0).is_err());
        // Another workload's pods are not credited: only 512Mi are left for both pods.
        let room = Room::new(&spec("256Mi"), demand(2, 0), &running, None);
        assert!(room.check(&pod(257), 0).is_err());
    }

    #[test]
    fn the_tightest_quota_and_resource_decides() {
        let quotas = [
            quota(
                "wide",
                &[("limits.memory", 4096)],
                &[("limits.memory", 1024)],
            ),
            quota(
                "narrow",
                &[("requests.memory", 1024)],
                &[("requests.memory", 512)],
            ),
            quota("cpu-only", &[], &[]),
        ];
        let room = Room::new(&spec("256Mi"), demand(1, 0), &quotas, None);
        let limits_high = PodMemory {
            limits: 3000 * MI,
            requests: 256 * MI,
        };
        assert_eq!(room.check(&limits_high, 0), Ok(()));
        let requests_high = PodMemory {
            limits: 600 * MI,
            requests: 600 * MI,
        };
        let Err(Held::Quota {
            quota: name,
            resource,
            ..
        }) = room.check(&requests_high, 0).map_err(|b| room.explain(b))
        else {
            panic!("held by the narrow quota");
        };
        assert_eq!(
            (name.as_str(), resource.as_str()),
            ("narrow", "requests.memory")
        );
        // `memory` is the requests, too.
        let plain = [quota("plain", &[("memory", 300)], &[])];
        let room = Room::new(&spec("256Mi"), demand(1, 0), &plain, None);
        assert!(room.check(&requests_high, 0).is_err());
    }

    #[test]
    fn a_scoped_quota_for_other_pods_holds_nothing() {
        let mut scoped = quota("high", &[("limits.memory", 100)], &[]);
        scoped.scopes.push(ScopeRequirement {
            scope: "PriorityClass".into(),
            operator: "In".into(),
            values: vec!["high".into()],
        });
        let room = Room::new(
            &spec("256Mi"),
            demand(1, 0),
            std::slice::from_ref(&scoped),
            None,
        );
        assert!(room.is_unbounded());
        let mut high = spec("256Mi");
        high["priorityClassName"] = json!("high");
        let room = Room::new(&high, demand(1, 0), &[scoped], None);
        assert!(room.check(&pod(101), 0).is_err());
    }

    #[test]
    fn a_raise_never_passes_the_largest_eligible_node() {
        let nodes = [
            NodeFacts {
                name: "small".into(),
                allocatable_memory: Some(2048 * MI),
                ready: true,
                ..NodeFacts::default()
            },
            NodeFacts {
                name: "cordoned".into(),
                allocatable_memory: Some(65536 * MI),
                ready: true,
                unschedulable: true,
                ..NodeFacts::default()
            },
        ];
        let room = Room::new(&spec("256Mi"), demand(3, 0), &[], Some(&nodes));
        assert_eq!(room.check(&pod(2048), 2048 * MI), Ok(()));
        // A limit past the node, or requests past it, cannot run.
        let held = room.explain(room.check(&pod(256), 4096 * MI).unwrap_err());
        assert_eq!(held.reason(), "FixHeldByNode");
        assert!(held.to_string().contains("(small) has 2Gi"), "{held}");
        assert!(room.check(&pod(2049), 0).is_err());
        // No node facts, or no eligible node: nothing to measure against.
        assert!(Room::new(&spec("256Mi"), demand(1, 0), &[], None).is_unbounded());
        assert!(Room::new(&spec("256Mi"), demand(1, 0), &[], Some(&nodes[1..])).is_unbounded());
    }

    #[test]
    fn the_largest_fitting_size_is_found_in_whole_mib() {
        let limit = |max: u128| move |bytes: u128| if bytes <= max { Ok(()) } else { Err(max) };
        // Fits: the ceiling itself, exactly.
        assert_eq!(
            largest_fitting(1536 * MI + 7, limit(u128::MAX)),
            (Some(1536 * MI + 7), None)
        );
        assert_eq!(
            largest_fitting(1024 * MI, limit(384 * MI)),
            (Some(384 * MI), Some(384 * MI))
        );
        assert_eq!(
            largest_fitting(1024 * MI, limit(384 * MI + 5)),
            (Some(384 * MI), Some(384 * MI + 5))
        );
        assert_eq!(
            largest_fitting(1024 * MI, limit(MI - 1)),
            (Some(0), Some(MI - 1))
        );
        // Not even nothing fits.
        let never = |_: u128| Err(());
        assert_eq!(largest_fitting(1024 * MI, never), (None, Some(())));
    }

    #[test]
    fn a_claim_fits_the_storage_and_its_class_quota() {
        let quotas = [
            quota(
                "storage",
                &[("requests.storage", 100 * 1024)],
                &[("requests.storage", 10 * 1024)],
            ),
            quota(
                "gold",
                &[(
                    "gold.storageclass.storage.k8s.io/requests.storage",
                    20 * 1024,
                )],
                &[(
                    "gold.storageclass.storage.k8s.io/requests.storage",
                    5 * 1024,
                )],
            ),
        ];
        let (each, held) = claim_room(&quotas, (Some("gold"), None), 1, &[], "1 claim").unwrap();
        assert_eq!(each, 15 * 1024 * MI);
        assert!(
            held.to_string()
                .starts_with("ResourceQuota gold has 15Gi of gold.storageclass"),
            "{held}"
        );
        let (each, _) = claim_room(&quotas, (Some("silver"), None), 3, &[], "3 claims").unwrap();
        assert_eq!(each, 30 * 1024 * MI);
        assert!(claim_room(&[], (Some("gold"), None), 1, &[], "1 claim").is_none());
        // Claims created beside it take their share first: 3 × 5Gi of gold leave 0 for it.
        let others = [OtherClaims {
            class: Some("gold".into()),
            count: 3,
            each: 5 * 1024 * MI,
        }];
        let (each, held) =
            claim_room(&quotas, (Some("gold"), None), 1, &others, "1 claim").unwrap();
        assert_eq!(each, 0);
        assert!(held.to_string().contains("gold.storageclass"), "{held}");
    }
}
