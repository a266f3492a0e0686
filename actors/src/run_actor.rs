//! The per-run actor: applies inputs through the state machine, persists each checkpoint
//! before anything that follows it, executes the next step, and stops when the run waits or
//! ends.
//!
//! The actor struct is configuration only; `pre_start` builds the state from the arguments.
//! A failed *step* is an input to the machine, never an `Err` from `handle` (that would kill
//! the actor); only a panic or a lost fence stops it early.

use std::sync::Arc;

use dashmap::DashMap;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use scaff_core::run::machine::{Effect, Input, Machine};
use scaff_core::run::step::{CompiledWorkflow, StepEvent, StepOutcome};
use scaff_core::run::{EventRecord, Run};
use scaff_core::store::{Checkpoint, StoreError};
use serde_json::{Map, Value as Json};
use uuid::Uuid;

use crate::batcher::Checkpointer;
use crate::deps::{Deps, Execution};
use crate::error::CommandError;
use crate::events::EventHub;
use crate::watch::RunWatch;

/// The reply to a command: the run as it stands after the command.
pub(crate) type Reply = RpcReplyPort<Result<Run, CommandError>>;

/// Messages a run actor handles.
pub(crate) enum RunMsg {
    /// Make progress (start, or restart the current step after a recovery).
    Drive,
    /// The current step ended.
    StepFinished {
        step_id: String,
        attempt: i32,
        started_at: chrono::DateTime<chrono::Utc>,
        outcome: StepOutcome,
        events: Vec<StepEvent>,
    },
    /// A form submission.
    Submit {
        step_id: String,
        version: i64,
        inputs: Map<String, Json>,
        actor: Option<String>,
        reply: Reply,
    },
    /// An approver's decision.
    Decide {
        step_id: String,
        version: i64,
        approver: String,
        approved: bool,
        comment: Option<String>,
        reply: Reply,
    },
    /// A cancel request.
    Cancel {
        actor: Option<String>,
        reason: Option<String>,
        reply: Reply,
    },
    /// A durable timer of the run is due.
    Timer {
        kind: scaff_core::store::TimerKind,
        step_id: String,
        version: i64,
        nth: i32,
        reply: Reply,
    },
    /// The run's step kept panicking: fail the run.
    Crashed { message: String },
    /// A step's task panicked: fail this actor so the supervisor restarts the run.
    TaskFailed { message: String },
}

/// The run actor (configuration only).
pub(crate) struct RunActor;

/// What a run actor starts from.
pub(crate) struct RunArgs {
    pub run: Run,
    pub workflow: Arc<CompiledWorkflow>,
    pub deps: Deps,
    /// Where checkpoints are written (the group-commit batcher, or the store directly).
    pub checkpoints: Checkpointer,
    pub live: Arc<DashMap<Uuid, ActorRef<RunMsg>>>,
    pub watch: RunWatch,
    pub events: EventHub,
    /// The `traceparent` of the request that started or resumed the run, if any.
    pub caller: Option<crate::trace::TraceParent>,
}

/// The run actor's state: the run as last checkpointed (plus pending events).
pub(crate) struct RunState {
    run: Run,
    pending: Vec<EventRecord>,
    workflow: Arc<CompiledWorkflow>,
    deps: Deps,
    checkpoints: Checkpointer,
    live: Arc<DashMap<Uuid, ActorRef<RunMsg>>>,
    watch: RunWatch,
    /// Where the events of each persisted checkpoint are published, for live streams.
    events: EventHub,
    /// The step task in flight, aborted when the run is canceled or the actor stops (so a
    /// canceled run's model or HTTP call is not paid for to the end).
    inflight: Option<tokio::task::AbortHandle>,
    /// This segment's `run` span (ends when the actor's state is dropped).
    span: tracing::Span,
}

