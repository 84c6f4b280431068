//! The JSON commands clients send in descriptors, tickets and action bodies.
//!
//! Every command is a UTF-8 JSON object; unknown fields are refused by name so a
//! typo never silently changes what a request does. Nothing is ever unpickled or
//! evaluated: the only code a client can send is a SQL query, which the DuckDB
//! engine runs read-only and confined to the warehouse, and a filter, which is
//! parsed as one expression before it goes anywhere.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, clip, quote};

/// The longest namespace or table name, in bytes.
pub const MAX_NAME_PART: usize = 128;
/// The largest JSON command a client may send.
pub const MAX_COMMAND_BYTES: usize = 1 << 20;
/// The most columns or transforms one command may list.
pub const MAX_LIST_ITEMS: usize = 10_000;

/// The namespace of a table named without one.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A table's name: `ns.name`, or `name` in the default namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    pub namespace: String,
    pub name: String,
}

impl TableName {
    pub fn new(namespace: &str, name: &str) -> Result<Self> {
        for part in [namespace, name] {
            check_identifier(part)?;
        }
        Ok(Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }

    pub fn parse(text: &str) -> Result<Self> {
        match text.split('.').collect::<Vec<_>>().as_slice() {
            [name] => Self::new(DEFAULT_NAMESPACE, name),
            [namespace, name] => Self::new(namespace, name),
            _ => Err(Error::invalid(format!(
                "table name {} must be \"name\" or \"namespace.name\"",
                quote(text)
            ))),
        }
    }

    /// A Flight descriptor PATH: `["ns", "name"]` or `["name"]`.
    pub fn from_path(path: &[String]) -> Result<Self> {
        match path {
            [name] => Self::parse(name),
            [namespace, name] => Self::new(namespace, name),
            _ => Err(Error::invalid(
                "a descriptor path is [\"namespace\", \"table\"]",
            )),
        }
    }
}

impl TableName {
    /// The answer for a table that does not exist, and for one the principal may not
    /// read: one message, so grants do not leak names.
    pub fn not_found(&self) -> Error {
        Error::not_found(format!("table {self} not found"))
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.namespace, self.name)
    }
}

impl<'de> Deserialize<'de> for TableName {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        TableName::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for TableName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Names become directory names and SQL identifiers: keep them plain.
fn check_identifier(part: &str) -> Result<()> {
    let mut chars = part.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && part.len() <= MAX_NAME_PART;
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid name part {}: use letters, digits and _ (not starting with a digit), at most {MAX_NAME_PART} bytes",
            quote(part)
        )))
    }
}

/// Where a table lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    #[default]
    Iceberg,
    Duckdb,
}

/// What a put does to an existing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Add the stream's rows; create the table if it is missing.
    #[default]
    Append,
    /// Replace the table's rows (and schema) in one atomic commit; create it if missing.
    Overwrite,
    /// Create a new table; refuse if it exists.
    Create,
    /// Spark's name for `create`.
    ErrorIfExists,
    /// The upload's rows replace the table's rows with the same `keys`; the others
    /// are added (dbt's `merge`, `delete+insert`). Creates the table if missing.
    Merge,
    /// The table's rows matching `where` are replaced by the upload, whose rows
    /// must all match it (dbt's `insert_overwrite`). Creates the table if missing.
    ReplaceWhere,
}

impl WriteMode {
    /// Whether the write replaces some of the table's rows (and keeps the rest).
    pub fn rewrites(self) -> bool {
        matches!(self, WriteMode::Merge | WriteMode::ReplaceWhere)
    }
}

/// One step of a transform chain: a registered WASM plugin and its arguments.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Transform {
    pub plugin: String,
    #[serde(default)]
    pub args: serde_json::Map<String, serde_json::Value>,
}

/// DoPut's descriptor command.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PutCommand {
    pub table: TableName,
    #[serde(default)]
    pub mode: WriteMode,
    #[serde(default)]
    pub target: Target,
    /// Applied to the upload before it is written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<Transform>,
    /// How a new (or overwritten) Iceberg table is partitioned: columns and
    /// transforms such as `"day(ts)"`, `"bucket(16, id)"`; `[]` for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_by: Option<Vec<String>>,
    /// For `merge`: the columns that identify a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<String>>,
    /// For `replace_where`: the rows replaced, as one SQL boolean expression.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub replace_where: Option<String>,
    /// How many rows the client means to send: a stream that ends with another
    /// count (a client that closed early) commits nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_rows: Option<u64>,
    /// The same, counted in record batches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_batches: Option<u64>,
    /// Makes a retried upload harmless: the key is recorded in the snapshot the
    /// upload commits, and a later upload to the table with the same key commits
    /// nothing and answers the first one's result (while that snapshot is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// DoExchange's descriptor command: the chain the client's stream goes through.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeCommand {
    pub transforms: Vec<Transform>,
}

