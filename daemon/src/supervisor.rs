//! The root supervisor: it spawns the long-lived actors (store, index, event
//! bus, ingest pool) as linked children and restarts one that fails, within
//! a restart budget.
//!
//! Handles reach their actor through a [`Slot`], which the supervisor
//! re-points after a restart, so callers keep working and never see an
//! `ActorRef`. When a child fails more often than its budget allows, the
//! daemon cannot be trusted to make progress: the supervisor asks for an
//! orderly shutdown instead of restarting forever.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::watch;

/// A re-pointable reference to an actor, shared by all clones of its handle.
/// Empty until the supervisor first starts the actor.
pub struct Slot<M: ractor::Message>(Arc<RwLock<Option<ActorRef<M>>>>);

impl<M: ractor::Message> Clone for Slot<M> {
    fn clone(&self) -> Self {
        Slot(self.0.clone())
    }
}

impl<M: ractor::Message> Slot<M> {
    /// A slot with no actor yet.
    pub fn empty() -> Self {
        Slot(Arc::new(RwLock::new(None)))
    }

    /// The current actor, if it has been started.
    pub fn get(&self) -> Option<ActorRef<M>> {
        self.0.read().clone()
    }

    /// Points the slot at a (re)started actor.
    pub fn set(&self, actor: ActorRef<M>) {
        *self.0.write() = Some(actor);
    }

