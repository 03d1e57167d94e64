//! The apiserver's validation of the objects selfheal touches, with the real status codes and
//! messages (Kubernetes 1.24 wording):
//!
//! - StatefulSet update: only `replicas`, `ordinals`, `template`, `updateStrategy`,
//!   `revisionHistoryLimit`, `persistentVolumeClaimRetentionPolicy`, `minReadySeconds` may change
//!   (422 Invalid, `spec: Forbidden`).
//! - Deployment / DaemonSet / ReplicaSet update: `spec.selector` is immutable (422).
//! - Job update: `spec.template` and `spec.selector` are immutable (422). Approximated: the
//!   scheduling directives a suspended, never-started Job may change are not modelled.
//! - PersistentVolumeClaim update: the spec is immutable except `resources.requests` (and
//!   `volumeAttributesClassName`) of a **bound** claim, and the requested storage may not decrease
//!   (422). The shrink message is the one without the `RecoverVolumeExpansionFailure` gate
//!   ("field can not be less than previous value").
//! - Pod update: the spec is immutable except container/initContainer images,
//!   `activeDeadlineSeconds`, additions to `tolerations` and `terminationGracePeriodSeconds` (422).
//!   Both sides are compared defaulted, as the apiserver compares them.
//! - Container resources, in Pods and in every pod template (create and update): a request may
//!   not exceed the limit of the same resource (`spec.containers[0].resources.requests: Invalid
//!   value: "2Gi": must be less than or equal to memory limit`, 422).
//! - ServiceAccount admission on Pod create: the API token volume is added and mounted (so a
//!   later update that drops those mounts is a forbidden Pod update, as on a real cluster).
//! - ConfigMap create and update: the values of `data` and `binaryData` together may hold at most
//!   1 MiB (`core.MaxSecretSize`, 1048576 bytes; keys are not counted), else 422 Invalid on the
//!   field path `[]` (ValidateConfigMap: `field.TooLong(field.NewPath(""), ...)`).
//!
//! Updates of the main resource keep the stored `status` of kinds with a status subresource.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Collection;

/// A refused request: the Status the apiserver answers with.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: StatusCode,
    pub reason: String,
    pub message: String,
    pub details: Value,
}

impl Refusal {
    pub fn new(code: StatusCode, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            message: message.into(),
            details: Value::Null,
        }
    }

    pub fn body(&self) -> Value {
        let mut body = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if self.reason.is_empty()
            && let Some(fields) = body.as_object_mut()
        {
            fields.remove("reason");
        }
        if !self.details.is_null() {
            body["details"] = self.details.clone();
        }
        body
    }
}

impl IntoResponse for Refusal {
    /// The Status, with `Retry-After` when its details ask for a wait (as the apiserver's
    /// error writer does).
    fn into_response(self) -> Response {
        let retry_after = self.details["retryAfterSeconds"]
            .as_u64()
            .filter(|s| *s > 0);
        let mut response = (self.code, axum::Json(self.body())).into_response();
        if let Some(seconds) = retry_after
            && let Ok(value) = seconds.to_string().parse()
        {
            response.headers_mut().insert("retry-after", value);
        }
        response
    }
}

/// One field error, as `field.Error` renders it.
pub struct FieldError {
    field: String,
    cause: &'static str,
    text: String,
}

impl FieldError {
    pub fn forbidden(field: &str, detail: &str) -> Self {
        Self {
            field: field.into(),
            cause: "FieldValueForbidden",
            text: format!("Forbidden: {detail}"),
        }
    }

    pub fn immutable(field: &str, value: &Value) -> Self {
        Self {
            field: field.into(),
            cause: "FieldValueInvalid",
            text: format!("Invalid value: {value}: field is immutable"),
        }
    }

    pub fn required(field: &str) -> Self {
        Self {
            field: field.into(),
            cause: "FieldValueRequired",
            text: "Required value".into(),
        }
    }

    pub fn too_long(field: &str, limit: usize) -> Self {
        Self {
            field: field.into(),
            cause: "FieldValueTooLong",
            text: format!("Too long: must have at most {limit} bytes"),
        }
    }

    pub fn invalid(field: &str, value: &str, detail: &str) -> Self {
        Self {
            field: field.into(),
            cause: "FieldValueInvalid",
            text: format!("Invalid value: \"{value}\": {detail}"),
        }
    }
}

/// `group/Kind` of a collection, for Status messages ("StatefulSet.apps").
pub fn qualified_kind(collection: &Collection) -> (String, String) {
    let group = collection
        .prefix
        .strip_prefix("apis/")
        .and_then(|p| p.split('/').next())
        .unwrap_or_default()
        .to_string();
    (group, kind_of_plural(&collection.plural))
}

