//! Search: the retrievers (vector, keyword, verbatim phrase), their fusion,
//! and the join of the winning chunk ids with passages and books.
//!
//! Every reader path (the Search RPC, Ask, Summarize, Explain) goes through
//! [`Searcher::search`], so they all rank the same way. A hit carries one
//! [`RetrieverScore`] per retriever that found it plus the fused one, so a
//! client can show why a passage ranks where it does.
//!
//! Hybrid ranking, and why (the eval in `benches/benches/retrieval.rs`
//! measures it; `BENCHMARKS.md` has the table):
//! - Vectors find paraphrases; BM25 finds names, rare terms and error
//!   messages that embeddings blur. Their normalized scores are combined
//!   ([`fuse`]) with a share that follows the query's shape and the
//!   embedding model ([`vector_share`], [`shares_for`]): short queries lean
//!   on keywords, questions on meaning, and CJK queries on whichever of the
//!   two reads them.
//! - A query typed from memory is often a verbatim sentence. When the query
//!   is long enough to be one, passages that contain its words in order
//!   ("phrase") come first, whatever the other retrievers say.
//! - Words in double quotes must appear exactly when they are the query
//!   (at most two other words beside them): the keyword index answers such
//!   a query and the vector list is cut down to what it allows. Quotes in a
//!   longer question are punctuation ([`quotes_filter`]).
//! - Tables of contents, indexes, licence boilerplate and bare headings
//!   rank after the prose in every mode (unless they hold the query
//!   verbatim): they match many queries and answer none.

use std::collections::{HashMap, HashSet};

use crate::embed::EmbedHandle;
use crate::index::IndexHandle;
use crate::keyword::KeywordHandle;
use crate::store::StoreReader;
use crate::text::clean::PassageKind;

/// Hits returned when the caller asks for 0.
pub const DEFAULT_K: usize = 10;
/// The most hits one search returns.
pub const MAX_K: usize = 1000;
/// A search restricted to books holding at most this many passages scans
/// their stored vectors exactly instead of asking the HNSW graph: a filter
/// that keeps a small part of the graph makes approximate search miss
/// (the best passage of a book must come first when the user asked for it).
pub const EXACT_LIMIT: u64 = 200_000;
/// Each retriever hands the fusion this many candidates per hit asked for
/// (at least [`MIN_CANDIDATES`]): a passage ranked 30th by one retriever and
/// 2nd by the other must still meet the fusion.
const CANDIDATES_PER_HIT: usize = 5;
const MIN_CANDIDATES: usize = 50;
/// A query of this many words is tried as a verbatim phrase: fewer, and
/// common word pairs would count as "verbatim"; more, and it is a pasted
/// passage (Explain's related search), not a sentence typed from memory.
pub const PHRASE_WORDS: std::ops::RangeInclusive<usize> = 6..=64;
/// The longest query read, in characters. The embedding reads 256 tokens
/// and a sentence typed from memory is far shorter; a pasted megabyte once
/// held every search up for seconds while it was tokenized.
pub const MAX_QUERY_CHARS: usize = 4096;

/// `query` cut to [`MAX_QUERY_CHARS`] at a word boundary when it can be.
fn clip_query(query: &str) -> String {
    match query.char_indices().nth(MAX_QUERY_CHARS) {
        None => query.to_string(),
        Some((end, _)) => {
            let cut = &query[..end];
            cut.rfind(char::is_whitespace).map_or(cut, |i| &cut[..i]).trim_end().to_string()
        }
    }
}

/// Quotes are a filter only when at most this many words stand beside them
/// ([`quotes_filter`]).
const MAX_WORDS_BESIDE_QUOTES: usize = 2;
/// A quoted phrase may match this many passages at most before the rest are
/// dropped (the vector ranking then orders the ones kept).
const PHRASE_FILTER_LIMIT: usize = 5000;

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
    /// The keyword index failed.
    #[error(transparent)]
    Keyword(#[from] crate::keyword::KeywordError),
    /// Reading passages failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A book in the filter does not exist.
    #[error("no book {0} in the library; `mindory books` lists the ids")]
    NoSuchBook(u64),
}

impl SearchError {
    /// What kind of failure this is (see [`crate::error_kind`]).
    pub fn kind(&self) -> crate::error_kind::ErrorKind {
        match self {
            SearchError::EmptyQuery => crate::error_kind::ErrorKind::Invalid,
            SearchError::Embed(e) => e.kind(),
            SearchError::Index(e) => e.kind(),
            SearchError::Keyword(e) => e.kind(),
            SearchError::Store(e) => e.kind(),
            SearchError::NoSuchBook(_) => crate::error_kind::ErrorKind::NotFound,
        }
    }
}

