//! A small HTTP(S) client for Vault's `sys` endpoints, the unseal walk, and the key shares
//! (never printed).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::ByteString;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Serialize;
use serde_json::{Value, json};

use super::status::{SealStatus, UnsealAttempt};

/// One unseal key share. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct UnsealKey(String);

impl std::fmt::Debug for UnsealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnsealKey(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error("{address}: {reason}")]
    Unreachable { address: String, reason: String },
    #[error("{address}: no answer within {seconds}s")]
    Timeout { address: String, seconds: u64 },
    #[error("{address}: HTTP {code}: {message}")]
    Status {
        address: String,
        code: u16,
        message: String,
    },
    #[error("{address}: unexpected answer: {reason}")]
    Malformed { address: String, reason: String },
    #[error("{address}: Vault is not initialized; unsealing needs `vault operator init` first")]
    NotInitialized { address: String },
    #[error("the unseal key Secret has no `{0}` (keys must be key1, key2, … without gaps)")]
    MissingKey(String),
    #[error("the unseal key Secret holds {have} keys; the threshold is {need}")]
    NotEnoughKeys { have: usize, need: u32 },
    #[error(
        "{address}: unseal progress went back to {progress} after share {sent}: the keys do not belong together; stopped"
    )]
    Reset {
        address: String,
        sent: u32,
        progress: u32,
    },
    #[error("{address}: still sealed after {sent} shares; stopped")]
    StillSealed { address: String, sent: u32 },
    #[error("{address}: this replica no longer leads; stopped after {sent} shares")]
    NoLongerLeading { address: String, sent: u32 },
    #[error("https Vault addresses need --vault-ca-file: {0}")]
    Tls(String),
}

/// The keys `key1` … `keyN` of the unseal Secret, in order. A gap is an error naming the key.
pub fn keys_from_secret(data: &BTreeMap<String, ByteString>) -> Result<Vec<UnsealKey>, VaultError> {
    let numbered: Vec<u32> = data
        .keys()
        .filter_map(|k| k.strip_prefix("key")?.parse().ok())
        .collect();
    let count = numbered.iter().copied().max().unwrap_or(0);
    (1..=count)
        .map(|i| {
            let name = format!("key{i}");
            data.get(&name)
                .map(|bytes| UnsealKey(String::from_utf8_lossy(&bytes.0).trim().to_string()))
                .filter(|key| !key.0.is_empty())
                .ok_or(VaultError::MissingKey(name))
        })
        .collect()
}

/// What an unseal attempt did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "camelCase")]
pub enum UnsealOutcome {
    /// Nothing to do: no unseal request was sent.
    AlreadyUnsealed,
    Unsealed {
        shares_sent: u32,
    },
    /// A partial unseal other than the one allowed to be reset was in progress: nothing was sent.
    LeftInProgress {
        progress: u32,
        threshold: u32,
    },
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A small HTTP(S) client for Vault's `sys` endpoints, with a timeout on every request.
#[derive(Clone)]
pub struct VaultClient {
    http: HttpClient,
    timeout: Duration,
}

impl VaultClient {
    /// `ca_pem`: the CA that signs Vault's certificate (needed for https addresses).
    pub fn new(
        ca_pem: Option<&[u8]>,
        provider: Arc<CryptoProvider>,
        timeout: Duration,
    ) -> Result<Self, VaultError> {
        let mut roots = RootCertStore::empty();
        if let Some(pem) = ca_pem {
            for certificate in CertificateDer::pem_slice_iter(pem) {
                let certificate = certificate.map_err(|e| VaultError::Tls(e.to_string()))?;
                roots
                    .add(certificate)
                    .map_err(|e| VaultError::Tls(e.to_string()))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| VaultError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            http: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        })
    }

