//! The storage side: Iceberg tables (written by iceberg-rust, read by DuckDB) and
//! DuckDB-native tables, behind one `Lakehouse`.

mod conform;
pub mod duckdb;
pub mod iceberg;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ::iceberg::arrow::schema_to_arrow_schema;
use ::iceberg::spec::SnapshotRef;
use arrow::datatypes::SchemaRef;
use serde::Serialize;

use self::duckdb::{DuckEngine, IcebergReader, empty_relation};
use self::iceberg::{COMPACT_AT, Committed, IcebergEngine, LoadedTable, local_path};
use crate::command::{TableName, Target, quote_literal};
use crate::config::Config;
use crate::error::{Context, Error, Result};

pub struct Lakehouse {
    pub iceberg: IcebergEngine,
    pub duck: Arc<DuckEngine>,
    /// The metadata location each published DuckDB view currently reads.
    views: tokio::sync::Mutex<HashMap<TableName, String>>,
    /// Tables a background compaction is working on.
    compacting: std::sync::Mutex<HashSet<TableName>>,
}

/// A table as `list_tables` reports it.
#[derive(Debug, Serialize)]
pub struct TableInfo {
    pub name: TableName,
    pub target: Target,
    #[serde(serialize_with = "crate::flight::schema_json::serialize")]
    pub schema: SchemaRef,
    pub rows: Option<u64>,
    pub snapshot_id: Option<i64>,
}

/// One entry of `list_snapshots`.
#[derive(Debug, Serialize)]
pub struct SnapshotInfo {
    pub snapshot_id: i64,
    pub sequence_number: i64,
    pub parent_id: Option<i64>,
    pub timestamp: String,
    pub timestamp_ms: i64,
    pub operation: String,
    pub summary: HashMap<String, String>,
    pub current: bool,
}

/// Run blocking DuckDB work off the async executor.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|err| Error::internal(format!("blocking task failed: {err}")))?
}

impl Lakehouse {
    pub async fn open(config: &Config) -> Result<Self> {
        let wh = &config.warehouse;
        std::fs::create_dir_all(wh)
            .with_context(|| format!("creating the warehouse {}", wh.display()))?;
        let iceberg = IcebergEngine::open(&wh.join("catalog.db"), &wh.join("iceberg")).await?;
        let (db, wh2, ext, choice) = (
            duckdb::database_path(wh),
            wh.clone(),
            config.extension_dir.clone(),
            config.iceberg_reader,
        );
        let duck = blocking(move || DuckEngine::open(&db, &wh2, ext.as_deref(), choice)).await?;
        // Views left by an earlier run are re-pointed, or dropped if their table is gone.
        let known = duck
            .list_views()?
            .into_iter()
            .map(|name| (name, String::new()))
            .collect();
        let lakehouse = Self {
            iceberg,
            duck: Arc::new(duck),
            views: tokio::sync::Mutex::new(known),
            compacting: Default::default(),
        };
        lakehouse.sync_views().await?;
        Ok(lakehouse)
    }

    /// The FROM item that reads an Iceberg table at `snapshot` (None: no data yet).
    pub async fn iceberg_source(
        &self,
        table: &LoadedTable,
        snapshot: Option<&SnapshotRef>,
    ) -> Result<String> {
        let metadata = table.metadata();
        let Some(snapshot) = snapshot else {
            let schema =
                schema_to_arrow_schema(metadata.current_schema()).context("table schema")?;
            return empty_relation(&schema);
        };
        match self.duck.reader {
            IcebergReader::Extension => {
                let location = quote_literal(local_path(table.metadata_location()));
                if metadata.current_snapshot_id() == Some(snapshot.snapshot_id()) {
                    Ok(format!("iceberg_scan({location})"))
                } else {
                    Ok(format!(
                        "iceberg_scan({location}, snapshot_from_id => {})",
                        snapshot.snapshot_id()
                    ))
                }
            }
            IcebergReader::ReadParquet => {
                let files = table.data_files(snapshot).await?;
                if files.is_empty() {
                    let schema = snapshot.schema(metadata).context("snapshot schema")?;
                    return empty_relation(
                        &schema_to_arrow_schema(&schema).context("table schema")?,
                    );
                }
                let list: Vec<String> = files.iter().map(|f| quote_literal(f)).collect();
                Ok(format!("read_parquet([{}])", list.join(", ")))
            }
        }
    }

    /// After a commit to `name` that added a small file: once the table could have
    /// `COMPACT_AT` small files, compact them on a background task (one per table).
    /// Big appends never trigger it, so big tables are not re-read after each one.
    pub fn compact_when_due(self: &Arc<Self>, name: &TableName, committed: &Committed) {
        if !committed.added_small_file
            || committed.table_data_files < COMPACT_AT
            || !self
                .compacting
                .lock()
                .expect("compacting")
                .insert(name.clone())
        {
            return;
        }
        let (lakehouse, name) = (self.clone(), name.clone());
        tokio::spawn(async move {
            if let Err(err) = lakehouse.iceberg.compact(&name, COMPACT_AT).await {
                tracing::warn!(table = %name, %err, "compaction failed; the table is as it was");
            }
            lakehouse
                .compacting
                .lock()
                .expect("compacting")
                .remove(&name);
        });
    }

