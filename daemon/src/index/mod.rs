//! The vector index: the `VectorIndex` trait every backend implements, the
//! factory that opens the configured one ([`open_or_rebuild`]), the index
//! actor that mirrors store changes into it, and `IndexHandle`.
//!
//! Backends: `usearch.rs` (an HNSW in a file of the data directory, the
//! default) and `pgvector.rs` (a table of a PostgreSQL database with the
//! pgvector extension, for libraries shared past one machine); `config.rs`
//! reads `[index]`. Everything outside this module talks to
//! `dyn VectorIndex` only.
//!
//! The index is derived data. On start the saved index is checked against
//! the store — same model, same store generation, same number of vectors, a
//! sample of stored keys present — and rebuilt from the stored vectors (f32,
//! in redb) when any check fails, so switching backend never re-embeds.
//! Writes come to the actor as messages and run on the blocking pool;
//! searches bypass the actor and take a shared lock, so many clients can
//! search at once. After changes settle (2 s without one) and at shutdown the
//! index is saved with the model and store generation it mirrors.
//!
//! Invariant: the index never holds a key the store does not, once the
//! store's remove has been mirrored; the store is the truth.

pub mod config;
mod pg_url;
pub mod pgvector;
pub mod usearch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::store::StoreReader;
use crate::supervisor::{Slot, SupervisorHandle};

pub use self::config::{IndexBackend, IndexConfig};
pub use self::pgvector::PgVectorIndex;
pub use self::usearch::{ScalarKind, UsearchIndex, QUANTIZATION};

/// Why an index operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The engine (usearch) reported an error.
    #[error("vector index error: {0}")]
    Engine(String),
    /// Reading stored vectors failed during a rebuild.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Saving the index file failed.
    #[error("cannot save the vector index to {path}: {source}")]
    Io {
        /// The file being written.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The PostgreSQL database of the pgvector backend cannot be reached.
    #[error(
        "cannot connect to PostgreSQL at {url}: {detail}; start the database or fix `url` under [index] in config.toml (or MINDORY_PG_URL), or set [index] backend = \"usearch\" to index on this machine"
    )]
    Unreachable {
        /// The database, without its password.
        url: String,
        /// Why the connection failed.
        detail: String,
    },
    /// The PostgreSQL database answered with an error.
    #[error("the vector index in PostgreSQL at {url} failed: {detail}")]
    Database {
        /// The database, without its password.
        url: String,
        /// What failed, and what to do about it when we know.
        detail: String,
    },
    /// Another daemon holds this library's lock in the database.
    #[error(
        "the library `{library}` in PostgreSQL at {url} is in use by another daemon; two daemons on one library would each rebuild over the other's changes: stop the other daemon, or give this one its own name with `library` under [index] in config.toml (or MINDORY_INDEX_LIBRARY)"
    )]
    LibraryInUse {
        /// The database, without its password.
        url: String,
        /// The library name.
        library: String,
    },
    /// The query was embedded by another model than the indexed vectors'
    /// (a model swap finished in between).
    #[error("the query was embedded with {query} but the index holds {index} vectors; search again")]
    ModelChanged {
        /// The query's model.
        query: String,
        /// The index's model.
        index: String,
    },
    /// The index actor is gone.
    #[error("the index is not running: {0}")]
    Unavailable(String),
}

impl IndexError {
    /// What kind of failure this is (see [`crate::error_kind`]). A query
    /// embedded by the model just swapped out is worth retrying at once; a
    /// database that is down may come back.
    pub fn kind(&self) -> crate::error_kind::ErrorKind {
        use crate::error_kind::ErrorKind;
        match self {
            IndexError::Engine(_) | IndexError::Io { .. } | IndexError::Database { .. } => ErrorKind::Internal,
            IndexError::Store(e) => e.kind(),
            IndexError::LibraryInUse { .. } => ErrorKind::Precondition,
            IndexError::ModelChanged { .. } | IndexError::Unavailable(_) | IndexError::Unreachable { .. } => ErrorKind::Unavailable,
        }
    }
}

