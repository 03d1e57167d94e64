//! The rails on every object an action changes, through the whole handling (facts read, one
//! decision by `plan`, the executor carrying it out) against the test API server: every action
//! kind against targets in a protected namespace, an object labelled `selfheal.io/ignore=true`,
//! a namespace so labelled and an unwatched namespace changes nothing and reports the refusal;
//! the same target in a watched namespace is acted on (so the table cannot pass by never
//! acting). Also the refusals the cluster makes: an eviction refused by a PodDisruptionBudget, a
//! client retrying a 429, an API call that never answers.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};
use support::fake_apiserver::{Collection, FakeApiServer};

use selfheal::certs::check::CertIssue;
use selfheal::core::owners::Workload;
use selfheal::core::targeting::Targeting;
use selfheal::heal::detect::{Problem, ProblemKind};
use selfheal::heal::diagnose::{Cause, Diagnosis, Source};
use selfheal::heal::execute::Executor;
use selfheal::heal::facts::Reader;
use selfheal::heal::inspect::{ClusterView, Finding};
use selfheal::heal::plan::Rails;
use selfheal::heal::ratelimit::RateLimiter;
use selfheal::heal::run::{Handled, Healing};
use selfheal::metrics::Metrics;
use selfheal::store::{ConfigMapStore, FixStore};

/// The caller's namespace, and the one watched namespace without labels.
const SHOP: &str = "shop";
const IGNORED_NS: &str = "quiet";
const UNWATCHED: &str = "elsewhere";
const PROTECTED: &str = "kube-system";

fn rails() -> Rails {
    Rails {
        targeting: Targeting::new(
            vec![PROTECTED.into(), "selfheal".into()],
            vec![SHOP.into(), IGNORED_NS.into()],
        ),
        ..Rails::default()
    }
}

/// Where the target lives, and what the rails should answer.
#[derive(Debug, Clone, Copy)]
enum Case {
    Allowed,
    Protected,
    IgnoredObject,
    IgnoredNamespace,
    Unwatched,
}

impl Case {
    const ALL: [Case; 5] = [
        Case::Allowed,
        Case::Protected,
        Case::IgnoredObject,
        Case::IgnoredNamespace,
        Case::Unwatched,
    ];

    fn namespace(self) -> &'static str {
        match self {
            Case::Allowed | Case::IgnoredObject => SHOP,
            Case::Protected => PROTECTED,
            Case::IgnoredNamespace => IGNORED_NS,
            Case::Unwatched => UNWATCHED,
        }
    }

    fn object_labels(self) -> Value {
        match self {
            Case::IgnoredObject => json!({"selfheal.io/ignore": "true"}),
            _ => json!({}),
        }
    }

    /// Whether the object that shows the problem (the pod, the Secret) is itself opted out
    /// where `action` is wanted: then selfheal acts nowhere and says so (a report), before any
    /// target is looked at. The dependency's caller is never opted out (it lives in `shop`).
    fn opts_out_the_subject(self, action: Action) -> bool {
        match self {
            Case::IgnoredNamespace => !matches!(action, Action::RestartDependency),
            Case::IgnoredObject => matches!(action, Action::EvictPod | Action::DeletePod),
            _ => false,
        }
    }

    fn rail(self) -> Option<&'static str> {
        match self {
            Case::Allowed => None,
            Case::Protected => Some("protected_namespace"),
            Case::IgnoredObject => Some("ignored_object"),
            Case::IgnoredNamespace => Some("ignored_namespace"),
            Case::Unwatched => Some("unwatched_namespace"),
        }
    }
}

/// Every action kind that changes something in the cluster.
#[derive(Debug, Clone, Copy)]
enum Action {
    RaiseMemory,
    RaiseStorage,
    EvictPod,
    DeletePod,
    RestartDependency,
    RenewCertificate,
}

impl Action {
    const ALL: [Action; 6] = [
        Action::RaiseMemory,
        Action::RaiseStorage,
        Action::EvictPod,
        Action::DeletePod,
        Action::RestartDependency,
        Action::RenewCertificate,
    ];
}

