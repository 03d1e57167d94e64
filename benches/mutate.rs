//! The admission hot path with 1,000 fixes loaded: decoding a Deployment AdmissionReview, deciding
//! the patch, and both together.
//!
//! Run: cargo bench --bench mutate

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

use selfheal::core::document::FixDocument;
use selfheal::core::index::FixIndex;
use selfheal::webhook::decode_bytes;
use selfheal::webhook::mutate::{self, Operation, Policy, Request};
use selfheal::webhook::target::WorkloadKind;

/// 1,000 fixes over 100 namespaces, including the two the review's Deployment matches.
fn thousand_fixes() -> FixIndex {
    let mut yaml = String::from("fixes:\n");
    for n in 0..100 {
        for r in 0..10 {
            let (namespace, resource) = if n == 0 && r < 2 {
                ("gitlab".to_string(), "gitlab-webservice".to_string())
            } else {
                (format!("team-{n}"), format!("service-{r}"))
            };
            let container = if n == 0 && r == 1 {
                "    container: workhorse\n"
            } else {
                ""
            };
            yaml.push_str(&format!(
                "  - namespace: {namespace}\n    resource: {resource}\n    type: memory\n    value: {}Mi\n{container}    timestamp: 2026-01-15T10:30:00Z\n",
                1024 + r * 256
            ));
        }
    }
    let document = FixDocument::parse(&yaml).expect("valid");
    let index = FixIndex::new(document.fixes().cloned());
    assert_eq!(index.len(), 1000);
    index
}

fn review_bytes() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/deployment-create.json"
    ))
    .expect("test data")
}

fn benches(c: &mut Criterion) {
    let index = thousand_fixes();
    let reapply_index = {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/fixes-reapply.yaml"
        ))
        .expect("test fixes");
        let document = FixDocument::parse(&text).expect("valid");
        FixIndex::new(document.fixes().cloned())
    };
    let policy = Policy {
        protected_namespaces: vec!["kube-system".into(), "selfheal".into()],
    };
    let bytes = review_bytes();
    let request = decode_bytes(&bytes).expect("valid review");
    let object = serde_json::to_value(request.object.as_ref().expect("object")).expect("json");
    let decide = |object: &serde_json::Value| {
        mutate::mutate(
            &Request {
                kind: WorkloadKind::Deployment,
                operation: Operation::Create,
                namespace: "gitlab",
                object,
                memory_cap: None,
                memory_ratio: None,
            },
            &index,
            &policy,
        )
    };
    assert!(
        !decide(&object).patch.0.is_empty(),
        "the bench must exercise a real patch"
    );

    c.bench_function("decide: Deployment, 1000 fixes, patch", |b| {
        b.iter(|| decide(black_box(&object)))
    });
    let mut elsewhere = object.clone();
    elsewhere["metadata"]["namespace"] = "no-fixes-here".into();
    c.bench_function("decide: Deployment, 1000 fixes, no fix in namespace", |b| {
        b.iter(|| {
            mutate::mutate(
                &Request {
                    kind: WorkloadKind::Deployment,
                    operation: Operation::Create,
                    namespace: "no-fixes-here",
                    object: black_box(&elsewhere),
                    memory_cap: None,
                    memory_ratio: None,
                },
                &index,
                &policy,
            )
        })
    });
    // The webhook's own path: the same decision under the cluster facts, with a quota that
    // holds the raise (the largest fitting size is searched) and 1,000 nodes to measure against.
    let facts = selfheal::cluster::facts::ClusterFacts::default();
    facts.publish_quotas([selfheal::core::headroom::QuotaFacts {
        namespace: "gitlab".into(),
        name: "mem".into(),
        hard: [("limits.memory".to_string(), 10u128 << 30)].into(),
        used: [("limits.memory".to_string(), 1u128 << 30)].into(),
        scopes: Vec::new(),
    }]);
    facts.publish_nodes((0..1000).map(|n| selfheal::core::headroom::NodeFacts {
        name: format!("node-{n}"),
        allocatable_memory: Some((16u128 + n % 16) << 30),
        ready: n % 10 != 0,
        unschedulable: false,
        labels: [("pool".to_string(), format!("pool-{}", n % 4))].into(),
    }));
    let loaded = facts.load();
    let decide_with_facts = |object: &serde_json::Value| {
        mutate::mutate_with_facts(
            &Request {
                kind: WorkloadKind::Deployment,
                operation: Operation::Create,
                namespace: "gitlab",
                object,
                memory_cap: None,
                memory_ratio: None,
            },
            None,
            &index,
            &policy,
            &loaded,
        )
    };
    assert!(
        !decide_with_facts(&object).held.is_empty(),
        "the bench must exercise a held raise"
    );
    c.bench_function(
        "decide: Deployment, 1000 fixes, held by a quota, 1000 nodes",
        |b| b.iter(|| decide_with_facts(black_box(&object))),
    );
    // An UPDATE re-applying a Job manifest below its live, fix-raised template: the live values
    // are kept (the oldObject is read as well).
    let reapply = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/job-reapply.json"
    ))
    .expect("test data");
    let reapply = decode_bytes(&reapply).expect("valid review");
    let incoming = serde_json::to_value(reapply.object.as_ref().expect("object")).expect("json");
    let live =
        serde_json::to_value(reapply.old_object.as_ref().expect("old object")).expect("json");
    let keep = |incoming: &serde_json::Value| {
        mutate::mutate_with_old_object(
            &Request {
                kind: WorkloadKind::Job,
                operation: Operation::Update,
                namespace: "gitlab",
                object: incoming,
                memory_cap: None,
                memory_ratio: None,
            },
            Some(&live),
            &reapply_index,
            &policy,
        )
    };
    assert_eq!(
        keep(&incoming).outcome(),
        "kept_live",
        "the bench must keep live values"
    );
    c.bench_function("decide: Job re-apply UPDATE, keep live values", |b| {
        b.iter(|| keep(black_box(&incoming)))
    });
    c.bench_function("decode AdmissionReview (Deployment, 4 KiB)", |b| {
        b.iter(|| decode_bytes(black_box(&bytes)))
    });
    c.bench_function("decode + decide + encode patch", |b| {
        b.iter(|| {
            let request = decode_bytes(black_box(&bytes)).expect("valid");
            let object =
                serde_json::to_value(request.object.as_ref().expect("object")).expect("json");
            let mutation = decide(&object);
            serde_json::to_vec(&mutation.patch).expect("encode")
        })
    });
}

criterion_group!(mutate_benches, benches);
criterion_main!(mutate_benches);
