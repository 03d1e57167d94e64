//! The test API server refuses what the real kube-apiserver refuses, and accepts what it accepts,
//! for everything selfheal touches: one test per rule, driven through a kube `Client` as selfheal
//! and kubectl talk to a real apiserver.

use crate::support;

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{
    Api, ApiResource, DynamicObject, EvictParams, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::core::GroupVersionKind;
use kube::runtime::watcher;
use serde_json::{Value, json};

use selfheal::core::document::FixDocument;
use support::fake_apiserver::{Collection, FakeApiServer};

const NS: &str = "shop";

fn api(
    server: &FakeApiServer,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    Api::namespaced_with(server.client(), NS, &resource)
}

fn object(value: Value) -> DynamicObject {
    serde_json::from_value(value).expect("object")
}

fn json_of(object: &DynamicObject) -> Value {
    serde_json::to_value(object).expect("json")
}

/// The Status a refused request answered with.
fn refusal<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected the apiserver to refuse, got {other:?}"),
    }
}

fn statefulset() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"serviceName": "db", "replicas": 1,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [
                {"name": "db", "image": "postgres:16", "resources": {"limits": {"memory": "256Mi"}}}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}})
}

fn job() -> Value {
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "migrate", "image": "app:1", "resources": {"limits": {"memory": "128Mi"}}}]}}}})
}

fn claim(storage: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}}})
}

fn pod(memory: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "app:1",
            "resources": {"limits": {"memory": memory}}}],
            "tolerations": [{"key": "a", "operator": "Exists"}]}})
}

fn merge(value: Value) -> Patch<Value> {
    Patch::Merge(value)
}

// --- admission ---

#[tokio::test]
async fn the_admission_hook_gets_the_old_object_on_update_and_set_admission_still_works() {
    let server = FakeApiServer::new();
    /// (operation, the old object's data) per admission call.
    type Calls = Arc<Mutex<Vec<(String, Option<Value>)>>>;
    let seen: Calls = Arc::default();
    let record = seen.clone();
    server.set_admission_with_old(Arc::new(
        move |_: &Collection, operation: &str, old: Option<&Value>, new: &mut Value| {
            record
                .lock()
                .unwrap()
                .push((operation.to_string(), old.map(|o| o["data"].clone())));
            new["metadata"]["labels"]["admitted"] = json!("yes");
        },
    ));
    let maps: Api<ConfigMap> = Api::namespaced(server.client(), NS);
    let created = maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"v": "1"}}))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(created.metadata.labels.unwrap()["admitted"], "yes");
    maps.patch(
        "c",
        &PatchParams::default(),
        &merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            ("CREATE".to_string(), None),
            ("UPDATE".to_string(), Some(json!({"v": "1"})))
        ]
    );

    // The original hook type keeps working.
    server.set_admission(Arc::new(|_: &Collection, _: &str, new: &mut Value| {
        new["metadata"]["labels"]["legacy"] = json!("hook");
    }));
    let patched = maps
        .patch(
            "c",
            &PatchParams::default(),
            &merge(json!({"data": {"v": "3"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["legacy"], "hook");
}

#[tokio::test]
async fn selfheals_webhook_is_called_with_admission_reviews_and_its_patch_applied() {
    let server = FakeApiServer::new();
    let document = FixDocument::parse(&format!(
        "fixes:\n  - namespace: {NS}\n    resource: db\n    type: memory\n    value: 512Mi\n    timestamp: 2026-11-28T00:00:00Z\n"
    ))
    .unwrap();
    support::install_webhook(&server, support::state_with_document(&document));
    let sets = api(&server, "apps", "v1", "StatefulSet", "statefulsets");

    let preview = sets
        .create(
            &PostParams {
                dry_run: true,
                ..PostParams::default()
            },
            &object(statefulset()),
        )
        .await
        .unwrap();
    assert_eq!(
        json_of(&preview)["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "512Mi"
    );
    assert!(
        server
            .get(&Collection::apps(NS, "statefulsets"), "db")
            .is_none(),
        "a dry run stores nothing"
    );

    sets.create(&PostParams::default(), &object(statefulset()))
        .await
        .unwrap();
    let stored = server
        .get(&Collection::apps(NS, "statefulsets"), "db")
        .unwrap();
    assert_eq!(
        stored["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "512Mi"
    );
    assert!(stored["metadata"]["annotations"]["selfheal.io/applied-fixes"].is_string());
}

/// A webhook backend that records every AdmissionReview it receives and answers with
/// `inner` (selfheal's real webhook, or a test's).
fn recording_backend(inner: axum::Router) -> (axum::Router, Arc<Mutex<Vec<Value>>>) {
    use tower::ServiceExt;
    let reviews: Arc<Mutex<Vec<Value>>> = Arc::default();
    let record = reviews.clone();
    let router = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let record = record.clone();
        let inner = inner.clone();
        async move {
            let (parts, body) = request.into_parts();
            let bytes = axum::body::to_bytes(body, 1 << 24)
                .await
                .unwrap_or_default();
            if let Ok(review) = serde_json::from_slice::<Value>(&bytes) {
                record.lock().unwrap().push(review);
            }
            let request = axum::http::Request::from_parts(parts, axum::body::Body::from(bytes));
            inner.oneshot(request).await.unwrap()
        }
    });
    (router, reviews)
}

fn selfheal_state(resource: &str, value: &str) -> selfheal::webhook::AppState {
    support::state_with_document(
        &FixDocument::parse(&format!(
            "fixes:\n  - namespace: {NS}\n    resource: {resource}\n    type: memory\n    value: {value}\n    timestamp: 2026-11-28T00:00:00Z\n"
        ))
        .unwrap(),
    )
}

#[tokio::test]
async fn the_reviews_the_webhook_gets_are_the_apiservers() {
    let server = FakeApiServer::new();
    let (backend, reviews) =
        recording_backend(selfheal::webhook::router(selfheal_state("db", "512Mi")));
    support::install_manifest_webhook_routed(&server, backend);
    let ci = support::fake_apiserver::UserInfo::service_account("ci", "deployer");
    let sets: Api<DynamicObject> = Api::namespaced_with(
        server.client_as(&ci),
        NS,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apps", "v1", "StatefulSet"),
            "statefulsets",
        ),
    );
    sets.create(
        &PostParams {
            field_manager: Some("ci".into()),
            ..PostParams::default()
        },
        &object(statefulset()),
    )
    .await
    .unwrap();
    let stored = server
        .get(&Collection::apps(NS, "statefulsets"), "db")
        .unwrap();
    sets.patch(
        "db",
        &PatchParams {
            dry_run: true,
            ..PatchParams::default()
        },
        &merge(json!({"spec": {"replicas": 2}})),
    )
    .await
    .unwrap();
    let mut made = pod("256Mi");
    made["metadata"] = json!({"generateName": "web-"});
    api(&server, "", "v1", "Pod", "pods")
        .create(&PostParams::default(), &object(made))
        .await
        .unwrap();
    // Not matched by the manifest's rules: ConfigMaps; nor its objectSelector.
    let maps: Api<ConfigMap> = Api::namespaced(server.client(), NS);
    maps.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap(),
    )
    .await
    .unwrap();

    let reviews = reviews.lock().unwrap().clone();
    assert_eq!(reviews.len(), 3, "the StatefulSet twice and the Pod");
    let create = &reviews[0]["request"];
    assert_eq!(reviews[0]["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(
        (
            create["operation"].as_str(),
            create["name"].as_str(),
            create["namespace"].as_str()
        ),
        (Some("CREATE"), Some("db"), Some(NS))
    );
    assert_eq!(
        create["kind"],
        json!({"group": "apps", "version": "v1", "kind": "StatefulSet"})
    );
    assert_eq!(
        create["resource"],
        json!({"group": "apps", "version": "v1", "resource": "statefulsets"})
    );
    assert_eq!(
        create["userInfo"]["username"],
        "system:serviceaccount:ci:deployer"
    );
    assert_eq!(
        create["options"],
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions", "fieldManager": "ci"})
    );
    assert!(create["oldObject"].is_null());
    assert_eq!(create["dryRun"], false);
    let update = &reviews[1]["request"];
    assert_eq!(update["operation"], "UPDATE");
    assert_eq!(update["dryRun"], true);
    assert_eq!(
        update["options"],
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions", "dryRun": ["All"]})
    );
    assert_eq!(
        update["oldObject"], stored,
        "the stored object, as it is stored"
    );
    assert_eq!(update["object"]["spec"]["replicas"], 2);
    assert_ne!(create["uid"], update["uid"], "a fresh uid per review");
    let pod = &reviews[2]["request"];
    assert!(
        pod.get("name").is_none() && pod["object"]["metadata"]["name"].is_null(),
        "a generateName CREATE has no name yet: {pod}"
    );
    assert_eq!(pod["object"]["metadata"]["generateName"], "web-");
    for review in &reviews {
        selfheal::webhook::decode_bytes(&serde_json::to_vec(review).unwrap())
            .expect("selfheal's decoder accepts what the apiserver sends");
    }
}

// --- update rules ---

#[tokio::test]
async fn statefulset_updates_may_change_only_the_fields_the_apiserver_allows() {
    let server = FakeApiServer::new();
    let sets = api(&server, "apps", "v1", "StatefulSet", "statefulsets");
    sets.create(&PostParams::default(), &object(statefulset()))
        .await
        .unwrap();
    sets.patch(
        "db",
        &PatchParams::default(),
        &merge(json!({"spec": {"replicas": 3, "minReadySeconds": 5,
        "template": {"spec": {"containers": [{"name": "db", "image": "postgres:17"}]}}}})),
    )
    .await
    .expect("replicas, minReadySeconds and template may change");

    let mut bigger = statefulset();
    bigger["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] =
        json!("5Gi");
    let status = refusal(
        sets.patch(
            "db",
            &PatchParams::default(),
            &merge(
                json!({"spec": {"volumeClaimTemplates": bigger["spec"]["volumeClaimTemplates"]}}),
            ),
        )
        .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        status.message,
        "StatefulSet.apps \"db\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
    );
    let status = refusal(
        sets.patch(
            "db",
            &PatchParams::default(),
            &merge(json!({"spec": {"serviceName": "other"}})),
        )
        .await,
    );
    assert_eq!(status.code, 422);
}

#[tokio::test]
async fn a_jobs_pod_template_is_immutable() {
    let server = FakeApiServer::new();
    let jobs = api(&server, "batch", "v1", "Job", "jobs");
    jobs.create(&PostParams::default(), &object(job()))
        .await
        .unwrap();
    jobs.patch(
        "migrate",
        &PatchParams::default(),
        &merge(json!({"metadata": {"labels": {"team": "a"}}})),
    )
    .await
    .expect("metadata may change");
    let status = refusal(
        jobs.patch(
            "migrate",
            &PatchParams::default(),
            &merge(json!({"spec": {"template": {"spec": {"containers": [
        {"name": "migrate", "image": "app:1", "resources": {"limits": {"memory": "512Mi"}}}]}}}})),
        )
        .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(
        status
            .message
            .starts_with("Job.batch \"migrate\" is invalid: spec.template: Invalid value: "),
        "{}",
        status.message
    );
    assert!(
        status.message.ends_with(": field is immutable"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn a_claims_storage_may_grow_when_bound_and_never_shrink() {
    let server = FakeApiServer::new();
    let claims = api(
        &server,
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
    );
    claims
        .create(&PostParams::default(), &object(claim("3Gi")))
        .await
        .unwrap();

    // Pending: the spec is immutable, storage included.
    let status = refusal(
        claims
            .patch(
                "data",
                &PatchParams::default(),
                &merge(json!({"spec": {"resources": {"requests": {"storage": "10Gi"}}}})),
            )
            .await,
    );
    assert_eq!(
        status.message,
        "PersistentVolumeClaim \"data\" is invalid: spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"
    );

    // Bound (the PV controller's status write): expansion passes, shrinking does not.
    let collection = Collection::core(NS, "persistentvolumeclaims");
    let mut bound = server.get(&collection, "data").unwrap();
    bound["status"] = json!({"phase": "Bound", "capacity": {"storage": "3Gi"}});
    server.put(&collection, bound);
    claims
        .patch(
            "data",
            &PatchParams::default(),
            &merge(json!({"metadata": {"labels": {"tier": "db"}}})),
        )
        .await
        .expect("a label change is accepted");
    let status = refusal(
        claims
            .patch(
                "data",
                &PatchParams::default(),
                &merge(json!({"spec": {"resources": {"requests": {"storage": "1Gi"}}}})),
            )
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        status.message,
        "PersistentVolumeClaim \"data\" is invalid: spec.resources.requests.storage: Forbidden: field can not be less than previous value"
    );
    let status = refusal(
        claims
            .patch(
                "data",
                &PatchParams::default(),
                &merge(json!({"spec": {"storageClassName": "other"}})),
            )
            .await,
    );
    assert_eq!(status.code, 422);
    let grown = claims
        .patch(
            "data",
            &PatchParams::default(),
            &merge(json!({"spec": {"resources": {"requests": {"storage": "10Gi"}}}})),
        )
        .await
        .expect("expansion of a bound claim is accepted");
    assert_eq!(
        json_of(&grown)["spec"]["resources"]["requests"]["storage"],
        "10Gi"
    );
}

#[tokio::test]
async fn a_pods_spec_is_immutable_except_images_deadlines_and_added_tolerations() {
    let server = FakeApiServer::new();
    let pods = api(&server, "", "v1", "Pod", "pods");
    pods.create(&PostParams::default(), &object(pod("256Mi")))
        .await
        .unwrap();
    pods.patch(
        "web-1",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {
        "containers": [{"name": "app", "image": "app:2"}],
        "activeDeadlineSeconds": 600,
        "tolerations": [{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]}})),
    )
    .await
    .expect("image, activeDeadlineSeconds and a new toleration are accepted");
    let status = refusal(
        pods.patch(
            "web-1",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {
        "containers": [{"name": "app", "resources": {"limits": {"memory": "512Mi"}}}]}})),
        )
        .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(status.message.starts_with("Pod \"web-1\" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"), "{}", status.message);
    let status = refusal(
        pods.patch(
            "web-1",
            &PatchParams::default(),
            &merge(json!({"spec": {"tolerations": []}})),
        )
        .await,
    );
    assert_eq!(status.code, 422, "removing a toleration is refused");
}

#[tokio::test]
async fn the_limitranger_refuses_a_pod_above_the_container_maximum() {
    let server = FakeApiServer::new();
    server.put(&Collection::core(NS, "limitranges"), json!({"apiVersion": "v1", "kind": "LimitRange",
        "metadata": {"name": "limits"}, "spec": {"limits": [{"type": "Container", "max": {"memory": "1Gi"}, "default": {"memory": "512Mi"}}]}}));
    let pods = api(&server, "", "v1", "Pod", "pods");
    let status = refusal(
        pods.create(&PostParams::default(), &object(pod("2Gi")))
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        status.message,
        "pods \"web-1\" is forbidden: maximum memory usage per Container is 1Gi, but limit is 2Gi"
    );

    let mut defaulted = pod("1Gi");
    defaulted["spec"]["containers"][0]["resources"] = json!({});
    let created = pods
        .create(&PostParams::default(), &object(defaulted))
        .await
        .expect("the default limit fits");
    assert_eq!(
        json_of(&created)["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "512Mi"
    );
}

#[tokio::test]
async fn a_stale_resource_version_conflicts() {
    let server = FakeApiServer::new();
    let maps: Api<ConfigMap> = Api::namespaced(server.client(), NS);
    let created = maps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap(),
        )
        .await
        .unwrap();
    maps.patch(
        "c",
        &PatchParams::default(),
        &merge(json!({"data": {"v": "1"}})),
    )
    .await
    .unwrap();
    let status = refusal(maps.replace("c", &PostParams::default(), &created).await);
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    let status = refusal(
        maps.patch(
            "c",
            &PatchParams::default(),
            &merge(json!({"metadata": {"resourceVersion": "1"}, "data": {"v": "2"}})),
        )
        .await,
    );
    assert_eq!(
        status.code, 409,
        "a merge patch carrying a stale resourceVersion conflicts"
    );
}

// --- patch types ---

#[tokio::test]
async fn a_json_merge_patch_replaces_lists_and_deletes_with_null() {
    let server = FakeApiServer::new();
    let sets = api(&server, "apps", "v1", "StatefulSet", "statefulsets");
    let mut two = statefulset();
    two["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "db", "image": "postgres:16"}, {"name": "exporter", "image": "exp:1"}]);
    two["metadata"]["labels"] = json!({"a": "1", "b": "2"});
    sets.create(&PostParams::default(), &object(two))
        .await
        .unwrap();
    let patched = json_of(
        &sets
            .patch(
                "db",
                &PatchParams::default(),
                &merge(json!({"metadata": {"labels": {"a": null}},
        "spec": {"template": {"spec": {"containers": [{"name": "db", "image": "postgres:17"}]}}}})),
            )
            .await
            .unwrap(),
    );
    assert_eq!(patched["metadata"]["labels"], json!({"b": "2"}));
    assert_eq!(
        patched["spec"]["template"]["spec"]["containers"],
        json!([{"name": "db", "image": "postgres:17"}]),
        "RFC 7386 replaces lists whole"
    );
}

#[tokio::test]
async fn a_strategic_merge_patch_merges_containers_by_name_and_replaces_atomic_lists() {
    let server = FakeApiServer::new();
    let sets = api(&server, "apps", "v1", "StatefulSet", "statefulsets");
    let mut two = statefulset();
    two["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "db", "image": "postgres:16", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
        {"name": "exporter", "image": "exp:1"}]);
    sets.create(&PostParams::default(), &object(two))
        .await
        .unwrap();
    let patched = json_of(&sets.patch("db", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "db"}, {"name": "exporter"}],
        "containers": [{"name": "db", "image": "postgres:17", "env": [{"name": "B", "value": "3"}, {"name": "A", "$patch": "delete"}]}]}}}}))).await.unwrap());
    assert_eq!(
        patched["spec"]["template"]["spec"]["containers"],
        json!([
        {"name": "db", "image": "postgres:17", "env": [{"name": "B", "value": "3"}]},
        {"name": "exporter", "image": "exp:1"}])
    );
    // volumeClaimTemplates has no merge key: the list is replaced whole, so a changed claim
    // template is a forbidden StatefulSet update.
    let status = refusal(sets.patch("db", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"volumeClaimTemplates": [
        {"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": "1Gi"}}}}]}}))).await);
    assert_eq!(status.code, 422);
}

