//! DIAGNOSE: why a problem happened, from container logs (the previous instance too), the
//! object's events and its status message, matched against a catalogue of known error patterns.
//!
//! The catalogue (`catalogue`) is data: one row per pattern, in priority order. Adding a pattern
//! is adding a row and a test with a realistic line.

mod catalogue;

pub use catalogue::Cause;

use serde::Serialize;

use crate::heal::detect::{Problem, ProblemKind, StartFailure};
use catalogue::COMPILED;

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
    /// The object's events as `Reason: message`, oldest first.
    pub events: &'a [String],
    /// Its Warning events only, as `Reason: message`, oldest first: quoted when nothing in the
    /// catalogue matches.
    pub warnings: &'a [String],
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
                evidence: quote(line),
                source,
                endpoint: host.zip(port),
                missing: text_of("missing").or_else(|| text_of("name")),
            })
        })
    })
}

/// A line of evidence as shown: trimmed, secrets redacted, at most 300 characters.
fn quote(line: &str) -> String {
    crate::text::truncate(&crate::text::redact(line.trim()), 300)
}

/// The diagnosis of a problem. The status itself is the strongest evidence (an OOM kill is an
/// OOM kill, a waiting reason names itself); then the previous instance's logs (they show why it
/// died), the current logs, the status message and the events. When nothing in the catalogue
/// matches, the cause is what the status says (an eviction, an exit code), and the evidence the
/// newest Warning event, then the newest event, then the status: never a bare problem name.
pub fn diagnose(problem: &Problem, evidence: &Evidence<'_>) -> Diagnosis {
    if let Some(status) = status_diagnosis(problem) {
        return status;
    }
    let events = evidence.events.join("\n");
    let events_match = || match_text(&events, Source::Events);
    let from_texts = match &problem.kind {
        // Pull, config, scheduling and claim problems are explained by events, not logs.
        ProblemKind::ImagePull { message, .. } => {
            let text = format!("{}\n{events}", message.clone().unwrap_or_default());
            match_text(&text, Source::Events)
        }
        ProblemKind::CreateConfigError { message, .. } => {
            match_text(message, Source::Status).or_else(events_match)
        }
        ProblemKind::NotStarted { message, .. } | ProblemKind::PodFailed { message, .. } => {
            match_text(message.as_deref().unwrap_or_default(), Source::Status).or_else(events_match)
        }
        ProblemKind::Unschedulable { message } => {
            match_text(&format!("{events}\n{message}"), Source::Events)
        }
        ProblemKind::NotReady { .. }
        | ProblemKind::StuckCreating { .. }
        | ProblemKind::ClaimPending { .. }
        | ProblemKind::ClaimLost => events_match(),
        ProblemKind::ContainerFailed { message, .. } => match_text(evidence.logs, Source::Logs)
            .or_else(|| match_text(message.as_deref().unwrap_or_default(), Source::Status))
            .or_else(events_match),
        ProblemKind::CrashLoopBackOff { message, .. } => {
            match_text(evidence.previous_logs, Source::PreviousLogs)
                .or_else(|| match_text(evidence.logs, Source::Logs))
                .or_else(|| match_text(message.as_deref().unwrap_or_default(), Source::Status))
                .or_else(events_match)
        }
        _ => match_text(evidence.previous_logs, Source::PreviousLogs)
            .or_else(|| match_text(evidence.logs, Source::Logs))
            .or_else(events_match),
    };
    from_texts.unwrap_or_else(|| fallback(problem, evidence))
}

/// Whether the diagnosis of `problem` reads the events of its object: not when its status
/// names the cause (an OOM kill, a certificate's issue, an invalid image name), which is the
/// diagnosis whatever the events say.
pub fn reads_events(problem: &Problem) -> bool {
    status_diagnosis(problem).is_none()
}

