//! Mutating admission webhooks as the apiserver calls them (`MutatingAdmissionWebhook`, 1.24),
//! from the MutatingWebhookConfiguration objects stored in the server, to in-process routers a
//! test routes a service (or URL) to (`route_webhook_service`):
//!
//! - configurations in name order, webhooks in list order;
//! - `rules`: operations (`CREATE`, `UPDATE`, `*`), apiGroups, apiVersions, resources (`pods`,
//!   `pods/status`, `*`, `*/status`, `*/*`) and scope (`Namespaced`, `Cluster`, `*`) of the
//!   request; a main resource is not a subresource;
//! - `namespaceSelector` against the labels of the request's Namespace (its stored object; a
//!   namespace no object was stored for has just its `kubernetes.io/metadata.name` label);
//!   `objectSelector` against the labels of the object or of the old object;
//! - `sideEffects`: a dry run is sent only to webhooks declaring `None` or `NoneOnDryRun`, else
//!   refused (`admission webhook "x" does not support dry run`);
//! - the request: an `admission.k8s.io/v1` AdmissionReview with a fresh uid, kind, resource,
//!   subResource and their `request*` twins, name (empty on a CREATE with `generateName`),
//!   namespace, operation, userInfo (who made the request), object, oldObject (UPDATE),
//!   dryRun and options (CreateOptions / UpdateOptions with the fieldManager);
//! - `timeoutSeconds` (default 10): a backend that has not answered by then failed;
//! - a failed call (no route, timeout, an answer that is no AdmissionReview or has another uid,
//!   a patch type other than JSONPatch) is ignored with `failurePolicy: Ignore`, and with `Fail`
//!   (the v1 default) refuses the request: 500 `Internal error occurred: failed calling webhook
//!   "fixes.selfheal.io": Post "https://selfheal.selfheal.svc:443/mutate?timeout=3s": context
//!   deadline exceeded`;
//! - a denial (`allowed: false`) refuses with the webhook's status: `admission webhook "x"
//!   denied the request: <message>` (code 400 at least);
//! - the returned JSON patch is applied; one that is undecodable or does not apply fails the
//!   request with 500 whatever the failure policy (as 1.24); the result is defaulted again.
//!
//! Not modelled: `reinvocationPolicy` (a single webhook configuration needs none),
//! `matchPolicy: Equivalent` across versions, admission warnings, DELETE and CONNECT.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::StatusCode;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::rules::Refusal;
use super::{AdmissionAttributes, Collection, FakeApiServer, defaults, selectors};

static REVIEWS: AtomicU64 = AtomicU64::new(0);

fn configurations() -> Collection {
    Collection::new(
        "apis/admissionregistration.k8s.io/v1",
        "",
        "mutatingwebhookconfigurations",
    )
}

fn matches_list(values: &Value, wanted: &str) -> bool {
    values
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|v| v == "*" || v == wanted)
}

/// Whether a rule's resources name the request's resource/subresource.
fn matches_resource(resources: &Value, plural: &str, subresource: &str) -> bool {
    resources
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|pattern| {
            let (resource, sub) = pattern.split_once('/').unwrap_or((pattern, ""));
            let resource_ok = resource == "*" || resource == plural;
            let sub_ok = if sub.is_empty() {
                subresource.is_empty()
            } else {
                sub == "*" || sub == subresource
            };
            resource_ok && sub_ok
        })
}

fn rule_matches(rule: &Value, attributes: &AdmissionAttributes) -> bool {
    let collection = &attributes.collection;
    let (group, version) = collection.group_version();
    let scope_ok = match rule["scope"].as_str().unwrap_or("*") {
        "Namespaced" => !collection.namespace.is_empty(),
        "Cluster" => collection.namespace.is_empty(),
        _ => true,
    };
    matches_list(&rule["operations"], attributes.operation)
        && matches_list(&rule["apiGroups"], &group)
        && matches_list(&rule["apiVersions"], &version)
        && matches_resource(
            &rule["resources"],
            &collection.plural,
            &attributes.subresource,
        )
        && scope_ok
}

/// A selector that is absent or empty selects everything.
fn selector_matches(selector: &Value, labels: &Value) -> bool {
    if !selector.is_object() {
        return true;
    }
    let labels = if labels.is_object() {
        labels.clone()
    } else {
        json!({})
    };
    selectors::label_selector_matches(selector, &labels)
}

/// One routed backend: a router answering the webhook's requests.
#[derive(Clone)]
pub struct Backend {
    pub router: Router,
}

