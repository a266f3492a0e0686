//! The machine driven by inputs, asserting on effects and checkpoints — no I/O anywhere.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Map, Value as Json, json};
use uuid::Uuid;

use super::*;
use crate::run::step::{CompiledWorkflow, execute};
use crate::run::{Context, Run};
use crate::workflow;

const FLOW: &str = r#"
name: t
start_step: collect
steps:
  - id: collect
    type: form
    config: {fields: [{key: words, type: number, required: true, min: 1}]}
    next: route
  - id: route
    type: conditional
    config: {when: "runtime.words > 100", then: long, else: short}
  - id: long
    type: set
    config: {values: {size: "'long'"}}
  - id: short
    type: set
    config: {values: {size: "'short'", doubled: "runtime.words * 2"}}
"#;

fn compiled(src: &str) -> CompiledWorkflow {
    let def = workflow::parse(src).expect("valid workflow");
    CompiledWorkflow::compile("wf".into(), 1, def).expect("compiles")
}

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + secs, 0)
        .single()
        .expect("time")
}

fn queued() -> Run {
    Run {
        id: Uuid::nil(),
        workflow_id: "wf".into(),
        workflow_version: 1,
        status: RunStatus::Queued,
        current_step: None,
        context: Context::default(),
        waiting: None,
        error: None,
        step_state: None,
        pins: Default::default(),
        version: 0,
        step_seq: 0,
        event_seq: 1,
        idempotency_key: None,
        request_fingerprint: None,
        created_by: None,
        created_at: t(0),
        updated_at: t(0),
        finished_at: None,
        wake_at: None,
    }
}

/// A run with the events not yet checkpointed, as the actor keeps it.
struct Live {
    run: Run,
    pending: Vec<EventRecord>,
    checkpoints: Vec<Checkpoint>,
}

impl Live {
    fn new() -> Self {
        Live {
            run: queued(),
            pending: Vec::new(),
            checkpoints: Vec::new(),
        }
    }

    fn apply(
        &mut self,
        wf: &CompiledWorkflow,
        input: Input,
        now: DateTime<Utc>,
    ) -> Result<Vec<Effect>, Rejection> {
        let tr = Machine {
            workflow: wf,
            pending_events: &self.pending,
        }
        .apply(&self.run, input, now)?;
        self.run = tr.run;
        self.pending = tr.pending_events;
        for e in &tr.effects {
            if let Effect::Checkpoint(cp) = e {
                self.checkpoints.push((**cp).clone());
            }
        }
        Ok(tr.effects)
    }

    /// Executes inline steps as the actor would, until the run settles.
    fn settle(
        &mut self,
        wf: &CompiledWorkflow,
        mut effects: Vec<Effect>,
        now: DateTime<Utc>,
    ) -> Effect {
        loop {
            let last = effects.pop().expect("an effect");
            match last {
                Effect::RunStep { step_id, attempt } => {
                    let outcome = execute(wf, &step_id, &self.run.context);
                    effects = self
                        .apply(
                            wf,
                            Input::StepFinished {
                                step_id,
                                attempt,
                                started_at: now,
                                outcome,
                                events: Vec::new(),
                            },
                            now,
                        )
                        .expect("step results apply");
                }
                other => return other,
            }
        }
    }
}

fn inputs(v: Json) -> Map<String, Json> {
    v.as_object().expect("object").clone()
}

fn kinds(cp: &Checkpoint) -> Vec<&str> {
    cp.events.iter().map(|e| e.kind.as_str()).collect()
}

#[test]
fn starting_runs_the_first_step_without_a_checkpoint() {
    let wf = compiled(FLOW);
    let mut live = Live::new();
    let effects = live.apply(&wf, Input::Drive, t(1)).expect("drive");
    assert!(
        matches!(&effects[..], [Effect::RunStep { step_id, attempt: 1 }] if step_id == "collect")
    );
    assert!(
        live.checkpoints.is_empty(),
        "a queued run is already durable"
    );
    assert_eq!(live.run.status, RunStatus::Running);
    let pending: Vec<(&str, i32)> = live
        .pending
        .iter()
        .map(|e| (e.kind.as_str(), e.seq))
        .collect();
    assert_eq!(pending, [("run.started", 2), ("step.started", 3)]);
}

