//! The re-apply matrix of issue 7, shared by `tests/reapply.rs` (test API server) and
//! `tests/e2e_cluster.rs` (a real cluster): for every kind selfheal raises, a manifest, the values
//! the webhook raises at CREATE, and the three ways a manifest is re-applied.

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};

use super::fake_apiserver::patches::{merge_key, three_way_patch};

pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
pub const IMAGE: &str = "registry.k8s.io/pause:3.10";
pub const NEW_IMAGE: &str = "registry.k8s.io/pause:3.9";

/// Every kind selfheal raises.
pub const KINDS: [&str; 7] = [
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "CronJob",
    "Job",
    "Pod",
    "PersistentVolumeClaim",
];

/// The fixes the matrix relies on, for `namespace`, as a fix document.
pub fn fixes_yaml(namespace: &str) -> String {
    let mut yaml = String::from("fixes:\n");
    for (resource, kind, extra, value) in [
        ("web", "memory", "", "512Mi"),
        ("db", "memory", "", "512Mi"),
        ("db", "storage", ", claim: data", "5Gi"),
        ("agent", "memory", "", "512Mi"),
        ("backup", "memory", "", "512Mi"),
        ("migrate", "memory", "", "512Mi"),
        ("debug", "memory", "", "512Mi"),
        ("uploads", "storage", "", "3Gi"),
    ] {
        yaml.push_str(&format!(
            "  - {{namespace: {namespace}, resource: {resource}, type: {kind}{extra}, value: {value}, timestamp: 2026-11-28T00:00:00Z, reason: re-apply matrix}}\n"
        ));
    }
    yaml
}

/// How the manifest is re-applied.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// A JSON merge patch carrying the manifest's values (Helm 3, `kubectl patch --type merge`).
    Merge,
    /// The three-way strategic merge patch `kubectl apply` computes (Argo CD, CI).
    KubectlApply,
    /// `kubectl apply --server-side --force-conflicts` (Flux, Argo CD with SSA).
    ServerSideApply,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Merge, Mode::KubectlApply, Mode::ServerSideApply];

    pub fn tag(self) -> &'static str {
        match self {
            Self::Merge => "merge",
            Self::KubectlApply => "kubectl-apply",
            Self::ServerSideApply => "server-side-apply",
        }
    }
}

/// One kind of the matrix.
pub struct Case {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub plural: &'static str,
    pub manifest: Value,
    /// (JSON pointer, raised value) the webhook sets at CREATE and every re-apply must keep.
    pub raised: Vec<(&'static str, &'static str)>,
    /// Where the pod template is (rollout check), for workloads.
    pub template: Option<&'static str>,
    /// Where the first container's image is, when the kind allows changing it on update.
    pub image: Option<&'static str>,
}

impl Case {
    pub fn name(&self) -> &str {
        self.manifest["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
    }

    pub fn api_resource(&self) -> ApiResource {
        let (group, version) = self
            .api_version
            .split_once('/')
            .unwrap_or(("", self.api_version));
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, self.kind),
            self.plural,
        )
    }

    /// `api/v1` or `apis/<group>/<version>`.
    pub fn prefix(&self) -> String {
        if self.api_version.contains('/') {
            format!("apis/{}", self.api_version)
        } else {
            format!("api/{}", self.api_version)
        }
    }
}

fn containers(memory: &str) -> Value {
    json!([{"name": "app", "image": IMAGE,
        "resources": {"requests": {"memory": "64Mi"}, "limits": {"memory": memory}}}])
}

fn pod_template(app: &str) -> Value {
    json!({"metadata": {"labels": {"app": app}}, "spec": {"containers": containers("128Mi")}})
}

pub fn claim_manifest(storage: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "uploads", "labels": {"app": "uploads"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}}})
}

const MEMORY: &str = "/spec/template/spec/containers/0/resources/limits/memory";
const TEMPLATE_IMAGE: &str = "/spec/template/spec/containers/0/image";

