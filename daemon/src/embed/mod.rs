//! The embedding engines and the threads that run them.
//!
//! [`Embedder`] is the small trait every engine implements:
//! [`FastEmbedder`] runs all-MiniLM-L6-v2 (the default) through fastembed
//! and ONNX Runtime; [`StaticEmbedder`] (in `potion.rs`) runs model2vec
//! static models such as potion-base-8M in pure Rust;
//! [`StringOnnxEmbedder`] (in `use_multilingual.rs`) runs the multilingual
//! Universal Sentence Encoder, whose ONNX graph tokenizes raw strings with
//! onnxruntime-extensions custom operators; [`RemoteEmbedder`] (in
//! `remote.rs`, with the `[embed]` settings) sends passages to an
//! OpenAI-compatible server. [`load_engine`] picks the engine
//! for a catalogued model by name or id. Inference is CPU-bound
//! and takes `&mut self`, so each engine instance lives on a dedicated OS
//! thread and async callers talk to it through a channel ([`EmbedHandle`]).
//! Two instances run: one for ingestion (all cores, large batches) and one
//! for queries (one core, one text), so a search stays fast while a book is
//! being embedded. Each engine's thread has an owner thread that restarts it
//! after a panic (the batch in flight fails, later ones are served), within
//! a restart budget.
//!
//! Passage boundaries never depend on the embedding model: the
//! [`TokenCounter`] the chunker uses is always MiniLM's tokenizer (its files
//! are always installed), so switching models re-embeds the same passages.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fastembed::{InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel};
use mindory_proto::models::{embedding_model, verify_present, EmbeddingEngine, ModelError, ModelPaths, EMBEDDING_MODEL_ID};
use tokio::sync::{mpsc, oneshot};

use crate::supervisor::{RestartBudget, RESTART_BUDGET};

mod potion;
pub mod remote;
#[cfg(test)]
mod tests;
mod use_multilingual;
mod wordpiece;

pub use potion::{StaticEmbedder, MAX_STATIC_TOKENS};
pub use remote::{EmbedBackend, EmbedConfig, RemoteEmbedder, RemoteError};
pub use use_multilingual::StringOnnxEmbedder;

/// Maximum tokens one passage may have, including `[CLS]` and `[SEP]`
/// (MiniLM's tokens: they also decide where passages end, whatever model
/// embeds them).
pub const MAX_TOKENS: usize = 256;

/// Why the embedding engine could not start or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// Model files are missing or damaged.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// ONNX Runtime could not be loaded from the models directory.
    #[error("cannot load ONNX Runtime from {path}: {detail}; run `mindory models fetch` again")]
    Runtime {
        /// The shared library that failed to load.
        path: String,
        /// The loader's message.
        detail: String,
    },
    /// The onnxruntime-extensions custom-op library (which the multilingual
    /// encoder's graph needs) could not be loaded or registered.
    #[error("cannot load the onnxruntime-extensions library {path}: {detail}; run `mindory models fetch` to install it again")]
    Extensions {
        /// The custom-op library.
        path: String,
        /// The loader's or ONNX Runtime's message.
        detail: String,
    },
    /// The model or tokenizer failed to load or to run.
    #[error("embedding model error: {0}")]
    Engine(String),
    /// The engine panicked while embedding this batch; its thread was
    /// restarted and later batches are served.
    #[error("the embedding engine crashed on this batch ({0}); it has restarted, so try again, and report the crash if it repeats")]
    Crashed(String),
    /// The embedding thread is gone: the daemon is shutting down, or the
    /// engine panicked more often than its restart budget allows.
    #[error("the embedding thread has stopped; restart the daemon")]
    Stopped,
    /// The remote embedding server failed or is misconfigured.
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

impl EmbedError {
    /// What kind of failure this is (see [`crate::error_kind`]). Missing
    /// or unloadable model files are fixed by the user (`mindory models
    /// fetch`); a stopped thread is the daemon going away.
    pub fn kind(&self) -> crate::error_kind::ErrorKind {
        use crate::error_kind::ErrorKind;
        match self {
            EmbedError::Model(_) | EmbedError::Runtime { .. } | EmbedError::Extensions { .. } => ErrorKind::Precondition,
            EmbedError::Engine(_) => ErrorKind::Internal,
            // A retry runs on the restarted thread.
            EmbedError::Stopped | EmbedError::Crashed(_) => ErrorKind::Unavailable,
            EmbedError::Remote(e) => e.kind(),
        }
    }