#[test]
fn a_form_checkpoints_waiting_then_passivates() {
    let wf = compiled(FLOW);
    let mut live = Live::new();
    let effects = live.apply(&wf, Input::Drive, t(1)).expect("drive");
    let last = live.settle(&wf, effects, t(2));
    assert!(matches!(last, Effect::Passivate));
    let cp = &live.checkpoints[0];
    assert_eq!((cp.expected_version, cp.status), (0, RunStatus::Waiting));
    assert_eq!(kinds(cp), ["run.started", "step.started", "run.waiting"]);
    assert_eq!(cp.event_seq, 4);
    assert!(
        cp.steps.is_empty(),
        "the form's record is written when it is submitted"
    );
    let waiting = cp.waiting.as_ref().expect("waiting");
    assert_eq!(waiting.step_id, "collect");
    assert!(
        matches!(&waiting.input, WaitingInput::Form { fields, .. } if fields[0].key == "words")
    );
    assert_eq!(live.run.version, 1);
}

fn waiting_run(wf: &CompiledWorkflow) -> Live {
    let mut live = Live::new();
    let effects = live.apply(wf, Input::Drive, t(1)).expect("drive");
    live.settle(wf, effects, t(2));
    live
}

#[test]
fn a_valid_submission_records_the_form_and_runs_to_completion() {
    let wf = compiled(FLOW);
    let mut live = waiting_run(&wf);
    let submit = Input::Submit {
        step_id: "collect".into(),
        version: 1,
        inputs: inputs(json!({"words": 50})),
        actor: Some("alice".into()),
    };
    let effects = live.apply(&wf, submit, t(10)).expect("accepted");
    let cp = live.checkpoints.last().expect("checkpoint");
    assert_eq!(
        (cp.expected_version, cp.status, cp.current_step.as_deref()),
        (1, RunStatus::Running, Some("route"))
    );
    assert_eq!(kinds(cp), ["run.resumed", "step.completed", "step.started"]);
    assert_eq!(cp.events[0].actor.as_deref(), Some("alice"));
    let record = &cp.steps[0];
    assert_eq!(
        (record.seq, record.step_id.as_str(), record.status),
        (1, "collect", StepStatus::Completed)
    );
    assert_eq!(
        record.started_at,
        t(2),
        "a form's step lasts from the wait to the submission"
    );
    assert_eq!(record.input, Some(json!({"words": 50})));

    let last = live.settle(&wf, effects, t(11));
    assert!(matches!(last, Effect::Stop));
    let fin = live.checkpoints.last().expect("final");
    assert_eq!(
        (fin.status, fin.current_step.as_deref()),
        (RunStatus::Completed, None)
    );
    assert_eq!(fin.finished_at, Some(t(11)));
    assert_eq!(
        live.run.context.runtime,
        inputs(json!({"words": 50, "size": "short", "doubled": 100}))
    );
    let steps: Vec<(i32, String)> = live
        .checkpoints
        .iter()
        .flat_map(|c| c.steps.iter().map(|s| (s.seq, s.step_id.clone())))
        .collect();
    assert_eq!(
        steps,
        [
            (1, "collect".into()),
            (2, "route".into()),
            (3, "short".into())
        ]
    );
    let route = &live.checkpoints[2].steps[0];
    assert_eq!(
        route.output,
        Some(json!({"branch": "default", "next": "short"}))
    );
    assert_eq!(
        live.run.version, 4,
        "one checkpoint per step after the wait"
    );
}

#[test]
fn the_other_branch_is_taken_when_its_condition_holds() {
    let wf = compiled(FLOW);
    let mut live = waiting_run(&wf);
    let effects = live
        .apply(
            &wf,
            Input::Submit {
                step_id: "collect".into(),
                version: 1,
                inputs: inputs(json!({"words": 500})),
                actor: None,
            },
            t(3),
        )
        .expect("accepted");
    live.settle(&wf, effects, t(4));
    assert_eq!(live.run.context.runtime.get("size"), Some(&json!("long")));
    assert_eq!(live.run.status, RunStatus::Completed);
}

