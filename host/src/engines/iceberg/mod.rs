//! Iceberg tables in a SQL catalog (SQLite by default), written by floe.
//!
//! iceberg-rust provides the catalog, the Parquet data-file writers and the
//! manifest/metadata formats; floe produces the snapshots itself (see `commit`) so
//! that append and atomic overwrite go through one compare-and-swap path.

mod cache;
mod catalog_db;
mod commit;
mod compact;
mod expire;
mod footers;
mod journal;
mod lanes;
mod orphans;
mod partition;
mod pins;
mod prune;
mod rewrite;
mod scan;
pub mod schema;
#[cfg(test)]
mod tests;
mod turns;
mod write;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use iceberg::io::FileIO;
use iceberg::spec::{
    DataContentType, DataFile, ManifestContentType, ManifestFile, SnapshotRef, TableMetadata,
};
use iceberg::table::Table;
use iceberg::{Catalog, CatalogBuilder, NamespaceIdent, TableIdent};
use iceberg_catalog_sql::{SqlCatalog, SqlCatalogBuilder};
use sqlx::AnyPool;

pub use cache::{PlanCache, SnapshotFiles};
pub use catalog_db::CatalogDb;
pub use commit::Committed;
pub use compact::{COMPACT_AT, COMPACT_ON_DEMAND_AT};
pub use expire::{Expired, Retention};
pub use footers::Footers;
pub use lanes::parquet_properties;
pub use orphans::Orphans;
pub use pins::{PinGuard, Pins};
pub use prune::{Condition, Op, conditions, decidable};
pub use rewrite::{RewriteBase, Staged, may_match};
pub use scan::{DirectRead, Predicate, scan};
pub use write::{RowsWrite, TableWrite, WriteOp};

use crate::command::TableName;
use crate::error::{Context, Error, Result};
use crate::storage::Storage;
pub use crate::storage::local_path;

/// The catalog name floe uses in the SQL catalog's tables. pyiceberg opens the same
/// catalog as `SqlCatalog("floe", uri="sqlite:///<warehouse>/catalog.db", …)`.
pub const CATALOG_NAME: &str = "floe";

pub struct IcebergEngine {
    catalog: SqlCatalog,
    /// A direct connection to the catalog database for the commit's compare-and-swap.
    pool: AnyPool,
    db: CatalogDb,
    file_io: FileIO,
    /// Where table files are: new tables go to `<tables>/<namespace>/<name>-<id>`.
    storage: Storage,
    /// One lock per table: this process's commits to a table take turns (see `commit`).
    commit_turns: std::sync::Mutex<HashMap<TableName, Arc<tokio::sync::Mutex<()>>>>,
    /// With a PostgreSQL catalog, connections for the turns hosts take (see `turns`).
    host_turns: Option<AnyPool>,
    cache: PlanCache,
    /// Snapshots this host's reads are using: expiry keeps them.
    pub pins: Pins,
    journal: journal::Journal,
}

/// A table as the catalog currently knows it.
pub struct LoadedTable {
    pub table: Table,
}

impl LoadedTable {
    pub fn metadata(&self) -> &TableMetadata {
        self.table.metadata()
    }

    /// The current partition spec as `partition_by` items (empty: unpartitioned).
    pub fn partition_by(&self) -> Vec<String> {
        let metadata = self.metadata();
        partition::describe(metadata.default_partition_spec(), metadata.current_schema())
    }

    pub fn metadata_location(&self) -> &str {
        self.table.metadata_location().unwrap_or_default()
    }

