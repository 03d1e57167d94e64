//! Requests that are not usable AdmissionReviews get HTTP 400 with a JSON error naming the
//! problem; objects of unexpected shape are allowed unchanged; nothing panics the server.

use crate::support;

use axum::http::StatusCode;
use serde_json::{Value, json};
use support::{admit, patch_of, post_mutate, read_json, state_with_test_fixes};

use selfheal::webhook;

async fn bad_request(body: Vec<u8>) -> String {
    let router = webhook::router(state_with_test_fixes());
    let (status, answer) = post_mutate(router, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    answer["error"].as_str().expect("error message").to_string()
}

#[tokio::test]
async fn truncated_json() {
    let mut body = serde_json::to_vec(&read_json("deployment-create.json")).unwrap();
    body.truncate(body.len() / 2);
    let error = bad_request(body).await;
    assert!(error.contains("not a valid AdmissionReview"), "{error}");
    assert!(error.contains("EOF"), "{error}");
}

#[tokio::test]
async fn empty_and_non_json_bodies() {
    assert!(
        bad_request(Vec::new())
            .await
            .contains("not a valid AdmissionReview")
    );
    assert!(
        bad_request(b"\xff\xfe garbage".to_vec())
            .await
            .contains("not a valid AdmissionReview")
    );
    assert!(
        bad_request(b"[1,2,3]".to_vec())
            .await
            .contains("not a valid AdmissionReview")
    );
}

#[tokio::test]
async fn wrong_api_version() {
    let mut review = read_json("deployment-create.json");
    review["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let error = bad_request(serde_json::to_vec(&review).unwrap()).await;
    assert!(error.contains("admission.k8s.io/v1beta1"), "{error}");
}

#[tokio::test]
async fn unknown_top_level_kind() {
    let mut review = read_json("deployment-create.json");
    review["kind"] = json!("ConversionReview");
    let error = bad_request(serde_json::to_vec(&review).unwrap()).await;
    assert!(error.contains("ConversionReview"), "{error}");
}

#[tokio::test]
async fn missing_request() {
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
    let error = bad_request(serde_json::to_vec(&review).unwrap()).await;
    assert!(error.contains("no `request`"), "{error}");
}

#[tokio::test]
async fn request_missing_required_fields() {
    let mut review = read_json("deployment-create.json");
    review["request"].as_object_mut().unwrap().remove("uid");
    let error = bad_request(serde_json::to_vec(&review).unwrap()).await;
    assert!(error.contains("uid"), "{error}");
}

#[tokio::test]
async fn huge_body() {
    let mut review = read_json("deployment-create.json");
    review["request"]["object"]["metadata"]["annotations"]["padding"] =
        json!("x".repeat(webhook::MAX_REVIEW_BYTES));
    let error = bad_request(serde_json::to_vec(&review).unwrap()).await;
    assert!(error.contains("exceeds"), "{error}");
}

#[tokio::test]
async fn unknown_object_kind_is_allowed_unchanged() {
    let mut review = read_json("deployment-create.json");
    review["request"]["kind"] = json!({"group": "example.com", "version": "v1", "kind": "Widget"});
    let state = state_with_test_fixes();
    let (answer, _) = admit(&state, &review).await;
    assert!(patch_of(&answer).is_none());
    let metrics = state.metrics.encode();
    assert!(metrics.contains("kind=\"other\""), "{metrics}");
    assert!(
        !metrics.contains("Widget"),
        "made-up kinds never become label values"
    );
}

#[tokio::test]
async fn objects_of_unexpected_shape_are_allowed_unchanged() {
    let shapes: Vec<(&str, Value)> = vec![
        ("/spec/template/spec/containers", json!("not a list")),
        ("/spec/template/spec/containers", json!([1, null, "x"])),
        ("/spec/template/spec/containers/0/resources", json!("huge")),
        (
            "/spec/template/spec/containers/0/resources/limits",
            json!([]),
        ),
        (
            "/spec/template/spec/containers/0/resources/limits/memory",
            json!(4096),
        ),
        ("/spec/template", Value::Null),
        ("/spec", json!(7)),
        ("/metadata/annotations", Value::Null),
    ];
    let state = state_with_test_fixes();
    for (pointer, value) in shapes {
        let mut review = read_json("deployment-create.json");
        *review["request"]["object"].pointer_mut(pointer).unwrap() = value.clone();
        // Whatever the shape, the answer is 200 and allowed; a patch, if any, still applies.
        let (answer, _) = admit(&state, &review).await;
        assert_eq!(answer["response"]["allowed"], true, "{pointer} = {value}");
    }
}

/// UPDATEs whose live object (`oldObject`) or incoming object has an unexpected shape where live
/// values are kept: allowed, never an internal error (a caught panic is counted as one).
#[tokio::test]
async fn updates_with_live_objects_of_unexpected_shape_are_allowed() {
    let text = std::fs::read_to_string(support::data_path("fixes-reapply.yaml")).unwrap();
    let state =
        support::state_with_document(&selfheal::core::document::FixDocument::parse(&text).unwrap());
    let cases: Vec<(&str, &str, Value)> = vec![
        (
            "job-reapply.json",
            "/spec/template/spec/containers",
            json!("x"),
        ),
        (
            "job-reapply.json",
            "/spec/template/spec/containers",
            json!([1, null]),
        ),
        (
            "job-reapply.json",
            "/spec/template/spec/containers/0/resources/limits/memory",
            json!(512),
        ),
        (
            "job-reapply.json",
            "/spec/template/spec/containers/0/resources/limits/memory",
            json!("lots"),
        ),
        (
            "job-reapply.json",
            "/spec/template/spec/containers/0/resources/requests",
            json!([]),
        ),
        ("job-reapply.json", "/spec/template", Value::Null),
        ("job-reapply.json", "/spec", json!(7)),
        ("pod-reapply.json", "/spec/containers/0/name", json!(3)),
        (
            "pvc-reapply.json",
            "/spec/resources/requests/storage",
            json!("-1Gi"),
        ),
        ("pvc-reapply.json", "/spec/resources", json!("big")),
        (
            "statefulset-reapply.json",
            "/spec/volumeClaimTemplates",
            json!({"data": 1}),
        ),
        (
            "statefulset-reapply.json",
            "/spec/volumeClaimTemplates/0/metadata",
            Value::Null,
        ),
        (
            "statefulset-reapply.json",
            "/spec/volumeClaimTemplates/0/spec/resources/requests/storage",
            json!(["5Gi"]),
        ),
    ];
    for (file, pointer, value) in cases {
        for side in ["oldObject", "object"] {
            let mut review = read_json(file);
            *review["request"][side].pointer_mut(pointer).unwrap() = value.clone();
            let (answer, _) = admit(&state, &review).await;
            assert_eq!(
                answer["response"]["allowed"], true,
                "{file} {side}{pointer} = {value}"
            );
        }
    }
    let metrics = state.metrics.encode();
    assert!(!metrics.contains("result=\"error\""), "{metrics}");
    assert!(metrics.contains("result=\"kept_live\""), "{metrics}");
}

#[tokio::test]
async fn malformed_metadata_is_a_bad_request_naming_the_problem() {
    for (field, value) in [
        ("labels", json!({"selfheal.io/ignore": 1})),
        ("ownerReferences", json!("me")),
    ] {
        let mut review = read_json("deployment-create.json");
        review["request"]["object"]["metadata"][field] = value;
        let error = bad_request(serde_json::to_vec(&review).unwrap()).await;
        assert!(error.contains("invalid type"), "{error}");
    }
}

/// Deterministic byte-level corruption of valid reviews: every answer is 200 or 400 with JSON.
#[tokio::test]
async fn corrupted_reviews_never_break_the_server() {
    let state = state_with_test_fixes();
    let files = [
        "deployment-create.json",
        "pod-create-owned-by-deployment.json",
        "statefulset-create.json",
        "pvc-create-statefulset-claim.json",
        "statefulset-reapply.json",
        "job-reapply.json",
    ];
    let mut seed: u64 = 0x5eed_5e1f_4ea1;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut ok, mut rejected) = (0, 0);
    for round in 0..400 {
        let mut body = serde_json::to_vec(&read_json(files[round % files.len()])).unwrap();
        for _ in 0..(1 + next() % 4) {
            let at = (next() as usize) % body.len();
            let replacements = b" {}[]\",:0aZ\\\x00\xff";
            body[at] = replacements[(next() as usize) % replacements.len()];
        }
        let (status, answer) = post_mutate(webhook::router(state.clone()), body).await;
        match status {
            StatusCode::OK => {
                assert_eq!(answer["response"]["allowed"], true);
                ok += 1;
            }
            StatusCode::BAD_REQUEST => {
                assert!(answer["error"].is_string());
                rejected += 1;
            }
            other => panic!("unexpected status {other}: {answer}"),
        }
    }
    assert!(
        ok > 0 && rejected > 0,
        "both paths exercised: {ok} ok, {rejected} rejected"
    );
}
