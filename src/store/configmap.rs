//! The ConfigMap backend: `fixes` in selfheal's namespace, data key `fixes.yaml`, so that
//! `kubectl describe configmap fixes` shows every fix and why it was made.
//!
//! Reads: a watch keeps the snapshot current (the admission path never calls the API).
//! Writes: read, merge, replace with the read `resourceVersion`; a conflict means someone else
//! wrote in between, so the write starts over from their version and no fix is lost.
//!
//! Deleted: the fixes last read stay in memory (the snapshot keeps serving them), and the next
//! write re-creates the ConfigMap from them plus its change, with a log line and a Warning Event
//! `FixStoreRecreated`; a `kubectl delete` therefore neither drops a fix nor hides that it
//! happened. A process that never read the ConfigMap (a one-shot command) starts empty.
//!
//! Size: the apiserver refuses a ConfigMap whose data passes 1 MiB (422 Invalid, "Too long").
//! The stored size is the gauge `selfheal_store_bytes`; at 80 % a log line and a Warning Event
//! `FixStoreNearLimit` say so, once per crossing. A refused write changes nothing stored nor in
//! memory; it is logged, counted (`selfheal_store_errors_total{error="too_large"}`) and reported
//! by a Warning Event `FixStoreFull`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use tokio::sync::Mutex;

use crate::core::document::FixDocument;
use crate::metrics::Metrics;
use crate::store::{
    FIXES_KEY, SizeWatch, Snapshot, StoreError, near_limit_message, publish_document,
};

/// How many times a write is retried after a conflicting concurrent update.
const MAX_CONFLICT_RETRIES: usize = 16;

pub struct ConfigMapStore {
    api: Api<ConfigMap>,
    namespace: String,
    name: String,
    snapshot: Snapshot,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    /// The problems last reported, so a resync does not repeat the same Event.
    last_reported: Mutex<Option<String>>,
    /// The last document read or written successfully; seeds a ConfigMap that was deleted.
    last_good: std::sync::Mutex<Option<FixDocument>>,
    size: SizeWatch,
}

