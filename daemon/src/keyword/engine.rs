//! The keyword engine: a tantivy index over passages, scored with BM25.
//!
//! Every passage is one document with its `chunk_id` and `book_id`, an
//! `exact` text field (unstemmed, with positions, for phrases) and exactly
//! one "words" field: `words_<lang>` when its book's language has a Snowball
//! stemmer, else the unstemmed `words`. Keeping each language in its own
//! field lets one query be analyzed once per language and matched as SHOULD
//! over all of them without double counting, since a passage lives in one.
//!
//! The book's language comes from its metadata tag; without one it is
//! detected (whatlang) once per book on a sample of its first passages, the
//! same way when applying a change and when rebuilding, so both give the
//! same index.
//!
//! All methods block (disk writes, merges); the actor calls them on the
//! blocking pool. Writes are serialized by the writer's lock; searches run
//! concurrently on the reader, which is reloaded before a write returns, so
//! a change is searchable as soon as [`KeywordIndex::apply`] returns.
//! The store generation a commit mirrors is saved as the tantivy commit
//! payload, which makes the check at start-up one read of `meta.json`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tantivy::collector::{DocSetCollector, TopDocs};
use tantivy::columnar::Column;
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, PhraseQuery, Query, TermQuery, TermSetQuery};
use tantivy::schema::{Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions};
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, TantivyError, Term};

use super::tokenize::{self, StemLang};

/// Extra hits fetched beyond `k` so score ties are broken by chunk id.
const TIE_MARGIN: usize = 16;

/// Why a keyword index operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeywordError {
    /// tantivy reported an error while writing or searching.
    #[error(
        "keyword index error: {0}; if it persists, stop mindoryd and delete the `keyword` folder in its data directory: \
         it is rebuilt from the library at the next start"
    )]
    Engine(String),
    /// The index on disk cannot be opened (damaged, or from another version).
    #[error("cannot open the keyword index in {path}: {reason}; delete that directory and it is rebuilt from the library at next start")]
    Open {
        /// The index directory.
        path: PathBuf,
        /// What tantivy reported.
        reason: String,
    },
    /// Another process is writing to the same index.
    #[error("the keyword index in {0} is in use by another process; stop the other mindoryd or give this one another data directory")]
    Busy(PathBuf),
    /// Reading passages from the store failed during a rebuild.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The index directory could not be created or cleared.
    #[error("cannot prepare the keyword index directory {path}: {source}; check that the data directory is writable")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The keyword actor is gone.
    #[error("the keyword index is not running: {0}")]
    Unavailable(String),
}

impl KeywordError {
    /// What kind of failure this is (see [`crate::error_kind`]).
    pub fn kind(&self) -> crate::error_kind::ErrorKind {
        use crate::error_kind::ErrorKind;
        match self {
            KeywordError::Engine(_) | KeywordError::Open { .. } | KeywordError::Io { .. } => ErrorKind::Internal,
            KeywordError::Store(e) => e.kind(),
            KeywordError::Busy(_) | KeywordError::Unavailable(_) => ErrorKind::Unavailable,
        }
    }
}

fn engine(e: TantivyError) -> KeywordError {
    KeywordError::Engine(e.to_string())
}

/// One passage to index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeywordDoc {
    /// The passage's chunk id (`book_id << 24 | ordinal`).
    pub chunk_id: u64,
    /// The book it belongs to.
    pub book_id: u64,
    /// The book's language tag from its metadata, empty when unknown.
    pub language: String,
    /// The passage text.
    pub text: String,
}

/// What each commit records about itself (the tantivy commit payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Payload {
    /// The store generation the index mirrors.
    generation: u64,
    /// Documents in the index after the commit.
    count: u64,
}

/// The words field a passage goes into: a stemming language, or `None` for
/// the unstemmed `words` field.
type WordsLang = Option<StemLang>;

