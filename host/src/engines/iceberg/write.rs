//! A streaming write into an Iceberg table: batches go into rolling Parquet data
//! files as they arrive, and `IcebergEngine::commit` turns the files into one snapshot.

use std::collections::HashMap;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema as ArrowSchema;
use iceberg::spec::{
    DataFile, FormatVersion, PartitionSpecRef, SchemaRef, SortOrder, TableMetadata,
    TableMetadataBuilder, UnboundPartitionSpec,
};
use std::sync::Arc;

use super::journal::Recorded;
use super::lanes::Lanes;
use super::partition::{describe, partition_spec, same_spec};
use super::schema::{Conformer, iceberg_schema_of, same_columns, schema_difference};
use super::{IcebergEngine, LoadedTable};
use crate::command::{TableName, WriteMode};
use crate::error::{Context, Error, Result};
use crate::storage::Storage;

/// What the commit does with the table's previous data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOp {
    Append,
    Overwrite,
    /// The same rows in other files: the plan's `replaces` give way to the new files.
    Replace,
    /// Some rows replaced (merge, replace_where): the plan's `replaces` give way to
    /// the upload's files and to files of their rows that stay.
    Rewrite,
}

/// The table a write goes into, as it was when the write began.
pub(super) enum Base {
    /// The table does not exist yet; this metadata is registered at commit.
    New(Box<TableMetadata>),
    /// The table exists with this current schema id; `new_schema` replaces it at
    /// commit, and `new_spec` becomes the default partition spec.
    Existing {
        schema_id: i32,
        new_schema: bool,
        new_spec: Option<UnboundPartitionSpec>,
        op: WriteOp,
    },
}

impl Base {
    fn op(&self) -> WriteOp {
        match self {
            Base::New(_) => WriteOp::Append,
            Base::Existing { op, .. } => *op,
        }
    }
}

/// The partition spec `wanted` becomes once added to `metadata` (after `schema`, a
/// new current schema, if any): its id and field ids are the table's to assign.
fn next_spec(
    metadata: &TableMetadata,
    schema: Option<&SchemaRef>,
    wanted: &UnboundPartitionSpec,
) -> Result<PartitionSpecRef> {
    let mut builder = TableMetadataBuilder::new_from_metadata(metadata.clone(), None);
    if let Some(schema) = schema {
        builder = builder
            .add_current_schema((**schema).clone())
            .context("adding the new schema")?;
    }
    let metadata = builder
        .add_default_partition_spec(wanted.clone())
        .and_then(|b| b.build())
        .context("adding the partition spec")?
        .metadata;
    Ok(metadata.default_partition_spec().clone())
}

pub struct TableWrite {
    pub(super) plan: WritePlan,
    out: RowsWrite,
}

/// What a write commits to, apart from the (non-`Sync`) Parquet writer itself.
pub(super) struct WritePlan {
    pub name: TableName,
    pub op: WriteOp,
    pub base: Base,
    pub schema: SchemaRef,
    /// The partition spec the data files are written with (the table's default
    /// once committed).
    pub partitioning: PartitionSpecRef,
    /// For `Replace`: the data files the new ones stand in for.
    pub replaces: Vec<DataFile>,
    pub data_dir: String,
    /// Every data file's name starts with it; the snapshot summary names it too.
    pub file_prefix: String,
    /// This write, recorded until it has committed or cleaned up.
    recorded: Recorded,
    /// Where its files are, to delete them if it fails.
    storage: Storage,
    /// For a rewrite: the metadata its replaced files were chosen from. The commit
    /// is refused (`Cancelled`) if the table has moved on since.
    pub expect_location: Option<String>,
    /// Recorded in the snapshot summary with `rows`; see `commit`.
    pub idempotency_key: Option<String>,
    /// The rows the client uploaded, known once the upload has ended.
    pub rows: u64,
}

