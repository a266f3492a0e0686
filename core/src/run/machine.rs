//! The run state machine: `apply(run, workflow, input, now)` → the next state and the effects
//! to perform, with no I/O.
//!
//! The actor persists the [`Effect::Checkpoint`] first and only then performs what follows it
//! (run the next step, passivate, stop). Inputs that cannot apply (a resume of a run that is
//! not waiting, a stale token, invalid form input) are refused with a [`Rejection`] and change
//! nothing. Tests drive the machine with inputs and assert on effects.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json, json};

use super::step::{CompiledWorkflow, StepEvent, StepOutcome, failure};
use super::{
    Decision, EventRecord, Run, RunError, RunStatus, StepRecord, StepStatus, Waiting, WaitingInput,
    events,
};
use crate::store::{Checkpoint, MessageKind, NewMessage, TimerKind, TimerSpec};
use crate::workflow::field::{FieldError, resolve_inputs};
use crate::workflow::{StepKind, WaitPolicy};

/// The most steps one run may execute: a workflow with `allow_cycles` whose loop never exits
/// fails with `run.step_limit` instead of running forever.
pub const MAX_STEPS: i32 = 10_000;

/// Something that happened to a run.
#[derive(Debug, Clone)]
pub enum Input {
    /// Make progress: start a queued run, or (re)start the current step of a running one.
    Drive,
    /// The current step ended.
    StepFinished {
        /// The step that ran.
        step_id: String,
        /// Which attempt it was.
        attempt: i32,
        /// When it started.
        started_at: DateTime<Utc>,
        /// How it ended.
        outcome: StepOutcome,
        /// Events the step reported (recorded before the step's own events).
        events: Vec<StepEvent>,
    },
    /// A person submitted the form the run waits on.
    Submit {
        /// The step the submission is for (from the resume token).
        step_id: String,
        /// The run version the token was issued at.
        version: i64,
        /// The submitted values.
        inputs: Map<String, Json>,
        /// Who submitted, when known.
        actor: Option<String>,
    },
    /// An approver decided on the approval the run waits on.
    Decide {
        /// The step the decision is for (from the approver's token).
        step_id: String,
        /// The wait's version the token was issued for.
        version: i64,
        /// Who decides (from the token).
        approver: String,
        /// Approve or reject.
        approved: bool,
        /// Their comment; a rejection's reason.
        comment: Option<String>,
    },
    /// A client canceled the run.
    Cancel {
        /// Who canceled, when known.
        actor: Option<String>,
        /// Why, when given.
        reason: Option<String>,
    },
    /// A durable timer armed by an earlier checkpoint is due.
    TimerFired {
        /// What it does.
        kind: TimerKind,
        /// The step it concerns.
        step_id: String,
        /// The version it fences on (the wait's, or the run's for retries).
        version: i64,
        /// Which reminder, or which attempt a retry runs.
        nth: i32,
    },
    /// The current step kept crashing the run's actor; give up on it.
    Crashed {
        /// The last panic message.
        message: String,
    },
}

/// What the actor must do, in order.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Persist this (fenced); nothing after it happens unless it succeeds.
    Checkpoint(Box<Checkpoint>),
    /// Execute a step.
    RunStep {
        /// The step.
        step_id: String,
        /// Attempt number, from 1.
        attempt: i32,
    },
    /// The run waits for input: release its memory.
    Passivate,
    /// The run is terminal: stop.
    Stop,
}

/// Why an input was refused; the run is unchanged.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    /// The run is finished.
    Terminal(RunStatus),
    /// The run is not waiting for input now.
    NotWaiting(RunStatus),
    /// The run waits on another step than the one named.
    WrongStep {
        /// The step it waits on.
        waiting_on: String,
    },
    /// The token was issued at another version: the run has moved on since.
    Stale,
    /// The input breaks the form's rules.
    Invalid(Vec<FieldError>),
    /// The run waits for something this input cannot provide (e.g. approvals).
    WrongInput(&'static str),
    /// The decider is not one of the step's approvers.
    NotApprover(String),
    /// This approver has already decided.
    AlreadyDecided(String),
}

