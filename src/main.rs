//! The `selfheal` binary: wiring only. See `lib.rs` for the layout.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use selfheal::app::cli::{CertsArgs, Cli, Command, FixesArgs, LogFormat, OutputFormat};
use selfheal::app::{list, oneshot, serve};
use selfheal::certs::generate as certs;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    // One crypto provider for every TLS user in the process (the webhook server, the kube client).
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let _ = provider.as_ref().clone().install_default();
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args, provider).await.map(|()| true),
        Command::Fixes(args) => print_fixes(args).await.map(|()| true),
        Command::Certs(args) => make_certs(&args).map(|()| true),
        Command::Health(args) => oneshot::health(&args).await,
        Command::Heal(args) => oneshot::heal(&args).await.map(|()| true),
        Command::Unseal(args) => oneshot::unseal(&args, provider).await,
    };
    // 0: done (and healthy); 1: `health` found problems; 2: an error.
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_env("SELFHEAL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn print_fixes(args: FixesArgs) -> anyhow::Result<()> {
    let metrics = Arc::new(selfheal::metrics::Metrics::new());
    let store = serve::open_store(&args.store, metrics, Duration::from_secs(1)).await?;
    let document = store.read_document().await?;
    let text = match args.output {
        OutputFormat::Table => list::to_table(&document),
        OutputFormat::Yaml => list::to_yaml(&document),
        OutputFormat::Json => list::to_json(&document) + "\n",
    };
    print!("{text}");
    Ok(())
}

fn make_certs(args: &CertsArgs) -> anyhow::Result<()> {
    let paths = certs::CertPaths::in_dir(&args.out_dir);
    if paths.cert.exists() && !args.force {
        eprintln!(
            "certificates already in {} (pass --force to replace them)",
            args.out_dir.display()
        );
    } else {
        let mut names = certs::service_dns_names(&args.service, &args.namespace);
        names.extend(args.dns_names.iter().cloned());
        certs::write(&args.out_dir, &certs::generate(&names)?)?;
        eprintln!(
            "wrote ca.crt, ca.key, tls.crt, tls.key to {}",
            args.out_dir.display()
        );
    }
    let ca = std::fs::read_to_string(&paths.ca_cert)
        .map_err(|e| anyhow::anyhow!("{}: {e}", paths.ca_cert.display()))?;
    eprintln!("caBundle for the MutatingWebhookConfiguration:");
    println!("{}", certs::ca_bundle(&ca));
    Ok(())
}
