//! Every failure state of issue 10, written as the kubelet, the scheduler and the volume
//! controllers write them (`tests/data/cluster-dump-states.json`, one `kubectl get pods,pvc,
//! events,secrets,deployments,statefulsets,jobs,cronjobs,services,endpointslices,replicasets -A
//! -o json` List), found with the right problem, a precise cause and the cluster's own words as
//! evidence:
//!
//! - offline: `ClusterView::from_dump` then `inspect::findings`, the path of
//!   `selfheal health --from-file` (and the binary itself);
//! - live: the same objects created in the test API server, read by `inspect::gather` then
//!   `inspect::diagnose_view`, as `selfheal health` and `selfheal heal` do.
//!
//! "Now" is 12:00:00; states with a grace period started at most a minute before unless the row
//! says otherwise, so a row that is found proves it was reported at once.

use crate::support;

use std::process::Command;

use jiff::Timestamp;
use serde_json::Value;
use support::fake_apiserver::{Collection, FakeApiServer};

use selfheal::heal::detect::Thresholds;
use selfheal::heal::inspect::{self, ClusterView, Finding};

const DUMP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/cluster-dump-states.json"
);

fn now() -> Timestamp {
    "2026-01-01T12:00:00Z".parse().unwrap()
}

/// One expected finding.
struct Expected {
    object: &'static str,
    problem: &'static str,
    cause: &'static str,
    /// Words of the kubelet's, the scheduler's or the controller's message that the evidence
    /// must quote.
    evidence: &'static str,
}

const fn row(
    object: &'static str,
    problem: &'static str,
    cause: &'static str,
    evidence: &'static str,
) -> Expected {
    Expected {
        object,
        problem,
        cause,
        evidence,
    }
}

/// Every finding the dump holds, and nothing else (the Deployment, StatefulSet, Job, CronJob,
/// Service, EndpointSlice and the Opaque Secret are read and are no finding).
const EXPECTED: &[Expected] = &[
    // Running, ready false, `Unhealthy` for 10 s of a container started a minute ago.
    row(
        "Pod/web-5d4f8b7c9-r8k2p",
        "NotReady",
        "readiness probe failing",
        "Unhealthy: Readiness probe failed: HTTP probe failed with statuscode: 503",
    ),
    row(
        "Pod/web-5d4f8b7c9-evct1",
        "Evicted",
        "evicted: node low on memory",
        "The node was low on resource: memory. Threshold quantity: 100Mi",
    ),
    // A Job's pod (restartPolicy Never) exiting 1: its termination message is quoted.
    row(
        "Pod/migrate-x7k2q",
        "ContainerFailed",
        "exited with an error",
        "container migrate exited with code 1 (Error): migration 0042_orders failed: relation \"customers\" does not exist",
    ),
    row(
        "Pod/web-5d4f8b7c9-runce",
        "RunContainerError",
        "command not found in image",
        "exec: \"/app/server\": stat /app/server: no such file or directory",
    ),
    row(
        "Pod/web-5d4f8b7c9-prest",
        "PreStartHookError",
        "kubelet internal container hook failed",
        "Internal PreStartContainer hook failed: rpc error",
    ),
    row(
        "Pod/web-5d4f8b7c9-precr",
        "PreCreateHookError",
        "kubelet internal container hook failed",
        "Internal PreCreateContainer hook failed: topology affinity error",
    ),
    row(
        "Pod/web-5d4f8b7c9-never",
        "ErrImageNeverPull",
        "image not on node, pull policy Never",
        "Container image \"registry.example.com/shop/app:dev\" is not present with pull policy of Never",
    ),
    row(
        "Pod/web-5d4f8b7c9-inspc",
        "ImageInspectError",
        "image inspection failed",
        "Failed to inspect image \"registry.example.com/shop/app:1.4.2\"",
    ),
    row(
        "Pod/web-5d4f8b7c9-badnm",
        "InvalidImageName",
        "invalid image name",
        "invalid reference format: repository name (Shop/App) must be lowercase",
    ),
    row(
        "Pod/web-5d4f8b7c9-crerr",
        "CreateContainerError",
        "container runtime could not create the container",
        "failed to reserve container name",
    ),
    row(
        "Pod/web-5d4f8b7c9-nokey",
        "CreateContainerConfigError",
        "missing key in Secret",
        "couldn't find key password in Secret shop/db-creds",
    ),
    // Gated for ten minutes (gates are set on purpose: reported after the grace period).
    row(
        "Pod/batch-worker-gated",
        "SchedulingGated",
        "held by scheduling gates",
        "Scheduling is blocked due to non-empty scheduling gates (gates: kueue.x-k8s.io/admission;",
    ),
    row(
        "Pod/web-5d4f8b7c9-nomem",
        "Unschedulable",
        "insufficient memory on nodes",
        "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.",
    ),
    // Scheduled 30 s ago; the FailedMount event has no involvedObject.uid.
    row(
        "Pod/web-5d4f8b7c9-mount",
        "StuckCreating",
        "missing Secret",
        "FailedMount: MountVolume.SetUp failed for volume \"data\" : secret \"db-creds\" not found",
    ),
    row(
        "Pod/web-5d4f8b7c9-sandb",
        "StuckCreating",
        "pod sandbox creation failed",
        "FailedCreatePodSandBox: Failed to create pod sandbox: rpc error",
    ),
    row(
        "Pod/web-5d4f8b7c9-cninr",
        "StuckCreating",
        "node network plugin not ready",
        "cni plugin not initialized",
    ),
    // A Warning no catalogue row knows: quoted, never the bare problem name.
    row(
        "Pod/web-5d4f8b7c9-unexp",
        "StuckCreating",
        "unknown",
        "FailedSync: error determining status: rpc error: code = Unknown desc = Error: No such container: 4c1d9e",
    ),
    // Created a minute ago; the ProvisioningFailed event is an events.k8s.io/v1 Event.
    row(
        "PersistentVolumeClaim/data-orders-0",
        "ClaimPending",
        "volume provisioning failed",
        "ProvisioningFailed: failed to provision volume with StorageClass \"standard\": rpc error: code = ResourceExhausted",
    ),
    row(
        "PersistentVolumeClaim/data-search-0",
        "ClaimPending",
        "unknown",
        "VolumeMismatch: Cannot bind to requested volume \"pv-search-0\": storageClassName does not match",
    ),
    row(
        "PersistentVolumeClaim/data-ledger-0",
        "ClaimLost",
        "bound volume is gone",
        "ClaimLost: Bound claim has lost its PersistentVolume. Data on the volume is lost!",
    ),
    // Expires 2026-01-20: within the 30-day window.
    row(
        "Secret/shop-tls",
        "CertificateExpiringSoon",
        "certificate invalid",
        "expires",
    ),
];

