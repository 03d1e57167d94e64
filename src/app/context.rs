//! The process's one Kubernetes client and its fix store: the cluster `--kubeconfig` /
//! `--context` select (else as kubectl infers it), and the store the arguments ask for on it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;

use crate::app::cli::{ClusterArgs, StoreArgs, StoreKind};
use crate::metrics::Metrics;
use crate::store::{ConfigMapStore, FileStore, FixStore};

/// Opens the store the arguments ask for. `auto` uses the cluster when one is configured.
pub async fn open_store(
    args: &StoreArgs,
    metrics: Arc<Metrics>,
    poll: Duration,
) -> anyhow::Result<FixStore> {
    let client = cluster_for_store(args).await?;
    Ok(store_on(args, client, metrics, poll))
}

/// The cluster the store arguments ask for: required for `configmap`, tried for `auto`, none
/// for `file`. With `--kubeconfig` or `--context`, `auto` never falls back to the file: the named
/// cluster must answer.
pub async fn cluster_for_store(args: &StoreArgs) -> anyhow::Result<Option<kube::Client>> {
    match args.store {
        StoreKind::File => Ok(None),
        StoreKind::Configmap => Ok(Some(kube_client().await?)),
        StoreKind::Auto if selected_cluster().is_explicit() => Ok(Some(kube_client().await?)),
        StoreKind::Auto => match kube_client().await {
            Ok(client) => Ok(Some(client)),
            Err(error) => {
                tracing::info!(%error, file = %args.fixes_file.display(), "no cluster configured; using the fix file");
                Ok(None)
            }
        },
    }
}

/// The store of the arguments on `client` (the file store without one, or when asked for).
pub fn store_on(
    args: &StoreArgs,
    client: Option<kube::Client>,
    metrics: Arc<Metrics>,
    poll: Duration,
) -> FixStore {
    match (args.store, client) {
        (StoreKind::File, _) | (_, None) => {
            FixStore::File(Arc::new(FileStore::new(&args.fixes_file, poll, metrics)))
        }
        (_, Some(client)) => FixStore::ConfigMap(Arc::new(ConfigMapStore::new(
            client,
            &args.namespace,
            &args.configmap,
            metrics,
        ))),
    }
}

/// The `--kubeconfig` / `--context` of this process, chosen once by `main` (`select_cluster`)
/// and honoured by every `kube_client`, as `KUBECONFIG` is.
static SELECTED: OnceLock<ClusterArgs> = OnceLock::new();

/// The cluster a client was made for, for error messages.
static IN_USE: OnceLock<String> = OnceLock::new();

/// Chooses the kubeconfig and context of every later `kube_client`. The first call wins.
pub fn select_cluster(cluster: ClusterArgs) {
    let _ = SELECTED.set(cluster);
}

fn selected_cluster() -> ClusterArgs {
    SELECTED.get().cloned().unwrap_or_default()
}

/// The cluster this process made a client for: its server, and the context when one was named
/// or read from a kubeconfig (`https://10.0.0.1:6443 (context prod)`).
pub fn cluster_in_use() -> Option<&'static str> {
    IN_USE.get().map(String::as_str)
}

/// The process's Kubernetes client, for the cluster `select_cluster` chose (else as kubectl
/// infers it: $KUBECONFIG, ~/.kube/config, in-cluster). The client's own retry of 429/503/504
/// is off: a refusal (an eviction blocked by a PodDisruptionBudget answers 429) must reach the
/// caller at once, which reports it and retries on its own schedule, instead of holding the call
/// for minutes.
pub async fn kube_client() -> anyhow::Result<kube::Client> {
    let (config, cluster) = kube_config(&selected_cluster()).await?;
    let _ = IN_USE.set(cluster);
    client_from(config)
}

/// The configuration `cluster` names, and a description of it for messages.
pub async fn kube_config(cluster: &ClusterArgs) -> anyhow::Result<(kube::Config, String)> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    if !cluster.is_explicit() {
        let config = kube::Config::infer()
            .await
            .context("no Kubernetes configuration (in-cluster or kubeconfig)")?;
        let description = config.cluster_url.to_string();
        return Ok((config, description));
    }
    let options = KubeConfigOptions {
        context: cluster.context.clone(),
        ..KubeConfigOptions::default()
    };
    let (kubeconfig, source) = match &cluster.kubeconfig {
        Some(path) => (
            Kubeconfig::read_from(path)
                .with_context(|| format!("reading the kubeconfig {}", path.display()))?,
            format!("kubeconfig {}", path.display()),
        ),
        None => (
            Kubeconfig::read().context("reading the kubeconfig ($KUBECONFIG or ~/.kube/config)")?,
            "the kubeconfig".to_string(),
        ),
    };
    let context = cluster
        .context
        .clone()
        .or_else(|| kubeconfig.current_context.clone());
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .with_context(|| match &context {
            Some(name) => format!("context {name:?} of {source}"),
            None => format!("{source} (it names no current-context: pass --context)"),
        })?;
    let description = match &context {
        Some(name) => format!("{} (context {name})", config.cluster_url),
        None => config.cluster_url.to_string(),
    };
    Ok((config, description))
}

/// The client `kube_client` builds, from an explicit configuration.
pub fn client_from(mut config: kube::Config) -> anyhow::Result<kube::Client> {
    config.default_retry = false;
    kube::Client::try_from(config).context("creating the Kubernetes client")
}
