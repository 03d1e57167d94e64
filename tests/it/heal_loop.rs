//! The whole loop against the in-process test API server, with selfheal's webhook wired in as
//! the server's admission hook: DETECT → DIAGNOSE → FIX → PERSIST, then a second run that must
//! change nothing.

use crate::support;

use support::eventually;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::fake_apiserver::{Collection, FakeApiServer};

use selfheal::core::document::FixDocument;
use selfheal::core::index::FixIndex;
use selfheal::heal::execute::{Executor, RESTART_ANNOTATION};
use selfheal::heal::plan::Rails;
use selfheal::heal::ratelimit::RateLimiter;
use selfheal::heal::run::{self as heal, Handled, Scope};
use selfheal::metrics::Metrics;
use selfheal::store::{ConfigMapStore, FixStore, Snapshot};
use selfheal::webhook::mutate::{self, Operation, Policy, Request};
use selfheal::webhook::target::WorkloadKind;

const NS: &str = "shop";

struct Cluster {
    server: FakeApiServer,
    store: FixStore,
    snapshot: Snapshot,
    /// One executor per mode for the cluster's life, as in the watcher: one Event recorder, one
    /// rate limiter.
    live: Executor,
    dry: Executor,
    _sync: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self._sync.abort();
    }
}

/// A fake cluster whose API server runs selfheal's admission decision on every write.
fn cluster() -> Cluster {
    cluster_with_ratio(None)
}

/// The same, with a LimitRange memory `maxLimitRequestRatio` known to the webhook.
fn cluster_with_ratio(memory_ratio: Option<f64>) -> Cluster {
    let server = FakeApiServer::new();
    let metrics = Arc::new(Metrics::new());
    let store = FixStore::ConfigMap(Arc::new(ConfigMapStore::new(
        server.client(),
        "selfheal",
        "fixes",
        metrics,
    )));
    let snapshot = store.snapshot();
    let sync = store.spawn_sync();
    let webhook_snapshot = snapshot.clone();
    server.set_admission(Arc::new(
        move |collection: &Collection, operation: &str, object: &mut Value| {
            let group = collection
                .prefix
                .strip_prefix("apis/")
                .and_then(|p| p.split('/').next())
                .unwrap_or("");
            let Some(kind) =
                WorkloadKind::from_group_kind(group, object["kind"].as_str().unwrap_or_default())
            else {
                return;
            };
            let operation = if operation == "CREATE" {
                Operation::Create
            } else {
                Operation::Update
            };
            let original = object.clone();
            let request = Request {
                kind,
                operation,
                namespace: &collection.namespace,
                object: &original,
                memory_cap: None,
                memory_ratio,
            };
            let policy = Policy {
                protected_namespaces: vec!["kube-system".into(), "selfheal".into()],
            };
            let mutation = mutate::mutate(&request, &webhook_snapshot.current(), &policy);
            json_patch::patch(object, &mutation.patch).expect("webhook patch applies");
        },
    ));
    let limiter = Arc::new(RateLimiter::new(
        Duration::from_secs(300),
        Duration::from_secs(3600),
    ));
    let executor = |dry_run| {
        Executor::new(
            server.client(),
            store.clone(),
            limiter.clone(),
            Arc::new(Metrics::new()),
            dry_run,
        )
    };
    Cluster {
        live: executor(false),
        dry: executor(true),
        server,
        store,
        snapshot,
        _sync: sync,
    }
}

impl Cluster {
    async fn heal(&self, dry_run: bool, rails: &Rails) -> Vec<Handled> {
        let executor = if dry_run { &self.dry } else { &self.live };
        self.heal_with(executor, rails).await
    }

    /// One `heal` run through `executor`.
    async fn heal_with(&self, executor: &Executor, rails: &Rails) -> Vec<Handled> {
        let client = self.server.client();
        let document = self.store.read_document().await.unwrap();
        let index = FixIndex::new(document.fixes().cloned());
        let scope = Scope {
            protected: vec!["kube-system".into(), "selfheal".into()],
            ..Scope::default()
        };
        heal::run_once(
            &client,
            executor,
            rails,
            Arc::new(index),
            &scope,
            jiff::Timestamp::now(),
        )
        .await
        .unwrap()
    }

