//! The PostgreSQL adapter: production storage, safe for several nodes sharing one database.
//! Version numbers are assigned inside the INSERT; a concurrent writer that takes the same
//! number loses on the primary key and retries.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use scaff_core::run::{EventRecord, Run, RunError, RunStatus, StepRecord};
use scaff_core::store::{
    Checkpoint, CreatedRun, Health, NewMessage, NewRun, NewTemplateVersion, NewWorkflowVersion,
    Page, RunCursor, RunQuery, RunStore, SealedSecret, SecretStore, SettingsStore, StoreError,
    TemplateQuery, TemplateStore, TemplateVersion, TimerSpec, WorkflowQuery, WorkflowStore,
    WorkflowSummary, WorkflowVersion,
};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use super::rows::{
    EventRow, RunRow, SecretRow, StepRow, SummaryRow, TemplateRow, VersionRow, create_run_error,
    event_columns, existing, new_run, page, run_columns, run_page, runs, saved, saved_template,
    secret_columns, step_columns, template_columns, template_page,
};
use super::{
    ConnectError, StoreOptions, VERSION_RACE_RETRIES, is_unique_violation, like_pattern, micros,
    now_micros, unavailable,
};

/// PostgreSQL-backed store.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects (and migrates, when asked).
    pub async fn connect(url: &str, opts: &StoreOptions) -> Result<Self, ConnectError> {
        let options = connect_options(url).map_err(ConnectError::Open)?;
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(ConnectError::Open)?;
        if opts.migrate {
            sqlx::migrate!("./migrations/postgres")
                .run(&pool)
                .await
                .map_err(ConnectError::Migrate)?;
        }
        Ok(Self { pool })
    }

    /// The underlying pool, for tests and tools.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// The connection options of a `postgres://` URL. A URL that names no `sslmode` and points at
/// this machine (a loopback address, `localhost` or a Unix socket) connects without TLS:
/// encryption there protects nothing and costs both sides CPU on every statement (about a
/// sixth of the throughput of a loaded server; docs/performance.md). Elsewhere the driver's
/// default (`prefer`) holds, and an explicit `sslmode` always wins.
pub(crate) fn connect_options(url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    let names_sslmode = url.split_once('?').is_some_and(|(_, query)| {
        query.split('&').any(|pair| {
            let key = pair.split('=').next().unwrap_or_default();
            key.eq_ignore_ascii_case("sslmode") || key.eq_ignore_ascii_case("ssl-mode")
        })
    });
    if names_sslmode || !is_local_host(options.get_host()) {
        return Ok(options);
    }
    Ok(options.ssl_mode(PgSslMode::Disable))
}

/// Whether a host names this machine: a loopback address, `localhost`, or a socket directory.
fn is_local_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.starts_with('/')
        || bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[async_trait]
impl WorkflowStore for PgStore {
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
             start_step, created_at, created_by) VALUES ($1, 1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&new.id)
        .bind(&new.name)
        .bind(&new.description)
        .bind(Json(&new.definition))
        .bind(&new.source)
        .bind(&new.start_step)
        .bind(now)
        .bind(&new.created_by)
        .execute(&self.pool)
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
        for _ in 0..VERSION_RACE_RETRIES {
            let now = now_micros();
            let inserted: Result<Option<i64>, sqlx::Error> = sqlx::query_scalar(
                "INSERT INTO workflows (id, version, name, description, definition, source_yaml, \
                 start_step, created_at, created_by) \
                 SELECT $1, MAX(version) + 1, $2, $3, $4, $5, $6, $7, $8 FROM workflows WHERE id = $1 \
                 HAVING COUNT(*) > 0 AND ($9::BIGINT IS NULL OR MAX(version) + 1 = $9) \
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
            .fetch_optional(&self.pool)
            .await;
            match inserted {
                Ok(Some(version)) => return Ok(saved(new, version, now)),
                Ok(None) => {
                    let latest: Option<i64> =
                        sqlx::query_scalar("SELECT MAX(version) FROM workflows WHERE id = $1")
                            .bind(&new.id)
                            .fetch_one(&self.pool)
                            .await
                            .map_err(unavailable)?;
                    return Err(match (latest, new.expected_version) {
                        (Some(latest), Some(expected)) => {
                            StoreError::VersionMismatch { expected, latest }
                        }
                        _ => StoreError::NotFound(format!("workflow `{}`", new.id)),
                    });
                }
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(StoreError::Conflict(format!(
            "too many concurrent versions of workflow `{}`; try again",
            new.id
        )))
    }

    async fn latest_version(&self, id: &str) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar("SELECT max(version) FROM workflows WHERE id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)
    }

    async fn latest_workflow(&self, id: &str) -> Result<Option<WorkflowVersion>, StoreError> {
        sqlx::query_as::<_, VersionRow>(
            "SELECT id, version, name, description, definition, source_yaml, start_step, \
             created_at, created_by FROM workflows WHERE id = $1 ORDER BY version DESC LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
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
             created_at, created_by FROM workflows WHERE id = $1 AND version = $2",
        )
        .bind(id)
        .bind(version)
        .fetch_optional(&self.pool)
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
             AND ($1::TEXT IS NULL OR w.id > $1) \
             AND ($2::TEXT IS NULL OR lower(w.name) LIKE $2 ESCAPE '\\') \
             ORDER BY w.id LIMIT $3",
        )
        .bind(&query.after_id)
        .bind(query.name_contains.as_deref().map(like_pattern))
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(page(rows, limit as usize))
    }
}

