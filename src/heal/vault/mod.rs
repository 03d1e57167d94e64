//! Vault: notice a sealed server and, where allowed, unseal it with the key shares kept in a
//! Kubernetes Secret (`key1` … `keyN`).
//!
//! The unseal walk sends exactly as many shares as the threshold needs, follows `progress` after
//! each one, and stops at the first error or reset instead of walking through every key. Keys
//! never reach a log line, an Event or an error message: `UnsealKey` prints as `***`.
//!
//! An unseal that someone else has begun (progress above 0) is left alone while it may still be
//! moving: see [`judge_partial`] for the rule and [`OPERATOR_HOLD_OFF`] for the window.
//!
//! `status`: the seal status and the hold-off rule (pure); `client`: the HTTP client, the key
//! shares and the unseal walk; `unseal`: the check of every server, once or kept by the leader.

mod client;
mod keep;
mod status;
mod unseal;

pub use client::{UnsealKey, UnsealOutcome, VaultClient, VaultError, keys_from_secret};
pub use keep::keep_unsealed;
pub use status::{
    OPERATOR_HOLD_OFF, PartialUnseal, PartialUnseals, SealStatus, SeenAttempt, UnsealAttempt,
    judge_partial,
};
pub use unseal::{
    OPERATOR_UNSEALING, VaultActions, VaultReport, VaultState, VaultTargets, check_all,
    check_all_with, discover,
};
