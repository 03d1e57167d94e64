//! What came of a decision ([`Outcome`]) and why an action could not be carried out
//! ([`ExecuteError`]).

use std::time::Duration;

use crate::heal::call::Elapsed;
use crate::heal::facts::ReadError;
use crate::heal::plan::Rail;
use crate::store::StoreError;

/// What happened to one decision.
#[derive(Debug)]
pub enum Outcome {
    /// The action changed what it had to.
    Done(String),
    /// Nothing needed changing (the fix was there already, the pod was gone, a renewal is under
    /// way).
    Unchanged(String),
    /// `--dry-run`: what would have been done.
    DryRun(String),
    /// The action waits for its rate limit; it may go in `retry_in`.
    RateLimited { message: String, retry_in: Duration },
    /// Nothing to do, said (a `NotActing` Event).
    Reported(String),
    /// A person must look (a `HealingStopped` Warning Event).
    Alerted(String),
    /// A rail stopped the action (a `NotActing` Event naming it). A PodDisruptionBudget may
    /// allow it later: `retry_in`.
    Refused {
        rail: Rail,
        message: String,
        retry_in: Option<Duration>,
    },
    /// The action could not be carried out; it is retried later.
    Failed(ExecuteError),
}

impl Outcome {
    /// The `result` label: `done`, `unchanged`, `dry_run`, `rate_limited`, `reported`,
    /// `alerted`, `refused`, `failed`.
    pub fn result(&self) -> &'static str {
        match self {
            Outcome::Done(_) => "done",
            Outcome::Unchanged(_) => "unchanged",
            Outcome::DryRun(_) => "dry_run",
            Outcome::RateLimited { .. } => "rate_limited",
            Outcome::Reported(_) => "reported",
            Outcome::Alerted(_) => "alerted",
            Outcome::Refused { .. } => "refused",
            Outcome::Failed(_) => "failed",
        }
    }

    /// The rail that refused the action.
    pub fn rail(&self) -> Option<Rail> {
        match self {
            Outcome::Refused { rail, .. } => Some(*rail),
            _ => None,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Outcome::Done(message)
            | Outcome::Unchanged(message)
            | Outcome::DryRun(message)
            | Outcome::Reported(message)
            | Outcome::Alerted(message)
            | Outcome::RateLimited { message, .. }
            | Outcome::Refused { message, .. } => message.clone(),
            Outcome::Failed(error) => error.to_string(),
        }
    }

    /// When the action may be tried again: a rate limit or a PodDisruptionBudget's refusal.
    pub fn retry_in(&self) -> Option<Duration> {
        match self {
            Outcome::RateLimited { retry_in, .. } => Some(*retry_in),
            Outcome::Refused { retry_in, .. } => *retry_in,
            _ => None,
        }
    }
}

/// Why an action could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// Its facts could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Timeout(#[from] Elapsed),
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("putting the change into {what}: {reason}")]
    Patch { what: String, reason: String },
    /// An action the executor does not carry out (a Vault unseal is the Vault check's).
    #[error("{0} is carried out by the Vault check, not the healing executor")]
    NotHere(crate::heal::plan::ActionKind),
}

impl ExecuteError {
    pub(super) fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let what = what.into();
        move |source| ExecuteError::Api { what, source }
    }
}
