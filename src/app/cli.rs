//! Command-line interface. Every flag has an environment variable and a default that works on a
//! workstation with no cluster.
//!
//! The binary is also a kubectl plugin: installed on the PATH as `kubectl-selfheal`, it runs as
//! `kubectl selfheal ...`, and its help and usage say so (`invoked_name`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "selfheal",
    version,
    about = "Kubernetes self-healing: applies persisted fixes (memory, storage) to workloads at admission",
    long_about = "selfheal keeps the fixes learned about a cluster (raised memory limits, larger \
                  volumes) in the ConfigMap `fixes` (or .state/fixes.yaml without a cluster) and \
                  applies them to every new or updated workload through a mutating admission \
                  webhook, so a fix learned once survives every redeploy."
)]
pub struct Cli {
    /// Log format.
    #[arg(long, env = "SELFHEAL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub cluster: ClusterArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Which cluster to talk to, as kubectl chooses it.
#[derive(Debug, Clone, Default, Args)]
pub struct ClusterArgs {
    /// The kubeconfig file to use (default: $KUBECONFIG, then ~/.kube/config, then the
    /// in-cluster service account).
    #[arg(long, env = "SELFHEAL_KUBECONFIG", value_name = "PATH", global = true)]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use (default: the kubeconfig's current-context).
    #[arg(long, env = "SELFHEAL_CONTEXT", value_name = "NAME", global = true)]
    pub context: Option<String>,
}

impl ClusterArgs {
    /// True when a kubeconfig or context was named: then a cluster that cannot be reached is an
    /// error, never a silent fall-back to the fix file.
    pub fn is_explicit(&self) -> bool {
        self.kubeconfig.is_some() || self.context.is_some()
    }
}

/// The name the program was invoked under, for help and usage: `kubectl selfheal` when run as the
/// kubectl plugin `kubectl-selfheal` (kubectl's plugin naming: `-` separates words, `_` stands
/// for `-`), else the file name (`selfheal`).
pub fn invoked_name(argv0: Option<&std::ffi::OsStr>) -> String {
    let file = argv0
        .map(Path::new)
        .and_then(Path::file_name)
        .and_then(|name| name.to_str())
        .filter(|name| !name.is_empty())
        .unwrap_or("selfheal");
    match file.strip_prefix("kubectl-") {
        Some(plugin) if !plugin.is_empty() => {
            let words: Vec<String> = plugin.split('-').map(|w| w.replace('_', "-")).collect();
            format!("kubectl {}", words.join(" "))
        }
        _ => file.to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the admission webhook (HTTPS), the health/metrics endpoint (HTTP) and, when a cluster is
    /// configured, the watcher that detects, diagnoses and fixes.
    Serve(Box<ServeArgs>),
    /// List the persisted fixes; forget, prune, export or import them.
    Fixes(FixesArgs),
    /// Generate a CA and a serving certificate for the webhook and print the caBundle.
    Certs(CertsArgs),
    /// Report every detected problem with its diagnosis (exit status 1 when something is unhealthy).
    Health(HealthArgs),
    /// Detect, diagnose and fix, once: everything, or one component (namespace, workload or app name).
    Heal(HealArgs),
    /// Check every Vault server and unseal the sealed ones with the keys from a Secret (the
    /// CronJob operators know); `--alert-only` reports without unsealing. Exit 1 if any stays sealed.
    Unseal(UnsealArgs),
    /// Print a shell completion script, e.g. `source <(selfheal completions bash)`.
    Completions(CompletionsArgs),
    /// Print the man page (roff), e.g. `selfheal man > selfheal.1`; `--dir` writes a page per
    /// command (selfheal.1, selfheal-fixes.1, selfheal-fixes-forget.1, ...).
    Man(ManArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// Write one page per command into this directory, e.g. /usr/local/share/man/man1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Clone, Args)]
pub struct VaultArgs {
    /// Namespace of Vault and of its unseal key Secret.
    #[arg(long, env = "SELFHEAL_VAULT_NAMESPACE", default_value = "vault")]
    pub vault_namespace: String,

    /// Vault's StatefulSet: every one of its pods is checked.
    #[arg(long, env = "SELFHEAL_VAULT_STATEFULSET")]
    pub vault_statefulset: Option<String>,

    /// Explicit Vault addresses (comma-separated), e.g. http://vault-0.vault-internal:8200.
    #[arg(long, env = "SELFHEAL_VAULT_ADDRESSES", value_delimiter = ',')]
    pub vault_address: Vec<String>,

    /// Scheme of the addresses made for StatefulSet pods.
    #[arg(long, env = "SELFHEAL_VAULT_SCHEME", default_value = "http")]
    pub vault_scheme: String,

    /// Port of the addresses made for StatefulSet pods.
    #[arg(long, env = "SELFHEAL_VAULT_PORT", default_value_t = 8200)]
    pub vault_port: u16,

    /// The Secret holding the unseal keys as key1 … keyN.
    #[arg(
        long,
        env = "SELFHEAL_VAULT_KEYS_SECRET",
        default_value = "vault-unseal-keys"
    )]
    pub vault_keys_secret: String,

    /// PEM CA bundle for https Vault addresses.
    #[arg(long, env = "SELFHEAL_VAULT_CA_FILE")]
    pub vault_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct UnsealArgs {
    #[command(flatten)]
    pub vault: VaultArgs,

    /// Report sealed servers, unseal nothing.
    #[arg(long)]
    pub alert_only: bool,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = ReportFormat::Table)]
    pub output: ReportFormat,
}

#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// Only this namespace (default: all namespaces).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,