/// The kind served under a plural, for the resources the tests use.
pub fn kind_of_plural(plural: &str) -> String {
    let known = match plural {
        "pods" => "Pod",
        "persistentvolumeclaims" => "PersistentVolumeClaim",
        "deployments" => "Deployment",
        "statefulsets" => "StatefulSet",
        "daemonsets" => "DaemonSet",
        "replicasets" => "ReplicaSet",
        "jobs" => "Job",
        "cronjobs" => "CronJob",
        "events" => "Event",
        "configmaps" => "ConfigMap",
        "secrets" => "Secret",
        "leases" => "Lease",
        "limitranges" => "LimitRange",
        "poddisruptionbudgets" => "PodDisruptionBudget",
        "namespaces" => "Namespace",
        "nodes" => "Node",
        "services" => "Service",
        "storageclasses" => "StorageClass",
        "certificates" => "Certificate",
        "resourcequotas" => "ResourceQuota",
        "priorityclasses" => "PriorityClass",
        "serviceaccounts" => "ServiceAccount",
        "mutatingwebhookconfigurations" => "MutatingWebhookConfiguration",
        "validatingwebhookconfigurations" => "ValidatingWebhookConfiguration",
        other => return other.trim_end_matches('s').to_string(),
    };
    known.to_string()
}

/// 422 Invalid with the apiserver's aggregated message and causes.
fn invalid(collection: &Collection, name: &str, errors: Vec<FieldError>) -> Result<(), Refusal> {
    if errors.is_empty() {
        return Ok(());
    }
    let (group, kind) = qualified_kind(collection);
    let qualified = if group.is_empty() {
        kind.clone()
    } else {
        format!("{kind}.{group}")
    };
    let rendered: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.text))
        .collect();
    let list = if rendered.len() == 1 {
        rendered[0].clone()
    } else {
        format!("[{}]", rendered.join(", "))
    };
    let causes: Vec<Value> = errors
        .iter()
        .map(|e| json!({"reason": e.cause, "message": e.text, "field": e.field}))
        .collect();
    Err(Refusal {
        code: StatusCode::UNPROCESSABLE_ENTITY,
        reason: "Invalid".into(),
        message: format!("{qualified} \"{name}\" is invalid: {list}"),
        details: json!({"name": name, "group": group, "kind": kind, "causes": causes}),
    })
}

/// 422 Invalid for a Pod.
pub fn invalid_pod(name: &str, errors: Vec<FieldError>) -> Result<(), Refusal> {
    invalid(&Collection::core("", "pods"), name, errors)
}

/// Whether the resource has a `status` subresource, so updates of the main resource keep the
/// stored status.
pub fn has_status_subresource(collection: &Collection) -> bool {
    if collection.prefix == "apis/cert-manager.io/v1" {
        return collection.plural == "certificates";
    }
    matches!(
        collection.plural.as_str(),
        "pods"
            | "persistentvolumeclaims"
            | "deployments"
            | "statefulsets"
            | "daemonsets"
            | "replicasets"
            | "jobs"
            | "cronjobs"
            | "poddisruptionbudgets"
            | "namespaces"
            | "nodes"
            | "services"
            | "resourcequotas"
    )
}

/// Validation of an UPDATE (PUT, any PATCH, apply to an existing object).
pub fn validate_update(
    collection: &Collection,
    name: &str,
    old: &Value,
    new: &Value,
) -> Result<(), Refusal> {
    let mut errors = match (collection.prefix.as_str(), collection.plural.as_str()) {
        ("apis/apps/v1", "statefulsets") => statefulset_update(old, new),
        ("apis/apps/v1", "deployments" | "daemonsets" | "replicasets") => {
            immutable(old, new, "/spec/selector", "spec.selector")
        }
        ("apis/batch/v1", "jobs") => {
            let mut errors = immutable(old, new, "/spec/selector", "spec.selector");
            errors.extend(immutable(old, new, "/spec/template", "spec.template"));
            errors
        }
        ("api/v1", "persistentvolumeclaims") => claim_update(old, new),
        ("api/v1", "pods") => pod_update(old, new),
        ("api/v1", "configmaps") => configmap_size(new),
        ("apis/events.k8s.io/v1", "events") => super::events::validate_update(old, new, false),
        ("api/v1", "events") => super::events::validate_update(old, new, true),
        _ => Vec::new(),
    };
    errors.extend(resource_requirements(collection, new));
    invalid(collection, name, errors)
}

/// The apiserver's limit on the data of a ConfigMap (`core.MaxSecretSize`).
pub const CONFIGMAP_DATA_LIMIT: usize = 1024 * 1024;

