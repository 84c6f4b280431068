//! The `host` command line.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::auth::Auth;
use crate::cluster::{Cluster, Registry, Splitter};
use crate::command::Target;
use crate::config::{
    self, DuckSettings, MaintenanceSettings, SandboxSettings, ServerSettings, Settings, Warehouse,
};
use crate::core::Core;
use crate::engines::Lakehouse;
use crate::limits::Limits;
use crate::plugins::Plugins;

mod cluster;
mod plugins;
mod security;
mod tables;
mod warehouse;

/// floe: an Arrow Flight host for Iceberg and DuckDB tables.
///
/// Clients upload with DoPut and read with GetFlightInfo/DoGet; commands are JSON
/// (see the README). Tables live in the warehouse directory: Iceberg tables in a
/// SQLite SQL catalog, DuckDB tables in a DuckDB database file.
#[derive(Debug, Parser)]
#[command(name = "host", version, propagate_version = true)]
pub struct Cli {
    /// Log lines as text, or as one JSON object per line (with each RPC's span:
    /// principal, table, rows, bytes, duration, status).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "FLOE_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the warehouse over Arrow Flight until SIGINT or SIGTERM.
    Serve(Settings),
    /// Check the warehouse, report which Iceberg read path DuckDB will use, and show
    /// every setting in effect.
    Doctor(Settings),
    /// Work with the warehouse's tables: list them (with no host serving the
    /// warehouse), expire their snapshots and remove orphan files (also beside one).
    #[command(subcommand)]
    Tables(tables::TablesCommand),
    /// Register, list, inspect and remove WASM transform plugins. A running host
    /// sees changes on its next request.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Add, list and remove the users who may connect, and change their passwords.
    #[command(subcommand)]
    Users(security::UsersCommand),
    /// Create, list and revoke service tokens for unattended clients.
    #[command(subcommand)]
    Tokens(security::TokensCommand),
    /// The hosts serving the warehouse (each registers in the catalog database).
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
}

#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// Validate a component built for wasm32-wasip2 (it must export the
    /// floe:plugin/transform interface of wit/transform.wit), precompile it and
    /// register it under NAME.
    Add {
        /// The name tickets use: letters, digits, '-' and '_'.
        name: String,
        /// The component (.wasm).
        file: PathBuf,
        /// Replace a plugin already registered under NAME.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        warehouse: Warehouse,
        #[command(flatten)]
        sandbox: SandboxSettings,
    },
    /// List the registered plugins: name, version, kind, sha256, size, added at.
    List {
        #[command(flatten)]
        warehouse: Warehouse,
    },
    /// Show what a plugin says of itself, with its arguments' JSON schema.
    Inspect {
        name: String,
        #[command(flatten)]
        warehouse: Warehouse,
    },
    /// Unregister a plugin (its files go unless another name uses them).
    Remove {
        name: String,
        #[command(flatten)]
        warehouse: Warehouse,
    },
}

/// Parse the command line; with `--config FILE`, parse it again with the file's
/// settings as the defaults (flags and environment variables still win).
fn parse() -> anyhow::Result<Cli> {
    let command = || Cli::command().version(version());
    let matches = command().get_matches();
    let matches = match config::config_file(&matches) {
        Some(file) => config::with_file_defaults(command(), &file)?.get_matches(),
        None => matches,
    };
    Ok(Cli::from_arg_matches(&matches)?)
}

/// floe's version and what it carries: `host --version`.
fn version() -> String {
    let (duckdb, linked) = crate::engines::duckdb::library();
    format!(
        "{} (DuckDB {duckdb}, {linked}; iceberg-rust {})",
        env!("CARGO_PKG_VERSION"),
        env!("FLOE_ICEBERG_VERSION")
    )
}

