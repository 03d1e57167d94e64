//! What a Vault server says of its seal (`/v1/sys/seal-status`), and the rule that keeps
//! auto-unseal from fighting an operator: a partial unseal is reset only once it has been seen
//! unchanged for the whole hold-off. Pure.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// `GET /v1/sys/seal-status` (and the answer of every unseal step).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct SealStatus {
    pub sealed: bool,
    /// Threshold: shares needed.
    pub t: u32,
    /// Total shares.
    pub n: u32,
    /// Shares submitted so far in this attempt.
    pub progress: u32,
    #[serde(default = "yes")]
    pub initialized: bool,
    /// Vault's identifier of the attempt in progress: a new one with the first share of every
    /// attempt, empty while none is in progress (and on servers that do not report it).
    #[serde(default)]
    pub nonce: String,
}

fn yes() -> bool {
    true
}

impl SealStatus {
    /// The unseal attempt in progress, if a sealed server holds some shares.
    pub fn attempt(&self) -> Option<UnsealAttempt> {
        (self.sealed && self.progress > 0).then(|| UnsealAttempt {
            progress: self.progress,
            nonce: self.nonce.clone(),
        })
    }
}

/// An unseal attempt in progress at one server, as `seal-status` shows it. Two sightings show the
/// same attempt, unmoved, when both fields are equal: within one attempt `progress` only grows, and
/// a reset or a new attempt brings a new `nonce`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsealAttempt {
    pub progress: u32,
    pub nonce: String,
}

/// How long a partial unseal must stay unchanged before selfheal treats it as abandoned.
///
/// Five minutes, ten polls of the watcher: an operator entering shares from a terminal, or key
/// holders taking turns on a call, submit the next share well within it, so selfheal never
/// resets their work; an abandoned attempt (someone walked away, a walk of selfheal's cut short)
/// delays the automatic unseal by at most this window plus one poll.
pub const OPERATOR_HOLD_OFF: Duration = Duration::from_secs(5 * 60);

/// An attempt as last seen at one server, and since when it has been seen unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenAttempt {
    pub attempt: UnsealAttempt,
    pub since: Instant,
}

/// Verdict on a partial unseal found at a sealed server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartialUnseal {
    /// It moved within the hold-off (or is seen for the first time): someone may be entering
    /// shares. Leave it alone: no reset, no share.
    OperatorAtWork { unchanged_for: Duration },
    /// Unchanged for at least the hold-off: abandoned. It may be reset and the unseal redone.
    Abandoned { unchanged_for: Duration },
}

/// The rule that keeps auto-unseal from fighting an operator:
///
/// selfheal resets a partial unseal (progress above 0) only after it has seen that same attempt —
/// the same `progress` and the same `nonce` from `/v1/sys/seal-status` — unchanged for at least
/// `hold_off` ([`OPERATOR_HOLD_OFF`], 5 minutes). An attempt seen for the first time (also after
/// selfheal starts or a new leader takes over) starts the clock, so it is never reset at first
/// sight; every share an operator submits, and every new attempt, starts the clock again. Until
/// then selfheal reports the unseal in progress and sends nothing to that server.
///
/// `previous` is what was seen at this server at the last poll; the answer carries what to
/// remember for the next one.
pub fn judge_partial(
    previous: Option<&SeenAttempt>,
    attempt: &UnsealAttempt,
    now: Instant,
    hold_off: Duration,
) -> (SeenAttempt, PartialUnseal) {
    let since = match previous {
        Some(seen) if seen.attempt == *attempt => seen.since,
        _ => now,
    };
    let unchanged_for = now.saturating_duration_since(since);
    let verdict = if unchanged_for >= hold_off {
        PartialUnseal::Abandoned { unchanged_for }
    } else {
        PartialUnseal::OperatorAtWork { unchanged_for }
    };
    (
        SeenAttempt {
            attempt: attempt.clone(),
            since,
        },
        verdict,
    )
}

/// The partial unseals seen at each server, kept from one poll to the next.
#[derive(Debug, Clone)]
pub struct PartialUnseals {
    hold_off: Duration,
    seen: BTreeMap<String, SeenAttempt>,
}

impl PartialUnseals {
    pub fn new(hold_off: Duration) -> Self {
        Self {
            hold_off,
            seen: BTreeMap::new(),
        }
    }

    /// Records what `status` shows at `address` at `now`; the verdict when a partial unseal is in
    /// progress, `None` (and nothing remembered) when there is none.
    pub fn observe(
        &mut self,
        address: &str,
        status: &SealStatus,
        now: Instant,
    ) -> Option<PartialUnseal> {
        let Some(attempt) = status.attempt() else {
            self.seen.remove(address);
            return None;
        };
        let (seen, verdict) = judge_partial(self.seen.get(address), &attempt, now, self.hold_off);
        self.seen.insert(address.to_string(), seen);
        Some(verdict)
    }

    /// How long an attempt must stay unchanged to count as abandoned.
    pub fn hold_off(&self) -> Duration {
        self.hold_off
    }

