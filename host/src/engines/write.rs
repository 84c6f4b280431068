//! One write handle for both targets: `write` batches, then `commit` (exactly one
//! Iceberg snapshot or one DuckDB transaction) or `abort` (nothing visible, files
//! deleted). After an Iceberg commit the lakehouse decides whether to compact.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use serde::Serialize;

use floe_wire::expr::parse_filter;

use super::Lakehouse;
use super::duckdb::DuckWrite;
use super::iceberg::TableWrite;
use super::rewrite::Rewrite;
use crate::command::{TableName, Target, WriteMode};
use crate::error::{Error, Result, quote};

/// A committed write.
#[derive(Debug, Serialize)]
pub struct Written {
    pub table: TableName,
    pub target: Target,
    pub rows: u64,
    pub snapshot_id: Option<i64>,
    pub data_files: usize,
    /// An earlier upload with the same idempotency key had committed: this one
    /// committed nothing, and the figures are the earlier one's.
    pub duplicate: bool,
}

/// How an upload is written.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions<'a> {
    pub mode: WriteMode,
    pub target: Target,
    /// The table's partitioning; None keeps an existing table's.
    pub partition_by: Option<&'a [String]>,
    /// For `merge`: the columns that identify a row.
    pub keys: Option<&'a [String]>,
    /// For `replace_where`: the expression the replaced rows match.
    pub replace_where: Option<&'a str>,
    /// Recorded in the snapshot; an upload whose key a snapshot of the table
    /// already carries commits nothing.
    pub idempotency_key: Option<&'a str>,
}

impl WriteOptions<'_> {
    /// The rows the write replaces, checked against the upload's columns.
    fn rewrite(&self, schema: &SchemaRef) -> Result<Option<Rewrite>> {
        if let Some(keys) = self.keys {
            for key in keys {
                if schema.field_with_name(key).is_err() {
                    return Err(Error::invalid(format!(
                        "key {} is not a column of the upload",
                        quote(key)
                    )));
                }
            }
            return Ok(Some(Rewrite::Merge(keys.to_vec())));
        }
        self.replace_where
            .map(|text| {
                parse_filter(text)
                    .map(Rewrite::ReplaceWhere)
                    .map_err(|err| Error::invalid(format!("\"where\": {err}")))
            })
            .transpose()
    }
}

pub struct WriteHandle {
    lakehouse: Arc<Lakehouse>,
    table: TableName,
    sink: Sink,
    /// For merge and replace_where: the rows the upload replaces.
    rewrite: Option<Rewrite>,
}

enum Sink {
    Iceberg(Box<TableWrite>),
    Duckdb(DuckWrite),
}

impl Lakehouse {
    /// Start writing `schema`-shaped batches into `table`. A table of the same name
    /// in the other target is refused: a name means one table.
    pub async fn begin_write(
        self: &Arc<Self>,
        table: &TableName,
        how: &WriteOptions<'_>,
        schema: SchemaRef,
    ) -> Result<WriteHandle> {
        let mode = how.mode;
        let rewrite = how.rewrite(&schema)?;
        let sink = match how.target {
            Target::Iceberg => {
                if self.duck.table_exists(table).await? {
                    return Err(Error::AlreadyExists(format!(
                        "{table} exists as a DuckDB table"
                    )));
                }
                let mut write = self
                    .iceberg
                    .begin_write(table, mode, &schema, how.partition_by)
                    .await?;
                write.set_idempotency_key(how.idempotency_key);
                Sink::Iceberg(Box::new(write))
            }
            Target::Duckdb
                if how.partition_by.is_some()
                    || rewrite.is_some()
                    || how.idempotency_key.is_some() =>
            {
                return Err(Error::invalid(
                    "partition_by, merge, replace_where and idempotency_key apply to Iceberg \
                     tables, not to target duckdb",
                ));
            }
            Target::Duckdb if self.shared() => {
                return Err(Error::invalid(format!(
                    "{table}: DuckDB-native tables (target duckdb) live in one host's DuckDB, \
                     and this warehouse is shared by several hosts (its catalog is on \
                     PostgreSQL or its tables on object storage): write it as an Iceberg \
                     table (target iceberg, the default)"
                )));
            }
            Target::Duckdb => {
                if self.iceberg.load(table).await?.is_some() {
                    return Err(Error::AlreadyExists(format!(
                        "{table} exists as an Iceberg table"
                    )));
                }
                Sink::Duckdb(self.duck.begin_write(table.clone(), mode, schema))
            }
        };
        Ok(WriteHandle {
            lakehouse: self.clone(),
            table: table.clone(),
            sink,
            rewrite,
        })
    }
}

impl WriteHandle {
    pub fn table(&self) -> &TableName {
        &self.table
    }

    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        match &mut self.sink {
            Sink::Iceberg(write) => write.write(&batch).await,
            Sink::Duckdb(write) => write.write(batch).await,
        }
    }

    /// Nothing becomes visible; what was written is deleted.
    pub async fn abort(self) {
        match self.sink {
            Sink::Iceberg(write) => write.abort().await,
            Sink::Duckdb(write) => write.abort().await,
        }
    }

    pub async fn commit(self) -> Result<Written> {
        let Self {
            lakehouse,
            table,
            sink,
            rewrite,
        } = self;
        match sink {
            Sink::Iceberg(write) => {
                // SQL readers see the new snapshot too: their views are re-pointed
                // when they plan, not here on every commit.
                let committed = match &rewrite {
                    Some(rewrite) => lakehouse.commit_rewrite(*write, rewrite).await?,
                    None => lakehouse.iceberg.commit(*write).await?,
                };
                if !committed.duplicate {
                    lakehouse.compact_when_due(&table, &committed);
                    lakehouse.maintain_when_due(&table);
                }
                Ok(Written {
                    table,
                    target: Target::Iceberg,
                    rows: committed.rows,
                    snapshot_id: Some(committed.snapshot_id),
                    data_files: committed.data_files,
                    duplicate: committed.duplicate,
                })
            }
            Sink::Duckdb(write) => Ok(Written {
                table,
                target: Target::Duckdb,
                rows: write.commit().await?,
                snapshot_id: None,
                data_files: 0,
                duplicate: false,
            }),
        }
    }
}
