//! Wrappers around axum's extractors whose rejections are problem+json like every other error.

use axum::extract::FromRequestParts;
use axum::extract::rejection::{PathRejection, QueryRejection};

use super::error::ApiError;

/// `Query<T>` answering a malformed query string with a 400 problem.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `Path<T>` answering a malformed path parameter with a 400 problem.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::BadRequest {
            detail: format!("invalid query string: {}", r.body_text()),
            errors: Vec::new(),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::BadRequest {
            detail: format!("invalid path parameter: {}", r.body_text()),
            errors: Vec::new(),
        }
    }
}
