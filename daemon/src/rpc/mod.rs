//! The gRPC layer: services, conversions, error mapping and the listener.
//!
//! Invariant: generated protobuf types appear only in this module; errors
//! become `tonic::Status` only in [`error`].

mod convert;
mod error;
mod services;
pub(crate) mod socket;

use std::future::Future;
use std::path::Path;

use mindory_proto::pb::{
    assistant_server::AssistantServer, daemon_server::DaemonServer, events_server::EventsServer, library_server::LibraryServer,
    search_server::SearchServer,
};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::StreamExt;

use crate::{Core, DaemonError};

/// Binds the socket and serves every service until `stop` resolves; then
/// stops accepting and waits for in-flight calls.
pub(crate) async fn serve(core: Core, socket: &Path, stop: impl Future<Output = ()> + Send + 'static) -> Result<(), DaemonError> {
    let listener = socket::bind(socket)?;
    tracing::info!(socket = %socket.display(), "serving");
    let incoming = UnixListenerStream::new(listener).filter(|conn| match conn {
        Ok(stream) => socket::peer_allowed(stream),
        Err(_) => true,
    });
    let services = services::Services::new(core);
    tonic::transport::Server::builder()
        .add_service(DaemonServer::new(services.clone()))
        .add_service(LibraryServer::new(services.clone()))
        .add_service(SearchServer::new(services.clone()))
        .add_service(AssistantServer::new(services.clone()))
        .add_service(EventsServer::new(services))
        .serve_with_incoming_shutdown(incoming, stop)
        .await
        .map_err(|e| DaemonError::Serve(e.to_string()))
}
