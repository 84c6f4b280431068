//! The `host` command line.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Overrides};
use crate::engines::Lakehouse;
use crate::engines::duckdb::ReaderChoice;

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
    Doctor(CommonArgs),
    /// Work with the warehouse's tables without a running host.
    #[command(subcommand)]
    Tables(TablesCommand),
}

#[derive(Debug, Subcommand)]
enum TablesCommand {
    /// List every table with its target, row count and current snapshot.
    List(CommonArgs),
}

#[derive(Debug, Args)]
struct CommonArgs {
    /// The warehouse directory (created if missing).
    #[arg(short, long, value_name = "DIR", env = "FLOE_WAREHOUSE")]
    warehouse: Option<PathBuf>,
    /// A TOML file with any of: warehouse, address, port, extension_dir,
    /// iceberg_reader, max_message_mib. Flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// DuckDB's extension directory (default: DuckDB's own, ~/.duckdb/extensions).
    #[arg(long, value_name = "DIR")]
    extension_dir: Option<PathBuf>,
    /// How DuckDB reads Iceberg tables: its iceberg extension when it loads (auto),
    /// always the extension, or read_parquet over the files iceberg-rust plans.
    #[arg(long, value_enum, value_name = "READER")]
    iceberg_reader: Option<ReaderChoice>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The port to listen on (default 8816; 0 picks a free one).
    #[arg(short, long)]
    port: Option<u16>,
    /// The address to listen on (default 127.0.0.1).
    #[arg(long, value_name = "ADDR")]
    address: Option<IpAddr>,
}

impl CommonArgs {
    fn config(&self, port: Option<u16>, address: Option<IpAddr>) -> anyhow::Result<Config> {
        Config::resolve(
            self.config.as_deref(),
            Overrides {
                warehouse: self.warehouse.clone(),
                address,
                port,
                extension_dir: self.extension_dir.clone(),
                iceberg_reader: self.iceberg_reader,
            },
        )
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
        }
    })
}

async fn open(config: &Config) -> anyhow::Result<Lakehouse> {
    Lakehouse::open(config)
        .await
        .with_context(|| format!("opening the warehouse {}", config.warehouse.display()))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.common.config(args.port, args.address)?;
    let lakehouse = Arc::new(open(&config).await?);
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
    crate::flight::serve(&config, lakehouse, shutdown_signal()).await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
    }
}

async fn doctor(args: CommonArgs) -> anyhow::Result<()> {
    let config = args.config(None, None)?;
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
    Ok(())
}

async fn list_tables(args: CommonArgs) -> anyhow::Result<()> {
    let config = args.config(None, None)?;
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
