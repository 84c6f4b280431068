//! The storage side, behind one door: [`Lakehouse`]. Iceberg tables (written by
//! iceberg-rust into a SQL catalog, read by DuckDB) and DuckDB-native tables; a read
//! is planned here (`plan`), a write goes through one handle (`write`) whatever the
//! target, and compaction after commits is the Iceberg engine's business.

mod conform;
pub mod duckdb;
pub mod iceberg;
mod maintain;
mod plan;
mod rewrite;
mod write;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ::iceberg::arrow::schema_to_arrow_schema;
use ::iceberg::spec::SnapshotRef;
use arrow::datatypes::SchemaRef;

use self::duckdb::sql::{Query, Source};
use self::duckdb::{DuckEngine, DuckHome, IcebergReader, QueryStream};
use self::iceberg::{
    COMPACT_AT, COMPACT_ON_DEMAND_AT, CatalogDb, Committed, Condition, Footers, IcebergEngine,
    LoadedTable, PlanCache, Predicate, decidable, local_path,
};
use crate::command::{Part, TableName, Target};
use crate::config::{DuckSettings, MaintenanceSettings};
use crate::error::{Context, Error, Result};
use crate::metrics::metrics;
use crate::storage::Storage;
use floe_wire::expr::ast::Expr;

pub use self::duckdb::{Described, References};
pub use self::iceberg::{Expired, Orphans};
pub use maintain::{open_tables, retention};
pub use plan::ReadPlan;
use plan::{PLAN_TTL, Recent};
pub use write::{WriteHandle, WriteOptions, Written};

/// A read's result, batch by batch.
pub type RowStream = futures::stream::BoxStream<'static, Result<arrow::array::RecordBatch>>;

pub struct Lakehouse {
    iceberg: IcebergEngine,
    duck: Arc<DuckEngine>,
    /// Where DuckDB keeps its state: the warehouse's file, or memory when the
    /// warehouse is shared with other hosts (DuckDB-native tables are refused then).
    duck_home: DuckHome,
    /// What each published DuckDB view currently reads.
    views: tokio::sync::Mutex<HashMap<TableName, View>>,
    /// Tables a background compaction is working on.
    compacting: std::sync::Mutex<HashSet<TableName>>,
    maintenance: MaintenanceSettings,
    /// Tables a background expiry is working on.
    maintaining: std::sync::Mutex<HashSet<TableName>>,
    /// When this process last looked for each table's orphan files.
    orphans_checked: std::sync::Mutex<HashMap<TableName, std::time::Instant>>,
    /// Result schemas of queries over Iceberg snapshots.
    schemas: Recent<SchemaRef>,
    /// Plans of table reads of Iceberg snapshots, by pinned ticket.
    plans: Recent<ReadPlan>,
    /// The footers of files the host scans itself; None: DuckDB runs every read.
    footers: Option<Arc<Footers>>,
}

/// A DuckDB view over an Iceberg table: the metadata location and snapshot it reads.
#[derive(Default)]
struct View {
    location: String,
    snapshot: Option<i64>,
}

/// Where DuckDB reads an Iceberg snapshot: `whole` has all its rows, `read` those
/// of the files a read's filter can match.
struct IcebergSource {
    read: Source,
    whole: Source,
    /// The files `read` covers, when it is `read_parquet` over a list of them: what
    /// a split into endpoints would deal out.
    files: Option<FileSpan>,
    /// `read`'s files and the filter as conditions, when the filter is wholly such
    /// (or absent): what the host needs to scan them itself.
    direct: Option<(Vec<String>, Vec<Predicate>)>,
}

/// The data files a read covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSpan {
    pub files: usize,
    pub bytes: u64,
}

impl IcebergSource {
    fn same(source: Source) -> Self {
        Self {
            read: source.clone(),
            whole: source,
            files: None,
            direct: None,
        }
    }
}

/// A table as `list_tables` reports it.
#[derive(Debug)]
pub struct TableInfo {
    pub name: TableName,
    pub target: Target,
    pub schema: SchemaRef,
    pub rows: Option<u64>,
    pub snapshot_id: Option<i64>,
    /// How an Iceberg table is partitioned, as `partition_by` items.
    pub partition_by: Vec<String>,
}

/// One entry of `snapshots`.
#[derive(Debug, serde::Serialize)]
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

/// A compaction's replace snapshot.
#[derive(Debug)]
pub struct Compacted {
    pub snapshot_id: i64,
    /// The table's data files after it.
    pub data_files: u64,
}

