//! The webhook holds every raise to what the cluster enforces beyond LimitRanges: what the
//! namespace's ResourceQuotas leave for the pods (or claims) that exist at once, and the largest
//! node a pod can land on. Each test drives the webhook `Router` with a whole AdmissionReview
//! and the facts the watches would have published, and checks the stored object, the warning
//! and the metric.

use crate::support;

use serde_json::{Value, json};

use selfheal::core::document::FixDocument;
use selfheal::core::headroom::{NodeFacts, QuotaFacts, ScopeRequirement};
use selfheal::webhook::AppState;
use support::{admit, patch_of};

const NS: &str = "e2";
const MI: u128 = 1 << 20;

fn state(fixes: &str) -> AppState {
    let document = FixDocument::parse(&format!("fixes:\n{fixes}")).expect("valid fixes");
    support::state_with_document(&document)
}

fn review(kind: (&str, &str, &str), object: Value) -> Value {
    let (group, version, kind) = kind;
    let name = object["metadata"]["name"].clone();
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "0000-rails",
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": format!("{}s", kind.to_lowercase())},
        "name": name, "namespace": NS, "operation": "CREATE",
        "userInfo": {"username": "alice"},
        "object": object, "oldObject": null, "dryRun": false}})
}

fn deployment(name: &str, replicas: u64, strategy: Value, memory: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": replicas, "strategy": strategy,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [
                {"name": "app", "image": "registry.example.com/app:1",
                 "resources": {"limits": {"memory": memory}}}]}}}})
}

fn pod(name: &str, priority_class: Option<&str>, memory: &str) -> Value {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1",
            "resources": {"limits": {"memory": memory}, "requests": {"memory": memory}}}]}});
    if let Some(class) = priority_class {
        pod["spec"]["priorityClassName"] = json!(class);
    }
    pod
}

fn quota(name: &str, hard: &[(&str, u128)], used: &[(&str, u128)]) -> QuotaFacts {
    let bytes = |entries: &[(&str, u128)]| {
        entries
            .iter()
            .map(|(resource, mib)| (resource.to_string(), mib * MI))
            .collect()
    };
    QuotaFacts {
        namespace: NS.into(),
        name: name.into(),
        hard: bytes(hard),
        used: bytes(used),
        scopes: Vec::new(),
    }
}

fn template_memory(object: &Value) -> (Value, Value) {
    let resources = &object["spec"]["template"]["spec"]["containers"][0]["resources"];
    (
        resources["limits"]["memory"].clone(),
        resources["requests"]["memory"].clone(),
    )
}

fn warnings(answer: &Value) -> String {
    answer["response"]["warnings"].to_string()
}

fn counted(state: &AppState, result: &str) -> bool {
    state.metrics.encode().lines().any(|line| {
        line.starts_with("selfheal_admission_reviews_total{")
            && line.contains(&format!("result=\"{result}\""))
    })
}

/// Issue 14's case: a namespace quota of 768Mi, a Deployment of one replica at 256Mi and a fix
/// of 1Gi. A raise to 1Gi left the ReplicaSet refused by the quota with no pod running at all.
#[tokio::test]
async fn a_deployment_is_raised_only_to_what_the_quota_leaves_for_its_replicas_and_surge() {
    let state = state("  - {namespace: e2, resource: quota, type: memory, value: 1Gi}\n");
    state.limits.publish_quotas([quota(
        "mem",
        &[("limits.memory", 768), ("requests.memory", 768)],
        &[],
    )]);
    let manifest = deployment("quota", 1, json!({"type": "RollingUpdate"}), "256Mi");
    let (answer, stored) = admit(&state, &review(("apps", "v1", "Deployment"), manifest)).await;
    // One replica plus the default 25% surge (rounded up: one pod) at once: 2 × 384Mi = 768Mi,
    // so the pod runs and the next rollout still fits.
    assert_eq!(template_memory(&stored).0, "384Mi", "{answer}");
    let warnings = warnings(&answer);
    assert!(
        warnings.contains(
            "memory fix quota of 1Gi held at 384Mi: ResourceQuota mem has 768Mi of limits.memory left (hard 768Mi, used 0) for 2 pods at once (1 replica + 1 surge)"
        ),
        "{warnings}"
    );
    assert!(counted(&state, "held_by_quota"));
    let note = stored["metadata"]["annotations"]["selfheal.io/applied-fixes"].to_string();
    assert!(
        note.contains("memory=384Mi container app (was 256Mi, fix quota)"),
        "{note}"
    );

    // Admitted again as stored: nothing more fits, nothing changes.
    let (again, unchanged) = admit(
        &state,
        &review(("apps", "v1", "Deployment"), stored.clone()),
    )
    .await;
    assert!(patch_of(&again).is_none(), "{again}");
    assert_eq!(unchanged, stored);
}

