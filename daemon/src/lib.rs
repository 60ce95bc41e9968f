//! The Mindory daemon as a library: [`run`] boots the supervised actors,
//! serves gRPC on a Unix socket, and shuts down in order when `shutdown`
//! resolves (or a client calls `Shutdown`, or SIGINT/SIGTERM in `mindoryd`).
//!
//! Boot reads top to bottom in [`run`]: claim the socket → open the store →
//! load the embedding model while the answer model's backend, the keyword
//! index and (when the library already has vectors, whose length it then
//! knows) the vector index are loaded or rebuilt beside it → start the supervisor and its actors →
//! resume interrupted jobs → serve.

pub mod assistant;
pub mod embed;
pub mod error_kind;
pub mod events;
pub mod files;
pub mod index;
pub mod ingest;
pub mod keyword;
pub mod library;
pub mod llm;
pub mod parse;
pub mod read;
mod rpc;
pub use rpc::ServeError;
pub mod search;
pub mod store;
mod supervisor;
pub mod swap;
pub mod telemetry;
pub mod test_hooks;
pub mod text;

#[doc(hidden)]
pub mod fuzzing;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::embed::EmbedHandle;
use crate::events::EventBus;
use crate::index::IndexHandle;
use crate::ingest::worker::WorkerDeps;
use crate::ingest::IngestHandle;
use crate::keyword::KeywordHandle;
use crate::library::LibraryHandle;
use crate::llm::LlmHandle;
use crate::store::{StoreHandle, StoreReader};
use crate::supervisor::SupervisorHandle;
use crate::swap::SwapHandle;

/// How the daemon is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the database and the index live.
    pub data_dir: PathBuf,
    /// The Unix socket to serve on.
    pub socket: PathBuf,
    /// Where `mindory models fetch` put the model files.
    pub models_dir: PathBuf,
    /// Ingest workers (parsing runs in parallel; embedding is shared).
    pub workers: usize,
    /// ONNX intra-op threads for ingestion.
    pub embed_threads: usize,
    /// The embedding model to run: a short name or id from
    /// `mindory_proto::models::EMBEDDING_MODELS` (default: MiniLM). A data
    /// directory's vectors come from one model; the store refuses another.
    pub embedding_model: String,
    /// How long shutdown waits for running ingest jobs before leaving them
    /// queued for the next start.
    pub drain_timeout: Duration,
    /// How parsers are isolated and limited (time, memory).
    pub parser: parse::sandbox::ParserConfig,
    /// How library folders are followed (events or polling, intervals).
    pub watch: library::WatchConfig,
    /// Which LLM answers questions, and how.
    pub llm: llm::config::LlmConfig,
    /// Which engine holds the vector index (`[index]`): usearch in the data
    /// directory, or a PostgreSQL database with pgvector.
    pub index: index::IndexConfig,
    /// Where passages are embedded (`[embed]`): here with `embedding_model`,
    /// or on a remote OpenAI-compatible server, whose model then picks the
    /// model of a new library instead.
    pub embed: embed::EmbedConfig,
    /// The config file `llm` was read from (shown by `mindory llm`).
    pub config_path: PathBuf,
}

impl Config {
    /// Defaults for everything but the paths.
    pub fn new(data_dir: PathBuf, socket: PathBuf, models_dir: PathBuf) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Config {
            data_dir,
            socket,
            workers: 2,
            embed_threads: cores,
            embedding_model: mindory_proto::models::EMBEDDING_MODEL_ID.to_string(),
            drain_timeout: Duration::from_secs(120),
            watch: library::WatchConfig::default(),
            llm: llm::config::LlmConfig::default(),
            index: index::IndexConfig::default(),
            embed: embed::EmbedConfig::default(),
            config_path: llm::config::default_path(),
            parser: parse::sandbox::ParserConfig::new(mindory_proto::models::ModelPaths::new(&models_dir).pdfium),
            models_dir,
        }
    }
}

