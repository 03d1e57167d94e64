//! `selfheal health` and `selfheal heal`: one pass of the loop, printed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::app::cli::{HealArgs, HealthArgs, RailsArgs, ReportFormat, UnsealArgs, VaultArgs};
use crate::app::report;
use crate::app::serve;
use crate::cluster::leader;
use crate::core::index::FixIndex;
use crate::core::quantity::ByteQuantity;
use crate::core::targeting::Targeting;
use crate::heal::detect::Thresholds;
use crate::heal::execute::{DEFAULT_WINDOW, Executor, MAX_BACKOFF};
use crate::heal::inspect::{self, ClusterView, Finding, UnreadableItem};
use crate::heal::plan::Rails;
use crate::heal::ratelimit::RateLimiter;
use crate::heal::run as heal;
use crate::heal::vault::{self, VaultClient, VaultTargets};
use crate::metrics::Metrics;

impl RailsArgs {
    pub fn rails(&self) -> anyhow::Result<Rails> {
        Ok(Rails {
            memory_ceiling: ByteQuantity::parse(&self.memory_ceiling)
                .context("--memory-ceiling")?,
            max_memory_raises: self.max_memory_raises,
            storage_ceiling: ByteQuantity::parse(&self.storage_ceiling)
                .context("--storage-ceiling")?,
            ..Rails::default()
        })
    }
}

impl VaultArgs {
    pub fn targets(&self) -> VaultTargets {
        VaultTargets {
            namespace: self.vault_namespace.clone(),
            statefulset: self.vault_statefulset.clone(),
            addresses: self.vault_address.clone(),
            scheme: self.vault_scheme.clone(),
            port: self.vault_port,
            keys_secret: self.vault_keys_secret.clone(),
        }
    }

    pub fn configured(&self) -> bool {
        self.vault_statefulset.is_some() || !self.vault_address.is_empty()
    }

    pub fn client(
        &self,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> anyhow::Result<VaultClient> {
        let ca = match &self.vault_ca_file {
            Some(path) => {
                Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
            }
            None => None,
        };
        Ok(VaultClient::new(
            ca.as_deref(),
            provider,
            Duration::from_secs(5),
        )?)
    }
}

/// Runs `selfheal unseal`; returns whether every server is unsealed.
pub async fn unseal(
    args: &UnsealArgs,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> anyhow::Result<bool> {
    anyhow::ensure!(
        args.vault.configured(),
        "name the Vault servers: --vault-statefulset or --vault-address"
    );
    let client = serve::kube_client().await?;
    let vault = args.vault.client(provider)?;
    let reports =
        vault::check_all(&vault, &client, &args.vault.targets(), !args.alert_only).await?;
    match args.output {
        ReportFormat::Table => {
            let rows: Vec<Vec<String>> = reports
                .iter()
                .map(|r| vec![r.address.clone(), r.state.to_string(), r.detail.clone()])
                .collect();
            print!("{}", report::table(&["ADDRESS", "STATE", "DETAIL"], &rows));
        }
        ReportFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&reports).unwrap_or_default()
        ),
    }
    Ok(!reports.is_empty() && reports.iter().all(|r| r.state.is_unsealed()))
}

/// Runs `selfheal health`; returns whether everything is healthy.
pub async fn health(args: &HealthArgs) -> anyhow::Result<bool> {
    let now = jiff::Timestamp::now();
    let findings = match &args.from_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let view = ClusterView::from_dump(&text).with_context(|| path.display().to_string())?;
            if let Some(summary) = unreadable_summary(&view.unreadable) {
                eprint!("{summary}");
            }
            let findings =
                inspect::findings(&view, &Default::default(), now, &Thresholds::default());
            match &args.namespace {
                Some(ns) => findings
                    .into_iter()
                    .filter(|f| &f.problem.namespace == ns)
                    .collect(),
                None => findings,
            }
        }
        None => {
            let client = serve::kube_client().await?;
            let view = inspect::gather(&client, args.namespace.as_deref()).await?;
            inspect::diagnose_view(&client, &view, now).await
        }
    };
    print_findings(&findings, args.output);
    Ok(findings.is_empty())
}

/// The items of a dump that were skipped, one a line, for stderr (the warning log may be
/// silenced by `SELFHEAL_LOG`; this summary is not). `None` when every item was read.
fn unreadable_summary(unreadable: &[UnreadableItem]) -> Option<String> {
    if unreadable.is_empty() {
        return None;
    }
    let mut summary = format!(
        "{} item(s) of the dump could not be read and were not checked:\n",
        unreadable.len()
    );
    for item in unreadable {
        summary.push_str(&format!("  {item}\n"));
    }
    Some(summary)
}

fn print_findings(findings: &[Finding], format: ReportFormat) {
    match format {
        ReportFormat::Table => print!("{}", report::health_table(findings)),
        ReportFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(findings).unwrap_or_default()
        ),
    }
}

/// Why `selfheal heal` will not act while a watcher leads.
fn leader_refusal(holder: &str, args: &HealArgs) -> String {
    format!(
        "a selfheal watcher ({holder}) holds the Lease {}/{} and heals this cluster: `selfheal heal` \
         would act beside it on the same problems. Run with --dry-run to see what it would do, \
         or with --ignore-leader (SELFHEAL_IGNORE_LEADER=true) to act anyway",
        args.store.namespace, args.lease_name
    )
}

