//! The store actor: the only writer of the redb database, and the typed
//! read side ([`StoreReader`]) that everyone else reads through.
//!
//! Tables: books (id → [`BookRecord`]), paths (path text → book id: a
//! folder's books are one key range), hashes (content hash → book ids), chunks
//! (chunk id → [`ChunkRecord`]), vectors (chunk id → [`VectorRecord`], with
//! the model id), texts (book id → normalized text), meta (schema version,
//! model id, id counter, vector generation), embed cache (hash of model and
//! passage text → a chunk whose stored vector that model made from that
//! text, so identical passages are embedded once), passage kinds (chunk id →
//! contents, index, boilerplate or fragment, for ranking).
//!
//! Invariant: every write is one redb transaction committed before the reply,
//! so a crash never leaves half a book; the vector index is derived from the
//! vectors table and rebuilt from it when in doubt.
//! Invariant: chunk id = `book_id << 24 | ordinal`, so a book's passages are
//! one key range and the index can filter by book without a lookup.
//! Invariant: paths and hashes mirror books in every committed transaction
//! (`books.rs`: writers change a book only through `BookTables`), so the
//! questions asked per event or per file ("the books in this folder",
//! "a book with these bytes") are lookups, never a read of every book.
//!
//! Layout: `schema.rs` (tables, records, key encodings), `read.rs`
//! ([`StoreReader`]), `write.rs` (the write transactions the actor runs),
//! `books.rs` (the books table and its index tables, changed together),
//! `migrate.rs` (what runs at open: schema versions, upgrades, backfills);
//! this file holds the actor, [`StoreHandle`] and [`StoreError`].

mod books;
mod db;
mod migrate;
mod read;
mod schema;
#[cfg(any(test, feature = "bench-seed"))]
mod seed;
#[cfg(test)]
mod tests;
mod write;

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

pub use migrate::SCHEMA_VERSION;
pub use read::StoreReader;
pub use schema::{
    book_of_chunk, chunk_id, BookRecord, BookStatus, ChunkRecord, FolderRecord, SectionRecord, SwapRecord, VectorRecord, MAX_BOOK_ID,
    ORDINAL_BITS,
};
#[cfg(any(test, feature = "bench-seed"))]
pub use seed::{random_unit_vector, seed_books, seed_synthetic_library, SeedBook};
use write::Writer;
pub use write::{BookContent, FileState, Moved, Upsert, VectorBatch, VectorChange};

use crate::error_kind::ErrorKind;
use crate::supervisor::{Slot, SupervisorHandle};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// redb reported an error (I/O, corruption, lock).
    #[error("database error: {0}")]
    Db(#[from] redb::Error),
    /// A record could not be decoded: the database is from another version or damaged.
    #[error("cannot decode a stored record ({0}); the data dir may be from a newer Mindory")]
    Decode(#[from] postcard::Error),
    /// No book has this id.
    #[error("no book with id {0}; `mindory books` lists them")]
    NoSuchBook(u64),
    /// A write would break an invariant (a bug upstream); nothing was written.
    #[error("refusing an inconsistent write: {0}")]
    Inconsistent(String),
    /// Another book already has this path.
    #[error("another book already has the path {0}")]
    PathTaken(String),
    /// The database was written by an incompatible schema.
    #[error("the database uses schema {found}, this daemon needs {SCHEMA_VERSION}; use a new --data-dir or the matching Mindory version")]
    Schema {
        /// The version found on disk.
        found: u64,
    },
    /// The library's vectors were made by another embedding model than the
    /// one the daemon was started with; searching them with this model's
    /// queries would return nonsense.
    #[error(
        "this library was embedded with {stored}, but the daemon was started with {requested}; start it with `--embedding-model {stored}` (or use a new --data-dir for {requested})"
    )]
    Model {
        /// The model of the stored vectors.
        stored: String,
        /// The model the daemon runs.
        requested: String,
    },
    /// Vectors of a model that is no longer the active one (a model swap
    /// finished while they were being made); nothing was written.
    #[error("these vectors are from {given}, but the library now uses {active}; embed again")]
    ModelChanged {
        /// The model of the refused vectors.
        given: String,
        /// The active model.
        active: String,
    },
    /// The store actor is gone.
    #[error("the store is not running: {0}")]
    Unavailable(String),
    /// The disk under the data directory failed a write (full, or
    /// failing); nothing of the write was stored, and the database is
    /// opened again so that later writes work once the cause is gone.
    #[error("cannot write the library: {reason}")]
    Storage {
        /// What failed, and what to do.
        reason: String,
    },
}

