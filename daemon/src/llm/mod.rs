//! The LLM actor: one place that knows which model answers and how to reach
//! it. Two backends sit behind [`Backend`]: an OpenAI-compatible HTTP
//! endpoint ([`openai`]) and a GGUF model (Qwen2.5-Coder 1.5B by default,
//! or Gemma 3) running in process on a dedicated thread ([`local`]). The actor picks one from [`config::LlmConfig`] when it
//! starts and never blocks: each generation runs in its own task (HTTP) or
//! on the model thread (local), and streams text pieces through a channel.
//!
//! Cancellation is by dropping: when the receiving side of the token
//! channel goes away (the gRPC caller cancelled or disconnected), the
//! backend notices on its next send or at once through `Sender::closed`,
//! drops the HTTP request or stops decoding, and returns
//! [`LlmError::Cancelled`].

pub mod chat;
pub mod config;
#[cfg(any(test, feature = "test-hooks"))]
pub mod fake;
pub mod local;
pub mod openai;
pub mod sse;

use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::mpsc;

use crate::error_kind::ErrorKind;
use crate::supervisor::{Slot, SupervisorHandle};
use config::{BackendChoice, LlmConfig};

pub use chat::{ChatMessage, GenParams, Role};

/// What a finished generation reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenOutcome {
    /// Prompt tokens (the backend's own count when it reports one).
    pub prompt_tokens: u64,
    /// Answer tokens.
    pub completion_tokens: u64,
    /// From the request to the first piece of text.
    pub first_token_ms: u64,
    /// From the request to the end.
    pub total_ms: u64,
    /// "stop" or "length".
    pub finish: String,
}

/// Why an answer could not be generated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// No backend is configured or usable.
    #[error("{0}")]
    NotConfigured(String),
    /// The HTTP endpoint failed.
    #[error(transparent)]
    OpenAi(#[from] openai::OpenAiError),
    /// The local model failed.
    #[error(transparent)]
    Local(#[from] local::LocalError),
    /// The actor or the model thread is gone.
    #[error("the LLM is unavailable: {0}")]
    Unavailable(String),
    /// The caller went away.
    #[error("the request was cancelled")]
    Cancelled,
    /// The local model panicked on this request; it reloads on the next.
    #[error("the local model crashed on this request ({0}); ask again, it reloads")]
    Crashed(String),
}

impl LlmError {
    /// What kind of failure this is, for the RPC layer: no backend is a
    /// precondition the user fixes; an endpoint, actor or model thread that
    /// failed is unavailable, since a retry may succeed.
    pub fn kind(&self) -> ErrorKind {
        match self {
            LlmError::NotConfigured(_) => ErrorKind::Precondition,
            LlmError::OpenAi(e) => e.kind(),
            LlmError::Local(e) => e.kind(),
            LlmError::Unavailable(_) | LlmError::Crashed(_) => ErrorKind::Unavailable,
            LlmError::Cancelled => ErrorKind::Cancelled,
        }
    }
}

/// Counts tokens the way the answering model does (or a safe estimate).
pub type TokenCount = Arc<dyn Fn(&str) -> usize + Send + Sync>;

/// One way of answering.
pub trait Backend: Send + Sync + 'static {
    /// "local" or "openai".
    fn name(&self) -> &'static str;
    /// The model that answers.
    fn model(&self) -> String;
    /// Prompt plus answer, in tokens.
    fn context_tokens(&self) -> usize;
    /// The backend's token counter.
    fn counter(&self) -> TokenCount;
    /// Streams an answer into `tx`; see the module docs for cancellation.
    fn generate(
        &self,
        messages: Vec<ChatMessage>,
        params: GenParams,
        tx: mpsc::Sender<String>,
    ) -> BoxFuture<'static, Result<GenOutcome, LlmError>>;
    /// Whether it can answer now, and a line saying why or why not.
    fn readiness(&self) -> BoxFuture<'static, (bool, String)>;
    /// Whether the model follows instructions (a chat model) rather than
    /// continuing text (a base model): only the former is asked for the
    /// short answer that widens a question's retrieval.
    fn follows_instructions(&self) -> bool {
        true
    }
    /// The endpoint, for "openai" (never the key).
    fn base_url(&self) -> String {
        String::new()
    }
}