/// Conditions as the direct read takes them: by column name.
fn predicates(
    conditions: Vec<Condition>,
    schema: &::iceberg::spec::Schema,
) -> Option<Vec<Predicate>> {
    conditions
        .into_iter()
        .map(|c| {
            Some(Predicate {
                column: schema.name_by_field_id(c.field())?.to_string(),
                op: c.op(),
                value: c.value().clone(),
            })
        })
        .collect()
}

/// Where `locate` found a table.
enum Located {
    Iceberg(Box<LoadedTable>),
    Duckdb,
}

impl Lakehouse {
    /// The warehouse `layout` describes.
    pub async fn open(
        layout: &Layout,
        duck: &DuckSettings,
        maintenance: &MaintenanceSettings,
    ) -> Result<Self> {
        let home = &layout.home;
        std::fs::create_dir_all(home)
            .with_context(|| format!("creating the warehouse {}", home.display()))?;
        let cache = PlanCache::new(duck.plan_cache_tables, duck.plan_cache_mib << 20);
        let footers = (duck.direct_reads && layout.storage.is_local())
            .then(|| Arc::new(Footers::new(duck.footer_cache_mib << 20)));
        let capacity = if cache.enabled() { 4096 } else { 0 };
        let (schemas, plans) = (
            Recent::new(capacity, None),
            Recent::new(capacity, Some(PLAN_TTL)),
        );
        // A catalog other hosts can share, or tables on object storage: what DuckDB
        // would keep in a file of its own could not be shared.
        let duck_home = match layout.catalog.is_shared() || !layout.storage.is_local() {
            true => DuckHome::Memory,
            false => DuckHome::Warehouse(home.clone()),
        };
        let iceberg = IcebergEngine::open(
            layout.catalog.clone(),
            layout.storage.clone(),
            &layout.journal(),
            cache,
        )
        .await?;
        let duck = DuckEngine::open(&duck_home, &layout.storage, duck).await?;
        // Views left by an earlier run are re-pointed, or dropped if their table is gone.
        let known = duck
            .list_views()
            .await?
            .into_iter()
            .map(|name| (name, View::default()))
            .collect();
        let lakehouse = Self {
            iceberg,
            duck,
            duck_home,
            views: tokio::sync::Mutex::new(known),
            compacting: Default::default(),
            maintenance: maintenance.clone(),
            maintaining: Default::default(),
            orphans_checked: Default::default(),
            schemas,
            plans,
            footers,
        };
        lakehouse.sync_views().await?;
        Ok(lakehouse)
    }

    /// Delete what writes cut short by a crash left behind: call once, at start,
    /// before serving. The number of writes recovered.
    pub async fn recover_writes(&self) -> Result<usize> {
        self.iceberg.recover_writes().await
    }

    /// How DuckDB reads Iceberg tables, and why, when it is not the extension.
    pub fn iceberg_reader(&self) -> (IcebergReader, Option<&str>) {
        (self.duck.reader, self.duck.reader_note.as_deref())
    }

    /// Where the warehouse's state is kept, by what it is.
    pub fn files(&self) -> Vec<(&'static str, String)> {
        let database = match self.duck_home.database_path() {
            Some(path) => path.display().to_string(),
            None => "in memory (the warehouse is shared: no DuckDB-native tables)".into(),
        };
        vec![
            ("tables", self.iceberg.storage().root().to_string()),
            ("catalog", self.iceberg.catalog_db().describe()),
            ("duckdb", database),
            (
                "duckdb spill",
                self.duck_home.spill_path().display().to_string(),
            ),
        ]
    }

    /// The catalog database, which hosts sharing the warehouse register in.
    pub fn catalog_db(&self) -> &CatalogDb {
        self.iceberg.catalog_db()
    }

    /// The pool of connections to it the engine holds.
    pub fn catalog_pool(&self) -> sqlx::AnyPool {
        self.iceberg.catalog_pool()
    }

    /// Whether other hosts may serve this warehouse too (its catalog is shared, or
    /// its tables are on object storage).
    pub fn shared(&self) -> bool {
        self.duck_home == DuckHome::Memory
    }

    /// The result schema of a planned query, without running it.
    pub async fn schema_of(&self, query: &Query) -> Result<SchemaRef> {
        self.duck.schema_of(query).await
    }

    /// What a client's SQL reads (its internal names refused), from DuckDB's parser.
    pub async fn sql_references(&self, sql: &str) -> Result<References> {
        self.duck.references(sql).await
    }

