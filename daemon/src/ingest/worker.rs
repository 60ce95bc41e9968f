//! An ingest worker actor: runs one job at a time through the pipeline
//! read → hash → parse → normalize → chunk → store and keyword-index →
//! embed → store vectors and vector-index.
//!
//! A book is stored in two stages. First its passages (with any vectors the
//! embed cache already has) replace the old content in one transaction and
//! go into both indexes: the book is `embedding` and searchable by keyword
//! within seconds of landing. Then the rest is embedded, and the vectors are
//! committed in groups until the last group makes the book `ready`. A crash
//! in between leaves an `embedding` book in the durable queue; its rerun
//! finds the committed vectors in the embed cache and embeds only the rest.
//!
//! Parsing runs in a sandboxed child process (`parse::sandbox`): a parser
//! crash, hang or memory blow-up fails the book with a reason. Chunking runs
//! on the blocking pool; a panic there is re-raised in the handler so the
//! worker fails and its supervisor (the pool) marks the book failed and
//! restarts the worker. Ordinary errors (unreadable file, unsupported
//! content) mark the book failed without any restart.

use std::path::Path;
use std::sync::atomic::Ordering;

use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::Job;
use crate::embed::{EmbedHandle, EmbedModel};
use crate::events::{EventBus, EventKind};
use crate::files::content_hash;
use crate::index::IndexHandle;
use crate::parse;
use crate::store::{BookContent, BookStatus, ChunkRecord, SectionRecord, StoreHandle, VectorBatch};
use crate::text::{self, chunk::ChunkConfig};

/// Passages per embedding call. Big enough to amortize ONNX overhead, small
/// enough that progress is visible and padding stays low after sorting.
pub const EMBED_BATCH: usize = 32;
/// Vectors are committed (and become searchable) at least every this many
/// passages: about 13 s of embedding here, so a crash costs little and a
/// big book is searchable by meaning chapter by chapter.
pub const VECTOR_COMMIT: usize = 256;

/// What a worker needs.
#[derive(Clone)]
pub(crate) struct WorkerDeps {
    pub store: StoreHandle,
    pub index: IndexHandle,
    pub keyword: crate::keyword::KeywordHandle,
    pub events: EventBus,
    pub embed: EmbedHandle,
    pub parser: std::sync::Arc<parse::sandbox::ParserConfig>,
    /// Set when a job found the embedding server not answering, cleared
    /// when a probe gets an answer: while set, each job first asks the
    /// server whether it is back (see `embedding_server_answers`).
    pub embed_server_down: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

pub(crate) enum WorkerMsg {
    Run(Job),
}

/// The actor.
#[derive(Clone)]
pub(crate) struct WorkerActor;

/// Tells whoever runs the worker (the pool) that its job is over, with
/// the worker's id and, when the job could not finish for a reason that
/// passes (the disk under the library refused its writes, the embedding
/// server did not answer), the job and the reason to announce, to run it
/// again later. A callback rather
/// than the pool's message type, so the worker does not depend on its
/// supervisor.
pub(crate) type DoneFn = std::sync::Arc<dyn Fn(ractor::ActorId, Option<(Job, String)>) + Send + Sync>;

pub(crate) struct WorkerState {
    deps: WorkerDeps,
    done: DoneFn,
}

impl Actor for WorkerActor {
    type Msg = WorkerMsg;
    type State = WorkerState;
    type Arguments = (WorkerDeps, DoneFn);

    async fn pre_start(&self, _myself: ActorRef<WorkerMsg>, (deps, done): Self::Arguments) -> Result<WorkerState, ActorProcessingErr> {
        Ok(WorkerState { deps, done })
    }

