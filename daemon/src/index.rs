//! The index actor: an HNSW (usearch, cosine, vectors stored as f16) over
//! every stored vector, keyed by chunk id, and its file on disk.
//!
//! The index is derived data. On start `index.usearch` is memory-mapped
//! (usearch's `view`, so start-up does not read it) and checked against the
//! store — same model, same quantization, same store generation, same
//! number of vectors, a sample of stored keys present — and rebuilt from the
//! vectors table when any check fails or the file is missing or corrupt. The
//! first write loads the file into memory.
//! Writes come to the actor as messages and run on the blocking pool;
//! searches bypass the actor and take a shared lock, so many clients can
//! search at once. After changes settle (2 s without one) and at shutdown the
//! index is saved to a temp file and renamed into place with its metadata.
//!
//! Invariant: the index never holds a key the store does not, once the
//! store's remove has been mirrored; the store is the truth.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};

use crate::store::StoreReader;
use crate::supervisor::{Slot, SupervisorHandle};

/// Why an index operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// usearch reported an error.
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
    /// embedded by the model just swapped out is worth retrying at once.
    pub fn kind(&self) -> crate::error_kind::ErrorKind {
        use crate::error_kind::ErrorKind;
        match self {
            IndexError::Engine(_) | IndexError::Io { .. } => ErrorKind::Internal,
            IndexError::Store(e) => e.kind(),
            IndexError::ModelChanged { .. } | IndexError::Unavailable(_) => ErrorKind::Unavailable,
        }
    }
}

/// A nearest-neighbour index over unit vectors. Today usearch's HNSW; a
/// distributed engine can implement it later.
pub trait VectorIndex: Send + Sync + 'static {
    /// Inserts or replaces `key`.
    fn add(&self, key: u64, vector: &[f32]) -> Result<(), IndexError>;
    /// Deletes `key` if present.
    fn remove(&self, key: u64) -> Result<(), IndexError>;
    /// The `k` nearest keys with cosine similarity, best first, keeping only
    /// keys that pass `filter`.
    fn search(&self, query: &[f32], k: usize, filter: Option<&(dyn Fn(u64) -> bool + Sync)>) -> Result<Vec<(u64, f32)>, IndexError>;
    /// Whether `key` is indexed.
    fn contains(&self, key: u64) -> bool;
    /// Number of vectors.
    fn len(&self) -> usize;
    /// Whether the index is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Writes the index to `path` (the caller renames it into place).
    fn save(&self, path: &Path) -> Result<(), IndexError>;
    /// Replaces the whole content with `vectors`, built aside and swapped in
    /// at once, so searches never see a half-built index.
    fn replace_all(&self, vectors: &[(u64, Vec<f32>)]) -> Result<(), IndexError>;
}

/// The scalar kinds usearch can store vectors as.
pub use usearch::ScalarKind;

/// How the index stores vectors. Chosen in the scale bench
/// (`benches/benches/scale.rs`, figures in BENCHMARKS.md) by HNSW recall@10
/// against exact search on real embeddings: see the constant's value there.
/// The store keeps every vector in f32, so a change here costs one rebuild,
/// never a re-embedding: a saved index of another quantization is rebuilt.
pub const QUANTIZATION: ScalarKind = ScalarKind::F16;

/// The name [`QUANTIZATION`] has in the index's metadata file.
fn quantization_name(kind: usearch::ScalarKind) -> String {
    format!("{kind:?}").to_lowercase()
}

/// usearch HNSW with cosine distance.
///
/// An index opened with [`UsearchIndex::view`] is a read-only memory map of
/// its file, so a daemon with a million passages serves its first search
/// without reading the file (cold start does not grow with the library) and
/// keeps only the pages searches touch in memory. The first write loads the
/// file into memory and continues on that copy.
pub struct UsearchIndex {
    // usearch's add/search are thread-safe, but growing the capacity is not:
    // reserve takes the write lock, everything else the read lock.
    inner: RwLock<usearch::Index>,
    /// The file `inner` is a memory map of, until the first write. Its lock
    /// also makes concurrent first writes load the file once.
    viewed: parking_lot::Mutex<Option<PathBuf>>,
    quantization: usearch::ScalarKind,
}

