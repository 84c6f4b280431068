//! Flight actions: each decoded request answered by the core, as JSON.

use serde_json::{Value, json};

use super::request::ActionRequest;
use super::schema_json;
use crate::core::{Core, TableInfo};
use crate::error::Result;
use crate::limits::Scope;

pub async fn run(core: &Core, request: ActionRequest, scope: Scope) -> Result<Value> {
    Ok(match request {
        ActionRequest::Healthcheck => json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "iceberg_reader": core.iceberg_reader(),
        }),
        ActionRequest::ListTables => Value::Array(
            core.list_tables(&scope)
                .await?
                .iter()
                .map(table_json)
                .collect(),
        ),
        ActionRequest::GetSchema(command) => {
            let planned = core.plan_read(command, &scope).await?;
            json!({ "schema": schema_json::to_json(&planned.schema) })
        }
        ActionRequest::DropTable(table) => {
            let target = core.drop_table(&table, &scope).await?;
            json!({ "dropped": table, "target": target })
        }
        ActionRequest::CompactTable(table) => {
            let compacted = core.compact(&table, &scope).await?;
            json!({
                "table": table,
                "compacted": compacted.is_some(),
                "snapshot_id": compacted.as_ref().map(|c| c.snapshot_id),
                "data_files": compacted.map(|c| c.data_files),
            })
        }
        ActionRequest::ExpireSnapshots(command) => {
            let expired = core.expire_snapshots(&command, &scope).await?;
            json!({
                "table": command.table,
                "expired_snapshot_ids": expired.snapshot_ids,
                "deleted_files": expired.deleted_files,
                "deleted_bytes": expired.deleted_bytes,
                "dry_run": expired.dry_run,
            })
        }
        ActionRequest::RemoveOrphanFiles(command) => {
            let orphans = core.remove_orphan_files(&command, &scope).await?;
            json!({
                "table": command.table,
                "files": orphans.files,
                "bytes": orphans.bytes,
                "dry_run": orphans.dry_run,
            })
        }
        ActionRequest::ListSnapshots(table) => {
            serde_json::to_value(core.snapshots(&table, &scope).await?)
                .expect("snapshots serialize")
        }
        ActionRequest::ListPlugins => serde_json::to_value(core.list_plugins(&scope).await?)
            .expect("plugin entries serialize"),
    })
}

pub fn table_json(table: &TableInfo) -> Value {
    json!({
        "name": table.name,
        "target": table.target,
        "schema": schema_json::to_json(&table.schema),
        "rows": table.rows,
        "snapshot_id": table.snapshot_id,
        "partition_by": table.partition_by,
    })
}
