//! The webhook `Router` driven in process with complete AdmissionReview documents from
//! `tests/data/`. Every returned patch is applied to the object that was sent, the result is
//! checked, and the result is sent again: the second answer must carry no patch.

use crate::support;

use serde_json::{Value, json};
use support::{admit, patch_of, read_json, state_with_test_fixes};

const ANNOTATION: &str = "selfheal.io/applied-fixes";

/// Admits `file`; returns the patched object after checking the second pass changes nothing.
async fn admit_twice(file: &str) -> (Value, Value) {
    let state = state_with_test_fixes();
    let review = read_json(file);
    let (answer, patched) = admit(&state, &review).await;
    let mut again = review.clone();
    again["request"]["object"] = patched.clone();
    let (second, unchanged) = admit(&state, &again).await;
    assert!(
        patch_of(&second).is_none(),
        "{file}: second pass patched again: {second}"
    );
    assert_eq!(unchanged, patched);
    (answer, patched)
}

fn container<'a>(pod_spec: &'a Value, name: &str) -> &'a Value {
    pod_spec["containers"]
        .as_array()
        .into_iter()
        .chain(pod_spec["initContainers"].as_array())
        .flatten()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn memory(pod_spec: &Value, name: &str) -> (Value, Value) {
    let resources = &container(pod_spec, name)["resources"];
    (
        resources["limits"]["memory"].clone(),
        resources["requests"]["memory"].clone(),
    )
}

#[tokio::test]
async fn deployment_create_raises_limits_and_keeps_qos() {
    let (answer, object) = admit_twice("deployment-create.json").await;
    let spec = &object["spec"]["template"]["spec"];
    // Burstable container: limit raised, request kept.
    assert_eq!(memory(spec, "webservice"), (json!("4Gi"), json!("1Gi")));
    // requests == limits before: both raised, so the container stays Guaranteed.
    assert_eq!(memory(spec, "workhorse"), (json!("4Gi"), json!("4Gi")));
    // Init containers only change when a fix names them.
    assert_eq!(
        memory(spec, "certificates"),
        (json!("256Mi"), json!("256Mi"))
    );
    // CPU is never touched.
    assert_eq!(
        container(spec, "webservice")["resources"]["limits"]["cpu"],
        "1"
    );
    let note = object["metadata"]["annotations"][ANNOTATION]
        .as_str()
        .unwrap();
    assert!(
        note.contains("memory=4Gi container webservice (was 2Gi"),
        "{note}"
    );
    assert!(note.contains("container workhorse (was 512Mi"), "{note}");
    assert_eq!(
        object["metadata"]["annotations"]["meta.helm.sh/release-name"],
        "gitlab"
    );
    assert!(answer["response"].get("warnings").is_none());
}

#[tokio::test]
async fn deployment_without_resources_or_annotations_gets_valid_parents() {
    let (_, object) = admit_twice("deployment-no-resources-no-annotations.json").await;
    let spec = &object["spec"]["template"]["spec"];
    // No limit means unbounded: selfheal never adds a cap.
    assert!(container(spec, "webservice").get("resources").is_none());
    // A limit without a request: the limit is raised, no request is invented.
    assert_eq!(memory(spec, "workhorse"), (json!("4Gi"), Value::Null));
    // `annotations` was missing: the patch created it.
    assert!(object["metadata"]["annotations"][ANNOTATION].is_string());
}

#[tokio::test]
async fn deployment_update_is_patched_too() {
    let (_, object) = admit_twice("deployment-update.json").await;
    assert_eq!(object["spec"]["replicas"], 3);
    let spec = &object["spec"]["template"]["spec"];
    assert_eq!(memory(spec, "webservice").0, "4Gi");
}

#[tokio::test]
async fn dry_run_gets_the_same_patch() {
    let state = state_with_test_fixes();
    let (_, real) = admit(&state, &read_json("deployment-create.json")).await;
    let (_, dry) = admit(&state, &read_json("deployment-create-dry-run.json")).await;
    assert_eq!(
        dry, real,
        "server-side dry-run must show what a real request would store"
    );
    let metrics = state.metrics.encode();
    assert!(
        metrics.contains("selfheal_patches_applied_total{fix_type=\"memory\"} 2"),
        "dry-run requests are not counted as applied:\n{metrics}"
    );
}

#[tokio::test]
async fn objects_left_alone() {
    for file in [
        "deployment-opted-out.json",
        "deployment-update-deleting.json",
        "pod-kube-system.json",
        "pod-update.json",
        "pvc-update.json",
        "job-update.json",
        "replicaset-create-owned.json",
        "service-create-unhandled-kind.json",
    ] {
        let state = state_with_test_fixes();
        let (answer, _) = admit(&state, &read_json(file)).await;
        assert!(
            patch_of(&answer).is_none(),
            "{file} must not be patched: {answer}"
        );
    }
}

