//! The re-apply matrix (issue 7): for every kind selfheal raises, the manifest is CREATEd through
//! selfheal's real webhook with a fix stored (the raise happens), then the ORIGINAL manifest is
//! re-applied with a harmless change (a label; an image where the kind allows one) the three ways
//! GitOps tools and CI re-apply:
//!
//! - `merge`: a JSON merge patch carrying the manifest's values (Helm 3, `kubectl patch --type merge`);
//! - `kubectl_apply`: the three-way strategic merge patch `kubectl apply` computes from its
//!   last-applied annotation, the manifest and the live object (Argo CD, Flux's kubectl mode);
//! - `server_side_apply`: `kubectl apply --server-side --force-conflicts` (Flux, Argo CD SSA).
//!
//! Every request must be accepted by the test API server (which refuses what the real apiserver
//! refuses), the raised value must be kept, and for workloads the pod template must be the live
//! one plus the user's change only (no second rollout).

mod support;

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};

use selfheal::core::document::FixDocument;
use support::fake_apiserver::patches::three_way_patch;
use support::fake_apiserver::{Collection, FakeApiServer};

const NS: &str = "shop";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

const FIXES: &str = "fixes:
  - {namespace: shop, resource: web, type: memory, value: 512Mi, timestamp: 2026-11-28T00:00:00Z}
  - {namespace: shop, resource: db, type: memory, value: 512Mi, timestamp: 2026-11-28T00:00:00Z}
  - {namespace: shop, resource: db, type: storage, claim: data, value: 5Gi, timestamp: 2026-11-28T00:00:00Z}
  - {namespace: shop, resource: agent, type: memory, value: 512Mi, timestamp: 2026-11-28T00:00:00Z}
  - {namespace: shop, resource: backup, type: memory, value: 512Mi, timestamp: 2026-11-28T00:00:00Z}
  - {namespace: shop, resource: migrate, type: memory, value: 512Mi, timestamp: 2026-11-28T00:00:00Z}
  - {namespace: shop, resource: debug, type: memory, value: 512Mi, timestamp: 2026-11-28T00:00:00Z}
  - {namespace: shop, resource: uploads, type: storage, value: 3Gi, timestamp: 2026-11-28T00:00:00Z}
";

/// How the manifest is re-applied.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Merge,
    KubectlApply,
    ServerSideApply,
}

impl Mode {
    fn tag(self) -> &'static str {
        match self {
            Self::Merge => "merge",
            Self::KubectlApply => "kubectl-apply",
            Self::ServerSideApply => "server-side-apply",
        }
    }
}

/// One kind of the matrix.
struct Case {
    gvk: (&'static str, &'static str, &'static str),
    plural: &'static str,
    manifest: Value,
    /// (JSON pointer, raised value) the webhook sets at CREATE and every re-apply must keep.
    raised: Vec<(&'static str, &'static str)>,
    /// Where the pod template is (rollout check), for workloads.
    template: Option<&'static str>,
    /// Where the first container's image is, when the kind allows changing it on update.
    image: Option<&'static str>,
    /// Claims are bound by the PV controller after creation (expansion needs a bound claim).
    bind: bool,
}

fn containers(memory: &str) -> Value {
    json!([{"name": "app", "image": "app:1", "resources": {"requests": {"memory": "64Mi"}, "limits": {"memory": memory}}}])
}

fn pod_template(app: &str) -> Value {
    json!({"metadata": {"labels": {"app": app}}, "spec": {"containers": containers("128Mi")}})
}

fn case(kind: &str) -> Case {
    match kind {
        "Deployment" => Case {
            gvk: ("apps", "v1", "Deployment"),
            plural: "deployments",
            manifest: json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": pod_template("web")}}),
            raised: vec![(
                "/spec/template/spec/containers/0/resources/limits/memory",
                "512Mi",
            )],
            template: Some("/spec/template"),
            image: Some("/spec/template/spec/containers/0/image"),
            bind: false,
        },
        "StatefulSet" => Case {
            gvk: ("apps", "v1", "StatefulSet"),
            plural: "statefulsets",
            manifest: json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "labels": {"app": "db"}},
                "spec": {"serviceName": "db", "replicas": 1, "selector": {"matchLabels": {"app": "db"}}, "template": pod_template("db"),
                    "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}}}}]}}),
            raised: vec![
                (
                    "/spec/template/spec/containers/0/resources/limits/memory",
                    "512Mi",
                ),
                (
                    "/spec/volumeClaimTemplates/0/spec/resources/requests/storage",
                    "5Gi",
                ),
            ],
            template: Some("/spec/template"),
            image: Some("/spec/template/spec/containers/0/image"),
            bind: false,
        },
        "DaemonSet" => Case {
            gvk: ("apps", "v1", "DaemonSet"),
            plural: "daemonsets",
            manifest: json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "labels": {"app": "agent"}},
                "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": pod_template("agent")}}),
            raised: vec![(
                "/spec/template/spec/containers/0/resources/limits/memory",
                "512Mi",
            )],
            template: Some("/spec/template"),
            image: Some("/spec/template/spec/containers/0/image"),
            bind: false,
        },
        "CronJob" => Case {
            gvk: ("batch", "v1", "CronJob"),
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
            bind: false,
        },
        "Job" => Case {
            gvk: ("batch", "v1", "Job"),
            plural: "jobs",
            manifest: json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate", "labels": {"app": "migrate"}},
                "spec": {"backoffLimit": 2, "template": {"metadata": {"labels": {"app": "migrate"}},
                    "spec": {"restartPolicy": "Never", "containers": containers("128Mi")}}}}),
            raised: vec![(
                "/spec/template/spec/containers/0/resources/limits/memory",
                "512Mi",
            )],
            template: Some("/spec/template"),
            image: None,
            bind: false,
        },
        "Pod" => Case {
            gvk: ("", "v1", "Pod"),
            plural: "pods",
            manifest: json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "debug", "labels": {"app": "debug"}},
                "spec": {"containers": containers("128Mi")}}),
            raised: vec![("/spec/containers/0/resources/limits/memory", "512Mi")],
            template: None,
            image: Some("/spec/containers/0/image"),
            bind: false,
        },
        "PersistentVolumeClaim" => Case {
            gvk: ("", "v1", "PersistentVolumeClaim"),
            plural: "persistentvolumeclaims",
            manifest: claim_manifest("1Gi"),
            raised: vec![("/spec/resources/requests/storage", "3Gi")],
            template: None,
            image: None,
            bind: true,
        },
        other => panic!("no case for {other}"),
    }
}

