//! `GET /v1/usage`: AI calls and tokens summed by workflow, template, provider or model.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use scaff_core::store::{UsageGroup, UsageQuery, UsageRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::{ApiError, Problem};
use super::extract::ApiQuery;

/// Filters of `GET /v1/usage`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// Only calls of runs of this workflow.
    pub workflow_id: Option<String>,
    /// Only calls at or after this time (RFC 3339).
    pub from: Option<String>,
    /// Only calls before this time (RFC 3339).
    pub to: Option<String>,
    /// `workflow` (default), `template`, `provider` or `model`.
    pub group_by: Option<String>,
}

/// Totals of one group (or of all).
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageTotals {
    /// The group's key; absent in the grand total.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Provider calls (answered or failed).
    pub calls: i64,
    /// Prompt tokens.
    pub tokens_prompt: i64,
    /// Output tokens.
    pub tokens_output: i64,
    /// Both.
    pub tokens_total: i64,
}

impl UsageTotals {
    fn of(key: Option<String>, calls: i64, prompt: i64, output: i64) -> Self {
        Self {
            key,
            calls,
            tokens_prompt: prompt,
            tokens_output: output,
            tokens_total: prompt + output,
        }
    }
}

/// The usage report.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    /// The grouping used.
    pub group_by: String,
    /// One row per group, by key.
    pub items: Vec<UsageTotals>,
    /// Everything together.
    pub total: UsageTotals,
}

fn time(name: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| ApiError::BadRequest {
                    detail: format!("`{name}` must be an RFC 3339 time, e.g. 2026-11-24T00:00:00Z"),
                    errors: Vec::new(),
                })
        })
        .transpose()
}

/// Sum AI calls and tokens.
#[utoipa::path(
    get, path = "/v1/usage", tag = "usage", params(UsageParams),
    responses(
        (status = 200, description = "Totals", body = UsageReport),
        (status = 400, description = "Bad time or grouping", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn usage(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<UsageParams>,
) -> Result<Json<UsageReport>, ApiError> {
    let group_by = match params.group_by.as_deref() {
        None => UsageGroup::Workflow,
        Some(g) => UsageGroup::parse(g).ok_or_else(|| ApiError::BadRequest {
            detail: format!("`group_by` must be workflow, template, provider or model; got `{g}`"),
            errors: Vec::new(),
        })?,
    };
    let query = UsageQuery {
        workflow_id: params.workflow_id,
        from: time("from", params.from.as_deref())?,
        to: time("to", params.to.as_deref())?,
        group_by,
    };
    let rows: Vec<UsageRow> = state.store.usage(&query).await?;
    let total = rows.iter().fold(UsageTotals::of(None, 0, 0, 0), |t, r| {
        UsageTotals::of(
            None,
            t.calls + r.calls,
            t.tokens_prompt + r.tokens_prompt,
            t.tokens_output + r.tokens_output,
        )
    });
    Ok(Json(UsageReport {
        group_by: group_by.as_str().to_string(),
        items: rows
            .into_iter()
            .map(|r| UsageTotals::of(Some(r.key), r.calls, r.tokens_prompt, r.tokens_output))
            .collect(),
        total,
    }))
}