fn namespaces(server: &FakeApiServer) {
    for name in [SHOP, UNWATCHED, PROTECTED] {
        server.put(
            &Collection::core("", "namespaces"),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        );
    }
    server.put(
        &Collection::core("", "namespaces"),
        json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": IGNORED_NS, "labels": {"selfheal.io/ignore": "true"}}}),
    );
}

fn deployment(namespace: &str, name: &str, labels: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1",
                    "resources": {"limits": {"memory": "512Mi"}}}]}}}})
}

/// A pod of Deployment `name`, ready or not, its container limited to 512Mi.
fn pod(namespace: &str, name: &str, suffix: &str, ready: bool, labels: Value) -> Value {
    let mut all_labels = json!({"app": name, "pod-template-hash": "5d4c3b2a1"});
    for (key, value) in labels.as_object().into_iter().flatten() {
        all_labels[key] = value.clone();
    }
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{name}-5d4c3b2a1-{suffix}"), "namespace": namespace,
            "labels": all_labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": format!("{name}-5d4c3b2a1"), "uid": "rs", "controller": true}]},
        "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1",
            "resources": {"limits": {"memory": "512Mi"}}}]},
        "status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

fn image_pull() -> ProblemKind {
    ProblemKind::ImagePull {
        container: "app".into(),
        reason: "ImagePullBackOff".into(),
        message: None,
    }
}

fn crashloop() -> ProblemKind {
    ProblemKind::CrashLoopBackOff {
        container: "app".into(),
        init: false,
        restart_count: 3,
        exit_code: Some(1),
        message: None,
    }
}

fn diagnosis(cause: Cause, endpoint: Option<(String, u16)>) -> Diagnosis {
    Diagnosis {
        cause,
        evidence: "the line that showed it".into(),
        source: Source::PreviousLogs,
        endpoint,
        missing: None,
    }
}

fn labels_of(object: &Value) -> std::collections::BTreeMap<String, String> {
    serde_json::from_value(object["metadata"]["labels"].clone()).unwrap_or_default()
}

/// The finding about a stored pod.
fn pod_finding(pod: &Value, kind: ProblemKind, diagnosis: Diagnosis) -> Finding {
    let namespace = pod["metadata"]["namespace"].as_str().unwrap().to_string();
    let name = pod["metadata"]["labels"]["app"]
        .as_str()
        .unwrap()
        .to_string();
    Finding {
        problem: Problem {
            namespace: namespace.clone(),
            object_kind: "Pod",
            object_name: pod["metadata"]["name"].as_str().unwrap().into(),
            uid: pod["metadata"]["uid"].as_str().unwrap().into(),
            kind,
        },
        diagnosis,
        workload: Some(Workload {
            kind: "Deployment".into(),
            namespace,
            name,
        }),
        labels: labels_of(pod),
    }
}

