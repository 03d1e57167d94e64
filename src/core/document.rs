//! The text form of the fix store: `fixes.yaml`, the shape operators know from `.state/fixes.yaml`.
//!
//! Parsing is tolerant per entry: one bad entry is reported (with its position and what is wrong)
//! and kept verbatim, so rewriting the document after recording a fix never loses it.

use serde_norway::{Mapping, Value};

use crate::core::fix::{Fix, FixRecord, MergeOutcome};

const FIXES_KEY: &str = "fixes";

/// A parsed `fixes.yaml`.
#[derive(Debug, Clone, Default)]
pub struct FixDocument {
    entries: Vec<Entry>,
    /// Top-level keys other than `fixes`, kept so a rewrite preserves them.
    other_keys: Mapping,
}

#[derive(Debug, Clone)]
enum Entry {
    Valid(Fix),
    Invalid(Value),
}

/// An entry of the document that is not a valid fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryProblem {
    /// Zero-based position in the `fixes` list.
    pub index: usize,
    /// The entry's namespace and resource, where they could be read.
    pub namespace: Option<String>,
    pub resource: Option<String>,
    pub message: String,
}

impl std::fmt::Display for EntryProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fixes[{}]", self.index)?;
        if let (Some(ns), Some(res)) = (&self.namespace, &self.resource) {
            write!(f, " ({ns}/{res})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The document as a whole cannot be read; nothing in it can be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("fixes.yaml is not valid YAML: {0}")]
    Yaml(String),
    #[error("fixes.yaml must be a mapping with a `fixes:` list at the top level, found {0}")]
    NotAMapping(&'static str),
    #[error("`fixes` must be a list of entries, found {0}")]
    FixesNotAList(&'static str),
    /// Writing the document back would lose something: nothing is written.
    #[error("fixes.yaml cannot be written back ({0}); nothing was written, fix the entry by hand")]
    NotWritable(String),
}

impl FixDocument {
    /// Parses the text of `fixes.yaml`. Empty text is an empty document.
    pub fn parse(text: &str) -> Result<Self, DocumentError> {
        let root: Value =
            serde_norway::from_str(text).map_err(|e| DocumentError::Yaml(e.to_string()))?;
        let mut other_keys = match root {
            Value::Null => return Ok(Self::default()),
            Value::Mapping(map) => map,
            other => return Err(DocumentError::NotAMapping(value_kind(&other))),
        };
        let list = match other_keys.remove(FIXES_KEY) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Sequence(items)) => items,
            Some(other) => return Err(DocumentError::FixesNotAList(value_kind(&other))),
        };
        let entries = list
            .into_iter()
            .map(|raw| match parse_entry(&raw) {
                Ok(fix) => Entry::Valid(fix),
                Err(_) => Entry::Invalid(raw),
            })
            .collect();
        Ok(Self {
            entries,
            other_keys,
        })
    }

    /// The document as YAML text, valid entries normalised, invalid ones as they were. An entry
    /// YAML cannot write back (a mapping with a tagged key, say) is an error naming it: a rewrite
    /// never drops what it cannot write.
    pub fn to_yaml(&self) -> Result<String, DocumentError> {
        let mut root = self.other_keys.clone();
        let list = self
            .entries
            .iter()
            .enumerate()
            .map(|(index, entry)| match entry {
                Entry::Valid(fix) => serde_norway::to_value(fix.to_record())
                    .map_err(|e| DocumentError::NotWritable(format!("entry {index}: {e}"))),
                Entry::Invalid(raw) => match serde_norway::to_string(raw) {
                    Ok(_) => Ok(raw.clone()),
                    Err(e) => Err(DocumentError::NotWritable(format!(
                        "entry {index} (not a valid fix) cannot be written as YAML: {e}"
                    ))),
                },
            })
            .collect::<Result<Vec<Value>, _>>()?;
        root.insert(Value::from(FIXES_KEY), Value::Sequence(list));
        serde_norway::to_string(&root).map_err(|e| {
            DocumentError::NotWritable(format!("a key beside `fixes` cannot be written: {e}"))
        })
    }

    /// The valid fixes, in document order.
    pub fn fixes(&self) -> impl Iterator<Item = &Fix> {
        self.entries.iter().filter_map(|entry| match entry {
            Entry::Valid(fix) => Some(fix),
            Entry::Invalid(_) => None,
        })
    }

    /// Every entry that is not a valid fix, with what is wrong with it.
    pub fn problems(&self) -> Vec<EntryProblem> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| match entry {
                Entry::Valid(_) => None,
                Entry::Invalid(raw) => Some(EntryProblem {
                    index,
                    namespace: string_field(raw, "namespace"),
                    resource: string_field(raw, "resource"),
                    message: parse_entry(raw).err().unwrap_or_default(),
                }),
            })
            .collect()
    }

    /// The valid fix with `key`, if any.
    pub fn get(&self, key: &crate::core::fix::FixKey) -> Option<&Fix> {
        self.fixes().find(|fix| fix.key() == *key)
    }

    /// Records `fix`: merged into the entry with the same key, or appended.
    pub fn record(&mut self, fix: Fix) -> MergeOutcome {
        let key = fix.key();
        let existing = self.entries.iter_mut().find_map(|entry| match entry {
            Entry::Valid(stored) if stored.key() == key => Some(stored),
            _ => None,
        });
        match existing {
            Some(stored) => stored.merge(fix),
            None => {
                self.entries.push(Entry::Valid(fix));
                MergeOutcome::Added
            }
        }
    }
}

