//! `host cluster`: the hosts serving a warehouse, as they registered themselves in
//! its catalog database. Opens only the catalog, so it runs anywhere that reaches it.

use clap::Subcommand;

use crate::cluster::{Registry, now_ms};
use crate::config::Warehouse;

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// List the live hosts: id, address, version, started, last heartbeat.
    List {
        /// Also the hosts whose registration expired (stopped or gone) in the last day.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        warehouse: Warehouse,
    },
}

pub async fn run(command: ClusterCommand) -> anyhow::Result<()> {
    let ClusterCommand::List { all, warehouse } = command;
    let db = super::warehouse::layout(&warehouse)?.catalog;
    let members = Registry::open(&db).await?.members().await?;
    let now = now_ms();
    println!(
        "{:<32}  {:<32}  {:<8}  {:<20}  {:>9}  STATE",
        "HOST", "ADDRESS", "VERSION", "STARTED", "HEARTBEAT"
    );
    for m in members.iter().filter(|m| all || m.live_at(now)) {
        let started = chrono::DateTime::from_timestamp_millis(m.started_ms)
            .map_or("?".into(), |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        println!(
            "{:<32}  {:<32}  {:<8}  {:<20}  {:>8.1}s  {}",
            m.host_id,
            m.address,
            m.version,
            started,
            (now - m.heartbeat_ms) as f64 / 1000.0,
            if m.live_at(now) { "live" } else { "expired" }
        );
    }
    Ok(())
}