    /// The snapshot a read asks for: an id, the last one at a time, or the current one.
    pub fn snapshot(
        &self,
        id: Option<i64>,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Option<SnapshotRef>> {
        let metadata = self.metadata();
        match (id, as_of) {
            (Some(id), _) => metadata
                .snapshot_by_id(id)
                .cloned()
                .map(Some)
                .ok_or_else(|| {
                    Error::not_found(format!(
                        "snapshot {id} not found in {}{}",
                        self.table.identifier(),
                        self.expired_note()
                    ))
                }),
            (None, Some(at)) => {
                let at_ms = at.timestamp_millis();
                // The snapshot log is the history of the main branch, oldest first.
                let entry = metadata
                    .history()
                    .iter()
                    .rev()
                    .find(|e| e.timestamp_ms <= at_ms);
                match entry {
                    Some(entry) => Ok(metadata.snapshot_by_id(entry.snapshot_id).cloned()),
                    None => Err(Error::not_found(format!(
                        "{} has no snapshot as of {at}{}",
                        self.table.identifier(),
                        self.expired_note()
                    ))),
                }
            }
            (None, None) => Ok(metadata.current_snapshot().cloned()),
        }
    }

    /// When older snapshots were expired (the oldest one kept has a parent the
    /// table no longer has), what a time-travel error adds.
    fn expired_note(&self) -> String {
        let metadata = self.metadata();
        let Some(oldest) = metadata.snapshots().min_by_key(|s| s.timestamp_ms()) else {
            return String::new();
        };
        match oldest.parent_snapshot_id() {
            Some(parent) if metadata.snapshot_by_id(parent).is_none() => {
                let since = DateTime::<Utc>::from_timestamp_millis(oldest.timestamp_ms())
                    .map_or_else(String::new, |t| t.to_rfc3339());
                format!(": older snapshots were expired; the oldest kept is from {since}")
            }
            _ => String::new(),
        }
    }

    /// A snapshot's live data files, read from its manifests, and whether it has
    /// delete files too (written by other engines).
    pub async fn live_files(&self, snapshot: &SnapshotRef) -> Result<LiveFiles> {
        let metadata = self.metadata();
        let schema_of = |id: i64| metadata.snapshot_by_id(id).and_then(|s| s.schema_id());
        let manifests = self.manifests(snapshot).await?;
        let mut live = LiveFiles {
            files: Vec::new(),
            deletes: manifests
                .iter()
                .any(|m| m.content != ManifestContentType::Data),
        };
        for manifest in &manifests {
            let entries = manifest
                .load_manifest(self.table.file_io())
                .await
                .context("reading a manifest")?;
            for entry in entries.entries().iter().filter(|e| e.is_alive()) {
                let file = entry.data_file();
                if file.content_type() != DataContentType::Data {
                    live.deletes = true;
                    continue;
                }
                live.files.push(LiveFile {
                    file: file.clone(),
                    schema_id: entry.snapshot_id().and_then(schema_of),
                    spec_id: manifest.partition_spec_id,
                });
            }
        }
        Ok(live)
    }

    /// The manifests a snapshot's manifest list names.
    pub async fn manifests(&self, snapshot: &SnapshotRef) -> Result<Vec<ManifestFile>> {
        Ok(self
            .table
            .manifest_list_reader(snapshot)
            .load()
            .await
            .context("reading a manifest list")?
            .consume_entries()
            .into_iter()
            .collect())
    }
}

/// What `LoadedTable::live_files` finds.
pub struct LiveFiles {
    pub files: Vec<LiveFile>,
    pub deletes: bool,
}

/// A live data file, with the schema of the snapshot that added it and the
/// partition spec it was written with.
pub struct LiveFile {
    pub file: DataFile,
    pub schema_id: Option<i32>,
    pub spec_id: i32,
}

/// The snapshot whose summary has `property` = `value` (a write's id, an upload's
/// idempotency key), among those the table keeps.
pub(super) fn snapshot_carrying<'m>(
    metadata: &'m TableMetadata,
    property: &str,
    value: &str,
) -> Option<&'m SnapshotRef> {
    metadata.snapshots().find(|snapshot| {
        snapshot
            .summary()
            .additional_properties
            .get(property)
            .map(String::as_str)
            == Some(value)
    })
}

/// A failed catalog statement: Unavailable when the database cannot be reached
/// (the request may be retried), Internal otherwise.
pub(super) fn catalog_error(doing: &str, err: sqlx::Error) -> Error {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            Error::Unavailable(format!(
                "{doing}: the catalog database is unreachable: {err}"
            ))
        }
        err => Error::internal(format!("{doing}: {err}")),
    }
}

fn ident(name: &TableName) -> Result<TableIdent> {
    TableIdent::from_strs([name.namespace.as_str(), name.name.as_str()]).context("table name")
}

impl IcebergEngine {
    /// The catalog in `db`, tables in `storage`; this host's records of writes in
    /// progress under `journal`.
    pub async fn open(
        db: CatalogDb,
        storage: Storage,
        journal: &Path,
        cache: PlanCache,
    ) -> Result<Self> {
        storage.check().await?;
        // floe's own pool first: an unreachable database is reported as such.
        let pool = db.pool().await?;
        let host_turns = match db.is_shared() {
            true => Some(db.pool_of(turns::CONNECTIONS).await?),
            false => None,
        };
        let (factory, mut props) = storage.iceberg_io();
        props.extend([
            ("uri".to_string(), db.uri()),
            ("warehouse".to_string(), storage.root().to_string()),
            ("sql_bind_style".to_string(), db.bind_style().to_string()),
        ]);
        let catalog = SqlCatalogBuilder::default()
            .with_storage_factory(factory)
            .load(CATALOG_NAME, props)
            .await
            .with_context(|| format!("opening the SQL catalog {}", db.describe()))?;
        Ok(Self {
            catalog,
            pool,
            db,
            file_io: storage.file_io(),
            storage,
            commit_turns: Default::default(),
            host_turns,
            cache,
            pins: Pins::default(),
            journal: journal::Journal::new(journal),
        })
    }

