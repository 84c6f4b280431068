//! `FlightService`: each RPC decodes its request (`request`), calls one use case of
//! the core, and encodes the answer.

use std::pin::Pin;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, BasicAuth, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint,
    FlightInfo, HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaAsIpc,
    SchemaResult, Ticket,
};
use futures::Stream;
use futures::stream::{BoxStream, StreamExt};
use prost::Message as _;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument as _;

use super::observe::Call;
use super::request::Upload;
use super::sql::{self, FlightSql, Put};
use super::{actions, request, stream};
use crate::auth::Credentials;
use crate::command::{ReadCommand, TableRead};
use crate::core::Core;
use crate::error::{Error, Result};
use crate::limits::{Scope, grpc_timeout};

const HANDSHAKE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

type RpcStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[derive(Clone)]
pub struct FloeService {
    core: Arc<Core>,
    sql: Arc<FlightSql>,
}

impl FloeService {
    pub fn new(core: Arc<Core>) -> Self {
        Self {
            sql: Arc::new(FlightSql::new(core.clone())),
            core,
        }
    }

    /// Who sent the request (its `authorization` header), and its bounds: the
    /// host's limits and the client's gRPC deadline.
    async fn scope<T>(&self, request: &Request<T>, call: &Call) -> Result<Scope> {
        let header = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        let principal = self
            .core
            .authenticate(Credentials::from_header(header)?)
            .await?;
        call.principal(&principal.name);
        Ok(self.core.scope(principal, grpc_timeout(request.metadata())))
    }

    /// A descriptor's read, planned by whichever front-end it is for: the answer's
    /// schema and the endpoints that return it.
    async fn plan(
        &self,
        descriptor: &FlightDescriptor,
        scope: &Scope,
        call: &Call,
    ) -> Result<(SchemaRef, Vec<FlightEndpoint>)> {
        if let Some(command) = request::sql_command(descriptor)? {
            let (schema, ticket) = self.sql.plan(command, scope, call).await?;
            return Ok((schema, vec![FlightEndpoint::new().with_ticket(ticket)]));
        }
        let command = request::read_command(descriptor)?;
        call.table(&command.describe());
        let planned = self.core.plan_read(command, scope).await?;
        let endpoints = planned
            .endpoints
            .iter()
            .map(|endpoint| {
                endpoint.locations.iter().fold(
                    FlightEndpoint::new().with_ticket(ticket(&endpoint.ticket)),
                    |e, uri| e.with_location(uri.clone()),
                )
            })
            .collect();
        Ok((planned.schema, endpoints))
    }
}

/// The user and password of a Handshake: the `authorization: Basic` header
/// (pyarrow's `authenticate_basic_token`, ADBC, JDBC) or a `BasicAuth` payload.
async fn handshake_credentials(
    request: Request<Streaming<HandshakeRequest>>,
) -> Result<Credentials> {
    let header = request
        .metadata()
        .get("authorization")
        .map(|v| v.as_bytes());
    let credentials = Credentials::from_header(header)?;
    if credentials != Credentials::None {
        return Ok(credentials);
    }
    // A client that opens a Handshake and sends nothing is not waited on for long.
    let first = tokio::time::timeout(HANDSHAKE_WAIT, request.into_inner().message())
        .await
        .map_err(|_| Error::Unauthenticated("the Handshake sent no credentials".into()))?
        .ok()
        .flatten();
    let Some(first) = first.filter(|m| !m.payload.is_empty()) else {
        return Ok(Credentials::None);
    };
    let basic = BasicAuth::decode(first.payload).map_err(|_| {
        Error::Unauthenticated("the Handshake payload is not Flight's BasicAuth message".into())
    })?;
    Ok(Credentials::Basic {
        user: basic.username,
        password: basic.password,
    })
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
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        let call = Call::start("Handshake");
        call.run(self.serve_handshake(request, &call)).await
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        let call = Call::start("ListFlights");
        call.run(self.serve_list_flights(request, &call)).await
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let call = Call::start("GetFlightInfo");
        call.run(self.serve_get_flight_info(request, &call)).await
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
        let call = Call::start("GetSchema");
        call.run(self.serve_get_schema(request, &call)).await
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let call = Call::start("DoGet");
        call.run(self.serve_do_get(request, &call)).await
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let call = Call::upload("DoPut");
        call.run(self.serve_do_put(request, &call)).await
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        let call = Call::start("DoExchange");
        call.run(self.serve_do_exchange(request, &call)).await
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let call = Call::start("DoAction");
        call.run(self.serve_do_action(request, &call)).await
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let call = Call::start("ListActions");
        call.run(self.serve_list_actions(request, &call)).await
    }
}