    /// Read `kubectl get pods,pvc,events,secrets,deployments,statefulsets,jobs,cronjobs,services,endpointslices,replicasets -A -o json` output instead of a cluster.
    #[arg(long)]
    pub from_file: Option<PathBuf>,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = ReportFormat::Table)]
    pub output: ReportFormat,
}

#[derive(Debug, Clone, Args)]
pub struct HealArgs {
    /// Namespace, workload name or `app.kubernetes.io/name` to heal (default: everything).
    pub component: Option<String>,

    /// Only this namespace (default: all namespaces): problems are looked for here and actions
    /// never change anything outside it. Not `--namespace`: that is selfheal's own namespace (the
    /// store's, shared with `serve`).
    #[arg(id = "only_namespace", long = "only-namespace", short = 'n')]
    pub namespace: Option<String>,

    /// Decide and print, change nothing.
    #[arg(long, env = "SELFHEAL_DRY_RUN")]
    pub dry_run: bool,

    /// Act even while a `selfheal serve` watcher holds the Lease. Without it, `heal` refuses to
    /// act beside a live watcher (both would act on the same problems); `--dry-run` always runs.
    #[arg(long, env = "SELFHEAL_IGNORE_LEADER")]
    pub ignore_leader: bool,

    /// The Lease the watchers elect their leader with (in the store's --namespace).
    #[arg(long, env = "SELFHEAL_LEASE_NAME", default_value = "selfheal-watcher")]
    pub lease_name: String,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = ReportFormat::Table)]
    pub output: ReportFormat,

    #[command(flatten)]
    pub protected: ProtectedArgs,

    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub rails: RailsArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
}

/// Safety rails on automatic actions.
#[derive(Debug, Clone, Args)]
pub struct RailsArgs {
    /// Memory is never raised past this.
    #[arg(long, env = "SELFHEAL_MEMORY_CEILING", default_value = "8Gi")]
    pub memory_ceiling: String,

    /// Raises of one memory fix without recovery before selfheal stops and alerts.
    #[arg(long, env = "SELFHEAL_MAX_MEMORY_RAISES", default_value_t = 3)]
    pub max_memory_raises: u32,