    fn fixes(&self) -> FixDocument {
        let configmap = self
            .server
            .get(&Collection::core("selfheal", "configmaps"), "fixes");
        let yaml = configmap.map(|c| {
            c["data"]["fixes.yaml"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        });
        FixDocument::parse(&yaml.unwrap_or_default()).unwrap()
    }

    fn deployment(&self, name: &str) -> Value {
        self.server
            .get(&Collection::apps(NS, "deployments"), name)
            .expect("deployment")
    }

    async fn create(&self, collection: Collection, object: Value) -> Value {
        let client = self.server.client();
        let resource = kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            collection
                .prefix
                .strip_prefix("apis/")
                .and_then(|p| p.split('/').next())
                .unwrap_or(""),
            "v1",
            object["kind"].as_str().unwrap(),
        ));
        let api: kube::Api<kube::api::DynamicObject> =
            kube::Api::namespaced_with(client, &collection.namespace, &resource);
        let object: kube::api::DynamicObject = serde_json::from_value(object).unwrap();
        serde_json::to_value(api.create(&Default::default(), &object).await.unwrap()).unwrap()
    }
}

fn deployment(name: &str, memory: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": {"app.kubernetes.io/name": name}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": format!("registry.example.com/{name}:1"),
                    "resources": {"requests": {"memory": "128Mi"}, "limits": {"memory": memory}}}]}}}
    })
}

/// A pod of Deployment `name` (through ReplicaSet `name-5d4c3b2a1`), with container status `status`.
fn pod(name: &str, suffix: &str, memory: &str, status: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{name}-5d4c3b2a1-{suffix}"), "namespace": NS,
            "labels": {"app": name, "pod-template-hash": "5d4c3b2a1", "app.kubernetes.io/name": name},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{name}-5d4c3b2a1"),
                "uid": "rs-uid", "controller": true}]},
        "spec": {"containers": [{"name": "app", "image": format!("registry.example.com/{name}:1"),
            "resources": {"requests": {"memory": "128Mi"}, "limits": {"memory": memory}}}]},
        "status": status
    })
}

fn oom_status(restarts: i32) -> Value {
    json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [{"name": "app", "ready": false, "restartCount": restarts, "image": "x", "imageID": "",
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled",
                "startedAt": "2026-11-28T00:01:00Z", "finishedAt": "2026-11-28T00:02:00Z"}}}]})
}

