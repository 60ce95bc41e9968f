//! What runs when the store opens: creating missing tables, schema
//! versions and the upgrades of older databases in place, the model check,
//! and the one-time backfills of tables added without a schema change. All
//! of it is part of the open's one write transaction, so a refused or
//! failed open changes nothing.

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::books;
use super::schema::{
    embed_key, encode, slot_of, u64_from, write_slots, BookRecord, BookStatus, ChunkRecord, SectionRecord, VectorRecord, BOOKS, CHUNKS,
    EMBED_CACHE, FOLDERS, HASHES, META, PASSAGE_KINDS, PATHS, SLOTS, TEXTS, VECTORS, VECTORS_B,
};
use super::StoreError;
use crate::text::clean::PassageKind;
use crate::text::PageRef;

/// Bumped when the layout of a table changes; [`upgrade`] upgrades older
/// databases in place. Version 2 added book languages and page labels,
/// version 3 file modification times, ingest attempts and library folders.
/// Schema 4 added the `embedding` book status and the second vector slot
/// (model swaps); older daemons must refuse such a database rather than
/// misread it. Schema 5 added the hashes table (content hash → book ids)
/// beside paths, both mirroring the books table: an older daemon would
/// change books without keeping hashes in step, so it must refuse it too.
pub const SCHEMA_VERSION: u64 = 5;

/// Makes the database this daemon opens ready for it, in the open's write
/// transaction: creates missing tables, upgrades an older schema and
/// refuses a newer one, refuses vectors of another model than `model_id`,
/// and runs the backfills an older database needs.
pub(super) fn prepare(txn: &WriteTransaction, model_id: &str) -> Result<(), StoreError> {
    // A newer schema is refused before any other table is opened: its
    // tables may not read as ours (opening one of another type fails with
    // redb's type mismatch instead of this message).
    let found = txn.open_table(META)?.get("schema_version")?.map(|v| u64_from(v.value()));
    if let Some(found) = found.filter(|&f| f > SCHEMA_VERSION) {
        return Err(StoreError::Schema { found });
    }
    txn.open_table(BOOKS)?;
    txn.open_table(PATHS)?;
    txn.open_multimap_table(HASHES)?;
    txn.open_table(CHUNKS)?;
    txn.open_table(VECTORS)?;
    txn.open_table(VECTORS_B)?;
    txn.open_table(TEXTS)?;
    txn.open_table(FOLDERS)?;
    txn.open_table(EMBED_CACHE)?;
    txn.open_table(PASSAGE_KINDS)?;
    // The model is checked before any upgrade work: a refused open rolls
    // that work back, and the next open (with the right model) would do it
    // all again.
    {
        let meta = txn.open_table(META)?;
        let stored = meta.get("model_id")?.map(|v| String::from_utf8_lossy(v.value()).into_owned());
        if let Some(stored) = stored.filter(|s| s != model_id) {
            // A library without vectors can change model freely; one
            // with vectors cannot mix them with another model's.
            if !txn.open_table(SLOTS[slot_of(&meta)?])?.is_empty()? {
                return Err(StoreError::Model {
                    stored,
                    requested: model_id.to_string(),
                });
            }
        }
    }
    match found {
        Some(from @ (1 | 2)) => {
            upgrade(txn, from)?;
            books::rebuild_indexes(txn)?;
        }
        // Schema 3 and 4 records read the same under schema 5; only the
        // index tables are built (paths again too, so both are known to
        // mirror the books table). This runs in the open's transaction with
        // the version bump below: a crash half-way leaves schema 3 or 4,
        // and the next open builds them again.
        Some(3 | 4) => books::rebuild_indexes(txn)?,
        Some(found) if found != SCHEMA_VERSION => return Err(StoreError::Schema { found }),
        _ => {}
    }
    let mut meta = txn.open_table(META)?;
    meta.insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice())?;
    meta.insert("model_id", model_id.as_bytes())?;
    // Databases written before the embed cache and passage kinds
    // existed get them filled from their stored passages once; no
    // schema change is needed because older daemons simply ignore
    // the tables.
    let (cache_built, kinds_built) = (meta.get("embed_cache")?.is_some(), meta.get("passage_kinds")?.is_some());
    meta.insert("embed_cache", 1u64.to_le_bytes().as_slice())?;
    meta.insert("passage_kinds", 1u64.to_le_bytes().as_slice())?;
    drop(meta);
    if !cache_built {
        backfill_embed_cache(txn)?;
    }
    if !kinds_built {
        backfill_passage_kinds(txn)?;
    }
    Ok(())
}

/// Classifies every stored passage (databases from before passage kinds).
fn backfill_passage_kinds(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let chunks = txn.open_table(CHUNKS)?;
    let mut kinds = txn.open_table(PASSAGE_KINDS)?;
    for row in chunks.iter()? {
        let (k, v) = row?;
        let chunk: ChunkRecord = postcard::from_bytes(v.value())?;
        let kind = crate::text::clean::classify(&chunk.text);
        if kind != PassageKind::Body {
            kinds.insert(k.value(), kind.code())?;
        }
    }
    Ok(())
}

/// Points the embed cache at every stored passage that has a vector.
fn backfill_embed_cache(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let chunks = txn.open_table(CHUNKS)?;
    let vectors = txn.open_table(write_slots(txn)?.0)?;
    let mut cache = txn.open_table(EMBED_CACHE)?;
    for row in vectors.iter()? {
        let (k, v) = row?;
        let record: VectorRecord = postcard::from_bytes(v.value())?;
        if let Some(c) = chunks.get(k.value())? {
            let chunk: ChunkRecord = postcard::from_bytes(c.value())?;
            cache.insert(embed_key(&record.model, &chunk.text).as_slice(), k.value())?;
        }
    }
    Ok(())
}

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
    let mut books = txn.open_table(BOOKS)?;
    let rows: Vec<(u64, Vec<u8>)> = books
        .iter()?
        .map(|e| {
            let (k, v) = e?;
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
        books.insert(id, encode(&record).as_slice())?;
    }
    if from == 1 {
        let mut chunks = txn.open_table(CHUNKS)?;
        let old: Vec<(u64, ChunkV1)> = chunks
            .iter()?
            .map(|e| {
                let (k, v) = e?;
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
            chunks.insert(id, encode(&record).as_slice())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{chunk_id, StoreReader};
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
        // The index tables were built from the upgraded books.
        assert_eq!(reader.book_by_path("/a.pdf").unwrap().map(|b| b.id), Some(1));
        assert_eq!(reader.books_with_hash("h").unwrap().len(), 1);
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