/// How the apiserver names a webhook's endpoint in its errors.
fn endpoint(client_config: &Value, timeout: u64) -> String {
    let service = &client_config["service"];
    match client_config["url"].as_str() {
        Some(url) => format!("{url}?timeout={timeout}s"),
        None => format!(
            "https://{}.{}.svc:{}{}?timeout={timeout}s",
            service["name"].as_str().unwrap_or_default(),
            service["namespace"].as_str().unwrap_or_default(),
            service["port"].as_u64().unwrap_or(443),
            service["path"].as_str().unwrap_or("")
        ),
    }
}

fn backend_key(client_config: &Value) -> String {
    match client_config["url"].as_str() {
        Some(url) => url.to_string(),
        None => format!(
            "{}/{}",
            client_config["service"]["namespace"]
                .as_str()
                .unwrap_or_default(),
            client_config["service"]["name"]
                .as_str()
                .unwrap_or_default()
        ),
    }
}

/// The AdmissionReview the apiserver sends for one write.
pub fn review(attributes: &AdmissionAttributes, object: &Value) -> Value {
    let serial = REVIEWS.fetch_add(1, Ordering::Relaxed);
    let collection = &attributes.collection;
    let (group, version) = collection.group_version();
    let kind_name = if attributes.subresource == "eviction" {
        "Eviction".to_string()
    } else {
        collection.kind()
    };
    let kind = json!({"group": group, "version": version, "kind": kind_name});
    let resource = json!({"group": group, "version": version, "resource": collection.plural});
    let mut options = if attributes.operation == "CREATE" {
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"})
    } else {
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions"})
    };
    if attributes.dry_run {
        options["dryRun"] = json!(["All"]);
    }
    if let Some(manager) = &attributes.field_manager {
        options["fieldManager"] = json!(manager);
    }
    let mut request = json!({
        "uid": format!("705ab4f5-6393-11e8-b7cc-{serial:012x}"),
        "kind": kind, "resource": resource,
        "requestKind": kind, "requestResource": resource,
        "name": attributes.name,
        "operation": attributes.operation,
        "userInfo": attributes.user.to_json(),
        "object": object,
        "oldObject": attributes.old,
        "dryRun": attributes.dry_run,
        "options": options,
    });
    if !attributes.subresource.is_empty() {
        request["subResource"] = json!(attributes.subresource);
        request["requestSubResource"] = json!(attributes.subresource);
    }
    if attributes.name.is_empty()
        && let Some(fields) = request.as_object_mut()
    {
        fields.remove("name");
    }
    if !collection.namespace.is_empty() {
        request["namespace"] = json!(collection.namespace);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

/// Sends a review to a backend; the decoded answer, or why the call failed.
async fn call(router: Router, path: &str, review: &Value) -> Result<Value, String> {
    let request = axum::http::Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(
            serde_json::to_vec(review).map_err(|e| e.to_string())?,
        ))
        .map_err(|e| e.to_string())?;
    let response = router.oneshot(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if status != StatusCode::OK {
        return Err(format!(
            "an error on the server (\"{}\") has prevented the request from succeeding",
            String::from_utf8_lossy(&bytes)
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

fn internal(message: String) -> Refusal {
    let mut refusal = Refusal::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        format!("Internal error occurred: {message}"),
    );
    refusal.details = json!({"causes": [{"message": message}]});
    refusal
}

impl FakeApiServer {
    /// Routes the webhooks whose `clientConfig.service` is `namespace/name` (or whose
    /// `clientConfig.url` is `name` when `namespace` is empty) to `router`.
    pub fn route_webhook_service(&self, namespace: &str, name: &str, router: Router) {
        let key = if namespace.is_empty() {
            name.to_string()
        } else {
            format!("{namespace}/{name}")
        };
        self.backends
            .lock()
            .unwrap()
            .insert(key, Backend { router });
    }

    /// Stops routing a service: its webhooks' calls fail (as when the service has no endpoints).
    pub fn unroute_webhook_service(&self, namespace: &str, name: &str) {
        self.backends
            .lock()
            .unwrap()
            .remove(&format!("{namespace}/{name}"));
    }

    /// The labels the apiserver matches a namespaceSelector against.
    fn namespace_labels(&self, namespace: &str) -> Value {
        self.get(&Collection::core("", "namespaces"), namespace)
            .map(|ns| ns["metadata"]["labels"].clone())
            .unwrap_or_else(|| json!({"kubernetes.io/metadata.name": namespace}))
    }

    /// Runs the stored mutating webhooks on `object`, in the apiserver's order.
    pub(super) async fn run_configured_webhooks(
        &self,
        attributes: &AdmissionAttributes,
        mut object: Value,
    ) -> Result<Value, Refusal> {
        let configurations = self.list(&configurations());
        for configuration in configurations {
            for webhook in configuration["webhooks"].as_array().into_iter().flatten() {
                if !self.webhook_applies(webhook, attributes, &object) {
                    continue;
                }
                object = self.call_webhook(webhook, attributes, object).await?;
                defaults::apply(&attributes.collection, &mut object);
            }
        }
        Ok(object)
    }

    fn webhook_applies(
        &self,
        webhook: &Value,
        attributes: &AdmissionAttributes,
        object: &Value,
    ) -> bool {
        let rules = webhook["rules"].as_array().into_iter().flatten();
        if !rules.into_iter().any(|rule| rule_matches(rule, attributes)) {
            return false;
        }
        let collection = &attributes.collection;
        let namespace_ok = if !collection.namespace.is_empty() {
            selector_matches(
                &webhook["namespaceSelector"],
                &self.namespace_labels(&collection.namespace),
            )
        } else if collection.is("api/v1", "namespaces") {
            selector_matches(&webhook["namespaceSelector"], &object["metadata"]["labels"])
        } else {
            true
        };
        let selector = &webhook["objectSelector"];
        let object_ok = selector_matches(selector, &object["metadata"]["labels"])
            || attributes
                .old
                .as_ref()
                .is_some_and(|old| selector_matches(selector, &old["metadata"]["labels"]));
        namespace_ok && object_ok
    }

    async fn call_webhook(
        &self,
        webhook: &Value,
        attributes: &AdmissionAttributes,
        object: Value,
    ) -> Result<Value, Refusal> {
        let name = webhook["name"].as_str().unwrap_or_default();
        let side_effects = webhook["sideEffects"].as_str().unwrap_or("Unknown");
        if attributes.dry_run && !matches!(side_effects, "None" | "NoneOnDryRun") {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("admission webhook \"{name}\" does not support dry run"),
            ));
        }
        let ignore = webhook["failurePolicy"] == "Ignore";
        let timeout = webhook["timeoutSeconds"].as_u64().unwrap_or(10);
        let client_config = &webhook["clientConfig"];
        let url = endpoint(client_config, timeout);
        let failed = |reason: String| -> Result<Value, Refusal> {
            if ignore {
                Ok(object.clone())
            } else {
                Err(internal(format!(
                    "failed calling webhook \"{name}\": {reason}"
                )))
            }
        };
        let backend = self
            .backends
            .lock()
            .unwrap()
            .get(&backend_key(client_config))
            .cloned();
        let Some(backend) = backend else {
            let service = &client_config["service"];
            return failed(format!(
                "Post \"{url}\": service \"{}\" not found",
                service["name"].as_str().unwrap_or_default()
            ));
        };
        let sent = review(attributes, &object);
        let path = client_config["service"]["path"]
            .as_str()
            .unwrap_or("/")
            .to_string();
        let answer = match tokio::time::timeout(
            std::time::Duration::from_secs(timeout),
            call(backend.router, &path, &sent),
        )
        .await
        {
            Err(_) => return failed(format!("Post \"{url}\": context deadline exceeded")),
            Ok(Err(error)) => return failed(format!("Post \"{url}\": {error}")),
            Ok(Ok(answer)) => answer,
        };
        let response = &answer["response"];
        if answer["kind"] != "AdmissionReview" || !response.is_object() {
            return failed(
                "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview".into(),
            );
        }
        if response["uid"] != sent["request"]["uid"] {
            return failed(format!(
                "expected response.uid={}, got {}",
                sent["request"]["uid"], response["uid"]
            ));
        }
        if response["allowed"] != true {
            let status = &response["status"];
            let code = status["code"].as_u64().unwrap_or(0).max(400);
            let denied = format!("admission webhook \"{name}\" denied the request");
            let message = match (status["message"].as_str(), status["reason"].as_str()) {
                (Some(message), _) if !message.is_empty() => format!("{denied}: {message}"),
                (_, Some(reason)) if !reason.is_empty() => format!("{denied}: {reason}"),
                _ => format!("{denied} without explanation"),
            };
            let code = StatusCode::from_u16(code as u16).unwrap_or(StatusCode::BAD_REQUEST);
            let reason = status["reason"].as_str().unwrap_or_default();
            return Err(Refusal::new(code, reason, message));
        }
        let Some(encoded) = response["patch"].as_str() else {
            return Ok(object);
        };
        if response["patchType"] != "JSONPatch" {
            return failed(format!("unsupported patch type {}", response["patchType"]));
        }
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| internal(e.to_string()))?;
        let patch: json_patch::Patch =
            serde_json::from_slice(&bytes).map_err(|e| internal(e.to_string()))?;
        let mut patched = object;
        json_patch::patch(&mut patched, &patch).map_err(|e| internal(e.to_string()))?;
        Ok(patched)
    }
}