fn container_limit(object: &Value, pointer: &str) -> String {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn oom_kill_becomes_a_persisted_fix_a_restart_and_a_patched_new_pod() {
    let c = cluster();
    c.create(
        Collection::apps(NS, "deployments"),
        deployment("web", "512Mi"),
    )
    .await;
    c.server.put(
        &Collection::core(NS, "pods"),
        pod("web", "a1b2c", "512Mi", oom_status(2)),
    );
    let rails = Rails::default();

    // Dry run: decides, changes nothing.
    let dry = c.heal(true, &rails).await;
    assert_eq!(dry.len(), 1);
    assert_eq!(
        (dry[0].action(), dry[0].outcome.result()),
        ("RaiseMemory", "dry_run")
    );
    assert!(
        c.server
            .get(&Collection::core("selfheal", "configmaps"), "fixes")
            .is_none()
    );
    assert!(
        c.deployment("web")
            .pointer(&format!(
                "/spec/template/metadata/annotations/{}",
                RESTART_ANNOTATION.replace('/', "~1")
            ))
            .is_none()
    );

    // The real run: fix persisted, workload rolled with the fix in its template.
    let handled = c.heal(false, &rails).await;
    assert_eq!(
        (handled[0].action(), handled[0].outcome.result()),
        ("RaiseMemory", "done"),
        "{:?}",
        handled[0].outcome
    );
    let fixes = c.fixes();
    let fix = fixes.fixes().next().expect("fix persisted");
    assert_eq!((fix.namespace.as_str(), fix.resource.as_str()), (NS, "web"));
    assert_eq!(fix.container.as_deref(), Some("app"));
    assert_eq!(fix.value.as_str(), "768Mi");
    assert_eq!(fix.previous.as_deref(), Some("512Mi"));
    assert!(
        fix.evidence
            .as_deref()
            .unwrap_or_default()
            .contains("OOMKilled")
    );
    let rolled = c.deployment("web");
    assert_eq!(
        container_limit(
            &rolled,
            "/spec/template/spec/containers/0/resources/limits/memory"
        ),
        "768Mi"
    );
    assert!(rolled["spec"]["template"]["metadata"]["annotations"][RESTART_ANNOTATION].is_string());
    let events = c
        .server
        .list(&Collection::new("apis/events.k8s.io/v1", NS, "events"));
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "MemoryLimitRaised" && e["regarding"]["kind"] == "Deployment"),
        "{events:?}"
    );

    // The next pod (any redeploy) is admitted through the webhook with the fix.
    eventually("the webhook's snapshot has the fix", || {
        !c.snapshot.current().is_empty()
    })
    .await;
    let created = c
        .create(
            Collection::core(NS, "pods"),
            pod("web", "zz9yy", "512Mi", json!({})),
        )
        .await;
    assert_eq!(
        container_limit(&created, "/spec/containers/0/resources/limits/memory"),
        "768Mi"
    );

    // Second run over the same state: nothing changes.
    let configmap_version = c
        .server
        .get(&Collection::core("selfheal", "configmaps"), "fixes")
        .unwrap()["metadata"]["resourceVersion"]
        .clone();
    let deployment_version = c.deployment("web")["metadata"]["resourceVersion"].clone();
    let again = c.heal(false, &rails).await;
    assert!(
        again.iter().all(|h| h.outcome.result() == "unchanged"),
        "{again:?}"
    );
    assert_eq!(
        c.server
            .get(&Collection::core("selfheal", "configmaps"), "fixes")
            .unwrap()["metadata"]["resourceVersion"],
        configmap_version
    );
    assert_eq!(
        c.deployment("web")["metadata"]["resourceVersion"],
        deployment_version
    );
}