/// A read of one table: the columns, filter and limit go into the scan.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TableRead {
    pub table: TableName,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "selected_fields"
    )]
    pub columns: Option<Vec<String>>,
    /// A SQL boolean expression over the table's columns.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "row_filter")]
    pub filter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// Applied to the scan's output, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<Transform>,
    /// One of the endpoints a large read is split into: this group of the
    /// snapshot's files (set by GetFlightInfo in the tickets it returns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<Part>,
}

/// Group `index` (from 0) of the `of` groups a read's files are dealt into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    pub index: u32,
    pub of: u32,
}

/// More groups than this are refused: a read is split once per live host.
pub const MAX_PARTS: u32 = 1024;

impl Part {
    pub fn check(&self) -> Result<(), String> {
        if self.of == 0 || self.of > MAX_PARTS || self.index >= self.of {
            return Err(format!(
                "\"part\" is {{\"index\": i, \"of\": n}} with 0 <= i < n <= {MAX_PARTS}, \
                 not index {} of {}",
                self.index, self.of
            ));
        }
        Ok(())
    }
}

impl TableRead {
    /// Every row and column of the current snapshot.
    pub fn whole(table: TableName) -> Self {
        Self {
            table,
            columns: None,
            filter: None,
            snapshot_id: None,
            as_of: None,
            limit: None,
            transforms: Vec::new(),
            part: None,
        }
    }
}

/// A read-only SQL query over the warehouse's tables.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRead {
    pub sql: String,
    /// The values of the query's `?` (or `$1`, `$2`...) parameters, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<SqlValue>,
    /// Applied to the query's output, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<Transform>,
}

/// The value of a SQL parameter: a JSON scalar. Dates, times, timestamps and
/// decimals travel as text, which DuckDB casts to the type the query expects.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SqlValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl<'de> Deserialize<'de> for SqlValue {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> std::result::Result<Self, D::Error> {
        use serde_json::Value;
        Ok(match Value::deserialize(de)? {
            Value::Null => SqlValue::Null,
            Value::Bool(b) => SqlValue::Bool(b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => SqlValue::Int(i),
                None => SqlValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => SqlValue::Text(s),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "a parameter is null, a boolean, a number or a string, not {}",
                    quote(&other.to_string())
                )));
            }
        })
    }
}

/// GetFlightInfo's descriptor command and DoGet's ticket.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ReadCommand {
    Table(TableRead),
    Sql(SqlRead),
}

impl ReadCommand {
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let object = json_object(bytes, "read command")?;
        if object.contains_key("sql") {
            let read: SqlRead = from_value(object, "SQL read")?;
            check_length("transforms", read.transforms.len())?;
            check_length("params", read.params.len())?;
            Ok(ReadCommand::Sql(read))
        } else if object.contains_key("table") {
            let read: TableRead = from_value(object, "table read")?;
            check_length("transforms", read.transforms.len())?;
            check_length("columns", read.columns.as_ref().map_or(0, Vec::len))?;
            if read.snapshot_id.is_some() && read.as_of.is_some() {
                return Err(Error::invalid(
                    "give either \"snapshot_id\" or \"as_of\", not both",
                ));
            }
            Ok(ReadCommand::Table(read))
        } else {
            Err(Error::invalid(
                "a read command is a JSON object with \"table\" (and optional columns, filter, \
                 snapshot_id, as_of, limit, transforms) or \"sql\" (and optional params, transforms)",
            ))
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("commands serialize")
    }

    pub fn transforms(&self) -> &[Transform] {
        match self {
            ReadCommand::Table(read) => &read.transforms,
            ReadCommand::Sql(read) => &read.transforms,
        }
    }

    /// What a log line says the read is of: its table, or `sql`.
    pub fn describe(&self) -> String {
        match self {
            ReadCommand::Table(read) => read.table.to_string(),
            ReadCommand::Sql(_) => "sql".into(),
        }
    }
}