#[test]
fn bad_submissions_are_refused_and_change_nothing() {
    let wf = compiled(FLOW);
    let mut live = waiting_run(&wf);
    let before = live.run.clone();
    let submit = |step: &str, version: i64, v: Json| Input::Submit {
        step_id: step.into(),
        version,
        inputs: inputs(v),
        actor: None,
    };
    let invalid = live.apply(
        &wf,
        submit("collect", 1, json!({"words": 0, "extra": 1})),
        t(3),
    );
    let Err(Rejection::Invalid(errors)) = invalid else {
        panic!("expected invalid input, got {invalid:?}")
    };
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["words", "extra"]);
    assert_eq!(
        live.apply(&wf, submit("collect", 0, json!({"words": 5})), t(3))
            .err(),
        Some(Rejection::Stale)
    );
    assert_eq!(
        live.apply(&wf, submit("route", 1, json!({"words": 5})), t(3))
            .err(),
        Some(Rejection::WrongStep {
            waiting_on: "collect".into()
        })
    );
    assert_eq!(live.run, before);
    assert_eq!(live.checkpoints.len(), 1);
}

#[test]
fn a_running_or_finished_run_takes_no_submission() {
    let wf = compiled(FLOW);
    let mut live = Live::new();
    live.apply(&wf, Input::Drive, t(1)).expect("drive");
    let submit = Input::Submit {
        step_id: "collect".into(),
        version: 0,
        inputs: Map::new(),
        actor: None,
    };
    assert_eq!(
        live.apply(&wf, submit.clone(), t(2)).err(),
        Some(Rejection::NotWaiting(RunStatus::Running))
    );
    live.apply(
        &wf,
        Input::Cancel {
            actor: None,
            reason: None,
        },
        t(3),
    )
    .expect("cancel");
    assert_eq!(
        live.apply(&wf, submit, t(4)).err(),
        Some(Rejection::Terminal(RunStatus::Canceled))
    );
}

#[test]
fn cancel_while_waiting_is_terminal_and_final() {
    let wf = compiled(FLOW);
    let mut live = waiting_run(&wf);
    let effects = live
        .apply(
            &wf,
            Input::Cancel {
                actor: Some("ops".into()),
                reason: Some("duplicate".into()),
            },
            t(5),
        )
        .expect("cancel");
    assert!(matches!(effects.last(), Some(Effect::Stop)));
    let cp = live.checkpoints.last().expect("checkpoint");
    assert_eq!(
        (cp.status, cp.waiting.is_none(), cp.finished_at),
        (RunStatus::Canceled, true, Some(t(5)))
    );
    assert_eq!(kinds(cp), ["run.canceled"]);
    assert_eq!(cp.events[0].data["reason"], "duplicate");
    assert_eq!(cp.events[0].actor.as_deref(), Some("ops"));
    assert!(cp.steps.is_empty());
    assert_eq!(
        live.apply(
            &wf,
            Input::Cancel {
                actor: None,
                reason: None
            },
            t(6)
        )
        .err(),
        Some(Rejection::Terminal(RunStatus::Canceled))
    );
}

#[test]
fn cancel_during_a_step_discards_its_result() {
    let wf = compiled(FLOW);
    let mut live = waiting_run(&wf);
    live.apply(
        &wf,
        Input::Submit {
            step_id: "collect".into(),
            version: 1,
            inputs: inputs(json!({"words": 5})),
            actor: None,
        },
        t(3),
    )
    .expect("accepted");
    assert_eq!(live.run.current_step.as_deref(), Some("route"));
    live.apply(
        &wf,
        Input::Cancel {
            actor: None,
            reason: None,
        },
        t(4),
    )
    .expect("cancel");
    let cp = live.checkpoints.last().expect("checkpoint");
    assert_eq!(cp.steps[0].status, StepStatus::Canceled);
    assert_eq!(cp.steps[0].step_id, "route");
    let late = execute(&wf, "route", &live.run.context);
    let effects = live
        .apply(
            &wf,
            Input::StepFinished {
                step_id: "route".into(),
                attempt: 1,
                started_at: t(3),
                outcome: late,
                events: Vec::new(),
            },
            t(5),
        )
        .expect("ignored");
    assert!(effects.is_empty(), "a late result changes nothing");
    assert_eq!(live.run.status, RunStatus::Canceled);
}

