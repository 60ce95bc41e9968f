//! Synthetic libraries for benchmarks: books of passages with random
//! vectors, so a bench can measure an index of 100k passages without hours
//! of embedding.
//!
//! Not in the daemon's own build: this module is compiled for the daemon's
//! unit tests (the keyword index tests seed with it) and with the
//! `bench-seed` feature, which only the benches crate enables (a build of
//! the whole workspace unifies features, so it is in that one). It stays in
//! the daemon rather than the benches crate because it writes through
//! [`Writer`], the store's own write transactions, so a seeded book is as
//! consistent as an ingested one; outside the crate the only write path is
//! the store actor's handle, which needs the crate-private supervisor, and
//! exposing either just for benches would widen the daemon's API.

use super::{BookContent, ChunkRecord, FileState, StoreError, StoreReader, Upsert, Writer};

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
    // Seeded, so a bench run is reproducible; uniform in a cube, which is
    // good enough for random directions once normalized.
    let mut rng = fastrand::Rng::with_seed(seed);
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
            let mut v: Vec<f32> = (0..dimensions).map(|_| rng.f32() - 0.5).collect();
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