pub fn case(kind: &str) -> Case {
    match kind {
        "Deployment" => Case {
            kind: "Deployment",
            api_version: "apps/v1",
            plural: "deployments",
            manifest: json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": pod_template("web")}}),
            raised: vec![(MEMORY, "512Mi")],
            template: Some("/spec/template"),
            image: Some(TEMPLATE_IMAGE),
        },
        "StatefulSet" => Case {
            kind: "StatefulSet",
            api_version: "apps/v1",
            plural: "statefulsets",
            manifest: json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "labels": {"app": "db"}},
                "spec": {"serviceName": "db", "replicas": 1, "selector": {"matchLabels": {"app": "db"}}, "template": pod_template("db"),
                    "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}}}}]}}),
            raised: vec![
                (MEMORY, "512Mi"),
                (
                    "/spec/volumeClaimTemplates/0/spec/resources/requests/storage",
                    "5Gi",
                ),
            ],
            template: Some("/spec/template"),
            image: Some(TEMPLATE_IMAGE),
        },
        "DaemonSet" => Case {
            kind: "DaemonSet",
            api_version: "apps/v1",
            plural: "daemonsets",
            manifest: json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "labels": {"app": "agent"}},
                "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": pod_template("agent")}}),
            raised: vec![(MEMORY, "512Mi")],
            template: Some("/spec/template"),
            image: Some(TEMPLATE_IMAGE),
        },
        "CronJob" => Case {
            kind: "CronJob",
            api_version: "batch/v1",
            plural: "cronjobs",
            manifest: json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "backup", "labels": {"app": "backup"}},
                "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"metadata": {"labels": {"app": "backup"}},
                    "spec": {"restartPolicy": "OnFailure", "containers": containers("128Mi")}}}}}}),
            raised: vec![(
                "/spec/jobTemplate/spec/template/spec/containers/0/resources/limits/memory",
                "512Mi",
            )],
            template: Some("/spec/jobTemplate/spec/template"),
            image: Some("/spec/jobTemplate/spec/template/spec/containers/0/image"),
        },
        "Job" => Case {
            kind: "Job",
            api_version: "batch/v1",
            plural: "jobs",
            manifest: json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate", "labels": {"app": "migrate"}},
                "spec": {"backoffLimit": 2, "template": {"metadata": {"labels": {"app": "migrate"}},
                    "spec": {"restartPolicy": "Never", "containers": containers("128Mi")}}}}),
            raised: vec![(MEMORY, "512Mi")],
            template: Some("/spec/template"),
            image: None,
        },
        "Pod" => Case {
            kind: "Pod",
            api_version: "v1",
            plural: "pods",
            manifest: json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "debug", "labels": {"app": "debug"}},
                "spec": {"containers": containers("128Mi")}}),
            raised: vec![("/spec/containers/0/resources/limits/memory", "512Mi")],
            template: None,
            image: Some("/spec/containers/0/image"),
        },
        _ => Case {
            kind: "PersistentVolumeClaim",
            api_version: "v1",
            plural: "persistentvolumeclaims",
            manifest: claim_manifest("1Gi"),
            raised: vec![("/spec/resources/requests/storage", "3Gi")],
            template: None,
            image: None,
        },
    }
}

/// The manifest as `kubectl apply` sends it: with its own last-applied annotation.
pub fn with_last_applied(manifest: &Value) -> Value {
    let mut annotated = manifest.clone();
    annotated["metadata"]["annotations"][LAST_APPLIED] = json!(manifest.to_string());
    annotated
}

/// The original manifest with the user's harmless change for `mode`: a label, and a new image
/// where the kind allows one.
pub fn changed_manifest(case: &Case, mode: Mode) -> Value {
    let mut manifest = case.manifest.clone();
    manifest["metadata"]["labels"]["reapplied"] = json!(mode.tag());
    if let Some(slot) = case.image.and_then(|image| manifest.pointer_mut(image)) {
        *slot = json!(NEW_IMAGE);
    }
    manifest
}

/// Whether the values the webhook raises are in `object`.
pub fn check_raised(case: &Case, object: &Value, when: &str) -> Result<(), String> {
    for (pointer, value) in &case.raised {
        let found = object.pointer(pointer);
        if found != Some(&json!(value)) {
            return Err(format!(
                "{} {when}: {pointer} is {found:?}, expected {value}",
                case.kind
            ));
        }
    }
    Ok(())
}

