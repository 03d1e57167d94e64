//! The watcher and leader election, running against the in-process test API server.

use crate::support;

use support::eventually;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::fake_apiserver::{Collection, FakeApiServer};

use selfheal::cluster::leader::{self, Leadership, LeaseConfig};
use selfheal::core::document::FixDocument;
use selfheal::heal::execute::Executor;
use selfheal::heal::plan::Rails;
use selfheal::heal::ratelimit::RateLimiter;
use selfheal::heal::run::Scope;
use selfheal::heal::watcher::{self, WatcherConfig};
use selfheal::metrics::Metrics;
use selfheal::store::{ConfigMapStore, FixStore};

fn lease(identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: "selfheal".into(),
        name: "selfheal-watcher".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(2),
        renew_every: Duration::from_millis(100),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_and_failover_after_expiry() {
    let server = FakeApiServer::new();
    let metrics = Arc::new(Metrics::new());
    let (a, b) = (Leadership::default(), Leadership::default());
    let task_a = tokio::spawn(leader::campaign(
        server.client(),
        lease("a"),
        a.clone(),
        metrics.clone(),
    ));
    let task_b = tokio::spawn(leader::campaign(
        server.client(),
        lease("b"),
        b.clone(),
        metrics.clone(),
    ));
    eventually("a leader", || a.is_leader() || b.is_leader()).await;
    for _ in 0..10 {
        assert!(!(a.is_leader() && b.is_leader()), "two leaders at once");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (leader_task, follower) = if a.is_leader() {
        (task_a, b.clone())
    } else {
        (task_b, a.clone())
    };
    leader_task.abort();
    eventually("the follower takes over after the lease expires", || {
        follower.is_leader()
    })
    .await;
    let lease = server
        .get(
            &Collection::new("apis/coordination.k8s.io/v1", "selfheal", "leases"),
            "selfheal-watcher",
        )
        .unwrap();
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
}

/// A running watcher (with its store sync and Lease campaign) against `server`; everything stops
/// when it is dropped.
struct Running {
    metrics: Arc<Metrics>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

fn watcher_config(probes: Vec<&str>, probe_interval: Duration) -> WatcherConfig {
    let scope = Scope {
        protected: vec!["kube-system".into(), "selfheal".into()],
        ..Scope::default()
    };
    WatcherConfig {
        certificate_interval: Duration::from_secs(3600),
        probes: probes.into_iter().map(|p| p.parse().unwrap()).collect(),
        probe_interval,
        ..WatcherConfig::new(scope, Rails::default(), Default::default())
    }
}

/// Starts a watcher and waits until it leads.
async fn start(server: &FakeApiServer, limiter: RateLimiter, config: WatcherConfig) -> Running {
    let metrics = Arc::new(Metrics::new());
    let store = FixStore::ConfigMap(Arc::new(ConfigMapStore::new(
        server.client(),
        "selfheal",
        "fixes",
        metrics.clone(),
    )));
    let leadership = Leadership::default();
    let executor = Arc::new(Executor::new(
        server.client(),
        store.clone(),
        Arc::new(limiter),
        metrics.clone(),
        false,
    ));
    let tasks = vec![
        store.spawn_sync(),
        tokio::spawn(leader::campaign(
            server.client(),
            lease("only"),
            leadership.clone(),
            metrics.clone(),
        )),
        tokio::spawn(watcher::run(
            server.client(),
            executor,
            store,
            config,
            leadership.clone(),
            metrics.clone(),
        )),
    ];
    eventually("leadership", || leadership.is_leader()).await;
    Running { metrics, tasks }
}

fn deployment() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "web:1", "resources": {"limits": {"memory": "512Mi"}}}]}}}})
}

