//! The embedded DuckDB: the read engine for every table, and the store of
//! DuckDB-native (`target: "duckdb"`) tables.
//!
//! The database is configured once at startup and then locked: queries may read
//! files only inside the warehouse, and no query can change that. DuckDB calls
//! block; this engine's methods are async and make the hop to a blocking thread
//! themselves. Its SQL is built in `sql`, its errors classified in `error`.

mod audit;
mod database;
mod error;
mod read;
pub mod sql;
mod write;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use duckdb::Connection;
use serde::Serialize;

use self::database::Database;
use self::sql::{Origin, Query, Source};
use crate::command::TableName;
use crate::config::{DuckSettings, ReaderChoice};
use crate::error::{Context, Error, Result};
use crate::storage::Storage;

pub use audit::References;
pub use database::Described;
pub use database::library;
pub use read::QueryStream;
pub use write::DuckWrite;

/// How DuckDB reads Iceberg tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IcebergReader {
    /// DuckDB's iceberg extension (`iceberg_scan`).
    Extension,
    /// `read_parquet` over the snapshot's data files, planned by iceberg-rust.
    ReadParquet,
}

impl IcebergReader {
    pub fn describe(self) -> &'static str {
        match self {
            IcebergReader::Extension => "its iceberg extension (iceberg_scan)",
            IcebergReader::ReadParquet => "read_parquet over files planned by iceberg-rust",
        }
    }
}

/// Connections kept for the next query once theirs has run to its end: each
/// keeps the host's queries it prepared, so a repeated read skips DuckDB's parse,
/// bind and optimize (a quarter of a small read's time in DuckDB).
const IDLE_CONNECTIONS: usize = 8;
/// Prepared statements kept per idle connection.
const PREPARED_PER_CONNECTION: usize = 32;

pub struct DuckEngine {
    /// One database instance; a request has a connection of its own on it at a time.
    db: Database,
    idle: Mutex<Vec<Connection>>,
    pub reader: IcebergReader,
    /// Why the extension is not in use, when it is not.
    pub reader_note: Option<String>,
    /// Whether DuckDB's json extension is loaded: the check of what a client's SQL
    /// names reads DuckDB's parse tree through it.
    json: bool,
}

/// Where a host's DuckDB keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DuckHome {
    /// The warehouse's `duckdb.db`, which holds DuckDB-native tables: DuckDB locks it,
    /// so one host serves the warehouse.
    Warehouse(PathBuf),
    /// In memory, rebuilt from the catalog at start: the host's own, beside other
    /// hosts sharing the warehouse.
    Memory,
}

impl DuckHome {
    /// The database file, if DuckDB keeps one.
    pub fn database_path(&self) -> Option<PathBuf> {
        match self {
            Self::Warehouse(dir) => Some(dir.join("duckdb.db")),
            Self::Memory => None,
        }
    }

    /// Where DuckDB spills what does not fit its memory limit: a directory of this
    /// host's own when the warehouse is shared.
    pub fn spill_path(&self) -> PathBuf {
        match self {
            Self::Warehouse(dir) => dir.join("duckdb.tmp"),
            Self::Memory => {
                std::env::temp_dir().join(format!("floe-duckdb-{}.tmp", std::process::id()))
            }
        }
    }
}

impl DuckEngine {
    /// Open (or create) the warehouse's database, load the iceberg extension if
    /// wanted, and confine file access to the warehouse. These settings are global:
    /// they hold for every connection, and `lock_configuration` keeps any query from
    /// changing them.
    pub async fn open(
        home: &DuckHome,
        storage: &Storage,
        settings: &DuckSettings,
    ) -> Result<Arc<Self>> {
        let (home, storage, settings) = (home.clone(), storage.clone(), settings.clone());
        crate::blocking::run(move || Self::open_now(&home, &storage, &settings).map(Arc::new)).await
    }

