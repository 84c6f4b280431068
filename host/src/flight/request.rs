//! Every Flight request as a typed command, decoded in one place: descriptors
//! (a JSON command, or a PATH `["ns", "table"]`), tickets and action bodies.

use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::{Action, FlightDescriptor, Ticket};
use serde::Deserialize;

use arrow_flight::sql::Command;

use super::sql;
use crate::command::{
    ExchangeCommand, ExpireCommand, OrphansCommand, PutCommand, ReadCommand, TableName, TableRead,
    parse,
};
use crate::error::{Error, Result};

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
        "expire_snapshots",
        "Expire old snapshots of the Iceberg table {\"table\", \"retain_last\": N, \"older_than\": \"7d\" or an RFC 3339 time, \"dry_run\": bool} (unset: the table's properties, then the host's retention) and delete the files only they used. Returns {\"table\", \"expired_snapshot_ids\", \"deleted_files\", \"deleted_bytes\", \"dry_run\"}.",
    ),
    (
        "remove_orphan_files",
        "Delete the files under the Iceberg table {\"table\", \"older_than\": \"1d\", \"dry_run\": bool}'s directory that no metadata references and that are older than older_than (at least 1h; default the host's --orphan-age). Returns {\"table\", \"files\", \"bytes\", \"dry_run\"}.",
    ),
    (
        "list_snapshots",
        "The snapshots of the Iceberg table {\"table\": ...}: id, timestamp, operation, summary.",
    ),
];

/// A decoded action.
pub enum ActionRequest {
    Healthcheck,
    ListTables,
    GetSchema(ReadCommand),
    DropTable(TableName),
    CompactTable(TableName),
    ExpireSnapshots(ExpireCommand),
    RemoveOrphanFiles(OrphansCommand),
    ListSnapshots(TableName),
    ListPlugins,
}

impl ActionRequest {
    /// The action's name, and the table it is about (if any), for the RPC's record.
    pub fn describe(&self) -> (&'static str, Option<String>) {
        match self {
            ActionRequest::Healthcheck => ("healthcheck", None),
            ActionRequest::ListTables => ("list_tables", None),
            ActionRequest::GetSchema(command) => ("get_schema", Some(command.describe())),
            ActionRequest::DropTable(table) => ("drop_table", Some(table.to_string())),
            ActionRequest::CompactTable(table) => ("compact_table", Some(table.to_string())),
            ActionRequest::ExpireSnapshots(command) => {
                ("expire_snapshots", Some(command.table.to_string()))
            }
            ActionRequest::RemoveOrphanFiles(command) => {
                ("remove_orphan_files", Some(command.table.to_string()))
            }
            ActionRequest::ListSnapshots(table) => ("list_snapshots", Some(table.to_string())),
            ActionRequest::ListPlugins => ("list_plugins", None),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableArg {
    table: TableName,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

/// GetFlightInfo's and GetSchema's descriptor.
pub fn read_command(descriptor: &FlightDescriptor) -> Result<ReadCommand> {
    match descriptor.r#type() {
        DescriptorType::Cmd => ReadCommand::from_json(&descriptor.cmd),
        DescriptorType::Path => Ok(ReadCommand::Table(TableRead::whole(TableName::from_path(
            &descriptor.path,
        )?))),
        DescriptorType::Unknown => Err(no_descriptor()),
    }
}

/// A descriptor's Flight SQL command, when it carries one rather than floe's JSON.
pub fn sql_command(descriptor: &FlightDescriptor) -> Result<Option<Command>> {
    match descriptor.r#type() {
        DescriptorType::Cmd => sql::command(&descriptor.cmd),
        _ => Ok(None),
    }
}

/// What a DoPut's descriptor asks: one of floe's writes, or a Flight SQL command.
pub enum Upload {
    Json(PutCommand),
    Sql(sql::Put),
}

impl Upload {
    pub fn table(&self) -> Option<String> {
        match self {
            Upload::Json(command) => Some(command.table.to_string()),
            Upload::Sql(put) => put.table(),
        }
    }
}

pub fn upload(descriptor: &FlightDescriptor) -> Result<Upload> {
    match sql_command(descriptor)? {
        Some(command) => sql::Put::from_command(command).map(Upload::Sql),
        None => put_command(descriptor).map(Upload::Json),
    }
}

/// DoGet's ticket: the read command itself.
pub fn ticket(ticket: &Ticket) -> Result<ReadCommand> {
    ReadCommand::from_json(&ticket.ticket)
}

/// DoPut's JSON descriptor; a PATH appends to Iceberg.
fn put_command(descriptor: &FlightDescriptor) -> Result<PutCommand> {
    match descriptor.r#type() {
        DescriptorType::Cmd => PutCommand::from_json(&descriptor.cmd),
        DescriptorType::Path => PutCommand::from_path(&descriptor.path),
        DescriptorType::Unknown => Err(no_descriptor()),
    }
}

/// DoExchange's descriptor: a command naming the chain.
pub fn exchange_command(descriptor: &FlightDescriptor) -> Result<ExchangeCommand> {
    if descriptor.r#type() != DescriptorType::Cmd {
        return Err(Error::invalid(
            "DoExchange takes a command descriptor: {\"transforms\": [{\"plugin\": ..., \"args\": {...}}]}",
        ));
    }
    ExchangeCommand::from_json(&descriptor.cmd)
}

pub fn action(action: &Action) -> Result<ActionRequest> {
    // An empty body means "no arguments".
    let body = if action.body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        &action.body
    };
    let name = action.r#type.as_str();
    let what = format!("{name} action body");
    let table = || parse::<TableArg>(body, &what).map(|arg| arg.table);
    Ok(match name {
        "healthcheck" => parse::<NoArgs>(body, &what).map(|_| ActionRequest::Healthcheck)?,
        "list_tables" => parse::<NoArgs>(body, &what).map(|_| ActionRequest::ListTables)?,
        "list_plugins" => parse::<NoArgs>(body, &what).map(|_| ActionRequest::ListPlugins)?,
        "get_schema" => ActionRequest::GetSchema(ReadCommand::from_json(body)?),
        "drop_table" => ActionRequest::DropTable(table()?),
        "compact_table" => ActionRequest::CompactTable(table()?),
        "expire_snapshots" => ActionRequest::ExpireSnapshots(ExpireCommand::from_json(body)?),
        "remove_orphan_files" => ActionRequest::RemoveOrphanFiles(OrphansCommand::from_json(body)?),
        "list_snapshots" => ActionRequest::ListSnapshots(table()?),
        other => {
            return Err(Error::invalid(format!(
                "unknown action {}; actions are: {}",
                crate::error::quote(other),
                ACTIONS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    })
}

fn no_descriptor() -> Error {
    Error::invalid("the descriptor has neither a command nor a path")
}
