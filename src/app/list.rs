//! `selfheal fixes`: the persisted fixes as a table, YAML or JSON.

use serde::Serialize;

use crate::core::document::{EntryProblem, FixDocument};
use crate::core::fix::FixRecord;

#[derive(Serialize)]
struct Listing {
    fixes: Vec<FixRecord>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    invalid: Vec<String>,
}

fn listing(document: &FixDocument) -> Listing {
    let mut fixes: Vec<_> = document.fixes().collect();
    fixes.sort_by_key(|fix| fix.key());
    Listing {
        fixes: fixes.iter().map(|fix| fix.to_record()).collect(),
        invalid: document
            .problems()
            .iter()
            .map(EntryProblem::to_string)
            .collect(),
    }
}

pub fn to_json(document: &FixDocument) -> String {
    serde_json::to_string_pretty(&listing(document)).unwrap_or_default()
}

pub fn to_yaml(document: &FixDocument) -> String {
    serde_norway::to_string(&listing(document)).unwrap_or_default()
}

/// A table in the style of `kubectl get`; invalid entries follow it.
pub fn to_table(document: &FixDocument) -> String {
    let listing = listing(document);
    let text = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<String>> = listing
        .fixes
        .iter()
        .map(|fix| {
            vec![
                text(&fix.namespace),
                text(&fix.resource),
                text(&fix.fix_type),
                text(&fix.value),
                text(&fix.container.clone().or(fix.claim.clone())),
                fix.count.map_or_else(|| "-".into(), |c| c.to_string()),
                text(&fix.timestamp),
                text(&fix.reason),
            ]
        })
        .collect();
    let header = [
        "NAMESPACE",
        "RESOURCE",
        "TYPE",
        "VALUE",
        "TARGET",
        "COUNT",
        "TIMESTAMP",
        "REASON",
    ];
    let mut out = crate::app::report::table(&header, &rows);
    if listing.fixes.is_empty() {
        out.push_str("(no fixes)\n");
    }
    for problem in &listing.invalid {
        out.push_str(&format!("invalid entry {problem}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_fixes_and_invalid_entries() {
        let document = FixDocument::parse(
            "fixes:\n- {namespace: gitlab, resource: gitlab-webservice, type: memory, value: 4Gi, timestamp: '2026-01-15T10:30:00Z'}\n- {namespace: gitlab, resource: x, type: cpu, value: 1}\n",
        )
        .unwrap();
        let table = to_table(&document);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("NAMESPACE"));
        assert!(lines[1].contains("gitlab-webservice") && lines[1].contains("4Gi"));
        assert!(lines[2].contains("invalid entry fixes[1]") && lines[2].contains("\"cpu\""));
        let json: serde_json::Value = serde_json::from_str(&to_json(&document)).unwrap();
        assert_eq!(json["fixes"][0]["value"], "4Gi");
        assert_eq!(json["invalid"].as_array().unwrap().len(), 1);
    }
}
