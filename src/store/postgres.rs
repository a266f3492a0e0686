//! The PostgreSQL adapter: production storage, safe for several nodes sharing one database.
//! Version numbers are assigned inside the INSERT; a concurrent writer that takes the same
//! number loses on the primary key and retries.

use async_trait::async_trait;
use scaff_core::store::{
    Health, NewWorkflowVersion, Page, StoreError, WorkflowQuery, WorkflowStore, WorkflowSummary,
    WorkflowVersion,
};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::types::Json;

use super::rows::{SummaryRow, VersionRow, page, saved};
use super::{
    ConnectError, StoreOptions, VERSION_RACE_RETRIES, is_unique_violation, like_pattern,
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
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
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