    /// Whether a book whose embedding failed this way should wait and run
    /// again rather than fail: only when the embedding server did not
    /// answer. (A crashed or stopped local engine keeps failing the book, so
    /// that a passage that crashes it cannot come back forever.)
    pub fn defers_ingest(&self) -> bool {
        matches!(self, EmbedError::Remote(e) if e.kind() == crate::error_kind::ErrorKind::Unavailable)
    }
}

/// An engine that turns texts into unit-length vectors.
pub trait Embedder: Send + 'static {
    /// Stable id of the model, stored with every vector it produces.
    fn model_id(&self) -> &str;
    /// Length of every vector.
    fn dimensions(&self) -> usize;
    /// Embeds `texts` in one batch; the result is in the same order.
    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;
    /// Frees what the engine can build again on its next batch (an ONNX
    /// Runtime session and its memory arena). The default holds nothing
    /// worth freeing.
    fn release(&mut self) {}
}

/// all-MiniLM-L6-v2 (int8 weights) through fastembed with mean pooling.
pub struct FastEmbedder {
    /// The session; `None` after [`Embedder::release`] until the next batch
    /// loads it again from `models_dir`.
    model: Option<TextEmbedding>,
    models_dir: PathBuf,
    threads: usize,
}

/// The process's one ONNX Runtime environment (the `ort` crate allows only
/// one per process, ever), shared by every ONNX engine: MiniLM's sessions
/// through fastembed and the multilingual encoder's.
fn shared_environment(paths: &ModelPaths) -> Result<ort::environment::Environment, EmbedError> {
    static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, (String, String)>> = OnceLock::new();
    let result = ENVIRONMENT.get_or_init(|| {
        let path = paths.onnxruntime.display().to_string();
        let built = match ort::init_from(&path) {
            Ok(builder) => builder.with_name("mindory").build().map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        built.map_err(|detail| (path, detail))
    });
    result.clone().map_err(|(path, detail)| EmbedError::Runtime { path, detail })
}

impl FastEmbedder {
    /// Loads the model from `models_dir` with `threads` intra-op threads.
    pub fn load(models_dir: &Path, threads: usize) -> Result<Self, EmbedError> {
        Ok(FastEmbedder {
            model: Some(Self::session(models_dir, threads)?),
            models_dir: models_dir.to_path_buf(),
            threads,
        })
    }

    fn session(models_dir: &Path, threads: usize) -> Result<TextEmbedding, EmbedError> {
        let paths = verify_present(models_dir)?;
        let environment = shared_environment(&paths)?;
        let read = |p: &Path| std::fs::read(p).map_err(|e| EmbedError::Engine(format!("read {}: {e}", p.display())));
        let tokenizer_files = TokenizerFiles {
            tokenizer_file: read(&paths.tokenizer)?,
            config_file: read(&paths.config)?,
            special_tokens_map_file: read(&paths.special_tokens_map)?,
            tokenizer_config_file: read(&paths.tokenizer_config)?,
        };
        // Mean pooling is what all-MiniLM-L6-v2 was trained with; without it
        // fastembed would silently use the CLS token.
        let model = UserDefinedEmbeddingModel::new(read(&paths.onnx)?, tokenizer_files).with_pooling(Pooling::Mean);
        let mut options = InitOptionsUserDefined::new()
            .with_max_length(MAX_TOKENS)
            .with_intra_threads(threads.max(1));
        options.environment = Some(environment);
        TextEmbedding::try_new_from_user_defined(model, options).map_err(|e| EmbedError::Engine(e.to_string()))
    }

    /// The tokenizer the model uses (`None` while the session is released).
    pub fn tokenizer(&self) -> Option<tokenizers::Tokenizer> {
        self.model.as_ref().map(|m| m.tokenizer.clone())
    }
}

impl Embedder for FastEmbedder {
    fn model_id(&self) -> &str {
        EMBEDDING_MODEL_ID
    }

    fn dimensions(&self) -> usize {
        384
    }

    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let model = loaded(&mut self.model, || Self::session(&self.models_dir, self.threads))?;
        let mut vectors = model
            .embed(texts, Some(texts.len().max(1)))
            .map_err(|e| EmbedError::Engine(e.to_string()))?;
        for v in &mut vectors {
            normalize(v);
        }
        Ok(vectors)
    }

    /// Drops the session: ONNX Runtime keeps the tensors of the largest
    /// batch it ran in its arena for the session's life (about 700 MiB after
    /// a batch of 32 long passages), and a new session loads in under a
    /// second.
    fn release(&mut self) {
        self.model = None;
    }
}

