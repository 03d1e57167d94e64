//! FIX + PERSIST, the doing: carries out a `Plan` against the cluster, with the safety rails
//! that need state (rate limits per target, dry-run) and an audit trail for every decision:
//! a Kubernetes Event on the affected object, a structured log line and a metric.
//!
//! Every action is idempotent: fixes merge (recording twice changes nothing), restarts set a
//! template annotation to a value derived from the fix (setting it twice changes nothing),
//! deletions carry the pod's UID as a precondition.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim, Pod, Service};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, EvictParams, GroupVersionKind, ListParams, Patch,
    PatchParams, Preconditions,
};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};
use serde::Serialize;
use serde_json::json;

use crate::core::fix::Fix;
use crate::core::index::FixIndex;
use crate::core::owners::{self, Workload};
use crate::heal::inspect::Finding;
use crate::heal::plan::Plan;
use crate::heal::ratelimit::RateLimiter;
use crate::metrics::{ActionLabels, Metrics};
use crate::store::FixStore;
use crate::webhook::mutate::{self, Operation, Policy, Request};
use crate::webhook::target::WorkloadKind;

/// Pod template annotation whose change makes a controller roll its pods (like
/// `kubectl rollout restart`); its value says why, and repeats are no-ops.
pub const RESTART_ANNOTATION: &str = "selfheal.io/restarted-for";

/// What happened to one plan.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub target: String,
    pub action: &'static str,
    /// `done`, `unchanged`, `dry_run`, `rate_limited`, `reported`, `alerted`, `failed`.
    pub result: &'static str,
    pub message: String,
}

pub struct Executor {
    client: Client,
    store: FixStore,
    recorder: Recorder,
    limiter: Arc<RateLimiter>,
    metrics: Arc<Metrics>,
    pub dry_run: bool,
}

impl Executor {
    pub fn new(
        client: Client,
        store: FixStore,
        limiter: Arc<RateLimiter>,
        metrics: Arc<Metrics>,
        dry_run: bool,
    ) -> Self {
        let reporter = Reporter {
            controller: "selfheal".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            store,
            limiter,
            metrics,
            dry_run,
        }
    }

    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// Carries out `plan` for `finding`. Never panics; failures are reported in the outcome.
    pub async fn carry_out(&self, finding: &Finding, plan: &Plan) -> Outcome {
        let problem = &finding.problem;
        let target = format!(
            "{}/{}/{}",
            problem.object_kind, problem.namespace, problem.object_name
        );
        let outcome = match self.run(finding, plan).await {
            Ok((result, message)) => Outcome {
                target,
                action: plan.name(),
                result,
                message,
            },
            Err(error) => Outcome {
                target,
                action: plan.name(),
                result: "failed",
                message: error.to_string(),
            },
        };
        self.metrics
            .healing_actions
            .get_or_create(&ActionLabels {
                action: outcome.action.into(),
                result: outcome.result.into(),
            })
            .inc();
        tracing::info!(
            target_object = %outcome.target,
            action = outcome.action,
            result = outcome.result,
            problem = problem.kind.name(),
            cause = finding.diagnosis.cause.as_str(),
            evidence = %finding.diagnosis.evidence,
            dry_run = self.dry_run,
            "{}", outcome.message
        );
        outcome
    }

