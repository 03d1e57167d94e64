//! The file backend, `.state/fixes.yaml` by default: for running without a cluster.
//!
//! The file is polled (size and modification time), so edits by hand or by another process are
//! picked up without a restart. Writes go to a temporary file renamed over the old one, so a
//! reader never sees half a document. Writers, in this process or in others (`selfheal heal` and
//! `selfheal fixes import` on the same file), take an advisory lock on the sidecar file
//! `<file>.lock` around read, change and rename, so no update is lost. The file has no size limit; its size is the gauge
//! `selfheal_store_bytes` all the same, with the log line at 80 % of the ConfigMap limit, since a
//! file store is often the rehearsal of a ConfigMap one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Mutex;

use crate::core::document::FixDocument;
use crate::metrics::Metrics;
use crate::store::{SizeWatch, Snapshot, StoreError, publish_document};

pub struct FileStore {
    path: PathBuf,
    poll_interval: Duration,
    snapshot: Snapshot,
    metrics: Arc<Metrics>,
    /// Serialises writers in this process; also remembers the version last published.
    state: Mutex<Option<FileVersion>>,
    size: SizeWatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileVersion {
    modified: Option<SystemTime>,
    len: u64,
}

impl FileStore {
    pub fn new(path: impl Into<PathBuf>, poll_interval: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            path: path.into(),
            poll_interval,
            snapshot: Snapshot::default(),
            metrics,
            state: Mutex::new(None),
            size: SizeWatch::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.clone()
    }

    /// Reads the file now and publishes it if it changed since the last read. A missing file is
    /// an empty store; an unreadable one keeps the current snapshot.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let mut last = self.state.lock().await;
        let version = self.version().await;
        if self.snapshot.is_loaded() && *last == version {
            return Ok(());
        }
        *last = version;
        let document = match self.read_text().await {
            Ok(text) => {
                self.size.observe(&self.origin(), text.len(), &self.metrics);
                self.parse(&text)
            }
            Err(error) => Err(error),
        };
        let document = match document {
            Ok(document) => document,
            Err(error) => {
                self.metrics.store_error("document");
                // Without a first good read the webhook still starts, with no fixes.
                self.snapshot.mark_loaded();
                return Err(error);
            }
        };
        publish_document(&self.origin(), &document, &self.snapshot, &self.metrics);
        Ok(())
    }

    /// Polls the file until the task is dropped.
    pub async fn keep_current(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(self.poll_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error = None;
        loop {
            ticker.tick().await;
            match self.refresh().await {
                Ok(()) => last_error = None,
                Err(error) => {
                    let message = error.to_string();
                    if last_error.as_ref() != Some(&message) {
                        tracing::error!(error = %message, "fix file unreadable; keeping the last good fixes");
                    }
                    last_error = Some(message);
                }
            }
        }
    }

    pub async fn read_document(&self) -> Result<FixDocument, StoreError> {
        let text = self.read_text().await?;
        self.parse(&text)
    }

    async fn read_text(&self) -> Result<String, StoreError> {
        match tokio::fs::read_to_string(&self.path).await {
            Ok(text) => Ok(text),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(source) => Err(StoreError::Read {
                path: self.origin(),
                source,
            }),
        }
    }

    fn parse(&self, text: &str) -> Result<FixDocument, StoreError> {
        FixDocument::parse(text).map_err(|source| StoreError::Document {
            origin: self.origin(),
            source,
        })
    }

    /// Applies `change` to the file's document (see `FixStore::update`). A file that is not
    /// valid YAML is never overwritten: fixing it is left to a person, and the error says so.
    pub async fn update<T>(&self, change: impl Fn(&mut FixDocument) -> T) -> Result<T, StoreError> {
        let last = self.state.lock().await;
        let lock = self.lock_exclusively().await?;
        let mut document = self.read_document().await?;
        let unwritable = |source| StoreError::Document {
            origin: self.path.display().to_string(),
            source,
        };
        let before = document.to_yaml().map_err(unwritable)?;
        let result = change(&mut document);
        let text = document.to_yaml().map_err(unwritable)?;
        if text != before {
            self.write_atomically(&text).await.inspect_err(|_| {
                self.metrics.store_error("write");
            })?;
        }
        drop(lock);
        drop(last);
        self.refresh().await?;
        Ok(result)
    }

    /// Waits for the exclusive advisory lock on `<file>.lock`, which other processes writing the
    /// same file take too; it is released when the returned file is dropped.
    async fn lock_exclusively(&self) -> Result<std::fs::File, StoreError> {
        let mut path = self.path.clone().into_os_string();
        path.push(".lock");
        let path = PathBuf::from(path);
        let error = |source| StoreError::Write {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent).await.map_err(error)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(error)?;
        tokio::task::spawn_blocking(move || file.lock().map(|()| file))
            .await
            .map_err(|join| error(std::io::Error::other(join)))?
            .map_err(error)
    }

    async fn write_atomically(&self, text: &str) -> Result<(), StoreError> {
        let error = |source| StoreError::Write {
            path: self.origin(),
            source,
        };
        let mut temporary = self.path.clone().into_os_string();
        temporary.push(format!(".tmp-{}", std::process::id()));
        tokio::fs::write(&temporary, text).await.map_err(error)?;
        tokio::fs::rename(&temporary, &self.path)
            .await
            .map_err(error)
    }

    async fn version(&self) -> Option<FileVersion> {
        let metadata = tokio::fs::metadata(&self.path).await.ok()?;
        Some(FileVersion {
            modified: metadata.modified().ok(),
            len: metadata.len(),
        })
    }

    fn origin(&self) -> String {
        self.path.display().to_string()
    }
}
