//! API keys for both adapters: the prefix finds a key, the hash checks it (in `crate::auth`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use scaff_core::store::{ApiKey, KeyStore, NewApiKey, Role, StoreError};
use uuid::Uuid;
use uuid::fmt::Hyphenated;

use super::sqlite::{text_id, ts};
use super::{PgStore, SqliteStore, is_unique_violation, micros, unavailable};

const COLUMNS: &str = "id, name, role, prefix, hash, created_at, last_used_at, revoked_at";

/// An `api_keys` row; `Id` is `Uuid` on PostgreSQL, hyphenated text on SQLite.
#[derive(sqlx::FromRow)]
struct Row<Id> {
    id: Id,
    name: String,
    role: String,
    prefix: String,
    hash: String,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl<Id: Into<Uuid>> TryFrom<Row<Id>> for ApiKey {
    type Error = StoreError;

    fn try_from(r: Row<Id>) -> Result<Self, StoreError> {
        let role = Role::parse(&r.role).ok_or_else(|| {
            StoreError::Unavailable(format!("corrupt row: key role `{}`", r.role))
        })?;
        Ok(ApiKey {
            id: r.id.into(),
            name: r.name,
            role,
            prefix: r.prefix,
            hash: r.hash,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
        })
    }
}

fn keys<Id: Into<Uuid>>(rows: Vec<Row<Id>>) -> Result<Vec<ApiKey>, StoreError> {
    rows.into_iter().map(ApiKey::try_from).collect()
}

fn created(key: NewApiKey) -> ApiKey {
    ApiKey {
        id: key.id,
        name: key.name,
        role: key.role,
        prefix: key.prefix,
        hash: key.hash,
        created_at: micros(key.created_at),
        last_used_at: None,
        revoked_at: None,
    }
}

fn insert_error(e: sqlx::Error, key: &NewApiKey) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict(format!(
            "a key named `{}` (or with prefix `{}`) exists",
            key.name, key.prefix
        ))
    } else {
        unavailable(e)
    }
}

#[async_trait]
impl KeyStore for PgStore {
    async fn create_key(&self, key: NewApiKey) -> Result<ApiKey, StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, role, prefix, hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(key.id)
        .bind(&key.name)
        .bind(key.role.as_str())
        .bind(&key.prefix)
        .bind(&key.hash)
        .bind(micros(key.created_at))
        .execute(self.pool())
        .await
        .map_err(|e| insert_error(e, &key))?;
        Ok(created(key))
    }

    async fn key_by_prefix(&self, prefix: &str) -> Result<Option<ApiKey>, StoreError> {
        let row: Option<Row<Uuid>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_keys WHERE prefix = $1"
        )))
        .bind(prefix)
        .fetch_optional(self.pool())
        .await
        .map_err(unavailable)?;
        row.map(ApiKey::try_from).transpose()
    }

    async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let rows: Vec<Row<Uuid>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_keys ORDER BY created_at, id"
        )))
        .fetch_all(self.pool())
        .await
        .map_err(unavailable)?;
        keys(rows)
    }

    async fn revoke_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<Option<ApiKey>, StoreError> {
        let row: Option<Row<Uuid>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 \
             RETURNING {COLUMNS}"
        )))
        .bind(id)
        .bind(micros(at))
        .fetch_optional(self.pool())
        .await
        .map_err(unavailable)?;
        row.map(ApiKey::try_from).transpose()
    }

    async fn touch_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
            .bind(id)
            .bind(micros(at))
            .execute(self.pool())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn count_keys(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(self.pool())
            .await
            .map_err(unavailable)
    }
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn create_key(&self, key: NewApiKey) -> Result<ApiKey, StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, role, prefix, hash, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(text_id(key.id))
        .bind(&key.name)
        .bind(key.role.as_str())
        .bind(&key.prefix)
        .bind(&key.hash)
        .bind(ts(micros(key.created_at)))
        .execute(self.writer())
        .await
        .map_err(|e| insert_error(e, &key))?;
        Ok(created(key))
    }

    async fn key_by_prefix(&self, prefix: &str) -> Result<Option<ApiKey>, StoreError> {
        let row: Option<Row<Hyphenated>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_keys WHERE prefix = ?1"
        )))
        .bind(prefix)
        .fetch_optional(self.reader())
        .await
        .map_err(unavailable)?;
        row.map(ApiKey::try_from).transpose()
    }

    async fn list_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let rows: Vec<Row<Hyphenated>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_keys ORDER BY created_at, id"
        )))
        .fetch_all(self.reader())
        .await
        .map_err(unavailable)?;
        keys(rows)
    }

    async fn revoke_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<Option<ApiKey>, StoreError> {
        let row: Option<Row<Hyphenated>> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1 \
             RETURNING {COLUMNS}"
        )))
        .bind(text_id(id))
        .bind(ts(micros(at)))
        .fetch_optional(self.writer())
        .await
        .map_err(unavailable)?;
        row.map(ApiKey::try_from).transpose()
    }

    async fn touch_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1")
            .bind(text_id(id))
            .bind(ts(micros(at)))
            .execute(self.writer())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn count_keys(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(self.reader())
            .await
            .map_err(unavailable)
    }
}
