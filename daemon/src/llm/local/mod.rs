//! The local backend: a GGUF model (by default Qwen2.5-Coder-1.5B-Instruct;
//! Gemma 3 270M and Qwen2.5-Coder-0.5B are the alternatives) running in the
//! daemon's process, fully offline, behind the actor's
//! [`Backend`](super::Backend) trait.
//!
//! Inference is CPU-bound and takes seconds, so it never runs on an async
//! thread: one dedicated thread (`mindory-llm`) owns the model and answers
//! one request at a time from a queue. The model loads on the first
//! request (1–2 s), so a daemon that never answers a question never pays
//! its memory. The context is capped (8,192 tokens by default), which
//! bounds the key/value cache and the rotary tables.
//!
//! Messages become a prompt in the model's own format ([`chat`]): an
//! instruct model's chat template from its GGUF, or, for a base model that
//! has none, a plain "Question: / Answer:" transcript that base models
//! continue, stopped where the next "Question:" would begin.

mod bpe;
mod chat;
mod engine;
mod error;
mod model;
mod tokenizer;
mod tokens;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

pub use chat::{Prompt, PromptFormat};
pub use engine::{Finish, LocalModel};
pub use error::LocalError;
pub use tokens::GgufTokenizer;

use super::{ChatMessage, GenOutcome, GenParams, LlmError, TokenCount};

/// One request for the model thread.
struct Job {
    messages: Vec<ChatMessage>,
    params: GenParams,
    tx: mpsc::Sender<String>,
    reply: oneshot::Sender<Result<GenOutcome, LlmError>>,
}

/// Where the model thread is.
#[derive(Debug, Clone)]
enum LoadState {
    NotLoaded,
    Loaded { ms: u64 },
    Failed(String),
}

/// The local backend; cheap to share.
pub struct LocalBackend {
    jobs: std::sync::mpsc::Sender<Job>,
    counter: TokenCount,
    model_id: String,
    context: usize,
    path: PathBuf,
    state: Arc<Mutex<LoadState>>,
    /// How to switch models, appended to the readiness detail.
    hint: String,
    /// The GGUF carries a chat template (an instruct model).
    instruct: bool,
}

fn model_id_of(path: &Path) -> String {
    path.file_stem()
        .map_or_else(|| "gemma-3".into(), |s| s.to_string_lossy().into_owned())
}

