//! The ingest pool actor: a queue of jobs and the workers it supervises.
//!
//! It hands one job at a time to each idle worker. A worker that panics
//! (a parser bug on one file) is reported here through supervision: its job
//! is marked failed with the panic message and the worker is restarted,
//! within a restart budget; other workers and books carry on.
//!
//! A job the daemon died in the middle of (it was `indexing` at start) is a
//! suspect: it runs alone, with no other job beside it, so that if the
//! daemon dies again the book that was being worked on is the one to blame.
//! Without that, one bad file killing the daemon twice would also mark as
//! poison every healthy book that happened to be in progress both times.
//!
//! A job the disk refused (full, failing) waits in `deferred` and runs
//! again later by itself. While it waits, the shared [`Deferred`] map holds
//! its reason, so readers show the book `queued` with it: the store, whose
//! disk is the one refusing writes, cannot be told.

use std::collections::VecDeque;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use super::worker::{DoneFn, WorkerActor, WorkerDeps, WorkerMsg};
use super::{Deferred, Job};
use crate::events::EventKind;
use crate::store::BookStatus;
use crate::supervisor::{RestartBudget, RESTART_BUDGET, RESTART_WINDOW};

/// Messages of the pool.
pub(crate) enum PoolMsg {
    /// New jobs (cast by `IngestHandle`).
    Enqueue(Vec<Job>),
    /// A worker finished its job (cast by the worker); with the job and
    /// the reason when the disk refused its writes and it must run again.
    Done(ActorId, Option<(Job, String)>),
    /// Time to run the deferred jobs again.
    RetryDeferred,
    /// (pending, running).
    Depth(RpcReplyPort<(u64, u64)>),
    /// Stop dispatching; reply when no job is running.
    Drain(RpcReplyPort<()>),
}

struct WorkerSlot {
    actor: ActorRef<WorkerMsg>,
    job: Option<Job>,
}

pub(crate) struct PoolState {
    deps: WorkerDeps,
    queue: VecDeque<Job>,
    /// Books whose job was interrupted by the daemon's death: each runs
    /// alone until it finishes.
    suspects: std::collections::HashSet<u64>,
    /// Jobs the disk refused, waiting for [`RETRY_DEFERRED`].
    deferred: Vec<Job>,
    /// Books whose deferral was announced (once, until they finish).
    announced_deferred: std::collections::HashSet<u64>,
    /// The deferred books' reasons, as readers see them (shared with
    /// `IngestHandle`): an entry lives from the deferral until the job is
    /// handed to a worker again.
    shown_deferred: Deferred,
    /// The wait before the next retry: doubles while the disk keeps
    /// refusing (a retry parses the book again), back to the first once a
    /// job finishes.
    retry_delay: std::time::Duration,
    workers: Vec<WorkerSlot>,
    /// Worker restarts, for all workers together.
    restarts: RestartBudget,
    draining: bool,
    drain_waiters: Vec<RpcReplyPort<()>>,
    /// The depth last announced, so only changes are published.
    announced: (u64, u64),
}

/// Pool arguments: what workers need, and how many to run.
#[derive(Clone)]
pub(crate) struct PoolArgs {
    pub deps: WorkerDeps,
    pub workers: usize,
    /// Where deferred books and their reasons are shown to readers.
    pub deferred: Deferred,
}

/// The actor.
#[derive(Clone)]
pub(crate) struct PoolActor;

impl PoolState {
    fn running(&self) -> usize {
        self.workers.iter().filter(|w| w.job.is_some()).count()
    }

    fn dispatch(&mut self) {
        if self.draining {
            return;
        }
        for i in 0..self.workers.len() {
            if self.workers[i].job.is_some() {
                continue;
            }
            // One job per book at a time: a job for a book that is being
            // ingested (its file changed meanwhile) waits for that one, so
            // the two never write the book's content in turn.
            let busy: Vec<u64> = self.workers.iter().filter_map(|w| w.job.as_ref().map(|j| j.book_id)).collect();
            // A suspect runs alone: nothing starts beside it, and it starts
            // only when nothing else runs.
            if busy.iter().any(|id| self.suspects.contains(id)) {
                break;
            }
            let Some(at) = self
                .queue
                .iter()
                .position(|j| !busy.contains(&j.book_id) && (busy.is_empty() || !self.suspects.contains(&j.book_id)))
            else {
                break;
            };
            let Some(job) = self.queue.remove(at) else { break };
            // Running again, the book is what the store says (`indexing`)
            // until the disk refuses it again.
            self.shown_deferred.lock().remove(&job.book_id);
            let slot = &mut self.workers[i];
            slot.job = Some(job.clone());
            if slot.actor.cast(WorkerMsg::Run(job)).is_err() {
                // The worker is stopping; its supervision event re-queues.
                tracing::warn!("worker refused a job");
            }
        }
    }

