//! The healing half: DETECT → DIAGNOSE → READ FACTS → PLAN → EXECUTE → RECORD.
//!
//! - `detect`: pure, object status → problems (`detect/{pod,claim,secret,service}`).
//! - `diagnose`: pure, logs and events → a cause with evidence (the catalogue of patterns).
//! - `inspect`: a view of the cluster (from the API, the watcher, or a `kubectl` dump) and its
//!   findings: detect + diagnose over the view.
//! - `facts`: what a decision reads, as plain data, gathered before it (`facts::Reader`).
//! - `plan`: pure, the one decision: finding + facts + rails + history → `Decision`.
//! - `execute`: carries a decision out (I/O only) and records it; `record`: the one Event
//!   recorder.
//! - `run`: the loop over findings, shared by `selfheal heal` and the watcher.
//! - `watcher`: the long-running loop inside `selfheal serve` (a pure index and a thin loop).
//! - `vault`: Vault's seal status and the unseal, through the same decision.
//! - `probe`, `ratelimit`, `call`: TCP probes of dependencies; the history of actions (per-target
//!   backoff); the one bound on every API call.

pub mod call;
pub mod detect;
pub mod diagnose;
pub mod execute;
pub mod facts;
pub mod inspect;
pub mod plan;
pub mod probe;
pub mod ratelimit;
pub mod record;
pub mod run;
pub mod vault;
pub mod watcher;
