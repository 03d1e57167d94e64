//! The arguments of `selfheal fixes` (and its subcommands) and `selfheal certs`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::StoreArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Yaml,
    Json,
}

/// `selfheal fixes`: without a subcommand, the listing.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct FixesArgs {
    #[command(subcommand)]
    pub action: Option<FixesAction>,

    #[command(flatten)]
    pub store: StoreArgs,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Subcommand)]
pub enum FixesAction {
    /// Remove the fixes of one workload (all of them, or those of one type, container or claim).
    /// Says what it removed; running it again removes nothing and says so.
    Forget(ForgetArgs),
    /// Drop the fixes of workloads that are gone: no object of the fix's name exists in its
    /// namespace now, and the fix was last raised more than --older-than ago. Prints what it
    /// would drop; --apply drops it. Needs a cluster (to see which workloads exist).
    Prune(PruneArgs),
    /// Print the stored fixes.yaml as it is (YAML, or the same in JSON), e.g. as a backup.
    Export(ExportArgs),
    /// Merge the fixes of a file (from `export`, or any fixes.yaml) into the store: a value is
    /// raised, never lowered, and nothing stored is removed. Entries that are not valid fixes are
    /// named and skipped.
    Import(ImportArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ForgetArgs {
    /// The workload whose fixes to remove, as NAMESPACE/RESOURCE.
    #[arg(value_name = "NAMESPACE/RESOURCE")]
    pub target: String,

    /// Only fixes of this type.
    #[arg(long = "type", value_name = "TYPE", value_parser = ["memory", "storage"])]
    pub fix_type: Option<String>,

    /// Only the memory fix of this container.
    #[arg(long)]
    pub container: Option<String>,

    /// Only the storage fix of this volume claim template.
    #[arg(long)]
    pub claim: Option<String>,

    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Args)]
pub struct PruneArgs {
    /// How long a fix must have gone unraised, its workload absent: 30d, 12h, 1d12h, 2w ...
    #[arg(long, env = "SELFHEAL_PRUNE_OLDER_THAN", default_value = "30d", value_parser = crate::app::fixes::parse_age)]
    pub older_than: std::time::Duration,

    /// Drop the fixes (without it, only print what would be dropped).
    #[arg(long)]
    pub apply: bool,

    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Yaml,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = ExportFormat::Yaml)]
    pub output: ExportFormat,

    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The file to import (YAML or JSON); `-` reads standard input.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CertsArgs {
    /// Directory to write ca.crt, ca.key, tls.crt and tls.key into.
    #[arg(long, env = "SELFHEAL_CERT_DIR", default_value = "certs")]
    pub out_dir: PathBuf,

    /// Name of the webhook's Service.
    #[arg(long, default_value = "selfheal")]
    pub service: String,

    /// Namespace of the webhook's Service.
    #[arg(long, env = "SELFHEAL_NAMESPACE", default_value = "selfheal")]
    pub namespace: String,

    /// More DNS names for the serving certificate.
    #[arg(long = "dns-name")]
    pub dns_names: Vec<String>,

    /// Replace certificates that are already there.
    #[arg(long)]
    pub force: bool,
}
