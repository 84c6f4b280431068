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
use crate::command::{ReadCommand, TableName, TableRead, quote_ident};
use crate::engines::{Lakehouse, blocking};
use crate::error::{Error, Result};
use crate::plan::ReadPlan;
use crate::plugins::{Chain, Plugins, bind_chain};

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
    let (_, chain) = bind_read(lakehouse, plugins, &plan).await?;
    Ok((plan, chain.output_schema()))
}

/// The query to run and the chain bound to its schema. When the chain reads only
/// some columns, the query scans only those (and the chain is bound again to
/// them), as DuckDB would for `columns`.
async fn bind_read(
    lakehouse: &Lakehouse,
    plugins: &Arc<Plugins>,
    plan: &ReadPlan,
) -> Result<(String, Chain)> {
    let (duck, sql) = (lakehouse.duck.clone(), plan.sql.clone());
    let schema = blocking(move || duck.schema_of(&sql)).await?;
    let transforms = plan.ticket.transforms();
    let chain = bind_chain(plugins, transforms, schema.clone()).await?;
    let Some(columns) = chain.input_columns() else {
        return Ok((plan.sql.clone(), chain));
    };
    let indices = columns
        .iter()
        .map(|c| schema.index_of(c))
        .collect::<Result<Vec<_>, _>>()?;
    let list = columns.iter().map(|c| quote_ident(c)).collect::<Vec<_>>();
    let sql = format!("SELECT {} FROM (\n{}\n)", list.join(", "), plan.sql);
    let chain = bind_chain(plugins, transforms, Arc::new(schema.project(&indices)?)).await?;
    Ok((sql, chain))
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
    if plan.ticket.transforms().is_empty() {
        tracing::debug!(sql = %plan.sql, "do_get");
        let query = lakehouse.duck.query(plan.sql).await?;
        return Ok(stream::encode(
            Chain::empty(query.schema),
            ReceiverStream::new(query.batches),
        ));
    }
    let (sql, chain) = bind_read(lakehouse, plugins, &plan).await?;
    tracing::debug!(%sql, "do_get");
    let query = lakehouse.duck.query(sql).await?;
    Ok(stream::encode(chain, ReceiverStream::new(query.batches)))
}