fn engine<E: std::fmt::Display>(e: E) -> IndexError {
    IndexError::Engine(e.to_string())
}

fn path_str(path: &Path) -> Result<&str, IndexError> {
    path.to_str().ok_or_else(|| IndexError::Engine("index path is not UTF-8".into()))
}

impl UsearchIndex {
    /// An empty index for `dimensions`-long vectors stored as [`QUANTIZATION`].
    pub fn new(dimensions: usize) -> Result<Self, IndexError> {
        Self::with_quantization(dimensions, QUANTIZATION)
    }

    /// An empty index that stores vectors as `quantization` (the scale
    /// bench compares them; the daemon uses [`QUANTIZATION`]).
    pub fn with_quantization(dimensions: usize, quantization: usearch::ScalarKind) -> Result<Self, IndexError> {
        let index = Self::engine_index(dimensions, quantization)?;
        index.reserve(1024).map_err(engine)?;
        Ok(UsearchIndex {
            inner: RwLock::new(index),
            viewed: parking_lot::Mutex::new(None),
            quantization,
        })
    }

    fn engine_index(dimensions: usize, quantization: usearch::ScalarKind) -> Result<usearch::Index, IndexError> {
        let options = usearch::IndexOptions {
            dimensions,
            metric: usearch::MetricKind::Cos,
            quantization,
            connectivity: 16,
            expansion_add: 128,
            expansion_search: 64,
            multi: false,
        };
        usearch::Index::new(&options).map_err(engine)
    }

    /// Checks that the file at `path` holds an index this build can use:
    /// cosine, `dimensions`, [`QUANTIZATION`].
    fn check_file(path: &Path, dimensions: usize) -> Result<(), IndexError> {
        let meta = usearch::Index::metadata(path_str(path)?).map_err(engine)?;
        if meta.dimensions as usize != dimensions {
            return Err(IndexError::Engine(format!(
                "the index file has {}-dimensional vectors, the model makes {dimensions}",
                meta.dimensions
            )));
        }
        if meta.quantization != QUANTIZATION || meta.metric != usearch::MetricKind::Cos {
            return Err(IndexError::Engine(format!(
                "the index file stores {} vectors, this build stores {}",
                quantization_name(meta.quantization),
                quantization_name(QUANTIZATION)
            )));
        }
        Ok(())
    }

    /// Loads an index file written by [`VectorIndex::save`] into memory.
    pub fn load(path: &Path, dimensions: usize) -> Result<Self, IndexError> {
        Self::check_file(path, dimensions)?;
        let index = Self::new(dimensions)?;
        index.inner.read().load(path_str(path)?).map_err(engine)?;
        Ok(index)
    }

    /// Opens an index file written by [`VectorIndex::save`] as a read-only
    /// memory map; the first write loads it (see the type's comment). The
    /// file must not change while viewed: only the index actor writes it,
    /// and only from an index that is no longer a view.
    pub fn view(path: &Path, dimensions: usize) -> Result<Self, IndexError> {
        Self::check_file(path, dimensions)?;
        let index = Self::engine_index(dimensions, QUANTIZATION)?;
        index.view(path_str(path)?).map_err(engine)?;
        Ok(UsearchIndex {
            inner: RwLock::new(index),
            viewed: parking_lot::Mutex::new(Some(path.to_path_buf())),
            quantization: QUANTIZATION,
        })
    }

    /// Whether the index is still a read-only view of its file.
    pub fn is_view(&self) -> bool {
        self.viewed.lock().is_some()
    }

    /// Turns a view into an in-memory index before a write. The file is
    /// loaded beside the view, so searches go on until the swap.
    fn writable(&self) -> Result<(), IndexError> {
        let mut viewed = self.viewed.lock();
        if let Some(path) = viewed.as_ref() {
            let dimensions = self.inner.read().dimensions();
            let loaded = Self::engine_index(dimensions, self.quantization)?;
            loaded.load(path_str(path)?).map_err(engine)?;
            tracing::info!(vectors = loaded.size(), "loaded the memory-mapped vector index for writing");
            *self.inner.write() = loaded;
            *viewed = None;
        }
        Ok(())
    }

