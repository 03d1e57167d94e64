//! `kubectl kustomize` of the base (manifests/), of each overlay (manifests/overlays/) and of the monitoring
//! component builds, and each build keeps its promise: dry-run acts on nothing, webhook-only runs
//! no watcher and cannot touch workloads, monitoring adds the ServiceMonitor, the alerts (each with
//! a runbook that exists) and the dashboard, using only metrics selfheal exports.
//! Needs kubectl (it bundles kustomize).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use clap::CommandFactory;
use serde_norway::Value;

const RUNBOOKS: &str = "https://github.com/selfheal/selfheal/blob/main/docs/troubleshooting.md#";

/// The documents `kubectl kustomize DIR` prints, DIR relative to the repository.
fn build(dir: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let output = match Command::new("kubectl").arg("kustomize").arg(&path).output() {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
            "kubectl is not installed: install kubectl (https://kubernetes.io/docs/tasks/tools/, \
             it bundles kustomize) to run these tests"
        ),
        Err(error) => panic!("running kubectl kustomize {}: {error}", path.display()),
    };
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("kustomize prints UTF-8");
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("kustomize prints valid YAML"))
        .filter(|doc: &Value| !doc.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} in the build"))
}

fn kinds_and_names(docs: &[Value]) -> BTreeSet<(String, String)> {
    docs.iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap_or_default().to_string(),
                d["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// The environment variable `selfheal serve` reads for the argument `id` (from the clap
/// definitions, so a renamed variable breaks this test, not a cluster).
fn serve_env(id: &str) -> String {
    let cli = selfheal::app::cli::Cli::command();
    let serve = cli
        .get_subcommands()
        .find(|c| c.get_name() == "serve")
        .expect("a serve subcommand");
    let arg = serve
        .get_arguments()
        .find(|a| a.get_id() == id)
        .unwrap_or_else(|| panic!("serve has no argument {id}"));
    arg.get_env()
        .and_then(|e| e.to_str())
        .unwrap_or_else(|| panic!("serve's {id} has no environment variable"))
        .to_string()
}

/// The value of environment variable `name` in the selfheal container of the Deployment.
fn container_env(docs: &[Value], name: &str) -> Option<String> {
    let deployment = find(docs, "Deployment", "selfheal");
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("containers");
    let container = containers
        .iter()
        .find(|c| c["name"].as_str() == Some("selfheal"))
        .expect("the selfheal container");
    container["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|e| e["name"].as_str() == Some(name))
        .and_then(|e| e["value"].as_str().map(String::from))
}

fn rule_resources(role: &Value) -> BTreeSet<String> {
    role["rules"]
        .as_sequence()
        .expect("rules")
        .iter()
        .flat_map(|rule| {
            let groups: Vec<String> = rule["apiGroups"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|g| g.as_str().map(String::from))
                .collect();
            rule["resources"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str())
                .flat_map(move |r| {
                    groups
                        .iter()
                        .map(|g| format!("{g}/{r}"))
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn base_runs_the_acting_watcher_and_has_no_monitoring() {
    let base = build("manifests");
    assert_eq!(
        container_env(&base, &serve_env("watch")).as_deref(),
        Some("true")
    );
    assert_eq!(
        container_env(&base, &serve_env("dry_run")).as_deref(),
        Some("false")
    );
    let kinds: BTreeSet<String> = kinds_and_names(&base).into_iter().map(|(k, _)| k).collect();
    assert!(!kinds.contains("ServiceMonitor") && !kinds.contains("PrometheusRule"));
}

#[test]
fn dry_run_overlay_decides_without_acting_and_changes_nothing_else() {
    let base = build("manifests");
    let dry_run = build("manifests/overlays/dry-run");
    assert_eq!(
        container_env(&dry_run, &serve_env("dry_run")).as_deref(),
        Some("true")
    );
    assert_eq!(
        container_env(&dry_run, &serve_env("vault_auto_unseal")).as_deref(),
        Some("false")
    );
    assert_eq!(
        container_env(&dry_run, &serve_env("watch")).as_deref(),
        Some("true"),
        "dry-run is about the watcher deciding: it must run"
    );
    assert_eq!(kinds_and_names(&dry_run), kinds_and_names(&base));
    assert_eq!(
        find(&dry_run, "ClusterRole", "selfheal"),
        find(&base, "ClusterRole", "selfheal")
    );
}

#[test]
fn webhook_only_overlay_runs_no_watcher_and_cannot_touch_workloads() {
    let base = build("manifests");
    let webhook_only = build("manifests/overlays/webhook-only");
    assert_eq!(
        container_env(&webhook_only, &serve_env("watch")).as_deref(),
        Some("false")
    );
    assert_eq!(kinds_and_names(&webhook_only), kinds_and_names(&base));

    let cluster = rule_resources(find(&webhook_only, "ClusterRole", "selfheal"));
    let expected: BTreeSet<String> = [
        "/limitranges",
        "/resourcequotas",
        "/nodes",
        "events.k8s.io/events",
        "admissionregistration.k8s.io/mutatingwebhookconfigurations",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(cluster, expected);
    let base_cluster = rule_resources(find(&base, "ClusterRole", "selfheal"));
    assert!(
        expected.is_subset(&base_cluster),
        "webhook-only grants something the base does not: {:?}",
        expected.difference(&base_cluster).collect::<Vec<_>>()
    );

    let role = rule_resources(find(&webhook_only, "Role", "selfheal"));
    let base_role = rule_resources(find(&base, "Role", "selfheal"));
    assert!(base_role.contains("coordination.k8s.io/leases"));
    assert!(!role.contains("coordination.k8s.io/leases"));
    let kept: BTreeSet<String> = base_role
        .into_iter()
        .filter(|r| r != "coordination.k8s.io/leases")
        .collect();
    assert_eq!(role, kept, "only the Lease rules are dropped from the Role");
}

/// Metric names selfheal exports (as Prometheus stores them) with their label names, from the
/// real registry with one series in every family.
fn exported_metrics() -> BTreeMap<String, BTreeSet<String>> {
    use selfheal::metrics::*;
    let metrics = Metrics::new();
    let text = |s: &str| s.to_string();
    metrics
        .reviews
        .get_or_create(&ReviewLabels {
            kind: text("Deployment"),
            operation: text("CREATE"),
            result: text("patched"),
        })
        .inc();
    metrics
        .patches_applied
        .get_or_create(&FixTypeLabels {
            fix_type: text("memory"),
        })
        .inc();
    metrics.store_error("document");
    metrics
        .problems_detected
        .get_or_create(&ProblemLabels {
            problem: text("OOMKilled"),
            cause: text("out of memory"),
        })
        .inc();
    metrics
        .healing_actions
        .get_or_create(&ActionLabels {
            action: text("RaiseMemory"),
            result: text("done"),
        })
        .inc();
    metrics
        .certificate_expiry
        .get_or_create(&SecretLabels {
            namespace: text("shop"),
            secret: text("shop-tls"),
        })
        .set(1);
    metrics
        .vault_sealed
        .get_or_create(&AddressLabels {
            address: text("http://vault:8200"),
        })
        .set(0);
    let mut exported: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in metrics.encode().lines().filter(|l| !l.starts_with('#')) {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = exported.entry(line[..name_end].to_string()).or_default();
        if let Some(rest) = line[name_end..].strip_prefix('{') {
            let inner = &rest[..rest.find('}').expect("closing brace")];
            for pair in inner.split("\",") {
                if let Some((label, _)) = pair.split_once('=') {
                    labels.insert(label.to_string());
                }
            }
        }
    }
    exported
}

/// Labels Prometheus (through the ServiceMonitor) adds to every scraped series.
const TARGET_LABELS: [&str; 7] = [
    "job",
    "namespace",
    "pod",
    "instance",
    "service",
    "endpoint",
    "container",
];

/// Every `selfheal_*` metric named in `expr`, with the label names its selectors use.
fn referenced_metrics(expr: &str) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("selfheal_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        let name = tail[..end].to_string();
        let mut labels = Vec::new();
        if let Some(selector) = tail[end..].strip_prefix('{') {
            let inner = &selector[..selector.find('}').expect("closing brace")];
            for matcher in inner.split(',') {
                let label: String = matcher
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !label.is_empty() {
                    labels.push(label);
                }
            }
        }
        found.push((name, labels));
        rest = &tail[end..];
    }
    found
}

fn assert_uses_exported_metrics(what: &str, expr: &str) {
    let exported = exported_metrics();
    let referenced = referenced_metrics(expr);
    assert!(!referenced.is_empty(), "{what} uses no selfheal metric");
    for (name, labels) in referenced {
        let known = exported
            .get(&name)
            .unwrap_or_else(|| panic!("{what} uses {name}, which selfheal does not export"));
        for label in labels {
            assert!(
                known.contains(&label) || TARGET_LABELS.contains(&label.as_str()),
                "{what} selects {name} by {label}, a label it does not have"
            );
        }
    }
}

/// GitHub's anchors for the headings of a Markdown file.
fn heading_anchors(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| l.trim_start_matches('#').trim())
        .map(|heading| {
            heading
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

#[test]
fn monitoring_component_adds_scrape_alerts_with_runbooks_and_dashboard() {
    let base = build("manifests");
    let monitored = build("manifests/overlays/monitoring");
    let added: BTreeSet<(String, String)> = kinds_and_names(&monitored)
        .difference(&kinds_and_names(&base))
        .cloned()
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("ServiceMonitor", "selfheal"),
        ("PrometheusRule", "selfheal"),
        ("ConfigMap", "selfheal-dashboard"),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n.to_string()))
    .collect();
    assert_eq!(added, expected);

    // The ServiceMonitor selects the Service and scrapes a port the Service has.
    let monitor = find(&monitored, "ServiceMonitor", "selfheal");
    let service = find(&monitored, "Service", "selfheal");
    assert_eq!(
        monitor["metadata"]["namespace"],
        service["metadata"]["namespace"]
    );
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("matchLabels");
    assert!(!selector.is_empty());
    for (key, value) in selector {
        let key = key.as_str().expect("label key");
        assert_eq!(
            &service["metadata"]["labels"][key], value,
            "the Service lacks the label {key} the ServiceMonitor selects"
        );
    }
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["path"].as_str(), Some("/metrics"));
    let port = endpoint["port"].as_str().expect("endpoint port name");
    assert!(
        service["spec"]["ports"]
            .as_sequence()
            .expect("ports")
            .iter()
            .any(|p| p["name"].as_str() == Some(port)),
        "the Service has no port named {port}"
    );

    // Every alert: a severity kube-prometheus knows, a summary, a description and a runbook that
    // exists in docs/troubleshooting.md; only metrics selfheal exports.
    let docs = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/troubleshooting.md"),
    )
    .expect("docs/troubleshooting.md");
    let anchors = heading_anchors(&docs);
    let rule = find(&monitored, "PrometheusRule", "selfheal");
    let mut alerts = BTreeSet::new();
    for group in rule["spec"]["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let alert = rule["alert"].as_str().expect("only alerting rules");
            alerts.insert(alert.to_string());
            let severity = rule["labels"]["severity"].as_str();
            assert!(
                matches!(severity, Some("warning" | "critical")),
                "{alert}: severity {severity:?}"
            );
            for annotation in ["summary", "description"] {
                assert!(
                    rule["annotations"][annotation]
                        .as_str()
                        .is_some_and(|t| !t.trim().is_empty()),
                    "{alert} has no {annotation}"
                );
            }
            let runbook = rule["annotations"]["runbook_url"]
                .as_str()
                .unwrap_or_else(|| panic!("{alert} has no runbook_url"));
            let anchor = runbook
                .strip_prefix(RUNBOOKS)
                .unwrap_or_else(|| panic!("{alert}: runbook {runbook} is not in {RUNBOOKS}"));
            assert!(
                anchors.contains(anchor),
                "{alert}: docs/troubleshooting.md has no heading with the anchor #{anchor}"
            );
            assert_uses_exported_metrics(alert, rule["expr"].as_str().expect("expr"));
        }
    }
    assert_eq!(alerts.len(), 9, "alerts: {alerts:?}");

    // The dashboard: labelled for the Grafana sidecar, valid JSON, only exported metrics.
    let dashboard = find(&monitored, "ConfigMap", "selfheal-dashboard");
    assert_eq!(
        dashboard["metadata"]["labels"]["grafana_dashboard"].as_str(),
        Some("1")
    );
    let json = dashboard["data"]["selfheal.json"]
        .as_str()
        .expect("data selfheal.json");
    let json: serde_json::Value = serde_json::from_str(json).expect("the dashboard is JSON");
    let panels = json["panels"].as_array().expect("panels");
    let mut queried = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("untitled panel");
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            assert_uses_exported_metrics(title, expr);
            queried.extend(referenced_metrics(expr).into_iter().map(|(name, _)| name));
        }
    }
    for shown in [
        "selfheal_admission_reviews_total",
        "selfheal_patches_applied_total",
        "selfheal_healing_actions_total",
        "selfheal_problems_detected_total",
        "selfheal_admission_review_duration_seconds_bucket",
        "selfheal_fixes_loaded",
    ] {
        assert!(
            queried.contains(shown),
            "the dashboard does not show {shown}"
        );
    }
}