impl ConfigMapStore {
    pub fn new(client: Client, namespace: &str, name: &str, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter {
            controller: "selfheal".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            api: Api::namespaced(client.clone(), namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
            snapshot: Snapshot::default(),
            metrics,
            recorder: Recorder::new(client, reporter),
            last_reported: Mutex::new(None),
            last_good: std::sync::Mutex::new(None),
            size: SizeWatch::default(),
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.clone()
    }

    pub fn describe(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Watches the ConfigMap until the task is dropped. The watch restarts with backoff on
    /// errors; a deleted ConfigMap keeps the fixes in memory (they are re-written by the next
    /// `record`), so a mistaken `kubectl delete` does not undo every fix at once.
    pub async fn keep_current(self: Arc<Self>) {
        let stream = watcher::watch_object(self.api.clone(), &self.name).default_backoff();
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(Some(configmap)) => self.apply(&configmap).await,
                Ok(None) => {
                    if self.snapshot.is_loaded() && !self.snapshot.current().is_empty() {
                        self.metrics.store_error("deleted");
                        tracing::warn!(
                            configmap = %self.describe(),
                            kept = self.snapshot.current().len(),
                            "fix ConfigMap is absent; keeping the fixes already loaded"
                        );
                    }
                    self.snapshot.mark_loaded();
                }
                Err(error) => {
                    self.metrics.store_error("watch");
                    tracing::warn!(configmap = %self.describe(), %error, "watch of the fix ConfigMap failed; retrying");
                }
            }
        }
    }

    /// Publishes the fixes of one version of the ConfigMap.
    pub async fn apply(&self, configmap: &ConfigMap) {
        self.observe_size(configmap).await;
        match parse(configmap) {
            Ok(document) => {
                publish_document(&self.describe(), &document, &self.snapshot, &self.metrics);
                self.remember(&document);
                let problems: Vec<String> = document
                    .problems()
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                if !problems.is_empty() {
                    self.report(configmap, "InvalidFixEntries", &problems.join("; "))
                        .await;
                } else {
                    *self.last_reported.lock().await = None;
                }
            }
            Err(error) => {
                self.metrics.store_error("document");
                self.snapshot.mark_loaded();
                tracing::error!(configmap = %self.describe(), %error, "fix ConfigMap unreadable; keeping the last good fixes");
                self.report(configmap, "InvalidFixStore", &error.to_string())
                    .await;
            }
        }
    }

    pub async fn read_document(&self) -> Result<FixDocument, StoreError> {
        match self.api.get_opt(&self.name).await? {
            Some(configmap) => parse(&configmap).map_err(|source| StoreError::Document {
                origin: self.describe(),
                source,
            }),
            None => Ok(FixDocument::default()),
        }
    }

    /// Applies `change` to the stored document with optimistic concurrency; see the module
    /// documentation and `FixStore::update`.
    pub async fn update<T>(&self, change: impl Fn(&mut FixDocument) -> T) -> Result<T, StoreError> {
        for attempt in 0..MAX_CONFLICT_RETRIES {
            if attempt > 0 {
                tokio::time::sleep(conflict_backoff(attempt)).await;
            }
            let current = self.api.get_opt(&self.name).await?;
            let mut document = match &current {
                Some(configmap) => {
                    let document = parse(configmap).map_err(|source| StoreError::Document {
                        origin: self.describe(),
                        source,
                    })?;
                    self.remember(&document);
                    document
                }
                None => self.last_good().unwrap_or_default(),
            };
            let seeded = current.is_none() && document.fixes().next().is_some();
            // A re-created ConfigMap is written even when `change` itself changes nothing.
            let origin = || format!("ConfigMap {}/{}", self.namespace, self.name);
            let unwritable = |source| StoreError::Document {
                origin: origin(),
                source,
            };
            let before = if seeded {
                String::new()
            } else {
                document.to_yaml().map_err(unwritable)?
            };
            let result = change(&mut document);
            let text = document.to_yaml().map_err(unwritable)?;
            if text == before {
                return Ok(result);
            }
            let bytes = text.len();
            let configmap = self.configmap(current.as_ref().map(|c| c.metadata.clone()), text);
            let written = match &current {
                None => {
                    self.api
                        .create(&crate::cluster::post_params(), &configmap)
                        .await
                }
                Some(_) => {
                    self.api
                        .replace(&self.name, &crate::cluster::post_params(), &configmap)
                        .await
                }
            };
            match written {
                Ok(stored) => {
                    self.remember(&document);
                    self.observe_size(&stored).await;
                    if seeded {
                        self.report_recreated(&stored).await;
                    }
                    return Ok(result);
                }
                // 409: someone else created or updated it first; start over from their version.
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    tracing::debug!(configmap = %self.describe(), attempt, "write conflict; retrying");
                }
                Err(kube::Error::Api(status)) if is_too_long(&status) => {
                    let error = StoreError::TooLarge {
                        configmap: self.describe(),
                        bytes,
                        message: status.message.clone(),
                    };
                    self.metrics.store_error("too_large");
                    tracing::error!(configmap = %self.describe(), bytes, %error, "fix store full: write refused");
                    self.publish(
                        &current.unwrap_or(configmap),
                        "FixStoreFull",
                        &error.to_string(),
                        "StoreFixes",
                    )
                    .await;
                    return Err(error);
                }
                Err(error) => {
                    self.metrics.store_error("write");
                    return Err(error.into());
                }
            }
        }
        self.metrics.store_error("write");
        Err(StoreError::TooManyConflicts(
            self.describe(),
            MAX_CONFLICT_RETRIES,
        ))
    }

    fn remember(&self, document: &FixDocument) {
        if let Ok(mut last) = self.last_good.lock() {
            *last = Some(document.clone());
        }
    }

    fn last_good(&self) -> Option<FixDocument> {
        self.last_good.lock().ok().and_then(|last| last.clone())
    }

