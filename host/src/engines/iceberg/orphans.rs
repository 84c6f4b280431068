//! Orphan files: files under a table's directory that no metadata references — left
//! by a host killed mid-upload or mid-commit, or by another engine. Only files older
//! than a safety window are removed, so a write in progress (whose files no
//! metadata names yet) is never touched.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::expire::Reached;
use super::{IcebergEngine, local_path};
use crate::command::TableName;
use crate::error::{Error, Result};

/// What an orphan cleanup found (and, unless a dry run, removed).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Orphans {
    pub files: usize,
    pub bytes: u64,
    pub dry_run: bool,
}

impl IcebergEngine {
    /// Remove the files under `name`'s directory that no snapshot, manifest or
    /// metadata file of the table references and that are older than `older_than`.
    pub async fn remove_orphans(
        &self,
        name: &TableName,
        older_than: Duration,
        dry_run: bool,
    ) -> Result<Orphans> {
        let table = self.load(name).await?.ok_or_else(|| name.not_found())?;
        let metadata = table.metadata();
        let root = PathBuf::from(local_path(metadata.location()));
        if !root.is_absolute() {
            return Err(Error::invalid(format!(
                "{name} lives at {}: orphan files are looked for in local directories only",
                metadata.location()
            )));
        }
        let referenced = referenced(&table).await?;
        let cutoff = SystemTime::now() - older_than;
        let mut found = Orphans {
            dry_run,
            ..Default::default()
        };
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            let Ok(mut entries) = tokio::fs::read_dir(&dir).await else {
                continue;
            };
            while let Ok(Some(entry)) = entries.next_entry().await {
                let Ok(meta) = entry.metadata().await else {
                    continue;
                };
                let path = entry.path();
                if meta.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let text = path.to_string_lossy();
                if referenced.contains(text.as_ref())
                    || meta.modified().map_or(true, |m| m > cutoff)
                {
                    continue;
                }
                if !dry_run && let Err(err) = tokio::fs::remove_file(&path).await {
                    tracing::warn!(path = %text, %err, "could not remove an orphan file");
                    continue;
                }
                found.files += 1;
                found.bytes += meta.len();
            }
        }
        if found.files > 0 && !dry_run {
            tracing::info!(table = %name, files = found.files, bytes = found.bytes, "removed orphan files");
        }
        Ok(found)
    }
}

/// Every file the table's metadata leads to, as local paths: the current metadata
/// file and those its log names, each kept snapshot's manifest list, manifests and
/// data files (live or not), and statistics files.
async fn referenced(table: &super::LoadedTable) -> Result<HashSet<String>> {
    let metadata = table.metadata();
    let snapshots: Vec<_> = metadata.snapshots().cloned().collect();
    let reached = Reached::of(table, &snapshots).await?;
    let stats = metadata
        .statistics_iter()
        .map(|s| s.statistics_path.clone())
        .chain(
            metadata
                .partition_statistics_iter()
                .map(|s| s.statistics_path.clone()),
        );
    Ok(reached
        .manifest_lists
        .into_iter()
        .chain(reached.manifests)
        .chain(reached.named)
        .chain(
            metadata
                .metadata_log()
                .iter()
                .map(|m| m.metadata_file.clone()),
        )
        .chain([table.metadata_location().to_string()])
        .chain(stats)
        .map(|p| local_path(&p).to_string())
        .collect())
}