impl IcebergEngine {
    /// Start writing `upload`-shaped batches into `name` with `mode`, partitioned by
    /// `partition_by` (None: as the table is, or unpartitioned for a new table).
    /// Nothing is visible to readers until `commit`; `abort` deletes what was written.
    pub async fn begin_write(
        &self,
        name: &TableName,
        mode: WriteMode,
        upload: &ArrowSchema,
        partition_by: Option<&[String]>,
    ) -> Result<TableWrite> {
        let Some(table) = self.load(name).await? else {
            return self.begin_new_table(name, upload, partition_by).await;
        };
        if matches!(mode, WriteMode::Create | WriteMode::ErrorIfExists) {
            return Err(Error::AlreadyExists(format!("table {name} already exists")));
        }
        let metadata = table.metadata();
        if metadata.format_version() != FormatVersion::V2 {
            return Err(Error::invalid(format!(
                "{name} is an Iceberg format {} table; floe writes format 2 tables",
                metadata.format_version()
            )));
        }
        let current = metadata.current_schema().clone();
        let current_spec = metadata.default_partition_spec().clone();
        let location = metadata.location().to_string();
        let unchanged = |op| Base::Existing {
            schema_id: metadata.current_schema_id(),
            new_schema: false,
            new_spec: None,
            op,
        };
        if mode == WriteMode::Append || mode.rewrites() {
            // Merge and replace_where add files as an append does; which files they
            // replace is decided once the upload is in (see `rewrite`).
            let verb = match mode {
                WriteMode::Append => "append to",
                _ => "replace rows of",
            };
            if let Some(diff) = schema_difference(&current, upload)? {
                return Err(Error::invalid(format!("cannot {verb} {name}: {diff}")));
            }
            if let Some(items) = partition_by
                && !same_spec(&current_spec, &partition_spec(items, &current)?)
            {
                return Err(Error::invalid(format!(
                    "cannot {verb} {name} with partition_by {items:?}: it is partitioned by {:?}; \
                     overwrite it to change that",
                    describe(&current_spec, &current)
                )));
            }
            let plan = (unchanged(WriteOp::Append), current, current_spec);
            return self.start_write(name, plan, &location, Vec::new()).await;
        }
        // An overwrite: the upload's columns, and the partitioning asked for (or the
        // table's, by column name).
        let replacement = iceberg_schema_of(upload, 1)?;
        let new_schema = !same_columns(&current, &replacement);
        let schema = match new_schema {
            // New columns get fresh ids: old snapshots keep their own schema.
            true => Arc::new(iceberg_schema_of(upload, metadata.last_column_id() + 1)?),
            false => current.clone(),
        };
        let items = match partition_by {
            Some(items) => items.to_vec(),
            None => describe(&current_spec, &current),
        };
        let wanted = partition_spec(&items, &schema).map_err(|err| match partition_by {
            Some(_) => err,
            None => Error::invalid(format!(
                "{name} is partitioned by {items:?}, which the upload's columns do not allow; \
                 give partition_by ([] for none)"
            )),
        })?;
        let mut base = unchanged(WriteOp::Overwrite);
        let mut spec = current_spec;
        if new_schema || !same_spec(&spec, &wanted) {
            spec = next_spec(metadata, new_schema.then_some(&schema), &wanted)?;
            base = Base::Existing {
                schema_id: metadata.current_schema_id(),
                new_schema,
                new_spec: Some(wanted),
                op: WriteOp::Overwrite,
            };
        }
        self.start_write(name, (base, schema, spec), &location, Vec::new())
            .await
    }