/// Builds the objects for `action` with its target placed as `case` says; answers the finding
/// (the problem and diagnosis that call for that action) and the collections that must not
/// change when the rails refuse.
fn scene(server: &FakeApiServer, action: Action, case: Case) -> (Finding, Vec<Collection>) {
    namespaces(server);
    let ns = case.namespace();
    match action {
        Action::RaiseMemory => {
            server.put(
                &Collection::apps(ns, "deployments"),
                deployment(ns, "web", case.object_labels()),
            );
            let pod = server.put(
                &Collection::core(ns, "pods"),
                pod(ns, "web", "a1b2c", false, json!({})),
            );
            let finding = pod_finding(&pod, crashloop(), diagnosis(Cause::OutOfMemory, None));
            (finding, vec![Collection::apps(ns, "deployments")])
        }
        Action::RaiseStorage => {
            server.put(
                &Collection::new("apis/storage.k8s.io/v1", "", "storageclasses"),
                json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                    "metadata": {"name": "fast"}, "provisioner": "csi.example.com",
                    "allowVolumeExpansion": true}),
            );
            server.put(
                &Collection::core(ns, "persistentvolumeclaims"),
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": "data", "namespace": ns, "labels": case.object_labels()},
                    "spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "10Gi"}}},
                    "status": {"phase": "Bound"}}),
            );
            let mut db = pod(ns, "db", "d15k0", false, json!({}));
            db["spec"]["volumes"] =
                json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]);
            let pod = server.put(&Collection::core(ns, "pods"), db);
            let finding = pod_finding(&pod, crashloop(), diagnosis(Cause::NoSpaceLeft, None));
            (
                finding,
                vec![Collection::core(ns, "persistentvolumeclaims")],
            )
        }
        Action::EvictPod | Action::DeletePod => {
            let pod = server.put(
                &Collection::core(ns, "pods"),
                pod(ns, "web", "a1b2c", false, case.object_labels()),
            );
            let finding = match action {
                Action::EvictPod => pod_finding(&pod, crashloop(), diagnosis(Cause::Unknown, None)),
                _ => pod_finding(&pod, image_pull(), diagnosis(Cause::RegistryTimeout, None)),
            };
            (finding, vec![Collection::core(ns, "pods")])
        }
        Action::RestartDependency => {
            // The caller is always an ordinary tenant pod; the dependency is the target.
            let caller = server.put(
                &Collection::core(SHOP, "pods"),
                pod(SHOP, "web", "c4ll3", false, json!({})),
            );
            server.put(
                &Collection::apps(ns, "deployments"),
                deployment(ns, "dns", case.object_labels()),
            );
            server.put(
                &Collection::core(ns, "services"),
                json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "dns", "namespace": ns},
                    "spec": {"selector": {"app": "dns"}, "ports": [{"port": 53}]}}),
            );
            server.put(
                &Collection::core(ns, "pods"),
                pod(ns, "dns", "d0wn0", false, json!({})),
            );
            let host = format!("dns.{ns}.svc");
            let finding = pod_finding(
                &caller,
                crashloop(),
                diagnosis(Cause::ConnectionRefused, Some((host.clone(), 53))),
            );
            (finding, vec![Collection::apps(ns, "deployments")])
        }
        Action::RenewCertificate => {
            let certificates = Collection::new("apis/cert-manager.io/v1", ns, "certificates");
            server.put(
                &certificates,
                json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                    "metadata": {"name": "site", "namespace": ns, "labels": case.object_labels()},
                    "spec": {"secretName": "site-tls"},
                    "status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
            );
            let secret = server.put(
                &Collection::core(ns, "secrets"),
                json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                    "metadata": {"name": "site-tls", "namespace": ns}}),
            );
            let finding = Finding {
                problem: Problem {
                    namespace: ns.into(),
                    object_kind: "Secret",
                    object_name: "site-tls".into(),
                    uid: secret["metadata"]["uid"].as_str().unwrap().into(),
                    kind: ProblemKind::Certificate {
                        issue: CertIssue::Expired {
                            not_after: "2026-11-01T00:00:00Z".into(),
                        },
                        managed_by: Some("site".into()),
                    },
                },
                diagnosis: diagnosis(Cause::Unknown, None),
                workload: None,
                labels: Default::default(),
            };
            (finding, vec![certificates])
        }
    }
}

/// How the API server answers an eviction.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Evictions {
    /// The pod goes; the answer is a `Status` of success, as the apiserver's.
    Granted,
    /// 429 TooManyRequests naming the PodDisruptionBudget `web-pdb`, as the apiserver's.
    RefusedByBudget,
}

