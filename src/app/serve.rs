//! `selfheal serve`: wiring of the store, the certificates and the two HTTP servers.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use rustls::crypto::CryptoProvider;

use crate::app::cli::{ClusterArgs, ServeArgs, StoreArgs, StoreKind};
use crate::certs::generate as certs;
use crate::certs::selfcert::{self, SelfCertConfig};
use crate::cluster::leader::{self, Leadership, LeaseConfig};
use crate::cluster::limits::LimitSnapshot;
use crate::core::targeting::Targeting;
use crate::heal::execute::{DEFAULT_WINDOW, Executor, MAX_BACKOFF};
use crate::heal::ratelimit::RateLimiter;
use crate::heal::run::Scope;
use crate::heal::watcher::{self, WatcherConfig};
use crate::metrics::Metrics;
use crate::store::{ConfigMapStore, FileStore, FixStore};
use crate::webhook::tls::{CertificateFiles, ReloadingCertResolver};
use crate::webhook::{self, AppState, mutate::Policy};

/// How long in-flight requests get to finish on shutdown.
const GRACE: Duration = Duration::from_secs(10);

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

/// Makes sure a serving certificate exists in `dir`, generating one when allowed.
pub fn ensure_certificates(
    dir: &Path,
    generate: bool,
    namespace: &str,
) -> anyhow::Result<CertificateFiles> {
    let files = CertificateFiles::in_dir(dir);
    if files.cert.exists() && files.key.exists() {
        return Ok(files);
    }
    anyhow::ensure!(
        generate,
        "no serving certificate at {} (run `selfheal certs` or pass --generate-certs=true)",
        files.cert.display()
    );
    let generated = certs::generate(&certs::service_dns_names("selfheal", namespace))?;
    certs::write(dir, &generated)?;
    tracing::info!(dir = %dir.display(), "generated a CA and serving certificate");
    Ok(files)
}

pub async fn run(args: ServeArgs, provider: Arc<CryptoProvider>) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    // One client for the whole process: the store, the watches, the watcher and certificates.
    let client = match cluster_for_store(&args.store).await? {
        Some(client) => Some(client),
        // A file store with certificates kept in the cluster.
        None if args.manage_certs => Some(
            kube_client()
                .await
                .context("--manage-certs needs a cluster")?,
        ),
        None => None,
    };
    let store = store_on(
        &args.store,
        client.clone(),
        metrics.clone(),
        Duration::from_secs(args.file_poll_seconds.max(1)),
    );
    tracing::info!(store = %store.describe(), "fix store selected");
    let _sync = AbortOnDrop(store.spawn_sync());
    let limits = LimitSnapshot::default();
    let cluster = match &store {
        FixStore::ConfigMap(_) => client.clone(),
        FixStore::File(_) => None,
    };
    let _limits = cluster.clone().map(|client| {
        AbortOnDrop(tokio::spawn(crate::cluster::facts::keep_current(
            client,
            limits.clone(),
        )))
    });

    let (stop, stopping) = tokio::sync::watch::channel(false);
    let watcher = match &cluster {
        Some(client) if args.watch => Some(start_watcher(
            &args,
            client.clone(),
            store.clone(),
            metrics.clone(),
            provider.clone(),
            limits.clone(),
            stopping,
        )?),
        _ => {
            tracing::info!("watcher off (no cluster, or --watch=false)");
            None
        }
    };

    let (resolver, _reload) = if args.manage_certs {
        let client = client.clone().context("--manage-certs needs a cluster")?;
        let config = SelfCertConfig {
            namespace: args.store.namespace.clone(),
            secret_name: args.cert_secret.clone(),
            webhook_config: args.webhook_config.clone(),
            dns_names: certs::service_dns_names(&args.service_name, &args.store.namespace),
            rotate_before_days: args.cert_rotate_days,
        };
        let material = selfcert::ensure(&client, &config).await?;
        let resolver = Arc::new(ReloadingCertResolver::from_pem(
            material.cert.as_bytes(),
            material.key.as_bytes(),
            provider.clone(),
        )?);
        let keeper =
            selfcert::keep_current(client, config, resolver.clone(), Duration::from_secs(60));
        (resolver, AbortOnDrop(tokio::spawn(keeper)))
    } else {
        let files =
            ensure_certificates(&args.cert_dir, args.generate_certs, &args.store.namespace)?;
        let resolver = Arc::new(ReloadingCertResolver::new(files, provider.clone())?);
        let reload = resolver
            .clone()
            .keep_current(Duration::from_secs(args.cert_reload_seconds.max(1)));
        (resolver, AbortOnDrop(tokio::spawn(reload)))
    };

    let protected = args.protected.with_own(&args.store.namespace);
    let state = AppState {
        snapshot: store.snapshot(),
        limits,
        policy: Arc::new(Policy {
            protected_namespaces: protected,
        }),
        metrics,
    };

    let handle = Handle::new();
    let health = tokio::net::TcpListener::bind(args.health_listen)
        .await
        .with_context(|| format!("binding {}", args.health_listen))?;
    tracing::info!(addr = %args.health_listen, "health and metrics on http");
    let health_server = axum::serve(health, webhook::health_router(state.clone()))
        .with_graceful_shutdown(shutdown_signal(handle.clone(), stop));

    let tls = crate::webhook::tls::server_config(resolver, provider)?;
    tracing::info!(addr = %args.listen, "admission webhook on https");
    let webhook_server = serve_https(args.listen, webhook::router(state), tls, handle);

    let (health_result, webhook_result) = tokio::join!(health_server, webhook_server);
    if let Some(watcher) = watcher {
        watcher.stop().await;
    }
    health_result.context("health server")?;
    webhook_result.context("webhook server")?;
    Ok(())
}