#[tokio::test]
async fn pod_of_a_deployment_gets_the_deployment_fix() {
    let (_, object) = admit_twice("pod-create-owned-by-deployment.json").await;
    let spec = &object["spec"];
    assert_eq!(memory(spec, "webservice"), (json!("4Gi"), json!("1Gi")));
    assert_eq!(memory(spec, "workhorse"), (json!("4Gi"), json!("4Gi")));
    assert!(object["metadata"]["annotations"][ANNOTATION].is_string());
}

#[tokio::test]
async fn bare_pod_matches_by_its_own_name() {
    let (_, object) = admit_twice("pod-create-bare.json").await;
    assert_eq!(
        memory(&object["spec"], "debug"),
        (json!("128Mi"), json!("32Mi"))
    );
}

#[tokio::test]
async fn statefulset_create_raises_named_claim_template_and_memory() {
    let (_, object) = admit_twice("statefulset-create.json").await;
    let templates = object["spec"]["volumeClaimTemplates"].as_array().unwrap();
    assert_eq!(
        templates[0]["spec"]["resources"]["requests"]["storage"],
        "20Gi"
    );
    assert_eq!(
        templates[1]["spec"]["resources"]["requests"]["storage"], "2Gi",
        "the fix names claim `data` only"
    );
    let spec = &object["spec"]["template"]["spec"];
    assert_eq!(memory(spec, "postgresql"), (json!("2Gi"), json!("512Mi")));
    // The annotations map existed but was empty.
    let note = object["metadata"]["annotations"][ANNOTATION]
        .as_str()
        .unwrap();
    assert!(note.contains("storage=20Gi claim data (was 8Gi"), "{note}");
}

#[tokio::test]
async fn statefulset_update_changes_the_template_but_never_claim_templates() {
    let (_, object) = admit_twice("statefulset-update.json").await;
    let templates = object["spec"]["volumeClaimTemplates"].as_array().unwrap();
    assert_eq!(
        templates[0]["spec"]["resources"]["requests"]["storage"], "8Gi",
        "volumeClaimTemplates are immutable: the apiserver would reject the update"
    );
    assert_eq!(
        memory(&object["spec"]["template"]["spec"], "postgresql").0,
        "2Gi"
    );
}

#[tokio::test]
async fn claims_are_raised_on_create() {
    let (_, claim) = admit_twice("pvc-create-statefulset-claim.json").await;
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "20Gi");
    let (_, named) = admit_twice("pvc-create-named.json").await;
    assert_eq!(named["spec"]["resources"]["requests"]["storage"], "50Gi");
}

/// The storage request a claim `name` of namespace gitlab (8Gi asked, `owner` as its
/// controller StatefulSet if any) is admitted with, under the fixes of `fixes_yaml`.
async fn admitted_claim_size(fixes_yaml: &str, name: &str, owner: Option<&str>) -> Value {
    let state = support::state_with_document(
        &selfheal::core::document::FixDocument::parse(fixes_yaml).unwrap(),
    );
    let mut review = read_json("pvc-create-statefulset-claim.json");
    review["request"]["name"] = json!(name);
    review["request"]["object"]["metadata"]["name"] = json!(name);
    if let Some(owner) = owner {
        review["request"]["object"]["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": "StatefulSet", "name": owner,
            "uid": "3d1f0c2a-1b2c-4d5e-8f90-123456789abc", "controller": true,
        }]);
    }
    let (_, claim) = admit(&state, &review).await;
    claim["spec"]["resources"]["requests"]["storage"].clone()
}

#[tokio::test]
async fn a_claim_reading_no_owner_confirms_needs_the_fix_to_name_the_template() {
    let unnamed =
        "fixes:\n- {namespace: gitlab, resource: postgresql, type: storage, value: 20Gi}\n";
    // `data-keycloak-postgresql-0` reads as template `data` of `keycloak-postgresql` or as
    // template `data-keycloak` of `postgresql`: without an owner, the fix of `postgresql`
    // that names no claim must not guess the second reading.
    assert_eq!(
        admitted_claim_size(unnamed, "data-keycloak-postgresql-0", None).await,
        "8Gi"
    );
    // The owner reference confirms the reading: the fix applies to its claims.
    assert_eq!(
        admitted_claim_size(unnamed, "data-keycloak-postgresql-0", Some("postgresql")).await,
        "20Gi"
    );
    // A fix naming the template is believed without an owner.
    let named = "fixes:\n- {namespace: gitlab, resource: postgresql, type: storage, claim: data-keycloak, value: 20Gi}\n";
    assert_eq!(
        admitted_claim_size(named, "data-keycloak-postgresql-0", None).await,
        "20Gi"
    );
}

