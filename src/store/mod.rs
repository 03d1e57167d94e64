//! The fix store: where fixes persist (a ConfigMap in a cluster, a file on a laptop) and the
//! in-memory snapshot the webhook reads without any I/O.
//!
//! Data flows one way: backend → parsed document → `FixIndex` → `Snapshot` → webhook.
//! A document that cannot be read never replaces a good snapshot.
//!
//! Every write is a read-modify-write of the whole document (`FixStore::update`): the ConfigMap
//! with its `resourceVersion` (a conflict starts over from the other writer's version), the file
//! under a lock and an atomic rename. A change that leaves the document as it was writes nothing.
//! The snapshot changes only when the stored document does, so a refused write (the apiserver
//! refuses a ConfigMap whose data passes 1 MiB) leaves both the snapshot and the stored fixes as
//! they were.

pub mod configmap;
pub mod file;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{info, warn};

use arc_swap::ArcSwap;

use crate::core::document::{DocumentError, EntryProblem, FixDocument};
use crate::core::fix::{Fix, MergeOutcome};
use crate::core::index::FixIndex;
use crate::metrics::Metrics;

pub use configmap::ConfigMapStore;
pub use file::FileStore;

/// Data key of the ConfigMap, and file name of the file store.
pub const FIXES_KEY: &str = "fixes.yaml";

/// The apiserver's limit on a ConfigMap's data: the values of `data` and `binaryData` together
/// (`core.MaxSecretSize`, 1 MiB). A write past it is refused with 422 Invalid ("Too long").
pub const CONFIGMAP_LIMIT_BYTES: usize = 1024 * 1024;

/// The stored size at which a warning is raised: 80 % of the ConfigMap limit.
pub const WARN_BYTES: usize = CONFIGMAP_LIMIT_BYTES * 8 / 10;

/// Whether a stored size of `bytes` is at or past the warning threshold.
pub fn near_limit(bytes: usize) -> bool {
    bytes >= WARN_BYTES
}

/// Follows the stored size: sets the gauge and says when it crosses the warning threshold, once
/// per crossing (not on every write).
#[derive(Default)]
pub(crate) struct SizeWatch {
    above: AtomicBool,
}

impl SizeWatch {
    /// Records a stored size of `bytes`. True when it has just crossed above the threshold.
    pub(crate) fn observe(&self, origin: &str, bytes: usize, metrics: &Metrics) -> bool {
        metrics
            .store_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        let above = near_limit(bytes);
        let was_above = self.above.swap(above, Ordering::AcqRel);
        if above && !was_above {
            warn!(
                store = origin,
                bytes,
                limit = CONFIGMAP_LIMIT_BYTES,
                "{}",
                near_limit_message(bytes)
            );
        } else if was_above && !above {
            info!(
                store = origin,
                bytes,
                limit = CONFIGMAP_LIMIT_BYTES,
                "the fix store is back below 80 % of the ConfigMap limit"
            );
        }
        above && !was_above
    }
}

/// What the warning at 80 % says, in the log and in the Event.
pub fn near_limit_message(bytes: usize) -> String {
    format!(
        "fixes.yaml holds {bytes} bytes, {}% of the 1 MiB ({CONFIGMAP_LIMIT_BYTES} bytes) a \
         ConfigMap may hold: past it the apiserver refuses every write and new fixes are not \
         stored (the stored ones keep applying). Make room with `selfheal fixes prune` or \
         `selfheal fixes forget`",
        bytes * 100 / CONFIGMAP_LIMIT_BYTES
    )
}

/// What recording a fix did, and the fix as stored afterwards (the larger of old and new).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub outcome: MergeOutcome,
    pub stored: Fix,
}

impl Recorded {
    pub(crate) fn from_document(outcome: MergeOutcome, document: &FixDocument, fix: &Fix) -> Self {
        let stored = document
            .get(&fix.key())
            .cloned()
            .unwrap_or_else(|| fix.clone());
        Self { outcome, stored }
    }
}

/// The fixes currently in force, shared between the store (writer) and the webhook (readers).
#[derive(Clone, Default)]
pub struct Snapshot {
    inner: Arc<SnapshotInner>,
}

#[derive(Default)]
struct SnapshotInner {
    index: ArcSwap<FixIndex>,
    loaded: AtomicBool,
}

impl Snapshot {
    /// The current fixes. Cheap: an atomic load, no lock, no copy.
    pub fn current(&self) -> Arc<FixIndex> {
        self.inner.index.load_full()
    }

    /// True once the store has been read at least once; `/readyz` waits for it.
    pub fn is_loaded(&self) -> bool {
        self.inner.loaded.load(Ordering::Acquire)
    }

    pub fn publish(&self, index: FixIndex) {
        self.inner.index.store(Arc::new(index));
        self.inner.loaded.store(true, Ordering::Release);
    }

