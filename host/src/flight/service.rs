//! `FlightService`: each RPC decodes its request (`request`), calls one use case of
//! the core, and encodes the answer.

use std::pin::Pin;
use std::sync::Arc;

use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaAsIpc, SchemaResult, Ticket,
};
use futures::Stream;
use futures::stream::{BoxStream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{actions, request, stream};
use crate::command::{ReadCommand, TableRead};
use crate::core::Core;
use crate::error::{Error, Result};
use crate::limits::{Scope, grpc_timeout};

type RpcStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[derive(Clone)]
pub struct FloeService {
    core: Arc<Core>,
}

impl FloeService {
    pub fn new(core: Arc<Core>) -> Self {
        Self { core }
    }

    /// The request's bounds: the host's limits and the client's gRPC deadline.
    fn scope<T>(&self, request: &Request<T>) -> Scope {
        self.core.scope(grpc_timeout(request.metadata()))
    }
}

fn once<T: Send + 'static>(item: T) -> RpcStream<T> {
    futures::stream::once(async move { Ok(item) }).boxed()
}

fn ticket(command: &ReadCommand) -> Ticket {
    Ticket::new(command.to_json())
}

#[tonic::async_trait]
impl FlightService for FloeService {
    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type ListFlightsStream = RpcStream<FlightInfo>;
    type DoGetStream = RpcStream<FlightData>;
    type DoPutStream = RpcStream<PutResult>;
    type DoExchangeStream = RpcStream<FlightData>;
    type DoActionStream = RpcStream<arrow_flight::Result>;
    type ListActionsStream = RpcStream<ActionType>;

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented(
            "floe has no authentication yet: no handshake is needed",
        ))
    }

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        let tables = self.core.list_tables().await?;
        let infos = tables
            .into_iter()
            .map(|table| {
                let read = ReadCommand::Table(TableRead::whole(table.name.clone()));
                Ok(FlightInfo::new()
                    .try_with_schema(&table.schema)?
                    .with_descriptor(FlightDescriptor::new_path(vec![
                        table.name.namespace.clone(),
                        table.name.name.clone(),
                    ]))
                    .with_endpoint(FlightEndpoint::new().with_ticket(ticket(&read)))
                    .with_total_records(table.rows.map_or(-1, |r| r as i64)))
            })
            .collect::<Result<Vec<_>, arrow::error::ArrowError>>()
            .map_err(|err| Error::internal(format!("describing the tables: {err}")))?;
        Ok(Response::new(
            futures::stream::iter(infos.into_iter().map(Ok)).boxed(),
        ))
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let scope = self.scope(&request);
        let descriptor = request.into_inner();
        let planned = self
            .core
            .plan_read(request::read_command(&descriptor)?, &scope)
            .await?;
        let info = FlightInfo::new()
            .try_with_schema(&planned.schema)
            .map_err(|err| Error::internal(format!("encoding the schema: {err}")))?
            .with_endpoint(FlightEndpoint::new().with_ticket(ticket(&planned.ticket)))
            .with_descriptor(descriptor)
            .with_total_records(-1)
            .with_total_bytes(-1);
        Ok(Response::new(info))
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented(
            "use GetFlightInfo: floe plans reads synchronously",
        ))
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        let scope = self.scope(&request);
        let command = request::read_command(&request.into_inner())?;
        let planned = self.core.plan_read(command, &scope).await?;
        let result = SchemaAsIpc::new(&planned.schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|err: arrow::error::ArrowError| Status::internal(err.to_string()))?;
        Ok(Response::new(result))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let scope = self.scope(&request);
        let command = request::ticket(&request.into_inner())?;
        let batches = self.core.read(command, scope).await?;
        Ok(Response::new(stream::encode(
            batches.schema,
            batches.stream,
        )))
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        // Its own task: if the client hangs up, tonic drops this future, but the
        // upload still runs to its abort and cleans up.
        let core = self.core.clone();
        let scope = self.scope(&request);
        let upload = tokio::spawn(async move {
            let opening = stream::open(request.into_inner(), request::put_command);
            let (command, schema, batches) = scope.run("opening the upload", opening).await?;
            core.write(command, schema, batches, scope).await
        });
        let written = upload
            .await
            .map_err(|err| Status::internal(format!("upload task failed: {err}")))??;
        let metadata = serde_json::to_vec(&written).expect("summaries serialize");
        Ok(Response::new(once(PutResult {
            app_metadata: metadata.into(),
        })))
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        let scope = self.scope(&request);
        let opening = stream::open(request.into_inner(), request::exchange_command);
        let (command, schema, batches) = scope.run("opening the exchange", opening).await?;
        let (schema, batches) = self.core.exchange(command, schema, batches, scope).await?;
        Ok(Response::new(stream::encode(schema, batches)))
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let scope = self.scope(&request);
        let action = request::action(&request.into_inner())?;
        let value = actions::run(&self.core, action, scope).await?;
        let body = serde_json::to_vec(&value).expect("JSON values serialize");
        Ok(Response::new(once(arrow_flight::Result {
            body: body.into(),
        })))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let types = request::ACTIONS.iter().map(|(name, description)| {
            Ok(ActionType {
                r#type: name.to_string(),
                description: description.to_string(),
            })
        });
        Ok(Response::new(futures::stream::iter(types).boxed()))
    }
}
