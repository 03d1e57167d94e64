//! Restarting the workload behind a refused `host:port` when none of its replicas is ready
//! (never the caller, never past the rails: a tenant's log line cannot restart kube-system).

use std::time::Instant;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::ListParams;
use kube::runtime::events::EventType;

use super::{Executor, Step, related_pod, step, workload_ref};
use crate::core::owners::{self, Workload};
use crate::heal::detect::ProblemKind;
use crate::heal::inspect::Finding;
use crate::heal::plan::{Rails, TargetFacts};

impl Executor {
    /// Finds the Service behind `host:port` and the workload behind it, and restarts that
    /// workload when the rails admit it and none of its replicas is ready.
    pub(super) async fn restart_dependency(
        &self,
        finding: &Finding,
        host: &str,
        port: u16,
        rails: &Rails,
    ) -> anyhow::Result<Step> {
        let problem = &finding.problem;
        let Some((service_name, namespace)) = service_of_host(host, &problem.namespace) else {
            return Ok(step(
                "reported",
                format!("{host}:{port} is not a Service name; not restarting anything"),
            ));
        };
        let services: Api<Service> = Api::namespaced(self.client.clone(), &namespace);
        let what = format!("reading Service {namespace}/{service_name}");
        let Some(service) = self
            .within(&what, services.get_opt(&service_name))
            .await?
            .map_err(|e| anyhow::anyhow!("{what}: {e}"))?
        else {
            return Ok(step(
                "reported",
                format!("no Service {namespace}/{service_name} behind {host}:{port}"),
            ));
        };
        let selector = service.spec.and_then(|s| s.selector).unwrap_or_default();
        if selector.is_empty() {
            return Ok(step(
                "reported",
                format!("Service {namespace}/{service_name} has no selector"),
            ));
        }
        let label_selector = selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let what = format!("listing the pods of Service {namespace}/{service_name}");
        let backing = self
            .within(
                &what,
                pods.list(&ListParams::default().labels(&label_selector)),
            )
            .await?
            .map_err(|e| anyhow::anyhow!("{what}: {e}"))?
            .items;
        // The workload behind the Service: the owner of a not-ready pod (of any pod when all
        // are ready, so the readiness rail can say so).
        let Some(first) = backing
            .iter()
            .find(|p| !pod_ready(p))
            .or_else(|| backing.first())
        else {
            return Ok(step(
                "reported",
                format!("Service {namespace}/{service_name} selects no pods"),
            ));
        };
        let Some(dependency) = owners::owning_workload(first, |_, _| None) else {
            return Ok(step(
                "reported",
                format!(
                    "dependency pod {} has no controller",
                    first.metadata.name.clone().unwrap_or_default()
                ),
            ));
        };
        if finding.workload.as_ref() == Some(&dependency) {
            return Ok(step(
                "reported",
                "the refused endpoint is the caller itself; never restarting the caller".into(),
            ));
        }
        if !dependency.restartable() {
            return Ok(step(
                "reported",
                format!("dependency {dependency} cannot be restarted"),
            ));
        }
        let Some(object) = self.get_workload(&dependency).await? else {
            return Ok(step(
                "reported",
                format!("dependency {dependency} no longer exists"),
            ));
        };
        let reference = workload_ref(&dependency, &object);
        let labels = object.metadata.labels.clone().unwrap_or_default();
        let facts = TargetFacts {
            kind: &dependency.kind,
            namespace: &dependency.namespace,
            name: &dependency.name,
            labels: &labels,
            namespace_labels: &Default::default(),
            ready_replicas: Some(ready_replicas(&dependency, &backing, &object.data)),
        };
        if let Err(refusal) = self.admit(facts, rails).await? {
            return Ok(self.refuse(finding, Some(reference), refusal).await);
        }
        let key = crate::heal::ratelimit::ActionKey::Restart(dependency.clone());
        if let Err(wait) = self.limiter.acquire(&key, Instant::now()) {
            return Ok(step(
                "rate_limited",
                format!(
                    "restart of {dependency} backing off for {}s",
                    wait.as_secs()
                ),
            ));
        }
        if self.dry_run {
            return Ok(step(
                "dry_run",
                format!("would restart {dependency} (not ready, refusing {host}:{port})"),
            ));
        }
        let caller = finding
            .workload
            .as_ref()
            .map_or(problem.object_name.clone(), |w| w.name.clone());
        // Names this occurrence, so the restart happens once per occurrence (idempotent).
        let occurrence = match &problem.kind {
            ProblemKind::CrashLoopBackOff { restart_count, .. } => {
                format!("restart {restart_count}")
            }
            ProblemKind::DependencyDown { since, .. } => format!("down since {since}"),
            _ => String::new(),
        };
        let value = format!("refused {host}:{port} to {caller} ({occurrence})");
        if !self
            .roll(&dependency, &object, None, Some(value.as_str()))
            .await?
        {
            return Ok(step(
                "unchanged",
                format!("{dependency} already restarted for this failure"),
            ));
        }
        let message = format!(
            "restarted {dependency}: no replica ready and refusing connections from {caller} at {host}:{port}"
        );
        self.event(
            &reference,
            related_pod(finding),
            EventType::Normal,
            "DependencyRestarted",
            &message,
        )
        .await;
        Ok(step("done", message))
    }
}

/// Ready replicas of `dependency`: its ready pods among those the Service selects, or what its
/// status says, whichever is more (a rollout's old ready pods count).
fn ready_replicas(dependency: &Workload, backing: &[Pod], object: &serde_json::Value) -> u32 {
    let ready_pods = backing
        .iter()
        .filter(|p| pod_ready(p))
        .filter(|p| owners::owning_workload(p, |_, _| None).as_ref() == Some(dependency))
        .count();
    let from_status = object["status"]["readyReplicas"].as_u64().unwrap_or(0);
    u32::try_from(ready_pods)
        .unwrap_or(u32::MAX)
        .max(u32::try_from(from_status).unwrap_or(u32::MAX))
}

/// `db`, `db.ns`, `db.ns.svc`, `db.ns.svc.cluster.local` → (service, namespace). IPs → None.
pub fn service_of_host(host: &str, default_namespace: &str) -> Option<(String, String)> {
    if host.parse::<std::net::IpAddr>().is_ok() || host.is_empty() {
        return None;
    }
    let mut labels = host.split('.');
    let service = labels.next()?.to_string();
    let namespace = labels
        .next()
        .filter(|ns| *ns != "svc")
        .unwrap_or(default_namespace)
        .to_string();
    Some((service, namespace))
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_map_to_services() {
        assert_eq!(
            service_of_host("db", "app"),
            Some(("db".into(), "app".into()))
        );
        assert_eq!(
            service_of_host("db.data", "app"),
            Some(("db".into(), "data".into()))
        );
        assert_eq!(
            service_of_host("gitlab-postgresql.gitlab.svc.cluster.local", "x"),
            Some(("gitlab-postgresql".into(), "gitlab".into()))
        );
        assert_eq!(
            service_of_host("db.svc", "app"),
            Some(("db".into(), "app".into()))
        );
        assert_eq!(service_of_host("10.96.0.12", "app"), None);
    }
}
