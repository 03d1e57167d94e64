//! README claims that had no test of their own: pod-level resources left alone with a warning,
//! a fix refused by a full store reported as a failed action, and the rate limiter's default
//! backoff (5 minutes, doubling, at most an hour).
//!
//! (Up to four workloads at once is `watcher_resilience::up_to_four_workloads_are_handled_at_once_not_five`.)

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::fake_apiserver::{Collection, FakeApiServer};
use support::{admit, patch_of, read_json, state_with_test_fixes};

use selfheal::core::document::FixDocument;
use selfheal::core::fix::{Fix, FixRecord};
use selfheal::core::index::FixIndex;
use selfheal::heal::execute::{DEFAULT_WINDOW, Executor, MAX_BACKOFF};
use selfheal::heal::plan::Rails;
use selfheal::heal::ratelimit::{ActionKey, RateLimiter};
use selfheal::heal::run::{self as heal, Scope};
use selfheal::metrics::Metrics;
use selfheal::store::{CONFIGMAP_LIMIT_BYTES, ConfigMapStore, FixStore};

/// "Pods that set pod-level memory resources are left alone with a warning": a Pod and a
/// Deployment's template with `spec.resources` memory get no patch and the warning, while the
/// same objects without pod-level resources are raised.
#[tokio::test]
async fn pod_level_memory_resources_are_left_alone_with_a_warning() {
    let state = state_with_test_fixes();
    for (file, spec) in [
        ("deployment-create.json", "/spec/template/spec"),
        ("pod-create-owned-by-deployment.json", "/spec"),
    ] {
        let review = read_json(file);
        let (answer, _) = admit(&state, &review).await;
        assert!(
            patch_of(&answer).is_some(),
            "{file}: raised without pod-level resources"
        );

        for resources in [
            json!({"limits": {"memory": "8Gi"}}),
            json!({"requests": {"memory": "1Gi"}}),
        ] {
            let mut review = review.clone();
            review["request"]["object"]
                .pointer_mut(spec)
                .and_then(Value::as_object_mut)
                .unwrap()
                .insert("resources".into(), resources.clone());
            let (answer, _) = admit(&state, &review).await;
            assert!(patch_of(&answer).is_none(), "{file} {resources}: {answer}");
            let warnings = answer["response"]["warnings"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert!(
                !warnings.is_empty()
                    && warnings.iter().all(|w| {
                        w.as_str()
                            .is_some_and(|w| w.contains("the pod sets pod-level memory resources"))
                    }),
                "{file} {resources}: {warnings:?}"
            );
        }
    }
}

/// "At 100 % ... the new fix is neither stored nor applied (the healing action reports
/// `failed`)": an OOM kill whose fix does not fit in the ConfigMap.
#[tokio::test]
async fn a_fix_the_full_store_refuses_is_a_failed_action_and_changes_nothing() {
    let server = FakeApiServer::new();
    let configmaps = Collection::core("selfheal", "configmaps");
    let full = document_just_under_the_limit(64);
    server.put(
        &configmaps,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "fixes", "namespace": "selfheal"},
            "data": {"fixes.yaml": full}}),
    );
    let stored = server.get(&configmaps, "fixes").unwrap();
    server.put(&Collection::apps("shop", "deployments"), json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "app:1", "resources": {"limits": {"memory": "512Mi"}}}]}}}}));
    server.put(&Collection::core("shop", "pods"), json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-5d4c3b2a1-x1", "namespace": "shop", "uid": "uid-web",
            "labels": {"app": "web", "pod-template-hash": "5d4c3b2a1"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d4c3b2a1", "uid": "rs", "controller": true}]},
        "spec": {"containers": [{"name": "app", "image": "app:1", "resources": {"limits": {"memory": "512Mi"}}}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": "app", "ready": false, "restartCount": 1,
            "image": "app:1", "imageID": "", "state": {"running": {}},
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}}));

    let metrics = Arc::new(Metrics::new());
    let store = FixStore::ConfigMap(Arc::new(ConfigMapStore::new(
        server.client(),
        "selfheal",
        "fixes",
        metrics.clone(),
    )));
    let executor = Executor::new(
        server.client(),
        store,
        Arc::new(RateLimiter::new(DEFAULT_WINDOW, MAX_BACKOFF)),
        metrics.clone(),
        false,
    );
    let index = FixIndex::new(FixDocument::parse(&full).unwrap().fixes().cloned());
    let scope = Scope {
        protected: vec!["kube-system".into(), "selfheal".into()],
        ..Scope::default()
    };
    let handled = heal::run_once(
        &server.client(),
        &executor,
        &Rails::default(),
        std::sync::Arc::new(index),
        &scope,
        jiff::Timestamp::now(),
    )
    .await
    .unwrap();

    let web: Vec<_> = handled
        .iter()
        .filter(|h| h.finding.problem.namespace == "shop")
        .collect();
    assert_eq!(web.len(), 1, "{handled:#?}");
    assert_eq!(web[0].outcome.result(), "failed", "{:#?}", web[0].outcome);
    assert_eq!(
        server.get(&configmaps, "fixes").unwrap(),
        stored,
        "nothing stored"
    );
    assert_eq!(
        server
            .get(&Collection::apps("shop", "deployments"), "web")
            .unwrap()["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "512Mi",
        "nothing applied"
    );
    let text = metrics.encode();
    let failed = crate::observe::metric_sum(
        &text,
        "selfheal_healing_actions_total",
        &["result=\"failed\""],
    );
    assert_eq!(failed, 1.0, "{text}");
    assert!(
        text.contains("selfheal_store_errors_total{error=\"too_large\"} 1"),
        "{text}"
    );
}

