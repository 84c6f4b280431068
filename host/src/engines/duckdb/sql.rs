//! Every SQL text the host runs on DuckDB is built here, from quoted identifiers and
//! literals, expressions the filter parser rendered, and other fragments of this
//! module. Nothing else in the host puts SQL together.

use std::path::Path;

use arrow::datatypes::{DataType, Fields, Schema, TimeUnit};
use floe_wire::expr::ast::Expr;

use crate::command::{SqlValue, TableName};
use crate::error::{Error, Result};
use crate::storage::S3Access;

/// A query the engine can run: a client's SQL (with the values of its `?` / `$n`
/// parameters, bound by DuckDB, never spliced into the text), or one built here.
#[derive(Debug, Clone, PartialEq)]
pub struct Query(String, Origin, Vec<SqlValue>);

/// Who wrote a query: a client's SQL is checked for what it names before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Client,
    Host,
}

impl Query {
    /// A client's SQL as written (a trailing `;` is harmless). The engine refuses
    /// anything but one read-only query, naming no engine internals, before running it.
    pub fn client(sql: &str, params: &[SqlValue]) -> Self {
        Self(
            sql.trim().trim_end_matches(';').to_string(),
            Origin::Client,
            params.to_vec(),
        )
    }

    pub fn origin(&self) -> Origin {
        self.1
    }

    /// The values bound to the query's parameters, in order.
    pub fn params(&self) -> &[SqlValue] {
        &self.2
    }

    /// `SELECT columns FROM source WHERE filter LIMIT n`: DuckDB pushes all three
    /// into the scan. The filter is the parser's expression, rendered.
    pub fn table_read(
        source: &Source,
        columns: Option<&[String]>,
        filter: Option<&Expr>,
        limit: Option<u64>,
    ) -> Self {
        let columns = columns.map_or_else(|| "*".to_string(), column_list);
        let mut sql = format!("SELECT {columns} FROM {}", source.0);
        if let Some(filter) = filter {
            sql.push_str(&format!(" WHERE ({filter})"));
        }
        if let Some(limit) = limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        Self(sql, Origin::Host, Vec::new())
    }

    /// Only `columns` of this query's result, in that order.
    pub fn project(&self, columns: &[String]) -> Self {
        // The newline ends a trailing `--` comment of a client's query.
        Self(
            format!("SELECT {} FROM (\n{}\n)", column_list(columns), self.0),
            self.1,
            self.2.clone(),
        )
    }

    /// Every row of a table.
    pub fn whole(name: &TableName) -> Self {
        Self(
            format!("SELECT * FROM {}", table(name)),
            Origin::Host,
            Vec::new(),
        )
    }

    pub fn text(&self) -> &str {
        &self.0
    }

    /// The query as a subquery, for asking DuckDB its result schema.
    pub(super) fn described(&self) -> String {
        format!("SELECT * FROM (\n{}\n) AS floe_schema", self.0)
    }
}

impl std::fmt::Display for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which of a table's rows a merge or replace_where replaces: those whose keys a
/// row of the upload has, or those matching an expression (the parser's, rendered).
#[derive(Debug, Clone, Copy)]
pub enum Replaced<'a> {
    Keys(&'a [String], &'a Source),
    Where(&'a Expr),
}

impl Replaced<'_> {
    /// True for a row `t` of the table that is replaced.
    fn condition(&self) -> String {
        match self {
            Replaced::Keys(keys, upload) => {
                let same = keys
                    .iter()
                    .map(|k| format!("s.{0} = t.{0}", quote_ident(k)))
                    .collect::<Vec<_>>()
                    .join(" AND ");
                format!("EXISTS (SELECT 1 FROM {} AS s WHERE {same})", upload.0)
            }
            Replaced::Where(expr) => format!("coalesce(({expr}), false)"),
        }
    }
}

