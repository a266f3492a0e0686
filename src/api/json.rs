//! `ApiJson<T>`: a JSON body extractor whose every rejection is problem+json — 415 for another
//! media type, 413 past the size limit, 400 with line and column for malformed JSON, and 422
//! naming the field path for well-formed JSON of the wrong shape.

use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use scaff_core::diag::{Diagnostic, Location, codes};
use serde::de::DeserializeOwned;

use super::AppState;
use super::body::read_limited;
use super::error::{ApiError, ProblemItem};

/// A JSON request body of type `T`.
pub struct ApiJson<T>(pub T);

fn is_json(req: &Request) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|m| {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
}

/// Parses `bytes` as `T`, with located errors.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            let path = if path == "." { String::new() } else { path };
            ApiError::InvalidInput {
                detail: format!("the request body does not fit: {inner}"),
                errors: vec![ProblemItem {
                    path,
                    line: Some(inner.line().max(1)),
                    column: Some(inner.column().max(1)),
                    code: codes::BODY_INVALID.into(),
                    message: inner.to_string(),
                }],
            }
        } else {
            syntax(&inner)
        }
    })?;
    de.end().map_err(|e| syntax(&e))?;
    Ok(value)
}

fn syntax(e: &serde_json::Error) -> ApiError {
    ApiError::BadRequest {
        detail: format!("the body is not valid JSON: {e}"),
        errors: vec![Diagnostic::new(
            codes::JSON_SYNTAX,
            "",
            Location::new(e.line().max(1), e.column().max(1)),
            format!("invalid JSON: {e}"),
        )],
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !is_json(&req) {
            return Err(ApiError::UnsupportedMediaType(
                "send a JSON body with `Content-Type: application/json`".into(),
            ));
        }
        let bytes = read_limited(req, state.limits.max_body_bytes).await?;
        parse(&bytes).map(ApiJson)
    }
}

/// A JSON body that may be left out entirely (no body, or an empty one): then `T::default()`.
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let json = is_json(&req);
        let bytes = read_limited(req, state.limits.max_body_bytes).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        if !json {
            return Err(ApiError::UnsupportedMediaType(
                "send a JSON body with `Content-Type: application/json`".into(),
            ));
        }
        parse(&bytes).map(OptionalJson)
    }
}