/// The session in `slot`, loaded by `load` first when a release dropped it
/// (the ONNX engines' lazy reload after [`Embedder::release`]).
fn loaded<T>(slot: &mut Option<T>, load: impl FnOnce() -> Result<T, EmbedError>) -> Result<&mut T, EmbedError> {
    match slot {
        Some(session) => Ok(session),
        None => Ok(slot.insert(load()?)),
    }
}

/// Scales `v` to unit length (cosine then equals the dot product).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Loads the engine for the catalogued model `name_or_id` (a short name such
/// as `potion-base-8M` or an id such as
/// `sentence-transformers/all-MiniLM-L6-v2@int8`), with `threads` threads.
pub fn load_engine(name_or_id: &str, models_dir: &Path, threads: usize) -> Result<Box<dyn Embedder>, EmbedError> {
    let model = embedding_model(name_or_id)?;
    Ok(match model.engine {
        EmbeddingEngine::Onnx => Box::new(FastEmbedder::load(models_dir, threads)?),
        EmbeddingEngine::Static => Box::new(StaticEmbedder::load(models_dir, model, threads)?),
        EmbeddingEngine::StringOnnx => Box::new(StringOnnxEmbedder::load(models_dir, model, threads)?),
    })
}

/// An ingest engine and a query engine of one model.
type EnginePair = (Box<dyn Embedder>, Box<dyn Embedder>);

/// The ingest engine (`threads` threads) and the query engine (one thread)
/// of a model. A static model's table is loaded once and shared by both. A
/// remote model (`openai:…`) must be the one `remote` points at.
fn load_pair(name_or_id: &str, models_dir: &Path, threads: usize, remote: Option<&EmbedConfig>) -> Result<EnginePair, EmbedError> {
    if name_or_id.starts_with(remote::REMOTE_PREFIX) {
        let (ingest, query) = remote::load_pair(name_or_id, remote)?;
        return Ok((Box::new(ingest), Box::new(query)));
    }
    let model = embedding_model(name_or_id)?;
    Ok(match model.engine {
        EmbeddingEngine::Onnx => {
            // Each session reads and optimizes the graph on its own (about
            // half a second each): side by side, they cost a cold start one.
            let (ingest, query) = std::thread::scope(|scope| {
                let query = scope.spawn(|| FastEmbedder::load(models_dir, 1));
                let ingest = FastEmbedder::load(models_dir, threads);
                (ingest, query.join().expect("loading the query session panicked"))
            });
            (Box::new(ingest?), Box::new(query?))
        }
        EmbeddingEngine::Static => {
            let ingest = StaticEmbedder::load(models_dir, model, threads)?;
            let query = ingest.with_threads(1);
            (Box::new(ingest), Box::new(query))
        }
        EmbeddingEngine::StringOnnx => (
            Box::new(StringOnnxEmbedder::load(models_dir, model, threads)?),
            Box::new(StringOnnxEmbedder::load(models_dir, model, 1)?),
        ),
    })
}

/// Counts model tokens, so chunks never exceed what the model reads.
#[derive(Clone)]
pub struct TokenCounter {
    tokenizer: Arc<tokenizers::Tokenizer>,
    /// The same counts, much faster, for BERT WordPiece tokenizers.
    fast: Option<Arc<wordpiece::WordPieceCounter>>,
}

impl TokenCounter {
    /// Wraps a tokenizer; truncation and padding are switched off so that
    /// counts are real lengths.
    pub fn new(mut tokenizer: tokenizers::Tokenizer) -> Self {
        tokenizer.with_truncation(None).ok();
        tokenizer.with_padding(None);
        let fast = tokenizer
            .to_string(false)
            .ok()
            .and_then(|json| wordpiece::WordPieceCounter::from_json(&json))
            .map(|mut counter| {
                counter.add_tokens(tokenizer.get_added_tokens_decoder().values().map(|t| t.content.clone()));
                Arc::new(counter)
            });
        TokenCounter {
            tokenizer: Arc::new(tokenizer),
            fast,
        }
    }

