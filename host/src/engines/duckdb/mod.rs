//! The embedded DuckDB: the read engine for every table, and the store of
//! DuckDB-native (`target: "duckdb"`) tables.
//!
//! The database is configured once at startup and then locked: queries may read
//! files only inside the warehouse, and no query can change that.

mod database;
pub mod read;
mod types;
mod write;

use std::path::{Path, PathBuf};

use duckdb::Connection;

use self::database::Database;
use serde::Serialize;

pub use read::QueryStream;
pub use types::empty_relation;
pub use write::DuckWrite;

use crate::command::{TableName, quote_literal};
use crate::error::{Context, Result};

/// How DuckDB reads Iceberg tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IcebergReader {
    /// DuckDB's iceberg extension (`iceberg_scan`).
    Extension,
    /// `read_parquet` over the snapshot's data files, planned by iceberg-rust.
    ReadParquet,
}

/// Which reader to use: the extension when it loads, or a fixed choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReaderChoice {
    #[default]
    Auto,
    Extension,
    #[serde(alias = "read-parquet")]
    ReadParquet,
}

pub struct DuckEngine {
    /// One database instance; every request opens its own connection on it.
    db: Database,
    pub reader: IcebergReader,
    /// Why the extension is not in use, when it is not.
    pub reader_note: Option<String>,
}

impl DuckEngine {
    /// Open (or create) the database, load the iceberg extension if wanted, and
    /// confine file access to the warehouse. These settings are global: they hold for
    /// every connection, and `lock_configuration` keeps any query from changing them.
    pub fn open(
        db_path: &Path,
        warehouse: &Path,
        extension_dir: Option<&Path>,
        choice: ReaderChoice,
    ) -> Result<Self> {
        let db = Database::open(db_path)?;
        let conn = db.connect()?;
        let mut setup = vec![
            "SET autoinstall_known_extensions = false".to_string(),
            "SET autoload_known_extensions = false".to_string(),
        ];
        if let Some(dir) = extension_dir {
            setup.push(format!(
                "SET extension_directory = {}",
                quote_literal(&dir.display().to_string())
            ));
        }
        conn.execute_batch(&setup.join(";"))
            .context("configuring DuckDB")?;

        let (reader, reader_note) = match choice {
            ReaderChoice::ReadParquet => (
                IcebergReader::ReadParquet,
                Some("chosen by configuration".to_string()),
            ),
            ReaderChoice::Extension | ReaderChoice::Auto => {
                match conn.execute_batch("LOAD avro; LOAD iceberg;") {
                    Ok(()) => (IcebergReader::Extension, None),
                    Err(err) if choice == ReaderChoice::Auto => (
                        IcebergReader::ReadParquet,
                        Some(format!("iceberg extension not loadable: {err}")),
                    ),
                    Err(err) => return Err(err).context("loading DuckDB's iceberg extension"),
                }
            }
        };

        // Iceberg manifests name files as file:// URLs: allow both spellings.
        let warehouse_dir = format!("{}/", warehouse.display());
        conn.execute_batch(&format!(
            "SET allowed_directories = [{}, {}];
             SET enable_external_access = false;
             SET lock_configuration = true;",
            quote_literal(&warehouse_dir),
            quote_literal(&format!("file://{warehouse_dir}"))
        ))
        .context("confining DuckDB to the warehouse")?;
        Ok(Self {
            db,
            reader,
            reader_note,
        })
    }

    /// A connection of its own for one request (DuckDB calls block: use it off the
    /// async executor).
    pub fn connect(&self) -> Result<Connection> {
        self.db.connect()
    }

    /// Point the view `name` at an Iceberg table's data (`source` is a FROM item).
    pub fn replace_view(&self, name: &TableName, source: &str) -> Result<()> {
        let conn = self.connect()?;
        conn.execute_batch(&format!(
            "CREATE SCHEMA IF NOT EXISTS {ns}; CREATE OR REPLACE VIEW {view} AS SELECT * FROM {source};",
            ns = crate::command::quote_ident(&name.namespace),
            view = name.sql(),
        ))
        .with_context(|| format!("publishing {name} to DuckDB"))
    }

    /// The views in the database: floe's windows on Iceberg tables.
    pub fn list_views(&self) -> Result<Vec<TableName>> {
        self.names("SELECT schema_name, view_name FROM duckdb_views() WHERE database_name = current_database() AND NOT internal")
    }

    /// `ns.name` pairs from a catalog query (names floe cannot address are skipped).
    fn names(&self, sql: &str) -> Result<Vec<TableName>> {
        let conn = self.connect()?;
        let mut stmt = conn.prepare(sql).context("listing DuckDB objects")?;
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

    pub fn drop_view(&self, name: &TableName) -> Result<()> {
        self.connect()?
            .execute_batch(&format!("DROP VIEW IF EXISTS {}", name.sql()))
            .with_context(|| format!("removing the view {name}"))
    }

    /// The DuckDB-native tables with their row counts (views are Iceberg tables).
    pub fn list_tables(&self) -> Result<Vec<(TableName, u64)>> {
        let names = self.names("SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database() AND NOT temporary ORDER BY 1, 2")?;
        let conn = self.connect()?;
        names
            .into_iter()
            .map(|name| {
                let count: i64 = conn
                    .query_row(&format!("SELECT count(*) FROM {}", name.sql()), [], |r| {
                        r.get(0)
                    })
                    .context("counting rows")?;
                Ok((name, count as u64))
            })
            .collect()
    }

    pub fn table_exists(&self, name: &TableName) -> Result<bool> {
        let count: i64 = self
            .connect()?
            .query_row(
                "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = ? AND table_name = ?",
                [&name.namespace, &name.name],
                |r| r.get(0),
            )
            .context("looking up a DuckDB table")?;
        Ok(count > 0)
    }

    pub fn drop_table(&self, name: &TableName) -> Result<()> {
        self.connect()?
            .execute_batch(&format!("DROP TABLE {}", name.sql()))
            .with_context(|| format!("dropping {name}"))
    }
}

/// Where the database file lives relative to the warehouse.
pub fn database_path(warehouse: &Path) -> PathBuf {
    warehouse.join("duckdb.db")
}
