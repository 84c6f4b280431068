//! The `host` command line.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Overrides};
use crate::engines::Lakehouse;
use crate::engines::duckdb::ReaderChoice;
use crate::plugins::Plugins;

mod plugins;

/// floe: an Arrow Flight host for Iceberg and DuckDB tables.
///
/// Clients upload with DoPut and read with GetFlightInfo/DoGet; commands are JSON
/// (see the README). Tables live in the warehouse directory: Iceberg tables in a
/// SQLite SQL catalog, DuckDB tables in a DuckDB database file.
#[derive(Debug, Parser)]
#[command(name = "host", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the warehouse over Arrow Flight until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Check the warehouse and report which Iceberg read path DuckDB will use.
    Doctor(TableArgs),
    /// Work with the warehouse's tables without a running host.
    #[command(subcommand)]
    Tables(TablesCommand),
    /// Register, list, inspect and remove WASM transform plugins. A running host
    /// sees changes on its next request.
    #[command(subcommand)]
    Plugins(PluginsCommand),
}

#[derive(Debug, Subcommand)]
enum TablesCommand {
    /// List every table with its target, row count and current snapshot.
    List(TableArgs),
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
        warehouse: WarehouseArgs,
        #[command(flatten)]
        sandbox: SandboxArgs,
    },
    /// List the registered plugins: name, version, kind, sha256, size, added at.
    List {
        #[command(flatten)]
        warehouse: WarehouseArgs,
    },
    /// Show what a plugin says of itself, with its arguments' JSON schema.
    Inspect {
        name: String,
        #[command(flatten)]
        warehouse: WarehouseArgs,
    },
    /// Unregister a plugin (its files go unless another name uses them).
    Remove {
        name: String,
        #[command(flatten)]
        warehouse: WarehouseArgs,
    },
}

#[derive(Debug, Args)]
struct WarehouseArgs {
    /// The warehouse directory (created if missing).
    #[arg(short, long, value_name = "DIR", env = "FLOE_WAREHOUSE")]
    warehouse: Option<PathBuf>,
    /// A TOML file with any of: warehouse, address, port, extension_dir,
    /// iceberg_reader, max_message_mib, plugin_deadline_secs, plugin_memory_mib.
    /// Flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct DuckArgs {
    /// DuckDB's extension directory (default: DuckDB's own, ~/.duckdb/extensions).
    #[arg(long, value_name = "DIR")]
    extension_dir: Option<PathBuf>,
    /// How DuckDB reads Iceberg tables: its iceberg extension when it loads (auto),
    /// always the extension, or read_parquet over the files iceberg-rust plans.
    #[arg(long, value_enum, value_name = "READER")]
    iceberg_reader: Option<ReaderChoice>,
}

#[derive(Debug, Args)]
struct SandboxArgs {
    /// The deadline of each call into a WASM plugin, in seconds (default 10).
    #[arg(long, value_name = "SECS")]
    plugin_deadline: Option<f64>,
    /// The memory cap of each WASM plugin instance, in MiB (default 256).
    #[arg(long, value_name = "MIB")]
    plugin_memory: Option<usize>,
}

#[derive(Debug, Args)]
struct TableArgs {
    #[command(flatten)]
    warehouse: WarehouseArgs,
    #[command(flatten)]
    duck: DuckArgs,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    warehouse: WarehouseArgs,
    #[command(flatten)]
    duck: DuckArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
    /// The port to listen on (default 8816; 0 picks a free one).
    #[arg(short, long)]
    port: Option<u16>,
    /// The address to listen on (default 127.0.0.1).
    #[arg(long, value_name = "ADDR")]
    address: Option<IpAddr>,
}

impl WarehouseArgs {
    fn config(&self, overrides: Overrides) -> anyhow::Result<Config> {
        Config::resolve(
            self.config.as_deref(),
            Overrides {
                warehouse: self.warehouse.clone(),
                ..overrides
            },
        )
    }
}

impl DuckArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            extension_dir: self.extension_dir.clone(),
            iceberg_reader: self.iceberg_reader,
            ..Overrides::default()
        }
    }
}

impl SandboxArgs {
    fn overrides(&self, base: Overrides) -> Overrides {
        Overrides {
            plugin_deadline_secs: self.plugin_deadline,
            plugin_memory_mib: self.plugin_memory,
            ..base
        }
    }
}

impl TableArgs {
    fn config(&self) -> anyhow::Result<Config> {
        self.warehouse.config(self.duck.overrides())
    }
}

pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,iceberg=warn,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Doctor(args) => doctor(args).await,
            Command::Tables(TablesCommand::List(args)) => list_tables(args).await,
            Command::Plugins(command) => plugins::run(command),
        }
    })
}

async fn open(config: &Config) -> anyhow::Result<Lakehouse> {
    Lakehouse::open(config)
        .await
        .with_context(|| format!("opening the warehouse {}", config.warehouse.display()))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        port: args.port,
        address: args.address,
        ..args.sandbox.overrides(args.duck.overrides())
    };
    let config = args.warehouse.config(overrides)?;
    let lakehouse = Arc::new(open(&config).await?);
    let plugins = Arc::new(
        Plugins::open(&config.warehouse, config.plugin_limits)
            .context("starting the WASM plugin runtime")?,
    );
    tracing::info!(
        warehouse = %config.warehouse.display(),
        iceberg_reader = ?lakehouse.duck.reader,
        note = lakehouse.duck.reader_note.as_deref().unwrap_or(""),
        "Iceberg tables are read by DuckDB via {}",
        match lakehouse.duck.reader {
            crate::engines::duckdb::IcebergReader::Extension => "its iceberg extension (iceberg_scan)",
            crate::engines::duckdb::IcebergReader::ReadParquet => "read_parquet over files planned by iceberg-rust",
        }
    );
    tracing::info!(
        plugins = plugins.registry().list()?.len(),
        deadline = ?config.plugin_limits.deadline,
        memory_mib = config.plugin_limits.memory_bytes >> 20,
        "WASM plugins sandboxed"
    );
    crate::flight::serve(&config, lakehouse, plugins, shutdown_signal()).await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
    }
}

async fn doctor(args: TableArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let lakehouse = open(&config).await?;
    let tables = lakehouse.list_tables().await?;
    println!("floe host {}", env!("CARGO_PKG_VERSION"));
    println!("warehouse:      {}", config.warehouse.display());
    println!(
        "catalog:        {}",
        config.warehouse.join("catalog.db").display()
    );
    println!(
        "duckdb:         {}",
        crate::engines::duckdb::database_path(&config.warehouse).display()
    );
    println!(
        "iceberg reader: {:?}{}",
        lakehouse.duck.reader,
        lakehouse
            .duck
            .reader_note
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default()
    );
    println!("tables:         {}", tables.len());
    println!(
        "plugins:        {}",
        crate::plugins::Registry::new(&config.warehouse)
            .list()?
            .len()
    );
    Ok(())
}

async fn list_tables(args: TableArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let lakehouse = open(&config).await?;
    println!(
        "{:<40} {:<8} {:>12} {:>20}",
        "table", "target", "rows", "snapshot"
    );
    for table in lakehouse.list_tables().await? {
        println!(
            "{:<40} {:<8} {:>12} {:>20}",
            table.name.to_string(),
            format!("{:?}", table.target).to_lowercase(),
            table.rows.map(|r| r.to_string()).unwrap_or_default(),
            table.snapshot_id.map(|s| s.to_string()).unwrap_or_default()
        );
    }
    Ok(())
}
