//! The one place where daemon errors become `tonic::Status`.
//!
//! Every error family says what kind of failure it is (`kind()`, see
//! [`crate::error_kind`]), delegating to the error it wraps; this file maps
//! the kinds to status codes in one table. So a wrapped "unavailable" stays
//! unavailable however deep it sits, and a new variant costs one `kind()` arm.

use tonic::{Code, Status};

use crate::error_kind::ErrorKind;

/// Any error an RPC handler can return.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RpcError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Ingest(#[from] crate::ingest::IngestError),
    #[error(transparent)]
    Search(#[from] crate::search::SearchError),
    #[error(transparent)]
    Read(#[from] crate::read::ReadError),
    #[error(transparent)]
    Library(#[from] crate::library::LibraryError),
    #[error(transparent)]
    Assistant(#[from] crate::assistant::AssistantError),
    #[error(transparent)]
    Swap(#[from] crate::swap::SwapError),
    #[error("{0}")]
    Unavailable(String),
    /// A request the wire layer refuses before any daemon family sees it
    /// (a page token it did not make); the message says what to send.
    #[error("{0}")]
    Invalid(String),
}

impl RpcError {
    /// The kind of the error inside.
    fn kind(&self) -> ErrorKind {
        match self {
            RpcError::Store(e) => e.kind(),
            RpcError::Ingest(e) => e.kind(),
            RpcError::Search(e) => e.kind(),
            RpcError::Read(e) => e.kind(),
            RpcError::Library(e) => e.kind(),
            RpcError::Assistant(e) => e.kind(),
            RpcError::Swap(e) => e.kind(),
            RpcError::Unavailable(_) => ErrorKind::Unavailable,
            RpcError::Invalid(_) => ErrorKind::Invalid,
        }
    }
}

/// The status code for each kind of failure.
fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::Invalid => Code::InvalidArgument,
        ErrorKind::OutOfRange => Code::OutOfRange,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Precondition => Code::FailedPrecondition,
        ErrorKind::Cancelled => Code::Cancelled,
        ErrorKind::Internal => Code::Internal,
    }
}

impl From<RpcError> for Status {
    fn from(e: RpcError) -> Status {
        let code = code(e.kind());
        if code == Code::Internal {
            tracing::error!(error = %e, "request failed");
        }
        Status::new(code, bounded(e.to_string()))
    }
}

/// The longest error message a client gets, in characters.
const MAX_MESSAGE_CHARS: usize = 2_000;

/// An error message cut to [`MAX_MESSAGE_CHARS`]. Messages quote what the
/// client sent (a path, a model name, a query), and a client may send
/// megabytes: echoing them back whole would make the error as large as the
/// input, in the reply and in the logs. The start says what failed and the
/// end what to do next, so the middle is what goes.
fn bounded(message: String) -> String {
    let chars = message.chars().count();
    if chars <= MAX_MESSAGE_CHARS {
        return message;
    }
    let (head, tail) = (MAX_MESSAGE_CHARS * 2 / 3, MAX_MESSAGE_CHARS / 4);
    let start: String = message.chars().take(head).collect();
    let end: String = message.chars().skip(chars - tail).collect();
    format!("{start} … ({} characters left out) … {end}", chars - head - tail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assistant::AssistantError;
    use crate::llm::LlmError;
    use crate::search::SearchError;
    use crate::store::StoreError;

    #[test]
    fn messages_that_quote_huge_input_are_cut_in_the_middle() {
        let name = "x".repeat(1_000_000);
        let e = RpcError::Unavailable(format!("unknown model `{name}`; `mindory models list` shows them"));
        let message = Status::from(e).message().to_string();
        assert!(message.chars().count() < MAX_MESSAGE_CHARS + 60, "{}", message.len());
        assert!(message.starts_with("unknown model `xxx"), "{message}");
        assert!(message.ends_with("`mindory models list` shows them"), "{message}");
        assert!(message.contains("characters left out"));
        let short = "no book with id 7; `mindory books` lists them";
        assert_eq!(bounded(short.to_string()), short);
    }

    fn status(e: impl Into<RpcError>) -> Code {
        Status::from(e.into()).code()
    }

    /// Wrapped errors keep their kind at any depth: the cases that used to
    /// fall through to `Internal`.
    #[test]
    fn wrapped_errors_keep_their_kind() {
        let store_down = || StoreError::Unavailable("restarting".into());
        assert_eq!(status(SearchError::Store(store_down())), Code::Unavailable);
        assert_eq!(status(AssistantError::Search(SearchError::Store(store_down()))), Code::Unavailable);
        assert_eq!(status(AssistantError::Search(SearchError::EmptyQuery)), Code::InvalidArgument);
        assert_eq!(
            status(crate::library::LibraryError::Ingest(
                crate::ingest::IngestError::Store(store_down())
            )),
            Code::Unavailable
        );
        assert_eq!(
            status(AssistantError::Read(crate::read::ReadError::Store(StoreError::NoSuchBook(3)))),
            Code::NotFound
        );
    }

    /// A panicked library read is a bug, not a model that is unavailable.
    #[test]
    fn a_panicked_read_is_internal_not_an_unavailable_model() {
        assert_eq!(status(AssistantError::ReadPanicked("boom".into())), Code::Internal);
        assert_eq!(status(AssistantError::Llm(LlmError::Crashed("boom".into()))), Code::Unavailable);
        assert_eq!(status(AssistantError::Cancelled), Code::Cancelled);
        assert_eq!(status(RpcError::Unavailable("stopping".into())), Code::Unavailable);
    }
}
