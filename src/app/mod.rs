//! The commands: CLI definitions and what each verb runs. Wiring and presentation only; the
//! decisions live in `webhook`, `heal` and `core`.

pub mod cli;
pub mod commands;
pub mod context;
pub mod fixes;
pub mod list;
pub mod oneshot;
pub mod report;
pub mod serve;
