//! The healing half: DETECT → DIAGNOSE → PLAN → EXECUTE → PERSIST.
//!
//! - `detect`: pure, object status → problems.
//! - `diagnose`: pure, logs and events → a cause with evidence.
//! - `inspect`: gathers a cluster view (API, caches or a kubectl dump) and runs detect + diagnose.
//! - `plan`: pure, a finding and the safety rails → one action.
//! - `execute`: carries the action out (rate limits, dry-run, Events, the fix store).
//! - `run`: the loop over findings, shared by `selfheal heal` and the watcher.
//! - `watcher`: the long-running loop inside `selfheal serve`.
//! - `probe`, `ratelimit`: TCP probes of dependencies; per-target backoff.

pub mod detect;
pub mod diagnose;
pub mod execute;
pub mod inspect;
pub mod plan;
pub mod probe;
pub mod ratelimit;
pub mod run;
pub mod vault;
pub mod watcher;