/// ValidateConfigMap's size rule: the values of `data` plus the decoded values of `binaryData`.
fn configmap_size(object: &Value) -> Vec<FieldError> {
    use base64::Engine;
    let text: usize = object["data"]
        .as_object()
        .map(|data| data.values().filter_map(Value::as_str).map(str::len).sum())
        .unwrap_or(0);
    let binary: usize = object["binaryData"]
        .as_object()
        .map(|data| {
            data.values()
                .filter_map(Value::as_str)
                .map(|encoded| {
                    base64::engine::general_purpose::STANDARD
                        .decode(encoded)
                        .map_or(encoded.len(), |bytes| bytes.len())
                })
                .sum()
        })
        .unwrap_or(0);
    if text + binary > CONFIGMAP_DATA_LIMIT {
        vec![FieldError::too_long("[]", CONFIGMAP_DATA_LIMIT)]
    } else {
        Vec::new()
    }
}

/// Validation of a CREATE beyond admission.
pub fn validate_create(collection: &Collection, name: &str, object: &Value) -> Result<(), Refusal> {
    let mut errors = match (collection.prefix.as_str(), collection.plural.as_str()) {
        ("apis/events.k8s.io/v1", "events") => super::events::validate_create(object, false),
        ("api/v1", "events") => super::events::validate_create(object, true),
        ("api/v1", "configmaps") => configmap_size(object),
        _ => Vec::new(),
    };
    errors.extend(resource_requirements(collection, object));
    invalid(collection, name, errors)
}

/// Where a kind keeps its pod spec.
fn pod_spec_path(collection: &Collection) -> Option<&'static str> {
    match (collection.prefix.as_str(), collection.plural.as_str()) {
        ("api/v1", "pods") => Some("spec"),
        ("apis/apps/v1", "deployments" | "statefulsets" | "daemonsets" | "replicasets")
        | ("apis/batch/v1", "jobs") => Some("spec.template.spec"),
        ("apis/batch/v1", "cronjobs") => Some("spec.jobTemplate.spec.template.spec"),
        _ => None,
    }
}

/// `ValidateResourceRequirements`' request <= limit rule, for every container of the pod spec.
fn resource_requirements(collection: &Collection, object: &Value) -> Vec<FieldError> {
    let Some(path) = pod_spec_path(collection) else {
        return Vec::new();
    };
    let pointer = format!("/{}", path.replace('.', "/"));
    let Some(spec) = object.pointer(&pointer) else {
        return Vec::new();
    };
    let mut errors = Vec::new();
    for list in ["initContainers", "containers"] {
        for (index, container) in spec[list].as_array().into_iter().flatten().enumerate() {
            let resources = &container["resources"];
            let Some(requests) = resources["requests"].as_object() else {
                continue;
            };
            let mut names: Vec<&String> = requests.keys().collect();
            names.sort();
            for resource in names {
                let request = super::quantity::Quantity::parse(
                    requests[resource].as_str().unwrap_or_default(),
                );
                let limit = super::quantity::Quantity::parse(
                    resources["limits"][resource].as_str().unwrap_or_default(),
                );
                if let (Some(request), Some(limit)) = (request, limit)
                    && request > limit
                {
                    errors.push(FieldError::invalid(
                        &format!("{path}.{list}[{index}].resources.requests"),
                        &request.canonical(),
                        &format!("must be less than or equal to {resource} limit"),
                    ));
                }
            }
        }
    }
    errors
}

fn immutable(old: &Value, new: &Value, pointer: &str, field: &str) -> Vec<FieldError> {
    let before = old.pointer(pointer).unwrap_or(&Value::Null);
    let after = new.pointer(pointer).unwrap_or(&Value::Null);
    if before == after {
        Vec::new()
    } else {
        vec![FieldError::immutable(field, after)]
    }
}

