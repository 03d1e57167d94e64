//! The watcher when the cluster misbehaves, against the in-process test API server: a leader
//! killed mid-incident, a released Lease, a leader that cannot renew, a hung API call, a
//! PodDisruptionBudget refusal, a watch that expires and forces a re-list, a log read that hangs.
//!
//! Faults are injected by wrapping the test API server's router (each replica may get its own
//! wrapper), never by changing the server.

use crate::{observe, support};

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use support::eventually;
use support::fake_apiserver::{Collection, FakeApiServer};

use selfheal::cluster::leader::{self, Leadership, LeaseConfig};
use selfheal::heal::execute::Executor;
use selfheal::heal::plan::Rails;
use selfheal::heal::ratelimit::RateLimiter;
use selfheal::heal::run::Scope;
use selfheal::heal::watcher::{self, WatcherConfig};
use selfheal::metrics::Metrics;
use selfheal::store::{ConfigMapStore, FixStore};

/// Faults a wrapped router injects.
#[derive(Clone, Default)]
struct Faults {
    /// Requests (method, exact path) that never get an answer.
    hang: Arc<Mutex<Vec<(Method, String)>>>,
    /// Hung requests received so far.
    hung: Arc<AtomicUsize>,
    /// Evictions are refused with 429, as a PodDisruptionBudget does.
    refuse_evictions: Arc<AtomicBool>,
    evictions: Arc<AtomicUsize>,
    /// Lease requests fail with 500.
    fail_leases: Arc<AtomicBool>,
    /// Pod watches are answered with 410 Gone (the resourceVersion expired).
    expire_pod_watches: Arc<AtomicBool>,
    /// Pod lists answered so far.
    pod_lists: Arc<AtomicUsize>,
    /// Open pod watches end when this changes.
    end_watches: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Faults {
    fn new() -> Self {
        Self {
            end_watches: Arc::new(tokio::sync::watch::Sender::new(0)),
            ..Self::default()
        }
    }

    fn client(&self, server: &FakeApiServer) -> kube::Client {
        let router = server
            .router()
            .layer(axum::middleware::from_fn_with_state(self.clone(), inject));
        kube::Client::new(router, "default")
    }

    fn hang(&self, method: Method, path: &str) {
        self.hang.lock().unwrap().push((method, path.into()));
    }

    fn stop_hanging(&self) {
        self.hang.lock().unwrap().clear();
    }
}

fn failure(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()});
    (code, axum::Json(body)).into_response()
}

async fn inject(State(faults): State<Faults>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let watch = request
        .uri()
        .query()
        .is_some_and(|q| q.contains("watch=true") || q.contains("watch=1"));
    let method = request.method().clone();
    let hangs = faults
        .hang
        .lock()
        .unwrap()
        .iter()
        .any(|(m, p)| *m == method && *p == path);
    if hangs {
        faults.hung.fetch_add(1, Ordering::SeqCst);
        return std::future::pending().await;
    }
    if path.contains("/leases") && faults.fail_leases.load(Ordering::SeqCst) {
        return failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "etcd unavailable",
        );
    }
    if path.ends_with("/eviction") {
        faults.evictions.fetch_add(1, Ordering::SeqCst);
        if faults.refuse_evictions.load(Ordering::SeqCst) {
            // What the apiserver answers, cause included.
            let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "code": 429, "reason": "TooManyRequests",
                "message": "Cannot evict pod as it would violate the pod's disruption budget.",
                "details": {"causes": [{"reason": "DisruptionBudget",
                    "message": "The disruption budget api-pdb needs 2 healthy pods and has 1 currently"}]}});
            return (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
        }
    }
    let pods = path == "/api/v1/pods";
    if pods && watch {
        if faults.expire_pod_watches.load(Ordering::SeqCst) {
            let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
                "metadata": {}, "status": "Failure", "reason": "Expired", "code": 410,
                "message": "too old resource version"}});
            return Response::new(Body::from(format!("{gone}\n")));
        }
        let response = next.run(request).await;
        let mut ended = faults.end_watches.subscribe();
        let (parts, body) = response.into_parts();
        let stream = body.into_data_stream().take_until(async move {
            let _ = ended.changed().await;
        });
        return Response::from_parts(parts, Body::from_stream(stream));
    }
    if pods && method == Method::GET {
        faults.pod_lists.fetch_add(1, Ordering::SeqCst);
    }
    next.run(request).await
}

