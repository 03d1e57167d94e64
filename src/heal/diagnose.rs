//! DIAGNOSE: why a problem happened, from container logs (the previous instance too), the
//! object's events and its status message, matched against a catalogue of known error patterns.
//!
//! The catalogue is data: one row per pattern, in priority order. Adding a pattern is adding a
//! row and a test with a realistic line.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use crate::heal::detect::{Problem, ProblemKind};

/// A known cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Cause {
    OutOfMemory,
    NoSpaceLeft,
    ConnectionRefused,
    DnsFailure,
    PermissionDenied,
    MissingConfigMap,
    MissingSecret,
    ImageNotFound,
    ImageUnauthorized,
    RegistryTimeout,
    UnboundClaim,
    StorageClassMissing,
    NoDefaultStorageClass,
    ProvisioningFailed,
    MountFailed,
    InsufficientCpu,
    InsufficientMemory,
    /// A certificate is expired, not yet valid, expiring, unparsable or mismatched.
    CertificateInvalid,
    /// Nothing in the catalogue matched.
    Unknown,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::OutOfMemory => "out of memory",
            Cause::NoSpaceLeft => "no space left on device",
            Cause::ConnectionRefused => "connection refused",
            Cause::DnsFailure => "DNS resolution failure",
            Cause::PermissionDenied => "permission denied",
            Cause::MissingConfigMap => "missing ConfigMap",
            Cause::MissingSecret => "missing Secret",
            Cause::ImageNotFound => "image not found",
            Cause::ImageUnauthorized => "image pull unauthorized",
            Cause::RegistryTimeout => "registry timeout",
            Cause::UnboundClaim => "unbound PersistentVolumeClaim",
            Cause::StorageClassMissing => "StorageClass not found",
            Cause::NoDefaultStorageClass => "no StorageClass and no default",
            Cause::ProvisioningFailed => "volume provisioning failed",
            Cause::MountFailed => "volume mount failed",
            Cause::InsufficientCpu => "insufficient cpu on nodes",
            Cause::InsufficientMemory => "insufficient memory on nodes",
            Cause::CertificateInvalid => "certificate invalid",
            Cause::Unknown => "unknown",
        }
    }
}

/// One row of the catalogue: a cause and the (case-insensitive) pattern that reveals it. Named
/// captures `host`, `port`, `name` are carried into the diagnosis.
struct Pattern {
    cause: Cause,
    regex: &'static str,
}

/// The catalogue, most specific first.
const CATALOGUE: &[Pattern] = &[
    Pattern {
        cause: Cause::OutOfMemory,
        regex: r"OOMKilled|out of memory|OutOfMemoryError|Cannot allocate memory|heap out of memory|\bMemoryError\b|memory limit exceeded",
    },
    Pattern {
        cause: Cause::NoSpaceLeft,
        regex: r"no space left on device|ENOSPC|disk quota exceeded|could not extend file",
    },
    Pattern {
        cause: Cause::MissingConfigMap,
        regex: r#"configmaps? "(?P<name>[a-z0-9.-]+)" not found"#,
    },
    Pattern {
        cause: Cause::MissingSecret,
        regex: r#"secrets? "(?P<name>[a-z0-9.-]+)" not found"#,
    },
    Pattern {
        cause: Cause::StorageClassMissing,
        regex: r#"storageclass\.storage\.k8s\.io "(?P<name>[a-z0-9.-]+)" not found"#,
    },
    Pattern {
        cause: Cause::NoDefaultStorageClass,
        regex: r"no persistent volumes available for this claim and no storage class is set",
    },
    Pattern {
        cause: Cause::UnboundClaim,
        regex: r"unbound immediate PersistentVolumeClaims|persistentvolumeclaim .* not found|waiting for first consumer",
    },
    Pattern {
        cause: Cause::ProvisioningFailed,
        regex: r"failed to provision volume|ProvisioningFailed",
    },
    Pattern {
        cause: Cause::MountFailed,
        regex: r"MountVolume\.\w+ failed|Unable to attach or mount volumes|timed out waiting for the condition",
    },
    Pattern {
        cause: Cause::ImageUnauthorized,
        regex: r"unauthorized|authentication required|pull access denied|403 Forbidden|denied: requested access",
    },
    Pattern {
        cause: Cause::ImageNotFound,
        regex: r"manifest unknown|not found: manifest|repository does not exist|name unknown|failed to resolve reference .*: not found|InvalidImageName",
    },
    Pattern {
        cause: Cause::RegistryTimeout,
        regex: r"i/o timeout|TLS handshake timeout|context deadline exceeded|dial tcp .*: connect: connection timed out",
    },
    Pattern {
        cause: Cause::ConnectionRefused,
        regex: r"(?:(?:dial tcp|connect to|connecting to|connect\(\)|at|to)\s+(?P<host>[A-Za-z0-9_.-]+):(?P<port>\d{2,5})\b.{0,80}?)?(?:connection refused|ECONNREFUSED)(?:.{0,80}?\b(?P<host2>[A-Za-z0-9_.-]+):(?P<port2>\d{2,5})\b)?",
    },
    Pattern {
        cause: Cause::DnsFailure,
        regex: r"no such host|Name or service not known|Temporary failure in name resolution|getaddrinfo (?:ENOTFOUND|EAI_AGAIN)|could not resolve host|Could not resolve hostname",
    },
    Pattern {
        cause: Cause::PermissionDenied,
        regex: r"permission denied|EACCES|Operation not permitted|read-only file system",
    },
    Pattern {
        cause: Cause::InsufficientMemory,
        regex: r"Insufficient memory",
    },
    Pattern {
        cause: Cause::InsufficientCpu,
        regex: r"Insufficient cpu",
    },
];

