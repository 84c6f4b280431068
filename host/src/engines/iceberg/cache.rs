//! The plan cache: each table as last loaded, kept by its metadata location, and the
//! data files of its recent snapshots. A request looks up the table's current
//! location in the catalog (one indexed query) and parses metadata or manifests
//! only when a commit (floe's or another engine's) has moved it on. Bounded in
//! tables and bytes; the least recently used table goes first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use iceberg::spec::SnapshotRef;
use iceberg::table::Table;

use super::prune::{Condition, FileBounds};
use super::{LoadedTable, local_path};
use crate::command::TableName;
use crate::error::Result;
use crate::metrics::{count, metrics};

/// Snapshots whose files are kept per table: the current one and a few before it.
const SNAPSHOTS_PER_TABLE: usize = 4;
/// What a cached file costs beyond its path, roughly.
const FILE_OVERHEAD_BYTES: usize = 64;

/// The live data files of one snapshot.
#[derive(Debug)]
pub struct SnapshotFiles {
    /// Local paths, in manifest order.
    pub paths: Vec<String>,
    /// Each file's column bounds, in the order of `paths`.
    bounds: Vec<FileBounds>,
    /// Each file's size in bytes, in the order of `paths`.
    pub sizes: Vec<u64>,
    pub rows: u64,
    /// Whether the snapshot has delete files (written by other engines).
    pub deletes: bool,
    /// Whether DuckDB's `read_parquet` over `paths` returns exactly the snapshot's
    /// rows and columns: no delete files, and every file written under the
    /// snapshot's own schema (so names, types and columns agree).
    pub plain_parquet: bool,
}

impl SnapshotFiles {
    fn bytes(&self) -> usize {
        let paths: usize = self
            .paths
            .iter()
            .map(|p| p.len() + FILE_OVERHEAD_BYTES)
            .sum();
        paths + self.sizes.len() * 8 + self.bounds.iter().map(FileBounds::bytes).sum::<usize>()
    }

    /// The files (indexes into `paths`) that can hold rows meeting every condition
    /// (all of them when there are no conditions). At least one file is kept, so
    /// that the read's result has the same schema whatever it prunes.
    pub fn matching(&self, conditions: &[Condition]) -> Vec<usize> {
        let kept: Vec<usize> = (0..self.paths.len())
            .filter(|&i| self.bounds[i].may_match(conditions))
            .collect();
        match kept.is_empty() {
            true => (0..self.paths.len().min(1)).collect(),
            false => kept,
        }
    }

    /// The paths of `files` (indexes into `paths`).
    pub fn paths_of(&self, files: &[usize]) -> Vec<String> {
        files.iter().map(|&i| self.paths[i].clone()).collect()
    }

    /// The bytes of `files` (indexes into `paths`).
    pub fn bytes_of(&self, files: &[usize]) -> u64 {
        files.iter().map(|&i| self.sizes[i]).sum()
    }

    /// Group `index` of `files` dealt into `of` groups of about equal bytes: the
    /// largest file first, each to the lightest group (ties to the lowest group).
    /// The same files, snapshot and count give the same groups on every host.
    pub fn group(&self, files: &[usize], index: usize, of: usize) -> Vec<usize> {
        let mut order = files.to_vec();
        order.sort_by(|&a, &b| {
            self.sizes[b]
                .cmp(&self.sizes[a])
                .then_with(|| self.paths[a].cmp(&self.paths[b]))
        });
        let mut loads = vec![0u64; of.max(1)];
        let mut mine = Vec::new();
        for file in order {
            let lightest = (0..loads.len())
                .min_by_key(|&g| (loads[g], g))
                .expect("at least one group");
            loads[lightest] += self.sizes[file];
            if lightest == index {
                mine.push(file);
            }
        }
        mine.sort_unstable();
        mine
    }

    /// Read the snapshot's manifests (the cache's miss path).
    pub async fn load(table: &LoadedTable, snapshot: &SnapshotRef) -> Result<Self> {
        let live = table.live_files(snapshot).await?;
        let same_schema = snapshot.schema_id().is_some()
            && live
                .files
                .iter()
                .all(|f| f.schema_id == snapshot.schema_id());
        Ok(Self {
            paths: live
                .files
                .iter()
                .map(|f| local_path(f.file.file_path()).to_string())
                .collect(),
            bounds: live.files.iter().map(|f| FileBounds::of(&f.file)).collect(),
            sizes: live
                .files
                .iter()
                .map(|f| f.file.file_size_in_bytes())
                .collect(),
            rows: live.files.iter().map(|f| f.file.record_count()).sum(),
            deletes: live.deletes,
            plain_parquet: same_schema && !live.deletes,
        })
    }
}