const STATEFULSET_MUTABLE: [&str; 7] = [
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

fn without(spec: &Value, keys: &[&str]) -> Value {
    let mut spec = spec.clone();
    if let Some(fields) = spec.as_object_mut() {
        for key in keys {
            fields.remove(*key);
        }
    }
    spec
}

fn statefulset_update(old: &Value, new: &Value) -> Vec<FieldError> {
    if without(&old["spec"], &STATEFULSET_MUTABLE) == without(&new["spec"], &STATEFULSET_MUTABLE) {
        return Vec::new();
    }
    vec![FieldError::forbidden(
        "spec",
        "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
    )]
}

pub fn quantity(value: &Value) -> Option<super::quantity::Quantity> {
    value.as_str().and_then(super::quantity::Quantity::parse)
}

/// Sets the field at `pointer` in `to` as it is in `from`, removing it when `from` has none.
fn copy_field(from: &Value, to: &mut Value, pointer: &str) {
    let value = from.pointer(pointer).cloned();
    let segments: Vec<&str> = pointer.split('/').filter(|s| !s.is_empty()).collect();
    let Some((key, parents)) = segments.split_last() else {
        return;
    };
    let mut target = to;
    for segment in parents {
        if value.is_none() && target.get(*segment).is_none() {
            return;
        }
        target = &mut target[*segment];
    }
    match value {
        Some(value) => target[*key] = value,
        None => {
            if let Some(fields) = target.as_object_mut() {
                fields.remove(*key);
            }
        }
    }
}

fn claim_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut old_spec = old["spec"].clone();
    let mut new_spec = new["spec"].clone();
    // The volume name may be set once (the PV controller binds the claim).
    if old_spec["volumeName"].as_str().is_none_or(str::is_empty) {
        copy_field(&new_spec, &mut old_spec, "/volumeName");
    }
    let bound = new["status"]["phase"] == "Bound";
    if bound {
        copy_field(&old_spec, &mut new_spec, "/resources/requests/storage");
        copy_field(&old_spec, &mut new_spec, "/volumeAttributesClassName");
    }
    if old_spec != new_spec {
        errors.push(FieldError::forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        ));
    }
    let before = quantity(&old["spec"]["resources"]["requests"]["storage"]);
    let after = quantity(&new["spec"]["resources"]["requests"]["storage"]);
    if let (Some(before), Some(after)) = (before, after)
        && after < before
    {
        errors.push(FieldError::forbidden(
            "spec.resources.requests.storage",
            "field can not be less than previous value",
        ));
    }
    errors
}

/// The pod spec with the fields an update may change taken from `old`; `None` when tolerations
/// were removed or changed (only additions are allowed).
fn pod_spec_as_updatable(old: &Value, new: &Value) -> Option<Value> {
    let mut spec = new.clone();
    for list in ["containers", "initContainers"] {
        let (Some(before), Some(after)) = (
            old[list].as_array(),
            spec.get_mut(list).and_then(Value::as_array_mut),
        ) else {
            continue;
        };
        for (container, previous) in after.iter_mut().zip(before) {
            copy_field(previous, container, "/image");
        }
    }
    for field in ["/activeDeadlineSeconds", "/terminationGracePeriodSeconds"] {
        copy_field(old, &mut spec, field);
    }
    let old_tolerations = old["tolerations"].as_array().cloned().unwrap_or_default();
    let new_tolerations = spec["tolerations"].as_array().cloned().unwrap_or_default();
    if !old_tolerations.iter().all(|t| new_tolerations.contains(t)) {
        return None;
    }
    copy_field(old, &mut spec, "/tolerations");
    Some(spec)
}

fn pod_update(old: &Value, new: &Value) -> Vec<FieldError> {
    // The stored pod was defaulted when it was written; default it again for one stored raw.
    let mut old = old.clone();
    super::defaults::apply(&Collection::core("", "pods"), &mut old);
    let allowed = pod_spec_as_updatable(&old["spec"], &new["spec"]);
    if allowed.as_ref() == Some(&old["spec"]) {
        return Vec::new();
    }
    vec![FieldError::forbidden(
        "spec",
        "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
    )]
}

const TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The ServiceAccount admission plugin on Pod CREATE: `serviceAccountName` defaults to
/// `default`, and unless `automountServiceAccountToken: false` the projected API token volume
/// is added and mounted read-only into every container (the real plugin picks a random volume
/// name suffix; this one is fixed).
pub fn service_account_admission(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.entry("serviceAccountName")
        .or_insert_with(|| json!("default"));
    if spec.get("automountServiceAccountToken") == Some(&json!(false)) {
        return;
    }
    let volume = "kube-api-access-fk7qz";
    let mut mounted = false;
    for list in ["initContainers", "containers"] {
        for container in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let has_token = container["volumeMounts"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["mountPath"] == TOKEN_PATH));
            if has_token {
                continue;
            }
            let mount = json!({"name": volume, "readOnly": true, "mountPath": TOKEN_PATH});
            match container
                .get_mut("volumeMounts")
                .and_then(Value::as_array_mut)
            {
                Some(mounts) => mounts.push(mount),
                None => container["volumeMounts"] = json!([mount]),
            }
            mounted = true;
        }
    }
    if mounted {
        let token = json!({"name": volume, "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}});
        match spec.get_mut("volumes").and_then(Value::as_array_mut) {
            Some(volumes) => volumes.push(token),
            None => {
                spec.insert("volumes".into(), json!([token]));
            }
        }
    }
}
