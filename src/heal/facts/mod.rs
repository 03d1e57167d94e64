//! FACTS: what a decision reads about the cluster, as plain data. Gathered before `plan`, once
//! per handling: in the watcher from its reflector stores (pods, claims, namespaces with their
//! labels) and snapshots (the fixes; `cluster::facts`: LimitRanges, ResourceQuotas, nodes, as of
//! one moment), and by a few reads of the one object an action would change (`read`); in
//! `selfheal heal` from its one list of the cluster. `plan` is pure over them.

pub mod read;

pub use read::{ReadError, Reader, WorkloadStores, expandable_classes};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use serde_json::Value;

use crate::cluster::facts::Facts as ClusterSnapshot;
use crate::core::fix::{Fix, FixType};
use crate::core::index::FixIndex;
use crate::core::owners::Workload;
use crate::core::quantity::ByteQuantity;
use crate::core::targeting::NamespaceLabels;

/// Everything `plan` reads about one problem.
#[derive(Debug, Clone)]
pub struct Facts {
    pub now: Timestamp,
    /// The pod the problem is about, as last seen (for pod problems).
    pub pod: Option<Pod>,
    /// The claims that pod mounts.
    pub claims: Vec<ClaimInfo>,
    /// The fixes stored now.
    pub fixes: Arc<FixIndex>,
    /// The labels of every namespace the decision may touch.
    pub namespaces: NamespaceFacts,
    /// What the cluster enforces on a raise, as of one moment: the namespaces' LimitRange rules
    /// for container memory, their ResourceQuotas, the nodes (`cluster::facts`).
    pub cluster: Arc<ClusterSnapshot>,
    /// The object the wanted action would change, as read.
    pub target: TargetFacts,
}

impl Facts {
    /// Facts with nothing known but the time and the fixes (a probe's dependency restart reads
    /// its target; the rest is empty).
    pub fn new(now: Timestamp, fixes: Arc<FixIndex>, cluster: Arc<ClusterSnapshot>) -> Self {
        Self {
            now,
            pod: None,
            claims: Vec::new(),
            fixes,
            namespaces: NamespaceFacts::default(),
            cluster,
            target: TargetFacts::None,
        }
    }

    /// Memory limit of `container` in the problem's pod.
    pub fn container_limit(&self, container: &str) -> Option<ByteQuantity> {
        container_memory_limit(self.pod.as_ref()?, container)
    }

    /// When `container` of the problem's pod last terminated.
    pub fn last_termination(&self, container: &str) -> Option<Timestamp> {
        last_termination(self.pod.as_ref()?, container)
    }
}

/// The labels of the namespaces a decision may touch, as read. A namespace that was not read
/// counts as unreadable (so it is never acted in).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceFacts(BTreeMap<String, BTreeMap<String, String>>);

impl NamespaceFacts {
    /// Records the labels of `namespace` (none for a namespace the API does not know).
    pub fn insert(&mut self, namespace: &str, labels: BTreeMap<String, String>) {
        self.0.insert(namespace.to_string(), labels);
    }

    pub fn contains(&self, namespace: &str) -> bool {
        self.0.contains_key(namespace)
    }

    /// What targeting may know of `namespace`'s labels.
    pub fn labels(&self, namespace: &str) -> NamespaceLabels<'_> {
        match self.0.get(namespace) {
            Some(labels) => NamespaceLabels::Known(labels),
            None => NamespaceLabels::Unreadable("not read"),
        }
    }
}

/// The object the wanted action would change, as read before deciding.
#[derive(Debug, Clone, Default)]
pub enum TargetFacts {
    /// No action needs an object read.
    #[default]
    None,
    /// The workload a fix is put into (`None`: it does not exist).
    Workload(Option<WorkloadObject>),
    /// The workload behind a refused `host:port`.
    Dependency(DependencyFacts),
    /// The cert-manager Certificate named by a Secret.
    Certificate(CertificateFacts),
}

/// A workload as read: who it is and the whole object as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadObject {
    pub workload: Workload,
    pub object: Value,
}

impl WorkloadObject {
    pub fn labels(&self) -> BTreeMap<String, String> {
        serde_json::from_value(self.object["metadata"]["labels"].clone()).unwrap_or_default()
    }

    pub fn uid(&self) -> Option<&str> {
        self.object["metadata"]["uid"].as_str()
    }
}

/// What was found behind a refused `host:port`.
#[derive(Debug, Clone)]
pub enum DependencyFacts {
    /// An IP address (or nothing): not a Service name.
    NotAService,
    NoService {
        namespace: String,
        service: String,
    },
    NoSelector {
        namespace: String,
        service: String,
    },
    NoPods {
        namespace: String,
        service: String,
    },
    /// The pod behind it has no controller.
    Uncontrolled {
        pod: String,
    },
    Found {
        /// The workload behind the Service.
        dependency: Workload,
        /// The pods the Service selects.
        pods: Vec<Pod>,
        /// The workload as read (`None`: it does not exist, or is not a kind selfheal reads).
        object: Option<WorkloadObject>,
    },
}

/// The cert-manager Certificate named by a Secret, as read.
#[derive(Debug, Clone)]
pub enum CertificateFacts {
    /// The Certificate does not exist.
    Missing,
    /// cert-manager is not installed (no `certificates.cert-manager.io` API).
    NoApi,
    /// The whole object as JSON.
    Found(Value),
}