    /// MiniLM's tokenizer exactly as [`FastEmbedder`] builds it, read from
    /// the models directory without loading the model or ONNX Runtime: the
    /// one counter passage chunking uses, whatever model embeds.
    pub fn minilm(models_dir: &Path) -> Result<Self, EmbedError> {
        let paths = verify_present(models_dir)?;
        let engine = |what: &Path, e: &dyn std::fmt::Display| {
            EmbedError::Engine(format!("{}: {e}; run `mindory models fetch` again", what.display()))
        };
        let mut tokenizer = tokenizers::Tokenizer::from_file(&paths.tokenizer).map_err(|e| engine(&paths.tokenizer, &e))?;
        let map = std::fs::read(&paths.special_tokens_map).map_err(|e| engine(&paths.special_tokens_map, &e))?;
        let map: serde_json::Value = serde_json::from_slice(&map).map_err(|e| engine(&paths.special_tokens_map, &e))?;
        // fastembed registers every token of special_tokens_map.json as a
        // special token on top of tokenizer.json (flags from the map when
        // it gives them all); the same here, so counts cannot drift.
        let mut specials = Vec::new();
        for value in map.as_object().into_iter().flat_map(|o| o.values()) {
            if let Some(content) = value.as_str() {
                specials.push(tokenizers::AddedToken {
                    content: content.into(),
                    special: true,
                    ..Default::default()
                });
            } else if let (Some(content), Some(single_word), Some(lstrip), Some(rstrip), Some(normalized)) = (
                value["content"].as_str(),
                value["single_word"].as_bool(),
                value["lstrip"].as_bool(),
                value["rstrip"].as_bool(),
                value["normalized"].as_bool(),
            ) {
                specials.push(tokenizers::AddedToken {
                    content: content.into(),
                    special: true,
                    single_word,
                    lstrip,
                    rstrip,
                    normalized,
                });
            }
        }
        for token in specials {
            tokenizer
                .add_special_tokens([token])
                .map_err(|e| engine(&paths.special_tokens_map, &e))?;
        }
        Ok(Self::new(tokenizer))
    }

    /// Tokens of `text` without the special tokens.
    pub fn count(&self, text: &str) -> usize {
        if let Some(n) = self.fast.as_ref().and_then(|f| f.count(text)) {
            return n;
        }
        self.exact_count(text)
    }

    /// The tokenizer's own count (what [`count`](Self::count) matches).
    fn exact_count(&self, text: &str) -> usize {
        self.tokenizer
            .encode_fast(text, false)
            .map(|e| e.len())
            .unwrap_or_else(|_| text.len() / 3 + 1)
    }
}

/// A batch of texts and where its vectors go.
type Job = (Vec<String>, Reply);

/// Where an engine thread sends the result of a batch.
type Reply = oneshot::Sender<Result<Vec<Vec<f32>>, EmbedError>>;

/// One loaded model: the threads of its ingest and query engines. Cheap to
/// clone; the threads end when the last clone is dropped.
#[derive(Clone)]
pub struct EmbedModel {
    passages: mpsc::UnboundedSender<Job>,
    queries: mpsc::UnboundedSender<Job>,
    model_id: Arc<str>,
    dimensions: usize,
}

impl EmbedModel {
    fn spawn(ingest: Box<dyn Embedder>, query: Box<dyn Embedder>, embedded: Arc<AtomicU64>) -> Self {
        let model_id: Arc<str> = ingest.model_id().into();
        let dimensions = ingest.dimensions();
        EmbedModel {
            passages: spawn_engine_thread("mindory-embed-ingest", ingest, Some(embedded), Some(RELEASE_AFTER_IDLE)),
            queries: spawn_engine_thread("mindory-embed-query", query, None, None),
            model_id,
            dimensions,
        }
    }

    /// Id of the model, stored with every vector it makes.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Vector length.
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Embeds one batch of passages on the ingest engine.
    pub async fn embed_passages(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        submit(&self.passages, texts).await
    }

