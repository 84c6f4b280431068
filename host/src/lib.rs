//! floe: a WebAssembly-pluggable Arrow Flight host for the lakehouse.
//!
//! A request travels down this map, and nothing imports upwards:
//!
//! - [`flight`]: the Flight front-end, protocol only (decode a request, call the core,
//!   encode the answer);
//! - [`core`] with the use cases [`read`] (plan, bind the chain once, run) and
//!   [`write`] (chain, one write handle, commit or abort): what every front-end calls;
//! - [`engines`]: the [`Lakehouse`](engines::Lakehouse), the only door to storage
//!   (Iceberg tables in a SQL catalog, DuckDB for reads and native tables; all SQL
//!   text in `engines::duckdb::sql`);
//! - [`plugins`]: WASM transform plugins (registry, wasmtime runtime, sandbox, chains);
//! - [`auth`]: who a request comes from (users, tokens, the Handshake); [`access`]:
//!   what that principal may do, checked by the use cases;
//! - [`limits`]: every request's deadline and the bounded pools of query and plugin
//!   slots;
//! - [`command`]: the JSON commands clients send; [`config`]: every setting, declared
//!   once; [`error`]; [`blocking`];
//! - [`cli`]: the `host` binary's edge.

pub mod access;
pub mod age;
pub mod auth;
pub mod blocking;
pub mod cli;
pub mod cluster;
pub mod command;
pub mod config;
pub mod core;
pub mod engines;
pub mod error;
pub mod flight;
pub mod limits;
pub mod metrics;
pub mod plugins;
pub mod read;
pub mod storage;
pub mod write;

pub use error::{Error, Result};