fn pod(restarts: i32, oom: bool) -> Value {
    let last = if oom {
        json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}})
    } else {
        json!({})
    };
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-5d4c3b2a1-x1", "namespace": "shop", "uid": "pod-uid-1",
            "labels": {"app": "web", "pod-template-hash": "5d4c3b2a1"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d4c3b2a1", "uid": "rs", "controller": true}]},
        "spec": {"containers": [{"name": "app", "image": "web:1", "resources": {"limits": {"memory": "512Mi"}}}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": "app", "ready": true, "restartCount": restarts,
            "image": "web:1", "imageID": "", "state": {"running": {}}, "lastState": last}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_turning_oomkilled_is_fixed_by_the_leader_only_once() {
    let server = FakeApiServer::new();
    server.put(&Collection::apps("shop", "deployments"), deployment());
    server.put(&Collection::core("shop", "pods"), pod(0, false));
    let running = start(
        &server,
        RateLimiter::new(Duration::from_secs(300), Duration::from_secs(3600)),
        watcher_config(Vec::new(), Duration::from_secs(3600)),
    )
    .await;
    let metrics = running.metrics.clone();

    // The kubelet reports the OOM kill: restart count 1, last state OOMKilled.
    server.put(&Collection::core("shop", "pods"), pod(1, true));
    let fixes = || {
        server
            .get(&Collection::core("selfheal", "configmaps"), "fixes")
            .map(|c| {
                FixDocument::parse(c["data"]["fixes.yaml"].as_str().unwrap_or_default()).unwrap()
            })
    };
    eventually("the fix is written", || {
        fixes().is_some_and(|d| d.fixes().count() == 1)
    })
    .await;
    let fix = fixes().unwrap().fixes().next().cloned().unwrap();
    assert_eq!(
        (fix.resource.as_str(), fix.value.as_str()),
        ("web", "768Mi")
    );
    eventually("the deployment is rolled", || {
        server
            .get(&Collection::apps("shop", "deployments"), "web")
            .unwrap()["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
            == "768Mi"
    })
    .await;

    // The same status again (a resync, an unrelated label change) is not a new OOM kill.
    let version = server
        .get(&Collection::core("selfheal", "configmaps"), "fixes")
        .unwrap()["metadata"]["resourceVersion"]
        .clone();
    let mut relabelled = pod(1, true);
    relabelled["metadata"]["labels"]["team"] = json!("shop");
    server.put(&Collection::core("shop", "pods"), relabelled);
    // A marker after it, of another kind: a bare pod failing its image pull (only reported, the
    // store is not touched). The watch is ordered, so once the marker is counted the relabelled
    // pod has been seen too, and the OOM kill must still be counted once.
    let mut marker = pod(0, false);
    marker["metadata"] = json!({"name": "marker", "namespace": "shop", "uid": "marker-uid"});
    marker["status"]["containerStatuses"][0]["state"] =
        json!({"waiting": {"reason": "ImagePullBackOff"}});
    server.put(&Collection::core("shop", "pods"), marker);
    eventually("the marker is handled", || {
        metrics.encode().contains("problem=\"ImagePullBackOff\"")
    })
    .await;
    assert_eq!(
        server
            .get(&Collection::core("selfheal", "configmaps"), "fixes")
            .unwrap()["metadata"]["resourceVersion"],
        version,
        "the repeated status changed nothing"
    );
    let metrics_text = metrics.encode();
    assert!(
        metrics_text.contains(
            "selfheal_problems_detected_total{problem=\"OOMKilled\",cause=\"out of memory\"} 1"
        ),
        "one OOM kill, counted once: {metrics_text}"
    );
    assert!(metrics_text.contains("selfheal_leader 1"));
    drop(running);
}

fn pulling_pod(suffix: &str, uid: &str, message: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("cart-5d4c3b2a1-{suffix}"), "namespace": "shop", "uid": uid,
            "labels": {"app": "cart", "pod-template-hash": "5d4c3b2a1"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "cart-5d4c3b2a1", "uid": "rs", "controller": true}]},
        "spec": {"containers": [{"name": "app", "image": "registry.example.com/cart:1"}]},
        "status": {"phase": "Pending", "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0,
            "image": "registry.example.com/cart:1", "imageID": "",
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": message}}}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_image_pull_retry_happens_when_the_backoff_ends_with_no_new_event() {
    let server = FakeApiServer::new();
    let running = start(
        &server,
        RateLimiter::new(Duration::from_secs(2), Duration::from_secs(4)),
        watcher_config(Vec::new(), Duration::from_secs(3600)),
    )
    .await;
    let metrics = running.metrics.clone();
    let pods = Collection::core("shop", "pods");
    let timeout = "Back-off pulling image \"registry.example.com/cart:1\": dial tcp 10.0.0.9:443: i/o timeout";

    server.put(&pods, pulling_pod("aaaaa", "uid-a", timeout));
    eventually("the first pod is deleted", || {
        server.get(&pods, "cart-5d4c3b2a1-aaaaa").is_none()
    })
    .await;
    // The controller's replacement fails at once: inside the window, selfheal waits...
    let began = std::time::Instant::now();
    server.put(&pods, pulling_pod("bbbbb", "uid-b", timeout));
    eventually("the retry is refused by the rate limit", || {
        metrics.encode().contains(
            "selfheal_healing_actions_total{action=\"DeletePod\",result=\"rate_limited\",rail=\"\"} 1",
        )
    })
    .await;
    assert!(
        server.get(&pods, "cart-5d4c3b2a1-bbbbb").is_some(),
        "not deleted inside the window"
    );
    // ...and retries by itself when the window ends: the pod's status never changes again.
    eventually("the replacement is deleted when the backoff ends", || {
        server.get(&pods, "cart-5d4c3b2a1-bbbbb").is_none()
    })
    .await;
    assert!(
        began.elapsed() >= Duration::from_millis(1500),
        "the retry waited for the window"
    );
    drop(running);
}

/// A Service `shop/db` on 127.0.0.1:`port` and its Deployment (with `labels`), whose pod is
/// not ready.
fn put_dependency(server: &FakeApiServer, port: u16, labels: Value) {
    server.put(
        &Collection::core("shop", "services"),
        json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "db", "namespace": "shop"},
        "spec": {"clusterIP": "127.0.0.1", "selector": {"app": "db"}, "ports": [{"port": port}]}}),
    );
    server.put(&Collection::apps("shop", "deployments"), json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "db", "namespace": "shop", "labels": labels},
        "spec": {"selector": {"matchLabels": {"app": "db"}}, "template": {"metadata": {"labels": {"app": "db"}},
            "spec": {"containers": [{"name": "db", "image": "postgres:16"}]}}}}));
    server.put(&Collection::core("shop", "pods"), json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "db-5d4c3b2a1-aaaaa", "namespace": "shop", "labels": {"app": "db", "pod-template-hash": "5d4c3b2a1"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "db-5d4c3b2a1", "uid": "rs", "controller": true}]},
        "spec": {"containers": [{"name": "db", "image": "postgres:16"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dependency_probe_restarts_the_not_ready_workload_once_per_outage() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = FakeApiServer::new();
    put_dependency(&server, closed_port, json!({}));
    let probe = format!("shop/db:{closed_port}");
    let running = start(
        &server,
        RateLimiter::new(Duration::ZERO, Duration::ZERO),
        watcher_config(vec![probe.as_str()], Duration::from_millis(100)),
    )
    .await;
    let metrics = running.metrics.clone();
    let annotation = || {
        server
            .get(&Collection::apps("shop", "deployments"), "db")
            .unwrap()["spec"]["template"]["metadata"]["annotations"]["selfheal.io/restarted-for"]
            .as_str()
            .map(String::from)
    };
    eventually("the dependency is restarted", || annotation().is_some()).await;
    assert!(
        annotation().unwrap().contains("down since"),
        "{:?}",
        annotation()
    );
    let version = server
        .get(&Collection::apps("shop", "deployments"), "db")
        .unwrap()["metadata"]["resourceVersion"]
        .clone();
    // Three more failed probes of the same outage, each handled before the next one starts.
    let probes = || {
        crate::observe::metric_sum(
            &metrics.encode(),
            "selfheal_problems_detected_total",
            &["problem=\"DependencyDown\""],
        )
    };
    let seen = probes();
    eventually("three more probes fail", || probes() >= seen + 3.0).await;
    assert_eq!(
        server
            .get(&Collection::apps("shop", "deployments"), "db")
            .unwrap()["metadata"]["resourceVersion"],
        version,
        "the same outage restarts it once"
    );
    drop(running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dependency_probe_is_reported_on_the_service_itself() {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = FakeApiServer::new();
    // The workload behind it opted out: the refusal is an Event about the Service.
    put_dependency(&server, closed_port, json!({"selfheal.io/ignore": "true"}));
    let service_uid = server
        .get(&Collection::core("shop", "services"), "db")
        .unwrap()["metadata"]["uid"]
        .clone();
    let probe = format!("shop/db:{closed_port}");
    let running = start(
        &server,
        RateLimiter::new(Duration::ZERO, Duration::ZERO),
        watcher_config(vec![probe.as_str()], Duration::from_millis(100)),
    )
    .await;
    let about_service = || {
        server
            .list(&Collection::new("apis/events.k8s.io/v1", "shop", "events"))
            .into_iter()
            .filter(|e| e["reason"] == "NotActing")
            .map(|e| e["regarding"].clone())
            .collect::<Vec<Value>>()
    };
    eventually("the refusal is reported", || !about_service().is_empty()).await;
    let regarding = &about_service()[0];
    assert_eq!(
        (&regarding["kind"], &regarding["name"], &regarding["uid"]),
        (&json!("Service"), &json!("db"), &service_uid),
        "kubectl describe service db shows it"
    );
    assert!(
        server
            .get(&Collection::apps("shop", "deployments"), "db")
            .unwrap()["spec"]["template"]["metadata"]["annotations"]
            .is_null(),
        "not restarted"
    );
    drop(running);
}
