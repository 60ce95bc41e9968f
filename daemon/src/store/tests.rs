//! Unit tests of the store's reads and writes, run on the [`Writer`] directly
//! (without the actor) against a database in a temp dir.

use std::os::unix::ffi::OsStrExt;

use redb::{ReadableTable, ReadableTableMetadata};

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
fn a_waiting_book_is_noted_only_while_it_holds_that_content() {
    let dir = tempfile::tempdir().unwrap();
    let reader = StoreReader::open(&dir.path().join("db.redb"), "m").unwrap();
    let w = Writer { db: reader.db.clone() };
    w.upsert_queued("/b.txt", fs("h1", 7), false).unwrap();
    w.begin_attempt(1).unwrap();
    let mut staged = content(2);
    staged.vectors = vec![Vec::new(), Vec::new()];
    w.put_content(1, staged).unwrap();
    assert_eq!(reader.book(1).unwrap().unwrap().attempts, 1);
    // Another content's job (a stale one) changes nothing.
    assert!(!w.note_waiting(1, "h0", "server down").unwrap());
    assert_eq!(reader.book(1).unwrap().unwrap().error, "");
    assert!(w.note_waiting(1, "h1", "server down").unwrap());
    let book = reader.book(1).unwrap().unwrap();
    assert_eq!(
        (book.status, book.error.as_str(), book.attempts),
        (BookStatus::Embedding, "server down", 0)
    );
    // The file changed meanwhile: its newer job owns the state, which the
    // old job's deferral must not turn back into `embedding`.
    w.upsert_queued("/b.txt", fs("h2", 8), false).unwrap();
    let before = reader.book(1).unwrap().unwrap();
    assert_ne!(before.status, BookStatus::Embedding);
    assert!(!w.note_waiting(1, "h1", "server down again").unwrap());
    let after = reader.book(1).unwrap().unwrap();
    assert_eq!((after.status, after.error), (before.status, before.error));
    assert!(matches!(w.note_waiting(9, "h1", "x"), Err(StoreError::NoSuchBook(9))));
}

#[test]
fn the_key_sample_spans_the_library_and_the_vector_length_comes_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let reader = StoreReader::open(&dir.path().join("db.redb"), "m").unwrap();
    let w = Writer { db: reader.db.clone() };
    assert!(reader.vector_key_sample(10).unwrap().is_empty());
    assert_eq!(reader.stored_dimensions("m").unwrap(), None);
    for b in 1..=5u64 {
        w.upsert_queued(&format!("/b{b}.txt"), fs(&format!("h{b}"), 7), false).unwrap();
        w.put_content(b, content(4)).unwrap();
    }
    // Two keys per book picked, books spread from the first to the last.
    let sample = reader.vector_key_sample(6).unwrap();
    assert_eq!(
        sample,
        vec![
            chunk_id(1, 0),
            chunk_id(1, 3),
            chunk_id(3, 0),
            chunk_id(3, 3),
            chunk_id(5, 0),
            chunk_id(5, 3)
        ]
    );
    assert_eq!(reader.vector_key_sample(100).unwrap().len(), 10);
    assert_eq!(reader.stored_dimensions("m").unwrap(), Some(2));
    assert_eq!(reader.stored_dimensions("another").unwrap(), None);
}

