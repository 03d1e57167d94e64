//! The Vault decision: what to do about one sealed server, through the same rails as every other
//! action (targeting of the Vault StatefulSet and its namespace, dry run). Pure; the Vault check
//! (`heal::vault`) reads the facts and carries the decision out.

use std::time::Duration;

use super::{Action, ActionKind, Decision, Rail, Refusal, Report, ReportLevel};
use crate::core::targeting::{Target, Targeting};

/// What is known of one sealed Vault server.
#[derive(Debug, Clone)]
pub struct SealedServer<'a> {
    pub address: &'a str,
    /// Shares needed, and shares submitted in the attempt in progress.
    pub threshold: u32,
    pub progress: u32,
    /// A partial unseal seen at earlier polls (`vault::judge_partial`).
    pub partial: Partial,
    /// The Vault as targeting sees it: its StatefulSet (or its namespace, for explicit
    /// addresses) and that namespace's labels.
    pub target: Target<'a>,
    /// `namespace/name` of the Secret holding the key shares.
    pub keys: &'a str,
}

/// A partial unseal at a sealed server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partial {
    /// No share submitted.
    None,
    /// It moved within the hold-off, or is seen for the first time: someone may be entering
    /// shares.
    OperatorAtWork {
        unchanged_for: Duration,
        hold_off: Duration,
    },
    /// Unchanged for the whole hold-off: abandoned, it may be reset.
    Abandoned {
        nonce: String,
        unchanged_for: Duration,
    },
}

/// What the Vault check may do: unseal (else only report) and whether this is a dry run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsealMode {
    pub unseal: bool,
    pub dry_run: bool,
}

/// Whether the decision about a sealed server reads its target (the labels of the Vault's
/// namespace and StatefulSet): not in alert mode, nor while an operator may be at work (those
/// are reported first, with nothing read).
pub fn reads_target(partial: &Partial, mode: UnsealMode) -> bool {
    mode.unseal && !matches!(partial, Partial::OperatorAtWork { .. })
}

/// Decides what to do about `server`: report it (alert mode, an operator at work), refuse (a
/// rail), say what a dry run would send, or unseal it (resetting an abandoned attempt first).
pub fn unseal(server: &SealedServer<'_>, mode: UnsealMode, targeting: &Targeting) -> Decision {
    let (progress, threshold) = (server.progress, server.threshold);
    if !mode.unseal {
        return Decision::Report(Report {
            reason: format!("sealed ({progress}/{threshold} shares submitted); alert mode"),
            level: ReportLevel::Alert,
        });
    }
    if let Partial::OperatorAtWork {
        unchanged_for,
        hold_off,
    } = &server.partial
    {
        return Decision::Report(Report {
            reason: format!(
                "an unseal is in progress ({progress}/{threshold} shares, seen unchanged for {}s): left alone while an operator may be at work; \
                 the watcher resets it only after {}s unchanged, `vault operator unseal -reset` clears it now",
                unchanged_for.as_secs(),
                hold_off.as_secs()
            ),
            level: ReportLevel::Notice,
        });
    }
    let refuse = |rail: Rail, reason: String| {
        Decision::Refuse(Refusal {
            action: ActionKind::UnsealVault,
            rail,
            reason,
            related: None,
        })
    };
    if let Err(excluded) = targeting.check(&server.target) {
        return refuse(excluded.exclusion.into(), excluded.reason);
    }
    let reset = match &server.partial {
        Partial::Abandoned {
            nonce,
            unchanged_for,
        } => Some((progress, nonce.clone(), *unchanged_for)),
        Partial::None | Partial::OperatorAtWork { .. } => None,
    };
    if mode.dry_run {
        let resetting = reset
            .as_ref()
            .map(|(progress, _, unchanged_for)| {
                format!(
                    "reset the unseal left at {progress}/{threshold} shares for {}s and ",
                    unchanged_for.as_secs()
                )
            })
            .unwrap_or_default();
        return refuse(
            Rail::DryRun,
            format!(
                "sealed; dry run: would {resetting}send {threshold} shares from Secret {}",
                server.keys
            ),
        );
    }
    Decision::Act(Box::new(Action::UnsealVault {
        address: server.address.to_string(),
        reset: reset.map(|(progress, nonce, unchanged_for)| super::Reset {
            progress,
            nonce,
            unchanged_for,
        }),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::targeting::{IGNORE_LABEL, NamespaceLabels};
    use std::collections::BTreeMap;

    fn server<'a>(partial: Partial, labels: &'a BTreeMap<String, String>) -> SealedServer<'a> {
        SealedServer {
            address: "http://vault-0.vault-internal.vault.svc:8200",
            threshold: 3,
            progress: 1,
            partial,
            target: Target::new("StatefulSet", "vault", "vault")
                .in_namespace(NamespaceLabels::Known(labels)),
            keys: "vault/vault-unseal-keys",
        }
    }

    const UNSEAL: UnsealMode = UnsealMode {
        unseal: true,
        dry_run: false,
    };

    #[test]
    fn an_unseal_passes_the_rails_after_the_reports() {
        let plain = BTreeMap::new();
        let open = Targeting::default();
        let abandoned = Partial::Abandoned {
            nonce: "n1".into(),
            unchanged_for: Duration::from_secs(301),
        };
        let Decision::Act(action) = unseal(&server(abandoned.clone(), &plain), UNSEAL, &open)
        else {
            panic!("an unseal")
        };
        assert!(matches!(
            &*action,
            Action::UnsealVault { reset: Some(reset), .. } if reset.nonce == "n1" && reset.progress == 1
        ));
        // The rails of every action: an ignored namespace, a protected one.
        let opted_out = BTreeMap::from([(IGNORE_LABEL.to_string(), "true".to_string())]);
        assert!(matches!(
            unseal(&server(Partial::None, &opted_out), UNSEAL, &open),
            Decision::Refuse(Refusal {
                rail: Rail::Target(crate::core::targeting::Exclusion::IgnoredNamespace),
                ..
            })
        ));
        let protected = Targeting::new(vec!["vault".into()], Vec::new());
        assert!(matches!(
            unseal(&server(Partial::None, &plain), UNSEAL, &protected),
            Decision::Refuse(Refusal {
                rail: Rail::Target(_),
                action: ActionKind::UnsealVault,
                ..
            })
        ));
        // A dry run says what it would send.
        let dry = UnsealMode {
            dry_run: true,
            ..UNSEAL
        };
        assert!(matches!(
            unseal(&server(abandoned, &plain), dry, &open),
            Decision::Refuse(Refusal { rail: Rail::DryRun, reason, .. })
                if reason == "sealed; dry run: would reset the unseal left at 1/3 shares for 301s and send 3 shares from Secret vault/vault-unseal-keys"
        ));
        // Reports come first: alert mode, an operator at work (even in a protected namespace).
        let alert = UnsealMode {
            unseal: false,
            ..UNSEAL
        };
        assert!(matches!(
            unseal(&server(Partial::None, &plain), alert, &protected),
            Decision::Report(Report {
                level: ReportLevel::Alert,
                ..
            })
        ));
        let at_work = Partial::OperatorAtWork {
            unchanged_for: Duration::from_secs(24),
            hold_off: Duration::from_secs(300),
        };
        assert!(matches!(
            unseal(&server(at_work, &plain), UNSEAL, &protected),
            Decision::Report(Report {
                level: ReportLevel::Notice,
                ..
            })
        ));
    }
}