impl PutCommand {
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let command: Self = from_value(json_object(bytes, "put command")?, "put command")?;
        check_length("transforms", command.transforms.len())?;
        check_length("keys", command.keys.as_ref().map_or(0, Vec::len))?;
        match (command.mode, &command.keys, &command.replace_where) {
            (WriteMode::Merge, Some(keys), None) if !keys.is_empty() => {}
            (WriteMode::Merge, _, Some(_)) => {
                return Err(Error::invalid(
                    "\"where\" goes with mode replace_where, not merge",
                ));
            }
            (WriteMode::Merge, _, _) => {
                return Err(Error::invalid(
                    "mode merge needs \"keys\": the columns that identify a row, e.g. [\"id\"]",
                ));
            }
            (WriteMode::ReplaceWhere, None, Some(_)) => {}
            (WriteMode::ReplaceWhere, Some(_), _) => {
                return Err(Error::invalid(
                    "\"keys\" goes with mode merge, not replace_where",
                ));
            }
            (WriteMode::ReplaceWhere, _, None) => {
                return Err(Error::invalid(
                    "mode replace_where needs \"where\": the SQL expression the replaced rows match",
                ));
            }
            (_, Some(_), _) | (_, _, Some(_)) => {
                return Err(Error::invalid(
                    "\"keys\" and \"where\" go with modes merge and replace_where",
                ));
            }
            _ => {}
        }
        if command.expect_rows.is_some() && command.expect_batches.is_some() {
            return Err(Error::invalid(
                "give either \"expect_rows\" or \"expect_batches\", not both",
            ));
        }
        if let Some(key) = &command.idempotency_key {
            check_idempotency_key(key)?;
        }
        Ok(command)
    }

    /// The descriptor PATH form `["ns", "name"]`: append to Iceberg.
    pub fn from_path(path: &[String]) -> Result<Self> {
        Ok(Self {
            table: TableName::from_path(path)?,
            mode: WriteMode::Append,
            target: Target::Iceberg,
            transforms: Vec::new(),
            partition_by: None,
            keys: None,
            replace_where: None,
            expect_rows: None,
            expect_batches: None,
            idempotency_key: None,
        })
    }
}

impl ExchangeCommand {
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let command: Self = parse(bytes, "exchange command")?;
        check_length("transforms", command.transforms.len())?;
        Ok(command)
    }
}

/// A list in a command is refused past [`MAX_LIST_ITEMS`], before any work.
/// How an expiry is asked for (the `expire_snapshots` action, `host tables expire`):
/// what is unset falls back to the table's properties, then to the warehouse's
/// retention.
#[derive(Debug, Clone, Default)]
pub struct ExpireOptions {
    /// Keep at least this many of the newest snapshots.
    pub retain_last: Option<usize>,
    /// Keep every snapshot from this time on.
    pub older_than: Option<DateTime<Utc>>,
    pub dry_run: bool,
}

/// The `expire_snapshots` action's body.
#[derive(Debug, Clone)]
pub struct ExpireCommand {
    pub table: TableName,
    pub options: ExpireOptions,
}

/// The `remove_orphan_files` action's body.
#[derive(Debug, Clone)]
pub struct OrphansCommand {
    pub table: TableName,
    pub older_than: Option<chrono::Duration>,
    pub dry_run: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaintenanceBody {
    table: TableName,
    #[serde(default)]
    retain_last: Option<i64>,
    #[serde(default)]
    older_than: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

impl ExpireCommand {
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let body: MaintenanceBody = parse(bytes, "expire_snapshots action body")?;
        Ok(Self {
            table: body.table,
            options: ExpireOptions {
                retain_last: body.retain_last.map(check_retain_last).transpose()?,
                older_than: older_than(body.older_than, crate::age::parse_time_or_age)?,
                dry_run: body.dry_run,
            },
        })
    }
}

/// A maintenance body's `older_than`, read by `parse`.
fn older_than<T>(
    text: Option<String>,
    parse: fn(&str) -> std::result::Result<T, String>,
) -> Result<Option<T>> {
    text.map(|text| parse(&text).map_err(|err| Error::invalid(format!("\"older_than\": {err}"))))
        .transpose()
}

/// The newest snapshots an expiry keeps: the current one at least.
pub fn check_retain_last(n: i64) -> Result<usize> {
    if n < 1 {
        return Err(Error::invalid(format!(
            "\"retain_last\" must be at least 1 (the current snapshot is always kept), not {n}"
        )));
    }
    Ok(n as usize)
}

impl OrphansCommand {
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let body: MaintenanceBody = parse(bytes, "remove_orphan_files action body")?;
        if body.retain_last.is_some() {
            return Err(Error::invalid(
                "\"retain_last\" goes with expire_snapshots; remove_orphan_files takes table, older_than and dry_run",
            ));
        }
        Ok(Self {
            table: body.table,
            older_than: older_than(body.older_than, crate::age::parse_orphan_age)?,
            dry_run: body.dry_run,
        })
    }
}