#[tokio::test]
async fn server_side_apply_needs_a_field_manager_creates_and_merges() {
    let server = FakeApiServer::new();
    let jobs = api(&server, "batch", "v1", "Job", "jobs");
    let status = refusal(
        jobs.patch("migrate", &PatchParams::default(), &Patch::Apply(job()))
            .await,
    );
    assert_eq!(status.code, 422);
    assert!(
        status.message.contains("fieldManager: Required value"),
        "{}",
        status.message
    );

    let apply = PatchParams::apply("ci").force();
    jobs.patch("migrate", &apply, &Patch::Apply(job()))
        .await
        .expect("apply creates");
    let mut labelled = job();
    labelled["metadata"]["labels"] = json!({"run": "2"});
    let applied = json_of(
        &jobs
            .patch("migrate", &apply, &Patch::Apply(labelled))
            .await
            .expect("a metadata change applies"),
    );
    assert_eq!(applied["metadata"]["labels"]["run"], "2");
    let mut bigger = job();
    bigger["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] =
        json!("1Gi");
    let status = refusal(jobs.patch("migrate", &apply, &Patch::Apply(bigger)).await);
    assert_eq!(status.code, 422, "apply goes through the same validation");
}

#[test]
fn kubectl_applys_three_way_patch_sends_what_differs_from_the_live_object() {
    use support::fake_apiserver::patches::three_way_patch;
    let original = json!({"metadata": {"labels": {"a": "1", "old": "x"}}, "spec": {"containers": [{"name": "app", "image": "app:1", "resources": {"limits": {"memory": "128Mi"}}}]}});
    let mut modified = original.clone();
    modified["metadata"]["labels"] = json!({"a": "1", "new": "y"});
    let current = json!({"metadata": {"labels": {"a": "1", "old": "x"}}, "spec": {"containers": [{"name": "app", "image": "app:1", "resources": {"limits": {"memory": "512Mi"}}}]}});
    assert_eq!(
        three_way_patch(&original, &modified, &current),
        json!({"metadata": {"labels": {"old": null, "new": "y"}}, "spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [{"name": "app", "resources": {"limits": {"memory": "128Mi"}}}]}})
    );
}

// --- selectors ---

#[tokio::test]
async fn field_selectors_the_apiserver_does_not_support_are_refused() {
    let server = FakeApiServer::new();
    let client = server.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let status = refusal(
        pods.list(&ListParams::default().fields("spec.containers.image=app"))
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (400, "BadRequest"));
    assert_eq!(
        status.message,
        "field label not supported: spec.containers.image"
    );
    let status = refusal(
        api(&server, "events.k8s.io", "v1", "Event", "events")
            .list(&ListParams::default().fields("involvedObject.uid=x"))
            .await,
    );
    assert_eq!(
        status.message, "field label not supported: involvedObject.uid",
        "events.k8s.io/v1 says regarding.uid"
    );

    // What selfheal and kubectl send is accepted.
    pods.list(&ListParams::default().fields("spec.nodeName=n1,status.phase!=Failed"))
        .await
        .unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::all(client.clone())
        .list(&ListParams::default().fields("type=kubernetes.io/tls"))
        .await
        .unwrap();
    Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), NS)
        .list(&ListParams::default().fields("involvedObject.uid=u,reason=X"))
        .await
        .unwrap();
    api(&server, "events.k8s.io", "v1", "Event", "events")
        .list(&ListParams::default().fields("regarding.uid=u,reportingController=selfheal"))
        .await
        .unwrap();
    Api::<ConfigMap>::namespaced(client, NS)
        .list(&ListParams::default().fields("metadata.name=fixes"))
        .await
        .unwrap();
}

// --- watches ---

#[tokio::test]
async fn a_watch_from_a_compacted_resource_version_gets_410_gone() {
    let server = FakeApiServer::new();
    let maps: Api<ConfigMap> = Api::namespaced(server.client(), NS);
    server.put(
        &Collection::core(NS, "configmaps"),
        json!({"metadata": {"name": "a"}}),
    );
    let old = server.resource_version().to_string();
    server.expire_watches();
    let mut stream = maps
        .watch(&WatchParams::default(), &old)
        .await
        .unwrap()
        .boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Error(status))) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
            assert!(
                status.message.starts_with("too old resource version: "),
                "{}",
                status.message
            );
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    let current = server.resource_version().to_string();
    let mut stream = maps
        .watch(&WatchParams::default(), &current)
        .await
        .unwrap()
        .boxed();
    server.put(
        &Collection::core(NS, "configmaps"),
        json!({"metadata": {"name": "b"}}),
    );
    assert!(
        matches!(stream.next().await, Some(Ok(WatchEvent::Added(_)))),
        "a watch from a current resourceVersion follows"
    );
}

#[tokio::test]
async fn a_kube_runtime_watcher_relists_after_expiry_and_sees_what_changed_meanwhile() {
    let server = FakeApiServer::new();
    let maps = Collection::core(NS, "configmaps");
    server.put(
        &maps,
        json!({"metadata": {"name": "a"}, "data": {"v": "1"}}),
    );
    let api: Api<ConfigMap> = Api::namespaced(server.client(), NS);
    let mut events = watcher(api, watcher::Config::default()).boxed();
    loop {
        if let Some(Ok(watcher::Event::InitDone)) = events.next().await {
            break;
        }
    }
    // Cut off: every watch ends, the history is compacted, and the object changes before the
    // watcher (on this single-threaded runtime) can run again.
    server.expire_watches();
    server.put(
        &maps,
        json!({"metadata": {"name": "a"}, "data": {"v": "2"}}),
    );
    let mut relisted = false;
    loop {
        match events.next().await.expect("the watcher keeps going") {
            Ok(watcher::Event::Init) => relisted = true,
            Ok(watcher::Event::InitApply(map)) if relisted => {
                assert_eq!(map.data.unwrap()["v"], "2");
                break;
            }
            Ok(other) => panic!("the change must come from a re-list, got {other:?}"),
            Err(_) => {} // the 410, reported before the re-list
        }
    }
    assert!(
        server
            .expired_watches
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

// --- evictions (issue 16, 3) ---

fn budgets() -> Collection {
    Collection::new("apis/policy/v1", NS, "poddisruptionbudgets")
}

fn budget(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["selector"] = json!({"matchLabels": {"app": "web"}});
    json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name}, "spec": spec})
}

/// A running pod of `app: web` on a node; Ready or not; owned by `owner` (kind, name, uid).
fn web_pod(name: &str, ready: bool, owner: Option<(&str, &str, &str)>) -> Value {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "app:1"}]},
        "status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
    if let Some((kind, owner_name, uid)) = owner {
        pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": kind,
            "name": owner_name, "uid": uid, "controller": true}]);
    }
    pod
}

fn budget_status(server: &FakeApiServer, name: &str) -> Value {
    server.get(&budgets(), name).unwrap()["status"].clone()
}

#[tokio::test]
async fn an_eviction_a_disruption_budget_forbids_is_refused_with_429() {
    let server = FakeApiServer::new();
    let pods_collection = Collection::core(NS, "pods");
    server.put(&pods_collection, web_pod("web-1", true, None));
    server.put(&pods_collection, web_pod("web-2", true, None));
    server.put(&pods_collection, web_pod("web-3", false, None));
    server.put(&budgets(), budget("web", json!({"minAvailable": 2})));
    let status = budget_status(&server, "web");
    assert_eq!(
        (
            &status["currentHealthy"],
            &status["desiredHealthy"],
            &status["expectedPods"],
            &status["disruptionsAllowed"]
        ),
        (&json!(2), &json!(2), &json!(3), &json!(0)),
        "the controller counts Ready pods: {status}"
    );
    let pods: Api<Pod> = Api::namespaced(server.client(), NS);
    let status = refusal(pods.evict("web-1", &EvictParams::default()).await);
    assert_eq!(
        (status.code, status.reason.as_str()),
        (429, "TooManyRequests")
    );
    assert_eq!(
        status.message,
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    let causes = status.details.expect("details").causes;
    assert_eq!(causes.len(), 1);
    assert_eq!(
        (causes[0].reason.as_str(), causes[0].message.as_str()),
        (
            "DisruptionBudget",
            "The disruption budget web needs 2 healthy pods and has 2 currently"
        )
    );
    assert!(
        server.get(&pods_collection, "web-1").is_some(),
        "the pod stays"
    );

    // The third pod becomes Ready: one disruption is allowed, and spent by one eviction.
    server.put(&pods_collection, web_pod("web-3", true, None));
    assert_eq!(budget_status(&server, "web")["disruptionsAllowed"], 1);
    pods.evict("web-1", &EvictParams::default())
        .await
        .expect("one disruption is allowed");
    let evicted = server.get(&pods_collection, "web-1").expect("terminating");
    assert!(evicted["metadata"]["deletionTimestamp"].is_string());
    let status = budget_status(&server, "web");
    assert_eq!(
        (&status["currentHealthy"], &status["disruptionsAllowed"]),
        (&json!(2), &json!(0)),
        "a terminating pod is not healthy: {status}"
    );
    assert_eq!(
        refusal(pods.evict("web-2", &EvictParams::default()).await).code,
        429
    );
    pods.evict("web-1", &EvictParams::default())
        .await
        .expect("a terminating pod is deleted without asking the budget");

    server.put(&pods_collection, json!({"metadata": {"name": "other", "labels": {"app": "api"}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "app:1"}]}, "status": {"phase": "Running"}}));
    pods.evict("other", &EvictParams::default())
        .await
        .expect("no budget selects it");
}

#[tokio::test]
async fn max_unavailable_and_percentages_are_scaled_from_the_controllers_replicas() {
    let server = FakeApiServer::new();
    server.put(
        &Collection::apps(NS, "deployments"),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "uid": "uid-deploy"},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}}),
    );
    server.put(
        &Collection::apps(NS, "replicasets"),
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-5d4c3b2a1", "uid": "uid-rs",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "uid-deploy", "controller": true}]},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}}),
    );
    let pods = Collection::core(NS, "pods");
    for i in 1..=3 {
        server.put(
            &pods,
            web_pod(
                &format!("web-{i}"),
                true,
                Some(("ReplicaSet", "web-5d4c3b2a1", "uid-rs")),
            ),
        );
    }
    server.put(&budgets(), budget("web", json!({"maxUnavailable": "25%"})));
    let status = budget_status(&server, "web");
    assert_eq!(
        (
            &status["expectedPods"],
            &status["desiredHealthy"],
            &status["currentHealthy"],
            &status["disruptionsAllowed"]
        ),
        (&json!(4), &json!(3), &json!(3), &json!(0)),
        "the Deployment's 4 replicas, one missing: {status}"
    );
    server.put(&budgets(), budget("web", json!({"minAvailable": "50%"})));
    let status = budget_status(&server, "web");
    assert_eq!(
        (&status["desiredHealthy"], &status["disruptionsAllowed"]),
        (&json!(2), &json!(1))
    );
    // A pod without a controller: a percentage cannot be scaled; nothing may be disrupted.
    server.put(&pods, web_pod("stray", true, None));
    let status = budget_status(&server, "web");
    assert_eq!(status["disruptionsAllowed"], 0);
    assert_eq!(status["conditions"][0]["reason"], "SyncFailed");
}

#[tokio::test]
async fn an_unready_pod_is_evicted_only_when_the_budget_is_healthy_unless_always_allowed() {
    let server = FakeApiServer::new();
    let collection = Collection::core(NS, "pods");
    server.put(&collection, web_pod("ready-1", true, None));
    server.put(&collection, web_pod("ready-2", true, None));
    server.put(&collection, web_pod("broken-1", false, None));
    server.put(&collection, web_pod("broken-2", false, None));
    server.put(&budgets(), budget("web", json!({"minAvailable": 2})));
    let pods: Api<Pod> = Api::namespaced(server.client(), NS);
    pods.evict("broken-1", &EvictParams::default())
        .await
        .expect("the budget is healthy (2 of 2): an unready pod may go");
    assert_eq!(budget_status(&server, "web")["disruptionsAllowed"], 0);

    // One Ready pod fails its probe: the budget is unhealthy (1 of 2).
    server.put(&collection, web_pod("ready-2", false, None));
    let status = refusal(pods.evict("broken-2", &EvictParams::default()).await);
    assert_eq!(status.code, 429, "IfHealthyBudget, the default");
    assert_eq!(
        status.details.unwrap().causes[0].message,
        "The disruption budget web needs 2 healthy pods and has 1 currently"
    );
    let mut always = budget("web", json!({"minAvailable": 2}));
    always["spec"]["unhealthyPodEvictionPolicy"] = json!("AlwaysAllow");
    server.put(&budgets(), always);
    pods.evict("broken-2", &EvictParams::default())
        .await
        .expect("AlwaysAllow: an unready pod may always go");
    let status = refusal(pods.evict("ready-1", &EvictParams::default()).await);
    assert_eq!(status.code, 429, "but a Ready pod still needs the budget");

    // Two budgets for one pod.
    server.put(&budgets(), budget("second", json!({"minAvailable": 0})));
    let status = refusal(pods.evict("ready-1", &EvictParams::default()).await);
    assert_eq!(status.code, 500);
    assert_eq!(
        status.message,
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    );
    assert_eq!(status.reason, "", "the apiserver sends no reason");
}

