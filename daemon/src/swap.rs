//! The model swap actor: re-embeds the library with another embedding model
//! while every search keeps using the active one, then switches at once.
//!
//! `mindory models use NAME` (the `UseModel` RPC) starts a swap. The actor
//! loads the new model beside the active one, then works in steps of
//! [`STEP`] passages: it reads passages that have no vector of the new model
//! yet, embeds them, and commits the vectors to the store's second vector
//! slot. Each step is one store transaction, so a crash or a stop loses at
//! most one step: at the next start the actor finds the swap recorded in
//! the store and carries on from what is there. Passages ingested meanwhile
//! (with the active model) are picked up by a last pass from the start.
//!
//! When every passage has a new vector, the new index is built aside, and
//! then, with searches paused on the [`ModelSwitch`] for a few
//! milliseconds, the store flips its active slot and model id in one
//! transaction, the vector index actor swaps in the new index and the
//! embedding handle makes the new model active. The old vectors are dropped
//! afterwards. `models use` with the active model while a swap runs cancels
//! it: the new vectors are dropped and nothing else changes.
//!
//! Invariant: one search never mixes models: the query embedding and every
//! vector it is compared with come from the same model (the switch happens
//! under the write side of [`ModelSwitch`], and the index refuses a query
//! of another model).

use std::path::PathBuf;
use std::sync::Arc;

use mindory_proto::models::{embedding_model, ModelError};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::embed::{EmbedError, EmbedHandle, EmbedModel};
use crate::events::{EventBus, EventKind};
use crate::index::{IndexHandle, VectorIndex};
use crate::search::ModelSwitch;
use crate::store::{StoreError, StoreHandle};
use crate::supervisor::{Slot, SupervisorHandle};

/// Passages embedded and committed per step: small enough that a `models
/// use` (cancel) waits at most a few seconds behind a step, large enough to
/// keep batches efficient.
pub const STEP: usize = 64;

/// Why a swap could not start or go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SwapError {
    /// The model is unknown or its files are missing.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The new model could not be loaded or run.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The store refused a write.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `models use remote` (or a remote model id) without that server in
    /// the `[embed]` settings.
    #[error("`{name}` is an embedding server's model, but [embed] in config.toml points at {configured}; set backend = \"openai\", base_url and model there, restart mindoryd, then run `mindory models use remote`")]
    RemoteNotConfigured {
        /// The name asked for.
        name: String,
        /// What the settings name instead.
        configured: String,
    },
    /// The swap actor is gone (the daemon is stopping).
    #[error("the model swap is not running: {0}")]
    Unavailable(String),
}

impl SwapError {
    /// What kind of failure this is (see [`crate::error_kind`]). A model
    /// that is not installed, or that cannot run, is a precondition the user
    /// fixes (`mindory models fetch`); an unknown name is an invalid request.
    pub fn kind(&self) -> crate::error_kind::ErrorKind {
        use crate::error_kind::ErrorKind;
        match self {
            SwapError::Model(ModelError::UnknownEmbeddingModel { .. }) => ErrorKind::Invalid,
            SwapError::Model(_) | SwapError::Embed(_) | SwapError::RemoteNotConfigured { .. } => ErrorKind::Precondition,
            SwapError::Store(e) => e.kind(),
            SwapError::Unavailable(_) => ErrorKind::Unavailable,
        }
    }
}

/// The name `models use` and `models list` give the model of the `[embed]`
/// server; its id (`openai:<model>@<host>:<port>`) works too.
pub const REMOTE_NAME: &str = "remote";

/// The id of the model `name` means (resolved once, by the actor, and
/// returned to the RPC): a catalogued model by short name or id, or the
/// `[embed]` server's model by [`REMOTE_NAME`] or by its id. A remote name
/// with no server configured, or the id of another server than the
/// configured one, is refused with what to set.
fn resolve_model(embed: &EmbedHandle, name: &str) -> Result<String, SwapError> {
    let name = name.trim();
    if name != REMOTE_NAME && !name.starts_with(crate::embed::remote::REMOTE_PREFIX) {
        return Ok(embedding_model(name)?.id.to_string());
    }
    let not_configured = |configured: String| SwapError::RemoteNotConfigured {
        name: name.to_string(),
        configured,
    };
    match embed.remote_model_id() {
        None => Err(not_configured("the local backend".into())),
        Some(Err(e)) => Err(SwapError::Embed(e.into())),
        Some(Ok(id)) if name == REMOTE_NAME || name == id => Ok(id),
        Some(Ok(id)) => Err(not_configured(id)),
    }
}

