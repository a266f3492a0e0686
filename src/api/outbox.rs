//! `GET /v1/outbox`: the messages queued for people (approval requests and reminders), newest
//! first, with what was sent and how delivery went.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use scaff_core::store::{MessageStatus, OutboxMessage, OutboxQuery};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::cursor;
use super::error::{ApiError, Problem};
use super::extract::ApiQuery;

const LIST_KIND: &str = "outbox";

/// Filters of `GET /v1/outbox`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OutboxParams {
    /// Only messages in this status: `pending`, `sent` or `failed`.
    pub status: Option<String>,
    /// Only messages of this execution.
    pub run_id: Option<String>,
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A message in the outbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct OutboxItem {
    /// Message id.
    pub id: Uuid,
    /// The execution it is about.
    pub run_id: Uuid,
    /// The step it is about.
    pub step_id: String,
    /// `approval_requested` or `approval_reminder`.
    pub kind: String,
    /// The e-mail address it goes to.
    pub recipient: String,
    /// `pending` (not yet delivered, maybe after failed attempts), `sent`, or `failed` (given
    /// up on; `last_error` says why).
    pub status: String,
    /// Delivery attempts so far.
    pub attempts: i32,
    /// The last delivery error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The subject sent (once sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The plain-text body sent (once sent); it holds the recipient's resume token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// When it was queued.
    pub created_at: DateTime<Utc>,
    /// When the next attempt is due (pending messages only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When it was sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
}

impl From<OutboxMessage> for OutboxItem {
    fn from(m: OutboxMessage) -> Self {
        let pending = m.status == MessageStatus::Pending;
        Self {
            id: m.message.id,
            run_id: m.run_id,
            step_id: m.message.step_id,
            kind: m.message.kind.as_str().to_string(),
            recipient: m.message.recipient,
            status: m.status.as_str().to_string(),
            attempts: m.attempts,
            last_error: m.last_error,
            subject: m.subject,
            body: m.body,
            created_at: m.created_at,
            next_attempt_at: pending.then_some(m.next_attempt_at),
            sent_at: m.sent_at,
        }
    }
}

/// One page of the outbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct OutboxList {
    /// Messages, newest first.
    pub items: Vec<OutboxItem>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

fn bad_request(detail: String) -> ApiError {
    ApiError::BadRequest {
        detail,
        errors: Vec::new(),
    }
}

/// List the messages queued for people, newest first. Without an SMTP server this is where
/// approval messages (and the tokens in them) are read.
#[utoipa::path(
    get, path = "/v1/outbox", tag = "notifications", params(OutboxParams),
    responses(
        (status = 200, description = "One page", body = OutboxList),
        (status = 400, description = "Bad filter, limit or cursor", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_outbox(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<OutboxParams>,
) -> Result<Json<OutboxList>, ApiError> {
    let status = params
        .status
        .as_deref()
        .map(|s| {
            MessageStatus::parse(s).ok_or_else(|| {
                bad_request(format!(
                    "`status` must be one of pending, sent, failed; got `{s}`"
                ))
            })
        })
        .transpose()?;
    let run_id = params
        .run_id
        .as_deref()
        .map(|r| {
            Uuid::parse_str(r)
                .map_err(|_| bad_request(format!("`run_id` must be an execution id; got `{r}`")))
        })
        .transpose()?;
    let before = params
        .cursor
        .as_deref()
        .map(|c| {
            let key = cursor::decode(LIST_KIND, c)?;
            Uuid::parse_str(&key).map_err(|_| {
                bad_request("`cursor` is not a cursor this listing issued".to_string())
            })
        })
        .transpose()?;
    let query = OutboxQuery {
        status,
        run_id,
        before,
        limit: cursor::limit(params.limit)?,
    };
    let page = state.store.list_messages(&query).await?;
    Ok(Json(OutboxList {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page
            .next_after
            .map(|id| cursor::encode(LIST_KIND, &id.to_string())),
    }))
}