    /// Embeds a search query on the query engine.
    pub async fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let mut v = submit(&self.queries, vec![text.to_string()]).await?;
        v.pop().ok_or(EmbedError::Engine("no vector for the query".into()))
    }
}

/// A cloneable way to reach the active model's embedding threads from async
/// code. A model swap loads the next model beside it ([`load`](Self::load))
/// and makes it active ([`activate`](Self::activate)) when the library's
/// vectors switch; callers that must not mix models take a
/// [`current`](Self::current) snapshot and use it throughout.
#[derive(Clone)]
pub struct EmbedHandle {
    active: Arc<parking_lot::RwLock<EmbedModel>>,
    counter: TokenCounter,
    embedded: Arc<AtomicU64>,
    /// The `[embed]` settings, for loading the remote model they name.
    remote: Option<Arc<EmbedConfig>>,
}

impl EmbedHandle {
    /// Loads the catalogued model `model` (short name or id; see
    /// [`load_engine`]) as an ingest and a query engine, starts a thread for
    /// each, and counts tokens with MiniLM's tokenizer whatever the model.
    ///
    /// Blocking: call it from `spawn_blocking` or before the runtime is busy.
    pub fn start(model: &str, models_dir: &Path, ingest_threads: usize) -> Result<Self, EmbedError> {
        Self::start_with(model, models_dir, ingest_threads, None)
    }

    /// [`start`](Self::start) with the `[embed]` settings, which a remote
    /// model id (`openai:<model>@<host>`) needs to reach its server. The
    /// server must answer now unless `dimensions` is set.
    pub fn start_with(model: &str, models_dir: &Path, ingest_threads: usize, remote: Option<EmbedConfig>) -> Result<Self, EmbedError> {
        let counter = TokenCounter::minilm(models_dir)?;
        let (ingest, query) = load_pair(model, models_dir, ingest_threads, remote.as_ref())?;
        let mut handle = Self::from_engines(ingest, query, counter);
        handle.remote = remote.map(Arc::new);
        Ok(handle)
    }

    /// Starts the threads around two already-built engines.
    pub fn from_engines(ingest: Box<dyn Embedder>, query: Box<dyn Embedder>, counter: TokenCounter) -> Self {
        let embedded = Arc::new(AtomicU64::new(0));
        let model = EmbedModel::spawn(ingest, query, embedded.clone());
        EmbedHandle {
            active: Arc::new(parking_lot::RwLock::new(model)),
            counter,
            embedded,
            remote: None,
        }
    }

    /// Loads another catalogued model beside the active one (its passages
    /// count in [`embedded_count`](Self::embedded_count) too). Blocking.
    ///
    /// A `background` model's threads (its own, and ONNX Runtime's, which
    /// inherit the policy of the thread that creates them) run in the idle
    /// scheduling class (see [`lower_thread_priority`]), so that searches
    /// keep their speed while it re-embeds a library.
    pub fn load(&self, model: &str, models_dir: &Path, ingest_threads: usize, background: bool) -> Result<EmbedModel, EmbedError> {
        let embedded = self.embedded.clone();
        let (model, models_dir, remote) = (model.to_string(), models_dir.to_path_buf(), self.remote.clone());
        let build = move || -> Result<EmbedModel, EmbedError> {
            if background {
                lower_thread_priority();
            }
            let (ingest, query) = load_pair(&model, &models_dir, ingest_threads, remote.as_deref())?;
            Ok(EmbedModel::spawn(ingest, query, embedded))
        };
        if !background {
            return build();
        }
        // A thread of its own, so that the lowered priority stays with the
        // model's threads and does not leak into the caller's.
        std::thread::Builder::new()
            .name("mindory-embed-load".into())
            .spawn(build)
            .map_err(|e| EmbedError::Engine(format!("cannot start a thread: {e}")))?
            .join()
            .map_err(|_| EmbedError::Engine("loading the model panicked".into()))?
    }

    /// The id of the model the `[embed]` server serves (`openai:<model>@<host>:<port>`),
    /// when the settings name one (`backend = "openai"`); an error says what
    /// is wrong with them.
    pub fn remote_model_id(&self) -> Option<Result<String, RemoteError>> {
        self.remote
            .as_deref()
            .filter(|c| c.backend == EmbedBackend::Openai)
            .map(EmbedConfig::model_id)
    }

