//! Flight SQL on floe's port, for ADBC, JDBC, arrow-rs's `flight_sql_client` and the
//! BI tools built on them. A descriptor, ticket or action body that is a Flight SQL
//! protobuf comes here ([`command`] tells); anything else is floe's JSON. Both
//! front-ends answer with the same use cases of the core: a query is a SQL read
//! whose ticket carries the read's JSON (so DoGet needs no state), an ingest is a
//! write, and the metadata commands list the tables the principal may read.

mod ingest;
mod metadata;
mod statements;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, Command, DoPutPreparedStatementResult,
    DoPutUpdateResult, ProstMessageExt, TicketStatementQuery,
};
use arrow_flight::{Action, IpcMessage, PutResult};
use arrow_flight::{SchemaAsIpc, Ticket};
use futures::{Stream, StreamExt};
use prost::Message;

pub use self::ingest::Ingest;
use self::ingest::no_transactions;
use self::metadata::Facts;
use self::statements::Statements;
use super::observe::Call;
use crate::command::{ReadCommand, SqlRead};
use crate::core::Core;
use crate::error::{Error, Result, quote};
use crate::limits::Scope;
use crate::read::Batches;

const TYPE_URL_PREFIX: &str = "type.googleapis.com/arrow.flight.protocol.sql.";
const CREATE_PREPARED_STATEMENT: &str = "CreatePreparedStatement";
const CLOSE_PREPARED_STATEMENT: &str = "ClosePreparedStatement";
/// Flight SQL's own actions (floe's are snake_case): all of them come here.
const SQL_ACTIONS: &[&str] = &[
    CREATE_PREPARED_STATEMENT,
    CLOSE_PREPARED_STATEMENT,
    "CreatePreparedSubstraitPlan",
    "BeginTransaction",
    "EndTransaction",
    "BeginSavepoint",
    "EndSavepoint",
    "CancelQuery",
];

/// The Flight SQL actions floe serves, as ListActions shows them.
pub const ACTIONS: &[(&str, &str)] = &[
    (
        CREATE_PREPARED_STATEMENT,
        "Flight SQL: prepare a read-only query (? or $1 parameters get values by DoPut).",
    ),
    (
        CLOSE_PREPARED_STATEMENT,
        "Flight SQL: close a prepared statement.",
    ),
];

/// `bytes` as a Flight SQL command when they are one: a protobuf `Any` (its first
/// byte is field 1's tag, 0x0A) of the Flight SQL package. JSON, which starts with
/// `{`, is floe's.
pub fn command(bytes: &[u8]) -> Result<Option<Command>> {
    let json = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if json || bytes.first() != Some(&0x0A) {
        return Ok(None);
    }
    let any = Any::decode(bytes).map_err(|err| {
        Error::invalid(format!(
            "malformed command: neither JSON nor a protobuf Any ({err})"
        ))
    })?;
    if !any.type_url.starts_with(TYPE_URL_PREFIX) {
        return Err(Error::invalid(format!(
            "{} is not a Flight SQL command: floe takes Flight SQL commands and its own JSON",
            quote(&any.type_url)
        )));
    }
    Command::try_from(any)
        .map(Some)
        .map_err(|err| Error::invalid(format!("malformed Flight SQL command: {err}")))
}

pub fn is_action(name: &str) -> bool {
    SQL_ACTIONS.contains(&name)
}

/// What a DoPut's Flight SQL descriptor asks for.
pub enum Put {
    Ingest(Ingest),
    /// Values for a prepared statement's parameters.
    Bind(Vec<u8>),
}

impl Put {
    pub fn from_command(command: Command) -> Result<Self> {
        match command {
            Command::CommandStatementIngest(c) => Ok(Put::Ingest(ingest::ingest(c)?)),
            Command::CommandPreparedStatementQuery(c) => {
                Ok(Put::Bind(c.prepared_statement_handle.to_vec()))
            }
            Command::CommandStatementUpdate(_) | Command::CommandPreparedStatementUpdate(_) => {
                Err(read_only())
            }
            other => Err(metadata::unsupported(&other)),
        }
    }

    /// The table an ingest writes, for the RPC's record.
    pub fn table(&self) -> Option<String> {
        match self {
            Put::Ingest(ingest) => Some(ingest.command.table.to_string()),
            Put::Bind(_) => None,
        }
    }
}

pub struct FlightSql {
    core: Arc<Core>,
    statements: Statements,
    facts: Facts,
}

impl FlightSql {
    pub fn new(core: Arc<Core>) -> Self {
        Self {
            core,
            statements: Statements::default(),
            facts: Facts::new(),
        }
    }

    /// GetFlightInfo and GetSchema: the answer's schema, and the ticket that runs it.
    pub async fn plan(
        &self,
        command: Command,
        scope: &Scope,
        call: &Call,
    ) -> Result<(SchemaRef, Ticket)> {
        let read = match command {
            Command::CommandStatementQuery(query) => {
                if query.transaction_id.is_some() {
                    return Err(no_transactions());
                }
                statement(&query.query)?
            }
            Command::CommandPreparedStatementQuery(prepared) => self
                .statements
                .read(&prepared.prepared_statement_handle, owner(scope))?,
            Command::CommandStatementUpdate(_) | Command::CommandPreparedStatementUpdate(_) => {
                return Err(read_only());
            }
            // A metadata command is its own ticket.
            other => {
                let schema = metadata::schema(&other, &self.facts)?;
                return Ok((schema, Ticket::new(other.into_any().encode_to_vec())));
            }
        };
        call.table(&read.describe());
        let planned = self.core.plan_read(read, scope).await?;
        let ticket = TicketStatementQuery {
            statement_handle: planned.ticket.to_json().into(),
        };
        Ok((planned.schema, Ticket::new(ticket.as_any().encode_to_vec())))
    }