    /// Make every Iceberg table addressable in SQL as `ns.name`: one DuckDB view per
    /// table, re-pointed whenever the catalog's metadata location has moved on.
    pub async fn sync_views(&self) -> Result<()> {
        let mut views = self.views.lock().await;
        let tables = self.iceberg.list().await?;
        let current: HashMap<_, _> = tables.into_iter().collect();
        for (name, location) in &current {
            if views.get(name) == Some(location) {
                continue;
            }
            let Some(table) = self.iceberg.load(name).await? else {
                continue;
            };
            let source = self
                .iceberg_source(&table, table.metadata().current_snapshot())
                .await?;
            let (duck, view) = (self.duck.clone(), name.clone());
            match blocking(move || duck.replace_view(&view, &source)).await {
                Ok(()) => {
                    views.insert(name.clone(), location.clone());
                }
                Err(err) => tracing::warn!(%name, %err, "Iceberg table not addressable in SQL"),
            }
        }
        let stale: Vec<TableName> = views
            .keys()
            .filter(|n| !current.contains_key(*n))
            .cloned()
            .collect();
        for name in stale {
            let (duck, view) = (self.duck.clone(), name.clone());
            blocking(move || duck.drop_view(&view)).await?;
            views.remove(&name);
        }
        Ok(())
    }

    /// Where a table lives, or NotFound naming it.
    pub async fn locate(&self, name: &TableName) -> Result<Located> {
        if let Some(table) = self.iceberg.load(name).await? {
            return Ok(Located::Iceberg(Box::new(table)));
        }
        let (duck, n) = (self.duck.clone(), name.clone());
        if blocking(move || duck.table_exists(&n)).await? {
            return Ok(Located::Duckdb);
        }
        Err(Error::not_found(format!("table {name} not found")))
    }

    pub async fn list_tables(&self) -> Result<Vec<TableInfo>> {
        let mut out = Vec::new();
        for (name, _) in self.iceberg.list().await? {
            let Some(table) = self.iceberg.load(&name).await? else {
                continue;
            };
            let metadata = table.metadata();
            let snapshot = metadata.current_snapshot();
            out.push(TableInfo {
                schema: Arc::new(
                    schema_to_arrow_schema(metadata.current_schema()).context("table schema")?,
                ),
                rows: Some(
                    snapshot
                        .and_then(|s| s.summary().additional_properties.get("total-records"))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                ),
                snapshot_id: snapshot.map(|s| s.snapshot_id()),
                target: Target::Iceberg,
                name,
            });
        }
        let duck = self.duck.clone();
        let native = blocking(move || {
            duck.list_tables()?
                .into_iter()
                .map(|(name, rows)| {
                    Ok((
                        duck.schema_of(&format!("SELECT * FROM {}", name.sql()))?,
                        name,
                        rows,
                    ))
                })
                .collect::<Result<Vec<_>>>()
        })
        .await?;
        for (schema, name, rows) in native {
            out.push(TableInfo {
                name,
                target: Target::Duckdb,
                schema,
                rows: Some(rows),
                snapshot_id: None,
            });
        }
        Ok(out)
    }

    pub async fn drop_table(&self, name: &TableName) -> Result<Target> {
        match self.locate(name).await? {
            Located::Iceberg(_) => {
                self.iceberg.drop_table(name).await?;
                self.sync_views().await?;
                Ok(Target::Iceberg)
            }
            Located::Duckdb => {
                let (duck, n) = (self.duck.clone(), name.clone());
                blocking(move || duck.drop_table(&n)).await?;
                Ok(Target::Duckdb)
            }
        }
    }

    pub async fn snapshots(&self, name: &TableName) -> Result<Vec<SnapshotInfo>> {
        let table = match self.locate(name).await? {
            Located::Iceberg(table) => table,
            Located::Duckdb => {
                return Err(Error::invalid(format!(
                    "{name} is a DuckDB table: only Iceberg tables have snapshots"
                )));
            }
        };
        let metadata = table.metadata();
        let current = metadata.current_snapshot_id();
        let mut snapshots: Vec<_> = metadata
            .snapshots()
            .map(|s| SnapshotInfo {
                snapshot_id: s.snapshot_id(),
                sequence_number: s.sequence_number(),
                parent_id: s.parent_snapshot_id(),
                timestamp: s.timestamp().map(|t| t.to_rfc3339()).unwrap_or_default(),
                timestamp_ms: s.timestamp_ms(),
                operation: s.summary().operation.as_str().to_string(),
                summary: s.summary().additional_properties.clone(),
                current: current == Some(s.snapshot_id()),
            })
            .collect();
        snapshots.sort_by_key(|s| s.sequence_number);
        Ok(snapshots)
    }
}

/// Where `locate` found a table.
pub enum Located {
    Iceberg(Box<LoadedTable>),
    Duckdb,
}
