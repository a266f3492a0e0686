//! The SQLite adapter: the embedded default, a single file and no set-up.
//!
//! SQLite allows one writer at a time; a transaction that reads and then writes can fail with
//! "database is locked" no matter the busy timeout. So all writes go through a pool of exactly
//! one connection (writes queue in the pool, never in SQLite), and reads use a separate pool.
//! WAL mode lets readers proceed while the writer commits; `synchronous = FULL` keeps every
//! commit durable.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use scaff_core::run::{EventRecord, Run, RunStatus, StepRecord};
use scaff_core::store::{
    Checkpoint, CreatedRun, Health, NewMessage, NewRun, NewTemplateVersion, NewWorkflowVersion,
    Page, RunCursor, RunQuery, RunStore, SealedSecret, SecretStore, SettingsStore, StoreError,
    TemplateQuery, TemplateStore, TemplateVersion, TimerSpec, WorkflowQuery, WorkflowStore,
    WorkflowSummary, WorkflowVersion,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::types::Json;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use uuid::Uuid;
use uuid::fmt::Hyphenated;

use super::rows::{
    EventRow, RunRow, SecretRow, StepRow, SummaryRow, TemplateRow, VersionRow, create_run_error,
    event_columns, existing, new_run, page, run_columns, run_page, runs, saved, saved_template,
    secret_columns, step_columns, template_columns, template_page,
};
use super::{
    ConnectError, StoreOptions, is_unique_violation, like_pattern, micros, now_micros, unavailable,
};

/// SQLite-backed store.
#[derive(Clone)]
pub struct SqliteStore {
    /// Exactly one connection: the only writer.
    write: SqlitePool,
    /// Readers.
    read: SqlitePool,
}

impl SqliteStore {
    /// The reader pool (for queries defined in sibling modules).
    pub(super) fn reader(&self) -> &SqlitePool {
        &self.read
    }

    /// The single writer connection (for writes defined in sibling modules).
    pub(super) fn writer(&self) -> &SqlitePool {
        &self.write
    }

    /// Opens (creating if missing) and migrates, when asked.
    pub async fn connect(url: &str, opts: &StoreOptions) -> Result<Self, ConnectError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(ConnectError::Open)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(ConnectError::Open)?;
        if opts.migrate {
            sqlx::migrate!("./migrations/sqlite")
                .run(&write)
                .await
                .map_err(ConnectError::Migrate)?;
        }
        let read = SqlitePoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .connect_with(options.read_only(true))
            .await
            .map_err(ConnectError::Open)?;
        Ok(Self { write, read })
    }

    /// Inserts new runs without idempotency keys, with their creation events, in one
    /// transaction on the writer connection (one commit for the batch).
    async fn insert_runs(&self, runs: &[super::rows::BuiltRun]) -> Result<(), sqlx::Error> {
        let mut tx = self.write.begin().await?;
        for (_, run, events) in runs {
            sqlx::query(
                "INSERT INTO runs (id, workflow_id, workflow_version, status, context, pins, \
                 version, step_seq, event_seq, created_by, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, 'queued', ?4, ?5, 0, 0, ?6, ?7, ?8, ?8)",
            )
            .bind(text_id(run.id))
            .bind(&run.workflow_id)
            .bind(run.workflow_version)
            .bind(Json(&run.context))
            .bind(Json(&run.pins))
            .bind(run.event_seq)
            .bind(&run.created_by)
            .bind(ts(run.created_at))
            .execute(&mut *tx)
            .await?;
            insert_events(&mut tx, run.id, events).await?;
        }
        tx.commit().await
    }
}

