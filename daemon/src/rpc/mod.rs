//! The gRPC layer: services, conversions, error mapping and the listener.
//!
//! Invariant: generated protobuf types appear only in this module; errors
//! become `tonic::Status` only in [`error`].

pub(crate) mod convert;
mod error;
mod services;
pub(crate) mod socket;

use std::future::Future;
use std::path::{Path, PathBuf};

use mindory_proto::pb::{
    assistant_server::AssistantServer, daemon_server::DaemonServer, events_server::EventsServer, library_server::LibraryServer,
    search_server::SearchServer,
};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::StreamExt;

/// Why the gRPC server could not start, or stopped with an error. Owned
/// here, not by `lib.rs`, so the RPC layer imports nothing from above it;
/// [`crate::DaemonError`] wraps it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Another daemon answers on the socket.
    #[error("another mindoryd is already listening on {0}; stop it with `mindory shutdown` or pass a different --socket")]
    AlreadyRunning(PathBuf),
    /// The socket or its directory could not be set up.
    #[error("cannot set up the socket {path}: {source}")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Something other than a socket is at the socket path: it is never
    /// deleted (a mistyped `--socket` must not cost a file).
    #[error("{path} exists and is {kind}, not a socket; Mindory never deletes it: pass another --socket, or move that file away")]
    NotASocket {
        /// The socket path.
        path: PathBuf,
        /// What is there ("a regular file", "a folder"…).
        kind: &'static str,
    },
    /// The gRPC server failed.
    #[error("the gRPC server failed: {0}")]
    Serve(String),
}

/// Everything the RPC services share: the handles of the actors they
/// call, and the daemon's lifecycle flags.
#[derive(Clone)]
pub(crate) struct Core {
    pub store: crate::store::StoreHandle,
    pub index: crate::index::IndexHandle,
    pub keyword: crate::keyword::KeywordHandle,
    pub searcher: crate::search::Searcher,
    pub events: crate::events::EventBus,
    pub ingest: crate::ingest::IngestHandle,
    pub library: crate::library::LibraryHandle,
    pub embed: crate::embed::EmbedHandle,
    pub llm: crate::llm::LlmHandle,
    pub assistant: crate::assistant::Assistant,
    pub swap: crate::swap::SwapHandle,
    /// Where the database and the indexes live (reported by `Status`).
    pub data_dir: PathBuf,
    /// Where the model files are (for listing installed models).
    pub models_dir: PathBuf,
    pub started: std::time::Instant,
    /// Set to true when a client asks the daemon to stop.
    pub shutdown_request: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    /// Flips to true when shutdown begins; event streams end on it.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// Binds the socket and serves every service until `stop` resolves; then
/// stops accepting and waits for in-flight calls.
pub(crate) async fn serve(core: Core, socket: &Path, stop: impl Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
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
        .map_err(|e| ServeError::Serve(e.to_string()))
}