impl LocalBackend {
    /// Reads the tokenizer (for counting) and starts the model thread; the
    /// weights load on the first request.
    pub fn start(path: &Path, config: &super::config::LlmConfig) -> Result<Self, LocalError> {
        // The metadata (the whole vocabulary and merges as GGUF values,
        // about 27 MiB for Qwen) is dropped once the tokenizer is built: the
        // first load reads it again (a fraction of a second before a model
        // of a gigabyte loads) rather than an idle daemon keeping it.
        let (content, _) = tokens::open_gguf(path)?;
        let tokenizer = GgufTokenizer::from_gguf(&content).map_err(|e| error::gguf_error(path, e.0))?;
        let instruct = chat::has_chat_template(&content);
        drop(content);
        let tokenizer = Arc::new(tokenizer);
        let counter: TokenCount = {
            let t = tokenizer.clone();
            Arc::new(move |s: &str| t.count(s))
        };
        let context = (config.context_tokens as usize).clamp(256, 32_768);
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let state = Arc::new(Mutex::new(LoadState::NotLoaded));
        let thread_state = state.clone();
        let thread_path = path.to_path_buf();
        std::thread::Builder::new()
            .name("mindory-llm".into())
            .spawn(move || model_thread(&thread_path, context, rx, &thread_state))
            .map_err(|source| LocalError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(LocalBackend {
            jobs,
            counter,
            model_id: model_id_of(path),
            context,
            path: path.to_path_buf(),
            state,
            hint: String::new(),
            instruct,
        })
    }

    /// Adds how to switch models to what `mindory llm` shows.
    pub fn with_hint(mut self, hint: String) -> Self {
        self.hint = hint;
        self
    }
}

/// The model thread: loads the model on the first job, then answers jobs
/// one at a time until the backend (and with it the sender) is dropped.
/// A reload after a panic or a failure reads the file again.
fn model_thread(path: &Path, context: usize, jobs: std::sync::mpsc::Receiver<Job>, state: &Mutex<LoadState>) {
    let mut model: Option<LocalModel> = None;
    while let Ok(job) = jobs.recv() {
        if job.tx.is_closed() {
            let _ = job.reply.send(Err(LlmError::Cancelled));
            continue;
        }
        if model.is_none() {
            let t = Instant::now();
            match LocalModel::load(path, context) {
                Ok(m) => {
                    let ms = t.elapsed().as_millis() as u64;
                    tracing::info!(model = m.model_id(), ms, context, "local model loaded");
                    *state.lock() = LoadState::Loaded { ms };
                    model = Some(m);
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot load the local model");
                    *state.lock() = LoadState::Failed(e.to_string());
                    let _ = job.reply.send(Err(e.into()));
                    continue;
                }
            }
        }
        let Some(m) = model.as_mut() else { continue };
        let reply = job.reply;
        // The thread owns the model and must outlive a panic in it (a bug
        // in a kernel, a template, the sampler): the request gets an error,
        // the model is dropped (its cache may be half written) and loads
        // again on the next request, as after a start.
        let run = std::panic::AssertUnwindSafe(|| generate_one(m, job.messages, job.params, job.tx));
        let result = match std::panic::catch_unwind(run) {
            Ok(result) => result,
            Err(panic) => {
                let what = crate::parse::sandbox::panic_message(panic);
                tracing::error!(panic = %what, "the local model panicked; it reloads on the next request");
                model = None;
                *state.lock() = LoadState::NotLoaded;
                Err(LlmError::Crashed(what))
            }
        };
        let _ = reply.send(result);
    }
}

/// Runs one request on the loaded model and streams its text to `tx`.
fn generate_one(
    m: &mut LocalModel,
    messages: Vec<ChatMessage>,
    params: GenParams,
    tx: mpsc::Sender<String>,
) -> Result<GenOutcome, LlmError> {
    crate::test_hooks::panic_point("llm-generate");
    // A full channel means a slow reader: wait for it (bounded memory).
    // A closed one means the caller went away: stop generating.
    let mut on_text = |piece: &str| tx.blocking_send(piece.to_string()).is_ok();
    let still_wanted = || !tx.is_closed();
    let mut params = params;
    params.stop.extend(m.format().stops().iter().map(|s| s.to_string()));
    let prompt = m.prompt(&messages)?;
    let stats = m.generate_while(&prompt, &params, &still_wanted, &mut on_text)?;
    // The prefix reuse shows here: `reused_tokens` of the prompt came from
    // the cache, the rest cost `prefill_ms`.
    tracing::debug!(
        prompt_tokens = stats.prompt_tokens,
        reused_tokens = stats.reused_tokens,
        prefill_ms = stats.prefill_ms,
        completion_tokens = stats.completion_tokens,
        total_ms = stats.total_ms,
        "local generation finished"
    );
    match stats.finish {
        Finish::Cancelled => Err(LlmError::Cancelled),
        finish => Ok(GenOutcome {
            prompt_tokens: stats.prompt_tokens as u64,
            completion_tokens: stats.completion_tokens as u64,
            first_token_ms: stats.first_token_ms,
            total_ms: stats.total_ms,
            finish: if finish == Finish::Length { "length" } else { "stop" }.into(),
        }),
    }
}

impl super::Backend for LocalBackend {
    fn name(&self) -> &'static str {
        "local"
    }

    fn model(&self) -> String {
        self.model_id.clone()
    }

    fn context_tokens(&self) -> usize {
        self.context
    }

    fn counter(&self) -> TokenCount {
        self.counter.clone()
    }

    fn generate(
        &self,
        messages: Vec<ChatMessage>,
        params: GenParams,
        tx: mpsc::Sender<String>,
    ) -> BoxFuture<'static, Result<GenOutcome, LlmError>> {
        let (reply, answer) = oneshot::channel();
        let sent = self.jobs.send(Job {
            messages,
            params,
            tx,
            reply,
        });
        Box::pin(async move {
            sent.map_err(|_| LlmError::Unavailable("the local model thread has stopped".into()))?;
            answer
                .await
                .map_err(|_| LlmError::Unavailable("the local model thread stopped while answering".into()))?
        })
    }

    fn follows_instructions(&self) -> bool {
        self.instruct
    }

    fn readiness(&self) -> BoxFuture<'static, (bool, String)> {
        let state = self.state.lock().clone();
        let path = self.path.display().to_string();
        let context = self.context;
        let hint = self.hint.clone();
        Box::pin(async move {
            let (ready, detail) = match state {
                LoadState::NotLoaded => (
                    true,
                    format!("offline, in process; weights {path}; they load on the first question (about 2 s); context capped at {context} tokens"),
                ),
                LoadState::Loaded { ms } => (true, format!("offline, in process; loaded from {path} in {ms} ms; context capped at {context} tokens")),
                LoadState::Failed(why) => (false, why),
            };
            match hint.is_empty() {
                true => (ready, detail),
                false => (ready, format!("{detail}; {hint}")),
            }
        })
    }
}
