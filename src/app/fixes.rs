//! `selfheal fixes forget | prune | export | import`: the lifecycle of stored fixes.
//!
//! Every change goes through `FixStore::update`, the store's one write path (ConfigMap
//! `resourceVersion` retries, or the file's lock and atomic rename), so a fix recorded meanwhile
//! by the watcher is never lost, and entries that are not valid fixes stay word for word.
//!
//! Deciding is pure (`Selector::matches`, `is_stale`, `parse_age`); the cluster is read only to
//! know which workloads exist (`existing_names`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams};
use serde::de::DeserializeOwned;

use crate::core::document::FixDocument;
use crate::core::fix::{Fix, FixType, MergeOutcome};
use crate::store::{FixStore, StoreError};

/// Which fixes `forget` removes: those of one workload, narrowed by type and target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub namespace: String,
    pub resource: String,
    pub fix_type: Option<FixType>,
    /// Memory fixes of this container only.
    pub container: Option<String>,
    /// Storage fixes of this claim template only.
    pub claim: Option<String>,
}

impl Selector {
    /// `NAMESPACE/RESOURCE`, as `kubectl` names objects.
    pub fn parse(
        target: &str,
        fix_type: Option<&str>,
        container: Option<String>,
        claim: Option<String>,
    ) -> anyhow::Result<Self> {
        let (namespace, resource) = target
            .split_once('/')
            .filter(|(ns, res)| !ns.is_empty() && !res.is_empty() && !res.contains('/'))
            .ok_or_else(|| {
                anyhow::anyhow!("{target:?}: name the workload as NAMESPACE/RESOURCE, e.g. gitlab/gitlab-webservice")
            })?;
        let fix_type = fix_type.map(FixType::parse).transpose()?;
        Ok(Self {
            namespace: namespace.to_string(),
            resource: resource.to_string(),
            fix_type,
            container,
            claim,
        })
    }

    pub fn matches(&self, fix: &Fix) -> bool {
        fix.namespace == self.namespace
            && fix.resource == self.resource
            && self.fix_type.is_none_or(|t| t == fix.fix_type)
            && self
                .container
                .as_ref()
                .is_none_or(|c| fix.container.as_ref() == Some(c))
            && self
                .claim
                .as_ref()
                .is_none_or(|c| fix.claim.as_ref() == Some(c))
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.resource)?;
        if let Some(fix_type) = self.fix_type {
            write!(f, " type {fix_type}")?;
        }
        if let Some(container) = &self.container {
            write!(f, " container {container}")?;
        }
        if let Some(claim) = &self.claim {
            write!(f, " claim {claim}")?;
        }
        Ok(())
    }
}

/// Removes the fixes `selector` matches; returns them. Idempotent: a second run removes nothing.
pub async fn forget(store: &FixStore, selector: &Selector) -> Result<Vec<Fix>, StoreError> {
    store
        .update(|document| document.remove_fixes(|fix| selector.matches(fix)))
        .await
}

/// What `forget` prints.
pub fn forget_report(store: &str, selector: &Selector, removed: &[Fix]) -> String {
    if removed.is_empty() {
        return format!("no fix in {store} matches {selector}: nothing removed\n");
    }
    let mut out = format!(
        "removed {} from {store}:\n",
        plural(removed.len(), "fix", "fixes")
    );
    out.push_str(&fix_table(removed));
    out.push_str(&values_left_live(removed));
    out
}

/// What removing `fixes` does not undo: the values they raised stay in fields the apiserver does
/// not let change, and a manifest with the old value is refused there once no fix restores it.
fn values_left_live(fixes: &[Fix]) -> String {
    let has = |fix_type: FixType| fixes.iter().any(|fix| fix.fix_type == fix_type);
    let mut places = Vec::new();
    if has(FixType::Memory) {
        places.push("memory limits in Job pod templates and bare Pods");
    }
    if has(FixType::Storage) {
        places.push("PersistentVolumeClaim sizes and StatefulSet volumeClaimTemplates");
    }
    if places.is_empty() {
        return String::new();
    }
    format!(
        "warning: the values these fixes raised stay live where they cannot change ({}); \
         re-applying the manifest from before the fix there will be refused by the apiserver \
         now that no fix keeps the live value. Raise the value in the manifest, or delete and \
         re-create the object.\n",
        places.join("; ")
    )
}

/// Whether a fix is stale: no object named like its resource exists in its namespace, and it
/// was last raised at least `older_than` before `now`. A fix with no timestamp is never stale:
/// nothing says when it was last needed (`forget` removes it).
pub fn is_stale(fix: &Fix, exists: bool, now: jiff::Timestamp, older_than: Duration) -> bool {
    if exists {
        return false;
    }
    let Some(raised) = fix.timestamp else {
        return false;
    };
    let Ok(age) = jiff::SignedDuration::try_from(older_than) else {
        return false;
    };
    now.duration_since(raised) >= age
}