/// Events as column arrays, for `UNNEST` (one statement inserts them all).
struct EventColumns<'a> {
    seq: Vec<i32>,
    kind: Vec<&'a str>,
    step_id: Vec<Option<&'a str>>,
    actor: Vec<Option<&'a str>>,
    data: Vec<Json<&'a serde_json::Value>>,
    created_at: Vec<DateTime<Utc>>,
}

impl<'a> EventColumns<'a> {
    fn of(events: impl IntoIterator<Item = &'a EventRecord>) -> Self {
        let mut c = Self {
            seq: Vec::new(),
            kind: Vec::new(),
            step_id: Vec::new(),
            actor: Vec::new(),
            data: Vec::new(),
            created_at: Vec::new(),
        };
        for e in events {
            c.seq.push(e.seq);
            c.kind.push(e.kind.as_str());
            c.step_id.push(e.step_id.as_deref());
            c.actor.push(e.actor.as_deref());
            c.data.push(Json(&e.data));
            c.created_at.push(e.created_at);
        }
        c
    }
}

/// Timers to arm, as column arrays for `UNNEST`.
struct TimerColumns<'a> {
    id: Vec<Uuid>,
    kind: Vec<&'static str>,
    step_id: Vec<&'a str>,
    version: Vec<i64>,
    nth: Vec<i32>,
    fire_at: Vec<DateTime<Utc>>,
}

impl<'a> TimerColumns<'a> {
    fn of(timers: &'a [TimerSpec]) -> Self {
        Self {
            id: timers.iter().map(|_| Uuid::now_v7()).collect(),
            kind: timers.iter().map(|t| t.kind.as_str()).collect(),
            step_id: timers.iter().map(|t| t.step_id.as_str()).collect(),
            version: timers.iter().map(|t| t.version).collect(),
            nth: timers.iter().map(|t| t.nth).collect(),
            fire_at: timers.iter().map(|t| t.fire_at).collect(),
        }
    }
}

/// Outbox messages to queue, as column arrays for `UNNEST`.
struct MessageColumns<'a> {
    id: Vec<Uuid>,
    step_id: Vec<&'a str>,
    kind: Vec<&'static str>,
    recipient: Vec<&'a str>,
    wait_version: Vec<i64>,
    data: Vec<Json<&'a serde_json::Value>>,
}

impl<'a> MessageColumns<'a> {
    fn of(messages: &'a [NewMessage]) -> Self {
        Self {
            id: messages.iter().map(|m| m.id).collect(),
            step_id: messages.iter().map(|m| m.step_id.as_str()).collect(),
            kind: messages.iter().map(|m| m.kind.as_str()).collect(),
            recipient: messages.iter().map(|m| m.recipient.as_str()).collect(),
            wait_version: messages.iter().map(|m| m.wait_version).collect(),
            data: messages.iter().map(|m| Json(&m.data)).collect(),
        }
    }
}

/// Step records as column arrays, for `UNNEST`.
struct StepColumns<'a> {
    seq: Vec<i32>,
    step_id: Vec<&'a str>,
    step_type: Vec<&'a str>,
    attempt: Vec<i32>,
    status: Vec<&'a str>,
    input: Vec<Option<Json<&'a serde_json::Value>>>,
    output: Vec<Option<Json<&'a serde_json::Value>>>,
    error: Vec<Option<Json<&'a RunError>>>,
    started_at: Vec<DateTime<Utc>>,
    finished_at: Vec<DateTime<Utc>>,
}

impl<'a> StepColumns<'a> {
    fn of(steps: impl IntoIterator<Item = &'a StepRecord>) -> Self {
        let mut c = Self {
            seq: Vec::new(),
            step_id: Vec::new(),
            step_type: Vec::new(),
            attempt: Vec::new(),
            status: Vec::new(),
            input: Vec::new(),
            output: Vec::new(),
            error: Vec::new(),
            started_at: Vec::new(),
            finished_at: Vec::new(),
        };
        for s in steps {
            c.seq.push(s.seq);
            c.step_id.push(s.step_id.as_str());
            c.step_type.push(s.step_type.as_str());
            c.attempt.push(s.attempt);
            c.status.push(s.status.as_str());
            c.input.push(s.input.as_ref().map(Json));
            c.output.push(s.output.as_ref().map(Json));
            c.error.push(s.error.as_ref().map(Json));
            c.started_at.push(s.started_at);
            c.finished_at.push(s.finished_at);
        }
        c
    }
}

/// How often a create looks for the run that took its idempotency key before giving up.
const IDEMPOTENCY_RETRIES: usize = 3;

impl PgStore {
    async fn run_by_key(&self, key: &str) -> Result<Option<Run>, StoreError> {
        sqlx::query_as::<_, RunRow<Uuid>>(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE idempotency_key = $1"
        ))
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?
        .map(Run::try_from)
        .transpose()
    }
}