/// What a `models use` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UseOutcome {
    /// The model is already the active one; nothing to do.
    AlreadyActive,
    /// A swap to it started.
    Started,
    /// A swap to it was already running.
    InProgress,
    /// It is the active model and the swap away from it was cancelled.
    Cancelled,
}

/// A swap in progress, for `status`.
#[derive(Debug, Clone, PartialEq)]
pub struct SwapStatus {
    /// Id of the model being swapped in.
    pub target: String,
    /// Passages with a vector of it.
    pub done: u64,
    /// Passages in the library.
    pub total: u64,
}

pub(crate) enum SwapMsg {
    /// Switch to the model with this name or id.
    Use(String, RpcReplyPort<Result<(UseOutcome, String), SwapError>>),
    /// Embed the next step of the swap in progress.
    Step,
}

/// What the actor works with.
#[derive(Clone)]
pub(crate) struct SwapArgs {
    pub store: StoreHandle,
    pub index: IndexHandle,
    pub embed: EmbedHandle,
    pub events: EventBus,
    pub switch: ModelSwitch,
    pub models_dir: PathBuf,
    /// Embedding threads of the swap's own work.
    pub threads: usize,
    /// Embedding threads of the new model once it serves.
    pub serve_threads: usize,
}

/// The swap in progress.
struct Job {
    target: String,
    model: EmbedModel,
    /// The last passage done in this pass; `None` starts a pass from the
    /// first passage.
    cursor: Option<u64>,
}

pub(crate) struct SwapState {
    args: SwapArgs,
    job: Option<Job>,
    /// Steps that failed in a row.
    failures: u32,
}

/// A swap whose steps fail this many times in a row is cancelled (a full
/// disk, say: the swap doubles the vectors' space), rather than retried
/// forever or allowed to stop the daemon.
const MAX_FAILURES: u32 = 3;
/// Pause before a failed step is tried again.
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// The actor.
#[derive(Clone)]
pub(crate) struct SwapActor;

impl Actor for SwapActor {
    type Msg = SwapMsg;
    type State = SwapState;
    type Arguments = SwapArgs;

    async fn pre_start(&self, myself: ActorRef<SwapMsg>, args: SwapArgs) -> Result<SwapState, ActorProcessingErr> {
        let mut state = SwapState {
            args,
            job: None,
            failures: 0,
        };
        // A swap recorded in the store was interrupted (a crash, a stop, or
        // this actor's restart): carry on from the vectors already stored.
        let recorded = state.args.store.reader().swap()?;
        if let Some(record) = recorded {
            match load(&state.args, &record.target, true).await {
                Ok(model) => {
                    tracing::info!(target = %record.target, "resuming the embedding model swap");
                    state.job = Some(Job {
                        target: record.target,
                        model,
                        cursor: None,
                    });
                    let _ = myself.cast(SwapMsg::Step);
                }
                Err(e) => {
                    tracing::error!(target = %record.target, error = %e, "cannot resume the embedding model swap; cancelling it (run `mindory models use` again once the model is installed)");
                    state.args.store.cancel_swap().await?;
                    state.args.events.publish(EventKind::SwapCancelled {
                        model: record.target,
                        reason: e.to_string(),
                    });
                }
            }
        }
        Ok(state)
    }

    async fn handle(&self, myself: ActorRef<SwapMsg>, msg: SwapMsg, state: &mut SwapState) -> Result<(), ActorProcessingErr> {
        match msg {
            SwapMsg::Use(name, reply) => {
                let outcome = use_model(state, &myself, &name).await;
                let _ = reply.send(outcome);
            }
            SwapMsg::Step => match step(state, &myself).await {
                Ok(()) => state.failures = 0,
                Err(e) => {
                    state.failures += 1;
                    if state.failures >= MAX_FAILURES {
                        tracing::error!(error = %e, "the embedding model swap keeps failing; cancelling it");
                        cancel(state, &format!("failed {MAX_FAILURES} times in a row: {e}")).await?;
                        state.failures = 0;
                    } else {
                        tracing::warn!(error = %e, "an embedding model swap step failed; trying again");
                        myself.send_after(RETRY_AFTER, || SwapMsg::Step);
                    }
                }
            },
        }
        Ok(())
    }
}

