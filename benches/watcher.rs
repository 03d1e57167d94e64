//! The watcher at scale, against the in-process test API server holding 10,000 pods:
//! time from a pod's status turning OOMKilled to the fix being written, API requests per handled
//! failure, resident memory, CPU while nothing happens, and failover: the leader stopped
//! (SIGTERM: it releases the Lease) or killed (SIGKILL: the Lease must expire), an OOM kill
//! written at that moment, and the time until the next leader has written its fix.
//!
//! Run: cargo build --release && cargo bench --bench watcher

#[path = "../tests/it/support/fake_apiserver.rs"]
#[allow(dead_code)]
mod fake_apiserver;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fake_apiserver::{Collection, FakeApiServer};
use serde_json::{Value, json};

const PODS: usize = 10_000;
const SAMPLES: usize = 30;

fn pod(namespace: &str, app: &str, index: usize, oom: bool) -> Value {
    let last = if oom {
        json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}})
    } else {
        json!({})
    };
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{app}-5d4c3b2a1-{index:05}"), "namespace": namespace, "uid": format!("uid-{namespace}-{app}-{index}"),
            "labels": {"app": app, "pod-template-hash": "5d4c3b2a1", "app.kubernetes.io/name": app},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-5d4c3b2a1"), "uid": "rs", "controller": true}]},
        "spec": {"containers": [{"name": "app", "image": "app:1", "resources": {"requests": {"memory": "64Mi"}, "limits": {"memory": "256Mi"}}}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "app", "ready": true, "restartCount": if oom { 1 } else { 0 },
                "image": "app:1", "imageID": "sha256:1", "state": {"running": {"startedAt": "2026-11-28T00:00:00Z"}}, "lastState": last}]}})
}

fn deployment(namespace: &str, app: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": app, "namespace": namespace},
        "spec": {"selector": {"matchLabels": {"app": app}}, "template": {"metadata": {"labels": {"app": app}},
            "spec": {"containers": [{"name": "app", "image": "app:1", "resources": {"limits": {"memory": "256Mi"}}}]}}}})
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU seconds of a process.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

/// The test API server on a loopback port, and `selfheal serve` (release build) in its own
/// process pointed at it by a kubeconfig: the watcher's memory and CPU are measured alone.
async fn run() {
    let binary = concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/selfheal");
    assert!(
        std::path::Path::new(binary).exists(),
        "build it first: cargo build --release"
    );
    let server = FakeApiServer::new();
    for i in 0..PODS {
        let namespace = format!("team-{}", i % 100);
        server.put(
            &Collection::core(&namespace, "pods"),
            pod(&namespace, &format!("svc-{}", i % 50), i, false),
        );
    }
    for s in 0..SAMPLES {
        server.put(
            &Collection::apps("bench", "deployments"),
            deployment("bench", &format!("app-{s}")),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_port = listener.local_addr().unwrap().port();
    let router = server.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{api_port}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\nusers:\n- name: fake\n  user: {{}}\ncurrent-context: fake\n"
        ),
    )
    .unwrap();
    let started = Instant::now();
    let spawn = |identity: &str| {
        std::process::Command::new(binary)
            .current_dir(dir.path())
            .env("KUBECONFIG", &kubeconfig)
            .env("SELFHEAL_LOG", "warn")
            .env("POD_NAME", identity)
            .args([
                "serve",
                "--store",
                "configmap",
                "--listen",
                &format!("127.0.0.1:{}", free_port()),
                "--health-listen",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut child = spawn("replica-1");
    let pid = child.id();
    let leases = Collection::new("apis/coordination.k8s.io/v1", "selfheal", "leases");
    while server.get(&leases, "selfheal-watcher").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "selfheal never took the lease"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the initial list of 10,000 pods go through the detectors.
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!(
        "selfheal started, elected and listed {PODS} pods within {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let rss_after_sync = rss_kib(pid);

    let cpu_before = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_cpu = (cpu_seconds(pid) - cpu_before) / 10.0 * 100.0;

    let requests_before = server.requests.load(Ordering::Relaxed);
    let mut latencies = Vec::new();
    for s in 0..SAMPLES {
        let app = format!("app-{s}");
        let began = Instant::now();
        server.put(
            &Collection::core("bench", "pods"),
            pod("bench", &app, s, true),
        );
        loop {
            let written = server
                .get(&Collection::core("selfheal", "configmaps"), "fixes")
                .is_some_and(|c| {
                    c["data"]["fixes.yaml"]
                        .as_str()
                        .unwrap_or_default()
                        .contains(&format!("resource: {app}\n"))
                });
            if written {
                break;
            }
            assert!(
                began.elapsed() < Duration::from_secs(30),
                "fix for {app} never written"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(began.elapsed());
    }
    // Lease renewals run on their own clock; count only what the failures caused.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let requests = server.requests.load(Ordering::Relaxed) - requests_before;
    latencies.sort();
    let percentile =
        |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    println!(
        "OOMKilled -> fix written ({SAMPLES} samples, HTTP on loopback): p50 {:?}, p99 {:?}",
        percentile(0.5),
        percentile(0.99)
    );
    println!(
        "API requests per handled failure: {:.1} (events list, StorageClass list, ConfigMap get+replace, Deployment get+patch, Event create; lease renewals included)",
        requests as f64 / SAMPLES as f64
    );
    println!("selfheal CPU while idle: {idle_cpu:.2}% of one core");
    println!(
        "selfheal RSS: {rss_after_sync} KiB after listing {PODS} pods, {} KiB after {SAMPLES} fixes",
        rss_kib(pid)
    );

    // Failover: a follower waits; the leader goes; a pod is OOM killed at that moment.
    let holder = || {
        server
            .get(&leases, "selfheal-watcher")
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(String::from))
    };
    let mut second = spawn("replica-2");
    // The follower has read the Lease and listed nothing (followers keep no caches).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(holder().as_deref(), Some("replica-1"));
    let terminated = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let sigterm = failover(&server, "app-sigterm").await;
    let _ = child.wait();
    assert_eq!(holder().as_deref(), Some("replica-2"));
    let mut third = spawn("replica-3");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = second.kill();
    let sigkill = failover(&server, "app-sigkill").await;
    let _ = second.wait();
    println!(
        "failover, OOMKilled at the leader's exit -> fix written by the next leader: SIGTERM (Lease released) {:.2}s, SIGKILL (Lease expires, 15 s) {:.2}s",
        sigterm.as_secs_f64(),
        sigkill.as_secs_f64()
    );
    let _ = third.kill();
    let _ = third.wait();
}

/// Writes an OOM kill for a new Deployment `app` now and waits for its fix.
async fn failover(server: &FakeApiServer, app: &str) -> Duration {
    server.put(
        &Collection::apps("bench", "deployments"),
        deployment("bench", app),
    );
    let began = Instant::now();
    server.put(
        &Collection::core("bench", "pods"),
        pod("bench", app, 0, true),
    );
    loop {
        let written = server
            .get(&Collection::core("selfheal", "configmaps"), "fixes")
            .is_some_and(|c| {
                c["data"]["fixes.yaml"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(&format!("resource: {app}\n"))
            });
        if written {
            return began.elapsed();
        }
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "fix for {app} never written after the failover"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