    /// A client's SQL prepared but not run (its views current first).
    pub async fn describe_sql(&self, sql: &str) -> Result<Described> {
        self.sync_views().await?;
        self.duck.describe(sql).await
    }

    pub async fn table_exists(&self, name: &TableName) -> Result<bool> {
        match self.locate(name).await {
            Ok(_) => Ok(true),
            Err(Error::NotFound(_)) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Run a planned query, streaming its result.
    pub async fn run(&self, query: Query) -> Result<QueryStream> {
        self.duck.query(query).await
    }

    /// Run a planned read, streaming its result: the host's own scan of the
    /// snapshot's files where it returns exactly DuckDB's result and decodes little
    /// (see `iceberg::scan`), DuckDB's query otherwise.
    pub async fn run_read(&self, plan: &ReadPlan) -> Result<(SchemaRef, RowStream)> {
        if let (Some(direct), Some(footers)) = (&plan.direct, &self.footers) {
            let schema = match &direct.schema {
                Some(schema) => schema.clone(),
                None => self.plan_schema(plan).await?,
            };
            let footers = footers.clone();
            if let Some(stream) = iceberg::scan(direct.clone(), schema.clone(), footers).await? {
                tracing::debug!(files = direct.files.len(), "read served directly");
                return Ok((schema, stream));
            }
        }
        let query = self.duck.query(plan.query.clone()).await?;
        Ok((query.schema.clone(), query.into_stream()))
    }

    /// The FROM items that read an Iceberg table at `snapshot` (None: no data yet):
    /// `read_parquet` over the snapshot's files (cached per snapshot) when that is
    /// exact, DuckDB's `iceberg_scan` otherwise (delete files, files of older schemas)
    /// and whenever the plan cache is off. Over `read_parquet`, a filter's simple
    /// conditions leave out the files whose column bounds rule them out.
    async fn iceberg_source(
        &self,
        name: &TableName,
        table: &LoadedTable,
        snapshot: Option<&SnapshotRef>,
        filter: Option<&Expr>,
        part: Option<Part>,
    ) -> Result<IcebergSource> {
        let metadata = table.metadata();
        let Some(snapshot) = snapshot else {
            let schema =
                schema_to_arrow_schema(metadata.current_schema()).context("table schema")?;
            return Ok(IcebergSource::same(Source::empty(&schema)?));
        };
        // A part of a split read is always a group of files, whichever reader this
        // host prefers: the host that split it dealt the files.
        let planned = match self.duck.reader {
            IcebergReader::Extension if !self.iceberg.caching() && part.is_none() => None,
            _ => Some(self.iceberg.snapshot_files(name, table, snapshot).await?),
        };
        let parquet = match (self.duck.reader, &planned) {
            (IcebergReader::ReadParquet, Some(files)) if files.deletes => {
                return Err(Error::invalid(format!(
                    "{name} has delete files, which the read_parquet path cannot apply; \
                     install DuckDB's iceberg extension"
                )));
            }
            (IcebergReader::ReadParquet, Some(files)) => files,
            (_, Some(files)) if files.plain_parquet => files,
            _ if part.is_some() => {
                return Err(Error::invalid(format!(
                    "this read of {name} cannot be split into parts: its snapshot has delete \
                     files or files of other schemas"
                )));
            }
            _ => {
                let location = local_path(table.metadata_location());
                let current = metadata.current_snapshot_id() == Some(snapshot.snapshot_id());
                return Ok(IcebergSource::same(Source::iceberg_scan(
                    location,
                    (!current).then_some(snapshot.snapshot_id()),
                )));
            }
        };
        let schema = snapshot.schema(metadata).context("snapshot schema")?;
        if parquet.paths.is_empty() {
            let schema = schema_to_arrow_schema(&schema).context("table schema")?;
            return Ok(IcebergSource::same(Source::empty(&schema)?));
        }
        let whole = Source::read_parquet(&parquet.paths);
        // The filter's conditions prune files; when they are all of it, the host can
        // also read the files itself (a direct read).
        let (conditions, all_decidable) = match filter.map(|f| decidable(f, &schema)) {
            Some(found) => (found.conditions, found.whole),
            None => (Vec::new(), true),
        };
        let mut kept = parquet.matching(&conditions);
        metrics().scan_files_skipped.fetch_add(
            (parquet.paths.len() - kept.len()) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        if let Some(part) = part {
            kept = parquet.group(&kept, part.index as usize, part.of as usize);
            if kept.is_empty() {
                let schema = schema_to_arrow_schema(&schema).context("table schema")?;
                return Ok(IcebergSource {
                    read: Source::empty(&schema)?,
                    whole,
                    files: None,
                    direct: None,
                });
            }
        }
        let paths = parquet.paths_of(&kept);
        let direct = (all_decidable && part.is_none())
            .then(|| predicates(conditions, &schema))
            .flatten()
            .map(|predicates| (paths.clone(), predicates));
        Ok(IcebergSource {
            read: Source::read_parquet(&paths),
            whole,
            files: Some(FileSpan {
                files: kept.len(),
                bytes: parquet.bytes_of(&kept),
            }),
            direct,
        })
    }

    /// Rewrite the small data files of an Iceberg table as few large ones, now;
    /// None when there was nothing to compact.
    pub async fn compact(&self, name: &TableName) -> Result<Option<Compacted>> {
        if let Located::Duckdb = self.locate(name).await? {
            return Err(Error::invalid(format!(
                "{name} is a DuckDB table: only Iceberg tables are compacted"
            )));
        }
        let committed = self.iceberg.compact(name, COMPACT_ON_DEMAND_AT).await?;
        Ok(committed.map(|c| Compacted {
            snapshot_id: c.snapshot_id,
            data_files: c.table_data_files,
        }))
    }

    /// After a commit to `name` that added a small file: once the table could have
    /// `COMPACT_AT` small files, compact them on a background task (one per table).
    /// Big appends never trigger it, so big tables are not re-read after each one.
    fn compact_when_due(self: &Arc<Self>, name: &TableName, committed: &Committed) {
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
    /// table, re-pointed whenever the catalog's metadata location has moved on. The
    /// snapshots the views read, for a SQL read to pin.
    async fn sync_views(&self) -> Result<Vec<(TableName, i64)>> {
        let mut views = self.views.lock().await;
        let tables = self.iceberg.list().await?;
        let current: HashMap<_, _> = tables.into_iter().collect();
        for (name, location) in &current {
            if views.get(name).is_some_and(|v| &v.location == location) {
                continue;
            }
            let Some(table) = self.iceberg.load(name).await? else {
                continue;
            };
            let snapshot = table.metadata().current_snapshot();
            let source = self
                .iceberg_source(name, &table, snapshot, None, None)
                .await?
                .whole;
            match self.duck.replace_view(name, source).await {
                Ok(()) => {
                    let view = View {
                        location: location.clone(),
                        snapshot: snapshot.map(|s| s.snapshot_id()),
                    };
                    views.insert(name.clone(), view);
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
            self.duck.drop_view(&name).await?;
            views.remove(&name);
        }
        Ok(views
            .iter()
            .filter_map(|(name, view)| Some((name.clone(), view.snapshot?)))
            .collect())
    }

    /// Where a table lives, or NotFound naming it.
    async fn locate(&self, name: &TableName) -> Result<Located> {
        if let Some(table) = self.iceberg.load(name).await? {
            return Ok(Located::Iceberg(Box::new(table)));
        }
        if self.duck.table_exists(name).await? {
            return Ok(Located::Duckdb);
        }
        Err(name.not_found())
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
                partition_by: table.partition_by(),
                target: Target::Iceberg,
                name,
            });
        }
        for (name, schema, rows) in self.duck.list_tables().await? {
            out.push(TableInfo {
                name,
                target: Target::Duckdb,
                schema,
                rows: Some(rows),
                snapshot_id: None,
                partition_by: Vec::new(),
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
                self.duck.drop_table(name).await?;
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

/// Where a warehouse's parts are.
#[derive(Clone)]
pub struct Layout {
    /// Table files: `<warehouse>/iceberg`, on local disk or object storage.
    pub storage: Storage,
    pub catalog: CatalogDb,
    /// A local directory of the host's: the warehouse itself when it is local.
    /// Writes in progress are recorded under `<home>/iceberg/.writes`.
    pub home: PathBuf,
}

impl Layout {
    /// The warehouse at `warehouse` (its root: tables go in `iceberg/`), its catalog
    /// at `catalog` (a postgres:// URI or a SQLite file; default `catalog.db` in
    /// `home`, which must then be the warehouse itself).
    pub fn new(warehouse: &Storage, catalog: Option<&str>, home: &Path) -> Result<Self> {
        Ok(Self {
            storage: warehouse.child(TABLES),
            catalog: CatalogDb::new(catalog, &home.join("catalog.db"))?,
            home: home.to_path_buf(),
        })
    }

    fn journal(&self) -> PathBuf {
        self.home.join(TABLES)
    }
}

/// The directory of Iceberg tables in a warehouse.
const TABLES: &str = "iceberg";
