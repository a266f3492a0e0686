//! Row shapes shared by both adapters (sqlx decodes them from either database) and their
//! mapping to the port's records.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use scaff_core::run::{
    Context, EventRecord, Run, RunError, RunStatus, StepRecord, StepStatus, Waiting,
};
use scaff_core::store::{
    CreatedRun, NewRun, NewTemplateVersion, NewWorkflowVersion, Page, RunCursor, SealedSecret,
    StoreError, TemplateVersion, WorkflowSummary, WorkflowVersion,
};
use sqlx::types::Json;
use uuid::Uuid;

/// A full `workflows` row.
#[derive(sqlx::FromRow)]
pub(super) struct VersionRow {
    id: String,
    version: i64,
    name: String,
    description: Option<String>,
    definition: Json<serde_json::Value>,
    source_yaml: String,
    start_step: String,
    created_at: DateTime<Utc>,
    created_by: Option<String>,
}

impl From<VersionRow> for WorkflowVersion {
    fn from(r: VersionRow) -> Self {
        WorkflowVersion {
            id: r.id,
            version: r.version,
            name: r.name,
            description: r.description,
            definition: r.definition.0,
            source: r.source_yaml,
            start_step: r.start_step,
            created_at: r.created_at,
            created_by: r.created_by,
        }
    }
}

/// A `workflows` row without the bulky columns, for listings.
#[derive(sqlx::FromRow)]
pub(super) struct SummaryRow {
    id: String,
    version: i64,
    name: String,
    description: Option<String>,
    start_step: String,
    created_at: DateTime<Utc>,
    created_by: Option<String>,
}

/// The record of a version just inserted.
pub(super) fn saved(
    new: NewWorkflowVersion,
    version: i64,
    created_at: DateTime<Utc>,
) -> WorkflowVersion {
    WorkflowVersion {
        id: new.id,
        version,
        name: new.name,
        description: new.description,
        definition: new.definition,
        source: new.source,
        start_step: new.start_step,
        created_at,
        created_by: new.created_by,
    }
}

/// Turns `limit + 1` fetched rows into a page and its continuation key.
pub(super) fn page(mut rows: Vec<SummaryRow>, limit: usize) -> Page<WorkflowSummary> {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_after = if more {
        rows.last().map(|r| r.id.clone())
    } else {
        None
    };
    Page {
        items: rows
            .into_iter()
            .map(|r| WorkflowSummary {
                id: r.id,
                version: r.version,
                name: r.name,
                description: r.description,
                start_step: r.start_step,
                created_at: r.created_at,
                created_by: r.created_by,
            })
            .collect(),
        next_after,
    }
}

/// A `templates` row.
#[derive(sqlx::FromRow)]
pub(super) struct TemplateRow {
    id: String,
    version: i64,
    system: Option<String>,
    prompt: String,
    description: Option<String>,
    created_at: DateTime<Utc>,
    created_by: Option<String>,
}

impl From<TemplateRow> for TemplateVersion {
    fn from(r: TemplateRow) -> Self {
        TemplateVersion {
            id: r.id,
            version: r.version,
            system: r.system,
            prompt: r.prompt,
            description: r.description,
            created_at: r.created_at,
            created_by: r.created_by,
        }
    }
}

/// The `templates` columns [`TemplateRow`] reads.
macro_rules! template_columns {
    () => {
        "id, version, system, prompt, description, created_at, created_by"
    };
}
pub(super) use template_columns;

/// The record of a template version just inserted.
pub(super) fn saved_template(new: NewTemplateVersion, version: i64) -> TemplateVersion {
    TemplateVersion {
        id: new.id,
        version,
        system: new.system,
        prompt: new.prompt,
        description: new.description,
        created_at: new.created_at,
        created_by: new.created_by,
    }
}

/// Turns `limit + 1` fetched template rows into a page and its continuation key.
pub(super) fn template_page(mut rows: Vec<TemplateRow>, limit: usize) -> Page<TemplateVersion> {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_after = if more {
        rows.last().map(|r| r.id.clone())
    } else {
        None
    };
    Page {
        items: rows.into_iter().map(Into::into).collect(),
        next_after,
    }
}

