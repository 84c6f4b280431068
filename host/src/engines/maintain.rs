//! Table maintenance: snapshot expiry and orphan-file removal, on demand and in the
//! background after this host's commits, so a table fed for years stays as small
//! and as quick to read as its data allows, with no separate job to run.

use std::sync::Arc;
use std::time::Instant;

use super::iceberg::{Expired, Orphans, Retention};
use super::iceberg::{IcebergEngine, PlanCache};
use super::{Lakehouse, Layout, Located};
use crate::command::{ExpireOptions, TableName};
use crate::config::MaintenanceSettings;
use crate::error::{Error, Result};

/// The warehouse's Iceberg tables alone, without DuckDB: maintenance from the command
/// line works beside a running host (whose DuckDB database file is its own).
pub async fn open_tables(layout: &Layout) -> Result<IcebergEngine> {
    IcebergEngine::open(
        layout.catalog.clone(),
        layout.storage.clone(),
        &layout.journal(),
        PlanCache::new(0, 0),
    )
    .await
}

impl Lakehouse {
    /// Expire `table`'s snapshots as `request` (else the table's properties, else
    /// the warehouse's retention) says.
    pub async fn expire_snapshots(
        &self,
        table: &TableName,
        request: &ExpireOptions,
    ) -> Result<Expired> {
        self.require_iceberg(table).await?;
        self.iceberg
            .expire(table, &retention(&self.maintenance), request)
            .await
    }

    /// Remove the files of `table` no metadata references, older than `older_than`
    /// (default: the warehouse's orphan age).
    pub async fn remove_orphan_files(
        &self,
        table: &TableName,
        older_than: Option<chrono::Duration>,
        dry_run: bool,
    ) -> Result<Orphans> {
        self.require_iceberg(table).await?;
        let age = older_than.unwrap_or(self.maintenance.orphan_age);
        self.iceberg
            .remove_orphans(table, age.to_std().unwrap_or_default(), dry_run)
            .await
    }

    /// NotFound unless `table` exists; InvalidArgument for a DuckDB table.
    async fn require_iceberg(&self, table: &TableName) -> Result<()> {
        match self.locate(table).await? {
            Located::Iceberg(_) => Ok(()),
            Located::Duckdb => Err(Error::invalid(format!(
                "{table} is a DuckDB table: snapshots and orphan files are Iceberg's"
            ))),
        }
    }

    /// After a commit to `name`: expire what the retention lets go, and once a day
    /// remove its orphan files, in a task of its own (one per table at a time).
    pub(super) fn maintain_when_due(self: &Arc<Self>, name: &TableName) {
        if !self.maintenance.background_maintenance
            || !self
                .maintaining
                .lock()
                .expect("maintaining")
                .insert(name.clone())
        {
            return;
        }
        let (lakehouse, name) = (self.clone(), name.clone());
        tokio::spawn(async move {
            let retention = retention(&lakehouse.maintenance);
            if let Err(err) = lakehouse
                .iceberg
                .expire(&name, &retention, &ExpireOptions::default())
                .await
            {
                tracing::warn!(table = %name, %err, "snapshot expiry failed; the table is as it was");
            }
            if lakehouse.orphans_due(&name) {
                let age = lakehouse
                    .maintenance
                    .orphan_age
                    .to_std()
                    .unwrap_or_default();
                if let Err(err) = lakehouse.iceberg.remove_orphans(&name, age, false).await {
                    tracing::warn!(table = %name, %err, "orphan file removal failed");
                }
            }
            lakehouse
                .maintaining
                .lock()
                .expect("maintaining")
                .remove(&name);
        });
    }

    /// Whether `name`'s orphans were last looked for by this process a day ago or more.
    fn orphans_due(&self, name: &TableName) -> bool {
        let mut last = self.orphans_checked.lock().expect("orphans checked");
        let due = last
            .get(name)
            .is_none_or(|at| at.elapsed() >= ORPHAN_CHECK_INTERVAL);
        if due {
            last.insert(name.clone(), Instant::now());
        }
        due
    }
}

/// How often the background looks for a table's orphan files.
const ORPHAN_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(86_400);

/// The warehouse's retention as the settings give it.
pub fn retention(settings: &MaintenanceSettings) -> Retention {
    Retention {
        keep_last: settings.snapshot_retain_last as usize,
        max_age: settings.snapshot_retention,
    }
}
