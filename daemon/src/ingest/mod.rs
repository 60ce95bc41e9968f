//! Ingestion: from paths to searchable passages.
//!
//! [`IngestHandle`] is what the RPC layer calls. It expands folders, hashes
//! files, records them in the store as queued and hands jobs to the pool
//! ([`pool`]), which supervises the workers ([`worker`]) that parse, chunk,
//! embed and store each book.
//!
//! Invariant: a book's content is replaced in one store transaction, and the
//! index mirrors it afterwards; a crash in between is repaired by the index
//! rebuild at start.
//! Invariant: the job queue is durable: it *is* the store's `queued`,
//! `indexing` and `embedding` books. The pool's in-memory queue is rebuilt from them whenever
//! the pool starts (daemon start or pool restart), so a job is never lost; a
//! job is idempotent (content is replaced whole), so running it again after a
//! crash stores it exactly once. A job that started twice without finishing
//! is poison and ends `failed`.

pub(crate) mod pool;
pub(crate) mod worker;

use std::path::{Path, PathBuf};

use crate::events::{EventBus, EventKind};
use crate::files::{content_hash, mtime_ns};
use crate::index::IndexHandle;
use crate::keyword::{KeywordChange, KeywordDoc, KeywordHandle};
use crate::parse;
use crate::store::{FileState, StoreHandle, Upsert, VectorChange};
use crate::supervisor::{Slot, SupervisorHandle};
use pool::PoolMsg;
use worker::WorkerDeps;

/// One book to (re)ingest.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The book's id in the store.
    pub book_id: u64,
    /// The file as it was when the job was queued. The worker reads the
    /// book's path from the store when the job starts instead: the file may
    /// have moved (a watched folder renamed) while the job waited.
    pub path: PathBuf,
}

/// What happened to one path given to `add_paths`.
#[derive(Debug, Clone, PartialEq)]
pub enum AddResult {
    /// Queued as book `id`.
    Queued { path: String, book_id: u64 },
    /// Already indexed with the same content.
    Unchanged { path: String, book_id: u64 },
    /// Not ingested, with the reason.
    Rejected { path: String, reason: String },
}

/// Why an ingest request failed as a whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// The store refused a write.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The pool is gone (shutting down).
    #[error("the ingest pool is not running: {0}")]
    Unavailable(String),
}

impl IngestError {
    /// What kind of failure this is (see [`crate::error_kind`]).
    pub fn kind(&self) -> crate::error_kind::ErrorKind {
        match self {
            IngestError::Store(e) => e.kind(),
            IngestError::Unavailable(_) => crate::error_kind::ErrorKind::Unavailable,
        }
    }
}

/// Cloneable handle to ingestion.
#[derive(Clone)]
pub struct IngestHandle {
    pool: Slot<PoolMsg>,
    store: StoreHandle,
    index: IndexHandle,
    keyword: KeywordHandle,
    events: EventBus,
    /// Books whose job the disk refused and that wait to run again, with
    /// the reason (shared with the pool, which fills it).
    deferred: Deferred,
}

/// Books whose job is deferred because the library's disk refused its
/// writes, with the reason. The store cannot record that state (it is the
/// store's disk that is full), so readers overlay it ([`IngestHandle::visible`]).
pub(crate) type Deferred = std::sync::Arc<parking_lot::Mutex<std::collections::HashMap<u64, String>>>;

/// Makes a committed store change visible to both retrievers (the vector
/// index and the keyword index, `docs` being the added passages' text) and
/// returns once it is searchable in both.
pub(crate) async fn mirror(index: &IndexHandle, keyword: &KeywordHandle, change: VectorChange, docs: Vec<KeywordDoc>) {
    let words = KeywordChange {
        removed: change.removed.clone(),
        added: docs,
        generation: change.generation,
    };
    tokio::join!(index.apply(change), keyword.apply(words));
}

