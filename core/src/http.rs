//! The HTTP port `api_call` steps send requests through. The adapter (in the `scaff` crate)
//! enforces the scheme, host allow/deny lists (SSRF), redirects, timeouts and the response
//! size limit; the step's logic (rendering, retries, result shape) stays on this side.

use std::time::Duration;

use async_trait::async_trait;

/// A request, fully rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Upper-case method.
    pub method: String,
    /// Absolute http(s) URL, query included.
    pub url: String,
    /// Header names and values.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Option<Vec<u8>>,
    /// How long the whole exchange may take.
    pub timeout: Duration,
}

/// A response, read whole (within the size limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header names (lower-case) and values.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Why no response came back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// No answer within the timeout (retried).
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The connection failed (retried).
    #[error("connection failed: {0}")]
    Connect(String),
    /// The response body is larger than the limit (not retried).
    #[error("the response is larger than {0} bytes")]
    TooLarge(u64),
    /// The request is not allowed: scheme, denied host or address (not retried).
    #[error("request refused: {0}")]
    Refused(String),
    /// Anything else (not retried).
    #[error("{0}")]
    Other(String),
}

/// Sends HTTP requests.
#[async_trait]
pub trait HttpPort: Send + Sync {
    /// Sends one request.
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError>;
}

/// Where steps read secret values from (decrypted, for rendering templates only).
#[async_trait]
pub trait SecretValues: Send + Sync {
    /// Every secret's name and value.
    async fn values(&self) -> Result<std::collections::BTreeMap<String, String>, String>;
}