    /// The ConfigMap was absent and has been written again from the fixes last read.
    async fn report_recreated(&self, stored: &ConfigMap) {
        let note = "the fix ConfigMap was deleted; re-created it from the fixes last read so none is lost (delete fixes with `selfheal fixes forget`)";
        tracing::warn!(configmap = %self.describe(), "{note}");
        self.publish(stored, "FixStoreRecreated", note, "StoreFixes")
            .await;
    }

    /// Sets the size gauge from a stored version, with a Warning Event when it has just crossed
    /// 80 % of the limit.
    async fn observe_size(&self, configmap: &ConfigMap) {
        let bytes = data_bytes(configmap);
        if self.size.observe(&self.describe(), bytes, &self.metrics) {
            self.publish(
                configmap,
                "FixStoreNearLimit",
                &near_limit_message(bytes),
                "StoreFixes",
            )
            .await;
        }
    }

    /// The ConfigMap to write: the read metadata (with its resourceVersion) and the new data.
    fn configmap(&self, metadata: Option<ObjectMeta>, text: String) -> ConfigMap {
        let metadata = metadata.unwrap_or_else(|| ObjectMeta {
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_string(),
                "selfheal".to_string(),
            )])),
            ..ObjectMeta::default()
        });
        ConfigMap {
            metadata: ObjectMeta {
                managed_fields: None,
                ..metadata
            },
            data: Some(BTreeMap::from([(FIXES_KEY.to_string(), text)])),
            ..ConfigMap::default()
        }
    }

    /// A Warning Event on the ConfigMap, once per distinct problem.
    async fn report(&self, configmap: &ConfigMap, reason: &str, note: &str) {
        let mut last = self.last_reported.lock().await;
        if last.as_deref() == Some(note) {
            return;
        }
        *last = Some(note.to_string());
        drop(last);
        self.publish(configmap, reason, note, "LoadFixes").await;
    }

    /// A Warning Event on the ConfigMap.
    async fn publish(&self, configmap: &ConfigMap, reason: &str, note: &str, action: &str) {
        let event = Event {
            type_: EventType::Warning,
            reason: reason.to_string(),
            note: Some(crate::text::truncate(note, 1000)),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(error) = self
            .recorder
            .publish(&event, &configmap.object_ref(&()))
            .await
        {
            tracing::warn!(%error, "could not publish an Event on the fix ConfigMap");
        }
    }
}

/// Bytes of a ConfigMap's data as the apiserver counts them against its limit: the values of
/// `data` and `binaryData` (keys are not counted).
fn data_bytes(configmap: &ConfigMap) -> usize {
    let text: usize = configmap
        .data
        .iter()
        .flat_map(|data| data.values())
        .map(String::len)
        .sum();
    let binary: usize = configmap
        .binary_data
        .iter()
        .flat_map(|data| data.values())
        .map(|bytes| bytes.0.len())
        .sum();
    text + binary
}

/// The apiserver's refusal of a ConfigMap past its size limit: 422 Invalid, "... is invalid: []:
/// Too long: ..." (the wording after "Too long" differs between Kubernetes versions).
fn is_too_long(status: &kube::core::Status) -> bool {
    status.code == 422 && status.message.contains("Too long")
}

fn parse(configmap: &ConfigMap) -> Result<FixDocument, crate::core::document::DocumentError> {
    let text = configmap
        .data
        .as_ref()
        .and_then(|data| data.get(FIXES_KEY))
        .map(String::as_str)
        .unwrap_or_default();
    FixDocument::parse(text)
}

/// 10ms, 20ms, 40ms ... capped at 1s, with the low bits of the clock as jitter so that writers
/// that collided once do not collide again.
fn conflict_backoff(attempt: usize) -> Duration {
    let base = 10u64.saturating_mul(1 << attempt.min(7)).min(1000);
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()) % (base / 2 + 1))
        .unwrap_or(0);
    Duration::from_millis(base + jitter)
}