fn lease(identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: "selfheal".into(),
        name: "selfheal-watcher".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(2),
        renew_every: Duration::from_millis(100),
    }
}

/// One `selfheal serve` watcher replica: its Lease campaign, store sync and watcher.
struct Replica {
    leadership: Leadership,
    metrics: Arc<Metrics>,
    stop: tokio::sync::watch::Sender<bool>,
    campaign: Option<tokio::task::JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The watcher configuration of these tests: certificates not checked unless asked.
fn config(check_certificates: bool) -> WatcherConfig {
    let scope = Scope {
        protected: vec!["kube-system".into(), "selfheal".into()],
        ..Scope::default()
    };
    WatcherConfig {
        check_certificates,
        ..WatcherConfig::new(scope, Rails::default(), Default::default())
    }
}

impl Replica {
    fn start(identity: &str, client: kube::Client) -> Self {
        Self::start_with(identity, client, config(false), Duration::from_secs(300))
    }

    /// A replica with its watcher configuration and the rate limiter's first window.
    fn start_with(
        identity: &str,
        client: kube::Client,
        config: WatcherConfig,
        window: Duration,
    ) -> Self {
        let metrics = Arc::new(Metrics::new());
        let store = FixStore::ConfigMap(Arc::new(ConfigMapStore::new(
            client.clone(),
            "selfheal",
            "fixes",
            metrics.clone(),
        )));
        let leadership = Leadership::default();
        let executor = Arc::new(Executor::new(
            client.clone(),
            store.clone(),
            Arc::new(RateLimiter::new(window, Duration::from_secs(3600))),
            metrics.clone(),
            false,
        ));
        let (stop, mut stopping) = tokio::sync::watch::channel(false);
        let campaign = tokio::spawn(leader::campaign_until(
            client.clone(),
            lease(identity),
            leadership.clone(),
            metrics.clone(),
            async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            },
        ));
        let tasks = vec![
            store.spawn_sync(),
            tokio::spawn(watcher::run(
                client,
                executor,
                store,
                config,
                leadership.clone(),
                metrics.clone(),
            )),
        ];
        Self {
            leadership,
            metrics,
            stop,
            campaign: Some(campaign),
            tasks,
        }
    }

    /// The process dies: nothing is released.
    fn kill(mut self) {
        if let Some(campaign) = self.campaign.take() {
            campaign.abort();
        }
        self.tasks.iter().for_each(|t| t.abort());
    }

    /// SIGTERM: stop acting, release the Lease, then exit.
    async fn shut_down(mut self) {
        self.stop.send_replace(true);
        if let Some(campaign) = self.campaign.take() {
            tokio::time::timeout(Duration::from_secs(5), campaign)
                .await
                .expect("the campaign ends on stop")
                .expect("the campaign does not panic");
        }
        self.tasks.iter().for_each(|t| t.abort());
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(campaign) = &self.campaign {
            campaign.abort();
        }
        self.tasks.iter().for_each(|t| t.abort());
    }
}

fn deployment(app: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": app, "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": {"app": app}},
                "spec": {"containers": [{"name": "app", "image": "app:1", "resources": {"limits": {"memory": "512Mi"}}}]}}}})
}

/// A pod of Deployment `app`; `oom`: its container was just OOM killed (restart 1).
fn pod(app: &str, oom: bool) -> Value {
    let last = if oom {
        json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}})
    } else {
        json!({})
    };
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{app}-5d4c3b2a1-x1"), "namespace": "shop", "uid": format!("uid-{app}"),
            "labels": {"app": app, "pod-template-hash": "5d4c3b2a1"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-5d4c3b2a1"), "uid": "rs", "controller": true}]},
        "spec": {"containers": [{"name": "app", "image": "app:1", "resources": {"limits": {"memory": "512Mi"}}}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": "app", "ready": !oom, "restartCount": i32::from(oom),
            "image": "app:1", "imageID": "", "state": {"running": {}}, "lastState": last}]}})
}

