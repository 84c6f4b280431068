//! Orphan files: files under a table's directory that no metadata references — left
//! by a host killed mid-upload or mid-commit, or by another engine. Only files older
//! than a safety window are removed, so a write in progress (whose files no
//! metadata names yet) is never touched.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::expire::Reached;
use super::{IcebergEngine, local_path};
use crate::command::TableName;
use crate::error::{Error, Result};
use crate::storage::Stored;

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
        if !self.storage.holds(metadata.location()) {
            return Err(Error::invalid(format!(
                "{name} lives at {}, outside the warehouse's {}: its orphan files are \
                 not floe's to remove",
                metadata.location(),
                self.storage.root()
            )));
        }
        let referenced = referenced(&table).await?;
        let cutoff = SystemTime::now() - older_than;
        let current = local_path(table.metadata_location());
        let listed = self.storage.list(metadata.location()).await?;
        let (orphans, seen_current) = unreferenced(listed, &referenced, current, cutoff);
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
        for orphan in orphans {
            if !dry_run && let Err(err) = self.storage.delete(&orphan.location).await {
                tracing::warn!(location = %orphan.location, %err, "could not remove an orphan file");
                continue;
            }
            found.files += 1;
            found.bytes += orphan.bytes;
        }
        if found.files > 0 && !dry_run {
            tracing::info!(table = %name, files = found.files, bytes = found.bytes, "removed orphan files");
        }
        Ok(found)
    }
}

/// The `listed` files that `referenced` does not name and that were last modified
/// before `cutoff`; and whether the listing met `current` (the table's metadata
/// file) among the referenced ones.
fn unreferenced(
    listed: Vec<Stored>,
    referenced: &HashSet<String>,
    current: &str,
    cutoff: SystemTime,
) -> (Vec<Stored>, bool) {
    let (mut orphans, mut seen_current) = (Vec::new(), false);
    for file in listed {
        let path = local_path(&file.location);
        if referenced.contains(path) {
            seen_current |= path == current;
        } else if file.modified.is_some_and(|m| m < cutoff) {
            orphans.push(file);
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
