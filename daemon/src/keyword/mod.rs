//! The keyword actor: a BM25 index (tantivy) over every stored passage, in
//! `<data>/keyword/`, next to the vector index.
//!
//! Like the vector index it is derived data. At start [`open_or_rebuild`]
//! opens it and checks it against the store (the store generation recorded
//! in its last commit, and its passage count); on a mismatch it is rebuilt
//! from the chunks table, and when it cannot be opened at all (damaged, or
//! written with another schema) its directory is deleted first. Writes come
//! to the actor as messages and run on the blocking pool; each is one
//! tantivy commit, durable and searchable before the caller hears back, so
//! there is nothing to flush at shutdown. Searches bypass the actor and run
//! on the blocking pool against the shared engine.
//!
//! The engine is in [`engine`], the CJK-aware tokenizer and the analyzers
//! in [`tokenize`].

pub mod engine;
pub mod tokenize;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

pub use engine::{parse_query, without_quotes, KeywordDoc, KeywordError, KeywordIndex, ParsedQuery};

use crate::store::StoreReader;
use crate::supervisor::{Slot, SupervisorHandle};

/// The keyword index's directory inside the data directory.
pub const KEYWORD_DIR: &str = "keyword";

/// Where the keyword index of the data directory `data_dir` lives.
pub fn keyword_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(KEYWORD_DIR)
}

/// A committed store change, as the keyword index mirrors it.
#[derive(Debug, Clone, Default)]
pub struct KeywordChange {
    /// Chunk ids that no longer exist.
    pub removed: Vec<u64>,
    /// Passages added or replaced (a book's passages all in one change).
    pub added: Vec<KeywordDoc>,
    /// The store generation after the change.
    pub generation: u64,
}

/// How the index was obtained at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeywordOrigin {
    /// Opened from disk and consistent with the store.
    Loaded,
    /// Rebuilt from stored passages, with the reason.
    Rebuilt(String),
}

/// Opens the keyword index in `<data_dir>/keyword/` if it matches the
/// store, else rebuilds it from the stored passages; a directory that
/// cannot be opened is deleted and created anew. Only that subdirectory is
/// ever deleted, whatever `data_dir` is. Blocking; call from `spawn_blocking`.
pub fn open_or_rebuild(data_dir: &Path, store: &StoreReader) -> Result<(KeywordIndex, KeywordOrigin), KeywordError> {
    let dir = keyword_dir(data_dir);
    let (index, reason) = match KeywordIndex::open(&dir) {
        Ok(index) => {
            let generation = store.generation()?;
            let (_, stored, _) = store.counts()?;
            match check(&index, generation, stored) {
                None => return Ok((index, KeywordOrigin::Loaded)),
                Some(reason) => (index, reason),
            }
        }
        // Another process writes there: deleting its files would be worse
        // than not starting.
        Err(e @ KeywordError::Busy(_)) => return Err(e),
        Err(e) => {
            let reason = e.to_string();
            tracing::warn!(%reason, "the keyword index cannot be opened; deleting it");
            std::fs::remove_dir_all(&dir).map_err(|source| KeywordError::Io { path: dir.clone(), source })?;
            (KeywordIndex::open(&dir)?, reason)
        }
    };
    tracing::warn!(%reason, "rebuilding the keyword index from stored passages");
    rebuild_from_store(&index, store)?;
    Ok((index, KeywordOrigin::Rebuilt(reason)))
}

/// Why `index` does not mirror a store at `generation` with `stored`
/// passages, or `None` when it does.
fn check(index: &KeywordIndex, generation: u64, stored: u64) -> Option<String> {
    let Some(committed) = index.committed_generation() else {
        return Some("no keyword index yet".into());
    };
    if committed != generation {
        return Some(format!(
            "keyword index is from store generation {committed}, the store is at {generation}"
        ));
    }
    let len = index.len();
    if len != stored || index.committed_count() != Some(len) {
        return Some(format!("keyword index holds {len} passages, the store {stored}"));
    }
    None
}

/// Replaces the index's content with every stored passage, in one commit
/// recording the store generation. Returns the number of passages.
///
/// The generation is read before the passages, so the index never claims a
/// newer generation than its content: at worst it is rebuilt once more.
/// The store is read on its own thread and streamed in, so a large library
/// never sits in memory whole; a read error commits nothing.
pub fn rebuild_from_store(index: &KeywordIndex, store: &StoreReader) -> Result<u64, KeywordError> {
    let generation = store.generation()?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<KeywordDoc, KeywordError>>(1024);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut languages: HashMap<u64, String> = HashMap::new();
            let mut receiver_gone = false;
            let read = store.for_each_chunk(|chunk_id, chunk| {
                if receiver_gone {
                    return;
                }
                let language = match languages.get(&chunk.book_id) {
                    Some(language) => language.clone(),
                    None => {
                        let language = match store.book(chunk.book_id) {
                            Ok(book) => book.map(|b| b.language).unwrap_or_default(),
                            Err(e) => {
                                // The rebuild stops at this error.
                                let _ = tx.send(Err(e.into()));
                                receiver_gone = true;
                                return;
                            }
                        };
                        languages.insert(chunk.book_id, language.clone());
                        language
                    }
                };
                let doc = KeywordDoc {
                    chunk_id,
                    book_id: chunk.book_id,
                    language,
                    text: chunk.text,
                };
                receiver_gone = tx.send(Ok(doc)).is_err();
            });
            if let Err(e) = read {
                let _ = tx.send(Err(e.into()));
            }
        });
        index.rebuild_fallible(rx.into_iter(), generation)
    })
}

