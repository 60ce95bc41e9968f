//! The usearch backend of the vector index: an HNSW (cosine, vectors stored
//! as f16) in `<data>/index.usearch`, with `index.meta.json` beside it.
//!
//! On start the file is memory-mapped (usearch's `view`, so start-up does not
//! read it) and checked against the store — same model, same quantization,
//! same store generation, same number of vectors, a sample of stored keys
//! present — and rebuilt from the vectors table when any check fails or the
//! file is missing or corrupt. The first write loads the file into memory.
//! A save writes a temp file and renames it into place with its metadata.

use std::path::{Path, PathBuf};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::{IndexError, IndexOrigin, VectorIndex, KEYS_CHECKED_AT_START};
use crate::store::StoreReader;

/// The scalar kinds usearch can store vectors as.
pub use ::usearch::ScalarKind;

/// How the index stores vectors. Chosen in the scale bench
/// (`benches/benches/scale.rs`, figures in BENCHMARKS.md) by HNSW recall@10
/// against exact search on real embeddings: see the constant's value there.
/// The store keeps every vector in f32, so a change here costs one rebuild,
/// never a re-embedding: a saved index of another quantization is rebuilt.
pub const QUANTIZATION: ScalarKind = ScalarKind::F16;

/// Candidates a search explores (HNSW's `ef`). The scale bench measured
/// recall@10 on real embeddings among 50,000 vectors at 0.983 with 64 and
/// 0.9915 with 128, for 0.25 ms more per search (a query's embedding takes
/// about 8 ms); recall falls as the library grows, so 128 keeps the margin.
pub const EXPANSION_SEARCH: usize = 128;

/// The name [`QUANTIZATION`] has in the index's metadata file.
fn quantization_name(kind: ::usearch::ScalarKind) -> String {
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
    inner: RwLock<::usearch::Index>,
    /// The file `inner` is a memory map of, until the first write. Its lock
    /// also makes concurrent first writes load the file once.
    viewed: parking_lot::Mutex<Option<PathBuf>>,
    quantization: ::usearch::ScalarKind,
    /// The data directory [`VectorIndex::persist`] saves into; none for an
    /// index a bench builds in memory.
    home: Option<PathBuf>,
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
    pub fn with_quantization(dimensions: usize, quantization: ::usearch::ScalarKind) -> Result<Self, IndexError> {
        let index = Self::engine_index(dimensions, quantization)?;
        index.reserve(1024).map_err(engine)?;
        Ok(UsearchIndex {
            inner: RwLock::new(index),
            viewed: parking_lot::Mutex::new(None),
            quantization,
            home: None,
        })
    }

    fn engine_index(dimensions: usize, quantization: ::usearch::ScalarKind) -> Result<::usearch::Index, IndexError> {
        let options = ::usearch::IndexOptions {
            dimensions,
            metric: ::usearch::MetricKind::Cos,
            quantization,
            connectivity: 16,
            expansion_add: 128,
            expansion_search: EXPANSION_SEARCH,
            multi: false,
        };
        ::usearch::Index::new(&options).map_err(engine)
    }

    /// Checks that the file at `path` holds an index this build can use:
    /// cosine, `dimensions`, [`QUANTIZATION`].
    fn check_file(path: &Path, dimensions: usize) -> Result<(), IndexError> {
        let meta = ::usearch::Index::metadata(path_str(path)?).map_err(engine)?;
        if meta.dimensions as usize != dimensions {
            return Err(IndexError::Engine(format!(
                "the index file has {}-dimensional vectors, the model makes {dimensions}",
                meta.dimensions
            )));
        }
        if meta.quantization != QUANTIZATION || meta.metric != ::usearch::MetricKind::Cos {
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
        // Loading may take the search setting from the file's writer.
        index.inner.read().change_expansion_search(EXPANSION_SEARCH);
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
        index.change_expansion_search(EXPANSION_SEARCH);
        Ok(UsearchIndex {
            inner: RwLock::new(index),
            viewed: parking_lot::Mutex::new(Some(path.to_path_buf())),
            quantization: QUANTIZATION,
            home: None,
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
            loaded.change_expansion_search(EXPANSION_SEARCH);
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

    /// The same index, saved by [`VectorIndex::persist`] into `dir`.
    pub fn at_home(mut self, dir: &Path) -> Self {
        self.home = Some(dir.to_path_buf());
        self
    }

    /// Writes the index to `path` (the caller renames it into place).
    pub fn save(&self, path: &Path) -> Result<(), IndexError> {
        // A view is its file, unchanged: copying it is the save.
        if let Some(source) = self.viewed.lock().as_ref() {
            return std::fs::copy(source, path).map(|_| ()).map_err(|source| IndexError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
        self.inner.read().save(path_str(path)?).map_err(engine)
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

    fn search(&self, query: &[f32], k: usize, books: Option<&[u64]>) -> Result<Vec<(u64, f32)>, IndexError> {
        let index = self.inner.read();
        let matches = match books.filter(|b| !b.is_empty()) {
            Some(books) => index
                .filtered_search(query, k, |key: u64| books.contains(&crate::store::book_of_chunk(key)))
                .map_err(engine)?,
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

    fn persist(&self, model: &str, generation: u64) -> Result<(), IndexError> {
        let dir = self
            .home
            .as_deref()
            .ok_or_else(|| IndexError::Engine("this index has no data directory to be saved in".into()))?;
        save_files(dir, self, model, generation)
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

fn index_file(dir: &Path) -> PathBuf {
    dir.join("index.usearch")
}

fn meta_file(dir: &Path) -> PathBuf {
    dir.join("index.meta.json")
}

/// Loads the index from `dir` if it matches the store, else rebuilds it.
/// Blocking; call from `spawn_blocking`.
pub(crate) fn open_or_rebuild(
    dir: &Path,
    store: &StoreReader,
    model: &str,
    dimensions: usize,
) -> Result<(UsearchIndex, u64, IndexOrigin), IndexError> {
    let generation = store.generation()?;
    let (_, _, stored) = store.counts()?;
    let reason = match check_saved(dir, store, model, dimensions, generation, stored) {
        Ok(index) => return Ok((index.at_home(dir), generation, IndexOrigin::Loaded)),
        Err(reason) => reason,
    };
    tracing::warn!(%reason, "rebuilding the vector index from stored vectors");
    let index = UsearchIndex::new(dimensions)?;
    let vectors = store.vectors_of_model(model)?;
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
    Ok((index.at_home(dir), generation, IndexOrigin::Rebuilt(reason)))
}

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
    let keys = store.vector_key_sample(KEYS_CHECKED_AT_START).map_err(|e| e.to_string())?;
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
fn save_files(dir: &Path, index: &UsearchIndex, model: &str, generation: u64) -> Result<(), IndexError> {
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
        let other = if QUANTIZATION == ::usearch::ScalarKind::F32 {
            ::usearch::ScalarKind::F16
        } else {
            ::usearch::ScalarKind::F32
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