    fn open_now(home: &DuckHome, storage: &Storage, settings: &DuckSettings) -> Result<Self> {
        let db = Database::open(home.database_path().as_deref())?;
        let conn = db.connect()?;
        conn.execute_batch(&sql::extension_settings(settings.extension_dir.as_deref()))
            .context("configuring DuckDB")?;
        let choice = settings.iceberg_reader;
        let (reader, reader_note) = match choice {
            ReaderChoice::ReadParquet => (
                IcebergReader::ReadParquet,
                Some("chosen by configuration".to_string()),
            ),
            ReaderChoice::Extension | ReaderChoice::Auto => {
                match conn.execute_batch(sql::LOAD_ICEBERG) {
                    Ok(()) => (IcebergReader::Extension, None),
                    Err(err) if choice == ReaderChoice::Auto => (
                        IcebergReader::ReadParquet,
                        Some(format!("iceberg extension not loadable: {err}")),
                    ),
                    Err(err) => return Err(err).context("loading DuckDB's iceberg extension"),
                }
            }
        };
        // Absent without ICU (the bundled build), where results are UTC already.
        let _ = conn.execute_batch(sql::UTC);
        let json = conn.execute_batch(sql::LOAD_JSON).is_ok();
        if !json {
            tracing::warn!("DuckDB's json extension is not installed: SQL queries will be refused");
        }
        conn.execute_batch(&sql::resources(
            settings.duckdb_memory_limit.bytes(),
            settings.threads(),
            &home.spill_path(),
        ))
        .context("setting DuckDB's memory limit and threads")?;
        if let Some((access, bucket)) = storage.s3_access() {
            conn.execute_batch(&sql::s3_secret(access, bucket))
                .context(
                    "reaching the object store from DuckDB (is duckdb-extension-httpfs installed?)",
                )?;
        }
        conn.execute_batch(&sql::confine(&storage.allowed_directories()))
            .context("confining DuckDB to the warehouse")?;
        Ok(Self {
            db,
            idle: Mutex::new(Vec::with_capacity(IDLE_CONNECTIONS)),
            reader,
            reader_note,
            json,
        })
    }

