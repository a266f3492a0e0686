//! Runs: their status, context, step history and lifecycle events, and the pure state
//! machine that moves them (`machine`).
//!
//! Everything here is data plus pure functions; persisting, executing and scheduling belong to
//! the actor runtime (`scaff-actors`) and the store adapters.

pub mod machine;
pub mod step;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use uuid::Uuid;

use crate::workflow::Field;

/// Where a run is in its life. Terminal states never change again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Created; no step has started.
    Queued,
    /// A step is executing or about to.
    Running,
    /// Paused for a person's input; no actor holds it.
    Waiting,
    /// Every step finished.
    Completed,
    /// A step failed; see the run's error.
    Failed,
    /// Canceled by a client.
    Canceled,
}

impl RunStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Waiting,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Canceled,
    ];

    /// The status as stored and served.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Canceled => "canceled",
        }
    }

    /// Parses a stored status.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Completed, failed or canceled: nothing will change it again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Canceled
        )
    }

    /// Waiting or terminal: nothing happens until someone acts.
    pub fn is_settled(self) -> bool {
        self == RunStatus::Waiting || self.is_terminal()
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The data a run carries: steps read all four parts and write only `runtime`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Context {
    /// Constants from the workflow definition.
    #[serde(rename = "static", default)]
    pub static_data: Map<String, Json>,
    /// Who or what the run is for, given at start.
    #[serde(default)]
    pub profile: Map<String, Json>,
    /// The start request's payload.
    #[serde(default)]
    pub inputs: Map<String, Json>,
    /// Step outputs, accumulated.
    #[serde(default)]
    pub runtime: Map<String, Json>,
}

impl Context {
    /// The context as one JSON object, the shape expressions and templates see.
    pub fn to_json(&self) -> Json {
        serde_json::json!({
            "static": self.static_data,
            "profile": self.profile,
            "inputs": self.inputs,
            "runtime": self.runtime,
        })
    }
}

/// What a waiting run waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Waiting {
    /// The step waited on.
    pub step_id: String,
    /// The kind of input expected.
    #[serde(flatten)]
    pub input: WaitingInput,
    /// When the wait began.
    pub since: DateTime<Utc>,
    /// The run version when the wait began; resume tokens name it, so a token works for
    /// exactly this wait (approvers deciding one by one do not invalidate each other's).
    #[serde(default)]
    pub version: i64,
    /// When the wait times out (from the step's `timeout`), if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
    /// Reminders sent so far (each reminder timer fires only once).
    #[serde(default)]
    pub reminders_sent: i32,
}

/// The kind of input a waiting run expects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WaitingInput {
    /// Form fields.
    Form {
        /// The fields to fill in.
        fields: Vec<Field>,
        /// Who is told the form waits (rendered addresses).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        notify: Vec<String>,
    },
    /// Approvers' decisions.
    Approval {
        /// Who may decide.
        approvers: Vec<String>,
        /// How many approvals continue the run.
        #[serde(default = "one")]
        min_approvals: u32,
        /// The decisions so far.
        #[serde(default)]
        decisions: Vec<Decision>,
        /// The step's `message`, rendered over the context when the wait began.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
}

fn one() -> u32 {
    1
}

/// One approver's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Who decided (an approver's e-mail address).
    pub approver: String,
    /// Approved or rejected.
    pub approved: bool,
    /// Their comment (the reason, for a rejection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// Why a run or a step failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    /// Stable code, e.g. `expression.eval_failed`, `step.panicked`.
    pub code: String,
    /// Explanation.
    pub message: String,
    /// The step that failed, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_id: Option<String>,
}

/// How a step attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Finished; its output is merged into runtime.
    Completed,
    /// Failed; the run failed with it.
    Failed,
    /// Its result was discarded because the run was canceled.
    Canceled,
}