/// The names of every object a fix can be recorded under in `namespace`: Deployments,
/// StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs, Pods and PersistentVolumeClaims
/// (see `core::owners`). An absent namespace has none.
pub async fn existing_names(
    client: &kube::Client,
    namespace: &str,
) -> anyhow::Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    names.extend(names_of::<Deployment>(client, namespace).await?);
    names.extend(names_of::<StatefulSet>(client, namespace).await?);
    names.extend(names_of::<DaemonSet>(client, namespace).await?);
    names.extend(names_of::<ReplicaSet>(client, namespace).await?);
    names.extend(names_of::<Job>(client, namespace).await?);
    names.extend(names_of::<CronJob>(client, namespace).await?);
    names.extend(names_of::<Pod>(client, namespace).await?);
    names.extend(names_of::<PersistentVolumeClaim>(client, namespace).await?);
    Ok(names)
}

async fn names_of<K>(client: &kube::Client, namespace: &str) -> anyhow::Result<Vec<String>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let list = api
        .list_metadata(&ListParams::default())
        .await
        .map_err(|error| {
            anyhow::anyhow!(
                "listing {} in namespace {namespace} (prune must know which workloads exist): {error}",
                K::plural(&K::DynamicType::default())
            )
        })?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|item| item.metadata.name)
        .collect())
}

/// Which workloads exist, per namespace of the stored fixes.
pub type Existing = BTreeMap<String, BTreeSet<String>>;

/// Reads which workloads exist in every namespace that holds a fix.
pub async fn existing_for(
    client: &kube::Client,
    document: &FixDocument,
) -> anyhow::Result<Existing> {
    let namespaces: BTreeSet<&str> = document.fixes().map(|f| f.namespace.as_str()).collect();
    let mut existing = Existing::new();
    for namespace in namespaces {
        existing.insert(
            namespace.to_string(),
            existing_names(client, namespace).await?,
        );
    }
    Ok(existing)
}

/// The stale fixes of `document`. A fix in a namespace `existing` does not cover is kept.
pub fn stale_fixes(
    document: &FixDocument,
    existing: &Existing,
    now: jiff::Timestamp,
    older_than: Duration,
) -> Vec<Fix> {
    document
        .fixes()
        .filter(|fix| stale_in(fix, existing, now, older_than))
        .cloned()
        .collect()
}

fn stale_in(fix: &Fix, existing: &Existing, now: jiff::Timestamp, older_than: Duration) -> bool {
    existing
        .get(&fix.namespace)
        .is_some_and(|names| is_stale(fix, names.contains(&fix.resource), now, older_than))
}

/// Drops the stale fixes. The rule is checked again on the document as stored at the write,
/// so a fix raised meanwhile (its workload came back) is kept.
pub async fn drop_stale(
    store: &FixStore,
    existing: &Existing,
    now: jiff::Timestamp,
    older_than: Duration,
) -> Result<Vec<Fix>, StoreError> {
    store
        .update(|document| document.remove_fixes(|fix| stale_in(fix, existing, now, older_than)))
        .await
}

/// What `prune` prints.
pub fn prune_report(store: &str, fixes: &[Fix], applied: bool, older_than: &str) -> String {
    let rule = format!(
        "no workload of that name exists and the fix was last raised over {older_than} ago"
    );
    if fixes.is_empty() {
        return format!("nothing to prune in {store} ({rule})\n");
    }
    let count = plural(fixes.len(), "fix", "fixes");
    let mut out = if applied {
        format!("dropped {count} from {store} ({rule}):\n")
    } else {
        format!("would drop {count} from {store} ({rule}); run again with --apply to drop them:\n")
    };
    out.push_str(&fix_table(fixes));
    out.push_str(&values_left_live(fixes));
    out
}

/// Parses an age such as `30d`, `12h`, `1d12h`, `90m`, `2w` or `45s`.
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut parts = 0;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => {
                return Err(format!(
                    "{text:?}: unknown unit {c:?} (use s, m, h, d or w, e.g. 30d)"
                ));
            }
        };
        let value: u64 = number
            .parse()
            .map_err(|_| format!("{text:?}: a number must come before {c:?} (e.g. 30d)"))?;
        total = value
            .checked_mul(unit)
            .and_then(|seconds| total.checked_add(seconds))
            .ok_or_else(|| format!("{text:?} is too long"))?;
        number.clear();
        parts += 1;
    }
    if !number.is_empty() || parts == 0 {
        return Err(format!("{text:?}: give a unit (s, m, h, d or w), e.g. 30d"));
    }
    Ok(Duration::from_secs(total))
}