    /// (pending, running): deferred jobs are pending too, they will run.
    fn depth(&self) -> (u64, u64) {
        ((self.queue.len() + self.deferred.len()) as u64, self.running() as u64)
    }

    /// Publishes the queue depth when it changed.
    fn announce_depth(&mut self) {
        let depth = self.depth();
        if depth != self.announced {
            self.announced = depth;
            self.deps.events.publish(EventKind::QueueDepth {
                pending: depth.0,
                running: depth.1,
            });
        }
    }

    fn answer_drain(&mut self) {
        if self.draining && self.running() == 0 {
            for waiter in self.drain_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}

async fn spawn_worker(pool: &ActorRef<PoolMsg>, deps: &WorkerDeps) -> Result<ActorRef<WorkerMsg>, ActorProcessingErr> {
    let me = pool.clone();
    let done: DoneFn = std::sync::Arc::new(move |id, again| {
        let _ = me.cast(PoolMsg::Done(id, again));
    });
    let (actor, _) = Actor::spawn_linked(None, WorkerActor, (deps.clone(), done), pool.get_cell()).await?;
    Ok(actor)
}

impl Actor for PoolActor {
    type Msg = PoolMsg;
    type State = PoolState;
    type Arguments = PoolArgs;

    async fn pre_start(&self, myself: ActorRef<PoolMsg>, args: PoolArgs) -> Result<PoolState, ActorProcessingErr> {
        // Workers first; the queue then comes from the store, so a restarted
        // pool picks up exactly where the store says it was.
        let mut workers = Vec::new();
        for _ in 0..args.workers.max(1) {
            workers.push(WorkerSlot {
                actor: spawn_worker(&myself, &args.deps).await?,
                job: None,
            });
        }
        let (queue, suspects) = load_durable_queue(&args.deps).await;
        // A restarted pool has no deferred jobs: the store's queue has them all.
        args.deferred.lock().clear();
        let mut state = PoolState {
            deps: args.deps,
            queue,
            suspects,
            deferred: Vec::new(),
            announced_deferred: std::collections::HashSet::new(),
            shown_deferred: args.deferred,
            retry_delay: RETRY_DEFERRED,
            workers,
            // Each worker's share plus one more, as the root gives each child.
            restarts: RestartBudget::new(RESTART_BUDGET * (args.workers.max(1) + 1)),
            draining: false,
            drain_waiters: Vec::new(),
            announced: (0, 0),
        };
        state.dispatch();
        state.announce_depth();
        Ok(state)
    }

    async fn handle(&self, myself: ActorRef<PoolMsg>, msg: PoolMsg, state: &mut PoolState) -> Result<(), ActorProcessingErr> {
        match msg {
            PoolMsg::Enqueue(jobs) => {
                for job in jobs {
                    // A book queued twice (re-added while waiting) runs once.
                    if !state.queue.iter().any(|j| j.book_id == job.book_id) {
                        state.queue.push_back(job);
                    }
                }
                state.dispatch();
                state.announce_depth();
            }
            PoolMsg::Done(worker, again) => {
                if let Some(slot) = state.workers.iter_mut().find(|w| w.actor.get_id() == worker) {
                    if let Some(job) = slot.job.take() {
                        state.suspects.remove(&job.book_id);
                        if again.is_none() {
                            state.announced_deferred.remove(&job.book_id);
                            state.retry_delay = RETRY_DEFERRED;
                        }
                    }
                }
                if let Some((job, reason)) = again {
                    // The worker's reason says when the job runs again.
                    state.shown_deferred.lock().insert(job.book_id, reason.clone());
                    // Announced once, so `add --wait` ends with the reason
                    // instead of waiting for a disk that may stay full or a
                    // server that may stay down.
                    if state.announced_deferred.insert(job.book_id) {
                        state.deps.events.publish(EventKind::Failed {
                            book_id: job.book_id,
                            path: mindory_proto::path_text::encode(&job.path),
                            reason,
                        });
                    }
                    if state.deferred.is_empty() {
                        myself.send_after(state.retry_delay, || PoolMsg::RetryDeferred);
                        state.retry_delay = (state.retry_delay * 2).min(RETRY_DEFERRED_MAX);
                    }
                    if !state.deferred.iter().any(|j| j.book_id == job.book_id) {
                        state.deferred.push(job);
                    }
                }
                state.dispatch();
                state.announce_depth();
                state.answer_drain();
            }
            PoolMsg::RetryDeferred => {
                for job in std::mem::take(&mut state.deferred) {
                    if !state.queue.iter().any(|j| j.book_id == job.book_id) {
                        state.queue.push_back(job);
                    }
                }
                state.dispatch();
                state.announce_depth();
            }
            PoolMsg::Depth(reply) => {
                let _ = reply.send(state.depth());
            }
            PoolMsg::Drain(reply) => {
                state.draining = true;
                state.drain_waiters.push(reply);
                state.answer_drain();
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<PoolMsg>,
        event: SupervisionEvent,
        state: &mut PoolState,
    ) -> Result<(), ActorProcessingErr> {
        let SupervisionEvent::ActorFailed(cell, err) = event else {
            return Ok(());
        };
        let Some(pos) = state.workers.iter().position(|w| w.actor.get_id() == cell.get_id()) else {
            return Ok(());
        };
        let slot = state.workers.remove(pos);
        if let Some(job) = slot.job {
            state.suspects.remove(&job.book_id);
            let reason = format!("parser crashed: {}", panic_message(&err.to_string()));
            tracing::error!(book_id = job.book_id, path = %job.path.display(), %reason, "ingest worker failed");
            let path = mindory_proto::path_text::encode(&job.path);
            if let Err(e) = state.deps.store.set_status(job.book_id, BookStatus::Failed, reason.clone()).await {
                tracing::error!(error = %e, "cannot record the failure");
            }
            state.deps.events.publish(EventKind::Failed {
                book_id: job.book_id,
                path,
                reason,
            });
        }
        if let Err(failures) = state.restarts.spend() {
            // Escalate: the pool itself fails, and the root supervisor decides.
            return Err(format!("ingest workers failed {failures} times within {RESTART_WINDOW:?}").into());
        }
        let actor = spawn_worker(&myself, &state.deps).await?;
        state.workers.push(WorkerSlot { actor, job: None });
        state.dispatch();
        state.answer_drain();
        Ok(())
    }
}

/// How long a job the disk refused waits before it runs again (its first
/// write then reopens the database if it is still closed).
const RETRY_DEFERRED: std::time::Duration = std::time::Duration::from_secs(3);
/// The longest wait between retries of deferred jobs.
const RETRY_DEFERRED_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// Starts a job this many times without finishing and it is poison.
pub(crate) const POISON_ATTEMPTS: u32 = 2;

/// The durable queue: every `queued`, `indexing` or `embedding` book in the
/// store, in the order they were added, interrupted ones first, and the
/// suspects among them. An `indexing` or `embedding` book with attempts
/// was interrupted (the daemon or the pool died mid-job without the job
/// making progress): it is a suspect and runs alone; after
/// [`POISON_ATTEMPTS`] such starts it is failed instead of retried forever.
async fn load_durable_queue(deps: &WorkerDeps) -> (VecDeque<Job>, std::collections::HashSet<u64>) {
    let mut suspects = std::collections::HashSet::new();
    let books = match deps.store.reader().books() {
        Ok(books) => books,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the job queue from the store");
            return (VecDeque::new(), suspects);
        }
    };
    let mut queue = VecDeque::new();
    for book in books.into_iter().filter(|b| b.status.in_progress()) {
        if matches!(book.status, BookStatus::Indexing | BookStatus::Embedding) && book.attempts >= POISON_ATTEMPTS {
            let reason = format!(
                "poison: ingestion was interrupted {} times while working on this file; fix or replace it, then `mindory reindex {}`",
                book.attempts, book.id
            );
            tracing::error!(book_id = book.id, path = %book.path, "{reason}");
            if deps.store.set_status(book.id, BookStatus::Failed, reason.clone()).await.is_ok() {
                deps.events.publish(EventKind::Failed {
                    book_id: book.id,
                    path: book.path,
                    reason,
                });
            }
            continue;
        }
        let job = Job {
            book_id: book.id,
            path: mindory_proto::path_text::decode(&book.path),
        };
        if book.status != BookStatus::Queued && book.attempts > 0 {
            tracing::warn!(book_id = book.id, path = %book.path, "ingestion of this book was interrupted; it runs alone now");
            suspects.insert(book.id);
            queue.push_front(job);
        } else {
            queue.push_back(job);
        }
    }
    if !queue.is_empty() {
        tracing::info!(
            jobs = queue.len(),
            suspects = suspects.len(),
            "resuming queued and interrupted ingestion"
        );
    }
    (queue, suspects)
}

/// Keeps the useful part of a panic report ("Panicked: <message>").
fn panic_message(report: &str) -> String {
    report.lines().next().unwrap_or(report).trim().to_string()
}