    /// Where the table files are.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The table, or `None` if the catalog has no such table. Current as of this
    /// call: the catalog's metadata location is looked up every time, and the
    /// metadata parsed again only when it has moved.
    pub async fn load(&self, name: &TableName) -> Result<Option<LoadedTable>> {
        if self.cache.enabled() {
            let Some(location) = self.location(name).await? else {
                self.cache.forget(name);
                return Ok(None);
            };
            if let Some(table) = self.cache.table(name, &location) {
                return Ok(Some(LoadedTable { table }));
            }
        }
        match self.catalog.load_table(&ident(name)?).await {
            Ok(table) => {
                self.cache.put_table(name, &table);
                Ok(Some(LoadedTable { table }))
            }
            Err(err) if err.kind() == iceberg::ErrorKind::TableNotFound => Ok(None),
            Err(err) => Err(err).with_context(|| format!("loading {name}")),
        }
    }

    /// A snapshot's live data files, from the plan cache when it has them.
    pub async fn snapshot_files(
        &self,
        name: &TableName,
        table: &LoadedTable,
        snapshot: &SnapshotRef,
    ) -> Result<Arc<SnapshotFiles>> {
        let location = table.metadata_location();
        let id = snapshot.snapshot_id();
        if let Some(files) = self.cache.files(name, location, id) {
            return Ok(files);
        }
        let files = Arc::new(SnapshotFiles::load(table, snapshot).await?);
        self.cache.put_files(name, location, id, files.clone());
        Ok(files)
    }

    /// Where the catalog lives.
    pub fn catalog_db(&self) -> &CatalogDb {
        &self.db
    }

    /// The pool floe's own catalog statements use (a clone shares its connections).
    pub fn catalog_pool(&self) -> AnyPool {
        self.pool.clone()
    }

    pub fn caching(&self) -> bool {
        self.cache.enabled()
    }

    /// The table's current metadata location in the catalog, if it is there.
    async fn location(&self, name: &TableName) -> Result<Option<String>> {
        let text = self.db.sql(
            "SELECT metadata_location FROM iceberg_tables \
             WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? \
             AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL)",
        );
        let row: Option<(Option<String>,)> = sqlx::query_as(&text)
            .bind(CATALOG_NAME)
            .bind(&name.namespace)
            .bind(&name.name)
            .fetch_optional(&self.pool)
            .await
            .map_err(|err| catalog_error(&format!("looking up {name} in the catalog"), err))?;
        Ok(row.and_then(|(location,)| location))
    }

    /// Every table with its current metadata location, straight from the catalog.
    pub async fn list(&self) -> Result<Vec<(TableName, String)>> {
        let text = self.db.sql(
            "SELECT table_namespace, table_name, metadata_location FROM iceberg_tables \
             WHERE catalog_name = ? AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL) \
             ORDER BY table_namespace, table_name",
        );
        let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(&text)
            .bind(CATALOG_NAME)
            .fetch_all(&self.pool)
            .await
            .map_err(|err| catalog_error("listing the catalog", err))?;
        Ok(rows
            .into_iter()
            .filter_map(|(ns, name, location)| {
                // Tables other engines put in nested namespaces are not addressable here.
                let name = TableName::new(&ns, &name).ok()?;
                Some((name, location?))
            })
            .collect())
    }

    /// Remove a table from the catalog and delete its files.
    pub async fn drop_table(&self, name: &TableName) -> Result<()> {
        let loaded = self.load(name).await?.ok_or_else(|| name.not_found())?;
        self.catalog
            .drop_table(&ident(name)?)
            .await
            .with_context(|| format!("dropping {name}"))?;
        let location = loaded.metadata().location();
        // Only delete directories floe placed under the warehouse.
        if self.storage.holds(location)
            && let Err(err) = self.storage.delete_all(location).await
        {
            tracing::warn!(%name, %location, %err, "table dropped but its files remain");
        }
        Ok(())
    }

    async fn ensure_namespace(&self, namespace: &str) -> Result<()> {
        let ns = NamespaceIdent::new(namespace.to_string());
        if self
            .catalog
            .namespace_exists(&ns)
            .await
            .context("looking up a namespace")?
        {
            return Ok(());
        }
        match self.catalog.create_namespace(&ns, HashMap::new()).await {
            Ok(_) => Ok(()),
            Err(err) if err.kind() == iceberg::ErrorKind::NamespaceAlreadyExists => Ok(()),
            // A concurrent upload created it first (the SQL catalog reports that as
            // a failed UNIQUE constraint, not as "already exists").
            Err(_) if self.catalog.namespace_exists(&ns).await.unwrap_or(false) => Ok(()),
            Err(err) => Err(err).with_context(|| format!("creating namespace {namespace}")),
        }
    }

    fn new_table_location(&self, name: &TableName) -> String {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        format!(
            "{}/{}/{}-{suffix}",
            self.storage.root(),
            name.namespace,
            name.name
        )
    }
}
