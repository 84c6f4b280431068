//! The DuckDB database handle, opened through the C API so that floe can ask DuckDB
//! what kind of statement a text is before running it: duckdb-rs does not expose
//! `duckdb_prepared_statement_type`, and its `prepare` *executes* every statement of
//! a multi-statement text but the last. Every query text floe runs for a client goes
//! through `check_select` first; the C API's prepare refuses several statements.

use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::ffi::FFI_ArrowSchema;
use duckdb::{Connection, ffi};
use std::sync::Arc;

use super::error::NOT_A_QUERY;
use crate::error::{Context as _, Error, Result};

pub struct Database {
    raw: ffi::duckdb_database,
}

// A DuckDB database instance is thread-safe; connections are what must not be shared.
unsafe impl Send for Database {}
unsafe impl Sync for Database {}

impl Database {
    /// The database file at `path`, or an in-memory database.
    pub fn open(path: Option<&Path>) -> Result<Self> {
        let c_path = match path {
            Some(path) => Some(CString::new(path.as_os_str().as_bytes()).map_err(|_| {
                Error::invalid(format!("database path {} contains NUL", path.display()))
            })?),
            None => None,
        };
        let mut raw: ffi::duckdb_database = ptr::null_mut();
        let mut error: *mut std::os::raw::c_char = ptr::null_mut();
        // SAFETY: a valid C string (or NULL: in memory) and out-pointers; the error
        // string is freed below.
        let state = unsafe {
            ffi::duckdb_open_ext(
                c_path.as_ref().map_or(ptr::null(), |p| p.as_ptr()),
                &mut raw,
                ptr::null_mut(),
                &mut error,
            )
        };
        if state == ffi::DuckDBSuccess {
            return Ok(Self { raw });
        }
        let message = take_c_string(error);
        let name = path.map_or("in memory".to_string(), |p| p.display().to_string());
        if message.contains("Could not set lock") {
            return Err(Error::Unavailable(format!(
                "the DuckDB database {name} is in use by another process: with a SQLite \
                 catalog one host serves a warehouse; for several, share a PostgreSQL \
                 catalog (--catalog postgres://...). DuckDB said: {message}"
            )));
        }
        Err(Error::internal(format!(
            "opening DuckDB database {name}: {message}"
        )))
    }

    /// A duckdb-rs connection on this database.
    pub fn connect(&self) -> Result<Connection> {
        // SAFETY: `raw` is open for as long as `self` lives; connections keep the
        // instance alive on DuckDB's side, and `DuckEngine` drops them before `self`.
        unsafe { Connection::open_from_raw(self.raw) }.context("connecting to DuckDB")
    }

    /// Refuse anything but one SELECT statement, without running it; what preparing
    /// it tells. The error is DuckDB's own when the text does not prepare (syntax,
    /// unknown table, file access).
    pub fn check_select(&self, sql: &str) -> Result<Described> {
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
            let outcome = if !prepared {
                let message = ffi::duckdb_prepare_error(stmt);
                Err(super::error::classify(if message.is_null() {
                    "the query could not be prepared".to_string()
                } else {
                    CStr::from_ptr(message).to_string_lossy().into_owned()
                }))
            } else if ffi::duckdb_prepared_statement_type(stmt)
                != ffi::duckdb_statement_type_DUCKDB_STATEMENT_TYPE_SELECT
            {
                Err(Error::invalid(format!(
                    "{NOT_A_QUERY}: the statement is not a SELECT"
                )))
            } else {
                describe(conn, stmt)
            };
            ffi::duckdb_destroy_prepare(&mut stmt);
            ffi::duckdb_disconnect(&mut conn);
            outcome
        }
    }
}

/// What preparing a SELECT tells without running it.
pub struct Described {
    /// The result schema; None while the query has parameters, whose values' types
    /// can decide it (`SELECT ?`).
    pub schema: Option<SchemaRef>,
    /// One field per parameter (`$1`, `$2`, ...), typed as far as DuckDB could infer
    /// from the query; `Null` where any value will do.
    pub parameters: SchemaRef,
}