// --- events ---

fn v1_event(name: &str, regarding_namespace: Option<&str>) -> Value {
    let mut regarding =
        json!({"kind": "Deployment", "name": "web", "uid": "u-1", "apiVersion": "apps/v1"});
    if let Some(namespace) = regarding_namespace {
        regarding["namespace"] = json!(namespace);
    }
    json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": name},
        "eventTime": "2026-11-28T00:00:00.000000Z", "reportingController": "selfheal", "reportingInstance": "selfheal-0",
        "action": "Raise", "reason": "MemoryLimitRaised", "type": "Normal", "note": "raised",
        "regarding": regarding})
}

#[tokio::test]
async fn events_k8s_io_events_are_validated_like_the_apiserver() {
    let server = FakeApiServer::new();
    let events = api(&server, "events.k8s.io", "v1", "Event", "events");
    // No eventTime: validated as an old-style Event first (its object's namespace), then the
    // events.k8s.io rules. The paths are the internal (core) names.
    let status = refusal(
        events
            .create(
                &PostParams::default(),
                &object(json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "e1"}, "type": "Normal"})),
            )
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        status.message,
        "Event.events.k8s.io \"e1\" is invalid: [involvedObject.namespace: Invalid value: \"\": does not match event.namespace, eventTime: Required value]"
    );
    let mut bare = v1_event("e2", Some(NS));
    for field in [
        "reportingController",
        "reportingInstance",
        "action",
        "reason",
    ] {
        bare.as_object_mut().unwrap().remove(field);
    }
    bare["type"] = json!("Info");
    let status = refusal(events.create(&PostParams::default(), &object(bare)).await);
    assert_eq!(
        status.message,
        "Event.events.k8s.io \"e2\" is invalid: [reportingController: Required value, reportingController: Invalid value: \"\": name part must be non-empty, reportingController: Invalid value: \"\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]'), reportingInstance: Required value, action: Required value, reason: Required value, type: Invalid value: \"\": has invalid value: Info]"
    );
    let mut long = v1_event("e3", Some(NS));
    long["note"] = json!("x".repeat(1025));
    long["deprecatedCount"] = json!(2);
    let status = refusal(events.create(&PostParams::default(), &object(long)).await);
    assert_eq!(
        status.message,
        "Event.events.k8s.io \"e3\" is invalid: [message: Invalid value: \"\": can have at most 1024 characters, count: Invalid value: \"\": needs to be unset]"
    );
}

#[tokio::test]
async fn an_events_regarding_namespace_follows_the_apiservers_rules() {
    let server = FakeApiServer::new();
    let events = api(&server, "events.k8s.io", "v1", "Event", "events");
    events
        .create(&PostParams::default(), &object(v1_event("same", Some(NS))))
        .await
        .expect("an Event beside its object");
    events
        .create(
            &PostParams::default(),
            &object(v1_event("elsewhere", Some("other"))),
        )
        .await
        .expect("an events.k8s.io Event may regard an object of another namespace");
    let status = refusal(
        events
            .create(&PostParams::default(), &object(v1_event("node", None)))
            .await,
    );
    assert_eq!(
        status.message,
        "Event.events.k8s.io \"node\" is invalid: involvedObject.namespace: Invalid value: \"\": does not match event.namespace",
        "a cluster-scoped object's Event belongs in default or kube-system"
    );
    Api::<DynamicObject>::namespaced_with(
        server.client(),
        "default",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("events.k8s.io", "v1", "Event"),
            "events",
        ),
    )
    .create(&PostParams::default(), &object(v1_event("node", None)))
    .await
    .expect("in default");

    // core/v1, old style (no eventTime): the involved object's namespace must be the Event's.
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(server.client(), NS);
    let old_style = |name: &str, namespace: &str| -> k8s_openapi::api::core::v1::Event {
        serde_json::from_value(json!({"metadata": {"name": name}, "reason": "FailedCreate", "type": "Warning",
            "message": "Error creating: x", "involvedObject": {"kind": "ReplicaSet", "namespace": namespace, "name": "web-1"},
            "source": {"component": "replicaset-controller"}, "count": 1}))
        .unwrap()
    };
    core.create(&PostParams::default(), &old_style("ok", NS))
        .await
        .expect("core/v1 beside its object");
    let status = refusal(
        core.create(&PostParams::default(), &old_style("bad", "other"))
            .await,
    );
    assert_eq!(
        status.message,
        "Event \"bad\" is invalid: involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"
    );
}

#[tokio::test]
async fn an_events_k8s_io_event_may_only_change_its_series() {
    let server = FakeApiServer::new();
    let events = api(&server, "events.k8s.io", "v1", "Event", "events");
    events
        .create(&PostParams::default(), &object(v1_event("e1", Some(NS))))
        .await
        .unwrap();
    events
        .patch(
            "e1",
            &PatchParams::default(),
            &merge(
                json!({"series": {"count": 2, "lastObservedTime": "2026-11-28T00:01:00.000000Z"}}),
            ),
        )
        .await
        .expect("a series may be added");
    let status = refusal(
        events
            .patch(
                "e1",
                &PatchParams::default(),
                &merge(json!({"series": {"count": 1, "lastObservedTime": "2026-11-28T00:02:00.000000Z"}})),
            )
            .await,
    );
    assert_eq!(
        status.message,
        "Event.events.k8s.io \"e1\" is invalid: series.count: Invalid value: \"\": should be at least 2"
    );
    let status = refusal(
        events
            .patch(
                "e1",
                &PatchParams::default(),
                &merge(json!({"note": "raised again", "reason": "Other"})),
            )
            .await,
    );
    assert_eq!(
        status.message,
        "Event.events.k8s.io \"e1\" is invalid: [reason: Invalid value: \"Other\": field is immutable, message: Invalid value: \"raised again\": field is immutable]"
    );
    // The Recorder's repeat (a merge patch of the whole cached Event with a series) passes.
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let recorder = Recorder::new(
        server.client(),
        Reporter {
            controller: "selfheal".into(),
            instance: Some("selfheal-0".into()),
        },
    );
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some("Deployment".into()),
        namespace: Some(NS.into()),
        name: Some("api".into()),
        uid: Some("uid-api".into()),
        ..Default::default()
    };
    let event = Event {
        type_: EventType::Warning,
        reason: "FixHeldByQuota".into(),
        note: Some("held".into()),
        action: "Raise".into(),
        secondary: None,
    };
    recorder.publish(&event, &reference).await.unwrap();
    recorder
        .publish(&event, &reference)
        .await
        .expect("a repeat only changes the series");
}

