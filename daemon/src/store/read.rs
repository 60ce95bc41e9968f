//! The read side of the store: [`StoreReader`], its open, and every query
//! on the stored data.

use std::sync::Arc;

use redb::{Database, ReadableTable, ReadableTableMetadata};

use super::schema::{
    chunk_id, embed_key, read_slots, swap_record, u64_from, BookRecord, ChunkRecord, FolderRecord, SwapRecord, VectorRecord, VectorTable,
    BOOKS, CHUNKS, EMBED_CACHE, FOLDERS, HASHES, META, PASSAGE_KINDS, PATHS, TEXTS,
};
use super::{books, migrate, StoreError};
use crate::text::clean::PassageKind;

/// Read access to the store; cheap to clone, safe from any thread.
///
/// Reads use their own redb read transactions, so they never wait for the
/// writer and always see a committed state.
#[derive(Clone)]
pub struct StoreReader {
    pub(super) db: Arc<super::db::SharedDb>,
}

impl StoreReader {
    /// Opens (or creates) the database and checks its schema and model.
    pub fn open(path: &std::path::Path, model_id: &str) -> Result<Self, StoreError> {
        let database = Database::create(path)?;
        let txn = database.begin_write()?;
        migrate::prepare(&txn, model_id)?;
        txn.commit()?;
        Ok(StoreReader {
            db: Arc::new(super::db::SharedDb::new(path.to_path_buf(), database)),
        })
    }

    /// Why writes to the database fail right now, if they do (a full or
    /// failing disk); cleared by the first write that works.
    pub fn storage_fault(&self) -> Option<String> {
        self.db.fault()
    }

