//! `selfheal certs`: a CA and a serving certificate for the webhook, made with rcgen.
//!
//! The apiserver calls the webhook at `https://<service>.<namespace>.svc`, so the serving
//! certificate names the Service in every form it can be addressed by, plus `localhost` and
//! `127.0.0.1` for running on a workstation. The CA goes into the webhook configuration's
//! `caBundle`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

/// How long generated certificates are valid.
const CA_VALIDITY: Duration = Duration::days(3650);
const SERVING_VALIDITY: Duration = Duration::days(365);

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// PEM texts of a freshly generated CA and serving certificate.
#[derive(Clone)]
pub struct GeneratedCerts {
    pub ca_cert: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
}

/// The DNS names of a Service, as the apiserver and other pods may address it.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        "localhost".to_string(),
    ]
}

/// Generates a CA and a serving certificate for `dns_names` and 127.0.0.1, valid from an hour
/// ago (clock skew) for a year.
pub fn generate(dns_names: &[String]) -> Result<GeneratedCerts, CertError> {
    generate_valid_between(
        dns_names,
        OffsetDateTime::now_utc() - Duration::hours(1),
        SERVING_VALIDITY,
    )
}

/// As `generate`, with an explicit validity window (tests make expired certificates with it).
pub fn generate_valid_between(
    dns_names: &[String],
    not_before: OffsetDateTime,
    validity: Duration,
) -> Result<GeneratedCerts, CertError> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name = name("selfheal webhook CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = not_before;
    ca_params.not_after = not_before + CA_VALIDITY;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, &ca_key);

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(dns_names.to_vec())?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    params.distinguished_name = name(dns_names.first().map_or("selfheal", String::as_str));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = not_before;
    params.not_after = not_before + validity;
    let cert = params.signed_by(&key, &issuer)?;

    Ok(GeneratedCerts {
        ca_cert: ca_cert.pem(),
        ca_key: ca_key.serialize_pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationName, "selfheal");
    name
}

/// The files `write` creates in a directory.
pub struct CertPaths {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertPaths {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        }
    }
}

/// Writes the certificates into `dir`, keys readable by the owner only. The serving pair is
/// written key first, certificate last, each through a rename, so a server polling the files
/// sees either the old pair or the new one.
pub fn write(dir: &Path, certs: &GeneratedCerts) -> Result<CertPaths, CertError> {
    std::fs::create_dir_all(dir).map_err(|source| CertError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let paths = CertPaths::in_dir(dir);
    write_file(&paths.ca_cert, &certs.ca_cert, 0o644)?;
    write_file(&paths.ca_key, &certs.ca_key, 0o600)?;
    write_file(&paths.key, &certs.key, 0o600)?;
    write_file(&paths.cert, &certs.cert, 0o644)?;
    Ok(paths)
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), CertError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let error = |source| CertError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temporary)
        .map_err(error)?;
    file.write_all(text.as_bytes()).map_err(error)?;
    file.sync_all().map_err(error)?;
    std::fs::rename(&temporary, path).map_err(error)
}

/// The `caBundle` value for a webhook configuration: the CA certificate PEM, base64-encoded.
pub fn ca_bundle(ca_cert_pem: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(ca_cert_pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_certificate_names_the_service_and_loopback() {
        let names = service_dns_names("selfheal", "selfheal");
        assert!(names.contains(&"selfheal.selfheal.svc".to_string()));
        let certs = generate(&names).unwrap();
        assert!(certs.cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(certs.key.contains("PRIVATE KEY"));
        assert_ne!(certs.cert, certs.ca_cert);
        let bundle = ca_bundle(&certs.ca_cert);
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(bundle)
            .unwrap();
        assert_eq!(decoded, certs.ca_cert.as_bytes());
    }

    #[test]
    fn keys_are_private_to_the_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let certs = generate(&service_dns_names("s", "n")).unwrap();
        let paths = write(dir.path(), &certs).unwrap();
        let mode = std::fs::metadata(&paths.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&paths.cert).unwrap(), certs.cert);
    }
}
