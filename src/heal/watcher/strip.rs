//! What the watcher keeps of the objects it watches: all that detection and decisions read,
//! nothing else, so its stores stay small with the cluster (every pod of a large cluster is
//! kept). Applied to each object as it arrives, before any store or the index sees it.
//!
//! Dropped everywhere: `managedFields` and kubectl's `last-applied-configuration` (a copy of
//! the object, a Secret's data included). Of a pod, also: its annotations, every container's
//! environment, command, arguments, ports, probes, lifecycle hooks, mounts and security
//! context, the volumes that are not claims, affinity, tolerations and spread constraints, and
//! the pod IPs. Of a namespace: everything but its name, uid and labels. Of a TLS Secret: every
//! data key but `tls.crt` and `tls.key`.

use k8s_openapi::api::core::v1::{
    Container, Namespace, PersistentVolumeClaim, Pod, Secret, Volume,
};
use kube::api::ObjectMeta;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn metadata(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

fn container(container: &mut Container) {
    container.env = None;
    container.env_from = None;
    container.command = None;
    container.args = None;
    container.ports = None;
    container.liveness_probe = None;
    container.readiness_probe = None;
    container.startup_probe = None;
    container.lifecycle = None;
    container.volume_mounts = None;
    container.volume_devices = None;
    container.security_context = None;
}

/// A pod as detection (its status, restart policies, scheduling gates), the owner chain (labels,
/// owner references), the memory rule (container limits and requests), a full volume's claim
/// and the node rail (`nodeSelector`) read it.
pub fn pod(pod: &mut Pod) {
    metadata(&mut pod.metadata);
    pod.metadata.annotations = None;
    if let Some(spec) = pod.spec.as_mut() {
        spec.containers.iter_mut().for_each(container);
        spec.init_containers
            .iter_mut()
            .flatten()
            .for_each(container);
        spec.ephemeral_containers = None;
        if let Some(volumes) = spec.volumes.as_mut() {
            volumes.retain(|v| v.persistent_volume_claim.is_some());
            for volume in volumes.iter_mut() {
                *volume = Volume {
                    name: std::mem::take(&mut volume.name),
                    persistent_volume_claim: volume.persistent_volume_claim.take(),
                    ..Volume::default()
                };
            }
        }
        spec.affinity = None;
        spec.tolerations = None;
        spec.topology_spread_constraints = None;
        spec.security_context = None;
        spec.image_pull_secrets = None;
        spec.host_aliases = None;
        spec.dns_config = None;
        spec.readiness_gates = None;
    }
    if let Some(status) = pod.status.as_mut() {
        status.pod_ips = None;
        status.host_ips = None;
    }
}

/// A workload (Deployment, StatefulSet, DaemonSet, CronJob) as a raise or a restart reads and
/// patches it: everything but its managed fields and kubectl's copy of it. Its annotations stay
/// (an empty map stays a map), so a patch adding one never replaces the others.
pub fn workload<K: kube::Resource>(workload: &mut K) {
    metadata(workload.meta_mut());
}

pub fn claim(claim: &mut PersistentVolumeClaim) {
    metadata(&mut claim.metadata);
}

/// A namespace as targeting reads it: its labels.
pub fn namespace(namespace: &mut Namespace) {
    namespace.metadata = ObjectMeta {
        name: namespace.metadata.name.take(),
        uid: namespace.metadata.uid.take(),
        resource_version: namespace.metadata.resource_version.take(),
        labels: namespace.metadata.labels.take(),
        ..ObjectMeta::default()
    };
    namespace.spec = None;
    namespace.status = None;
}

/// A TLS Secret as the certificate check reads it: its certificate and key.
pub fn secret(secret: &mut Secret) {
    metadata(&mut secret.metadata);
    if let Some(data) = secret.data.as_mut() {
        data.retain(|key, _| key == "tls.crt" || key == "tls.key");
    }
    secret.string_data = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heal::detect::{Thresholds, pod_problems};
    use crate::heal::facts::{container_memory_limit, pod_claims};
    use serde_json::json;

    /// A pod as a real cluster shows it: environments, probes, mounts, config volumes.
    fn busy_pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-5d4c3b2a1-a", "namespace": "shop", "uid": "u",
                "labels": {"app": "web", "pod-template-hash": "5d4c3b2a1"},
                "annotations": {"prometheus.io/scrape": "true", LAST_APPLIED: "{...}"},
                "managedFields": [{"manager": "kubelet"}],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d4c3b2a1", "uid": "rs", "controller": true}]},
            "spec": {
                "restartPolicy": "Always",
                "nodeSelector": {"pool": "big"},
                "initContainers": [{"name": "init", "image": "init:1", "restartPolicy": "Always",
                    "env": [{"name": "A", "value": "1"}]}],
                "containers": [{"name": "app", "image": "web:1",
                    "env": [{"name": "TOKEN", "value": "secret"}], "command": ["/web"],
                    "readinessProbe": {"httpGet": {"path": "/", "port": 80}},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    "resources": {"limits": {"memory": "512Mi"}, "requests": {"memory": "256Mi"}}}],
                "volumes": [{"name": "config", "configMap": {"name": "web"}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data-web"}}],
                "affinity": {"nodeAffinity": {}}, "tolerations": [{"key": "k", "operator": "Exists"}]},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn a_stripped_pod_reads_the_same_to_detection_and_decisions() {
        let statuses = [
            json!({"phase": "Running", "containerStatuses": [{"name": "app", "ready": false,
                "restartCount": 3, "image": "web:1", "imageID": "",
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}],
                "podIPs": [{"ip": "10.0.0.1"}]}),
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True",
                "lastTransitionTime": "2026-11-28T11:00:00Z"}]}),
        ];
        let now = "2026-11-28T12:00:00Z".parse().unwrap();
        for status in statuses {
            let original = busy_pod(status);
            let mut stripped = original.clone();
            pod(&mut stripped);
            let thresholds = Thresholds::default();
            assert_eq!(
                pod_problems(&stripped, now, &thresholds),
                pod_problems(&original, now, &thresholds)
            );
            assert_eq!(
                container_memory_limit(&stripped, "app"),
                container_memory_limit(&original, "app")
            );
            let claims = |p: &Pod| {
                pod_claims(p, [], &Default::default())
                    .into_iter()
                    .map(|c| c.name)
                    .collect::<Vec<_>>()
            };
            assert_eq!(claims(&stripped), ["data-web"]);
            assert_eq!(
                crate::core::owners::owning_workload(&stripped, |_, _| None),
                crate::core::owners::owning_workload(&original, |_, _| None)
            );
            let spec = stripped.spec.as_ref().unwrap();
            assert_eq!(
                spec.node_selector,
                original.spec.as_ref().unwrap().node_selector
            );
            assert!(
                spec.containers[0].env.is_none() && spec.containers[0].readiness_probe.is_none()
            );
            assert_eq!(spec.volumes.as_ref().unwrap().len(), 1);
            assert!(stripped.metadata.managed_fields.is_none());
            assert!(stripped.metadata.annotations.is_none());
        }
    }

    #[test]
    fn a_secret_keeps_its_certificate_and_key_and_a_namespace_its_labels() {
        let mut tls: Secret = serde_json::from_value(json!({
            "metadata": {"name": "t", "annotations": {LAST_APPLIED: "{\"data\":...}",
                "cert-manager.io/certificate-name": "shop"}},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": "Y3J0", "tls.key": "a2V5", "ca.crt": "Y2E="}}))
        .unwrap();
        secret(&mut tls);
        let keys: Vec<&String> = tls.data.as_ref().unwrap().keys().collect();
        assert_eq!(keys, ["tls.crt", "tls.key"]);
        let annotations = tls.metadata.annotations.unwrap();
        assert!(!annotations.contains_key(LAST_APPLIED));
        assert_eq!(annotations["cert-manager.io/certificate-name"], "shop");

        let mut shop: Namespace = serde_json::from_value(json!({
            "metadata": {"name": "shop", "labels": {"selfheal.io/ignore": "true"},
                "annotations": {"a": "b"}, "managedFields": [{"manager": "kubectl"}]},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}))
        .unwrap();
        namespace(&mut shop);
        assert_eq!(shop.metadata.labels.unwrap()["selfheal.io/ignore"], "true");
        assert!(shop.metadata.annotations.is_none() && shop.spec.is_none());
        // A workload keeps its annotations as a map, kubectl's copy of it gone: a patch that
        // adds the applied-fixes note adds one key, it never replaces the map.
        let mut web: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web", "annotations": {LAST_APPLIED: "{...}"},
                "managedFields": [{"manager": "kubectl"}]}}))
        .unwrap();
        workload(&mut web);
        assert_eq!(web.metadata.annotations, Some(Default::default()));
        assert!(web.metadata.managed_fields.is_none());
    }
}
