//! The app's one connection to the daemon and its RPCs, independent of Tauri.
//!
//! [`Client`] owns the socket path and a cached gRPC channel; every method is
//! one RPC and returns the webview's JSON shape (see [`crate::wire`]). The
//! event stream ([`Client::follow_events`]) and the streamed assistant calls
//! ([`Client::ask`] and friends) report through an [`EventSink`], which is the
//! Tauri `AppHandle` in the app and a channel in the tests, so the whole layer
//! is tested against a real daemon without a display.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mindory_proto::pb::{
    self, assistant_client::AssistantClient, daemon_client::DaemonClient, events_client::EventsClient, library_client::LibraryClient,
    search_client::SearchClient,
};
use mindory_proto::PROTOCOL_VERSION;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{oneshot, Mutex as AsyncMutex};
use tonic::transport::Channel;

use crate::wire;

/// Where events go: the webview in the app, a channel in the tests.
pub trait EventSink: Send + Sync + 'static {
    /// Delivers one named event with its JSON payload.
    fn emit(&self, name: &str, payload: Value);
}

/// Event names the webview listens to.
pub mod names {
    /// A daemon event (`Subscribe`), as [`crate::wire::event`] shapes it.
    pub const DAEMON_EVENT: &str = "mindory://event";
    /// The connection changed: connected, disconnected, protocol mismatch.
    pub const CONNECTION: &str = "mindory://connection";
    /// One streamed assistant event, tagged with the request's id.
    pub const ASK: &str = "mindory://ask";
}

/// Why a call failed, worded for the person using the app.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Connect(#[from] mindory_proto::ConnectError),
    #[error("the daemon speaks protocol {daemon} and this app speaks {app}; install matching versions of mindoryd and the app")]
    ProtocolMismatch { daemon: u32, app: u32 },
    #[error("{}", describe_status(.0))]
    Rpc(#[from] tonic::Status),
    #[error("{0}")]
    BadRequest(String),
}

/// A gRPC status as a sentence: the daemon's own message, which already says
/// what to do, prefixed by the kind when the message alone would be vague.
fn describe_status(status: &tonic::Status) -> String {
    match status.code() {
        tonic::Code::Unavailable => {
            format!("the daemon is unavailable ({}); is mindoryd still running?", status.message())
        }
        tonic::Code::Cancelled => "cancelled".to_string(),
        _ => status.message().to_string(),
    }
}

impl serde::Serialize for ClientError {
    /// Commands fail with the message as a plain string: the webview shows it.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// Where to read in a book (one of chapter, page label or char offset).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct PassageAt {
    pub chapter: Option<u32>,
    pub page_label: Option<String>,
    pub offset: Option<u64>,
    #[serde(default)]
    pub max_chars: u32,
}

/// A search as the Search view sends it.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct SearchArgs {
    pub query: String,
    #[serde(default)]
    pub k: u32,
    #[serde(default)]
    pub book_ids: Vec<u64>,
    /// "hybrid" (default), "vector" or "keyword".
    #[serde(default)]
    pub mode: Option<String>,
}

/// A streamed assistant call.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AssistantArgs {
    Ask {
        question: String,
        #[serde(default)]
        book_ids: Vec<u64>,
        #[serde(default)]
        conversation_id: String,
        #[serde(default)]
        k: u32,
    },
    Summarize {
        book_id: u64,
        chapter: u32,
    },
    Explain {
        book_id: u64,
        at: u64,
        #[serde(default)]
        chars: u32,
        #[serde(default)]
        conversation_id: String,
    },
}

/// The app's client of one daemon.
pub struct Client {
    socket: PathBuf,
    channel: AsyncMutex<Option<Channel>>,
    /// Streamed assistant calls in flight, by request id: sending on the
    /// switch drops the stream, which cancels the RPC on the daemon's side.
    running: Mutex<HashMap<u64, oneshot::Sender<()>>>,
    next_request: AtomicU64,
}

impl Client {
    /// A client of the daemon at `socket`; nothing is dialled yet.
    pub fn new(socket: PathBuf) -> Arc<Client> {
        Arc::new(Client {
            socket,
            channel: AsyncMutex::new(None),
            running: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
        })
    }