#[tokio::test]
async fn an_event_recorded_with_the_objects_uid_is_what_kubectl_describe_shows() {
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let server = FakeApiServer::new();
    let client = server.client();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "selfheal".into(),
            instance: Some("selfheal-0".into()),
        },
    );
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some("Deployment".into()),
        namespace: Some(NS.into()),
        name: Some("web".into()),
        uid: Some("uid-web".into()),
        ..Default::default()
    };
    let event = Event {
        type_: EventType::Normal,
        reason: "MemoryLimitRaised".into(),
        note: Some("raised to 512Mi".into()),
        action: "RaiseMemory".into(),
        secondary: None,
    };
    recorder
        .publish(&event, &reference)
        .await
        .expect("a valid events.k8s.io/v1 Event");
    let shown = support::describe_events(&client, "Deployment", NS, "web", "uid-web").await;
    assert_eq!(shown.len(), 1);
    assert_eq!(
        (shown[0].reason.as_deref(), shown[0].message.as_deref()),
        (Some("MemoryLimitRaised"), Some("raised to 512Mi"))
    );
    assert_eq!(shown[0].reporting_component.as_deref(), Some("selfheal"));
    assert!(
        support::describe_events(&client, "Deployment", NS, "web", "another-uid")
            .await
            .is_empty(),
        "describe matches the uid"
    );

    // Without the uid, describe does not show it.
    let anonymous = k8s_openapi::api::core::v1::ObjectReference {
        uid: None,
        name: Some("api".into()),
        ..reference
    };
    recorder.publish(&event, &anonymous).await.unwrap();
    assert!(
        support::describe_events(&client, "Deployment", NS, "api", "uid-api")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_workloads_selector_is_immutable_and_spec_changes_bump_the_generation() {
    let server = FakeApiServer::new();
    let deployments = api(&server, "apps", "v1", "Deployment", "deployments");
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}});
    let created = json_of(
        &deployments
            .create(&PostParams::default(), &object(deployment))
            .await
            .unwrap(),
    );
    assert_eq!(created["metadata"]["generation"], 1);
    let labelled = json_of(
        &deployments
            .patch(
                "web",
                &PatchParams::default(),
                &merge(json!({"metadata": {"labels": {"a": "b"}}})),
            )
            .await
            .unwrap(),
    );
    assert_eq!(
        labelled["metadata"]["generation"], 1,
        "a metadata change is no new generation"
    );
    let scaled = json_of(
        &deployments
            .patch(
                "web",
                &PatchParams::default(),
                &merge(json!({"spec": {"replicas": 3}})),
            )
            .await
            .unwrap(),
    );
    assert_eq!(scaled["metadata"]["generation"], 2);
    let status = refusal(
        deployments
            .patch(
                "web",
                &PatchParams::default(),
                &merge(json!({"spec": {"selector": {"matchLabels": {"app": "other"}}}})),
            )
            .await,
    );
    assert_eq!(status.code, 422);
    assert!(
        status
            .message
            .starts_with("Deployment.apps \"web\" is invalid: spec.selector: Invalid value: "),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn a_created_pod_gets_the_service_account_token_mounted() {
    let server = FakeApiServer::new();
    let pods = api(&server, "", "v1", "Pod", "pods");
    let created = json_of(
        &pods
            .create(&PostParams::default(), &object(pod("256Mi")))
            .await
            .unwrap(),
    );
    let spec = &created["spec"];
    assert_eq!(spec["serviceAccountName"], "default");
    let volume = spec["volumes"][0]["name"].as_str().expect("token volume");
    assert!(volume.starts_with("kube-api-access-"));
    assert_eq!(
        spec["containers"][0]["volumeMounts"][0],
        json!({"name": volume, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"})
    );
    // Dropping the mounts (a merge patch replacing the containers) is a forbidden Pod update.
    let status = refusal(
        pods.patch(
            "web-1",
            &PatchParams::default(),
            &merge(json!({"spec": {"containers": pod("256Mi")["spec"]["containers"]}})),
        )
        .await,
    );
    assert_eq!(status.code, 422);

    let mut opted_out = pod("256Mi");
    opted_out["metadata"]["name"] = json!("web-2");
    opted_out["spec"]["automountServiceAccountToken"] = json!(false);
    let created = json_of(
        &pods
            .create(&PostParams::default(), &object(opted_out))
            .await
            .unwrap(),
    );
    assert!(
        created["spec"]["volumes"].is_null(),
        "no token without automount"
    );
}

// --- interference for tests (issue 8: hung calls, refusals, kube's retries) ---

#[tokio::test]
async fn a_held_request_delays_nothing_else_and_completes_when_released() {
    let server = FakeApiServer::new();
    let maps = Collection::core(NS, "configmaps");
    server.put(&maps, json!({"metadata": {"name": "slow"}}));
    server.put(&maps, json!({"metadata": {"name": "fast"}}));
    let api: Api<ConfigMap> = Api::namespaced(server.client(), NS);
    let held = server.hold_requests(Some(axum::http::Method::GET), "/configmaps/slow");
    let slow = tokio::spawn({
        let api = api.clone();
        async move { api.get("slow").await }
    });
    support::eventually("the slow GET is held", || held.held() == 1).await;
    api.get("fast")
        .await
        .expect("another object's request is answered");
    assert!(!slow.is_finished());
    drop(held);
    slow.await.unwrap().expect("released");
}

#[tokio::test]
async fn injected_429s_are_retried_by_the_production_client_only() {
    let server = FakeApiServer::new();
    server.put(
        &Collection::core(NS, "configmaps"),
        json!({"metadata": {"name": "c"}}),
    );
    server.fail_requests(
        None,
        "/configmaps/c",
        2,
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        None,
    );
    let plain: Api<ConfigMap> = Api::namespaced(server.client(), NS);
    assert_eq!(
        refusal(plain.get("c").await).code,
        429,
        "kube::Client::new does not retry"
    );
    let production: Api<ConfigMap> = Api::namespaced(server.production_client(), NS);
    let before = server.requests.load(std::sync::atomic::Ordering::Relaxed);
    production
        .get("c")
        .await
        .expect("the retry layer retries the 429");
    let after = server.requests.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(after - before, 2, "one 429 retried, then the answer");
}

#[tokio::test]
async fn a_raise_capped_at_the_limitrange_maximum_passes_the_limitranger() {
    let server = FakeApiServer::new();
    let limit_range = json!({"apiVersion": "v1", "kind": "LimitRange",
        "metadata": {"name": "limits"}, "spec": {"limits": [{"type": "Container", "max": {"memory": "384Mi"}}]}});
    let document = FixDocument::parse(&format!(
        "fixes:\n  - namespace: {NS}\n    resource: web-1\n    type: memory\n    value: 512Mi\n    timestamp: 2026-11-28T00:00:00Z\n"
    ))
    .unwrap();
    let state = support::state_with_document(&document);
    let pods = api(&server, "", "v1", "Pod", "pods");
    support::install_webhook(&server, state.clone());

    // The LimitRanges watched as `serve` does. The LimitRange is written once the watch is open
    // (list, then watch: two requests), so it arrives as a live event.
    let limits = state.limits.clone();
    let watch = tokio::spawn(selfheal::cluster::limits::keep_current(
        server.client(),
        limits.clone(),
    ));
    support::eventually("the LimitRange watch is open", || {
        server.requests.load(std::sync::atomic::Ordering::SeqCst) >= 2
    })
    .await;
    server.put(&Collection::core(NS, "limitranges"), limit_range);
    support::eventually("the LimitRange is seen", || limits.memory_max(NS).is_some()).await;
    let created = json_of(
        &pods
            .create(&PostParams::default(), &object(pod("256Mi")))
            .await
            .expect("accepted"),
    );
    assert_eq!(
        created["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "384Mi"
    );

    // Without the LimitRange view the webhook would raise to 512Mi, which the LimitRanger refuses.
    watch.abort();
    limits.publish(Default::default());
    let mut second = pod("256Mi");
    second["metadata"]["name"] = json!("web-2");
    let document = FixDocument::parse(&format!(
        "fixes:\n  - namespace: {NS}\n    resource: web-2\n    type: memory\n    value: 512Mi\n    timestamp: 2026-11-28T00:00:00Z\n"
    ))
    .unwrap();
    support::install_webhook(&server, support::state_with_document(&document));
    let status = refusal(pods.create(&PostParams::default(), &object(second)).await);
    assert_eq!(
        status.message,
        "pods \"web-2\" is forbidden: maximum memory usage per Container is 384Mi, but limit is 512Mi"
    );
}

#[tokio::test]
async fn a_raise_never_breaks_the_limitranges_limit_to_request_ratio() {
    let server = FakeApiServer::new();
    let limit_range = json!({"apiVersion": "v1", "kind": "LimitRange",
        "metadata": {"name": "ratio"},
        "spec": {"limits": [{"type": "Container", "maxLimitRequestRatio": {"memory": "2"}}]}});
    let document = FixDocument::parse(&format!(
        "fixes:\n  - namespace: {NS}\n    resource: web-1\n    type: memory\n    value: 4Gi\n    timestamp: 2026-11-28T00:00:00Z\n"
    ))
    .unwrap();
    let state = support::state_with_document(&document);
    let pods = api(&server, "", "v1", "Pod", "pods");
    let with_request = |name: &str| {
        let mut pod = pod("300Mi");
        pod["metadata"]["name"] = json!(name);
        pod["spec"]["containers"][0]["resources"]["requests"] = json!({"memory": "256Mi"});
        pod
    };

    // The rule itself: a limit more than twice the request is refused, as the LimitRanger does.
    server.put(&Collection::core(NS, "limitranges"), limit_range);
    let mut too_far = with_request("by-hand");
    too_far["spec"]["containers"][0]["resources"]["limits"]["memory"] = json!("1Gi");
    let status = refusal(pods.create(&PostParams::default(), &object(too_far)).await);
    assert!(
        status.message.contains(
            "memory max limit to request ratio per Container is 2, but provided ratio is 4.000000"
        ),
        "{}",
        status.message
    );

    // selfheal's webhook, with the LimitRanges watched as `serve` does: the 4Gi fix is held to
    // twice the request, and the pod is accepted.
    support::install_webhook(&server, state.clone());
    let watch = tokio::spawn(selfheal::cluster::limits::keep_current(
        server.client(),
        state.limits.clone(),
    ));
    support::eventually("the ratio is seen", || {
        state.limits.memory_ratio(NS).is_some()
    })
    .await;
    let created = json_of(
        &pods
            .create(&PostParams::default(), &object(with_request("web-1")))
            .await
            .expect("accepted"),
    );
    assert_eq!(
        created["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "512Mi"
    );
    watch.abort();
}

#[tokio::test]
async fn limitranges_that_exist_at_start_up_are_published_when_the_list_ends() {
    let server = FakeApiServer::new();
    server.put(
        &Collection::core(NS, "limitranges"),
        json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "limits"},
            "spec": {"limits": [{"type": "Container", "max": {"memory": "384Mi"}}]}}),
    );
    let limits = selfheal::cluster::limits::LimitSnapshot::default();
    let watch = tokio::spawn(selfheal::cluster::limits::keep_current(
        server.client(),
        limits.clone(),
    ));
    // Nothing changes after start: only the end of the initial list can publish the maximum.
    support::eventually("the existing LimitRange is published", || {
        limits
            .memory_max(NS)
            .is_some_and(|max| max.as_str() == "384Mi")
    })
    .await;
    watch.abort();
}

#[tokio::test]
async fn the_main_resource_cannot_change_the_status() {
    let server = FakeApiServer::new();
    let collection = Collection::core(NS, "persistentvolumeclaims");
    let mut bound = claim("3Gi");
    bound["status"] = json!({"phase": "Bound"});
    server.put(&collection, bound);
    let claims = api(
        &server,
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
    );
    let mut sent = json_of(&claims.get("data").await.unwrap());
    sent["status"] = json!({"phase": "Lost"});
    sent["spec"]["resources"]["requests"]["storage"] = json!("10Gi");
    let replaced = json_of(
        &claims
            .replace("data", &PostParams::default(), &object(sent))
            .await
            .expect("a bound claim grows"),
    );
    assert_eq!(
        replaced["status"]["phase"], "Bound",
        "the status write through the main resource is ignored"
    );
    assert_eq!(replaced["spec"]["resources"]["requests"]["storage"], "10Gi");
}

// --- defaulting before admission (issue 16, 1) ---

/// Records the objects the mutating webhook is shown, and lets it change them.
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

fn recording_webhook(server: &FakeApiServer, change: fn(&mut Value)) -> Seen {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    server.set_admission_with_old(Arc::new(
        move |_: &Collection, operation: &str, _: Option<&Value>, object: &mut Value| {
            record
                .lock()
                .unwrap()
                .push((operation.to_string(), object.clone()));
            change(object);
        },
    ));
    seen
}

fn container_resources(object: &Value) -> Value {
    object["spec"]["containers"][0]["resources"].clone()
}

#[tokio::test]
async fn a_containers_requests_default_to_its_limits_before_any_webhook_sees_the_pod() {
    let server = FakeApiServer::new();
    let seen = recording_webhook(&server, |_| {});
    let pods = api(&server, "", "v1", "Pod", "pods");
    let created = json_of(
        &pods
            .create(&PostParams::default(), &object(pod("256Mi")))
            .await
            .unwrap(),
    );
    let shown = seen.lock().unwrap()[0].1.clone();
    assert_eq!(
        container_resources(&shown),
        json!({"limits": {"memory": "256Mi"}, "requests": {"memory": "256Mi"}}),
        "the webhook sees the defaulted request"
    );
    assert_eq!(container_resources(&created)["requests"]["memory"], "256Mi");
    assert_eq!(created["spec"]["terminationGracePeriodSeconds"], 30);
    assert_eq!(created["spec"]["restartPolicy"], "Always");

    // A limit a webhook adds is defaulted into a request too (the dispatcher re-defaults).
    let server = FakeApiServer::new();
    recording_webhook(&server, |object| {
        object["spec"]["containers"][0]["resources"] = json!({"limits": {"memory": "1Gi"}});
    });
    let mut bare = pod("256Mi");
    bare["spec"]["containers"][0]["resources"] = json!({});
    let created = json_of(
        &api(&server, "", "v1", "Pod", "pods")
            .create(&PostParams::default(), &object(bare))
            .await
            .unwrap(),
    );
    assert_eq!(
        container_resources(&created),
        json!({"limits": {"memory": "1Gi"}, "requests": {"memory": "1Gi"}})
    );
}

#[tokio::test]
async fn the_limitranger_defaults_before_the_webhook_and_judges_its_result_after() {
    let server = FakeApiServer::new();
    server.put(&Collection::core(NS, "limitranges"), json!({"apiVersion": "v1", "kind": "LimitRange",
        "metadata": {"name": "limits"}, "spec": {"limits": [{"type": "Container",
            "max": {"memory": "1Gi"}, "default": {"memory": "512Mi"}, "defaultRequest": {"memory": "256Mi"}}]}}));
    let seen = recording_webhook(&server, |object| {
        object["spec"]["containers"][0]["resources"]["limits"]["memory"] = json!("2Gi");
    });
    let mut bare = pod("1Gi");
    bare["spec"]["containers"][0]["resources"] = json!({});
    let status = refusal(
        api(&server, "", "v1", "Pod", "pods")
            .create(&PostParams::default(), &object(bare))
            .await,
    );
    let shown = seen.lock().unwrap()[0].1.clone();
    assert_eq!(
        container_resources(&shown),
        json!({"limits": {"memory": "512Mi"}, "requests": {"memory": "256Mi"}}),
        "the LimitRange's defaults are in the object the webhook is shown"
    );
    assert_eq!(
        shown["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: memory request for container app; memory limit for container app"
    );
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        status.message,
        "pods \"web-1\" is forbidden: maximum memory usage per Container is 1Gi, but limit is 2Gi",
        "the maximum judges what the webhook made of the pod"
    );
}

#[tokio::test]
async fn a_limitrange_maximum_alone_is_also_its_default() {
    let server = FakeApiServer::new();
    let stored = server.put(&Collection::core(NS, "limitranges"), json!({"apiVersion": "v1", "kind": "LimitRange",
        "metadata": {"name": "limits"}, "spec": {"limits": [{"type": "Container", "max": {"memory": "1Gi"}}]}}));
    assert_eq!(
        stored["spec"]["limits"][0]["default"],
        json!({"memory": "1Gi"})
    );
    assert_eq!(
        stored["spec"]["limits"][0]["defaultRequest"],
        json!({"memory": "1Gi"})
    );
    let mut bare = pod("1Gi");
    bare["spec"]["containers"][0]["resources"] = json!({});
    let created = json_of(
        &api(&server, "", "v1", "Pod", "pods")
            .create(&PostParams::default(), &object(bare))
            .await
            .expect("the defaulted limit is the maximum"),
    );
    assert_eq!(
        container_resources(&created),
        json!({"limits": {"memory": "1Gi"}, "requests": {"memory": "1Gi"}})
    );
}

#[tokio::test]
async fn quantities_are_stored_in_their_canonical_form() {
    let server = FakeApiServer::new();
    let mut odd = pod("1024Mi");
    odd["spec"]["containers"][0]["resources"]["requests"] =
        json!({"memory": "0.5Gi", "cpu": "1000m"});
    let created = json_of(
        &api(&server, "", "v1", "Pod", "pods")
            .create(&PostParams::default(), &object(odd))
            .await
            .unwrap(),
    );
    assert_eq!(
        container_resources(&created),
        json!({"limits": {"memory": "1Gi"}, "requests": {"memory": "512Mi", "cpu": "1"}})
    );
}

#[tokio::test]
async fn a_request_above_its_limit_is_invalid_in_pods_and_templates() {
    let server = FakeApiServer::new();
    let mut over = pod("1Gi");
    over["spec"]["containers"][0]["resources"]["requests"] = json!({"memory": "2Gi"});
    let status = refusal(
        api(&server, "", "v1", "Pod", "pods")
            .create(&PostParams::default(), &object(over))
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        status.message,
        "Pod \"web-1\" is invalid: spec.containers[0].resources.requests: Invalid value: \"2Gi\": must be less than or equal to memory limit"
    );
    let deployments = api(&server, "apps", "v1", "Deployment", "deployments");
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "app:1",
                "resources": {"requests": {"memory": "512Mi"}, "limits": {"memory": "512Mi"}}}]}}}});
    deployments
        .create(&PostParams::default(), &object(deployment))
        .await
        .unwrap();
    let status = refusal(
        deployments
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                    {"name": "app", "resources": {"limits": {"memory": "256Mi"}}}]}}}})),
            )
            .await,
    );
    assert_eq!(
        status.message,
        "Deployment.apps \"web\" is invalid: spec.template.spec.containers[0].resources.requests: Invalid value: \"512Mi\": must be less than or equal to memory limit"
    );
}

#[tokio::test]
async fn a_created_pod_gets_the_registrys_status_and_a_generated_name_after_admission() {
    let server = FakeApiServer::new();
    let seen = recording_webhook(&server, |_| {});
    let mut made = pod("256Mi");
    made["metadata"] = json!({"generateName": "web-7d9f8c6b5-", "labels": {"app": "web"}});
    made["status"] = json!({"phase": "Running"});
    let created = json_of(
        &api(&server, "", "v1", "Pod", "pods")
            .create(&PostParams::default(), &object(made))
            .await
            .unwrap(),
    );
    let shown = seen.lock().unwrap()[0].1.clone();
    assert!(
        shown["metadata"]["name"].is_null(),
        "a mutating webhook sees no name yet: {}",
        shown["metadata"]
    );
    let name = created["metadata"]["name"].as_str().unwrap();
    let suffix = name.strip_prefix("web-7d9f8c6b5-").expect("the prefix");
    assert_eq!(suffix.len(), 5);
    assert!(
        suffix
            .chars()
            .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
        "{name}"
    );
    assert_eq!(
        created["status"],
        json!({"phase": "Pending", "qosClass": "Burstable"}),
        "the status sent on CREATE is replaced"
    );
}

#[tokio::test]
async fn a_claim_is_held_to_the_limitranges_storage_bounds_and_gets_the_default_class() {
    let server = FakeApiServer::new();
    server.put(
        &Collection::core(NS, "limitranges"),
        json!({"apiVersion": "v1", "kind": "LimitRange",
        "metadata": {"name": "storage"}, "spec": {"limits": [{"type": "PersistentVolumeClaim",
            "min": {"storage": "1Gi"}, "max": {"storage": "5Gi"}}]}}),
    );
    server.put(
        &Collection::new("apis/storage.k8s.io/v1", "", "storageclasses"),
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "provisioner": "x",
            "metadata": {"name": "fast", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}}),
    );
    let claims = api(
        &server,
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
    );
    let status = refusal(
        claims
            .create(&PostParams::default(), &object(claim("10Gi")))
            .await,
    );
    assert_eq!(
        status.message,
        "persistentvolumeclaims \"data\" is forbidden: maximum storage usage per PersistentVolumeClaim is 5Gi, but request is 10Gi"
    );
    let created = json_of(
        &claims
            .create(&PostParams::default(), &object(claim("3Gi")))
            .await
            .unwrap(),
    );
    assert_eq!(created["spec"]["storageClassName"], "fast");
    // An expansion is judged too.
    let collection = Collection::core(NS, "persistentvolumeclaims");
    let mut bound = server.get(&collection, "data").unwrap();
    bound["status"] = json!({"phase": "Bound"});
    server.put(&collection, bound);
    let status = refusal(
        claims
            .patch(
                "data",
                &PatchParams::default(),
                &merge(json!({"spec": {"resources": {"requests": {"storage": "6Gi"}}}})),
            )
            .await,
    );
    assert_eq!(
        status.message,
        "persistentvolumeclaims \"data\" is forbidden: maximum storage usage per PersistentVolumeClaim is 5Gi, but request is 6Gi"
    );
}

// --- ResourceQuota (issue 14, 5) ---

fn quota(name: &str, hard: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name}, "spec": {"hard": hard}})
}

fn quotas() -> Collection {
    Collection::core(NS, "resourcequotas")
}

fn pod_named(name: &str, limit: &str, request: &str) -> Value {
    let mut pod = pod(limit);
    pod["metadata"]["name"] = json!(name);
    pod["spec"]["containers"][0]["resources"]["requests"] = json!({"memory": request});
    pod
}

#[tokio::test]
async fn a_pod_over_the_quota_is_refused_with_the_apiservers_wording() {
    let server = FakeApiServer::new();
    server.put(
        &quotas(),
        quota(
            "mem",
            json!({"limits.memory": "768Mi", "requests.memory": "768Mi"}),
        ),
    );
    assert_eq!(
        server.get(&quotas(), "mem").unwrap()["status"],
        json!({"hard": {"limits.memory": "768Mi", "requests.memory": "768Mi"},
            "used": {"limits.memory": "0", "requests.memory": "0"}}),
        "the controller writes hard and used at once"
    );
    let pods = api(&server, "", "v1", "Pod", "pods");
    let mut raised = pod_named("x", "1Gi", "256Mi");
    raised["metadata"] = json!({"generateName": "quota-7d9f8c6b5-"});
    let status = refusal(pods.create(&PostParams::default(), &object(raised)).await);
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    let message = status
        .message
        .strip_prefix("pods \"quota-7d9f8c6b5-")
        .expect("the generated name");
    assert_eq!(
        &message[5..],
        "\" is forbidden: exceeded quota: mem, requested: limits.memory=1Gi, used: limits.memory=0, limited: limits.memory=768Mi"
    );

    pods.create(
        &PostParams::default(),
        &object(pod_named("a", "512Mi", "256Mi")),
    )
    .await
    .expect("fits");
    assert_eq!(
        server.get(&quotas(), "mem").unwrap()["status"]["used"],
        json!({"limits.memory": "512Mi", "requests.memory": "256Mi"})
    );
    let status = refusal(
        pods.create(
            &PostParams::default(),
            &object(pod_named("b", "600Mi", "600Mi")),
        )
        .await,
    );
    assert_eq!(
        status.message,
        "pods \"b\" is forbidden: exceeded quota: mem, requested: limits.memory=600Mi,requests.memory=600Mi, used: limits.memory=512Mi,requests.memory=256Mi, limited: limits.memory=768Mi,requests.memory=768Mi"
    );
    // A dry run is judged, not billed; a deleted pod frees its share.
    pods.create(
        &PostParams {
            dry_run: true,
            ..PostParams::default()
        },
        &object(pod_named("c", "256Mi", "256Mi")),
    )
    .await
    .expect("fits");
    assert_eq!(
        server.get(&quotas(), "mem").unwrap()["status"]["used"]["limits.memory"],
        "512Mi"
    );
    server.remove(&Collection::core(NS, "pods"), "a");
    assert_eq!(
        server.get(&quotas(), "mem").unwrap()["status"]["used"],
        json!({"limits.memory": "0", "requests.memory": "0"})
    );
}

