//! A `kubectl get ... -A -o json` dump as a cluster view (`selfheal health --from-file`): every
//! item that reads is kept; one that does not is named (index, kind, name, field) and skipped.

use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::ObjectMeta;

use super::ClusterView;

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("the dump is not JSON: {0}")]
    Json(String),
    #[error(
        "the dump must be the output of `kubectl get pods,pvc,events,... -A -o json` (a List with `items`)"
    )]
    NotAList,
    #[error("no item of the dump could be read: {0}")]
    NothingReadable(String),
}

/// An item of a dump that could not be read: skipped, the rest of the dump is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableItem {
    /// Its index in `items`.
    pub index: usize,
    pub kind: String,
    /// `namespace/name`, or what there is of it (`?` when absent).
    pub name: String,
    /// The field that does not read (`status.containerStatuses[0].restartCount`), or `.` for
    /// the item as a whole.
    pub field: String,
    pub error: String,
}

impl std::fmt::Display for UnreadableItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "items[{}] ({}) {}: field {}: {}",
            self.index, self.kind, self.name, self.field, self.error
        )
    }
}

/// Why one item does not read: (field, error).
type ItemError = (String, String);

impl ClusterView {
    /// Reads the output of `kubectl get pods,pvc,events,secrets,deployments,statefulsets,jobs,
    /// cronjobs,services,endpointslices,replicasets -A -o json` (any subset, any order):
    ///
    /// - Pods, claims, Services and EndpointSlices are checked; `kubernetes.io/tls` Secrets have
    ///   their certificates checked (other Secrets are not kept);
    /// - Events of both APIs (`core/v1`, `events.k8s.io/v1` with `regarding`/`note`) explain them;
    /// - Jobs and ReplicaSets are read for the owner chain (a dump without them still works: pods
    ///   then resolve through the naming conventions); Deployments, StatefulSets, DaemonSets and
    ///   CronJobs are the top of that chain (their pods name them) and are read for their metadata;
    /// - items of other kinds are ignored.
    ///
    /// An item that does not read as its kind is named (index, kind, name, field), logged, kept in
    /// `unreadable` and skipped; the dump is an error only when not one item could be read.
    pub fn from_dump(text: &str) -> Result<Self, DumpError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| DumpError::Json(e.to_string()))?;
        let items = value
            .get("items")
            .and_then(|i| i.as_array())
            .ok_or(DumpError::NotAList)?;
        // The apiserver's own lists (`PodList` from `kubectl get --raw`) leave the kind of their
        // items out.
        let list_kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .and_then(|k| k.strip_suffix("List"))
            .filter(|k| !k.is_empty());
        let list_api_version = value.get("apiVersion").cloned().unwrap_or_default();
        let mut view = ClusterView::default();
        let mut read = 0;
        for (index, item) in items.iter().enumerate() {
            let item = match (list_kind, item.as_object()) {
                (Some(kind), Some(fields)) if !fields.contains_key("kind") => {
                    let mut fields = fields.clone();
                    fields.insert("kind".into(), kind.into());
                    fields
                        .entry("apiVersion")
                        .or_insert_with(|| list_api_version.clone());
                    std::borrow::Cow::Owned(serde_json::Value::Object(fields))
                }
                _ => std::borrow::Cow::Borrowed(item),
            };
            let item = item.as_ref();
            match view.read_item(item) {
                Ok(()) => read += 1,
                Err((field, error)) => {
                    let text = |pointer: &str| item.pointer(pointer).and_then(|v| v.as_str());
                    let unreadable = UnreadableItem {
                        index,
                        kind: text("/kind").unwrap_or("?").to_string(),
                        name: match (text("/metadata/namespace"), text("/metadata/name")) {
                            (Some(ns), Some(name)) => format!("{ns}/{name}"),
                            (None, Some(name)) => name.to_string(),
                            (_, None) => "?".to_string(),
                        },
                        field,
                        error,
                    };
                    tracing::warn!(item = %unreadable, "skipping an item of the dump");
                    view.unreadable.push(unreadable);
                }
            }
        }
        if read == 0 && !view.unreadable.is_empty() {
            let all: Vec<String> = view.unreadable.iter().map(ToString::to_string).collect();
            return Err(DumpError::NothingReadable(all.join("; ")));
        }
        Ok(view)
    }

    /// Reads one item of a dump into the view.
    fn read_item(&mut self, item: &serde_json::Value) -> Result<(), ItemError> {
        let Some(kind) = item.get("kind").and_then(|k| k.as_str()) else {
            return Err((
                "kind".into(),
                "missing: every item of a List names its kind".into(),
            ));
        };
        let api_version = item
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        match kind {
            "Pod" => self.pods.push(read_as(item)?),
            "PersistentVolumeClaim" => self.claims.push(read_as(item)?),
            "Event" if api_version.starts_with("events.k8s.io/") => {
                let event: k8s_openapi::api::events::v1::Event = read_as(item)?;
                self.events.push(core_event(event));
            }
            "Event" => self.events.push(read_as(item)?),
            "Secret" => {
                // A Secret's values never reach a message: serde quotes the value it refuses.
                let secret: Secret = read_as(item).map_err(|(field, _)| {
                    (
                        field,
                        "does not read as a Secret (value not shown)".to_string(),
                    )
                })?;
                if secret.type_.as_deref() == Some("kubernetes.io/tls") {
                    self.secrets.push(secret);
                }
            }
            "Service" => self.services.push(read_as(item)?),
            "EndpointSlice" => self.endpoint_slices.push(read_as(item)?),
            "Job" | "ReplicaSet" => {
                let meta: ObjectMeta = read_metadata(item)?;
                self.learn_owner(kind, &meta);
            }
            "Deployment" | "StatefulSet" | "DaemonSet" | "CronJob" => {
                read_metadata(item)?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// An item as `T`, or the field that does not read and why.
fn read_as<T: serde::de::DeserializeOwned>(item: &serde_json::Value) -> Result<T, ItemError> {
    serde_json::from_value(item.clone()).map_err(|error| (culprit::<T>(item), error.to_string()))
}

/// An item's metadata.
fn read_metadata(item: &serde_json::Value) -> Result<ObjectMeta, ItemError> {
    let meta = item.get("metadata").cloned().unwrap_or_default();
    serde_json::from_value(meta).map_err(|error| {
        let field = match culprit::<ObjectMeta>(item.get("metadata").unwrap_or_default()) {
            inner if inner == "." => "metadata".to_string(),
            inner => format!("metadata.{inner}"),
        };
        (field, error.to_string())
    })
}

/// The field of `item` that keeps it from reading as `T`: the deepest field whose removal makes
/// it read (serde's errors name no path). `.` when no single field is to blame.
fn culprit<T: serde::de::DeserializeOwned>(item: &serde_json::Value) -> String {
    let reads = |value: serde_json::Value| serde_json::from_value::<T>(value).is_ok();
    let mut path: Vec<String> = Vec::new();
    loop {
        let pointer: String = path
            .iter()
            .map(|step| format!("/{}", escape(step)))
            .collect();
        let Some(node) = item.pointer(&pointer) else {
            break;
        };
        let children: Vec<String> = match node {
            serde_json::Value::Object(map) => map.keys().cloned().collect(),
            serde_json::Value::Array(list) => (0..list.len()).map(|i| i.to_string()).collect(),
            _ => break,
        };
        let blamed = children.into_iter().find(|child| {
            let mut without = item.clone();
            match without.pointer_mut(&pointer) {
                Some(serde_json::Value::Object(map)) => {
                    map.remove(child);
                }
                Some(serde_json::Value::Array(list)) => {
                    if let Ok(index) = child.parse::<usize>()
                        && index < list.len()
                    {
                        list.remove(index);
                    }
                }
                _ => return false,
            }
            reads(without)
        });
        match blamed {
            Some(child) => path.push(child),
            None => break,
        }
    }
    if path.is_empty() {
        return ".".to_string();
    }
    let mut field = String::new();
    for step in path {
        if step.parse::<usize>().is_ok() {
            field.push_str(&format!("[{step}]"));
        } else {
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(&step);
        }
    }
    field
}

/// A key as a JSON Pointer step (RFC 6901).
fn escape(step: &str) -> String {
    step.replace('~', "~0").replace('/', "~1")
}

/// An `events.k8s.io/v1` Event as the `core/v1` Event it mirrors (the apiserver serves each
/// Event through both APIs): `regarding` → `involvedObject`, `note` → `message`,
/// `reportingController` → `reportingComponent`, the `deprecated*` fields to theirs.
pub fn core_event(event: k8s_openapi::api::events::v1::Event) -> Event {
    Event {
        action: event.action,
        count: event.deprecated_count,
        event_time: event.event_time,
        first_timestamp: event.deprecated_first_timestamp,
        involved_object: event.regarding.unwrap_or_default(),
        last_timestamp: event.deprecated_last_timestamp,
        message: event.note,
        metadata: event.metadata,
        reason: event.reason,
        related: event.related,
        reporting_component: event.reporting_controller,
        reporting_instance: event.reporting_instance,
        series: event
            .series
            .map(|series| k8s_openapi::api::core::v1::EventSeries {
                count: Some(series.count),
                last_observed_time: Some(series.last_observed_time),
            }),
        source: event.deprecated_source,
        type_: event.type_,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heal::detect::Thresholds;
    use crate::heal::inspect::{Logs, findings};
    use serde_json::json;

    fn list(items: serde_json::Value) -> String {
        json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
    }

    #[test]
    fn an_unreadable_item_is_named_with_its_field_and_skipped() {
        let dump = list(json!([
            {"apiVersion": "v1", "kind": "Pod",
             "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1"},
             "spec": {"containers": [{"name": "app", "image": "app:1"}]},
             "status": {"phase": "Running", "containerStatuses": [{"name": "app", "ready": true,
                 "restartCount": "three", "image": "app:1", "imageID": ""}]}},
            {"apiVersion": "v1", "metadata": {"name": "kindless"}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "shop", "labels": {"app.kubernetes.io/name": 5}}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-2", "namespace": "shop", "uid": "u2"},
             "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
        ]));
        let view = ClusterView::from_dump(&dump).expect("the readable items are read");
        assert_eq!(view.pods.len(), 1);
        let named: Vec<String> = view.unreadable.iter().map(ToString::to_string).collect();
        assert_eq!(named.len(), 3, "{named:?}");
        assert!(
            named[0].starts_with(
                "items[0] (Pod) shop/web-1: field status.containerStatuses[0].restartCount: invalid type: string \"three\""
            ),
            "{}",
            named[0]
        );
        assert!(
            named[1].starts_with("items[1] (?) kindless: field kind: missing"),
            "{}",
            named[1]
        );
        assert!(
            named[2].starts_with(
                "items[2] (Service) shop/db: field metadata.labels.app.kubernetes.io/name: invalid type"
            ),
            "{}",
            named[2]
        );
    }

    #[test]
    fn an_unreadable_secret_is_named_without_its_values() {
        let dump = list(json!([
            {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
             "metadata": {"name": "db-creds", "namespace": "shop"}, "data": {"password": "hunter2!not-base64"}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-2", "namespace": "shop"}}
        ]));
        let view = ClusterView::from_dump(&dump).unwrap();
        let named = view.unreadable[0].to_string();
        assert_eq!(
            named,
            "items[0] (Secret) shop/db-creds: field data.password: does not read as a Secret (value not shown)"
        );
    }

    #[test]
    fn the_items_of_an_apiserver_list_take_its_kind() {
        let dump = json!({"apiVersion": "v1", "kind": "PodList", "items": [
            {"metadata": {"name": "web-1", "namespace": "shop"}, "status": {"phase": "Pending"}},
            7
        ]});
        let view = ClusterView::from_dump(&dump.to_string()).unwrap();
        assert_eq!(view.pods.len(), 1);
        assert_eq!(
            view.unreadable[0].to_string(),
            "items[1] (?) ?: field kind: missing: every item of a List names its kind"
        );
    }

    #[test]
    fn a_dump_of_which_nothing_reads_is_an_error() {
        let dump = list(json!([{"kind": "Pod", "metadata": 7}]));
        let error = ClusterView::from_dump(&dump).unwrap_err().to_string();
        assert!(
            error.contains("items[0] (Pod) ?: field metadata: invalid type"),
            "{error}"
        );
    }

    #[test]
    fn events_of_both_apis_are_read_and_matched_without_a_uid() {
        let dump = list(json!([
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": "data-0", "namespace": "shop", "uid": "c1"},
             "status": {"phase": "Pending"}},
            {"apiVersion": "events.k8s.io/v1", "kind": "Event",
             "metadata": {"name": "data-0.1", "namespace": "shop"},
             "eventTime": "2026-11-28T11:59:50.000000Z",
             "reportingController": "ebs.csi.aws.com", "reportingInstance": "ebs-csi-1",
             "action": "Provisioning", "reason": "ProvisioningFailed", "type": "Warning",
             "note": "failed to provision volume with StorageClass \"gp3\": quota exceeded",
             "regarding": {"kind": "PersistentVolumeClaim", "namespace": "shop", "name": "data-0", "uid": "c1"},
             "series": {"count": 4, "lastObservedTime": "2026-11-28T11:59:58.000000Z"}},
            {"apiVersion": "v1", "kind": "Event",
             "metadata": {"name": "data-0.2", "namespace": "shop"},
             "involvedObject": {"kind": "PersistentVolumeClaim", "name": "data-0"},
             "reason": "ExternalProvisioning", "type": "Normal",
             "message": "Waiting for a volume to be created either by the external provisioner 'ebs.csi.aws.com' or manually by the system administrator.",
             "lastTimestamp": "2026-11-28T11:59:00Z"},
            {"apiVersion": "v1", "kind": "Event",
             "metadata": {"name": "other.1", "namespace": "shop"},
             "involvedObject": {"kind": "PersistentVolumeClaim", "name": "data-0", "uid": "an-older-claim"},
             "reason": "ProvisioningFailed", "type": "Warning", "message": "of a claim deleted since"}
        ]));
        let view = ClusterView::from_dump(&dump).unwrap();
        assert_eq!(view.events.len(), 3);
        let converted = &view.events[0];
        assert_eq!(
            converted.reporting_component.as_deref(),
            Some("ebs.csi.aws.com")
        );
        assert_eq!(converted.involved_object.name.as_deref(), Some("data-0"));
        let about = view.events_about("PersistentVolumeClaim", &view.claims[0].metadata);
        assert_eq!(
            about.lines,
            [
                "ExternalProvisioning: Waiting for a volume to be created either by the external provisioner 'ebs.csi.aws.com' or manually by the system administrator.",
                "ProvisioningFailed: failed to provision volume with StorageClass \"gp3\": quota exceeded",
            ]
        );
        assert_eq!(about.warnings.len(), 1);
        assert_eq!(
            about.warnings[0].last_seen,
            Some("2026-11-28T11:59:58Z".parse().unwrap()),
            "a series' last observation is when it was last seen"
        );
    }

    #[test]
    fn tls_secrets_of_a_dump_are_checked_and_other_secrets_not_kept() {
        let dump = list(json!([
            {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
             "metadata": {"name": "shop-tls", "namespace": "shop"},
             "data": {"tls.crt": "bm90IGEgY2VydGlmaWNhdGU=", "tls.key": ""}},
            {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
             "metadata": {"name": "db-creds", "namespace": "shop"}, "data": {"password": "aHVudGVyMg=="}}
        ]));
        let view = ClusterView::from_dump(&dump).unwrap();
        assert_eq!(view.secrets.len(), 1);
        let findings = findings(
            &view,
            &Logs::new(),
            jiff::Timestamp::now(),
            &Thresholds::default(),
        );
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].problem.kind.name(), "CertificateUnparsable");
    }
}