impl StoreError {
    /// What kind of failure this is, for the RPC status. No variant wraps
    /// another daemon family's error, so none delegates.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::NoSuchBook(_) => ErrorKind::NotFound,
            StoreError::Unavailable(_) => ErrorKind::Unavailable,
            // Retrying later works once space is back.
            StoreError::Storage { .. } => ErrorKind::Unavailable,
            // The data dir or the daemon's model does not fit: fixed by
            // starting differently, not by retrying.
            StoreError::Schema { .. } | StoreError::Model { .. } => ErrorKind::Precondition,
            // The library moved on under the request (a swap finished, a
            // path was taken meanwhile); nothing was written.
            StoreError::ModelChanged { .. } | StoreError::PathTaken(_) => ErrorKind::Precondition,
            // I/O, a damaged or foreign database, or a bug upstream.
            StoreError::Db(_) | StoreError::Decode(_) | StoreError::Inconsistent(_) => ErrorKind::Internal,
        }
    }
}

/// redb has an error type per operation (open, transaction, table,
/// storage, commit); each becomes [`StoreError::Db`] with its message
/// unchanged, so `?` works on every redb call and the text still says what
/// failed.
macro_rules! from_redb {
    ($($error:ty),* $(,)?) => {
        $(impl From<$error> for StoreError {
            fn from(e: $error) -> Self {
                StoreError::Db(e.into())
            }
        })*
    };
}

from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
);

/// Messages of the store actor. Each carries its reply port.
pub(crate) enum StoreMsg {
    UpsertQueued {
        path: String,
        file: FileState,
        force: bool,
        reply: RpcReplyPort<Result<Upsert, StoreError>>,
    },
    BeginAttempt {
        id: u64,
        reply: RpcReplyPort<Result<BookRecord, StoreError>>,
    },
    MoveBook {
        id: u64,
        to: String,
        size: u64,
        mtime_ns: i64,
        reply: RpcReplyPort<Result<Moved, StoreError>>,
    },
    SetFolder {
        path: String,
        add: bool,
        reply: RpcReplyPort<Result<bool, StoreError>>,
    },
    SetStatus {
        id: u64,
        status: BookStatus,
        error: String,
        reply: RpcReplyPort<Result<(), StoreError>>,
    },
    NoteWaiting {
        id: u64,
        content_hash: String,
        reason: String,
        reply: RpcReplyPort<Result<bool, StoreError>>,
    },
    PutContent {
        id: u64,
        content: Box<BookContent>,
        reply: RpcReplyPort<Result<VectorChange, StoreError>>,
    },
    PutVectors {
        id: u64,
        batch: VectorBatch,
        reply: RpcReplyPort<Result<Option<VectorChange>, StoreError>>,
    },
    RemoveBook {
        id: u64,
        reply: RpcReplyPort<Result<VectorChange, StoreError>>,
    },
    BeginSwap {
        target: String,
        reply: RpcReplyPort<Result<bool, StoreError>>,
    },
    CancelSwap {
        reply: RpcReplyPort<Result<bool, StoreError>>,
    },
    PutSwapVectors {
        target: String,
        vectors: Vec<(u64, String, Vec<f32>)>,
        reply: RpcReplyPort<Result<bool, StoreError>>,
    },
    FinishSwap {
        target: String,
        reply: RpcReplyPort<Result<bool, StoreError>>,
    },
    ClearOldVectors {
        reply: RpcReplyPort<Result<(), StoreError>>,
    },
}

/// The actor that owns every write to redb.
#[derive(Clone)]
pub(crate) struct StoreActor;

impl Actor for StoreActor {
    type Msg = StoreMsg;
    type State = Writer;
    type Arguments = Arc<db::SharedDb>;

    async fn pre_start(&self, _myself: ActorRef<StoreMsg>, db: Arc<db::SharedDb>) -> Result<Writer, ActorProcessingErr> {
        Ok(Writer { db })
    }