    /// Makes room for `extra` more vectors. Concurrent adds need the room
    /// made before they start (usearch cannot grow while inserting).
    pub fn ensure_capacity(&self, extra: usize) -> Result<(), IndexError> {
        self.writable()?;
        let needed = self.inner.read().size() + extra;
        if needed > self.inner.read().capacity() {
            let guard = self.inner.write();
            let target = needed.max(guard.capacity() * 2);
            guard.reserve(target).map_err(engine)?;
        }
        Ok(())
    }

    /// Sets how many candidates a search explores (HNSW's `ef`); more finds
    /// more true neighbours and costs time.
    pub fn set_expansion_search(&self, ef: usize) {
        self.inner.read().change_expansion_search(ef);
    }

    /// Bytes of memory the engine reports for the index (a view's mapped
    /// file is not counted by the kernel until pages are touched).
    pub fn memory_usage(&self) -> usize {
        self.inner.read().memory_usage()
    }
}

impl VectorIndex for UsearchIndex {
    fn add(&self, key: u64, vector: &[f32]) -> Result<(), IndexError> {
        self.ensure_capacity(1)?;
        let index = self.inner.read();
        if index.contains(key) {
            index.remove(key).map_err(engine)?;
        }
        index.add(key, vector).map_err(engine)
    }

    fn remove(&self, key: u64) -> Result<(), IndexError> {
        self.writable()?;
        self.inner.read().remove(key).map(|_| ()).map_err(engine)
    }

    fn search(&self, query: &[f32], k: usize, filter: Option<&(dyn Fn(u64) -> bool + Sync)>) -> Result<Vec<(u64, f32)>, IndexError> {
        let index = self.inner.read();
        let matches = match filter {
            Some(f) => index.filtered_search(query, k, f).map_err(engine)?,
            None => index.search(query, k).map_err(engine)?,
        };
        // usearch's cosine distance is 1 - similarity.
        Ok(matches
            .keys
            .into_iter()
            .zip(matches.distances)
            .map(|(key, d)| (key, 1.0 - d))
            .collect())
    }

    fn contains(&self, key: u64) -> bool {
        self.inner.read().contains(key)
    }

    fn len(&self) -> usize {
        self.inner.read().size()
    }

    fn replace_all(&self, vectors: &[(u64, Vec<f32>)]) -> Result<(), IndexError> {
        let dimensions = self.inner.read().dimensions();
        let fresh = UsearchIndex::with_quantization(dimensions, self.quantization)?;
        fresh.ensure_capacity(vectors.len())?;
        for (key, vector) in vectors {
            fresh.add(*key, vector)?;
        }
        let mut viewed = self.viewed.lock();
        *self.inner.write() = fresh.inner.into_inner();
        *viewed = None;
        Ok(())
    }

