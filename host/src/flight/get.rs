//! Reads: GetFlightInfo plans (schema from binding the query and its transform
//! chain, ticket with the snapshot pinned); DoGet executes and streams DuckDB's
//! batches through the chain.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::{FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;

use super::stream;
use crate::command::{ReadCommand, TableName, TableRead};
use crate::engines::{Lakehouse, blocking};
use crate::error::{Error, Result};
use crate::plan::ReadPlan;
use crate::plugins::{Plugins, bind_chain};

/// A descriptor's read command: JSON in `cmd`, or a PATH `["ns", "table"]`.
pub fn read_command(descriptor: &FlightDescriptor) -> Result<ReadCommand> {
    match descriptor.r#type() {
        DescriptorType::Cmd => ReadCommand::from_json(&descriptor.cmd),
        DescriptorType::Path => Ok(ReadCommand::Table(TableRead::whole(TableName::from_path(
            &descriptor.path,
        )?))),
        DescriptorType::Unknown => Err(Error::invalid(
            "the descriptor has neither a command nor a path",
        )),
    }
}

/// Plan a read and compute its output schema without running it: the query's
/// schema, passed through the transform chain bound (but given no data).
pub async fn plan(
    lakehouse: &Lakehouse,
    plugins: &Arc<Plugins>,
    command: ReadCommand,
) -> Result<(ReadPlan, SchemaRef)> {
    let plan = lakehouse.plan_read(command).await?;
    let (duck, sql) = (lakehouse.duck.clone(), plan.sql.clone());
    let schema = blocking(move || duck.schema_of(&sql)).await?;
    let chain = bind_chain(plugins, plan.ticket.transforms(), schema).await?;
    Ok((plan, chain.output_schema()))
}

pub async fn flight_info(
    lakehouse: &Lakehouse,
    plugins: &Arc<Plugins>,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo> {
    let (plan, schema) = plan(lakehouse, plugins, read_command(&descriptor)?).await?;
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(plan.ticket.to_json()));
    Ok(FlightInfo::new()
        .try_with_schema(&schema)?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor)
        .with_total_records(-1)
        .with_total_bytes(-1))
}

pub async fn do_get(
    lakehouse: &Arc<Lakehouse>,
    plugins: &Arc<Plugins>,
    ticket: Ticket,
) -> Result<impl Stream<Item = Result<FlightData, tonic::Status>> + Send + 'static> {
    let command = ReadCommand::from_json(&ticket.ticket)?;
    let plan = lakehouse.plan_read(command).await?;
    tracing::debug!(sql = %plan.sql, "do_get");
    let query = lakehouse.duck.query(plan.sql).await?;
    let chain = bind_chain(plugins, plan.ticket.transforms(), query.schema).await?;
    Ok(stream::encode(chain, ReceiverStream::new(query.batches)))
}
