//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod fake_apiserver;

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
