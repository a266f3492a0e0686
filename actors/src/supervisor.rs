//! The supervisor: the only place run actors are spawned, and where their failures land.
//!
//! Spawning is serialized through this actor's mailbox, and it checks the live map first, so a
//! run never has two actors. A run actor that panics is restarted from the run's last
//! checkpoint, up to the restart budget; past it, the run fails with the panic message.
//! Clean stops (passivation, terminal runs) just leave the live map.

use std::collections::HashMap;
use std::sync::Arc;

use dashmap::DashMap;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use scaff_core::run::machine::Rejection;
use scaff_core::run::step::CompiledWorkflow;
use scaff_core::run::{Run, RunStatus};
use uuid::Uuid;

use crate::batcher::Checkpointer;
use crate::deps::Deps;
use crate::error::CommandError;
use crate::events::EventHub;
use crate::run_actor::{RunActor, RunArgs, RunMsg};
use crate::watch::RunWatch;

/// Messages the supervisor handles.
pub(crate) enum SupMsg {
    /// Return the run's live actor, spawning one from `run` if there is none. A spawned actor
    /// of a queued or running run is driven at once.
    Ensure {
        run: Box<Run>,
        workflow: Arc<CompiledWorkflow>,
        /// The `traceparent` of the request asking for the run, if any.
        caller: Option<crate::trace::TraceParent>,
        reply: RpcReplyPort<Result<ActorRef<RunMsg>, CommandError>>,
    },
}

/// The supervisor actor (configuration only).
pub(crate) struct Supervisor;

/// What the supervisor starts from.
pub(crate) struct SupArgs {
    pub deps: Deps,
    pub checkpoints: Checkpointer,
    pub live: Arc<DashMap<Uuid, ActorRef<RunMsg>>>,
    pub watch: RunWatch,
    pub events: EventHub,
}

/// The supervisor's state.
pub(crate) struct SupState {
    deps: Deps,
    checkpoints: Checkpointer,
    live: Arc<DashMap<Uuid, ActorRef<RunMsg>>>,
    watch: RunWatch,
    events: EventHub,
    /// Which run each child actor serves, and the workflow it runs.
    children: HashMap<ActorId, (Uuid, Arc<CompiledWorkflow>)>,
    /// Restarts after panics, per run.
    restarts: HashMap<Uuid, u32>,
}

