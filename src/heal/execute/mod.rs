//! EXECUTE + RECORD: carries a [`Decision`] out against the cluster and says what happened: a
//! Kubernetes Event, a structured log line and `selfheal_healing_actions_total{action,result,
//! rail}` for every decision, acted on or not.
//!
//! It decides nothing: `plan` decided, over facts read before (the objects to change come with
//! the action). What is left here is I/O: recording the fix, the patch, the eviction, the
//! deletion, the status write; taking the action's rate-limit slot (check and take at once, so
//! two handlings cannot both act); and reporting what the API answered (a PodDisruptionBudget's
//! refusal, an object already gone). Every API call has its own timeout (`heal::call`).
//!
//! Every action is idempotent: fixes merge (recording twice changes nothing), restarts set a
//! template annotation to a value derived from the occurrence (setting it twice changes nothing),
//! deletions carry the pod's UID as a precondition, patches test the resourceVersion read.

mod certificate;
mod dependency;
mod memory;
mod outcome;
mod pod;
mod storage;

pub use outcome::{ExecuteError, Outcome};

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, Client};
use serde_json::json;

pub use crate::heal::call::CALL_TIMEOUT;
pub use crate::heal::plan::service_of_host;

use crate::core::fix::Fix;
use crate::heal::call;
use crate::heal::facts::WorkloadObject;
use crate::heal::inspect::Finding;
use crate::heal::plan::{
    Action, ActionKind, Decision, Rail, ReportLevel, TargetRef, workload_group,
};
use crate::heal::ratelimit::{ActionKey, RateLimiter};
use crate::heal::record::{self, Recorder};
use crate::metrics::Metrics;
use crate::store::{FixStore, Recorded};

/// Pod template annotation whose change makes a controller roll its pods (like
/// `kubectl rollout restart`); its value says why, and repeats are no-ops.
pub const RESTART_ANNOTATION: &str = "selfheal.io/restarted-for";

/// Default spacing of repeated actions on one target.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);
/// Longest backoff between repeated actions on one target.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