/// The machine's verdict: the run's next state and the effects that lead there.
#[derive(Debug, Clone)]
pub struct Transition {
    /// The run after the transition (its `version` already counts the checkpoint, if any).
    pub run: Run,
    /// What to do, in order.
    pub effects: Vec<Effect>,
    /// Events to persist with the next checkpoint (when this transition has none).
    pub pending_events: Vec<EventRecord>,
}

/// The run being moved, with the events not yet persisted.
pub struct Machine<'a> {
    /// The compiled workflow the run executes.
    pub workflow: &'a CompiledWorkflow,
    /// Events produced earlier but not yet checkpointed (e.g. `run.started`).
    pub pending_events: &'a [EventRecord],
}

struct Draft {
    run: Run,
    events: Vec<EventRecord>,
    steps: Vec<StepRecord>,
    timers: Vec<TimerSpec>,
    messages: Vec<NewMessage>,
    now: DateTime<Utc>,
}

impl Draft {
    fn event(&mut self, kind: &str, step_id: Option<&str>, actor: Option<String>, data: Json) {
        self.run.event_seq += 1;
        self.events.push(EventRecord {
            seq: self.run.event_seq,
            kind: kind.to_string(),
            step_id: step_id.map(str::to_string),
            actor,
            data,
            created_at: self.now,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn step_record(
        &mut self,
        step_id: &str,
        step_type: &str,
        attempt: i32,
        status: StepStatus,
        input: Option<Json>,
        output: Option<Json>,
        error: Option<RunError>,
        started_at: DateTime<Utc>,
    ) {
        self.run.step_seq += 1;
        self.steps.push(StepRecord {
            seq: self.run.step_seq,
            step_id: step_id.to_string(),
            step_type: step_type.to_string(),
            attempt,
            status,
            input,
            output,
            error,
            started_at,
            finished_at: self.now,
        });
    }

    /// Text from outside (model answers, HTTP bodies, comments) may hold NUL characters, which
    /// PostgreSQL cannot store in JSON: the checkpoint would fail forever. The records and
    /// events of a checkpoint get U+FFFD in their place (runtime data with NUL is refused
    /// earlier, when a step's output is merged).
    fn scrub_nul(&mut self) {
        for e in &mut self.events {
            scrub(&mut e.data);
        }
        for s in &mut self.steps {
            for v in [&mut s.input, &mut s.output].into_iter().flatten() {
                scrub(v);
            }
            if let Some(err) = &mut s.error {
                err.message = err.message.replace('\0', "\u{FFFD}");
            }
        }
        if let Some(state) = &mut self.run.step_state {
            scrub(state);
        }
        if let Some(err) = &mut self.run.error {
            err.message = err.message.replace('\0', "\u{FFFD}");
        }
    }

    /// Seals the draft into a checkpoint followed by `then`.
    fn commit(mut self, expected_version: i64, then: Effect) -> Transition {
        self.scrub_nul();
        if self.run.status != RunStatus::Running {
            self.run.wake_at = None;
        }
        self.run.updated_at = self.now;
        if self.run.status.is_terminal() && self.run.finished_at.is_none() {
            self.run.finished_at = Some(self.now);
        }
        let checkpoint = Checkpoint {
            run_id: self.run.id,
            expected_version,
            status: self.run.status,
            current_step: self.run.current_step.clone(),
            context: self.run.context.clone(),
            step_state: self.run.step_state.clone(),
            waiting: self.run.waiting.clone(),
            error: self.run.error.clone(),
            steps: self.steps,
            events: self.events,
            step_seq: self.run.step_seq,
            event_seq: self.run.event_seq,
            finished_at: self
                .run
                .finished_at
                .filter(|_| self.run.status.is_terminal()),
            at: self.now,
            timers: self.timers,
            messages: self.messages,
            wake_at: self.run.wake_at,
        };
        self.run.version = expected_version + 1;
        Transition {
            run: self.run,
            effects: vec![Effect::Checkpoint(Box::new(checkpoint)), then],
            pending_events: Vec::new(),
        }
    }
}

impl Machine<'_> {
    /// Applies `input` to `run` at time `now`.
    pub fn apply(
        self,
        run: &Run,
        input: Input,
        now: DateTime<Utc>,
    ) -> Result<Transition, Rejection> {
        let mut draft = Draft {
            run: run.clone(),
            events: self.pending_events.to_vec(),
            steps: Vec::new(),
            timers: Vec::new(),
            messages: Vec::new(),
            now,
        };
        let expected = run.version;
        match input {
            Input::Drive => Ok(drive(self.workflow, draft)),
            Input::StepFinished {
                step_id,
                attempt,
                started_at,
                outcome,
                events: reported,
            } => {
                if run.status != RunStatus::Running || run.current_step.as_deref() != Some(&step_id)
                {
                    // A late result (the run was canceled or moved on): discard it.
                    return Ok(Transition {
                        run: draft.run,
                        effects: Vec::new(),
                        pending_events: draft.events,
                    });
                }
                for e in reported {
                    draft.event(&e.kind, Some(&step_id), None, e.data);
                }
                draft.run.wake_at = None;
                if let StepOutcome::Continue { state, retry_at } = outcome {
                    draft.run.step_state = Some(state);
                    if let Some(at) = retry_at.filter(|at| *at > now) {
                        // A long back-off: park on a durable timer, holding no memory.
                        draft.run.wake_at = Some(at);
                        draft.timers.push(TimerSpec {
                            kind: TimerKind::Retry,
                            step_id: step_id.clone(),
                            version: expected + 1,
                            nth: attempt + 1,
                            fire_at: at,
                        });
                        draft.event(
                            events::STEP_RETRY_SCHEDULED,
                            Some(&step_id),
                            None,
                            json!({"attempt": attempt + 1, "at": at}),
                        );
                        return Ok(draft.commit(expected, Effect::Passivate));
                    }
                    return Ok(draft.commit(
                        expected,
                        Effect::RunStep {
                            step_id,
                            attempt: attempt + 1,
                        },
                    ));
                }
                let step_type = step_type(self.workflow, &step_id);
                Ok(finish_step(
                    self.workflow,
                    draft,
                    expected,
                    FinishedStep {
                        step_id: &step_id,
                        step_type,
                        attempt,
                        started_at,
                        input: None,
                    },
                    outcome,
                ))
            }
            Input::Submit {
                step_id,
                version,
                inputs,
                actor,
            } => {
                let waiting = check_waiting(run, &step_id, version)?;
                let WaitingInput::Form { fields, .. } = &waiting.input else {
                    return Err(Rejection::WrongInput(
                        "this step waits for approvals, not form inputs",
                    ));
                };
                let values = resolve_inputs(fields, &inputs).map_err(Rejection::Invalid)?;
                let since = waiting.since;
                draft.run.status = RunStatus::Running;
                draft.run.waiting = None;
                draft.event(events::RUN_RESUMED, Some(&step_id), actor, json!({}));
                let next = self
                    .workflow
                    .def
                    .step(&step_id)
                    .and_then(|s| s.next.clone());
                let step_type = step_type(self.workflow, &step_id);
                Ok(finish_step(
                    self.workflow,
                    draft,
                    expected,
                    FinishedStep {
                        step_id: &step_id,
                        step_type,
                        attempt: 1,
                        started_at: since,
                        input: Some(Json::Object(inputs)),
                    },
                    StepOutcome::Done {
                        output: Json::Object(values.clone()),
                        updates: values,
                        next,
                    },
                ))
            }
            Input::Decide {
                step_id,
                version,
                approver,
                approved,
                comment,
            } => decide(
                self.workflow,
                draft,
                expected,
                Decision {
                    approver,
                    approved,
                    comment,
                    at: now,
                },
                &step_id,
                version,
            ),
            Input::Cancel { actor, reason } => {
                if run.status.is_terminal() {
                    return Err(Rejection::Terminal(run.status));
                }
                if let (RunStatus::Running, Some(step_id)) = (run.status, run.current_step.clone())
                {
                    let step_type = step_type(self.workflow, &step_id);
                    draft.step_record(
                        &step_id,
                        step_type,
                        1,
                        StepStatus::Canceled,
                        None,
                        None,
                        None,
                        now,
                    );
                }
                draft.run.status = RunStatus::Canceled;
                draft.run.waiting = None;
                let data = match reason {
                    Some(r) => json!({"reason": r}),
                    None => json!({}),
                };
                draft.event(
                    events::RUN_CANCELED,
                    run.current_step.as_deref(),
                    actor,
                    data,
                );
                Ok(draft.commit(expected, Effect::Stop))
            }
            Input::TimerFired {
                kind,
                step_id,
                version,
                nth,
            } => fire(self.workflow, draft, expected, kind, &step_id, version, nth),
            Input::Crashed { message } => {
                if run.status.is_terminal() {
                    return Err(Rejection::Terminal(run.status));
                }
                let step_id = run.current_step.clone();
                let error = RunError {
                    code: failure::PANICKED.to_string(),
                    message,
                    step_id: step_id.clone(),
                };
                if let Some(step_id) = &step_id {
                    let step_type = step_type(self.workflow, step_id);
                    draft.step_record(
                        step_id,
                        step_type,
                        1,
                        StepStatus::Failed,
                        None,
                        None,
                        Some(error.clone()),
                        now,
                    );
                    draft.event(
                        events::STEP_FAILED,
                        Some(step_id),
                        None,
                        json!({"error": error}),
                    );
                }
                draft.run.status = RunStatus::Failed;
                draft.run.waiting = None;
                draft.run.error = Some(error.clone());
                draft.event(
                    events::RUN_FAILED,
                    step_id.as_deref(),
                    None,
                    json!({"error": error}),
                );
                Ok(draft.commit(expected, Effect::Stop))
            }
        }
    }
}

/// Records an approver's decision: a rejection fails the run, enough approvals finish the
/// step, anything else keeps the run waiting with the decision recorded.
fn decide(
    wf: &CompiledWorkflow,
    mut draft: Draft,
    expected: i64,
    decision: Decision,
    step_id: &str,
    version: i64,
) -> Result<Transition, Rejection> {
    let waiting = check_waiting(&draft.run, step_id, version)?.clone();
    let WaitingInput::Approval {
        approvers,
        min_approvals,
        mut decisions,
        message,
    } = waiting.input
    else {
        return Err(Rejection::WrongInput(
            "this step waits for form inputs, not approvals",
        ));
    };
    let who = decision.approver.to_lowercase();
    if !approvers.iter().any(|a| a.to_lowercase() == who) {
        return Err(Rejection::NotApprover(decision.approver));
    }
    if decisions.iter().any(|d| d.approver.to_lowercase() == who) {
        return Err(Rejection::AlreadyDecided(decision.approver));
    }
    draft.event(
        events::APPROVAL_DECIDED,
        Some(step_id),
        Some(decision.approver.clone()),
        json!({"approver": decision.approver, "approved": decision.approved, "comment": decision.comment}),
    );
    decisions.push(decision.clone());
    let step_type = step_type(wf, step_id);
    if !decision.approved {
        let reason = decision
            .comment
            .clone()
            .unwrap_or_else(|| "no reason given".into());
        let error = RunError {
            code: failure::REJECTED.into(),
            message: format!("rejected by {}: {reason}", decision.approver),
            step_id: Some(step_id.to_string()),
        };
        draft.run.waiting = None;
        draft.step_record(
            step_id,
            step_type,
            1,
            StepStatus::Failed,
            Some(json!({"decisions": decisions})),
            None,
            Some(error.clone()),
            waiting.since,
        );
        draft.event(
            events::STEP_FAILED,
            Some(step_id),
            None,
            json!({"error": error}),
        );
        return Ok(fail_run(draft, expected, error));
    }
    let approvals = decisions.iter().filter(|d| d.approved).count() as u32;
    if approvals < min_approvals {
        draft.run.waiting = Some(Waiting {
            input: WaitingInput::Approval {
                approvers,
                min_approvals,
                decisions,
                message,
            },
            ..waiting
        });
        return Ok(draft.commit(expected, Effect::Passivate));
    }
    draft.run.status = RunStatus::Running;
    draft.run.waiting = None;
    draft.event(
        events::RUN_RESUMED,
        Some(step_id),
        Some(decision.approver),
        json!({}),
    );
    let next = wf.def.step(step_id).and_then(|s| s.next.clone());
    let result = json!({"approved": true, "decisions": decisions});
    let mut updates = Map::new();
    updates.insert(step_id.to_string(), result.clone());
    Ok(finish_step(
        wf,
        draft,
        expected,
        FinishedStep {
            step_id,
            step_type,
            attempt: 1,
            started_at: waiting.since,
            input: None,
        },
        StepOutcome::Done {
            output: result,
            updates,
            next,
        },
    ))
}

/// Replaces NUL characters in every string and key of `value`.
fn scrub(value: &mut Json) {
    match value {
        Json::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
        Json::Array(items) => items.iter_mut().for_each(scrub),
        Json::Object(map) if map.keys().any(|k| k.contains('\0')) => {
            let entries = std::mem::take(map);
            for (k, mut v) in entries {
                scrub(&mut v);
                map.insert(k.replace('\0', "\u{FFFD}"), v);
            }
        }
        Json::Object(map) => map.values_mut().for_each(scrub),
        _ => {}
    }
}

fn step_type<'w>(wf: &'w CompiledWorkflow, step_id: &str) -> &'w str {
    wf.def
        .step(step_id)
        .map_or("unknown", |s| s.kind.type_name())
}

