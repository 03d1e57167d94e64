//! The webhook's TLS server configuration. The certificate it serves comes from
//! [`crate::certs::serving`] (re-exported here for the callers that know it by this path).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub use crate::certs::serving::{CertificateFiles, ReloadingCertResolver, TlsError, certified_key};

/// The rustls server configuration: TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1, certificate from the
/// resolver.
pub fn server_config(
    resolver: Arc<ReloadingCertResolver>,
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
