//! Micro-benchmarks of the engine's pure hot paths (issue 7): expression compile and
//! evaluation, template rendering, JSON Schema validation of a model's answer, the state
//! machine driving a ten-step run, workflow validation, and the redaction filter.
//!
//! `cargo bench -p scaff-core` (release profile); `-- --quick` for a fast pass. The numbers are
//! for comparing before/after a change on one machine, not for quoting across machines.

use std::hint::black_box;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use scaff_core::ai::SchemaCheck;
use scaff_core::redact::Redactor;
use scaff_core::run::machine::{Effect, Input, Machine};
use scaff_core::run::step::{CompiledWorkflow, execute};
use scaff_core::run::{Context, Run, RunStatus};
use serde_json::{Value, json};
use uuid::Uuid;

const CHAIN10: &str = include_str!("../../examples/chain10.yaml");
const TRIAGE: &str = include_str!("../../examples/triage.yaml");

fn triage_context() -> Value {
    json!({
        "static": {"env": "production"},
        "profile": {},
        "inputs": {},
        "runtime": {
            "subject": "Cannot log in",
            "body": "Since Monday the login page spins forever.",
            "customer_tier": "enterprise",
            "triage": {"category": "bug", "urgency": 4, "labels": ["login", "web"]},
        },
    })
}

fn expressions(c: &mut Criterion) {
    let src = "runtime.triage.urgency >= 4 and runtime.customer_tier in ['pro', 'enterprise']";
    c.bench_function("expr/compile", |b| {
        b.iter(|| scaff_core::expr::compile(black_box(src)))
    });
    let expr = scaff_core::expr::compile(src).expect("compiles");
    let ctx = triage_context();
    c.bench_function("expr/eval", |b| b.iter(|| expr.eval_bool(black_box(&ctx))));
}

fn templates(c: &mut Criterion) {
    let src = "Classify this ticket. Subject: {{ runtime.subject }}. Body: {{ runtime.body }}.";
    let ctx = triage_context();
    c.bench_function("template/render", |b| {
        b.iter(|| scaff_core::template::render(black_box(src), black_box(&ctx)))
    });
}

fn schemas(c: &mut Criterion) {
    let schema = json!({
        "type": "object",
        "properties": {
            "category": {"type": "string", "enum": ["billing", "bug", "how_to", "abuse"]},
            "urgency": {"type": "integer", "minimum": 1, "maximum": 5},
            "labels": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["category", "urgency", "labels"],
    });
    let check = SchemaCheck::compile(&schema).expect("valid schema");
    let good = json!({"category": "bug", "urgency": 4, "labels": ["login"]});
    let bad = json!({"category": "spam", "urgency": 9});
    c.bench_function("schema/valid_answer", |b| {
        b.iter(|| check.violations(black_box(&good)))
    });
    c.bench_function("schema/invalid_answer", |b| {
        b.iter(|| check.violations(black_box(&bad)))
    });
}

fn queued() -> Run {
    let at = Utc.timestamp_opt(1_800_000_000, 0).single().expect("time");
    Run {
        id: Uuid::nil(),
        workflow_id: "chain10".into(),
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
        created_at: at,
        updated_at: at,
        finished_at: None,
        wake_at: None,
    }
}

/// Drives a whole chain10 run through the machine, executing each `set` step inline as the
/// actor does: ten steps, ten checkpoints, no I/O.
fn machine(c: &mut Criterion) {
    let def = scaff_core::workflow::parse(CHAIN10).expect("valid");
    let wf = CompiledWorkflow::compile("chain10".into(), 1, def).expect("compiles");
    let now = Utc.timestamp_opt(1_800_000_001, 0).single().expect("time");
    c.bench_function("machine/chain10_run", |b| {
        b.iter(|| {
            let mut run = queued();
            let mut pending = Vec::new();
            let mut input = Input::Drive;
            let mut checkpoints = 0;
            loop {
                let tr = Machine {
                    workflow: &wf,
                    pending_events: &pending,
                }
                .apply(&run, input, now)
                .expect("applies");
                run = tr.run;
                pending = tr.pending_events;
                let mut next = None;
                for effect in tr.effects {
                    match effect {
                        Effect::Checkpoint(_) => checkpoints += 1,
                        Effect::RunStep { step_id, attempt } => {
                            let outcome = execute(&wf, &step_id, &run.context);
                            next = Some(Input::StepFinished {
                                step_id,
                                attempt,
                                started_at: now,
                                outcome,
                                events: Vec::new(),
                            });
                        }
                        Effect::Passivate | Effect::Stop => {}
                    }
                }
                match next {
                    Some(i) => input = i,
                    None => break,
                }
            }
            assert_eq!(checkpoints, 10);
            black_box(run)
        })
    });
}

fn validation(c: &mut Criterion) {
    c.bench_function("workflow/parse_and_validate_triage", |b| {
        b.iter(|| scaff_core::workflow::parse(black_box(TRIAGE)))
    });
}

fn redaction(c: &mut Criterion) {
    let r = Redactor::new(["tok-5c1e7a9b3d2f", "hunter2-password"], Default::default());
    let line = r#"{"timestamp":"2026-11-24T05:23:19.254658Z","level":"INFO","message":"http.response","latency_ms":3,"status":200,"target":"scaff_actors::api_step","span":{"attempt":1,"method":"POST","run_id":"01a20b9f-4ea3-7282-b336-552202361cd1","step_id":"call","url":"http://127.0.0.1:43959/hook","workflow_id":"notify","workflow_version":1,"name":"http.call"}}"#;
    c.bench_function("redact/log_line", |b| b.iter(|| r.text(black_box(line))));
}

criterion_group!(
    benches,
    expressions,
    templates,
    schemas,
    machine,
    validation,
    redaction
);
criterion_main!(benches);