impl IngestHandle {
    /// Starts the ingest pool under `supervisor` with `workers` workers
    /// that use `deps`. The pool loads the durable queue (queued and
    /// interrupted books) as it starts.
    pub(crate) async fn start(supervisor: &SupervisorHandle, deps: WorkerDeps, workers: usize) -> Result<Self, String> {
        let (store, index, keyword, events) = (deps.store.clone(), deps.index.clone(), deps.keyword.clone(), deps.events.clone());
        let deferred = Deferred::default();
        let args = pool::PoolArgs {
            deps,
            workers,
            deferred: deferred.clone(),
        };
        let pool = supervisor.spawn("ingest pool", pool::PoolActor, args).await?;
        Ok(IngestHandle {
            pool,
            store,
            index,
            keyword,
            events,
            deferred,
        })
    }

    /// A book as readers should see it while its job waits for a disk that
    /// refused its writes: `queued`, with the reason as its error, instead
    /// of the `indexing` the store was left at (the store could not be
    /// told otherwise: its disk is the one that is full).
    pub fn visible(&self, mut book: crate::store::BookRecord) -> crate::store::BookRecord {
        if book.status.in_progress() {
            if let Some(reason) = self.deferred.lock().get(&book.id) {
                book.status = crate::store::BookStatus::Queued;
                book.error = reason.clone();
            }
        }
        book
    }

    /// Queues every new or changed supported file among `paths` (folders are
    /// walked recursively).
    pub async fn add_paths(&self, paths: Vec<String>, force: bool) -> Result<Vec<AddResult>, IngestError> {
        let mut results = Vec::new();
        let mut files = Vec::new();
        for raw in paths {
            let expanded = tokio::task::spawn_blocking(move || expand(&raw))
                .await
                .map_err(|e| IngestError::Unavailable(e.to_string()))?;
            for candidate in expanded {
                match candidate {
                    Ok(file) => files.push(file),
                    Err(rejected) => results.push(rejected),
                }
            }
        }
        results.extend(self.queue_files(files, force).await?);
        Ok(results)
    }

    /// Records hashed files in the store and queues the new or changed ones.
    pub async fn queue_files(&self, files: Vec<(PathBuf, FileState)>, force: bool) -> Result<Vec<AddResult>, IngestError> {
        let mut results = Vec::with_capacity(files.len());
        let mut jobs = Vec::new();
        for (path, state) in files {
            let path_str = mindory_proto::path_text::encode(&path);
            match self.store.upsert_queued(path_str.clone(), state, force).await? {
                Upsert::Unchanged(book_id) => results.push(AddResult::Unchanged { path: path_str, book_id }),
                // Its job is already queued or running: one ingestion is enough.
                Upsert::InProgress(book_id) => results.push(AddResult::Queued { path: path_str, book_id }),
                Upsert::Queued(book_id) => {
                    self.events.publish(EventKind::Queued {
                        book_id,
                        path: path_str.clone(),
                    });
                    jobs.push(Job { book_id, path });
                    results.push(AddResult::Queued { path: path_str, book_id });
                }
            }
        }
        if !jobs.is_empty() && !self.pool.cast(PoolMsg::Enqueue(jobs)) {
            return Err(IngestError::Unavailable("the ingest pool is not running".into()));
        }
        Ok(results)
    }

    /// Records that a book's file moved (same content): no re-parsing, no
    /// re-embedding, same id. A book that had failed is queued again at its
    /// new path, since a job that ran while its folder was being renamed
    /// fails for the vanished path alone.
    pub async fn move_book(&self, book_id: u64, to: &Path, state: &FileState) -> Result<(), IngestError> {
        let to_str = mindory_proto::path_text::encode(to);
        let moved = self.store.move_book(book_id, to_str.clone(), state.size, state.mtime_ns).await?;
        crate::test_hooks::crash_point("mid-move");
        self.events.publish(EventKind::Moved {
            book_id,
            from: moved.from,
            to: to_str.clone(),
        });
        if moved.requeued {
            self.events.publish(EventKind::Queued { book_id, path: to_str });
            let job = Job {
                book_id,
                path: to.to_path_buf(),
            };
            if !self.pool.cast(PoolMsg::Enqueue(vec![job])) {
                return Err(IngestError::Unavailable("the ingest pool is not running".into()));
            }
        }
        Ok(())
    }