pub fn run() -> anyhow::Result<()> {
    let cli = parse()?;
    // Two TLS backends are linked (tonic's ring; aws-lc-rs through the S3 client), so
    // rustls cannot pick one by itself: the server and the clients use ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,iceberg=warn,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Doctor(args) => doctor(args).await,
            Command::Tables(command) => tables::run(command).await,
            Command::Plugins(command) => plugins::run(command).await,
            Command::Users(command) => security::users(command).await,
            Command::Tokens(command) => security::tokens(command).await,
            Command::Cluster(command) => cluster::run(command).await,
        }
    });
    // An interrupted query may take a moment to notice: do not wait on it forever.
    runtime.shutdown_timeout(Duration::from_secs(2));
    outcome
}

async fn open(
    warehouse: &Warehouse,
    duck: &DuckSettings,
    maintenance: &MaintenanceSettings,
) -> anyhow::Result<Lakehouse> {
    Lakehouse::open(&self::warehouse::layout(warehouse)?, duck, maintenance)
        .await
        .with_context(|| format!("opening the warehouse {}", warehouse.warehouse))
}

async fn serve(args: Settings) -> anyhow::Result<()> {
    let lakehouse = open(&args.warehouse, &args.duck, &args.maintenance).await?;
    let recovered = lakehouse
        .recover_writes()
        .await
        .context("cleaning up after writes a crash interrupted")?;
    if recovered > 0 {
        tracing::info!(
            writes = recovered,
            "cleaned up after writes a crash interrupted"
        );
    }
    let plugins = Plugins::open(
        &self::warehouse::storage(&args.warehouse)?,
        &args.warehouse.dir()?,
        args.sandbox.limits(),
    )
    .context("starting the WASM plugin runtime")?;
    let (reader, note) = lakehouse.iceberg_reader();
    tracing::info!(
        warehouse = %args.warehouse.warehouse,
        iceberg_reader = ?reader,
        note = note.unwrap_or(""),
        "Iceberg tables are read by DuckDB via {}",
        reader.describe()
    );
    let limits = args.sandbox.limits();
    tracing::info!(
        plugins = plugins.registry().list().await?.len(),
        deadline = ?limits.deadline,
        memory_mib = limits.memory_bytes >> 20,
        "WASM plugins sandboxed"
    );
    tracing::info!(
        request_timeout = ?args.limits.request_timeout(),
        max_concurrent_queries = args.limits.max_concurrent_queries,
        max_concurrent_plugins = args.limits.max_concurrent_plugins(),
        duckdb_memory_limit = %args.duck.duckdb_memory_limit,
        duckdb_threads = args.duck.threads(),
        "limits"
    );
    let auth = Auth::new(
        &self::warehouse::storage(&args.warehouse)?,
        args.server.serves_anonymous(),
        args.server.token_ttl(),
    );
    check_exposure(&args.server, &auth).await?;
    let limits = Limits::new(args.limits.clone());
    let listener = crate::flight::bind(&args.server).await?;
    let address = args
        .cluster
        .advertised(args.server.scheme(), listener.local_addr()?);
    let registry = Registry::on(lakehouse.catalog_db(), lakehouse.catalog_pool()).await?;
    let cluster = Cluster::join(registry, address, args.cluster.heartbeat())
        .await
        .context("registering this host in the catalog")?;
    tracing::info!(
        host_id = %cluster.host_id(),
        advertised = %cluster.address(),
        live_hosts = cluster.live().len(),
        shared = lakehouse.shared(),
        "joined the warehouse's hosts"
    );
    let heartbeat = cluster.spawn_heartbeat();
    let lakehouse = Arc::new(lakehouse);
    let sweeper = sweep_abandoned_writes(lakehouse.clone());
    let core = Arc::new(Core::new(
        lakehouse,
        Arc::new(plugins),
        limits,
        auth,
        Splitter::new(cluster.clone(), args.cluster.split_reads_at),
    ));
    if let Some(addr) = args.server.metrics_address {
        crate::metrics::serve(addr).await?;
    }
    let signalled = shutdown(core.clone(), args.server.shutdown_grace())?;
    // Deregister as the drain starts, so that other hosts stop handing this one out
    // while its running requests finish.
    let stopping = async move {
        signalled.await;
        heartbeat.abort();
        sweeper.abort();
        cluster.leave().await;
    };
    crate::flight::serve(&args.server, listener, core, stopping).await
}

