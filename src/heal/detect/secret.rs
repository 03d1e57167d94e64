//! A `kubernetes.io/tls` Secret's certificate problem.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;

use super::{Problem, ProblemKind};
use crate::certs::check;

/// Annotation cert-manager puts on the Secrets it issues, naming their Certificate.
pub const CERT_MANAGER_CERTIFICATE_ANNOTATION: &str = "cert-manager.io/certificate-name";

/// The certificate problem of a `kubernetes.io/tls` Secret, if it has one.
pub fn secret_problem(
    secret: &Secret,
    now: Timestamp,
    window_days: i64,
    provider: &rustls::crypto::CryptoProvider,
) -> Option<Problem> {
    if secret.type_.as_deref() != Some("kubernetes.io/tls") {
        return None;
    }
    let data = secret.data.as_ref();
    let cert = data
        .and_then(|d| d.get("tls.crt"))
        .map(|b| b.0.as_slice())
        .unwrap_or_default();
    let key = data.and_then(|d| d.get("tls.key")).map(|b| b.0.as_slice());
    let (_, issue) = check::check(cert, key, now, window_days, provider);
    Some(Problem {
        namespace: secret.metadata.namespace.clone().unwrap_or_default(),
        object_kind: "Secret",
        object_name: secret.metadata.name.clone().unwrap_or_default(),
        uid: secret.metadata.uid.clone().unwrap_or_default(),
        kind: ProblemKind::Certificate {
            issue: issue?,
            managed_by: secret
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(CERT_MANAGER_CERTIFICATE_ANNOTATION).cloned()),
        },
    })
}