/// How many stored keys the start-up check of either backend looks up in a
/// saved index. The store generation and the vector count already have to
/// match; the sample catches an index that belongs to another library
/// without reading every stored vector, which at a million passages took
/// longer than the rest of start-up together. The self-check before each
/// save compares counts again.
const KEYS_CHECKED_AT_START: usize = 1000;

/// A nearest-neighbour index over unit vectors, keyed by chunk id. Every
/// method blocks: callers run them on the blocking pool, never on an async
/// thread (except `len`, which every backend answers from memory).
pub trait VectorIndex: Send + Sync + 'static {
    /// Inserts or replaces `key`.
    fn add(&self, key: u64, vector: &[f32]) -> Result<(), IndexError>;
    /// Deletes `key` if present.
    fn remove(&self, key: u64) -> Result<(), IndexError>;
    /// Deletes `removed`, then inserts or replaces `added`; searchable when
    /// it returns. A backend with round trips does it in one transaction.
    fn apply(&self, removed: &[u64], added: &[(u64, Vec<f32>)]) -> Result<(), IndexError> {
        for key in removed {
            self.remove(*key)?;
        }
        for (key, vector) in added {
            self.add(*key, vector)?;
        }
        Ok(())
    }
    /// The `k` nearest keys with cosine similarity, best first, keeping only
    /// passages of `books` when given (chunk id = `book_id << 24 | ordinal`).
    fn search(&self, query: &[f32], k: usize, books: Option<&[u64]>) -> Result<Vec<(u64, f32)>, IndexError>;
    /// Whether `key` is indexed.
    fn contains(&self, key: u64) -> bool;
    /// Number of vectors (from memory: async code asks it).
    fn len(&self) -> usize;
    /// Whether the index is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Saves the index where the next start looks for it, recording the
    /// model its vectors come from and the store generation it mirrors.
    fn persist(&self, model: &str, generation: u64) -> Result<(), IndexError>;
    /// Replaces the whole content with `vectors`, built aside and swapped in
    /// at once, so searches never see a half-built index.
    fn replace_all(&self, vectors: &[(u64, Vec<f32>)]) -> Result<(), IndexError>;
}

/// How the index was obtained at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexOrigin {
    /// Loaded from disk and consistent with the store.
    Loaded,
    /// Rebuilt from stored vectors, with the reason.
    Rebuilt(String),
}

/// The configured backend, opened: where indexes of this library live.
/// The daemon opens it once at boot ([`VectorBackend::open`]); it then
/// opens the active index and builds a swap's new one.
#[derive(Clone)]
pub enum VectorBackend {
    /// usearch files in the data directory.
    Usearch {
        /// The data directory.
        dir: PathBuf,
    },
    /// A library in a PostgreSQL database.
    Pgvector(Arc<pgvector::PgLibrary>),
}

impl VectorBackend {
    /// Opens the backend `config` names for the library in `data_dir`.
    /// For pgvector this connects (and fails when the database is down:
    /// the daemon cannot serve without its index). Blocking.
    pub fn open(config: &IndexConfig, data_dir: &Path) -> Result<Self, IndexError> {
        match config.backend {
            IndexBackend::Usearch => Ok(VectorBackend::Usearch {
                dir: data_dir.to_path_buf(),
            }),
            IndexBackend::Pgvector => {
                let library = config.library_name(data_dir)?;
                Ok(VectorBackend::Pgvector(Arc::new(pgvector::PgLibrary::connect(
                    &config.url,
                    &library,
                )?)))
            }
        }
    }