#[test]
fn an_expression_error_fails_the_step_and_the_run() {
    let wf = compiled(
        "name: t\nstart_step: a\nsteps:\n  - {id: a, type: set, config: {values: {x: 'runtime.missing + 1'}}}\n",
    );
    let mut live = Live::new();
    let effects = live.apply(&wf, Input::Drive, t(1)).expect("drive");
    assert!(matches!(live.settle(&wf, effects, t(2)), Effect::Stop));
    let cp = live.checkpoints.last().expect("checkpoint");
    assert_eq!(cp.status, RunStatus::Failed);
    let error = cp.error.as_ref().expect("error");
    assert_eq!(
        (error.code.as_str(), error.step_id.as_deref()),
        ("expression.eval_failed", Some("a"))
    );
    assert!(
        error.message.contains("runtime.missing"),
        "{}",
        error.message
    );
    assert_eq!(cp.steps[0].status, StepStatus::Failed);
    assert_eq!(
        kinds(cp),
        ["run.started", "step.started", "step.failed", "run.failed"]
    );
}

#[test]
fn recovery_restarts_the_current_step() {
    let wf = compiled(FLOW);
    let mut live = waiting_run(&wf);
    live.apply(
        &wf,
        Input::Submit {
            step_id: "collect".into(),
            version: 1,
            inputs: inputs(json!({"words": 5})),
            actor: None,
        },
        t(3),
    )
    .expect("accepted");
    // The actor died here; a new one loads the stored run (running, at `route`).
    let mut stored = live.run.clone();
    stored.event_seq = live.checkpoints.last().expect("cp").event_seq;
    let mut fresh = Live {
        run: stored,
        pending: Vec::new(),
        checkpoints: Vec::new(),
    };
    let effects = fresh.apply(&wf, Input::Drive, t(100)).expect("drive");
    assert!(matches!(&effects[..], [Effect::RunStep { step_id, .. }] if step_id == "route"));
    assert_eq!(fresh.pending[0].kind, "run.recovered");
    fresh.settle(&wf, effects, t(101));
    assert_eq!(fresh.run.status, RunStatus::Completed);
}

#[test]
fn a_crashing_step_fails_the_run_with_the_panic_message() {
    let wf = compiled(FLOW);
    let mut live = Live::new();
    live.apply(&wf, Input::Drive, t(1)).expect("drive");
    let effects = live
        .apply(
            &wf,
            Input::Crashed {
                message: "boom".into(),
            },
            t(2),
        )
        .expect("crash");
    assert!(matches!(effects.last(), Some(Effect::Stop)));
    let cp = live.checkpoints.last().expect("checkpoint");
    let error = cp.error.as_ref().expect("error");
    assert_eq!(
        (error.code.as_str(), error.message.as_str()),
        ("step.panicked", "boom")
    );
    assert_eq!(cp.steps[0].step_id, "collect");
}

#[test]
fn durations_come_from_the_clock_given() {
    let wf = compiled(
        "name: t\nstart_step: a\nsteps:\n  - {id: a, type: set, config: {values: {x: '1'}}}\n",
    );
    let mut live = Live::new();
    live.apply(&wf, Input::Drive, t(0)).expect("drive");
    let outcome = execute(&wf, "a", &live.run.context);
    live.apply(
        &wf,
        Input::StepFinished {
            step_id: "a".into(),
            attempt: 1,
            started_at: t(0),
            outcome,
            events: Vec::new(),
        },
        t(0) + Duration::milliseconds(1500),
    )
    .expect("finish");
    let cp = live.checkpoints.last().expect("checkpoint");
    let completed = cp
        .events
        .iter()
        .find(|e| e.kind == "step.completed")
        .expect("event");
    assert_eq!(completed.data["duration_ms"], 1500);
}