fn object_of(finding: &Finding) -> String {
    format!(
        "{}/{}",
        finding.problem.object_kind, finding.problem.object_name
    )
}

/// Every expected row is found as expected, and nothing else is found.
fn assert_findings(findings: &[Finding], how: &str) {
    for expected in EXPECTED {
        let found: Vec<&Finding> = findings
            .iter()
            .filter(|f| object_of(f) == expected.object)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{how}: {} has {} findings: {found:#?}",
            expected.object,
            found.len()
        );
        let finding = found[0];
        assert_eq!(
            (
                finding.problem.kind.name(),
                finding.diagnosis.cause.as_str()
            ),
            (expected.problem, expected.cause),
            "{how}: {}: {:?}",
            expected.object,
            finding.diagnosis
        );
        assert!(
            finding.diagnosis.evidence.contains(expected.evidence),
            "{how}: {}: evidence {:?} does not quote {:?}",
            expected.object,
            finding.diagnosis.evidence,
            expected.evidence
        );
    }
    let unexpected: Vec<String> = findings
        .iter()
        .map(object_of)
        .filter(|object| !EXPECTED.iter().any(|e| e.object == object))
        .collect();
    assert!(unexpected.is_empty(), "{how}: unexpected {unexpected:?}");
}

fn dump_items() -> Vec<Value> {
    let text = std::fs::read_to_string(DUMP).unwrap();
    let dump: Value = serde_json::from_str(&text).unwrap();
    dump["items"].as_array().unwrap().clone()
}

#[test]
fn every_state_is_found_offline_from_a_dump() {
    let text = std::fs::read_to_string(DUMP).unwrap();
    let view = ClusterView::from_dump(&text).expect("the dump reads");
    assert!(view.unreadable.is_empty(), "{:?}", view.unreadable);
    let findings = inspect::findings(&view, &Default::default(), now(), &Thresholds::default());
    assert_findings(&findings, "offline");
}

#[test]
fn the_missing_key_and_the_missing_command_are_named() {
    let text = std::fs::read_to_string(DUMP).unwrap();
    let view = ClusterView::from_dump(&text).unwrap();
    let findings = inspect::findings(&view, &Default::default(), now(), &Thresholds::default());
    let missing = |object: &str| {
        findings
            .iter()
            .find(|f| object_of(f) == object)
            .and_then(|f| f.diagnosis.missing.clone())
    };
    assert_eq!(
        missing("Pod/web-5d4f8b7c9-nokey").as_deref(),
        Some("key password in Secret shop/db-creds")
    );
    assert_eq!(
        missing("Pod/web-5d4f8b7c9-runce").as_deref(),
        Some("/app/server")
    );
    assert_eq!(
        missing("Pod/web-5d4f8b7c9-mount").as_deref(),
        Some("db-creds")
    );
}