/// Leader election, the watcher and (if configured) the Vault check.
struct Watching {
    campaign: tokio::task::JoinHandle<()>,
    /// Stop when dropped.
    _tasks: Vec<AbortOnDrop>,
}

impl Watching {
    /// Stops acting and releases the Lease (the campaign ends once `stopping` fired); the
    /// watcher and Vault tasks stop when this is dropped.
    async fn stop(self) {
        let Watching { campaign, _tasks } = self;
        if tokio::time::timeout(LEASE_RELEASE_WAIT, campaign)
            .await
            .is_err()
        {
            tracing::warn!("the watcher lease was not released in time; it will expire");
        }
    }
}

/// How long shutdown waits for the Lease to be released.
const LEASE_RELEASE_WAIT: Duration = Duration::from_secs(5);

/// Starts leader election (until `stopping` turns true), the watcher and the Vault check.
fn start_watcher(
    args: &ServeArgs,
    client: kube::Client,
    store: FixStore,
    metrics: Arc<Metrics>,
    provider: Arc<CryptoProvider>,
    limits: LimitSnapshot,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Watching> {
    let leadership = Leadership::default();
    // The pod name: unique among replicas (a PID is not: it is 1 in every container).
    let identity = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| {
            let nanos = jiff::Timestamp::now().as_nanosecond();
            format!("selfheal-{}-{nanos}", std::process::id())
        });
    let lease = LeaseConfig {
        namespace: args.store.namespace.clone(),
        name: args.lease_name.clone(),
        identity,
        lease_duration: Duration::from_secs(15),
        // client-go's retry period: a released Lease is taken within 2 s.
        renew_every: Duration::from_secs(2),
    };
    let stop = async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let campaign = tokio::spawn(leader::campaign_until(
        client.clone(),
        lease,
        leadership.clone(),
        metrics.clone(),
        stop,
    ));
    let protected = args.protected.with_own(&args.store.namespace);
    let scope = Scope {
        protected: protected.clone(),
        ..Scope::default()
    };
    let rails = crate::heal::plan::Rails {
        targeting: Targeting::new(protected, args.watch_namespaces.clone()),
        dry_run: args.dry_run,
        ..args.rails.rails()?
    };
    let config = WatcherConfig {
        include: args.watch_namespaces.clone(),
        check_certificates: args.check_certificates,
        probes: args.probes.clone(),
        ..WatcherConfig::new(scope, rails, limits)
    };
    let limiter = Arc::new(RateLimiter::new(DEFAULT_WINDOW, MAX_BACKOFF));
    let executor = Arc::new(Executor::new(
        client.clone(),
        store.clone(),
        limiter,
        metrics.clone(),
        args.dry_run,
    ));
    tracing::info!(dry_run = args.dry_run, "watcher started");
    let mut tasks = Vec::new();
    if args.vault.configured() {
        let vault = args.vault.client(provider)?;
        tracing::info!(
            auto_unseal = args.vault_auto_unseal,
            dry_run = args.dry_run,
            "watching Vault"
        );
        tasks.push(AbortOnDrop(tokio::spawn(
            crate::heal::vault::keep_unsealed(
                vault,
                client.clone(),
                args.vault.targets(),
                crate::heal::vault::VaultActions {
                    unseal: args.vault_auto_unseal,
                    dry_run: args.dry_run,
                },
                leadership.clone(),
                metrics.clone(),
                Duration::from_secs(30),
            ),
        )));
    }
    tasks.push(AbortOnDrop(tokio::spawn(watcher::run(
        client, executor, store, config, leadership, metrics,
    ))));
    Ok(Watching {
        campaign,
        _tasks: tasks,
    })
}

/// Serves `router` over TLS until `handle` is shut down.
pub async fn serve_https(
    addr: SocketAddr,
    router: Router,
    tls: rustls::ServerConfig,
    handle: Handle<SocketAddr>,
) -> std::io::Result<()> {
    axum_server::bind_rustls(addr, RustlsConfig::from_config(Arc::new(tls)))
        .handle(handle)
        .serve(router.into_make_service())
        .await
}

/// Resolves on SIGTERM or Ctrl-C: tells the watcher to stop acting and release its Lease, and
/// starts the graceful shutdown of the HTTPS server.
async fn shutdown_signal(handle: Handle<SocketAddr>, stop: tokio::sync::watch::Sender<bool>) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
    stop.send_replace(true);
    handle.graceful_shutdown(Some(GRACE));
}

/// Aborts a background task when the owner goes away.
pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