#[test]
fn a_loop_that_never_exits_fails_at_the_step_limit() {
    let wf = compiled(
        "name: t\nstart_step: a\nallow_cycles: true\nsteps:\n  - {id: a, type: set, config: {values: {x: '1'}}, next: b}\n  - {id: b, type: conditional, config: {when: 'runtime.x == 1', then: a, else: a}}\n",
    );
    let mut live = Live::new();
    let effects = live.apply(&wf, Input::Drive, t(1)).expect("drive");
    assert!(matches!(live.settle(&wf, effects, t(2)), Effect::Stop));
    let error = live.run.error.clone().expect("failed");
    assert_eq!(error.code, "run.step_limit");
    assert_eq!(live.run.step_seq, MAX_STEPS);
}

const APPROVAL: &str = r#"
name: t
start_step: review
steps:
  - id: review
    type: approval
    config: {approvers: [a@example.com, b@example.com, c@example.com], min_approvals: 2}
    next: done
  - {id: done, type: set, config: {values: {ok: "true"}}}
"#;

fn decide(who: &str, approved: bool, version: i64) -> Input {
    Input::Decide {
        step_id: "review".into(),
        version,
        approver: who.into(),
        approved,
        comment: Some(format!("{who} says {approved}")),
    }
}

fn approval_waiting(wf: &CompiledWorkflow) -> Live {
    let mut live = Live::new();
    let effects = live.apply(wf, Input::Drive, t(1)).expect("drive");
    assert!(matches!(live.settle(wf, effects, t(2)), Effect::Passivate));
    live
}

#[test]
fn a_quorum_of_approvals_continues_the_run() {
    let wf = compiled(APPROVAL);
    let mut live = approval_waiting(&wf);
    let wait_version = live.run.waiting.as_ref().expect("waiting").version;
    let effects = live
        .apply(&wf, decide("a@example.com", true, wait_version), t(3))
        .expect("first");
    assert!(
        matches!(effects.last(), Some(Effect::Passivate)),
        "one of two: still waiting"
    );
    let Some(Waiting {
        input: WaitingInput::Approval { decisions, .. },
        version,
        ..
    }) = &live.run.waiting
    else {
        panic!("still waiting on the approval")
    };
    assert_eq!(
        (decisions.len(), *version),
        (1, wait_version),
        "the wait keeps its version"
    );
    assert_eq!(
        live.apply(&wf, decide("A@example.com", true, wait_version), t(4))
            .err(),
        Some(Rejection::AlreadyDecided("A@example.com".into()))
    );
    assert_eq!(
        live.apply(&wf, decide("z@example.com", true, wait_version), t(4))
            .err(),
        Some(Rejection::NotApprover("z@example.com".into()))
    );
    let effects = live
        .apply(&wf, decide("b@example.com", true, wait_version), t(5))
        .expect("second");
    assert!(matches!(live.settle(&wf, effects, t(6)), Effect::Stop));
    assert_eq!(live.run.status, RunStatus::Completed);
    assert_eq!(live.run.context.runtime["review"]["approved"], true);
    let decided: Vec<&str> = live
        .checkpoints
        .iter()
        .flat_map(|c| c.events.iter())
        .filter(|e| e.kind == "approval.decided")
        .map(|e| e.actor.as_deref().expect("who"))
        .collect();
    assert_eq!(decided, ["a@example.com", "b@example.com"]);
}

#[test]
fn one_rejection_fails_the_run_with_the_reason() {
    let wf = compiled(APPROVAL);
    let mut live = approval_waiting(&wf);
    let v = live.run.waiting.as_ref().expect("waiting").version;
    let effects = live
        .apply(&wf, decide("c@example.com", false, v), t(3))
        .expect("decided");
    assert!(matches!(effects.last(), Some(Effect::Stop)));
    let error = live.run.error.clone().expect("failed");
    assert_eq!(error.code, "approval.rejected");
    assert!(
        error.message.contains("c@example.com says false"),
        "{}",
        error.message
    );
}