    /// The active model.
    pub fn current(&self) -> EmbedModel {
        self.active.read().clone()
    }

    /// Makes `model` the active one; the previous one's threads end when
    /// its last snapshot is dropped.
    pub fn activate(&self, model: EmbedModel) {
        *self.active.write() = model;
    }

    /// Id of the active model.
    pub fn model_id(&self) -> String {
        self.active.read().model_id.to_string()
    }

    /// Vector length of the active model.
    pub fn dimensions(&self) -> usize {
        self.active.read().dimensions
    }

    /// Token counting for chunking: always MiniLM's tokenizer.
    pub fn token_counter(&self) -> &TokenCounter {
        &self.counter
    }

    /// Passages embedded since start (queries are not counted).
    pub fn embedded_count(&self) -> u64 {
        self.embedded.load(Ordering::Relaxed)
    }

    /// Embeds one batch of passages with the active model.
    pub async fn embed_passages(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.current().embed_passages(texts).await
    }

    /// Embeds a search query with the active model.
    pub async fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        self.current().embed_query(text).await
    }
}

/// Puts the calling thread in Linux's idle scheduling class (`SCHED_IDLE`),
/// falling back to nice 10 where that is refused (policies and priorities are
/// per thread; threads it creates inherit them). Best effort: a failure only
/// costs search latency during a swap.
///
/// Why the idle class and not only a nice value: the kernel's fair scheduler
/// lets a running task finish its time slice before a task that wakes up
/// takes the core, whatever their nice values, so each search that woke on
/// the re-embedding core waited up to a slice (p99 3.7-4× normal at nice 10).
/// A task of the idle class is preempted at once by any other task that
/// wakes, and only runs on time no one else wants. The price: while the
/// machine is busy (an ingest on every core), the swap waits for it.
fn lower_thread_priority() {
    let tid = nix::unistd::gettid().as_raw();
    let param = libc::sched_param { sched_priority: 0 };
    // nix wraps neither call, so these two stay on libc.
    // SAFETY: plain syscalls on the calling thread's own id, with a param
    // that lives across the call.
    let idle = unsafe { libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) };
    if idle == 0 {
        return;
    }
    let idle_error = std::io::Error::last_os_error();
    // SAFETY: as above.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10) };
    if result != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), %idle_error, "could not lower the embedding threads' priority");
    }
}

async fn submit(tx: &mpsc::UnboundedSender<Job>, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
    let (reply, rx) = oneshot::channel();
    tx.send((texts, reply)).map_err(|_| EmbedError::Stopped)?;
    rx.await.map_err(|_| EmbedError::Stopped)?
}

/// How long the ingest engine waits without a batch before it frees its
/// session's memory (see [`Embedder::release`]). An idle daemon then holds
/// a few hundred MiB instead of the arena of the longest batch it ever ran
/// (1 GiB after a book of long passages), and the next ingest pays under a
/// second to load the session again (0.7 s for MiniLM, BENCHMARKS.md). The query engine keeps its
/// session: its batches are one short query, and searches must not wait.
pub const RELEASE_AFTER_IDLE: Duration = Duration::from_secs(60);

/// Starts the thread that owns `engine` and returns the queue that feeds it.
/// With `release_after`, the engine frees its memory when no batch came for
/// that long.
///
/// The owner thread (`<name>-owner`) runs the engine on a worker thread
/// (`<name>`) and waits for it. A panic in a batch ends the worker: the owner
/// fails the batch that was in flight with [`EmbedError::Crashed`] and starts
/// a new worker on the same engine and queue, so later requests are served.
/// When workers panic more often than [`RESTART_BUDGET`] times within
/// [`RESTART_WINDOW`](crate::supervisor::RESTART_WINDOW), the owner gives up:
/// the queue closes and every request, queued or new, gets
/// [`EmbedError::Stopped`] instead of waiting forever.
///
/// The engine is reused after a panic: neither engine keeps state from one
/// batch to the next (ONNX Runtime's session, the tokenizer and the static
/// table are only read while embedding), so a batch that panicked leaves
/// nothing half written for the next one.
fn spawn_engine_thread(
    name: &str,
    engine: Box<dyn Embedder>,
    counter: Option<Arc<AtomicU64>>,
    release_after: Option<Duration>,
) -> mpsc::UnboundedSender<Job> {
    let (tx, rx) = mpsc::unbounded_channel::<Job>();
    let worker_name = name.to_string();
    std::thread::Builder::new()
        .name(format!("{name}-owner"))
        .spawn(move || own_engine(&worker_name, engine, rx, counter.as_deref(), release_after))
        .expect("spawning the embedding thread");
    tx
}