    async fn handle(&self, _myself: ActorRef<StoreMsg>, msg: StoreMsg, writer: &mut Writer) -> Result<(), ActorProcessingErr> {
        // redb commits fsync: run them on the blocking pool. Awaiting here
        // keeps writes serialized, which is what "only writer" means.
        let w = writer.clone();
        match msg {
            StoreMsg::UpsertQueued { path, file, force, reply } => {
                let r = blocking(move || w.db.guard(|| w.upsert_queued(&path, file, force))).await;
                let _ = reply.send(r);
            }
            StoreMsg::BeginAttempt { id, reply } => {
                let r = blocking(move || w.db.guard(|| w.begin_attempt(id))).await;
                let _ = reply.send(r);
            }
            StoreMsg::MoveBook {
                id,
                to,
                size,
                mtime_ns,
                reply,
            } => {
                let r = blocking(move || w.db.guard(|| w.move_book(id, &to, size, mtime_ns))).await;
                let _ = reply.send(r);
            }
            StoreMsg::SetFolder { path, add, reply } => {
                let r = blocking(move || w.db.guard(|| w.set_folder(&path, add))).await;
                let _ = reply.send(r);
            }
            StoreMsg::SetStatus { id, status, error, reply } => {
                let r = blocking(move || w.db.guard(|| w.set_status(id, status, &error))).await;
                let _ = reply.send(r);
            }
            StoreMsg::NoteWaiting {
                id,
                content_hash,
                reason,
                reply,
            } => {
                let r = blocking(move || w.db.guard(|| w.note_waiting(id, &content_hash, &reason))).await;
                let _ = reply.send(r);
            }
            StoreMsg::PutContent { id, content, reply } => {
                let r = blocking(move || w.db.guard_storing(|| w.put_content(id, *content))).await;
                let _ = reply.send(r);
            }
            StoreMsg::PutVectors { id, batch, reply } => {
                let r = blocking(move || w.db.guard_storing(|| w.put_vectors(id, batch))).await;
                let _ = reply.send(r);
            }
            StoreMsg::RemoveBook { id, reply } => {
                let r = blocking(move || w.db.guard(|| w.remove_book(id))).await;
                let _ = reply.send(r);
            }
            StoreMsg::BeginSwap { target, reply } => {
                let r = blocking(move || w.db.guard(|| w.begin_swap(&target))).await;
                let _ = reply.send(r);
            }
            StoreMsg::CancelSwap { reply } => {
                let r = blocking(move || w.db.guard(|| w.cancel_swap())).await;
                let _ = reply.send(r);
            }
            StoreMsg::PutSwapVectors { target, vectors, reply } => {
                let r = blocking(move || w.db.guard_storing(|| w.put_swap_vectors(&target, vectors))).await;
                let _ = reply.send(r);
            }
            StoreMsg::FinishSwap { target, reply } => {
                let r = blocking(move || w.db.guard(|| w.finish_swap(&target))).await;
                let _ = reply.send(r);
            }
            StoreMsg::ClearOldVectors { reply } => {
                let r = blocking(move || w.db.guard(|| w.clear_old_vectors())).await;
                let _ = reply.send(r);
            }
        }
        Ok(())
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, StoreError> + Send + 'static) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(StoreError::Unavailable(format!("store task failed: {e}"))))
}

/// Cloneable handle to the store: writes go to the actor, reads go straight
/// to redb through [`StoreReader`].
#[derive(Clone)]
pub struct StoreHandle {
    actor: Slot<StoreMsg>,
    reader: StoreReader,
}

impl StoreHandle {
    /// Starts the store actor (the only writer) under `supervisor` on the
    /// database `reader` opened.
    pub(crate) async fn start(supervisor: &SupervisorHandle, reader: StoreReader) -> Result<Self, String> {
        let slot = supervisor.spawn("store", StoreActor, reader.db.clone()).await?;
        Ok(StoreHandle::new(slot, reader))
    }

    pub(crate) fn new(actor: Slot<StoreMsg>, reader: StoreReader) -> Self {
        StoreHandle { actor, reader }
    }

    /// The read side.
    pub fn reader(&self) -> &StoreReader {
        &self.reader
    }

    async fn call<T>(&self, make: impl FnOnce(RpcReplyPort<Result<T, StoreError>>) -> StoreMsg) -> Result<T, StoreError>
    where
        T: Send + 'static,
    {
        self.actor.call(make).await.map_err(StoreError::Unavailable)?
    }