/// A fixes.yaml within `room` bytes of the ConfigMap limit (and never over it).
fn document_just_under_the_limit(room: usize) -> String {
    let fix = |i: usize, evidence: usize| {
        Fix::from_record(FixRecord {
            namespace: Some("team".into()),
            resource: Some(format!("app-{i}")),
            fix_type: Some("memory".into()),
            value: Some("1Gi".into()),
            evidence: Some("x".repeat(evidence)),
            ..FixRecord::default()
        })
        .unwrap()
    };
    let target = CONFIGMAP_LIMIT_BYTES - room;
    let mut document = FixDocument::default();
    let mut i = 0;
    while document.to_yaml().unwrap().len() + 20 * 1024 < target {
        document.record(fix(i, 16 * 1024));
        i += 1;
    }
    // The last entry's evidence takes up the rest.
    let mut evidence = target - document.to_yaml().unwrap().len();
    loop {
        let mut last = document.clone();
        last.record(fix(i, evidence));
        let length = last.to_yaml().unwrap().len();
        if length <= target && length + 8 > target {
            return last.to_yaml().unwrap();
        }
        evidence = (evidence + target).saturating_sub(length);
    }
}

/// "Each disruptive action ... is rate-limited per target with exponential backoff (5 minutes,
/// doubling, at most an hour)", with the limiter `serve` and `heal` build and a clock the test
/// moves.
#[test]
fn the_default_backoff_is_five_minutes_doubling_to_at_most_an_hour() {
    assert_eq!(DEFAULT_WINDOW, Duration::from_secs(5 * 60));
    assert_eq!(MAX_BACKOFF, Duration::from_secs(60 * 60));
    let limiter = RateLimiter::new(DEFAULT_WINDOW, MAX_BACKOFF);
    let minutes = |m: u64| Duration::from_secs(m * 60);
    let web = ActionKey::Evict {
        namespace: "shop".into(),
        owner: "Deployment/shop/web".into(),
    };
    let mut at = Instant::now();
    assert_eq!(limiter.acquire(&web, at), Ok(1));
    // Waits before the next action: 5, 10, 20, 40 minutes, then an hour, and an hour after that.
    for (attempt, wait) in [(2, 5), (3, 10), (4, 20), (5, 40), (6, 60), (7, 60), (8, 60)] {
        let early = at + minutes(wait) - Duration::from_secs(1);
        assert_eq!(
            limiter.acquire(&web, early),
            Err(Duration::from_secs(1)),
            "attempt {attempt} one second early"
        );
        at += minutes(wait);
        assert_eq!(
            limiter.acquire(&web, at),
            Ok(attempt),
            "attempt {attempt} after {wait} min"
        );
    }
    // Quiet for two maximum backoffs, the target is forgotten.
    limiter.expire(at + minutes(119));
    assert_eq!(limiter.len(), 1);
    limiter.expire(at + minutes(120));
    assert!(limiter.is_empty());
}
