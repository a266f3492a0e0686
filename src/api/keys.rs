//! `/v1/keys`: create API keys (each shown once), list them (never their secrets), revoke one.
//! Admin only (see `api::auth`).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use chrono::{DateTime, Utc};
use scaff_core::diag::codes;
use scaff_core::store::{ApiKey, Role, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, Problem, ProblemItem};
use super::extract::ApiPath;
use super::json::ApiJson;
use crate::auth::{self, KeyError};

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// A name for people and the audit trail (`key:<name>`): 1–64 characters, unique among
    /// keys not revoked.
    #[schema(example = "ci")]
    pub name: String,
    /// `viewer` (reads), `operator` (also starts, resumes and cancels runs) or `admin` (also
    /// manages workflows, templates, secrets and keys).
    #[schema(example = "operator")]
    pub role: String,
}

/// A key as listed: never the key itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// Id (for `DELETE /v1/keys/{id}`).
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// viewer, operator or admin.
    pub role: String,
    /// The key's public start, `scaff_<prefix>_…`, to recognize it.
    pub prefix: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last authenticated a request (to about a minute).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKey> for KeyView {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id,
            name: k.name,
            role: k.role.as_str().to_string(),
            prefix: format!("{}{}", auth::KEY_PREFIX, k.prefix),
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A key just created, with the key itself: the only time it is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    /// The key: send it as `Authorization: Bearer <key>`. Shown once; only its hash is kept.
    pub key: String,
    /// The key's record.
    #[serde(flatten)]
    pub info: KeyView,
}

/// Every key, revoked ones too.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    /// Keys, oldest first.
    pub items: Vec<KeyView>,
}

fn invalid(path: &str, detail: String) -> ApiError {
    ApiError::InvalidInput {
        detail: detail.clone(),
        errors: vec![ProblemItem {
            path: path.into(),
            line: None,
            column: None,
            code: codes::VALUE_INVALID.into(),
            message: detail,
        }],
    }
}

/// Create an API key. The response is the only place the key ever appears.
#[utoipa::path(
    post, path = "/v1/keys", tag = "keys",
    request_body(content = NewKey, content_type = "application/json"),
    responses(
        (status = 201, description = "Created; `key` is shown this once", body = CreatedKey),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A key that is not revoked has this name", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad name or role", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(new): ApiJson<NewKey>,
) -> Result<(StatusCode, HeaderMap, Json<CreatedKey>), ApiError> {
    let role = Role::parse(&new.role).ok_or_else(|| {
        invalid(
            "role",
            format!(
                "`role` must be viewer, operator or admin; got `{}`",
                new.role.escape_debug()
            ),
        )
    })?;
    let issued = auth::issue_key(state.store.as_ref(), &new.name, role, state.clock.now())
        .await
        .map_err(|e| match e {
            KeyError::InvalidName(why) => invalid("name", why),
            KeyError::Store(StoreError::Conflict(_)) => ApiError::Conflict(format!(
                "a key named `{}` exists; revoke it first or pick another name",
                new.name.escape_debug()
            )),
            KeyError::Store(e) => e.into(),
        })?;
    tracing::info!(
        key = %issued.record.name,
        role = %issued.record.role,
        by = caller.actor().as_deref().unwrap_or("-"),
        "API key created"
    );
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/keys/{}", issued.record.id)) {
        headers.insert(header::LOCATION, v);
    }
    Ok((
        StatusCode::CREATED,
        headers,
        Json(CreatedKey {
            key: issued.key,
            info: issued.record.into(),
        }),
    ))
}

/// List every API key (names, roles, prefixes and times; never the keys).
#[utoipa::path(
    get, path = "/v1/keys", tag = "keys",
    responses((status = 200, description = "Every key, oldest first", body = KeyList))
)]
pub async fn list_keys(State(state): State<AppState>) -> Result<Json<KeyList>, ApiError> {
    let items = state.store.list_keys().await?;
    Ok(Json(KeyList {
        items: items.into_iter().map(Into::into).collect(),
    }))
}

/// Revoke an API key: from now on it authenticates nothing. Revoking twice is harmless.
#[utoipa::path(
    delete, path = "/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "Key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such key", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let missing = || ApiError::NotFound(format!("key `{}` does not exist", id.escape_debug()));
    let key_id = Uuid::parse_str(&id).map_err(|_| missing())?;
    let revoked = state
        .store
        .revoke_key(key_id, state.clock.now())
        .await?
        .ok_or_else(missing)?;
    tracing::info!(
        key = %revoked.name,
        by = caller.actor().as_deref().unwrap_or("-"),
        "API key revoked"
    );
    Ok(StatusCode::NO_CONTENT)
}
