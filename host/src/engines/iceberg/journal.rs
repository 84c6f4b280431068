//! Writes in progress (uploads, compactions), each recorded as a small file before
//! its first data file, and removed once it has committed or cleaned up. What is
//! left was cut short by a crash: a write whose id no snapshot of its table carries
//! never committed, and its data files are deleted.
//!
//! Several hosts may share a warehouse, so each host records its writes in a
//! directory of its own (`.writes/<id>/`) and holds an exclusive `flock` on the
//! directory's `.lock` for as long as it runs. The kernel drops the lock when the
//! process dies, however it dies: a directory whose lock can be taken belongs to a
//! host that is gone, and the host that takes it recovers that host's writes.
//!
//! The records live in the host's local directory: the warehouse itself when it is
//! local (every host sharing it recovers any other's), the `--host-dir` when it is
//! on object storage (only a host restarted on that directory does; the orphan
//! sweep removes what a host that never returns left).

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::{IcebergEngine, snapshot_carrying};
use crate::command::TableName;
use crate::error::{Context, Result};

/// The snapshot summary property that names the write a snapshot committed.
pub const WRITE_ID: &str = "floe.write-id";

const LOCK: &str = ".lock";

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

/// The warehouse's records of writes in progress, this host's among them.
pub(super) struct Journal {
    /// `<root>/.writes`
    base: PathBuf,
    /// This host's directory, locked, made at its first write.
    mine: OnceLock<(PathBuf, File)>,
}

impl Journal {
    pub fn new(root: &Path) -> Self {
        Self {
            base: root.join(".writes"),
            mine: OnceLock::new(),
        }
    }

    pub fn record(&self, table: &TableName, data_dir: &str, file_prefix: &str) -> Result<Recorded> {
        let dir = self.mine()?;
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

    fn mine(&self) -> Result<&Path> {
        if let Some((dir, _)) = self.mine.get() {
            return Ok(dir.as_path());
        }
        // Made under a temporary name and renamed once locked, so that no other
        // host ever sees it unlocked.
        let id = uuid::Uuid::new_v4().simple().to_string();
        let making = self.base.join(format!("{id}.new"));
        std::fs::create_dir_all(&making).context("creating the directory of writes in progress")?;
        let lock = File::create(making.join(LOCK)).context("creating the writes lock")?;
        if !try_lock(&lock) {
            return Err(crate::error::Error::internal(
                "could not lock a new writes directory",
            ));
        }
        let dir = self.base.join(id);
        std::fs::rename(&making, &dir).context("placing the directory of writes in progress")?;
        let (dir, _) = self.mine.get_or_init(|| (dir, lock));
        Ok(dir.as_path())
    }

    /// The write records of hosts that are gone, by host.
    fn abandoned(&self) -> Vec<Abandoned> {
        let Ok(dirs) = std::fs::read_dir(&self.base) else {
            return Vec::new();
        };
        let mine = self.mine.get().map(|(dir, _)| dir.clone());
        let mut found = Vec::new();
        let mut loose = Vec::new();
        for entry in dirs.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                // Records of hosts from before per-host directories.
                if path.extension().is_some_and(|e| e == "json") {
                    loose.push(path);
                }
                continue;
            }
            if Some(&path) == mine.as_ref() || being_made(&path) {
                continue;
            }
            let Ok(lock) = File::open(path.join(LOCK)) else {
                continue; // being made, or being removed
            };
            if !try_lock(&lock) {
                continue; // its host is alive
            }
            let records = std::fs::read_dir(&path)
                .map(|files| {
                    files
                        .flatten()
                        .map(|f| f.path())
                        .filter(|p| p.extension().is_some_and(|e| e == "json"))
                        .collect()
                })
                .unwrap_or_default();
            found.push(Abandoned {
                records,
                dir: Some((path, lock)),
            });
        }
        if !loose.is_empty() {
            found.push(Abandoned {
                records: loose,
                dir: None,
            });
        }
        found
    }
}

/// A gone host's write records, and its directory (locked by this host while the
/// records are recovered; none for records from before per-host directories).
struct Abandoned {
    records: Vec<PathBuf>,
    dir: Option<(PathBuf, File)>,
}

/// A directory another host is making: between creating its lock file and taking
/// the lock, it must not look abandoned. One left behind by a crash is swept once
/// it is a minute old.
fn being_made(dir: &Path) -> bool {
    dir.extension().is_some_and(|e| e == "new")
        && std::fs::metadata(dir)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().unwrap_or_default() < std::time::Duration::from_secs(60))
}

fn try_lock(file: &File) -> bool {
    // SAFETY: flock on a descriptor we own; released when it is closed.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

impl IcebergEngine {
    /// Delete the data files of writes that hosts now gone cut short (this host's
    /// own records are its writes in progress); the number of writes.
    pub async fn recover_writes(&self) -> Result<usize> {
        let mut recovered = 0;
        for gone in self.journal.abandoned() {
            for path in &gone.records {
                self.recover(path).await?;
                recovered += 1;
            }
            if let Some((dir, _lock)) = gone.dir {
                if let Err(err) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), %err, "could not remove a gone host's writes");
                }
            }
        }
        Ok(recovered)
    }

    async fn recover(&self, path: &Path) -> Result<()> {
        let Some(record) = std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Entry>(&bytes).ok())
        else {
            tracing::warn!(path = %path.display(), "ignoring an unreadable write record");
            let _ = std::fs::remove_file(path);
            return Ok(());
        };
        if !self.committed(&record).await? {
            let deleted = self
                .storage
                .delete_prefixed(&record.data_dir, &record.file_prefix)
                .await;
            tracing::info!(
                table = %record.table,
                write = %record.file_prefix,
                deleted,
                "deleted the files of a write that never committed"
            );
        }
        Recorded {
            path: path.to_path_buf(),
        }
        .done();
        Ok(())
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