/// SAFETY: `conn` and `stmt` are live handles, `stmt` prepared on `conn`.
unsafe fn describe(
    conn: ffi::duckdb_connection,
    stmt: ffi::duckdb_prepared_statement,
) -> Result<Described> {
    unsafe {
        let count = ffi::duckdb_nparams(stmt);
        let parameters = (1..=count)
            .map(|i| {
                let mut logical = ffi::duckdb_param_logical_type(stmt, i);
                let known = !logical.is_null()
                    && !matches!(
                        ffi::duckdb_get_type_id(logical),
                        ffi::DUCKDB_TYPE_DUCKDB_TYPE_INVALID | ffi::DUCKDB_TYPE_DUCKDB_TYPE_ANY
                    );
                if !known {
                    if !logical.is_null() {
                        ffi::duckdb_destroy_logical_type(&mut logical);
                    }
                    logical = ffi::duckdb_create_logical_type(ffi::DUCKDB_TYPE_DUCKDB_TYPE_SQLNULL);
                }
                (logical, CString::new(format!("${i}")).expect("digits"))
            })
            .collect::<Vec<_>>();
        let (mut types, names): (Vec<_>, Vec<_>) = parameters.into_iter().unzip();
        let mut name_ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
        let parameters = arrow_schema(conn, &mut types, &mut name_ptrs);
        for logical_type in &mut types {
            ffi::duckdb_destroy_logical_type(logical_type);
        }
        let schema = if count == 0 {
            Some(result_schema(conn, stmt)?)
        } else {
            None
        };
        Ok(Described {
            schema,
            parameters: parameters?,
        })
    }
}

/// The Arrow schema of a prepared statement's result, converted with the connection's
/// Arrow options exactly as duckdb-rs converts the executed result's.
///
/// SAFETY: `conn` and `stmt` are live handles, `stmt` prepared on `conn`.
unsafe fn result_schema(
    conn: ffi::duckdb_connection,
    stmt: ffi::duckdb_prepared_statement,
) -> Result<SchemaRef> {
    unsafe {
        let count = ffi::duckdb_prepared_statement_column_count(stmt);
        let mut types: Vec<_> = (0..count)
            .map(|i| ffi::duckdb_prepared_statement_column_logical_type(stmt, i))
            .collect();
        let mut names: Vec<*const c_char> = (0..count)
            .map(|i| ffi::duckdb_prepared_statement_column_name(stmt, i))
            .collect();
        let schema = arrow_schema(conn, &mut types, &mut names);
        for logical_type in &mut types {
            ffi::duckdb_destroy_logical_type(logical_type);
        }
        for name in names {
            ffi::duckdb_free(name as *mut std::ffi::c_void);
        }
        schema
    }
}

/// DuckDB logical types and names as an Arrow schema, with `conn`'s Arrow options.
///
/// SAFETY: `conn` is live; `types` and `names` are as long and valid.
unsafe fn arrow_schema(
    conn: ffi::duckdb_connection,
    types: &mut [ffi::duckdb_logical_type],
    names: &mut [*const c_char],
) -> Result<SchemaRef> {
    unsafe {
        let mut options: ffi::duckdb_arrow_options = ptr::null_mut();
        ffi::duckdb_connection_get_arrow_options(conn, &mut options);
        let mut schema = FFI_ArrowSchema::empty();
        let mut error = ffi::duckdb_to_arrow_schema(
            options,
            types.as_mut_ptr(),
            names.as_mut_ptr(),
            types.len() as ffi::idx_t,
            &mut schema as *mut FFI_ArrowSchema as *mut ffi::ArrowSchema,
        );
        let outcome = if ffi::duckdb_error_data_has_error(error) {
            let message = CStr::from_ptr(ffi::duckdb_error_data_message(error));
            Err(Error::internal(format!(
                "converting a schema to Arrow: {}",
                message.to_string_lossy()
            )))
        } else {
            Schema::try_from(&schema)
                .map(Arc::new)
                .map_err(|err| Error::internal(format!("importing a schema: {err}")))
        };
        ffi::duckdb_destroy_error_data(&mut error);
        ffi::duckdb_destroy_arrow_options(&mut options);
        outcome
    }
}