/// Without their events, the states that only events reveal at once wait for the grace period:
/// the events are what makes them immediate.
#[test]
fn without_their_events_the_young_states_wait_for_the_grace_period() {
    let items: Vec<Value> = dump_items()
        .into_iter()
        .filter(|item| item["kind"] != "Event")
        .collect();
    let dump = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    let view = ClusterView::from_dump(&dump.to_string()).unwrap();
    let findings = inspect::findings(&view, &Default::default(), now(), &Thresholds::default());
    for young in [
        "Pod/web-5d4f8b7c9-r8k2p",
        "Pod/web-5d4f8b7c9-mount",
        "Pod/web-5d4f8b7c9-sandb",
        "Pod/web-5d4f8b7c9-unexp",
        "PersistentVolumeClaim/data-orders-0",
        "PersistentVolumeClaim/data-search-0",
    ] {
        assert!(
            !findings.iter().any(|f| object_of(f) == young),
            "{young} reported within its grace period without a Warning"
        );
    }
    // What the status names stays immediate without any event.
    for named in [
        "Pod/web-5d4f8b7c9-evct1",
        "Pod/migrate-x7k2q",
        "Pod/web-5d4f8b7c9-runce",
        "Pod/web-5d4f8b7c9-nomem",
        "PersistentVolumeClaim/data-ledger-0",
    ] {
        assert!(
            findings.iter().any(|f| object_of(f) == named),
            "{named} not reported from its status alone"
        );
    }
    let lost = findings
        .iter()
        .find(|f| object_of(f) == "PersistentVolumeClaim/data-ledger-0")
        .unwrap();
    assert_eq!(
        lost.diagnosis.evidence,
        "phase Lost: the claim's PersistentVolume no longer exists"
    );
}

/// The collection a dump item is created in.
fn collection_of(item: &Value) -> Collection {
    let namespace = item["metadata"]["namespace"].as_str().unwrap();
    let api_version = item["apiVersion"].as_str().unwrap();
    let plural = match item["kind"].as_str().unwrap() {
        "Pod" => "pods",
        "PersistentVolumeClaim" => "persistentvolumeclaims",
        "Event" => "events",
        "Secret" => "secrets",
        "Service" => "services",
        "EndpointSlice" => "endpointslices",
        "Deployment" => "deployments",
        "StatefulSet" => "statefulsets",
        "ReplicaSet" => "replicasets",
        "Job" => "jobs",
        "CronJob" => "cronjobs",
        other => panic!("no collection for {other}"),
    };
    if api_version == "v1" {
        Collection::core(namespace, plural)
    } else {
        Collection::new(&format!("apis/{api_version}"), namespace, plural)
    }
}

#[tokio::test]
async fn every_state_is_found_live_through_inspect() {
    let server = FakeApiServer::new();
    for item in dump_items() {
        server.put(&collection_of(&item), item);
    }
    // The failed Job's container logs an error no catalogue row knows: the status explains it.
    server.set_log(
        "shop",
        "migrate-x7k2q",
        "migrate",
        false,
        "applying 0042_orders\nERROR:  relation \"customers\" does not exist\n",
    );
    let client = server.client();
    let view = inspect::gather(&client, None).await.expect("gather");
    assert!(
        view.events
            .iter()
            .any(|e| e.reason.as_deref() == Some("ProvisioningFailed")),
        "the events.k8s.io/v1 Event is listed through core/v1"
    );
    let findings = inspect::diagnose_view(&client, &view, now()).await;
    assert_findings(&findings, "live");
}

#[test]
fn health_from_file_prints_every_state() {
    let output = Command::new(env!("CARGO_BIN_EXE_selfheal"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("HOME", "/nonexistent")
        .args(["health", "--from-file", DUMP])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let table = String::from_utf8(output.stdout).unwrap();
    for expected in EXPECTED {
        // The binary's clock is the machine's: the certificate may have expired by now.
        if expected.object.starts_with("Secret/") {
            continue;
        }
        let line = table
            .lines()
            .find(|l| l.contains(&format!("{} ", expected.object)))
            .unwrap_or_else(|| panic!("no row for {}:\n{table}", expected.object));
        assert!(
            line.contains(expected.problem)
                && line.contains(expected.cause)
                && line.contains(expected.evidence),
            "{line}"
        );
    }
    assert!(
        table.lines().any(|l| l.contains("Secret/shop-tls")),
        "{table}"
    );
}

#[test]
fn health_from_file_names_an_unreadable_item_and_reads_the_rest() {
    let mut items = dump_items();
    let mut broken = items
        .iter()
        .find(|item| item["metadata"]["name"] == "web-5d4f8b7c9-r8k2p")
        .unwrap()
        .clone();
    broken["metadata"]["name"] = "web-5d4f8b7c9-brkn1".into();
    broken["status"]["containerStatuses"][0]["restartCount"] = "three".into();
    items.insert(0, broken);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dump.json");
    std::fs::write(
        &path,
        serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string(),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_selfheal"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("HOME", "/nonexistent")
        .env_remove("SELFHEAL_LOG")
        .args(["health", "--from-file", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "problems, not an error");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains(
            "items[0] (Pod) shop/web-5d4f8b7c9-brkn1: field status.containerStatuses[0].restartCount"
        ),
        "{stderr}"
    );
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(table.contains("Pod/web-5d4f8b7c9-r8k2p "), "{table}");
    assert!(!table.contains("brkn1"), "{table}");
}
