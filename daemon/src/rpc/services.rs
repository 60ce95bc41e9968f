//! The gRPC service implementations: thin adapters from wire to handles.

use std::pin::Pin;

use mindory_proto::pb::{
    self, assistant_server::Assistant, daemon_server::Daemon, events_server::Events, library_server::Library, search_server::Search,
};
use mindory_proto::{MINDORY_VERSION, PROTOCOL_VERSION};
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::convert;
use super::error::RpcError;
use super::Core;

/// All four services share one `Core`.
#[derive(Clone)]
pub(crate) struct Services {
    core: Core,
}

impl Services {
    pub(crate) fn new(core: Core) -> Self {
        Services { core }
    }

    /// Runs a store read on the blocking pool (redb reads touch the disk).
    async fn read<T: Send + 'static, E: Into<RpcError> + Send + 'static>(
        &self,
        f: impl FnOnce(&crate::store::StoreReader) -> std::result::Result<T, E> + Send + 'static,
    ) -> std::result::Result<T, RpcError> {
        let reader = self.core.store.reader().clone();
        tokio::task::spawn_blocking(move || f(&reader))
            .await
            .map_err(|e| RpcError::Unavailable(e.to_string()))?
            .map_err(Into::into)
    }

    /// A book as clients should see it (see [`IndexHandle::visible`] and
    /// [`IngestHandle::visible`]).
    ///
    /// [`IndexHandle::visible`]: crate::index::IndexHandle::visible
    /// [`IngestHandle::visible`]: crate::ingest::IngestHandle::visible
    fn visible(&self, book: crate::store::BookRecord) -> crate::store::BookRecord {
        self.core.ingest.visible(self.core.index.visible(book))
    }
}

type Result<T> = std::result::Result<Response<T>, Status>;

#[tonic::async_trait]
impl Daemon for Services {
    #[tracing::instrument(skip_all, fields(client = %request.get_ref().client_name))]
    async fn hello(&self, request: Request<pb::HelloRequest>) -> Result<pb::HelloResponse> {
        let client = request.into_inner().client_protocol_version;
        if client != PROTOCOL_VERSION {
            tracing::warn!(client, daemon = PROTOCOL_VERSION, "client speaks another protocol version");
        }
        Ok(Response::new(pb::HelloResponse {
            protocol_version: PROTOCOL_VERSION,
            daemon_version: MINDORY_VERSION.to_string(),
            embedding_model: self.core.embed.model_id().to_string(),
        }))
    }

    async fn status(&self, _request: Request<pb::StatusRequest>) -> Result<pb::StatusResponse> {
        let (books, chunks, _) = self.read(|r| r.counts()).await?;
        let (pending, running) = self.core.ingest.queue_depth().await;
        Ok(Response::new(pb::StatusResponse {
            protocol_version: PROTOCOL_VERSION,
            daemon_version: MINDORY_VERSION.to_string(),
            embedding_model: self.core.embed.model_id().to_string(),
            books,
            chunks,
            queue_pending: pending,
            queue_running: running,
            embedded_since_start: self.core.embed.embedded_count(),
            vectors_indexed: self.core.index.len() as u64,
            keyword_indexed: self.core.keyword.len(),
            data_dir: self.core.data_dir.display().to_string(),
            uptime_ms: self.core.started.elapsed().as_millis() as u64,
            folders: self.core.library.folders().await.into_iter().map(convert::folder).collect(),
            swap: self.core.swap.status().map_err(RpcError::from)?.map(|s| pb::ModelSwap {
                model: s.target,
                done: s.done,
                total: s.total,
            }),
            storage_fault: self.core.store.reader().storage_fault().unwrap_or_default(),
        }))
    }

    async fn list_models(&self, _request: Request<pb::ListModelsRequest>) -> Result<pb::ListModelsResponse> {
        let active = self.core.embed.model_id();
        let swapping = self.core.swap.status().map_err(RpcError::from)?.map(|s| s.target);
        let mut models: Vec<pb::EmbeddingModel> = mindory_proto::models::embedding_models(&self.core.models_dir)
            .into_iter()
            .map(|m| convert::embedding_model(m, &active, swapping.as_deref()))
            .collect();
        // The `[embed]` server's model, when one is configured (a settings
        // error shows when it is used, not here).
        if let Some(Ok(id)) = self.core.embed.remote_model_id() {
            let dimensions = if id == active { self.core.embed.dimensions() } else { 0 };
            models.push(convert::remote_embedding_model(&id, dimensions, &active, swapping.as_deref()));
        }
        Ok(Response::new(pb::ListModelsResponse { models }))
    }

