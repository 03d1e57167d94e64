//! selfheal: a Kubernetes self-healing system. One binary, two halves over one core.
//!
//! ```text
//!              core (fix model, quantities, fixes.yaml, index, owner chain, targeting,
//!                    the raise rule, headroom)
//!                ↑                         ↑
//!   store (ConfigMap `fixes` | file)   cluster (leader election; LimitRange, quota, node facts)
//!        ↑                ↑              ↑                ↑
//!   webhook (admission: pure mutate)     heal (DETECT → DIAGNOSE → FACTS → PLAN → EXECUTE)
//!        ↑                                ↑
//!   app (CLI: serve, health, heal, fixes [forget|prune|export|import], certs, unseal, completions, man)
//! ```
//!
//! - **Admission half** (`webhook`): `mutate` is pure (object + fixes + cluster facts → JSON
//!   Patch); `target` says where an object's pod template and claims live; `tls` serves
//!   reloadable certificates. The admission path makes no API call: fixes and cluster facts are
//!   watched snapshots.
//! - **Healing half** (`heal`): `detect` (pure: status → problems), `diagnose` (pure: logs and
//!   events → cause), `inspect` (a view of the cluster and its findings), `facts` (what a
//!   decision reads, gathered before it), `plan` (pure: finding + facts + rails + history →
//!   `Decision`), `execute` (carries a decision out, I/O only) and `record` (the one Event
//!   recorder), `run` (the loop shared by `selfheal heal` and the watcher), `watcher` (a pure
//!   index and a thin loop inside `serve`), `vault` (seal status and unseal, through `plan`).
//! - **Shared below both**: `core` (no Kubernetes I/O; `core::targeting` is the one rule of
//!   which objects may be changed), `store` (fix persistence), `cluster` (leader election and
//!   the facts of what the cluster enforces), `certs` (generation, checks, selfheal's own
//!   certificate), `metrics`, `text`.
//!
//! Dependencies point one way: `app` → `webhook` / `heal` → `store` / `cluster` → `core`; `heal`
//! and `certs` never name `webhook`, `core` names nothing above it (`tests/it/layering.rs`).

pub mod app;
pub mod certs;
pub mod cluster;
pub mod core;
pub mod heal;
pub mod metrics;
pub mod store;
pub mod text;
pub mod webhook;
