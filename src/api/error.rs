//! The API's one error type and its RFC 9457 problem+json rendering.
//!
//! Every failure a handler can meet maps here once; store details go to the log, never to the
//! client. Problem `type`s are URNs (`urn:scaff:problem:<slug>`), listed in docs/api.md.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use scaff_core::diag::Diagnostic;
use scaff_core::store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of error bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URN naming the kind of problem, e.g. `urn:scaff:problem:validation`.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// Every located problem, for validation failures.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemItem>,
}

/// One located problem inside a [`Problem`].
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProblemItem {
    /// Path into the document (`steps[2].next`); empty for the document itself.
    pub path: String,
    /// 1-based line in the submitted text (absent for problems without a position).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// 1-based column in the submitted text (absent for problems without a position).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// Stable code, e.g. `key.unknown`.
    pub code: String,
    /// Explanation.
    pub message: String,
}

impl From<&Diagnostic> for ProblemItem {
    fn from(d: &Diagnostic) -> Self {
        Self {
            path: d.path.clone(),
            line: Some(d.line),
            column: Some(d.column),
            code: d.code.to_string(),
            message: d.message.clone(),
        }
    }
}

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The definition breaks rules (422).
    #[error("the definition has {} problem(s)", .0.len())]
    Invalid(Vec<Diagnostic>),
    /// Request data breaks its rules: form inputs, body fields (422).
    #[error("{detail}")]
    InvalidInput {
        /// What is wrong, in a sentence.
        detail: String,
        /// Each problem.
        errors: Vec<ProblemItem>,
    },
    /// The caller may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// A credential (an API key, a JWT, a resume token) is missing, invalid or expired (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The request itself is malformed: unreadable JSON, bad query parameters (400).
    #[error("{detail}")]
    BadRequest {
        /// What is wrong.
        detail: String,
        /// Located problems, when the body could be located.
        errors: Vec<Diagnostic>,
    },
    /// No such resource (404).
    #[error("{0}")]
    NotFound(String),
    /// No such route or method for it (404 / 405).
    #[error("{1}")]
    NoRoute(StatusCode, String),
    /// A conflicting state: an id taken, a version out of turn (409).
    #[error("{0}")]
    Conflict(String),
    /// The body exceeds the configured limit (413).
    #[error("the request body is larger than the limit of {0} bytes")]
    TooLarge(usize),
    /// The body's media type is not accepted (415).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The database is unreachable (503); the cause is logged, not returned.
    #[error("the store is unavailable")]
    Unavailable(String),
    /// A bug; the cause is logged, not returned (500).
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status for this error.
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) | ApiError::InvalidInput { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::NoRoute(status, _) => *status,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug_and_title(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::Invalid(_) => ("validation", "The definition is invalid"),
            ApiError::InvalidInput { .. } => ("invalid-input", "The input is invalid"),
            ApiError::Unauthorized(_) => ("unauthorized", "Unauthorized"),
            ApiError::Forbidden(_) => ("forbidden", "Forbidden"),
            ApiError::BadRequest { .. } => ("bad-request", "The request is malformed"),
            ApiError::NotFound(_) => ("not-found", "Not found"),
            ApiError::NoRoute(s, _) if *s == StatusCode::METHOD_NOT_ALLOWED => {
                ("method-not-allowed", "Method not allowed")
            }
            ApiError::NoRoute(..) => ("not-found", "Not found"),
            ApiError::Conflict(_) => ("conflict", "Conflict"),
            ApiError::TooLarge(_) => ("payload-too-large", "Payload too large"),
            ApiError::UnsupportedMediaType(_) => {
                ("unsupported-media-type", "Unsupported media type")
            }
            ApiError::Unavailable(_) => ("unavailable", "Service unavailable"),
            ApiError::Internal(_) => ("internal", "Internal server error"),
        }
    }

    /// The problem document for this error.
    pub fn problem(&self) -> Problem {
        let (slug, title) = self.slug_and_title();
        let errors = match self {
            ApiError::Invalid(diags) | ApiError::BadRequest { errors: diags, .. } => {
                diags.iter().map(ProblemItem::from).collect()
            }
            ApiError::InvalidInput { errors, .. } => errors.clone(),
            _ => Vec::new(),
        };
        Problem {
            problem_type: format!("urn:scaff:problem:{slug}"),
            title: title.to_string(),
            status: self.status_code().as_u16(),
            detail: self.to_string(),
            errors,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(format!("{what} does not exist")),
            StoreError::Conflict(why) => ApiError::Conflict(why),
            StoreError::VersionMismatch { expected, latest } => ApiError::Conflict(format!(
                "the definition says version {expected}, but the next version would be {}",
                latest + 1
            )),
            StoreError::Fenced { .. } => {
                ApiError::Conflict("the execution changed concurrently; read it and retry".into())
            }
            StoreError::Unavailable(cause) => ApiError::Unavailable(cause),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Unavailable(cause) => tracing::error!(%cause, "store unavailable"),
            ApiError::Internal(cause) => tracing::error!(%cause, "internal error"),
            _ => {}
        }
        let mut response = problem_response(self.status_code(), &self.problem());
        if let ApiError::Unauthorized(_) = self {
            // RFC 9110: a 401 names the scheme that would work.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"scaff\""),
            );
        }
        response
    }
}

/// Serializes a problem with its status and media type.
pub fn problem_response(status: StatusCode, problem: &Problem) -> Response {
    let body = serde_json::to_vec(problem).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_details_never_reach_the_client() {
        let problem =
            ApiError::Unavailable("password authentication failed for user x".into()).problem();
        assert_eq!(problem.status, 503);
        assert!(!problem.detail.contains("password"));
    }

    #[test]
    fn version_mismatch_is_a_conflict_naming_the_next_version() {
        let e: ApiError = StoreError::VersionMismatch {
            expected: 5,
            latest: 2,
        }
        .into();
        assert_eq!(e.status_code(), StatusCode::CONFLICT);
        assert!(e.to_string().contains("next version would be 3"), "{e}");
    }
}