/// The schema's fields.
#[derive(Clone, Copy)]
struct Fields {
    chunk_id: Field,
    book_id: Field,
    exact: Field,
    words: Field,
    stemmed: [Field; StemLang::ALL.len()],
}

impl Fields {
    fn words_field(&self, lang: WordsLang) -> Field {
        match lang {
            None => self.words,
            Some(lang) => self.stemmed[StemLang::ALL.iter().position(|l| *l == lang).expect("every language has a field")],
        }
    }
}

fn analyzer_name(lang: WordsLang) -> String {
    match lang {
        None => tokenize::PLAIN.to_string(),
        Some(lang) => lang.analyzer(),
    }
}

fn text_field(analyzer: &str, record: IndexRecordOption) -> TextOptions {
    TextOptions::default().set_indexing_options(TextFieldIndexing::default().set_tokenizer(analyzer).set_index_option(record))
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let chunk_id = builder.add_u64_field("chunk_id", NumericOptions::default().set_indexed().set_fast().set_stored());
    let book_id = builder.add_u64_field("book_id", NumericOptions::default().set_indexed().set_fast());
    let exact = builder.add_text_field("exact", text_field(tokenize::PLAIN, IndexRecordOption::WithFreqsAndPositions));
    // The words fields only score terms, so they skip positions (a third of
    // the postings' size).
    let words = builder.add_text_field("words", text_field(tokenize::PLAIN, IndexRecordOption::WithFreqs));
    let stemmed = StemLang::ALL.map(|lang| {
        builder.add_text_field(
            &format!("words_{}", lang.code()),
            text_field(&lang.analyzer(), IndexRecordOption::WithFreqs),
        )
    });
    let fields = Fields {
        chunk_id,
        book_id,
        exact,
        words,
        stemmed,
    };
    (builder.build(), fields)
}

/// How much of a book's text language detection reads.
const SAMPLE_BYTES: usize = tokenize::DETECT_BYTES;

/// Which words field a book's passages go into. A metadata tag decides when
/// there is one (a tag naming a language without a stemmer, like "zh",
/// means unstemmed); otherwise whatlang reads the start of the book, and an
/// unreliable guess counts as unknown. `docs` are the book's passages.
fn book_language(docs: &[&KeywordDoc]) -> WordsLang {
    if let Some(tag) = docs.iter().map(|d| d.language.trim()).find(|t| !tokenize::is_undetermined(t)) {
        return StemLang::from_tag(tag);
    }
    let mut ordered: Vec<&&KeywordDoc> = docs.iter().collect();
    ordered.sort_by_key(|d| d.chunk_id);
    let mut sample = String::new();
    for doc in ordered {
        if sample.len() >= SAMPLE_BYTES {
            break;
        }
        sample.push_str(&doc.text);
        sample.push('\n');
    }
    tokenize::detect_language(&sample)
}

/// A query split into what must appear verbatim and what is scored.
#[derive(Debug, Default, PartialEq)]
pub struct ParsedQuery {
    /// Text between double quotes: each must appear as a phrase.
    pub phrases: Vec<String>,
    /// Everything else, scored word by word.
    pub words: String,
}

impl ParsedQuery {
    /// Whether a phrase with any word in it must appear (an empty `""` or
    /// `"!!"` is ignored, as the search ignores it).
    pub fn has_phrase(&self) -> bool {
        self.phrases.iter().any(|p| p.chars().any(char::is_alphanumeric))
    }
}

/// The quote marks that delimit a phrase: straight and typographic.
fn is_quote(c: char) -> bool {
    matches!(c, '"' | '“' | '”' | '„')
}

/// `query` with its quote marks turned into spaces, words in their order
/// (what a verbatim match and the embedding read).
pub fn without_quotes(query: &str) -> String {
    query.chars().map(|c| if is_quote(c) { ' ' } else { c }).collect()
}