    async fn run(&self, finding: &Finding, plan: &Plan) -> anyhow::Result<(&'static str, String)> {
        let problem = &finding.problem;
        let subject = object_ref(
            "v1",
            problem.object_kind,
            &problem.namespace,
            &problem.object_name,
            Some(&problem.uid),
        );
        match plan {
            Plan::Report { reason } => {
                self.event(&subject, EventType::Normal, "NotActing", reason)
                    .await;
                Ok(("reported", reason.clone()))
            }
            Plan::Alert { reason } => {
                self.event(&subject, EventType::Warning, "HealingStopped", reason)
                    .await;
                Ok(("alerted", reason.clone()))
            }
            Plan::RaiseMemory { fix, restart } => {
                let what = format!(
                    "memory of {}/{} container {} to {}",
                    fix.namespace,
                    fix.resource,
                    fix.target().unwrap_or("*"),
                    fix.value
                );
                if self.dry_run {
                    let then = restart
                        .as_ref()
                        .map(|w| format!(", then restart {w}"))
                        .unwrap_or_default();
                    return Ok(("dry_run", format!("would record {what}{then}")));
                }
                let recorded = self.store.record(fix.clone()).await?;
                let stored = &recorded.stored;
                let mut message = match &recorded.outcome {
                    crate::core::fix::MergeOutcome::Unchanged => {
                        format!("fix already recorded: memory {}", stored.value)
                    }
                    _ => format!(
                        "recorded {what} ({})",
                        fix.reason.clone().unwrap_or_default()
                    ),
                };
                let mut changed = recorded.outcome.changed();
                if let Some(workload) = restart {
                    let value = format!(
                        "memory {} for container {}",
                        stored.value,
                        stored.target().unwrap_or("*")
                    );
                    if self.roll(workload, Some(stored), &value).await? {
                        changed = true;
                        message
                            .push_str(&format!("; restarted {workload} so the webhook applies it"));
                    }
                }
                if changed {
                    let reference = workload_ref(restart.as_ref(), finding).unwrap_or(subject);
                    self.event(
                        &reference,
                        EventType::Normal,
                        "MemoryLimitRaised",
                        &format!("{message}. Evidence: {}", finding.diagnosis.evidence),
                    )
                    .await;
                }
                Ok((if changed { "done" } else { "unchanged" }, message))
            }
            Plan::RaiseStorage { fix, claim, expand } => {
                if self.dry_run {
                    return Ok((
                        "dry_run",
                        format!("would record storage {} for claim {claim}", fix.value),
                    ));
                }
                let recorded = self.store.record(fix.clone()).await?;
                let mut changed = recorded.outcome.changed();
                let mut message =
                    format!("storage fix for claim {claim}: {}", recorded.stored.value);
                if *expand
                    && self
                        .expand_claim(
                            &problem.namespace,
                            claim,
                            &recorded.stored.value.to_string(),
                        )
                        .await?
                {
                    changed = true;
                    message.push_str("; claim expanded");
                }
                if changed {
                    let reference = object_ref(
                        "v1",
                        "PersistentVolumeClaim",
                        &problem.namespace,
                        claim,
                        None,
                    );
                    self.event(&reference, EventType::Normal, "StorageRaised", &message)
                        .await;
                }
                Ok((if changed { "done" } else { "unchanged" }, message))
            }
            Plan::EvictPod => {
                let key = format!("evict/{}/{}", problem.namespace, owner_key(finding));
                if let Err(wait) = self.limiter.acquire(&key, Instant::now()) {
                    return Ok((
                        "rate_limited",
                        format!("eviction backing off for {}s", wait.as_secs()),
                    ));
                }
                if self.dry_run {
                    return Ok((
                        "dry_run",
                        format!("would evict pod {}", problem.object_name),
                    ));
                }
                let pods: Api<Pod> = Api::namespaced(self.client.clone(), &problem.namespace);
                let params = EvictParams {
                    delete_options: Some(uid_precondition(&problem.uid)),
                    ..EvictParams::default()
                };
                match pods.evict(&problem.object_name, &params).await {
                    Ok(_) => {
                        let message = format!(
                            "evicted pod {} to restart it ({})",
                            problem.object_name, finding.diagnosis.evidence
                        );
                        self.event(&subject, EventType::Normal, "PodEvicted", &message)
                            .await;
                        Ok(("done", message))
                    }
                    Err(kube::Error::Api(status)) if status.code == 429 => {
                        let message = "eviction refused by a PodDisruptionBudget; will retry later"
                            .to_string();
                        self.event(&subject, EventType::Normal, "NotActing", &message)
                            .await;
                        Ok(("reported", message))
                    }
                    Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
                        Ok(("unchanged", "the pod is already gone".to_string()))
                    }
                    Err(error) => Err(error.into()),
                }
            }
            Plan::DeletePod => {
                let key = crate::heal::run::attempts_key(finding);
                let attempt = match self.limiter.acquire(&key, Instant::now()) {
                    Ok(attempt) => attempt,
                    Err(wait) => {
                        return Ok((
                            "rate_limited",
                            format!("image pull retry backing off for {}s", wait.as_secs()),
                        ));
                    }
                };
                if self.dry_run {
                    return Ok((
                        "dry_run",
                        format!(
                            "would delete pod {} to retry the image pull",
                            problem.object_name
                        ),
                    ));
                }
                let pods: Api<Pod> = Api::namespaced(self.client.clone(), &problem.namespace);
                match pods
                    .delete(&problem.object_name, &uid_precondition(&problem.uid))
                    .await
                {
                    Ok(_) => {
                        let message = format!(
                            "deleted pod {} so its controller retries the image pull (attempt {attempt}): {}",
                            problem.object_name, finding.diagnosis.evidence
                        );
                        let reference =
                            workload_ref(finding.workload.as_ref(), finding).unwrap_or(subject);
                        self.event(&reference, EventType::Normal, "ImagePullRetried", &message)
                            .await;
                        Ok(("done", message))
                    }
                    Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
                        Ok(("unchanged", "the pod is already gone".to_string()))
                    }
                    Err(error) => Err(error.into()),
                }
            }
            Plan::RestartDependency { host, port } => {
                self.restart_dependency(finding, host, *port).await
            }
            Plan::RenewCertificate { certificate } => {
                self.renew_certificate(finding, certificate).await
            }
        }
    }

    /// Rolls a workload: applies `fix` to its pod template directly (the same decision the
    /// webhook makes, so the fix does not wait for the webhook to learn it) and sets the restart
    /// annotation to `value`. `false` when the workload already had both (nothing to do). The
    /// JSON patch starts with a `test` of the resourceVersion read, so a concurrent change makes
    /// it fail rather than patch the wrong container.
    async fn roll(
        &self,
        workload: &Workload,
        fix: Option<&Fix>,
        value: &str,
    ) -> anyhow::Result<bool> {
        let Some(kind) = WorkloadKind::from_group_kind("apps", &workload.kind) else {
            anyhow::bail!("{workload} cannot be restarted");
        };
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", &workload.kind));
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &workload.namespace, &resource);
        let original = serde_json::to_value(api.get(&workload.name).await?)?;
        let mut changed = original.clone();
        if let Some(fix) = fix {
            let request = Request {
                kind,
                operation: Operation::Update,
                namespace: &workload.namespace,
                object: &original,
                // The planner already capped the fix by the namespace's LimitRange.
                memory_cap: None,
            };
            let index = FixIndex::new([fix.clone()]);
            let mutation = mutate::mutate(
                &request,
                &index,
                &Policy {
                    protected_namespaces: Vec::new(),
                },
            );
            json_patch::patch(&mut changed, &mutation.patch)?;
        }
        set_template_annotation(&mut changed, RESTART_ANNOTATION, value);
        if changed == original {
            return Ok(false);
        }
        let mut operations = vec![json_patch::PatchOperation::Test(
            json_patch::TestOperation {
                path: json_patch::jsonptr::PointerBuf::parse("/metadata/resourceVersion")?,
                value: original["metadata"]["resourceVersion"].clone(),
            },
        )];
        operations.extend(json_patch::diff(&original, &changed).0);
        api.patch(
            &workload.name,
            &PatchParams::default(),
            &Patch::Json::<()>(json_patch::Patch(operations)),
        )
        .await?;
        Ok(true)
    }

    /// Triggers re-issuance the way `cmctl renew` does: an `Issuing=True` condition with reason
    /// `ManuallyTriggered` written through the Certificate's status subresource. Works without
    /// cert-manager's CRDs being known to selfheal (dynamic object).
    async fn renew_certificate(
        &self,
        finding: &Finding,
        certificate: &str,
    ) -> anyhow::Result<(&'static str, String)> {
        let namespace = &finding.problem.namespace;
        if let Err(wait) = self
            .limiter
            .acquire(&crate::heal::run::attempts_key(finding), Instant::now())
        {
            return Ok((
                "rate_limited",
                format!(
                    "renewal of {certificate} backing off for {}s",
                    wait.as_secs()
                ),
            ));
        }
        if self.dry_run {
            return Ok((
                "dry_run",
                format!("would trigger re-issuance of Certificate {namespace}/{certificate}"),
            ));
        }
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
            "certificates",
        );
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        let mut object = match api.get_opt(certificate).await {
            Ok(Some(object)) => object,
            Ok(None) => {
                return Ok((
                    "reported",
                    format!(
                        "Certificate {namespace}/{certificate} named by the Secret does not exist"
                    ),
                ));
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Ok((
                    "reported",
                    "cert-manager is not installed (no certificates.cert-manager.io API)".into(),
                ));
            }
            Err(error) => return Err(error.into()),
        };
        let conditions = object.data["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(issuing) = conditions
            .iter()
            .find(|c| c["type"] == "Issuing" && c["status"] == "True")
        {
            let since = issuing["lastTransitionTime"].as_str().unwrap_or("?");
            return Ok((
                "unchanged",
                format!("Certificate {certificate} is already being issued (since {since})"),
            ));
        }
        let mut conditions: Vec<serde_json::Value> = conditions
            .into_iter()
            .filter(|c| c["type"] != "Issuing")
            .collect();
        conditions.push(json!({
            "type": "Issuing",
            "status": "True",
            "reason": "ManuallyTriggered",
            "message": "Certificate re-issuance manually triggered",
            "lastTransitionTime": jiff::Timestamp::now().round(jiff::Unit::Second)?.to_string(),
            "observedGeneration": object.metadata.generation,
        }));
        if !object.data["status"].is_object() {
            object.data["status"] = json!({});
        }
        object.data["status"]["conditions"] = json!(conditions);
        api.replace_status(certificate, &kube::api::PostParams::default(), &object)
            .await?;
        let message = format!(
            "triggered re-issuance of Certificate {certificate}: {}",
            finding.diagnosis.evidence
        );
        let subject = object_ref(
            "v1",
            "Secret",
            namespace,
            &finding.problem.object_name,
            Some(&finding.problem.uid),
        );
        self.event(
            &subject,
            EventType::Normal,
            "CertificateRenewalTriggered",
            &message,
        )
        .await;
        Ok(("done", message))
    }

    async fn expand_claim(&self, namespace: &str, claim: &str, size: &str) -> anyhow::Result<bool> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        let current = api.get(claim).await?;
        let request = current
            .spec
            .and_then(|s| s.resources)
            .and_then(|r| r.requests)
            .and_then(|r| r.get("storage").cloned());
        let current_size =
            request.and_then(|q| crate::core::quantity::ByteQuantity::parse(&q.0).ok());
        let wanted = crate::core::quantity::ByteQuantity::parse(size)?;
        if current_size.is_some_and(|c| c >= wanted) {
            return Ok(false);
        }
        let patch = json!({"spec": {"resources": {"requests": {"storage": size}}}});
        api.patch(claim, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(true)
    }

    /// Finds the Service behind `host:port`, and restarts the workload behind it when that is
    /// not ready. Never restarts the caller.
    async fn restart_dependency(
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

    async fn event(&self, reference: &ObjectReference, type_: EventType, reason: &str, note: &str) {
        if self.dry_run {
            return;
        }
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(crate::text::truncate(note, 1000)),
            action: "Heal".into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, reference).await {
            tracing::warn!(%error, reason, "could not publish an Event");
        }
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

/// Sets `spec.template.metadata.annotations[key] = value`, creating missing parents.
fn set_template_annotation(object: &mut serde_json::Value, key: &str, value: &str) {
    let Some(template) = object
        .pointer_mut("/spec/template")
        .and_then(|t| t.as_object_mut())
    else {
        return;
    };
    let metadata = template.entry("metadata").or_insert_with(|| json!({}));
    if !metadata.is_object() {
        *metadata = json!({});
    }
    let annotations = &mut metadata["annotations"];
    if !annotations.is_object() {
        *annotations = json!({});
    }
    annotations[key] = json!(value);
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

fn owner_key(finding: &Finding) -> String {
    finding
        .workload
        .as_ref()
        .map_or_else(|| finding.problem.object_name.clone(), |w| w.to_string())
}

fn uid_precondition(uid: &str) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    }
}

fn object_ref(
    api_version: &str,
    kind: &str,
    namespace: &str,
    name: &str,
    uid: Option<&str>,
) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version.to_string()),
        kind: Some(kind.to_string()),
        namespace: Some(namespace.to_string()),
        name: Some(name.to_string()),
        uid: uid.map(str::to_string),
        ..ObjectReference::default()
    }
}

fn workload_ref(workload: Option<&Workload>, finding: &Finding) -> Option<ObjectReference> {
    let workload = workload.or(finding.workload.as_ref())?;
    let api_version = if matches!(workload.kind.as_str(), "Job" | "CronJob") {
        "batch/v1"
    } else {
        "apps/v1"
    };
    Some(object_ref(
        api_version,
        &workload.kind,
        &workload.namespace,
        &workload.name,
        None,
    ))
}

/// Default spacing of repeated actions on one target.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);
/// Longest backoff between repeated actions on one target.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

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