/// Which retrievers rank the passages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Keyword and vector lists fused, verbatim matches first.
    #[default]
    Hybrid,
    /// Meaning only.
    Vector,
    /// Words only (BM25).
    Keyword,
}

/// A search as a caller states it.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// What the user typed.
    pub text: String,
    /// Hits wanted (0 = [`DEFAULT_K`]).
    pub k: usize,
    /// Only these books (empty = all).
    pub books: Vec<u64>,
    /// Which retrievers.
    pub mode: Mode,
    /// Words to search beside the query (hybrid only): a short answer
    /// written by the answer model before retrieval, or a script's own.
    /// Both retrievers then also run on the query with these words, and
    /// the four lists are fused (see [`fuse`]).
    pub expansion: Option<String>,
}

/// One retriever's score for a hit.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrieverScore {
    /// Retriever name: "vector", "keyword", "phrase" or "fused".
    pub retriever: &'static str,
    /// Its score.
    pub score: f32,
    /// 1-based rank in its own list; 0 when the retriever did not list the
    /// hit (a vector score computed for a keyword hit, say).
    pub rank: u32,
}

/// A passage that matched.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The score hits are ordered by (fused in hybrid mode, else the one
    /// retriever's).
    pub score: f32,
    /// Cosine similarity of the passage to the query, when the passage has a
    /// vector; the assistant's relevance floor reads this.
    pub similarity: Option<f32>,
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
    /// Prose, or what else the passage is (ranked after the prose).
    pub kind: PassageKind,
    /// The passage has no vector yet (its book is being embedded): only
    /// the keyword retrievers could rank it.
    pub still_embedding: bool,
    /// Per-retriever scores.
    pub retrievers: Vec<RetrieverScore>,
}

impl Hit {
    /// Its 1-based place in the list it came in: the fused rank in hybrid
    /// mode, else its one retriever's.
    pub fn rank(&self) -> u32 {
        self.retrievers
            .iter()
            .find(|r| r.retriever == "fused")
            .or_else(|| self.retrievers.iter().find(|r| r.rank > 0))
            .map_or(1, |r| r.rank)
    }
}

/// A ranked list from one retriever: (chunk id, score), best first.
pub type Ranked = Vec<(u64, f32)>;
/// Where each chunk stands in one retriever's list: (1-based rank, score).
type Positions = HashMap<u64, (u32, f32)>;

/// Held (shared) by every search from its query embedding to its last
/// vector read, and (exclusive) by a model swap while it flips the store,
/// the index and the active model: a search sees one model throughout.
pub type ModelSwitch = std::sync::Arc<tokio::sync::RwLock<()>>;

/// Everything a search needs; cheap to clone.
#[derive(Clone)]
pub struct Searcher {
    embed: EmbedHandle,
    index: IndexHandle,
    keyword: KeywordHandle,
    store: StoreReader,
    switch: ModelSwitch,
}

impl Searcher {
    /// A searcher over the given retrievers and store.
    pub fn new(embed: EmbedHandle, index: IndexHandle, keyword: KeywordHandle, store: StoreReader, switch: ModelSwitch) -> Self {
        Searcher {
            embed,
            index,
            keyword,
            store,
            switch,
        }
    }