/// DuckDB's version, and how the host carries it: compiled in, or the shared
/// library it loaded (its path).
pub fn library() -> (String, String) {
    // SAFETY: returns a static NUL-terminated string.
    let version = unsafe { CStr::from_ptr(ffi::duckdb_library_version()) }
        .to_string_lossy()
        .into_owned();
    let how = if cfg!(feature = "bundled") {
        "compiled in (bundled)".to_string()
    } else {
        format!("shared library {}", shared_library_path())
    };
    (version, how)
}

/// The file the dynamic loader took DuckDB's C API from.
fn shared_library_path() -> String {
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let symbol = ffi::duckdb_library_version as *const std::ffi::c_void;
    // SAFETY: `symbol` is a function of a loaded object; `info` is written by dladdr.
    let found = unsafe { libc::dladdr(symbol, &mut info) } != 0 && !info.dli_fname.is_null();
    if found {
        // SAFETY: dladdr set a NUL-terminated path.
        unsafe { CStr::from_ptr(info.dli_fname) }
            .to_string_lossy()
            .into_owned()
    } else {
        "(path unknown)".to_string()
    }
}

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

    /// A fresh database holding `setup`'s objects (the directory lives as long as it).
    fn database(setup: &str) -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(Some(&dir.path().join("t.db"))).unwrap();
        db.connect().unwrap().execute_batch(setup).unwrap();
        (dir, db)
    }

    #[test]
    fn resource_settings_hold_for_every_connection() {
        let dir = tempfile::tempdir().unwrap();
        let sql = crate::engines::duckdb::sql::resources(256 << 20, 1, dir.path());
        let (_dir, db) = database(&sql);
        let setting: String = db
            .connect()
            .unwrap()
            .query_row(
                "SELECT current_setting('parquet_metadata_cache')::VARCHAR || ' ' || \
                 current_setting('threads')::VARCHAR",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(setting, "true 1");
    }

    #[test]
    fn the_prepared_schema_is_the_executed_one() {
        let (_dir, db) = database("");
        let sql = "SELECT 1::INTEGER AS i, 2::BIGINT AS b, 1.5::DECIMAL(18, 3) AS d, \
                   'x' AS s, 'x'::BLOB AS bl, TRUE AS t, DATE '2024-01-02' AS dt, \
                   TIMESTAMPTZ '2024-01-02 03:04:05+00' AS ts, TIMESTAMP '2024-01-02' AS tn, \
                   [1, 2] AS l, {'a': 1, 'b': 'c'} AS st, NULL::DOUBLE AS n";
        let prepared = db.check_select(sql).unwrap().schema.unwrap();
        let conn = db.connect().unwrap();
        let mut stmt = conn.prepare(sql).unwrap();
        let executed = stmt.query_arrow([]).unwrap().get_schema();
        assert_eq!(prepared, executed);
    }

    #[test]
    fn parameters_are_counted_and_typed_where_the_query_says() {
        let (_dir, db) = database("CREATE TABLE t AS SELECT 1::BIGINT AS a");
        let described = db
            .check_select("SELECT a, ? AS x FROM t WHERE a = ?")
            .unwrap();
        assert!(described.schema.is_none());
        let types: Vec<_> = described
            .parameters
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        assert_eq!(types.len(), 2);
        assert_eq!(types[1], arrow::datatypes::DataType::Int64);
    }

    #[test]
    fn only_single_selects_pass_and_nothing_runs() {
        let (_dir, db) = database("CREATE TABLE t AS SELECT 1 AS a");
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
