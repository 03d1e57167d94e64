//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod fake_apiserver;
pub mod reapply;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use selfheal::core::document::FixDocument;
use selfheal::core::index::FixIndex;
use selfheal::metrics::Metrics;
use selfheal::store::Snapshot;
use selfheal::webhook::mutate::Policy;
use selfheal::webhook::{self, AppState};

use fake_apiserver::{AdmissionAttributes, FakeApiServer};

/// Waits, bounded (about 6 s), until `condition` holds; panics naming `what` otherwise.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..300 {
        if condition() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

pub fn data_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

pub fn read_json(name: &str) -> Value {
    let text = std::fs::read_to_string(data_path(name)).expect("test data file");
    serde_json::from_str(&text).expect("test data is JSON")
}

/// Webhook state serving the fixes of `tests/data/fixes.yaml`.
pub fn state_with_test_fixes() -> AppState {
    let text = std::fs::read_to_string(data_path("fixes.yaml")).expect("fixes.yaml");
    state_with_document(&FixDocument::parse(&text).expect("valid fixes.yaml"))
}

pub fn state_with_document(document: &FixDocument) -> AppState {
    let snapshot = Snapshot::default();
    snapshot.publish(FixIndex::new(document.fixes().cloned()));
    AppState {
        snapshot,
        limits: Default::default(),
        policy: Arc::new(Policy {
            protected_namespaces: vec!["kube-system".into(), "selfheal".into()],
        }),
        metrics: Arc::new(Metrics::new()),
    }
}

/// POSTs `body` to `/mutate` in process; returns the status and the JSON answer.
pub async fn post_mutate(router: Router, body: Vec<u8>) -> (StatusCode, Value) {
    let request = Request::post("/mutate")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("request");
    let response = router.oneshot(request).await.expect("router answers");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("response is not JSON: {}", String::from_utf8_lossy(&bytes)));
    (status, json)
}

/// The JSON Patch of an AdmissionReview response, if any.
/// The apiserver reads `patch` as Go `[]byte`: a base64 string, as asserted here.
pub fn patch_of(answer: &Value) -> Option<json_patch::Patch> {
    use base64::Engine;
    let response = &answer["response"];
    let encoded = response
        .get("patch")?
        .as_str()
        .expect("patch is a base64 string");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("patch is valid base64");
    assert_eq!(response["patchType"], "JSONPatch");
    Some(serde_json::from_slice(&bytes).expect("patch is a JSON Patch"))
}