#[tokio::test]
async fn the_surge_counts_although_the_replicas_alone_would_fit() {
    let state = state("  - {namespace: e2, resource: web, type: memory, value: 1Gi}\n");
    state
        .limits
        .publish_quotas([quota("mem", &[("limits.memory", 3584)], &[])]);
    let surge =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}});
    let (answer, stored) = admit(
        &state,
        &review(
            ("apps", "v1", "Deployment"),
            deployment("web", 3, surge, "512Mi"),
        ),
    )
    .await;
    // 3 replicas at 1Gi fit 3.5Gi, but a rollout runs 4 pods: 3.5Gi / 4 = 896Mi.
    assert_eq!(template_memory(&stored).0, "896Mi", "{answer}");
    assert!(
        warnings(&answer).contains("for 4 pods at once (3 replicas + 1 surge)"),
        "{answer}"
    );
    // Recreate runs no surge pods: the whole fix fits.
    let state = state_with_quota_and("web", 3584);
    let (_, recreated) = admit(
        &state,
        &review(
            ("apps", "v1", "Deployment"),
            deployment("web", 3, json!({"type": "Recreate"}), "512Mi"),
        ),
    )
    .await;
    assert_eq!(template_memory(&recreated).0, "1Gi");
}

fn state_with_quota_and(resource: &str, limits_mib: u128) -> AppState {
    let state = state(&format!(
        "  - {{namespace: e2, resource: {resource}, type: memory, value: 1Gi}}\n"
    ));
    state
        .limits
        .publish_quotas([quota("mem", &[("limits.memory", limits_mib)], &[])]);
    state
}

#[tokio::test]
async fn a_pods_whole_new_value_must_fit_and_nothing_fitting_leaves_it_alone() {
    let state = state("  - {namespace: e2, resource: debug, type: memory, value: 1Gi}\n");
    state.limits.publish_quotas([quota(
        "mem",
        &[("requests.memory", 1024)],
        &[("requests.memory", 512)],
    )]);
    let (answer, stored) = admit(
        &state,
        &review(("", "v1", "Pod"), pod("debug", None, "128Mi")),
    )
    .await;
    // The pod is not counted yet: its whole 512Mi must fit the 512Mi left.
    let resources = &stored["spec"]["containers"][0]["resources"];
    assert_eq!(resources["requests"]["memory"], "512Mi", "{answer}");
    assert_eq!(resources["limits"]["memory"], "512Mi");

    // Full: the manifest's value stays, and the warning says why.
    state.limits.publish_quotas([quota(
        "mem",
        &[("requests.memory", 1024)],
        &[("requests.memory", 1024)],
    )]);
    let sent = pod("debug", None, "128Mi");
    let (answer, stored) = admit(&state, &review(("", "v1", "Pod"), sent.clone())).await;
    assert!(patch_of(&answer).is_none(), "{answer}");
    assert_eq!(stored, sent);
    assert!(
        warnings(&answer).contains(
            "memory fix debug of 1Gi not applied: ResourceQuota mem has 0 of requests.memory left"
        ),
        "{answer}"
    );
    assert!(counted(&state, "held_by_quota"));
}

