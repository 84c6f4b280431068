//! Blocking work (DuckDB calls, WASM guests) off the async executor's threads.

use crate::error::{Error, Result};

/// Run `f` on tokio's blocking pool; a panic in it fails this call only.
pub async fn run<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|err| Error::internal(format!("blocking task failed: {err}")))?
}