pub struct Executor {
    client: Client,
    store: FixStore,
    recorder: Recorder,
    limiter: Arc<RateLimiter>,
    metrics: Arc<Metrics>,
    call_timeout: Duration,
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
        Self {
            recorder: Recorder::new(client.clone(), CALL_TIMEOUT, dry_run),
            client,
            store,
            limiter,
            metrics,
            call_timeout: CALL_TIMEOUT,
            dry_run,
        }
    }

    /// Bounds every API call, fix store write and Event by `timeout` instead of
    /// `CALL_TIMEOUT`.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self.recorder = Recorder::new(self.client.clone(), timeout, self.dry_run);
        self
    }

    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// The Event recorder, shared with whatever else reports for this process.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Carries `decision` about `finding` out and records it. Never panics; a failure is the
    /// outcome.
    pub async fn carry_out(&self, finding: &Finding, decision: &Decision) -> Outcome {
        let outcome = match decision {
            Decision::Act(action) => self
                .act(finding, action)
                .await
                .unwrap_or_else(Outcome::Failed),
            Decision::Refuse(refusal) if refusal.rail == Rail::DryRun => {
                Outcome::DryRun(refusal.reason.clone())
            }
            Decision::Refuse(refusal) => {
                self.not_acting(finding, refusal.related.as_ref(), &refusal.reason)
                    .await;
                Outcome::Refused {
                    rail: refusal.rail,
                    message: refusal.reason.clone(),
                    retry_in: None,
                }
            }
            Decision::Report(report) => match report.level {
                ReportLevel::Notice => {
                    self.not_acting(finding, None, &report.reason).await;
                    Outcome::Reported(report.reason.clone())
                }
                ReportLevel::Alert => {
                    self.event(
                        &subject_ref(finding),
                        None,
                        EventType::Warning,
                        "HealingStopped",
                        &report.reason,
                    )
                    .await;
                    Outcome::Alerted(report.reason.clone())
                }
                ReportLevel::UnderWay(_) => Outcome::Unchanged(report.reason.clone()),
            },
            Decision::Defer(deferral) => Outcome::RateLimited {
                message: deferral.reason.clone(),
                retry_in: deferral.wait,
            },
        };
        self.count(finding, decision.action(), &outcome);
        outcome
    }

    /// The outcome of a finding whose facts could not be read (`action`: what they were read
    /// for), counted and logged as any outcome; it is retried later.
    pub fn not_decided(
        &self,
        finding: &Finding,
        action: ActionKind,
        error: ExecuteError,
    ) -> Outcome {
        let outcome = Outcome::Failed(error);
        self.count(finding, action, &outcome);
        outcome
    }

    /// The metric and the log line of one decision.
    fn count(&self, finding: &Finding, action: ActionKind, outcome: &Outcome) {
        let action = action.as_str();
        let rail = outcome.rail().map(Rail::as_str).unwrap_or_default();
        self.metrics
            .healing_actions
            .count(action, outcome.result(), rail);
        tracing::info!(
            target_object = %subject_name(finding),
            action,
            result = outcome.result(),
            rail,
            problem = finding.problem.kind.name(),
            cause = finding.diagnosis.cause.as_str(),
            evidence = %finding.diagnosis.evidence,
            dry_run = self.dry_run,
            "{}", outcome.message()
        );
    }

    async fn act(&self, finding: &Finding, action: &Action) -> Result<Outcome, ExecuteError> {
        match action {
            Action::RaiseMemory { fix, roll } => {
                self.raise_memory(finding, fix, roll.as_ref()).await
            }
            Action::RaiseStorage {
                fix,
                claim,
                current,
                expand,
            } => {
                self.raise_storage(finding, fix, claim, current.as_ref(), *expand)
                    .await
            }
            Action::EvictPod { pod, slot } => self.evict_pod(finding, pod, slot).await,
            Action::DeletePod {
                pod,
                slot,
                workload,
                ..
            } => self.delete_pod(finding, pod, slot, workload.as_ref()).await,
            Action::RestartDependency {
                dependency,
                restart,
                slot,
                endpoint,
                caller,
            } => {
                self.restart_dependency(finding, dependency, restart, slot, endpoint, caller)
                    .await
            }
            Action::RenewCertificate {
                certificate,
                object,
                slot,
            } => {
                self.renew_certificate(finding, certificate, object, slot)
                    .await
            }
            Action::UnsealVault { .. } => Err(ExecuteError::NotHere(action.kind())),
        }
    }

    /// Takes the slot of a rate-limited action; `Err` is the outcome when another handling took
    /// it since the decision.
    fn take(&self, slot: &ActionKey, what: &str) -> Result<u32, Outcome> {
        self.limiter
            .acquire(slot, Instant::now())
            .map_err(|wait| Outcome::RateLimited {
                message: format!("{what} backing off for {}s", wait.as_secs()),
                retry_in: wait,
            })
    }

    /// Runs one API call within the call timeout, naming it in the error.
    async fn call<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, ExecuteError> {
        call::within(self.call_timeout, || what.to_string(), call)
            .await?
            .map_err(ExecuteError::api(what))
    }

    /// Records a fix, bounded by the call timeout.
    async fn record_fix(&self, fix: &Fix) -> Result<Recorded, ExecuteError> {
        let recorded = call::within(
            self.call_timeout,
            || "recording the fix".into(),
            self.store.record(fix.clone()),
        )
        .await??;
        Ok(recorded)
    }

    /// Reports a refusal or a report: a `NotActing` Event about the object that asked (its
    /// pod, claim, Secret), with the refused object as `related`.
    async fn not_acting(&self, finding: &Finding, related: Option<&TargetRef>, note: &str) {
        self.event(
            &subject_ref(finding),
            related.map(record::reference),
            EventType::Normal,
            "NotActing",
            note,
        )
        .await;
    }

    async fn event(
        &self,
        regarding: &ObjectReference,
        related: Option<ObjectReference>,
        type_: EventType,
        reason: &str,
        note: &str,
    ) {
        self.recorder
            .publish(regarding, related, type_, ("Heal", reason), note)
            .await;
    }

    /// Changes a workload as read: `change` edits its JSON, the difference is patched with a
    /// `test` of the resourceVersion read first, so a concurrent change makes it fail rather
    /// than patch the wrong container. `false` when `change` changed nothing.
    async fn patch_workload(
        &self,
        read: &WorkloadObject,
        change: impl FnOnce(&mut serde_json::Value),
    ) -> Result<bool, ExecuteError> {
        let workload = &read.workload;
        let original = &read.object;
        let mut changed = original.clone();
        change(&mut changed);
        if changed == *original {
            return Ok(false);
        }
        let pointer = json_patch::jsonptr::PointerBuf::parse("/metadata/resourceVersion").map_err(
            |error| ExecuteError::Patch {
                what: workload.to_string(),
                reason: error.to_string(),
            },
        )?;
        let mut operations = vec![json_patch::PatchOperation::Test(
            json_patch::TestOperation {
                path: pointer,
                value: original["metadata"]["resourceVersion"].clone(),
            },
        )];
        operations.extend(json_patch::diff(original, &changed).0);
        let group = workload_group(&workload.kind).unwrap_or_default();
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, "v1", &workload.kind));
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &workload.namespace, &resource);
        self.call(
            &format!("patching {workload}"),
            api.patch(
                &workload.name,
                &PatchParams::default(),
                &Patch::Json::<()>(json_patch::Patch(operations)),
            ),
        )
        .await?;
        Ok(true)
    }

    /// The reference to a workload with its uid (read, bounded), so `kubectl describe` shows
    /// Events about it; `None` for kinds selfheal does not read or when it cannot be read.
    async fn workload_reference(
        &self,
        workload: &crate::core::owners::Workload,
    ) -> Option<ObjectReference> {
        let group = workload_group(&workload.kind)?;
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, "v1", &workload.kind));
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &workload.namespace, &resource);
        match self
            .call(
                &format!("reading {workload}"),
                api.get_metadata_opt(&workload.name),
            )
            .await
        {
            Ok(Some(object)) => Some(record::reference(
                &TargetRef::new(
                    &format!("{group}/v1"),
                    &workload.kind,
                    &workload.namespace,
                    &workload.name,
                )
                .with_uid(object.metadata.uid.as_deref()),
            )),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%workload, %error, "could not read the workload for its Event");
                None
            }
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

fn uid_precondition(uid: Option<&str>) -> DeleteParams {
    DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: uid.map(str::to_string),
            resource_version: None,
        }),
        ..DeleteParams::default()
    }
}

/// `Pod/shop/web-1`: the object a finding is about, for logs and tables.
pub fn subject_name(finding: &Finding) -> String {
    let problem = &finding.problem;
    format!(
        "{}/{}/{}",
        problem.object_kind, problem.namespace, problem.object_name
    )
}

/// The object a finding is about (a pod, a claim, a Secret, a Service), with its uid.
fn subject_ref(finding: &Finding) -> ObjectReference {
    let problem = &finding.problem;
    record::reference(
        &TargetRef::new(
            "v1",
            problem.object_kind,
            &problem.namespace,
            &problem.object_name,
        )
        .with_uid(Some(&problem.uid)),
    )
}

/// The subject as `related` when it is a pod (an Event about a workload, a claim).
fn related_pod(finding: &Finding) -> Option<ObjectReference> {
    (finding.problem.object_kind == "Pod").then(|| subject_ref(finding))
}