fn check_waiting<'r>(run: &'r Run, step_id: &str, version: i64) -> Result<&'r Waiting, Rejection> {
    if run.status.is_terminal() {
        return Err(Rejection::Terminal(run.status));
    }
    let Some(waiting) = run
        .waiting
        .as_ref()
        .filter(|_| run.status == RunStatus::Waiting)
    else {
        return Err(Rejection::NotWaiting(run.status));
    };
    if waiting.step_id != step_id {
        return Err(Rejection::WrongStep {
            waiting_on: waiting.step_id.clone(),
        });
    }
    if version != waiting.version {
        return Err(Rejection::Stale);
    }
    Ok(waiting)
}

/// Starts a queued run or restarts the current step of a running one. No checkpoint: the run
/// is already durable as queued/running, and the events ride along with the step's checkpoint.
fn drive(wf: &CompiledWorkflow, mut draft: Draft) -> Transition {
    let effects = match draft.run.status {
        RunStatus::Queued => {
            let start = wf.def.start_step.clone();
            draft.run.status = RunStatus::Running;
            draft.run.current_step = Some(start.clone());
            draft.event(events::RUN_STARTED, None, None, json!({}));
            draft.event(
                events::STEP_STARTED,
                Some(&start),
                None,
                json!({"attempt": 1}),
            );
            vec![Effect::RunStep {
                step_id: start,
                attempt: 1,
            }]
        }
        RunStatus::Running if draft.run.wake_at.is_some_and(|at| at > draft.now) => {
            // Parked for a back-off: its retry timer wakes it.
            vec![Effect::Passivate]
        }
        RunStatus::Running => match draft.run.current_step.clone() {
            Some(step) => {
                // A parked run whose back-off is over just wakes up; anything else running
                // was interrupted by a crash or a restart.
                if draft.run.wake_at.take().is_none() {
                    draft.event(events::RUN_RECOVERED, Some(&step), None, json!({}));
                }
                vec![Effect::RunStep {
                    step_id: step,
                    attempt: 1,
                }]
            }
            None => Vec::new(),
        },
        RunStatus::Waiting => vec![Effect::Passivate],
        _ => vec![Effect::Stop],
    };
    Transition {
        run: draft.run,
        effects,
        pending_events: draft.events,
    }
}

