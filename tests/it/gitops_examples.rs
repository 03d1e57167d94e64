//! The GitOps examples under docs/examples/gitops/ against the code: the Argo CD ignores cover
//! exactly the fields the webhook changes (kinds and pod-spec paths from `webhook::target`, the
//! annotation from `webhook::mutate`), and every Flux ignore path is one of them. A new kind, a
//! moved pod spec or a renamed annotation fails here until the examples follow.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use selfheal::webhook::mutate::APPLIED_ANNOTATION;
use selfheal::webhook::target::WorkloadKind;

/// Every workload kind a cluster may hold with a pod spec or claim storage; the webhook decides
/// (`WorkloadKind::from_group_kind`) which of them it changes.
const CANDIDATE_KINDS: &[(&str, &str)] = &[
    ("", "Pod"),
    ("", "PersistentVolumeClaim"),
    ("", "ReplicationController"),
    ("apps", "Deployment"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("apps", "ReplicaSet"),
    ("batch", "Job"),
    ("batch", "CronJob"),
];

/// A field of one kind: group, kind, path segments (`*` for every element of a list).
type Field = (String, String, Vec<String>);

fn segments(path: &[&str]) -> Vec<String> {
    path.iter().map(|s| s.to_string()).collect()
}

/// The fields the webhook changes, per kind.
fn selfheal_fields() -> BTreeSet<Field> {
    let mut fields = BTreeSet::new();
    for (group, kind_name) in CANDIDATE_KINDS {
        let Some(kind) = WorkloadKind::from_group_kind(group, kind_name) else {
            continue;
        };
        let mut add = |path: Vec<String>| {
            fields.insert((group.to_string(), kind_name.to_string(), path));
        };
        add(segments(&["metadata", "annotations", APPLIED_ANNOTATION]));
        if let Some(pod_spec) = kind.pod_spec_path() {
            for list in ["containers", "initContainers"] {
                for side in ["limits", "requests"] {
                    let mut path = segments(pod_spec);
                    path.extend(segments(&[list, "*", "resources", side, "memory"]));
                    add(path);
                }
            }
        }
        // Claim storage: `raise_claims` in src/webhook/mutate.rs.
        match kind {
            WorkloadKind::PersistentVolumeClaim => {
                add(segments(&["spec", "resources", "requests", "storage"]));
            }
            WorkloadKind::StatefulSet => add(segments(&[
                "spec",
                "volumeClaimTemplates",
                "*",
                "spec",
                "resources",
                "requests",
                "storage",
            ])),
            _ => {}
        }
    }
    fields
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/examples/gitops")
        .join(name)
}

fn read_yaml(name: &str) -> Value {
    let text = std::fs::read_to_string(example(name)).unwrap();
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// RFC 6901: `/a/b~1c` → [a, b/c].
fn json_pointer(pointer: &str) -> Vec<String> {
    let rest = pointer
        .strip_prefix('/')
        .unwrap_or_else(|| panic!("not a JSON pointer: {pointer}"));
    rest.split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// The jq path subset the examples use: `.a.b[]?.c` → [a, b, *, c]. Anything else fails, so the
/// examples stay in a form this test can check.
fn jq_path(expression: &str) -> Vec<String> {
    let rest = expression
        .strip_prefix('.')
        .unwrap_or_else(|| panic!("jq path must start with '.': {expression}"));
    let mut path = Vec::new();
    for part in rest.split('.') {
        let (name, every) = match part.strip_suffix("[]?").or_else(|| part.strip_suffix("[]")) {
            Some(name) => (name, true),
            None => (part, false),
        };
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()),
            "unsupported jq path segment {part:?} in {expression}"
        );
        path.push(name.to_string());
        if every {
            path.push("*".to_string());
        }
    }
    path
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| item.as_str().expect("a list of strings"))
                .collect()
        })
        .unwrap_or_default()
}

/// The fields one Argo CD ignore entry (Application item or argocd-cm value) names.
fn argo_fields(group: &str, kind: &str, entry: &Value) -> Vec<Field> {
    assert!(
        entry.get("managedFieldsManagers").is_none(),
        "{group}/{kind}: the webhook's changes belong to the request's field manager, not to selfheal"
    );
    let pointers = strings(&entry["jsonPointers"])
        .into_iter()
        .map(json_pointer);
    let jq = strings(&entry["jqPathExpressions"])
        .into_iter()
        .map(jq_path);
    pointers
        .chain(jq)
        .map(|path| (group.to_string(), kind.to_string(), path))
        .collect()
}

fn assert_same(name: &str, found: Vec<Field>) {
    let unique: BTreeSet<Field> = found.iter().cloned().collect();
    assert_eq!(unique.len(), found.len(), "{name}: a path is listed twice");
    let expected = selfheal_fields();
    let missing: Vec<&Field> = expected.difference(&unique).collect();
    let extra: Vec<&Field> = unique.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{name}: not ignored though selfheal changes them: {missing:?}; ignored though selfheal never changes them: {extra:?}"
    );
}

#[test]
fn the_fields_selfheal_changes_are_read_from_the_code() {
    let fields = selfheal_fields();
    let kinds: BTreeSet<&str> = fields.iter().map(|(_, kind, _)| kind.as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "CronJob",
            "DaemonSet",
            "Deployment",
            "Job",
            "PersistentVolumeClaim",
            "Pod",
            "ReplicaSet",
            "StatefulSet",
        ])
    );
    assert!(fields.contains(&(
        "batch".into(),
        "CronJob".into(),
        segments(&[
            "spec",
            "jobTemplate",
            "spec",
            "template",
            "spec",
            "containers",
            "*",
            "resources",
            "limits",
            "memory"
        ])
    )));
}