#[tokio::test]
async fn runaway_memory_raises_stop_at_the_cap_with_an_alert() {
    let c = cluster();
    c.create(
        Collection::apps(NS, "deployments"),
        deployment("api", "512Mi"),
    )
    .await;
    let rails = Rails {
        max_memory_raises: 2,
        ..Rails::default()
    };
    let mut limit = "512Mi".to_string();
    let mut raises = Vec::new();
    for round in 0..4 {
        // The same pod (one uid) OOM-killed again and again.
        let mut crashing = pod("api", "p0d", &limit, oom_status(round + 1));
        crashing["metadata"]["uid"] = json!("api-pod-uid");
        c.server.put(&Collection::core(NS, "pods"), crashing);
        let handled = c.heal(false, &rails).await;
        raises.push((handled[0].action(), handled[0].outcome.result()));
        if let Some(fix) = c.fixes().fixes().next() {
            limit = fix.value.to_string();
        }
    }
    assert_eq!(
        raises,
        [
            ("RaiseMemory", "done"),
            ("RaiseMemory", "done"),
            ("Alert", "alerted"),
            ("Alert", "alerted")
        ]
    );
    let fix = c.fixes().fixes().next().cloned().unwrap();
    assert_eq!(
        (fix.value.as_str(), fix.count),
        ("1280Mi", 2),
        "768Mi then 1280Mi, then stop"
    );
    let events = c
        .server
        .list(&Collection::new("apis/events.k8s.io/v1", NS, "events"));
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "HealingStopped" && e["type"] == "Warning")
    );
    // Each raise is its own Event with its own note (not a series keeping the first note),
    // about the Deployment by uid (what `kubectl describe deployment` matches), the pod related.
    let raises: Vec<&Value> = events
        .iter()
        .filter(|e| e["reason"] == "MemoryLimitRaised")
        .collect();
    let notes: Vec<&str> = raises
        .iter()
        .map(|e| e["note"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(raises.len(), 2, "{notes:?}");
    assert!(
        notes.iter().any(|n| n.contains("to 768Mi"))
            && notes.iter().any(|n| n.contains("to 1280Mi")),
        "{notes:?}"
    );
    let deployment_uid = c.deployment("api")["metadata"]["uid"].clone();
    for raise in raises {
        assert_eq!(raise["regarding"]["kind"], "Deployment");
        assert_eq!(raise["regarding"]["uid"], deployment_uid);
        assert_eq!(raise["related"]["kind"], "Pod");
        assert_eq!(raise["related"]["uid"], "api-pod-uid");
    }
}

#[tokio::test]
async fn image_pull_failure_deletes_the_pod_once_per_backoff_window() {
    let c = cluster();
    let status = json!({"phase": "Pending", "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0,
        "image": "registry.example.com/cart:1", "imageID": "",
        "state": {"waiting": {"reason": "ImagePullBackOff",
            "message": "Back-off pulling image \"registry.example.com/cart:1\": rpc error: code = Unknown desc = dial tcp 10.0.0.9:443: i/o timeout"}}}]});
    c.create(
        Collection::apps(NS, "deployments"),
        deployment("cart", "256Mi"),
    )
    .await;
    c.server.put(
        &Collection::core(NS, "pods"),
        pod("cart", "aaaaa", "256Mi", status.clone()),
    );
    let handled = c.heal(false, &Rails::default()).await;
    assert_eq!(
        (handled[0].action(), handled[0].outcome.result()),
        ("DeletePod", "done")
    );
    let retried = c
        .server
        .list(&Collection::new("apis/events.k8s.io/v1", NS, "events"))
        .into_iter()
        .find(|e| e["reason"] == "ImagePullRetried")
        .expect("an ImagePullRetried Event");
    assert_eq!(retried["regarding"]["kind"], "Deployment");
    assert_eq!(
        retried["regarding"]["uid"],
        c.deployment("cart")["metadata"]["uid"]
    );
    assert_eq!(retried["related"]["name"], "cart-5d4c3b2a1-aaaaa");
    assert_eq!(
        handled[0].finding.diagnosis.cause,
        selfheal::heal::diagnose::Cause::RegistryTimeout
    );
    assert!(
        c.server
            .get(&Collection::core(NS, "pods"), "cart-5d4c3b2a1-aaaaa")
            .is_none()
    );

    // The controller's replacement fails the same way: within the window, selfheal waits.
    c.server.put(
        &Collection::core(NS, "pods"),
        pod("cart", "bbbbb", "256Mi", status),
    );
    let again = c.heal(false, &Rails::default()).await;
    assert_eq!(
        (again[0].action(), again[0].outcome.result()),
        ("DeletePod", "rate_limited")
    );
    assert!(
        c.server
            .get(&Collection::core(NS, "pods"), "cart-5d4c3b2a1-bbbbb")
            .is_some()
    );
}

