//! The loop DETECT → DIAGNOSE → FIX → PERSIST over a cluster view, shared by the one-shot
//! `selfheal heal` and the watcher inside `selfheal serve`.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::ListParams;
use kube::{Api, Client};
use serde::Serialize;

use crate::core::fix::{Fix, FixType};
use crate::core::index::FixIndex;
use crate::core::owners;
use crate::core::quantity::ByteQuantity;
use crate::heal::call::CALL_TIMEOUT;
use crate::heal::execute::{self, Executor, Outcome};
use crate::heal::inspect::{self, ClusterView, Finding};
use crate::heal::plan::{self, ClaimInfo, Plan, Rails, Situation};
use crate::webhook::mutate::OPT_OUT_LABEL;

/// One handled finding.
#[derive(Debug, Clone, Serialize)]
pub struct Handled {
    pub finding: Finding,
    pub plan: Plan,
    pub outcome: Outcome,
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

/// The claims a pod mounts, as the planner sees them.
pub fn pod_claims(
    pod: &Pod,
    claims: &[PersistentVolumeClaim],
    expandable_class: impl Fn(&str) -> bool,
) -> Vec<ClaimInfo> {
    let namespace = pod.metadata.namespace.as_deref();
    pod.spec
        .iter()
        .flat_map(|spec| spec.volumes.iter().flatten())
        .filter_map(|volume| volume.persistent_volume_claim.as_ref())
        .map(|source| {
            let claim = claims.iter().find(|c| {
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
                expandable: bound && class.as_deref().is_some_and(&expandable_class),
            }
        })
        .collect()
}

/// Where a run may act.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only this component (namespace, workload, or app label).
    pub component: Option<String>,
    /// Never act here (kube-system and selfheal's own namespace).
    pub protected: Vec<String>,
}

impl Scope {
    pub fn includes(&self, finding: &Finding) -> bool {
        let namespace = &finding.problem.namespace;
        !self.protected.contains(namespace)
            && self.namespace.as_ref().is_none_or(|ns| ns == namespace)
            && self.component.as_deref().is_none_or(|component| {
                owners::matches_component(
                    component,
                    namespace,
                    finding.workload.as_ref(),
                    Some(&finding.labels),
                )
            })
    }
}

/// One pass of the loop over the whole cluster (or the scope): gather, detect, diagnose, fix.
pub async fn run_once(
    client: &Client,
    executor: &Executor,
    rails: &Rails,
    index: &FixIndex,
    scope: &Scope,
    now: Timestamp,
) -> Result<Vec<Handled>, kube::Error> {
    let view = inspect::gather(client, scope.namespace.as_deref()).await?;
    let findings: Vec<Finding> = inspect::diagnose_view(client, &view, now)
        .await
        .into_iter()
        .filter(|f| scope.includes(f))
        .collect();
    Ok(heal(client, executor, rails, &view, findings, index, now).await)
}

/// Plans and carries out every finding, in order. The StorageClasses the plans need are listed
/// once per run; LimitRange maxima come with the view.
pub async fn heal(
    client: &Client,
    executor: &Executor,
    rails: &Rails,
    view: &ClusterView,
    findings: Vec<Finding>,
    index: &FixIndex,
    now: Timestamp,
) -> Vec<Handled> {
    let classes = expandable_classes(client).await;
    let mut namespace_opt_outs: HashMap<String, Option<String>> = HashMap::new();
    let mut handled = Vec::new();
    for finding in findings {
        let pod = view
            .pods
            .iter()
            .find(|p| p.metadata.uid.as_deref() == Some(finding.problem.uid.as_str()));
        let container = finding
            .problem
            .kind
            .container()
            .unwrap_or_default()
            .to_string();
        let namespace = finding.problem.namespace.clone();
        let claims = pod
            .map(|p| pod_claims(p, &view.claims, |c| classes.contains(&c.to_string())))
            .unwrap_or_default();
        let stored_storage_fixes: Vec<Fix> = claims
            .iter()
            .flat_map(|c| index.lookup(&namespace, &c.name).iter().cloned())
            .collect();
        let situation = Situation {
            problem: &finding.problem,
            diagnosis: &finding.diagnosis,
            workload: finding.workload.as_ref(),
            container_limit: pod.and_then(|p| container_memory_limit(p, &container)),
            limit_range_max: view.memory_max.get(&namespace).cloned(),
            stored_fix: finding
                .workload
                .as_ref()
                .and_then(|w| stored_memory_fix(index, &w.namespace, &w.name, &container)),
            stored_storage_fixes: &stored_storage_fixes,
            last_termination: pod.and_then(|p| last_termination(p, &container)),
            claims: &claims,
            attempts: executor
                .limiter()
                .attempts(&execute::attempts_key(&finding)),
            now,
        };
        let namespace_opt_out = match namespace_opt_outs.get(&namespace) {
            Some(known) => known.clone(),
            None => {
                let read = namespace_opt_out(executor, &namespace).await;
                namespace_opt_outs.insert(namespace.clone(), read.clone());
                read
            }
        };
        let plan = if opted_out(&finding.labels) {
            Plan::Report {
                reason: format!("labelled {OPT_OUT_LABEL}=true: no automatic action"),
            }
        } else if let Some(reason) = namespace_opt_out {
            Plan::Report { reason }
        } else {
            plan::plan(&situation, rails)
        };
        let outcome = executor.carry_out(&finding, &plan, rails).await;
        handled.push(Handled {
            finding,
            plan,
            outcome,
        });
    }
    handled
}

fn opted_out(labels: &BTreeMap<String, String>) -> bool {
    labels.get(OPT_OUT_LABEL).is_some_and(|v| v == "true")
}

/// Why nothing may be done for a pod of `namespace` (one read of the Namespace, within the
/// executor's call timeout): the namespace is labelled `selfheal.io/ignore=true`, or its labels
/// cannot be read, so that an opted-out namespace can never make selfheal act, not even on a
/// dependency elsewhere. A namespace the API does not know has no labels.
async fn namespace_opt_out(executor: &Executor, namespace: &str) -> Option<String> {
    match executor.namespace_labels(namespace).await {
        Ok(labels) => opted_out(&labels).then(|| {
            format!("namespace {namespace} is labelled {OPT_OUT_LABEL}=true: no automatic action")
        }),
        Err(error) => Some(format!(
            "the labels of namespace {namespace} could not be read ({error:#}): no automatic action"
        )),
    }
}

/// The StorageClasses that allow volume expansion (none when they cannot be listed within
/// `CALL_TIMEOUT`: claims are then not expanded, only their fixes recorded).
async fn expandable_classes(client: &Client) -> Vec<String> {
    let api: Api<StorageClass> = Api::all(client.clone());
    match crate::heal::call::within(
        CALL_TIMEOUT,
        || "listing StorageClasses".into(),
        api.list(&ListParams::default()),
    )
    .await
    {
        Ok(Ok(list)) => list
            .items
            .into_iter()
            .filter(|c| c.allow_volume_expansion == Some(true))
            .filter_map(|c| c.metadata.name)
            .collect(),
        Ok(Err(error)) => {
            tracing::warn!(%error, "could not list StorageClasses; no claim is expanded this run");
            Vec::new()
        }
        Err(_) => {
            tracing::warn!(
                "listing StorageClasses took longer than {}s; no claim is expanded this run",
                CALL_TIMEOUT.as_secs()
            );
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::LimitRange;
    use serde_json::json;

    #[test]
    fn reads_limits_ranges_and_claims() {
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
            "metadata": {"name": "data-db-0", "namespace": "data"},
            "spec": {"storageClassName": "ssd", "resources": {"requests": {"storage": "10Gi"}}},
            "status": {"phase": "Bound"}
        }))
        .unwrap();
        let claims = pod_claims(&pod, std::slice::from_ref(&claim), |class| class == "ssd");
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].request.as_ref().unwrap().as_str(), "10Gi");
        assert!(claims[0].expandable);
        assert!(!pod_claims(&pod, &[claim], |_| false)[0].expandable);

        let ranges: Vec<LimitRange> = vec![
            serde_json::from_value(json!({
                "metadata": {"name": "limits"},
                "spec": {"limits": [
                    {"type": "Container", "max": {"memory": "4Gi", "cpu": "2"}},
                    {"type": "Pod", "max": {"memory": "1Gi"}}
                ]}
            }))
            .unwrap(),
        ];
        assert_eq!(
            crate::cluster::limits::memory_max(&ranges)
                .unwrap()
                .as_str(),
            "4Gi"
        );
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
}
