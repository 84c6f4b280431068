//! floe: a WebAssembly-pluggable Arrow Flight host for the lakehouse.
//!
//! - [`flight`]: the Flight service (where a `do_get` or `do_put` goes);
//! - [`command`] and [`plan`]: the JSON commands clients send, and what a read becomes;
//! - [`engines`]: Iceberg tables (iceberg-rust, SQL catalog) and DuckDB, the read engine;
//! - [`plugins`]: WASM transform plugins (registry, wasmtime runtime, per-ticket chains);
//! - [`cli`] and [`config`]: the `host` binary's edge.

pub mod cli;
pub mod command;
pub mod config;
pub mod engines;
pub mod error;
pub mod flight;
pub mod plan;
pub mod plugins;

pub use error::{Error, Result};
