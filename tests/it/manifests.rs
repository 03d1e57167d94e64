//! The shipped manifests keep the promises that stop a webhook from taking a cluster down, and
//! agree with what the code does.

use serde_norway::Value;

fn documents(file: &str) -> Vec<Value> {
    let path = format!("{}/manifests/base/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("valid YAML"))
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn webhook_fails_open_quickly_and_skips_system_namespaces() {
    let config = &documents("mutatingwebhookconfiguration.yaml")[0];
    let webhooks = config["webhooks"].as_sequence().unwrap();
    assert_eq!(webhooks.len(), 1);
    let webhook = &webhooks[0];
    assert_eq!(webhook["failurePolicy"].as_str(), Some("Ignore"));
    assert!(webhook["timeoutSeconds"].as_u64().unwrap() <= 5);
    assert_eq!(webhook["sideEffects"].as_str(), Some("None"));
    assert_eq!(strings(&webhook["admissionReviewVersions"]), ["v1"]);
    assert_eq!(
        webhook["clientConfig"]["service"]["path"].as_str(),
        Some("/mutate")
    );
    let expressions = webhook["namespaceSelector"]["matchExpressions"]
        .as_sequence()
        .unwrap();
    let excluded = expressions
        .iter()
        .find(|e| e["key"].as_str() == Some("kubernetes.io/metadata.name"))
        .expect("namespace name exclusion");
    assert_eq!(excluded["operator"].as_str(), Some("NotIn"));
    let names = strings(&excluded["values"]);
    assert!(names.contains(&"kube-system".into()) && names.contains(&"selfheal".into()));
    let opt_out = &webhook["objectSelector"]["matchExpressions"][0];
    assert_eq!(
        opt_out["key"].as_str(),
        Some(selfheal::webhook::mutate::OPT_OUT_LABEL)
    );
}

fn grants(kind: &str) -> Vec<String> {
    let mut grants: Vec<String> = Vec::new();
    for document in documents("rbac.yaml")
        .iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
    {
        for rule in document["rules"].as_sequence().unwrap() {
            let group = strings(&rule["apiGroups"]).join(",");
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    grants.push(format!("{group}/{resource}:{verb}"));
                }
            }
        }
    }
    grants.sort();
    grants
}

#[test]
fn rbac_grants_only_what_the_code_uses() {
    assert_eq!(
        grants("Role"),
        [
            "/configmaps:create",
            "/configmaps:get",
            "/configmaps:list",
            "/configmaps:update",
            "/configmaps:watch",
            "/secrets:create",
            "/secrets:get",
            "/secrets:update",
            "coordination.k8s.io/leases:create",
            "coordination.k8s.io/leases:get",
            "coordination.k8s.io/leases:update",
        ]
    );
    assert_eq!(
        grants("ClusterRole"),
        [
            "/events:list",
            "/events:watch",
            "/limitranges:list",
            "/limitranges:watch",
            "/namespaces:get",
            "/nodes:list",
            "/nodes:watch",
            "/persistentvolumeclaims:get",
            "/persistentvolumeclaims:list",
            "/persistentvolumeclaims:patch",
            "/persistentvolumeclaims:watch",
            "/pods/eviction:create",
            "/pods/log:get",
            "/pods:delete",
            "/pods:list",
            "/pods:watch",
            "/resourcequotas:list",
            "/resourcequotas:watch",
            "/secrets:list",
            "/secrets:watch",
            "/services:get",
            "/services:list",
            "admissionregistration.k8s.io/mutatingwebhookconfigurations:get",
            "admissionregistration.k8s.io/mutatingwebhookconfigurations:patch",
            "apps/daemonsets:get",
            "apps/daemonsets:patch",
            "apps/deployments:get",
            "apps/deployments:patch",
            "apps/replicasets:list",
            "apps/statefulsets:get",
            "apps/statefulsets:patch",
            "batch/cronjobs:get",
            "batch/cronjobs:patch",
            "batch/jobs:get",
            "batch/jobs:list",
            "cert-manager.io/certificates/status:update",
            "cert-manager.io/certificates:get",
            "discovery.k8s.io/endpointslices:list",
            "events.k8s.io/events:create",
            "events.k8s.io/events:patch",
            "storage.k8s.io/storageclasses:list",
        ]
    );
    let cluster_secrets: Vec<String> = grants("ClusterRole")
        .into_iter()
        .filter(|g| g.contains("secrets"))
        .collect();
    assert_eq!(
        cluster_secrets,
        ["/secrets:list", "/secrets:watch"],
        "cluster-wide: no get, no write on Secrets"
    );
    let role = &documents("rbac.yaml")[0];
    let named_secret_rule = role["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|r| {
            strings(&r["resources"]) == ["secrets"]
                && strings(&r["verbs"]).contains(&"update".to_string())
        })
        .unwrap();
    assert_eq!(
        strings(&named_secret_rule["resourceNames"]),
        ["selfheal-webhook-tls"],
        "writes only its own Secret"
    );
}

/// The kinds `src/cluster/` watches cluster-wide (`Api::<Kind>::all`), as plurals.
fn watched_by_cluster_facts() -> Vec<String> {
    let dir = format!("{}/src/cluster", env!("CARGO_MANIFEST_DIR"));
    let mut kinds: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path()).ok())
        .flat_map(|text| {
            text.split("Api::<")
                .skip(1)
                .filter_map(|rest| {
                    let (kind, after) = rest.split_once('>')?;
                    let kind = kind.rsplit("::").next()?.to_lowercase();
                    after.starts_with("::all(").then(|| format!("{kind}s"))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

#[test]
fn every_kind_the_cluster_facts_watch_is_granted_list_and_watch_and_no_more() {
    let watched = watched_by_cluster_facts();
    assert_eq!(watched, ["limitranges", "nodes", "resourcequotas"]);
    let cluster = grants("ClusterRole");
    for plural in &watched {
        let verbs: Vec<&str> = cluster
            .iter()
            .filter_map(|grant| grant.strip_prefix(&format!("/{plural}:")))
            .collect();
        assert_eq!(verbs, ["list", "watch"], "{plural}");
    }
}

#[test]
fn deployment_is_hardened_and_probed_on_the_health_port() {
    let deployment = &documents("deployment.yaml")[0];
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let container = &pod["containers"][0];
    assert_eq!(
        container["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"].as_bool(),
        Some(false)
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert!(container["resources"]["limits"]["memory"].is_string());
    assert!(container["resources"]["requests"]["cpu"].is_string());
    let pdb = &documents("poddisruptionbudget.yaml")[0];
    assert_eq!(pdb["kind"].as_str(), Some("PodDisruptionBudget"));
}

#[test]
fn fixes_configmap_ships_without_data_so_apply_never_resets_fixes() {
    let configmap = &documents("configmap-fixes.yaml")[0];
    assert_eq!(configmap["metadata"]["name"].as_str(), Some("fixes"));
    assert!(configmap.get("data").is_none());
}
