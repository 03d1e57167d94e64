//! The `fixes.yaml` property, shared by the fuzz target `fixes_yaml` and the stable test that
//! replays its corpus (`tests/it/fuzz_corpus.rs`).
//!
//! Input: the text of a `fixes.yaml` (bytes that are not UTF-8 are not a document). Checked,
//! for every text `FixDocument::parse` accepts:
//! - the rewrite (`to_yaml`) parses again, with the same valid fixes (every field, word for
//!   word), the same invalid entries at the same places with the same problems, and rewrites to
//!   the same text: a rewrite loses no entry;
//! - recording a fix and rewriting adds exactly that fix (or merges it into its entry) and keeps
//!   every other entry.
//!
//! - a document YAML cannot write back (a mapping with a tagged key, `- !x :`) is refused by
//!   name (`DocumentError::NotWritable`), never written short: the fuzzer found that `to_yaml`
//!   once returned an empty text for it, which a store write would have stored.
//!
//! Nothing may panic, whatever the text.

use selfheal::core::document::{DocumentError, FixDocument};
use selfheal::core::fix::{Fix, FixRecord, MergeOutcome};

fn records(document: &FixDocument) -> Vec<FixRecord> {
    document.fixes().map(Fix::to_record).collect()
}

fn problems(document: &FixDocument) -> Vec<String> {
    document
        .problems()
        .iter()
        .map(|problem| format!("{problem:?}"))
        .collect()
}

/// Every entry of `document` survives its rewrite; returns the rewritten document (`None`: the
/// document cannot be written back, and says so).
fn rewrite_keeps_everything(document: &FixDocument, what: &str) -> Option<FixDocument> {
    let text = match document.to_yaml() {
        Ok(text) => text,
        Err(DocumentError::NotWritable(_)) => return None,
        Err(error) => panic!("{what}: the rewrite failed with an unexpected error: {error}"),
    };
    let again = FixDocument::parse(&text)
        .unwrap_or_else(|error| panic!("{what}: the rewrite does not parse ({error}):\n{text}"));
    assert_eq!(
        records(&again),
        records(document),
        "{what}: valid fixes changed by the rewrite:\n{text}"
    );
    assert_eq!(
        problems(&again),
        problems(document),
        "{what}: invalid entries changed by the rewrite:\n{text}"
    );
    assert_eq!(
        again.to_yaml().ok().as_deref(),
        Some(text.as_str()),
        "{what}: the rewrite is not stable"
    );
    Some(again)
}

pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(document) = FixDocument::parse(text) else {
        return;
    };
    let Some(rewritten) = rewrite_keeps_everything(&document, "parsed") else {
        return;
    };

    // The watcher's write: record a fix, rewrite.
    let fix = Fix::from_record(FixRecord {
        namespace: Some("fuzz".into()),
        resource: Some("web".into()),
        fix_type: Some("memory".into()),
        value: Some("768Mi".into()),
        timestamp: Some("2026-11-28T12:00:00Z".into()),
        ..FixRecord::default()
    })
    .expect("a valid fix");
    let mut recorded = rewritten.clone();
    let outcome = recorded.record(fix.clone());
    let Some(after) = rewrite_keeps_everything(&recorded, "recorded") else {
        return;
    };
    let (before, now) = (records(&rewritten), records(&after));
    match outcome {
        MergeOutcome::Added => {
            assert_eq!(now.len(), before.len() + 1, "one entry added");
            assert_eq!(now[..before.len()], before[..], "the others kept, in order");
            assert_eq!(now[before.len()], fix.to_record());
        }
        MergeOutcome::Raised { .. } | MergeOutcome::Unchanged => {
            assert_eq!(now.len(), before.len(), "merged into its entry");
            assert!(after.get(&fix.key()).is_some_and(|f| f.value >= fix.value));
        }
    }
    assert_eq!(
        problems(&after),
        problems(&rewritten),
        "invalid entries kept"
    );
}
