//! `FlightService`: each RPC handed to the module that does the work.

use std::pin::Pin;
use std::sync::Arc;

use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaAsIpc, SchemaResult, Ticket,
};
use futures::Stream;
use futures::stream::{self, BoxStream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{actions, exchange, get, put};
use crate::command::{ReadCommand, TableRead};
use crate::engines::Lakehouse;
use crate::error::Error;
use crate::plugins::Plugins;

type RpcStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[derive(Clone)]
pub struct FloeService {
    lakehouse: Arc<Lakehouse>,
    plugins: Arc<Plugins>,
}

impl FloeService {
    pub fn new(lakehouse: Arc<Lakehouse>, plugins: Arc<Plugins>) -> Self {
        Self { lakehouse, plugins }
    }
}

fn once<T: Send + 'static>(item: T) -> RpcStream<T> {
    stream::once(async move { Ok(item) }).boxed()
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
        let tables = self.lakehouse.list_tables().await?;
        let infos = tables
            .into_iter()
            .map(|table| {
                let ticket = ReadCommand::Table(TableRead::whole(table.name.clone()));
                Ok(FlightInfo::new()
                    .try_with_schema(&table.schema)?
                    .with_descriptor(FlightDescriptor::new_path(vec![
                        table.name.namespace.clone(),
                        table.name.name.clone(),
                    ]))
                    .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket.to_json())))
                    .with_total_records(table.rows.map_or(-1, |r| r as i64)))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(Response::new(
            stream::iter(infos.into_iter().map(Ok)).boxed(),
        ))
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Ok(Response::new(
            get::flight_info(&self.lakehouse, &self.plugins, request.into_inner()).await?,
        ))
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
        let command = get::read_command(&request.into_inner())?;
        let (_, schema) = get::plan(&self.lakehouse, &self.plugins, command).await?;
        let result = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|err: arrow::error::ArrowError| Status::internal(err.to_string()))?;
        Ok(Response::new(result))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let stream = get::do_get(&self.lakehouse, &self.plugins, request.into_inner()).await?;
        Ok(Response::new(stream.boxed()))
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        // Its own task: if the client hangs up, tonic drops this future, but the
        // upload still runs to its abort and cleans up.
        let upload = tokio::spawn(put::do_put(
            self.lakehouse.clone(),
            self.plugins.clone(),
            request.into_inner(),
        ));
        let result = upload
            .await
            .map_err(|err| Status::internal(format!("upload task failed: {err}")))??;
        Ok(Response::new(once(result)))
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        let output = exchange::do_exchange(self.plugins.clone(), request.into_inner()).await?;
        Ok(Response::new(output))
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let action = request.into_inner();
        let value =
            actions::run(&self.lakehouse, &self.plugins, &action.r#type, &action.body).await?;
        let body = serde_json::to_vec(&value).expect("JSON values serialize");
        Ok(Response::new(once(arrow_flight::Result {
            body: body.into(),
        })))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let types = actions::ACTIONS.iter().map(|(name, description)| {
            Ok(ActionType {
                r#type: name.to_string(),
                description: description.to_string(),
            })
        });
        Ok(Response::new(stream::iter(types).boxed()))
    }
}
