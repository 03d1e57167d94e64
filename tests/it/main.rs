//! Every integration test in one crate (one link of the library instead of one per file).
//! Each module is one area; `support` holds the test API server and shared helpers.

mod support;

mod admission_ignore;
mod admission_rails;
mod apiserver_rules;
mod certificates;
mod cli;
mod cli_heal_leader;
mod cluster_facts;
mod detect_states;
mod e2e_cluster;
mod field_manager;
mod fix_lifecycle;
mod fuzz_corpus;
mod gitops_examples;
mod heal_loop;
mod healing_core;
mod identity;
mod kustomize_overlays;
mod layering;
mod manifests;
mod observe;
mod rails;
mod readme_claims;
mod reapply;
mod selfcert;
mod store_configmap;
mod store_file;
mod store_unwritable;
mod tls_server;
mod vault;
mod watcher;
mod watcher_resilience;
mod watcher_states;
mod webhook_admission;
mod webhook_malformed;
