//! AI usage totals for both adapters: sums over the `ai.response` events runs record, grouped
//! by workflow, template, provider or model.

use async_trait::async_trait;
use chrono::SecondsFormat;
use scaff_core::store::{StoreError, UsageQuery, UsageRow, UsageStore};

use super::{PgStore, SqliteStore, unavailable};

#[derive(sqlx::FromRow)]
struct Row {
    key: String,
    calls: i64,
    tokens_prompt: i64,
    tokens_output: i64,
}

impl From<Row> for UsageRow {
    fn from(r: Row) -> Self {
        UsageRow {
            key: r.key,
            calls: r.calls,
            tokens_prompt: r.tokens_prompt,
            tokens_output: r.tokens_output,
        }
    }
}

#[async_trait]
impl UsageStore for PgStore {
    async fn usage(&self, q: &UsageQuery) -> Result<Vec<UsageRow>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT CASE $4 \
               WHEN 'workflow' THEN r.workflow_id \
               WHEN 'template' THEN COALESCE(e.data->>'template_id', '(inline)') \
               WHEN 'provider' THEN COALESCE(e.data->>'provider', '(unknown)') \
               ELSE COALESCE(e.data->>'model', '(unknown)') END AS key, \
             COUNT(*) AS calls, \
             COALESCE(SUM((e.data->>'tokens_prompt')::BIGINT), 0)::BIGINT AS tokens_prompt, \
             COALESCE(SUM((e.data->>'tokens_output')::BIGINT), 0)::BIGINT AS tokens_output \
             FROM events e JOIN runs r ON r.id = e.run_id \
             WHERE e.kind = 'ai.response' \
             AND ($1::TEXT IS NULL OR r.workflow_id = $1) \
             AND ($2::TIMESTAMPTZ IS NULL OR e.created_at >= $2) \
             AND ($3::TIMESTAMPTZ IS NULL OR e.created_at < $3) \
             GROUP BY 1 ORDER BY 1",
        )
        .bind(&q.workflow_id)
        .bind(q.from)
        .bind(q.to)
        .bind(q.group_by.as_str())
        .fetch_all(self.pool())
        .await
        .map_err(unavailable)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}

#[async_trait]
impl UsageStore for SqliteStore {
    async fn usage(&self, q: &UsageQuery) -> Result<Vec<UsageRow>, StoreError> {
        let ts = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT CASE ?4 \
               WHEN 'workflow' THEN r.workflow_id \
               WHEN 'template' THEN COALESCE(json_extract(e.data, '$.template_id'), '(inline)') \
               WHEN 'provider' THEN COALESCE(json_extract(e.data, '$.provider'), '(unknown)') \
               ELSE COALESCE(json_extract(e.data, '$.model'), '(unknown)') END AS key, \
             COUNT(*) AS calls, \
             COALESCE(SUM(json_extract(e.data, '$.tokens_prompt')), 0) AS tokens_prompt, \
             COALESCE(SUM(json_extract(e.data, '$.tokens_output')), 0) AS tokens_output \
             FROM events e JOIN runs r ON r.id = e.run_id \
             WHERE e.kind = 'ai.response' \
             AND (?1 IS NULL OR r.workflow_id = ?1) \
             AND (?2 IS NULL OR e.created_at >= ?2) \
             AND (?3 IS NULL OR e.created_at < ?3) \
             GROUP BY 1 ORDER BY 1",
        )
        .bind(&q.workflow_id)
        .bind(q.from.map(ts))
        .bind(q.to.map(ts))
        .bind(q.group_by.as_str())
        .fetch_all(self.reader())
        .await
        .map_err(unavailable)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}
