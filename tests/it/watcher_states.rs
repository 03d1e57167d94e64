//! The failure states of issue 10 through the live watcher (leading, against the in-process test
//! API server): a state a Warning event explains is reported the moment the Warning is seen, not
//! after the grace period; a state only time reveals is looked at again when its grace ends,
//! with no new event; every one of them is reported (a `NotActing` Event, the problems metric
//! with its cause) and nothing is acted on.
//!
//! The pods and events are those of `tests/data/cluster-dump-states.json` (written as the
//! kubelet and the scheduler write them), moved in time so that the dump's "now" is now.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};
use support::eventually;
use support::fake_apiserver::{Collection, FakeApiServer};

use selfheal::cluster::leader::{self, Leadership, LeaseConfig};
use selfheal::heal::detect::Thresholds;
use selfheal::heal::execute::Executor;
use selfheal::heal::plan::Rails;
use selfheal::heal::ratelimit::RateLimiter;
use selfheal::heal::run::Scope;
use selfheal::heal::watcher::{self, WatcherConfig};
use selfheal::metrics::Metrics;
use selfheal::store::{ConfigMapStore, FixStore};

/// "Now" in the dump.
const DUMP_NOW: &str = "2026-01-01T12:00:00Z";

/// The item of the dump named `name` (and of `kind`), its times moved so the dump's "now" is
/// now.
fn dump_item(kind: &str, name: &str) -> Value {
    let dump = support::read_json("cluster-dump-states.json");
    let mut item = dump["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == kind && i["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} is in the dump"))
        .clone();
    let shift = Timestamp::now().duration_since(DUMP_NOW.parse().unwrap());
    move_times(&mut item, shift);
    item
}

