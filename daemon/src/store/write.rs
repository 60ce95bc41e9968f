//! The write side: [`Writer`], whose methods are the store's write
//! transactions (each one redb transaction, committed before it returns),
//! what they take and return, and the helpers that run inside them. Only
//! the store actor calls them, so writes are serialized.

use std::sync::Arc;

use redb::{ReadableTable, ReadableTableMetadata};

use super::books::BookTables;
use super::schema::{
    chunk_id, embed_key, encode, slot_of, swap_record, u64_from, write_slots, BookRecord, BookStatus, ChunkRecord, FolderRecord,
    SectionRecord, SwapRecord, VectorRecord, CHUNKS, EMBED_CACHE, FOLDERS, META, PASSAGE_KINDS, SLOTS, TEXTS,
};
use super::StoreError;
use crate::text::clean::PassageKind;

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

/// Result of recording a move.
#[derive(Debug, Clone, PartialEq)]
pub struct Moved {
    /// The path the book had.
    pub from: String,
    /// The book had failed and is `queued` again: its job must be run.
    pub requeued: bool,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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
    cache.insert(embed_key(model, text).as_slice(), key)?;
    let record = VectorRecord {
        model: model.to_string(),
        vector,
    };
    vectors.insert(key, encode(&record).as_slice())?;
    Ok((key, record.vector))
}

/// Write operations, all executed by the store actor, one transaction each.
#[derive(Clone)]
pub(crate) struct Writer {
    pub(super) db: Arc<super::db::SharedDb>,
}

/// Refuses vectors that are not the active model's.
fn check_model(meta: &impl ReadableTable<&'static str, &'static [u8]>, given: &str) -> Result<(), StoreError> {
    let active = meta.get("model_id")?.map(|v| String::from_utf8_lossy(v.value()).into_owned());
    match active {
        Some(active) if active != given => Err(StoreError::ModelChanged {
            given: given.to_string(),
            active,
        }),
        _ => Ok(()),
    }
}

/// Empties the inactive vector slot with the embed cache entries that
/// point into it.
fn clear_inactive(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let next_def = write_slots(txn)?.1;
    let chunks = txn.open_table(CHUNKS)?;
    let mut next = txn.open_table(next_def)?;
    let mut cache = txn.open_table(EMBED_CACHE)?;
    for row in next.extract_if(|_, _| true)? {
        let (k, v) = row?;
        let record: VectorRecord = postcard::from_bytes(v.value())?;
        if let Some(chunk) = chunks.get(k.value())? {
            let chunk: ChunkRecord = postcard::from_bytes(chunk.value())?;
            let key = embed_key(&record.model, &chunk.text);
            if cache.get(key.as_slice())?.map(|v| v.value()) == Some(k.value()) {
                cache.remove(key.as_slice())?;
            }
        }
    }
    Ok(())
}