impl FixDocument {
    /// Removes the valid fixes that `remove` selects and returns them, in document order.
    /// Invalid entries are never removed: they stay, word for word, for a person to repair.
    pub fn remove_fixes(&mut self, remove: impl Fn(&Fix) -> bool) -> Vec<Fix> {
        let mut removed = Vec::new();
        self.entries.retain(|entry| match entry {
            Entry::Valid(fix) if remove(fix) => {
                removed.push(fix.clone());
                false
            }
            _ => true,
        });
        removed
    }
}

fn parse_entry(raw: &Value) -> Result<Fix, String> {
    if !raw.is_mapping() {
        return Err(format!(
            "an entry must be a mapping of fields, found {}",
            value_kind(raw)
        ));
    }
    let record: FixRecord = serde_norway::from_value(raw.clone()).map_err(|e| e.to_string())?;
    Fix::from_record(record).map_err(|e| e.to_string())
}

fn string_field(raw: &Value, field: &str) -> Option<String> {
    raw.get(field).and_then(Value::as_str).map(str::to_string)
}

fn value_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::fix::tests::memory_fix;

    const KNOWN_SHAPE: &str = "\
fixes:
  - namespace: gitlab
    resource: gitlab-webservice
    type: memory
    value: 4Gi
    timestamp: 2026-01-15T10:30:00Z