    async fn call(
        &self,
        address: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, VaultError> {
        let url = format!("{}{path}", address.trim_end_matches('/'));
        let unreachable = |reason: String| VaultError::Unreachable {
            address: address.to_string(),
            reason,
        };
        let payload = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(&url)
            .header("content-type", "application/json")
            .body(Full::new(payload))
            .map_err(|e| unreachable(format!("bad address: {e}")))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            Ok::<_, VaultError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| VaultError::Timeout {
                address: address.to_string(),
                seconds: self.timeout.as_secs(),
            })??;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status != StatusCode::OK {
            let message = value["errors"]
                .as_array()
                .map(|errors| {
                    errors
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_else(|| crate::text::truncate(&String::from_utf8_lossy(&bytes), 200));
            return Err(VaultError::Status {
                address: address.to_string(),
                code: status.as_u16(),
                message,
            });
        }
        Ok(value)
    }

    fn parse(address: &str, value: Value) -> Result<SealStatus, VaultError> {
        serde_json::from_value(value).map_err(|e| VaultError::Malformed {
            address: address.to_string(),
            reason: e.to_string(),
        })
    }

    pub async fn seal_status(&self, address: &str) -> Result<SealStatus, VaultError> {
        let value = self
            .call(address, Method::GET, "/v1/sys/seal-status", None)
            .await?;
        Self::parse(address, value)
    }

    /// Unseals `address` with `keys`; see the module documentation. A partial unseal found at the
    /// server is reset only when it is exactly `abandoned` (judged by [`judge_partial`](super::judge_partial)); any
    /// other one is left alone and nothing is sent.
    pub async fn unseal(
        &self,
        address: &str,
        keys: &[UnsealKey],
        abandoned: Option<&UnsealAttempt>,
    ) -> Result<UnsealOutcome, VaultError> {
        self.unseal_while(address, keys, abandoned, &|| true).await
    }

    /// [`VaultClient::unseal`], sending each write (a reset, a share) only while `may_write`
    /// says so (this replica still leads): the walk stops before the first write it forbids.
    pub async fn unseal_while(
        &self,
        address: &str,
        keys: &[UnsealKey],
        abandoned: Option<&UnsealAttempt>,
        may_write: &(dyn Fn() -> bool + Sync),
    ) -> Result<UnsealOutcome, VaultError> {
        let stopped = |sent| VaultError::NoLongerLeading {
            address: address.to_string(),
            sent,
        };
        let mut status = self.seal_status(address).await?;
        if !status.initialized {
            return Err(VaultError::NotInitialized {
                address: address.to_string(),
            });
        }
        if !status.sealed {
            return Ok(UnsealOutcome::AlreadyUnsealed);
        }
        if keys.len() < status.t as usize {
            return Err(VaultError::NotEnoughKeys {
                have: keys.len(),
                need: status.t,
            });
        }
        if let Some(attempt) = status.attempt() {
            if abandoned != Some(&attempt) {
                return Ok(UnsealOutcome::LeftInProgress {
                    progress: attempt.progress,
                    threshold: status.t,
                });
            }
            // An abandoned attempt: its shares are unknown, start afresh.
            if !may_write() {
                return Err(stopped(0));
            }
            let value = self
                .call(
                    address,
                    Method::PUT,
                    "/v1/sys/unseal",
                    Some(json!({"reset": true})),
                )
                .await?;
            status = Self::parse(address, value)?;
        }
        let mut sent = 0;
        for key in keys.iter().take(status.t as usize) {
            if !may_write() {
                return Err(stopped(sent));
            }
            let value = self
                .call(
                    address,
                    Method::PUT,
                    "/v1/sys/unseal",
                    Some(json!({"key": key.0})),
                )
                .await?;
            sent += 1;
            let now = Self::parse(address, value)?;
            if !now.sealed {
                return Ok(UnsealOutcome::Unsealed { shares_sent: sent });
            }
            if now.progress != sent {
                return Err(VaultError::Reset {
                    address: address.to_string(),
                    sent,
                    progress: now.progress,
                });
            }
        }
        Err(VaultError::StillSealed {
            address: address.to_string(),
            sent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn keys_are_read_in_order_and_gaps_are_named() {
        let keys = keys_from_secret(&data(&[
            ("key2", "bbb\n"),
            ("key1", "aaa"),
            ("root-token", "x"),
        ]))
        .unwrap();
        assert_eq!(keys, [UnsealKey("aaa".into()), UnsealKey("bbb".into())]);
        assert_eq!(
            keys_from_secret(&data(&[("key1", "a"), ("key3", "c")])).unwrap_err(),
            VaultError::MissingKey("key2".into())
        );
        assert_eq!(
            keys_from_secret(&data(&[("key1", "")])).unwrap_err(),
            VaultError::MissingKey("key1".into())
        );
    }

    #[test]
    fn keys_never_print() {
        let key = UnsealKey("s3cr3t-share".into());
        assert_eq!(format!("{key:?}"), "UnsealKey(***)");
        assert!(!format!("{:?}", vec![key]).contains("s3cr3t"));
    }
}