/// The fenced UPDATE and the step/event inserts of a checkpoint, as one statement's CTEs:
/// the inserts read from the UPDATE, so when the fence fails nothing at all is written.
macro_rules! checkpoint_head {
    () => {
        "WITH upd AS ( \
           UPDATE runs SET status = $3, current_step = $4, context = $5, waiting = $6, \
             error = $7, step_seq = $8, event_seq = $9, updated_at = $10, \
             finished_at = COALESCE($11, finished_at), step_state = $28, wake_at = $29, \
             version = version + 1 \
           WHERE id = $1 AND version = $2 \
           RETURNING id, version \
         ), st AS ( \
           INSERT INTO run_steps (run_id, seq, step_id, step_type, attempt, status, input, \
             output, error, started_at, finished_at) \
           SELECT upd.id, s.seq, s.step_id, s.step_type, s.attempt, s.status, s.input, \
             s.output, s.error, s.started_at, s.finished_at \
           FROM upd, UNNEST($12::int4[], $13::text[], $14::text[], $15::int4[], \
             $16::text[], $17::jsonb[], $18::jsonb[], $19::jsonb[], $20::timestamptz[], \
             $21::timestamptz[]) \
             AS s(seq, step_id, step_type, attempt, status, input, output, error, \
               started_at, finished_at) \
         ), ev AS ( \
           INSERT INTO events (run_id, seq, kind, step_id, actor, data, created_at) \
           SELECT upd.id, e.seq, e.kind, e.step_id, e.actor, e.data, e.created_at \
           FROM upd, UNNEST($22::int4[], $23::text[], $24::text[], $25::text[], \
             $26::jsonb[], $27::timestamptz[]) \
             AS e(seq, kind, step_id, actor, data, created_at) \
         )"
    };
}

/// The timer and outbox inserts a checkpoint carries when a wait begins or a timer fires.
#[allow(non_snake_case)]
macro_rules! CHECKPOINT_EXTRAS {
    () => {
        ", tm AS ( \
           INSERT INTO timers (id, run_id, kind, step_id, version, nth, fire_at) \
           SELECT t.id, upd.id, t.kind, t.step_id, t.version, t.nth, t.fire_at \
           FROM upd, UNNEST($30::uuid[], $31::text[], $32::text[], $33::int8[], $34::int4[], \
             $35::timestamptz[]) AS t(id, kind, step_id, version, nth, fire_at) \
         ), ob AS ( \
           INSERT INTO outbox (id, run_id, step_id, kind, recipient, wait_version, data, \
             created_at, next_attempt_at) \
           SELECT o.id, upd.id, o.step_id, o.kind, o.recipient, o.wait_version, o.data, $10, $10 \
           FROM upd, UNNEST($36::uuid[], $37::text[], $38::text[], $39::text[], $40::int8[], \
             $41::jsonb[]) AS o(id, step_id, kind, recipient, wait_version, data) \
         )"
    };
}

/// A checkpoint's fence failed.
fn fenced(cp: &Checkpoint) -> StoreError {
    StoreError::Fenced {
        run_id: cp.run_id,
        expected: cp.expected_version,
    }
}

/// Runs a checkpoint's one statement on `conn`: the run's new version, or `None` when the
/// fence failed (then the statement wrote nothing and, inside a transaction, does not abort
/// it). Outside a transaction it commits on its own.
async fn write_checkpoint(
    conn: &mut sqlx::PgConnection,
    cp: &Checkpoint,
) -> Result<Option<i64>, sqlx::Error> {
    let steps = StepColumns::of(&cp.steps);
    let ev = EventColumns::of(&cp.events);
    // One statement, so one round trip and one implicit transaction: the inserts read
    // from the fenced UPDATE, so when it matches no row nothing at all is written.
    // Timers and messages are rare (a wait begins, a reminder fires): the common
    // checkpoint keeps the shorter statement.
    let extras = !cp.timers.is_empty() || !cp.messages.is_empty();
    let sql = if extras {
        concat!(
            checkpoint_head!(),
            CHECKPOINT_EXTRAS!(),
            " SELECT version FROM upd"
        )
    } else {
        concat!(checkpoint_head!(), " SELECT version FROM upd")
    };
    let query = sqlx::query_scalar(sql)
        .bind(cp.run_id)
        .bind(cp.expected_version)
        .bind(cp.status.as_str())
        .bind(&cp.current_step)
        .bind(Json(&cp.context))
        .bind(cp.waiting.as_ref().map(Json))
        .bind(cp.error.as_ref().map(Json))
        .bind(cp.step_seq)
        .bind(cp.event_seq)
        .bind(cp.at)
        .bind(cp.finished_at)
        .bind(&steps.seq)
        .bind(&steps.step_id)
        .bind(&steps.step_type)
        .bind(&steps.attempt)
        .bind(&steps.status)
        .bind(&steps.input)
        .bind(&steps.output)
        .bind(&steps.error)
        .bind(&steps.started_at)
        .bind(&steps.finished_at)
        .bind(&ev.seq)
        .bind(&ev.kind)
        .bind(&ev.step_id)
        .bind(&ev.actor)
        .bind(&ev.data)
        .bind(&ev.created_at)
        .bind(cp.step_state.as_ref().map(Json))
        .bind(cp.wake_at);
    let query = if extras {
        let t = TimerColumns::of(&cp.timers);
        let m = MessageColumns::of(&cp.messages);
        query
            .bind(t.id)
            .bind(t.kind)
            .bind(t.step_id)
            .bind(t.version)
            .bind(t.nth)
            .bind(t.fire_at)
            .bind(m.id)
            .bind(m.step_id)
            .bind(m.kind)
            .bind(m.recipient)
            .bind(m.wait_version)
            .bind(m.data)
    } else {
        query
    };
    query.fetch_optional(&mut *conn).await
}