";

    #[test]
    fn reads_the_documented_shape() {
        let doc = FixDocument::parse(KNOWN_SHAPE).unwrap();
        let fixes: Vec<_> = doc.fixes().collect();
        assert_eq!(fixes.len(), 1);
        assert_eq!(fixes[0].namespace, "gitlab");
        assert_eq!(fixes[0].resource, "gitlab-webservice");
        assert_eq!(fixes[0].value.as_str(), "4Gi");
        assert!(doc.problems().is_empty());
    }

    #[test]
    fn empty_and_null_documents_are_empty() {
        for text in ["", "\n", "fixes:\n", "fixes: []\n"] {
            let doc = FixDocument::parse(text).unwrap();
            assert_eq!(doc.fixes().count(), 0, "{text:?}");
        }
    }

    #[test]
    fn whole_document_errors_say_what_is_wrong() {
        assert!(matches!(
            FixDocument::parse("fixes: [unclosed"),
            Err(DocumentError::Yaml(_))
        ));
        assert_eq!(
            FixDocument::parse("- a\n- b\n").unwrap_err(),
            DocumentError::NotAMapping("a list")
        );
        assert_eq!(
            FixDocument::parse("fixes: 3\n").unwrap_err(),
            DocumentError::FixesNotAList("a number")
        );
    }

    #[test]
    fn bad_entries_are_reported_and_kept_verbatim() {
        let text = format!(
            "{KNOWN_SHAPE}  - namespace: gitlab\n    resource: registry\n    type: memory\n    value: 4Gx\n  - just a string\n"
        );
        let mut doc = FixDocument::parse(&text).unwrap();
        assert_eq!(doc.fixes().count(), 1);
        let problems = doc.problems();
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].index, 1);
        assert_eq!(problems[0].resource.as_deref(), Some("registry"));
        assert!(problems[0].message.contains("4Gx"), "{}", problems[0]);
        assert!(problems[1].message.contains("a string"), "{}", problems[1]);

        doc.record(memory_fix("other", "app", "1Gi"));
        let rewritten = FixDocument::parse(&doc.to_yaml().unwrap()).unwrap();
        assert_eq!(rewritten.fixes().count(), 2);
        assert_eq!(rewritten.problems().len(), 2, "{}", doc.to_yaml().unwrap());
        assert!(doc.to_yaml().unwrap().contains("4Gx"));
    }

    #[test]
    fn an_out_of_range_value_is_an_entry_problem_not_a_panic() {
        let text = format!(
            "{KNOWN_SHAPE}  - namespace: gitlab\n    resource: sidekiq\n    type: memory\n    value: 1e11Ei\n"
        );
        let doc = FixDocument::parse(&text).unwrap();
        let fixes: Vec<_> = doc.fixes().collect();
        assert_eq!(fixes.len(), 1);
        assert_eq!(fixes[0].resource, "gitlab-webservice");
        let problems = doc.problems();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].resource.as_deref(), Some("sidekiq"));
        assert!(problems[0].message.contains("1e11Ei"), "{}", problems[0]);
        assert!(
            problems[0].message.contains("larger than 1Ei"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn unknown_fields_are_an_entry_problem() {
        let text = format!("{KNOWN_SHAPE}    colour: blue\n");
        let doc = FixDocument::parse(&text).unwrap();
        assert_eq!(doc.fixes().count(), 0);
        assert!(doc.problems()[0].message.contains("colour"));
    }

    #[test]
    fn a_document_yaml_cannot_write_back_is_an_error_naming_the_entry_never_an_empty_text() {
        // Found by fuzzing: a mapping with a tagged key parses, but serde_norway cannot write it
        // back; the rewrite used to be "", which a store write would have stored.
        let text =
            "fixes:\n- {namespace: gitlab, resource: web, type: memory, value: 1Gi}\n- !x :\n";
        let mut doc = FixDocument::parse(text).unwrap();
        assert_eq!(doc.fixes().count(), 1);
        match doc.to_yaml() {
            Err(DocumentError::NotWritable(message)) => {
                assert!(message.contains("entry 1"), "{message}");
            }
            other => panic!("expected NotWritable, got {other:?}"),
        }
        doc.record(memory_fix("gitlab", "cart", "2Gi"));
        assert!(matches!(doc.to_yaml(), Err(DocumentError::NotWritable(_))));
    }

    #[test]
    fn recording_twice_changes_nothing_the_second_time() {
        let mut doc = FixDocument::parse(KNOWN_SHAPE).unwrap();
        assert_eq!(
            doc.record(memory_fix("gitlab", "gitlab-webservice", "6Gi")),
            MergeOutcome::Raised { from: "4Gi".into() }
        );
        let once = doc.to_yaml().unwrap();
        assert_eq!(
            doc.record(memory_fix("gitlab", "gitlab-webservice", "6Gi")),
            MergeOutcome::Unchanged
        );
        assert_eq!(doc.to_yaml().unwrap(), once);
        assert_eq!(doc.fixes().count(), 1);
    }

    #[test]
    fn removing_fixes_keeps_invalid_entries_word_for_word() {
        let text = format!(
            "{KNOWN_SHAPE}  - namespace: gitlab\n    resource: gitlab-webservice\n    type: memory\n    value: 4Gx\n  - namespace: other\n    resource: app\n    type: memory\n    value: 1Gi\n"
        );
        let mut doc = FixDocument::parse(&text).unwrap();
        let removed = doc.remove_fixes(|fix| fix.resource == "gitlab-webservice");
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].value.as_str(), "4Gi");
        let rewritten = FixDocument::parse(&doc.to_yaml().unwrap()).unwrap();
        assert_eq!(rewritten.fixes().count(), 1);
        assert_eq!(rewritten.problems().len(), 1);
        assert!(
            doc.to_yaml().unwrap().contains("value: 4Gx"),
            "{}",
            doc.to_yaml().unwrap()
        );
        assert!(
            doc.remove_fixes(|fix| fix.resource == "gitlab-webservice")
                .is_empty()
        );
    }

    #[test]
    fn other_top_level_keys_survive_a_rewrite() {
        let text = format!("version: 1\n{KNOWN_SHAPE}");
        let doc = FixDocument::parse(&text).unwrap();
        assert!(doc.to_yaml().unwrap().contains("version: 1"));
    }
}
