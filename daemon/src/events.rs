//! The event bus actor: numbers every daemon event and fans it out to all
//! subscribers (each `Subscribe` stream).
//!
//! Numbering happens in one place so every subscriber sees the same
//! sequence. Fan-out uses a bounded broadcast channel: a slow subscriber
//! never slows the daemon; it misses events and is told how many
//! ("lagged") so it can refresh its view.

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::broadcast;

use crate::supervisor::{Slot, SupervisorHandle};

/// Events buffered per subscriber before it lags.
pub const EVENT_BUFFER: usize = 4096;

/// Something that happened in the daemon.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// A book was queued for ingestion.
    Queued { book_id: u64, path: String },
    /// A worker started on a book.
    Started { book_id: u64, path: String },
    /// The book's passages are stored and searchable by keyword; they are
    /// being embedded (`Progress` follows, then `Ready`).
    Searchable { book_id: u64, title: String, chunks: u64 },
    /// Passages embedded so far.
    Progress { book_id: u64, done: u64, total: u64 },
    /// The book is searchable.
    Ready {
        book_id: u64,
        title: String,
        chunks: u64,
        embedded: u64,
    },
    /// The book could not be ingested.
    Failed { book_id: u64, path: String, reason: String },
    /// The book and its passages were removed.
    Removed { book_id: u64 },
    /// The book's file moved; same content, same id, nothing re-embedded.
    Moved { book_id: u64, from: String, to: String },
    /// A library folder scan began.
    ScanStarted { folder: String },
    /// A library folder scan ended.
    ScanFinished { folder: String, report: ScanReport },
    /// The ingest queue changed size.
    QueueDepth { pending: u64, running: u64 },
    /// An embedding model swap advanced: `done` of `total` passages have a
    /// vector of `model`.
    SwapProgress { model: String, done: u64, total: u64 },
    /// The swap finished: searches use `to` now.
    SwapFinished { from: String, to: String },
    /// The swap to `model` was cancelled (its vectors dropped).
    SwapCancelled { model: String, reason: String },
}

/// A numbered event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Strictly increasing per daemon run.
    pub seq: u64,
    /// Unix ms when published.
    pub at_ms: i64,
    /// What happened.
    pub kind: EventKind,
}

pub(crate) enum EventMsg {
    Publish(EventKind),
    Subscribe(RpcReplyPort<broadcast::Receiver<Event>>),
}

/// The bus's channel and sequence counter. Both outlive an actor restart,
/// so subscribers keep their streams and numbers never go back.
#[derive(Clone)]
pub(crate) struct EventArgs {
    pub sender: broadcast::Sender<Event>,
    pub next_seq: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// The actor behind [`EventBus`].
#[derive(Clone)]
pub(crate) struct EventActor;

impl Actor for EventActor {
    type Msg = EventMsg;
    type State = EventArgs;
    type Arguments = EventArgs;

    async fn pre_start(&self, _myself: ActorRef<EventMsg>, args: EventArgs) -> Result<EventArgs, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(&self, _myself: ActorRef<EventMsg>, msg: EventMsg, state: &mut EventArgs) -> Result<(), ActorProcessingErr> {
        match msg {
            EventMsg::Publish(kind) => {
                let at_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                let seq = state.next_seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let event = Event { seq, at_ms, kind };
                // No subscribers is fine: nobody is listening.
                let _ = state.sender.send(event);
            }
            EventMsg::Subscribe(reply) => {
                let _ = reply.send(state.sender.subscribe());
            }
        }
        Ok(())
    }
}

/// Cloneable handle to the event bus.
#[derive(Clone)]
pub struct EventBus {
    actor: Slot<EventMsg>,
}

impl EventBus {
    /// Starts the event bus under `supervisor`. The broadcast channel and
    /// the sequence counter are made here, outside the actor, so a restart
    /// keeps both: subscribers stay subscribed and numbers keep rising.
    pub(crate) async fn start(supervisor: &SupervisorHandle) -> Result<Self, String> {
        let (sender, _) = broadcast::channel(EVENT_BUFFER);
        let args = EventArgs {
            sender,
            next_seq: std::sync::Arc::new(1.into()),
        };
        let slot = supervisor.spawn("events", EventActor, args).await?;
        Ok(EventBus::new(slot))
    }

    pub(crate) fn new(actor: Slot<EventMsg>) -> Self {
        EventBus { actor }
    }

    /// Publishes an event (never blocks).
    pub fn publish(&self, kind: EventKind) {
        if !self.actor.cast(EventMsg::Publish(kind)) {
            tracing::debug!("event bus is not running; event dropped");
        }
    }

    /// A receiver of every event published from now on.
    pub async fn subscribe(&self) -> Result<broadcast::Receiver<Event>, String> {
        self.actor.call(EventMsg::Subscribe).await
    }
}

/// What one scan of a folder (or of changed paths) did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanReport {
    /// Supported files found.
    pub files: u64,
    /// Files that cost nothing (same path, size and mtime).
    pub unchanged: u64,
    /// New or changed files queued for ingestion.
    pub queued: u64,
    /// Book ids of the queued files, for following their progress.
    pub queued_ids: Vec<u64>,
    /// Files recognised as moved books.
    pub moved: u64,
    /// Books removed because their files are gone.
    pub removed: u64,
    /// Files still being written, left for the next pass.
    pub unsettled: u64,
    /// Wall time of the scan.
    pub took_ms: u64,
}
