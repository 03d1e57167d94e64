//! Restarting the not-ready workload behind a refused `host:port` (never the caller).

use std::time::Instant;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::ListParams;
use kube::runtime::events::EventType;

use super::{Executor, object_ref};
use crate::core::owners;
use crate::heal::inspect::Finding;

impl Executor {
    /// Finds the Service behind `host:port`, and restarts the workload behind it when that is
    /// not ready. Never restarts the caller.
    pub(super) async fn restart_dependency(
        &self,
        finding: &Finding,
        host: &str,
        port: u16,
    ) -> anyhow::Result<(&'static str, String)> {
        let problem = &finding.problem;
        let Some((service_name, namespace)) = service_of_host(host, &problem.namespace) else {
            return Ok((
                "reported",
                format!("{host}:{port} is not a Service name; not restarting anything"),
            ));
        };
        let services: Api<Service> = Api::namespaced(self.client.clone(), &namespace);
        let Some(service) = services.get_opt(&service_name).await? else {
            return Ok((
                "reported",
                format!("no Service {namespace}/{service_name} behind {host}:{port}"),
            ));
        };
        let selector = service.spec.and_then(|s| s.selector).unwrap_or_default();
        if selector.is_empty() {
            return Ok((
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
        let backing = pods
            .list(&ListParams::default().labels(&label_selector))
            .await?
            .items;
        let not_ready: Vec<&Pod> = backing.iter().filter(|p| !pod_ready(p)).collect();
        if backing.is_empty() {
            return Ok((
                "reported",
                format!("Service {namespace}/{service_name} selects no pods"),
            ));
        }
        let Some(down) = not_ready.first() else {
            return Ok((
                "reported",
                format!("dependency {namespace}/{service_name} is ready; the refusal is elsewhere"),
            ));
        };
        let Some(dependency) = owners::owning_workload(down, |_, _| None) else {
            return Ok((
                "reported",
                format!(
                    "dependency pod {} has no controller",
                    down.metadata.name.clone().unwrap_or_default()
                ),
            ));
        };
        if finding.workload.as_ref() == Some(&dependency) {
            return Ok((
                "reported",
                "the refused endpoint is the caller itself; never restarting the caller".into(),
            ));
        }
        if !dependency.restartable() {
            return Ok((
                "reported",
                format!("dependency {dependency} cannot be restarted"),
            ));
        }
        let key = format!("dependency/{dependency}");
        if let Err(wait) = self.limiter.acquire(&key, Instant::now()) {
            return Ok((
                "rate_limited",
                format!(
                    "restart of {dependency} backing off for {}s",
                    wait.as_secs()
                ),
            ));
        }
        if self.dry_run {
            return Ok((
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
            crate::heal::detect::ProblemKind::CrashLoopBackOff { restart_count, .. } => {
                format!("restart {restart_count}")
            }
            crate::heal::detect::ProblemKind::DependencyDown { since, .. } => {
                format!("down since {since}")
            }
            _ => String::new(),
        };
        let value = format!("refused {host}:{port} to {caller} ({occurrence})");
        if !self.roll(&dependency, None, &value).await? {
            return Ok((
                "unchanged",
                format!("{dependency} already restarted for this failure"),
            ));
        }
        let message = format!(
            "restarted {dependency}: not ready and refusing connections from {caller} at {host}:{port}"
        );
        let reference = object_ref(
            "apps/v1",
            &dependency.kind,
            &dependency.namespace,
            &dependency.name,
            None,
        );
        self.event(
            &reference,
            EventType::Normal,
            "DependencyRestarted",
            &message,
        )
        .await;
        Ok(("done", message))
    }
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
