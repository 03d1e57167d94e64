//! The dependencies point one way: `core` ← `store`, `cluster` ← `webhook`, `heal` ← `app`.
//! Read from the sources: a module names another as `crate::<module>` (or `super::super::…`
//! never crosses a top-level module here), so a forbidden `crate::` path in a file is a
//! forbidden dependency.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/<module>`.
fn sources(module: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src")
            .join(module),
        &mut found,
    );
    assert!(!found.is_empty(), "no sources under src/{module}");
    found
}

/// The files under `src/<module>` that name one of `forbidden` (`crate::webhook`), with the
/// line.
fn mentions(module: &str, forbidden: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for file in sources(module) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            if let Some(path) = forbidden.iter().find(|path| line.contains(*path)) {
                found.push(format!(
                    "{}:{}: {path}: {}",
                    file.display(),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    found
}

#[test]
fn the_healing_half_and_the_certificates_never_depend_on_the_webhook() {
    for module in ["heal", "certs"] {
        let found = mentions(module, &["crate::webhook"]);
        assert!(found.is_empty(), "{found:#?}");
    }
}

#[test]
fn core_depends_on_nothing_above_it_and_store_and_cluster_not_on_the_halves() {
    let found = mentions(
        "core",
        &[
            "crate::heal",
            "crate::webhook",
            "crate::store",
            "crate::cluster",
            "crate::app",
        ],
    );
    assert!(found.is_empty(), "{found:#?}");
    for module in ["store", "cluster"] {
        let found = mentions(module, &["crate::heal", "crate::webhook", "crate::app"]);
        assert!(found.is_empty(), "{found:#?}");
    }
    let found = mentions("webhook", &["crate::heal", "crate::app"]);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_check_sees_a_forbidden_path() {
    // The reader itself: a path that is there is found (so an empty answer means something).
    assert!(!mentions("heal", &["crate::heal::plan"]).is_empty());
}
