//! The Arrow Flight front-end, protocol only: `request` decodes descriptors,
//! tickets and action bodies into typed commands; `service` hands each RPC to one
//! use case of the [`Core`](crate::core::Core) and encodes its answer; `stream`
//! turns Flight data into record batches and back; `actions` answers actions.
//! `sql` is the second front-end on the same port: Flight SQL.

mod actions;
mod connection;
mod observe;
mod request;
mod schema_json;
mod service;
mod sql;
mod stream;

use std::future::Future;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use futures::TryStreamExt;
use tonic::transport::server::TcpIncoming;

use self::connection::IdleTimeout;

pub use service::FloeService;

use crate::config::ServerSettings;
use crate::core::Core;

const MAX_HEADER_LIST_BYTES: u32 = 2 << 20;

/// Listen on the configured address (port 0: a free one).
pub async fn bind(settings: &ServerSettings) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = settings.listen_addr();
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen on {addr}: {err}"))
}

/// Serve Flight on `listener` until `shutdown` resolves.
pub async fn serve(
    settings: &ServerSettings,
    listener: tokio::net::TcpListener,
    core: Arc<Core>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let tls = settings.tls()?;
    let local = listener.local_addr()?;
    let scheme = settings.scheme();
    tracing::info!(address = %local, tls = tls.is_some(), mutual_tls = settings.tls_client_ca.is_some(),
        "floe host listening ({scheme}://{local})");
    let service = FlightServiceServer::new(FloeService::new(core))
        .max_decoding_message_size(settings.max_message_bytes())
        .max_encoding_message_size(settings.max_message_bytes());
    // Without TCP_NODELAY, small replies wait on the client's delayed ACK (~40 ms each).
    let idle = settings.idle_connection_timeout();
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .map_ok(move |tcp| IdleTimeout::new(tcp, idle));
    // The standard gRPC health service, beside Flight, for load balancers and probes.
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<FlightServiceServer<FloeService>>()
        .await;
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server
            .tls_config(tls)
            .map_err(|err| anyhow::anyhow!("the TLS certificate or key is not usable: {err}"))?;
    }
    server
        // Room for an oversized `authorization` header to reach the host, which
        // answers it with a message instead of a reset stream.
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .http2_keepalive_interval(Some(idle / 3))
        .http2_keepalive_timeout(Some(idle / 3))
        .max_concurrent_streams(settings.max_streams_per_connection)
        .add_service(health_service)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    tracing::info!("floe host stopped");
    Ok(())
}