impl Actor for Supervisor {
    type Msg = SupMsg;
    type State = SupState;
    type Arguments = SupArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<SupMsg>,
        args: SupArgs,
    ) -> Result<SupState, ActorProcessingErr> {
        Ok(SupState {
            deps: args.deps,
            checkpoints: args.checkpoints,
            live: args.live,
            watch: args.watch,
            events: args.events,
            children: HashMap::new(),
            restarts: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupMsg>,
        msg: SupMsg,
        state: &mut SupState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupMsg::Ensure {
                run,
                workflow,
                caller,
                reply,
            } => {
                let result = state.ensure(&myself, *run, workflow, None, caller).await;
                let _ = reply.send(result);
            }
        }
        Ok(())
    }

    /// Overridden: ractor's default would stop the supervisor when any child stops.
    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupMsg>,
        event: SupervisionEvent,
        state: &mut SupState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some((run_id, _)) = state.forget(cell.get_id()) {
                    state.restarts.remove(&run_id);
                }
            }
            SupervisionEvent::ActorFailed(cell, err) => {
                if let Some((run_id, workflow)) = state.forget(cell.get_id()) {
                    state
                        .restart(&myself, run_id, workflow, err.to_string())
                        .await;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl SupState {
    async fn ensure(
        &mut self,
        myself: &ActorRef<SupMsg>,
        run: Run,
        workflow: Arc<CompiledWorkflow>,
        first: Option<RunMsg>,
        caller: Option<crate::trace::TraceParent>,
    ) -> Result<ActorRef<RunMsg>, CommandError> {
        if let Some(actor) = self.live.get(&run.id).map(|a| a.clone()) {
            if let Some(msg) = first {
                let _ = actor.send_message(msg);
            }
            return Ok(actor);
        }
        // A snapshot that will be driven is re-read here, where no other actor can be spawned:
        // a stale `running` copy (say, canceled meanwhile) must not redo its step. A run still
        // at its creation (queued, version 0) whose first step does not reach out is spawned as
        // it is: a stale copy of it would be fenced off at its first checkpoint having done
        // nothing visible, and skipping the read keeps this serial path free of store waits.
        let untouched = run.status == RunStatus::Queued
            && run.version == 0
            && !workflow
                .def
                .step(&workflow.def.start_step)
                .is_some_and(|s| s.kind.reaches_out());
        let run = if matches!(run.status, RunStatus::Queued | RunStatus::Running) && !untouched {
            match self.deps.runs.get_run(run.id).await? {
                Some(fresh) => fresh,
                None => return Err(CommandError::NotFound),
            }
        } else {
            run
        };
        if run.status.is_terminal() {
            return Err(CommandError::Rejected(Rejection::Terminal(run.status)));
        }
        let run_id = run.id;
        // A run parked on a retry timer is not driven: a command for it (a cancel) is
        // handled, and then it goes back to holding no memory.
        let parked = run.wake_at.is_some_and(|at| at > self.deps.clock.now());
        let drive = matches!(run.status, RunStatus::Queued | RunStatus::Running) && !parked;
        let args = RunArgs {
            run,
            workflow: workflow.clone(),
            deps: self.deps.clone(),
            checkpoints: self.checkpoints.clone(),
            live: self.live.clone(),
            watch: self.watch.clone(),
            events: self.events.clone(),
            caller,
        };
        let (actor, _) = Actor::spawn_linked(None, RunActor, args, myself.get_cell())
            .await
            .map_err(|e| {
                CommandError::Unresponsive(format!("cannot spawn the run's actor: {e}"))
            })?;
        self.live.insert(run_id, actor.clone());
        self.children.insert(actor.get_id(), (run_id, workflow));
        let first = first.or(drive.then_some(RunMsg::Drive));
        if let Some(msg) = first {
            let _ = actor.send_message(msg);
        }
        Ok(actor)
    }

    fn forget(&mut self, actor: ActorId) -> Option<(Uuid, Arc<CompiledWorkflow>)> {
        let (run_id, workflow) = self.children.remove(&actor)?;
        self.live.remove_if(&run_id, |_, r| r.get_id() == actor);
        Some((run_id, workflow))
    }

    /// After a panic: continue from the last checkpoint, or fail the run past the budget.
    async fn restart(
        &mut self,
        myself: &ActorRef<SupMsg>,
        run_id: Uuid,
        workflow: Arc<CompiledWorkflow>,
        panic: String,
    ) {
        let count = self.restarts.entry(run_id).or_insert(0);
        *count += 1;
        let count = *count;
        let run = match self.deps.runs.get_run(run_id).await {
            Ok(Some(run)) if !run.status.is_terminal() => run,
            Ok(_) => return,
            Err(e) => {
                tracing::error!(%run_id, error = %e, "cannot reload a crashed run; it will be recovered at the next start");
                return;
            }
        };
        let budget = self.deps.config.restart_budget;
        let first = if count > budget {
            tracing::error!(%run_id, restarts = count - 1, %panic, "run crashed past its restart budget; failing it");
            Some(RunMsg::Crashed { message: panic })
        } else if run.status == RunStatus::Waiting {
            // Nothing to redo: the next resume rehydrates it.
            tracing::warn!(%run_id, %panic, "run actor crashed while waiting");
            return;
        } else {
            tracing::warn!(%run_id, restart = count, %panic, "run actor crashed; restarting from the last checkpoint");
            None
        };
        if let Err(e) = self.ensure(myself, run, workflow, first, None).await {
            tracing::error!(%run_id, error = %e, "cannot restart a crashed run");
        }
    }
}