    /// Loads the library's saved index if it matches the store, else
    /// rebuilds it from the stored vectors of `model`. Returns it with the
    /// store generation it mirrors. Blocking.
    pub fn open_or_rebuild(
        &self,
        store: &StoreReader,
        model: &str,
        dimensions: usize,
    ) -> Result<(Arc<dyn VectorIndex>, u64, IndexOrigin), IndexError> {
        match self {
            VectorBackend::Usearch { dir } => {
                let (index, generation, origin) = self::usearch::open_or_rebuild(dir, store, model, dimensions)?;
                Ok((Arc::new(index), generation, origin))
            }
            VectorBackend::Pgvector(library) => {
                let (index, generation, origin) = self::pgvector::open_or_rebuild(library, store, model, dimensions)?;
                Ok((Arc::new(index), generation, origin))
            }
        }
    }

    /// An empty index for `model`'s vectors beside the active one (a model
    /// swap fills it, then [`IndexHandle::switch`]es to it). Blocking.
    pub fn fresh(&self, model: &str, dimensions: usize) -> Result<Arc<dyn VectorIndex>, IndexError> {
        match self {
            VectorBackend::Usearch { dir } => Ok(Arc::new(UsearchIndex::new(dimensions)?.at_home(dir))),
            VectorBackend::Pgvector(library) => Ok(Arc::new(PgVectorIndex::create(library, model, dimensions)?)),
        }
    }
}

/// Opens the configured backend and its index: the one factory the daemon
/// calls at boot. Blocking; call from `spawn_blocking`.
pub fn open_or_rebuild(
    config: &IndexConfig,
    data_dir: &Path,
    store: &StoreReader,
    model: &str,
    dimensions: usize,
) -> Result<(VectorBackend, Arc<dyn VectorIndex>, u64, IndexOrigin), IndexError> {
    let backend = VectorBackend::open(config, data_dir)?;
    let (index, generation, origin) = backend.open_or_rebuild(store, model, dimensions)?;
    Ok((backend, index, generation, origin))
}

/// The searchable index and the model its vectors come from. A model swap
/// replaces both at once ([`IndexHandle::switch`]).
pub struct ActiveIndex {
    /// The index.
    pub index: Arc<dyn VectorIndex>,
    /// Model id of every vector in it.
    pub model: String,
}

/// The active index, shared by the actor and every handle.
pub(crate) type SharedIndex = Arc<RwLock<ActiveIndex>>;

/// What the index must match.
#[derive(Clone)]
pub(crate) struct IndexArgs {
    pub active: SharedIndex,
    pub generation: Arc<RwLock<u64>>,
    /// The truth the index mirrors, for the self-check before each save.
    pub store: crate::store::StoreReader,
}

/// Messages of the index actor.
pub(crate) enum IndexMsg {
    /// Mirror a store change; replies once it is searchable.
    Apply(crate::store::VectorChange, RpcReplyPort<()>),
    /// Timer: save if something changed since the last save.
    SaveTick,
    /// Save now (shutdown); replies when done.
    Flush(RpcReplyPort<Result<(), String>>),
    /// After a model swap replaced the index: check it against the store
    /// (changes that raced the switch) and save it.
    Switched,
}

pub(crate) struct IndexState {
    args: IndexArgs,
    dirty: bool,
    tick_scheduled: bool,
    /// An apply failed since the last self-check.
    apply_failed: bool,
    /// When the index was last saved (a save rewrites the whole file).
    last_save: Option<std::time::Instant>,
}

/// The actor that applies writes to the index and saves it.
#[derive(Clone)]
pub(crate) struct IndexActor;

const SAVE_DELAY: Duration = Duration::from_secs(2);
/// Saves are at least this far apart while changes keep coming (a big book
/// commits vectors every few seconds while it is embedded, and each save
/// rewrites the whole file); what is not saved is rebuilt from the store
/// after a crash, and saved at shutdown.
const MIN_SAVE_INTERVAL: Duration = Duration::from_secs(60);
/// How soon a repair that failed (the database of the pgvector backend was
/// unreachable) is tried again; each try reads every stored vector.
const REPAIR_RETRY: Duration = Duration::from_secs(30);