/// Now and then, recover the writes of hosts that died since (another host sharing
/// the warehouse, killed mid-upload): their files are deleted at once, not at the
/// next orphan sweep.
fn sweep_abandoned_writes(lakehouse: Arc<Lakehouse>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(SWEEP_EVERY);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            match lakehouse.recover_writes().await {
                Ok(0) => {}
                Ok(writes) => tracing::info!(writes, "cleaned up after writes of a host that died"),
                Err(err) => tracing::warn!(%err, "could not clean up after a host that died"),
            }
        }
    })
}

const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// A host off loopback with nobody to authenticate would serve anyone who reaches it:
/// refuse to start, unless told to with `--allow-anonymous`.
async fn check_exposure(server: &ServerSettings, auth: &Auth) -> anyhow::Result<()> {
    let principals = auth.store().current().await?;
    let address = server.address;
    if principals.is_empty() && !address.is_loopback() {
        if !server.allow_anonymous {
            bail!(
                "refusing to serve {address} without users: anyone who reaches the port could \
                 read, write and drop every table. Add one first, e.g.\n  \
                 host users add admin --grant admin -w WAREHOUSE\n\
                 or serve everyone anyway with --allow-anonymous"
            );
        }
        tracing::warn!(%address, "--allow-anonymous: ANYONE who reaches this host may read, write and drop every table");
    }
    tracing::info!(
        users = principals.users.len(),
        service_tokens = principals.tokens.len(),
        anonymous = auth.serves_anonymous().await?,
        "authentication"
    );
    Ok(())
}

/// Resolves at the first SIGTERM or SIGINT, so the server stops accepting and
/// waits for running requests. They get `grace` to finish; then they are
/// cancelled (queries interrupted, uploads aborted) and the host exits two seconds
/// later at most. A second signal exits at once.
fn shutdown(
    core: Arc<Core>,
    grace: Duration,
) -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("handling SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!(?grace, "SIGTERM: draining"),
            _ = int.recv() => tracing::info!(?grace, "SIGINT: draining"),
        }
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(grace) => {
                    tracing::warn!("grace period over: cancelling the requests still running");
                    core.cancel_all();
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    tracing::warn!("requests did not end: exiting");
                    std::process::exit(1);
                }
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::warn!("second signal: exiting now");
            std::process::exit(1);
        });
    })
}

