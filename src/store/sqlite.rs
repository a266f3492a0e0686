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
use scaff_core::store::{
    Health, NewWorkflowVersion, Page, StoreError, WorkflowQuery, WorkflowStore, WorkflowSummary,
    WorkflowVersion,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::types::Json;

use super::rows::{SummaryRow, VersionRow, page, saved};
use super::{
    ConnectError, StoreOptions, is_unique_violation, like_pattern, now_micros, unavailable,
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