fn status_diagnosis(problem: &Problem) -> Option<Diagnosis> {
    let from_status = |cause, evidence| {
        Some(Diagnosis {
            cause,
            evidence,
            source: Source::Status,
            endpoint: None,
            missing: None,
        })
    };
    match &problem.kind {
        ProblemKind::OomKilled {
            container,
            restart_count,
            ..
        } => from_status(
            Cause::OutOfMemory,
            format!("container {container} was OOMKilled (exit 137, restart {restart_count})"),
        ),
        ProblemKind::NoReadyEndpoints { selected_pods, .. } => from_status(
            Cause::ConnectionRefused,
            format!(
                "{selected_pods} selected pods, none ready: connections to this Service are refused"
            ),
        ),
        ProblemKind::Certificate { issue, .. } => {
            from_status(Cause::CertificateInvalid, issue.describe())
        }
        // The image reasons say exactly what is wrong; the message names the image.
        ProblemKind::NotStarted {
            reason, message, ..
        } => {
            let cause = match reason {
                StartFailure::InvalidImageName => Cause::InvalidImageName,
                StartFailure::ErrImageNeverPull => Cause::ImageNeverPulled,
                StartFailure::ImageInspectError => Cause::ImageInspectFailed,
                _ => return None,
            };
            from_status(
                cause,
                message
                    .as_deref()
                    .map_or_else(|| reason.as_str().to_string(), quote),
            )
        }
        ProblemKind::SchedulingGated {
            gates,
            message,
            seconds,
        } => from_status(
            Cause::SchedulingGated,
            format!(
                "{} (gates: {}; {})",
                message
                    .as_deref()
                    .unwrap_or("Scheduling is blocked due to non-empty scheduling gates"),
                if gates.is_empty() {
                    "-".to_string()
                } else {
                    gates.join(", ")
                },
                seconds.map_or_else(|| "age unknown".to_string(), |s| format!("for {s}s")),
            ),
        ),
        _ => None,
    }
}

/// The diagnosis when nothing in the catalogue matched.
fn fallback(problem: &Problem, evidence: &Evidence<'_>) -> Diagnosis {
    let newest_event = evidence
        .warnings
        .last()
        .or(evidence.events.last())
        .map(|line| quote(line));
    let (cause, text, source) = match &problem.kind {
        ProblemKind::NotStarted {
            reason, message, ..
        } => {
            let cause = match reason {
                StartFailure::RunContainerError => Cause::ContainerStartFailed,
                StartFailure::CreateContainerError => Cause::ContainerCreateFailed,
                _ => Cause::KubeletHookFailed,
            };
            let text = message
                .as_deref()
                .map_or_else(|| reason.as_str().to_string(), quote);
            (cause, text, Source::Status)
        }
        ProblemKind::CreateConfigError { message, .. } => (
            Cause::InvalidContainerConfig,
            quote(message),
            Source::Status,
        ),
        ProblemKind::ContainerFailed {
            container,
            exit_code,
            reason,
            message,
            ..
        } => (
            Cause::NonZeroExit,
            quote(&format!(
                "container {container} exited with code {exit_code} ({}){}",
                reason.as_deref().unwrap_or("no reason"),
                message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            )),
            Source::Status,
        ),
        ProblemKind::PodFailed { reason, message } => {
            let cause = match reason.as_str() {
                "Evicted" => Cause::Evicted,
                "DeadlineExceeded" => Cause::DeadlineExceeded,
                "Shutdown" | "Terminated" | "NodeShutdown" => Cause::NodeShutdown,
                _ => Cause::RejectedByNode,
            };
            let text = quote(&format!("{reason}: {}", message.as_deref().unwrap_or("")));
            (cause, text, Source::Status)
        }
        ProblemKind::Unschedulable { message } => {
            (Cause::NoFittingNode, quote(message), Source::Status)
        }
        ProblemKind::ClaimLost => (
            Cause::VolumeLost,
            newest_event.clone().unwrap_or_else(|| {
                "phase Lost: the claim's PersistentVolume no longer exists".to_string()
            }),
            if newest_event.is_some() {
                Source::Events
            } else {
                Source::Status
            },
        ),
        ProblemKind::CrashLoopBackOff {
            container,
            exit_code,
            message,
            ..
        } => (
            Cause::Unknown,
            quote(&format!(
                "container {container} keeps exiting (code {}){}",
                exit_code.map_or("?".to_string(), |c| c.to_string()),
                message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            )),
            Source::Status,
        ),
        ProblemKind::ImagePull {
            message, reason, ..
        } => (
            Cause::Unknown,
            quote(message.as_deref().unwrap_or(reason)),
            Source::Status,
        ),
        other => match newest_event {
            Some(line) => (Cause::Unknown, line, Source::Events),
            None => (Cause::Unknown, silent_status(other), Source::Status),
        },
    };
    Diagnosis {
        cause,
        evidence: text,
        source,
        endpoint: None,
        missing: None,
    }
}

