//! `selfheal serve`: wiring of the store, the certificates and the two HTTP servers.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use rustls::crypto::CryptoProvider;

use crate::app::cli::ServeArgs;
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
use crate::store::FixStore;
use crate::webhook::tls::{CertificateFiles, ReloadingCertResolver};
use crate::webhook::{self, AppState, mutate::Policy};

pub use crate::app::context::{
    client_from, cluster_for_store, cluster_in_use, kube_client, kube_config, open_store,
    select_cluster, store_on,
};

/// How long in-flight requests get to finish on shutdown.
const GRACE: Duration = Duration::from_secs(10);

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
        watch_workloads: true,
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
                    targeting: config.rails.targeting.clone(),
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
