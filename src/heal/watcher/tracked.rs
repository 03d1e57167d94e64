//! The types of the watcher's index: the two clocks, its configuration, its effects and work
//! items, and what it holds of one object ([`Tracked`]) with the rule of the delay a changed
//! object keeps.

use std::collections::HashSet;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, Secret};
use tokio::time::Instant;

use super::handled::Handled;
use super::subject::Subject;
use super::warnings::RecentWarnings;
use crate::core::targeting::Targeting;
use crate::heal::detect::{Problem, ProblemKey, Thresholds};
use crate::heal::ratelimit::ActionKey;

/// The time, on both clocks: detection reads the wall clock (grace periods, certificate
/// windows), scheduling the monotonic one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub wall: Timestamp,
    pub mono: Instant,
}

impl Now {
    pub fn current() -> Self {
        Self {
            wall: Timestamp::now(),
            mono: Instant::now(),
        }
    }

    /// The monotonic instant of a wall-clock time after this one (`None`: it is not later).
    pub(super) fn mono_at(&self, wall: Timestamp) -> Option<Instant> {
        (wall > self.wall)
            .then(|| {
                self.mono
                    .checked_add(wall.duration_since(self.wall).unsigned_abs())
            })
            .flatten()
    }
}

/// How the index schedules.
#[derive(Debug, Clone)]
pub struct IndexConfig {
    pub thresholds: Thresholds,
    /// Where anything is tracked (objects elsewhere are ignored).
    pub targeting: Targeting,
    /// How soon a certificate still wrong after its handling is looked at again.
    pub certificate_interval: Duration,
    /// How long a handled problem is remembered without being seen again.
    pub handled_ttl: Duration,
    /// First retry after a failed handling; doubles per failure up to the maximum.
    pub failure_backoff: Duration,
    pub max_failure_backoff: Duration,
    /// Pods and claims whose recent Warning events are kept, at most; per object; how long.
    pub warned_objects: usize,
    pub warnings_per_object: usize,
    pub warning_ttl: Duration,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            thresholds: Thresholds::default(),
            targeting: Targeting::default(),
            certificate_interval: Duration::from_secs(600),
            handled_ttl: Duration::from_secs(6 * 3600),
            failure_backoff: Duration::from_secs(5),
            max_failure_backoff: Duration::from_secs(300),
            warned_objects: 2048,
            warnings_per_object: 4,
            warning_ttl: Duration::from_secs(3600),
        }
    }
}

/// A TLS Secret by name, for its certificate-expiry series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretName {
    pub namespace: String,
    pub name: String,
}

/// What the loop carries out for the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Export a certificate's `notAfter` (Unix seconds).
    ExportExpiry { secret: SecretName, not_after: i64 },
    /// The Secret is gone: drop its series.
    ForgetExpiry(SecretName),
    /// The object is gone: forget the history of its actions.
    ForgetHistory(ActionKey),
}

/// One key's work: its subjects as last seen, the problems to handle (detected already), and
/// the Warning events kept about them (so the diagnosis quotes what detection saw).
#[derive(Debug, Clone)]
pub struct WorkItem {
    pub key: String,
    pub subjects: Vec<Subject>,
    pub problems: Vec<Problem>,
    pub warnings: Vec<Event>,
}

/// What became of one problem of a work item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Handled (acted on, reported, refused, nothing to do).
    Settled,
    /// Waits for a rate limit or a budget: try again then.
    RetryIn(Duration),
    /// The handling failed: try again after the key's backoff.
    Failed,
}

/// One object held, with what was last detected of it.
#[derive(Debug)]
pub(super) struct Tracked {
    pub(super) subject: Subject,
    /// Its problems at its last look (before deduplication).
    pub(super) problems: Vec<Problem>,
    /// When a problem not there yet can first appear by time alone.
    pub(super) recheck_at: Option<Timestamp>,
    /// The earliest time it may be handled again.
    pub(super) not_before: Option<Instant>,
    /// `not_before` is a later look at a settled problem, not a backoff: any change to the
    /// object is looked at at once.
    pub(super) settled_look: bool,
}

impl Tracked {
    /// Detects its problems at `now`.
    pub(super) fn detect(&mut self, warnings: &RecentWarnings, now: Now, thresholds: &Thresholds) {
        let about = warnings.about(self.subject.kind(), self.subject.meta());
        self.problems = self.subject.problems(&about, now.wall, thresholds);
        self.recheck_at = self
            .subject
            .recheck_at(now.wall, thresholds)
            .filter(|t| *t > now.wall);
    }

    /// Detects again when time alone may have changed its problems (its grace ended).
    pub(super) fn refresh(&mut self, warnings: &RecentWarnings, now: Now, thresholds: &Thresholds) {
        if self.recheck_at.is_some_and(|t| t <= now.wall) {
            self.detect(warnings, now, thresholds);
        }
    }

    /// Not before `until` (the later of this and any delay it has).
    pub(super) fn delay(&mut self, until: Instant, settled_look: bool) {
        let later = self.not_before.is_none_or(|nb| until >= nb);
        self.not_before = Some(self.not_before.map_or(until, |nb| nb.max(until)));
        if later {
            self.settled_look = settled_look;
        }
    }
}

/// The delay a changed object keeps: a backoff while no new occurrence appeared, never the
/// later look of a settled problem.
pub(super) fn carried(
    handled: &mut Handled,
    previous: &Tracked,
    current: &Tracked,
    now: Now,
) -> (Option<Instant>, bool) {
    let Some(not_before) = previous.not_before else {
        return (None, false);
    };
    let changed =
        previous.subject.meta().resource_version != current.subject.meta().resource_version;
    if previous.settled_look && changed {
        return (None, false);
    }
    let before: HashSet<ProblemKey> = previous.problems.iter().map(Problem::key).collect();
    let new_occurrence = current
        .problems
        .iter()
        .filter(|p| !handled.contains(p, now.mono))
        .any(|p| !before.contains(&p.key()));
    if new_occurrence {
        (None, false)
    } else {
        (Some(not_before), previous.settled_look)
    }
}

pub(super) fn secret_name(secret: &Secret) -> SecretName {
    SecretName {
        namespace: secret.metadata.namespace.clone().unwrap_or_default(),
        name: secret.metadata.name.clone().unwrap_or_default(),
    }
}