#[tokio::test]
async fn daemonset_update_and_cronjob_and_its_job() {
    let (_, ds) = admit_twice("daemonset-update.json").await;
    assert_eq!(
        memory(&ds["spec"]["template"]["spec"], "node-exporter"),
        (json!("128Mi"), json!("128Mi"))
    );
    let (_, cronjob) = admit_twice("cronjob-create.json").await;
    assert_eq!(
        memory(
            &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            "backup"
        ),
        (json!("1Gi"), json!("256Mi"))
    );
    let (_, job) = admit_twice("job-create-owned-by-cronjob.json").await;
    assert_eq!(
        memory(&job["spec"]["template"]["spec"], "backup"),
        (json!("1Gi"), json!("256Mi"))
    );
}

#[tokio::test]
async fn namespaces_without_fixes_are_answered_without_a_patch() {
    let state = state_with_test_fixes();
    let mut review = read_json("deployment-create.json");
    review["request"]["namespace"] = json!("elsewhere");
    review["request"]["object"]["metadata"]["namespace"] = json!("elsewhere");
    let (answer, object) = admit(&state, &review).await;
    assert!(patch_of(&answer).is_none());
    assert_eq!(object, review["request"]["object"]);
}

#[tokio::test]
async fn a_smaller_fix_never_lowers_a_limit() {
    let state = state_with_test_fixes();
    let mut review = read_json("deployment-create.json");
    let containers = &mut review["request"]["object"]["spec"]["template"]["spec"]["containers"];
    containers[0]["resources"]["limits"]["memory"] = json!("8Gi");
    containers[1]["resources"]["limits"]["memory"] = json!("4096Mi");
    containers[1]["resources"]["requests"]["memory"] = json!("4096Mi");
    let (answer, _) = admit(&state, &review).await;
    assert!(patch_of(&answer).is_none(), "{answer}");
}

