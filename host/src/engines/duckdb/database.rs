//! The DuckDB database handle, opened through the C API so that floe can ask DuckDB
//! what kind of statement a text is before running it: duckdb-rs does not expose
//! `duckdb_prepared_statement_type`, and its `prepare` *executes* every statement of
//! a multi-statement text but the last. Every query text floe runs for a client goes
//! through `check_select` first; the C API's prepare refuses several statements.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;

use duckdb::{Connection, ffi};

use crate::error::{Error, Result};

pub struct Database {
    raw: ffi::duckdb_database,
}

// A DuckDB database instance is thread-safe; connections are what must not be shared.
unsafe impl Send for Database {}
unsafe impl Sync for Database {}

impl Database {
    pub fn open(path: &Path) -> Result<Self> {
        let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
            Error::invalid(format!("database path {} contains NUL", path.display()))
        })?;
        let mut raw: ffi::duckdb_database = ptr::null_mut();
        let mut error: *mut std::os::raw::c_char = ptr::null_mut();
        // SAFETY: valid C string and out-pointers; the error string is freed below.
        let state =
            unsafe { ffi::duckdb_open_ext(c_path.as_ptr(), &mut raw, ptr::null_mut(), &mut error) };
        if state != ffi::DuckDBSuccess {
            let message = take_c_string(error);
            return Err(Error::internal(format!(
                "opening DuckDB database {}: {message}",
                path.display()
            )));
        }
        Ok(Self { raw })
    }

    /// A duckdb-rs connection on this database.
    pub fn connect(&self) -> Result<Connection> {
        // SAFETY: `raw` is open for as long as `self` lives; connections keep the
        // instance alive on DuckDB's side, and `DuckEngine` drops them before `self`.
        unsafe { Connection::open_from_raw(self.raw) }.map_err(|source| Error::DuckDb {
            context: "connecting to DuckDB".into(),
            source,
        })
    }

    /// Refuse anything but one SELECT statement, without running it. The error is
    /// DuckDB's own when the text does not prepare (syntax, unknown table, file access).
    pub fn check_select(&self, sql: &str) -> Result<()> {
        let c_sql =
            CString::new(sql).map_err(|_| Error::invalid("the query contains a NUL character"))?;
        let mut conn: ffi::duckdb_connection = ptr::null_mut();
        let mut stmt: ffi::duckdb_prepared_statement = ptr::null_mut();
        // SAFETY: every handle is created and destroyed here, in this order.
        unsafe {
            if ffi::duckdb_connect(self.raw, &mut conn) != ffi::DuckDBSuccess {
                return Err(Error::internal("cannot open a DuckDB connection"));
            }
            let prepared =
                ffi::duckdb_prepare(conn, c_sql.as_ptr(), &mut stmt) == ffi::DuckDBSuccess;
            let outcome = if prepared {
                Ok(ffi::duckdb_prepared_statement_type(stmt))
            } else {
                let message = ffi::duckdb_prepare_error(stmt);
                Err(if message.is_null() {
                    "the query could not be prepared".to_string()
                } else {
                    CStr::from_ptr(message).to_string_lossy().into_owned()
                })
            };
            ffi::duckdb_destroy_prepare(&mut stmt);
            ffi::duckdb_disconnect(&mut conn);
            match outcome {
                Ok(ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_SELECT) => Ok(()),
                Ok(_) => Err(Error::invalid(format!(
                    "{NOT_A_QUERY}: the statement is not a SELECT"
                ))),
                Err(message) => Err(super::read::query_failure(message)),
            }
        }
    }
}

pub const NOT_A_QUERY: &str =
    "only a single read-only query (SELECT, WITH, FROM, VALUES, ...) is allowed";

fn take_c_string(ptr: *mut std::os::raw::c_char) -> String {
    if ptr.is_null() {
        return "unknown error".to_string();
    }
    // SAFETY: DuckDB returned a NUL-terminated string that we must free.
    unsafe {
        let text = CStr::from_ptr(ptr).to_string_lossy().into_owned();
        ffi::duckdb_free(ptr.cast());
        text
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // SAFETY: opened in `open`, closed once.
        unsafe { ffi::duckdb_close(&mut self.raw) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_selects_pass_and_nothing_runs() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("t.db")).unwrap();
        db.connect()
            .unwrap()
            .execute_batch("CREATE TABLE t AS SELECT 1 AS a")
            .unwrap();
        assert!(db.check_select("SELECT * FROM t").is_ok());
        assert!(db.check_select("WITH x AS (SELECT 1) FROM x").is_ok());
        for refused in [
            "DROP TABLE t; SELECT 1",
            "SELECT 1; DROP TABLE t",
            "DELETE FROM t",
            "INSERT INTO t VALUES (2)",
            "CREATE TABLE u AS SELECT 1",
            "SET threads = 1",
            "ATTACH ':memory:' AS m",
        ] {
            assert!(db.check_select(refused).is_err(), "{refused} passed");
        }
        let rows: i64 = db
            .connect()
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1);
    }
}