    async fn handle(&self, myself: ActorRef<WorkerMsg>, msg: WorkerMsg, state: &mut WorkerState) -> Result<(), ActorProcessingErr> {
        let WorkerMsg::Run(job) = msg;
        let path = mindory_proto::path_text::encode(&job.path);
        let outcome = run(&state.deps, &job).await;
        let mut again = None;
        // Only a probe that gets an answer clears this: a job can finish
        // without asking the server anything (every passage cached).
        if let Err(JobError::Unavailable { .. }) = &outcome {
            state.deps.embed_server_down.store(true, Ordering::Relaxed);
        }
        match outcome {
            Ok(()) => {}
            Err(JobError::Storage(reason)) => {
                // Nothing can be recorded in the store while its disk
                // refuses writes; the pool runs the job again later.
                tracing::warn!(book_id = job.book_id, %path, %reason, "ingest deferred");
                again = Some((job, format!("{reason}; {STORAGE_RETRY}")));
            }
            Err(JobError::ServerDown(reason)) => {
                tracing::debug!(book_id = job.book_id, %path, %reason, "ingest waits for the embedding server");
                again = Some((job, reason));
            }
            Err(JobError::Unavailable { reason, content_hash }) => {
                // The embedding server is down: the book keeps what it has
                // (searchable by words, the vectors committed so far) and
                // waits (the pool shows it queued meanwhile). Its attempts
                // are reset, so that waiting for the server never makes it
                // look like a file that crashes us.
                tracing::warn!(book_id = job.book_id, %path, %reason, "ingest deferred until the embedding server answers");
                match state.deps.store.note_waiting(job.book_id, content_hash, reason.clone()).await {
                    Ok(true) => {}
                    Ok(false) => tracing::debug!(
                        book_id = job.book_id,
                        "the book moved on meanwhile; its newer job records its state"
                    ),
                    Err(e) => tracing::debug!(book_id = job.book_id, error = %e, "cannot record why the book waits"),
                }
                again = Some((job, reason));
            }
            Err(JobError::Failed(reason) | JobError::ModelChanged(reason)) => {
                tracing::warn!(book_id = job.book_id, %path, %reason, "ingest failed");
                match state.deps.store.set_status(job.book_id, BookStatus::Failed, reason.clone()).await {
                    Ok(()) => state.deps.events.publish(EventKind::Failed {
                        book_id: job.book_id,
                        path,
                        reason,
                    }),
                    // The failure cannot be recorded either: run the job
                    // again once the disk takes writes.
                    Err(e @ crate::store::StoreError::Storage { .. }) => again = Some((job, format!("{e}; {STORAGE_RETRY}"))),
                    // The book was removed meanwhile; there is nothing to mark.
                    Err(_) => {}
                }
            }
            Err(JobError::Panic(payload)) => std::panic::resume_unwind(payload),
        }
        (state.done)(myself.get_id(), again);
        Ok(())
    }
}

/// What a book deferred by a full or read-only disk is told.
const STORAGE_RETRY: &str = "it is ingested again by itself once the library can be written";

enum JobError {
    /// A reason for `books --failed`.
    Failed(String),
    /// The embedding server did not answer after the book's content (of
    /// this hash) was stored; run the job again later.
    Unavailable { reason: String, content_hash: String },
    /// The embedding server did not answer before the job touched anything:
    /// run it again later, with nothing to record.
    ServerDown(String),
    /// The active embedding model changed under the job.
    ModelChanged(String),
    /// The disk under the library refused a write; run the job again later.
    Storage(String),
    /// The parser panicked; re-raised so supervision sees it.
    Panic(Box<dyn std::any::Any + Send>),
}

impl<E: std::fmt::Display> From<E> for JobError {
    fn from(e: E) -> Self {
        JobError::Failed(e.to_string())
    }
}

/// Everything parsing produces, before embedding.
struct Prepared {
    content: BookContent,
    /// Token estimate per passage, for sorting batches by length.
    tokens: Vec<usize>,
}

async fn run(deps: &WorkerDeps, job: &Job) -> Result<(), JobError> {
    embedding_server_answers(deps).await?;
    // The book's path now, not when it was queued: a folder renamed while
    // the job waited has already been recorded as a move.
    let book = stored(deps.store.begin_attempt(job.book_id).await)?;
    let job = &Job {
        book_id: job.book_id,
        path: mindory_proto::path_text::decode(&book.path),
    };
    let path_str = book.path;
    crate::test_hooks::crash_point("attempt-recorded");
    crate::test_hooks::delay_point("job-started").await;
    deps.events.publish(EventKind::Started {
        book_id: job.book_id,
        path: path_str.clone(),
    });
    // A model swap that finishes while this book is embedded makes the
    // store refuse the old model's vectors; the book is then embedded again
    // with the new model (its passages mostly come from the embed cache,
    // which the swap filled).
    let mut tries = 0;
    loop {
        let engine = deps.embed.current();
        let used = engine.model_id().to_string();
        match ingest(deps, job, engine).await {
            Err(JobError::ModelChanged(reason)) if tries < 3 => {
                tries += 1;
                tracing::info!(book_id = job.book_id, %reason, "embedding again with the new model");
                // The store switches a moment before the new model is
                // active; wait for it rather than spin.
                for _ in 0..100 {
                    if deps.embed.model_id() != used {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
            Err(JobError::ModelChanged(reason)) => return Err(JobError::Failed(reason)),
            other => return other,
        }
    }
}

/// While the embedding server is known to be down (a job found it not
/// answering, and no probe has got an answer since), one tiny request before
/// the job starts: a waiting book is then not read, parsed and stored again
/// at every retry only to fail at its first batch (that churned the store,
/// both indexes and the event stream once a minute per book). While the
/// server answers, jobs send nothing extra. Errors other than "the server
/// did not answer" show in the job's own batches.
async fn embedding_server_answers(deps: &WorkerDeps) -> Result<(), JobError> {
    if !deps.embed_server_down.load(Ordering::Relaxed) {
        return Ok(());
    }
    let engine = deps.embed.current();
    if !engine.model_id().starts_with(crate::embed::remote::REMOTE_PREFIX) {
        return Ok(());
    }
    match engine.embed_passages(vec!["ping".to_string()]).await {
        Err(e) if e.defers_ingest() => Err(JobError::ServerDown(e.to_string())),
        _ => {
            deps.embed_server_down.store(false, Ordering::Relaxed);
            Ok(())
        }
    }
}

/// Store errors as job errors: a model change is worth another try, and so
/// is a full disk once it has space again.
fn stored<T>(result: Result<T, crate::store::StoreError>) -> Result<T, JobError> {
    result.map_err(|e| match e {
        e @ crate::store::StoreError::ModelChanged { .. } => JobError::ModelChanged(e.to_string()),
        e @ crate::store::StoreError::Storage { .. } => JobError::Storage(e.to_string()),
        e => JobError::Failed(e.to_string()),
    })
}

/// One go at a book with one model: read, parse, store, embed.
async fn ingest(deps: &WorkerDeps, job: &Job, engine: EmbedModel) -> Result<(), JobError> {
    let (path, bytes) = read_current(deps, job).await?;
    let job = &Job {
        book_id: job.book_id,
        path,
    };
    let hash = content_hash(&bytes);

    // Identical content already embedded under another path: copy it.
    if let Some(content) = reuse_identical(deps, engine.model_id(), job.book_id, &hash).await? {
        let chunks = content.chunks.len() as u64;
        let title = content.title.clone();
        let _pending = deps.index.hold(job.book_id);
        let docs = keyword_docs(job.book_id, &content);
        let change = stored(deps.store.put_content(job.book_id, content).await)?;
        super::mirror(&deps.index, &deps.keyword, change, docs).await;
        deps.events.publish(EventKind::Ready {
            book_id: job.book_id,
            title,
            chunks,
            embedded: 0,
        });
        return Ok(());
    }

    let size = bytes.len() as u64;
    let parsed = parse::sandbox::parse(&deps.parser, &job.path, bytes)
        .await
        .map_err(|e| JobError::Failed(e.to_string()))?;
    tracing::debug!(
        book_id = job.book_id,
        format = parsed.format.name(),
        ms = parsed.elapsed.as_millis() as u64,
        peak_rss_kib = parsed.peak_rss_kib,
        "parsed"
    );
    let counter = deps.embed.token_counter().clone();
    let book_id = job.book_id;
    let model = engine.model_id().to_string();
    let t = std::time::Instant::now();
    let prepared = tokio::task::spawn_blocking(move || prepare(parsed, hash, size, book_id, model, &counter)).await;
    let mut prepared = match prepared {
        Ok(result) => result.map_err(JobError::Failed)?,
        Err(e) if e.is_panic() => return Err(JobError::Panic(e.into_panic())),
        Err(e) => return Err(JobError::Failed(format!("parser task was cancelled: {e}"))),
    };

    // Passages this model already embedded (the same text in another book,
    // another format of this book, an earlier version of it, or the part of
    // this job a crash interrupted) reuse their stored vectors; of the rest,
    // identical texts are embedded once.
    let total = prepared.content.chunks.len();
    let prepared_ms = t.elapsed().as_millis() as u64;
    let t = std::time::Instant::now();
    let vectors = cached_vectors(deps, engine.model_id(), &prepared.content.chunks).await?;
    let cache_ms = t.elapsed().as_millis() as u64;
    let mut first_of: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut copies: std::collections::HashMap<usize, Vec<usize>> = std::collections::HashMap::new();
    let mut order: Vec<usize> = Vec::new();
    for (i, chunk) in prepared.content.chunks.iter().enumerate() {
        if !vectors[i].is_empty() {
            continue;
        }
        match first_of.entry(chunk.text.as_str()) {
            std::collections::hash_map::Entry::Occupied(e) => copies.entry(*e.get()).or_default().push(i),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(i);
                order.push(i);
            }
        }
    }
    drop(first_of);
    let to_embed = order.len() as u64;
    let missing = order.len() + copies.values().map(Vec::len).sum::<usize>();
    // Embed in batches sorted by length: similar lengths pad less.
    order.sort_by_key(|&i| std::cmp::Reverse(prepared.tokens[i]));
    let texts: Vec<String> = order.iter().map(|&i| prepared.content.chunks[i].text.clone()).collect();
    prepared.content.vectors = vectors;
    let content_hash = prepared.content.content_hash.clone();
    let model = prepared.content.model.clone();
    let title = prepared.content.title.clone();

    // Stage one: the passages (and the vectors already known) are stored
    // and keyword-indexed before any embedding, so the book can be found
    // by its words at once. Until both indexes have the change, readers see
    // the book as indexing; `Ready` (or `Searchable`) is announced once its
    // passages can be found.
    {
        let _pending = deps.index.hold(book_id);
        let docs = keyword_docs(book_id, &prepared.content);
        let t = std::time::Instant::now();
        let change = stored(deps.store.put_content(book_id, prepared.content).await)?;
        let stored_ms = t.elapsed().as_millis() as u64;
        crate::test_hooks::crash_point("content-committed");
        let t = std::time::Instant::now();
        super::mirror(&deps.index, &deps.keyword, change, docs).await;
        tracing::debug!(
            book_id,
            passages = total,
            prepared_ms,
            cache_ms,
            stored_ms,
            indexed_ms = t.elapsed().as_millis() as u64,
            "stored and keyword-indexed"
        );
    }
    if order.is_empty() {
        deps.events.publish(EventKind::Ready {
            book_id,
            title,
            chunks: total as u64,
            embedded: 0,
        });
        return Ok(());
    }
    deps.events.publish(EventKind::Searchable {
        book_id,
        title: title.clone(),
        chunks: total as u64,
    });

    // Stage two: embed the rest, committing vectors every
    // `VECTOR_COMMIT` passages so that search by meaning covers more of
    // the book as it goes, and a crash loses at most that much work.
    let mut done = (total - missing) as u64;
    deps.events.publish(EventKind::Progress {
        book_id,
        done,
        total: total as u64,
    });
    let mut unsaved: Vec<(u32, Vec<f32>)> = Vec::new();
    let batches = order.len().div_ceil(EMBED_BATCH);
    for (n, (batch, batch_texts)) in order.chunks(EMBED_BATCH).zip(texts.chunks(EMBED_BATCH)).enumerate() {
        let embedded = engine.embed_passages(batch_texts.to_vec()).await.map_err(|e| {
            if e.defers_ingest() {
                JobError::Unavailable {
                    reason: e.to_string(),
                    content_hash: content_hash.clone(),
                }
            } else {
                JobError::Failed(e.to_string())
            }
        })?;
        for (&i, v) in batch.iter().zip(embedded) {
            for &copy in copies.get(&i).into_iter().flatten() {
                unsaved.push((copy as u32, v.clone()));
            }
            unsaved.push((i as u32, v));
        }
        crate::test_hooks::crash_point("mid-embedding");
        crate::test_hooks::crash_on_marked_file(&job.path);
        let last = n + 1 == batches;
        if !last && unsaved.len() < VECTOR_COMMIT {
            continue;
        }
        done += unsaved.len() as u64;
        let batch = VectorBatch {
            content_hash: content_hash.clone(),
            model: model.clone(),
            vectors: std::mem::take(&mut unsaved),
            last,
        };
        // The last batch makes the book ready: hold it until the index has it.
        let _pending = last.then(|| deps.index.hold(book_id));
        let change = match deps.store.put_vectors(book_id, batch).await {
            Ok(Some(change)) => change,
            Ok(None) => {
                tracing::info!(book_id, "the file changed while it was being embedded; the newer job takes over");
                return Ok(());
            }
            Err(crate::store::StoreError::NoSuchBook(_)) => {
                tracing::info!(book_id, "the book was removed while it was being embedded");
                return Ok(());
            }
            Err(e) => return stored(Err(e)),
        };
        super::mirror(&deps.index, &deps.keyword, change, Vec::new()).await;
        deps.events.publish(EventKind::Progress {
            book_id,
            done,
            total: total as u64,
        });
    }
    deps.events.publish(EventKind::Ready {
        book_id,
        title,
        chunks: total as u64,
        embedded: to_embed,
    });
    Ok(())
}

/// A book's passages as the keyword index takes them.
fn keyword_docs(book_id: u64, content: &BookContent) -> Vec<crate::keyword::KeywordDoc> {
    content
        .chunks
        .iter()
        .map(|c| crate::keyword::KeywordDoc {
            chunk_id: crate::store::chunk_id(book_id, c.ordinal),
            book_id,
            language: content.language.clone(),
            text: c.text.clone(),
        })
        .collect()
}

/// The stored vectors this model already made for each passage's exact
/// text; an empty vector where there is none.
async fn cached_vectors(deps: &WorkerDeps, model: &str, chunks: &[ChunkRecord]) -> Result<Vec<Vec<f32>>, JobError> {
    let reader = deps.store.reader().clone();
    let model = model.to_string();
    let texts: Vec<String> = chunks.iter().map(|c| c.text.clone()).collect();
    let found = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        reader.cached_vectors(&model, &refs)
    })
    .await
    .map_err(|e| JobError::Failed(e.to_string()))??;
    Ok(found.into_iter().map(Option::unwrap_or_default).collect())
}

/// Reads the book's file where the store says it is. A file missing at the
/// path the job started with may have moved since (its folder renamed, and
/// the move recorded while the job waited): then the recorded path is
/// tried, as long as it keeps changing.
async fn read_current(deps: &WorkerDeps, job: &Job) -> Result<(std::path::PathBuf, Vec<u8>), JobError> {
    let mut path = job.path.clone();
    for _ in 0..3 {
        match read_file(&path).await {
            Err(gone @ JobError::Failed(_)) if !path.exists() => {
                let reader = deps.store.reader().clone();
                let id = job.book_id;
                let now = tokio::task::spawn_blocking(move || reader.book(id))
                    .await
                    .map_err(|e| JobError::Failed(e.to_string()))??;
                match now {
                    Some(book) if mindory_proto::path_text::decode(&book.path) != path => {
                        path = mindory_proto::path_text::decode(&book.path)
                    }
                    _ => return Err(gone),
                }
            }
            other => return other.map(|bytes| (path, bytes)),
        }
    }
    read_file(&path).await.map(|bytes| (path, bytes))
}

async fn read_file(path: &Path) -> Result<Vec<u8>, JobError> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || crate::files::read_book_file(&owned))
        .await
        .map_err(|e| JobError::Failed(e.to_string()))?
        .map_err(|e| {
            if e.is_gone() {
                JobError::Failed(format!(
                    "{} ({}); it is read again when a scan finds it there or elsewhere",
                    crate::files::GONE,
                    path.display()
                ))
            } else {
                JobError::Failed(e.to_string())
            }
        })
}