    #[tracing::instrument(skip_all, fields(model = %request.get_ref().name))]
    async fn use_model(&self, request: Request<pb::UseModelRequest>) -> Result<pb::UseModelResponse> {
        let name = request.into_inner().name;
        let (outcome, id) = self.core.swap.use_model(name).await.map_err(RpcError::from)?;
        Ok(Response::new(pb::UseModelResponse {
            outcome: convert::use_outcome(outcome) as i32,
            model: id,
        }))
    }

    async fn shutdown(&self, _request: Request<pb::ShutdownRequest>) -> Result<pb::ShutdownResponse> {
        let _ = self.core.shutdown_request.send(true);
        Ok(Response::new(pb::ShutdownResponse {}))
    }
}

#[tonic::async_trait]
impl Library for Services {
    #[tracing::instrument(skip_all, fields(paths = request.get_ref().paths.len()))]
    async fn add_paths(&self, request: Request<pb::AddPathsRequest>) -> Result<pb::AddPathsResponse> {
        let results = self
            .core
            .ingest
            .add_paths(request.into_inner().paths, false)
            .await
            .map_err(RpcError::from)?;
        Ok(Response::new(pb::AddPathsResponse {
            results: results.into_iter().map(convert::added).collect(),
        }))
    }

    async fn list_books(&self, request: Request<pb::ListBooksRequest>) -> Result<pb::ListBooksResponse> {
        let request = request.into_inner();
        let after = convert::page_after(&request.page_token)?;
        let limit = request.page_size as usize;
        // Only this page is read from the store (page size 0: every book).
        let (books, more) = self.read(move |r| r.books_page(after, limit)).await?;
        let next_page_token = match books.last() {
            Some(last) if more => convert::page_token(last.id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListBooksResponse {
            books: books.into_iter().map(|b| convert::book(self.visible(b))).collect(),
            next_page_token,
        }))
    }

    async fn get_book(&self, request: Request<pb::GetBookRequest>) -> Result<pb::Book> {
        let id = convert::book_id(request.into_inner().id)?;
        let (book, kinds) = self
            .read(move |r| Ok::<_, crate::store::StoreError>((r.book(id)?, r.passage_kind_counts(id)?)))
            .await?;
        let book = book.ok_or(RpcError::Store(crate::store::StoreError::NoSuchBook(id)))?;
        let mut book = convert::book(self.visible(book));
        book.passage_kinds = kinds.into_iter().map(|(k, n)| (k.name().to_string(), n)).collect();
        Ok(Response::new(book))
    }

    #[tracing::instrument(skip_all, fields(id = request.get_ref().id))]
    async fn remove_book(&self, request: Request<pb::RemoveBookRequest>) -> Result<pb::RemoveBookResponse> {
        let removed = self
            .core
            .ingest
            .remove_book(convert::book_id(request.into_inner().id)?)
            .await
            .map_err(RpcError::from)?;
        Ok(Response::new(pb::RemoveBookResponse { chunks_removed: removed }))
    }

    async fn get_passage(&self, request: Request<pb::GetPassageRequest>) -> Result<pb::Passage> {
        let req = request.into_inner();
        let at = convert::location(req.at);
        let (book_id, max) = (convert::book_id(req.book_id)?, convert::passage_limit(&at, req.max_chars));
        let passage = self.read(move |r| crate::read::passage(r, book_id, at, max)).await?;
        Ok(Response::new(convert::passage(passage)))
    }

    async fn add_folder(&self, request: Request<pb::AddFolderRequest>) -> Result<pb::AddFolderResponse> {
        let path = request.into_inner().path;
        let scan = self.core.library.add_folder(path.clone()).await.map_err(RpcError::from)?;
        let canonical =
            std::fs::canonicalize(mindory_proto::path_text::decode(&path)).map_or(path, |p| mindory_proto::path_text::encode(&p));
        let folder = self
            .core
            .library
            .folders()
            .await
            .into_iter()
            .find(|f| f.path == canonical)
            .map(convert::folder);
        Ok(Response::new(pb::AddFolderResponse {
            folder,
            scan: Some(convert::scan_report(scan)),
        }))
    }

    async fn remove_folder(&self, request: Request<pb::RemoveFolderRequest>) -> Result<pb::RemoveFolderResponse> {
        let books_removed = self
            .core
            .library
            .remove_folder(request.into_inner().path)
            .await
            .map_err(RpcError::from)?;
        Ok(Response::new(pb::RemoveFolderResponse { books_removed }))
    }