    /// Storage is never raised past this.
    #[arg(long, env = "SELFHEAL_STORAGE_CEILING", default_value = "1Ti")]
    pub storage_ceiling: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// The ConfigMap when a cluster is configured (in-cluster or kubeconfig), else the file.
    Auto,
    File,
    Configmap,
}

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Where fixes are kept.
    #[arg(long, env = "SELFHEAL_STORE", value_enum, default_value_t = StoreKind::Auto)]
    pub store: StoreKind,

    /// The fix file used by the file store.
    #[arg(long, env = "SELFHEAL_FIXES_FILE", default_value = ".state/fixes.yaml")]
    pub fixes_file: PathBuf,

    /// selfheal's own namespace: holds the fix ConfigMap and is never mutated.
    #[arg(long, env = "SELFHEAL_NAMESPACE", default_value = "selfheal")]
    pub namespace: String,

    /// Name of the fix ConfigMap.
    #[arg(long, env = "SELFHEAL_CONFIGMAP", default_value = "fixes")]
    pub configmap: String,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Address of the HTTPS webhook endpoint (`/mutate`).
    #[arg(long, env = "SELFHEAL_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,

    /// Address of the plain-HTTP endpoint (`/healthz`, `/readyz`, `/metrics`).
    #[arg(long, env = "SELFHEAL_HEALTH_LISTEN", default_value = "127.0.0.1:8080")]
    pub health_listen: SocketAddr,

    /// Directory holding `tls.crt` and `tls.key` (reloaded when they change).
    #[arg(long, env = "SELFHEAL_CERT_DIR", default_value = "certs")]
    pub cert_dir: PathBuf,

    /// Keep the webhook's CA and certificate in a Secret (shared by all replicas), write the CA
    /// into the webhook configuration's caBundle, and rotate before expiry. Needs a cluster;
    /// --cert-dir is not used then.
    #[arg(long, env = "SELFHEAL_MANAGE_CERTS")]
    pub manage_certs: bool,

    /// The Secret holding the self-managed webhook certificate.
    #[arg(
        long,
        env = "SELFHEAL_CERT_SECRET",
        default_value = "selfheal-webhook-tls"
    )]
    pub cert_secret: String,

    /// The MutatingWebhookConfiguration whose caBundle is kept current.
    #[arg(long, env = "SELFHEAL_WEBHOOK_CONFIG", default_value = "selfheal")]
    pub webhook_config: String,

    /// The webhook's Service name (the certificate names it).
    #[arg(long, env = "SELFHEAL_SERVICE_NAME", default_value = "selfheal")]
    pub service_name: String,

    /// Rotate the self-managed certificate this many days before it expires.
    #[arg(long, env = "SELFHEAL_CERT_ROTATE_DAYS", default_value_t = 60)]
    pub cert_rotate_days: i64,

    /// Generate a CA and serving certificate in --cert-dir when none is there.
    #[arg(long, env = "SELFHEAL_GENERATE_CERTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub generate_certs: bool,

    #[command(flatten)]
    pub protected: ProtectedArgs,

    /// Seconds between checks of the certificate files for a new certificate.
    #[arg(long, env = "SELFHEAL_CERT_RELOAD_SECONDS", default_value_t = 5)]
    pub cert_reload_seconds: u64,

    /// Seconds between checks of the fix file for edits (file store).
    #[arg(long, env = "SELFHEAL_FILE_POLL_SECONDS", default_value_t = 1)]
    pub file_poll_seconds: u64,

    /// Run the watcher (detect, diagnose, fix) when a cluster is configured.
    #[arg(long, env = "SELFHEAL_WATCH", default_value_t = true, action = clap::ArgAction::Set)]
    pub watch: bool,

    /// The watcher decides and logs, but changes nothing.
    #[arg(long, env = "SELFHEAL_DRY_RUN")]
    pub dry_run: bool,

    /// Namespaces the watcher acts in (comma-separated; default: all but the protected ones).
    #[arg(long, env = "SELFHEAL_WATCH_NAMESPACES", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,

    /// Watch kubernetes.io/tls Secrets and check their certificates (needs list/watch on Secrets).
    #[arg(long, env = "SELFHEAL_CHECK_CERTIFICATES", default_value_t = true, action = clap::ArgAction::Set)]
    pub check_certificates: bool,

    /// Dependencies to probe over TCP every 30 s, as namespace/service:port (comma-separated).
    #[arg(long = "probe", env = "SELFHEAL_PROBES", value_delimiter = ',')]
    pub probes: Vec<crate::heal::probe::ProbeTarget>,

    /// Vault servers to watch (none unless --vault-statefulset or --vault-address is set).
    #[command(flatten)]
    pub vault: VaultArgs,

    /// Unseal a sealed Vault automatically (otherwise only alert).
    #[arg(long, env = "SELFHEAL_VAULT_AUTO_UNSEAL")]
    pub vault_auto_unseal: bool,

    /// Name of the Lease that elects the one acting watcher among replicas.
    #[arg(long, env = "SELFHEAL_LEASE_NAME", default_value = "selfheal-watcher")]
    pub lease_name: String,

    #[command(flatten)]
    pub rails: RailsArgs,
}

/// Namespaces selfheal never mutates nor acts in.
#[derive(Debug, Clone, Args)]
pub struct ProtectedArgs {
    /// Namespaces never mutated nor acted in, besides selfheal's own (comma-separated).
    #[arg(
        long,
        env = "SELFHEAL_PROTECTED_NAMESPACES",
        value_delimiter = ',',
        default_value = "kube-system"
    )]
    pub protected_namespaces: Vec<String>,
}

impl ProtectedArgs {
    /// The protected namespaces, selfheal's own included.
    pub fn with_own(&self, own_namespace: &str) -> Vec<String> {
        let mut protected = self.protected_namespaces.clone();
        protected.push(own_namespace.to_string());
        protected
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn the_kubectl_plugin_names_itself_as_kubectl_does() {
        let name = |argv0: &str| invoked_name(Some(OsStr::new(argv0)));
        assert_eq!(name("/usr/local/bin/kubectl-selfheal"), "kubectl selfheal");
        assert_eq!(name("kubectl-self_heal"), "kubectl self-heal");
        assert_eq!(name("kubectl-selfheal-fixes"), "kubectl selfheal fixes");
        assert_eq!(name("./target/debug/selfheal"), "selfheal");
        assert_eq!(name("kubectl-"), "kubectl-");
        assert_eq!(invoked_name(None), "selfheal");
    }

    #[test]
    fn the_command_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
