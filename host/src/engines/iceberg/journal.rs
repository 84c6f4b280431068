//! Writes in progress (uploads, compactions), each recorded as a small file before
//! its first data file, and removed once it has committed or cleaned up. What a
//! host finds here when it starts was cut short by a crash: a write whose id no
//! snapshot of its table carries never committed, and its data files are deleted.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{IcebergEngine, files_under, local_path, snapshot_carrying};
use crate::command::TableName;
use crate::error::{Context, Result};

/// The snapshot summary property that names the write a snapshot committed.
pub const WRITE_ID: &str = "floe.write-id";

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    table: String,
    data_dir: String,
    /// Every data file of the write starts with it; it is also the write's id.
    file_prefix: String,
}

/// One write's record; dropping it does not remove it (a crash would not either).
pub(super) struct Recorded {
    path: PathBuf,
}

impl Recorded {
    /// The write committed or cleaned up after itself.
    pub fn done(&self) {
        if let Err(err) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), %err, "could not remove a write's record");
        }
    }
}

pub(super) fn dir(root: &Path) -> PathBuf {
    root.join(".writes")
}

pub(super) fn record(
    root: &Path,
    table: &TableName,
    data_dir: &str,
    file_prefix: &str,
) -> Result<Recorded> {
    let dir = dir(root);
    std::fs::create_dir_all(&dir).context("creating the directory of writes in progress")?;
    let entry = Entry {
        table: table.to_string(),
        data_dir: data_dir.to_string(),
        file_prefix: file_prefix.to_string(),
    };
    let path = dir.join(format!("{file_prefix}.json"));
    let text = serde_json::to_vec(&entry).expect("entries serialize");
    std::fs::write(&path, text).context("recording a write in progress")?;
    Ok(Recorded { path })
}

impl IcebergEngine {
    /// Delete the data files of writes a crash cut short; the number of writes.
    pub async fn recover_writes(&self) -> Result<usize> {
        let Ok(entries) = std::fs::read_dir(dir(&self.root)) else {
            return Ok(0);
        };
        let mut recovered = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(record) = std::fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Entry>(&bytes).ok())
            else {
                tracing::warn!(path = %path.display(), "ignoring an unreadable write record");
                continue;
            };
            if !self.committed(&record).await? {
                let deleted = delete_prefixed(&record.data_dir, &record.file_prefix).await;
                tracing::info!(
                    table = %record.table,
                    write = %record.file_prefix,
                    deleted,
                    "deleted the files of a write that never committed"
                );
            }
            Recorded { path }.done();
            recovered += 1;
        }
        Ok(recovered)
    }

    /// Whether a snapshot of the write's table carries its id.
    async fn committed(&self, record: &Entry) -> Result<bool> {
        let Ok(name) = TableName::parse(&record.table) else {
            return Ok(false);
        };
        let Some(table) = self.load(&name).await? else {
            return Ok(false);
        };
        Ok(snapshot_carrying(table.metadata(), WRITE_ID, &record.file_prefix).is_some())
    }
}

/// Delete the files under `data_dir` whose names start with `prefix`; how many.
pub(super) async fn delete_prefixed(data_dir: &str, prefix: &str) -> usize {
    let mut deleted = 0;
    for (path, _) in files_under(PathBuf::from(local_path(data_dir))).await {
        if !path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with(prefix))
        {
            continue;
        }
        match tokio::fs::remove_file(&path).await {
            Ok(()) => deleted += 1,
            Err(err) => {
                tracing::warn!(path = %path.display(), %err, "could not delete an aborted data file")
            }
        }
    }
    deleted
}