/// Longest idempotency key: room for a dbt invocation id and a model's name.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 512;

/// An idempotency key is recorded in snapshot summaries: non-empty, bounded,
/// printable.
pub fn check_idempotency_key(key: &str) -> Result<()> {
    if key.trim().is_empty() {
        return Err(Error::invalid("\"idempotency_key\" is empty"));
    }
    if key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(Error::invalid(format!(
            "\"idempotency_key\" is {} bytes; at most {MAX_IDEMPOTENCY_KEY_BYTES} are allowed",
            key.len()
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(Error::invalid(
            "\"idempotency_key\" contains a control character",
        ));
    }
    Ok(())
}

fn check_length(what: &str, len: usize) -> Result<()> {
    if len > MAX_LIST_ITEMS {
        return Err(Error::invalid(format!(
            "\"{what}\" lists {len} items; a command may list at most {MAX_LIST_ITEMS}"
        )));
    }
    Ok(())
}

/// Parse an action body or command into `T`, naming the command in errors.
pub fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    from_value(json_object(bytes, what)?, what)
}

fn json_object(bytes: &[u8], what: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
    if bytes.len() > MAX_COMMAND_BYTES {
        return Err(Error::invalid(format!(
            "{what} is {} bytes; commands are at most {MAX_COMMAND_BYTES} bytes",
            bytes.len()
        )));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|err| Error::invalid(format!("malformed JSON in {what}: {err}")))?;
    match value {
        serde_json::Value::Object(map) => Ok(map),
        other => Err(Error::invalid(format!(
            "{what} must be a JSON object, got {}",
            quote(&other.to_string())
        ))),
    }
}

fn from_value<T: serde::de::DeserializeOwned>(
    object: serde_json::Map<String, serde_json::Value>,
    what: &str,
) -> Result<T> {
    // serde names the offending field or value: keep what it quotes short.
    serde_json::from_value(serde_json::Value::Object(object))
        .map_err(|err| Error::invalid(format!("invalid {what}: {}", clip(&err.to_string()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unqualified_names_live_in_default() {
        let name = TableName::parse("events").unwrap();
        assert_eq!(name.to_string(), "default.events");
    }

    #[test]
    fn hostile_names_are_refused() {
        for bad in ["a.b.c", "", "../x", "x; drop", "1abc", "a.\"b\""] {
            assert!(TableName::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = PutCommand::from_json(br#"{"table": "t", "mood": "append"}"#).unwrap_err();
        assert!(err.to_string().contains("mood"), "{err}");
        let err = ReadCommand::from_json(br#"{"table": "t", "colums": ["a"]}"#).unwrap_err();
        assert!(err.to_string().contains("colums"), "{err}");
    }

    #[test]
    fn malformed_json_quotes_the_parse_error() {
        let err = ReadCommand::from_json(b"{\"table\": ").unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)));
        assert!(err.to_string().contains("EOF"), "{err}");
    }

    #[test]
    fn read_commands_round_trip_as_tickets() {
        let cmd = ReadCommand::from_json(
            br#"{"table": "s.t", "columns": ["a"], "filter": "a > 1", "limit": 5, "snapshot_id": 7}"#,
        )
        .unwrap();
        assert_eq!(ReadCommand::from_json(&cmd.to_json()).unwrap(), cmd);
    }

    #[test]
    fn sql_params_are_scalars() {
        let cmd = ReadCommand::from_json(
            br#"{"sql": "SELECT ?, ?, ?, ?, ?", "params": [1, 2.5, "x", true, null]}"#,
        )
        .unwrap();
        let ReadCommand::Sql(read) = &cmd else {
            panic!("not SQL")
        };
        assert_eq!(
            read.params,
            [
                SqlValue::Int(1),
                SqlValue::Float(2.5),
                SqlValue::Text("x".into()),
                SqlValue::Bool(true),
                SqlValue::Null
            ]
        );
        assert_eq!(ReadCommand::from_json(&cmd.to_json()).unwrap(), cmd);
        let err = ReadCommand::from_json(br#"{"sql": "SELECT ?", "params": [[1]]}"#).unwrap_err();
        assert!(err.to_string().contains("a parameter is"), "{err}");
    }

    #[test]
    fn put_defaults_to_iceberg_append() {
        let cmd = PutCommand::from_json(br#"{"table": "s.t"}"#).unwrap();
        assert_eq!((cmd.mode, cmd.target), (WriteMode::Append, Target::Iceberg));
        let err = PutCommand::from_json(br#"{"table": "s.t", "mode": "upsert"}"#).unwrap_err();
        assert!(err.to_string().contains("upsert"), "{err}");
    }
}