    /// Queues books again even though their content is unchanged (all books
    /// when `ids` is empty). Returns the ids queued.
    pub async fn reindex(&self, ids: Vec<u64>) -> Result<Vec<u64>, IngestError> {
        let reader = self.store.reader();
        let paths: Vec<String> = if ids.is_empty() {
            reader.books()?.into_iter().map(|b| b.path).collect()
        } else {
            // The named books only, by id: not a read of the whole library.
            let mut ids = ids;
            ids.sort_unstable();
            ids.dedup();
            let mut paths = Vec::with_capacity(ids.len());
            for id in &ids {
                let book = reader.book(*id)?.ok_or(crate::store::StoreError::NoSuchBook(*id))?;
                paths.push(book.path);
            }
            paths
        };
        let results = self.add_paths(paths, true).await?;
        Ok(results
            .into_iter()
            .filter_map(|r| match r {
                AddResult::Queued { book_id, .. } => Some(book_id),
                _ => None,
            })
            .collect())
    }

    /// Removes a book with its passages and vectors.
    pub async fn remove_book(&self, id: u64) -> Result<u64, IngestError> {
        let change = self.store.remove_book(id).await?;
        let removed = change.removed.len() as u64;
        crate::test_hooks::crash_point("mid-removal");
        mirror(&self.index, &self.keyword, change, Vec::new()).await;
        self.events.publish(EventKind::Removed { book_id: id });
        Ok(removed)
    }

    /// (pending, running) jobs.
    pub async fn queue_depth(&self) -> (u64, u64) {
        self.pool.call(PoolMsg::Depth).await.unwrap_or((0, 0))
    }

    /// Stops starting jobs and waits for running ones; queued books stay
    /// `queued` in the store and resume at next start.
    pub async fn drain(&self) {
        let _ = self.pool.call(PoolMsg::Drain).await;
    }
}

type Candidate = Result<(PathBuf, FileState), AddResult>;

/// Expands one user-given path into files with their hash, size and mtime.
fn expand(raw: &str) -> Vec<Candidate> {
    let rejected = |reason: String| {
        vec![Err(AddResult::Rejected {
            path: raw.to_string(),
            reason,
        })]
    };
    let path = match std::fs::canonicalize(mindory_proto::path_text::decode(raw)) {
        Ok(p) => p,
        Err(e) => return rejected(format!("cannot open: {e}")),
    };
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) => return rejected(format!("cannot open: {e}")),
    };
    if meta.is_dir() {
        // The same walk a library folder uses: hidden and ignored names
        // skipped, symlink loops cut.
        let mut files: Vec<PathBuf> = crate::files::walk(&[path]).into_keys().collect();
        files.sort();
        return files.into_iter().map(|f| prepare(&f, false)).collect();
    }
    vec![prepare(&path, true)]
}

fn prepare(path: &Path, explicit: bool) -> Candidate {
    let display = mindory_proto::path_text::encode(path);
    let reject = |reason: String| {
        Err(AddResult::Rejected {
            path: display.clone(),
            reason,
        })
    };
    let mtime_ns = match std::fs::metadata(path) {
        Ok(m) => mtime_ns(&m),
        Err(e) => return reject(format!("cannot open: {e}")),
    };
    let bytes = match crate::files::read_book_file(path) {
        Ok(b) => b,
        Err(e) => return reject(e.to_string()),
    };
    let size = bytes.len() as u64;
    if size == 0 {
        return reject("empty file (0 bytes): there is nothing to read".into());
    }
    // A format Mindory does not read is refused here; a file that claims a
    // format it then breaks is queued, so it ends `failed` with its reason
    // and shows in `books --failed`.
    if explicit {
        if let Err(e @ parse::ParseError::Unsupported(_)) = parse::detect(path, &bytes) {
            return reject(e.to_string());
        }
    }
    Ok((
        path.to_path_buf(),
        FileState {
            hash: content_hash(&bytes),
            size,
            mtime_ns,
        },
    ))
}