struct FinishedStep<'a> {
    step_id: &'a str,
    step_type: &'a str,
    attempt: i32,
    started_at: DateTime<Utc>,
    input: Option<Json>,
}

fn finish_step(
    wf: &CompiledWorkflow,
    mut draft: Draft,
    expected: i64,
    step: FinishedStep<'_>,
    outcome: StepOutcome,
) -> Transition {
    let now = draft.now;
    // Whatever the step kept between attempts ends with it.
    draft.run.step_state = None;
    match outcome {
        StepOutcome::Done { updates, .. } if super::find_nul_in(&updates).is_some() => {
            let at = super::find_nul_in(&updates).unwrap_or_default();
            let error = RunError {
                code: "step.invalid_output".into(),
                message: format!("the step's output holds a NUL character (U+0000) at `{at}`"),
                step_id: Some(step.step_id.to_string()),
            };
            finish_step(wf, draft, expected, step, StepOutcome::Failed(error))
        }
        StepOutcome::Done {
            output,
            updates,
            next,
        } => {
            draft.run.context.runtime.extend(updates);
            let duration_ms = (now - step.started_at).num_milliseconds().max(0);
            draft.step_record(
                step.step_id,
                step.step_type,
                step.attempt,
                StepStatus::Completed,
                step.input,
                Some(output),
                None,
                step.started_at,
            );
            draft.event(
                events::STEP_COMPLETED,
                Some(step.step_id),
                None,
                json!({"duration_ms": duration_ms}),
            );
            match next {
                Some(_) if draft.run.step_seq >= MAX_STEPS => {
                    let error = RunError {
                        code: "run.step_limit".into(),
                        message: format!(
                            "the run executed {MAX_STEPS} steps; a loop that never ends is assumed"
                        ),
                        step_id: Some(step.step_id.to_string()),
                    };
                    fail_run(draft, expected, error)
                }
                Some(next) if wf.def.step(&next).is_some() => {
                    draft.run.current_step = Some(next.clone());
                    draft.event(
                        events::STEP_STARTED,
                        Some(&next),
                        None,
                        json!({"attempt": 1}),
                    );
                    draft.commit(
                        expected,
                        Effect::RunStep {
                            step_id: next,
                            attempt: 1,
                        },
                    )
                }
                Some(missing) => {
                    let error = RunError {
                        code: failure::DEFINITION.into(),
                        message: format!(
                            "step `{}` continues at `{missing}`, which does not exist",
                            step.step_id
                        ),
                        step_id: Some(step.step_id.to_string()),
                    };
                    fail_run(draft, expected, error)
                }
                None => {
                    draft.run.status = RunStatus::Completed;
                    draft.run.current_step = None;
                    draft.event(events::RUN_COMPLETED, None, None, json!({}));
                    draft.commit(expected, Effect::Stop)
                }
            }
        }
        StepOutcome::Wait(input) => {
            let kind = match &input {
                WaitingInput::Form { .. } => "form",
                WaitingInput::Approval { .. } => "approval",
            };
            let version = expected + 1;
            let policy = wait_policy(wf, step.step_id);
            let deadline = policy
                .and_then(|p| p.timeout)
                .map(|d| now + chrono::Duration::seconds(secs(d)));
            if let Some(at) = deadline {
                draft.timers.push(TimerSpec {
                    kind: TimerKind::Timeout,
                    step_id: step.step_id.to_string(),
                    version,
                    nth: 0,
                    fire_at: at,
                });
            }
            if let Some(every) = policy.and_then(|p| p.reminder) {
                draft.timers.push(TimerSpec {
                    kind: TimerKind::Reminder,
                    step_id: step.step_id.to_string(),
                    version,
                    nth: 1,
                    fire_at: now + chrono::Duration::seconds(secs(every)),
                });
            }
            let waiting = Waiting {
                step_id: step.step_id.to_string(),
                input,
                since: now,
                version,
                deadline,
                reminders_sent: 0,
            };
            match &waiting.input {
                WaitingInput::Approval { approvers, .. } => {
                    for who in approvers.clone() {
                        draft.message(wf, &waiting, MessageKind::ApprovalRequested, who);
                    }
                }
                WaitingInput::Form { notify, .. } => {
                    for who in notify.clone() {
                        draft.message(wf, &waiting, MessageKind::FormRequested, who);
                    }
                }
            }
            draft.run.status = RunStatus::Waiting;
            draft.run.waiting = Some(waiting);
            let mut data = json!({"kind": kind});
            if let Some(at) = deadline {
                data["deadline"] = json!(at);
            }
            draft.event(events::RUN_WAITING, Some(step.step_id), None, data);
            draft.commit(expected, Effect::Passivate)
        }
        StepOutcome::Continue { .. } => {
            // Handled before a step is finished; reaching here is a machine bug.
            let error = RunError {
                code: failure::DEFINITION.into(),
                message: "internal: an unfinished step was treated as finished".into(),
                step_id: Some(step.step_id.to_string()),
            };
            fail_run(draft, expected, error)
        }
        StepOutcome::Failed(error) => {
            draft.step_record(
                step.step_id,
                step.step_type,
                step.attempt,
                StepStatus::Failed,
                step.input,
                None,
                Some(error.clone()),
                step.started_at,
            );
            draft.event(
                events::STEP_FAILED,
                Some(step.step_id),
                None,
                json!({"error": error}),
            );
            fail_run(draft, expected, error)
        }
    }
}

