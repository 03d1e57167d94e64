//! selfheal: a Kubernetes self-healing system. One binary, two halves over one fix store.
//!
//! ```text
//!                 core (fix model, quantities, fixes.yaml, index, owner chain)
//!                   ↑                    ↑
//!   store (ConfigMap `fixes` | file) ────┤
//!        ↑                ↑              │
//!   webhook (admission)   heal (DETECT → DIAGNOSE → PLAN → EXECUTE → PERSIST)
//!        ↑                ↑
//!   app (CLI: serve, health, heal, fixes [forget|prune|export|import], certs, unseal, completions, man)
//! ```
//!
//! - **Admission half** (`webhook`): `mutate` is pure (object + fixes → JSON Patch); `target`
//!   says where an object's pod template and claims live; `tls` serves reloadable certificates.
//!   The admission path makes no API call: fixes and LimitRange maxima are watched snapshots.
//! - **Healing half** (`heal`): `detect` (pure: status → problems), `diagnose` (pure: logs and
//!   events → cause), `inspect` (gathers a cluster view and runs both), `plan` (pure: finding +
//!   rails → action), `execute` (carries an action out, with rate limits, dry-run and Events),
//!   `run` (the shared loop), `watcher` (the long-running loop inside `serve`).
//! - **Shared below both**: `core` (no Kubernetes I/O), `store` (fix persistence), `cluster`
//!   (leader election, LimitRange snapshot), `certs` (generation, checks, selfheal's own
//!   certificate), `metrics`, `text`. Vault is part of the healing half (`heal::vault`).
//!
//! Dependencies point one way: `app` → `webhook` / `heal` → `store` / `cluster` → `core`.

pub mod app;
pub mod certs;
pub mod cluster;
pub mod core;
pub mod heal;
pub mod metrics;
pub mod store;
pub mod text;
pub mod webhook;