#[tokio::test]
async fn a_pod_that_states_no_resource_a_quota_tracks_is_refused() {
    let server = FakeApiServer::new();
    server.put(
        &quotas(),
        quota(
            "mem",
            json!({"limits.memory": "1Gi", "requests.memory": "1Gi", "pods": "10"}),
        ),
    );
    let mut bare = pod("1Gi");
    bare["spec"]["containers"][0]["resources"] = json!({});
    let status = refusal(
        api(&server, "", "v1", "Pod", "pods")
            .create(&PostParams::default(), &object(bare))
            .await,
    );
    assert_eq!(
        status.message,
        "pods \"web-1\" is forbidden: failed quota: mem: must specify limits.memory,requests.memory"
    );
}

#[tokio::test]
async fn scoped_quotas_count_only_the_pods_their_scopes_select() {
    let server = FakeApiServer::new();
    let mut best_effort = quota("best-effort", json!({"pods": "1"}));
    best_effort["spec"]["scopes"] = json!(["BestEffort"]);
    server.put(&quotas(), best_effort);
    let mut high = quota("high", json!({"limits.memory": "512Mi"}));
    high["spec"]["scopeSelector"] = json!({"matchExpressions": [
        {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]});
    server.put(&quotas(), high);
    let mut terminating = quota("jobs", json!({"limits.memory": "256Mi"}));
    terminating["spec"]["scopes"] = json!(["Terminating"]);
    server.put(&quotas(), terminating);
    let pods = api(&server, "", "v1", "Pod", "pods");

    // A burstable pod without a class and without a deadline: no quota applies.
    pods.create(
        &PostParams::default(),
        &object(pod_named("plain", "1Gi", "1Gi")),
    )
    .await
    .expect("no quota selects it");
    let mut urgent = pod_named("urgent", "1Gi", "1Gi");
    urgent["spec"]["priorityClassName"] = json!("high");
    let status = refusal(pods.create(&PostParams::default(), &object(urgent)).await);
    assert_eq!(
        status.message,
        "pods \"urgent\" is forbidden: exceeded quota: high, requested: limits.memory=1Gi, used: limits.memory=0, limited: limits.memory=512Mi"
    );
    let mut batch = pod_named("batch", "512Mi", "512Mi");
    batch["spec"]["activeDeadlineSeconds"] = json!(60);
    let status = refusal(pods.create(&PostParams::default(), &object(batch)).await);
    assert!(
        status.message.contains("exceeded quota: jobs"),
        "{}",
        status.message
    );
    let mut free = pod("1Gi");
    free["metadata"]["name"] = json!("free-1");
    free["spec"]["containers"][0]["resources"] = json!({});
    pods.create(&PostParams::default(), &object(free.clone()))
        .await
        .expect("one best-effort pod");
    free["metadata"]["name"] = json!("free-2");
    let status = refusal(pods.create(&PostParams::default(), &object(free)).await);
    assert_eq!(
        status.message,
        "pods \"free-2\" is forbidden: exceeded quota: best-effort, requested: pods=1, used: pods=1, limited: pods=1"
    );
    assert_eq!(
        server.get(&quotas(), "high").unwrap()["status"]["used"],
        json!({"limits.memory": "0"}),
        "the unscoped pod is not billed to a scoped quota"
    );
}

#[tokio::test]
async fn claims_are_billed_for_storage_per_class_and_for_their_growth() {
    let server = FakeApiServer::new();
    server.put(
        &quotas(),
        quota(
            "storage",
            json!({"requests.storage": "4Gi", "fast.storageclass.storage.k8s.io/requests.storage": "2Gi",
                "persistentvolumeclaims": "5"}),
        ),
    );
    let claims = api(
        &server,
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
    );
    let mut fast = claim("3Gi");
    fast["metadata"]["name"] = json!("cache");
    fast["spec"]["storageClassName"] = json!("fast");
    let status = refusal(claims.create(&PostParams::default(), &object(fast)).await);
    assert_eq!(
        status.message,
        "persistentvolumeclaims \"cache\" is forbidden: exceeded quota: storage, requested: fast.storageclass.storage.k8s.io/requests.storage=3Gi, used: fast.storageclass.storage.k8s.io/requests.storage=0, limited: fast.storageclass.storage.k8s.io/requests.storage=2Gi"
    );
    claims
        .create(&PostParams::default(), &object(claim("3Gi")))
        .await
        .expect("no class: only requests.storage");
    assert_eq!(
        server.get(&quotas(), "storage").unwrap()["status"]["used"],
        json!({"requests.storage": "3Gi", "fast.storageclass.storage.k8s.io/requests.storage": "0",
            "persistentvolumeclaims": "1"})
    );
    let collection = Collection::core(NS, "persistentvolumeclaims");
    let mut bound = server.get(&collection, "data").unwrap();
    bound["status"] = json!({"phase": "Bound"});
    server.put(&collection, bound);
    let status = refusal(
        claims
            .patch(
                "data",
                &PatchParams::default(),
                &merge(json!({"spec": {"resources": {"requests": {"storage": "5Gi"}}}})),
            )
            .await,
    );
    assert_eq!(
        status.message,
        "persistentvolumeclaims \"data\" is forbidden: exceeded quota: storage, requested: requests.storage=2Gi, used: requests.storage=3Gi, limited: requests.storage=4Gi"
    );
}

#[tokio::test]
async fn terminal_pods_and_object_counts_follow_the_quota_controller() {
    let server = FakeApiServer::new();
    server.put(
        &quotas(),
        quota(
            "counts",
            json!({"count/configmaps": "1", "limits.memory": "1Gi"}),
        ),
    );
    let maps: Api<ConfigMap> = Api::namespaced(server.client(), NS);
    maps.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "a"}})).unwrap(),
    )
    .await
    .unwrap();
    let status = refusal(
        maps.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "b"}})).unwrap(),
        )
        .await,
    );
    assert_eq!(
        status.message,
        "configmaps \"b\" is forbidden: exceeded quota: counts, requested: count/configmaps=1, used: count/configmaps=1, limited: count/configmaps=1"
    );
    let pods = Collection::core(NS, "pods");
    let mut done = pod_named("done", "1Gi", "1Gi");
    done["status"] = json!({"phase": "Running"});
    server.put(&pods, done.clone());
    assert_eq!(
        server.get(&quotas(), "counts").unwrap()["status"]["used"]["limits.memory"],
        "1Gi"
    );
    done["status"]["phase"] = json!("Failed");
    server.put(&pods, done);
    assert_eq!(
        server.get(&quotas(), "counts").unwrap()["status"]["used"]["limits.memory"],
        "0",
        "a terminal pod uses no compute quota"
    );
}

// --- the request log and status subresources (issue 16: "written through the status subresource") ---

#[tokio::test]
async fn the_request_log_records_method_path_query_patch_type_and_user() {
    let server = FakeApiServer::new();
    let deployments = Collection::apps(NS, "deployments");
    server.put(&deployments, json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}}));
    let api = api(&server, "apps", "v1", "Deployment", "deployments");
    api.get("web").await.unwrap();
    api.patch(
        "web",
        &PatchParams::apply("ci").force(),
        &Patch::Apply(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 2}}),
        ),
    )
    .await
    .unwrap();
    let as_controller =
        support::fake_apiserver::UserInfo::service_account("kube-system", "replicaset-controller");
    Api::<Pod>::namespaced(server.client_as(&as_controller), NS)
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();

    let log = server.request_log();
    assert_eq!(log.len(), 3);
    assert_eq!(
        (
            log[0].method.as_str(),
            log[0].path.as_str(),
            log[0].is_write()
        ),
        (
            "GET",
            "/apis/apps/v1/namespaces/shop/deployments/web",
            false
        )
    );
    assert_eq!(log[1].method, axum::http::Method::PATCH);
    assert_eq!(
        log[1].patch_type,
        Some(support::fake_apiserver::patches::PatchType::Apply)
    );
    assert_eq!(
        log[1].query.get("fieldManager").map(String::as_str),
        Some("ci")
    );
    assert_eq!(log[1].query.get("force").map(String::as_str), Some("true"));
    assert_eq!(log[1].body.as_ref().unwrap()["spec"]["replicas"], 2);
    assert_eq!(log[1].code, 200);
    assert_eq!(log[1].user, "kubernetes-admin");
    assert_eq!(
        log[2].user,
        "system:serviceaccount:kube-system:replicaset-controller"
    );
    assert_eq!(
        log[2].query.get("labelSelector").map(String::as_str),
        Some("app=web")
    );
    assert_eq!(server.writes_to(&deployments).len(), 1);
    assert_eq!(
        server.writes_to(&Collection::apps("", "deployments")).len(),
        1,
        "any namespace"
    );
    assert!(
        server
            .writes_to(&Collection::apps(NS, "statefulsets"))
            .is_empty()
    );
    server.clear_request_log();
    assert!(server.request_log().is_empty());
}

#[tokio::test]
async fn cert_manager_certificates_change_status_only_through_the_status_subresource() {
    let server = FakeApiServer::new();
    let certificates = Collection::new("apis/cert-manager.io/v1", NS, "certificates");
    server.put(
        &certificates,
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "shop"}, "spec": {"secretName": "shop-tls"},
        "status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
    );
    let api = api(
        &server,
        "cert-manager.io",
        "v1",
        "Certificate",
        "certificates",
    );
    let mut sent = json_of(&api.get("shop").await.unwrap());
    sent["status"]["conditions"] = json!([{"type": "Issuing", "status": "True"}]);
    let replaced = json_of(
        &api.replace("shop", &PostParams::default(), &object(sent.clone()))
            .await
            .unwrap(),
    );
    assert_eq!(
        replaced["status"]["conditions"][0]["type"], "Ready",
        "the main resource keeps the stored status"
    );
    sent["metadata"]["resourceVersion"] = replaced["metadata"]["resourceVersion"].clone();
    sent["spec"]["secretName"] = json!("other");
    let written = json_of(
        &api.replace_status("shop", &PostParams::default(), &object(sent.clone()))
            .await
            .unwrap(),
    );
    assert_eq!(written["status"]["conditions"][0]["type"], "Issuing");
    assert_eq!(
        written["spec"]["secretName"], "shop-tls",
        "the status subresource keeps the stored spec"
    );
    let status_writes: Vec<_> = server
        .writes_to(&certificates)
        .into_iter()
        .filter(|r| r.subresource().as_deref() == Some("status"))
        .collect();
    assert_eq!(status_writes.len(), 1);
    assert_eq!(status_writes[0].method, axum::http::Method::PUT);
    // Every patch type reaches the status subresource, and changes the status only.
    let patched = json_of(
        &api.patch_status(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"secretName": "x"}, "status": {"notAfter": "2027-01-01T00:00:00Z"}})),
        )
        .await
        .unwrap(),
    );
    assert_eq!(patched["status"]["notAfter"], "2027-01-01T00:00:00Z");
    assert_eq!(patched["spec"]["secretName"], "shop-tls");
}

// --- graceful deletion (issue 16, 2) ---

fn scheduled_pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "app:1",
            "resources": {"limits": {"memory": "256Mi"}}}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": "app", "restartCount": 3,
            "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]}})
}

fn seconds_until(server: &FakeApiServer, pod: &Value) -> i64 {
    let deadline: jiff::Timestamp = pod["metadata"]["deletionTimestamp"]
        .as_str()
        .expect("a deletionTimestamp")
        .parse()
        .unwrap();
    deadline.duration_since(server.now()).as_secs()
}