#[test]
fn form_submissions_and_decisions_do_not_mix() {
    let wf = compiled(APPROVAL);
    let mut live = approval_waiting(&wf);
    let v = live.run.waiting.as_ref().expect("waiting").version;
    let submit = Input::Submit {
        step_id: "review".into(),
        version: v,
        inputs: Map::new(),
        actor: None,
    };
    assert!(matches!(
        live.apply(&wf, submit, t(3)),
        Err(Rejection::WrongInput(_))
    ));
    let form = compiled(FLOW);
    let mut live = waiting_run(&form);
    let d = Input::Decide {
        step_id: "collect".into(),
        version: 1,
        approver: "a@example.com".into(),
        approved: true,
        comment: None,
    };
    assert!(matches!(
        live.apply(&form, d, t(3)),
        Err(Rejection::WrongInput(_))
    ));
}

#[test]
fn nul_characters_never_reach_a_checkpoint_record() {
    let wf = compiled(APPROVAL);
    let mut live = approval_waiting(&wf);
    let v = live.run.waiting.as_ref().expect("waiting").version;
    let input = Input::Decide {
        step_id: "review".into(),
        version: v,
        approver: "a@example.com".into(),
        approved: false,
        comment: Some("bad\u{0}byte".into()),
    };
    live.apply(&wf, input, t(3)).expect("decided");
    let cp = live.checkpoints.last().expect("checkpoint");
    let text = serde_json::to_string(&cp.events.iter().map(|e| &e.data).collect::<Vec<_>>())
        .expect("json");
    assert!(!text.contains("\\u0000"), "{text}");
    assert!(!cp.error.as_ref().expect("error").message.contains('\0'));
}

const TIMED: &str = r#"
name: timed
start_step: review
steps:
  - id: review
    type: approval
    config:
      approvers: [a@example.com, b@example.com]
      min_approvals: 2
      message: "Publish {{ inputs.title }}?"
      timeout: 1h
      reminder: 20m
      on_timeout: fallback
    next: done
  - {id: fallback, type: set, config: {values: {fell_back: "true"}}}
  - {id: done, type: set, config: {values: {ok: "true"}}}
"#;

fn fired(kind: TimerKind, version: i64, nth: i32) -> Input {
    Input::TimerFired {
        kind,
        step_id: "review".into(),
        version,
        nth,
    }
}

fn timed_waiting(src: &str) -> (CompiledWorkflow, Live) {
    let wf = compiled(src);
    let mut live = Live::new();
    live.run.context.inputs = inputs(json!({"title": "Rust"}));
    let effects = live.apply(&wf, Input::Drive, t(0)).expect("drive");
    assert!(matches!(live.settle(&wf, effects, t(0)), Effect::Passivate));
    (wf, live)
}

#[test]
fn a_wait_arms_its_deadline_and_reminder_and_notifies_each_approver_in_its_checkpoint() {
    let (_, live) = timed_waiting(TIMED);
    let cp = live.checkpoints.last().expect("the waiting checkpoint");
    let waiting = live.run.waiting.as_ref().expect("waiting");
    assert_eq!(waiting.deadline, Some(t(3600)));
    let timers: Vec<(TimerKind, i32, DateTime<Utc>, i64)> = cp
        .timers
        .iter()
        .map(|t| (t.kind, t.nth, t.fire_at, t.version))
        .collect();
    assert_eq!(
        timers,
        [
            (TimerKind::Timeout, 0, t(3600), waiting.version),
            (TimerKind::Reminder, 1, t(1200), waiting.version)
        ]
    );
    let to: Vec<&str> = cp.messages.iter().map(|m| m.recipient.as_str()).collect();
    assert_eq!(to, ["a@example.com", "b@example.com"]);
    assert!(
        cp.messages
            .iter()
            .all(|m| m.kind == MessageKind::ApprovalRequested && m.wait_version == waiting.version)
    );
    assert_eq!(cp.messages[0].data["message"], "Publish Rust?");
    assert_ne!(
        cp.messages[0].id, cp.messages[1].id,
        "each message has its own id"
    );
    // Replaying the same transition yields the same ids: the machine stays pure.
    let (_, again) = timed_waiting(TIMED);
    let again = again.checkpoints.last().expect("checkpoint");
    assert_eq!(again.messages[0].id, cp.messages[0].id);
}