/// What `mindory llm` shows, plus the token counter the prompt builder uses.
#[derive(Clone)]
pub struct LlmInfo {
    /// "local", "openai" or "none".
    pub backend: String,
    /// The model.
    pub model: String,
    /// Whether it can answer now.
    pub ready: bool,
    /// Why not, or a description.
    pub detail: String,
    /// Its context window.
    pub context_tokens: usize,
    /// The endpoint for "openai".
    pub base_url: String,
    /// The config file the daemon read.
    pub config_path: PathBuf,
    /// The settings in force.
    pub config: LlmConfig,
    /// The backend's token counter; `None` without a backend.
    pub counter: Option<TokenCount>,
    /// Whether the model follows instructions (see [`Backend::follows_instructions`]).
    pub instruct: bool,
}

impl std::fmt::Debug for LlmInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmInfo")
            .field("backend", &self.backend)
            .field("model", &self.model)
            .field("ready", &self.ready)
            .finish_non_exhaustive()
    }
}

/// How to tell a user to set up an LLM.
pub fn how_to_configure(config_path: &std::path::Path) -> String {
    format!(
        "no LLM is configured: run `mindory models fetch` to install the local model (Qwen2.5-Coder-1.5B-Instruct), \
         or point Mindory at an OpenAI-compatible server with `[llm] backend = \"openai\"` and `base_url = \"http://HOST:PORT/v1\"` \
         in {} (or MINDORY_LLM_BACKEND / MINDORY_LLM_BASE_URL), then restart the daemon",
        config_path.display()
    )
}

/// The GGUF file `local_model` names: empty means the first installed model
/// of the catalogue (the default when none is), a catalogue name such as
/// `qwen2.5-coder-0.5b` means that model's file, anything else is a path.
pub fn local_model_path(local_model: &str, models_dir: &std::path::Path) -> PathBuf {
    use mindory_proto::models;
    if local_model.trim().is_empty() {
        let model = models::installed_llm(models_dir).unwrap_or(&models::DEFAULT_LLM);
        return models_dir.join(model.file.dest);
    }
    match models::llm_model(local_model) {
        Some(model) => models_dir.join(model.file.dest),
        None => PathBuf::from(local_model),
    }
}

/// Builds the backend `config` asks for. `Ok(None)` means no backend, with
/// the reason.
fn build_backend(config: &LlmConfig, models_dir: &std::path::Path, config_path: &std::path::Path) -> Result<Arc<dyn Backend>, String> {
    let gguf = local_model_path(&config.local_model, models_dir);
    let local_installed = std::fs::metadata(&gguf).is_ok_and(|m| m.is_file());
    let choice = match config.backend {
        BackendChoice::Auto if local_installed => BackendChoice::Local,
        BackendChoice::Auto if !config.base_url.is_empty() => BackendChoice::Openai,
        BackendChoice::Auto => BackendChoice::None,
        other => other,
    };
    match choice {
        BackendChoice::Local => {
            if !local_installed {
                return Err(format!(
                    "the local model is not installed at {}; run `mindory models fetch` (or set [llm] local_model in {})",
                    gguf.display(),
                    config_path.display()
                ));
            }
            local::LocalBackend::start(&gguf, config)
                .map(|b| b.with_hint(switch_hint(models_dir, config_path)))
                .map(|b| Arc::new(b) as Arc<dyn Backend>)
                .map_err(|e| e.to_string())
        }
        BackendChoice::Openai => openai::HttpBackend::new(config, models_dir)
            .map(|b| Arc::new(b) as Arc<dyn Backend>)
            .map_err(|e| e.to_string()),
        BackendChoice::None | BackendChoice::Auto => Err(how_to_configure(config_path)),
    }
}