#[tokio::test]
async fn a_deleted_pod_terminates_for_its_grace_period_and_only_then_is_gone() {
    let server = FakeApiServer::new();
    let collection = Collection::core(NS, "pods");
    server.put(&collection, scheduled_pod("web-1"));
    let pods: Api<Pod> = Api::namespaced(server.client(), NS);
    let from = server.resource_version().to_string();
    let mut watch = pods
        .watch(&WatchParams::default(), &from)
        .await
        .unwrap()
        .boxed();

    let answer = pods
        .delete("web-1", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    let terminating = serde_json::to_value(answer.left().expect("the pod, still there")).unwrap();
    assert_eq!(terminating["metadata"]["deletionGracePeriodSeconds"], 30);
    assert!((29..=30).contains(&seconds_until(&server, &terminating)));
    let stored = server.get(&collection, "web-1").expect("the pod stays");
    assert_eq!(
        stored["status"]["containerStatuses"][0]["lastState"]["terminated"]["reason"], "OOMKilled",
        "with its failing status"
    );
    match watch.next().await {
        Some(Ok(WatchEvent::Modified(pod))) => {
            assert!(pod.metadata.deletion_timestamp.is_some())
        }
        other => panic!("expected MODIFIED with a deletionTimestamp, got {other:?}"),
    }

    // Deleting it again with a longer grace changes nothing; a shorter one moves the deadline.
    let again = pods
        .delete(
            "web-1",
            &kube::api::DeleteParams::default().grace_period(60),
        )
        .await
        .unwrap();
    let again = serde_json::to_value(again.left().unwrap()).unwrap();
    assert_eq!(again["metadata"]["deletionGracePeriodSeconds"], 30);
    let shorter = pods
        .delete(
            "web-1",
            &kube::api::DeleteParams::default().grace_period(10),
        )
        .await
        .unwrap();
    let shorter = serde_json::to_value(shorter.left().unwrap()).unwrap();
    assert_eq!(shorter["metadata"]["deletionGracePeriodSeconds"], 10);
    assert!((9..=10).contains(&seconds_until(&server, &shorter)));

    assert!(server.end_grace_period(&collection, "web-1"));
    assert!(server.get(&collection, "web-1").is_none());
    loop {
        match watch.next().await {
            Some(Ok(WatchEvent::Modified(_))) => continue,
            Some(Ok(WatchEvent::Deleted(pod))) => {
                assert_eq!(pod.metadata.name.as_deref(), Some("web-1"));
                break;
            }
            other => panic!("expected DELETED, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_grace_period_comes_from_the_request_the_pod_or_is_zero() {
    let server = FakeApiServer::new();
    let collection = Collection::core(NS, "pods");
    let pods: Api<Pod> = Api::namespaced(server.client(), NS);
    let delete = kube::api::DeleteParams::default();

    let mut quick = scheduled_pod("quick");
    quick["spec"]["terminationGracePeriodSeconds"] = json!(5);
    server.put(&collection, quick);
    let answer =
        serde_json::to_value(pods.delete("quick", &delete).await.unwrap().left().unwrap()).unwrap();
    assert_eq!(answer["metadata"]["deletionGracePeriodSeconds"], 5);

    server.put(&collection, scheduled_pod("now"));
    pods.delete("now", &kube::api::DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert!(
        server.get(&collection, "now").is_none(),
        "gracePeriodSeconds=0 removes at once"
    );

    let mut unscheduled = scheduled_pod("pending");
    unscheduled["spec"]["nodeName"] = Value::Null;
    server.put(&collection, unscheduled);
    pods.delete("pending", &delete).await.unwrap();
    assert!(
        server.get(&collection, "pending").is_none(),
        "a pod never scheduled has nothing to stop"
    );

    let mut failed = scheduled_pod("failed");
    failed["status"]["phase"] = json!("Failed");
    server.put(&collection, failed);
    pods.delete("failed", &delete).await.unwrap();
    assert!(
        server.get(&collection, "failed").is_none(),
        "a terminal pod goes at once"
    );
}

#[tokio::test]
async fn a_grace_period_ends_in_time_and_when_the_clock_moves_past_it() {
    let server = FakeApiServer::new();
    let collection = Collection::core(NS, "pods");
    let pods: Api<Pod> = Api::namespaced(server.client(), NS);
    let mut short = scheduled_pod("short");
    short["spec"]["terminationGracePeriodSeconds"] = json!(1);
    server.put(&collection, short);
    server.put(&collection, scheduled_pod("long"));
    pods.delete("short", &Default::default()).await.unwrap();
    pods.delete("long", &Default::default()).await.unwrap();
    assert!(server.get(&collection, "short").is_some());
    support::eventually("the one-second grace ends", || {
        server.get(&collection, "short").is_none()
    })
    .await;
    assert!(
        server.get(&collection, "long").is_some(),
        "30 s have not passed"
    );
    server.advance_clock(std::time::Duration::from_secs(31));
    assert!(server.get(&collection, "long").is_none());
}

#[tokio::test]
async fn an_eviction_deletes_gracefully_too_and_a_terminating_pod_still_uses_its_quota() {
    let server = FakeApiServer::new();
    server.put(&quotas(), quota("mem", json!({"limits.memory": "1Gi"})));
    let collection = Collection::core(NS, "pods");
    server.put(&collection, scheduled_pod("web-1"));
    let pods: Api<Pod> = Api::namespaced(server.client(), NS);
    pods.evict("web-1", &EvictParams::default()).await.unwrap();
    let evicted = server.get(&collection, "web-1").expect("terminating");
    assert_eq!(evicted["metadata"]["deletionGracePeriodSeconds"], 30);
    assert_eq!(
        server.get(&quotas(), "mem").unwrap()["status"]["used"]["limits.memory"],
        "256Mi",
        "billed until it is gone"
    );
    server.end_grace_periods();
    assert_eq!(
        server.get(&quotas(), "mem").unwrap()["status"]["used"]["limits.memory"],
        "0"
    );
}

#[tokio::test]
async fn delete_preconditions_and_finalizers_are_the_registrys() {
    let server = FakeApiServer::new();
    let collection = Collection::core(NS, "pods");
    server.put(&collection, scheduled_pod("web-1"));
    let pods: Api<Pod> = Api::namespaced(server.client(), NS);
    let status = refusal(
        pods.delete(
            "web-1",
            &kube::api::DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid: Some("other".into()),
                    resource_version: None,
                }),
                ..Default::default()
            },
        )
        .await,
    );
    let uid = server.get(&collection, "web-1").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        status.message,
        format!(
            "Operation cannot be fulfilled on Pod \"web-1\": the UID in the precondition (other) does not match the UID in record ({uid}). The object might have been deleted and then recreated"
        )
    );

    let maps: Api<ConfigMap> = Api::namespaced(server.client(), NS);
    maps.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "held", "finalizers": ["example.com/keep"]}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    maps.delete("held", &Default::default()).await.unwrap();
    let held = server
        .get(&Collection::core(NS, "configmaps"), "held")
        .expect("kept for its finalizer");
    assert!(held["metadata"]["deletionTimestamp"].is_string());
    maps.patch(
        "held",
        &PatchParams::default(),
        &merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(
        server
            .get(&Collection::core(NS, "configmaps"), "held")
            .is_none(),
        "gone with its last finalizer"
    );
}

// --- watch and list (issue 16, 6) ---

/// The next watch event, or `None` when nothing comes within 5 s.
async fn next_within<S: futures::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
        .await
        .ok()
        .flatten()
}

fn labelled_pod(name: &str, app: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]}, "status": {"phase": "Running"}})
}

fn names(list: &kube::core::ObjectList<Pod>) -> Vec<String> {
    list.items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn a_paged_list_serves_every_page_from_the_first_pages_resource_version() {
    let server = FakeApiServer::new();
    let collection = Collection::core(NS, "pods");
    for name in ["a", "b", "c", "d", "e"] {
        server.put(&collection, labelled_pod(name, "web"));
    }
    let pods: Api<Pod> = Api::namespaced(server.client(), NS);
    let first = pods.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(names(&first), ["a", "b"]);
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    let token = first.metadata.continue_.clone().expect("a continue token");
    // Meanwhile: one pod is deleted, one added, one changed.
    server.remove(&collection, "d");
    server.put(&collection, labelled_pod("bb", "web"));
    server.put(&collection, labelled_pod("c", "api"));
    let second = pods
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(
        names(&second),
        ["c", "d"],
        "the snapshot of the first page: bb not yet there, d still there"
    );
    assert_eq!(
        second.items[0].metadata.labels.as_ref().unwrap()["app"],
        "web",
        "c as it was"
    );
    assert_eq!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );
    let last = pods
        .list(
            &ListParams::default()
                .limit(2)
                .continue_token(second.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(names(&last), ["e"]);
    assert!(last.metadata.continue_.is_none());

    // resourceVersion=0 is served from the watch cache, whole (kube omits it with a limit, so
    // the request is sent by hand).
    let cached = raw_get(
        &server,
        "/api/v1/namespaces/shop/pods?limit=2&resourceVersion=0",
    )
    .await;
    assert_eq!(cached["items"].as_array().unwrap().len(), 5);
    assert!(cached["metadata"]["continue"].is_null());
}

/// GETs `uri` from the server's router, for requests kube's client would not send.
async fn raw_get(server: &FakeApiServer, uri: &str) -> Value {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let request = axum::http::Request::get(uri)
        .body(axum::body::Body::empty())
        .unwrap();
    let response = server.router().oneshot(request).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn a_continue_token_older_than_the_compacted_history_is_gone() {
    let server = FakeApiServer::new();
    let collection = Collection::core(NS, "pods");
    for name in ["a", "b", "c"] {
        server.put(&collection, labelled_pod(name, "web"));
    }
    let pods: Api<Pod> = Api::namespaced(server.client(), NS);
    let first = pods.list(&ListParams::default().limit(1)).await.unwrap();
    server.put(&collection, labelled_pod("aa", "web"));
    server.expire_watches();
    let status = refusal(
        pods.list(
            &ListParams::default()
                .limit(1)
                .continue_token(first.metadata.continue_.as_deref().unwrap()),
        )
        .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
    assert!(
        status.message.starts_with(
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results."
        ),
        "{}",
        status.message
    );
    let inconsistent = status
        .metadata
        .and_then(|m| m.continue_)
        .expect("an inconsistent token");
    let rest = pods
        .list(&ListParams::default().continue_token(&inconsistent))
        .await
        .unwrap();
    assert_eq!(names(&rest), ["aa", "b", "c"], "the current state after a");
}

#[tokio::test]
async fn a_kube_runtime_watcher_pages_its_initial_list() {
    let server = FakeApiServer::new();
    let collection = Collection::core(NS, "pods");
    for i in 0..5 {
        server.put(&collection, labelled_pod(&format!("p{i}"), "web"));
    }
    let pods: Api<Pod> = Api::namespaced(server.client(), NS);
    let mut events = watcher(pods, watcher::Config::default().page_size(2)).boxed();
    let mut seen = 0;
    loop {
        match events.next().await.unwrap().unwrap() {
            watcher::Event::InitApply(_) => seen += 1,
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(seen, 5);
    let lists: Vec<_> = server
        .request_log()
        .into_iter()
        .filter(|r| !r.is_watch() && r.query.contains_key("limit"))
        .collect();
    assert_eq!(lists.len(), 3, "three pages of two");
}

#[tokio::test]
async fn a_watch_with_a_selector_sees_objects_leave_and_enter_it() {
    let server = FakeApiServer::new();
    let collection = Collection::core(NS, "pods");
    server.put(&collection, labelled_pod("web-1", "web"));
    let pods: Api<Pod> = Api::namespaced(server.client(), NS);
    let from = server.resource_version().to_string();
    let mut by_label = pods
        .watch(&WatchParams::default().labels("app=web"), &from)
        .await
        .unwrap()
        .boxed();
    let mut by_field = pods
        .watch(
            &WatchParams::default().fields("status.phase=Running"),
            &from,
        )
        .await
        .unwrap()
        .boxed();
    server.put(&collection, labelled_pod("web-1", "api"));
    match next_within(&mut by_label).await {
        Some(Ok(WatchEvent::Deleted(pod))) => {
            assert_eq!(
                pod.metadata.labels.unwrap()["app"],
                "web",
                "the last content that matched"
            );
        }
        other => panic!("expected DELETED on leaving the selector, got {other:?}"),
    }
    server.put(&collection, labelled_pod("web-1", "web"));
    assert!(
        matches!(
            next_within(&mut by_label).await,
            Some(Ok(WatchEvent::Added(_)))
        ),
        "ADDED on entering it"
    );
    let mut failed = labelled_pod("web-1", "web");
    failed["status"]["phase"] = json!("Failed");
    server.put(&collection, failed);
    assert!(matches!(
        next_within(&mut by_label).await,
        Some(Ok(WatchEvent::Modified(_)))
    ));
    let mut kinds = Vec::new();
    for _ in 0..3 {
        match next_within(&mut by_field).await {
            Some(Ok(WatchEvent::Modified(_))) => kinds.push("MODIFIED"),
            Some(Ok(WatchEvent::Deleted(_))) => kinds.push("DELETED"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        kinds,
        ["MODIFIED", "MODIFIED", "DELETED"],
        "the phase leaving Running"
    );
}

#[tokio::test]
async fn bookmarks_come_only_to_watches_that_ask_and_timeout_seconds_ends_a_watch() {
    let server = FakeApiServer::new();
    let collection = Collection::core(NS, "pods");
    server.put(&collection, labelled_pod("web-1", "web"));
    let pods: Api<Pod> = Api::namespaced(server.client(), NS);
    let from = server.resource_version().to_string();
    let mut asking = pods
        .watch(&WatchParams::default().timeout(3), &from)
        .await
        .unwrap()
        .boxed();
    let mut plain = pods
        .watch(&WatchParams::default().disable_bookmarks(), &from)
        .await
        .unwrap()
        .boxed();
    server.put(&collection, labelled_pod("web-2", "web"));
    server.send_bookmarks();
    let current = server.resource_version().to_string();
    assert!(matches!(
        asking.next().await,
        Some(Ok(WatchEvent::Added(_)))
    ));
    match asking.next().await {
        Some(Ok(WatchEvent::Bookmark(bookmark))) => {
            assert_eq!(bookmark.metadata.resource_version, current)
        }
        other => panic!("expected a BOOKMARK, got {other:?}"),
    }
    assert!(matches!(plain.next().await, Some(Ok(WatchEvent::Added(_)))));
    server.put(&collection, labelled_pod("web-3", "web"));
    assert!(
        matches!(plain.next().await, Some(Ok(WatchEvent::Added(_)))),
        "no bookmark for a watch that did not ask"
    );
    // timeoutSeconds=3: a bookmark about 2 s before the end, then the stream ends.
    let started = std::time::Instant::now();
    assert!(matches!(
        asking.next().await,
        Some(Ok(WatchEvent::Added(_)))
    ));
    let bounded = std::time::Duration::from_secs(10);
    assert!(matches!(
        tokio::time::timeout(bounded, asking.next()).await,
        Ok(Some(Ok(WatchEvent::Bookmark(_))))
    ));
    assert!(
        tokio::time::timeout(bounded, asking.next())
            .await
            .expect("the watch ends within its timeout")
            .is_none(),
        "the watch ends"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

// --- server-side apply with field ownership (issue 16, 4) ---

fn web_deployment(replicas: i64, image: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"team": "a"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": image}]}}}})
}

#[tokio::test]
async fn an_apply_that_changes_another_managers_field_conflicts_unless_forced() {
    let server = FakeApiServer::new();
    let deployments = api(&server, "apps", "v1", "Deployment", "deployments");
    deployments
        .create(
            &PostParams {
                field_manager: Some("kubectl-client-side-apply".into()),
                ..PostParams::default()
            },
            &object(web_deployment(2, "app:1")),
        )
        .await
        .unwrap();
    let managed = &server
        .get(&Collection::apps(NS, "deployments"), "web")
        .unwrap()["metadata"]["managedFields"][0];
    assert_eq!(
        (
            &managed["manager"],
            &managed["operation"],
            &managed["apiVersion"]
        ),
        (
            &json!("kubectl-client-side-apply"),
            &json!("Update"),
            &json!("apps/v1")
        )
    );
    assert!(managed["fieldsV1"]["f:spec"]["f:replicas"].is_object());
    assert!(
        managed["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
            ["k:{\"name\":\"app\"}"]["."]
            .is_object(),
        "{managed}"
    );

    let ci = PatchParams::apply("ci");
    let status = refusal(
        deployments
            .patch("web", &ci, &Patch::Apply(web_deployment(3, "app:1")))
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        status.message,
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    let causes = status.details.unwrap().causes;
    assert_eq!(
        (
            causes[0].reason.as_str(),
            causes[0].field.as_str(),
            causes[0].message.as_str()
        ),
        (
            "FieldManagerConflict",
            ".spec.replicas",
            "conflict with \"kubectl-client-side-apply\" using apps/v1"
        )
    );
    let status = refusal(
        deployments
            .patch("web", &ci, &Patch::Apply(web_deployment(3, "app:2")))
            .await,
    );
    assert_eq!(
        status.message,
        "Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n- .spec.replicas\n- .spec.template.spec.containers[name=\"app\"].image"
    );
    deployments
        .patch("web", &ci, &Patch::Apply(web_deployment(2, "app:1")))
        .await
        .expect("the same values: shared ownership, no conflict");
    let forced = json_of(
        &deployments
            .patch(
                "web",
                &PatchParams::apply("ci").force(),
                &Patch::Apply(web_deployment(3, "app:1")),
            )
            .await
            .expect("force takes the field over"),
    );
    assert_eq!(forced["spec"]["replicas"], 3);
    let kubectl = forced["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "kubectl-client-side-apply")
        .unwrap()
        .clone();
    assert!(
        kubectl["fieldsV1"]["f:spec"]["f:replicas"].is_null(),
        "kubectl no longer owns replicas"
    );
}

#[tokio::test]
async fn fields_an_applier_drops_from_its_configuration_are_removed() {
    let server = FakeApiServer::new();
    let deployments = api(&server, "apps", "v1", "Deployment", "deployments");
    let ci = PatchParams::apply("ci");
    let mut first = web_deployment(2, "app:1");
    first["metadata"]["labels"] = json!({"team": "a", "tier": "web"});
    first["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "app", "image": "app:1", "env": [{"name": "DEBUG", "value": "1"}],
         "resources": {"limits": {"memory": "256Mi"}}},
        {"name": "sidecar", "image": "proxy:1"}]);
    deployments
        .patch("web", &ci, &Patch::Apply(first))
        .await
        .expect("apply creates");
    // Another manager sets the same label (no change: it does not own it) and an annotation.
    deployments
        .patch(
            "web",
            &PatchParams {
                field_manager: Some("kubectl-label".into()),
                ..PatchParams::default()
            },
            &merge(json!({"metadata": {"labels": {"team": "a"}, "annotations": {"owner": "x"}}})),
        )
        .await
        .unwrap();
    let applied = json_of(
        &deployments
            .patch("web", &ci, &Patch::Apply(web_deployment(2, "app:1")))
            .await
            .unwrap(),
    );
    assert_eq!(
        applied["metadata"]["labels"],
        json!({"team": "a"}),
        "tier is gone"
    );
    assert_eq!(
        applied["metadata"]["annotations"],
        json!({"owner": "x"}),
        "not the applier's"
    );
    let containers = &applied["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        containers.as_array().unwrap().len(),
        1,
        "the sidecar is gone: {containers}"
    );
    assert!(
        containers[0]["env"].is_null(),
        "env is gone: {}",
        containers[0]
    );
    assert!(
        containers[0]["resources"]["limits"]["memory"].is_null(),
        "the dropped limit is gone: {}",
        containers[0]
    );

    // A field the applier shares with another applier stays when the applier drops it.
    deployments
        .patch(
            "web",
            &PatchParams::apply("platform"),
            &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "labels": {"team": "a"}}})),
        )
        .await
        .expect("the same value: shared");
    let mut without_team = web_deployment(2, "app:1");
    without_team["metadata"]["labels"] = json!({});
    let applied = json_of(
        &deployments
            .patch("web", &ci, &Patch::Apply(without_team))
            .await
            .unwrap(),
    );
    assert_eq!(applied["metadata"]["labels"], json!({"team": "a"}));
}

// --- the admission chain from the project's MutatingWebhookConfiguration (issue 16, 5) ---

fn fixes_for(entries: &[(&str, &str)]) -> selfheal::webhook::AppState {
    let mut yaml = String::from("fixes:\n");
    for (namespace, resource) in entries {
        yaml.push_str(&format!(
            "  - {{namespace: {namespace}, resource: {resource}, type: memory, value: 512Mi, timestamp: 2026-11-28T00:00:00Z}}\n"
        ));
    }
    support::state_with_document(&FixDocument::parse(&yaml).unwrap())
}

fn pod_in(server: &FakeApiServer, namespace: &str) -> Api<Pod> {
    Api::namespaced(server.client(), namespace)
}

fn limit_of(pod: &Pod) -> String {
    serde_json::to_value(pod).unwrap()["spec"]["containers"][0]["resources"]["limits"]["memory"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn the_manifests_selectors_keep_the_webhook_from_ignored_namespaces_and_objects() {
    let server = FakeApiServer::new();
    let state = fixes_for(&[(NS, "web-1"), ("quiet", "web-1"), ("kube-system", "web-1")]);
    let (backend, reviews) = recording_backend(selfheal::webhook::router(state));
    support::install_manifest_webhook_routed(&server, backend);
    server.put(
        &Collection::core("", "namespaces"),
        json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "quiet", "labels": {"selfheal.io/ignore": "true"}}}),
    );
    let pod_object: Pod = serde_json::from_value(pod("256Mi")).unwrap();
    let raised = pod_in(&server, NS)
        .create(&PostParams::default(), &pod_object)
        .await
        .unwrap();
    assert_eq!(limit_of(&raised), "512Mi", "selfheal's webhook raised it");
    for namespace in ["quiet", "kube-system"] {
        let created = pod_in(&server, namespace)
            .create(&PostParams::default(), &pod_object)
            .await
            .unwrap();
        assert_eq!(limit_of(&created), "256Mi", "{namespace}: not sent");
    }
    let mut ignored = pod("256Mi");
    ignored["metadata"]["name"] = json!("web-2");
    ignored["metadata"]["labels"]["selfheal.io/ignore"] = json!("true");
    pod_in(&server, NS)
        .create(&PostParams::default(), &object_of(ignored))
        .await
        .unwrap();
    assert_eq!(
        reviews.lock().unwrap().len(),
        1,
        "only the pod in the watched namespace"
    );
    // An UPDATE is sent when the old or the new object matches the objectSelector.
    pod_in(&server, NS)
        .patch(
            "web-2",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"selfheal.io/ignore": null}}})),
        )
        .await
        .unwrap();
    assert_eq!(reviews.lock().unwrap().len(), 2, "the new object matches");
    pod_in(&server, NS)
        .patch(
            "web-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"selfheal.io/ignore": "true"}}})),
        )
        .await
        .unwrap();
    assert_eq!(reviews.lock().unwrap().len(), 3, "the old object matches");
    // Subresources are not matched by "pods": the status write is not sent.
    let mut status = serde_json::to_value(pod_in(&server, NS).get("web-1").await.unwrap()).unwrap();
    status["status"] = json!({"phase": "Running"});
    pod_in(&server, NS)
        .replace_status(
            "web-1",
            &PostParams::default(),
            &serde_json::from_value(status).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(reviews.lock().unwrap().len(), 3);
}

fn object_of(value: Value) -> Pod {
    serde_json::from_value(value).unwrap()
}

/// A backend that answers every review with `answer(review)` after `delay`.
fn backend(delay: std::time::Duration, answer: fn(&Value) -> Value) -> axum::Router {
    axum::Router::new().fallback(move |axum::Json(review): axum::Json<Value>| async move {
        tokio::time::sleep(delay).await;
        axum::Json(answer(&review))
    })
}

fn allow(review: &Value) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "response": {"uid": review["request"]["uid"], "allowed": true}})
}

