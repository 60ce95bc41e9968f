//! The store actor: the only writer of the redb database, and the typed
//! read side ([`StoreReader`]) that everyone else reads through.
//!
//! Tables: books (id → [`BookRecord`]), paths (path → book id), chunks
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

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::supervisor::{Slot, SupervisorHandle};
use crate::text::clean::PassageKind;
use crate::text::PageRef;

const BOOKS: TableDefinition<u64, &[u8]> = TableDefinition::new("books");
const PATHS: TableDefinition<&str, u64> = TableDefinition::new("paths");
const CHUNKS: TableDefinition<u64, &[u8]> = TableDefinition::new("chunks");
const VECTORS: TableDefinition<u64, &[u8]> = TableDefinition::new("vectors");
/// The second vector slot. Vectors live in two tables: META `vector_slot`
/// names the one holding the active model's vectors (0 = `vectors`, the
/// only one before model swaps existed); the other holds the new vectors
/// of a model swap in progress (META `swap` names its model), so the switch
/// is one small transaction that flips the slot.
const VECTORS_B: TableDefinition<u64, &[u8]> = TableDefinition::new("vectors_b");
const SLOTS: [VectorTable; 2] = [VECTORS, VECTORS_B];
type VectorTable = TableDefinition<'static, u64, &'static [u8]>;
const TEXTS: TableDefinition<u64, &str> = TableDefinition::new("texts");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const FOLDERS: TableDefinition<&str, &[u8]> = TableDefinition::new("folders");
const EMBED_CACHE: TableDefinition<&[u8], u64> = TableDefinition::new("embed_cache");
/// Passages that are not prose (contents, index, boilerplate, fragments):
/// chunk id → [`PassageKind`] code. Body passages have no row.
const PASSAGE_KINDS: TableDefinition<u64, u8> = TableDefinition::new("passage_kinds");

/// Bumped when the layout of a table changes; [`migrate`] upgrades older
/// databases in place. Version 2 added book languages and page labels,
/// version 3 file modification times, ingest attempts and library folders.
/// Schema 4 added the `embedding` book status and the second vector slot
/// (model swaps); older daemons must refuse such a database rather than
/// misread it.
pub const SCHEMA_VERSION: u64 = 4;
/// Bits of a chunk id that hold the passage ordinal within its book.
pub const ORDINAL_BITS: u32 = 24;

/// The chunk id of passage `ordinal` of book `book_id`.
pub fn chunk_id(book_id: u64, ordinal: u32) -> u64 {
    (book_id << ORDINAL_BITS) | u64::from(ordinal)
}

/// The book a chunk id belongs to.
pub fn book_of_chunk(chunk_id: u64) -> u64 {
    chunk_id >> ORDINAL_BITS
}

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
}

fn db<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(e.into())
}

/// Lifecycle of a book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BookStatus {
    /// Waiting for an ingest worker.
    Queued,
    /// A worker is parsing or embedding it.
    Indexing,
    /// Searchable.
    Ready,
    /// Could not be ingested; `error` says why.
    Failed,
    /// Parsed and stored: searchable by keyword while its passages are
    /// being embedded (some may already have vectors). Last in the enum
    /// because records are stored by variant index.
    Embedding,
}

impl BookStatus {
    /// Lowercase name, as in `books --json`.
    pub fn name(self) -> &'static str {
        match self {
            BookStatus::Queued => "queued",
            BookStatus::Indexing => "indexing",
            BookStatus::Ready => "ready",
            BookStatus::Failed => "failed",
            BookStatus::Embedding => "embedding",
        }
    }

    /// Whether an ingest job is waiting, running, or was interrupted for
    /// this book (it belongs to the durable job queue).
    pub fn in_progress(self) -> bool {
        matches!(self, BookStatus::Queued | BookStatus::Indexing | BookStatus::Embedding)
    }
}

/// A section heading and where it starts, in chars.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionRecord {
    /// Heading path.
    pub heading: String,
    /// Char offset in the normalized text.
    pub start: u64,
    /// Passages whose start lies in this section.
    pub chunks: u64,
}

/// Everything stored about a book except its text and passages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BookRecord {
    /// Stable id.
    pub id: u64,
    /// Absolute path of the file.
    pub path: String,
    /// Hex SHA-256 of the file's bytes.
    pub content_hash: String,
    /// File size in bytes.
    pub size: u64,
    /// Title (metadata, else the file name).
    pub title: String,
    /// Author, empty when unknown.
    pub author: String,
    /// Format name ("txt", "md", "html"), empty until parsed.
    pub format: String,
    /// Where the book is in its lifecycle.
    pub status: BookStatus,
    /// Why it failed, empty otherwise.
    pub error: String,
    /// Unix ms when first added.
    pub added_at_ms: i64,
    /// Unix ms of the last change.
    pub updated_at_ms: i64,
    /// Number of stored passages.
    pub chunk_count: u64,
    /// Length of the normalized text in chars.
    pub text_chars: u64,
    /// Table of contents.
    pub sections: Vec<SectionRecord>,
    /// Language tag from the book's metadata, empty when unknown.
    pub language: String,
    /// The file's modification time (ns since the epoch) when it was last
    /// hashed; with `size` it lets a rescan skip unchanged files unread.
    pub mtime_ns: i64,
    /// Ingest attempts that started without finishing (reset when the book
    /// is ready, failed or queued anew). A job that dies with the daemon
    /// twice is poison and ends `failed`.
    pub attempts: u32,
}

/// A library folder the daemon watches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FolderRecord {
    /// Absolute, canonical path.
    pub path: String,
    /// Unix ms when added.
    pub added_at_ms: i64,
}

/// A passage and where it lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkRecord {
    /// Book the passage belongs to.
    pub book_id: u64,
    /// Position among the book's passages.
    pub ordinal: u32,
    /// The passage text (equal to the char range of the normalized text).
    pub text: String,
    /// Char range start in the normalized text.
    pub start: u64,
    /// Char range end (exclusive).
    pub end: u64,
    /// Heading path, empty when none.
    pub heading: String,
    /// Page, for formats with pages.
    pub page: Option<PageRef>,
}

/// A stored embedding and the model that made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorRecord {
    /// Model id (see `EmbedHandle::model_id`).
    pub model: String,
    /// Unit-length embedding.
    pub vector: Vec<f32>,
}

/// What a worker stores once a book is parsed and embedded.
#[derive(Debug, Clone)]
pub struct BookContent {
    /// Title from the book's metadata or file name.
    pub title: String,
    /// Author, empty when unknown.
    pub author: String,
    /// Language tag, empty when unknown.
    pub language: String,
    /// Format name.
    pub format: String,
    /// The normalized text.
    pub text: String,
    /// Table of contents (chunk counts filled by the store).
    pub sections: Vec<SectionRecord>,
    /// Passages in order (ordinal = index).
    pub chunks: Vec<ChunkRecord>,
    /// One vector slot per passage; an empty one is embedded later
    /// ([`VectorBatch`]) while the book is searchable by keyword.
    pub vectors: Vec<Vec<f32>>,
    /// Model id of the vectors.
    pub model: String,
    /// Hash of the bytes that were parsed (the file may have changed since queueing).
    pub content_hash: String,
    /// Size of those bytes.
    pub size: u64,
}

/// Vectors for some passages of a book that is being embedded.
#[derive(Debug, Clone)]
pub struct VectorBatch {
    /// The content these passages came from (the book's `content_hash`).
    pub content_hash: String,
    /// Model id of the vectors.
    pub model: String,
    /// (passage ordinal, unit-length vector).
    pub vectors: Vec<(u32, Vec<f32>)>,
    /// The book's last batch: every passage has a vector after it.
    pub last: bool,
}

/// A model swap in progress: its new vectors fill the inactive slot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwapRecord {
    /// Id of the model the library is being re-embedded with.
    pub target: String,
    /// Unix ms when it started.
    pub started_at_ms: i64,
}

/// Result of queueing a path.
#[derive(Debug, Clone, PartialEq)]
pub enum Upsert {
    /// A new or changed book, now `queued`.
    Queued(u64),
    /// Same path, same content, already ready.
    Unchanged(u64),
    /// Same path, same content, already waiting or being indexed.
    InProgress(u64),
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("in-memory serialization cannot fail")
}

// ------------------------------------------------------------------ reads

/// Read access to the store; cheap to clone, safe from any thread.
///
/// Reads use their own redb read transactions, so they never wait for the
/// writer and always see a committed state.
#[derive(Clone)]
pub struct StoreReader {
    db: Arc<Database>,
}

