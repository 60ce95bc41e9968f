//! Semantic search: embed the query, ask the index, join passages and books.
//!
//! Results carry one score per retriever (today only "vector") so hybrid
//! search and reranking can add theirs without changing the shape.

use crate::embed::EmbedHandle;
use crate::index::IndexHandle;
use crate::store::StoreReader;

/// Hits returned when the caller asks for 0.
pub const DEFAULT_K: usize = 10;
/// The most hits one search returns.
pub const MAX_K: usize = 1000;
/// A search restricted to books holding at most this many passages scans
/// their stored vectors exactly instead of asking the HNSW graph: a filter
/// that keeps a small part of the graph makes approximate search miss
/// (the best passage of a book must come first when the user asked for it).
pub const EXACT_LIMIT: u64 = 200_000;

/// Why a search failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SearchError {
    /// The query is empty.
    #[error("the query is empty; pass some words to search for")]
    EmptyQuery,
    /// Embedding the query failed.
    #[error(transparent)]
    Embed(#[from] crate::embed::EmbedError),
    /// The index failed.
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
    /// Reading passages failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// One retriever's score for a hit.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrieverScore {
    /// Retriever name ("vector").
    pub retriever: &'static str,
    /// Its score.
    pub score: f32,
    /// 1-based rank in its own list.
    pub rank: u32,
}

/// A passage that matched.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Fused score (cosine similarity today).
    pub score: f32,
    /// Chunk id.
    pub chunk_id: u64,
    /// Book id.
    pub book_id: u64,
    /// Book title.
    pub title: String,
    /// Book path.
    pub path: String,
    /// Heading path.
    pub chapter: String,
    /// Page, when known.
    pub page: Option<crate::text::PageRef>,
    /// Char range start.
    pub start: u64,
    /// Char range end.
    pub end: u64,
    /// Passage text.
    pub text: String,
    /// Per-retriever scores.
    pub retrievers: Vec<RetrieverScore>,
}

/// Exact nearest passages among `books`, by cosine similarity (stored
/// vectors are unit length, so a dot product).
fn exact(store: &StoreReader, query: &[f32], k: usize, books: &[u64]) -> Result<Vec<(u64, f32)>, SearchError> {
    let mut scored: Vec<(u64, f32)> = Vec::new();
    for book in books {
        for (id, record) in store.vectors_of(*book)? {
            let score = record.vector.iter().zip(query).map(|(a, b)| a * b).sum::<f32>();
            scored.push((id, score));
        }
    }
    let k = k.min(scored.len());
    if k == 0 {
        return Ok(scored);
    }
    scored.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
    scored.truncate(k);
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(scored)
}

/// Runs a search.
pub async fn search(
    embed: &EmbedHandle,
    index: &IndexHandle,
    store: &StoreReader,
    query: &str,
    k: usize,
    books: Vec<u64>,
) -> Result<Vec<Hit>, SearchError> {
    let query = query.trim();
    if query.is_empty() {
        return Err(SearchError::EmptyQuery);
    }
    let k = if k == 0 { DEFAULT_K } else { k.min(MAX_K) };
    let vector = embed.embed_query(query).await?;
    let in_books: u64 = books
        .iter()
        .map(|id| store.book(*id).map(|b| b.map_or(0, |b| b.chunk_count)))
        .sum::<Result<u64, _>>()?;
    let matches = if !books.is_empty() && in_books <= EXACT_LIMIT {
        let store = store.clone();
        tokio::task::spawn_blocking(move || exact(&store, &vector, k, &books))
            .await
            .map_err(|e| SearchError::Index(crate::index::IndexError::Unavailable(e.to_string())))??
    } else {
        index.search(vector, k, books).await?
    };
    let store = store.clone();
    let hits = tokio::task::spawn_blocking(move || -> Result<Vec<Hit>, SearchError> {
        let ids: Vec<u64> = matches.iter().map(|(id, _)| *id).collect();
        // Passages keyed by chunk id; ids removed since the lookup are absent.
        let chunks: std::collections::HashMap<u64, crate::store::ChunkRecord> = store
            .chunks(&ids)?
            .into_iter()
            .map(|c| (crate::store::chunk_id(c.book_id, c.ordinal), c))
            .collect();
        let mut books = std::collections::HashMap::new();
        let mut hits = Vec::with_capacity(chunks.len());
        for (rank, (chunk_id, score)) in matches.iter().enumerate() {
            let chunk = chunks.get(chunk_id);
            // A passage removed between index lookup and read is skipped.
            let Some(chunk) = chunk else { continue };
            if let std::collections::hash_map::Entry::Vacant(e) = books.entry(chunk.book_id) {
                e.insert(store.book(chunk.book_id)?);
            }
            let Some(book) = books[&chunk.book_id].as_ref() else { continue };
            hits.push(Hit {
                score: *score,
                chunk_id: *chunk_id,
                book_id: chunk.book_id,
                title: book.title.clone(),
                path: book.path.clone(),
                chapter: chunk.heading.clone(),
                page: chunk.page.clone(),
                start: chunk.start,
                end: chunk.end,
                text: chunk.text.clone(),
                retrievers: vec![RetrieverScore {
                    retriever: "vector",
                    score: *score,
                    rank: rank as u32 + 1,
                }],
            });
        }
        Ok(hits)
    })
    .await
    .map_err(|e| SearchError::Index(crate::index::IndexError::Unavailable(e.to_string())))??;
    Ok(hits)
}