#[tokio::test]
async fn unreadable_limits_are_left_alone_with_a_warning() {
    let state = state_with_test_fixes();
    let mut review = read_json("deployment-create.json");
    review["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        ["memory"] = json!("lots");
    let (answer, object) = admit(&state, &review).await;
    let spec = &object["spec"]["template"]["spec"];
    assert_eq!(memory(spec, "webservice").0, "lots");
    assert_eq!(memory(spec, "workhorse").0, "4Gi");
    let warnings = answer["response"]["warnings"].to_string();
    assert!(warnings.contains("\\\"lots\\\""), "{warnings}");
}

#[tokio::test]
async fn patch_ops_are_minimal_and_escape_annotation_keys() {
    let state = state_with_test_fixes();
    let (answer, _) = admit(&state, &read_json("pod-create-owned-by-deployment.json")).await;
    let patch = serde_json::to_value(patch_of(&answer).unwrap()).unwrap();
    let ops = patch.as_array().unwrap();
    let paths: Vec<&str> = ops.iter().map(|op| op["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        [
            "/metadata/annotations",
            "/spec/containers/0/resources/limits/memory",
            "/spec/containers/1/resources/limits/memory",
            "/spec/containers/1/resources/requests/memory",
        ],
        "{patch}"
    );
    assert_eq!(ops[0]["op"], "add");
    assert!(ops[0]["value"][ANNOTATION].is_string());
    let (answer, _) = admit(&state, &read_json("deployment-create.json")).await;
    let patch = serde_json::to_value(patch_of(&answer).unwrap()).unwrap();
    assert!(
        patch
            .to_string()
            .contains("/metadata/annotations/selfheal.io~1applied-fixes"),
        "{patch}"
    );
}

#[tokio::test]
async fn a_fix_never_exceeds_the_namespace_limitrange_maximum() {
    let state = state_with_test_fixes();
    state.limits.publish(std::collections::BTreeMap::from([(
        "gitlab".to_string(),
        selfheal::core::quantity::ByteQuantity::parse("3Gi").unwrap(),
    )]));
    let review = read_json("deployment-create.json");
    let (answer, object) = admit(&state, &review).await;
    let spec = &object["spec"]["template"]["spec"];
    assert_eq!(memory(spec, "webservice"), (json!("3Gi"), json!("1Gi")));
    assert_eq!(memory(spec, "workhorse"), (json!("3Gi"), json!("3Gi")));
    let warnings = answer["response"]["warnings"].to_string();
    assert!(warnings.contains("LimitRange maximum 3Gi"), "{warnings}");
    let mut again = review.clone();
    again["request"]["object"] = object;
    let (second, _) = admit(&state, &again).await;
    assert!(patch_of(&second).is_none(), "capped values are stable");
}

// ----- UPDATE: re-applied manifests are accepted (issue 7) -----

fn state_with_reapply_fixes() -> selfheal::webhook::AppState {
    let path = support::data_path("fixes-reapply.yaml");
    let text = std::fs::read_to_string(path).expect("fixes-reapply.yaml");
    support::state_with_document(
        &selfheal::core::document::FixDocument::parse(&text).expect("valid fixes"),
    )
}

/// Admits an UPDATE review from `file`; returns the answer and the object as stored, after
/// checking that sending the stored object again (same live object) changes nothing.
async fn admit_update_twice(file: &str) -> (Value, Value) {
    let state = state_with_reapply_fixes();
    let review = read_json(file);
    assert_eq!(review["request"]["operation"], "UPDATE", "{file}");
    let (answer, patched) = admit(&state, &review).await;
    let mut again = review.clone();
    again["request"]["object"] = patched.clone();
    let (second, unchanged) = admit(&state, &again).await;
    assert!(
        patch_of(&second).is_none(),
        "{file}: second pass patched again: {second}"
    );
    assert_eq!(unchanged, patched);
    (answer, patched)
}

fn live_of(file: &str) -> Value {
    read_json(file)["request"]["oldObject"].clone()
}

#[tokio::test]
async fn statefulset_reapply_keeps_the_live_claim_template_and_takes_the_new_image() {
    let (answer, stored) = admit_update_twice("statefulset-reapply.json").await;
    assert!(
        patch_of(&answer).is_some(),
        "the manifest's 1Gi must be replaced"
    );
    let mut expected = live_of("statefulset-reapply.json");
    expected["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!("docker.io/bitnami/redis:7.4.2");
    assert_eq!(
        stored, expected,
        "the live object plus the user's change, nothing else"
    );
    assert_eq!(
        stored["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
        "5Gi"
    );
}

#[tokio::test]
async fn pvc_reapply_keeps_the_live_size_and_takes_the_new_label() {
    let (_, stored) = admit_update_twice("pvc-reapply.json").await;
    let mut expected = live_of("pvc-reapply.json");
    expected["metadata"]["labels"]["team"] = json!("platform");
    assert_eq!(stored, expected);
    assert_eq!(stored["spec"]["resources"]["requests"]["storage"], "3Gi");
}

#[tokio::test]
async fn pvc_user_expansion_passes_untouched() {
    let state = state_with_reapply_fixes();
    let review = read_json("pvc-user-expansion.json");
    let (answer, stored) = admit(&state, &review).await;
    assert!(patch_of(&answer).is_none(), "{answer}");
    assert_eq!(stored["spec"]["resources"]["requests"]["storage"], "10Gi");
}

#[tokio::test]
async fn job_reapply_keeps_the_live_template_and_its_annotation() {
    let (_, stored) = admit_update_twice("job-reapply.json").await;
    let mut expected = live_of("job-reapply.json");
    expected["metadata"]["labels"]["tier"] = json!("batch");
    // The replaced object carried no selfheal annotation: the live one is put back with the
    // live values it describes.
    assert_eq!(stored, expected);
    assert_eq!(
        stored["spec"]["template"]["spec"]["containers"][0]["resources"],
        json!({"limits": {"memory": "512Mi"}, "requests": {"memory": "512Mi"}})
    );
}

#[tokio::test]
async fn pod_update_keeps_the_live_containers_and_takes_the_new_label() {
    let (_, stored) = admit_update_twice("pod-reapply.json").await;
    let mut expected = live_of("pod-reapply.json");
    expected["metadata"]["labels"]["owner"] = json!("sre");
    assert_eq!(stored, expected);
}

#[tokio::test]
async fn keeping_live_values_is_counted_apart_from_raising() {
    let state = state_with_reapply_fixes();
    admit(&state, &read_json("job-reapply.json")).await;
    admit(&state, &read_json("pvc-user-expansion.json")).await;
    let metrics = state.metrics.encode();
    assert!(
        metrics.contains("result=\"kept_live\"") && metrics.contains("kind=\"Job\""),
        "{metrics}"
    );
    assert!(
        !metrics.contains("selfheal_patches_applied_total{"),
        "nothing was raised: {metrics}"
    );
}

/// The memory and storage quantities of an object, by JSON pointer.
fn quantities(value: &Value, path: String, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let here = format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"));
                if (key == "memory" || key == "storage") && child.is_string() {
                    found.push(here);
                } else {
                    quantities(child, here, found);
                }
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                quantities(child, format!("{path}/{index}"), found);
            }
        }
        _ => {}
    }
}