    /// Records `path` as queued (new or changed) or reports it unchanged.
    pub async fn upsert_queued(&self, path: String, file: FileState, force: bool) -> Result<Upsert, StoreError> {
        self.call(|reply| StoreMsg::UpsertQueued { path, file, force, reply }).await
    }

    /// Marks a job started (status `indexing`, attempts + 1); returns the
    /// book as it now is (its current path, its attempts).
    pub async fn begin_attempt(&self, id: u64) -> Result<BookRecord, StoreError> {
        self.call(|reply| StoreMsg::BeginAttempt { id, reply }).await
    }

    /// Moves a book to a new path; returns the old path, and whether a
    /// failed book was queued again.
    pub async fn move_book(&self, id: u64, to: String, size: u64, mtime_ns: i64) -> Result<Moved, StoreError> {
        self.call(|reply| StoreMsg::MoveBook {
            id,
            to,
            size,
            mtime_ns,
            reply,
        })
        .await
    }

    /// Adds (or with `add == false` removes) a library folder; returns whether anything changed.
    pub async fn set_folder(&self, path: String, add: bool) -> Result<bool, StoreError> {
        self.call(|reply| StoreMsg::SetFolder { path, add, reply }).await
    }

    /// Sets a book's status (and error message).
    pub async fn set_status(&self, id: u64, status: BookStatus, error: String) -> Result<(), StoreError> {
        self.call(|reply| StoreMsg::SetStatus { id, status, error, reply }).await
    }

    /// Records why an `embedding` book waits (its embedding server is down)
    /// and resets its attempts, but only while it still holds the content
    /// `content_hash` names: a file changed meanwhile keeps the state its
    /// newer job gave it. False when nothing was changed.
    pub async fn note_waiting(&self, id: u64, content_hash: String, reason: String) -> Result<bool, StoreError> {
        self.call(|reply| StoreMsg::NoteWaiting {
            id,
            content_hash,
            reason,
            reply,
        })
        .await
    }

    /// Replaces a book's text, passages and vectors: `ready` when every
    /// passage has its vector, else `embedding` until
    /// [`put_vectors`](Self::put_vectors) brings the rest. Returns the
    /// change for the indexes.
    pub async fn put_content(&self, id: u64, content: BookContent) -> Result<VectorChange, StoreError> {
        self.call(|reply| StoreMsg::PutContent {
            id,
            content: Box::new(content),
            reply,
        })
        .await
    }

    /// Adds vectors to an `embedding` book; `None` when the book has moved
    /// on to newer content (see `Writer::put_vectors`).
    pub async fn put_vectors(&self, id: u64, batch: VectorBatch) -> Result<Option<VectorChange>, StoreError> {
        self.call(|reply| StoreMsg::PutVectors { id, batch, reply }).await
    }

    /// Starts a model swap to `target` (see `Writer::begin_swap`).
    pub async fn begin_swap(&self, target: String) -> Result<bool, StoreError> {
        self.call(|reply| StoreMsg::BeginSwap { target, reply }).await
    }

    /// Abandons the model swap in progress; false when there was none.
    pub async fn cancel_swap(&self) -> Result<bool, StoreError> {
        self.call(|reply| StoreMsg::CancelSwap { reply }).await
    }

    /// Stores (chunk id, embedded text, vector) of the swap's model; false
    /// when `target` is no longer the swap in progress.
    pub async fn put_swap_vectors(&self, target: String, vectors: Vec<(u64, String, Vec<f32>)>) -> Result<bool, StoreError> {
        self.call(|reply| StoreMsg::PutSwapVectors { target, vectors, reply }).await
    }

    /// Switches to the swap's vectors if complete; false otherwise.
    pub async fn finish_swap(&self, target: String) -> Result<bool, StoreError> {
        self.call(|reply| StoreMsg::FinishSwap { target, reply }).await
    }

    /// Drops the previous model's vectors after a finished swap.
    pub async fn clear_old_vectors(&self) -> Result<(), StoreError> {
        self.call(|reply| StoreMsg::ClearOldVectors { reply }).await
    }

    /// Removes a book and everything derived from it.
    pub async fn remove_book(&self, id: u64) -> Result<VectorChange, StoreError> {
        self.call(|reply| StoreMsg::RemoveBook { id, reply }).await
    }
}
