//! End-to-end against a real cluster running selfheal (`kubectl apply -k manifests/`).
//!
//! The scenarios are `#[ignore]`d: run them with `SELFHEAL_E2E_KUBECONFIG` naming a kubeconfig
//! file and `cargo test --locked -- --ignored e2e_cluster` (asked for without it, they fail). The
//! one test of an ordinary run prints that they were skipped, or, with the variable set, checks
//! that the cluster answers. Set `SELFHEAL_E2E_NAMESPACE` if selfheal is not installed in the
//! namespace `selfheal`.
//!
//! The scenario: record a fix in the ConfigMap `fixes`, create a Deployment and a PVC in a fresh
//! test namespace, and see the apiserver store them patched by the webhook, on CREATE and on
//! UPDATE. The test namespace is deleted at the end.
//!
//! The re-apply matrix (issue 7, shared with `tests/reapply.rs`): for every kind selfheal raises,
//! CREATE through the real apiserver with selfheal's webhook installed and a fix recorded, then
//! re-apply the original manifest with a harmless change as a JSON merge patch, as `kubectl
//! apply`'s three-way strategic merge patch and as a forced server-side apply: every request
//! accepted (or refused exactly as without selfheal), the raised value kept, no second rollout.

use crate::support;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::json;

use selfheal::core::document::FixDocument;
use selfheal::core::fix::{Fix, FixRecord};
use selfheal::metrics::Metrics;
use selfheal::store::{ConfigMapStore, FixStore};

const SKIPPED: &str = "SKIPPED end-to-end: the e2e_cluster tests are ignored without a cluster; set SELFHEAL_E2E_KUBECONFIG to a kubeconfig file and run `cargo test --locked -- --ignored e2e_cluster`";

/// Says something in the test output even when the harness captures it: written to the
/// process's stderr directly (the harness captures `eprintln!`).
fn notice(text: &str) {
    let _ = std::fs::OpenOptions::new()
        .append(true)
        .open("/dev/stderr")
        .and_then(|mut stderr| writeln!(stderr, "{text}"));
}

/// The client of the cluster `SELFHEAL_E2E_KUBECONFIG` names. The tests that call it are
/// ignored unless asked for, and asked for without a cluster they fail: an end-to-end test
/// never passes without running.
async fn cluster() -> Client {
    let path = std::env::var("SELFHEAL_E2E_KUBECONFIG")
        .expect("SELFHEAL_E2E_KUBECONFIG names the kubeconfig of the cluster to test against");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = Kubeconfig::read_from(&path).expect("readable kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("usable kubeconfig");
    Client::try_from(config).expect("client")
}

/// The one end-to-end check of every run: without `SELFHEAL_E2E_KUBECONFIG` it prints why the
/// others are ignored (and checks nothing else); with it, the kubeconfig must name a cluster
/// that answers, so a wrong path or an unreachable cluster fails here and not only under
/// `--ignored`.
#[tokio::test]
async fn a_given_e2e_kubeconfig_names_a_cluster_that_answers() {
    if std::env::var_os("SELFHEAL_E2E_KUBECONFIG").is_none() {
        notice(SKIPPED);
        return;
    }
    let version = cluster()
        .await
        .apiserver_version()
        .await
        .expect("the cluster of SELFHEAL_E2E_KUBECONFIG answers");
    notice(&format!(
        "end-to-end: cluster {}.{} reachable; the scenarios run with `cargo test --locked -- --ignored e2e_cluster`",
        version.major, version.minor
    ));
}

/// A fresh namespace for one test (deleted by the test at its end).
async fn test_namespace(client: &Client, prefix: &str) -> (Api<Namespace>, String) {
    let name = format!("{prefix}-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("create test namespace");
    (namespaces, name)
}

fn selfheal_namespace() -> String {
    std::env::var("SELFHEAL_E2E_NAMESPACE").unwrap_or_else(|_| "selfheal".into())
}

fn fix(namespace: &str, resource: &str, fix_type: &str, value: &str) -> Fix {
    Fix::from_record(FixRecord {
        namespace: Some(namespace.into()),
        resource: Some(resource.into()),
        fix_type: Some(fix_type.into()),
        value: Some(value.into()),
        reason: Some("selfheal end-to-end test".into()),
        ..FixRecord::default()
    })
    .expect("valid fix")
}

fn deployment(name: &str, memory: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "app", "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"memory": "32Mi"}, "limits": {"memory": memory}}
                }]}
            }
        }
    }))
    .expect("deployment")
}

