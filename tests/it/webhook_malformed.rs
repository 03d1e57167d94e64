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

/// What the webhook does with a Deployment one part of which has an unexpected shape.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// Nothing to act on: no patch, no warning.
    Unchanged,
    /// The broken container is left as sent; its sibling `workhorse` is still raised, with this
    /// warning about the broken one (or none).
    SiblingRaised(Option<&'static str>),
    /// Nothing that matters is broken: both containers are raised.
    BothRaised,
}

#[tokio::test]
async fn objects_of_unexpected_shape_are_allowed_and_their_sound_parts_still_raised() {
    let containers = "/spec/template/spec/containers";
    let shapes: Vec<(&str, Value, Shape)> = vec![
        (containers, json!("not a list"), Shape::Unchanged),
        (containers, json!([1, null, "x"]), Shape::Unchanged),
        (
            "/spec/template/spec/containers/0/resources",
            json!("huge"),
            Shape::SiblingRaised(None),
        ),
        (
            "/spec/template/spec/containers/0/resources/limits",
            json!([]),
            Shape::SiblingRaised(None),
        ),
        (
            "/spec/template/spec/containers/0/resources/limits/memory",
            json!(4096),
            Shape::SiblingRaised(None),
        ),
        (
            "/spec/template/spec/containers/0/resources/limits/memory",
            json!("lots"),
            Shape::SiblingRaised(Some(
                "container webservice: memory limit \"lots\" is unreadable; left unchanged",
            )),
        ),
        ("/spec/template", Value::Null, Shape::Unchanged),
        ("/spec", json!(7), Shape::Unchanged),
        ("/metadata/annotations", Value::Null, Shape::BothRaised),
    ];
    let state = state_with_test_fixes();
    for (pointer, value, shape) in shapes {
        let case = format!("{pointer} = {value}");
        let mut review = read_json("deployment-create.json");
        *review["request"]["object"].pointer_mut(pointer).unwrap() = value.clone();
        let sent = review["request"]["object"].clone();
        let (answer, object) = admit(&state, &review).await;
        let warnings = &answer["response"]["warnings"];
        let limit = |container: usize| {
            object
                .pointer(&format!("{containers}/{container}/resources/limits/memory"))
                .cloned()
        };
        let note = object["metadata"]["annotations"]["selfheal.io/applied-fixes"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match shape {
            Shape::Unchanged => {
                assert!(patch_of(&answer).is_none(), "{case}: {answer}");
                assert!(warnings.is_null(), "{case}: {warnings}");
            }
            Shape::SiblingRaised(warning) => {
                assert_eq!(
                    limit(1),
                    Some(json!("4Gi")),
                    "{case}: the sibling is raised"
                );
                assert_eq!(
                    object.pointer(&format!("{containers}/1/resources/requests/memory")),
                    Some(&json!("4Gi")),
                    "{case}: its request, equal to the limit, with it"
                );
                assert_eq!(
                    object.pointer(&format!("{containers}/0")),
                    sent.pointer(&format!("{containers}/0")),
                    "{case}: the broken container is left as sent"
                );
                assert!(
                    note.contains("container workhorse") && !note.contains("container webservice"),
                    "{case}: {note}"
                );
                match warning {
                    Some(text) => {
                        let warnings = warnings.as_array().expect("warnings");
                        assert_eq!(warnings.len(), 1, "{case}: {warnings:?}");
                        assert!(
                            warnings[0].as_str().is_some_and(|w| w.contains(text)),
                            "{case}: {warnings:?}"
                        );
                    }
                    None => assert!(warnings.is_null(), "{case}: {warnings}"),
                }
            }
            Shape::BothRaised => {
                assert_eq!(
                    (limit(0), limit(1)),
                    (Some(json!("4Gi")), Some(json!("4Gi"))),
                    "{case}"
                );
                assert!(
                    note.contains("container workhorse") && note.contains("container webservice"),
                    "{case}: {note}"
                );
            }
        }
    }
    let metrics = state.metrics.encode();
    assert!(
        !metrics.contains("result=\"error\""),
        "no decision failed or panicked: {metrics}"
    );
}

/// The review in `tests/data/<file>` with a sibling beside its one container (or claim
/// template): a copy under another name, in the object and in the live object alike, whose
/// incoming value is below its live one as for the original. Returns the review, the pointer to
/// the sibling's value in the object, and its live value.
fn with_sibling(file: &str) -> (Value, Option<(String, Value)>) {
    let mut review = read_json(file);
    let (list, name, field) = match file {
        "job-reapply.json" => (
            "/spec/template/spec/containers",
            "/name",
            "/resources/limits/memory",
        ),
        "pod-reapply.json" => ("/spec/containers", "/name", "/resources/limits/memory"),
        "statefulset-reapply.json" => (
            "/spec/volumeClaimTemplates",
            "/metadata/name",
            "/spec/resources/requests/storage",
        ),
        _ => return (review, None),
    };
    for side in ["object", "oldObject"] {
        let items = review["request"][side]
            .pointer_mut(list)
            .and_then(Value::as_array_mut)
            .expect("one item");
        let mut sibling = items[0].clone();
        *sibling.pointer_mut(name).unwrap() = json!("sibling");
        items.push(sibling);
    }
    let live = review["request"]["oldObject"]
        .pointer(&format!("{list}/1{field}"))
        .cloned()
        .unwrap();
    let incoming = &review["request"]["object"]
        .pointer(&format!("{list}/1{field}"))
        .unwrap();
    assert_ne!(
        *incoming, &live,
        "{file}: the re-apply lowers the sibling too"
    );
    (review, Some((format!("{list}/1{field}"), live)))
}

/// UPDATEs whose live object (`oldObject`) or incoming object has an unexpected shape where live
/// values are kept: allowed, never an internal error (a caught panic is counted as one); a
/// sibling container or claim template of the broken one still gets its live value back, and
/// where the whole list or spec is broken nothing is changed.
#[tokio::test]
async fn updates_with_live_objects_of_unexpected_shape_keep_what_they_can() {
    let text = std::fs::read_to_string(support::data_path("fixes-reapply.yaml")).unwrap();
    let state =
        support::state_with_document(&selfheal::core::document::FixDocument::parse(&text).unwrap());
    // `true`: one item is broken and its sibling is kept; `false`: nothing can be kept.
    let cases: Vec<(&str, &str, Value, bool)> = vec![
        (
            "job-reapply.json",
            "/spec/template/spec/containers",
            json!("x"),
            false,
        ),
        (
            "job-reapply.json",
            "/spec/template/spec/containers",
            json!([1, null]),
            false,
        ),
        (
            "job-reapply.json",
            "/spec/template/spec/containers/0/resources/limits/memory",
            json!(512),
            true,
        ),
        (
            "job-reapply.json",
            "/spec/template/spec/containers/0/resources/limits/memory",
            json!("lots"),
            true,
        ),
        (
            "job-reapply.json",
            "/spec/template/spec/containers/0/resources/requests",
            json!([]),
            true,
        ),
        ("job-reapply.json", "/spec/template", Value::Null, false),
        ("job-reapply.json", "/spec", json!(7), false),
        (
            "pod-reapply.json",
            "/spec/containers/0/name",
            json!(3),
            true,
        ),
        (
            "pvc-reapply.json",
            "/spec/resources/requests/storage",
            json!("-1Gi"),
            false,
        ),
        ("pvc-reapply.json", "/spec/resources", json!("big"), false),
        (
            "statefulset-reapply.json",
            "/spec/volumeClaimTemplates",
            json!({"data": 1}),
            false,
        ),
        (
            "statefulset-reapply.json",
            "/spec/volumeClaimTemplates/0/metadata",
            Value::Null,
            true,
        ),
        (
            "statefulset-reapply.json",
            "/spec/volumeClaimTemplates/0/spec/resources/requests/storage",
            json!(["5Gi"]),
            true,
        ),
    ];
    for (file, pointer, value, sibling_kept) in cases {
        for side in ["oldObject", "object"] {
            let case = format!("{file} {side}{pointer} = {value}");
            let (mut review, sibling) = with_sibling(file);
            *review["request"][side].pointer_mut(pointer).unwrap() = value.clone();
            let (answer, object) = admit(&state, &review).await;
            match sibling {
                Some((at, live)) if sibling_kept => {
                    assert_eq!(
                        object.pointer(&at),
                        Some(&live),
                        "{case}: the sibling keeps its live value: {answer}"
                    );
                }
                _ => assert!(
                    patch_of(&answer).is_none(),
                    "{case}: nothing to keep: {answer}"
                ),
            }
        }
    }
    // Control: the same reviews unbroken keep every live value.
    for file in [
        "job-reapply.json",
        "pod-reapply.json",
        "statefulset-reapply.json",
    ] {
        let (review, sibling) = with_sibling(file);
        let (at, live) = sibling.unwrap();
        let (_, object) = admit(&state, &review).await;
        assert_eq!(object.pointer(&at), Some(&live), "{file}");
        let first = at.replace("/1/", "/0/");
        assert_eq!(
            object.pointer(&first),
            review["request"]["oldObject"].pointer(&first),
            "{file}"
        );
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