/// Splits user text on double quotes (straight or typographic). A quote left
/// open at the end is not a phrase: its text joins the plain words, so no
/// input is ever a syntax error.
pub fn parse_query(query: &str) -> ParsedQuery {
    let mut parsed = ParsedQuery::default();
    let mut current = String::new();
    let mut in_quote = false;
    for c in query.chars() {
        if is_quote(c) {
            if in_quote {
                parsed.phrases.push(std::mem::take(&mut current));
            } else {
                parsed.words.push_str(&current);
                parsed.words.push(' ');
                current.clear();
            }
            in_quote = !in_quote;
        } else {
            current.push(c);
        }
    }
    parsed.words.push_str(&current);
    parsed
}

/// A BM25 keyword index over passages, on disk in one directory.
pub struct KeywordIndex {
    dir: PathBuf,
    index: Index,
    reader: IndexReader,
    fields: Fields,
    /// The only writer. `None` only while it is being replaced after a failure.
    writer: Mutex<Option<IndexWriter<TantivyDocument>>>,
    /// The payload of the last commit.
    committed: Mutex<Option<Payload>>,
    /// The words fields that hold any passage, so a query is analyzed only
    /// for the languages present. It may over-approximate after removals,
    /// which costs a little time, never a result.
    in_use: Mutex<BTreeSet<WordsLang>>,
}

/// Memory the writer may fill per indexing thread before it writes a segment.
const WRITER_BYTES_PER_THREAD: usize = 24_000_000;

