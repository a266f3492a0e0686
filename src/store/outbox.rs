//! The notification outbox for both adapters: claiming due messages for a sender (safe under
//! concurrent senders), recording deliveries and failures, and listing messages newest first.
//! Messages are queued by checkpoints (see `checkpoint` in each adapter).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use scaff_core::store::{
    MessageKind, MessageStatus, NewMessage, OutboxMessage, OutboxQuery, OutboxStore, Page,
    StoreError,
};
use sqlx::types::Json;
use uuid::Uuid;
use uuid::fmt::Hyphenated;

use super::sqlite::{text_id, ts};
use super::{PgStore, SqliteStore, micros, unavailable};

/// The columns every read selects, in [`Row`]'s order.
macro_rules! COLUMNS {
    () => {
        "id, run_id, step_id, kind, recipient, wait_version, data, status, attempts, \
         last_error, subject, body, created_at, next_attempt_at, sent_at"
    };
}

/// An `outbox` row; `Id` is `Uuid` on PostgreSQL, hyphenated text on SQLite.
#[derive(sqlx::FromRow)]
struct Row<Id> {
    id: Id,
    run_id: Id,
    step_id: String,
    kind: String,
    recipient: String,
    wait_version: i64,
    data: Json<serde_json::Value>,
    status: String,
    attempts: i32,
    last_error: Option<String>,
    subject: Option<String>,
    body: Option<String>,
    created_at: DateTime<Utc>,
    next_attempt_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
}

impl<Id: Into<Uuid>> TryFrom<Row<Id>> for OutboxMessage {
    type Error = StoreError;

    fn try_from(r: Row<Id>) -> Result<Self, StoreError> {
        let corrupt = |what: &str, value: &str| {
            StoreError::Unavailable(format!("corrupt row: outbox {what} `{value}`"))
        };
        let kind = MessageKind::parse(&r.kind).ok_or_else(|| corrupt("kind", &r.kind))?;
        let status = MessageStatus::parse(&r.status).ok_or_else(|| corrupt("status", &r.status))?;
        Ok(OutboxMessage {
            message: NewMessage {
                id: r.id.into(),
                kind,
                recipient: r.recipient,
                step_id: r.step_id,
                wait_version: r.wait_version,
                data: r.data.0,
            },
            run_id: r.run_id.into(),
            status,
            attempts: r.attempts,
            last_error: r.last_error,
            subject: r.subject,
            body: r.body,
            created_at: r.created_at,
            next_attempt_at: r.next_attempt_at,
            sent_at: r.sent_at,
        })
    }
}

/// Rows as messages; claimed batches come back in no particular order, so they are put
/// oldest first here.
fn messages<Id: Into<Uuid>>(rows: Vec<Row<Id>>) -> Result<Vec<OutboxMessage>, StoreError> {
    let mut out = rows
        .into_iter()
        .map(OutboxMessage::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by_key(|m| (m.created_at, m.message.id));
    Ok(out)
}

/// `limit + 1` rows, newest first, as a page and the id to continue before.
fn page<Id: Into<Uuid>>(
    rows: Vec<Row<Id>>,
    limit: usize,
) -> Result<Page<OutboxMessage, Uuid>, StoreError> {
    let mut items = rows
        .into_iter()
        .map(OutboxMessage::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    let more = items.len() > limit;
    items.truncate(limit);
    let next_after = if more {
        items.last().map(|m| m.message.id)
    } else {
        None
    };
    Ok(Page { items, next_after })
}

/// When a claim made at `now` lapses.
fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::days(365));
    micros(now.checked_add_signed(lease).unwrap_or(now))
}

#[async_trait]
impl OutboxStore for PgStore {
    async fn claim_messages(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        // SKIP LOCKED: concurrent senders (other nodes) take disjoint batches without waiting.
        let rows: Vec<Row<Uuid>> = sqlx::query_as(concat!(
            "UPDATE outbox SET next_attempt_at = $2 \
             WHERE id IN ( \
               SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= $1 \
               ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING ",
            COLUMNS!()
        ))
        .bind(now)
        .bind(lease_end(now, lease))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(unavailable)?;
        messages(rows)
    }