/// The test API server's router with the eviction subresource answered as the apiserver does;
/// `evictions` counts the eviction requests that reach it.
fn router(server: &FakeApiServer, answer: Evictions, evictions: Arc<AtomicUsize>) -> Router {
    let pods = server.clone();
    let evict = move |Path((namespace, name)): Path<(String, String)>| async move {
        evictions.fetch_add(1, Ordering::SeqCst);
        match answer {
            Evictions::Granted => {
                pods.remove(&Collection::core(&namespace, "pods"), &name);
                (
                    StatusCode::CREATED,
                    axum::Json(json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Success", "code": 201})),
                )
            }
            Evictions::RefusedByBudget => (
                StatusCode::TOO_MANY_REQUESTS,
                axum::Json(json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "code": 429, "reason": "TooManyRequests",
                    "message": "Cannot evict pod as it would violate the pod's disruption budget.",
                    "details": {"causes": [{"reason": "DisruptionBudget",
                        "message": "The disruption budget web-pdb needs 1 healthy pods and has 1 currently"}]}})),
            ),
        }
    };
    Router::new()
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}/eviction",
            post(evict),
        )
        .fallback_service(server.router())
}

fn executor(server: &FakeApiServer) -> Executor {
    executor_with(
        kube::Client::new(
            router(server, Evictions::Granted, Arc::default()),
            "default",
        ),
        false,
    )
}

fn executor_with(client: kube::Client, dry_run: bool) -> Executor {
    executor_counting(client, dry_run, Arc::new(Metrics::new()))
}

fn executor_counting(client: kube::Client, dry_run: bool, metrics: Arc<Metrics>) -> Executor {
    let store = FixStore::ConfigMap(Arc::new(ConfigMapStore::new(
        client.clone(),
        "selfheal",
        "fixes",
        metrics.clone(),
    )));
    let limiter = Arc::new(RateLimiter::new(
        Duration::from_secs(300),
        Duration::from_secs(3600),
    ));
    Executor::new(client, store, limiter, metrics, dry_run)
}

/// One handling of `finding` through `executor`: its facts read from the server (the view holds
/// what the server holds of its namespace), one decision, carried out.
async fn handle(server: &FakeApiServer, executor: &Executor, finding: &Finding) -> Handled {
    let namespace = &finding.problem.namespace;
    let typed = |plural: &str| -> Vec<Value> { server.list(&Collection::core(namespace, plural)) };
    let view = ClusterView {
        pods: typed("pods")
            .into_iter()
            .map(|p| serde_json::from_value(p).unwrap())
            .collect(),
        claims: typed("persistentvolumeclaims")
            .into_iter()
            .map(|c| serde_json::from_value(c).unwrap())
            .collect(),
        ..ClusterView::default()
    };
    let rails = rails();
    let healing = Healing {
        executor,
        rails: &rails,
        index: Default::default(),
        cluster: Default::default(),
        now: jiff::Timestamp::now(),
    };
    let mut reader = Reader::new(executor.client(), executor.call_timeout());
    let mut handled = healing
        .heal(&mut reader, &view, vec![finding.clone()])
        .await;
    handled.remove(0)
}

fn events(server: &FakeApiServer, namespace: &str) -> Vec<Value> {
    server.list(&Collection::new(
        "apis/events.k8s.io/v1",
        namespace,
        "events",
    ))
}