fn bytes(text: &str) -> selfheal::core::quantity::ByteQuantity {
    selfheal::core::quantity::ByteQuantity::parse(text)
        .unwrap_or_else(|e| panic!("{text:?} is not a quantity: {e}"))
}

/// Whether the field at `path` of `kind` is immutable or may not shrink after creation.
fn guarded(kind: &str, path: &str) -> bool {
    match kind {
        "Pod" => path.starts_with("/spec/"),
        "Job" => path.starts_with("/spec/template/"),
        "PersistentVolumeClaim" => path == "/spec/resources/requests/storage",
        "StatefulSet" => path.starts_with("/spec/volumeClaimTemplates/"),
        _ => false,
    }
}

#[tokio::test]
async fn no_update_patch_lowers_a_value_or_writes_other_than_the_live_one_where_guarded() {
    let files: Vec<String> = std::fs::read_dir(support::data_path(""))
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".json"))
        .filter(|name| read_json(name)["request"]["operation"] == "UPDATE")
        .collect();
    assert!(files.len() >= 10, "{files:?}");
    let values = [
        "1Mi", "64Mi", "128Mi", "512Mi", "1Gi", "3Gi", "5Gi", "20Gi", "100Gi",
    ];
    let mut checked = 0;
    for file in &files {
        let original = read_json(file);
        let kind = original["request"]["kind"]["kind"]
            .as_str()
            .unwrap()
            .to_string();
        let mut paths = Vec::new();
        quantities(&original["request"]["object"], String::new(), &mut paths);
        // The file as it is, then every quantity of the incoming object set to each value.
        let mut variants = vec![original.clone()];
        for value in values {
            let mut variant = original.clone();
            for path in &paths {
                *variant["request"]["object"].pointer_mut(path).unwrap() = json!(value);
            }
            variants.push(variant);
        }
        for state in [state_with_test_fixes(), state_with_reapply_fixes()] {
            for review in &variants {
                let incoming = &review["request"]["object"];
                let live = &review["request"]["oldObject"];
                let (answer, stored) = admit(&state, review).await;
                let Some(patch) = patch_of(&answer) else {
                    continue;
                };
                checked += 1;
                let mut touched = Vec::new();
                quantities(&stored, String::new(), &mut touched);
                for path in touched {
                    let after = stored.pointer(&path).and_then(Value::as_str).unwrap();
                    let Some(before) = incoming.pointer(&path).and_then(Value::as_str) else {
                        panic!("{file}: the patch added a quantity at {path}: {patch:?}");
                    };
                    if before == after {
                        continue;
                    }
                    assert!(
                        bytes(after) > bytes(before),
                        "{file}: {path} lowered from {before} to {after}"
                    );
                    if guarded(&kind, &path) {
                        assert_eq!(
                            live.pointer(&path).and_then(Value::as_str),
                            Some(after),
                            "{file}: {path} of a {kind} set to {after}, not its live value"
                        );
                    }
                }
            }
        }
    }
    assert!(
        checked >= 10,
        "the property was exercised on {checked} patches only"
    );
}

#[test]
fn every_kind_is_registered_for_create_and_update() {
    use selfheal::webhook::target::WorkloadKind;
    let path = format!(
        "{}/manifests/base/mutatingwebhookconfiguration.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).unwrap();
    let config: serde_json::Value = serde_norway::from_str(&text).unwrap();
    let webhook = &config["webhooks"][0];
    assert_eq!(webhook["failurePolicy"], "Ignore");
    let mut registered = Vec::new();
    for rule in webhook["rules"].as_array().unwrap() {
        assert_eq!(rule["operations"], json!(["CREATE", "UPDATE"]), "{rule}");
        for resource in rule["resources"].as_array().unwrap() {
            let group = rule["apiGroups"][0].as_str().unwrap();
            let kind = match resource.as_str().unwrap() {
                "pods" => "Pod",
                "persistentvolumeclaims" => "PersistentVolumeClaim",
                "jobs" => "Job",
                "cronjobs" => "CronJob",
                "deployments" => "Deployment",
                "statefulsets" => "StatefulSet",
                "daemonsets" => "DaemonSet",
                "replicasets" => "ReplicaSet",
                other => panic!("unexpected resource {other}"),
            };
            registered.push(WorkloadKind::from_group_kind(group, kind).expect(kind));
        }
    }
    assert_eq!(registered.len(), 8, "every kind the webhook mutates, once");
}