/// The content of a ready book with the same bytes, re-keyed for `book_id`.
async fn reuse_identical(deps: &WorkerDeps, model: &str, book_id: u64, hash: &str) -> Result<Option<BookContent>, JobError> {
    let reader = deps.store.reader().clone();
    let model = model.to_string();
    let hash = hash.to_string();
    let found = tokio::task::spawn_blocking(move || -> Result<Option<BookContent>, crate::store::StoreError> {
        let Some(source) = reader
            .books_with_hash(&hash)?
            .into_iter()
            .find(|b| b.id != book_id && b.status == BookStatus::Ready)
        else {
            return Ok(None);
        };
        let ids = reader.chunk_ids_of(source.id)?;
        let chunks = reader.chunks(&ids)?;
        let vectors = reader.vectors_of(source.id)?;
        if vectors.len() != chunks.len() || vectors.iter().any(|(_, v)| v.model != model) {
            return Ok(None);
        }
        let Some(text) = reader.text(source.id)? else { return Ok(None) };
        Ok(Some(BookContent {
            title: source.title,
            author: source.author,
            language: source.language,
            format: source.format,
            text,
            sections: source.sections.into_iter().map(|s| SectionRecord { chunks: 0, ..s }).collect(),
            chunks: chunks.into_iter().map(|c| ChunkRecord { book_id, ..c }).collect(),
            vectors: vectors.into_iter().map(|(_, v)| v.vector).collect(),
            model,
            content_hash: hash,
            size: source.size,
        }))
    })
    .await
    .map_err(|e| JobError::Failed(e.to_string()))??;
    Ok(found)
}

