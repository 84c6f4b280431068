//! What crosses floe's boundaries, defined once for the host and the guests:
//!
//! - [`ipc`]: schemas and record batches as the Arrow IPC stream bytes of the
//!   `floe:plugin` WIT contract (`wit/transform.wit`);
//! - [`expr`] (feature `expr`): a client's filter, parsed as exactly one SQL expression
//!   (DuckDB's dialect). The host's `filter` field and the `filter` plugin both use it,
//!   so they accept one grammar.

pub mod ipc;

#[cfg(feature = "expr")]
pub mod expr;
