//! `/v1/secrets`: store (or replace), list and delete secrets. Values go in and never come
//! out: responses carry names and times only, and no error message quotes a value.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use scaff_core::diag::codes;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, Problem, ProblemItem};
use super::extract::ApiPath;
use super::json::ApiJson;
use crate::secrets::{self, SecretError, SecretInfo};

/// A secret to store. Posting an existing name replaces its value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSecret {
    /// The name templates use as `secrets.<name>`: 1–64 letters, digits and `_`, starting
    /// with a letter or `_`.
    #[serde(default)]
    #[schema(value_type = String, required = true, example = "cms_token")]
    pub name: Option<String>,
    /// The value: 1 byte to 64 KiB of text, without NUL characters. Encrypted at rest; never
    /// returned by any endpoint.
    #[serde(default)]
    #[schema(value_type = String, required = true, format = Password)]
    pub value: Option<serde_json::Value>,
}

/// What the API shows of a secret: its name and times, never its value.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretResponse {
    /// The name.
    pub name: String,
    /// When it was first stored.
    pub created_at: DateTime<Utc>,
    /// When its value last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<SecretInfo> for SecretResponse {
    fn from(s: SecretInfo) -> Self {
        Self {
            name: s.name,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// Every secret, by name.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretList {
    /// Secrets, ordered by name.
    pub items: Vec<SecretResponse>,
}

fn problem(path: &str, code: &str, message: String) -> ProblemItem {
    ProblemItem {
        path: path.into(),
        line: None,
        column: None,
        code: code.into(),
        message,
    }
}

fn invalid(errors: Vec<ProblemItem>) -> ApiError {
    ApiError::InvalidInput {
        detail: format!("the secret has {} problem(s)", errors.len()),
        errors,
    }
}

impl From<SecretError> for ApiError {
    fn from(e: SecretError) -> Self {
        match e {
            SecretError::Invalid(problems) => invalid(
                problems
                    .into_iter()
                    .map(|p| problem(p.field, codes::VALUE_INVALID, p.message))
                    .collect(),
            ),
            SecretError::Store(e) => e.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// Checks the body's shape and rules, reporting every problem at once; never quotes the value.
fn validate(new: NewSecret) -> Result<(String, String), ApiError> {
    let mut errors = Vec::new();
    let name = match new.name {
        None => {
            errors.push(problem(
                "name",
                codes::KEY_MISSING,
                "a name is required".into(),
            ));
            None
        }
        Some(name) => {
            if let Some(message) = secrets::check_name(&name) {
                errors.push(problem("name", codes::VALUE_INVALID, message));
            }
            Some(name)
        }
    };
    let value = match new.value {
        None | Some(serde_json::Value::Null) => {
            errors.push(problem(
                "value",
                codes::KEY_MISSING,
                "a value is required".into(),
            ));
            None
        }
        Some(serde_json::Value::String(value)) => {
            if let Some(message) = secrets::check_value(&value) {
                errors.push(problem("value", codes::VALUE_INVALID, message));
            }
            Some(value)
        }
        Some(_) => {
            errors.push(problem(
                "value",
                codes::TYPE_MISMATCH,
                "the value must be a string".into(),
            ));
            None
        }
    };
    match (name, value) {
        (Some(name), Some(value)) if errors.is_empty() => Ok((name, value)),
        _ => Err(invalid(errors)),
    }
}

/// Store a secret, or replace the value of an existing one (its `created_at` is kept).
#[utoipa::path(
    post, path = "/v1/secrets", tag = "secrets",
    request_body(content = NewSecret, content_type = "application/json"),
    responses(
        (status = 201, description = "Stored as a new secret", body = SecretResponse),
        (status = 200, description = "Replaced the value of an existing secret", body = SecretResponse),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad name or value, each problem under `name` or `value` (the value is never quoted)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_secret(
    State(state): State<AppState>,
    ApiJson(new): ApiJson<NewSecret>,
) -> Result<(StatusCode, Json<SecretResponse>), ApiError> {
    let (name, value) = validate(new)?;
    let stored = state.secrets.put(&name, &value).await?;
    let status = if stored.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(stored.info.into())))
}

/// List every secret's name and times, by name (values are never returned).
#[utoipa::path(
    get, path = "/v1/secrets", tag = "secrets",
    responses(
        (status = 200, description = "Every secret", body = SecretList),
    )
)]
pub async fn list_secrets(State(state): State<AppState>) -> Result<Json<SecretList>, ApiError> {
    let items = state.secrets.list().await?;
    Ok(Json(SecretList {
        items: items.into_iter().map(Into::into).collect(),
    }))
}

/// Delete a secret.
#[utoipa::path(
    delete, path = "/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "Secret name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such secret", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_secret(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    if state.secrets.delete(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "secret `{}` does not exist",
            name.escape_debug()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> NewSecret {
        super::super::json::parse(json.as_bytes()).unwrap_or_else(|_| panic!("parses: {json}"))
    }

    fn paths(result: Result<(String, String), ApiError>) -> Vec<(String, String)> {
        let Err(ApiError::InvalidInput { errors, .. }) = result else {
            panic!("expected problems");
        };
        errors.into_iter().map(|e| (e.path, e.code)).collect()
    }

    #[test]
    fn every_problem_is_reported_under_its_field() {
        assert_eq!(
            paths(validate(body("{}"))),
            [
                ("name".to_string(), codes::KEY_MISSING.to_string()),
                ("value".to_string(), codes::KEY_MISSING.to_string())
            ]
        );
        assert_eq!(
            paths(validate(body(r#"{"name": "a-b", "value": 12345}"#))),
            [
                ("name".to_string(), codes::VALUE_INVALID.to_string()),
                ("value".to_string(), codes::TYPE_MISMATCH.to_string())
            ]
        );
        assert_eq!(
            validate(body(r#"{"name": "ok", "value": "v"}"#)).ok(),
            Some(("ok".to_string(), "v".to_string()))
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_is_not_quoted() {
        let Err(e) = validate(body(r#"{"name": "ok", "value": 987654321}"#)) else {
            panic!("refused");
        };
        let shown = serde_json::to_string(&e.problem()).expect("json");
        assert!(!shown.contains("987654321"), "{shown}");
    }
}
