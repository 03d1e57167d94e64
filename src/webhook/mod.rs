//! The mutating admission webhook: `POST /mutate` speaking `admission.k8s.io/v1`.
//!
//! The handler is thin: decode the AdmissionReview, ask `mutate::mutate` (pure) what to change,
//! encode the answer. It fails open: any internal problem answers "allowed, no patch" with a
//! warning, because a webhook that rejects or hangs can stop every deployment in a cluster.
//! Requests that are not AdmissionReviews get HTTP 400 with a JSON error naming the problem.

pub mod mutate;
pub mod target;
pub mod tls;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use serde_json::json;

use crate::cluster::limits::LimitSnapshot;
use crate::metrics::{FixTypeLabels, Metrics, ReviewLabels};
use crate::store::Snapshot;
use mutate::{Mutation, Operation, Policy, Request};
use target::WorkloadKind;

/// Largest AdmissionReview accepted. The apiserver caps objects at ~1.5 MiB (etcd) and a review
/// can carry the object and the old object; 8 MiB leaves room and bounds memory per request.
pub const MAX_REVIEW_BYTES: usize = 8 * 1024 * 1024;

const ADMISSION_API_VERSION: &str = "admission.k8s.io/v1";

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub snapshot: Snapshot,
    /// What the cluster enforces on a raise: LimitRange rules, ResourceQuotas, Nodes (empty
    /// without a cluster). Named `limits` for the callers that build this state.
    pub limits: LimitSnapshot,
    pub policy: Arc<Policy>,
    pub metrics: Arc<Metrics>,
}

/// The HTTPS router: `/mutate` (and `/healthz`, so a probe against the webhook port works too).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/mutate", post(mutate_handler))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// The plain-HTTP router for the kubelet and Prometheus: `/healthz`, `/readyz`, `/metrics`.
pub fn health_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.snapshot.is_loaded() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "fix store not loaded yet").into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

/// A request that is not a usable AdmissionReview.
#[derive(Debug, thiserror::Error)]
pub enum BadRequest {
    #[error("request body exceeds {MAX_REVIEW_BYTES} bytes")]
    TooLarge,
    #[error("request body could not be read: {0}")]
    Unreadable(String),
    #[error("request body is not a valid AdmissionReview: {0}")]
    InvalidJson(String),
    #[error(
        "expected apiVersion {ADMISSION_API_VERSION:?} and kind \"AdmissionReview\", got apiVersion {api_version:?} and kind {kind:?}"
    )]
    WrongType { api_version: String, kind: String },
    #[error("AdmissionReview has no `request`")]
    MissingRequest,
}

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.to_string() });
        (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
    }
}

async fn mutate_handler(State(state): State<AppState>, body: Body) -> Response {
    let started = Instant::now();
    let (response, labels) = match decode(body).await {
        Ok(request) => review(&state, request),
        Err(error) => {
            tracing::warn!(%error, "rejected a malformed admission request");
            let labels = ReviewLabels {
                kind: "unknown".into(),
                operation: "unknown".into(),
                result: "bad_request".into(),
            };
            (error.into_response(), labels)
        }
    };
    state.metrics.reviews.get_or_create(&labels).inc();
    state
        .metrics
        .review_seconds
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Reads and validates the body as an `admission.k8s.io/v1` AdmissionReview.
pub async fn decode(body: Body) -> Result<AdmissionRequest<DynamicObject>, BadRequest> {
    let bytes = axum::body::to_bytes(body, MAX_REVIEW_BYTES)
        .await
        .map_err(|error| {
            if is_length_limit(&error) {
                BadRequest::TooLarge
            } else {
                BadRequest::Unreadable(error.to_string())
            }
        })?;
    decode_bytes(&bytes)
}

pub fn decode_bytes(bytes: &[u8]) -> Result<AdmissionRequest<DynamicObject>, BadRequest> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(bytes).map_err(|e| BadRequest::InvalidJson(e.to_string()))?;
    if review.types.api_version != ADMISSION_API_VERSION || review.types.kind != "AdmissionReview" {
        return Err(BadRequest::WrongType {
            api_version: review.types.api_version,
            kind: review.types.kind,
        });
    }
    review.try_into().map_err(|_| BadRequest::MissingRequest)
}

fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if current.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = current.source();
    }
    false
}