    async fn mark_sent(
        &self,
        id: Uuid,
        subject: &str,
        body: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET status = 'sent', attempts = attempts + 1, subject = $2, \
             body = $3, sent_at = $4, last_error = NULL WHERE id = $1",
        )
        .bind(id)
        .bind(subject)
        .bind(body)
        .bind(micros(at))
        .execute(self.pool())
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn mark_failed(
        &self,
        id: Uuid,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        // A message another sender delivered meanwhile stays delivered.
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2, \
             status = CASE WHEN $3::TIMESTAMPTZ IS NULL THEN 'failed' ELSE 'pending' END, \
             next_attempt_at = COALESCE($3, next_attempt_at) \
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(id)
        .bind(error)
        .bind(retry_at.map(micros))
        .execute(self.pool())
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn list_messages(
        &self,
        query: &OutboxQuery,
    ) -> Result<Page<OutboxMessage, Uuid>, StoreError> {
        let limit = query.limit.max(1);
        let rows: Vec<Row<Uuid>> = sqlx::query_as(concat!(
            "SELECT ",
            COLUMNS!(),
            " FROM outbox \
             WHERE ($1::TEXT IS NULL OR status = $1) \
             AND ($2::UUID IS NULL OR run_id = $2) \
             AND ($3::UUID IS NULL OR id < $3) \
             ORDER BY id DESC LIMIT $4"
        ))
        .bind(query.status.map(MessageStatus::as_str))
        .bind(query.run_id)
        .bind(query.before)
        .bind(i64::from(limit) + 1)
        .fetch_all(self.pool())
        .await
        .map_err(unavailable)?;
        page(rows, limit as usize)
    }
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn claim_messages(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        // One statement on the single writer: the select and the update are one transaction,
        // so two senders never claim the same message.
        let rows: Vec<Row<Hyphenated>> = sqlx::query_as(concat!(
            "UPDATE outbox SET next_attempt_at = ?2 \
             WHERE id IN ( \
               SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?1 \
               ORDER BY next_attempt_at, id LIMIT ?3) \
             RETURNING ",
            COLUMNS!()
        ))
        .bind(ts(now))
        .bind(ts(lease_end(now, lease)))
        .bind(i64::from(limit))
        .fetch_all(self.writer())
        .await
        .map_err(unavailable)?;
        messages(rows)
    }

    async fn mark_sent(
        &self,
        id: Uuid,
        subject: &str,
        body: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET status = 'sent', attempts = attempts + 1, subject = ?2, \
             body = ?3, sent_at = ?4, last_error = NULL WHERE id = ?1",
        )
        .bind(text_id(id))
        .bind(subject)
        .bind(body)
        .bind(ts(at))
        .execute(self.writer())
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn mark_failed(
        &self,
        id: Uuid,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, \
             status = CASE WHEN ?3 IS NULL THEN 'failed' ELSE 'pending' END, \
             next_attempt_at = COALESCE(?3, next_attempt_at) \
             WHERE id = ?1 AND status = 'pending'",
        )
        .bind(text_id(id))
        .bind(error)
        .bind(retry_at.map(ts))
        .execute(self.writer())
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn list_messages(
        &self,
        query: &OutboxQuery,
    ) -> Result<Page<OutboxMessage, Uuid>, StoreError> {
        let limit = query.limit.max(1);
        // Hyphenated lowercase UUIDs sort as text in the same order as the ids themselves.
        let rows: Vec<Row<Hyphenated>> = sqlx::query_as(concat!(
            "SELECT ",
            COLUMNS!(),
            " FROM outbox \
             WHERE (?1 IS NULL OR status = ?1) \
             AND (?2 IS NULL OR run_id = ?2) \
             AND (?3 IS NULL OR id < ?3) \
             ORDER BY id DESC LIMIT ?4"
        ))
        .bind(query.status.map(MessageStatus::as_str))
        .bind(query.run_id.map(text_id))
        .bind(query.before.map(text_id))
        .bind(i64::from(limit) + 1)
        .fetch_all(self.reader())
        .await
        .map_err(unavailable)?;
        page(rows, limit as usize)
    }
}
