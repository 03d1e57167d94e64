//! FIX + PERSIST, the doing: carries out a `Plan` against the cluster, with the safety rails
//! that need state (rate limits per target, dry-run) and an audit trail for every decision:
//! a Kubernetes Event on the affected object, a structured log line and a metric.
//!
//! Every object an action changes (the workload rolled, the pod evicted or deleted, the claim
//! expanded, the dependency restarted, the Certificate renewed) passes `plan::admit_target`:
//! this module gathers the facts (the object, its namespace's labels) and obeys; a refusal is a
//! `NotActing` Event naming the rail. Every API call has its own short timeout (`CALL_TIMEOUT`),
//! so no answer (or a client retrying a 429) can stall the caller.
//!
//! Every action is idempotent: fixes merge (recording twice changes nothing), restarts set a
//! template annotation to a value derived from the fix (setting it twice changes nothing),
//! deletions carry the pod's UID as a precondition.

mod certificate;
mod dependency;
mod memory;
mod pod;
mod storage;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ObjectReference};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, Preconditions,
};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};
use serde::Serialize;
use serde_json::json;

pub use dependency::service_of_host;

use crate::cluster::limits::LimitSnapshot;
use crate::core::fix::Fix;
use crate::core::index::FixIndex;
use crate::core::owners::Workload;
use crate::heal::call;
use crate::heal::inspect::Finding;
use crate::heal::plan::{self, Plan, Rails, Refusal, TargetFacts};
use crate::heal::ratelimit::{ActionKey, RateLimiter};
use crate::metrics::Metrics;
use crate::store::FixStore;
use crate::webhook::mutate::{self, Operation, Policy, Request};
use crate::webhook::target::WorkloadKind;

/// Pod template annotation whose change makes a controller roll its pods (like
/// `kubectl rollout restart`); its value says why, and repeats are no-ops.
pub const RESTART_ANNOTATION: &str = "selfheal.io/restarted-for";

pub use crate::heal::call::CALL_TIMEOUT;

/// What happened to one plan.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub target: String,
    pub action: &'static str,
    /// `done`, `unchanged`, `dry_run`, `rate_limited`, `reported`, `alerted`, `refused`,
    /// `failed`.
    pub result: &'static str,
    /// For `refused`: the rail that stopped the action (`protected_namespace`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rail: Option<&'static str>,
    pub message: String,
}

/// The result of one action before it becomes an `Outcome`.
struct Step {
    result: &'static str,
    message: String,
    rail: Option<&'static str>,
}

fn step(result: &'static str, message: String) -> Step {
    Step {
        result,
        message,
        rail: None,
    }
}

/// The key under which repeated actions for one finding are counted: image-pull retries per
/// workload, certificate renewals per Secret.
pub fn attempts_key(finding: &Finding) -> ActionKey {
    let problem = &finding.problem;
    if let crate::heal::detect::ProblemKind::Certificate { .. } = problem.kind {
        return ActionKey::Renew {
            namespace: problem.namespace.clone(),
            secret: problem.object_name.clone(),
        };
    }
    ActionKey::PullRetry {
        namespace: problem.namespace.clone(),
        owner: owner_key(finding),
    }
}