#[tokio::test]
async fn connection_refused_restarts_the_dependency_not_the_caller() {
    let c = cluster();
    c.create(
        Collection::apps(NS, "deployments"),
        deployment("web", "512Mi"),
    )
    .await;
    c.create(Collection::apps(NS, "deployments"), deployment("db", "1Gi"))
        .await;
    c.server.put(&Collection::core(NS, "services"), json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "db", "namespace": NS}, "spec": {"selector": {"app": "db"}, "ports": [{"port": 5432}]}}));
    let crashing = json!({"phase": "Running", "containerStatuses": [{"name": "app", "ready": false, "restartCount": 6,
        "image": "x", "imageID": "", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]});
    c.server.put(
        &Collection::core(NS, "pods"),
        pod("web", "c4ll3", "512Mi", crashing),
    );
    c.server.set_log(NS, "web-5d4c3b2a1-c4ll3", "app", true,
        "2026-11-28T00:00:01Z booting\n2026-11-28T00:00:02Z FATAL: dial tcp db.shop.svc.cluster.local:5432: connect: connection refused\n");
    let unready = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]});
    c.server.put(
        &Collection::core(NS, "pods"),
        pod("db", "d0wn0", "1Gi", unready),
    );

    let handled = c.heal(false, &Rails::default()).await;
    let web = handled
        .iter()
        .find(|h| h.finding.problem.object_name.starts_with("web"))
        .unwrap();
    assert_eq!(
        (web.action(), web.outcome.result()),
        ("RestartDependency", "done"),
        "{:?}",
        web.outcome
    );
    assert_eq!(
        web.finding.diagnosis.endpoint,
        Some(("db.shop.svc.cluster.local".into(), 5432))
    );
    assert!(
        c.deployment("db")["spec"]["template"]["metadata"]["annotations"][RESTART_ANNOTATION]
            .is_string()
    );
    assert!(
        c.deployment("web")["spec"]["template"]["metadata"]["annotations"][RESTART_ANNOTATION]
            .is_null(),
        "never the caller"
    );

    let restarted = c
        .server
        .list(&Collection::new("apis/events.k8s.io/v1", NS, "events"))
        .into_iter()
        .find(|e| e["reason"] == "DependencyRestarted")
        .expect("a DependencyRestarted Event");
    assert_eq!(
        restarted["regarding"]["uid"],
        c.deployment("db")["metadata"]["uid"]
    );
    assert_eq!(restarted["related"]["name"], "web-5d4c3b2a1-c4ll3");

    let again = c.heal(false, &Rails::default()).await;
    let web = again
        .iter()
        .find(|h| h.finding.problem.object_name.starts_with("web"))
        .unwrap();
    assert_eq!(web.outcome.result(), "rate_limited");
}

/// A tenant's log line naming a Service in kube-system, or in a namespace labelled
/// `selfheal.io/ignore=true`, restarts nothing there: the rails apply to the dependency.
#[tokio::test]
async fn a_tenants_log_line_cannot_restart_a_protected_or_ignored_dependency() {
    for (namespace, rail) in [
        ("kube-system", "protected_namespace"),
        ("platform", "ignored_namespace"),
    ] {
        let c = cluster();
        c.server.put(
            &Collection::core("", "namespaces"),
            json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "platform", "labels": {"selfheal.io/ignore": "true"}}}),
        );
        let deployments = Collection::apps(namespace, "deployments");
        let mut dns = deployment("dns", "170Mi");
        dns["metadata"]["namespace"] = json!(namespace);
        c.server.put(&deployments, dns);
        c.server.put(&Collection::core(namespace, "services"), json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "dns", "namespace": namespace}, "spec": {"selector": {"app": "dns"}, "ports": [{"port": 53}]}}));
        let mut down = pod(
            "dns",
            "d0wn0",
            "170Mi",
            json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}]}),
        );
        down["metadata"]["namespace"] = json!(namespace);
        c.server.put(&Collection::core(namespace, "pods"), down);
        let before = c.server.get(&deployments, "dns").unwrap();

        let crashing = json!({"phase": "Running", "containerStatuses": [{"name": "app", "ready": false, "restartCount": 6,
            "image": "x", "imageID": "", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]});
        c.server.put(
            &Collection::core(NS, "pods"),
            pod("web", "t3n4n", "512Mi", crashing),
        );
        c.server.set_log(
            NS,
            "web-5d4c3b2a1-t3n4n",
            "app",
            true,
            &format!("dial tcp dns.{namespace}.svc:53: connect: connection refused\n"),
        );

        let handled = c.heal(false, &Rails::default()).await;
        let web = handled
            .iter()
            .find(|h| h.finding.problem.object_name.starts_with("web"))
            .unwrap();
        assert_eq!(
            (
                web.action(),
                web.outcome.result(),
                web.outcome.rail().map(|r| r.as_str())
            ),
            ("RestartDependency", "refused", Some(rail)),
            "{:?}",
            web.outcome
        );
        assert_eq!(
            c.server.get(&deployments, "dns").unwrap(),
            before,
            "{namespace}"
        );
        let events = c
            .server
            .list(&Collection::new("apis/events.k8s.io/v1", NS, "events"));
        let refusal = events
            .iter()
            .find(|e| e["reason"] == "NotActing")
            .expect("the refusal is an Event on the tenant's pod");
        assert_eq!(refusal["regarding"]["name"], "web-5d4c3b2a1-t3n4n");
        assert_eq!(refusal["related"]["name"], "dns");
        assert_eq!(refusal["related"]["uid"], before["metadata"]["uid"]);
    }
}

