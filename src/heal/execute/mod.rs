//! FIX + PERSIST, the doing: carries out a `Plan` against the cluster, with the safety rails
//! that need state (rate limits per target, dry-run) and an audit trail for every decision:
//! a Kubernetes Event on the affected object, a structured log line and a metric.
//!
//! Every action is idempotent: fixes merge (recording twice changes nothing), restarts set a
//! template annotation to a value derived from the fix (setting it twice changes nothing),
//! deletions carry the pod's UID as a precondition.

mod certificate;
mod dependency;
mod memory;
mod pod;
mod storage;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, Preconditions,
};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};
use serde::Serialize;
use serde_json::json;

pub use dependency::service_of_host;

use crate::core::fix::Fix;
use crate::core::index::FixIndex;
use crate::core::owners::Workload;
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
                self.raise_memory(finding, fix, restart.as_ref(), subject)
                    .await
            }
            Plan::RaiseStorage { fix, claim, expand } => {
                self.raise_storage(finding, fix, claim, *expand).await
            }
            Plan::EvictPod => self.evict_pod(finding, subject).await,
            Plan::DeletePod => self.delete_pod(finding, subject).await,
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