    /// `f` on a blocking thread with this engine.
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&DuckEngine) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let engine = self.clone();
        crate::blocking::run(move || f(&engine)).await
    }

    /// A connection of its own for one request.
    fn connect(&self) -> Result<Connection> {
        self.db.connect()
    }

    /// A connection for one query: an idle one if there is one, else a new one.
    fn check_out(&self) -> Result<Connection> {
        if let Some(conn) = self.idle.lock().expect("idle connections").pop() {
            return Ok(conn);
        }
        let conn = self.connect()?;
        conn.set_prepared_statement_cache_capacity(PREPARED_PER_CONNECTION);
        Ok(conn)
    }

    /// Keep `conn` for the next query, unless enough are kept already. Only a
    /// connection whose query ran to its end comes back: one whose query failed,
    /// panicked or was abandoned is closed.
    fn check_in(&self, conn: Connection) {
        let mut idle = self.idle.lock().expect("idle connections");
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(conn);
        }
    }

    /// The result schema of `query`, from preparing it: nothing runs, no data is
    /// read. A query with parameters starts with its values and no rows
    /// (`LIMIT 0`), since their types can decide its schema (`SELECT ?`).
    pub async fn schema_of(self: &Arc<Self>, query: &Query) -> Result<SchemaRef> {
        let query = query.clone();
        self.blocking(move |engine| {
            let text = query.described();
            if let Some(schema) = engine.check(&text, query.origin(), query.params().len())? {
                return Ok(schema);
            }
            let conn = engine.connect()?;
            let mut stmt = conn
                .prepare(&format!("{text} LIMIT 0"))
                .map_err(error::query_error)?;
            let values = read::values(query.params());
            let stream = stmt
                .stream_arrow(duckdb::params_from_iter(values))
                .map_err(error::query_error)?;
            Ok(stream.get_schema())
        })
        .await
    }

    /// A client's SQL prepared but not run: its result schema (when it has no
    /// parameters) and its parameters. Checked as [`Self::check`] checks.
    pub async fn describe(self: &Arc<Self>, sql: &str) -> Result<Described> {
        let query = Query::client(sql, &[]);
        self.blocking(move |engine| engine.describe_now(query.text(), Origin::Client))
            .await
    }

    fn describe_now(&self, sql: &str, origin: Origin) -> Result<Described> {
        // A client's text is parsed before it is prepared: the parser names a
        // statement that is not a query, where preparing it fails on other grounds.
        if origin == Origin::Client {
            if !self.json {
                return Err(no_json());
            }
            audit::check_names(&self.connect()?, sql)?;
        }
        self.db.check_select(sql)
    }

    /// Refuse anything but one SELECT with a value for each of its parameters and,
    /// for a client's, one that names the engine's internals; the result schema
    /// when preparing tells it.
    fn check(&self, sql: &str, origin: Origin, values: usize) -> Result<Option<SchemaRef>> {
        let described = self.describe_now(sql, origin)?;
        let wanted = described.parameters.fields().len();
        if wanted != values {
            return Err(Error::invalid(format!(
                "the query has {wanted} parameter(s) (?, $1...) but {values} value(s) were given"
            )));
        }
        Ok(described.schema)
    }

    /// What a client's SQL reads; see [`audit::references`].
    pub async fn references(self: &Arc<Self>, sql: &str) -> Result<References> {
        if !self.json {
            return Err(no_json());
        }
        let sql = sql.to_string();
        self.blocking(move |engine| audit::references(&engine.connect()?, &sql))
            .await
    }

    /// Point the view `name` at an Iceberg table's data.
    pub async fn replace_view(self: &Arc<Self>, name: &TableName, source: Source) -> Result<()> {
        let what = format!("publishing {name} to DuckDB");
        self.execute(sql::replace_view(name, &source), what).await
    }

    pub async fn drop_view(self: &Arc<Self>, name: &TableName) -> Result<()> {
        self.execute(sql::drop_view(name), format!("removing the view {name}"))
            .await
    }

    /// The views in the database: floe's windows on Iceberg tables.
    pub async fn list_views(self: &Arc<Self>) -> Result<Vec<TableName>> {
        self.blocking(|engine| engine.names(sql::LIST_VIEWS)).await
    }

    /// The DuckDB-native tables with their schemas and row counts.
    pub async fn list_tables(self: &Arc<Self>) -> Result<Vec<(TableName, SchemaRef, u64)>> {
        self.blocking(|engine| {
            let conn = engine.connect()?;
            engine
                .names(sql::LIST_TABLES)?
                .into_iter()
                .map(|name| {
                    let count: i64 = conn
                        .query_row(&sql::count_rows(&name), [], |r| r.get(0))
                        .context("counting rows")?;
                    let schema = engine
                        .db
                        .check_select(Query::whole(&name).text())?
                        .schema
                        .ok_or_else(|| Error::internal("a table read has parameters"))?;
                    Ok((name, schema, count as u64))
                })
                .collect()
        })
        .await
    }

    pub async fn table_exists(self: &Arc<Self>, name: &TableName) -> Result<bool> {
        let name = name.clone();
        self.blocking(move |engine| {
            engine
                .connect()?
                .query_row(sql::TABLE_EXISTS, [&name.namespace, &name.name], |r| {
                    r.get(0)
                })
                .context("looking up a DuckDB table")
        })
        .await
    }

    pub async fn drop_table(self: &Arc<Self>, name: &TableName) -> Result<()> {
        self.execute(sql::drop_table(name), format!("dropping {name}"))
            .await
    }

    /// One of the engine's own statements, on a blocking thread.
    async fn execute(self: &Arc<Self>, statement: String, what: String) -> Result<()> {
        self.blocking(move |engine| engine.connect()?.execute_batch(&statement).context(what))
            .await
    }

    /// `ns.name` pairs from a catalog query (names floe cannot address are skipped).
    fn names(&self, query: &str) -> Result<Vec<TableName>> {
        let conn = self.connect()?;
        let mut stmt = conn.prepare(query).context("listing DuckDB objects")?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .context("listing DuckDB objects")?;
        let mut names = Vec::new();
        for row in rows {
            let (ns, name) = row.context("listing DuckDB objects")?;
            names.extend(TableName::new(&ns, &name).ok());
        }
        Ok(names)
    }
}

fn no_json() -> Error {
    Error::PermissionDenied(
        "SQL queries are refused: DuckDB's json extension, which floe needs to check what \
         a query names, is not installed (tests/setup installs it)"
            .into(),
    )
}