impl KeywordIndex {
    /// Opens the index in `dir`, or creates an empty one there. A damaged
    /// index, or one with another schema, is an error: the caller deletes the
    /// directory and rebuilds.
    pub fn open(dir: &Path) -> Result<Self, KeywordError> {
        std::fs::create_dir_all(dir).map_err(|source| KeywordError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let open_error = |e: TantivyError| KeywordError::Open {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        };
        let directory = MmapDirectory::open(dir).map_err(|e| open_error(e.into()))?;
        let (schema, fields) = schema();
        let index = Index::open_or_create(directory, schema).map_err(open_error)?;
        tokenize::register(index.tokenizers());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(open_error)?;
        let writer = Self::new_writer(&index).map_err(|e| match e {
            TantivyError::LockFailure(..) => KeywordError::Busy(dir.to_path_buf()),
            e => open_error(e),
        })?;
        let metas = index.load_metas().map_err(open_error)?;
        let committed = metas.payload.as_deref().and_then(|p| serde_json::from_str::<Payload>(p).ok());
        let keyword = KeywordIndex {
            dir: dir.to_path_buf(),
            index,
            reader,
            fields,
            writer: Mutex::new(Some(writer)),
            committed: Mutex::new(committed),
            in_use: Mutex::default(),
        };
        *keyword.in_use.lock() = keyword.fields_with_terms().map_err(open_error)?;
        Ok(keyword)
    }

    fn new_writer(index: &Index) -> tantivy::Result<IndexWriter<TantivyDocument>> {
        // Indexing is far faster than embedding, the slow part of
        // ingestion: two threads keep up, and on bigger machines the other
        // cores stay free for embedding and search.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(2);
        index.writer_with_num_threads(threads, threads * WRITER_BYTES_PER_THREAD)
    }

    /// The directory the index lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The words fields with at least one term in a searchable segment.
    fn fields_with_terms(&self) -> tantivy::Result<BTreeSet<WordsLang>> {
        let searcher = self.reader.searcher();
        let mut used = BTreeSet::new();
        let langs = std::iter::once(None).chain(StemLang::ALL.into_iter().map(Some));
        for lang in langs {
            let field = self.fields.words_field(lang);
            for segment in searcher.segment_readers() {
                if segment.inverted_index(field)?.terms().num_terms() > 0 {
                    used.insert(lang);
                    break;
                }
            }
        }
        Ok(used)
    }

    /// The store generation of the last commit, `None` for a new index.
    pub fn committed_generation(&self) -> Option<u64> {
        self.committed.lock().map(|p| p.generation)
    }

    /// The document count the last commit recorded, `None` for a new index.
    pub fn committed_count(&self) -> Option<u64> {
        self.committed.lock().map(|p| p.count)
    }

    /// Searchable passages.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Whether no passage is searchable.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The words fields currently holding passages (for tests and logs).
    pub fn languages_in_use(&self) -> Vec<String> {
        self.in_use
            .lock()
            .iter()
            .map(|l| l.map_or_else(|| "unstemmed".to_string(), |l| l.code().to_string()))
            .collect()
    }

    fn document(&self, doc: &KeywordDoc, lang: WordsLang) -> TantivyDocument {
        let mut document = TantivyDocument::default();
        document.add_u64(self.fields.chunk_id, doc.chunk_id);
        document.add_u64(self.fields.book_id, doc.book_id);
        document.add_text(self.fields.exact, &doc.text);
        document.add_text(self.fields.words_field(lang), &doc.text);
        document
    }

    /// Adds one book's passages (all of them, so that detection sees the
    /// same sample as a rebuild would); returns the words fields used.
    fn add_book(&self, writer: &IndexWriter<TantivyDocument>, docs: &[&KeywordDoc]) -> Result<WordsLang, KeywordError> {
        let lang = book_language(docs);
        for doc in docs {
            writer.add_document(self.document(doc, lang)).map_err(engine)?;
        }
        Ok(lang)
    }

    fn chunk_term(&self, chunk_id: u64) -> Term {
        Term::from_field_u64(self.fields.chunk_id, chunk_id)
    }

    /// Removes `removed`, adds (or replaces) `added`, commits with
    /// `generation`, and returns once the change is searchable. Adds are
    /// upserts by chunk id, so applying a change twice is harmless. A
    /// book's passages should arrive in one call: a book without a language
    /// tag is detected on what this call holds of it.
    pub fn apply(&self, removed: &[u64], added: &[KeywordDoc], generation: u64) -> Result<(), KeywordError> {
        let mut guard = self.writer.lock();
        let result = self.apply_locked(&mut guard, removed, added, generation);
        if result.is_err() {
            self.recover(&mut guard);
        }
        result
    }

    fn apply_locked(
        &self,
        guard: &mut Option<IndexWriter<TantivyDocument>>,
        removed: &[u64],
        added: &[KeywordDoc],
        generation: u64,
    ) -> Result<(), KeywordError> {
        let writer = guard
            .as_mut()
            .ok_or_else(|| KeywordError::Engine("the index writer could not be reopened".into()))?;
        // The last add of a chunk id wins, as if each had been applied in turn.
        let mut latest: HashMap<u64, &KeywordDoc> = HashMap::with_capacity(added.len());
        for doc in added {
            latest.insert(doc.chunk_id, doc);
        }
        let touched: HashSet<u64> = removed.iter().copied().chain(latest.keys().copied()).collect();

        // Only ids that are indexed need a delete (most adds are new), and
        // knowing them gives the count after the commit, for the payload.
        let searcher = self.reader.searcher();
        let mut existing = HashSet::new();
        if !touched.is_empty() {
            let query = TermSetQuery::new(touched.iter().map(|id| self.chunk_term(*id)));
            let mut chunk_ids = ChunkIds::new(&searcher);
            for address in searcher.search(&query, &DocSetCollector).map_err(engine)? {
                existing.extend(chunk_ids.get(address)?);
            }
        }
        let count = searcher.num_docs() - existing.len() as u64 + latest.len() as u64;
        for id in &existing {
            writer.delete_term(self.chunk_term(*id));
        }
        let mut books: HashMap<u64, Vec<&KeywordDoc>> = HashMap::new();
        for doc in latest.values() {
            books.entry(doc.book_id).or_default().push(doc);
        }
        let mut langs = BTreeSet::new();
        let mut book_ids: Vec<u64> = books.keys().copied().collect();
        book_ids.sort_unstable();
        for book_id in book_ids {
            let docs = &books[&book_id];
            langs.insert(self.add_book(writer, docs)?);
        }
        let previous = *self.committed.lock();
        let payload = Payload {
            generation: previous.map_or(generation, |p| p.generation.max(generation)),
            count,
        };
        self.commit(writer, payload)?;
        self.in_use.lock().extend(langs);
        Ok(())
    }

    fn commit(&self, writer: &mut IndexWriter<TantivyDocument>, payload: Payload) -> Result<(), KeywordError> {
        let mut prepared = writer.prepare_commit().map_err(engine)?;
        prepared.set_payload(&serde_json::to_string(&payload).expect("plain struct"));
        prepared.commit().map_err(engine)?;
        *self.committed.lock() = Some(payload);
        // "Ready means searchable": the reader sees the commit before the
        // caller hears back.
        self.reader.reload().map_err(engine)
    }

    /// After a failed write, drops whatever it left uncommitted, so the next
    /// commit does not publish half of it. A writer that cannot roll back
    /// (its indexing thread died) is replaced.
    fn recover(&self, guard: &mut Option<IndexWriter<TantivyDocument>>) {
        if let Some(writer) = guard.as_mut() {
            if writer.rollback().is_ok() {
                return;
            }
        }
        // The old writer holds the directory lock; it must go first.
        drop(guard.take());
        match Self::new_writer(&self.index) {
            Ok(writer) => *guard = Some(writer),
            Err(e) => tracing::error!(error = %e, "cannot reopen the keyword index writer; keyword search stays as it was until restart"),
        }
    }

    /// Replaces the whole content with `docs` in one commit recording
    /// `generation`. A book's passages must come together (as the store
    /// yields them, in chunk id order), so its language is decided once.
    pub fn rebuild(&self, docs: impl Iterator<Item = KeywordDoc>, generation: u64) -> Result<u64, KeywordError> {
        self.rebuild_fallible(docs.map(Ok), generation)
    }

    /// [`rebuild`](Self::rebuild) from a source that may fail; on the first
    /// error nothing is committed and the index stays as it was.
    pub(crate) fn rebuild_fallible(
        &self,
        docs: impl Iterator<Item = Result<KeywordDoc, KeywordError>>,
        generation: u64,
    ) -> Result<u64, KeywordError> {
        let mut guard = self.writer.lock();
        let result = self.rebuild_locked(&mut guard, docs, generation);
        if result.is_err() {
            self.recover(&mut guard);
        }
        result
    }

    fn rebuild_locked(
        &self,
        guard: &mut Option<IndexWriter<TantivyDocument>>,
        docs: impl Iterator<Item = Result<KeywordDoc, KeywordError>>,
        generation: u64,
    ) -> Result<u64, KeywordError> {
        let writer = guard
            .as_mut()
            .ok_or_else(|| KeywordError::Engine("the index writer could not be reopened".into()))?;
        writer.delete_all_documents().map_err(engine)?;
        let mut seen: HashSet<u64> = HashSet::new();
        let mut langs = BTreeSet::new();
        let mut book: Vec<KeywordDoc> = Vec::new();
        let mut flush = |book: &mut Vec<KeywordDoc>, writer: &IndexWriter<TantivyDocument>| -> Result<(), KeywordError> {
            if !book.is_empty() {
                let refs: Vec<&KeywordDoc> = book.iter().collect();
                langs.insert(self.add_book(writer, &refs)?);
                book.clear();
            }
            Ok(())
        };
        for doc in docs {
            let doc = doc?;
            if book.first().is_some_and(|first| first.book_id != doc.book_id) {
                flush(&mut book, writer)?;
            }
            if !seen.insert(doc.chunk_id) {
                // A repeated id replaces the earlier passage, as in `apply`.
                flush(&mut book, writer)?;
                writer.delete_term(self.chunk_term(doc.chunk_id));
            }
            book.push(doc);
        }
        flush(&mut book, writer)?;
        let count = seen.len() as u64;
        self.commit(writer, Payload { generation, count })?;
        *self.in_use.lock() = langs;
        Ok(count)
    }

    /// Restricts `query` to `books` when there are any. The filter scores
    /// nothing, so it changes which passages match, never their order.
    fn filtered(&self, query: Box<dyn Query>, books: &[u64]) -> Box<dyn Query> {
        if books.is_empty() {
            return query;
        }
        let filter = TermSetQuery::new(books.iter().map(|b| Term::from_field_u64(self.fields.book_id, *b)));
        Box::new(BooleanQuery::new(vec![
            (Occur::Must, query),
            (Occur::Must, Box::new(ConstScoreQuery::new(Box::new(filter), 0.0))),
        ]))
    }

    /// A query matching `text` as a contiguous token sequence on `exact`;
    /// `None` when it has no token.
    fn phrase_query(&self, text: &str) -> Option<Box<dyn Query>> {
        let mut analyzer = tokenize::plain_analyzer();
        let tokens = tokenize::analyze(&mut analyzer, text);
        let first = tokens.first()?.0;
        if tokens.len() == 1 {
            let term = Term::from_field_text(self.fields.exact, &tokens[0].1);
            return Some(Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs)));
        }
        // Offsets come from the analyzer, so a token it dropped (too long)
        // leaves the same gap in the query as it did in the passage.
        let terms = tokens
            .into_iter()
            .map(|(position, text)| (position - first, Term::from_field_text(self.fields.exact, &text)))
            .collect();
        Some(Box::new(PhraseQuery::new_with_offset(terms)))
    }

    /// Every words field's terms for `text`, as SHOULD clauses, each term
    /// once per field.
    fn word_clauses(&self, text: &str) -> Vec<(Occur, Box<dyn Query>)> {
        let langs: Vec<WordsLang> = self.in_use.lock().iter().copied().collect();
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for lang in langs {
            let Some(mut analyzer) = self.index.tokenizers().get(&analyzer_name(lang)) else {
                continue;
            };
            let field = self.fields.words_field(lang);
            let mut seen = HashSet::new();
            for (_, token) in tokenize::analyze(&mut analyzer, text) {
                if seen.insert(token.clone()) {
                    let term = Term::from_field_text(field, &token);
                    clauses.push((Occur::Should, Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs))));
                }
            }
        }
        clauses
    }

    /// Runs `query` and maps hits to chunk ids, best first.
    fn run(&self, query: &dyn Query, k: usize) -> Result<Vec<(u64, f32)>, KeywordError> {
        if k == 0 {
            return Ok(Vec::new());
        }
        let searcher = self.reader.searcher();
        // A few more than asked, so that passages tied on score are ordered
        // by chunk id rather than by where they sit in the segments: the
        // same library gives the same list after a rebuild.
        let top = searcher
            .search(query, &TopDocs::with_limit(k + TIE_MARGIN).order_by_score())
            .map_err(engine)?;
        let mut chunk_ids = ChunkIds::new(&searcher);
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            if let Some(chunk_id) = chunk_ids.get(address)? {
                hits.push((chunk_id, score));
            }
        }
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        hits.truncate(k);
        Ok(hits)
    }

    /// The `k` best passages for `query` by BM25, best first, only from
    /// `books` when it is not empty.
    ///
    /// Words in double quotes are phrases that must appear exactly (after
    /// lower-casing and accent folding); other words are stemmed per
    /// language and any of them may match. A run of CJK text outside quotes
    /// also scores as a phrase, since it is one word to its writer, but is
    /// not required. Any text is a valid query: there is no syntax.
    pub fn search(&self, query: &str, k: usize, books: &[u64]) -> Result<Vec<(u64, f32)>, KeywordError> {
        let parsed = parse_query(query);
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = parsed
            .phrases
            .iter()
            .filter_map(|p| self.phrase_query(p))
            .map(|q| (Occur::Must, q))
            .collect();
        let mut should = self.word_clauses(&parsed.words);
        for run in cjk_runs(&parsed.words) {
            if run.chars().count() > 2 {
                if let Some(q) = self.phrase_query(run) {
                    should.push((Occur::Should, q));
                }
            }
        }
        // SHOULD clauses next to a MUST only add to the score, so the
        // words go in one nested clause that must match when there is no
        // phrase, and may when there is.
        if !should.is_empty() {
            let occur = if clauses.is_empty() { Occur::Must } else { Occur::Should };
            clauses.push((occur, Box::new(BooleanQuery::new(should))));
        }
        if clauses.is_empty() {
            return Ok(Vec::new());
        }
        let query = self.filtered(Box::new(BooleanQuery::new(clauses)), books);
        self.run(query.as_ref(), k)
    }

    /// Passages that contain the whole of `text` as one contiguous token
    /// sequence (a sentence typed from memory, without quotes), best first.
    pub fn phrase_search(&self, text: &str, k: usize, books: &[u64]) -> Result<Vec<(u64, f32)>, KeywordError> {
        let Some(query) = self.phrase_query(text) else {
            return Ok(Vec::new());
        };
        let query = self.filtered(query, books);
        self.run(query.as_ref(), k)
    }
}

