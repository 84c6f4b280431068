//! DuckDB reports user mistakes (bad SQL, unknown columns, type errors), confinement
//! violations and its own failures through one error type. They are told apart here,
//! where every DuckDB error enters the host, by the kind DuckDB names in its message.

use crate::error::{Context, Error, Result};

pub const NOT_A_QUERY: &str = "only a single read-only query (SELECT, WITH, FROM, VALUES, ...) \
     is allowed; tables are written by upload (floe's DoPut, Flight SQL ingest, ADBC adbc_ingest)";

/// A failed query, explained in terms of what the client sent.
pub fn query_error(err: duckdb::Error) -> Error {
    match err {
        duckdb::Error::DuckDBFailure(_, Some(message)) => classify(message),
        other => classify(other.to_string()),
    }
}

/// DuckDB's message, as the error a client can act on.
pub fn classify(message: String) -> Error {
    if message.contains("Permission Error") {
        Error::PermissionDenied(format!(
            "queries may not read files outside the warehouse: {message}"
        ))
    } else if message.contains("Parser Error")
        || message.contains("Cannot prepare multiple statements")
    {
        Error::invalid(format!(
            "{NOT_A_QUERY}; this does not parse as one: {message}"
        ))
    } else if message.contains("Catalog Error") && message.contains("does not exist") {
        Error::NotFound(message)
    } else if [
        "Binder Error",
        "Conversion Error",
        "Invalid Input Error",
        "Catalog Error",
        "Not implemented Error",
        "Out of Range Error",
    ]
    .iter()
    .any(|kind| message.contains(kind))
    {
        Error::InvalidArgument(message)
    } else if message.contains("IO Error")
        && (message.contains("No such file or directory")
            || message.contains("No files found that match"))
    {
        // Tables' files are only deleted with the snapshots that used them.
        Error::NotFound(format!(
            "a file the read needs is not there (was its snapshot expired meanwhile?): {message}"
        ))
    } else if message.contains("INTERRUPT Error") {
        Error::Cancelled("the query was interrupted".to_string())
    } else if message.contains("Out of Memory Error") {
        Error::ResourceExhausted(message)
    } else {
        Error::Internal(format!("query failed: {message}"))
    }
}

/// The engine's own statements: classified the same way, with what was being done.
impl<T> Context<T> for std::result::Result<T, duckdb::Error> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|err| {
            let context = context.into();
            match classify(err.to_string()) {
                Error::Internal(_) => Error::Internal(format!("{context}: {err}")),
                other => other,
            }
        })
    }
}