fn claim_manifest(storage: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "uploads", "labels": {"app": "uploads"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard", "resources": {"requests": {"storage": storage}}}})
}

/// A test API server with selfheal's webhook installed and the matrix's fixes stored.
fn cluster() -> FakeApiServer {
    let server = FakeApiServer::new();
    let document = FixDocument::parse(FIXES).expect("valid fixes");
    support::install_webhook(&server, support::state_with_document(&document));
    server
}

fn api_for(server: &FakeApiServer, case: &Case) -> Api<DynamicObject> {
    let (group, version, kind) = case.gvk;
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind),
        case.plural,
    );
    Api::namespaced_with(server.client(), NS, &resource)
}

fn collection_for(case: &Case) -> Collection {
    let prefix = match case.gvk {
        ("", version, _) => format!("api/{version}"),
        (group, version, _) => format!("apis/{group}/{version}"),
    };
    Collection::new(&prefix, NS, case.plural)
}

/// The manifest as `kubectl apply` sends it: with its own last-applied annotation.
fn with_last_applied(manifest: &Value) -> Value {
    let mut annotated = manifest.clone();
    annotated["metadata"]["annotations"][LAST_APPLIED] = json!(manifest.to_string());
    annotated
}

/// The manifest with the user's harmless change for `mode`.
fn changed_manifest(case: &Case, mode: Mode) -> Value {
    let mut manifest = case.manifest.clone();
    manifest["metadata"]["labels"]["reapplied"] = json!(mode.tag());
    if let Some(image) = case.image
        && let Some(slot) = manifest.pointer_mut(image)
    {
        *slot = json!(format!("app:{}", mode.tag()));
    }
    manifest
}

async fn create(server: &FakeApiServer, case: &Case) -> Value {
    let api = api_for(server, case);
    let object: DynamicObject =
        serde_json::from_value(with_last_applied(&case.manifest)).expect("object");
    api.create(&PostParams::default(), &object)
        .await
        .expect("CREATE accepted");
    let collection = collection_for(case);
    let name = case.manifest["metadata"]["name"].as_str().expect("name");
    let mut created = server.get(&collection, name).expect("stored");
    for (pointer, value) in &case.raised {
        assert_eq!(
            created.pointer(pointer),
            Some(&json!(value)),
            "CREATE raised {pointer}"
        );
    }
    if case.bind {
        created["status"] = json!({"phase": "Bound", "capacity": {"storage": created["spec"]["resources"]["requests"]["storage"]}});
        created = server.put(&collection, created);
    }
    created
}