#[test]
fn the_deadline_continues_at_on_timeout_with_the_decisions_so_far() {
    let (wf, mut live) = timed_waiting(TIMED);
    let v = live.run.waiting.as_ref().expect("waiting").version;
    live.apply(
        &wf,
        Input::Decide {
            step_id: "review".into(),
            version: v,
            approver: "a@example.com".into(),
            approved: true,
            comment: None,
        },
        t(10),
    )
    .expect("one approval");
    let effects = live
        .apply(&wf, fired(TimerKind::Timeout, v, 0), t(3600))
        .expect("the deadline applies");
    assert!(matches!(live.settle(&wf, effects, t(3600)), Effect::Stop));
    assert_eq!(live.run.status, RunStatus::Completed);
    let review = &live.run.context.runtime["review"];
    assert_eq!(review["timed_out"], true);
    assert_eq!(review["decisions"][0]["approver"], "a@example.com");
    assert_eq!(live.run.context.runtime["fell_back"], true);
    assert!(live.run.context.runtime.get("ok").is_none());
    let events: Vec<&str> = live
        .checkpoints
        .iter()
        .flat_map(|c| c.events.iter())
        .map(|e| e.kind.as_str())
        .collect();
    assert!(events.contains(&"step.timed_out"));
}

#[test]
fn without_on_timeout_the_deadline_fails_the_run_with_approval_timeout() {
    let src = TIMED.replace("      on_timeout: fallback\n", "").replace(
        "  - {id: fallback, type: set, config: {values: {fell_back: \"true\"}}}\n",
        "",
    );
    let (wf, mut live) = timed_waiting(&src);
    let v = live.run.waiting.as_ref().expect("waiting").version;
    let effects = live
        .apply(&wf, fired(TimerKind::Timeout, v, 0), t(3600))
        .expect("applies");
    assert!(matches!(effects.last(), Some(Effect::Stop)));
    assert_eq!(live.run.status, RunStatus::Failed);
    assert_eq!(
        live.run.error.as_ref().map(|e| e.code.as_str()),
        Some("approval.timeout")
    );
    let steps = &live.checkpoints.last().expect("cp").steps;
    assert_eq!(steps[0].status, StepStatus::Failed);
}

#[test]
fn a_form_deadline_fails_with_form_timeout() {
    let src = r#"
name: f
start_step: review
steps:
  - id: review
    type: form
    config: {fields: [{key: x, type: string}], timeout_hours: 2}
"#;
    let (wf, mut live) = timed_waiting(src);
    let cp = live.checkpoints.last().expect("cp");
    assert!(cp.messages.is_empty(), "forms name no recipients");
    let v = live.run.waiting.as_ref().expect("waiting").version;
    live.apply(&wf, fired(TimerKind::Timeout, v, 0), t(7200))
        .expect("applies");
    assert_eq!(
        live.run.error.as_ref().map(|e| e.code.as_str()),
        Some("form.timeout")
    );
}

#[test]
fn a_timer_after_the_run_moved_on_changes_nothing() {
    let (wf, mut live) = timed_waiting(TIMED);
    let v = live.run.waiting.as_ref().expect("waiting").version;
    for who in ["a@example.com", "b@example.com"] {
        let effects = live
            .apply(
                &wf,
                Input::Decide {
                    step_id: "review".into(),
                    version: v,
                    approver: who.into(),
                    approved: true,
                    comment: None,
                },
                t(5),
            )
            .expect("decided");
        live.settle(&wf, effects, t(5));
    }
    assert_eq!(live.run.status, RunStatus::Completed);
    let before = live.run.clone();
    for input in [
        fired(TimerKind::Timeout, v, 0),
        fired(TimerKind::Reminder, v, 1),
    ] {
        assert_eq!(
            live.apply(&wf, input, t(4000)).err(),
            Some(Rejection::Terminal(RunStatus::Completed))
        );
    }
    assert_eq!(live.run, before);
}