fn move_times(value: &mut Value, shift: jiff::SignedDuration) {
    match value {
        Value::String(text) => {
            if let Ok(time) = text.parse::<Timestamp>() {
                *text = (time + shift)
                    .round(jiff::Unit::Second)
                    .unwrap()
                    .to_string();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| move_times(v, shift)),
        Value::Object(fields) => fields.values_mut().for_each(|v| move_times(v, shift)),
        _ => {}
    }
}

fn now_text() -> String {
    Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap()
        .to_string()
}

struct Running {
    metrics: Arc<Metrics>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

/// A leading watcher with `thresholds`; waits until it leads.
async fn start(server: &FakeApiServer, thresholds: Thresholds) -> Running {
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
        Arc::new(RateLimiter::new(
            Duration::from_secs(300),
            Duration::from_secs(3600),
        )),
        metrics.clone(),
        false,
    ));
    let scope = Scope {
        protected: vec!["kube-system".into(), "selfheal".into()],
        ..Scope::default()
    };
    let config = WatcherConfig {
        thresholds,
        certificate_interval: Duration::from_secs(3600),
        ..WatcherConfig::new(scope, Rails::default(), Default::default())
    };
    let lease = LeaseConfig {
        namespace: "selfheal".into(),
        name: "selfheal-watcher".into(),
        identity: "only".into(),
        lease_duration: Duration::from_secs(2),
        renew_every: Duration::from_millis(100),
    };
    let tasks = vec![
        store.spawn_sync(),
        tokio::spawn(leader::campaign(
            server.client(),
            lease,
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

fn pods() -> Collection {
    Collection::core("shop", "pods")
}

fn core_events() -> Collection {
    Collection::core("shop", "events")
}

fn detected(problem: &str, cause: &str) -> String {
    format!("selfheal_problems_detected_total{{problem=\"{problem}\",cause=\"{cause}\"}} 1")
}

/// The notes of the `NotActing` Events about the object with `uid`.
fn not_acting(server: &FakeApiServer, uid: &str) -> Vec<String> {
    server
        .list(&Collection::new("apis/events.k8s.io/v1", "shop", "events"))
        .into_iter()
        .filter(|e| e["reason"] == "NotActing" && e["regarding"]["uid"] == uid)
        .map(|e| e["note"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The notes of the `NotActing` Events about the object with `uid`, once there is one (the
/// metric is counted before the Event is written).
async fn reported(server: &FakeApiServer, uid: &str) -> Vec<String> {
    eventually("the NotActing Event", || {
        !not_acting(server, uid).is_empty()
    })
    .await;
    not_acting(server, uid)
}

/// Nothing was acted on: every action taken was a report, no fix was recorded, and the pods
/// named are still there.
async fn assert_only_reported(server: &FakeApiServer, metrics: &Metrics, pod_names: &[&str]) {
    let actions_of = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("selfheal_healing_actions_total{"))
            .map(String::from)
            .collect()
    };
    // The action is counted once its Event is written.
    eventually("an action is counted", || {
        !actions_of(&metrics.encode()).is_empty()
    })
    .await;
    let actions = actions_of(&metrics.encode());
    assert!(
        actions
            .iter()
            .all(|l| l.contains("action=\"Report\",result=\"reported\"")),
        "only reports: {actions:?}"
    );
    let fixes = server
        .get(&Collection::core("selfheal", "configmaps"), "fixes")
        .map(|c| {
            c["data"]["fixes.yaml"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default();
    assert!(!fixes.contains("resource:"), "no fix recorded: {fixes}");
    for name in pod_names {
        assert!(server.get(&pods(), name).is_some(), "{name} is not deleted");
    }
}

/// A pod whose container image reference is invalid: reported at once, under its own name, as a
/// marker the tests wait for (the pod watch is ordered: a pod put before it was seen before it).
fn marker_pod() -> Value {
    dump_item("Pod", "web-5d4f8b7c9-badnm")
}

const MARKER: (&str, &str) = ("InvalidImageName", "invalid image name");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_mount_is_reported_when_its_warning_appears_not_after_the_grace() {
    let server = FakeApiServer::new();
    let running = start(&server, Thresholds::default()).await;
    let metrics = running.metrics.clone();

    // Scheduled 30 s ago, its container still creating: within the 300 s grace.
    server.put(&pods(), dump_item("Pod", "web-5d4f8b7c9-mount"));
    server.put(&pods(), marker_pod());
    eventually("the marker is reported", || {
        metrics.encode().contains(&detected(MARKER.0, MARKER.1))
    })
    .await;
    assert!(
        !metrics.encode().contains("problem=\"StuckCreating\""),
        "nothing says why yet: {}",
        metrics.encode()
    );

    // The kubelet's Warning (its reference carries the pod's uid, as the kubelet writes it).
    let mut mount = dump_item("Event", "web-5d4f8b7c9-mount.000000000000000c");
    mount["involvedObject"]["uid"] = json!("uid-web-5d4f8b7c9-mount");
    mount["lastTimestamp"] = json!(now_text());
    server.put(&core_events(), mount);
    eventually("the mount failure is reported at once", || {
        metrics
            .encode()
            .contains(&detected("StuckCreating", "missing Secret"))
    })
    .await;
    let notes = reported(&server, "uid-web-5d4f8b7c9-mount").await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("stuck creating: missing Secret"),
        "{notes:?}"
    );
    assert_only_reported(
        &server,
        &metrics,
        &["web-5d4f8b7c9-mount", "web-5d4f8b7c9-badnm"],
    )
    .await;

    // The kubelet repeats the Warning (same event, higher count): not a new report.
    let mut again = dump_item("Event", "web-5d4f8b7c9-mount.000000000000000c");
    again["involvedObject"]["uid"] = json!("uid-web-5d4f8b7c9-mount");
    again["count"] = json!(2);
    server.put(&core_events(), again);
    let mut second_marker = marker_pod();
    second_marker["metadata"]["name"] = json!("web-5d4f8b7c9-badn2");
    second_marker["metadata"]["uid"] = json!("uid-web-5d4f8b7c9-badn2");
    second_marker["spec"]["containers"][0]["image"] = json!("registry.example.com/Shop/App:2");
    server.put(&pods(), second_marker);
    eventually("the second marker is reported", || {
        metrics
            .encode()
            .contains(&detected(MARKER.0, MARKER.1).replace("} 1", "} 2"))
    })
    .await;
    assert!(
        metrics
            .encode()
            .contains(&detected("StuckCreating", "missing Secret")),
        "still counted once: {}",
        metrics.encode()
    );
    drop(running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_readiness_probe_is_reported_at_once_whichever_comes_first() {
    let server = FakeApiServer::new();
    let running = start(&server, Thresholds::default()).await;
    let metrics = running.metrics.clone();

    // Ready first; the kubelet reports failed probes (Warning `Unhealthy`) before it turns the
    // container not ready.
    let not_ready = dump_item("Pod", "web-5d4f8b7c9-r8k2p");
    let mut ready = not_ready.clone();
    ready["status"]["containerStatuses"][0]["ready"] = json!(true);
    ready["status"]["conditions"][0] = json!({"type": "Ready", "status": "True"});
    server.put(&pods(), ready);
    let mut unhealthy = dump_item("Event", "web-5d4f8b7c9-r8k2p.0000000000000001");
    unhealthy["lastTimestamp"] = json!(now_text());
    server.put(&core_events(), unhealthy);
    // Started a minute ago: 240 s before the grace would end.
    server.put(&pods(), not_ready);
    eventually("the failing readiness probe is reported", || {
        metrics
            .encode()
            .contains(&detected("NotReady", "readiness probe failing"))
    })
    .await;
    let notes = reported(&server, "uid-web-5d4f8b7c9-r8k2p").await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("not ready (readiness probe failing)"),
        "{notes:?}"
    );
    assert_only_reported(&server, &metrics, &["web-5d4f8b7c9-r8k2p"]).await;
    drop(running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_image_name_is_named_as_such_and_not_retried() {
    let server = FakeApiServer::new();
    server.put(
        &core_events(),
        dump_item("Event", "web-5d4f8b7c9-badnm.0000000000000008"),
    );
    let running = start(&server, Thresholds::default()).await;
    let metrics = running.metrics.clone();
    server.put(&pods(), marker_pod());
    eventually("the invalid name is reported", || {
        metrics.encode().contains(&detected(MARKER.0, MARKER.1))
    })
    .await;
    let text = metrics.encode();
    assert!(
        !text.contains("problem=\"ImagePullBackOff\"")
            && !text.contains("problem=\"StuckCreating\""),
        "{text}"
    );
    let notes = reported(&server, "uid-web-5d4f8b7c9-badnm").await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with("InvalidImageName (invalid image name)"),
        "{notes:?}"
    );
    // An image pull failure would have the pod deleted for a new pull; a bad name is not pulled.
    assert_only_reported(&server, &metrics, &["web-5d4f8b7c9-badnm"]).await;
    drop(running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gated_pod_is_looked_at_again_when_its_grace_ends_with_no_new_event() {
    const GRACE_SECONDS: i64 = 3;
    let server = FakeApiServer::new();
    let running = start(
        &server,
        Thresholds {
            stuck_creating_seconds: GRACE_SECONDS,
            ..Thresholds::default()
        },
    )
    .await;
    let metrics = running.metrics.clone();

    // Gated just now (the dump's pod has been for ten minutes).
    let mut gated = dump_item("Pod", "batch-worker-gated");
    gated["metadata"]["creationTimestamp"] = json!(now_text());
    gated["status"]["conditions"][0]["lastTransitionTime"] = json!(now_text());
    let began = std::time::Instant::now();
    server.put(&pods(), gated);
    server.put(&pods(), marker_pod());
    eventually("the marker is reported", || {
        metrics.encode().contains(&detected(MARKER.0, MARKER.1))
    })
    .await;
    assert!(
        !metrics.encode().contains("problem=\"SchedulingGated\""),
        "gates are set on purpose: not a problem within the grace"
    );

    // Nothing changes any more: the watcher looks again by itself when the grace ends.
    eventually("the gated pod is reported after its grace", || {
        metrics
            .encode()
            .contains(&detected("SchedulingGated", "held by scheduling gates"))
    })
    .await;
    assert!(
        began.elapsed() >= Duration::from_secs(GRACE_SECONDS as u64 - 1),
        "reported after the grace (times are in whole seconds), not before: {:?}",
        began.elapsed()
    );
    let notes = reported(&server, "uid-batch-worker-gated").await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("held by scheduling gates"), "{notes:?}");
    assert_only_reported(&server, &metrics, &["batch-worker-gated"]).await;
    drop(running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_provisioning_failed_is_reported_at_once_from_an_events_v1_event() {
    let server = FakeApiServer::new();
    let running = start(&server, Thresholds::default()).await;
    let metrics = running.metrics.clone();
    // Created a minute ago (the grace is 300 s); the CSI provisioner writes events.k8s.io/v1
    // Events, which the watcher reads through core/v1 like every other.
    server.put(
        &Collection::core("shop", "persistentvolumeclaims"),
        dump_item("PersistentVolumeClaim", "data-orders-0"),
    );
    server.put(
        &Collection::new("apis/events.k8s.io/v1", "shop", "events"),
        dump_item("Event", "data-orders-0.0000000000000010"),
    );
    eventually("the failed provisioning is reported", || {
        metrics
            .encode()
            .contains(&detected("ClaimPending", "volume provisioning failed"))
    })
    .await;
    let notes = reported(&server, "uid-data-orders-0").await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("claim pending: volume provisioning failed"),
        "{notes:?}"
    );
    assert_only_reported(&server, &metrics, &[]).await;
    drop(running);
}