impl Actor for IndexActor {
    type Msg = IndexMsg;
    type State = IndexState;
    type Arguments = IndexArgs;

    async fn pre_start(&self, _myself: ActorRef<IndexMsg>, args: IndexArgs) -> Result<IndexState, ActorProcessingErr> {
        Ok(IndexState {
            args,
            dirty: false,
            tick_scheduled: false,
            apply_failed: false,
            last_save: None,
        })
    }

    async fn handle(&self, myself: ActorRef<IndexMsg>, msg: IndexMsg, state: &mut IndexState) -> Result<(), ActorProcessingErr> {
        match msg {
            IndexMsg::Apply(change, reply) => {
                let index = state.args.active.read().index.clone();
                let generation = change.generation;
                let applied = tokio::task::spawn_blocking(move || index.apply(&change.removed, &change.added)).await?;
                if let Err(e) = applied {
                    // The store is the truth: the self-check before the next
                    // save rebuilds the index from it.
                    tracing::error!(error = %e, "applying a change to the vector index failed; it will be rebuilt from the store");
                    state.apply_failed = true;
                }
                let mut g = state.args.generation.write();
                *g = (*g).max(generation);
                state.dirty = true;
                if !state.tick_scheduled {
                    state.tick_scheduled = true;
                    myself.send_after(SAVE_DELAY, || IndexMsg::SaveTick);
                }
                // The caller may have gone away (a cancelled job); the
                // change is applied either way.
                let _ = reply.send(());
            }
            IndexMsg::SaveTick => {
                state.tick_scheduled = false;
                let since = state.last_save.map(|t| t.elapsed());
                if let Some(wait) = since.and_then(|s| MIN_SAVE_INTERVAL.checked_sub(s)).filter(|_| state.dirty) {
                    state.tick_scheduled = true;
                    myself.send_after(wait, || IndexMsg::SaveTick);
                } else if state.dirty {
                    state.dirty = false;
                    if let Err(e) = self_check(state).await {
                        tracing::error!(error = %e, "checking the vector index against the store failed");
                    }
                    if state.apply_failed {
                        // Not repaired yet (a database that is down): try
                        // again later, and record no generation the index
                        // does not hold.
                        state.dirty = true;
                        state.tick_scheduled = true;
                        myself.send_after(REPAIR_RETRY, || IndexMsg::SaveTick);
                    } else if let Err(e) = save(state).await {
                        tracing::error!(error = %e, "saving the vector index failed; it will be rebuilt at next start");
                    }
                }
            }
            IndexMsg::Switched => {
                // A removal or an old-model apply that raced the switch
                // shows as a count mismatch or a failed apply: the
                // self-check rebuilds from the store (its active slot).
                if let Err(e) = self_check(state).await {
                    tracing::error!(error = %e, "checking the new vector index against the store failed");
                }
                state.dirty = false;
                if let Err(e) = save(state).await {
                    state.dirty = true;
                    tracing::error!(error = %e, "saving the vector index failed; it will be rebuilt at next start");
                }
            }
            IndexMsg::Flush(reply) => {
                let result = if state.dirty {
                    save(state).await.map_err(|e| e.to_string())
                } else {
                    Ok(())
                };
                state.dirty = false;
                let _ = reply.send(result);
            }
        }
        Ok(())
    }
}

