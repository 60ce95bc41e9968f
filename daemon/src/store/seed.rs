//! Synthetic libraries for benchmarks: books of passages with random
//! vectors, written through the store's [`Writer`].

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