/// A `secrets` row.
#[derive(sqlx::FromRow)]
pub(super) struct SecretRow {
    name: String,
    ciphertext: Vec<u8>,
    key_id: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<SecretRow> for SealedSecret {
    fn from(r: SecretRow) -> Self {
        SealedSecret {
            name: r.name,
            ciphertext: r.ciphertext,
            key_id: r.key_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// The `secrets` columns [`SecretRow`] reads.
macro_rules! secret_columns {
    () => {
        "name, ciphertext, key_id, created_at, updated_at"
    };
}
pub(super) use secret_columns;

/// The `runs` columns every run query selects, in [`RunRow`]'s order.
macro_rules! run_columns {
    () => {
        "id, workflow_id, workflow_version, status, current_step, context, waiting, error, \
         step_state, pins, version, step_seq, event_seq, idempotency_key, request_fingerprint, \
         created_by, created_at, updated_at, finished_at, wake_at"
    };
}
pub(super) use run_columns;

/// The `run_steps` columns [`StepRow`] reads.
macro_rules! step_columns {
    () => {
        "seq, step_id, step_type, attempt, status, input, output, error, started_at, finished_at"
    };
}
pub(super) use step_columns;

/// The `events` columns [`EventRow`] reads.
macro_rules! event_columns {
    () => {
        "seq, kind, step_id, actor, data, created_at"
    };
}
pub(super) use event_columns;

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("corrupt row: {what}"))
}

/// A `runs` row. `Id` is how the database hands back a UUID: [`Uuid`] from PostgreSQL's
/// `UUID`, [`Hyphenated`](uuid::fmt::Hyphenated) from SQLite's TEXT.
#[derive(sqlx::FromRow)]
pub(super) struct RunRow<Id> {
    id: Id,
    workflow_id: String,
    workflow_version: i64,
    status: String,
    current_step: Option<String>,
    context: Json<Context>,
    waiting: Option<Json<Waiting>>,
    error: Option<Json<RunError>>,
    step_state: Option<Json<serde_json::Value>>,
    pins: Json<BTreeMap<String, i64>>,
    version: i64,
    step_seq: i32,
    event_seq: i32,
    idempotency_key: Option<String>,
    request_fingerprint: Option<String>,
    created_by: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    wake_at: Option<DateTime<Utc>>,
}

impl<Id: Into<Uuid>> TryFrom<RunRow<Id>> for Run {
    type Error = StoreError;

    fn try_from(r: RunRow<Id>) -> Result<Self, StoreError> {
        let id: Uuid = r.id.into();
        let status = RunStatus::parse(&r.status)
            .ok_or_else(|| corrupt(format_args!("run {id} has status `{}`", r.status)))?;
        Ok(Run {
            id,
            workflow_id: r.workflow_id,
            workflow_version: r.workflow_version,
            status,
            current_step: r.current_step,
            context: r.context.0,
            waiting: r.waiting.map(|w| w.0),
            error: r.error.map(|e| e.0),
            step_state: r.step_state.map(|s| s.0),
            pins: r.pins.0,
            version: r.version,
            step_seq: r.step_seq,
            event_seq: r.event_seq,
            idempotency_key: r.idempotency_key,
            request_fingerprint: r.request_fingerprint,
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
            finished_at: r.finished_at,
            wake_at: r.wake_at,
        })
    }
}

/// Maps fetched run rows, failing on the first corrupt one.
pub(super) fn runs<Id: Into<Uuid>>(rows: Vec<RunRow<Id>>) -> Result<Vec<Run>, StoreError> {
    rows.into_iter().map(Run::try_from).collect()
}

/// Turns `limit + 1` fetched runs into a page and the cursor of its last item.
pub(super) fn run_page(mut items: Vec<Run>, limit: usize) -> Page<Run, RunCursor> {
    let more = items.len() > limit;
    items.truncate(limit);
    let next_after = if more {
        items.last().map(|r| RunCursor {
            created_at: r.created_at,
            id: r.id,
        })
    } else {
        None
    };
    Page { items, next_after }
}

/// A new run of a batch: its position in the batch, the run it creates and its events.
pub(super) type BuiltRun = (usize, Run, Vec<EventRecord>);

/// `RunStore::create_runs` for a store that can write several runs without idempotency keys
/// at once (`insert`: one statement or one transaction). Runs with a key may meet an earlier
/// run, so they take `create_run`; so does every run of a batch that failed as a whole, so one
/// bad run cannot fail its neighbours. One result per run, in order.
pub(super) async fn create_runs<S, E>(
    store: &S,
    batch: Vec<NewRun>,
    insert: impl AsyncFnOnce(&[BuiltRun]) -> Result<(), E>,
) -> Vec<Result<CreatedRun, StoreError>>
where
    S: scaff_core::store::RunStore + ?Sized,
    E: std::fmt::Display,
{
    let mut results: Vec<Option<Result<CreatedRun, StoreError>>> =
        std::iter::repeat_with(|| None).take(batch.len()).collect();
    let (keyless, keyed): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .enumerate()
        .partition(|(_, n)| n.idempotency_key.is_none());
    if keyless.len() > 1 {
        let built: Vec<BuiltRun> = keyless
            .into_iter()
            .map(|(i, n)| {
                let (run, events) = new_run(n);
                (i, run, events)
            })
            .collect();
        match insert(&built).await {
            Ok(()) => {
                for (i, run, _) in built {
                    results[i] = Some(Ok(CreatedRun::New(run)));
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, size = built.len(), "run batch failed; creating one by one");
                for (i, run, events) in built {
                    results[i] = Some(store.create_run(renew(run, events)).await);
                }
            }
        }
    } else {
        for (i, new) in keyless {
            results[i] = Some(store.create_run(new).await);
        }
    }
    for (i, new) in keyed {
        results[i] = Some(store.create_run(new).await);
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(StoreError::Unavailable("run not created".into()))))
        .collect()
}

/// The [`NewRun`] a built run came from, to create it again on its own.
fn renew(run: Run, events: Vec<EventRecord>) -> NewRun {
    NewRun {
        id: run.id,
        workflow_id: run.workflow_id,
        workflow_version: run.workflow_version,
        context: run.context,
        pins: run.pins,
        idempotency_key: run.idempotency_key,
        request_fingerprint: run.request_fingerprint,
        created_by: run.created_by,
        created_at: run.created_at,
        events,
    }
}

/// The run [`create_run`](scaff_core::store::RunStore::create_run) stores for `new`.
pub(super) fn new_run(new: NewRun) -> (Run, Vec<EventRecord>) {
    let run = Run {
        id: new.id,
        workflow_id: new.workflow_id,
        workflow_version: new.workflow_version,
        status: RunStatus::Queued,
        current_step: None,
        context: new.context,
        waiting: None,
        error: None,
        step_state: None,
        pins: new.pins,
        version: 0,
        step_seq: 0,
        event_seq: i32::try_from(new.events.len()).unwrap_or(i32::MAX),
        idempotency_key: new.idempotency_key,
        request_fingerprint: new.request_fingerprint,
        created_by: new.created_by,
        created_at: new.created_at,
        updated_at: new.created_at,
        finished_at: None,
        wake_at: None,
    };
    (run, new.events)
}

/// What a create whose idempotency key was taken returns: the earlier run, if the request
/// is the same one.
pub(super) fn existing(
    earlier: Run,
    fingerprint: Option<&String>,
) -> Result<CreatedRun, StoreError> {
    if earlier.request_fingerprint.as_ref() == fingerprint {
        Ok(CreatedRun::Existing(earlier))
    } else {
        Err(StoreError::Conflict(format!(
            "idempotency key `{}` was used for a different request",
            earlier.idempotency_key.as_deref().unwrap_or_default()
        )))
    }
}

/// A `run_steps` row.
#[derive(sqlx::FromRow)]
pub(super) struct StepRow {
    seq: i32,
    step_id: String,
    step_type: String,
    attempt: i32,
    status: String,
    input: Option<Json<serde_json::Value>>,
    output: Option<Json<serde_json::Value>>,
    error: Option<Json<RunError>>,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl TryFrom<StepRow> for StepRecord {
    type Error = StoreError;

    fn try_from(r: StepRow) -> Result<Self, StoreError> {
        let status = StepStatus::parse(&r.status)
            .ok_or_else(|| corrupt(format_args!("step {} has status `{}`", r.seq, r.status)))?;
        let finished_at = r
            .finished_at
            .ok_or_else(|| corrupt(format_args!("step {} has no finished_at", r.seq)))?;
        Ok(StepRecord {
            seq: r.seq,
            step_id: r.step_id,
            step_type: r.step_type,
            attempt: r.attempt,
            status,
            input: r.input.map(|j| j.0),
            output: r.output.map(|j| j.0),
            error: r.error.map(|e| e.0),
            started_at: r.started_at,
            finished_at,
        })
    }
}

/// Maps fetched step rows.
pub(super) fn steps(rows: Vec<StepRow>) -> Result<Vec<StepRecord>, StoreError> {
    rows.into_iter().map(StepRecord::try_from).collect()
}

/// An `events` row of a run.
#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    seq: Option<i32>,
    kind: String,
    step_id: Option<String>,
    actor: Option<String>,
    data: Json<serde_json::Value>,
    created_at: DateTime<Utc>,
}

impl TryFrom<EventRow> for EventRecord {
    type Error = StoreError;

    fn try_from(r: EventRow) -> Result<Self, StoreError> {
        let seq = r
            .seq
            .ok_or_else(|| corrupt(format_args!("run event `{}` has no seq", r.kind)))?;
        Ok(EventRecord {
            seq,
            kind: r.kind,
            step_id: r.step_id,
            actor: r.actor,
            data: r.data.0,
            created_at: r.created_at,
        })
    }
}

/// Maps fetched event rows.
pub(super) fn events(rows: Vec<EventRow>) -> Result<Vec<EventRecord>, StoreError> {
    rows.into_iter().map(EventRecord::try_from).collect()
}

/// Maps a failed `INSERT INTO runs`: an unknown workflow version trips the foreign key.
pub(super) fn create_run_error(e: sqlx::Error, run: &Run) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
            StoreError::NotFound(format!(
                "workflow `{}` version {}",
                run.workflow_id, run.workflow_version
            ))
        }
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(format!(
            "run {} (or one of its event numbers) already exists",
            run.id
        )),
        _ => super::unavailable(e),
    }
}
