//! The one way a client opens a gRPC channel to the daemon's Unix socket.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Why a client could not reach the daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// Nothing listens on the socket (missing file, refused, or permission denied).
    #[error(
        "cannot reach the Mindory daemon at {path}; start it with `mindoryd` (or pass --socket / set MINDORY_SOCKET to where it listens)"
    )]
    Unreachable {
        /// The socket path that was tried.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The socket accepted the connection but the gRPC handshake failed.
    #[error("the daemon at {path} did not answer over gRPC (it refuses clients running as another user)")]
    Transport {
        /// The socket path that was tried.
        path: PathBuf,
        /// The transport error.
        source: tonic::transport::Error,
    },
}

/// Connects to the daemon listening on `socket`.
///
/// The socket is probed first so that "daemon not running" gives a plain
/// message instead of a transport error. The channel is lazy afterwards: tonic
/// reconnects through the same connector when needed.
pub async fn connect(socket: &Path) -> Result<Channel, ConnectError> {
    let path = socket.to_path_buf();
    if let Err(source) = UnixStream::connect(&path).await {
        return Err(ConnectError::Unreachable { path, source });
    }
    // The URI is required by tonic but never resolved: the connector below
    // always dials the Unix socket.
    let endpoint = Endpoint::try_from("http://[::1]:50051").expect("static URI is valid");
    let dial_path = path.clone();
    endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let dial_path = dial_path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(dial_path).await?)) }
        }))
        .await
        .map_err(|source| ConnectError::Transport { path, source })
}
