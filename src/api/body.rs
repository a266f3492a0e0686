//! Reading a workflow definition from a request body, whatever form it was sent in.
//!
//! Accepted: YAML (`application/yaml`, `application/x-yaml`, `text/yaml`, `text/x-yaml`),
//! JSON wrapping YAML (`{"yaml": "…"}`), or a JSON definition. JSON is YAML, so a JSON
//! definition is validated from its own text and problems point at lines of the JSON.
//! The body size is bounded while reading, so an oversized body is refused (413) without
//! being buffered whole.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use scaff_core::diag::{Diagnostic, Location};

use super::AppState;
use super::error::ApiError;

/// A definition's source text, as posted.
#[derive(Debug)]
pub struct DefinitionSource(pub String);

/// The media types a definition may be posted as.
pub const ACCEPTED: &str =
    "application/yaml, application/x-yaml, text/yaml, text/x-yaml, application/json";

enum Kind {
    Yaml,
    Json,
}

fn kind(req: &Request) -> Result<Kind, ApiError> {
    let Some(value) = req.headers().get(CONTENT_TYPE) else {
        return Err(ApiError::UnsupportedMediaType(format!(
            "a Content-Type is required; send one of: {ACCEPTED}"
        )));
    };
    let media = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => Ok(Kind::Yaml),
        "application/json" => Ok(Kind::Json),
        m if m.starts_with("application/") && m.ends_with("+json") => Ok(Kind::Json),
        m if m.ends_with("+yaml") => Ok(Kind::Yaml),
        other => Err(ApiError::UnsupportedMediaType(format!(
            "`{other}` is not accepted here; send one of: {ACCEPTED}"
        ))),
    }
}

/// Reads at most `limit` bytes of the body; more is a 413.
pub async fn read_limited(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::TooLarge(limit));
    }
    let body: Body = req.into_body();
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::TooLarge(limit)
        } else {
            ApiError::BadRequest {
                detail: format!("could not read the request body: {e}"),
                errors: Vec::new(),
            }
        }
    })
}

impl FromRequest<AppState> for DefinitionSource {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let kind = kind(&req)?;
        let bytes = read_limited(req, state.limits.max_body_bytes).await?;
        decode(kind, bytes)
    }
}

/// A definition that may be left out: an empty body is `None`.
#[derive(Debug)]
pub struct OptionalDefinition(pub Option<String>);

impl FromRequest<AppState> for OptionalDefinition {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let kind = kind(&req);
        let bytes = read_limited(req, state.limits.max_body_bytes).await?;
        if bytes.is_empty() {
            return Ok(OptionalDefinition(None));
        }
        Ok(OptionalDefinition(Some(decode(kind?, bytes)?.0)))
    }
}

fn decode(kind: Kind, bytes: Bytes) -> Result<DefinitionSource, ApiError> {
    let text = String::from_utf8(bytes.to_vec()).map_err(|e| ApiError::BadRequest {
        detail: format!(
            "the body is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ),
        errors: Vec::new(),
    })?;
    match kind {
        Kind::Yaml => Ok(DefinitionSource(text)),
        Kind::Json => from_json(text),
    }
}

/// `{"yaml": "…"}` yields the wrapped text; any other JSON is itself the definition.
fn from_json(text: String) -> Result<DefinitionSource, ApiError> {
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        let diag = Diagnostic::new(
            scaff_core::diag::codes::JSON_SYNTAX,
            "",
            Location::new(e.line().max(1), e.column().max(1)),
            format!("invalid JSON: {e}"),
        );
        ApiError::BadRequest {
            detail: format!("the body is not valid JSON: {e}"),
            errors: vec![diag],
        }
    })?;
    if let serde_json::Value::Object(map) = &value
        && map.len() == 1
        && let Some(inner) = map.get("yaml")
    {
        return match inner {
            serde_json::Value::String(s) => Ok(DefinitionSource(s.clone())),
            _ => Err(ApiError::BadRequest {
                detail: "`yaml` must be a string holding the workflow file".into(),
                errors: Vec::new(),
            }),
        };
    }
    Ok(DefinitionSource(text))
}
