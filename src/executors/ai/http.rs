//! What the HTTP providers share: building the client, sending a JSON request under the call's
//! timeout, and classifying failures (status codes, `Retry-After`, transport errors) into
//! [`AiError`]s.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};
use scaff_core::ai::AiError;
use serde_json::Value as Json;

/// How long to wait for a TCP/TLS connection before giving up (the whole call is bounded by the
/// request's own timeout as well).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of an unparseable error body goes into an error message.
const MAX_ERROR_BODY: usize = 500;

/// A client suitable for model APIs (rustls, HTTP/2 when offered).
pub(crate) fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("scaff/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
}

/// `base` without trailing slashes, so `{base}/path` never doubles one.
pub(crate) fn trim_base(base: &str) -> String {
    base.trim_end_matches('/').to_string()
}

/// A schema name the providers accept: `[a-zA-Z0-9_-]{1,64}`. Other characters become `_`; an
/// empty name becomes `answer`.
pub fn sanitize_schema_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "answer".into()
    } else {
        cleaned
    }
}

/// Sends `builder` with `timeout` and returns the parsed JSON body of a successful answer, or the
/// classified failure. `provider` names the service in messages.
pub(crate) async fn send_json(
    provider: &str,
    builder: RequestBuilder,
    timeout: Duration,
) -> Result<Json, AiError> {
    let response = builder
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| transport_error(provider, &e, timeout))?;
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let body = response
        .bytes()
        .await
        .map_err(|e| transport_error(provider, &e, timeout))?;
    if !status.is_success() {
        return Err(status_error(provider, status, retry_after, &body, timeout));
    }
    serde_json::from_slice(&body).map_err(|e| {
        AiError::Permanent(format!(
            "{provider} answered {status} with a body that is not JSON ({e}): {}",
            snippet(&body)
        ))
    })
}

/// Classifies a failed HTTP answer: 408 is a timeout; 429 and 5xx (including Anthropic's 529
/// "overloaded") are transient; every other status is permanent. The message carries the
/// provider's own error message when the body has one.
pub(crate) fn status_error(
    provider: &str,
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
    timeout: Duration,
) -> AiError {
    if status == StatusCode::REQUEST_TIMEOUT {
        return AiError::Timeout(timeout);
    }
    let message = format!("{provider} answered {status}: {}", error_message(body));
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        AiError::Transient {
            message,
            retry_after,
        }
    } else {
        AiError::Permanent(message)
    }
}

/// Classifies a transport failure: timeouts are [`AiError::Timeout`]; connection and body
/// errors are transient; anything else (an unusable URL, say) is permanent.
pub(crate) fn transport_error(
    provider: &str,
    error: &reqwest::Error,
    timeout: Duration,
) -> AiError {
    if error.is_timeout() {
        AiError::Timeout(timeout)
    } else if error.is_builder() {
        AiError::Permanent(format!("cannot call {provider}: {}", error_chain(error)))
    } else {
        AiError::Transient {
            message: format!("{provider} could not be reached: {}", error_chain(error)),
            retry_after: None,
        }
    }
}

/// The error and its sources, `: `-separated (reqwest's own message is terse).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The provider's error message: `error.message` (OpenAI and Anthropic), a string `error`, or a
/// top-level `message`; else the start of the body.
pub(crate) fn error_message(body: &[u8]) -> String {
    if let Ok(json) = serde_json::from_slice::<Json>(body) {
        let found = json
            .pointer("/error/message")
            .or_else(|| json.get("error").filter(|e| e.is_string()))
            .or_else(|| json.get("message"))
            .and_then(Json::as_str);
        if let Some(message) = found {
            return message.to_string();
        }
    }
    snippet(body)
}

/// The start of a body as text, for messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".into();
    }
    match text.char_indices().nth(MAX_ERROR_BODY) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// How long the provider asked us to wait: `retry-after-ms` (OpenAI), or `Retry-After` as
/// seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && (0.0..1e12).contains(ms))
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, chrono::Utc::now())
}

/// Parses a `Retry-After` value (delay in seconds, or an HTTP date relative to `now`).
pub(crate) fn parse_retry_after(
    value: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    if let Ok(seconds) = value.parse::<f64>() {
        return (0.0..1e9)
            .contains(&seconds)
            .then(|| Duration::from_secs_f64(seconds));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = when.with_timezone(&chrono::Utc) - now;
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_sanitized() {
        assert_eq!(sanitize_schema_name("generate_outline"), "generate_outline");
        assert_eq!(sanitize_schema_name("step 1.ok/é"), "step_1_ok__");
        assert_eq!(sanitize_schema_name(""), "answer");
        assert_eq!(sanitize_schema_name(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .expect("date")
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn error_messages_come_from_the_body() {
        assert_eq!(
            error_message(br#"{"error": {"message": "bad model", "type": "invalid"}}"#),
            "bad model"
        );
        assert_eq!(error_message(br#"{"error": "nope"}"#), "nope");
        assert_eq!(error_message(b"plain text"), "plain text");
        assert_eq!(error_message(b""), "(empty body)");
    }

    #[test]
    fn statuses_are_classified() {
        let t = Duration::from_secs(1);
        assert!(matches!(
            status_error("x", StatusCode::TOO_MANY_REQUESTS, None, b"", t),
            AiError::Transient { .. }
        ));
        assert!(matches!(
            status_error("x", StatusCode::from_u16(529).expect("529"), None, b"", t),
            AiError::Transient { .. }
        ));
        assert_eq!(
            status_error("x", StatusCode::REQUEST_TIMEOUT, None, b"", t),
            AiError::Timeout(t)
        );
        assert!(matches!(
            status_error("x", StatusCode::UNAUTHORIZED, None, b"", t),
            AiError::Permanent(_)
        ));
    }
}