/// Invariant check at a quiet moment: when the index has seen every store
/// change (same generation), it must hold exactly the stored vectors. If it
/// does not, or an apply failed, it is rebuilt from the store in place.
async fn self_check(state: &mut IndexState) -> Result<(), IndexError> {
    let args = state.args.clone();
    let failed = std::mem::take(&mut state.apply_failed);
    // Ok(None): consistent; Ok(Some(None)): changes still on their way,
    // check next time; Ok(Some(Some(..))): repaired (stored, indexed).
    let checked = tokio::task::spawn_blocking(move || -> Result<Option<Option<(u64, usize)>>, IndexError> {
        let generation = *args.generation.read();
        let stored_generation = args.store.generation().map_err(|e| IndexError::Unavailable(e.to_string()))?;
        if stored_generation != generation {
            return Ok(Some(None));
        }
        let (_, _, stored) = args.store.counts().map_err(|e| IndexError::Unavailable(e.to_string()))?;
        let index = args.active.read().index.clone();
        let indexed = index.len();
        if !failed && stored == indexed as u64 {
            return Ok(None);
        }
        let mut vectors = Vec::with_capacity(stored as usize);
        args.store
            .for_each_vector(|key, record| vectors.push((key, record.vector)))
            .map_err(|e| IndexError::Unavailable(e.to_string()))?;
        index.replace_all(&vectors)?;
        Ok(Some(Some((stored, indexed))))
    })
    .await
    .map_err(|e| IndexError::Unavailable(e.to_string()))
    .and_then(|checked| checked);
    // A failed apply not yet repaired (changes still in flight, or the
    // repair itself failed: a database that is down) stays owed.
    let repaired = match checked {
        Ok(None) => None,
        Ok(Some(None)) => {
            state.apply_failed |= failed;
            None
        }
        Ok(Some(repaired)) => repaired,
        Err(e) => {
            state.apply_failed |= failed;
            return Err(e);
        }
    };
    if let Some((stored, indexed)) = repaired {
        tracing::warn!(
            stored,
            indexed,
            "the vector index disagreed with the store; rebuilt it from the stored vectors"
        );
    }
    Ok(())
}

async fn save(state: &mut IndexState) -> Result<(), IndexError> {
    state.last_save = Some(std::time::Instant::now());
    let args = state.args.clone();
    let generation = *args.generation.read();
    let (index, model) = {
        let active = args.active.read();
        (active.index.clone(), active.model.clone())
    };
    tokio::task::spawn_blocking(move || index.persist(&model, generation))
        .await
        .map_err(|e| IndexError::Unavailable(e.to_string()))?
}

/// Cloneable handle: writes go through the actor, searches go straight to
/// the shared index on the blocking pool.
#[derive(Clone)]
pub struct IndexHandle {
    actor: Slot<IndexMsg>,
    active: SharedIndex,
    /// Where indexes live, for a model swap's new one.
    backend: VectorBackend,
    /// Books whose new content is committed but not yet searchable, with
    /// the number of changes in flight for each.
    pending: Arc<parking_lot::Mutex<std::collections::HashMap<u64, u32>>>,
}

/// Marks a book as "committed but not yet searchable" while it lives; see
/// [`IndexHandle::hold`].
pub struct Pending {
    pending: Arc<parking_lot::Mutex<std::collections::HashMap<u64, u32>>>,
    book_id: u64,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut pending = self.pending.lock();
        if let Some(n) = pending.get_mut(&self.book_id) {
            *n -= 1;
            if *n == 0 {
                pending.remove(&self.book_id);
            }
        }
    }
}

impl IndexHandle {
    /// Starts the index actor under `supervisor` on an index `open_or_rebuild`
    /// returned (`generation` is the store generation it mirrors; `model`
    /// made its vectors) of `backend`. The active index and the
    /// generation live outside the actor, so a restart keeps them.
    pub(crate) async fn start(
        supervisor: &SupervisorHandle,
        backend: VectorBackend,
        index: Arc<dyn VectorIndex>,
        model: String,
        generation: u64,
        store: crate::store::StoreReader,
    ) -> Result<Self, String> {
        let active = Arc::new(RwLock::new(ActiveIndex { index, model }));
        let args = IndexArgs {
            active: active.clone(),
            generation: Arc::new(RwLock::new(generation)),
            store,
        };
        let slot = supervisor.spawn("index", IndexActor, args).await?;
        Ok(IndexHandle {
            actor: slot,
            active,
            backend,
            pending: Arc::default(),
        })
    }

