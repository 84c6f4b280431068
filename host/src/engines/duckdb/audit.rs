//! Which functions and tables a query names, read from DuckDB's own parse tree
//! (`json_serialize_sql`), so that the ones exposing the engine's internals are
//! refused before the query runs.

use duckdb::Connection;
use serde_json::Value;

use floe_wire::expr::is_internal_function as is_internal;

use crate::error::{Error, Result, quote};

/// Refuse `sql` (already known to prepare as one SELECT) if it names an internal function.
pub fn check_names(conn: &Connection, sql: &str) -> Result<()> {
    let tree: String = conn
        .query_row("SELECT json_serialize_sql(?::VARCHAR)", [sql], |row| {
            row.get(0)
        })
        .map_err(|err| Error::internal(format!("parsing the query's names: {err}")))?;
    let tree: Value = serde_json::from_str(&tree)
        .map_err(|err| Error::internal(format!("reading DuckDB's parse tree: {err}")))?;
    match first_internal(&tree) {
        Some(name) => Err(Error::PermissionDenied(format!(
            "{} is not allowed: queries may read the warehouse's tables, not the engine's internals",
            quote(name)
        ))),
        None => Ok(()),
    }
}

/// The first internal name in a parse tree: a function's `function_name`, or a
/// table reference's `table_name`.
fn first_internal(node: &Value) -> Option<&str> {
    match node {
        Value::Object(fields) => {
            fields
                .iter()
                .find_map(|(key, value)| match (key.as_str(), value) {
                    ("function_name" | "table_name", Value::String(name)) if is_internal(name) => {
                        Some(name.as_str())
                    }
                    _ => first_internal(value),
                })
        }
        Value::Array(items) => items.iter().find_map(first_internal),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// None when DuckDB's json extension is not installed here.
    fn check(sql: &str) -> Option<Result<()>> {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(crate::engines::duckdb::sql::LOAD_JSON)
            .ok()?;
        Some(check_names(&conn, sql))
    }

    #[test]
    fn internals_are_refused_wherever_they_hide() {
        for sql in [
            "SELECT * FROM duckdb_secrets()",
            "SELECT * FROM DuckDB_Settings()",
            "SELECT 1 WHERE 1 = (SELECT count(*) FROM duckdb_databases())",
            "WITH x AS (SELECT current_setting('threads') AS t) SELECT * FROM x",
            "SELECT * FROM pragma_database_list",
            "SELECT * FROM duckdb_tables",
        ] {
            let Some(outcome) = check(sql) else { return };
            let err = outcome.unwrap_err();
            assert!(matches!(err, Error::PermissionDenied(_)), "{sql}: {err}");
        }
    }

    #[test]
    fn ordinary_queries_pass() {
        for sql in [
            "SELECT 1",
            "SELECT upper('duckdb_secrets') AS duckdb_x",
            "SELECT * FROM range(3) t(duckdb_col)",
        ] {
            let Some(outcome) = check(sql) else { return };
            outcome.unwrap();
        }
    }
}