#[async_trait]
impl WorkflowStore for SqliteStore {
    async fn create_workflow(
        &self,
        new: NewWorkflowVersion,
    ) -> Result<WorkflowVersion, StoreError> {
        if let Some(expected) = new.expected_version.filter(|v| *v != 1) {
            return Err(StoreError::VersionMismatch {
                expected,
                latest: 0,
            });
        }
        let now = now_micros();
        let result = sqlx::query(
            "INSERT INTO workflows (id, version, name, description, definition, source_yaml, \
             start_step, created_at, created_by) VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(&new.id)
        .bind(&new.name)
        .bind(&new.description)
        .bind(Json(&new.definition))
        .bind(&new.source)
        .bind(&new.start_step)
        .bind(now)
        .bind(&new.created_by)
        .execute(&self.write)
        .await;
        match result {
            Ok(_) => Ok(saved(new, 1, now)),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "workflow `{}` already exists; post to /v1/workflows/{}/versions to add a version",
                new.id, new.id
            ))),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn add_workflow_version(
        &self,
        new: NewWorkflowVersion,
    ) -> Result<WorkflowVersion, StoreError> {
        // One writer connection: the MAX() and the INSERT cannot interleave with another write.
        let now = now_micros();
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO workflows (id, version, name, description, definition, source_yaml, \
             start_step, created_at, created_by) \
             SELECT ?1, MAX(version) + 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 FROM workflows WHERE id = ?1 \
             HAVING COUNT(*) > 0 AND (?9 IS NULL OR MAX(version) + 1 = ?9) \
             RETURNING version",
        )
        .bind(&new.id)
        .bind(&new.name)
        .bind(&new.description)
        .bind(Json(&new.definition))
        .bind(&new.source)
        .bind(&new.start_step)
        .bind(now)
        .bind(&new.created_by)
        .bind(new.expected_version)
        .fetch_optional(&self.write)
        .await
        .map_err(unavailable)?;
        if let Some(version) = inserted {
            return Ok(saved(new, version, now));
        }
        let latest: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM workflows WHERE id = ?1")
                .bind(&new.id)
                .fetch_one(&self.read)
                .await
                .map_err(unavailable)?;
        Err(match (latest, new.expected_version) {
            (Some(latest), Some(expected)) => StoreError::VersionMismatch { expected, latest },
            _ => StoreError::NotFound(format!("workflow `{}`", new.id)),
        })
    }

    async fn latest_version(&self, id: &str) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar("SELECT max(version) FROM workflows WHERE id = ?1")
            .bind(id)
            .fetch_one(&self.read)
            .await
            .map_err(unavailable)
    }

    async fn latest_workflow(&self, id: &str) -> Result<Option<WorkflowVersion>, StoreError> {
        sqlx::query_as::<_, VersionRow>(
            "SELECT id, version, name, description, definition, source_yaml, start_step, \
             created_at, created_by FROM workflows WHERE id = ?1 ORDER BY version DESC LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await
        .map(|r| r.map(Into::into))
        .map_err(unavailable)
    }

    async fn workflow_version(
        &self,
        id: &str,
        version: i64,
    ) -> Result<Option<WorkflowVersion>, StoreError> {
        sqlx::query_as::<_, VersionRow>(
            "SELECT id, version, name, description, definition, source_yaml, start_step, \
             created_at, created_by FROM workflows WHERE id = ?1 AND version = ?2",
        )
        .bind(id)
        .bind(version)
        .fetch_optional(&self.read)
        .await
        .map(|r| r.map(Into::into))
        .map_err(unavailable)
    }

    async fn list_workflows(
        &self,
        query: &WorkflowQuery,
    ) -> Result<Page<WorkflowSummary>, StoreError> {
        let limit = i64::from(query.limit.max(1));
        let rows: Vec<SummaryRow> = sqlx::query_as(
            "SELECT w.id, w.version, w.name, w.description, w.start_step, w.created_at, \
             w.created_by FROM workflows w \
             WHERE w.version = (SELECT MAX(m.version) FROM workflows m WHERE m.id = w.id) \
             AND (?1 IS NULL OR w.id > ?1) \
             AND (?2 IS NULL OR lower(w.name) LIKE ?2 ESCAPE '\\') \
             ORDER BY w.id LIMIT ?3",
        )
        .bind(&query.after_id)
        .bind(query.name_contains.as_deref().map(like_pattern))
        .bind(limit + 1)
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        Ok(page(rows, limit as usize))
    }
}

/// A timestamp as stored in the run tables: RFC 3339, UTC, always six fractional digits, so
/// that TEXT order is time order (ordering and cursors compare the text).
/// A time as SQLite keeps it: RFC 3339 text in UTC with microseconds (sorts as text).
pub(super) fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A UUID as stored: hyphenated TEXT (sqlx would bind a bare `Uuid` as a BLOB).
/// A UUID as SQLite keeps it: hyphenated text.
pub(super) fn text_id(id: Uuid) -> Hyphenated {
    id.hyphenated()
}