    /// DoGet of a Flight SQL ticket.
    pub async fn read(&self, command: Command, scope: Scope, call: &Call) -> Result<Batches> {
        let read = match command {
            Command::TicketStatementQuery(ticket) => {
                ReadCommand::from_json(&ticket.statement_handle)?
            }
            Command::CommandPreparedStatementQuery(prepared) => self
                .statements
                .read(&prepared.prepared_statement_handle, owner(&scope))?,
            other => {
                let answer = metadata::answer(&self.core, other, &scope, &self.facts);
                let batch = scope.run("answering the metadata command", answer).await?;
                return Ok(one_batch(batch));
            }
        };
        call.table(&read.describe());
        self.core.read(read, scope).await
    }

    /// An ingest (DoPut): written and committed as a JSON DoPut is.
    pub async fn ingest<S>(
        &self,
        ingest: Ingest,
        schema: SchemaRef,
        batches: S,
        scope: Scope,
    ) -> Result<(u64, PutResult)>
    where
        S: Stream<Item = Result<RecordBatch>> + Send + 'static,
    {
        if ingest.existing_only {
            self.core
                .require_table(&ingest.command.table, &scope)
                .await?;
        }
        let written = self
            .core
            .write(ingest.command, schema, batches, scope)
            .await?;
        let result = DoPutUpdateResult {
            record_count: written.rows as i64,
        };
        let answer = PutResult {
            app_metadata: result.encode_to_vec().into(),
        };
        Ok((written.rows, answer))
    }

    /// Values for a prepared statement's parameters (DoPut): one row.
    pub async fn bind<S>(&self, handle: Vec<u8>, batches: S, scope: Scope) -> Result<PutResult>
    where
        S: Stream<Item = Result<RecordBatch>> + Send + 'static,
    {
        let mut batches = std::pin::pin!(scope.clone().upload(batches));
        let (mut received, mut rows) = (Vec::new(), 0);
        // Past the second row the values are refused: no need to read on.
        while rows < 2 {
            let Some(batch) = batches.next().await else {
                break;
            };
            let batch = batch?;
            rows += batch.num_rows();
            received.push(batch);
        }
        let values = statements::parameter_values(&received)?;
        self.statements.bind(&handle, owner(&scope), values)?;
        let result = DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.into()),
        };
        Ok(PutResult {
            app_metadata: result.encode_to_vec().into(),
        })
    }

    /// A Flight SQL action; its one result, if it has one.
    pub async fn action(
        &self,
        action: Action,
        scope: &Scope,
        call: &Call,
    ) -> Result<Option<arrow_flight::Result>> {
        call.action(&action.r#type);
        match action.r#type.as_str() {
            CREATE_PREPARED_STATEMENT => {
                let request: ActionCreatePreparedStatementRequest = unpack(&action)?;
                if request.transaction_id.is_some() {
                    return Err(no_transactions());
                }
                let read = statement(&request.query)?;
                call.table(&read.describe());
                let prepared = self.core.prepare_read(read.clone(), scope).await?;
                let handle = self.statements.open(owner(scope), read)?;
                let result = ActionCreatePreparedStatementResult {
                    prepared_statement_handle: handle.into(),
                    dataset_schema: prepared.schema.as_deref().map(ipc).unwrap_or_default(),
                    parameter_schema: match prepared.parameters.fields().is_empty() {
                        true => Default::default(),
                        false => ipc(&prepared.parameters),
                    },
                };
                Ok(Some(arrow_flight::Result {
                    body: result.as_any().encode_to_vec().into(),
                }))
            }
            CLOSE_PREPARED_STATEMENT => {
                let request: ActionClosePreparedStatementRequest = unpack(&action)?;
                self.statements
                    .close(&request.prepared_statement_handle, owner(scope))?;
                Ok(None)
            }
            "BeginTransaction" | "EndTransaction" | "BeginSavepoint" | "EndSavepoint" => {
                Err(no_transactions())
            }
            other => Err(Error::Unimplemented(format!(
                "the Flight SQL action {other} is not supported by floe"
            ))),
        }
    }
}

/// A statement's text as a read: SQL, or one of floe's JSON read commands (a
/// statement that is a JSON object), which reach snapshots and transform chains.
fn statement(query: &str) -> Result<ReadCommand> {
    if query.trim_start().starts_with('{') {
        return ReadCommand::from_json(query.as_bytes());
    }
    Ok(ReadCommand::Sql(SqlRead {
        sql: query.to_string(),
        params: Vec::new(),
        transforms: Vec::new(),
    }))
}

fn owner(scope: &Scope) -> &str {
    &scope.principal().name
}

fn read_only() -> Error {
    Error::invalid(
        "floe's SQL statements only read: write with ingest (ADBC adbc_ingest, Flight SQL \
         CommandStatementIngest) or floe's DoPut",
    )
}

fn unpack<M: ProstMessageExt>(action: &Action) -> Result<M> {
    let malformed = || {
        Error::invalid(format!(
            "the body of {} is not a Flight SQL {} message",
            action.r#type,
            M::type_url().rsplit('.').next().unwrap_or_default()
        ))
    };
    Any::decode(&*action.body)
        .ok()
        .and_then(|any| any.unpack::<M>().ok().flatten())
        .ok_or_else(malformed)
}

/// A schema as Flight SQL carries it: an IPC schema message.
fn ipc(schema: &Schema) -> prost::bytes::Bytes {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .expect("schemas encode");
    bytes
}

fn one_batch(batch: RecordBatch) -> Batches {
    Batches {
        schema: batch.schema(),
        stream: futures::stream::once(async move { Ok(batch) }).boxed(),
    }
}