    /// The socket from `MINDORY_SOCKET`, else the CLI's default.
    pub fn socket_from_env() -> PathBuf {
        std::env::var_os(mindory_proto::paths::SOCKET_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(mindory_proto::paths::default_socket_path)
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The cached channel, dialled (and version-checked) when there is none.
    async fn channel(&self) -> Result<Channel, ClientError> {
        let mut slot = self.channel.lock().await;
        if let Some(channel) = slot.as_ref() {
            return Ok(channel.clone());
        }
        let channel = mindory_proto::connect(&self.socket).await?;
        *slot = Some(channel.clone());
        Ok(channel)
    }

    /// Forgets the channel after a transport failure so the next call dials
    /// again: a restarted daemon is a new socket file, and tonic's lazy
    /// reconnect would keep failing against the old connection's state.
    async fn forget_channel(&self) {
        *self.channel.lock().await = None;
    }

    /// Runs one RPC; on `Unavailable` drops the channel so the next call redials.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, ClientError>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let channel = self.channel().await?;
        match f(channel).await {
            Ok(r) => Ok(r.into_inner()),
            Err(status) => {
                if matches!(status.code(), tonic::Code::Unavailable | tonic::Code::Unknown) {
                    self.forget_channel().await;
                }
                Err(status.into())
            }
        }
    }

    /// `Hello`: protocol and versions; a mismatch is an error that says so.
    pub async fn hello(&self) -> Result<Value, ClientError> {
        let r = self
            .call(|c| async move {
                DaemonClient::new(c)
                    .hello(pb::HelloRequest {
                        client_protocol_version: PROTOCOL_VERSION,
                        client_name: "mindory-desktop".into(),
                    })
                    .await
            })
            .await?;
        if r.protocol_version != PROTOCOL_VERSION {
            return Err(ClientError::ProtocolMismatch {
                daemon: r.protocol_version,
                app: PROTOCOL_VERSION,
            });
        }
        Ok(json!({
            "protocol_version": r.protocol_version,
            "daemon_version": r.daemon_version,
            "embedding_model": r.embedding_model,
            "socket": self.socket.display().to_string(),
        }))
    }

    pub async fn status(&self) -> Result<Value, ClientError> {
        let r = self
            .call(|c| async move { DaemonClient::new(c).status(pb::StatusRequest {}).await })
            .await?;
        Ok(wire::status(&r))
    }

    /// Every book, asked for [`mindory_proto::books_page_size`] at a time
    /// (500 unless a test sets `MINDORY_BOOKS_PAGE_SIZE`) so that no one
    /// answer of a library of thousands of books is large.
    pub async fn list_books(&self) -> Result<Value, ClientError> {
        let mut books = Vec::new();
        let mut page_token = String::new();
        loop {
            let token = std::mem::take(&mut page_token);
            let r = self
                .call(|c| async move {
                    LibraryClient::new(c)
                        .list_books(pb::ListBooksRequest {
                            page_size: mindory_proto::books_page_size(),
                            page_token: token,
                        })
                        .await
                })
                .await?;
            books.extend(r.books.iter().map(wire::book));
            if r.next_page_token.is_empty() {
                return Ok(Value::Array(books));
            }
            page_token = r.next_page_token;
        }
    }

    pub async fn get_book(&self, id: u64) -> Result<Value, ClientError> {
        let r = self
            .call(|c| async move { LibraryClient::new(c).get_book(pb::GetBookRequest { id }).await })
            .await?;
        Ok(wire::book(&r))
    }

    pub async fn get_passage(&self, book_id: u64, at: PassageAt) -> Result<Value, ClientError> {
        use pb::get_passage_request::At;
        let location = match (at.chapter, at.page_label, at.offset) {
            (Some(c), None, None) => At::Chapter(c),
            (None, Some(p), None) => At::PageLabel(p),
            (None, None, Some(o)) => At::Offset(o),
            _ => {
                return Err(ClientError::BadRequest(
                    "say where to read: exactly one of a chapter, a page or a char offset".into(),
                ))
            }
        };
        let request = pb::GetPassageRequest {
            book_id,
            at: Some(location),
            max_chars: at.max_chars,
        };
        let r = self
            .call(|c| async move { LibraryClient::new(c).get_passage(request).await })
            .await?;
        Ok(wire::passage(&r))
    }

    pub async fn add_paths(&self, paths: Vec<String>) -> Result<Value, ClientError> {
        let r = self
            .call(|c| async move { LibraryClient::new(c).add_paths(pb::AddPathsRequest { paths }).await })
            .await?;
        Ok(r.results.iter().map(wire::added).collect())
    }

    pub async fn remove_book(&self, id: u64) -> Result<Value, ClientError> {
        let r = self
            .call(|c| async move { LibraryClient::new(c).remove_book(pb::RemoveBookRequest { id }).await })
            .await?;
        Ok(json!({"chunks_removed": r.chunks_removed}))
    }

    pub async fn reindex(&self, book_ids: Vec<u64>) -> Result<Value, ClientError> {
        let r = self
            .call(|c| async move { LibraryClient::new(c).reindex(pb::ReindexRequest { book_ids }).await })
            .await?;
        Ok(json!({"queued": r.queued}))
    }

    pub async fn list_folders(&self) -> Result<Value, ClientError> {
        let r = self
            .call(|c| async move { LibraryClient::new(c).list_folders(pb::ListFoldersRequest {}).await })
            .await?;
        Ok(r.folders.iter().map(wire::folder).collect())
    }

    pub async fn add_folder(&self, path: String) -> Result<Value, ClientError> {
        let r = self
            .call(|c| async move { LibraryClient::new(c).add_folder(pb::AddFolderRequest { path }).await })
            .await?;
        Ok(json!({
            "folder": r.folder.as_ref().map(wire::folder),
            "scan": r.scan.as_ref().map(wire::scan_report),
        }))
    }

    pub async fn remove_folder(&self, path: String) -> Result<Value, ClientError> {
        let r = self
            .call(|c| async move { LibraryClient::new(c).remove_folder(pb::RemoveFolderRequest { path }).await })
            .await?;
        Ok(json!({"books_removed": r.books_removed}))
    }

    pub async fn search(&self, args: SearchArgs) -> Result<Value, ClientError> {
        let mode = match args.mode.as_deref().unwrap_or("hybrid") {
            "hybrid" => pb::SearchMode::Hybrid,
            "vector" => pb::SearchMode::Vector,
            "keyword" => pb::SearchMode::Keyword,
            other => {
                return Err(ClientError::BadRequest(format!(
                    "unknown search mode {other:?}; use hybrid, vector or keyword"
                )))
            }
        };
        let request = pb::SearchRequest {
            query: args.query,
            k: args.k,
            book_ids: args.book_ids,
            mode: mode as i32,
            ..Default::default()
        };
        let r = self.call(|c| async move { SearchClient::new(c).search(request).await }).await?;
        Ok(json!({
            "hits": r.hits.iter().map(wire::hit).collect::<Vec<_>>(),
            "embedding_model": r.embedding_model,
            "took_us": r.took_us,
        }))
    }

    pub async fn llm_info(&self) -> Result<Value, ClientError> {
        let r = self
            .call(|c| async move { AssistantClient::new(c).llm_info(pb::LlmInfoRequest {}).await })
            .await?;
        Ok(wire::llm_info(&r))
    }

    /// Starts a streamed assistant call and returns its request id at once;
    /// its events arrive on [`names::ASK`] as `{request, event}` and end with
    /// `{request, end: true}` (plus `error` when it failed or was stopped).
    pub async fn start_assistant(self: &Arc<Self>, args: AssistantArgs, sink: Arc<dyn EventSink>) -> Result<u64, ClientError> {
        let channel = self.channel().await?;
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (stop_tx, stop_rx) = oneshot::channel();
        self.running.lock().expect("running map").insert(id, stop_tx);
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let outcome = this.stream_assistant(id, args, channel, stop_rx, sink.as_ref()).await;
            this.running.lock().expect("running map").remove(&id);
            let end = match outcome {
                Ok(()) => json!({"request": id, "end": true}),
                Err(e) => json!({"request": id, "end": true, "error": e.to_string()}),
            };
            sink.emit(names::ASK, end);
        });
        Ok(id)
    }

    async fn stream_assistant(
        &self,
        id: u64,
        args: AssistantArgs,
        channel: Channel,
        mut stop: oneshot::Receiver<()>,
        sink: &dyn EventSink,
    ) -> Result<(), ClientError> {
        let mut client = AssistantClient::new(channel);
        let call = async {
            match args {
                AssistantArgs::Ask {
                    question,
                    book_ids,
                    conversation_id,
                    k,
                } => {
                    client
                        .ask(pb::AskRequest {
                            question,
                            book_ids,
                            conversation_id,
                            k,
                        })
                        .await
                }
                AssistantArgs::Summarize { book_id, chapter } => client.summarize(pb::SummarizeRequest { book_id, chapter }).await,
                AssistantArgs::Explain {
                    book_id,
                    at,
                    chars,
                    conversation_id,
                } => {
                    client
                        .explain(pb::ExplainRequest {
                            book_id,
                            at,
                            chars,
                            conversation_id,
                        })
                        .await
                }
            }
        };
        let mut stream = tokio::select! {
            r = call => r?.into_inner(),
            _ = &mut stop => return Err(ClientError::Rpc(tonic::Status::cancelled("stopped"))),
        };
        loop {
            tokio::select! {
                next = stream.message() => match next? {
                    Some(event) => sink.emit(names::ASK, json!({"request": id, "event": wire::ask_event(&event)})),
                    None => return Ok(()),
                },
                // Returning drops `stream`, which resets the HTTP/2 stream:
                // the daemon sees the cancellation and stops generating.
                _ = &mut stop => return Err(ClientError::Rpc(tonic::Status::cancelled("stopped"))),
            }
        }
    }

    /// Stops a streamed call; false when it had already finished.
    pub fn stop(&self, request: u64) -> bool {
        match self.running.lock().expect("running map").remove(&request) {
            Some(stop) => stop.send(()).is_ok(),
            None => false,
        }
    }

    /// Follows the daemon for the app's whole life: connects, checks the
    /// protocol, subscribes, forwards every event, and after the daemon goes
    /// away (or was never there) tries again every `retry`, reporting each
    /// change of state on [`names::CONNECTION`]. It never returns.
    pub async fn follow_events(self: Arc<Self>, sink: Arc<dyn EventSink>, retry: Duration) {
        let mut last_state = String::new();
        let mut report = |state: &str, payload: Value| {
            // Repeated "disconnected" reports while the daemon stays down
            // would make the UI flicker; only changes are sent.
            let key = format!("{state}{payload}");
            if key != last_state {
                last_state = key;
                let mut p = payload;
                p["state"] = json!(state);
                sink.emit(names::CONNECTION, p);
            }
        };
        loop {
            match self.subscribe_once(&sink, &mut report).await {
                Ok(()) => report(
                    "disconnected",
                    json!({"reason": "the daemon closed the event stream (it stopped or restarted)"}),
                ),
                Err(ClientError::ProtocolMismatch { daemon, app }) => report(
                    "mismatch",
                    json!({"daemon_protocol": daemon, "app_protocol": app,
                           "reason": ClientError::ProtocolMismatch { daemon, app }.to_string()}),
                ),
                Err(e) => report("disconnected", json!({"reason": e.to_string()})),
            }
            self.forget_channel().await;
            tokio::time::sleep(retry).await;
        }
    }

    async fn subscribe_once(&self, sink: &Arc<dyn EventSink>, report: &mut impl FnMut(&str, Value)) -> Result<(), ClientError> {
        let hello = self.hello().await?;
        let channel = self.channel().await?;
        let mut stream = EventsClient::new(channel).subscribe(pb::SubscribeRequest {}).await?.into_inner();
        // Reported only once the subscription stands, so that the UI's
        // refresh on "connected" cannot miss an event sent in between.
        report("connected", hello);
        while let Some(event) = stream.message().await? {
            sink.emit(names::DAEMON_EVENT, wire::event(&event));
        }
        Ok(())
    }
}
