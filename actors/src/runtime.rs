//! The runtime handle: what the API calls to start, resume, cancel and wait for runs.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};
use scaff_core::run::machine::Rejection;
use scaff_core::run::step::CompiledWorkflow;
use scaff_core::run::{EventRecord, Run};
use scaff_core::store::StoreError;
use serde_json::{Map, Value as Json};
use uuid::Uuid;

use crate::deps::Deps;
use crate::error::CommandError;
use crate::events::EventHub;
use crate::run_actor::{Reply, RunMsg};
use crate::supervisor::{SupArgs, SupMsg, Supervisor};
use crate::watch::{RunWatch, Watcher};
use crate::workflows::WorkflowCache;

/// How often a command is retried when the run's actor stops under it or loses a fence.
const COMMAND_ATTEMPTS: usize = 4;

/// A handle on the runtime; cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    supervisor: ActorRef<SupMsg>,
    live: Arc<DashMap<Uuid, ActorRef<RunMsg>>>,
    deps: Deps,
    workflows: Arc<WorkflowCache>,
    watch: RunWatch,
    events: EventHub,
    timers: Arc<std::sync::Mutex<Option<tokio::task::AbortHandle>>>,
    /// The `traceparent` the segments this handle starts are linked to
    /// ([`Runtime::with_trace_parent`]).
    caller: Option<crate::trace::TraceParent>,
    /// Where new runs are written (batched with concurrent starts unless batching is off).
    creator: crate::batcher::Creator,
}

impl Runtime {
    /// Starts the supervisor. Call [`Runtime::recover`] next to continue unfinished runs.
    pub async fn start(deps: Deps) -> Result<Runtime, CommandError> {
        let live = Arc::new(DashMap::new());
        let watch = RunWatch::default();
        let events = EventHub::default();
        let checkpoints = crate::batcher::Checkpointer::start(
            deps.runs.clone(),
            deps.metrics.clone(),
            deps.config.checkpoint_batch_max,
            deps.config.checkpoint_writers,
        );
        let creator = crate::batcher::Creator::start(
            deps.runs.clone(),
            deps.config.checkpoint_batch_max,
            deps.config.checkpoint_writers,
        );
        let args = SupArgs {
            deps: deps.clone(),
            checkpoints,
            live: live.clone(),
            watch: watch.clone(),
            events: events.clone(),
        };
        let (supervisor, _) = Actor::spawn(None, Supervisor, args)
            .await
            .map_err(|e| CommandError::Unresponsive(format!("cannot start the supervisor: {e}")))?;
        let runtime = Runtime {
            supervisor,
            live,
            deps,
            workflows: Arc::new(WorkflowCache::default()),
            watch,
            events,
            timers: Arc::default(),
            caller: None,
            creator,
        };
        let service = tokio::spawn(crate::timers::run(runtime.clone()));
        if let Ok(mut slot) = runtime.timers.lock() {
            *slot = Some(service.abort_handle());
        }
        Ok(runtime)
    }

    /// This handle, but the run segments its commands start (a launch, a resume that
    /// rehydrates a run) are linked to the W3C `traceparent` of the request making them.
    pub fn with_trace_parent(&self, traceparent: Option<&str>) -> Runtime {
        Runtime {
            caller: traceparent.map(Into::into),
            ..self.clone()
        }
    }

    /// What the runtime was given.
    pub(crate) fn deps(&self) -> &Deps {
        &self.deps
    }

    /// Fires a durable timer into its run (rehydrating it); a timer whose fence no longer
    /// holds is refused with [`Rejection::Stale`] (or the run's terminal state).
    pub async fn fire_timer(
        &self,
        run_id: Uuid,
        kind: scaff_core::store::TimerKind,
        step_id: &str,
        version: i64,
        nth: i32,
    ) -> Result<Run, CommandError> {
        self.command(run_id, |reply| RunMsg::Timer {
            kind,
            step_id: step_id.to_string(),
            version,
            nth,
            reply,
        })
        .await
    }