/// Normalize and chunk a parsed book: pure CPU work for the blocking pool.
fn prepare(
    parsed: parse::sandbox::Parsed,
    hash: String,
    size: u64,
    book_id: u64,
    model: String,
    counter: &crate::embed::TokenCounter,
) -> Result<Prepared, String> {
    let parse::sandbox::Parsed { format, document, .. } = parsed;
    let book = text::assemble(&document);
    let passages = text::chunk::chunk(&book, ChunkConfig::default(), &|s| counter.count(s));
    if passages.is_empty() {
        return Err(parse::ParseError::Empty.to_string());
    }
    // Char offsets for every boundary, converted in one pass.
    let mut bounds: Vec<usize> = passages
        .iter()
        .flat_map(|p| [p.start, p.end])
        .chain(book.sections.iter().map(|s| s.start))
        .collect();
    bounds.sort_unstable();
    bounds.dedup();
    let chars = text::byte_to_char_offsets(&book.text, &bounds);
    let to_char = |b: usize| chars[bounds.binary_search(&b).expect("every boundary was converted")] as u64;
    let chunks: Vec<ChunkRecord> = passages
        .iter()
        .enumerate()
        .map(|(i, p)| ChunkRecord {
            book_id,
            ordinal: i as u32,
            text: book.text[p.start..p.end].to_string(),
            start: to_char(p.start),
            end: to_char(p.end),
            heading: book.sections.get(p.section).map(|s| s.heading.clone()).unwrap_or_default(),
            page: p.page.clone(),
        })
        .collect();
    if chunks.len() >= 1 << crate::store::ORDINAL_BITS {
        return Err(format!("too many passages ({})", chunks.len()));
    }
    let sections = book
        .sections
        .iter()
        .map(|s| SectionRecord {
            heading: s.heading.clone(),
            start: to_char(s.start),
            chunks: 0,
        })
        .collect();
    let title = document.title.clone().unwrap_or_default();
    Ok(Prepared {
        tokens: passages.iter().map(|p| p.tokens).collect(),
        content: BookContent {
            title,
            author: document.author.unwrap_or_default(),
            language: document.language.unwrap_or_default(),
            format: format.name().to_string(),
            text: book.text,
            sections,
            chunks,
            vectors: Vec::new(),
            model,
            content_hash: hash,
            size,
        },
    })
}