static COMPILED: LazyLock<Vec<(Cause, Regex)>> = LazyLock::new(|| {
    CATALOGUE
        .iter()
        .filter_map(|p| {
            regex::RegexBuilder::new(p.regex)
                .case_insensitive(true)
                .build()
                .ok()
                .map(|regex| (p.cause, regex))
        })
        .collect()
});

/// What the diagnosis was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    Status,
    Logs,
    PreviousLogs,
    Events,
}

/// A cause with the evidence that shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnosis {
    pub cause: Cause,
    /// The line that matched (trimmed to 300 characters).
    pub evidence: String,
    pub source: Source,
    /// `host:port` behind a connection refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<(String, u16)>,
    /// The missing ConfigMap, Secret or StorageClass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
}

/// What there is to read about one problem.
#[derive(Debug, Clone, Default)]
pub struct Evidence<'a> {
    /// The container's current log tail.
    pub logs: &'a str,
    /// The previous instance's log tail (after a restart).
    pub previous_logs: &'a str,
    /// Messages of the object's events, newest last.
    pub events: &'a [String],
}

/// Matches one text against the catalogue; the first row that matches any line wins, scanning
/// lines from the newest (last) to the oldest.
pub fn match_text(text: &str, source: Source) -> Option<Diagnosis> {
    COMPILED.iter().find_map(|(cause, regex)| {
        text.lines().rev().find_map(|line| {
            let captures = regex.captures(line)?;
            let text_of = |name: &str| captures.name(name).map(|m| m.as_str().to_string());
            let host = text_of("host").or_else(|| text_of("host2"));
            let port = text_of("port")
                .or_else(|| text_of("port2"))
                .and_then(|p| p.parse().ok());
            Some(Diagnosis {
                cause: *cause,
                evidence: crate::text::truncate(&crate::text::redact(line.trim()), 300),
                source,
                endpoint: host.zip(port),
                missing: text_of("name"),
            })
        })
    })
}

/// The diagnosis of a problem. The status itself is the strongest evidence (an OOM kill is an
/// OOM kill); then the previous instance's logs (they show why it died), the current logs, and
/// the events.
pub fn diagnose(problem: &Problem, evidence: &Evidence<'_>) -> Diagnosis {
    if let Some(status) = status_diagnosis(problem) {
        return status;
    }
    let events = evidence.events.join("\n");
    let from_texts = match &problem.kind {
        // Pull, config, scheduling and claim problems are explained by events, not logs.
        ProblemKind::ImagePull { message, .. } => {
            let text = format!("{}\n{events}", message.clone().unwrap_or_default());
            match_text(&text, Source::Events)
        }
        ProblemKind::CreateConfigError { message, .. } => {
            match_text(&format!("{message}\n{events}"), Source::Events)
        }
        ProblemKind::Unschedulable { message } => {
            match_text(&format!("{events}\n{message}"), Source::Events)
        }
        ProblemKind::StuckCreating { .. }
        | ProblemKind::ClaimPending { .. }
        | ProblemKind::ClaimLost => match_text(&events, Source::Events),
        _ => match_text(evidence.previous_logs, Source::PreviousLogs)
            .or_else(|| match_text(evidence.logs, Source::Logs))
            .or_else(|| match_text(&events, Source::Events)),
    };
    from_texts.unwrap_or_else(|| Diagnosis {
        cause: Cause::Unknown,
        evidence: fallback_evidence(problem),
        source: Source::Status,
        endpoint: None,
        missing: None,
    })
}

