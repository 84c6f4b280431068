//! Orphan files: files under a table's directory that no metadata references — left
//! by a host killed mid-upload or mid-commit, or by another engine. Only files older
//! than a safety window are removed, so a write in progress (whose files no
//! metadata names yet) is never touched.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::expire::Reached;
use super::{IcebergEngine, files_under, local_path};
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
        let current = local_path(table.metadata_location());
        let (orphans, seen_current) = unreferenced(root, &referenced, current, cutoff).await;
        // The walk must meet the metadata file it started from: if it did not, the
        // metadata's paths do not name the files on disk, and nothing is safe to delete.
        if !seen_current {
            return Err(Error::internal(format!(
                "{name}: the files under {} do not match the paths its metadata names \
                 ({}); no orphan file was removed",
                metadata.location(),
                table.metadata_location()
            )));
        }
        let mut found = Orphans {
            dry_run,
            ..Default::default()
        };
        for (path, size) in orphans {
            if !dry_run && let Err(err) = tokio::fs::remove_file(&path).await {
                tracing::warn!(path = %path.display(), %err, "could not remove an orphan file");
                continue;
            }
            found.files += 1;
            found.bytes += size;
        }
        if found.files > 0 && !dry_run {
            tracing::info!(table = %name, files = found.files, bytes = found.bytes, "removed orphan files");
        }
        Ok(found)
    }
}

/// The files under `root` that `referenced` does not name and that were last
/// modified before `cutoff`, with their sizes; and whether the walk met `current`
/// (the table's metadata file) among the referenced ones.
async fn unreferenced(
    root: PathBuf,
    referenced: &HashSet<String>,
    current: &str,
    cutoff: SystemTime,
) -> (Vec<(PathBuf, u64)>, bool) {
    let (mut orphans, mut seen_current) = (Vec::new(), false);
    for (path, meta) in files_under(root).await {
        if referenced.contains(path.to_string_lossy().as_ref()) {
            seen_current |= path.to_string_lossy() == current;
        } else if meta.modified().is_ok_and(|m| m < cutoff) {
            orphans.push((path, meta.len()));
        }
    }
    (orphans, seen_current)
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