fn configuration(failure_policy: &str, timeout: u64, side_effects: &str) -> Value {
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "test"},
        "webhooks": [{"name": "test.example.com", "admissionReviewVersions": ["v1"],
            "sideEffects": side_effects, "failurePolicy": failure_policy, "timeoutSeconds": timeout,
            "clientConfig": {"service": {"name": "hook", "namespace": "tests", "path": "/mutate"}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                "resources": ["pods"], "scope": "Namespaced"}]}]})
}

fn webhook_configurations() -> Collection {
    Collection::new(
        "apis/admissionregistration.k8s.io/v1",
        "",
        "mutatingwebhookconfigurations",
    )
}

#[tokio::test]
async fn a_slow_webhook_is_ignored_after_its_timeout_or_fails_the_request() {
    let server = FakeApiServer::new();
    // The manifest's webhook: 3 s, failurePolicy Ignore.
    support::install_manifest_webhook_routed(
        &server,
        backend(std::time::Duration::from_secs(30), allow),
    );
    let started = std::time::Instant::now();
    let created = pod_in(&server, NS)
        .create(&PostParams::default(), &object_of(pod("256Mi")))
        .await
        .expect("admitted unchanged");
    let waited = started.elapsed();
    assert_eq!(limit_of(&created), "256Mi");
    assert!(
        waited >= std::time::Duration::from_secs(3) && waited < std::time::Duration::from_secs(10),
        "the timeout decides: {waited:?}"
    );

    let server = FakeApiServer::new();
    server.put(&webhook_configurations(), configuration("Fail", 1, "None"));
    server.route_webhook_service(
        "tests",
        "hook",
        backend(std::time::Duration::from_secs(30), allow),
    );
    let status = refusal(
        pod_in(&server, NS)
            .create(&PostParams::default(), &object_of(pod("256Mi")))
            .await,
    );
    assert_eq!(
        (status.code, status.reason.as_str()),
        (500, "InternalError")
    );
    assert_eq!(
        status.message,
        "Internal error occurred: failed calling webhook \"test.example.com\": Post \"https://hook.tests.svc:443/mutate?timeout=1s\": context deadline exceeded"
    );
    server.unroute_webhook_service("tests", "hook");
    let status = refusal(
        pod_in(&server, NS)
            .create(&PostParams::default(), &object_of(pod("256Mi")))
            .await,
    );
    assert!(
        status.message.ends_with("service \"hook\" not found"),
        "{}",
        status.message
    );
}

#[tokio::test]
async fn a_denial_a_bad_patch_and_a_dry_run_are_answered_as_the_apiserver_does() {
    let server = FakeApiServer::new();
    server.put(
        &webhook_configurations(),
        configuration("Ignore", 5, "None"),
    );
    server.route_webhook_service(
        "tests",
        "hook",
        backend(std::time::Duration::ZERO, |review| {
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": {"uid": review["request"]["uid"], "allowed": false,
                    "status": {"code": 403, "reason": "Forbidden", "message": "no pods today"}}})
        }),
    );
    let status = refusal(
        pod_in(&server, NS)
            .create(&PostParams::default(), &object_of(pod("256Mi")))
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        status.message,
        "admission webhook \"test.example.com\" denied the request: no pods today"
    );

    // A patch that does not apply fails the request, whatever the failure policy.
    server.route_webhook_service(
        "tests",
        "hook",
        backend(std::time::Duration::ZERO, |review| {
            use base64::Engine;
            let patch = json!([{"op": "replace", "path": "/spec/nothing/here", "value": 1}]);
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": {"uid": review["request"]["uid"], "allowed": true, "patchType": "JSONPatch",
                    "patch": base64::engine::general_purpose::STANDARD.encode(patch.to_string())}})
        }),
    );
    let status = refusal(
        pod_in(&server, NS)
            .create(&PostParams::default(), &object_of(pod("256Mi")))
            .await,
    );
    assert_eq!(
        (status.code, status.reason.as_str()),
        (500, "InternalError")
    );

    // A webhook with side effects gets no dry run: the request is refused.
    let server = FakeApiServer::new();
    server.put(
        &webhook_configurations(),
        configuration("Ignore", 5, "Some"),
    );
    server.route_webhook_service("tests", "hook", backend(std::time::Duration::ZERO, allow));
    let status = refusal(
        pod_in(&server, NS)
            .create(
                &PostParams {
                    dry_run: true,
                    ..PostParams::default()
                },
                &object_of(pod("256Mi")),
            )
            .await,
    );
    assert_eq!(
        status.message,
        "admission webhook \"test.example.com\" does not support dry run"
    );
}

// --- workload controllers (issue 14, 5) ---

fn quota_deployment(namespace: &str, replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "quota", "namespace": namespace},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "quota"}},
            "template": {"metadata": {"labels": {"app": "quota"}},
                "spec": {"containers": [{"name": "app", "image": "app:1",
                    "resources": {"limits": {"memory": "256Mi"}, "requests": {"memory": "128Mi"}}}]}}}})
}

fn events_about(server: &FakeApiServer, namespace: &str, name: &str, reason: &str) -> Vec<Value> {
    server
        .list(&Collection::core(namespace, "events"))
        .into_iter()
        .filter(|e| e["involvedObject"]["name"] == name && e["reason"] == reason)
        .collect()
}

