//! selfheal: a Kubernetes self-healing system.
//!
//! Data flows one way:
//!
//! ```text
//! store (ConfigMap `fixes` | .state/fixes.yaml)
//!   → document (parse fixes.yaml, per-entry errors)
//!   → index (FixIndex: fixes by namespace and resource)
//!   → Snapshot (atomically swapped, read without I/O)
//!   → webhook::mutate (pure: object + fixes → JSON Patch)
//!   → webhook (axum handler over rustls)
//! ```
//!
//! Modules, one concept each: `fix` (the model and merge rule), `quantity` (byte quantities),
//! `document` (the YAML form), `index` (lookup), `store` (backends and snapshot), `webhook`
//! (admission), `tls` and `certs` (serving certificates), `metrics`, `cli`, `serve` and `list`
//! (commands).

pub mod actions;
pub mod certcheck;
pub mod certs;
pub mod cli;
pub mod detect;
pub mod diagnose;
pub mod document;
pub mod execute;
pub mod fix;
pub mod heal;
pub mod index;
pub mod inspect;
pub mod leader;
pub mod limits;
pub mod list;
pub mod metrics;
pub mod oneshot;
pub mod probe;
pub mod quantity;
pub mod ratelimit;
pub mod report;
pub mod selfcert;
pub mod serve;
pub mod store;
pub mod text;
pub mod tls;
pub mod vault;
pub mod watcher;
pub mod webhook;
pub mod workload;
