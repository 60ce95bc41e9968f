//! The one place where daemon errors become `tonic::Status`.

use tonic::{Code, Status};

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
}

fn code(e: &RpcError) -> Code {
    use crate::ingest::IngestError;
    use crate::library::LibraryError;
    use crate::search::SearchError;
    use crate::store::StoreError;
    match e {
        RpcError::Store(StoreError::NoSuchBook(_)) | RpcError::Ingest(IngestError::Store(StoreError::NoSuchBook(_))) => Code::NotFound,
        RpcError::Search(SearchError::EmptyQuery) => Code::InvalidArgument,
        RpcError::Search(SearchError::Store(StoreError::NoSuchBook(_))) => Code::NotFound,
        RpcError::Read(crate::read::ReadError::Store(StoreError::NoSuchBook(_))) => Code::NotFound,
        RpcError::Read(crate::read::ReadError::NotReady(_)) => Code::FailedPrecondition,
        RpcError::Read(crate::read::ReadError::OutOfRange(_)) => Code::OutOfRange,
        RpcError::Library(LibraryError::NotADirectory(_) | LibraryError::Unreadable { .. }) => Code::InvalidArgument,
        RpcError::Library(LibraryError::NotAFolder(_)) => Code::NotFound,
        RpcError::Library(LibraryError::Unavailable(_)) => Code::Unavailable,
        RpcError::Assistant(a) => assistant_code(a),
        RpcError::Swap(crate::swap::SwapError::Model(mindory_proto::models::ModelError::UnknownEmbeddingModel { .. })) => {
            Code::InvalidArgument
        }
        RpcError::Swap(crate::swap::SwapError::Model(_) | crate::swap::SwapError::Embed(_)) => Code::FailedPrecondition,
        RpcError::Swap(crate::swap::SwapError::Unavailable(_)) => Code::Unavailable,
        RpcError::Unavailable(_) | RpcError::Ingest(IngestError::Unavailable(_)) | RpcError::Store(StoreError::Unavailable(_)) => {
            Code::Unavailable
        }
        _ => Code::Internal,
    }
}

fn assistant_code(e: &crate::assistant::AssistantError) -> Code {
    use crate::assistant::AssistantError as A;
    use crate::llm::LlmError as L;
    use crate::read::ReadError;
    use crate::store::StoreError;
    match e {
        A::EmptyQuestion => Code::InvalidArgument,
        A::Llm(L::NotConfigured(_)) | A::NoRoom(_) => Code::FailedPrecondition,
        A::Llm(L::Cancelled) | A::Cancelled => Code::Cancelled,
        // The model's endpoint or thread failed: a retry may succeed.
        A::Llm(L::OpenAi(_) | L::Unavailable(_) | L::Crashed(_)) => Code::Unavailable,
        A::Read(ReadError::Store(StoreError::NoSuchBook(_))) | A::Store(StoreError::NoSuchBook(_)) => Code::NotFound,
        A::Search(crate::search::SearchError::Store(StoreError::NoSuchBook(_))) => Code::NotFound,
        A::Read(ReadError::NotReady(_)) => Code::FailedPrecondition,
        A::Read(ReadError::OutOfRange(_)) => Code::OutOfRange,
        _ => Code::Internal,
    }
}

impl From<RpcError> for Status {
    fn from(e: RpcError) -> Status {
        let code = code(&e);
        if code == Code::Internal {
            tracing::error!(error = %e, "request failed");
        }
        Status::new(code, e.to_string())
    }
}
