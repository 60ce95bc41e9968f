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

/// A book to seed: its title and its passages, each with its vector.
pub struct SeedBook {
    /// The book's title (its path is derived from it).
    pub title: String,
    /// Passage texts with their unit vectors.
    pub passages: Vec<(String, Vec<f32>)>,
}

/// Writes `books` straight into the database at `path` (created if
/// missing), one write transaction per book, as `model`'s vectors; returns
/// the number of passages written. Books whose path is already stored are
/// skipped.
pub fn seed_books(path: &std::path::Path, model: &str, books: impl IntoIterator<Item = SeedBook>) -> Result<u64, StoreError> {
    let reader = StoreReader::open(path, model)?;
    let writer = Writer { db: reader.db.clone() };
    let mut written = 0;
    for (b, book) in books.into_iter().enumerate() {
        let hash = format!("{:064x}", fxhash(&book.title));
        let Upsert::Queued(id) = writer.upsert_queued(
            &format!("/synthetic/{b}-{}.txt", book.title.replace('/', "_")),
            FileState {
                hash: hash.clone(),
                size: 0,
                mtime_ns: 0,
            },
            true,
        )?
        else {
            continue;
        };
        let mut chunks = Vec::with_capacity(book.passages.len());
        let mut vectors = Vec::with_capacity(book.passages.len());
        let mut text = String::new();
        for (ordinal, (passage, vector)) in book.passages.into_iter().enumerate() {
            let start = text.chars().count() as u64;
            text.push_str(&passage);
            chunks.push(ChunkRecord {
                book_id: id,
                ordinal: ordinal as u32,
                start,
                end: start + passage.chars().count() as u64,
                text: passage,
                heading: String::new(),
                page: None,
            });
            text.push_str("\n\n");
            vectors.push(vector);
        }
        written += chunks.len() as u64;
        let content = BookContent {
            title: book.title,
            author: String::new(),
            language: String::new(),
            format: "txt".into(),
            text,
            sections: Vec::new(),
            chunks,
            vectors,
            model: model.to_string(),
            content_hash: hash,
            size: 0,
        };
        writer.put_content(id, content)?;
    }
    Ok(written)
}

/// A stable 64-bit hash of a title (FNV-1a), for distinct content hashes.
fn fxhash(s: &str) -> u64 {
    s.bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
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
    // Seeded, so a bench run is reproducible; uniform in a cube, which is
    // good enough for random directions once normalized.
    let mut rng = fastrand::Rng::with_seed(seed);
    let books = (0..books).map(move |b| SeedBook {
        title: format!("Synthetic book {b}"),
        passages: (0..chunks_per_book)
            .map(|ordinal| {
                let passage = match prose.len() {
                    0 => format!("Synthetic passage {ordinal} of book {b}."),
                    n => prose[(b as usize * chunks_per_book as usize + ordinal as usize) % n].clone(),
                };
                (passage, random_unit_vector(&mut rng, dimensions))
            })
            .collect(),
    });
    seed_books(path, model, books).map(|_| ())
}

/// A random direction: uniform in a cube, normalized (good enough for
/// random directions at these dimensions).
pub fn random_unit_vector(rng: &mut fastrand::Rng, dimensions: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dimensions).map(|_| rng.f32() - 0.5).collect();
    crate::embed::normalize(&mut v);
    v
}