    /// Runs a search.
    pub async fn search(&self, query: Query) -> Result<Vec<Hit>, SearchError> {
        let text = clip_query(query.text.trim());
        if text.is_empty() {
            return Err(SearchError::EmptyQuery);
        }
        let k = if query.k == 0 { DEFAULT_K } else { query.k.min(MAX_K) };
        let depth = (k * CANDIDATES_PER_HIT).max(MIN_CANDIDATES);
        let books = query.books;
        self.check_books(&books).await?;
        // The keyword index's own reading of quotes, so both sides agree on
        // what is a phrase (typographic quotes included).
        let quoted = quotes_filter(&crate::keyword::parse_query(&text));
        let unquoted = crate::keyword::without_quotes(&text);
        // Quotes that are punctuation in a question do not reach the
        // keyword index, which would read them as a phrase to require.
        let keyword_text = if quoted { text.clone() } else { unquoted.clone() };
        let words = unquoted.split_whitespace().count();

        // One model from the query embedding to the last vector read.
        let _switch = self.switch.read().await;
        let engine = self.embed.current();
        let wants_vector = query.mode != Mode::Keyword;
        let wants_keyword = query.mode != Mode::Vector;
        // The query embedding is needed in every mode: keyword hits get a
        // similarity for the relevance floor and the RAG view.
        let vector_query = engine.embed_query(&unquoted);
        let keyword_k = if quoted { PHRASE_FILTER_LIMIT.max(depth) } else { depth };
        let keyword = async {
            if wants_keyword {
                self.keyword.search(keyword_text.clone(), keyword_k, books.clone()).await.map(Some)
            } else {
                Ok(None)
            }
        };
        let phrase = async {
            // Quotes are tried too: a sentence pasted with its dialogue
            // quotes is still a sentence to find verbatim.
            if query.mode == Mode::Hybrid && PHRASE_WORDS.contains(&words) {
                self.keyword.phrase_search(unquoted.clone(), depth, books.clone()).await.map(Some)
            } else {
                Ok(None)
            }
        };
        // The expansion widens a question, never a quoted filter, and only
        // where two retrievers are fused.
        let expanded = match query.expansion.as_deref().map(str::trim) {
            Some(e) if !e.is_empty() && !quoted && query.mode == Mode::Hybrid => {
                Some(clip_query(&format!("{unquoted} {}", crate::keyword::without_quotes(e))))
            }
            _ => None,
        };
        let expanded_lists = async {
            let Some(text) = &expanded else { return Ok(None) };
            let (vector_query, keyword) = tokio::join!(engine.embed_query(text), self.keyword.search(text.clone(), depth, books.clone()));
            Ok::<_, SearchError>(Some((vector_query?, keyword?)))
        };
        let (vector_query, keyword, phrase, expanded_lists) = tokio::join!(vector_query, keyword, phrase, expanded_lists);
        let vector_query = vector_query?;
        let keyword: Option<Ranked> = keyword?;
        let phrase: Option<Ranked> = phrase?;
        let expanded_lists = expanded_lists?;
        let vector: Option<Ranked> = if wants_vector {
            Some(self.vector_search(vector_query.clone(), engine.model_id(), depth, &books).await?)
        } else {
            None
        };

        let mut lists: Vec<(&'static str, Ranked)> = Vec::new();
        if let Some(mut vector) = vector {
            // Quotes mean "must contain" in the modes that read words: the
            // keyword index knows which passages do. Vector mode reads
            // meaning only (the quotes are gone from what it embeds), so it
            // keeps its list: filtering by a keyword search that did not
            // run would leave it empty.
            if let (true, Some(keyword)) = (quoted, &keyword) {
                let allowed: HashSet<u64> = keyword.iter().map(|(id, _)| *id).collect();
                vector.retain(|(id, _)| allowed.contains(id));
            }
            lists.push(("vector", vector));
        }
        if let Some(mut keyword) = keyword {
            keyword.truncate(depth);
            lists.push(("keyword", keyword));
        }
        if let Some(phrase) = phrase {
            lists.push(("phrase", phrase));
        }
        if let Some((expanded_query, keyword)) = expanded_lists {
            let vector = self.vector_search(expanded_query, engine.model_id(), depth, &books).await?;
            lists.push((EXPANDED_VECTOR, vector));
            lists.push((EXPANDED_KEYWORD, keyword));
        }
        let share = (query.mode == Mode::Hybrid).then(|| vector_share(&unquoted, words, shares_for(engine.model_id())));
        self.join(share, lists, vector_query, k, depth).await
    }

    /// Refuses a filter naming a book that does not exist (an id too large
    /// to be one would otherwise wrap onto another book's passages).
    async fn check_books(&self, books: &[u64]) -> Result<(), SearchError> {
        if let Some(bad) = books.iter().find(|b| **b > crate::store::MAX_BOOK_ID) {
            return Err(SearchError::NoSuchBook(*bad));
        }
        if books.is_empty() {
            return Ok(());
        }
        let store = self.store.clone();
        let ids = books.to_vec();
        let missing = tokio::task::spawn_blocking(move || -> Result<Option<u64>, SearchError> {
            for id in ids {
                if store.book(id)?.is_none() {
                    return Ok(Some(id));
                }
            }
            Ok(None)
        })
        .await
        .map_err(task_failed)??;
        missing.map_or(Ok(()), |id| Err(SearchError::NoSuchBook(id)))
    }

    /// Gives hits of passages that have no vector yet (their book is being
    /// embedded) a similarity to `query` by embedding them now, so that a
    /// relevance floor can judge them like the others. For the assistant,
    /// whose answer takes far longer than these few embeddings; a search
    /// leaves them without one.
    pub async fn fill_similarity(&self, query: &str, hits: &mut [Hit]) -> Result<(), SearchError> {
        if hits.iter().all(|h| h.similarity.is_some()) {
            return Ok(());
        }
        let engine = self.embed.current();
        let q = engine.embed_query(&crate::keyword::without_quotes(query)).await?;
        for hit in hits.iter_mut().filter(|h| h.similarity.is_none()) {
            let v = engine.embed_query(&hit.text).await?;
            hit.similarity = Some(dot(&q, &v));
        }
        Ok(())
    }

    /// The nearest passages by meaning.
    async fn vector_search(&self, vector: Vec<f32>, model: &str, k: usize, books: &[u64]) -> Result<Ranked, SearchError> {
        if !books.is_empty() {
            // A search restricted to a few books scans them exactly; the
            // store reads happen on the blocking pool.
            let store = self.store.clone();
            let (books, query, model) = (books.to_vec(), vector.clone(), model.to_string());
            let scanned = tokio::task::spawn_blocking(move || -> Result<Option<Ranked>, SearchError> {
                let in_books: u64 = books
                    .iter()
                    .map(|id| store.book(*id).map(|b| b.map_or(0, |b| b.chunk_count)))
                    .sum::<Result<u64, _>>()?;
                (in_books <= EXACT_LIMIT)
                    .then(|| exact(&store, &query, &model, k, &books))
                    .transpose()
            })
            .await
            .map_err(task_failed)??;
            if let Some(ranked) = scanned {
                return Ok(ranked);
            }
        }
        Ok(self.index.search(vector, model, k, books.to_vec()).await?)
    }

    /// Ranks (fusing the lists with the vector retriever's `share` in
    /// hybrid mode, else taking the one list), puts passages that are not
    /// prose after the prose, cuts to `k`, and turns the chunk ids into hits
    /// with their passages, books and every retriever's opinion, in one trip
    /// to the blocking pool.
    async fn join(
        &self,
        share: Option<f32>,
        lists: Vec<(&'static str, Ranked)>,
        query: Vec<f32>,
        k: usize,
        depth: usize,
    ) -> Result<Vec<Hit>, SearchError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || -> Result<Vec<Hit>, SearchError> {
            let ranked = match share {
                Some(share) => {
                    let unembedded = without_vectors(&store, &lists)?;
                    fuse(&lists, share, depth, &unembedded)
                }
                None => single(&lists, depth),
            };
            let (ranked, kinds) = demote_noise(&store, ranked, &lists, k)?;
            let ids: Vec<u64> = ranked.iter().map(|(id, _)| *id).collect();
            // Passages keyed by chunk id; ids removed since the lookup are absent.
            let chunks: HashMap<u64, crate::store::ChunkRecord> = store
                .chunks(&ids)?
                .into_iter()
                .map(|c| (crate::store::chunk_id(c.book_id, c.ordinal), c))
                .collect();
            let similarity: HashMap<u64, f32> = store
                .vectors(&ids)?
                .into_iter()
                .map(|(id, v)| (id, dot(&v.vector, &query)))
                .collect();
            let positions: Vec<(&'static str, Positions)> = lists
                .iter()
                .map(|(name, list)| {
                    let at = list
                        .iter()
                        .enumerate()
                        .map(|(i, (id, score))| (*id, (i as u32 + 1, *score)))
                        .collect();
                    (*name, at)
                })
                .collect();
            let mut books = HashMap::new();
            let mut hits = Vec::with_capacity(chunks.len());
            for (rank, (chunk_id, score)) in ranked.iter().enumerate() {
                // A passage removed between lookup and read is skipped.
                let Some(chunk) = chunks.get(chunk_id) else { continue };
                if let std::collections::hash_map::Entry::Vacant(e) = books.entry(chunk.book_id) {
                    e.insert(store.book(chunk.book_id)?);
                }
                let Some(book) = books[&chunk.book_id].as_ref() else { continue };
                let mut retrievers: Vec<RetrieverScore> = positions
                    .iter()
                    .filter_map(|(name, at)| {
                        at.get(chunk_id).map(|(r, s)| RetrieverScore {
                            retriever: name,
                            score: *s,
                            rank: *r,
                        })
                    })
                    .collect();
                // Every hit with a vector shows its similarity, even when the
                // vector retriever did not list it (rank 0).
                if !retrievers.iter().any(|r| r.retriever == "vector") {
                    if let Some(s) = similarity.get(chunk_id) {
                        retrievers.push(RetrieverScore {
                            retriever: "vector",
                            score: *s,
                            rank: 0,
                        });
                    }
                }
                if positions.len() > 1 {
                    retrievers.push(RetrieverScore {
                        retriever: "fused",
                        score: *score,
                        rank: rank as u32 + 1,
                    });
                }
                hits.push(Hit {
                    score: *score,
                    similarity: similarity.get(chunk_id).copied(),
                    chunk_id: *chunk_id,
                    book_id: chunk.book_id,
                    title: book.title.clone(),
                    path: book.path.clone(),
                    chapter: chunk.heading.clone(),
                    page: chunk.page.clone(),
                    start: chunk.start,
                    end: chunk.end,
                    text: chunk.text.clone(),
                    kind: kinds.get(chunk_id).copied().unwrap_or(PassageKind::Body),
                    still_embedding: !similarity.contains_key(chunk_id),
                    retrievers,
                });
            }
            Ok(hits)
        })
        .await
        .map_err(task_failed)?
    }
}

/// A blocking-pool task that panicked or was cancelled.
fn task_failed(e: tokio::task::JoinError) -> SearchError {
    SearchError::Index(crate::index::IndexError::Unavailable(e.to_string()))
}

/// Puts passages that are not prose (contents, index, boilerplate,
/// fragments; see [`crate::text::clean`]) after the prose, keeping each
/// group's order, unless they hold the query verbatim; cuts to `k`.
fn demote_noise(
    store: &StoreReader,
    mut ranked: Ranked,
    lists: &[(&'static str, Ranked)],
    k: usize,
) -> Result<(Ranked, HashMap<u64, PassageKind>), SearchError> {
    let ids: Vec<u64> = ranked.iter().map(|(id, _)| *id).collect();
    let kinds = store.passage_kinds(&ids)?;
    let verbatim: HashSet<u64> = lists
        .iter()
        .filter(|(name, _)| *name == "phrase")
        .flat_map(|(_, l)| l.iter().map(|(id, _)| *id))
        .collect();
    ranked.sort_by_key(|(id, _)| kinds.contains_key(id) && !verbatim.contains(id));
    ranked.truncate(k);
    Ok((ranked, kinds))
}

/// The passages listed by keyword retrievers but not by the vector one
/// that have no vector stored: their books are still being embedded.
fn without_vectors(store: &StoreReader, lists: &[(&'static str, Ranked)]) -> Result<HashSet<u64>, SearchError> {
    let by_vector: HashSet<u64> = lists
        .iter()
        .filter(|(name, _)| VECTOR_LISTS.contains(name))
        .flat_map(|(_, l)| l.iter().map(|(id, _)| *id))
        .collect();
    let mut candidates: Vec<u64> = lists
        .iter()
        .filter(|(name, _)| !VECTOR_LISTS.contains(name))
        .flat_map(|(_, l)| l.iter().map(|(id, _)| *id))
        .filter(|id| !by_vector.contains(id))
        .collect();
    candidates.sort_unstable();
    candidates.dedup();
    Ok(store.without_vectors(&candidates)?)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The first list's ranking, cut to `k` (vector or keyword mode).
fn single(lists: &[(&'static str, Ranked)], k: usize) -> Vec<(u64, f32)> {
    lists.first().map(|(_, l)| l.iter().take(k).copied().collect()).unwrap_or_default()
}

/// Whether the query's quotes make it exact ("these words, in this order,
/// must appear"): when the quoted phrases are the query, as typed into a
/// search box (`"grinning from ear to ear"`, `tea "March Hare"`). In a
/// question that quotes a term or a message (`Why do I get "ld: cannot find
/// -lfoo" messages?`, `Can I use Debian packages (".deb" files) on Red
/// Hat?`) the quotes are punctuation: the answer need not repeat the quoted
/// words, so they rank like the others. On the retrieval eval, requiring
/// them lost 4 of the 7 quoted debian-faq questions in hybrid mode.
fn quotes_filter(parsed: &crate::keyword::ParsedQuery) -> bool {
    let beside = parsed
        .words
        .split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .count();
    parsed.has_phrase() && beside <= MAX_WORDS_BESIDE_QUOTES
}

/// The vector retriever's share in the fusion (the keyword retriever has
/// the rest) per query shape, for one embedding model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shares {
    /// One or two words: a name or a rare term.
    short: f32,
    /// Three or four words.
    medium: f32,
    /// Five words or more: a question or a sentence.
    long: f32,
    /// Mostly Chinese or Japanese characters, whatever the length.
    cjk: f32,
}

/// The shares for the model that embedded the query, chosen on the
/// retrieval eval (`benches/benches/retrieval.rs` with
/// `MINDORY_EVAL_DUMP`, replayed over a grid; the figures are in
/// BENCHMARKS.md). Shares follow how much a model's vectors know:
/// - all-MiniLM-L6-v2 (the default, and any model not listed): a name or rare
///   term alone ("Chamberlayne", `lapply`) means little to a sentence
///   embedding, which then ranks passages almost at random, while BM25
///   finds exactly the passages that hold it; a question in several words
///   is where meaning carries. It reads English only, so a query in CJK
///   characters leans on the keyword index's bigrams.
/// - potion-base-8M: static token vectors find answers less often than
///   BM25 at every length, so they only break ties between keyword hits
///   (with MiniLM's shares hybrid fell below keyword search alone).
/// - use-multilingual: its vectors are what finds a passage across
///   languages (a Chinese question over an English book, or the reverse),
///   which no keyword can, so long and CJK queries lean on them.
pub fn shares_for(model_id: &str) -> Shares {
    use mindory_proto::models::{POTION_BASE_8M, USE_MULTILINGUAL};
    if model_id == POTION_BASE_8M.id {
        Shares {
            short: 0.1,
            medium: 0.2,
            long: 0.2,
            cjk: 0.1,
        }
    } else if model_id == USE_MULTILINGUAL.id {
        Shares {
            short: 0.1,
            medium: 0.5,
            long: 0.7,
            cjk: 0.7,
        }
    } else {
        Shares {
            short: 0.3,
            medium: 0.5,
            long: 0.6,
            cjk: 0.1,
        }
    }
}

/// The vector retriever's share for `query` (of `words` words) under
/// `shares`.
pub fn vector_share(query: &str, words: usize, shares: Shares) -> f32 {
    let letters = query.chars().filter(|c| !c.is_whitespace()).count().max(1);
    let cjk = query.chars().filter(|c| crate::text::is_cjk(*c)).count();
    if cjk * 10 > letters * 3 {
        return shares.cjk;
    }
    match words {
        0..=2 => shares.short,
        3..=4 => shares.medium,
        _ => shares.long,
    }
}

/// A verbatim match's bonus: larger than any fused score without one.
const PHRASE_BONUS: f32 = 2.0;

/// The vector retriever run on the query with its expansion.
pub const EXPANDED_VECTOR: &str = "vector+expansion";
/// The keyword retriever run on the query with its expansion.
pub const EXPANDED_KEYWORD: &str = "keyword+expansion";

/// The lists ranked by meaning (they share the vector retriever's share),
/// and those ranked by words (they share the keyword retriever's).
const VECTOR_LISTS: [&str; 2] = ["vector", EXPANDED_VECTOR];
const KEYWORD_LISTS: [&str; 2] = ["keyword", EXPANDED_KEYWORD];

/// Convex combination of the retrievers' normalized scores, top `k`. Each
/// list is scaled to [0, 1] first, because a cosine and a BM25 score live on
/// unrelated scales that shift with every query: cosines by min-max over the
/// candidates (they crowd into a narrow band), BM25 by its maximum (zero is
/// its natural floor). On the eval this beat reciprocal rank fusion on every
/// set (RRF, which ignores how far apart the scores are, pulled in the
/// weaker list's noise). A verbatim phrase match comes first.
///
/// A passage without a vector yet (its book is still being embedded,
/// `unembedded`) is ranked by its keyword score alone, at full weight: the
/// vector retriever could not have listed it, and scoring it as if it had
/// been found irrelevant by meaning would bury a book for as long as it is
/// being embedded.
///
/// With an expansion (a short answer the model wrote before retrieval),
/// each retriever also runs on the query with those words, and the share
/// of each retriever is split evenly between its two lists. Keeping the
/// query's own lists beside the expanded ones bounds what a wrong guess
/// can do; on the retrieval eval this fusion of four lists lifted both FAQ
/// sets (BENCHMARKS.md, "Question expansion"), where either list alone
/// lost one of them.
///
/// Public so that the retrieval bench can replay other candidate lists
/// through the very fusion searches use.
pub fn fuse(lists: &[(&'static str, Ranked)], share: f32, k: usize, unembedded: &HashSet<u64>) -> Vec<(u64, f32)> {
    let mut fused: HashMap<u64, f32> = HashMap::new();
    let count = |names: [&str; 2]| lists.iter().filter(|(n, _)| names.contains(n)).count().max(1) as f32;
    let (vector_lists, keyword_lists) = (count(VECTOR_LISTS), count(KEYWORD_LISTS));
    for (name, list) in lists {
        // The floor of the min-max scaling is the score at rank
        // `MIN_CANDIDATES`, however deep the list: a search for 20 hits
        // fetches deeper lists than one for 10, and scaling by the deeper
        // list's lower minimum would reorder its top 10 even where the
        // deeper lists add nothing. Candidates below that rank score 0 by
        // meaning. Searches for up to 10 hits (the eval's, Ask's) fetch 50
        // and are unchanged by this.
        let mut scores: Vec<f32> = list.iter().map(|(_, s)| *s).collect();
        scores.sort_unstable_by(|a, b| b.total_cmp(a));
        let (Some(&max), Some(&min)) = (scores.first(), scores.get(scores.len().min(MIN_CANDIDATES).saturating_sub(1))) else {
            continue;
        };
        for (id, score) in list {
            let add = match *name {
                "vector" | EXPANDED_VECTOR => share / vector_lists * if max > min { ((score - min) / (max - min)).max(0.0) } else { 1.0 },
                "keyword" | EXPANDED_KEYWORD => {
                    let weight = if unembedded.contains(id) { 1.0 } else { 1.0 - share };
                    weight / keyword_lists * if max > 0.0 { score / max } else { 0.0 }
                }
                "phrase" => PHRASE_BONUS,
                _ => 0.0,
            };
            *fused.entry(*id).or_default() += add;
        }
    }
    let mut out: Vec<(u64, f32)> = fused.into_iter().collect();
    // Ties (equal fused scores) break by chunk id so results are stable.
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out.truncate(k);
    out
}

/// Exact nearest passages among `books`, by cosine similarity (stored
/// vectors are unit length, so a dot product).
fn exact(store: &StoreReader, query: &[f32], model: &str, k: usize, books: &[u64]) -> Result<Ranked, SearchError> {
    let mut scored: Vec<(u64, f32)> = Vec::new();
    for book in books {
        for (id, record) in store.vectors_of(*book)? {
            // Only the query's model's vectors are comparable with it.
            if record.model == model {
                scored.push((id, dot(&record.vector, query)));
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use mindory_proto::models::EMBEDDING_MODEL_ID;

    #[test]
    fn fusion_rewards_agreement_and_puts_phrases_first() {
        let vector = vec![(1, 0.9), (2, 0.8), (3, 0.5)];
        let keyword = vec![(3, 12.0), (2, 9.0), (4, 5.0)];
        let fused = fuse(&[("vector", vector.clone()), ("keyword", keyword.clone())], 0.6, 4, &HashSet::new());
        let order: Vec<u64> = fused.iter().map(|(id, _)| *id).collect();
        // 2 is high in both lists; 4 is only third in one.
        assert_eq!(order[0], 2);
        assert_eq!(order[3], 4);
        let with_phrase = fuse(
            &[("vector", vector.clone()), ("keyword", keyword.clone()), ("phrase", vec![(4, 1.0)])],
            0.6,
            4,
            &HashSet::new(),
        );
        assert_eq!(with_phrase[0].0, 4, "a verbatim match comes first");
        // A one-word query leans on the keyword list: its first hit wins.
        let (vector, keyword) = (vec![(1, 0.9), (3, 0.5)], vec![(3, 12.0)]);
        let short = fuse(
            &[("vector", vector.clone()), ("keyword", keyword.clone())],
            vector_share("Chamberlayne", 1, shares_for(EMBEDDING_MODEL_ID)),
            2,
            &HashSet::new(),
        );
        assert_eq!(short[0].0, 3);
        let long = fuse(
            &[("vector", vector), ("keyword", keyword)],
            vector_share("a question of seven words in it", 7, shares_for(EMBEDDING_MODEL_ID)),
            2,
            &HashSet::new(),
        );
        assert_eq!(long[0].0, 1);
    }

    #[test]
    fn an_expansion_splits_each_retrievers_share_between_its_two_lists() {
        let vector = vec![(1, 0.9), (2, 0.8), (3, 0.1)];
        let keyword = vec![(1, 10.0), (3, 2.0)];
        let plain = fuse(&[("vector", vector.clone()), ("keyword", keyword.clone())], 0.6, 3, &HashSet::new());
        assert!((plain[0].1 - 1.0).abs() < 1e-6, "first in both lists: {plain:?}");
        // The guess finds passage 4, which the question alone missed; it
        // ranks by the expanded lists' half of each share, below the
        // passage both of the question's own lists put first.
        let expanded_vector = vec![(4, 0.9), (1, 0.7), (3, 0.2)];
        let expanded_keyword = vec![(4, 8.0), (1, 4.0)];
        let lists = [
            ("vector", vector),
            ("keyword", keyword),
            (EXPANDED_VECTOR, expanded_vector),
            (EXPANDED_KEYWORD, expanded_keyword),
        ];
        let fused = fuse(&lists, 0.6, 4, &HashSet::new());
        let order: Vec<u64> = fused.iter().map(|(id, _)| *id).collect();
        assert_eq!(order[..2], [1, 4], "{fused:?}");
        let score = |id: u64| fused.iter().find(|(i, _)| *i == id).unwrap().1;
        // Passage 4: half of each share, at the top of both expanded lists.
        assert!((score(4) - 0.5).abs() < 1e-6, "{fused:?}");
        // Scores stay on the same scale as without an expansion.
        assert!(score(1) <= 1.0 + 1e-6, "{fused:?}");
    }

    #[test]
    fn a_deeper_search_keeps_the_top_of_a_shallower_one() {
        // Lists as a search for 10 hits (50 candidates each) and for 40
        // (200 each) get them: the same top 50, and deeper candidates that
        // only one retriever found, so that nothing but the lists' depth
        // differs between the two searches.
        let lists = |depth: usize| {
            // Below rank 50 each list has its own ids; above it the two
            // lists share most passages, in different orders.
            let id = |i: usize, top: u64, own: u64| if i < MIN_CANDIDATES { top } else { own + i as u64 };
            let vector: Ranked = (0..depth).map(|i| (id(i, i as u64, 10_000), 0.9 - i as f32 * 0.003)).collect();
            let keyword: Ranked = (0..depth)
                .map(|i| (id(i, (i * 7 % 60) as u64, 20_000), 20.0 - i as f32 * 0.09))
                .collect();
            [("vector", vector), ("keyword", keyword)]
        };
        let shallow = fuse(&lists(MIN_CANDIDATES), 0.6, 10, &HashSet::new());
        let deep = fuse(&lists(4 * MIN_CANDIDATES), 0.6, 40, &HashSet::new());
        assert_eq!(shallow[..], deep[..10]);
    }

    #[test]
    fn passages_without_vectors_rank_by_keywords_alone() {
        // 7 is the best keyword match but has no vector yet (its book is
        // being embedded); 1 is a fair match both ways.
        let vector = vec![(1, 0.9), (2, 0.5)];
        let keyword = vec![(7, 10.0), (1, 8.0), (2, 1.0)];
        let lists = [("vector", vector), ("keyword", keyword)];
        let as_if_irrelevant = fuse(&lists, 0.6, 3, &HashSet::new());
        assert_eq!(as_if_irrelevant[0].0, 1);
        let fair = fuse(&lists, 0.6, 3, &HashSet::from([7]));
        assert_eq!(fair[0], (7, 1.0));
    }

    #[test]
    fn shares_follow_the_query_and_the_model() {
        use mindory_proto::models::{POTION_BASE_8M, USE_MULTILINGUAL};
        let minilm = shares_for(EMBEDDING_MODEL_ID);
        let question = "how do I install a package offline";
        let chinese = "我在年青时候也曾经做过许多梦";
        assert!(vector_share(chinese, 1, minilm) < 0.2);
        assert!(vector_share("Chamberlayne", 1, minilm) < vector_share(question, 7, minilm));
        // A model that reads Chinese keeps its say on a Chinese query.
        let multilingual = shares_for(USE_MULTILINGUAL.id);
        assert!(vector_share(chinese, 1, multilingual) > 0.5);
        // Weak static vectors never outweigh the keywords.
        let potion = shares_for(POTION_BASE_8M.id);
        assert!(vector_share(question, 7, potion) < vector_share(question, 7, minilm));
        assert!([potion.short, potion.medium, potion.long, potion.cjk].iter().all(|s| *s < 0.5));
        assert_eq!(
            shares_for("some/future-model"),
            minilm,
            "an unlisted model gets the default's shares"
        );
    }

    #[test]
    fn long_queries_are_clipped_at_a_word() {
        assert_eq!(clip_query("short query"), "short query");
        let long = "word ".repeat(2000);
        let clipped = clip_query(&long);
        assert!(clipped.chars().count() <= MAX_QUERY_CHARS);
        assert!(clipped.ends_with("word"), "{}", &clipped[clipped.len() - 10..]);
        let one_word = "x".repeat(10_000);
        assert_eq!(clip_query(&one_word).chars().count(), MAX_QUERY_CHARS);
    }

    #[test]
    fn quotes_filter_a_search_box_query_not_a_question() {
        let filters = |q: &str| quotes_filter(&crate::keyword::parse_query(q));
        assert!(filters("\"grinning from ear to ear\""));
        assert!(filters("tea \"March Hare\""));
        assert!(filters("What about \"sid\"?"));
        assert!(!filters("Why do I get \"ld: cannot find -lfoo\" messages when compiling programs?"));
        assert!(!filters("Can I put my commercial program in a Debian \"package\"?"));
        assert!(!filters("no quotes at all"));
    }

    #[test]
    fn quotes_are_phrases_only_in_pairs() {
        let quoted = |q: &str| crate::keyword::parse_query(q).has_phrase();
        assert!(quoted("the \"Mad Hatter\" said"));
        assert!(quoted("the “Mad Hatter” said"));
        assert!(!quoted("a lone \" quote"));
        assert!(!quoted("an empty \"\" one"));
    }
}