/// A pod of Deployment `app` crash-looping for no cause a fix knows (the plan is an eviction).
fn crash_looping(app: &str) -> Value {
    let mut pod = pod(app, false);
    pod["status"]["containerStatuses"][0]["ready"] = json!(false);
    pod["status"]["containerStatuses"][0]["restartCount"] = json!(4);
    pod["status"]["containerStatuses"][0]["state"] = json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}});
    pod["status"]["containerStatuses"][0]["lastState"] =
        json!({"terminated": {"exitCode": 1, "reason": "Error"}});
    pod
}

fn setup(apps: &[&str]) -> FakeApiServer {
    let server = FakeApiServer::new();
    for app in apps {
        server.put(&Collection::apps("shop", "deployments"), deployment(app));
        server.put(&Collection::core("shop", "pods"), pod(app, false));
    }
    server
}

fn memory_limit(server: &FakeApiServer, app: &str) -> Value {
    server
        .get(&Collection::apps("shop", "deployments"), app)
        .unwrap()["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
        .clone()
}

fn raised(server: &FakeApiServer, app: &str) -> bool {
    memory_limit(server, app) == "768Mi"
}

fn oom(server: &FakeApiServer, app: &str) {
    server.put(&Collection::core("shop", "pods"), pod(app, true));
}

fn lease_holder(server: &FakeApiServer) -> Value {
    server
        .get(
            &Collection::new("apis/coordination.k8s.io/v1", "selfheal", "leases"),
            "selfheal-watcher",
        )
        .map(|l| l["spec"]["holderIdentity"].clone())
        .unwrap_or(Value::Null)
}

/// Starts replica `a`, waits until it leads, then starts `b` as its follower.
async fn leader_and_follower(
    a: kube::Client,
    b: kube::Client,
    server: &FakeApiServer,
) -> (Replica, Replica) {
    let first = Replica::start("a", a);
    eventually("a leads", || first.leadership.is_leader()).await;
    let second = Replica::start("b", b);
    eventually("b follows (has read the Lease)", || {
        lease_holder(server) == "a" && second.metrics.encode().contains("selfheal_leader 0")
    })
    .await;
    (first, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_mid_incident_leaves_nothing_behind() {
    let server = setup(&["web", "cart"]);
    // The leader's handling of web hangs mid-incident (reading the Deployment to roll it).
    let faults = Faults::new();
    faults.hang(Method::GET, "/apis/apps/v1/namespaces/shop/deployments/web");
    let (a, b) = leader_and_follower(faults.client(&server), server.client(), &server).await;
    oom(&server, "web");
    eventually("a is in the middle of handling web", || {
        faults.hung.load(Ordering::SeqCst) > 0
    })
    .await;

    a.kill();
    // During the handover (the Lease still names a), cart is OOM killed too.
    oom(&server, "cart");
    assert_eq!(
        lease_holder(&server),
        "a",
        "written before anyone took over"
    );
    eventually("b takes over once the Lease expires", || {
        b.leadership.is_leader()
    })
    .await;
    eventually(
        "the new leader fixes web, whose handling was cut off",
        || raised(&server, "web"),
    )
    .await;
    eventually("and cart, which failed during the handover", || {
        raised(&server, "cart")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_lease_is_taken_over_at_once_and_the_handover_loses_nothing() {
    let server = setup(&["web"]);
    let (a, b) = leader_and_follower(server.client(), server.client(), &server).await;
    let stopped = Instant::now();
    a.shut_down().await;
    // Released: no holder, unless b (polling) has already taken the released Lease over.
    let holder = lease_holder(&server);
    assert!(
        holder.is_null() || holder == "b",
        "released: no holder, or already the follower ({holder:?})"
    );
    // Failed after the old leader stopped (and, most often, before the new one leads).
    oom(&server, "web");
    eventually("b takes over", || b.leadership.is_leader()).await;
    assert!(
        stopped.elapsed() < Duration::from_secs(2),
        "taken over before the 2 s Lease could have expired: {:?}",
        stopped.elapsed()
    );
    eventually(
        "the new leader fixes what failed during the handover",
        || raised(&server, "web"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_renew_stops_acting_before_another_takes_over() {
    let server = setup(&[]);
    let faults = Faults::new();
    let (a, b) = leader_and_follower(faults.client(&server), server.client(), &server).await;
    // The moment a's leadership ends and the moment b's begins, each taken as it resolves.
    let a_lost = {
        let a = a.leadership.clone();
        tokio::spawn(async move {
            a.lost().await;
            tokio::time::Instant::now()
        })
    };
    let b_gained = {
        let b = b.leadership.clone();
        tokio::spawn(async move {
            b.gained().await;
            tokio::time::Instant::now()
        })
    };
    faults.fail_leases.store(true, Ordering::SeqCst);
    let b_gained = tokio::time::timeout(Duration::from_secs(10), b_gained)
        .await
        .expect("b takes over within 10 s")
        .unwrap();
    // a's loss resolved on its own deadline, before b led: it cannot still be pending.
    let a_lost = tokio::time::timeout(Duration::from_millis(500), a_lost)
        .await
        .expect("two leaders at once: a still acts after b took over")
        .unwrap();
    assert!(
        a_lost < b_gained,
        "two leaders at once: a stopped acting {:?} after b began",
        a_lost.saturating_duration_since(b_gained)
    );
    let a_until = a
        .leadership
        .valid_until()
        .expect("a stopped on its deadline, not by a revoke");
    assert!(
        a_until <= a_lost && a_until < b_gained,
        "a's deadline ({a_until:?}) was over before b led ({b_gained:?})"
    );
    assert!(!a.leadership.is_leader());
    assert_eq!(lease_holder(&server), "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_api_call_for_one_workload_does_not_delay_another() {
    let server = setup(&["slow", "web"]);
    let faults = Faults::new();
    faults.hang(
        Method::GET,
        "/apis/apps/v1/namespaces/shop/deployments/slow",
    );
    let replica = Replica::start("only", faults.client(&server));
    eventually("leading", || replica.leadership.is_leader()).await;
    oom(&server, "slow");
    eventually("the handling of slow hangs", || {
        faults.hung.load(Ordering::SeqCst) > 0
    })
    .await;
    oom(&server, "web");
    eventually("web is fixed while slow hangs", || raised(&server, "web")).await;
    assert_eq!(memory_limit(&server, "slow"), "512Mi", "slow is still hung");
}

/// The client `selfheal serve` builds, talking HTTP to the wrapped server on a loopback port.
async fn production_client(faults: &Faults, server: &FakeApiServer) -> kube::Client {
    let router = server
        .router()
        .layer(axum::middleware::from_fn_with_state(faults.clone(), inject));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    selfheal::app::serve::client_from(kube::Config::new(url.parse().unwrap())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_eviction_is_reported_at_once_and_another_oom_is_fixed_within_a_second() {
    let server = setup(&["api", "web"]);
    let faults = Faults::new();
    faults.refuse_evictions.store(true, Ordering::SeqCst);
    let replica = Replica::start("only", production_client(&faults, &server).await);
    eventually("leading", || replica.leadership.is_leader()).await;
    server.put(&Collection::core("shop", "pods"), crash_looping("api"));
    eventually("the eviction is refused", || {
        faults.evictions.load(Ordering::SeqCst) > 0
    })
    .await;
    let refused = Instant::now();
    oom(&server, "web");
    eventually("web is fixed", || raised(&server, "web")).await;
    assert!(
        refused.elapsed() < Duration::from_secs(1),
        "OOM to fix took {:?}",
        refused.elapsed()
    );
    // The client does not sit on the 429 retrying it: the refusal is reported at once.
    eventually("the refusal is an Event on the pod", || {
        server
            .list(&Collection::new("apis/events.k8s.io/v1", "shop", "events"))
            .iter()
            .any(|e| {
                e["reason"] == "NotActing"
                    && e["note"]
                        .as_str()
                        .is_some_and(|n| n.contains("api-pdb needs 2 healthy pods"))
            })
    })
    .await;
    assert!(
        refused.elapsed() < Duration::from_secs(1),
        "refusal reported after {:?}",
        refused.elapsed()
    );
    assert_eq!(
        faults.evictions.load(Ordering::SeqCst),
        1,
        "asked once, not retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_refused_by_a_budget_is_tried_again_when_its_backoff_ends() {
    let server = setup(&["api"]);
    let faults = Faults::new();
    faults.refuse_evictions.store(true, Ordering::SeqCst);
    let replica = Replica::start_with(
        "only",
        faults.client(&server),
        config(false),
        Duration::from_secs(1),
    );
    eventually("leading", || replica.leadership.is_leader()).await;
    server.put(&Collection::core("shop", "pods"), crash_looping("api"));
    eventually("the eviction is refused", || {
        faults.evictions.load(Ordering::SeqCst) == 1
    })
    .await;
    // The budget allows it now; the pod's status does not change again.
    faults.refuse_evictions.store(false, Ordering::SeqCst);
    eventually("the pod is evicted when the backoff ends", || {
        server
            .get(&Collection::core("shop", "pods"), "api-5d4c3b2a1-x1")
            .is_none()
    })
    .await;
    assert_eq!(faults.evictions.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_expires_and_forces_a_re_list_loses_nothing() {
    let server = setup(&["web"]);
    let faults = Faults::new();
    let replica = Replica::start("only", faults.client(&server));
    eventually("leading", || replica.leadership.is_leader()).await;
    eventually("the first list is done", || {
        faults.pod_lists.load(Ordering::SeqCst) > 0
    })
    .await;
    // The open watch ends and every new one is told its resourceVersion is too old.
    faults.expire_pod_watches.store(true, Ordering::SeqCst);
    faults
        .end_watches
        .send_modify(|generation| *generation += 1);
    let lists = faults.pod_lists.load(Ordering::SeqCst);
    oom(&server, "web");
    eventually("the watcher lists pods again", || {
        faults.pod_lists.load(Ordering::SeqCst) > lists
    })
    .await;
    faults.expire_pod_watches.store(false, Ordering::SeqCst);
    eventually("the OOM kill seen only by the re-list is fixed", || {
        raised(&server, "web")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_goes_with_deleted_objects() {
    use base64::Engine;
    let server = setup(&[]);
    let generated = selfheal::certs::generate::generate(&["web.shop.svc".into()]).unwrap();
    let encode = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
    let secrets = Collection::core("shop", "secrets");
    server.put(
        &secrets,
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "web-tls", "namespace": "shop"},
            "data": {"tls.crt": encode(&generated.cert), "tls.key": encode(&generated.key)}}),
    );
    // A pod scheduled but not started: held until it can be stuck creating.
    let pods = Collection::core("shop", "pods");
    let mut creating = pod("web", false);
    creating["status"] = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
        "status": "True", "lastTransitionTime": jiff::Timestamp::now().to_string()}]});
    server.put(&pods, creating);

    let replica = Replica::start_with(
        "only",
        server.client(),
        config(true),
        Duration::from_secs(300),
    );
    let series =
        "selfheal_certificate_expiry_timestamp_seconds{namespace=\"shop\",secret=\"web-tls\"}";
    eventually("the expiry is exported and both objects are held", || {
        let text = replica.metrics.encode();
        text.contains(series) && text.contains("selfheal_watcher_tracked_objects 2")
    })
    .await;
    server.remove(&secrets, "web-tls");
    server.remove(&pods, "web-5d4c3b2a1-x1");
    eventually("the series and the objects go with them", || {
        let text = replica.metrics.encode();
        !text.contains(series)
            && text.contains("selfheal_watcher_tracked_objects 0")
            && text.contains("selfheal_watcher_queue_keys 0")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_one_workload_are_handled_one_after_the_other() {
    let server = setup(&["web", "cart"]);
    let faults = Faults::new();
    faults.hang(Method::GET, "/apis/apps/v1/namespaces/shop/deployments/web");
    let replica = Replica::start("only", faults.client(&server));
    eventually("leading", || replica.leadership.is_leader()).await;
    // Two pods of web are OOM killed; the first handling hangs.
    oom(&server, "web");
    let mut second = pod("web", true);
    second["metadata"]["name"] = json!("web-5d4c3b2a1-x2");
    second["metadata"]["uid"] = json!("uid-web-2");
    server.put(&Collection::core("shop", "pods"), second);
    eventually("the first handling of web hangs", || {
        faults.hung.load(Ordering::SeqCst) > 0
    })
    .await;
    // A marker after both: once cart is fixed, the second pod of web has been seen too.
    oom(&server, "cart");
    eventually("cart is fixed", || raised(&server, "cart")).await;
    assert_eq!(
        faults.hung.load(Ordering::SeqCst),
        1,
        "the second pod of web waits for the first handling"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_log_read_delays_a_finding_by_one_call_timeout_not_the_handling_deadline() {
    let server = setup(&["api"]);
    let faults = Faults::new();
    faults.hang(
        Method::GET,
        "/api/v1/namespaces/shop/pods/api-5d4c3b2a1-x1/log",
    );
    let replica = Replica::start("only", faults.client(&server));
    eventually("leading", || replica.leadership.is_leader()).await;
    server.put(&Collection::core("shop", "pods"), crash_looping("api"));
    eventually("the log read hangs", || {
        faults.hung.load(Ordering::SeqCst) > 0
    })
    .await;
    let hung = Instant::now();
    // The handling deadline is 60 s; one API call's timeout is 5 s.
    while faults.evictions.load(Ordering::SeqCst) == 0 {
        assert!(
            hung.elapsed() < Duration::from_secs(10),
            "no eviction {:?} after the log read hung",
            hung.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        faults.hung.load(Ordering::SeqCst),
        1,
        "after a timed-out current log, the previous log is not read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_oom_is_handled_at_once_while_an_earlier_failure_backs_off() {
    observe::capture();
    let server = setup(&["retried"]);
    let faults = Faults::new();
    faults.hang(
        Method::GET,
        "/apis/apps/v1/namespaces/shop/deployments/retried",
    );
    let mut hasty = config(false);
    hasty.handle_timeout = Duration::from_millis(500);
    let a = Replica::start_with("a", faults.client(&server), hasty, Duration::from_secs(300));
    eventually("a leads", || a.leadership.is_leader()).await;
    oom(&server, "retried");
    eventually("the first handling hangs", || {
        faults.hung.load(Ordering::SeqCst) > 0
    })
    .await;
    // Past the 500 ms deadline the handling has failed and backs off for 5 s.
    eventually("the first handling runs past its deadline", || {
        observe::logged(&["handling took longer", "retried"]) > 0
    })
    .await;
    faults.stop_hanging();
    // The container is OOM killed again (restart 2): a new occurrence, handled now.
    let mut again = pod("retried", true);
    again["status"]["containerStatuses"][0]["restartCount"] = json!(2);
    let written = Instant::now();
    server.put(&Collection::core("shop", "pods"), again);
    eventually("the new OOM is fixed", || raised(&server, "retried")).await;
    assert!(
        written.elapsed() < Duration::from_millis(3000),
        "the new occurrence waited for the old failure's 5 s backoff: {:?}",
        written.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_to_four_workloads_are_handled_at_once_not_five() {
    let apps = ["w1", "w2", "w3", "w4", "w5", "w6"];
    let server = setup(&apps);
    // Every handling hangs when it reads its Deployment to roll it, so none finishes.
    let held = server.hold_requests(
        Some(Method::GET),
        "/apis/apps/v1/namespaces/shop/deployments/",
    );
    let replica = Replica::start("only", server.client());
    eventually("leading", || replica.leadership.is_leader()).await;
    let gauge = |name: &str| observe::metric(&replica.metrics.encode(), name).unwrap_or(-1.0);
    for app in &apps[..5] {
        oom(&server, app);
    }
    eventually("four handlings are in flight at once", || {
        assert!(held.held() <= 4, "{} handlings in flight", held.held());
        held.held() == 4
    })
    .await;
    // A sixth failing workload makes the loop publish its gauges again: the fifth still waits
    // (two keys queued, not one), so a fifth worker was not started.
    oom(&server, apps[5]);
    eventually("the sixth is tracked", || {
        gauge("selfheal_watcher_tracked_objects") == 6.0
    })
    .await;
    assert_eq!(
        gauge("selfheal_watcher_queue_keys"),
        2.0,
        "of six failing workloads, four are worked and two wait"
    );
    assert_eq!(held.held(), 4);
    // Released, every handling finishes and the waiting ones follow.
    drop(held);
    for app in apps {
        eventually("every workload is fixed", || raised(&server, app)).await;
    }
}
