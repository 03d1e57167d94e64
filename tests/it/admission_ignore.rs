//! The opt-out label at admission, through the project's own MutatingWebhookConfiguration as the
//! test API server applies it: a namespace labelled `selfheal.io/ignore=true` gets no fix (its
//! namespaceSelector keeps the request from the webhook), an object labelled so neither (its
//! objectSelector, and the webhook's own check), and a namespace without the label does.

use crate::support;

use kube::Api;
use kube::api::{DynamicObject, PostParams};
use serde_json::{Value, json};
use support::fake_apiserver::{Collection, FakeApiServer};

use selfheal::core::document::FixDocument;

fn deployment(namespace: &str, labels: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace, "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "web:1",
                    "resources": {"limits": {"memory": "256Mi"}}}]}}}})
}

fn memory_limit(object: &DynamicObject) -> Option<String> {
    object.data["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
        .as_str()
        .map(str::to_string)
}

async fn create(server: &FakeApiServer, namespace: &str, labels: Value) -> DynamicObject {
    let resource = kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
        "apps",
        "v1",
        "Deployment",
    ));
    let api: Api<DynamicObject> = Api::namespaced_with(server.client(), namespace, &resource);
    let object: DynamicObject = serde_json::from_value(deployment(namespace, labels)).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap()
}

#[tokio::test]
async fn an_ignored_namespace_or_object_gets_no_fix_at_admission() {
    let server = FakeApiServer::new();
    let namespaces = Collection::core("", "namespaces");
    for (name, labels) in [
        ("shop", json!({})),
        ("lab", json!({"selfheal.io/ignore": "true"})),
    ] {
        server.put(
            &namespaces,
            json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "labels": labels}}),
        );
    }
    let document = FixDocument::parse(
        "fixes:\n- {namespace: shop, resource: web, type: memory, value: 1Gi}\n- {namespace: lab, resource: web, type: memory, value: 1Gi}\n",
    )
    .unwrap();
    support::install_webhook(&server, support::state_with_document(&document));

    let raised = create(&server, "shop", json!({})).await;
    assert_eq!(
        memory_limit(&raised).as_deref(),
        Some("1Gi"),
        "the control: a fix applies"
    );

    let in_ignored_namespace = create(&server, "lab", json!({})).await;
    assert_eq!(
        memory_limit(&in_ignored_namespace).as_deref(),
        Some("256Mi"),
        "a namespace labelled selfheal.io/ignore=true is never patched"
    );
    let in_ignored_namespace_note = in_ignored_namespace
        .metadata
        .annotations
        .unwrap_or_default();
    assert!(!in_ignored_namespace_note.contains_key("selfheal.io/applied-fixes"));

    server.remove(&Collection::apps("shop", "deployments"), "web");
    let ignored_object = create(&server, "shop", json!({"selfheal.io/ignore": "true"})).await;
    assert_eq!(
        memory_limit(&ignored_object).as_deref(),
        Some("256Mi"),
        "an object labelled selfheal.io/ignore=true is never patched"
    );
}