/// Sends a review through the webhook; returns the answer and the object as the apiserver would
/// store it after applying the returned patch to the object it sent.
pub async fn admit(state: &AppState, review: &Value) -> (Value, Value) {
    let (status, answer) = post_mutate(
        webhook::router(state.clone()),
        serde_json::to_vec(review).expect("encode"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(answer["response"]["uid"], review["request"]["uid"]);
    assert_eq!(
        answer["response"]["allowed"], true,
        "the webhook never rejects"
    );
    let mut object = review["request"]["object"].clone();
    if let Some(patch) = patch_of(&answer) {
        json_patch::patch(&mut object, &patch)
            .expect("patch applies to the object the apiserver sent");
    }
    (answer, object)
}

/// The AdmissionReview the apiserver sends a mutating webhook for one write (see
/// `fake_apiserver::webhooks::review`): `kind`, `resource` (and their `request*` twins),
/// `namespace`, `name` (none on a CREATE with `generateName`), `operation`, `userInfo`,
/// `object`, `oldObject` on UPDATE, `dryRun` and the operation's options.
pub fn admission_review(attributes: &AdmissionAttributes, object: &Value) -> Value {
    fake_apiserver::webhooks::review(attributes, object)
}

/// The project's own MutatingWebhookConfiguration (`manifests/base`), as `kubectl apply` stores
/// it.
pub fn manifest_webhook_configuration() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("manifests/base/mutatingwebhookconfiguration.yaml");
    let text = std::fs::read_to_string(path).expect("the manifest");
    serde_norway::from_str(&text).expect("the manifest is YAML")
}

/// Installs the project's MutatingWebhookConfiguration in `server` and routes its service
/// (`selfheal/selfheal`) to selfheal's real webhook over `state`: every write the
/// configuration's rules and selectors match is sent to it as the apiserver sends it (timeout,
/// failure policy and all). Returns the stored configuration.
pub fn install_manifest_webhook(server: &FakeApiServer, state: AppState) -> Value {
    install_manifest_webhook_routed(server, webhook::router(state))
}

/// Installs the project's MutatingWebhookConfiguration with its service routed to `router`.
pub fn install_manifest_webhook_routed(server: &FakeApiServer, router: Router) -> Value {
    let configuration = manifest_webhook_configuration();
    let stored = server.put(
        &fake_apiserver::Collection::new(
            "apis/admissionregistration.k8s.io/v1",
            "",
            "mutatingwebhookconfigurations",
        ),
        configuration,
    );
    server.route_webhook_service("selfheal", "selfheal", router);
    stored
}

/// What the apiserver does with a mutating webhook's answer: the object with the returned
/// base64 JSON patch applied, or `None` when the answer is unusable (the caller then fails open).
pub fn apply_review_answer(object: &Value, status: StatusCode, answer: &Value) -> Option<Value> {
    use base64::Engine;
    if status != StatusCode::OK || answer["response"]["allowed"] != true {
        return None;
    }
    let response = &answer["response"];
    let Some(encoded) = response.get("patch").and_then(Value::as_str) else {
        return Some(object.clone());
    };
    if response["patchType"] != "JSONPatch" {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).ok()?;
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &patch).ok()?;
    Some(patched)
}

/// Sends one review to `router` in process; `None` when it does not answer with JSON.
async fn call_webhook(router: Router, review: &Value) -> Option<(StatusCode, Value)> {
    let request = Request::post("/mutate")
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(review).ok()?))
        .ok()?;
    let response = router.oneshot(request).await.ok()?;
    let status = response.status();
    let bytes = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, serde_json::from_slice(&bytes).ok()?))
}

/// Installs selfheal's real webhook (`webhook::router` over `state`) the way a cluster has it:
/// the project's MutatingWebhookConfiguration (rules, selectors, timeout, `failurePolicy:
/// Ignore`) routed to it, so every write the configuration matches is sent to it as the
/// apiserver sends it (see `install_manifest_webhook`).
pub fn install_webhook(server: &FakeApiServer, state: AppState) {
    install_manifest_webhook(server, state);
}

/// Installs selfheal's webhook as a catch-all: called on every create and update of every
/// resource, whatever the configuration's rules and selectors, failing open on any error (the
/// older, kinder emulation; prefer `install_webhook`).
pub fn install_catch_all_webhook(server: &FakeApiServer, state: AppState) {
    let router = webhook::router(state);
    server.set_mutating_webhook(Arc::new(move |attributes, object| {
        let router = router.clone();
        Box::pin(async move {
            let review = admission_review(&attributes, &object);
            match call_webhook(router, &review).await {
                Some((status, answer)) => {
                    apply_review_answer(&object, status, &answer).unwrap_or(object)
                }
                None => object,
            }
        })
    }));
}

/// The core/v1 Events `kubectl describe` shows for an object: it lists Events in the object's
/// namespace with `fieldSelector=involvedObject.name=…,involvedObject.namespace=…,
/// involvedObject.kind=…,involvedObject.uid=…`.
pub async fn describe_events(
    client: &kube::Client,
    kind: &str,
    namespace: &str,
    name: &str,
    uid: &str,
) -> Vec<k8s_openapi::api::core::v1::Event> {
    let events: kube::Api<k8s_openapi::api::core::v1::Event> =
        kube::Api::namespaced(client.clone(), namespace);
    let selector = format!(
        "involvedObject.name={name},involvedObject.namespace={namespace},involvedObject.kind={kind},involvedObject.uid={uid}"
    );
    events
        .list(&kube::api::ListParams::default().fields(&selector))
        .await
        .expect("kubectl describe's event list is accepted")
        .items
}
