//! Compiled workflows and the steps that execute without I/O (`form`, `conditional`, `set`).
//!
//! A workflow version is compiled once — every expression parsed — and shared by all its runs
//! through an `Arc`. Executing a pure step is a function of the compiled step and the
//! context; steps that need the outside world (`ai_generate`, `api_call`, `approval`
//! decisions) report that they are not executable here.

use std::collections::HashMap;

use serde_json::{Map, Value as Json, json};

use super::{Context, RunError, WaitingInput};
use crate::expr::{self, Expr};
use crate::workflow::{StepKind, Workflow};

/// A step with its expressions compiled.
#[derive(Debug, Clone)]
pub enum CompiledStep {
    /// Waits for a person to fill in the form.
    Form,
    /// Chooses the first branch whose condition holds.
    Conditional {
        /// (condition, target) in order.
        branches: Vec<(Expr, String)>,
        /// Target when no branch holds.
        default: String,
    },
    /// Assigns computed values into runtime.
    Set {
        /// (runtime key, expression), in key order.
        values: Vec<(String, Expr)>,
    },
    /// Waits for approvers.
    Approval,
    /// Asks a model; the answer is held to the compiled schema.
    AiGenerate {
        /// The step's `json_schema`, compiled once.
        schema: std::sync::Arc<crate::ai::SchemaCheck>,
    },
    /// Sends one HTTP request; executed by the step executor's HTTP port (`scaff_actors`'s
    /// `api_step`), never inline.
    ApiCall,
}

/// A workflow version ready to run: the definition plus compiled steps.
#[derive(Debug)]
pub struct CompiledWorkflow {
    /// The workflow id.
    pub id: String,
    /// The version.
    pub version: i64,
    /// The definition.
    pub def: Workflow,
    steps: HashMap<String, CompiledStep>,
}

/// Codes of run failures that steps produce.
pub mod failure {
    /// An expression failed to evaluate (a missing name, a type error, …).
    pub const EXPRESSION: &str = "expression.eval_failed";
    /// A conditional's condition did not evaluate.
    pub const CONDITION: &str = "conditional.eval_failed";
    /// The step type has no executor in this build.
    pub const NOT_EXECUTABLE: &str = "step.not_executable";
    /// A step panicked more often than the restart budget allows.
    pub const PANICKED: &str = "step.panicked";
    /// An approver address did not render to an e-mail address.
    pub const APPROVERS: &str = "approval.approvers_invalid";
    /// An approver rejected.
    pub const REJECTED: &str = "approval.rejected";
    /// The stored definition no longer compiles.
    pub const DEFINITION: &str = "workflow.invalid";
    /// An approval's deadline passed without enough approvals (and no `on_timeout`).
    pub const APPROVAL_TIMEOUT: &str = "approval.timeout";
    /// A form's deadline passed without a submission (and no `on_timeout`).
    pub const FORM_TIMEOUT: &str = "form.timeout";
    /// A form's `notify` address could not be rendered.
    pub const FORM_NOTIFY: &str = "form.notify_invalid";
    /// An approval's `message` could not be rendered.
    pub const APPROVAL_MESSAGE: &str = "approval.message_invalid";
}

impl CompiledWorkflow {
    /// Compiles every expression of a stored definition.
    pub fn compile(id: String, version: i64, def: Workflow) -> Result<Self, String> {
        let mut steps = HashMap::with_capacity(def.steps.len());
        for step in &def.steps {
            let compiled = match &step.kind {
                StepKind::Form(_) => CompiledStep::Form,
                StepKind::Approval(_) => CompiledStep::Approval,
                StepKind::AiGenerate(ai) => CompiledStep::AiGenerate {
                    schema: std::sync::Arc::new(
                        crate::ai::SchemaCheck::compile(&ai.json_schema)
                            .map_err(|e| format!("step `{}`: json_schema: {e}", step.id))?,
                    ),
                },
                StepKind::ApiCall(_) => CompiledStep::ApiCall,
                StepKind::Conditional(c) => CompiledStep::Conditional {
                    branches: c
                        .branches
                        .iter()
                        .map(|b| Ok((compile(&step.id, &b.when)?, b.next.clone())))
                        .collect::<Result<_, String>>()?,
                    default: c.default.clone(),
                },
                StepKind::Set(s) => CompiledStep::Set {
                    values: s
                        .values
                        .iter()
                        .map(|(k, src)| Ok((k.clone(), compile(&step.id, src)?)))
                        .collect::<Result<_, String>>()?,
                },
            };
            steps.insert(step.id.clone(), compiled);
        }
        Ok(Self {
            id,
            version,
            def,
            steps,
        })
    }

    /// The compiled step with this id.
    pub fn step(&self, id: &str) -> Option<&CompiledStep> {
        self.steps.get(id)
    }
}

fn compile(step_id: &str, src: &str) -> Result<Expr, String> {
    expr::compile(src).map_err(|e| format!("step `{step_id}`: expression `{src}`: {e}"))
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    /// Finished: `updates` are merged into runtime and the run continues at `next`.
    Done {
        /// What the step produced, for its history record.
        output: Json,
        /// Runtime keys to set.
        updates: Map<String, Json>,
        /// The next step; `None` ends the run.
        next: Option<String>,
    },
    /// The run waits for input.
    Wait(WaitingInput),
    /// The step failed; the run fails with it.
    Failed(RunError),
    /// The step made progress worth keeping (an AI attempt that must be retried): checkpoint
    /// `state` as the run's step state and execute the step again.
    Continue {
        /// What the next attempt starts from.
        state: Json,
        /// Not before then: the run parks on a durable timer instead of a sleeping task
        /// (long back-offs). `None` runs the next attempt at once.
        retry_at: Option<chrono::DateTime<chrono::Utc>>,
    },
}