pub struct Executor {
    client: Client,
    store: FixStore,
    recorder: Recorder,
    limiter: Arc<RateLimiter>,
    metrics: Arc<Metrics>,
    call_timeout: Duration,
    /// The namespaces' LimitRange rules, so a template the executor raises obeys them exactly as
    /// the webhook does (none: the planner's cap only).
    limits: Option<LimitSnapshot>,
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
            call_timeout: CALL_TIMEOUT,
            limits: None,
            dry_run,
        }
    }

    /// Raises templates within the namespaces' LimitRange maximum and limit-to-request ratio.
    pub fn with_limits(mut self, limits: LimitSnapshot) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Bounds every API call, fix store write and Event by `timeout` instead of
    /// `CALL_TIMEOUT`.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// Runs one API call within the call timeout. The outer error is the timeout (naming
    /// `what`); the inner result is the API's answer, for the caller to read status codes from.
    async fn within<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> anyhow::Result<Result<T, kube::Error>> {
        Ok(call::within(self.call_timeout, || what.to_string(), call).await?)
    }

    /// Runs one fallible step (a fix store write) within the call timeout.
    async fn bounded<T, E>(
        &self,
        what: &str,
        step: impl std::future::Future<Output = Result<T, E>>,
    ) -> anyhow::Result<T>
    where
        anyhow::Error: From<E>,
    {
        let answer = call::within(self.call_timeout, || what.to_string(), step).await?;
        Ok(answer?)
    }

    /// Carries out `plan` for `finding`, within `rails`. Never panics; failures are reported in
    /// the outcome.
    pub async fn carry_out(&self, finding: &Finding, plan: &Plan, rails: &Rails) -> Outcome {
        let problem = &finding.problem;
        let target = format!(
            "{}/{}/{}",
            problem.object_kind, problem.namespace, problem.object_name
        );
        let outcome = match self.run(finding, plan, rails).await {
            Ok(step) => Outcome {
                target,
                action: plan.name(),
                result: step.result,
                rail: step.rail,
                message: step.message,
            },
            Err(error) => Outcome {
                target,
                action: plan.name(),
                result: "failed",
                rail: None,
                message: format!("{error:#}"),
            },
        };
        self.metrics.healing_actions.count(
            outcome.action,
            outcome.result,
            outcome.rail.unwrap_or_default(),
        );
        tracing::info!(
            target_object = %outcome.target,
            action = outcome.action,
            result = outcome.result,
            rail = outcome.rail.unwrap_or_default(),
            problem = problem.kind.name(),
            cause = finding.diagnosis.cause.as_str(),
            evidence = %finding.diagnosis.evidence,
            dry_run = self.dry_run,
            "{}", outcome.message
        );
        outcome
    }

    async fn run(&self, finding: &Finding, plan: &Plan, rails: &Rails) -> anyhow::Result<Step> {
        let subject = subject_ref(finding);
        match plan {
            Plan::Report { reason } => {
                self.event(&subject, None, EventType::Normal, "NotActing", reason)
                    .await;
                Ok(step("reported", reason.clone()))
            }
            Plan::Alert { reason } => {
                self.event(&subject, None, EventType::Warning, "HealingStopped", reason)
                    .await;
                Ok(step("alerted", reason.clone()))
            }
            Plan::RaiseMemory { fix, roll_into } => {
                self.raise_memory(finding, fix, roll_into.as_ref(), rails)
                    .await
            }
            Plan::RaiseStorage { fix, claim, expand } => {
                self.raise_storage(finding, fix, claim, *expand, rails)
                    .await
            }
            Plan::EvictPod => self.evict_pod(finding, rails).await,
            Plan::DeletePod => self.delete_pod(finding, rails).await,
            Plan::RestartDependency { host, port } => {
                self.restart_dependency(finding, host, *port, rails).await
            }
            Plan::RenewCertificate { certificate } => {
                self.renew_certificate(finding, certificate, rails).await
            }
        }
    }

    /// The rails' answer for changing the object described by `facts` (its namespace's labels
    /// are read here, one bounded call).
    async fn admit(
        &self,
        facts: TargetFacts<'_>,
        rails: &Rails,
    ) -> anyhow::Result<Result<(), Refusal>> {
        let namespace_labels = self.namespace_labels(facts.namespace).await?;
        Ok(plan::admit_target(
            &TargetFacts {
                namespace_labels: &namespace_labels,
                ..facts
            },
            rails,
        ))
    }

    /// The labels of `namespace`. A namespace the API does not know has none.
    /// The labels of `namespace` (none for a namespace the API does not know), read within the
    /// call timeout.
    pub async fn namespace_labels(
        &self,
        namespace: &str,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let found = self
            .within(
                &format!("reading namespace {namespace}"),
                api.get_opt(namespace),
            )
            .await?
            .map_err(|e| anyhow::anyhow!("reading namespace {namespace}: {e}"))?;
        Ok(found.and_then(|n| n.metadata.labels).unwrap_or_default())
    }

    /// Reports a refusal: a `NotActing` Event about the pod (or Secret) that asked for the
    /// action, with the refused object as `related`.
    async fn refuse(
        &self,
        finding: &Finding,
        target: Option<ObjectReference>,
        refusal: Refusal,
    ) -> Step {
        self.event(
            &subject_ref(finding),
            target,
            EventType::Normal,
            "NotActing",
            &refusal.reason,
        )
        .await;
        Step {
            result: "refused",
            message: refusal.reason,
            rail: Some(refusal.rail.as_str()),
        }
    }

    /// Reads a workload as a dynamic object; `None` when it does not exist.
    async fn get_workload(&self, workload: &Workload) -> anyhow::Result<Option<DynamicObject>> {
        let Some(group) = workload_group(&workload.kind) else {
            anyhow::bail!("{workload} is not a workload kind selfheal changes");
        };
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, "v1", &workload.kind));
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &workload.namespace, &resource);
        self.within(&format!("reading {workload}"), api.get_opt(&workload.name))
            .await?
            .map_err(|e| anyhow::anyhow!("reading {workload}: {e}"))
    }

    /// Puts `fix` into a workload's template directly (the same decision the webhook makes, so
    /// the fix does not wait for the webhook to learn it) and, when `restart_value` is given,
    /// sets the restart annotation to it, so its controller rolls the pods. `original` is the
    /// workload as read. `false` when the workload already had both (nothing to do). The JSON
    /// patch starts with a `test` of the resourceVersion read, so a concurrent change makes it
    /// fail rather than patch the wrong container.
    async fn roll(
        &self,
        workload: &Workload,
        original: &DynamicObject,
        fix: Option<&Fix>,
        restart_value: Option<&str>,
    ) -> anyhow::Result<bool> {
        let group = workload_group(&workload.kind).unwrap_or_default();
        let Some(kind) = WorkloadKind::from_group_kind(group, &workload.kind) else {
            anyhow::bail!("{workload} cannot be changed");
        };
        let original = serde_json::to_value(original)?;
        let mut changed = original.clone();
        if let Some(fix) = fix {
            // The planner already capped the fix at the LimitRange maximum; the ratio depends on
            // each container's request, so the webhook's rule applies it here too.
            let limits = self.limits.as_ref();
            let memory_cap = limits.and_then(|l| l.memory_max(&workload.namespace));
            let request = Request {
                kind,
                operation: Operation::Update,
                namespace: &workload.namespace,
                object: &original,
                memory_cap: memory_cap.as_ref(),
                memory_ratio: limits.and_then(|l| l.memory_ratio(&workload.namespace)),
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
        if let Some(value) = restart_value {
            set_template_annotation(&mut changed, RESTART_ANNOTATION, value);
        }
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
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, "v1", &workload.kind));
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &workload.namespace, &resource);
        self.within(
            &format!("patching {workload}"),
            api.patch(
                &workload.name,
                &PatchParams::default(),
                &Patch::Json::<()>(json_patch::Patch(operations)),
            ),
        )
        .await?
        .map_err(|e| anyhow::anyhow!("patching {workload}: {e}"))?;
        Ok(true)
    }

    /// The reference to a workload with its uid (read, bounded), so `kubectl describe` shows
    /// Events about it; `None` for kinds selfheal does not read or when it cannot be read.
    async fn workload_reference(&self, workload: &Workload) -> Option<ObjectReference> {
        workload_group(&workload.kind)?;
        match self.get_workload(workload).await {
            Ok(Some(object)) => Some(workload_ref(workload, &object)),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%workload, error = %format!("{error:#}"), "could not read the workload for its Event");
                None
            }
        }
    }

    /// Publishes an Event about `regarding` (`related`: a second object it concerns). One
    /// Recorder aggregates repeats into a series by (type, action, reason, regarding, related);
    /// the action carries a fingerprint of the note, so a repeat of the same note counts up
    /// while a new note (a raise to a new value) is a new Event with its own note.
    async fn event(
        &self,
        regarding: &ObjectReference,
        related: Option<ObjectReference>,
        type_: EventType,
        reason: &str,
        note: &str,
    ) {
        if self.dry_run {
            return;
        }
        let note = crate::text::truncate(note, 1000);
        let event = Event {
            type_,
            reason: reason.to_string(),
            action: format!("Heal-{:016x}", fingerprint(&note)),
            note: Some(note),
            secondary: related,
        };
        let publish = self.recorder.publish(&event, regarding);
        match tokio::time::timeout(self.call_timeout, publish).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, reason, "could not publish an Event"),
            Err(_) => tracing::warn!(
                reason,
                "could not publish an Event within {:?}",
                self.call_timeout
            ),
        }
    }
}

fn fingerprint(text: &str) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// The API group of the workload kinds selfheal reads and changes.
fn workload_group(kind: &str) -> Option<&'static str> {
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" => Some("apps"),
        "CronJob" => Some("batch"),
        _ => None,
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

/// The object a finding is about (a pod, a claim, a Secret), with its uid.
fn subject_ref(finding: &Finding) -> ObjectReference {
    let problem = &finding.problem;
    object_ref(
        "v1",
        problem.object_kind,
        &problem.namespace,
        &problem.object_name,
        Some(&problem.uid),
    )
}

/// The subject as `related` when it is a pod (an Event about a workload, a claim).
fn related_pod(finding: &Finding) -> Option<ObjectReference> {
    (finding.problem.object_kind == "Pod").then(|| subject_ref(finding))
}

/// The reference to a workload as read (its uid included).
fn workload_ref(workload: &Workload, object: &DynamicObject) -> ObjectReference {
    let group = workload_group(&workload.kind).unwrap_or("apps");
    object_ref(
        &format!("{group}/v1"),
        &workload.kind,
        &workload.namespace,
        &workload.name,
        object.metadata.uid.as_deref(),
    )
}

/// Default spacing of repeated actions on one target.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);
/// Longest backoff between repeated actions on one target.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