/// An age as a person writes it, in the largest whole unit: `30d`, `36h`, `90m`, `45s`.
pub fn format_age(age: Duration) -> String {
    let seconds = age.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if seconds >= size && seconds.is_multiple_of(size) {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

/// What `import` did with each entry of the imported file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub added: Vec<Fix>,
    /// The fix as stored now, and the value it had.
    pub raised: Vec<(Fix, String)>,
    pub unchanged: Vec<Fix>,
    /// Entries of the imported file that are not valid fixes: named, never written.
    pub skipped: Vec<String>,
}

/// Parses an imported file (a `fixes.yaml`, or its JSON form from `export -o json`).
pub fn parse_import(text: &str, origin: &str) -> anyhow::Result<FixDocument> {
    FixDocument::parse(text).map_err(|error| anyhow::anyhow!("{origin}: {error}"))
}

/// Merges the valid fixes of `imported` into the store with the store's merge rule (a value is
/// raised, never lowered; nothing is removed).
pub async fn import(store: &FixStore, imported: &FixDocument) -> Result<ImportReport, StoreError> {
    let fixes: Vec<Fix> = imported.fixes().cloned().collect();
    let mut report = store
        .update(|document| {
            let mut report = ImportReport::default();
            for fix in &fixes {
                let outcome = document.record(fix.clone());
                let stored = document
                    .get(&fix.key())
                    .cloned()
                    .unwrap_or_else(|| fix.clone());
                match outcome {
                    MergeOutcome::Added => report.added.push(stored),
                    MergeOutcome::Raised { from } => report.raised.push((stored, from)),
                    MergeOutcome::Unchanged => report.unchanged.push(stored),
                }
            }
            report
        })
        .await?;
    report.skipped = imported
        .problems()
        .iter()
        .map(ToString::to_string)
        .collect();
    Ok(report)
}

/// What `import` prints.
pub fn import_report(store: &str, origin: &str, report: &ImportReport) -> String {
    let mut out = format!(
        "imported {origin} into {store}: {} added, {} raised, {} unchanged, {} skipped\n",
        report.added.len(),
        report.raised.len(),
        report.unchanged.len(),
        report.skipped.len()
    );
    for fix in &report.added {
        out.push_str(&format!("added     {}\n", describe(fix)));
    }
    for (fix, from) in &report.raised {
        out.push_str(&format!("raised    {} (was {from})\n", describe(fix)));
    }
    for fix in &report.unchanged {
        out.push_str(&format!("unchanged {}\n", describe(fix)));
    }
    for problem in &report.skipped {
        out.push_str(&format!("skipped   {origin} {problem}\n"));
    }
    out
}

/// The stored document as it is, for `export`: YAML (`fixes.yaml` itself) or the same in JSON.
/// Entries that are not valid fixes are exported as they are stored.
pub fn export(document: &FixDocument, json: bool) -> anyhow::Result<String> {
    let yaml = document.to_yaml()?;
    if !json {
        return Ok(yaml);
    }
    let value: serde_json::Value = serde_norway::from_str(&yaml)
        .map_err(|error| anyhow::anyhow!("converting the fixes to JSON: {error}"))?;
    Ok(serde_json::to_string_pretty(&value)? + "\n")
}

fn describe(fix: &Fix) -> String {
    let mut text = format!(
        "{}/{} {} {}",
        fix.namespace, fix.resource, fix.fix_type, fix.value
    );
    if let Some(target) = fix.target() {
        let what = match fix.fix_type {
            FixType::Memory => "container",
            FixType::Storage => "claim",
        };
        text.push_str(&format!(" ({what} {target})"));
    }
    text
}

fn fix_table(fixes: &[Fix]) -> String {
    let rows: Vec<Vec<String>> = fixes
        .iter()
        .map(|fix| {
            vec![
                fix.namespace.clone(),
                fix.resource.clone(),
                fix.fix_type.to_string(),
                fix.value.as_str().to_string(),
                fix.target().unwrap_or("-").to_string(),
                fix.timestamp.map_or_else(|| "-".into(), |t| t.to_string()),
            ]
        })
        .collect();
    crate::app::report::table(
        &[
            "NAMESPACE",
            "RESOURCE",
            "TYPE",
            "VALUE",
            "TARGET",
            "TIMESTAMP",
        ],
        &rows,
    )
}

fn plural(count: usize, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::fix::FixRecord;

    fn fix(resource: &str, fix_type: &str, target: Option<&str>, timestamp: Option<&str>) -> Fix {
        let mut record = FixRecord {
            namespace: Some("gitlab".into()),
            resource: Some(resource.into()),
            fix_type: Some(fix_type.into()),
            value: Some("1Gi".into()),
            timestamp: timestamp.map(str::to_string),
            ..FixRecord::default()
        };
        match fix_type {
            "memory" => record.container = target.map(str::to_string),
            _ => record.claim = target.map(str::to_string),
        }
        Fix::from_record(record).unwrap()
    }

    #[test]
    fn removing_a_fix_warns_where_its_values_stay_live() {
        let storage = values_left_live(&[fix("db", "storage", Some("data"), None)]);
        assert!(
            storage.contains("PersistentVolumeClaim sizes and StatefulSet volumeClaimTemplates")
                && storage.contains("refused by the apiserver")
                && !storage.contains("Job pod templates"),
            "{storage}"
        );
        let both = values_left_live(&[
            fix("web", "memory", None, None),
            fix("db", "storage", None, None),
        ]);
        assert!(
            both.contains("Job pod templates and bare Pods; PersistentVolumeClaim"),
            "{both}"
        );
        assert_eq!(values_left_live(&[]), "");
    }

    #[test]
    fn a_selector_narrows_by_type_and_target() {
        let all = Selector::parse("gitlab/web", None, None, None).unwrap();
        let memory = Selector::parse("gitlab/web", Some("memory"), None, None).unwrap();
        let sidecar = Selector::parse("gitlab/web", None, Some("sidecar".into()), None).unwrap();
        let app = fix("web", "memory", Some("app"), None);
        let side = fix("web", "memory", Some("sidecar"), None);
        let disk = fix("web", "storage", Some("data"), None);
        let other = fix("db", "memory", None, None);
        assert!(all.matches(&app) && all.matches(&disk) && !all.matches(&other));
        assert!(memory.matches(&app) && !memory.matches(&disk));
        assert!(sidecar.matches(&side) && !sidecar.matches(&app) && !sidecar.matches(&disk));
    }

    #[test]
    fn a_selector_names_what_is_wrong() {
        for bad in ["web", "/web", "gitlab/", "a/b/c"] {
            let error = Selector::parse(bad, None, None, None)
                .unwrap_err()
                .to_string();
            assert!(error.contains("NAMESPACE/RESOURCE"), "{bad}: {error}");
        }
        let error = Selector::parse("a/b", Some("cpu"), None, None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("\"cpu\""), "{error}");
    }

    #[test]
    fn stale_means_absent_and_untouched_for_the_whole_age() {
        let now: jiff::Timestamp = "2026-03-01T00:00:00Z".parse().unwrap();
        let month = Duration::from_secs(30 * 86_400);
        let old = fix("web", "memory", None, Some("2026-01-01T00:00:00Z"));
        let recent = fix("web", "memory", None, Some("2026-02-20T00:00:00Z"));
        let undated = fix("web", "memory", None, None);
        assert!(is_stale(&old, false, now, month));
        assert!(!is_stale(&old, true, now, month), "the workload exists");
        assert!(
            !is_stale(&recent, false, now, month),
            "raised within the age"
        );
        assert!(!is_stale(&undated, false, now, month), "no timestamp: kept");
        let exactly: jiff::Timestamp = "2026-01-30T00:00:00Z".parse().unwrap();
        assert!(is_stale(
            &fix("web", "memory", None, Some(&exactly.to_string())),
            false,
            now,
            month
        ));
    }

    #[test]
    fn ages_read_like_kubectl_durations_with_days_and_weeks() {
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_age("1d12h"), Ok(Duration::from_secs(36 * 3600)));
        assert_eq!(parse_age("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_age("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse_age("45s"), Ok(Duration::from_secs(45)));
        for bad in ["", "30", "d", "3x", "99999999999999999999w"] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
        for text in ["30d", "36h", "90m", "45s"] {
            assert_eq!(format_age(parse_age(text).unwrap()), text);
        }
    }

    #[test]
    fn export_is_the_stored_document_in_yaml_or_json() {
        let document = FixDocument::parse(
            "fixes:\n- {namespace: a, resource: web, type: memory, value: 2Gi}\n- {namespace: a, resource: x, type: cpu, value: 1}\n",
        )
        .unwrap();
        let yaml = export(&document, false).unwrap();
        assert_eq!(FixDocument::parse(&yaml).unwrap().fixes().count(), 1);
        assert!(
            yaml.contains("cpu"),
            "invalid entries are exported as stored"
        );
        let json = export(&document, true).unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["fixes"][0]["value"], "2Gi");
        assert_eq!(value["fixes"][1]["type"], "cpu");
        let again = FixDocument::parse(&json).unwrap();
        assert_eq!(again.fixes().count(), 1);
        assert_eq!(again.problems().len(), 1);
    }
}
