//! The serving certificate of selfheal's HTTPS endpoint, reloaded from its files (or swapped in
//! from memory, for the self-managed certificate) without a restart.
//!
//! rustls asks the resolver for a certificate on every handshake, so swapping the certificate
//! atomically makes the next handshake use it while connections in flight keep theirs: no
//! restart, no failed request. A new pair that does not parse, or whose key does not match the
//! certificate, is refused and the old one stays in service.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: String },
    #[error("{path}: not a PEM certificate: {reason}")]
    BadCertificate { path: String, reason: String },
    #[error("{path}: not a PEM private key: {reason}")]
    BadKey { path: String, reason: String },
    #[error("{key} does not belong to the certificate in {cert}: {reason}")]
    Mismatch {
        cert: String,
        key: String,
        reason: String,
    },
}

/// The certificate and key files the webhook serves.
#[derive(Debug, Clone)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertificateFiles {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        }
    }

    /// Reads and checks the pair.
    pub fn load(&self, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
        let cert_pem = read(&self.cert)?;
        let key_pem = read(&self.key)?;
        certified_key(&cert_pem, &key_pem, provider).map_err(|error| error.with_paths(self))
    }

    /// Modification times and sizes: what `keep_current` compares to notice a change.
    fn version(&self) -> Option<[(SystemTime, u64); 2]> {
        let stamp = |path: &Path| {
            let metadata = std::fs::metadata(path).ok()?;
            Some((metadata.modified().ok()?, metadata.len()))
        };
        Some([stamp(&self.cert)?, stamp(&self.key)?])
    }
}

/// Parses a PEM certificate chain and key and checks they belong together.
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: String::new(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: String::new(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::BadKey {
        path: String::new(),
        reason: e.to_string(),
    })?;
    let signing_key =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::BadKey {
                path: String::new(),
                reason: e.to_string(),
            })?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|e| TlsError::Mismatch {
        cert: String::new(),
        key: String::new(),
        reason: e.to_string(),
    })?;
    Ok(certified)
}

impl TlsError {
    fn with_paths(self, files: &CertificateFiles) -> Self {
        let cert = files.cert.display().to_string();
        let key = files.key.display().to_string();
        match self {
            TlsError::NoCertificate { .. } => TlsError::NoCertificate { path: cert },
            TlsError::BadCertificate { reason, .. } => {
                TlsError::BadCertificate { path: cert, reason }
            }
            TlsError::BadKey { reason, .. } => TlsError::BadKey { path: key, reason },
            TlsError::Mismatch { reason, .. } => TlsError::Mismatch { cert, key, reason },
            other => other,
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Hands rustls the current certificate on every handshake. The certificate comes from files
/// (`new`, `reload`, `keep_current`) or from memory (`from_pem`, `set_pem`: the self-managed
/// certificate kept in a Secret).
#[derive(Debug)]
pub struct ReloadingCertResolver {
    files: Option<CertificateFiles>,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
}

impl ReloadingCertResolver {
    /// Loads the pair once; fails if it is not usable (there is nothing to serve yet).
    pub fn new(files: CertificateFiles, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let current = files.load(&provider)?;
        Ok(Self {
            files: Some(files),
            provider,
            current: ArcSwap::from_pointee(current),
        })
    }

    /// A resolver serving a PEM pair held in memory.
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let current = certified_key(cert_pem, key_pem, &provider)?;
        Ok(Self {
            files: None,
            provider,
            current: ArcSwap::from_pointee(current),
        })
    }

    /// Serves a new PEM pair from the next handshake on. On error the current one is kept.
    pub fn set_pem(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<(), TlsError> {
        let fresh = certified_key(cert_pem, key_pem, &self.provider)?;
        self.current.store(Arc::new(fresh));
        Ok(())
    }

    /// Reloads the files now. On error the certificate in service is kept.
    pub fn reload(&self) -> Result<(), TlsError> {
        let Some(files) = &self.files else {
            return Ok(());
        };
        let fresh = files.load(&self.provider)?;
        self.current.store(Arc::new(fresh));
        Ok(())
    }

    /// The end-entity certificate in service (DER).
    pub fn serving_certificate(&self) -> CertificateDer<'static> {
        self.current.load().cert[0].clone()
    }

    /// Polls the files and reloads on change, until the task is dropped.
    pub async fn keep_current(self: Arc<Self>, interval: Duration) {
        let Some(files) = self.files.clone() else {
            return;
        };
        let mut seen = files.version();
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let now = files.version();
            if now.is_none() || now == seen {
                continue;
            }
            match self.reload() {
                Ok(()) => {
                    seen = now;
                    tracing::info!(cert = %files.cert.display(), "serving certificate reloaded");
                }
                // A half-written pair (cert renewed, key not yet) is retried on the next tick.
                Err(error) => {
                    tracing::warn!(%error, "new serving certificate refused; keeping the current one")
                }
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