fn bump_generation(meta: &mut redb::Table<&str, &[u8]>) -> Result<u64, StoreError> {
    let next = meta.get("generation")?.map_or(0, |v| u64_from(v.value())) + 1;
    meta.insert("generation", next.to_le_bytes().as_slice())?;
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
    mindory_proto::path_text::decode(path)
        .file_stem()
        .map_or_else(|| mindory_proto::path_text::display(path), |s| s.to_string_lossy().into_owned())
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

/// Deletes a book's chunks and vectors; returns the removed chunk ids.
fn delete_content(txn: &redb::WriteTransaction, book_id: u64) -> Result<Vec<u64>, StoreError> {
    let range = chunk_id(book_id, 0)..chunk_id(book_id + 1, 0);
    let mut removed = Vec::new();
    let mut texts = std::collections::HashMap::new();
    let mut chunks = txn.open_table(CHUNKS)?;
    for row in chunks.extract_from_if(range.clone(), |_, _| true)? {
        let (k, v) = row?;
        let chunk: ChunkRecord = postcard::from_bytes(v.value())?;
        texts.insert(k.value(), chunk.text);
        removed.push(k.value());
    }
    txn.open_table(PASSAGE_KINDS)?.retain_in(range.clone(), |_, _| false)?;
    // Both slots: a swap in progress has new vectors for these passages.
    let mut cache = txn.open_table(EMBED_CACHE)?;
    for slot in SLOTS {
        let mut vectors = txn.open_table(slot)?;
        for row in vectors.extract_from_if(range.clone(), |_, _| true)? {
            let (k, v) = row?;
            let record: VectorRecord = postcard::from_bytes(v.value())?;
            if let Some(text) = texts.get(&k.value()) {
                // Only an entry that points at this passage goes; another
                // passage with the same text may have claimed it since.
                let key = embed_key(&record.model, text);
                if cache.get(key.as_slice())?.map(|v| v.value()) == Some(k.value()) {
                    cache.remove(key.as_slice())?;
                }
            }
        }
    }
    txn.open_table(TEXTS)?.remove(book_id)?;
    Ok(removed)
}

impl Writer {
    pub(super) fn upsert_queued(&self, path: &str, file: FileState, force: bool) -> Result<Upsert, StoreError> {
        let FileState { hash, size, mtime_ns } = file;
        let hash = hash.as_str();
        let txn = self.db.begin_write()?;
        let outcome = {
            let mut books = BookTables::open(&txn)?;
            match books.id_at(path)? {
                Some(id) => {
                    let mut book = books.get(id)?;
                    let same = !force && book.content_hash == hash;
                    if same && book.status == BookStatus::Ready {
                        if book.mtime_ns != mtime_ns {
                            // Touched but not changed: remember the new mtime so
                            // the next scan skips it without hashing.
                            book.mtime_ns = mtime_ns;
                            books.put(&book)?;
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
                        books.put(&book)?;
                        Upsert::Queued(id)
                    }
                }
                None => {
                    let mut meta = txn.open_table(META)?;
                    let id = meta.get("next_book_id")?.map_or(1, |v| u64_from(v.value()));
                    meta.insert("next_book_id", (id + 1).to_le_bytes().as_slice())?;
                    let title = title_from_path(path);
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
                    books.put(&book)?;
                    Upsert::Queued(id)
                }
            }
        };
        txn.commit()?;
        Ok(outcome)
    }

    pub(super) fn set_status(&self, id: u64, status: BookStatus, error: &str) -> Result<(), StoreError> {
        self.update_book(id, |book| {
            book.status = status;
            book.error = error.to_string();
            if status != BookStatus::Indexing {
                book.attempts = 0;
            }
        })
        .map(|_| ())
    }

    /// See [`StoreHandle::note_waiting`](super::StoreHandle::note_waiting).
    pub(super) fn note_waiting(&self, id: u64, content_hash: &str, reason: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut books = BookTables::open(&txn)?;
            let mut book = books.get(id)?;
            if book.status != BookStatus::Embedding || book.content_hash != content_hash {
                return Ok(false);
            }
            book.error = reason.to_string();
            book.attempts = 0;
            book.updated_at_ms = now_ms();
            books.put(&book)?;
        }
        txn.commit()?;
        Ok(true)
    }

    /// Applies `f` to a book in one transaction; returns the updated record.
    fn update_book(&self, id: u64, f: impl FnOnce(&mut BookRecord)) -> Result<BookRecord, StoreError> {
        let txn = self.db.begin_write()?;
        let book = {
            let mut books = BookTables::open(&txn)?;
            let mut book = books.get(id)?;
            f(&mut book);
            book.updated_at_ms = now_ms();
            books.put(&book)?;
            book
        };
        txn.commit()?;
        Ok(book)
    }

    /// Marks a job started: `indexing`, one more attempt, committed before
    /// any work so a crash mid-job is counted. Returns the book as it now
    /// is: its path is where the job must read, since the file may have
    /// moved after the job was queued.
    pub(super) fn begin_attempt(&self, id: u64) -> Result<BookRecord, StoreError> {
        self.update_book(id, |book| {
            book.status = BookStatus::Indexing;
            book.error.clear();
            book.attempts += 1;
        })
    }

    /// Gives a book a new path (the file moved; same content, same id).
    /// A `failed` book is queued again: its failure may have been the move
    /// itself (its job tried the old path after the file left it).
    pub(super) fn move_book(&self, id: u64, to: &str, size: u64, mtime_ns: i64) -> Result<Moved, StoreError> {
        let txn = self.db.begin_write()?;
        let from = {
            let mut books = BookTables::open(&txn)?;
            let mut book = books.get(id)?;
            // `put` refuses a path another book holds.
            let from = std::mem::replace(&mut book.path, to.to_string());
            book.size = size;
            book.mtime_ns = mtime_ns;
            book.updated_at_ms = now_ms();
            if book.format.is_empty() || book.title == title_from_path(&from) {
                book.title = title_from_path(to);
            }
            let requeued = book.status == BookStatus::Failed;
            if requeued {
                book.status = BookStatus::Queued;
                book.error.clear();
                book.attempts = 0;
            }
            books.put(&book)?;
            Moved { from, requeued }
        };
        txn.commit()?;
        Ok(from)
    }

    pub(super) fn set_folder(&self, path: &str, add: bool) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        let changed = {
            let mut folders = txn.open_table(FOLDERS)?;
            if add {
                let known = folders.get(path)?.is_some();
                if !known {
                    let record = FolderRecord {
                        path: path.to_string(),
                        added_at_ms: now_ms(),
                    };
                    folders.insert(path, encode(&record).as_slice())?;
                }
                !known
            } else {
                folders.remove(path)?.is_some()
            }
        };
        txn.commit()?;
        Ok(changed)
    }

    /// Replaces a book's content in one transaction. Passages whose vector
    /// is empty are stored without one: the book is then `embedding`
    /// (searchable by keyword) until [`put_vectors`](Self::put_vectors)
    /// completes it; with every vector present it is `ready`.
    pub(super) fn put_content(&self, id: u64, content: BookContent) -> Result<VectorChange, StoreError> {
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
        let txn = self.db.begin_write()?;
        check_model(&txn.open_table(META)?, &content.model)?;
        let removed;
        let generation;
        let mut added = Vec::with_capacity(content.chunks.len());
        {
            let mut books = BookTables::open(&txn)?;
            let mut book = books.get(id)?;
            removed = delete_content(&txn, id)?;
            let mut chunks = txn.open_table(CHUNKS)?;
            let mut vectors = txn.open_table(write_slots(&txn)?.0)?;
            let mut cache = txn.open_table(EMBED_CACHE)?;
            let mut kinds = txn.open_table(PASSAGE_KINDS)?;
            for (chunk, vector) in content.chunks.iter().zip(content.vectors) {
                let key = chunk_id(id, chunk.ordinal);
                chunks.insert(key, encode(chunk).as_slice())?;
                let kind = crate::text::clean::classify(&chunk.text);
                if kind != PassageKind::Body {
                    kinds.insert(key, kind.code())?;
                }
                if !vector.is_empty() {
                    added.push(put_vector(&mut vectors, &mut cache, key, &content.model, &chunk.text, vector)?);
                }
            }
            txn.open_table(TEXTS)?.insert(id, content.text.as_str())?;
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
            books.put(&book)?;
            generation = bump_generation(&mut txn.open_table(META)?)?;
        }
        txn.commit()?;
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
    pub(super) fn put_vectors(&self, id: u64, batch: VectorBatch) -> Result<Option<VectorChange>, StoreError> {
        let txn = self.db.begin_write()?;
        check_model(&txn.open_table(META)?, &batch.model)?;
        let generation;
        let mut added = Vec::with_capacity(batch.vectors.len());
        {
            let mut books = BookTables::open(&txn)?;
            let mut book = books.get(id)?;
            if book.status != BookStatus::Embedding || book.content_hash != batch.content_hash {
                return Ok(None);
            }
            let chunks = txn.open_table(CHUNKS)?;
            let mut vectors = txn.open_table(write_slots(&txn)?.0)?;
            let mut cache = txn.open_table(EMBED_CACHE)?;
            for (ordinal, vector) in batch.vectors {
                let key = chunk_id(id, ordinal);
                let chunk: ChunkRecord = match chunks.get(key)? {
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
                for row in vectors.range(range)? {
                    row?;
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
            books.put(&book)?;
            generation = bump_generation(&mut txn.open_table(META)?)?;
        }
        txn.commit()?;
        Ok(Some(VectorChange {
            removed: Vec::new(),
            added,
            generation,
        }))
    }

    /// Starts re-embedding the library with `target` into the inactive
    /// slot (emptied first), unless that swap is already in progress.
    /// Returns whether it started anew.
    pub(super) fn begin_swap(&self, target: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            if swap_record(&meta)?.is_some_and(|s| s.target == target) {
                return Ok(false);
            }
            let record = SwapRecord {
                target: target.to_string(),
                started_at_ms: now_ms(),
            };
            meta.insert("swap", encode(&record).as_slice())?;
            drop(meta);
            let next = write_slots(&txn)?.1;
            txn.open_table(next)?.retain(|_, _| false)?;
        }
        txn.commit()?;
        Ok(true)
    }

    /// Abandons the swap in progress (its vectors are dropped). Returns
    /// whether there was one.
    pub(super) fn cancel_swap(&self) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            if meta.remove("swap")?.is_none() {
                return Ok(false);
            }
            drop(meta);
            clear_inactive(&txn)?;
        }
        txn.commit()?;
        Ok(true)
    }

    /// Stores vectors of the swap's model for passages whose text is still
    /// the one embedded (a passage replaced meanwhile is skipped; the swap
    /// finds it again). Returns false, writing nothing, when `target` is not
    /// the swap in progress (it was cancelled).
    pub(super) fn put_swap_vectors(&self, target: &str, vectors: Vec<(u64, String, Vec<f32>)>) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        {
            if swap_record(&txn.open_table(META)?)?.is_none_or(|s| s.target != target) {
                return Ok(false);
            }
            let next_def = write_slots(&txn)?.1;
            let chunks = txn.open_table(CHUNKS)?;
            let mut next = txn.open_table(next_def)?;
            let mut cache = txn.open_table(EMBED_CACHE)?;
            for (id, text, vector) in vectors {
                let Some(stored) = chunks.get(id)? else { continue };
                let chunk: ChunkRecord = postcard::from_bytes(stored.value())?;
                if chunk.text != text || vector.is_empty() {
                    continue;
                }
                // The cache entry under the new model is only trusted once
                // the slot is active (lookups read the active slot).
                put_vector(&mut next, &mut cache, id, target, &text, vector)?;
            }
        }
        txn.commit()?;
        Ok(true)
    }

    /// Makes the swap's vectors the searchable ones if every passage has
    /// one: flips the slot and the model id in one transaction. Returns
    /// false, changing nothing, while some passage still lacks one.
    pub(super) fn finish_swap(&self, target: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            if swap_record(&meta)?.is_none_or(|s| s.target != target) {
                return Ok(false);
            }
            let slot = slot_of(&meta)?;
            // The swap slot only holds vectors of stored passages (removals
            // clear both slots), so equal counts mean every passage has one.
            let next = txn.open_table(SLOTS[1 - slot])?.len()?;
            let chunks = txn.open_table(CHUNKS)?.len()?;
            if next != chunks {
                return Ok(false);
            }
            meta.insert("vector_slot", ((1 - slot) as u64).to_le_bytes().as_slice())?;
            meta.insert("model_id", target.as_bytes())?;
            meta.remove("swap")?;
        }
        txn.commit()?;
        Ok(true)
    }

    /// Empties the inactive slot after a finished swap (the old model's
    /// vectors), unless a new swap has started filling it.
    pub(super) fn clear_old_vectors(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            if swap_record(&txn.open_table(META)?)?.is_some() {
                return Ok(());
            }
            clear_inactive(&txn)?;
        }
        txn.commit()?;
        Ok(())
    }

    pub(super) fn remove_book(&self, id: u64) -> Result<VectorChange, StoreError> {
        let txn = self.db.begin_write()?;
        let removed;
        let generation;
        {
            BookTables::open(&txn)?.remove(id)?;
            removed = delete_content(&txn, id)?;
            generation = bump_generation(&mut txn.open_table(META)?)?;
        }
        txn.commit()?;
        Ok(VectorChange {
            removed,
            added: Vec::new(),
            generation,
        })
    }
}