async fn insert_events(
    conn: &mut SqliteConnection,
    run_id: Uuid,
    events: &[EventRecord],
) -> Result<(), sqlx::Error> {
    for e in events {
        sqlx::query(
            "INSERT INTO events (run_id, seq, kind, step_id, actor, data, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(text_id(run_id))
        .bind(e.seq)
        .bind(&e.kind)
        .bind(&e.step_id)
        .bind(&e.actor)
        .bind(Json(&e.data))
        .bind(ts(e.created_at))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn insert_timers(
    conn: &mut SqliteConnection,
    run_id: Uuid,
    timers: &[TimerSpec],
) -> Result<(), sqlx::Error> {
    for t in timers {
        sqlx::query(
            "INSERT INTO timers (id, run_id, kind, step_id, version, nth, fire_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(text_id(Uuid::now_v7()))
        .bind(text_id(run_id))
        .bind(t.kind.as_str())
        .bind(&t.step_id)
        .bind(t.version)
        .bind(t.nth)
        .bind(ts(t.fire_at))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn insert_messages(
    conn: &mut SqliteConnection,
    run_id: Uuid,
    at: DateTime<Utc>,
    messages: &[NewMessage],
) -> Result<(), sqlx::Error> {
    for m in messages {
        sqlx::query(
            "INSERT INTO outbox (id, run_id, step_id, kind, recipient, wait_version, data, \
               created_at, next_attempt_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        )
        .bind(text_id(m.id))
        .bind(text_id(run_id))
        .bind(&m.step_id)
        .bind(m.kind.as_str())
        .bind(&m.recipient)
        .bind(m.wait_version)
        .bind(Json(&m.data))
        .bind(ts(at))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A checkpoint's fence failed.
fn fenced(cp: &Checkpoint) -> StoreError {
    StoreError::Fenced {
        run_id: cp.run_id,
        expected: cp.expected_version,
    }
}

/// Writes a checkpoint inside the caller's transaction: the run's new version, or `None`
/// when the fence failed (then nothing was written).
async fn write_checkpoint(
    conn: &mut SqliteConnection,
    cp: &Checkpoint,
) -> Result<Option<i64>, sqlx::Error> {
    let version: Option<i64> = sqlx::query_scalar(
        "UPDATE runs SET status = ?3, current_step = ?4, context = ?5, waiting = ?6, \
             error = ?7, step_seq = ?8, event_seq = ?9, updated_at = ?10, \
             finished_at = COALESCE(?11, finished_at), step_state = ?12, wake_at = ?13, \
             version = version + 1 \
             WHERE id = ?1 AND version = ?2 \
             RETURNING version",
    )
    .bind(text_id(cp.run_id))
    .bind(cp.expected_version)
    .bind(cp.status.as_str())
    .bind(&cp.current_step)
    .bind(Json(&cp.context))
    .bind(cp.waiting.as_ref().map(Json))
    .bind(cp.error.as_ref().map(Json))
    .bind(cp.step_seq)
    .bind(cp.event_seq)
    .bind(ts(cp.at))
    .bind(cp.finished_at.map(ts))
    .bind(cp.step_state.as_ref().map(Json))
    .bind(cp.wake_at.map(ts))
    .fetch_optional(&mut *conn)
    .await?;
    let Some(version) = version else {
        return Ok(None);
    };
    insert_steps(conn, cp.run_id, &cp.steps).await?;
    insert_events(conn, cp.run_id, &cp.events).await?;
    insert_timers(conn, cp.run_id, &cp.timers).await?;
    insert_messages(conn, cp.run_id, cp.at, &cp.messages).await?;
    Ok(Some(version))
}

impl SqliteStore {
    /// Writes `batch` in one transaction on the writer connection, so one commit (one fsync)
    /// makes all of it durable. A fenced checkpoint writes nothing and leaves the others; any
    /// error rolls the whole batch back.
    async fn checkpoint_batch(
        &self,
        batch: &[&Checkpoint],
    ) -> Result<Vec<Option<i64>>, sqlx::Error> {
        let mut tx = self.write.begin().await?;
        let mut versions = Vec::with_capacity(batch.len());
        for cp in batch {
            versions.push(write_checkpoint(&mut tx, cp).await?);
        }
        tx.commit().await?;
        Ok(versions)
    }
}

async fn insert_steps(
    conn: &mut SqliteConnection,
    run_id: Uuid,
    steps: &[StepRecord],
) -> Result<(), sqlx::Error> {
    for s in steps {
        sqlx::query(
            "INSERT INTO run_steps (run_id, seq, step_id, step_type, attempt, status, input, \
             output, error, started_at, finished_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )
        .bind(text_id(run_id))
        .bind(s.seq)
        .bind(&s.step_id)
        .bind(&s.step_type)
        .bind(s.attempt)
        .bind(s.status.as_str())
        .bind(s.input.as_ref().map(Json))
        .bind(s.output.as_ref().map(Json))
        .bind(s.error.as_ref().map(Json))
        .bind(ts(s.started_at))
        .bind(ts(s.finished_at))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn create_run(&self, new: NewRun) -> Result<CreatedRun, StoreError> {
        let (run, events) = new_run(new);
        let mut tx = self.write.begin().await.map_err(unavailable)?;
        // The unique index on idempotency_key decides; on the one writer connection a second
        // create with the key finds the first committed and inserts nothing.
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO runs (id, workflow_id, workflow_version, status, context, pins, \
             idempotency_key, request_fingerprint, version, step_seq, event_seq, created_by, \
             created_at, updated_at) \
             VALUES (?1, ?2, ?3, 'queued', ?4, ?10, ?5, ?6, 0, 0, ?7, ?8, ?9, ?9) \
             ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
             RETURNING 1",
        )
        .bind(text_id(run.id))
        .bind(&run.workflow_id)
        .bind(run.workflow_version)
        .bind(Json(&run.context))
        .bind(&run.idempotency_key)
        .bind(&run.request_fingerprint)
        .bind(run.event_seq)
        .bind(&run.created_by)
        .bind(ts(run.created_at))
        .bind(Json(&run.pins))
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| create_run_error(e, &run))?;
        if inserted.is_some() {
            insert_events(&mut tx, run.id, &events)
                .await
                .map_err(unavailable)?;
            tx.commit().await.map_err(unavailable)?;
            return Ok(CreatedRun::New(run));
        }
        tx.rollback().await.map_err(unavailable)?;
        let earlier = match &run.idempotency_key {
            Some(key) => self.run_by_key(key).await?,
            None => None,
        };
        match earlier {
            Some(earlier) => existing(earlier, run.request_fingerprint.as_ref()),
            None => Err(StoreError::Unavailable(format!(
                "run {} was neither inserted nor found by its idempotency key",
                run.id
            ))),
        }
    }

    async fn create_runs(&self, batch: Vec<NewRun>) -> Vec<Result<CreatedRun, StoreError>> {
        super::rows::create_runs(self, batch, async |built| self.insert_runs(built).await).await
    }

    async fn get_run(&self, id: Uuid) -> Result<Option<Run>, StoreError> {
        sqlx::query_as::<_, RunRow<Hyphenated>>(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE id = ?1"
        ))
        .bind(text_id(id))
        .fetch_optional(&self.read)
        .await
        .map_err(unavailable)?
        .map(Run::try_from)
        .transpose()
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<Page<Run, RunCursor>, StoreError> {
        let limit = query.limit.max(1);
        // Only the filters given appear, so the planner can use the matching index.
        let mut q =
            QueryBuilder::<Sqlite>::new(concat!("SELECT ", run_columns!(), " FROM runs WHERE 1"));
        if let Some(workflow_id) = &query.workflow_id {
            q.push(" AND workflow_id = ").push_bind(workflow_id);
        }
        if let Some(status) = query.status {
            q.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(before) = query.before {
            q.push(" AND (created_at, id) < (")
                .push_bind(ts(before.created_at))
                .push(", ")
                .push_bind(text_id(before.id))
                .push(")");
        }
        q.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(limit) + 1);
        let rows: Vec<RunRow<Hyphenated>> = q
            .build_query_as()
            .fetch_all(&self.read)
            .await
            .map_err(unavailable)?;
        Ok(run_page(runs(rows)?, limit as usize))
    }

    async fn checkpoint(&self, cp: &Checkpoint) -> Result<i64, StoreError> {
        let mut tx = self.write.begin().await.map_err(unavailable)?;
        let Some(version) = write_checkpoint(&mut tx, cp).await.map_err(unavailable)? else {
            tx.rollback().await.map_err(unavailable)?;
            return Err(fenced(cp));
        };
        tx.commit().await.map_err(unavailable)?;
        Ok(version)
    }

    async fn checkpoint_many(&self, batch: &[&Checkpoint]) -> Vec<Result<i64, StoreError>> {
        match batch {
            [] => return Vec::new(),
            [cp] => return vec![self.checkpoint(cp).await],
            _ => {}
        }
        match self.checkpoint_batch(batch).await {
            Ok(versions) => batch
                .iter()
                .zip(versions)
                .map(|(cp, v)| v.ok_or(fenced(cp)))
                .collect(),
            Err(e) => {
                // The batch was rolled back as a whole: write each on its own, so one bad
                // checkpoint cannot fail its neighbours.
                tracing::debug!(error = %e, size = batch.len(), "checkpoint batch failed; writing one by one");
                let mut results = Vec::with_capacity(batch.len());
                for cp in batch {
                    results.push(self.checkpoint(cp).await);
                }
                results
            }
        }
    }

    async fn run_steps(&self, id: Uuid) -> Result<Vec<StepRecord>, StoreError> {
        let rows: Vec<StepRow> = sqlx::query_as(concat!(
            "SELECT ",
            step_columns!(),
            " FROM run_steps WHERE run_id = ?1 ORDER BY seq"
        ))
        .bind(text_id(id))
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        super::rows::steps(rows)
    }

    async fn run_events(&self, id: Uuid) -> Result<Vec<EventRecord>, StoreError> {
        let rows: Vec<EventRow> = sqlx::query_as(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE run_id = ?1 ORDER BY seq"
        ))
        .bind(text_id(id))
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        super::rows::events(rows)
    }

    async fn unfinished_runs(&self) -> Result<Vec<Uuid>, StoreError> {
        let ids: Vec<Hyphenated> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE status IN ('queued', 'running') \
             ORDER BY created_at, id",
        )
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        Ok(ids.into_iter().map(Uuid::from).collect())
    }
    async fn count_runs(&self, status: RunStatus) -> Result<u64, StoreError> {
        // The status is written into the SQL (one of six fixed words, never client text) so
        // the planner can use a partial index on it, which it cannot prove for a parameter.
        let sql = format!(
            "SELECT COUNT(*) FROM runs WHERE status = '{}'",
            status.as_str()
        );
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&self.read)
            .await
            .map_err(unavailable)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

impl SqliteStore {
    async fn run_by_key(&self, key: &str) -> Result<Option<Run>, StoreError> {
        sqlx::query_as::<_, RunRow<Hyphenated>>(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE idempotency_key = ?1"
        ))
        .bind(key)
        .fetch_optional(&self.read)
        .await
        .map_err(unavailable)?
        .map(Run::try_from)
        .transpose()
    }
}

#[async_trait]
impl TemplateStore for SqliteStore {
    async fn save_template(&self, new: NewTemplateVersion) -> Result<TemplateVersion, StoreError> {
        let new = NewTemplateVersion {
            created_at: micros(new.created_at),
            ..new
        };
        // One writer connection: the MAX() and the INSERT cannot interleave with another write.
        let version: i64 = sqlx::query_scalar(
            "INSERT INTO templates (id, version, system, prompt, description, created_at, \
             created_by) \
             SELECT ?1, COALESCE(MAX(version), 0) + 1, ?2, ?3, ?4, ?5, ?6 \
             FROM templates WHERE id = ?1 \
             RETURNING version",
        )
        .bind(&new.id)
        .bind(&new.system)
        .bind(&new.prompt)
        .bind(&new.description)
        .bind(ts(new.created_at))
        .bind(&new.created_by)
        .fetch_one(&self.write)
        .await
        .map_err(unavailable)?;
        Ok(saved_template(new, version))
    }

    async fn latest_template(&self, id: &str) -> Result<Option<TemplateVersion>, StoreError> {
        sqlx::query_as::<_, TemplateRow>(concat!(
            "SELECT ",
            template_columns!(),
            " FROM templates WHERE id = ?1 ORDER BY version DESC LIMIT 1"
        ))
        .bind(id)
        .fetch_optional(&self.read)
        .await
        .map(|r| r.map(Into::into))
        .map_err(unavailable)
    }

    async fn template_version(
        &self,
        id: &str,
        version: i64,
    ) -> Result<Option<TemplateVersion>, StoreError> {
        sqlx::query_as::<_, TemplateRow>(concat!(
            "SELECT ",
            template_columns!(),
            " FROM templates WHERE id = ?1 AND version = ?2"
        ))
        .bind(id)
        .bind(version)
        .fetch_optional(&self.read)
        .await
        .map(|r| r.map(Into::into))
        .map_err(unavailable)
    }

    async fn list_templates(
        &self,
        query: &TemplateQuery,
    ) -> Result<Page<TemplateVersion>, StoreError> {
        let limit = i64::from(query.limit.max(1));
        let rows: Vec<TemplateRow> = sqlx::query_as(
            "SELECT t.id, t.version, t.system, t.prompt, t.description, t.created_at, \
             t.created_by FROM templates t \
             WHERE t.version = (SELECT MAX(m.version) FROM templates m WHERE m.id = t.id) \
             AND (?1 IS NULL OR t.id > ?1) \
             ORDER BY t.id LIMIT ?2",
        )
        .bind(&query.after_id)
        .bind(limit + 1)
        .fetch_all(&self.read)
        .await
        .map_err(unavailable)?;
        Ok(template_page(rows, limit as usize))
    }
}

#[async_trait]
impl SettingsStore for SqliteStore {
    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        let inserted: Option<String> = sqlx::query_scalar(
            "INSERT INTO settings (key, value, created_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (key) DO NOTHING RETURNING value",
        )
        .bind(key)
        .bind(value)
        .bind(ts(now_micros()))
        .fetch_optional(&self.write)
        .await
        .map_err(unavailable)?;
        if let Some(v) = inserted {
            return Ok(v);
        }
        sqlx::query_scalar("SELECT value FROM settings WHERE key = ?1")
            .bind(key)
            .fetch_optional(&self.read)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| StoreError::Unavailable(format!("setting `{key}` vanished")))
    }
}

#[async_trait]
impl SecretStore for SqliteStore {
    async fn put_secret(&self, secret: SealedSecret) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO secrets (name, ciphertext, key_id, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (name) DO UPDATE SET ciphertext = excluded.ciphertext, \
             key_id = excluded.key_id, updated_at = excluded.updated_at",
        )
        .bind(&secret.name)
        .bind(&secret.ciphertext)
        .bind(&secret.key_id)
        .bind(ts(micros(secret.created_at)))
        .bind(ts(micros(secret.updated_at)))
        .execute(&self.write)
        .await
        .map(|_| ())
        .map_err(unavailable)
    }

    async fn get_secret(&self, name: &str) -> Result<Option<SealedSecret>, StoreError> {
        sqlx::query_as::<_, SecretRow>(concat!(
            "SELECT ",
            secret_columns!(),
            " FROM secrets WHERE name = ?1"
        ))
        .bind(name)
        .fetch_optional(&self.read)
        .await
        .map(|r| r.map(Into::into))
        .map_err(unavailable)
    }

    async fn all_secrets(&self) -> Result<Vec<SealedSecret>, StoreError> {
        sqlx::query_as::<_, SecretRow>(concat!(
            "SELECT ",
            secret_columns!(),
            " FROM secrets ORDER BY name"
        ))
        .fetch_all(&self.read)
        .await
        .map(|rows| rows.into_iter().map(Into::into).collect())
        .map_err(unavailable)
    }

    async fn delete_secret(&self, name: &str) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM secrets WHERE name = ?1")
            .bind(name)
            .execute(&self.write)
            .await
            .map(|r| r.rows_affected() > 0)
            .map_err(unavailable)
    }
}

#[async_trait]
impl Health for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}
