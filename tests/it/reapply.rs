//! The re-apply matrix (issue 7) against the test API server, which refuses what the real
//! apiserver refuses: for every kind selfheal raises (see `support::reapply`), the manifest is
//! CREATEd through selfheal's real webhook with a fix stored (the raise happens), then the
//! ORIGINAL manifest is re-applied with a harmless change (a label; an image where the kind allows
//! one) as a JSON merge patch, as `kubectl apply`'s three-way strategic merge patch, and as a
//! server-side apply with force. Every request must be accepted, the raised value kept, and for
//! workloads the pod template must be the live one plus the user's change (no second rollout).
//!
//! One re-apply is refused by the apiserver itself, with or without selfheal: a JSON merge patch
//! replaces a Pod's `containers` list whole, dropping the ServiceAccount token mounts the
//! apiserver added at CREATE, which is a forbidden Pod update. For a refusal, the matrix runs the
//! same re-apply without the webhook (the control) and accepts only the very same refusal:
//! selfheal must never turn an accepted re-apply into a refused one. It then re-applies the
//! manifest completed with what the apiserver added (as a user fixing the patch would), which
//! must be accepted with the raised value kept.

use crate::support;

use kube::api::{Api, DynamicObject, PostParams};
use serde_json::{Value, json};

use selfheal::core::document::FixDocument;
use support::fake_apiserver::{Collection, FakeApiServer};
use support::reapply::{
    Case, Mode, case, changed_manifest, check_outcome, check_raised, claim_manifest,
    completed_with, fixes_yaml, reapply, same_refusal, with_last_applied,
};

const NS: &str = "shop";

/// A test API server with selfheal's webhook installed and the matrix's fixes stored.
fn cluster() -> FakeApiServer {
    let server = FakeApiServer::new();
    let document = FixDocument::parse(&fixes_yaml(NS)).expect("valid fixes");
    support::install_webhook(&server, support::state_with_document(&document));
    server
}

fn api_for(server: &FakeApiServer, case: &Case) -> Api<DynamicObject> {
    Api::namespaced_with(server.client(), NS, &case.api_resource())
}

fn collection_for(case: &Case) -> Collection {
    Collection::new(&case.prefix(), NS, case.plural)
}

/// CREATE as `kubectl apply` does the first time; a claim is then bound, as the PV controller
/// would (a bound claim is the one whose storage may be expanded).
async fn create(server: &FakeApiServer, case: &Case, bind: bool) -> Value {
    let object: DynamicObject =
        serde_json::from_value(with_last_applied(&case.manifest)).expect("object");
    api_for(server, case)
        .create(&PostParams::default(), &object)
        .await
        .expect("CREATE accepted");
    let collection = collection_for(case);
    let mut created = server.get(&collection, case.name()).expect("stored");
    check_raised(case, &created, "at CREATE").unwrap();
    if bind {
        let storage = created["spec"]["resources"]["requests"]["storage"].clone();
        created["status"] = json!({"phase": "Bound", "capacity": {"storage": storage}});
        created = server.put(&collection, created);
    }
    created
}

/// The re-apply on a server without selfheal's webhook: the apiserver's own answer.
async fn control(case: &Case, mode: Mode) -> Result<DynamicObject, kube::Error> {
    let server = FakeApiServer::new();
    let object: DynamicObject =
        serde_json::from_value(with_last_applied(&case.manifest)).expect("object");
    let api = api_for(&server, case);
    api.create(&PostParams::default(), &object)
        .await
        .expect("control CREATE accepted");
    let live = server
        .get(&collection_for(case), case.name())
        .expect("stored");
    reapply(&api, mode, &changed_manifest(case, mode), &live).await
}