impl StoreReader {
    /// Opens (or creates) the database and checks its schema and model.
    pub fn open(path: &std::path::Path, model_id: &str) -> Result<Self, StoreError> {
        let database = Database::create(path).map_err(db)?;
        let txn = database.begin_write().map_err(db)?;
        {
            txn.open_table(BOOKS).map_err(db)?;
            txn.open_table(PATHS).map_err(db)?;
            txn.open_table(CHUNKS).map_err(db)?;
            txn.open_table(VECTORS).map_err(db)?;
            txn.open_table(VECTORS_B).map_err(db)?;
            txn.open_table(TEXTS).map_err(db)?;
            txn.open_table(FOLDERS).map_err(db)?;
            txn.open_table(EMBED_CACHE).map_err(db)?;
            txn.open_table(PASSAGE_KINDS).map_err(db)?;
            let found = txn
                .open_table(META)
                .map_err(db)?
                .get("schema_version")
                .map_err(db)?
                .map(|v| u64_from(v.value()));
            match found {
                Some(from @ (1 | 2)) => migrate::upgrade(&txn, from)?,
                // Schema 3 records read the same under schema 4.
                Some(3) => {}
                Some(found) if found != SCHEMA_VERSION => return Err(StoreError::Schema { found }),
                _ => {}
            }
            let mut meta = txn.open_table(META).map_err(db)?;
            meta.insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice()).map_err(db)?;
            let stored = meta
                .get("model_id")
                .map_err(db)?
                .map(|v| String::from_utf8_lossy(v.value()).into_owned());
            if let Some(stored) = stored.filter(|s| s != model_id) {
                // A library without vectors can change model freely; one
                // with vectors cannot mix them with another model's.
                if !txn.open_table(SLOTS[slot_of(&meta)?]).map_err(db)?.is_empty().map_err(db)? {
                    return Err(StoreError::Model {
                        stored,
                        requested: model_id.to_string(),
                    });
                }
            }
            meta.insert("model_id", model_id.as_bytes()).map_err(db)?;
            // Databases written before the embed cache and passage kinds
            // existed get them filled from their stored passages once; no
            // schema change is needed because older daemons simply ignore
            // the tables.
            let (cache_built, kinds_built) = (
                meta.get("embed_cache").map_err(db)?.is_some(),
                meta.get("passage_kinds").map_err(db)?.is_some(),
            );
            meta.insert("embed_cache", 1u64.to_le_bytes().as_slice()).map_err(db)?;
            meta.insert("passage_kinds", 1u64.to_le_bytes().as_slice()).map_err(db)?;
            drop(meta);
            if !cache_built {
                backfill_embed_cache(&txn)?;
            }
            if !kinds_built {
                backfill_passage_kinds(&txn)?;
            }
        }
        txn.commit().map_err(db)?;
        Ok(StoreReader { db: Arc::new(database) })
    }

    /// The library folders, sorted by path.
    pub fn folders(&self) -> Result<Vec<FolderRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let folders = txn.open_table(FOLDERS).map_err(db)?;
        let mut out = Vec::new();
        for row in folders.iter().map_err(db)? {
            let (_, v) = row.map_err(db)?;
            out.push(postcard::from_bytes(v.value())?);
        }
        Ok(out)
    }

    /// A book by id.
    pub fn book(&self, id: u64) -> Result<Option<BookRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let books = txn.open_table(BOOKS).map_err(db)?;
        match books.get(id).map_err(db)? {
            Some(v) => Ok(Some(postcard::from_bytes(v.value())?)),
            None => Ok(None),
        }
    }

    /// All books in id order.
    pub fn books(&self) -> Result<Vec<BookRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let books = txn.open_table(BOOKS).map_err(db)?;
        let mut out = Vec::new();
        for row in books.iter().map_err(db)? {
            let (_, v) = row.map_err(db)?;
            out.push(postcard::from_bytes(v.value())?);
        }
        Ok(out)
    }

    /// The book stored for `path`, if any.
    pub fn book_by_path(&self, path: &str) -> Result<Option<BookRecord>, StoreError> {
        let id = {
            let txn = self.db.begin_read().map_err(db)?;
            let paths = txn.open_table(PATHS).map_err(db)?;
            paths.get(path).map_err(db)?.map(|v| v.value())
        };
        match id {
            Some(id) => self.book(id),
            None => Ok(None),
        }
    }

    /// Passages by chunk id, skipping ids that no longer exist.
    pub fn chunks(&self, ids: &[u64]) -> Result<Vec<ChunkRecord>, StoreError> {
        Ok(self.records(|_| Ok(CHUNKS), ids)?.into_iter().map(|(_, c)| c).collect())
    }

    /// The records at `ids` of the table `table` picks in the read
    /// transaction (a fixed table, or the active vector slot), in that
    /// order, skipping absent ones.
    fn records<T: serde::de::DeserializeOwned>(
        &self,
        table: impl FnOnce(&redb::ReadTransaction) -> Result<VectorTable, StoreError>,
        ids: &[u64],
    ) -> Result<Vec<(u64, T)>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let table = txn.open_table(table(&txn)?).map_err(db)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(v) = table.get(*id).map_err(db)? {
                out.push((*id, postcard::from_bytes(v.value())?));
            }
        }
        Ok(out)
    }

    /// Those of `ids` that have no stored vector (passages of a book that is
    /// being embedded; ids of removed passages too).
    pub fn without_vectors(&self, ids: &[u64]) -> Result<std::collections::HashSet<u64>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let table = txn.open_table(read_slots(&txn)?.0).map_err(db)?;
        let mut out = std::collections::HashSet::new();
        for id in ids {
            if table.get(*id).map_err(db)?.is_none() {
                out.insert(*id);
            }
        }
        Ok(out)
    }

    /// Id of the model the searchable vectors come from.
    pub fn model_id(&self) -> Result<String, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let meta = txn.open_table(META).map_err(db)?;
        Ok(meta
            .get("model_id")
            .map_err(db)?
            .map(|v| String::from_utf8_lossy(v.value()).into_owned())
            .unwrap_or_default())
    }

    /// The model swap in progress, if any.
    pub fn swap(&self) -> Result<Option<SwapRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        swap_record(&txn.open_table(META).map_err(db)?)
    }

    /// (passages with a vector of the swap's model, passages).
    pub fn swap_progress(&self) -> Result<(u64, u64), StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        swap_counts(&txn)
    }

    /// The swap in progress with its progress (done, total), read in one
    /// transaction so that a switch in between cannot pair them wrongly.
    pub fn swap_status(&self) -> Result<Option<(SwapRecord, u64, u64)>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let Some(record) = swap_record(&txn.open_table(META).map_err(db)?)? else {
            return Ok(None);
        };
        let (done, total) = swap_counts(&txn)?;
        Ok(Some((record, done, total)))
    }

    /// Up to `limit` passages after chunk id `after` (from the first when
    /// `None`) that have no vector of the swap's model yet, with their text.
    pub fn swap_missing(&self, after: Option<u64>, limit: usize) -> Result<Vec<(u64, String)>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let next = txn.open_table(read_slots(&txn)?.1).map_err(db)?;
        let chunks = txn.open_table(CHUNKS).map_err(db)?;
        let range = match after {
            Some(id) => chunks.range(id + 1..).map_err(db)?,
            None => chunks.range(0..).map_err(db)?,
        };
        let mut out = Vec::new();
        for row in range {
            let (k, v) = row.map_err(db)?;
            if next.get(k.value()).map_err(db)?.is_none() {
                let chunk: ChunkRecord = postcard::from_bytes(v.value())?;
                out.push((k.value(), chunk.text));
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Calls `f` with every vector of the swap's model (to build its index).
    pub fn for_each_swap_vector(&self, f: impl FnMut(u64, VectorRecord)) -> Result<(), StoreError> {
        self.for_each_in_slot(|txn| Ok(read_slots(txn)?.1), f)
    }

    /// Chunk ids of one book.
    pub fn chunk_ids_of(&self, book_id: u64) -> Result<Vec<u64>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let chunks = txn.open_table(CHUNKS).map_err(db)?;
        let range = chunk_id(book_id, 0)..chunk_id(book_id + 1, 0);
        let mut out = Vec::new();
        for row in chunks.range(range).map_err(db)? {
            out.push(row.map_err(db)?.0.value());
        }
        Ok(out)
    }

    /// The normalized text of a book.
    pub fn text(&self, book_id: u64) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let texts = txn.open_table(TEXTS).map_err(db)?;
        Ok(texts.get(book_id).map_err(db)?.map(|v| v.value().to_string()))
    }

    /// (books, chunks, vectors) counts.
    pub fn counts(&self) -> Result<(u64, u64, u64), StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let books = txn.open_table(BOOKS).map_err(db)?.len().map_err(db)?;
        let chunks = txn.open_table(CHUNKS).map_err(db)?.len().map_err(db)?;
        let vectors = txn.open_table(read_slots(&txn)?.0).map_err(db)?.len().map_err(db)?;
        Ok((books, chunks, vectors))
    }

    /// Monotonic counter bumped by every transaction that changes vectors.
    pub fn generation(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let meta = txn.open_table(META).map_err(db)?;
        Ok(meta.get("generation").map_err(db)?.map_or(0, |v| u64_from(v.value())))
    }

    /// Calls `f` with every stored vector (for rebuilding the index).
    pub fn for_each_vector(&self, f: impl FnMut(u64, VectorRecord)) -> Result<(), StoreError> {
        self.for_each_in_slot(|txn| Ok(read_slots(txn)?.0), f)
    }

    /// Calls `f` with every vector of the slot `slot` picks in one read
    /// transaction.
    fn for_each_in_slot(
        &self,
        slot: impl FnOnce(&redb::ReadTransaction) -> Result<VectorTable, StoreError>,
        mut f: impl FnMut(u64, VectorRecord),
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let vectors = txn.open_table(slot(&txn)?).map_err(db)?;
        for row in vectors.iter().map_err(db)? {
            let (k, v) = row.map_err(db)?;
            f(k.value(), postcard::from_bytes(v.value())?);
        }
        Ok(())
    }

    /// For each text, the vector `model` already made from exactly that
    /// text for some stored passage, if any. Entries are checked against the
    /// passage they point to, so a stale one is a miss, never a wrong vector.
    pub fn cached_vectors(&self, model: &str, texts: &[&str]) -> Result<Vec<Option<Vec<f32>>>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let cache = txn.open_table(EMBED_CACHE).map_err(db)?;
        let chunks = txn.open_table(CHUNKS).map_err(db)?;
        let vectors = txn.open_table(read_slots(&txn)?.0).map_err(db)?;
        let mut out = Vec::with_capacity(texts.len());
        for text in texts {
            let Some(id) = cache.get(embed_key(model, text).as_slice()).map_err(db)?.map(|v| v.value()) else {
                out.push(None);
                continue;
            };
            let same_text = match chunks.get(id).map_err(db)? {
                Some(c) => postcard::from_bytes::<ChunkRecord>(c.value())?.text == *text,
                None => false,
            };
            let vector = match (same_text, vectors.get(id).map_err(db)?) {
                (true, Some(v)) => {
                    let record: VectorRecord = postcard::from_bytes(v.value())?;
                    (record.model == model && !record.vector.is_empty()).then_some(record.vector)
                }
                _ => None,
            };
            out.push(vector);
        }
        Ok(out)
    }

    /// Calls `f` with every stored passage in chunk id order, so a book's
    /// passages come together and in order (for rebuilding the keyword index).
    pub fn for_each_chunk(&self, mut f: impl FnMut(u64, ChunkRecord)) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let chunks = txn.open_table(CHUNKS).map_err(db)?;
        for row in chunks.iter().map_err(db)? {
            let (k, v) = row.map_err(db)?;
            f(k.value(), postcard::from_bytes(v.value())?);
        }
        Ok(())
    }

    /// The kinds of the given passages that are not prose; absent ids are
    /// body text (or gone).
    pub fn passage_kinds(&self, ids: &[u64]) -> Result<std::collections::HashMap<u64, PassageKind>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let kinds = txn.open_table(PASSAGE_KINDS).map_err(db)?;
        let mut out = std::collections::HashMap::new();
        for id in ids {
            if let Some(v) = kinds.get(*id).map_err(db)? {
                out.insert(*id, PassageKind::from_code(v.value()));
            }
        }
        Ok(out)
    }

    /// How many of a book's passages are of each kind other than prose.
    pub fn passage_kind_counts(&self, book_id: u64) -> Result<Vec<(PassageKind, u64)>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let kinds = txn.open_table(PASSAGE_KINDS).map_err(db)?;
        let mut counts: Vec<(PassageKind, u64)> = Vec::new();
        for row in kinds.range(chunk_id(book_id, 0)..chunk_id(book_id + 1, 0)).map_err(db)? {
            let kind = PassageKind::from_code(row.map_err(db)?.1.value());
            match counts.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, n)) => *n += 1,
                None => counts.push((kind, 1)),
            }
        }
        counts.sort_by_key(|(k, _)| k.code());
        Ok(counts)
    }

    /// Stored vectors by chunk id, skipping ids that have none.
    pub fn vectors(&self, ids: &[u64]) -> Result<Vec<(u64, VectorRecord)>, StoreError> {
        self.records(|txn| Ok(read_slots(txn)?.0), ids)
    }

    /// Vectors of one book, in chunk order.
    pub fn vectors_of(&self, book_id: u64) -> Result<Vec<(u64, VectorRecord)>, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let vectors = txn.open_table(read_slots(&txn)?.0).map_err(db)?;
        let mut out = Vec::new();
        for row in vectors.range(chunk_id(book_id, 0)..chunk_id(book_id + 1, 0)).map_err(db)? {
            let (k, v) = row.map_err(db)?;
            out.push((k.value(), postcard::from_bytes(v.value())?));
        }
        Ok(out)
    }
}

