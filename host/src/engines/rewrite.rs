//! Merge and replace_where: an upload that replaces some of an Iceberg table's
//! rows, committed as one `overwrite` snapshot. The Iceberg engine stages the
//! upload and swaps files; DuckDB checks the upload, finds the files holding
//! replaced rows (among those whose column bounds allow them) and reads the rows
//! of theirs that stay.

use std::collections::HashSet;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use floe_wire::expr::ast::Expr;
use futures::{StreamExt, TryStreamExt};

use super::Lakehouse;
use super::duckdb::sql::{Query, Replaced, Source};
use super::iceberg::{Committed, Staged, TableWrite, conditions, may_match};
use crate::error::{Error, Result, clip};

/// Attempts before a rewrite gives up on a table other commits keep moving.
const MAX_ATTEMPTS: usize = 8;

/// Which rows an upload replaces.
#[derive(Debug, Clone)]
pub enum Rewrite {
    /// Rows with the same values in these columns.
    Merge(Vec<String>),
    /// Rows matching this expression (the parser's).
    ReplaceWhere(Expr),
}

impl Rewrite {
    /// The table's rows this write replaces, given its upload (None: no rows).
    fn replaced<'a>(&'a self, upload: Option<&'a Source>) -> Option<Replaced<'a>> {
        match (self, upload) {
            (Rewrite::Merge(keys), Some(upload)) => Some(Replaced::Keys(keys, upload)),
            (Rewrite::Merge(_), None) => None,
            (Rewrite::ReplaceWhere(expr), _) => Some(Replaced::Where(expr)),
        }
    }
}

impl Lakehouse {
    /// Commit `write` replacing the rows `rewrite` names; on failure nothing is
    /// committed and every file written is deleted.
    pub(super) async fn commit_rewrite(
        &self,
        write: TableWrite,
        rewrite: &Rewrite,
    ) -> Result<Committed> {
        let mut staged = self.iceberg.stage(write).await?;
        let outcome = self.rewrite(&mut staged, rewrite).await;
        if outcome.is_err() {
            self.iceberg.discard(staged).await;
        }
        outcome
    }

    async fn rewrite(&self, staged: &mut Staged, rewrite: &Rewrite) -> Result<Committed> {
        let upload = staged.paths();
        let upload = (!upload.is_empty()).then(|| Source::read_parquet(&upload));
        let replaced_rows = rewrite.replaced(upload.as_ref());
        if let (Some(upload), Some(rows)) = (&upload, replaced_rows) {
            self.check_upload(upload, rows).await?;
        }
        let mut attempt = 1;
        loop {
            let base = self.iceberg.rewrite_base(staged).await?;
            let (replaced, kept) = match replaced_rows {
                Some(rows) if !base.files.is_empty() => {
                    let conditions = match rewrite {
                        Rewrite::Merge(keys) => staged.key_conditions(keys),
                        Rewrite::ReplaceWhere(expr) => conditions(expr, staged.schema()),
                    };
                    let candidates: Vec<String> = base
                        .files
                        .iter()
                        .filter(|f| may_match(f, &conditions))
                        .map(|f| local(f.file_path()))
                        .collect();
                    let hit = self.replaced_files(&candidates, rows).await?;
                    let replaced: Vec<_> = base
                        .files
                        .iter()
                        .filter(|f| hit.contains(&local(f.file_path())))
                        .cloned()
                        .collect();
                    let paths: Vec<String> =
                        replaced.iter().map(|f| local(f.file_path())).collect();
                    let kept = self.write_kept(staged, &paths, rows).await?;
                    (replaced, kept)
                }
                _ => (Vec::new(), Vec::new()),
            };
            match self
                .iceberg
                .commit_rewrite(staged, kept, replaced, &base)
                .await
            {
                Err(Error::Cancelled(why)) if attempt < MAX_ATTEMPTS => {
                    tracing::info!(attempt, %why, "choosing the replaced files again");
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    /// Refuse an upload with a null or repeated key (merge) or a row outside the
    /// expression (replace_where), naming it.
    async fn check_upload(&self, upload: &Source, rows: Replaced<'_>) -> Result<()> {
        let query = Query::upload_violation(upload, rows);
        let Some(row) = self.strings(query).await?.into_iter().next() else {
            return Ok(());
        };
        Err(Error::invalid(match rows {
            Replaced::Keys(keys, _) => format!(
                "the upload's keys {keys:?} must be unique and not null; {} is not",
                clip(&row)
            ),
            Replaced::Where(expr) => format!(
                "every uploaded row must match \"where\" ({expr}); {} does not",
                clip(&row)
            ),
        }))
    }

    /// Which of `files` hold replaced rows (local paths).
    async fn replaced_files(
        &self,
        files: &[String],
        rows: Replaced<'_>,
    ) -> Result<HashSet<String>> {
        if files.is_empty() {
            return Ok(HashSet::new());
        }
        let query = Query::replaced_files(files, rows);
        Ok(self
            .strings(query)
            .await?
            .into_iter()
            .map(|f| local(&f))
            .collect())
    }

    /// Write the rows of `files` that stay into new files.
    async fn write_kept(
        &self,
        staged: &mut Staged,
        files: &[String],
        rows: Replaced<'_>,
    ) -> Result<Vec<iceberg::spec::DataFile>> {
        if files.is_empty() {
            return Ok(Vec::new());
        }
        let mut kept = self.iceberg.kept_rows_write(staged).await?;
        let query = Query::kept_rows(files, rows);
        let mut batches = self.run(query).await?.into_stream();
        let mut written = Ok(());
        while let Some(batch) = batches.next().await {
            written = match batch {
                Ok(batch) => kept.write(&batch).await,
                Err(err) => Err(err),
            };
            if written.is_err() {
                break;
            }
        }
        let files = self.iceberg.close_kept(kept).await;
        written.and(files)
    }

    /// The first column of a (small) host query's result, as text.
    async fn strings(&self, query: Query) -> Result<Vec<String>> {
        let batches: Vec<RecordBatch> = self.run(query).await?.into_stream().try_collect().await?;
        let mut out = Vec::new();
        for batch in batches {
            let column = cast(batch.column(0), &DataType::Utf8)
                .map_err(|err| Error::internal(format!("reading a check's result: {err}")))?;
            let column = column.as_string::<i32>();
            out.extend((0..column.len()).map(|i| column.value(i).to_string()));
        }
        Ok(out)
    }
}

fn local(path: &str) -> String {
    super::iceberg::local_path(path).to_string()
}
