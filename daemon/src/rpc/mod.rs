//! The gRPC layer: services, conversions, error mapping, reflection and
//! health ([`discovery`]) and the listener.
//!
//! Invariant: generated protobuf types appear only in this module; errors
//! become `tonic::Status` only in [`error`].

pub(crate) mod convert;
mod discovery;
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
    /// The reflection service could not read the API's descriptors, which
    /// are compiled into the binary: a broken build, not a user's mistake.
    #[error("the gRPC reflection service cannot read Mindory's API descriptors ({0}); this build is broken, rebuild mindoryd")]
    Reflection(String),
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

/// The largest request the daemon reads, in bytes: tonic's default, named
/// here because it is part of the contract (a larger request is refused
/// with OUT_OF_RANGE before it is read; the message names both sizes).
/// The largest real request, a few thousand paths to add, is far below it.
pub(crate) const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// The largest reply the daemon sends, in bytes: what the stock gRPC
/// clients (tonic's, grpc-go's, grpcurl's) accept by default, `mindory`
/// among them. A larger reply would be thrown away by the client anyway, so
/// it fails here with OUT_OF_RANGE (naming both sizes) instead of being sent in
/// full to one client while the others wait on the same cores.
const MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;

/// Calls one connection may have running at once; more wait, in order, on
/// that connection alone. Searches are CPU-bound and there are a few cores
/// (the query embedder is one thread), so a client with 64 searches in
/// flight on one connection gains no throughput over one with 8, but
/// without the limit it fills every queue and each other client's search
/// waits behind all of its own (the load bench's fairness check measures
/// it). 8 leaves a frontend room to overlap a search, a listing, a status
/// poll and an answer on one connection without queueing. Streams (Ask,
/// Subscribe) hold their slot only until their first reply headers, so
/// long-lived streams do not use it up.
const CALLS_PER_CONNECTION: usize = 8;

/// Binds the socket and serves every service until `stop` resolves; then
/// reports NOT_SERVING, stops accepting and waits for in-flight calls.
///
/// Beside Mindory's services, the socket serves gRPC server reflection and
/// the standard health service ([`discovery`]), so grpcurl and the stock
/// clients of other languages can find and probe the API.
pub(crate) async fn serve(core: Core, socket: &Path, stop: impl Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
    let (reflection_v1, reflection_v1alpha) = discovery::reflection()?;
    let health = discovery::HealthState::new().await;
    let health_service = health.service(core.stopping.clone());
    let listener = socket::bind(socket)?;
    tracing::info!(socket = %socket.display(), "serving");
    let incoming = UnixListenerStream::new(listener).filter(|conn| match conn {
        Ok(stream) => socket::peer_allowed(stream),
        Err(_) => true,
    });
    // Every actor is up by the time `serve` runs, so the daemon serves as
    // soon as the socket accepts calls.
    health.serving().await;
    let stop = async move {
        stop.await;
        // Watchers learn the daemon is going away before the server stops
        // accepting calls.
        health.not_serving().await;
    };
    let services = services::Services::new(core);
    tonic::transport::Server::builder()
        .concurrency_limit_per_connection(CALLS_PER_CONNECTION)
        .add_service(
            DaemonServer::new(services.clone())
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_REPLY_BYTES),
        )
        .add_service(
            LibraryServer::new(services.clone())
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_REPLY_BYTES),
        )
        .add_service(
            SearchServer::new(services.clone())
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_REPLY_BYTES),
        )
        .add_service(
            AssistantServer::new(services.clone())
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_REPLY_BYTES),
        )
        .add_service(
            EventsServer::new(services)
                .max_decoding_message_size(MAX_REQUEST_BYTES)
                .max_encoding_message_size(MAX_REPLY_BYTES),
        )
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, stop)
        .await
        .map_err(|e| ServeError::Serve(e.to_string()))
}