/// Stores one passage's vector and its embed cache entry; returns what
/// the vector index must add.
fn put_vector(
    vectors: &mut redb::Table<u64, &[u8]>,
    cache: &mut redb::Table<&[u8], u64>,
    key: u64,
    model: &str,
    text: &str,
    vector: Vec<f32>,
) -> Result<(u64, Vec<f32>), StoreError> {
    cache.insert(embed_key(model, text).as_slice(), key).map_err(db)?;
    let record = VectorRecord {
        model: model.to_string(),
        vector,
    };
    vectors.insert(key, encode(&record).as_slice()).map_err(db)?;
    Ok((key, record.vector))
}

/// The embed cache key of a passage text under a model: 16 bytes of
/// SHA-256 over both (a collision needs 2^64 passages to be likely).
fn embed_key(model: &str, text: &str) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(model.as_bytes());
    hasher.update([0u8]);
    hasher.update(text.as_bytes());
    let digest = hasher.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// Classifies every stored passage (databases from before passage kinds).
fn backfill_passage_kinds(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let chunks = txn.open_table(CHUNKS).map_err(db)?;
    let mut kinds = txn.open_table(PASSAGE_KINDS).map_err(db)?;
    for row in chunks.iter().map_err(db)? {
        let (k, v) = row.map_err(db)?;
        let chunk: ChunkRecord = postcard::from_bytes(v.value())?;
        let kind = crate::text::clean::classify(&chunk.text);
        if kind != PassageKind::Body {
            kinds.insert(k.value(), kind.code()).map_err(db)?;
        }
    }
    Ok(())
}

/// Points the embed cache at every stored passage that has a vector.
fn backfill_embed_cache(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let chunks = txn.open_table(CHUNKS).map_err(db)?;
    let vectors = txn.open_table(write_slots(txn)?.0).map_err(db)?;
    let mut cache = txn.open_table(EMBED_CACHE).map_err(db)?;
    for row in vectors.iter().map_err(db)? {
        let (k, v) = row.map_err(db)?;
        let record: VectorRecord = postcard::from_bytes(v.value())?;
        if let Some(c) = chunks.get(k.value()).map_err(db)? {
            let chunk: ChunkRecord = postcard::from_bytes(c.value())?;
            cache
                .insert(embed_key(&record.model, &chunk.text).as_slice(), k.value())
                .map_err(db)?;
        }
    }
    Ok(())
}

fn u64_from(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(buf)
}

// ------------------------------------------------------------------ writes

/// Write operations, all executed by the store actor, one transaction each.
#[derive(Clone)]
pub(crate) struct Writer {
    db: Arc<Database>,
}

/// Refuses vectors that are not the active model's.
fn check_model(meta: &impl ReadableTable<&'static str, &'static [u8]>, given: &str) -> Result<(), StoreError> {
    let active = meta
        .get("model_id")
        .map_err(db)?
        .map(|v| String::from_utf8_lossy(v.value()).into_owned());
    match active {
        Some(active) if active != given => Err(StoreError::ModelChanged {
            given: given.to_string(),
            active,
        }),
        _ => Ok(()),
    }
}