    /// Marks the snapshot loaded without changing it (the store exists and is empty).
    pub fn mark_loaded(&self) {
        self.inner.loaded.store(true, Ordering::Release);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{origin}: {source}")]
    Document {
        origin: String,
        #[source]
        source: DocumentError,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("gave up writing ConfigMap {0} after {1} conflicting concurrent updates")]
    TooManyConflicts(String, usize),
    #[error(
        "ConfigMap {configmap}: the apiserver refused {bytes} bytes of fixes.yaml (a ConfigMap \
         holds at most {CONFIGMAP_LIMIT_BYTES} bytes); nothing was written and the stored fixes \
         are unchanged: {message}"
    )]
    TooLarge {
        configmap: String,
        bytes: usize,
        message: String,
    },
}

/// Logs and counts the bad entries of a document that was otherwise read.
pub(crate) fn report_problems(origin: &str, problems: &[EntryProblem], metrics: &Metrics) {
    for problem in problems {
        tracing::warn!(store = origin, %problem, "skipping invalid fix entry");
        metrics.store_error("entry");
    }
}

/// Publishes the fixes of `document`, keeping what an invalid entry used to be.
pub(crate) fn publish_document(
    origin: &str,
    document: &FixDocument,
    snapshot: &Snapshot,
    metrics: &Metrics,
) {
    let problems = document.problems();
    report_problems(origin, &problems, metrics);
    let index = FixIndex::next(&snapshot.current(), document);
    metrics.fixes_loaded.set(index.len() as i64);
    metrics.store_reloads.inc();
    tracing::debug!(store = origin, fixes = index.len(), "fix snapshot updated");
    snapshot.publish(index);
}

/// One of the two backends.
#[derive(Clone)]
pub enum FixStore {
    File(Arc<FileStore>),
    ConfigMap(Arc<ConfigMapStore>),
}

impl FixStore {
    pub fn snapshot(&self) -> Snapshot {
        match self {
            FixStore::File(store) => store.snapshot(),
            FixStore::ConfigMap(store) => store.snapshot(),
        }
    }

    /// Where the fixes live, for logs and messages.
    pub fn describe(&self) -> String {
        match self {
            FixStore::File(store) => format!("file {}", store.path().display()),
            FixStore::ConfigMap(store) => format!("ConfigMap {}", store.describe()),
        }
    }

    /// Keeps the snapshot current until the task is dropped: polls the file, or watches the
    /// ConfigMap.
    pub fn spawn_sync(&self) -> tokio::task::JoinHandle<()> {
        match self.clone() {
            FixStore::File(store) => tokio::spawn(store.keep_current()),
            FixStore::ConfigMap(store) => tokio::spawn(store.keep_current()),
        }
    }

    /// Reads the stored document as it is now (not the snapshot).
    pub async fn read_document(&self) -> Result<FixDocument, StoreError> {
        match self {
            FixStore::File(store) => store.read_document().await,
            FixStore::ConfigMap(store) => store.read_document().await,
        }
    }

    /// Records a fix durably. Idempotent: recording the same fix again returns `Unchanged` and
    /// writes nothing.
    pub async fn record(&self, fix: Fix) -> Result<Recorded, StoreError> {
        self.update(move |document| {
            let outcome = document.record(fix.clone());
            Recorded::from_document(outcome, document, &fix)
        })
        .await
    }

    /// Applies `change` to the stored document and writes the result, with the backend's
    /// concurrency control; see the module documentation. `change` may run more than once (once
    /// per conflicting write), each time on the document as stored then; what it returns for the
    /// document that was written (or left as it was) is returned.
    pub async fn update<T>(
        &self,
        change: impl Fn(&mut FixDocument) -> T + Send + Sync,
    ) -> Result<T, StoreError> {
        match self {
            FixStore::File(store) => store.update(change).await,
            FixStore::ConfigMap(store) => store.update(change).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_warning_fires_once_per_crossing() {
        let watch = SizeWatch::default();
        let metrics = Metrics::new();
        assert!(!watch.observe("t", 1000, &metrics));
        assert!(
            watch.observe("t", WARN_BYTES, &metrics),
            "crossing up warns"
        );
        assert!(
            !watch.observe("t", WARN_BYTES + 10, &metrics),
            "staying above does not"
        );
        assert!(
            metrics
                .encode()
                .contains(&format!("selfheal_store_bytes {}", WARN_BYTES + 10))
        );
        assert!(
            !watch.observe("t", WARN_BYTES - 1, &metrics),
            "going down does not"
        );
        assert!(
            watch.observe("t", CONFIGMAP_LIMIT_BYTES, &metrics),
            "a new crossing warns again"
        );
    }

    #[test]
    fn the_threshold_is_80_percent_of_one_mebibyte() {
        assert_eq!(CONFIGMAP_LIMIT_BYTES, 1_048_576);
        assert!(!near_limit(838_859));
        assert!(near_limit(838_860));
        assert!(near_limit_message(900_000).contains("85%"));
    }
}