/// Each RPC's work; the trait above wraps it in its [`Call`] record.
impl FloeService {
    /// A user's password for a bearer token, in the `authorization` response header
    /// and as the payload. On a host that serves anonymous clients, a Handshake
    /// without credentials succeeds with no token.
    async fn serve_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
        call: &Call,
    ) -> Result<Response<BoxStream<'static, Result<HandshakeResponse, Status>>>, Status> {
        let (user, password) = match handshake_credentials(request).await? {
            Credentials::Basic { user, password } => (user, password),
            other => {
                call.principal(&self.core.authenticate(other).await?.name);
                return Ok(Response::new(once(HandshakeResponse::default())));
            }
        };
        let (principal, token) = self.core.login(&user, &password).await?;
        call.principal(&principal.name);
        let bearer = format!("Bearer {token}")
            .parse()
            .map_err(|_| Error::internal("the token is not a header value"))?;
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.into_bytes().into(),
        };
        let mut response = Response::new(once(reply));
        response.metadata_mut().insert("authorization", bearer);
        Ok(response)
    }

    async fn serve_list_flights(
        &self,
        request: Request<Criteria>,
        call: &Call,
    ) -> Result<Response<RpcStream<FlightInfo>>, Status> {
        let scope = self.scope(&request, call).await?;
        let tables = self.core.list_tables(&scope).await?;
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

    async fn serve_get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
        call: &Call,
    ) -> Result<Response<FlightInfo>, Status> {
        let scope = self.scope(&request, call).await?;
        let descriptor = request.into_inner();
        let (schema, endpoints) = self.plan(&descriptor, &scope, call).await?;
        let info = endpoints.into_iter().fold(
            FlightInfo::new()
                .try_with_schema(&schema)
                .map_err(|err| Error::internal(format!("encoding the schema: {err}")))?,
            FlightInfo::with_endpoint,
        );
        let info = info
            .with_descriptor(descriptor)
            .with_total_records(-1)
            .with_total_bytes(-1);
        Ok(Response::new(info))
    }

    async fn serve_get_schema(
        &self,
        request: Request<FlightDescriptor>,
        call: &Call,
    ) -> Result<Response<SchemaResult>, Status> {
        let scope = self.scope(&request, call).await?;
        let (schema, _) = self.plan(&request.into_inner(), &scope, call).await?;
        let result = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|err: arrow::error::ArrowError| Status::internal(err.to_string()))?;
        Ok(Response::new(result))
    }

    async fn serve_do_get(
        &self,
        request: Request<Ticket>,
        call: &Call,
    ) -> Result<Response<RpcStream<FlightData>>, Status> {
        let scope = self.scope(&request, call).await?;
        let ticket = request.into_inner();
        let batches = match sql::command(&ticket.ticket)? {
            Some(command) => self.sql.read(command, scope, call).await?,
            None => {
                let command = request::ticket(&ticket)?;
                call.table(&command.describe());
                self.core.read(command, scope).await?
            }
        };
        let data = stream::encode(batches.schema, call.rows(batches.stream));
        Ok(Response::new(call.data(data).boxed()))
    }

    async fn serve_do_put(
        &self,
        request: Request<Streaming<FlightData>>,
        call: &Call,
    ) -> Result<Response<RpcStream<PutResult>>, Status> {
        // Its own task: if the client hangs up, tonic drops this future, but the
        // upload still runs to its abort and cleans up.
        let (core, sql) = (self.core.clone(), self.sql.clone());
        let scope = self.scope(&request, call).await?;
        let data = call.data(request.into_inner()).boxed();
        let (call, span) = (call.clone(), call.span());
        let upload = tokio::spawn(
            async move {
                let opening = stream::open(data, |descriptor| {
                    let upload = request::upload(descriptor)?;
                    if let Some(table) = upload.table() {
                        call.table(&table);
                    }
                    Ok(upload)
                });
                let (upload, schema, batches) = scope.run("opening the upload", opening).await?;
                match upload {
                    Upload::Json(command) => {
                        let written = core.write(command, schema, batches, scope).await?;
                        call.add_rows(written.rows);
                        let metadata = serde_json::to_vec(&written).expect("summaries serialize");
                        Ok::<_, Error>(PutResult {
                            app_metadata: metadata.into(),
                        })
                    }
                    Upload::Sql(Put::Ingest(ingest)) => {
                        let (rows, answer) = sql.ingest(ingest, schema, batches, scope).await?;
                        call.add_rows(rows);
                        Ok(answer)
                    }
                    Upload::Sql(Put::Bind(handle)) => sql.bind(handle, batches, scope).await,
                }
            }
            .instrument(span),
        );
        let answer = upload
            .await
            .map_err(|err| Status::internal(format!("upload task failed: {err}")))??;
        Ok(Response::new(once(answer)))
    }

    async fn serve_do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
        call: &Call,
    ) -> Result<Response<RpcStream<FlightData>>, Status> {
        let scope = self.scope(&request, call).await?;
        let opening = stream::open(request.into_inner(), request::exchange_command);
        let (command, schema, batches) = scope.run("opening the exchange", opening).await?;
        let (schema, batches) = self.core.exchange(command, schema, batches, scope).await?;
        let data = stream::encode(schema, call.rows(batches));
        Ok(Response::new(call.data(data).boxed()))
    }

    async fn serve_do_action(
        &self,
        request: Request<Action>,
        call: &Call,
    ) -> Result<Response<RpcStream<arrow_flight::Result>>, Status> {
        let scope = self.scope(&request, call).await?;
        let action = request.into_inner();
        if sql::is_action(&action.r#type) {
            let answer = self.sql.action(action, &scope, call).await?;
            return Ok(Response::new(futures::stream::iter(answer.map(Ok)).boxed()));
        }
        let action = request::action(&action)?;
        let (name, table) = action.describe();
        call.action(name);
        if let Some(table) = table {
            call.table(&table);
        }
        let value = actions::run(&self.core, action, scope).await?;
        let body = serde_json::to_vec(&value).expect("JSON values serialize");
        Ok(Response::new(once(arrow_flight::Result {
            body: body.into(),
        })))
    }

    async fn serve_list_actions(
        &self,
        request: Request<Empty>,
        call: &Call,
    ) -> Result<Response<RpcStream<ActionType>>, Status> {
        self.scope(&request, call).await?;
        let types = request::ACTIONS
            .iter()
            .chain(sql::ACTIONS)
            .map(|(name, description)| {
                Ok(ActionType {
                    r#type: name.to_string(),
                    description: description.to_string(),
                })
            });
        Ok(Response::new(futures::stream::iter(types).boxed()))
    }
}