impl Actor for RunActor {
    type Msg = RunMsg;
    type State = RunState;
    type Arguments = RunArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: RunArgs,
    ) -> Result<RunState, ActorProcessingErr> {
        let span = crate::trace::segment_span(&args.run, args.caller.as_deref());
        Ok(RunState {
            span,
            run: args.run,
            pending: Vec::new(),
            workflow: args.workflow,
            deps: args.deps,
            checkpoints: args.checkpoints,
            live: args.live,
            watch: args.watch,
            events: args.events,
            inflight: None,
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut RunState,
    ) -> Result<(), ActorProcessingErr> {
        // Leave the live map before the supervisor hears of it, so a resume arriving now
        // rehydrates a fresh actor instead of finding this stopped one.
        let me = myself.get_id();
        state.live.remove_if(&state.run.id, |_, r| r.get_id() == me);
        state.span.record("status", state.run.status.as_str());
        if let Some(task) = state.inflight.take() {
            task.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: RunMsg,
        state: &mut RunState,
    ) -> Result<(), ActorProcessingErr> {
        let (input, reply) = match msg {
            RunMsg::Drive => (Input::Drive, None),
            RunMsg::StepFinished {
                step_id,
                attempt,
                started_at,
                outcome,
                events,
            } => (
                Input::StepFinished {
                    step_id,
                    attempt,
                    started_at,
                    outcome,
                    events,
                },
                None,
            ),
            RunMsg::Submit {
                step_id,
                version,
                inputs,
                actor,
                reply,
            } => (
                Input::Submit {
                    step_id,
                    version,
                    inputs,
                    actor,
                },
                Some(reply),
            ),
            RunMsg::Cancel {
                actor,
                reason,
                reply,
            } => (Input::Cancel { actor, reason }, Some(reply)),
            RunMsg::Decide {
                step_id,
                version,
                approver,
                approved,
                comment,
                reply,
            } => (
                Input::Decide {
                    step_id,
                    version,
                    approver,
                    approved,
                    comment,
                },
                Some(reply),
            ),
            RunMsg::Timer {
                kind,
                step_id,
                version,
                nth,
                reply,
            } => (
                Input::TimerFired {
                    kind,
                    step_id,
                    version,
                    nth,
                },
                Some(reply),
            ),
            RunMsg::Crashed { message } => (Input::Crashed { message }, None),
            RunMsg::TaskFailed { message } => return Err(message.into()),
        };
        // A checkpoint that cannot be written fails the actor: the supervisor restarts the run
        // from its last checkpoint (within the budget) instead of leaving it `running`.
        let result = state.apply(&myself, input, reply).await;
        if result.is_err() {
            // ractor skips `post_stop` for a failed actor: stop the step task here, or the
            // restarted run would race it with a second call.
            if let Some(task) = state.inflight.take() {
                task.abort();
            }
        }
        result.map_err(Into::into)
    }
}

impl RunState {
    async fn apply(
        &mut self,
        myself: &ActorRef<RunMsg>,
        input: Input,
        reply: Option<Reply>,
    ) -> Result<(), String> {
        let now = self.deps.clock.now();
        let machine = Machine {
            workflow: &self.workflow,
            pending_events: &self.pending,
        };
        let transition = match machine.apply(&self.run, input, now) {
            Ok(t) => t,
            Err(rejection) => {
                answer(reply, Err(CommandError::Rejected(rejection)));
                // A rehydrated waiting (or parked) run goes back to holding no memory.
                if self.run.status == scaff_core::run::RunStatus::Waiting
                    || self.run.wake_at.is_some()
                {
                    myself.stop(None);
                }
                return Ok(());
            }
        };
        let mut follow_up = Vec::new();
        for effect in transition.effects {
            match effect {
                Effect::Checkpoint(mut cp) => {
                    redact(&self.deps.redactor.current(), &mut cp);
                    let cp: Arc<Checkpoint> = Arc::from(cp);
                    let arms = !cp.timers.is_empty();
                    let began = std::time::Instant::now();
                    let persisted = self.persist(&cp).await;
                    self.deps.metrics.observe_checkpoint(began.elapsed());
                    if let Err(e) = persisted {
                        tracing::warn!(run_id = %self.run.id, error = %e, "checkpoint failed; the run restarts from its last checkpoint");
                        let message = format!("checkpoint failed: {e}");
                        answer(reply, Err(e));
                        return Err(message);
                    }
                    // Counted once the store has it: a lost fence or an outage counts nothing.
                    self.deps
                        .metrics
                        .record_checkpoint(&self.run.workflow_id, &cp);
                    if arms {
                        self.watch.timers_armed();
                    }
                    // Persisted (and redacted) events only: a stream never shows one the
                    // store does not have.
                    self.events.publish(&self.run, cp.status, &cp.events);
                    crate::trace::lifecycle_events(&self.span, &cp.events);
                }
                other => follow_up.push(other),
            }
        }
        self.run = transition.run;
        self.pending = transition.pending_events;
        self.watch.publish(&self.run);
        answer(reply, Ok(self.run.clone()));
        for effect in follow_up {
            match effect {
                Effect::RunStep { step_id, attempt } => self.run_step(myself, step_id, attempt),
                Effect::Passivate | Effect::Stop => myself.stop(None),
                Effect::Checkpoint(_) => {}
            }
        }
        Ok(())
    }

    /// Executes a step — inline, or in a spawned task for steps that call out — and feeds
    /// its outcome back through the mailbox, so a cancel already queued is handled first and
    /// the actor stays responsive while a slow call is in flight.
    fn run_step(&mut self, myself: &ActorRef<RunMsg>, step_id: String, attempt: i32) {
        let started_at = self.deps.clock.now();
        let step_type = self
            .workflow
            .def
            .step(&step_id)
            .map_or("unknown", |s| s.kind.type_name());
        let span = crate::trace::step_span(&self.span, &self.run, &step_id, step_type, attempt);
        let execution = span.in_scope(|| {
            self.deps
                .executor
                .execute(&self.workflow, &step_id, &self.run, attempt)
        });
        match execution {
            Execution::Ready((outcome, events)) => {
                let msg = RunMsg::StepFinished {
                    step_id,
                    attempt,
                    started_at,
                    outcome,
                    events,
                };
                if myself.send_message(msg).is_err() {
                    tracing::debug!(run_id = %self.run.id, "actor stopping; the step will be redone on recovery");
                }
            }
            Execution::Pending(future) => {
                let me = myself.clone();
                let run_id = self.run.id;
                let task = tokio::spawn(tracing::Instrument::instrument(future, span));
                self.inflight = Some(task.abort_handle());
                tokio::spawn(async move {
                    let msg = match task.await {
                        Ok((outcome, events)) => RunMsg::StepFinished {
                            step_id,
                            attempt,
                            started_at,
                            outcome,
                            events,
                        },
                        Err(e) if e.is_cancelled() => return,
                        Err(e) => RunMsg::TaskFailed {
                            message: panic_message(e),
                        },
                    };
                    if me.send_message(msg).is_err() {
                        tracing::debug!(%run_id, "actor gone; the step will be redone on recovery");
                    }
                });
            }
        }
    }

    /// Writes a checkpoint (through the group-commit batcher when it is on) and returns once
    /// the commit holding it is done, retrying while the store is unavailable. A lost fence
    /// is final.
    async fn persist(&self, cp: &Arc<Checkpoint>) -> Result<i64, CommandError> {
        let cfg = &self.deps.config;
        let mut backoff = cfg.checkpoint_backoff;
        let mut attempt = 0;
        loop {
            match self.checkpoints.checkpoint(cp).await {
                Ok(v) => return Ok(v),
                Err(StoreError::Fenced { .. }) => return Err(CommandError::Conflict),
                Err(e) if attempt < cfg.checkpoint_retries => {
                    attempt += 1;
                    tracing::warn!(run_id = %cp.run_id, error = %e, attempt, "checkpoint failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
                }
                Err(e) => return Err(CommandError::Store(e)),
            }
        }
    }
}

/// What leaves the run's own context passes the redaction filter before it is stored: event
/// data with every pattern (e-mails, card numbers, bearer tokens, …) and every secret value;
/// step records and error messages with secret values only (their values are the run's own
/// data, which its owner may read). The context itself keeps the real values.
fn redact(redactor: &scaff_core::redact::Redactor, cp: &mut Checkpoint) {
    for e in &mut cp.events {
        redactor.json(&mut e.data);
    }
    let secrets_only = redactor.with_patterns(scaff_core::redact::Patterns::Off);
    if secrets_only.secret_count() == 0 {
        return;
    }
    for s in &mut cp.steps {
        for v in [&mut s.input, &mut s.output].into_iter().flatten() {
            secrets_only.json(v);
        }
        if let Some(err) = &mut s.error {
            err.message = secrets_only.text(&err.message).into_owned();
        }
    }
    if let Some(err) = &mut cp.error {
        err.message = secrets_only.text(&err.message).into_owned();
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a step task panicked".into()),
        Err(e) => format!("a step task was cancelled: {e}"),
    }
}

fn answer(reply: Option<Reply>, result: Result<Run, CommandError>) {
    if let Some(port) = reply {
        // The caller may have given up (timeout); nothing to do then.
        let _ = port.send(result);
    }
}