    /// Number of run actors alive now (runs executing, not runs that exist).
    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// The metrics the runtime records into (and the API adds its own to).
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.deps.metrics
    }

    /// Status notifications.
    pub fn watch(&self) -> &RunWatch {
        &self.watch
    }

    /// Live lifecycle events: subscribe here to see each event once it is persisted.
    pub fn events(&self) -> &EventHub {
        &self.events
    }

    /// Publishes the events written with a run just created (`run.created`), which the store
    /// wrote outside any run actor. Call it after the run was stored and before
    /// [`Runtime::launch`], so subscribers see the run's events in order.
    pub fn publish_created(&self, run: &Run, events: &[EventRecord]) {
        self.events.publish(run, run.status, events);
    }

    /// Stores a new run (see [`RunStore::create_run`]); concurrent starts share one commit
    /// unless `checkpoint_batch_max` is 1.
    ///
    /// [`RunStore::create_run`]: scaff_core::store::RunStore::create_run
    pub async fn create_run(
        &self,
        new: scaff_core::store::NewRun,
    ) -> Result<scaff_core::store::CreatedRun, StoreError> {
        self.creator.create(new).await
    }

    /// A workflow version compiled (from the cache shared by every run of it; loaded on first
    /// use), or `None` when the version does not exist.
    pub async fn workflow(
        &self,
        id: &str,
        version: i64,
    ) -> Result<Option<Arc<CompiledWorkflow>>, CommandError> {
        self.workflows
            .find(self.deps.workflows.as_ref(), id, version)
            .await
    }

    /// Begins executing a run just created (status queued).
    pub async fn launch(&self, run: Run) -> Result<(), CommandError> {
        self.ensure(run).await.map(|_| ())
    }

    /// Continues every run a crash left queued or running; returns how many.
    pub async fn recover(&self) -> Result<usize, CommandError> {
        let ids = self.deps.runs.unfinished_runs().await?;
        let mut recovered = 0;
        for id in ids {
            let Some(run) = self.deps.runs.get_run(id).await? else {
                continue;
            };
            if run.wake_at.is_some_and(|at| at > self.deps.clock.now()) {
                // Parked on a retry timer, which will wake it.
                continue;
            }
            match self.ensure(run).await {
                Ok(_) => recovered += 1,
                Err(e) => tracing::error!(run_id = %id, error = %e, "cannot recover run"),
            }
        }
        Ok(recovered)
    }

    /// Submits form inputs to a waiting run on behalf of a resume token naming `step_id` at
    /// run `version`.
    pub async fn submit(
        &self,
        run_id: Uuid,
        step_id: &str,
        version: i64,
        inputs: Map<String, Json>,
        actor: Option<String>,
    ) -> Result<Run, CommandError> {
        self.command(run_id, |reply| RunMsg::Submit {
            step_id: step_id.to_string(),
            version,
            inputs: inputs.clone(),
            actor: actor.clone(),
            reply,
        })
        .await
    }

    /// Records an approver's decision on the approval step `step_id` the run waits on, on
    /// behalf of a token issued to `approver` for the wait at `version`.
    pub async fn decide(
        &self,
        run_id: Uuid,
        step_id: &str,
        version: i64,
        approver: &str,
        approved: bool,
        comment: Option<String>,
    ) -> Result<Run, CommandError> {
        self.command(run_id, |reply| RunMsg::Decide {
            step_id: step_id.to_string(),
            version,
            approver: approver.to_string(),
            approved,
            comment: comment.clone(),
            reply,
        })
        .await
    }

    /// Cancels a run that is not finished.
    pub async fn cancel(
        &self,
        run_id: Uuid,
        actor: Option<String>,
        reason: Option<String>,
    ) -> Result<Run, CommandError> {
        self.command(run_id, |reply| RunMsg::Cancel {
            actor: actor.clone(),
            reason: reason.clone(),
            reply,
        })
        .await
    }

    /// Starts watching a run's snapshots. Subscribe *before* the command or read whose result
    /// [`Runtime::settle`] then waits on, so no transition in between is missed.
    pub fn watch_run(&self, run_id: Uuid) -> Watcher {
        self.watch.subscribe(run_id)
    }

    /// `run` (what a command answered or a read returned, after `watcher` subscribed) once it
    /// settles — waiting or finished — within `wait`. The answer is the snapshot its actor
    /// published after persisting it, so a wait costs no store read; a run that has not settled
    /// by the deadline (or that another node moves) is read from the store then.
    pub async fn settle(
        &self,
        mut watcher: Watcher,
        run: Run,
        wait: Duration,
    ) -> Result<Run, StoreError> {
        if wait.is_zero() || run.status.is_settled() {
            return Ok(run);
        }
        let deadline = tokio::time::Instant::now() + wait;
        if let Some(settled) = watcher.settled(run.version, deadline).await {
            return Ok(Arc::unwrap_or_clone(settled));
        }
        let id = watcher.run_id();
        drop(watcher);
        Ok(self.deps.runs.get_run(id).await?.unwrap_or(run))
    }

    /// Reads the run, waiting up to `wait` for it to settle (waiting or terminal).
    pub async fn wait_settled(
        &self,
        run_id: Uuid,
        wait: Duration,
    ) -> Result<Option<Run>, StoreError> {
        let watcher = self.watch_run(run_id);
        match self.deps.runs.get_run(run_id).await? {
            Some(run) => self.settle(watcher, run, wait).await.map(Some),
            None => Ok(None),
        }
    }

    /// Stops every run actor (their current steps will be redone on recovery) and the
    /// supervisor.
    pub async fn shutdown(&self, timeout: Duration) {
        self.events.close();
        if let Some(service) = self.timers.lock().ok().and_then(|mut s| s.take()) {
            service.abort();
        }
        self.supervisor
            .stop_children_and_wait(Some("shutdown".into()), Some(timeout))
            .await;
        let _ = self.supervisor.stop_and_wait(None, Some(timeout)).await;
    }

    async fn ensure(&self, run: Run) -> Result<ActorRef<RunMsg>, CommandError> {
        let workflow = self
            .workflows
            .get(
                self.deps.workflows.as_ref(),
                &run.workflow_id,
                run.workflow_version,
            )
            .await?;
        let call = self
            .supervisor
            .call(
                |reply| SupMsg::Ensure {
                    run: Box::new(run),
                    workflow,
                    caller: self.caller.clone(),
                    reply,
                },
                Some(self.deps.config.call_timeout),
            )
            .await;
        match call {
            Ok(CallResult::Success(result)) => result,
            Ok(CallResult::Timeout) => Err(CommandError::Unresponsive(
                "the supervisor timed out".into(),
            )),
            _ => Err(CommandError::Unresponsive(
                "the supervisor is not running".into(),
            )),
        }
    }

    /// Sends a command to the run's actor, rehydrating it when needed and retrying when the
    /// actor stopped under the command or another writer moved the run on.
    async fn command<F>(&self, run_id: Uuid, build: F) -> Result<Run, CommandError>
    where
        F: Fn(Reply) -> RunMsg,
    {
        let mut last = CommandError::Unresponsive("the run's actor kept stopping".into());
        for _ in 0..COMMAND_ATTEMPTS {
            let live = self.live.get(&run_id).map(|a| a.clone());
            let actor = match live {
                Some(a) => a,
                None => {
                    let run = self
                        .deps
                        .runs
                        .get_run(run_id)
                        .await?
                        .ok_or(CommandError::NotFound)?;
                    if run.status.is_terminal() {
                        return Err(CommandError::Rejected(Rejection::Terminal(run.status)));
                    }
                    self.ensure(run).await?
                }
            };
            match actor
                .call(&build, Some(self.deps.config.call_timeout))
                .await
            {
                Ok(CallResult::Success(Err(CommandError::Conflict))) => {
                    last = CommandError::Conflict
                }
                Ok(CallResult::Success(result)) => return result,
                Ok(CallResult::Timeout) => {
                    return Err(CommandError::Unresponsive(
                        "the run's actor timed out".into(),
                    ));
                }
                // The actor stopped (passivated, finished, crashed) before answering.
                Ok(CallResult::SenderError) | Err(_) => {
                    self.live
                        .remove_if(&run_id, |_, r| r.get_id() == actor.get_id());
                }
            }
        }
        Err(last)
    }
}