    async fn list_folders(&self, _request: Request<pb::ListFoldersRequest>) -> Result<pb::ListFoldersResponse> {
        let folders = self.core.library.folders().await.into_iter().map(convert::folder).collect();
        Ok(Response::new(pb::ListFoldersResponse { folders }))
    }

    async fn reindex(&self, request: Request<pb::ReindexRequest>) -> Result<pb::ReindexResponse> {
        let queued = self
            .core
            .ingest
            .reindex(convert::book_ids(request.into_inner().book_ids)?)
            .await
            .map_err(RpcError::from)?;
        Ok(Response::new(pb::ReindexResponse { queued }))
    }
}

#[tonic::async_trait]
impl Search for Services {
    #[tracing::instrument(skip_all, fields(k = request.get_ref().k))]
    async fn search(&self, request: Request<pb::SearchRequest>) -> Result<pb::SearchResponse> {
        let started = std::time::Instant::now();
        let req = request.into_inner();
        let core = &self.core;
        let hits = core.searcher.search(convert::search_query(req)).await.map_err(RpcError::from)?;
        Ok(Response::new(pb::SearchResponse {
            hits: hits.into_iter().map(convert::hit).collect(),
            embedding_model: core.embed.model_id().to_string(),
            took_us: started.elapsed().as_micros() as u64,
        }))
    }
}

type EventStream = Pin<Box<dyn Stream<Item = std::result::Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl Events for Services {
    type SubscribeStream = EventStream;

    async fn subscribe(&self, _request: Request<pb::SubscribeRequest>) -> Result<Self::SubscribeStream> {
        let mut events = self.core.events.subscribe().await.map_err(RpcError::Unavailable)?;
        let mut stopping = self.core.stopping.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    // The stream ends when the daemon stops, so the graceful
                    // server shutdown is not held up by subscribers.
                    _ = stopping.wait_for(|s| *s) => break,
                    next = events.recv() => next,
                };
                let item = match next {
                    Ok(event) => convert::event(event),
                    Err(RecvError::Lagged(dropped)) => convert::lagged(dropped),
                    Err(RecvError::Closed) => break,
                };
                if tx.send(Ok(item)).await.is_err() {
                    break; // the client went away
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

type AskStream = Pin<Box<dyn Stream<Item = std::result::Result<pb::AskEvent, Status>> + Send>>;

impl Services {
    /// Runs an assistant request in its own task and streams its events.
    /// When the client cancels or disconnects, tonic drops the stream, the
    /// pipeline sees its channel closed and stops the model.
    fn answer_stream(&self, request: crate::assistant::Request) -> AskStream {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let assistant = self.core.assistant.clone();
        tokio::spawn(async move { assistant.run(request, tx).await });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(|item| match item {
            Ok(event) => Ok(convert::ask_event(event)),
            Err(e) => Err(Status::from(RpcError::from(e))),
        });
        Box::pin(stream)
    }
}

#[tonic::async_trait]
impl Assistant for Services {
    type AskStream = AskStream;
    type SummarizeStream = AskStream;
    type ExplainStream = AskStream;

    #[tracing::instrument(skip_all, fields(books = request.get_ref().book_ids.len()))]
    async fn ask(&self, request: Request<pb::AskRequest>) -> Result<Self::AskStream> {
        Ok(Response::new(self.answer_stream(convert::ask_request(request.into_inner())?)))
    }

    #[tracing::instrument(skip_all, fields(book = request.get_ref().book_id, chapter = request.get_ref().chapter))]
    async fn summarize(&self, request: Request<pb::SummarizeRequest>) -> Result<Self::SummarizeStream> {
        Ok(Response::new(self.answer_stream(convert::summarize_request(request.into_inner())?)))
    }

    #[tracing::instrument(skip_all, fields(book = request.get_ref().book_id, at = request.get_ref().at))]
    async fn explain(&self, request: Request<pb::ExplainRequest>) -> Result<Self::ExplainStream> {
        Ok(Response::new(self.answer_stream(convert::explain_request(request.into_inner())?)))
    }

    async fn llm_info(&self, _request: Request<pb::LlmInfoRequest>) -> Result<pb::LlmInfoResponse> {
        let info = self
            .core
            .llm
            .info()
            .await
            .map_err(|e| RpcError::from(crate::assistant::AssistantError::from(e)))?;
        Ok(Response::new(convert::llm_info(info)))
    }
}