#[test]
fn moves_attempts_and_folders() {
    let dir = tempfile::tempdir().unwrap();
    let reader = StoreReader::open(&dir.path().join("db.redb"), "m").unwrap();
    let w = Writer { db: reader.db.clone() };
    assert_eq!(w.upsert_queued("/a/b.txt", fs("h1", 7), false).unwrap(), Upsert::Queued(1));
    assert_eq!(w.upsert_queued("/a/c.txt", fs("h9", 7), false).unwrap(), Upsert::Queued(2));
    assert_eq!((w.begin_attempt(1).unwrap().attempts, w.begin_attempt(1).unwrap().attempts), (1, 2));
    w.put_content(1, content(2)).unwrap();
    assert_eq!(reader.book(1).unwrap().unwrap().attempts, 0);
    // A move keeps the id and the passages; the old path is free again.
    let moved = w.move_book(1, "/x/b2.txt", 7, 5).unwrap();
    assert_eq!((moved.from.as_str(), moved.requeued), ("/a/b.txt", false));
    assert!(reader.book_by_path("/a/b.txt").unwrap().is_none());
    let moved = reader.book_by_path("/x/b2.txt").unwrap().unwrap();
    assert_eq!((moved.id, moved.chunk_count, moved.mtime_ns), (1, 2, 5));
    assert!(matches!(w.move_book(1, "/a/c.txt", 7, 5), Err(StoreError::PathTaken(_))));
    // A job that read the path before the move fails; the move it then
    // finds queues the book again, and the job reads the new path.
    assert_eq!(w.begin_attempt(2).unwrap().path, "/a/c.txt");
    w.set_status(2, BookStatus::Failed, "the file was gone").unwrap();
    let moved = w.move_book(2, "/x/c.txt", 7, 5).unwrap();
    assert_eq!((moved.from.as_str(), moved.requeued), ("/a/c.txt", true));
    let book = reader.book(2).unwrap().unwrap();
    assert_eq!((book.status, book.error.as_str(), book.attempts), (BookStatus::Queued, "", 0));
    assert_eq!(w.begin_attempt(2).unwrap().path, "/x/c.txt");
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

#[test]
fn errors_say_their_kind() {
    use crate::error_kind::ErrorKind;
    assert_eq!(StoreError::NoSuchBook(3).kind(), ErrorKind::NotFound);
    assert_eq!(StoreError::Unavailable("stopped".into()).kind(), ErrorKind::Unavailable);
    assert_eq!(StoreError::Schema { found: 9 }.kind(), ErrorKind::Precondition);
    let corrupt = StoreError::from(redb::StorageError::Corrupted("bad page".into()));
    assert!(corrupt.to_string().starts_with("database error: "), "{corrupt}");
    assert_eq!(corrupt.kind(), ErrorKind::Internal);
    let undecodable = postcard::from_bytes::<BookRecord>(&[0xff]).unwrap_err();
    assert_eq!(StoreError::from(undecodable).kind(), ErrorKind::Internal);
}

/// Asserts that the paths and hashes tables hold exactly the rows the books
/// table implies (the invariant of `books.rs`).
fn assert_indexes_mirror_books(reader: &StoreReader) {
    use redb::ReadableMultimapTable;
    let books = reader.books().unwrap();
    let mut want_paths: Vec<(String, u64)> = books.iter().map(|b| (b.path.clone(), b.id)).collect();
    let mut want_hashes: Vec<(String, u64)> = books.iter().map(|b| (b.content_hash.clone(), b.id)).collect();
    want_paths.sort();
    want_hashes.sort();
    let txn = reader.db.begin_read().unwrap();
    let paths: Vec<(String, u64)> = txn
        .open_table(schema::PATHS)
        .unwrap()
        .iter()
        .unwrap()
        .map(|row| {
            let (k, v) = row.unwrap();
            (k.value().to_string(), v.value())
        })
        .collect();
    let mut hashes = Vec::new();
    for row in txn.open_multimap_table(schema::HASHES).unwrap().iter().unwrap() {
        let (k, ids) = row.unwrap();
        for id in ids {
            hashes.push((k.value().to_string(), id.unwrap().value()));
        }
    }
    assert_eq!(paths, want_paths, "paths mirror books");
    assert_eq!(hashes, want_hashes, "hashes mirror books");
}

fn ids(books: Vec<BookRecord>) -> Vec<u64> {
    books.into_iter().map(|b| b.id).collect()
}

#[test]
fn paths_and_hashes_follow_every_insert_move_change_and_removal() {
    let dir = tempfile::tempdir().unwrap();
    let reader = StoreReader::open(&dir.path().join("db.redb"), "m").unwrap();
    let w = Writer { db: reader.db.clone() };
    let folder = |p: &str| vec![std::path::PathBuf::from(p)];
    // Two copies of the same bytes, one elsewhere, and a sibling whose name
    // extends the folder's (`/lib/a` vs `/lib/ab`).
    w.upsert_queued("/lib/a/one.txt", fs("h1", 7), false).unwrap();
    w.upsert_queued("/lib/a/deep/two.txt", fs("h2", 7), false).unwrap();
    w.upsert_queued("/lib/ab/three.txt", fs("h1", 7), false).unwrap();
    // A name that is not UTF-8 (byte 0xFF), as `path_text` stores it.
    let latin = mindory_proto::path_text::encode(std::path::Path::new(std::ffi::OsStr::from_bytes(b"/lib/a/caf\xff.txt")));
    w.upsert_queued(&latin, fs("h3", 7), false).unwrap();
    assert_indexes_mirror_books(&reader);
    assert_eq!(ids(reader.books_in(&folder("/lib/a")).unwrap()), [1, 2, 4]);
    assert_eq!(ids(reader.books_in(&folder("/lib/a/one.txt")).unwrap()), [1]);
    assert_eq!(ids(reader.books_in(&folder("/lib")).unwrap()), [1, 2, 3, 4]);
    assert_eq!(
        ids(reader.books_in(&[folder("/lib/ab")[0].clone(), folder("/lib")[0].clone()]).unwrap()),
        [1, 2, 3, 4]
    );
    assert!(reader.books_in(&folder("/lib/a/one")).unwrap().is_empty());
    assert_eq!(ids(reader.books_with_hash("h1").unwrap()), [1, 3]);

    // Changed content moves the book to its new hash; stored content and a
    // status change keep it there.
    w.upsert_queued("/lib/a/one.txt", fs("h9", 8), false).unwrap();
    let mut c = content(1);
    c.content_hash = "h9".into();
    w.put_content(1, c).unwrap();
    w.set_status(2, BookStatus::Failed, "broken").unwrap();
    assert_eq!(ids(reader.books_with_hash("h1").unwrap()), [3]);
    assert_eq!(ids(reader.books_with_hash("h9").unwrap()), [1]);
    assert_indexes_mirror_books(&reader);

    // A move changes its path row only; a refused move changes nothing.
    w.move_book(2, "/lib/ab/two.txt", 7, 2).unwrap();
    assert!(matches!(w.move_book(3, "/lib/ab/two.txt", 7, 2), Err(StoreError::PathTaken(_))));
    assert_eq!(ids(reader.books_in(&folder("/lib/a")).unwrap()), [1, 4]);
    assert_eq!(ids(reader.books_in(&folder("/lib/ab")).unwrap()), [2, 3]);
    assert_eq!(reader.book_by_path("/lib/ab/two.txt").unwrap().unwrap().id, 2);
    assert_indexes_mirror_books(&reader);

    // Removal takes both rows.
    w.remove_book(3).unwrap();
    assert!(reader.books_with_hash("h1").unwrap().is_empty());
    assert_eq!(ids(reader.books_in(&folder("/lib/ab")).unwrap()), [2]);
    assert_indexes_mirror_books(&reader);
}

#[test]
fn a_database_without_the_index_tables_gets_them_at_open_even_after_a_crash_mid_backfill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    {
        let reader = StoreReader::open(&path, "m").unwrap();
        let w = Writer { db: reader.db.clone() };
        w.upsert_queued("/lib/a.txt", fs("h1", 7), false).unwrap();
        w.upsert_queued("/lib/b.txt", fs("h1", 7), false).unwrap();
        w.upsert_queued("/elsewhere/c.txt", fs("h2", 7), false).unwrap();
        w.put_content(1, content(2)).unwrap();
    }
    // What a schema 4 daemon left: no hashes table (and, to be sure the
    // rebuild does not trust it, an emptied paths table).
    let as_schema_4 = || {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_multimap_table(schema::HASHES).unwrap();
        txn.open_table(schema::PATHS).unwrap().retain(|_, _| false).unwrap();
        txn.open_table(schema::META)
            .unwrap()
            .insert("schema_version", 4u64.to_le_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    };
    as_schema_4();
    // A crash in the middle of the backfill: the open's transaction never
    // commits, so the database is still schema 4 without the tables.
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        migrate::prepare(&txn, "m").unwrap();
        txn.abort().unwrap();
        let txn = db.begin_write().unwrap();
        let version = txn
            .open_table(schema::META)
            .unwrap()
            .get("schema_version")
            .unwrap()
            .map(|v| schema::u64_from(v.value()));
        assert_eq!(version, Some(4));
        assert!(txn.open_table(schema::PATHS).unwrap().is_empty().unwrap());
    }
    let reader = StoreReader::open(&path, "m").unwrap();
    assert_indexes_mirror_books(&reader);
    assert_eq!(ids(reader.books_in(&[std::path::PathBuf::from("/lib")]).unwrap()), [1, 2]);
    assert_eq!(ids(reader.books_with_hash("h1").unwrap()), [1, 2]);
    assert_eq!(reader.book(1).unwrap().unwrap().status, BookStatus::Ready);
    // Opening again is schema 5 and keeps them.
    drop(reader);
    let reader = StoreReader::open(&path, "m").unwrap();
    assert_indexes_mirror_books(&reader);
    assert_eq!(ids(reader.books_with_hash("h2").unwrap()), [3]);
}

#[test]
fn books_come_a_page_at_a_time_in_id_order() {
    let dir = tempfile::tempdir().unwrap();
    let reader = StoreReader::open(&dir.path().join("db.redb"), "m").unwrap();
    let w = Writer { db: reader.db.clone() };
    for i in 0..5 {
        w.upsert_queued(&format!("/b{i}.txt"), fs(&format!("h{i}"), 7), false).unwrap();
    }
    w.remove_book(3).unwrap();
    let (page, more) = reader.books_page(0, 2).unwrap();
    assert_eq!((ids(page), more), (vec![1, 2], true));
    let (page, more) = reader.books_page(2, 2).unwrap();
    assert_eq!((ids(page), more), (vec![4, 5], false));
    let (page, more) = reader.books_page(5, 2).unwrap();
    assert_eq!((ids(page), more), (vec![], false));
    // Page size 0 is every book.
    let (page, more) = reader.books_page(0, 0).unwrap();
    assert_eq!((ids(page), more), (vec![1, 2, 4, 5], false));
    let (page, more) = reader.books_page(u64::MAX, 0).unwrap();
    assert_eq!((ids(page), more), (vec![], false));
}