pub struct PlanCache {
    max_tables: usize,
    max_bytes: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    tables: HashMap<TableName, Entry>,
    clock: u64,
}

struct Entry {
    table: Table,
    location: String,
    /// Files by snapshot id, the most recently used last.
    files: Vec<(i64, Arc<SnapshotFiles>)>,
    used: u64,
}

impl Entry {
    fn bytes(&self) -> usize {
        1024 + self.files.iter().map(|(_, f)| f.bytes()).sum::<usize>()
    }
}

impl PlanCache {
    /// A cache of at most `max_tables` tables and about `max_bytes`; 0 tables keeps nothing.
    pub fn new(max_tables: usize, max_bytes: usize) -> Self {
        Self {
            max_tables,
            max_bytes,
            state: Mutex::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.max_tables > 0
    }

    /// The table as cached, if its metadata is still at `location`.
    pub fn table(&self, name: &TableName, location: &str) -> Option<Table> {
        self.lookup(name, location, |entry| Some(entry.table.clone()))
    }

    pub fn put_table(&self, name: &TableName, table: &Table) {
        if !self.enabled() {
            return;
        }
        let location = table.metadata_location().unwrap_or_default().to_string();
        let mut state = self.state.lock().expect("plan cache");
        let used = state.tick();
        state.tables.insert(
            name.clone(),
            Entry {
                table: table.clone(),
                location,
                files: Vec::new(),
                used,
            },
        );
        self.evict(&mut state);
    }

    pub fn forget(&self, name: &TableName) {
        let mut state = self.state.lock().expect("plan cache");
        if state.tables.remove(name).is_some() {
            publish(&state);
        }
    }

    /// A snapshot's files, if cached for the table at `location`.
    pub fn files(
        &self,
        name: &TableName,
        location: &str,
        snapshot: i64,
    ) -> Option<Arc<SnapshotFiles>> {
        self.lookup(name, location, |entry| {
            let at = entry.files.iter().position(|(id, _)| *id == snapshot)?;
            let found = entry.files.remove(at);
            let files = found.1.clone();
            entry.files.push(found);
            Some(files)
        })
    }

    /// `find` in the table's entry if it is cached at `location` (marking it used),
    /// counted as a hit or a miss.
    fn lookup<T>(
        &self,
        name: &TableName,
        location: &str,
        find: impl FnOnce(&mut Entry) -> Option<T>,
    ) -> Option<T> {
        let mut state = self.state.lock().expect("plan cache");
        let tick = state.tick();
        let found = state
            .tables
            .get_mut(name)
            .filter(|entry| entry.location == location)
            .and_then(|entry| {
                entry.used = tick;
                find(entry)
            });
        counted(found)
    }

    pub fn put_files(
        &self,
        name: &TableName,
        location: &str,
        snapshot: i64,
        files: Arc<SnapshotFiles>,
    ) {
        let mut state = self.state.lock().expect("plan cache");
        let Some(entry) = state
            .tables
            .get_mut(name)
            .filter(|e| e.location == location)
        else {
            return;
        };
        entry.files.retain(|(id, _)| *id != snapshot);
        entry.files.push((snapshot, files));
        if entry.files.len() > SNAPSHOTS_PER_TABLE {
            entry.files.remove(0);
        }
        self.evict(&mut state);
    }

    /// Drop the least recently used tables until both bounds hold.
    fn evict(&self, state: &mut State) {
        let mut bytes: usize = state.tables.values().map(Entry::bytes).sum();
        while state.tables.len() > self.max_tables
            || (bytes > self.max_bytes && !state.tables.is_empty())
        {
            let oldest = state
                .tables
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(name, _)| name.clone())
                .expect("not empty");
            if let Some(entry) = state.tables.remove(&oldest) {
                bytes -= entry.bytes();
            }
        }
        publish(state);
    }
}

fn counted<T>(hit: Option<T>) -> Option<T> {
    let m = metrics();
    count(if hit.is_some() {
        &m.plan_cache_hits
    } else {
        &m.plan_cache_misses
    });
    hit
}

/// The cache's size, to the metrics.
fn publish(state: &State) {
    let bytes: usize = state.tables.values().map(Entry::bytes).sum();
    let m = metrics();
    m.plan_cache_tables.store(
        state.tables.len() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    m.plan_cache_bytes
        .store(bytes as u64, std::sync::atomic::Ordering::Relaxed);
}

impl State {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
}