/// What the status shows of a problem no event explains.
fn silent_status(kind: &ProblemKind) -> String {
    let age =
        |seconds: &Option<i64>| seconds.map_or_else(|| "age unknown".into(), |s| format!("{s}s"));
    match kind {
        ProblemKind::StuckCreating { seconds } => format!(
            "containers not started {} after scheduling; no event says why",
            age(seconds)
        ),
        ProblemKind::ClaimPending {
            seconds,
            storage_class,
        } => format!(
            "Pending for {} (StorageClass {}); no event says why",
            age(seconds),
            storage_class.as_deref().unwrap_or("default")
        ),
        ProblemKind::NotReady {
            container,
            running_seconds,
        } => format!(
            "container {container} running for {} but not ready; no failed probe reported",
            age(running_seconds)
        ),
        other => other.name().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use catalogue::CATALOGUE;

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
                ..Evidence::default()
            },
        );
        assert_eq!(diagnosis.cause, Cause::ConnectionRefused);
        assert_eq!(diagnosis.source, Source::PreviousLogs);
        assert!(diagnosis.evidence.contains("db:5432"));

        let unknown = diagnose(&problem, &Evidence::default());
        assert_eq!(unknown.cause, Cause::Unknown);
        assert!(unknown.evidence.contains("code 1"), "{}", unknown.evidence);
    }
    #[test]
    fn kubelet_messages_that_quote_other_errors_keep_their_own_cause() {
        // A readiness probe's "connection refused" is the pod's own port, not a dependency.
        assert_eq!(
            cause_of(
                "Unhealthy: Readiness probe failed: Get \"http://10.244.1.5:8080/ready\": dial tcp 10.244.1.5:8080: connect: connection refused"
            ),
            Cause::ReadinessProbeFailed
        );
        // A CNI plugin's "Unauthorized" is not an image pull.
        assert_eq!(
            cause_of(
                "FailedCreatePodSandBox: Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox \"9f1e\": plugin type=\"calico\" failed (add): error getting ClusterInformation: connection is unauthorized: Unauthorized"
            ),
            Cause::SandboxFailed
        );
    }

    #[test]
    fn evictions_and_pod_failures() {
        for (line, cause) in [
            (
                "The node was low on resource: memory. Threshold quantity: 100Mi, available: 85212Ki. Container app was using 1532Mi, request is 512Mi, has larger consumption of its request. ",
                Cause::NodeLowOnMemory,
            ),
            (
                "The node was low on resource: ephemeral-storage. Threshold quantity: 4Gi, available: 3Gi. ",
                Cause::NodeLowOnDisk,
            ),
            (
                "Pod ephemeral local storage usage exceeds the total limit of containers 1Gi. ",
                Cause::EphemeralStorageExceeded,
            ),
            (
                "Usage of EmptyDir volume \"cache\" exceeds the limit \"500Mi\". ",
                Cause::EphemeralStorageExceeded,
            ),
            (
                "Pod was active on the node longer than the specified deadline",
                Cause::DeadlineExceeded,
            ),
            (
                "Pod was terminated in response to imminent node shutdown.",
                Cause::NodeShutdown,
            ),
        ] {
            assert_eq!(cause_of(line), cause, "{line}");
        }
    }

    #[test]
    fn missing_keys_commands_and_scheduling_filters() {
        let key = match_text(
            "Failed: Error: couldn't find key password in Secret default/db-creds",
            Source::Events,
        )
        .unwrap();
        assert_eq!(key.cause, Cause::MissingSecretKey);
        assert_eq!(
            key.missing.as_deref(),
            Some("key password in Secret default/db-creds")
        );
        assert_eq!(
            cause_of("couldn't find key APP_MODE in ConfigMap shop/web-config"),
            Cause::MissingConfigMapKey
        );
        let command = match_text(
            "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"gunicorn\": executable file not found in $PATH: unknown",
            Source::Status,
        )
        .unwrap();
        assert_eq!(command.cause, Cause::CommandNotFound);
        assert_eq!(command.missing.as_deref(), Some("gunicorn"));
        assert_eq!(
            cause_of(
                "0/3 nodes are available: 3 node(s) had untolerated taint {node.kubernetes.io/disk-pressure: }. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
            ),
            Cause::UntoleratedTaint
        );
        assert_eq!(
            cause_of(
                "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
            ),
            Cause::NodeSelectorMismatch
        );
        assert_eq!(
            cause_of(
                "0/3 nodes are available: 3 node(s) didn't have free ports for the requested pod ports."
            ),
            Cause::NoFittingNode
        );
    }

    fn problem(kind: ProblemKind) -> Problem {
        Problem {
            namespace: "shop".into(),
            object_kind: "Pod",
            object_name: "web-1".into(),
            uid: "u".into(),
            kind,
        }
    }

    #[test]
    fn an_event_no_row_knows_is_quoted_the_newest_warning_first() {
        let stuck = problem(ProblemKind::StuckCreating { seconds: Some(30) });
        let events = [
            "Scheduled: Successfully assigned shop/web-1 to node-2".to_string(),
            "FailedSync: error determining status: rpc error: code = Unknown desc = Error: No such container: 4c1d".to_string(),
            "Pulling: Pulling image \"app:1\"".to_string(),
        ];
        let diagnosis = diagnose(
            &stuck,
            &Evidence {
                events: &events,
                warnings: &events[1..2],
                ..Evidence::default()
            },
        );
        assert_eq!(diagnosis.cause, Cause::Unknown);
        assert_eq!(diagnosis.source, Source::Events);
        assert_eq!(diagnosis.evidence, events[1]);

        let silent = diagnose(&stuck, &Evidence::default());
        assert_eq!(
            silent.evidence,
            "containers not started 30s after scheduling; no event says why"
        );
        let pending = diagnose(
            &problem(ProblemKind::ClaimPending {
                seconds: Some(600),
                storage_class: Some("fast".into()),
            }),
            &Evidence::default(),
        );
        assert_eq!(
            pending.evidence,
            "Pending for 600s (StorageClass fast); no event says why"
        );
    }

    #[test]
    fn what_the_status_names_is_the_cause_when_no_row_matches() {
        let exited = diagnose(
            &problem(ProblemKind::ContainerFailed {
                container: "migrate".into(),
                init: false,
                exit_code: 1,
                reason: Some("Error".into()),
                message: None,
            }),
            &Evidence {
                logs: "applying 0042_orders\n",
                ..Evidence::default()
            },
        );
        assert_eq!(
            (exited.cause, exited.evidence.as_str()),
            (
                Cause::NonZeroExit,
                "container migrate exited with code 1 (Error)"
            )
        );
        let out_of_space = diagnose(
            &problem(ProblemKind::ContainerFailed {
                container: "backup".into(),
                init: false,
                exit_code: 1,
                reason: Some("Error".into()),
                message: None,
            }),
            &Evidence {
                logs: "pg_dump: error: could not write to output file: No space left on device\n",
                ..Evidence::default()
            },
        );
        assert_eq!(out_of_space.cause, Cause::NoSpaceLeft);
        assert_eq!(out_of_space.source, Source::Logs);

        for (reason, cause) in [
            (StartFailure::RunContainerError, Cause::ContainerStartFailed),
            (
                StartFailure::CreateContainerError,
                Cause::ContainerCreateFailed,
            ),
            (StartFailure::PreStartHookError, Cause::KubeletHookFailed),
            (StartFailure::InvalidImageName, Cause::InvalidImageName),
            (StartFailure::ErrImageNeverPull, Cause::ImageNeverPulled),
            (StartFailure::ImageInspectError, Cause::ImageInspectFailed),
        ] {
            let diagnosis = diagnose(
                &problem(ProblemKind::NotStarted {
                    container: "app".into(),
                    init: false,
                    reason,
                    message: Some("the kubelet's message".into()),
                }),
                &Evidence::default(),
            );
            assert_eq!(diagnosis.cause, cause, "{reason:?}");
            assert_eq!(diagnosis.evidence, "the kubelet's message");
        }
        let evicted = diagnose(
            &problem(ProblemKind::PodFailed {
                reason: "Evicted".into(),
                message: Some("Pod was evicted by the eviction API".into()),
            }),
            &Evidence::default(),
        );
        assert_eq!(evicted.cause, Cause::Evicted);
        assert_eq!(
            evicted.evidence,
            "Evicted: Pod was evicted by the eviction API"
        );
    }
}