impl Query {
    /// One upload row that breaks the write's rule, as text (no rows: none does):
    /// a key that is null or repeated (merge), a row outside `where` (replace_where).
    pub fn upload_violation(upload: &Source, replaced: Replaced) -> Self {
        let sql = match replaced {
            Replaced::Keys(keys, _) => {
                let columns = column_list(keys);
                let fields = keys
                    .iter()
                    .map(|k| format!("{}: {}", quote_literal(k), quote_ident(k)))
                    .collect::<Vec<_>>()
                    .join(", ");
                let any_null = keys
                    .iter()
                    .map(|k| format!("{} IS NULL", quote_ident(k)))
                    .collect::<Vec<_>>()
                    .join(" OR ");
                format!(
                    "SELECT CAST({{{fields}}} AS VARCHAR) AS row, count(*) AS n FROM {} \
                     GROUP BY {columns} HAVING count(*) > 1 OR {any_null} LIMIT 1",
                    upload.0
                )
            }
            Replaced::Where(expr) => format!(
                "SELECT CAST(s AS VARCHAR) AS row, 1 AS n FROM {} AS s \
                 WHERE NOT coalesce(({expr}), false) LIMIT 1",
                upload.0
            ),
        };
        Self(sql, Origin::Host, Vec::new())
    }

    /// Which of `files` hold replaced rows (one column, `file`).
    pub fn replaced_files(files: &[String], replaced: Replaced) -> Self {
        let list: Vec<String> = files.iter().map(|f| quote_literal(f)).collect();
        Self(
            format!(
                "SELECT DISTINCT floe_file AS file FROM read_parquet([{}], \
                 hive_partitioning = false, filename = 'floe_file') AS t WHERE {}",
                list.join(", "),
                replaced.condition()
            ),
            Origin::Host,
            Vec::new(),
        )
    }

    /// The rows of `files` the write keeps: those not replaced.
    pub fn kept_rows(files: &[String], replaced: Replaced) -> Self {
        Self(
            format!(
                "SELECT * FROM {} AS t WHERE NOT {}",
                Source::read_parquet(files).0,
                replaced.condition()
            ),
            Origin::Host,
            Vec::new(),
        )
    }
}

/// What a table read selects from: a table or view, or an Iceberg snapshot's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source(String);

impl Source {
    pub fn table(name: &TableName) -> Self {
        Self(table(name))
    }

    /// DuckDB's iceberg extension at a metadata file (a snapshot other than the
    /// current one when given).
    pub fn iceberg_scan(metadata_location: &str, snapshot_id: Option<i64>) -> Self {
        let location = quote_literal(metadata_location);
        Self(match snapshot_id {
            None => format!("iceberg_scan({location})"),
            Some(id) => format!("iceberg_scan({location}, snapshot_from_id => {id})"),
        })
    }

    /// These Parquet files, read as one table. Their directories name Iceberg
    /// partitions (`day=2024-01-01`), which must not become columns.
    pub fn read_parquet(files: &[String]) -> Self {
        let list: Vec<String> = files.iter().map(|f| quote_literal(f)).collect();
        Self(format!(
            "read_parquet([{}], hive_partitioning = false)",
            list.join(", ")
        ))
    }