fn condition_of(object: &Value, kind: &str) -> Value {
    object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_raise_the_quota_cannot_hold_leaves_the_replicaset_failing_to_create_pods() {
    // Issue 14's scene: quota 768Mi, a fix of 1Gi for Deployment `quota` (manifest 256Mi).
    let server = FakeApiServer::new();
    let namespace = "e2";
    server.put(
        &Collection::core(namespace, "resourcequotas"),
        quota(
            "mem",
            json!({"limits.memory": "768Mi", "requests.memory": "768Mi"}),
        ),
    );
    support::install_webhook(
        &server,
        support::state_with_document(
            &FixDocument::parse(&format!(
                "fixes:\n  - {{namespace: {namespace}, resource: quota, type: memory, value: 1Gi, timestamp: 2026-11-28T00:00:00Z}}\n"
            ))
            .unwrap(),
        ),
    );
    let deployments: Api<DynamicObject> = Api::namespaced_with(
        server.client(),
        namespace,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apps", "v1", "Deployment"),
            "deployments",
        ),
    );
    deployments
        .create(
            &PostParams::default(),
            &object(quota_deployment(namespace, 1)),
        )
        .await
        .unwrap();
    server.reconcile_workloads().await;

    let sets = support::fake_apiserver::controllers::replica_sets_of(&server, namespace, "quota");
    assert_eq!(sets.len(), 1);
    let set = &sets[0];
    let set_name = set["metadata"]["name"].as_str().unwrap();
    let hash = set["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap();
    assert_eq!(set_name, format!("quota-{hash}"));
    assert_eq!(
        set["spec"]["selector"]["matchLabels"]["pod-template-hash"],
        hash
    );
    assert_eq!(set["metadata"]["ownerReferences"][0]["kind"], "Deployment");
    assert_eq!(
        set["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"], "1Gi",
        "the raised template"
    );
    let failed = events_about(&server, namespace, set_name, "FailedCreate");
    assert_eq!(failed.len(), 1, "{failed:?}");
    let event = &failed[0];
    assert_eq!(
        (
            &event["type"],
            &event["source"]["component"],
            &event["involvedObject"]["kind"]
        ),
        (
            &json!("Warning"),
            &json!("replicaset-controller"),
            &json!("ReplicaSet")
        )
    );
    let message = event["message"].as_str().unwrap();
    let rest = message
        .strip_prefix(&format!("Error creating: pods \"{set_name}-"))
        .unwrap_or_else(|| panic!("{message}"));
    assert_eq!(
        &rest[5..],
        "\" is forbidden: exceeded quota: mem, requested: limits.memory=1Gi, used: limits.memory=0, limited: limits.memory=768Mi"
    );
    assert!(
        server.list(&Collection::core(namespace, "pods")).is_empty(),
        "no pod at all"
    );
    let set = server
        .get(&Collection::apps(namespace, "replicasets"), set_name)
        .unwrap();
    let failure = condition_of(&set, "ReplicaFailure");
    assert_eq!(
        (&failure["status"], &failure["reason"]),
        (&json!("True"), &json!("FailedCreate"))
    );
    assert_eq!(
        failure["message"].as_str().unwrap(),
        message.strip_prefix("Error creating: ").unwrap()
    );
    let deployment = server
        .get(&Collection::apps(namespace, "deployments"), "quota")
        .unwrap();
    assert_eq!(
        condition_of(&deployment, "ReplicaFailure")["reason"],
        "FailedCreate"
    );
    assert_eq!(condition_of(&deployment, "Progressing")["status"], "True");

    // A second attempt fails the same way (a new pod name: a new Event).
    server.reconcile_workloads().await;
    assert_eq!(
        events_about(&server, namespace, set_name, "FailedCreate").len(),
        2
    );
    // After progressDeadlineSeconds (600) without progress.
    server.advance_clock(std::time::Duration::from_secs(601));
    server.reconcile_workloads().await;
    let deployment = server
        .get(&Collection::apps(namespace, "deployments"), "quota")
        .unwrap();
    let progressing = condition_of(&deployment, "Progressing");
    assert_eq!(
        (
            &progressing["status"],
            &progressing["reason"],
            &progressing["message"]
        ),
        (
            &json!("False"),
            &json!("ProgressDeadlineExceeded"),
            &json!(format!(
                "ReplicaSet \"{set_name}\" has timed out progressing."
            ))
        )
    );
}

#[tokio::test]
async fn a_deployment_rolls_out_through_its_replicasets_and_pods() {
    let server = FakeApiServer::new();
    server.run_pods(true);
    let deployments = api(&server, "apps", "v1", "Deployment", "deployments");
    let mut deployment = web_deployment(4, "app:1");
    deployment["spec"]["strategy"] = json!({"type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}});
    deployments
        .create(&PostParams::default(), &object(deployment))
        .await
        .unwrap();
    for _ in 0..3 {
        server.reconcile_workloads().await;
    }
    let sets = support::fake_apiserver::controllers::replica_sets_of(&server, NS, "web");
    assert_eq!(sets.len(), 1);
    let first = sets[0]["metadata"]["name"].as_str().unwrap().to_string();
    let pods = server.list(&Collection::core(NS, "pods"));
    assert_eq!(pods.len(), 4);
    for pod in &pods {
        assert!(
            pod["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{first}-"))
        );
        assert_eq!(
            pod["metadata"]["ownerReferences"][0]["name"],
            first.as_str()
        );
        assert_eq!(pod["status"]["phase"], "Running");
    }
    assert_eq!(
        events_about(&server, NS, &first, "SuccessfulCreate").len(),
        4
    );
    let web = server
        .get(&Collection::apps(NS, "deployments"), "web")
        .unwrap();
    assert_eq!(
        (
            &web["status"]["availableReplicas"],
            &condition_of(&web, "Available")["status"]
        ),
        (&json!(4), &json!("True"))
    );
    assert_eq!(
        condition_of(&web, "Progressing")["reason"],
        "NewReplicaSetAvailable"
    );
    let scaled = events_about(&server, NS, "web", "ScalingReplicaSet");
    assert_eq!(
        scaled[0]["message"],
        format!("Scaled up replica set {first} to 4")
    );

    // A new image: a new ReplicaSet; with maxUnavailable 0 the old one goes only as new pods
    // become available.
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": "app:2"}]}}}})),
        )
        .await
        .unwrap();
    server.reconcile_workloads().await;
    let sets = support::fake_apiserver::controllers::replica_sets_of(&server, NS, "web");
    assert_eq!(sets.len(), 2);
    let replicas = |name: &str| {
        server
            .get(&Collection::apps(NS, "replicasets"), name)
            .unwrap()["spec"]["replicas"]
            .clone()
    };
    let second = sets
        .iter()
        .map(|s| s["metadata"]["name"].as_str().unwrap().to_string())
        .find(|n| *n != first)
        .unwrap();
    assert_eq!(replicas(&second), 1, "one surge pod");
    assert_eq!(replicas(&first), 4, "nothing unavailable yet");
    // Every step stays within maxSurge 1 (at most 5 pods wanted) and maxUnavailable 0.
    for _ in 0..10 {
        server.reconcile_workloads().await;
        let total = replicas(&first).as_i64().unwrap() + replicas(&second).as_i64().unwrap();
        assert!(total <= 5, "surge exceeded: {total}");
        let running = server
            .list(&Collection::core(NS, "pods"))
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .count();
        assert!(running >= 4, "availability dropped: {running}");
    }
    assert_eq!((replicas(&first), replicas(&second)), (json!(0), json!(4)));
    let web = server
        .get(&Collection::apps(NS, "deployments"), "web")
        .unwrap();
    assert_eq!(web["status"]["updatedReplicas"], 4);
    assert_eq!(
        server
            .get(&Collection::apps(NS, "replicasets"), &second)
            .unwrap()["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
}

#[tokio::test]
async fn repeated_creation_failures_are_counted_then_combined_as_client_go_does() {
    let server = FakeApiServer::new();
    server.put(&Collection::core(NS, "limitranges"), json!({"apiVersion": "v1", "kind": "LimitRange",
        "metadata": {"name": "limits"}, "spec": {"limits": [{"type": "Container", "max": {"memory": "128Mi"}}]}}));
    let deployments = api(&server, "apps", "v1", "Deployment", "deployments");
    deployments
        .create(&PostParams::default(), &object(web_deployment(1, "app:1")))
        .await
        .unwrap();
    let mut deployment = server
        .get(&Collection::apps(NS, "deployments"), "web")
        .unwrap();
    deployment["spec"]["template"]["spec"]["containers"][0]["resources"] =
        json!({"limits": {"memory": "256Mi"}});
    deployments
        .replace("web", &PostParams::default(), &object(deployment))
        .await
        .unwrap();
    for _ in 0..12 {
        server.reconcile_workloads().await;
    }
    let set = support::fake_apiserver::controllers::replica_sets_of(&server, NS, "web")[0]["metadata"]
        ["name"]
        .as_str()
        .unwrap()
        .to_string();
    let failed = events_about(&server, NS, &set, "FailedCreate");
    assert_eq!(
        failed.len(),
        11,
        "ten distinct messages, then one combined Event"
    );
    let combined: Vec<&Value> = failed
        .iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .unwrap()
                .starts_with("(combined from similar events): Error creating: pods \"")
        })
        .collect();
    assert_eq!(combined.len(), 1);
    assert_eq!(combined[0]["count"], 2, "the 11th and 12th failures");
    assert!(failed[0]["message"].as_str().unwrap().ends_with(
        "is forbidden: maximum memory usage per Container is 128Mi, but limit is 256Mi"
    ));
}

#[tokio::test]
async fn started_controllers_reconcile_by_themselves() {
    let server = FakeApiServer::new();
    server.run_pods(true);
    let _controllers = server.start_controllers();
    api(&server, "apps", "v1", "Deployment", "deployments")
        .create(&PostParams::default(), &object(web_deployment(3, "app:1")))
        .await
        .unwrap();
    support::eventually("the Deployment is available", || {
        server
            .get(&Collection::apps(NS, "deployments"), "web")
            .is_some_and(|d| d["status"]["availableReplicas"] == 3)
    })
    .await;
}

// --- pods/resize (issue 15, 4) ---

/// A Burstable pod (a cpu request without a limit) with the memory given.
fn sized_pod(name: &str, request: &str, limit: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "app:1",
            "resources": {"requests": {"memory": request, "cpu": "100m"}, "limits": {"memory": limit}}}]}})
}

fn guaranteed_pod(name: &str, memory: &str) -> Value {
    let mut pod = sized_pod(name, memory, memory);
    pod["spec"]["containers"][0]["resources"]["limits"]["cpu"] = json!("100m");
    pod
}

async fn resize(server: &FakeApiServer, name: &str, patch: Value) -> Result<Pod, kube::Error> {
    pod_in(server, NS)
        .patch_subresource(
            "resize",
            name,
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await
}

fn memory_patch(request: Option<&str>, limit: Option<&str>) -> Value {
    let mut resources = json!({});
    if let Some(request) = request {
        resources["requests"] = json!({"memory": request});
    }
    if let Some(limit) = limit {
        resources["limits"] = json!({"memory": limit});
    }
    json!({"spec": {"containers": [{"name": "app", "resources": resources}]}})
}

fn applied_memory(server: &FakeApiServer, name: &str) -> (Value, Value) {
    let pod = server.get(&Collection::core(NS, "pods"), name).unwrap();
    let status = &pod["status"]["containerStatuses"][0];
    (
        status["resources"]["limits"]["memory"].clone(),
        status["allocatedResources"]["memory"].clone(),
    )
}

#[tokio::test]
async fn pods_resize_is_served_and_discovered_only_when_enabled() {
    let server = FakeApiServer::new();
    server.run_pods(true);
    server.put(
        &Collection::core(NS, "pods"),
        sized_pod("web-1", "256Mi", "512Mi"),
    );
    let listed = |discovery: &Value| {
        discovery["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "pods/resize")
    };
    assert!(!listed(&raw_get(&server, "/api/v1").await));
    let status = refusal(resize(&server, "web-1", memory_patch(None, Some("1Gi"))).await);
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));

    server.serve_pod_resize(true);
    assert!(listed(&raw_get(&server, "/api/v1").await));
    let resized = resize(&server, "web-1", memory_patch(None, Some("1Gi")))
        .await
        .expect("served");
    assert_eq!(limit_of(&resized), "1Gi");
    assert_eq!(
        applied_memory(&server, "web-1"),
        (json!("1Gi"), json!("256Mi")),
        "the kubelet reports the new limit as applied"
    );
    // The main resource still may not change resources.
    let status = refusal(
        pod_in(&server, NS)
            .patch(
                "web-1",
                &PatchParams::default(),
                &Patch::Strategic(memory_patch(None, Some("2Gi"))),
            )
            .await,
    );
    assert_eq!(status.code, 422);
}

#[tokio::test]
async fn a_resize_may_change_only_cpu_and_memory_and_never_the_qos_class() {
    let server = FakeApiServer::new();
    server.run_pods(true);
    server.serve_pod_resize(true);
    let pods = Collection::core(NS, "pods");
    server.put(&pods, guaranteed_pod("guaranteed", "512Mi"));
    assert_eq!(
        server.get(&pods, "guaranteed").unwrap()["status"]["qosClass"],
        "Guaranteed"
    );
    let status = refusal(resize(&server, "guaranteed", memory_patch(None, Some("1Gi"))).await);
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        status.message,
        "Pod \"guaranteed\" is invalid: spec: Invalid value: \"Guaranteed\": Pod QOS Class may not change as a result of resizing"
    );
    resize(
        &server,
        "guaranteed",
        memory_patch(Some("1Gi"), Some("1Gi")),
    )
    .await
    .expect("requests and limits together: still Guaranteed");

    server.put(&pods, sized_pod("burstable", "256Mi", "512Mi"));
    let status = refusal(
        resize(
            &server,
            "burstable",
            json!({"spec": {"containers": [{"name": "app", "image": "app:2"}]}}),
        )
        .await,
    );
    assert_eq!(
        status.message,
        "Pod \"burstable\" is invalid: spec: Forbidden: only cpu and memory resources are mutable"
    );
    let status = refusal(
        resize(
            &server,
            "burstable",
            json!({"spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": null}}}]}}),
        )
        .await,
    );
    assert_eq!(
        status.message,
        "Pod \"burstable\" is invalid: spec.containers[0].resources.requests: Forbidden: resource requests cannot be removed"
    );
    let status = refusal(resize(&server, "burstable", memory_patch(Some("1Gi"), None)).await);
    assert_eq!(
        status.message,
        "Pod \"burstable\" is invalid: spec.containers[0].resources.requests: Invalid value: \"1Gi\": must be less than or equal to memory limit of 512Mi"
    );
    resize(&server, "burstable", memory_patch(None, Some("384Mi")))
        .await
        .expect("a memory limit decrease is allowed (1.35)");
    resize(
        &server,
        "burstable",
        json!({"spec": {"containers": [{"name": "app", "resizePolicy": [
            {"resourceName": "memory", "restartPolicy": "RestartContainer"}]}]}}),
    )
    .await
    .expect("the resize policy may change");
}

#[tokio::test]
async fn the_kubelet_answers_a_resize_as_it_reports_it() {
    let server = FakeApiServer::new();
    server.put(
        &Collection::core("", "nodes"),
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "small"},
            "status": {"allocatable": {"memory": "2Gi", "cpu": "2"}, "capacity": {"memory": "2Gi", "cpu": "2"}}}),
    );
    server.run_pods(true);
    server.serve_pod_resize(true);
    let pods = Collection::core(NS, "pods");
    server.put(&pods, sized_pod("web-1", "256Mi", "512Mi"));
    server.put(&pods, sized_pod("other", "1Gi", "1Gi"));
    let pending = |name: &str| condition_of(&server.get(&pods, name).unwrap(), "PodResizePending");
    let in_progress =
        |name: &str| condition_of(&server.get(&pods, name).unwrap(), "PodResizeInProgress");

    resize(&server, "web-1", memory_patch(Some("4Gi"), Some("4Gi")))
        .await
        .expect("accepted by the API");
    let condition = pending("web-1");
    assert_eq!(
        (
            &condition["status"],
            &condition["reason"],
            &condition["message"]
        ),
        (
            &json!("True"),
            &json!("Infeasible"),
            &json!(
                "Node didn't have enough capacity: memory, requested: 4294967296, capacity: 2147483648"
            )
        )
    );
    assert_eq!(
        applied_memory(&server, "web-1"),
        (json!("512Mi"), json!("256Mi")),
        "nothing applied"
    );
    resize(
        &server,
        "web-1",
        memory_patch(Some("1536Mi"), Some("1536Mi")),
    )
    .await
    .unwrap();
    assert_eq!(
        pending("web-1")["reason"],
        "Deferred",
        "the other pod holds 1Gi"
    );

    resize(&server, "web-1", memory_patch(Some("512Mi"), Some("768Mi")))
        .await
        .unwrap();
    assert!(pending("web-1").is_null());
    assert_eq!(
        applied_memory(&server, "web-1"),
        (json!("768Mi"), json!("512Mi"))
    );

    server.answer_resizes(support::fake_apiserver::kubelet::ResizeAnswer::InProgress);
    resize(&server, "web-1", memory_patch(None, Some("896Mi")))
        .await
        .unwrap();
    assert_eq!(in_progress("web-1")["status"], "True");
    assert_eq!(applied_memory(&server, "web-1").0, json!("768Mi"));
    server.finish_resizes();
    assert!(in_progress("web-1").is_null());
    assert_eq!(applied_memory(&server, "web-1").0, json!("896Mi"));

    server.answer_resizes(support::fake_apiserver::kubelet::ResizeAnswer::Error(
        "the memory limit is below the container's usage".into(),
    ));
    resize(&server, "web-1", memory_patch(None, Some("640Mi")))
        .await
        .unwrap();
    let condition = in_progress("web-1");
    assert_eq!(
        (&condition["reason"], &condition["message"]),
        (
            &json!("Error"),
            &json!("the memory limit is below the container's usage")
        )
    );
    server.answer_resizes(support::fake_apiserver::kubelet::ResizeAnswer::Deferred);
    resize(&server, "web-1", memory_patch(None, Some("700Mi")))
        .await
        .unwrap();
    assert_eq!(pending("web-1")["reason"], "Deferred");
}

#[tokio::test]
async fn a_resize_is_judged_by_the_limitranger_and_the_quota_and_not_sent_to_the_webhook() {
    let server = FakeApiServer::new();
    server.run_pods(true);
    server.serve_pod_resize(true);
    let (backend, reviews) = recording_backend(selfheal::webhook::router(fixes_for(&[])));
    support::install_manifest_webhook_routed(&server, backend);
    server.put(&quotas(), quota("mem", json!({"limits.memory": "1Gi"})));
    server.put(&Collection::core(NS, "limitranges"), json!({"apiVersion": "v1", "kind": "LimitRange",
        "metadata": {"name": "limits"}, "spec": {"limits": [{"type": "Container", "max": {"memory": "1536Mi"}}]}}));
    pod_in(&server, NS)
        .create(
            &PostParams::default(),
            &object_of(sized_pod("web-1", "256Mi", "512Mi")),
        )
        .await
        .unwrap();
    let sent = reviews.lock().unwrap().len();
    let status = refusal(resize(&server, "web-1", memory_patch(None, Some("2Gi"))).await);
    assert_eq!(
        status.message,
        "pods \"web-1\" is forbidden: maximum memory usage per Container is 1536Mi, but limit is 2Gi"
    );
    let status = refusal(resize(&server, "web-1", memory_patch(None, Some("1536Mi"))).await);
    assert_eq!(
        status.message,
        "pods \"web-1\" is forbidden: exceeded quota: mem, requested: limits.memory=1Gi, used: limits.memory=512Mi, limited: limits.memory=1Gi",
        "billed its growth"
    );
    resize(&server, "web-1", memory_patch(None, Some("1Gi")))
        .await
        .expect("fits");
    assert_eq!(
        reviews.lock().unwrap().len(),
        sent,
        "the manifest's rule `pods` does not match pods/resize"
    );
}
