//! `selfheal heal` beside a running watcher: it refuses to act while a live watcher holds the
//! Lease, says who holds it and how to override, and acts when told to or when the Lease is free:
//! with an OOM-killed pod seeded, "acts" is the memory fix written to the ConfigMap and the
//! workload rolled, and "refuses" (or `--dry-run`) is neither.
//! The binary talks HTTP to the test API server on a loopback port through a kubeconfig.

use crate::support;

use std::process::Output;

use serde_json::json;
use support::fake_apiserver::{Collection, FakeApiServer};

struct Cluster {
    server: FakeApiServer,
    dir: tempfile::TempDir,
}

async fn cluster() -> Cluster {
    let server = FakeApiServer::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = server.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kubeconfig"),
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\nusers:\n- name: fake\n  user: {{}}\ncurrent-context: fake\n"
        ),
    )
    .unwrap();
    Cluster { server, dir }
}

impl Cluster {
    fn lease(&self, holder: &str, renewed: jiff::Timestamp) {
        self.server.put(
            &Collection::new("apis/coordination.k8s.io/v1", "selfheal", "leases"),
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": "selfheal-watcher", "namespace": "selfheal"},
                "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                    "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}}),
        );
    }

    async fn heal(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_selfheal"));
        command
            .current_dir(self.dir.path())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("SELFHEAL_IGNORE_LEADER")
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .args(["heal", "--store", "configmap"])
            .args(args);
        for (key, value) in env {
            command.env(key, value);
        }
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap()
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn configmaps() -> Collection {
    Collection::core("selfheal", "configmaps")
}

impl Cluster {
    /// A Deployment `web` whose pod's container was just OOM killed at 512Mi: the one thing for
    /// `heal` to act on, a memory fix of 768Mi.
    fn seed_oom_killed_pod(&self) {
        self.server.put(&Collection::apps("shop", "deployments"), json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": "app:1", "resources": {"limits": {"memory": "512Mi"}}}]}}}}));
        self.server.put(&Collection::core("shop", "pods"), json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-5d4c3b2a1-x1", "namespace": "shop", "uid": "uid-web",
                "labels": {"app": "web", "pod-template-hash": "5d4c3b2a1"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d4c3b2a1", "uid": "rs", "controller": true}]},
            "spec": {"containers": [{"name": "app", "image": "app:1", "resources": {"limits": {"memory": "512Mi"}}}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "app", "ready": false, "restartCount": 1,
                "image": "app:1", "imageID": "", "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}}));
    }

    /// The memory fix `heal` wrote for web, if any.
    fn fix_written(&self) -> Option<String> {
        let configmap = self.server.get(&configmaps(), "fixes")?;
        let text = configmap["data"]["fixes.yaml"].as_str()?.to_string();
        let document = selfheal::core::document::FixDocument::parse(&text).ok()?;
        document
            .fixes()
            .find(|fix| fix.namespace == "shop" && fix.resource == "web")
            .map(|fix| fix.value.to_string())
    }

    fn forget_fix(&self) {
        self.server.remove(&configmaps(), "fixes");
        self.seed_oom_killed_pod();
    }

    fn memory_limit(&self) -> serde_json::Value {
        self.server
            .get(&Collection::apps("shop", "deployments"), "web")
            .unwrap()["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
            .clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heal_refuses_to_act_beside_a_live_watcher_unless_told_to() {
    let cluster = cluster().await;
    cluster.seed_oom_killed_pod();
    cluster.lease("selfheal-7d9f-abcde", jiff::Timestamp::now());

    let refused = cluster.heal(&[], &[]).await;
    assert!(!refused.status.success(), "{refused:?}");
    let text = stderr(&refused);
    assert!(
        text.contains("selfheal-7d9f-abcde") && text.contains("--ignore-leader"),
        "names the holder and the way out: {text}"
    );
    assert_eq!(cluster.fix_written(), None, "refused: nothing written");
    assert_eq!(cluster.memory_limit(), "512Mi", "refused: nothing rolled");

    let dry_run = cluster.heal(&["--dry-run"], &[]).await;
    assert!(
        dry_run.status.success(),
        "a dry run acts on nothing: {}",
        stderr(&dry_run)
    );
    assert_eq!(cluster.fix_written(), None, "dry run: nothing written");
    assert_eq!(cluster.memory_limit(), "512Mi", "dry run: nothing rolled");

    let told = cluster.heal(&["--ignore-leader"], &[]).await;
    assert!(told.status.success(), "{}", stderr(&told));
    assert_eq!(cluster.fix_written().as_deref(), Some("768Mi"), "acts");
    assert_eq!(cluster.memory_limit(), "768Mi", "and rolls the workload");

    cluster.forget_fix();
    let by_env = cluster
        .heal(&[], &[("SELFHEAL_IGNORE_LEADER", "true")])
        .await;
    assert!(by_env.status.success(), "{}", stderr(&by_env));
    assert!(
        cluster.fix_written().is_some(),
        "acts when told by the environment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heal_acts_when_the_lease_is_released_or_expired() {
    let cluster = cluster().await;
    let leases = [
        ("no Lease", None),
        ("released", Some(("", jiff::Timestamp::now()))),
        (
            "expired",
            Some((
                "selfheal-7d9f-abcde",
                jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60),
            )),
        ),
    ];
    for (case, lease) in leases {
        cluster.forget_fix();
        if let Some((holder, renewed)) = lease {
            cluster.lease(holder, renewed);
        }
        let healed = cluster.heal(&[], &[]).await;
        assert!(healed.status.success(), "{case}: {}", stderr(&healed));
        assert_eq!(
            cluster.fix_written().as_deref(),
            Some("768Mi"),
            "{case}: the fix is written"
        );
    }
}