    async fn begin_new_table(
        &self,
        name: &TableName,
        upload: &ArrowSchema,
        partition_by: Option<&[String]>,
    ) -> Result<TableWrite> {
        let location = self.new_table_location(name);
        let schema = iceberg_schema_of(upload, 1)?;
        let spec = partition_spec(partition_by.unwrap_or_default(), &schema)?;
        let metadata = TableMetadataBuilder::new(
            schema,
            spec,
            SortOrder::unsorted_order(),
            location.clone(),
            FormatVersion::V2,
            HashMap::from([("write.parquet.compression-codec".into(), "snappy".into())]),
        )
        .and_then(|builder| builder.build())
        .context("building the new table's metadata")?
        .metadata;
        let schema = metadata.current_schema().clone();
        let spec = metadata.default_partition_spec().clone();
        let plan = (Base::New(Box::new(metadata)), schema, spec);
        self.start_write(name, plan, &location, Vec::new()).await
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
            new_spec: None,
            op: WriteOp::Replace,
        };
        let schema = metadata.current_schema().clone();
        let spec = metadata.default_partition_spec().clone();
        let location = metadata.location().to_string();
        self.start_write(name, (base, schema, spec), &location, replaces)
            .await
    }

    async fn start_write(
        &self,
        name: &TableName,
        (base, schema, partitioning): (Base, SchemaRef, PartitionSpecRef),
        location: &str,
        replaces: Vec<DataFile>,
    ) -> Result<TableWrite> {
        let data_dir = format!("{location}/data");
        let file_prefix = uuid::Uuid::new_v4().to_string();
        let recorded = self.journal.record(name, &data_dir, &file_prefix)?;
        let opened = self.rows_write(&schema, &partitioning, &data_dir, &file_prefix);
        let out = match opened.await {
            Ok(out) => out,
            Err(err) => {
                recorded.done();
                return Err(err);
            }
        };
        Ok(TableWrite {
            out,
            plan: WritePlan {
                name: name.clone(),
                op: base.op(),
                base,
                schema,
                partitioning,
                replaces,
                data_dir,
                file_prefix,
                recorded,
                storage: self.storage.clone(),
                expect_location: None,
                idempotency_key: None,
                rows: 0,
            },
        })
    }

    /// Rows into new data files named `{file_prefix}…` under `data_dir`.
    pub(super) async fn rows_write(
        &self,
        schema: &SchemaRef,
        partitioning: &PartitionSpecRef,
        data_dir: &str,
        file_prefix: &str,
    ) -> Result<RowsWrite> {
        let lanes = Lanes::open(&self.file_io, schema, partitioning, data_dir, file_prefix);
        Ok(RowsWrite {
            conformer: Conformer::new(schema)?,
            lanes: lanes.await?,
            rows: 0,
        })
    }
}

/// Batches shaped to the table's schema and encoded into data files.
pub struct RowsWrite {
    conformer: Conformer,
    lanes: Lanes,
    rows: u64,
}

impl RowsWrite {
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let batch = self.conformer.conform(batch)?;
        self.rows += batch.num_rows() as u64;
        self.lanes.write(batch).await
    }

    /// Close the last data files: the rows written and every file.
    pub(super) async fn close(self) -> (u64, Result<Vec<DataFile>>) {
        (self.rows, self.lanes.close().await)
    }
}

impl TableWrite {
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.out.write(batch).await
    }

    /// Close the last data file: the plan and every file written, for the commit.
    /// Commit nothing if a snapshot of the table already carries `key` (see `commit`).
    pub fn set_idempotency_key(&mut self, key: Option<&str>) {
        self.plan.idempotency_key = key.map(str::to_string);
    }

    pub(super) async fn finish(self) -> (WritePlan, Result<Vec<DataFile>>) {
        let (rows, files) = self.out.close().await;
        let mut plan = self.plan;
        plan.rows = rows;
        (plan, files)
    }

    /// Forget the write: delete every data file it produced.
    pub async fn abort(self) {
        self.out.lanes.abort().await;
        self.plan.delete_files().await;
    }
}

impl WritePlan {
    /// The write failed or was aborted: its data files go, then its record.
    pub(super) async fn delete_files(&self) {
        self.storage
            .delete_prefixed(&self.data_dir, &self.file_prefix)
            .await;
        self.recorded.done();
    }

    /// The write committed: it needs no record any more.
    pub(super) fn committed(&self) {
        self.recorded.done();
    }
}
