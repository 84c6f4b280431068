//! One commit path for append, overwrite and replace: write a manifest for the new
//! data files, a manifest list (with the previous snapshot's manifests for an append,
//! without them for an overwrite, without the replaced files for a replace), the new
//! metadata file, then swap the catalog's pointer with a compare-and-swap. A
//! concurrent commit makes the swap miss: reload, retry.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use iceberg::spec::{
    DataFile, ManifestContentType, ManifestFile, ManifestListWriter, ManifestWriterBuilder,
    Operation, Snapshot, SnapshotRef, Summary, TableMetadata, TableMetadataBuilder,
};
use iceberg::{Catalog, MetadataLocation, TableIdent};
use serde::Serialize;

use super::compact::is_small;
use super::journal::WRITE_ID;
use super::turns::HostTurn;
use super::write::{Base, TableWrite, WriteOp, WritePlan};
use super::{CATALOG_NAME, IcebergEngine, ident, snapshot_carrying};
use crate::command::TableName;
use crate::error::{Context, Error, Result};

/// Lost races before a commit gives up (about 10 s of backoff): hosts committing to
/// one table all the time can make one lose many in a row.
const MAX_ATTEMPTS: u32 = 40;

/// How long to wait before attempt `attempt + 1` after losing the swap: doubling
/// from 5 ms up to 250 ms, times a random factor in [0.5, 1.5) so that hosts that
/// lost together do not retry together.
pub(super) fn backoff(attempt: u32) -> std::time::Duration {
    let base_ms = (5u64 << attempt.min(6)).min(250);
    let jitter = 0.5 + (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
    std::time::Duration::from_secs_f64(base_ms as f64 * jitter / 1000.0)
}

/// Each append adds a manifest, and readers open every manifest of a snapshot. Once
/// a table has this many, the next commit folds them into its own manifest, so
/// tables fed by many small appends stay quick to read and to append to.
const MERGE_MANIFESTS_AT: usize = 16;

/// What a commit produced.
#[derive(Debug, Clone, Serialize)]
pub struct Committed {
    pub rows: u64,
    pub snapshot_id: i64,
    pub data_files: usize,
    /// Data files in the table after this commit.
    pub table_data_files: u64,
    /// Whether the commit added a small data file (see `compact`).
    pub added_small_file: bool,
    /// The write's idempotency key was committed before, by `snapshot_id`: this
    /// write committed nothing, and the figures are the earlier write's.
    pub duplicate: bool,
}

/// The snapshot summary properties of a write with an idempotency key: the key,
/// and the rows the client sent (for a merge, not the rows the snapshot added).
pub const IDEMPOTENCY_KEY: &str = "floe.idempotency-key";
const UPLOAD_ROWS: &str = "floe.upload-rows";

/// Where a commit landed.
pub(super) enum Landed {
    New(Snapshot),
    /// A snapshot of the table carries the write's idempotency key already.
    Duplicate(SnapshotRef),
}

impl Committed {
    /// The answer to a retried write: the first one's.
    pub(super) fn duplicate_of(original: &Snapshot) -> Self {
        let summary = original.summary();
        let rows = summary
            .additional_properties
            .get(UPLOAD_ROWS)
            .and_then(|rows| rows.parse().ok())
            .unwrap_or_else(|| total(summary, "added-records"));
        Self {
            rows,
            snapshot_id: original.snapshot_id(),
            data_files: total(summary, "added-data-files") as usize,
            table_data_files: total(summary, "total-data-files"),
            added_small_file: false,
            duplicate: true,
        }
    }
}

/// Files written for one attempt, deleted if the attempt loses the race.
struct Attempt {
    files: Vec<String>,
}

impl IcebergEngine {
    /// Commit everything `write` wrote as exactly one snapshot. On error nothing is
    /// committed and the written data files are deleted.
    pub async fn commit(&self, write: TableWrite) -> Result<Committed> {
        let (plan, files) = write.finish().await;
        let outcome = match files {
            Ok(files) => {
                let data_files = files.len();
                let added_small_file = files.iter().any(is_small);
                self.commit_files(&plan, files)
                    .await
                    .map(|landed| match landed {
                        Landed::New(snapshot) => Committed {
                            rows: plan.rows,
                            snapshot_id: snapshot.snapshot_id(),
                            data_files,
                            table_data_files: total(snapshot.summary(), "total-data-files"),
                            added_small_file,
                            duplicate: false,
                        },
                        Landed::Duplicate(original) => Committed::duplicate_of(&original),
                    })
            }
            Err(err) => Err(err),
        };
        match &outcome {
            Ok(committed) if !committed.duplicate => plan.committed(),
            _ => plan.delete_files().await,
        }
        outcome
    }

    pub(super) async fn commit_files(
        &self,
        write: &WritePlan,
        files: Vec<DataFile>,
    ) -> Result<Landed> {
        let ident = ident(&write.name)?;
        // Commits from this process take turns per table: racing on the swap, some of
        // many concurrent appenders would lose every retry. Other processes' commits
        // are still caught by the compare-and-swap.
        let turn = self.commit_turn(&write.name);
        let _turn = turn.lock().await;
        // And hosts take turns too, where the catalog can tell them apart.
        let host_turn = match &self.host_turns {
            Some(pool) => HostTurn::take(pool, &write.name).await,
            None => None,
        };
        let landed = self.attempt_commits(&ident, write, &files).await;
        if let Some(host_turn) = host_turn {
            host_turn.end().await;
        }
        landed
    }

    /// Try to land the commit until it does, fails, or loses too many races.
    async fn attempt_commits(
        &self,
        ident: &TableIdent,
        write: &WritePlan,
        files: &[DataFile],
    ) -> Result<Landed> {
        for attempt in 0..MAX_ATTEMPTS {
            let mut staged = Attempt { files: Vec::new() };
            let outcome = match &write.base {
                Base::New(metadata) => {
                    self.commit_new(ident, metadata, write, files, &mut staged)
                        .await
                }
                Base::Existing { .. } => {
                    self.commit_existing(ident, write, files, &mut staged).await
                }
            };
            match outcome {
                Ok(Some(landed)) => return Ok(landed),
                Ok(None) => {
                    tracing::info!(table = %write.name, attempt, "concurrent commit won; retrying");
                    crate::metrics::count(&crate::metrics::metrics().commit_retries);
                    staged.discard(self).await;
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(err) => {
                    staged.discard(self).await;
                    return Err(err);
                }
            }
        }
        Err(Error::Unavailable(format!(
            "gave up committing to {} after {MAX_ATTEMPTS} concurrent commits won; nothing \
             was committed: retry the write",
            write.name
        )))
    }

    pub(super) fn commit_turn(&self, name: &TableName) -> Arc<tokio::sync::Mutex<()>> {
        let mut turns = self.commit_turns.lock().expect("commit turns");
        turns.entry(name.clone()).or_default().clone()
    }

    /// Create the table with its first snapshot in one step: the catalog row appears
    /// pointing at metadata that already has the data.
    async fn commit_new(
        &self,
        ident: &TableIdent,
        metadata: &TableMetadata,
        write: &WritePlan,
        files: &[DataFile],
        staged: &mut Attempt,
    ) -> Result<Option<Landed>> {
        let snapshot = self
            .write_snapshot(metadata, None, write, files, staged)
            .await?;
        let metadata = TableMetadataBuilder::new_from_metadata(metadata.clone(), None)
            .set_branch_snapshot(snapshot.clone(), "main")
            .and_then(|b| b.build())
            .context("building table metadata")?
            .metadata;
        let location = MetadataLocation::new_with_metadata(metadata.location(), &metadata);
        metadata
            .write_to(&self.file_io, &location)
            .await
            .context("writing table metadata")?;
        staged.files.push(location.to_string());
        // Only now, so that a failed first upload leaves no empty namespace behind.
        self.ensure_namespace(&write.name.namespace).await?;
        match self
            .catalog
            .register_table(ident, location.to_string())
            .await
        {
            Ok(_) => Ok(Some(Landed::New(snapshot))),
            Err(err) if err.kind() == iceberg::ErrorKind::TableAlreadyExists => {
                // A concurrent upload with the same key created it: this one is its retry.
                if let Some(table) = self.load(&write.name).await?
                    && let Some(original) = write.committed_before(table.metadata())
                {
                    return Ok(Some(Landed::Duplicate(original)));
                }
                Err(Error::AlreadyExists(format!(
                    "table {} was created by another writer during this upload; retry the upload",
                    write.name
                )))
            }
            Err(err) => Err(err).context("registering the table"),
        }
    }

    async fn commit_existing(
        &self,
        ident: &TableIdent,
        write: &WritePlan,
        files: &[DataFile],
        staged: &mut Attempt,
    ) -> Result<Option<Landed>> {
        let Base::Existing {
            schema_id,
            new_schema,
            ref new_spec,
            ..
        } = write.base
        else {
            unreachable!()
        };
        let table = self.load(&write.name).await?.ok_or_else(|| {
            Error::not_found(format!(
                "table {} was dropped during the upload",
                write.name
            ))
        })?;
        let current = table.metadata();
        if let Some(original) = write.committed_before(current) {
            return Ok(Some(Landed::Duplicate(original)));
        }
        let changed = || {
            Error::InvalidArgument(format!(
                "the schema or partitioning of {} changed during the upload; retry it",
                write.name
            ))
        };
        // The files' spec must be the table's default after this commit: the same as
        // now, or the one this commit adds (checked once added, below).
        if current.current_schema_id() != schema_id
            || (new_spec.is_none()
                && current.default_partition_spec_id() != write.partitioning.spec_id())
        {
            return Err(changed());
        }
        if let Some(expected) = &write.expect_location
            && table.metadata_location() != expected
        {
            return Err(Error::Cancelled(format!(
                "{}: another commit landed while rows were being replaced",
                write.name
            )));
        }
        let previous = match (write.op, current.current_snapshot()) {
            (WriteOp::Append | WriteOp::Replace | WriteOp::Rewrite, Some(snapshot)) => {
                table.manifests(snapshot).await?
            }
            _ => Vec::new(),
        };
        let mut builder = TableMetadataBuilder::new_from_metadata(
            current.clone(),
            Some(table.metadata_location().to_string()),
        );
        if new_schema {
            builder = builder
                .add_current_schema((*write.schema).clone())
                .context("adding the new schema")?;
        }
        if let Some(spec) = new_spec {
            builder = builder
                .add_default_partition_spec(spec.clone())
                .context("adding the partition spec")?;
        }
        let snapshot = self
            .write_snapshot(current, Some(previous), write, files, staged)
            .await?;
        let metadata = builder
            .set_branch_snapshot(snapshot.clone(), "main")
            .and_then(|b| b.build())
            .context("building table metadata")?
            .metadata;
        if metadata.default_partition_spec_id() != write.partitioning.spec_id() {
            return Err(changed());
        }
        let old_location = table.metadata_location().to_string();
        let location = self.write_next_metadata(&old_location, &metadata).await?;
        staged.files.push(location.clone());
        Ok(self
            .swap_metadata(ident, &old_location, &location)
            .await?
            .then_some(Landed::New(snapshot)))
    }

    /// Write `metadata` as the version after the one at `old`; its location.
    pub(super) async fn write_next_metadata(
        &self,
        old: &str,
        metadata: &TableMetadata,
    ) -> Result<String> {
        let location = MetadataLocation::from_str(old)
            .context("parsing the current metadata location")?
            .with_next_version()
            .with_new_metadata(metadata);
        metadata
            .write_to(&self.file_io, &location)
            .await
            .context("writing table metadata")?;
        Ok(location.to_string())
    }

    /// The catalog's compare-and-swap (the table layout pyiceberg and Java's JDBC
    /// catalog share): succeeds only if nobody committed since we loaded the table.
    pub(super) async fn swap_metadata(
        &self,
        ident: &TableIdent,
        old: &str,
        new: &str,
    ) -> Result<bool> {
        let text = self.db.sql(
            "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? \
             WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? AND metadata_location = ?",
        );
        let result = sqlx::query(&text)
            .bind(new)
            .bind(old)
            .bind(CATALOG_NAME)
            .bind(ident.namespace().join("."))
            .bind(ident.name())
            .bind(old)
            .execute(&self.pool)
            .await
            .map_err(|err| super::catalog_error("updating the catalog", err))?;
        Ok(result.rows_affected() == 1)
    }

    /// Write the manifest and manifest list of a new snapshot on top of `metadata`.
    /// `previous` are the manifests carried over (None for a brand-new table).
    async fn write_snapshot(
        &self,
        metadata: &TableMetadata,
        previous: Option<Vec<ManifestFile>>,
        write: &WritePlan,
        files: &[DataFile],
        staged: &mut Attempt,
    ) -> Result<Snapshot> {
        let snapshot_id = unique_snapshot_id(metadata);
        let commit_id = uuid::Uuid::new_v4();
        let meta_dir = format!("{}/metadata", metadata.location());
        let sequence_number = metadata.next_sequence_number();
        let parent = metadata.current_snapshot_id();

        let replace = matches!(write.op, WriteOp::Replace | WriteOp::Rewrite);
        let (mut manifests, merged) = mergeable(previous.unwrap_or_default(), metadata, replace);
        let replaced: HashSet<&str> = write.replaces.iter().map(|f| f.file_path()).collect();
        let mut dropped = 0;
        if !files.is_empty() || !merged.is_empty() {
            let path = format!("{meta_dir}/{commit_id}-m0.avro");
            let output = self
                .file_io
                .new_output(&path)
                .context("creating a manifest")?;
            staged.files.push(path);
            let spec = write.partitioning.as_ref().clone();
            let mut writer =
                ManifestWriterBuilder::new(output, Some(snapshot_id), write.schema.clone(), spec)
                    .build_v2_data();
            for file in files {
                writer
                    .add_file(file.clone(), -1)
                    .context("adding a data file to the manifest")?;
            }
            for manifest in &merged {
                let entries = manifest
                    .load_manifest(&self.file_io)
                    .await
                    .context("reading a manifest to merge")?;
                for entry in entries.entries().iter().filter(|e| e.is_alive()) {
                    if replaced.contains(entry.data_file().file_path()) {
                        dropped += 1;
                        continue;
                    }
                    // Existing entries keep the snapshot and sequence numbers they were added with.
                    writer
                        .add_existing_file(
                            entry.data_file().clone(),
                            entry.snapshot_id().unwrap_or(manifest.added_snapshot_id),
                            entry.sequence_number().unwrap_or(manifest.sequence_number),
                            entry.file_sequence_number,
                        )
                        .context("merging manifests")?;
                }
            }
            if dropped != replaced.len() {
                return Err(Error::Cancelled(format!(
                    "{}: files being rewritten were replaced or removed meanwhile",
                    write.name
                )));
            }
            manifests.push(
                writer
                    .write_manifest_file()
                    .await
                    .context("writing a manifest")?,
            );
        }

        let list_path = format!("{meta_dir}/snap-{snapshot_id}-0-{commit_id}.avro");
        let list_output = self
            .file_io
            .new_output(&list_path)
            .context("creating a manifest list")?;
        staged.files.push(list_path.clone());
        let mut list = ManifestListWriter::v2(
            list_output
                .writer()
                .await
                .context("creating a manifest list")?,
            snapshot_id,
            parent,
            sequence_number,
        );
        list.add_manifests(manifests.into_iter())
            .context("writing the manifest list")?;
        list.close().await.context("writing the manifest list")?;

        let previous_summary = metadata.current_snapshot().map(|s| s.summary().clone());
        let snapshot = Snapshot::builder()
            .with_manifest_list(list_path)
            .with_snapshot_id(snapshot_id)
            .with_parent_snapshot_id(parent)
            .with_sequence_number(sequence_number)
            .with_summary(summary(
                write,
                files,
                &write.replaces,
                previous_summary.as_ref(),
            ))
            .with_schema_id(write.schema.schema_id())
            .with_timestamp_ms(chrono::Utc::now().timestamp_millis())
            .build();
        Ok(snapshot)
    }
}

impl WritePlan {
    /// The snapshot that committed this write's idempotency key, if one did. Every
    /// snapshot the table keeps is searched, not only the current one's ancestors:
    /// an overwrite since does not make a retry new. Past expiry the key is forgotten.
    fn committed_before(&self, metadata: &TableMetadata) -> Option<SnapshotRef> {
        let key = self.idempotency_key.as_deref()?;
        snapshot_carrying(metadata, IDEMPOTENCY_KEY, key).cloned()
    }
}

impl Attempt {
    async fn discard(self, engine: &IcebergEngine) {
        for file in self.files {
            let _ = engine.file_io.delete(&file).await;
        }
    }
}

/// Split the carried-over manifests into those kept as they are and the data
/// manifests of the default spec to merge: always for a replace (which drops some of
/// their entries), else once there are `MERGE_MANIFESTS_AT` or more.
fn mergeable(
    manifests: Vec<ManifestFile>,
    metadata: &TableMetadata,
    replace: bool,
) -> (Vec<ManifestFile>, Vec<ManifestFile>) {
    if !replace && manifests.len() < MERGE_MANIFESTS_AT {
        return (manifests, Vec::new());
    }
    let spec_id = metadata.default_partition_spec_id();
    let (merged, kept) = manifests
        .into_iter()
        .partition(|m| m.content == ManifestContentType::Data && m.partition_spec_id == spec_id);
    (kept, merged)
}

fn unique_snapshot_id(metadata: &TableMetadata) -> i64 {
    loop {
        let (hi, lo) = uuid::Uuid::new_v4().as_u64_pair();
        let id = ((hi ^ lo) & (i64::MAX as u64)) as i64;
        if id != 0 && metadata.snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

/// A total from a snapshot summary (0 when absent).
pub(super) fn total(summary: &Summary, key: &str) -> u64 {
    summary
        .additional_properties
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The snapshot summary Iceberg readers expect: what was added and removed, and the totals.
fn summary(
    write: &WritePlan,
    files: &[DataFile],
    replaced: &[DataFile],
    previous: Option<&Summary>,
) -> Summary {
    let op = write.op;
    let added_records: u64 = files.iter().map(|f| f.record_count()).sum();
    let added_size: u64 = files.iter().map(|f| f.file_size_in_bytes()).sum();
    let prev = |key: &str| previous.map_or(0, |s| total(s, key));
    let mut props = HashMap::new();
    let mut set = |key: &str, value: u64| {
        props.insert(key.to_string(), value.to_string());
    };
    set("added-data-files", files.len() as u64);
    set("added-records", added_records);
    set("added-files-size", added_size);
    let operation = match op {
        WriteOp::Append => {
            set(
                "total-data-files",
                prev("total-data-files") + files.len() as u64,
            );
            set("total-records", prev("total-records") + added_records);
            set("total-files-size", prev("total-files-size") + added_size);
            Operation::Append
        }
        WriteOp::Overwrite => {
            set("deleted-data-files", prev("total-data-files"));
            set("deleted-records", prev("total-records"));
            set("removed-files-size", prev("total-files-size"));
            set("total-data-files", files.len() as u64);
            set("total-records", added_records);
            set("total-files-size", added_size);
            Operation::Overwrite
        }
        WriteOp::Replace | WriteOp::Rewrite => {
            let removed_records: u64 = replaced.iter().map(|f| f.record_count()).sum();
            let removed_size: u64 = replaced.iter().map(|f| f.file_size_in_bytes()).sum();
            set("deleted-data-files", replaced.len() as u64);
            set("deleted-records", removed_records);
            set("removed-files-size", removed_size);
            set(
                "total-data-files",
                (prev("total-data-files") + files.len() as u64)
                    .saturating_sub(replaced.len() as u64),
            );
            set(
                "total-records",
                (prev("total-records") + added_records).saturating_sub(removed_records),
            );
            set(
                "total-files-size",
                (prev("total-files-size") + added_size).saturating_sub(removed_size),
            );
            match op {
                WriteOp::Replace => Operation::Replace,
                _ => Operation::Overwrite,
            }
        }
    };
    set("total-delete-files", 0);
    set("total-position-deletes", 0);
    set("total-equality-deletes", 0);
    props.insert(WRITE_ID.to_string(), write.file_prefix.clone());
    if let Some(key) = &write.idempotency_key {
        props.insert(IDEMPOTENCY_KEY.to_string(), key.clone());
        props.insert(UPLOAD_ROWS.to_string(), write.rows.to_string());
    }
    Summary {
        operation,
        additional_properties: props,
    }
}