/// A pod in a namespace labelled `selfheal.io/ignore=true` makes selfheal act nowhere, not even
/// on a dependency in a namespace that is not opted out.
#[tokio::test]
async fn a_pod_of_an_ignored_namespace_restarts_no_dependency_elsewhere() {
    let c = cluster();
    c.server.put(
        &Collection::core("", "namespaces"),
        json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "tenant", "labels": {"selfheal.io/ignore": "true"}}}),
    );
    c.create(Collection::apps(NS, "deployments"), deployment("db", "1Gi"))
        .await;
    c.server.put(&Collection::core(NS, "services"), json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "db", "namespace": NS}, "spec": {"selector": {"app": "db"}, "ports": [{"port": 5432}]}}));
    let unready = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]});
    c.server.put(
        &Collection::core(NS, "pods"),
        pod("db", "d0wn0", "1Gi", unready),
    );
    let crashing = json!({"phase": "Running", "containerStatuses": [{"name": "app", "ready": false, "restartCount": 6,
        "image": "x", "imageID": "", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]});
    let mut caller = pod("web", "t3n4n", "512Mi", crashing);
    caller["metadata"]["namespace"] = json!("tenant");
    c.server.put(&Collection::core("tenant", "pods"), caller);
    c.server.set_log(
        "tenant",
        "web-5d4c3b2a1-t3n4n",
        "app",
        true,
        "FATAL: dial tcp db.shop.svc.cluster.local:5432: connect: connection refused\n",
    );
    let before = c.deployment("db");

    let handled = c.heal(false, &Rails::default()).await;
    let web = handled
        .iter()
        .find(|h| h.finding.problem.object_name.starts_with("web"))
        .unwrap();
    assert_eq!(
        web.finding.diagnosis.endpoint,
        Some(("db.shop.svc.cluster.local".into(), 5432)),
        "the diagnosis names the dependency"
    );
    assert_eq!(
        (web.action(), web.outcome.result()),
        ("Report", "reported"),
        "{:?}",
        web.outcome
    );
    assert!(
        format!("{:?}", web.decision)
            .contains("namespace tenant is labelled selfheal.io/ignore=true"),
        "{:?}",
        web.decision
    );
    assert_eq!(
        c.deployment("db"),
        before,
        "the dependency is not restarted"
    );
}

#[tokio::test]
async fn protected_namespaces_and_opted_out_pods_are_left_alone() {
    let c = cluster();
    let mut system = pod("coredns", "k5y5t", "170Mi", oom_status(3));
    system["metadata"]["namespace"] = json!("kube-system");
    c.server
        .put(&Collection::core("kube-system", "pods"), system);
    let mut opted = pod("legacy", "0pt0t", "256Mi", oom_status(3));
    opted["metadata"]["labels"]["selfheal.io/ignore"] = json!("true");
    c.server.put(&Collection::core(NS, "pods"), opted);
    let handled = c.heal(false, &Rails::default()).await;
    assert_eq!(handled.len(), 1, "kube-system is out of scope: {handled:?}");
    assert_eq!(
        (handled[0].action(), handled[0].outcome.result()),
        ("Report", "reported")
    );
    assert!(
        c.server
            .get(&Collection::core("selfheal", "configmaps"), "fixes")
            .is_none()
    );
}