fn limit_of(deployment: &Deployment) -> String {
    let value = serde_json::to_value(deployment).expect("json");
    value["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
#[ignore = "needs a real cluster: set SELFHEAL_E2E_KUBECONFIG and run with --ignored"]
async fn recorded_fixes_are_applied_on_create_and_update() {
    let client = cluster().await;
    let (namespaces, namespace) = test_namespace(&client, "selfheal-e2e").await;

    let store = FixStore::ConfigMap(Arc::new(ConfigMapStore::new(
        client.clone(),
        &selfheal_namespace(),
        "fixes",
        Arc::new(Metrics::new()),
    )));
    store
        .record(fix(&namespace, "e2e-web", "memory", "96Mi"))
        .await
        .expect("record memory fix");
    store
        .record(fix(&namespace, "e2e-data", "storage", "2Gi"))
        .await
        .expect("record storage fix");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    // The webhook learns the fix through its watch: wait for it with server-side dry runs.
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let mut seen = false;
    for _ in 0..60 {
        let preview = deployments
            .create(&dry_run, &deployment("e2e-web", "64Mi"))
            .await
            .expect("dry-run create");
        if limit_of(&preview) == "96Mi" {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        seen,
        "the webhook never applied the recorded fix (is selfheal installed in {}?)",
        selfheal_namespace()
    );

    let created = deployments
        .create(&PostParams::default(), &deployment("e2e-web", "64Mi"))
        .await
        .expect("create");
    assert_eq!(limit_of(&created), "96Mi");
    let annotations = created.metadata.annotations.clone().unwrap_or_default();
    assert!(
        annotations.contains_key("selfheal.io/applied-fixes"),
        "{annotations:?}"
    );

    // UPDATE: a client re-applies the old limit; the apiserver accepts the patched update.
    let mut stale = deployment("e2e-web", "64Mi");
    stale.metadata.resource_version = created.metadata.resource_version.clone();
    let updated = deployments
        .replace("e2e-web", &PostParams::default(), &stale)
        .await
        .expect("update accepted");
    assert_eq!(limit_of(&updated), "96Mi");
    let scaled = deployments
        .patch(
            "e2e-web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .expect("scale accepted");
    assert_eq!(limit_of(&scaled), "96Mi");

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "e2e-data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .expect("pvc");
    let created = claims
        .create(&PostParams::default(), &claim)
        .await
        .expect("create claim");
    let requested = created
        .spec
        .and_then(|s| s.resources)
        .and_then(|r| r.requests)
        .unwrap_or_default();
    assert_eq!(requested.get("storage").map(|q| q.0.as_str()), Some("2Gi"));
    // A metadata-only UPDATE of the claim must still be accepted (claims are patched on CREATE only).
    claims
        .patch(
            "e2e-data",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"e2e": "yes"}}})),
        )
        .await
        .expect("claim update accepted");

    namespaces
        .delete(&namespace, &DeleteParams::default())
        .await
        .expect("delete test namespace");
}

