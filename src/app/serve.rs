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

use crate::app::cli::{ServeArgs, StoreArgs, StoreKind};
use crate::certs::generate as certs;
use crate::certs::selfcert::{self, SelfCertConfig};
use crate::cluster::leader::{self, Leadership, LeaseConfig};
use crate::cluster::limits::LimitSnapshot;
use crate::heal::detect::Thresholds;
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
    let file_store = || {
        FixStore::File(Arc::new(FileStore::new(
            &args.fixes_file,
            poll,
            metrics.clone(),
        )))
    };
    let client = match args.store {
        StoreKind::File => return Ok(file_store()),
        StoreKind::Configmap => Some(kube_client().await?),
        StoreKind::Auto => match kube_client().await {
            Ok(client) => Some(client),
            Err(error) => {
                tracing::info!(%error, file = %args.fixes_file.display(), "no cluster configured; using the fix file");
                None
            }
        },
    };
    Ok(match client {
        Some(client) => FixStore::ConfigMap(Arc::new(ConfigMapStore::new(
            client,
            &args.namespace,
            &args.configmap,
            metrics,
        ))),
        None => file_store(),
    })
}

pub async fn kube_client() -> anyhow::Result<kube::Client> {
    let config = kube::Config::infer()
        .await
        .context("no Kubernetes configuration (in-cluster or kubeconfig)")?;
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
    let store = open_store(
        &args.store,
        metrics.clone(),
        Duration::from_secs(args.file_poll_seconds.max(1)),
    )
    .await?;
    tracing::info!(store = %store.describe(), "fix store selected");
    let _sync = AbortOnDrop(store.spawn_sync());
    let limits = LimitSnapshot::default();
    let _limits = match &store {
        FixStore::ConfigMap(_) => Some(AbortOnDrop(tokio::spawn(
            crate::cluster::limits::keep_current(kube_client().await?, limits.clone()),
        ))),
        FixStore::File(_) => None,
    };

    let _watcher = match &store {
        FixStore::ConfigMap(_) if args.watch => Some(
            start_watcher(
                &args,
                store.clone(),
                metrics.clone(),
                provider.clone(),
                limits.clone(),
            )
            .await?,
        ),
        _ => {
            tracing::info!("watcher off (no cluster, or --watch=false)");
            None
        }
    };

    let (resolver, _reload) = if args.manage_certs {
        let client = kube_client()
            .await
            .context("--manage-certs needs a cluster")?;
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
        .with_graceful_shutdown(shutdown_signal(handle.clone()));

    let tls = crate::webhook::tls::server_config(resolver, provider)?;
    tracing::info!(addr = %args.listen, "admission webhook on https");
    let webhook_server = serve_https(args.listen, webhook::router(state), tls, handle);

    let (health_result, webhook_result) = tokio::join!(health_server, webhook_server);
    health_result.context("health server")?;
    webhook_result.context("webhook server")?;
    Ok(())
}

/// Starts leader election, the watcher and (if configured) the Vault check; they stop when the
/// returned guards are dropped.
async fn start_watcher(
    args: &ServeArgs,
    store: FixStore,
    metrics: Arc<Metrics>,
    provider: Arc<CryptoProvider>,
    limits: LimitSnapshot,
) -> anyhow::Result<Vec<AbortOnDrop>> {
    let client = kube_client().await?;
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
        renew_every: Duration::from_secs(5),
    };
    let campaign = tokio::spawn(leader::campaign(
        client.clone(),
        lease,
        leadership.clone(),
        metrics.clone(),
    ));
    let protected = args.protected.with_own(&args.store.namespace);
    let config = WatcherConfig {
        scope: Scope {
            protected: protected.clone(),
            ..Scope::default()
        },
        include: args.watch_namespaces.clone(),
        rails: crate::heal::plan::Rails {
            protected_namespaces: protected,
            watch_namespaces: args.watch_namespaces.clone(),
            ..args.rails.rails()?
        },
        thresholds: Thresholds::default(),
        claim_interval: Duration::from_secs(60),
        check_certificates: args.check_certificates,
        certificate_interval: Duration::from_secs(600),
        limits,
        probes: args.probes.clone(),
        probe_interval: Duration::from_secs(30),
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
    let mut tasks = vec![AbortOnDrop(campaign)];
    if args.vault.configured() {
        let vault = args.vault.client(provider)?;
        tracing::info!(auto_unseal = args.vault_auto_unseal, "watching Vault");
        tasks.push(AbortOnDrop(tokio::spawn(crate::vault::keep_unsealed(
            vault,
            client.clone(),
            args.vault.targets(),
            args.vault_auto_unseal,
            leadership.clone(),
            metrics.clone(),
            Duration::from_secs(30),
        ))));
    }
    tasks.push(AbortOnDrop(tokio::spawn(watcher::run(
        client, executor, store, config, leadership, metrics,
    ))));
    Ok(tasks)
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

/// Resolves on SIGTERM or Ctrl-C, and starts the graceful shutdown of the HTTPS server.
async fn shutdown_signal(handle: Handle<SocketAddr>) {
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
    handle.graceful_shutdown(Some(GRACE));
}

/// Aborts a background task when the owner goes away.
pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