    /// Sends a request and waits for its reply; `None` when the actor is not
    /// running or dropped the request.
    pub async fn call<T: Send + 'static>(&self, make: impl FnOnce(ractor::RpcReplyPort<T>) -> M) -> Result<T, String> {
        let actor = self.get().ok_or_else(|| "the actor has not started".to_string())?;
        match actor.call(make, None).await {
            Ok(ractor::rpc::CallResult::Success(r)) => Ok(r),
            Ok(_) => Err("the actor stopped before replying".to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Sends a message without waiting; false when the actor is not running.
    pub fn cast(&self, msg: M) -> bool {
        self.get().is_some_and(|a| a.cast(msg).is_ok())
    }
}

/// Future returned by a respawn function.
pub type SpawnFuture = Pin<Box<dyn Future<Output = Result<ActorCell, ractor::SpawnErr>> + Send>>;

/// How to (re)start one child: spawns it linked to the given supervisor and
/// updates its slot.
pub type Respawn = Arc<dyn Fn(ActorCell) -> SpawnFuture + Send + Sync>;

/// At most this many restarts of one child…
pub const RESTART_BUDGET: usize = 5;
/// …within this window.
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// How often something supervised may fail before its supervisor gives up:
/// at most `max` restarts within [`RESTART_WINDOW`]. The root supervisor
/// keeps one per child, the ingest pool one for all its workers.
#[derive(Debug, Clone)]
pub struct RestartBudget {
    max: usize,
    restarts: Vec<Instant>,
}

impl RestartBudget {
    /// A budget of `max` restarts per window.
    pub fn new(max: usize) -> Self {
        RestartBudget { max, restarts: Vec::new() }
    }

    /// Records a failure now. `Ok` when one more restart is allowed; `Err`
    /// with the number of failures in the window when the budget is spent.
    pub fn spend(&mut self) -> Result<(), usize> {
        let now = Instant::now();
        self.restarts.retain(|t| now.duration_since(*t) < RESTART_WINDOW);
        if self.restarts.len() >= self.max {
            return Err(self.restarts.len() + 1);
        }
        self.restarts.push(now);
        Ok(())
    }
}

struct Child {
    name: &'static str,
    respawn: Respawn,
    budget: RestartBudget,
}

/// Messages of the root supervisor.
pub(crate) enum SupervisorMsg {
    /// Start a child and supervise it.
    Adopt {
        name: &'static str,
        respawn: Respawn,
        reply: ractor::RpcReplyPort<Result<(), String>>,
    },
}

/// State: children by actor id, and the switch that asks the daemon to stop.
pub(crate) struct SupervisorState {
    children: HashMap<ractor::ActorId, Child>,
    fatal: watch::Sender<Option<String>>,
}

/// The root of the supervision tree.
pub(crate) struct Supervisor;

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = watch::Sender<Option<String>>;

    async fn pre_start(&self, _myself: ActorRef<Self::Msg>, fatal: Self::Arguments) -> Result<Self::State, ActorProcessingErr> {
        Ok(SupervisorState {
            children: HashMap::new(),
            fatal,
        })
    }

    async fn handle(&self, myself: ActorRef<Self::Msg>, msg: Self::Msg, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Adopt { name, respawn, reply } => {
                let result = (respawn)(myself.get_cell()).await;
                match result {
                    Ok(cell) => {
                        state.children.insert(
                            cell.get_id(),
                            Child {
                                name,
                                respawn,
                                budget: RestartBudget::new(RESTART_BUDGET),
                            },
                        );
                        let _ = reply.send(Ok(()));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(format!("cannot start the {name} actor: {e}")));
                    }
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                let Some(mut child) = state.children.remove(&cell.get_id()) else {
                    return Ok(());
                };
                if let Err(failures) = child.budget.spend() {
                    let why = format!(
                        "the {} actor failed {failures} times within {RESTART_WINDOW:?} (last: {err}); stopping",
                        child.name,
                    );
                    tracing::error!("{why}");
                    let _ = state.fatal.send(Some(why));
                    return Ok(());
                }
                tracing::warn!(actor = child.name, error = %err, "actor failed; restarting it");
                match (child.respawn)(myself.get_cell()).await {
                    Ok(new_cell) => {
                        state.children.insert(new_cell.get_id(), child);
                    }
                    Err(e) => {
                        let why = format!("cannot restart the {} actor: {e}", child.name);
                        tracing::error!("{why}");
                        let _ = state.fatal.send(Some(why));
                    }
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                // A child that stopped on purpose (shutdown) is not restarted.
                state.children.remove(&cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}

/// Handle to the root supervisor.
#[derive(Clone)]
pub(crate) struct SupervisorHandle {
    actor: ActorRef<SupervisorMsg>,
}

impl SupervisorHandle {
    /// Starts the supervisor; `fatal` receives a reason when the daemon must stop.
    pub async fn start(fatal: watch::Sender<Option<String>>) -> Result<Self, ractor::SpawnErr> {
        let (actor, _join) = Actor::spawn(None, Supervisor, fatal).await?;
        Ok(SupervisorHandle { actor })
    }

    /// Starts a child through `respawn` and supervises it from now on.
    pub async fn adopt(&self, name: &'static str, respawn: Respawn) -> Result<(), String> {
        match self.actor.call(|reply| SupervisorMsg::Adopt { name, respawn, reply }, None).await {
            Ok(ractor::rpc::CallResult::Success(r)) => r,
            Ok(other) => Err(format!("supervisor did not answer: {other:?}")),
            Err(e) => Err(format!("supervisor is gone: {e}")),
        }
    }

    /// Starts `actor` with `args` as the supervised child `name` and returns
    /// the slot that always points at its current incarnation: a restart
    /// spawns it again with a clone of `args` and re-points the slot, so
    /// handles built on it never go stale. This is how every actor module's
    /// `start` begins.
    pub async fn spawn<A>(&self, name: &'static str, actor: A, args: A::Arguments) -> Result<Slot<A::Msg>, String>
    where
        A: Actor + Clone,
        A::Arguments: Clone + Sync,
    {
        let slot = Slot::empty();
        self.spawn_into(name, actor, args, slot.clone()).await?;
        Ok(slot)
    }

    /// [`spawn`](Self::spawn) into a slot made beforehand, for an actor
    /// whose arguments hold its own slot (the library's watcher callbacks
    /// send to it).
    pub async fn spawn_into<A>(&self, name: &'static str, actor: A, args: A::Arguments, slot: Slot<A::Msg>) -> Result<(), String>
    where
        A: Actor + Clone,
        A::Arguments: Clone + Sync,
    {
        self.adopt(name, respawn_with(actor, args, slot)).await
    }

    /// Stops every child, then the supervisor, and waits until they are
    /// gone, so that whatever they hold (the database above all) is
    /// released when the daemon's `run` returns and a new daemon can open
    /// the same data dir at once. Children that stop on purpose are not
    /// restarted.
    pub async fn stop(&self) {
        let limit = Some(Duration::from_secs(10));
        self.actor.stop_children_and_wait(None, limit).await;
        if let Err(e) = self.actor.stop_and_wait(None, limit).await {
            tracing::warn!(error = %e, "the supervisor did not stop in time");
        }
    }
}

/// Builds a [`Respawn`] for actor `A` whose arguments can be cloned: every
/// (re)start spawns `A` linked to the supervisor and re-points `slot`.
pub(crate) fn respawn_with<A>(actor: A, args: A::Arguments, slot: Slot<A::Msg>) -> Respawn
where
    A: Actor + Clone,
    A::Arguments: Clone + Sync,
{
    Arc::new(move |supervisor: ActorCell| {
        let (actor, args, slot) = (actor.clone(), args.clone(), slot.clone());
        Box::pin(async move {
            let (actor_ref, _join) = Actor::spawn_linked(None, actor, args, supervisor).await?;
            slot.set(actor_ref.clone());
            Ok(actor_ref.get_cell())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::RestartBudget;

    #[test]
    fn a_budget_allows_max_restarts_then_refuses() {
        let mut budget = RestartBudget::new(3);
        assert_eq!((0..3).map(|_| budget.spend()).collect::<Vec<_>>(), vec![Ok(()); 3]);
        assert_eq!(budget.spend(), Err(4), "the fourth failure in the window is one too many");
        assert_eq!(budget.spend(), Err(4), "a refusal does not count as a restart");
    }
}