async fn matrix(kind: &str, mode: Mode) {
    let server = cluster();
    let case = case(kind);
    let live = create(&server, &case, case.plural == "persistentvolumeclaims").await;
    let manifest = changed_manifest(&case, mode);
    if let Err(error) = reapply(&api_for(&server, &case), mode, &manifest, &live).await {
        match control(&case, mode).await {
            Err(without_selfheal) if same_refusal(&without_selfheal, &error) => {
                let completed = completed_with(&manifest, &live);
                if let Err(error) = reapply(&api_for(&server, &case), mode, &completed, &live).await
                {
                    panic!(
                        "{kind} re-applied by {} with the apiserver's additions: refused: {error}",
                        mode.tag()
                    );
                }
            }
            _ => panic!(
                "{kind} re-applied by {}: refused because of selfheal: {error}",
                mode.tag()
            ),
        }
    }
    let stored = server
        .get(&collection_for(&case), case.name())
        .expect("still there");
    check_outcome(&case, mode, &live, &stored).unwrap();
}

macro_rules! matrix_tests {
    ($($test:ident: $kind:literal, $mode:ident;)*) => {$(
        #[tokio::test]
        async fn $test() {
            matrix($kind, Mode::$mode).await;
        }
    )*};
}

matrix_tests! {
    deployment_merge_patch: "Deployment", Merge;
    deployment_kubectl_apply: "Deployment", KubectlApply;
    deployment_server_side_apply: "Deployment", ServerSideApply;
    statefulset_merge_patch: "StatefulSet", Merge;
    statefulset_kubectl_apply: "StatefulSet", KubectlApply;
    statefulset_server_side_apply: "StatefulSet", ServerSideApply;
    daemonset_merge_patch: "DaemonSet", Merge;
    daemonset_kubectl_apply: "DaemonSet", KubectlApply;
    daemonset_server_side_apply: "DaemonSet", ServerSideApply;
    cronjob_merge_patch: "CronJob", Merge;
    cronjob_kubectl_apply: "CronJob", KubectlApply;
    cronjob_server_side_apply: "CronJob", ServerSideApply;
    job_merge_patch: "Job", Merge;
    job_kubectl_apply: "Job", KubectlApply;
    job_server_side_apply: "Job", ServerSideApply;
    pod_merge_patch: "Pod", Merge;
    pod_kubectl_apply: "Pod", KubectlApply;
    pod_server_side_apply: "Pod", ServerSideApply;
    claim_merge_patch: "PersistentVolumeClaim", Merge;
    claim_kubectl_apply: "PersistentVolumeClaim", KubectlApply;
    claim_server_side_apply: "PersistentVolumeClaim", ServerSideApply;
}

/// A claim still Pending (a WaitForFirstConsumer class) has an immutable spec: its re-apply is
/// accepted only if it carries exactly the live, raised size.
#[tokio::test]
async fn a_pending_claims_reapply_is_accepted() {
    let server = cluster();
    let case = case("PersistentVolumeClaim");
    let live = create(&server, &case, false).await;
    for mode in Mode::ALL {
        let manifest = changed_manifest(&case, mode);
        let current = server
            .get(&collection_for(&case), "uploads")
            .expect("claim");
        if let Err(error) = reapply(&api_for(&server, &case), mode, &manifest, &current).await {
            panic!(
                "pending claim re-applied by {}: refused: {error}",
                mode.tag()
            );
        }
        let stored = server
            .get(&collection_for(&case), "uploads")
            .expect("claim");
        check_outcome(&case, mode, &live, &stored).unwrap();
    }
}

/// A deliberate expansion by the user (3Gi → 10Gi, above the fix) passes through unchanged.
#[tokio::test]
async fn a_users_claim_expansion_passes_through() {
    let server = cluster();
    let case = case("PersistentVolumeClaim");
    let live = create(&server, &case, true).await;
    reapply(
        &api_for(&server, &case),
        Mode::KubectlApply,
        &claim_manifest("10Gi"),
        &live,
    )
    .await
    .expect("the expansion is accepted");
    let stored = server
        .get(&collection_for(&case), "uploads")
        .expect("claim");
    assert_eq!(stored["spec"]["resources"]["requests"]["storage"], "10Gi");
}