fn fail_run(mut draft: Draft, expected: i64, error: RunError) -> Transition {
    draft.run.status = RunStatus::Failed;
    draft.run.current_step = error.step_id.clone();
    draft.run.error = Some(error.clone());
    draft.event(
        events::RUN_FAILED,
        error.step_id.as_deref(),
        None,
        json!({"error": error}),
    );
    draft.commit(expected, Effect::Stop)
}

/// The most reminders one wait sends (a wait without a deadline would otherwise remind forever).
pub const MAX_REMINDERS: i32 = 10;

impl Draft {
    /// Queues a message about `waiting` to `recipient`, with a deterministic id (UUIDv7 at
    /// the checkpoint's time, random bits from the run id and the event counter), so the
    /// machine stays pure.
    fn message(
        &mut self,
        wf: &CompiledWorkflow,
        waiting: &Waiting,
        kind: MessageKind,
        recipient: String,
    ) {
        let (message, min_approvals, fields) = match &waiting.input {
            WaitingInput::Approval {
                message,
                min_approvals,
                ..
            } => (message.clone(), Some(*min_approvals), None),
            WaitingInput::Form { fields, .. } => (
                None,
                None,
                Some(
                    fields
                        .iter()
                        .map(
                            |f| json!({"key": f.key, "type": f.field_type, "required": f.required}),
                        )
                        .collect::<Vec<_>>(),
                ),
            ),
        };
        let data = json!({
            "workflow_id": wf.def.id,
            "workflow_version": self.run.workflow_version,
            "workflow_name": wf.def.name,
            "message": message,
            "min_approvals": min_approvals,
            "deadline": waiting.deadline,
            "reminder": waiting.reminders_sent,
            "fields": fields,
        });
        let seed = self.run.id.as_u128()
            ^ ((self.run.event_seq as u128) << 64)
            ^ (self.messages.len() as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut random = [0u8; 10];
        random.copy_from_slice(&seed.to_le_bytes()[..10]);
        let millis = self.now.timestamp_millis().max(0) as u64;
        let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
        self.messages.push(NewMessage {
            id,
            kind,
            recipient,
            step_id: waiting.step_id.clone(),
            wait_version: waiting.version,
            data,
        });
    }
}

fn secs(d: crate::workflow::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 1000)
}