    fn save(&self, path: &Path) -> Result<(), IndexError> {
        // A view is its file, unchanged: copying it is the save.
        if let Some(source) = self.viewed.lock().as_ref() {
            return std::fs::copy(source, path).map(|_| ()).map_err(|source| IndexError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
        self.inner.read().save(path_str(path)?).map_err(engine)
    }
}

/// Sidecar metadata saved with the index file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct IndexMeta {
    model: String,
    generation: u64,
    count: u64,
    /// How the file stores vectors ([`QUANTIZATION`]'s name); files saved
    /// before it was recorded hold f32.
    #[serde(default = "f32_name")]
    quantization: String,
}

fn f32_name() -> String {
    "f32".into()
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

/// Where the index lives and what it must match.
#[derive(Clone)]
pub(crate) struct IndexArgs {
    pub dir: PathBuf,
    pub active: SharedIndex,
    pub generation: Arc<RwLock<u64>>,
    /// The truth the index mirrors, for the self-check before each save.
    pub store: crate::store::StoreReader,
}

fn index_file(dir: &Path) -> PathBuf {
    dir.join("index.usearch")
}

fn meta_file(dir: &Path) -> PathBuf {
    dir.join("index.meta.json")
}

/// How the index was obtained at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexOrigin {
    /// Loaded from disk and consistent with the store.
    Loaded,
    /// Rebuilt from stored vectors, with the reason.
    Rebuilt(String),
}

/// Loads the index from `dir` if it matches the store, else rebuilds it.
/// Blocking; call from `spawn_blocking`.
pub fn open_or_rebuild(
    dir: &Path,
    store: &StoreReader,
    model: &str,
    dimensions: usize,
) -> Result<(UsearchIndex, u64, IndexOrigin), IndexError> {
    let generation = store.generation()?;
    let (_, _, stored) = store.counts()?;
    let reason = match check_saved(dir, store, model, dimensions, generation, stored) {
        Ok(index) => return Ok((index, generation, IndexOrigin::Loaded)),
        Err(reason) => reason,
    };
    tracing::warn!(%reason, "rebuilding the vector index from stored vectors");
    let index = UsearchIndex::new(dimensions)?;
    let mut vectors = Vec::with_capacity(stored as usize);
    store.for_each_vector(|key, record| {
        if record.model == model {
            vectors.push((key, record.vector));
        }
    })?;
    // With slack: each add's own capacity check is not atomic with the add
    // when several threads insert.
    index.ensure_capacity(vectors.len() + 4096)?;
    // HNSW insertion dominates start-up after a crash; usearch accepts
    // concurrent inserts, so every core takes a share.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let share = vectors.len().div_ceil(threads).max(1);
    let failures: Vec<IndexError> = std::thread::scope(|scope| {
        let workers: Vec<_> = vectors
            .chunks(share)
            .map(|part| {
                let index = &index;
                scope.spawn(move || part.iter().find_map(|(key, vector)| index.add(*key, vector).err()))
            })
            .collect();
        workers
            .into_iter()
            .filter_map(|w| {
                w.join()
                    .unwrap_or_else(|_| Some(IndexError::Engine("an index builder thread panicked".into())))
            })
            .collect()
    });
    if let Some(e) = failures.into_iter().next() {
        return Err(e);
    }
    save_files(dir, &index, model, generation)?;
    // Serve from the saved file, as after a normal start, so the memory the
    // build took goes back to the system until the next write.
    let index = match UsearchIndex::view(&index_file(dir), dimensions) {
        Ok(view) => view,
        Err(e) => {
            tracing::warn!(error = %e, "cannot memory-map the rebuilt vector index; keeping it in memory");
            index
        }
    };
    Ok((index, generation, IndexOrigin::Rebuilt(reason)))
}

/// How many stored keys the start-up check looks up in a saved index. The
/// store generation and the vector count already have to match; the sample
/// catches a file that belongs to another library without reading every
/// stored vector, which at a million passages took longer than the rest of
/// start-up together. The self-check before each save compares counts again.
const KEYS_CHECKED_AT_START: usize = 1000;

fn check_saved(
    dir: &Path,
    store: &StoreReader,
    model: &str,
    dimensions: usize,
    generation: u64,
    stored: u64,
) -> Result<UsearchIndex, String> {
    let meta = std::fs::read(meta_file(dir)).map_err(|_| "no saved index".to_string())?;
    let meta: IndexMeta = serde_json::from_slice(&meta).map_err(|e| format!("index metadata unreadable: {e}"))?;
    if meta.model != model {
        return Err(format!("index was built with model {}, the store uses {model}", meta.model));
    }
    if meta.quantization != quantization_name(QUANTIZATION) {
        return Err(format!(
            "index stores {} vectors, this build stores {}",
            meta.quantization,
            quantization_name(QUANTIZATION)
        ));
    }
    if meta.generation != generation {
        return Err(format!(
            "index is from store generation {}, the store is at {generation}",
            meta.generation
        ));
    }
    let index = UsearchIndex::view(&index_file(dir), dimensions).map_err(|e| format!("index file unreadable: {e}"))?;
    if index.len() as u64 != stored || meta.count != stored {
        return Err(format!("index holds {} vectors, the store {stored}", index.len()));
    }
    let keys = store.vector_keys(KEYS_CHECKED_AT_START).map_err(|e| e.to_string())?;
    let missing = keys.iter().filter(|key| !index.contains(**key)).count();
    if missing > 0 {
        return Err(format!(
            "{missing} of {} stored vectors looked up are missing from the index",
            keys.len()
        ));
    }
    Ok(index)
}

/// Saves index and metadata atomically: temp files, fsync, rename.
fn save_files(dir: &Path, index: &dyn VectorIndex, model: &str, generation: u64) -> Result<(), IndexError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| IndexError::Io { path, source }
    };
    let tmp_index = dir.join("index.usearch.tmp");
    index.save(&tmp_index)?;
    std::fs::File::open(&tmp_index).and_then(|f| f.sync_all()).map_err(io(&tmp_index))?;
    let meta = IndexMeta {
        model: model.to_string(),
        generation,
        count: index.len() as u64,
        quantization: quantization_name(QUANTIZATION),
    };
    let tmp_meta = dir.join("index.meta.json.tmp");
    std::fs::write(&tmp_meta, serde_json::to_vec_pretty(&meta).expect("plain struct")).map_err(io(&tmp_meta))?;
    // The meta file is removed first so that a crash between the renames
    // leaves "no saved index" (rebuild) rather than a mismatched pair.
    let _ = std::fs::remove_file(meta_file(dir));
    std::fs::rename(&tmp_index, index_file(dir)).map_err(io(&index_file(dir)))?;
    crate::test_hooks::crash_point("index-save");
    std::fs::rename(&tmp_meta, meta_file(dir)).map_err(io(&meta_file(dir)))?;
    Ok(())
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
                let applied = tokio::task::spawn_blocking(move || -> Result<(), IndexError> {
                    for key in &change.removed {
                        index.remove(*key)?;
                    }
                    for (key, vector) in &change.added {
                        index.add(*key, vector)?;
                    }
                    Ok(())
                })
                .await?;
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
                    if let Err(e) = save(state).await {
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
    let repaired = tokio::task::spawn_blocking(move || -> Result<Option<(u64, usize)>, IndexError> {
        let generation = *args.generation.read();
        let stored_generation = args.store.generation().map_err(|e| IndexError::Unavailable(e.to_string()))?;
        if stored_generation != generation {
            // Changes are still on their way to the index; check next time.
            return Ok(None);
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
        Ok(Some((stored, indexed)))
    })
    .await
    .map_err(|e| IndexError::Unavailable(e.to_string()))??;
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
    tokio::task::spawn_blocking(move || save_files(&args.dir, index.as_ref(), &model, generation))
        .await
        .map_err(|e| IndexError::Unavailable(e.to_string()))?
}

/// Cloneable handle: writes go through the actor, searches go straight to
/// the shared index on the blocking pool.
#[derive(Clone)]
pub struct IndexHandle {
    actor: Slot<IndexMsg>,
    active: SharedIndex,
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
    /// made its vectors), saving it under `dir`. The active index and the
    /// generation live outside the actor, so a restart keeps them.
    pub(crate) async fn start(
        supervisor: &SupervisorHandle,
        dir: PathBuf,
        index: Arc<dyn VectorIndex>,
        model: String,
        generation: u64,
        store: crate::store::StoreReader,
    ) -> Result<Self, String> {
        let active = Arc::new(RwLock::new(ActiveIndex { index, model }));
        let args = IndexArgs {
            dir,
            active: active.clone(),
            generation: Arc::new(RwLock::new(generation)),
            store,
        };
        let slot = supervisor.spawn("index", IndexActor, args).await?;
        Ok(IndexHandle::new(slot, active))
    }

    pub(crate) fn new(actor: Slot<IndexMsg>, active: SharedIndex) -> Self {
        IndexHandle {
            actor,
            active,
            pending: Arc::default(),
        }
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
        tokio::task::spawn_blocking(move || {
            if books.is_empty() {
                index.search(&query, k, None)
            } else {
                let filter = move |key: u64| books.contains(&crate::store::book_of_chunk(key));
                index.search(&query, k, Some(&filter))
            }
        })
        .await
        .map_err(|e| IndexError::Unavailable(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(seed: u64) -> Vec<f32> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut v: Vec<f32> = (0..16).map(|_| rng.f32() - 0.5).collect();
        crate::embed::normalize(&mut v);
        v
    }

    #[test]
    fn replace_all_swaps_the_content() {
        let index = UsearchIndex::new(16).unwrap();
        index.add(1, &vector(1)).unwrap();
        let fresh: Vec<(u64, Vec<f32>)> = (10..2010).map(|k| (k, vector(k))).collect();
        index.replace_all(&fresh).unwrap();
        assert_eq!(index.len(), 2000);
        assert!(!index.contains(1) && index.contains(10) && index.contains(2009));
        let hits = index.search(&vector(500), 1, None).unwrap();
        assert_eq!(hits[0].0, 500);
    }

    #[test]
    fn adds_after_removals_and_loads_keep_every_key() {
        let dir = tempfile::tempdir().unwrap();
        let index = UsearchIndex::new(16).unwrap();
        for k in 0..3000 {
            index.add(k, &vector(k)).unwrap();
        }
        for k in 0..1500 {
            index.remove(k).unwrap();
        }
        // Re-adding removed keys and adding new ones must not run out of room.
        for k in 0..4000 {
            index.add(k, &vector(k + 7)).unwrap();
        }
        assert_eq!(index.len(), 4000);
        let path = dir.path().join("i.usearch");
        index.save(&path).unwrap();
        let loaded = UsearchIndex::load(&path, 16).unwrap();
        for k in 4000..4100 {
            loaded.add(k, &vector(k)).unwrap();
        }
        assert_eq!(loaded.len(), 4100);
        assert!((0..4100).all(|k| loaded.contains(k)));
    }

    #[test]
    fn a_view_searches_its_file_and_its_first_write_loads_it() {
        let dir = tempfile::tempdir().unwrap();
        let index = UsearchIndex::new(16).unwrap();
        for k in 0..2000 {
            index.add(k, &vector(k)).unwrap();
        }
        let path = dir.path().join("i.usearch");
        index.save(&path).unwrap();
        let view = UsearchIndex::view(&path, 16).unwrap();
        assert!(view.is_view());
        assert_eq!(view.len(), 2000);
        assert_eq!(view.search(&vector(1234), 1, None).unwrap()[0].0, 1234);
        // Saving a view copies its file.
        let copy = dir.path().join("copy.usearch");
        view.save(&copy).unwrap();
        assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&path).unwrap());
        // Writes work on a view: the first one loads the file.
        view.remove(7).unwrap();
        assert!(!view.is_view());
        view.add(5000, &vector(5000)).unwrap();
        assert_eq!(view.len(), 2000);
        assert!(!view.contains(7) && view.contains(5000) && view.contains(1999));
        assert_eq!(view.search(&vector(5000), 1, None).unwrap()[0].0, 5000);
    }

    #[test]
    fn a_file_of_another_quantization_or_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let other = if QUANTIZATION == usearch::ScalarKind::F32 {
            usearch::ScalarKind::F16
        } else {
            usearch::ScalarKind::F32
        };
        let index = UsearchIndex::with_quantization(16, other).unwrap();
        index.add(1, &vector(1)).unwrap();
        let path = dir.path().join("i.usearch");
        index.save(&path).unwrap();
        let err = UsearchIndex::view(&path, 16).err().expect("refused");
        assert!(err.to_string().contains("stores"), "{err}");
        let index = UsearchIndex::new(8).unwrap();
        index.add(1, &vector(1)[..8]).unwrap();
        index.save(&path).unwrap();
        let err = UsearchIndex::load(&path, 16).err().expect("refused");
        assert!(err.to_string().contains("8-dimensional"), "{err}");
    }
}