/// The checkpoints of several runs (each at most once) as one statement: one fenced
/// `UPDATE … FROM UNNEST` over all the runs, with the step and event inserts joined to the
/// rows it updated, so a fenced checkpoint writes nothing and does not stop the others.
/// Returns (run id, new version) for every run whose fence held.
const CHECKPOINT_MANY: &str = "WITH b AS ( \
       SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::text[], $4::text[], $5::jsonb[], \
         $6::jsonb[], $7::jsonb[], $8::int4[], $9::int4[], $10::timestamptz[], \
         $11::timestamptz[], $12::jsonb[], $13::timestamptz[]) \
         AS b(id, expected, status, current_step, context, waiting, error, step_seq, \
           event_seq, at, finished_at, step_state, wake_at) \
     ), upd AS ( \
       UPDATE runs r SET status = b.status, current_step = b.current_step, \
         context = b.context, waiting = b.waiting, error = b.error, step_seq = b.step_seq, \
         event_seq = b.event_seq, updated_at = b.at, \
         finished_at = COALESCE(b.finished_at, r.finished_at), step_state = b.step_state, \
         wake_at = b.wake_at, version = r.version + 1 \
       FROM b WHERE r.id = ANY($1::uuid[]) AND r.id = b.id AND r.version = b.expected \
       RETURNING r.id, r.version \
     ), st AS ( \
       INSERT INTO run_steps (run_id, seq, step_id, step_type, attempt, status, input, \
         output, error, started_at, finished_at) \
       SELECT s.run_id, s.seq, s.step_id, s.step_type, s.attempt, s.status, s.input, \
         s.output, s.error, s.started_at, s.finished_at \
       FROM UNNEST($14::uuid[], $15::int4[], $16::text[], $17::text[], $18::int4[], \
         $19::text[], $20::jsonb[], $21::jsonb[], $22::jsonb[], $23::timestamptz[], \
         $24::timestamptz[]) WITH ORDINALITY \
         AS s(run_id, seq, step_id, step_type, attempt, status, input, output, error, \
           started_at, finished_at, n) \
       JOIN upd ON upd.id = s.run_id ORDER BY s.n \
     ), ev AS ( \
       INSERT INTO events (run_id, seq, kind, step_id, actor, data, created_at) \
       SELECT e.run_id, e.seq, e.kind, e.step_id, e.actor, e.data, e.created_at \
       FROM UNNEST($25::uuid[], $26::int4[], $27::text[], $28::text[], $29::text[], \
         $30::jsonb[], $31::timestamptz[]) WITH ORDINALITY \
         AS e(run_id, seq, kind, step_id, actor, data, created_at, n) \
       JOIN upd ON upd.id = e.run_id ORDER BY e.n \
     ) \
     SELECT id, version FROM upd";