/// Messages of the keyword actor.
pub(crate) enum KeywordMsg {
    /// Mirror a store change; replies once it is searchable.
    Apply(KeywordChange, RpcReplyPort<()>),
}

/// What the keyword actor works on.
#[derive(Clone)]
pub(crate) struct KeywordArgs {
    /// The engine, shared with the handle's searches.
    pub index: Arc<KeywordIndex>,
    /// The truth the index mirrors, for repairs.
    pub store: StoreReader,
}

pub(crate) struct KeywordState {
    args: KeywordArgs,
}

/// The actor that applies writes to the keyword index.
#[derive(Clone)]
pub(crate) struct KeywordActor;

impl Actor for KeywordActor {
    type Msg = KeywordMsg;
    type State = KeywordState;
    type Arguments = KeywordArgs;

    async fn pre_start(&self, _myself: ActorRef<KeywordMsg>, args: KeywordArgs) -> Result<KeywordState, ActorProcessingErr> {
        Ok(KeywordState { args })
    }

    async fn handle(&self, _myself: ActorRef<KeywordMsg>, msg: KeywordMsg, state: &mut KeywordState) -> Result<(), ActorProcessingErr> {
        match msg {
            KeywordMsg::Apply(change, reply) => {
                let args = state.args.clone();
                tokio::task::spawn_blocking(move || {
                    let Err(e) = args.index.apply(&change.removed, &change.added, change.generation) else {
                        return;
                    };
                    // The store is the truth: rebuilding from it makes the
                    // change searchable after all, and heals whatever the
                    // failure left behind.
                    tracing::error!(error = %e, "applying a change to the keyword index failed; rebuilding it from the store");
                    match rebuild_from_store(&args.index, &args.store) {
                        Ok(count) => tracing::info!(passages = count, "keyword index rebuilt"),
                        Err(e) => tracing::error!(error = %e, "rebuilding the keyword index failed; it is rebuilt at next start"),
                    }
                })
                .await?;
                // The caller may have gone away (a cancelled job); the
                // change is applied either way.
                let _ = reply.send(());
            }
        }
        Ok(())
    }
}

/// Cloneable handle: writes go through the actor, searches go straight to
/// the shared engine on the blocking pool.
#[derive(Clone)]
pub struct KeywordHandle {
    actor: Slot<KeywordMsg>,
    index: Arc<KeywordIndex>,
}

impl KeywordHandle {
    /// Starts the keyword actor under `supervisor` on an index
    /// `open_or_rebuild` returned; `store` is what it repairs from.
    pub(crate) async fn start(supervisor: &SupervisorHandle, index: Arc<KeywordIndex>, store: StoreReader) -> Result<Self, String> {
        let args = KeywordArgs {
            index: index.clone(),
            store,
        };
        let slot = supervisor.spawn("keyword", KeywordActor, args).await?;
        Ok(KeywordHandle::new(slot, index))
    }

    pub(crate) fn new(actor: Slot<KeywordMsg>, index: Arc<KeywordIndex>) -> Self {
        KeywordHandle { actor, index }
    }

    /// Mirrors a committed store change and returns once it is searchable.
    /// Changes are applied in the order they are sent. A failed apply is
    /// repaired by the actor from the store; the caller has nothing to
    /// undo, so nothing is returned.
    pub async fn apply(&self, change: KeywordChange) {
        if let Err(e) = self.actor.call(|reply| KeywordMsg::Apply(change, reply)).await {
            tracing::error!(error = %e, "keyword actor is not running; the keyword index will be rebuilt at next start");
        }
    }

    /// Searchable passages.
    pub fn len(&self) -> u64 {
        self.index.len()
    }

    /// Whether no passage is searchable.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The store generation the index last committed.
    pub fn committed_generation(&self) -> Option<u64> {
        self.index.committed_generation()
    }

    /// The `k` best passages for `query` by BM25, optionally only from
    /// `books`; see [`KeywordIndex::search`] for the query syntax.
    pub async fn search(&self, query: String, k: usize, books: Vec<u64>) -> Result<Vec<(u64, f32)>, KeywordError> {
        let index = self.index.clone();
        tokio::task::spawn_blocking(move || index.search(&query, k, &books))
            .await
            .map_err(|e| KeywordError::Unavailable(e.to_string()))?
    }

    /// Passages containing `text` verbatim (as a token sequence), optionally
    /// only from `books`.
    pub async fn phrase_search(&self, text: String, k: usize, books: Vec<u64>) -> Result<Vec<(u64, f32)>, KeywordError> {
        let index = self.index.clone();
        tokio::task::spawn_blocking(move || index.phrase_search(&text, k, &books))
            .await
            .map_err(|e| KeywordError::Unavailable(e.to_string()))?
    }
}

#[cfg(test)]
mod tests;
