//! `/v1/templates`: versioned prompt templates — save the next version, read one, list the
//! latest of each. A template is checked by the real template parser before it is saved, so a
//! syntax error is a 422 located inside the template text, never a failed run.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use chrono::{DateTime, Utc};
use scaff_core::diag::{Diagnostic, Location, codes};
use scaff_core::lang;
use scaff_core::store::{NewTemplateVersion, TemplateQuery, TemplateVersion};
use scaff_core::workflow::is_identifier;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::Caller;
use super::cursor;
use super::error::{ApiError, Problem};
use super::extract::{ApiPath, ApiQuery};
use super::json::ApiJson;

/// A template version to save.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTemplate {
    /// Template id: 1–64 of letters, digits, `_`, `-`, `.`, not starting with `-` or `.`.
    pub id: String,
    /// System prompt (a minijinja template).
    #[serde(default)]
    pub system: Option<String>,
    /// User prompt (a minijinja template).
    pub prompt: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
}

/// A stored template version.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateResponse {
    /// Template id.
    pub id: String,
    /// Version number, 1, 2, 3, … per id.
    pub version: i64,
    /// System prompt template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// User prompt template.
    pub prompt: String,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Who saved it (`key:<name>`, `jwt:<sub>`); absent when authentication is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// When this version was saved.
    pub created_at: DateTime<Utc>,
}

impl From<TemplateVersion> for TemplateResponse {
    fn from(t: TemplateVersion) -> Self {
        Self {
            id: t.id,
            version: t.version,
            system: t.system,
            prompt: t.prompt,
            description: t.description,
            created_by: t.created_by,
            created_at: t.created_at,
        }
    }
}

/// One page of templates (the latest version of each).
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateList {
    /// Templates, ordered by id.
    pub items: Vec<TemplateResponse>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Paging for `GET /v1/templates`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TemplateListParams {
    /// Page size, 1–200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

const LIST_KIND: &str = "templates";

/// Every problem with a posted template, at once; positions are inside the field's own text.
fn validate(new: &NewTemplate) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    if !is_identifier(&new.id) {
        let column = new
            .id
            .chars()
            .position(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
            .unwrap_or_else(|| new.id.chars().count().min(64))
            + 1;
        problems.push(Diagnostic::new(
            codes::VALUE_INVALID,
            "id",
            Location::new(1, column),
            format!(
                "`{}` is not a template id: 1–64 of letters, digits, `_`, `-` and `.`, \
                 starting with a letter, digit or `_`",
                new.id
            ),
        ));
    }
    if new.prompt.trim().is_empty() {
        problems.push(Diagnostic::new(
            codes::VALUE_INVALID,
            "prompt",
            Location::new(1, 1),
            "the prompt is empty",
        ));
    }
    let fields = [
        ("prompt", Some(&new.prompt)),
        ("system", new.system.as_ref()),
    ];
    for (path, text) in fields {
        let Some(text) = text else { continue };
        if let Err(e) = lang::check_template(text) {
            problems.push(Diagnostic::new(
                codes::TEMPLATE_INVALID,
                path,
                location_in(text, e.offset),
                format!("invalid template: {}", e.message),
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(problems))
    }
}

/// The 1-based line and column of the character at `offset` (in characters) of `text`.
fn location_in(text: &str, offset: usize) -> Location {
    let before: String = text.chars().take(offset).collect();
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |last| last.chars().count())
        + 1;
    Location::new(line, column)
}

/// Save the next version of a template (version 1 for a new id).
#[utoipa::path(
    post, path = "/v1/templates", tag = "templates",
    request_body(content = NewTemplate, content_type = "application/json"),
    responses(
        (status = 201, description = "Saved as the next version", body = TemplateResponse,
            headers(("Location" = String, description = "URL of the new version"))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad id or a template that does not parse, located inside its text", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_template(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(new): ApiJson<NewTemplate>,
) -> Result<(StatusCode, HeaderMap, Json<TemplateResponse>), ApiError> {
    validate(&new)?;
    let saved = state
        .store
        .save_template(NewTemplateVersion {
            id: new.id,
            system: new.system,
            prompt: new.prompt,
            description: new.description,
            created_by: caller.actor(),
            created_at: state.clock.now(),
        })
        .await?;
    let mut headers = HeaderMap::new();
    let location = format!("/v1/templates/{}/versions/{}", saved.id, saved.version);
    if let Ok(value) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, value);
    }
    Ok((StatusCode::CREATED, headers, Json(saved.into())))
}

/// List templates (the latest version of each), by id.
#[utoipa::path(
    get, path = "/v1/templates", tag = "templates", params(TemplateListParams),
    responses(
        (status = 200, description = "One page", body = TemplateList),
        (status = 400, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_templates(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<TemplateListParams>,
) -> Result<Json<TemplateList>, ApiError> {
    let query = TemplateQuery {
        after_id: params
            .cursor
            .as_deref()
            .map(|c| cursor::decode(LIST_KIND, c))
            .transpose()?,
        limit: cursor::limit(params.limit)?,
    };
    let page = state.store.list_templates(&query).await?;
    Ok(Json(TemplateList {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_after.map(|k| cursor::encode(LIST_KIND, &k)),
    }))
}

/// The latest version of a template.
#[utoipa::path(
    get, path = "/v1/templates/{id}", tag = "templates",
    params(("id" = String, Path, description = "Template id")),
    responses(
        (status = 200, description = "The latest version", body = TemplateResponse),
        (status = 404, description = "No such template", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_template(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TemplateResponse>, ApiError> {
    state
        .store
        .latest_template(&id)
        .await?
        .map(|t| Json(t.into()))
        .ok_or_else(|| ApiError::NotFound(format!("template `{id}` does not exist")))
}

/// One version of a template.
#[utoipa::path(
    get, path = "/v1/templates/{id}/versions/{version}", tag = "templates",
    params(("id" = String, Path, description = "Template id"), ("version" = i64, Path, description = "Version number")),
    responses(
        (status = 200, description = "That version", body = TemplateResponse),
        (status = 400, description = "The version is not a number", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such template or version", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_template_version(
    State(state): State<AppState>,
    ApiPath((id, version)): ApiPath<(String, i64)>,
) -> Result<Json<TemplateResponse>, ApiError> {
    state
        .store
        .template_version(&id, version)
        .await?
        .map(|t| Json(t.into()))
        .ok_or_else(|| ApiError::NotFound(format!("template `{id}` has no version {version}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_count_lines_and_characters() {
        assert_eq!(location_in("Hi {{ x", 3), Location::new(1, 4));
        assert_eq!(location_in("a\nbé {{", 4), Location::new(2, 3));
        assert_eq!(location_in("a\n", 2), Location::new(2, 1));
        assert_eq!(location_in("", 0), Location::new(1, 1));
    }

    #[test]
    fn every_problem_is_reported() {
        let new = NewTemplate {
            id: "bad id".into(),
            system: Some("{% if x %}".into()),
            prompt: "line\n{{ y".into(),
            description: None,
        };
        let Err(ApiError::Invalid(diags)) = validate(&new) else {
            panic!("expected problems");
        };
        let found: Vec<(&str, &str, usize, usize)> = diags
            .iter()
            .map(|d| (d.path.as_str(), d.code, d.line, d.column))
            .collect();
        assert_eq!(
            found,
            [
                ("id", codes::VALUE_INVALID, 1, 4),
                ("prompt", codes::TEMPLATE_INVALID, 2, 1),
                ("system", codes::TEMPLATE_INVALID, 1, 1),
            ]
        );
    }
}