fn status_diagnosis(problem: &Problem) -> Option<Diagnosis> {
    match &problem.kind {
        ProblemKind::OomKilled {
            container,
            restart_count,
            ..
        } => Some(Diagnosis {
            cause: Cause::OutOfMemory,
            evidence: format!(
                "container {container} was OOMKilled (exit 137, restart {restart_count})"
            ),
            source: Source::Status,
            endpoint: None,
            missing: None,
        }),
        ProblemKind::NoReadyEndpoints { selected_pods, .. } => Some(Diagnosis {
            cause: Cause::ConnectionRefused,
            evidence: format!(
                "{selected_pods} selected pods, none ready: connections to this Service are refused"
            ),
            source: Source::Status,
            endpoint: None,
            missing: None,
        }),
        ProblemKind::Certificate { issue, .. } => Some(Diagnosis {
            cause: Cause::CertificateInvalid,
            evidence: issue.describe(),
            source: Source::Status,
            endpoint: None,
            missing: None,
        }),
        _ => None,
    }
}

fn fallback_evidence(problem: &Problem) -> String {
    match &problem.kind {
        ProblemKind::CrashLoopBackOff {
            container,
            exit_code,
            message,
            ..
        } => format!(
            "container {container} keeps exiting (code {}){}",
            exit_code.map_or("?".to_string(), |c| c.to_string()),
            message
                .as_ref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ),
        ProblemKind::ImagePull {
            message, reason, ..
        } => message.clone().unwrap_or_else(|| reason.clone()),
        ProblemKind::CreateConfigError { message, .. } => message.clone(),
        ProblemKind::Unschedulable { message } => message.clone(),
        other => other.name().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cause_of(line: &str) -> Cause {
        match_text(line, Source::Logs).map_or(Cause::Unknown, |d| d.cause)
    }

    #[test]
    fn every_catalogue_row_compiles() {
        assert_eq!(COMPILED.len(), CATALOGUE.len());
    }

    #[test]
    fn out_of_memory_lines() {
        for line in [
            "Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space",
            "FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
            "fatal error: runtime: out of memory",
            "ERROR:  could not resize shared memory segment \"/PostgreSQL.1\": Cannot allocate memory",
            "MemoryError",
        ] {
            assert_eq!(cause_of(line), Cause::OutOfMemory, "{line}");
        }
    }

    #[test]
    fn no_space_left() {
        assert_eq!(
            cause_of(
                "2026-11-28 10:00:01.123 UTC [1] PANIC:  could not write to file \"pg_wal/xlogtemp.1\": No space left on device"
            ),
            Cause::NoSpaceLeft
        );
        assert_eq!(
            cause_of("Error: ENOSPC: no space left on device, write"),
            Cause::NoSpaceLeft
        );
    }

    #[test]
    fn connection_refused_captures_host_and_port() {
        let go = match_text(
            "level=error msg=\"dial failed\" err=\"dial tcp gitlab-postgresql.gitlab.svc:5432: connect: connection refused\"",
            Source::Logs,
        )
        .unwrap();
        assert_eq!(go.cause, Cause::ConnectionRefused);
        assert_eq!(
            go.endpoint,
            Some(("gitlab-postgresql.gitlab.svc".into(), 5432))
        );

        let ruby = match_text(
            "PG::ConnectionBad: connection to server at \"10.96.0.12\", port 5432 failed: Connection refused",
            Source::Logs,
        )
        .unwrap();
        assert_eq!(ruby.cause, Cause::ConnectionRefused);

        let node = match_text(
            "Error: connect ECONNREFUSED redis-master:6379 at TCPConnectWrap.afterConnect",
            Source::Logs,
        )
        .unwrap();
        assert_eq!(node.endpoint, Some(("redis-master".into(), 6379)));

        let python = match_text(
            "redis.exceptions.ConnectionError: Error 111 connecting to gitlab-redis-master:6379. Connection refused.",
            Source::Logs,
        )
        .unwrap();
        assert_eq!(python.endpoint, Some(("gitlab-redis-master".into(), 6379)));
    }

    #[test]
    fn dns_and_permission_lines() {
        assert_eq!(
            cause_of("dial tcp: lookup minio.gitlab.svc on 10.96.0.10:53: no such host"),
            Cause::DnsFailure
        );
        assert_eq!(
            cause_of("getaddrinfo ENOTFOUND api.internal"),
            Cause::DnsFailure
        );
        assert_eq!(
            cause_of("mkdir /var/opt/gitlab/data: permission denied"),
            Cause::PermissionDenied
        );
    }

    #[test]
    fn missing_configmap_and_secret_name_the_object() {
        let cm = match_text(
            "Error: configmap \"gitlab-webservice-config\" not found",
            Source::Events,
        )
        .unwrap();
        assert_eq!(cm.cause, Cause::MissingConfigMap);
        assert_eq!(cm.missing.as_deref(), Some("gitlab-webservice-config"));
        let secret = match_text(
            "MountVolume.SetUp failed for volume \"tls\" : secret \"gitlab-tls\" not found",
            Source::Events,
        )
        .unwrap();
        assert_eq!(secret.cause, Cause::MissingSecret);
        assert_eq!(secret.missing.as_deref(), Some("gitlab-tls"));
    }

    #[test]
    fn image_pull_failures_are_told_apart() {
        assert_eq!(
            cause_of(
                "Failed to pull image \"registry.example.com/app:v9\": rpc error: code = NotFound desc = failed to pull and unpack image \"registry.example.com/app:v9\": failed to resolve reference \"registry.example.com/app:v9\": registry.example.com/app:v9: not found"
            ),
            Cause::ImageNotFound
        );
        assert_eq!(
            cause_of(
                "Failed to pull image \"ghcr.io/acme/private:1\": failed to authorize: failed to fetch anonymous token: unexpected status from GET request to https://ghcr.io/token: 401 Unauthorized"
            ),
            Cause::ImageUnauthorized
        );
        assert_eq!(
            cause_of(
                "Failed to pull image \"quay.io/acme/app:1\": rpc error: code = Unknown desc = Get \"https://quay.io/v2/\": net/http: TLS handshake timeout"
            ),
            Cause::RegistryTimeout
        );
    }

    #[test]
    fn storage_and_scheduling_events() {
        assert_eq!(
            cause_of("storageclass.storage.k8s.io \"fast-ssd\" not found"),
            Cause::StorageClassMissing
        );
        assert_eq!(
            cause_of("no persistent volumes available for this claim and no storage class is set"),
            Cause::NoDefaultStorageClass
        );
        assert_eq!(
            cause_of(
                "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/3 nodes are available"
            ),
            Cause::UnboundClaim
        );
        assert_eq!(
            cause_of(
                "failed to provision volume with StorageClass \"standard\": rpc error: code = ResourceExhausted desc = quota exceeded"
            ),
            Cause::ProvisioningFailed
        );
        assert_eq!(
            cause_of("0/3 nodes are available: 3 Insufficient cpu."),
            Cause::InsufficientCpu
        );
        assert_eq!(
            cause_of("0/3 nodes are available: 3 Insufficient memory."),
            Cause::InsufficientMemory
        );
        assert_eq!(
            cause_of(
                "Unable to attach or mount volumes: unmounted volumes=[data], unattached volumes=[]: timed out waiting for the condition"
            ),
            Cause::MountFailed
        );
    }

    #[test]
    fn previous_logs_explain_a_crash_before_current_logs() {
        let problem = Problem {
            namespace: "gitlab".into(),
            object_kind: "Pod",
            object_name: "web-1".into(),
            uid: "u".into(),
            kind: ProblemKind::CrashLoopBackOff {
                container: "app".into(),
                init: false,
                restart_count: 4,
                exit_code: Some(1),
                message: None,
            },
        };
        let diagnosis = diagnose(
            &problem,
            &Evidence {
                logs: "starting up\n",
                previous_logs: "booting\ndial tcp db:5432: connect: connection refused\nexiting\n",
                events: &[],
            },
        );
        assert_eq!(diagnosis.cause, Cause::ConnectionRefused);
        assert_eq!(diagnosis.source, Source::PreviousLogs);
        assert!(diagnosis.evidence.contains("db:5432"));

        let unknown = diagnose(&problem, &Evidence::default());
        assert_eq!(unknown.cause, Cause::Unknown);
        assert!(unknown.evidence.contains("code 1"), "{}", unknown.evidence);
    }
}