/// Sends the re-apply of `manifest` over `live` the way `mode` does.
async fn reapply(
    server: &FakeApiServer,
    case: &Case,
    mode: Mode,
    manifest: &Value,
    live: &Value,
) -> Result<DynamicObject, kube::Error> {
    let api = api_for(server, case);
    let name = manifest["metadata"]["name"].as_str().expect("name");
    match mode {
        Mode::Merge => {
            api.patch(name, &PatchParams::default(), &Patch::Merge(manifest))
                .await
        }
        Mode::KubectlApply => {
            let original: Value = live["metadata"]["annotations"][LAST_APPLIED]
                .as_str()
                .map(|text| serde_json::from_str(text).expect("last-applied is JSON"))
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

async fn matrix(kind: &str, mode: Mode) {
    let server = cluster();
    let case = case(kind);
    let live = create(&server, &case).await;
    let manifest = changed_manifest(&case, mode);
    let result = reapply(&server, &case, mode, &manifest, &live).await;
    if let Err(error) = &result {
        panic!("{kind} re-applied by {}: refused: {error}", mode.tag());
    }
    let name = case.manifest["metadata"]["name"].as_str().expect("name");
    let stored = server
        .get(&collection_for(&case), name)
        .expect("still there");
    assert_eq!(
        stored["metadata"]["labels"]["reapplied"],
        mode.tag(),
        "{kind}: the user's change is stored"
    );
    for (pointer, value) in &case.raised {
        assert_eq!(
            stored.pointer(pointer),
            Some(&json!(value)),
            "{kind} by {}: the raised {pointer} is kept",
            mode.tag()
        );
    }
    if let Some(image) = case.image {
        assert_eq!(
            stored.pointer(image),
            Some(&json!(format!("app:{}", mode.tag()))),
            "{kind}: the new image is stored"
        );
    }
    if let Some(template) = case.template {
        let mut expected = live.pointer(template).cloned().expect("template");
        if let Some(image) = case.image {
            let inner = image
                .strip_prefix(template)
                .expect("image inside the template");
            *expected.pointer_mut(inner).expect("image") = json!(format!("app:{}", mode.tag()));
        }
        assert_eq!(
            stored.pointer(template),
            Some(&expected),
            "{kind} by {}: the pod template is the live one plus the user's change (no second rollout)",
            mode.tag()
        );
    }
}

macro_rules! matrix_tests {
    ($($test:ident: $kind:literal, $mode:ident;)*) => {$(
        #[tokio::test]
        async fn $test() {
            matrix($kind, Mode::$mode).await;
        }
    )*};
}

matrix_tests! {
    deployment_merge_patch: "Deployment", Merge;
    deployment_kubectl_apply: "Deployment", KubectlApply;
    deployment_server_side_apply: "Deployment", ServerSideApply;
    statefulset_merge_patch: "StatefulSet", Merge;
    statefulset_kubectl_apply: "StatefulSet", KubectlApply;
    statefulset_server_side_apply: "StatefulSet", ServerSideApply;
    daemonset_merge_patch: "DaemonSet", Merge;
    daemonset_kubectl_apply: "DaemonSet", KubectlApply;
    daemonset_server_side_apply: "DaemonSet", ServerSideApply;
    cronjob_merge_patch: "CronJob", Merge;
    cronjob_kubectl_apply: "CronJob", KubectlApply;
    cronjob_server_side_apply: "CronJob", ServerSideApply;
    job_merge_patch: "Job", Merge;
    job_kubectl_apply: "Job", KubectlApply;
    job_server_side_apply: "Job", ServerSideApply;
    pod_merge_patch: "Pod", Merge;
    pod_kubectl_apply: "Pod", KubectlApply;
    pod_server_side_apply: "Pod", ServerSideApply;
    claim_merge_patch: "PersistentVolumeClaim", Merge;
    claim_kubectl_apply: "PersistentVolumeClaim", KubectlApply;
    claim_server_side_apply: "PersistentVolumeClaim", ServerSideApply;
}

/// A deliberate expansion by the user (3Gi → 10Gi, above the fix) passes through unchanged.
#[tokio::test]
async fn a_users_claim_expansion_passes_through() {
    let server = cluster();
    let case = case("PersistentVolumeClaim");
    let live = create(&server, &case).await;
    let expanded = claim_manifest("10Gi");
    reapply(&server, &case, Mode::KubectlApply, &expanded, &live)
        .await
        .expect("the expansion is accepted");
    let stored = server
        .get(&collection_for(&case), "uploads")
        .expect("claim");
    assert_eq!(stored["spec"]["resources"]["requests"]["storage"], "10Gi");
}