/// An event a step reports along with its outcome (e.g. `ai.request`, `ai.response`).
#[derive(Debug, Clone, PartialEq)]
pub struct StepEvent {
    /// Event name.
    pub kind: String,
    /// Details.
    pub data: Json,
}

/// Executes a step that needs no I/O. Steps of other types fail with `step.not_executable`.
pub fn execute(wf: &CompiledWorkflow, step_id: &str, ctx: &Context) -> StepOutcome {
    let (Some(step), Some(def)) = (wf.step(step_id), wf.def.step(step_id)) else {
        return fail(
            failure::DEFINITION,
            step_id,
            format!("no step `{step_id}` in the workflow"),
        );
    };
    match (step, &def.kind) {
        (CompiledStep::Form, StepKind::Form(form)) => {
            match addresses(&form.notify, &ctx.to_json()) {
                Ok(notify) => StepOutcome::Wait(WaitingInput::Form {
                    fields: form.fields.clone(),
                    notify,
                }),
                Err(message) => fail(failure::FORM_NOTIFY, step_id, message),
            }
        }
        (CompiledStep::Approval, StepKind::Approval(a)) => approval(step_id, a, ctx),
        (CompiledStep::Conditional { branches, default }, _) => {
            conditional(step_id, branches, default, ctx)
        }
        (CompiledStep::Set { values }, _) => set(step_id, values, def.next.clone(), ctx),
        _ => fail(
            failure::NOT_EXECUTABLE,
            step_id,
            format!(
                "`{}` steps cannot be executed by this server version yet",
                def.kind.type_name()
            ),
        ),
    }
}

/// `list` (approvers, a form's `notify`) with its templated entries rendered over `data`,
/// de-duplicated case-insensitively (the first spelling kept);
/// an entry that does not render, or not to an address, is an error naming it.
fn addresses(list: &[String], data: &Json) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for who in list {
        let address = if who.contains("{{") || who.contains("{%") {
            match crate::template::render(who, data) {
                Ok(r) if r.contains('@') => r.trim().to_string(),
                Ok(r) => return Err(format!("`{who}` rendered to `{r}`, not an e-mail address")),
                Err(e) => return Err(format!("`{who}`: {}", e.message)),
            }
        } else {
            who.clone()
        };
        let key = address.to_lowercase();
        if !out.iter().any(|a| a.to_lowercase() == key) {
            out.push(address);
        }
    }
    Ok(out)
}

/// Waits for the approvers, rendering any templated addresses (`{{ profile.manager }}`).
fn approval(step_id: &str, a: &crate::workflow::ApprovalConfig, ctx: &Context) -> StepOutcome {
    let data = ctx.to_json();
    // One person, one vote: a rendered address may repeat a listed one.
    let approvers = match addresses(&a.approvers, &data) {
        Ok(list) => list,
        Err(message) => return fail(failure::APPROVERS, step_id, format!("approver {message}")),
    };
    if (approvers.len() as u32) < a.min_approvals {
        return fail(
            failure::APPROVERS,
            step_id,
            format!(
                "{} distinct approvers cannot give the {} approvals required",
                approvers.len(),
                a.min_approvals
            ),
        );
    }
    let message = match &a.message {
        Some(m) if m.contains("{{") || m.contains("{%") => {
            match crate::template::render(m, &data) {
                Ok(text) => Some(text),
                Err(e) => {
                    return fail(
                        failure::APPROVAL_MESSAGE,
                        step_id,
                        format!("the approval message: {}", e.message),
                    );
                }
            }
        }
        other => other.clone(),
    };
    StepOutcome::Wait(WaitingInput::Approval {
        approvers,
        min_approvals: a.min_approvals,
        decisions: Vec::new(),
        message,
    })
}

fn fail(code: &str, step_id: &str, message: String) -> StepOutcome {
    StepOutcome::Failed(RunError {
        code: code.to_string(),
        message,
        step_id: Some(step_id.to_string()),
    })
}

fn conditional(
    step_id: &str,
    branches: &[(Expr, String)],
    default: &str,
    ctx: &Context,
) -> StepOutcome {
    let data = ctx.to_json();
    for (i, (cond, target)) in branches.iter().enumerate() {
        match cond.eval_bool(&data) {
            Ok(true) => {
                return StepOutcome::Done {
                    output: json!({"branch": i, "when": cond.source(), "next": target}),
                    updates: Map::new(),
                    next: Some(target.clone()),
                };
            }
            Ok(false) => {}
            Err(e) => {
                return fail(
                    failure::CONDITION,
                    step_id,
                    format!("branch {i} (`{}`): {}", cond.source(), e.message),
                );
            }
        }
    }
    StepOutcome::Done {
        output: json!({"branch": "default", "next": default}),
        updates: Map::new(),
        next: Some(default.to_string()),
    }
}

/// Every value is computed against the context as it was before the step, so the order of
/// keys never matters.
fn set(
    step_id: &str,
    values: &[(String, Expr)],
    next: Option<String>,
    ctx: &Context,
) -> StepOutcome {
    let data = ctx.to_json();
    let mut updates = Map::new();
    for (key, e) in values {
        match e.eval(&data) {
            Ok(v) => {
                updates.insert(key.clone(), v);
            }
            Err(err) => {
                return fail(
                    failure::EXPRESSION,
                    step_id,
                    format!("`{key}` = `{}`: {}", e.source(), err.message),
                );
            }
        }
    }
    StepOutcome::Done {
        output: Json::Object(updates.clone()),
        updates,
        next,
    }
}