/// How to switch local models, for `mindory llm`: which are installed and
/// which can be fetched.
fn switch_hint(models_dir: &std::path::Path, config_path: &std::path::Path) -> String {
    use mindory_proto::models::{llm_present, LLM_MODELS};
    let (installed, missing): (Vec<_>, Vec<_>) = LLM_MODELS.iter().partition(|m| llm_present(models_dir, m));
    let names = |v: &[&mindory_proto::models::LlmModel]| v.iter().map(|m| m.name).collect::<Vec<_>>().join(", ");
    let mut hint = format!(
        "installed: {}; switch with [llm] local_model = \"NAME\" in {} or MINDORY_LLM_LOCAL_MODEL=NAME, then restart the daemon",
        names(&installed),
        config_path.display()
    );
    if !missing.is_empty() {
        hint.push_str(&format!("; `mindory models fetch --llm NAME` installs {}", names(&missing)));
    }
    hint
}

/// Messages of the LLM actor.
pub(crate) enum LlmMsg {
    /// Backend, model, readiness and the token counter. With `probe`, the
    /// backend is asked whether it can answer now (a request to the
    /// endpoint); without, readiness is not checked (Ask only needs the
    /// counter and the window, and must not cost an extra round trip).
    Info { probe: bool, reply: RpcReplyPort<LlmInfo> },
    /// Stream an answer into `tx`; the reply comes when it ends.
    Generate {
        messages: Vec<ChatMessage>,
        params: GenParams,
        tx: mpsc::Sender<String>,
        reply: RpcReplyPort<Result<GenOutcome, LlmError>>,
    },
}

/// What the LLM actor starts from.
#[derive(Clone)]
pub(crate) struct LlmArgs {
    pub config: LlmConfig,
    pub config_path: PathBuf,
    pub models_dir: PathBuf,
    /// The backend boot began building before the actor existed (reading a
    /// local model's vocabulary takes most of a second, which would
    /// otherwise add to every cold start); the first start takes it, a
    /// restart builds its own.
    pub early: EarlyBackend,
}

/// A backend being built on a blocking thread.
type Building = tokio::task::JoinHandle<Result<Arc<dyn Backend>, String>>;

/// A backend being built in the background, taken once.
pub(crate) type EarlyBackend = Arc<parking_lot::Mutex<Option<Building>>>;

/// Starts building a backend on a blocking thread: it reads the GGUF's
/// vocabulary (local) or the tokenizer for counting (HTTP), file I/O that
/// must not run on an actor's thread.
fn start_building(config: &LlmConfig, models_dir: &std::path::Path, config_path: &std::path::Path) -> Building {
    let (config, models_dir, config_path) = (config.clone(), models_dir.to_path_buf(), config_path.to_path_buf());
    tokio::task::spawn_blocking(move || build_backend(&config, &models_dir, &config_path))
}

/// Starts building the backend the config describes; the actor's first
/// start waits for it. Boot calls it before loading the embedding model, so
/// that the two loads overlap.
pub(crate) fn build_early(config: &LlmConfig, models_dir: &std::path::Path, config_path: &std::path::Path) -> EarlyBackend {
    Arc::new(parking_lot::Mutex::new(Some(start_building(config, models_dir, config_path))))
}

/// The actor's state: the chosen backend, or why there is none.
pub(crate) struct LlmState {
    backend: Result<Arc<dyn Backend>, String>,
    args: LlmArgs,
}

/// The LLM actor.
#[derive(Clone)]
pub(crate) struct LlmActor;

impl Actor for LlmActor {
    type Msg = LlmMsg;
    type State = LlmState;
    type Arguments = LlmArgs;