    /// Forgets the servers that are not in `addresses`.
    pub fn retain(&mut self, addresses: &BTreeSet<&str>) {
        self.seen
            .retain(|address, _| addresses.contains(address.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(progress: u32, nonce: &str) -> UnsealAttempt {
        UnsealAttempt {
            progress,
            nonce: nonce.into(),
        }
    }

    const HOLD_OFF: Duration = Duration::from_secs(300);

    /// Judges `sightings` (seconds after the first poll, attempt seen) one after the other.
    fn judge_all(sightings: &[(u64, UnsealAttempt)]) -> Vec<PartialUnseal> {
        let start = Instant::now();
        let mut seen: Option<SeenAttempt> = None;
        sightings
            .iter()
            .map(|(at, attempt)| {
                let now = start + Duration::from_secs(*at);
                let (next, verdict) = judge_partial(seen.as_ref(), attempt, now, HOLD_OFF);
                seen = Some(next);
                verdict
            })
            .collect()
    }

    fn at_work(seconds: u64) -> PartialUnseal {
        PartialUnseal::OperatorAtWork {
            unchanged_for: Duration::from_secs(seconds),
        }
    }

    fn abandoned(seconds: u64) -> PartialUnseal {
        PartialUnseal::Abandoned {
            unchanged_for: Duration::from_secs(seconds),
        }
    }

    #[test]
    fn a_partial_unseal_is_never_abandoned_at_first_sight() {
        assert_eq!(judge_all(&[(0, attempt(1, "n1"))]), [at_work(0)]);
        let (seen, _) = judge_partial(None, &attempt(2, "n1"), Instant::now(), HOLD_OFF);
        assert_eq!(seen.attempt, attempt(2, "n1"));
    }

    #[test]
    fn the_issue_case_progress_one_of_three_24s_later_is_an_operator_at_work() {
        assert_eq!(
            judge_all(&[(0, attempt(1, "n1")), (24, attempt(1, "n1"))]),
            [at_work(0), at_work(24)]
        );
    }

    #[test]
    fn an_unchanged_attempt_is_abandoned_exactly_at_the_hold_off() {
        assert_eq!(
            judge_all(&[
                (0, attempt(1, "n1")),
                (299, attempt(1, "n1")),
                (300, attempt(1, "n1")),
            ]),
            [at_work(0), at_work(299), abandoned(300)]
        );
    }

    #[test]
    fn every_share_restarts_the_clock() {
        assert_eq!(
            judge_all(&[
                (0, attempt(1, "n1")),
                (240, attempt(2, "n1")),
                (480, attempt(2, "n1")),
                (540, attempt(2, "n1")),
            ]),
            [at_work(0), at_work(0), at_work(240), abandoned(300)]
        );
    }

    #[test]
    fn a_new_attempt_at_the_same_progress_restarts_the_clock() {
        // The operator reset and entered one share again: same progress, new nonce.
        assert_eq!(
            judge_all(&[
                (0, attempt(1, "n1")),
                (290, attempt(1, "n2")),
                (320, attempt(1, "n2")),
            ]),
            [at_work(0), at_work(0), at_work(30)]
        );
    }

    fn status(sealed: bool, progress: u32, nonce: &str) -> SealStatus {
        SealStatus {
            sealed,
            t: 3,
            n: 5,
            progress,
            initialized: true,
            nonce: nonce.into(),
        }
    }

    #[test]
    fn servers_are_judged_apart_and_forgotten_when_no_attempt_is_left() {
        let start = Instant::now();
        let later = start + HOLD_OFF;
        let mut partials = PartialUnseals::new(HOLD_OFF);
        assert_eq!(partials.observe("a", &status(true, 0, ""), start), None);
        assert_eq!(
            partials.observe("a", &status(true, 1, "n1"), start),
            Some(at_work(0))
        );
        assert_eq!(
            partials.observe("b", &status(true, 1, "n1"), later),
            Some(at_work(0))
        );
        assert_eq!(
            partials.observe("a", &status(true, 1, "n1"), later),
            Some(abandoned(300))
        );
        // Unsealed meanwhile, then sealed again with the same progress and nonce: a new sighting.
        assert_eq!(partials.observe("a", &status(false, 0, ""), later), None);
        assert_eq!(
            partials.observe("a", &status(true, 1, "n1"), later),
            Some(at_work(0))
        );
        partials.retain(&BTreeSet::from(["b"]));
        assert_eq!(
            partials.observe("a", &status(true, 1, "n1"), later + HOLD_OFF),
            Some(at_work(0)),
            "a server no longer discovered is forgotten"
        );
    }

    #[test]
    fn an_unsealed_server_has_no_attempt_whatever_its_progress() {
        assert_eq!(status(false, 2, "n1").attempt(), None);
        assert_eq!(status(true, 0, "").attempt(), None);
        assert_eq!(status(true, 2, "n1").attempt(), Some(attempt(2, "n1")));
    }
}