/// Loads a catalogued model beside the active one (off the async threads):
/// for the swap's own work on part of the cores in the idle scheduling class
/// (`background`), or on every core to serve after the switch.
async fn load(args: &SwapArgs, name: &str, background: bool) -> Result<EmbedModel, SwapError> {
    let threads = if background { args.threads } else { args.serve_threads };
    let (embed, name, dir) = (args.embed.clone(), name.to_string(), args.models_dir.clone());
    tokio::task::spawn_blocking(move || embed.load(&name, &dir, threads, background))
        .await
        .map_err(|e| SwapError::Unavailable(e.to_string()))?
        .map_err(Into::into)
}

/// `models use NAME`: what it did, and the id of the model the name means.
async fn use_model(state: &mut SwapState, myself: &ActorRef<SwapMsg>, name: &str) -> Result<(UseOutcome, String), SwapError> {
    let target = resolve_model(&state.args.embed, name)?;
    let outcome = switch_to(state, myself, target.clone()).await?;
    Ok((outcome, target))
}

async fn switch_to(state: &mut SwapState, myself: &ActorRef<SwapMsg>, target: String) -> Result<UseOutcome, SwapError> {
    let active = state.args.embed.model_id();
    if target == active {
        return Ok(if cancel(state, "cancelled: the active model was chosen again").await? {
            UseOutcome::Cancelled
        } else {
            UseOutcome::AlreadyActive
        });
    }
    if state.job.as_ref().is_some_and(|j| j.target == target) {
        return Ok(UseOutcome::InProgress);
    }
    // Loading first: a model whose files are missing fails here, before
    // anything changes.
    let loaded = load(&state.args, &target, true).await?;
    cancel(state, &format!("replaced by a swap to {target}")).await?;
    state.args.store.begin_swap(target.clone()).await?;
    tracing::info!(from = %active, to = %target, "embedding model swap started");
    state.job = Some(Job {
        target,
        model: loaded,
        cursor: None,
    });
    publish_progress(state);
    let _ = myself.cast(SwapMsg::Step);
    Ok(UseOutcome::Started)
}

/// Abandons the swap in progress, if any; returns whether there was one.
async fn cancel(state: &mut SwapState, reason: &str) -> Result<bool, SwapError> {
    let had_job = state.job.take();
    let had_record = state.args.store.cancel_swap().await?;
    if let Some(job) = had_job {
        tracing::info!(target = %job.target, reason, "embedding model swap cancelled");
        state.args.events.publish(EventKind::SwapCancelled {
            model: job.target,
            reason: reason.to_string(),
        });
    }
    Ok(had_record)
}

fn publish_progress(state: &SwapState) {
    if state.job.is_none() {
        return;
    }
    if let Ok(Some(status)) = swap_status(state.args.store.reader()) {
        state.args.events.publish(EventKind::SwapProgress {
            model: status.target,
            done: status.done,
            total: status.total,
        });
    }
}

/// One step: embed and commit the next passages, or finish.
async fn step(state: &mut SwapState, myself: &ActorRef<SwapMsg>) -> Result<(), SwapError> {
    let Some(job) = state.job.as_mut() else { return Ok(()) };
    let reader = state.args.store.reader().clone();
    let cursor = job.cursor;
    let missing = tokio::task::spawn_blocking(move || reader.swap_missing(cursor, STEP))
        .await
        .map_err(|e| SwapError::Unavailable(e.to_string()))??;
    if missing.is_empty() {
        if job.cursor.is_some() {
            // One more pass from the start: passages ingested meanwhile
            // may sit behind the cursor.
            job.cursor = None;
            let _ = myself.cast(SwapMsg::Step);
            return Ok(());
        }
        return finish(state, myself).await;
    }
    job.cursor = missing.last().map(|(id, _)| *id);
    // Identical texts are embedded once.
    let mut unique: Vec<String> = Vec::new();
    let mut position = std::collections::HashMap::new();
    for (_, text) in &missing {
        if !position.contains_key(text.as_str()) {
            position.insert(text.clone(), unique.len());
            unique.push(text.clone());
        }
    }
    let vectors = job.model.embed_passages(unique).await?;
    let triples: Vec<(u64, String, Vec<f32>)> = missing
        .into_iter()
        .map(|(id, text)| {
            let v = vectors[position[text.as_str()]].clone();
            (id, text, v)
        })
        .collect();
    let target = job.target.clone();
    if !state.args.store.put_swap_vectors(target, triples).await? {
        // Cancelled underneath (cannot happen while this actor is the only
        // one that cancels, but the store is the judge).
        state.job = None;
        return Ok(());
    }
    crate::test_hooks::crash_point("swap-committed");
    publish_progress(state);
    let _ = myself.cast(SwapMsg::Step);
    Ok(())
}

