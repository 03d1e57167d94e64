//! PLAN: the one place where the healing half decides. Pure:
//!
//! ```text
//! plan(finding, facts, rails, history) -> Decision = Act(Action) | Refuse(Refusal) | Report(Report) | Defer(Deferral)
//! ```
//!
//! - `finding`: the problem and its diagnosis (and the workload it answers to);
//! - `facts`: what is known of the cluster ([`crate::heal::facts`]), read before;
//! - `rails`: the caps and ceilings, targeting ([`Targeting`]: protected, watched and ignored
//!   namespaces and objects) and dry run;
//! - `history`: the earlier actions per [`ActionKey`](crate::heal::ratelimit::ActionKey) (the rate limiter), read-only.
//!
//! Two steps: the catalogue's rules (`rules`) say what the problem calls for ([`Intent`]);
//! `admit` then puts that intent through the rails of the object it would change, in this
//! order: the problem's own object and namespace (an opted-out pod makes selfheal act nowhere),
//! what the target is (a dependency behind a Service, a Certificate, a claim, as read), targeting
//! of the target, a dependency that is not down, the room a raise has (quota, nodes), the rate
//! limit, dry run. The first rail that stops the action is the answer.
//!
//! [`reads`] says which object a decision about a finding reads, so the facts are gathered
//! before `plan` runs (`facts::Reader`). The executor carries a decision out and decides nothing.

mod admit;
mod decision;
mod rules;
mod targets;
pub mod vault;

pub use admit::{Reads, attempts_key, reads, service_of_host};
pub use decision::{
    Action, ActionKind, Decision, Deferral, Rail, Refusal, Report, ReportLevel, Reset, Roll,
    TargetRef, workload_group,
};
pub use rules::{Intent, Situation, intent, next_memory_limit};
pub use targets::pod_ready;

use crate::core::quantity::ByteQuantity;
use crate::core::targeting::Targeting;
use crate::heal::facts::Facts;
use crate::heal::inspect::Finding;
use crate::heal::ratelimit::History;

const MI: u128 = 1 << 20;
const GI: u128 = 1 << 30;

/// Safety rails on automatic actions.
#[derive(Debug, Clone)]
pub struct Rails {
    /// Memory is never raised past this.
    pub memory_ceiling: ByteQuantity,
    /// A raise adds at least this much...
    pub memory_min_step: ByteQuantity,
    /// ...and multiplies by at least this percentage.
    pub memory_ratio_percent: u32,
    /// After this many raises of the same fix without recovery: stop and alert.
    pub max_memory_raises: u32,
    pub storage_ceiling: ByteQuantity,
    pub storage_ratio_percent: u32,
    /// Pod deletions to retry an image that does not exist or is denied, before alerting.
    pub max_permanent_pull_retries: u32,
    /// Renewals of one certificate triggered before reporting the renewal as stuck.
    pub max_certificate_renewals: u32,
    /// Raises of one storage fix before selfheal stops and alerts.
    pub max_storage_raises: u32,
    /// Where anything may be changed (kube-system is protected by default).
    pub targeting: Targeting,
    /// Decide and say what would be done; change nothing.
    pub dry_run: bool,
}

impl Default for Rails {
    fn default() -> Self {
        Self {
            memory_ceiling: ByteQuantity::from_bytes(8 * GI),
            memory_min_step: ByteQuantity::from_bytes(256 * MI),
            memory_ratio_percent: 150,
            max_memory_raises: 3,
            storage_ceiling: ByteQuantity::from_bytes(1024 * GI),
            storage_ratio_percent: 150,
            max_permanent_pull_retries: 2,
            max_certificate_renewals: 3,
            max_storage_raises: 3,
            targeting: Targeting::new(vec!["kube-system".into()], Vec::new()),
            dry_run: false,
        }
    }
}

/// Decides what to do about `finding`, from `facts`, within `rails`, knowing `history`.
pub fn plan(finding: &Finding, facts: &Facts, rails: &Rails, history: &dyn History) -> Decision {
    admit::decide(finding, facts, rails, history)
}
