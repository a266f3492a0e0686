//! Durable timers for both adapters: the earliest deadline, the due timers, retiring one.
//! Timers are armed by checkpoints (see `checkpoint` in each adapter).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use scaff_core::store::{StoreError, Timer, TimerKind, TimerSpec, TimerStore};
use uuid::Uuid;
use uuid::fmt::Hyphenated;

use super::sqlite::{text_id, ts};
use super::{PgStore, SqliteStore, unavailable};

/// A `timers` row; `Id` is `Uuid` on PostgreSQL, hyphenated text on SQLite.
#[derive(sqlx::FromRow)]
struct Row<Id> {
    id: Id,
    run_id: Id,
    kind: String,
    step_id: String,
    version: i64,
    nth: i32,
    fire_at: DateTime<Utc>,
}

impl<Id: Into<Uuid>> TryFrom<Row<Id>> for Timer {
    type Error = StoreError;

    fn try_from(r: Row<Id>) -> Result<Self, StoreError> {
        let kind = TimerKind::parse(&r.kind).ok_or_else(|| {
            StoreError::Unavailable(format!("corrupt row: timer kind `{}`", r.kind))
        })?;
        Ok(Timer {
            id: r.id.into(),
            run_id: r.run_id.into(),
            spec: TimerSpec {
                kind,
                step_id: r.step_id,
                version: r.version,
                nth: r.nth,
                fire_at: r.fire_at,
            },
        })
    }
}

fn timers<Id: Into<Uuid>>(rows: Vec<Row<Id>>) -> Result<Vec<Timer>, StoreError> {
    rows.into_iter().map(Timer::try_from).collect()
}

#[async_trait]
impl TimerStore for PgStore {
    async fn next_timer_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        sqlx::query_scalar("SELECT MIN(fire_at) FROM timers")
            .fetch_one(self.pool())
            .await
            .map_err(unavailable)
    }

    async fn due_timers(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Timer>, StoreError> {
        let rows: Vec<Row<Uuid>> = sqlx::query_as(
            "SELECT id, run_id, kind, step_id, version, nth, fire_at FROM timers \
             WHERE fire_at <= $1 ORDER BY fire_at, id LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(unavailable)?;
        timers(rows)
    }

    async fn delete_timer(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM timers WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl TimerStore for SqliteStore {
    async fn next_timer_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        sqlx::query_scalar("SELECT MIN(fire_at) FROM timers")
            .fetch_one(self.reader())
            .await
            .map_err(unavailable)
    }

    async fn due_timers(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Timer>, StoreError> {
        let rows: Vec<Row<Hyphenated>> = sqlx::query_as(
            "SELECT id, run_id, kind, step_id, version, nth, fire_at FROM timers \
             WHERE fire_at <= ?1 ORDER BY fire_at, id LIMIT ?2",
        )
        .bind(ts(now))
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await
        .map_err(unavailable)?;
        timers(rows)
    }

    async fn delete_timer(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM timers WHERE id = ?1")
            .bind(text_id(id))
            .execute(self.writer())
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
