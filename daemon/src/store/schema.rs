//! The database layout: the typed redb tables, the records stored in them
//! (postcard-encoded), and the key encodings (chunk ids, embed cache keys,
//! which vector table is the active slot).
//!
//! Records are stored by field order and enum variant index, so a change to
//! a record type here is a schema change (see `migrate.rs`).

use redb::{MultimapTableDefinition, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::text::PageRef;

pub(super) const BOOKS: TableDefinition<u64, &[u8]> = TableDefinition::new("books");
/// Path text (`mindory_proto::path_text`) → book id; it mirrors the books
/// table (`books.rs`). Path texts keep their folder's text as a prefix, so a
/// folder's books are one key range.
pub(super) const PATHS: TableDefinition<&str, u64> = TableDefinition::new("paths");
/// Content hash → the ids of the books with those bytes; it mirrors the
/// books table too (schema 5).
pub(super) const HASHES: MultimapTableDefinition<&str, u64> = MultimapTableDefinition::new("hashes");
pub(super) const CHUNKS: TableDefinition<u64, &[u8]> = TableDefinition::new("chunks");
pub(super) const VECTORS: TableDefinition<u64, &[u8]> = TableDefinition::new("vectors");
/// The second vector slot. Vectors live in two tables: META `vector_slot`
/// names the one holding the active model's vectors (0 = `vectors`, the
/// only one before model swaps existed); the other holds the new vectors
/// of a model swap in progress (META `swap` names its model), so the switch
/// is one small transaction that flips the slot.
pub(super) const VECTORS_B: TableDefinition<u64, &[u8]> = TableDefinition::new("vectors_b");
pub(super) const SLOTS: [VectorTable; 2] = [VECTORS, VECTORS_B];
pub(super) type VectorTable = TableDefinition<'static, u64, &'static [u8]>;
pub(super) const TEXTS: TableDefinition<u64, &str> = TableDefinition::new("texts");
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(super) const FOLDERS: TableDefinition<&str, &[u8]> = TableDefinition::new("folders");
pub(super) const EMBED_CACHE: TableDefinition<&[u8], u64> = TableDefinition::new("embed_cache");
/// Passages that are not prose (contents, index, boilerplate, fragments):
/// chunk id → [`PassageKind`](crate::text::clean::PassageKind) code. Body passages have no row.
pub(super) const PASSAGE_KINDS: TableDefinition<u64, u8> = TableDefinition::new("passage_kinds");

/// Bits of a chunk id that hold the passage ordinal within its book.
pub const ORDINAL_BITS: u32 = 24;

/// The largest book id: ids above it would not fit a chunk id (the range
/// of a book's passages ends at `chunk_id(book_id + 1, 0)`, so that must fit
/// too).
pub const MAX_BOOK_ID: u64 = (1 << (64 - ORDINAL_BITS)) - 2;

/// The chunk id of passage `ordinal` of book `book_id`.
pub fn chunk_id(book_id: u64, ordinal: u32) -> u64 {
    (book_id << ORDINAL_BITS) | u64::from(ordinal)
}

/// The book a chunk id belongs to.
pub fn book_of_chunk(chunk_id: u64) -> u64 {
    chunk_id >> ORDINAL_BITS
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

/// A model swap in progress: its new vectors fill the inactive slot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwapRecord {
    /// Id of the model the library is being re-embedded with.
    pub target: String,
    /// Unix ms when it started.
    pub started_at_ms: i64,
}

pub(super) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("in-memory serialization cannot fail")
}

/// The embed cache key of a passage text under a model: 16 bytes of
/// SHA-256 over both (a collision needs 2^64 passages to be likely).
pub(super) fn embed_key(model: &str, text: &str) -> [u8; 16] {
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

pub(super) fn u64_from(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(buf)
}

pub(super) fn swap_record(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<Option<SwapRecord>, StoreError> {
    Ok(match meta.get("swap")? {
        Some(v) => Some(postcard::from_bytes(v.value())?),
        None => None,
    })
}

/// The active slot number in META.
pub(super) fn slot_of(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<usize, StoreError> {
    Ok(meta.get("vector_slot")?.map_or(0, |v| u64_from(v.value()) as usize).min(1))
}

/// (active, next) vector tables as a read transaction sees them.
pub(super) fn read_slots(txn: &redb::ReadTransaction) -> Result<(VectorTable, VectorTable), StoreError> {
    let slot = slot_of(&txn.open_table(META)?)?;
    Ok((SLOTS[slot], SLOTS[1 - slot]))
}

/// (active, next) vector tables as a write transaction sees them.
pub(super) fn write_slots(txn: &redb::WriteTransaction) -> Result<(VectorTable, VectorTable), StoreError> {
    let slot = slot_of(&txn.open_table(META)?)?;
    Ok((SLOTS[slot], SLOTS[1 - slot]))
}
