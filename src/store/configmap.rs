//! The ConfigMap backend: `fixes` in selfheal's namespace, data key `fixes.yaml`, so that
//! `kubectl describe configmap fixes` shows every fix and why it was made.
//!
//! Reads: a watch keeps the snapshot current (the admission path never calls the API).
//! Writes: read, merge, replace with the read `resourceVersion`; a conflict means someone else
//! wrote in between, so the write starts over from their version and no fix is lost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use tokio::sync::Mutex;

use crate::core::document::FixDocument;
use crate::core::fix::Fix;
use crate::metrics::Metrics;
use crate::store::{FIXES_KEY, Recorded, Snapshot, StoreError, publish_document};

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
        match parse(configmap) {
            Ok(document) => {
                publish_document(&self.describe(), &document, &self.snapshot, &self.metrics);
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

    /// Records `fix` with optimistic concurrency; see the module documentation.
    pub async fn record(&self, fix: Fix) -> Result<Recorded, StoreError> {
        for attempt in 0..MAX_CONFLICT_RETRIES {
            if attempt > 0 {
                tokio::time::sleep(conflict_backoff(attempt)).await;
            }
            let result = match self.api.get_opt(&self.name).await? {
                None => {
                    let mut document = FixDocument::default();
                    let outcome = document.record(fix.clone());
                    let recorded = Recorded::from_document(outcome, &document, &fix);
                    let configmap = self.configmap(None, &document);
                    self.api
                        .create(&PostParams::default(), &configmap)
                        .await
                        .map(|_| recorded)
                }
                Some(current) => {
                    let mut document = parse(&current).map_err(|source| StoreError::Document {
                        origin: self.describe(),
                        source,
                    })?;
                    let outcome = document.record(fix.clone());
                    let recorded = Recorded::from_document(outcome, &document, &fix);
                    if !recorded.outcome.changed() {
                        return Ok(recorded);
                    }
                    let configmap = self.configmap(Some(current.metadata), &document);
                    self.api
                        .replace(&self.name, &PostParams::default(), &configmap)
                        .await
                        .map(|_| recorded)
                }
            };
            match result {
                Ok(recorded) => return Ok(recorded),
                // 409: someone else created or updated it first; start over from their version.
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    tracing::debug!(configmap = %self.describe(), attempt, "write conflict; retrying");
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

    /// The ConfigMap to write: the read metadata (with its resourceVersion) and the new data.
    fn configmap(&self, metadata: Option<ObjectMeta>, document: &FixDocument) -> ConfigMap {
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
            data: Some(BTreeMap::from([(
                FIXES_KEY.to_string(),
                document.to_yaml(),
            )])),
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
        let event = Event {
            type_: EventType::Warning,
            reason: reason.to_string(),
            note: Some(crate::text::truncate(note, 1000)),
            action: "LoadFixes".to_string(),
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