/// Vectors added to a swap's new index per call.
const SWAP_INDEX_BATCH: usize = 1000;

/// Builds the new index, then switches store, index and model together.
async fn finish(state: &mut SwapState, myself: &ActorRef<SwapMsg>) -> Result<(), SwapError> {
    let Some(job) = state.job.as_mut() else { return Ok(()) };
    // The new index is built aside while searches go on with the old one.
    let reader = state.args.store.reader().clone();
    let dimensions = job.model.dimensions();
    let index = state.args.index.clone();
    let target = job.target.clone();
    let fresh = tokio::task::spawn_blocking(move || -> Result<Arc<dyn VectorIndex>, SwapError> {
        let unavailable = |e: crate::index::IndexError| SwapError::Unavailable(e.to_string());
        let fresh = index.fresh(&target, dimensions).map_err(unavailable)?;
        // In batches: one transaction each for a database backend.
        let mut batch = Vec::with_capacity(SWAP_INDEX_BATCH);
        let mut failed = None;
        reader.for_each_swap_vector(|key, record| {
            if failed.is_some() {
                return;
            }
            batch.push((key, record.vector));
            if batch.len() == SWAP_INDEX_BATCH {
                failed = fresh.apply(&[], &std::mem::take(&mut batch)).err();
            }
        })?;
        if failed.is_none() {
            failed = fresh.apply(&[], &batch).err();
        }
        match failed {
            Some(e) => Err(unavailable(e)),
            None => Ok(fresh),
        }
    })
    .await
    .map_err(|e| SwapError::Unavailable(e.to_string()))??;

    // The model that serves after the switch runs on every core at normal
    // priority; the swap's own instance is dropped with the job.
    let serving = load(&state.args, &job.target, false).await?;

    // The switch: no search runs from here until the new model is active.
    // Only the store commit can fail, and it comes first.
    let from = state.args.embed.model_id();
    let switched = {
        let _paused = state.args.switch.write().await;
        if state.args.store.finish_swap(job.target.clone()).await? {
            state.args.embed.activate(serving);
            state.args.index.switch(fresh, job.target.clone());
            true
        } else {
            false
        }
    };
    if !switched {
        // Passages arrived since the last pass: embed them too.
        job.cursor = None;
        let _ = myself.cast(SwapMsg::Step);
        return Ok(());
    }
    let to = job.target.clone();
    state.job = None;
    tracing::info!(%from, %to, "embedding model swap finished; searches use the new model");
    state.args.events.publish(EventKind::SwapFinished { from, to });
    if let Err(e) = state.args.store.clear_old_vectors().await {
        tracing::warn!(error = %e, "dropping the previous model's vectors failed; they are dropped by the next swap");
    }
    Ok(())
}

/// The swap in progress and how far it got, from the store.
fn swap_status(store: &crate::store::StoreReader) -> Result<Option<SwapStatus>, StoreError> {
    Ok(store.swap_status()?.map(|(record, done, total)| SwapStatus {
        target: record.target,
        done,
        total,
    }))
}

/// Cloneable handle to the swap actor.
#[derive(Clone)]
pub struct SwapHandle {
    actor: Slot<SwapMsg>,
    store: crate::store::StoreReader,
}

impl SwapHandle {
    /// Starts the swap actor under `supervisor`; a swap interrupted by a
    /// stop resumes as it starts.
    pub(crate) async fn start(supervisor: &SupervisorHandle, args: SwapArgs) -> Result<Self, String> {
        let reader = args.store.reader().clone();
        let slot = supervisor.spawn("model swap", SwapActor, args).await?;
        Ok(SwapHandle::new(slot, reader))
    }

    pub(crate) fn new(actor: Slot<SwapMsg>, store: crate::store::StoreReader) -> Self {
        SwapHandle { actor, store }
    }

    /// Makes the model with this name or id (a catalogued model, or
    /// [`REMOTE_NAME`] for the `[embed]` server's) the active one: starts a
    /// swap, or cancels the one in progress when it is the active model.
    /// Returns what it did and the model's id.
    pub async fn use_model(&self, name: String) -> Result<(UseOutcome, String), SwapError> {
        self.actor
            .call(|reply| SwapMsg::Use(name, reply))
            .await
            .map_err(SwapError::Unavailable)?
    }

    /// The swap in progress, read from the store.
    pub fn status(&self) -> Result<Option<SwapStatus>, SwapError> {
        Ok(swap_status(&self.store)?)
    }
}
