//! `selfheal heal` beside a running watcher: it refuses to act while a live watcher holds the
//! Lease, says who holds it and how to override, and acts when told to or when the Lease is free.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heal_refuses_to_act_beside_a_live_watcher_unless_told_to() {
    let cluster = cluster().await;
    cluster.lease("selfheal-7d9f-abcde", jiff::Timestamp::now());

    let refused = cluster.heal(&[], &[]).await;
    assert!(!refused.status.success(), "{refused:?}");
    let text = stderr(&refused);
    assert!(
        text.contains("selfheal-7d9f-abcde") && text.contains("--ignore-leader"),
        "names the holder and the way out: {text}"
    );

    let told = cluster.heal(&["--ignore-leader"], &[]).await;
    assert!(told.status.success(), "{}", stderr(&told));
    let by_env = cluster
        .heal(&[], &[("SELFHEAL_IGNORE_LEADER", "true")])
        .await;
    assert!(by_env.status.success(), "{}", stderr(&by_env));
    let dry_run = cluster.heal(&["--dry-run"], &[]).await;
    assert!(
        dry_run.status.success(),
        "a dry run acts on nothing: {}",
        stderr(&dry_run)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heal_acts_when_the_lease_is_released_or_expired() {
    let cluster = cluster().await;
    let missing = cluster.heal(&[], &[]).await;
    assert!(missing.status.success(), "no Lease: {}", stderr(&missing));

    cluster.lease("", jiff::Timestamp::now());
    let released = cluster.heal(&[], &[]).await;
    assert!(released.status.success(), "released: {}", stderr(&released));

    let long_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60);
    cluster.lease("selfheal-7d9f-abcde", long_ago);
    let expired = cluster.heal(&[], &[]).await;
    assert!(expired.status.success(), "expired: {}", stderr(&expired));
}