    /// An empty index of the same backend for `model`'s vectors, for a
    /// model swap to fill beside the active one. Blocking.
    pub fn fresh(&self, model: &str, dimensions: usize) -> Result<Arc<dyn VectorIndex>, IndexError> {
        self.backend.fresh(model, dimensions)
    }

    /// Holds `book_id` as not yet searchable until the guard drops. Writers
    /// take it before committing a book's content and drop it after
    /// [`apply`](Self::apply) returns, so that a reader who sees the book
    /// `ready` in the store (through [`is_pending`](Self::is_pending)) can
    /// also find its passages.
    pub fn hold(&self, book_id: u64) -> Pending {
        *self.pending.lock().entry(book_id).or_insert(0) += 1;
        Pending {
            pending: self.pending.clone(),
            book_id,
        }
    }

    /// Whether a committed change to `book_id` is still on its way into the
    /// index.
    pub fn is_pending(&self, book_id: u64) -> bool {
        self.pending.lock().contains_key(&book_id)
    }

    /// A book as every reader (the RPC layer, the assistant, any client)
    /// should see it: committed content whose vectors are still on their
    /// way into the index reads as indexing, so that `ready` always means
    /// "its passages can be found".
    pub fn visible(&self, mut book: crate::store::BookRecord) -> crate::store::BookRecord {
        use crate::store::BookStatus;
        if matches!(book.status, BookStatus::Ready | BookStatus::Embedding) && self.is_pending(book.id) {
            book.status = BookStatus::Indexing;
        }
        book
    }

    /// Mirrors a committed store change and returns once it is searchable.
    /// Changes are applied in the order they are sent. A failed apply is
    /// logged by the actor and repaired from the store at its next
    /// self-check; the caller has nothing to undo, so nothing is returned.
    pub async fn apply(&self, change: crate::store::VectorChange) {
        if let Err(e) = self.actor.call(|reply| IndexMsg::Apply(change, reply)).await {
            tracing::error!(error = %e, "index actor is not running; the index will be rebuilt at next start");
        }
    }

    /// Saves the index now if it changed.
    pub async fn flush(&self) -> Result<(), IndexError> {
        self.actor
            .call(IndexMsg::Flush)
            .await
            .map_err(IndexError::Unavailable)?
            .map_err(IndexError::Unavailable)
    }

    /// Number of indexed vectors.
    pub fn len(&self) -> usize {
        self.active.read().index.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.active.read().index.is_empty()
    }

    /// Makes `index`, complete with the vectors of `model`, the searched
    /// one (a finished model swap). It cannot fail: searches use it at
    /// once, and the actor checks it against the store and saves it later.
    pub fn switch(&self, index: Arc<dyn VectorIndex>, model: String) {
        tracing::info!(%model, vectors = index.len(), "the vector index now holds the new model's vectors");
        *self.active.write() = ActiveIndex { index, model };
        if !self.actor.cast(IndexMsg::Switched) {
            tracing::warn!("the index actor is not running; the new index is saved at the next change or stop");
        }
    }

    /// Nearest passages to `query`, a vector of `model`, optionally only
    /// from `books`. A query of another model than the index's is refused:
    /// vectors of two models never meet in one search.
    pub async fn search(&self, query: Vec<f32>, model: &str, k: usize, books: Vec<u64>) -> Result<Vec<(u64, f32)>, IndexError> {
        let index = {
            let active = self.active.read();
            if active.model != model {
                return Err(IndexError::ModelChanged {
                    query: model.to_string(),
                    index: active.model.clone(),
                });
            }
            active.index.clone()
        };
        tokio::task::spawn_blocking(move || index.search(&query, k, (!books.is_empty()).then_some(books.as_slice())))
            .await
            .map_err(|e| IndexError::Unavailable(e.to_string()))?
    }
}
