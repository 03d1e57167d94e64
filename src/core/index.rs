//! The in-memory set of fixes the webhook reads on every admission request: fixes grouped by
//! namespace and resource name, so a lookup is two hash probes and no allocation.

use std::collections::{BTreeMap, HashMap};

use crate::core::document::FixDocument;
use crate::core::fix::{Fix, FixKey};

#[derive(Debug, Clone, Default)]
pub struct FixIndex {
    by_namespace: HashMap<String, HashMap<String, Vec<Fix>>>,
    len: usize,
}

impl FixIndex {
    /// Builds an index; fixes with the same key are merged (the largest value wins).
    pub fn new(fixes: impl IntoIterator<Item = Fix>) -> Self {
        let mut unique: BTreeMap<FixKey, Fix> = BTreeMap::new();
        for fix in fixes {
            match unique.get_mut(&fix.key()) {
                Some(stored) => {
                    stored.merge(fix);
                }
                None => {
                    unique.insert(fix.key(), fix);
                }
            }
        }
        let len = unique.len();
        let mut by_namespace: HashMap<String, HashMap<String, Vec<Fix>>> = HashMap::new();
        for fix in unique.into_values() {
            by_namespace
                .entry(fix.namespace.clone())
                .or_default()
                .entry(fix.resource.clone())
                .or_default()
                .push(fix);
        }
        Self { by_namespace, len }
    }

    /// The index for a freshly read document, given the index in use before it.
    ///
    /// An entry that became invalid must not silently drop a fix that was working: fixes of the
    /// previous index whose namespace and resource match an invalid entry, and that have no valid
    /// replacement, are carried over until the entry is repaired.
    pub fn next(previous: &FixIndex, document: &FixDocument) -> FixIndex {
        let mut fixes: Vec<Fix> = document.fixes().cloned().collect();
        let present: std::collections::HashSet<FixKey> = fixes.iter().map(Fix::key).collect();
        for problem in document.problems() {
            let (Some(namespace), Some(resource)) = (&problem.namespace, &problem.resource) else {
                continue;
            };
            for kept in previous.lookup(namespace, resource) {
                if !present.contains(&kept.key()) {
                    fixes.push(kept.clone());
                }
            }
        }
        FixIndex::new(fixes)
    }

    /// Fixes recorded for `resource` in `namespace`.
    pub fn lookup(&self, namespace: &str, resource: &str) -> &[Fix] {
        self.by_namespace
            .get(namespace)
            .and_then(|resources| resources.get(resource))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Whether any fix exists in `namespace` (a quick way out for most admission requests).
    pub fn has_namespace(&self, namespace: &str) -> bool {
        self.by_namespace.contains_key(namespace)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::fix::tests::memory_fix;

    #[test]
    fn lookup_finds_by_namespace_and_resource() {
        let index = FixIndex::new([memory_fix("a", "web", "1Gi"), memory_fix("b", "web", "2Gi")]);
        assert_eq!(index.len(), 2);
        assert_eq!(index.lookup("b", "web")[0].value.as_str(), "2Gi");
        assert!(index.lookup("c", "web").is_empty());
        assert!(index.has_namespace("a"));
        assert!(!index.has_namespace("c"));
    }

    #[test]
    fn duplicate_keys_keep_the_largest_value() {
        let index = FixIndex::new([memory_fix("a", "web", "3Gi"), memory_fix("a", "web", "1Gi")]);
        assert_eq!(index.len(), 1);
        assert_eq!(index.lookup("a", "web")[0].value.as_str(), "3Gi");
    }

    #[test]
    fn a_broken_entry_keeps_the_fix_it_used_to_be() {
        let good = FixDocument::parse(
            "fixes:\n- {namespace: a, resource: web, type: memory, value: 2Gi}\n- {namespace: a, resource: db, type: memory, value: 1Gi}\n",
        )
        .unwrap();
        let first = FixIndex::next(&FixIndex::default(), &good);
        assert_eq!(first.len(), 2);

        let broken = FixDocument::parse(
            "fixes:\n- {namespace: a, resource: web, type: memory, value: 2Gx}\n- {namespace: a, resource: db, type: memory, value: 1Gi}\n",
        )
        .unwrap();
        let second = FixIndex::next(&first, &broken);
        assert_eq!(second.len(), 2);
        assert_eq!(second.lookup("a", "web")[0].value.as_str(), "2Gi");

        let removed = FixDocument::parse(
            "fixes:\n- {namespace: a, resource: db, type: memory, value: 1Gi}\n",
        )
        .unwrap();
        assert_eq!(
            FixIndex::next(&second, &removed).len(),
            1,
            "deleting an entry removes it"
        );
    }
}