async fn doctor(args: Settings) -> anyhow::Result<()> {
    let lakehouse = open(&args.warehouse, &args.duck, &args.maintenance).await?;
    let dir = args.warehouse.dir()?;
    let tables = lakehouse.list_tables().await?;
    let (reader, note) = lakehouse.iceberg_reader();
    let limits = args.sandbox.limits();
    println!("floe host {}", version());
    match args.warehouse.is_remote() {
        true => println!(
            "warehouse:       {} (host files in {})",
            args.warehouse.warehouse,
            dir.display()
        ),
        false => println!("warehouse:       {}", dir.display()),
    }
    for (what, path) in lakehouse.files() {
        println!("{:<16} {path}", format!("{what}:"));
    }
    println!(
        "iceberg reader:  {reader:?}{}",
        note.map(|n| format!(" ({n})")).unwrap_or_default()
    );
    println!("tables:          {}", tables.len());
    println!(
        "plugins:         {}",
        crate::plugins::Registry::new(&self::warehouse::storage(&args.warehouse)?, &dir)
            .list()
            .await?
            .len()
    );
    println!("listen:          {}", args.server.listen_addr());
    println!(
        "advertise:       {}",
        args.cluster
            .advertised(args.server.scheme(), args.server.listen_addr())
    );
    let hosts = Registry::on(lakehouse.catalog_db(), lakehouse.catalog_pool())
        .await?
        .members()
        .await?;
    let now = crate::cluster::now_ms();
    println!(
        "hosts:           {} live (host cluster list); heartbeat every {:?}",
        hosts.iter().filter(|m| m.live_at(now)).count(),
        args.cluster.heartbeat()
    );
    println!(
        "split reads:     {}",
        match args.cluster.split_reads_at {
            0 => "never".to_string(),
            mib => format!("over {mib} MiB, one endpoint per live host at most"),
        }
    );
    println!(
        "tls:             {}",
        match (&args.server.tls_cert, &args.server.tls_client_ca) {
            (None, _) => "off (grpc://)".to_string(),
            (Some(cert), None) => format!("{} (grpc+tls://)", cert.display()),
            (Some(cert), Some(ca)) => format!(
                "{} (grpc+tls://, client CA {})",
                cert.display(),
                ca.display()
            ),
        }
    );
    println!(
        "metrics:         {}",
        args.server
            .metrics_address
            .map_or("off".into(), |a| format!("http://{a}/metrics"))
    );
    println!("max message:     {} MiB", args.server.max_message_mib);
    println!("plugin deadline: {:?}", limits.deadline);
    println!("plugin memory:   {} MiB", limits.memory_bytes >> 20);
    let server = &args.server;
    let requests = &args.limits;
    println!("duckdb memory:   {}", args.duck.duckdb_memory_limit);
    println!("duckdb threads:  {}", args.duck.threads());
    println!(
        "plan cache:      {}",
        match args.duck.plan_cache_tables {
            0 => "off (every read plans from the catalog)".to_string(),
            n => format!("{n} tables, {} MiB", args.duck.plan_cache_mib),
        }
    );
    println!(
        "direct reads:    {}",
        match args.duck.direct_reads {
            false => "off (DuckDB runs every read)".to_string(),
            true => format!("on, footer cache {} MiB", args.duck.footer_cache_mib),
        }
    );
    println!("request timeout: {:?}", requests.request_timeout());
    println!("max queries:     {}", requests.max_concurrent_queries);
    println!("max plugins:     {}", requests.max_concurrent_plugins());
    println!("queue timeout:   {:?}", requests.queue_timeout());
    println!("idle upload:     {:?}", requests.idle_upload_timeout());
    println!("idle connection: {:?}", server.idle_connection_timeout());
    println!("streams per conn:{:>2}", server.max_streams_per_connection);
    println!("shutdown grace:  {:?}", server.shutdown_grace());
    let principals = crate::auth::Store::new(&self::warehouse::storage(&args.warehouse)?)
        .current()
        .await?;
    println!(
        "principals:      {} users, {} service tokens{}",
        principals.users.len(),
        principals.tokens.len(),
        if principals.is_empty() && server.serves_anonymous() {
            " (anonymous clients are served)"
        } else {
            ""
        }
    );
    println!("token ttl:       {:?}", server.token_ttl());
    let maintenance = &args.maintenance;
    println!(
        "snapshots kept:  the {} newest, and all younger than {}",
        maintenance.snapshot_retain_last,
        crate::age::format_age(maintenance.snapshot_retention)
    );
    println!(
        "orphan files:    removed once older than {}{}",
        crate::age::format_age(maintenance.orphan_age),
        if maintenance.background_maintenance {
            " (expiry and removal run after commits)"
        } else {
            " (background maintenance off)"
        }
    );
    for table in tables.iter().filter(|t| t.target == Target::Iceberg) {
        let orphans = lakehouse
            .remove_orphan_files(&table.name, None, true)
            .await
            .with_context(|| format!("looking for orphan files of {}", table.name))?;
        if orphans.files > 0 {
            println!(
                "  {}: {} orphan files, {} bytes (host tables gc)",
                table.name, orphans.files, orphans.bytes
            );
        }
    }
    Ok(())
}