/// What to do when the database file could not be read or written.
fn io_hint(e: &store::StoreError) -> &'static str {
    match e {
        store::StoreError::Db(redb::Error::Io(_)) => {
            "; the data directory must be on a writable disk with free space (or start mindoryd with --data-dir elsewhere)"
        }
        _ => "",
    }
}

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The socket could not be claimed or served.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The data directory could not be created or made private (a
    /// read-only file system, no permission).
    #[error(
        "cannot use the data directory {path}: {source}; start mindoryd with --data-dir on a writable disk (the library is written there)"
    )]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error("cannot open the database in {path}: {source}{}", io_hint(source))]
    Store {
        /// The database file.
        path: PathBuf,
        /// The store error.
        source: store::StoreError,
    },
    /// The embedding model could not be loaded.
    #[error(transparent)]
    Embed(#[from] embed::EmbedError),
    /// The vector index could not be loaded or rebuilt.
    #[error(transparent)]
    Index(#[from] index::IndexError),
    /// The keyword index could not be opened or rebuilt.
    #[error(transparent)]
    Keyword(#[from] keyword::KeywordError),
    /// An actor could not be started, or failed past its restart budget.
    #[error("{0}")]
    Actor(String),
}

/// Says at start whether parsers run contained in worker processes.
fn log_parser_isolation(parser: &parse::sandbox::ParserConfig) {
    match &parser.worker_exe {
        Some(exe) => tracing::info!(
            worker = %exe.display(),
            timeout_s = parser.timeout.as_secs(),
            memory_mib = parser.memory_limit >> 20,
            "parsing in sandboxed worker processes"
        ),
        None => tracing::warn!(
            "no mindoryd executable found for parse workers; parsing in-process, where a native crash or hang in a parser is not contained"
        ),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("a boot step panicked")
}

/// Runs the daemon until `shutdown` resolves, a client calls `Shutdown`, or
/// an actor fails past its restart budget. Returns after an ordered
/// shutdown: stop accepting, drain ingestion, flush the index, remove the socket.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), DaemonError> {
    let config = Arc::new(config);
    rpc::socket::claim(&config.socket)?;
    std::fs::create_dir_all(&config.data_dir)
        .and_then(|()| files::make_private(&config.data_dir))
        .map_err(|source| DaemonError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;

    // The library's own model (the one its vectors come from, which
    // `models use` changes) wins over the configured one, which only picks
    // the model of a new library.
    let db_path = config.data_dir.join("mindory.redb");
    let preferred = match config.embed.backend {
        embed::EmbedBackend::Openai => config.embed.model_id().map_err(embed::EmbedError::from)?,
        embed::EmbedBackend::Local => mindory_proto::models::embedding_model(&config.embedding_model)
            .map(|m| m.id.to_string())
            .unwrap_or_else(|_| config.embedding_model.clone()),
    };
    let reader = blocking({
        let db_path = db_path.clone();
        move || match StoreReader::open(&db_path, &preferred) {
            Err(store::StoreError::Model { stored, requested }) => {
                tracing::warn!(
                    library = %stored,
                    configured = %requested,
                    "the library was embedded with another model than the configured one; using the library's (`mindory models use` switches it)"
                );
                StoreReader::open(&db_path, &stored)
            }
            other => other,
        }
    })
    .await
    .map_err(|source| DaemonError::Store {
        path: db_path.clone(),
        source,
    })?;
    let model_id = reader.model_id().map_err(|source| DaemonError::Store { path: db_path, source })?;

    // The answer model's backend (a local model's vocabulary is read from
    // its GGUF) needs nothing from the library: it is built while the
    // embedding model loads, and the LLM actor's first start takes it.
    let early_llm = llm::build_early(&config.llm, &config.models_dir, &config.config_path);

    // The keyword index needs nothing but the store: it opens (or rebuilds)
    // while the embedding model loads.
    let (data_dir, r) = (config.data_dir.clone(), reader.clone());
    let words = tokio::spawn(blocking(move || {
        let t0 = Instant::now();
        keyword::open_or_rebuild(&data_dir, &r).map(|opened| (opened, t0.elapsed()))
    }));

    // A library with vectors knows their length, so the vector index opens
    // beside the model load too: cold start is the slower of the two, not
    // their sum. A new library waits for the model to learn the length.
    let stored_dimensions = {
        let (r, model) = (reader.clone(), model_id.clone());
        blocking(move || r.stored_dimensions(&model)).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read a stored vector's length; the vector index waits for the model");
            None
        })
    };
    let open_vectors = |model: String, dims: usize| {
        let (index_config, data_dir, r) = (config.index.clone(), config.data_dir.clone(), reader.clone());
        tokio::spawn(blocking(move || {
            let t0 = Instant::now();
            index::open_or_rebuild(&index_config, &data_dir, &r, &model, dims).map(|opened| (opened, t0.elapsed()))
        }))
    };
    let early_vectors = stored_dimensions.map(|dims| (dims, open_vectors(model_id.clone(), dims)));

    let models_dir = config.models_dir.clone();
    let embed_threads = config.embed_threads;
    let t0 = Instant::now();
    let mut remote = config.embed.clone();
    if remote.dimensions == 0 && model_id.starts_with(embed::remote::REMOTE_PREFIX) {
        // A library already embedded by the server knows its vector length:
        // the daemon then starts (and serves keyword search, reading and
        // Ask) while the server is down, instead of failing its probe.
        if let Some(dimensions) = stored_dimensions {
            remote.dimensions = dimensions;
        }
    }
    let embed_model = model_id.clone();
    let embed = match blocking(move || EmbedHandle::start_with(&embed_model, &models_dir, embed_threads, Some(remote))).await {
        Ok(embed) => embed,
        Err(e) => {
            // The indexes opening beside the model run on blocking threads,
            // which cannot be cancelled: wait for them, so that nothing
            // writes to the data dir once `run` has returned.
            let _ = words.await;
            if let Some((_, opening)) = early_vectors {
                let _ = opening.await;
            }
            return Err(e.into());
        }
    };
    tracing::info!(
        model = embed.model_id(),
        ms = t0.elapsed().as_millis() as u64,
        "embedding model loaded"
    );

    // Both indexes are derived from the store and independent of each
    // other. The vector index comes from the configured backend; a database
    // that cannot be reached stops the start here, since the daemon cannot
    // serve searches without its index. An index opened early for another
    // length than the loaded model's (a remote server reconfigured, say) is
    // opened again for the model's, which rebuilds it from the store.
    let vectors = match early_vectors {
        Some((dims, opening)) if dims == embed.dimensions() && embed.model_id() == model_id => opening,
        Some((dims, opening)) => {
            tracing::warn!(
                stored = dims,
                model = embed.dimensions(),
                library = %model_id,
                loaded = embed.model_id(),
                "the loaded model differs from the one the vector index was opened for; reopening it"
            );
            let _ = opening.await;
            open_vectors(embed.model_id(), embed.dimensions())
        }
        None => open_vectors(embed.model_id(), embed.dimensions()),
    };
    let (vectors, words) = tokio::join!(vectors, words);
    let (vectors, words) = (
        vectors.expect("the vector index's boot task panicked"),
        words.expect("the keyword index's boot task panicked"),
    );
    let ((vector_backend, vector_index, generation, origin), took) = vectors?;
    tracing::info!(
        backend = ?config.index.backend,
        vectors = vector_index.len(),
        ?origin,
        ms = took.as_millis() as u64,
        "vector index ready"
    );
    let ((keyword_index, origin), took) = words?;
    tracing::info!(
        passages = keyword_index.len(),
        ?origin,
        ms = took.as_millis() as u64,
        "keyword index ready"
    );
    let keyword_index = Arc::new(keyword_index);

    // The supervision tree: each actor module starts itself under the root
    // supervisor and hands back its handle, in dependency order.
    let (fatal_tx, mut fatal_rx) = watch::channel(None::<String>);
    let supervisor = SupervisorHandle::start(fatal_tx)
        .await
        .map_err(|e| DaemonError::Actor(e.to_string()))?;
    let actor = DaemonError::Actor;
    let store = StoreHandle::start(&supervisor, reader.clone()).await.map_err(actor)?;
    let index = IndexHandle::start(
        &supervisor,
        vector_backend,
        vector_index,
        embed.model_id().to_string(),
        generation,
        store.reader().clone(),
    )
    .await
    .map_err(actor)?;
    let keyword = KeywordHandle::start(&supervisor, keyword_index, store.reader().clone())
        .await
        .map_err(actor)?;
    let events = EventBus::start(&supervisor).await.map_err(actor)?;
    log_parser_isolation(&config.parser);
    let deps = WorkerDeps {
        store: store.clone(),
        index: index.clone(),
        keyword: keyword.clone(),
        events: events.clone(),
        embed: embed.clone(),
        parser: Arc::new(config.parser.clone()),
        embed_server_down: Arc::default(),
    };
    let ingest = IngestHandle::start(&supervisor, deps, config.workers).await.map_err(actor)?;
    let library = LibraryHandle::start(&supervisor, store.clone(), ingest.clone(), events.clone(), config.watch.clone())
        .await
        .map_err(actor)?;
    let llm_args = llm::LlmArgs {
        config: config.llm.clone(),
        config_path: config.config_path.clone(),
        models_dir: config.models_dir.clone(),
        early: early_llm,
    };
    let llm = LlmHandle::start(&supervisor, llm_args).await.map_err(actor)?;
    let model_switch = search::ModelSwitch::default();
    let searcher = search::Searcher::new(
        embed.clone(),
        index.clone(),
        keyword.clone(),
        store.reader().clone(),
        model_switch.clone(),
    );
    let assistant = assistant::Assistant::new(store.reader().clone(), searcher.clone(), llm.clone());
    let swap_args = swap::SwapArgs {
        store: store.clone(),
        index: index.clone(),
        embed: embed.clone(),
        events: events.clone(),
        switch: model_switch,
        models_dir: config.models_dir.clone(),
        // Half the cores: searches (and ingest) go on beside a swap.
        threads: (config.embed_threads / 2).max(1),
        serve_threads: config.embed_threads,
    };
    let swap = SwapHandle::start(&supervisor, swap_args).await.map_err(actor)?;

    // Serve until asked to stop.
    let (request_tx, mut request_rx) = watch::channel(false);
    let (stopping_tx, stopping_rx) = watch::channel(false);
    let core = rpc::Core {
        store,
        index: index.clone(),
        keyword,
        searcher,
        events,
        ingest: ingest.clone(),
        library: library.clone(),
        embed,
        llm,
        assistant,
        swap,
        data_dir: config.data_dir.clone(),
        models_dir: config.models_dir.clone(),
        started: Instant::now(),
        shutdown_request: Arc::new(request_tx),
        stopping: stopping_rx,
    };
    let fatal_reason = Arc::new(parking_lot::Mutex::new(None::<String>));
    let reason_slot = fatal_reason.clone();
    let stop_signal = async move {
        tokio::select! {
            _ = shutdown => tracing::info!("shutdown requested by signal"),
            _ = request_rx.wait_for(|v| *v) => tracing::info!("shutdown requested by a client"),
            reason = fatal_rx.wait_for(|v| v.is_some()) => {
                *reason_slot.lock() = reason.ok().and_then(|r| r.clone());
            }
        }
        // Event streams end now so the server's graceful stop can finish.
        let _ = stopping_tx.send(true);
    };
    let served = rpc::serve(core, &config.socket, stop_signal).await;

    // Ordered teardown: the server has stopped accepting; now stop the
    // watchers, drain ingestion, flush the index, stop the actors, remove
    // the socket.
    library.stop();
    tracing::info!("draining ingestion");
    if tokio::time::timeout(config.drain_timeout, ingest.drain()).await.is_err() {
        tracing::warn!(
            "ingest jobs still running after {:?}; they resume at next start",
            config.drain_timeout
        );
    }
    if let Err(e) = index.flush().await {
        tracing::error!(error = %e, "flushing the vector index failed; it will be rebuilt at next start");
    }
    supervisor.stop().await;
    rpc::socket::release(&config.socket);
    tracing::info!("stopped");
    served?;
    let reason = fatal_reason.lock().take();
    match reason {
        Some(reason) => Err(DaemonError::Actor(reason)),
        None => Ok(()),
    }
}
