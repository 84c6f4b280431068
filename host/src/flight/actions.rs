//! Flight actions: small JSON requests with JSON results.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use super::get;
use super::schema_json;
use crate::command::{ReadCommand, TableName, parse};
use crate::engines::{Lakehouse, Located};
use crate::error::{Error, Result};
use crate::plugins::Plugins;

/// Every action with the description ListActions shows.
pub const ACTIONS: &[(&str, &str)] = &[
    (
        "healthcheck",
        "Is the host up? Returns {\"status\": \"ok\", \"version\", \"iceberg_reader\"}.",
    ),
    (
        "list_tables",
        "All tables: name, target, schema, row count, current snapshot id.",
    ),
    (
        "get_schema",
        "The output schema of {\"table\": ...} (with columns etc.) or {\"sql\": ...}, without running it.",
    ),
    (
        "drop_table",
        "Drop {\"table\": \"ns.name\"} and delete its files.",
    ),
    (
        "list_plugins",
        "The registered WASM plugins: name, sha256, size, added_at and what they describe of themselves.",
    ),
    (
        "compact_table",
        "Rewrite the small data files of the Iceberg table {\"table\": ...} as few large ones (one replace snapshot). Returns {\"table\", \"compacted\", \"snapshot_id\", \"data_files\"} (the latter two null when there was nothing to compact).",
    ),
    (
        "list_snapshots",
        "The snapshots of the Iceberg table {\"table\": ...}: id, timestamp, operation, summary.",
    ),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableArg {
    table: TableName,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

pub async fn run(
    lakehouse: &Lakehouse,
    plugins: &Arc<Plugins>,
    name: &str,
    body: &[u8],
) -> Result<Value> {
    // An empty body means "no arguments".
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    let what = format!("{name} action body");
    match name {
        "healthcheck" => {
            parse::<NoArgs>(body, &what)?;
            Ok(json!({
                "status": "ok",
                "version": env!("CARGO_PKG_VERSION"),
                "iceberg_reader": lakehouse.duck.reader,
            }))
        }
        "list_tables" => {
            parse::<NoArgs>(body, &what)?;
            Ok(serde_json::to_value(lakehouse.list_tables().await?).expect("tables serialize"))
        }
        "get_schema" => {
            let (_, schema) = get::plan(lakehouse, plugins, ReadCommand::from_json(body)?).await?;
            Ok(json!({ "schema": schema_json::to_json(&schema) }))
        }
        "drop_table" => {
            let TableArg { table } = parse(body, &what)?;
            let target = lakehouse.drop_table(&table).await?;
            Ok(json!({ "dropped": table, "target": target }))
        }
        "compact_table" => {
            let TableArg { table } = parse(body, &what)?;
            if let Located::Duckdb = lakehouse.locate(&table).await? {
                return Err(Error::invalid(format!(
                    "{table} is a DuckDB table: only Iceberg tables are compacted"
                )));
            }
            let compacted = lakehouse.iceberg.compact(&table, 2).await?;
            Ok(json!({
                "table": table,
                "compacted": compacted.is_some(),
                "snapshot_id": compacted.as_ref().map(|c| c.snapshot_id),
                "data_files": compacted.map(|c| c.table_data_files),
            }))
        }
        "list_snapshots" => {
            let TableArg { table } = parse(body, &what)?;
            Ok(serde_json::to_value(lakehouse.snapshots(&table).await?)
                .expect("snapshots serialize"))
        }
        "list_plugins" => {
            parse::<NoArgs>(body, &what)?;
            let entries = plugins.registry().list()?;
            Ok(serde_json::to_value(entries).expect("plugin entries serialize"))
        }
        other => Err(Error::invalid(format!(
            "unknown action {other:?}; actions are: {}",
            ACTIONS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}
