//! The `selfheal` binary: wiring only (command line, logs, the TLS crypto provider, the exit
//! status). What each verb does lives in `selfheal::app`; see `lib.rs` for the layout.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches};
use tracing_subscriber::EnvFilter;

use selfheal::app::cli::{self, Cli, LogFormat};
use selfheal::app::{commands, serve};

#[tokio::main]
async fn main() -> ExitCode {
    let argv0 = std::env::args_os().next();
    let matches = Cli::command()
        .bin_name(cli::invoked_name(argv0.as_deref()))
        .get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    init_tracing(cli.log_format);
    serve::select_cluster(cli.cluster.clone());
    // One crypto provider for every TLS user in the process (the webhook server, the kube client).
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let _ = provider.as_ref().clone().install_default();
    // The executable's own name: what the shell completes (also `kubectl-selfheal`).
    let name = argv0
        .as_deref()
        .map(std::path::Path::new)
        .and_then(std::path::Path::file_name)
        .and_then(|name| name.to_str())
        .unwrap_or("selfheal")
        .to_string();
    // 0: done (and healthy); 1: `health` found problems; 2: an error.
    match commands::run(cli.command, name, provider).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error:#}");
            if let Some(cluster) = serve::cluster_in_use() {
                eprintln!("(cluster: {cluster})");
            }
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