    /// The library folders, sorted by path.
    pub fn folders(&self) -> Result<Vec<FolderRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let folders = txn.open_table(FOLDERS)?;
        let mut out = Vec::new();
        for row in folders.iter()? {
            let (_, v) = row?;
            out.push(postcard::from_bytes(v.value())?);
        }
        Ok(out)
    }

    /// A book by id.
    pub fn book(&self, id: u64) -> Result<Option<BookRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let books = txn.open_table(BOOKS)?;
        match books.get(id)? {
            Some(v) => Ok(Some(postcard::from_bytes(v.value())?)),
            None => Ok(None),
        }
    }

    /// All books in id order.
    pub fn books(&self) -> Result<Vec<BookRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let books = txn.open_table(BOOKS)?;
        let mut out = Vec::new();
        for row in books.iter()? {
            let (_, v) = row?;
            out.push(postcard::from_bytes(v.value())?);
        }
        Ok(out)
    }

    /// Up to `limit` books (every one when `limit` is 0) with ids above
    /// `after`, in id order, and whether more follow. Reads only that page.
    pub fn books_page(&self, after: u64, limit: usize) -> Result<(Vec<BookRecord>, bool), StoreError> {
        let txn = self.db.begin_read()?;
        let books = txn.open_table(BOOKS)?;
        let mut out = Vec::new();
        for row in books.range(after.saturating_add(1)..)? {
            if limit > 0 && out.len() == limit {
                return Ok((out, true));
            }
            let (_, v) = row?;
            out.push(postcard::from_bytes(v.value())?);
        }
        Ok((out, false))
    }

    /// The book stored for `path`, if any.
    pub fn book_by_path(&self, path: &str) -> Result<Option<BookRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let Some(id) = txn.open_table(PATHS)?.get(path)?.map(|v| v.value()) else {
            return Ok(None);
        };
        book_in(&txn.open_table(BOOKS)?, id)
    }

    /// The books whose files lie in one of `scopes` (a file's path, or a
    /// folder and everything under it), in id order: one range of the
    /// paths table per scope, never the whole books table.
    pub fn books_in(&self, scopes: &[std::path::PathBuf]) -> Result<Vec<BookRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let paths = txn.open_table(PATHS)?;
        let mut ids = Vec::new();
        for scope in scopes {
            ids.extend(books::ids_under(&paths, scope)?);
        }
        ids.sort_unstable();
        ids.dedup();
        books_by_id(&txn, &ids)
    }

    /// The books whose content hash is `hash` (the same bytes), in id order.
    pub fn books_with_hash(&self, hash: &str) -> Result<Vec<BookRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let ids = books::ids_with_hash(&txn.open_multimap_table(HASHES)?, hash)?;
        books_by_id(&txn, &ids)
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
        let txn = self.db.begin_read()?;
        let table = txn.open_table(table(&txn)?)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(v) = table.get(*id)? {
                out.push((*id, postcard::from_bytes(v.value())?));
            }
        }
        Ok(out)
    }

    /// Those of `ids` that have no stored vector (passages of a book that is
    /// being embedded; ids of removed passages too).
    pub fn without_vectors(&self, ids: &[u64]) -> Result<std::collections::HashSet<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(read_slots(&txn)?.0)?;
        let mut out = std::collections::HashSet::new();
        for id in ids {
            if table.get(*id)?.is_none() {
                out.insert(*id);
            }
        }
        Ok(out)
    }

    /// Id of the model the searchable vectors come from.
    pub fn model_id(&self) -> Result<String, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta
            .get("model_id")?
            .map(|v| String::from_utf8_lossy(v.value()).into_owned())
            .unwrap_or_default())
    }

    /// The model swap in progress, if any.
    pub fn swap(&self) -> Result<Option<SwapRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        swap_record(&txn.open_table(META)?)
    }

    /// (passages with a vector of the swap's model, passages).
    pub fn swap_progress(&self) -> Result<(u64, u64), StoreError> {
        let txn = self.db.begin_read()?;
        swap_counts(&txn)
    }

    /// The swap in progress with its progress (done, total), read in one
    /// transaction so that a switch in between cannot pair them wrongly.
    pub fn swap_status(&self) -> Result<Option<(SwapRecord, u64, u64)>, StoreError> {
        let txn = self.db.begin_read()?;
        let Some(record) = swap_record(&txn.open_table(META)?)? else {
            return Ok(None);
        };
        let (done, total) = swap_counts(&txn)?;
        Ok(Some((record, done, total)))
    }

    /// Up to `limit` passages after chunk id `after` (from the first when
    /// `None`) that have no vector of the swap's model yet, with their text.
    pub fn swap_missing(&self, after: Option<u64>, limit: usize) -> Result<Vec<(u64, String)>, StoreError> {
        let txn = self.db.begin_read()?;
        let next = txn.open_table(read_slots(&txn)?.1)?;
        let chunks = txn.open_table(CHUNKS)?;
        let range = match after {
            Some(id) => chunks.range(id + 1..)?,
            None => chunks.range(0..)?,
        };
        let mut out = Vec::new();
        for row in range {
            let (k, v) = row?;
            if next.get(k.value())?.is_none() {
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
        let txn = self.db.begin_read()?;
        let chunks = txn.open_table(CHUNKS)?;
        let range = chunk_id(book_id, 0)..chunk_id(book_id + 1, 0);
        let mut out = Vec::new();
        for row in chunks.range(range)? {
            out.push(row?.0.value());
        }
        Ok(out)
    }

    /// The normalized text of a book.
    pub fn text(&self, book_id: u64) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let texts = txn.open_table(TEXTS)?;
        Ok(texts.get(book_id)?.map(|v| v.value().to_string()))
    }

    /// (books, chunks, vectors) counts.
    pub fn counts(&self) -> Result<(u64, u64, u64), StoreError> {
        let txn = self.db.begin_read()?;
        let books = txn.open_table(BOOKS)?.len()?;
        let chunks = txn.open_table(CHUNKS)?.len()?;
        let vectors = txn.open_table(read_slots(&txn)?.0)?.len()?;
        Ok((books, chunks, vectors))
    }

    /// Monotonic counter bumped by every transaction that changes vectors.
    pub fn generation(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get("generation")?.map_or(0, |v| u64_from(v.value())))
    }

    /// Calls `f` with every stored vector (for rebuilding the index).
    pub fn for_each_vector(&self, f: impl FnMut(u64, VectorRecord)) -> Result<(), StoreError> {
        self.for_each_in_slot(|txn| Ok(read_slots(txn)?.0), f)
    }

    /// Every vector of the active slot that `model` made, with its key (what
    /// a vector index is rebuilt from, whatever its backend).
    pub fn vectors_of_model(&self, model: &str) -> Result<Vec<(u64, Vec<f32>)>, StoreError> {
        let mut vectors = Vec::new();
        self.for_each_vector(|key, record| {
            if record.model == model {
                vectors.push((key, record.vector));
            }
        })?;
        Ok(vectors)
    }

    /// The length of the active slot's vectors when `model` made them, from
    /// the first stored one; `None` for a library without vectors of it.
    /// Boot opens the vector index with it while the model is still loading.
    pub fn stored_dimensions(&self, model: &str) -> Result<Option<usize>, StoreError> {
        let txn = self.db.begin_read()?;
        let vectors = txn.open_table(read_slots(&txn)?.0)?;
        let Some(first) = vectors.first()? else {
            return Ok(None);
        };
        let record: VectorRecord = postcard::from_bytes(first.1.value())?;
        Ok((record.model == model).then_some(record.vector.len()))
    }

    /// About `limit` keys of the active slot's vectors spread over the
    /// whole library: the first and last vector of books picked evenly
    /// across the book ids (what a start-up check looks up when it cannot
    /// afford every vector; the oldest books alone would miss an index that
    /// lost its newest ones). Cheap at any size: two lookups per book picked.
    pub fn vector_key_sample(&self, limit: usize) -> Result<Vec<u64>, StoreError> {
        let txn = self.db.begin_read()?;
        let vectors = txn.open_table(read_slots(&txn)?.0)?;
        let books = txn.open_table(BOOKS)?;
        let (Some(first), Some(last)) = (books.first()?, books.last()?) else {
            return Ok(Vec::new());
        };
        let (first, last) = (first.0.value(), last.0.value());
        let picked = ((limit / 2).max(1) as u64).min(books.len()?);
        let mut keys = Vec::with_capacity(picked as usize * 2);
        let mut previous = None;
        for i in 0..picked {
            // Ids spread evenly from the first book to the last, each the
            // first book at or after its target: a lookup per book picked,
            // never a walk over every book record.
            let target = if picked == 1 {
                first
            } else {
                first + i * (last - first) / (picked - 1)
            };
            let Some(row) = books.range(target..)?.next() else { continue };
            let id = row?.0.value();
            if previous == Some(id) {
                continue;
            }
            previous = Some(id);
            let mut range = vectors.range(chunk_id(id, 0)..chunk_id(id + 1, 0))?;
            if let Some(first) = range.next() {
                keys.push(first?.0.value());
            }
            if let Some(last) = range.next_back() {
                keys.push(last?.0.value());
            }
        }
        Ok(keys)
    }

    /// Calls `f` with every vector of the slot `slot` picks in one read
    /// transaction.
    fn for_each_in_slot(
        &self,
        slot: impl FnOnce(&redb::ReadTransaction) -> Result<VectorTable, StoreError>,
        mut f: impl FnMut(u64, VectorRecord),
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_read()?;
        let vectors = txn.open_table(slot(&txn)?)?;
        for row in vectors.iter()? {
            let (k, v) = row?;
            f(k.value(), postcard::from_bytes(v.value())?);
        }
        Ok(())
    }

    /// For each text, the vector `model` already made from exactly that
    /// text for some stored passage, if any. Entries are checked against the
    /// passage they point to, so a stale one is a miss, never a wrong vector.
    pub fn cached_vectors(&self, model: &str, texts: &[&str]) -> Result<Vec<Option<Vec<f32>>>, StoreError> {
        let txn = self.db.begin_read()?;
        let cache = txn.open_table(EMBED_CACHE)?;
        let chunks = txn.open_table(CHUNKS)?;
        let vectors = txn.open_table(read_slots(&txn)?.0)?;
        let mut out = Vec::with_capacity(texts.len());
        for text in texts {
            let Some(id) = cache.get(embed_key(model, text).as_slice())?.map(|v| v.value()) else {
                out.push(None);
                continue;
            };
            let same_text = match chunks.get(id)? {
                Some(c) => postcard::from_bytes::<ChunkRecord>(c.value())?.text == *text,
                None => false,
            };
            let vector = match (same_text, vectors.get(id)?) {
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
        let txn = self.db.begin_read()?;
        let chunks = txn.open_table(CHUNKS)?;
        for row in chunks.iter()? {
            let (k, v) = row?;
            f(k.value(), postcard::from_bytes(v.value())?);
        }
        Ok(())
    }

    /// The kinds of the given passages that are not prose; absent ids are
    /// body text (or gone).
    pub fn passage_kinds(&self, ids: &[u64]) -> Result<std::collections::HashMap<u64, PassageKind>, StoreError> {
        let txn = self.db.begin_read()?;
        let kinds = txn.open_table(PASSAGE_KINDS)?;
        let mut out = std::collections::HashMap::new();
        for id in ids {
            if let Some(v) = kinds.get(*id)? {
                out.insert(*id, PassageKind::from_code(v.value()));
            }
        }
        Ok(out)
    }

    /// How many of a book's passages are of each kind other than prose.
    pub fn passage_kind_counts(&self, book_id: u64) -> Result<Vec<(PassageKind, u64)>, StoreError> {
        let txn = self.db.begin_read()?;
        let kinds = txn.open_table(PASSAGE_KINDS)?;
        let mut counts: Vec<(PassageKind, u64)> = Vec::new();
        for row in kinds.range(chunk_id(book_id, 0)..chunk_id(book_id + 1, 0))? {
            let kind = PassageKind::from_code(row?.1.value());
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
        let txn = self.db.begin_read()?;
        let vectors = txn.open_table(read_slots(&txn)?.0)?;
        let mut out = Vec::new();
        for row in vectors.range(chunk_id(book_id, 0)..chunk_id(book_id + 1, 0))? {
            let (k, v) = row?;
            out.push((k.value(), postcard::from_bytes(v.value())?));
        }
        Ok(out)
    }
}

/// The books with these ids that exist, as `txn` sees them.
fn books_by_id(txn: &redb::ReadTransaction, ids: &[u64]) -> Result<Vec<BookRecord>, StoreError> {
    let books = txn.open_table(BOOKS)?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        // The index tables mirror books in every transaction, so a missing
        // record would be a bug; skipping it is the safe read.
        out.extend(book_in(&books, *id)?);
    }
    Ok(out)
}

/// The book `id` from an open books table, if it exists.
fn book_in(books: &impl ReadableTable<u64, &'static [u8]>, id: u64) -> Result<Option<BookRecord>, StoreError> {
    match books.get(id)? {
        Some(v) => Ok(Some(postcard::from_bytes(v.value())?)),
        None => Ok(None),
    }
}

/// (vectors in the swap slot, passages) as `txn` sees them.
fn swap_counts(txn: &redb::ReadTransaction) -> Result<(u64, u64), StoreError> {
    let next = txn.open_table(read_slots(txn)?.1)?.len()?;
    let chunks = txn.open_table(CHUNKS)?.len()?;
    Ok((next, chunks))
}
