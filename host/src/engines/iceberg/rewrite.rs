//! Writes that replace some of a table's rows (merge, replace_where), copy-on-write
//! at file granularity. The upload is written first ("staged"); then the table's
//! files holding replaced rows are found, the rows of theirs that stay are written
//! anew, and one snapshot swaps those files for the new ones. If another commit
//! lands meanwhile, the files are chosen again against it.

use iceberg::spec::{DataFile, SchemaRef};

use super::commit::{Landed, total};
use super::prune::{Condition, FileBounds, covering};
use super::write::{Base, RowsWrite, TableWrite, WriteOp, WritePlan};
use super::{Committed, IcebergEngine, local_path};
use crate::error::{Error, Result};

/// An upload written, not yet committed.
pub struct Staged {
    plan: WritePlan,
    rows: u64,
    files: Vec<DataFile>,
    /// How many writers of kept rows were opened (one per attempt).
    attempts: usize,
}

/// The table as a rewrite found it.
pub struct RewriteBase {
    /// Its metadata (None: the table is created by this write).
    location: Option<String>,
    /// Its current snapshot's live data files.
    pub files: Vec<DataFile>,
}

impl Staged {
    pub fn paths(&self) -> Vec<String> {
        self.files
            .iter()
            .map(|f| local_path(f.file_path()).to_string())
            .collect()
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.plan.schema
    }

    /// Conditions the table's rows with these `keys` meet (bounds of the upload's keys).
    pub fn key_conditions(&self, keys: &[String]) -> Vec<Condition> {
        covering(&self.files, &self.plan.schema, keys)
    }
}

/// Whether `file` can hold a row meeting every condition.
pub fn may_match(file: &DataFile, conditions: &[Condition]) -> bool {
    FileBounds::of(file).may_match(conditions)
}

impl IcebergEngine {
    /// Close the upload's files; on failure they are deleted.
    pub async fn stage(&self, write: TableWrite) -> Result<Staged> {
        let (plan, files) = write.finish().await;
        match files {
            Ok(files) => Ok(Staged {
                rows: plan.rows,
                plan,
                files,
                attempts: 0,
            }),
            Err(err) => {
                plan.delete_files().await;
                Err(err)
            }
        }
    }

    /// The table now: its metadata location and live data files. Refused for tables
    /// whose rows another engine deleted with delete files, or that hold files of an
    /// earlier schema, whose rows this path cannot rewrite exactly.
    pub async fn rewrite_base(&self, staged: &Staged) -> Result<RewriteBase> {
        let name = &staged.plan.name;
        if let Base::New(_) = staged.plan.base {
            return Ok(RewriteBase {
                location: None,
                files: Vec::new(),
            });
        }
        let table = self.load(name).await?.ok_or_else(|| {
            Error::not_found(format!("table {name} was dropped during the upload"))
        })?;
        let location = Some(table.metadata_location().to_string());
        let Some(snapshot) = table.metadata().current_snapshot().cloned() else {
            return Ok(RewriteBase {
                location,
                files: Vec::new(),
            });
        };
        let live = table.live_files(&snapshot).await?;
        if live.deletes {
            return Err(Error::invalid(format!(
                "{name} has delete files (written by another engine): rows cannot be \
                 replaced in it until they are applied; overwrite the table instead"
            )));
        }
        let schema_id = Some(table.metadata().current_schema_id());
        if live.files.iter().any(|f| f.schema_id != schema_id) {
            return Err(Error::invalid(format!(
                "{name} holds data files of an earlier schema: rows cannot be \
                 replaced in it; overwrite the table instead"
            )));
        }
        let files = live.files.into_iter().map(|f| f.file).collect();
        Ok(RewriteBase { location, files })
    }

    /// A writer for the rows of replaced files that stay.
    pub async fn kept_rows_write(&self, staged: &mut Staged) -> Result<RowsWrite> {
        staged.attempts += 1;
        let plan = &staged.plan;
        // Under the write's prefix, so that a failed write's cleanup finds them too.
        let prefix = format!("{}-kept{}", plan.file_prefix, staged.attempts);
        self.rows_write(&plan.schema, &plan.partitioning, &plan.data_dir, &prefix)
            .await
    }

    /// Close `kept`'s files (a failed write's `discard` deletes them with the rest).
    pub async fn close_kept(&self, kept: RowsWrite) -> Result<Vec<DataFile>> {
        let (_, files) = kept.close().await;
        files
    }

    /// One snapshot: `replaced` (files of `base`) give way to the upload's files
    /// and `kept`. `Cancelled` if the table moved on since `base`: choose again.
    pub async fn commit_rewrite(
        &self,
        staged: &mut Staged,
        kept: Vec<DataFile>,
        replaced: Vec<DataFile>,
        base: &RewriteBase,
    ) -> Result<Committed> {
        let plan = &mut staged.plan;
        if base.location.is_some() {
            plan.op = WriteOp::Rewrite;
            plan.expect_location = base.location.clone();
        }
        plan.replaces = replaced;
        let mut files = staged.files.clone();
        files.extend(kept.iter().cloned());
        let data_files = files.len();
        let outcome = match self.commit_files(plan, files).await {
            Ok(Landed::New(snapshot)) => {
                plan.committed();
                return Ok(Committed {
                    rows: staged.rows,
                    snapshot_id: snapshot.snapshot_id(),
                    data_files,
                    table_data_files: total(snapshot.summary(), "total-data-files"),
                    added_small_file: false,
                    duplicate: false,
                });
            }
            Ok(Landed::Duplicate(original)) => {
                plan.delete_files().await;
                Ok(Committed::duplicate_of(&original))
            }
            Err(err) => Err(err),
        };
        for file in &kept {
            let _ = self.file_io.delete(file.file_path()).await;
        }
        outcome
    }

    /// Give up: every file the write produced goes.
    pub async fn discard(&self, staged: Staged) {
        staged.plan.delete_files().await;
    }
}