/// The owner thread's loop: (re)starts the worker until the queue closes or
/// the restart budget is spent. Threads it starts inherit its scheduling
/// class and priority.
fn own_engine(
    name: &str,
    mut engine: Box<dyn Embedder>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    counter: Option<&AtomicU64>,
    release_after: Option<Duration>,
) {
    let mut budget = RestartBudget::new(RESTART_BUDGET);
    loop {
        // The batch the worker is running, so that the owner can answer it
        // when the worker dies before it does.
        let mut in_flight: Option<Reply> = None;
        // A scoped thread borrows the engine and the queue, so both outlive
        // a worker that panics.
        let ended = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn_scoped(scope, || serve(engine.as_mut(), &mut jobs, counter, &mut in_flight, release_after))
                .map(|worker| worker.join())
        });
        let panic = match ended {
            // The thread ends when every handle is dropped.
            Ok(Ok(())) => return,
            Ok(Err(panic)) => crate::parse::sandbox::panic_message(panic),
            Err(e) => {
                tracing::error!(thread = name, error = %e, "cannot start the embedding thread; embedding has stopped");
                return;
            }
        };
        if let Some(reply) = in_flight.take() {
            let _ = reply.send(Err(EmbedError::Crashed(panic.clone())));
        }
        if let Err(failures) = budget.spend() {
            tracing::error!(
                thread = name,
                panic = %panic,
                failures,
                "the embedding thread keeps panicking; embedding has stopped until the daemon restarts"
            );
            return;
        }
        tracing::error!(thread = name, panic = %panic, "the embedding thread panicked; the batch failed and the thread restarts");
    }
}

/// The worker thread's loop: embeds one batch at a time until the queue
/// closes, and releases the engine's memory after `release_after` without a
/// batch.
fn serve(
    engine: &mut dyn Embedder,
    jobs: &mut mpsc::UnboundedReceiver<Job>,
    counter: Option<&AtomicU64>,
    in_flight: &mut Option<Reply>,
    release_after: Option<Duration>,
) {
    // A timer for waiting on the async queue from this plain thread, with
    // the idle limit. Without one (no release is wanted, or the timer cannot
    // be built) the thread waits for batches without a timeout.
    let idle_timer = release_after.and_then(|idle| {
        let clock = tokio::runtime::Builder::new_current_thread().enable_time().build().ok()?;
        Some((clock, idle))
    });
    // Whether the engine holds memory it could release. A fresh engine does:
    // MiniLM's session alone (its weights as ONNX Runtime prepares them) is
    // about 240 MiB, which a daemon that boots and ingests nothing would
    // otherwise keep for its life.
    let mut holding = true;
    loop {
        let job = match &idle_timer {
            // The timer is made inside `block_on`: it needs the clock's context.
            Some((clock, idle)) if holding => match clock.block_on(async { tokio::time::timeout(*idle, jobs.recv()).await }) {
                Ok(job) => job,
                Err(_) => {
                    engine.release();
                    return_freed_memory();
                    holding = false;
                    tracing::debug!(after = ?idle, "the embedding engine released its memory while idle");
                    continue;
                }
            },
            _ => jobs.blocking_recv(),
        };
        let Some((texts, reply)) = job else { return };
        holding = true;
        *in_flight = Some(reply);
        crate::test_hooks::panic_point("embed-batch");
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let result = engine.embed(&refs);
        if let (Ok(v), Some(c)) = (&result, counter) {
            c.fetch_add(v.len() as u64, Ordering::Relaxed);
        }
        if let Some(reply) = in_flight.take() {
            let _ = reply.send(result);
        }
    }
}

/// Hands memory the allocator keeps after a large free back to the system,
/// so that a released engine shows in the daemon's resident size. glibc
/// keeps freed heap pages otherwise.
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