#[tokio::test]
async fn a_quota_scoped_to_another_priority_class_holds_nothing() {
    let state = state(
        "  - {namespace: e2, resource: batch, type: memory, value: 1Gi}\n  - {namespace: e2, resource: urgent, type: memory, value: 1Gi}\n",
    );
    let mut high = quota("high-only", &[("limits.memory", 256)], &[]);
    high.scopes.push(ScopeRequirement {
        scope: "PriorityClass".into(),
        operator: "In".into(),
        values: vec!["high".into()],
    });
    state.limits.publish_quotas([high]);
    let (answer, low) = admit(
        &state,
        &review(("", "v1", "Pod"), pod("batch", Some("low"), "128Mi")),
    )
    .await;
    assert_eq!(
        low["spec"]["containers"][0]["resources"]["limits"]["memory"], "1Gi",
        "{answer}"
    );
    assert!(answer["response"].get("warnings").is_none(), "{answer}");
    // The same quota holds a pod of its class.
    let (_, urgent) = admit(
        &state,
        &review(("", "v1", "Pod"), pod("urgent", Some("high"), "128Mi")),
    )
    .await;
    assert_eq!(
        urgent["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "256Mi"
    );
}

#[tokio::test]
async fn no_raise_passes_the_largest_ready_schedulable_node() {
    let state = state("  - {namespace: e2, resource: web, type: memory, value: 64Gi}\n");
    let node = |name: &str, gi: u128, ready: bool, unschedulable: bool| NodeFacts {
        name: name.into(),
        allocatable_memory: Some(gi << 30),
        ready,
        unschedulable,
        labels: Default::default(),
    };
    state.limits.publish_nodes([
        node("worker-1", 15, true, false),
        node("worker-2", 7, true, false),
        node("down", 128, false, false),
        node("cordoned", 96, true, true),
    ]);
    let (answer, stored) = admit(
        &state,
        &review(
            ("apps", "v1", "Deployment"),
            deployment("web", 2, json!(null), "1Gi"),
        ),
    )
    .await;
    assert_eq!(template_memory(&stored).0, "15Gi", "{answer}");
    assert!(
        warnings(&answer).contains("held at 15Gi: the largest Ready schedulable node (worker-1) has 15Gi allocatable memory"),
        "{answer}"
    );
    assert!(counted(&state, "held_by_node"));
}

#[tokio::test]
async fn a_claim_is_held_to_its_storage_class_quota() {
    let state = state("  - {namespace: e2, resource: data, type: storage, value: 50Gi}\n");
    state.limits.publish_quotas([
        quota("storage", &[("requests.storage", 500 * 1024)], &[]),
        quota(
            "gold",
            &[(
                "gold.storageclass.storage.k8s.io/requests.storage",
                20 * 1024,
            )],
            &[(
                "gold.storageclass.storage.k8s.io/requests.storage",
                5 * 1024,
            )],
        ),
    ]);
    let claim = |class: &str| {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": NS},
            "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "8Gi"}}}})
    };
    let (answer, stored) = admit(
        &state,
        &review(("", "v1", "PersistentVolumeClaim"), claim("gold")),
    )
    .await;
    assert_eq!(
        stored["spec"]["resources"]["requests"]["storage"], "15Gi",
        "{answer}"
    );
    assert!(
        warnings(&answer).contains("storage fix data of 50Gi held at 15Gi: ResourceQuota gold has 15Gi of gold.storageclass.storage.k8s.io/requests.storage left (hard 20Gi, used 5Gi) for 1 claim"),
        "{answer}"
    );
    assert!(counted(&state, "held_by_quota"));
    // Another class is held by the namespace-wide storage quota only.
    let (_, silver) = admit(
        &state,
        &review(("", "v1", "PersistentVolumeClaim"), claim("silver")),
    )
    .await;
    assert_eq!(silver["spec"]["resources"]["requests"]["storage"], "50Gi");
}

/// End to end against the test API server's quota admission, with the quota watched as
/// `selfheal serve` watches it: the Deployment of issue 14 is admitted with its template held
/// to what fits, and the pods its ReplicaSet makes from that template (the first, then the
/// next rollout's surge pod) are admitted by the quota. Without the cap the template carries
/// 1Gi and the quota refuses the ReplicaSet's pod, as the real apiserver did.
#[tokio::test]
async fn the_replicasets_pods_pass_the_quota_admission_that_refused_them_before() {
    use kube::api::{Api, ApiResource, DynamicObject, PostParams};
    use kube::core::GroupVersionKind;
    use support::fake_apiserver::{Collection, FakeApiServer};

    let server = FakeApiServer::new();
    server.put(
        &Collection::core(NS, "resourcequotas"),
        json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "mem"},
            "spec": {"hard": {"limits.memory": "768Mi", "requests.memory": "768Mi"}}}),
    );
    let state = state("  - {namespace: e2, resource: quota, type: memory, value: 1Gi}\n");
    support::install_webhook(&server, state.clone());
    let watch = tokio::spawn(selfheal::cluster::facts::keep_current(
        server.client(),
        state.limits.clone(),
    ));
    support::eventually("the quota is watched", || {
        !state.limits.load().quotas(NS).is_empty()
    })
    .await;
    let api = |group: &str, kind: &str, plural: &str| {
        let resource =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", kind), plural);
        Api::<DynamicObject>::namespaced_with(server.client(), NS, &resource)
    };
    let object = |value: Value| -> DynamicObject { serde_json::from_value(value).expect("object") };
    let deployments = api("apps", "Deployment", "deployments");
    let created = deployments
        .create(
            &PostParams::default(),
            &object(deployment(
                "quota",
                1,
                json!({"type": "RollingUpdate"}),
                "256Mi",
            )),
        )
        .await
        .expect("the Deployment is admitted");
    let created = serde_json::to_value(created).expect("json");

    // The ReplicaSet controller's pods, made from the stored template (the Deployment's pod
    // template hash in the name and label, the ReplicaSet as controller).
    let pods = api("", "Pod", "pods");
    let pod_of_template = |suffix: &str| {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("quota-7d9f8c6b5-{suffix}"),
                "labels": {"app": "quota", "pod-template-hash": "7d9f8c6b5"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "quota-7d9f8c6b5", "uid": "1b2c3d4e-0000-4000-8000-000000000001",
                    "controller": true}]},
            "spec": created["spec"]["template"]["spec"].clone()});
        pod["metadata"]["labels"]["app"] = json!("quota");
        object(pod)
    };
    for suffix in ["abcde", "surge"] {
        let pod = pods
            .create(&PostParams::default(), &pod_of_template(suffix))
            .await
            .unwrap_or_else(|e| panic!("pod {suffix} is refused: {e}"));
        let pod = serde_json::to_value(pod).expect("json");
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["limits"]["memory"], "384Mi",
            "a pod of the template is not raised past it"
        );
    }
    assert_eq!(template_memory(&created).0, "384Mi");
    let quota = server
        .get(&Collection::core(NS, "resourcequotas"), "mem")
        .expect("quota");
    assert_eq!(quota["status"]["used"]["limits.memory"], "768Mi");
    watch.abort();
}

