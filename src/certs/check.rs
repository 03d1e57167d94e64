//! Certificates in `kubernetes.io/tls` Secrets: parsed with x509-parser, checked for expiry,
//! validity window and key match. Pure: the Secret's bytes in, a verdict out.

use jiff::Timestamp;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Serialize;

/// What is wrong with a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "issue", rename_all = "camelCase")]
pub enum CertIssue {
    Expired { not_after: String },
    NotYetValid { not_before: String },
    ExpiringSoon { not_after: String, days_left: i64 },
    Unparsable { reason: String },
    KeyMismatch { reason: String },
}

impl CertIssue {
    pub fn name(&self) -> &'static str {
        match self {
            CertIssue::Expired { .. } => "CertificateExpired",
            CertIssue::NotYetValid { .. } => "CertificateNotYetValid",
            CertIssue::ExpiringSoon { .. } => "CertificateExpiringSoon",
            CertIssue::Unparsable { .. } => "CertificateUnparsable",
            CertIssue::KeyMismatch { .. } => "CertificateKeyMismatch",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            CertIssue::Expired { not_after } => format!("certificate expired at {not_after}"),
            CertIssue::NotYetValid { not_before } => {
                format!("certificate not valid before {not_before}")
            }
            CertIssue::ExpiringSoon {
                not_after,
                days_left,
            } => {
                format!("certificate expires at {not_after} ({days_left} days left)")
            }
            CertIssue::Unparsable { reason } => format!("certificate unparsable: {reason}"),
            CertIssue::KeyMismatch { reason } => {
                format!("tls.key does not match tls.crt: {reason}")
            }
        }
    }
}

/// The validity window of the first certificate of a PEM chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: Timestamp,
    pub not_after: Timestamp,
}

/// Parses the first certificate of `pem`.
pub fn validity(pem: &[u8]) -> Result<Validity, String> {
    let der = CertificateDer::pem_slice_iter(pem)
        .next()
        .ok_or_else(|| "no PEM certificate in tls.crt".to_string())?
        .map_err(|e| format!("PEM: {e}"))?;
    let (_, certificate) =
        x509_parser::parse_x509_certificate(&der).map_err(|e| format!("X.509: {e}"))?;
    let validity = certificate.validity();
    let stamp = |t: x509_parser::time::ASN1Time| {
        Timestamp::from_second(t.timestamp()).map_err(|e| format!("time out of range: {e}"))
    };
    Ok(Validity {
        not_before: stamp(validity.not_before)?,
        not_after: stamp(validity.not_after)?,
    })
}

/// Checks a certificate and its key. `window_days`: how close to expiry counts as "soon".
pub fn check(
    cert_pem: &[u8],
    key_pem: Option<&[u8]>,
    now: Timestamp,
    window_days: i64,
    provider: &CryptoProvider,
) -> (Option<Validity>, Option<CertIssue>) {
    let validity = match validity(cert_pem) {
        Ok(validity) => validity,
        Err(reason) => return (None, Some(CertIssue::Unparsable { reason })),
    };
    let issue = if now >= validity.not_after {
        Some(CertIssue::Expired {
            not_after: validity.not_after.to_string(),
        })
    } else if now < validity.not_before {
        Some(CertIssue::NotYetValid {
            not_before: validity.not_before.to_string(),
        })
    } else if let Some(Err(error)) =
        key_pem.map(|key| crate::certs::serving::certified_key(cert_pem, key, provider))
    {
        Some(CertIssue::KeyMismatch {
            reason: error.to_string(),
        })
    } else {
        let days_left = (validity.not_after.as_second() - now.as_second()) / 86_400;
        (days_left < window_days).then(|| CertIssue::ExpiringSoon {
            not_after: validity.not_after.to_string(),
            days_left,
        })
    };
    (Some(validity), issue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::generate as certs;
    use time::{Duration, OffsetDateTime};

    fn provider() -> CryptoProvider {
        rustls::crypto::ring::default_provider()
    }

    fn cert(not_before_days: i64, valid_days: i64) -> certs::GeneratedCerts {
        let start = OffsetDateTime::now_utc() + Duration::days(not_before_days);
        certs::generate_valid_between(&["app.example".into()], start, Duration::days(valid_days))
            .unwrap()
    }

    fn verdict(c: &certs::GeneratedCerts, key: Option<&str>) -> Option<CertIssue> {
        check(
            c.cert.as_bytes(),
            key.map(str::as_bytes),
            Timestamp::now(),
            30,
            &provider(),
        )
        .1
    }

    #[test]
    fn valid_expired_not_yet_valid_and_expiring() {
        let good = cert(-1, 365);
        assert_eq!(verdict(&good, Some(&good.key)), None);
        assert!(matches!(
            verdict(&cert(-100, 10), None),
            Some(CertIssue::Expired { .. })
        ));
        assert!(matches!(
            verdict(&cert(5, 365), None),
            Some(CertIssue::NotYetValid { .. })
        ));
        let soon = cert(-350, 360);
        assert!(matches!(
            verdict(&soon, None),
            Some(CertIssue::ExpiringSoon { days_left: 9, .. })
                | Some(CertIssue::ExpiringSoon { days_left: 10, .. })
        ));
    }

    #[test]
    fn garbage_and_mismatched_keys() {
        let garbage = check(
            b"\x00\x01 not a certificate",
            None,
            Timestamp::now(),
            30,
            &provider(),
        )
        .1;
        assert!(matches!(garbage, Some(CertIssue::Unparsable { .. })));
        let broken_pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            check(broken_pem, None, Timestamp::now(), 30, &provider()).1,
            Some(CertIssue::Unparsable { .. })
        ));
        let a = cert(-1, 365);
        let b = cert(-1, 365);
        assert!(matches!(
            verdict(&a, Some(&b.key)),
            Some(CertIssue::KeyMismatch { .. })
        ));
    }
}
