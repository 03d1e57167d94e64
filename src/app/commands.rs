//! What each verb of the command line runs: the dispatch `main` calls, and the verbs that are
//! wiring of a few library calls (`fixes` and its subcommands, `certs`, `man`, `completions`).
//! The CLI edge reports errors as `anyhow` chains; the library below it has typed errors.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::CommandFactory;

use crate::app::cli::{
    CertsArgs, Cli, Command, ExportArgs, ExportFormat, FixesAction, FixesArgs, ForgetArgs,
    ImportArgs, OutputFormat, PruneArgs, StoreArgs,
};
use crate::app::{fixes, list, oneshot, serve};
use crate::certs::generate as certs;
use crate::store::FixStore;

/// Runs `command`: `Ok(true)` when done (and healthy), `Ok(false)` when `health` found problems.
/// `name` is the executable's own name (what shell completion completes).
pub async fn run(
    command: Command,
    name: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> anyhow::Result<bool> {
    match command {
        Command::Serve(args) => serve::run(*args, provider).await.map(|()| true),
        Command::Fixes(args) => run_fixes(args).await.map(|()| true),
        Command::Certs(args) => make_certs(&args).map(|()| true),
        Command::Health(args) => oneshot::health(&args).await,
        Command::Heal(args) => oneshot::heal(&args).await.map(|()| true),
        Command::Unseal(args) => oneshot::unseal(&args, provider).await,
        Command::Completions(args) => {
            clap_complete::generate(
                args.shell,
                &mut Cli::command(),
                name,
                &mut std::io::stdout(),
            );
            Ok(true)
        }
        Command::Man(args) => man(args.dir.as_deref()).map(|()| true),
    }
}

/// The man page on standard output, or a page per command in `dir`.
fn man(dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    match dir {
        None => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .context("writing the man page"),
        Some(dir) => {
            clap_mangen::generate_to(Cli::command(), dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
            eprintln!("wrote the man pages into {}", dir.display());
            Ok(())
        }
    }
}

async fn open_store(args: &StoreArgs) -> anyhow::Result<FixStore> {
    let metrics = Arc::new(crate::metrics::Metrics::new());
    serve::open_store(args, metrics, Duration::from_secs(1)).await
}

async fn run_fixes(args: FixesArgs) -> anyhow::Result<()> {
    match args.action {
        None => print_fixes(args).await,
        Some(FixesAction::Forget(args)) => forget(args).await,
        Some(FixesAction::Prune(args)) => prune(args).await,
        Some(FixesAction::Export(args)) => export(args).await,
        Some(FixesAction::Import(args)) => import(args).await,
    }
}

async fn forget(args: ForgetArgs) -> anyhow::Result<()> {
    let selector = fixes::Selector::parse(
        &args.target,
        args.fix_type.as_deref(),
        args.container,
        args.claim,
    )?;
    let store = open_store(&args.store).await?;
    let removed = fixes::forget(&store, &selector).await?;
    print!(
        "{}",
        fixes::forget_report(&store.describe(), &selector, &removed)
    );
    Ok(())
}

async fn prune(args: PruneArgs) -> anyhow::Result<()> {
    let client = serve::kube_client()
        .await
        .context("prune reads which workloads exist from the cluster")?;
    let store = serve::store_on(
        &args.store,
        Some(client.clone()),
        Arc::new(crate::metrics::Metrics::new()),
        Duration::from_secs(1),
    );
    let document = store.read_document().await?;
    let existing = fixes::existing_for(&client, &document).await?;
    let now = jiff::Timestamp::now();
    let age = fixes::format_age(args.older_than);
    let stale = if args.apply {
        fixes::drop_stale(&store, &existing, now, args.older_than).await?
    } else {
        fixes::stale_fixes(&document, &existing, now, args.older_than)
    };
    print!(
        "{}",
        fixes::prune_report(&store.describe(), &stale, args.apply, &age)
    );
    Ok(())
}

async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let store = open_store(&args.store).await?;
    let document = store.read_document().await?;
    print!(
        "{}",
        fixes::export(&document, args.output == ExportFormat::Json)?
    );
    Ok(())
}

async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let (text, origin) = if args.file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("reading standard input")?;
        (text, "standard input".to_string())
    } else {
        let text = std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?;
        (text, args.file.display().to_string())
    };
    let imported = fixes::parse_import(&text, &origin)?;
    let store = open_store(&args.store).await?;
    let report = fixes::import(&store, &imported).await?;
    print!(
        "{}",
        fixes::import_report(&store.describe(), &origin, &report)
    );
    Ok(())
}

async fn print_fixes(args: FixesArgs) -> anyhow::Result<()> {
    let store = open_store(&args.store).await?;
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