/// A re-apply of the held Deployment (its manifest still says 256Mi) while its one pod runs at
/// the held 384Mi: the quota's `used` already counts that pod, so the raise keeps 384Mi and the
/// re-apply causes no rollout to less memory.
#[tokio::test]
async fn a_reapply_keeps_what_its_running_pods_already_hold_in_the_quota() {
    let state = state("  - {namespace: e2, resource: quota, type: memory, value: 1Gi}\n");
    state.limits.publish_quotas([quota(
        "mem",
        &[("limits.memory", 768), ("requests.memory", 768)],
        &[("limits.memory", 384), ("requests.memory", 384)],
    )]);
    let mut live = deployment("quota", 1, json!({"type": "RollingUpdate"}), "384Mi");
    live["metadata"]["generation"] = json!(2);
    live["status"] = json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1});
    let manifest = deployment("quota", 1, json!({"type": "RollingUpdate"}), "256Mi");
    let mut update = review(("apps", "v1", "Deployment"), manifest);
    update["request"]["operation"] = json!("UPDATE");
    update["request"]["oldObject"] = live;
    let (answer, stored) = admit(&state, &update).await;
    // 2 pods at once × 384Mi ≤ 768Mi − 384Mi used + 384Mi of its own running pod.
    assert_eq!(template_memory(&stored).0, "384Mi", "{answer}");
}