impl StepStatus {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Completed => "completed",
            StepStatus::Failed => "failed",
            StepStatus::Canceled => "canceled",
        }
    }

    /// Parses a stored step status.
    pub fn parse(s: &str) -> Option<Self> {
        [
            StepStatus::Completed,
            StepStatus::Failed,
            StepStatus::Canceled,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// One finished step, as kept in the run's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Position in the run's history, from 1.
    pub seq: i32,
    /// The step's id.
    pub step_id: String,
    /// The step's type.
    pub step_type: String,
    /// Which attempt this was, from 1.
    pub attempt: i32,
    /// How it ended.
    pub status: StepStatus,
    /// What it was given (a form's submitted inputs, …).
    pub input: Option<Json>,
    /// What it produced (the runtime keys it set, the branch it chose, …).
    pub output: Option<Json>,
    /// Why it failed.
    pub error: Option<RunError>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
}

/// Lifecycle event names (DESIGN §7).
pub mod events {
    /// The run was created.
    pub const RUN_CREATED: &str = "run.created";
    /// The run began executing.
    pub const RUN_STARTED: &str = "run.started";
    /// The run began waiting for input.
    pub const RUN_WAITING: &str = "run.waiting";
    /// Input arrived and the run continues.
    pub const RUN_RESUMED: &str = "run.resumed";
    /// The run finished.
    pub const RUN_COMPLETED: &str = "run.completed";
    /// The run failed.
    pub const RUN_FAILED: &str = "run.failed";
    /// The run was canceled.
    pub const RUN_CANCELED: &str = "run.canceled";
    /// A step began.
    pub const STEP_STARTED: &str = "step.started";
    /// A step finished.
    pub const STEP_COMPLETED: &str = "step.completed";
    /// A step failed.
    pub const STEP_FAILED: &str = "step.failed";
    /// An approver decided (approved or rejected), with their comment.
    pub const APPROVAL_DECIDED: &str = "approval.decided";
    /// A waiting step's deadline passed.
    pub const STEP_TIMED_OUT: &str = "step.timed_out";
    /// The people a waiting step waits for were reminded.
    pub const WAIT_REMINDED: &str = "wait.reminded";
    /// A step parked for a long back-off before its next attempt.
    pub const STEP_RETRY_SCHEDULED: &str = "step.retry_scheduled";
    /// The run was restarted from its last checkpoint after a crash or panic.
    pub const RUN_RECOVERED: &str = "run.recovered";
}

/// A lifecycle event, as kept with the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Order within the run, from 1.
    pub seq: i32,
    /// The event name (see [`events`]).
    pub kind: String,
    /// The step concerned, when one is.
    pub step_id: Option<String>,
    /// Who caused it, when known (an API key name, a token subject).
    pub actor: Option<String>,
    /// Details.
    pub data: Json,
    /// When it happened.
    pub created_at: DateTime<Utc>,
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// Run id.
    pub id: Uuid,
    /// Workflow id.
    pub workflow_id: String,
    /// The workflow version the run executes (pinned at start).
    pub workflow_version: i64,
    /// Status.
    pub status: RunStatus,
    /// The step executing or waited on; `None` before the first and after the last.
    pub current_step: Option<String>,
    /// The run's data.
    pub context: Context,
    /// What the run waits for, when waiting.
    pub waiting: Option<Waiting>,
    /// Why the run failed, when it did.
    pub error: Option<RunError>,
    /// The current step's progress kept between its attempts (an ai_generate conversation,
    /// retry counters); cleared when the step ends.
    pub step_state: Option<Json>,
    /// Template versions pinned when the run started: template id → version.
    pub pins: std::collections::BTreeMap<String, i64>,
    /// The checkpoint fence: bumped by every checkpoint.
    pub version: i64,
    /// How many step records the run has.
    pub step_seq: i32,
    /// How many events the run has.
    pub event_seq: i32,
    /// The client's idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// Hash of the start request, to tell a retry from a different request with the same key.
    pub request_fingerprint: Option<String>,
    /// Who started it.
    pub created_by: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it reached a terminal state.
    pub finished_at: Option<DateTime<Utc>>,
    /// A running run parked until then for a long back-off (its retry timer wakes it).
    pub wake_at: Option<DateTime<Utc>>,
}

/// The path (`a.b[2]`) of the first string or key holding a NUL character (U+0000), if any.
/// PostgreSQL cannot store NUL in JSON, so runs refuse it everywhere, on both stores.
pub fn find_nul(value: &Json) -> Option<String> {
    match value {
        Json::String(s) if s.contains('\0') => Some(String::new()),
        Json::Array(items) => items.iter().enumerate().find_map(|(i, v)| {
            find_nul(v).map(|p| {
                if p.is_empty() {
                    format!("[{i}]")
                } else {
                    format!("[{i}].{p}")
                }
            })
        }),
        Json::Object(map) => find_nul_in(map),
        _ => None,
    }
}

/// [`find_nul`] over the entries of an object.
pub fn find_nul_in(map: &Map<String, Json>) -> Option<String> {
    map.iter().find_map(|(k, v)| {
        if k.contains('\0') {
            return Some(k.clone());
        }
        find_nul(v).map(|p| {
            if p.is_empty() {
                k.clone()
            } else {
                format!("{k}.{p}")
            }
        })
    })
}

/// The time source, injected so tests control it.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock, truncated to microseconds (what both databases keep).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        use chrono::SubsecRound;
        Utc::now().trunc_subsecs(6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_classify() {
        for st in RunStatus::ALL {
            assert_eq!(RunStatus::parse(st.as_str()), Some(st));
        }
        assert!(RunStatus::Waiting.is_settled() && !RunStatus::Waiting.is_terminal());
        assert!(RunStatus::Canceled.is_terminal());
        assert!(!RunStatus::Running.is_settled());
    }

    #[test]
    fn waiting_serializes_with_its_kind() {
        let w = Waiting {
            step_id: "collect".into(),
            input: WaitingInput::Approval {
                approvers: vec!["a@example.com".into()],
                min_approvals: 1,
                decisions: Vec::new(),
                message: None,
            },
            since: DateTime::<Utc>::UNIX_EPOCH,
            version: 3,
            deadline: None,
            reminders_sent: 0,
        };
        let json = serde_json::to_value(&w).expect("json");
        assert_eq!(json["kind"], "approval");
        assert_eq!(json["step_id"], "collect");
        assert_eq!(serde_json::from_value::<Waiting>(json).expect("back"), w);
    }
}