/// Sends the re-apply of `manifest` over `live` the way `mode` does.
pub async fn reapply(
    api: &Api<DynamicObject>,
    mode: Mode,
    manifest: &Value,
    live: &Value,
) -> Result<DynamicObject, kube::Error> {
    let name = manifest["metadata"]["name"].as_str().unwrap_or_default();
    match mode {
        Mode::Merge => {
            api.patch(name, &PatchParams::default(), &Patch::Merge(manifest))
                .await
        }
        Mode::KubectlApply => {
            let original: Value = live["metadata"]["annotations"][LAST_APPLIED]
                .as_str()
                .and_then(|text| serde_json::from_str(text).ok())
                .unwrap_or(Value::Null);
            let patch = three_way_patch(&original, &with_last_applied(manifest), live);
            api.patch(name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
        }
        Mode::ServerSideApply => {
            api.patch(
                name,
                &PatchParams::apply("kubectl").force(),
                &Patch::Apply(manifest),
            )
            .await
        }
    }
}

/// The outcome issue 7 asks for after a re-apply: the user's change stored, the raised values
/// kept, and for workloads the pod template equal to the live one plus the user's change (no
/// second rollout).
pub fn check_outcome(case: &Case, mode: Mode, live: &Value, stored: &Value) -> Result<(), String> {
    let by = format!("re-applied by {}", mode.tag());
    if stored["metadata"]["labels"]["reapplied"] != mode.tag() {
        return Err(format!(
            "{} {by}: the user's label is not stored",
            case.kind
        ));
    }
    check_raised(case, stored, &by)?;
    if let Some(image) = case.image
        && stored.pointer(image) != Some(&json!(NEW_IMAGE))
    {
        return Err(format!("{} {by}: the new image is not stored", case.kind));
    }
    if let Some(template) = case.template {
        let mut expected = live.pointer(template).cloned().unwrap_or_default();
        if let Some(inner) = case.image.and_then(|image| image.strip_prefix(template))
            && let Some(slot) = expected.pointer_mut(inner)
        {
            *slot = json!(NEW_IMAGE);
        }
        if stored.pointer(template) != Some(&expected) {
            return Err(format!(
                "{} {by}: the pod template changed beyond the user's change (a second rollout): live {expected}, stored {}",
                case.kind,
                stored.pointer(template).cloned().unwrap_or_default()
            ));
        }
    }
    Ok(())
}

/// `manifest` with every `spec` field it lacks taken from `live` (what the apiserver added at
/// CREATE, such as a Pod's token volume), lists with a merge key matched by it. Metadata and
/// status are left alone: a resourceVersion copied from `live` would make the patch conflict
/// with any later status write.
pub fn completed_with(manifest: &Value, live: &Value) -> Value {
    let mut completed = manifest.clone();
    completed["spec"] = filled_from(&manifest["spec"], &live["spec"]);
    completed
}

fn filled_from(manifest: &Value, live: &Value) -> Value {
    let mut completed = manifest.clone();
    if let (Some(fields), Some(source)) = (completed.as_object_mut(), live.as_object()) {
        for (key, value) in source {
            match fields.get_mut(key) {
                None => {
                    fields.insert(key.clone(), value.clone());
                }
                Some(mine @ Value::Object(_)) => *mine = filled_from(mine, value),
                Some(Value::Array(items)) => {
                    if let (Some(merge_key), Some(theirs)) = (merge_key(key), value.as_array()) {
                        for item in items.iter_mut() {
                            if let Some(match_) =
                                theirs.iter().find(|t| t[merge_key] == item[merge_key])
                            {
                                *item = filled_from(item, match_);
                            }
                        }
                    }
                }
                Some(_) => {}
            }
        }
    }
    completed
}

/// Whether two refusals are the same: status code, reason and the message's first line (a real
/// apiserver appends a diff that names per-object details such as the token volume's random
/// suffix).
pub fn same_refusal(a: &kube::Error, b: &kube::Error) -> bool {
    match (a, b) {
        (kube::Error::Api(a), kube::Error::Api(b)) => {
            a.code == b.code
                && a.reason == b.reason
                && a.message.lines().next() == b.message.lines().next()
        }
        _ => false,
    }
}