    async fn pre_start(&self, _myself: ActorRef<Self::Msg>, args: LlmArgs) -> Result<LlmState, ActorProcessingErr> {
        // The first start takes the backend boot began building; a restart
        // builds its own.
        let early = args.early.lock().take();
        let building = early.unwrap_or_else(|| start_building(&args.config, &args.models_dir, &args.config_path));
        let built = building.await?;
        match &built {
            Ok(b) => tracing::info!(backend = b.name(), model = %b.model(), context = b.context_tokens(), "LLM backend selected"),
            Err(why) => tracing::info!(%why, "no LLM backend"),
        }
        Ok(LlmState { backend: built, args })
    }

    async fn handle(&self, _myself: ActorRef<Self::Msg>, msg: Self::Msg, state: &mut LlmState) -> Result<(), ActorProcessingErr> {
        match msg {
            LlmMsg::Info { probe, reply } => {
                let args = state.args.clone();
                let backend = state.backend.clone();
                // Readiness may probe the endpoint: answer from a task.
                tokio::spawn(async move {
                    let info = match backend {
                        Ok(b) => {
                            let (ready, detail) = if probe { b.readiness().await } else { (true, String::new()) };
                            LlmInfo {
                                backend: b.name().into(),
                                model: b.model(),
                                ready,
                                detail,
                                context_tokens: b.context_tokens(),
                                base_url: b.base_url(),
                                config_path: args.config_path,
                                config: args.config,
                                counter: Some(b.counter()),
                                instruct: b.follows_instructions(),
                            }
                        }
                        Err(why) => LlmInfo {
                            backend: "none".into(),
                            model: String::new(),
                            ready: false,
                            detail: why,
                            context_tokens: 0,
                            base_url: String::new(),
                            config_path: args.config_path,
                            config: args.config,
                            counter: None,
                            instruct: false,
                        },
                    };
                    let _ = reply.send(info);
                });
            }
            LlmMsg::Generate {
                messages,
                params,
                tx,
                reply,
            } => match &state.backend {
                Ok(b) => {
                    let run = b.generate(messages, params, tx);
                    tokio::spawn(async move {
                        let _ = reply.send(run.await);
                    });
                }
                Err(why) => {
                    let _ = reply.send(Err(LlmError::NotConfigured(why.clone())));
                }
            },
        }
        Ok(())
    }
}

/// Handle to the LLM actor.
#[derive(Clone)]
pub struct LlmHandle {
    slot: Slot<LlmMsg>,
}

impl LlmHandle {
    /// Starts the LLM actor under `supervisor`. It picks its backend as it
    /// starts; a missing model or endpoint is reported by `Ask`, it does not
    /// stop the daemon.
    pub(crate) async fn start(supervisor: &SupervisorHandle, args: LlmArgs) -> Result<Self, String> {
        let slot = supervisor.spawn("llm", LlmActor, args).await?;
        Ok(LlmHandle::new(slot))
    }

    pub(crate) fn new(slot: Slot<LlmMsg>) -> Self {
        LlmHandle { slot }
    }

    /// Backend, model, readiness (probed) and token counter.
    pub async fn info(&self) -> Result<LlmInfo, LlmError> {
        self.slot
            .call(|reply| LlmMsg::Info { probe: true, reply })
            .await
            .map_err(LlmError::Unavailable)
    }

    /// Backend, model and token counter, without probing readiness.
    pub async fn backend(&self) -> Result<LlmInfo, LlmError> {
        self.slot
            .call(|reply| LlmMsg::Info { probe: false, reply })
            .await
            .map_err(LlmError::Unavailable)
    }

    /// Streams an answer into `tx` and returns how it went. Drop the
    /// receiver of `tx` to cancel.
    pub async fn generate(&self, messages: Vec<ChatMessage>, params: GenParams, tx: mpsc::Sender<String>) -> Result<GenOutcome, LlmError> {
        self.slot
            .call(|reply| LlmMsg::Generate {
                messages,
                params,
                tx,
                reply,
            })
            .await
            .map_err(LlmError::Unavailable)?
    }
}
