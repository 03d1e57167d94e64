//! The component behind a pod: its owning workload, found through the owner chain
//! (Pod → ReplicaSet → Deployment, Pod → Job → CronJob), and its `app.kubernetes.io/*` labels.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ObjectMeta;
use serde::Serialize;

/// A workload that owns pods.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Workload {
    /// `Deployment`, `StatefulSet`, `DaemonSet`, `ReplicaSet`, `Job` or `CronJob`.
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl Workload {
    /// Whether a rollout restart (a pod template change) makes its controller replace its pods.
    pub fn restartable(&self) -> bool {
        matches!(
            self.kind.as_str(),
            "Deployment" | "StatefulSet" | "DaemonSet"
        )
    }
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// Kind and name of the controller of an object (the owner with `controller: true`).
pub fn controller_of(meta: &ObjectMeta) -> Option<(String, String)> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|owner| owner.controller == Some(true))
        .map(|owner| (owner.kind.clone(), owner.name.clone()))
}

/// The workload owning `pod`, or `None` for a bare pod.
///
/// `owner_of(kind, name)` answers the controller of an intermediate owner (a ReplicaSet or a Job)
/// from a cache. When the cache does not know it, the naming conventions of the built-in
/// controllers are used (`<deployment>-<pod-template-hash>`, `<cronjob>-<minutes>`).
pub fn owning_workload(
    pod: &Pod,
    owner_of: impl Fn(&str, &str) -> Option<(String, String)>,
) -> Option<Workload> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let (kind, name) = controller_of(&pod.metadata)?;
    let (kind, name) = match kind.as_str() {
        "ReplicaSet" => owner_of("ReplicaSet", &name)
            .or_else(|| {
                let hash = pod.metadata.labels.as_ref()?.get("pod-template-hash")?;
                let deployment = name.strip_suffix(hash.as_str())?.strip_suffix('-')?;
                Some(("Deployment".to_string(), deployment.to_string()))
            })
            .unwrap_or((kind, name)),
        "Job" => owner_of("Job", &name).unwrap_or((kind, name)),
        _ => (kind, name),
    };
    Some(Workload {
        kind,
        namespace,
        name,
    })
}

/// Whether a `heal` component argument names this pod's component: its namespace, its workload,
/// or its `app.kubernetes.io/name` / `app.kubernetes.io/instance` / `app` label.
pub fn matches_component(
    component: &str,
    namespace: &str,
    workload: Option<&Workload>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    if component == namespace || workload.is_some_and(|w| w.name == component) {
        return true;
    }
    labels.is_some_and(|labels| {
        [
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app",
        ]
        .iter()
        .any(|key| labels.get(*key).is_some_and(|value| value == component))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(owner_kind: &str, owner_name: &str, labels: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {
            "name": "p", "namespace": "gitlab", "labels": labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner_kind, "name": owner_name, "uid": "u", "controller": true}]
        }}))
        .unwrap()
    }

    #[test]
    fn replicaset_resolves_through_the_cache_or_the_hash() {
        let p = pod(
            "ReplicaSet",
            "web-7d9f8c6b5",
            json!({"pod-template-hash": "7d9f8c6b5"}),
        );
        let cached = owning_workload(&p, |_, _| {
            Some(("Deployment".into(), "web-from-cache".into()))
        })
        .unwrap();
        assert_eq!(cached.name, "web-from-cache");
        let guessed = owning_workload(&p, |_, _| None).unwrap();
        assert_eq!(
            (guessed.kind.as_str(), guessed.name.as_str()),
            ("Deployment", "web")
        );
        assert!(guessed.restartable());
    }

    #[test]
    fn statefulset_job_and_bare_pods() {
        let sts = owning_workload(&pod("StatefulSet", "db", json!({})), |_, _| None).unwrap();
        assert_eq!(sts.to_string(), "StatefulSet/gitlab/db");
        let job = owning_workload(&pod("Job", "backup-29012345", json!({})), |kind, name| {
            (kind == "Job" && name == "backup-29012345")
                .then(|| ("CronJob".into(), "backup".into()))
        })
        .unwrap();
        assert_eq!(job.kind, "CronJob");
        assert!(!job.restartable());
        let bare: Pod =
            serde_json::from_value(json!({"metadata": {"name": "debug", "namespace": "x"}}))
                .unwrap();
        assert!(owning_workload(&bare, |_, _| None).is_none());
    }

    #[test]
    fn components_match_by_namespace_workload_or_label() {
        let workload = Workload {
            kind: "Deployment".into(),
            namespace: "gitlab".into(),
            name: "web".into(),
        };
        let labels = BTreeMap::from([(
            "app.kubernetes.io/name".to_string(),
            "webservice".to_string(),
        )]);
        assert!(matches_component("gitlab", "gitlab", Some(&workload), None));
        assert!(matches_component("web", "other", Some(&workload), None));
        assert!(matches_component(
            "webservice",
            "other",
            None,
            Some(&labels)
        ));
        assert!(!matches_component(
            "redis",
            "gitlab",
            Some(&workload),
            Some(&labels)
        ));
    }
}