/// Runs `batch` (checkpoints of distinct runs, none carrying timers or messages) as one
/// [`CHECKPOINT_MANY`] statement: each run's new version, or `None` where the fence failed.
async fn write_checkpoints(
    conn: &mut sqlx::PgConnection,
    batch: &[&Checkpoint],
) -> Result<Vec<Option<i64>>, sqlx::Error> {
    let steps: Vec<(Uuid, &StepRecord)> = batch
        .iter()
        .flat_map(|cp| cp.steps.iter().map(|s| (cp.run_id, s)))
        .collect();
    let events: Vec<(Uuid, &EventRecord)> = batch
        .iter()
        .flat_map(|cp| cp.events.iter().map(|e| (cp.run_id, e)))
        .collect();
    let st = StepColumns::of(steps.iter().map(|(_, s)| *s));
    let ev = EventColumns::of(events.iter().map(|(_, e)| *e));
    let rows: Vec<(Uuid, i64)> = sqlx::query_as(CHECKPOINT_MANY)
        .bind(batch.iter().map(|c| c.run_id).collect::<Vec<_>>())
        .bind(batch.iter().map(|c| c.expected_version).collect::<Vec<_>>())
        .bind(batch.iter().map(|c| c.status.as_str()).collect::<Vec<_>>())
        .bind(
            batch
                .iter()
                .map(|c| c.current_step.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(batch.iter().map(|c| Json(&c.context)).collect::<Vec<_>>())
        .bind(
            batch
                .iter()
                .map(|c| c.waiting.as_ref().map(Json))
                .collect::<Vec<_>>(),
        )
        .bind(
            batch
                .iter()
                .map(|c| c.error.as_ref().map(Json))
                .collect::<Vec<_>>(),
        )
        .bind(batch.iter().map(|c| c.step_seq).collect::<Vec<_>>())
        .bind(batch.iter().map(|c| c.event_seq).collect::<Vec<_>>())
        .bind(batch.iter().map(|c| c.at).collect::<Vec<_>>())
        .bind(batch.iter().map(|c| c.finished_at).collect::<Vec<_>>())
        .bind(
            batch
                .iter()
                .map(|c| c.step_state.as_ref().map(Json))
                .collect::<Vec<_>>(),
        )
        .bind(batch.iter().map(|c| c.wake_at).collect::<Vec<_>>())
        .bind(steps.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind(&st.seq)
        .bind(&st.step_id)
        .bind(&st.step_type)
        .bind(&st.attempt)
        .bind(&st.status)
        .bind(&st.input)
        .bind(&st.output)
        .bind(&st.error)
        .bind(&st.started_at)
        .bind(&st.finished_at)
        .bind(events.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .bind(&ev.seq)
        .bind(&ev.kind)
        .bind(&ev.step_id)
        .bind(&ev.actor)
        .bind(&ev.data)
        .bind(&ev.created_at)
        .fetch_all(&mut *conn)
        .await?;
    let versions: std::collections::HashMap<Uuid, i64> = rows.into_iter().collect();
    Ok(batch
        .iter()
        .map(|c| versions.get(&c.run_id).copied())
        .collect())
}

/// The most a [`CHECKPOINT_MANY`] statement should carry, in bytes (estimated). sqlx does not
/// set `TCP_NODELAY`: a message longer than one TCP segment (64 KiB on loopback) can wait for
/// the server's delayed ACK (~40 ms) before its tail is sent. Statements below this size
/// avoid that stall.
const STATEMENT_BUDGET: usize = 16 * 1024;

/// Splits `indices` (into `batch`) into runs of checkpoints whose estimated size fits
/// [`STATEMENT_BUDGET`]; a checkpoint larger than that goes alone.
fn by_size<'a>(indices: &'a [usize], batch: &[&Checkpoint]) -> Vec<&'a [usize]> {
    let mut chunks = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (k, &i) in indices.iter().enumerate() {
        let cp_size = approx_size(batch[i]);
        if k > start && size + cp_size > STATEMENT_BUDGET {
            chunks.push(&indices[start..k]);
            (start, size) = (k, 0);
        }
        size += cp_size;
    }
    if start < indices.len() {
        chunks.push(&indices[start..]);
    }
    chunks
}

/// A checkpoint's rough size on the wire: its JSON documents plus a fixed allowance for the
/// other columns.
fn approx_size(cp: &Checkpoint) -> usize {
    let c = &cp.context;
    let context: usize = [&c.static_data, &c.profile, &c.inputs, &c.runtime]
        .into_iter()
        .map(map_size)
        .sum();
    let steps: usize = cp
        .steps
        .iter()
        .map(|s| {
            160 + [&s.input, &s.output]
                .into_iter()
                .flatten()
                .map(json_size)
                .sum::<usize>()
                + s.error.as_ref().map_or(0, |e| e.message.len() + 64)
        })
        .sum();
    let events: usize = cp.events.iter().map(|e| 96 + json_size(&e.data)).sum();
    let extra = cp.step_state.as_ref().map_or(0, json_size)
        + cp.error.as_ref().map_or(0, |e| e.message.len() + 64)
        + cp.waiting.as_ref().map_or(0, |_| 512);
    256 + context + steps + events + extra
}

/// A JSON value's rough serialized size (strings and keys counted, punctuation estimated).
fn json_size(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::String(s) => s.len() + 2,
        serde_json::Value::Array(a) => 2 + a.iter().map(|x| json_size(x) + 1).sum::<usize>(),
        serde_json::Value::Object(m) => map_size(m),
        _ => 8,
    }
}

fn map_size(m: &serde_json::Map<String, serde_json::Value>) -> usize {
    2 + m
        .iter()
        .map(|(k, v)| k.len() + 4 + json_size(v))
        .sum::<usize>()
}

impl PgStore {
    /// Writes `batch` in one transaction with one commit (one WAL flush for all of them). The
    /// checkpoints go in rounds, so a run's second checkpoint in the batch follows its first:
    /// each round is [`CHECKPOINT_MANY`] statements (as few as [`STATEMENT_BUDGET`] allows)
    /// over the runs it holds once, plus the
    /// rare checkpoints carrying timers or messages, each with its own statement. A fenced
    /// checkpoint writes nothing; any error rolls the whole batch back.
    async fn checkpoint_batch(
        &self,
        batch: &[&Checkpoint],
    ) -> Result<Vec<Option<i64>>, sqlx::Error> {
        // rounds[r] holds the indices of the runs' (r+1)-th checkpoints in the batch.
        let mut rounds: Vec<Vec<usize>> = Vec::new();
        let mut seen: std::collections::HashMap<Uuid, usize> = std::collections::HashMap::new();
        for (i, cp) in batch.iter().enumerate() {
            let nth = seen.entry(cp.run_id).or_insert(0);
            if rounds.len() <= *nth {
                rounds.push(Vec::new());
            }
            rounds[*nth].push(i);
            *nth += 1;
        }
        let mut versions = vec![None; batch.len()];
        let mut tx = self.pool.begin().await?;
        for round in rounds {
            let (plain, extras): (Vec<usize>, Vec<usize>) = round
                .into_iter()
                .partition(|&i| batch[i].timers.is_empty() && batch[i].messages.is_empty());
            for chunk in by_size(&plain, batch) {
                let cps: Vec<&Checkpoint> = chunk.iter().map(|&i| batch[i]).collect();
                let written = write_checkpoints(&mut tx, &cps).await?;
                for (&i, v) in chunk.iter().zip(written) {
                    versions[i] = v;
                }
            }
            for i in extras {
                versions[i] = write_checkpoint(&mut tx, batch[i]).await?;
            }
        }
        tx.commit().await?;
        Ok(versions)
    }
}

/// Inserts new runs without idempotency keys, with their creation events, in one statement.
async fn insert_runs(pool: &PgPool, runs: &[super::rows::BuiltRun]) -> Result<(), StoreError> {
    let mut id = Vec::with_capacity(runs.len());
    let mut workflow_id = Vec::with_capacity(runs.len());
    let mut workflow_version = Vec::with_capacity(runs.len());
    let mut context = Vec::with_capacity(runs.len());
    let mut pins = Vec::with_capacity(runs.len());
    let mut event_seq = Vec::with_capacity(runs.len());
    let mut created_by = Vec::with_capacity(runs.len());
    let mut created_at = Vec::with_capacity(runs.len());
    let mut event_run = Vec::new();
    for (_, run, events) in runs {
        id.push(run.id);
        workflow_id.push(run.workflow_id.as_str());
        workflow_version.push(run.workflow_version);
        context.push(Json(&run.context));
        pins.push(Json(&run.pins));
        event_seq.push(run.event_seq);
        created_by.push(run.created_by.as_deref());
        created_at.push(run.created_at);
        event_run.extend(std::iter::repeat_n(run.id, events.len()));
    }
    let ev = EventColumns::of(runs.iter().flat_map(|(_, _, events)| events));
    let inserted: i64 = sqlx::query_scalar(
        "WITH ins AS ( \
           INSERT INTO runs (id, workflow_id, workflow_version, status, context, pins, \
             version, step_seq, event_seq, created_by, created_at, updated_at) \
           SELECT b.id, b.workflow_id, b.workflow_version, 'queued', b.context, b.pins, \
             0, 0, b.event_seq, b.created_by, b.created_at, b.created_at \
           FROM UNNEST($1::uuid[], $2::text[], $3::int8[], $4::jsonb[], $5::jsonb[], \
             $6::int4[], $7::text[], $8::timestamptz[]) \
             AS b(id, workflow_id, workflow_version, context, pins, event_seq, created_by, \
               created_at) \
           RETURNING 1 \
         ), ev AS ( \
           INSERT INTO events (run_id, seq, kind, step_id, actor, data, created_at) \
           SELECT e.run_id, e.seq, e.kind, e.step_id, e.actor, e.data, e.created_at \
           FROM UNNEST($9::uuid[], $10::int4[], $11::text[], $12::text[], $13::text[], \
             $14::jsonb[], $15::timestamptz[]) \
             AS e(run_id, seq, kind, step_id, actor, data, created_at) \
         ) \
         SELECT count(*) FROM ins",
    )
    .bind(&id)
    .bind(&workflow_id)
    .bind(&workflow_version)
    .bind(&context)
    .bind(&pins)
    .bind(&event_seq)
    .bind(&created_by)
    .bind(&created_at)
    .bind(&event_run)
    .bind(&ev.seq)
    .bind(&ev.kind)
    .bind(&ev.step_id)
    .bind(&ev.actor)
    .bind(&ev.data)
    .bind(&ev.created_at)
    .fetch_one(pool)
    .await
    .map_err(unavailable)?;
    if usize::try_from(inserted).ok() != Some(runs.len()) {
        return Err(StoreError::Unavailable(format!(
            "{inserted} of {} runs inserted",
            runs.len()
        )));
    }
    Ok(())
}

#[async_trait]
impl RunStore for PgStore {
    async fn create_run(&self, new: NewRun) -> Result<CreatedRun, StoreError> {
        let (run, events) = new_run(new);
        let ev = EventColumns::of(&events);
        for _ in 0..IDEMPOTENCY_RETRIES {
            // The unique index on idempotency_key decides: a concurrent insert of the same key
            // waits for the first and then inserts nothing (and no events).
            let inserted: Option<Uuid> = sqlx::query_scalar(
                "WITH ins AS ( \
                   INSERT INTO runs (id, workflow_id, workflow_version, status, context, pins, \
                     idempotency_key, request_fingerprint, version, step_seq, event_seq, \
                     created_by, created_at, updated_at) \
                   VALUES ($1, $2, $3, 'queued', $4, $16, $5, $6, 0, 0, $7, $8, $9, $9) \
                   ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
                   RETURNING id \
                 ), ev AS ( \
                   INSERT INTO events (run_id, seq, kind, step_id, actor, data, created_at) \
                   SELECT ins.id, e.seq, e.kind, e.step_id, e.actor, e.data, e.created_at \
                   FROM ins, UNNEST($10::int4[], $11::text[], $12::text[], $13::text[], \
                     $14::jsonb[], $15::timestamptz[]) \
                     AS e(seq, kind, step_id, actor, data, created_at) \
                 ) \
                 SELECT id FROM ins",
            )
            .bind(run.id)
            .bind(&run.workflow_id)
            .bind(run.workflow_version)
            .bind(Json(&run.context))
            .bind(&run.idempotency_key)
            .bind(&run.request_fingerprint)
            .bind(run.event_seq)
            .bind(&run.created_by)
            .bind(run.created_at)
            .bind(&ev.seq)
            .bind(&ev.kind)
            .bind(&ev.step_id)
            .bind(&ev.actor)
            .bind(&ev.data)
            .bind(&ev.created_at)
            .bind(Json(&run.pins))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| create_run_error(e, &run))?;
            if inserted.is_some() {
                return Ok(CreatedRun::New(run));
            }
            let Some(key) = &run.idempotency_key else {
                break;
            };
            if let Some(earlier) = self.run_by_key(key).await? {
                return existing(earlier, run.request_fingerprint.as_ref());
            }
            // The run holding the key vanished between the two statements: try again.
        }
        Err(StoreError::Unavailable(format!(
            "run {} was neither inserted nor found by its idempotency key",
            run.id
        )))
    }

    async fn create_runs(&self, batch: Vec<NewRun>) -> Vec<Result<CreatedRun, StoreError>> {
        super::rows::create_runs(self, batch, async |built| {
            insert_runs(&self.pool, built).await
        })
        .await
    }

    async fn get_run(&self, id: Uuid) -> Result<Option<Run>, StoreError> {
        sqlx::query_as::<_, RunRow<Uuid>>(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?
        .map(Run::try_from)
        .transpose()
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<Page<Run, RunCursor>, StoreError> {
        let limit = query.limit.max(1);
        // Only the filters given appear, so the planner can use the matching index.
        let mut q = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE TRUE"
        ));
        if let Some(workflow_id) = &query.workflow_id {
            q.push(" AND workflow_id = ").push_bind(workflow_id);
        }
        if let Some(status) = query.status {
            q.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(before) = query.before {
            q.push(" AND (created_at, id) < (")
                .push_bind(before.created_at)
                .push(", ")
                .push_bind(before.id)
                .push(")");
        }
        q.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(limit) + 1);
        let rows: Vec<RunRow<Uuid>> = q
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(run_page(runs(rows)?, limit as usize))
    }

    async fn checkpoint(&self, cp: &Checkpoint) -> Result<i64, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        let version = write_checkpoint(&mut conn, cp).await.map_err(unavailable)?;
        version.ok_or(fenced(cp))
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
                // The batch failed as a whole (a lost connection, one checkpoint's constraint
                // error aborting the transaction): nothing of it was committed. Write each on
                // its own, so one bad checkpoint cannot fail its neighbours.
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
            " FROM run_steps WHERE run_id = $1 ORDER BY seq"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        super::rows::steps(rows)
    }

    async fn run_events(&self, id: Uuid) -> Result<Vec<EventRecord>, StoreError> {
        let rows: Vec<EventRow> = sqlx::query_as(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE run_id = $1 ORDER BY seq"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        super::rows::events(rows)
    }

    async fn unfinished_runs(&self) -> Result<Vec<Uuid>, StoreError> {
        sqlx::query_scalar(
            "SELECT id FROM runs WHERE status IN ('queued', 'running') \
             ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)
    }
    async fn count_runs(&self, status: RunStatus) -> Result<u64, StoreError> {
        // The status is written into the SQL (one of six fixed words, never client text) so
        // the planner can use a partial index on it, which it cannot prove for a parameter.
        let sql = format!(
            "SELECT COUNT(*) FROM runs WHERE status = '{}'",
            status.as_str()
        );
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

#[async_trait]
impl TemplateStore for PgStore {
    async fn save_template(&self, new: NewTemplateVersion) -> Result<TemplateVersion, StoreError> {
        let new = NewTemplateVersion {
            created_at: micros(new.created_at),
            ..new
        };
        for _ in 0..VERSION_RACE_RETRIES {
            // Two savers may read the same MAX(version); the primary key lets one win and the
            // other retry with the next number.
            let inserted: Result<i64, sqlx::Error> = sqlx::query_scalar(
                "INSERT INTO templates (id, version, system, prompt, description, created_at, \
                 created_by) \
                 SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4, $5, $6 \
                 FROM templates WHERE id = $1 \
                 RETURNING version",
            )
            .bind(&new.id)
            .bind(&new.system)
            .bind(&new.prompt)
            .bind(&new.description)
            .bind(new.created_at)
            .bind(&new.created_by)
            .fetch_one(&self.pool)
            .await;
            match inserted {
                Ok(version) => return Ok(saved_template(new, version)),
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(StoreError::Conflict(format!(
            "too many concurrent versions of template `{}`; try again",
            new.id
        )))
    }

    async fn latest_template(&self, id: &str) -> Result<Option<TemplateVersion>, StoreError> {
        sqlx::query_as::<_, TemplateRow>(concat!(
            "SELECT ",
            template_columns!(),
            " FROM templates WHERE id = $1 ORDER BY version DESC LIMIT 1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
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
            " FROM templates WHERE id = $1 AND version = $2"
        ))
        .bind(id)
        .bind(version)
        .fetch_optional(&self.pool)
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
            // Byte order (`COLLATE "C"`), the same as the other stores, whatever the locale.
            "SELECT t.id, t.version, t.system, t.prompt, t.description, t.created_at, \
             t.created_by FROM templates t \
             WHERE t.version = (SELECT MAX(m.version) FROM templates m WHERE m.id = t.id) \
             AND ($1::TEXT IS NULL OR t.id > $1 COLLATE \"C\") \
             ORDER BY t.id COLLATE \"C\" LIMIT $2",
        )
        .bind(&query.after_id)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(template_page(rows, limit as usize))
    }
}

#[async_trait]
impl SettingsStore for PgStore {
    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        let inserted: Option<String> = sqlx::query_scalar(
            "INSERT INTO settings (key, value, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO NOTHING RETURNING value",
        )
        .bind(key)
        .bind(value)
        .bind(now_micros())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        if let Some(v) = inserted {
            return Ok(v);
        }
        // A separate statement, so its snapshot sees the winner's committed row.
        sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| StoreError::Unavailable(format!("setting `{key}` vanished")))
    }
}

#[async_trait]
impl SecretStore for PgStore {
    async fn put_secret(&self, secret: SealedSecret) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO secrets (name, ciphertext, key_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET ciphertext = EXCLUDED.ciphertext, \
             key_id = EXCLUDED.key_id, updated_at = EXCLUDED.updated_at",
        )
        .bind(&secret.name)
        .bind(&secret.ciphertext)
        .bind(&secret.key_id)
        .bind(micros(secret.created_at))
        .bind(micros(secret.updated_at))
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(unavailable)
    }

    async fn get_secret(&self, name: &str) -> Result<Option<SealedSecret>, StoreError> {
        sqlx::query_as::<_, SecretRow>(concat!(
            "SELECT ",
            secret_columns!(),
            " FROM secrets WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map(|r| r.map(Into::into))
        .map_err(unavailable)
    }

    async fn all_secrets(&self) -> Result<Vec<SealedSecret>, StoreError> {
        // Byte order, as in the other stores, whatever the database's collation.
        sqlx::query_as::<_, SecretRow>(concat!(
            "SELECT ",
            secret_columns!(),
            " FROM secrets ORDER BY name COLLATE \"C\""
        ))
        .fetch_all(&self.pool)
        .await
        .map(|rows| rows.into_iter().map(Into::into).collect())
        .map_err(unavailable)
    }

    async fn delete_secret(&self, name: &str) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM secrets WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected() > 0)
            .map_err(unavailable)
    }
}

#[async_trait]
impl Health for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(blob: usize) -> Checkpoint {
        let mut context = scaff_core::run::Context::default();
        context
            .runtime
            .insert("blob".into(), serde_json::json!("x".repeat(blob)));
        Checkpoint {
            run_id: Uuid::now_v7(),
            expected_version: 0,
            status: RunStatus::Running,
            current_step: None,
            context,
            step_state: None,
            waiting: None,
            error: None,
            steps: vec![],
            events: vec![],
            step_seq: 0,
            event_seq: 0,
            finished_at: None,
            at: Utc::now(),
            timers: vec![],
            messages: vec![],
            wake_at: None,
        }
    }

    #[test]
    fn batches_split_by_size_in_order_and_a_large_checkpoint_goes_alone() {
        let small = (0..10).map(|_| cp(1000)).collect::<Vec<_>>();
        let big = cp(STATEMENT_BUDGET * 2);
        let mut all: Vec<&Checkpoint> = small.iter().collect();
        all.insert(3, &big);
        let indices: Vec<usize> = (0..all.len()).collect();
        let chunks = by_size(&indices, &all);
        assert_eq!(chunks.concat(), indices, "every checkpoint once, in order");
        assert!(chunks.contains(&&indices[3..4]), "{chunks:?}");
        for chunk in &chunks {
            let size: usize = chunk.iter().map(|&i| approx_size(all[i])).sum();
            assert!(chunk.len() == 1 || size <= STATEMENT_BUDGET, "{chunk:?}");
        }
        assert!(by_size(&[], &all).is_empty());
    }

    #[test]
    fn local_urls_without_an_sslmode_connect_without_tls() {
        use sqlx::postgres::PgSslMode::{Disable, Prefer, Require};
        let mode = |url: &str| {
            let o = super::connect_options(url).expect("parses");
            format!("{:?}", o.get_ssl_mode())
        };
        for (url, want) in [
            ("postgres://postgres@127.0.0.1:5432/db", Disable),
            ("postgres://postgres@localhost/db", Disable),
            ("postgres://postgres@[::1]:5432/db", Disable),
            ("postgres:///db?host=/var/run/postgresql", Disable),
            ("postgres://postgres@db.internal:5432/db", Prefer),
            ("postgres://postgres@10.1.2.3/db", Prefer),
            ("postgres://postgres@127.0.0.1/db?sslmode=require", Require),
            (
                "postgres://postgres@localhost/db?application_name=x&sslmode=prefer",
                Prefer,
            ),
        ] {
            assert_eq!(mode(url), format!("{want:?}"), "{url}");
        }
        assert!(super::connect_options("postgres://u@h:notaport/db").is_err());
    }
}
