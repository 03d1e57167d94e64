//! The fix store: where fixes persist (a ConfigMap in a cluster, a file on a laptop) and the
//! in-memory snapshot the webhook reads without any I/O.
//!
//! Data flows one way: backend → parsed document → `FixIndex` → `Snapshot` → webhook.
//! A document that cannot be read never replaces a good snapshot.

pub mod configmap;
pub mod file;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;

use crate::core::document::{DocumentError, EntryProblem, FixDocument};
use crate::core::fix::{Fix, MergeOutcome};
use crate::core::index::FixIndex;
use crate::metrics::Metrics;

pub use configmap::ConfigMapStore;
pub use file::FileStore;

/// Data key of the ConfigMap, and file name of the file store.
pub const FIXES_KEY: &str = "fixes.yaml";

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
        match self {
            FixStore::File(store) => store.record(fix).await,
            FixStore::ConfigMap(store) => store.record(fix).await,
        }
    }
}