/// A claim mounted by the pod.
#[derive(Debug, Clone, Default)]
pub struct ClaimInfo {
    pub name: String,
    pub request: Option<ByteQuantity>,
    /// Bound, and its StorageClass has `allowVolumeExpansion: true`.
    pub expandable: bool,
    /// Known to exist (listed or watched), with its uid and labels.
    pub exists: bool,
    pub uid: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// Memory limit of `container` (regular or init) in a pod.
pub fn container_memory_limit(pod: &Pod, container: &str) -> Option<ByteQuantity> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == container)?
        .resources
        .as_ref()?
        .limits
        .as_ref()?
        .get("memory")
        .and_then(|q| ByteQuantity::parse(&q.0).ok())
}

/// When `container` of `pod` last terminated.
pub fn last_termination(pod: &Pod, container: &str) -> Option<Timestamp> {
    let status = pod.status.as_ref()?;
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .find(|c| c.name == container)?
        .last_state
        .as_ref()?
        .terminated
        .as_ref()?
        .finished_at
        .as_ref()
        .map(|t| t.0)
}

/// The memory fix stored for a workload's container: the container's own, else workload-wide.
pub fn stored_memory_fix<'i>(
    index: &'i FixIndex,
    namespace: &str,
    workload: &str,
    container: &str,
) -> Option<&'i Fix> {
    let fixes = index.lookup(namespace, workload);
    let memory = |target: Option<&str>| {
        fixes
            .iter()
            .find(|f| f.fix_type == FixType::Memory && f.container.as_deref() == target)
    };
    memory(Some(container)).or_else(|| memory(None))
}

/// The claims a pod mounts, as the planner sees them: `claims` are those known (any
/// namespace), `expandable` the StorageClasses that allow expansion.
pub fn pod_claims<'c>(
    pod: &Pod,
    claims: impl IntoIterator<Item = &'c PersistentVolumeClaim> + Clone,
    expandable: &BTreeSet<String>,
) -> Vec<ClaimInfo> {
    let namespace = pod.metadata.namespace.as_deref();
    pod.spec
        .iter()
        .flat_map(|spec| spec.volumes.iter().flatten())
        .filter_map(|volume| volume.persistent_volume_claim.as_ref())
        .map(|source| {
            let claim = claims.clone().into_iter().find(|c| {
                c.metadata.name.as_deref() == Some(source.claim_name.as_str())
                    && c.metadata.namespace.as_deref() == namespace
            });
            let request = claim
                .and_then(|c| {
                    c.spec
                        .as_ref()?
                        .resources
                        .as_ref()?
                        .requests
                        .as_ref()?
                        .get("storage")
                        .cloned()
                })
                .and_then(|q| ByteQuantity::parse(&q.0).ok());
            let bound = claim.and_then(|c| c.status.as_ref()?.phase.as_deref()) == Some("Bound");
            let class = claim.and_then(|c| c.spec.as_ref()?.storage_class_name.clone());
            ClaimInfo {
                name: source.claim_name.clone(),
                request,
                expandable: bound && class.is_some_and(|c| expandable.contains(&c)),
                exists: claim.is_some(),
                uid: claim.and_then(|c| c.metadata.uid.clone()),
                labels: claim
                    .and_then(|c| c.metadata.labels.clone())
                    .unwrap_or_default(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_limits_and_claims() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "db-0", "namespace": "data"},
            "spec": {
                "initContainers": [{"name": "init", "resources": {"limits": {"memory": "64Mi"}}}],
                "containers": [{"name": "db", "resources": {"limits": {"memory": "1Gi"}}}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}}]
            }
        }))
        .unwrap();
        assert_eq!(container_memory_limit(&pod, "db").unwrap().as_str(), "1Gi");
        assert_eq!(
            container_memory_limit(&pod, "init").unwrap().as_str(),
            "64Mi"
        );
        assert!(container_memory_limit(&pod, "other").is_none());

        let claim: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data-db-0", "namespace": "data", "uid": "c1", "labels": {"app": "db"}},
            "spec": {"storageClassName": "ssd", "resources": {"requests": {"storage": "10Gi"}}},
            "status": {"phase": "Bound"}
        }))
        .unwrap();
        let ssd = BTreeSet::from(["ssd".to_string()]);
        let claims = pod_claims(&pod, [&claim], &ssd);
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].request.as_ref().unwrap().as_str(), "10Gi");
        assert!(claims[0].expandable && claims[0].exists);
        assert_eq!(claims[0].uid.as_deref(), Some("c1"));
        assert_eq!(claims[0].labels["app"], "db");
        assert!(!pod_claims(&pod, [&claim], &BTreeSet::new())[0].expandable);
        let unknown = pod_claims(&pod, [], &ssd);
        assert!(!unknown[0].exists && unknown[0].request.is_none());
    }

    #[test]
    fn container_fix_is_preferred_to_the_workload_fix() {
        let doc = crate::core::document::FixDocument::parse(
            "fixes:\n- {namespace: a, resource: web, type: memory, value: 1Gi}\n- {namespace: a, resource: web, type: memory, value: 2Gi, container: app}\n",
        )
        .unwrap();
        let index = FixIndex::new(doc.fixes().cloned());
        assert_eq!(
            stored_memory_fix(&index, "a", "web", "app")
                .unwrap()
                .value
                .as_str(),
            "2Gi"
        );
        assert_eq!(
            stored_memory_fix(&index, "a", "web", "sidecar")
                .unwrap()
                .value
                .as_str(),
            "1Gi"
        );
        assert!(stored_memory_fix(&index, "a", "db", "app").is_none());
    }

    #[test]
    fn a_namespace_not_read_is_unreadable() {
        let mut namespaces = NamespaceFacts::default();
        namespaces.insert("shop", BTreeMap::new());
        assert!(matches!(
            namespaces.labels("shop"),
            NamespaceLabels::Known(_)
        ));
        assert!(matches!(
            namespaces.labels("elsewhere"),
            NamespaceLabels::Unreadable(_)
        ));
    }
}
