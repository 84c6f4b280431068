//! The Arrow Flight surface: `service` maps each RPC to `get` (reads), `put`
//! (writes), `exchange` (transform chains) or `actions`; `stream` turns Flight
//! data into record batches and back. Everything below speaks the library's own types.

mod actions;
mod exchange;
mod get;
mod put;
pub mod schema_json;
mod service;
mod stream;

use std::future::Future;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use tonic::transport::server::TcpIncoming;

pub use service::FloeService;

use crate::config::Config;
use crate::engines::Lakehouse;
use crate::plugins::Plugins;

/// Serve Flight on the configured address until `shutdown` resolves.
pub async fn serve(
    config: &Config,
    lakehouse: Arc<Lakehouse>,
    plugins: Arc<Plugins>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = config.listen_addr();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen on {addr}: {err}"))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, "floe host listening (grpc://{local})");
    let service = FlightServiceServer::new(FloeService::new(lakehouse, plugins))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    // Without TCP_NODELAY, small replies wait on the client's delayed ACK (~40 ms each).
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    tracing::info!("floe host stopped");
    Ok(())
}
