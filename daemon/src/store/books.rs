//! The books table and the two tables that index it: paths (path text →
//! book id) and hashes (content hash → book ids). [`BookTables`] opens the
//! three together in a write transaction, and its [`put`](BookTables::put)
//! and [`remove`](BookTables::remove) are the only ways a writer changes a
//! book, so a book inserted, moved, renamed, re-hashed or removed changes
//! its index rows in the same place and the same transaction.
//!
//! Invariant: paths and hashes mirror the books table: paths holds exactly
//! (book.path, book.id) for every book, hashes exactly (book.content_hash,
//! book.id). [`rebuild_indexes`] makes them so from the books table alone
//! (at open, for databases written before the hashes table existed).
//!
//! Why index these two: at a thousand novels (~10,000 books at the scale
//! issue 15 aims for) reading every book to answer "which books lie in this
//! folder" (each reconciliation, each burst of file events) or "which book
//! has these bytes" (each ingest job) costs more than the answer. A path
//! text is prefix-preserving (`mindory_proto::path_text` escapes byte by
//! byte, and `/` is ASCII), so a folder's books are one key range of paths.

use redb::{MultimapTable, ReadableMultimapTable, ReadableTable, Table, WriteTransaction};

use super::schema::{encode, BookRecord, BOOKS, HASHES, PATHS};
use super::StoreError;

/// The books table and its index tables, open in one write transaction.
pub(super) struct BookTables<'txn> {
    books: Table<'txn, u64, &'static [u8]>,
    paths: Table<'txn, &'static str, u64>,
    hashes: MultimapTable<'txn, &'static str, u64>,
}

impl<'txn> BookTables<'txn> {
    /// Opens the three tables in `txn`.
    pub(super) fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(BookTables {
            books: txn.open_table(BOOKS)?,
            paths: txn.open_table(PATHS)?,
            hashes: txn.open_multimap_table(HASHES)?,
        })
    }

    /// The book `id`, or [`StoreError::NoSuchBook`].
    pub(super) fn get(&self, id: u64) -> Result<BookRecord, StoreError> {
        self.find(id)?.ok_or(StoreError::NoSuchBook(id))
    }

    /// The book `id`, if there is one.
    fn find(&self, id: u64) -> Result<Option<BookRecord>, StoreError> {
        match self.books.get(id)? {
            Some(bytes) => Ok(Some(postcard::from_bytes(bytes.value())?)),
            None => Ok(None),
        }
    }

    /// The id of the book stored at `path`, if any.
    pub(super) fn id_at(&self, path: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.paths.get(path)?.map(|v| v.value()))
    }

    /// Stores `book` (new or changed) and moves its index rows when its
    /// path or content hash changed. Refuses, writing nothing, a path that
    /// another book holds.
    pub(super) fn put(&mut self, book: &BookRecord) -> Result<(), StoreError> {
        if let Some(other) = self.id_at(&book.path)? {
            if other != book.id {
                return Err(StoreError::PathTaken(book.path.clone()));
            }
        }
        // Most writes change neither (a status, passages, vectors): their
        // index rows stay as they are.
        let before = self.find(book.id)?;
        let (old_path, old_hash) = match &before {
            Some(b) => (Some(b.path.as_str()), Some(b.content_hash.as_str())),
            None => (None, None),
        };
        if old_path != Some(book.path.as_str()) {
            if let Some(old) = old_path {
                self.paths.remove(old)?;
            }
            self.paths.insert(book.path.as_str(), book.id)?;
        }
        if old_hash != Some(book.content_hash.as_str()) {
            if let Some(old) = old_hash {
                self.hashes.remove(old, book.id)?;
            }
            self.hashes.insert(book.content_hash.as_str(), book.id)?;
        }
        self.books.insert(book.id, encode(book).as_slice())?;
        Ok(())
    }

    /// Removes the book `id` with its index rows; returns what it was.
    pub(super) fn remove(&mut self, id: u64) -> Result<BookRecord, StoreError> {
        let book = self.get(id)?;
        self.books.remove(id)?;
        self.paths.remove(book.path.as_str())?;
        self.hashes.remove(book.content_hash.as_str(), id)?;
        Ok(book)
    }
}

/// Fills paths and hashes from the books table, dropping whatever they held:
/// afterwards they mirror it exactly. Part of the open's one transaction, so
/// a crash half-way commits nothing and the next open rebuilds again.
pub(super) fn rebuild_indexes(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(PATHS)?.retain(|_, _| false)?;
    txn.delete_multimap_table(HASHES)?;
    let books = txn.open_table(BOOKS)?;
    let mut paths = txn.open_table(PATHS)?;
    let mut hashes = txn.open_multimap_table(HASHES)?;
    for row in books.iter()? {
        let (_, v) = row?;
        let book: BookRecord = postcard::from_bytes(v.value())?;
        // Ids grow, so a path held twice ends with the later book. The
        // earlier one stays listed and searchable but is no longer found
        // by its path (a rescan will not remove it): say which, so it can
        // be removed by hand.
        if let Some(earlier) = paths.insert(book.path.as_str(), book.id)? {
            tracing::warn!(
                path = %book.path,
                kept = book.id,
                earlier = earlier.value(),
                "two books had the same path; the path now names the later one: remove the earlier with `mindory rm {}` if it is a stale copy",
                earlier.value()
            );
        }
        hashes.insert(book.content_hash.as_str(), book.id)?;
    }
    Ok(())
}

/// The ids of the books whose path lies in `scope` (the path itself, or
/// anything under it as a folder), from a paths table.
pub(super) fn ids_under(paths: &impl ReadableTable<&'static str, u64>, scope: &std::path::Path) -> Result<Vec<u64>, StoreError> {
    let prefix = mindory_proto::path_text::encode(scope);
    let mut out = Vec::new();
    for row in paths.range(prefix.as_str()..)? {
        let (k, v) = row?;
        let path = k.value();
        if !path.starts_with(prefix.as_str()) {
            break;
        }
        // The text prefix also holds siblings such as `a.txt.bak` under the
        // scope `a.txt`; only whole components count.
        if mindory_proto::path_text::decode(path).starts_with(scope) {
            out.push(v.value());
        }
    }
    Ok(out)
}

/// The ids of the books whose content hash is `hash`, from a hashes table.
pub(super) fn ids_with_hash(hashes: &impl ReadableMultimapTable<&'static str, u64>, hash: &str) -> Result<Vec<u64>, StoreError> {
    let mut out = Vec::new();
    for id in hashes.get(hash)? {
        out.push(id?.value());
    }
    Ok(out)
}