    /// Columns of these types and no rows (a table with no data yet).
    pub fn empty(schema: &Schema) -> Result<Self> {
        let columns = schema
            .fields()
            .iter()
            .map(|f| {
                Ok(format!(
                    "CAST(NULL AS {}) AS {}",
                    duckdb_type(f.data_type())?,
                    quote_ident(f.name())
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self(format!("(SELECT {} WHERE false)", columns.join(", "))))
    }
}

fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn column_list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A table's name: both parts quoted.
fn table(name: &TableName) -> String {
    format!(
        "{}.{}",
        quote_ident(&name.namespace),
        quote_ident(&name.name)
    )
}

// Statements the engine runs on its own behalf.

/// Before any extension loads: nothing is fetched or loaded implicitly.
pub fn extension_settings(extension_dir: Option<&Path>) -> String {
    let mut setup = vec![
        "SET autoinstall_known_extensions = false".to_string(),
        "SET autoload_known_extensions = false".to_string(),
    ];
    if let Some(dir) = extension_dir {
        setup.push(format!(
            "SET extension_directory = {}",
            quote_literal(&dir.display().to_string())
        ));
    }
    setup.join(";")
}

/// What DuckDB may use: set explicitly, since its defaults (80 % of RAM, every
/// core, a temp directory beside the database) assume it owns the machine.
/// Also Parquet footers are kept once read: an Iceberg data file never changes.
/// GLOBAL, so that every connection has them (each request has its own; a plain
/// `SET parquet_metadata_cache` holds for the setting's connection only).
pub fn resources(memory_bytes: u64, threads: u64, temp_dir: &Path) -> String {
    format!(
        "SET GLOBAL memory_limit = '{}MiB'; SET GLOBAL threads = {threads}; \
         SET GLOBAL temp_directory = {}; SET GLOBAL parquet_metadata_cache = true;",
        (memory_bytes >> 20).max(16),
        quote_literal(&temp_dir.display().to_string())
    )
}

pub const LOAD_JSON: &str = "LOAD json;";

/// Timestamps with a time zone reach clients as UTC (Arrow `tz="UTC"`), whatever the
/// machine's zone. Only DuckDB builds with ICU (the shared library) have the setting;
/// without ICU they are UTC already.
pub const UTC: &str = "SET GLOBAL TimeZone = 'UTC';";

pub const LOAD_ICEBERG: &str = "LOAD avro; LOAD iceberg;";

/// The httpfs extension and a secret for the warehouse's bucket (scoped to it), so
/// that DuckDB reads s3:// table files as iceberg-rust wrote them.
pub fn s3_secret(access: &S3Access, bucket: &str) -> String {
    let (endpoint, ssl) = match &access.endpoint {
        Some(url) => match url.split_once("://") {
            Some((scheme, host)) => (Some(host.trim_end_matches('/')), scheme == "https"),
            None => (Some(url.trim_end_matches('/')), true),
        },
        None => (None, true),
    };
    let mut options = vec![
        "TYPE s3".to_string(),
        format!("KEY_ID {}", quote_literal(&access.key_id)),
        format!("SECRET {}", quote_literal(&access.secret)),
        format!("REGION {}", quote_literal(&access.region)),
        format!("SCOPE {}", quote_literal(&format!("s3://{bucket}"))),
        format!(
            "URL_STYLE {}",
            quote_literal(if access.path_style { "path" } else { "vhost" })
        ),
        format!("USE_SSL {ssl}"),
    ];
    if let Some(endpoint) = endpoint {
        options.push(format!("ENDPOINT {}", quote_literal(endpoint)));
    }
    if let Some(token) = &access.session_token {
        options.push(format!("SESSION_TOKEN {}", quote_literal(token)));
    }
    format!(
        "LOAD httpfs; CREATE SECRET floe_warehouse ({});",
        options.join(", ")
    )
}

/// Files only inside `directories`, the warehouse's table files, never its
/// catalog, principals or keys; and no query may change that.
pub fn confine(directories: &[String]) -> String {
    let list: Vec<String> = directories.iter().map(|d| quote_literal(d)).collect();
    format!(
        "SET allowed_directories = [{}];
         SET enable_external_access = false;
         SET lock_configuration = true;",
        list.join(", ")
    )
}

pub fn replace_view(name: &TableName, source: &Source) -> String {
    format!(
        "CREATE SCHEMA IF NOT EXISTS {}; CREATE OR REPLACE VIEW {} AS SELECT * FROM {};",
        quote_ident(&name.namespace),
        table(name),
        source.0
    )
}

pub fn drop_view(name: &TableName) -> String {
    format!("DROP VIEW IF EXISTS {}", table(name))
}

pub fn drop_table(name: &TableName) -> String {
    format!("DROP TABLE {}", table(name))
}

pub fn count_rows(name: &TableName) -> String {
    format!("SELECT count(*) FROM {}", table(name))
}

/// No rows, every column: the stored schema.
pub fn no_rows(name: &TableName) -> String {
    format!("SELECT * FROM {} LIMIT 0", table(name))
}

/// `CREATE [OR REPLACE] TABLE` with these columns, in its own schema.
pub fn create_table(name: &TableName, fields: &Fields, replace: bool) -> Result<String> {
    let verb = if replace {
        "CREATE OR REPLACE TABLE"
    } else {
        "CREATE TABLE"
    };
    Ok(format!(
        "CREATE SCHEMA IF NOT EXISTS {}; {verb} {} ({});",
        quote_ident(&name.namespace),
        table(name),
        column_definitions(fields)?
    ))
}

pub const BEGIN: &str = "BEGIN TRANSACTION";
pub const COMMIT: &str = "COMMIT";
pub const ROLLBACK: &str = "ROLLBACK";

pub const LIST_VIEWS: &str = "SELECT schema_name, view_name FROM duckdb_views() \
     WHERE database_name = current_database() AND NOT internal";
pub const LIST_TABLES: &str = "SELECT schema_name, table_name FROM duckdb_tables() \
     WHERE database_name = current_database() AND NOT temporary ORDER BY 1, 2";
/// Parameters: namespace, name.
pub const TABLE_EXISTS: &str = "SELECT count(*) > 0 FROM duckdb_tables() \
     WHERE database_name = current_database() AND schema_name = ? AND table_name = ?";

// Arrow types as DuckDB SQL type names, for DDL and typed empty relations.

/// The SQL name DuckDB gives an Arrow type (None for a type it has no name for).
pub fn type_name(dt: &DataType) -> Option<String> {
    duckdb_type(dt).ok()
}

fn duckdb_type(dt: &DataType) -> Result<String> {
    Ok(match dt {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INTEGER".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "UTINYINT".into(),
        DataType::UInt16 => "USMALLINT".into(),
        DataType::UInt32 => "UINTEGER".into(),
        DataType::UInt64 => "UBIGINT".into(),
        DataType::Float16 | DataType::Float32 => "FLOAT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(p, s) if *p <= 38 => format!("DECIMAL({p},{s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "BLOB".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Time32(_) | DataType::Time64(_) => "TIME".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMPTZ".into(),
        DataType::Timestamp(TimeUnit::Second, None) => "TIMESTAMP_S".into(),
        DataType::Timestamp(TimeUnit::Millisecond, None) => "TIMESTAMP_MS".into(),
        DataType::Timestamp(TimeUnit::Microsecond, None) => "TIMESTAMP".into(),
        DataType::Timestamp(TimeUnit::Nanosecond, None) => "TIMESTAMP_NS".into(),
        DataType::Interval(_) => "INTERVAL".into(),
        DataType::List(f) | DataType::LargeList(f) => format!("{}[]", duckdb_type(f.data_type())?),
        DataType::Struct(fields) => format!("STRUCT({})", column_definitions(fields)?),
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => {
                format!(
                    "MAP({}, {})",
                    duckdb_type(kv[0].data_type())?,
                    duckdb_type(kv[1].data_type())?
                )
            }
            other => return Err(Error::invalid(format!("unsupported map layout {other}"))),
        },
        other => {
            return Err(Error::invalid(format!(
                "Arrow type {other} has no DuckDB equivalent"
            )));
        }
    })
}

/// `"name" TYPE, ...`: a column list for CREATE TABLE or STRUCT(...).
fn column_definitions(fields: &Fields) -> Result<String> {
    let columns = fields
        .iter()
        .map(|f| {
            Ok(format!(
                "{} {}",
                quote_ident(f.name()),
                duckdb_type(f.data_type())?
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(columns.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::Field;
    use std::sync::Arc;

    #[test]
    fn identifiers_and_literals_cannot_break_out() {
        let name = TableName::new("default", "events").unwrap();
        assert_eq!(table(&name), "\"default\".\"events\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            Source::read_parquet(&["/w/it's.parquet".into()]).0,
            "read_parquet(['/w/it''s.parquet'], hive_partitioning = false)"
        );
        let filter = floe_wire::expr::parse_filter("a > 1 AND b = ')'").unwrap();
        let columns = ["a".to_string(), "b c".to_string()];
        let query = Query::table_read(
            &Source::table(&name),
            Some(&columns),
            Some(&filter),
            Some(10),
        );
        assert_eq!(
            query.text(),
            "SELECT \"a\", \"b c\" FROM \"default\".\"events\" WHERE (a > 1 AND b = ')') LIMIT 10"
        );
    }

    #[test]
    fn nested_types_are_spelled_out() {
        let dt = DataType::Struct(Fields::from(vec![
            Field::new("a", DataType::Decimal128(12, 2), true),
            Field::new(
                "b",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
        ]));
        assert_eq!(
            duckdb_type(&dt).unwrap(),
            "STRUCT(\"a\" DECIMAL(12,2), \"b\" VARCHAR[])"
        );
    }
}