#[test]
fn the_argo_cd_application_ignores_exactly_what_selfheal_changes_and_respects_it_on_sync() {
    let application = read_yaml("argocd-application.yaml");
    assert_eq!(application["kind"], "Application");
    assert_eq!(application["apiVersion"], "argoproj.io/v1alpha1");
    let found: Vec<Field> = application["spec"]["ignoreDifferences"]
        .as_array()
        .expect("spec.ignoreDifferences is a list")
        .iter()
        .flat_map(|entry| {
            let group = entry["group"]
                .as_str()
                .expect("every entry names its group");
            let kind = entry["kind"].as_str().expect("every entry names its kind");
            assert!(
                entry.get("name").is_none() && entry.get("namespace").is_none(),
                "{group}/{kind}: the ignores hold for every object of the kind"
            );
            argo_fields(group, kind, entry)
        })
        .collect();
    assert_same("argocd-application.yaml", found);
    let options = strings(&application["spec"]["syncPolicy"]["syncOptions"]);
    assert!(
        options.contains(&"RespectIgnoreDifferences=true"),
        "without it a sync sends the manifest's values: {options:?}"
    );
}

#[test]
fn the_argocd_cm_customizations_ignore_exactly_what_selfheal_changes() {
    let config = read_yaml("argocd-cm.yaml");
    assert_eq!(config["kind"], "ConfigMap");
    assert_eq!(config["metadata"]["name"], "argocd-cm");
    let data = config["data"].as_object().expect("data is a map");
    let mut found = Vec::new();
    for (key, text) in data {
        let group_kind = key
            .strip_prefix("resource.customizations.ignoreDifferences.")
            .unwrap_or_else(|| panic!("unexpected argocd-cm key {key}"));
        // `<group>_<kind>`, or `<kind>` alone for the core group.
        let (group, kind) = group_kind.split_once('_').unwrap_or(("", group_kind));
        let entry: Value = serde_norway::from_str(text.as_str().expect("values are YAML text"))
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        found.extend(argo_fields(group, kind, &entry));
    }
    assert_same("argocd-cm.yaml", found);
}

/// A Flux rule's `target.kind` regex (anchored, as kustomize-controller anchors it), as the kinds
/// it selects among the candidates.
fn flux_kinds(target: &Value) -> Vec<(&'static str, &'static str)> {
    let kind = target["kind"].as_str().expect("every rule names its kinds");
    let group = target.get("group").and_then(Value::as_str);
    let kind_regex = regex::Regex::new(&format!("^(?:{kind})$")).unwrap();
    let group_regex = group.map(|g| regex::Regex::new(&format!("^(?:{g})$")).unwrap());
    CANDIDATE_KINDS
        .iter()
        .copied()
        .filter(|(g, k)| {
            kind_regex.is_match(k) && group_regex.as_ref().is_none_or(|r| r.is_match(g))
        })
        .collect()
}

#[test]
fn the_flux_kustomization_ignores_only_what_selfheal_changes_and_never_forces() {
    let kustomization = read_yaml("flux-kustomization.yaml");
    assert_eq!(kustomization["kind"], "Kustomization");
    assert_eq!(
        kustomization["apiVersion"],
        "kustomize.toolkit.fluxcd.io/v1"
    );
    assert_eq!(
        kustomization["spec"]["force"], false,
        "force would recreate a StatefulSet whose raised claim template an update could not keep"
    );
    let expected = selfheal_fields();
    let mut found: BTreeSet<Field> = BTreeSet::new();
    for rule in kustomization["spec"]["ignore"]
        .as_array()
        .expect("spec.ignore is a list")
    {
        let kinds = flux_kinds(&rule["target"]);
        assert!(!kinds.is_empty(), "a rule selects no kind: {rule}");
        for pointer in strings(&rule["paths"]) {
            // JSON pointers have no wildcard: a list index stands for "this element".
            let path: Vec<String> = json_pointer(pointer)
                .into_iter()
                .map(|s| {
                    if s.bytes().all(|b| b.is_ascii_digit()) {
                        "*".to_string()
                    } else {
                        s
                    }
                })
                .collect();
            for (group, kind) in &kinds {
                let field = (group.to_string(), kind.to_string(), path.clone());
                assert!(
                    expected.contains(&field),
                    "flux-kustomization.yaml ignores {pointer} on {group}/{kind}, which selfheal never changes"
                );
                found.insert(field);
            }
        }
    }
    // The fields without a list index in their path are ignored wherever selfheal changes them.
    let unindexed: BTreeSet<Field> = expected
        .into_iter()
        .filter(|(_, _, path)| !path.iter().any(|s| s == "*"))
        .collect();
    let missing: Vec<&Field> = unindexed.difference(&found).collect();
    assert!(missing.is_empty(), "not ignored: {missing:?}");
}

#[test]
fn the_docs_link_every_example() {
    let guide =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/gitops.md"))
            .unwrap();
    for entry in std::fs::read_dir(example("")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            guide.contains(&format!("examples/gitops/{name}")),
            "docs/gitops.md does not point to {name}"
        );
    }
}