#[tokio::test]
async fn no_space_left_records_a_storage_fix_and_expands_the_claim() {
    let c = cluster();
    c.create(Collection::apps(NS, "deployments"), deployment("db", "1Gi"))
        .await;
    c.server.put(
        &Collection::new("apis/storage.k8s.io/v1", "", "storageclasses"),
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "ssd"},
            "provisioner": "ebs.csi.aws.com", "allowVolumeExpansion": true}),
    );
    c.server.put(
        &Collection::core(NS, "persistentvolumeclaims"),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "db-data", "namespace": NS},
            "spec": {"storageClassName": "ssd", "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}},
            "status": {"phase": "Bound"}}),
    );
    let crashing = json!({"phase": "Running", "containerStatuses": [{"name": "app", "ready": false, "restartCount": 3,
        "image": "x", "imageID": "", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]});
    let mut db = pod("db", "d15k0", "1Gi", crashing);
    db["spec"]["volumes"] =
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": "db-data"}}]);
    c.server.put(&Collection::core(NS, "pods"), db);
    c.server.set_log(NS, "db-5d4c3b2a1-d15k0", "app", true,
        "2026-11-28 10:00:01.123 UTC [1] PANIC:  could not write to file \"pg_wal/xlogtemp.1\": No space left on device\n");

    let handled = c.heal(false, &Rails::default()).await;
    let db = handled
        .iter()
        .find(|h| h.finding.problem.object_kind == "Pod")
        .unwrap();
    assert_eq!(
        (db.action(), db.outcome.result()),
        ("RaiseStorage", "done"),
        "{:?}",
        db.outcome
    );
    let fix = c
        .fixes()
        .fixes()
        .next()
        .cloned()
        .expect("storage fix persisted");
    assert_eq!(
        (fix.resource.as_str(), fix.value.as_str()),
        ("db-data", "15Gi")
    );
    let claim = c
        .server
        .get(&Collection::core(NS, "persistentvolumeclaims"), "db-data")
        .unwrap();
    assert_eq!(
        claim["spec"]["resources"]["requests"]["storage"], "15Gi",
        "the bound claim is expanded"
    );

    let again = c.heal(false, &Rails::default()).await;
    let db = again
        .iter()
        .find(|h| h.finding.problem.object_kind == "Pod")
        .unwrap();
    assert_eq!(db.outcome.result(), "unchanged");
}

#[tokio::test]
async fn the_namespace_limitrange_caps_a_memory_raise() {
    let c = cluster();
    c.create(
        Collection::apps(NS, "deployments"),
        deployment("web", "512Mi"),
    )
    .await;
    c.server.put(
        &Collection::core(NS, "limitranges"),
        json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "limits", "namespace": NS},
            "spec": {"limits": [{"type": "Container", "max": {"memory": "640Mi"}}]}}),
    );
    c.server.put(
        &Collection::core(NS, "pods"),
        pod("web", "a1b2c", "512Mi", oom_status(2)),
    );
    let handled = c.heal(false, &Rails::default()).await;
    assert_eq!(
        handled[0].outcome.result(),
        "done",
        "{:?}",
        handled[0].outcome
    );
    let fix = c.fixes().fixes().next().cloned().unwrap();
    assert_eq!(
        fix.value.as_str(),
        "640Mi",
        "768Mi would exceed the LimitRange maximum"
    );
}