fn swap_record(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<Option<SwapRecord>, StoreError> {
    Ok(match meta.get("swap").map_err(db)? {
        Some(v) => Some(postcard::from_bytes(v.value())?),
        None => None,
    })
}

/// Empties the inactive vector slot with the embed cache entries that
/// point into it.
fn clear_inactive(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let next_def = write_slots(txn)?.1;
    let chunks = txn.open_table(CHUNKS).map_err(db)?;
    let mut next = txn.open_table(next_def).map_err(db)?;
    let mut cache = txn.open_table(EMBED_CACHE).map_err(db)?;
    for row in next.extract_if(|_, _| true).map_err(db)? {
        let (k, v) = row.map_err(db)?;
        let record: VectorRecord = postcard::from_bytes(v.value())?;
        if let Some(chunk) = chunks.get(k.value()).map_err(db)? {
            let chunk: ChunkRecord = postcard::from_bytes(chunk.value())?;
            let key = embed_key(&record.model, &chunk.text);
            if cache.get(key.as_slice()).map_err(db)?.map(|v| v.value()) == Some(k.value()) {
                cache.remove(key.as_slice()).map_err(db)?;
            }
        }
    }
    Ok(())
}

/// (vectors in the swap slot, passages) as `txn` sees them.
fn swap_counts(txn: &redb::ReadTransaction) -> Result<(u64, u64), StoreError> {
    let next = txn.open_table(read_slots(txn)?.1).map_err(db)?.len().map_err(db)?;
    let chunks = txn.open_table(CHUNKS).map_err(db)?.len().map_err(db)?;
    Ok((next, chunks))
}

/// The active slot number in META.
fn slot_of(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<usize, StoreError> {
    Ok(meta
        .get("vector_slot")
        .map_err(db)?
        .map_or(0, |v| u64_from(v.value()) as usize)
        .min(1))
}

/// (active, next) vector tables as a read transaction sees them.
fn read_slots(txn: &redb::ReadTransaction) -> Result<(VectorTable, VectorTable), StoreError> {
    let slot = slot_of(&txn.open_table(META).map_err(db)?)?;
    Ok((SLOTS[slot], SLOTS[1 - slot]))
}

/// (active, next) vector tables as a write transaction sees them.
fn write_slots(txn: &redb::WriteTransaction) -> Result<(VectorTable, VectorTable), StoreError> {
    let slot = slot_of(&txn.open_table(META).map_err(db)?)?;
    Ok((SLOTS[slot], SLOTS[1 - slot]))
}

fn bump_generation(meta: &mut redb::Table<&str, &[u8]>) -> Result<u64, StoreError> {
    let next = meta.get("generation").map_err(db)?.map_or(0, |v| u64_from(v.value())) + 1;
    meta.insert("generation", next.to_le_bytes().as_slice()).map_err(db)?;
    Ok(next)
}

/// What a write did to the vectors, for the index to mirror.
#[derive(Debug, Clone, Default)]
pub struct VectorChange {
    /// Chunk ids whose vectors were deleted.
    pub removed: Vec<u64>,
    /// (chunk id, vector) pairs that were stored.
    pub added: Vec<(u64, Vec<f32>)>,
    /// Store generation after the write.
    pub generation: u64,
}

/// The title a book has before it is parsed: its file name without extension.
fn title_from_path(path: &str) -> String {
    std::path::Path::new(path)
        .file_stem()
        .map_or_else(|| path.to_string(), |s| s.to_string_lossy().into_owned())
}

/// What identifies a file's content and version on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    /// Hex SHA-256 of the bytes.
    pub hash: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
}

fn put_book(books: &mut redb::Table<u64, &[u8]>, book: &BookRecord) -> Result<(), StoreError> {
    books.insert(book.id, encode(book).as_slice()).map_err(db)?;
    Ok(())
}

fn get_book(books: &redb::Table<u64, &[u8]>, id: u64) -> Result<BookRecord, StoreError> {
    let bytes = books.get(id).map_err(db)?.ok_or(StoreError::NoSuchBook(id))?;
    Ok(postcard::from_bytes(bytes.value())?)
}

/// Deletes a book's chunks and vectors; returns the removed chunk ids.
fn delete_content(txn: &redb::WriteTransaction, book_id: u64) -> Result<Vec<u64>, StoreError> {
    let range = chunk_id(book_id, 0)..chunk_id(book_id + 1, 0);
    let mut removed = Vec::new();
    let mut texts = std::collections::HashMap::new();
    let mut chunks = txn.open_table(CHUNKS).map_err(db)?;
    for row in chunks.extract_from_if(range.clone(), |_, _| true).map_err(db)? {
        let (k, v) = row.map_err(db)?;
        let chunk: ChunkRecord = postcard::from_bytes(v.value())?;
        texts.insert(k.value(), chunk.text);
        removed.push(k.value());
    }
    txn.open_table(PASSAGE_KINDS)
        .map_err(db)?
        .retain_in(range.clone(), |_, _| false)
        .map_err(db)?;
    // Both slots: a swap in progress has new vectors for these passages.
    let mut cache = txn.open_table(EMBED_CACHE).map_err(db)?;
    for slot in SLOTS {
        let mut vectors = txn.open_table(slot).map_err(db)?;
        for row in vectors.extract_from_if(range.clone(), |_, _| true).map_err(db)? {
            let (k, v) = row.map_err(db)?;
            let record: VectorRecord = postcard::from_bytes(v.value())?;
            if let Some(text) = texts.get(&k.value()) {
                // Only an entry that points at this passage goes; another
                // passage with the same text may have claimed it since.
                let key = embed_key(&record.model, text);
                if cache.get(key.as_slice()).map_err(db)?.map(|v| v.value()) == Some(k.value()) {
                    cache.remove(key.as_slice()).map_err(db)?;
                }
            }
        }
    }
    txn.open_table(TEXTS).map_err(db)?.remove(book_id).map_err(db)?;
    Ok(removed)
}

impl Writer {
    fn upsert_queued(&self, path: &str, file: FileState, force: bool) -> Result<Upsert, StoreError> {
        let FileState { hash, size, mtime_ns } = file;
        let hash = hash.as_str();
        let txn = self.db.begin_write().map_err(db)?;
        let outcome = {
            let mut paths = txn.open_table(PATHS).map_err(db)?;
            let mut books = txn.open_table(BOOKS).map_err(db)?;
            let existing = paths.get(path).map_err(db)?.map(|v| v.value());
            match existing {
                Some(id) => {
                    let mut book = get_book(&books, id)?;
                    let same = !force && book.content_hash == hash;
                    if same && book.status == BookStatus::Ready {
                        if book.mtime_ns != mtime_ns {
                            // Touched but not changed: remember the new mtime so
                            // the next scan skips it without hashing.
                            book.mtime_ns = mtime_ns;
                            put_book(&mut books, &book)?;
                        }
                        Upsert::Unchanged(id)
                    } else if same && book.status.in_progress() {
                        Upsert::InProgress(id)
                    } else {
                        book.content_hash = hash.to_string();
                        book.size = size;
                        book.mtime_ns = mtime_ns;
                        book.attempts = 0;
                        book.status = BookStatus::Queued;
                        book.error.clear();
                        book.updated_at_ms = now_ms();
                        put_book(&mut books, &book)?;
                        Upsert::Queued(id)
                    }
                }
                None => {
                    let mut meta = txn.open_table(META).map_err(db)?;
                    let id = meta.get("next_book_id").map_err(db)?.map_or(1, |v| u64_from(v.value()));
                    meta.insert("next_book_id", (id + 1).to_le_bytes().as_slice()).map_err(db)?;
                    let title = std::path::Path::new(path)
                        .file_stem()
                        .map_or_else(|| path.to_string(), |s| s.to_string_lossy().into_owned());
                    debug_assert_eq!(title, title_from_path(path));
                    let now = now_ms();
                    let book = BookRecord {
                        id,
                        path: path.to_string(),
                        content_hash: hash.to_string(),
                        size,
                        title,
                        author: String::new(),
                        format: String::new(),
                        status: BookStatus::Queued,
                        error: String::new(),
                        added_at_ms: now,
                        updated_at_ms: now,
                        chunk_count: 0,
                        text_chars: 0,
                        sections: Vec::new(),
                        language: String::new(),
                        mtime_ns,
                        attempts: 0,
                    };
                    put_book(&mut books, &book)?;
                    paths.insert(path, id).map_err(db)?;
                    Upsert::Queued(id)
                }
            }
        };
        txn.commit().map_err(db)?;
        Ok(outcome)
    }

    fn set_status(&self, id: u64, status: BookStatus, error: &str) -> Result<(), StoreError> {
        self.update_book(id, |book| {
            book.status = status;
            book.error = error.to_string();
            if status != BookStatus::Indexing {
                book.attempts = 0;
            }
        })
        .map(|_| ())
    }

    /// Applies `f` to a book in one transaction; returns the updated record.
    fn update_book(&self, id: u64, f: impl FnOnce(&mut BookRecord)) -> Result<BookRecord, StoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        let book = {
            let mut books = txn.open_table(BOOKS).map_err(db)?;
            let mut book = get_book(&books, id)?;
            f(&mut book);
            book.updated_at_ms = now_ms();
            put_book(&mut books, &book)?;
            book
        };
        txn.commit().map_err(db)?;
        Ok(book)
    }

    /// Marks a job started: `indexing`, one more attempt, committed before
    /// any work so a crash mid-job is counted.
    fn begin_attempt(&self, id: u64) -> Result<u32, StoreError> {
        self.update_book(id, |book| {
            book.status = BookStatus::Indexing;
            book.error.clear();
            book.attempts += 1;
        })
        .map(|b| b.attempts)
    }

    /// Gives a book a new path (the file moved; same content, same id).
    fn move_book(&self, id: u64, to: &str, size: u64, mtime_ns: i64) -> Result<String, StoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        let from = {
            let mut books = txn.open_table(BOOKS).map_err(db)?;
            let mut paths = txn.open_table(PATHS).map_err(db)?;
            let mut book = get_book(&books, id)?;
            if let Some(other) = paths.get(to).map_err(db)?.map(|v| v.value()) {
                if other != id {
                    return Err(StoreError::PathTaken(to.to_string()));
                }
            }
            let from = std::mem::replace(&mut book.path, to.to_string());
            paths.remove(from.as_str()).map_err(db)?;
            paths.insert(to, id).map_err(db)?;
            book.size = size;
            book.mtime_ns = mtime_ns;
            book.updated_at_ms = now_ms();
            if book.format.is_empty() || book.title == title_from_path(&from) {
                book.title = title_from_path(to);
            }
            put_book(&mut books, &book)?;
            from
        };
        txn.commit().map_err(db)?;
        Ok(from)
    }

    fn set_folder(&self, path: &str, add: bool) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        let changed = {
            let mut folders = txn.open_table(FOLDERS).map_err(db)?;
            if add {
                let known = folders.get(path).map_err(db)?.is_some();
                if !known {
                    let record = FolderRecord {
                        path: path.to_string(),
                        added_at_ms: now_ms(),
                    };
                    folders.insert(path, encode(&record).as_slice()).map_err(db)?;
                }
                !known
            } else {
                folders.remove(path).map_err(db)?.is_some()
            }
        };
        txn.commit().map_err(db)?;
        Ok(changed)
    }

    /// Replaces a book's content in one transaction. Passages whose vector
    /// is empty are stored without one: the book is then `embedding`
    /// (searchable by keyword) until [`put_vectors`](Self::put_vectors)
    /// completes it; with every vector present it is `ready`.
    fn put_content(&self, id: u64, content: BookContent) -> Result<VectorChange, StoreError> {
        // One vector slot per passage; a mismatch is a bug upstream, and
        // storing it would pair vectors with the wrong passages.
        if content.vectors.len() != content.chunks.len() {
            return Err(StoreError::Inconsistent(format!(
                "book {id}: {} passages but {} vectors",
                content.chunks.len(),
                content.vectors.len(),
            )));
        }
        let complete = content.vectors.iter().all(|v| !v.is_empty());
        let txn = self.db.begin_write().map_err(db)?;
        check_model(&txn.open_table(META).map_err(db)?, &content.model)?;
        let removed;
        let generation;
        let mut added = Vec::with_capacity(content.chunks.len());
        {
            let mut books = txn.open_table(BOOKS).map_err(db)?;
            let mut book = get_book(&books, id)?;
            removed = delete_content(&txn, id)?;
            let mut chunks = txn.open_table(CHUNKS).map_err(db)?;
            let mut vectors = txn.open_table(write_slots(&txn)?.0).map_err(db)?;
            let mut cache = txn.open_table(EMBED_CACHE).map_err(db)?;
            let mut kinds = txn.open_table(PASSAGE_KINDS).map_err(db)?;
            for (chunk, vector) in content.chunks.iter().zip(content.vectors) {
                let key = chunk_id(id, chunk.ordinal);
                chunks.insert(key, encode(chunk).as_slice()).map_err(db)?;
                let kind = crate::text::clean::classify(&chunk.text);
                if kind != PassageKind::Body {
                    kinds.insert(key, kind.code()).map_err(db)?;
                }
                if !vector.is_empty() {
                    added.push(put_vector(&mut vectors, &mut cache, key, &content.model, &chunk.text, vector)?);
                }
            }
            txn.open_table(TEXTS).map_err(db)?.insert(id, content.text.as_str()).map_err(db)?;
            let mut sections = content.sections;
            for chunk in &content.chunks {
                // Sections are sorted by start; a chunk counts for the last one starting at or before it.
                let idx = sections.partition_point(|s| s.start <= chunk.start);
                if idx > 0 {
                    sections[idx - 1].chunks += 1;
                }
            }
            book.title = content.title;
            book.author = content.author;
            book.language = content.language;
            book.format = content.format;
            book.error.clear();
            // The file changed again while this content was being made: it
            // is stored (searchable meanwhile), but the book stays queued
            // under the newer hash so that its job, not this one, finishes
            // it, even after a restart.
            let superseded = book.status == BookStatus::Queued && book.content_hash != content.content_hash;
            if !superseded {
                book.content_hash = content.content_hash;
                book.size = content.size;
                if complete {
                    book.status = BookStatus::Ready;
                    book.attempts = 0;
                } else {
                    // Attempts are kept: a job that keeps dying before it
                    // makes progress is still poison.
                    book.status = BookStatus::Embedding;
                }
            }
            book.chunk_count = content.chunks.len() as u64;
            book.text_chars = content.text.chars().count() as u64;
            book.sections = sections;
            book.updated_at_ms = now_ms();
            put_book(&mut books, &book)?;
            generation = bump_generation(&mut txn.open_table(META).map_err(db)?)?;
        }
        txn.commit().map_err(db)?;
        Ok(VectorChange {
            removed,
            added,
            generation,
        })
    }

    /// Adds vectors (by passage ordinal) to a book that is `embedding` the
    /// content with hash `content_hash`; with `last`, checks that every
    /// passage now has one and makes the book `ready`. Returns `None`, and
    /// changes nothing, when the book has moved on (its file changed and a
    /// newer job owns it, or it was failed): these vectors belong to
    /// passages that are no longer stored.
    fn put_vectors(&self, id: u64, batch: VectorBatch) -> Result<Option<VectorChange>, StoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        check_model(&txn.open_table(META).map_err(db)?, &batch.model)?;
        let generation;
        let mut added = Vec::with_capacity(batch.vectors.len());
        {
            let mut books = txn.open_table(BOOKS).map_err(db)?;
            let mut book = get_book(&books, id)?;
            if book.status != BookStatus::Embedding || book.content_hash != batch.content_hash {
                return Ok(None);
            }
            let chunks = txn.open_table(CHUNKS).map_err(db)?;
            let mut vectors = txn.open_table(write_slots(&txn)?.0).map_err(db)?;
            let mut cache = txn.open_table(EMBED_CACHE).map_err(db)?;
            for (ordinal, vector) in batch.vectors {
                let key = chunk_id(id, ordinal);
                let chunk: ChunkRecord = match chunks.get(key).map_err(db)? {
                    Some(v) => postcard::from_bytes(v.value())?,
                    None => {
                        return Err(StoreError::Inconsistent(format!(
                            "book {id}: no passage {ordinal} to add a vector to"
                        )))
                    }
                };
                if vector.is_empty() {
                    return Err(StoreError::Inconsistent(format!("book {id}: empty vector for passage {ordinal}")));
                }
                added.push(put_vector(&mut vectors, &mut cache, key, &batch.model, &chunk.text, vector)?);
            }
            // Progress: a job that commits vectors is not poison, however
            // often the daemon is stopped while it embeds a long book.
            book.attempts = 0;
            if batch.last {
                let range = chunk_id(id, 0)..chunk_id(id + 1, 0);
                let mut with_vectors = 0u64;
                for row in vectors.range(range).map_err(db)? {
                    row.map_err(db)?;
                    with_vectors += 1;
                }
                if with_vectors != book.chunk_count {
                    return Err(StoreError::Inconsistent(format!(
                        "book {id}: {} passages but {with_vectors} vectors at the end of embedding",
                        book.chunk_count
                    )));
                }
                book.status = BookStatus::Ready;
            }
            book.updated_at_ms = now_ms();
            put_book(&mut books, &book)?;
            generation = bump_generation(&mut txn.open_table(META).map_err(db)?)?;
        }
        txn.commit().map_err(db)?;
        Ok(Some(VectorChange {
            removed: Vec::new(),
            added,
            generation,
        }))
    }

    /// Starts re-embedding the library with `target` into the inactive
    /// slot (emptied first), unless that swap is already in progress.
    /// Returns whether it started anew.
    fn begin_swap(&self, target: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut meta = txn.open_table(META).map_err(db)?;
            if swap_record(&meta)?.is_some_and(|s| s.target == target) {
                return Ok(false);
            }
            let record = SwapRecord {
                target: target.to_string(),
                started_at_ms: now_ms(),
            };
            meta.insert("swap", encode(&record).as_slice()).map_err(db)?;
            drop(meta);
            let next = write_slots(&txn)?.1;
            txn.open_table(next).map_err(db)?.retain(|_, _| false).map_err(db)?;
        }
        txn.commit().map_err(db)?;
        Ok(true)
    }

    /// Abandons the swap in progress (its vectors are dropped). Returns
    /// whether there was one.
    fn cancel_swap(&self) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut meta = txn.open_table(META).map_err(db)?;
            if meta.remove("swap").map_err(db)?.is_none() {
                return Ok(false);
            }
            drop(meta);
            clear_inactive(&txn)?;
        }
        txn.commit().map_err(db)?;
        Ok(true)
    }

    /// Stores vectors of the swap's model for passages whose text is still
    /// the one embedded (a passage replaced meanwhile is skipped; the swap
    /// finds it again). Returns false, writing nothing, when `target` is not
    /// the swap in progress (it was cancelled).
    fn put_swap_vectors(&self, target: &str, vectors: Vec<(u64, String, Vec<f32>)>) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            if swap_record(&txn.open_table(META).map_err(db)?)?.is_none_or(|s| s.target != target) {
                return Ok(false);
            }
            let next_def = write_slots(&txn)?.1;
            let chunks = txn.open_table(CHUNKS).map_err(db)?;
            let mut next = txn.open_table(next_def).map_err(db)?;
            let mut cache = txn.open_table(EMBED_CACHE).map_err(db)?;
            for (id, text, vector) in vectors {
                let Some(stored) = chunks.get(id).map_err(db)? else { continue };
                let chunk: ChunkRecord = postcard::from_bytes(stored.value())?;
                if chunk.text != text || vector.is_empty() {
                    continue;
                }
                // The cache entry under the new model is only trusted once
                // the slot is active (lookups read the active slot).
                put_vector(&mut next, &mut cache, id, target, &text, vector)?;
            }
        }
        txn.commit().map_err(db)?;
        Ok(true)
    }

    /// Makes the swap's vectors the searchable ones if every passage has
    /// one: flips the slot and the model id in one transaction. Returns
    /// false, changing nothing, while some passage still lacks one.
    fn finish_swap(&self, target: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut meta = txn.open_table(META).map_err(db)?;
            if swap_record(&meta)?.is_none_or(|s| s.target != target) {
                return Ok(false);
            }
            let slot = slot_of(&meta)?;
            // The swap slot only holds vectors of stored passages (removals
            // clear both slots), so equal counts mean every passage has one.
            let next = txn.open_table(SLOTS[1 - slot]).map_err(db)?.len().map_err(db)?;
            let chunks = txn.open_table(CHUNKS).map_err(db)?.len().map_err(db)?;
            if next != chunks {
                return Ok(false);
            }
            meta.insert("vector_slot", ((1 - slot) as u64).to_le_bytes().as_slice())
                .map_err(db)?;
            meta.insert("model_id", target.as_bytes()).map_err(db)?;
            meta.remove("swap").map_err(db)?;
        }
        txn.commit().map_err(db)?;
        Ok(true)
    }

    /// Empties the inactive slot after a finished swap (the old model's
    /// vectors), unless a new swap has started filling it.
    fn clear_old_vectors(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            if swap_record(&txn.open_table(META).map_err(db)?)?.is_some() {
                return Ok(());
            }
            clear_inactive(&txn)?;
        }
        txn.commit().map_err(db)?;
        Ok(())
    }

    fn remove_book(&self, id: u64) -> Result<VectorChange, StoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        let removed;
        let generation;
        {
            let mut books = txn.open_table(BOOKS).map_err(db)?;
            let book = get_book(&books, id)?;
            removed = delete_content(&txn, id)?;
            books.remove(id).map_err(db)?;
            txn.open_table(PATHS).map_err(db)?.remove(book.path.as_str()).map_err(db)?;
            generation = bump_generation(&mut txn.open_table(META).map_err(db)?)?;
        }
        txn.commit().map_err(db)?;
        Ok(VectorChange {
            removed,
            added: Vec::new(),
            generation,
        })
    }
}

