//! `selfheal fixes export | import`: the store as a file, and a file merged into the store with
//! the store's rule (raised, never lowered; nothing removed).

use super::describe;
use crate::core::document::FixDocument;
use crate::core::fix::{Fix, MergeOutcome};
use crate::store::{FixStore, StoreError};

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
    let yaml = document.to_yaml();
    if !json {
        return Ok(yaml);
    }
    let value: serde_json::Value = serde_norway::from_str(&yaml)
        .map_err(|error| anyhow::anyhow!("converting the fixes to JSON: {error}"))?;
    Ok(serde_json::to_string_pretty(&value)? + "\n")
}
