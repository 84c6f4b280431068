//! A streaming write into an Iceberg table: batches go into rolling Parquet data
//! files as they arrive, and `IcebergEngine::commit` turns the files into one snapshot.

use std::collections::HashMap;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema as ArrowSchema;
use iceberg::spec::{
    DataFile, FormatVersion, SchemaRef, SortOrder, TableMetadata, TableMetadataBuilder,
    UnboundPartitionSpec,
};
use std::sync::Arc;

use super::journal::{self, Recorded, delete_prefixed};
use super::lanes::Lanes;
use super::schema::{Conformer, iceberg_schema_of, same_columns, schema_difference};
use super::{IcebergEngine, LoadedTable};
use crate::command::{TableName, WriteMode};
use crate::error::{Context, Error, Result};

/// What the commit does with the table's previous data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOp {
    Append,
    Overwrite,
    /// The same rows in other files: the plan's `replaces` give way to the new files.
    Replace,
}

/// The table a write goes into, as it was when the write began.
pub(super) enum Base {
    /// The table does not exist yet; this metadata is registered at commit.
    New(Box<TableMetadata>),
    /// The table exists with this current schema id; `new_schema` replaces it at commit.
    Existing { schema_id: i32, new_schema: bool },
}

pub struct TableWrite {
    pub(super) plan: WritePlan,
    conformer: Conformer,
    lanes: Lanes,
    rows: u64,
}

/// What a write commits to, apart from the (non-`Sync`) Parquet writer itself.
pub(super) struct WritePlan {
    pub name: TableName,
    pub op: WriteOp,
    pub base: Base,
    pub schema: SchemaRef,
    /// For `Replace`: the data files the new ones stand in for.
    pub replaces: Vec<DataFile>,
    data_dir: String,
    /// Every data file's name starts with it; the snapshot summary names it too.
    pub file_prefix: String,
    /// This write, recorded until it has committed or cleaned up.
    recorded: Recorded,
}

impl IcebergEngine {
    /// Start writing `upload`-shaped batches into `name` with `mode`. Nothing is
    /// visible to readers until `commit`; `abort` deletes what was written.
    pub async fn begin_write(
        &self,
        name: &TableName,
        mode: WriteMode,
        upload: &ArrowSchema,
    ) -> Result<TableWrite> {
        let existing = self.load(name).await?;
        let (base, schema, op, location) = match (existing, mode) {
            (Some(_), WriteMode::Create | WriteMode::ErrorIfExists) => {
                return Err(Error::AlreadyExists(format!("table {name} already exists")));
            }
            (None, _) => {
                let location = self.new_table_location(name);
                let metadata = TableMetadataBuilder::new(
                    iceberg_schema_of(upload, 1)?,
                    UnboundPartitionSpec::builder().build(),
                    SortOrder::unsorted_order(),
                    location.clone(),
                    FormatVersion::V2,
                    HashMap::from([("write.parquet.compression-codec".into(), "snappy".into())]),
                )
                .and_then(|builder| builder.build())
                .context("building the new table's metadata")?
                .metadata;
                let schema = metadata.current_schema().clone();
                (
                    Base::New(Box::new(metadata)),
                    schema,
                    WriteOp::Append,
                    location,
                )
            }
            (Some(table), mode) => {
                let metadata = table.metadata();
                if metadata.format_version() != FormatVersion::V2 {
                    return Err(Error::invalid(format!(
                        "{name} is an Iceberg format {} table; floe writes format 2 tables",
                        metadata.format_version()
                    )));
                }
                let current = metadata.current_schema().clone();
                let schema_id = metadata.current_schema_id();
                let location = metadata.location().to_string();
                if mode == WriteMode::Append {
                    if let Some(diff) = schema_difference(&current, upload)? {
                        return Err(Error::invalid(format!("cannot append to {name}: {diff}")));
                    }
                    (
                        Base::Existing {
                            schema_id,
                            new_schema: false,
                        },
                        current,
                        WriteOp::Append,
                        location,
                    )
                } else {
                    let replacement = iceberg_schema_of(upload, 1)?;
                    if same_columns(&current, &replacement) {
                        (
                            Base::Existing {
                                schema_id,
                                new_schema: false,
                            },
                            current,
                            WriteOp::Overwrite,
                            location,
                        )
                    } else {
                        // New columns get fresh ids: old snapshots keep their own schema.
                        let schema =
                            Arc::new(iceberg_schema_of(upload, metadata.last_column_id() + 1)?);
                        (
                            Base::Existing {
                                schema_id,
                                new_schema: true,
                            },
                            schema,
                            WriteOp::Overwrite,
                            location,
                        )
                    }
                }
            }
        };
        self.start_write(name, op, base, schema, &location, Vec::new())
            .await
    }

    /// Start rewriting `replaces` (live data files of `table`) as new files with the
    /// same rows; the commit swaps them in only if all of them are still live.
    pub(super) async fn begin_replace(
        &self,
        name: &TableName,
        table: &LoadedTable,
        replaces: Vec<DataFile>,
    ) -> Result<TableWrite> {
        let metadata = table.metadata();
        let base = Base::Existing {
            schema_id: metadata.current_schema_id(),
            new_schema: false,
        };
        let schema = metadata.current_schema().clone();
        let location = metadata.location().to_string();
        self.start_write(name, WriteOp::Replace, base, schema, &location, replaces)
            .await
    }

    async fn start_write(
        &self,
        name: &TableName,
        op: WriteOp,
        base: Base,
        schema: SchemaRef,
        location: &str,
        replaces: Vec<DataFile>,
    ) -> Result<TableWrite> {
        let data_dir = format!("{location}/data");
        let file_prefix = uuid::Uuid::new_v4().to_string();
        let recorded = journal::record(&self.root, name, &data_dir, &file_prefix)?;
        let lanes = match Lanes::open(&self.file_io, &schema, &data_dir, &file_prefix).await {
            Ok(lanes) => lanes,
            Err(err) => {
                recorded.done();
                return Err(err);
            }
        };
        Ok(TableWrite {
            conformer: Conformer::new(&schema)?,
            plan: WritePlan {
                name: name.clone(),
                op,
                base,
                schema,
                replaces,
                data_dir,
                file_prefix,
                recorded,
            },
            lanes,
            rows: 0,
        })
    }
}

impl TableWrite {
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let batch = self.conformer.conform(batch)?;
        self.rows += batch.num_rows() as u64;
        self.lanes.write(batch).await
    }

    /// Close the last data file: the plan and every file written, for the commit.
    pub(super) async fn finish(self) -> (WritePlan, u64, Result<Vec<DataFile>>) {
        let files = self.lanes.close().await;
        (self.plan, self.rows, files)
    }

    /// Forget the write: delete every data file it produced.
    pub async fn abort(self) {
        self.lanes.abort().await;
        self.plan.delete_files().await;
    }
}

impl WritePlan {
    /// The write failed or was aborted: its data files go, then its record.
    pub(super) async fn delete_files(&self) {
        delete_prefixed(&self.data_dir, &self.file_prefix).await;
        self.recorded.done();
    }

    /// The write committed: it needs no record any more.
    pub(super) fn committed(&self) {
        self.recorded.done();
    }
}