#[tokio::test]
async fn every_action_is_refused_on_a_protected_ignored_or_unwatched_target() {
    for action in Action::ALL {
        for case in Case::ALL {
            let server = FakeApiServer::new();
            let (finding, guarded) = scene(&server, action, case);
            let before: Vec<Vec<Value>> = guarded.iter().map(|c| server.list(c)).collect();
            let metrics = Arc::new(Metrics::new());
            let client = kube::Client::new(
                router(&server, Evictions::Granted, Arc::default()),
                "default",
            );
            let executor = executor_counting(client, false, metrics.clone());
            let handled = handle(&server, &executor, &finding).await;
            let outcome = &handled.outcome;
            let label = format!("{action:?} in {case:?}: {:?}", handled.decision);
            let after: Vec<Vec<Value>> = guarded.iter().map(|c| server.list(c)).collect();
            let fixes = server.get(&Collection::core("selfheal", "configmaps"), "fixes");
            match case.rail() {
                None => {
                    assert_eq!(outcome.result(), "done", "{label}");
                    assert_ne!(before, after, "the allowed target is changed: {label}");
                }
                Some(_) if case.opts_out_the_subject(action) => {
                    assert_eq!(
                        (handled.action(), outcome.result()),
                        ("Report", "reported"),
                        "{label}"
                    );
                    assert!(
                        outcome.message().contains("selfheal.io/ignore=true"),
                        "{label}"
                    );
                    assert_eq!(before, after, "nothing is changed: {label}");
                    assert!(fixes.is_none(), "no fix is recorded: {label}");
                    let subject = &finding.problem;
                    let reported = events(&server, &subject.namespace);
                    assert!(
                        reported.iter().any(|e| e["reason"] == "NotActing"
                            && e["regarding"]["uid"] == subject.uid.as_str()),
                        "a NotActing Event about the subject: {label}"
                    );
                }
                Some(rail) => {
                    assert_eq!(
                        (outcome.result(), outcome.rail().map(|r| r.as_str())),
                        ("refused", Some(rail)),
                        "{label}"
                    );
                    assert_eq!(before, after, "nothing is changed: {label}");
                    assert!(fixes.is_none(), "no fix is recorded: {label}");
                    let subject = &finding.problem;
                    let reported = events(&server, &subject.namespace);
                    let refusal = reported
                        .iter()
                        .find(|e| e["reason"] == "NotActing")
                        .unwrap_or_else(|| panic!("a NotActing Event: {label}"));
                    assert_eq!(refusal["note"], outcome.message().as_str(), "{label}");
                    assert_eq!(refusal["regarding"]["uid"], subject.uid.as_str(), "{label}");
                    // The refused object is named as `related`, by uid (the pod itself for
                    // evictions and deletions, where it is the subject already).
                    match action {
                        Action::EvictPod | Action::DeletePod => {
                            assert!(refusal["related"].is_null(), "{label}")
                        }
                        _ => assert_eq!(
                            refusal["related"]["uid"], before[0][0]["metadata"]["uid"],
                            "{label}"
                        ),
                    }
                    let counted = format!(
                        "selfheal_healing_actions_total{{action=\"{}\",result=\"refused\",rail=\"{rail}\"}} 1",
                        handled.action()
                    );
                    assert!(
                        metrics.encode().contains(&counted),
                        "{label}: {counted} in\n{}",
                        metrics.encode()
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn a_dependency_with_a_ready_replica_is_not_restarted() {
    let server = FakeApiServer::new();
    let (finding, guarded) = scene(&server, Action::RestartDependency, Case::Allowed);
    // A rollout in progress: one new pod not ready, one old pod still serving.
    server.put(
        &Collection::core(SHOP, "pods"),
        pod(SHOP, "dns", "r34dy", true, json!({})),
    );
    let before = server.list(&guarded[0]);
    let outcome = handle(&server, &executor(&server), &finding).await.outcome;
    assert_eq!(
        (outcome.result(), outcome.rail().map(|r| r.as_str())),
        ("refused", Some("dependency_ready")),
        "{outcome:?}"
    );
    assert_eq!(server.list(&guarded[0]), before);
}

#[tokio::test]
async fn dry_run_changes_nothing_and_still_applies_the_rails() {
    for case in [Case::Allowed, Case::Protected] {
        let server = FakeApiServer::new();
        let (finding, guarded) = scene(&server, Action::RestartDependency, case);
        let before = server.list(&guarded[0]);
        let dry = executor_with(server.client(), true);
        let outcome = handle(&server, &dry, &finding).await.outcome;
        let expected = match case {
            Case::Allowed => "dry_run",
            _ => "refused",
        };
        assert_eq!(outcome.result(), expected, "{outcome:?}");
        assert_eq!(server.list(&guarded[0]), before);
        assert!(events(&server, SHOP).is_empty(), "dry run writes no Event");
    }
}

#[tokio::test]
async fn an_eviction_refused_by_a_budget_is_reported_at_once_and_not_retried() {
    let server = FakeApiServer::new();
    let (finding, _) = scene(&server, Action::EvictPod, Case::Allowed);
    let evictions = Arc::new(AtomicUsize::new(0));
    let client = kube::Client::new(
        router(&server, Evictions::RefusedByBudget, evictions.clone()),
        "default",
    );
    let executor = executor_with(client, false);

    let outcome = handle(&server, &executor, &finding).await.outcome;
    assert_eq!(
        (outcome.result(), outcome.rail().map(|r| r.as_str())),
        ("refused", Some("disruption_budget")),
        "{outcome:?}"
    );
    assert!(
        outcome
            .message()
            .contains("The disruption budget web-pdb needs 1 healthy pods"),
        "the budget's own reason: {}",
        outcome.message()
    );
    assert_eq!(evictions.load(Ordering::SeqCst), 1, "asked once, no retry");
    assert!(
        server
            .get(
                &Collection::core(SHOP, "pods"),
                &finding.problem.object_name
            )
            .is_some()
    );
    let refusal = events(&server, SHOP)
        .into_iter()
        .find(|e| e["reason"] == "NotActing")
        .expect("a NotActing Event");
    assert_eq!(refusal["note"], outcome.message().as_str());
    assert_eq!(refusal["regarding"]["uid"], finding.problem.uid.as_str());

    // The next attempt waits for the backoff instead of asking again.
    let again = handle(&server, &executor, &finding).await.outcome;
    assert_eq!(again.result(), "rate_limited", "{again:?}");
    assert_eq!(evictions.load(Ordering::SeqCst), 1);
}

/// kube 5's default client stack (`Config::default_retry`, on by default) retries 429, 503 and
/// 504 answers up to 15 times with exponential backoff (`RetryPolicy::server_retry()`): a
/// budget's refusal would be asked again for minutes. The executor's per-call timeout bounds
/// that: the action fails (and is retried later) instead of stalling everything behind it.
#[tokio::test]
async fn the_default_clients_retry_of_a_429_is_bounded_by_the_call_timeout() {
    use kube::client::retry::RetryPolicy;
    use tower::ServiceBuilder;
    use tower::retry::RetryLayer;

    let server = FakeApiServer::new();
    let (finding, _) = scene(&server, Action::EvictPod, Case::Allowed);
    let evictions = Arc::new(AtomicUsize::new(0));
    let retrying = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::server_retry()))
        .map_err(|never: std::convert::Infallible| -> tower::BoxError { match never {} })
        .service(router(
            &server,
            Evictions::RefusedByBudget,
            evictions.clone(),
        ));
    let executor = executor_with(kube::Client::new(retrying, "default"), false)
        .with_call_timeout(Duration::from_secs(1));

    let outcome = handle(&server, &executor, &finding).await.outcome;
    assert_eq!(outcome.result(), "failed", "{outcome:?}");
    assert!(
        outcome.message().contains("evicting pod")
            && outcome.message().contains("no answer within"),
        "{}",
        outcome.message()
    );
    assert!(
        evictions.load(Ordering::SeqCst) > 1,
        "the retry layer asked again by itself"
    );
}

#[tokio::test]
async fn a_hung_api_call_ends_the_action_at_the_call_timeout() {
    let server = FakeApiServer::new();
    let (finding, guarded) = scene(&server, Action::RestartDependency, Case::Allowed);
    // The namespace read (the rails' facts) never answers.
    let hanging = Router::new()
        .route(
            "/api/v1/namespaces/{name}",
            axum::routing::get(std::future::pending::<StatusCode>),
        )
        .fallback_service(server.router());
    let executor = executor_with(kube::Client::new(hanging, "default"), false)
        .with_call_timeout(Duration::from_millis(200));
    let before = server.list(&guarded[0]);

    let outcome = handle(&server, &executor, &finding).await.outcome;
    assert_eq!(outcome.result(), "failed", "{outcome:?}");
    assert!(
        outcome
            .message()
            .contains("reading namespace shop: no answer within"),
        "{}",
        outcome.message()
    );
    assert_eq!(
        server.list(&guarded[0]),
        before,
        "not acted on without the facts"
    );
}