#[test]
fn a_reminder_goes_to_those_who_have_not_decided_once_and_arms_the_next() {
    let (wf, mut live) = timed_waiting(TIMED);
    let v = live.run.waiting.as_ref().expect("waiting").version;
    live.apply(
        &wf,
        Input::Decide {
            step_id: "review".into(),
            version: v,
            approver: "b@example.com".into(),
            approved: true,
            comment: None,
        },
        t(10),
    )
    .expect("b approves");
    let effects = live
        .apply(&wf, fired(TimerKind::Reminder, v, 1), t(1200))
        .expect("reminds");
    assert!(matches!(effects.last(), Some(Effect::Passivate)));
    let cp = live.checkpoints.last().expect("cp");
    let to: Vec<(&str, MessageKind)> = cp
        .messages
        .iter()
        .map(|m| (m.recipient.as_str(), m.kind))
        .collect();
    assert_eq!(to, [("a@example.com", MessageKind::ApprovalReminder)]);
    assert_eq!(
        cp.timers
            .iter()
            .map(|t| (t.kind, t.nth, t.fire_at))
            .collect::<Vec<_>>(),
        [(TimerKind::Reminder, 2, t(2400))]
    );
    assert_eq!(live.run.waiting.as_ref().map(|w| w.reminders_sent), Some(1));
    assert_eq!(live.run.status, RunStatus::Waiting);
    // The same reminder firing again (a crash before it was retired) sends nothing.
    assert_eq!(
        live.apply(&wf, fired(TimerKind::Reminder, v, 1), t(1201))
            .err(),
        Some(Rejection::Stale)
    );
    // The third reminder would fall after the deadline: none is armed.
    live.apply(&wf, fired(TimerKind::Reminder, v, 2), t(2400))
        .expect("second reminder");
    assert_eq!(
        live.checkpoints.last().expect("cp").timers,
        Vec::<TimerSpec>::new()
    );
}

#[test]
fn a_long_back_off_parks_the_run_on_a_retry_timer() {
    let wf = compiled(FLOW);
    let mut live = Live::new();
    live.apply(&wf, Input::Drive, t(0)).expect("drive");
    live.run.current_step = Some("route".into());
    let effects = live
        .apply(
            &wf,
            Input::StepFinished {
                step_id: "route".into(),
                attempt: 1,
                started_at: t(0),
                outcome: StepOutcome::Continue {
                    state: json!({"tries": 1}),
                    retry_at: Some(t(60)),
                },
                events: Vec::new(),
            },
            t(1),
        )
        .expect("parks");
    assert!(matches!(effects.last(), Some(Effect::Passivate)));
    let cp = live.checkpoints.last().expect("cp");
    assert_eq!(cp.wake_at, Some(t(60)));
    assert_eq!(cp.timers[0].kind, TimerKind::Retry);
    assert_eq!(cp.timers[0].version, live.run.version);
    // Recovery before the deadline leaves it parked.
    let effects = live.apply(&wf, Input::Drive, t(30)).expect("drive");
    assert!(matches!(effects.as_slice(), [Effect::Passivate]));
    // The timer wakes it for the next attempt.
    let version = live.run.version;
    let effects = live
        .apply(
            &wf,
            Input::TimerFired {
                kind: TimerKind::Retry,
                step_id: "route".into(),
                version,
                nth: 2,
            },
            t(60),
        )
        .expect("wakes");
    assert!(matches!(
        effects.as_slice(),
        [Effect::RunStep { attempt: 2, .. }]
    ));
    assert_eq!(live.run.wake_at, None);
    // Firing again (before the next checkpoint) is stale.
    assert_eq!(
        live.apply(
            &wf,
            Input::TimerFired {
                kind: TimerKind::Retry,
                step_id: "route".into(),
                version,
                nth: 2,
            },
            t(61)
        )
        .err(),
        Some(Rejection::Stale)
    );
}
