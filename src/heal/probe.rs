//! Optional TCP probes of named dependencies (`namespace/service:port`): the Service's cluster IP
//! is looked up through the API and connected to, so a probe needs no DNS and sees what callers
//! see. A failed probe becomes a `DependencyDown` problem, healed like a caller's "connection
//! refused": the not-ready workload behind the Service is restarted, never anything else. The
//! finding is about the Service itself (its uid, read by the probe), so its Events show in
//! `kubectl describe service`.

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::{Api, Client};

use crate::heal::call::{self, CALL_TIMEOUT};
use crate::heal::detect::{Problem, ProblemKind};
use crate::heal::diagnose::{Cause, Diagnosis, Source};
use crate::heal::inspect::Finding;

/// One dependency to probe.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProbeTarget {
    pub namespace: String,
    pub service: String,
    pub port: u16,
}

impl std::str::FromStr for ProbeTarget {
    type Err = String;

    /// `namespace/service:port`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || format!("probe target {text:?} is not namespace/service:port");
        let (namespace, rest) = text.split_once('/').ok_or_else(error)?;
        let (service, port) = rest.rsplit_once(':').ok_or_else(error)?;
        let port = port.parse().map_err(|_| error())?;
        if namespace.is_empty() || service.is_empty() {
            return Err(error());
        }
        Ok(Self {
            namespace: namespace.to_string(),
            service: service.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for ProbeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.service, self.port)
    }
}

/// A failed probe: why, and the uid of the probed Service when it could be read (the subject of
/// the finding's Events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeFailure {
    pub error: String,
    pub service_uid: Option<String>,
}

impl std::fmt::Display for ProbeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error)
    }
}

/// Connects to the Service's cluster IP and port within `timeout`.
pub async fn probe(
    client: &Client,
    target: &ProbeTarget,
    timeout: Duration,
) -> Result<(), ProbeFailure> {
    let services: Api<Service> = Api::namespaced(client.clone(), &target.namespace);
    let service = match call::within(
        CALL_TIMEOUT,
        || format!("reading Service {}", target.service),
        services.get(&target.service),
    )
    .await
    {
        Ok(read) => {
            read.map_err(|e| format!("Service {}/{}: {e}", target.namespace, target.service))
        }
        Err(_) => Err(format!(
            "Service {}/{}: the API did not answer within {}s",
            target.namespace,
            target.service,
            CALL_TIMEOUT.as_secs()
        )),
    }
    .map_err(|error| ProbeFailure {
        error,
        service_uid: None,
    })?;
    let failure = |error: String| ProbeFailure {
        error,
        service_uid: service.metadata.uid.clone(),
    };
    let ip = service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .ok_or_else(|| {
            failure(format!(
                "Service {}/{} has no cluster IP (headless?)",
                target.namespace, target.service
            ))
        })?;
    let address = format!("{ip}:{}", target.port);
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&address)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(failure(format!("connect {address}: {error}"))),
        Err(_) => Err(failure(format!(
            "connect {address}: no answer within {}s",
            timeout.as_secs()
        ))),
    }
}

/// The finding for a failed probe, about the Service (by its uid, so `kubectl describe` shows
/// its Events; none when the Service could not be read). `since`: when this outage started (it
/// names the restart, so one outage restarts the dependency once).
pub fn finding(target: &ProbeTarget, failure: &ProbeFailure, since: &str) -> Finding {
    let host = format!("{}.{}", target.service, target.namespace);
    Finding {
        problem: Problem {
            namespace: target.namespace.clone(),
            object_kind: "Service",
            object_name: target.service.clone(),
            uid: failure.service_uid.clone().unwrap_or_default(),
            kind: ProblemKind::DependencyDown {
                endpoint: format!("{host}:{}", target.port),
                since: since.to_string(),
            },
        },
        diagnosis: Diagnosis {
            cause: Cause::ConnectionRefused,
            evidence: format!("probe of {target} failed: {}", failure.error),
            source: Source::Status,
            endpoint: Some((host, target.port)),
            missing: None,
        },
        workload: None,
        labels: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_bad_ones_are_named() {
        let target: ProbeTarget = "shop/db:5432".parse().unwrap();
        assert_eq!(
            target,
            ProbeTarget {
                namespace: "shop".into(),
                service: "db".into(),
                port: 5432
            }
        );
        assert_eq!(target.to_string(), "shop/db:5432");
        for bad in ["db:5432", "shop/db", "shop/db:http", "/db:1", "shop/:1"] {
            assert!(
                bad.parse::<ProbeTarget>().unwrap_err().contains(bad),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_finding_is_about_the_service_itself() {
        let target: ProbeTarget = "shop/db:5432".parse().unwrap();
        let failure = ProbeFailure {
            error: "connect 10.0.0.5:5432: Connection refused".into(),
            service_uid: Some("svc-uid".into()),
        };
        let found = finding(&target, &failure, "2026-11-28T12:00:00Z");
        assert_eq!(
            (
                found.problem.object_kind,
                found.problem.object_name.as_str(),
                found.problem.uid.as_str()
            ),
            ("Service", "db", "svc-uid")
        );
        assert!(found.diagnosis.evidence.ends_with("Connection refused"));
        let unread = ProbeFailure {
            service_uid: None,
            ..failure
        };
        assert_eq!(finding(&target, &unread, "t").problem.uid, "");
    }
}
