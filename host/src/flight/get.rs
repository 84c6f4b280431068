//! Reads: GetFlightInfo plans (schema from binding the query, ticket with the
//! snapshot pinned); DoGet executes and streams DuckDB's batches.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_descriptor::DescriptorType;
use arrow_flight::{FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use futures::{Stream, StreamExt, TryStreamExt};
use tokio_stream::wrappers::ReceiverStream;

use crate::command::{ReadCommand, TableName, TableRead};
use crate::engines::{Lakehouse, blocking};
use crate::error::{Error, Result};
use crate::plan::ReadPlan;

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

/// Plan a read and compute its output schema without running it.
pub async fn plan(lakehouse: &Lakehouse, command: ReadCommand) -> Result<(ReadPlan, SchemaRef)> {
    let plan = lakehouse.plan_read(command).await?;
    let (duck, sql) = (lakehouse.duck.clone(), plan.sql.clone());
    let schema = blocking(move || duck.schema_of(&sql)).await?;
    Ok((plan, schema))
}

pub async fn flight_info(
    lakehouse: &Lakehouse,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo> {
    let (plan, schema) = plan(lakehouse, read_command(&descriptor)?).await?;
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
    ticket: Ticket,
) -> Result<impl Stream<Item = Result<FlightData, tonic::Status>> + Send + 'static> {
    let command = ReadCommand::from_json(&ticket.ticket)?;
    let plan = lakehouse.plan_read(command).await?;
    tracing::debug!(sql = %plan.sql, "do_get");
    let query = lakehouse.duck.query(plan.sql).await?;
    let batches = ReceiverStream::new(query.batches)
        .map_err(|err| FlightError::Tonic(Box::new(tonic::Status::from(err))));
    Ok(FlightDataEncoderBuilder::new()
        .with_schema(query.schema)
        .build(batches)
        .map_err(tonic::Status::from)
        .boxed())
}
