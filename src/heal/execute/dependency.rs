//! Restarting the workload behind a refused `host:port`: the restart annotation set on its pod
//! template, named after the occurrence, so one occurrence restarts it once.

use kube::runtime::events::EventType;

use super::{
    ExecuteError, Executor, Outcome, RESTART_ANNOTATION, related_pod, set_template_annotation,
};
use crate::heal::facts::WorkloadObject;
use crate::heal::inspect::Finding;
use crate::heal::plan::TargetRef;
use crate::heal::ratelimit::ActionKey;
use crate::heal::record;

impl Executor {
    pub(super) async fn restart_dependency(
        &self,
        finding: &Finding,
        dependency: &WorkloadObject,
        restart: &str,
        slot: &ActionKey,
        endpoint: &str,
        caller: &str,
    ) -> Result<Outcome, ExecuteError> {
        let workload = &dependency.workload;
        if let Err(outcome) = self.take(slot, &format!("restart of {workload}")) {
            return Ok(outcome);
        }
        let restarted = self
            .patch_workload(dependency, |object| {
                set_template_annotation(object, RESTART_ANNOTATION, restart);
            })
            .await?;
        if !restarted {
            return Ok(Outcome::Unchanged(format!(
                "{workload} already restarted for this failure"
            )));
        }
        let message = format!(
            "restarted {workload}: no replica ready and refusing connections from {caller} at {endpoint}"
        );
        self.event(
            &record::reference(&TargetRef::workload(dependency)),
            related_pod(finding),
            EventType::Normal,
            "DependencyRestarted",
            &message,
        )
        .await;
        Ok(Outcome::Done(message))
    }
}

#[cfg(test)]
mod tests {
    use crate::heal::plan::service_of_host;

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
