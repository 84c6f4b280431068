//! The Arrow Flight front-end, protocol only: `request` decodes descriptors,
//! tickets and action bodies into typed commands; `service` hands each RPC to one
//! use case of the [`Core`](crate::core::Core) and encodes its answer; `stream`
//! turns Flight data into record batches and back; `actions` answers actions.

mod actions;
mod connection;
mod request;
mod schema_json;
mod service;
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

/// Serve Flight on the configured address until `shutdown` resolves.
pub async fn serve(
    settings: &ServerSettings,
    core: Arc<Core>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = settings.listen_addr();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen on {addr}: {err}"))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, "floe host listening (grpc://{local})");
    let service = FlightServiceServer::new(FloeService::new(core))
        .max_decoding_message_size(settings.max_message_bytes())
        .max_encoding_message_size(settings.max_message_bytes());
    // Without TCP_NODELAY, small replies wait on the client's delayed ACK (~40 ms each).
    let idle = settings.idle_connection_timeout();
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .map_ok(move |tcp| IdleTimeout::new(tcp, idle));
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(idle / 3))
        .http2_keepalive_timeout(Some(idle / 3))
        .max_concurrent_streams(settings.max_streams_per_connection)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    tracing::info!("floe host stopped");
    Ok(())
}