/// Refuses to act while a live watcher holds the Lease, unless told to. A Lease that cannot be
/// read is a refusal too (nothing proves no watcher runs).
async fn check_no_leader(client: &kube::Client, args: &HealArgs) -> anyhow::Result<()> {
    if args.dry_run || args.ignore_leader {
        return Ok(());
    }
    let holder = leader::current_holder(client.clone(), &args.store.namespace, &args.lease_name)
        .await
        .with_context(|| {
            format!(
                "reading the watcher Lease {}/{} to make sure no watcher is acting \
                     (--ignore-leader skips this check)",
                args.store.namespace, args.lease_name
            )
        })?;
    match holder {
        Some(holder) => anyhow::bail!(leader_refusal(&holder, args)),
        None => Ok(()),
    }
}

/// The rails of `selfheal heal`: the protected namespaces, and with `-n X` X as the only watched
/// namespace, so that no action (a dependency restart named by a log line) leaves X.
fn heal_rails(args: &HealArgs, protected: Vec<String>) -> anyhow::Result<Rails> {
    Ok(Rails {
        targeting: Targeting::new(protected, args.namespace.iter().cloned().collect()),
        dry_run: args.dry_run,
        ..args.rails.rails()?
    })
}

/// Runs `selfheal heal`.
pub async fn heal(args: &HealArgs) -> anyhow::Result<()> {
    let protected = args.protected.with_own(&args.store.namespace);
    let rails = heal_rails(args, protected.clone())?;
    let client = serve::kube_client().await?;
    check_no_leader(&client, args).await?;
    let metrics = Arc::new(Metrics::new());
    let store = serve::store_on(
        &args.store,
        Some(client.clone()),
        metrics.clone(),
        Duration::from_secs(1),
    );
    let document = store.read_document().await?;
    let index = Arc::new(FixIndex::new(document.fixes().cloned()));
    let scope = heal::Scope {
        namespace: args.namespace.clone(),
        component: args.component.clone(),
        protected,
    };
    let limiter = Arc::new(RateLimiter::new(DEFAULT_WINDOW, MAX_BACKOFF));
    // `run_once` lists the caps (LimitRanges, ResourceQuotas, nodes) once.
    let executor = Executor::new(client.clone(), store, limiter, metrics, args.dry_run);
    let handled = heal::run_once(
        &client,
        &executor,
        &rails,
        index,
        &scope,
        jiff::Timestamp::now(),
    )
    .await?;
    match args.output {
        ReportFormat::Table => print!("{}", report::heal_table(&handled)),
        ReportFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&handled).unwrap_or_default()
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heal_args(args: &[&str]) -> HealArgs {
        use clap::Parser;
        let cli = crate::app::cli::Cli::try_parse_from(
            std::iter::once("selfheal")
                .chain(std::iter::once("heal"))
                .chain(args.iter().copied()),
        )
        .unwrap();
        match cli.command {
            crate::app::cli::Command::Heal(args) => args,
            _ => unreachable!("heal was parsed"),
        }
    }

    #[test]
    fn heal_in_one_namespace_acts_in_no_other() {
        use crate::core::targeting::{Exclusion, Target};
        let target = |namespace| Target::new("Deployment", namespace, "db");
        let one = heal_rails(&heal_args(&["-n", "shop"]), Vec::new()).unwrap();
        assert_eq!(one.targeting.watched, vec!["shop".to_string()]);
        assert!(one.targeting.check(&target("shop")).is_ok());
        let refusal = one.targeting.check(&target("platform")).unwrap_err();
        assert_eq!(refusal.exclusion, Exclusion::UnwatchedNamespace);
        let all = heal_rails(&heal_args(&[]), Vec::new()).unwrap();
        assert!(all.targeting.watched.is_empty());
        assert!(all.targeting.check(&target("platform")).is_ok());
        assert!(
            heal_rails(&heal_args(&["--dry-run"]), Vec::new())
                .unwrap()
                .dry_run
        );
    }

    #[test]
    fn skipped_items_are_summarised_one_a_line() {
        assert_eq!(unreadable_summary(&[]), None);
        let item = |index: usize, name: &str| UnreadableItem {
            index,
            kind: "Pod".into(),
            name: name.into(),
            field: "status.containerStatuses[0].restartCount".into(),
            error: "invalid type: string \"three\", expected i32".into(),
        };
        let summary = unreadable_summary(&[item(0, "shop/a"), item(7, "shop/b")]).unwrap();
        let lines: Vec<&str> = summary.lines().collect();
        assert_eq!(
            lines[0],
            "2 item(s) of the dump could not be read and were not checked:"
        );
        assert_eq!(
            lines[1],
            "  items[0] (Pod) shop/a: field status.containerStatuses[0].restartCount: invalid type: string \"three\", expected i32"
        );
        assert!(lines[2].starts_with("  items[7] (Pod) shop/b: "));
        assert_eq!(lines.len(), 3);
    }
}