/// Maps hits to chunk ids through the `chunk_id` fast field, opening each
/// segment's column once.
struct ChunkIds<'a> {
    searcher: &'a Searcher,
    columns: HashMap<u32, Column<u64>>,
}

impl<'a> ChunkIds<'a> {
    fn new(searcher: &'a Searcher) -> Self {
        ChunkIds {
            searcher,
            columns: HashMap::new(),
        }
    }

    fn get(&mut self, address: DocAddress) -> Result<Option<u64>, KeywordError> {
        let column = match self.columns.entry(address.segment_ord) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let reader = self.searcher.segment_reader(address.segment_ord);
                e.insert(reader.fast_fields().u64("chunk_id").map_err(engine)?)
            }
        };
        Ok(column.first(address.doc_id))
    }
}

/// The maximal runs of CJK characters in `text`.
fn cjk_runs(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !tokenize::is_cjk(c)).filter(|run| !run.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_split_phrases_from_words() {
        let q = parse_query(r#"alpha "beta gamma" delta"#);
        assert_eq!(q.phrases, ["beta gamma"]);
        assert_eq!(q.words.split_whitespace().collect::<Vec<_>>(), ["alpha", "delta"]);
        // A trailing open quote is plain words.
        let q = parse_query(r#""one two" three "four five"#);
        assert_eq!(q.phrases, ["one two"]);
        assert_eq!(q.words.split_whitespace().collect::<Vec<_>>(), ["three", "four", "five"]);
        let q = parse_query("“smart quotes” too");
        assert_eq!(q.phrases, ["smart quotes"]);
    }

    #[test]
    fn detection_is_per_book_and_needs_confidence() {
        let doc = |text: &str, language: &str| KeywordDoc {
            chunk_id: 1,
            book_id: 1,
            language: language.into(),
            text: text.into(),
        };
        let english = doc(
            "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness.",
            "",
        );
        assert_eq!(book_language(&[&english]), Some(StemLang::En));
        let tagged = doc(&english.text, "de-DE");
        assert_eq!(book_language(&[&tagged]), Some(StemLang::De), "the tag wins over detection");
        let chinese = doc("我在年青时候也曾经做过许多梦，后来大半忘却了，但自己也并不以为可惜。", "");
        assert_eq!(book_language(&[&chinese]), None);
        assert_eq!(book_language(&[&doc("ok", "")]), None, "too little text to be sure");
    }
}