// ------------------------------------------------------------------ actor

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
        reply: RpcReplyPort<Result<u32, StoreError>>,
    },
    MoveBook {
        id: u64,
        to: String,
        size: u64,
        mtime_ns: i64,
        reply: RpcReplyPort<Result<String, StoreError>>,
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
    type Arguments = Arc<Database>;

    async fn pre_start(&self, _myself: ActorRef<StoreMsg>, db: Arc<Database>) -> Result<Writer, ActorProcessingErr> {
        Ok(Writer { db })
    }

    async fn handle(&self, _myself: ActorRef<StoreMsg>, msg: StoreMsg, writer: &mut Writer) -> Result<(), ActorProcessingErr> {
        // redb commits fsync: run them on the blocking pool. Awaiting here
        // keeps writes serialized, which is what "only writer" means.
        let w = writer.clone();
        match msg {
            StoreMsg::UpsertQueued { path, file, force, reply } => {
                let r = blocking(move || w.upsert_queued(&path, file, force)).await;
                let _ = reply.send(r);
            }
            StoreMsg::BeginAttempt { id, reply } => {
                let r = blocking(move || w.begin_attempt(id)).await;
                let _ = reply.send(r);
            }
            StoreMsg::MoveBook {
                id,
                to,
                size,
                mtime_ns,
                reply,
            } => {
                let r = blocking(move || w.move_book(id, &to, size, mtime_ns)).await;
                let _ = reply.send(r);
            }
            StoreMsg::SetFolder { path, add, reply } => {
                let r = blocking(move || w.set_folder(&path, add)).await;
                let _ = reply.send(r);
            }
            StoreMsg::SetStatus { id, status, error, reply } => {
                let r = blocking(move || w.set_status(id, status, &error)).await;
                let _ = reply.send(r);
            }
            StoreMsg::PutContent { id, content, reply } => {
                let r = blocking(move || w.put_content(id, *content)).await;
                let _ = reply.send(r);
            }
            StoreMsg::PutVectors { id, batch, reply } => {
                let r = blocking(move || w.put_vectors(id, batch)).await;
                let _ = reply.send(r);
            }
            StoreMsg::RemoveBook { id, reply } => {
                let r = blocking(move || w.remove_book(id)).await;
                let _ = reply.send(r);
            }
            StoreMsg::BeginSwap { target, reply } => {
                let r = blocking(move || w.begin_swap(&target)).await;
                let _ = reply.send(r);
            }
            StoreMsg::CancelSwap { reply } => {
                let r = blocking(move || w.cancel_swap()).await;
                let _ = reply.send(r);
            }
            StoreMsg::PutSwapVectors { target, vectors, reply } => {
                let r = blocking(move || w.put_swap_vectors(&target, vectors)).await;
                let _ = reply.send(r);
            }
            StoreMsg::FinishSwap { target, reply } => {
                let r = blocking(move || w.finish_swap(&target)).await;
                let _ = reply.send(r);
            }
            StoreMsg::ClearOldVectors { reply } => {
                let r = blocking(move || w.clear_old_vectors()).await;
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

    /// Marks a job started (status `indexing`, attempts + 1); returns the attempts.
    pub async fn begin_attempt(&self, id: u64) -> Result<u32, StoreError> {
        self.call(|reply| StoreMsg::BeginAttempt { id, reply }).await
    }

    /// Moves a book to a new path; returns the old path.
    pub async fn move_book(&self, id: u64, to: String, size: u64, mtime_ns: i64) -> Result<String, StoreError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn content(n: u32) -> BookContent {
        BookContent {
            title: "T".into(),
            author: "A".into(),
            language: "en".into(),
            format: "txt".into(),
            text: "one two".into(),
            sections: vec![SectionRecord {
                heading: "H".into(),
                start: 0,
                chunks: 0,
            }],
            chunks: (0..n)
                .map(|i| ChunkRecord {
                    book_id: 1,
                    ordinal: i,
                    text: "one".into(),
                    start: 0,
                    end: 3,
                    heading: "H".into(),
                    page: None,
                })
                .collect(),
            vectors: (0..n).map(|i| vec![i as f32, 1.0]).collect(),
            model: "m".into(),
            content_hash: "h1".into(),
            size: 7,
        }
    }

    fn fs(hash: &str, size: u64) -> FileState {
        FileState {
            hash: hash.into(),
            size,
            mtime_ns: 1,
        }
    }

    #[test]
    fn book_lifecycle_keeps_store_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let reader = StoreReader::open(&dir.path().join("db.redb"), "m").unwrap();
        let w = Writer { db: reader.db.clone() };
        assert_eq!(w.upsert_queued("/b.txt", fs("h1", 7), false).unwrap(), Upsert::Queued(1));
        assert_eq!(w.upsert_queued("/b.txt", fs("h1", 7), false).unwrap(), Upsert::InProgress(1));
        let change = w.put_content(1, content(3)).unwrap();
        assert_eq!(change.added.len(), 3);
        assert_eq!(reader.generation().unwrap(), change.generation);
        let book = reader.book(1).unwrap().unwrap();
        assert_eq!((book.status, book.chunk_count, book.sections[0].chunks), (BookStatus::Ready, 3, 3));
        assert_eq!(w.upsert_queued("/b.txt", fs("h1", 7), false).unwrap(), Upsert::Unchanged(1));
        assert_eq!(w.upsert_queued("/b.txt", fs("h2", 8), false).unwrap(), Upsert::Queued(1));
        // Replacing content removes the old passages first.
        let change = w.put_content(1, content(2)).unwrap();
        assert_eq!(change.removed, vec![chunk_id(1, 0), chunk_id(1, 1), chunk_id(1, 2)]);
        assert_eq!(reader.counts().unwrap(), (1, 2, 2));
        let change = w.remove_book(1).unwrap();
        assert_eq!(change.removed.len(), 2);
        assert_eq!(reader.counts().unwrap(), (0, 0, 0));
        assert!(reader.book_by_path("/b.txt").unwrap().is_none());
        assert!(matches!(
            w.set_status(1, BookStatus::Failed, String::new().as_str()),
            Err(StoreError::NoSuchBook(1))
        ));
    }

    #[test]
    fn staged_content_is_embedding_until_its_last_vectors() {
        let dir = tempfile::tempdir().unwrap();
        let reader = StoreReader::open(&dir.path().join("db.redb"), "m").unwrap();
        let w = Writer { db: reader.db.clone() };
        w.upsert_queued("/b.txt", fs("h1", 7), false).unwrap();
        let mut staged = content(3);
        // Passage 1 came from the embed cache; 0 and 2 are still to embed.
        staged.vectors = vec![Vec::new(), vec![0.0, 1.0], Vec::new()];
        let change = w.put_content(1, staged).unwrap();
        assert_eq!(change.added.len(), 1);
        let book = reader.book(1).unwrap().unwrap();
        assert_eq!(book.status, BookStatus::Embedding);
        assert_eq!(reader.counts().unwrap(), (1, 3, 1));
        // The same file queued again while embedding is the same job.
        assert_eq!(w.upsert_queued("/b.txt", fs("h1", 7), false).unwrap(), Upsert::InProgress(1));
        let batch = |vectors: Vec<(u32, Vec<f32>)>, last: bool| VectorBatch {
            content_hash: "h1".into(),
            model: "m".into(),
            vectors,
            last,
        };
        // A last batch that leaves a passage without a vector is refused whole.
        assert!(matches!(
            w.put_vectors(1, batch(vec![(0, vec![1.0, 0.0])], true)),
            Err(StoreError::Inconsistent(_))
        ));
        assert_eq!(reader.counts().unwrap(), (1, 3, 1));
        let change = w.put_vectors(1, batch(vec![(0, vec![1.0, 0.0])], false)).unwrap().unwrap();
        assert_eq!(change.added, vec![(chunk_id(1, 0), vec![1.0, 0.0])]);
        assert_eq!(reader.generation().unwrap(), change.generation);
        assert_eq!(reader.book(1).unwrap().unwrap().status, BookStatus::Embedding);
        w.put_vectors(1, batch(vec![(2, vec![0.6, 0.8])], true)).unwrap().unwrap();
        let book = reader.book(1).unwrap().unwrap();
        assert_eq!((book.status, book.attempts), (BookStatus::Ready, 0));
        assert_eq!(reader.counts().unwrap(), (1, 3, 3));
        // Vectors for content that was replaced meanwhile change nothing.
        w.upsert_queued("/b.txt", fs("h2", 8), false).unwrap();
        let generation = reader.generation().unwrap();
        assert!(w.put_vectors(1, batch(vec![(0, vec![1.0, 0.0])], true)).unwrap().is_none());
        assert_eq!(reader.generation().unwrap(), generation);
    }

    #[test]
    fn moves_attempts_and_folders() {
        let dir = tempfile::tempdir().unwrap();
        let reader = StoreReader::open(&dir.path().join("db.redb"), "m").unwrap();
        let w = Writer { db: reader.db.clone() };
        assert_eq!(w.upsert_queued("/a/b.txt", fs("h1", 7), false).unwrap(), Upsert::Queued(1));
        assert_eq!(w.upsert_queued("/a/c.txt", fs("h9", 7), false).unwrap(), Upsert::Queued(2));
        assert_eq!((w.begin_attempt(1).unwrap(), w.begin_attempt(1).unwrap()), (1, 2));
        w.put_content(1, content(2)).unwrap();
        assert_eq!(reader.book(1).unwrap().unwrap().attempts, 0);
        // A move keeps the id and the passages; the old path is free again.
        assert_eq!(w.move_book(1, "/x/b2.txt", 7, 5).unwrap(), "/a/b.txt");
        assert!(reader.book_by_path("/a/b.txt").unwrap().is_none());
        let moved = reader.book_by_path("/x/b2.txt").unwrap().unwrap();
        assert_eq!((moved.id, moved.chunk_count, moved.mtime_ns), (1, 2, 5));
        assert!(matches!(w.move_book(1, "/a/c.txt", 7, 5), Err(StoreError::PathTaken(_))));
        // A touched but unchanged file only records its new mtime.
        assert_eq!(
            w.upsert_queued(
                "/x/b2.txt",
                FileState {
                    hash: "h1".into(),
                    size: 7,
                    mtime_ns: 9
                },
                false
            )
            .unwrap(),
            Upsert::Unchanged(1)
        );
        assert_eq!(reader.book(1).unwrap().unwrap().mtime_ns, 9);
        assert!(w.set_folder("/x", true).unwrap());
        assert!(!w.set_folder("/x", true).unwrap());
        assert_eq!(reader.folders().unwrap().len(), 1);
        assert!(w.set_folder("/x", false).unwrap());
        assert!(reader.folders().unwrap().is_empty());
    }

    #[test]
    fn embed_cache_finds_vectors_by_text_and_model_only_while_stored() {
        let dir = tempfile::tempdir().unwrap();
        let reader = StoreReader::open(&dir.path().join("db.redb"), "m").unwrap();
        let w = Writer { db: reader.db.clone() };
        w.upsert_queued("/a.txt", fs("h1", 7), false).unwrap();
        w.upsert_queued("/b.txt", fs("h2", 7), false).unwrap();
        let mut a = content(2);
        a.chunks[0].text = "alpha".into();
        a.chunks[1].text = "beta".into();
        w.put_content(1, a).unwrap();
        let found = reader.cached_vectors("m", &["beta", "gamma", "alpha"]).unwrap();
        assert_eq!(found, vec![Some(vec![1.0, 1.0]), None, Some(vec![0.0, 1.0])]);
        assert_eq!(reader.cached_vectors("other-model", &["alpha"]).unwrap(), vec![None]);
        // Book 2 shares "beta": after book 1 goes, its own copy answers.
        let mut b = content(1);
        b.chunks[0].book_id = 2;
        b.chunks[0].text = "beta".into();
        b.vectors = vec![vec![5.0, 5.0]];
        w.put_content(2, b).unwrap();
        w.remove_book(1).unwrap();
        let found = reader.cached_vectors("m", &["alpha", "beta"]).unwrap();
        assert_eq!(found, vec![None, Some(vec![5.0, 5.0])]);
        // A reopened database keeps the cache.
        drop((w, reader));
        let reader = StoreReader::open(&dir.path().join("db.redb"), "m").unwrap();
        assert_eq!(reader.cached_vectors("m", &["beta"]).unwrap(), vec![Some(vec![5.0, 5.0])]);
    }

    #[test]
    fn a_library_embedded_by_one_model_refuses_another() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        // Empty: the model may change.
        drop(StoreReader::open(&path, "m").unwrap());
        let reader = StoreReader::open(&path, "other").unwrap();
        drop(reader);
        let reader = StoreReader::open(&path, "m").unwrap();
        let w = Writer { db: reader.db.clone() };
        w.upsert_queued("/b.txt", fs("h1", 7), false).unwrap();
        w.put_content(1, content(1)).unwrap();
        drop((w, reader));
        let err = StoreReader::open(&path, "other").err().expect("refused");
        assert!(matches!(err, StoreError::Model { .. }), "{err}");
        assert!(err.to_string().contains("--embedding-model m"), "{err}");
        // Nothing changed: the right model still opens it.
        assert_eq!(StoreReader::open(&path, "m").unwrap().counts().unwrap(), (1, 1, 1));
    }

    #[test]
    fn a_model_swap_fills_the_other_slot_then_flips_or_cancels() {
        let dir = tempfile::tempdir().unwrap();
        let reader = StoreReader::open(&dir.path().join("db.redb"), "m").unwrap();
        let w = Writer { db: reader.db.clone() };
        w.upsert_queued("/b.txt", fs("h1", 7), false).unwrap();
        let mut c = content(2);
        c.chunks[1].text = "two".into();
        w.put_content(1, c).unwrap();
        assert!(w.begin_swap("n").unwrap());
        assert!(!w.begin_swap("n").unwrap(), "the same swap goes on");
        assert_eq!(reader.swap().unwrap().unwrap().target, "n");
        assert_eq!(reader.swap_missing(None, 10).unwrap().len(), 2);
        // A vector for text that is no longer stored is skipped.
        assert!(w
            .put_swap_vectors(
                "n",
                vec![
                    (chunk_id(1, 0), "one".into(), vec![0.5]),
                    (chunk_id(1, 1), "stale".into(), vec![0.5])
                ]
            )
            .unwrap());
        assert_eq!(reader.swap_missing(None, 10).unwrap(), vec![(chunk_id(1, 1), "two".to_string())]);
        assert_eq!(reader.swap_missing(Some(chunk_id(1, 1)), 10).unwrap(), vec![]);
        assert!(!w.finish_swap("n").unwrap(), "one passage still lacks a vector");
        assert!(!w.put_swap_vectors("other", vec![]).unwrap(), "not the swap in progress");
        // Searches still see the old model's vectors, and ingest of the old
        // model goes on.
        assert_eq!(reader.vectors(&[chunk_id(1, 0)]).unwrap()[0].1.model, "m");
        w.put_swap_vectors("n", vec![(chunk_id(1, 1), "two".into(), vec![0.25])]).unwrap();
        assert_eq!(reader.swap_progress().unwrap(), (2, 2));
        assert!(w.finish_swap("n").unwrap());
        assert_eq!(reader.model_id().unwrap(), "n");
        assert_eq!(reader.swap().unwrap(), None);
        assert_eq!(reader.vectors(&[chunk_id(1, 1)]).unwrap()[0].1.vector, vec![0.25]);
        assert_eq!(reader.cached_vectors("n", &["two"]).unwrap(), vec![Some(vec![0.25])]);
        // The old model's vectors are refused now.
        assert!(matches!(w.put_content(1, content(1)), Err(StoreError::ModelChanged { .. })));
        w.clear_old_vectors().unwrap();
        assert_eq!(reader.swap_progress().unwrap(), (0, 2));
        assert_eq!(reader.cached_vectors("m", &["one"]).unwrap(), vec![None]);
        // Cancelling drops what a swap had made.
        assert!(w.begin_swap("m").unwrap());
        w.put_swap_vectors("m", vec![(chunk_id(1, 0), "one".into(), vec![1.0])]).unwrap();
        assert!(w.cancel_swap().unwrap());
        assert!(!w.cancel_swap().unwrap());
        assert_eq!(reader.swap_progress().unwrap(), (0, 2));
        assert_eq!((reader.model_id().unwrap().as_str(), reader.counts().unwrap()), ("n", (1, 2, 2)));
        // Reopened with the new model, the library is consistent.
        drop((w, reader));
        assert_eq!(
            StoreReader::open(&dir.path().join("db.redb"), "n").unwrap().counts().unwrap(),
            (1, 2, 2)
        );
    }

    #[test]
    fn chunk_ids_keep_books_apart() {
        assert_eq!(book_of_chunk(chunk_id(7, 12)), 7);
        assert!(chunk_id(7, (1 << ORDINAL_BITS) - 1) < chunk_id(8, 0));
    }
}

/// Writes a synthetic library straight into a new database: `books` books of
/// `chunks_per_book` passages each, with random unit vectors. Passage texts
/// cycle through `prose` (real text gives the keyword index realistic
/// posting lists), or are one short line each when it is empty. For
/// benchmarks that need index size without hours of embedding; never used by
/// the daemon.
pub fn seed_synthetic_library(
    path: &std::path::Path,
    model: &str,
    books: u64,
    chunks_per_book: u32,
    dimensions: usize,
    seed: u64,
    prose: &[String],
) -> Result<(), StoreError> {
    let reader = StoreReader::open(path, model)?;
    let writer = Writer { db: reader.db.clone() };
    let mut state = seed | 1;
    let mut next = move || {
        // xorshift64*: deterministic and good enough for random directions.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    for b in 0..books {
        let path = format!("/synthetic/book-{b}.txt");
        let Upsert::Queued(id) = writer.upsert_queued(
            &path,
            FileState {
                hash: format!("{b:064x}"),
                size: 0,
                mtime_ns: 0,
            },
            true,
        )?
        else {
            continue;
        };
        let mut chunks = Vec::with_capacity(chunks_per_book as usize);
        let mut vectors = Vec::with_capacity(chunks_per_book as usize);
        let mut text = String::new();
        for ordinal in 0..chunks_per_book {
            let passage = match prose.len() {
                0 => format!("Synthetic passage {ordinal} of book {b}."),
                n => prose[(b as usize * chunks_per_book as usize + ordinal as usize) % n].clone(),
            };
            let start = text.chars().count() as u64;
            text.push_str(&passage);
            chunks.push(ChunkRecord {
                book_id: id,
                ordinal,
                text: passage.clone(),
                start,
                end: start + passage.chars().count() as u64,
                heading: String::new(),
                page: None,
            });
            text.push_str("\n\n");
            let mut v: Vec<f32> = (0..dimensions).map(|_| next()).collect();
            crate::embed::normalize(&mut v);
            vectors.push(v);
        }
        let content = BookContent {
            title: format!("Synthetic book {b}"),
            author: String::new(),
            language: String::new(),
            format: "txt".into(),
            text,
            sections: Vec::new(),
            chunks,
            vectors,
            model: model.to_string(),
            content_hash: format!("{b:064x}"),
            size: 0,
        };
        writer.put_content(id, content)?;
    }
    Ok(())
}

/// Upgrades of older databases, each one transaction with the open.
mod migrate {
    use redb::{ReadableTable, WriteTransaction};
    use serde::{Deserialize, Serialize};

    use super::{db, encode, BookRecord, BookStatus, ChunkRecord, SectionRecord, StoreError, BOOKS, CHUNKS};
    use crate::text::PageRef;

    /// [`BookRecord`] as schema 1 stored it (no language).
    #[derive(Serialize, Deserialize)]
    pub(super) struct BookV1 {
        pub id: u64,
        pub path: String,
        pub content_hash: String,
        pub size: u64,
        pub title: String,
        pub author: String,
        pub format: String,
        pub status: BookStatus,
        pub error: String,
        pub added_at_ms: i64,
        pub updated_at_ms: i64,
        pub chunk_count: u64,
        pub text_chars: u64,
        pub sections: Vec<SectionRecord>,
    }

    /// [`ChunkRecord`] as schema 1 stored it (a bare page number).
    #[derive(Serialize, Deserialize)]
    pub(super) struct ChunkV1 {
        pub book_id: u64,
        pub ordinal: u32,
        pub text: String,
        pub start: u64,
        pub end: u64,
        pub heading: String,
        pub page: Option<u32>,
    }

    fn current(b: BookV1, language: String) -> BookRecord {
        BookRecord {
            id: b.id,
            path: b.path,
            content_hash: b.content_hash,
            size: b.size,
            title: b.title,
            author: b.author,
            format: b.format,
            status: b.status,
            error: b.error,
            added_at_ms: b.added_at_ms,
            updated_at_ms: b.updated_at_ms,
            chunk_count: b.chunk_count,
            text_chars: b.text_chars,
            sections: b.sections,
            language,
            // Unknown: the next scan hashes the file once to fill it in.
            mtime_ns: 0,
            attempts: 0,
        }
    }

    /// Schema 1 or 2 → current: books gain what their schema lacked (an
    /// unknown language, mtime and attempts), schema 1 pages gain an absent
    /// label. Nothing is re-parsed or re-embedded.
    pub(super) fn upgrade(txn: &WriteTransaction, from: u64) -> Result<(), StoreError> {
        let mut books = txn.open_table(BOOKS).map_err(db)?;
        let rows: Vec<(u64, Vec<u8>)> = books
            .iter()
            .map_err(db)?
            .map(|e| {
                let (k, v) = e.map_err(db)?;
                Ok((k.value(), v.value().to_vec()))
            })
            .collect::<Result<_, StoreError>>()?;
        for (id, bytes) in rows {
            let record = if from == 1 {
                current(postcard::from_bytes::<BookV1>(&bytes)?, String::new())
            } else {
                // Schema 2 = schema 1's fields, then the language.
                let (v1, rest) = postcard::take_from_bytes::<BookV1>(&bytes)?;
                let (language, _) = postcard::take_from_bytes::<String>(rest)?;
                current(v1, language)
            };
            books.insert(id, encode(&record).as_slice()).map_err(db)?;
        }
        if from == 1 {
            let mut chunks = txn.open_table(CHUNKS).map_err(db)?;
            let old: Vec<(u64, ChunkV1)> = chunks
                .iter()
                .map_err(db)?
                .map(|e| {
                    let (k, v) = e.map_err(db)?;
                    Ok((k.value(), postcard::from_bytes(v.value())?))
                })
                .collect::<Result<_, StoreError>>()?;
            for (id, c) in old {
                let record = ChunkRecord {
                    book_id: c.book_id,
                    ordinal: c.ordinal,
                    text: c.text,
                    start: c.start,
                    end: c.end,
                    heading: c.heading,
                    page: c.page.map(|number| PageRef { number, label: None }),
                };
                chunks.insert(id, encode(&record).as_slice()).map_err(db)?;
            }
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::super::{chunk_id, StoreReader, META};
        use super::*;

        #[test]
        fn schema_1_databases_are_upgraded_in_place() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("db.redb");
            {
                let db = redb::Database::create(&path).unwrap();
                let txn = db.begin_write().unwrap();
                {
                    let book = BookV1 {
                        id: 1,
                        path: "/a.pdf".into(),
                        content_hash: "h".into(),
                        size: 3,
                        title: "A".into(),
                        author: "B".into(),
                        format: "txt".into(),
                        status: BookStatus::Ready,
                        error: String::new(),
                        added_at_ms: 1,
                        updated_at_ms: 2,
                        chunk_count: 1,
                        text_chars: 5,
                        sections: Vec::new(),
                    };
                    txn.open_table(BOOKS).unwrap().insert(1, encode(&book).as_slice()).unwrap();
                    let chunk = ChunkV1 {
                        book_id: 1,
                        ordinal: 0,
                        text: "hello".into(),
                        start: 0,
                        end: 5,
                        heading: String::new(),
                        page: Some(7),
                    };
                    txn.open_table(CHUNKS)
                        .unwrap()
                        .insert(chunk_id(1, 0), encode(&chunk).as_slice())
                        .unwrap();
                    txn.open_table(META)
                        .unwrap()
                        .insert("schema_version", 1u64.to_le_bytes().as_slice())
                        .unwrap();
                }
                txn.commit().unwrap();
            }
            let reader = StoreReader::open(&path, "m").unwrap();
            let book = reader.book(1).unwrap().unwrap();
            assert_eq!((book.title.as_str(), book.language.as_str(), book.chunk_count), ("A", "", 1));
            let chunk = reader.chunks(&[chunk_id(1, 0)]).unwrap().remove(0);
            assert_eq!(chunk.page, Some(PageRef { number: 7, label: None }));
            // Opening again finds schema 2 and changes nothing.
            drop(reader);
            assert_eq!(StoreReader::open(&path, "m").unwrap().book(1).unwrap().unwrap(), book);
        }

        #[test]
        fn schema_2_books_keep_their_language() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("db.redb");
            {
                let db = redb::Database::create(&path).unwrap();
                let txn = db.begin_write().unwrap();
                {
                    // Schema 2 stored schema 1's fields, then the language.
                    let mut v2 = encode(&BookV1 {
                        id: 2,
                        path: "/b.epub".into(),
                        content_hash: "h2".into(),
                        size: 4,
                        title: "B".into(),
                        author: String::new(),
                        format: "epub".into(),
                        status: BookStatus::Ready,
                        error: String::new(),
                        added_at_ms: 1,
                        updated_at_ms: 2,
                        chunk_count: 0,
                        text_chars: 0,
                        sections: Vec::new(),
                    });
                    v2.extend(encode(&"de".to_string()));
                    txn.open_table(BOOKS).unwrap().insert(2, v2.as_slice()).unwrap();
                    txn.open_table(META)
                        .unwrap()
                        .insert("schema_version", 2u64.to_le_bytes().as_slice())
                        .unwrap();
                }
                txn.commit().unwrap();
            }
            let book = StoreReader::open(&path, "m").unwrap().book(2).unwrap().unwrap();
            assert_eq!(
                (book.title.as_str(), book.language.as_str(), book.mtime_ns, book.attempts),
                ("B", "de", 0, 0)
            );
        }
    }
}
