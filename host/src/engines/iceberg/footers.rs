//! Parquet footers, with their page indexes, of the data files the host scans
//! itself, kept by path: a data file never changes once written. Bounded in bytes;
//! the least recently used go first.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;

use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::file::metadata::PageIndexPolicy;

use crate::error::{Error, Result};
use crate::metrics::metrics;

pub struct Footers {
    max_bytes: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    files: HashMap<String, Footer>,
    bytes: usize,
    clock: u64,
}

struct Footer {
    metadata: ArrowReaderMetadata,
    bytes: usize,
    used: u64,
}

impl Footers {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            state: Mutex::default(),
        }
    }

    /// The footer of the file at `path`, read from it on a miss. Blocks.
    pub fn get(&self, path: &str) -> Result<ArrowReaderMetadata> {
        if let Some(found) = self.cached(path) {
            return Ok(found);
        }
        let file = File::open(path).map_err(|err| io_error(path, err))?;
        // Files from other engines may have no page index: pruning then stops at row groups.
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
        let metadata = ArrowReaderMetadata::load(&file, options)
            .map_err(|err| Error::internal(format!("reading {path}: {err}")))?;
        self.put(path, &metadata);
        Ok(metadata)
    }

    fn cached(&self, path: &str) -> Option<ArrowReaderMetadata> {
        let mut state = self.state.lock().expect("footers");
        state.clock += 1;
        let clock = state.clock;
        let footer = state.files.get_mut(path)?;
        footer.used = clock;
        Some(footer.metadata.clone())
    }

    fn put(&self, path: &str, metadata: &ArrowReaderMetadata) {
        let bytes = path.len() + metadata.metadata().memory_size();
        if bytes > self.max_bytes {
            return;
        }
        let mut state = self.state.lock().expect("footers");
        state.clock += 1;
        let used = state.clock;
        let footer = Footer {
            metadata: metadata.clone(),
            bytes,
            used,
        };
        if let Some(old) = state.files.insert(path.to_string(), footer) {
            state.bytes -= old.bytes;
        }
        state.bytes += bytes;
        while state.bytes > self.max_bytes {
            let oldest = state
                .files
                .iter()
                .min_by_key(|(_, f)| f.used)
                .map(|(path, _)| path.clone())
                .expect("bytes are counted from files");
            let gone = state.files.remove(&oldest).expect("found just now");
            state.bytes -= gone.bytes;
        }
        let m = metrics();
        m.footer_cache_files
            .store(state.files.len() as u64, Relaxed);
        m.footer_cache_bytes.store(state.bytes as u64, Relaxed);
    }
}

/// A data file that could not be opened, as a client can act on it.
pub fn io_error(path: &str, err: std::io::Error) -> Error {
    match err.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound(format!(
            "a file the read needs is not there (was its snapshot expired meanwhile?): {path}"
        )),
        _ => Error::internal(format!("reading {path}: {err}")),
    }
}
