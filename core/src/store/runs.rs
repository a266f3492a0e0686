//! Run records and the capabilities to create, checkpoint and read them.
//!
//! A checkpoint is one atomic, fenced write: the run row (status, current step, context,
//! waiting, error, counters) moves from `expected_version` to `expected_version + 1`, and the
//! step records and events it carries are inserted in the same transaction. If the run is no
//! longer at `expected_version`, nothing is written and the writer gets
//! [`StoreError::Fenced`](super::StoreError::Fenced).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Page, StoreError};
use crate::run::{Context, EventRecord, Run, RunError, RunStatus, StepRecord, Waiting};

/// A run to create (status `queued`, version 0).
#[derive(Debug, Clone)]
pub struct NewRun {
    /// Run id (UUIDv7, so ids sort by creation time).
    pub id: Uuid,
    /// Workflow id.
    pub workflow_id: String,
    /// The pinned workflow version.
    pub workflow_version: i64,
    /// The starting context.
    pub context: Context,
    /// Template versions pinned at start: template id → version.
    pub pins: std::collections::BTreeMap<String, i64>,
    /// The client's idempotency key: a second create with it returns the first run.
    pub idempotency_key: Option<String>,
    /// Hash of the start request, to refuse the same key with a different request.
    pub request_fingerprint: Option<String>,
    /// Who started it.
    pub created_by: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Events recorded with the creation (`run.created`), numbered from 1.
    pub events: Vec<EventRecord>,
}

/// The outcome of [`RunStore::create_run`].
#[derive(Debug, Clone, PartialEq)]
pub enum CreatedRun {
    /// A new run was stored.
    New(Run),
    /// The idempotency key was used before by the same request: the earlier run.
    Existing(Run),
}

/// One fenced step of a run's life, written atomically.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The run.
    pub run_id: Uuid,
    /// The version the writer last saw; the write happens only if it still holds.
    pub expected_version: i64,
    /// New status.
    pub status: RunStatus,
    /// New current step.
    pub current_step: Option<String>,
    /// The whole context after the step.
    pub context: Context,
    /// The current step's kept progress (`None` clears it).
    pub step_state: Option<serde_json::Value>,
    /// What the run now waits for (only when `status` is waiting).
    pub waiting: Option<Waiting>,
    /// Why the run failed (only when `status` is failed).
    pub error: Option<RunError>,
    /// Step records to append.
    pub steps: Vec<StepRecord>,
    /// Events to append.
    pub events: Vec<EventRecord>,
    /// The run's step counter after this checkpoint.
    pub step_seq: i32,
    /// The run's event counter after this checkpoint.
    pub event_seq: i32,
    /// When the run reached a terminal state, if it just did.
    pub finished_at: Option<DateTime<Utc>>,
    /// The time of the checkpoint (`updated_at`).
    pub at: DateTime<Utc>,
    /// Timers to arm.
    pub timers: Vec<super::TimerSpec>,
    /// Messages to queue in the outbox.
    pub messages: Vec<super::NewMessage>,
    /// A running run parked until then (a long back-off): recovery leaves it to its timer.
    pub wake_at: Option<DateTime<Utc>>,
}

/// Where a page of runs continues: after this (created_at, id), newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunCursor {
    /// Creation time of the last run of the previous page.
    pub created_at: DateTime<Utc>,
    /// Its id.
    pub id: Uuid,
}

/// Filters and position for listing runs (newest first).
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    /// Only runs of this workflow.
    pub workflow_id: Option<String>,
    /// Only runs in this status.
    pub status: Option<RunStatus>,
    /// Only runs older than this position.
    pub before: Option<RunCursor>,
    /// Page size.
    pub limit: u32,
}

/// Creating, checkpointing and reading runs.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Stores a new run, or — when its idempotency key was used before — returns the earlier
    /// run if the fingerprints match and `Conflict` if they differ. Concurrent creates with one
    /// key yield exactly one new run (a unique constraint decides, not a read-then-write).
    async fn create_run(&self, new: NewRun) -> Result<CreatedRun, StoreError>;

    /// Creates several runs; one result per run, in order, each exactly as
    /// [`RunStore::create_run`] would answer it. A store that can writes the runs without an
    /// idempotency key in one statement and one commit (group commit of starts), and answers
    /// only once they are durable. The default creates them one by one.
    async fn create_runs(&self, batch: Vec<NewRun>) -> Vec<Result<CreatedRun, StoreError>> {
        let mut results = Vec::with_capacity(batch.len());
        for new in batch {
            results.push(self.create_run(new).await);
        }
        results
    }

    /// One run.
    async fn get_run(&self, id: Uuid) -> Result<Option<Run>, StoreError>;

    /// Runs, newest first.
    async fn list_runs(&self, query: &RunQuery) -> Result<Page<Run, RunCursor>, StoreError>;

    /// Writes a checkpoint if the run is still at `expected_version`; returns the new version.
    async fn checkpoint(&self, checkpoint: &Checkpoint) -> Result<i64, StoreError>;

    /// Writes several checkpoints (of one run or many) together; one result per checkpoint,
    /// in order. Each is fenced on its own, exactly as by [`RunStore::checkpoint`]: a stale one
    /// gets [`StoreError::Fenced`] and writes nothing, while the others are written. A later
    /// checkpoint of a run may expect the version an earlier one of the same batch produces.
    ///
    /// A store that can commits the whole batch at once (group commit: one transaction, one
    /// flush to disk), and answers only once it is durable. The default writes them one by
    /// one.
    async fn checkpoint_many(&self, batch: &[&Checkpoint]) -> Vec<Result<i64, StoreError>> {
        let mut results = Vec::with_capacity(batch.len());
        for cp in batch {
            results.push(self.checkpoint(cp).await);
        }
        results
    }

    /// The run's step history, in order.
    async fn run_steps(&self, id: Uuid) -> Result<Vec<StepRecord>, StoreError>;

    /// The run's events, in order.
    async fn run_events(&self, id: Uuid) -> Result<Vec<EventRecord>, StoreError>;

    /// Runs left `queued` or `running` (by a crash), oldest first, for recovery at start-up.
    async fn unfinished_runs(&self) -> Result<Vec<Uuid>, StoreError>;

    /// How many runs are in `status` now (for gauges; an index keeps it cheap for `waiting`).
    async fn count_runs(&self, status: RunStatus) -> Result<u64, StoreError>;
}

/// Small server-wide settings (e.g. the generated resume-token secret).
#[async_trait]
pub trait SettingsStore: Send + Sync {
    /// The value under `key`; if there is none, stores `value` and returns it. Concurrent
    /// callers all get the one value that won.
    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError>;
}