/// The deadline and reminder policy of a waiting step.
fn wait_policy<'w>(wf: &'w CompiledWorkflow, step_id: &str) -> Option<&'w WaitPolicy> {
    match &wf.def.step(step_id)?.kind {
        StepKind::Form(f) => Some(&f.wait),
        StepKind::Approval(a) => Some(&a.wait),
        _ => None,
    }
}

/// A durable timer is due. Timers whose fence no longer holds (the run moved on, the reminder
/// was sent) are refused as [`Rejection::Stale`]: the caller retires them without effect.
fn fire(
    wf: &CompiledWorkflow,
    mut draft: Draft,
    expected: i64,
    kind: TimerKind,
    step_id: &str,
    version: i64,
    nth: i32,
) -> Result<Transition, Rejection> {
    let now = draft.now;
    if kind == TimerKind::Retry {
        let run = &draft.run;
        let parked = run.status == RunStatus::Running
            && run.current_step.as_deref() == Some(step_id)
            && run.version == version
            && run.wake_at.is_some();
        if !parked {
            return Err(Rejection::Stale);
        }
        draft.run.wake_at = None;
        return Ok(Transition {
            run: draft.run,
            effects: vec![Effect::RunStep {
                step_id: step_id.to_string(),
                attempt: nth,
            }],
            pending_events: draft.events,
        });
    }
    let waiting = check_waiting(&draft.run, step_id, version)?.clone();
    let policy = wait_policy(wf, step_id);
    let step_type = step_type(wf, step_id);
    if kind == TimerKind::Reminder {
        if waiting.reminders_sent + 1 != nth {
            return Err(Rejection::Stale);
        }
        let mut reminded = Vec::new();
        let kind = match &waiting.input {
            WaitingInput::Approval {
                approvers,
                decisions,
                ..
            } => {
                for who in approvers {
                    let decided = decisions
                        .iter()
                        .any(|d| d.approver.eq_ignore_ascii_case(who));
                    if !decided {
                        reminded.push(who.clone());
                    }
                }
                MessageKind::ApprovalReminder
            }
            WaitingInput::Form { notify, .. } => {
                reminded.extend(notify.iter().cloned());
                MessageKind::FormReminder
            }
        };
        let mut waiting = waiting;
        waiting.reminders_sent = nth;
        for who in &reminded {
            draft.message(wf, &waiting, kind, who.clone());
        }
        if let Some(every) = policy.and_then(|p| p.reminder) {
            let at = now + chrono::Duration::seconds(secs(every));
            if nth < MAX_REMINDERS && waiting.deadline.is_none_or(|d| at < d) {
                draft.timers.push(TimerSpec {
                    kind: TimerKind::Reminder,
                    step_id: step_id.to_string(),
                    version,
                    nth: nth + 1,
                    fire_at: at,
                });
            }
        }
        draft.event(
            events::WAIT_REMINDED,
            Some(step_id),
            None,
            json!({"reminder": nth, "recipients": reminded}),
        );
        draft.run.waiting = Some(waiting);
        return Ok(draft.commit(expected, Effect::Passivate));
    }
    // The deadline passed.
    let (code, decisions) = match &waiting.input {
        WaitingInput::Approval { decisions, .. } => (failure::APPROVAL_TIMEOUT, json!(decisions)),
        WaitingInput::Form { .. } => (failure::FORM_TIMEOUT, json!([])),
    };
    draft.run.waiting = None;
    draft.event(
        events::STEP_TIMED_OUT,
        Some(step_id),
        None,
        json!({"deadline": waiting.deadline, "on_timeout": policy.and_then(|p| p.on_timeout.clone())}),
    );
    let started = FinishedStep {
        step_id,
        step_type,
        attempt: 1,
        started_at: waiting.since,
        input: None,
    };
    match policy.and_then(|p| p.on_timeout.clone()) {
        Some(next) => {
            draft.run.status = RunStatus::Running;
            let result = json!({"approved": false, "timed_out": true, "decisions": decisions});
            let mut updates = Map::new();
            updates.insert(step_id.to_string(), result.clone());
            Ok(finish_step(
                wf,
                draft,
                expected,
                started,
                StepOutcome::Done {
                    output: result,
                    updates,
                    next: Some(next),
                },
            ))
        }
        None => {
            let error = super::RunError {
                code: code.to_string(),
                message: format!(
                    "`{step_id}` timed out waiting for {}",
                    if code == failure::FORM_TIMEOUT {
                        "its form"
                    } else {
                        "approvals"
                    }
                ),
                step_id: Some(step_id.to_string()),
            };
            Ok(finish_step(
                wf,
                draft,
                expected,
                started,
                StepOutcome::Failed(error),
            ))
        }
    }
}

#[cfg(test)]
mod tests;