/// Answers one decoded request. Never fails: problems become "allowed" with a warning.
fn review(state: &AppState, request: AdmissionRequest<DynamicObject>) -> (Response, ReviewLabels) {
    // Label values come from a fixed set: whoever can reach /mutate must not be able to grow the
    // metric's cardinality with made-up kinds.
    let known = WorkloadKind::from_group_kind(&request.kind.group, &request.kind.kind);
    let mut labels = ReviewLabels {
        kind: known.map_or("other", WorkloadKind::as_str).to_string(),
        operation: format!("{:?}", request.operation).to_uppercase(),
        result: "unchanged".into(),
    };
    let response = AdmissionResponse::from(&request);
    let decision = std::panic::catch_unwind(AssertUnwindSafe(|| decide(state, &request)));
    let response = match decision {
        Ok(Ok(Some(mutation))) => {
            labels.result = mutation.outcome().into();
            respond_with(state, &request, response, mutation)
        }
        Ok(Ok(None)) => response,
        Ok(Err(error)) => {
            labels.result = "error".into();
            tracing::error!(uid = %request.uid, %error, "admission decision failed; allowing unchanged");
            with_warning(response, format!("selfheal: fixes not applied: {error}"))
        }
        Err(_) => {
            labels.result = "error".into();
            tracing::error!(uid = %request.uid, "admission decision panicked; allowing unchanged");
            with_warning(
                response,
                "selfheal: internal error; fixes not applied".into(),
            )
        }
    };
    (axum::Json(encode_review(response)).into_response(), labels)
}

/// The AdmissionReview answer as JSON, with `response.patch` base64-encoded as the apiserver's
/// `[]byte` field requires (kube's type serializes the bytes as a JSON array of numbers).
fn encode_review(response: AdmissionResponse) -> serde_json::Value {
    use base64::Engine;
    let patch = response.patch.clone();
    let mut review = serde_json::to_value(response.into_review()).unwrap_or_else(|_| json!({}));
    if let Some(bytes) = patch {
        review["response"]["patch"] =
            json!(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    review
}

/// `None` when the request is not one the webhook acts on (unknown kind, no object, cluster scope).
fn decide(
    state: &AppState,
    request: &AdmissionRequest<DynamicObject>,
) -> Result<Option<Mutation>, serde_json::Error> {
    let Some(kind) = WorkloadKind::from_group_kind(&request.kind.group, &request.kind.kind) else {
        return Ok(None);
    };
    let (Some(object), Some(namespace)) = (&request.object, &request.namespace) else {
        return Ok(None);
    };
    let object = serde_json::to_value(object)?;
    let old_object = request
        .old_object
        .as_ref()
        .map(serde_json::to_value)
        .transpose()?;
    let operation = match request.operation {
        kube::core::admission::Operation::Create => Operation::Create,
        kube::core::admission::Operation::Update => Operation::Update,
        _ => Operation::Other,
    };
    let snapshot = state.snapshot.current();
    // One view of the cluster facts for the whole decision (LimitRanges, quotas, nodes).
    let facts = state.limits.load();
    let memory_cap = facts.memory_max.get(namespace.as_str());
    Ok(Some(mutate::mutate_with_facts(
        &Request {
            kind,
            operation,
            namespace,
            object: &object,
            memory_cap,
            memory_ratio: facts.memory_ratio.get(namespace.as_str()).copied(),
        },
        old_object.as_ref(),
        &snapshot,
        &state.policy,
        &facts,
    )))
}

fn respond_with(
    state: &AppState,
    request: &AdmissionRequest<DynamicObject>,
    mut response: AdmissionResponse,
    mutation: Mutation,
) -> AdmissionResponse {
    if !mutation.warnings.is_empty() {
        response.warnings = Some(mutation.warnings.clone());
    }
    for held in &mutation.held {
        tracing::warn!(
            kind = %request.kind.kind,
            namespace = request.namespace.as_deref().unwrap_or_default(),
            name = %request.name,
            reason = held.reason(),
            held = %held,
            "a fix was held below its value at admission"
        );
    }
    if mutation.patch.0.is_empty() {
        return response;
    }
    let applied: Vec<String> = mutation.applied.iter().map(ToString::to_string).collect();
    let kept: Vec<String> = mutation.kept.iter().map(ToString::to_string).collect();
    tracing::info!(
        kind = %request.kind.kind,
        namespace = request.namespace.as_deref().unwrap_or_default(),
        name = %request.name,
        operation = ?request.operation,
        dry_run = request.dry_run,
        applied = %applied.join("; "),
        kept_live = %kept.join("; "),
        "applied persisted fixes at admission"
    );
    if !request.dry_run {
        for applied in &mutation.applied {
            state
                .metrics
                .patches_applied
                .get_or_create(&FixTypeLabels {
                    fix_type: applied.fix_type.as_str().into(),
                })
                .inc();
        }
    }
    let fallback = response.clone();
    match response.with_patch(mutation.patch) {
        Ok(patched) => patched,
        Err(error) => with_warning(
            fallback,
            format!("selfheal: patch could not be encoded ({error}); fixes not applied"),
        ),
    }
}

fn with_warning(mut response: AdmissionResponse, warning: String) -> AdmissionResponse {
    response.warnings.get_or_insert_with(Vec::new).push(warning);
    response
}