/// The watcher story on a real cluster: a Deployment's pod whose status says OOMKilled (written
/// through the status subresource, as the kubelet would; the pod is bound to a node that does not
/// exist, so no kubelet overwrites it) gets a memory fix persisted in the ConfigMap `fixes`, and
/// the Deployment is rolled with the raised limit.
#[tokio::test]
#[ignore = "needs a real cluster: set SELFHEAL_E2E_KUBECONFIG and run with --ignored"]
async fn watcher_fixes_an_oom_killed_deployment() {
    let client = cluster().await;
    let (namespaces, namespace) = test_namespace(&client, "selfheal-e2e-oom").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let mut oom_web = deployment("oom-web", "64Mi");
    if let Some(spec) = oom_web.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        spec.node_name = Some("selfheal-e2e-no-such-node".into());
    }
    deployments
        .create(&PostParams::default(), &oom_web)
        .await
        .expect("create deployment");

    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &namespace);
    let mut pod_name = None;
    for _ in 0..60 {
        let list = pods.list(&Default::default()).await.expect("pods");
        if let Some(name) = list.items.first().and_then(|p| p.metadata.name.clone()) {
            pod_name = Some(name);
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let pod_name = pod_name.expect("the Deployment created a pod");
    let status = json!({"status": {"phase": "Running", "containerStatuses": [{
        "name": "app", "ready": false, "restartCount": 1, "image": "registry.k8s.io/pause:3.10", "imageID": "",
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}});
    pods.patch_status(&pod_name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status subresource write");

    let mut raised = String::new();
    for _ in 0..60 {
        raised = limit_of(&deployments.get("oom-web").await.expect("deployment"));
        if raised != "64Mi" {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(
        raised, "320Mi",
        "64Mi + 256Mi, rounded to 64Mi (is selfheal running with --watch?)"
    );
    let store = FixStore::ConfigMap(Arc::new(ConfigMapStore::new(
        client.clone(),
        &selfheal_namespace(),
        "fixes",
        Arc::new(Metrics::new()),
    )));
    let document = store.read_document().await.expect("fixes readable");
    assert!(
        document.fixes().any(|f| f.namespace == namespace
            && f.resource == "oom-web"
            && f.value.as_str() == "320Mi"),
        "the fix is persisted in the ConfigMap"
    );
    namespaces
        .delete(&namespace, &DeleteParams::default())
        .await
        .expect("delete test namespace");
}

/// selfheal (installed with SELFHEAL_MANAGE_CERTS=true) wrote its CA into the webhook
/// configuration, and the CA matches the Secret every replica serves from.
#[tokio::test]
#[ignore = "needs a real cluster: set SELFHEAL_E2E_KUBECONFIG and run with --ignored"]
async fn ca_bundle_is_written_and_matches_the_certificate_secret() {
    let client = cluster().await;
    let configs: Api<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration> =
        Api::all(client.clone());
    let config = configs
        .get("selfheal")
        .await
        .expect("MutatingWebhookConfiguration selfheal");
    let bundle = config.webhooks.unwrap_or_default()[0]
        .client_config
        .ca_bundle
        .clone()
        .expect("caBundle written by selfheal");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client, &selfheal_namespace());
    let secret = secrets
        .get("selfheal-webhook-tls")
        .await
        .expect("certificate Secret");
    let material =
        selfheal::certs::selfcert::Material::from_secret(&secret).expect("complete material");
    let bundle = String::from_utf8(bundle.0).expect("PEM");
    assert!(
        bundle.contains(&material.ca_cert),
        "the served certificate's CA is trusted"
    );
}

/// An expired certificate in a TLS Secret is found, with the expiry as evidence.
#[tokio::test]
#[ignore = "needs a real cluster: set SELFHEAL_E2E_KUBECONFIG and run with --ignored"]
async fn expired_certificate_is_detected() {
    let client = cluster().await;
    let (namespaces, namespace) = test_namespace(&client, "selfheal-e2e-cert").await;
    let start = time::OffsetDateTime::now_utc() - time::Duration::days(100);
    let expired = selfheal::certs::generate::generate_valid_between(
        &["old.example".into()],
        start,
        time::Duration::days(30),
    )
    .expect("certs");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), &namespace);
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "old-tls"}, "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": expired.cert, "tls.key": expired.key}
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    let view = selfheal::heal::inspect::gather(&client, Some(&namespace))
        .await
        .expect("gather");
    let findings = selfheal::heal::inspect::findings(
        &view,
        &Default::default(),
        jiff::Timestamp::now(),
        &Default::default(),
    );
    let finding = findings
        .iter()
        .find(|f| f.problem.object_name == "old-tls")
        .expect("finding for the expired Secret");
    assert_eq!(finding.problem.kind.name(), "CertificateExpired");
    assert!(finding.diagnosis.evidence.contains("expired at"));
    namespaces
        .delete(&namespace, &DeleteParams::default())
        .await
        .expect("delete test namespace");
}

/// Waits (bounded) until the webhook applies the fixes recorded for `namespace`: the claim's fix
/// is recorded last, so once a dry-run CREATE of the claim is raised, every fix is known.
async fn wait_for_fixes(client: &Client, namespace: &str) -> bool {
    let case = support::reapply::case("PersistentVolumeClaim");
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &case.api_resource());
    let object: DynamicObject = serde_json::from_value(case.manifest.clone()).expect("claim");
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    for _ in 0..60 {
        if let Ok(preview) = api.create(&dry_run, &object).await {
            let preview = serde_json::to_value(&preview).unwrap_or_default();
            if support::reapply::check_raised(&case, &preview, "dry run").is_ok() {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    false
}

/// CREATE `case` in `namespace` as `kubectl apply` does; the stored object.
async fn create_case(
    client: &Client,
    namespace: &str,
    case: &support::reapply::Case,
) -> Result<(Api<DynamicObject>, serde_json::Value), String> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &case.api_resource());
    let object: DynamicObject =
        serde_json::from_value(support::reapply::with_last_applied(&case.manifest))
            .map_err(|e| e.to_string())?;
    let created = api
        .create(&PostParams::default(), &object)
        .await
        .map_err(|e| format!("{} CREATE refused: {e}", case.kind))?;
    let live = serde_json::to_value(&created).map_err(|e| e.to_string())?;
    Ok((api, live))
}

/// One cell of the matrix; `control` is a namespace without fixes, where a refusal is checked
/// to be the apiserver's own.
async fn reapply_case(
    client: &Client,
    namespace: &str,
    control: &str,
    kind: &str,
    mode: support::reapply::Mode,
) -> Result<(), String> {
    use support::reapply::{
        case, changed_manifest, check_outcome, check_raised, completed_with, reapply,
    };
    let case = case(kind);
    let (api, live) = create_case(client, namespace, &case).await?;
    check_raised(&case, &live, "at CREATE")?;
    let manifest = changed_manifest(&case, mode);
    if let Err(error) = reapply(&api, mode, &manifest, &live).await {
        let (control_api, control_live) = create_case(client, control, &case).await?;
        let without_selfheal = reapply(&control_api, mode, &manifest, &control_live).await;
        let same = without_selfheal
            .as_ref()
            .err()
            .is_some_and(|e| support::reapply::same_refusal(e, &error));
        if !same {
            return Err(format!(
                "{kind} re-applied by {}: refused because of selfheal: {error}",
                mode.tag()
            ));
        }
        reapply(&api, mode, &completed_with(&manifest, &live), &live)
            .await
            .map_err(|e| {
                format!(
                    "{kind} re-applied by {} with the apiserver's additions: refused: {e}",
                    mode.tag()
                )
            })?;
    }
    let stored = api
        .get(case.name())
        .await
        .map_err(|e| format!("{kind}: read back: {e}"))?;
    let stored = serde_json::to_value(&stored).map_err(|e| e.to_string())?;
    check_outcome(&case, mode, &live, &stored)
}

#[tokio::test]
#[ignore = "needs a real cluster: set SELFHEAL_E2E_KUBECONFIG and run with --ignored"]
async fn reapplied_manifests_are_accepted_and_keep_raised_values() {
    let client = cluster().await;
    let store = FixStore::ConfigMap(Arc::new(ConfigMapStore::new(
        client.clone(),
        &selfheal_namespace(),
        "fixes",
        Arc::new(Metrics::new()),
    )));
    let mut failures = Vec::new();
    let mut created = Vec::new();
    for mode in support::reapply::Mode::ALL {
        let (namespaces, namespace) =
            test_namespace(&client, &format!("selfheal-e2e-reapply-{}", mode.tag())).await;
        let (_, control) =
            test_namespace(&client, &format!("selfheal-e2e-control-{}", mode.tag())).await;
        created.push((namespaces.clone(), namespace.clone()));
        created.push((namespaces, control.clone()));
        let document =
            FixDocument::parse(&support::reapply::fixes_yaml(&namespace)).expect("matrix fixes");
        for fix in document.fixes() {
            store.record(fix.clone()).await.expect("record fix");
        }
        if !wait_for_fixes(&client, &namespace).await {
            failures.push(format!(
                "the webhook never applied the fixes for {namespace} (is selfheal installed in {}?)",
                selfheal_namespace()
            ));
            continue;
        }
        for kind in support::reapply::KINDS {
            if let Err(problem) = reapply_case(&client, &namespace, &control, kind, mode).await {
                failures.push(problem);
            }
        }
    }
    for (namespaces, namespace) in created {
        let _ = namespaces
            .delete(&namespace, &DeleteParams::default())
            .await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
