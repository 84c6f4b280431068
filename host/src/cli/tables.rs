//! `host tables`: list a warehouse's tables, expire their snapshots, remove their
//! orphan files. Expiry and orphan removal open only the Iceberg catalog, so they
//! run beside a host serving the same warehouse.

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::command::{ExpireOptions, TableName, check_retain_last};
use crate::config::{DuckSettings, MaintenanceSettings, Warehouse};
use crate::engines::{open_tables, retention};

#[derive(Debug, Subcommand)]
pub enum TablesCommand {
    /// List every table with its target, row count and current snapshot.
    List(ListArgs),
    /// Expire old snapshots of a table (or of every Iceberg table) and delete the
    /// files only they used. Unset options fall back to the table's
    /// history.expire.* properties, then to --snapshot-retain-last and
    /// --snapshot-retention. A serving host's reads in flight are not seen from
    /// here: keep --older-than longer than your longest read.
    Expire {
        /// `ns.name`; every Iceberg table when absent.
        table: Option<String>,
        /// Keep at least this many of the newest snapshots.
        #[arg(long, value_name = "N", allow_negative_numbers = true)]
        retain_last: Option<i64>,
        /// Keep the snapshots from this time on: an age (7d, 12h) or an RFC 3339 time.
        #[arg(long, value_name = "AGE|TIME", value_parser = crate::age::parse_time_or_age)]
        older_than: Option<chrono::DateTime<chrono::Utc>>,
        /// Say what would be expired and deleted, and change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        warehouse: Warehouse,
        #[command(flatten)]
        maintenance: MaintenanceSettings,
    },
    /// Delete the files in a table's directory (or every Iceberg table's) that no
    /// metadata references and that are older than --older-than: what crashed
    /// uploads and other engines left behind.
    Gc {
        /// `ns.name`; every Iceberg table when absent.
        table: Option<String>,
        /// Only files older than this (at least 1h) [default: --orphan-age].
        #[arg(long, value_name = "AGE", value_parser = crate::age::parse_orphan_age)]
        older_than: Option<chrono::Duration>,
        /// Say what would be deleted, and change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        warehouse: Warehouse,
        #[command(flatten)]
        maintenance: MaintenanceSettings,
    },
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    warehouse: Warehouse,
    #[command(flatten)]
    duck: DuckSettings,
}

pub async fn run(command: TablesCommand) -> anyhow::Result<()> {
    match command {
        TablesCommand::List(args) => list(args).await,
        TablesCommand::Expire {
            table,
            retain_last,
            older_than,
            dry_run,
            warehouse,
            maintenance,
        } => {
            let options = ExpireOptions {
                retain_last: retain_last.map(check_retain_last).transpose()?,
                older_than,
                dry_run,
            };
            let iceberg = open_tables(&super::warehouse::layout(&warehouse)?).await?;
            let policy = retention(&maintenance);
            println!(
                "{:<40} {:>9} {:>8} {:>14}",
                "table", "snapshots", "files", "bytes"
            );
            for name in tables(&iceberg, table).await? {
                let expired = iceberg
                    .expire(&name, &policy, &options)
                    .await
                    .with_context(|| format!("expiring snapshots of {name}"))?;
                println!(
                    "{:<40} {:>9} {:>8} {:>14}",
                    name.to_string(),
                    expired.snapshot_ids.len(),
                    expired.deleted_files,
                    expired.deleted_bytes
                );
            }
            note_dry_run(dry_run);
            Ok(())
        }
        TablesCommand::Gc {
            table,
            older_than,
            dry_run,
            warehouse,
            maintenance,
        } => {
            let iceberg = open_tables(&super::warehouse::layout(&warehouse)?).await?;
            let age = older_than.unwrap_or(maintenance.orphan_age).to_std()?;
            println!("{:<40} {:>8} {:>14}", "table", "orphans", "bytes");
            for name in tables(&iceberg, table).await? {
                let orphans = iceberg
                    .remove_orphans(&name, age, dry_run)
                    .await
                    .with_context(|| format!("removing orphan files of {name}"))?;
                println!(
                    "{:<40} {:>8} {:>14}",
                    name.to_string(),
                    orphans.files,
                    orphans.bytes
                );
            }
            note_dry_run(dry_run);
            Ok(())
        }
    }
}

/// `table`, or every Iceberg table of the catalog.
async fn tables(
    iceberg: &crate::engines::iceberg::IcebergEngine,
    table: Option<String>,
) -> anyhow::Result<Vec<TableName>> {
    Ok(match table {
        Some(text) => vec![TableName::parse(&text)?],
        None => iceberg
            .list()
            .await?
            .into_iter()
            .map(|(name, _)| name)
            .collect(),
    })
}

fn note_dry_run(dry_run: bool) {
    if dry_run {
        println!("(dry run: nothing was changed)");
    }
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let lakehouse =
        super::open(&args.warehouse, &args.duck, &MaintenanceSettings::default()).await?;
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