#[tokio::test]
async fn a_rolled_template_obeys_the_limitranges_limit_to_request_ratio() {
    // The webhook knows the ratio (as `serve`'s LimitRange watch makes it), and so must the
    // executor, or the two would fight over the template.
    let c = cluster_with_ratio(Some(5.0));
    c.create(
        Collection::apps(NS, "deployments"),
        deployment("web", "512Mi"),
    )
    .await;
    c.server.put(
        &Collection::core(NS, "pods"),
        pod("web", "a1b2c", "512Mi", oom_status(2)),
    );
    // Request 128Mi and a ratio of 5: the template may reach 640Mi, not the planned 768Mi. The
    // run lists the LimitRange with its view.
    c.server.put(
        &Collection::core(NS, "limitranges"),
        json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "ratio", "namespace": NS},
            "spec": {"limits": [{"type": "Container", "maxLimitRequestRatio": {"memory": "5"}}]}}),
    );
    let handled = c.heal(false, &Rails::default()).await;
    assert_eq!(
        handled[0].outcome.result(),
        "done",
        "{:?}",
        handled[0].outcome
    );
    assert_eq!(
        container_limit(
            &c.deployment("web"),
            "/spec/template/spec/containers/0/resources/limits/memory"
        ),
        "640Mi",
        "768Mi would be refused by the LimitRanger (ratio 5 over a 128Mi request)"
    );
}

fn cronjob(name: &str, memory: &str) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "app", "image": "registry.example.com/backup:1",
                "resources": {"limits": {"memory": memory}}}]}}}}}})
}

#[tokio::test]
async fn an_oom_in_a_cronjobs_job_is_fixed_in_the_cronjob_not_the_running_job() {
    let c = cluster();
    let cronjobs = Collection::new("apis/batch/v1", NS, "cronjobs");
    let jobs = Collection::new("apis/batch/v1", NS, "jobs");
    let created = c.create(cronjobs.clone(), cronjob("backup", "512Mi")).await;
    let template = cronjob("backup", "512Mi")["spec"]["jobTemplate"]["spec"].clone();
    c.server.put(
        &jobs,
        json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "backup-29012345", "namespace": NS,
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "backup",
                    "uid": created["metadata"]["uid"], "controller": true}]},
            "spec": template}),
    );
    let job_before = c.server.get(&jobs, "backup-29012345").unwrap();
    c.server.put(
        &Collection::core(NS, "pods"),
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "backup-29012345-x7k2p", "namespace": NS,
                "labels": {"app": "backup", "job-name": "backup-29012345"},
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "backup-29012345",
                    "uid": job_before["metadata"]["uid"], "controller": true}]},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "app", "image": "registry.example.com/backup:1",
                "resources": {"limits": {"memory": "512Mi"}}}]},
            "status": oom_status(1)}),
    );

    let handled = c.heal(false, &Rails::default()).await;
    assert_eq!(
        (handled[0].action(), handled[0].outcome.result()),
        ("RaiseMemory", "done"),
        "{:?}",
        handled[0].outcome
    );
    let fix = c.fixes().fixes().next().cloned().expect("fix persisted");
    assert_eq!(
        (fix.resource.as_str(), fix.value.as_str()),
        ("backup", "768Mi"),
        "recorded under the CronJob"
    );
    let cronjob_after = c.server.get(&cronjobs, "backup").unwrap();
    assert_eq!(
        container_limit(
            &cronjob_after,
            "/spec/jobTemplate/spec/template/spec/containers/0/resources/limits/memory"
        ),
        "768Mi",
        "the next Job carries the fix"
    );
    assert_eq!(
        c.server.get(&jobs, "backup-29012345").unwrap(),
        job_before,
        "the running Job is not touched"
    );
    let raised = c
        .server
        .list(&Collection::new("apis/events.k8s.io/v1", NS, "events"))
        .into_iter()
        .find(|e| e["reason"] == "MemoryLimitRaised")
        .expect("a MemoryLimitRaised Event");
    assert_eq!(raised["regarding"]["kind"], "CronJob");
    assert_eq!(raised["regarding"]["uid"], created["metadata"]["uid"]);
    assert_eq!(raised["related"]["name"], "backup-29012345-x7k2p");

    // Again over the same state: nothing changes.
    let again = c.heal(false, &Rails::default()).await;
    assert_eq!(
        again[0].outcome.result(),
        "unchanged",
        "{:?}",
        again[0].outcome
    );
    assert_eq!(c.server.get(&cronjobs, "backup").unwrap(), cronjob_after);
}
